// SGD to a sharp minimum (Appendix A of the paper) with a constant learning rate, or along a
// cyclical schedule (Figure 4: train.schedule, src/training/schedule.h), into a run directory.
// train_log.csv's lr column and trace.csv's hold eta(step), the rate of the update that leaves
// that step; a resumed run continues the schedule exactly since it is a function of the step.
#pragma once

#include <ATen/core/Tensor.h>
#include <c10/core/Device.h>

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "data/dataset.h"
#include "models/model.h"
#include "src/core/config.h"
#include "src/io/rundir.h"
#include "src/training/loss.h"

namespace ng {

struct TrainOptions {
  std::string config_path;
  std::vector<std::string> overrides;  // --set key=value, in order
  std::string out_dir;                 // empty: runs/<name>
  std::string data_dir;                // --data-dir
  bool resume = false;
  bool quiet = false;  // no progress lines
};

struct TrainResult {
  std::string run_dir;
  // converged | max_steps | diverged | interrupted (a signal) | budget_spent (--budget); the last
  // two stopped at a checkpoint and write no theta.pt: --resume continues them.
  std::string status;
  int64_t steps = 0;
  double final_loss = 0;
  double wall_seconds = 0;
  std::string message;  // why it stopped, one line
};

// Trains and writes the run directory; throws ng::Error for bad input. A diverged or interrupted
// run returns normally with that status (the caller turns it into a non-zero exit).
TrainResult train(const TrainOptions& opt);

// The name of the run `cfg` describes: its `name`, else the stem of the file it came from.
std::string run_name(const Config& cfg, const std::string& config_path);
// Fails with one line naming RUN_DIR/config.yaml and the keys that differ unless the run there
// was made with `cfg` (names aside: the run's is `name`); `what` and `hint` complete the message.
void require_same_config(const std::string& run_dir, Config cfg, const std::string& name,
                         const std::string& what, const std::string& hint);

// A finished (or checkpointed) run rebuilt for analysis: its resolved config, the exact training
// samples it used, and the model with the saved parameters, on the run's device and dtype.
struct LoadedRun {
  std::string dir;
  Config cfg;
  Dataset data;
  Net model;
  std::string device;  // "cpu" | "cuda"
  at::ScalarType dtype = at::kFloat;
  c10::Device torch_device() const;
};
// `params_file` is relative to the run directory (theta.pt, or checkpoint.pt for an unfinished
// run). Errors name the file: a missing run, a config that no longer parses, a parameter file that
// does not fit the model, training samples that differ from the run's samples.csv.
LoadedRun load_run(const std::string& run_dir, const std::string& data_dir_flag,
                   const std::string& params_file = run_files::kTheta);

// The mean loss (and accuracy, for labels) over x in eval mode, `batch` samples a pass; the sums
// stay on the device until the end (one synchronisation).
struct Eval {
  double loss = 0;
  double accuracy = -1;  // -1: regression, no accuracy
};
// `on_batch(done, n)` runs after each batch (progress over long evaluations; no device sync).
Eval evaluate(NetImpl& model, const at::Tensor& x, const at::Tensor& y, const at::Tensor& labels,
              LossKind loss, int64_t batch,
              const std::function<void(int64_t, int64_t)>& on_batch = {});

// samples.csv (position,index,label,class): which records of the data files the samples at
// `positions` of `data` are, so that anyone can rebuild the set; no positions: every sample.
std::string samples_csv(const Dataset& data, const std::vector<int64_t>& positions = {});

// "auto" resolves to CUDA when a GPU is usable, else CPU; "cuda" without a GPU is an error. The
// result is a device name ("cpu" | "cuda"); torch_device turns it into the device.
std::string resolve_device(const std::string& requested, const std::string& origin);
c10::Device torch_device(const std::string& resolved);

// Shuffled order of `n` samples for one epoch, identical on every platform for (seed, epoch).
std::vector<int64_t> epoch_permutation(int64_t n, uint64_t seed, int64_t epoch);

// SGD's batches: epoch_permutation per epoch, short last batch included. Training and the escape
// runs both draw from it. Each epoch's order is copied to the device once; a batch is a slice.
class BatchOrder {
 public:
  BatchOrder(int64_t n, int64_t batch, uint64_t seed, at::Device device = at::kCPU);
  at::Tensor at(int64_t step);  // sample indices (int64, on the device) of step's batch
  int64_t per_epoch() const { return per_epoch_; }
  int64_t batch() const { return batch_; }

 private:
  int64_t n_, batch_, per_epoch_;
  uint64_t seed_;
  at::Device device_;
  int64_t epoch_ = -1;
  at::Tensor order_;
};

}  // namespace ng
