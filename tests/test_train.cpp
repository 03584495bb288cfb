// The training command as a user runs it: run directories, resume after SIGKILL, SIGINT or a spent
// --budget, progress lines, bad input; the learning-rate schedules and the parameter trace.
#include <ATen/ATen.h>
#include <fmt/format.h>
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/wait.h>
#include <torch/cuda.h>
#include <torch/nn/module.h>
#include <unistd.h>

#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <nlohmann/json.hpp>
#include <regex>
#include <sstream>
#include <thread>

#include "models/params.h"
#include "src/core/config.h"
#include "src/core/stop.h"
#include "src/core/threads.h"
#include "src/io/files.h"
#include "src/io/rundir.h"
#include "src/study/figures.h"
#include "src/training/graphed_step.h"
#include "src/training/loss.h"
#include "src/training/schedule.h"
#include "src/training/sgd.h"
#include "src/training/trace.h"
#include "src/training/train.h"
#include "tests/testing.h"

namespace fs = std::filesystem;
using ngtest::run_cli;

namespace {

// An experiment on synthetic data; a config key may be given once only, so the model is a
// parameter rather than something `body` could repeat.
std::string write_config(const std::string& body, const std::string& model = "cnn") {
  const std::string path = ngtest::temp_dir("cfg") + "/exp.yaml";
  ngtest::write_file(path,
                     "seed: 5\ndevice: cpu\nthreads: 1\n"
                     "model: {name: " +
                         model +
                         "}\n"
                         "data: {dir: \"" +
                         ngtest::synthetic_cifar_dir(50, 7) + "\", classes: [0, 1]}\n" + body);
  return path;
}

const char* kShort =
    "train: {lr: 0.05, batch_size: 8, max_steps: 60, eval_every: 20, "
    "checkpoint_every: 20, target_loss: 0}\n";

bool same_tensors(const std::string& a, const std::string& b) {
  const auto ta = ng::load_tensor_dict(a), tb = ng::load_tensor_dict(b);
  if (ta.size() != tb.size()) return false;
  for (size_t k = 0; k < ta.size(); ++k)
    if (ta[k].first != tb[k].first || !at::equal(ta[k].second, tb[k].second)) return false;
  return true;
}

// train_log.csv without its two timing columns, which differ from run to run.
std::string log_without_timing(const std::string& path) {
  std::string out, line;
  std::istringstream in(ngtest::read_file(path));
  while (std::getline(in, line)) {
    for (int k = 0; k < 2; ++k) line = line.substr(0, line.rfind(','));
    out += line + "\n";
  }
  return out;
}

// Trains through the library, as the train command does; its status.
std::string train_lib(const std::string& cfg, const std::string& out, bool resume = false,
                      const std::vector<std::string>& overrides = {}) {
  ng::TrainOptions o;
  o.config_path = cfg;
  o.out_dir = out;
  o.resume = resume;
  o.overrides = overrides;
  o.quiet = true;
  return ng::train(o).status;
}

}  // namespace

// Without OMP_NUM_THREADS a command runs on every physical core (Debian's LibTorch 1.13 counts one
// on some virtual machines), and with it on what it says; the manifest records the count.
TEST(Train, ThreadsDefaultToEveryPhysicalCore) {
  if (std::getenv("MKL_NUM_THREADS")) GTEST_SKIP() << "MKL_NUM_THREADS is set";
  const std::string cfg = write_config(kShort);
  auto threads_of = [&](const char* omp) {
    const ngtest::ScopedEnv env("OMP_NUM_THREADS", omp);
    const std::string out = ngtest::temp_dir("threads") + "/r";
    std::string log;
    const int rc = run_cli(
        "train '" + cfg + "' --set threads=0 --set train.max_steps=2 --out '" + out + "' --quiet",
        &log);
    EXPECT_EQ(rc, 0) << log;
    return rc == 0 ? ng::read_json(out + "/manifest.json").at("threads").get<int>() : -1;
  };
  const int all = threads_of(nullptr), one = threads_of("1");
  EXPECT_EQ(all, ng::physical_cores());
  EXPECT_EQ(one, 1);
  EXPECT_GE(ng::physical_cores(), 1);
  EXPECT_LE(ng::physical_cores(), static_cast<int>(std::thread::hardware_concurrency()));
}

TEST(Train, EpochPermutationIsADeterministicPermutation) {
  const auto a = ng::epoch_permutation(1000, 3, 2), b = ng::epoch_permutation(1000, 3, 2);
  EXPECT_EQ(a, b);
  EXPECT_NE(a, ng::epoch_permutation(1000, 3, 3));
  EXPECT_NE(a, ng::epoch_permutation(1000, 4, 2));
  auto s = a;
  std::sort(s.begin(), s.end());
  for (int64_t k = 0; k < 1000; ++k) ASSERT_EQ(s[k], k);
}

