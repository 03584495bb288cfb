// Small-scale models on vector inputs x in R^d (Sections 3-5 of the paper): over-parameterised
// linear models f = F(theta)^T x (linear, linear network, diagonal linear network), the two-layer
// net with a fixed output layer, and the two-parameter toy model of Figure 4. None has biases.
//
// Initialisations keep the initial output O(|x|/sqrt(d)), i.e. O(1) on isotropic unit inputs:
//   linear, linear_net: every W ~ N(0, 1/fan_in);
//   diag_linear: alpha, beta ~ N(0, (2d)^{-1/2}), so F_j = alpha_j^2 - beta_j^2 has variance 1/d
//     like the linear model's weights;
//   two_layer: b_k ~ N(0, I/d) (so b_k^T x = O(1)); a_k fixed, the first ceil(m/2) +1, rest -1,
//     or, with model.train_outer (Figure 1: both layers trained), a parameter a_k ~ N(0, 1/m);
//   toy: w1, w2 ~ N(0, 1), or the point model.toy_init.
// Experiments that need another distribution (Figure 2: theta ~ N(0, I_p)) redraw the parameters.
#include <ATen/ATen.h>
#include <fmt/format.h>
#include <torch/nn/init.h>
#include <torch/nn/modules/container/modulelist.h>
#include <torch/nn/modules/linear.h>

#include <cmath>
#include <memory>
#include <vector>

#include "models/families.h"
#include "models/layers.h"
#include "src/core/error.h"

namespace ng::models {
namespace {

at::Tensor normal_param(std::vector<int64_t> shape, double std) {
  return at::randn(shape) * std;
}

class LinearModel : public NetImpl {
 public:
  LinearModel(int64_t d, int64_t c) : d_(d), c_(c) {
    weight_ = register_parameter("weight", normal_param({c, d}, 1.0 / std::sqrt(double(d))));
  }
  at::Tensor forward(const at::Tensor& x) override {
    check_vector_batch(x, "linear", d_);
    return layers::linear(x, weight_);
  }
  std::string describe() const override {
    return fmt::format("linear model f = Wx (d={}, {} outputs)", d_, c_);
  }

 private:
  int64_t d_, c_;
  at::Tensor weight_;
};

// f = W_L ... W_1 x; layer widths d, hidden..., C.
class LinearNet : public NetImpl {
 public:
  LinearNet(int64_t d, const std::vector<int64_t>& hidden, int64_t c) : d_(d) {
    widths_.push_back(d);
    for (int64_t h : hidden) widths_.push_back(h);
    widths_.push_back(c);
    auto list = register_module("layers", torch::nn::ModuleList());
    for (size_t k = 0; k + 1 < widths_.size(); ++k) {
      auto fc = torch::nn::Linear(torch::nn::LinearOptions(widths_[k], widths_[k + 1]).bias(false));
      torch::nn::init::normal_(fc->weight, 0.0, 1.0 / std::sqrt(double(widths_[k])));
      list->push_back(fc);
      layers_.push_back(fc);
    }
  }
  at::Tensor forward(const at::Tensor& x) override {
    check_vector_batch(x, "linear_net", d_);
    at::Tensor h = x;
    for (auto& l : layers_) h = layers::linear(l, h);
    return h;
  }
  std::string describe() const override {
    std::string arch;
    for (size_t k = 0; k < widths_.size(); ++k) arch += (k ? "-" : "") + std::to_string(widths_[k]);
    return fmt::format("linear network {} ({} layers, no biases)", arch, layers_.size());
  }

 private:
  int64_t d_;
  std::vector<int64_t> widths_;
  std::vector<torch::nn::Linear> layers_;
};

// F(theta) = alpha^2 - beta^2 elementwise, one (alpha, beta) pair of rows per output.
class DiagLinear : public NetImpl {
 public:
  DiagLinear(int64_t d, int64_t c) : d_(d), c_(c) {
    const double std = std::pow(2.0 * double(d), -0.25);
    alpha_ = register_parameter("alpha", normal_param({c, d}, std));
    beta_ = register_parameter("beta", normal_param({c, d}, std));
  }
  at::Tensor forward(const at::Tensor& x) override {
    check_vector_batch(x, "diag_linear", d_);
    return layers::linear(x,
                          layers::elementwise_of(alpha_ * alpha_ - beta_ * beta_, {alpha_, beta_}));
  }
  std::string describe() const override {
    return fmt::format("diagonal linear network F = alpha^2 - beta^2 (d={}, {} outputs)", d_, c_);
  }

