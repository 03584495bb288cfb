// Named spectra: reuse by settings and theta.pt identity, compute and write the rest. Under a
// launcher, rank 0 decides and writes, and every rank gets the same spectrum back.
#include "src/study/spectrum_study.h"

#include <ATen/ATen.h>
#include <fmt/format.h>

#include <filesystem>
#include <functional>
#include <optional>
#include <sstream>

#include "data/sha256.h"
#include "src/core/dtypes.h"
#include "src/core/error.h"
#include "src/dist/dist.h"
#include "src/io/rundir.h"

namespace fs = std::filesystem;

namespace ng {

namespace {

// Rank 0's spectrum (made by `on_root`) on every rank: the summary, U and the eigenvalues travel,
// so the other ranks need no copy of rank 0's files. One process: on_root() itself.
StoredSpectrum shared_spectrum(const std::string& dir,
                               const std::function<StoredSpectrum()>& on_root) {
  StoredSpectrum sp;
  const std::string head = decided_by_root([&] {
    sp = on_root();
    return fmt::format("{} {} {}", sp.U.size(0), sp.U.size(1), sp.summary.dump());
  });
  if (!dist().active()) return sp;
  if (!dist().is_root()) {
    std::istringstream in(head);
    int64_t p = 0, k = 0;
    in >> p >> k;
    std::string summary;
    std::getline(in, summary);
    sp.dir = dir;
    sp.summary = json::parse(summary);
    sp.U = at::zeros({p, k}, at::kDouble);
    sp.eigenvalues = at::zeros({k}, at::kDouble);
  }
  broadcast(sp.U);
  broadcast(sp.eigenvalues);
  return sp;
}

}  // namespace

std::optional<StoredSpectrum> find_spectrum(const std::string& dir, int64_t p) {
  if (decided_by_root([&] { return spectrum_complete(dir) ? "yes" : "no"; }) == "no")
    return std::nullopt;
  return shared_spectrum(dir, [&] { return load_spectrum(dir, p); });
}

void validate(const SpectrumRequest& r) {
  check_analysis_name(r.name, "--name");
  validate_spectrum_options(r.options);
}

json request_json(const SpectrumOptions& o) {
  json matrices = json::array();
  for (MatrixKind m : o.matrices) matrices.push_back(matrix_names().name(m));
  return json{{"k", o.k},
              {"matrices", matrices},
              {"estimator", estimator_names().name(o.estimator)},
              {"samples", o.samples},
              {"solver", o.solver},
              {"dtype", dtype_names().name(o.dtype)},
              {"theta", o.theta},
              {"seed", o.seed},
              {"batch_size", o.batch_size},
              {"ncv", o.ncv},
              {"tol", o.tol},
              {"maxit", o.maxit},
              {"probes", o.probes},
              {"residuals", o.residuals}};
}

SpectrumOutcome ensure_spectrum(const std::string& run_dir, const SpectrumRequest& r,
                                const StudyContext& ctx, bool replace, LoadedRun* loaded) {
  validate(r);
  const RunPaths paths{run_dir};
  const std::string dir = paths.spectrum(r.name);
  const std::string theta = paths.file(run_files::kTheta);
  const json want = request_json(r.options);
  std::string sha;  // rank 0's: only it reads and writes the files
  // Whether the spectrum on disk serves: rank 0's files decide for every rank.
  const std::string verdict = decided_by_root([&]() -> std::string {
    if (!fs::is_directory(run_dir)) fail("{}: no such run directory", run_dir);
    if (!fs::exists(theta))
      fail("{}: missing (train the run to the end first, or --resume it)", theta);
    sha = file_sha256(theta);
    if (!spectrum_complete(dir)) return "compute";
    const std::string summary_file = (fs::path(dir) / spectrum_files::kSummary).string();
    const json have = read_json(summary_file);
    const json stored = have.value("request", json::object());
    const std::string key = first_difference(want, stored);
    const bool same_theta = have.value("theta_sha256", "") == sha;
    if (key.empty() && same_theta) return "reuse";
    if (!replace && !key.empty())
      fail(
          "{}: spectrum '{}' was made with other settings ({} differs: {} there, {} asked); "
          "use another --name, or --replace",
          summary_file, r.name, key,
          (stored.is_object() ? stored.value(key, json()) : stored).dump(),
          want.value(key, json()).dump());
    if (!replace)
      fail(
          "{}: spectrum '{}' was computed at another theta.pt (the run was retrained); use "
          "another --name, or --replace",
          summary_file, r.name);
    return "compute";
  });
  if (verdict == "reuse") return {shared_spectrum(dir, [&] { return load_spectrum(dir); }), true};
  std::optional<LoadedRun> own;
  if (!loaded) loaded = &own.emplace(load_run(run_dir, ctx.data_dir));
  const SpectrumResult result = compute_spectrum(*loaded, r.options, ctx.quiet);
  // Every rank holds the result; rank 0 writes it and hands out the summary it wrote.
  json written;
  const std::string text = decided_by_root([&] {
    written = write_spectrum(dir, result, want, sha);
    if (!ctx.quiet)
      fmt::print(stderr,
                 "noisegeom spectrum: done | lambda_1 {:.6g} | mu {:.4g} | max residual {:.2e} | "
                 "matvecs {} | {:.1f}s -> {}\n",
                 result.alignment.lambda.front(), result.alignment.mu.value, result.max_residual,
                 result.matvecs, result.seconds, dir);
    return written.dump();
  });
  if (!dist().is_root()) written = json::parse(text);
  return {stored_spectrum(dir, result, written), false};
}

}  // namespace ng
