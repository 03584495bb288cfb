// The spectrum job: top-k eigenpairs of G (and of Sigma, Sigma0, H on request) at a run's theta*
// (or at a random theta ~ N(0, I), Figure 2b), the alignment metrics of Sections 3-4, and the
// files of RUN_DIR/spectrum/ that the plots and the escape experiments read.
//
// Files (each written atomically; the directory appears only when everything is computed, so a
// failed job leaves no spectrum/ behind and a finished one is never half-replaced):
//   eigenvalues.csv  matrix,index,eigenvalue,residual   (index 1..k, descending per matrix)
//   alignment.csv    k,lambda,alpha,g                     (lambda_k, u_k of G; alpha_k =
//                                                          u_k^T Sigma u_k / (2L); g =
//                                                          alpha/lambda)
//   eigenvectors.pt  torch.load -> {"U": (p, k) float64, columns u_1..u_k, "eigenvalues": (k),
//                    "parameter_names": [str], "parameter_numels": [int]}; rows of U follow
//                    named_parameters() order, each tensor flattened row-major
//   summary.json     loss, mu (+ standard error), srk(G), srk(G^2), |G|_F, settings, timings
//   samples.csv      position,index,label,class of the samples the operators used: position
//                    into the run's training set (its samples.csv), index into the CIFAR-10 files
#pragma once

#include <ATen/core/Tensor.h>

#include <cstdint>
#include <string>
#include <vector>

#include "src/eigen/eigensolver.h"

namespace ng {

struct SpectrumOptions {
  int64_t k = 20;
  // Matrices whose own top-k spectrum is written: G, Sigma, Sigma0, H. G's eigenpairs and the
  // alignment along them are always computed (they need G and Sigma).
  std::vector<std::string> matrices = {"G", "Sigma"};
  std::string estimator = "per-sample";  // per-sample | exact
  int64_t samples = 0;                   // b; 0: 2k for per-sample (Appendix A), all n for exact
  std::string solver = "auto";           // auto | gram | lanczos
  std::string dtype = "float64";         // float32 | float64
  std::string theta = "trained";         // trained | random (theta ~ N(0, I) from seed)
  uint64_t seed = 0;                     // samples, random theta, Lanczos start, probes
  int64_t batch_size = 256;              // samples per forward pass (exact products)
  int64_t ncv = 0;                       // Lanczos basis; 0: the solver's default
  double tol = 0;                        // Lanczos tolerance; 0: 1e-10 (float64), 1e-6 (float32)
  int64_t maxit = 1000;                  // Lanczos restarts
  std::string residuals = "explicit";    // Lanczos residuals: explicit | krylov (EigenOptions)
  int64_t probes = 100;                  // Hutchinson probes (exact estimator: mu, srk, |G|_F)
  std::string data_dir;                  // --data-dir for load_run
  std::string out_dir;                   // empty: RUN_DIR/spectrum
  bool quiet = false;                    // no progress lines on stderr
};

// The residual every pair must reach, by dtype: below 1e-6 (float64) or 1e-3 (float32).
double residual_limit(const std::string& dtype);

struct MatrixSpectrum {
  std::string matrix;  // G | Sigma | Sigma0 | H
  Eigenpairs pairs;    // vectors kept for G only (p x k each: too large to hold for every matrix)
};

struct SpectrumResult {
  std::string run_dir, out_dir;
  SpectrumOptions options;  // as resolved (samples, tol filled in)
  std::string request;      // spectrum_request(options)
  std::string theta_sha256;
  int64_t p = 0, n_train = 0, outputs = 0;
  std::vector<int64_t> positions;  // into the run's training set
  std::string samples_csv;
  std::vector<MatrixSpectrum> spectra;  // G first, then the other requested matrices
  std::vector<std::string> parameter_names;
  std::vector<int64_t> parameter_numels;
  double loss = 0;
  std::vector<double> lambda, alpha, g;
  double mu = 0, mu_se = 0, srk_g = 0, srk_g_se = 0, srk_g2 = 0, srk_g2_se = 0, frob_g = 0,
         frob_g_se = 0, trace_g = 0;
  std::string metrics_method;  // gram (exact over the samples) | hutchinson
  int64_t matvecs = 0;         // all operator products, the operators' probes included
  double seconds = 0;
  double max_residual = 0;
  std::string device;
};

// Checks the options (one-line ng::Error naming the option) without touching any file.
void validate_spectrum_options(const SpectrumOptions& opt);

// Everything in memory; writes nothing. Bad input throws ng::Error naming the file or option.
SpectrumResult compute_spectrum(const std::string& run_dir, const SpectrumOptions& opt);

// Writes the files above into result.out_dir, replacing a previous spectrum there as a whole.
void write_spectrum(const SpectrumResult& result);

// compute_spectrum, then write_spectrum.
SpectrumResult run_spectrum(const std::string& run_dir, const SpectrumOptions& opt);

// The settings that determine the numbers, as one canonical line (stored in summary.json): two
// requests are equal exactly when they ask for the same computation on the same run. Defaults
// stay unresolved (samples=0, tol=0): the run's data and dtype fix what they resolve to.
std::string spectrum_request(const SpectrumOptions& opt);

// True when out_dir (empty: RUN_DIR/spectrum) holds a finished spectrum of this request at the
// run's current theta.pt, so that it can be reused instead of recomputed.
bool spectrum_is_current(const std::string& run_dir, const SpectrumOptions& opt);

// Hex SHA-256 of a file (theta.pt identity for reuse checks).
std::string file_sha256(const std::string& path);

}  // namespace ng
