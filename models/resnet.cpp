// Fixup ResNet-(6n+2) for CIFAR without batch normalisation, after Zhang et al. (2019),
// hongyi-zhang/Fixup cifar/models/fixup_resnet_cifar.py. Parameter names follow that file
// (conv1, bias1, layer1.0.conv1.weight, ..., fc.weight) so that state dicts line up.
#include <ATen/ATen.h>
#include <fmt/format.h>
#include <torch/nn/init.h>
#include <torch/nn/modules/container/modulelist.h>
#include <torch/nn/modules/conv.h>
#include <torch/nn/modules/linear.h>

#include <cmath>
#include <memory>
#include <vector>

#include "models/families.h"
#include "models/layers.h"
#include "src/core/error.h"

namespace ng::models {
namespace {

torch::nn::Conv2d conv3x3(int64_t in, int64_t out, int64_t stride) {
  return torch::nn::Conv2d(
      torch::nn::Conv2dOptions(in, out, 3).stride(stride).padding(1).bias(false));
}

class FixupBlockImpl : public torch::nn::Module {
 public:
  FixupBlockImpl(int64_t in, int64_t out, int64_t stride) : stride_(stride) {
    // Option-A shortcut: subsample by `stride` and append zero channels; needs out = 2 in.
    if (stride != 1 && out != 2 * in)
      fail("internal: Fixup option-A shortcut needs doubled width ({} -> {})", in, out);
    bias1a_ = register_parameter("bias1a", at::zeros({1}));
    conv1_ = register_module("conv1", conv3x3(in, out, stride));
    bias1b_ = register_parameter("bias1b", at::zeros({1}));
    bias2a_ = register_parameter("bias2a", at::zeros({1}));
    conv2_ = register_module("conv2", conv3x3(out, out, 1));
    scale_ = register_parameter("scale", at::ones({1}));
    bias2b_ = register_parameter("bias2b", at::zeros({1}));
  }

  // Fixup: the residual branch starts at exactly zero (conv2 = 0), and conv1 is scaled by
  // L^{-1/2} (the m = 2 layers per branch case of L^{-1/(2m-2)}), L = number of blocks.
  void fixup_init(int64_t num_blocks) {
    const auto& w = conv1_->weight;
    const double fan_out = static_cast<double>(w.size(0) * w.size(2) * w.size(3));
    torch::nn::init::normal_(w, 0.0,
                             std::sqrt(2.0 / fan_out) / std::sqrt(static_cast<double>(num_blocks)));
    torch::nn::init::zeros_(conv2_->weight);
  }

  at::Tensor forward(const at::Tensor& x) {
    const at::Tensor xa = layers::add_param(x, bias1a_);
    at::Tensor out = at::relu(layers::add_param(layers::conv2d(conv1_, xa), bias1b_));
    out = layers::conv2d(conv2_, layers::add_param(out, bias2a_));
    out = layers::add_param(layers::mul_param(out, scale_), bias2b_);
    at::Tensor identity = x;
    if (stride_ != 1) {
      // AvgPool2d(1, stride) of the reference: plain subsampling, applied to x + bias1a.
      identity = at::avg_pool2d(xa, {1, 1}, {stride_, stride_});
      identity = at::cat({identity, at::zeros_like(identity)}, 1);
    }
    return at::relu(out + identity);
  }

 private:
  int64_t stride_;
  at::Tensor bias1a_, bias1b_, bias2a_, scale_, bias2b_;
  torch::nn::Conv2d conv1_{nullptr}, conv2_{nullptr};
};

class FixupResNet : public NetImpl {
 public:
  FixupResNet(int64_t n, int64_t width, int64_t classes) : n_(n), width_(width), classes_(classes) {
    // The stem keeps LibTorch's default Conv2d init (kaiming_uniform, a = sqrt(5)), which is
    // PyTorch's default: the reference's init loop touches only the blocks and the Linear layer.
    conv1_ = register_module("conv1", conv3x3(3, width, 1));
    bias1_ = register_parameter("bias1", at::zeros({1}));
    int64_t in = width;
    for (int64_t s = 0; s < 3; ++s) {
      const int64_t planes = width << s;
      auto list = register_module(fmt::format("layer{}", s + 1), torch::nn::ModuleList());
      for (int64_t k = 0; k < n; ++k) {
        auto block = std::make_shared<FixupBlockImpl>(in, planes, (s > 0 && k == 0) ? 2 : 1);
        list->push_back(block);
        blocks_.push_back(block);
        in = planes;
      }
    }
    bias2_ = register_parameter("bias2", at::zeros({1}));
    fc_ = register_module("fc", torch::nn::Linear(4 * width, classes));
    for (auto& b : blocks_) b->fixup_init(static_cast<int64_t>(blocks_.size()));
    torch::nn::init::zeros_(fc_->weight);
    torch::nn::init::zeros_(fc_->bias);
  }

  at::Tensor forward(const at::Tensor& x) override {
    check_image_batch(x, "resnet", false);
    at::Tensor h = at::relu(layers::add_param(layers::conv2d(conv1_, x), bias1_));
    for (auto& b : blocks_) h = b->forward(h);
    h = at::adaptive_avg_pool2d(h, {1, 1}).flatten(1);
    return layers::linear(fc_, layers::add_param(h, bias2_));
  }

  std::string describe() const override {
    return fmt::format("Fixup ResNet-{} (n={}, widths {}/{}/{}, {} classes)", 6 * n_ + 2, n_,
                       width_, 2 * width_, 4 * width_, classes_);
  }

 private:
  int64_t n_, width_, classes_;
  torch::nn::Conv2d conv1_{nullptr};
  at::Tensor bias1_, bias2_;
  std::vector<std::shared_ptr<FixupBlockImpl>> blocks_;
  torch::nn::Linear fc_{nullptr};
};

}  // namespace

Net make_resnet(const ModelSpec& spec) {
  const int64_t depth = spec.depth == 0 ? 20 : spec.depth;
  if (depth < 8 || (depth - 2) % 6 != 0)
    fail("model.depth: ResNet depth must be 6n+2 (e.g. 20, 38, 110), got {}", depth);
  const int64_t width = spec.width == 0 ? 16 : spec.width;
  if (width < 1) fail("model.width: ResNet width must be positive, got {}", width);
  require_relu(spec);
  return std::make_shared<FixupResNet>((depth - 2) / 6, width, spec.num_classes);
}

}  // namespace ng::models
