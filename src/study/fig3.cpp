// Figure 3 of the paper (Section 5, Appendix A): escapes of SGD and GD from the minimum w* = 0 of
// linear regression with x ~ N(0, diag(1, b, ..., b)/d), one trained run per srk(G^2), and the
// loss-energy ratio D_{t,1} = Y_t / X_t along the way. The recipe, and the summary that checks
// Theorem 5.2 (SGD: D_{t,1} of the order of srk(G^2) - 1) and Proposition 5.3 (GD: D_{t,1} decays
// at the rate max_{i>=2} ((1 - eta lambda_i) / (1 - eta lambda_1))^2 per step).
#include <ATen/ATen.h>
#include <fmt/format.h>

#include <algorithm>
#include <array>
#include <cmath>
#include <filesystem>
#include <map>

#include "src/core/error.h"
#include "src/curvature/curvature.h"
#include "src/io/json.h"
#include "src/io/rundir.h"
#include "src/study/escape_files.h"
#include "src/study/figure_recipes.h"
#include "src/training/train.h"

namespace fs = std::filesystem;

namespace ng {
namespace {

// The srk(G^2) values swept (population values: the data's own are reported beside them).
const std::vector<double> kSrk = {2, 5, 10, 20};
// A run has escaped once its loss exceeds this (L(theta*) = 0, so no relative threshold exists);
// from theta* + N(0, e^-10 I/d) that takes SGD about 15 steps and GD about 6.
constexpr double kEscapeLoss = 1e-2;
// SGD's D_{t,1} leaves its starting value srk(G) - 1 within a few steps (Theorem 5.2's t >= 1
// plus the decay of the initial sharp component); the level is read after these.
constexpr int64_t kTransient = 5;
// GD's E[D_{t,1}] is fitted while above this: the float64 trajectory itself stays exact far below.
constexpr double kGdFloor = 1e-20;

struct Fig3Scale {
  std::string experiment;
  int64_t n, d;
  int64_t gd_runs, gd_steps, sgd_runs, sgd_steps;
  int64_t eval_samples;  // the escape loss (and threshold) on this many samples; 0: all
};

// Quick: 400 SGD runs give E[D] within about 10-35 % of srk(G^2) - 1 during the escape (100 gave
// curves twice as jagged: the runs' energies are heavy-tailed, so the ratio of means settles
// slowly); GD differs from run to run only by w_0. Paper: the paper's n and d. SGD from e^-10 I/d
// needs 20-33 steps to reach the escape loss at d = 1e3 (10 runs at srk(G^2) = 20), hence 50; the
// energies come from the dense 1e3 x 1e3 G (src/escape), so a logged point costs ~1e6 flops.
const Fig3Scale kQuick{"quick_fig3", 4000, 100, 8, 25, 400, 20, 1000};
const Fig3Scale kPaper{"fig3", 100000, 1000, 2, 25, 50, 50, 10000};

// G over all n samples (the GD gradient's samples), exact: per-sample rows, so that |G|_F (and
// with it SGD's 1.2/|G|_F) is exact too; Lanczos, since the n x n Gram matrix is far too large.
SpectrumRequest fig3_spectrum(const Fig3Scale& s) {
  SpectrumRequest r;
  r.name = "fig3";
  SpectrumOptions& o = r.options;
  o.k = 10;
  o.matrices = {MatrixKind::G};
  o.estimator = Estimator::PerSample;
  o.samples = s.n;
  o.solver = "lanczos";
  o.dtype = at::kDouble;
  o.batch_size = 4096;
  return r;
}

EscapeRequest fig3_escape(const Fig3Scale& s, Optimizer opt) {
  const bool sgd = opt == Optimizer::Sgd;
  EscapeRequest r;
  r.spectrum = "fig3";
  r.lr_paper = true;
  EscapeOptions& o = r.options;
  o.optimizer = opt;
  o.runs = sgd ? s.sgd_runs : s.gd_runs;
  o.steps = sgd ? s.sgd_steps : s.gd_steps;
  o.log_every = 1;
  o.batch = 1;
  o.ks = {1};
  r.ks_given = true;
  o.perturb = std::exp(-5.0) / std::sqrt(static_cast<double>(s.d));  // variance e^-10 / d
  o.escape_loss = kEscapeLoss;
  o.max_loss_factor = 1e100;  // the linear model only escapes: keep every run to its last step
  o.eval_samples = s.eval_samples;
  o.eval_batch = 10000;
  o.energy = true;
  return r;
}

double bulk_for_srk(double srk, int64_t d) {
  return std::sqrt((srk - 1) / static_cast<double>(d - 1));
}

std::vector<FigureRun> fig3_runs(const Fig3Scale& s) {
  std::vector<FigureRun> runs;
  for (double srk : kSrk) {
    FigureRun r = figure_run(s.experiment, fmt::format("{:g}", srk), {fig3_spectrum(s)},
                             {fig3_escape(s, Optimizer::Gd), fig3_escape(s, Optimizer::Sgd)});
    r.variant = fmt::format("srk{:g}", srk);
    r.overrides = {fmt::format("data.bulk={:.17g}", bulk_for_srk(srk, s.d))};
    runs.push_back(std::move(r));
  }
  return runs;
}

// ---- the summary ----

// E[D_{t,1}] = E[Y_t] / E[X_t] over the runs of a sweep (the ratio of the means, as Section 5
// defines it), at the steps every run reached with finite energies.
struct EnergyCurve {
  std::vector<int64_t> steps;
  std::vector<double> d;
  int64_t runs = 0;
};

EnergyCurve expected_d(const std::string& sweep_dir) {
  const TrajectoryTable t = load_trajectories(sweep_dir);
  const int64_t cr = t.column("run"), cs = t.column("step"), cx = t.column("energy_x"),
                cy = t.column("energy_y");
  if (cx < 0 || cy < 0)
    fail("{}/{}: no energy_x, energy_y columns (a sweep without --energy)", sweep_dir,
         escape_files::kTrajectories);
  std::map<int64_t, std::array<double, 3>> by_step;  // step -> sum X, sum Y, runs
  std::map<int64_t, int> runs;
  for (const auto& row : t.rows) {
    runs[static_cast<int64_t>(row[cr])] = 1;
    if (!std::isfinite(row[cx]) || !std::isfinite(row[cy])) continue;
    auto& a = by_step[static_cast<int64_t>(row[cs])];
    a[0] += row[cx];
    a[1] += row[cy];
    a[2] += 1;
  }
  EnergyCurve c;
  c.runs = static_cast<int64_t>(runs.size());
  for (const auto& [step, a] : by_step) {
    if (a[2] < static_cast<double>(c.runs)) continue;
    c.steps.push_back(step);
    c.d.push_back(a[1] / a[0]);
  }
  return c;
}

// All eigenvalues of G at theta* over the run's n samples, descending: B^T B / n from the
// per-sample rows (p x p; Figure 3's p = d <= 1000). Proposition 5.3's rate depends on lambda_2
// and on the smallest eigenvalue, which no top-k spectrum holds.
std::vector<double> dense_g_eigenvalues(const std::string& run_dir, const std::string& data_dir) {
  LoadedRun run = load_run(run_dir, data_dir);
  CurvatureOptions co;
  co.loss = loss_names().parse(run.cfg.s("train.loss"), run_dir + ": train.loss");
  co.estimator = Estimator::PerSample;
  co.dtype = at::kDouble;
  co.probe = false;
  // Said before the rows are built, and with the run named.
  const int64_t p = ParameterLayout::of(*run.model).size;
  if (p > CurvatureOperator::kMaxDenseP)
    fail("{}: figure 3's summary needs all eigenvalues of G; p = {} is too many", run_dir, p);
  CurvatureOperator op(run.model, run.data.x, run.data.targets, co);
  const at::Tensor ev =
      std::get<0>(at::sort(at::linalg_eigvalsh(op.dense_matrix()), 0, true)).contiguous();
  return std::vector<double>(ev.data_ptr<double>(), ev.data_ptr<double>() + ev.numel());
}

// Least-squares slope of log(y) against t.
double log_slope(const std::vector<int64_t>& t, const std::vector<double>& y, size_t a, size_t b) {
  double st = 0, sy = 0, stt = 0, sty = 0;
  const double m = static_cast<double>(b - a);
  for (size_t j = a; j < b; ++j) {
    const double x = static_cast<double>(t[j]), v = std::log(y[j]);
    st += x, sy += v, stt += x * x, sty += x * v;
  }
  return (m * sty - st * sy) / (m * stt - st * st);
}

// GD: Proposition 5.3's per-step rate max_{i>=2} ((1 - eta lambda_i)/(1 - eta lambda_1))^2
// against the fit of log E[D_t] over the second half of the steps where it is above kGdFloor (the
// first steps mix several eigenvalues, and the slope steepens toward the slowest term only
// gradually when the bulk's lowest eigenvalues lie close together). The proposition's sum itself,
// at E[w_{0,i}^2] = sigma^2 (every i alike), is fitted over the same steps: that is the rate the
// finite window can show, and the asymptotic one is what the steps approach.
json gd_numbers(const EnergyCurve& c, const std::vector<double>& lam, double lr) {
  double closed = 0;
  for (size_t i = 1; i < lam.size(); ++i)
    closed = std::max(closed, std::pow((1 - lr * lam[i]) / (1 - lr * lam[0]), 2));
  std::vector<double> sum;
  for (int64_t t : c.steps) {
    double y = 0;
    for (size_t i = 1; i < lam.size(); ++i)
      y += lam[i] * std::pow((1 - lr * lam[i]) / (1 - lr * lam[0]), 2.0 * static_cast<double>(t));
    sum.push_back(y / lam[0]);
  }
  size_t end = 0;
  while (end < c.d.size() && c.d[end] > kGdFloor && std::isfinite(c.d[end])) ++end;
  const size_t begin = end / 2;
  if (end < begin + 3) fail("figure 3: GD's E[D] has only {} points above {}", end, kGdFloor);
  const double fitted = std::exp(log_slope(c.steps, c.d, begin, end));
  const double sum_fitted = std::exp(log_slope(c.steps, sum, begin, end));
  return {
      {"closed_form_rate", closed},
      {"fitted_rate", fitted},
      {"closed_form_sum_fitted_rate", sum_fitted},
      {"log_rate_relative_error", std::fabs(std::log(fitted) / std::log(closed) - 1)},
      {"log_rate_relative_error_vs_sum", std::fabs(std::log(fitted) / std::log(sum_fitted) - 1)},
      {"fit_steps", {c.steps[begin], c.steps[end - 1]}},
      {"runs", c.runs},
      {"steps", c.steps},
      {"expected_D", c.d},
      {"closed_form_expected_D", sum}};
}

double median(std::vector<double> v) {
  if (v.empty()) return std::nan("");
  std::sort(v.begin(), v.end());
  const size_t m = v.size();
  return m % 2 ? v[m / 2] : 0.5 * (v[m / 2 - 1] + v[m / 2]);
}

// SGD: the level of E[D_t] during the escape, the median over steps kTransient .. the median
// escape step (at least five steps), against srk(G^2) - 1.
json sgd_numbers(const EnergyCurve& c, const json& record, double srk_g2) {
  const double esc = json_number_or_nan(record, "median_escape_step");
  const int64_t last = std::max<int64_t>(
      kTransient + 5, std::isfinite(esc) ? static_cast<int64_t>(esc) : c.steps.back());
  std::vector<double> window;
  for (size_t j = 0; j < c.steps.size(); ++j)
    if (c.steps[j] >= kTransient && c.steps[j] <= last) window.push_back(c.d[j]);
  const double level = median(window);
  return {{"level", level},
          {"srk_minus_1", srk_g2 - 1},
          {"level_over_srk_minus_1", level / (srk_g2 - 1)},
          {"window", {kTransient, last}},
          {"median_escape_step", esc},
          {"runs", c.runs},
          {"steps", c.steps},
          {"expected_D", c.d}};
}

FigureSummary summarize_fig3(const std::vector<FigureRun>& runs, const FigureSettings& s) {
  FigureSummary out;
  json rows = json::array();
  std::vector<double> levels;
  for (const auto& r : runs) {
    const std::string dir = r.dir(s.out);
    const RunPaths paths{dir};
    const json spec = read_json((fs::path(paths.spectrum("fig3")) / "summary.json").string());
    const json gd = load_escape_record(paths.escape("gd"));
    const json sgd = load_escape_record(paths.escape("sgd"));
    const std::vector<double> lam = dense_g_eigenvalues(dir, s.ctx.data_dir);
    const double srk_g2 = spec.at("srk_G2").get<double>();
    const json g = gd_numbers(expected_d(paths.escape("gd")), lam, gd.at("lr").get<double>());
    const json q = sgd_numbers(expected_d(paths.escape("sgd")), sgd, srk_g2);
    levels.push_back(q["level"].get<double>());
    rows.push_back({{"label", r.label},
                    {"variant", r.variant},
                    {"srk_G2_target", std::stod(r.label)},
                    {"srk_G2", srk_g2},
                    {"lambda_1", lam.front()},
                    {"lambda_2", lam[1]},
                    {"lambda_min", lam.back()},
                    {"frobenius_G", spec.at("frobenius_G")},
                    {"lr_sgd", sgd.at("lr")},
                    {"lr_gd", gd.at("lr")},
                    {"gd", g},
                    {"sgd", q}});
    out.lines.push_back(fmt::format(
        "srk(G^2) {:.3g} (target {}): lambda_1 {:.4g}, lambda_2 {:.4g}, lambda_min {:.4g}, "
        "|G|_F {:.4g} | GD (lr {:.4g}): E[D] per step {:.4g} fitted, {:.4g} Prop. 5.3 (its sum "
        "over the same steps: {:.4g}) | SGD (lr {:.4g}): E[D] {:.3g} for srk-1 = {:.3g} (x{:.2f})",
        srk_g2, r.label, lam.front(), lam[1], lam.back(), spec.at("frobenius_G").get<double>(),
        gd.at("lr").get<double>(), g["fitted_rate"].get<double>(),
        g["closed_form_rate"].get<double>(), g["closed_form_sum_fitted_rate"].get<double>(),
        sgd.at("lr").get<double>(), q["level"].get<double>(), srk_g2 - 1,
        q["level_over_srk_minus_1"].get<double>()));
  }
  const bool increasing = std::is_sorted(levels.begin(), levels.end()) &&
                          std::adjacent_find(levels.begin(), levels.end()) == levels.end();
  out.numbers = {{"figure", "fig3"},
                 {"scale", s.scale},
                 {"escape_loss", kEscapeLoss},
                 {"sgd_transient_steps", kTransient},
                 {"gd_fit_floor", kGdFloor},
                 {"sgd_level_increasing_in_srk", increasing},
                 {"srk", rows}};
  out.lines.push_back(
      fmt::format("SGD's E[D] level increases with srk(G^2): {}", increasing ? "yes" : "no"));
  return out;
}

}  // namespace

Figure figure3() {
  Figure f;
  f.name = "fig3";
  f.summary =
      "escape directions of SGD and GD on linear regression: E[D_{t,1}] against t for several "
      "srk(G^2) (paper: n = 1e5, d = 1e3; quick: n = 4,000, d = 100)";
  f.plot_script = "experiments/plot_fig3.py";
  f.quick = fig3_runs(kQuick);
  f.paper = fig3_runs(kPaper);
  f.summarize = summarize_fig3;
  return f;
}

}  // namespace ng
