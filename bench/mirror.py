"""Python mirrors of noisegeom's models, parameter for parameter (same names, same
named_parameters() order, so a run's theta.pt loads with load_state_dict), and readers of a run
directory, shared by the PyTorch sides of the benchmarks in bench/."""
import os

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F


def load_samples(data_dir, run_dir):
    """The run's training images (samples.csv: index into the five CIFAR-10 training files,
    class), normalised per channel over them, and their classes."""
    rows = np.loadtxt(os.path.join(run_dir, "samples.csv"), delimiter=",", skiprows=1,
                      dtype=np.int64)
    index, cls = rows[:, 1], rows[:, 3]
    images = []
    for f in range(1, 6):
        raw = np.fromfile(os.path.join(data_dir, f"data_batch_{f}.bin"), dtype=np.uint8)
        images.append(raw.reshape(-1, 3073)[:, 1:])
    allx = np.concatenate(images)
    x = torch.from_numpy(allx[index].astype(np.float32) / 255.0).reshape(-1, 3, 32, 32)
    mean = x.mean(dim=(0, 2, 3), keepdim=True)
    std = x.std(dim=(0, 2, 3), keepdim=True)
    x = (x - mean) / std
    y = torch.from_numpy(cls)
    return x, y


class CNN(nn.Module):
    """noisegeom's cnn: conv1, conv2, fc1, fc2 (fc biases switchable, as model.bias)."""

    def __init__(self, classes, bias=True):
        super().__init__()
        self.conv1, self.conv2 = nn.Conv2d(3, 6, 5), nn.Conv2d(6, 16, 5)
        self.fc1 = nn.Linear(400, 100, bias=bias)
        self.fc2 = nn.Linear(100, classes, bias=bias)

    def forward(self, x):
        x = F.max_pool2d(F.relu(self.conv1(x)), 2)
        x = F.max_pool2d(F.relu(self.conv2(x)), 2)
        return self.fc2(F.relu(self.fc1(x.flatten(1))))


class FixupBlock(nn.Module):
    """models/resnet.cpp's FixupBlockImpl: the identity is x itself at stride 1 (as in Zhang et
    al.'s reference); at stride 2 it is the subsampled x + bias1a padded with zero channels."""

    def __init__(self, cin, cout, stride):
        super().__init__()
        self.bias1a = nn.Parameter(torch.zeros(1))
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bias1b = nn.Parameter(torch.zeros(1))
        self.bias2a = nn.Parameter(torch.zeros(1))
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.scale = nn.Parameter(torch.ones(1))
        self.bias2b = nn.Parameter(torch.zeros(1))
        self.stride = stride

    def forward(self, x):
        xa = x + self.bias1a
        out = F.relu(self.conv1(xa) + self.bias1b)
        out = self.conv2(out + self.bias2a) * self.scale + self.bias2b
        identity = x
        if self.stride != 1:
            identity = F.avg_pool2d(xa, 1, self.stride)
            identity = torch.cat([identity, torch.zeros_like(identity)], 1)
        return F.relu(out + identity)


class FixupResNet(nn.Module):
    def __init__(self, depth, classes, width=16):
        super().__init__()
        n = (depth - 2) // 6
        self.conv1 = nn.Conv2d(3, width, 3, 1, 1, bias=False)
        self.bias1 = nn.Parameter(torch.zeros(1))
        cin = width
        for s in range(3):
            planes = width << s
            blocks = []
            for k in range(n):
                blocks.append(FixupBlock(cin, planes, 2 if (s > 0 and k == 0) else 1))
                cin = planes
            setattr(self, f"layer{s + 1}", nn.ModuleList(blocks))
        self.bias2 = nn.Parameter(torch.zeros(1))
        self.fc = nn.Linear(4 * width, classes)

    def forward(self, x):
        h = F.relu(self.conv1(x) + self.bias1)
        for layer in (self.layer1, self.layer2, self.layer3):
            for b in layer:
                h = b(h)
        return self.fc(F.adaptive_avg_pool2d(h, 1).flatten(1) + self.bias2)


# torchvision's VGG configurations A, B, D, E at base width 64 ("M": a 2x2 max-pool).
VGG_CFGS = {
    11: [64, "M", 128, "M", 256, 256, "M", 512, 512, "M", 512, 512, "M"],
    13: [64, 64, "M", 128, 128, "M", 256, 256, "M", 512, 512, "M", 512, 512, "M"],
    16: [64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512, "M"],
    19: [64, 64, "M", 128, 128, "M", 256, 256, 256, 256, "M", 512, 512, 512, 512, "M",
         512, 512, 512, 512, "M"],
}


