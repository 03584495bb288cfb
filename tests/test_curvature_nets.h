// Tiny models and dense float64 oracles shared by the curvature and eigen tests. The models are
// defined here (not taken from models/) so that these tests check the operators alone.
#pragma once

#include <ATen/ATen.h>
#include <torch/csrc/autograd/autograd.h>
#include <torch/nn/module.h>
#include <torch/nn/modules/conv.h>
#include <torch/nn/modules/linear.h>

#include <Eigen/Core>
#include <Eigen/Eigenvalues>
#include <memory>
#include <string>
#include <vector>

#include "models/model.h"
#include "src/curvature/curvature.h"

namespace curvtest {

// 10 -> 12 -> 8 -> C, ReLU, no biases (like the paper's FNN).
struct TinyFnn : ng::NetImpl {
  explicit TinyFnn(int64_t c) {
    l1 = register_module("l1", torch::nn::Linear(torch::nn::LinearOptions(10, 12).bias(false)));
    l2 = register_module("l2", torch::nn::Linear(torch::nn::LinearOptions(12, 8).bias(false)));
    l3 = register_module("l3", torch::nn::Linear(torch::nn::LinearOptions(8, c).bias(false)));
  }
  torch::Tensor forward(const torch::Tensor& x) override {
    return l3->forward(at::relu(l2->forward(at::relu(l1->forward(x)))));
  }
  std::string describe() const override { return "tiny fnn"; }
  torch::nn::Linear l1{nullptr}, l2{nullptr}, l3{nullptr};
};

// Conv(3, 4, 3) -> ReLU -> MaxPool(2) -> Linear(36, C) on 3x8x8 inputs.
struct TinyCnn : ng::NetImpl {
  explicit TinyCnn(int64_t c) {
    conv = register_module("conv", torch::nn::Conv2d(torch::nn::Conv2dOptions(3, 4, 3)));
    fc = register_module("fc", torch::nn::Linear(36, c));
  }
  torch::Tensor forward(const torch::Tensor& x) override {
    const at::Tensor h = at::max_pool2d(at::relu(conv->forward(x)), {2, 2});
    return fc->forward(h.flatten(1));
  }
  std::string describe() const override { return "tiny cnn"; }
  torch::nn::Conv2d conv{nullptr};
  torch::nn::Linear fc{nullptr};
};

// 6 -> 10 -> C with tanh: a smooth model whose Hessian differs from G.
struct TanhNet : ng::NetImpl {
  explicit TanhNet(int64_t c) {
    l1 = register_module("l1", torch::nn::Linear(6, 10));
    l2 = register_module("l2", torch::nn::Linear(10, c));
  }
  torch::Tensor forward(const torch::Tensor& x) override {
    return l2->forward(at::tanh(l1->forward(x)));
  }
  std::string describe() const override { return "tanh net"; }
  torch::nn::Linear l1{nullptr}, l2{nullptr};
};

// f(x) = w^T x.
struct LinReg : ng::NetImpl {
  explicit LinReg(int64_t d) {
    lin = register_module("lin", torch::nn::Linear(torch::nn::LinearOptions(d, 1).bias(false)));
  }
  torch::Tensor forward(const torch::Tensor& x) override { return lin->forward(x); }
  std::string describe() const override { return "linear regression"; }
  torch::nn::Linear lin{nullptr};
};

// Multiplies by fresh noise on every call, train mode or not (like augmentation left on): an
// operator built on it must fail the determinism probe.
struct NoisyNet : ng::NetImpl {
  NoisyNet() { lin = register_module("lin", torch::nn::Linear(4, 2)); }
  torch::Tensor forward(const torch::Tensor& x) override {
    return lin->forward(x * (1 + 0.1 * at::randn(x.sizes(), x.options())));
  }
  std::string describe() const override { return "noisy"; }
  torch::nn::Linear lin{nullptr};
};

// Dropout that follows the module's training flag: harmless once the operator sets eval mode.
struct DropoutNet : ng::NetImpl {
  DropoutNet() {
    l1 = register_module("l1", torch::nn::Linear(4, 16));
    l2 = register_module("l2", torch::nn::Linear(16, 2));
  }
  torch::Tensor forward(const torch::Tensor& x) override {
    return l2->forward(at::dropout(at::relu(l1->forward(x)), 0.5, is_training()));
  }
  std::string describe() const override { return "dropout"; }
  torch::nn::Linear l1{nullptr}, l2{nullptr};
};

struct Problem {
  std::string name;
  ng::Net net;
  at::Tensor x, y;  // float64; y one-hot for classification problems
};

// float64 options for the tiny problems, in batches of 8 (37 samples leave a short last batch).
inline ng::CurvatureOptions options(ng::MatrixKind m, ng::Estimator e,
                                    ng::LossKind l = ng::LossKind::Mse,
                                    ng::JvpMethod j = ng::JvpMethod::Auto, int64_t row_budget = 0) {
  ng::CurvatureOptions o;
  o.matrix = m;
  o.estimator = e;
  o.loss = l;
  o.jvp = j;
  o.row_budget = row_budget;
  o.batch_size = 8;
  o.dtype = at::kDouble;
  return o;
}

inline at::Tensor one_hot(int64_t n, int64_t c) {
  at::Tensor labels = at::randint(0, c, {n}, at::TensorOptions().dtype(at::kLong));
  return at::one_hot(labels, c).to(at::kDouble);
}

// n samples; models in float64 with the current seed.
inline Problem make_problem(const std::string& kind, int64_t n, bool classification,
                            uint64_t seed = 1) {
  at::manual_seed(seed);
  const at::TensorOptions d = at::TensorOptions().dtype(at::kDouble);
  Problem p;
  p.name = kind;
  int64_t c = 3;
  if (kind == "fnn") {
    p.net = std::make_shared<TinyFnn>(c);
    p.x = at::randn({n, 10}, d);
  } else if (kind == "cnn") {
    p.net = std::make_shared<TinyCnn>(c);
    p.x = at::randn({n, 3, 8, 8}, d);
  } else if (kind == "tanh") {
    c = 2;
    p.net = std::make_shared<TanhNet>(c);
    p.x = at::randn({n, 6}, d);
  } else {  // linreg
    c = 1;
    p.net = std::make_shared<LinReg>(15);
    p.x = at::randn({n, 15}, d);
  }
  p.net->to(at::kDouble);
  // Weights large enough that residuals, ReLU patterns and tanh curvature are far from trivial.
  {
    at::NoGradGuard ng;
    for (auto& t : p.net->parameters()) t.mul_(1.5);
  }
  p.y = classification ? one_hot(n, c) : at::randn({n, c}, d);
  return p;
}

inline std::vector<at::Tensor> trainable(ng::NetImpl& net) {
  std::vector<at::Tensor> ps;
  for (const auto& item : net.named_parameters(true))
    if (item.value().requires_grad()) ps.push_back(item.value());
  return ps;
}

inline at::Tensor flat(const std::vector<at::Tensor>& g, const std::vector<at::Tensor>& ps) {
  std::vector<at::Tensor> parts;
  for (size_t k = 0; k < ps.size(); ++k)
    parts.push_back(g[k].defined() ? g[k].reshape(-1)
                                   : at::zeros({ps[k].numel()}, ps[k].options()));
  return at::cat(parts);
}

// Dense oracles built from the explicit Jacobian, one autograd::grad per output entry of a
// whole-batch forward (a different route from the operators' products).
struct DenseMatrices {
  at::Tensor jac;                        // (n, C, p)
  at::Tensor f;                          // (n, C)
  at::Tensor g, sigma, sigma0, hessian;  // (p, p)
  at::Tensor grad;                       // (p)
  double loss = 0;
};

inline DenseMatrices dense_matrices(Problem& pb, bool cross_entropy, bool with_hessian = true) {
  ng::NetImpl& net = *pb.net;
  net.eval();
  const auto ps = trainable(net);
  const int64_t n = pb.x.size(0);
  DenseMatrices d;
  const at::Tensor f = net.forward(pb.x);
  const int64_t c = f.size(1);
  std::vector<at::Tensor> rows;
  for (int64_t i = 0; i < n; ++i)
    for (int64_t k = 0; k < c; ++k)
      rows.push_back(flat(torch::autograd::grad({f[i][k]}, ps, {}, true, false, true), ps));
  const int64_t p = rows[0].size(0);
  d.jac = at::stack(rows).view({n, c, p});
  d.f = f.detach();
  at::Tensor r, w;  // residuals (n, C), output Hessians of the loss (n, C, C)
  if (cross_entropy) {
    const at::Tensor prob = at::softmax(d.f, 1);
    r = prob - pb.y;
    w = at::diag_embed(prob) - prob.unsqueeze(2) * prob.unsqueeze(1);
    d.loss = -(pb.y * at::log_softmax(d.f, 1)).sum().item<double>() / n;
  } else {
    r = d.f - pb.y;
    w = at::eye(c, d.f.options()).expand({n, c, c});
    d.loss = 0.5 * r.pow(2).sum().item<double>() / n;
  }
  d.g = at::einsum("ica,icd,idb->ab", {d.jac, w, d.jac}) / n;
  const at::Tensor gi = at::einsum("icp,ic->ip", {d.jac, r});  // per-sample gradients
  d.sigma = gi.t().mm(gi) / n;
  d.grad = gi.mean(0);
  d.sigma0 = d.sigma - at::outer(d.grad, d.grad);
  if (with_hessian) {
    const at::Tensor l = cross_entropy ? -(pb.y * at::log_softmax(f, 1)).sum() / n
                                       : 0.5 * (f - pb.y).pow(2).sum() / n;
    const at::Tensor gl = flat(torch::autograd::grad({l}, ps, {}, true, true, true), ps);
    std::vector<at::Tensor> hrows;
    for (int64_t j = 0; j < p; ++j)
      hrows.push_back(gl[j].requires_grad()
                          ? flat(torch::autograd::grad({gl[j]}, ps, {}, true, false, true), ps)
                          : at::zeros({p}, gl.options()));
    d.hessian = at::stack(hrows);
  }
  return d;
}

inline double rel_err(const at::Tensor& a, const at::Tensor& b) {
  return (a - b).norm().item<double>() / b.norm().item<double>();
}

// Eigenvalues of a dense symmetric matrix, descending, and the matching eigenvectors as rows.
inline void dense_eigh(const at::Tensor& a, std::vector<double>* values, at::Tensor* vectors) {
  const at::Tensor ac = a.to(at::kDouble).contiguous();
  const int64_t p = ac.size(0);
  Eigen::Map<const Eigen::Matrix<double, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>> m(
      ac.data_ptr<double>(), p, p);
  const Eigen::MatrixXd dense = m;
  Eigen::SelfAdjointEigenSolver<Eigen::MatrixXd> es(dense);
  values->clear();
  for (int64_t j = 0; j < p; ++j) values->push_back(es.eigenvalues()(p - 1 - j));
  // Columns reversed to descending order; column-major storage read row-major gives them as rows.
  const Eigen::MatrixXd ev = es.eigenvectors().rowwise().reverse();
  const at::Tensor v = at::from_blob(const_cast<double*>(ev.data()), {p, p}, at::kDouble).clone();
  if (vectors) *vectors = v;
}

}  // namespace curvtest
