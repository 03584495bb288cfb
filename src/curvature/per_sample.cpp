// BatchedGradients of per_sample.h: the recorded forward, the per-op closed forms, the coverage
// check and the batch-gradient check.
#include "src/curvature/per_sample.h"

#include <ATen/ATen.h>
#include <fmt/format.h>
#include <torch/csrc/autograd/autograd.h>

#include <algorithm>
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

// The convolution's input unfolded as at::im2col does, (N, Cin kh kw, Ho Wo), by one strided copy
// of the zero-padded input: LibTorch 1.13's im2col cost 3-10x as much (zeroing its output and
// indexing element by element) and more than the per-sample GEMM it feeds (bench_gv rows: 210 of
// 630 ms for the CNN's rows, float32).
at::Tensor unfold_input(const at::Tensor& x, const Record& r) {
  const int64_t ph = r.padding[0], pw = r.padding[1];
  const at::Tensor xp = (ph || pw) ? at::constant_pad_nd(x, {pw, pw, ph, ph}, 0) : x.contiguous();
  const int64_t n = xp.size(0), c = xp.size(1), h = xp.size(2), w = xp.size(3);
  const int64_t kh = r.kernel[0], kw = r.kernel[1], dh = r.dilation[0], dw = r.dilation[1];
  const int64_t ho = (h - dh * (kh - 1) - 1) / r.stride[0] + 1;
  const int64_t wo = (w - dw * (kw - 1) - 1) / r.stride[1] + 1;
  return xp
      .as_strided({n, c, kh, kw, ho, wo},
                  {c * h * w, h * w, dh * w, dw, r.stride[0] * w, r.stride[1]})
      .reshape({n, c * kh * kw, ho * wo});
}

}  // namespace

// A per-sample gradient (N, m, numel): materialised, or, for a Linear layer without extra dims,
// the outer products g_ir x_i^T as their factors left (N, m, out, 1) and right (N, 1, 1, in).
// Those go into the rows by one broadcast multiply-add: as a batched matmul with contraction 1
// they cost one BLAS call per sample and a temporary as large as their slice of the rows.
struct PerSampleGrad {
  at::Tensor full, left, right;
  bool defined() const { return full.defined() || left.defined(); }
  at::Tensor materialise() const { return full.defined() ? full : (left * right).flatten(2); }
  // Row r of every sample: (N, numel).
  at::Tensor row(int64_t r) const {
    return full.defined() ? full.select(1, r) : (left.select(1, r) * right.select(1, 0)).flatten(1);
  }
  int64_t entries() const { return full.defined() ? full.size(2) : left.size(2) * right.size(3); }
  // target (N, m, numel) += this.
  void add_to(at::Tensor target) const {
    if (full.defined()) {
      target.add_(full);
      return;
    }
    target.view({target.size(0), target.size(1), left.size(2), right.size(3)})
        .addcmul_(left, right);
  }
};

