// Spectra checked against the library's operators and against each other: files, residuals,
// per-sample vs exact, alignment.csv vs eigenvalues.csv, eigenvectors.pt in Python; the spectrum
// command's end-to-end path, argument handling and bad input; reproduce's reuse of finished work.
#include <ATen/ATen.h>
#include <gtest/gtest.h>

#include <cmath>
#include <cstdlib>
#include <filesystem>
#include <map>
#include <sstream>

#include "src/curvature/curvature.h"
#include "src/eigen/eigensolver.h"
#include "src/io/files.h"
#include "src/io/json.h"
#include "src/study/spectrum_study.h"
#include "src/training/train.h"
#include "tests/testing.h"

namespace fs = std::filesystem;
using ngtest::run_cli;

namespace {

// A small CNN trained briefly on 100 synthetic images (made once, copied per test). The spectra
// are computed in float64 whatever the training dtype.
const std::string& trained_run() {
  static const std::string run = ngtest::train_run(
      "spec-run", "seed: 3\ndevice: cpu\nthreads: 1\nmodel: {name: cnn}\ndata: {dir: \"" +
                      ngtest::synthetic_cifar_dir(100, 11) +
                      "\", classes: [0, 1]}\n"
                      "train: {lr: 0.05, batch_size: 10, max_steps: 100, eval_every: 50,"
                      " checkpoint_every: 1000, target_loss: 0}\n");
  return run;
}

std::string copy_run(const std::string& tag) {
  return ngtest::copy_run(trained_run(), tag);
}

std::vector<double> column(const std::vector<ngtest::CsvRow>& rows, const std::string& col,
                           const std::string& matrix = "") {
  std::vector<double> out;
  for (const auto& r : rows)
    if (matrix.empty() || r.at("matrix") == matrix) out.push_back(std::stod(r.at(col)));
  return out;
}

double rel(double a, double b) {
  return std::fabs(a - b) / std::max(std::fabs(b), 1e-300);
}

// The samples a spectrum used, as positions into the run's training set.
std::vector<int64_t> positions(const std::string& spectrum_dir) {
  std::vector<int64_t> out;
  for (const auto& r : ngtest::read_csv(spectrum_dir + "/samples.csv"))
    out.push_back(std::stoll(r.at("position")));
  return out;
}

// The library's operator of `matrix` on the given samples of the run, float64.
std::unique_ptr<ng::CurvatureOperator> library_operator(ng::LoadedRun& run,
                                                        const std::vector<int64_t>& pos,
                                                        ng::MatrixKind matrix,
                                                        ng::Estimator estimator) {
  const at::Tensor idx = at::tensor(pos, at::TensorOptions().dtype(at::kLong));
  ng::CurvatureOptions o;
  o.matrix = matrix;
  o.estimator = estimator;
  o.dtype = at::kDouble;
  return std::make_unique<ng::CurvatureOperator>(run.model, run.data.x.index_select(0, idx),
                                                 run.data.targets.index_select(0, idx), o);
}

// The spectrum NAME of `run` with the options `set` gives, through the study layer; its folder.
std::string spectrum(const std::string& run, const std::string& name,
                     const std::function<void(ng::SpectrumOptions&)>& set) {
  ng::SpectrumRequest r;
  r.name = name;
  set(r.options);
  return ng::ensure_spectrum(run, r, {"", true}).spectrum.dir;
}

double summary_number(const std::string& dir, const std::string& key) {
  return ng::read_json(dir + "/summary.json").at(key).get<double>();
}

std::string summary_string(const std::string& dir, const std::string& key) {
  return ng::read_json(dir + "/summary.json").at(key).get<std::string>();
}

}  // namespace

