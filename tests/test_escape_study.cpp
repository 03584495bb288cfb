// Escape sweeps of a tiny trained run through the study layer (GD and SGD, the learning-rate
// search and its reuse, files that agree with each other), and the escape and show commands as a
// user runs them: one end-to-end path, argument handling, bad input.
#include <gtest/gtest.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <filesystem>
#include <map>
#include <sstream>
#include <stdexcept>

#include "src/io/files.h"
#include "src/io/json.h"
#include "src/study/escape_files.h"
#include "src/study/escape_study.h"
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

std::vector<std::string> listing(const std::string& dir) {
  std::vector<std::string> out;
  if (fs::exists(dir))
    for (const auto& e : fs::recursive_directory_iterator(dir)) out.push_back(e.path().string());
  std::sort(out.begin(), out.end());
  return out;
}

ng::EscapeRequest sweep(ng::Optimizer optimizer) {
  ng::EscapeRequest r;
  r.options.optimizer = optimizer;
  r.options.steps = 20;
  r.options.log_every = 5;
  return r;
}

}  // namespace

TEST(EscapeStudy, GdAndSgdSweepsWriteConsistentFilesAndResume) {
  const std::string run = copy_run("esc-study");
  const ng::StudyContext quiet{"", true};
  const auto gd = ng::run_escape_study(run, sweep(ng::Optimizer::Gd), quiet);  // lr auto
  ng::EscapeRequest sgd_req = sweep(ng::Optimizer::Sgd);
  sgd_req.options.runs = 3;
  sgd_req.options.lr = 0.2;
  sgd_req.options.batch = 8;
  const auto t0 = std::chrono::steady_clock::now();
  const auto sgd = ng::run_escape_study(run, sgd_req, quiet);
  const double first_seconds =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  EXPECT_EQ(gd.dir, run + "/escapes/gd");
  EXPECT_EQ(sgd.dir, run + "/escapes/sgd");
  for (const char* f : {"gd/trajectories.csv", "gd/result.json", "gd/run_0000.csv",
                        "sgd/run_0002.csv", "sgd/escape.json"})
    EXPECT_TRUE(fs::exists(run + "/escapes/" + f)) << f;

  std::vector<std::string> header;
  auto rows = read_csv(gd.dir + "/trajectories.csv", &header);
  const auto sgd_rows = read_csv(sgd.dir + "/trajectories.csv");
  rows.insert(rows.end(), sgd_rows.begin(), sgd_rows.end());
  // Default ks 1,5,10,20 clipped to the K = 4 eigenvectors of the spectrum.
  EXPECT_EQ(header, (std::vector<std::string>{"optimizer", "run", "step", "lr", "loss", "distance",
                                              "p_1", "r_1", "p_4", "r_4"}));
  // 5 logged points (steps 0, 5, ..., 20) per run, plus, for GD, at most one off the grid: the
  // first step whose full-batch loss passed the escape threshold.
  int gd_points = 0, sgd_points = 0;
  std::map<std::string, int> off_grid;
  for (const auto& r : rows) {
    if (static_cast<int64_t>(num(r, "step")) % 5 == 0)
      (r.at("optimizer") == "gd" ? gd_points : sgd_points)++;
    else
      ++off_grid[r.at("optimizer") + r.at("run")];
  }
  EXPECT_EQ(gd_points, 5);
  EXPECT_EQ(sgd_points, 15);
  for (const auto& [run_key, count] : off_grid) {
    EXPECT_EQ(run_key, "gd0");
    EXPECT_EQ(count, 1) << run_key;
  }

  const ng::json& g = gd.record;
  const double loss_star = g["escape_criterion"]["loss_star"].get<double>();
  const double gd_lr = g["lr"].get<double>();
  EXPECT_GT(gd_lr, 0);
  EXPECT_EQ(sgd.record["lr"].get<double>(), 0.2);
  EXPECT_EQ(sgd.record["lr_mode"], "given");
  EXPECT_FALSE(g["lr_search"]["trials"].empty()) << g.dump();
  EXPECT_TRUE(g["lr_search"]["trials"][0]["lr"].is_number());
  EXPECT_TRUE(g["srk_G2"].is_number());
  EXPECT_EQ(ng::load_escape_record(gd.dir), g);  // the reader gives back what was written
  // The auto learning rate makes GD escape.
  EXPECT_EQ(g["escaped_runs"], 1) << g.dump();

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
  const double threshold = g["escape_criterion"]["threshold"].get<double>();
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

  // Again: the finished runs and the searched lr are reused; the same files, less time.
  const std::string before = ngtest::read_file(sgd.dir + "/trajectories.csv");
  const auto t1 = std::chrono::steady_clock::now();
  const auto sgd2 = ng::run_escape_study(run, sgd_req, quiet);
  EXPECT_EQ(sgd2.reused, 3);
  EXPECT_EQ(sgd2.computed, 0);
  const auto gd2 = ng::run_escape_study(run, sweep(ng::Optimizer::Gd), quiet);
  EXPECT_EQ(gd2.record["lr_search"], g["lr_search"]);
  const double again_seconds =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - t1).count();
  EXPECT_EQ(ngtest::read_file(sgd.dir + "/trajectories.csv"), before);
  EXPECT_EQ(sgd2.record["computed_last_call"], 0);
  EXPECT_LT(again_seconds, 2 * first_seconds + 5);
}