TEST(Train, WritesACompleteRunDirectory) {
  const std::string cfg = write_config(kShort);
  const std::string out = ngtest::temp_dir("run") + "/r";
  std::string log;
  ASSERT_EQ(run_cli("train '" + cfg + "' --out '" + out + "' --quiet", &log), 0) << log;
  for (const char* f : {"config.yaml", "manifest.json", "samples.csv", "train_log.csv",
                        "checkpoint.pt", "theta.pt"})
    EXPECT_TRUE(fs::exists(out + "/" + f)) << f;
  const std::string manifest = ngtest::read_file(out + "/manifest.json");
  EXPECT_NE(manifest.find("\"status\": \"max_steps\""), std::string::npos) << manifest;
  EXPECT_NE(manifest.find("\"parameter_count\": 43174"), std::string::npos) << manifest;
  EXPECT_NE(manifest.find("\"steps\": 60"), std::string::npos) << manifest;
  const auto mj = nlohmann::json::parse(manifest);
  EXPECT_EQ(mj.at("tool"), "noisegeom");
  EXPECT_EQ(mj.at("resumed_from_step"), -1);
  EXPECT_EQ(mj.at("samples_file"), "samples.csv");
  EXPECT_TRUE(mj.at("final_loss").is_number()) << manifest;
  // samples.csv: header + 50 rows, global indices of label-0/1 records (labels cycle 0..9).
  const std::string samples = ngtest::read_file(out + "/samples.csv");
  EXPECT_EQ(ngtest::count_lines(samples), 51);
  EXPECT_NE(samples.find("\n0,0,0,0\n1,1,1,1\n2,10,0,0\n"), std::string::npos) << samples;
  // train_log.csv: header + evaluations at steps 0, 20, 40, 60.
  EXPECT_EQ(ngtest::count_lines(ngtest::read_file(out + "/train_log.csv")), 5);
  // no temporary files are left behind
  for (const auto& e : fs::directory_iterator(out))
    EXPECT_EQ(e.path().string().find(".tmp."), std::string::npos) << e.path();
  // A fresh run with the same seed gives the same parameters bit for bit.
  const std::string out2 = ngtest::temp_dir("run") + "/r";
  ASSERT_EQ(run_cli("train '" + cfg + "' --out '" + out2 + "' --quiet", &log), 0) << log;
  EXPECT_TRUE(same_tensors(out + "/theta.pt", out2 + "/theta.pt"));
}

TEST(Train, ThetaIsReadableByPythonTorchLoad) {
  if (std::system("/usr/bin/python3 -c 'import torch' >/dev/null 2>&1") != 0)
    GTEST_SKIP() << "Python's torch is not installed (scripts/setup.sh installs python3-torch)";
  const std::string cfg = write_config(kShort);
  const std::string out = ngtest::temp_dir("run") + "/r";
  ASSERT_EQ(train_lib(cfg, out), "max_steps");
  const std::string script = out + "/check.py";
  ngtest::write_file(script,
                     "import sys, torch\n"
                     "d = torch.load(sys.argv[1])\n"
                     "c = torch.load(sys.argv[2])\n"
                     "assert isinstance(d, dict) and all(torch.is_tensor(v) for v in d.values())\n"
                     "assert sum(v.numel() for v in d.values()) == 43174\n"
                     "assert not any(v.requires_grad for v in d.values())\n"
                     "assert c['step'] == 60 and set(c['model']) == set(d)\n"
                     "assert all(torch.equal(c['model'][k], d[k]) for k in d)\n"
                     "print('ok', len(d))\n");
  const std::string cmd =
      "/usr/bin/python3 '" + script + "' '" + out + "/theta.pt' '" + out + "/checkpoint.pt'";
  EXPECT_EQ(std::system(cmd.c_str()), 0);
}

// Resumes the stopped run `cut` and checks that it ends where the uninterrupted `whole` did: the
// same parameters bit for bit, and each evaluation once in the log with the same losses.
void expect_resumed_like(const std::string& cfg, const std::string& cut, const std::string& whole) {
  ASSERT_EQ(train_lib(cfg, cut, true), "max_steps");
  EXPECT_TRUE(same_tensors(whole + "/theta.pt", cut + "/theta.pt"));
  EXPECT_EQ(log_without_timing(cut + "/train_log.csv"),
            log_without_timing(whole + "/train_log.csv"));
}

// Runs `noisegeom train CFG --out DIR` and sends it `sig` as soon as its first checkpoint exists;
// false if the run had already ended by then. `status`: its wait status.
bool kill_after_first_checkpoint(const std::string& cfg, const std::string& dir, int sig = SIGKILL,
                                 int* status = nullptr) {
  const pid_t pid = fork();
  if (pid < 0) return false;
  if (pid == 0) {
    execl(NG_BINARY, NG_BINARY, "train", cfg.c_str(), "--out", dir.c_str(), "--quiet",
          static_cast<char*>(nullptr));
    _exit(127);
  }
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(120);
  bool running_when_killed = false;
  while (std::chrono::steady_clock::now() < deadline) {
    if (fs::exists(dir + "/checkpoint.pt")) {
      int st = 0;
      running_when_killed = waitpid(pid, &st, WNOHANG) == 0;
      break;
    }
    std::this_thread::sleep_for(std::chrono::microseconds(200));
  }
  kill(pid, sig);
  int st = 0;
  waitpid(pid, &st, 0);
  if (status) *status = st;
  return running_when_killed;
}

TEST(Train, ResumeAfterSigkillEndsAtTheSameParameters) {
  const std::string cfg = write_config(
      "train: {lr: 0.05, batch_size: 8, max_steps: 4000, eval_every: 500, checkpoint_every: 300,"
      " target_loss: 0}\n");
  const std::string whole = ngtest::temp_dir("run") + "/whole";
  ASSERT_EQ(train_lib(cfg, whole), "max_steps");

  const std::string cut = ngtest::temp_dir("run") + "/cut";
  ASSERT_TRUE(kill_after_first_checkpoint(cfg, cut)) << "the run ended before it could be killed";
  EXPECT_FALSE(fs::exists(cut + "/theta.pt"));
  EXPECT_NE(ngtest::read_file(cut + "/manifest.json").find("\"status\": \"running\""),
            std::string::npos);

  expect_resumed_like(cfg, cut, whole);
  const std::string manifest = ngtest::read_file(cut + "/manifest.json");
  EXPECT_NE(manifest.find("\"resumed_from_step\": 300"), std::string::npos) << manifest;
}

