// Data tests: SHA-256 digests, the CIFAR-10 reader (indices, labels, normalisation, class
// selection, damaged files, SHA256SUMS checks), the download script, the Gaussian inputs of the
// small-scale models and the config's data path.
#include <ATen/ATen.h>
#include <gtest/gtest.h>
#include <sys/wait.h>

#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <numeric>
#include <set>
#include <string>
#include <vector>

#include "data/dataset.h"
#include "data/sha256.h"
#include "src/core/config.h"
#include "src/core/error.h"
#include "tests/testing.h"

namespace fs = std::filesystem;

using ngtest::error_of;

namespace {

constexpr int64_t kRec = 3073;

std::string batch(const std::string& dir, int k) {
  return dir + "/data_batch_" + std::to_string(k) + ".bin";
}

// All five training files' bytes concatenated: the oracle for global indices.
std::string raw_train(const std::string& dir) {
  std::string all;
  for (int k = 1; k <= 5; ++k) all += ngtest::read_file(batch(dir, k));
  return all;
}

unsigned byte_at(const std::string& raw, int64_t record, int64_t offset) {
  return static_cast<unsigned char>(raw[static_cast<size_t>(record * kRec + offset)]);
}

ng::CifarOptions opts(const std::string& dir, bool normalize = false) {
  ng::CifarOptions o;
  o.dir = dir;
  o.normalize = normalize;
  return o;
}

void set_byte(const std::string& path, int64_t offset, unsigned char value) {
  std::fstream f(path, std::ios::in | std::ios::out | std::ios::binary);
  f.seekp(offset);
  f.put(static_cast<char>(value));
}

}  // namespace

// ---------------------------------------------------------------------------------------------
// SHA-256 against the FIPS 180-4 / NIST example digests.

