// Figure 2a of the paper: directional alignment on linear regression. A linear model at
// theta ~ N(0, I_d), inputs x ~ N(0, I_d), y = w*^T x, in two regimes of limited data:
// n = d/8 and n = ceil(8 ln d) (paper: d = 10^4, n = 1250 and 74; quick: d = 10^3, n = 125 and
// 56). G has rank n, so every eigenpair (k = n) comes from the per-sample rows' n x n Gram
// matrix, and alpha_k = u_k^T Sigma u_k / (2L) is computed along each. The summary gives
// g_k = alpha_k / lambda_k as min / median / max over all k.
#include <fmt/format.h>

#include <algorithm>

#include "src/core/config.h"
#include "src/core/error.h"
#include "src/io/rundir.h"
#include "src/study/figure_recipes.h"
#include "src/study/spectrum_files.h"

namespace ng {
namespace {

constexpr double kBandLow = 0.5, kBandHigh = 2.0;

// All n eigenpairs of G from the Gram matrix in float64. The eigenvectors (p x n float64: 100 MB
// at the paper's n = 1250, d = 10^4) are kept like every spectrum's, so that the run can be
// analysed further (escapes, show); the plot reads alignment.csv only.
SpectrumRequest all_k(int64_t n) {
  SpectrumRequest r;
  r.name = "full";
  SpectrumOptions& o = r.options;
  o.k = n;
  o.matrices = {MatrixKind::G};
  o.estimator = Estimator::PerSample;
  o.samples = n;
  o.solver = "gram";
  o.theta = "random";
  return r;
}

FigureRun regime(const std::string& experiment, const std::string& label, int64_t n) {
  return figure_run(experiment, label, {all_k(n)}, {}, false);
}

double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  const size_t h = v.size() / 2;
  return v.size() % 2 ? v[h] : 0.5 * (v[h - 1] + v[h]);
}

FigureSummary summarize(const std::vector<FigureRun>& runs, const FigureSettings& s) {
  FigureSummary out;
  json list = json::array();
  bool all_band = true;
  for (const auto& r : runs) {
    const std::string dir = RunPaths{r.dir(s.out)}.spectrum(r.spectra.front().name);
    const AlignmentTable t = load_alignment(dir);
    const json sum = read_json(dir + "/summary.json");
    const Config cfg = Config::load(RunPaths{r.dir(s.out)}.file(run_files::kConfig));
    const auto [lo, hi] = std::minmax_element(t.g.begin(), t.g.end());
    const double med = median(t.g);
    int64_t inside = 0;
    for (double g : t.g) inside += g >= kBandLow && g <= kBandHigh;
    const bool ok = med >= kBandLow && med <= kBandHigh;
    all_band = all_band && ok;
    list.push_back({{"label", r.label},
                    {"experiment", r.experiment},
                    {"d", cfg.i("data.d")},
                    {"n", cfg.i("data.n")},
                    {"p", sum.value("p", int64_t{0})},
                    {"k", t.g.size()},
                    {"loss", json_number_or_nan(sum, "loss")},
                    {"mu", json_number_or_nan(sum, "mu")},
                    {"g_min", *lo},
                    {"g_median", med},
                    {"g_max", *hi},
                    {"fraction_within_band", double(inside) / double(t.g.size())},
                    {"median_within_band", ok}});
    out.lines.push_back(fmt::format(
        "{} (d = {}, n = {}): g_k = alpha_k/lambda_k over k = 1..{}: min {:.3f}, median {:.3f}, "
        "max {:.3f}; {:.0f}% of k within [{}, {}]; mu {:.3f}",
        r.label, cfg.i("data.d"), cfg.i("data.n"), t.g.size(), *lo, med, *hi,
        100.0 * double(inside) / double(t.g.size()), kBandLow, kBandHigh,
        json_number_or_nan(sum, "mu")));
  }
  out.numbers = {{"band", {kBandLow, kBandHigh}},
                 {"regimes", list},
                 {"acceptance", {{"all_medians_within_band", all_band}}}};
  out.lines.push_back(fmt::format("median g_k within [{}, {}] for every n: {}", kBandLow, kBandHigh,
                                  all_band ? "yes" : "NO"));
  return out;
}

}  // namespace

Figure figure2a() {
  Figure f;
  f.name = "fig2a";
  f.summary =
      "alpha_k against lambda_k for every eigen-direction of G, linear regression at theta ~ "
      "N(0, I) with n = d/8 and n = 8 ln d (paper: d = 10^4; quick: d = 10^3)";
  f.plot_script = "experiments/plot_fig2a.py";
  f.quick = {regime("quick_fig2a_proportional", "n: d/8", 125),
             regime("quick_fig2a_log", "n: 8 ln d", 56)};
  f.paper = {regime("fig2a_proportional", "n: d/8", 1250), regime("fig2a_log", "n: 8 ln d", 74)};
  f.summarize = summarize;
  return f;
}

}  // namespace ng
