// Noise-geometry metrics of the paper at fixed parameters: directional alignment along the top
// eigenvectors of G (Sec. 4: alpha_k = u_k^T Sigma u_k / (2L), g_k = alpha_k / lambda_k), loss
// alignment (Def. 3.1: mu = tr(Sigma G) / (2L |G|_F^2)) and effective ranks srk(A) = tr(A)/|A|,
// srk(A^2) = tr(A^2)/|A|^2 (Sec. 2). Traces are exact from the Gram blocks of the rows when both
// operators are per-sample on the same samples, else Hutchinson estimates with standard errors.
#pragma once

#include <ATen/core/Tensor.h>

#include <cstdint>
#include <string>
#include <vector>

namespace ng {

class LinearOperator;
class CurvatureOperator;
struct Eigenpairs;

struct Estimate {
  double value = 0;
  double se = 0;       // standard error (0 when exact)
  int64_t probes = 0;  // Hutchinson probes (0 when exact)
};

// tr(A) and tr(A^2) of one operator.
struct TraceStats {
  Estimate trace, trace_sq;
};

struct AlignmentOptions {
  int64_t probes = 100;  // Hutchinson probes for exact-estimator operators
  uint64_t seed = 0;
};

struct Alignment {
  double loss = 0;  // L over the operators' samples
  std::vector<double> lambda, alpha, g;
  Estimate trace_sigma_g;  // tr(Sigma G)
  Estimate trace_g;        // tr(G)
  Estimate frob_g_sq;      // |G|_F^2 = tr(G^2)
  Estimate frob_g;         // |G|_F
  Estimate mu;             // loss alignment; 1 at L = 0 by the paper's convention
  Estimate srk_g;          // tr(G) / lambda_1
  Estimate srk_g2;         // tr(G^2) / lambda_1^2
  std::string method;      // "gram" (exact) | "hutchinson"
};

// u_k^T A u_k for the rows of `vectors` (k, p): one product each, or one matrix product for all
// when A is a curvature operator with rows (|B U^T|^2 / b).
std::vector<double> quadratic_forms(LinearOperator& a, const at::Tensor& vectors);

// Exact from the rows (A = B^T B / b: tr A = |B|_F^2 / b, tr A^2 = |B B^T|_F^2 / b^2 =
// |B^T B|_F^2 / b^2, whichever Gram side is smaller) when the operator has them, else Hutchinson
// with `probes` Rademacher vectors (one product each).
TraceStats trace_stats(CurvatureOperator& a, int64_t probes, uint64_t seed);

// Everything above for G with its top eigenpairs `eig` and Sigma (= Sigma_1; pass Sigma_0 to get
// its analogue) on the same samples. Hutchinson costs two products per probe (G z, then Sigma G z)
// and gives tr(Sigma G), tr(G^2) and tr(G) from the same probes; standard errors of the ratios
// are by the delta method.
Alignment compute_alignment(CurvatureOperator& g, CurvatureOperator& sigma, const Eigenpairs& eig,
                            const AlignmentOptions& opt);
// compute_alignment's Hutchinson estimates for any G and Sigma operators with loss L over their
// samples (the sharded operators of src/dist use it too).
Alignment hutchinson_alignment(LinearOperator& g, LinearOperator& sigma, double loss,
                               const Eigenpairs& eig, const AlignmentOptions& opt);

}  // namespace ng