TEST(Sha256, KnownDigests) {
  EXPECT_EQ(ng::sha256_hex("", 0),
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
  EXPECT_EQ(ng::sha256_hex("abc", 3),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
  const std::string two_blocks = "abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq";
  EXPECT_EQ(ng::sha256_hex(two_blocks.data(), two_blocks.size()),
            "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1");
  const std::string million(1000000, 'a');
  EXPECT_EQ(ng::sha256_hex(million.data(), million.size()),
            "cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0");
}

TEST(Sha256, FileDigestMatchesTheBytesAndNamesAnUnreadableFile) {
  const std::string dir = ngtest::temp_dir("sha");
  ngtest::write_file(dir + "/abc.txt", "abc");
  EXPECT_EQ(ng::file_sha256(dir + "/abc.txt"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
  ngtest::write_file(dir + "/empty", "");
  EXPECT_EQ(ng::file_sha256(dir + "/empty"),
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
  // Larger than one read chunk, not a multiple of it.
  std::string big(3 * 1000 * 1000 + 7, '\0');
  for (size_t k = 0; k < big.size(); ++k) big[k] = static_cast<char>((k * 2654435761u) >> 24);
  ngtest::write_file(dir + "/big.bin", big);
  EXPECT_EQ(ng::file_sha256(dir + "/big.bin"), ng::sha256_hex(big.data(), big.size()));

  const std::string missing = dir + "/no_such_file.pt";
  const std::string msg = error_of([&] { ng::file_sha256(missing); });
  EXPECT_EQ(msg.rfind(missing + ": ", 0), 0u) << msg;
  EXPECT_EQ(ngtest::count_lines(msg), 0) << msg;
}

// ---------------------------------------------------------------------------------------------
// CIFAR-10 reader on synthetic files.

TEST(Cifar10, SyntheticFilesReadBackExactly) {
  const std::string dir = ngtest::temp_dir("cifar");
  ngtest::write_synthetic_cifar(dir, 100, 7);
  const std::string raw = raw_train(dir);
  ASSERT_EQ(raw.size(), 500u * kRec);

  const ng::Dataset d = ng::load_cifar10_train(opts(dir));
  ASSERT_EQ(d.size(), 500);
  EXPECT_EQ(d.x.sizes(), (std::vector<int64_t>{500, 3, 32, 32}));
  EXPECT_EQ(d.x.scalar_type(), at::kFloat);
  EXPECT_EQ(d.num_classes, 10);
  EXPECT_FALSE(d.mean.defined());
  EXPECT_EQ(d.targets.sizes(), (std::vector<int64_t>{500, 10}));

  // Every pixel against the byte at its documented offset: 1 + channel*1024 + row*32 + col.
  const float* x = d.x.data_ptr<float>();
  for (int64_t g = 0; g < 500; ++g) {
    ASSERT_EQ(d.indices[g], g);
    ASSERT_EQ(d.labels[g].item<int64_t>(), byte_at(raw, g, 0));
    ASSERT_EQ(d.original_labels[g], static_cast<int64_t>(byte_at(raw, g, 0)));
    ASSERT_EQ(d.targets[g][d.labels[g].item<int64_t>()].item<float>(), 1.0f);
    ASSERT_EQ(d.targets[g].sum().item<float>(), 1.0f);
    for (int c = 0; c < 3; ++c)
      for (int row = 0; row < 32; ++row)
        for (int col = 0; col < 32; ++col) {
          const unsigned v = byte_at(raw, g, 1 + c * 1024 + row * 32 + col);
          ASSERT_EQ(x[((g * 3 + c) * 32 + row) * 32 + col], static_cast<float>(v / 255.0))
              << "record " << g << " channel " << c << " (" << row << ", " << col << ")";
        }
  }
  // Spot checks by hand: record 250 is file 3, position 50; label cycles r % 10.
  EXPECT_EQ(d.labels[250].item<int64_t>(), 0);
  EXPECT_EQ(d.labels[257].item<int64_t>(), 7);
  EXPECT_EQ(std::lround(d.x[250][1][5][7].item<float>() * 255),
            byte_at(raw, 250, 1 + 1024 + 5 * 32 + 7));
  EXPECT_NE(d.description.find("500 samples of all 10 labels"), std::string::npos) << d.description;
}

TEST(Cifar10, FileSizesNeedNotBeEqual) {
  const std::string dir = ngtest::temp_dir("cifar");
  ngtest::write_synthetic_cifar(dir, 20, 1);
  // A longer third file shifts the global indices of files 4 and 5.
  ngtest::write_synthetic_cifar(dir + "/long", 35, 2);
  fs::copy_file(batch(dir + "/long", 1), batch(dir, 3), fs::copy_options::overwrite_existing);
  const std::string raw = raw_train(dir);
  const ng::Dataset d = ng::load_cifar10_train(opts(dir));
  ASSERT_EQ(d.size(), 20 * 4 + 35);
  const int64_t g = 20 * 2 + 35 + 3;  // file 4, position 3
  EXPECT_EQ(d.labels[g].item<int64_t>(), 3);
  EXPECT_EQ(std::lround(d.x[g][2][31][31].item<float>() * 255), byte_at(raw, g, 3072));
}

TEST(Cifar10, ClassSubsetIsRelabelledInTheGivenOrder) {
  const std::string dir = ngtest::temp_dir("cifar");
  ngtest::write_synthetic_cifar(dir, 100, 3);
  const std::string raw = raw_train(dir);
  ng::CifarOptions o = opts(dir);
  o.classes = {7, 2};
  const ng::Dataset d = ng::load_cifar10_train(o);
  ASSERT_EQ(d.size(), 100);  // 10 of each label per file
  EXPECT_EQ(d.num_classes, 2);
  EXPECT_EQ(d.targets.sizes(), (std::vector<int64_t>{100, 2}));
  int64_t prev = -1;
  for (int64_t i = 0; i < d.size(); ++i) {
    const int64_t g = d.indices[i];
    EXPECT_GT(g, prev);
    prev = g;
    const unsigned original = byte_at(raw, g, 0);
    EXPECT_EQ(d.original_labels[i], static_cast<int64_t>(original));
    ASSERT_TRUE(original == 7 || original == 2);
    const int64_t label = original == 7 ? 0 : 1;
    EXPECT_EQ(d.labels[i].item<int64_t>(), label);
    EXPECT_EQ(d.targets[i][label].item<float>(), 1.0f);
    EXPECT_EQ(d.targets[i][1 - label].item<float>(), 0.0f);
    EXPECT_EQ(std::lround(d.x[i][0][0][0].item<float>() * 255), byte_at(raw, g, 1));
  }
  EXPECT_EQ(d.indices.front(), 2);
  EXPECT_NE(d.description.find("labels {7,2} (relabelled 0..1)"), std::string::npos)
      << d.description;
}

TEST(Cifar10, InvalidClassesNameTheKey) {
  const std::string dir = ngtest::temp_dir("cifar");
  ngtest::write_synthetic_cifar(dir, 10, 3);
  for (const auto& classes : std::vector<std::vector<int64_t>>{{10}, {-1}, {1, 4, 1}}) {
    ng::CifarOptions o = opts(dir);
    o.classes = classes;
    const std::string msg = error_of([&] { ng::load_cifar10_train(o); });
    EXPECT_NE(msg.find("data.classes"), std::string::npos) << msg;
  }
}

TEST(Cifar10, MaxSamplesIsASeededSortedSubset) {
  const std::string dir = ngtest::temp_dir("cifar");
  ngtest::write_synthetic_cifar(dir, 100, 5);
  const ng::Dataset all = ng::load_cifar10_train(opts(dir));
  ng::CifarOptions o = opts(dir);
  o.max_samples = 37;
  o.seed = 11;
  const ng::Dataset a = ng::load_cifar10_train(o);
  const ng::Dataset b = ng::load_cifar10_train(o);
  o.seed = 12;
  const ng::Dataset c = ng::load_cifar10_train(o);
  ASSERT_EQ(a.size(), 37);
  EXPECT_EQ(a.indices, b.indices);
  EXPECT_TRUE(at::equal(a.x, b.x));
  EXPECT_NE(a.indices, c.indices);
  EXPECT_TRUE(std::is_sorted(a.indices.begin(), a.indices.end()));
  EXPECT_EQ(std::set<int64_t>(a.indices.begin(), a.indices.end()).size(), 37u);
  // Not simply a prefix, and spread over the files.
  EXPECT_GT(a.indices.back(), 300);
  EXPECT_LT(a.indices.front(), 200);
  for (int64_t i = 0; i < a.size(); ++i) {
    EXPECT_TRUE(at::equal(a.x[i], all.x[a.indices[i]]));
    EXPECT_EQ(a.labels[i].item<int64_t>(), all.labels[a.indices[i]].item<int64_t>());
  }
  EXPECT_NE(a.description.find("seeded subset of 500, seed 11"), std::string::npos)
      << a.description;
  // Pinned: the selection is part of an experiment's identity and must not drift between
  // versions or platforms (std::mt19937_64 and our own Fisher-Yates are fully specified).
  EXPECT_EQ(std::vector<int64_t>(a.indices.begin(), a.indices.begin() + 5),
            (std::vector<int64_t>{24, 62, 63, 86, 100}));

  // The subset is drawn after the class filter.
  o.classes = {3};
  o.max_samples = 12;
  const ng::Dataset s = ng::load_cifar10_train(o);
  ASSERT_EQ(s.size(), 12);
  for (int64_t i = 0; i < s.size(); ++i) EXPECT_EQ(s.original_labels[i], 3);

  o.classes = {};
  o.max_samples = 500;
  EXPECT_EQ(ng::load_cifar10_train(o).indices, all.indices);
  o.max_samples = 501;
  const std::string msg = error_of([&] { ng::load_cifar10_train(o); });
  EXPECT_NE(msg.find("data.max_samples"), std::string::npos) << msg;
  EXPECT_NE(msg.find("500"), std::string::npos) << msg;
}

TEST(Cifar10, SubsetSelectionIsUniform) {
  // Each of the 50 records is chosen with probability 10/50; over 400 seeds its count is
  // Binomial(400, 0.2): mean 80, sd 8.
  const std::string dir = ngtest::temp_dir("cifar");
  ngtest::write_synthetic_cifar(dir, 10, 5);
  std::vector<int> hits(50, 0);
  ng::CifarOptions o = opts(dir);
  o.max_samples = 10;
  for (uint64_t seed = 0; seed < 400; ++seed) {
    o.seed = seed;
    for (int64_t g : ng::load_cifar10_train(o).indices) ++hits[g];
  }
  for (int g = 0; g < 50; ++g) {
    EXPECT_GT(hits[g], 80 - 5 * 8) << g;
    EXPECT_LT(hits[g], 80 + 5 * 8) << g;
  }
}

TEST(Cifar10, PerChannelNormalisation) {
  const std::string dir = ngtest::temp_dir("cifar");
  ngtest::write_synthetic_cifar(dir, 100, 9);
  const std::string raw = raw_train(dir);
  ng::CifarOptions o = opts(dir, true);
  o.classes = {0, 5};
  const ng::Dataset d = ng::load_cifar10_train(o);
  ASSERT_TRUE(d.mean.defined() && d.std.defined());
  // Oracle: float64 statistics straight from the bytes of the selected records.
  for (int c = 0; c < 3; ++c) {
    double s1 = 0, s2 = 0;
    for (int64_t g : d.indices)
      for (int k = 0; k < 1024; ++k) {
        const double v = byte_at(raw, g, 1 + c * 1024 + k) / 255.0;
        s1 += v;
        s2 += v * v;
      }
    const double m = d.size() * 1024.0;
    const double mean = s1 / m, sd = std::sqrt(s2 / m - mean * mean);
    EXPECT_NEAR(d.mean[c].item<double>(), mean, 1e-6);
    EXPECT_NEAR(d.std[c].item<double>(), sd, 1e-6);
    const at::Tensor xc = d.x.select(1, c).to(at::kDouble);
    EXPECT_NEAR(xc.mean().item<double>(), 0.0, 1e-5);
    EXPECT_NEAR(xc.std(/*unbiased=*/false).item<double>(), 1.0, 1e-5);
    const int64_t g = d.indices[3];
    EXPECT_NEAR(d.x[3][c][4][9].item<double>(),
                (byte_at(raw, g, 1 + c * 1024 + 4 * 32 + 9) / 255.0 - mean) / sd, 1e-5);
  }
  EXPECT_NE(d.description.find("per-channel normalised"), std::string::npos);
}

TEST(Cifar10, TruncatedFileNamesTheFile) {
  const std::string dir = ngtest::temp_dir("cifar");
  ngtest::write_synthetic_cifar(dir, 10, 1);
  fs::resize_file(batch(dir, 2), 10 * kRec - 100);
  const std::string want = batch(dir, 2) +
                           ": size 30630 is not a multiple of the 3073-byte "
                           "CIFAR-10 record (truncated?)";
  EXPECT_EQ(error_of([&] { ng::load_cifar10_train(opts(dir)); }), want);
  EXPECT_EQ(error_of([&] { ng::check_cifar10_dir(dir); }), want);
  fs::resize_file(batch(dir, 2), 0);
  EXPECT_NE(error_of([&] { ng::load_cifar10_train(opts(dir)); }).find(batch(dir, 2) + ": size 0"),
            std::string::npos);
}

TEST(Cifar10, BadLabelByteNamesFileAndRecord) {
  const std::string dir = ngtest::temp_dir("cifar");
  ngtest::write_synthetic_cifar(dir, 30, 1);
  set_byte(batch(dir, 4), 17 * kRec, 12);
  const std::string want = batch(dir, 4) + ": record 17: label byte 12 outside 0-9";
  EXPECT_EQ(error_of([&] { ng::load_cifar10_train(opts(dir)); }), want);
  EXPECT_EQ(error_of([&] { ng::check_cifar10_dir(dir); }), want);
}

TEST(Cifar10, MissingFileNamesTheFileAndTheFix) {
  const std::string dir = ngtest::temp_dir("cifar");
  ngtest::write_synthetic_cifar(dir, 10, 1);
  fs::remove(batch(dir, 3));
  const std::string want = batch(dir, 3) +
                           ": missing (run data/download_cifar10.sh or set --data-dir / "
                           "NOISEGEOM_DATA)";
  EXPECT_EQ(error_of([&] { ng::load_cifar10_train(opts(dir)); }), want);
  EXPECT_EQ(error_of([&] { ng::check_cifar10_dir(dir); }), want);
  EXPECT_NE(error_of([&] { ng::check_cifar10_dir(dir + "/nope"); }).find(dir + "/nope"),
            std::string::npos);
}

TEST(Cifar10, TestSplitUsesTrainingStatistics) {
  const std::string dir = ngtest::temp_dir("cifar");
  ngtest::write_synthetic_cifar(dir, 40, 4, /*with_test=*/true);
  ng::CifarOptions o = opts(dir, true);
  o.classes = {1, 0};
  const ng::Dataset train = ng::load_cifar10_train(o);
  const ng::Dataset test = ng::load_cifar10_test(o, train.mean, train.std);
  const std::string raw = ngtest::read_file(dir + "/test_batch.bin");
  ASSERT_EQ(test.size(), 8);
  EXPECT_EQ(test.num_classes, 2);
  EXPECT_TRUE(at::equal(test.mean, train.mean));
  for (int64_t i = 0; i < test.size(); ++i) {
    const int64_t r = test.indices[i];
    EXPECT_EQ(test.labels[i].item<int64_t>(), byte_at(raw, r, 0) == 1 ? 0 : 1);
    for (int c = 0; c < 3; ++c) {
      const double v = byte_at(raw, r, 1 + c * 1024 + 33) / 255.0;
      EXPECT_NEAR(test.x[i][c][1][1].item<double>(),
                  (v - train.mean[c].item<double>()) / train.std[c].item<double>(), 1e-5);
    }
  }
  const ng::Dataset plain = ng::load_cifar10_test(o, at::Tensor(), at::Tensor());
  EXPECT_EQ(plain.x[0][2][0][5].item<float>(),
            static_cast<float>(byte_at(raw, plain.indices[0], 1 + 2048 + 5) / 255.0));
}

TEST(Cifar10, PartialTestFileIsNeverUsedSilently) {
  const std::string dir = ngtest::temp_dir("cifar");
  ngtest::write_synthetic_cifar(dir, 10, 4, /*with_test=*/true);
  fs::rename(dir + "/test_batch.bin", dir + "/test_batch.first1000.bin");
  const std::string msg =
      error_of([&] { ng::load_cifar10_test(opts(dir), at::Tensor(), at::Tensor()); });
  EXPECT_EQ(msg.rfind(dir + "/test_batch.bin: missing (", 0), 0u) << msg;
  EXPECT_NE(msg.find("test_batch.first1000.bin"), std::string::npos) << msg;
}

TEST(Cifar10, CheckDirReportsCountsAndVerifiesSha256Sums) {
  const std::string dir = ngtest::temp_dir("cifar");
  ngtest::write_synthetic_cifar(dir, 30, 2, /*with_test=*/true);
  std::string report = ng::check_cifar10_dir(dir);
  EXPECT_NE(report.find("data_batch_5.bin"), std::string::npos) << report;
  EXPECT_NE(report.find("30 records, per class 3 3 3 3 3 3 3 3 3 3"), std::string::npos) << report;
  EXPECT_NE(report.find("150 records, per class 15 15"), std::string::npos) << report;
  EXPECT_NE(report.find("test_batch.bin"), std::string::npos) << report;
  EXPECT_NE(report.find("SHA256SUMS                absent"), std::string::npos) << report;

  fs::remove(dir + "/test_batch.bin");
  report = ng::check_cifar10_dir(dir);
  EXPECT_NE(report.find("missing: optional"), std::string::npos) << report;

  // A SHA256SUMS file written from the bytes; then one pixel changes (labels stay valid).
  std::string sums;
  for (int k = 1; k <= 5; ++k) {
    const std::string bytes = ngtest::read_file(batch(dir, k));
    sums +=
        ng::sha256_hex(bytes.data(), bytes.size()) + "  data_batch_" + std::to_string(k) + ".bin\n";
  }
  ngtest::write_file(dir + "/notes.txt", "hello\n");
  sums += ng::sha256_hex("hello\n", 6) + " *notes.txt\n";
  ngtest::write_file(dir + "/SHA256SUMS", sums);
  report = ng::check_cifar10_dir(dir);
  EXPECT_NE(report.find("6 listed file(s) match"), std::string::npos) << report;

  set_byte(batch(dir, 2), 5 * kRec + 100, 1);
  const std::string msg = error_of([&] { ng::check_cifar10_dir(dir); });
  EXPECT_EQ(msg.rfind(batch(dir, 2) + ": sha256 ", 0), 0u) << msg;
  EXPECT_NE(msg.find("SHA256SUMS"), std::string::npos) << msg;
}

TEST(Cifar10, ResolveDataDir) {
  {
    const ngtest::ScopedEnv env("NOISEGEOM_DATA", "/from/env");
    EXPECT_EQ(ng::resolve_data_dir("/from/flag"), "/from/flag");
    EXPECT_EQ(ng::resolve_data_dir(""), "/from/env");
  }
  const ngtest::ScopedEnv none("NOISEGEOM_DATA", nullptr);
  EXPECT_EQ(ng::resolve_data_dir(""), "data/cifar-10-batches-bin");
}

// ---------------------------------------------------------------------------------------------
// Gaussian data.

TEST(Gaussian, CovarianceMatchesS) {
  ng::GaussianOptions o;
  o.n = 200000;
  o.d = 4;
  o.covariance = "power";
  o.power = 1.0;
  o.seed = 3;
  const ng::Dataset g = ng::make_gaussian(o);
  ASSERT_EQ(g.x.sizes(), (std::vector<int64_t>{200000, 4}));
  const at::Tensor x = g.x.to(at::kDouble);
  const at::Tensor cov = at::matmul(x.t(), x) / static_cast<double>(o.n);
  // Entry (j,k) of the sample covariance has sd sqrt((S_jj S_kk + S_jk^2)/n) <= 0.0032.
  for (int j = 0; j < 4; ++j) {
    EXPECT_NEAR(x.select(1, j).mean().item<double>(), 0.0, 0.01);
    for (int k = 0; k < 4; ++k)
      EXPECT_NEAR(cov[j][k].item<double>(), j == k ? 1.0 / (j + 1) : 0.0, 0.015) << j << k;
  }
  // Gaussian tails, not just the right variance: the fourth moment of x_1 is 3.
  const at::Tensor x1 = x.select(1, 0);
  EXPECT_NEAR((x1 * x1 * x1 * x1).mean().item<double>(), 3.0, 0.1);
}

TEST(Gaussian, TargetsAreXTimesTeacher) {
  ng::GaussianOptions o;
  o.n = 300;
  o.d = 40;
  o.outputs = 3;
  o.seed = 5;
  const ng::Dataset g = ng::make_gaussian(o);
  ASSERT_TRUE(g.teacher.defined());
  EXPECT_EQ(g.teacher.sizes(), (std::vector<int64_t>{40, 3}));
  EXPECT_EQ(g.targets.sizes(), (std::vector<int64_t>{300, 3}));
  EXPECT_FALSE(g.labels.defined());
  EXPECT_EQ(g.num_classes, 3);
  const at::Tensor want = at::matmul(g.x.to(at::kDouble), g.teacher.to(at::kDouble)).to(at::kFloat);
  EXPECT_LE((g.targets - want).abs().max().item<float>(), 1e-6f);
  // One entry by hand, in float64.
  double y = 0;
  for (int k = 0; k < 40; ++k)
    y += double(g.x[17][k].item<float>()) * double(g.teacher[k][2].item<float>());
  EXPECT_EQ(g.targets[17][2].item<float>(), static_cast<float>(y));
  // W* ~ N(0, I).
  ng::GaussianOptions big = o;
  big.n = 1;
  big.d = 200;
  big.outputs = 50;
  const at::Tensor w = ng::make_gaussian(big).teacher.to(at::kDouble);
  EXPECT_NEAR(w.mean().item<double>(), 0.0, 0.04);
  EXPECT_NEAR(w.var().item<double>(), 1.0, 0.06);
}

TEST(Gaussian, ZeroTeacherGivesZeroTargetsAndTheSameInputs) {
  ng::GaussianOptions o;
  o.n = 30;
  o.d = 6;
  o.seed = 3;
  const ng::Dataset g = ng::make_gaussian(o);
  o.zero_teacher = true;
  const ng::Dataset z = ng::make_gaussian(o);
  EXPECT_TRUE(at::equal(z.x, g.x));
  EXPECT_EQ(z.targets.abs().max().item<float>(), 0.0f);
  EXPECT_EQ(z.teacher.abs().max().item<float>(), 0.0f);
  EXPECT_GT(g.targets.abs().max().item<float>(), 0.0f);
}

TEST(Gaussian, DeterministicPerSeedAndPrefixStable) {
  ng::GaussianOptions o;
  o.n = 50;
  o.d = 7;
  o.seed = 1;
  const ng::Dataset a = ng::make_gaussian(o), b = ng::make_gaussian(o);
  EXPECT_TRUE(at::equal(a.x, b.x));
  EXPECT_TRUE(at::equal(a.targets, b.targets));
  o.n = 20;
  const ng::Dataset prefix = ng::make_gaussian(o);
  EXPECT_TRUE(at::equal(prefix.x, a.x.slice(0, 0, 20)));
  EXPECT_TRUE(at::equal(prefix.teacher, a.teacher));
  o.seed = 2;
  EXPECT_FALSE(at::equal(ng::make_gaussian(o).x, prefix.x));
  // Pinned first value: x must not change silently between versions (Box-Muller on
  // std::mt19937_64, both fully specified).
  EXPECT_NEAR(a.x[0][0].item<double>(), 0.7489192485809326, 1e-6);
}

TEST(Gaussian, ExplicitVariances) {
  ng::GaussianOptions o;
  o.n = 100000;
  o.d = 3;
  o.variances = {4.0, 0.0, 0.25};
  const ng::Dataset g = ng::make_gaussian(o);
  const at::Tensor var = g.x.to(at::kDouble).pow(2).mean(0);
  EXPECT_NEAR(var[0].item<double>(), 4.0, 0.08);
  EXPECT_EQ(var[1].item<double>(), 0.0);
  EXPECT_NEAR(var[2].item<double>(), 0.25, 0.005);
  o.variances = {1.0};
  EXPECT_NE(error_of([&] { ng::make_gaussian(o); }).find("data.d"), std::string::npos);
}

TEST(Gaussian, EffectiveDimension) {
  ng::GaussianOptions o;
  o.d = 50;
  EXPECT_DOUBLE_EQ(ng::effective_dimension(ng::gaussian_variances(o)), 50.0);
  o.covariance = "power";
  o.power = 0.5;
  o.d = 100;
  // srk(S) = sum k^-1/2 = 18.59, srk(S^2) = H_100.
  EXPECT_NEAR(ng::effective_dimension(ng::gaussian_variances(o)), 5.187377517639621, 1e-12);
  EXPECT_NEAR(ng::stable_rank(ng::gaussian_variances(o)), 18.589603824784, 1e-9);
  o.power = 1.0;
  o.d = 10;
  // srk(S) = H_10 = 2.929, srk(S^2) = sum 1/k^2 = 1.5498.
  EXPECT_NEAR(ng::effective_dimension(ng::gaussian_variances(o)), 1.5497677311665408, 1e-12);
  EXPECT_DOUBLE_EQ(ng::stable_rank({2.0, 1.0, 1.0}), 2.0);

  EXPECT_EQ(ng::dimension_for_effective_dimension(50, 0.0), 50);
  // power 1/4: d_eff = srk(S^2) = sum k^-1/2 ~ 2 sqrt(d) + zeta(1/2) reaches 50 near d = 662.
  const int64_t d = ng::dimension_for_effective_dimension(50, 0.25);
  o.power = 0.25;
  o.d = d;
  EXPECT_GE(ng::effective_dimension(ng::gaussian_variances(o)), 50.0);
  o.d = d - 1;
  EXPECT_LT(ng::effective_dimension(ng::gaussian_variances(o)), 50.0);
  EXPECT_NEAR(static_cast<double>(d), std::pow((50 + 1.4603545) / 2, 2), 2.0);
  // Power 1/2 (Figure 1's anisotropic S): srk(S^2) = H_d, so d_eff = 50 needs d ~ e^49.4.
  const auto t0 = std::chrono::steady_clock::now();
  const std::string msg = error_of([] { ng::dimension_for_effective_dimension(50, 0.5); });
  EXPECT_NE(msg.find("out of reach"), std::string::npos) << msg;
  EXPECT_LT(std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count(), 0.5);
  EXPECT_EQ(ng::dimension_for_effective_dimension(5, 0.5), 83);  // H_82 < 5 <= H_83
}

// ---------------------------------------------------------------------------------------------
// Config -> data.

TEST(LoadTrainingData, FollowsTheConfig) {
  const std::string dir = ngtest::temp_dir("cifar");
  ngtest::write_synthetic_cifar(dir, 20, 6);
  ng::Config c = ng::Config::parse(
      "seed: 4\ndata:\n  classes: [0, 1]\n  max_samples: 15\n  normalize: none\n", "t.yaml");
  ng::Dataset d = ng::load_training_data(c, dir);  // --data-dir
  EXPECT_EQ(d.size(), 15);
  EXPECT_EQ(d.num_classes, 2);
  EXPECT_FALSE(d.mean.defined());
  ng::CifarOptions o = opts(dir);
  o.classes = {0, 1};
  o.max_samples = 15;
  o.seed = 4;
  EXPECT_EQ(d.indices, ng::load_cifar10_train(o).indices);
  c.set("data.dir=" + dir + "/nope");  // the flag wins over data.dir
  EXPECT_EQ(ng::load_training_data(c, dir).size(), 15);
  c.set("data.dir=" + dir);  // without the flag, data.dir is used
  EXPECT_EQ(ng::load_training_data(c, "").size(), 15);

  ng::Config g = ng::Config::parse(
      "seed: 9\ndata:\n  source: gaussian\n  n: 30\n  d: 12\n  covariance: power\n"
      "  power: 0.5\n  outputs: 2\n",
      "g.yaml");
  const ng::Dataset gd = ng::load_training_data(g, "");
  ng::GaussianOptions go;
  go.n = 30;
  go.d = 12;
  go.covariance = "power";
  go.power = 0.5;
  go.outputs = 2;
  go.seed = 9;
  EXPECT_TRUE(at::equal(gd.x, ng::make_gaussian(go).x));
  EXPECT_EQ(gd.targets.sizes(), (std::vector<int64_t>{30, 2}));
}

// ---------------------------------------------------------------------------------------------
// The real CIFAR-10 training set (skipped when ../shared/data is absent).

TEST(RealCifar10, TrainingSetMatchesPublishedFacts) {
  const std::string dir = ngtest::real_cifar_dir();
  if (dir.empty()) GTEST_SKIP() << "real CIFAR-10 not found";
  const auto t0 = std::chrono::steady_clock::now();
  const ng::Dataset d = ng::load_cifar10_train(opts(dir, true));
  const double seconds =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  // Printed, not asserted: the standards keep timings out of tests (a loaded machine took 1.96 s).
  std::printf("[ info ] loading and normalising 50,000 CIFAR-10 images took %.3f s\n", seconds);

  ASSERT_EQ(d.size(), 50000);
  const std::vector<int64_t> first = {6, 9, 9, 4, 1, 1, 2, 7, 8, 3};
  for (int i = 0; i < 10; ++i) EXPECT_EQ(d.labels[i].item<int64_t>(), first[i]) << i;
  const at::Tensor counts = at::bincount(d.labels);
  for (int c = 0; c < 10; ++c) EXPECT_EQ(counts[c].item<int64_t>(), 5000);
  const at::Tensor counts1 = at::bincount(d.labels.slice(0, 0, 10000));
  const std::vector<int64_t> batch1 = {1005, 974, 1032, 1016, 999, 937, 1030, 1001, 1025, 981};
  for (int c = 0; c < 10; ++c) EXPECT_EQ(counts1[c].item<int64_t>(), batch1[c]);

  const double mean[3] = {0.4914, 0.4822, 0.4465}, sd[3] = {0.2470, 0.2435, 0.2616};
  for (int c = 0; c < 3; ++c) {
    EXPECT_NEAR(d.mean[c].item<double>(), mean[c], 1e-3);
    EXPECT_NEAR(d.std[c].item<double>(), sd[c], 1e-3);
  }
  auto byte = [&](int64_t i, int c, int row, int col) {
    const double v = d.x[i][c][row][col].item<double>();
    return std::lround((v * d.std[c].item<double>() + d.mean[c].item<double>()) * 255);
  };
  // Train image 0: R starts 59 43 50 68, B ends 140 84 72; image 9999: R 62 61 60, B 130 130 131.
  EXPECT_EQ(byte(0, 0, 0, 0), 59);
  EXPECT_EQ(byte(0, 0, 0, 1), 43);
  EXPECT_EQ(byte(0, 0, 0, 2), 50);
  EXPECT_EQ(byte(0, 0, 0, 3), 68);
  EXPECT_EQ(byte(0, 2, 31, 29), 140);
  EXPECT_EQ(byte(0, 2, 31, 30), 84);
  EXPECT_EQ(byte(0, 2, 31, 31), 72);
  EXPECT_EQ(byte(9999, 0, 0, 0), 62);
  EXPECT_EQ(byte(9999, 0, 0, 1), 61);
  EXPECT_EQ(byte(9999, 0, 0, 2), 60);
  EXPECT_EQ(byte(9999, 2, 31, 29), 130);
  EXPECT_EQ(byte(9999, 2, 31, 30), 130);
  EXPECT_EQ(byte(9999, 2, 31, 31), 131);

  // The partial test copy must not stand in for test_batch.bin.
  const std::string msg = error_of([&] { ng::load_cifar10_test(opts(dir), d.mean, d.std); });
  EXPECT_NE(msg.find("test_batch.bin: missing"), std::string::npos) << msg;
  EXPECT_NE(msg.find("test_batch.first1000.bin"), std::string::npos) << msg;
}

TEST(RealCifar10, CheckDirVerifiesTheShippedChecksums) {
  const std::string dir = ngtest::real_cifar_dir();
  if (dir.empty()) GTEST_SKIP() << "real CIFAR-10 not found";
  const std::string report = ng::check_cifar10_dir(dir);
  EXPECT_NE(report.find("50000 records, per class 5000 5000 5000"), std::string::npos) << report;
  EXPECT_NE(report.find("1000 records, per class 103 89 100 103 90 86 112 102 106 109"),
            std::string::npos)
      << report;
  EXPECT_NE(report.find("7 listed file(s) match"), std::string::npos) << report;
}

// ---------------------------------------------------------------------------------------------
// data/download_cifar10.sh, offline.

namespace {

bool have_bash() {
  return std::system("command -v bash >/dev/null 2>&1") == 0;
}

int run_script(const std::string& env, const std::string& dest, std::string* log) {
  const std::string log_path = dest + ".log";
  const std::string cmd = env + " bash '" + std::string(NG_SOURCE_DIR) +
                          "/data/download_cifar10.sh' '" + dest + "' >'" + log_path + "' 2>&1";
  const int status = std::system(cmd.c_str());
  *log = ngtest::read_file(log_path);
  return WIFEXITED(status) ? WEXITSTATUS(status) : 128;
}

}  // namespace

TEST(DownloadScript, SyntaxIsValid) {
  if (!have_bash()) GTEST_SKIP() << "bash not found";
  const std::string cmd = "bash -n '" + std::string(NG_SOURCE_DIR) + "/data/download_cifar10.sh'";
  EXPECT_EQ(std::system(cmd.c_str()), 0);
}

TEST(DownloadScript, RefusesAnArchiveWithTheWrongChecksum) {
  if (!have_bash()) GTEST_SKIP() << "bash not found";
  const std::string dir = ngtest::temp_dir("download");
  const std::string fake = dir + "/cifar-10-binary.tar.gz";
  ngtest::write_file(fake, std::string(4096, 'x'));
  // An incomplete destination whose files must survive the refusal.
  fs::create_directories(dir + "/out");
  ngtest::write_file(dir + "/out/data_batch_1.bin", "keep me");
  std::string log;
  const int rc = run_script("NOISEGEOM_CIFAR_ARCHIVE='" + fake + "'", dir + "/out", &log);
  EXPECT_NE(rc, 0) << log;
  EXPECT_NE(log.find("MD5 mismatch"), std::string::npos) << log;
  EXPECT_NE(log.find("c32a1d4ab5d03f1284b67883e8d87530"), std::string::npos) << log;
  EXPECT_NE(log.find("deleted the downloaded copy"), std::string::npos) << log;
  EXPECT_TRUE(fs::exists(fake));  // the user's own file is left alone
  EXPECT_EQ(ngtest::read_file(dir + "/out/data_batch_1.bin"), "keep me");
  for (const auto& e : fs::directory_iterator(dir))  // no leftover work directory or archive
    EXPECT_EQ(e.path().filename().string().rfind(".cifar10-download", 0), std::string::npos)
        << e.path();
  EXPECT_EQ(std::distance(fs::directory_iterator(dir + "/out"), fs::directory_iterator()), 1);
}

TEST(DownloadScript, SkipsWhenTheFilesArePresent) {
  if (!have_bash()) GTEST_SKIP() << "bash not found";
  const std::string dir = ngtest::temp_dir("download") + "/out";
  fs::create_directories(dir);
  for (const char* f : {"data_batch_1", "data_batch_2", "data_batch_3", "data_batch_4",
                        "data_batch_5", "test_batch"}) {
    ngtest::write_file(dir + "/" + f + ".bin", "");
    fs::resize_file(dir + "/" + f + ".bin", 30730000);  // sparse: official size, no I/O
  }
  std::string log;
  // A bogus archive would fail the run if the script tried to fetch anything.
  EXPECT_EQ(run_script("NOISEGEOM_CIFAR_ARCHIVE=/nonexistent", dir, &log), 0) << log;
  EXPECT_NE(log.find("nothing to do"), std::string::npos) << log;
}
