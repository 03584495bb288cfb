// The spectrum computation: operators over the chosen samples, the eigensolver, the alignment
// metrics; progress lines on stderr. Nothing here reads or writes a spectrum directory.
#include "src/spectrum/spectrum.h"

#include <ATen/ATen.h>
#include <c10/core/GradMode.h>
#include <fmt/format.h>
#include <fmt/ranges.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <filesystem>
#include <memory>
#include <set>

#include "models/params.h"
#include "src/core/dtypes.h"
#include "src/core/error.h"
#include "src/core/memory.h"
#include "src/core/random.h"
#include "src/curvature/curvature.h"
#include "src/curvature/linear_operator.h"
#include "src/dist/dist.h"
#include "src/dist/sharded_operator.h"
#include "src/eigen/eigensolver.h"
#include "src/io/rundir.h"
#include "src/metrics/alignment.h"
#include "src/training/train.h"

namespace fs = std::filesystem;

namespace ng {

const std::vector<std::string> kSpectrumSolvers = {"auto", "gram", "lanczos"};
const std::vector<std::string> kSpectrumThetas = {"trained", "random", "init"};
const std::vector<std::string> kSpectrumResiduals = {"explicit", "krylov"};

namespace {

using Clock = std::chrono::steady_clock;

// Long Lanczos runs print where they are, so that a user can tell slow from stuck.
class ProgressOperator : public LinearOperator {
 public:
  ProgressOperator(LinearOperator& inner, std::string what, bool quiet)
      : inner_(inner), what_(std::move(what)), quiet_(quiet), t0_(Clock::now()), last_(t0_) {}
  int64_t dim() const override { return inner_.dim(); }
  at::TensorOptions options() const override { return inner_.options(); }

 protected:
  at::Tensor apply_impl(const at::Tensor& v) override {
    at::Tensor r = inner_.apply(v);
    if (!quiet_ && seconds_since(last_) >= 10) {
      last_ = Clock::now();
      fmt::print(stderr, "noisegeom spectrum: {} lanczos | matvecs {} | {:.1f}s\n", what_,
                 matvecs(), seconds_since(t0_));
    }
    return r;
  }

