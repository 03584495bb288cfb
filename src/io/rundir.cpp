// Run directories: their folder (or, in no-write mode, nothing), the names of their files,
// analysis names, the crash-safe CSV log, and the time helpers of progress lines.
#include "src/io/rundir.h"

#include <fmt/format.h>

#include <algorithm>
#include <cctype>
#include <chrono>
#include <cmath>
#include <ctime>
#include <filesystem>
#include <sstream>

#include "src/core/error.h"
#include "src/io/files.h"

namespace fs = std::filesystem;

namespace ng {

RunDir::RunDir(std::string root, bool writes) : root_(std::move(root)), writes_(writes) {
  if (!writes_) return;
  std::error_code ec;
  fs::create_directories(root_, ec);
  if (ec) fail("{}: cannot create the run directory ({})", root_, ec.message());
}

std::string RunDir::path(const std::string& name) const {
  return (fs::path(root_) / name).string();
}

void RunDir::write(const std::string& name,
                   const std::function<void(const std::string&)>& write) const {
  if (writes_) write(path(name));
}

std::optional<CsvLog> RunDir::log(const std::string& name, const std::string& header,
                                  int64_t keep_until_step) const {
  if (!writes_) return std::nullopt;
  return std::optional<CsvLog>(std::in_place, path(name), header, keep_until_step);
}

std::string RunPaths::file(const char* name) const {
  return (fs::path(root) / name).string();
}

std::string RunPaths::spectrum(const std::string& name) const {
  return (fs::path(root) / run_files::kSpectra / name).string();
}

std::string RunPaths::escape(const std::string& name) const {
  return (fs::path(root) / run_files::kEscapes / name).string();
}

namespace {
std::vector<std::string> subfolders(const fs::path& dir) {
  std::vector<std::string> out;
  std::error_code ec;
  if (!fs::is_directory(dir, ec)) return out;
  for (const auto& e : fs::directory_iterator(dir, ec)) {
    const std::string name = e.path().filename().string();
    // Half-built analyses (NAME.tmp.PID) are not analyses.
    if (e.is_directory() && name.find(".tmp.") == std::string::npos &&
        name.find(".old.") == std::string::npos)
      out.push_back(name);
  }
  std::sort(out.begin(), out.end());
  return out;
}
}  // namespace

std::vector<std::string> RunPaths::spectrum_names() const {
  return subfolders(fs::path(root) / run_files::kSpectra);
}

std::vector<std::string> RunPaths::escape_names() const {
  return subfolders(fs::path(root) / run_files::kEscapes);
}

void check_analysis_name(const std::string& name, const std::string& option) {
  bool ok = !name.empty() && name.size() <= 100 && name[0] != '.';
  for (char c : name)
    ok = ok && (std::isalnum(static_cast<unsigned char>(c)) || c == '.' || c == '_' || c == '-');
  if (!ok)
    fail(
        "{}: '{}' is not a usable name (letters, digits, '.', '_' and '-', not starting with "
        "'.')",
        option, name);
}

CsvLog::CsvLog(const std::string& path, const std::string& header, int64_t keep_until_step)
    : path_(path) {
  if (keep_until_step >= 0 && fs::exists(path)) {
    std::string text = read_file(path);
    // A row cut short by a crash has no newline yet: it is dropped with the later ones.
    text.erase(text.find_last_of('\n') == std::string::npos ? 0 : text.find_last_of('\n') + 1);
    std::istringstream in(text);
    std::string line, kept;
    bool first = true;
    while (std::getline(in, line)) {
      if (line.empty()) continue;
      if (first) {
        first = false;
        kept += line + "\n";
        continue;
      }
      const std::string step = line.substr(0, line.find(','));
      char* end = nullptr;
      const long long s = std::strtoll(step.c_str(), &end, 10);
      if (*end == '\0' && s <= keep_until_step) kept += line + "\n";
    }
    write_file_atomic(path, kept);
  }
  const bool fresh = !fs::exists(path) || fs::file_size(path) == 0;
  out_.open(path, std::ios::app);
  if (!out_) fail("{}: cannot open for writing", path);
  if (fresh) {
    row(header);
  } else {
    std::istringstream in(read_file(path));
    std::string line;
    while (std::getline(in, line)) data_rows_ += !line.empty();
  }
}

void CsvLog::row(const std::string& line) {
  out_ << line << '\n';
  out_.flush();
  ++data_rows_;
  if (!out_) fail("{}: write failed", path_);
}

double seconds_since(std::chrono::steady_clock::time_point t0) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

std::string format_duration(double s) {
  if (!std::isfinite(s) || s < 0) return "?";
  const auto t = static_cast<int64_t>(s + 0.5);
  if (t >= 3600) return fmt::format("{}h{:02d}m", t / 3600, (t % 3600) / 60);
  if (t >= 60) return fmt::format("{}m{:02d}s", t / 60, t % 60);
  return fmt::format("{}s", t);
}

std::string iso_time_now() {
  const std::time_t t = std::chrono::system_clock::to_time_t(std::chrono::system_clock::now());
  std::tm tm{};
  gmtime_r(&t, &tm);
  char buf[32];
  std::strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%SZ", &tm);
  return buf;
}

}  // namespace ng
