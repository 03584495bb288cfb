// Subcommands of the `noisegeom` CLI. Each returns the process exit code; ng::Error propagates to
// main, which prints it as one line and exits 1; UsageError exits 2.
#pragma once

#include <string>
#include <vector>

namespace ng {

struct Command {
  const char* name;
  const char* summary;
  const char* help;  // full --help text
  int (*run)(const std::vector<std::string>& args);
};

int cmd_models(const std::vector<std::string>& args);
int cmd_data(const std::vector<std::string>& args);
int cmd_train(const std::vector<std::string>& args);
int cmd_spectrum(const std::vector<std::string>& args);
int cmd_reproduce(const std::vector<std::string>& args);
int cmd_escape(const std::vector<std::string>& args);
// Checks escape options (no RUN_DIR) as cmd_escape would; throws ng::Error / UsageError.
void check_escape_args(const std::vector<std::string>& args);

// spectrum's options as on its command line (RUN_DIR goes to `positional`); `reproduce` parses
// the spectrum jobs of its figure table with it, so they are checked exactly like the CLI's.
struct SpectrumOptions;
SpectrumOptions parse_spectrum_options(const std::vector<std::string>& argv,
                                       std::vector<std::string>* positional);

// Exit codes beyond 0/1/2.
constexpr int kExitDiverged = 3;
constexpr int kExitInterrupted = 130;

}  // namespace ng