TEST(Spectrum, WritesEveryFileAndAgreesWithTheLibrary) {
  const std::string run = copy_run("files");
  std::string log;
  // The one end-to-end path of the command: files, progress lines, the printed summary.
  ASSERT_EQ(run_cli("spectrum " + ngtest::quote(run) + " --k 6 --matrices G,Sigma,Sigma0,H", &log),
            0)
      << log;
  const std::string dir = run + "/spectra/default";
  for (const char* f :
       {"eigenvalues.csv", "alignment.csv", "eigenvectors.pt", "summary.json", "samples.csv"})
    EXPECT_TRUE(fs::exists(dir + "/" + f)) << f;
  for (const auto& e : fs::directory_iterator(run + "/spectra"))
    EXPECT_EQ(e.path().filename().string(), "default") << e.path();
  // Progress went to stderr: phases, matvecs and seconds; the summary line names the folder.
  EXPECT_NE(log.find("matvecs"), std::string::npos) << log;
  EXPECT_NE(log.find("-> " + dir), std::string::npos) << log;
  // The same command again reuses the spectrum; other settings under the name are refused.
  ASSERT_EQ(run_cli("spectrum " + ngtest::quote(run) + " --k 6 --matrices G,Sigma,Sigma0,H --quiet",
                    &log),
            0)
      << log;
  EXPECT_NE(log.find("reused"), std::string::npos) << log;
  EXPECT_EQ(run_cli("spectrum " + ngtest::quote(run) + " --k 5 --quiet", &log), 1) << log;
  EXPECT_NE(log.find("k differs"), std::string::npos) << log;
  EXPECT_EQ(ngtest::count_lines(log), 1) << log;

  const auto eig = ngtest::read_csv(dir + "/eigenvalues.csv");
  for (const char* m : {"G", "Sigma", "Sigma0", "H"}) {
    const auto vals = column(eig, "eigenvalue", m), res = column(eig, "residual", m);
    ASSERT_EQ(vals.size(), 6u) << m;
    for (size_t j = 0; j < vals.size(); ++j) {
      EXPECT_LT(res[j], 1e-6) << m << " " << j;
      if (j) {
        EXPECT_LE(vals[j], vals[j - 1]) << m;
      }
    }
  }
  const std::string summary = ngtest::read_file(dir + "/summary.json");
  for (const char* s : {"\"converged\": true", "\"estimator\": \"per-sample\"", "\"samples\": 12",
                        "\"k\": 6", "\"theta\": \"trained\"", "\"dtype\": \"float64\"",
                        "\"solver\": \"gram\"", "\"metrics_method\": \"gram\"", "\"mu\": ",
                        "\"srk_G\": ", "\"srk_G2\": ", "\"frobenius_G\": ", "\"matvecs\": "})
    EXPECT_NE(summary.find(s), std::string::npos) << s << "\n" << summary;

  // The same samples through the library, solved by Lanczos rather than the Gram matrix.
  const auto pos = positions(dir);
  ASSERT_EQ(pos.size(), 12u);
  ng::LoadedRun lr = ng::load_run(run, "");
  auto gop = library_operator(lr, pos, ng::MatrixKind::G, ng::Estimator::PerSample);
  ng::EigenOptions eo;
  eo.k = 6;
  eo.solver = "lanczos";
  const ng::Eigenpairs lib = ng::top_eigenpairs(*gop, eo);
  const auto g_vals = column(eig, "eigenvalue", "G");
  for (int j = 0; j < 6; ++j) EXPECT_LT(rel(g_vals[j], lib.values[j]), 1e-8) << j;

  // alignment.csv: lambda is G's spectrum, g = alpha / lambda, and alpha_k = u_k^T Sigma u_k / 2L
  // recomputed from eigenvectors.pt with the library's Sigma.
  const auto al = ngtest::read_csv(dir + "/alignment.csv");
  ASSERT_EQ(al.size(), 6u);
  const auto lam = column(al, "lambda"), alpha = column(al, "alpha"), g = column(al, "g");
  auto sop = library_operator(lr, pos, ng::MatrixKind::Sigma, ng::Estimator::PerSample);
  const c10::IValue saved = ng::load_ivalue(dir + "/eigenvectors.pt");
  const at::Tensor u = saved.toGenericDict().at("U").toTensor();  // p x k
  ASSERT_EQ(u.size(0), gop->dim());
  ASSERT_EQ(u.size(1), 6);
  for (int j = 0; j < 6; ++j) {
    EXPECT_EQ(lam[j], g_vals[j]);
    EXPECT_LT(rel(g[j], alpha[j] / lam[j]), 1e-12);
    const at::Tensor uj = u.select(1, j).contiguous();
    const double quad = at::dot(uj, sop->apply(uj)).item<double>();
    EXPECT_LT(rel(alpha[j], quad / (2 * sop->loss())), 1e-8) << j;
    // Each column is an eigenvector of the library's G.
    const double r = (gop->apply(uj) - lam[j] * uj).norm().item<double>() / lam[j];
    EXPECT_LT(r, 1e-6) << j;
  }
}

