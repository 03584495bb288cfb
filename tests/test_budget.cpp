// Budgets of time and memory: --budget's durations and the stop request (signal or budget), sizes
// and free memory (src/core/memory.h), and a reproduce stopped by its budget that the same call
// continues.
#include <ATen/ATen.h>
#include <gtest/gtest.h>
#include <torch/cuda.h>
#include <unistd.h>

#include <chrono>
#include <csignal>
#include <filesystem>
#include <thread>

#include "src/core/error.h"
#include "src/core/memory.h"
#include "src/core/stop.h"
#include "src/study/escape_study.h"
#include "src/study/figures.h"
#include "tests/testing.h"

namespace fs = std::filesystem;

namespace {

TEST(Budget, DurationsParseWithUnitsAndRejectTheRest) {
  const std::vector<std::pair<std::string, double>> good = {
      {"90s", 90}, {"7m", 420},    {"1h30m", 5400}, {"1.5h", 5400},
      {"45", 45},  {"2h5s", 7205}, {"0.5s", 0.5},   {"1h1m1s", 3661}};
  for (const auto& [text, seconds] : good)
    EXPECT_DOUBLE_EQ(ng::parse_duration(text, "--budget"), seconds) << text;
  for (const char* bad : {"", "m", "5x", "1m1h", "1h30", "-5s", "0s", "1e3s", "0x10m", "inf",
                          "1..5s", "5 m", "5mm"}) {
    const std::string e = ngtest::error_of([&] { ng::parse_duration(bad, "--budget"); });
    EXPECT_NE(e.find("--budget: expected a duration"), std::string::npos) << bad << ": " << e;
    EXPECT_NE(e.find(std::string("'") + bad + "'"), std::string::npos) << e;
  }
}

TEST(Budget, ABudgetAndASignalRequestAStop) {
  ng::clear_stop_request();
  EXPECT_EQ(ng::stop_requested(), ng::StopReason::None);
  EXPECT_EQ(ng::stop_description(), "");
  ng::set_time_budget(0.05, "50ms");
  EXPECT_EQ(ng::time_budget(), 0.05);
  EXPECT_EQ(ng::stop_requested(), ng::StopReason::None);
  std::this_thread::sleep_for(std::chrono::milliseconds(80));
  EXPECT_EQ(ng::stop_requested(), ng::StopReason::Budget);
  EXPECT_EQ(ng::stop_description(), "time budget 50ms spent");
  ng::clear_stop_request();
  EXPECT_EQ(ng::stop_requested(), ng::StopReason::None);
  EXPECT_EQ(ng::time_budget(), 0);

  // A signal while a StopOnSignals lives is a request (and wins over a spent budget); once the
  // last one is gone the previous handler is back.
  auto previous = std::signal(SIGTERM, SIG_IGN);
  {
    const ng::StopOnSignals outer;
    { const ng::StopOnSignals inner; }
    ng::set_time_budget(1e-9);
    std::raise(SIGTERM);
    EXPECT_EQ(ng::stop_requested(), ng::StopReason::Signal);
    EXPECT_EQ(ng::stop_description(), "interrupted by SIGTERM");
    ng::clear_stop_request();
  }
  EXPECT_EQ(std::signal(SIGTERM, previous), SIG_IGN);
  EXPECT_EQ(ng::stop_requested(), ng::StopReason::None);
}

TEST(Memory, SizesParseAndFormat) {
  const std::vector<std::pair<std::string, int64_t>> good = {{"4G", 4LL << 30},
                                                             {"4GiB", 4LL << 30},
                                                             {"4g", 4LL << 30},
                                                             {"512M", 512LL << 20},
                                                             {"1.5G", 3LL << 29},
                                                             {"64k", 64 << 10},
                                                             {"1000", 1000},
                                                             {"1000B", 1000},
                                                             {"2GB", 2000000000},
                                                             {"3TiB", 3LL << 40},
                                                             {"1KB", 1000},
                                                             {"0.5KiB", 512},
                                                             {"0", 0},
                                                             {"0G", 0}};
  for (const auto& [text, bytes] : good)
    EXPECT_EQ(ng::parse_bytes(text, "--row-budget"), bytes) << text;
  for (const char* bad :
       {"", "G", "4X", "4GG", "-1G", "4 G", "1e9", "0.4", "auto", "4Gi", "4iB", "1..2G"}) {
    const std::string e = ngtest::error_of([&] { ng::parse_bytes(bad, "--row-budget"); });
    EXPECT_NE(e.find("--row-budget: expected a size"), std::string::npos) << bad << ": " << e;
  }
  EXPECT_EQ(ng::parse_budget("auto", "--row-budget"), -1);
  EXPECT_EQ(ng::parse_budget("0", "--row-budget"), 0);
  EXPECT_EQ(ng::parse_budget("2G", "--row-budget"), 2LL << 30);
  EXPECT_EQ(ng::format_bytes(512), "512 B");
  EXPECT_EQ(ng::format_bytes(3LL << 29), "1.50 GiB");
  EXPECT_EQ(ng::format_bytes(12800LL << 10), "12.5 MiB");
  EXPECT_EQ(ng::format_bytes(128LL << 30), "128 GiB");
  EXPECT_EQ(ng::format_bytes(1024), "1.00 KiB");
}

TEST(Memory, PhysicalAndFreeMemoryAreKnownOnTheCpu) {
  const int64_t physical = ng::physical_memory_bytes();
  const int64_t pages = sysconf(_SC_PHYS_PAGES) * sysconf(_SC_PAGE_SIZE);
  ASSERT_GT(physical, 0);
  EXPECT_LE(physical, pages);
  const int64_t free = ng::free_device_memory_bytes(at::kCPU);
  EXPECT_GT(free, 0);
  EXPECT_LE(free, physical);
  // Far more than the machine has fails with one line naming what, where and the fix.
  const std::string e = ngtest::error_of(
      [&] { ng::require_free_memory(physical * 4, at::kCPU, "the rows", "lower --row-budget"); });
  EXPECT_NE(e.find("the rows needs "), std::string::npos) << e;
  EXPECT_NE(e.find(" on cpu but "), std::string::npos) << e;
  EXPECT_NE(e.find("; lower --row-budget"), std::string::npos) << e;
  EXPECT_EQ(ngtest::error_of([] { ng::require_free_memory(1 << 20, at::kCPU, "a", "b"); }), "");
}

TEST(Memory, FreeGpuMemoryInCudaBuildsOnly) {
  const int64_t free = ng::free_device_memory_bytes(c10::Device(c10::kCUDA, 0));
  if (!torch::cuda::is_available()) {
    EXPECT_EQ(free, -1);
    GTEST_SKIP() << "no GPU: only the CPU build's answer (-1, unknown) is checked";
  }
  EXPECT_GT(free, 0);
  // Memory LibTorch caches after a tensor is freed still counts as free.
  { const at::Tensor t = at::empty({free / 8}, at::TensorOptions(at::kCUDA).dtype(at::kByte)); }
  EXPECT_GT(ng::free_device_memory_bytes(c10::Device(c10::kCUDA, 0)), free / 2);
}

// An escape sweep asked to stop keeps the runs it finished, writes no result.json, and the same
// request computes the rest: here a budget already spent lets no run finish.
// A real allocation failure inside with_memory_use becomes one line naming what held the memory
// and the option; other errors and results pass through untouched.
TEST(Memory, RunningOutNamesTheWorkAndTheOption) {
  try {
    ng::with_memory_use("G's exact products, 256 samples a pass", "lower --batch-size",
                        [] { return at::empty({int64_t{1} << 60}, at::kByte); });
    FAIL() << "an exabyte was allocated";
  } catch (const ng::Error& e) {
    const std::string m = e.what();
    EXPECT_EQ(m.rfind("out of host memory in G's exact products, 256 samples a pass (", 0), 0u)
        << m;
    EXPECT_NE(m.find(" free now); lower --batch-size"), std::string::npos) << m;
    EXPECT_EQ(m.find('\n'), std::string::npos) << m;
  }
  EXPECT_EQ(ng::with_memory_use("w", "f", [] { return 7; }), 7);
  EXPECT_THROW(ng::with_memory_use("w", "f", [] { ng::fail("not memory"); }), ng::Error);
  try {
    ng::with_memory_use("w", "f", [] { ng::fail("not memory"); });
  } catch (const ng::Error& e) {
    EXPECT_STREQ(e.what(), "not memory");
  }
  EXPECT_FALSE(ng::is_out_of_memory(std::runtime_error("DefaultCPUAllocator: memory")));
}

TEST(Budget, AnEscapeSweepStoppedWritesNoRecordAndTheSameRequestFinishes) {
  const std::string run = ngtest::train_run(
      "budget-esc",
      "seed: 3\ndevice: cpu\nthreads: 1\nmodel: {name: fnn}\n"
      "data: {source: gaussian, d: 6, n: 40, outputs: 2}\n"
      "train: {lr: 0.05, batch_size: 10, max_steps: 40, eval_every: 40, target_loss: 0}\n",
      "spectrum {run} --k 2 --dtype float64 --quiet");
  ng::EscapeRequest r;
  r.options.optimizer = ng::Optimizer::Sgd;
  r.options.runs = 3;
  r.options.steps = 10;
  r.options.lr = 0.05;
  r.options.batch = 10;
  r.options.ks = {1, 2};
  const ng::StudyContext quiet{"", true};
  ng::clear_stop_request();
  ng::set_time_budget(1e-9);
  const ng::EscapeOutcome stopped = ng::run_escape_study(run, r, quiet);
  ng::clear_stop_request();
  EXPECT_TRUE(stopped.record.is_null());
  EXPECT_EQ(stopped.computed, 0);
  EXPECT_FALSE(fs::exists(stopped.dir + "/result.json"));
  const ng::EscapeOutcome done = ng::run_escape_study(run, r, quiet);
  EXPECT_EQ(done.computed, 3);
  EXPECT_EQ(done.record.at("runs"), 3);
  EXPECT_TRUE(fs::exists(done.dir + "/result.json"));
}

// Figure 5's quick recipe on 40 synthetic images, small: a budget spent during the first training
// stops it at a checkpoint with exit status 75; the same call again resumes it and finishes the
// figure.
TEST(Budget, ReproduceStopsAtItsBudgetAndTheSameCallContinues) {
  if (!ngtest::python_has("matplotlib")) GTEST_SKIP() << "Python's matplotlib is not installed";
  ng::FigureSettings s;
  s.scale = "quick";
  s.out = ngtest::temp_dir("budget");
  s.ctx = ng::StudyContext{ngtest::synthetic_cifar_dir(100, 11), true};
  s.train_overrides = {"data.max_samples=40",
                       "train.max_steps=600",
                       "train.eval_every=300",
                       "train.checkpoint_every=300",
                       "train.target_loss=0",
                       "model.width=4",
                       "threads=1"};
  const ng::Figure& fig = ng::find_figure("fig5");
  std::vector<ng::FigureRun> runs = fig.runs("quick");
  for (auto& r : runs)
    for (auto& j : r.spectra) j.options.k = 3;
  ng::clear_stop_request();
  ng::set_time_budget(0.3);
  const ng::FigureOutcome stopped = ng::reproduce_figure(fig, runs, s);
  ng::clear_stop_request();
  ASSERT_EQ(stopped.exit_code, ng::kExitBudgetSpent);
  EXPECT_TRUE(stopped.png.empty());
  const std::string first = runs[0].dir(s.out);
  EXPECT_TRUE(fs::exists(first + "/checkpoint.pt"));
  EXPECT_FALSE(fs::exists(first + "/theta.pt"));
  EXPECT_NE(ngtest::read_file(first + "/manifest.json").find("\"status\": \"budget_spent\""),
            std::string::npos);

  const ng::FigureOutcome done = ng::reproduce_figure(fig, runs, s);
  ASSERT_EQ(done.exit_code, 0);
  EXPECT_TRUE(fs::exists(done.png));
  ASSERT_FALSE(done.report.empty());
  EXPECT_NE(done.report[0].find("resumed, max_steps"), std::string::npos) << done.report[0];
  EXPECT_NE(ngtest::read_file(first + "/manifest.json").find("\"steps\": 600"), std::string::npos);
}

}  // namespace
