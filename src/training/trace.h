// Reading RUN/trace.csv, the per-step record of every parameter that training writes for small
// models (train.trace_every): columns step, lr, loss, then one per parameter entry.
#pragma once

#include <string>
#include <vector>

namespace ng {

struct Trace {
  std::vector<std::string> columns;
  std::vector<std::vector<double>> rows;  // by step, one value per column
  // The values of one column; ng::Error naming the file when there is no such column.
  std::vector<double> column(const std::string& name) const;
  std::string path;
};

// ng::Error naming the file for a missing file, a row of the wrong width or a cell that is not
// a number.
Trace read_trace(const std::string& path);

}  // namespace ng
