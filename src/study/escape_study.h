// Named escape sweeps of a run: RUN/escapes/NAME/ holds N SGD or GD trajectories from theta*
// tracked along the eigenvectors of one named spectrum (computed first when missing), with the
// learning rate given, the paper's reference, or searched (a search is reused while its settings
// hold). With options.energy the loss energies X_t, Y_t, D_{t,1} are logged with G over the
// spectrum's own samples (its samples.csv), so that u_1 is an eigenvector of that G. Re-running the
// same request computes only the missing runs; other settings under the same name are refused,
// naming the setting.
#pragma once

#include <functional>
#include <string>
#include <vector>

#include "src/escape/escape.h"
#include "src/io/json.h"
#include "src/study/study.h"

namespace ng {

struct EscapeRequest {
  std::string name;                         // "": the optimizer's name (sgd, gd)
  std::string spectrum = kDefaultSpectrum;  // the spectrum whose eigenvectors are followed
  // The library's options with the study's meaning of 0: runs 0 -> default_escape_runs(optimizer),
  // lr 0 -> searched (--lr auto), batch 0 -> the run's train.batch_size.
  EscapeOptions options;
  bool ks_given = false;  // given ks must exist in the spectrum; default ones are clipped to K
  // lr = the paper's reference from the spectrum (escape_lr_reference: 1.2/|G|_F for SGD, which
  // must then be exact, or 4/(lambda_1 + lambda_2) for GD) instead of options.lr or a search.
  bool lr_paper = false;
  std::string sweep_name() const;
};

// Checks names and options without touching any file (recipes are checked before training).
void validate(const EscapeRequest& r);

struct EscapeOutcome {
  std::string dir;     // RUN/escapes/NAME
  json record;         // result.json as written
  int64_t reused = 0;  // finished runs found on disk
  int64_t computed = 0;
};

// Progress lines go to stderr unless ctx.quiet.
EscapeOutcome run_escape_study(const std::string& run_dir, const EscapeRequest& r,
                               const StudyContext& ctx);

// Median over runs of r_k/|p_k| at each run's escape (its first point past the threshold, or its
// last finite point when it did not escape), one per k; the number Figure 6 compares.
std::vector<double> median_ratio_at_escape(const std::vector<RunResult>& runs, double threshold,
                                           size_t nk);

}  // namespace ng
