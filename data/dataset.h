// Training data as device-ready tensors: CIFAR-10 from the standard binary files, or the Gaussian
// inputs of the paper's small-scale experiments.
#pragma once

#include <ATen/core/Tensor.h>

#include <cstdint>
#include <string>
#include <vector>

namespace ng {

class Config;

struct Dataset {
  at::Tensor x;             // (n, 3, 32, 32) for CIFAR-10, (n, d) for gaussian; float32 on CPU
  at::Tensor targets;       // (n, C) float32: one-hot labels for classification, y for regression
  at::Tensor labels;        // (n) int64 class labels 0..C-1; undefined for regression
  int64_t num_classes = 0;  // C (target dimension for regression)
  std::vector<int64_t> indices;          // CIFAR-10: global training index (file k holds k*10000..)
  std::vector<int64_t> original_labels;  // CIFAR-10 label before relabelling
  at::Tensor mean, std;                  // per-channel normalisation applied (undefined if none)
  at::Tensor teacher;                    // gaussian: W* (d, outputs) float32 with targets = x W*
  std::string description;               // one line for logs and manifests
  int64_t size() const { return x.defined() ? x.size(0) : 0; }
};

struct CifarOptions {
  std::string dir;
  std::vector<int64_t> classes;  // empty: all ten
  int64_t max_samples = 0;       // 0: all; otherwise a seeded random subset (kept in file order)
  bool normalize = true;         // per-channel mean/std of the selected training samples
  uint64_t seed = 0;
};

// Reads data_batch_1..5.bin. Wrong sizes, bad labels, missing files: ng::Error naming the file.
Dataset load_cifar10_train(const CifarOptions& opt);
// test_batch.bin, same selection of classes (max_samples and normalize are not used), normalised
// with the training statistics given (undefined mean/std: pixels / 255 only).
Dataset load_cifar10_test(const CifarOptions& opt, const at::Tensor& mean, const at::Tensor& std);

// Validates a cifar-10-batches-bin directory; returns a human-readable report, throws on errors.
std::string check_cifar10_dir(const std::string& dir);

// --data-dir flag (may be empty), then $NOISEGEOM_DATA, then data/cifar-10-batches-bin.
std::string resolve_data_dir(const std::string& flag);

struct GaussianOptions {
  int64_t n = 1000;
  int64_t d = 50;
  std::string covariance = "isotropic";  // isotropic | power (S_kk = k^-power) | spiked
  double power = 0.5;
  // spiked: S_11 = 1, S_kk = bulk for k >= 2 (Figure 3: lambda_1 = 1 > lambda_2 = ... = lambda_d,
  // population srk(S^2) = 1 + (d - 1) bulk^2).
  double bulk = 0.1;
  double scale = 1;  // every covariance is multiplied by this (Figure 3's 1/d)
  int64_t outputs = 1;
  uint64_t seed = 0;
  std::vector<double> variances;  // non-empty: S's diagonal (size d), overrides covariance/power
  // W* = 0, so y = 0 and theta = 0 is a global minimum of a linear model (Figures 3 and 4:
  // escapes from a minimum at the origin of the valley).
  bool zero_teacher = false;
};
// x ~ N(0, S) with S diagonal; y = x W* with W* ~ N(0, I) (d x outputs), or W* = 0. Row i of x
// depends only on (seed, i, S) and W* only on (seed, d, outputs), so a larger n extends a smaller
// one; the values do not depend on the number of threads.
Dataset make_gaussian(const GaussianOptions& opt);

// The diagonal of S for `opt` (size d), scale included.
std::vector<double> gaussian_variances(const GaussianOptions& opt);
// srk(diag(s)) = tr / max for s >= 0.
double stable_rank(const std::vector<double>& s);
// The paper's effective input dimension d_eff = min(srk(S), srk(S^2)) for S = diag(s).
double effective_dimension(const std::vector<double>& s);
// Smallest d with d_eff(diag(k^-power), k = 1..d) >= target. Throws ng::Error when no d <= max_d
// reaches it (for power >= 1/2, srk(S^2) grows like log d or stays bounded).
int64_t dimension_for_effective_dimension(double target, double power, int64_t max_d = 100000000);

// The whole data path of a config (data.* keys); `data_dir_flag` is the CLI's --data-dir.
Dataset load_training_data(const Config& cfg, const std::string& data_dir_flag);

}  // namespace ng
