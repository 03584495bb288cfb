// The escape command as a user runs it: a tiny trained run, its spectrum, GD and SGD sweeps,
// resuming, bad input.
#include <gtest/gtest.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <filesystem>
#include <map>
#include <sstream>
#include <stdexcept>

#include "src/io/files.h"
#include "tests/testing.h"

namespace fs = std::filesystem;
using ngtest::run_cli;

namespace {

// A small CNN trained briefly, with the top 4 eigenpairs of G (made once, copied per test).
const std::string& trained_run() {
  static const std::string run =
      ngtest::train_run("esc-run",
                        "seed: 3\ndevice: cpu\nthreads: 2\nmodel: {name: cnn}\ndata: {dir: \"" +
                            ngtest::synthetic_cifar_dir(50, 13) +
                            "\", classes: [0, 1]}\n"
                            "train: {lr: 0.05, batch_size: 10, max_steps: 60, eval_every: 60,"
                            " checkpoint_every: 1000, target_loss: 0}\n",
                        "spectrum {run} --k 4 --dtype float64 --quiet");
  return run;
}

std::string copy_run(const std::string& tag) {
  return ngtest::copy_run(trained_run(), tag);
}

using Row = ngtest::CsvRow;
using ngtest::read_csv;

double num(const Row& r, const std::string& key) {
  return std::stod(r.at(key));
}

// `"key": value` after the first occurrence of `"section"` in our JSON (one key a line).
double json_number(const std::string& text, const std::string& section, const std::string& key) {
  const size_t s = text.find("\"" + section + "\"");
  if (s == std::string::npos) return std::nan("");
  const size_t at = text.find("\"" + key + "\": ", s);
  if (at == std::string::npos) return std::nan("");
  return std::stod(text.substr(at + key.size() + 4));
}

std::vector<std::string> listing(const std::string& dir) {
  std::vector<std::string> out;
  if (fs::exists(dir))
    for (const auto& e : fs::recursive_directory_iterator(dir)) out.push_back(e.path().string());
  std::sort(out.begin(), out.end());
  return out;
}

}  // namespace

TEST(EscapeCli, GdAndSgdSweepsWriteConsistentFilesAndResume) {
  const std::string run = copy_run("esc-cli");
  std::string log;
  ASSERT_EQ(
      run_cli("escape " + ngtest::quote(run) + " --optimizer gd --steps 20 --log-every 5", &log), 0)
      << log;
  // --lr auto reports what it tried and what it chose.
  EXPECT_NE(log.find("tried lr"), std::string::npos) << log;
  EXPECT_NE(log.find("chose lr"), std::string::npos) << log;
  const auto t0 = std::chrono::steady_clock::now();
  ASSERT_EQ(run_cli("escape " + ngtest::quote(run) +
                        " --optimizer sgd --runs 3 --steps 20 --log-every 5 --lr 0.2 --batch 8",
                    &log),
            0)
      << log;
  const double first_seconds =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();

  const std::string esc = run + "/escape";
  for (const char* f : {"trajectories.csv", "summary.json", "gd/run_0000.csv", "sgd/run_0002.csv"})
    EXPECT_TRUE(fs::exists(esc + "/" + f)) << f;
  std::vector<std::string> header;
  const auto rows = read_csv(esc + "/trajectories.csv", &header);
  // Default ks 1,5,10,20 clipped to the K = 4 eigenvectors of the spectrum.
  EXPECT_EQ(header, (std::vector<std::string>{"optimizer", "run", "step", "lr", "loss", "distance",
                                              "p_1", "r_1", "p_4", "r_4"}));
  // Both sweeps, 5 logged points (steps 0, 5, ..., 20) per run, plus, for GD, at most one off the
  // grid: the first step whose full-batch loss passed the escape threshold.
  int gd = 0, sgd = 0;
  std::map<std::string, int> off_grid;
  for (const auto& r : rows) {
    if (static_cast<int64_t>(num(r, "step")) % 5 == 0)
      (r.at("optimizer") == "gd" ? gd : sgd)++;
    else
      ++off_grid[r.at("optimizer") + r.at("run")];
  }
  EXPECT_EQ(gd, 5);
  EXPECT_EQ(sgd, 15);
  for (const auto& [run_key, count] : off_grid) {
    EXPECT_EQ(run_key, "gd0");
    EXPECT_EQ(count, 1) << run_key;
  }

  const std::string summary = ngtest::read_file(esc + "/summary.json");
  const double loss_star = json_number(summary, "gd", "loss_star");
  const double gd_lr = json_number(summary, "gd", "lr");
  EXPECT_GT(gd_lr, 0);
  EXPECT_DOUBLE_EQ(json_number(summary, "sgd", "lr"), 0.2);
  EXPECT_NE(summary.find("\"lr_trials\": [{\"lr\": "), std::string::npos) << summary;
  EXPECT_NE(summary.find("\"srk_G2\": "), std::string::npos);
  EXPECT_NE(summary.find("\"escape_criterion\": "), std::string::npos);
  // The auto learning rate makes GD escape.
  EXPECT_EQ(json_number(summary, "gd", "escaped_runs"), 1) << summary;

  for (const auto& r : rows) {
    const double d = num(r, "distance");
    for (const char* k : {"1", "4"}) {
      const double p = num(r, std::string("p_") + k), rr = num(r, std::string("r_") + k);
      EXPECT_NEAR(p * p + rr * rr, d * d, 1e-6 * d * d) << r.at("optimizer") << " k=" << k;
      EXPECT_GE(rr, 0);
    }
    // U_4 spans u_1: more of theta - theta* is sharp with k = 4 than with k = 1.
    EXPECT_GE(num(r, "p_4") + 1e-12 * d, std::abs(num(r, "p_1")));
    EXPECT_DOUBLE_EQ(num(r, "lr"), r.at("optimizer") == "gd" ? gd_lr : 0.2);
    if (num(r, "step") == 0) {
      // Both sweeps start at theta* itself (no perturbation) and evaluate the same loss there.
      EXPECT_EQ(d, 0);
      EXPECT_NEAR(num(r, "loss"), loss_star, 1e-6 * loss_star);
    }
  }
  // GD escaped: some logged loss is past the criterion's threshold. Its gradient's loss is the
  // evaluation loss (both over all samples), so an off-grid point is its first one past it.
  const double threshold = json_number(summary, "gd", "threshold");
  EXPECT_NEAR(threshold, 10 * loss_star, 1e-9 * threshold);
  double gd_max = 0;
  for (const auto& r : rows) {
    if (r.at("optimizer") != "gd") continue;
    const bool past = num(r, "loss") > threshold;
    if (static_cast<int64_t>(num(r, "step")) % 5 != 0) {
      EXPECT_TRUE(past && gd_max <= threshold);
    }
    gd_max = std::max(gd_max, num(r, "loss"));
  }
  EXPECT_GT(gd_max, threshold);

  // A second invocation reuses the finished runs and the searched lr: same file, less time.
  const std::string before = ngtest::read_file(esc + "/trajectories.csv");
  const auto t1 = std::chrono::steady_clock::now();
  ASSERT_EQ(run_cli("escape " + ngtest::quote(run) +
                        " --optimizer sgd --runs 3 --steps 20 --log-every 5 --lr 0.2 --batch 8",
                    &log),
            0)
      << log;
  EXPECT_NE(log.find("reused 3 finished run(s), computed 0"), std::string::npos) << log;
  ASSERT_EQ(
      run_cli("escape " + ngtest::quote(run) + " --optimizer gd --steps 20 --log-every 5", &log), 0)
      << log;
  EXPECT_NE(log.find("reusing the learning rate"), std::string::npos) << log;
  EXPECT_EQ(log.find("tried lr"), std::string::npos) << log;
  const double again_seconds =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - t1).count();
  EXPECT_EQ(ngtest::read_file(esc + "/trajectories.csv"), before);
  EXPECT_EQ(json_number(ngtest::read_file(esc + "/summary.json"), "sgd", "computed_last_call"), 0);
  EXPECT_LT(again_seconds, 2 * first_seconds + 5);
}

