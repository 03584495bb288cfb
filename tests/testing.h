// Shared helpers for the test binaries: temporary directories, synthetic CIFAR-10 files, running
// the CLI as a user would.
#pragma once

#include <cstdint>
#include <string>

namespace ngtest {

// A fresh empty directory under the system temp dir; removed at process exit.
std::string temp_dir(const std::string& tag);

// Writes data_batch_1..5.bin (and test_batch.bin if `with_test`) with `per_file` records each.
// Labels cycle 0..9; pixels are noise plus a class-dependent pattern so that models can fit them.
void write_synthetic_cifar(const std::string& dir, int64_t per_file, uint64_t seed,
                           bool with_test = false);

// Runs the built `noisegeom` binary with `args` (a shell-quoted string); returns its exit code
// and puts stdout+stderr in `output`.
int run_cli(const std::string& args, std::string* output = nullptr);

// The real CIFAR-10 directory of ../shared/data when present, else "" (tests then skip).
std::string real_cifar_dir();

std::string read_file(const std::string& path);
void write_file(const std::string& path, const std::string& text);

}  // namespace ngtest
