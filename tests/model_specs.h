// A model zoo entry by name for tests that run several families at tiny sizes.
#pragma once

#include <cstdint>
#include <string>

#include "models/model.h"

namespace ngtest {

inline ng::ModelSpec model_spec(const std::string& name, int64_t classes, int64_t input_dim = 0) {
  ng::ModelSpec s;
  s.name = name;
  s.num_classes = classes;
  s.input_dim = input_dim;
  return s;
}

}  // namespace ngtest
