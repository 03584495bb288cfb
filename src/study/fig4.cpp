// Figure 4 of the paper: the toy OLM f(x; w) = (w2 / sqrt(w1^2 + 1)) x with x ~ N(0, 1) and y = 0,
// trained from one point near the valley w2 = 0 by online SGD (batch 1, each fresh sample used
// once) and by GD (the full batch of the same samples) under the same cyclical learning rate; the
// recipe (several seeds of each, since SGD's escape is a chance event) and its summary: the
// distribution over seeds of SGD's factor on w1^2 and of GD's relative change.
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

// Seeds per method at each scale. SGD's outcome is spread over orders of magnitude, so it needs
// many; GD's is the same to three digits for every seed (its loss is c L(w) with c = 1 +-
// 1/sqrt(n)), so a few show that.
constexpr int kQuickSgdSeeds = 16, kQuickGdSeeds = 4;
constexpr int kPaperSgdSeeds = 32, kPaperGdSeeds = 4;

FigureRun fig4_run(const std::string& experiment, bool sgd, int seed) {
  FigureRun r = figure_run(experiment, fmt::format("{}+CLR s{:02d}", sgd ? "SGD" : "GD", seed), {},
                           {}, false);
  r.variant = fmt::format("{}_s{:02d}", sgd ? "sgd" : "gd", seed);
  r.overrides = {fmt::format("seed={}", seed), sgd ? "train.batch_size=1" : kFullBatch};
  return r;
}

std::vector<FigureRun> fig4_runs(const std::string& experiment, int sgd_seeds, int gd_seeds) {
  std::vector<FigureRun> runs;
  for (int s = 0; s < sgd_seeds; ++s) runs.push_back(fig4_run(experiment, true, s));
  for (int s = 0; s < gd_seeds; ++s) runs.push_back(fig4_run(experiment, false, s));
  return runs;
}

// What one run's trace says about w1^2 and w2, and its schedule and data.
json run_numbers(const FigureRun& r, const FigureSettings& s) {
  const RunPaths paths{r.dir(s.out)};
  const Trace t = read_trace(paths.file(run_files::kTrace));
  if (t.rows.size() < 2) fail("{}: fewer than two rows", t.path);
  const auto w1 = t.column("w1"), w2 = t.column("w2"), loss = t.column("loss");
  const json m = read_json(paths.file(run_files::kManifest));
  const Config cfg = Config::load(paths.file(run_files::kConfig));
  const double a0 = 1 + w1.front() * w1.front();
  double max_w1sq = 0, max_abs_w2 = 0;
  for (size_t k = 0; k < w1.size(); ++k) {
    max_w1sq = std::max(max_w1sq, w1[k] * w1[k]);
    max_abs_w2 = std::max(max_abs_w2, std::abs(w2[k]));
  }
  json j;
  j["run"] = paths.root;
  j["seed"] = cfg.i("seed");
  j["steps"] = t.column("step").back();
  j["epochs"] = m.value("epochs", 0.0);
  j["batch_size"] = cfg.i("train.batch_size");
  j["num_samples"] = m.value("num_samples", 0);
  j["w1_start"] = w1.front();
  j["w2_start"] = w2.front();
  j["w1sq_start"] = w1.front() * w1.front();
  j["w1sq_end"] = w1.back() * w1.back();
  j["w1sq_max"] = max_w1sq;
  j["w1sq_ratio"] = w1.back() * w1.back() / (w1.front() * w1.front());
  j["w2_end"] = w2.back();
  j["abs_w2_max"] = max_abs_w2;
  // The empirical loss is c L(w) with c = (1/n) sum x_i^2: what GD descends (c -> 1 as n grows).
  j["loss_scale"] = loss.front() * 2 * a0 / (w2.front() * w2.front());
  j["schedule"] = m.value("schedule", "");
  return j;
}

double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  const size_t n = v.size();
  return n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
}

double fraction_above(const std::vector<double>& v, double bound) {
  return double(std::count_if(v.begin(), v.end(), [&](double x) { return x > bound; })) /
         double(v.size());
}

// The seed the plot draws boldly: the median outcome (the upper middle one for an even count),
// so that the highlighted trajectory is a typical one, not the best.
int64_t median_seed(const std::vector<int64_t>& seeds, const std::vector<double>& factors) {
  std::vector<size_t> order(seeds.size());
  for (size_t k = 0; k < order.size(); ++k) order[k] = k;
  std::sort(order.begin(), order.end(),
            [&](size_t a, size_t b) { return factors[a] < factors[b]; });
  return seeds[order[order.size() / 2]];
}

