#include "src/cli/args.h"

#include <cmath>

#include "src/core/error.h"

namespace ng {

std::string Args::get(const std::string& opt, const std::string& def) const {
  auto it = values.find(opt);
  return it == values.end() || it->second.empty() ? def : it->second.back();
}

const std::vector<std::string>& Args::all(const std::string& opt) const {
  static const std::vector<std::string> none;
  auto it = values.find(opt);
  return it == values.end() ? none : it->second;
}

int64_t int_value(const std::string& text, const std::string& option, int64_t min) {
  try {
    size_t used = 0;
    const long long v = std::stoll(text, &used);
    if (used == text.size() && v >= min) return v;
  } catch (const std::exception&) {
  }
  fail("{}: expected an integer >= {}, got '{}'", option, min, text);
}

double number_value(const std::string& text, const std::string& option, bool positive) {
  try {
    size_t used = 0;
    const double v = std::stod(text, &used);
    if (used == text.size() && std::isfinite(v) && (!positive || v > 0)) return v;
  } catch (const std::exception&) {
  }
  fail("{}: expected a {}number, got '{}'", option, positive ? "positive " : "", text);
}

int64_t Args::integer(const std::string& opt, int64_t def, int64_t min) const {
  return values.count(opt) ? int_value(get(opt), opt, min) : def;
}

double Args::number(const std::string& opt, double def, bool positive) const {
  return values.count(opt) ? number_value(get(opt), opt, positive) : def;
}

Args parse_args(const std::vector<std::string>& argv, const ArgSpec& spec, const std::string& cmd) {
  Args a;
  for (size_t k = 0; k < argv.size(); ++k) {
    std::string s = argv[k];
    if (s.size() < 2 || s.rfind("--", 0) != 0) {
      a.positional.push_back(s);
      continue;
    }
    std::string value;
    bool inline_value = false;
    const auto eq = s.find('=');
    if (eq != std::string::npos) {
      value = s.substr(eq + 1);
      s = s.substr(0, eq);
      inline_value = true;
    }
    if (spec.flags.count(s)) {
      if (inline_value) throw UsageError{cmd + ": " + s + " takes no value"};
      a.flags.insert(s);
    } else if (spec.valued.count(s) || spec.repeated.count(s)) {
      if (!inline_value) {
        if (k + 1 >= argv.size()) throw UsageError{cmd + ": " + s + " needs a value"};
        value = argv[++k];
      }
      if (spec.valued.count(s) && a.values.count(s))
        throw UsageError{cmd + ": " + s + " given twice"};
      a.values[s].push_back(value);
    } else {
      throw UsageError{cmd + ": unknown option " + s + " (see noisegeom " + cmd + " --help)"};
    }
  }
  return a;
}

}  // namespace ng
