// Flat parameter vectors (the models layer: they describe a model's parameters, and training as
// well as the curvature operators use them). Every p-vector of this tool (eigenvectors, theta -
// theta*, Lanczos vectors) orders the trainable parameters as Module::named_parameters() lists them
// (registration order, depth first through submodules), each tensor flattened row-major. Parameters
// with requires_grad = false are not part of theta and are left out.
#pragma once

#include <ATen/core/Tensor.h>

#include <cstdint>
#include <string>
#include <vector>

namespace torch {
namespace nn {
class Module;
}
}  // namespace torch

namespace ng {

struct ParameterLayout {
  std::vector<std::string> names;
  std::vector<at::Tensor> tensors;  // the module's own parameters (shared storage)
  std::vector<int64_t> offsets;     // start of each tensor in the flat vector
  int64_t size = 0;                 // p

  static ParameterLayout of(const torch::nn::Module& m);
  // Per-parameter views into the flat vector `v` (no copy), shaped like the parameters.
  std::vector<at::Tensor> split(const at::Tensor& v) const;
  // out += parts, flattened (undefined entries skipped).
  void add_into(at::Tensor& out, const std::vector<at::Tensor>& parts) const;
  // Current theta as one detached flat copy.
  at::Tensor values() const;
  // theta <- the flat vector `v` (a copy into the parameters; no autograd history).
  void set_values(const at::Tensor& v) const;
  // The gradients as one flat copy, zeros for a parameter without one (it took no part in the
  // last backward pass).
  at::Tensor gradients() const;
  // Every parameter's gradient <- its part of the flat vector `g` (a copy).
  void set_gradients(const at::Tensor& g) const;
};

}  // namespace ng
