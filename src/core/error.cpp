// The version strings of error.h, built from the compile definitions CMake sets on this file only
// (git_commit() is written at build time: cmake/git_commit.cmake).
#include "src/core/error.h"

#include <torch/csrc/api/include/torch/version.h>

namespace ng {

std::string version_string() {
  return fmt::format("noisegeom {} (commit {}, {}, LibTorch {})", NOISEGEOM_VERSION, git_commit(),
                     NOISEGEOM_CUDA_BUILD ? "CUDA build" : "CPU build", TORCH_VERSION);
}

const char* version() {
  return NOISEGEOM_VERSION;
}
bool cuda_build() {
  return NOISEGEOM_CUDA_BUILD != 0;
}

}  // namespace ng
