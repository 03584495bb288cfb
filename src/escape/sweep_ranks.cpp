// The rank-level pieces of a distributed escape sweep: the split of the runs, the settings check
// and the framing of run texts for one all_gather_strings.
#include "src/escape/sweep_ranks.h"

#include <fmt/format.h>

#include <sstream>

#include "src/core/error.h"
#include "src/dist/dist.h"
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
