// Output files that never exist half-written: write to a temporary name in the same directory,
// flush to disk, rename. Also the torch.load-compatible tensor files (JSON: src/io/json.h).
#pragma once

#include <ATen/core/Tensor.h>
#include <ATen/core/ivalue.h>

#include <cstdint>
#include <string>
#include <utility>
#include <vector>

namespace ng {

void write_file_atomic(const std::string& path, const std::string& bytes);
std::string read_file(const std::string& path);  // throws ng::Error naming the file
// Removes a file or directory tree; true if nothing is left. Not std::filesystem::remove_all: the
// PyTorch wheel's libtorch exports its own copy of it, which crashes when called from our code.
bool remove_tree(const std::string& path);
// A double as CSV cell that reads back to the same bits (17 significant digits); "nan" when not
// finite.
std::string g17(double v);

// Named tensors as a file that Python's torch.load returns as a dict {name: tensor}.
void save_tensor_dict(const std::string& path,
                      const std::vector<std::pair<std::string, at::Tensor>>& tensors);
std::vector<std::pair<std::string, at::Tensor>> load_tensor_dict(const std::string& path);
// Any IValue (e.g. a dict with tensors and ints) in torch.save's format, atomically.
void save_ivalue(const std::string& path, const c10::IValue& value);
c10::IValue load_ivalue(const std::string& path);  // throws ng::Error naming the file

}  // namespace ng
