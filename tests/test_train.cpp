// The training command as a user runs it: run directories, resume after SIGKILL, bad input.
#include <ATen/ATen.h>
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <nlohmann/json.hpp>
#include <sstream>
#include <thread>

#include "src/io/files.h"
#include "src/training/loss.h"
#include "src/training/sgd.h"
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

TEST(Train, ResumeAfterSigkillEndsAtTheSameParameters) {
  const std::string cfg = write_config(
      "train: {lr: 0.05, batch_size: 8, max_steps: 4000, eval_every: 500, checkpoint_every: 300,"
      " target_loss: 0}\n");
  const std::string whole = ngtest::temp_dir("run") + "/whole";
  ASSERT_EQ(train_lib(cfg, whole), "max_steps");

  const std::string cut = ngtest::temp_dir("run") + "/cut";
  const pid_t pid = fork();
  ASSERT_GE(pid, 0);
  if (pid == 0) {
    execl(NG_BINARY, NG_BINARY, "train", cfg.c_str(), "--out", cut.c_str(), "--quiet",
          static_cast<char*>(nullptr));
    _exit(127);
  }
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(120);
  bool running_when_killed = false;
  while (std::chrono::steady_clock::now() < deadline) {
    if (fs::exists(cut + "/checkpoint.pt")) {
      int st = 0;
      running_when_killed = waitpid(pid, &st, WNOHANG) == 0;
      break;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(2));
  }
  kill(pid, SIGKILL);
  waitpid(pid, nullptr, 0);
  ASSERT_TRUE(running_when_killed) << "the run ended before it could be killed";
  EXPECT_FALSE(fs::exists(cut + "/theta.pt"));
  EXPECT_NE(ngtest::read_file(cut + "/manifest.json").find("\"status\": \"running\""),
            std::string::npos);

  ASSERT_EQ(train_lib(cfg, cut, true), "max_steps");
  EXPECT_TRUE(same_tensors(whole + "/theta.pt", cut + "/theta.pt"));
  const std::string manifest = ngtest::read_file(cut + "/manifest.json");
  EXPECT_NE(manifest.find("\"resumed_from_step\": 300"), std::string::npos) << manifest;
  // The log has each evaluation once, with the same losses as the uninterrupted run's.
  EXPECT_EQ(log_without_timing(cut + "/train_log.csv"),
            log_without_timing(whole + "/train_log.csv"));
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
