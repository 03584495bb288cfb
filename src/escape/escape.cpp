// The escape runs of escape.h: the prepared Engine (data, theta*, U, threshold, model replicas),
// the one SGD/GD step loop (one run on a replica model's own parameters, or a group of runs on
// one batched model), the worker pool, and the resumable sweep directory (escape.json,
// run_NNNN.csv, summary.csv).
#include "src/escape/escape.h"

#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <fmt/format.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cmath>
#include <cstdlib>
#include <filesystem>
#include <map>
#include <mutex>
#include <sstream>

#include "data/dataset.h"
#include "src/core/dtypes.h"
#include "src/core/error.h"
#include "src/core/memory.h"
#include "src/core/random.h"
#include "src/core/threads.h"
#include "src/curvature/curvature.h"
#include "src/dist/dist.h"
#include "src/escape/engine.h"
#include "src/escape/sweep_ranks.h"
#include "src/io/files.h"
#include "src/io/json.h"
#include "src/io/rundir.h"
#include "src/training/graphed_step.h"
#include "src/training/sgd.h"
#include "src/training/train.h"

namespace fs = std::filesystem;

namespace ng {
namespace {

// Sequential float64 sums of the values (plain and position-weighted, so that a permutation shows
// too): the same digits on every machine, for the sweep's record of its inputs.
std::string checksum(const at::Tensor& t) {
  if (!t.defined()) return "none";
  const at::Tensor c = t.detach().to(at::kCPU, at::kDouble).contiguous().reshape(-1);
  const double* v = c.data_ptr<double>();
  double s = 0, w = 0;
  for (int64_t i = 0; i < c.numel(); ++i) {
    s += v[i];
    w += v[i] * (1.0 + double(i % 997) / 997.0);
  }
  return fmt::format("{}:{}:{}", c.numel(), s, w);
}

void check_options(const EscapeOptions& o) {
  if (o.runs < 1) fail("escape.runs: must be at least 1 (got {})", o.runs);
  if (o.steps < 0) fail("escape.steps: must be >= 0 (got {})", o.steps);
  if (!(o.lr > 0) || !std::isfinite(o.lr))
    fail("escape.lr: must be a positive finite learning rate (got {})", o.lr);
  if (o.batch < 1) fail("escape.batch: must be at least 1 (got {})", o.batch);
  if (o.ks.empty()) fail("escape.ks: give at least one k (e.g. [1, 10])");
  if (o.log_every < 1) fail("escape.log_every: must be at least 1 (got {})", o.log_every);
  if (!(o.perturb >= 0) || !std::isfinite(o.perturb))
    fail("escape.perturb: must be a finite standard deviation >= 0 (got {})", o.perturb);
  if (o.eval_samples < 0) fail("escape.eval_samples: must be >= 0 (got {})", o.eval_samples);
  if (o.eval_batch < 1) fail("escape.eval_batch: must be at least 1 (got {})", o.eval_batch);
  if (o.gd_samples < 0) fail("escape.gd_samples: must be >= 0 (got {})", o.gd_samples);
  if (!(o.escape_factor > 0) || !std::isfinite(o.escape_factor))
    fail("escape.escape_factor: must be a positive number (got {})", o.escape_factor);
  if (!(o.escape_loss >= 0) || !std::isfinite(o.escape_loss))
    fail("escape.escape_loss: must be >= 0 (0: use escape_factor; got {})", o.escape_loss);
  if (!(o.max_loss_factor > 1))
    fail("escape.max_loss_factor: must be > 1 (got {})", o.max_loss_factor);
  if (o.workers < 0) fail("escape.workers: must be >= 0 (0: automatic; got {})", o.workers);
  if (o.intra_threads < 0)
    fail("escape.threads: must be >= 0 (0: automatic; got {})", o.intra_threads);
  if (o.replicas < 0)
    fail("escape.replicas: must be >= 0 (0: automatic, 1: one run at a time; got {})", o.replicas);
  if (o.dtype != at::kFloat && o.dtype != at::kDouble)
    fail("escape.dtype: must be float32 or float64");
}

}  // namespace

const NameTable<Optimizer>& optimizer_names() {
  static const NameTable<Optimizer> names("optimizer",
                                          {{Optimizer::Sgd, "sgd"}, {Optimizer::Gd, "gd"}});
  return names;
}

int64_t EscapeResult::escaped_count() const {
  return std::count_if(runs.begin(), runs.end(), [](const RunResult& r) { return r.escaped; });
}

uint64_t escape_run_seed(uint64_t seed, int64_t run) {
  return splitmix64(splitmix64(seed ^ 0x65736361706531ULL) + static_cast<uint64_t>(run));
}

at::Tensor escape_perturbation(int64_t p, double sigma, uint64_t seed, int64_t run) {
  at::Tensor out = at::empty({p}, at::TensorOptions().dtype(at::kDouble));
  double* v = out.data_ptr<double>();
  Normal normal(splitmix64(escape_run_seed(seed, run) ^ 0x7065727475726221ULL));
  for (int64_t i = 0; i < p; ++i) v[i] = sigma * normal();
  return out;
}

std::vector<int64_t> escape_batch(int64_t n, int64_t batch, uint64_t run_seed, int64_t step) {
  const at::Tensor idx = BatchOrder(n, batch, run_seed).at(step).contiguous();
  return std::vector<int64_t>(idx.data_ptr<int64_t>(), idx.data_ptr<int64_t>() + idx.numel());
}

std::vector<int64_t> escape_eval_subset(int64_t n, const EscapeOptions& o) {
  return random_subset(n, o.eval_samples > 0 ? o.eval_samples : n,
                       splitmix64(o.seed ^ 0x6576616cULL));
}

std::vector<int64_t> escape_gd_subset(int64_t n, const EscapeOptions& o) {
  return random_subset(n, o.gd_samples > 0 ? o.gd_samples : n, splitmix64(o.seed ^ 0x6764ULL));
}

void escape_projections(const at::Tensor& delta, const at::Tensor& U,
                        const std::vector<int64_t>& ks, double* distance, std::vector<double>* p,
                        std::vector<double>* r) {
  const double d2 = at::dot(delta, delta).item<double>();
  const at::Tensor proj = at::mv(U.t(), delta).to(at::kCPU).contiguous();
  const double* c = proj.data_ptr<double>();
  const int64_t K = proj.numel();
  std::vector<double> cum(K + 1, 0.0);  // cum[k] = sum_{i<k} c_i^2
  for (int64_t i = 0; i < K; ++i) cum[i + 1] = cum[i] + c[i] * c[i];
  *distance = std::sqrt(d2);
  p->assign(ks.size(), 0.0);
  r->assign(ks.size(), 0.0);
  for (size_t j = 0; j < ks.size(); ++j) {
    const int64_t k = ks[j];
    const double pk = k == 1 ? c[0] : std::sqrt(cum[k]);
    (*p)[j] = pk;
    (*r)[j] = std::sqrt(std::max(d2 - pk * pk, 0.0));
  }
}

namespace escape_detail {

Engine::Engine(const ModelFactory& factory, const at::Tensor& theta_star, const at::Tensor& U,
               const Dataset& data, const EscapeOptions& opt)
    : factory_(factory), opt_(opt) {
  check_options(opt_);
  if (!factory_) fail("escape: no model factory given");
  if (!data.x.defined() || data.size() == 0) fail("escape: the data set is empty");
  if (!data.targets.defined() || data.targets.size(0) != data.size())
    fail("escape: the data set has {} inputs but {} target rows", data.size(),
         data.targets.defined() ? data.targets.size(0) : 0);
  if (opt_.loss == LossKind::CrossEntropy && !data.labels.defined())
    fail("escape.loss: cross_entropy needs class labels (this data set has none)");
  n_ = data.size();

  ensure_replicas(1);
  p_ = replicas_[0].layout.size;
  set_minimum(theta_star, U);
  load_data(data);
  if (opt_.energy) setup_energy();

  load_theta(replicas_[0], theta_star_);
  loss_star_ = eval_loss(replicas_[0]);
  if (!std::isfinite(loss_star_)) fail("escape: the loss at theta* is {} (not finite)", loss_star_);
  threshold_ = opt_.escape_loss > 0 ? opt_.escape_loss : opt_.escape_factor * loss_star_;
  if (!(threshold_ > 0))
    fail(
        "escape.escape_loss: L(theta*) = {} on the evaluation subset, so escape_factor gives no "
        "threshold; set an absolute escape_loss",
        loss_star_);

  data_checksum_ = checksum(data.x) + "/" + checksum(data.targets);
  theta_checksum_ = checksum(theta_star64_);
  u_checksum_ = checksum(U64_);
}

void Engine::setup_energy() {
  const auto& idx = opt_.energy_samples;
  for (int64_t i : idx)
    if (i < 0 || i >= n_)
      fail("escape.energy_samples: index {} is outside the data set's 0..{}", i, n_ - 1);
  // float64 whatever the model's dtype: D_{t,1} is followed over many orders of magnitude. When
  // the escape itself runs in float64 over all samples, these are the engine's own tensors.
  const auto f64 = at::TensorOptions().device(opt_.device).dtype(at::kDouble);
  energy_x_ = x_.to(f64).contiguous();
  energy_y_ = y_.to(f64).contiguous();
  if (!idx.empty()) {
    const at::Tensor it = at::tensor(idx, at::TensorOptions().dtype(at::kLong)).to(opt_.device);
    energy_x_ = energy_x_.index_select(0, it);
    energy_y_ = energy_y_.index_select(0, it);
  }
  energy_checksum_ = fmt::format("{}:{}", checksum(at::tensor(idx, at::kLong).to(at::kDouble)),
                                 checksum(energy_x_));
  // One product with the rows reads them once; the R-op makes three passes through the model and
  // its autograd graph: for Figure 3's paper scale (1e5 samples, p = 1e3) several times slower.
  const double row_bytes = 8.0 * static_cast<double>(energy_x_.size(0)) * static_cast<double>(p_) *
                           static_cast<double>(energy_y_.size(1));
  if (row_bytes <= opt_.energy_row_bytes) {
    CurvatureOptions co = energy_options();
    co.estimator = Estimator::PerSample;
    energy_shared_ = std::make_shared<CurvatureOperator>(energy_model(), energy_x_, energy_y_, co);
    // With fewer parameters than rows (Figure 3: p = 1e3 against 1e5 rows) the p x p matrix G
    // itself is smaller than its rows, and every form afterwards costs p^2, not rows x p.
    if (p_ <= CurvatureOperator::kMaxDenseP && p_ < energy_shared_->rows().size(0)) {
      energy_shared_->dense_matrix();
      energy_shared_->keep_dense_only();
    }
  }
  for (auto& rep : replicas_) add_energy_operator(rep);
  // lambda_1 on the energy samples themselves, so that X uses the G that Y uses, whatever the
  // accuracy of the stored eigenvalue.
  energy_lambda1_ = energy_form(replicas_[0], U64_.select(1, 0).contiguous());
  if (!(energy_lambda1_ > 0))
    fail("escape.energy: u_1^T G u_1 = {} over the energy samples is not positive",
         energy_lambda1_);
}

Net Engine::energy_model() const {
  Net m = factory_();
  if (!m) fail("escape: the model factory returned no model");
  m->to(opt_.device, at::kDouble);
  ParameterLayout layout = ParameterLayout::of(*m);
  {
    at::NoGradGuard no_grad;
    const auto parts = layout.split(theta_star64_);
    for (size_t k = 0; k < parts.size(); ++k) layout.tensors[k].copy_(parts[k]);
  }
  return m;
}

CurvatureOptions Engine::energy_options() const {
  CurvatureOptions co;
  co.loss = opt_.loss;
  co.matrix = MatrixKind::G;
  co.estimator = Estimator::Exact;
  // The R-op (double backward): forward-mode AD levels are process-wide in LibTorch, so
  // concurrent workers cannot each hold one.
  co.jvp = JvpMethod::ROp;
  co.batch_size = opt_.eval_batch;
  co.dtype = at::kDouble;
  co.device = opt_.device;
  co.probe = false;
  return co;
}

void Engine::add_energy_operator(Replica& rep) const {
  // A held matrix is only read by its forms, so the workers share it; streamed forms run the
  // model, so each worker has its own.
  rep.energy = energy_shared_ ? energy_shared_
                              : std::make_shared<CurvatureOperator>(energy_model(), energy_x_,
                                                                    energy_y_, energy_options());
}

double Engine::energy_form(Replica& rep, const at::Tensor& v) const {
  // Streamed: the R-op, as energy_options says (forward-mode AD levels are process-wide, and the
  // workers run concurrently).
  return rep.energy->quadratic_form(v);
}

void Engine::measure_energy(Replica& rep, const at::Tensor& delta, TrajectoryPoint* pt) const {
  const at::Tensor u1 = U64_.select(1, 0);
  const double c = at::dot(delta, u1).item<double>();
  pt->energy_x = energy_lambda1_ * c * c;
  pt->energy_y = energy_form(rep, delta - c * u1);
  pt->d1 = pt->energy_y / pt->energy_x;
}

void Engine::set_minimum(const at::Tensor& theta_star, const at::Tensor& U) {
  if (!theta_star.defined() || theta_star.numel() != p_)
    fail("escape: theta* has {} entries but the model has {} trainable parameters",
         theta_star.defined() ? theta_star.numel() : 0, p_);
  if (!U.defined() || U.dim() != 2)
    fail("escape: U must be a p x K matrix of eigenvectors (p = {})", p_);
  at::Tensor u = U;
  if (U.size(0) != p_ && U.size(1) == p_) u = U.t();
  if (u.size(0) != p_)
    fail("escape: U is {}x{} but the model has p = {} parameters", U.size(0), U.size(1), p_);
  K_ = u.size(1);
  if (K_ < 1) fail("escape: U has no eigenvectors");
  for (int64_t k : opt_.ks)
    if (k < 1 || k > K_) fail("escape.ks: k = {} is outside 1..{} (the eigenvectors given)", k, K_);

  const auto f64 = at::TensorOptions().device(opt_.device).dtype(at::kDouble);
  U64_ = u.detach().to(f64).contiguous();
  const double ortho = (at::mm(U64_.t(), U64_) - at::eye(K_, f64)).abs().max().item<double>();
  // Eigenvectors from a float32 operator are orthonormal to ~1e-6; anything worse is a wrong input.
  if (!(ortho < 1e-4))
    fail("escape: the columns of U are not orthonormal (max |U^T U - I| = {:.2e})", ortho);
  theta_star64_ = theta_star.detach().reshape(-1).to(f64).contiguous();
  theta_star_ = theta_star64_.to(opt_.dtype);
}

void Engine::load_data(const Dataset& data) {
  const auto dev = opt_.device;
  x_ = data.x.to(dev, opt_.dtype);
  y_ = data.targets.to(dev, opt_.dtype);
  labels_ = data.labels.defined() ? data.labels.to(dev) : at::Tensor();
  auto subset = [&](int64_t size, const std::vector<int64_t>& idx, at::Tensor* sx, at::Tensor* sy,
                    at::Tensor* sl) {
    if (size == 0 || size >= n_) {
      *sx = x_, *sy = y_, *sl = labels_;
      return;
    }
    const at::Tensor it = at::tensor(idx, at::TensorOptions().dtype(at::kLong)).to(dev);
    *sx = x_.index_select(0, it);
    *sy = y_.index_select(0, it);
    *sl = labels_.defined() ? labels_.index_select(0, it) : at::Tensor();
  };
  subset(opt_.eval_samples, escape_eval_subset(n_, opt_), &ex_, &ey_, &el_);
  if (opt_.optimizer == Optimizer::Gd)
    subset(opt_.gd_samples, escape_gd_subset(n_, opt_), &gx_, &gy_, &gl_);
  gd_is_eval_ = opt_.optimizer == Optimizer::Gd && gx_.is_same(ex_);
}

void Engine::ensure_replicas(size_t count) {
  while (replicas_.size() < count) {
    Net m = factory_();
    if (!m) fail("escape: the model factory returned no model");
    m->to(opt_.device, opt_.dtype);
    m->train();
    Replica r{m, ParameterLayout::of(*m), nullptr};
    if (!replicas_.empty() && r.layout.size != replicas_[0].layout.size)
      fail("escape: the model factory built models of different sizes ({} and {})",
           replicas_[0].layout.size, r.layout.size);
    if (energy_x_.defined()) add_energy_operator(r);
    replicas_.push_back(std::move(r));
  }
}

void Engine::load_theta(Replica& rep, const at::Tensor& theta) const {
  at::NoGradGuard no_grad;
  const auto parts = rep.layout.split(theta);
  for (size_t k = 0; k < parts.size(); ++k) {
    rep.layout.tensors[k].copy_(parts[k]);
    rep.layout.tensors[k].mutable_grad() = at::Tensor();
  }
}

double Engine::eval_loss(Replica& rep) const {
  return evaluate(*rep.model, ex_, ey_, el_, opt_.loss, opt_.eval_batch).loss;
}

TrajectoryPoint Engine::measure(Replica& rep, int64_t run, int64_t step, double loss) const {
  TrajectoryPoint pt;
  pt.run = run;
  pt.step = step;
  pt.loss = std::isnan(loss) ? eval_loss(rep) : loss;
  const at::Tensor delta = rep.layout.values().to(at::kDouble) - theta_star64_;
  escape_projections(delta, U64_, opt_.ks, &pt.distance, &pt.p, &pt.r);
  if (opt_.energy) measure_energy(rep, delta, &pt);
  return pt;
}

RunResult Engine::summarize(int64_t run, std::vector<TrajectoryPoint> points) const {
  RunResult r;
  r.run = run;
  for (const auto& pt : points)
    if (!(pt.loss <= threshold_)) {  // NaN counts: the run has left the minimum
      r.escaped = true;
      r.escape_step = pt.step;
      break;
    }
  if (!points.empty()) {
    const auto& last = points.back();
    r.steps = last.step;
    r.final_loss = last.loss;
    r.final_distance = last.distance;
    r.final_p = last.p;
    r.final_r = last.r;
  }
  if (r.steps >= opt_.steps)
    r.status = "completed";
  else if (opt_.stop_at_escape && r.escaped && r.escape_step == r.steps)
    r.status = "escaped";
  else
    r.status = "diverged";
  r.trajectory = std::move(points);
  return r;
}

at::Tensor Engine::theta0(int64_t run) const {
  if (!(opt_.perturb > 0)) return theta_star_;
  return (theta_star64_ + escape_perturbation(p_, opt_.perturb, opt_.seed, run).to(opt_.device))
      .to(opt_.dtype);
}

void Engine::start_run(Replica& rep, int64_t run) const {
  load_theta(rep, theta0(run));
  rep.model->train();
}

at::Tensor Engine::gd_gradient(Replica& rep) const {
  clear_gradients(rep.layout.tensors);
  const int64_t ngd = gx_.defined() ? gx_.size(0) : 0;
  at::Tensor loss;
  // Full-batch gradient by chunks, each weighted by its share so a short chunk is exact.
  for (int64_t s = 0; s < ngd; s += opt_.eval_batch) {
    const int64_t e = std::min(ngd, s + opt_.eval_batch);
    const at::Tensor out = rep.model->forward(gx_.slice(0, s, e));
    const at::Tensor lab = gl_.defined() ? gl_.slice(0, s, e) : at::Tensor();
    const at::Tensor part =
        batch_loss(out, gy_.slice(0, s, e), lab, opt_.loss) * (double(e - s) / ngd);
    part.backward();
    loss = loss.defined() ? loss + part.detach() : part.detach();
  }
  return loss;
}

bool Engine::log_point(Replica& rep, int64_t run, int64_t step, double loss,
                       const EscapeHooks& hooks, Trajectory* traj) const {
  traj->points.push_back(measure(rep, run, step, loss));
  const auto& pt = traj->points.back();
  if (hooks.on_point) hooks.on_point(pt);
  traj->escaped = traj->escaped || !(pt.loss <= threshold_);
  if (opt_.stop_at_escape && !(pt.loss <= threshold_)) return true;
  // Past this point the trajectory only overflows.
  const double cap = opt_.max_loss_factor * threshold_;
  return !std::isfinite(pt.loss) || pt.loss > cap || !std::isfinite(pt.distance);
}

bool Engine::log_if_due(Replica& rep, int64_t run, int64_t step, const at::Tensor& step_loss,
                        const EscapeHooks& hooks, Trajectory* traj,
                        const std::function<void()>& load) const {
  const bool due = step % opt_.log_every == 0;
  // GD's loss over the evaluation subset is the loss a log needs (the models have no
  // train/eval-dependent layers): no second forward pass to log every step.
  const bool gd = opt_.optimizer == Optimizer::Gd;
  const double known = gd_is_eval_ ? step_loss.item<double>() : std::nan("");
  // Past its stability edge GD's loss grows by about (eta lambda_1 - 1)^2 a step, so between two
  // logged points it can go from below the threshold to overflow and the trajectory would show
  // no escaped point: the full-batch loss at hand triggers a point at the step it first exceeds
  // the threshold. (SGD is logged on its grid only: its batch loss is a noisy trigger, and
  // reading it every step would stall a GPU's queue once per step.)
  const bool trigger = gd && !due && !traj->escaped &&
                       !((gd_is_eval_ ? known : step_loss.item<double>()) <= threshold_);
  if (!due && !trigger) return false;
  if (load) load();
  return log_point(rep, run, step, known, hooks, traj);
}

namespace {

// t (n, ...) repeated for each of `count` replicas: (count * n, ...), replica-major.
at::Tensor repeat_rows(const at::Tensor& t, int64_t count) {
  if (!t.defined()) return t;
  std::vector<int64_t> shape{count};
  shape.insert(shape.end(), t.sizes().begin(), t.sizes().end());
  std::vector<int64_t> flat{-1};
  flat.insert(flat.end(), t.sizes().begin() + 1, t.sizes().end());
  return t.unsqueeze(0).expand(shape).reshape(flat);
}

}  // namespace

at::Tensor Engine::replica_sgd_gradient(ReplicaBatch& batch, const at::Tensor& idx) const {
  const at::Tensor out = batch.forward(x_.index_select(0, idx));
  const at::Tensor losses = replica_losses(
      out, y_.index_select(0, idx), labels_.defined() ? labels_.index_select(0, idx) : at::Tensor(),
      opt_.loss, batch.count());
  batch.clear_gradients();
  // The replicas share no parameter, so each one's gradient of the sum is that of its own loss.
  losses.sum().backward();
  return losses.detach();
}

at::Tensor Engine::replica_gd_gradient(ReplicaBatch& batch) const {
  batch.clear_gradients();
  const int64_t ngd = gx_.defined() ? gx_.size(0) : 0, R = batch.count();
  at::Tensor loss;
  for (int64_t s = 0; s < ngd; s += opt_.eval_batch) {
    const int64_t e = std::min(ngd, s + opt_.eval_batch);
    const at::Tensor out = batch.forward(repeat_rows(gx_.slice(0, s, e), R));
    const at::Tensor lab = gl_.defined() ? repeat_rows(gl_.slice(0, s, e), R) : at::Tensor();
    const at::Tensor part =
        replica_losses(out, repeat_rows(gy_.slice(0, s, e), R), lab, opt_.loss, R) *
        (double(e - s) / ngd);
    part.sum().backward();
    loss = loss.defined() ? loss + part.detach() : part.detach();
  }
  return loss;
}

// What the step loop asks of the runs it advances (live runs in the loop's order).
class Engine::Stepper {
 public:
  virtual ~Stepper() = default;
  // GD: each live run's full-batch gradient at its theta; returns their losses.
  virtual at::Tensor gd_gradient() = 0;
  virtual void update(double lr) = 0;  // theta <- theta - lr * grad, every live run
  // SGD: each live run's gradient on its batch `idx[i]`, then the update.
  virtual void sgd_step(const std::vector<at::Tensor>& idx, double lr) = 0;
  virtual void load(size_t i) = 0;  // live run i's theta into the replica model, for a log
  // Keeps only the live runs at `rows` (ascending, not empty).
  virtual void keep(const std::vector<int64_t>& rows) = 0;
};

// One run on the replica model itself: its own parameters and the plain ops, so that the CPU
// default computes exactly what the model alone computes (the reference values, the PyTorch
// mirror and resumed sweeps hold it to the bit).
class Engine::SingleStepper : public Engine::Stepper {
 public:
  SingleStepper(const Engine& e, Replica& rep, int64_t run) : e_(e), rep_(rep) {
    e_.start_run(rep_, run);
  }
  at::Tensor gd_gradient() override { return e_.gd_gradient(rep_).reshape({1}); }
  void update(double lr) override { ng::sgd_step(rep_.layout.tensors, lr); }
  void sgd_step(const std::vector<at::Tensor>& idx, double lr) override {
    sgd_gradient(*rep_.model, rep_.layout.tensors, e_.x_, e_.y_, e_.labels_, idx.at(0),
                 e_.opt_.loss);
    update(lr);
  }
  void load(size_t) override {}                       // the model holds the run's theta
  void keep(const std::vector<int64_t>&) override {}  // its one run is live until the loop ends