 private:
  LinearOperator& inner_;
  std::string what_;
  bool quiet_;
  Clock::time_point t0_, last_;
};

void check_choice(const std::string& value, const std::vector<std::string>& choices,
                  const char* option) {
  if (std::find(choices.begin(), choices.end(), value) == choices.end())
    fail("{}: expected {}, got '{}'", option, fmt::format("{}", fmt::join(choices, " or ")), value);
}

bool has(const std::vector<MatrixKind>& v, MatrixKind m) {
  return std::find(v.begin(), v.end(), m) != v.end();
}

// Upper bound on the rank of each matrix over b samples with C outputs and p parameters, and why.
int64_t rank_bound(MatrixKind m, int64_t b, int64_t c, int64_t p, std::string* why) {
  switch (m) {
    case MatrixKind::G:
      *why = fmt::format("b*C = {}*{} samples x outputs (p = {})", b, c, p);
      return std::min(b * c, p);
    case MatrixKind::Sigma:
      *why = fmt::format("b = {} samples (one gradient each)", b);
      return std::min(b, p);
    case MatrixKind::Sigma0:
      *why = fmt::format("b - 1 = {} (centred gradients of {} samples)", b - 1, b);
      return std::min(b - 1, p);
    default:
      *why = fmt::format("p = {} parameters", p);
      return p;
  }
}

EigenOptions eigen_options(const SpectrumOptions& opt) {
  EigenOptions eo;
  eo.k = opt.k;
  eo.ncv = opt.ncv;
  eo.maxit = opt.maxit;
  eo.tol = opt.tol;
  eo.seed = opt.seed;
  eo.residuals = opt.residuals;
  return eo;
}

Eigenpairs lanczos_with_progress(LinearOperator& op, const std::string& name,
                                 const SpectrumOptions& opt, bool quiet) {
  ProgressOperator prog(op, name, quiet);
  return lanczos_top_k(prog, eigen_options(opt));
}

// The residual check and the closing line, whichever solver ran.
void check_pairs(Eigenpairs& e, const std::string& name, const SpectrumOptions& opt,
                 const std::string& solver, bool quiet, bool keep_vectors) {
  const double limit = residual_limit(opt.dtype);
  if (!(e.max_residual() < limit))
    fail(
        "{}: max residual {:.3g} of the top-{} eigenpairs is not below {:.0e} ({}, {}); lower "
        "--tol{}",
        name, e.max_residual(), opt.k, limit, dtype_names().name(opt.dtype), solver,
        opt.dtype == at::kFloat ? " or use --dtype float64" : "");
  if (!quiet)
    fmt::print(stderr,
               "noisegeom spectrum: {} done | lambda_1 {:.6g} | max residual {:.2e} | "
               "matvecs {} | {:.1f}s\n",
               name, e.values.front(), e.max_residual(), e.matvecs, e.seconds);
  if (!keep_vectors) e.vectors = at::Tensor();
}

// The samples the operators use, checked against what the matrices' ranks allow.
struct Samples {
  at::Tensor x, y;
};

Samples choose_samples(const LoadedRun& run, SpectrumOptions& opt, SpectrumResult& r) {
  const std::string cfg_path = RunPaths{run.dir}.file(run_files::kConfig);
  const int64_t n = run.data.size();
  const bool per_sample = opt.estimator == Estimator::PerSample;
  if (opt.samples > n)
    fail("--samples: {} samples asked for, but {} holds {} training samples", opt.samples, cfg_path,
         n);
  const int64_t b = opt.samples > 0 ? opt.samples : per_sample ? std::min(2 * opt.k, n) : n;
  opt.samples = b;
  if (b < 2) fail("--samples: need at least 2 samples, got {}", b);
  std::vector<MatrixKind> needed = opt.matrices;
  for (MatrixKind m : {MatrixKind::Sigma, MatrixKind::G})
    if (!has(needed, m)) needed.insert(needed.begin(), m);
  for (MatrixKind m : needed) {
    std::string why;
    const int64_t rank = rank_bound(m, b, r.outputs, r.p, &why);
    if (opt.k > rank)
      fail(
          "--k: {} eigenpairs of {} asked for, but its rank is at most {} ({}); lower --k or "
          "raise --samples",
          opt.k, matrix_names().name(m), rank, why);
  }
  if (opt.k >= r.p)
    fail("--k: {} eigenpairs asked for, but the model has only p = {} parameters", opt.k, r.p);
  r.positions = random_subset(n, b, opt.seed);
  r.samples_csv = samples_csv(run.data, r.positions);
  const at::Tensor idx = at::tensor(r.positions, at::TensorOptions().dtype(at::kLong));
  return {run.data.x.index_select(0, idx), run.data.targets.index_select(0, idx)};
}

// The run's model at theta*, at theta ~ N(0, I) (Figure 2b: the same draw on every machine for a
// given seed), or at a fresh draw of the model's own initialisation (Figure 1: a random network
// as one would start training it; with the config's seed it is the run's initial theta); fills
// the parameter description of `r`.
void place_theta(LoadedRun& run, const SpectrumOptions& opt, SpectrumResult& r) {
  ParameterLayout layout = ParameterLayout::of(*run.model);
  r.p = layout.size;
  for (size_t j = 0; j < layout.names.size(); ++j) {
    r.parameter_names.push_back(layout.names[j]);
    r.parameter_numels.push_back(layout.tensors[j].numel());
  }
  if (opt.theta == "trained") return;
  at::NoGradGuard no_grad;
  if (opt.theta == "init") {
    // As train() and load_run() build the model: the global generator seeded, then make_model.
    at::manual_seed(opt.seed);
    const int64_t input_dim = run.data.x.dim() == 2 ? run.data.x.size(1) : 0;
    const Net fresh = make_model(model_spec_from_config(run.cfg, run.data.num_classes, input_dim));
    const ParameterLayout drawn = ParameterLayout::of(*fresh);
    for (size_t j = 0; j < drawn.tensors.size(); ++j) layout.tensors[j].copy_(drawn.tensors[j]);
    return;
  }
  const at::Tensor v = seeded_normal(r.p, opt.seed, at::TensorOptions().dtype(at::kDouble));
  const auto parts = layout.split(v);
  for (size_t j = 0; j < parts.size(); ++j) layout.tensors[j].copy_(parts[j]);
}

// What differs between one process (LocalSource) and the exact estimator over several ranks
// (ShardedSource), behind what run_flow asks of a source S:
// - S::Operator& make(m) / derive(from, m): matrix m's operator, fresh or from `from`'s rows
//   where the source can (its progress line said);
// - solver(op, m) / gram(op): the solver allowed for op (--solver checked), the Gram solver;
// - alignment(g, sigma, eig): the metrics along G's eigenvectors;
// - storage(op), rows_method(op), where(): the results' labels, the progress lines' " over N
//   ranks"; matvecs(): every product of its operators so far.
// An operator's products, its probe's included, as one process counts them: a sharded operator's
// own count leaves out the probe of its rank's local operator.
int64_t products(const CurvatureOperator& op) {
  return op.matvecs();
}
int64_t products(const ShardedOperator& op) {
  return op.local().matvecs();
}

template <class Op>
class OperatorSource {
 public:
  using Operator = Op;
  const std::string& where() const { return where_; }
  int64_t matvecs() const {
    int64_t n = 0;
    for (const auto& op : ops_) n += products(*op);
    return n;
  }

