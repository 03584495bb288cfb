// run_concurrently of threads.h (the worker threads, their start barrier and their errors) and
// the default thread count.
#include "src/core/threads.h"

#include <ATen/ThreadLocalState.h>
#include <sched.h>

#include <algorithm>
#include <cstdlib>
#include <exception>
#include <fstream>
#include <mutex>
#include <set>
#include <string>
#include <thread>
#include <utility>
#include <vector>

namespace ng {

int physical_cores() {
  cpu_set_t allowed;
  CPU_ZERO(&allowed);
  if (sched_getaffinity(0, sizeof(allowed), &allowed) != 0)
    return std::max(1u, std::thread::hardware_concurrency());
  auto read = [](int cpu, const char* what) {
    std::ifstream in("/sys/devices/system/cpu/cpu" + std::to_string(cpu) + "/topology/" + what);
    std::string v;
    return (in >> v) ? v : std::string();
  };
  // Hyperthreads of one core share its (package, core) pair; a CPU without topology counts alone.
  std::set<std::pair<std::string, std::string>> cores;
  for (int cpu = 0; cpu < CPU_SETSIZE; ++cpu) {
    if (!CPU_ISSET(cpu, &allowed)) continue;
    const std::string package = read(cpu, "physical_package_id"), core = read(cpu, "core_id");
    if (package.empty() || core.empty())
      cores.insert({"cpu", std::to_string(cpu)});
    else
      cores.insert({package, core});
  }
  return std::max<int>(1, static_cast<int>(cores.size()));
}

void use_all_cores_by_default() {
  if (std::getenv("OMP_NUM_THREADS") || std::getenv("MKL_NUM_THREADS")) return;
  // Several processes of one launcher on this machine share its cores.
  const char* local = std::getenv("LOCAL_WORLD_SIZE");
  const int procs = local ? std::max(1, std::atoi(local)) : 1;
  const int n = std::max(1, physical_cores() / procs);
  if (n != at::get_num_threads()) at::set_num_threads(n);
}

void run_concurrently(int64_t workers, const std::function<void(int64_t)>& body,
                      std::atomic<bool>* failed) {
  if (workers <= 1) {
    body(0);
    return;
  }
  const at::ThreadLocalState state;
  const int intra = at::get_num_threads();
  std::atomic<int64_t> started{0};
  std::atomic<bool> abandon{false};  // a thread could not be created: nobody runs
  std::mutex mu;
  std::exception_ptr error;
  auto keep = [&](std::exception_ptr e) {
    {
      std::lock_guard<std::mutex> lock(mu);
      if (!error) error = e;
    }
    if (failed) *failed = true;
  };
  auto run = [&](int64_t w) {
    started.fetch_add(1);
    while (started.load() < workers && !abandon.load()) std::this_thread::yield();
    if (abandon.load()) return;
    try {
      body(w);
    } catch (...) {
      keep(std::current_exception());
    }
  };
  std::vector<std::thread> pool;
  for (int64_t w = 1; w < workers && !abandon.load(); ++w) {
    try {
      pool.emplace_back([&, w] {
        const at::ThreadLocalStateGuard guard(state);
        // OpenMP's thread count belongs to the calling thread: a new one starts from the default.
        at::set_num_threads(intra);
        run(w);
      });
    } catch (...) {
      keep(std::current_exception());
      abandon = true;
    }
  }
  run(0);
  for (auto& t : pool) t.join();
  if (error) std::rethrow_exception(error);
}

}  // namespace ng