// Ctrl-C (SIGINT): the run checkpoints where it is, exits 130 without a theta.pt, and --resume
// ends at the uninterrupted run's parameters and log.
TEST(Train, SigintCheckpointsAndResumeEndsAtTheSameParameters) {
  const std::string cfg = write_config(
      "train: {lr: 0.05, batch_size: 8, max_steps: 1500, eval_every: 500, checkpoint_every: 300,"
      " target_loss: 0}\n");
  const std::string whole = ngtest::temp_dir("run") + "/whole";
  ASSERT_EQ(train_lib(cfg, whole), "max_steps");
  const std::string cut = ngtest::temp_dir("run") + "/cut";
  int status = 0;
  ASSERT_TRUE(kill_after_first_checkpoint(cfg, cut, SIGINT, &status)) << "the run ended first";
  ASSERT_TRUE(WIFEXITED(status)) << "killed by the signal instead of stopping: " << status;
  EXPECT_EQ(WEXITSTATUS(status), ng::kExitInterrupted);
  EXPECT_FALSE(fs::exists(cut + "/theta.pt"));
  const auto m = nlohmann::json::parse(ngtest::read_file(cut + "/manifest.json"));
  EXPECT_EQ(m.at("status"), "interrupted");
  EXPECT_NE(m.at("message").get<std::string>().find("interrupted by SIGINT at step"),
            std::string::npos)
      << m.dump();
  expect_resumed_like(cfg, cut, whole);
}

// A spent --budget stops a run at the step it is at (not at a checkpoint boundary), saving a
// checkpoint there; resumed, the run ends at the uninterrupted run's parameters and log, bit for
// bit.
TEST(Train, BudgetStopsAtACheckpointAndResumeEndsAtTheSameParameters) {
  const std::string cfg = write_config(
      "train: {lr: 0.05, batch_size: 8, max_steps: 1500, eval_every: 500, checkpoint_every: 1000,"
      " target_loss: 0}\n");
  const std::string whole = ngtest::temp_dir("run") + "/whole";
  ASSERT_EQ(train_lib(cfg, whole), "max_steps");
  const std::string cut = ngtest::temp_dir("run") + "/cut";
  ng::clear_stop_request();
  ng::set_time_budget(0.3);
  const std::string status = train_lib(cfg, cut);
  ng::clear_stop_request();
  ASSERT_EQ(status, "budget_spent") << "the run ended within its budget";
  EXPECT_FALSE(fs::exists(cut + "/theta.pt"));
  const auto m = nlohmann::json::parse(ngtest::read_file(cut + "/manifest.json"));
  EXPECT_EQ(m.at("status"), "budget_spent");
  const int64_t stopped_at = m.at("steps");
  EXPECT_GT(stopped_at, 0);
  EXPECT_LT(stopped_at, 1500);
  EXPECT_NE(m.at("message").get<std::string>().find("time budget 0.3s spent at step " +
                                                    std::to_string(stopped_at) + " of 1500"),
            std::string::npos)
      << m.dump();
  const auto ck = ng::load_ivalue(cut + "/checkpoint.pt").toGenericDict();
  EXPECT_EQ(ck.at("step").toInt(), stopped_at);

  expect_resumed_like(cfg, cut, whole);
  const auto resumed = nlohmann::json::parse(ngtest::read_file(cut + "/manifest.json"));
  EXPECT_EQ(resumed.at("resumed_from_step"), stopped_at);
}

// The command: --budget's exit status 75 and one line saying where the run stands, even when
// quiet; a bad duration is a one-line error naming --budget.
TEST(Train, BudgetOnTheCommandLine) {
  const std::string cfg = write_config(
      "train: {lr: 0.05, batch_size: 8, max_steps: 1000000, eval_every: 500, "
      "checkpoint_every: 100000, target_loss: 0}\n");
  const std::string out = ngtest::temp_dir("run") + "/r";
  std::string log;
  EXPECT_EQ(run_cli("train '" + cfg + "' --out '" + out + "' --quiet --budget 2s", &log),
            ng::kExitBudgetSpent)
      << log;
  EXPECT_EQ(ngtest::count_lines(log), 1) << log;
  EXPECT_NE(log.find("time budget 2s spent at step"), std::string::npos) << log;
  EXPECT_NE(log.find("--resume"), std::string::npos) << log;
  EXPECT_NE(log.find(out), std::string::npos) << log;
  EXPECT_TRUE(fs::exists(out + "/checkpoint.pt"));
  EXPECT_FALSE(fs::exists(out + "/theta.pt"));
  EXPECT_EQ(run_cli("train '" + cfg + "' --out '" + out + "2' --budget 5q", &log), 1) << log;
  EXPECT_NE(log.find("--budget: expected a duration"), std::string::npos) << log;
  EXPECT_EQ(ngtest::count_lines(log), 1) << log;
  EXPECT_FALSE(fs::exists(out + "2"));
}

// Between evaluations a log gets a line every half minute: a short run of 4 evaluations prints one
// line each, with steps/s, the running batch loss, the time to the next evaluation, the
// checkpoint's age and the ETA.
TEST(Train, ProgressLinesSayRateRunningLossNextEvaluationAndCheckpoint) {
  const std::string cfg = write_config(kShort);
  const std::string out = ngtest::temp_dir("run") + "/r";
  std::string log;
  ASSERT_EQ(run_cli("train '" + cfg + "' --out '" + out + "'", &log), 0) << log;
  std::vector<std::string> lines;
  std::istringstream in(log);
  for (std::string line; std::getline(in, line);)
    if (line.rfind("step ", 0) == 0) lines.push_back(line);
  ASSERT_EQ(lines.size(), 4u) << log;
  EXPECT_NE(lines[0].find("step 0/60 epoch 0.0 | loss "), std::string::npos) << lines[0];
  EXPECT_NE(lines[0].find("| batch loss ? | ? steps/s | eval in ? | no checkpoint yet | ETA ?"),
            std::string::npos)
      << lines[0];
  for (size_t k = 1; k < lines.size(); ++k) {
    const std::string& l = lines[k];
    EXPECT_NE(l.find(fmt::format("step {}/60", 20 * k)), std::string::npos) << l;
    EXPECT_NE(l.find("| batch loss ~"), std::string::npos) << l;
    EXPECT_NE(l.find(" steps/s | eval in "), std::string::npos) << l;
    // The step-20 checkpoint is saved after that step's evaluation (its age is seconds of a
    // loaded machine's wall clock, not a fixed 0s).
    if (k == 1)
      EXPECT_NE(l.find("| no checkpoint yet |"), std::string::npos) << l;
    else
      EXPECT_TRUE(std::regex_search(l, std::regex(R"(\| checkpoint \d+s ago \|)"))) << l;
    EXPECT_NE(l.find("| ETA "), std::string::npos) << l;
  }
}

