// ParameterLayout of params.h: a module's trainable parameters as one flat vector.
#include "models/params.h"

#include <ATen/ATen.h>
#include <torch/nn/module.h>

#include "src/core/error.h"

namespace ng {

ParameterLayout ParameterLayout::of(const torch::nn::Module& m) {
  ParameterLayout l;
  for (const auto& item : m.named_parameters(/*recurse=*/true)) {
    if (!item.value().requires_grad()) continue;
    l.names.push_back(item.key());
    l.tensors.push_back(item.value());
    l.offsets.push_back(l.size);
    l.size += item.value().numel();
  }
  return l;
}

std::vector<at::Tensor> ParameterLayout::split(const at::Tensor& v) const {
  if (v.dim() != 1 || v.size(0) != size)
    fail("parameters: expected a flat vector of {} entries, got {}", size, v.numel());
  std::vector<at::Tensor> out;
  out.reserve(tensors.size());
  for (size_t k = 0; k < tensors.size(); ++k)
    out.push_back(v.narrow(0, offsets[k], tensors[k].numel()).view(tensors[k].sizes()));
  return out;
}

void ParameterLayout::add_into(at::Tensor& out, const std::vector<at::Tensor>& parts) const {
  for (size_t k = 0; k < parts.size() && k < tensors.size(); ++k)
    if (parts[k].defined())
      out.narrow(0, offsets[k], tensors[k].numel()).add_(parts[k].reshape(-1));
}

at::Tensor ParameterLayout::values() const {
  std::vector<at::Tensor> flat;
  for (const auto& t : tensors) flat.push_back(t.detach().reshape(-1));
  if (flat.empty()) return at::zeros({0});
  return at::cat(flat);
}

void ParameterLayout::set_values(const at::Tensor& v) const {
  at::NoGradGuard no_grad;
  const auto parts = split(v);
  for (size_t k = 0; k < tensors.size(); ++k) tensors[k].detach().copy_(parts[k]);
}

at::Tensor ParameterLayout::gradients() const {
  std::vector<at::Tensor> flat;
  for (const auto& t : tensors)
    flat.push_back(t.grad().defined() ? t.grad().reshape(-1) : at::zeros_like(t).reshape(-1));
  if (flat.empty()) return at::zeros({0});
  return at::cat(flat);
}

void ParameterLayout::set_gradients(const at::Tensor& g) const {
  const auto parts = split(g);
  for (size_t k = 0; k < tensors.size(); ++k) {
    at::Tensor t = tensors[k];
    if (t.grad().defined())
      t.mutable_grad().copy_(parts[k]);
    else
      t.mutable_grad() = parts[k].clone();
  }
}

}  // namespace ng
