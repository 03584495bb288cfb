#include "src/spectrum/spectrum.h"

#include <ATen/ATen.h>
#include <ATen/core/Dict.h>
#include <ATen/core/List.h>
#include <c10/core/GradMode.h>
#include <fmt/format.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <filesystem>
#include <memory>
#include <set>

#include "data/sha256.h"
#include "src/core/error.h"
#include "src/curvature/curvature.h"
#include "src/curvature/linear_operator.h"
#include "src/curvature/params.h"
#include "src/eigen/eigensolver.h"
#include "src/io/files.h"
#include "src/io/rundir.h"
#include "src/metrics/alignment.h"
#include "src/training/train.h"

namespace fs = std::filesystem;

namespace ng {
namespace {

using Clock = std::chrono::steady_clock;

const std::vector<std::string> kMatrixNames = {"G", "Sigma", "Sigma0", "H"};

MatrixKind matrix_kind(const std::string& name) {
  if (name == "G") return MatrixKind::G;
  if (name == "Sigma") return MatrixKind::Sigma;
  if (name == "Sigma0") return MatrixKind::Sigma0;
  return MatrixKind::Hessian;
}

std::string join(const std::vector<std::string>& v, const char* sep) {
  std::string s;
  for (const auto& x : v) s += (s.empty() ? "" : sep) + x;
  return s;
}

std::string g17(double v) {
  return std::isfinite(v) ? fmt::format("{:.17g}", v) : std::string("nan");
}

// Long Lanczos runs print where they are, so that a user can tell slow from stuck.
class ProgressOperator : public LinearOperator {
 public:
  ProgressOperator(CurvatureOperator& inner, std::string what, bool quiet)
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
  CurvatureOperator& inner_;
  std::string what_;
  bool quiet_;
  Clock::time_point t0_, last_;
};

void check_matrix_names(const std::vector<std::string>& names) {
  if (names.empty()) fail("--matrices: expected a list such as G,Sigma,Sigma0,H, got nothing");
  std::set<std::string> seen;
  for (const auto& m : names) {
    if (std::find(kMatrixNames.begin(), kMatrixNames.end(), m) == kMatrixNames.end())
      fail("--matrices: unknown matrix '{}' (expected G, Sigma, Sigma0 or H)", m);
    if (!seen.insert(m).second) fail("--matrices: '{}' is listed twice", m);
  }
}

std::string samples_csv(const Dataset& data, const std::vector<int64_t>& positions) {
  std::string out = "position,index,label,class\n";
  const at::Tensor labels = data.labels.defined() ? data.labels.cpu() : at::Tensor();
  for (int64_t pos : positions)
    out += fmt::format("{},{},{},{}\n", pos, data.indices.empty() ? pos : data.indices[pos],
                       data.original_labels.empty() ? -1 : data.original_labels[pos],
                       labels.defined() ? labels[pos].item<int64_t>() : -1);
  return out;
}

// Upper bound on the rank of each matrix over b samples with C outputs and p parameters.
int64_t rank_bound(const std::string& m, int64_t b, int64_t c, int64_t p) {
  if (m == "G") return std::min(b * c, p);
  if (m == "Sigma") return std::min(b, p);
  if (m == "Sigma0") return std::min(b - 1, p);
  return p;
}

std::string rank_reason(const std::string& m, int64_t b, int64_t c, int64_t p) {
  if (m == "G") return fmt::format("b*C = {}*{} samples x outputs (p = {})", b, c, p);
  if (m == "Sigma") return fmt::format("b = {} samples (one gradient each)", b);
  if (m == "Sigma0") return fmt::format("b - 1 = {} (centred gradients of {} samples)", b - 1, b);
  return fmt::format("p = {} parameters", p);
}

MatrixSpectrum solve(CurvatureOperator& op, const std::string& name, const SpectrumOptions& opt,
                     bool keep_vectors) {
  EigenOptions eo;
  eo.k = opt.k;
  eo.ncv = opt.ncv;
  eo.maxit = opt.maxit;
  eo.tol = opt.tol;
  eo.seed = opt.seed;
  eo.residuals = opt.residuals;
  std::string solver = opt.solver == "auto" ? choose_solver(op, eo) : opt.solver;
  if (solver == "gram" && !op.has_rows())
    fail("--solver gram: {} has no per-sample rows with the {} estimator; use --solver lanczos",
         name, opt.estimator);
  if (!opt.quiet)
    fmt::print(stderr, "noisegeom spectrum: {} top-{} by {} ...\n", name, opt.k, solver);
  Eigenpairs e;
  if (solver == "gram") {
    e = gram_top_k(op, opt.k);
  } else {
    ProgressOperator prog(op, name, opt.quiet);
    e = lanczos_top_k(prog, eo);
  }
  const double limit = residual_limit(opt.dtype);
  if (!(e.max_residual() < limit))
    fail(
        "{}: max residual {:.3g} of the top-{} eigenpairs is not below {:.0e} ({}, {}); lower "
        "--tol{}",
        name, e.max_residual(), opt.k, limit, opt.dtype, solver,
        opt.dtype == "float32" ? " or use --dtype float64" : "");
  if (!opt.quiet)
    fmt::print(stderr,
               "noisegeom spectrum: {} done | lambda_1 {:.6g} | max residual {:.2e} | "
               "matvecs {} | {:.1f}s\n",
               name, e.values.front(), e.max_residual(), e.matvecs, e.seconds);
  if (!keep_vectors) e.vectors = at::Tensor();
  return {name, std::move(e)};
}

std::string out_dir_of(const std::string& run_dir, const SpectrumOptions& opt) {
  return opt.out_dir.empty() ? (fs::path(run_dir) / "spectrum").string() : opt.out_dir;
}

}  // namespace

double residual_limit(const std::string& dtype) {
  return dtype == "float32" ? 1e-3 : 1e-6;
}

std::string file_sha256(const std::string& path) {
  const std::string bytes = read_file(path);
  return sha256_hex(bytes.data(), bytes.size());
}

void validate_spectrum_options(const SpectrumOptions& opt) {
  if (opt.k < 1) fail("--k: expected a positive number of eigenpairs, got {}", opt.k);
  check_matrix_names(opt.matrices);
  if (opt.estimator != "per-sample" && opt.estimator != "exact")
    fail("--estimator: expected per-sample or exact, got '{}'", opt.estimator);
  if (opt.samples < 0) fail("--samples: expected a positive number, got {}", opt.samples);
  if (opt.solver != "auto" && opt.solver != "gram" && opt.solver != "lanczos")
    fail("--solver: expected gram or lanczos, got '{}'", opt.solver);
  if (opt.solver == "gram" && opt.estimator == "exact")
    fail("--solver gram: needs the per-sample estimator (the exact one has no rows)");
  if (opt.solver == "gram" &&
      std::find(opt.matrices.begin(), opt.matrices.end(), "H") != opt.matrices.end())
    fail("--solver gram: H has no per-sample rows; use --solver lanczos or leave --solver out");
  if (opt.dtype != "float32" && opt.dtype != "float64")
    fail("--dtype: expected float32 or float64, got '{}'", opt.dtype);
  if (opt.theta != "trained" && opt.theta != "random")
    fail("--theta: expected random (or trained, the default), got '{}'", opt.theta);
  if (opt.batch_size < 1) fail("--batch-size: expected a positive number, got {}", opt.batch_size);
  if (opt.ncv < 0 || (opt.ncv > 0 && opt.ncv <= opt.k))
    fail("--ncv: expected more than k = {} basis vectors, got {}", opt.k, opt.ncv);
  if (opt.tol < 0 || !std::isfinite(opt.tol))
    fail("--tol: expected a positive tolerance, got {}", opt.tol);
  if (opt.maxit < 1) fail("--maxit: expected a positive number, got {}", opt.maxit);
  if (opt.probes < 2) fail("--probes: expected at least 2 Hutchinson probes, got {}", opt.probes);
  if (opt.residuals != "explicit" && opt.residuals != "krylov")
    fail("--residuals: expected explicit or krylov, got '{}'", opt.residuals);
}

std::string spectrum_request(const SpectrumOptions& o) {
  return fmt::format(
             "k={};matrices={};estimator={};samples={};solver={};dtype={};theta={};seed={};"
             "batch_size={};ncv={};tol={};maxit={};probes={}",
             o.k, join(o.matrices, ","), o.estimator, o.samples, o.solver, o.dtype, o.theta, o.seed,
             o.batch_size, o.ncv, g17(o.tol), o.maxit, o.probes) +
         (o.residuals == "explicit" ? "" : ";residuals=" + o.residuals);
}

SpectrumResult compute_spectrum(const std::string& run_dir, const SpectrumOptions& options) {
  const auto t0 = Clock::now();
  validate_spectrum_options(options);
  SpectrumOptions opt = options;
  if (!fs::is_directory(run_dir)) fail("{}: no such run directory", run_dir);
  const std::string theta_file = (fs::path(run_dir) / "theta.pt").string();
  if (!fs::exists(theta_file))
    fail("{}: missing (train the run to the end first, or --resume it)", theta_file);

  SpectrumResult r;
  r.run_dir = run_dir;
  r.out_dir = out_dir_of(run_dir, opt);
  r.request = spectrum_request(opt);
  r.theta_sha256 = file_sha256(theta_file);
  if (opt.tol == 0) opt.tol = opt.dtype == "float64" ? 1e-10 : 1e-6;

  LoadedRun run = load_run(run_dir, opt.data_dir);
  const std::string cfg_path = (fs::path(run_dir) / "config.yaml").string();
  const LossKind loss = parse_loss_kind(run.cfg.s("train.loss"), cfg_path + ": train.loss");
  const int64_t n = run.data.size();
  const int64_t c = run.data.targets.size(1);
  r.n_train = n;
  r.outputs = c;
  r.device = run.device;
  ParameterLayout layout = ParameterLayout::of(*run.model);
  r.p = layout.size;
  for (size_t j = 0; j < layout.names.size(); ++j) {
    r.parameter_names.push_back(layout.names[j]);
    r.parameter_numels.push_back(layout.tensors[j].numel());
  }

  const bool per_sample = opt.estimator == "per-sample";
  if (opt.samples > n)
    fail("--samples: {} samples asked for, but {} holds {} training samples", opt.samples, cfg_path,
         n);
  int64_t b = opt.samples > 0 ? opt.samples : per_sample ? std::min(2 * opt.k, n) : n;
  opt.samples = b;
  if (b < 2) fail("--samples: need at least 2 samples, got {}", b);
  std::vector<std::string> needed = opt.matrices;
  for (const char* m : {"Sigma", "G"})
    if (std::find(needed.begin(), needed.end(), m) == needed.end())
      needed.insert(needed.begin(), m);
  for (const auto& m : needed) {
    const int64_t rank = rank_bound(m, b, c, r.p);
    if (opt.k > rank)
      fail(
          "--k: {} eigenpairs of {} asked for, but its rank is at most {} ({}); lower --k or "
          "raise --samples",
          opt.k, m, rank, rank_reason(m, b, c, r.p));
  }
  if (opt.k >= r.p)
    fail("--k: {} eigenpairs asked for, but the model has only p = {} parameters", opt.k, r.p);

  r.positions = random_subset(n, b, opt.seed);
  r.samples_csv = samples_csv(run.data, r.positions);
  const at::Tensor idx = at::tensor(r.positions, at::TensorOptions().dtype(at::kLong));
  const at::Tensor x = run.data.x.index_select(0, idx);
  const at::Tensor y = run.data.targets.index_select(0, idx);

  if (opt.theta == "random") {
    // Figure 2b: theta ~ N(0, I), the same draw on every machine for a given seed.
    at::NoGradGuard no_grad;
    const at::Tensor v = seeded_normal(r.p, opt.seed, at::TensorOptions().dtype(at::kDouble));
    const auto parts = layout.split(v);
    for (size_t j = 0; j < parts.size(); ++j) layout.tensors[j].copy_(parts[j]);
  }

  CurvatureOptions co;
  co.loss = loss;
  co.estimator = per_sample ? Estimator::PerSample : Estimator::Exact;
  co.batch_size = opt.batch_size;
  co.dtype = opt.dtype == "float64" ? at::kDouble : at::kFloat;
  co.device = c10::Device(run.device == "cuda" ? c10::kCUDA : c10::kCPU);
  co.probe_seed = opt.seed;

  std::vector<std::unique_ptr<CurvatureOperator>> ops;
  auto make_op = [&](const std::string& name) -> CurvatureOperator& {
    const auto t = Clock::now();
    CurvatureOptions o = co;
    o.matrix = matrix_kind(name);
    ops.push_back(std::make_unique<CurvatureOperator>(run.model, x, y, o));
    CurvatureOperator& op = *ops.back();
    if (!opt.quiet)
      fmt::print(stderr,
                 "noisegeom spectrum: {} operator ({}, {} samples, {}{}) | matvecs {} | "
                 "{:.1f}s\n",
                 name, opt.estimator, b, opt.dtype,
                 op.has_rows() ? fmt::format(", {} rows", op.rows().size(0)) : std::string(),
                 op.matvecs(), seconds_since(t));
    return op;
  };

  if (!opt.quiet)
    fmt::print(stderr, "noisegeom spectrum: {} | p = {} | theta {} | {} of {} samples | k = {}\n",
               run_dir, r.p, opt.theta, b, n, opt.k);
  CurvatureOperator& gop = make_op("G");
  r.spectra.push_back(solve(gop, "G", opt, true));
  CurvatureOperator& sop = make_op("Sigma");

  AlignmentOptions ao;
  ao.probes = opt.probes;
  ao.seed = opt.seed;
  const auto ta = Clock::now();
  const Alignment a = compute_alignment(gop, sop, r.spectra[0].pairs, ao);
  if (!opt.quiet)
    fmt::print(stderr, "noisegeom spectrum: alignment ({}) | mu {:.4g} | {:.1f}s\n", a.method,
               a.mu.value, seconds_since(ta));
  r.loss = a.loss;
  r.lambda = a.lambda;
  r.alpha = a.alpha;
  r.g = a.g;
  r.mu = a.mu.value;
  r.mu_se = a.mu.se;
  r.srk_g = a.srk_g.value;
  r.srk_g_se = a.srk_g.se;
  r.srk_g2 = a.srk_g2.value;
  r.srk_g2_se = a.srk_g2.se;
  r.frob_g = a.frob_g.value;
  r.frob_g_se = a.frob_g.se;
  r.trace_g = a.trace_g.value;
  r.metrics_method = a.method;

  for (const auto& m : opt.matrices) {
    if (m == "G") continue;
    CurvatureOperator& op = m == "Sigma" ? sop : make_op(m);
    r.spectra.push_back(solve(op, m, opt, false));
  }
  for (const auto& op : ops) r.matvecs += op->matvecs();
  for (const auto& s : r.spectra) r.max_residual = std::max(r.max_residual, s.pairs.max_residual());
  r.options = opt;
  r.seconds = seconds_since(t0);
  return r;
}

void write_spectrum(const SpectrumResult& r) {
  const SpectrumOptions& o = r.options;
  std::string eig = "matrix,index,eigenvalue,residual\n";
  // G first, then the requested matrices in the order asked for; G only when requested.
  for (const auto& s : r.spectra) {
    if (s.matrix == "G" && std::find(o.matrices.begin(), o.matrices.end(), "G") == o.matrices.end())
      continue;
    for (size_t j = 0; j < s.pairs.values.size(); ++j)
      eig += fmt::format("{},{},{},{}\n", s.matrix, j + 1, g17(s.pairs.values[j]),
                         g17(s.pairs.residuals[j]));
  }
  std::string align = "k,lambda,alpha,g\n";
  for (size_t j = 0; j < r.lambda.size(); ++j)
    align += fmt::format("{},{},{},{}\n", j + 1, g17(r.lambda[j]), g17(r.alpha[j]), g17(r.g[j]));

  std::string spectra = "{";
  for (size_t j = 0; j < r.spectra.size(); ++j) {
    const Eigenpairs& e = r.spectra[j].pairs;
    Json js;
    js.str("solver", e.solver).str("residuals", e.residual_method);
    if (std::isfinite(e.explicit_check)) js.num("explicit_residual_check", e.explicit_check);
    js.integer("matvecs", e.matvecs)
        .integer("iterations", e.iterations)
        .num("seconds", e.seconds)
        .num("max_residual", e.max_residual())
        .num("lambda_1", e.values.front());
    spectra += (j ? ",\n" : "\n") + std::string("  ") + Json::quote(r.spectra[j].matrix) + ": ";
    std::string d = js.dump();
    for (size_t q = d.find('\n'); q != std::string::npos; q = d.find('\n', q + 1))
      d.insert(q + 1, "  ");
    spectra += d;
  }
  spectra += "\n}";

  Json j;
  j.str("tool", "noisegeom")
      .str("version", version())
      .str("run_dir", r.run_dir)
      .str("theta", o.theta)
      .str("theta_sha256", r.theta_sha256)
      .str("request", r.request)
      .num("loss", r.loss)
      .num("mu", r.mu)
      .num("mu_se", r.mu_se)
      .num("srk_G", r.srk_g)
      .num("srk_G_se", r.srk_g_se)
      .num("srk_G2", r.srk_g2)
      .num("srk_G2_se", r.srk_g2_se)
      .num("frobenius_G", r.frob_g)
      .num("frobenius_G_se", r.frob_g_se)
      .num("trace_G", r.trace_g)
      .num("lambda_1", r.lambda.front())
      .str("metrics_method", r.metrics_method)
      .integer("hutchinson_probes", r.metrics_method == "hutchinson" ? o.probes : 0)
      .str("estimator", o.estimator)
      .integer("samples", o.samples)
      .integer("n_train", r.n_train)
      .integer("outputs", r.outputs)
      .integer("p", r.p)
      .integer("k", o.k)
      .str("matrices", join(o.matrices, ","))
      .str("solver", r.spectra.front().pairs.solver)
      .str("dtype", o.dtype)
      .str("device", r.device)
      .integer("seed", static_cast<int64_t>(o.seed))
      .integer("matvecs", r.matvecs)
      .num("seconds", r.seconds)
      .boolean("converged", true)
      .num("max_residual", r.max_residual)
      .num("residual_limit", residual_limit(o.dtype))
      .raw("spectra", spectra)
      .str("parameter_order", "named_parameters() order, each tensor flattened row-major")
      .str("created", iso_time_now());

  c10::impl::GenericDict d(c10::StringType::get(), c10::AnyType::get());
  d.insert("U", r.spectra.front().pairs.vectors.t().contiguous().cpu());
  d.insert("eigenvalues",
           at::tensor(r.lambda, at::TensorOptions().dtype(at::kDouble)).contiguous());
  c10::List<std::string> names;
  for (const auto& s : r.parameter_names) names.push_back(s);
  c10::List<int64_t> numels;
  for (int64_t v : r.parameter_numels) numels.push_back(v);
  d.insert("parameter_names", c10::IValue(names));
  d.insert("parameter_numels", c10::IValue(numels));

  // Build the whole directory beside the target, then swap it in: readers see the old spectrum
  // or the new one, never a mixture.
  const fs::path target(r.out_dir);
  const std::string pid = std::to_string(::getpid());
  const fs::path tmp = target.string() + ".tmp." + pid;
  const fs::path old = target.string() + ".old." + pid;
  remove_tree(tmp);
  try {
    fs::create_directories(tmp);
    write_file_atomic((tmp / "eigenvalues.csv").string(), eig);
    write_file_atomic((tmp / "alignment.csv").string(), align);
    save_ivalue((tmp / "eigenvectors.pt").string(), c10::IValue(d));
    write_file_atomic((tmp / "samples.csv").string(), r.samples_csv);
    write_file_atomic((tmp / "summary.json").string(), j.dump() + "\n");
    if (fs::exists(target)) fs::rename(target, old);
    fs::rename(tmp, target);
  } catch (const fs::filesystem_error& e) {
    remove_tree(tmp);
    fail("{}: cannot write the spectrum ({})", r.out_dir, e.code().message());
  } catch (...) {
    remove_tree(tmp);
    throw;
  }
  remove_tree(old);
}

SpectrumResult run_spectrum(const std::string& run_dir, const SpectrumOptions& opt) {
  SpectrumResult r = compute_spectrum(run_dir, opt);
  write_spectrum(r);
  if (!opt.quiet)
    fmt::print(stderr,
               "noisegeom spectrum: done | lambda_1 {:.6g} | mu {:.4g} | max residual {:.2e} | "
               "matvecs {} | {:.1f}s -> {}\n",
               r.lambda.front(), r.mu, r.max_residual, r.matvecs, r.seconds, r.out_dir);
  return r;
}

bool spectrum_is_current(const std::string& run_dir, const SpectrumOptions& opt) {
  const fs::path dir = out_dir_of(run_dir, opt);
  const fs::path theta = fs::path(run_dir) / "theta.pt";
  for (const char* f :
       {"summary.json", "eigenvalues.csv", "alignment.csv", "eigenvectors.pt", "samples.csv"})
    if (!fs::exists(dir / f)) return false;
  if (!fs::exists(theta)) return false;
  const std::string s = read_file((dir / "summary.json").string());
  return Json::field(s, "request") == Json::quote(spectrum_request(opt)) &&
         Json::field(s, "theta_sha256") == Json::quote(file_sha256(theta.string()));
}

}  // namespace ng