TEST(Train, DivergenceStopsWithAClearErrorAndNoResult) {
  const std::string cfg = write_config(
      "train: {lr: 1000, batch_size: 8, max_steps: 200, eval_every: 5, checkpoint_every: 5}\n");
  const std::string out = ngtest::temp_dir("run") + "/r";
  std::string log;
  EXPECT_EQ(run_cli("train '" + cfg + "' --out '" + out + "' --quiet", &log), 3) << log;
  EXPECT_NE(log.find("diverged"), std::string::npos) << log;
  EXPECT_NE(log.find(cfg), std::string::npos) << log;
  EXPECT_EQ(ngtest::count_lines(log), 1) << log;
  EXPECT_FALSE(fs::exists(out + "/theta.pt"));
  EXPECT_NE(ngtest::read_file(out + "/manifest.json").find("\"status\": \"diverged\""),
            std::string::npos);
}

// Each bad input: exit 1, one line naming the file and the field, and no run directory.
TEST(Train, BadInputGivesOneLineErrorsAndNoOutput) {
  struct Case {
    std::string config, extra, expect;
  };
  const std::string dir = ngtest::temp_dir("bad");
  const std::string truncated = dir + "/trunc";
  ngtest::write_synthetic_cifar(truncated, 20, 1);
  fs::resize_file(truncated + "/data_batch_3.bin", 3073 * 20 - 100);
  const std::string badlabel = dir + "/badlabel";
  ngtest::write_synthetic_cifar(badlabel, 20, 1);
  {
    std::string bytes = ngtest::read_file(badlabel + "/data_batch_2.bin");
    bytes[3073 * 4] = 42;
    ngtest::write_file(badlabel + "/data_batch_2.bin", bytes);
  }
  const std::string head = "device: cpu\nmodel: {name: cnn}\n";
  const std::vector<Case> cases = {
      {head + "train: {lrr: 1}\n", "", "train.lrr"},
      {head + "train: {lr: abc}\n", "", "train.lr"},
      {head + "train: {batch_size: -3}\n", "", "train.batch_size"},
      {head + "train: [1,\n", "", "malformed YAML"},
      {head + "data: {dir: \"" + dir + "/none\"}\n", "", "data_batch_1.bin"},
      {head + "data: {dir: \"" + truncated + "\"}\n", "", "data_batch_3.bin"},
      {head + "data: {dir: \"" + badlabel + "\"}\n", "", "data_batch_2.bin"},
      {head + "data: {dir: \"" + ngtest::synthetic_cifar_dir(50, 7) + "\", classes: [0, 11]}\n", "",
       "data.classes"},
      {"device: cpu\nmodel: {name: resnet, depth: 21}\ndata: {dir: \"" +
           ngtest::synthetic_cifar_dir(50, 7) + "\"}\n",
       "", "model.depth"},
      {head, "--set train.lr=fast", "train.lr"},
      {head, "--set nope=1", "nope"},
  };
  int k = 0;
  for (const auto& c : cases) {
    const std::string cfg = dir + "/case" + std::to_string(k++) + ".yaml";
    ngtest::write_file(cfg, c.config);
    const std::string out = dir + "/out" + std::to_string(k);
    std::string log;
    EXPECT_EQ(run_cli("train '" + cfg + "' --out '" + out + "' --quiet " + c.extra, &log), 1)
        << c.config << log;
    EXPECT_NE(log.find(c.expect), std::string::npos) << log;
    EXPECT_EQ(ngtest::count_lines(log), 1) << log;
    EXPECT_NE(log.find("error"), std::string::npos) << log;
    EXPECT_FALSE(fs::exists(out)) << "partial output for " << c.config;
  }
  std::string log;
  EXPECT_EQ(run_cli("train /nonexistent.yaml --quiet", &log), 1);
  EXPECT_NE(log.find("/nonexistent.yaml"), std::string::npos) << log;
  EXPECT_EQ(run_cli("train --bogus x.yaml", &log), 2);
  EXPECT_NE(log.find("--bogus"), std::string::npos) << log;
}

TEST(Train, RefusesToOverwriteAndChecksCheckpointsAgainstTheModel) {
  const std::string cfg = write_config(kShort);
  const std::string out = ngtest::temp_dir("run") + "/r";
  ASSERT_EQ(train_lib(cfg, out), "max_steps");
  const std::string before = ngtest::read_file(out + "/theta.pt");
  // The command: exit 1 and one line pointing to --resume.
  std::string log;
  EXPECT_EQ(run_cli("train '" + cfg + "' --out '" + out + "' --quiet", &log), 1);
  EXPECT_NE(log.find("--resume"), std::string::npos) << log;
  EXPECT_EQ(ngtest::count_lines(log), 1) << log;
  EXPECT_EQ(ngtest::read_file(out + "/theta.pt"), before);
  // Resuming with a changed config names the key.
  EXPECT_NE(ngtest::error_of([&] { train_lib(cfg, out, true, {"train.lr=0.2"}); }).find("train.lr"),
            std::string::npos);
  // A checkpoint of another model: the error names the file and the parameter.
  const std::string other = write_config(kShort, "fnn");
  const std::string out2 = ngtest::temp_dir("run") + "/r2";
  ASSERT_EQ(train_lib(other, out2), "max_steps");
  fs::copy_file(out + "/checkpoint.pt", out2 + "/checkpoint.pt",
                fs::copy_options::overwrite_existing);
  const std::string misfit = ngtest::error_of([&] { train_lib(other, out2, true); });
  EXPECT_NE(misfit.find("checkpoint.pt"), std::string::npos) << misfit;
  // A damaged checkpoint is named too.
  ngtest::write_file(out2 + "/checkpoint.pt", "not a checkpoint");
  const std::string damaged = ngtest::error_of([&] { train_lib(other, out2, true); });
  EXPECT_NE(damaged.find("checkpoint.pt"), std::string::npos) << damaged;
}

