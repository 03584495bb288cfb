// An escape sweep over several ranks (src/dist): which runs each rank computes, and the run files'
// texts travelling to every rank, so that rank 0 writes the files a single process writes without
// a filesystem shared between machines. One process: every helper is the identity.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace ng::sweep_ranks {

// Rank `rank`'s runs of `todo` among `world` ranks: the fixed groups of `group` run indices
// ([g group, (g + 1) group), what one batched-replica task computes at once, group 1 without
// replicas) that hold a run of `todo`, every world-th one starting at the rank's, with all their
// runs of `todo`. Whole groups: a group split between ranks is computed in full on each. Dealt out
// in turn: runs that stop at their escape are short, so this balances better than blocks.
std::vector<int64_t> share(const std::vector<int64_t>& todo, int64_t group, int rank, int world);
// This process's share under the launcher (src/dist); `todo` itself in one process.
std::vector<int64_t> share(const std::vector<int64_t>& todo, int64_t group);

// `mine` (ascending, whole groups of `group` runs) cut into consecutive rounds of at least
// `per_round` groups each, and at most `max_rounds` rounds; none when `mine` is empty.
std::vector<std::vector<int64_t>> in_rounds(const std::vector<int64_t>& mine, int64_t group,
                                            int64_t per_round, int64_t max_rounds);
// `rounds` followed by empty rounds up to the most that any rank has (collective): every rank
// then takes part in the same number of exchanges.
std::vector<std::vector<int64_t>> padded_to_every_rank(std::vector<std::vector<int64_t>> rounds);

// "3 7 12" and back: the list of runs rank 0 found still to do.
std::string runs_text(const std::vector<int64_t>& runs);
std::vector<int64_t> runs_from_text(const std::string& text);

// Fails on every rank, naming the first differing field, unless every rank made the same
// settings (a rank whose lr search or data differs would compute other runs than it claims).
void require_same_settings(const std::string& settings_json);

// Whether this rank sees rank 0's directory `dir` (the same machine, or a filesystem the
// machines share): rank 0 leaves a fresh token in it, every rank looks for that token, and rank 0
// removes it once all have looked. Collective; true in one process. `every_rank` (the same on
// all ranks): whether all of them see it.
bool sees_roots_directory(const std::string& dir, bool* every_rank = nullptr);

struct RunText {
  int64_t run = 0;
  bool reused = false;  // a file rank 0 already had, rather than a run computed now
  std::string text;     // the run file's bytes
};
// Every rank's run texts on every rank, in rank order.
std::vector<RunText> gather(const std::vector<RunText>& mine);

}  // namespace ng::sweep_ranks
