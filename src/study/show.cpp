// describe_run: a run directory's training, spectra and sweeps, from their files.
#include "src/study/show.h"

#include <filesystem>

#include "src/core/error.h"
#include "src/io/rundir.h"
#include "src/study/escape_files.h"
#include "src/study/spectrum_files.h"

namespace fs = std::filesystem;

namespace ng {

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
  for (const auto& name : paths.spectrum_names()) {
    const std::string dir = paths.spectrum(name);
    const bool complete = spectrum_complete(dir);
    o.spectra.push_back(
        {name, complete,
         complete ? read_json((fs::path(dir) / spectrum_files::kSummary).string()) : json()});
  }
  for (const auto& name : paths.escape_names()) {
    const json record = find_escape_record(paths.escape(name));
    o.escapes.push_back({name, record.is_object(), record});
  }
  for (const char* old : {"spectrum", "escape"})
    if (fs::is_directory(fs::path(run_dir) / old)) o.legacy.push_back(std::string(old) + "/");
  return o;
}

}  // namespace ng
