// Errors the user sees: one line, naming the file and the field that is wrong.
#pragma once

#include <fmt/format.h>

#include <stdexcept>
#include <string>

namespace ng {

class Error : public std::runtime_error {
 public:
  explicit Error(const std::string& what) : std::runtime_error(what) {}
};

template <typename... Args>
[[noreturn]] void fail(fmt::format_string<Args...> f, Args&&... args) {
  throw Error(fmt::format(f, std::forward<Args>(args)...));
}

// Version string shown by `noisegeom --version`, and its parts for manifests. They live in one
// translation unit so that a new commit does not recompile (or miss the compiler cache for) the
// rest.
std::string version_string();
const char* version();
const char* git_commit();
bool cuda_build();

}  // namespace ng
