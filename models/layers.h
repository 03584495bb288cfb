// The parametrised operations of the model zoo as functions that compute exactly what the models
// computed inline and, while a Recording is active on this thread, also note each op's input,
// output and parameters. From those notes src/curvature/per_sample.h forms the per-sample
// gradients of a whole batch from one backward pass (the BackPACK BatchGrad / Opacus technique).
// Without a Recording they cost nothing extra. A parameter used outside these functions is
// simply not noted, and the per-sample code then falls back to one sample at a time.
//
// The same functions also run R models at once (src/escape/replicas.h): while a ReplicaMode is
// active on this thread, every parameter found in its map is replaced by its stack (R, ...) of
// R replicas' values, and inputs carry R * B samples, replica-major (replica r owns rows
// [r B, (r + 1) B)). Linear becomes a batched matrix product over the replicas, Conv2d a grouped
// convolution (on the CPU one convolution per replica), add/mul broadcast each replica's
// parameter over its own rows. Parameter-free ops act per sample and need nothing. What cannot
// be done this way is noted in `refused`.
#pragma once

#include <ATen/core/Tensor.h>
#include <torch/nn/modules/conv.h>
#include <torch/nn/modules/linear.h>

#include <cstdint>
#include <string>
#include <unordered_map>
#include <unordered_set>
#include <vector>

namespace ng::layers {

enum class Op {
  Linear,  // y = x W^T + b over the last dim (W: (out, in), or (in) for y = x w)
  Conv2d,  // y = conv2d(x, W) + b, groups 1, zero padding
  Add,     // y = x + p, p broadcast over x without touching the batch dim
  Mul,     // y = x * p, likewise
};

struct Record {
  Op op;
  at::Tensor input;   // detached
  at::Tensor output;  // in the autograd graph: the backward pass is asked for dl/d(output)
  at::Tensor weight;  // Linear/Conv2d weight, or the Add/Mul parameter
  at::Tensor bias;    // Linear/Conv2d bias, may be undefined
  std::vector<int64_t> kernel, stride, padding, dilation;  // Conv2d
};

// A tensor that is an elementwise function of parameters of its own shape (diag_linear's
// W = alpha^2 - beta^2): its per-sample gradients pass to the parameters through the diagonal
// Jacobian.
struct Derived {
  at::Tensor value;
  std::vector<at::Tensor> params;
};

struct Recorder {
  std::vector<Record> records;
  std::vector<Derived> derived;
  std::vector<std::string> refused;  // ops that ran unrecorded, and why (for the fallback note)
};

// Makes `recorder` the active one on this thread for its lifetime (nesting restores the outer).
class Recording {
 public:
  explicit Recording(Recorder& recorder);
  ~Recording();
  Recording(const Recording&) = delete;
  Recording& operator=(const Recording&) = delete;

 private:
  Recorder* previous_;
};

// The stacked parameters of R replicas, keyed by the replica model's own parameter (its
// TensorImpl), and what a forward pass made of them.
struct Replicas {
  int64_t count = 0;
  std::unordered_map<const void*, at::Tensor> stacked;  // parameter -> (count, parameter shape)
  std::unordered_set<const void*> used;                 // parameters substituted so far
  std::vector<std::string> refused;                     // ops that cannot run replicated, and why
  // Conv2d as one grouped convolution on the CPU too (CUDA always groups; the CPU otherwise runs
  // one convolution per replica, which measured faster there). Tests compare the two.
  bool grouped_conv_on_cpu = false;
};

// Makes `replicas` the active stack on this thread for its lifetime (nesting restores the outer).
// A Recording active at the same time records nothing.
class ReplicaMode {
 public:
  explicit ReplicaMode(Replicas& replicas);
  ~ReplicaMode();
  ReplicaMode(const ReplicaMode&) = delete;
  ReplicaMode& operator=(const ReplicaMode&) = delete;

 private:
  Replicas* previous_;
};

at::Tensor linear(const torch::nn::Linear& layer, const at::Tensor& x);
at::Tensor conv2d(const torch::nn::Conv2d& layer, const at::Tensor& x);
// at::matmul(x, w.t()) (w 2-D) or at::matmul(x, w) (w 1-D), plus b when defined.
at::Tensor linear(const at::Tensor& x, const at::Tensor& w, const at::Tensor& b = {});
at::Tensor add_param(const at::Tensor& x, const at::Tensor& p);  // x + p
at::Tensor mul_param(const at::Tensor& x, const at::Tensor& p);  // x * p
// Returns `value` (computed by the caller from `params`), noted as their elementwise function.
at::Tensor elementwise_of(const at::Tensor& value, std::vector<at::Tensor> params);

}  // namespace ng::layers
