// Shared helpers for the test binaries: temporary directories, synthetic CIFAR-10 files, running
// the CLI as a user would.
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "src/core/error.h"

namespace ngtest {

// A fresh empty directory under the system temp dir; removed at process exit.
std::string temp_dir(const std::string& tag);

// Writes data_batch_1..5.bin (and test_batch.bin if `with_test`) with `per_file` records each.
// Labels cycle 0..9; pixels are noise plus a class-dependent pattern so that models can fit them.
void write_synthetic_cifar(const std::string& dir, int64_t per_file, uint64_t seed,
                           bool with_test = false);

// Runs the shell command `cmd`; returns its exit code and puts stdout+stderr in `output`.
int run_shell(const std::string& cmd, std::string* output = nullptr);
// Runs the built `noisegeom` binary with `args` (a shell-quoted string), as run_shell.
int run_cli(const std::string& args, std::string* output = nullptr);

// While it lives, the environment variable `name` is `value` (unset for nullptr); the variable's
// earlier state comes back at the end of the scope, also when an assertion returns early.
class ScopedEnv {
 public:
  ScopedEnv(const char* name, const char* value);
  ~ScopedEnv();
  ScopedEnv(const ScopedEnv&) = delete;
  ScopedEnv& operator=(const ScopedEnv&) = delete;

 private:
  std::string name_, old_;
  bool had_ = false;
};

// The real CIFAR-10 directory of ../shared/data when present, else "" (tests then skip).
std::string real_cifar_dir();
// Whether Debian's /usr/bin/python3 imports `module` (the plot scripts need matplotlib).
bool python_has(const std::string& module);

std::string read_file(const std::string& path);
void write_file(const std::string& path, const std::string& text);

// 'text' for a shell command line.
std::string quote(const std::string& text);
// Number of newline characters: a one-line error message has exactly one.
int count_lines(const std::string& text);

// Synthetic CIFAR-10 files (write_synthetic_cifar), made once per (per_file, seed) and process.
const std::string& synthetic_cifar_dir(int64_t per_file, uint64_t seed);

// Trains `config_yaml` with the library into <temp>/run and returns that directory; throws when
// training fails. `then`, if given, is one CLI command run on it as a user would (e.g.
// "spectrum {run} --k 4"): "{run}" is replaced by the quoted run directory.
std::string train_run(const std::string& tag, const std::string& config_yaml,
                      const std::string& then = "");
// A copy of a run directory under a fresh temp dir (tests change runs; fixtures are shared).
std::string copy_run(const std::string& run, const std::string& tag);

// A CSV file as rows keyed by the header's column names.
using CsvRow = std::map<std::string, std::string>;
std::vector<CsvRow> read_csv(const std::string& path, std::vector<std::string>* header = nullptr);

// The message of the ng::Error that `f` throws ("" if none).
template <typename F>
std::string error_of(F f) {
  try {
    f();
  } catch (const ng::Error& e) {
    return e.what();
  }
  return "";
}

}  // namespace ngtest
