// Figure 4 end to end at the quick scale: the toy OLM under one cyclical learning rate, online SGD
// against GD; the figure's numbers (SGD's w1^2 grows by a large factor, GD's changes by < 1%),
// the PNG, and a second reproduce that reuses everything.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdlib>
#include <filesystem>

#include "src/io/json.h"
#include "src/training/trace.h"
#include "tests/testing.h"

namespace fs = std::filesystem;
using ngtest::run_cli;

namespace {

bool python_has(const std::string& module) {
  return std::system(("/usr/bin/python3 -c 'import " + module + "' >/dev/null 2>&1").c_str()) == 0;
}

}  // namespace

TEST(Figure4, QuickScaleSgdDriftsAlongTheValleyAndGdDoesNot) {
  if (!python_has("matplotlib"))
    GTEST_SKIP() << "Python's matplotlib is not installed (apt-get install python3-matplotlib)";
  const std::string out = ngtest::temp_dir("fig4");
  const std::string base = "reproduce fig4 --scale quick --out " + ngtest::quote(out) + " --quiet";
  std::string log;
  ASSERT_EQ(run_cli(base, &log), 0) << log;
  const std::string png = out + "/figures/fig4.png";
  ASSERT_TRUE(fs::exists(png));
  EXPECT_EQ(ngtest::read_file(png).substr(1, 3), "PNG");

  const ng::json j = ng::read_json(out + "/figures/fig4.json");
  const ng::json &sgd = j["sgd"], &gd = j["gd"];
  EXPECT_EQ(j["schedule"], "triangular lr 0.68..3.4, cycle 50 steps");
  EXPECT_EQ(sgd["schedule"], gd["schedule"]);
  // Both start at the experiment's point; SGD is online (batch 1, no sample twice), GD full batch.
  for (const ng::json* r : {&sgd, &gd}) {
    EXPECT_EQ((*r)["w1_start"], 0.1);
    EXPECT_EQ((*r)["w2_start"], 0.05);
    EXPECT_EQ((*r)["steps"], 2000);
  }
  EXPECT_EQ(sgd["batch_size"], 1);
  EXPECT_LE(sgd["epochs"].get<double>(), 1.0);
  EXPECT_GE(gd["batch_size"].get<int64_t>(), gd["num_samples"].get<int64_t>());
  EXPECT_NEAR(gd["loss_scale"].get<double>(), 1.0, 0.05);  // (1/n) sum x^2, n = 20,000

  // The acceptance: a large factor for SGD, under 1% for GD.
  const double factor = j["sgd_w1sq_factor"].get<double>();
  const double change = j["gd_w1sq_relative_change"].get<double>();
  EXPECT_GT(factor, 10) << "SGD+CLR: w1^2 x" << factor;
  EXPECT_LT(std::abs(change), 0.01) << "GD+CLR: w1^2 " << 100 * change << "%";
  // The summary says what the traces say.
  const ng::Trace t = ng::read_trace(out + "/runs/quick_fig4_toy/sgd/trace.csv");
  const double w1_end = t.column("w1").back();
  EXPECT_DOUBLE_EQ(factor, w1_end * w1_end / 0.01);
  EXPECT_NE(log.find("SGD+CLR"), std::string::npos) << log;

  // A second reproduce trains nothing again and rewrites the same numbers.
  const std::string theta = out + "/runs/quick_fig4_toy/gd/theta.pt";
  const auto theta_time = fs::last_write_time(theta);
  const std::string summary = ngtest::read_file(out + "/figures/fig4.json");
  ASSERT_EQ(run_cli(base, &log), 0) << log;
  EXPECT_EQ(log.find("trained,"), std::string::npos) << log;
  EXPECT_NE(log.find("reused"), std::string::npos) << log;
  EXPECT_EQ(fs::last_write_time(theta), theta_time);
  EXPECT_EQ(ngtest::read_file(out + "/figures/fig4.json"), summary);
}