 private:
  const Engine& e_;
  Replica& rep_;
};

// The runs of a group on one ReplicaBatch; a log loads its run into the replica model.
class Engine::GroupStepper : public Engine::Stepper {
 public:
  GroupStepper(const Engine& e, Replica& rep, const std::vector<int64_t>& runs)
      : e_(e),
        rep_(rep),
        batch_(*rep.model, rep.layout, static_cast<int64_t>(runs.size())),
        // An SGD step of the group (gradients and update) on the batches' indices: one CUDA
        // graph where it can be (GD reads its losses before updating, so it runs eagerly).
        sgd_(
            [this](const std::vector<at::Tensor>& in, double lr) {
              const at::Tensor losses = e_.replica_sgd_gradient(batch_, in.at(0));
              batch_.step(lr);
              return losses;
            },
            batch_.stacks(), e.opt_.cuda_graphs && e.opt_.optimizer == Optimizer::Sgd) {
    for (size_t i = 0; i < runs.size(); ++i)
      batch_.load(static_cast<int64_t>(i), e_.theta0(runs[i]));
    rep_.model->train();
  }
  at::Tensor gd_gradient() override { return e_.replica_gd_gradient(batch_); }
  void update(double lr) override { batch_.step(lr); }
  void sgd_step(const std::vector<at::Tensor>& idx, double lr) override {
    sgd_.run({at::cat(idx)}, lr);
  }
  void load(size_t i) override { e_.load_theta(rep_, batch_.values(static_cast<int64_t>(i))); }
  void keep(const std::vector<int64_t>& rows) override {
    if (static_cast<int64_t>(rows.size()) == batch_.count()) return;
    batch_.keep(rows);
    sgd_.reset(batch_.stacks());
  }

