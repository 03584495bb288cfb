// Figure 1 of the paper: the loss alignment mu(theta) = tr(Sigma G) / (2L |G|_F^2) at random
// theta, against the number of parameters p, for the 4-layer linear network and the two-layer
// ReLU network with both layers trained, on isotropic (S = I_50) and anisotropic
// (S = diag(k^-1/2), k <= 662) Gaussian inputs, n = ceil(5 ln 50) = 20 samples, targets from a
// linear teacher. One run directory per (model, S, width, seed): the seed redraws x, w* and theta.
// mu is exact (Gram blocks of the per-sample rows over all n samples) at two random thetas per
// run: the model's own initialisation (fan-in scaled, the primary curves) and, at the paper scale,
// theta ~ N(0, I).
// The summary fits a line to the widths' mean mu against ln p per curve (weighted by the error
// bars) and tests its slope against zero; the unweighted fit over all runs is reported beside it.
#include <fmt/format.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <map>

#include "data/dataset.h"
#include "src/core/config.h"
#include "src/core/error.h"
#include "src/io/rundir.h"
#include "src/study/figure_recipes.h"

namespace ng {
namespace {

constexpr int64_t kSamples = 20;  // n = ceil(5 ln 50): every sample, so mu is exact
constexpr double kBandLow = 0.5, kBandHigh = 2.0;

// The random thetas, named as the run's spectra. The initialisation comes first: it is what the
// plot's --spectrum names and what the acceptance reads.
struct ThetaKind {
  const char* name;   // spectrum name and summary key
  const char* theta;  // SpectrumOptions::theta
  const char* text;   // for the summary and the plot
};
const ThetaKind kThetas[] = {
    {"init", "init", "theta drawn from the model's initialisation (W ~ N(0, 1/fan_in))"},
    {"normal", "random", "theta ~ N(0, I_p)"},
};

SpectrumRequest mu_spectrum(const ThetaKind& t, uint64_t seed) {
  SpectrumRequest r;
  r.name = t.name;
  SpectrumOptions& o = r.options;
  o.k = 1;  // only mu is plotted; one eigenpair keeps the files small
  o.matrices = {MatrixKind::G};
  o.estimator = Estimator::PerSample;
  o.samples = kSamples;
  o.solver = "gram";
  o.theta = t.theta;
  o.seed = seed;
  return r;
}

struct Curve {
  const char* experiment;  // without the quick_ prefix
  const char* label;       // no '=': the plot reads LABEL=RUN_DIR
  bool linear_net;         // hidden [m, m, m]; else the two-layer net's [m]
};
const Curve kCurves[] = {
    {"fig1_linear_net_iso", "4-layer linear net, isotropic S", true},
    {"fig1_linear_net_aniso", "4-layer linear net, anisotropic S (662 dims)", true},
    {"fig1_two_layer_iso", "two-layer ReLU net, isotropic S", false},
    {"fig1_two_layer_aniso", "two-layer ReLU net, anisotropic S (662 dims)", false},
};

// Widths m: p = dm + 2m^2 + m (linear net) and m(d + 1) (two-layer) span over two decades for
// d = 50 and d = 662 alike. Seeds 1000 m + s keep every run's data and theta independent of the
// other widths' (the slope test assumes independent points).
std::vector<FigureRun> fig1_runs(bool paper) {
  const std::vector<int64_t> linear_widths =
      paper ? std::vector<int64_t>{2, 4, 8, 16, 32, 64, 128, 256}
            : std::vector<int64_t>{2, 16, 256};
  const std::vector<int64_t> relu_widths =
      paper ? std::vector<int64_t>{2, 4, 8, 16, 32, 64, 128, 256, 512}
            : std::vector<int64_t>{2, 16, 256};
  const int64_t runs = paper ? 20 : 10;
  std::vector<FigureRun> out;
  for (const Curve& c : kCurves) {
    const std::string exp = paper ? c.experiment : std::string("quick_") + c.experiment;
    for (int64_t m : c.linear_net ? linear_widths : relu_widths) {
      for (int64_t s = 0; s < runs; ++s) {
        const uint64_t seed = static_cast<uint64_t>(1000 * m + s);
        std::vector<SpectrumRequest> spectra;
        // The quick scale keeps to the primary theta: the second spectrum would double its time.
        for (const ThetaKind& t : kThetas)
          if (paper || &t == &kThetas[0]) spectra.push_back(mu_spectrum(t, seed));
        FigureRun r = figure_run(exp, c.label, spectra, {}, false);
        r.overrides = {c.linear_net ? fmt::format("model.hidden=[{0},{0},{0}]", m)
                                    : fmt::format("model.hidden=[{}]", m),
                       fmt::format("seed={}", seed)};
        r.variant = fmt::format("m{:04}/s{:02}", m, s);
        out.push_back(std::move(r));
      }
    }
  }
  return out;
}

// Regularised incomplete beta I_x(a, b) by its continued fraction (Lentz), for Student's t.
double incomplete_beta(double a, double b, double x) {
  if (x <= 0) return 0;
  if (x >= 1) return 1;
  if (x > (a + 1) / (a + b + 2)) return 1 - incomplete_beta(b, a, 1 - x);
  const double tiny = 1e-300;
  const double front = std::exp(std::lgamma(a + b) - std::lgamma(a) - std::lgamma(b) +
                                a * std::log(x) + b * std::log1p(-x)) /
                       a;
  double c = 1, d = 1 - (a + b) * x / (a + 1);
  d = 1 / (std::fabs(d) < tiny ? tiny : d);
  double f = d;
  for (int m = 1; m <= 500; ++m) {
    for (int even = 0; even < 2; ++even) {
      const double num = even == 0 ? m * (b - m) * x / ((a + 2 * m - 1) * (a + 2 * m))
                                   : -(a + m) * (a + b + m) * x / ((a + 2 * m) * (a + 2 * m + 1));
      d = 1 + num * d;
      d = 1 / (std::fabs(d) < tiny ? tiny : d);
      c = 1 + num / c;
      if (std::fabs(c) < tiny) c = tiny;
      f *= c * d;
    }
    if (std::fabs(c * d - 1) < 1e-15) break;
  }
  return front * f;
}

// Two-sided p-value of Student's t with `dof` degrees of freedom.
double t_pvalue(double t, double dof) {
  if (!std::isfinite(t)) return 0;
  return incomplete_beta(dof / 2, 0.5, dof / (dof + t * t));
}

// Ordinary least squares mu = a + slope ln p over every run of a curve, with the slope's
// classical standard error and its t test against zero (N - 2 degrees of freedom).
json ols_fit(const std::vector<double>& x, const std::vector<double>& y) {
  const double n = static_cast<double>(x.size());
  double mx = 0, my = 0;
  for (size_t i = 0; i < x.size(); ++i) mx += x[i] / n, my += y[i] / n;
  double sxx = 0, sxy = 0;
  for (size_t i = 0; i < x.size(); ++i)
    sxx += (x[i] - mx) * (x[i] - mx), sxy += (x[i] - mx) * (y[i] - my);
  const double slope = sxy / sxx;
  double sse = 0;
  for (size_t i = 0; i < x.size(); ++i) sse += std::pow(y[i] - my - slope * (x[i] - mx), 2);
  const double dof = n - 2;
  const double se = std::sqrt(sse / dof / sxx);
  const double pv = t_pvalue(slope / se, dof);
  return json{{"slope_per_ln_p", slope}, {"slope_se", se},   {"t", slope / se}, {"dof", dof},
              {"p_value", pv},           {"flat", pv > 0.05}};
}

// Weighted least squares through the widths' means with weights 1 / (std^2 / runs), the fit of
// a line through points with error bars: the spread of mu shrinks several-fold from the smallest
// widths to the largest, which equal weights (and OLS's classical standard error) ignore. The
// slope's standard error is 1 / sqrt(sum w (x - mean x)^2), tested as a z score; chi2 / dof
// says how well a line describes the means.
json wls_fit(const std::vector<double>& x, const std::vector<double>& mean,
             const std::vector<double>& var_of_mean) {
  double sw = 0, mx = 0, my = 0;
  for (size_t i = 0; i < x.size(); ++i) sw += 1 / var_of_mean[i];
  for (size_t i = 0; i < x.size(); ++i)
    mx += x[i] / var_of_mean[i] / sw, my += mean[i] / var_of_mean[i] / sw;
  double sxx = 0, sxy = 0;
  for (size_t i = 0; i < x.size(); ++i)
    sxx += (x[i] - mx) * (x[i] - mx) / var_of_mean[i],
        sxy += (x[i] - mx) * (mean[i] - my) / var_of_mean[i];
  const double slope = sxy / sxx, se = 1 / std::sqrt(sxx);
  double chi2 = 0;
  for (size_t i = 0; i < x.size(); ++i)
    chi2 += std::pow(mean[i] - my - slope * (x[i] - mx), 2) / var_of_mean[i];
  const double z = slope / se, pv = std::erfc(std::fabs(z) / std::sqrt(2.0));
  const double dof = static_cast<double>(x.size()) - 2;
  return json{{"slope_per_ln_p", slope}, {"slope_se", se}, {"z", z},
              {"p_value", pv},           {"chi2", chi2},   {"dof", dof},
              {"flat", pv > 0.05}};
}

struct Moments {
  double mean = 0, std = 0, min = 0, max = 0;
};

Moments moments_of(const std::vector<double>& v) {
  Moments m;
  m.min = *std::min_element(v.begin(), v.end());
  m.max = *std::max_element(v.begin(), v.end());
  for (double x : v) m.mean += x / static_cast<double>(v.size());
  double ss = 0;
  for (double x : v) ss += (x - m.mean) * (x - m.mean);
  m.std = v.size() > 1 ? std::sqrt(ss / static_cast<double>(v.size() - 1)) : 0;
  return m;
}

// mu and p of one run's spectrum, checked to be exact over all of the run's samples.
std::pair<double, double> run_mu(const std::string& run_dir, const char* spectrum) {
  const std::string file = RunPaths{run_dir}.spectrum(spectrum) + "/summary.json";
  const json s = read_json(file);
  if (s.value("metrics_method", "") != "gram" ||
      s.value("samples", int64_t{-1}) != s.value("n_train", int64_t{-2}))
    fail(
        "{}: mu is not exact over all samples (metrics_method {}, {} of {} samples); Figure 1 "
        "needs spectrum.samples = data.n",
        file, s.value("metrics_method", "?"), s.value("samples", int64_t{0}),
        s.value("n_train", int64_t{0}));
  return {json_number_or_nan(s, "mu"), json_number_or_nan(s, "p")};
}

// The inputs' covariance of one experiment: D, srk(S), srk(S^2), the participation ratio.
json input_description(const Config& cfg) {
  GaussianOptions g;
  g.d = cfg.i("data.d");
  g.covariance = cfg.s("data.covariance");
  g.power = cfg.f("data.power");
  const std::vector<double> s = gaussian_variances(g);
  std::vector<double> sq;
  double tr = 0, tr2 = 0;
  for (double v : s) sq.push_back(v * v), tr += v, tr2 += v * v;
  return json{{"D", g.d},
              {"covariance", g.covariance == "power" ? fmt::format("S_kk = k^-{}", g.power)
                                                     : std::string("S = I")},
              {"srk_S", stable_rank(s)},
              {"srk_S2", stable_rank(sq)},
              {"participation_ratio", tr * tr / tr2},
              {"n", cfg.i("data.n")}};
}

// Smallest D with tr(S)^2 / tr(S^2) >= 50 for S_kk = k^-1/2: the other reading of d_eff.
int64_t participation_ratio_dimension(double target) {
  double tr = 0, tr2 = 0;
  for (int64_t k = 1;; ++k) {
    tr += std::pow(double(k), -0.5), tr2 += 1.0 / double(k);
    if (tr * tr / tr2 >= target) return k;
  }
}

struct CurveData {
  std::string label;
  json inputs;
  std::map<int64_t, std::vector<double>> mu;  // by width m
  std::map<int64_t, double> p;
};

json curve_json(const std::string& experiment, const CurveData& c) {
  json widths = json::array();
  std::vector<double> x, y, wx, wmean, wvar;
  double lo = std::numeric_limits<double>::infinity(), hi = -lo;
  for (const auto& [m, mus] : c.mu) {
    const Moments s = moments_of(mus);
    const double lp = std::log(c.p.at(m));
    widths.push_back({{"m", m},
                      {"p", c.p.at(m)},
                      {"runs", mus.size()},
                      {"mean", s.mean},
                      {"std", s.std},
                      {"min", s.min},
                      {"max", s.max}});
    lo = std::min(lo, s.mean), hi = std::max(hi, s.mean);
    for (double v : mus) x.push_back(lp), y.push_back(v);
    wx.push_back(lp), wmean.push_back(s.mean);
    wvar.push_back(s.std * s.std / static_cast<double>(mus.size()));
  }
  if (c.mu.size() < 3 || *std::min_element(wvar.begin(), wvar.end()) <= 0)
    fail("{}: the slope test needs at least 3 widths with 2 or more distinct runs each",
         experiment);
  json j = {{"experiment", experiment},
            {"label", c.label},
            {"inputs", c.inputs},
            {"widths", widths},
            {"mean_min", lo},
            {"mean_max", hi},
            {"within_band", lo >= kBandLow && hi <= kBandHigh}};
  j["fit"] = wls_fit(wx, wmean, wvar);
  j["ols_all_runs"] = ols_fit(x, y);
  return j;
}

std::string curve_line(const json& c) {
  const json& f = c["fit"];
  const json& o = c["ols_all_runs"];
  const json& w = c["widths"];
  return fmt::format(
      "{}: mean mu {:.3f}..{:.3f} over p = {:.0f}..{:.0f}; weighted slope {:+.4f} +- {:.4f} per "
      "ln p (z = {:+.2f}, p = {:.2f}, chi2/dof = {:.1f}/{:.0f}: {}); OLS over all runs {:+.4f} "
      "+- {:.4f} (p = {:.2f})",
      c["label"].get<std::string>(), c["mean_min"].get<double>(), c["mean_max"].get<double>(),
      w.front()["p"].get<double>(), w.back()["p"].get<double>(), f["slope_per_ln_p"].get<double>(),
      f["slope_se"].get<double>(), f["z"].get<double>(), f["p_value"].get<double>(),
      f["chi2"].get<double>(), f["dof"].get<double>(), f["flat"].get<bool>() ? "flat" : "NOT flat",
      o["slope_per_ln_p"].get<double>(), o["slope_se"].get<double>(), o["p_value"].get<double>());
}

FigureSummary summarize(const std::vector<FigureRun>& runs, const FigureSettings& s) {
  FigureSummary out;
  json& j = out.numbers;
  j["n"] = kSamples;
  j["band"] = {kBandLow, kBandHigh};
  j["d_eff"] =
      "srk(S) = tr(S)/|S| = 50. The paper's d_eff = min(srk(S), srk(S^2)) cannot reach 50 for "
      "S_kk = k^-1/2 (srk(S^2) is the harmonic number H_D: D ~ e^49); the participation ratio "
      "tr(S)^2/tr(S^2) = 50 would give D = " +
      std::to_string(participation_ratio_dimension(50)) + ".";
  j["primary_theta"] = kThetas[0].name;
  json thetas = json::object();
  bool all_band = true, all_flat = true;
  double lo = std::numeric_limits<double>::infinity(), hi = -lo;
  for (const ThetaKind& t : kThetas) {
    const auto& asked = runs.front().spectra;
    if (std::none_of(asked.begin(), asked.end(),
                     [&](const SpectrumRequest& q) { return q.name == t.name; }))
      continue;
    std::map<std::string, CurveData> curves;
    std::vector<std::string> order;
    for (const auto& r : runs) {
      const std::string dir = r.dir(s.out);
      if (!curves.count(r.experiment)) {
        order.push_back(r.experiment);
        curves[r.experiment].label = r.label;
        curves[r.experiment].inputs =
            input_description(Config::load(RunPaths{dir}.file(run_files::kConfig)));
      }
      const Config cfg = Config::load(RunPaths{dir}.file(run_files::kConfig));
      const int64_t m = cfg.ints("model.hidden").front();
      const auto [mu, p] = run_mu(dir, t.name);
      curves[r.experiment].mu[m].push_back(mu);
      curves[r.experiment].p[m] = p;
    }
    json list = json::array();
    out.lines.push_back(fmt::format("mu at {}:", t.text));
    for (const auto& e : order) {
      list.push_back(curve_json(e, curves[e]));
      out.lines.push_back("  " + curve_line(list.back()));
      if (&t == &kThetas[0]) {
        all_band = all_band && list.back()["within_band"].get<bool>();
        all_flat = all_flat && list.back()["fit"]["flat"].get<bool>();
        lo = std::min(lo, list.back()["mean_min"].get<double>());
        hi = std::max(hi, list.back()["mean_max"].get<double>());
      }
    }
    thetas[t.name] = {{"description", t.text}, {"curves", list}};
  }
  j["thetas"] = thetas;
  j["acceptance"] = {{"theta", kThetas[0].name},
                     {"mean_mu_min", lo},
                     {"mean_mu_max", hi},
                     {"all_within_band", all_band},
                     {"all_slopes_flat", all_flat}};
  out.lines.push_back(fmt::format(
      "{}: mean mu within [{}, {}] at every width: {} (range {:.3f}..{:.3f}); every weighted "
      "slope indistinguishable from 0 (p > 0.05): {}",
      kThetas[0].name, kBandLow, kBandHigh, all_band ? "yes" : "NO", lo, hi,
      all_flat ? "yes" : "NO"));
  out.lines.push_back(j["d_eff"].get<std::string>());
  return out;
}

}  // namespace

Figure figure1() {
  Figure f;
  f.name = "fig1";
  f.summary =
      "loss alignment mu at random theta against p for a 4-layer linear net and a two-layer ReLU "
      "net (both layers trained), isotropic and anisotropic inputs with d_eff = 50, n = 20";
  f.plot_script = "experiments/plot_fig1.py";
  f.quick = fig1_runs(false);
  f.paper = fig1_runs(true);
  f.summarize = summarize;
  return f;
}

}  // namespace ng
