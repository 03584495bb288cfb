// reproduce: one paper figure end to end (train -> jobs such as spectrum -> plot), resumable.
//
// Every figure is one entry of kFigures below: which experiments to train at each scale, which
// jobs to run on each trained run directory, and which script in experiments/ draws it. Adding a
// figure (Figure 6's escapes, say) is one more entry there, plus, for a new kind of job, one
// entry in job_kinds() that runs it and says when its output can be reused.
#include <fmt/format.h>
#include <fmt/ranges.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <functional>
#include <map>

#include "src/cli/args.h"
#include "src/cli/commands.h"
#include "src/core/config.h"
#include "src/core/error.h"
#include "src/io/files.h"
#include "src/io/rundir.h"
#include "src/spectrum/spectrum.h"
#include "src/training/train.h"

namespace fs = std::filesystem;

namespace ng {
namespace {

using Clock = std::chrono::steady_clock;

// One step applied to a trained run directory.
struct Job {
  std::string kind;               // a key of job_kinds()
  std::vector<std::string> args;  // that command's options, as on its command line
};

struct FigureRun {
  std::string experiment;  // experiments/<experiment>.yaml; the run goes to OUT/runs/<experiment>
  std::string label;       // legend or panel title in the plot
  std::vector<Job> jobs;
  // The jobs need theta* (a run that stops at its step cap is worth a warning); Figure 2b's
  // runs are evaluated at random theta and train one step only to set up their run directory.
  bool needs_minimum = true;
};

struct Figure {
  std::string name;
  std::string plot_script;  // relative to the project root
  std::vector<FigureRun> quick, paper;
};

// The paper's top-20 (Appendix A: b = 2k per-sample gradients) spectra of G and Sigma at theta*.
const std::vector<std::string> kFig5Spectrum = {
    "--k", "20", "--matrices", "G,Sigma", "--estimator", "per-sample", "--dtype", "float64"};
// Figure 2b: small networks at theta ~ N(0, I), computed directly (exact) over all samples, in
// float32 (ten times faster than float64 for convolutions on the CPU; residuals stay < 1e-3).
const std::vector<std::string> kFig2bSpectrum = {"--k",     "20",      "--matrices",  "G",
                                                 "--theta", "random",  "--estimator", "exact",
                                                 "--dtype", "float32", "--probes",    "20"};

// Figure 6: directions u_1..u_20 of G at theta*. Quick: exact over all 1,000 samples in float32
// (the b = 2k estimate overstates lambda_1 by up to 1.7x at this scale, which misplaces GD's
// stability edge); paper: exact over a seeded subset of 5,000 training images.
const std::vector<std::string> kFig6QuickSpectrum = {
    "--k", "20", "--matrices", "G", "--estimator", "exact", "--dtype", "float32", "--probes", "20"};
const std::vector<std::string> kFig6PaperSpectrum = {"--k",         "20",      "--matrices", "G",
                                                     "--estimator", "exact",   "--samples",  "5000",
                                                     "--dtype",     "float32", "--probes",   "20"};
// Learning rates tuned to escape (--lr auto); each run ends at its escape, the first point whose
// loss exceeds 100 L(theta*) (past that the loss soon reaches O(1) and both optimizers are far
// outside the quadratic region the theory describes). 50 SGD runs as in the paper. `extra`: the
// paper scale evaluates the loss on 5,000 images and takes GD's gradient on 10,000, since a
// full pass over 50,000 images at every step of every probe would take hours.
std::vector<std::string> fig6_escape(const std::string& optimizer, const std::string& steps,
                                     const std::string& log_every,
                                     const std::vector<std::string>& extra = {}) {
  std::vector<std::string> a = {
      "--optimizer", optimizer,   "--steps",         steps, "--log-every",     log_every,
      "--ks",        "1,5,10,20", "--escape-factor", "100", "--stop-at-escape"};
  if (optimizer == "sgd") a.insert(a.end(), {"--runs", "50"});
  a.insert(a.end(), extra.begin(), extra.end());
  return a;
}
const std::vector<std::string> kFig6PaperSubsets = {"--eval-samples", "5000", "--gd-samples",
                                                    "10000"};

const std::vector<Figure>& figures() {
  static const std::vector<Figure> f = {
      {"fig5",
       "experiments/plot_fig5.py",
       {{"quick_fig5_resnet", "Fixup ResNet-8 (width 16)", {{"spectrum", kFig5Spectrum}}},
        {"quick_fig5_vgg", "VGG-11 (width 16)", {{"spectrum", kFig5Spectrum}}}},
       {{"fig5_resnet38", "ResNet-38", {{"spectrum", kFig5Spectrum}}},
        {"fig5_vgg13", "VGG-13", {{"spectrum", kFig5Spectrum}}}}},
      {"fig2b",
       "experiments/plot_fig2b.py",
       {{"quick_fig2b_cnn", "CNN", {{"spectrum", kFig2bSpectrum}}, false},
        {"quick_fig2b_fnn", "FNN", {{"spectrum", kFig2bSpectrum}}, false}},
       {{"fig2b_cnn", "CNN", {{"spectrum", kFig2bSpectrum}}, false},
        {"fig2b_fnn", "FNN", {{"spectrum", kFig2bSpectrum}}, false}}},
      {"fig6",
       "experiments/plot_fig6.py",
       {{"quick_cnn",
         "CNN",
         {{"spectrum", kFig6QuickSpectrum},
          {"escape", fig6_escape("gd", "100", "1")},
          {"escape", fig6_escape("sgd", "150", "2")}}},
        {"quick_fig6_fnn",
         "FNN",
         {{"spectrum", kFig6QuickSpectrum},
          {"escape", fig6_escape("gd", "100", "1")},
          {"escape", fig6_escape("sgd", "150", "2")}}}},
       {{"fig6_vgg19",
         "VGG-19",
         {{"spectrum", kFig6PaperSpectrum},
          {"escape", fig6_escape("gd", "300", "1", kFig6PaperSubsets)},
          {"escape", fig6_escape("sgd", "1000", "5", kFig6PaperSubsets)}}},
        {"fig6_resnet110",
         "ResNet-110",
         {{"spectrum", kFig6PaperSpectrum},
          {"escape", fig6_escape("gd", "300", "1", kFig6PaperSubsets)},
          {"escape", fig6_escape("sgd", "1000", "5", kFig6PaperSubsets)}}}}},
  };
  return f;
}

struct Context {
  std::string data_dir;
  bool quiet = false;
  // --set KIND.option=value: options for every job of that kind ("k" -> "--k").
  std::map<std::string, std::vector<std::pair<std::string, std::string>>> job_overrides;
};

// Replaces (or appends) `--name value` in a command line.
void set_option(std::vector<std::string>& args, const std::string& name, const std::string& value) {
  for (size_t k = 0; k + 1 < args.size(); ++k)
    if (args[k] == name) {
      args[k + 1] = value;
      return;
    }
  args.push_back(name);
  args.push_back(value);
}

struct JobKind {
  // Runs the job on `run_dir`, or reuses its output there when that is current; returns a short
  // note ("computed", "reused").
  std::function<std::string(const std::string& run_dir, std::vector<std::string> args,
                            const Context& ctx)>
      run;
};

// A job's command line: its figure's options, then --set KIND.option=value overrides, the data
// directory and --quiet.
std::vector<std::string> job_args(const std::string& kind, std::vector<std::string> args,
                                  const Context& ctx) {
  auto it = ctx.job_overrides.find(kind);
  if (it != ctx.job_overrides.end())
    for (const auto& [k, v] : it->second) set_option(args, "--" + k, v);
  if (!ctx.data_dir.empty()) set_option(args, "--data-dir", ctx.data_dir);
  if (ctx.quiet) args.push_back("--quiet");
  return args;
}

const std::map<std::string, JobKind>& job_kinds() {
  static const std::map<std::string, JobKind> kinds = {
      {"spectrum",
       {[](const std::string& run_dir, std::vector<std::string> args, const Context& ctx) {
         const SpectrumOptions o = parse_spectrum_options(job_args("spectrum", args, ctx), nullptr);
         if (spectrum_is_current(run_dir, o)) return std::string("reused");
         run_spectrum(run_dir, o);
         return std::string("computed");
       }}},
      // The escape command reuses by itself what is current (finished runs, the searched
      // learning rate) and computes the rest.
      {"escape",
       {[](const std::string& run_dir, std::vector<std::string> args, const Context& ctx) {
         args = job_args("escape", args, ctx);
         args.insert(args.begin(), run_dir);
         const int rc = cmd_escape(args);
         if (rc != 0) fail("{}: escape exited with status {}", run_dir, rc);
         return std::string("done");
       }}},
  };
  return kinds;
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
  const fs::path m = fs::path(run_dir) / "manifest.json";
  if (!fs::exists(m)) return "";
  std::string status = Json::field(read_file(m.string()), "status");  // "converged" with quotes
  return status.size() >= 2 ? status.substr(1, status.size() - 2) : "";
}

// Trains one run of the figure, resuming or reusing what is there. Returns the exit code to stop
// with (diverged, interrupted), or 0 to go on; `note` says what happened.
int train_run(const std::string& exp, const std::string& run_dir,
              const std::vector<std::string>& overrides, const Context& ctx, bool needs_minimum,
              std::string* note) {
  TrainOptions t;
  t.config_path = exp;
  t.overrides = overrides;
  t.out_dir = run_dir;
  t.data_dir = ctx.data_dir;
  t.quiet = ctx.quiet;
  if (fs::exists(fs::path(run_dir) / "config.yaml")) {
    // The same check as train --resume, made here so that a finished run is never touched.
    const Config want = Config::load(exp, overrides);
    require_same_config(run_dir, want, run_name(want, exp),
                        "the run there was made with a different config",
                        "use another --out or the same --set values");
    const std::string status = manifest_status(run_dir);
    if ((status == "converged" || status == "max_steps") &&
        fs::exists(fs::path(run_dir) / "theta.pt")) {
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
           (fs::path(run_dir) / "manifest.json").string());
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

}  // namespace

int cmd_reproduce(const std::vector<std::string>& argv) {
  const auto t0 = Clock::now();
  const Args a =
      parse_args(argv, {{"--quiet"}, {"--scale", "--out", "--data-dir"}, {"--set"}}, "reproduce");
  if (a.positional.size() != 1) throw UsageError{"reproduce: expected exactly one FIGURE"};
  const Figure* fig = nullptr;
  std::string known;
  for (const auto& f : figures()) {
    if (f.name == a.positional[0]) fig = &f;
    known += (known.empty() ? "" : ", ") + f.name;
  }
  if (!fig) fail("reproduce: unknown figure '{}' (known: {})", a.positional[0], known);
  const std::string scale = a.get("--scale");
  if (scale != "quick" && scale != "paper")
    fail("--scale: expected quick or paper, got '{}'", scale.empty() ? "(missing)" : scale);
  const std::vector<FigureRun>& runs = scale == "quick" ? fig->quick : fig->paper;
  const fs::path out = a.get("--out", ".");

  Context ctx;
  ctx.data_dir = a.get("--data-dir");
  ctx.quiet = a.has("--quiet");
  std::vector<std::string> train_overrides;
  for (const auto& s : a.all("--set")) {
    const size_t eq = s.find('='), dot = s.find('.');
    if (eq != std::string::npos && dot != std::string::npos && dot < eq &&
        job_kinds().count(s.substr(0, dot))) {
      ctx.job_overrides[s.substr(0, dot)].emplace_back(s.substr(dot + 1, eq - dot - 1),
                                                       s.substr(eq + 1));
    } else {
      train_overrides.push_back(s);
    }
  }
  // Every input is checked before the first minute of training is spent.
  const std::string script = project_file(fig->plot_script);
  std::vector<std::string> exps;
  for (const auto& r : runs) {
    exps.push_back(project_file("experiments/" + r.experiment + ".yaml"));
    Config::load(exps.back(), train_overrides);
    for (const auto& j : r.jobs) {
      const std::vector<std::string> args = job_args(j.kind, j.args, ctx);
      if (j.kind == "spectrum") parse_spectrum_options(args, nullptr);
      if (j.kind == "escape") check_escape_args(args);
    }
  }

  std::vector<std::string> report;
  std::vector<std::string> plot_args;
  for (size_t i = 0; i < runs.size(); ++i) {
    const FigureRun& r = runs[i];
    const std::string run_dir = (out / "runs" / r.experiment).string();
    if (!ctx.quiet)
      fmt::print(stderr, "noisegeom reproduce: {} ({}) [{}/{}] {}: training\n", fig->name, scale,
                 i + 1, runs.size(), r.experiment);
    auto t = Clock::now();
    std::string note;
    const int rc = train_run(exps[i], run_dir, train_overrides, ctx, r.needs_minimum, &note);
    if (rc != 0) return rc;
    report.push_back(
        fmt::format("{:<22} train     {:>8.1f}s  {}", r.experiment, seconds_since(t), note));
    for (const auto& j : r.jobs) {
      if (!ctx.quiet)
        fmt::print(stderr, "noisegeom reproduce: {} ({}) [{}/{}] {}: {}\n", fig->name, scale, i + 1,
                   runs.size(), r.experiment, j.kind);
      t = Clock::now();
      const std::string how = job_kinds().at(j.kind).run(run_dir, j.args, ctx);
      report.push_back(
          fmt::format("{:<22} {:<9} {:>8.1f}s  {}", r.experiment, j.kind, seconds_since(t), how));
    }
    plot_args.push_back(shell_quote(r.label + "=" + run_dir));
  }

  const fs::path png = out / "figures" / (fig->name + ".png");
  fs::create_directories(png.parent_path());
  const char* py = std::getenv("NOISEGEOM_PYTHON");
  const std::string python = py && *py                        ? py
                             : fs::exists("/usr/bin/python3") ? "/usr/bin/python3"
                                                              : "python3";
  std::string cmd = shell_quote(python) + " " + shell_quote(script) + " --out " +
                    shell_quote(png.string()) + " --scale " + scale;
  for (const auto& p : plot_args) cmd += " " + p;
  auto t = Clock::now();
  const int st = std::system(cmd.c_str());
  if (st != 0)
    fail(
        "{}: plotting failed (exit status {}); the runs and spectra are kept: fix the plot (it "
        "needs python3-matplotlib) and run reproduce again",
        script, WIFEXITED(st) ? WEXITSTATUS(st) : st);
  report.push_back(fmt::format("{:<22} {:<9} {:>8.1f}s", "figure", "plot", seconds_since(t)));
  fmt::print("noisegeom reproduce {} --scale {}: {} in {:.1f}s\n", fig->name, scale, png.string(),
             seconds_since(t0));
  for (const auto& line : report) fmt::print("  {}\n", line);
  return 0;
}

}  // namespace ng
