// Escape from a minimum (Sections 5 and 6 of the paper): SGD and GD trajectories started at a
// minimum theta* with a constant learning rate, tracked in the eigenbasis of G(theta*).
//
// For every logged step t of every run the library records the training loss on a fixed
// evaluation subset, d = |theta_t - theta*| and, for each requested k,
//   p_{t,1} = <theta_t - theta*, u_1> (signed),  p_{t,k} = |U_k^T (theta_t - theta*)| for k > 1,
//   r_{t,k} = sqrt(max(d^2 - p_{t,k}^2, 0)),
// from one float64 product U^T (theta_t - theta*) per log. With EscapeOptions::energy, also the
// loss energies of Section 5 along the sharpest direction and beyond it,
//   X_t = lambda_1 <d_t, u_1>^2,  Y_t = d_perp^T G d_perp with d_perp = d_t - <d_t, u_1> u_1,
//   D_{t,1} = Y_t / X_t,   d_t = theta_t - theta*,
// with G = G(theta*) over the energy samples (in float64, one Jacobian-vector product at theta* per
// logged point: d^T G d = (1/n) sum_i |J_i d|^2_{W_i}) and lambda_1 = u_1^T G u_1 on the same
// samples. For an exact eigenpair Y = d^T G d - X, the paper's numerator; the projected form keeps
// Y accurate when D is far below rounding of d^T G d (GD's D falls to 1e-20 and below).
//
// Randomness of run r (its SGD batch order and its initial perturbation) depends only on
// (seed, r), so a run gives the same trajectory whichever worker thread runs it and whatever else
// runs beside it. SGD batches follow training exactly: epoch e of run r is
// epoch_permutation(n, escape_run_seed(seed, r), e) cut into consecutive batches, the last one
// short when B does not divide n.
//
// Several runs share a CPU machine as concurrent workers, each with its own model replica
// (built by a factory and loaded with theta*), with LibTorch's intra-op threads divided among them:
// for small models one single-threaded run per core is faster than runs one after another with
// all cores each, and far more robust on a busy machine (see EscapeOptions::workers). On CUDA,
// runs advance R at a time on one batched model instead (EscapeOptions::replicas,
// src/escape/replicas.h), each step one CUDA graph (EscapeOptions::cuda_graphs).
#pragma once

#include <ATen/core/Tensor.h>
#include <c10/core/Device.h>

#include <cmath>
#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "models/model.h"
#include "src/core/names.h"
#include "src/training/loss.h"

