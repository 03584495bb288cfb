// The files of one escape sweep, RUN/escapes/NAME/, and their reader beside their writer. The
// escape library keeps its resumable state there (sweep_files in src/escape/escape.h: escape.json,
// run_NNNN.csv, summary.csv); the study adds
//   result.json       the sweep's record: settings, the spectrum it followed, learning rate and
//                     its search, escaped and diverged runs, median escape step, median r/|p| at
//                     escape and mean final p, r per k, curvature at theta*, escape criterion
//   trajectories.csv  optimizer,run,step,lr,loss,distance,p_k,r_k... (every logged point), then
//                     energy_x,energy_y,D_1 when the sweep logs the loss energies (Section 5)
#pragma once

#include <string>
#include <vector>

#include "src/escape/escape.h"
#include "src/io/json.h"

namespace ng {

namespace escape_files {
inline constexpr const char* kRecord = "result.json";
inline constexpr const char* kTrajectories = "trajectories.csv";
}  // namespace escape_files

// Every logged point of every run, one row each (full precision); `energy`: X_t, Y_t, D_{t,1} too.
std::string trajectories_csv(const std::string& optimizer, double lr,
                             const std::vector<int64_t>& ks, const std::vector<RunResult>& runs,
                             bool energy = false);

// The rows of a trajectories.csv, by column name (every cell a number but the optimizer's);
// ng::Error naming the file when it is not one.
struct TrajectoryTable {
  std::vector<std::string> columns;
  std::vector<std::vector<double>> rows;
  int64_t column(const std::string& name) const;  // -1 when absent
};
TrajectoryTable load_trajectories(const std::string& dir);

void write_escape_record(const std::string& dir, const json& record,
                         const std::string& trajectories);
// result.json of a finished sweep; ng::Error naming the file when it is missing or malformed.
json load_escape_record(const std::string& dir);
// The record when the sweep has one, else null (a sweep interrupted before its first record).
json find_escape_record(const std::string& dir);

}  // namespace ng