// The SGD seeds' distribution of the factor on w1^2.
json sgd_distribution(const std::vector<json>& sgd) {
  std::vector<int64_t> seeds;
  std::vector<double> f;
  for (const auto& r : sgd) {
    seeds.push_back(r["seed"].get<int64_t>());
    f.push_back(r["w1sq_ratio"].get<double>());
  }
  json d;
  d["seeds"] = seeds;
  d["w1sq_factor"] = f;
  d["median"] = median(f);
  d["min"] = *std::min_element(f.begin(), f.end());
  d["max"] = *std::max_element(f.begin(), f.end());
  d["fraction_above_2"] = fraction_above(f, 2);
  d["fraction_above_10"] = fraction_above(f, 10);
  d["highlight_seed"] = median_seed(seeds, f);
  d["highlight_rule"] = "median outcome (upper middle seed by factor)";
  return d;
}

json gd_distribution(const std::vector<json>& gd) {
  std::vector<int64_t> seeds;
  std::vector<double> c;
  double worst = 0;
  for (const auto& r : gd) {
    seeds.push_back(r["seed"].get<int64_t>());
    c.push_back(r["w1sq_ratio"].get<double>() - 1);
    worst = std::max(worst, std::abs(c.back()));
  }
  json d;
  d["seeds"] = seeds;
  d["w1sq_relative_change"] = c;
  d["max_abs_relative_change"] = worst;
  return d;
}

std::vector<std::string> summary_lines(const json& first, const json& sgd, const json& gd) {
  std::string per_seed;
  for (size_t k = 0; k < sgd["seeds"].size(); ++k)
    per_seed += fmt::format("{}{}:x{:.3g}", k ? " " : "", sgd["seeds"][k].get<int64_t>(),
                            sgd["w1sq_factor"][k].get<double>());
  std::string gd_seeds;
  for (size_t k = 0; k < gd["seeds"].size(); ++k)
    gd_seeds += fmt::format("{}{}:{:+.3f}%", k ? " " : "", gd["seeds"][k].get<int64_t>(),
                            100 * gd["w1sq_relative_change"][k].get<double>());
  return {
      fmt::format("schedule: {}, {} steps from (w1, w2) = ({:.4g}, {:.4g})",
                  first["schedule"].get<std::string>(), first["steps"].get<double>(),
                  first["w1_start"].get<double>(), first["w2_start"].get<double>()),
      fmt::format("SGD+CLR (batch 1), {} seeds: w1^2 factor median x{:.3g}, min x{:.4g}, max "
                  "x{:.4g}; > x2 for {:.0f}%, > x10 for {:.0f}% of seeds",
                  sgd["seeds"].size(), sgd["median"].get<double>(), sgd["min"].get<double>(),
                  sgd["max"].get<double>(), 100 * sgd["fraction_above_2"].get<double>(),
                  100 * sgd["fraction_above_10"].get<double>()),
      "SGD+CLR per seed: " + per_seed,
      fmt::format("GD+CLR (full batch), {} seeds: w1^2 changes by at most {:.3f}% ({})",
                  gd["seeds"].size(), 100 * gd["max_abs_relative_change"].get<double>(), gd_seeds),
      fmt::format("the plot highlights SGD seed {} (the median outcome)",
                  sgd["highlight_seed"].get<int64_t>())};
}

FigureSummary summarize_fig4(const std::vector<FigureRun>& runs, const FigureSettings& s) {
  std::vector<json> sgd, gd;
  json all = json::object();
  for (const auto& r : runs) {
    json n = run_numbers(r, s);
    (n["batch_size"].get<int64_t>() == 1 ? sgd : gd).push_back(n);
    all[r.variant] = n;
  }
  if (sgd.empty() || gd.empty()) fail("fig4: the recipe needs SGD and GD runs");
  for (const auto& r : runs) {
    const json& n = all[r.variant];
    if (n["schedule"] != sgd.front()["schedule"] || n["w1_start"] != sgd.front()["w1_start"] ||
        n["w2_start"] != sgd.front()["w2_start"])
      fail("fig4: {} differs from {} in its schedule or start point", n["run"].dump(),
           sgd.front()["run"].dump());
  }
  FigureSummary out;
  const json& first = sgd.front();
  out.numbers["schedule"] = first["schedule"];
  out.numbers["steps"] = first["steps"];
  out.numbers["w1_start"] = first["w1_start"];
  out.numbers["w2_start"] = first["w2_start"];
  out.numbers["sgd"] = sgd_distribution(sgd);
  out.numbers["gd"] = gd_distribution(gd);
  out.numbers["runs"] = all;
  out.lines = summary_lines(first, out.numbers["sgd"], out.numbers["gd"]);
  return out;
}

}  // namespace

Figure figure4() {
  Figure f;
  f.name = "fig4";
  f.summary =
      "toy OLM f = (w2 / sqrt(w1^2 + 1)) x: online SGD vs GD under one cyclical learning rate, "
      "several seeds each; SGD often drifts along the flat valley direction w1, GD never does";
  f.plot_script = "experiments/plot_fig4.py";
  f.quick = fig4_runs("quick_fig4_toy", kQuickSgdSeeds, kQuickGdSeeds);
  f.paper = fig4_runs("fig4_toy", kPaperSgdSeeds, kPaperGdSeeds);
  f.summarize = summarize_fig4;
  return f;
}

}  // namespace ng