TEST(Spectrum, PerSampleAndExactAgreeOnTheSameSamples) {
  const std::string run = copy_run("estimators");
  auto common = [](ng::SpectrumOptions& o) {
    o.k = 5;
    o.samples = 16;
    o.seed = 4;
  };
  const std::string per_dir = spectrum(run, "per", common);
  const auto per = ngtest::read_csv(per_dir + "/eigenvalues.csv");
  const std::string per_samples = ngtest::read_file(per_dir + "/samples.csv");
  // Streamed (no rows: the budget is 0), and within the row budget (the Gram route).
  const std::string ex_dir = spectrum(run, "exact", [&](ng::SpectrumOptions& o) {
    common(o);
    o.estimator = ng::Estimator::Exact;
    o.probes = 100;
    o.row_budget = 0;
  });
  const std::string rows_dir = spectrum(run, "exact-rows", [&](ng::SpectrumOptions& o) {
    common(o);
    o.estimator = ng::Estimator::Exact;
  });
  const auto ex = ngtest::read_csv(ex_dir + "/eigenvalues.csv");
  const auto exr = ngtest::read_csv(rows_dir + "/eigenvalues.csv");
  EXPECT_EQ(ngtest::read_file(ex_dir + "/samples.csv"), per_samples);
  EXPECT_EQ(ngtest::count_lines(per_samples), 17);
  for (const char* m : {"G", "Sigma"}) {
    const auto a = column(per, "eigenvalue", m), b = column(ex, "eigenvalue", m),
               c = column(exr, "eigenvalue", m);
    ASSERT_EQ(a.size(), 5u);
    ASSERT_EQ(b.size(), 5u);
    ASSERT_EQ(c.size(), 5u);
    for (int j = 0; j < 5; ++j) EXPECT_LT(rel(b[j], a[j]), 1e-8) << m << " " << j;
    for (int j = 0; j < 5; ++j) EXPECT_LT(rel(c[j], a[j]), 1e-10) << m << " " << j;
    for (double r : column(ex, "residual", m)) EXPECT_LT(r, 1e-6) << m;
  }
  EXPECT_EQ(summary_string(ex_dir, "solver"), "lanczos");
  EXPECT_EQ(summary_string(ex_dir, "storage"), "streamed");
  EXPECT_EQ(summary_string(ex_dir, "metrics_method"), "hutchinson");
  EXPECT_EQ(summary_string(rows_dir, "solver"), "gram");
  EXPECT_EQ(summary_string(rows_dir, "storage"), "rows");
  EXPECT_EQ(summary_string(rows_dir, "metrics_method"), "gram");
  // mu: exact from the Gram blocks vs a Hutchinson estimate with its standard error.
  const double mu_exact = summary_number(per_dir, "mu"), mu_est = summary_number(ex_dir, "mu"),
               se = summary_number(ex_dir, "mu_se");
  EXPECT_GT(se, 0);
  EXPECT_LT(std::fabs(mu_est - mu_exact), 5 * se + 1e-9) << mu_exact << " " << mu_est << " " << se;
  EXPECT_EQ(summary_number(per_dir, "mu_se"), 0);
  // Within the budget every metric is the per-sample one over the same samples, exactly.
  for (const char* key : {"mu", "srk_G", "srk_G2", "frobenius_G", "trace_G"})
    EXPECT_LT(rel(summary_number(rows_dir, key), summary_number(per_dir, key)), 1e-10) << key;
  EXPECT_EQ(summary_number(rows_dir, "mu_se"), 0);
  const auto alpha_per = ngtest::read_csv(per_dir + "/alignment.csv");
  const auto alpha_rows = ngtest::read_csv(rows_dir + "/alignment.csv");
  ASSERT_EQ(alpha_per.size(), alpha_rows.size());
  for (size_t j = 0; j < alpha_per.size(); ++j)
    EXPECT_LT(rel(std::stod(alpha_rows[j].at("alpha")), std::stod(alpha_per[j].at("alpha"))), 1e-10)
        << j;
  EXPECT_LT(rel(summary_number(ex_dir, "loss"), summary_number(per_dir, "loss")), 1e-12);
}