TEST(Cli, VersionHelpModelsAndDataCheck) {
  std::string log;
  EXPECT_EQ(run_cli("--version", &log), 0);
  EXPECT_NE(log.find("noisegeom 0."), std::string::npos);
  EXPECT_EQ(run_cli("train --help", &log), 0);
  EXPECT_NE(log.find("--resume"), std::string::npos);
  EXPECT_EQ(run_cli("frobnicate", &log), 2);
  EXPECT_EQ(run_cli("models", &log), 0);
  for (const char* count : {"558222", "605458", "1720138", "20091338", "219200", "43072"})
    EXPECT_NE(log.find(count), std::string::npos) << count << "\n" << log;
  EXPECT_EQ(log.find("[differs]"), std::string::npos) << log;
  ASSERT_FALSE(log.empty());
  EXPECT_EQ(log.back(), '\n') << "the last line (the toy model's) must end with a newline";
  EXPECT_EQ(run_cli("data check '" + ngtest::synthetic_cifar_dir(50, 7) + "'", &log), 0) << log;
  EXPECT_EQ(run_cli("data check /nonexistent-dir", &log), 1);
  EXPECT_NE(log.find("/nonexistent-dir"), std::string::npos) << log;
}

// Every sample, or the rows of the positions asked for, with the same columns and label read.
TEST(Train, SamplesCsvListsAllSamplesOrTheGivenPositions) {
  ng::Dataset d;
  d.x = at::zeros({4, 2});
  d.labels = at::tensor(std::vector<int64_t>{1, 0, 1, 1});
  d.indices = {10, 11, 12, 13};
  d.original_labels = {3, 5, 3, 3};
  EXPECT_EQ(ng::samples_csv(d),
            "position,index,label,class\n0,10,3,1\n1,11,5,0\n2,12,3,1\n3,13,3,1\n");
  EXPECT_EQ(ng::samples_csv(d, {2, 1}), "position,index,label,class\n2,12,3,1\n1,11,5,0\n");
  ng::Dataset r;  // regression: no labels, no original indices
  r.x = at::zeros({2, 3});
  EXPECT_EQ(ng::samples_csv(r, {1}), "position,index,label,class\n1,1,-1,-1\n");
}

TEST(Train, LossAndSgdStepKeepTheirArithmetic) {
  const at::Tensor out = at::tensor({1.0, 2.0, -1.0, 0.5}, at::kDouble).reshape({2, 2});
  const at::Tensor y = at::tensor({0.0, 1.0, 0.0, 0.0}, at::kDouble).reshape({2, 2});
  const at::Tensor label = at::tensor(std::vector<int64_t>{1, 0});
  // (1 + 1 + 1 + 0.25) / 2 samples / 2
  EXPECT_EQ(ng::batch_loss(out, y, {}, ng::LossKind::Mse).item<double>(), 0.8125);
  EXPECT_DOUBLE_EQ(ng::sample_losses(out, y, ng::LossKind::Mse).sum().item<double>(), 1.625);
  EXPECT_DOUBLE_EQ(ng::summed_loss(out, y, ng::LossKind::Mse).item<double>(), 1.625);
  // One-hot targets: the soft-target cross entropy is the labelled one.
  const at::Tensor onehot = at::tensor({0.0, 1.0, 1.0, 0.0}, at::kDouble).reshape({2, 2});
  EXPECT_NEAR(ng::batch_loss(out, {}, label, ng::LossKind::CrossEntropy).item<double>(),
              ng::summed_loss(out, onehot, ng::LossKind::CrossEntropy).item<double>() / 2, 1e-15);

  at::Tensor w = at::tensor({1.0f, -2.0f, 3.0f}).requires_grad_(true);
  at::Tensor unused = at::zeros({2}).requires_grad_(true);
  (w * w).sum().backward();  // grad 2 w: theta - 0.25 grad = w / 2, exactly
  ng::sgd_step({w, unused}, 0.25);
  EXPECT_TRUE(at::equal(w.detach(), at::tensor({0.5f, -1.0f, 1.5f}))) << w;
  EXPECT_FALSE(unused.grad().defined());
  ng::clear_gradients({w});
  EXPECT_FALSE(w.grad().defined());
}

// Two trainable parameters around a frozen one, which no flat vector holds.
struct TwoParameters : torch::nn::Module {
  at::Tensor a =
      register_parameter("a", at::tensor({1.0, 2.0, 3.0, 4.0}, at::kDouble).view({2, 2}));
  at::Tensor frozen = register_parameter("frozen", at::ones({3}, at::kDouble), false);
  at::Tensor b = register_parameter("b", at::tensor({5.0, 6.0}, at::kDouble));
};

