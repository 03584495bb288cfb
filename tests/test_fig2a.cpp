// Figure 2a (directional alignment on linear regression): every eigenpair of G at theta ~ N(0, I)
// and alpha_k along it against a dense float64 eigendecomposition, the alignment.csv reader, and
// `reproduce fig2a --scale quick` end to end (k = n for both regimes, the median g_k in [0.5, 2],
// the plot, reuse).
#include <ATen/ATen.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <cstdlib>
#include <filesystem>

#include "src/curvature/linear_operator.h"
#include "src/io/files.h"
#include "src/io/json.h"
#include "src/study/spectrum_files.h"
#include "src/study/spectrum_study.h"
#include "src/training/train.h"
#include "tests/testing.h"

namespace fs = std::filesystem;
using ngtest::run_cli;

// Linear model f = w.x: G = X^T X / n and Sigma = X^T diag(r^2) X / n with r = X(w - w*), so
// lambda_k, u_k and alpha_k = u_k^T Sigma u_k / (2L) come from a dense eigendecomposition.
TEST(Fig2a, EveryEigenpairAndAlphaAgreeWithDenseLinearRegression) {
  const int64_t d = 40, n = 12;
  const std::string run = ngtest::train_run(
      "fig2a-dense",
      "seed: 5\ndevice: cpu\ndtype: float64\nmodel: {name: linear}\n"
      "data: {source: gaussian, n: 12, d: 40}\n"
      "train: {lr: 0.001, batch_size: 12, max_steps: 1, eval_every: 1, target_loss: 0}\n");
  ng::SpectrumRequest req;
  req.name = "full";
  req.options.k = n;  // the rank of G: every nonzero eigenvalue
  req.options.matrices = {ng::MatrixKind::G};
  req.options.samples = n;
  req.options.solver = "gram";
  req.options.theta = "random";
  req.options.seed = 9;
  const std::string dir = ng::ensure_spectrum(run, req, {"", true}).spectrum.dir;
  const ng::AlignmentTable t = ng::load_alignment(dir);
  ASSERT_EQ(t.lambda.size(), size_t(n));

  const ng::LoadedRun loaded = ng::load_run(run, "");
  const at::Tensor x = loaded.data.x.to(at::kDouble), y = loaded.data.targets.to(at::kDouble);
  const at::Tensor w = ng::seeded_normal(d, 9, at::TensorOptions().dtype(at::kDouble));
  const at::Tensor r = at::mv(x, w) - y.squeeze(1);
  const at::Tensor g = at::mm(x.t(), x) / double(n);
  const at::Tensor sigma = at::mm(x.t() * (r * r).unsqueeze(0), x) / double(n);
  const double two_l = (r * r).mean().item<double>();
  auto [ev, vec] = at::linalg_eigh(g);  // ascending
  for (int64_t k = 0; k < n; ++k) {
    const int64_t j = d - 1 - k;
    const double lam = ev[j].item<double>();
    const at::Tensor u = vec.select(1, j);
    const double alpha = at::dot(u, at::mv(sigma, u)).item<double>() / two_l;
    EXPECT_NEAR(t.lambda[k], lam, 1e-9 * lam) << "k " << k + 1;
    EXPECT_NEAR(t.alpha[k], alpha, 1e-8 * alpha) << "k " << k + 1;
    EXPECT_NEAR(t.g[k], alpha / lam, 1e-8 * alpha / lam) << "k " << k + 1;
  }
  // The reader refuses a damaged file, naming it.
  ngtest::write_file(dir + "/alignment.csv", "k,lambda,alpha,g\n1,2,x,4\n");
  const std::string err = ngtest::error_of([&] { ng::load_alignment(dir); });
  EXPECT_NE(err.find("alignment.csv"), std::string::npos) << err;
  EXPECT_NE(err.find("row 1"), std::string::npos) << err;
}

TEST(Fig2a, ReproduceQuickGivesEveryKAndMediansNearOne) {
  if (!ngtest::python_has("matplotlib"))
    GTEST_SKIP() << "Python's matplotlib is not installed (apt-get install python3-matplotlib)";
  const std::string out = ngtest::temp_dir("fig2a");
  const std::string cmd = "reproduce fig2a --scale quick --out " + ngtest::quote(out);
  std::string log;
  ASSERT_EQ(run_cli(cmd + " --quiet", &log), 0) << log;
  ASSERT_TRUE(fs::exists(out + "/figures/fig2a.png"));
  EXPECT_EQ(ngtest::read_file(out + "/figures/fig2a.png").substr(1, 3), "PNG");
  const ng::json s = ng::read_json(out + "/figures/fig2a.json");
  ASSERT_EQ(s["regimes"].size(), 2u);
  const int64_t ns[] = {125, 56};  // d/8 and ceil(8 ln d) at d = 1000
  for (size_t i = 0; i < 2; ++i) {
    const ng::json& r = s["regimes"][i];
    EXPECT_EQ(r["d"], 1000);
    EXPECT_EQ(r["n"], ns[i]);
    EXPECT_EQ(r["k"], ns[i]);  // every eigen-direction G has
    const double lo = r["g_min"], med = r["g_median"], hi = r["g_max"];
    EXPECT_LE(lo, med);
    EXPECT_LE(med, hi);
    EXPECT_GE(med, 0.5) << r.dump();
    EXPECT_LE(med, 2.0) << r.dump();
    // The numbers are those of the run's alignment.csv.
    const ng::AlignmentTable t =
        ng::load_alignment(out + "/runs/" + r["experiment"].get<std::string>() + "/spectra/full");
    EXPECT_EQ(t.g.size(), size_t(ns[i]));
    EXPECT_DOUBLE_EQ(*std::min_element(t.g.begin(), t.g.end()), lo);
    EXPECT_DOUBLE_EQ(*std::max_element(t.g.begin(), t.g.end()), hi);
  }
  EXPECT_TRUE(s["acceptance"]["all_medians_within_band"].get<bool>());

  ASSERT_EQ(run_cli(cmd, &log), 0) << log;
  EXPECT_EQ(log.find("computed"), std::string::npos) << log;
  EXPECT_EQ(log.find("trained,"), std::string::npos) << log;
  EXPECT_NE(log.find("median g_k within [0.5, 2] for every n: yes"), std::string::npos) << log;
}
