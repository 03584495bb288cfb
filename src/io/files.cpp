// Atomic writes, file reads and removal, and torch.save-format tensor files.
#include "src/io/files.h"

#include <ATen/core/Dict.h>
#include <fcntl.h>
#include <ftw.h>
#include <torch/serialize.h>
#include <unistd.h>

#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "src/core/error.h"

namespace fs = std::filesystem;

namespace ng {

void write_file_atomic(const std::string& path, const std::string& bytes) {
  const fs::path target(path);
  if (target.has_parent_path()) fs::create_directories(target.parent_path());
  const std::string tmp = path + ".tmp." + std::to_string(::getpid());
  const int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
  if (fd < 0) fail("{}: cannot write ({})", path, std::strerror(errno));
  size_t done = 0;
  while (done < bytes.size()) {
    const ssize_t n = ::write(fd, bytes.data() + done, bytes.size() - done);
    if (n < 0) {
      ::close(fd);
      ::unlink(tmp.c_str());
      fail("{}: write failed ({})", path, std::strerror(errno));
    }
    done += static_cast<size_t>(n);
  }
  // Without fsync a crash right after rename can leave an empty file under the final name.
  ::fsync(fd);
  ::close(fd);
  if (std::rename(tmp.c_str(), path.c_str()) != 0) {
    ::unlink(tmp.c_str());
    fail("{}: cannot rename from {} ({})", path, tmp, std::strerror(errno));
  }
}

std::string read_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) fail("{}: cannot read", path);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

bool remove_tree(const std::string& path) {
  if (::access(path.c_str(), F_OK) != 0) return true;
  auto rm = [](const char* p, const struct stat*, int, struct FTW*) { return ::remove(p); };
  return ::nftw(path.c_str(), rm, 16, FTW_DEPTH | FTW_PHYS) == 0;
}

std::string g17(double v) {
  return std::isfinite(v) ? fmt::format("{:.17g}", v) : std::string("nan");
}

void save_ivalue(const std::string& path, const c10::IValue& value) {
  const std::vector<char> bytes = torch::pickle_save(value);
  write_file_atomic(path, std::string(bytes.begin(), bytes.end()));
}

c10::IValue load_ivalue(const std::string& path) {
  const std::string s = read_file(path);
  try {
    return torch::pickle_load(std::vector<char>(s.begin(), s.end()));
  } catch (const std::exception& e) {
    std::string msg = e.what();
    msg = msg.substr(0, msg.find('\n'));
    fail("{}: not a readable tensor file ({})", path, msg);
  }
}

void save_tensor_dict(const std::string& path,
                      const std::vector<std::pair<std::string, at::Tensor>>& tensors) {
  c10::Dict<std::string, at::Tensor> d;
  // Detached contiguous CPU copies: Python then sees plain tensors without requires_grad.
  for (const auto& [name, t] : tensors) d.insert(name, t.detach().cpu().contiguous());
  save_ivalue(path, c10::IValue(d));
}

std::vector<std::pair<std::string, at::Tensor>> load_tensor_dict(const std::string& path) {
  const c10::IValue v = load_ivalue(path);
  if (!v.isGenericDict()) fail("{}: expected a dict of named tensors", path);
  std::vector<std::pair<std::string, at::Tensor>> out;
  for (const auto& kv : v.toGenericDict()) {
    if (!kv.key().isString() || !kv.value().isTensor())
      fail("{}: expected a dict of named tensors", path);
    out.emplace_back(kv.key().toStringRef(), kv.value().toTensor());
  }
  return out;
}

}  // namespace ng
