// Eigensolver adapter (Spectra Lanczos) and Gram solver against dense eigendecompositions.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>

#include "src/core/error.h"
#include "src/curvature/curvature.h"
#include "src/eigen/eigensolver.h"
#include "tests/test_curvature_nets.h"

namespace {

using namespace curvtest;
using ng::CurvatureOperator;
using ng::CurvatureOptions;
using ng::Estimator;
using ng::LossKind;
using ng::MatrixKind;

void expect_matches_dense(const ng::Eigenpairs& r, const std::vector<double>& vals,
                          const at::Tensor& vecs, int64_t k, double tol) {
  ASSERT_EQ(static_cast<int64_t>(r.values.size()), k);
  ASSERT_EQ(r.vectors.size(0), k);
  for (int64_t j = 0; j < k; ++j) {
    EXPECT_LE(std::fabs(r.values[j] - vals[j]), tol * std::fabs(vals[j]))
        << "pair " << j << ": " << r.values[j] << " vs " << vals[j];
    EXPECT_LT(r.residuals[j], 1e-8) << "pair " << j;
    if (j > 0) {
      EXPECT_GE(r.values[j - 1], r.values[j]);
    }
    EXPECT_NEAR(r.vectors[j].norm().item<double>(), 1.0, 1e-10);
    // Eigenvectors up to sign, where the gap to the neighbours makes them well defined.
    const double gap = std::min(j > 0 ? vals[j - 1] - vals[j] : 1e300, vals[j] - vals[j + 1]);
    if (gap > 1e-3 * vals[0]) {
      EXPECT_GT(std::fabs(at::dot(r.vectors[j], vecs[j]).item<double>()), 1 - 1e-8) << j;
    }
  }
}

TEST(Lanczos, KnownSpectrum) {
  at::manual_seed(5);
  const int64_t p = 200;
  const at::Tensor q = std::get<0>(at::linalg_qr(at::randn({p, p}, at::kDouble)));
  at::Tensor lam = at::linspace(0, 1, p, at::kDouble).pow(3);  // eigenvalues in [0, 1]
  lam[p - 1] = 5;
  lam[p - 2] = 3;
  ng::DenseOperator op(q.mm(at::diag(lam)).mm(q.t()));
  ng::EigenOptions o;
  o.k = 6;
  const ng::Eigenpairs r = ng::lanczos_top_k(op, o);
  std::vector<double> vals;
  at::Tensor vecs;
  dense_eigh(op.matrix(), &vals, &vecs);
  EXPECT_NEAR(vals[0], 5, 1e-12);
  EXPECT_NEAR(vals[5], std::get<0>(lam.sort())[p - 6].item<double>(), 1e-12);
  expect_matches_dense(r, vals, vecs, o.k, 1e-10);
  EXPECT_EQ(r.solver, "lanczos");
  EXPECT_EQ(r.ncv, 26);  // max(2k + 1, k + 20)
  EXPECT_EQ(r.matvecs, op.matvecs());
  EXPECT_GE(r.matvecs, r.ncv + o.k);
}

// The residuals read off the Lanczos relation are the explicit ones: same pairs (same start
// vector), at a loose tolerance so that they are well above rounding, for k - 1 fewer products.
TEST(Lanczos, KrylovResidualsEqualExplicitOnes) {
  at::manual_seed(7);
  const int64_t p = 300;
  const at::Tensor q = std::get<0>(at::linalg_qr(at::randn({p, p}, at::kDouble)));
  const at::Tensor lam = at::linspace(0, 1, p, at::kDouble).pow(2) * 4;  // clustered near the top
  ng::DenseOperator op(q.mm(at::diag(lam)).mm(q.t()));
  ng::EigenOptions o;
  o.k = 8;
  o.tol = 1e-5;
  const ng::Eigenpairs ex = ng::lanczos_top_k(op, o);
  o.residuals = "krylov";
  const ng::Eigenpairs kr = ng::lanczos_top_k(op, o);
  EXPECT_EQ(ex.residual_method, "explicit");
  EXPECT_EQ(kr.residual_method, "krylov");
  EXPECT_TRUE(std::isnan(ex.explicit_check));
  EXPECT_EQ(kr.matvecs, ex.matvecs - (o.k - 1));
  ASSERT_EQ(kr.residuals.size(), ex.residuals.size());
  double largest = 0;
  for (size_t j = 0; j < ex.residuals.size(); ++j) {
    EXPECT_DOUBLE_EQ(kr.values[j], ex.values[j]) << j;
    EXPECT_NEAR(kr.residuals[j], ex.residuals[j], 1e-12 + 1e-4 * ex.residuals[j]) << j;
    largest = std::max(largest, ex.residuals[j]);
  }
  EXPECT_GT(largest, 1e-10);  // the comparison is not between two roundings
  EXPECT_DOUBLE_EQ(kr.explicit_check, ex.residuals[0]);
  EXPECT_DOUBLE_EQ(
      kr.max_residual(),
      std::max(*std::max_element(kr.residuals.begin(), kr.residuals.end()), kr.explicit_check));
  o.residuals = "implicit";
  EXPECT_THROW(ng::lanczos_top_k(op, o), ng::Error);
}

TEST(Lanczos, CurvatureOperatorsMatchDenseEigendecompositions) {
  for (const char* model : {"cnn", "fnn"}) {
    for (bool ce : {false, true}) {
      SCOPED_TRACE(std::string(model) + (ce ? " cross_entropy" : " mse"));
      Problem pb = make_problem(model, 37, ce);
      const DenseMatrices d = dense_matrices(pb, ce);
      const LossKind l = ce ? LossKind::CrossEntropy : LossKind::Mse;
      for (MatrixKind m : {MatrixKind::G, MatrixKind::Sigma, MatrixKind::Hessian}) {
        SCOPED_TRACE(ng::to_string(m));
        CurvatureOperator op(pb.net, pb.x, pb.y, options(m, Estimator::Exact, l));
        std::vector<double> vals;
        at::Tensor vecs;
        dense_eigh(m == MatrixKind::G       ? d.g
                   : m == MatrixKind::Sigma ? d.sigma
                                            : d.hessian,
                   &vals, &vecs);
        ng::EigenOptions o;
        o.k = 6;
        const ng::Eigenpairs r = ng::top_eigenpairs(op, o);
        EXPECT_EQ(r.solver, "lanczos");
        expect_matches_dense(r, vals, vecs, o.k, 1e-8);
      }
    }
  }
}

TEST(GramSolver, AgreesWithLanczosAndTheDenseMatrix) {
  Problem pb = make_problem("cnn", 12, false);  // b C = 36 rows < p = 223: rank deficient G
  const DenseMatrices d = dense_matrices(pb, false, false);
  for (MatrixKind m : {MatrixKind::G, MatrixKind::Sigma, MatrixKind::Sigma0}) {
    SCOPED_TRACE(ng::to_string(m));
    CurvatureOperator op(pb.net, pb.x, pb.y, options(m, Estimator::PerSample));
    std::vector<double> vals;
    at::Tensor vecs;
    dense_eigh(m == MatrixKind::G       ? d.g
               : m == MatrixKind::Sigma ? d.sigma
                                        : d.sigma0,
               &vals, &vecs);
    ng::EigenOptions o;
    o.k = 8;
    EXPECT_EQ(ng::choose_solver(op, o), "gram");
    const ng::Eigenpairs gram = ng::top_eigenpairs(op, o);
    EXPECT_EQ(gram.solver, "gram");
    EXPECT_EQ(gram.matvecs, o.k);  // one residual product per pair, nothing else
    expect_matches_dense(gram, vals, vecs, o.k, 1e-10);
    o.solver = "lanczos";
    const ng::Eigenpairs lz = ng::top_eigenpairs(op, o);
    for (int64_t j = 0; j < o.k; ++j) {
      EXPECT_NEAR(lz.values[j], gram.values[j], 1e-8 * gram.values[0]);
      EXPECT_GT(std::fabs(at::dot(lz.vectors[j], gram.vectors[j]).item<double>()), 1 - 1e-8);
    }
    o.gram_limit = 10;
    EXPECT_EQ(ng::choose_solver(op, o), "lanczos");
  }
}

TEST(GramSolver, Float32RowsGiveFloat64Eigenpairs) {
  Problem pb = make_problem("fnn", 20, false);
  const DenseMatrices d = dense_matrices(pb, false, false);
  CurvatureOptions o = options(MatrixKind::G, Estimator::PerSample);
  o.dtype = at::kFloat;
  CurvatureOperator op(pb.net, pb.x, pb.y, o);
  const ng::Eigenpairs r = ng::gram_top_k(op, 5);
  std::vector<double> vals;
  dense_eigh(d.g, &vals, nullptr);
  EXPECT_EQ(r.vectors.scalar_type(), at::kDouble);
  for (int j = 0; j < 5; ++j) {
    EXPECT_NEAR(r.values[j], vals[j], 1e-5 * vals[0]);
    EXPECT_LT(r.residuals[j], 1e-4);
  }
}

TEST(GramSolver, RankDeficiencyIsAnError) {
  Problem pb = make_problem("fnn", 6, false);
  // Sigma0 from 6 centred per-sample gradients has rank 5.
  CurvatureOperator op(pb.net, pb.x, pb.y, options(MatrixKind::Sigma0, Estimator::PerSample));
  EXPECT_NO_THROW(ng::gram_top_k(op, 5));
  try {
    ng::gram_top_k(op, 6);
    FAIL() << "no error";
  } catch (const ng::Error& e) {
    EXPECT_NE(std::string(e.what()).find("rank 5"), std::string::npos) << e.what();
  }
  CurvatureOperator h(pb.net, pb.x, pb.y, options(MatrixKind::Hessian, Estimator::Exact));
  EXPECT_THROW(ng::gram_top_k(h, 2), ng::Error);  // no rows
}

TEST(Lanczos, NonConvergenceIsAnErrorNotFewerPairs) {
  Problem pb = make_problem("cnn", 37, false);
  CurvatureOperator op(pb.net, pb.x, pb.y, options(MatrixKind::G, Estimator::Exact));
  ng::EigenOptions o;
  o.k = 10;
  o.ncv = 12;
  o.maxit = 1;
  o.tol = 1e-14;
  try {
    ng::lanczos_top_k(op, o);
    FAIL() << "no error";
  } catch (const ng::Error& e) {
    const std::string msg = e.what();
    EXPECT_NE(msg.find("Lanczos did not converge"), std::string::npos) << msg;
    EXPECT_NE(msg.find("of 10 eigenpairs after"), std::string::npos) << msg;
    EXPECT_NE(msg.find("(ncv 12); raise --maxit or --ncv"), std::string::npos) << msg;
    EXPECT_EQ(msg.find('\n'), std::string::npos);
  }
  // The same problem with room to converge succeeds.
  o.maxit = 1000;
  o.tol = 1e-10;
  EXPECT_EQ(ng::lanczos_top_k(op, o).values.size(), 10u);
}

TEST(Lanczos, ArgumentsOutOfRangeAreErrors) {
  ng::DenseOperator op(at::eye(10, at::kDouble));
  ng::EigenOptions o;
  o.k = 10;
  EXPECT_THROW(ng::lanczos_top_k(op, o), ng::Error);
  o.k = 3;
  o.ncv = 3;
  EXPECT_THROW(ng::lanczos_top_k(op, o), ng::Error);
  o.ncv = 0;
  o.maxit = 0;
  EXPECT_THROW(ng::lanczos_top_k(op, o), ng::Error);
  o.maxit = 10;
  o.solver = "arnoldi";
  Problem pb = make_problem("linreg", 10, false);
  CurvatureOperator g(pb.net, pb.x, pb.y, options(MatrixKind::G, Estimator::Exact));
  EXPECT_THROW(ng::top_eigenpairs(g, o), ng::Error);
}

TEST(Lanczos, Float32OperatorOnFloat64Solver) {
  Problem pb = make_problem("tanh", 37, false);
  const DenseMatrices d = dense_matrices(pb, false, false);
  CurvatureOptions co = options(MatrixKind::G, Estimator::Exact);
  co.dtype = at::kFloat;
  CurvatureOperator op(pb.net, pb.x, pb.y, co);
  ng::EigenOptions o;
  o.k = 4;
  o.tol = 1e-5;  // a float32 operator cannot do better than its rounding
  const ng::Eigenpairs r = ng::lanczos_top_k(op, o);
  std::vector<double> vals;
  dense_eigh(d.g, &vals, nullptr);
  for (int j = 0; j < 4; ++j) {
    EXPECT_NEAR(r.values[j], vals[j], 1e-5 * vals[0]);
    EXPECT_LT(r.residuals[j], 1e-3);
  }
}

}  // namespace
