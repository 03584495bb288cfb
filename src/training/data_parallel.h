// Data-parallel training over the ranks of src/dist: every rank takes a contiguous share of the
// same global batch, and the gradients are summed so that every rank takes the step one process
// would take (to rounding); the start point and the decision to stop are rank 0's and shared.
// One process: every function is what training has always done, bit for bit.
#pragma once

#include <ATen/core/Tensor.h>

#include <cstdint>
#include <string>

#include "models/model.h"
#include "models/params.h"
#include "src/core/stop.h"
#include "src/training/loss.h"

namespace ng {

// sgd_gradient of the global batch `idx`: this rank's part of it, then one all-reduce of the
// gradients and the loss, each part weighted by its share of the batch (batch_loss is a mean).
// Throws ng::Error when the batch has fewer samples than there are ranks.
at::Tensor data_parallel_gradient(NetImpl& model, const ParameterLayout& layout,
                                  const at::Tensor& x, const at::Tensor& y,
                                  const at::Tensor& labels, const at::Tensor& idx, LossKind loss);

// The strongest stop any rank was asked for (a signal before a budget), on every rank: ranks
// that stopped at different steps would wait for each other's next step forever. Under a
// launcher, the votes taken in the last data_parallel_gradient's all-reduce (no collective of
// its own); one process: `mine`.
StopReason agreed_stop(StopReason mine);
// stop_description() of this rank, or of the stop `agreed` that another rank was asked for.
std::string agreed_stop_description(StopReason agreed);

// Rank 0's values of `layout`'s parameters on every rank (one broadcast); nothing in one process.
void share_parameters(const ParameterLayout& layout);

// Rank 0's parameters and start counters on every rank (a fresh draw or the checkpoint that rank
// 0 alone read): with the same step every rank also draws the same batches, and plain SGD has no
// other state, so every rank continues exactly where one process would.
void share_start(const ParameterLayout& layout, int64_t& step, double& initial_loss,
                 double& wall_before);

}  // namespace ng
