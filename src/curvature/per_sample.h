// Per-sample parameter gradients of a whole batch from one forward pass and one backward pass per
// cotangent row (the technique of BackPACK's BatchGrad and Opacus's grad samplers). The forward
// runs with the layer functions of models/layers.h recording each parametrised op's input and
// output; a backward of the batch with cotangent rows u_i gives dl/dz at every recorded output z
// for all samples at once, and the per-sample gradient of u_i . f_i follows per op in closed form:
//   Linear  dW_i = g_i^T x_i (summed over extra dims), db_i = sum g_i
//   Conv2d  dW_i = g_i unfold(x_i)^T (im2col), db_i = g_i summed over positions
//   x + p   dp_i = g_i summed to p's shape;   x * p   dp_i = (g_i x_i) summed to p's shape
// Weight sharing adds up, and derived tensors (layers::elementwise_of) pass their gradients on
// through the diagonal Jacobian. A model whose parameters are not all reached this way is
// reported by coverage_problem(), and the caller falls back to one sample at a time.
#pragma once

#include <ATen/core/Tensor.h>

#include <cstdint>
#include <functional>
#include <string>
#include <unordered_map>
#include <vector>

#include "models/layers.h"
#include "models/params.h"

namespace ng {

struct PerSampleGrad;

class BatchedGradients {
 public:
  explicit BatchedGradients(const ParameterLayout& layout);

  // Runs `forward` (the model on one batch, grad mode on) with the layer functions recording;
  // returns its output with the graph. Replaces the previous batch's record.
  at::Tensor record(const std::function<at::Tensor()>& forward);
  // After record(): why the recorded ops do not give every parameter's gradient ("" when they
  // do), naming the first parameter they miss.
  std::string coverage_problem() const;
  // out (N, m, p) += the per-sample gradients of cot_ir . f_i (f: record()'s output, cot:
  // (N, m, C)), from m backward passes. With `check` the first also takes the batch gradient,
  // and a mismatch with the per-sample sum is returned as text ("" when they agree): a
  // parameter that some op outside models/layers.h uses as well. Holds dl/dz of every
  // recorded output for the m rows at once (m times one batch's activations).
  std::string accumulate(const at::Tensor& f, const at::Tensor& cot, at::Tensor& out, bool check);

 private:
  // Layout index of a parameter, or -1; derived tensors give -2 - (index into derived).
  int64_t find(const at::Tensor& t) const;
  void route(const at::Tensor& t, const PerSampleGrad& per_sample, at::Tensor& out,
             std::vector<at::Tensor>* sums, std::vector<at::Tensor>* abs_sums) const;

  const ParameterLayout& layout_;
  std::unordered_map<const void*, int64_t> index_;
  layers::Recorder rec_;
  std::vector<size_t> used_;  // records with at least one parameter of the layout
  // Per derived tensor and parameter: d value / d param, elementwise (taken at record time,
  // before a backward frees the graph).
  std::vector<std::vector<at::Tensor>> derived_jac_;
};

}  // namespace ng
