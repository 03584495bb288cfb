// IntraThreads: LibTorch's (process-wide) intra-op thread count set for a scope and restored after.
#pragma once

#include <ATen/Parallel.h>

namespace ng {

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

}  // namespace ng
