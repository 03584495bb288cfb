// The command-line options of the analyses, defined once: the spectrum and escape commands parse
// their arguments with them, their --help is generated from them, and `reproduce --set
// spectrum.OPTION=value` applies them to a figure's typed jobs.
#pragma once

#include <CLI/CLI.hpp>
#include <string>
#include <vector>

#include "src/study/escape_study.h"
#include "src/study/spectrum_study.h"

namespace ng {

// Options that set fields of the request (not --data-dir, --quiet: those are the command's).
void add_spectrum_options(CLI::App& app, SpectrumRequest& r);
void add_escape_options(CLI::App& app, EscapeRequest& r);

// --data-dir and --quiet of the commands that analyse a run.
void add_context_options(CLI::App& app, StudyContext& ctx);

// --budget DURATION of the long commands: the process's time budget (src/core/stop.h), counted
// from when the arguments are parsed.
void add_budget_option(CLI::App& app);

// `option=value` items (reproduce's --set spectrum.k=10 becomes "k=10") parsed by the same
// definitions onto a request; an unknown option or bad value throws CLI::ParseError or ng::Error.
void apply_spectrum_overrides(SpectrumRequest& r, const std::vector<std::string>& items);
void apply_escape_overrides(EscapeRequest& r, const std::vector<std::string>& items);

// The exit code and one-line message of a CLI11 parse error: 0 for --help and --version (the
// text printed on stdout), 1 for a bad value, 2 for a usage error.
int report_parse_error(const CLI::App& app, const CLI::ParseError& e);

// `text` with its lines broken between words to at most `width` columns (help footers); existing
// line breaks stay.
std::string wrap(const std::string& text, size_t width = 100);

}  // namespace ng