 protected:
  OperatorSource(const LoadedRun& run, const Samples& s, const CurvatureOptions& co,
                 const SpectrumOptions& opt, bool quiet, std::string where)
      : model_(run.model), s_(s), co_(co), opt_(opt), quiet_(quiet), where_(std::move(where)) {}
  CurvatureOptions options_of(MatrixKind m) const {
    CurvatureOptions o = co_;
    o.matrix = m;
    return o;
  }
  // Keeps `op` alive for the flow and says what it is; `storage`: how it holds its samples.
  Op& keep(std::unique_ptr<Op> op, MatrixKind m, Clock::time_point t, const std::string& storage) {
    ops_.push_back(std::move(op));
    if (!quiet_)
      fmt::print(stderr,
                 "noisegeom spectrum: {} operator ({}, {} samples{}, {}, {}) | matvecs {} | "
                 "{:.1f}s\n",
                 matrix_names().name(m), estimator_names().name(opt_.estimator), opt_.samples,
                 where_, dtype_names().name(opt_.dtype), storage, products(*ops_.back()),
                 seconds_since(t));
    return *ops_.back();
  }

  Net model_;
  const Samples& s_;
  CurvatureOptions co_;
  const SpectrumOptions& opt_;
  bool quiet_;

 private:
  std::string where_;
  std::vector<std::unique_ptr<Op>> ops_;
};

// One process (or the per-sample estimator, which every rank runs alike: it is cheap): rows
// where they fit, Sigma and Sigma0 derived from G's, either solver, exact metrics from rows.
class LocalSource : public OperatorSource<CurvatureOperator> {
 public:
  LocalSource(const LoadedRun& run, const Samples& s, const CurvatureOptions& co,
              const SpectrumOptions& opt, bool quiet)
      : OperatorSource(run, s, co, opt, quiet, "") {}

