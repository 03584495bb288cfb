// The files of one spectrum, RUN/spectra/NAME/, and their reader beside their writer:
//   eigenvalues.csv  matrix,index,eigenvalue,residual   (index 1..k, descending per matrix)
//   alignment.csv    k,lambda,alpha,g                     (lambda_k, u_k of G; alpha_k =
//                                                          u_k^T Sigma u_k / (2L); g =
//                                                          alpha/lambda)
//   eigenvectors.pt  torch.load -> {"U": (p, k) float64, columns u_1..u_k, "eigenvalues": (k),
//                    "parameter_names": [str], "parameter_numels": [int]}; rows of U follow
//                    named_parameters() order, each tensor flattened row-major
//   summary.json     the request that made it, theta.pt's SHA-256, loss, mu (+ standard error),
//                    srk(G), srk(G^2), |G|_F, per-matrix solver counters, timings
//   samples.csv      position,index,label,class of the samples the operators used
// The folder is built beside its target and renamed into place: readers see the old spectrum or
// the new one, never a mixture, and a failed computation leaves nothing behind.
#pragma once

#include <ATen/core/Tensor.h>

#include <string>
#include <vector>

#include "src/io/json.h"
#include "src/spectrum/spectrum.h"

namespace ng {

namespace spectrum_files {
inline constexpr const char* kEigenvalues = "eigenvalues.csv";
inline constexpr const char* kAlignment = "alignment.csv";
inline constexpr const char* kEigenvectors = "eigenvectors.pt";
inline constexpr const char* kSummary = "summary.json";
inline constexpr const char* kSamples = "samples.csv";
}  // namespace spectrum_files

// A spectrum as the analyses built on it need it.
struct StoredSpectrum {
  std::string dir;
  json summary;                          // summary.json
  at::Tensor U;                          // (p, K) float64, orthonormal columns
  at::Tensor eigenvalues;                // (K) float64, descending
  double lambda(int64_t i) const;        // lambda_i (1-based), NaN beyond K
  double number(const char* key) const;  // a summary metric (mu, srk_G2, frobenius_G), NaN if none
};

// Writes the folder `dir` (replacing one there as a whole) and returns its summary.json.
// `request` is the settings object that identifies the computation (see spectrum_study.h).
json write_spectrum(const std::string& dir, const SpectrumResult& result, const json& request,
                    const std::string& theta_sha256);

// Reads `dir` back; every problem is an ng::Error naming the file. `p`, when > 0, is the model's
// parameter count, which U must match.
StoredSpectrum load_spectrum(const std::string& dir, int64_t p = 0);

// alignment.csv read back (lambda_k, alpha_k, g_k for k = 1..K): the figures that plot or
// summarise every k (Figure 2) read it rather than the eigenvectors.
struct AlignmentTable {
  std::vector<double> lambda, alpha, g;
};
AlignmentTable load_alignment(const std::string& dir);

// The spectrum just written, without reading it back (vectors from the result, in memory).
StoredSpectrum stored_spectrum(const std::string& dir, const SpectrumResult& result,
                               const json& summary);

// True when `dir` holds every file of a finished spectrum.
bool spectrum_complete(const std::string& dir);

}  // namespace ng
