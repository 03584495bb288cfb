// run_concurrently of threads.h: the worker threads, their start barrier and their errors.
#include "src/core/threads.h"

#include <ATen/ThreadLocalState.h>

#include <exception>
#include <mutex>
#include <thread>
#include <vector>

namespace ng {

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
