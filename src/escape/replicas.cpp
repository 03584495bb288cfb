// The batched replicas of src/escape/replicas.h.
#include "src/escape/replicas.h"

#include <ATen/ATen.h>
#include <fmt/format.h>
#include <torch/csrc/autograd/autograd.h>

#include <exception>
#include <utility>

namespace ng::escape_detail {

ReplicaBatch::ReplicaBatch(NetImpl& model, const ParameterLayout& layout, int64_t count)
    : model_(model), layout_(layout) {
  replicas_.count = count;
  for (const auto& t : layout.tensors) {
    std::vector<int64_t> shape{count};
    shape.insert(shape.end(), t.sizes().begin(), t.sizes().end());
    stacks_.push_back(t.detach().unsqueeze(0).expand(shape).clone().requires_grad_(true));
  }
  rebind();
}

void ReplicaBatch::rebind() {
  replicas_.stacked.clear();
  for (size_t k = 0; k < stacks_.size(); ++k)
    replicas_.stacked[layout_.tensors[k].unsafeGetTensorImpl()] = stacks_[k];
}

void ReplicaBatch::load(int64_t r, const at::Tensor& theta) {
  at::NoGradGuard no_grad;
  const auto parts = layout_.split(theta);
  for (size_t k = 0; k < parts.size(); ++k) stacks_[k].select(0, r).copy_(parts[k]);
}

at::Tensor ReplicaBatch::values(int64_t r) const {
  std::vector<at::Tensor> flat;
  for (const auto& s : stacks_) flat.push_back(s.detach().select(0, r).reshape(-1));
  return at::cat(flat);
}

void ReplicaBatch::keep(const std::vector<int64_t>& rows) {
  if (static_cast<int64_t>(rows.size()) == count()) return;
  const at::Tensor idx =
      at::tensor(rows, at::TensorOptions().dtype(at::kLong)).to(stacks_.front().device());
  for (auto& s : stacks_) s = s.detach().index_select(0, idx).requires_grad_(true);
  replicas_.count = static_cast<int64_t>(rows.size());
  rebind();
}

at::Tensor ReplicaBatch::forward(const at::Tensor& x) {
  layers::ReplicaMode mode(replicas_);
  return model_.forward(x);
}

void ReplicaBatch::clear_gradients() {
  for (auto& s : stacks_) s.mutable_grad() = at::Tensor();
}

void ReplicaBatch::step(double lr) {
  at::NoGradGuard no_grad;
  for (auto& s : stacks_)
    if (s.grad().defined()) s.add_(s.grad(), -lr);
}

std::string ReplicaBatch::problems() const {
  std::string out;
  for (const auto& why : replicas_.refused) out += (out.empty() ? "" : "; ") + why;
  for (size_t k = 0; k < stacks_.size(); ++k)
    if (!replicas_.used.count(layout_.tensors[k].unsafeGetTensorImpl()))
      out += fmt::format("{}parameter {} used outside the layer functions", out.empty() ? "" : "; ",
                         layout_.names[k]);
  return out;
}

at::Tensor replica_losses(const at::Tensor& out, const at::Tensor& target, const at::Tensor& label,
                          LossKind loss, int64_t count) {
  if (loss == LossKind::CrossEntropy)
    return at::cross_entropy_loss(out, label, {}, at::Reduction::None).reshape({count, -1}).mean(1);
  return (out - target).pow(2).sum(1).reshape({count, -1}).mean(1) * 0.5;
}

std::string replica_refusal(NetImpl& model, const ParameterLayout& layout, const at::Tensor& x) {
  // Two replicas at the model's own theta on different samples: the rows of each must be what
  // the model gives on its samples alone (a parameter-free op that mixes samples fails this).
  const at::Tensor a = x, b = x.flip(0);
  try {
    ReplicaBatch batch(model, layout, 2);
    const at::Tensor out = batch.forward(at::cat({a, b}));
    std::string why = batch.problems();
    if (why.empty()) {
      const auto leaked = torch::autograd::grad({out.sum()}, layout.tensors, {}, false, false,
                                                /*allow_unused=*/true);
      for (size_t k = 0; k < leaked.size(); ++k)
        if (leaked[k].defined())
          why = fmt::format("parameter {} used outside the layer functions", layout.names[k]);
    }
    if (!why.empty()) return why;
    at::NoGradGuard no_grad;
    const at::Tensor want = at::cat({model.forward(a), model.forward(b)});
    const double scale = 1.0 + want.abs().max().item<double>();
    if (!(out.detach().sub(want).abs().max().item<double>() <= 1e-4 * scale))
      return "its replicated outputs differ from its own (an op mixes samples?)";
    return "";
  } catch (const std::exception& e) {
    const std::string what = e.what();
    return "its forward pass failed replicated: " + what.substr(0, what.find('\n'));
  }
}

}  // namespace ng::escape_detail