namespace ng {

struct Dataset;

enum class Optimizer { Sgd, Gd };
// "sgd", "gd" (--optimizer, escape.json).
const NameTable<Optimizer>& optimizer_names();
inline std::string to_string(Optimizer o) {
  return optimizer_names().name(o);
}

// Runs when EscapeOptions::runs is 0: the paper's 50 for SGD; one for GD, which differs from run
// to run only by the initial perturbation.
int64_t default_escape_runs(Optimizer o);

// The defaults here are the ones users see (the escape command's --help shows them); 0 marks
// what a caller must choose: lr (the study searches it), batch (the study takes training's).
inline constexpr int64_t kAutoReplicasCuda = 50;

struct EscapeOptions {
  Optimizer optimizer = Optimizer::Sgd;
  int64_t runs = 0;     // independent trajectories; 0: default_escape_runs(optimizer)
  int64_t steps = 500;  // parameter updates per run
  double lr = 0;        // constant learning rate (> 0)
  int64_t batch = 0;    // SGD batch size B (>= 1, clamped to n)
  std::vector<int64_t> ks = {1, 5, 10, 20};  // which p_{t,k}, r_{t,k} to record; 1 <= k <= K
  int64_t log_every = 10;  // steps between logged points (step 0 and the last are logged)
  double perturb = 0;      // theta_0 = theta* + perturb * N(0, I)
  uint64_t seed = 0;
  LossKind loss = LossKind::Mse;  // the paper's square loss, or cross entropy (needs labels)
  int64_t eval_samples = 0;       // size of the fixed loss-evaluation subset; 0: all n samples
  int64_t eval_batch = 1000;      // samples per forward pass (evaluation and GD gradients)
  int64_t gd_samples = 0;         // GD: the full-batch gradient's subset size; 0: all n samples
  // A run has escaped once its logged loss exceeds the threshold: escape_loss when > 0, else
  // escape_factor * L(theta*) (L on the evaluation subset; must then be > 0).
  double escape_factor = 10;
  double escape_loss = 0;
  bool stop_at_escape = false;  // end a run at its first escape (learning-rate probes)
  // A run stops early, as "diverged", once its loss is non-finite or above this times the
  // threshold: past that point the trajectory only overflows.
  double max_loss_factor = 1e6;
  at::ScalarType dtype = at::kFloat;
  c10::Device device = c10::Device(c10::kCPU);
  // Concurrency. workers: runs executed at once, each on its own model replica; intra_threads:
  // LibTorch's (process-wide) intra-op thread count while they execute, restored afterwards.
  // 0 picks automatically: on the CPU min(runs, T) workers with T / workers intra-op threads each
  // (T = at::get_num_threads() at the call), so many runs get one thread each; on CUDA one
  // worker with T threads. A run's arithmetic, hence its trajectory bit for bit, depends on
  // (seed, run, intra_threads) only, not on the number of workers or the order runs are taken.
  // Different intra-op thread counts agree only to rounding (threaded kernels sum in other
  // orders).
  int64_t workers = 0;
  int64_t intra_threads = 0;
  // Runs advanced together on one batched model (src/escape/replicas.h): runs are taken in fixed
  // groups [0, R), [R, 2R), ... by index, so a resumed sweep recomputes the same groups. 1: one
  // run at a time (the per-run path); 0 picks automatically: kAutoReplicasCuda on CUDA, 1 on the
  // CPU (where batching measured slower than one single-threaded run per core). A model whose
  // layers cannot run replicated (diag_linear, toy) runs one at a time whatever the setting.
  // Trajectories agree with the per-run path to rounding, and depend on (R, intra_threads).
  int64_t replicas = 0;
  // CUDA: capture each batched SGD step in a CUDA graph (src/training/graphed_step.h); no effect
  // on the CPU. Float32 results agree with eager steps to rounding.
  bool cuda_graphs = true;
  // Log X_t, Y_t and D_{t,1} (see the top of this file) with G over `energy_samples` (indices into
  // the data set; empty: all n). The study passes its spectrum's samples, so that u_1 is an
  // eigenvector of the same G.
  bool energy = false;
  std::vector<int64_t> energy_samples;
  // G's per-sample rows (float64, samples x outputs x p) up to this size are built once and shared
  // by the workers (one product per point); larger ones, or 0, take a Jacobian-vector product by
  // the R-op per point instead. Both give the same numbers to rounding.
  double energy_row_bytes = 2.0 * (1 << 30);
};

struct TrajectoryPoint {
  int64_t run = 0;
  int64_t step = 0;
  double loss = 0;
  double distance = 0;    // |theta_t - theta*|
  std::vector<double> p;  // one per EscapeOptions::ks
  std::vector<double> r;
  // EscapeOptions::energy: X_t, Y_t, D_{t,1} (NaN otherwise).
  double energy_x = std::nan(""), energy_y = std::nan(""), d1 = std::nan("");
};

struct RunResult {
  int64_t run = 0;
  // completed: all steps ran; escaped: stopped at its escape (stop_at_escape); diverged: stopped
  // on a non-finite or runaway loss.
  std::string status;
  bool escaped = false;
  int64_t escape_step = -1;  // first logged step whose loss exceeds the threshold; -1: none
  int64_t steps = 0;         // updates done
  double final_loss = 0, final_distance = 0;
  std::vector<double> final_p, final_r;  // at the last logged point, one per k
  std::vector<TrajectoryPoint> trajectory;
  bool reused = false;  // loaded from a sweep directory rather than computed
  double seconds = 0;
};

struct EscapeResult {
  double loss_star = 0;         // L(theta*) on the evaluation subset
  double threshold = 0;         // escape threshold on the loss
  std::vector<RunResult> runs;  // by run index
  int64_t workers = 0, intra_threads = 0;
  int64_t replicas = 1;              // runs per batched group (1: one at a time)
  int64_t computed = 0, reused = 0;  // runs computed by this call / loaded from disk
  double seconds = 0;
  double energy_lambda1 = std::nan("");  // u_1^T G u_1 over the energy samples (energy only)
  int64_t escaped_count() const;
};

struct EscapeHooks {
  // Called once per finished run, from a worker thread; hooks are never called concurrently.
  std::function<void(const RunResult&)> on_run_done;
  // Called for every logged point as it is measured (progress lines); a run dropped by
  // should_stop may have reported points.
  std::function<void(const TrajectoryPoint&)> on_point;
  // Polled every step; true stops the sweep: runs in progress are dropped (not reported), no new
  // run starts, and run_escape returns the runs finished so far.
  std::function<bool()> should_stop;
};

// Builds a fresh replica of the model's architecture (any initial values, device and dtype: the
// library loads theta* and moves it). Called from the calling thread only.
using ModelFactory = std::function<Net()>;

// Runs 0..opt.runs-1 from theta* (flat, ParameterLayout order, any dtype/device). U holds the top
// K eigenvectors of G(theta*) as orthonormal columns (p x K); a K x p matrix such as
// Eigenpairs::vectors is accepted as well. Bad input throws ng::Error naming the option.
EscapeResult run_escape(const ModelFactory& factory, const at::Tensor& theta_star,
                        const at::Tensor& U, const Dataset& data, const EscapeOptions& opt,
                        const EscapeHooks& hooks = {});

// The files run_escape_sweep keeps in its directory (the study adds its own beside them).
namespace sweep_files {
inline constexpr const char* kSettings = "escape.json";  // what determines every run
inline constexpr const char* kSummary = "summary.csv";   // one row per finished run
std::string run_file(int64_t run);                       // run_NNNN.csv: one run's points
}  // namespace sweep_files

// Like run_escape, but resumable: every finished run is written atomically to
// dir/run_NNNN.csv (all logged points, exact to the last bit), the settings to dir/escape.json.
// A later call with the same settings loads the runs already there (RunResult::reused) and
// computes only the missing ones, so opt.runs may grow from call to call. Different settings
// (anything but runs, workers, threads, device) are an error naming escape.json and the field.
// dir/summary.csv (one row per run) is rewritten at the end of every call.
EscapeResult run_escape_sweep(const std::string& dir, const ModelFactory& factory,
                              const at::Tensor& theta_star, const at::Tensor& U,
                              const Dataset& data, const EscapeOptions& opt,
                              const EscapeHooks& hooks = {});

// ---- Learning-rate search ("--lr auto") ----

// The curvature at theta* the search starts from (from the spectrum of G).
struct CurvatureNumbers {
  double lambda1 = 0, lambda2 = 0;  // top two eigenvalues of G
  double g_frobenius = 0;           // |G|_F
};

struct LrSearchOptions {
  double start = 0;    // first lr tried; 0: escape_lr_start(...)
  double sgd_c = 1.2;  // SGD start c / |G|_F (the paper's Figure 3 uses 1.2)
  double growth = 2;   // geometric step up (or down) until the outcome changes
  int64_t max_expansions = 12;
  double rel_tol = 0.05;           // bisection (geometric) until hi / lo <= 1 + rel_tol
  double margin = 1.1;             // chosen lr = margin * smallest escaping lr found
  int64_t probe_runs = 4;          // runs 0..probe_runs-1 of the base options' seed
  double required_fraction = 1.0;  // of the probe runs that must escape
  int64_t steps = 0;               // T: steps allowed to escape; 0: the base options' steps
};

struct LrTrial {
  double lr = 0;
  std::string phase;  // start | up | down | bisect | verify
  int64_t runs = 0, escaped = 0;
  std::vector<int64_t> escape_steps;  // per probe run, -1 where it did not escape
  bool success = false;               // escaped >= required_fraction * runs
};

struct LrSearchResult {
  bool found = false;  // false: no tried lr escaped (chosen is then NaN)
  double chosen = 0;   // the lr to use
  double smallest_escaping = 0;
  double largest_failing = 0;   // NaN when every tried lr escaped
  double reference = 0;         // the paper's: 1.2/|G|_F (SGD) or 4/(lambda1 + lambda2) (GD)
  std::vector<LrTrial> trials;  // in the order tried
  std::string message;          // one line: what was chosen and why
};

// GD: 2 / lambda1 (the stability edge); SGD: c / |G|_F.
double escape_lr_start(Optimizer o, const CurvatureNumbers& c, double sgd_c = 1.2);
double escape_lr_reference(Optimizer o, const CurvatureNumbers& c);

// The search itself on any probe (lr -> outcome): from `start`, geometric steps up (or down)
// until the outcome flips, then geometric bisection to rel_tol, then margin * the smallest
// escaping lr, verified by one more probe (raised by `margin` again, at most 3 times, if that
// probe fails: SGD outcomes are random).
LrSearchResult search_escape_lr(const LrSearchOptions& so, double start,
                                const std::function<LrTrial(double lr)>& probe,
                                const std::function<void(const LrTrial&)>& on_trial = {});

// The search with run_escape probes: `base` with lr replaced, runs = probe_runs,
// steps = so.steps, stop_at_escape (unperturbed GD: one run). on_trial hears of every trial as it
// ends. The caller sets base.lr = result.chosen for the sweep.
LrSearchResult auto_escape_lr(const ModelFactory& factory, const at::Tensor& theta_star,
                              const at::Tensor& U, const Dataset& data, const EscapeOptions& base,
                              const CurvatureNumbers& curvature, const LrSearchOptions& so,
                              const std::function<void(const LrTrial&)>& on_trial = {});

// ---- Building blocks, exposed so tests can replay a run independently ----

// The seed of run r's batch order (and, through a second stream, its perturbation).
uint64_t escape_run_seed(uint64_t seed, int64_t run);
// perturb * N(0, I_p) of run r as float64 on the CPU (platform-independent generator).
at::Tensor escape_perturbation(int64_t p, double sigma, uint64_t seed, int64_t run);
// Indices of the SGD batch taken at update `step` (0-based) of a run with `run_seed`.
std::vector<int64_t> escape_batch(int64_t n, int64_t batch, uint64_t run_seed, int64_t step);
// The fixed loss-evaluation subset and GD's gradient subset: sorted indices into the data set
// (0..n-1 when the size is 0 or >= n), from (n, size, seed) only.
std::vector<int64_t> escape_eval_subset(int64_t n, const EscapeOptions& o);
std::vector<int64_t> escape_gd_subset(int64_t n, const EscapeOptions& o);
// d, p_k, r_k of `delta` (float64, p) against U (float64, p x K) for the given ks.
void escape_projections(const at::Tensor& delta, const at::Tensor& U,
                        const std::vector<int64_t>& ks, double* distance, std::vector<double>* p,
                        std::vector<double>* r);

}  // namespace ng