// The flat gradients and values the ranks' collectives exchange (src/training/data_parallel.h).
TEST(Train, ParameterLayoutFlattensAndSetsGradientsAndValues) {
  TwoParameters m;
  const ng::ParameterLayout layout = ng::ParameterLayout::of(m);
  EXPECT_EQ(layout.names, (std::vector<std::string>{"a", "b"}));
  EXPECT_EQ(layout.size, 6);
  EXPECT_TRUE(at::equal(layout.gradients(), at::zeros({6}, at::kDouble)));
  (m.a * m.a).sum().backward();  // b takes no part: its entries are zeros
  EXPECT_TRUE(at::equal(layout.gradients(), at::tensor({2.0, 4.0, 6.0, 8.0, 0.0, 0.0})));
  layout.set_gradients(at::arange(10.0, 16.0, at::kDouble));
  EXPECT_TRUE(at::equal(m.a.grad(), at::tensor({10.0, 11.0, 12.0, 13.0}).view({2, 2})));
  EXPECT_TRUE(at::equal(m.b.grad(), at::tensor({14.0, 15.0})));
  EXPECT_FALSE(m.frozen.grad().defined());
  layout.set_values(at::arange(6.0, at::kDouble));
  EXPECT_TRUE(at::equal(m.a, at::tensor({0.0, 1.0, 2.0, 3.0}).view({2, 2})));
  EXPECT_TRUE(at::equal(layout.values(), at::arange(6.0, at::kDouble)));
  EXPECT_TRUE(at::equal(m.frozen, at::ones({3}, at::kDouble)));
  EXPECT_NE(ngtest::error_of([&] {
              layout.set_gradients(at::zeros({5}, at::kDouble));
            }).find("a flat vector of 6 entries"),
            std::string::npos);
}

// The run directory of the ranks other than 0: nothing is created, nothing written, no log.
TEST(Train, RunDirInNoWriteModeWritesNothing) {
  const std::string parent = ngtest::temp_dir("nowrite");
  const ng::RunDir silent(parent + "/run", false);
  bool wrote = false;
  silent.write("manifest.json", [&](const std::string&) { wrote = true; });
  EXPECT_FALSE(wrote);
  EXPECT_FALSE(silent.log("train_log.csv", "step").has_value());
  EXPECT_TRUE(fs::is_empty(parent));
  const ng::RunDir written(parent + "/run");
  written.write("a.txt", [&](const std::string& path) { ng::write_file_atomic(path, "1\n"); });
  auto log = written.log("log.csv", "step");
  ASSERT_TRUE(log.has_value());
  log->row("3");
  EXPECT_EQ(ngtest::read_file(parent + "/run/a.txt"), "1\n");
  EXPECT_EQ(ngtest::read_file(parent + "/run/log.csv"), "step\n3\n");
}

// A CNN's SGD steps through GraphedStep with graphs asked for and through sgd_gradient and
// sgd_step directly, on the given device: the parameters after `steps` steps and every loss.
struct StepsTaken {
  std::vector<at::Tensor> losses;
  at::Tensor theta;
};

StepsTaken cnn_steps(bool graphed, at::Device device, at::ScalarType dtype, int steps) {
  at::manual_seed(2);
  const at::Tensor x = at::randn({10, 3, 32, 32}).to(device, dtype);
  const at::Tensor y = at::randn({10, 2}).to(device, dtype);
  ng::ModelSpec spec;
  spec.name = "cnn";
  ng::Net model = ng::make_model(spec);
  model->to(device, dtype);
  const std::vector<at::Tensor> params = model->parameters();
  ng::GraphedStep step(ng::sgd_step_body(*model, params, x, y, {}, ng::LossKind::Mse), params,
                       true);
  ng::BatchOrder order(10, 4, 7, device);  // batches of 4, 4 and 2: the short one runs eagerly
  StepsTaken out;
  for (int k = 0; k < steps; ++k) {
    const double lr = k < steps / 2 ? 0.05 : 0.02;  // another key: another capture, or eager
    at::Tensor loss;
    if (graphed) {
      loss = step.run({order.at(k)}, lr);
    } else {
      loss = ng::sgd_gradient(*model, params, x, y, {}, order.at(k), ng::LossKind::Mse);
      ng::sgd_step(params, lr);
    }
    out.losses.push_back(loss.detach().to(at::kCPU, at::kDouble));
  }
  std::vector<at::Tensor> flat;
  for (const auto& p : params) flat.push_back(p.detach().reshape(-1).to(at::kCPU, at::kDouble));
  out.theta = at::cat(flat);
  EXPECT_EQ(step.captured(), graphed && device.is_cuda() && ng::cuda_graphs_built());
  return out;
}

TEST(GraphedStep, OnTheCpuItIsTheEagerStepBitForBit) {
  for (auto dtype : {at::kFloat, at::kDouble}) {
    const StepsTaken eager = cnn_steps(false, at::kCPU, dtype, 8);
    const StepsTaken wrapped = cnn_steps(true, at::kCPU, dtype, 8);
    EXPECT_TRUE(at::equal(eager.theta, wrapped.theta));
    for (size_t k = 0; k < eager.losses.size(); ++k)
      EXPECT_TRUE(at::equal(eager.losses[k], wrapped.losses[k])) << "step " << k;
    EXPECT_GT((eager.theta - cnn_steps(false, at::kCPU, dtype, 0).theta).abs().max().item<double>(),
              0.0);
  }
}

TEST(GraphedStep, OnCudaReplaysAgreeWithEagerSteps) {
  if (!torch::cuda::is_available()) GTEST_SKIP() << "needs a CUDA device";
  // float64: the same kernels replayed, so the same bits; float32 likewise to rounding.
  for (auto dtype : {at::kDouble, at::kFloat}) {
    const StepsTaken eager = cnn_steps(false, at::kCUDA, dtype, 8);
    const StepsTaken graphed = cnn_steps(true, at::kCUDA, dtype, 8);
    const double tol = dtype == at::kDouble ? 1e-12 : 1e-5;
    EXPECT_LE((eager.theta - graphed.theta).abs().max().item<double>(), tol);
    for (size_t k = 0; k < eager.losses.size(); ++k)
      EXPECT_NEAR(eager.losses[k].item<double>(), graphed.losses[k].item<double>(),
                  tol * (1 + std::abs(eager.losses[k].item<double>())))
          << "step " << k;
  }
}