TEST(EscapeCli, NamedSweepEndToEndAndShow) {
  const std::string run = copy_run("esc-cli");
  std::string log;
  ASSERT_EQ(run_cli("escape " + ngtest::quote(run) +
                        " --optimizer sgd --runs 2 --steps 10 --log-every 5 --lr 0.1 --batch 8"
                        " --name b8",
                    &log),
            0)
      << log;
  EXPECT_NE(log.find("runs escaped, lr 0.1 -> "), std::string::npos) << log;  // on stdout
  EXPECT_NE(log.find("run 1 done"), std::string::npos) << log;                // progress on stderr
  EXPECT_TRUE(fs::exists(run + "/escapes/b8/result.json"));
  // The same name with another setting is refused, naming the setting.
  EXPECT_EQ(run_cli("escape " + ngtest::quote(run) +
                        " --optimizer sgd --runs 2 --steps 12 --log-every 5 --lr 0.1 --batch 8"
                        " --name b8 --quiet",
                    &log),
            1);
  EXPECT_NE(log.find("steps differs"), std::string::npos) << log;
  EXPECT_EQ(ngtest::count_lines(log), 1) << log;
  ASSERT_EQ(run_cli("show " + ngtest::quote(run), &log), 0) << log;
  for (const char* s :
       {"training: max_steps", "spectra (1):", "default", "k=4", "lambda_1", "escapes (1):", "b8",
        "optimizer=sgd runs=2 steps=10 batch=8", "median r/|p| at escape: k=1"})
    EXPECT_NE(log.find(s), std::string::npos) << s << "\n" << log;
  EXPECT_EQ(run_cli("show " + ngtest::quote(run + "/nope"), &log), 1);
  EXPECT_EQ(ngtest::count_lines(log), 1) << log;
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
      {run, "--optimizer sgd --lr 0", "--lr"},
      {run, "--optimizer sgd --lr -1", "--lr"},
      {run, "--optimizer sgd --lr 0.1 --runs -1", "--runs"},
      {run, "--optimizer sgd --lr 0.1 --name ../x", "--name"},
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
  EXPECT_NE(log.find("--bogus"), std::string::npos) << log;
  EXPECT_EQ(run_cli("escape " + ngtest::quote(run) + " --lr 0.1", &log), 2);  // no --optimizer
  EXPECT_NE(log.find("--optimizer"), std::string::npos) << log;
  EXPECT_EQ(run_cli("escape --help", &log), 0);
  EXPECT_NE(log.find("--escape-factor"), std::string::npos);
}
