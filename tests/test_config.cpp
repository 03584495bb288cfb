#include <gtest/gtest.h>

#include "src/core/config.h"
#include "src/core/error.h"
#include "tests/testing.h"

using ng::Config;

TEST(Config, DefaultsAndValues) {
  Config c = Config::parse("seed: 3\ntrain:\n  lr: 0.05\n  batch_size: 16\n", "x.yaml");
  EXPECT_EQ(c.i("seed"), 3);
  EXPECT_DOUBLE_EQ(c.f("train.lr"), 0.05);
  EXPECT_EQ(c.i("train.batch_size"), 16);
  EXPECT_DOUBLE_EQ(c.f("train.target_loss"), 1e-4);
  EXPECT_FALSE(c.is_set("data.dir"));
}
