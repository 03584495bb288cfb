// What dist.cpp needs of a communication backend; c10d_comm.cpp implements it on c10d and holds
// every difference between LibTorch versions, so that nothing else includes c10d's headers.
#pragma once

#include <ATen/core/Tensor.h>

#include <chrono>
#include <memory>

#include "src/dist/dist.h"

namespace ng::detail {

class Comm {
 public:
  virtual ~Comm() = default;
  // Contiguous tensors only (dist.cpp makes them so). CUDA tensors only when cuda() is true.
  virtual void all_reduce_sum(at::Tensor& t) = 0;
  virtual void broadcast(at::Tensor& t, int root) = 0;
  virtual void barrier() = 0;
  virtual bool cuda() const = 0;  // collectives on CUDA tensors (NCCL)
};

// Connects; throws ng::Error naming MASTER_ADDR / MASTER_PORT on failure.
std::unique_ptr<Comm> connect_c10d(const DistEnv& env, std::chrono::milliseconds timeout);

}  // namespace ng::detail
