#include "src/cli/args.h"

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
