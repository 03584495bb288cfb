// One SGD step, shared by training and the escape runs: the gradient of the mean loss of a batch
// and the constant-learning-rate update theta <- theta - lr * grad.
#pragma once

#include <ATen/core/Tensor.h>

#include <vector>

#include "models/model.h"
#include "src/training/graphed_step.h"
#include "src/training/loss.h"

namespace ng {

// Drops the parameters' gradients, so that the next backward pass sets them afresh.
void clear_gradients(const std::vector<at::Tensor>& params);

// Sets the parameters' gradients to those of batch_loss on the samples `idx` (int64, on the data's
// device) of x, y and labels (labels may be undefined for regression); returns that loss.
at::Tensor sgd_gradient(NetImpl& model, const std::vector<at::Tensor>& params, const at::Tensor& x,
                        const at::Tensor& y, const at::Tensor& labels, const at::Tensor& idx,
                        LossKind loss);

// theta <- theta - lr * grad for every parameter that has a gradient.
void sgd_step(const std::vector<at::Tensor>& params, double lr);

// sgd_gradient then sgd_step as a GraphedStep body: inputs {idx}, key lr. The model and the
// tensors must outlive the body.
GraphedStep::Body sgd_step_body(NetImpl& model, std::vector<at::Tensor> params, at::Tensor x,
                                at::Tensor y, at::Tensor labels, LossKind loss);

}  // namespace ng
