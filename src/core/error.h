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

// Version string shown by `noisegeom --version` and written to every manifest.
std::string version_string();

}  // namespace ng
