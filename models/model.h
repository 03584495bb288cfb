// Model registry: every architecture of the paper as a LibTorch module behind one interface.
// Inputs are batches shaped (N, 3, 32, 32) for image models and (N, d) for the small-scale models;
// outputs are (N, C) (C = classes, or target dimension for regression).
#pragma once

#include <torch/nn/module.h>

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

namespace ng {

class Config;

// Everything a constructor needs; built from the `model.*` section of a config.
struct ModelSpec {
  std::string name = "cnn";  // resnet vgg cnn fnn linear linear_net diag_linear two_layer toy
  int64_t depth = 0;         // resnet: 6n+2; vgg: 11/13/16/19; 0: family default
  int64_t width = 0;         // 0: the standard width of the family
  int64_t head_width = 128;  // vgg classifier hidden width
  std::vector<int64_t> hidden;
  std::string input = "flatten";  // fnn: flatten | gray28
  bool bias = true;
  std::string activation = "relu";  // relu | leaky_relu
  double leaky_slope = 0.1;
  // two_layer: the output weights a_k trained too (Figure 1) instead of fixed at +-1.
  bool train_outer = false;
  int64_t num_classes = 2;  // outputs C
  int64_t input_dim = 0;    // small-scale models on vectors: d; 0 for image models
  // default: the family's initialisation; zeros: every parameter 0 (a linear model's global
  // minimum when y = 0, Figure 3's theta*).
  std::string init = "default";
  std::vector<double> toy_init;  // toy: the initial [w1, w2]; empty: w ~ N(0, 1)
};

ModelSpec model_spec_from_config(const Config& cfg, int64_t num_classes, int64_t input_dim);

class NetImpl : public torch::nn::Module {
 public:
  virtual torch::Tensor forward(const torch::Tensor& x) = 0;
  // One line describing the architecture as built, e.g. "Fixup ResNet-38 (n=6, widths 16/32/64)".
  virtual std::string describe() const = 0;
};
using Net = std::shared_ptr<NetImpl>;

// Builds and initialises (with the current torch seed) the model. Bad specs throw ng::Error
// naming the model.* field that is wrong.
Net make_model(const ModelSpec& spec);

int64_t count_parameters(const torch::nn::Module& m);

// A tensor's shape for messages: "[2, 3, 32, 32]" ("an undefined tensor" when it has none).
std::string shape_text(const at::Tensor& x);

// The paper's configurations with the counts it reports (the `models` subcommand and tests).
struct PaperModel {
  std::string label;  // "ResNet-38", "VGG-13", ...
  ModelSpec spec;
  int64_t paper_count;  // as printed in the paper
  std::string note;     // where our count and the paper's differ, why
};
std::vector<PaperModel> paper_models();

}  // namespace ng
