// Stopping a long command cleanly: a time budget (--budget) and SIGINT/SIGTERM both become one
// process-wide stop request, which the long loops (training steps, escape runs, reproduce's jobs)
// poll where they can checkpoint, so that running the same command again continues the work.
#pragma once

#include <string>

namespace ng {

enum class StopReason { None, Signal, Budget };

// Exit status of a command stopped by its time budget after checkpointing ("try again later",
// sysexits' EX_TEMPFAIL); a signal gives 130 as before.
constexpr int kExitBudgetSpent = 75;

// The budget counts from this call; seconds <= 0 removes it. `text` is how messages name it
// (the option's value as given, e.g. "7m"; default "420s").
void set_time_budget(double seconds, const std::string& text = "");
double time_budget();  // seconds, 0: none

// Polled once per step by the loops (from any thread): an atomic load, and a clock read while a
// budget is set. A signal wins over the budget.
StopReason stop_requested();
inline bool should_stop() {
  return stop_requested() != StopReason::None;
}
// "interrupted by SIGINT" or "time budget 7m spent"; "" when no stop is requested.
std::string stop_description();
// Forgets a received signal and the budget (tests that stop several runs in one process).
void clear_stop_request();

// While one is alive, the first SIGINT or SIGTERM requests a stop (the running job checkpoints
// and the command exits 130) and says so on stderr; a second one ends the process at once, since
// some jobs (a spectrum) cannot stop before they finish. Nests: the outermost one restores the
// previous handlers.
class StopOnSignals {
 public:
  StopOnSignals();
  ~StopOnSignals();
  StopOnSignals(const StopOnSignals&) = delete;
  StopOnSignals& operator=(const StopOnSignals&) = delete;
};

// "90s", "7m", "1h30m", "2h", "1.5h", "45" (seconds) -> seconds; anything else fails with one
// line naming `what` (the option).
double parse_duration(const std::string& text, const std::string& what);

}  // namespace ng
