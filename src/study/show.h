// What a run directory holds: its training, its named spectra and escape sweeps, read from their
// files only (nothing is loaded into a model), for `noisegeom show`.
#pragma once

#include <string>
#include <vector>

#include "src/io/json.h"

namespace ng {

struct SpectrumEntry {
  std::string name;
  bool complete = false;  // false: a folder without every file (interrupted)
  json request;           // the settings it was made with
  double lambda1 = 0, mu = 0, srk_g2 = 0;
  std::string estimator, dtype;
  int64_t samples = 0, k = 0;
};

struct EscapeEntry {
  std::string name;
  bool complete = false;  // false: no record yet (interrupted before the end of its first call)
  json record;            // result.json
};

struct RunOverview {
  std::string dir;
  std::string model, status;
  int64_t steps = 0, parameters = 0;
  double final_loss = 0;
  std::vector<SpectrumEntry> spectra;
  std::vector<EscapeEntry> escapes;
  // Folders of the layout before named analyses (spectrum/, escape/): kept, neither read nor
  // changed by this version.
  std::vector<std::string> legacy;
};

// ng::Error naming RUN when it is not a run directory.
RunOverview describe_run(const std::string& run_dir);

}  // namespace ng
