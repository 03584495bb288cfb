// Figure A (Appendix A's b = 2k estimator tested): the subspace overlap and eigenvalue ratios
// against hand-made spectra, the per-sample spectrum over all n samples against the exact one,
// the recipe's sweep, and reproduce figA end to end on synthetic data with reuse.
#include <ATen/ATen.h>
#include <gtest/gtest.h>

#include <cmath>
#include <filesystem>

#include "src/io/json.h"
#include "src/study/figA.h"
#include "src/study/figure_recipes.h"
#include "src/study/spectrum_study.h"
#include "tests/testing.h"

namespace fs = std::filesystem;
using ng::figa::Comparison;

namespace {

// A p x k matrix whose columns are the unit vectors e_i for the given (0-based) i.
at::Tensor unit_columns(int64_t p, const std::vector<int64_t>& rows) {
  at::Tensor u = at::zeros({p, static_cast<int64_t>(rows.size())}, at::kDouble);
  for (size_t j = 0; j < rows.size(); ++j) u[rows[j]][static_cast<int64_t>(j)] = 1.0;
  return u;
}

ng::StoredSpectrum spectrum(const at::Tensor& u, std::vector<double> values, int64_t samples,
                            int64_t seed) {
  ng::StoredSpectrum s;
  s.dir = "hand-made";
  s.U = u;
  s.eigenvalues = at::tensor(values, at::kDouble);
  s.summary = ng::json{{"samples", samples}, {"seed", seed}};
  return s;
}

TEST(FigA, OverlapIsOneForTheSameSubspaceAndZeroForOrthogonalOnes) {
  const at::Tensor a = unit_columns(10, {0, 1, 2});
  EXPECT_DOUBLE_EQ(ng::figa::subspace_overlap(a, a), 1.0);
  EXPECT_DOUBLE_EQ(ng::figa::subspace_overlap(a, unit_columns(10, {3, 4, 5})), 0.0);
  // One shared direction of three: 1/3. Any orthonormal basis of a subspace gives the same.
  EXPECT_NEAR(ng::figa::subspace_overlap(a, unit_columns(10, {2, 3, 4})), 1.0 / 3.0, 1e-15);
  const at::Tensor q = std::get<0>(at::linalg_qr(at::randn({3, 3}, at::kDouble)));
  EXPECT_NEAR(ng::figa::subspace_overlap(a, at::mm(a, q)), 1.0, 1e-12);
  // Principal angle theta between span(e1) and span(cos e1 + sin e2): cos^2 theta.
  at::Tensor b = at::zeros({10, 1}, at::kDouble);
  b[0][0] = std::cos(0.3);
  b[1][0] = std::sin(0.3);
  EXPECT_NEAR(ng::figa::subspace_overlap(unit_columns(10, {0}), b), std::pow(std::cos(0.3), 2),
              1e-15);
  EXPECT_NE(ngtest::error_of([&] { ng::figa::subspace_overlap(a, unit_columns(10, {0, 1})); }), "");
}

TEST(FigA, ComparesEigenvaluesAndSubspacesOfASampleSpectrumWithTheReference) {
  const ng::StoredSpectrum ref = spectrum(unit_columns(8, {0, 1, 2, 3}), {8, 4, 2, 1}, 100, 0);
  // Eigenvalues 1.5x, 1x, 0.5x, 2x the reference's; the top-4 subspaces share e1, e2 only.
  const ng::StoredSpectrum s = spectrum(unit_columns(8, {0, 1, 4, 5}), {12, 4, 1, 2}, 20, 7);
  ASSERT_TRUE(at::allclose(at::mm(s.U.t(), s.U), at::eye(4, at::kDouble)));
  const Comparison c = ng::figa::compare(s, ref, {1, 2, 3, 4});
  EXPECT_EQ(c.b, 20);
  EXPECT_EQ(c.seed, 7u);
  EXPECT_EQ(c.ratio, (std::vector<double>{1.5, 1.0, 0.5, 2.0}));
  EXPECT_DOUBLE_EQ(c.overlap, 0.5);
  EXPECT_DOUBLE_EQ(ng::figa::compare(ref, ref, {1, 4}).overlap, 1.0);
  // An eigenvalue beyond the spectra's k is refused, naming the spectrum.
  EXPECT_NE(ngtest::error_of([&] { ng::figa::compare(s, ref, {5}); }).find("hand-made"),
            std::string::npos);
}

TEST(FigA, MeanStdAndTheSmallestSufficientB) {
  const ng::figa::MeanStd m = ng::figa::mean_std({1, 2, 3, 4});
  EXPECT_DOUBLE_EQ(m.mean, 2.5);
  EXPECT_DOUBLE_EQ(m.std, std::sqrt(5.0 / 3.0));
  EXPECT_DOUBLE_EQ(ng::figa::mean_std({2}).std, 0.0);
  const std::vector<int64_t> bs = {10, 20, 40, 80};
  using ng::figa::smallest_b_from_which;
  EXPECT_EQ(smallest_b_from_which(bs, {false, false, true, true}), 40);
  // Meeting the bound once and missing it again at a larger b does not count.
  EXPECT_EQ(smallest_b_from_which(bs, {true, false, true, true}), 40);
  EXPECT_EQ(smallest_b_from_which(bs, {true, true, true, true}), 10);
  EXPECT_EQ(smallest_b_from_which(bs, {true, true, true, false}), -1);
}

TEST(FigA, PerSampleSpectrumOverAllSamplesAgreesWithTheExactOne) {
  const std::string run = ngtest::train_run(
      "figA-run", "seed: 1\ndevice: cpu\nthreads: 1\nmodel: {name: cnn}\ndata: {dir: \"" +
                      ngtest::synthetic_cifar_dir(100, 11) +
                      "\", classes: [0, 1], max_samples: 30}\n"
                      "train: {lr: 0.05, batch_size: 10, max_steps: 60, eval_every: 30,"
                      " checkpoint_every: 1000, target_loss: 0}\n");
  ng::SpectrumRequest per, exact;
  per.name = "per";
  exact.name = "exact";
  for (ng::SpectrumRequest* r : {&per, &exact}) {
    r->options.k = 5;
    r->options.matrices = {ng::MatrixKind::G};
    r->options.probes = 4;
  }
  per.options.samples = 30;
  exact.options.estimator = ng::Estimator::Exact;
  const ng::StudyContext ctx{"", true};
  const ng::StoredSpectrum a = ng::ensure_spectrum(run, per, ctx).spectrum;
  const ng::StoredSpectrum b = ng::ensure_spectrum(run, exact, ctx).spectrum;
  EXPECT_EQ(b.summary["samples"], 30);
  const Comparison c = ng::figa::compare(a, b, {1, 2, 3, 4, 5});
  for (double r : c.ratio) EXPECT_NEAR(r, 1.0, 1e-8);
  EXPECT_NEAR(c.overlap, 1.0, 1e-8);
}

TEST(FigA, RecipeSweepsBFromKBelowNWithThePapersBAndAReference) {
  const ng::Figure& fig = ng::find_figure("figA");
  for (const auto* runs : {&fig.quick, &fig.paper}) {
    ASSERT_EQ(runs->size(), 2u);
    for (const auto& r : *runs) {
      ASSERT_FALSE(r.spectra.empty());
      EXPECT_EQ(r.spectra.front().name, ng::figa::kReference);
      bool has_k = false, has_2k = false;
      for (size_t i = 1; i < r.spectra.size(); ++i) {
        const ng::SpectrumOptions& o = r.spectra[i].options;
        EXPECT_EQ(o.estimator, ng::Estimator::PerSample);
        EXPECT_EQ(r.spectra[i].name, ng::figa::sweep_name(o.samples, o.seed));
        has_k |= o.samples == o.k;
        has_2k |= o.samples == 2 * o.k;
      }
      EXPECT_TRUE(has_k && has_2k) << r.experiment;
    }
  }
  EXPECT_EQ(fig.paper[0].experiment, "quick_cnn");
  EXPECT_EQ(fig.paper[1].experiment, "quick_fig5_resnet");
  std::string help;
  ASSERT_EQ(ngtest::run_cli("reproduce --help", &help), 0) << help;
  EXPECT_NE(help.find("figA: Appendix A's b = 2k estimator"), std::string::npos) << help;
}

// The quick recipe's pipeline (train, reference, sweep, summary, plot) on 40 synthetic images with
// k = 3: b = 3..24 below n and b = n itself, where the per-sample spectrum must equal the exact
// reference.
std::vector<ng::FigureRun> small_sweep() {
  std::vector<ng::FigureRun> runs;
  for (const char* exp : {"quick_figA_cnn", "quick_figA_resnet"})
    runs.push_back(ng::figa::sweep_run(
        ng::figa::Sweep{exp, exp, 40, 3, 2, {3, 6, 12, 24, 40}, ng::Estimator::Exact}));
  return runs;
}

TEST(FigA, ReproduceRunsTheSweepSummarisesPlotsAndReusesEverything) {
  if (!ngtest::python_has("matplotlib")) GTEST_SKIP() << "Python's matplotlib is not installed";
  ng::FigureSettings s;
  s.scale = "quick";
  s.out = ngtest::temp_dir("figA");
  s.ctx = ng::StudyContext{ngtest::synthetic_cifar_dir(100, 11), true};
  s.train_overrides = {"data.max_samples=40", "train.max_steps=30", "train.target_loss=0",
                       "model.width=4", "threads=1"};
  const ng::Figure& fig = ng::find_figure("figA");
  const auto runs = small_sweep();
  const ng::FigureOutcome out = ng::reproduce_figure(fig, runs, s);
  ASSERT_EQ(out.exit_code, 0);
  ASSERT_TRUE(fs::exists(out.png));
  EXPECT_EQ(ngtest::read_file(out.png).substr(1, 3), "PNG");
  const ng::json j = ng::read_json(out.summary_file);
  EXPECT_EQ(j["k"], 3);
  EXPECT_EQ(j["ks"], (std::vector<int64_t>{1, 3}));
  EXPECT_EQ(j["paper_b"], 6);
  ASSERT_EQ(j["networks"].size(), 2u);
  for (const auto& net : j["networks"]) {
    EXPECT_EQ(net["n"], 40);
    const auto& pts = net["points"];
    ASSERT_EQ(pts.size(), 5u);
    for (const auto& p : pts) {
      EXPECT_EQ(p["seeds"], 2);
      const double ov = p["overlap"]["mean"];
      EXPECT_TRUE(ov >= 0 && ov <= 1 + 1e-9) << p.dump();
      EXPECT_GT(p["ratio"]["lambda_1"]["mean"].get<double>(), 0) << p.dump();
    }
    // b = n: every seed draws all samples, and the per-sample spectrum is the exact one.
    EXPECT_EQ(pts.back()["b"], 40);
    EXPECT_NEAR(pts.back()["ratio"]["lambda_1"]["mean"].get<double>(), 1.0, 1e-4);
    EXPECT_NEAR(pts.back()["ratio"]["lambda_3"]["mean"].get<double>(), 1.0, 1e-4);
    EXPECT_NEAR(pts.back()["overlap"]["mean"].get<double>(), 1.0, 1e-3);
    EXPECT_LT(pts.back()["overlap"]["std"].get<double>(), 1e-6);
    // The verdicts are points of the sweep, and b = 2k's is read off its own point.
    EXPECT_TRUE(net["b_lambda1_within_10pct"].is_number()) << net.dump();
    EXPECT_TRUE(net["b_overlap_above_0.9"].is_number()) << net.dump();
    EXPECT_DOUBLE_EQ(net["paper_b_lambda1_ratio"].get<double>(),
                     pts[1]["ratio"]["lambda_1"]["mean"].get<double>());
    EXPECT_EQ(net["paper_b_meets_overlap"].get<bool>(),
              pts[1]["overlap"]["mean"].get<double>() > 0.9);
  }
  EXPECT_FALSE(out.summary.lines.empty());

  // A second reproduce trains and computes nothing.
  const std::string summary = ngtest::read_file(out.summary_file);
  const ng::FigureOutcome again = ng::reproduce_figure(fig, runs, s);
  for (const auto& line : again.report) {
    EXPECT_EQ(line.find("computed"), std::string::npos) << line;
    EXPECT_EQ(line.find("trained"), std::string::npos) << line;
  }
  EXPECT_EQ(ngtest::read_file(again.summary_file), summary);
}

}  // namespace
