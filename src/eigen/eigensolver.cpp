// The eigensolvers of eigensolver.h: Lanczos on any symmetric operator (Spectra) and the dense
// Gram-matrix route for per-sample rows.
#include "src/eigen/eigensolver.h"

#include <ATen/ATen.h>
#include <Spectra/SymEigsSolver.h>

#include <Eigen/Core>
#include <Eigen/Eigenvalues>
#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstring>
#include <limits>
#include <stdexcept>

#include "src/core/error.h"
#include "src/curvature/curvature.h"
#include "src/curvature/linear_operator.h"
#include "src/io/rundir.h"

namespace ng {

double Eigenpairs::max_residual() const {
  double m = 0;
  for (double r : residuals) m = std::max(m, r);
  if (std::isfinite(explicit_check)) m = std::max(m, explicit_check);
  return m;
}

namespace {

using Clock = std::chrono::steady_clock;

// Spectra works on host double arrays, the operator on device tensors of its own dtype: this is
// the only place where vectors cross between the two, and it counts every product.
class SpectraAdapter {
 public:
  using Scalar = double;
  explicit SpectraAdapter(LinearOperator& op) : op_(&op), n_(op.dim()) {}
  Eigen::Index rows() const { return n_; }
  Eigen::Index cols() const { return n_; }
  int64_t count() const { return count_; }

  void perform_op(const double* x_in, double* y_out) const {
    const at::Tensor x = at::from_blob(const_cast<double*>(x_in), {n_}, at::kDouble);
    const at::TensorOptions o = op_->options();
    // .to() may alias x_in when the operator is a host double one; apply() only reads it.
    const at::Tensor y = op_->apply(x.to(o.device(), o.dtype().toScalarType()));
    const at::Tensor host = y.to(at::kCPU, at::kDouble).contiguous();
    std::memcpy(y_out, host.data_ptr<double>(), sizeof(double) * static_cast<size_t>(n_));
    ++count_;
  }

 private:
  LinearOperator* op_;
  int64_t n_;
  mutable int64_t count_ = 0;
};

// |A u - lambda u| / |lambda| per row of `vectors`, one product each.
std::vector<double> residuals_of(const SpectraAdapter& a, const std::vector<double>& values,
                                 const at::Tensor& vectors) {
  std::vector<double> res;
  const int64_t p = vectors.size(1);
  Eigen::VectorXd au(p);
  for (size_t j = 0; j < values.size(); ++j) {
    const at::Tensor u = vectors[static_cast<int64_t>(j)].contiguous();
    const double* up = u.data_ptr<double>();
    a.perform_op(up, au.data());
    const Eigen::Map<const Eigen::VectorXd> um(up, p);
    const double r = (au - values[j] * um).norm();
    res.push_back(values[j] != 0 ? r / std::fabs(values[j]) : r);
  }
  return res;
}

// Spectra's solver with access to its final Lanczos factorization A V = V T + f e_m^T: a Ritz
// pair (theta, V y) of T has residual |A V y - theta V y| = |f| |y_m| (exact arithmetic; with
// inexact products it holds to their rounding).
template <class Op>
class KrylovSymEigs : public Spectra::SymEigsSolver<Op> {
 public:
  using Spectra::SymEigsSolver<Op>::SymEigsSolver;