namespace {

// Per-sample gradients (N, m, numel) of the op's weight and bias from x = the op's input (N, ...)
// and g = dl/d(output) for m cotangent rows at once (N, m, ...): the m rows share one unfolding
// of the input and one product with m times the rows.
void per_sample_grads(const Record& r, const at::Tensor& x, const at::Tensor& g, PerSampleGrad* dw,
                      PerSampleGrad* db) {
  const int64_t n = g.size(0), m = g.size(1);
  switch (r.op) {
    case Op::Linear: {
      const int64_t out = r.weight.dim() == 2 ? r.weight.size(0) : 1, in = r.weight.size(-1);
      const at::Tensor g4 = g.reshape({n, m, -1, out});
      if (r.bias.defined()) db->full = g4.sum(2);
      if (g4.size(2) == 1) {
        dw->left = g4.reshape({n, m, out, 1});
        dw->right = x.reshape({n, 1, 1, in});
        return;
      }
      const at::Tensor gt = g4.permute({0, 1, 3, 2}).reshape({n, m * out, -1});
      dw->full = at::bmm(gt, x.reshape({n, -1, in})).view({n, m, out * in});
      return;
    }
    case Op::Conv2d: {
      const at::Tensor unf = unfold_input(x, r);
      const at::Tensor g3 = g.reshape({n, m * g.size(2), -1});
      dw->full = at::bmm(g3, unf.transpose(1, 2)).view({n, m, -1});
      if (r.bias.defined()) db->full = g3.sum(2).view({n, m, -1});
      return;
    }
    case Op::Add:
      dw->full = sum_to_param(g.flatten(0, 1), r.weight).view({n, m, -1});
      return;
    case Op::Mul:
      dw->full = sum_to_param((g * x.unsqueeze(1)).flatten(0, 1), r.weight).view({n, m, -1});
      return;
  }
}

// Samples per piece of per_sample_grads: its buffers (the unfolded input, the weight gradients)
// stay near 16 MiB, which the allocator reuses; one 256-sample piece of a ResNet convolution
// would be 300 MB of fresh pages each time, and faulting them in cost more than the products.
int64_t piece_size(const Record& r, const at::Tensor& g) {
  int64_t per_sample = g.size(1) * r.weight.numel();
  if (r.op == Op::Conv2d) per_sample += r.weight.numel() / r.weight.size(0) * g[0][0][0].numel();
  const int64_t bytes = per_sample * static_cast<int64_t>(g.element_size());
  return std::max<int64_t>(1, (int64_t{16} << 20) / std::max<int64_t>(bytes, 1));
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

void BatchedGradients::route(const at::Tensor& t, const PerSampleGrad& per_sample, at::Tensor& out,
                             std::vector<at::Tensor>* sums,
                             std::vector<at::Tensor>* abs_sums) const {
  const int64_t k = find(t);
  if (k <= -2) {
    const auto d = static_cast<size_t>(-2 - k);
    const at::Tensor full = per_sample.materialise();
    for (size_t j = 0; j < rec_.derived[d].params.size(); ++j)
      if (derived_jac_[d][j].defined())
        route(rec_.derived[d].params[j], {full * derived_jac_[d][j].reshape({1, 1, -1}), {}, {}},
              out, sums, abs_sums);
    return;
  }
  if (k < 0) return;
  const int64_t numel = layout_.tensors[k].numel();
  if (per_sample.entries() != numel)
    fail("internal: per-sample gradient of '{}' has {} entries per sample, the parameter {}",
         layout_.names[k], per_sample.entries(), numel);
  per_sample.add_to(out.narrow(2, layout_.offsets[k], numel));
  if (sums) {
    const at::Tensor first = per_sample.row(0);
    (*sums)[k] = (*sums)[k] + first.sum(0);
    (*abs_sums)[k] = (*abs_sums)[k] + first.abs().sum(0);
  }
}

std::string BatchedGradients::accumulate(const at::Tensor& f, const at::Tensor& cot,
                                         at::Tensor& out, bool check) {
  std::vector<at::Tensor> inputs;
  for (size_t j : used_) inputs.push_back(rec_.records[j].output);
  const size_t outputs = inputs.size();
  if (check) inputs.insert(inputs.end(), layout_.tensors.begin(), layout_.tensors.end());
  // One backward per cotangent row; the first also takes the batch gradient when checking.
  const int64_t m = cot.size(1);
  std::vector<std::vector<at::Tensor>> g(outputs);
  std::vector<at::Tensor> batch;
  for (int64_t r = 0; r < m; ++r) {
    const auto gr = torch::autograd::grad(
        {f}, r == 0 ? inputs : std::vector<at::Tensor>(inputs.begin(), inputs.begin() + outputs),
        {cot.select(1, r).contiguous()}, /*retain_graph=*/r + 1 < m, /*create_graph=*/false,
        /*allow_unused=*/true);
    for (size_t j = 0; j < outputs; ++j) g[j].push_back(gr[j]);
    if (r == 0) batch.assign(gr.begin() + static_cast<std::ptrdiff_t>(outputs), gr.end());
  }
  std::vector<at::Tensor> sums, abs_sums;
  if (check)
    for (const auto& t : layout_.tensors) {
      sums.push_back(at::zeros({t.numel()}, t.options()));
      abs_sums.push_back(at::zeros({t.numel()}, t.options()));
    }
  for (size_t j = 0; j < outputs; ++j) {
    if (!g[j][0].defined()) continue;  // an output that does not reach f
    const Record& r = rec_.records[used_[j]];
    const at::Tensor gj = at::stack(g[j], 1);
    g[j].clear();
    const int64_t n = gj.size(0), piece = piece_size(r, gj);
    for (int64_t s = 0; s < n; s += piece) {
      const int64_t len = std::min(piece, n - s);
      at::Tensor o = out.narrow(0, s, len);
      PerSampleGrad dw, db;
      per_sample_grads(r, r.input.narrow(0, s, len), gj.narrow(0, s, len), &dw, &db);
      route(r.weight, dw, o, check ? &sums : nullptr, &abs_sums);
      if (db.defined()) route(r.bias, db, o, check ? &sums : nullptr, &abs_sums);
    }
  }
  if (!check) return "";
  // Sums of N terms in another order: rounding of a few eps per term, measured against the
  // terms' magnitudes. A parameter used outside the recorded ops misses whole terms.
  const double tol = out.scalar_type() == at::kDouble ? 1e-10 : 1e-4;
  for (size_t k = 0; k < layout_.tensors.size(); ++k) {
    const at::Tensor want = batch[k].defined() ? batch[k].reshape(-1) : at::zeros_like(sums[k]);
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
