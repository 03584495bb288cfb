// Test helpers: temporary directories, synthetic CIFAR-10 files, training fixtures, the CLI.
#include "tests/testing.h"

#include <sys/wait.h>

#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <map>
#include <random>
#include <sstream>
#include <stdexcept>
#include <vector>

#include "src/io/files.h"
#include "src/training/train.h"

namespace fs = std::filesystem;

namespace ngtest {
namespace {

struct TempRoot {
  fs::path root;
  TempRoot() {
    std::string tmpl = (fs::temp_directory_path() / "noisegeom-test-XXXXXX").string();
    std::vector<char> buf(tmpl.begin(), tmpl.end());
    buf.push_back('\0');
    if (!mkdtemp(buf.data())) throw std::runtime_error("mkdtemp failed");
    root = buf.data();
  }
  ~TempRoot() {
    if (!std::getenv("NG_KEEP_TEST_FILES")) ng::remove_tree(root.string());
  }
};

TempRoot& temp_root() {
  static TempRoot r;
  return r;
}

}  // namespace

std::string temp_dir(const std::string& tag) {
  static int counter = 0;
  fs::path p = temp_root().root / (tag + "-" + std::to_string(counter++));
  fs::create_directories(p);
  return p.string();
}

void write_synthetic_cifar(const std::string& dir, int64_t per_file, uint64_t seed,
                           bool with_test) {
  fs::create_directories(dir);
  std::mt19937_64 rng(seed);
  std::uniform_int_distribution<int> noise(0, 63);
  auto write = [&](const std::string& name, int64_t records) {
    std::ofstream out(fs::path(dir) / name, std::ios::binary);
    std::vector<unsigned char> rec(3073);
    for (int64_t r = 0; r < records; ++r) {
      const int label = static_cast<int>(r % 10);
      rec[0] = static_cast<unsigned char>(label);
      for (int c = 0; c < 3; ++c)
        for (int k = 0; k < 1024; ++k) {
          // A bright stripe whose row depends on the class makes the labels learnable.
          const int row = k / 32;
          const int base = (row / 3 == label) ? 160 : 40 + 10 * c;
          rec[1 + c * 1024 + k] = static_cast<unsigned char>(base + noise(rng));
        }
      out.write(reinterpret_cast<const char*>(rec.data()), rec.size());
    }
  };
  for (int f = 1; f <= 5; ++f) write("data_batch_" + std::to_string(f) + ".bin", per_file);
  if (with_test) write("test_batch.bin", per_file);
}

int run_cli(const std::string& args, std::string* output) {
  return run_shell(quote(NG_BINARY) + " " + args, output);
}

ScopedEnv::ScopedEnv(const char* name, const char* value) : name_(name) {
  const char* old = std::getenv(name);
  had_ = old != nullptr;
  if (had_) old_ = old;
  if (value)
    setenv(name, value, 1);
  else
    unsetenv(name);
}

ScopedEnv::~ScopedEnv() {
  if (had_)
    setenv(name_.c_str(), old_.c_str(), 1);
  else
    unsetenv(name_.c_str());
}

int run_shell(const std::string& command, std::string* output) {
  const std::string cmd = command + " 2>&1";
  FILE* p = popen(cmd.c_str(), "r");
  if (!p) throw std::runtime_error("popen failed");
  std::string out;
  char buf[4096];
  size_t n;
  while ((n = fread(buf, 1, sizeof buf, p)) > 0) out.append(buf, n);
  const int status = pclose(p);
  if (output) *output = out;
  return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}

std::string real_cifar_dir() {
  const fs::path p = fs::path(NG_SOURCE_DIR) / ".." / "shared" / "data" / "cifar-10-batches-bin";
  return fs::exists(p / "data_batch_1.bin") ? fs::canonical(p).string() : "";
}

std::string quote(const std::string& text) {
  return "'" + text + "'";
}

int count_lines(const std::string& text) {
  int n = 0;
  for (char c : text) n += c == '\n';
  return n;
}

const std::string& synthetic_cifar_dir(int64_t per_file, uint64_t seed) {
  static std::map<std::pair<int64_t, uint64_t>, std::string> made;
  auto& dir = made[{per_file, seed}];
  if (dir.empty()) {
    dir = temp_dir("cifar");
    write_synthetic_cifar(dir, per_file, seed);
  }
  return dir;
}

std::string train_run(const std::string& tag, const std::string& config_yaml,
                      const std::string& then) {
  const std::string dir = temp_dir(tag);
  const std::string cfg = dir + "/config.yaml", run = dir + "/run";
  write_file(cfg, config_yaml);
  ng::TrainOptions t;
  t.config_path = cfg;
  t.out_dir = run;
  t.quiet = true;
  const ng::TrainResult r = ng::train(t);
  if (r.status != "converged" && r.status != "max_steps")
    throw std::runtime_error("training the test run failed: " + r.message);
  std::string log;
  if (!then.empty()) {
    std::string cmd = then;
    const auto at = cmd.find("{run}");
    if (at != std::string::npos) cmd.replace(at, 5, quote(run));
    if (run_cli(cmd, &log) != 0)
      throw std::runtime_error("'" + cmd + "' on the test run failed: " + log);
  }
  return run;
}

std::string copy_run(const std::string& run, const std::string& tag) {
  const std::string dst = temp_dir(tag) + "/run";
  fs::copy(run, dst, fs::copy_options::recursive);
  return dst;
}

std::vector<CsvRow> read_csv(const std::string& path, std::vector<std::string>* header) {
  std::istringstream in(read_file(path));
  auto split = [](const std::string& line) {
    std::vector<std::string> out;
    std::stringstream ss(line);
    std::string item;
    while (std::getline(ss, item, ',')) out.push_back(item);
    // A trailing empty cell ("a,b,") is a cell too.
    if (!line.empty() && line.back() == ',') out.emplace_back();
    return out;
  };
  std::string line;
  std::vector<std::string> head;
  std::vector<CsvRow> rows;
  if (std::getline(in, line)) head = split(line);
  while (std::getline(in, line)) {
    if (line.empty()) continue;
    const auto cells = split(line);
    CsvRow row;
    for (size_t k = 0; k < head.size() && k < cells.size(); ++k) row[head[k]] = cells[k];
    rows.push_back(row);
  }
  if (header) *header = head;
  return rows;
}

std::string read_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

void write_file(const std::string& path, const std::string& text) {
  std::ofstream(path, std::ios::binary) << text;
}

bool python_has(const std::string& module) {
  return std::system(("/usr/bin/python3 -c 'import " + module + "' >/dev/null 2>&1").c_str()) == 0;
}

}  // namespace ngtest
