// Learning-rate schedules of training: constant, or cyclical (CLR) as Figure 4 of the paper uses
// them. A schedule is a pure function of the step, so that a resumed run continues it exactly.
#pragma once

#include <cstdint>
#include <string>

#include "src/core/names.h"

namespace ng {

class Config;

enum class ScheduleKind { Constant, Triangular, Cosine };
// "constant", "triangular", "cosine" (configs: train.schedule).
const NameTable<ScheduleKind>& schedule_names();

// eta(t), the learning rate of the update from theta_t to theta_{t+1}. With u = (t mod cycle) /
// cycle, the phase within the current cycle:
//   constant:   eta = peak
//   triangular: eta = min + (peak - min) (1 - |2u - 1|)   (Smith 2017: from min up to peak at
//               mid-cycle and back down)
//   cosine:     eta = min + (peak - min) (1 + cos(pi u)) / 2   (Loshchilov & Hutter 2017, SGDR:
//               from peak down to min, then a warm restart at peak)
struct LrSchedule {
  ScheduleKind kind = ScheduleKind::Constant;
  double peak = 0.1;
  double min = 0;
  int64_t cycle = 1;

  double at(int64_t step) const;
  // "constant lr 0.1", "triangular lr 0.005..1.5, cycle 200 steps"
  std::string describe() const;
};

// train.schedule, train.lr (the peak), train.lr_min and train.cycle; ng::Error naming the config
// file and the key when lr_min exceeds lr for a cyclical schedule.
LrSchedule schedule_from_config(const Config& cfg);

}  // namespace ng
