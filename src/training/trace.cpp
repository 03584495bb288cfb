// The trace.csv reader of src/training/trace.h.
#include "src/training/trace.h"

#include <cstdlib>
#include <sstream>

#include "src/core/error.h"
#include "src/io/files.h"

namespace ng {
namespace {

std::vector<std::string> split(const std::string& line) {
  std::vector<std::string> out;
  std::stringstream ss(line);
  std::string cell;
  while (std::getline(ss, cell, ',')) out.push_back(cell);
  return out;
}

}  // namespace

std::vector<double> Trace::column(const std::string& name) const {
  for (size_t c = 0; c < columns.size(); ++c) {
    if (columns[c] != name) continue;
    std::vector<double> out;
    out.reserve(rows.size());
    for (const auto& r : rows) out.push_back(r[c]);
    return out;
  }
  fail("{}: no column '{}'", path, name);
}

Trace read_trace(const std::string& path) {
  Trace t;
  t.path = path;
  std::stringstream in(read_file(path));
  std::string line;
  if (!std::getline(in, line)) fail("{}: empty (expected a header step,lr,loss,...)", path);
  t.columns = split(line);
  for (int64_t n = 2; std::getline(in, line); ++n) {
    if (line.empty()) continue;
    const auto cells = split(line);
    if (cells.size() != t.columns.size())
      fail("{}:{}: {} cells, the header has {}", path, n, cells.size(), t.columns.size());
    std::vector<double> row;
    for (const auto& c : cells) {
      char* end = nullptr;
      row.push_back(std::strtod(c.c_str(), &end));
      if (c.empty() || *end != '\0') fail("{}:{}: '{}' is not a number", path, n, c);
    }
    t.rows.push_back(std::move(row));
  }
  return t;
}

}  // namespace ng
