// BatchedGradients of per_sample.h: the recorded forward, the per-op closed forms, the coverage
// check and the batch-gradient check.
#include "src/curvature/per_sample.h"

#include <ATen/ATen.h>
#include <fmt/format.h>
#include <torch/csrc/autograd/autograd.h>

#include <cmath>
#include <set>

#include "src/core/error.h"

namespace ng {
namespace {

using layers::Op;
using layers::Record;

// t (N, ...) summed over what p (broadcast against t's trailing dims) does not have, as (N, |p|).
at::Tensor sum_to_param(const at::Tensor& t, const at::Tensor& p) {
  const int64_t lead = t.dim() - p.dim();
  std::vector<int64_t> dims;
  for (int64_t d = 1; d < lead; ++d) dims.push_back(d);
  for (int64_t k = 0; k < p.dim(); ++k)
    if (p.size(k) == 1 && t.size(lead + k) != 1) dims.push_back(lead + k);
  const at::Tensor r = dims.empty() ? t : t.sum(dims, /*keepdim=*/true);
  return r.reshape({t.size(0), -1});
}

// Per-sample gradients (N, numel) of the op's weight and bias from g = dl/d(output).
void per_sample_grads(const Record& r, const at::Tensor& g, at::Tensor* dw, at::Tensor* db) {
  const int64_t n = g.size(0);
  switch (r.op) {
    case Op::Linear: {
      const int64_t out = r.weight.dim() == 2 ? r.weight.size(0) : 1;
      const at::Tensor g3 = g.reshape({n, -1, out});
      *dw =
          at::bmm(g3.transpose(1, 2), r.input.reshape({n, -1, r.weight.size(-1)})).reshape({n, -1});
      if (r.bias.defined()) *db = g3.sum(1);
      return;
    }
    case Op::Conv2d: {
      const at::Tensor unf = at::im2col(r.input, r.kernel, r.dilation, r.padding, r.stride);
      const at::Tensor g3 = g.reshape({n, g.size(1), -1});
      *dw = at::bmm(g3, unf.transpose(1, 2)).reshape({n, -1});
      if (r.bias.defined()) *db = g3.sum(2);
      return;
    }
    case Op::Add:
      *dw = sum_to_param(g, r.weight);
      return;
    case Op::Mul:
      *dw = sum_to_param(g * r.input, r.weight);
      return;
  }
}

}  // namespace

BatchedGradients::BatchedGradients(const ParameterLayout& layout) : layout_(layout) {
  for (size_t k = 0; k < layout.tensors.size(); ++k)
    index_[layout.tensors[k].unsafeGetTensorImpl()] = static_cast<int64_t>(k);
}

int64_t BatchedGradients::find(const at::Tensor& t) const {
  if (!t.defined()) return -1;
  const auto it = index_.find(t.unsafeGetTensorImpl());
  if (it != index_.end()) return it->second;
  for (size_t d = 0; d < rec_.derived.size(); ++d)
    if (rec_.derived[d].value.unsafeGetTensorImpl() == t.unsafeGetTensorImpl())
      return -2 - static_cast<int64_t>(d);
  return -1;
}

at::Tensor BatchedGradients::record(const std::function<at::Tensor()>& forward) {
  rec_ = layers::Recorder();
  at::Tensor f;
  {
    layers::Recording on(rec_);
    f = forward();
  }
  used_.clear();
  for (size_t j = 0; j < rec_.records.size(); ++j)
    if (find(rec_.records[j].weight) != -1 || find(rec_.records[j].bias) != -1) used_.push_back(j);
  derived_jac_.clear();
  for (const auto& d : rec_.derived) {
    const auto jac =
        torch::autograd::grad({d.value}, d.params, {at::ones_like(d.value)},
                              /*retain_graph=*/true, /*create_graph=*/false, /*allow_unused=*/true);
    derived_jac_.push_back(jac);
  }
  return f;
}

std::string BatchedGradients::coverage_problem() const {
  std::set<int64_t> covered;
  auto mark = [&](const at::Tensor& t) {
    const int64_t k = find(t);
    if (k >= 0) covered.insert(k);
    if (k > -2) return;
    for (const auto& q : rec_.derived[static_cast<size_t>(-2 - k)].params)
      if (find(q) >= 0) covered.insert(find(q));
  };
  for (size_t j : used_) {
    mark(rec_.records[j].weight);
    mark(rec_.records[j].bias);
  }
  for (size_t k = 0; k < layout_.tensors.size(); ++k) {
    if (covered.count(static_cast<int64_t>(k))) continue;
    std::string why =
        fmt::format("parameter '{}' is not used through models/layers.h", layout_.names[k]);
    if (!rec_.refused.empty()) why += " (unrecorded: " + rec_.refused.front() + ")";
    return why;
  }
  return "";
}

void BatchedGradients::route(const at::Tensor& t, const at::Tensor& per_sample, at::Tensor& out,
                             std::vector<at::Tensor>* sums,
                             std::vector<at::Tensor>* abs_sums) const {
  const int64_t k = find(t);
  if (k <= -2) {
    const auto d = static_cast<size_t>(-2 - k);
    for (size_t j = 0; j < rec_.derived[d].params.size(); ++j)
      if (derived_jac_[d][j].defined())
        route(rec_.derived[d].params[j], per_sample * derived_jac_[d][j].reshape({1, -1}), out,
              sums, abs_sums);
    return;
  }
  if (k < 0) return;
  const int64_t numel = layout_.tensors[k].numel();
  if (per_sample.size(1) != numel)
    fail("internal: per-sample gradient of '{}' has {} entries per sample, the parameter {}",
         layout_.names[k], per_sample.size(1), numel);
  out.narrow(1, layout_.offsets[k], numel).add_(per_sample);
  if (sums) {
    (*sums)[k] = (*sums)[k] + per_sample.sum(0);
    (*abs_sums)[k] = (*abs_sums)[k] + per_sample.abs().sum(0);
  }
}

std::string BatchedGradients::accumulate(const at::Tensor& f, const at::Tensor& cot,
                                         bool retain_graph, at::Tensor& out, bool check) {
  std::vector<at::Tensor> inputs;
  for (size_t j : used_) inputs.push_back(rec_.records[j].output);
  if (check) inputs.insert(inputs.end(), layout_.tensors.begin(), layout_.tensors.end());
  if (inputs.empty()) return "";
  const auto g = torch::autograd::grad({f}, inputs, {cot}, retain_graph, /*create_graph=*/false,
                                       /*allow_unused=*/true);
  std::vector<at::Tensor> sums, abs_sums;
  if (check)
    for (const auto& t : layout_.tensors) {
      sums.push_back(at::zeros({t.numel()}, t.options()));
      abs_sums.push_back(at::zeros({t.numel()}, t.options()));
    }
  for (size_t j = 0; j < used_.size(); ++j) {
    if (!g[j].defined()) continue;
    const Record& r = rec_.records[used_[j]];
    at::Tensor dw, db;
    per_sample_grads(r, g[j], &dw, &db);
    route(r.weight, dw, out, check ? &sums : nullptr, &abs_sums);
    if (db.defined()) route(r.bias, db, out, check ? &sums : nullptr, &abs_sums);
  }
  if (!check) return "";
  // Sums of N terms in another order: rounding of a few eps per term, measured against the
  // terms' magnitudes. A parameter used outside the recorded ops misses whole terms.
  const double tol = out.scalar_type() == at::kDouble ? 1e-10 : 1e-4;
  for (size_t k = 0; k < layout_.tensors.size(); ++k) {
    const at::Tensor& batch = g[used_.size() + k];
    const at::Tensor want = batch.defined() ? batch.reshape(-1) : at::zeros_like(sums[k]);
    const double err = (sums[k] - want).norm().item<double>();
    const double scale = abs_sums[k].norm().item<double>() + want.norm().item<double>();
    if (!(err <= tol * scale))
      return fmt::format(
          "parameter '{}': the per-sample gradients sum to {:.3g} away from the batch gradient "
          "(|g| {:.3g}); it is used outside models/layers.h too",
          layout_.names[k], err, want.norm().item<double>());
  }
  return "";
}

}  // namespace ng
