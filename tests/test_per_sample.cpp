// Per-sample rows built batched (models/layers.h + src/curvature/per_sample.h) against the
// one-sample loop for every model family, the fallback for models the batched path does not
// cover, operators made from another's Jacobian, and the exact estimator on rows against the
// streamed one; and run_concurrently (src/core/threads.h), on which the chunks are built.
#include <c10/core/GradMode.h>
#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <cmath>
#include <mutex>
#include <set>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include "models/layers.h"
#include "models/model.h"
#include "src/core/error.h"
#include "src/core/threads.h"
#include "src/curvature/curvature.h"
#include "tests/model_specs.h"
#include "tests/test_curvature_nets.h"
#include "tests/testing.h"

namespace {

using curvtest::DenseMatrices;
using curvtest::Problem;
using curvtest::rel_err;
using ng::CurvatureOperator;
using ng::CurvatureOptions;
using ng::Estimator;
using ng::LossKind;
using ng::MatrixKind;
using ng::RowsMethod;

constexpr int64_t kN = 7;  // batches of 3, 3 and 1
constexpr int64_t kBatch = 3;

struct Family {
  std::string label;
  ng::ModelSpec spec;
  std::vector<int64_t> input;  // one sample's shape
};

std::vector<Family> families() {
  std::vector<Family> f;
  ng::ModelSpec resnet = ngtest::model_spec("resnet", 3);
  resnet.depth = 8;
  resnet.width = 2;
  f.push_back({"resnet", resnet, {3, 8, 8}});
  ng::ModelSpec vgg = ngtest::model_spec("vgg", 3);
  vgg.depth = 11;
  vgg.width = 2;
  vgg.head_width = 6;
  f.push_back({"vgg", vgg, {3, 32, 32}});
  f.push_back({"cnn", ngtest::model_spec("cnn", 2), {3, 32, 32}});
  ng::ModelSpec fnn = ngtest::model_spec("fnn", 3, 10);
  fnn.hidden = {8, 6};
  f.push_back({"fnn", fnn, {10}});
  f.push_back({"linear", ngtest::model_spec("linear", 3, 10), {10}});
  ng::ModelSpec lnet = ngtest::model_spec("linear_net", 3, 10);
  lnet.hidden = {6, 5};
  f.push_back({"linear_net", lnet, {10}});
  f.push_back({"diag_linear", ngtest::model_spec("diag_linear", 3, 10), {10}});
  ng::ModelSpec two = ngtest::model_spec("two_layer", 1, 10);
  two.hidden = {7};
  f.push_back({"two_layer", two, {10}});
  two.train_outer = true;
  f.push_back({"two_layer/outer", two, {10}});
  f.push_back({"toy", ngtest::model_spec("toy", 1, 1), {1}});
  return f;
}

Family resnet_family() {
  return families().front();
}

struct Data {
  ng::Net net;
  at::Tensor x, y;
};

// Parameters moved off their initialisation (Fixup starts with zero branches and head, which
// would leave most rows zero) by half their spread, so that outputs stay O(1) and cross entropy's
// softmax is not saturated; float64.
Data make_data(const Family& fam, bool cross_entropy, uint64_t seed = 1, int64_t n = kN) {
  at::manual_seed(seed);
  Data d;
  d.net = ng::make_model(fam.spec);
  d.net->to(at::kDouble);
  {
    at::NoGradGuard no_grad;
    for (auto& t : d.net->parameters()) {
      const double sd = t.numel() > 1 ? t.std().item<double>() : 0;
      t.add_((sd > 0 ? 0.5 * sd : 0.2) * at::randn_like(t));
    }
  }
  std::vector<int64_t> shape = {n};
  shape.insert(shape.end(), fam.input.begin(), fam.input.end());
  d.x = at::randn(shape, at::kDouble);
  const int64_t c = fam.spec.num_classes;
  d.y = cross_entropy ? curvtest::one_hot(n, c) : at::randn({n, c}, at::kDouble);
  return d;
}

CurvatureOptions options(MatrixKind m, LossKind l, RowsMethod r,
                         Estimator e = Estimator::PerSample) {
  CurvatureOptions o = curvtest::options(m, e, l);
  o.rows_method = r;
  o.batch_size = kBatch;
  return o;
}

const MatrixKind kRowMatrices[] = {MatrixKind::G, MatrixKind::Sigma, MatrixKind::Sigma0};

TEST(PerSampleRows, BatchedEqualLoopForEveryFamily) {
  for (const Family& fam : families()) {
    const bool single = fam.spec.num_classes == 1;
    for (LossKind l : {LossKind::Mse, LossKind::CrossEntropy}) {
      if (single && l == LossKind::CrossEntropy) continue;  // softmax of one output
      Data d = make_data(fam, l == LossKind::CrossEntropy);
      for (MatrixKind m : kRowMatrices) {
        SCOPED_TRACE(fam.label + " " + ng::to_string(m) + " " + ng::to_string(l));
        CurvatureOperator fast(d.net, d.x, d.y, options(m, l, RowsMethod::Auto));
        CurvatureOperator loop(d.net, d.x, d.y, options(m, l, RowsMethod::Loop));
        EXPECT_EQ(loop.rows_method(), RowsMethod::Loop);
        // The toy model's parameters enter through a formula no layer function covers.
        EXPECT_EQ(fast.rows_method(), fam.label == "toy" ? RowsMethod::Loop : RowsMethod::Batched)
            << fast.rows_note();
        ASSERT_GT(loop.rows().norm().item<double>(), 0);
        EXPECT_LT(rel_err(fast.rows(), loop.rows()), 1e-12);
        // The batched path's outputs come from its own forwards, the loop's from a pass of their
        // own.
        EXPECT_LT(rel_err(fast.outputs(), loop.outputs()), 1e-14);
        EXPECT_NEAR(fast.loss(), loop.loss(), 1e-14 * std::abs(loop.loss()));
      }
    }
  }
}

// An oracle independent of the loop: the explicit Jacobian, one autograd::grad per output entry.
TEST(PerSampleRows, BatchedRowsAreTheDenseJacobian) {
  for (LossKind l : {LossKind::Mse, LossKind::CrossEntropy}) {
    SCOPED_TRACE(ng::to_string(l));
    const bool ce = l == LossKind::CrossEntropy;
    Data d = make_data(resnet_family(), ce);
    CurvatureOperator g(d.net, d.x, d.y, options(MatrixKind::G, l, RowsMethod::Batched));
    CurvatureOperator s0(d.net, d.x, d.y, options(MatrixKind::Sigma0, l, RowsMethod::Batched));
    Problem pb{"resnet", d.net, d.x, d.y};
    const DenseMatrices dm = curvtest::dense_matrices(pb, ce, false);
    const int64_t c = d.y.size(1);
    if (!ce) {
      EXPECT_LT(rel_err(g.rows(), dm.jac.reshape({kN * c, -1})), 1e-12);
    }
    EXPECT_LT(rel_err(g.rows().t().mm(g.rows()) / kN, dm.g), 1e-12);
    EXPECT_LT(rel_err(s0.rows().t().mm(s0.rows()) / kN, dm.sigma0), 1e-12);
  }
}

// run_concurrently: every worker on a thread of its own (the caller is worker 0), all started
// before any body runs, with the caller's intra-op thread count and grad mode; an exception in one
// stops the others through `failed` and reaches the caller.
TEST(Threads, RunConcurrentlyUsesThreadsOfTheirOwn) {
  const ng::IntraThreads one(1);
  const c10::AutoGradMode no_grad(false);
  std::mutex mu;
  std::set<std::thread::id> ids;
  std::vector<int> intra(3, 0), grad(3, 1);
  std::atomic<int> inside{0}, seen_all{0};
  ng::run_concurrently(3, [&](int64_t w) {
    // Each body waits (bounded) for the others: one after the other, the first would wait alone.
    ++inside;
    for (int k = 0; k < 2000 && inside.load() < 3; ++k)
      std::this_thread::sleep_for(std::chrono::milliseconds(1));
    if (inside.load() == 3) ++seen_all;
    intra[w] = at::get_num_threads();
    grad[w] = c10::GradMode::is_enabled() ? 1 : 0;
    const std::lock_guard<std::mutex> lock(mu);
    ids.insert(std::this_thread::get_id());
  });
  EXPECT_EQ(ids.size(), 3u);
  EXPECT_EQ(ids.count(std::this_thread::get_id()), 1u);
  EXPECT_EQ(seen_all.load(), 3);
  EXPECT_EQ(intra, std::vector<int>(3, 1));
  EXPECT_EQ(grad, std::vector<int>(3, 0));

  std::atomic<bool> failed{false};
  std::atomic<int> stopped{0};
  auto body = [&](int64_t w) {
    if (w == 1) throw std::runtime_error("worker 1 failed");
    for (int k = 0; k < 2000 && !failed.load(); ++k)
      std::this_thread::sleep_for(std::chrono::milliseconds(1));
    if (failed.load()) ++stopped;
  };
  EXPECT_THROW(
      {
        try {
          ng::run_concurrently(2, body, &failed);
        } catch (const std::runtime_error& e) {
          EXPECT_STREQ(e.what(), "worker 1 failed");
          throw;
        }
      },
      std::runtime_error);
  EXPECT_EQ(stopped.load(), 1);
}

// On a CPU with several threads the chunks are built concurrently, in whatever order the threads
// take them: the rows are the same bit for bit from one build to the next, and agree with one
// thread's build to rounding.
TEST(PerSampleRows, ConcurrentChunksAreDeterministic) {
  for (LossKind l : {LossKind::Mse, LossKind::CrossEntropy}) {
    SCOPED_TRACE(ng::to_string(l));
    Data d = make_data(resnet_family(), l == LossKind::CrossEntropy, 3, 40);  // 14 chunks
    const ng::IntraThreads two(2);
    CurvatureOperator a(d.net, d.x, d.y, options(MatrixKind::G, l, RowsMethod::Batched));
    CurvatureOperator b(d.net, d.x, d.y, options(MatrixKind::G, l, RowsMethod::Batched));
    // Two workers (Threads.RunConcurrentlyUsesThreadsOfTheirOwn holds them to threads of their
    // own).
    EXPECT_EQ(a.rows_threads(), 2);
    EXPECT_TRUE(a.rows().equal(b.rows()));
    CurvatureOperator loop(d.net, d.x, d.y, options(MatrixKind::G, l, RowsMethod::Loop));
    EXPECT_EQ(loop.rows_threads(), 2);
    EXPECT_LT(rel_err(a.rows(), loop.rows()), 1e-13);
    at::Tensor serial;
    {
      const ng::IntraThreads one(1);
      CurvatureOperator s(d.net, d.x, d.y, options(MatrixKind::G, l, RowsMethod::Batched));
      EXPECT_EQ(s.rows_threads(), 1);
      serial = s.rows();
    }
    ASSERT_GT(serial.norm().item<double>(), 0);
    EXPECT_LT(rel_err(a.rows(), serial), 1e-13);
    EXPECT_LT(rel_err(a.outputs(), loop.outputs()), 1e-14);
  }
}

// The models' numerics did not change: the layer functions compute what the models computed
// inline (the same ATen calls), recording or not.
TEST(PerSampleRows, RecordingDoesNotChangeTheOutputs) {
  for (const Family& fam : families()) {
    SCOPED_TRACE(fam.label);
    Data d = make_data(fam, false);
    const at::Tensor plain = d.net->forward(d.x);
    ng::layers::Recorder rec;
    at::Tensor recorded;
    {
      ng::layers::Recording on(rec);
      recorded = d.net->forward(d.x);
    }
    EXPECT_TRUE(plain.equal(recorded));
    EXPECT_EQ(rec.records.empty(), fam.label == "toy");
  }
}

TEST(PerSampleRows, UncoveredModelFallsBackAndSaysWhichParameter) {
  Problem pb = curvtest::make_problem("fnn", kN, false);
  testing::internal::CaptureStderr();
  CurvatureOperator op(pb.net, pb.x, pb.y, options(MatrixKind::G, LossKind::Mse, RowsMethod::Auto));
  const std::string err = testing::internal::GetCapturedStderr();
  EXPECT_EQ(op.rows_method(), RowsMethod::Loop);
  EXPECT_NE(op.rows_note().find("'l1.weight'"), std::string::npos) << op.rows_note();
  EXPECT_NE(err.find("one sample at a time"), std::string::npos) << err;
  EXPECT_NE(err.find("l1.weight"), std::string::npos) << err;
  const DenseMatrices dm = curvtest::dense_matrices(pb, false, false);
  EXPECT_LT(rel_err(op.rows(), dm.jac.reshape({kN * 3, -1})), 1e-12);
  // Forcing the batched path on it is an error naming the parameter.
  const std::string msg = ngtest::error_of([&] {
    CurvatureOperator forced(pb.net, pb.x, pb.y,
                             options(MatrixKind::G, LossKind::Mse, RowsMethod::Batched));
  });
  EXPECT_NE(msg.find("l1.weight"), std::string::npos) << msg;
}

// Every parameter passes through a layer function, but the bias is also used outside one: the
// coverage check passes and the batch-gradient check must catch it.
struct SneakyNet : ng::NetImpl {
  SneakyNet() { fc = register_module("fc", torch::nn::Linear(5, 2)); }
  torch::Tensor forward(const torch::Tensor& x) override {
    return ng::layers::linear(fc, x) + 0.5 * fc->bias.sum() * x.narrow(1, 0, 2);
  }
  std::string describe() const override { return "sneaky"; }
  torch::nn::Linear fc{nullptr};
};

TEST(PerSampleRows, ParameterUsedOutsideTheLayersFailsTheBatchGradientCheck) {
  at::manual_seed(2);
  auto net = std::make_shared<SneakyNet>();
  net->to(at::kDouble);
  const at::Tensor x = at::randn({kN, 5}, at::kDouble);
  const at::Tensor y = at::randn({kN, 2}, at::kDouble);
  for (MatrixKind m : kRowMatrices) {
    SCOPED_TRACE(ng::to_string(m));
    CurvatureOperator op(net, x, y, options(m, LossKind::Mse, RowsMethod::Auto));
    EXPECT_EQ(op.rows_method(), RowsMethod::Loop);
    EXPECT_NE(op.rows_note().find("'fc.bias'"), std::string::npos) << op.rows_note();
    CurvatureOperator loop(net, x, y, options(m, LossKind::Mse, RowsMethod::Loop));
    EXPECT_LT(rel_err(op.rows(), loop.rows()), 1e-12);
  }
}

// Operators made from a G operator: rows from its Jacobians, no pass over the data, the same
// rows as operators built alone.
TEST(PerSampleRows, OperatorsMadeFromAnotherShareItsJacobian) {
  for (LossKind l : {LossKind::Mse, LossKind::CrossEntropy}) {
    SCOPED_TRACE(ng::to_string(l));
    Data d = make_data(resnet_family(), l == LossKind::CrossEntropy);
    CurvatureOptions o = options(MatrixKind::G, l, RowsMethod::Auto);
    o.keep_jacobian = true;
    CurvatureOperator g(d.net, d.x, d.y, o);
    EXPECT_TRUE(g.has_jacobian());
    for (MatrixKind m : {MatrixKind::G, MatrixKind::Sigma, MatrixKind::Sigma0}) {
      SCOPED_TRACE(ng::to_string(m));
      CurvatureOperator made(g, m);
      CurvatureOperator alone(d.net, d.x, d.y, options(m, l, RowsMethod::Auto));
      EXPECT_EQ(made.settings().matrix, m);
      EXPECT_TRUE(made.has_jacobian());
      EXPECT_LT(rel_err(made.rows(), alone.rows()), 1e-12);
      EXPECT_EQ(made.loss(), alone.loss());
    }
    // Without keep_jacobian, only mse keeps it (there the rows are the Jacobians).
    o.keep_jacobian = false;
    CurvatureOperator lone(d.net, d.x, d.y, o);
    EXPECT_EQ(lone.has_jacobian(), l == LossKind::Mse);
    CurvatureOperator s(lone, MatrixKind::Sigma);
    CurvatureOperator s0(s, MatrixKind::Sigma0);
    CurvatureOperator alone(d.net, d.x, d.y, options(MatrixKind::Sigma0, l, RowsMethod::Loop));
    EXPECT_LT(rel_err(s0.rows(), alone.rows()), 1e-12);
    // The Hessian made from it is the streamed one.
    CurvatureOperator h(lone, MatrixKind::Hessian);
    CurvatureOperator h_alone(d.net, d.x, d.y, options(MatrixKind::Hessian, l, RowsMethod::Auto));
    EXPECT_FALSE(h.has_rows());
    const at::Tensor v = ng::seeded_normal(h.dim(), 4, at::TensorOptions(at::kDouble));
    EXPECT_LT(rel_err(h.apply(v), h_alone.apply(v)), 1e-12);
  }
}

// The Gram matrices that operators sharing raw Jacobians derive from one Jacobian Gram matrix
// P = J J^T (G, Sigma, Sigma0 and every cross term), and those formed by symmetric tiles from the
// rows alone, against B_a B_b^T / n formed by one product: over 450 rows of G, so that the tiles
// (128 a side) include a ragged last one.
TEST(PerSampleRows, GramMatricesFromTheJacobianGramMatchTheRows) {
  constexpr int64_t n = 150;
  Family fam;
  for (const Family& f : families())
    if (f.label == "fnn") fam = f;
  for (LossKind l : {LossKind::Mse, LossKind::CrossEntropy}) {
    Data d = make_data(fam, l == LossKind::CrossEntropy, 3, n);
    CurvatureOptions o = options(MatrixKind::G, l, RowsMethod::Auto);
    o.keep_jacobian = true;
    CurvatureOperator g(d.net, d.x, d.y, o);
    CurvatureOperator s(g, MatrixKind::Sigma);
    CurvatureOperator s0(s, MatrixKind::Sigma0);
    CurvatureOperator* made[] = {&g, &s, &s0};
    for (CurvatureOperator* a : made)
      for (CurvatureOperator* b : made) {
        SCOPED_TRACE(ng::to_string(l) + " " + ng::to_string(a->settings().matrix) + " x " +
                     ng::to_string(b->settings().matrix));
        ASSERT_TRUE(a->shares_jacobian(*b));
        const at::Tensor direct = a->rows().mm(b->rows().t()) / n;
        EXPECT_LT(rel_err(a->gram_with(*b), direct), 1e-12);
        if (a == b) {
          EXPECT_LT(rel_err(a->gram_matrix(), direct), 1e-12);
        }
      }
    for (MatrixKind m : kRowMatrices) {
      SCOPED_TRACE(ng::to_string(l) + " alone " + ng::to_string(m));
      CurvatureOperator alone(d.net, d.x, d.y, options(m, l, RowsMethod::Auto));
      EXPECT_EQ(alone.has_jacobian(), m == MatrixKind::G && l == LossKind::Mse);
      const at::Tensor& k = alone.gram_matrix();
      EXPECT_LT(rel_err(k, alone.rows().mm(alone.rows().t()) / n), 1e-12);
      EXPECT_LT(rel_err(alone.gram_with(g), alone.rows().mm(g.rows().t()) / n), 1e-12);
    }
  }
}

// The exact estimator on rows (within row_budget) is the streamed exact estimator's matrix.
TEST(PerSampleRows, ExactEstimatorOnRowsMatchesTheStreamedOne) {
  for (const std::string label : {"resnet", "cnn"}) {
    Family fam;
    for (const Family& f : families())
      if (f.label == label) fam = f;
    for (LossKind l : {LossKind::Mse, LossKind::CrossEntropy}) {
      Data d = make_data(fam, l == LossKind::CrossEntropy);
      for (MatrixKind m : kRowMatrices) {
        SCOPED_TRACE(label + " " + ng::to_string(m) + " " + ng::to_string(l));
        CurvatureOptions o = options(m, l, RowsMethod::Auto, Estimator::Exact);
        CurvatureOperator streamed(d.net, d.x, d.y, o);
        o.row_budget = int64_t{1} << 30;
        CurvatureOperator rows(d.net, d.x, d.y, o);
        EXPECT_EQ(streamed.storage(), "streamed");
        EXPECT_EQ(rows.storage(), "rows");
        EXPECT_EQ(rows.rows_method(), RowsMethod::Batched);
        for (uint64_t seed = 0; seed < 3; ++seed) {
          const at::Tensor v = ng::seeded_normal(rows.dim(), seed, at::TensorOptions(at::kDouble));
          EXPECT_LT(rel_err(rows.apply(v), streamed.apply(v)), 1e-10);
          const double q = streamed.quadratic_form(v);
          EXPECT_NEAR(rows.quadratic_form(v), q, 1e-10 * std::abs(q));
        }
        // A budget one byte short of the rows streams.
        o.row_budget = rows.rows().numel() * 8 - 1;
        CurvatureOperator short_budget(d.net, d.x, d.y, o);
        EXPECT_EQ(short_budget.storage(), "streamed");
      }
    }
  }
}

TEST(PerSampleRows, RowsMethodNames) {
  const auto& t = ng::rows_method_names();
  EXPECT_EQ(t.canonical(), (std::vector<std::string>{"auto", "batched", "loop"}));
  EXPECT_EQ(t.parse("Batched", "--rows"), RowsMethod::Batched);
  EXPECT_THROW(t.parse("vmap", "--rows"), ng::Error);
}

}  // namespace
