// Memory of this machine and its GPUs, for checks made before a job runs out of it and for
// defaults that scale with it; sizes as users write them ("4G", "512MiB") and as messages show
// them.
#pragma once

#include <c10/core/Device.h>

#include <cstdint>
#include <string>

namespace ng {

// RAM this process may use: the physical memory, capped by its cgroup's limit (a container's
// --memory); -1 when unknown.
int64_t physical_memory_bytes();

// What new tensors on `device` can still get: on the CPU the available RAM (MemAvailable, capped
// by what the cgroup's limit leaves); on CUDA the driver's free memory plus what LibTorch's
// caching allocator holds unused. -1 when unknown (CUDA asked of a CPU build, other devices).
int64_t free_device_memory_bytes(c10::Device device);

// Fails with one line unless `bytes` fit in what `device` has free (unknown counts as fitting):
// "WHAT needs 3.20 GiB on cuda:0 but 1.10 GiB is free; FIX".
void require_free_memory(int64_t bytes, c10::Device device, const std::string& what,
                         const std::string& fix);

// "4G", "4GiB", "512M", "1.5g", "64k", "1000" (bytes), "0" -> bytes, the suffixes K, M, G, T with
// or without "iB" in powers of 1024; "KB", "MB", "GB", "TB" in powers of 1000. Anything else
// fails with one line naming `what` (the option or config key).
int64_t parse_bytes(const std::string& text, const std::string& what);
// A memory budget: parse_bytes, or "auto" -> -1 (the caller's default for the device).
int64_t parse_budget(const std::string& text, const std::string& what);
// "512 B", "3.20 GiB", "12.5 MiB", "128 GiB": three significant digits, powers of 1024.
std::string format_bytes(int64_t bytes);

}  // namespace ng
