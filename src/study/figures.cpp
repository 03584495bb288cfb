// The figure recipes and the pipeline that runs one: train (or reuse, or resume) each run, its
// spectra, its escape sweeps, then the plot.
#include "src/study/figures.h"

#include <fmt/format.h>
#include <sys/wait.h>

#include <chrono>
#include <cstdlib>
#include <filesystem>

#include "src/core/config.h"
#include "src/core/error.h"
#include "src/io/json.h"
#include "src/io/rundir.h"
#include "src/training/train.h"

namespace fs = std::filesystem;

namespace ng {
namespace {

using Clock = std::chrono::steady_clock;

SpectrumRequest spectrum_job(std::function<void(SpectrumOptions&)> set) {
  SpectrumRequest r;
  set(r.options);
  return r;
}

// Figure 5: the paper's top-20 (Appendix A: b = 2k per-sample gradients) spectra of G and Sigma
// at theta*, in float64: the defaults.
const SpectrumRequest kFig5 = SpectrumRequest{};

// Figure 2b: small networks at theta ~ N(0, I), computed directly (exact) over all samples, in
// float32 (ten times faster than float64 for convolutions on the CPU; residuals stay < 1e-3).
const SpectrumRequest kFig2b = spectrum_job([](SpectrumOptions& o) {
  o.matrices = {MatrixKind::G};
  o.theta = "random";
  o.estimator = Estimator::Exact;
  o.dtype = at::kFloat;
  o.probes = 20;
});

// Figure 6: directions u_1..u_20 of G at theta*. Quick: exact over all 1,000 samples in float32
// (the b = 2k estimate overstates lambda_1 by up to 1.7x at this scale, which misplaces GD's
// stability edge); paper: exact over a seeded subset of 5,000 training images.
const SpectrumRequest kFig6Quick = spectrum_job([](SpectrumOptions& o) {
  o.matrices = {MatrixKind::G};
  o.estimator = Estimator::Exact;
  o.dtype = at::kFloat;
  o.probes = 20;
});
const SpectrumRequest kFig6Paper = spectrum_job([](SpectrumOptions& o) {
  o = kFig6Quick.options;
  o.samples = 5000;
});

// Figure 6's sweeps: learning rates tuned to escape (lr auto); each run ends at its escape, the
// first point whose loss exceeds 100 L(theta*) (past that the loss soon reaches O(1) and both
// optimizers are far outside the quadratic region the theory describes); 50 SGD runs (the
// default) as in the paper. The paper scale evaluates the loss on 5,000 images and takes GD's
// gradient on 10,000, since a full pass over 50,000 images at every step of every probe would
// take hours.
EscapeRequest fig6_escape(Optimizer optimizer, int64_t steps, int64_t log_every, bool paper) {
  EscapeRequest r;
  EscapeOptions& o = r.options;
  o.optimizer = optimizer;
  o.steps = steps;
  o.log_every = log_every;
  o.ks = {1, 5, 10, 20};
  r.ks_given = true;
  o.escape_factor = 100;
  o.stop_at_escape = true;
  if (paper) {
    o.eval_samples = 5000;
    o.gd_samples = 10000;
  }
  return r;
}

FigureRun fig6_run(const std::string& experiment, const std::string& label, bool paper) {
  const auto gd = Optimizer::Gd, sgd = Optimizer::Sgd;
  return {experiment,
          label,
          {paper ? kFig6Paper : kFig6Quick},
          {fig6_escape(gd, paper ? 300 : 100, 1, paper),
           fig6_escape(sgd, paper ? 1000 : 150, paper ? 5 : 2, paper)}};
}

// The project root: $NOISEGEOM_ROOT, else the directory above the binary (build*/noisegeom),
// else the current directory; the first that holds `rel`.
std::string project_file(const std::string& rel) {
  std::vector<fs::path> roots;
  if (const char* r = std::getenv("NOISEGEOM_ROOT")) roots.emplace_back(r);
  std::error_code ec;
  const fs::path exe = fs::read_symlink("/proc/self/exe", ec);
  if (!ec) {
    roots.push_back(exe.parent_path().parent_path());
    roots.push_back(exe.parent_path());
  }
  roots.push_back(fs::current_path());
  for (const auto& r : roots)
    if (fs::exists(r / rel)) return (r / rel).string();
  fail(
      "{}: not found next to the noisegeom binary or in the current directory; set "
      "NOISEGEOM_ROOT to the noisegeom checkout",
      rel);
}

std::string shell_quote(const std::string& s) {
  std::string out = "'";
  for (char c : s) out += c == '\'' ? std::string("'\\''") : std::string(1, c);
  return out + "'";
}

std::string manifest_status(const std::string& run_dir) {
  const std::string m = RunPaths{run_dir}.file(run_files::kManifest);
  return fs::exists(m) ? read_json(m).value("status", "") : "";
}

// Trains one run of the figure, resuming or reusing what is there. Returns the exit code to stop
// with (diverged, interrupted), or 0 to go on; `note` says what happened.
int ensure_trained(const std::string& exp, const std::string& run_dir, const FigureSettings& s,
                   bool needs_minimum, std::string* note) {
  TrainOptions t;
  t.config_path = exp;
  t.overrides = s.train_overrides;
  t.out_dir = run_dir;
  t.data_dir = s.ctx.data_dir;
  t.quiet = s.ctx.quiet;
  const RunPaths paths{run_dir};
  if (fs::exists(paths.file(run_files::kConfig))) {
    // The same check as train --resume, made here so that a finished run is never touched.
    const Config want = Config::load(exp, s.train_overrides);
    require_same_config(run_dir, want, run_name(want, exp),
                        "the run there was made with a different config",
                        "use another --out or the same --set values");
    const std::string status = manifest_status(run_dir);
    if ((status == "converged" || status == "max_steps") &&
        fs::exists(paths.file(run_files::kTheta))) {
      *note = "reused (" + status + ")";
      if (status == "max_steps" && needs_minimum)
        fmt::print(stderr,
                   "noisegeom reproduce: warning: {} stopped at its step cap above the target "
                   "loss; its spectrum is not at a minimum\n",
                   run_dir);
      return 0;
    }
    if (status == "diverged")
      fail("{}: this run diverged; lower train.lr (--set train.lr=...) with another --out",
           paths.file(run_files::kManifest));
    t.resume = true;
  }
  const TrainResult r = train(t);
  if (r.status == "diverged") {
    fmt::print(stderr, "noisegeom: error: {}\n", r.message);
    return kExitDiverged;
  }
  if (r.status == "interrupted") return kExitInterrupted;
  if (r.status == "max_steps" && needs_minimum)
    fmt::print(stderr, "noisegeom reproduce: warning: {}: {}; its spectrum is not at a minimum\n",
               run_dir, r.message);
  *note = (t.resume ? "resumed, " : "trained, ") + r.status;
  return 0;
}

// experiments/plot_FIGURE.py --out PNG --scale S --spectrum NAME [--escapes A,B] LABEL=RUN...
void plot(const Figure& fig, const std::vector<FigureRun>& runs, const FigureSettings& s,
          const std::string& png) {
  const std::string script = project_file(fig.plot_script);
  const char* py = std::getenv("NOISEGEOM_PYTHON");
  const std::string python = py && *py                        ? py
                             : fs::exists("/usr/bin/python3") ? "/usr/bin/python3"
                                                              : "python3";
  std::string cmd = shell_quote(python) + " " + shell_quote(script) + " --out " + shell_quote(png) +
                    " --scale " + s.scale;
  const FigureRun& first = runs.front();
  if (!first.spectra.empty()) cmd += " --spectrum " + shell_quote(first.spectra.front().name);
  std::string escapes;
  for (const auto& e : first.escapes) escapes += (escapes.empty() ? "" : ",") + e.sweep_name();
  if (!escapes.empty()) cmd += " --escapes " + shell_quote(escapes);
  for (const auto& r : runs)
    cmd += " " + shell_quote(r.label + "=" + (fs::path(s.out) / "runs" / r.experiment).string());
  const int st = std::system(cmd.c_str());
  if (st != 0)
    fail(
        "{}: plotting failed (exit status {}); the runs and analyses are kept: fix the plot (it "
        "needs python3-matplotlib) and run reproduce again",
        script, WIFEXITED(st) ? WEXITSTATUS(st) : st);
}

}  // namespace

const std::vector<FigureRun>& Figure::runs(const std::string& scale) const {
  if (scale != "quick" && scale != "paper")
    fail("--scale: expected quick or paper, got '{}'", scale.empty() ? "(missing)" : scale);
  return scale == "quick" ? quick : paper;
}

const std::vector<Figure>& figures() {
  static const std::vector<Figure> f = {
      {"fig5",
       "alignment of alpha_k and lambda_k at theta* for a Fixup ResNet and a VGG on CIFAR-10 "
       "{0,1} (paper: ResNet-38 and VGG-13; quick: small ones on 1,000 images)",
       "experiments/plot_fig5.py",
       {{"quick_fig5_resnet", "Fixup ResNet-8 (width 16)", {kFig5}, {}},
        {"quick_fig5_vgg", "VGG-11 (width 16)", {kFig5}, {}}},
       {{"fig5_resnet38", "ResNet-38", {kFig5}, {}}, {"fig5_vgg13", "VGG-13", {kFig5}, {}}}},
      {"fig2b",
       "alpha_k against lambda_k for the 4-layer CNN and FNN at theta ~ N(0, I)",
       "experiments/plot_fig2b.py",
       {{"quick_fig2b_cnn", "CNN", {kFig2b}, {}, false},
        {"quick_fig2b_fnn", "FNN", {kFig2b}, {}, false}},
       {{"fig2b_cnn", "CNN", {kFig2b}, {}, false}, {"fig2b_fnn", "FNN", {kFig2b}, {}, false}}},
      {"fig6",
       "escapes of SGD (50 runs) and GD from theta*: p_{t,k} against r_{t,k}, k = 1, 5, 10, 20 "
       "(paper: VGG-19 and ResNet-110 on CIFAR-10; quick: the 4-layer CNN and FNN on 1,000 "
       "images of labels {0,1})",
       "experiments/plot_fig6.py",
       {fig6_run("quick_cnn", "CNN", false), fig6_run("quick_fig6_fnn", "FNN", false)},
       {fig6_run("fig6_vgg19", "VGG-19", true), fig6_run("fig6_resnet110", "ResNet-110", true)}},
  };
  return f;
}

const Figure& find_figure(const std::string& name) {
  std::string known;
  for (const auto& f : figures()) {
    if (f.name == name) return f;
    known += (known.empty() ? "" : ", ") + f.name;
  }
  fail("reproduce: unknown figure '{}' (known: {})", name, known);
}

void validate_figure(const Figure& fig, const std::vector<FigureRun>& runs,
                     const FigureSettings& s) {
  project_file(fig.plot_script);
  for (const auto& r : runs) {
    Config::load(project_file("experiments/" + r.experiment + ".yaml"), s.train_overrides);
    for (const auto& j : r.spectra) validate(j);
    for (const auto& j : r.escapes) validate(j);
  }
}

FigureOutcome reproduce_figure(const Figure& fig, const std::vector<FigureRun>& runs,
                               const FigureSettings& s) {
  validate_figure(fig, runs, s);
  FigureOutcome out;
  auto progress = [&](size_t i, const std::string& what) {
    if (!s.ctx.quiet)
      fmt::print(stderr, "noisegeom reproduce: {} ({}) [{}/{}] {}: {}\n", fig.name, s.scale, i + 1,
                 runs.size(), runs[i].experiment, what);
  };
  auto line = [&](const std::string& who, const std::string& what, Clock::time_point t,
                  const std::string& note) {
    out.report.push_back(
        fmt::format("{:<22} {:<16} {:>8.1f}s  {}", who, what, seconds_since(t), note));
  };
  for (size_t i = 0; i < runs.size(); ++i) {
    const FigureRun& r = runs[i];
    const std::string run_dir = (fs::path(s.out) / "runs" / r.experiment).string();
    progress(i, "training");
    auto t = Clock::now();
    std::string note;
    out.exit_code = ensure_trained(project_file("experiments/" + r.experiment + ".yaml"), run_dir,
                                   s, r.needs_minimum, &note);
    if (out.exit_code != 0) return out;
    line(r.experiment, "train", t, note);
    for (const auto& j : r.spectra) {
      progress(i, "spectrum " + j.name);
      t = Clock::now();
      const bool reused = ensure_spectrum(run_dir, j, s.ctx, true).reused;
      line(r.experiment, "spectrum " + j.name, t, reused ? "reused" : "computed");
    }
    for (const auto& j : r.escapes) {
      progress(i, "escape " + j.sweep_name());
      t = Clock::now();
      const EscapeOutcome e = run_escape_study(run_dir, j, s.ctx);
      line(r.experiment, "escape " + j.sweep_name(), t,
           fmt::format("{} computed, {} reused", e.computed, e.reused));
    }
  }
  const fs::path png = fs::path(s.out) / "figures" / (fig.name + ".png");
  fs::create_directories(png.parent_path());
  const auto t = Clock::now();
  plot(fig, runs, s, png.string());
  line("figure", "plot", t, png.string());
  out.png = png.string();
  return out;
}

}  // namespace ng