TEST(Schedule, ValuesFollowTheClosedForms) {
  ng::LrSchedule s{ng::ScheduleKind::Triangular, 1.5, 0.5, 10};
  // min + (peak - min)(1 - |2u - 1|), u = (t mod 10) / 10
  const std::vector<std::pair<int64_t, double>> tri = {
      {0, 0.5}, {2, 0.9}, {5, 1.5}, {7, 1.1}, {9, 0.7}, {10, 0.5}, {15, 1.5}, {1000000000007, 1.1}};
  for (const auto& [t, v] : tri) EXPECT_NEAR(s.at(t), v, 1e-15) << "triangular step " << t;
  s.kind = ng::ScheduleKind::Cosine;  // min + (peak - min)(1 + cos(pi u)) / 2
  const std::vector<std::pair<int64_t, double>> cosine = {
      {0, 1.5}, {5, 1.0}, {10, 1.5}, {25, 1.0}, {1000000000005, 1.0}};
  for (const auto& [t, v] : cosine) EXPECT_NEAR(s.at(t), v, 1e-15) << "cosine step " << t;
  EXPECT_NEAR(s.at(2), 0.5 + (1 + std::cos(M_PI * 0.2)) / 2, 1e-15);
  s.kind = ng::ScheduleKind::Constant;
  EXPECT_EQ(s.at(0), 1.5);
  EXPECT_EQ(s.at(7), 1.5);
  EXPECT_EQ(ng::LrSchedule({ng::ScheduleKind::Triangular, 3.4, 0.68, 50}).describe(),
            "triangular lr 0.68..3.4, cycle 50 steps");
}

TEST(Schedule, FromTheConfigWithErrorsNamingTheKey) {
  const auto s = ng::schedule_from_config(
      ng::Config::parse("train: {schedule: cosine, lr: 2, lr_min: 0.5, cycle: 30}\n", "exp.yaml"));
  EXPECT_EQ(s.kind, ng::ScheduleKind::Cosine);
  EXPECT_EQ(s.peak, 2);
  EXPECT_EQ(s.min, 0.5);
  EXPECT_EQ(s.cycle, 30);
  // The default: the constant rate train.lr, whatever lr_min says.
  EXPECT_EQ(ng::schedule_from_config(ng::Config::parse("train: {lr: 0.3}\n", "e")).at(99), 0.3);
  std::string e = ngtest::error_of([] {
    ng::schedule_from_config(
        ng::Config::parse("train: {schedule: triangular, lr: 1, lr_min: 2}\n", "exp.yaml"));
  });
  EXPECT_NE(e.find("exp.yaml: train.lr_min"), std::string::npos) << e;
  e = ngtest::error_of([] { ng::Config::parse("train: {schedule: linear}\n", "exp.yaml"); });
  EXPECT_NE(e.find("train.schedule"), std::string::npos) << e;
  e = ngtest::error_of([] { ng::Config::parse("train: {cycle: 0}\n", "exp.yaml"); });
  EXPECT_NE(e.find("train.cycle"), std::string::npos) << e;
  // model.toy_init: a list of two numbers.
  e = ngtest::error_of([] { ng::Config::parse("model: {toy_init: [0.1, x]}\n", "exp.yaml"); });
  EXPECT_NE(e.find("model.toy_init"), std::string::npos) << e;
  EXPECT_EQ(ng::Config::parse("model: {toy_init: [0.1, -2e-3]}\n", "e").floats("model.toy_init"),
            (std::vector<double>{0.1, -2e-3}));
}

namespace {

// The toy model of Figure 4 on x ~ N(0, 1), y = 0, from (w1, w2) = (0.3, 0.2).
std::string toy_config(const std::string& train) {
  const std::string path = ngtest::temp_dir("toy") + "/toy.yaml";
  ngtest::write_file(path,
                     "seed: 3\ndevice: cpu\ndtype: float64\nthreads: 1\n"
                     "model: {name: toy, toy_init: [0.3, 0.2]}\n"
                     "data: {source: gaussian, d: 1, n: 400, teacher: zero, outputs: 1}\n"
                     "train: {schedule: triangular, lr: 2.5, lr_min: 0.25, cycle: 16, loss: mse, "
                     "target_loss: 0, eval_every: 8, divergence_factor: 1e300, trace_every: 1, " +
                         train + "}\n");
  return path;
}

}  // namespace