class VGG(nn.Module):
    """models/vgg.cpp: VGG without BN for 32x32 inputs, convs scaled to `width`, then
    Linear(last, head) - ReLU - Linear(head, classes); its initialisation too."""

    def __init__(self, depth, classes, width=64, head=128):
        super().__init__()
        self.cfg = [c if c == "M" else c // 64 * width for c in VGG_CFGS[depth]]
        convs, cin = [], 3
        for c in self.cfg:
            if c != "M":
                convs.append(nn.Conv2d(cin, c, 3, padding=1))
                cin = c
        self.features = nn.ModuleList(convs)
        self.fc1, self.fc2 = nn.Linear(cin, head), nn.Linear(head, classes)
        for conv in self.features:
            nn.init.kaiming_normal_(conv.weight, mode="fan_out", nonlinearity="relu")
            nn.init.zeros_(conv.bias)
        for fc in (self.fc1, self.fc2):
            nn.init.normal_(fc.weight, 0.0, 0.01)
            nn.init.zeros_(fc.bias)

    def forward(self, x):
        convs = iter(self.features)
        for c in self.cfg:
            x = F.max_pool2d(x, 2) if c == "M" else F.relu(next(convs)(x))
        return self.fc2(F.relu(self.fc1(x.flatten(1))))


def model_config(run):
    """The model section of the run's resolved config.yaml (flat `  key: value` lines)."""
    cfg, inside = {}, False
    for line in open(f"{run}/config.yaml"):
        if not line.startswith(" "):
            inside = line.strip() == "model:"
            continue
        if inside and ":" in line:
            key, value = line.strip().split(":", 1)
            cfg[key] = value.strip().strip('"')
    return cfg


def build_model(cfg, classes):
    if cfg["name"] == "cnn":
        return CNN(classes, cfg.get("bias", "true") == "true")
    if cfg["name"] == "resnet":
        depth, width = int(cfg.get("depth", 0)) or 20, int(cfg.get("width", 0)) or 16
        return FixupResNet(depth, classes, width)
    if cfg["name"] == "vgg":
        depth, width = int(cfg.get("depth", 0)) or 13, int(cfg.get("width", 0)) or 64
        return VGG(depth, classes, width, int(cfg.get("head_width", 0)) or 128)
    raise SystemExit(f"no Python mirror for model {cfg['name']!r} (cnn, resnet and vgg only)")


def sgd_batches(n, batch, generator, device="cpu"):
    """Index tensors of SGD's batches as training draws them: each epoch's permutation, cut in
    order (the last batch of an epoch short when batch does not divide n). The permutation goes
    to `device` once per epoch, as noisegeom's BatchOrder does, so no step waits for a copy."""
    per_epoch = (n + batch - 1) // batch
    step, perm = 0, None
    while True:
        if step % per_epoch == 0:
            perm = torch.randperm(n, generator=generator).to(device)
        j = step % per_epoch
        yield perm[j * batch:(j + 1) * batch]
        step += 1


def sgd_step(model, params, x, target, idx, lr):
    """One plain SGD step on the square loss 1/2 |f - y|^2, averaged over the batch `idx`."""
    out = model(x.index_select(0, idx))
    loss = 0.5 * (out - target.index_select(0, idx)).pow(2).sum(1).mean()
    for p in params:
        p.grad = None
    loss.backward()
    with torch.no_grad():
        for p in params:
            p.add_(p.grad, alpha=-lr)


def full_loss(model, x, target, chunk=1000):
    """The square loss over all samples in eval mode, as noisegeom evaluates it."""
    with torch.no_grad():
        model.eval()
        total = 0.0
        for s in range(0, x.shape[0], chunk):
            out = model(x[s:s + chunk])
            total += 0.5 * (out - target[s:s + chunk]).pow(2).sum(1).sum().item()
        model.train()
    return total / x.shape[0]


def load_model(run, classes, dtype=torch.float32):
    """The run's model at its theta.pt. noisegeom's files are TorchScript pickles (typed dicts):
    PyTorch >= 2.6 loads them only with weights_only=False."""
    theta = torch.load(os.path.join(run, "theta.pt"), weights_only=False)
    model = build_model(model_config(run), classes)
    names = [n for n, _ in model.named_parameters()]
    if names != list(theta.keys()):
        raise SystemExit(f"parameter names/order differ from theta.pt:\n{names}\n{list(theta)}")
    model.load_state_dict(theta, strict=True)
    return model.to(dtype)
