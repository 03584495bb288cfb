// Figure 3: the loss energies X_t, Y_t and D_{t,1} the escape engine logs (against a dense float64
// computation written out here, on a small nonlinear network), GD's D_{t,1} against
// Proposition 5.3's closed form step by step, and the quick scale of the figure end to end (its
// SGD levels against Theorem 5.2's srk(G^2) - 1, its GD rates, the plot and the reuse).
#include <ATen/ATen.h>
#include <gtest/gtest.h>
#include <torch/csrc/autograd/autograd.h>

#include <cmath>
#include <filesystem>

#include "data/dataset.h"
#include "models/model.h"
#include "models/params.h"
#include "src/escape/escape.h"
#include "src/io/json.h"
#include "tests/testing.h"

namespace fs = std::filesystem;

namespace {

// G = (1/n) sum_i J_i^T W_i J_i at the model's parameters, J_i by one backward per output,
// W_i = I (mse) or diag(p_i) - p_i p_i^T (cross entropy): float64 throughout.
at::Tensor dense_g(ng::Net model, const at::Tensor& x, bool cross_entropy) {
  const ng::ParameterLayout layout = ng::ParameterLayout::of(*model);
  const int64_t n = x.size(0);
  at::Tensor g = at::zeros({layout.size, layout.size}, at::kDouble);
  for (int64_t i = 0; i < n; ++i) {
    const at::Tensor f = model->forward(x.narrow(0, i, 1)).reshape(-1);
    const int64_t c = f.size(0);
    at::Tensor jac = at::zeros({c, layout.size}, at::kDouble);
    for (int64_t o = 0; o < c; ++o) {
      const auto gr = torch::autograd::grad({f[o]}, layout.tensors, {}, true, false, true);
      std::vector<at::Tensor> flat;
      for (size_t k = 0; k < gr.size(); ++k)
        flat.push_back(gr[k].defined() ? gr[k].reshape(-1)
                                       : at::zeros({layout.tensors[k].numel()}, at::kDouble));
      jac[o] = at::cat(flat);
    }
    at::Tensor w = at::eye(c, at::kDouble);
    if (cross_entropy) {
      const at::Tensor p = at::softmax(f.detach(), 0);
      w = at::diag(p) - at::outer(p, p);
    }
    g += at::mm(jac.t(), at::mm(w, jac));
  }
  return g / static_cast<double>(n);
}

struct SmallNet {
  ng::ModelFactory factory;
  at::Tensor theta_star;
  ng::Dataset data;
};

// A 3-layer linear network (nonlinear in its parameters) with 2 outputs on 24 samples.
SmallNet small_net() {
  SmallNet s;
  s.factory = [] {
    ng::ModelSpec m;
    m.name = "linear_net";
    m.hidden = {3, 3};
    m.input_dim = 4;
    m.num_classes = 2;
    return ng::make_model(m);
  };
  at::manual_seed(5);
  ng::Net net = s.factory();
  net->to(at::kDouble);
  s.theta_star = ng::ParameterLayout::of(*net).values().detach().clone();
  s.data.x = at::randn({24, 4}, at::kDouble).to(at::kFloat);
  s.data.labels = at::arange(24, at::kLong) % 2;
  s.data.targets = at::one_hot(s.data.labels, 2).to(at::kFloat);
  s.data.num_classes = 2;
  return s;
}

ng::Net at_theta(const SmallNet& s) {
  ng::Net net = s.factory();
  net->to(at::kDouble);
  at::NoGradGuard no_grad;
  const ng::ParameterLayout layout = ng::ParameterLayout::of(*net);
  const auto parts = layout.split(s.theta_star);
  for (size_t k = 0; k < parts.size(); ++k) layout.tensors[k].copy_(parts[k]);
  return net;
}

// row_bytes: EscapeOptions::energy_row_bytes (0: the Jacobian-vector product path).
void check_energy_against_dense(ng::LossKind loss, const std::vector<int64_t>& samples,
                                double row_bytes) {
  const SmallNet s = small_net();
  at::Tensor x = s.data.x.to(at::kDouble);
  if (!samples.empty()) x = x.index_select(0, at::tensor(samples, at::kLong));
  const at::Tensor g = dense_g(at_theta(s), x, loss == ng::LossKind::CrossEntropy);
  const auto [vals, vecs] = at::linalg_eigh(g);
  const at::Tensor U = vecs.flip(1).narrow(1, 0, 2).contiguous();
  const double lam1 = vals[-1].item<double>();
  const at::Tensor u1 = U.select(1, 0);

  ng::EscapeOptions o;
  o.optimizer = ng::Optimizer::Sgd;
  o.runs = 4;
  o.steps = 0;  // the logged point is theta_0 = theta* + perturb N(0, I), known exactly
  o.lr = 0.1;
  o.batch = 4;
  o.ks = {1, 2};
  o.perturb = 0.3;
  o.seed = 9;
  o.loss = loss;
  o.dtype = at::kDouble;
  o.escape_loss = 1e6;
  o.energy = true;
  o.energy_samples = samples;
  o.energy_row_bytes = row_bytes;
  o.workers = 2;
  const ng::EscapeResult res = ng::run_escape(s.factory, s.theta_star, U, s.data, o);
  ASSERT_EQ(res.runs.size(), 4u);
  EXPECT_NEAR(res.energy_lambda1, lam1, 1e-12 * lam1);
  const int64_t p = s.theta_star.numel();
  for (const auto& run : res.runs) {
    const at::Tensor d = ng::escape_perturbation(p, o.perturb, o.seed, run.run);
    const double c = at::dot(d, u1).item<double>();
    const at::Tensor perp = d - c * u1;
    const double want_x = lam1 * c * c;
    const double want_y = at::dot(perp, at::mv(g, perp)).item<double>();
    // The paper's form: d^T G d - lambda_1 <d, u_1>^2 (the same for an exact eigenpair).
    const double paper_y = at::dot(d, at::mv(g, d)).item<double>() - want_x;
    const auto& pt = run.trajectory.at(0);
    EXPECT_NEAR(pt.energy_x, want_x, 1e-10 * want_x) << "run " << run.run;
    EXPECT_NEAR(pt.energy_y, want_y, 1e-10 * want_y) << "run " << run.run;
    EXPECT_NEAR(pt.energy_y, paper_y, 1e-9 * want_y) << "run " << run.run;
    EXPECT_NEAR(pt.d1, want_y / want_x, 1e-9 * want_y / want_x) << "run " << run.run;
  }
}

}  // namespace

