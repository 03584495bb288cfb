// The dtypes and devices that configs and command lines name, with their one name table each.
#pragma once

#include <c10/core/DeviceType.h>
#include <c10/core/ScalarType.h>

#include "src/core/names.h"

namespace ng {

// float32 | float64 (the only dtypes the operators and escapes support).
inline const NameTable<c10::ScalarType>& dtype_names() {
  static const NameTable<c10::ScalarType> t("dtype", {{c10::kFloat, "float32"},
                                                      {c10::kDouble, "float64"},
                                                      {c10::kFloat, "float"},
                                                      {c10::kDouble, "double"}});
  return t;
}

// Where a run computes: "auto" resolves to cuda when a GPU is usable (resolve_device).
enum class DeviceChoice { Auto, Cpu, Cuda };
inline const NameTable<DeviceChoice>& device_names() {
  static const NameTable<DeviceChoice> t(
      "device",
      {{DeviceChoice::Auto, "auto"}, {DeviceChoice::Cpu, "cpu"}, {DeviceChoice::Cuda, "cuda"}});
  return t;
}

}  // namespace ng
