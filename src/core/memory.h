// Memory of this machine and its GPUs, for checks made before a job runs out of it and for
// defaults that scale with it; sizes as users write them ("4G", "512MiB") and as messages show
// them.
#pragma once

#include <c10/core/Device.h>

#include <cstdint>
#include <exception>
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

// LibTorch's out-of-memory errors: c10::OutOfMemoryError, and the CPU allocator's c10::Error.
bool is_out_of_memory(const std::exception& e);
// Throws ng::Error "out of CUDA memory in WHAT (1.10 GiB free now); FIX" for an out-of-memory `e`.
[[noreturn]] void fail_out_of_memory(const std::exception& e, const std::string& what,
                                     const std::string& fix);

// Runs `work`; running out of device memory inside it (a GPU shared with other jobs, activations
// no check foresaw) becomes the one line above, naming what held the memory and the option that
// shrinks it, instead of LibTorch's allocator report. The innermost call names the cause; outer
// ones pass its ng::Error on.
template <typename Work>
auto with_memory_use(const std::string& what, const std::string& fix, Work&& work)
    -> decltype(work()) {
  try {
    return work();
  } catch (const std::exception& e) {
    if (!is_out_of_memory(e)) throw;
    fail_out_of_memory(e, what, fix);
  }
}

// "4G", "4GiB", "512M", "1.5g", "64k", "1000" (bytes), "0" -> bytes, the suffixes K, M, G, T with
// or without "iB" in powers of 1024; "KB", "MB", "GB", "TB" in powers of 1000. Anything else
// fails with one line naming `what` (the option or config key).
int64_t parse_bytes(const std::string& text, const std::string& what);
// A memory budget: parse_bytes, or "auto" -> -1 (the caller's default for the device).
int64_t parse_budget(const std::string& text, const std::string& what);
// "512 B", "3.20 GiB", "12.5 MiB", "128 GiB": three significant digits, powers of 1024.
std::string format_bytes(int64_t bytes);

}  // namespace ng
