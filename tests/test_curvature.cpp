// Curvature operators (G, Sigma, Sigma0, Hessian; exact and per-sample estimators) and the
// alignment metrics against dense float64 matrices built from explicit Jacobians.
#include <gtest/gtest.h>

#include <chrono>
#include <cmath>
#include <cstdio>
#include <set>

#include "src/core/error.h"
#include "src/curvature/curvature.h"
#include "src/eigen/eigensolver.h"
#include "src/metrics/alignment.h"
#include "tests/test_curvature_nets.h"

namespace {

using namespace curvtest;
using ng::CurvatureOperator;
using ng::CurvatureOptions;
using ng::Estimator;
using ng::JvpMethod;
using ng::LossKind;
using ng::MatrixKind;

constexpr int64_t kN = 37;  // options() takes batches of 8: four and a short one of 5

const at::Tensor& dense_of(const DenseMatrices& d, MatrixKind m) {
  switch (m) {
    case MatrixKind::G:
      return d.g;
    case MatrixKind::Sigma:
      return d.sigma;
    case MatrixKind::Sigma0:
      return d.sigma0;
    default:
      return d.hessian;
  }
}

// Relative error of op applied to a few random vectors, stacked, against the dense matrix.
double matvec_error(CurvatureOperator& op, const at::Tensor& dense, uint64_t seed = 7) {
  std::vector<at::Tensor> got, want;
  for (int j = 0; j < 3; ++j) {
    const at::Tensor v = ng::seeded_normal(op.dim(), seed + j, at::TensorOptions(at::kDouble));
    got.push_back(op.apply(v));
    want.push_back(at::mv(dense, v));
  }
  return rel_err(at::stack(got), at::stack(want));
}

struct Case {
  Estimator est;
  JvpMethod jvp;
  const char* label;
  int64_t row_budget = 0;
};
const Case kCases[] = {{Estimator::Exact, JvpMethod::ForwardAD, "exact/forward-AD"},
                       {Estimator::Exact, JvpMethod::ROp, "exact/R-op"},
                       {Estimator::Exact, JvpMethod::Auto, "exact/rows", int64_t{1} << 30},
                       {Estimator::PerSample, JvpMethod::Auto, "per-sample"}};
const MatrixKind kMatrices[] = {MatrixKind::G, MatrixKind::Sigma, MatrixKind::Sigma0,
                                MatrixKind::Hessian};

void check_all_matrices(const std::string& model, bool cross_entropy) {
  Problem pb = make_problem(model, kN, cross_entropy);
  const DenseMatrices d = dense_matrices(pb, cross_entropy);
  // A random vector is no eigenvector: the products below are not trivially right.
  for (MatrixKind m : kMatrices) {
    ASSERT_GT(dense_of(d, m).norm().item<double>(), 1e-3) << ng::to_string(m);
    for (const Case& c : kCases) {
      SCOPED_TRACE(model + " " + ng::to_string(m) + " " + c.label +
                   (cross_entropy ? " cross_entropy" : " mse"));
      CurvatureOperator op(pb.net, pb.x, pb.y,
                           options(m, c.est, cross_entropy ? LossKind::CrossEntropy : LossKind::Mse,
                                   c.jvp, c.row_budget));
      EXPECT_NEAR(op.loss(), d.loss, 1e-12 * d.loss);
      EXPECT_EQ(op.has_rows(),
                (c.est == Estimator::PerSample || c.row_budget > 0) && m != MatrixKind::Hessian);
      EXPECT_EQ(op.storage(), op.has_rows() ? "rows" : "streamed");
      EXPECT_LT(matvec_error(op, dense_of(d, m)), 1e-10);
      if (c.est == Estimator::Exact && m != MatrixKind::Hessian) {
        EXPECT_EQ(op.jvp_method(), c.jvp);
      }
    }
  }
}

TEST(CurvatureOperator, MatchesDenseMatricesFnnMse) {
  check_all_matrices("fnn", false);
}
TEST(CurvatureOperator, MatchesDenseMatricesCnnMse) {
  check_all_matrices("cnn", false);
}
TEST(CurvatureOperator, MatchesDenseMatricesTanhMse) {
  check_all_matrices("tanh", false);
}
TEST(CurvatureOperator, MatchesDenseMatricesFnnCrossEntropy) {
  check_all_matrices("fnn", true);
}
TEST(CurvatureOperator, MatchesDenseMatricesCnnCrossEntropy) {
  check_all_matrices("cnn", true);
}

TEST(CurvatureOperator, ForwardAdAndROpGiveTheJacobianProduct) {
  for (const char* model : {"fnn", "cnn", "tanh"}) {
    SCOPED_TRACE(model);
    Problem pb = make_problem(model, kN, false);
    const DenseMatrices d = dense_matrices(pb, false, false);
    CurvatureOperator op(pb.net, pb.x, pb.y, options(MatrixKind::G, Estimator::Exact));
    const at::Tensor v = ng::seeded_normal(op.dim(), 3, at::TensorOptions(at::kDouble));
    const at::Tensor want = at::einsum("icp,p->ic", {d.jac, v});
    EXPECT_LT(rel_err(op.jacobian_vector(v, JvpMethod::ForwardAD), want), 1e-12);
    EXPECT_LT(rel_err(op.jacobian_vector(v, JvpMethod::ROp), want), 1e-12);
  }
}

TEST(CurvatureOperator, LinearRegressionClosedForms) {
  Problem pb = make_problem("linreg", kN, false);
  const int64_t n = pb.x.size(0);
  const at::Tensor xtx = pb.x.t().mm(pb.x) / n;  // G = H = X^T X / n
  const at::Tensor w = pb.net->parameters()[0].detach().reshape(-1);
  const at::Tensor r = pb.x.mv(w) - pb.y.reshape(-1);
  const at::Tensor sigma = (pb.x * r.pow(2).unsqueeze(1)).t().mm(pb.x) / n;
  for (const Case& c : kCases) {
    SCOPED_TRACE(c.label);
    CurvatureOperator g(pb.net, pb.x, pb.y,
                        options(MatrixKind::G, c.est, LossKind::Mse, c.jvp, c.row_budget));
    CurvatureOperator h(pb.net, pb.x, pb.y,
                        options(MatrixKind::Hessian, c.est, LossKind::Mse, c.jvp, c.row_budget));
    CurvatureOperator s(pb.net, pb.x, pb.y,
                        options(MatrixKind::Sigma, c.est, LossKind::Mse, c.jvp, c.row_budget));
    EXPECT_LT(matvec_error(g, xtx), 1e-12);
    EXPECT_LT(matvec_error(h, xtx), 1e-12);
    EXPECT_LT(matvec_error(s, sigma), 1e-12);
    EXPECT_NEAR(g.loss(), 0.5 * r.pow(2).mean().item<double>(), 1e-12);
  }
}

TEST(CurvatureOperator, BatchSizeDoesNotBiasTheAverage) {
  Problem pb = make_problem("cnn", kN, false);
  const DenseMatrices d = dense_matrices(pb, false, false);
  // 37 = 36 + 1, 5 * 7 + 2, one batch, batch larger than n: every split must give the average.
  for (int64_t bs : {1, 6, 7, 10, 36, 37, 64}) {
    for (MatrixKind m : {MatrixKind::G, MatrixKind::Sigma, MatrixKind::Sigma0}) {
      SCOPED_TRACE("batch " + std::to_string(bs) + " " + ng::to_string(m));
      CurvatureOptions o = options(m, Estimator::Exact);
      o.batch_size = bs;
      CurvatureOperator op(pb.net, pb.x, pb.y, o);
      EXPECT_LT(matvec_error(op, dense_of(d, m)), 1e-10);
      EXPECT_NEAR(op.loss(), d.loss, 1e-12 * d.loss);
      EXPECT_LT(rel_err(op.gradient(), d.grad), 1e-12);
    }
  }
}

TEST(CurvatureOperator, EstimatorsAgreeOnTheSameSamples) {
  Problem pb = make_problem("tanh", kN, false);
  for (MatrixKind m : kMatrices) {
    SCOPED_TRACE(ng::to_string(m));
    CurvatureOperator exact(pb.net, pb.x, pb.y, options(m, Estimator::Exact));
    CurvatureOperator per(pb.net, pb.x, pb.y, options(m, Estimator::PerSample));
    for (uint64_t s = 0; s < 3; ++s) {
      const at::Tensor v = ng::seeded_normal(exact.dim(), 20 + s, at::TensorOptions(at::kDouble));
      EXPECT_LT(rel_err(per.apply(v), exact.apply(v)), 1e-12);
    }
  }
}

// v^T A v from one Jacobian-vector product equals v . (A v), for both losses.
TEST(CurvatureOperator, QuadraticFormIsVDotAv) {
  Problem pb = make_problem("tanh", kN, false);
  for (LossKind l : {LossKind::Mse, LossKind::CrossEntropy})
    for (MatrixKind m : {MatrixKind::G, MatrixKind::Sigma, MatrixKind::Sigma0}) {
      SCOPED_TRACE(ng::to_string(m) + " " + ng::to_string(l));
      CurvatureOperator a(pb.net, pb.x, pb.y, options(m, Estimator::Exact, l));
      const at::Tensor v = ng::seeded_normal(a.dim(), 7, at::TensorOptions(at::kDouble));
      const double want = at::dot(v, a.apply(v)).item<double>();
      for (JvpMethod j : {JvpMethod::ForwardAD, JvpMethod::ROp})
        EXPECT_NEAR(a.quadratic_form(v, j), want, 1e-10 * std::abs(want));
    }
}

TEST(CurvatureOperator, PerSampleRowsAreTheScaledFactors) {
  Problem pb = make_problem("fnn", kN, false);
  const DenseMatrices d = dense_matrices(pb, false, false);
  CurvatureOperator g(pb.net, pb.x, pb.y, options(MatrixKind::G, Estimator::PerSample));
  CurvatureOperator s(pb.net, pb.x, pb.y, options(MatrixKind::Sigma, Estimator::PerSample));
  CurvatureOperator s0(pb.net, pb.x, pb.y, options(MatrixKind::Sigma0, Estimator::PerSample));
  const int64_t p = g.dim();
  EXPECT_EQ(g.rows().size(0), kN * 3);  // b C rows: the Jacobian rows themselves
  EXPECT_LT(rel_err(g.rows(), d.jac.reshape({kN * 3, p})), 1e-12);
  const at::Tensor gi = at::einsum("icp,ic->ip", {d.jac, d.f - pb.y});
  EXPECT_EQ(s.rows().size(0), kN);  // b rows: per-sample gradients
  EXPECT_LT(rel_err(s.rows(), gi), 1e-12);
  EXPECT_LT(rel_err(s0.rows(), gi - gi.mean(0, true)), 1e-12);
  // A = B^T B / b.
  EXPECT_LT(rel_err(s0.rows().t().mm(s0.rows()) / kN, d.sigma0), 1e-12);
}

TEST(CurvatureOperator, Float32AgreesWithFloat64) {
  Problem pb = make_problem("cnn", kN, true);
  const DenseMatrices d = dense_matrices(pb, true, false);
  for (const Case& c : kCases) {
    SCOPED_TRACE(c.label);
    CurvatureOptions o = options(MatrixKind::G, c.est, LossKind::CrossEntropy, c.jvp, c.row_budget);
    o.dtype = at::kFloat;
    CurvatureOperator op(pb.net, pb.x, pb.y, o);
    const at::Tensor v = ng::seeded_normal(op.dim(), 5, at::TensorOptions(at::kDouble));
    const at::Tensor got = op.apply(v.to(at::kFloat));
    EXPECT_EQ(got.scalar_type(), at::kFloat);
    EXPECT_LT(rel_err(got.to(at::kDouble), d.g.mv(v)), 1e-5);
    pb.net->to(at::kDouble);
  }
}

TEST(CurvatureOperator, CountsProductsAndFlattensInNamedParameterOrder) {
  Problem pb = make_problem("cnn", kN, false);
  CurvatureOptions o = options(MatrixKind::G, Estimator::Exact);
  o.probe = false;
  CurvatureOperator op(pb.net, pb.x, pb.y, o);
  EXPECT_EQ(op.matvecs(), 0);
  const std::vector<std::string> want = {"conv.weight", "conv.bias", "fc.weight", "fc.bias"};
  EXPECT_EQ(op.layout().names, want);
  EXPECT_EQ(op.dim(), 4 * 3 * 9 + 4 + 36 * 3 + 3);
  EXPECT_EQ(op.layout().offsets[2], 4 * 3 * 9 + 4);
  op.apply(at::ones({op.dim()}, at::kDouble));
  at::Tensor out = at::empty({op.dim()}, at::kDouble);
  const void* ptr = out.data_ptr();
  op.apply(at::ones({op.dim()}, at::kDouble), out);
  EXPECT_EQ(out.data_ptr(), ptr);  // written in place
  EXPECT_EQ(op.matvecs(), 2);
  // The constructor's probe costs three products.
  o.probe = true;
  CurvatureOperator probed(pb.net, pb.x, pb.y, o);
  EXPECT_EQ(probed.matvecs(), 3);
  EXPECT_TRUE(op.layout().values().equal(at::cat(
      {pb.net->named_parameters()["conv.weight"].reshape(-1),
       pb.net->named_parameters()["conv.bias"], pb.net->named_parameters()["fc.weight"].reshape(-1),
       pb.net->named_parameters()["fc.bias"]})));
}

TEST(CurvatureOperator, ProbeCatchesANondeterministicModel) {
  at::manual_seed(3);
  auto net = std::make_shared<NoisyNet>();
  const at::Tensor x = at::randn({10, 4}, at::kDouble);
  const at::Tensor y = at::randn({10, 2}, at::kDouble);
  try {
    CurvatureOperator op(net, x, y, options(MatrixKind::G, Estimator::Exact));
    FAIL() << "no error";
  } catch (const ng::Error& e) {
    EXPECT_NE(std::string(e.what()).find("not deterministic"), std::string::npos) << e.what();
  }
}

TEST(CurvatureOperator, PutsTheModelInEvalMode) {
  at::manual_seed(3);
  auto net = std::make_shared<DropoutNet>();
  net->to(at::kDouble);
  net->train();
  Problem pb{"dropout", net, at::randn({10, 4}, at::kDouble), at::randn({10, 2}, at::kDouble)};
  CurvatureOperator op(net, pb.x, pb.y, options(MatrixKind::Sigma, Estimator::Exact));
  EXPECT_FALSE(net->is_training());
  const DenseMatrices d = dense_matrices(pb, false, false);  // eval mode too
  EXPECT_LT(matvec_error(op, d.sigma), 1e-10);
}

TEST(CurvatureOperator, ProbeCatchesANonSymmetricOperator) {
  at::manual_seed(4);
  at::Tensor a = at::randn({50, 50}, at::kDouble);
  ng::DenseOperator sym(a + a.t());
  EXPECT_NO_THROW(ng::check_operator(sym, "symmetric"));
  // Symmetric plus a small skew part (1% of the size): still caught.
  at::Tensor skew = a - a.t();
  ng::DenseOperator broken(a + a.t() + 0.01 * skew);
  try {
    ng::check_operator(broken, "broken");
    FAIL() << "no error";
  } catch (const ng::Error& e) {
    EXPECT_NE(std::string(e.what()).find("not symmetric"), std::string::npos) << e.what();
  }
}

TEST(CurvatureOperator, BadInputsAreOneLineErrors) {
  Problem pb = make_problem("fnn", kN, false);
  // Targets with the wrong number of outputs.
  EXPECT_THROW(CurvatureOperator(pb.net, pb.x, at::zeros({kN, 5}, at::kDouble),
                                 options(MatrixKind::G, Estimator::Exact)),
               ng::Error);
  EXPECT_THROW(CurvatureOperator(pb.net, pb.x, at::zeros({kN + 1, 3}, at::kDouble),
                                 options(MatrixKind::G, Estimator::Exact)),
               ng::Error);
  CurvatureOptions o = options(MatrixKind::G, Estimator::PerSample);
  o.max_row_bytes = 1000;
  try {
    CurvatureOperator op(pb.net, pb.x, pb.y, o);
    FAIL() << "no error";
  } catch (const ng::Error& e) {
    EXPECT_NE(std::string(e.what()).find("--estimator exact"), std::string::npos) << e.what();
  }
  CurvatureOperator op(pb.net, pb.x, pb.y, options(MatrixKind::Hessian, Estimator::PerSample));
  EXPECT_FALSE(op.has_rows());
  EXPECT_THROW(op.rows(), ng::Error);
  EXPECT_THROW(op.apply(at::zeros({op.dim() + 1}, at::kDouble)), ng::Error);
}

TEST(CurvatureOperator, NameTablesParseCanonicalNamesAndAliases) {
  const auto& m = ng::matrix_names();
  EXPECT_EQ(m.canonical(), (std::vector<std::string>{"G", "Sigma", "Sigma0", "H"}));
  EXPECT_EQ(m.parse("sigma0", "--matrices"), MatrixKind::Sigma0);
  EXPECT_EQ(m.parse("Sigma1", "--matrices"), MatrixKind::Sigma);
  EXPECT_EQ(m.parse("hessian", "--matrices"), MatrixKind::Hessian);
  EXPECT_EQ(m.parse("h", "--matrices"), MatrixKind::Hessian);
  EXPECT_EQ(m.name(MatrixKind::Hessian), "H");
  try {
    m.parse("fisher", "spectrum.matrix");
    ADD_FAILURE() << "no error";
  } catch (const ng::Error& e) {
    EXPECT_EQ(std::string(e.what()),
              "spectrum.matrix: unknown matrix 'fisher' (expected G, Sigma, Sigma0 or H)");
  }
  EXPECT_EQ(ng::estimator_names().parse("per_sample", "f"), Estimator::PerSample);
  EXPECT_EQ(ng::estimator_names().name(Estimator::PerSample), "per-sample");
  EXPECT_EQ(ng::estimator_names().choices(), "exact or per-sample");
  EXPECT_EQ(ng::jvp_names().parse("ROP", "f"), ng::JvpMethod::ROp);
  EXPECT_EQ(ng::loss_names().parse("cross_entropy", "f"), LossKind::CrossEntropy);
  EXPECT_EQ(ng::loss_names().name(LossKind::Mse), "mse");
  EXPECT_THROW(ng::loss_names().parse("l1", "train.loss"), ng::Error);
}

TEST(CurvatureOperator, RandomSubsetIsSeededSortedAndDistinct) {
  const auto a = ng::random_subset(1000, 40, 9);
  const auto b = ng::random_subset(1000, 40, 9);
  const auto c = ng::random_subset(1000, 40, 10);
  EXPECT_EQ(a, b);
  EXPECT_NE(a, c);
  EXPECT_EQ(a.size(), 40u);
  EXPECT_TRUE(std::is_sorted(a.begin(), a.end()));
  EXPECT_EQ(std::set<int64_t>(a.begin(), a.end()).size(), 40u);
  EXPECT_EQ(ng::random_subset(5, 10, 0).size(), 5u);
}

// ---- metrics ----

struct DenseMetrics {
  std::vector<double> lambda, alpha, g;
  double mu, trace_g, frob_g, srk_g, srk_g2;
};

DenseMetrics dense_metrics(const DenseMatrices& d, int64_t k) {
  DenseMetrics m;
  at::Tensor vecs;
  std::vector<double> vals;
  dense_eigh(d.g, &vals, &vecs);
  for (int64_t j = 0; j < k; ++j) {
    const at::Tensor u = vecs[j];
    m.lambda.push_back(vals[j]);
    m.alpha.push_back(at::dot(u, d.sigma.mv(u)).item<double>() / (2 * d.loss));
    m.g.push_back(m.alpha.back() / vals[j]);
  }
  const double f2 = d.g.pow(2).sum().item<double>();
  m.mu = at::trace(d.sigma.mm(d.g)).item<double>() / (2 * d.loss * f2);
  m.trace_g = at::trace(d.g).item<double>();
  m.frob_g = std::sqrt(f2);
  m.srk_g = m.trace_g / vals[0];
  m.srk_g2 = f2 / (vals[0] * vals[0]);
  return m;
}

void expect_rel(double got, double want, double tol, const char* what) {
  EXPECT_LE(std::fabs(got - want), tol * std::fabs(want)) << what << ": " << got << " vs " << want;
}

TEST(Metrics, GramFormulasAreExactForPerSampleOperators) {
  for (bool ce : {false, true}) {
    SCOPED_TRACE(ce ? "cross_entropy" : "mse");
    Problem pb = make_problem("cnn", kN, ce);
    const DenseMatrices d = dense_matrices(pb, ce, false);
    const LossKind l = ce ? LossKind::CrossEntropy : LossKind::Mse;
    CurvatureOperator g(pb.net, pb.x, pb.y, options(MatrixKind::G, Estimator::PerSample, l));
    CurvatureOperator s(pb.net, pb.x, pb.y, options(MatrixKind::Sigma, Estimator::PerSample, l));
    const int64_t k = 5;
    ng::EigenOptions eo;
    eo.k = k;
    const ng::Eigenpairs eig = ng::top_eigenpairs(g, eo);
    EXPECT_EQ(eig.solver, "gram");
    const ng::Alignment a = ng::compute_alignment(g, s, eig, {});
    const DenseMetrics m = dense_metrics(d, k);
    EXPECT_EQ(a.method, "gram");
    for (int64_t j = 0; j < k; ++j) {
      expect_rel(a.lambda[j], m.lambda[j], 1e-10, "lambda");
      expect_rel(a.alpha[j], m.alpha[j], 1e-8, "alpha");
      expect_rel(a.g[j], m.g[j], 1e-8, "g");
    }
    expect_rel(a.mu.value, m.mu, 1e-10, "mu");
    expect_rel(a.trace_g.value, m.trace_g, 1e-10, "tr G");
    expect_rel(a.frob_g.value, m.frob_g, 1e-10, "|G|_F");
    expect_rel(a.srk_g.value, m.srk_g, 1e-10, "srk(G)");
    expect_rel(a.srk_g2.value, m.srk_g2, 1e-10, "srk(G^2)");
    EXPECT_EQ(a.mu.se, 0);
    const ng::TraceStats ts = ng::trace_stats(s, 0, 0);
    expect_rel(ts.trace.value, at::trace(d.sigma).item<double>(), 1e-10, "tr Sigma");
    expect_rel(ts.trace_sq.value, d.sigma.pow(2).sum().item<double>(), 1e-10, "tr Sigma^2");

    // Sigma made from G: every Gram matrix from the one Jacobian Gram matrix they share.
    ng::CurvatureOptions o = options(MatrixKind::G, Estimator::PerSample, l);
    o.keep_jacobian = true;
    CurvatureOperator gj(pb.net, pb.x, pb.y, o);
    CurvatureOperator sj(gj, MatrixKind::Sigma);
    ASSERT_TRUE(gj.shares_jacobian(sj));
    const ng::Alignment aj = ng::compute_alignment(gj, sj, ng::top_eigenpairs(gj, eo), {});
    for (int64_t j = 0; j < k; ++j) {
      expect_rel(aj.lambda[j], m.lambda[j], 1e-10, "shared lambda");
      expect_rel(aj.alpha[j], m.alpha[j], 1e-8, "shared alpha");
    }
    expect_rel(aj.mu.value, m.mu, 1e-10, "shared mu");
    expect_rel(aj.srk_g2.value, m.srk_g2, 1e-10, "shared srk(G^2)");
    const ng::TraceStats tj = ng::trace_stats(sj, 0, 0);
    expect_rel(tj.trace_sq.value, d.sigma.pow(2).sum().item<double>(), 1e-10, "shared tr Sigma^2");
  }
}

TEST(Metrics, HutchinsonEstimatesAreWithinTheirStandardErrors) {
  Problem pb = make_problem("fnn", kN, false);
  const DenseMatrices d = dense_matrices(pb, false, false);
  CurvatureOperator g(pb.net, pb.x, pb.y, options(MatrixKind::G, Estimator::Exact));
  CurvatureOperator s(pb.net, pb.x, pb.y, options(MatrixKind::Sigma, Estimator::Exact));
  const int64_t k = 4;
  ng::EigenOptions eo;
  eo.k = k;
  const ng::Eigenpairs eig = ng::top_eigenpairs(g, eo);
  EXPECT_EQ(eig.solver, "lanczos");
  ng::AlignmentOptions ao;
  ao.probes = 200;
  ao.seed = 11;
  const int64_t before = g.matvecs() + s.matvecs();
  const ng::Alignment a = ng::compute_alignment(g, s, eig, ao);
  EXPECT_EQ(g.matvecs() + s.matvecs() - before, 2 * ao.probes + k);
  const DenseMetrics m = dense_metrics(d, k);
  EXPECT_EQ(a.method, "hutchinson");
  for (int64_t j = 0; j < k; ++j) {  // alpha and g need no probes: exact
    expect_rel(a.alpha[j], m.alpha[j], 1e-8, "alpha");
    expect_rel(a.g[j], m.g[j], 1e-8, "g");
  }
  auto within = [](const ng::Estimate& e, double want, const char* what) {
    EXPECT_EQ(e.probes, 200) << what;
    EXPECT_GT(e.se, 0) << what;
    EXPECT_LT(e.se, 0.25 * std::fabs(want)) << what;  // informative, not a vacuous band
    EXPECT_LT(std::fabs(e.value - want), 4 * e.se)
        << what << ": " << e.value << " +- " << e.se << " vs " << want;
  };
  within(a.mu, m.mu, "mu");
  within(a.trace_g, m.trace_g, "tr G");
  within(a.frob_g, m.frob_g, "|G|_F");
  within(a.srk_g, m.srk_g, "srk(G)");
  within(a.srk_g2, m.srk_g2, "srk(G^2)");
  within(a.trace_sigma_g, at::trace(d.sigma.mm(d.g)).item<double>(), "tr(Sigma G)");
}

TEST(Metrics, MismatchedOperatorsAreRejected) {
  Problem pb = make_problem("fnn", kN, false);
  CurvatureOperator g(pb.net, pb.x, pb.y, options(MatrixKind::G, Estimator::PerSample));
  CurvatureOperator s(pb.net, pb.x.narrow(0, 0, 20), pb.y.narrow(0, 0, 20),
                      options(MatrixKind::Sigma, Estimator::PerSample));
  ng::EigenOptions eo;
  eo.k = 3;
  const ng::Eigenpairs eig = ng::top_eigenpairs(g, eo);
  EXPECT_THROW(ng::compute_alignment(g, s, eig, {}), ng::Error);
  EXPECT_THROW(ng::compute_alignment(s, g, eig, {}), ng::Error);
}

// Not a test: the cost of one exact G v over n samples relative to one forward+backward pass
// over the same samples, float32, paper-like CNN. Run with --gtest_also_run_disabled_tests.
struct PaperCnn : ng::NetImpl {
  PaperCnn() {
    c1 = register_module("c1", torch::nn::Conv2d(torch::nn::Conv2dOptions(3, 6, 5)));
    c2 = register_module("c2", torch::nn::Conv2d(torch::nn::Conv2dOptions(6, 16, 5)));
    f1 = register_module("f1", torch::nn::Linear(400, 100));
    f2 = register_module("f2", torch::nn::Linear(100, 2));
  }
  torch::Tensor forward(const torch::Tensor& x) override {
    at::Tensor h = at::max_pool2d(at::relu(c1->forward(x)), {2, 2});
    h = at::max_pool2d(at::relu(c2->forward(h)), {2, 2});
    return f2->forward(at::relu(f1->forward(h.flatten(1))));
  }
  std::string describe() const override { return "paper cnn"; }
  torch::nn::Conv2d c1{nullptr}, c2{nullptr};
  torch::nn::Linear f1{nullptr}, f2{nullptr};
};

TEST(CurvatureTiming, DISABLED_ExactProductOverForwardBackward) {
  at::manual_seed(0);
  auto net = std::make_shared<PaperCnn>();
  const int64_t n = 2048, bs = 256;
  const at::Tensor x = at::randn({n, 3, 32, 32});
  const at::Tensor y = at::one_hot(at::randint(0, 2, {n}, at::kLong), 2).to(at::kFloat);
  using Clock = std::chrono::steady_clock;
  auto time_it = [](auto&& fn) {
    fn();  // warm-up
    double best = 1e30;
    for (int r = 0; r < 5; ++r) {
      const auto t0 = Clock::now();
      fn();
      best = std::min(best, std::chrono::duration<double>(Clock::now() - t0).count());
    }
    return best;
  };
  const double fb = time_it([&] {
    for (int64_t s = 0; s < n; s += bs) {
      const at::Tensor f = net->forward(x.narrow(0, s, bs));
      const at::Tensor l = 0.5 * (f - y.narrow(0, s, bs)).pow(2).sum() / n;
      torch::autograd::grad({l}, net->parameters());
    }
  });
  const at::Tensor v = at::randn({ng::ParameterLayout::of(*net).size});
  for (JvpMethod j : {JvpMethod::ForwardAD, JvpMethod::ROp}) {
    CurvatureOptions o;
    o.matrix = MatrixKind::G;
    o.estimator = Estimator::Exact;
    o.jvp = j;
    o.batch_size = bs;
    o.dtype = at::kFloat;
    CurvatureOperator op(net, x, y, o);
    const double t = time_it([&] { op.apply(v); });
    std::printf("exact G v (%s): %.4f s, forward+backward: %.4f s, ratio %.2f (n %ld, p %ld)\n",
                ng::to_string(j).c_str(), t, fb, t / fb, static_cast<long>(n),
                static_cast<long>(op.dim()));
  }
}

}  // namespace
