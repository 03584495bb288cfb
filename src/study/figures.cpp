// The figure recipes and the pipeline that runs one: train (or reuse, or resume) each run, its
// spectra, its escape sweeps, then the plot.
#include "src/study/figures.h"

#include <fmt/format.h>
#include <sys/wait.h>

#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <map>

#include "src/core/config.h"
#include "src/core/error.h"
#include "src/core/stop.h"
#include "src/dist/dist.h"
#include "src/io/json.h"
#include "src/io/rundir.h"
#include "src/study/figure_recipes.h"
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
  return figure_run(experiment, label, {paper ? kFig6Paper : kFig6Quick},
                    {fig6_escape(gd, paper ? 300 : 100, 1, paper),
                     fig6_escape(sgd, paper ? 1000 : 150, paper ? 5 : 2, paper)});
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
int ensure_trained(const std::string& exp, const std::string& run_dir,
                   const std::vector<std::string>& overrides, const FigureSettings& s,
                   bool needs_minimum, std::string* note) {
  TrainOptions t;
  t.config_path = exp;
  t.overrides = overrides;
  t.out_dir = run_dir;
  t.data_dir = s.ctx.data_dir;
  t.quiet = s.ctx.quiet;
  const RunPaths paths{run_dir};
  // Rank 0's run directory decides for every rank: "" (a fresh run), "resume" or the status of
  // a finished run to reuse.
  const std::string found = decided_by_root([&]() -> std::string {
    if (!fs::exists(paths.file(run_files::kConfig))) return "";
    // The same check as train --resume, made here so that a finished run is never touched.
    const Config want = Config::load(exp, overrides);
    require_same_config(run_dir, want, run_name(want, exp),
                        "the run there was made with a different config",
                        "use another --out or the same --set values");
    const std::string status = manifest_status(run_dir);
    if ((status == "converged" || status == "max_steps") &&
        fs::exists(paths.file(run_files::kTheta)))
      return status;
    if (status == "diverged")
      fail("{}: this run diverged; lower train.lr (--set train.lr=...) with another --out",
           paths.file(run_files::kManifest));
    return "resume";
  });
  if (found == "converged" || found == "max_steps") {
    *note = "reused (" + found + ")";
    if (found == "max_steps" && needs_minimum)
      fmt::print(stderr,
                 "noisegeom reproduce: warning: {} stopped at its step cap above the target "
                 "loss; its spectrum is not at a minimum\n",
                 run_dir);
    return 0;
  }
  t.resume = found == "resume";
  const TrainResult r = train(t);
  if (r.status == "diverged") {
    fmt::print(stderr, "noisegeom: error: {}\n", r.message);
    return kExitDiverged;
  }
  if (r.status == "interrupted") return kExitInterrupted;
  if (r.status == "budget_spent") return kExitBudgetSpent;
  if (r.status == "max_steps" && needs_minimum)
    fmt::print(stderr, "noisegeom reproduce: warning: {}: {}; its spectrum is not at a minimum\n",
               run_dir, r.message);
  *note = (t.resume ? "resumed, " : "trained, ") + r.status;
  return 0;
}

// experiments/plot_FIGURE.py --out PNG --scale S [--summary JSON] [--spectrum NAME]
// [--escapes A,B] LABEL=RUN...
void plot(const Figure& fig, const std::vector<FigureRun>& runs, const FigureSettings& s,
          const std::string& png, const std::string& summary_file) {
  const std::string script = project_file(fig.plot_script);
  const char* py = std::getenv("NOISEGEOM_PYTHON");
  const std::string python = py && *py                        ? py
                             : fs::exists("/usr/bin/python3") ? "/usr/bin/python3"
                                                              : "python3";
  std::string cmd = shell_quote(python) + " " + shell_quote(script) + " --out " + shell_quote(png) +
                    " --scale " + s.scale;
  if (!summary_file.empty()) cmd += " --summary " + shell_quote(summary_file);
  const FigureRun& first = runs.front();
  if (!first.spectra.empty()) cmd += " --spectrum " + shell_quote(first.spectra.front().name);
  std::string escapes;
  for (const auto& e : first.escapes) escapes += (escapes.empty() ? "" : ",") + e.sweep_name();
  if (!escapes.empty()) cmd += " --escapes " + shell_quote(escapes);
  for (const auto& r : runs) cmd += " " + shell_quote(r.label + "=" + r.dir(s.out));
  const int st = std::system(cmd.c_str());
  if (st != 0)
    fail(
        "{}: plotting failed (exit status {}); the runs and analyses are kept: fix the plot (it "
        "needs python3-matplotlib) and run reproduce again",
        script, WIFEXITED(st) ? WEXITSTATUS(st) : st);
}

