// Figure 1 (loss alignment across widths): the two-layer net with a trained output layer, mu at
// theta drawn from the model's initialisation checked against a closed-form Jacobian in float64,
// and `reproduce fig1 --scale quick` end to end: the acceptance numbers, the slope test against
// an independent recomputation from the runs' files, the plot, reuse.
#include <ATen/ATen.h>
#include <fmt/format.h>
#include <gtest/gtest.h>

#include <cmath>
#include <cstdlib>
#include <filesystem>
#include <limits>
#include <map>

#include "models/model.h"
#include "models/params.h"
#include "src/core/config.h"
#include "src/io/json.h"
#include "src/study/spectrum_study.h"
#include "src/training/train.h"
#include "tests/testing.h"

namespace fs = std::filesystem;
using ngtest::run_cli;

namespace {

// mu = tr(Sigma G) / (2L |G|_F^2) from dense p x p matrices: G = J^T J / n,
// Sigma = J^T diag(r^2) J / n, L = |r|^2 / (2n).
double dense_mu(const at::Tensor& jac, const at::Tensor& r) {
  const double n = static_cast<double>(r.numel());
  const at::Tensor g = at::mm(jac.t(), jac) / n;
  const at::Tensor sigma = at::mm(jac.t() * (r * r).unsqueeze(0), jac) / n;
  const double two_l = (r * r).sum().item<double>() / n;
  return at::trace(at::mm(sigma, g)).item<double>() / (two_l * (g * g).sum().item<double>());
}

}  // namespace

TEST(Fig1, TwoLayerWithTrainedOuterLayerHasParametersBThenA) {
  ng::ModelSpec s;
  s.name = "two_layer";
  s.num_classes = 1;
  s.input_dim = 5;
  s.hidden = {7};
  s.train_outer = true;
  at::manual_seed(4);
  ng::Net net = ng::make_model(s);
  net->to(at::kDouble);
  EXPECT_EQ(ng::count_parameters(*net), 7 * (5 + 1));
  std::vector<std::string> names;
  for (const auto& p : net->named_parameters()) names.push_back(p.key());
  EXPECT_EQ(names, (std::vector<std::string>{"b", "a"}));
  EXPECT_TRUE(net->named_buffers().is_empty());
  const at::Tensor b = net->named_parameters()["b"], a = net->named_parameters()["a"];
  const at::Tensor x = at::randn({4, 5}, at::kDouble);
  const at::Tensor want = at::mv(at::relu(at::mm(x, b.t())), a).unsqueeze(1);
  EXPECT_TRUE(at::allclose(net->forward(x), want, 1e-12, 1e-14));
  EXPECT_NE(net->describe().find("a trained"), std::string::npos) << net->describe();
  // The config key reaches the spec; without it a stays a fixed buffer.
  const ng::Config cfg = ng::Config::parse(
      "model:\n  name: two_layer\n  hidden: [3]\n  train_outer: true\n", "t.yaml");
  EXPECT_TRUE(ng::model_spec_from_config(cfg, 1, 4).train_outer);
  EXPECT_FALSE(
      ng::model_spec_from_config(ng::Config::parse("model: {name: two_layer}\n", "u.yaml"), 1, 4)
          .train_outer);
}