 private:
  const Engine& e_;
  Replica& rep_;
  ReplicaBatch batch_;
  GraphedStep sgd_;
};

// Logs the live runs due at `step` (all of them at the last); `losses`, when defined, are their
// GD losses on the host. Marks the runs that end there.
std::vector<char> Engine::log_runs(Replica& rep, Stepper& stepper, int64_t step,
                                   std::vector<Member>* live, const at::Tensor& losses,
                                   const EscapeHooks& hooks) const {
  std::vector<char> ends(live->size(), 1);
  for (size_t i = 0; i < live->size(); ++i) {
    Member& m = (*live)[i];
    if (step == opt_.steps) {
      stepper.load(i);
      log_point(rep, m.run, step, std::nan(""), hooks, &m.traj);
      continue;
    }
    const at::Tensor loss = losses.defined() ? losses[static_cast<int64_t>(i)] : at::Tensor();
    ends[i] =
        log_if_due(rep, m.run, step, loss, hooks, &m.traj, [&stepper, i] { stepper.load(i); });
  }
  return ends;
}

void Engine::drop_ended(const std::vector<char>& ends, std::chrono::steady_clock::time_point t0,
                        const std::function<void(RunResult)>& on_done, Stepper& stepper,
                        std::vector<Member>* live) const {
  if (std::find(ends.begin(), ends.end(), 1) == ends.end()) return;
  std::vector<int64_t> rows;
  std::vector<Member> still;
  for (size_t i = 0; i < live->size(); ++i) {
    Member& m = (*live)[i];
    if (!ends[i]) {
      rows.push_back(static_cast<int64_t>(i));
      still.push_back(std::move(m));
    } else if (m.wanted) {
      RunResult r = summarize(m.run, std::move(m.traj.points));
      r.seconds = seconds_since(t0);
      on_done(std::move(r));
    }
  }
  *live = std::move(still);
  if (!rows.empty()) stepper.keep(rows);
}

// Iteration `step` logs theta_step when due and ends the runs that end there; the others take
// their gradients at theta_step and update. GD's logs need the loss of its gradient pass, so GD
// takes the gradients first (and updates after the logs); SGD's gradients do not change theta,
// so SGD logs first and steps only the runs still live.
void Engine::simulate(Replica& rep, const std::vector<int64_t>& group,
                      const std::vector<char>& wanted, bool batched, const EscapeHooks& hooks,
                      const std::function<void(RunResult)>& on_done, bool* cancelled) const {
  const auto t0 = std::chrono::steady_clock::now();
  *cancelled = false;
  std::unique_ptr<Stepper> stepper;
  if (batched)
    stepper = std::make_unique<GroupStepper>(*this, rep, group);
  else
    stepper = std::make_unique<SingleStepper>(*this, rep, group.at(0));
  std::vector<Member> live;
  for (size_t i = 0; i < group.size(); ++i)
    live.push_back({group[i],
                    wanted[i] != 0,
                    BatchOrder(n_, opt_.batch, escape_run_seed(opt_.seed, group[i]), opt_.device),
                    {}});
  const bool gd = opt_.optimizer == Optimizer::Gd;
  for (int64_t step = 0; !live.empty(); ++step) {
    if (hooks.should_stop && hooks.should_stop()) {
      *cancelled = true;
      return;
    }
    const bool last = step == opt_.steps;
    // GD reads its losses every step (log_if_due's trigger): one transfer for the group.
    const at::Tensor losses =
        !last && gd ? stepper->gd_gradient().to(at::kCPU, at::kDouble) : at::Tensor();
    const std::vector<char> ends = log_runs(rep, *stepper, step, &live, losses, hooks);
    if (!last && gd) stepper->update(opt_.lr);
    drop_ended(ends, t0, on_done, *stepper, &live);
    if (last || gd || live.empty()) continue;
    std::vector<at::Tensor> idx;
    for (auto& m : live) idx.push_back(m.order.at(step));
    stepper->sgd_step(idx, opt_.lr);
  }
}

int64_t Engine::group_size() {
  int64_t g = opt_.replicas;
  if (g == 0) g = opt_.device.is_cuda() ? kAutoReplicasCuda : 1;
  g = std::min(g, opt_.runs);
  if (g < 2) return 1;
  if (!replica_probed_) {
    replica_probed_ = true;
    Replica& rep = replicas_[0];
    replica_refusal_ = escape_detail::replica_refusal(*rep.model, rep.layout,
                                                      x_.slice(0, 0, std::min<int64_t>(n_, 2)));
  }
  return replica_refusal_.empty() ? g : 1;
}

namespace {

// What execute hands to its workers: single runs, or (group > 1) each fixed group
// [g group, (g + 1) group) of run indices below `runs_total` that holds a run asked for.
std::vector<std::vector<int64_t>> tasks_of(const std::vector<int64_t>& runs, int64_t group,
                                           int64_t runs_total) {
  std::vector<std::vector<int64_t>> tasks;
  if (runs.empty()) return tasks;
  if (group == 1) {
    for (int64_t r : runs) tasks.push_back({r});
    return tasks;
  }
  const int64_t last = std::max(runs_total, *std::max_element(runs.begin(), runs.end()) + 1);
  std::vector<int64_t> starts;
  for (int64_t r : runs)
    if (std::find(starts.begin(), starts.end(), r / group * group) == starts.end())
      starts.push_back(r / group * group);
  for (int64_t g : starts) {
    tasks.emplace_back();
    for (int64_t r = g; r < std::min(g + group, last); ++r) tasks.back().push_back(r);
  }
  return tasks;
}

}  // namespace

std::pair<int64_t, int64_t> Engine::concurrency(int64_t group) const {
  const int64_t avail = std::max(1, at::get_num_threads());
  int64_t workers = opt_.workers, intra = opt_.intra_threads;
  if (opt_.device.is_cuda()) {
    // One device queue: concurrent host threads would only contend for it.
    if (workers == 0) workers = 1;
    if (intra == 0) intra = avail;
  } else {
    // From opt.runs, not from the runs left: a resumed sweep then runs with the same intra-op
    // thread count, and so bit for bit the same arithmetic, as an uninterrupted one.
    const int64_t units = (opt_.runs + group - 1) / group;
    if (workers == 0)
      workers = intra > 0 ? std::max<int64_t>(1, avail / intra) : std::min(avail, units);
    if (intra == 0) intra = std::max<int64_t>(1, avail / workers);
  }
  return {std::max<int64_t>(1, workers), intra};
}

std::vector<RunResult> Engine::execute(const std::vector<int64_t>& runs, const EscapeHooks& hooks) {
  const std::string what = fmt::format(
      "{} escape runs ({} run(s) per batched group, {})", optimizer_names().name(opt_.optimizer),
      group_size(),
      opt_.optimizer == Optimizer::Sgd ? fmt::format("batch {}", opt_.batch) : "full batch");
  return with_memory_use(what, "lower --replicas, --batch, --gd-samples or --eval-samples",
                         [&] { return execute_runs(runs, hooks); });
}

std::vector<RunResult> Engine::execute_runs(const std::vector<int64_t>& runs,
                                            const EscapeHooks& hooks) {
  check_options(opt_);
  const int64_t group = group_size();
  group_used_ = group;
  const auto tasks = tasks_of(runs, group, opt_.runs);
  const int64_t todo = static_cast<int64_t>(tasks.size());
  const auto [planned, intra] = concurrency(group);
  const int64_t workers = std::max<int64_t>(1, std::min(planned, todo));
  workers_used_ = workers;
  intra_used_ = intra;
  std::vector<RunResult> results(runs.size());
  std::vector<char> done(runs.size(), 0);
  std::map<int64_t, size_t> position;
  for (size_t j = 0; j < runs.size(); ++j) position[runs[j]] = j;
  if (todo == 0) return {};
  ensure_replicas(static_cast<size_t>(workers));

  IntraThreads threads_scope(static_cast<int>(intra));
  std::atomic<int64_t> next{0};
  std::atomic<bool> abort{false};
  std::mutex mu;
  EscapeHooks inner;
  inner.should_stop = [&] { return abort.load() || (hooks.should_stop && hooks.should_stop()); };
  if (hooks.on_point)
    inner.on_point = [&](const TrajectoryPoint& pt) {
      std::lock_guard<std::mutex> lock(mu);
      hooks.on_point(pt);
    };
  auto report = [&](RunResult r) {
    std::lock_guard<std::mutex> lock(mu);
    if (hooks.on_run_done) hooks.on_run_done(r);
    const size_t j = position.at(r.run);
    results[j] = std::move(r);
    done[j] = 1;
  };
  auto work = [&](int64_t w) {
    while (!abort.load()) {
      const int64_t j = next.fetch_add(1);
      if (j >= todo) break;
      bool cancelled = false;
      std::vector<char> wanted;
      for (int64_t r : tasks[j]) wanted.push_back(position.count(r) ? 1 : 0);
      simulate(replicas_[w], tasks[j], wanted, group > 1, inner, report, &cancelled);
      if (cancelled) break;
    }
  };
  run_concurrently(workers, work, &abort);
  std::vector<RunResult> out;
  for (size_t j = 0; j < results.size(); ++j)
    if (done[j]) out.push_back(std::move(results[j]));
  return out;
}

json Engine::settings() const {
  json j;
  j["format"] = "noisegeom-escape-sweep-2";
  j["optimizer"] = optimizer_names().name(opt_.optimizer);
  j["lr"] = opt_.lr;
  j["steps"] = opt_.steps;
  j["batch"] = opt_.batch;
  j["ks"] = opt_.ks;
  j["log_every"] = opt_.log_every;
  j["perturb"] = opt_.perturb;
  j["seed"] = opt_.seed;
  j["loss"] = loss_names().name(opt_.loss);
  j["eval_samples"] = opt_.eval_samples;
  j["eval_batch"] = opt_.eval_batch;
  j["gd_samples"] = opt_.gd_samples;
  j["escape_factor"] = opt_.escape_factor;
  j["escape_loss"] = opt_.escape_loss;
  j["stop_at_escape"] = opt_.stop_at_escape;
  j["max_loss_factor"] = opt_.max_loss_factor;
  j["dtype"] = dtype_names().name(opt_.dtype);
  j["num_samples"] = n_;
  j["parameter_count"] = p_;
  j["eigenvectors"] = K_;
  j["data_checksum"] = data_checksum_;
  j["theta_star_checksum"] = theta_checksum_;
  j["eigenvector_checksum"] = u_checksum_;
  // Only when asked: sweeps made without energy keep the settings they were made with.
  if (opt_.energy) {
    j["energy"] = true;
    j["energy_samples"] =
        opt_.energy_samples.empty() ? n_ : static_cast<int64_t>(opt_.energy_samples.size());
    j["energy_samples_checksum"] = energy_checksum_;
  }
  return j;
}

std::string Engine::csv_header() const {
  std::string h = "run,step,loss,distance";
  for (int64_t k : opt_.ks) h += fmt::format(",p_{},r_{}", k, k);
  if (opt_.energy) h += ",energy_x,energy_y,D_1";
  return h;
}

std::string Engine::to_csv(const RunResult& r) const {
  // "{}" prints the shortest decimal that reads back to the same double.
  std::string s = csv_header() + "\n";
  for (const auto& pt : r.trajectory) {
    s += fmt::format("{},{},{},{}", pt.run, pt.step, pt.loss, pt.distance);
    for (size_t j = 0; j < pt.p.size(); ++j) s += fmt::format(",{},{}", pt.p[j], pt.r[j]);
    if (opt_.energy) s += fmt::format(",{},{},{}", pt.energy_x, pt.energy_y, pt.d1);
    s += "\n";
  }
  return s;
}

std::vector<TrajectoryPoint> Engine::parse_csv(const std::string& text, const std::string& path,
                                               int64_t run) const {
  std::istringstream in(text);
  std::string line;
  if (!std::getline(in, line) || line != csv_header())
    fail("{}: not a run file of this sweep (header '{}', expected '{}')", path, line, csv_header());
  std::vector<TrajectoryPoint> pts;
  const size_t cols = 4 + 2 * opt_.ks.size() + (opt_.energy ? 3 : 0);
  int64_t row = 1;
  while (std::getline(in, line)) {
    ++row;
    if (line.empty()) continue;
    std::vector<double> v;
    const char* c = line.c_str();
    while (true) {
      char* end = nullptr;
      v.push_back(std::strtod(c, &end));
      if (end == c) fail("{}: line {}: not a number", path, row);
      if (*end == '\0') break;
      if (*end != ',') fail("{}: line {}: expected ',' after a value", path, row);
      c = end + 1;
    }
    if (v.size() != cols) fail("{}: line {}: {} values, expected {}", path, row, v.size(), cols);
    TrajectoryPoint pt;
    pt.run = static_cast<int64_t>(v[0]);
    pt.step = static_cast<int64_t>(v[1]);
    if (pt.run != run) fail("{}: line {}: run {} in the file of run {}", path, row, pt.run, run);
    pt.loss = v[2];
    pt.distance = v[3];
    for (size_t j = 0; j < opt_.ks.size(); ++j) {
      pt.p.push_back(v[4 + 2 * j]);
      pt.r.push_back(v[5 + 2 * j]);
    }
    if (opt_.energy) {
      const size_t e = 4 + 2 * opt_.ks.size();
      pt.energy_x = v[e];
      pt.energy_y = v[e + 1];
      pt.d1 = v[e + 2];
    }
    pts.push_back(std::move(pt));
  }
  if (pts.empty()) fail("{}: no logged points", path);
  return pts;
}

}  // namespace escape_detail

std::string sweep_files::run_file(int64_t run) {
  return fmt::format("run_{:04d}.csv", run);
}

int64_t default_escape_runs(Optimizer o) {
  return o == Optimizer::Sgd ? 50 : 1;
}

namespace {
EscapeOptions with_runs(EscapeOptions o) {
  if (o.runs == 0) o.runs = default_escape_runs(o.optimizer);
  return o;
}
}  // namespace

namespace {

// A result of `runs`, with the engine's threshold, energy and concurrency, timed from t0.
EscapeResult engine_result(const escape_detail::Engine& engine, std::vector<RunResult> runs,
                           std::chrono::steady_clock::time_point t0) {
  EscapeResult res;
  res.runs = std::move(runs);
  res.loss_star = engine.loss_star();
  res.threshold = engine.threshold();
  res.energy_lambda1 = engine.energy_lambda1();
  res.workers = engine.workers_used();
  res.intra_threads = engine.intra_used();
  res.replicas = engine.group_used();
  res.seconds = seconds_since(t0);
  return res;
}

}  // namespace

EscapeResult run_escape(const ModelFactory& factory, const at::Tensor& theta_star,
                        const at::Tensor& U, const Dataset& data, const EscapeOptions& options,
                        const EscapeHooks& hooks) {
  const auto t0 = std::chrono::steady_clock::now();
  const EscapeOptions opt = with_runs(options);
  escape_detail::Engine engine(factory, theta_star, U, data, opt);
  std::vector<int64_t> which(opt.runs);
  for (int64_t r = 0; r < opt.runs; ++r) which[r] = r;
  EscapeResult res = engine_result(engine, engine.execute(which, hooks), t0);
  res.computed = static_cast<int64_t>(res.runs.size());
  return res;
}

namespace {

// Writes dir/escape.json, or checks that the runs already there were made with these settings.
void check_sweep_settings(const std::string& path, const json& settings) {
  if (!fs::exists(path)) {
    write_json(path, settings);
    return;
  }
  const json stored = read_json(path);
  if (!stored.is_object())
    fail(
        "{}: not a JSON object (a damaged file?); remove it to start the sweep again, or use "
        "another directory",
        path);
  const std::string key = first_difference(settings, stored);
  if (!key.empty())
    fail(
        "{}: the runs there were made with different settings ({} differs); use the same "
        "settings to resume, or another directory",
        path, key);
}

std::string summary_csv(const std::vector<int64_t>& ks, const std::vector<RunResult>& runs) {
  std::string summary = "run,status,escaped,escape_step,steps,final_loss,final_distance";
  for (int64_t k : ks) summary += fmt::format(",p_{},r_{}", k, k);
  summary += "\n";
  for (const RunResult& x : runs) {
    summary += fmt::format("{},{},{},{},{},{},{}", x.run, x.status, x.escaped ? 1 : 0,
                           x.escape_step, x.steps, x.final_loss, x.final_distance);
    for (size_t j = 0; j < x.final_p.size(); ++j)
      summary += fmt::format(",{},{}", x.final_p[j], x.final_r[j]);
    summary += "\n";
  }
  return summary;
}

// The runs a sweep holds so far, each once, with how many were reused and computed, and the
// texts of this rank's that the other ranks have not seen yet.
struct SweepRuns {
  explicit SweepRuns(int64_t runs) : by_run(static_cast<size_t>(runs)), have(runs, 0) {}
  std::vector<RunResult> by_run;
  std::vector<char> have;
  int64_t reused = 0, computed = 0;
  std::vector<sweep_ranks::RunText> texts;

