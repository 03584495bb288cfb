// The study layer through the library: named spectra and escape sweeps of one run, their reuse,
// the refusal of other settings under a name (naming the setting), files read back by their
// readers, `show`'s overview, and the figure recipes' checks.
#include <ATen/ATen.h>
#include <gtest/gtest.h>

#include <cmath>
#include <filesystem>

#include "src/io/files.h"
#include "src/io/rundir.h"
#include "src/study/escape_files.h"
#include "src/study/escape_study.h"
#include "src/study/figures.h"
#include "src/study/show.h"
#include "src/study/spectrum_study.h"
#include "tests/testing.h"

namespace fs = std::filesystem;

namespace {

// A small CNN trained briefly on 100 synthetic images, without any analysis (made once).
const std::string& trained_run() {
  static const std::string run =
      ngtest::train_run("study-run",
                        "seed: 5\ndevice: cpu\nthreads: 1\nmodel: {name: cnn}\n"
                        "data: {dir: \"" +
                            ngtest::synthetic_cifar_dir(50, 17) +
                            "\", classes: [0, 1]}\n"
                            "train: {lr: 0.05, batch_size: 10, max_steps: 40, eval_every: 40,"
                            " checkpoint_every: 1000, target_loss: 0}\n");
  return run;
}

ng::SpectrumRequest spectrum(const std::string& name, int64_t k) {
  ng::SpectrumRequest r;
  r.name = name;
  r.options.k = k;
  return r;
}

ng::EscapeRequest gd_sweep(const std::string& name, int64_t steps) {
  ng::EscapeRequest r;
  r.name = name;
  r.spectrum = "s4";
  r.options.optimizer = ng::Optimizer::Gd;
  r.options.steps = steps;
  r.options.log_every = 2;
  r.options.lr = 0.01;
  r.options.ks = {1, 4};
  r.ks_given = true;
  return r;
}

const ng::StudyContext kQuiet{"", true};

}  // namespace

TEST(Study, NamedSpectraAreReusedAndOtherSettingsRefusedByName) {
  const std::string run = ngtest::copy_run(trained_run(), "named-spectra");
  const auto first = ng::ensure_spectrum(run, spectrum("s4", 4), kQuiet);
  EXPECT_FALSE(first.reused);
  const std::string dir = run + "/spectra/s4";
  EXPECT_EQ(first.spectrum.dir, dir);
  ASSERT_TRUE(ng::spectrum_complete(dir));

  // The reader gives back what the writer held in memory.
  const ng::StoredSpectrum back = ng::load_spectrum(dir);
  EXPECT_TRUE(at::equal(back.U, first.spectrum.U));
  EXPECT_TRUE(at::equal(back.eigenvalues, first.spectrum.eigenvalues));
  EXPECT_EQ(back.U.size(1), 4);
  const at::Tensor gram = at::mm(back.U.t(), back.U) - at::eye(4, back.U.options());
  EXPECT_LT(gram.abs().max().item<double>(), 1e-10);
  const auto rows = ngtest::read_csv(dir + "/eigenvalues.csv");
  EXPECT_EQ(std::stod(rows.front().at("eigenvalue")), back.lambda(1));
  EXPECT_EQ(back.number("mu"), ng::read_json(dir + "/summary.json")["mu"].get<double>());

  // The same request again: reused, the files untouched.
  const std::string summary = ngtest::read_file(dir + "/summary.json");
  EXPECT_TRUE(ng::ensure_spectrum(run, spectrum("s4", 4), kQuiet).reused);
  EXPECT_EQ(ngtest::read_file(dir + "/summary.json"), summary);

  // Other settings under the same name: refused, naming the file and the setting.
  const std::string err =
      ngtest::error_of([&] { ng::ensure_spectrum(run, spectrum("s4", 3), kQuiet); });
  EXPECT_NE(err.find("spectra/s4/summary.json"), std::string::npos) << err;
  EXPECT_NE(err.find("k differs"), std::string::npos) << err;
  EXPECT_EQ(ngtest::read_file(dir + "/summary.json"), summary);

  // Another name is another spectrum; replace recomputes under the same name.
  EXPECT_FALSE(ng::ensure_spectrum(run, spectrum("s3", 3), kQuiet).reused);
  EXPECT_EQ(ng::RunPaths{run}.spectrum_names(), (std::vector<std::string>{"s3", "s4"}));
  EXPECT_FALSE(ng::ensure_spectrum(run, spectrum("s4", 3), kQuiet, true).reused);
  EXPECT_EQ(ng::load_spectrum(dir).U.size(1), 3);
}

