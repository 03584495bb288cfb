// A run directory is the unit users share and re-plot: resolved config, manifest, sample indices,
// logs, checkpoints and the named analyses of its minimum. Every file in it is written
// atomically. The names of its files and folders live here and nowhere else:
//
//   RUN/config.yaml manifest.json samples.csv train_log.csv checkpoint.pt theta.pt   (training)
//   RUN/trace.csv       every parameter by step (train.trace_every, small models only)
//   RUN/spectra/NAME/   one spectrum (src/study/spectrum_files.h)
//   RUN/escapes/NAME/   one escape sweep (src/study/escape_files.h)
#pragma once

#include <chrono>
#include <cstdint>
#include <fstream>
#include <functional>
#include <optional>
#include <string>
#include <vector>

namespace ng {

// File names inside a run directory.
namespace run_files {
inline constexpr const char* kConfig = "config.yaml";
inline constexpr const char* kManifest = "manifest.json";
inline constexpr const char* kSamples = "samples.csv";
inline constexpr const char* kTrainLog = "train_log.csv";
inline constexpr const char* kCheckpoint = "checkpoint.pt";
inline constexpr const char* kTheta = "theta.pt";
inline constexpr const char* kTrace = "trace.csv";
inline constexpr const char* kSpectra = "spectra";
inline constexpr const char* kEscapes = "escapes";
}  // namespace run_files

// Paths of one run directory (nothing is created or checked).
struct RunPaths {
  std::string root;
  std::string file(const char* name) const;             // root/name
  std::string spectrum(const std::string& name) const;  // root/spectra/NAME
  std::string escape(const std::string& name) const;    // root/escapes/NAME
  std::vector<std::string> spectrum_names() const;      // sorted; [] when none
  std::vector<std::string> escape_names() const;
};

// An analysis name is one folder name: letters, digits, '.', '_', '-', not starting with '.'.
// ng::Error naming `option` otherwise.
void check_analysis_name(const std::string& name, const std::string& option);

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

// The run directory a training writes. Under a launcher only rank 0 writes it: the other ranks
// compute the same run and hold a RunDir in no-write mode, which creates nothing and whose writes
// and logs do nothing, so that a job leaves no copies of its checkpoints on the other nodes (not
// even after a kill).
class RunDir {
 public:
  // `writes` false: the no-write mode.
  explicit RunDir(std::string root, bool writes = true);
  const std::string& root() const { return root_; }
  bool writes() const { return writes_; }
  std::string path(const std::string& name) const;  // root/name

  // write(path(name)), unless in no-write mode: the work of building a file is skipped there too.
  void write(const std::string& name, const std::function<void(const std::string&)>& write) const;
  // The CsvLog `name`; none in no-write mode.
  std::optional<CsvLog> log(const std::string& name, const std::string& header,
                            int64_t keep_until_step = -1) const;

 private:
  std::string root_;
  bool writes_ = true;
};

std::string iso_time_now();
double seconds_since(std::chrono::steady_clock::time_point t0);
// "42s", "3m07s", "1h05m"; "?" for a negative or non-finite number (an ETA not known yet).
std::string format_duration(double seconds);

}  // namespace ng