  CurvatureOperator& make(MatrixKind m) {
    const auto t = Clock::now();
    auto op = std::make_unique<CurvatureOperator>(model_, s_.x, s_.y, options_of(m));
    const std::string storage = storage_line(*op, m);
    return keep(std::move(op), m, t, storage);
  }
  // Sigma and Sigma0 on G's samples: from G's rows or Jacobians where it holds them.
  CurvatureOperator& derive(const CurvatureOperator& from, MatrixKind m) {
    if (!from.has_rows() || m == MatrixKind::Hessian) return make(m);
    const auto t = Clock::now();
    auto op = std::make_unique<CurvatureOperator>(from, m);
    const std::string storage = storage_line(*op, m);
    return keep(std::move(op), m, t, storage);
  }
  std::string solver(CurvatureOperator& op, MatrixKind m) const {
    // G's exact metrics need K = B B^T / b whenever there are fewer rows than parameters
    // (tr G^2 = |K|_F^2): formed first, it leaves the Gram solver only its eigh.
    if (m == MatrixKind::G && op.has_rows() && op.rows().size(0) <= op.dim()) op.gram_matrix();
    const std::string solver =
        opt_.solver != "auto" ? opt_.solver : choose_solver(op, eigen_options(opt_));
    if (solver == "gram" && !op.has_rows())
      fail(
          "--solver gram: {} has no per-sample rows ({} estimator, {} samples: over --row-budget "
          "{:.2f} GiB); raise --row-budget or use --solver lanczos",
          matrix_names().name(m), estimator_names().name(opt_.estimator), op.num_samples(),
          gib(opt_.row_budget));
    return solver;
  }
  Eigenpairs gram(CurvatureOperator& op) const { return gram_top_k(op, opt_.k); }
  Alignment alignment(CurvatureOperator& g, CurvatureOperator& sigma, const Eigenpairs& e) const {
    return compute_alignment(g, sigma, e, {opt_.probes, opt_.seed});
  }
  std::string storage(const CurvatureOperator& op) const { return op.storage(); }
  std::string rows_method(const CurvatureOperator& op) const {
    return op.has_rows() ? rows_method_names().name(op.rows_method()) : std::string();
  }

 private:
  static double gib(int64_t bytes) { return static_cast<double>(bytes) / (1 << 30); }
  std::string storage_line(const CurvatureOperator& op, MatrixKind m) const {
    if (op.has_rows())
      return fmt::format(
          "{} rows, {:.2f} GiB, {}{}", op.rows().size(0),
          gib(op.rows().numel() * op.rows().element_size()),
          rows_method_names().name(op.rows_method()),
          op.rows_threads() > 1 ? fmt::format(" on {} threads", op.rows_threads()) : "");
    if (opt_.estimator == Estimator::Exact && m != MatrixKind::Hessian)
      return fmt::format("streamed: rows over --row-budget {:.2f} GiB", gib(opt_.row_budget));
    return "streamed";
  }
};

// Several ranks with the exact estimator where one process would stream: every operator is
// sharded over the ranks, and every rank runs the same Lanczos (same seed, same all-reduced
// products), so all hold the same eigenpairs. The metrics are Hutchinson's, as one process's
// streamed operators give them; the Gram solver needs every sample's rows in one process.
class ShardedSource : public OperatorSource<ShardedOperator> {
 public:
  ShardedSource(const LoadedRun& run, const Samples& s, const CurvatureOptions& co,
                const SpectrumOptions& opt, bool quiet)
      : OperatorSource(run, s, streamed(co), opt, quiet,
                       fmt::format(" over {} ranks", dist().world)) {
    if (opt.solver == "gram") gram_refused();
  }

  ShardedOperator& make(MatrixKind m) {
    const auto t = Clock::now();
    return keep(std::make_unique<ShardedOperator>(model_, s_.x, s_.y, options_of(m)), m, t,
                "sharded");
  }
  // The rows that another operator could be derived from never meet in one process.
  ShardedOperator& derive(const ShardedOperator&, MatrixKind m) { return make(m); }
  std::string solver(ShardedOperator&, MatrixKind) const { return "lanczos"; }
  Eigenpairs gram(ShardedOperator&) const { gram_refused(); }
  Alignment alignment(ShardedOperator& g, ShardedOperator& sigma, const Eigenpairs& e) const {
    return sharded_alignment(g, sigma, e, {opt_.probes, opt_.seed});
  }
  std::string storage(const ShardedOperator&) const { return "sharded"; }
  std::string rows_method(const ShardedOperator&) const { return ""; }

