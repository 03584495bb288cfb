// The only file that includes c10d: a TCPStore rendezvous at MASTER_ADDR:MASTER_PORT, a Gloo
// process group for CPU tensors and, in CUDA builds whose LibTorch has NCCL, an NCCL group for
// CUDA tensors. LibTorch 1.13 (Debian) and 2.x (the CUDA wheel) differ here: in 2.x the groups are
// c10d::Backend subclasses, the device factories take a lazy-init flag and NCCL comes with the
// wheel; the calls below are the subset both accept, and the version checks are all in this file.
// Without a CUDA build at hand, check it against the wheel's headers ($T: site-packages/torch,
// $N: site-packages/nvidia; Gloo's headers from libgloo-dev):
//   g++ -std=c++17 -fsyntax-only -DUSE_C10D_GLOO -DUSE_DISTRIBUTED -DUSE_C10D_NCCL -DUSE_CUDA -I.
//     -isystem $T/include -isystem $T/include/torch/csrc/api/include -isystem $N/nccl/include
//     -isystem $N/cu13/include src/dist/c10d_comm.cpp   (one line)
#include <ATen/ATen.h>
#include <fmt/format.h>
#include <torch/version.h>

#include <cstdlib>
#include <string>
#include <torch/csrc/distributed/c10d/PrefixStore.hpp>
#include <torch/csrc/distributed/c10d/ProcessGroupGloo.hpp>
#include <torch/csrc/distributed/c10d/TCPStore.hpp>
#include <vector>

#if TORCH_VERSION_MAJOR >= 2 && defined(USE_C10D_NCCL) && __has_include(<nccl.h>)
#include <c10/cuda/CUDAFunctions.h>

#include <torch/csrc/distributed/c10d/ProcessGroupNCCL.hpp>
#define NG_DIST_NCCL 1
#else
#define NG_DIST_NCCL 0
#endif

#include "src/core/error.h"
#include "src/dist/comm.h"

namespace ng::detail {
namespace {

std::string first_line(const std::string& text) {
  return text.substr(0, text.find('\n'));
}

double seconds(std::chrono::milliseconds t) {
  return std::chrono::duration<double>(t).count();
}

c10::intrusive_ptr<c10d::Store> rendezvous(const DistEnv& e, std::chrono::milliseconds timeout) {
  c10d::TCPStoreOptions o;
  o.port = static_cast<std::uint16_t>(e.master_port);
  o.isServer = e.dist.rank == 0 && !e.agent_store;
  o.numWorkers = static_cast<std::size_t>(e.dist.world);
  o.waitWorkers = true;
  o.timeout = timeout;
  try {
    return c10::make_intrusive<c10d::TCPStore>(e.master_addr, o);
  } catch (const std::exception& err) {
    if (o.isServer)
      fail(
          "rank 0 could not listen on MASTER_PORT={} (another job on that port?) or not all "
          "WORLD_SIZE={} ranks joined within {:g} s: {}",
          e.master_port, e.dist.world, seconds(timeout), first_line(err.what()));
    fail("rank {} could not reach rank 0 at MASTER_ADDR={} MASTER_PORT={} within {:g} s: {}",
         e.dist.rank, e.master_addr, e.master_port, seconds(timeout), first_line(err.what()));
  }
}

// Gloo's address for this process: GLOO_SOCKET_IFNAME as in PyTorch; loopback when rank 0 is on
// this machine's loopback (single-machine runs need no resolvable hostname); else the address
// this machine's hostname resolves to.
std::shared_ptr<::gloo::transport::Device> gloo_device(const DistEnv& e) {
  if (const char* ifname = std::getenv("GLOO_SOCKET_IFNAME"); ifname && *ifname)
    return c10d::ProcessGroupGloo::createDeviceForInterface(ifname);
  if (e.master_addr == "localhost" || e.master_addr.rfind("127.", 0) == 0)
    return c10d::ProcessGroupGloo::createDeviceForHostname("127.0.0.1");
  return c10d::ProcessGroupGloo::createDefaultDevice();
}

// PyTorch 2's torchrun hosts the store in its own process, in a protocol that LibTorch 1.x's
// client does not speak (seen as "Stop_waiting response is expected"); it can be told to leave
// the store to rank 0.
std::string agent_store_hint(const DistEnv& e) {
  if (!e.agent_store || TORCH_VERSION_MAJOR >= 2) return "";
  return fmt::format(
      " (TORCHELASTIC_USE_AGENT_STORE=True: a PyTorch 2 torchrun's store cannot be joined by "
      "this LibTorch {}.{} build; start torchrun with TORCH_DISABLE_SHARE_RDZV_TCP_STORE=1 and "
      "--standalone or --rdzv-backend c10d)",
      TORCH_VERSION_MAJOR, TORCH_VERSION_MINOR);
}

class C10dComm : public Comm {
 public:
  C10dComm(const DistEnv& e, std::chrono::milliseconds timeout) : rank_(e.dist.rank) {
    const auto store = rendezvous(e, timeout);
    try {
      auto opts = c10d::ProcessGroupGloo::Options::create(timeout);
      opts->devices.push_back(gloo_device(e));
      gloo_ = c10::make_intrusive<c10d::ProcessGroupGloo>(
          c10::make_intrusive<c10d::PrefixStore>("gloo", store), e.dist.rank, e.dist.world, opts);
#if NG_DIST_NCCL
      // NCCL wants a GPU of its own per rank (LOCAL_RANK on its machine). The ranks agree on it:
      // one rank on NCCL and another staging through Gloo would wait for each other forever.
      at::Tensor ready =
          at::full({1}, e.dist.local_rank < c10::cuda::device_count() ? 1 : 0, at::kInt);
      all_reduce_sum(ready);
      if (ready.item<int>() == e.dist.world) {
        c10::cuda::set_device(static_cast<c10::DeviceIndex>(e.dist.local_rank));
        nccl_ = c10::make_intrusive<c10d::ProcessGroupNCCL>(
            c10::make_intrusive<c10d::PrefixStore>("nccl", store), e.dist.rank, e.dist.world);
      }
#endif
    } catch (const Error&) {
      throw;
    } catch (const std::exception& err) {
      fail("rank {}: c10d could not connect the WORLD_SIZE={} ranks (MASTER_ADDR={}): {}{}",
           e.dist.rank, e.dist.world, e.master_addr, first_line(err.what()), agent_store_hint(e));
    }
  }

