// Learning-rate search for escape experiments: the smallest learning rate at which the loss leaves
// the minimum within T steps, times a safety margin.
#include <fmt/format.h>

#include <cmath>
#include <limits>

#include "src/core/error.h"
#include "src/escape/engine.h"
#include "src/escape/escape.h"

namespace ng {

double escape_lr_start(Optimizer o, const CurvatureNumbers& c, double sgd_c) {
  if (o == Optimizer::Gd) {
    if (!(c.lambda1 > 0) || !std::isfinite(c.lambda1))
      fail("escape.lr: auto needs lambda_1 > 0 of G for GD (got {})", c.lambda1);
    return 2.0 / c.lambda1;
  }
  if (!(c.g_frobenius > 0) || !std::isfinite(c.g_frobenius))
    fail("escape.lr: auto needs |G|_F > 0 for SGD (got {})", c.g_frobenius);
  if (!(sgd_c > 0)) fail("escape.lr_search.sgd_c: must be > 0 (got {})", sgd_c);
  return sgd_c / c.g_frobenius;
}

double escape_lr_reference(Optimizer o, const CurvatureNumbers& c) {
  if (o == Optimizer::Gd)
    return c.lambda1 + c.lambda2 > 0 ? 4.0 / (c.lambda1 + c.lambda2)
                                     : std::numeric_limits<double>::quiet_NaN();
  return c.g_frobenius > 0 ? 1.2 / c.g_frobenius : std::numeric_limits<double>::quiet_NaN();
}

namespace {

void check_search_options(const LrSearchOptions& so, double start) {
  if (!(start > 0) || !std::isfinite(start))
    fail("escape.lr_search.start: must be a positive learning rate (got {})", start);
  if (!(so.growth > 1)) fail("escape.lr_search.growth: must be > 1 (got {})", so.growth);
  if (!(so.margin >= 1)) fail("escape.lr_search.margin: must be >= 1 (got {})", so.margin);
  if (!(so.rel_tol > 0)) fail("escape.lr_search.rel_tol: must be > 0 (got {})", so.rel_tol);
  if (so.max_expansions < 1)
    fail("escape.lr_search.max_expansions: must be >= 1 (got {})", so.max_expansions);
}

// One search's trials: probes a learning rate, records the trial and tells the listener.
class Trials {
 public:
  Trials(LrSearchResult* res, const std::function<LrTrial(double lr)>& probe,
         const std::function<void(const LrTrial&)>& on_trial)
      : res_(res), probe_(probe), on_trial_(on_trial) {}
  bool operator()(double lr, const char* phase) {
    LrTrial t = probe_(lr);
    t.lr = lr;
    t.phase = phase;
    res_->trials.push_back(t);
    if (on_trial_) on_trial_(t);
    return t.success;
  }