TEST(Spectrum, Float32LanczosAndRandomTheta) {
  const std::string run = copy_run("variants");
  const auto k4 = [](ng::SpectrumOptions& o) { o.k = 4; };
  const auto base = ngtest::read_csv(spectrum(run, "base", k4) + "/eigenvalues.csv");

  // float32: residuals below 1e-3 and the same spectrum to float32 accuracy.
  const auto f32 = ngtest::read_csv(spectrum(run, "f32",
                                             [&](ng::SpectrumOptions& o) {
                                               k4(o);
                                               o.dtype = at::kFloat;
                                             }) +
                                    "/eigenvalues.csv");
  for (double r : column(f32, "residual")) EXPECT_LT(r, 1e-3);
  for (int j = 0; j < 4; ++j)
    EXPECT_LT(rel(column(f32, "eigenvalue", "G")[j], column(base, "eigenvalue", "G")[j]), 1e-4);

  // Lanczos on the per-sample operator agrees with the Gram solver.
  const std::string lz_dir = spectrum(run, "lanczos", [&](ng::SpectrumOptions& o) {
    k4(o);
    o.solver = "lanczos";
  });
  const auto lz = ngtest::read_csv(lz_dir + "/eigenvalues.csv");
  for (int j = 0; j < 4; ++j)
    EXPECT_LT(rel(column(lz, "eigenvalue", "G")[j], column(base, "eigenvalue", "G")[j]), 1e-8);
  EXPECT_EQ(summary_string(lz_dir, "solver"), "lanczos");
  // Residuals from the Lanczos relation: the same pairs, residuals that agree with the explicit
  // ones where they are above rounding, and the top pair checked explicitly.
  const std::string kr_dir = spectrum(run, "krylov", [&](ng::SpectrumOptions& o) {
    k4(o);
    o.solver = "lanczos";
    o.residuals = "krylov";
    o.tol = 1e-6;
  });
  const auto kr = ngtest::read_csv(kr_dir + "/eigenvalues.csv");
  for (int j = 0; j < 4; ++j)
    EXPECT_LT(rel(column(kr, "eigenvalue", "G")[j], column(base, "eigenvalue", "G")[j]), 1e-5);
  for (double r : column(kr, "residual")) EXPECT_LT(r, 1e-6);
  const ng::json ks = ng::read_json(kr_dir + "/summary.json");
  EXPECT_EQ(ks["spectra"]["G"]["residuals"], "krylov") << ks.dump();
  EXPECT_LT(ks["spectra"]["G"]["explicit_residual_check"].get<double>(), 1e-6) << ks.dump();
  EXPECT_EQ(ks["request"]["residuals"], "krylov");  // part of the reuse request

  // theta ~ N(0, I): another point altogether, the same one for the same seed.
  auto random = [&](ng::SpectrumOptions& o) {
    k4(o);
    o.theta = "random";
    o.seed = 2;
  };
  const std::string r_dir = spectrum(run, "random", random);
  const auto r1 = ngtest::read_csv(r_dir + "/eigenvalues.csv");
  EXPECT_EQ(summary_string(r_dir, "theta"), "random");
  const double lam_rand = column(r1, "eigenvalue", "G")[0];
  const double lam_trained = column(base, "eigenvalue", "G")[0];
  EXPECT_GT(lam_rand, 100 * lam_trained) << lam_rand << " vs " << lam_trained;
  for (double r : column(r1, "residual")) EXPECT_LT(r, 1e-6);
  EXPECT_EQ(
      column(ngtest::read_csv(spectrum(run, "random2", random) + "/eigenvalues.csv"), "eigenvalue"),
      column(r1, "eigenvalue"));
}