TEST(Fig3Energy, MatchesADenseFloat64ComputationForTheSquareLoss) {
  check_energy_against_dense(ng::LossKind::Mse, {}, 1e9);  // shared per-sample rows
  check_energy_against_dense(ng::LossKind::Mse, {}, 0);    // one JVP (R-op) per point
}

TEST(Fig3Energy, MatchesADenseFloat64ComputationForCrossEntropyOnASubset) {
  check_energy_against_dense(ng::LossKind::CrossEntropy, {1, 4, 5, 8, 13, 21}, 1e9);
  check_energy_against_dense(ng::LossKind::CrossEntropy, {1, 4, 5, 8, 13, 21}, 0);
}

// Proposition 5.3 is an equality for GD: w_{t,i} = (1 - eta lambda_i)^t w_{0,i}, so
// D_t = sum_{i>=2} lambda_i (1 - eta lambda_i)^{2t} w_{0,i}^2 / (lambda_1 (1 - eta lambda_1)^{2t}
// w_{0,1}^2), and its decay per step tends to max_{i>=2} ((1 - eta lambda_i)/(1 - eta lambda_1))^2.
TEST(Fig3Energy, GdFollowsProposition53StepByStep) {
  const int64_t n = 400, d = 12;
  ng::GaussianOptions go;
  go.n = n;
  go.d = d;
  go.covariance = "spiked";
  go.bulk = 0.3;
  go.scale = 1.0 / d;
  go.zero_teacher = true;
  go.seed = 2;
  const ng::Dataset data = ng::make_gaussian(go);
  const at::Tensor x = data.x.to(at::kDouble);
  const at::Tensor g = at::mm(x.t(), x) / double(n);
  const auto [vals, vecs] = at::linalg_eigh(g);
  const at::Tensor lam = vals.flip(0).contiguous();
  const at::Tensor U = vecs.flip(1).contiguous();
  const double l1 = lam[0].item<double>(), l2 = lam[1].item<double>();
  const double lr = 4 / (l1 + l2);
  EXPECT_DOUBLE_EQ(lr, ng::escape_lr_reference(ng::Optimizer::Gd, {l1, l2, 0}));
  double rate = 0;
  for (int64_t i = 1; i < d; ++i)
    rate = std::max(rate, std::pow((1 - lr * lam[i].item<double>()) / (1 - lr * l1), 2));

  ng::EscapeOptions o;
  o.optimizer = ng::Optimizer::Gd;
  o.runs = 3;
  o.steps = 30;
  o.lr = lr;
  o.batch = 1;
  o.ks = {1};
  o.log_every = 1;
  o.perturb = 1e-3;
  o.seed = 4;
  o.dtype = at::kDouble;
  o.escape_loss = 1;
  o.max_loss_factor = 1e100;
  o.energy = true;
  ng::ModelFactory factory = [d] {
    ng::ModelSpec m;
    m.name = "linear";
    m.input_dim = d;
    m.num_classes = 1;
    return ng::make_model(m);
  };
  const ng::EscapeResult res =
      ng::run_escape(factory, at::zeros({d}, at::kDouble), U.narrow(1, 0, 2), data, o);
  ASSERT_EQ(res.runs.size(), 3u);
  for (const auto& run : res.runs) {
    const at::Tensor w0 = at::mv(U.t(), ng::escape_perturbation(d, o.perturb, o.seed, run.run));
    std::vector<int64_t> steps;
    std::vector<double> logs;
    for (const auto& pt : run.trajectory) {
      const double t = static_cast<double>(pt.step);
      double y = 0;
      for (int64_t i = 1; i < d; ++i) {
        const double li = lam[i].item<double>();
        y += li * std::pow(1 - lr * li, 2 * t) * std::pow(w0[i].item<double>(), 2);
      }
      const double want =
          y / (l1 * std::pow(1 - lr * l1, 2 * t) * std::pow(w0[0].item<double>(), 2));
      if (want < 1e-20) break;
      EXPECT_NEAR(pt.d1, want, 1e-6 * want) << "run " << run.run << " step " << pt.step;
      steps.push_back(pt.step);
      logs.push_back(std::log(pt.d1));
    }
    ASSERT_GE(steps.size(), 12u) << "run " << run.run;
    // Least-squares slope over the second half: the per-step rate the sum settles to.
    const size_t a = steps.size() / 2, m = steps.size() - a;
    double st = 0, sy = 0, stt = 0, sty = 0;
    for (size_t j = a; j < steps.size(); ++j) {
      const double t = static_cast<double>(steps[j]);
      st += t, sy += logs[j], stt += t * t, sty += t * logs[j];
    }
    const double slope = (m * sty - st * sy) / (m * stt - st * st);
    EXPECT_NEAR(slope / std::log(rate), 1.0, 0.03)
        << "run " << run.run << ": fitted rate " << std::exp(slope) << ", closed form " << rate;
  }
}

