// Named escape sweeps: the run, its spectrum, the learning rate (given, searched or reused), the
// resumable sweep, and the sweep's record.
#include "src/study/escape_study.h"

#include <ATen/ATen.h>
#include <fmt/format.h>
#include <fmt/ranges.h>
#include <torch/nn/module.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <filesystem>
#include <limits>
#include <sstream>

#include "data/sha256.h"
#include "models/params.h"
#include "src/core/error.h"
#include "src/core/memory.h"
#include "src/core/stop.h"
#include "src/dist/dist.h"
#include "src/io/files.h"
#include "src/io/rundir.h"
#include "src/study/escape_files.h"
#include "src/study/spectrum_study.h"
#include "src/training/train.h"

namespace fs = std::filesystem;

namespace ng {
namespace {

using Clock = std::chrono::steady_clock;

class Say {
 public:
  explicit Say(bool quiet) : quiet_(quiet) {}
  template <typename... Args>
  void operator()(fmt::format_string<Args...> f, Args&&... args) const {
    if (!quiet_)
      fmt::print(stderr, "noisegeom escape: {}\n", fmt::format(f, std::forward<Args>(args)...));
  }

 private:
  bool quiet_;
};

double median(std::vector<double> v) {
  if (v.empty()) return std::nan("");
  std::sort(v.begin(), v.end());
  const size_t m = v.size();
  return m % 2 ? v[m / 2] : 0.5 * (v[m / 2 - 1] + v[m / 2]);
}

// The spectrum the sweep follows: loaded, or computed first with k = max(ks): exact over all
// samples where its rows fit the default row budget (products, Gram solver and |G|_F exact from
// them), else the paper's b = 2k per-sample estimate, which at the quick scale overstates
// lambda_1 by up to 1.9x (figA) and with it misplaces GD's stability edge.
StoredSpectrum directions(LoadedRun& run, const EscapeRequest& r, int64_t p,
                          const StudyContext& ctx) {
  const std::string& run_dir = run.dir;
  const std::string dir = RunPaths{run_dir}.spectrum(r.spectrum);
  if (std::optional<StoredSpectrum> sp = find_spectrum(dir, p)) return *sp;
  SpectrumRequest s;
  s.name = r.spectrum;
  s.options.k = r.options.ks.back();
  const bool ce =
      loss_names().parse(run.cfg.s("train.loss"), "train.loss") == LossKind::CrossEntropy;
  const int64_t n = run.data.size(), c = run.data.targets.size(1);
  const int64_t budget = default_row_budget(run.torch_device());
  const bool fit = exact_rows_fit(n, c, p, s.options.dtype, ce, budget);
  const int64_t need = exact_row_bytes(n, c, p, s.options.dtype, ce);
  if (fit) s.options.estimator = Estimator::Exact;
  Say(ctx.quiet)(
      "{} has no spectrum '{}'; computing it: spectrum --name {} --k {} --estimator {} ({})",
      run_dir, r.spectrum, r.spectrum, s.options.k, estimator_names().name(s.options.estimator),
      fit ? fmt::format("its rows over all {} samples take {} of the {} row budget", n,
                        format_bytes(need), format_bytes(budget))
          : fmt::format("exact rows would take {}, over the {} row budget; b = 2k",
                        format_bytes(need), format_bytes(budget)));
  StoredSpectrum out = ensure_spectrum(run_dir, s, ctx, false, &run).spectrum;
  if (out.U.size(0) != p) fail("{}: U does not match the model's p = {}", dir, p);
  return out;
}

// The settings a learning-rate search depends on: a stored search is reused only for the same.
json lr_search_request(const EscapeOptions& o, const CurvatureNumbers& c,
                       const std::string& theta_sha) {
  json j{{"optimizer", optimizer_names().name(o.optimizer)},
         {"steps", o.steps},
         {"batch", o.batch},
         {"perturb", o.perturb},
         {"seed", o.seed},
         {"escape_factor", o.escape_factor},
         {"log_every", o.log_every},
         {"eval_samples", o.eval_samples},
         {"gd_samples", o.gd_samples},
         {"lambda1", c.lambda1},
         {"lambda2", c.lambda2},
         {"frobenius_G", c.g_frobenius},
         {"theta_sha256", theta_sha}};
  if (o.escape_loss > 0) j["escape_loss"] = o.escape_loss;
  return j;
}

json trials_json(const std::vector<LrTrial>& trials) {
  json out = json::array();
  for (const auto& t : trials)
    out.push_back({{"lr", t.lr},
                   {"phase", t.phase},
                   {"runs", t.runs},
                   {"escaped", t.escaped},
                   {"escape_steps", t.escape_steps},
                   {"success", t.success}});
  return out;
}

struct Inputs {
  ModelFactory factory;
  at::Tensor theta_star, U;
  const Dataset* data = nullptr;
};

// The learning rate: searched (json with the search) unless given; a search with the same
// settings stored in the sweep's record is reused, since it costs as much as several sweeps.
json choose_lr(const EscapeRequest& r, EscapeOptions& e, const Inputs& in,
               const CurvatureNumbers& curv, const json& old, const std::string& theta_sha,
               const Say& say) {
  const std::string opt = optimizer_names().name(e.optimizer);
  if (r.lr_paper) {
    e.lr = escape_lr_reference(e.optimizer, curv);
    say("{}: the paper's learning rate {} = {:.6g}", opt,
        e.optimizer == Optimizer::Sgd ? "1.2/|G|_F" : "4/(lambda_1 + lambda_2)", e.lr);
    return json{{"mode", "paper"},
                {"reference", e.lr},
                {"rule", e.optimizer == Optimizer::Sgd ? "1.2/|G|_F" : "4/(lambda_1 + lambda_2)"}};
  }
  if (e.lr > 0) return json{{"mode", "given"}};
  const json request = lr_search_request(e, curv, theta_sha);
  if (old.is_object() && old.contains("lr_search") &&
      old["lr_search"].value("request", json()) == request && old["lr"].is_number()) {
    e.lr = old["lr"].get<double>();
    say("{}: reusing the learning rate searched before: lr = {:.6g}", opt, e.lr);
    return old["lr_search"];
  }
  say("{}: searching the learning rate (start {:.6g}, paper's reference {:.6g})", opt,
      escape_lr_start(e.optimizer, curv), escape_lr_reference(e.optimizer, curv));
  const LrSearchResult s = auto_escape_lr(
      in.factory, in.theta_star, in.U, *in.data, e, curv, LrSearchOptions{}, [&](const LrTrial& t) {
        say("  tried lr {:.6g} ({}): {}/{} probe runs escaped", t.lr, t.phase, t.escaped, t.runs);
      });
  if (!s.found) fail("--lr auto: {}", s.message);
  e.lr = s.chosen;
  say("{}: chose lr = {:.6g} ({})", opt, e.lr, s.message);
  return json{{"mode", "auto"},
              {"request", request},
              {"message", s.message},
              {"reference", escape_lr_reference(e.optimizer, curv)},
              {"trials", trials_json(s.trials)}};
}

// Means over runs of p_k, |p_k|, r_k at each run's last finite point.
json final_means(const std::vector<RunResult>& runs, size_t nk) {
  std::vector<double> p(nk, 0), abs_p(nk, 0), r(nk, 0);
  int64_t ended = 0;
  for (const auto& run : runs) {
    // A diverged run ends on a non-finite point: its end is its last finite one.
    const TrajectoryPoint* last = nullptr;
    for (const auto& pt : run.trajectory)
      if (std::isfinite(pt.loss) && std::isfinite(pt.distance)) last = &pt;
    if (!last) continue;
    ++ended;
    for (size_t j = 0; j < nk && j < last->p.size(); ++j) {
      p[j] += last->p[j];
      abs_p[j] += std::abs(last->p[j]);
      r[j] += last->r[j];
    }
  }
  for (size_t j = 0; j < nk; ++j) {
    p[j] /= ended;
    abs_p[j] /= ended;
    r[j] /= ended;
  }
  return json{{"final", "mean over runs at each run's last logged point with a finite loss"},
              {"final_mean_p", p},
              {"final_mean_abs_p", abs_p},
              {"final_mean_r", r}};
}

// The sweep's settings are its request (resolved against the run); the rest is what it found.
json sweep_record(const EscapeRequest& req, const json& request, const EscapeOptions& e,
                  const EscapeResult& res, const json& lr_search, const StoredSpectrum& spec,
                  const std::string& run_dir, double wall_seconds) {
  std::vector<double> escape_steps;
  int64_t diverged = 0;
  double compute_seconds = 0;
  for (const auto& r : res.runs) {
    if (r.escaped) escape_steps.push_back(static_cast<double>(r.escape_step));
    diverged += r.status == "diverged";
    compute_seconds += r.seconds;
  }
  json j = {
      {"tool", "noisegeom"},
      {"version", version()},
      {"name", req.sweep_name()},
      {"request", request},
      {"run_dir", run_dir},
      {"lr", e.lr},
      {"lr_mode", lr_search.value("mode", "given")},
      {"lr_search", lr_search},
      {"runs", static_cast<int64_t>(res.runs.size())},
      {"escaped_runs", res.escaped_count()},
      {"diverged_runs", diverged},
      {"median_escape_step", median(escape_steps)},
      {"median_r_over_p_at_escape", median_ratio_at_escape(res.runs, res.threshold, e.ks.size())}};
  j.update(final_means(res.runs, e.ks.size()));
  j.update(json{{"seconds", compute_seconds},
                {"sweep_wall_seconds", res.seconds},
                {"wall_seconds_last_call", wall_seconds},
                {"computed_last_call", res.computed},
                {"reused_last_call", res.reused},
                {"lambda_1", spec.lambda(1)},
                {"lambda_2", spec.eigenvalues.numel() > 1 ? spec.lambda(2) : 0.0},
                {"frobenius_G", spec.number("frobenius_G")},
                {"srk_G2", spec.number("srk_G2")},
                {"escape_criterion",
                 {{"rule",
                   "a run has escaped at its first logged step whose loss on the evaluation "
                   "subset exceeds escape_loss when > 0, else escape_factor * L(theta*)"},
                  {"escape_loss", e.escape_loss},
                  {"escape_factor", e.escape_factor},
                  {"loss_star", res.loss_star},
                  {"threshold", res.threshold}}}});
  if (e.energy)
    j["energy"] = {
        {"rule",
         "X = lambda_1 <d, u_1>^2, Y = d_perp^T G d_perp (d_perp = d - <d, u_1> u_1), "
         "D_1 = Y / X, d = theta_t - theta*, G over the spectrum's samples"},
        {"lambda_1", res.energy_lambda1},
        {"samples", e.energy_samples.empty() ? json("all") : json(e.energy_samples.size())}};
  return j;
}

// The run's options resolved: batch, loss, dtype and device from the run; ks against K.
EscapeOptions resolve_options(const EscapeRequest& r, const LoadedRun& run, int64_t K,
                              const std::string& vec_file) {
  EscapeOptions e = r.options;
  if (e.runs == 0) e.runs = default_escape_runs(e.optimizer);
  if (e.batch == 0) e.batch = run.cfg.i("train.batch_size");
  e.loss = loss_names().parse(run.cfg.s("train.loss"),
                              RunPaths{run.dir}.file(run_files::kConfig) + ": train.loss");
  e.dtype = run.dtype;
  e.device = run.torch_device();
  if (r.ks_given) {
    if (e.ks.back() > K)
      fail("--ks: k = {} exceeds the K = {} eigenvectors in {}", e.ks.back(), K, vec_file);
  } else {
    for (auto& k : e.ks) k = std::min(k, K);
    e.ks.erase(std::unique(e.ks.begin(), e.ks.end()), e.ks.end());
  }
  return e;
}

// The settings of a sweep as the user sees them, resolved against the run (batch, ks): a name
// holds one of these, checked before any work (a learning-rate search costs several sweeps).
json sweep_request(const EscapeRequest& r, const EscapeOptions& e) {
  json j{{"spectrum", r.spectrum},
         {"optimizer", optimizer_names().name(e.optimizer)},
         {"steps", e.steps},
         {"lr", r.lr_paper ? json("paper")
                : e.lr > 0 ? json(e.lr)
                           : json("auto")},
         {"batch", e.batch},
         {"ks", e.ks},
         {"log_every", e.log_every},
         {"perturb", e.perturb},
         {"seed", e.seed},
         {"escape_factor", e.escape_factor},
         {"stop_at_escape", e.stop_at_escape},
         {"eval_samples", e.eval_samples},
         {"gd_samples", e.gd_samples}};
  // Only when asked: the records of sweeps made without them keep their request.
  if (e.energy) j["energy"] = true;
  if (e.escape_loss > 0) j["escape_loss"] = e.escape_loss;
  if (e.max_loss_factor != EscapeOptions{}.max_loss_factor)
    j["max_loss_factor"] = e.max_loss_factor;
  return j;
}

void require_same_sweep(const std::string& dir, const std::string& name, const json& request,
                        const json& old) {
  if (!old.is_object() || !old.contains("request")) return;  // escape.json still guards the runs
  const std::string key = first_difference(request, old["request"]);
  if (!key.empty())
    fail(
        "{}/{}: sweep '{}' was made with other settings ({} differs: {} there, {} asked); use "
        "another --name",
        dir, escape_files::kRecord, name, key,
        (old["request"].is_object() ? old["request"].value(key, json()) : old["request"]).dump(),
        request.value(key, json()).dump());
}

// The spectrum's samples (positions into the training set, from its samples.csv); empty when
// they are all n in order, so that the energy's G uses the data as they are.
std::string spectrum_samples_file(const std::string& spectrum_dir) {
  return (fs::path(spectrum_dir) / spectrum_files::kSamples).string();
}
// `text`: that file's.
std::vector<int64_t> spectrum_positions(const std::string& spectrum_dir, const std::string& text,
                                        int64_t n) {
  const std::string file = spectrum_samples_file(spectrum_dir);
  std::istringstream in(text);
  std::string line;
  if (!std::getline(in, line) || line.rfind("position,", 0) != 0)
    fail("{}: expected a header starting with 'position,'", file);
  std::vector<int64_t> pos;
  bool identity = true;
  while (std::getline(in, line)) {
    if (line.empty()) continue;
    char* end = nullptr;
    const long long v = std::strtoll(line.c_str(), &end, 10);
    if (end == line.c_str() || *end != ',' || v < 0 || v >= n)
      fail("{}: line {}: expected a position in 0..{}", file, pos.size() + 2, n - 1);
    identity = identity && v == static_cast<long long>(pos.size());
    pos.push_back(v);
  }
  if (pos.empty()) fail("{}: no samples", file);
  if (identity && static_cast<int64_t>(pos.size()) == n) pos.clear();
  return pos;
}

// The paper's rates need the curvature exactly: SGD's 1.2/|G|_F is off by the estimate's error
// when |G|_F is a Hutchinson estimate (10% with 100 probes).
void check_paper_lr(const StoredSpectrum& sp, const CurvatureNumbers& c, bool sgd) {
  if (sgd) {
    if (!(c.g_frobenius > 0)) fail("--lr paper: {} has no frobenius_G", sp.dir);
    const double se = sp.number("frobenius_G_se");
    if (!(se == 0))
      fail(
          "--lr paper: frobenius_G in {} is an estimate (standard error {:.3g}); compute the "
          "spectrum with rows (--estimator per-sample, or exact within --row-budget) so that "
          "|G|_F is exact",
          sp.dir, se);
  } else if (!(c.lambda1 > 0) || !(c.lambda2 >= 0) || sp.eigenvalues.numel() < 2) {
    fail("--lr paper: GD's 4/(lambda_1 + lambda_2) needs two eigenvalues of G in {}", sp.dir);
  }
}

}  // namespace

std::string EscapeRequest::sweep_name() const {
  return name.empty() ? optimizer_names().name(options.optimizer) : name;
}

void validate(const EscapeRequest& r) {
  const EscapeOptions& o = r.options;
  if (!r.name.empty()) check_analysis_name(r.name, "--name");
  check_analysis_name(r.spectrum, "--spectrum");
  if (o.runs < 0) fail("--runs: expected a number of runs >= 1, got {}", o.runs);
  if (o.steps < 1) fail("--steps: expected a number of steps >= 1, got {}", o.steps);
  if (!(o.lr >= 0) || !std::isfinite(o.lr))
    fail("--lr: expected a positive learning rate or auto, got {}", o.lr);
  if (o.batch < 0) fail("--batch: expected a batch size >= 1, got {}", o.batch);
  if (o.ks.empty()) fail("--ks: expected a list such as 1,5,10,20");
  for (size_t j = 0; j < o.ks.size(); ++j)
    if (o.ks[j] < 1 || (j > 0 && o.ks[j] <= o.ks[j - 1]))
      fail("--ks: expected increasing k >= 1 such as 1,5,10,20, got {}",
           fmt::format("{}", fmt::join(o.ks, ",")));
  if (o.log_every < 1) fail("--log-every: expected a number of steps >= 1, got {}", o.log_every);
  if (!(o.perturb >= 0) || !std::isfinite(o.perturb))
    fail("--perturb: expected sigma >= 0, got {}", o.perturb);
  if (!(o.escape_factor > 1) || !std::isfinite(o.escape_factor))
    fail("--escape-factor: expected a factor > 1 on L(theta*), got {}", o.escape_factor);
  if (!(o.escape_loss >= 0) || !std::isfinite(o.escape_loss))
    fail("--escape-loss: expected a loss >= 0 (0: use --escape-factor), got {}", o.escape_loss);
  if (!(o.max_loss_factor > 1))
    fail("--max-loss-factor: expected a factor > 1, got {}", o.max_loss_factor);
  if (o.eval_samples < 0) fail("--eval-samples: expected a number >= 0, got {}", o.eval_samples);
  if (o.gd_samples < 0) fail("--gd-samples: expected a number >= 0, got {}", o.gd_samples);
}

std::vector<double> median_ratio_at_escape(const std::vector<RunResult>& runs, double threshold,
                                           size_t nk) {
  std::vector<double> out;
  for (size_t j = 0; j < nk; ++j) {
    std::vector<double> ratios;
    for (const auto& run : runs) {
      const TrajectoryPoint* at = nullptr;
      for (const auto& pt : run.trajectory) {
        if (j >= pt.p.size() || !std::isfinite(pt.p[0])) break;
        at = &pt;
        if (!(pt.loss <= threshold)) break;
      }
      if (!at) continue;
      const double p = std::abs(at->p[j]);
      ratios.push_back(p > 0 ? at->r[j] / p : std::numeric_limits<double>::infinity());
    }
    out.push_back(median(ratios));
  }
  return out;
}

EscapeOutcome run_escape_study(const std::string& run_dir, const EscapeRequest& r,
                               const StudyContext& ctx) {
  const auto t_start = Clock::now();
  validate(r);
  const Say say(ctx.quiet);
  const RunPaths paths{run_dir};
  LoadedRun run = load_run(run_dir, ctx.data_dir);  // rank 0 reads it: see load_run
  Inputs in;
  in.theta_star = ParameterLayout::of(*run.model).values();
  in.data = &run.data;
  const ModelSpec spec = model_spec_from_config(run.cfg, run.data.num_classes,
                                                run.data.x.dim() == 2 ? run.data.x.size(1) : 0);
  in.factory = [spec] { return make_model(spec); };

  // theta* and the factory are taken above: a spectrum computed here uses the run's model in place.
  const StoredSpectrum sp = directions(run, r, in.theta_star.numel(), ctx);
  in.U = sp.U;
  EscapeOptions e = resolve_options(r, run, sp.U.size(1), sp.dir);
  CurvatureNumbers curv;
  curv.lambda1 = sp.lambda(1);
  curv.lambda2 = sp.eigenvalues.numel() > 1 ? sp.lambda(2) : 0.0;
  curv.g_frobenius = sp.number("frobenius_G");
  const bool sgd = e.optimizer == Optimizer::Sgd;
  if (r.lr_paper) check_paper_lr(sp, curv, sgd);
  if (e.energy)
    e.energy_samples = spectrum_positions(
        sp.dir, decided_by_root([&] { return read_file(spectrum_samples_file(sp.dir)); }),
        run.data.size());
  if (!r.lr_paper && e.lr == 0 && sgd && !(curv.g_frobenius > 0))
    fail("--lr auto: {} has no frobenius_G to start the SGD search from; give --lr", sp.dir);
  if (!r.lr_paper && e.lr == 0 && !sgd && !(curv.lambda1 > 0))
    fail("--lr auto: lambda_1 = {} in {} is not positive; give --lr", curv.lambda1, sp.dir);

  const std::string dir = paths.escape(r.sweep_name());
  const json request = sweep_request(r, e);
  // The sweep's last record (settings, searched lr) and theta's hash: rank 0's files.
  const json found = json::parse(decided_by_root([&] {
    return json{{"theta_sha256", file_sha256(paths.file(run_files::kTheta))},
                {"record", find_escape_record(dir)}}
        .dump();
  }));
  const std::string theta_sha = found.at("theta_sha256");
  const json old = found.at("record");
  require_same_sweep(dir, r.sweep_name(), request, old);
  const json lr_search = choose_lr(r, e, in, curv, old, theta_sha, say);
  const std::string opt = optimizer_names().name(e.optimizer);
  say("{}: {} run(s) x {} steps, lr {:.6g}, {}, ks {}, -> {}", opt, e.runs, e.steps, e.lr,
      sgd ? fmt::format("batch {}", e.batch) : "full batch",
      fmt::format("{}", fmt::join(e.ks, ",")), dir);
  if (dist().is_root()) fs::create_directories(dir);  // under a launcher rank 0 writes
  int64_t done = 0;
  const auto t_sweep = Clock::now();
  EscapeHooks hooks;
  hooks.should_stop = should_stop;  // reproduce's --budget and Ctrl-C: finished runs are kept
  hooks.on_run_done = [&](const RunResult& res) {
    ++done;
    const double el = seconds_since(t_sweep);
    say("{} run {} done ({}) | {}/{} runs | ETA {}", opt, res.run,
        res.escaped ? fmt::format("escaped at step {}{}", res.escape_step,
                                  res.status == "diverged" ? ", then diverged" : "")
                    : res.status,
        done, e.runs, format_duration(done > 0 ? el / done * (e.runs - done) : NAN));
  };
  const EscapeResult res =
      run_escape_sweep(dir, in.factory, in.theta_star, in.U, run.data, e, hooks);
  if (res.reused > 0)
    say("{}: reused {} finished run(s), computed {}", opt, res.reused, res.computed);
  if (static_cast<int64_t>(res.runs.size()) < e.runs) {  // stopped: no record until complete
    say("{}: {} with {}/{} runs finished; the same request computes the rest", opt,
        stop_description(), res.runs.size(), e.runs);
    return {dir, json(), res.reused, res.computed};
  }

  const json record =
      sweep_record(r, request, e, res, lr_search, sp, run_dir, seconds_since(t_start));
  if (dist().is_root())
    write_escape_record(dir, record, trajectories_csv(opt, e.lr, e.ks, res.runs, e.energy));
  const double med = record["median_escape_step"].is_number()
                         ? record["median_escape_step"].get<double>()
                         : std::nan("");
  say("{}: done | {}/{} runs escaped ({} diverged) | median escape step {} | L(theta*) {:.4g}, "
      "threshold {:.4g} | srk(G^2) {:.3g} | -> {}",
      opt, res.escaped_count(), res.runs.size(), record["diverged_runs"].get<int64_t>(),
      std::isfinite(med) ? fmt::format("{}", med) : "-", res.loss_star, res.threshold,
      sp.number("srk_G2"), dir);
  return {dir, record, res.reused, res.computed};
}

}  // namespace ng
