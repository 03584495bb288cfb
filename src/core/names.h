// One name table per enum: the spelling an enum value has in files, on the command line and in
// messages, and its parser. Each enum declares its table next to itself (e.g. matrix_names()).
#pragma once

#include <fmt/format.h>

#include <algorithm>
#include <cctype>
#include <string>
#include <utility>
#include <vector>

#include "src/core/error.h"

namespace ng {

template <typename E>
class NameTable {
 public:
  // `names`: (value, spelling) pairs; the first spelling of a value is its name, later ones are
  // accepted aliases. Parsing ignores case.
  NameTable(std::string what, std::vector<std::pair<E, std::string>> names)
      : what_(std::move(what)), names_(std::move(names)) {}

  const std::string& name(E e) const {
    for (const auto& [v, s] : names_)
      if (v == e) return s;
    throw Error(fmt::format("internal: {} without a name", what_));
  }

  // `field` names the option or key in the error ("--matrices", "config.yaml: train.loss").
  E parse(const std::string& text, const std::string& field) const {
    const std::string l = lower(text);
    for (const auto& [v, s] : names_)
      if (lower(s) == l) return v;
    fail("{}: unknown {} '{}' (expected {})", field, what_, text, choices());
  }

  // The canonical names, "a, b or c".
  std::string choices() const {
    const auto c = canonical();
    std::string out;
    for (size_t k = 0; k < c.size(); ++k)
      out += (k == 0 ? "" : k + 1 == c.size() ? " or " : ", ") + c[k];
    return out;
  }

  std::vector<std::string> canonical() const {
    std::vector<std::string> out;
    std::vector<E> seen;
    for (const auto& [v, s] : names_)
      if (std::find(seen.begin(), seen.end(), v) == seen.end()) {
        seen.push_back(v);
        out.push_back(s);
      }
    return out;
  }

 private:
  static std::string lower(std::string s) {
    std::transform(s.begin(), s.end(), s.begin(),
                   [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
    return s;
  }
  std::string what_;
  std::vector<std::pair<E, std::string>> names_;
};

}  // namespace ng
