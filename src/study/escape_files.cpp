// Writer and reader of the study's files in RUN/escapes/NAME/ (see escape_files.h).
#include "src/study/escape_files.h"

#include <fmt/format.h>

#include <filesystem>

#include "src/core/error.h"
#include "src/io/files.h"

namespace fs = std::filesystem;

namespace ng {

std::string trajectories_csv(const std::string& optimizer, double lr,
                             const std::vector<int64_t>& ks, const std::vector<RunResult>& runs) {
  std::string out = "optimizer,run,step,lr,loss,distance";
  for (int64_t k : ks) out += fmt::format(",p_{},r_{}", k, k);
  out += "\n";
  for (const auto& r : runs)
    for (const auto& pt : r.trajectory) {
      out += fmt::format("{},{},{},{},{},{}", optimizer, pt.run, pt.step, g17(lr), g17(pt.loss),
                         g17(pt.distance));
      for (size_t j = 0; j < ks.size(); ++j) out += "," + g17(pt.p[j]) + "," + g17(pt.r[j]);
      out += "\n";
    }
  return out;
}

void write_escape_record(const std::string& dir, const json& record,
                         const std::string& trajectories) {
  // The trajectories first: a record on disk always has its trajectories beside it.
  write_file_atomic((fs::path(dir) / escape_files::kTrajectories).string(), trajectories);
  write_json((fs::path(dir) / escape_files::kRecord).string(), record);
}

json load_escape_record(const std::string& dir) {
  const std::string file = (fs::path(dir) / escape_files::kRecord).string();
  if (!fs::exists(file)) fail("{}: missing (the sweep has not finished a call yet)", file);
  json j = read_json(file);
  if (!j.is_object() || !j.contains("request") || !j.contains("lr"))
    fail(
        "{}: not an escape record of this version (no request or lr); run the sweep again under "
        "another --name",
        file);
  return j;
}

json find_escape_record(const std::string& dir) {
  return fs::exists(fs::path(dir) / escape_files::kRecord) ? load_escape_record(dir) : json();
}

}  // namespace ng
