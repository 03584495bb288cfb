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

MatrixSpectrum solve(CurvatureOperator& op, MatrixKind m, const SpectrumOptions& opt, bool quiet,
                     bool keep_vectors) {
  const std::string& name = matrix_names().name(m);
  const EigenOptions eo = eigen_options(opt);
  // G's exact metrics need K = B B^T / b whenever there are fewer rows than parameters
  // (tr G^2 = |K|_F^2): formed first, it leaves the Gram solver only its eigh.
  if (m == MatrixKind::G && op.has_rows() && op.rows().size(0) <= op.dim()) op.gram_matrix();
  const std::string solver = opt.solver != "auto" ? opt.solver : choose_solver(op, eo);
  if (solver == "gram" && !op.has_rows())
    fail(
        "--solver gram: {} has no per-sample rows ({} estimator, {} samples: over --row-budget "
        "{:.2f} GiB); raise --row-budget or use --solver lanczos",
        name, estimator_names().name(opt.estimator), op.num_samples(),
        static_cast<double>(opt.row_budget) / (1 << 30));
  if (!quiet) fmt::print(stderr, "noisegeom spectrum: {} top-{} by {} ...\n", name, opt.k, solver);
  Eigenpairs e =
      solver == "gram" ? gram_top_k(op, opt.k) : lanczos_with_progress(op, name, opt, quiet);
  check_pairs(e, name, opt, solver, quiet, keep_vectors);
  return {m, std::move(e), op.storage(),
          op.has_rows() ? rows_method_names().name(op.rows_method()) : std::string()};
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

// Several ranks with the exact estimator: every operator is sharded over the ranks, and every rank
// runs the same Lanczos (same seed, same all-reduced products), so all hold the same eigenpairs.
// The rows and the Gram solver need every sample's rows in one process: they stay the one-process
// route.
void sharded_spectra(LoadedRun& run, const Samples& s, CurvatureOptions co,
                     const SpectrumOptions& opt, bool quiet, SpectrumResult& r) {
  const int world = dist().world;
  if (opt.solver == "gram")
    fail(
        "--solver gram: the Gram solver needs every sample's rows in one process; with "
        "WORLD_SIZE={} the exact estimator runs Lanczos on sharded products (use --solver "
        "lanczos or auto, or run one process)",
        world);
  const bool ce = co.loss == LossKind::CrossEntropy;
  if (!quiet && exact_rows_fit(opt.samples, r.outputs, r.p, opt.dtype, ce, opt.row_budget))
    fmt::print(stderr,
               "noisegeom spectrum: the rows fit --row-budget, but rows and the Gram solver are "
               "the one-process route: {} ranks stream the products of their shards\n",
               world);
  co.row_budget = 0;
  co.keep_jacobian = false;
  r.world_size = world;
  r.sharded = true;
  std::vector<std::unique_ptr<ShardedOperator>> ops;
  auto make = [&](MatrixKind m) -> ShardedOperator& {
    const auto t = Clock::now();
    CurvatureOptions o = co;
    o.matrix = m;
    ops.push_back(std::make_unique<ShardedOperator>(run.model, s.x, s.y, o));
    if (!quiet)
      fmt::print(stderr,
                 "noisegeom spectrum: {} operator (exact, {} samples over {} ranks, {}, sharded) "
                 "| {:.1f}s\n",
                 matrix_names().name(m), opt.samples, world, dtype_names().name(opt.dtype),
                 seconds_since(t));
    return *ops.back();
  };
  auto solve_sharded = [&](ShardedOperator& op, MatrixKind m, bool keep_vectors) {
    const std::string& name = matrix_names().name(m);
    if (!quiet)
      fmt::print(stderr, "noisegeom spectrum: {} top-{} by lanczos over {} ranks ...\n", name,
                 opt.k, world);
    Eigenpairs e = lanczos_with_progress(op, name, opt, quiet);
    check_pairs(e, name, opt, "lanczos", quiet, keep_vectors);
    return MatrixSpectrum{m, std::move(e), "sharded", ""};
  };
  ShardedOperator& g = make(MatrixKind::G);
  r.spectra.push_back(solve_sharded(g, MatrixKind::G, true));
  ShardedOperator& sigma = make(MatrixKind::Sigma);
  const auto ta = Clock::now();
  r.alignment = sharded_alignment(g, sigma, r.spectra[0].pairs, {opt.probes, opt.seed});
  if (!quiet)
    fmt::print(stderr,
               "noisegeom spectrum: alignment (hutchinson, sharded) | mu {:.4g} | {:.1f}s\n",
               r.alignment.mu.value, seconds_since(ta));
  for (MatrixKind m : opt.matrices) {
    if (m == MatrixKind::G) continue;
    r.spectra.push_back(solve_sharded(m == MatrixKind::Sigma ? sigma : make(m), m, false));
  }
  for (const auto& op : ops) r.matvecs += op->matvecs();
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
  std::vector<std::unique_ptr<CurvatureOperator>> ops;
  auto report = [&](CurvatureOperator& op, MatrixKind m, Clock::time_point t) {
    if (quiet) return;
    std::string storage = "streamed";
    if (op.has_rows())
      storage =
          fmt::format("{} rows, {:.2f} GiB, {}", op.rows().size(0),
                      static_cast<double>(op.rows().numel() * op.rows().element_size()) / (1 << 30),
                      rows_method_names().name(op.rows_method()));
    else if (opt.estimator == Estimator::Exact && m != MatrixKind::Hessian)
      storage += fmt::format(": rows over --row-budget {:.2f} GiB",
                             static_cast<double>(opt.row_budget) / (1 << 30));
    fmt::print(stderr,
               "noisegeom spectrum: {} operator ({}, {} samples, {}, {}) | matvecs {} | {:.1f}s\n",
               matrix_names().name(m), estimator_names().name(opt.estimator), opt.samples,
               dtype_names().name(opt.dtype), storage, op.matvecs(), seconds_since(t));
  };
  auto make_op = [&](MatrixKind m) -> CurvatureOperator& {
    const auto t = Clock::now();
    CurvatureOptions o = co;
    o.matrix = m;
    ops.push_back(std::make_unique<CurvatureOperator>(run.model, s.x, s.y, o));
    report(*ops.back(), m, t);
    return *ops.back();
  };
  // Sigma and Sigma0 on G's samples: from G's rows or Jacobians where it holds them.
  auto derive_op = [&](const CurvatureOperator& from, MatrixKind m) -> CurvatureOperator& {
    if (!from.has_rows() || m == MatrixKind::Hessian) return make_op(m);
    const auto t = Clock::now();
    ops.push_back(std::make_unique<CurvatureOperator>(from, m));
    report(*ops.back(), m, t);
    return *ops.back();
  };

  if (!quiet)
    fmt::print(stderr, "noisegeom spectrum: {} | p = {} | theta {} | {} of {} samples | k = {}\n",
               run.dir, r.p, opt.theta, opt.samples, r.n_train, opt.k);
  if (dist().active() && opt.estimator == Estimator::Exact) {
    sharded_spectra(run, s, co, opt, quiet, r);
  } else {
    // One process, or the per-sample estimator, which every rank runs alike (it is cheap).
    r.world_size = dist().world;
    CurvatureOperator& gop = make_op(MatrixKind::G);
    r.spectra.push_back(solve(gop, MatrixKind::G, opt, quiet, true));
    CurvatureOperator& sop = derive_op(gop, MatrixKind::Sigma);
    const auto ta = Clock::now();
    r.alignment = compute_alignment(gop, sop, r.spectra[0].pairs, {opt.probes, opt.seed});
    if (!quiet)
      fmt::print(stderr, "noisegeom spectrum: alignment ({}) | mu {:.4g} | {:.1f}s\n",
                 r.alignment.method, r.alignment.mu.value, seconds_since(ta));
    for (MatrixKind m : opt.matrices) {
      if (m == MatrixKind::G) continue;
      CurvatureOperator& op = m == MatrixKind::Sigma ? sop : derive_op(sop, m);
      r.spectra.push_back(solve(op, m, opt, quiet, false));
    }
    for (const auto& op : ops) r.matvecs += op->matvecs();
  }
  for (const auto& sp : r.spectra)
    r.max_residual = std::max(r.max_residual, sp.pairs.max_residual());
  r.options = opt;
  r.seconds = seconds_since(t0);
  return r;
}

}  // namespace ng
