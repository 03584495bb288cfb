// Several processes as one computation: the rank, the world and the collectives of PyTorch's c10d
// (Gloo for CPU tensors, NCCL for CUDA tensors where the build has it), started from the RANK,
// WORLD_SIZE, LOCAL_RANK, MASTER_ADDR and MASTER_PORT environment that torchrun, srun scripts and
// other launchers set. One process (WORLD_SIZE unset or 1) uses no c10d and no network: every
// collective is then the identity, so callers need no separate single-process path.
#pragma once

#include <ATen/core/Tensor.h>

#include <chrono>
#include <cstdint>
#include <functional>
#include <string>
#include <vector>

namespace ng {

struct Dist {
  int rank = 0, world = 1, local_rank = 0;
  bool active() const { return world > 1; }
  bool is_root() const { return rank == 0; }
};

// The launcher's variables, checked but not yet connected.
struct DistEnv {
  Dist dist;
  std::string master_addr;  // empty for one process
  int master_port = 0;
  // torchrun (PyTorch 2) hosts the rendezvous store itself at MASTER_ADDR:MASTER_PORT and says
  // so with TORCHELASTIC_USE_AGENT_STORE=True: every rank, rank 0 too, then joins it as a client.
  bool agent_store = false;
};

// Reads a variable: nullptr when unset (std::getenv by default; tests pass their own).
using EnvReader = std::function<const char*(const char*)>;
// Throws a one-line ng::Error naming the variable when the environment is inconsistent (RANK
// missing or >= WORLD_SIZE, MASTER_ADDR or MASTER_PORT missing or malformed).
DistEnv parse_dist_env(const EnvReader& env);

// Collectives wait this long for the other ranks (and rank 0's store for its peers) before an
// error: long enough for a slow rank to finish loading data, short enough that a dead peer does
// not hold a job forever.
inline constexpr std::chrono::seconds kDistTimeout{600};

// Connects to the other ranks (rank 0 listens on MASTER_PORT) and makes the result dist().
// Calling it again once connected returns the same Dist. Throws ng::Error naming MASTER_ADDR and
// MASTER_PORT when the peers are not reached within `timeout`.
const Dist& init_from_env(const EnvReader& env = {},
                          std::chrono::milliseconds timeout = kDistTimeout);
// This process's place: one process of one until init_from_env connects.
const Dist& dist();
// Disconnects (collectives in flight must be finished); dist() is one process again. Also done at
// exit.
void finalize_dist();

// Sum over ranks, in place, every rank getting the same bits. CUDA tensors go through NCCL when
// the build has it, else through a CPU copy.
void all_reduce_sum(at::Tensor& t);
// Every rank gets root's values (same shape and dtype on every rank).
void broadcast(at::Tensor& t, int root = 0);
void barrier();
// Every rank's string, in rank order, on every rank (small payloads: results, messages).
std::vector<std::string> all_gather_strings(const std::string& mine);
// The largest of every rank's `mine`, on every rank (one collective; `mine` in one process).
int64_t max_over_ranks(int64_t mine);
// Whether `mine` is true on any rank (one collective; `mine` in one process).
bool on_any_rank(bool mine);

// Runs `decide` on rank 0 only and returns its string on every rank: the choices that depend on
// rank 0's files (what to reuse, what is still to do). An ng::Error thrown by `decide` is thrown
// on every rank, so that the others fail at once instead of waiting in the next collective.
// `decide` runs in a SoloScope: what it calls computes as one process.
std::string decided_by_root(const std::function<std::string()>& decide);

// Runs `check` on every rank; an ng::Error on any rank is thrown on every rank ("rank R: ..."),
// so that no rank waits in the next collective for one that has failed.
void checked_on_every_rank(const std::function<void()>& check);

// While one is alive, dist() is one process of one and every collective the identity: for work
// that rank 0 does alone (reading its files, a figure's summary and plot), which must not wait
// for ranks that are not there. Process-wide (the escape workers' threads see it too); nests.
class SoloScope {
 public:
  SoloScope();
  ~SoloScope();
  SoloScope(const SoloScope&) = delete;
  SoloScope& operator=(const SoloScope&) = delete;
};

// A contiguous range of items [begin, end).
struct Range {
  int64_t begin = 0, end = 0;
  int64_t size() const { return end - begin; }
};
// The part of n items that `rank` of `world` handles: contiguous, in rank order, the first
// n % world ranks one item more.
Range shard(int64_t n, int rank, int world);
// This process's part (dist()).
Range shard(int64_t n);

}  // namespace ng
