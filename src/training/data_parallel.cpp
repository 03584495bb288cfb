// Data-parallel SGD (data_parallel.h): each rank's share of the batch, one all-reduce per step of
// the gradients and loss packed into one flat buffer, and rank 0's start point and stop shared.
#include "src/training/data_parallel.h"

#include <ATen/ATen.h>

#include "src/core/error.h"
#include "src/dist/dist.h"
#include "src/training/sgd.h"

namespace ng {

namespace {
// The stop the ranks agreed on in the last step's all-reduce (the same on every rank).
StopReason last_vote = StopReason::None;
}  // namespace

at::Tensor data_parallel_gradient(NetImpl& model, const ParameterLayout& layout,
                                  const at::Tensor& x, const at::Tensor& y,
                                  const at::Tensor& labels, const at::Tensor& idx, LossKind loss) {
  if (!dist().active()) return sgd_gradient(model, layout.tensors, x, y, labels, idx, loss);
  const int64_t b = idx.size(0);
  if (b < dist().world)
    fail("train.batch_size: a batch of {} samples cannot be split over WORLD_SIZE={} ranks", b,
         dist().world);
  // The global loss is the mean over b samples: (n_r / b) times this rank's mean, summed.
  const Range part = shard(b);
  const double weight = static_cast<double>(part.size()) / static_cast<double>(b);
  const at::Tensor value = sgd_gradient(model, layout.tensors, x, y, labels,
                                        idx.narrow(0, part.begin, part.size()), loss);
  // The ranks' stop votes ride on the same all-reduce: a second collective per step only to agree
  // on stopping cost as much as the gradients of a small model. They are scaled by the weight
  // with the rest, which keeps a vote positive (every rank has a part: b >= world).
  const StopReason mine = stop_requested();
  const at::Tensor grads = layout.gradients();
  at::Tensor sum = at::cat({grads, value.detach().reshape(1).to(grads.scalar_type()),
                            at::tensor({mine == StopReason::Signal ? 1.0 : 0.0,
                                        mine == StopReason::Budget ? 1.0 : 0.0},
                                       grads.options())})
                       .mul_(weight);
  all_reduce_sum(sum);
  const at::Tensor votes = sum.narrow(0, layout.size + 1, 2).to(at::kCPU);
  last_vote = votes[0].item<double>() > 0   ? StopReason::Signal
              : votes[1].item<double>() > 0 ? StopReason::Budget
                                            : StopReason::None;
  layout.set_gradients(sum.narrow(0, 0, layout.size));
  return sum.narrow(0, layout.size, 1).reshape({});
}

StopReason agreed_stop(StopReason mine) {
  return dist().active() ? last_vote : mine;
}

std::string agreed_stop_description(StopReason agreed) {
  const std::string mine = stop_description();
  if (!mine.empty() || agreed == StopReason::None) return mine;
  return agreed == StopReason::Signal ? "another rank was interrupted"
                                      : "another rank's time budget was spent";
}

void share_parameters(const ParameterLayout& layout) {
  if (!dist().active()) return;
  at::Tensor theta = layout.values();
  broadcast(theta);
  layout.set_values(theta);
}

void share_start(const ParameterLayout& layout, int64_t& step, double& initial_loss,
                 double& wall_before) {
  if (!dist().active()) return;
  share_parameters(layout);
  at::Tensor counters = at::tensor({static_cast<double>(step), initial_loss, wall_before},
                                   at::TensorOptions().dtype(at::kDouble));
  broadcast(counters);
  step = static_cast<int64_t>(counters[0].item<double>());
  initial_loss = counters[1].item<double>();
  wall_before = counters[2].item<double>();
}

}  // namespace ng
