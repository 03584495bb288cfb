// Several processes on c10d: the launcher environment and its errors, shards, and two real
// processes on Gloo over localhost (this binary run twice in a hidden worker mode) whose
// collectives and sharded curvature operators must reproduce one process's exact results.
#include <ATen/ATen.h>
#include <fcntl.h>
#include <fmt/format.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <map>
#include <string>
#include <thread>
#include <vector>

#include "models/model.h"
#include "src/core/stop.h"
#include "src/curvature/curvature.h"
#include "src/dist/dist.h"
#include "src/dist/sharded_operator.h"
#include "src/eigen/eigensolver.h"
#include "src/escape/sweep_ranks.h"
#include "src/io/files.h"
#include "src/io/json.h"
#include "src/metrics/alignment.h"
#include "tests/testing.h"

extern char** environ;

namespace {

ng::EnvReader env_of(const std::map<std::string, std::string>& vars) {
  return [vars](const char* name) -> const char* {
    const auto it = vars.find(name);
    return it == vars.end() ? nullptr : it->second.c_str();
  };
}

std::string env_error(const std::map<std::string, std::string>& vars) {
  return ngtest::error_of([&] { ng::parse_dist_env(env_of(vars)); });
}

// A TCP port on 127.0.0.1 that was free a moment ago.
int free_port() {
  const int fd = socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  a.sin_port = 0;
  socklen_t len = sizeof a;
  if (bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0 ||
      getsockname(fd, reinterpret_cast<sockaddr*>(&a), &len) != 0)
    ADD_FAILURE() << "no free port: " << std::strerror(errno);
  close(fd);
  return ntohs(a.sin_port);
}

TEST(DistEnv, OneProcessWithoutTheVariables) {
  const ng::DistEnv e = ng::parse_dist_env(env_of({}));
  EXPECT_FALSE(e.dist.active());
  EXPECT_EQ(e.dist.rank, 0);
  EXPECT_TRUE(ng::parse_dist_env(env_of({{"WORLD_SIZE", "1"}, {"RANK", "0"}})).master_addr.empty());
  const ng::DistEnv two = ng::parse_dist_env(env_of({{"WORLD_SIZE", "4"},
                                                     {"RANK", "3"},
                                                     {"LOCAL_RANK", "1"},
                                                     {"MASTER_ADDR", "node7"},
                                                     {"MASTER_PORT", "29512"}}));
  EXPECT_EQ(two.dist.world, 4);
  EXPECT_EQ(two.dist.rank, 3);
  EXPECT_EQ(two.dist.local_rank, 1);
  EXPECT_EQ(two.master_addr, "node7");
  EXPECT_EQ(two.master_port, 29512);
  EXPECT_FALSE(two.agent_store);
  // torchrun's own store: rank 0 joins it instead of listening.
  EXPECT_TRUE(ng::parse_dist_env(env_of({{"WORLD_SIZE", "2"},
                                         {"RANK", "0"},
                                         {"MASTER_ADDR", "localhost"},
                                         {"MASTER_PORT", "29500"},
                                         {"TORCHELASTIC_USE_AGENT_STORE", "True"}}))
                  .agent_store);
}

TEST(DistEnv, InconsistentVariablesAreNamed) {
  const std::map<std::string, std::string> ok = {
      {"WORLD_SIZE", "2"}, {"RANK", "1"}, {"MASTER_ADDR", "127.0.0.1"}, {"MASTER_PORT", "29500"}};
  auto with = [&](const std::string& k, const std::string& v) {
    auto m = ok;
    if (v.empty())
      m.erase(k);
    else
      m[k] = v;
    return m;
  };
  EXPECT_EQ(env_error(ok), "");
  EXPECT_NE(env_error(with("RANK", "2")).find("RANK=2 is not below WORLD_SIZE=2"),
            std::string::npos);
  EXPECT_NE(env_error(with("RANK", "")).find("RANK is not set"), std::string::npos);
  EXPECT_NE(env_error(with("RANK", "-1")).find("RANK=-1"), std::string::npos);
  EXPECT_NE(env_error(with("WORLD_SIZE", "two")).find("WORLD_SIZE=two"), std::string::npos);
  EXPECT_NE(env_error(with("WORLD_SIZE", "0")).find("WORLD_SIZE=0"), std::string::npos);
  EXPECT_NE(env_error(with("MASTER_ADDR", "")).find("MASTER_ADDR is not set"), std::string::npos);
  EXPECT_NE(env_error(with("MASTER_PORT", "")).find("MASTER_PORT is not set"), std::string::npos);
  EXPECT_NE(env_error(with("MASTER_PORT", "70000")).find("MASTER_PORT=70000"), std::string::npos);
  EXPECT_EQ(ngtest::count_lines(env_error(with("RANK", "2"))), 0);
}

TEST(DistShard, ContiguousFirstRanksTakeTheRemainder) {
  for (int world : {1, 2, 3, 7})
    for (int64_t n : {0, 1, 2, 10, 21, 50000}) {
      int64_t next = 0;
      for (int r = 0; r < world; ++r) {
        const ng::Range s = ng::shard(n, r, world);
        EXPECT_EQ(s.begin, next) << n << " over " << world;
        EXPECT_EQ(s.size(), n / world + (r < n % world ? 1 : 0)) << n << " over " << world;
        next = s.end;
      }
      EXPECT_EQ(next, n);
    }
  EXPECT_EQ(ng::shard(10, 2, 3).begin, 7);
  EXPECT_NE(ngtest::error_of([] { ng::shard(10, 3, 3); }), "");
}

TEST(DistOneProcess, CollectivesAreTheIdentity) {
  ASSERT_FALSE(ng::dist().active());
  at::Tensor t = at::arange(6, at::kDouble);
  ng::all_reduce_sum(t);
  ng::broadcast(t, 0);
  ng::barrier();
  EXPECT_TRUE(at::equal(t, at::arange(6, at::kDouble)));
  EXPECT_EQ(ng::all_gather_strings("only"), std::vector<std::string>{"only"});
  EXPECT_EQ(ng::max_over_ranks(-7), -7);
  EXPECT_TRUE(ng::on_any_rank(true));
  EXPECT_FALSE(ng::on_any_rank(false));
  EXPECT_EQ(ng::shard(9).size(), 9);
  EXPECT_NE(ngtest::error_of([&] { ng::broadcast(t, 1); }), "");
}

TEST(DistOneProcess, UnreachableMasterIsAnErrorNotAHang) {
  const int port = free_port();
  const auto start = std::chrono::steady_clock::now();
  const std::string msg = ngtest::error_of([&] {
    ng::init_from_env(env_of({{"WORLD_SIZE", "2"},
                              {"RANK", "1"},
                              {"MASTER_ADDR", "127.0.0.1"},
                              {"MASTER_PORT", std::to_string(port)}}),
                      std::chrono::seconds(2));
  });
  EXPECT_LT(std::chrono::steady_clock::now() - start, std::chrono::seconds(60));
  EXPECT_NE(msg.find("MASTER_ADDR=127.0.0.1 MASTER_PORT=" + std::to_string(port)),
            std::string::npos)
      << msg;
  EXPECT_EQ(ngtest::count_lines(msg), 0) << msg;
  EXPECT_FALSE(ng::dist().active());
}

// ---- the sharded operator against one process's exact operator ----

struct Problem {
  ng::Net net;
  at::Tensor x, y;
};

// A small fnn from the registry in float64 with n samples (an odd n: unequal shards).
Problem problem(ng::LossKind loss, int64_t n) {
  at::manual_seed(5);
  ng::ModelSpec s;
  s.name = "fnn";
  s.input_dim = 6;
  s.hidden = {8};
  s.num_classes = 3;
  Problem p;
  p.net = ng::make_model(s);
  p.x = at::randn({n, 6}, at::kDouble);
  p.y = loss == ng::LossKind::CrossEntropy
            ? at::one_hot(at::randint(0, 3, {n}, at::kLong), 3).to(at::kDouble)
            : at::randn({n, 3}, at::kDouble);
  return p;
}

double rel(const at::Tensor& a, const at::Tensor& b) {
  return (a - b).norm().item<double>() / b.norm().item<double>();
}

// Compares, for every loss, matrix and estimator, the operator over all samples (one process) with
// the sharded one (all ranks of dist()); returns the number of eigenvalues compared.
constexpr int kCompared = 2 * 7 * 4;  // losses x (matrix, estimator) cases x eigenvalues
int compare_sharded_with_exact() {
  int compared = 0;
  using ng::MatrixKind;
  const std::vector<std::pair<MatrixKind, ng::Estimator>> cases = {
      {MatrixKind::G, ng::Estimator::Exact},         {MatrixKind::Sigma, ng::Estimator::Exact},
      {MatrixKind::Sigma0, ng::Estimator::Exact},    {MatrixKind::Hessian, ng::Estimator::Exact},
      {MatrixKind::G, ng::Estimator::PerSample},     {MatrixKind::Sigma, ng::Estimator::PerSample},
      {MatrixKind::Sigma0, ng::Estimator::PerSample}};
  for (ng::LossKind loss : {ng::LossKind::CrossEntropy, ng::LossKind::Mse})
    for (const auto& [m, estimator] : cases) {
      SCOPED_TRACE(ng::to_string(loss) + " " + ng::to_string(m) + " " + ng::to_string(estimator));
      const Problem p = problem(loss, 37);
      ng::CurvatureOptions o;
      o.loss = loss;
      o.matrix = m;
      o.estimator = estimator;
      o.dtype = at::kDouble;
      o.batch_size = 8;  // several batches per shard, a short last one
      ng::CurvatureOperator exact(p.net, p.x, p.y, o);
      ng::ShardedOperator sharded(p.net, p.x, p.y, o);
      EXPECT_NEAR(sharded.loss(), exact.loss(), 1e-13 * exact.loss());
      EXPECT_LT(rel(sharded.gradient(), exact.gradient()), 1e-12);
      const at::Tensor v = ng::seeded_normal(exact.dim(), 9, exact.options());
      EXPECT_LT(rel(sharded.apply(v), exact.apply(v)), 1e-12);

      ng::EigenOptions eo;
      eo.k = 4;
      eo.seed = 3;
      const ng::Eigenpairs want = ng::lanczos_top_k(exact, eo);
      const ng::Eigenpairs got = ng::lanczos_top_k(sharded, eo);
      EXPECT_GT(want.values[0], 1e-6);
      std::string mine;
      for (int64_t i = 0; i < eo.k; ++i) {
        EXPECT_NEAR(got.values[i], want.values[i], 1e-10 * want.values[0]) << "pair " << i;
        mine += fmt::format("{:.17g} ", got.values[i]);
        ++compared;
      }
      // Every rank ran the same Lanczos on the same products: the same bits everywhere.
      const auto all = ng::all_gather_strings(mine);
      for (const std::string& other : all) EXPECT_EQ(other, mine);
    }
  return compared;
}

// The metrics of sharded G and Sigma against compute_alignment's Hutchinson path on the streamed
// operators of all samples (same probes): the same estimates, to rounding. Returns the number of
// numbers compared.
constexpr int kAlignmentCompared = 2 * 9;  // losses x (3 alphas + 6 estimates)
int compare_sharded_alignment() {
  int compared = 0;
  for (ng::LossKind loss : {ng::LossKind::CrossEntropy, ng::LossKind::Mse}) {
    SCOPED_TRACE(ng::to_string(loss));
    const Problem p = problem(loss, 37);
    ng::CurvatureOptions o;
    o.loss = loss;
    o.dtype = at::kDouble;
    o.batch_size = 8;
    ng::CurvatureOperator g(p.net, p.x, p.y, o), sigma(g, ng::MatrixKind::Sigma);
    EXPECT_FALSE(g.has_rows() || sigma.has_rows()) << "the exact path must be streamed here";
    ng::ShardedOperator sg(p.net, p.x, p.y, o);
    o.matrix = ng::MatrixKind::Sigma;
    ng::ShardedOperator ss(p.net, p.x, p.y, o);
    ng::EigenOptions eo;
    eo.k = 3;
    const ng::Eigenpairs eig = ng::lanczos_top_k(g, eo);
    const ng::AlignmentOptions ao{20, 4};
    const ng::Alignment want = ng::compute_alignment(g, sigma, eig, ao);
    const ng::Alignment got = ng::sharded_alignment(sg, ss, eig, ao);
    EXPECT_EQ(want.method, "hutchinson");
    EXPECT_EQ(got.method, "hutchinson");
    auto near = [&](double a, double b, const char* what) {
      EXPECT_NEAR(a, b, 1e-10 * std::max(1.0, std::fabs(b))) << what;
      ++compared;
    };
    for (size_t k = 0; k < want.alpha.size(); ++k) near(got.alpha[k], want.alpha[k], "alpha");
    near(got.mu.value, want.mu.value, "mu");
    near(got.mu.se, want.mu.se, "mu se");
    near(got.trace_g.value, want.trace_g.value, "tr G");
    near(got.frob_g.value, want.frob_g.value, "|G|_F");
    near(got.srk_g2.value, want.srk_g2.value, "srk(G^2)");
    near(got.trace_sigma_g.se, want.trace_sigma_g.se, "tr(Sigma G) se");
    EXPECT_GT(want.mu.se, 0);
  }
  return compared;
}

TEST(DistOneProcess, ShardedMetricsAreComputeAlignmentsHutchinson) {
  ASSERT_FALSE(ng::dist().active());
  EXPECT_EQ(compare_sharded_alignment(), kAlignmentCompared);
}

TEST(DistOneProcess, ShardedOperatorOfOneRankIsTheExactOperator) {
  ASSERT_FALSE(ng::dist().active());
  EXPECT_EQ(compare_sharded_with_exact(), kCompared);
}

// ---- two processes ----

const char* const kWorkerDir = "NG_DIST_WORKER_DIR";

// The hidden worker mode: DISABLED_ keeps it out of normal runs; TwoProcesses runs this binary
// with --gtest_also_run_disabled_tests and the launcher's variables.
TEST(DistWorker, DISABLED_Run) {
  const char* dir = std::getenv(kWorkerDir);
  ASSERT_NE(dir, nullptr) << "run by DistTwoProcesses only";
  const ng::Dist d = ng::init_from_env({}, std::chrono::seconds(60));  // a copy: finalize resets it
  ASSERT_GE(d.world, 2);
  const int last = d.world - 1;

  at::Tensor t = at::full({5}, d.rank + 1.0, at::kDouble);
  ng::all_reduce_sum(t);
  EXPECT_TRUE(at::equal(t, at::full({5}, d.world * (d.world + 1) / 2.0, at::kDouble)));
  at::Tensor strided = at::zeros({4, 3}, at::kFloat).t();  // not contiguous
  strided.fill_(d.rank == 0 ? 0.5 : 2.0);
  ng::all_reduce_sum(strided);
  EXPECT_TRUE(at::equal(strided, at::full({3, 4}, 0.5 + 2.0 * last, at::kFloat)));
  at::Tensor b = d.rank == last ? at::arange(6, at::kLong) : at::zeros({6}, at::kLong);
  ng::broadcast(b, last);
  EXPECT_TRUE(at::equal(b, at::arange(6, at::kLong)));
  // Rank 0's string is empty, the others' differ in length.
  auto text = [](int r) {
    return r == 0 ? std::string() : fmt::format("rank {}{}", r, std::string(r, '+'));
  };
  std::vector<std::string> want;
  for (int r = 0; r < d.world; ++r) want.push_back(text(r));
  EXPECT_EQ(ng::all_gather_strings(text(d.rank)), want);
  // The largest is the last rank's; rank 0's is negative.
  EXPECT_EQ(ng::max_over_ranks(10 * d.rank - 5), 10 * last - 5);
  EXPECT_TRUE(ng::on_any_rank(d.rank == last));
  EXPECT_FALSE(ng::on_any_rank(false));
  EXPECT_EQ(ng::shard(21).begin, ng::shard(21, d.rank, d.world).begin);
  EXPECT_EQ(ng::shard(21).end, ng::shard(21, d.rank, d.world).end);
  // A check that fails on the last rank only fails on every rank, naming it.
  std::string failed;
  try {
    ng::checked_on_every_rank([&] {
      if (d.rank == last) ng::fail("data differ here");
    });
  } catch (const ng::Error& e) {
    failed = e.what();
  }
  EXPECT_EQ(failed,
            d.rank == last ? "data differ here" : fmt::format("data differ here (rank {})", last));
  // Rank 0's decision runs alone: a collective inside it is the identity, not a wait for ranks
  // that are not there; its answer reaches every rank.
  const std::string decided = ng::decided_by_root([] {
    at::Tensor one = at::ones({1}, at::kDouble);
    ng::all_reduce_sum(one);
    return fmt::format("{} of {}", one.item<double>(), ng::dist().world);
  });
  EXPECT_EQ(decided, "1 of 1");
  EXPECT_EQ(ng::dist().world, d.world);
  ng::barrier();

  const int compared = compare_sharded_with_exact() + compare_sharded_alignment();
  // Rank 1 leaves the disconnection to the exit, as a program that returns from main does.
  if (d.rank == 0) ng::finalize_dist();
  if (!::testing::Test::HasFailure())
    ngtest::write_file(fmt::format("{}/rank{}.done", dir, d.rank), std::to_string(compared));
}

// The ranks' TMPDIR when not empty (RanksTmpDir), else this process's.
std::string ranks_tmpdir;

// The environment of a rank: this process's, with the launcher's variables replaced.
std::vector<std::string> rank_env(int rank, int world, int port, const std::string& dir) {
  std::vector<std::string> env;
  // OMP_NUM_THREADS too: under scripts/test.sh (which exports 2) a second entry appended after
  // the inherited one was never read, and the ranks ran on two threads each.
  std::vector<std::string> ours = {"RANK=",           "WORLD_SIZE=",  "LOCAL_RANK=",
                                   "MASTER_ADDR=",    "MASTER_PORT=", std::string(kWorkerDir) + "=",
                                   "OMP_NUM_THREADS="};
  if (!ranks_tmpdir.empty()) ours.push_back("TMPDIR=");
  for (char** e = environ; *e; ++e) {
    const std::string kv = *e;
    bool replaced = false;
    for (const std::string& o : ours) replaced = replaced || kv.rfind(o, 0) == 0;
    if (!replaced) env.push_back(kv);
  }
  for (const std::string& kv :
       {"RANK=" + std::to_string(rank), "WORLD_SIZE=" + std::to_string(world),
        "LOCAL_RANK=" + std::to_string(rank), std::string("MASTER_ADDR=127.0.0.1"),
        "MASTER_PORT=" + std::to_string(port), std::string(kWorkerDir) + "=" + dir,
        std::string("OMP_NUM_THREADS=1")})
    env.push_back(kv);
  if (!ranks_tmpdir.empty()) env.push_back("TMPDIR=" + ranks_tmpdir);
  return env;
}

// Starts `program` with `args` as rank `rank` of `world`, its output in `log`.
pid_t spawn_rank(const std::string& program, const std::vector<std::string>& args, int rank,
                 int world, int port, const std::string& dir, const std::string& log) {
  // Everything exec needs is built before fork: the child of a threaded process may only make
  // async-signal-safe calls.
  const std::vector<std::string> env = rank_env(rank, world, port, dir);
  std::vector<char*> envp, argv;
  for (const std::string& kv : env) envp.push_back(const_cast<char*>(kv.c_str()));
  envp.push_back(nullptr);
  argv.push_back(const_cast<char*>(program.c_str()));
  for (const std::string& a : args) argv.push_back(const_cast<char*>(a.c_str()));
  argv.push_back(nullptr);
  const pid_t pid = fork();
  if (pid == 0) {
    const int fd = open(log.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
    if (fd >= 0) {
      dup2(fd, 1);
      dup2(fd, 2);
    }
    execve(program.c_str(), argv.data(), envp.data());
    _exit(127);
  }
  return pid;
}

// Starts `program args_of_rank[r]` as rank r of one job on localhost (the world is their number),
// rank r's output in dir/rank<r>.log; returns their process ids.
std::vector<pid_t> spawn_ranks(const std::string& program,
                               const std::vector<std::vector<std::string>>& args_of_rank,
                               const std::string& dir) {
  const int port = free_port();
  const int world = static_cast<int>(args_of_rank.size());
  std::vector<pid_t> pids;
  for (int r = 0; r < world; ++r)
    pids.push_back(spawn_rank(program, args_of_rank[r], r, world, port, dir,
                              fmt::format("{}/rank{}.log", dir, r)));
  return pids;
}

// Ends every process of `pids` with SIGKILL (no exit handler runs) and reaps it.
void kill_ranks(const std::vector<pid_t>& pids) {
  for (pid_t pid : pids) kill(pid, SIGKILL);
  for (pid_t pid : pids) waitpid(pid, nullptr, 0);
}

// Runs `program args` as ranks 0..world-1 of one job on localhost and returns their wait
// statuses (rank r's output in dir/rank<r>.log). A rank that fails leaves its peers waiting in a
// collective: they are killed at once (unless the test wants their errors); all are killed at
// `limit`, so a hang fails the test
// instead of the suite's timeout.
// `args_of_rank[r]`: rank r's arguments (the world is their number).
std::vector<int> run_ranks(const std::string& program,
                           const std::vector<std::vector<std::string>>& args_of_rank,
                           const std::string& dir, std::chrono::seconds limit,
                           bool kill_on_failure = true) {
  const std::vector<pid_t> pids = spawn_ranks(program, args_of_rank, dir);
  std::vector<int> status(pids.size(), -1);
  const auto deadline = std::chrono::steady_clock::now() + limit;
  auto kill_running = [&] {
    for (size_t i = 0; i < pids.size(); ++i)
      if (status[i] == -1) kill(pids[i], SIGKILL);
  };
  for (size_t running = pids.size(); running > 0;) {
    for (size_t i = 0; i < pids.size(); ++i) {
      int st = 0;
      if (status[i] != -1 || waitpid(pids[i], &st, WNOHANG) != pids[i]) continue;
      status[i] = st;
      --running;
      if (kill_on_failure && !(WIFEXITED(st) && WEXITSTATUS(st) == 0)) kill_running();
    }
    if (running > 0 && std::chrono::steady_clock::now() > deadline) {
      kill_running();
      ADD_FAILURE() << "the ranks did not finish within " << limit.count() << " s";
      break;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  for (size_t i = 0; i < pids.size(); ++i)
    if (status[i] == -1) waitpid(pids[i], &status[i], 0);
  return status;
}

std::vector<int> run_ranks(const std::string& program, const std::vector<std::string>& args,
                           int world, const std::string& dir, std::chrono::seconds limit,
                           bool kill_on_failure = true) {
  return run_ranks(program, std::vector<std::vector<std::string>>(world, args), dir, limit,
                   kill_on_failure);
}

std::string log_of(const std::string& dir, int rank) {
  const std::string log = fmt::format("{}/rank{}.log", dir, rank);
  return std::filesystem::exists(log) ? ngtest::read_file(log) : "(none)";
}

// Whether all of `files` exist within a minute (looked for every 5 ms): a job killed once they do
// stops at a known point.
bool wait_for_files(const std::vector<std::string>& files) {
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(60);
  auto all_there = [&] {
    for (const std::string& f : files)
      if (!std::filesystem::exists(f)) return false;
    return true;
  };
  while (!all_there() && std::chrono::steady_clock::now() < deadline)
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  return all_there();
}

bool succeeded(int status) {
  return WIFEXITED(status) && WEXITSTATUS(status) == 0;
}

TEST(DistTwoProcesses, GlooOnLocalhostMatchesOneProcess) {
  const std::string dir = ngtest::temp_dir("dist");
  const std::vector<int> status =
      run_ranks("/proc/self/exe",
                {"--gtest_filter=DistWorker.DISABLED_Run", "--gtest_also_run_disabled_tests"}, 2,
                dir, std::chrono::seconds(240));
  for (int i = 0; i < 2; ++i) {
    EXPECT_TRUE(succeeded(status[i])) << "rank " << i << " failed; its output:\n" << log_of(dir, i);
    const std::string done = fmt::format("{}/rank{}.done", dir, i);
    ASSERT_TRUE(std::filesystem::exists(done))
        << "rank " << i << " did not finish its checks; its output:\n"
        << log_of(dir, i);
    EXPECT_EQ(ngtest::read_file(done), std::to_string(kCompared + kAlignmentCompared));
  }
}

// ---- the commands under a launcher: two ranks against one process ----

// `noisegeom args` as `world` ranks (world 1: one process, under the same one-thread
// environment, so that both sides do the same arithmetic).
struct Job {
  std::string dir;
  std::vector<int> status;
  std::string out(int rank) const { return log_of(dir, rank); }
};

// `noisegeom args_of_rank[r]` as rank r.
Job noisegeom_ranks(const std::vector<std::vector<std::string>>& args_of_rank, int want_exit = 0) {
  Job j{ngtest::temp_dir("dist-job"), {}};
  j.status = run_ranks(NG_BINARY, args_of_rank, j.dir, std::chrono::seconds(120), want_exit == 0);
  for (size_t r = 0; r < args_of_rank.size(); ++r)
    EXPECT_TRUE(WIFEXITED(j.status[r]) && WEXITSTATUS(j.status[r]) == want_exit)
        << "rank " << r << " of " << args_of_rank.size() << ":\n"
        << j.out(r);
  return j;
}

Job noisegeom(const std::vector<std::string>& args, int world, int want_exit = 0) {
  return noisegeom_ranks(std::vector<std::vector<std::string>>(world, args), want_exit);
}

std::vector<std::string> operator+(std::vector<std::string> a, const std::vector<std::string>& b) {
  a.insert(a.end(), b.begin(), b.end());
  return a;
}

// A small fnn on Gaussian data in float64, trained for `steps`; returns the config file.
std::string tiny_config(int64_t steps = 300) {
  const std::string p = ngtest::temp_dir("dist-cfg") + "/tiny.yaml";
  ngtest::write_file(p, fmt::format("seed: 3\ndevice: cpu\ndtype: float64\nthreads: 1\n"
                                    "model: {{name: fnn, hidden: [8]}}\n"
                                    "data: {{source: gaussian, d: 6, n: 40, outputs: 2}}\n"
                                    "train: {{lr: 0.05, batch_size: 10, max_steps: {}, "
                                    "eval_every: 100, checkpoint_every: 100, target_loss: 0}}\n",
                                    steps));
  return p;
}

// The tiny model trained by one process: the reference, and the run the analyses start from.
std::string one_process_run(const std::string& tag) {
  const std::string out = ngtest::temp_dir(tag) + "/run";
  noisegeom({"train", tiny_config(), "--out", out, "--quiet"}, 1);
  return out;
}

std::map<std::string, at::Tensor> theta_of(const std::string& run) {
  std::map<std::string, at::Tensor> out;
  for (const auto& kv : ng::load_ivalue(run + "/theta.pt").toGenericDict())
    out[kv.key().toStringRef()] = kv.value().toTensor();
  return out;
}

// max over tensors of max |b - a| / max |a|; 1 when the names differ.
double max_relative_difference(const std::map<std::string, at::Tensor>& a,
                               const std::map<std::string, at::Tensor>& b) {
  double worst = a.size() == b.size() ? 0 : 1;
  for (const auto& [name, t] : a)
    worst = std::max(
        worst, b.count(name) ? ((b.at(name) - t).abs().max() / t.abs().max()).item<double>() : 1.0);
  return worst;
}

// The names in `dir`, sorted.
std::vector<std::string> entries(const std::string& dir) {
  std::vector<std::string> out;
  for (const auto& e : std::filesystem::directory_iterator(dir))
    out.push_back(e.path().filename().string());
  std::sort(out.begin(), out.end());
  return out;
}

// While it lives, the ranks started by this process have TMPDIR pointed at a fresh empty folder
// (where std::filesystem::temp_directory_path and mkstemp-style helpers put their files), so that
// a test sees whatever they leave there.
class RanksTmpDir {
 public:
  RanksTmpDir() : dir_(ngtest::temp_dir("dist-tmpdir")) { ranks_tmpdir = dir_; }
  ~RanksTmpDir() { ranks_tmpdir.clear(); }
  std::vector<std::string> leftovers() const { return entries(dir_); }

 private:
  std::string dir_;
};

// The same global batches in the same order, each split over the ranks and the gradients summed:
// theta after 300 steps agrees with one process's to rounding. The sums run in another order
// (two half-batch means, weighted, then added), so the bits differ; 300 steps of a contracting
// SGD on a smooth loss keep that at a few ulps of the parameters, and 1e-12 relative leaves
// room while any real difference (a missing or doubled sample, a wrong weight) is orders larger.
TEST(DistCommands, TrainingOnTwoRanksGivesOneProcesssTheta) {
  const std::string cfg = tiny_config();
  const std::string one = ngtest::temp_dir("dist-train1") + "/run";
  noisegeom({"train", cfg, "--out", one, "--quiet"}, 1);
  const std::string parent = ngtest::temp_dir("dist-train2");
  const std::string two = parent + "/run";
  const RanksTmpDir tmp;
  const Job j = noisegeom({"train", cfg, "--out", two}, 2);
  EXPECT_NE(j.out(0).find("noisegeom train: max_steps"), std::string::npos) << j.out(0);
  EXPECT_EQ(j.out(1), "");  // rank 1 computes and stays silent
  // ... and writes nothing: rank 0's run directory is the job's only output.
  EXPECT_EQ(tmp.leftovers(), std::vector<std::string>{});
  EXPECT_EQ(entries(parent), std::vector<std::string>{"run"});
  EXPECT_LT(max_relative_difference(theta_of(one), theta_of(two)), 1e-12);
  EXPECT_GT(ngtest::read_file(two + "/train_log.csv").size(), 0u);
  EXPECT_EQ(ngtest::read_csv(two + "/train_log.csv").size(),
            ngtest::read_csv(one + "/train_log.csv").size());
}

// A spent budget stops every rank at the same step (else they would wait for each other's next
// step); --resume continues from rank 0's checkpoint, which rank 0 alone reads (rank 1 has no
// copy), and ends at an uninterrupted two-rank run's theta bit for bit (the same theta, step and
// batches on every rank) and at one process's to rounding.
TEST(DistCommands, TrainingStoppedAndResumedOnTwoRanksEndsAtOneProcesssTheta) {
  const std::string cfg = tiny_config(1500);
  const std::string one = ngtest::temp_dir("dist-long1") + "/run";
  noisegeom({"train", cfg, "--out", one, "--quiet"}, 1);
  const std::string whole = ngtest::temp_dir("dist-long2") + "/run";
  noisegeom({"train", cfg, "--out", whole, "--quiet"}, 2);
  const RanksTmpDir tmp;
  const std::string two = ngtest::temp_dir("dist-long3") + "/run";
  // Two ranks on this machine take well over 2 s for 1,500 steps (two all-reduces per step).
  const Job cut =
      noisegeom({"train", cfg, "--out", two, "--budget", "2s"}, 2, ng::kExitBudgetSpent);
  const ng::json m = ng::read_json(two + "/manifest.json");
  EXPECT_EQ(m["status"], "budget_spent");
  EXPECT_LT(m["steps"].get<int64_t>(), 1500);
  EXPECT_NE(cut.out(0).find("spent at step"), std::string::npos) << cut.out(0);
  noisegeom({"train", cfg, "--out", two, "--resume", "--quiet"}, 2);
  EXPECT_EQ(ng::read_json(two + "/manifest.json")["resumed_from_step"], m["steps"]);
  EXPECT_EQ(max_relative_difference(theta_of(whole), theta_of(two)), 0);
  EXPECT_LT(max_relative_difference(theta_of(one), theta_of(two)), 1e-12);
  EXPECT_EQ(tmp.leftovers(), std::vector<std::string>{});
}

// A job killed mid-run (no exit handler runs) leaves rank 0's run directory and nothing else:
// rank 1 never wrote a copy of the checkpoints, not even a temporary one to clean up.
TEST(DistCommands, KilledTrainingLeavesOnlyRankZerosRunDirectory) {
  const std::string cfg = tiny_config(100000000);
  const std::string parent = ngtest::temp_dir("dist-kill");
  const std::string run = parent + "/run", logs = ngtest::temp_dir("dist-kill-logs");
  const RanksTmpDir tmp;
  const std::vector<std::string> args = {"train", cfg, "--out", run};
  const std::vector<pid_t> pids =
      spawn_ranks(NG_BINARY, std::vector<std::vector<std::string>>(2, args), logs);
  // Rank 0's first checkpoint (step 100) comes after 100 steps that rank 1 took part in.
  wait_for_files({run + "/checkpoint.pt"});
  kill_ranks(pids);
  ASSERT_TRUE(std::filesystem::exists(run + "/checkpoint.pt"))
      << log_of(logs, 0) << log_of(logs, 1);
  EXPECT_EQ(tmp.leftovers(), std::vector<std::string>{});
  EXPECT_EQ(entries(parent), std::vector<std::string>{"run"});
}

// Rows over --row-budget (0 here): one process streams its products, two ranks shard them.
TEST(DistCommands, ExactSpectrumOnTwoRanksIsOneProcesss) {
  const std::string run = one_process_run("dist-spec");
  const std::vector<std::string> args = {"spectrum",    run,       "--k",          "4",
                                         "--estimator", "exact",   "--dtype",      "float64",
                                         "--matrices",  "G,Sigma", "--row-budget", "0"};
  noisegeom(args + std::vector<std::string>{"--name", "one"}, 1);
  const Job j = noisegeom(args + std::vector<std::string>{"--name", "two"}, 2);
  EXPECT_NE(j.out(0).find("by lanczos over 2 ranks"), std::string::npos) << j.out(0);
  EXPECT_EQ(j.out(1), "");
  const auto want = ngtest::read_csv(run + "/spectra/one/eigenvalues.csv");
  const auto got = ngtest::read_csv(run + "/spectra/two/eigenvalues.csv");
  ASSERT_EQ(got.size(), want.size());
  ASSERT_EQ(want.size(), 8u);  // G and Sigma, 4 each
  for (size_t i = 0; i < want.size(); ++i) {
    EXPECT_EQ(got[i].at("matrix"), want[i].at("matrix"));
    const double w = std::stod(want[i].at("eigenvalue")), g = std::stod(got[i].at("eigenvalue"));
    const double top = std::stod(want[i / 4 * 4].at("eigenvalue"));
    EXPECT_NEAR(g, w, 1e-10 * top) << want[i].at("matrix") << " " << want[i].at("index");
  }
  const ng::json one = ng::read_json(run + "/spectra/one/summary.json");
  const ng::json two = ng::read_json(run + "/spectra/two/summary.json");
  EXPECT_EQ(one["world_size"], 1);
  EXPECT_EQ(one["sharded"], false);
  EXPECT_EQ(two["world_size"], 2);
  EXPECT_EQ(two["sharded"], true);
  EXPECT_NEAR(two["loss"].get<double>(), one["loss"].get<double>(),
              1e-12 * one["loss"].get<double>());
  EXPECT_EQ(two["matvecs"], one["matvecs"]);  // the ranks' probes counted as one process's
  // Asked again, rank 0 finds it and every rank reuses it.
  const Job again = noisegeom(args + std::vector<std::string>{"--name", "two"}, 2);
  EXPECT_NE(again.out(0).find("reused"), std::string::npos) << again.out(0);
  // Other settings under that name: rank 0's refusal reaches every rank at once, not as a hang.
  const auto t0 = std::chrono::steady_clock::now();
  const Job refused =
      noisegeom(args + std::vector<std::string>{"--name", "two", "--probes", "50"}, 2, 1);
  EXPECT_LT(std::chrono::steady_clock::now() - t0, std::chrono::seconds(60));
  for (int r = 0; r < 2; ++r) {
    EXPECT_NE(refused.out(r).find(fmt::format("noisegeom: error: rank {}: ", r)), std::string::npos)
        << refused.out(r);
    EXPECT_NE(refused.out(r).find("probes differs"), std::string::npos) << refused.out(r);
    EXPECT_EQ(ngtest::count_lines(refused.out(r)), 1) << refused.out(r);
  }
}

// Where G's rows fit, every rank runs one process's route on them: its files, bit for bit (the
// Gram solver's eigenvectors, the exact metrics), not a Hutchinson estimate that depends on
// WORLD_SIZE.
TEST(DistCommands, ExactSpectrumWhoseRowsFitIsOneProcesssOnEveryRank) {
  const std::string run = one_process_run("dist-rows");
  const std::vector<std::string> args = {"spectrum", run, "--k", "4", "--estimator", "exact"};
  noisegeom(args + std::vector<std::string>{"--name", "one"}, 1);
  const Job j = noisegeom(args + std::vector<std::string>{"--name", "two"}, 2);
  EXPECT_NE(j.out(0).find("each of the 2 ranks builds them"), std::string::npos) << j.out(0);
  EXPECT_EQ(j.out(1), "");
  const std::string a = run + "/spectra/one/", b = run + "/spectra/two/";
  for (const char* f : {"eigenvalues.csv", "alignment.csv", "eigenvectors.pt"})
    EXPECT_EQ(ngtest::read_file(b + f), ngtest::read_file(a + f)) << f;
  const ng::json two = ng::read_json(b + "summary.json");
  EXPECT_EQ(two["world_size"], 2);
  EXPECT_EQ(two["sharded"], false);
  EXPECT_EQ(two["spectra"]["G"]["storage"], "rows");
  EXPECT_EQ(two["metrics_method"], "gram");
}

// Also with batched replicas (groups of 2 runs), which the ranks share as whole groups.
TEST(DistCommands, EscapeSweepOnTwoRanksWritesOneProcesssFiles) {
  const std::string run = one_process_run("dist-esc");
  noisegeom({"spectrum", run, "--k", "2", "--dtype", "float64", "--quiet"}, 1);
  for (const std::string replicas : {"1", "2"}) {
    SCOPED_TRACE("replicas " + replicas);
    const std::vector<std::string> args = {
        "escape", run,   "--optimizer", "sgd", "--runs",  "5", "--steps",    "20",
        "--lr",   "0.1", "--log-every", "5",   "--batch", "8", "--replicas", replicas};
    const std::string one = "one" + replicas, two = "two" + replicas;
    noisegeom(args + std::vector<std::string>{"--name", one}, 1);
    const Job j = noisegeom(args + std::vector<std::string>{"--name", two}, 2);
    EXPECT_EQ(j.out(1), "");
    const std::string a = run + "/escapes/" + one + "/", b = run + "/escapes/" + two + "/";
    auto same_files = [&] {
      for (const std::string f : {"run_0000.csv", "run_0001.csv", "run_0002.csv", "run_0003.csv",
                                  "run_0004.csv", "summary.csv", "trajectories.csv"})
        EXPECT_EQ(ngtest::read_file(b + f), ngtest::read_file(a + f)) << f;
    };
    same_files();
    // Rank 0's directory says what is left: two runs lost are computed again, the same.
    std::filesystem::remove(b + "run_0001.csv");
    std::filesystem::remove(b + "run_0004.csv");
    std::filesystem::remove(b + "result.json");
    const Job resumed = noisegeom(args + std::vector<std::string>{"--name", two}, 2);
    EXPECT_NE(resumed.out(0).find("reused 3 finished run(s), computed 2"), std::string::npos)
        << resumed.out(0);
    same_files();
  }
}

// Ranks that see rank 0's directory write their runs as they finish: with rank 0 killed after its
// first run, rank 1's runs are on disk all the same (they used to reach rank 0 only at the end),
// the same bytes as one process's, and a resumed sweep reuses them.
TEST(DistCommands, EscapeRunsOfRankOneOutliveAKilledRankZero) {
  const std::string run = one_process_run("dist-esc-kill");
  noisegeom({"spectrum", run, "--k", "2", "--dtype", "float64", "--quiet"}, 1);
  const std::vector<std::string> args = {"escape",      run,       "--optimizer", "sgd",  "--runs",
                                         "4",           "--steps", "400",         "--lr", "0.1",
                                         "--log-every", "5",       "--batch",     "8"};
  noisegeom(args + std::vector<std::string>{"--name", "one"}, 1);
  const std::string one = run + "/escapes/one/", two = run + "/escapes/two/";
  const std::string logs = ngtest::temp_dir("dist-esc-kill-logs");
  const std::vector<pid_t> pids = spawn_ranks(
      NG_BINARY,
      std::vector<std::vector<std::string>>(2, args + std::vector<std::string>{"--name", "two"}),
      logs);
  const bool first = wait_for_files({two + "run_0000.csv"});
  kill_ranks({pids[0]});  // rank 1 goes on with its runs, 1 and 3, and then waits for rank 0
  const bool rank1s = wait_for_files({two + "run_0001.csv", two + "run_0003.csv"});
  kill_ranks({pids[1]});
  ASSERT_TRUE(first) << log_of(logs, 0);
  ASSERT_TRUE(rank1s) << log_of(logs, 1);
  for (const std::string f : {"run_0001.csv", "run_0003.csv"})
    EXPECT_EQ(ngtest::read_file(two + f), ngtest::read_file(one + f)) << f;
  int64_t on_disk = 0;
  for (int r = 0; r < 4; ++r)
    on_disk += std::filesystem::exists(two + fmt::format("run_{:04d}.csv", r));
  const Job resumed = noisegeom(args + std::vector<std::string>{"--name", "two"}, 2);
  EXPECT_NE(resumed.out(0).find(
                fmt::format("reused {} finished run(s), computed {}", on_disk, 4 - on_disk)),
            std::string::npos)
      << resumed.out(0);
  for (const std::string f : {"run_0000.csv", "run_0001.csv", "run_0002.csv", "run_0003.csv",
                              "summary.csv", "trajectories.csv"})
    EXPECT_EQ(ngtest::read_file(two + f), ngtest::read_file(one + f)) << f;
  EXPECT_FALSE(std::filesystem::exists(two + ".noisegeom-rank0"));
}

// Without a shared filesystem (rank 1 given a run directory of its own, which does not exist)
// the runs reach rank 0 in rounds: rank 1's first run is on rank 0's disk while rank 0 is still
// at its second (it used to arrive with all the others at the end), rank 1 writes nothing, and
// the sweep killed there and resumed ends with one process's files.
TEST(DistCommands, EscapeRunsReachRankZeroInRoundsWithoutSharedFiles) {
  const std::string run = one_process_run("dist-esc-rounds");
  noisegeom({"spectrum", run, "--k", "2", "--dtype", "float64", "--quiet"}, 1);
  // Runs of 2,000 steps (a few hundred ms): the test looks for rank 0's second run right after
  // rank 1's first appears, and that must not be long enough for a whole run.
  const std::vector<std::string> opts = {
      "--optimizer", "sgd",         "--runs", "8",       "--steps", "2000",       "--lr",
      "0.1",         "--log-every", "25",     "--batch", "8",       "--replicas", "1"};
  const std::vector<std::string> mine = std::vector<std::string>{"escape", run} + opts;
  noisegeom(mine + std::vector<std::string>{"--name", "one"}, 1);
  const std::string node1 = ngtest::temp_dir("dist-esc-rounds-node1");
  const std::vector<std::vector<std::string>> ranks = {
      mine + std::vector<std::string>{"--name", "two"},
      std::vector<std::string>{"escape", node1 + "/run"} + opts +
          std::vector<std::string>{"--name", "two"}};
  const std::string one = run + "/escapes/one/", two = run + "/escapes/two/";
  const std::string logs = ngtest::temp_dir("dist-esc-rounds-logs");
  const std::vector<pid_t> pids = spawn_ranks(NG_BINARY, ranks, logs);
  wait_for_files({two + "run_0001.csv"});
  const bool second_of_rank0 = std::filesystem::exists(two + "run_0002.csv");
  kill_ranks(pids);
  ASSERT_TRUE(std::filesystem::exists(two + "run_0001.csv")) << log_of(logs, 0) << log_of(logs, 1);
  EXPECT_FALSE(second_of_rank0);
  EXPECT_EQ(ngtest::read_file(two + "run_0001.csv"), ngtest::read_file(one + "run_0001.csv"));
  EXPECT_EQ(entries(node1), std::vector<std::string>{});
  const Job resumed = noisegeom_ranks(ranks);
  EXPECT_NE(resumed.out(0).find("reused"), std::string::npos) << resumed.out(0);
  for (int r = 0; r < 8; ++r) {
    const std::string f = fmt::format("run_{:04d}.csv", r);
    EXPECT_EQ(ngtest::read_file(two + f), ngtest::read_file(one + f)) << f;
  }
  for (const std::string f : {"summary.csv", "trajectories.csv"})
    EXPECT_EQ(ngtest::read_file(two + f), ngtest::read_file(one + f)) << f;
  EXPECT_EQ(entries(node1), std::vector<std::string>{});
}

// Rounds of whole groups, at least `per_round` groups each and at most `max_rounds` of them.
TEST(DistShard, EscapeRoundsHoldWholeGroups) {
  using ng::sweep_ranks::in_rounds;
  using Rounds = std::vector<std::vector<int64_t>>;
  EXPECT_EQ(in_rounds({}, 1, 1, 8), Rounds{});
  EXPECT_EQ(in_rounds({0, 2, 4, 6}, 1, 1, 8), (Rounds{{0}, {2}, {4}, {6}}));
  EXPECT_EQ(in_rounds({0, 2, 4, 6}, 1, 2, 8), (Rounds{{0, 2}, {4, 6}}));
  EXPECT_EQ(in_rounds({0, 2, 4, 6}, 1, 3, 8), (Rounds{{0, 2, 4, 6}}));
  EXPECT_EQ(in_rounds({0, 2, 4, 6}, 1, 1, 3), (Rounds{{0}, {2}, {4, 6}}));
  // Groups of 4 with a resumed sweep's gaps: {1, 2} {9, 10, 11} {17}.
  EXPECT_EQ(in_rounds({1, 2, 9, 10, 11, 17}, 4, 1, 8), (Rounds{{1, 2}, {9, 10, 11}, {17}}));
  EXPECT_EQ(in_rounds({1, 2, 9, 10, 11, 17}, 4, 1, 2), (Rounds{{1, 2}, {9, 10, 11, 17}}));
  for (int64_t n : {1, 5, 17, 40})
    for (int64_t per : {1, 2, 3})
      for (int64_t most : {1, 4, 8}) {
        std::vector<int64_t> all;
        for (int64_t r = 0; r < n; ++r) all.push_back(3 * r);
        const Rounds rounds = in_rounds(all, 1, per, most);
        std::vector<int64_t> joined;
        for (const auto& round : rounds) {
          EXPECT_GE(static_cast<int64_t>(round.size()), std::min(per, n));
          joined.insert(joined.end(), round.begin(), round.end());
        }
        EXPECT_LE(static_cast<int64_t>(rounds.size()), most);
        EXPECT_EQ(joined, all);
      }
}

// Whole groups of runs go to the ranks in turn, each run to one rank; resumed sweeps' gaps too.
TEST(DistShard, EscapeRunsGoToTheRanksInWholeGroups) {
  using ng::sweep_ranks::share;
  const std::vector<int64_t> all = {0, 1, 2, 3, 4, 5, 6, 7, 8, 9};
  EXPECT_EQ(share(all, 1, 0, 2), (std::vector<int64_t>{0, 2, 4, 6, 8}));
  EXPECT_EQ(share(all, 1, 1, 2), (std::vector<int64_t>{1, 3, 5, 7, 9}));
  EXPECT_EQ(share(all, 4, 0, 2), (std::vector<int64_t>{0, 1, 2, 3, 8, 9}));
  EXPECT_EQ(share(all, 4, 1, 2), (std::vector<int64_t>{4, 5, 6, 7}));
  const std::vector<int64_t> gaps = {1, 2, 5, 9, 10, 11};
  EXPECT_EQ(share(gaps, 4, 0, 2), (std::vector<int64_t>{1, 2, 9, 10, 11}));
  EXPECT_EQ(share(gaps, 4, 1, 2), (std::vector<int64_t>{5}));
  EXPECT_EQ(share(gaps, 4, 0, 1), gaps);
  for (int64_t group : {1, 2, 3, 8})
    for (int world : {1, 2, 3, 5}) {
      std::map<int64_t, int> owner;
      for (int r = 0; r < world; ++r)
        for (int64_t run : share(all, group, r, world)) {
          EXPECT_EQ(owner.count(run), 0u) << run;
          owner[run] = r;
        }
      EXPECT_EQ(owner.size(), all.size());
      for (int64_t run : all) EXPECT_EQ(owner[run], owner[run / group * group]) << run;
    }
}

// A small quick Figure 6 that goes through every stage in seconds.
std::vector<std::string> small_fig6_args() {
  return {"reproduce",  "fig6",
          "--scale",    "quick",
          "--data-dir", ngtest::synthetic_cifar_dir(100, 11),
          "--set",      "data.max_samples=40",
          "--set",      "train.max_steps=20",
          "--set",      "train.target_loss=0",
          "--set",      "spectrum.k=3",
          "--set",      "spectrum.probes=4",
          "--set",      "escape.ks=1,3",
          "--set",      "escape.runs=3",
          "--set",      "escape.steps=30",
          "--set",      "escape.escape-factor=2"};
}

// `reproduce` under a launcher through every stage (training reused, spectra, learning-rate
// searches, escape sweeps, figure) on a small Figure 6: rank 0 writes one process's files, with
// its numbers. The training runs are one process's, copied: two ranks' training matches it to
// rounding only (above), and escapes from theta* amplify rounding.
TEST(DistCommands, ReproduceFigure6OnTwoRanksWritesOneProcesssFiles) {
  if (!ngtest::python_has("matplotlib"))
    GTEST_SKIP() << "Python's matplotlib is not installed (apt-get install python3-matplotlib)";
  const std::vector<std::string> args = small_fig6_args();
  const std::string one = ngtest::temp_dir("dist-repro1"), two = ngtest::temp_dir("dist-repro2");
  noisegeom(args + std::vector<std::string>{"--out", one, "--quiet"}, 1);
  const std::vector<std::string> runs = {"/runs/quick_cnn/", "/runs/quick_fig6_fnn/"};
  for (const std::string& r : runs) {
    std::filesystem::create_directories(two + r);
    for (const auto& e : std::filesystem::directory_iterator(one + r))
      if (e.is_regular_file())
        std::filesystem::copy_file(e.path(), two + r + e.path().filename().string());
  }
  const Job j = noisegeom(args + std::vector<std::string>{"--out", two}, 2);
  EXPECT_EQ(j.out(1), "");
  EXPECT_NE(j.out(0).find("reused (max_steps)"), std::string::npos) << j.out(0);
  EXPECT_TRUE(std::filesystem::exists(two + "/figures/fig6.png"));
  for (const std::string& r : runs)
    for (const std::string f : {"spectra/default/eigenvalues.csv", "spectra/default/alignment.csv",
                                "escapes/gd/trajectories.csv", "escapes/gd/summary.csv",
                                "escapes/sgd/trajectories.csv", "escapes/sgd/summary.csv"})
      EXPECT_EQ(ngtest::read_file(two + r + f), ngtest::read_file(one + r + f)) << r << f;
}

// A node that sees none of rank 0's files: rank 1's --out is an empty folder of its own. Every
// stage (training, spectra, learning-rate searches, escape sweeps, the figure) gets what it
// needs from rank 0 over c10d, and rank 1 writes nothing, also when a second call reuses it all.
TEST(DistCommands, ReproduceNeedsNoSharedFilesystem) {
  if (!ngtest::python_has("matplotlib"))
    GTEST_SKIP() << "Python's matplotlib is not installed (apt-get install python3-matplotlib)";
  const std::vector<std::string> args = small_fig6_args();
  const std::string node0 = ngtest::temp_dir("dist-node0"), node1 = ngtest::temp_dir("dist-node1");
  const std::vector<std::vector<std::string>> ranks = {
      args + std::vector<std::string>{"--out", node0},
      args + std::vector<std::string>{"--out", node1}};
  const RanksTmpDir tmp;
  const Job j = noisegeom_ranks(ranks);
  EXPECT_EQ(j.out(1), "");
  EXPECT_TRUE(std::filesystem::exists(node0 + "/figures/fig6.png")) << j.out(0);
  EXPECT_TRUE(std::filesystem::exists(node0 + "/runs/quick_cnn/escapes/sgd/trajectories.csv"));
  EXPECT_EQ(entries(node1), std::vector<std::string>{});
  const Job again = noisegeom_ranks(ranks);
  EXPECT_NE(again.out(0).find("reused (max_steps)"), std::string::npos) << again.out(0);
  EXPECT_EQ(again.out(1), "");
  EXPECT_EQ(entries(node1), std::vector<std::string>{});
  EXPECT_EQ(tmp.leftovers(), std::vector<std::string>{});
}

}  // namespace
