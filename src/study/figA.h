// Figure A: Appendix A's estimator put to the test. The paper computes its large-scale spectra
// from b = 2k per-sample gradients and calls that "sufficient to obtain a reliable approximation
// of the top-k eigenvalues and eigenvectors"; this figure measures it at a minimum: for each b
// from k up to n and several seeds (sample subsets), lambda_k(b) / lambda_k(n) and the subspace
// overlap |U_b^T U_n|_F^2 / k against the spectrum over all n samples. The measures are here so
// that the tests can check them against hand-made cases; the recipe is figureA()
// (figure_recipes.h).
#pragma once

#include <ATen/core/Tensor.h>

#include <cstdint>
#include <string>
#include <vector>

#include "src/study/figures.h"
#include "src/study/spectrum_files.h"

namespace ng {
namespace figa {

// The reference spectrum's name (RUN/spectra/full): G's top k over all n training samples.
inline constexpr const char* kReference = "full";
// The sweep's spectra: RUN/spectra/b<B>_s<SEED>.
std::string sweep_name(int64_t b, uint64_t seed);

// |A^T B|_F^2 / k for two p x k matrices with orthonormal columns: 1 when they span the same
// subspace, 0 when the subspaces are orthogonal, the mean squared cosine of the principal angles
// in between. ng::Error when the shapes differ.
double subspace_overlap(const at::Tensor& a, const at::Tensor& b);

// One (b, seed) spectrum measured against the reference.
struct Comparison {
  int64_t b = 0;
  uint64_t seed = 0;
  std::vector<double> ratio;  // lambda_k(b) / lambda_k(n), one per requested k
  double overlap = 0;         // subspace_overlap(U_b, U_n) over the common top k
};
// `ks` are 1-based eigenvalue indices, each at most both spectra's k.
Comparison compare(const StoredSpectrum& sample, const StoredSpectrum& reference,
                   const std::vector<int64_t>& ks);

struct MeanStd {
  double mean = 0, std = 0;  // std: the sample standard deviation (n - 1), 0 for one value
};
MeanStd mean_std(const std::vector<double>& values);

// The smallest b in the ascending list `bs` from which on `ok` holds (for it and every larger
// b), or -1 when it fails at the largest.
int64_t smallest_b_from_which(const std::vector<int64_t>& bs, const std::vector<bool>& ok);

// One network of the figure: the run trained from `experiment`, its reference spectrum over all
// n samples (`reference`: the per-sample estimator with samples = n, or the exact one) and the
// per-sample spectra for every b in `bs` (each below n) and seed 0..seeds-1, top k of G in
// float32.
struct Sweep {
  std::string experiment, label;
  int64_t n = 0, k = 20, seeds = 3;
  std::vector<int64_t> bs;
  Estimator reference = Estimator::PerSample;
};
FigureRun sweep_run(const Sweep& s);

// The figure's numbers: per network and b, the mean and std over seeds of lambda_k(b) /
// lambda_k(n) for k = 1, 5, 20 (those up to the spectra's k) and of the overlap; the smallest b
// with mean lambda_1 within 10 % and the smallest with mean overlap above 0.9; whether the
// paper's b = 2k meets either.
FigureSummary summarize(const std::vector<FigureRun>& runs, const FigureSettings& s);

}  // namespace figa
}  // namespace ng