TEST(Spectrum, EigenvectorsAreReadableByPythonTorchLoad) {
  if (!ngtest::python_has("torch"))
    GTEST_SKIP() << "Python's torch is not installed (scripts/setup.sh installs python3-torch)";
  const std::string run = copy_run("python");
  spectrum(run, "default", [](ng::SpectrumOptions& o) { o.k = 5; });
  const std::string script = run + "/check.py";
  ngtest::write_file(
      script,
      "import csv, sys, torch\n"
      "d = torch.load(sys.argv[1] + '/spectra/default/eigenvectors.pt')\n"
      "theta = torch.load(sys.argv[1] + '/theta.pt')\n"
      "U, lam = d['U'], d['eigenvalues']\n"
      "p = sum(v.numel() for v in theta.values())\n"
      "assert U.shape == (p, 5) and U.dtype == torch.float64, U.shape\n"
      "assert list(d['parameter_names']) == list(theta.keys())\n"
      "assert list(d['parameter_numels']) == [v.numel() for v in theta.values()]\n"
      "err = (U.T @ U - torch.eye(5, dtype=torch.float64)).abs().max().item()\n"
      "assert err < 1e-10, err\n"
      "rows = [r for r in csv.DictReader(open(sys.argv[1] + '/spectra/default/eigenvalues.csv'))\n"
      "        if r['matrix'] == 'G']\n"
      "assert [float(r['eigenvalue']) for r in rows] == lam.tolist()\n"
      "print('ok')\n");
  EXPECT_EQ(
      std::system(("/usr/bin/python3 " + ngtest::quote(script) + " " + ngtest::quote(run)).c_str()),
      0);
}

// Each bad input: exit 1, one line naming the file or option, and no spectra/ directory.
TEST(Spectrum, BadInputGivesOneLineErrorsAndNoOutput) {
  const std::string run = copy_run("bad");
  const std::string misfit = copy_run("misfit");
  ng::save_tensor_dict(misfit + "/theta.pt", {{"conv1.weight", at::zeros({2, 2})}});
  const std::string no_theta = copy_run("notheta");
  fs::remove(no_theta + "/theta.pt");
  // Samples that no longer match the run's (another copy of the data, say).
  const std::string moved = copy_run("moved");
  std::string samples = ngtest::read_file(moved + "/samples.csv");
  samples.replace(samples.find("\n0,") + 1, 3, "0,7");
  ngtest::write_file(moved + "/samples.csv", samples);
  struct Case {
    std::string dir, args, expect;
  };
  const std::vector<Case> cases = {
      {run + "/../missing", "", "missing"},
      {misfit, "", "theta.pt"},
      {no_theta, "", "theta.pt"},
      {run, "--k 30 --samples 10", "--k"},
      {run, "--k 150 --estimator exact --matrices G", "--k"},
      {run, "--samples 500", "--samples"},
      {run, "--matrices G,Foo", "--matrices"},
      {run, "--dtype float16", "--dtype"},
      {run, "--estimator dense", "--estimator"},
      {run, "--solver gram --estimator exact --row-budget 0", "--solver gram"},
      {run, "--row-budget 12parsecs", "--row-budget"},
      {run, "--theta zero", "--theta"},
      {run, "--k -2", "--k"},
      {run, "--tol abc", "--tol"},
      {moved, "", "samples.csv"},
  };
  for (const auto& c : cases) {
    std::string log;
    EXPECT_EQ(run_cli("spectrum " + ngtest::quote(c.dir) + " " + c.args, &log), 1) << c.args << "\n"
                                                                                   << log;
    EXPECT_NE(log.find(c.expect), std::string::npos) << c.args << "\n" << log;
    EXPECT_EQ(ngtest::count_lines(log), 1) << c.args << "\n" << log;
    EXPECT_FALSE(fs::exists(c.dir + "/spectra")) << c.args;
  }
  for (const auto& e : fs::directory_iterator(run))
    EXPECT_EQ(e.path().filename().string().find("spectr"), std::string::npos) << e.path();
  std::string log;
  EXPECT_EQ(run_cli("spectrum " + ngtest::quote(run) + " --name ../up", &log), 1);
  EXPECT_NE(log.find("--name"), std::string::npos) << log;
  EXPECT_EQ(run_cli("spectrum " + ngtest::quote(run) + " --bogus 1", &log), 2);
  EXPECT_NE(log.find("--bogus"), std::string::npos) << log;
  EXPECT_EQ(run_cli("spectrum --help", &log), 0);
  EXPECT_NE(log.find("eigenvectors.pt"), std::string::npos);
  EXPECT_NE(log.find("--name TEXT"), std::string::npos) << log;  // generated, defaults shown
}

