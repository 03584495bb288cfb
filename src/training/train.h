// Constant-learning-rate SGD to a sharp minimum (Appendix A of the paper), into a run directory.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

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
  std::string status;  // converged | max_steps | diverged | interrupted
  int64_t steps = 0;
  double final_loss = 0;
  double wall_seconds = 0;
  std::string message;  // why it stopped, one line
};

// Trains and writes the run directory; throws ng::Error for bad input. A diverged or interrupted
// run returns normally with that status (the caller turns it into a non-zero exit).
TrainResult train(const TrainOptions& opt);

// "auto" resolves to CUDA when a GPU is usable, else CPU; "cuda" without a GPU is an error.
std::string resolve_device(const std::string& requested, const std::string& origin);

// Shuffled order of `n` samples for one epoch, identical on every platform for (seed, epoch).
std::vector<int64_t> epoch_permutation(int64_t n, uint64_t seed, int64_t epoch);

}  // namespace ng
