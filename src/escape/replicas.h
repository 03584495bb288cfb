// Internal to src/escape: R escape runs advanced together on one batched model. The stacked
// parameters (R, ...) of the runs stand in for a replica model's own parameters through
// models/layers.h's replica mode, so one forward pass over R batches (R B samples, replica-major),
// one backward pass of the sum of the R mean losses (each replica's gradient is its own) and one
// update serve all R runs. Models whose layers cannot run replicated are refused up front and the
// engine runs them one at a time as before.
#pragma once

#include <ATen/core/Tensor.h>

#include <cstdint>
#include <string>
#include <vector>

#include "models/layers.h"
#include "models/model.h"
#include "models/params.h"
#include "src/training/loss.h"

namespace ng::escape_detail {

class ReplicaBatch {
 public:
  // `model` runs the batch; its own parameters (`layout`) are never changed by it.
  ReplicaBatch(NetImpl& model, const ParameterLayout& layout, int64_t count);

  int64_t count() const { return replicas_.count; }
  const std::vector<at::Tensor>& stacks() const { return stacks_; }
  void load(int64_t r, const at::Tensor& theta);  // flat theta (model dtype) into replica r
  at::Tensor values(int64_t r) const;             // replica r's flat theta, detached
  // Keeps only the replicas at `rows` (ascending), in that order.
  void keep(const std::vector<int64_t>& rows);
  // The outputs of x (count * B samples, replica-major): each replica's B rows by its own theta.
  at::Tensor forward(const at::Tensor& x);
  void clear_gradients();
  void step(double lr);  // theta <- theta - lr * grad, every replica
  // What the last forward passes could not replicate, and the parameters they did not reach.
  std::string problems() const;

 private:
  NetImpl& model_;
  const ParameterLayout& layout_;
  std::vector<at::Tensor> stacks_;  // one (count, shape) leaf per parameter, layout order
  layers::Replicas replicas_;
  void rebind();  // replicas_.stacked from stacks_
};

// The per-replica mean losses (count) of outputs (count * B, C), each what batch_loss gives on
// that replica's rows.
at::Tensor replica_losses(const at::Tensor& out, const at::Tensor& target, const at::Tensor& label,
                          LossKind loss, int64_t count);

// Why `model` cannot run replicated ("" when it can), from a probe on the samples x (a few):
// an op refused, a parameter used outside the layer functions, or per-sample results that differ
// from the model's own forward passes.
std::string replica_refusal(NetImpl& model, const ParameterLayout& layout, const at::Tensor& x);

}  // namespace ng::escape_detail
