// The paper's figures as recipes of typed jobs: which experiments to train at each scale, which
// named spectra and escape sweeps to compute on each trained run, and which script in
// experiments/ draws the figure from those files. reproduce_figure runs a recipe end to end,
// reusing what is finished and resuming what was interrupted.
#pragma once

#include <functional>
#include <string>
#include <vector>

#include "src/io/json.h"
#include "src/study/escape_study.h"
#include "src/study/spectrum_study.h"
#include "src/study/study.h"

namespace ng {

struct FigureRun {
  std::string experiment;  // experiments/<experiment>.yaml; the run goes to OUT/runs/<experiment>
  std::string label;       // legend or panel title in the plot
  std::vector<SpectrumRequest> spectra;
  std::vector<EscapeRequest> escapes;  // after the spectra
  // The jobs need theta* (a run that stops at its step cap is worth a warning); Figure 2b's
  // runs are evaluated at random theta and train one step only to set up their run directory.
  bool needs_minimum = true;
  // A figure that sweeps a setting (Figure 1's widths and seeds, Figure 3's spectra of G) trains
  // one experiment several times: `overrides` are this run's own --set values (applied after the
  // user's) and `variant` names its folder, OUT/runs/<experiment>/<variant>.
  std::vector<std::string> overrides;
  std::string variant;
  std::string dir(const std::string& out) const;
};

struct FigureSettings;

// What a figure's numbers say (the theory checks, the fitted rates): written to
// OUT/figures/FIGURE.json, handed to the plot script as --summary, printed by reproduce, and
// read by the tests.
struct FigureSummary {
  json numbers = json::object();
  std::vector<std::string> lines;  // for the terminal
};
using FigureSummarizer =
    std::function<FigureSummary(const std::vector<FigureRun>& runs, const FigureSettings& s)>;

struct Figure {
  std::string name;
  std::string summary;      // one line for --help
  std::string plot_script;  // relative to the project root
  std::vector<FigureRun> quick, paper;
  FigureSummarizer summarize;  // optional: reads the finished runs' files only
  const std::vector<FigureRun>& runs(const std::string& scale) const;
};

const std::vector<Figure>& figures();
// ng::Error listing the known figures when there is no such one.
const Figure& find_figure(const std::string& name);

struct FigureSettings {
  std::string scale;                         // quick | paper
  std::string out = ".";                     // runs/ and figures/ go here
  std::vector<std::string> train_overrides;  // --set key=value for every training config
  StudyContext ctx;
};

struct FigureOutcome {
  int exit_code = 0;                // 0, or training's diverged/interrupted code to stop with
  std::string png;                  // the figure written
  std::vector<std::string> report;  // one line per job: what, seconds, computed or reused
  FigureSummary summary;            // empty unless the figure has a summarizer
  std::string summary_file;         // OUT/figures/FIGURE.json, or ""
};

// Checks the plot script, every config and every job (names and options) before the first minute
// of training is spent; reads the experiment files, writes nothing.
void validate_figure(const Figure& fig, const std::vector<FigureRun>& runs,
                     const FigureSettings& s);
FigureOutcome reproduce_figure(const Figure& fig, const std::vector<FigureRun>& runs,
                               const FigureSettings& s);

// Training exit codes beyond 0/1/2.
constexpr int kExitDiverged = 3;
constexpr int kExitInterrupted = 130;

}  // namespace ng
