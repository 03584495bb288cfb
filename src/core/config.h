// Experiment configuration: one YAML file checked against a typed schema, plus `--set key=value`
// overrides checked against the same schema. Keys are dotted paths ("train.lr").
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <variant>
#include <vector>

namespace ng {

enum class FieldType { Int, Float, Bool, String, Enum, IntList, FloatList };

struct Field {
  std::string key;
  FieldType type;
  std::string default_yaml;  // default as YAML text; "null" means "not set"
  std::string help;
  double min = -1e300;  // inclusive bounds for Int and Float
  double max = 1e300;
  std::vector<std::string> choices = {};  // for Enum
};

using Value = std::variant<std::monostate, int64_t, double, bool, std::string, std::vector<int64_t>,
                           std::vector<double>>;

class Config {
 public:
  // Reads `path`, applies overrides ("a.b=value", value in YAML syntax) in order.
  static Config load(const std::string& path, const std::vector<std::string>& overrides = {});
  // Same, from text; `origin` names the source in error messages.
  static Config parse(const std::string& yaml_text, const std::string& origin,
                      const std::vector<std::string>& overrides = {});
  static const std::vector<Field>& schema();

  int64_t i(const std::string& key) const;
  double f(const std::string& key) const;
  bool b(const std::string& key) const;
  const std::string& s(const std::string& key) const;
  const std::vector<int64_t>& ints(const std::string& key) const;
  const std::vector<double>& floats(const std::string& key) const;
  bool is_set(const std::string& key) const;  // false when the value is null

  // Applies one override after loading (same checks as --set).
  void set(const std::string& assignment);
  // The fully resolved configuration in schema order, as YAML (what run directories store).
  std::string to_yaml() const;
  // Keys whose values differ between two configs (for resuming a run with a changed config).
  std::vector<std::string> diff(const Config& other) const;
  const std::string& origin() const { return origin_; }

 private:
  const Value& get(const std::string& key) const;
  std::string origin_;
  std::map<std::string, Value> values_;
};

}  // namespace ng
