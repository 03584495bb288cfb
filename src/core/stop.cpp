// The process-wide stop request: the time budget's deadline and the signal received, both atomics
// since escape workers poll them from their threads and the signal handler writes one.
#include "src/core/stop.h"

#include <unistd.h>

#include <atomic>
#include <cctype>
#include <chrono>
#include <csignal>
#include <cstdlib>

#include "src/core/error.h"

namespace ng {
namespace {

using Clock = std::chrono::steady_clock;

std::atomic<int> g_signal{0};
std::atomic<double> g_budget{0};
std::string g_budget_text;              // as the user wrote it; set before any thread polls
std::atomic<Clock::rep> g_deadline{0};  // steady_clock ticks; 0: no budget

int g_depth = 0;  // live StopOnSignals
void (*g_old_int)(int) = SIG_DFL;
void (*g_old_term)(int) = SIG_DFL;

void on_signal(int sig) {
  if (g_signal.exchange(sig) != 0) {
    // The second signal: the user does not want to wait for the job to reach a checkpoint.
    std::signal(sig, SIG_DFL);
    std::raise(sig);
    return;
  }
  static const char msg[] =
      "\nnoisegeom: stopping at the next checkpoint (a second Ctrl-C quits at once)\n";
  const ssize_t ignored = write(STDERR_FILENO, msg, sizeof msg - 1);
  (void)ignored;
}

}  // namespace

void set_time_budget(double seconds, const std::string& text) {
  if (!(seconds > 0)) {
    g_budget = 0;
    g_deadline = 0;
    return;
  }
  g_budget = seconds;
  g_budget_text = text.empty() ? fmt::format("{:g}s", seconds) : text;
  const auto span =
      std::chrono::duration_cast<Clock::duration>(std::chrono::duration<double>(seconds));
  g_deadline = (Clock::now() + span).time_since_epoch().count();
}

double time_budget() {
  return g_budget;
}

StopReason stop_requested() {
  if (g_signal.load(std::memory_order_relaxed) != 0) return StopReason::Signal;
  const Clock::rep deadline = g_deadline.load(std::memory_order_relaxed);
  if (deadline != 0 && Clock::now().time_since_epoch().count() >= deadline)
    return StopReason::Budget;
  return StopReason::None;
}

std::string stop_description() {
  switch (stop_requested()) {
    case StopReason::Signal: {
      const int sig = g_signal;
      return sig == SIGINT    ? "interrupted by SIGINT"
             : sig == SIGTERM ? "interrupted by SIGTERM"
                              : fmt::format("interrupted by signal {}", sig);
    }
    case StopReason::Budget:
      return "time budget " + g_budget_text + " spent";
    case StopReason::None:
      break;
  }
  return "";
}

void clear_stop_request() {
  g_signal = 0;
  set_time_budget(0);
}

StopOnSignals::StopOnSignals() {
  if (g_depth++ > 0) return;
  g_old_int = std::signal(SIGINT, on_signal);
  g_old_term = std::signal(SIGTERM, on_signal);
}

StopOnSignals::~StopOnSignals() {
  if (--g_depth > 0) return;
  std::signal(SIGINT, g_old_int);
  std::signal(SIGTERM, g_old_term);
}

double parse_duration(const std::string& text, const std::string& what) {
  auto bad = [&]() {
    fail("{}: expected a duration such as 90s, 7m, 1h30m or 1.5h, got '{}'", what, text);
  };
  double total = 0;
  size_t at = 0;
  const std::string units = "hms";
  size_t next_unit = 0;  // h before m before s, each once
  while (at < text.size()) {
    // Digits and one point only: strtod alone would take "1e3", "0x10" and "inf".
    const size_t start = at;
    while (at < text.size() &&
           (std::isdigit(static_cast<unsigned char>(text[at])) || text[at] == '.'))
      ++at;
    const std::string number = text.substr(start, at - start);
    if (number.empty() || number == "." || number.find('.') != number.rfind('.')) bad();
    const double v = std::strtod(number.c_str(), nullptr);
    if (at == text.size()) {
      if (next_unit > 0) bad();  // "1h30": a unit is needed after the first
      total += v;
      break;
    }
    const size_t u = units.find(text[at], next_unit);
    if (u == std::string::npos) bad();
    total += v * (u == 0 ? 3600 : u == 1 ? 60 : 1);
    next_unit = u + 1;
    ++at;
  }
  if (!(total > 0)) bad();
  return total;
}

}  // namespace ng
