// reproduce: one paper figure end to end (train -> spectra -> escapes -> plot), resumable. The
// figures are typed recipes (src/study/figures.h); this file only reads the command line: the
// scale, the output folder, and --set overrides for training configs or the recipe's jobs.
#include <fmt/format.h>

#include <chrono>
#include <memory>

#include "src/cli/commands.h"
#include "src/cli/options.h"
#include "src/core/stop.h"
#include "src/io/rundir.h"
#include "src/study/figures.h"

namespace ng {
namespace {

struct ReproduceArgs {
  std::string figure;
  std::vector<std::string> sets;
  FigureSettings settings;
};

int run(ReproduceArgs& a) {
  const auto t0 = std::chrono::steady_clock::now();
  const Figure& fig = find_figure(a.figure);
  std::vector<FigureRun> runs = fig.runs(a.settings.scale);
  // --set spectrum.OPTION=value and escape.OPTION=value go to every job of that kind, parsed by
  // the analyses' own option definitions; anything else is a training config key.
  std::vector<std::string> spectrum_sets, escape_sets;
  for (const auto& s : a.sets) {
    if (s.rfind("spectrum.", 0) == 0)
      spectrum_sets.push_back(s.substr(9));
    else if (s.rfind("escape.", 0) == 0)
      escape_sets.push_back(s.substr(7));
    else
      a.settings.train_overrides.push_back(s);
  }
  for (auto& r : runs) {
    for (auto& j : r.spectra) apply_spectrum_overrides(j, spectrum_sets);
    for (auto& j : r.escapes) apply_escape_overrides(j, escape_sets);
  }
  const StopOnSignals stop_on_signals;
  const FigureOutcome out = reproduce_figure(fig, runs, a.settings);
  if (out.exit_code == kExitBudgetSpent || out.exit_code == kExitInterrupted) {
    fmt::print(
        "noisegeom reproduce {} --scale {}: {} after {}; finished work is kept and the same "
        "command continues (exit status {})\n",
        fig.name, a.settings.scale, stop_description(), format_duration(seconds_since(t0)),
        out.exit_code);
    for (const auto& line : out.report) fmt::print("  {}\n", line);
    return out.exit_code;
  }
  if (out.exit_code != 0) return out.exit_code;
  fmt::print("noisegeom reproduce {} --scale {}: {} in {:.1f}s\n", fig.name, a.settings.scale,
             out.png, seconds_since(t0));
  for (const auto& line : out.report) fmt::print("  {}\n", line);
  if (!out.summary_file.empty()) fmt::print("{}:\n", out.summary_file);
  for (const auto& line : out.summary.lines) fmt::print("  {}\n", line);
  return 0;
}

}  // namespace

Command add_reproduce_command(CLI::App& app) {
  auto* sub = app.add_subcommand("reproduce", "train, analyse and plot one of the paper's figures");
  std::string figures_text;
  for (const auto& f : figures()) figures_text += fmt::format("\n  {}: {}", f.name, f.summary);
  sub->footer(wrap(
      "Runs the whole pipeline of a figure: trains its models (experiments/*.yaml) into "
      "OUT/runs/<experiment>, computes its named spectra and escape sweeps there, and plots "
      "OUT/figures/FIGURE.png with experiments/plot_FIGURE.py (matplotlib), which reads only the "
      "run directories' CSV and JSON files. Resumable: a finished training run, a spectrum with "
      "the same settings, a learning-rate search and finished escape runs are reused; an "
      "interrupted training run is resumed. With --budget, or on Ctrl-C, the running training or "
      "escape sweep checkpoints (a spectrum finishes first) and the command exits with status "
      "75 (130 for Ctrl-C); the same command continues.\n\nFigures:" +
      figures_text));
  auto a = std::make_shared<ReproduceArgs>();
  sub->add_option("FIGURE", a->figure, "the figure to reproduce")->required();
  sub->add_option("--scale", a->settings.scale,
                  "quick (CPU, minutes) or paper (Appendix A settings; wants a GPU)")
      ->required()
      ->type_name("quick|paper");
  sub->add_option("--out", a->settings.out, "where runs/ and figures/ go")->capture_default_str();
  sub->add_option("--set", a->sets,
                  "override a training config key in every run of the figure; spectrum.OPTION="
                  "value and escape.OPTION=value set an option of those jobs (e.g. spectrum.k=10, "
                  "escape.runs=20)")
      ->type_name("KEY=VALUE")
      ->allow_extra_args(false);
  add_context_options(*sub, a->settings.ctx);
  add_budget_option(*sub);
  return {sub, [a] { return run(*a); }};
}

}  // namespace ng