TEST(EscapeCli, ComputesAMissingSpectrum) {
  const std::string run = copy_run("esc-nospec");
  ng::remove_tree(run + "/spectrum");
  std::string log;
  ASSERT_EQ(run_cli("escape " + ngtest::quote(run) +
                        " --optimizer gd --steps 4 --log-every 2 --lr 0.01 --ks 1,3",
                    &log),
            0)
      << log;
  EXPECT_NE(log.find("computing it"), std::string::npos) << log;
  EXPECT_TRUE(fs::exists(run + "/spectrum/eigenvectors.pt"));
  std::vector<std::string> header;
  const auto rows = read_csv(run + "/escape/trajectories.csv", &header);
  EXPECT_EQ(header.back(), "r_3");
  EXPECT_EQ(rows.size(), 3u);
}

TEST(EscapeCli, BadInputIsOneLineAndWritesNothing) {
  const std::string run = copy_run("esc-bad");
  const auto before = listing(run);
  struct Case {
    std::string dir, args, expect;
  };
  const std::vector<Case> cases = {
      {run + "/nope", "--optimizer gd --lr 0.1", "no such run directory"},
      {run, "--optimizer gd --lr 0.1 --ks 1,5", "--ks"},
      {run, "--optimizer adam --lr 0.1", "--optimizer"},
      {run, "--lr 0.1", "--optimizer"},
      {run, "--optimizer sgd --lr 0", "--lr"},
      {run, "--optimizer sgd --lr -1", "--lr"},
      {run, "--optimizer sgd --lr 0.1 --runs 0", "--runs"},
      {run, "--optimizer sgd --lr 0.1 --eval-samples -5", "--eval-samples"},
      {run, "--optimizer gd --lr 0.1 --gd-samples many", "--gd-samples"},
  };
  for (const auto& c : cases) {
    std::string log;
    EXPECT_EQ(run_cli("escape " + ngtest::quote(c.dir) + " " + c.args + " --quiet", &log), 1)
        << c.args << "\n"
        << log;
    EXPECT_EQ(ngtest::count_lines(log), 1) << c.args << "\n" << log;
    EXPECT_NE(log.find(c.expect), std::string::npos) << c.args << "\n" << log;
  }
  EXPECT_EQ(listing(run), before);
  std::string log;
  EXPECT_EQ(run_cli("escape " + ngtest::quote(run) + " --optimizer gd --bogus 1", &log), 2);
  EXPECT_EQ(run_cli("escape --help", &log), 0);
  EXPECT_NE(log.find("--escape-factor"), std::string::npos);
}
