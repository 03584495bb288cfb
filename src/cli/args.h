// A small argument parser with per-command option lists, so that a mistyped option is an error.
#pragma once

#include <cstdint>
#include <map>
#include <set>
#include <string>
#include <vector>

namespace ng {

struct ArgSpec {
  std::set<std::string> flags;     // options without a value: --resume
  std::set<std::string> valued;    // options with one value: --out DIR
  std::set<std::string> repeated;  // valued options that may repeat: --set
};

struct Args {
  std::vector<std::string> positional;
  std::map<std::string, std::vector<std::string>> values;
  std::set<std::string> flags;
  bool has(const std::string& f) const { return flags.count(f) > 0; }
  std::string get(const std::string& opt, const std::string& def = "") const;
  const std::vector<std::string>& all(const std::string& opt) const;
  // The option's value as a number, `def` when absent; ng::Error naming the option otherwise.
  int64_t integer(const std::string& opt, int64_t def, int64_t min) const;
  double number(const std::string& opt, double def, bool positive) const;
};

// One option value: an integer >= min, or a finite number (> 0 when `positive`). Anything else is
// an ng::Error naming the option and the text.
int64_t int_value(const std::string& text, const std::string& option, int64_t min);
double number_value(const std::string& text, const std::string& option, bool positive);

// Throws UsageError on an unknown option or a missing value.
Args parse_args(const std::vector<std::string>& argv, const ArgSpec& spec, const std::string& cmd);

struct UsageError {
  std::string message;
};

}  // namespace ng
