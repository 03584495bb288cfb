// noisegeom's entry point: the subcommands on one CLI11 app, and the exit codes: 0 done, 1 bad
// input (one line naming the file or field), 2 usage, 3 diverged, 130 interrupted. Under a
// launcher (WORLD_SIZE > 1) the ranks connect first and only rank 0 prints, but every rank's
// errors reach the terminal, prefixed with its rank.
#include <fcntl.h>
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <cstdio>
#include <string>
#include <vector>

#include "src/cli/commands.h"
#include "src/cli/options.h"
#include "src/core/error.h"
#include "src/core/memory.h"
#include "src/core/threads.h"
#include "src/dist/dist.h"

namespace {

int error_fd = STDERR_FILENO;  // where errors go: the terminal's stderr even on a silenced rank

// The other ranks compute what rank 0 reports: their progress and results would only repeat it.
void silence_output() {
  std::fflush(stdout);
  std::fflush(stderr);
  const int keep = dup(STDERR_FILENO), null = open("/dev/null", O_WRONLY);
  if (keep < 0 || null < 0) return;
  error_fd = keep;
  dup2(null, STDOUT_FILENO);
  dup2(null, STDERR_FILENO);
  close(null);
}

int report_error(std::string msg) {
  // LibTorch errors carry a C++ backtrace after the first line; users need the first line.
  msg = msg.substr(0, msg.find('\n'));
  const ng::Dist& d = ng::dist();
  const std::string line =
      "noisegeom: error: " + (d.active() ? "rank " + std::to_string(d.rank) + ": " : "") + msg +
      "\n";
  std::fflush(stderr);
  const ssize_t written = write(error_fd, line.data(), line.size());
  (void)written;  // nowhere left to report a failure to
  return 1;
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app(
      "Noise geometry of SGD: train to a sharp minimum, spectra of G and Sigma, SGD and "
      "GD escapes. `noisegeom COMMAND --help` for a command's options.",
      "noisegeom");
  app.set_version_flag("--version", ng::version_string());
  app.require_subcommand(1);
  app.option_defaults()->always_capture_default();
  std::vector<ng::Command> commands;
  for (auto add : {ng::add_models_command, ng::add_data_command, ng::add_train_command,
                   ng::add_spectrum_command, ng::add_escape_command, ng::add_show_command,
                   ng::add_reproduce_command})
    commands.push_back(add(app));
  // The command a parse error is about: the one given, else the program.
  auto command = [&]() -> const CLI::App& {
    for (const auto& c : commands)
      if (c.app->parsed()) return *c.app;
    return app;
  };
  try {
    try {
      app.parse(argc, argv);
    } catch (const CLI::ParseError& e) {
      return ng::report_parse_error(command(), e);
    }
    // One process (no WORLD_SIZE) connects nothing and prints as always.
    if (!ng::init_from_env().is_root()) silence_output();
    ng::use_all_cores_by_default();
    for (const auto& c : commands)
      if (c.app->parsed()) return c.run();
    return 2;
  } catch (const CLI::ParseError& e) {
    // reproduce parses its jobs' overrides with the analyses' own option definitions.
    return ng::report_parse_error(command(), e);
  } catch (const std::exception& e) {
    // Out of memory where no with_memory_use() names the cause: still one line.
    if (ng::is_out_of_memory(e)) return report_error("out of memory: " + std::string(e.what()));
    return report_error(e.what());
  }
}