TEST(Study, ValidationNamesTheFieldAndTouchesNoFile) {
  auto bad_spectrum = [](std::function<void(ng::SpectrumRequest&)> f) {
    ng::SpectrumRequest r;
    f(r);
    return ngtest::error_of([&] { ng::validate(r); });
  };
  EXPECT_NE(bad_spectrum([](auto& r) { r.name = "../x"; }).find("--name"), std::string::npos);
  EXPECT_NE(bad_spectrum([](auto& r) { r.name = ""; }).find("--name"), std::string::npos);
  EXPECT_NE(bad_spectrum([](auto& r) { r.options.k = 0; }).find("--k"), std::string::npos);
  EXPECT_EQ(bad_spectrum([](auto& r) { r.name = "b8_v2.1"; }), "");

  auto bad_escape = [](std::function<void(ng::EscapeRequest&)> f) {
    ng::EscapeRequest r;
    f(r);
    return ngtest::error_of([&] { ng::validate(r); });
  };
  EXPECT_EQ(bad_escape([](auto&) {}), "");
  EXPECT_NE(bad_escape([](auto& r) { r.options.ks = {5, 1}; }).find("--ks"), std::string::npos);
  EXPECT_NE(bad_escape([](auto& r) { r.options.escape_factor = 1; }).find("--escape-factor"),
            std::string::npos);
  EXPECT_NE(bad_escape([](auto& r) { r.spectrum = ".hidden"; }).find("--spectrum"),
            std::string::npos);
  EXPECT_NE(bad_escape([](auto& r) { r.options.steps = 0; }).find("--steps"), std::string::npos);

  // Every job of every figure, at both scales, passes the same checks.
  ng::FigureSettings s;
  for (const auto& f : ng::figures())
    for (const char* scale : {"quick", "paper"}) {
      s.scale = scale;
      EXPECT_EQ(ngtest::error_of([&] { ng::validate_figure(f, f.runs(scale), s); }), "") << f.name;
    }
  EXPECT_NE(ngtest::error_of([] { ng::find_figure("fig9"); }).find("fig5"), std::string::npos);
}

TEST(Study, NamedEscapeSweepsLiveSideBySide) {
  const std::string run = ngtest::copy_run(trained_run(), "named-escapes");
  // The sweep's spectrum is missing: computed first, under its name.
  const auto a = ng::run_escape_study(run, gd_sweep("a", 6), kQuiet);
  EXPECT_EQ(a.dir, run + "/escapes/a");
  EXPECT_TRUE(ng::spectrum_complete(run + "/spectra/s4"));
  EXPECT_EQ(a.computed, 1);
  const ng::json rec = ng::load_escape_record(a.dir);
  EXPECT_EQ(rec["request"]["optimizer"], "gd");
  EXPECT_EQ(rec["request"]["spectrum"], "s4");
  EXPECT_EQ(rec["request"]["ks"], (std::vector<int64_t>{1, 4}));
  EXPECT_EQ(rec["median_r_over_p_at_escape"].size(), 2u);
  const auto rows = ngtest::read_csv(a.dir + "/trajectories.csv");
  EXPECT_EQ(rows.size(), 4u);  // steps 0, 2, 4, 6

  // A second sweep under another name with other settings leaves the first untouched.
  const std::string before = ngtest::read_file(a.dir + "/trajectories.csv");
  auto b = gd_sweep("b", 4);
  b.options.optimizer = ng::Optimizer::Sgd;
  b.options.runs = 2;
  b.options.batch = 8;
  const auto out_b = ng::run_escape_study(run, b, kQuiet);
  EXPECT_EQ(out_b.computed, 2);
  EXPECT_EQ(ngtest::read_file(a.dir + "/trajectories.csv"), before);
  EXPECT_EQ(ng::load_escape_record(out_b.dir)["request"]["batch"], 8);

  // The same request again reuses every run; other settings under a name are refused by field.
  EXPECT_EQ(ng::run_escape_study(run, gd_sweep("a", 6), kQuiet).reused, 1);
  const std::string err =
      ngtest::error_of([&] { ng::run_escape_study(run, gd_sweep("a", 8), kQuiet); });
  EXPECT_NE(err.find("escapes/a/result.json"), std::string::npos) << err;
  EXPECT_NE(err.find("steps differs: 6 there, 8 asked"), std::string::npos) << err;

  // show's overview: the training, both sweeps and the spectrum, and a folder of the old layout.
  fs::create_directories(run + "/escape");
  const ng::RunOverview o = ng::describe_run(run);
  EXPECT_EQ(o.legacy, std::vector<std::string>{"escape/"});
  EXPECT_EQ(o.status, "max_steps");
  ASSERT_EQ(o.spectra.size(), 1u);
  EXPECT_EQ(o.spectra[0].name, "s4");
  EXPECT_EQ(o.spectra[0].file["k"], 4);
  EXPECT_GT(o.spectra[0].file["lambda_1"].get<double>(), 0);
  ASSERT_EQ(o.escapes.size(), 2u);
  EXPECT_EQ(o.escapes[0].name, "a");
  EXPECT_EQ(o.escapes[1].file["request"]["optimizer"], "sgd");
}

TEST(Study, MedianRatioAtEscapeTakesEachRunsFirstEscapedPoint) {
  auto point = [](int64_t step, double loss, double p, double r) {
    ng::TrajectoryPoint pt;
    pt.step = step;
    pt.loss = loss;
    pt.p = {p};
    pt.r = {r};
    return pt;
  };
  ng::RunResult escapes, stays, diverges;
  // Escapes at step 2 (loss 5 > 1): r/|p| there is 2, not the later 10.
  escapes.trajectory = {point(0, 0.1, 0, 0), point(2, 5, -1, 2), point(4, 50, 1, 10)};
  // Never escapes: its last point counts.
  stays.trajectory = {point(0, 0.1, 0, 0), point(2, 0.2, 2, 1)};
  // NaN loss counts as escaped; a NaN p ends the trajectory before it.
  diverges.trajectory = {point(0, 0.1, 0, 0), point(2, NAN, 1, 4), point(4, NAN, NAN, NAN)};
  const auto m = ng::median_ratio_at_escape({escapes, stays, diverges}, 1.0, 1);
  ASSERT_EQ(m.size(), 1u);
  EXPECT_DOUBLE_EQ(m[0], 2.0);  // median of 2, 0.5, 4
}
