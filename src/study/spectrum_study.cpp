// Named spectra: reuse by settings and theta.pt identity, compute and write the rest.
#include "src/study/spectrum_study.h"

#include <fmt/format.h>

#include <filesystem>
#include <optional>

#include "data/sha256.h"
#include "src/core/dtypes.h"
#include "src/core/error.h"
#include "src/io/rundir.h"

namespace fs = std::filesystem;

namespace ng {

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
  if (!fs::is_directory(run_dir)) fail("{}: no such run directory", run_dir);
  if (!fs::exists(theta))
    fail("{}: missing (train the run to the end first, or --resume it)", theta);
  const json want = request_json(r.options);
  const std::string sha = file_sha256(theta);
  if (spectrum_complete(dir)) {
    const std::string summary_file = (fs::path(dir) / spectrum_files::kSummary).string();
    const json have = read_json(summary_file);
    const json stored = have.value("request", json::object());
    const std::string key = first_difference(want, stored);
    const bool same_theta = have.value("theta_sha256", "") == sha;
    if (key.empty() && same_theta) return {load_spectrum(dir), true};
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
  }
  std::optional<LoadedRun> own;
  if (!loaded) loaded = &own.emplace(load_run(run_dir, ctx.data_dir));
  const SpectrumResult result = compute_spectrum(*loaded, r.options, ctx.quiet);
  const json summary = write_spectrum(dir, result, want, sha);
  if (!ctx.quiet)
    fmt::print(stderr,
               "noisegeom spectrum: done | lambda_1 {:.6g} | mu {:.4g} | max residual {:.2e} | "
               "matvecs {} | {:.1f}s -> {}\n",
               result.alignment.lambda.front(), result.alignment.mu.value, result.max_residual,
               result.matvecs, result.seconds, dir);
  return {stored_spectrum(dir, result, summary), false};
}

}  // namespace ng
