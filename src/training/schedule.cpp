// The learning-rate schedules of src/training/schedule.h.
#include "src/training/schedule.h"

#include <fmt/format.h>

#include <cmath>

#include "src/core/config.h"
#include "src/core/error.h"

namespace ng {

constexpr double kPi = 3.14159265358979323846;

const NameTable<ScheduleKind>& schedule_names() {
  static const NameTable<ScheduleKind> names("schedule", {{ScheduleKind::Constant, "constant"},
                                                          {ScheduleKind::Triangular, "triangular"},
                                                          {ScheduleKind::Cosine, "cosine"}});
  return names;
}

double LrSchedule::at(int64_t step) const {
  if (kind == ScheduleKind::Constant) return peak;
  // The phase from integers, so that step 10^9 of a cycle is the same number as step 0.
  const double u = static_cast<double>(step % cycle) / static_cast<double>(cycle);
  const double rise = kind == ScheduleKind::Triangular ? 1.0 - std::abs(2.0 * u - 1.0)
                                                       : 0.5 * (1.0 + std::cos(kPi * u));
  return min + (peak - min) * rise;
}

std::string LrSchedule::describe() const {
  if (kind == ScheduleKind::Constant) return fmt::format("constant lr {}", peak);
  return fmt::format("{} lr {}..{}, cycle {} steps", schedule_names().name(kind), min, peak, cycle);
}

LrSchedule schedule_from_config(const Config& cfg) {
  LrSchedule s;
  s.kind = schedule_names().parse(cfg.s("train.schedule"), cfg.origin() + ": train.schedule");
  s.peak = cfg.f("train.lr");
  s.min = cfg.f("train.lr_min");
  s.cycle = cfg.i("train.cycle");
  if (s.kind != ScheduleKind::Constant && s.min > s.peak)
    fail("{}: train.lr_min ({}) exceeds train.lr ({}), the peak of the {} schedule", cfg.origin(),
         s.min, s.peak, schedule_names().name(s.kind));
  return s;
}

}  // namespace ng