  bool has(int64_t run) const { return have.at(static_cast<size_t>(run)) != 0; }
  void add(RunResult r, bool was_reused) {
    const auto k = static_cast<size_t>(r.run);
    r.reused = was_reused;
    by_run[k] = std::move(r);
    have[k] = 1;
    ++(was_reused ? reused : computed);
  }
};

// Rank 0's finished run files (those not in `todo`), read as a resumed sweep reads them; their
// texts go to the other ranks too.
void read_finished_runs(const escape_detail::Engine& engine,
                        const std::function<std::string(int64_t)>& run_path,
                        const std::vector<int64_t>& todo, SweepRuns& runs) {
  if (!dist().is_root()) return;
  for (int64_t r = 0, j = 0; r < static_cast<int64_t>(runs.have.size()); ++r) {
    if (j < static_cast<int64_t>(todo.size()) && todo[j] == r) {
      ++j;
      continue;
    }
    std::string text = read_file(run_path(r));
    runs.add(engine.summarize(r, engine.parse_csv(text, run_path(r), r)), true);
    if (dist().active()) runs.texts.push_back({r, true, std::move(text)});
  }
}

// The runs other ranks hold, read the way a resumed sweep reads its files (parsed from their text,
// so every rank summarizes the same numbers); rank 0 writes those not on its disk yet and reports
// the computed ones.
void collect_other_ranks_runs(const escape_detail::Engine& engine,
                              const std::function<std::string(int64_t)>& run_path,
                              const std::vector<sweep_ranks::RunText>& all,
                              const EscapeHooks& hooks, SweepRuns& runs) {
  const bool writer = dist().is_root();
  for (const sweep_ranks::RunText& t : all) {
    if (t.run < 0 || t.run >= static_cast<int64_t>(runs.have.size()))
      fail("escape sweep: run {} from another rank is not in this sweep", t.run);
    if (runs.has(t.run)) continue;
    const std::string path = run_path(t.run);
    if (writer && !fs::exists(path)) write_file_atomic(path, t.text);
    runs.add(engine.summarize(t.run, engine.parse_csv(t.text, path, t.run)), t.reused);
    if (writer && hooks.on_run_done && !t.reused) hooks.on_run_done(runs.by_run[t.run]);
  }
}

// Rounds of a sweep whose ranks do not all see rank 0's directory (at most).
constexpr int64_t kRoundsWithoutSharedFiles = 8;

// This rank's runs of `todo`, in the rounds that end in an exchange with the other ranks: one
// round where every rank writes its own run files into rank 0's directory; otherwise up to
// kRoundsWithoutSharedFiles, so that a rank killed mid-sweep loses its round at most. A rank that
// ends its round early waits for the others: few rounds, each with work for all its workers.
std::vector<std::vector<int64_t>> sweep_rounds(escape_detail::Engine& engine,
                                               const std::vector<int64_t>& todo,
                                               bool every_rank_writes) {
  const int64_t group = engine.group_size();
  const std::vector<int64_t> mine = sweep_ranks::share(todo, group);
  if (every_rank_writes) return {mine};
  return sweep_ranks::padded_to_every_rank(sweep_ranks::in_rounds(
      mine, group, engine.concurrency(group).first, kRoundsWithoutSharedFiles));
}

// The sweep's result from its runs, in run order; rank 0 writes the summary.
EscapeResult finish_sweep(const escape_detail::Engine& engine, const fs::path& root,
                          const EscapeOptions& opt, SweepRuns runs,
                          std::chrono::steady_clock::time_point t0) {
  std::vector<RunResult> in_order;
  for (int64_t r = 0; r < opt.runs; ++r)
    if (runs.has(r)) in_order.push_back(std::move(runs.by_run[r]));
  if (dist().is_root())
    write_file_atomic((root / sweep_files::kSummary).string(), summary_csv(opt.ks, in_order));
  EscapeResult res = engine_result(engine, std::move(in_order), t0);
  res.reused = runs.reused;
  res.computed = runs.computed;
  return res;
}

}  // namespace

EscapeResult run_escape_sweep(const std::string& dir, const ModelFactory& factory,
                              const at::Tensor& theta_star, const at::Tensor& U,
                              const Dataset& data, const EscapeOptions& options,
                              const EscapeHooks& hooks) {
  const auto t0 = std::chrono::steady_clock::now();
  const EscapeOptions opt = with_runs(options);
  escape_detail::Engine engine(factory, theta_star, U, data, opt);
  const fs::path root(dir);
  // Under a launcher (src/dist), rank 0's directory says what is left, the ranks split it, and
  // every finished run's text reaches rank 0, which writes the summaries. One process: as before.
  sweep_ranks::require_same_settings(engine.settings().dump());
  auto run_path = [&](int64_t r) { return (root / sweep_files::run_file(r)).string(); };
  const std::vector<int64_t> todo = sweep_ranks::runs_from_text(decided_by_root([&] {
    check_sweep_settings((root / sweep_files::kSettings).string(), engine.settings());
    std::vector<int64_t> left;
    for (int64_t r = 0; r < opt.runs; ++r)
      if (!fs::exists(run_path(r))) left.push_back(r);
    return sweep_ranks::runs_text(left);
  }));
  SweepRuns runs(opt.runs);
  read_finished_runs(engine, run_path, todo, runs);
  // A rank that sees rank 0's directory writes its runs there as they finish, so that a rank
  // killed mid-sweep (SIGKILL, a crash) loses none of them.
  bool every_rank_writes = true;
  const bool writes_runs = sweep_ranks::sees_roots_directory(dir, &every_rank_writes);
  EscapeHooks inner;
  inner.should_stop = hooks.should_stop;
  inner.on_point = hooks.on_point;
  inner.on_run_done = [&](const RunResult& r) {
    // Written before anyone hears of the run, so a reported run is always on disk.
    const std::string text = engine.to_csv(r);
    if (writes_runs) write_file_atomic(run_path(r.run), text);
    if (dist().active()) runs.texts.push_back({r.run, false, text});
    if (hooks.on_run_done) hooks.on_run_done(r);
  };
  const auto rounds = sweep_rounds(engine, todo, every_rank_writes);
  for (size_t k = 0; k < rounds.size(); ++k) {
    // Round 0 runs even when empty: execute checks the options and settles the group, workers
    // and threads that the result reports.
    if (k == 0 || !rounds[k].empty())
      for (auto& r : engine.execute(rounds[k], inner)) runs.add(std::move(r), false);
    if (!dist().active()) break;
    // After a stop too: the runs the other ranks finished are written for the resume.
    collect_other_ranks_runs(engine, run_path, sweep_ranks::gather(runs.texts), hooks, runs);
    runs.texts.clear();
    if (on_any_rank(hooks.should_stop && hooks.should_stop())) break;
  }
  return finish_sweep(engine, root, opt, std::move(runs), t0);
}

}  // namespace ng
