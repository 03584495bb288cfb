// Model registry: name -> constructor, the model.* config section -> ModelSpec, the paper's
// configurations, the input checks shared by the families, and shape_text.
#include <ATen/ATen.h>
#include <fmt/format.h>

#include <functional>
#include <map>

#include "models/families.h"
#include "models/model.h"
#include "src/core/config.h"
#include "src/core/error.h"

namespace ng {

std::string shape_text(const at::Tensor& x) {
  if (!x.defined()) return "an undefined tensor";
  return models::list_text(x.sizes().vec());
}

namespace models {

std::string list_text(const std::vector<int64_t>& v) {
  std::string s = "[";
  for (size_t k = 0; k < v.size(); ++k) s += (k ? ", " : "") + std::to_string(v[k]);
  return s + "]";
}

void check_image_batch(const at::Tensor& x, const std::string& model, bool exactly_32) {
  const bool ok = x.defined() && x.dim() == 4 && x.size(1) == 3 &&
                  (!exactly_32 || (x.size(2) == 32 && x.size(3) == 32));
  if (!ok)
    fail("model {}: expected an image batch (N, 3, {}), got {}", model,
         exactly_32 ? "32, 32" : "H, W", shape_text(x));
}

void check_vector_batch(const at::Tensor& x, const std::string& model, int64_t d) {
  if (!(x.defined() && x.dim() == 2 && x.size(1) == d))
    fail("model {}: expected a batch of vectors (N, {}), got {}", model, d, shape_text(x));
}

void require_relu(const ModelSpec& spec) {
  if (spec.activation != "relu")
    fail("model.activation: {} supports relu only, got {}", spec.name, spec.activation);
}

void require_positive_widths(const std::vector<int64_t>& widths) {
  for (int64_t w : widths)
    if (w < 1) fail("model.hidden: widths must be positive, got {}", list_text(widths));
}

at::Tensor activate(const at::Tensor& x, bool leaky, double slope) {
  return leaky ? at::leaky_relu(x, slope) : at::relu(x);
}

}  // namespace models

namespace {

struct Family {
  bool image;  // inputs (N, 3, 32, 32); otherwise (N, d)
  std::function<Net(const ModelSpec&)> make;
};

const std::map<std::string, Family>& families() {
  static const std::map<std::string, Family> f = {
      {"resnet", {true, models::make_resnet}},
      {"vgg", {true, models::make_vgg}},
      {"cnn", {true, models::make_cnn}},
      {"fnn", {true, models::make_fnn}},  // also accepts vectors
      {"linear", {false, models::make_linear}},
      {"linear_net", {false, models::make_linear_net}},
      {"diag_linear", {false, models::make_diag_linear}},
      {"two_layer", {false, models::make_two_layer}},
      {"toy", {false, models::make_toy}},
  };
  return f;
}

}  // namespace

ModelSpec model_spec_from_config(const Config& cfg, int64_t num_classes, int64_t input_dim) {
  ModelSpec s;
  s.name = cfg.s("model.name");
  s.depth = cfg.i("model.depth");
  s.width = cfg.i("model.width");
  s.head_width = cfg.i("model.head_width");
  s.hidden = cfg.ints("model.hidden");
  s.input = cfg.s("model.input");
  s.bias = cfg.b("model.bias");
  s.activation = cfg.s("model.activation");
  s.leaky_slope = cfg.f("model.leaky_slope");
  s.train_outer = cfg.b("model.train_outer");
  s.num_classes = num_classes;
  s.input_dim = input_dim;
  s.init = cfg.s("model.init");
  s.toy_init = cfg.floats("model.toy_init");
  return s;
}

Net make_model(const ModelSpec& spec) {
  auto it = families().find(spec.name);
  if (it == families().end()) {
    std::string known;
    for (const auto& kv : families()) known += (known.empty() ? "" : "|") + kv.first;
    fail("model.name: unknown model '{}' (known: {})", spec.name, known);
  }
  const Family& fam = it->second;
  if (spec.num_classes < 1)
    fail("model.name: {} needs at least one output, got num_classes = {}", spec.name,
         spec.num_classes);
  if (spec.input_dim < 0)
    fail("model.name: {}: input dimension must be >= 0, got {}", spec.name, spec.input_dim);
  if (fam.image && spec.input_dim > 0 && spec.name != "fnn")
    fail(
        "model.name: {} is an image model (inputs 3x32x32, data.source: cifar10), but the data "
        "are {}-dim vectors",
        spec.name, spec.input_dim);
  if (!fam.image && spec.input_dim == 0)
    fail("model.name: {} works on vectors (data.source: gaussian), but the data are images",
         spec.name);
  if (spec.activation != "relu" && spec.activation != "leaky_relu")
    fail("model.activation: expected relu or leaky_relu, got '{}'", spec.activation);
  if (!(spec.leaky_slope >= 0 && spec.leaky_slope <= 1))
    fail("model.leaky_slope: expected a number in [0, 1], got {}", spec.leaky_slope);
  if (spec.depth < 0) fail("model.depth: must be >= 0, got {}", spec.depth);
  if (spec.width < 0) fail("model.width: must be >= 0, got {}", spec.width);
  if (spec.init != "default" && spec.init != "zeros")
    fail("model.init: expected default or zeros, got '{}'", spec.init);
  Net net = fam.make(spec);
  if (spec.init == "zeros") {
    at::NoGradGuard no_grad;
    for (auto& p : net->parameters()) p.zero_();
  }
  return net;
}

int64_t count_parameters(const torch::nn::Module& m) {
  int64_t n = 0;
  for (const auto& p : m.parameters()) n += p.numel();
  return n;
}

std::vector<PaperModel> paper_models() {
  std::vector<PaperModel> out;
  auto add = [&](std::string label, ModelSpec s, int64_t count, std::string note = "") {
    out.push_back({std::move(label), std::move(s), count, std::move(note)});
  };
  ModelSpec s;
  s.name = "resnet";
  s.depth = 38;
  s.num_classes = 2;
  add("ResNet-38", s, 558222);

  s = ModelSpec{};
  s.name = "vgg";
  s.depth = 13;
  s.width = 16;
  s.head_width = 128;
  s.num_classes = 2;
  add("VGG-13", s, 605458);

  s = ModelSpec{};
  s.name = "resnet";
  s.depth = 110;
  s.num_classes = 10;
  add("ResNet-110", s, 1720138);

  s = ModelSpec{};
  s.name = "vgg";
  s.depth = 19;
  s.width = 64;
  s.head_width = 128;
  s.num_classes = 10;
  add("VGG-19", s, 20091338);

  s = ModelSpec{};
  s.name = "cnn";
  s.bias = false;
  s.num_classes = 2;
  add("CNN", s, 43072,
      "the paper's 43,072 is the architecture without biases in the two Linear layers "
      "(model.bias: false); with them it has 43,174");

  s = ModelSpec{};
  s.name = "fnn";
  s.input = "gray28";
  s.hidden = {256, 64, 32};
  s.bias = false;
  s.num_classes = 2;
  add("FNN", s, 219200,
      "784 inputs: CIFAR-10 reduced to grey and centre-cropped to 28x28 (model.input: gray28); "
      "no biases");
  return out;
}

}  // namespace ng
