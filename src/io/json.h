// JSON files of a run directory (manifest, summaries, records), read and written with
// nlohmann-json. Keys keep the order they were written in, so the files read like the code that
// wrote them; NaN and infinities are written as null (JSON has neither).
#pragma once

#include <nlohmann/json.hpp>
#include <string>

namespace ng {

using json = nlohmann::ordered_json;

// Atomically (write_file_atomic), indented by two spaces, with a final newline.
void write_json(const std::string& path, const json& value);
// The whole file; ng::Error naming the file when it is missing or not valid JSON.
json read_json(const std::string& path);

// A number that may be null or absent (a metric that was not computed): NaN then.
double json_number_or_nan(const json& j, const std::string& key);

// The first key whose value differs between two objects (in `want`'s order, then keys only
// `have` holds), "" when they are equal. For "made with different settings (KEY differs)".
std::string first_difference(const json& want, const json& have);

}  // namespace ng
