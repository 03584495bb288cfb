// The spectrum computation: top-k eigenpairs of G (and of Sigma, Sigma0, H on request) at a run's
// theta* (or at a random theta: N(0, I) for Figure 2, the model's initialisation for Figure 1) and
// the alignment metrics of Sections 3-4, all in memory. Writing and reading them
// (RUN/spectra/NAME/) is the study layer's (src/study/spectrum_files.h); options are checked here,
// without touching any file.
#pragma once

#include <ATen/core/Tensor.h>
#include <c10/core/Device.h>

#include <cstdint>
#include <string>
#include <vector>

#include "src/curvature/curvature.h"
#include "src/eigen/eigensolver.h"
#include "src/metrics/alignment.h"
#include "src/training/train.h"

namespace ng {

struct SpectrumOptions {
  int64_t k = 20;
  // Matrices whose own top-k spectrum is written. G's eigenpairs and the alignment along them are
  // always computed (they need G and Sigma).
  std::vector<MatrixKind> matrices = {MatrixKind::G, MatrixKind::Sigma};
  Estimator estimator = Estimator::PerSample;
  int64_t samples = 0;                 // b; 0: 2k for per-sample (Appendix A), all n for exact
  std::string solver = "auto";         // auto | gram | lanczos
  at::ScalarType dtype = at::kDouble;  // float32 | float64
  // trained | random (theta ~ N(0, I) from seed) | init (the model's initialisation from seed)
  std::string theta = "trained";
  uint64_t seed = 0;                   // samples, random theta, Lanczos start, probes
  int64_t batch_size = 256;            // samples per forward pass (exact products)
  int64_t ncv = 0;                     // Lanczos basis; 0: the solver's default
  double tol = 0;                      // Lanczos tolerance; 0: 1e-10 (float64), 1e-6 (float32)
  int64_t maxit = 1000;                // Lanczos restarts
  std::string residuals = "explicit";  // Lanczos residuals: explicit | krylov (EigenOptions)
  int64_t probes = 100;                // Hutchinson probes (exact estimator: mu, srk, |G|_F)
  // Bytes of per-sample rows the exact estimator may hold for all its samples (then its products,
  // the Gram solver and the metrics use them, exactly); 0: never (streamed products);
  // -1: default_row_budget() of the run's device. Not part of a spectrum's identity: both ways
  // give the same matrix.
  int64_t row_budget = -1;
};

// The choices of the string-valued options, for checks and --help.
extern const std::vector<std::string> kSpectrumSolvers, kSpectrumThetas, kSpectrumResiduals;

// The residual every pair must reach, by dtype: below 1e-6 (float64) or 1e-3 (float32).
double residual_limit(at::ScalarType dtype);

struct MatrixSpectrum {
  MatrixKind matrix;
  Eigenpairs pairs;     // vectors kept for G only (p x k each: too large to hold for every matrix)
  std::string storage;  // the operator's: "rows", "streamed" or "sharded" (over several ranks)
  std::string rows_method;  // how its rows were built: "batched", "loop" ("" when streamed)
};

struct SpectrumResult {
  std::string run_dir;
  SpectrumOptions options;  // as resolved (samples, tol filled in)
  int64_t p = 0, n_train = 0, outputs = 0;
  std::vector<int64_t> positions;  // into the run's training set
  std::string samples_csv;
  std::vector<MatrixSpectrum> spectra;  // G first, then the other requested matrices
  std::vector<std::string> parameter_names;
  std::vector<int64_t> parameter_numels;
  Alignment alignment;     // lambda, alpha, g, mu, srk, |G|_F along G's eigenvectors
  int64_t row_budget = 0;  // as resolved (bytes)
  int64_t matvecs = 0;     // all operator products, the operators' probes included
  double seconds = 0;
  double max_residual = 0;
  std::string device;
  int world_size = 1;    // processes that ran it (the launcher's WORLD_SIZE)
  bool sharded = false;  // exact products split over those processes (else each ran it all)
  const Eigenpairs& g() const { return spectra.front().pairs; }
};

// Checks the options (one-line ng::Error naming the option) without touching any file.
void validate_spectrum_options(const SpectrumOptions& opt);

// Everything in memory; writes nothing. The run's model is used in place (moved to the spectrum's
// dtype, and to theta ~ N(0, I) for --theta random). Bad input throws ng::Error naming the file or
// option. `quiet`: no progress lines on stderr.
SpectrumResult compute_spectrum(LoadedRun& run, const SpectrumOptions& opt, bool quiet);

}  // namespace ng
