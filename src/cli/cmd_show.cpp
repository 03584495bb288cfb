// show: what a run directory holds, its training, named spectra and escape sweeps, one line each.
#include <fmt/format.h>
#include <fmt/ranges.h>

#include <cmath>
#include <memory>

#include "src/cli/commands.h"
#include "src/cli/options.h"
#include "src/study/show.h"

namespace ng {
namespace {

std::string num(double v, const char* spec = "{:.4g}") {
  return std::isfinite(v) ? fmt::format(fmt::runtime(spec), v) : "-";
}

// A spectrum's settings (samples as resolved) and the numbers the analyses start from.
void print_spectrum(const AnalysisEntry& s) {
  if (!s.complete) {
    fmt::print("  {:<12} (incomplete: files missing)\n", s.name);
    return;
  }
  const json& j = s.file;
  const json q = j.value("request", json::object());
  fmt::print("  {:<12} k={} matrices={} estimator={} samples={} dtype={} theta={} seed={}\n",
             s.name, j.value("k", int64_t{0}), j.value("matrices", ""), j.value("estimator", ""),
             j.value("samples", int64_t{0}), j.value("dtype", ""), q.value("theta", ""),
             q.value("seed", uint64_t{0}));
  fmt::print("  {:<12} lambda_1 {}, mu {}, srk(G^2) {}\n", "",
             num(json_number_or_nan(j, "lambda_1")), num(json_number_or_nan(j, "mu")),
             num(json_number_or_nan(j, "srk_G2")));
}

// A sweep's settings (its request) and median r/|p| at escape per k.
void print_escape(const AnalysisEntry& e) {
  if (!e.complete) {
    fmt::print("  {:<12} (incomplete: no result.json yet; run the same escape again)\n", e.name);
    return;
  }
  const json& r = e.file;
  const json q = r.value("request", json::object());
  const std::string opt = q.value("optimizer", "");
  fmt::print(
      "  {:<12} optimizer={} runs={} steps={}{} lr={} ({}) log_every={} seed={} "
      "escape_factor={} spectrum={}\n",
      e.name, opt, r.value("runs", int64_t{0}), q.value("steps", int64_t{0}),
      opt == "sgd" ? fmt::format(" batch={}", q.value("batch", int64_t{0})) : "",
      num(json_number_or_nan(r, "lr"), "{:.6g}"), r.value("lr_mode", ""),
      q.value("log_every", int64_t{0}), q.value("seed", uint64_t{0}),
      num(json_number_or_nan(q, "escape_factor"), "{:g}"), q.value("spectrum", ""));
  const auto ks = q.value("ks", std::vector<int64_t>{});
  const json ratios = r.value("median_r_over_p_at_escape", json::array());
  std::vector<std::string> per_k;
  for (size_t j = 0; j < ks.size() && j < ratios.size(); ++j)
    per_k.push_back(fmt::format(
        "k={} {}", ks[j], num(ratios[j].is_number() ? ratios[j].get<double>() : NAN, "{:.3g}")));
  fmt::print("  {:<12} escaped {}/{}, median escape step {}, median r/|p| at escape: {}\n", "",
             r.value("escaped_runs", int64_t{0}), r.value("runs", int64_t{0}),
             num(json_number_or_nan(r, "median_escape_step"), "{:g}"), fmt::join(per_k, ", "));
}

int show(const std::string& run_dir) {
  const RunOverview o = describe_run(run_dir);
  fmt::print("{}\n", o.dir);
  fmt::print("training: {} at step {}, loss {}; {} (p = {})\n", o.status, o.steps,
             num(o.final_loss), o.model.empty() ? "-" : o.model, o.parameters);
  fmt::print("spectra ({}):{}\n", o.spectra.size(), o.spectra.empty() ? " none" : "");
  for (const auto& s : o.spectra) print_spectrum(s);
  fmt::print("escapes ({}):{}\n", o.escapes.size(), o.escapes.empty() ? " none" : "");
  for (const auto& e : o.escapes) print_escape(e);
  if (!o.legacy.empty())
    fmt::print(
        "legacy: {} (the layout before named analyses; not read: run the spectrum or escape "
        "again to get spectra/NAME and escapes/NAME)\n",
        fmt::join(o.legacy, ", "));
  return 0;
}

}  // namespace

Command add_show_command(CLI::App& app) {
  auto* sub = app.add_subcommand("show", "what a run directory holds: training, spectra, escapes");
  sub->footer(wrap(
      "Prints the training status and loss, each spectrum in RUN_DIR/spectra/ with its settings, "
      "lambda_1, mu and srk(G^2), and each escape sweep in RUN_DIR/escapes/ with its settings, "
      "escaped runs and median r/|p| at escape per k. Reads files only."));
  auto dir = std::make_shared<std::string>();
  sub->add_option("RUN_DIR", *dir, "a run directory")->required();
  return {sub, [dir] { return show(*dir); }};
}

}  // namespace ng
