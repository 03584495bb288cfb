// A run directory is the unit users share and re-plot: resolved config, manifest, sample indices,
// logs, checkpoints and results. Every file in it is written atomically.
#pragma once

#include <chrono>
#include <cstdint>
#include <fstream>
#include <string>
#include <vector>

namespace ng {

class RunDir {
 public:
  explicit RunDir(std::string root);
  const std::string& root() const { return root_; }
  std::string path(const std::string& name) const;  // root/name
  bool exists(const std::string& name) const;

 private:
  std::string root_;
};

// An append-only CSV log that survives crashes row by row, and can be cut back to the rows at or
// before a step when a run resumes from an older checkpoint.
class CsvLog {
 public:
  // Opens `path`; writes `header` when the file is new or empty. When `keep_until_step` >= 0,
  // first drops every row whose first column (the step) exceeds it.
  CsvLog(const std::string& path, const std::string& header, int64_t keep_until_step = -1);
  void row(const std::string& line);  // one line without the newline; flushed at once
  int64_t data_rows() const { return data_rows_; }

 private:
  std::string path_;
  int64_t data_rows_ = -1;  // the header is not a data row
  std::ofstream out_;
};

std::string iso_time_now();
double seconds_since(std::chrono::steady_clock::time_point t0);
// "42s", "3m07s", "1h05m"; "?" for a negative or non-finite number (an ETA not known yet).
std::string format_duration(double seconds);

}  // namespace ng
