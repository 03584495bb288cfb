// The small networks of Figure 2b: the 4-layer CNN and the 4-layer fully connected net (FNN).
// Both keep LibTorch's default (= PyTorch's) initialisation; the paper's Figure 2b draws
// theta ~ N(0, I_p) itself, which the caller does after construction.
#include <ATen/ATen.h>
#include <fmt/format.h>
#include <torch/nn/modules/container/modulelist.h>
#include <torch/nn/modules/conv.h>
#include <torch/nn/modules/linear.h>

#include <memory>
#include <vector>

#include "models/families.h"
#include "models/layers.h"
#include "src/core/error.h"

namespace ng::models {
namespace {

// Conv(3,6,5)-ReLU-MaxPool(2,2)-Conv(6,16,5)-ReLU-MaxPool(2,2)-Linear(400,100)-ReLU-Linear(100,C).
// The convolutions always have biases; `bias` switches those of the two Linear layers, which is
// what separates our 43,174 parameters (C = 2) from the paper's 43,072.
class Cnn : public NetImpl {
 public:
  Cnn(int64_t classes, bool bias, bool leaky, double slope)
      : classes_(classes), bias_(bias), leaky_(leaky), slope_(slope) {
    conv1_ = register_module("conv1", torch::nn::Conv2d(torch::nn::Conv2dOptions(3, 6, 5)));
    conv2_ = register_module("conv2", torch::nn::Conv2d(torch::nn::Conv2dOptions(6, 16, 5)));
    fc1_ = register_module("fc1", torch::nn::Linear(torch::nn::LinearOptions(400, 100).bias(bias)));
    fc2_ = register_module("fc2",
                           torch::nn::Linear(torch::nn::LinearOptions(100, classes).bias(bias)));
  }

  at::Tensor forward(const at::Tensor& x) override {
    check_image_batch(x, "cnn", true);
    at::Tensor h = at::max_pool2d(act(layers::conv2d(conv1_, x)), {2, 2}, {2, 2});
    h = at::max_pool2d(act(layers::conv2d(conv2_, h)), {2, 2}, {2, 2});
    return layers::linear(fc2_, act(layers::linear(fc1_, h.flatten(1))));
  }

  std::string describe() const override {
    return fmt::format(
        "CNN Conv(3,6,5)-MaxPool-Conv(6,16,5)-MaxPool-Linear(400,100)-Linear(100,{}), {}, "
        "linear biases {}",
        classes_, leaky_ ? fmt::format("leaky ReLU {}", slope_) : std::string("ReLU"),
        bias_ ? "on" : "off");
  }

 private:
  at::Tensor act(const at::Tensor& x) const { return activate(x, leaky_, slope_); }
  int64_t classes_;
  bool bias_, leaky_;
  double slope_;
  torch::nn::Conv2d conv1_{nullptr}, conv2_{nullptr};
  torch::nn::Linear fc1_{nullptr}, fc2_{nullptr};
};

// Fully connected net. Image inputs are flattened (3*32*32) or, for the paper's 784 inputs,
// reduced to grey (channel mean) and centre-cropped to 28x28; vector inputs are used as they are.
class Fnn : public NetImpl {
 public:
  Fnn(int64_t input_dim, const std::string& input, std::vector<int64_t> hidden, int64_t classes,
      bool bias, bool leaky, double slope)
      : input_dim_(input_dim), input_(input), leaky_(leaky), slope_(slope), bias_(bias) {
    const int64_t in0 = input_dim > 0 ? input_dim : (input == "gray28" ? 28 * 28 : 3 * 32 * 32);
    widths_.push_back(in0);
    for (int64_t h : hidden) widths_.push_back(h);
    widths_.push_back(classes);
    auto list = register_module("layers", torch::nn::ModuleList());
    for (size_t k = 0; k + 1 < widths_.size(); ++k) {
      auto fc = torch::nn::Linear(torch::nn::LinearOptions(widths_[k], widths_[k + 1]).bias(bias));
      list->push_back(fc);
      layers_.push_back(fc);
    }
  }

  at::Tensor forward(const at::Tensor& x) override {
    at::Tensor h;
    if (input_dim_ > 0) {
      check_vector_batch(x, "fnn", input_dim_);
      h = x;
    } else if (input_ == "gray28") {
      check_image_batch(x, "fnn", true);
      h = x.mean(1).slice(1, 2, 30).slice(2, 2, 30).flatten(1);
    } else {
      check_image_batch(x, "fnn", true);
      h = x.flatten(1);
    }
    for (size_t k = 0; k < layers_.size(); ++k) {
      h = layers::linear(layers_[k], h);
      if (k + 1 < layers_.size()) h = activate(h, leaky_, slope_);
    }
    return h;
  }

  std::string describe() const override {
    std::string arch;
    for (size_t k = 0; k < widths_.size(); ++k) arch += (k ? "-" : "") + std::to_string(widths_[k]);
    const std::string in = input_dim_ > 0 ? "vector" : input_;
    return fmt::format("FNN {} ({}, {} input, {})", arch,
                       leaky_ ? fmt::format("leaky ReLU {}", slope_) : std::string("ReLU"), in,
                       bias_ ? "with biases" : "no biases");
  }

 private:
  int64_t input_dim_;
  std::string input_;
  bool leaky_;
  double slope_;
  bool bias_;
  std::vector<int64_t> widths_;
  std::vector<torch::nn::Linear> layers_;
};

}  // namespace

Net make_cnn(const ModelSpec& spec) {
  return std::make_shared<Cnn>(spec.num_classes, spec.bias, spec.activation == "leaky_relu",
                               spec.leaky_slope);
}

Net make_fnn(const ModelSpec& spec) {
  std::vector<int64_t> hidden =
      spec.hidden.empty() ? std::vector<int64_t>{256, 64, 32} : spec.hidden;
  require_positive_widths(hidden);
  if (spec.input != "flatten" && spec.input != "gray28")
    fail("model.input: expected flatten or gray28, got '{}'", spec.input);
  if (spec.input_dim > 0 && spec.input == "gray28")
    fail("model.input: gray28 needs image inputs (CIFAR-10), but the data are {}-dim vectors",
         spec.input_dim);
  return std::make_shared<Fnn>(spec.input_dim, spec.input, hidden, spec.num_classes, spec.bias,
                               spec.activation == "leaky_relu", spec.leaky_slope);
}

}  // namespace ng::models
