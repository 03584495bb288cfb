// JSON files through nlohmann-json: atomic writes, reads and field access with one-line errors.
#include "src/io/json.h"

#include <cmath>

#include "src/core/error.h"
#include "src/io/files.h"

namespace ng {

void write_json(const std::string& path, const json& value) {
  // The replace handler keeps a string that is not valid UTF-8 (a path, say) writable.
  write_file_atomic(path, value.dump(2, ' ', false, json::error_handler_t::replace) + "\n");
}

json read_json(const std::string& path) {
  const std::string text = read_file(path);
  try {
    return json::parse(text);
  } catch (const json::parse_error& e) {
    fail("{}: not valid JSON (byte {}); remove the file to recompute it", path, e.byte);
  }
}

double json_number_or_nan(const json& j, const std::string& key) {
  if (!j.is_object() || !j.contains(key) || !j.at(key).is_number()) return std::nan("");
  return j.at(key).get<double>();
}

std::string first_difference(const json& want, const json& have) {
  if (!want.is_object() || !have.is_object()) return want == have ? "" : "format";
  for (const auto& [key, value] : want.items())
    if (!have.contains(key) || have.at(key) != value) return key;
  for (const auto& [key, value] : have.items())
    if (!want.contains(key)) return key;
  return "";
}

}  // namespace ng