 private:
  int64_t d_, c_;
  at::Tensor alpha_, beta_;
};

// f = sum_k a_k phi(b_k^T x). By default only b is trained (Theorem 3.5): a is then a buffer,
// so that it moves with .to() and is saved with the state but is not in parameters(). With
// `train_outer` a is a parameter after b (theta = (b, a), p = m(d + 1)).
class TwoLayer : public NetImpl {
 public:
  TwoLayer(int64_t d, int64_t m, bool leaky, double slope, bool train_outer)
      : d_(d), m_(m), leaky_(leaky), slope_(slope), train_outer_(train_outer) {
    b_ = register_parameter("b", normal_param({m, d}, 1.0 / std::sqrt(double(d))));
    if (train_outer) {
      a_ = register_parameter("a", normal_param({m}, 1.0 / std::sqrt(double(m))));
      return;
    }
    at::Tensor a = at::ones({m});
    a.slice(0, (m + 1) / 2).fill_(-1.0);
    a_ = register_buffer("a", a);
  }
  at::Tensor forward(const at::Tensor& x) override {
    check_vector_batch(x, "two_layer", d_);
    return layers::linear(activate(layers::linear(x, b_), leaky_, slope_), a_).unsqueeze(1);
  }
  std::string describe() const override {
    const std::string outer = train_outer_
                                  ? std::string("a trained")
                                  : fmt::format("a fixed: {} x +1, {} x -1", (m_ + 1) / 2, m_ / 2);
    return fmt::format("two-layer net f = sum_k a_k {}(b_k.x) (m={}, d={}, {})",
                       leaky_ ? fmt::format("leaky_relu_{}", slope_) : std::string("relu"), m_, d_,
                       outer);
  }

 private:
  int64_t d_, m_;
  bool leaky_;
  double slope_;
  bool train_outer_;
  at::Tensor b_, a_;
};

// Figure 4 (after Ma et al. 2022): f = (w2 / sqrt(w1^2 + 1)) x. Figure 4 starts at a chosen
// point near the valley w2 = 0 (`init` = {w1, w2}); otherwise w ~ N(0, 1).
class Toy : public NetImpl {
 public:
  explicit Toy(const std::vector<double>& init) {
    w1_ = register_parameter("w1",
                             init.empty() ? at::randn({1}) : at::full({1}, init[0], at::kDouble));
    w2_ = register_parameter("w2",
                             init.empty() ? at::randn({1}) : at::full({1}, init[1], at::kDouble));
  }
  at::Tensor forward(const at::Tensor& x) override {
    check_vector_batch(x, "toy", 1);
    return x * (w2_ / at::sqrt(w1_ * w1_ + 1));
  }
  std::string describe() const override { return "toy OLM f = (w2 / sqrt(w1^2 + 1)) x"; }

 private:
  at::Tensor w1_, w2_;
};

}  // namespace

Net make_linear(const ModelSpec& spec) {
  return std::make_shared<LinearModel>(spec.input_dim, spec.num_classes);
}

Net make_linear_net(const ModelSpec& spec) {
  if (spec.hidden.empty())
    fail("model.hidden: linear_net needs at least one width (e.g. [100, 100, 100] for 4 layers)");
  require_positive_widths(spec.hidden);
  return std::make_shared<LinearNet>(spec.input_dim, spec.hidden, spec.num_classes);
}

Net make_diag_linear(const ModelSpec& spec) {
  return std::make_shared<DiagLinear>(spec.input_dim, spec.num_classes);
}

Net make_two_layer(const ModelSpec& spec) {
  if (spec.hidden.size() != 1)
    fail("model.hidden: two_layer needs exactly one width [m], got {}", list_text(spec.hidden));
  require_positive_widths(spec.hidden);
  if (spec.num_classes != 1)
    fail("data.outputs: two_layer has one output, got {} outputs", spec.num_classes);
  return std::make_shared<TwoLayer>(spec.input_dim, spec.hidden[0], spec.activation == "leaky_relu",
                                    spec.leaky_slope, spec.train_outer);
}

Net make_toy(const ModelSpec& spec) {
  if (spec.input_dim != 1) fail("data.d: the toy model needs d = 1, got {}", spec.input_dim);
  if (spec.num_classes != 1)
    fail("data.outputs: the toy model has one output, got {} outputs", spec.num_classes);
  if (!spec.toy_init.empty() && spec.toy_init.size() != 2)
    fail("model.toy_init: expected [w1, w2] (or [] for w ~ N(0, 1)), got {} numbers",
         spec.toy_init.size());
  return std::make_shared<Toy>(spec.toy_init);
}

}  // namespace ng::models