// The spectrum's mu at theta from the model's initialisation against the closed form of the
// two-layer net's per-sample gradients: df/db_k = a_k 1[b_k.x > 0] x, df/da_k = relu(b_k.x).
TEST(Fig1, MuAtInitialisedThetaIsExactForTwoLayerNet) {
  const int64_t d = 6, m = 5, n = 9;
  const std::string run = ngtest::train_run(
      "fig1-mu",
      "seed: 21\ndevice: cpu\ndtype: float64\nmodel: {name: two_layer, hidden: [5], "
      "train_outer: true}\ndata: {source: gaussian, n: 9, d: 6, covariance: power, power: 0.5}\n"
      "train: {lr: 0.001, batch_size: 9, max_steps: 1, eval_every: 1, target_loss: 0}\n");
  ng::SpectrumRequest req;
  req.name = "init";
  req.options.k = 3;
  req.options.matrices = {ng::MatrixKind::G};
  req.options.samples = n;
  req.options.theta = "init";
  req.options.seed = 77;
  const ng::SpectrumOutcome out = ng::ensure_spectrum(run, req, {"", true});
  const ng::json& sum = out.spectrum.summary;
  EXPECT_EQ(sum["metrics_method"], "gram");
  EXPECT_EQ(sum["p"], m * (d + 1));

  // theta: the model's initialisation drawn with the spectrum's seed.
  ng::LoadedRun loaded = ng::load_run(run, "");
  at::manual_seed(77);
  ng::Net fresh = ng::make_model(ng::model_spec_from_config(loaded.cfg, 1, d));
  fresh->to(at::kDouble);
  const at::Tensor b = fresh->named_parameters()["b"].detach(),
                   a = fresh->named_parameters()["a"].detach();
  const at::Tensor x = loaded.data.x.to(at::kDouble), y = loaded.data.targets.to(at::kDouble);
  const at::Tensor pre = at::mm(x, b.t());  // (n, m)
  const at::Tensor act = at::relu(pre), on = (pre > 0).to(at::kDouble);
  const at::Tensor r = at::mv(act, a) - y.squeeze(1);
  // Rows in parameter order (b row-major, then a).
  const at::Tensor jb = (on * a.unsqueeze(0)).unsqueeze(2) * x.unsqueeze(1);  // (n, m, d)
  const at::Tensor jac = at::cat({jb.reshape({n, m * d}), act}, 1);
  EXPECT_NEAR(sum["loss"].get<double>(), (r * r).mean().item<double>() / 2,
              1e-10 * sum["loss"].get<double>());
  const double want = dense_mu(jac, r);
  EXPECT_NEAR(sum["mu"].get<double>(), want, 1e-10 * want);
  // And the largest eigenvalue of the dense G.
  const at::Tensor ev = at::linalg_eigvalsh(at::mm(jac.t(), jac) / double(n));
  EXPECT_NEAR(sum["lambda_1"].get<double>(), ev[-1].item<double>(), 1e-10 * ev[-1].item<double>());
  // theta differs from the run's trained theta.pt: a fresh draw, not the run's parameters.
  EXPECT_FALSE(at::allclose(b, loaded.model->named_parameters()["b"].to(at::kDouble)));
}

// Two-sided p-value of Student's t (the normal distribution for dof = infinity) by integrating
// the density (Simpson on [0, |t|]).
double t_pvalue_oracle(double t, double dof) {
  const bool normal = std::isinf(dof);
  const double c =
      normal ? 1 / std::sqrt(2 * M_PI)
             : std::exp(std::lgamma((dof + 1) / 2) - std::lgamma(dof / 2)) / std::sqrt(dof * M_PI);
  const int steps = 20000;
  const double h = std::fabs(t) / steps;
  double s = 0;
  for (int i = 0; i <= steps; ++i) {
    const double u = i * h;
    const double f =
        c * (normal ? std::exp(-u * u / 2) : std::pow(1 + u * u / dof, -(dof + 1) / 2));
    s += f * (i == 0 || i == steps ? 1 : (i % 2 ? 4 : 2));
  }
  return 1 - 2 * s * h / 3;
}

// y = a + b x by weighted least squares through (X^T W X) beta = X^T W y with W = 1/var:
// the slope, its variance (X^T W X)^-1_bb and the weighted residual sum of squares.
struct Fit {
  double slope, var_slope, sse;
};
Fit least_squares(const std::vector<double>& x, const std::vector<double>& y,
                  const std::vector<double>& var) {
  const int64_t n = static_cast<int64_t>(x.size());
  const at::Tensor xs = at::stack({at::ones({n}, at::kDouble), at::tensor(x, at::kDouble)}, 1);
  const at::Tensor ys = at::tensor(y, at::kDouble), w = 1 / at::tensor(var, at::kDouble);
  const at::Tensor xtwx = at::mm(xs.t() * w.unsqueeze(0), xs);
  const at::Tensor inv = at::inverse(xtwx);
  const at::Tensor beta = at::mv(inv, at::mv(xs.t(), w * ys));
  const at::Tensor res = ys - at::mv(xs, beta);
  return {beta[1].item<double>(), inv[1][1].item<double>(), (w * res * res).sum().item<double>()};
}

