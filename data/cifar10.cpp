// CIFAR-10 binary reader: data_batch_1..5.bin and test_batch.bin, 3073-byte records (label, then
// 32x32 R, G and B planes). Each file is read with one call and checked in full before use.
#include <ATen/ATen.h>
#include <ATen/Parallel.h>

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <limits>
#include <map>
#include <memory>
#include <mutex>
#include <sstream>

#include "data/dataset.h"
#include "data/sha256.h"
#include "src/core/error.h"
#include "src/core/random.h"

namespace fs = std::filesystem;

namespace ng {
namespace {

constexpr int64_t kRecord = 3073;
constexpr int64_t kPlane = 1024;
constexpr const char* kTrainHint =
    "run data/download_cifar10.sh or set --data-dir / NOISEGEOM_DATA";

std::string in_dir(const std::string& dir, const std::string& name) {
  return (fs::path(dir) / name).string();
}

std::string train_file(const std::string& dir, int k) {
  return in_dir(dir, "data_batch_" + std::to_string(k) + ".bin");
}

// Records in `path`; ng::Error for a missing file or a size that is not whole records.
int64_t record_count(const std::string& path, const std::string& missing_hint) {
  std::error_code ec;
  const auto st = fs::status(path, ec);
  if (!fs::exists(st)) fail("{}: missing ({})", path, missing_hint);
  if (!fs::is_regular_file(st)) fail("{}: not a regular file", path);
  const uintmax_t size = fs::file_size(path, ec);
  if (ec) fail("{}: cannot read its size ({})", path, ec.message());
  if (size == 0 || size % kRecord != 0)
    fail("{}: size {} is not a multiple of the 3073-byte CIFAR-10 record (truncated?)", path, size);
  return static_cast<int64_t>(size / kRecord);
}

void read_exact(const std::string& path, unsigned char* dst, int64_t bytes) {
  std::FILE* f = std::fopen(path.c_str(), "rb");
  if (!f) fail("{}: cannot open ({})", path, std::strerror(errno));
  const size_t got = std::fread(dst, 1, static_cast<size_t>(bytes), f);
  const bool bad = got != static_cast<size_t>(bytes) || std::ferror(f);
  std::fclose(f);
  if (bad) fail("{}: read {} of {} bytes (file changed while reading?)", path, got, bytes);
}

void check_labels(const std::string& path, const unsigned char* data, int64_t records) {
  for (int64_t r = 0; r < records; ++r) {
    const unsigned label = data[r * kRecord];
    if (label > 9) fail("{}: record {}: label byte {} outside 0-9", path, r, label);
  }
}

// The files of one split, concatenated: record g is the split's global index g.
struct Raw {
  std::unique_ptr<unsigned char[]> bytes;
  int64_t total = 0;
  const unsigned char* record(int64_t g) const { return bytes.get() + g * kRecord; }
  int label(int64_t g) const { return record(g)[0]; }
};

Raw read_split(const std::vector<std::string>& paths, const std::string& missing_hint) {
  // Sizes first, so that a missing last file fails before seconds of reading.
  std::vector<int64_t> counts;
  Raw raw;
  for (const auto& p : paths) {
    counts.push_back(record_count(p, missing_hint));
    raw.total += counts.back();
  }
  // Uninitialised on purpose: every byte is overwritten by the reads.
  raw.bytes.reset(new unsigned char[static_cast<size_t>(raw.total * kRecord)]);
  int64_t at = 0;
  for (size_t k = 0; k < paths.size(); ++k) {
    unsigned char* dst = raw.bytes.get() + at * kRecord;
    read_exact(paths[k], dst, counts[k] * kRecord);
    check_labels(paths[k], dst, counts[k]);
    at += counts[k];
  }
  return raw;
}

struct ClassMap {
  std::vector<int64_t> classes;  // original labels kept, in their new order
  int64_t relabel[10];           // original label -> new label, or -1
  bool identity = true;          // all ten, in order
};

ClassMap class_map(const std::vector<int64_t>& classes) {
  ClassMap m;
  std::fill(std::begin(m.relabel), std::end(m.relabel), -1);
  if (classes.empty())
    for (int64_t c = 0; c < 10; ++c) m.classes.push_back(c);
  else
    m.classes = classes;
  for (size_t k = 0; k < m.classes.size(); ++k) {
    const int64_t c = m.classes[k];
    if (c < 0 || c > 9) fail("data.classes: {} is not a CIFAR-10 label (0-9)", c);
    if (m.relabel[c] >= 0) fail("data.classes: label {} is listed twice", c);
    m.relabel[c] = static_cast<int64_t>(k);
    if (c != static_cast<int64_t>(k)) m.identity = false;
  }
  if (m.classes.size() != 10) m.identity = false;
  return m;
}

std::string labels_text(const ClassMap& m) {
  if (m.identity) return "all 10 labels";
  std::string list;
  for (size_t k = 0; k < m.classes.size(); ++k)
    list += (k ? "," : "") + std::to_string(m.classes[k]);
  return fmt::format("labels {{{}}} (relabelled 0..{})", list, m.classes.size() - 1);
}

// Per-channel mean and (population) std of pixels/255 over `rows`, from exact integer sums.
void channel_stats(const Raw& raw, const std::vector<int64_t>& rows, double mean[3], double sd[3]) {
  std::mutex mu;
  uint64_t s1[3] = {0, 0, 0}, s2[3] = {0, 0, 0};
  at::parallel_for(0, static_cast<int64_t>(rows.size()), 256, [&](int64_t b, int64_t e) {
    uint64_t l1[3] = {0, 0, 0}, l2[3] = {0, 0, 0};
    for (int64_t i = b; i < e; ++i) {
      const unsigned char* px = raw.record(rows[i]) + 1;
      for (int c = 0; c < 3; ++c) {
        // 1024 bytes: the sums fit 32 bits, which lets the compiler vectorise the loop.
        uint32_t a = 0, q = 0;
        for (int64_t k = 0; k < kPlane; ++k) {
          const uint32_t v = px[c * kPlane + k];
          a += v;
          q += v * v;
        }
        l1[c] += a;
        l2[c] += q;
      }
    }
    std::lock_guard<std::mutex> lock(mu);
    for (int c = 0; c < 3; ++c) {
      s1[c] += l1[c];
      s2[c] += l2[c];
    }
  });
  const double m = static_cast<double>(rows.size()) * kPlane;
  for (int c = 0; c < 3; ++c) {
    const double mu1 = static_cast<double>(s1[c]) / m;
    const double mu2 = static_cast<double>(s2[c]) / m;
    mean[c] = mu1 / 255.0;
    sd[c] = std::sqrt(std::max(0.0, mu2 - mu1 * mu1)) / 255.0;
  }
}

using Lut = std::vector<float>;  // 3 x 256: the float value of each byte in each channel

Lut make_lut(const at::Tensor& mean, const at::Tensor& sd) {
  Lut lut(3 * 256);
  for (int c = 0; c < 3; ++c) {
    // The stored float32 statistics, so that train and test use the very same transform.
    const double m = mean.defined() ? mean[c].item<double>() : 0.0;
    const double s = mean.defined() ? sd[c].item<double>() : 1.0;
    for (int v = 0; v < 256; ++v) lut[c * 256 + v] = static_cast<float>((v / 255.0 - m) / s);
  }
  return lut;
}

at::Tensor float3(const double v[3]) {
  at::Tensor t = at::empty({3}, at::kFloat);
  for (int c = 0; c < 3; ++c) t.data_ptr<float>()[c] = static_cast<float>(v[c]);
  return t;
}

Dataset assemble(const Raw& raw, const std::vector<int64_t>& rows, const ClassMap& cm,
                 const Lut& lut) {
  const auto n = static_cast<int64_t>(rows.size());
  const auto classes = static_cast<int64_t>(cm.classes.size());
  Dataset d;
  d.num_classes = classes;
  d.x = at::empty({n, 3, 32, 32}, at::kFloat);
  d.labels = at::empty({n}, at::kLong);
  d.targets = at::zeros({n, classes}, at::kFloat);
  float* x = d.x.data_ptr<float>();
  int64_t* labels = d.labels.data_ptr<int64_t>();
  float* targets = d.targets.data_ptr<float>();
  const float* table = lut.data();
  at::parallel_for(0, n, 64, [&](int64_t b, int64_t e) {
    for (int64_t i = b; i < e; ++i) {
      const unsigned char* px = raw.record(rows[i]) + 1;
      float* out = x + i * 3 * kPlane;
      for (int c = 0; c < 3; ++c)
        for (int64_t k = 0; k < kPlane; ++k)
          out[c * kPlane + k] = table[c * 256 + px[c * kPlane + k]];
    }
  });
  d.indices = rows;
  d.original_labels.resize(static_cast<size_t>(n));
  for (int64_t i = 0; i < n; ++i) {
    const int original = raw.label(rows[i]);
    d.original_labels[i] = original;
    labels[i] = cm.relabel[original];
    targets[i * classes + labels[i]] = 1.0f;
  }
  return d;
}

std::vector<int64_t> rows_of_classes(const Raw& raw, const ClassMap& cm) {
  std::vector<int64_t> rows;
  rows.reserve(static_cast<size_t>(raw.total));
  for (int64_t g = 0; g < raw.total; ++g)
    if (cm.relabel[raw.label(g)] >= 0) rows.push_back(g);
  return rows;
}

std::map<std::string, std::string> read_sha256sums(const std::string& path) {
  std::map<std::string, std::string> sums;
  std::ifstream in(path);
  if (!in) fail("{}: cannot read", path);
  std::string line;
  int lineno = 0;
  while (std::getline(in, line)) {
    ++lineno;
    if (line.empty() || line[0] == '#') continue;
    std::istringstream ls(line);
    std::string hex, name;
    ls >> hex >> name;
    if (!name.empty() && name[0] == '*') name.erase(0, 1);  // sha256sum's binary-mode marker
    if (hex.size() != 64 || name.empty() ||
        hex.find_first_not_of("0123456789abcdefABCDEF") != std::string::npos)
      fail("{}:{}: expected '<64 hex digits>  <file name>'", path, lineno);
    std::transform(hex.begin(), hex.end(), hex.begin(), ::tolower);
    sums[name] = hex;
  }
  return sums;
}

std::string class_counts_text(const std::vector<int64_t>& counts) {
  std::string s;
  for (size_t c = 0; c < counts.size(); ++c) s += (c ? " " : "") + std::to_string(counts[c]);
  return s;
}

// A file named in SHA256SUMS: `bytes` holds its contents when the scan has read them already.
struct Listed {
  std::string path, expected, bytes;
  bool read = true;
};

// Checks `listed` and the files of `unscanned` (name -> digest, hashed from disk) against
// SHA256SUMS; returns the report's SHA256SUMS line. A listed file that is absent is reported,
// not an error: SHA256SUMS may list files the user chose not to download.
std::string verify_sums(const std::string& dir, const std::string& sums_path,
                        const std::map<std::string, std::string>& unscanned,
                        std::vector<Listed> listed) {
  std::vector<std::string> absent;
  for (const auto& [name, hex] : unscanned) {
    const std::string path = in_dir(dir, name);
    if (fs::exists(path))
      listed.push_back({path, hex, "", false});
    else
      absent.push_back(name);
  }
  std::vector<std::string> got(listed.size());
  at::parallel_for(0, static_cast<int64_t>(listed.size()), 1, [&](int64_t b, int64_t e) {
    for (int64_t k = b; k < e; ++k)
      got[k] = listed[k].read ? sha256_hex(listed[k].bytes.data(), listed[k].bytes.size())
                              : file_sha256(listed[k].path);
  });
  for (size_t k = 0; k < listed.size(); ++k)
    if (got[k] != listed[k].expected)
      fail("{}: sha256 {} does not match {} ({})", listed[k].path, got[k], sums_path,
           listed[k].expected);
  std::string out = fmt::format("  {:<26}{} listed file(s) match", "SHA256SUMS", listed.size());
  if (!absent.empty()) {
    out += "; listed but absent:";
    for (const auto& a : absent) out += " " + a;
  }
  return out + "\n";
}

}  // namespace

std::string resolve_data_dir(const std::string& flag) {
  if (!flag.empty()) return flag;
  const char* env = std::getenv("NOISEGEOM_DATA");
  if (env && *env) return env;
  return "data/cifar-10-batches-bin";
}

Dataset load_cifar10_train(const CifarOptions& opt) {
  const ClassMap cm = class_map(opt.classes);
  if (opt.max_samples < 0) fail("data.max_samples: {} is negative (0 means all)", opt.max_samples);
  std::vector<std::string> paths;
  for (int k = 1; k <= 5; ++k) paths.push_back(train_file(opt.dir, k));
  const Raw raw = read_split(paths, kTrainHint);

  std::vector<int64_t> rows = rows_of_classes(raw, cm);
  const auto available = static_cast<int64_t>(rows.size());
  if (available == 0)
    fail("data.classes: {} holds no training samples of {}", opt.dir, labels_text(cm));
  if (opt.max_samples > available)
    fail("data.max_samples: {} requested, but {} holds only {} training samples of {}",
         opt.max_samples, opt.dir, available, labels_text(cm));
  std::string subset;
  if (opt.max_samples > 0 && opt.max_samples < available) {
    rows = seeded_subset(std::move(rows), opt.max_samples, opt.seed);
    subset = fmt::format(" (seeded subset of {}, seed {})", available, opt.seed);
  }

  at::Tensor mean, sd;
  if (opt.normalize) {
    double m[3], s[3];
    channel_stats(raw, rows, m, s);
    for (int c = 0; c < 3; ++c)
      if (!(s[c] > 0))
        fail(
            "{}: channel {} is constant over the selected training samples, so it cannot be "
            "normalised (set data.normalize: none)",
            opt.dir, "RGB"[c]);
    mean = float3(m);
    sd = float3(s);
  }
  Dataset d = assemble(raw, rows, cm, make_lut(mean, sd));
  d.mean = mean;
  d.std = sd;
  d.description =
      fmt::format("CIFAR-10 train ({}): {} samples{} of {}, {}", opt.dir, d.size(), subset,
                  labels_text(cm), opt.normalize ? "per-channel normalised" : "pixels/255");
  return d;
}

Dataset load_cifar10_test(const CifarOptions& opt, const at::Tensor& mean, const at::Tensor& std) {
  const ClassMap cm = class_map(opt.classes);
  if (mean.defined() != std.defined() ||
      (mean.defined() && (mean.numel() != 3 || std.numel() != 3)))
    fail(
        "CIFAR-10 test split: the training mean and std must both have 3 elements or both be "
        "undefined");
  const std::string path = in_dir(opt.dir, "test_batch.bin");
  const std::string hint =
      fs::exists(in_dir(opt.dir, "test_batch.first1000.bin"))
          ? "only the partial test_batch.first1000.bin is present, which is deliberately not "
            "used; run data/download_cifar10.sh for the full test split"
          : "run data/download_cifar10.sh for the test split";
  const Raw raw = read_split({path}, hint);
  const std::vector<int64_t> rows = rows_of_classes(raw, cm);
  if (rows.empty()) fail("data.classes: {} holds no test samples of {}", path, labels_text(cm));
  const at::Tensor m = mean.defined() ? mean.to(at::kFloat).contiguous() : at::Tensor();
  const at::Tensor s = std.defined() ? std.to(at::kFloat).contiguous() : at::Tensor();
  Dataset d = assemble(raw, rows, cm, make_lut(m, s));
  d.mean = m;
  d.std = s;
  d.description =
      fmt::format("CIFAR-10 test ({}): {} samples of {}, {}", opt.dir, d.size(), labels_text(cm),
                  m.defined() ? "normalised with the training mean/std" : "pixels/255");
  return d;
}

std::string check_cifar10_dir(const std::string& dir) {
  if (!fs::is_directory(dir)) fail("{}: not a directory ({})", dir, kTrainHint);
  const std::string sums_path = in_dir(dir, "SHA256SUMS");
  const bool have_sums = fs::exists(sums_path);
  std::map<std::string, std::string> sums;
  if (have_sums) sums = read_sha256sums(sums_path);
  // Files listed in SHA256SUMS keep their bytes here and are hashed at the end, in parallel.
  std::vector<Listed> listed;

  std::string out = fmt::format("CIFAR-10 directory {}\n", dir);
  // Validates one file; returns its per-class counts.
  auto scan = [&](const std::string& name, const std::string& hint) {
    const std::string path = in_dir(dir, name);
    const int64_t n = record_count(path, hint);
    std::string bytes(static_cast<size_t>(n * kRecord), '\0');
    auto* data = reinterpret_cast<unsigned char*>(bytes.data());
    read_exact(path, data, n * kRecord);
    check_labels(path, data, n);
    std::vector<int64_t> counts(10, 0);
    for (int64_t r = 0; r < n; ++r) ++counts[data[r * kRecord]];
    auto it = sums.find(name);
    if (it != sums.end()) {
      listed.push_back({path, it->second, std::move(bytes)});
      sums.erase(it);
    }
    return counts;
  };
  auto line = [&](const std::string& name, const std::vector<int64_t>& counts,
                  const std::string& note) {
    int64_t n = 0;
    for (auto c : counts) n += c;
    out += fmt::format("  {:<26}{:>6} records, per class {}{}\n", name, n,
                       class_counts_text(counts), note);
  };

  std::vector<int64_t> total(10, 0);
  for (int k = 1; k <= 5; ++k) {
    const std::string name = "data_batch_" + std::to_string(k) + ".bin";
    const auto counts = scan(name, kTrainHint);
    for (int c = 0; c < 10; ++c) total[c] += counts[c];
    int64_t n = 0;
    for (auto c : counts) n += c;
    line(name, counts, n == 10000 ? "" : " (the official file holds 10000)");
  }
  int64_t train_n = 0;
  for (auto c : total) train_n += c;
  line("training set", total, train_n == 50000 ? "" : " (smaller than the official 50000)");

  if (fs::exists(in_dir(dir, "test_batch.bin")))
    line("test_batch.bin", scan("test_batch.bin", ""), "");
  else
    out += fmt::format("  {:<26}missing: optional, training reads data_batch_1..5 only\n",
                       "test_batch.bin");
  if (fs::exists(in_dir(dir, "test_batch.first1000.bin")))
    line("test_batch.first1000.bin", scan("test_batch.first1000.bin", ""),
         " (partial test copy; the loader does not use it)");

  if (!have_sums) {
    out += fmt::format("  {:<26}absent: checksums not verified (sizes and labels are)\n",
                       "SHA256SUMS");
    return out;
  }
  return out + verify_sums(dir, sums_path, sums, std::move(listed));
}

}  // namespace ng