 private:
  LrSearchResult* res_;
  const std::function<LrTrial(double lr)>& probe_;
  const std::function<void(const LrTrial&)>& on_trial_;
};

// Geometric steps from `start`, down while it escapes or up while it fails, until the outcome
// flips: *lo fails, *hi escapes (NaN where no such lr was found).
void bracket(const LrSearchOptions& so, double start, Trials& attempt, double* lo, double* hi) {
  if (attempt(start, "start")) {
    *hi = start;
    for (int64_t i = 0; i < so.max_expansions; ++i) {
      const double lr = *hi / so.growth;
      if (!attempt(lr, "down")) {
        *lo = lr;
        break;
      }
      *hi = lr;
    }
  } else {
    *lo = start;
    for (int64_t i = 0; i < so.max_expansions; ++i) {
      const double lr = *lo * so.growth;
      if (attempt(lr, "up")) {
        *hi = lr;
        break;
      }
      *lo = lr;
    }
  }
}

// margin * hi, raised by margin again (at most 3 tries) while it fails: escape under SGD is random
// and need not be monotone in the learning rate.
void verify(const LrSearchOptions& so, double lo, double hi, Trials& attempt, LrSearchResult* res) {
  double chosen = so.margin * hi;
  for (int k = 0; k < 3; ++k) {
    if (attempt(chosen, "verify")) {
      res->found = true;
      res->chosen = chosen;
      break;
    }
    chosen *= so.margin;
  }
  if (res->found)
    res->message = fmt::format(
        "lr {:.6g} = {} x {:.6g}, the smallest escaping lr found ({}; largest failing {:.6g}), "
        "after {} trials",
        res->chosen, so.margin, hi, std::isnan(lo) ? "every lr tried escaped" : "bracketed", lo,
        res->trials.size());
  else
    res->message = fmt::format(
        "the smallest escaping lr found, {:.6g}, did not escape again at {} x (up to 3 tries)", hi,
        so.margin);
}

}  // namespace

LrSearchResult search_escape_lr(const LrSearchOptions& so, double start,
                                const std::function<LrTrial(double lr)>& probe,
                                const std::function<void(const LrTrial&)>& on_trial) {
  check_search_options(so, start);
  const double nan = std::numeric_limits<double>::quiet_NaN();
  LrSearchResult res;
  res.smallest_escaping = nan;
  res.largest_failing = nan;
  res.chosen = nan;
  Trials attempt(&res, probe, on_trial);

  double lo = nan, hi = nan;
  bracket(so, start, attempt, &lo, &hi);
  if (std::isnan(hi)) {
    res.largest_failing = lo;
    res.message = fmt::format("no learning rate escaped: tried {} up to {:.4g} ({} trials)", start,
                              lo, res.trials.size());
    return res;
  }
  if (!std::isnan(lo))
    while (hi / lo > 1 + so.rel_tol) {
      const double mid = std::sqrt(lo * hi);
      if (attempt(mid, "bisect"))
        hi = mid;
      else
        lo = mid;
    }
  res.smallest_escaping = hi;
  res.largest_failing = lo;
  verify(so, lo, hi, attempt, &res);
  return res;
}

LrSearchResult auto_escape_lr(const ModelFactory& factory, const at::Tensor& theta_star,
                              const at::Tensor& U, const Dataset& data, const EscapeOptions& base,
                              const CurvatureNumbers& curvature, const LrSearchOptions& so,
                              const std::function<void(const LrTrial&)>& on_trial) {
  if (so.probe_runs < 1)
    fail("escape.lr_search.probe_runs: must be at least 1 (got {})", so.probe_runs);
  if (!(so.required_fraction > 0 && so.required_fraction <= 1))
    fail("escape.lr_search.required_fraction: must be in (0, 1] (got {})", so.required_fraction);
  if (so.steps < 0) fail("escape.lr_search.steps: must be >= 0 (got {})", so.steps);
  EscapeOptions o = base;
  o.runs = so.probe_runs;
  // Unperturbed GD runs are all the same trajectory.
  if (o.optimizer == Optimizer::Gd && o.perturb == 0) o.runs = 1;
  if (so.steps > 0) o.steps = so.steps;
  o.stop_at_escape = true;
  o.energy = false;  // probes need only the loss
  const double start =
      so.start > 0 ? so.start : escape_lr_start(base.optimizer, curvature, so.sgd_c);
  o.lr = start;  // the base's lr is not chosen yet (0); every probe sets its own
  escape_detail::Engine engine(factory, theta_star, U, data, o);
  std::vector<int64_t> which(o.runs);
  for (int64_t r = 0; r < o.runs; ++r) which[r] = r;
  const int64_t need =
      static_cast<int64_t>(std::ceil(so.required_fraction * double(o.runs) - 1e-9));

  auto probe = [&](double lr) {
    engine.options().lr = lr;
    LrTrial t;
    t.lr = lr;
    for (const auto& r : engine.execute(which, {})) {
      ++t.runs;
      if (r.escaped) ++t.escaped;
      t.escape_steps.push_back(r.escape_step);
    }
    t.success = t.escaped >= need;
    return t;
  };
  LrSearchResult res = search_escape_lr(so, start, probe, on_trial);
  res.reference = escape_lr_reference(base.optimizer, curvature);
  return res;
}

}  // namespace ng
