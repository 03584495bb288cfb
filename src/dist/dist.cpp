// The launcher's environment, the process-wide connection and the collectives' tensor handling
// (contiguity, CPU staging); the c10d calls themselves are in c10d_comm.cpp.
#include "src/dist/dist.h"

#include <ATen/ATen.h>

#include <algorithm>
#include <atomic>
#include <cstdlib>
#include <memory>

#include "src/core/error.h"
#include "src/dist/comm.h"

namespace ng {
namespace {

struct State {
  Dist dist;
  std::unique_ptr<detail::Comm> comm;
  std::atomic<int> solo{0};  // open SoloScopes
};

State& state() {
  static State s;
  return s;
}

// A non-negative integer variable; `fallback` when unset.
int int_var(const EnvReader& env, const char* name, int fallback) {
  const char* text = env(name);
  if (text == nullptr || *text == '\0') return fallback;
  char* end = nullptr;
  const long v = std::strtol(text, &end, 10);
  if (*end != '\0' || v < 0 || v > 1000000)
    fail("{}={} is not a non-negative integer (set by the launcher: torchrun, srun, ...)", name,
         text);
  return static_cast<int>(v);
}

// Runs `op` on a contiguous tensor of t's device that the backend handles, and copies back.
template <typename Op>
void on_backend_tensor(at::Tensor& t, Op op) {
  detail::Comm& comm = *state().comm;
  const bool stage = t.is_cuda() && !comm.cuda();
  at::Tensor work = stage ? t.to(at::kCPU).contiguous() : t.contiguous();
  op(comm, work);
  if (!work.is_same(t)) t.copy_(work);
}

}  // namespace

DistEnv parse_dist_env(const EnvReader& env) {
  DistEnv e;
  e.dist.world = int_var(env, "WORLD_SIZE", 1);
  if (e.dist.world == 0) fail("WORLD_SIZE=0: there must be at least one process");
  if (e.dist.world == 1) return e;
  if (env("RANK") == nullptr)
    fail("RANK is not set, but WORLD_SIZE={} asks for several processes", e.dist.world);
  e.dist.rank = int_var(env, "RANK", 0);
  if (e.dist.rank >= e.dist.world)
    fail("RANK={} is not below WORLD_SIZE={}", e.dist.rank, e.dist.world);
  e.dist.local_rank = int_var(env, "LOCAL_RANK", 0);
  const char* addr = env("MASTER_ADDR");
  if (addr == nullptr || *addr == '\0')
    fail("MASTER_ADDR is not set: with WORLD_SIZE={} every rank needs rank 0's address",
         e.dist.world);
  e.master_addr = addr;
  if (env("MASTER_PORT") == nullptr)
    fail("MASTER_PORT is not set: with WORLD_SIZE={} every rank needs rank 0's port", e.dist.world);
  e.master_port = int_var(env, "MASTER_PORT", 0);
  const char* agent = env("TORCHELASTIC_USE_AGENT_STORE");
  e.agent_store = agent != nullptr && std::string(agent) == "True";
  if (e.master_port < 1 || e.master_port > 65535)
    fail("MASTER_PORT={} is not a port number (1-65535)", e.master_port);
  return e;
}

const Dist& init_from_env(const EnvReader& env, std::chrono::milliseconds timeout) {
  State& s = state();
  if (s.comm) return s.dist;
  const DistEnv e =
      parse_dist_env(env ? env : EnvReader([](const char* n) { return std::getenv(n); }));
  if (e.dist.active()) s.comm = detail::connect_c10d(e, timeout);
  s.dist = e.dist;
  return s.dist;
}

const Dist& dist() {
  static const Dist one;
  const State& s = state();
  return s.solo.load() > 0 ? one : s.dist;
}

SoloScope::SoloScope() {
  ++state().solo;
}
SoloScope::~SoloScope() {
  --state().solo;
}

void finalize_dist() {
  State& s = state();
  s.comm.reset();
  s.dist = Dist{};
}

void all_reduce_sum(at::Tensor& t) {
  if (!dist().active()) return;
  on_backend_tensor(t, [](detail::Comm& c, at::Tensor& w) { c.all_reduce_sum(w); });
}

void broadcast(at::Tensor& t, int root) {
  const Dist& d = dist();
  if (root < 0 || root >= d.world)
    fail("broadcast: root rank {} is outside 0..{}", root, d.world - 1);
  if (!d.active()) return;
  on_backend_tensor(t, [root](detail::Comm& c, at::Tensor& w) { c.broadcast(w, root); });
}

void barrier() {
  if (dist().active()) state().comm->barrier();
}

std::vector<std::string> all_gather_strings(const std::string& mine) {
  const Dist& d = dist();
  if (!d.active()) return {mine};
  // Two sums: the lengths, then a (world x longest) byte table where each rank fills only its own
  // row, so the sum is exact and no backend needs a variable-size gather.
  at::Tensor lengths = at::zeros({d.world}, at::kLong);
  lengths[d.rank] = static_cast<int64_t>(mine.size());
  all_reduce_sum(lengths);
  const int64_t longest = lengths.max().item<int64_t>();
  at::Tensor bytes = at::zeros({d.world, std::max<int64_t>(longest, 1)}, at::kByte);
  std::copy(mine.begin(), mine.end(), bytes[d.rank].data_ptr<uint8_t>());
  all_reduce_sum(bytes);
  std::vector<std::string> out;
  for (int r = 0; r < d.world; ++r) {
    const auto* row = bytes[r].data_ptr<uint8_t>();
    out.emplace_back(row, row + lengths[r].item<int64_t>());
  }
  return out;
}

int64_t max_over_ranks(int64_t mine) {
  const Dist& d = dist();
  if (!d.active()) return mine;
  // Each rank fills its own entry of zeros, so the sum holds every rank's value exactly.
  at::Tensor all = at::zeros({d.world}, at::kLong);
  all[d.rank] = mine;
  all_reduce_sum(all);
  return all.max().item<int64_t>();
}

bool on_any_rank(bool mine) {
  return max_over_ranks(mine ? 1 : 0) > 0;
}

std::string decided_by_root(const std::function<std::string()>& decide) {
  if (!dist().active()) return decide();
  // The first byte says whether the rest is the answer or rank 0's error message.
  std::string mine;
  if (dist().is_root()) {
    try {
      const SoloScope solo;
      mine = "+" + decide();
    } catch (const Error& e) {
      mine = std::string("!") + e.what();
    }
  }
  const std::string root = all_gather_strings(mine).front();
  if (root.empty()) fail("rank {}: rank 0 sent no decision", dist().rank);
  if (root[0] == '!') {
    if (dist().is_root()) throw Error(root.substr(1));
    fail("{} (rank 0)", root.substr(1));
  }
  return root.substr(1);
}

void checked_on_every_rank(const std::function<void()>& check) {
  std::string mine;
  try {
    check();
  } catch (const Error& e) {
    if (!dist().active()) throw;
    mine = e.what();
  }
  const std::vector<std::string> all = all_gather_strings(mine);
  for (size_t r = 0; r < all.size(); ++r) {
    if (all[r].empty()) continue;
    if (static_cast<int>(r) == dist().rank) throw Error(all[r]);
    fail("{} (rank {})", all[r], r);
  }
}

Range shard(int64_t n, int rank, int world) {
  if (world < 1 || rank < 0 || rank >= world || n < 0)
    fail("shard: rank {} of {} processes over {} items is not a valid split", rank, world, n);
  const int64_t base = n / world, extra = n % world;
  Range r;
  r.begin = rank * base + std::min<int64_t>(rank, extra);
  r.end = r.begin + base + (rank < extra ? 1 : 0);
  return r;
}

Range shard(int64_t n) {
  return shard(n, dist().rank, dist().world);
}

}  // namespace ng
