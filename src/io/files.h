// Output files that never exist half-written: write to a temporary name in the same directory,
// flush to disk, rename. Also small JSON/CSV helpers and the torch.load-compatible tensor files.
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

// Minimal ordered JSON object writer (values are already-formatted JSON or escaped strings).
class Json {
 public:
  Json& str(const std::string& key, const std::string& v);
  Json& num(const std::string& key, double v);
  Json& integer(const std::string& key, int64_t v);
  Json& boolean(const std::string& key, bool v);
  Json& raw(const std::string& key, const std::string& json);  // nested object or array
  std::string dump(int indent = 2) const;
  static std::string quote(const std::string& s);
  // Reading back what dump() wrote (one key a line): the raw JSON value of the first line holding
  // `"key": `, "" when absent; as a number, NaN when absent, null or not a number.
  static std::string field(const std::string& text, const std::string& key);
  static double number_field(const std::string& text, const std::string& key);

 private:
  std::vector<std::pair<std::string, std::string>> items_;
};

// Named tensors as a file that Python's torch.load returns as a dict {name: tensor}.
void save_tensor_dict(const std::string& path,
                      const std::vector<std::pair<std::string, at::Tensor>>& tensors);
std::vector<std::pair<std::string, at::Tensor>> load_tensor_dict(const std::string& path);
// Any IValue (e.g. a dict with tensors and ints) in torch.save's format, atomically.
void save_ivalue(const std::string& path, const c10::IValue& value);
c10::IValue load_ivalue(const std::string& path);  // throws ng::Error naming the file

}  // namespace ng