 private:
  static CurvatureOptions streamed(CurvatureOptions co) {
    co.row_budget = 0;
    co.keep_jacobian = false;
    return co;
  }
  [[noreturn]] static void gram_refused() {
    fail(
        "--solver gram: the Gram solver needs every sample's rows in one process; with "
        "WORLD_SIZE={} the exact estimator runs Lanczos on sharded products (use --solver "
        "lanczos or auto, or run one process)",
        dist().world);
  }
};

template <class Source>
MatrixSpectrum solve(Source& src, typename Source::Operator& op, MatrixKind m,
                     const SpectrumOptions& opt, bool quiet, bool keep_vectors) {
  const std::string& name = matrix_names().name(m);
  const std::string solver = src.solver(op, m);
  if (!quiet)
    fmt::print(stderr, "noisegeom spectrum: {} top-{} by {}{} ...\n", name, opt.k, solver,
               src.where());
  Eigenpairs e = solver == "gram" ? src.gram(op) : lanczos_with_progress(op, name, opt, quiet);
  check_pairs(e, name, opt, solver, quiet, keep_vectors);
  return {m, std::move(e), src.storage(op), src.rows_method(op)};
}

// The one flow, whichever source makes the operators: G's top-k with its eigenvectors, Sigma on
// G's samples, the alignment along G's eigenvectors, then the other requested matrices.
template <class Source>
void run_flow(Source& src, const SpectrumOptions& opt, bool quiet, SpectrumResult& r) {
  auto& g = src.make(MatrixKind::G);
  r.spectra.push_back(solve(src, g, MatrixKind::G, opt, quiet, true));
  auto& sigma = src.derive(g, MatrixKind::Sigma);
  const auto t = Clock::now();
  r.alignment = src.alignment(g, sigma, r.spectra[0].pairs);
  if (!quiet)
    fmt::print(stderr, "noisegeom spectrum: alignment ({}{}) | mu {:.4g} | {:.1f}s\n",
               r.alignment.method, src.where(), r.alignment.mu.value, seconds_since(t));
  for (MatrixKind m : opt.matrices) {
    if (m == MatrixKind::G) continue;
    auto& op = m == MatrixKind::Sigma ? sigma : src.derive(sigma, m);
    r.spectra.push_back(solve(src, op, m, opt, quiet, false));
  }
  r.matvecs = src.matvecs();
}

}  // namespace

double residual_limit(at::ScalarType dtype) {
  return dtype == at::kFloat ? 1e-3 : 1e-6;
}

void validate_spectrum_options(const SpectrumOptions& opt) {
  if (opt.k < 1) fail("--k: expected a positive number of eigenpairs, got {}", opt.k);
  if (opt.matrices.empty())
    fail("--matrices: expected a list such as G,Sigma,Sigma0,H, got nothing");
  for (size_t j = 0; j < opt.matrices.size(); ++j)
    if (std::find(opt.matrices.begin(), opt.matrices.begin() + j, opt.matrices[j]) !=
        opt.matrices.begin() + j)
      fail("--matrices: '{}' is listed twice", matrix_names().name(opt.matrices[j]));
  if (opt.samples < 0) fail("--samples: expected a positive number, got {}", opt.samples);
  check_choice(opt.solver, kSpectrumSolvers, "--solver");
  if (opt.row_budget < -1) fail("--row-budget: expected a size in bytes, 0 or auto");
  if (opt.solver == "gram" && opt.estimator == Estimator::Exact && opt.row_budget == 0)
    fail("--solver gram: the exact estimator has no rows with --row-budget 0");
  if (opt.solver == "gram" && has(opt.matrices, MatrixKind::Hessian))
    fail("--solver gram: H has no per-sample rows; use --solver lanczos or leave --solver out");
  if (opt.dtype != at::kFloat && opt.dtype != at::kDouble)
    fail("--dtype: expected float32 or float64");
  check_choice(opt.theta, kSpectrumThetas, "--theta");
  if (opt.batch_size < 1) fail("--batch-size: expected a positive number, got {}", opt.batch_size);
  if (opt.ncv < 0 || (opt.ncv > 0 && opt.ncv <= opt.k))
    fail("--ncv: expected more than k = {} basis vectors, got {}", opt.k, opt.ncv);
  if (opt.tol < 0 || !std::isfinite(opt.tol))
    fail("--tol: expected a positive tolerance, got {}", opt.tol);
  if (opt.maxit < 1) fail("--maxit: expected a positive number, got {}", opt.maxit);
  if (opt.probes < 2) fail("--probes: expected at least 2 Hutchinson probes, got {}", opt.probes);
  check_choice(opt.residuals, kSpectrumResiduals, "--residuals");
}

SpectrumResult compute_spectrum(LoadedRun& run, const SpectrumOptions& options, bool quiet) {
  const auto t0 = Clock::now();
  validate_spectrum_options(options);
  SpectrumOptions opt = options;
  const RunPaths paths{run.dir};
  if (opt.tol == 0) opt.tol = opt.dtype == at::kDouble ? 1e-10 : 1e-6;

  SpectrumResult r;
  r.run_dir = run.dir;
  r.n_train = run.data.size();
  r.outputs = run.data.targets.size(1);
  r.device = run.device;
  place_theta(run, opt, r);
  const Samples s = choose_samples(run, opt, r);

  CurvatureOptions co;
  co.loss =
      loss_names().parse(run.cfg.s("train.loss"), paths.file(run_files::kConfig) + ": train.loss");
  co.estimator = opt.estimator;
  co.batch_size = opt.batch_size;
  co.dtype = opt.dtype;
  co.device = run.torch_device();
  co.probe_seed = opt.seed;
  if (opt.row_budget < 0) opt.row_budget = default_row_budget(co.device);
  r.row_budget = opt.row_budget;
  const bool ce = co.loss == LossKind::CrossEntropy;
  if (opt.estimator == Estimator::Exact) {
    co.row_budget = opt.row_budget;
    // Sigma's rows come from G's raw Jacobians (no second pass) when they fit beside the rows.
    co.keep_jacobian =
        ce && exact_rows_fit(opt.samples, r.outputs, r.p, opt.dtype, true, opt.row_budget);
  } else {
    co.keep_jacobian = ce;
  }
  if (!quiet)
    fmt::print(stderr, "noisegeom spectrum: {} | p = {} | theta {} | {} of {} samples | k = {}\n",
               run.dir, r.p, opt.theta, opt.samples, r.n_train, opt.k);
  // Several ranks shard the exact estimator only where one process would stream G's products:
  // where G's rows fit, every rank runs one process's route on them, so that the numbers (exact
  // metrics, the Gram solver's eigenvectors, and the escape learning-rate searches that start
  // from |G|_F) do not depend on WORLD_SIZE.
  const bool g_rows = opt.estimator == Estimator::Exact &&
                      exact_operator_holds_rows(MatrixKind::G, opt.samples, r.outputs, r.p,
                                                opt.dtype, opt.row_budget);
  r.world_size = dist().world;
  r.sharded = dist().active() && opt.estimator == Estimator::Exact && !g_rows;
  if (!quiet && dist().active() && g_rows)
    fmt::print(stderr,
               "noisegeom spectrum: G's rows fit --row-budget: each of the {} ranks builds them "
               "and runs one process's route\n",
               dist().world);
  // Memory the checks before it could not foresee (a GPU shared with other jobs, a model's
  // activations) runs out as one line naming the options that shrink it.
  const std::string what = fmt::format("the spectrum's products ({} samples in batches of {}, {})",
                                       opt.samples, opt.batch_size, dtype_names().name(opt.dtype));
  const std::string fix = "lower --batch-size, --row-budget or --samples";
  with_memory_use(what, fix, [&] {
    if (r.sharded) {
      ShardedSource src(run, s, co, opt, quiet);
      run_flow(src, opt, quiet, r);
    } else {
      LocalSource src(run, s, co, opt, quiet);
      run_flow(src, opt, quiet, r);
    }
  });
  for (const auto& sp : r.spectra)
    r.max_residual = std::max(r.max_residual, sp.pairs.max_residual());
  r.options = opt;
  r.seconds = seconds_since(t0);
  return r;
}

}  // namespace ng
