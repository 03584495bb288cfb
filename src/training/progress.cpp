// Training's progress lines (src/training/progress.h).
#include "src/training/progress.h"

#include <ATen/ATen.h>
#include <fmt/format.h>

#include <algorithm>
#include <cmath>
#include <cstdio>

#include "src/io/rundir.h"

namespace ng {
namespace {

double seconds(TrainProgress::Clock::duration d) {
  return std::chrono::duration<double>(d).count();
}

TrainProgress::Clock::duration after(double s) {
  return std::chrono::duration_cast<TrainProgress::Clock::duration>(
      std::chrono::duration<double>(s));
}

}  // namespace

TrainProgress::TrainProgress(const ProgressSettings& s, int64_t step, int64_t checkpoint_step)
    : s_(s),
      last_line_(Clock::now()),
      next_line_(last_line_ + after(s.tty ? kTtySeconds : kLogSeconds)),
      checkpoint_time_(last_line_),
      last_line_step_(step),
      checkpoint_step_(checkpoint_step) {}

void TrainProgress::add_batch_loss(const at::Tensor& loss) {
  const at::Tensor l = loss.detach();
  if (l.is_cpu()) {
    // Read in place: this runs every step, and tiny models take microseconds a step on the CPU.
    const double v = l.scalar_type() == at::kDouble  ? *l.data_ptr<double>()
                     : l.scalar_type() == at::kFloat ? double(*l.data_ptr<float>())
                                                     : l.item<double>();
    loss_avg_ = losses_ == 0 ? v : loss_avg_ + kLossWeight * (v - loss_avg_);
  } else if (losses_ == 0) {
    loss_avg_device_ = l.clone();
  } else {
    loss_avg_device_.lerp_(l, kLossWeight);
  }
  ++losses_;
}

double TrainProgress::running_loss() {
  if (losses_ == 0) return NAN;
  return loss_avg_device_.defined() ? loss_avg_device_.item<double>() : loss_avg_;
}

void TrainProgress::checkpoint_saved(int64_t step) {
  checkpoint_step_ = step;
  checkpoint_time_ = Clock::now();
}

void TrainProgress::evaluation(int64_t step, double loss, double accuracy) {
  recent_.emplace_back(step, loss > 0 ? std::log(loss) : NAN);
  if (recent_.size() > 6) recent_.erase(recent_.begin());
  const std::string acc = accuracy < 0 ? "" : fmt::format(" acc {:.1f}%", 100 * accuracy);
  const std::string part = fmt::format("loss {:.3e}{}", loss, acc);
  line(step, &part);
}

void TrainProgress::evaluating(int64_t step, int64_t done, int64_t n) {
  const Clock::time_point now = Clock::now();
  if (now < next_line_) return;
  // The step rate stays that of the steps: last_line_ is not moved.
  next_line_ = now + after(s_.tty ? kTtySeconds : kLogSeconds);
  fmt::print(stderr, "{}step {}/{} | evaluating the training loss: {}/{} samples | {}{}",
             s_.tty ? "\r" : "", step, s_.max_steps, done, n, checkpoint_text(now),
             s_.tty ? "\x1b[K" : "\n");
  std::fflush(stderr);
}

std::string TrainProgress::checkpoint_text(Clock::time_point now) const {
  return checkpoint_step_ < 0
             ? "no checkpoint yet"
             : "checkpoint " + format_duration(seconds(now - checkpoint_time_)) + " ago";
}

// ETA to the target from the log-linear decrease of the loss over the last evaluations (SGD's
// loss is noisy from one evaluation to the next), else to the step cap.
std::string TrainProgress::eta_text(int64_t step, double rate) const {
  if (!(rate > 0)) return "ETA ?";
  const double to_cap = (s_.max_steps - step) / rate;
  if (!recent_.empty()) {
    const auto& [s0, l0] = recent_.front();
    const auto& [s1, l1] = recent_.back();
    const double slope =
        s1 > s0 && std::isfinite(l0) && std::isfinite(l1) ? (l0 - l1) / (s1 - s0) : 0;
    if (slope > 0 && l1 > std::log(s_.target_loss)) {
      const double steps_needed =
          std::max(0.0, (l1 - std::log(s_.target_loss)) / slope - double(step - s1));
      return "ETA " + format_duration(std::min(to_cap, steps_needed / rate));
    }
  }
  return "ETA <=" + format_duration(to_cap);
}

void TrainProgress::line(int64_t step, const std::string* eval_part) {
  const Clock::time_point now = Clock::now();
  const double dt = seconds(now - last_line_);
  if (step > last_line_step_ && dt > 0) rate_ = (step - last_line_step_) / dt;
  last_line_ = now;
  last_line_step_ = step;
  next_line_ = now + after(s_.tty ? kTtySeconds : kLogSeconds);

  const int64_t next_eval = std::min(s_.max_steps, (step / s_.eval_every + 1) * s_.eval_every);
  const std::string rate = rate_ > 0 ? fmt::format("{:.0f} steps/s", rate_) : "? steps/s";
  const std::string eval_in =
      rate_ > 0 ? "eval in " + format_duration((next_eval - step) / rate_) : "eval in ?";
  const std::string ckpt = checkpoint_text(now);
  const double running = running_loss();
  const std::string batch =
      std::isfinite(running) ? fmt::format("batch loss ~{:.3e}", running) : "batch loss ?";
  const std::string text =
      fmt::format("step {}/{} epoch {:.1f} | {}{}{} | {} | {} | {} | {}", step, s_.max_steps,
                  double(step) / s_.per_epoch, eval_part ? *eval_part : "", eval_part ? " | " : "",
                  batch, rate, eval_in, ckpt, eta_text(step, rate_));
  fmt::print(stderr, "{}{}{}", s_.tty ? "\r" : "", text, s_.tty ? "\x1b[K" : "\n");
  std::fflush(stderr);
}

}  // namespace ng
