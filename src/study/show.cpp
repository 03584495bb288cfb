// describe_run: a run directory's training, spectra and sweeps, from their files.
#include "src/study/show.h"

#include <filesystem>

#include "src/core/error.h"
#include "src/io/rundir.h"
#include "src/study/escape_files.h"
#include "src/study/spectrum_files.h"

namespace fs = std::filesystem;

namespace ng {
namespace {

SpectrumEntry spectrum_entry(const RunPaths& paths, const std::string& name) {
  SpectrumEntry e;
  e.name = name;
  const std::string dir = paths.spectrum(name);
  e.complete = spectrum_complete(dir);
  if (!e.complete) return e;
  const std::string file = (fs::path(dir) / spectrum_files::kSummary).string();
  const json s = read_json(file);
  e.request = s.value("request", json::object());
  e.lambda1 = json_number_or_nan(s, "lambda_1");
  e.mu = json_number_or_nan(s, "mu");
  e.srk_g2 = json_number_or_nan(s, "srk_G2");
  e.estimator = s.value("estimator", "");
  e.dtype = s.value("dtype", "");
  e.samples = s.value("samples", int64_t{0});
  e.k = s.value("k", int64_t{0});
  return e;
}

}  // namespace

RunOverview describe_run(const std::string& run_dir) {
  const RunPaths paths{run_dir};
  if (!fs::exists(paths.file(run_files::kConfig)))
    fail("{}: not a run directory (no {})", run_dir, run_files::kConfig);
  RunOverview o;
  o.dir = run_dir;
  o.status = "not started";
  if (fs::exists(paths.file(run_files::kManifest))) {
    const json m = read_json(paths.file(run_files::kManifest));
    o.model = m.value("model", "");
    o.status = m.value("status", "");
    o.steps = m.value("steps", int64_t{0});
    o.parameters = m.value("parameter_count", int64_t{0});
    o.final_loss = json_number_or_nan(m, "final_loss");
  }
  for (const auto& name : paths.spectrum_names()) o.spectra.push_back(spectrum_entry(paths, name));
  for (const auto& name : paths.escape_names()) {
    EscapeEntry e;
    e.name = name;
    e.record = find_escape_record(paths.escape(name));
    e.complete = e.record.is_object();
    o.escapes.push_back(e);
  }
  for (const char* old : {"spectrum", "escape"})
    if (fs::is_directory(fs::path(run_dir) / old)) o.legacy.push_back(std::string(old) + "/");
  return o;
}

}  // namespace ng
