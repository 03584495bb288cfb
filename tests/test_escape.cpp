// Escape experiments (Section 5 of the paper) against oracles: a hand-written replay of SGD and GD
// on linear regression, the closed-form GD trajectory in G's eigenbasis, the escape directions
// that Theorem 5.2 and Proposition 5.3 predict, determinism across threads, resumable sweeps.
#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cmath>
#include <filesystem>
#include <set>

#include "data/dataset.h"
#include "models/model.h"
#include "src/core/error.h"
#include "src/escape/escape.h"
#include "src/io/files.h"
#include "src/training/train.h"
#include "tests/testing.h"

namespace fs = std::filesystem;

namespace {

// Linear regression f = w^T x with x ~ N(0, diag(lambda)/d), lambda = (1, s, ..., s), and y = 0,
// so theta* = w* = 0 is a global minimum with G = X^T X / n exactly (Figure 3, Appendix A).
struct Quadratic {
  int64_t n = 0, d = 0;
  ng::Dataset data;
  at::Tensor X;      // (n, d) float64
  at::Tensor G;      // (d, d) float64
  at::Tensor evals;  // descending
  at::Tensor U;      // (d, d) float64, columns = eigenvectors, descending
  double frob = 0;
  ng::ModelFactory factory;
  at::Tensor theta_star;
};

Quadratic make_quadratic(int64_t n, int64_t d, double flat, uint64_t seed) {
  Quadratic q;
  q.n = n;
  q.d = d;
  ng::GaussianOptions g;
  g.n = n;
  g.d = d;
  g.outputs = 1;
  g.seed = seed;
  g.variances.assign(d, flat / double(d));
  g.variances[0] = 1.0 / double(d);
  q.data = ng::make_gaussian(g);
  q.data.targets = at::zeros_like(q.data.targets);  // w* = 0
  q.X = q.data.x.to(at::kDouble);
  q.G = at::mm(q.X.t(), q.X) / double(n);
  const auto [vals, vecs] = at::linalg_eigh(q.G);
  q.evals = vals.flip(0).contiguous();
  q.U = vecs.flip(1).contiguous();
  q.frob = q.G.norm().item<double>();
  q.factory = [d] {
    ng::ModelSpec s;
    s.name = "linear";
    s.input_dim = d;
    s.num_classes = 1;
    return ng::make_model(s);
  };
  q.theta_star = at::zeros({d}, at::kDouble);
  return q;
}

const Quadratic& quadratic() {
  // srk(G^2) = sum lambda^2 / lambda_1^2 = 1 + 59 * 0.35^2 ~ 8 (population), far from 1.
  static const Quadratic q = make_quadratic(1000, 60, 0.35, 11);
  return q;
}

double srk_g2(const Quadratic& q) {
  return (q.evals * q.evals).sum().item<double>() / std::pow(q.evals[0].item<double>(), 2);
}

ng::EscapeOptions base_options(ng::Optimizer o, double lr) {
  ng::EscapeOptions e;
  e.optimizer = o;
  e.lr = lr;
  e.dtype = at::kDouble;
  e.ks = {1, 5, 20};
  e.batch = 1;
  e.perturb = 1e-3;
  e.seed = 3;
  e.escape_loss = 1e-4;  // L(theta*) = 0: an absolute threshold
  e.workers = 1;
  e.intra_threads = 1;
  return e;
}

void expect_close(double got, double want, double rel, const std::string& what) {
  EXPECT_NEAR(got, want, rel * std::max(1e-300, std::abs(want))) << what;
}

// The library's trajectories against a replay written out here: the same theta_0, the batches of
// training's epoch permutation, w <- w - lr X_B^T (X_B w) / |B|, and the projections on U.
TEST(Escape, SgdAndGdMatchAHandWrittenReplay) {
  const Quadratic& q = quadratic();
  for (auto opt : {ng::Optimizer::Sgd, ng::Optimizer::Gd}) {
    ng::EscapeOptions e = base_options(opt, opt == ng::Optimizer::Sgd ? 3.0 : 60.0);
    e.batch = 7;  // 1000 = 142 * 7 + 6: every epoch ends on a short batch
    e.runs = 2;
    e.steps = 300;  // crosses two epoch boundaries
    e.log_every = 25;
    e.max_loss_factor = 1e300;
    e.eval_samples = 250;  // the loss on a fixed subset
    e.gd_samples = 300;    // GD's gradient on another
    const auto res = ng::run_escape(q.factory, q.theta_star, q.U.slice(1, 0, 20), q.data, e);
    ASSERT_EQ(res.runs.size(), 2u);
    const auto eval_idx = ng::escape_eval_subset(q.n, e), gd_idx = ng::escape_gd_subset(q.n, e);
    ASSERT_EQ(eval_idx.size(), 250u);
    ASSERT_EQ(gd_idx.size(), 300u);
    ASSERT_NE(eval_idx, std::vector<int64_t>(gd_idx.begin(), gd_idx.begin() + 250));
    const at::Tensor Xe = q.X.index_select(0, at::tensor(eval_idx));
    const at::Tensor Xg = q.X.index_select(0, at::tensor(gd_idx));
    const at::Tensor Ge = at::mm(Xe.t(), Xe) / 250.0, Gg = at::mm(Xg.t(), Xg) / 300.0;
    for (const auto& run : res.runs) {
      at::Tensor w = ng::escape_perturbation(q.d, e.perturb, e.seed, run.run);
      const uint64_t rs = ng::escape_run_seed(e.seed, run.run);
      size_t next = 0;
      for (int64_t t = 0; t <= e.steps; ++t) {
        if (t % e.log_every == 0 || t == e.steps) {
          ASSERT_LT(next, run.trajectory.size());
          const auto& pt = run.trajectory[next++];
          ASSERT_EQ(pt.step, t);
          const at::Tensor proj = at::mv(q.U.t(), w);
          expect_close(pt.loss, 0.5 * at::dot(w, at::mv(Ge, w)).item<double>(), 1e-10, "loss");
          expect_close(pt.distance, w.norm().item<double>(), 1e-12, "distance");
          // Components are compared on the scale of |w|: a small one carries |w|'s rounding.
          const double scale = w.norm().item<double>();
          EXPECT_NEAR(pt.p[0], proj[0].item<double>(), 1e-10 * scale) << "p_1";
          EXPECT_NEAR(pt.p[1], proj.slice(0, 0, 5).norm().item<double>(), 1e-10 * scale) << "p_5";
          EXPECT_NEAR(pt.p[2], proj.slice(0, 0, 20).norm().item<double>(), 1e-10 * scale);
          // r from d^2 - p^2 loses half the digits when r << d.
          EXPECT_NEAR(pt.r[2], proj.slice(0, 20).norm().item<double>(), 1e-7 * scale) << "r_20";
        }
        if (t == e.steps) break;
        at::Tensor grad;
        if (opt == ng::Optimizer::Sgd) {
          const auto idx = ng::escape_batch(q.n, e.batch, rs, t);
          ASSERT_EQ(idx.size(), (t % 143 == 142) ? 6u : 7u);
          const at::Tensor xb = q.X.index_select(0, at::tensor(idx));
          grad = at::mv(xb.t(), at::mv(xb, w)) / double(idx.size());
        } else {
          grad = at::mv(Gg, w);
        }
        w = w - e.lr * grad;
      }
      EXPECT_EQ(next, run.trajectory.size());
      EXPECT_EQ(run.status, "completed");
    }
    // Batches follow training's permutation of each epoch.
    const uint64_t rs0 = ng::escape_run_seed(e.seed, 0);
    const auto perm1 = ng::epoch_permutation(q.n, rs0, 1);
    const auto b = ng::escape_batch(q.n, 7, rs0, 143 + 2);
    EXPECT_EQ(b, std::vector<int64_t>(perm1.begin() + 14, perm1.begin() + 21));
  }
}

TEST(Escape, SharpAndFlatComponentsAddUpToTheDistance) {
  const Quadratic& q = quadratic();
  ng::EscapeOptions e = base_options(ng::Optimizer::Sgd, 1.2 / q.frob);
  e.runs = 3;
  e.steps = 200;
  e.log_every = 1;
  e.max_loss_factor = 1e20;
  e.ks = {1, 2, 5, 20, 60};
  const auto res = ng::run_escape(q.factory, q.theta_star, q.U, q.data, e);
  int64_t points = 0;
  for (const auto& run : res.runs)
    for (const auto& pt : run.trajectory) {
      const double d2 = pt.distance * pt.distance;
      for (size_t j = 0; j < e.ks.size(); ++j) {
        EXPECT_NEAR(pt.p[j] * pt.p[j] + pt.r[j] * pt.r[j], d2, 1e-12 * d2);
        EXPECT_GE(pt.r[j], 0.0);
        if (j > 1) {
          EXPECT_GE(std::abs(pt.p[j]) * (1 + 1e-12), std::abs(pt.p[j - 1]));
        }
      }
      // U is the whole basis: nothing is left for r_{t,d}.
      EXPECT_LT(pt.r.back(), 1e-6 * pt.distance);
      ++points;
    }
  EXPECT_GT(points, 30);
}

double ratio_at(const ng::RunResult& r, int64_t step) {
  for (const auto& pt : r.trajectory)
    if (pt.step == step) return pt.r[0] / std::abs(pt.p[0]);
  return NAN;
}

// Proposition 5.3: GD with lr > 2 / lambda_1 leaves along u_1. Theorem 5.2: SGD with
// lr = 1.2 / |G|_F leaves with most of its displacement in the flat directions.
TEST(Escape, GdLeavesAlongTheSharpestDirectionSgdAlongFlatOnes) {
  const Quadratic& q = quadratic();
  const double l1 = q.evals[0].item<double>(), l2 = q.evals[1].item<double>();
  ASSERT_GT(srk_g2(q), 4.0);
  ASSERT_GT(l1 / l2, 1.5);

  ng::EscapeOptions gd = base_options(ng::Optimizer::Gd, 4.0 / (l1 + l2));
  ASSERT_GT(gd.lr, 2.0 / l1);
  gd.runs = 2;
  gd.steps = 40;
  gd.log_every = 1;
  gd.max_loss_factor = 1e30;
  const auto g = ng::run_escape(q.factory, q.theta_star, q.U.slice(1, 0, 20), q.data, gd);
  for (const auto& run : g.runs) {
    EXPECT_TRUE(run.escaped);
    EXPECT_EQ(run.status, "completed");
    const double start = run.trajectory.front().r[0] / std::abs(run.trajectory.front().p[0]);
    EXPECT_GT(start, 1.0);  // the perturbation starts mostly flat
    EXPECT_LT(run.final_r[0] / std::abs(run.final_p[0]), 1e-3);
    EXPECT_LT(ratio_at(run, run.escape_step), 0.5);
  }

  ng::EscapeOptions sgd = base_options(ng::Optimizer::Sgd, 1.2 / q.frob);
  sgd.runs = 8;
  sgd.steps = 400;
  sgd.log_every = 1;
  sgd.workers = 2;
  const auto s = ng::run_escape(q.factory, q.theta_star, q.U.slice(1, 0, 20), q.data, sgd);
  std::vector<double> ratios;
  for (const auto& run : s.runs) {
    ASSERT_TRUE(run.escaped) << "run " << run.run;
    ratios.push_back(ratio_at(run, run.escape_step));
  }
  std::sort(ratios.begin(), ratios.end());
  const double median = 0.5 * (ratios[3] + ratios[4]);
  EXPECT_GT(median, 0.5) << "SGD escaped along u_1";
  EXPECT_GT(ratios.front(), 0.1);
}

// GD on the quadratic in closed form: w_t = sum_i (1 - lr lambda_i)^t <w_0, u_i> u_i. Does the
// logged loss 1/2 sum_i lambda_i w_{t,i}^2 exceed `thr` at a logged step <= T?
bool gd_escapes(const Quadratic& q, const at::Tensor& c0, double lr, int64_t T, int64_t log_every,
                double thr) {
  for (int64_t t = 0; t <= T; ++t) {
    if (t % log_every != 0 && t != T) continue;
    const at::Tensor f = at::pow(1 - lr * q.evals, double(t));
    const double loss = 0.5 * (q.evals * (f * c0).pow(2)).sum().item<double>();
    if (loss > thr) return true;
  }
  return false;
}

// GD past its stability edge with a log interval far longer than its escape: the loss overflows
// between two logged steps, and the first step whose loss passes the threshold is logged anyway,
// with a finite loss, at the step a replay finds.
TEST(Escape, GdPastItsEdgeLogsItsEscapeBeforeItsLossOverflows) {
  const Quadratic& q = quadratic();
  const double lambda1 = q.evals[0].item<double>();
  ng::EscapeOptions e = base_options(ng::Optimizer::Gd, 2.5 / lambda1);
  e.steps = 4000;
  e.log_every = 2000;
  e.max_loss_factor = 1e300;
  const auto res = ng::run_escape(q.factory, q.theta_star, q.U.slice(1, 0, 20), q.data, e);
  const auto& run = res.runs.at(0);
  const at::Tensor G = at::mm(q.X.t(), q.X) / double(q.n);
  at::Tensor w = ng::escape_perturbation(q.d, e.perturb, e.seed, 0);
  int64_t first = -1;
  for (int64_t t = 0; t < e.steps && first < 0; ++t) {
    if (0.5 * at::dot(w, at::mv(G, w)).item<double>() > e.escape_loss) first = t;
    w = w - e.lr * at::mv(G, w);
  }
  ASSERT_GT(first, 0);
  ASSERT_LT(first, e.log_every);
  ASSERT_GE(run.trajectory.size(), 2u);
  EXPECT_EQ(run.trajectory[0].step, 0);
  const auto& pt = run.trajectory[1];
  EXPECT_EQ(pt.step, first);
  EXPECT_TRUE(std::isfinite(pt.loss));
  EXPECT_GT(pt.loss, e.escape_loss);
  EXPECT_TRUE(run.escaped);
  EXPECT_EQ(run.escape_step, first);
  // Then it overflows: the next logged point ends the run.
  EXPECT_EQ(run.status, "diverged");
  EXPECT_EQ(run.trajectory.size(), 3u);
}

TEST(Escape, AutoLearningRateGdMatchesTheClosedForm) {
  const Quadratic& q = quadratic();
  ng::EscapeOptions e = base_options(ng::Optimizer::Gd, 1.0);
  e.ks = {1, 5};
  e.steps = 60;
  e.log_every = 2;
  e.escape_loss = 1e-3;
  ng::CurvatureNumbers c{q.evals[0].item<double>(), q.evals[1].item<double>(), q.frob};
  ng::LrSearchOptions so;
  so.rel_tol = 0.02;
  so.margin = 1.1;
  so.probe_runs = 2;  // two perturbations, both must escape
  int64_t heard = 0;
  const auto res = ng::auto_escape_lr(q.factory, q.theta_star, q.U.slice(1, 0, 5), q.data, e, c, so,
                                      [&](const ng::LrTrial&) { ++heard; });
  ASSERT_TRUE(res.found) << res.message;
  EXPECT_EQ(heard, static_cast<int64_t>(res.trials.size()));
  EXPECT_EQ(res.trials.front().phase, "start");
  EXPECT_DOUBLE_EQ(res.trials.front().lr, 2.0 / c.lambda1);
  EXPECT_DOUBLE_EQ(res.reference, 4.0 / (c.lambda1 + c.lambda2));
  EXPECT_DOUBLE_EQ(res.chosen, so.margin * res.smallest_escaping);
  EXPECT_LE(res.smallest_escaping / res.largest_failing, 1 + so.rel_tol);
  for (const auto& t : res.trials) EXPECT_EQ(t.runs, 2);

  // The closed form agrees with every probe outcome.
  const at::Tensor c0 = at::mv(q.U.t(), ng::escape_perturbation(q.d, e.perturb, e.seed, 0));
  const at::Tensor c1 = at::mv(q.U.t(), ng::escape_perturbation(q.d, e.perturb, e.seed, 1));
  for (const auto& t : res.trials)
    EXPECT_EQ(t.success, gd_escapes(q, c0, t.lr, e.steps, e.log_every, e.escape_loss) &&
                             gd_escapes(q, c1, t.lr, e.steps, e.log_every, e.escape_loss))
        << "lr " << t.lr;
  EXPECT_GT(res.smallest_escaping, 2.0 / c.lambda1);

  // The choice makes the run escape.
  e.lr = res.chosen;
  const auto run = ng::run_escape(q.factory, q.theta_star, q.U.slice(1, 0, 5), q.data, e);
  EXPECT_TRUE(run.runs[0].escaped);
}

TEST(Escape, AutoLearningRateSgdMakesEveryRunEscape) {
  const Quadratic& q = quadratic();
  ng::EscapeOptions e = base_options(ng::Optimizer::Sgd, 1.0);
  e.ks = {1, 5};
  e.steps = 200;
  e.log_every = 2;
  e.workers = 2;
  ng::CurvatureNumbers c{q.evals[0].item<double>(), q.evals[1].item<double>(), q.frob};
  ng::LrSearchOptions so;
  so.probe_runs = 6;
  so.margin = 1.1;
  so.rel_tol = 0.05;
  const auto res =
      ng::auto_escape_lr(q.factory, q.theta_star, q.U.slice(1, 0, 5), q.data, e, c, so);
  ASSERT_TRUE(res.found) << res.message;
  EXPECT_DOUBLE_EQ(res.trials.front().lr, 1.2 / q.frob);
  EXPECT_NEAR(res.chosen / res.smallest_escaping, so.margin, 1e-12);
  ASSERT_TRUE(std::isfinite(res.largest_failing)) << "the search never found a failing lr";
  EXPECT_LE(res.smallest_escaping / res.largest_failing, 1 + so.rel_tol);
  double smallest_success = INFINITY;
  for (const auto& t : res.trials) {
    EXPECT_EQ(t.runs, so.probe_runs);
    EXPECT_EQ(t.success, t.escaped == t.runs);
    if (t.success) smallest_success = std::min(smallest_success, t.lr);
    if (t.lr < res.smallest_escaping) {
      EXPECT_FALSE(t.success) << "lr " << t.lr;
    }
  }
  EXPECT_DOUBLE_EQ(smallest_success, res.smallest_escaping);

  // A full sweep at the chosen lr: every run escapes, and the bracketing failure is real.
  e.runs = so.probe_runs;
  e.lr = res.chosen;
  const auto at_choice = ng::run_escape(q.factory, q.theta_star, q.U.slice(1, 0, 5), q.data, e);
  EXPECT_EQ(at_choice.escaped_count(), e.runs);
  e.lr = res.largest_failing;
  const auto below = ng::run_escape(q.factory, q.theta_star, q.U.slice(1, 0, 5), q.data, e);
  EXPECT_LT(below.escaped_count(), e.runs);
}

TEST(Escape, SearchWalksDownFromAnEscapingStartAndReportsFailure) {
  ng::LrSearchOptions so;
  so.rel_tol = 0.01;
  const double edge = 0.37;
  auto probe = [&](double lr) {
    ng::LrTrial t;
    t.runs = 1;
    t.escaped = lr >= edge;
    t.success = t.escaped == 1;
    return t;
  };
  const auto r = ng::search_escape_lr(so, 5.0, probe);
  ASSERT_TRUE(r.found);
  EXPECT_GE(r.smallest_escaping, edge);
  EXPECT_LE(r.smallest_escaping, edge * 1.01);
  EXPECT_LT(r.largest_failing, edge);
  EXPECT_EQ(r.trials[1].phase, "down");
  EXPECT_EQ(r.trials.back().phase, "verify");
  EXPECT_DOUBLE_EQ(r.chosen, 1.1 * r.smallest_escaping);

  auto never = [](double) { return ng::LrTrial{}; };
  so.max_expansions = 5;
  const auto n = ng::search_escape_lr(so, 1.0, never);
  EXPECT_FALSE(n.found);
  EXPECT_EQ(n.trials.size(), 6u);
  EXPECT_TRUE(std::isnan(n.chosen));
  EXPECT_NE(n.message.find("no learning rate escaped"), std::string::npos);
}

bool same_trajectory(const ng::RunResult& a, const ng::RunResult& b) {
  if (a.trajectory.size() != b.trajectory.size()) return false;
  for (size_t i = 0; i < a.trajectory.size(); ++i) {
    const auto &x = a.trajectory[i], &y = b.trajectory[i];
    if (x.step != y.step || x.loss != y.loss || x.distance != y.distance || x.p != y.p ||
        x.r != y.r)
      return false;
  }
  return a.escaped == b.escaped && a.escape_step == b.escape_step && a.status == b.status;
}

// A small CNN on random images, float32: the same seed gives bit-identical runs whichever worker
// runs them and however many threads there are.
struct CnnProblem {
  ng::Dataset data;
  ng::ModelFactory factory;
  at::Tensor theta_star, U;
};

const CnnProblem& cnn_problem(int64_t n = 96) {
  static const CnnProblem c = [n] {
    CnnProblem c;
    at::manual_seed(5);
    c.data.x = at::randn({n, 3, 32, 32});
    c.data.labels = at::randint(0, 2, {n}, at::TensorOptions().dtype(at::kLong));
    c.data.targets = at::one_hot(c.data.labels, 2).to(at::kFloat);
    c.data.num_classes = 2;
    c.factory = [] {
      ng::ModelSpec s;
      s.name = "cnn";
      s.num_classes = 2;
      return ng::make_model(s);
    };
    at::manual_seed(6);
    ng::Net m = c.factory();
    std::vector<at::Tensor> flat;
    for (const auto& p : m->parameters()) flat.push_back(p.detach().reshape(-1));
    c.theta_star = at::cat(flat);
    const int64_t p = c.theta_star.numel();
    c.U = std::get<0>(at::linalg_qr(at::randn({p, 4}, at::TensorOptions().dtype(at::kDouble))));
    return c;
  }();
  return c;
}

TEST(Escape, DeterministicWhateverTheSchedulingAndThreads) {
  const CnnProblem& c = cnn_problem();
  ng::EscapeOptions e;
  e.optimizer = ng::Optimizer::Sgd;
  e.runs = 4;
  e.steps = 12;
  e.log_every = 4;
  e.lr = 0.05;
  e.batch = 10;
  e.ks = {1, 4};
  e.seed = 9;
  e.perturb = 1e-3;
  e.eval_samples = 40;
  e.escape_factor = 1.5;
  e.intra_threads = 1;
  // Bit for bit the same whichever worker takes which run, however many workers there are.
  std::vector<ng::EscapeResult> results;
  for (int w : {1, 2, 3}) {
    e.workers = w;
    const int before = at::get_num_threads();
    results.push_back(ng::run_escape(c.factory, c.theta_star, c.U, c.data, e));
    EXPECT_EQ(at::get_num_threads(), before) << "the thread setting was not restored";
    EXPECT_EQ(results.back().workers, w);
    EXPECT_EQ(results.back().intra_threads, 1);
  }
  for (size_t k = 1; k < results.size(); ++k)
    for (int64_t r = 0; r < e.runs; ++r)
      EXPECT_TRUE(same_trajectory(results[0].runs[r], results[k].runs[r]))
          << "run " << r << " differs with " << results[k].workers << " workers";
  // Different runs see different batches and perturbations.
  std::set<double> finals;
  for (const auto& r : results[0].runs) finals.insert(r.final_loss);
  EXPECT_EQ(finals.size(), static_cast<size_t>(e.runs));
  EXPECT_NE(results[0].runs[0].trajectory[0].distance, results[0].runs[1].trajectory[0].distance);

  // Two intra-op threads: threaded kernels sum in another order, so equal to float32 rounding.
  e.runs = 2;
  e.workers = 1;
  e.intra_threads = 2;
  const auto two = ng::run_escape(c.factory, c.theta_star, c.U, c.data, e);
  EXPECT_EQ(two.intra_threads, 2);
  for (int64_t r = 0; r < e.runs; ++r) {
    const auto &a = results[0].runs[r].trajectory, &b = two.runs[r].trajectory;
    ASSERT_EQ(a.size(), b.size());
    for (size_t i = 0; i < a.size(); ++i) {
      EXPECT_NEAR(a[i].loss, b[i].loss, 1e-4 * a[i].loss);
      EXPECT_NEAR(a[i].distance, b[i].distance, 1e-4 * a[i].distance);
    }
  }

  // GD is deterministic as well, and without perturbation all its runs coincide.
  e.optimizer = ng::Optimizer::Gd;
  e.perturb = 0;
  e.steps = 4;
  e.eval_batch = 32;  // 96 samples: the gradient in three chunks
  e.workers = 2;
  e.intra_threads = 1;
  const auto g = ng::run_escape(c.factory, c.theta_star, c.U, c.data, e);
  EXPECT_TRUE(same_trajectory(g.runs[0], g.runs[1]));
  EXPECT_EQ(g.runs[0].trajectory[0].distance, 0.0);
  EXPECT_GT(g.runs[0].final_distance, 0.0);
}

TEST(Escape, ResumedSweepEqualsAnUninterruptedOne) {
  const Quadratic& q = quadratic();
  ng::EscapeOptions e = base_options(ng::Optimizer::Sgd, 1.2 / q.frob);
  e.runs = 4;
  e.steps = 120;
  e.log_every = 3;
  e.workers = 2;
  const at::Tensor U = q.U.slice(1, 0, 20);
  const std::string full = ngtest::temp_dir("escape_full"), part = ngtest::temp_dir("escape_part");
  const auto whole = ng::run_escape_sweep(full, q.factory, q.theta_star, U, q.data, e);
  EXPECT_EQ(whole.computed, 4);
  EXPECT_EQ(whole.reused, 0);

  // Interrupted: the first call stops once two runs are done.
  std::atomic<int> finished{0};
  ng::EscapeHooks stop_after_two;
  stop_after_two.on_run_done = [&](const ng::RunResult&) { ++finished; };
  stop_after_two.should_stop = [&] { return finished.load() >= 2; };
  e.workers = 1;
  const auto first =
      ng::run_escape_sweep(part, q.factory, q.theta_star, U, q.data, e, stop_after_two);
  EXPECT_EQ(first.computed, 2);
  EXPECT_EQ(first.runs.size(), 2u);
  EXPECT_FALSE(fs::exists(part + "/run_0002.csv"));
  const auto stamp = fs::last_write_time(part + "/run_0000.csv");

  std::vector<int64_t> recomputed;
  int64_t points = 0;
  ng::EscapeHooks record;
  record.on_run_done = [&](const ng::RunResult& r) { recomputed.push_back(r.run); };
  record.on_point = [&](const ng::TrajectoryPoint&) { ++points; };
  e.workers = 2;
  const auto second = ng::run_escape_sweep(part, q.factory, q.theta_star, U, q.data, e, record);
  EXPECT_EQ(second.computed, 2);
  EXPECT_EQ(second.reused, 2);
  std::sort(recomputed.begin(), recomputed.end());
  EXPECT_EQ(recomputed, (std::vector<int64_t>{2, 3}));
  EXPECT_EQ(points, static_cast<int64_t>(second.runs[2].trajectory.size() +
                                         second.runs[3].trajectory.size()));
  EXPECT_EQ(fs::last_write_time(part + "/run_0000.csv"), stamp);
  ASSERT_EQ(second.runs.size(), 4u);
  for (int64_t r = 0; r < 4; ++r) {
    EXPECT_EQ(second.runs[r].reused, r < 2);
    EXPECT_TRUE(same_trajectory(second.runs[r], whole.runs[r])) << "run " << r;
    EXPECT_EQ(second.runs[r].final_p, whole.runs[r].final_p);
    EXPECT_EQ(ngtest::read_file(part + "/" + ng::sweep_files::run_file(r)),
              ngtest::read_file(full + "/" + ng::sweep_files::run_file(r)));
  }
  EXPECT_EQ(ngtest::read_file(part + "/summary.csv"), ngtest::read_file(full + "/summary.csv"));

  // A third call has nothing to do.
  recomputed.clear();
  const auto third = ng::run_escape_sweep(part, q.factory, q.theta_star, U, q.data, e, record);
  EXPECT_EQ(third.computed, 0);
  EXPECT_TRUE(recomputed.empty());

  // Other settings in the same directory are refused, naming the file and the field.
  e.lr *= 2;
  try {
    ng::run_escape_sweep(part, q.factory, q.theta_star, U, q.data, e);
    ADD_FAILURE() << "a different lr was accepted";
  } catch (const ng::Error& err) {
    const std::string m = err.what();
    EXPECT_NE(m.find(part + "/escape.json"), std::string::npos) << m;
    EXPECT_NE(m.find("(lr differs)"), std::string::npos) << m;
  }
  e.lr /= 2;
  e.ks = {1, 5};
  try {
    ng::run_escape_sweep(part, q.factory, q.theta_star, U, q.data, e);
    ADD_FAILURE() << "different ks were accepted";
  } catch (const ng::Error& err) {
    EXPECT_NE(std::string(err.what()).find("(ks differs)"), std::string::npos) << err.what();
  }
}

TEST(Escape, SweepSettingsAreJsonAndADamagedFileIsAnError) {
  const Quadratic& q = quadratic();
  ng::EscapeOptions e = base_options(ng::Optimizer::Gd, 1.0);
  e.steps = 2;
  const at::Tensor U = q.U.slice(1, 0, 20);
  const std::string dir = ngtest::temp_dir("escape_json");
  ng::run_escape_sweep(dir, q.factory, q.theta_star, U, q.data, e);
  const std::string text = ngtest::read_file(dir + "/escape.json");
  EXPECT_EQ(text.rfind("{\n  \"format\": \"noisegeom-escape-sweep-2\",\n", 0), 0u) << text;
  EXPECT_NE(text.find("\"optimizer\": \"gd\""), std::string::npos) << text;
  EXPECT_NE(text.find("\"loss\": \"mse\""), std::string::npos) << text;
  EXPECT_NE(text.find("\"ks\": [\n    1,\n    5,\n    20\n  ]"), std::string::npos) << text;
  // Resuming compares values, not text: a reformatted file is the same settings.
  std::string compact;
  for (char c : text)
    if (c != '\n' && c != ' ') compact += c;
  ngtest::write_file(dir + "/escape.json", compact);
  EXPECT_EQ(ng::run_escape_sweep(dir, q.factory, q.theta_star, U, q.data, e).reused, 1);
  ngtest::write_file(dir + "/escape.json", compact.substr(0, compact.size() / 2));
  try {
    ng::run_escape_sweep(dir, q.factory, q.theta_star, U, q.data, e);
    ADD_FAILURE() << "a damaged escape.json was accepted";
  } catch (const ng::Error& err) {
    EXPECT_NE(std::string(err.what()).find(dir + "/escape.json: not valid JSON"), std::string::npos)
        << err.what();
  }
}

TEST(Escape, OptimizerNames) {
  EXPECT_EQ(ng::optimizer_names().parse("SGD", "--optimizer"), ng::Optimizer::Sgd);
  EXPECT_EQ(ng::to_string(ng::Optimizer::Gd), "gd");
  EXPECT_EQ(ng::optimizer_names().choices(), "sgd or gd");
  EXPECT_THROW(ng::optimizer_names().parse("adam", "--optimizer"), ng::Error);
}

TEST(Escape, BadInputIsOneLineNamingTheProblem) {
  const Quadratic& q = quadratic();
  ng::EscapeOptions e = base_options(ng::Optimizer::Sgd, 1.0);
  e.ks = {1, 5};
  e.steps = 1;
  auto message = [&](const at::Tensor& theta, const at::Tensor& U, const ng::EscapeOptions& o) {
    try {
      ng::run_escape(q.factory, theta, U, q.data, o);
    } catch (const ng::Error& err) {
      return std::string(err.what());
    }
    return std::string("no error");
  };
  const at::Tensor U = q.U.slice(1, 0, 5);
  EXPECT_NE(message(at::zeros({q.d + 1}), U, e).find("theta*"), std::string::npos);
  EXPECT_NE(message(q.theta_star, U * 2, e).find("orthonormal"), std::string::npos);
  EXPECT_NE(message(q.theta_star, U.slice(0, 1), e).find("U is"), std::string::npos);
  ng::EscapeOptions o = e;
  o.ks = {6};
  EXPECT_NE(message(q.theta_star, U, o).find("escape.ks"), std::string::npos);
  o = e;
  o.escape_loss = 0;  // L(theta*) = 0: a relative threshold is no threshold
  EXPECT_NE(message(q.theta_star, U, o).find("escape_loss"), std::string::npos);
  o = e;
  o.lr = -1;
  EXPECT_NE(message(q.theta_star, U, o).find("escape.lr"), std::string::npos);
  // A K x p matrix (Eigenpairs::vectors) is taken as its transpose.
  EXPECT_EQ(message(q.theta_star, U.t(), e), "no error");
}

// Speed of concurrent runs against sequential ones (run with --gtest_also_run_disabled_tests).
// Configurations alternate over several rounds and the fastest round of each counts, so that
// other load on the machine weighs on all of them alike.
TEST(Escape, DISABLED_BenchmarkWorkersVersusIntraOpThreads) {
  const CnnProblem& c = cnn_problem();
  ng::EscapeOptions e;
  e.runs = 8;
  e.steps = 60;
  e.log_every = 20;
  e.lr = 0.01;
  e.batch = 32;
  e.ks = {1, 4};
  e.eval_samples = 64;
  e.escape_factor = 2;
  auto time = [&](int w, int t) {
    e.workers = w;
    e.intra_threads = t;
    const auto t0 = std::chrono::steady_clock::now();
    ng::run_escape(c.factory, c.theta_star, c.U, c.data, e);
    return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  };
  const std::vector<std::pair<int, int>> configs = {{1, 2}, {1, 1}, {2, 1}};
  std::vector<std::vector<double>> times(configs.size());
  time(1, 1);  // warm-up
  for (int round = 0; round < 3; ++round)
    for (size_t k = 0; k < configs.size(); ++k)
      times[k].push_back(time(configs[k].first, configs[k].second));
  std::printf(
      "8 SGD runs x 60 steps, CNN (p=43174), B=32, eval on 64 samples every 20 steps; "
      "load average at the end: %s",
      ngtest::read_file("/proc/loadavg").c_str());
  double best[3];
  for (size_t k = 0; k < configs.size(); ++k) {
    best[k] = *std::min_element(times[k].begin(), times[k].end());
    std::printf("  %d worker(s), intra-op %d: best %.2fs (rounds:", configs[k].first,
                configs[k].second, best[k]);
    for (double t : times[k]) std::printf(" %.2f", t);
    std::printf(")\n");
  }
  std::printf(
      "  speedup of 2 workers x 1 thread: %.2fx over 1 worker x 2 threads, %.2fx over "
      "1 worker x 1 thread\n",
      best[0] / best[2], best[1] / best[2]);
}

}  // namespace
