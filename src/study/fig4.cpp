// Figure 4 of the paper: the toy OLM f(x; w) = (w2 / sqrt(w1^2 + 1)) x with x ~ N(0, 1) and y = 0,
// trained from one point near the valley w2 = 0 by online SGD (batch 1, each fresh sample used
// once) and by GD (the full batch of the same samples) under the same cyclical learning rate; the
// recipe and its summary: w1^2 at the start and the end of each run.
#include <fmt/format.h>

#include <algorithm>
#include <cmath>

#include "src/core/config.h"
#include "src/core/error.h"
#include "src/io/json.h"
#include "src/io/rundir.h"
#include "src/study/figure_recipes.h"
#include "src/training/trace.h"

namespace ng {
namespace {

// Any batch of at least n samples is the full batch (training takes min(batch, n)): the GD run
// needs no copy of the experiment's n.
constexpr const char* kFullBatch = "train.batch_size=1000000000";

FigureRun fig4_run(const std::string& experiment, const std::string& variant) {
  FigureRun r = figure_run(experiment, variant == "sgd" ? "SGD+CLR" : "GD+CLR", {}, {}, false);
  r.variant = variant;
  r.overrides = {variant == "sgd" ? "train.batch_size=1" : kFullBatch};
  return r;
}

// What one run's trace says about w1^2 and w2, and its schedule and data.
json run_numbers(const FigureRun& r, const FigureSettings& s) {
  const RunPaths paths{r.dir(s.out)};
  const Trace t = read_trace(paths.file(run_files::kTrace));
  if (t.rows.size() < 2) fail("{}: fewer than two rows", t.path);
  const auto w1 = t.column("w1"), w2 = t.column("w2"), loss = t.column("loss");
  const json m = read_json(paths.file(run_files::kManifest));
  const double a0 = 1 + w1.front() * w1.front();
  double max_w1sq = 0, max_abs_w2 = 0;
  for (size_t k = 0; k < w1.size(); ++k) {
    max_w1sq = std::max(max_w1sq, w1[k] * w1[k]);
    max_abs_w2 = std::max(max_abs_w2, std::abs(w2[k]));
  }
  json j;
  j["run"] = paths.root;
  j["steps"] = t.column("step").back();
  j["epochs"] = m.value("epochs", 0.0);
  j["batch_size"] = Config::load(paths.file(run_files::kConfig)).i("train.batch_size");
  j["num_samples"] = m.value("num_samples", 0);
  j["w1_start"] = w1.front();
  j["w2_start"] = w2.front();
  j["w1sq_start"] = w1.front() * w1.front();
  j["w1sq_end"] = w1.back() * w1.back();
  j["w1sq_max"] = max_w1sq;
  j["w2_end"] = w2.back();
  j["abs_w2_max"] = max_abs_w2;
  // The empirical loss is c L(w) with c = (1/n) sum x_i^2: what GD descends (c -> 1 as n grows).
  j["loss_scale"] = loss.front() * 2 * a0 / (w2.front() * w2.front());
  j["schedule"] = m.value("schedule", "");
  return j;
}

FigureSummary summarize_fig4(const std::vector<FigureRun>& runs, const FigureSettings& s) {
  FigureSummary out;
  for (const auto& r : runs) out.numbers[r.variant] = run_numbers(r, s);
  // Copies: out.numbers grows below, which moves its elements (an ordered map is a vector).
  const json sgd = out.numbers["sgd"], gd = out.numbers["gd"];
  if (sgd.value("schedule", "") != gd.value("schedule", ""))
    fail("fig4: the SGD and GD runs have different schedules ({} vs {})", sgd["schedule"].dump(),
         gd["schedule"].dump());
  const double factor = sgd["w1sq_end"].get<double>() / sgd["w1sq_start"].get<double>();
  const double gd_change = gd["w1sq_end"].get<double>() / gd["w1sq_start"].get<double>() - 1;
  out.numbers["schedule"] = sgd["schedule"];
  out.numbers["sgd_w1sq_factor"] = factor;
  out.numbers["gd_w1sq_relative_change"] = gd_change;
  out.lines = {
      fmt::format("schedule: {}, {} steps from (w1, w2) = ({:.4g}, {:.4g})",
                  sgd["schedule"].get<std::string>(), sgd["steps"].get<double>(),
                  sgd["w1_start"].get<double>(), sgd["w2_start"].get<double>()),
      fmt::format("SGD+CLR (batch 1, {:.3g} epochs): w1^2 {:.4g} -> {:.4g}, a factor {:.4g}",
                  sgd["epochs"].get<double>(), sgd["w1sq_start"].get<double>(),
                  sgd["w1sq_end"].get<double>(), factor),
      fmt::format("GD+CLR (full batch of {} samples): w1^2 {:.4g} -> {:.4g}, {:+.3f}%",
                  gd["num_samples"].get<int64_t>(), gd["w1sq_start"].get<double>(),
                  gd["w1sq_end"].get<double>(), 100 * gd_change)};
  return out;
}

}  // namespace

Figure figure4() {
  Figure f;
  f.name = "fig4";
  f.summary =
      "toy OLM f = (w2 / sqrt(w1^2 + 1)) x: online SGD vs GD under one cyclical learning rate; "
      "SGD drifts along the flat valley direction w1, GD does not";
  f.plot_script = "experiments/plot_fig4.py";
  f.quick = {fig4_run("quick_fig4_toy", "sgd"), fig4_run("quick_fig4_toy", "gd")};
  f.paper = {fig4_run("fig4_toy", "sgd"), fig4_run("fig4_toy", "gd")};
  f.summarize = summarize_fig4;
  return f;
}

}  // namespace ng
