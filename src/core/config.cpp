// The experiment config: its schema (every key, type, default and bound), YAML parsing and
// checking against it, --set overrides, and the resolved YAML that run directories store.
#include "src/core/config.h"

#include <yaml-cpp/yaml.h>

#include <algorithm>
#include <cmath>
#include <fstream>
#include <sstream>

#include "src/core/error.h"

namespace ng {
namespace {

using FT = FieldType;

std::vector<Field> make_schema() {
  const double inf = 1e300;
  return {
      {"name", FT::String, "null", "run name (default: the config file's stem)"},
      {"seed", FT::Int, "0", "seed for initialisation, sample selection and batch order", 0, 4e18},
      {"device", FT::Enum, "auto", "where to compute", 0, 0, {"auto", "cpu", "cuda"}},
      {"dtype", FT::Enum, "float32", "parameter and data type", 0, 0, {"float32", "float64"}},
      {"threads", FT::Int, "0",
       "CPU threads for LibTorch (0: every physical core, or OMP_NUM_THREADS)", 0, 1024},
      {"model.name",
       FT::Enum,
       "cnn",
       "architecture",
       0,
       0,
       {"resnet", "vgg", "cnn", "fnn", "linear", "linear_net", "diag_linear", "two_layer", "toy"}},
      {"model.depth", FT::Int, "0",
       "ResNet depth 6n+2 (e.g. 20, 38, 110) or VGG depth (11, 13, 16, 19); 0: the family's "
       "default",
       0, 10000},
      {"model.width", FT::Int, "0",
       "base width (ResNet: first stage, VGG: first conv); 0: the standard width", 0, 1e6},
      {"model.head_width", FT::Int, "128", "VGG classifier hidden width", 1, 1e6},
      {"model.hidden", FT::IntList, "[]",
       "hidden widths (fnn: [256,64,32]; linear_net: layer widths; two_layer: [m])"},
      {"model.input",
       FT::Enum,
       "flatten",
       "fnn input: flatten (3*32*32) or gray28 (grey, centre 28x28 crop: the paper's 784 inputs)",
       0,
       0,
       {"flatten", "gray28"}},
      {"model.bias", FT::Bool, "true", "bias terms in linear layers (cnn, fnn)"},
      {"model.activation", FT::Enum, "relu", "nonlinearity", 0, 0, {"relu", "leaky_relu"}},
      {"model.leaky_slope", FT::Float, "0.1", "negative slope of leaky ReLU", 0, 1},
      {"model.train_outer", FT::Bool, "false",
       "two_layer: train the output weights a_k too (p = m(d+1)); false: a_k fixed at +-1 "
       "(Theorem 3.5)"},
      {"model.init",
       FT::Enum,
       "default",
       "initial parameters: the family's initialisation, or all zeros",
       0,
       0,
       {"default", "zeros"}},
      {"model.toy_init", FT::FloatList, "[]",
       "toy: the initial point [w1, w2] (Figure 4 starts near the valley w2 = 0 with w1 != 0); "
       "[]: w1, w2 ~ N(0, 1)"},
      {"data.source", FT::Enum, "cifar10", "training data", 0, 0, {"cifar10", "gaussian"}},
      {"data.dir", FT::String, "null",
       "CIFAR-10 binary directory (--data-dir overrides it; unset: $NOISEGEOM_DATA, then "
       "data/cifar-10-batches-bin)"},
      {"data.classes", FT::IntList, "[]", "CIFAR-10 labels to keep, relabelled 0..C-1 ([]: all)"},
      {"data.max_samples", FT::Int, "0", "cap on training samples, a seeded subset (0: all)", 0,
       inf},
      {"data.normalize",
       FT::Enum,
       "per_channel",
       "input normalisation",
       0,
       0,
       {"per_channel", "none"}},
      {"data.n", FT::Int, "1000", "gaussian: number of samples", 1, inf},
      {"data.d", FT::Int, "50", "gaussian: input dimension", 1, inf},
      {"data.covariance",
       FT::Enum,
       "isotropic",
       "gaussian: input covariance S (power: S_kk = k^-power; spiked: S = diag(1, bulk, ..., "
       "bulk))",
       0,
       0,
       {"isotropic", "power", "spiked"}},
      {"data.power", FT::Float, "0.5", "gaussian: exponent of the power-law covariance", 0, 100},
      {"data.bulk", FT::Float, "0.1",
       "gaussian, spiked: S_kk for k >= 2 (population srk(S^2) = 1 + (d - 1) bulk^2)", 0, inf},
      {"data.scale", FT::Float, "1", "gaussian: factor on S (e.g. 1/d: x ~ N(0, diag(lambda)/d))",
       1e-300, inf},
      {"data.teacher",
       FT::Enum,
       "gaussian",
       "gaussian: targets y = x W* with W* ~ N(0, I), or W* = 0 (y = 0)",
       0,
       0,
       {"gaussian", "zero"}},
      {"data.outputs", FT::Int, "1", "gaussian: target dimension (targets from a linear model)", 1,
       1e6},
      {"train.lr", FT::Float, "0.1", "SGD learning rate (the peak of a cyclical schedule)", 1e-300,
       inf},
      {"train.schedule",
       FT::Enum,
       "constant",
       "learning rate by step: constant; triangular (Smith 2017: lr_min up to lr at mid-cycle and "
       "back); cosine (SGDR: lr down to lr_min, then a restart at lr)",
       0,
       0,
       {"constant", "triangular", "cosine"}},
      {"train.lr_min", FT::Float, "0", "lowest learning rate of a cyclical schedule", 0, inf},
      {"train.cycle", FT::Int, "1000", "steps per cycle of a cyclical schedule", 1, inf},
      {"train.batch_size", FT::Int, "32", "SGD batch size", 1, inf},
      {"train.loss",
       FT::Enum,
       "mse",
       "mse: 1/2 |f - y|^2 on one-hot targets; or cross_entropy",
       0,
       0,
       {"mse", "cross_entropy"}},
      {"train.target_loss", FT::Float, "1e-4", "stop when the full training loss is below this", 0,
       inf},
      {"train.max_steps", FT::Int, "100000", "step cap", 1, inf},
      {"train.eval_every", FT::Int, "200", "steps between full training-loss evaluations", 1, inf},
      {"train.eval_batch", FT::Int, "1000", "batch size for evaluation passes", 1, inf},
      {"train.checkpoint_every", FT::Int, "1000", "steps between checkpoints", 1, inf},
      {"train.divergence_factor", FT::Float, "1e4",
       "stop as diverged when the loss exceeds this times the initial loss", 1, inf},
      {"train.trace_every", FT::Int, "0",
       "steps between rows of trace.csv (lr, loss and every parameter; models of at most 100 "
       "parameters); 0: no trace",
       0, inf},
      {"train.cuda_graphs", FT::Bool, "true",
       "CUDA: capture each SGD step in a CUDA graph and replay it (false: launch its kernels one "
       "by one); no effect on the CPU"},
  };
}

const Field* find_field(const std::string& key) {
  for (const auto& f : Config::schema())
    if (f.key == key) return &f;
  return nullptr;
}

std::string type_name(const Field& f) {
  switch (f.type) {
    case FT::Int:
      return "an integer";
    case FT::Float:
      return "a number";
    case FT::Bool:
      return "true or false";
    case FT::String:
      return "a string";
    case FT::Enum: {
      std::string s = "one of ";
      for (size_t k = 0; k < f.choices.size(); ++k) s += (k ? "|" : "") + f.choices[k];
      return s;
    }
    case FT::IntList:
      return "a list of integers";
    case FT::FloatList:
      return "a list of finite numbers";
  }
  return "?";
}

// Bounds exist only for Int and Float; the min/max of other fields are unused placeholders.
std::string range_text(const Field& f) {
  if (f.type != FT::Int && f.type != FT::Float) return "";
  const bool low = f.min > -1e299, high = f.max < 1e299;
  // A tiny positive minimum stands for "strictly positive" (train.lr).
  const bool positive = f.min > 0 && f.min < 1e-299;
  if (low && high)
    return positive ? fmt::format(" in (0, {}]", f.max) : fmt::format(" in [{}, {}]", f.min, f.max);
  if (low) return positive ? " > 0" : fmt::format(" >= {}", f.min);
  if (high) return fmt::format(" <= {}", f.max);
  return "";
}

std::string node_text(const YAML::Node& n) {
  if (n.IsScalar()) return "'" + n.Scalar() + "'";
  if (n.IsSequence()) return "a list";
  if (n.IsMap()) return "a mapping";
  return "null";
}

// `where` is "file:line" or "--set"; every message names it and the key.
Value convert(const Field& f, const YAML::Node& n, const std::string& where) {
  auto bad = [&]() -> Error {
    return Error(fmt::format("{}: {}: expected {}{}, got {}", where, f.key, type_name(f),
                             range_text(f), node_text(n)));
  };
  if (n.IsNull()) {
    if (f.type == FT::String) return std::monostate{};
    throw bad();
  }
  auto check_range = [&](double v) {
    if (!(v >= f.min && v <= f.max)) throw bad();
  };
  switch (f.type) {
    case FT::Int: {
      if (!n.IsScalar()) throw bad();
      const std::string& s = n.Scalar();
      char* end = nullptr;
      errno = 0;
      long long v = std::strtoll(s.c_str(), &end, 10);
      if (s.empty() || *end != '\0' || errno) {
        // Accept integral floats such as 1e5, which YAML users write for step counts.
        double d = std::strtod(s.c_str(), &end);
        if (s.empty() || *end != '\0' || d != std::floor(d) || std::abs(d) > 9e18) throw bad();
        v = static_cast<long long>(d);
      }
      check_range(static_cast<double>(v));
      return static_cast<int64_t>(v);
    }
    case FT::Float: {
      if (!n.IsScalar()) throw bad();
      const std::string& s = n.Scalar();
      char* end = nullptr;
      double v = std::strtod(s.c_str(), &end);
      if (s.empty() || *end != '\0' || !std::isfinite(v)) throw bad();
      check_range(v);
      return v;
    }
    case FT::Bool: {
      if (!n.IsScalar()) throw bad();
      const std::string& s = n.Scalar();
      if (s == "true" || s == "True") return true;
      if (s == "false" || s == "False") return false;
      throw bad();
    }
    case FT::String:
      if (!n.IsScalar()) throw bad();
      return n.Scalar();
    case FT::Enum:
      if (!n.IsScalar() ||
          std::find(f.choices.begin(), f.choices.end(), n.Scalar()) == f.choices.end())
        throw bad();
      return n.Scalar();
    case FT::IntList: {
      if (!n.IsSequence()) throw bad();
      std::vector<int64_t> out;
      for (const auto& e : n) {
        if (!e.IsScalar()) throw bad();
        char* end = nullptr;
        long long v = std::strtoll(e.Scalar().c_str(), &end, 10);
        if (e.Scalar().empty() || *end != '\0') throw bad();
        out.push_back(v);
      }
      return out;
    }
    case FT::FloatList: {
      if (!n.IsSequence()) throw bad();
      std::vector<double> out;
      for (const auto& e : n) {
        if (!e.IsScalar()) throw bad();
        char* end = nullptr;
        const double v = std::strtod(e.Scalar().c_str(), &end);
        if (e.Scalar().empty() || *end != '\0' || !std::isfinite(v)) throw bad();
        out.push_back(v);
      }
      return out;
    }
  }
  throw bad();
}

std::string known_keys_under(const std::string& prefix) {
  std::string out;
  for (const auto& f : Config::schema()) {
    if (f.key.rfind(prefix, 0) != 0) continue;
    std::string rest = f.key.substr(prefix.size());
    rest = rest.substr(0, rest.find('.'));
    if (out.find(" " + rest + ",") != std::string::npos) continue;
    out += " " + rest + ",";
  }
  if (!out.empty()) out.pop_back();
  return out;
}

bool is_section(const std::string& key) {
  for (const auto& f : Config::schema())
    if (f.key.rfind(key + ".", 0) == 0) return true;
  return false;
}

std::string dotted(const std::string& prefix, const std::string& name) {
  return prefix.empty() ? name : prefix + "." + name;
}

// yaml-cpp keeps every pair of a mapping, so a repeated key would otherwise let the later value
// win silently; a typo'd copy-paste of a whole section is as likely as one of a single key.
void check_keys_unique(const YAML::Node& node, const std::string& prefix, const std::string& file) {
  std::map<std::string, int> first_line;
  for (const auto& kv : node) {
    const int line = kv.first.Mark().line + 1;
    if (!kv.first.IsScalar())
      fail("{}:{}: {}: expected a key name, got {}", file, line,
           prefix.empty() ? "top level" : prefix, node_text(kv.first));
    const auto [it, fresh] = first_line.emplace(kv.first.Scalar(), line);
    if (!fresh)
      fail("{}: {} is given twice (lines {} and {})", file, dotted(prefix, kv.first.Scalar()),
           it->second, line);
  }
}

void walk(const YAML::Node& node, const std::string& prefix, const std::string& file,
          std::map<std::string, Value>& values) {
  check_keys_unique(node, prefix, file);
  for (const auto& kv : node) {
    const std::string key = dotted(prefix, kv.first.Scalar());
    const std::string where = fmt::format("{}:{}", file, kv.first.Mark().line + 1);
    if (is_section(key)) {
      if (kv.second.IsNull()) continue;  // an empty section keeps the defaults
      if (!kv.second.IsMap())
        fail("{}: {}: expected a mapping with keys{}, got {}", where, key,
             known_keys_under(key + "."), node_text(kv.second));
      walk(kv.second, key, file, values);
      continue;
    }
    const Field* f = find_field(key);
    if (!f)
      fail("{}: unknown key '{}' (known{}:{})", where, key, prefix.empty() ? "" : " in " + prefix,
           known_keys_under(prefix.empty() ? "" : prefix + "."));
    values[key] = convert(*f, kv.second, where);
  }
}

std::string value_yaml(const Value& v) {
  struct V {
    std::string operator()(std::monostate) const { return "null"; }
    std::string operator()(int64_t x) const { return std::to_string(x); }
    std::string operator()(double x) const {
      std::string s = fmt::format("{}", x);
      // Keep floats recognisable as floats when read back by other YAML tools.
      if (s.find_first_of(".eEn") == std::string::npos) s += ".0";
      return s;
    }
    std::string operator()(bool x) const { return x ? "true" : "false"; }
    std::string operator()(const std::string& x) const {
      YAML::Emitter e;
      e << YAML::DoubleQuoted << x;
      return e.c_str();
    }
    std::string operator()(const std::vector<int64_t>& x) const {
      std::string s = "[";
      for (size_t k = 0; k < x.size(); ++k) s += (k ? ", " : "") + std::to_string(x[k]);
      return s + "]";
    }
    std::string operator()(const std::vector<double>& x) const {
      std::string s = "[";
      for (size_t k = 0; k < x.size(); ++k) s += (k ? ", " : "") + (*this)(x[k]);
      return s + "]";
    }
  };
  return std::visit(V{}, v);
}

// False for text that is only blank lines and comments.
bool has_content(const std::string& text) {
  std::istringstream in(text);
  std::string line;
  while (std::getline(in, line)) {
    const auto first = line.find_first_not_of(" \t\r");
    if (first != std::string::npos && line[first] != '#') return true;
  }
  return false;
}

}  // namespace

const std::vector<Field>& Config::schema() {
  static const std::vector<Field> s = make_schema();
  return s;
}

Config Config::load(const std::string& path, const std::vector<std::string>& overrides) {
  std::ifstream in(path);
  if (!in) fail("{}: cannot read the config file", path);
  std::stringstream ss;
  ss << in.rdbuf();
  return parse(ss.str(), path, overrides);
}

Config Config::parse(const std::string& text, const std::string& origin,
                     const std::vector<std::string>& overrides) {
  Config c;
  c.origin_ = origin;
  for (const auto& f : schema())
    c.values_[f.key] = convert(f, YAML::Load(f.default_yaml), "schema");
  YAML::Node root;
  try {
    root = YAML::Load(text);
  } catch (const YAML::Exception& e) {
    fail("{}:{}:{}: malformed YAML: {}", origin, e.mark.line + 1, e.mark.column + 1, e.msg);
  }
  // An empty file is almost always a mistake (wrong path, unsaved editor buffer), not a request
  // for every default.
  if (root.IsNull() && !has_content(text))
    fail(
        "{}: the file is empty (expected a YAML mapping of experiment settings, see "
        "experiments/*.yaml)",
        origin);
  if (!root.IsMap())
    fail("{}: expected a mapping of config keys at the top level, got {}", origin, node_text(root));
  walk(root, "", origin, c.values_);
  for (const auto& o : overrides) c.set(o);
  return c;
}

void Config::set(const std::string& assignment) {
  const auto eq = assignment.find('=');
  if (eq == std::string::npos || eq == 0)
    fail("--set {}: expected key=value (e.g. train.lr=0.05)", assignment);
  const std::string key = assignment.substr(0, eq);
  const Field* f = find_field(key);
  if (!f)
    fail("--set {}: unknown key '{}' (known keys:{})", assignment, key, [] {
      std::string all;
      for (const auto& fld : schema()) all += " " + fld.key;
      return all;
    }());
  YAML::Node n;
  try {
    n = YAML::Load(assignment.substr(eq + 1));
  } catch (const YAML::Exception& e) {
    fail("--set {}: malformed value: {}", assignment, e.msg);
  }
  values_[key] = convert(*f, n, "--set");
}

const Value& Config::get(const std::string& key) const {
  auto it = values_.find(key);
  if (it == values_.end()) fail("internal: config key '{}' is not in the schema", key);
  return it->second;
}

int64_t Config::i(const std::string& key) const {
  return std::get<int64_t>(get(key));
}
double Config::f(const std::string& key) const {
  return std::get<double>(get(key));
}
bool Config::b(const std::string& key) const {
  return std::get<bool>(get(key));
}
const std::string& Config::s(const std::string& key) const {
  static const std::string empty;
  const Value& v = get(key);
  return std::holds_alternative<std::string>(v) ? std::get<std::string>(v) : empty;
}
const std::vector<int64_t>& Config::ints(const std::string& key) const {
  return std::get<std::vector<int64_t>>(get(key));
}
const std::vector<double>& Config::floats(const std::string& key) const {
  return std::get<std::vector<double>>(get(key));
}
bool Config::is_set(const std::string& key) const {
  return !std::holds_alternative<std::monostate>(get(key));
}

std::string Config::to_yaml() const {
  std::string out = "# resolved noisegeom configuration (every key, defaults included)\n";
  std::string section;
  for (const auto& f : schema()) {
    const auto dot = f.key.find('.');
    const std::string sec = dot == std::string::npos ? "" : f.key.substr(0, dot);
    const std::string leaf = dot == std::string::npos ? f.key : f.key.substr(dot + 1);
    if (sec != section && !sec.empty()) out += sec + ":\n";
    section = sec;
    out += fmt::format("{}{}: {}\n", sec.empty() ? "" : "  ", leaf, value_yaml(get(f.key)));
  }
  return out;
}

std::vector<std::string> Config::diff(const Config& other) const {
  std::vector<std::string> keys;
  for (const auto& f : schema())
    if (value_yaml(get(f.key)) != value_yaml(other.get(f.key))) keys.push_back(f.key);
  return keys;
}

}  // namespace ng
