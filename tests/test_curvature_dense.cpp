// CurvatureOperator::dense_matrix() and its quadratic forms (dense, rows, JVP) against dense
// float64 matrices built from explicit Jacobians, and their errors.
#include <gtest/gtest.h>

#include <string>
#include <utility>

#include "src/core/error.h"
#include "src/core/random.h"
#include "src/curvature/curvature.h"
#include "tests/test_curvature_nets.h"

namespace {

using namespace curvtest;
using ng::CurvatureOperator;
using ng::CurvatureOptions;
using ng::Estimator;
using ng::LossKind;
using ng::MatrixKind;

constexpr int64_t kN = 37;

const at::Tensor& oracle(const DenseMatrices& d, MatrixKind m) {
  return m == MatrixKind::G ? d.g : m == MatrixKind::Sigma ? d.sigma : d.sigma0;
}

// For both losses, all three Gauss-Newton forms and both ways to hold rows: A equals the oracle;
// the form v^T A v is the oracle's through the dense matrix, through the rows and through a JVP;
// and with the rows freed the operator still applies A.
TEST(DenseMatrix, MatchesTheDenseOracleAndGivesTheSameForms) {
  const std::pair<std::string, LossKind> cases[] = {{"fnn", LossKind::Mse},
                                                    {"fnn", LossKind::CrossEntropy},
                                                    {"cnn", LossKind::CrossEntropy},
                                                    {"linreg", LossKind::Mse}};
  for (const auto& [model, l] : cases) {
    Problem pb = make_problem(model, kN, l == LossKind::CrossEntropy);
    const DenseMatrices d = dense_matrices(pb, l == LossKind::CrossEntropy, false);
    for (MatrixKind m : {MatrixKind::G, MatrixKind::Sigma, MatrixKind::Sigma0})
      for (int64_t budget : {int64_t{0}, int64_t{1} << 30}) {
        SCOPED_TRACE(model + " " + ng::to_string(l) + " " + ng::to_string(m) +
                     (budget ? " exact with rows" : " per-sample"));
        const Estimator e = budget ? Estimator::Exact : Estimator::PerSample;
        CurvatureOperator op(pb.net, pb.x, pb.y, options(m, e, l, ng::JvpMethod::Auto, budget));
        const at::Tensor& want = oracle(d, m);
        const at::Tensor v = ng::seeded_normal(op.dim(), 3, at::TensorOptions(at::kDouble));
        const double q = at::dot(v, at::mv(want, v)).item<double>();
        ASSERT_GT(std::abs(q), 1e-6);
        const double from_rows = op.quadratic_form(v);
        EXPECT_NEAR(from_rows, q, 1e-12 * std::abs(q));
        EXPECT_FALSE(op.has_dense());
        const at::Tensor& a = op.dense_matrix();
        EXPECT_LT(rel_err(a, want), 1e-12);
        EXPECT_TRUE(op.dense_matrix().is_same(a));  // formed once
        // Rows and A both held: the smaller gives the form (the FNN's and CNN's p of 240 and
        // 223 against at most 111 rows; linear regression's 15 against 37).
        const double after = op.quadratic_form(v);
        EXPECT_NEAR(after, q, 1e-12 * std::abs(q));
        if (op.dim() > op.rows().size(0))
          EXPECT_EQ(after, from_rows);
        else
          EXPECT_EQ(after, at::dot(v, at::mv(a, v)).item<double>());
        EXPECT_NEAR(op.quadratic_form(v, ng::JvpMethod::ROp), q, 1e-10 * std::abs(q));
        op.keep_dense_only();
        EXPECT_EQ(op.storage(), "dense");
        EXPECT_FALSE(op.has_rows());
        EXPECT_THROW(op.rows(), ng::Error);
        EXPECT_EQ(op.quadratic_form(v), at::dot(v, at::mv(a, v)).item<double>());
        EXPECT_LT(rel_err(op.apply(v), at::mv(want, v)), 1e-12);
      }
  }
}

// The form from the dense matrix is bitwise v . (A v) with A = B^T B / n, the formula the escape
// engine and Figure 3 used before they asked the operator.
TEST(DenseMatrix, IsBTransposeBOverNBitwise) {
  Problem pb = make_problem("fnn", kN, false);
  CurvatureOperator op(pb.net, pb.x, pb.y,
                       options(MatrixKind::G, Estimator::PerSample, LossKind::Mse));
  const at::Tensor b = op.rows();
  const at::Tensor want = at::mm(b.t(), b) / static_cast<double>(kN);
  EXPECT_TRUE(at::equal(op.dense_matrix(), want));
}

TEST(DenseMatrix, ErrorsAreOneLine) {
  Problem pb = make_problem("fnn", kN, false);
  // Streamed: no rows to form A from.
  CurvatureOperator streamed(pb.net, pb.x, pb.y,
                             options(MatrixKind::G, Estimator::Exact, LossKind::Mse));
  EXPECT_THROW(streamed.dense_matrix(), ng::Error);
  EXPECT_THROW(streamed.keep_dense_only(), ng::Error);
  // p over the limit (4096): 10 -> 400 -> 3 has 4,000 + 1,200 weights.
  struct Wide : ng::NetImpl {
    Wide() {
      l1 = register_module("l1", torch::nn::Linear(torch::nn::LinearOptions(10, 400).bias(false)));
      l2 = register_module("l2", torch::nn::Linear(torch::nn::LinearOptions(400, 3).bias(false)));
    }
    torch::Tensor forward(const torch::Tensor& x) override {
      return l2->forward(at::relu(l1->forward(x)));
    }
    std::string describe() const override { return "wide"; }
    torch::nn::Linear l1{nullptr}, l2{nullptr};
  };
  ng::Net wide = std::make_shared<Wide>();
  wide->to(at::kDouble);
  CurvatureOperator big(wide, pb.x.narrow(0, 0, 4), pb.y.narrow(0, 0, 4),
                        options(MatrixKind::G, Estimator::PerSample, LossKind::Mse));
  ASSERT_GT(big.dim(), CurvatureOperator::kMaxDenseP);
  try {
    big.dense_matrix();
    FAIL() << "no error";
  } catch (const ng::Error& e) {
    const std::string what = e.what();
    EXPECT_NE(what.find("p = 5200"), std::string::npos) << what;
    EXPECT_EQ(what.find('\n'), std::string::npos) << what;
  }
}

}  // namespace
