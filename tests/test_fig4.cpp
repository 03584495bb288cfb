// Figure 4 end to end at the quick scale: the toy OLM under one cyclical learning rate, online SGD
// against GD over several seeds; the figure's distribution (a good share of SGD seeds grow w1^2 by
// a large factor, every GD seed changes it by < 1%), the PNG, and a second reproduce that reuses
// everything.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdlib>
#include <filesystem>

#include "src/io/json.h"
#include "src/training/trace.h"
#include "tests/testing.h"

namespace fs = std::filesystem;
using ngtest::run_cli;

TEST(Figure4, QuickScaleSgdSeedsOftenDriftAlongTheValleyAndGdNever) {
  if (!ngtest::python_has("matplotlib"))
    GTEST_SKIP() << "Python's matplotlib is not installed (apt-get install python3-matplotlib)";
  const std::string out = ngtest::temp_dir("fig4");
  const std::string base = "reproduce fig4 --scale quick --out " + ngtest::quote(out) + " --quiet";
  std::string log;
  ASSERT_EQ(run_cli(base, &log), 0) << log;
  const std::string png = out + "/figures/fig4.png";
  ASSERT_TRUE(fs::exists(png));
  EXPECT_EQ(ngtest::read_file(png).substr(1, 3), "PNG");

  const ng::json j = ng::read_json(out + "/figures/fig4.json");
  const ng::json &sgd = j["sgd"], &gd = j["gd"], &runs = j["runs"];
  EXPECT_EQ(j["schedule"], "triangular lr 0.68..3.4, cycle 50 steps");
  ASSERT_EQ(sgd["seeds"].size(), 16u);
  ASSERT_EQ(gd["seeds"].size(), 4u);
  // Every run starts at the experiment's point under one schedule; SGD is online (batch 1, no
  // sample twice), GD takes the full batch.
  for (const auto& [variant, r] : runs.items()) {
    EXPECT_EQ(r["w1_start"], 0.1) << variant;
    EXPECT_EQ(r["w2_start"], 0.05) << variant;
    EXPECT_EQ(r["steps"], 2000) << variant;
    EXPECT_EQ(r["schedule"], j["schedule"]) << variant;
    if (variant.rfind("sgd_s", 0) == 0) {
      EXPECT_EQ(r["batch_size"], 1) << variant;
      EXPECT_LE(r["epochs"].get<double>(), 1.0) << variant;
    } else {
      EXPECT_GE(r["batch_size"].get<int64_t>(), r["num_samples"].get<int64_t>()) << variant;
      EXPECT_NEAR(r["loss_scale"].get<double>(), 1.0, 0.05) << variant;  // (1/n) sum x^2
    }
  }

  // The acceptance, over seeds: GD moves w1^2 by < 1% for every seed (+0.376% to +0.385%
  // measured); SGD's escape is a chance event, and at least a quarter of the seeds grow w1^2 more
  // than tenfold (5 of the 16 do, x570 to x13,000, and 8 more than x2; a simulation of the
  // updates over 2000 seeds gives 46%). The runs are deterministic per seed, so the bound fails
  // only if SGD stops escaping (or GD starts).
  EXPECT_LT(gd["max_abs_relative_change"].get<double>(), 0.01);
  for (const auto& c : gd["w1sq_relative_change"]) EXPECT_LT(std::abs(c.get<double>()), 0.01);
  EXPECT_GE(sgd["fraction_above_10"].get<double>(), 0.25) << j["sgd"].dump();
  EXPECT_GT(sgd["max"].get<double>(), 100) << j["sgd"].dump();
  EXPECT_GE(sgd["min"].get<double>(), 1.0) << j["sgd"].dump();  // every step pushes w1 outward
  // The summary says what the traces say.
  for (size_t k = 0; k < sgd["seeds"].size(); ++k) {
    const auto seed = sgd["seeds"][k].get<int>();
    const ng::Trace t = ng::read_trace(out + "/runs/quick_fig4_toy/sgd_s" + (seed < 10 ? "0" : "") +
                                       std::to_string(seed) + "/trace.csv");
    const double w1_end = t.column("w1").back();
    EXPECT_DOUBLE_EQ(sgd["w1sq_factor"][k].get<double>(), w1_end * w1_end / 0.01) << seed;
  }
  EXPECT_NE(log.find("SGD+CLR"), std::string::npos) << log;
  EXPECT_NE(log.find("highlights SGD seed"), std::string::npos) << log;

  // A second reproduce trains nothing again and rewrites the same numbers.
  const std::string theta = out + "/runs/quick_fig4_toy/gd_s00/theta.pt";
  const auto theta_time = fs::last_write_time(theta);
  const std::string summary = ngtest::read_file(out + "/figures/fig4.json");
  ASSERT_EQ(run_cli(base, &log), 0) << log;
  EXPECT_EQ(log.find("trained,"), std::string::npos) << log;
  EXPECT_NE(log.find("reused"), std::string::npos) << log;
  EXPECT_EQ(fs::last_write_time(theta), theta_time);
  EXPECT_EQ(ngtest::read_file(out + "/figures/fig4.json"), summary);
}
