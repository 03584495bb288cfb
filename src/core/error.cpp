// The version strings of error.h, built from the compile definitions CMake sets on this file only.
#include "src/core/error.h"

#include <torch/csrc/api/include/torch/version.h>

namespace ng {

std::string version_string() {
  return fmt::format("noisegeom {} (commit {}, {}, LibTorch {})", NOISEGEOM_VERSION,
                     NOISEGEOM_GIT_COMMIT, NOISEGEOM_CUDA_BUILD ? "CUDA build" : "CPU build",
                     TORCH_VERSION);
}

const char* version() {
  return NOISEGEOM_VERSION;
}
const char* git_commit() {
  return NOISEGEOM_GIT_COMMIT;
}
bool cuda_build() {
  return NOISEGEOM_CUDA_BUILD != 0;
}

}  // namespace ng
