// The subcommands of `noisegeom`. Each add_* defines its options on a CLI11 subcommand of `app`
// (its --help is generated from them) and returns what runs it once the arguments are parsed:
// turning them into a request, calling the study or training library, printing. ng::Error
// propagates to main, which prints it as one line and exits 1.
#pragma once

#include <CLI/CLI.hpp>
#include <functional>

namespace ng {

struct Command {
  CLI::App* app;             // the subcommand
  std::function<int()> run;  // its work, once parsed; returns the exit code
};

Command add_models_command(CLI::App& app);
Command add_data_command(CLI::App& app);
Command add_train_command(CLI::App& app);
Command add_spectrum_command(CLI::App& app);
Command add_escape_command(CLI::App& app);
Command add_show_command(CLI::App& app);
Command add_reproduce_command(CLI::App& app);

}  // namespace ng
