// Memory sizes from the kernel (sysconf, /proc/meminfo, the cgroup's limit) and, in CUDA builds
// (NOISEGEOM_CUDA_BUILD), from the driver and LibTorch's caching allocator.
#include "src/core/memory.h"

#include <c10/util/Exception.h>
#include <fmt/format.h>
#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <cmath>
#include <cstdlib>
#include <fstream>
#include <string>

#include "src/core/error.h"

#if NOISEGEOM_CUDA_BUILD
#include <c10/cuda/CUDACachingAllocator.h>
#include <c10/cuda/CUDAFunctions.h>
#include <c10/cuda/CUDAGuard.h>
#include <cuda_runtime_api.h>
#endif

namespace ng {
namespace {

// The first number in `path`, or -1 ("max" in cgroup v2 means no limit).
int64_t read_number(const std::string& path) {
  std::ifstream in(path);
  long long v = -1;
  if (!(in >> v)) return -1;
  return v;
}

// The cgroup's memory limit and usage (v2, else v1); limit -1: none.
struct CgroupMemory {
  int64_t limit = -1, usage = -1;
};
CgroupMemory cgroup_memory() {
  CgroupMemory c{read_number("/sys/fs/cgroup/memory.max"),
                 read_number("/sys/fs/cgroup/memory.current")};
  if (c.limit < 0) {
    c.limit = read_number("/sys/fs/cgroup/memory/memory.limit_in_bytes");
    c.usage = read_number("/sys/fs/cgroup/memory/memory.usage_in_bytes");
  }
  return c;
}

int64_t physical_ram() {
  const long pages = sysconf(_SC_PHYS_PAGES), size = sysconf(_SC_PAGE_SIZE);
  return pages > 0 && size > 0 ? int64_t(pages) * size : -1;
}

// MemAvailable of /proc/meminfo: what the kernel can hand out without swapping.
int64_t available_ram() {
  std::ifstream in("/proc/meminfo");
  std::string key;
  long long kb = 0;
  std::string unit;
  while (in >> key >> kb) {
    std::getline(in, unit);
    if (key == "MemAvailable:") return int64_t(kb) * 1024;
  }
  return -1;
}

// `value` capped at a cgroup limit that is below it (an "unlimited" v1 limit is a huge number).
int64_t cap(int64_t value, int64_t limit) {
  if (limit <= 0) return value;
  return value < 0 ? limit : std::min(value, limit);
}

int64_t free_cuda_memory(c10::Device device) {
#if NOISEGEOM_CUDA_BUILD
  if (c10::cuda::device_count() == 0) return -1;
  const c10::DeviceIndex index = device.has_index() ? device.index() : c10::cuda::current_device();
  const c10::cuda::CUDAGuard guard(index);
  size_t free = 0, total = 0;
  if (cudaMemGetInfo(&free, &total) != cudaSuccess) {
    (void)cudaGetLastError();  // clear the error so that later calls do not report it
    return -1;
  }
  // Blocks LibTorch keeps cached are free to it but not to the driver. Index 0: the aggregate
  // statistic (StatType::AGGREGATE) in every LibTorch version.
  int64_t cached = 0;
  try {
    const auto stats = c10::cuda::CUDACachingAllocator::getDeviceStats(index);
    cached = stats.reserved_bytes[0].current - stats.allocated_bytes[0].current;
  } catch (const c10::Error&) {
    // The allocator is not set up until the first CUDA tensor: nothing is cached yet.
  }
  return int64_t(free) + std::max<int64_t>(0, cached);
#else
  (void)device;
  return -1;
#endif
}

}  // namespace

int64_t physical_memory_bytes() {
  return cap(physical_ram(), cgroup_memory().limit);
}

int64_t free_device_memory_bytes(c10::Device device) {
  if (device.is_cuda()) return free_cuda_memory(device);
  if (!device.is_cpu()) return -1;
  const CgroupMemory c = cgroup_memory();
  const int64_t left = c.limit > 0 && c.usage >= 0 ? std::max<int64_t>(0, c.limit - c.usage) : -1;
  return cap(available_ram(), left);
}

void require_free_memory(int64_t bytes, c10::Device device, const std::string& what,
                         const std::string& fix) {
  const int64_t free = free_device_memory_bytes(device);
  if (free < 0 || bytes <= free) return;
  fail("{} needs {} on {} but {} is free; {}", what, format_bytes(bytes), device.str(),
       format_bytes(free), fix);
}

int64_t parse_bytes(const std::string& text, const std::string& what) {
  auto bad = [&]() {
    fail("{}: expected a size such as 512M, 4G or 2GiB (or 0), got '{}'", what, text);
  };
  size_t at = 0;
  while (at < text.size() &&
         (std::isdigit(static_cast<unsigned char>(text[at])) || text[at] == '.'))
    ++at;
  const std::string number = text.substr(0, at);
  if (number.empty() || number == "." || number.find('.') != number.rfind('.')) bad();
  std::string unit = text.substr(at);
  for (char& c : unit) c = static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
  double factor = 1;
  if (!unit.empty() && unit != "B") {
    const size_t p = std::string("KMGT").find(unit[0]);
    const std::string rest = unit.substr(1);
    if (p == std::string::npos || (rest != "" && rest != "IB" && rest != "B")) bad();
    factor = std::pow(rest == "B" ? 1000.0 : 1024.0, double(p + 1));  // "GB": powers of 1000
  }
  const double bytes = std::strtod(number.c_str(), nullptr) * factor;
  // Fractions of a byte would round to a budget nobody asked for.
  if (!(bytes >= 0) || (bytes > 0 && bytes < 1) || bytes > 9.0e18) bad();
  return static_cast<int64_t>(std::llround(bytes));
}

int64_t parse_budget(const std::string& text, const std::string& what) {
  return text == "auto" ? -1 : parse_bytes(text, what);
}

bool is_out_of_memory(const std::exception& e) {
  if (dynamic_cast<const c10::OutOfMemoryError*>(&e)) return true;
  // LibTorch 1.13's CPU allocator throws a plain c10::Error.
  const std::string what = e.what();
  return dynamic_cast<const c10::Error*>(&e) &&
         what.find("DefaultCPUAllocator:") != std::string::npos &&
         what.find("memory") != std::string::npos;
}

void fail_out_of_memory(const std::exception& e, const std::string& what, const std::string& fix) {
  const bool cuda = std::string(e.what()).find("CUDA") != std::string::npos;
  const int64_t free = free_device_memory_bytes(cuda ? c10::Device(c10::kCUDA, 0) : c10::kCPU);
  fail("out of {} memory in {}{}; {}", cuda ? "CUDA" : "host", what,
       free >= 0 ? " (" + format_bytes(free) + " free now)" : "", fix);
}

std::string format_bytes(int64_t bytes) {
  static const char* units[] = {"B", "KiB", "MiB", "GiB", "TiB", "PiB"};
  double v = double(bytes);
  int u = 0;
  while (std::abs(v) >= 1024 && u < 5) {
    v /= 1024;
    ++u;
  }
  if (u == 0) return fmt::format("{} B", bytes);
  const int decimals = std::abs(v) >= 100 ? 0 : std::abs(v) >= 10 ? 1 : 2;
  return fmt::format("{:.{}f} {}", v, decimals, units[u]);
}

}  // namespace ng