  // Relative residuals of the returned values (each matched to its nearest unused Ritz value).
  std::vector<double> krylov_residuals(const std::vector<double>& values) const {
    const auto& fac = this->m_fac;
    Eigen::SelfAdjointEigenSolver<Eigen::MatrixXd> es(Eigen::MatrixXd(fac.matrix_H()));
    const Eigen::VectorXd& theta = es.eigenvalues();
    const Eigen::Index m = theta.size();
    std::vector<bool> used(static_cast<size_t>(m), false);
    std::vector<double> res;
    for (double v : values) {
      Eigen::Index best = -1;
      for (Eigen::Index i = 0; i < m; ++i)
        if (!used[i] && (best < 0 || std::fabs(theta[i] - v) < std::fabs(theta[best] - v)))
          best = i;
      used[best] = true;
      const double r = fac.f_norm() * std::fabs(es.eigenvectors()(m - 1, best));
      res.push_back(v != 0 ? r / std::fabs(v) : r);
    }
    return res;
  }
};

}  // namespace

Eigenpairs lanczos_top_k(LinearOperator& op, const EigenOptions& opt) {
  const auto t0 = Clock::now();
  const int64_t p = op.dim();
  if (opt.k < 1 || opt.k >= p)
    fail("eigen: k must satisfy 1 <= k < p = {} for Lanczos, got k = {}", p, opt.k);
  int64_t ncv = opt.ncv > 0 ? opt.ncv : std::max(2 * opt.k + 1, opt.k + 20);
  ncv = std::min(ncv, p);
  if (ncv <= opt.k)
    fail("eigen: ncv must satisfy k < ncv <= p = {}, got ncv = {} for k = {}", p, ncv, opt.k);
  if (opt.maxit < 1) fail("eigen: maxit must be >= 1, got {}", opt.maxit);
  if (!(opt.tol > 0)) fail("eigen: tol must be positive, got {}", opt.tol);
  if (opt.residuals != "explicit" && opt.residuals != "krylov")
    fail("eigen: residuals must be explicit or krylov, got '{}'", opt.residuals);

  SpectraAdapter adapter(op);
  KrylovSymEigs<SpectraAdapter> eigs(adapter, opt.k, ncv);
  const at::Tensor start = seeded_normal(p, opt.seed, at::TensorOptions().dtype(at::kDouble));
  eigs.init(start.data_ptr<double>());
  int64_t nconv = 0;
  try {
    nconv = eigs.compute(Spectra::SortRule::LargestAlge, opt.maxit, opt.tol,
                         Spectra::SortRule::LargestAlge);
  } catch (const std::invalid_argument& e) {
    fail("eigen: Lanczos rejected its arguments: {}", e.what());
  }
  if (eigs.info() != Spectra::CompInfo::Successful || nconv < opt.k)
    fail(
        "Lanczos did not converge: {} of {} eigenpairs after {} iterations (ncv {}); raise "
        "--maxit or --ncv",
        nconv, opt.k, eigs.num_iterations(), ncv);

  const Eigen::VectorXd vals = eigs.eigenvalues();
  const Eigen::MatrixXd vecs = eigs.eigenvectors();  // p x k, column major = k rows of p
  Eigenpairs r;
  r.values.assign(vals.data(), vals.data() + vals.size());
  r.vectors =
      at::from_blob(const_cast<double*>(vecs.data()), {vecs.cols(), p}, at::kDouble).clone();
  r.residual_method = opt.residuals;
  if (opt.residuals == "krylov") {
    r.residuals = eigs.krylov_residuals(r.values);
    r.explicit_check = residuals_of(adapter, {r.values[0]}, r.vectors.narrow(0, 0, 1))[0];
  } else {
    r.residuals = residuals_of(adapter, r.values, r.vectors);
  }
  r.matvecs = adapter.count();
  r.iterations = eigs.num_iterations();
  r.ncv = ncv;
  r.solver = "lanczos";
  r.seconds = seconds_since(t0);
  return r;
}

Eigenpairs gram_top_k(CurvatureOperator& op, int64_t k) {
  const auto t0 = Clock::now();
  const at::Tensor& rows = op.rows();
  const int64_t m = rows.size(0), p = rows.size(1);
  if (k < 1 || k > m)
    fail("eigen: the Gram solver has {} rows (b*C); k must be between 1 and {}, got {}", m, m, k);
  // LAPACK's divide-and-conquer eigh (through LibTorch, multithreaded): at 2,000 rows it took a
  // fraction of the time Eigen's single-threaded QR iteration did.
  const auto [evals, evecs] = at::linalg_eigh(op.gram_matrix().to(at::kCPU), "L");
  // Column blocks for u = B^T w below: a float64 copy of at most ~256 MiB at a time.
  const int64_t block = std::max<int64_t>(1, (int64_t{32} << 20) / std::max<int64_t>(m, 1));
  // Ascending from eigh; the top k, descending.
  const double top =
      std::max(std::fabs(evals[m - 1].item<double>()), std::numeric_limits<double>::min());
  // A Gram eigenvalue at rounding level of the rows has no eigenvector in their span to speak of.
  const double eps = op.options().dtype().toScalarType() == at::kDouble
                         ? std::numeric_limits<double>::epsilon()
                         : static_cast<double>(std::numeric_limits<float>::epsilon());
  Eigenpairs r;
  for (int64_t j = 0; j < k; ++j) {
    const double lam = evals[m - 1 - j].item<double>();
    if (!(lam > top * eps * static_cast<double>(m)))
      fail(
          "eigen: the {} per-sample rows have numerical rank {} < k = {}; lower k or use more "
          "samples",
          m, j, k);
    r.values.push_back(lam);
  }
  // The top k eigenvectors of K as rows (k x m), largest first.
  const at::Tensor wt = evecs.narrow(1, m - k, k).flip(1).t().contiguous().to(rows.device());
  // u_j = B^T w_j / |B^T w_j| (= B^T w_j / sqrt(b lambda_j) in exact arithmetic), by column blocks.
  at::Tensor u = at::empty({k, p}, at::TensorOptions().dtype(at::kDouble));
  for (int64_t s = 0; s < p; s += block) {
    const int64_t len = std::min(block, p - s);
    u.narrow(1, s, len).copy_(at::mm(wt, rows.narrow(1, s, len).to(at::kDouble)).to(at::kCPU));
  }
  u /= u.pow(2).sum(1, true).sqrt();
  r.vectors = u;
  // |A u - lambda u| for all k pairs at once: A U^T = B^T (B U^T) / b as two matrix products
  // (k products' worth of work, counted as such) instead of k matrix-vector passes over B.
  const at::Tensor ut = u.to(rows.options()).t();
  const at::Tensor au = at::mm(rows.t(), at::mm(rows, ut)).to(at::kDouble).cpu() /
                        static_cast<double>(op.num_samples());
  for (int64_t j = 0; j < k; ++j) {
    const double lam = r.values[static_cast<size_t>(j)];
    const double res = (au.select(1, j) - lam * u[j]).norm().item<double>();
    r.residuals.push_back(lam != 0 ? res / std::fabs(lam) : res);
  }
  r.matvecs = k;
  r.solver = "gram";
  r.seconds = seconds_since(t0);
  return r;
}

std::string choose_solver(const CurvatureOperator& op, const EigenOptions& opt) {
  if (!op.has_rows()) return "lanczos";
  const int64_t m = op.rows().size(0);
  if (opt.k > m) return "lanczos";  // gram_top_k refuses it with the rank in the message
  // Forming K costs m^2 p (one float64 GEMM) plus LAPACK's eigh; Lanczos on the rows about
  // 3 ncv products of 2 m p each, memory-bound. Measured here (CNN, p = 43,174, k = 20,
  // ncv = 41, 2 threads) at m = 2,000 rows: Gram 5.3 s against Lanczos 2.5 s in float32 and
  // 4.9 s against 3.6 s in float64; K's cost falls with m^2, so the Gram matrix pays below
  // ~32 ncv rows (1,312 for k = 20: about where the two meet with explicit residuals), or
  // when k is so close to m that Lanczos has no room.
  const int64_t ncv = opt.ncv > 0 ? opt.ncv : std::max(2 * opt.k + 1, opt.k + 20);
  if (m > opt.gram_limit) return "lanczos";
  if (op.has_gram()) return "gram";  // formed for someone else: only its eigh is left
  return m <= 32 * ncv || ncv >= m ? "gram" : "lanczos";
}

Eigenpairs top_eigenpairs(CurvatureOperator& op, const EigenOptions& opt) {
  std::string s = opt.solver == "auto" ? choose_solver(op, opt) : opt.solver;
  if (s == "gram") return gram_top_k(op, opt.k);
  if (s == "lanczos") return lanczos_top_k(op, opt);
  fail("eigen.solver: expected auto | lanczos | gram, got '{}'", opt.solver);
}

}  // namespace ng
