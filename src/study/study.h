// What every study function needs besides its request: where the data are and how loud to be.
#pragma once

#include <string>

namespace ng {

struct StudyContext {
  std::string data_dir;  // --data-dir ("" : the run's data.dir, $NOISEGEOM_DATA, ...)
  bool quiet = false;    // no progress lines on stderr
};

// Default analysis names: the plain commands and `reproduce` use them.
inline constexpr const char* kDefaultSpectrum = "default";

}  // namespace ng
