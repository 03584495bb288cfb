#include <gtest/gtest.h>

#include "src/core/config.h"
#include "src/core/error.h"
#include "tests/testing.h"

using ng::Config;

using ngtest::error_of;

namespace {}  // namespace

TEST(Config, DefaultsAndValues) {
  Config c = Config::parse("seed: 3\ntrain:\n  lr: 0.05\n  batch_size: 16\n", "x.yaml");
  EXPECT_EQ(c.i("seed"), 3);
  EXPECT_DOUBLE_EQ(c.f("train.lr"), 0.05);
  EXPECT_EQ(c.i("train.batch_size"), 16);
  EXPECT_DOUBLE_EQ(c.f("train.target_loss"), 1e-4);
  EXPECT_EQ(c.s("model.name"), "cnn");
  EXPECT_FALSE(c.is_set("data.dir"));
  EXPECT_TRUE(c.ints("data.classes").empty());
}

TEST(Config, IntegralFloatsAndListsAreAccepted) {
  Config c = Config::parse("train: {max_steps: 1e5}\ndata: {classes: [0, 1]}\n", "x.yaml");
  EXPECT_EQ(c.i("train.max_steps"), 100000);
  EXPECT_EQ(c.ints("data.classes"), (std::vector<int64_t>{0, 1}));
}

TEST(Config, UnknownKeyNamesFileLineAndKey) {
  const std::string msg =
      error_of([] { Config::parse("seed: 1\ntrain:\n  lrr: 0.1\n", "exp.yaml"); });
  EXPECT_NE(msg.find("exp.yaml:3"), std::string::npos) << msg;
  EXPECT_NE(msg.find("train.lrr"), std::string::npos) << msg;
  EXPECT_NE(msg.find("lr"), std::string::npos) << msg;
  EXPECT_EQ(msg.find('\n'), std::string::npos) << "one line: " << msg;
}

TEST(Config, WrongTypesAndRanges) {
  const std::string t = error_of([] { Config::parse("train:\n  lr: fast\n", "e.yaml"); });
  EXPECT_NE(t.find("e.yaml:2: train.lr: expected a number"), std::string::npos) << t;
  const std::string r = error_of([] { Config::parse("train:\n  batch_size: 0\n", "e.yaml"); });
  EXPECT_NE(r.find("train.batch_size"), std::string::npos) << r;
  EXPECT_NE(r.find(">= 1"), std::string::npos) << r;
  const std::string e = error_of([] { Config::parse("model:\n  name: resnt\n", "e.yaml"); });
  EXPECT_NE(e.find("one of resnet|vgg"), std::string::npos) << e;
  const std::string b = error_of([] { Config::parse("model:\n  bias: 3\n", "e.yaml"); });
  EXPECT_NE(b.find("model.bias: expected true or false"), std::string::npos) << b;
  const std::string l = error_of([] { Config::parse("data:\n  classes: 1\n", "e.yaml"); });
  EXPECT_NE(l.find("data.classes: expected a list of integers"), std::string::npos) << l;
  const std::string s = error_of([] { Config::parse("train: 5\n", "e.yaml"); });
  EXPECT_NE(s.find("train: expected a mapping"), std::string::npos) << s;
  const std::string f = error_of([] { Config::parse("seed: 1.5\n", "e.yaml"); });
  EXPECT_NE(f.find("seed: expected an integer"), std::string::npos) << f;
}

TEST(Config, MalformedYamlNamesFileAndLine) {
  const std::string msg = error_of([] { Config::parse("seed: 1\ntrain: [1, 2\n", "bad.yaml"); });
  EXPECT_NE(msg.find("bad.yaml:"), std::string::npos) << msg;
  EXPECT_NE(msg.find("malformed YAML"), std::string::npos) << msg;
  const std::string missing = error_of([] { Config::load("/nonexistent/exp.yaml"); });
  EXPECT_NE(missing.find("/nonexistent/exp.yaml"), std::string::npos) << missing;
}

TEST(Config, OverridesAreCheckedLikeTheFile) {
  Config c = Config::parse("train: {lr: 0.1}\n", "e.yaml", {"train.lr=0.05", "data.classes=[2,3]"});
  EXPECT_DOUBLE_EQ(c.f("train.lr"), 0.05);
  EXPECT_EQ(c.ints("data.classes"), (std::vector<int64_t>{2, 3}));
  EXPECT_NE(error_of([&] { c.set("train.lrx=1"); }).find("unknown key 'train.lrx'"),
            std::string::npos);
  EXPECT_NE(error_of([&] { c.set("train.lr=abc"); }).find("--set: train.lr: expected a number"),
            std::string::npos);
  EXPECT_NE(error_of([&] { c.set("train.lr"); }).find("expected key=value"), std::string::npos);
  EXPECT_NE(error_of([&] { c.set("device=tpu"); }).find("one of auto|cpu|cuda"), std::string::npos);
}

TEST(Config, ResolvedYamlRoundTrips) {
  Config c = Config::parse("name: \"my run\"\ntrain: {lr: 0.25, max_steps: 7}\n", "e.yaml",
                           {"data.classes=[0,1]", "model.name=vgg"});
  Config back = Config::parse(c.to_yaml(), "resolved.yaml");
  EXPECT_TRUE(c.diff(back).empty());
  EXPECT_EQ(back.s("name"), "my run");
  Config other = Config::parse("train: {lr: 0.5}\n", "o.yaml");
  const auto d = c.diff(other);
  EXPECT_NE(std::find(d.begin(), d.end(), "train.lr"), d.end());
}

TEST(Config, ShippedExperimentsParse) {
  for (const char* f : {"quick_cnn.yaml", "fig5_resnet38.yaml", "fig5_vgg13.yaml",
                        "fig6_vgg19.yaml", "fig6_resnet110.yaml"}) {
    const std::string path = std::string(NG_SOURCE_DIR) + "/experiments/" + f;
    EXPECT_NO_THROW(Config::load(path)) << path;
  }
}