// The user's --set values, then the run's own (which must win: they are what the figure sweeps).
std::vector<std::string> run_overrides(const FigureRun& r, const FigureSettings& s) {
  std::vector<std::string> all = s.train_overrides;
  all.insert(all.end(), r.overrides.begin(), r.overrides.end());
  return all;
}

// One report line per (experiment, job) however many variants ran it: Figure 1 has hundreds.
class Report {
 public:
  void add(const std::string& who, const std::string& what, double seconds,
           const std::string& note) {
    const std::string key = who + "\n" + what;
    auto it = index_.find(key);
    if (it == index_.end()) {
      it = index_.emplace(key, rows_.size()).first;
      Row row;
      row.who = who;
      row.what = what;
      rows_.push_back(row);
    }
    Row& row = rows_[it->second];
    ++row.count;
    row.seconds += seconds;
    ++row.notes[note];
  }
  std::vector<std::string> lines() const {
    std::vector<std::string> out;
    for (const auto& r : rows_) {
      std::string notes;
      for (const auto& [note, count] : r.notes)
        notes +=
            (notes.empty() ? "" : ", ") + (r.count > 1 ? fmt::format("{}x ", count) : "") + note;
      const std::string what = r.count > 1 ? fmt::format("{} x{}", r.what, r.count) : r.what;
      out.push_back(fmt::format("{:<22} {:<16} {:>8.1f}s  {}", r.who, what, r.seconds, notes));
    }
    return out;
  }

 private:
  struct Row {
    std::string who, what;
    int64_t count = 0;
    double seconds = 0;
    std::map<std::string, int64_t> notes;
  };
  std::vector<Row> rows_;
  std::map<std::string, size_t> index_;
};

}  // namespace

std::string FigureRun::dir(const std::string& out) const {
  fs::path d = fs::path(out) / "runs" / experiment;
  if (!variant.empty()) d /= variant;
  return d.string();
}

const std::vector<FigureRun>& Figure::runs(const std::string& scale) const {
  if (scale != "quick" && scale != "paper")
    fail("--scale: expected quick or paper, got '{}'", scale.empty() ? "(missing)" : scale);
  return scale == "quick" ? quick : paper;
}

FigureRun figure_run(const std::string& experiment, const std::string& label,
                     std::vector<SpectrumRequest> spectra, std::vector<EscapeRequest> escapes,
                     bool needs_minimum) {
  FigureRun r;
  r.experiment = experiment;
  r.label = label;
  r.spectra = std::move(spectra);
  r.escapes = std::move(escapes);
  r.needs_minimum = needs_minimum;
  return r;
}

Figure figure5() {
  Figure f;
  f.name = "fig5";
  f.summary =
      "alignment of alpha_k and lambda_k at theta* for a Fixup ResNet and a VGG on CIFAR-10 "
      "{0,1} (paper: ResNet-38 and VGG-13; quick: small ones on 1,000 images)";
  f.plot_script = "experiments/plot_fig5.py";
  f.quick = {figure_run("quick_fig5_resnet", "Fixup ResNet-8 (width 16)", {kFig5}),
             figure_run("quick_fig5_vgg", "VGG-11 (width 16)", {kFig5})};
  f.paper = {figure_run("fig5_resnet38", "ResNet-38", {kFig5}),
             figure_run("fig5_vgg13", "VGG-13", {kFig5})};
  return f;
}

Figure figure2b() {
  Figure f;
  f.name = "fig2b";
  f.summary = "alpha_k against lambda_k for the 4-layer CNN and FNN at theta ~ N(0, I)";
  f.plot_script = "experiments/plot_fig2b.py";
  f.quick = {figure_run("quick_fig2b_cnn", "CNN", {kFig2b}, {}, false),
             figure_run("quick_fig2b_fnn", "FNN", {kFig2b}, {}, false)};
  f.paper = {figure_run("fig2b_cnn", "CNN", {kFig2b}, {}, false),
             figure_run("fig2b_fnn", "FNN", {kFig2b}, {}, false)};
  return f;
}

