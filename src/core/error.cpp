#include "src/core/error.h"

namespace ng {

std::string version_string() {
  return fmt::format("noisegeom {} (commit {}, {})", NOISEGEOM_VERSION, NOISEGEOM_GIT_COMMIT,
                     NOISEGEOM_CUDA_BUILD ? "CUDA build" : "CPU build");
}

}  // namespace ng
