// Top-k eigenpairs of a symmetric operator: Lanczos (Spectra's SymEigsSolver) for any operator,
// or the Gram matrix of the per-sample rows, which has the same nonzero eigenvalues and is solved
// densely. Both return the same struct with a residual per pair.
#pragma once

#include <ATen/core/Tensor.h>

#include <cstdint>
#include <limits>
#include <string>
#include <vector>

namespace ng {

class LinearOperator;
class CurvatureOperator;

struct Eigenpairs {
  std::vector<double> values;     // descending
  at::Tensor vectors;             // (k, p) float64 on CPU, unit rows, in ParameterLayout order
  std::vector<double> residuals;  // |A u - lambda u| / |lambda| (|A u| where lambda = 0)
  std::string residual_method = "explicit";  // or "krylov" (see EigenOptions::residuals)
  // krylov: the explicit residual of the top pair, a check on the Lanczos relation (NaN else).
  double explicit_check = std::numeric_limits<double>::quiet_NaN();
  int64_t matvecs = 0;     // operator applications by the solver, residual checks included
  int64_t iterations = 0;  // Lanczos restarts (0 for the Gram solver)
  int64_t ncv = 0;         // Lanczos basis size (0 for the Gram solver)
  std::string solver;      // "lanczos" | "gram"
  double seconds = 0;
  double max_residual() const;  // over residuals and explicit_check
};

struct EigenOptions {
  int64_t k = 10;
  std::string solver = "auto";  // auto | lanczos | gram
  int64_t ncv = 0;              // 0: min(p, max(2k + 1, k + 20))
  int64_t maxit = 1000;         // Lanczos restarts
  double tol = 1e-10;           // Spectra's: |residual| < tol max(|lambda|, eps^(2/3))
  uint64_t seed = 0;            // Lanczos start vector
  int64_t gram_limit = 4096;    // auto never picks gram above this many rows
  // Lanczos residuals: "explicit" applies the operator to every returned u; "krylov" takes
  // |A u - lambda u| = |f| |e_m^T y| from the Lanczos relation A V = V T + f e_m^T (no products,
  // as ARPACK/eigsh report convergence) and checks the top pair explicitly (one product).
  std::string residuals = "explicit";
};

// Throws ng::Error when fewer than k pairs converge (never returns fewer), or k is out of range.
Eigenpairs lanczos_top_k(LinearOperator& op, const EigenOptions& opt);
// Per-sample operators only: eigenpairs of K = B B^T / b in float64 (Eigen), u = B^T w /
// |B^T w|. Throws ng::Error when k exceeds the numerical rank of the rows.
Eigenpairs gram_top_k(CurvatureOperator& op, int64_t k);
// "gram" when the operator has at most gram_limit rows and either holds its Gram matrix already
// (CurvatureOperator::has_gram), or at most 32 ncv rows (the Gram matrix costs m^2 p in GEMM,
// Lanczos ~6 ncv m p in GEMV), or too few for a Lanczos basis; else "lanczos".
std::string choose_solver(const CurvatureOperator& op, const EigenOptions& opt);
// opt.solver, with "auto" resolved by choose_solver.
Eigenpairs top_eigenpairs(CurvatureOperator& op, const EigenOptions& opt);

}  // namespace ng
