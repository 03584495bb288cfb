// The training loss: its kinds with their names, and the one definition of its value on a batch of
// model outputs, which training, evaluation, escapes and the curvature operators all use.
#pragma once

#include <ATen/core/Tensor.h>

#include "src/core/names.h"

namespace ng {

enum class LossKind { Mse, CrossEntropy };
// "mse", "cross_entropy" (configs: train.loss; escape.json: loss).
const NameTable<LossKind>& loss_names();

// The paper's loss of a batch, averaged over its samples: 1/2 |f - y|^2 summed over outputs, or
// cross entropy of the logits against the class `label`. Training, evaluation and escapes.
at::Tensor batch_loss(const at::Tensor& out, const at::Tensor& target, const at::Tensor& label,
                      LossKind loss);

// The same loss per sample, (n), with cross entropy against a target distribution `target` (one-hot
// rows for labels) instead of a class index: the curvature operators' L, which may be taken at
// soft targets.
at::Tensor sample_losses(const at::Tensor& out, const at::Tensor& target, LossKind loss);

// The sum of sample_losses over the batch, as one reduction: what the operators differentiate for
// grad L and Hessian products. (Summing sample_losses instead would add in another order and
// change the last bits of every product.)
at::Tensor summed_loss(const at::Tensor& out, const at::Tensor& target, LossKind loss);

}  // namespace ng
