// noisegeom's entry point: the subcommands on one CLI11 app, and the exit codes: 0 done, 1 bad
// input (one line naming the file or field), 2 usage, 3 diverged, 130 interrupted.
#include <CLI/CLI.hpp>
#include <cstdio>
#include <string>
#include <vector>

#include "src/cli/commands.h"
#include "src/cli/options.h"
#include "src/core/error.h"

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
    for (const auto& c : commands)
      if (c.app->parsed()) return c.run();
    return 2;
  } catch (const CLI::ParseError& e) {
    // reproduce parses its jobs' overrides with the analyses' own option definitions.
    return ng::report_parse_error(command(), e);
  } catch (const ng::Error& e) {
    std::fprintf(stderr, "noisegeom: error: %s\n", e.what());
    return 1;
  } catch (const std::exception& e) {
    // LibTorch errors carry a C++ backtrace after the first line; users need the first line.
    std::string msg = e.what();
    msg = msg.substr(0, msg.find('\n'));
    std::fprintf(stderr, "noisegeom: error: %s\n", msg.c_str());
    return 1;
  }
}
