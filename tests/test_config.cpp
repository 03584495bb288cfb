// Tests of the experiment config: schema defaults, type and range checks, repeated keys, empty
// files, --set overrides and the resolved YAML of run directories.
#include <gtest/gtest.h>

#include <string>

#include "src/core/config.h"
#include "src/core/error.h"
#include "tests/testing.h"

using ng::Config;

using ngtest::error_of;

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

TEST(Config, EnumErrorsListTheChoicesWithoutBounds) {
  const std::string e = error_of([] { Config::parse("model:\n  name: resnt\n", "e.yaml"); });
  EXPECT_NE(e.find("e.yaml:2: model.name: expected one of resnet|vgg|cnn|fnn|linear|linear_net|"
                   "diag_linear|two_layer|toy, got 'resnt'"),
            std::string::npos)
      << e;
  EXPECT_EQ(e.find('['), std::string::npos) << e;
  // No field but Int and Float has bounds to report.
  for (const char* bad : {"device=tpu", "model.bias=3", "data.classes=1", "name=[1]"}) {
    Config c = Config::parse("seed: 1\n", "e.yaml");
    const std::string m = error_of([&] { c.set(bad); });
    EXPECT_NE(m.find("expected"), std::string::npos) << bad << ": " << m;
    EXPECT_EQ(m.find(" in ["), std::string::npos) << m;
    EXPECT_EQ(m.find(">="), std::string::npos) << m;
  }
  const std::string lr = error_of([] { Config::parse("train: {lr: 0}\n", "e.yaml"); });
  EXPECT_NE(lr.find("train.lr: expected a number > 0, got '0'"), std::string::npos) << lr;
  const std::string slope = error_of([] { Config::parse("model: {leaky_slope: 2}\n", "e.yaml"); });
  EXPECT_NE(slope.find("expected a number in [0, 1], got '2'"), std::string::npos) << slope;
}

TEST(Config, RepeatedKeyNamesBothLines) {
  const std::string nested = error_of([] {
    Config::parse("seed: 1\nmodel: {name: cnn}\ntrain:\n  lr: 0.1\n  lr: 0.2\n", "exp.yaml");
  });
  EXPECT_EQ(nested, "exp.yaml: train.lr is given twice (lines 4 and 5)");
  const std::string top = error_of(
      [] { Config::parse("train:\n  lr: 0.1\nseed: 2\ntrain:\n  max_steps: 5\n", "exp.yaml"); });
  EXPECT_EQ(top, "exp.yaml: train is given twice (lines 1 and 4)");
  const std::string leaf = error_of([] { Config::parse("seed: 1\n\nseed: 1\n", "exp.yaml"); });
  EXPECT_EQ(leaf, "exp.yaml: seed is given twice (lines 1 and 3)");
  // Flow style too, and the same key in two different sections is no repetition.
  const std::string flow = error_of([] { Config::parse("data: {n: 5, d: 3, n: 6}\n", "e.yaml"); });
  EXPECT_EQ(flow, "e.yaml: data.n is given twice (lines 1 and 1)");
  EXPECT_NO_THROW(Config::parse("model: {name: fnn}\ndata: {source: gaussian}\n", "e.yaml"));
  const std::string key = error_of([] { Config::parse("seed: 1\n[1, 2]: 3\n", "e.yaml"); });
  EXPECT_EQ(key, "e.yaml:2: top level: expected a key name, got a list");
}

TEST(Config, EmptyFileIsAnError) {
  for (const char* text : {"", "\n\n", "# only a comment\n  # and another\n", "  \t\n"}) {
    const std::string msg = error_of([&] { Config::parse(text, "exp.yaml"); });
    EXPECT_EQ(msg.rfind("exp.yaml: the file is empty (expected a YAML mapping", 0), 0u)
        << "'" << text << "': " << msg;
  }
  const std::string null_doc = error_of([] { Config::parse("~\n", "exp.yaml"); });
  EXPECT_NE(null_doc.find("exp.yaml: expected a mapping of config keys at the top level"),
            std::string::npos)
      << null_doc;
  const std::string list = error_of([] { Config::parse("- 1\n", "exp.yaml"); });
  EXPECT_NE(list.find("at the top level, got a list"), std::string::npos) << list;
  const std::string dir = ngtest::temp_dir("config");
  ngtest::write_file(dir + "/exp.yaml", "# nothing yet\n");
  const std::string file = error_of([&] { Config::load(dir + "/exp.yaml"); });
  EXPECT_EQ(file.rfind(dir + "/exp.yaml: the file is empty", 0), 0u) << file;
}

TEST(Config, DataTestIsNoLongerAKey) {
  // The key was accepted but nothing read it: an old config must not believe it is honoured.
  const std::string msg =
      error_of([] { Config::parse("data:\n  source: cifar10\n  test: true\n", "old.yaml"); });
  EXPECT_NE(msg.find("old.yaml:3: unknown key 'data.test'"), std::string::npos) << msg;
  Config c = Config::parse("seed: 1\n", "e.yaml");
  EXPECT_NE(error_of([&] { c.set("data.test=false"); }).find("unknown key 'data.test'"),
            std::string::npos);
  EXPECT_EQ(c.to_yaml().find("test:"), std::string::npos);
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

// The commit a binary reports (--version, a run's git_commit) is the one it was built from: it is
// looked up at every build, not at the last configure, which an incremental build skips.
TEST(Version, CommitIsTheSourceTreesHead) {
  std::string head;
  if (ngtest::run_shell("git -C " + ngtest::quote(NG_SOURCE_DIR) + " rev-parse --short=12 HEAD",
                        &head) != 0)
    GTEST_SKIP() << "the source tree is not a git checkout";
  while (!head.empty() && (head.back() == '\n' || head.back() == '\r')) head.pop_back();
  const std::string built = ng::git_commit();
  EXPECT_EQ(built.substr(0, head.size()), head) << built;
  EXPECT_NE(ng::version_string().find(built), std::string::npos) << ng::version_string();
}