TEST(Fig1, ReproduceQuickMeetsTheAcceptanceAndReuses) {
  if (!ngtest::python_has("matplotlib"))
    GTEST_SKIP() << "Python's matplotlib is not installed (apt-get install python3-matplotlib)";
  const std::string out = ngtest::temp_dir("fig1");
  const std::string cmd = "reproduce fig1 --scale quick --quiet --out " + ngtest::quote(out);
  std::string log;
  ASSERT_EQ(run_cli(cmd, &log), 0) << log;
  ASSERT_TRUE(fs::exists(out + "/figures/fig1.png"));
  EXPECT_EQ(ngtest::read_file(out + "/figures/fig1.png").substr(1, 3), "PNG");
  const ng::json s = ng::read_json(out + "/figures/fig1.json");
  EXPECT_EQ(s["n"], 20);
  EXPECT_TRUE(s["acceptance"]["all_within_band"].get<bool>()) << s["acceptance"].dump();
  EXPECT_TRUE(s["acceptance"]["all_slopes_flat"].get<bool>()) << s["acceptance"].dump();

  for (const auto& [theta, body] : s["thetas"].items()) {
    ASSERT_EQ(body["curves"].size(), 4u) << theta;
    for (const auto& c : body["curves"]) {
      const std::string exp = c["experiment"];
      // Two decades of p; the inputs as the YAML files say.
      const auto& w = c["widths"];
      EXPECT_GE(w.back()["p"].get<double>() / w.front()["p"].get<double>(), 100.0) << exp;
      const bool aniso = exp.find("aniso") != std::string::npos;
      EXPECT_EQ(c["inputs"]["D"], aniso ? 662 : 50) << exp;
      EXPECT_NEAR(c["inputs"]["srk_S"].get<double>(), 50.0, aniso ? 0.02 : 1e-12) << exp;
      // Recompute the widths' statistics and both fits from the runs' own files.
      std::vector<double> x, y, wx, wy, wvar;
      for (const auto& width : w) {
        const int64_t m = width["m"];
        std::vector<double> mus;
        for (int64_t r = 0; r < width["runs"].get<int64_t>(); ++r) {
          const std::string dir =
              fmt::format("{}/runs/{}/m{:04}/s{:02}/spectra/{}", out, exp, m, r, theta);
          const ng::json rs = ng::read_json(dir + "/summary.json");
          EXPECT_EQ(rs["samples"], rs["n_train"]) << dir;
          EXPECT_EQ(rs["metrics_method"], "gram") << dir;
          mus.push_back(rs["mu"].get<double>());
          x.push_back(std::log(rs["p"].get<double>()));
          y.push_back(mus.back());
        }
        const at::Tensor t = at::tensor(mus, at::kDouble);
        EXPECT_NEAR(width["mean"].get<double>(), t.mean().item<double>(), 1e-12) << exp << m;
        EXPECT_NEAR(width["std"].get<double>(), t.std().item<double>(), 1e-12) << exp << m;
        wx.push_back(x.back());
        wy.push_back(t.mean().item<double>());
        wvar.push_back(t.var().item<double>() / double(mus.size()));
      }
      // Weighted fit through the means: the normal equations' solution and inverse.
      const Fit wls = least_squares(wx, wy, wvar);
      const auto& f = c["fit"];
      EXPECT_NEAR(f["slope_per_ln_p"].get<double>(), wls.slope, 1e-9) << exp;
      EXPECT_NEAR(f["slope_se"].get<double>(), std::sqrt(wls.var_slope), 1e-9) << exp;
      EXPECT_NEAR(f["chi2"].get<double>(), wls.sse, 1e-8) << exp;
      const double z = wls.slope / std::sqrt(wls.var_slope);
      EXPECT_NEAR(f["p_value"].get<double>(),
                  t_pvalue_oracle(z, std::numeric_limits<double>::infinity()), 1e-6)
          << exp;
      EXPECT_EQ(f["flat"].get<bool>(), f["p_value"].get<double>() > 0.05) << exp;
      // Unweighted fit over every run: classical standard error, Student's t with N - 2 dof.
      const Fit ols = least_squares(x, y, std::vector<double>(x.size(), 1.0));
      const double dof = double(x.size()) - 2;
      const double se = std::sqrt(ols.var_slope * ols.sse / dof);
      const auto& o = c["ols_all_runs"];
      EXPECT_NEAR(o["slope_per_ln_p"].get<double>(), ols.slope, 1e-9) << exp;
      EXPECT_NEAR(o["slope_se"].get<double>(), se, 1e-9) << exp;
      EXPECT_NEAR(o["p_value"].get<double>(), t_pvalue_oracle(ols.slope / se, dof), 1e-6) << exp;
    }
  }

  // A second invocation trains and computes nothing.
  const std::string before = ngtest::read_file(out + "/figures/fig1.json");
  ASSERT_EQ(run_cli(cmd, &log), 0) << log;
  EXPECT_EQ(log.find("computed"), std::string::npos) << log;
  EXPECT_EQ(log.find("trained,"), std::string::npos) << log;
  EXPECT_NE(log.find("reused"), std::string::npos) << log;
  EXPECT_EQ(ngtest::read_file(out + "/figures/fig1.json"), before);
}
