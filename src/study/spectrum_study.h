// Named spectra of a run: RUN/spectra/NAME/ computed once per settings and reused after. A name
// holds one computation; asking for other settings under the same name is refused, naming the
// setting, unless the caller says to replace it.
#pragma once

#include <optional>
#include <string>

#include "src/io/json.h"
#include "src/spectrum/spectrum.h"
#include "src/study/spectrum_files.h"
#include "src/study/study.h"

namespace ng {

struct SpectrumRequest {
  std::string name = kDefaultSpectrum;
  SpectrumOptions options;
};

// Checks name and options without touching any file (recipes are checked before training).
void validate(const SpectrumRequest& r);

// The settings that determine the numbers. Two requests are equal exactly when they ask for the
// same computation; defaults stay unresolved (samples=0, tol=0): the run fixes what they become.
json request_json(const SpectrumOptions& o);

struct SpectrumOutcome {
  StoredSpectrum spectrum;
  bool reused = false;  // found with the same settings at the same theta.pt
};

// The complete spectrum in `dir`, or none; under a launcher rank 0 reads it and every rank gets
// it. `p`: the model's parameter count, checked against U when not 0.
std::optional<StoredSpectrum> find_spectrum(const std::string& dir, int64_t p = 0);

// Reuses RUN/spectra/NAME when it holds this request at the run's current theta.pt; else computes
// and writes it. Other settings under the name: ng::Error naming the setting, or, with `replace`,
// the old spectrum is replaced (reproduce owns its figures' spectra). `loaded`: the run, when the
// caller has it in memory already (its model is then used in place), else it is loaded here.
SpectrumOutcome ensure_spectrum(const std::string& run_dir, const SpectrumRequest& r,
                                const StudyContext& ctx, bool replace = false,
                                LoadedRun* loaded = nullptr);

}  // namespace ng