TEST(Reproduce, RunsTheWholePipelineAndReusesFinishedWork) {
  if (!ngtest::python_has("matplotlib"))
    GTEST_SKIP() << "Python's matplotlib is not installed (apt-get install python3-matplotlib)";
  const std::string out = ngtest::temp_dir("reproduce");
  const std::string base = "reproduce fig5 --scale quick --out " + ngtest::quote(out) +
                           " --data-dir " + ngtest::quote(ngtest::synthetic_cifar_dir(100, 11)) +
                           " --set data.max_samples=40 --set train.max_steps=20"
                           " --set train.target_loss=0 --set model.width=4 --set threads=1"
                           " --set spectrum.k=3";
  std::string log;
  ASSERT_EQ(run_cli(base + " --quiet", &log), 0) << log;
  const std::string png = out + "/figures/fig5.png";
  ASSERT_TRUE(fs::exists(png));
  EXPECT_EQ(ngtest::read_file(png).substr(1, 3), "PNG");
  const std::vector<std::string> runs = {out + "/runs/quick_fig5_resnet",
                                         out + "/runs/quick_fig5_vgg"};
  for (const auto& r : runs) {
    EXPECT_TRUE(fs::exists(r + "/theta.pt")) << r;
    EXPECT_EQ(column(ngtest::read_csv(r + "/spectra/default/alignment.csv"), "k").size(), 3u) << r;
    EXPECT_EQ(summary_number(r + "/spectra/default", "k"), 3);
  }
  EXPECT_NE(log.find("trained"), std::string::npos) << log;
  EXPECT_NE(log.find("computed"), std::string::npos) << log;

  // A second invocation reuses the trained runs and the spectra, bit for bit.
  const auto theta_time = fs::last_write_time(runs[0] + "/theta.pt");
  const std::string summary = ngtest::read_file(runs[1] + "/spectra/default/summary.json");
  ASSERT_EQ(run_cli(base + " --quiet", &log), 0) << log;
  EXPECT_EQ(log.find("computed"), std::string::npos) << log;
  EXPECT_EQ(log.find("trained,"), std::string::npos) << log;
  EXPECT_NE(log.find("reused"), std::string::npos) << log;
  EXPECT_EQ(fs::last_write_time(runs[0] + "/theta.pt"), theta_time);
  EXPECT_EQ(ngtest::read_file(runs[1] + "/spectra/default/summary.json"), summary);

  // Other spectrum settings recompute the spectra only.
  ASSERT_EQ(run_cli(base + " --set spectrum.k=2 --quiet", &log), 0) << log;
  EXPECT_NE(log.find("computed"), std::string::npos) << log;
  EXPECT_EQ(fs::last_write_time(runs[0] + "/theta.pt"), theta_time);
  EXPECT_EQ(column(ngtest::read_csv(runs[0] + "/spectra/default/alignment.csv"), "k").size(), 2u);

  // An interrupted training run (no theta.pt yet, status running) is resumed from its checkpoint.
  fs::remove(runs[1] + "/theta.pt");
  std::string manifest = ngtest::read_file(runs[1] + "/manifest.json");
  const size_t at = manifest.find("\"status\": \"");
  ASSERT_NE(at, std::string::npos);
  manifest.replace(at, manifest.find('"', at + 11) - at + 1, "\"status\": \"running\"");
  ngtest::write_file(runs[1] + "/manifest.json", manifest);
  ASSERT_EQ(run_cli(base + " --quiet", &log), 0) << log;
  EXPECT_NE(log.find("resumed"), std::string::npos) << log;
  EXPECT_TRUE(fs::exists(runs[1] + "/theta.pt"));

  // A changed training config is refused, naming the run's config.yaml and the key.
  EXPECT_EQ(run_cli(base + " --set train.lr=0.05 --quiet", &log), 1) << log;
  EXPECT_NE(log.find("config.yaml"), std::string::npos) << log;
  EXPECT_NE(log.find("train.lr"), std::string::npos) << log;
  EXPECT_EQ(ngtest::count_lines(log), 1) << log;
  // Bad figure, scale and spectrum option.
  EXPECT_EQ(run_cli("reproduce fig9 --scale quick", &log), 1);
  EXPECT_NE(log.find("fig9"), std::string::npos) << log;
  EXPECT_EQ(run_cli("reproduce fig5 --scale huge", &log), 1);
  EXPECT_NE(log.find("--scale"), std::string::npos) << log;
  EXPECT_EQ(run_cli(base + " --set spectrum.dtype=float16", &log), 1);
  EXPECT_NE(log.find("--dtype"), std::string::npos) << log;
}

