// The progress lines of a training run: one at every evaluation and, between them, one every few
// seconds (on a terminal, rewriting one line) or every half minute (in a log), with steps/s, the
// running batch loss, the time to the next evaluation, the checkpoint's age and the ETA.
#pragma once

#include <ATen/core/Tensor.h>

#include <chrono>
#include <cstdint>
#include <string>
#include <utility>
#include <vector>

namespace ng {

struct ProgressSettings {
  int64_t max_steps = 0, per_epoch = 1, eval_every = 1;
  double target_loss = 0;
  bool tty = false;  // rewrite one line instead of appending lines
};

class TrainProgress {
 public:
  using Clock = std::chrono::steady_clock;
  // `step` is where the run starts; `checkpoint_step` the checkpoint it resumed from (-1: none).
  TrainProgress(const ProgressSettings& s, int64_t step, int64_t checkpoint_step);

  // Every step: the batch loss joins the running average where it lives (on a GPU it stays a
  // device tensor, read only when a line is printed, so no step waits for the device).
  void add_batch_loss(const at::Tensor& loss);
  // Every step, after the update: prints a line when one is due.
  void tick(int64_t step) {
    if (Clock::now() >= next_line_) line(step, nullptr);
  }
  // An evaluation's line (always printed); loss and accuracy as evaluated, accuracy < 0: none.
  void evaluation(int64_t step, double loss, double accuracy);
  // During an evaluation (`done` of n samples): a line when one is due, as between steps.
  void evaluating(int64_t step, int64_t done, int64_t n);
  void checkpoint_saved(int64_t step);

  // Seconds between heartbeat lines: a terminal line is cheap to rewrite, a log should stay short.
  static constexpr double kTtySeconds = 2, kLogSeconds = 30;
  // The running loss's weight on each new batch: it averages about the last 50 steps.
  static constexpr double kLossWeight = 0.02;

 private:
  void line(int64_t step, const std::string* eval_part);
  std::string eta_text(int64_t step, double rate) const;
  std::string checkpoint_text(Clock::time_point now) const;
  double running_loss();

  ProgressSettings s_;
  Clock::time_point last_line_, next_line_, checkpoint_time_;
  int64_t last_line_step_ = 0, checkpoint_step_ = -1;
  double rate_ = 0;  // steps/s between the last two lines
  // The running batch loss: a host number for CPU losses, else a device tensor.
  double loss_avg_ = 0;
  at::Tensor loss_avg_device_;
  int64_t losses_ = 0;
  std::vector<std::pair<int64_t, double>> recent_;  // (step, log loss) of the last evaluations
};

}  // namespace ng
