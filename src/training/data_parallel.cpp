// Data-parallel SGD (data_parallel.h): each rank's share of the batch, one all-reduce per step of
// the gradients and loss packed into one flat buffer, and rank 0's start point and stop shared.
#include "src/training/data_parallel.h"

#include <ATen/ATen.h>
#include <fmt/format.h>
#include <unistd.h>

#include <algorithm>
#include <filesystem>

#include "src/core/error.h"
#include "src/dist/dist.h"
#include "src/io/files.h"
#include "src/training/sgd.h"

namespace fs = std::filesystem;

namespace ng {

namespace {
// The stop the ranks agreed on in the last step's all-reduce (the same on every rank).
StopReason last_vote = StopReason::None;
}  // namespace

at::Tensor data_parallel_gradient(NetImpl& model, const std::vector<at::Tensor>& params,
                                  const at::Tensor& x, const at::Tensor& y,
                                  const at::Tensor& labels, const at::Tensor& idx, LossKind loss) {
  if (!dist().active()) return sgd_gradient(model, params, x, y, labels, idx, loss);
  const int64_t b = idx.size(0);
  if (b < dist().world)
    fail("train.batch_size: a batch of {} samples cannot be split over WORLD_SIZE={} ranks", b,
         dist().world);
  // The global loss is the mean over b samples: (n_r / b) times this rank's mean, summed.
  const Range part = shard(b);
  const double weight = static_cast<double>(part.size()) / static_cast<double>(b);
  const at::Tensor value =
      sgd_gradient(model, params, x, y, labels, idx.narrow(0, part.begin, part.size()), loss);
  std::vector<at::Tensor> flat;
  for (const at::Tensor& p : params)
    flat.push_back(p.grad().defined() ? p.grad().reshape(-1) : at::zeros_like(p).reshape(-1));
  flat.push_back(value.detach().reshape(1));
  at::Tensor sum = at::cat(flat).mul_(weight);
  // The ranks' stop votes ride on the same all-reduce (unweighted counts): a second collective
  // per step only to agree on stopping cost as much as the gradients of a small model.
  const StopReason mine = stop_requested();
  sum = at::cat({sum, at::tensor({mine == StopReason::Signal ? 1.0 : 0.0,
                                  mine == StopReason::Budget ? 1.0 : 0.0},
                                 sum.options())});
  all_reduce_sum(sum);
  const at::Tensor votes = sum.narrow(0, sum.size(0) - 2, 2).to(at::kCPU);
  last_vote = votes[0].item<double>() > 0   ? StopReason::Signal
              : votes[1].item<double>() > 0 ? StopReason::Budget
                                            : StopReason::None;
  int64_t at = 0;
  for (const at::Tensor& p : params) {
    const int64_t n = p.numel();
    if (!p.grad().defined()) p.mutable_grad() = at::zeros_like(p);
    p.mutable_grad().copy_(sum.narrow(0, at, n).view_as(p));
    at += n;
  }
  return sum.narrow(0, at, 1).reshape({});
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

void share_start(NetImpl& model, int64_t& step, double& initial_loss, double& wall_before) {
  if (!dist().active()) return;
  at::NoGradGuard no_grad;
  for (at::Tensor p : model.parameters()) {
    at::Tensor t = p.detach();
    broadcast(t);
  }
  at::Tensor counters = at::tensor({static_cast<double>(step), initial_loss, wall_before},
                                   at::TensorOptions().dtype(at::kDouble));
  broadcast(counters);
  step = static_cast<int64_t>(counters[0].item<double>());
  initial_loss = counters[1].item<double>();
  wall_before = counters[2].item<double>();
}

namespace {

// Removes the other ranks' scratch directories when the process ends.
struct Scratch {
  std::vector<std::string> dirs;
  ~Scratch() {
    for (const std::string& d : dirs) remove_tree(d);
  }
};

}  // namespace

std::string run_directory_of_rank(const std::string& root) {
  if (dist().is_root()) return root;
  static Scratch scratch;
  const std::string dir =
      (fs::temp_directory_path() /
       fmt::format("noisegeom-rank{}-{}", dist().rank, static_cast<int64_t>(::getpid())))
          .string();
  scratch.dirs.push_back(dir);
  return dir;
}

}  // namespace ng
