// The rank-level pieces of a distributed escape sweep: the split of the runs, the settings check
// and the framing of run texts for one all_gather_strings.
#include "src/escape/sweep_ranks.h"

#include <fmt/format.h>
#include <unistd.h>

#include <filesystem>
#include <random>
#include <sstream>

#include "src/core/error.h"
#include "src/dist/dist.h"
#include "src/io/files.h"
#include "src/io/json.h"

namespace ng::sweep_ranks {

std::vector<int64_t> share(const std::vector<int64_t>& todo, int64_t group, int rank, int world) {
  if (group < 1) fail("internal: escape sweep groups of {} runs", group);
  std::vector<int64_t> mine;
  int64_t groups = 0, last = -1;  // todo is ascending: a group's runs are neighbours
  for (int64_t r : todo) {
    if (r / group != last) {
      last = r / group;
      ++groups;
    }
    if ((groups - 1) % world == rank) mine.push_back(r);
  }
  return mine;
}

std::vector<int64_t> share(const std::vector<int64_t>& todo, int64_t group) {
  return share(todo, group, dist().rank, dist().world);
}

std::vector<std::vector<int64_t>> in_rounds(const std::vector<int64_t>& mine, int64_t group,
                                            int64_t per_round, int64_t max_rounds) {
  std::vector<int64_t> starts;  // index in `mine` of each group's first run
  for (size_t j = 0; j < mine.size(); ++j)
    if (j == 0 || mine[j] / group != mine[j - 1] / group) starts.push_back(static_cast<int64_t>(j));
  const auto groups = static_cast<int64_t>(starts.size());
  if (groups == 0) return {};
  const int64_t rounds =
      std::max<int64_t>(1, std::min(max_rounds, groups / std::max<int64_t>(per_round, 1)));
  std::vector<std::vector<int64_t>> out;
  for (int64_t k = 0; k < rounds; ++k) {
    // Groups [k groups / rounds, (k + 1) groups / rounds): sizes differ by at most one.
    const int64_t first = k * groups / rounds, last = (k + 1) * groups / rounds;
    const int64_t from = starts[first];
    const int64_t to = last < groups ? starts[last] : static_cast<int64_t>(mine.size());
    out.emplace_back(mine.begin() + from, mine.begin() + to);
  }
  return out;
}

std::vector<std::vector<int64_t>> padded_to_every_rank(std::vector<std::vector<int64_t>> rounds) {
  const int64_t most = max_over_ranks(static_cast<int64_t>(rounds.size()));
  // One exchange at least: rank 0's reused runs reach the others in it.
  rounds.resize(static_cast<size_t>(std::max<int64_t>(most, 1)));
  return rounds;
}

std::string runs_text(const std::vector<int64_t>& runs) {
  std::string s;
  for (int64_t r : runs) s += fmt::format("{} ", r);
  return s;
}

std::vector<int64_t> runs_from_text(const std::string& text) {
  std::istringstream in(text);
  std::vector<int64_t> runs;
  for (int64_t r = 0; in >> r;) runs.push_back(r);
  return runs;
}

void require_same_settings(const std::string& settings_json) {
  if (!dist().active()) return;
  const std::vector<std::string> all = all_gather_strings(settings_json);
  for (size_t r = 1; r < all.size(); ++r)
    if (all[r] != all[0])
      fail(
          "escape sweep: rank {} made other settings than rank 0 ({} differs); every rank needs "
          "the same run directory, data and options",
          r, first_difference(json::parse(all[r]), json::parse(all[0])));
}

bool sees_roots_directory(const std::string& dir, bool* every_rank) {
  if (every_rank) *every_rank = true;
  if (!dist().active()) return true;
  namespace fs = std::filesystem;
  const std::string marker = (fs::path(dir) / ".noisegeom-rank0").string();
  const std::string token = decided_by_root([&] {
    std::random_device rd;
    const std::string t = fmt::format("{:08x}{:08x}-{}", rd(), rd(), ::getpid());
    write_file_atomic(marker, t);
    return t;
  });
  std::error_code ec;
  bool sees = false;
  if (fs::is_regular_file(marker, ec)) {
    try {
      sees = read_file(marker) == token;
    } catch (const Error&) {  // gone or unreadable: not rank 0's directory as far as we know
    }
  }
  const bool some_do_not = on_any_rank(!sees);  // every rank has looked before the token goes
  if (dist().is_root()) fs::remove(marker, ec);
  if (every_rank) *every_rank = !some_do_not;
  return sees;
}

std::vector<RunText> gather(const std::vector<RunText>& mine) {
  if (!dist().active()) return mine;
  // "RUN FLAG BYTES\n" then the bytes, for each run: the texts may hold any character.
  std::string framed;
  for (const RunText& t : mine)
    framed += fmt::format("{} {} {}\n", t.run, t.reused ? 1 : 0, t.text.size()) + t.text;
  std::vector<RunText> all;
  for (const std::string& part : all_gather_strings(framed)) {
    size_t pos = 0;
    while (pos < part.size()) {
      const size_t eol = part.find('\n', pos);
      std::istringstream head(part.substr(pos, eol - pos));
      RunText t;
      int reused = 0;
      size_t bytes = 0;
      head >> t.run >> reused >> bytes;
      if (eol == std::string::npos || !head || eol + 1 + bytes > part.size())
        fail("escape sweep: a damaged run text from another rank");
      t.reused = reused != 0;
      t.text = part.substr(eol + 1, bytes);
      pos = eol + 1 + bytes;
      all.push_back(std::move(t));
    }
  }
  return all;
}

}  // namespace ng::sweep_ranks