// GD on the toy: every traced row follows from the previous one by the closed-form update with the
// schedule's rate, w2 <- w2 (1 - lr c / a), w1 <- w1 (1 + lr c w2^2 / a^2), a = 1 + w1^2, where
// c = (1/n) sum x_i^2 is read off the traced loss c w2^2 / (2a); train_log's lr is the schedule's.
TEST(Train, TraceOfGdOnTheToyFollowsTheClosedFormUpdate) {
  const std::string out = ngtest::temp_dir("run") + "/gd";
  ASSERT_EQ(train_lib(toy_config("batch_size: 400, max_steps: 40"), out), "max_steps");
  const ng::Trace t = ng::read_trace(out + "/trace.csv");
  EXPECT_EQ(t.columns, (std::vector<std::string>{"step", "lr", "loss", "w1", "w2"}));
  ASSERT_EQ(t.rows.size(), 41u);
  const ng::LrSchedule s{ng::ScheduleKind::Triangular, 2.5, 0.25, 16};
  const auto step = t.column("step"), lr = t.column("lr"), loss = t.column("loss");
  const auto w1 = t.column("w1"), w2 = t.column("w2");
  EXPECT_EQ(w1[0], 0.3);
  EXPECT_EQ(w2[0], 0.2);
  const double c = loss[0] * 2 * (1 + 0.09) / 0.04;
  EXPECT_NEAR(c, 1, 0.25);  // (1/400) sum x^2
  for (size_t k = 0; k + 1 < t.rows.size(); ++k) {
    EXPECT_EQ(step[k], double(k));
    EXPECT_EQ(lr[k], s.at(int64_t(k)));
    const double a = 1 + w1[k] * w1[k];
    EXPECT_NEAR(loss[k], c * w2[k] * w2[k] / (2 * a), 1e-12 * (1 + loss[k])) << k;
    EXPECT_NEAR(w2[k + 1], w2[k] * (1 - lr[k] * c / a), 1e-12) << k;
    EXPECT_NEAR(w1[k + 1], w1[k] * (1 + lr[k] * c * w2[k] * w2[k] / (a * a)), 1e-12) << k;
  }
  for (const auto& r : ngtest::read_csv(out + "/train_log.csv"))
    EXPECT_EQ(std::stod(r.at("lr")), s.at(std::stoll(r.at("step")))) << r.at("step");
  EXPECT_NE(ngtest::read_file(out + "/manifest.json")
                .find("\"schedule\": \"triangular lr 0.25..2.5, cycle 16 steps\""),
            std::string::npos);
}

// A cyclical online-SGD run killed after a checkpoint and resumed continues the schedule and the
// batch order exactly: the same parameters and the same trace, each step once.
TEST(Train, CyclicalRunResumedAfterSigkillHasTheSameTrace) {
  const std::string cfg = toy_config("batch_size: 1, max_steps: 2000, checkpoint_every: 48");
  const std::string whole = ngtest::temp_dir("run") + "/whole";
  ASSERT_EQ(train_lib(cfg, whole), "max_steps");
  const std::string cut = ngtest::temp_dir("run") + "/cut";
  ASSERT_TRUE(kill_after_first_checkpoint(cfg, cut)) << "the run ended before it could be killed";
  ASSERT_FALSE(fs::exists(cut + "/theta.pt"));
  // Rows past the checkpoint (and a row cut short) are dropped, then written again.
  expect_resumed_like(cfg, cut, whole);
  EXPECT_EQ(ngtest::read_file(cut + "/trace.csv"), ngtest::read_file(whole + "/trace.csv"));
}

// A parameter with several entries has a column per entry; rows every trace_every steps and at the
// last step.
TEST(Train, TraceHasAColumnPerEntryAndTheLastStep) {
  const std::string path = ngtest::temp_dir("small") + "/small.yaml";
  ngtest::write_file(path,
                     "device: cpu\nthreads: 1\nmodel: {name: linear}\n"
                     "data: {source: gaussian, d: 3, n: 10}\n"
                     "train: {batch_size: 2, max_steps: 12, target_loss: 0, trace_every: 5}\n");
  const std::string out = ngtest::temp_dir("run") + "/small";
  ASSERT_EQ(train_lib(path, out), "max_steps");
  const ng::Trace t = ng::read_trace(out + "/trace.csv");
  EXPECT_EQ(t.columns, (std::vector<std::string>{"step", "lr", "loss", "weight[0]", "weight[1]",
                                                 "weight[2]"}));
  EXPECT_EQ(t.column("step"), (std::vector<double>{0, 5, 10, 12}));
  const auto theta = ng::load_tensor_dict(out + "/theta.pt");
  const at::Tensor w = theta.at(0).second.to(at::kDouble).view(-1);
  for (int64_t k = 0; k < 3; ++k) EXPECT_EQ(t.rows.back()[3 + k], w[k].item<double>()) << k;
}

TEST(Train, TraceIsRefusedForLargeModels) {
  const std::string path = ngtest::temp_dir("big") + "/big.yaml";
  ngtest::write_file(path,
                     "device: cpu\nmodel: {name: linear}\n"
                     "data: {source: gaussian, d: 200, n: 10}\ntrain: {trace_every: 1}\n");
  const std::string out = ngtest::temp_dir("run") + "/big";
  const std::string e = ngtest::error_of([&] { train_lib(path, out); });
  EXPECT_NE(e.find("train.trace_every"), std::string::npos) << e;
  EXPECT_NE(e.find("200"), std::string::npos) << e;
  EXPECT_FALSE(fs::exists(out));
}

// The progress lines during a long evaluation come from evaluate()'s per-batch callback: it sees
// every batch, in order, and watching changes nothing in the result.
TEST(Train, EvaluationReportsEachBatchAndKeepsItsResult) {
  ng::ModelSpec spec;
  spec.name = "cnn";
  at::manual_seed(0);
  ng::Net net = ng::make_model(spec);
  const at::Tensor x = at::randn({10, 3, 32, 32});
  const at::Tensor labels = at::randint(0, 2, {10}, at::kLong);
  const at::Tensor y = at::one_hot(labels, 2).to(at::kFloat);
  std::vector<std::pair<int64_t, int64_t>> seen;
  const ng::Eval watched = ng::evaluate(*net, x, y, labels, ng::LossKind::Mse, 3,
                                        [&](int64_t d, int64_t n) { seen.emplace_back(d, n); });
  const ng::Eval plain = ng::evaluate(*net, x, y, labels, ng::LossKind::Mse, 3);
  const std::vector<std::pair<int64_t, int64_t>> want{{3, 10}, {6, 10}, {9, 10}, {10, 10}};
  EXPECT_EQ(seen, want);
  EXPECT_EQ(watched.loss, plain.loss);
  EXPECT_EQ(watched.accuracy, plain.accuracy);
}
