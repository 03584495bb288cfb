// The curvature operators of curvature.h: G, Sigma, Sigma0 and the Hessian as exact (streamed)
// or per-sample products, and the name tables of their kinds.
#include "src/curvature/curvature.h"

#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <c10/core/GradMode.h>
#include <torch/csrc/autograd/autograd.h>
#include <torch/nn/module.h>

#include <algorithm>
#include <atomic>
#include <mutex>
#include <optional>
#include <set>

#include "src/core/dtypes.h"
#include "src/core/error.h"
#include "src/core/memory.h"
#include "src/core/random.h"
#include "src/core/threads.h"
#include "src/curvature/per_sample.h"

namespace ng {

namespace {

using torch::autograd::grad;

// Forward-mode AD level, exited on every path: a level left open would leak tangents into the
// next product.
class DualLevel {
 public:
  DualLevel() : level_(torch::autograd::forward_ad::enter_dual_level()) {}
  ~DualLevel() { torch::autograd::forward_ad::exit_dual_level(level_); }
  DualLevel(const DualLevel&) = delete;
  DualLevel& operator=(const DualLevel&) = delete;
  uint64_t level() const { return level_; }

 private:
  uint64_t level_;
};

at::Tensor dot_parts(const std::vector<at::Tensor>& a, const std::vector<at::Tensor>& b) {
  at::Tensor s;
  for (size_t k = 0; k < a.size(); ++k) {
    if (!a[k].defined()) continue;
    at::Tensor t = (a[k] * b[k]).sum();
    s = s.defined() ? s + t : t;
  }
  return s;
}

// B B^T in float64 (rows x rows) from its lower-triangular tiles, each mirrored above the
// diagonal: with ~8 tiles a side, 36 of 64 tile products (56 % of one GEMM's multiply-adds), each
// still a large product for BLAS. Measured (bench_gv gram, CNN, 2,000 rows of p = 43,174, float64,
// 2 threads, loaded machine): 1.36-1.38x faster than one GEMM at 4 or 8 tiles a side, 1.0x at 16.
// Float32 rows go to float64 by column blocks of ~256 MiB.
at::Tensor symmetric_gram(const at::Tensor& b) {
  const int64_t m = b.size(0), p = b.size(1);
  const int64_t block = b.scalar_type() == at::kDouble
                            ? p
                            : std::max<int64_t>(1, (int64_t{32} << 20) / std::max<int64_t>(m, 1));
  const int64_t tile = std::max<int64_t>(128, (m + 7) / 8);
  at::Tensor k = at::zeros({m, m}, b.options().dtype(at::kDouble));
  auto part = [&](const at::Tensor& t, int64_t i, int64_t j) {
    return t.narrow(0, i, std::min(tile, m - i)).narrow(1, j, std::min(tile, m - j));
  };
  for (int64_t s = 0; s < p; s += block) {
    const at::Tensor bl = b.narrow(1, s, std::min(block, p - s)).to(at::kDouble);
    for (int64_t i = 0; i < m; i += tile)
      for (int64_t j = 0; j <= i; j += tile)
        part(k, i, j).addmm_(bl.narrow(0, i, std::min(tile, m - i)),
                             bl.narrow(0, j, std::min(tile, m - j)).t());
  }
  for (int64_t i = 0; i < m; i += tile)
    for (int64_t j = 0; j < i; j += tile) part(k, j, i).copy_(part(k, i, j).t());
  return k;
}

// A B^T in float64 by column blocks (the float64 copies stay near 256 MiB).
at::Tensor cross_product(const at::Tensor& a, const at::Tensor& b) {
  const int64_t p = a.size(1);
  const int64_t block =
      std::max<int64_t>(1, (int64_t{32} << 20) / std::max<int64_t>(a.size(0) + b.size(0), 1));
  at::Tensor k = at::zeros({a.size(0), b.size(0)}, a.options().dtype(at::kDouble));
  for (int64_t s = 0; s < p; s += block) {
    const int64_t len = std::min(block, p - s);
    k.addmm_(a.narrow(1, s, len).to(at::kDouble), b.narrow(1, s, len).to(at::kDouble).t());
  }
  return k;
}

// Fa P Fb^T for block-diagonal Fa = diag(Fa_1..Fa_n) (fa: (n, ma, C)) and Fb (n, mb, C), P
// (nC x nC); an undefined factor is the identity. Per block pair Fa_i P_ij Fb_j^T: O(n^2 C^3).
at::Tensor sandwich(const at::Tensor& fa, const at::Tensor& p, const at::Tensor& fb, int64_t n,
                    int64_t c) {
  at::Tensor x = p;
  if (fa.defined()) x = at::bmm(fa, p.view({n, c, n * c})).view({n * fa.size(1), n * c});
  if (!fb.defined()) return x;
  const int64_t rows = x.size(0);
  return at::bmm(x.view({rows, n, c}).transpose(0, 1), fb.transpose(1, 2))
      .transpose(0, 1)
      .reshape({rows, n * fb.size(1)});
}

// One line on stderr, the first time this process has it to say.
void say_once(const std::string& line) {
  static std::mutex mu;
  static std::set<std::string> said;
  const std::lock_guard<std::mutex> lock(mu);
  if (said.insert(line).second) fmt::print(stderr, "{}\n", line);
}

}  // namespace

const NameTable<MatrixKind>& matrix_names() {
  static const NameTable<MatrixKind> names("matrix", {{MatrixKind::G, "G"},
                                                      {MatrixKind::Sigma, "Sigma"},
                                                      {MatrixKind::Sigma0, "Sigma0"},
                                                      {MatrixKind::Hessian, "H"},
                                                      {MatrixKind::Sigma, "sigma1"},
                                                      {MatrixKind::Hessian, "hessian"}});
  return names;
}

const NameTable<Estimator>& estimator_names() {
  static const NameTable<Estimator> names("estimator", {{Estimator::Exact, "exact"},
                                                        {Estimator::PerSample, "per-sample"},
                                                        {Estimator::PerSample, "per_sample"}});
  return names;
}

const NameTable<JvpMethod>& jvp_names() {
  static const NameTable<JvpMethod> names(
      "JVP method",
      {{JvpMethod::Auto, "auto"}, {JvpMethod::ForwardAD, "forward"}, {JvpMethod::ROp, "rop"}});
  return names;
}

const NameTable<RowsMethod>& rows_method_names() {
  static const NameTable<RowsMethod> names(
      "rows method",
      {{RowsMethod::Auto, "auto"}, {RowsMethod::Batched, "batched"}, {RowsMethod::Loop, "loop"}});
  return names;
}

CurvatureOperator::CurvatureOperator(Net model, const at::Tensor& x, const at::Tensor& targets,
                                     const CurvatureOptions& options)
    : model_(std::move(model)), opt_(options), jvp_(options.jvp) {
  if (!model_) fail("curvature: no model given");
  if (!x.defined() || x.dim() < 1 || x.size(0) < 1)
    fail("curvature: expected a batch of at least one input sample, got shape {}", shape_text(x));
  if (!targets.defined() || targets.dim() != 2 || targets.size(0) != x.size(0) ||
      !targets.is_floating_point())
    fail("curvature: expected floating targets of shape ({}, C), got {}", x.size(0),
         shape_text(targets));
  if (opt_.batch_size < 1) fail("curvature: batch size must be >= 1, got {}", opt_.batch_size);
  if (opt_.dtype != at::kFloat && opt_.dtype != at::kDouble)
    fail("curvature: dtype must be float32 or float64");
  n_ = x.size(0);
  c_ = targets.size(1);

  model_->to(opt_.device, opt_.dtype);
  model_->eval();
  layout_ = ParameterLayout::of(*model_);
  if (layout_.size == 0) fail("curvature: the model has no trainable parameters");
  x_ = x.to(opt_.device, opt_.dtype).contiguous();
  y_ = targets.to(opt_.device, opt_.dtype).contiguous();

  // The rows' batched path takes the outputs from its own recorded forward instead of a pass of
  // its own (in float64 on a CPU the convolutions' forward was a third of the rows' time).
  const bool rows = wants_rows();  // checks memory: asked once
  if (!rows || opt_.rows_method == RowsMethod::Loop) compute_outputs();
  if (rows) build_rows();
  loss_ = sample_losses(out_, y_, opt_.loss).to(at::kDouble).sum().item<double>() /
          static_cast<double>(n_);
  probe();
}

void CurvatureOperator::compute_outputs() {
  c10::NoGradGuard no_grad;
  for (int64_t s = 0; s < n_; s += opt_.batch_size)
    set_outputs(s, forward(s, std::min(opt_.batch_size, n_ - s)));
}

void CurvatureOperator::set_outputs(int64_t start, const at::Tensor& f) {
  if (!out_.defined()) {
    out_ = at::empty({n_, c_}, options());
    resid_ = at::empty({n_, c_}, options());
    if (opt_.loss == LossKind::CrossEntropy) prob_ = at::empty({n_, c_}, options());
  }
  const int64_t count = f.size(0);
  const at::Tensor out = out_.narrow(0, start, count);
  out.copy_(f.detach());
  // The residuals dl_i/df_i in closed form (the loss's value comes from src/training/loss.h).
  const at::Tensor y = y_.narrow(0, start, count);
  at::Tensor resid = resid_.narrow(0, start, count);
  if (opt_.loss == LossKind::CrossEntropy) {
    const at::Tensor prob = prob_.narrow(0, start, count);
    prob.copy_(at::log_softmax(out, 1).exp());
    at::sub_out(resid, prob, y);
  } else {
    at::sub_out(resid, out, y);
  }
}

CurvatureOperator::CurvatureOperator(const CurvatureOperator& other, MatrixKind matrix)
    : LinearOperator(),
      model_(other.model_),
      opt_(other.opt_),
      layout_(other.layout_),
      x_(other.x_),
      y_(other.y_),
      out_(other.out_),
      resid_(other.resid_),
      prob_(other.prob_),
      grad_(other.grad_),
      n_(other.n_),
      c_(other.c_),
      loss_(other.loss_),
      jvp_(other.jvp_) {
  opt_.matrix = matrix;
  if (wants_rows()) {
    rows_method_ = other.rows_method_;
    rows_note_ = other.rows_note_;
    rows_threads_ = other.rows_threads_;
    if (other.jac_) {
      rows_from_jacobian(other.jac_);
    } else if (other.rows_.defined() && other.opt_.matrix == matrix) {
      rows_ = other.rows_;  // never written after construction: safe to share
    } else if (other.rows_.defined() && other.opt_.matrix == MatrixKind::Sigma &&
               matrix == MatrixKind::Sigma0) {
      rows_ = other.rows_ - other.rows_.mean(0, true);
    } else {
      if (rows_method_ != RowsMethod::Loop) rows_method_ = RowsMethod::Auto;
      build_rows();
    }
  }
  probe();
}

void CurvatureOperator::probe() {
  if (opt_.probe)
    check_operator(*this,
                   fmt::format("curvature operator {} ({}, {})", to_string(opt_.matrix),
                               to_string(opt_.estimator), to_string(opt_.loss)),
                   opt_.probe_seed);
}

at::TensorOptions CurvatureOperator::options() const {
  return at::TensorOptions().dtype(opt_.dtype).device(opt_.device);
}

const at::Tensor& CurvatureOperator::rows() const {
  if (!rows_.defined())
    fail("curvature: operator {} ({}) has no per-sample rows", to_string(opt_.matrix),
         to_string(opt_.estimator));
  return rows_;
}

const at::Tensor& CurvatureOperator::gram_matrix() {
  if (gram_.defined()) return gram_;
  gram_ = jac_ ? gram_with(*this) : symmetric_gram(rows()) / static_cast<double>(n_);
  return gram_;
}

at::Tensor CurvatureOperator::gram_with(CurvatureOperator& other) {
  const at::Tensor& a = rows();
  const at::Tensor& b = other.rows();
  if (other.n_ != n_ || other.dim() != dim())
    fail(
        "curvature: a Gram matrix of two operators needs the same samples and parameters (n {} "
        "vs {}, p {} vs {})",
        n_, other.n_, dim(), other.dim());
  at::Tensor k;
  if (shares_jacobian(other)) {
    k = sandwich(jacobian_factors(), jacobian_gram(), other.jacobian_factors(), n_, c_);
    // Sigma0's rows are H B (H = I - 1 1^T / n, centring over samples): H K on the left, K H on
    // the right.
    if (opt_.matrix == MatrixKind::Sigma0) k = k - k.mean(0, true);
    if (other.opt_.matrix == MatrixKind::Sigma0) k = k - k.mean(1, true);
  } else {
    k = this == &other ? symmetric_gram(a) : cross_product(a, b);
  }
  return k / static_cast<double>(n_);
}

const at::Tensor& CurvatureOperator::dense_matrix() {
  if (dense_.defined()) return dense_;
  if (dim() > kMaxDenseP)
    fail("curvature: the dense {} matrix needs p <= {}, but the model has p = {}",
         to_string(opt_.matrix), kMaxDenseP, dim());
  const at::Tensor& b = rows();
  dense_ = at::mm(b.t(), b) / static_cast<double>(n_);
  return dense_;
}

void CurvatureOperator::keep_dense_only() {
  if (!dense_.defined()) fail("curvature: keep_dense_only before dense_matrix()");
  rows_ = at::Tensor();
  gram_ = at::Tensor();
  jac_.reset();
}

const at::Tensor& CurvatureOperator::jacobian_gram() {
  if (!jac_->gram.defined()) jac_->gram = symmetric_gram(jac_->j.reshape({n_ * c_, layout_.size}));
  return jac_->gram;
}

at::Tensor CurvatureOperator::jacobian_factors() const {
  if (opt_.matrix == MatrixKind::G && opt_.loss == LossKind::Mse) return {};  // rows = J
  return factors(0, n_).to(at::kDouble);
}

at::Tensor CurvatureOperator::forward(int64_t start, int64_t count) {
  at::Tensor f = model_->forward(x_.narrow(0, start, count));
  if (f.dim() != 2 || f.size(0) != count || f.size(1) != c_)
    fail("curvature: the model maps {} samples to shape {}, but the targets need ({}, {})", count,
         shape_text(f), count, c_);
  return f;
}

at::Tensor CurvatureOperator::batch_loss_sum(const at::Tensor& f, int64_t start,
                                             int64_t count) const {
  return summed_loss(f, y_.narrow(0, start, count), opt_.loss);
}

int64_t CurvatureOperator::factor_rows() const {
  return rows_per_sample(opt_.matrix, c_);
}

at::Tensor CurvatureOperator::factors(int64_t start, int64_t count) const {
  if (opt_.matrix != MatrixKind::G) return resid_.narrow(0, start, count).unsqueeze(1);
  if (opt_.loss == LossKind::Mse) return at::eye(c_, options()).expand({count, c_, c_});
  // diag(p) - p p^T = A^T A with A = diag(sqrt p) (I - 1 p^T), because sum(p) = 1.
  const at::Tensor p = prob_.narrow(0, start, count);
  const at::Tensor sp = p.sqrt();
  return at::diag_embed(sp) - sp.unsqueeze(2) * p.unsqueeze(1);
}

double CurvatureOperator::quadratic_form(const at::Tensor& v, JvpMethod method) {
  if (opt_.matrix == MatrixKind::Hessian)
    fail("curvature: quadratic_form needs a Gauss-Newton form (G, Sigma, Sigma0), not H");
  // A held matrix gives the same form (Sigma0's rows are centred) at no pass: p^2 multiply-adds
  // from A, rows x p from B, whichever is fewer.
  if (method == JvpMethod::Auto && (dense_.defined() || rows_.defined())) {
    const at::Tensor vv = v.to(options());
    if (dense_.defined() && (!rows_.defined() || dim() <= rows_.size(0)))
      return at::dot(vv, at::mv(dense_, vv)).item<double>();
    return at::mv(rows_, vv).pow(2).sum().item<double>() / static_cast<double>(n_);
  }
  const at::Tensor jv = jacobian_vector(v, method);
  double q = (jv * weight(jv, 0, n_)).sum().item<double>() / static_cast<double>(n_);
  if (opt_.matrix == MatrixKind::Sigma0) {
    const double gv = at::dot(gradient(), v.to(options())).item<double>();
    q -= gv * gv;
  }
  return q;
}

at::Tensor CurvatureOperator::weight(const at::Tensor& jv, int64_t start, int64_t count) const {
  if (opt_.matrix == MatrixKind::G) {
    if (opt_.loss == LossKind::Mse) return jv;
    const at::Tensor p = prob_.narrow(0, start, count);
    const at::Tensor pj = p * jv;
    return pj - p * pj.sum(1, true);
  }
  const at::Tensor r = resid_.narrow(0, start, count);
  return r * (r * jv).sum(1, true);
}

bool CurvatureOperator::wants_rows() const {
  if (opt_.matrix == MatrixKind::Hessian) return false;
  if (opt_.estimator == Estimator::Exact)
    return exact_operator_holds_rows(opt_.matrix, n_, c_, layout_.size, opt_.dtype,
                                     opt_.row_budget);
  const int64_t bytes = row_bytes(n_ * factor_rows(), layout_.size, opt_.dtype);
  const std::string what =
      fmt::format("per-sample rows of {} ({} rows x p = {}, {})", to_string(opt_.matrix),
                  n_ * factor_rows(), layout_.size, dtype_names().name(opt_.dtype));
  const std::string fix = fmt::format("lower --samples, {}or --estimator exact (streamed products)",
                                      opt_.dtype == at::kDouble ? "use --dtype float32, " : "");
  if (opt_.max_row_bytes >= 0 && bytes > opt_.max_row_bytes)
    fail("{} need {}, over the limit of {}; {}", what, format_bytes(bytes),
         format_bytes(opt_.max_row_bytes), fix);
  if (opt_.max_row_bytes < 0) require_free_memory(bytes, opt_.device, what, fix);
  return true;
}

int64_t row_bytes(int64_t rows, int64_t p, at::ScalarType dtype) {
  return rows * p * static_cast<int64_t>(c10::elementSize(dtype));
}

int64_t rows_per_sample(MatrixKind m, int64_t c) {
  return m == MatrixKind::G ? c : 1;
}

bool exact_operator_holds_rows(MatrixKind m, int64_t n, int64_t c, int64_t p, at::ScalarType dtype,
                               int64_t budget) {
  return m != MatrixKind::Hessian && budget > 0 &&
         row_bytes(n * rows_per_sample(m, c), p, dtype) <= budget;
}

int64_t exact_row_bytes(int64_t n, int64_t c, int64_t p, at::ScalarType dtype, bool cross_entropy) {
  return row_bytes(n * c + n + (cross_entropy ? n * c : 0), p, dtype);
}

int64_t default_row_budget(const c10::Device& device) {
  constexpr int64_t kUnknown = int64_t{4} << 30;  // when the machine does not say
  const int64_t have =
      device.is_cuda() ? free_device_memory_bytes(device) / 2 : physical_memory_bytes() / 4;
  return have > 0 ? have : kUnknown;
}

bool exact_rows_fit(int64_t n, int64_t c, int64_t p, at::ScalarType dtype, bool cross_entropy,
                    int64_t budget) {
  return budget > 0 && exact_row_bytes(n, c, p, dtype, cross_entropy) <= budget;
}

// Peak memory: the rows (n m p), plus for cross-entropy G with keep_jacobian the raw Jacobians
// (n C p); plus, for each thread building a chunk, the chunk's activations and, per layer in
// turn, ~16 MiB of unfolded inputs and per-sample gradients (src/curvature/per_sample.cpp).
void CurvatureOperator::build_rows() {
  const int64_t m = factor_rows(), p = layout_.size;
  const bool g = opt_.matrix == MatrixKind::G;
  // On a CPU, batches of 32: batch-sized buffers of a ResNet or the CNN (tens to hundreds of MB
  // at 256) come as fresh pages on every allocation, and faulting them in cost more than the
  // arithmetic (bench_gv rows, the CNN's 1,000 samples, float64, 2 threads on a loaded 2-core
  // machine: 5.8 s at 32, 23 s at 256). A GPU takes the whole batch.
  const int64_t chunk =
      opt_.device.is_cpu() ? std::min<int64_t>(opt_.batch_size, 32) : opt_.batch_size;
  // Left unwritten here: each chunk zeroes its own part (chunk_target) on the thread that builds
  // it, so that faulting the rows' pages in is shared by the workers (the CNN's 345 MB of float32
  // rows took 90 ms to zero on one thread, a quarter of the rows' time).
  at::Tensor rows = at::empty({n_, m, p}, options());
  at::Tensor jac;
  if (g && opt_.loss == LossKind::Mse)
    jac = rows;  // M_i = I
  else if (g && opt_.keep_jacobian)
    jac = at::empty({n_, c_, p}, options());
  if (opt_.rows_method == RowsMethod::Loop) rows_method_ = RowsMethod::Loop;
  const int threads = at::get_num_threads();
  const int64_t chunks = (n_ + chunk - 1) / chunk;
  // On a CPU, one chunk per thread, each thread running its chunk's ops on its own, with OpenBLAS
  // at one thread: the rows are made of many small ops and per-sample GEMMs, which lose more to
  // handing work between threads than they gain from it. With LibTorch's threads inside every op
  // instead, an idle OpenMP thread spun between parallel regions against OpenBLAS's threads, and
  // on this 2-core machine under load that had cost 5-10x (bench_gv rows, 1,000 samples).
  const IntraThreads serial(opt_.device.is_cpu() ? 1 : threads);
  // The first chunk runs alone: it decides between the batched path and the loop, whose forwards
  // are one sample each (the outputs then come from a pass of their own).
  // Outputs not given yet (out_ undefined) come from the batched path's forwards, chunk by chunk.
  const bool fill_outputs = !out_.defined();
  if (rows_method_ != RowsMethod::Loop)
    first_chunk_batched(std::min(chunk, n_), fill_outputs, rows, jac);
  if (fill_outputs && rows_method_ == RowsMethod::Loop) compute_outputs();
  auto build_chunk = [&](int64_t k) {
    c10::AutoGradMode grad_on(true);
    const int64_t s = k * chunk, count = std::min(chunk, n_ - s);
    if (rows_method_ == RowsMethod::Loop) {
      chunk_rows_loop(s, count, rows, jac);
    } else {
      const std::string why =
          chunk_rows_batched(s, count, /*first=*/false, fill_outputs, rows, jac);
      if (!why.empty()) fail("curvature: rows method batched: {}", why);
    }
  };
  const int64_t done = rows_method_ == RowsMethod::Batched ? 1 : 0;
  const int64_t workers =
      opt_.device.is_cpu() ? std::min<int64_t>(threads, std::max<int64_t>(chunks - done, 1)) : 1;
  std::optional<BlasThreads> blas;
  if (workers > 1) blas.emplace(1);
  // Worker w starts with chunk done + w, then takes the next one free: chunks differ in time, and
  // every worker gets one.
  std::atomic<int64_t> next{done + workers};
  std::atomic<bool> failed{false};
  run_concurrently(
      workers,
      [&](int64_t w) {
        for (int64_t k = done + w; k < chunks && !failed.load(); k = next++) build_chunk(k);
      },
      &failed);
  rows_threads_ = static_cast<int>(workers);
  rows_ = rows.view({n_ * m, p});
  if (jac.defined()) jac_ = std::make_shared<Jacobian>(Jacobian{jac, {}});
  // Sigma0 over b samples is (1/b) sum (g_i - mean g)(g_i - mean g)^T: centred rows.
  if (opt_.matrix == MatrixKind::Sigma0) rows_ -= rows_.mean(0, true);
}

void CurvatureOperator::rows_from_jacobian(const std::shared_ptr<Jacobian>& shared) {
  jac_ = shared;
  const at::Tensor& jac = shared->j;
  const int64_t p = layout_.size;
  if (opt_.matrix == MatrixKind::G) {
    rows_ = opt_.loss == LossKind::Mse ? jac.view({n_ * c_, p})
                                       : at::bmm(factors(0, n_), jac).view({n_ * c_, p});
    return;
  }
  rows_ = at::bmm(resid_.unsqueeze(1), jac).view({n_, p});
  if (opt_.matrix == MatrixKind::Sigma0) rows_ -= rows_.mean(0, true);
}

void CurvatureOperator::first_chunk_batched(int64_t count, bool fill_outputs, at::Tensor& rows,
                                            at::Tensor& jac) {
  c10::AutoGradMode grad_on(true);
  const std::string problem = chunk_rows_batched(0, count, /*first=*/true, fill_outputs, rows, jac);
  if (problem.empty()) {
    rows_method_ = RowsMethod::Batched;
    return;
  }
  if (opt_.rows_method == RowsMethod::Batched)
    fail("curvature: rows method batched: {} ({})", problem, model_->describe());
  rows_note_ = problem;
  say_once(fmt::format("noisegeom: per-sample rows one sample at a time for {}: {}",
                       model_->describe(), problem));
  rows_method_ = RowsMethod::Loop;
}

CurvatureOperator::ChunkTarget CurvatureOperator::chunk_target(int64_t start, int64_t count,
                                                               at::Tensor& rows,
                                                               at::Tensor& jac) const {
  // Without raw Jacobians to keep, the cotangents M_i[r] give the rows M_i J_i directly.
  if (!jac.defined()) return {rows.narrow(0, start, count).zero_(), factors(start, count)};
  return {jac.narrow(0, start, count).zero_(), at::eye(c_, options()).expand({count, c_, c_})};
}

void CurvatureOperator::rows_from_raw(int64_t start, int64_t count, at::Tensor& rows,
                                      at::Tensor& jac) const {
  if (jac.defined() && opt_.loss != LossKind::Mse)
    rows.narrow(0, start, count).copy_(at::bmm(factors(start, count), jac.narrow(0, start, count)));
}

std::string CurvatureOperator::chunk_rows_batched(int64_t start, int64_t count, bool first,
                                                  bool fill_outputs, at::Tensor& rows,
                                                  at::Tensor& jac) {
  BatchedGradients bg(layout_);
  const at::Tensor f = bg.record([&] { return forward(start, count); });
  if (fill_outputs) set_outputs(start, f);
  // The first chunk decides: every parameter reached, and the sums agree with the batch
  // gradient (taken in the same backward).
  if (first) {
    std::string why = bg.coverage_problem();
    if (!why.empty()) return why;
  }
  ChunkTarget t = chunk_target(start, count, rows, jac);
  const std::string why = bg.accumulate(f, t.cot, t.out, first);
  if (why.empty()) rows_from_raw(start, count, rows, jac);
  return why;
}

void CurvatureOperator::chunk_rows_loop(int64_t start, int64_t count, at::Tensor& rows,
                                        at::Tensor& jac) {
  ChunkTarget t = chunk_target(start, count, rows, jac);
  vjp_rows_loop(start, count, t.cot, t.out);
  rows_from_raw(start, count, rows, jac);
}

void CurvatureOperator::vjp_rows_loop(int64_t start, int64_t count, const at::Tensor& cot,
                                      at::Tensor& out) {
  // One forward per sample and one backward per row: LibTorch's C++ API has no vmap, and a
  // one-hot cotangent through a whole-batch graph would cost the whole batch each time.
  const int64_t m = cot.size(1);
  for (int64_t i = 0; i < count; ++i) {
    const at::Tensor f = forward(start + i, 1);
    for (int64_t r = 0; r < m; ++r) {
      const auto g = grad({f}, layout_.tensors, {cot[i][r].unsqueeze(0)},
                          /*retain_graph=*/r + 1 < m, /*create_graph=*/false,
                          /*allow_unused=*/true);
      at::Tensor row = out[i][r];
      layout_.add_into(row, g);
    }
  }
}

at::Tensor CurvatureOperator::batch_jv_forward_ad(int64_t start, int64_t count,
                                                  const std::vector<at::Tensor>& vparts,
                                                  at::Tensor* f) {
  DualLevel level;
  // The parameters themselves carry the tangent v for this level; exiting the level clears it.
  for (size_t k = 0; k < layout_.tensors.size(); ++k)
    layout_.tensors[k]._set_fw_grad(vparts[k], level.level(), /*is_inplace_op=*/false);
  at::Tensor out = forward(start, count);
  const at::Tensor& t = out._fw_grad(level.level());
  at::Tensor jv = t.defined() ? t.detach().clone() : at::zeros_like(out.detach());
  if (f) *f = out;
  return jv;
}

at::Tensor CurvatureOperator::batch_jv_rop(int64_t start, int64_t count,
                                           const std::vector<at::Tensor>& vparts, at::Tensor* f) {
  at::Tensor out = forward(start, count);
  // J v = d/du (v . J^T u): the vector-Jacobian product is linear in the dummy cotangent u.
  const at::Tensor u = at::zeros_like(out.detach()).requires_grad_(true);
  const auto g = grad({out}, layout_.tensors, {u}, /*retain_graph=*/true, /*create_graph=*/true,
                      /*allow_unused=*/true);
  const at::Tensor s = dot_parts(g, vparts);
  at::Tensor jv;
  if (s.defined() && s.requires_grad())
    jv =
        grad({s}, {u}, {}, /*retain_graph=*/true, /*create_graph=*/false, /*allow_unused=*/true)[0];
  if (!jv.defined()) jv = at::zeros_like(out.detach());
  if (f) *f = out;
  return jv;
}

at::Tensor CurvatureOperator::batch_jv(int64_t start, int64_t count,
                                       const std::vector<at::Tensor>& vparts, JvpMethod method,
                                       at::Tensor* f) {
  if (method == JvpMethod::ROp) return batch_jv_rop(start, count, vparts, f);
  if (method == JvpMethod::ForwardAD) return batch_jv_forward_ad(start, count, vparts, f);
  // Auto: some layers lack forward-mode formulas in some LibTorch versions; the R-op needs only
  // double backward, so fall back to it for good after the first failure.
  try {
    at::Tensor jv = batch_jv_forward_ad(start, count, vparts, f);
    if (jvp_ == JvpMethod::Auto) jvp_ = JvpMethod::ForwardAD;
    return jv;
  } catch (const c10::Error&) {
    jvp_ = JvpMethod::ROp;
    return batch_jv_rop(start, count, vparts, f);
  }
}

at::Tensor CurvatureOperator::jacobian_vector(const at::Tensor& v, JvpMethod method) {
  if (v.dim() != 1 || v.size(0) != dim())
    fail("curvature: expected a flat vector of {} entries, got shape {}", dim(), shape_text(v));
  c10::AutoGradMode grad_on(true);
  const at::Tensor vv = v.to(opt_.device, opt_.dtype).contiguous();
  const auto parts = layout_.split(vv);
  if (method == JvpMethod::Auto) method = jvp_;
  std::vector<at::Tensor> out;
  for (int64_t s = 0; s < n_; s += opt_.batch_size)
    out.push_back(batch_jv(s, std::min(opt_.batch_size, n_ - s), parts, method, nullptr));
  return at::cat(out);
}

at::Tensor CurvatureOperator::apply_gauss_newton(const at::Tensor& v) {
  const auto parts = layout_.split(v);
  at::Tensor out = at::zeros({layout_.size}, options());
  for (int64_t s = 0; s < n_; s += opt_.batch_size) {
    const int64_t m = std::min(opt_.batch_size, n_ - s);
    at::Tensor f;
    const at::Tensor jv = batch_jv(s, m, parts, jvp_, &f);
    // Sum over the batch divided by n (not by the batch size): batches of any length add up to
    // the exact average.
    const at::Tensor w = weight(jv, s, m) / static_cast<double>(n_);
    const auto g = grad({f}, layout_.tensors, {w}, /*retain_graph=*/false,
                        /*create_graph=*/false, /*allow_unused=*/true);
    layout_.add_into(out, g);
  }
  return out;
}

at::Tensor CurvatureOperator::apply_hessian(const at::Tensor& v) {
  const auto parts = layout_.split(v);
  at::Tensor out = at::zeros({layout_.size}, options());
  for (int64_t s = 0; s < n_; s += opt_.batch_size) {
    const int64_t m = std::min(opt_.batch_size, n_ - s);
    const at::Tensor f = forward(s, m);
    const at::Tensor l = batch_loss_sum(f, s, m) / static_cast<double>(n_);
    const auto g = grad({l}, layout_.tensors, {}, /*retain_graph=*/true, /*create_graph=*/true,
                        /*allow_unused=*/true);
    const at::Tensor gv = dot_parts(g, parts);
    if (!gv.defined() || !gv.requires_grad()) continue;  // loss linear in theta here
    const auto hv = grad({gv}, layout_.tensors, {}, /*retain_graph=*/false,
                         /*create_graph=*/false, /*allow_unused=*/true);
    layout_.add_into(out, hv);
  }
  return out;
}

const at::Tensor& CurvatureOperator::gradient() {
  if (grad_.defined()) return grad_;
  c10::AutoGradMode grad_on(true);
  at::Tensor out = at::zeros({layout_.size}, options());
  for (int64_t s = 0; s < n_; s += opt_.batch_size) {
    const int64_t m = std::min(opt_.batch_size, n_ - s);
    const at::Tensor l = batch_loss_sum(forward(s, m), s, m) / static_cast<double>(n_);
    layout_.add_into(out, grad({l}, layout_.tensors, {}, false, false, true));
  }
  grad_ = out;
  return grad_;
}

at::Tensor CurvatureOperator::apply_impl(const at::Tensor& v) {
  if (dense_.defined() && (!rows_.defined() || dim() <= rows_.size(0))) return at::mv(dense_, v);
  if (rows_.defined()) return at::mv(rows_.t(), at::mv(rows_, v)) / static_cast<double>(n_);
  c10::AutoGradMode grad_on(true);
  if (opt_.matrix == MatrixKind::Hessian) return apply_hessian(v);
  at::Tensor out = apply_gauss_newton(v);
  if (opt_.matrix == MatrixKind::Sigma0) {
    const at::Tensor& g = gradient();
    out -= g * at::dot(g, v);
  }
  return out;
}

std::vector<int64_t> random_subset(int64_t n, int64_t b, uint64_t seed) {
  std::vector<int64_t> all(static_cast<size_t>(std::max<int64_t>(n, 0)));
  for (int64_t i = 0; i < n; ++i) all[i] = i;
  return seeded_subset(std::move(all), b, seed);
}

}  // namespace ng