// The quick scale end to end: Theorem 5.2's SGD level and Proposition 5.3's GD rate in the
// figure's numbers, the plot, and a second reproduce that reuses everything.
TEST(Fig3Reproduce, QuickScaleChecksTheTheoryAndReusesEverything) {
  if (!ngtest::python_has("matplotlib"))
    GTEST_SKIP() << "Python's matplotlib is not installed (apt-get install python3-matplotlib)";
  const std::string out = ngtest::temp_dir("reproduce3");
  const std::string cmd = "reproduce fig3 --scale quick --out " + ngtest::quote(out) + " --quiet";
  std::string log;
  ASSERT_EQ(ngtest::run_cli(cmd, &log), 0) << log;
  const std::string png = out + "/figures/fig3.png";
  ASSERT_TRUE(fs::exists(png));
  EXPECT_EQ(ngtest::read_file(png).substr(1, 3), "PNG");
  const ng::json sum = ng::read_json(out + "/figures/fig3.json");
  ASSERT_EQ(sum["srk"].size(), 4u) << sum.dump();
  double last_level = 0;
  for (const auto& r : sum["srk"]) {
    const std::string what = "srk " + r["label"].get<std::string>();
    const double srk = r["srk_G2"].get<double>();
    EXPECT_NEAR(srk, r["srk_G2_target"].get<double>(), 0.15 * srk) << what;
    // Theorem 5.2: SGD's E[D] of the order of srk(G^2) - 1, and growing with it.
    const double ratio = r["sgd"]["level_over_srk_minus_1"].get<double>();
    EXPECT_GT(ratio, 0.5) << what;
    EXPECT_LT(ratio, 3.0) << what;
    EXPECT_GT(r["sgd"]["level"].get<double>(), last_level) << what;
    last_level = r["sgd"]["level"].get<double>();
    // Proposition 5.3: GD's decay rate, against the sum over the same steps and its limit.
    EXPECT_LT(r["gd"]["log_rate_relative_error_vs_sum"].get<double>(), 0.05) << what;
    EXPECT_LT(r["gd"]["log_rate_relative_error"].get<double>(), 0.10) << what;
    EXPECT_LT(r["gd"]["fitted_rate"].get<double>(), 0.2) << what;
  }
  EXPECT_TRUE(sum["sgd_level_increasing_in_srk"].get<bool>());
  std::vector<std::string> header;
  ngtest::read_csv(out + "/runs/quick_fig3/srk2/escapes/sgd/trajectories.csv", &header);
  EXPECT_EQ(header.back(), "D_1");

  ASSERT_EQ(ngtest::run_cli(cmd, &log), 0) << log;
  EXPECT_EQ(log.find("trained,"), std::string::npos) << log;
  EXPECT_EQ(log.find("x computed"), std::string::npos) << log;
  EXPECT_NE(log.find("4x reused (converged)"), std::string::npos) << log;
  EXPECT_NE(log.find("4x 0 runs computed, 400 reused"), std::string::npos) << log;
  EXPECT_NE(log.find("4x 0 runs computed, 8 reused"), std::string::npos) << log;
  EXPECT_EQ(ng::read_json(out + "/figures/fig3.json"), sum);
}
