// Writer and reader of the study's files in RUN/escapes/NAME/ (see escape_files.h).
#include "src/study/escape_files.h"

#include <fmt/format.h>

#include <cmath>
#include <cstdlib>
#include <filesystem>
#include <sstream>

#include "src/core/error.h"
#include "src/io/files.h"

namespace fs = std::filesystem;

namespace ng {

std::string trajectories_csv(const std::string& optimizer, double lr,
                             const std::vector<int64_t>& ks, const std::vector<RunResult>& runs,
                             bool energy) {
  std::string out = "optimizer,run,step,lr,loss,distance";
  for (int64_t k : ks) out += fmt::format(",p_{},r_{}", k, k);
  if (energy) out += ",energy_x,energy_y,D_1";
  out += "\n";
  for (const auto& r : runs)
    for (const auto& pt : r.trajectory) {
      out += fmt::format("{},{},{},{},{},{}", optimizer, pt.run, pt.step, g17(lr), g17(pt.loss),
                         g17(pt.distance));
      for (size_t j = 0; j < ks.size(); ++j) out += "," + g17(pt.p[j]) + "," + g17(pt.r[j]);
      if (energy) out += "," + g17(pt.energy_x) + "," + g17(pt.energy_y) + "," + g17(pt.d1);
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

int64_t TrajectoryTable::column(const std::string& name) const {
  for (size_t j = 0; j < columns.size(); ++j)
    if (columns[j] == name) return static_cast<int64_t>(j);
  return -1;
}

TrajectoryTable load_trajectories(const std::string& dir) {
  const std::string file = (fs::path(dir) / escape_files::kTrajectories).string();
  std::istringstream in(read_file(file));
  TrajectoryTable t;
  std::string line;
  if (!std::getline(in, line) || line.rfind("optimizer,", 0) != 0)
    fail("{}: not a trajectories file (no header starting with 'optimizer,')", file);
  std::istringstream head(line);
  for (std::string c; std::getline(head, c, ',');) t.columns.push_back(c);
  int64_t row = 1;
  while (std::getline(in, line)) {
    ++row;
    if (line.empty()) continue;
    std::istringstream cells(line);
    std::vector<double> v;
    std::string c;
    std::getline(cells, c, ',');  // the optimizer's name
    v.push_back(std::nan(""));
    while (std::getline(cells, c, ',')) {
      char* end = nullptr;
      v.push_back(std::strtod(c.c_str(), &end));
      if (c.empty() || *end != '\0') fail("{}: line {}: '{}' is not a number", file, row, c);
    }
    if (v.size() != t.columns.size())
      fail("{}: line {}: {} cells, expected {}", file, row, v.size(), t.columns.size());
    t.rows.push_back(std::move(v));
  }
  return t;
}

json find_escape_record(const std::string& dir) {
  return fs::exists(fs::path(dir) / escape_files::kRecord) ? load_escape_record(dir) : json();
}

}  // namespace ng
