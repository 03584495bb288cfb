// escape: SGD and GD trajectories from a run's minimum theta*, tracked along the top eigenvectors
// of G (Section 6, Figure 6), into RUN_DIR/escape/.
//
// Layout: RUN_DIR/escape/<optimizer>/ is the resumable sweep of the escape library (run_NNNN.csv,
// escape.json, summary.csv) plus this command's record of the sweep (cli_result.json,
// cli_trajectories.csv). RUN_DIR/escape/trajectories.csv and summary.json are rebuilt from the
// records of every optimizer present, so that an SGD sweep and a GD sweep run by separate
// invocations end up in one file each.
#include <ATen/ATen.h>
#include <fmt/format.h>
#include <torch/nn/module.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <filesystem>
#include <map>
#include <sstream>

#include "src/cli/args.h"
#include "src/cli/commands.h"
#include "src/core/error.h"
#include "src/curvature/params.h"
#include "src/escape/escape.h"
#include "src/io/files.h"
#include "src/io/rundir.h"
#include "src/spectrum/spectrum.h"
#include "src/training/train.h"

namespace fs = std::filesystem;

namespace ng {
namespace {

const char* kOptimizers[] = {"gd", "sgd"};

std::string g17(double v) {
  return std::isfinite(v) ? fmt::format("{:.17g}", v) : "nan";
}

std::vector<int64_t> parse_ks(const std::string& s) {
  std::vector<int64_t> ks;
  std::stringstream in(s);
  std::string item;
  while (std::getline(in, item, ',')) ks.push_back(int_value(item, "--ks", 1));
  if (ks.empty()) fail("--ks: expected a list such as 1,5,10,20, got '{}'", s);
  std::sort(ks.begin(), ks.end());
  ks.erase(std::unique(ks.begin(), ks.end()), ks.end());
  return ks;
}

std::string json_list(const std::vector<double>& v) {
  std::string s = "[";
  for (size_t j = 0; j < v.size(); ++j)
    s += (j ? ", " : "") + (std::isfinite(v[j]) ? fmt::format("{}", v[j]) : std::string("null"));
  return s + "]";
}

std::vector<std::string> split_csv_line(const std::string& line) {
  std::vector<std::string> out;
  std::stringstream in(line);
  std::string cell;
  while (std::getline(in, cell, ',')) out.push_back(cell);
  if (!line.empty() && line.back() == ',') out.push_back("");
  return out;
}

// RUN_DIR/escape/trajectories.csv from every optimizer's cli_trajectories.csv; the k columns are
// the union of the sweeps' ks (empty cells where a sweep did not record a k).
std::string combined_trajectories(const fs::path& root) {
  struct Table {
    std::vector<std::string> header;
    std::vector<std::vector<std::string>> rows;
  };
  std::vector<Table> tables;
  std::vector<int64_t> ks;
  for (const char* o : kOptimizers) {
    const fs::path f = root / o / "cli_trajectories.csv";
    if (!fs::exists(f)) continue;
    std::istringstream in(read_file(f.string()));
    std::string line;
    Table t;
    if (!std::getline(in, line)) continue;
    t.header = split_csv_line(line);
    for (const auto& h : t.header)
      if (h.size() > 2 && h.compare(0, 2, "p_") == 0) ks.push_back(std::stoll(h.substr(2)));
    while (std::getline(in, line))
      if (!line.empty()) t.rows.push_back(split_csv_line(line));
    tables.push_back(std::move(t));
  }
  std::sort(ks.begin(), ks.end());
  ks.erase(std::unique(ks.begin(), ks.end()), ks.end());
  std::vector<std::string> columns = {"optimizer", "run", "step", "lr", "loss", "distance"};
  for (int64_t k : ks) {
    columns.push_back(fmt::format("p_{}", k));
    columns.push_back(fmt::format("r_{}", k));
  }
  std::string out;
  for (size_t c = 0; c < columns.size(); ++c) out += (c ? "," : "") + columns[c];
  out += "\n";
  for (const auto& t : tables) {
    std::vector<int> where(columns.size(), -1);
    for (size_t c = 0; c < columns.size(); ++c)
      for (size_t h = 0; h < t.header.size(); ++h)
        if (t.header[h] == columns[c]) where[c] = static_cast<int>(h);
    for (const auto& row : t.rows) {
      for (size_t c = 0; c < columns.size(); ++c) {
        if (c) out += ",";
        if (where[c] >= 0 && where[c] < static_cast<int>(row.size())) out += row[where[c]];
      }
      out += "\n";
    }
  }
  return out;
}

std::string combined_summary(const fs::path& root, const std::string& run_dir) {
  Json opts;
  for (const char* o : kOptimizers) {
    const fs::path f = root / o / "cli_result.json";
    if (!fs::exists(f)) continue;
    std::string body = read_file(f.string());
    while (!body.empty() && body.back() == '\n') body.pop_back();
    opts.raw(o, body);
  }
  Json j;
  j.str("tool", "noisegeom")
      .str("version", version())
      .str("run_dir", run_dir)
      .str("trajectories", "trajectories.csv (optimizer,run,step,lr,loss,distance,p_k,r_k)")
      .raw("optimizers", opts.dump());
  return j.dump() + "\n";
}

// The settings the lr search depends on: a stored search is reused only for the same ones.
std::string lr_search_request(const EscapeOptions& o, const CurvatureNumbers& c,
                              const std::string& theta_sha) {
  return fmt::format(
      "optimizer={} steps={} batch={} perturb={} seed={} escape_factor={} log_every={} "
      "eval_samples={} gd_samples={} lambda1={} lambda2={} frob={} theta={}",
      to_string(o.optimizer), o.steps, o.batch, g17(o.perturb), o.seed, g17(o.escape_factor),
      o.log_every, o.eval_samples, o.gd_samples, g17(c.lambda1), g17(c.lambda2), g17(c.g_frobenius),
      theta_sha);
}

std::string trials_json(const std::vector<LrTrial>& trials) {
  // One line, so that a later invocation can read it back with Json::field.
  std::string s = "[";
  for (size_t j = 0; j < trials.size(); ++j) {
    const auto& t = trials[j];
    std::string steps = "[";
    for (size_t q = 0; q < t.escape_steps.size(); ++q)
      steps += (q ? ", " : "") + std::to_string(t.escape_steps[q]);
    steps += "]";
    s += fmt::format(
        "{}{{\"lr\": {}, \"phase\": {}, \"runs\": {}, \"escaped\": {}, "
        "\"escape_steps\": {}, \"success\": {}}}",
        j ? ", " : "", t.lr, Json::quote(t.phase), t.runs, t.escaped, steps,
        t.success ? "true" : "false");
  }
  return s + "]";
}

// The command; with check_only, returns once the options are checked (reproduce checks a
// figure's jobs before it trains).
int escape_command(const std::vector<std::string>& argv, bool check_only) {
  const auto t_start = std::chrono::steady_clock::now();
  const Args a = parse_args(
      argv,
      {{"--quiet", "--stop-at-escape"},
       {"--optimizer", "--runs", "--steps", "--lr", "--batch", "--ks", "--log-every", "--perturb",
        "--seed", "--escape-factor", "--eval-samples", "--gd-samples", "--data-dir"},
       {}},
      "escape");
  if (a.positional.size() != 1) throw UsageError{"escape: expected exactly one RUN_DIR"};
  const std::string run_dir = a.positional[0];
  const bool quiet = a.has("--quiet");
  auto say = [&](const std::string& s) {
    if (!quiet) fmt::print(stderr, "noisegeom escape: {}\n", s);
  };

  // Every option is checked before anything is loaded or written.
  if (a.get("--optimizer").empty()) fail("--optimizer: required (sgd or gd)");
  EscapeOptions e;
  e.optimizer = parse_escape_optimizer(a.get("--optimizer"), "--optimizer");
  const std::string opt_name = to_string(e.optimizer);
  const bool sgd = e.optimizer == EscapeOptimizer::Sgd;
  e.runs = a.integer("--runs", sgd ? 50 : 1, 1);
  e.steps = a.integer("--steps", 500, 1);
  e.log_every = a.integer("--log-every", 10, 1);
  const std::string lr_arg = a.get("--lr", "auto");
  const bool lr_auto = lr_arg == "auto";
  if (!lr_auto) {
    e.lr = number_value(lr_arg, "--lr", true);
  }
  const bool ks_given = !a.get("--ks").empty();
  std::vector<int64_t> ks = parse_ks(a.get("--ks", "1,5,10,20"));
  e.perturb = a.number("--perturb", 0, false);
  if (e.perturb < 0) fail("--perturb: expected sigma >= 0, got '{}'", a.get("--perturb"));
  e.seed = static_cast<uint64_t>(a.integer("--seed", 0, 0));
  e.escape_factor = a.number("--escape-factor", 10, false);
  if (e.escape_factor <= 1)
    fail("--escape-factor: expected a factor > 1 on L(theta*), got '{}'", a.get("--escape-factor"));
  e.stop_at_escape = a.has("--stop-at-escape");
  e.eval_samples = a.integer("--eval-samples", 0, 0);
  e.gd_samples = a.integer("--gd-samples", 0, 0);
  const std::string data_dir = a.get("--data-dir");
  if (check_only) return 0;

  if (!fs::is_directory(run_dir)) fail("{}: no such run directory", run_dir);
  if (!fs::exists(fs::path(run_dir) / "theta.pt"))
    fail("{}: missing (did the training finish?)", (fs::path(run_dir) / "theta.pt").string());
  LoadedRun run = load_run(run_dir, data_dir);
  e.batch = a.integer("--batch", run.cfg.i("train.batch_size"), 1);
  e.cross_entropy = run.cfg.s("train.loss") == "cross_entropy";
  e.dtype = run.dtype;
  e.device = c10::Device(run.device == "cuda" ? c10::kCUDA : c10::kCPU);

  // The directions: the run's spectrum, computed first when there is none.
  const fs::path spec_dir = fs::path(run_dir) / "spectrum";
  const fs::path vec_file = spec_dir / "eigenvectors.pt";
  if (!fs::exists(vec_file)) {
    SpectrumOptions so;
    so.k = ks.back();
    so.data_dir = data_dir;
    so.quiet = quiet;
    say(fmt::format("{} has no spectrum; computing it (spectrum --k {}, default options)", run_dir,
                    so.k));
    run_spectrum(run_dir, so);
  }
  const c10::IValue saved = load_ivalue(vec_file.string());
  if (!saved.isGenericDict())
    fail("{}: expected a dict with 'U' and 'eigenvalues'", vec_file.string());
  const auto dict = saved.toGenericDict();
  if (!dict.contains("U") || !dict.contains("eigenvalues"))
    fail("{}: expected a dict with 'U' and 'eigenvalues'", vec_file.string());
  const at::Tensor U = dict.at("U").toTensor().to(at::kDouble).contiguous();
  const at::Tensor eig = dict.at("eigenvalues").toTensor().to(at::kDouble).contiguous();
  const at::Tensor theta_star = ParameterLayout::of(*run.model).values();
  if (U.dim() != 2 || U.size(0) != theta_star.numel())
    fail("{}: U is not p x K with p = {} (a spectrum of another model?)", vec_file.string(),
         theta_star.numel());
  const int64_t K = U.size(1);
  if (ks_given) {
    if (ks.back() > K)
      fail("--ks: k = {} exceeds the K = {} eigenvectors in {}", ks.back(), K, vec_file.string());
  } else {
    for (auto& k : ks) k = std::min(k, K);
    ks.erase(std::unique(ks.begin(), ks.end()), ks.end());
  }
  e.ks = ks;

  const std::string spec_summary = fs::exists(spec_dir / "summary.json")
                                       ? read_file((spec_dir / "summary.json").string())
                                       : std::string();
  CurvatureNumbers curv;
  curv.lambda1 = eig.numel() > 0 ? eig[0].item<double>() : std::nan("");
  curv.lambda2 = eig.numel() > 1 ? eig[1].item<double>() : 0.0;
  curv.g_frobenius = Json::number_field(spec_summary, "frobenius_G");
  const double srk_g2 = Json::number_field(spec_summary, "srk_G2");
  if (lr_auto && sgd && !(curv.g_frobenius > 0))
    fail("--lr auto: {} has no frobenius_G to start the SGD search from; give --lr",
         (spec_dir / "summary.json").string());
  if (lr_auto && !sgd && !(curv.lambda1 > 0))
    fail("--lr auto: lambda_1 = {} in {} is not positive; give --lr", curv.lambda1,
         vec_file.string());

  const ModelSpec spec = model_spec_from_config(run.cfg, run.data.num_classes,
                                                run.data.x.dim() == 2 ? run.data.x.size(1) : 0);
  const ModelFactory factory = [spec] { return make_model(spec); };

  const fs::path root = fs::path(run_dir) / "escape";
  const fs::path sweep_dir = root / opt_name;
  const fs::path record = sweep_dir / "cli_result.json";
  const std::string theta_sha = file_sha256((fs::path(run_dir) / "theta.pt").string());

  // Learning rate: given, or searched (a search with the same settings is reused, since it
  // costs as much as several sweeps).
  const std::string lr_request = lr_auto ? lr_search_request(e, curv, theta_sha) : "";
  std::string lr_trials, lr_message;
  if (lr_auto) {
    const std::string old = fs::exists(record) ? read_file(record.string()) : "";
    if (!old.empty() && Json::field(old, "lr_search_request") == Json::quote(lr_request) &&
        std::isfinite(Json::number_field(old, "lr"))) {
      e.lr = Json::number_field(old, "lr");
      lr_trials = Json::field(old, "lr_trials");
      lr_message = Json::field(old, "lr_search_message");  // as stored: a JSON string
      say(fmt::format("{}: reusing the learning rate searched before: lr = {:.6g}", opt_name,
                      e.lr));
    } else {
      say(fmt::format("{}: searching the learning rate (start {:.6g}, paper's reference {:.6g})",
                      opt_name, escape_lr_start(e.optimizer, curv),
                      escape_lr_reference(e.optimizer, curv)));
      const LrSearchResult s = auto_escape_lr(
          factory, theta_star, U, run.data, e, curv, LrSearchOptions{}, [&](const LrTrial& t) {
            say(fmt::format("  tried lr {:.6g} ({}): {}/{} probe runs escaped", t.lr, t.phase,
                            t.escaped, t.runs));
          });
      if (!s.found) fail("--lr auto: {}", s.message);
      e.lr = s.chosen;
      lr_trials = trials_json(s.trials);
      lr_message = Json::quote(s.message);
      say(fmt::format("{}: chose lr = {:.6g} ({})", opt_name, e.lr, s.message));
    }
  }

  // The sweep, with progress lines.
  std::string ks_text;
  for (int64_t k : ks) ks_text += (ks_text.empty() ? "" : ",") + std::to_string(k);
  say(fmt::format("{}: {} run(s) x {} steps, lr {:.6g}, {}, ks {}, -> {}", opt_name, e.runs,
                  e.steps, e.lr, sgd ? fmt::format("batch {}", e.batch) : "full batch", ks_text,
                  sweep_dir.string()));
  fs::create_directories(sweep_dir);
  int64_t done = 0;
  const auto t_sweep = std::chrono::steady_clock::now();
  EscapeHooks hooks;
  hooks.on_run_done = [&](const RunResult& r) {
    ++done;
    if (quiet) return;
    const double el =
        std::chrono::duration<double>(std::chrono::steady_clock::now() - t_sweep).count();
    fmt::print(stderr, "noisegeom escape: {} run {} done ({}) | {}/{} runs | ETA {}\n", opt_name,
               r.run,
               r.escaped ? fmt::format("escaped at step {}{}", r.escape_step,
                                       r.status == "diverged" ? ", then diverged" : "")
                         : r.status,
               done, e.runs, format_duration(done > 0 ? el / done * (e.runs - done) : NAN));
  };
  const EscapeResult res =
      run_escape_sweep(sweep_dir.string(), factory, theta_star, U, run.data, e, hooks);
  if (res.reused > 0)
    say(fmt::format("{}: reused {} finished run(s), computed {}", opt_name, res.reused,
                    res.computed));

  // This optimizer's record: trajectories and summary.
  std::string traj = "optimizer,run,step,lr,loss,distance";
  for (int64_t k : ks) traj += fmt::format(",p_{},r_{}", k, k);
  traj += "\n";
  std::vector<double> escape_steps;
  int64_t diverged = 0, ended = 0;
  std::vector<double> mean_p(ks.size(), 0), mean_abs_p(ks.size(), 0), mean_r(ks.size(), 0);
  for (const auto& r : res.runs) {
    for (const auto& pt : r.trajectory) {
      traj += fmt::format("{},{},{},{},{},{}", opt_name, pt.run, pt.step, g17(e.lr), g17(pt.loss),
                          g17(pt.distance));
      for (size_t j = 0; j < ks.size(); ++j) traj += "," + g17(pt.p[j]) + "," + g17(pt.r[j]);
      traj += "\n";
    }
    if (r.escaped) escape_steps.push_back(static_cast<double>(r.escape_step));
    diverged += r.status == "diverged";
    // A diverged run ends on a non-finite point: its end is its last finite one.
    const TrajectoryPoint* last = nullptr;
    for (const auto& pt : r.trajectory)
      if (std::isfinite(pt.loss) && std::isfinite(pt.distance)) last = &pt;
    if (!last) continue;
    ++ended;
    for (size_t j = 0; j < ks.size() && j < last->p.size(); ++j) {
      mean_p[j] += last->p[j];
      mean_abs_p[j] += std::abs(last->p[j]);
      mean_r[j] += last->r[j];
    }
  }
  for (size_t j = 0; j < ks.size(); ++j) {
    mean_p[j] /= ended;
    mean_abs_p[j] /= ended;
    mean_r[j] /= ended;
  }
  double median = std::nan("");
  if (!escape_steps.empty()) {
    std::sort(escape_steps.begin(), escape_steps.end());
    const size_t m = escape_steps.size();
    median = m % 2 ? escape_steps[m / 2] : 0.5 * (escape_steps[m / 2 - 1] + escape_steps[m / 2]);
  }
  double compute_seconds = 0;
  for (const auto& r : res.runs) compute_seconds += r.seconds;
  std::vector<double> ks_d(ks.begin(), ks.end());

  Json crit;
  crit.str("rule",
           "a run has escaped at its first logged step whose loss on the evaluation subset exceeds "
           "escape_factor * L(theta*)")
      .num("escape_factor", e.escape_factor)
      .num("loss_star", res.loss_star)
      .num("threshold", res.threshold);
  Json j;
  j.str("optimizer", opt_name).num("lr", e.lr).str("lr_mode", lr_auto ? "auto" : "given");
  if (lr_auto)
    j.str("lr_search_request", lr_request)
        .raw("lr_search_message", lr_message)
        .num("lr_reference", escape_lr_reference(e.optimizer, curv))
        .raw("lr_trials", lr_trials);
  j.integer("runs", static_cast<int64_t>(res.runs.size()))
      .integer("escaped_runs", res.escaped_count())
      .integer("diverged_runs", diverged)
      .num("median_escape_step", median)
      .integer("steps", e.steps)
      .integer("batch", sgd ? e.batch : 0)
      .integer("log_every", e.log_every)
      .num("perturb", e.perturb)
      .integer("seed", static_cast<int64_t>(e.seed))
      .raw("ks", json_list(ks_d))
      .str("final", "mean over runs at each run's last logged point with a finite loss")
      .raw("final_mean_p", json_list(mean_p))
      .raw("final_mean_abs_p", json_list(mean_abs_p))
      .raw("final_mean_r", json_list(mean_r))
      .num("seconds", compute_seconds)
      .num("sweep_wall_seconds", res.seconds)
      .num("wall_seconds_last_call",
           std::chrono::duration<double>(std::chrono::steady_clock::now() - t_start).count())
      .integer("computed_last_call", res.computed)
      .integer("reused_last_call", res.reused)
      .num("lambda_1", curv.lambda1)
      .num("lambda_2", curv.lambda2)
      .num("frobenius_G", curv.g_frobenius)
      .num("srk_G2", srk_g2)
      .raw("escape_criterion", crit.dump());
  write_file_atomic((sweep_dir / "cli_trajectories.csv").string(), traj);
  write_file_atomic(record.string(), j.dump() + "\n");
  write_file_atomic((root / "trajectories.csv").string(), combined_trajectories(root));
  write_file_atomic((root / "summary.json").string(), combined_summary(root, run_dir));

  say(fmt::format(
      "{}: done | {}/{} runs escaped ({} diverged) | median escape step {} | L(theta*) {:.4g}, "
      "threshold {:.4g} | srk(G^2) {:.3g} | -> {}",
      opt_name, res.escaped_count(), res.runs.size(), diverged,
      std::isfinite(median) ? fmt::format("{}", median) : "-", res.loss_star, res.threshold, srk_g2,
      root.string()));
  return 0;
}

}  // namespace

int cmd_escape(const std::vector<std::string>& args) {
  return escape_command(args, false);
}

void check_escape_args(const std::vector<std::string>& args) {
  std::vector<std::string> with_dir = args;
  with_dir.insert(with_dir.begin(), ".");
  escape_command(with_dir, true);
}

}  // namespace ng