Figure figure6() {
  Figure f;
  f.name = "fig6";
  f.summary =
      "escapes of SGD (50 runs) and GD from theta*: p_{t,k} against r_{t,k}, k = 1, 5, 10, 20 "
      "(paper: VGG-19 and ResNet-110 on CIFAR-10; quick: the 4-layer CNN and FNN on 1,000 "
      "images of labels {0,1})";
  f.plot_script = "experiments/plot_fig6.py";
  f.quick = {fig6_run("quick_cnn", "CNN", false), fig6_run("quick_fig6_fnn", "FNN", false)};
  f.paper = {fig6_run("fig6_vgg19", "VGG-19", true),
             fig6_run("fig6_resnet110", "ResNet-110", true)};
  return f;
}

const std::vector<Figure>& figures() {
  // In the paper's order.
  static const std::vector<Figure> f = {figure1(), figure2a(), figure2b(), figure3(),
                                        figure4(), figure5(),  figure6(),  figureA()};
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
    // The plot script takes LABEL=RUN_DIR and splits at the first '='.
    if (r.label.find('=') != std::string::npos)
      fail("{}: run label '{}' must not contain '='", fig.name, r.label);
    Config::load(project_file("experiments/" + r.experiment + ".yaml"), run_overrides(r, s));
    for (const auto& j : r.spectra) validate(j);
    for (const auto& j : r.escapes) validate(j);
  }
}

FigureOutcome reproduce_figure(const Figure& fig, const std::vector<FigureRun>& runs,
                               const FigureSettings& s) {
  validate_figure(fig, runs, s);
  FigureOutcome out;
  Report report;
  auto progress = [&](size_t i, const std::string& what) {
    if (!s.ctx.quiet)
      fmt::print(stderr, "noisegeom reproduce: {} ({}) [{}/{}] {}: {}\n", fig.name, s.scale, i + 1,
                 runs.size(), runs[i].dir(s.out), what);
  };
  // --budget or a signal: what is finished stays, the report says what that is, and the same
  // command continues. Jobs that cannot stop midway (spectra) are only not started.
  auto stopped = [&] {
    const StopReason why = stop_requested();
    if (why == StopReason::None) return false;
    out.exit_code = why == StopReason::Budget ? kExitBudgetSpent : kExitInterrupted;
    out.report = report.lines();
    return true;
  };
  for (size_t i = 0; i < runs.size(); ++i) {
    const FigureRun& r = runs[i];
    const std::string run_dir = r.dir(s.out);
    if (stopped()) return out;
    progress(i, "training");
    auto t = Clock::now();
    std::string note;
    out.exit_code = ensure_trained(project_file("experiments/" + r.experiment + ".yaml"), run_dir,
                                   run_overrides(r, s), s, r.needs_minimum, &note);
    if (out.exit_code != 0) {
      out.report = report.lines();
      return out;
    }
    report.add(r.experiment, "train", seconds_since(t), note);
    for (const auto& j : r.spectra) {
      if (stopped()) return out;
      progress(i, "spectrum " + j.name);
      t = Clock::now();
      const bool reused = ensure_spectrum(run_dir, j, s.ctx, true).reused;
      report.add(r.experiment, "spectrum " + j.name, seconds_since(t),
                 reused ? "reused" : "computed");
    }
    for (const auto& j : r.escapes) {
      if (stopped()) return out;
      progress(i, "escape " + j.sweep_name());
      t = Clock::now();
      const EscapeOutcome e = run_escape_study(run_dir, j, s.ctx);
      report.add(r.experiment, "escape " + j.sweep_name(), seconds_since(t),
                 fmt::format("{} runs computed, {} reused{}", e.computed, e.reused,
                             e.record.is_null() ? " (stopped)" : ""));
      if (e.record.is_null() && stopped()) return out;
    }
  }
  // The summary and the plot read rank 0's files: under a launcher rank 0 makes them alone, as
  // one process, and the other ranks are done.
  if (!dist().is_root()) return out;
  const SoloScope solo;
  const fs::path figures_dir = fs::path(s.out) / "figures";
  fs::create_directories(figures_dir);
  if (fig.summarize) {
    const auto t = Clock::now();
    out.summary = fig.summarize(runs, s);
    out.summary_file = (figures_dir / (fig.name + ".json")).string();
    write_json(out.summary_file, out.summary.numbers);
    report.add("figure", "summary", seconds_since(t), out.summary_file);
  }
  const fs::path png = figures_dir / (fig.name + ".png");
  const auto t = Clock::now();
  plot(fig, runs, s, png.string(), out.summary_file);
  report.add("figure", "plot", seconds_since(t), png.string());
  out.png = png.string();
  out.report = report.lines();
  return out;
}

}  // namespace ng
