#!/usr/bin/env python3
"""The training loop of `noisegeom train` in PyTorch for Python: same model, data, batch, steps.

Reads the training samples from a noisegeom run directory (samples.csv), so both sides train on
exactly the same images; times `steps` SGD steps plus one full-loss evaluation, as the C++ side's
train_log.csv rate does. Prints one line: steps_per_second=<float>.

On a GPU (--device cuda) the model can be compiled (--compile reduce-overhead: TorchInductor with
CUDA graphs); --warmup steps run first, untimed, so that compilation and graph recording (one per
batch shape: an epoch's short last batch is another) are not counted.
"""
import argparse
import time

import torch
import torch.nn.functional as F

from mirror import (CNN, FixupResNet, build_model, full_loss, load_samples, model_config,
                    sgd_batches, sgd_step)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--run", required=True, help="noisegeom run directory (for samples.csv)")
    ap.add_argument("--data-dir", required=True)
    ap.add_argument("--model", default="cnn", help="cnn, resnet, or run: the run's config.yaml")
    ap.add_argument("--depth", type=int, default=20)
    ap.add_argument("--steps", type=int, default=1000)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--lr", type=float, default=0.1)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--compile", default="none",
                    help="none (eager), or a torch.compile mode such as reduce-overhead")
    ap.add_argument("--warmup", type=int, default=0, help="untimed steps before the timed ones")
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    torch.manual_seed(0)
    device = torch.device(a.device)
    x, y = load_samples(a.data_dir, a.run)
    classes = int(y.max()) + 1
    target = F.one_hot(y, classes).float().to(device)
    x = x.to(device)
    if a.model == "run":
        model = build_model(model_config(a.run), classes)
    else:
        model = CNN(classes) if a.model == "cnn" else FixupResNet(a.depth, classes)
    model = model.to(device)
    params = list(model.parameters())
    # The compiled module shares the parameters; the full-loss evaluation uses the eager one, so
    # switching to eval mode compiles nothing inside the timed region.
    stepped = model if a.compile == "none" else torch.compile(model, mode=a.compile)
    n = x.shape[0]
    batches = sgd_batches(n, a.batch, torch.Generator().manual_seed(0), device)
    model.train()
    for _ in range(a.warmup):
        sgd_step(stepped, params, x, target, next(batches), a.lr)
    if device.type == "cuda":
        torch.cuda.synchronize()
    t0 = time.perf_counter()
    for _ in range(a.steps):
        sgd_step(stepped, params, x, target, next(batches), a.lr)
    loss = full_loss(model, x, target)
    dt = time.perf_counter() - t0
    print(f"steps_per_second={a.steps / dt:.3f} final_loss={loss:.4e}")


if __name__ == "__main__":
    main()
