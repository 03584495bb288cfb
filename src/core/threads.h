// IntraThreads: LibTorch's (process-wide) intra-op thread count set for a scope and restored after;
// BlasThreads: the same for OpenBLAS's own thread pool, where OpenBLAS is the BLAS in the process;
// run_concurrently: one function on several threads at once; the default thread count.
#pragma once

#include <ATen/Parallel.h>
#include <dlfcn.h>

#include <atomic>
#include <cstdint>
#include <functional>

namespace ng {

// The physical cores this process may run on (sched_getaffinity and the cores' topology in
// /sys), at least 1.
int physical_cores();

// LibTorch's intra-op thread count set to physical_cores() (divided among LOCAL_WORLD_SIZE
// processes under a launcher) unless OMP_NUM_THREADS or MKL_NUM_THREADS says otherwise. Debian's
// LibTorch 1.13 counts one core on some virtual machines (its cpuinfo), and so ran every command on
// one of two cores by default.
void use_all_cores_by_default();

// Runs body(w) for w = 0 .. workers - 1 at the same time: w = 0 on the calling thread, the others
// on threads of their own that carry the caller's LibTorch thread-local state and intra-op thread
// count. Not at::parallel_for: in our translation units, built without -fopenmp, ATen's inline
// OpenMP path compiles to a serial loop. Every worker has started before any body runs, so work
// handed out first come, first served reaches each of them. The first exception is rethrown once
// all have returned; `failed`, when given, is set as soon as one is thrown, for the others to stop.
void run_concurrently(int64_t workers, const std::function<void(int64_t)>& body,
                      std::atomic<bool>* failed = nullptr);

class IntraThreads {
 public:
  explicit IntraThreads(int n) : old_(at::get_num_threads()) {
    if (n != old_) at::set_num_threads(n);
  }
  ~IntraThreads() {
    if (at::get_num_threads() != old_) at::set_num_threads(old_);
  }
  IntraThreads(const IntraThreads&) = delete;
  IntraThreads& operator=(const IntraThreads&) = delete;

 private:
  int old_;
};

// OpenBLAS keeps a thread pool of its own, which LibTorch's thread count does not reach. Work that
// runs many small GEMMs from several threads at once wants it at one thread: small GEMMs lose to
// its thread start-up (a 12 x 784 x 75 product: 10 GMAC/s on two BLAS threads, 21 on one), and two
// callers would share one pool. Looked up at run time, so that another BLAS (MKL, the reference
// BLAS, cuBLAS on a GPU) leaves this a no-op.
class BlasThreads {
 public:
  explicit BlasThreads(int n) {
    using Get = int (*)();
    auto get = reinterpret_cast<Get>(dlsym(RTLD_DEFAULT, "openblas_get_num_threads"));
    set_ = reinterpret_cast<Set>(dlsym(RTLD_DEFAULT, "openblas_set_num_threads"));
    if (!get || !set_) return;
    old_ = get();
    if (old_ != n) set_(n);
  }
  ~BlasThreads() {
    if (set_ && old_ > 0) set_(old_);
  }
  BlasThreads(const BlasThreads&) = delete;
  BlasThreads& operator=(const BlasThreads&) = delete;

 private:
  using Set = void (*)(int);
  Set set_ = nullptr;
  int old_ = 0;
};

}  // namespace ng