  void all_reduce_sum(at::Tensor& t) override {
    std::vector<at::Tensor> ts{t};
    c10d::AllreduceOptions o;
    o.reduceOp = c10d::ReduceOp::SUM;
    finish("all_reduce",
           [&] { return t.is_cuda() ? nccl()->allreduce(ts, o) : gloo_->allreduce(ts, o); });
  }

  void broadcast(at::Tensor& t, int root) override {
    std::vector<at::Tensor> ts{t};
    c10d::BroadcastOptions o;
    o.rootRank = root;
    finish("broadcast",
           [&] { return t.is_cuda() ? nccl()->broadcast(ts, o) : gloo_->broadcast(ts, o); });
  }

  void barrier() override {
    finish("barrier", [&] { return gloo_->barrier(); });
  }

  bool cuda() const override {
#if NG_DIST_NCCL
    return nccl_.defined();
#else
    return false;
#endif
  }

 private:
  // Starts a collective and waits for it; a peer that died or timed out becomes one line.
  template <typename Start>
  void finish(const char* what, Start start) {
    try {
      start()->wait();
    } catch (const std::exception& err) {
      fail("rank {}: c10d {} failed: {}", rank_, what, first_line(err.what()));
    }
  }

#if NG_DIST_NCCL
  const c10::intrusive_ptr<c10d::ProcessGroupNCCL>& nccl() const {
    return nccl_;
  }
  c10::intrusive_ptr<c10d::ProcessGroupNCCL> nccl_;
#else
  // Never called: dist.cpp stages CUDA tensors through the CPU when cuda() is false.
  const c10::intrusive_ptr<c10d::ProcessGroupGloo>& nccl() const {
    return gloo_;
  }
#endif
  int rank_;
  c10::intrusive_ptr<c10d::ProcessGroupGloo> gloo_;
};

}  // namespace

std::unique_ptr<Comm> connect_c10d(const DistEnv& env, std::chrono::milliseconds timeout) {
  return std::make_unique<C10dComm>(env, timeout);
}

}  // namespace ng::detail