TEST(Reproduce, Figure6RunsEscapesPlotsAndReusesThem) {
  if (!ngtest::python_has("matplotlib"))
    GTEST_SKIP() << "Python's matplotlib is not installed (apt-get install python3-matplotlib)";
  const std::string out = ngtest::temp_dir("reproduce6");
  const std::string base = "reproduce fig6 --scale quick --out " + ngtest::quote(out) +
                           " --data-dir " + ngtest::quote(ngtest::synthetic_cifar_dir(100, 11)) +
                           " --set data.max_samples=40 --set train.max_steps=20"
                           " --set train.target_loss=0 --set threads=1 --set spectrum.k=3"
                           " --set spectrum.probes=4 --set escape.ks=1,3 --set escape.runs=3"
                           " --set escape.steps=30 --set escape.escape-factor=2";
  std::string log;
  ASSERT_EQ(run_cli(base + " --quiet", &log), 0) << log;
  const std::string png = out + "/figures/fig6.png";
  ASSERT_TRUE(fs::exists(png));
  EXPECT_EQ(ngtest::read_file(png).substr(1, 3), "PNG");
  for (const char* name : {"quick_cnn", "quick_fig6_fnn"}) {
    const std::string run = out + "/runs/" + name;
    for (const char* opt : {"gd", "sgd"}) {
      const std::string esc = run + "/escapes/" + opt;
      std::vector<std::string> header;
      const auto rows = ngtest::read_csv(esc + "/trajectories.csv", &header);
      EXPECT_EQ(header, (std::vector<std::string>{"optimizer", "run", "step", "lr", "loss",
                                                  "distance", "p_1", "r_1", "p_3", "r_3"}));
      // Learning rates searched so that every run escapes; each run ends at its escape.
      const ng::json rec = ng::read_json(esc + "/result.json");
      const double threshold = rec["escape_criterion"]["threshold"].get<double>();
      EXPECT_GT(threshold, 0) << name << " " << opt;
      EXPECT_EQ(rec["lr_mode"], "auto") << name << " " << opt;
      EXPECT_EQ(rec["request"]["spectrum"], "default");
      EXPECT_EQ(rec["runs"], 3) << name << " " << opt;  // escape.runs=3 applies to GD's job too
      EXPECT_EQ(rec["escaped_runs"], 3) << name << " " << opt;
      EXPECT_TRUE(rec["srk_G2"].is_number());
      std::map<std::string, const ngtest::CsvRow*> last;
      for (const auto& r : rows) last[r.at("run")] = &r;
      EXPECT_EQ(last.size(), 3u) << name << " " << opt;
      for (const auto& [run_index, row] : last)
        EXPECT_GT(std::stod(row->at("loss")), threshold) << name << " " << opt << run_index;
    }
  }

  // A second invocation reuses the runs, spectra, searched learning rates and escapes.
  const std::string before =
      ngtest::read_file(out + "/runs/quick_cnn/escapes/sgd/trajectories.csv");
  ASSERT_EQ(run_cli(base, &log), 0) << log;
  EXPECT_EQ(log.find("tried lr"), std::string::npos) << log;
  EXPECT_NE(log.find("reusing the learning rate"), std::string::npos) << log;
  EXPECT_NE(log.find("reused 3 finished run(s), computed 0"), std::string::npos) << log;
  EXPECT_EQ(ngtest::read_file(out + "/runs/quick_cnn/escapes/sgd/trajectories.csv"), before);
  // An unknown escape option is refused before anything is trained.
  EXPECT_EQ(
      run_cli("reproduce fig6 --scale quick --set escape.bogus=1 --out " + ngtest::quote(out + "x"),
              &log),
      2);
  EXPECT_NE(log.find("--bogus"), std::string::npos) << log;
  EXPECT_FALSE(fs::exists(out + "x/runs"));
}
