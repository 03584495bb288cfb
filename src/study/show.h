// What a run directory holds: its training, its named spectra and escape sweeps, read from their
// files only (nothing is loaded into a model), for `noisegeom show`.
#pragma once

#include <string>
#include <vector>

#include "src/io/json.h"

namespace ng {

// One named analysis and the JSON file that describes it (a spectrum's summary.json, a sweep's
// result.json); incomplete ones (interrupted before that file) have none.
struct AnalysisEntry {
  std::string name;
  bool complete = false;
  json file;
};

struct RunOverview {
  std::string dir;
  std::string model, status;
  int64_t steps = 0, parameters = 0;
  double final_loss = 0;
  std::vector<AnalysisEntry> spectra;
  std::vector<AnalysisEntry> escapes;
  // Folders of the layout before named analyses (spectrum/, escape/): kept, neither read nor
  // changed by this version.
  std::vector<std::string> legacy;
};

// ng::Error naming RUN when it is not a run directory.
RunOverview describe_run(const std::string& run_dir);

}  // namespace ng
