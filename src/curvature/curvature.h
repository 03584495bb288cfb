// Curvature and noise matrices of a model at fixed parameters as matrix-free operators.
//
// Per sample i: output f_i in R^C, Jacobian J_i = df_i/dtheta (C x p), loss l_i, and
// L = (1/n) sum_i l_i over the operator's samples. Matrices (all p x p, symmetric):
//   G       = (1/n) sum J_i^T W_i J_i  with W_i = I (mse) or diag(p_i) - p_i p_i^T (cross entropy:
//             the generalised Gauss-Newton matrix, p_i = softmax(f_i))
//   Sigma   = Sigma_1 = (1/n) sum grad l_i grad l_i^T = (1/n) sum J_i^T r_i r_i^T J_i with
//             r_i = dl_i/df_i = f_i - y_i (mse) or p_i - y_i (cross entropy)
//   Sigma0  = Sigma_1 - grad L grad L^T (centred SGD noise covariance)
//   Hessian = d^2 L / dtheta^2 (double backward)
// Every one but the Hessian is (1/n) sum J_i^T M_i^T M_i J_i for a small per-sample factor M_i
// (identity; diag(sqrt p) (I - 1 p^T); r^T), which is what both estimators use.
//
// Estimators:
//   exact      streams the samples in batches: J v by forward-mode AD (or the double-backward
//              R-op), W_i applied per sample, one vector-Jacobian product per batch; every batch
//              contributes sum_i / n, so a short last batch weighs what it holds. Working memory
//              (activations) does not grow with n; the samples themselves live on the device.
//   per-sample the paper's method (Appendix A): the rows B = [M_i J_i]_i (b C x p for G, b x p for
//              Sigma) are materialised once, then A v = B^T (B v) / b, and the b C x b C Gram
//              matrix B B^T / b has the same nonzero eigenvalues (see src/eigen). Sigma0's rows are
//              the centred per-sample gradients. The Hessian has no rows and is applied as in
//              `exact`.
//   exact with rows: when CurvatureOptions::row_budget holds the rows of all n samples, the
//              exact estimator builds them too and its products are B^T (B v) / n: the same
//              matrix, exactly (Sigma0's centred rows give Sigma - grad L grad L^T over the same
//              n samples), so the Gram solver and exact metrics serve it. storage() tells which.
//
// Rows are built batched where the model's parameters all pass through models/layers.h (one
// forward per chunk of samples and one backward per factor row, src/curvature/per_sample.h;
// chunks of min(batch_size, 32) on a CPU, batch_size on a GPU), else one sample at a time (one
// forward and one backward per factor row each), said once on stderr.
// G's rows come from the raw Jacobians J_i where those are kept (cotangents e_r, then M_i J_i by
// a batched matmul), else straight from the cotangents M_i[r] (one backward per row either way);
// for mse M_i = I, so the rows are J itself, and an operator made from a G operator by the
// second constructor forms Sigma's rows r_i^T J_i and Sigma0's from that J without a pass.
// Cross entropy's M_i J_i cannot give r_i^T J_i back, so there J is kept only when asked
// (keep_jacobian: n C p more numbers alongside the rows).
//
// The constructor moves the model to the requested device and dtype and puts it in eval mode
// (the caller's module is changed), caches the outputs, and runs check_operator unless told not
// to. Flat vectors follow ParameterLayout (models/params.h).
#pragma once

#include <ATen/core/Tensor.h>
#include <c10/core/Device.h>

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "models/model.h"
#include "models/params.h"
#include "src/core/names.h"
#include "src/curvature/linear_operator.h"
#include "src/training/loss.h"

namespace ng {

enum class MatrixKind { G, Sigma, Sigma0, Hessian };
// "G", "Sigma", "Sigma0", "H" as in the output files and --matrices; "sigma1" and "hessian" are
// accepted too (parsing ignores case).
const NameTable<MatrixKind>& matrix_names();

enum class Estimator { Exact, PerSample };
// "exact", "per-sample" (also "per_sample").
const NameTable<Estimator>& estimator_names();

// Auto: forward-mode AD, and the R-op from then on if forward AD throws for some layer.
enum class JvpMethod { Auto, ForwardAD, ROp };
// "auto", "forward", "rop".
const NameTable<JvpMethod>& jvp_names();

// How per-sample rows are built: Batched (models/layers.h ops, whole batches), Loop (one sample
// at a time), Auto (Batched where it covers every parameter, else Loop, said once on stderr).
enum class RowsMethod { Auto, Batched, Loop };
// "auto", "batched", "loop".
const NameTable<RowsMethod>& rows_method_names();

// The tables' names, for messages and test traces (LossKind's table is loss_names()).
inline std::string to_string(LossKind k) {
  return loss_names().name(k);
}
inline std::string to_string(MatrixKind k) {
  return matrix_names().name(k);
}
inline std::string to_string(Estimator k) {
  return estimator_names().name(k);
}
inline std::string to_string(JvpMethod k) {
  return jvp_names().name(k);
}
inline std::string to_string(RowsMethod k) {
  return rows_method_names().name(k);
}

struct CurvatureOptions {
  LossKind loss = LossKind::Mse;
  MatrixKind matrix = MatrixKind::G;
  Estimator estimator = Estimator::Exact;
  JvpMethod jvp = JvpMethod::Auto;
  int64_t batch_size = 256;  // samples per forward pass (exact products, loss, gradient)
  at::ScalarType dtype = at::kFloat;
  c10::Device device = c10::Device(c10::kCPU);
  // Per-sample estimator: rows larger than this are an error before they are allocated; -1: what
  // the device has free.
  int64_t max_row_bytes = -1;
  // Exact estimator (not H): build the rows of all n samples when they take at most this many
  // bytes (n m p elements, m = C for G, 1 for Sigma and Sigma0); 0: never.
  int64_t row_budget = 0;
  RowsMethod rows_method = RowsMethod::Auto;
  // Cross-entropy G with rows: keep the raw Jacobians (another n C p numbers) so that Sigma and
  // Sigma0 operators made from this one need no pass. Mse G keeps them at no cost anyway.
  bool keep_jacobian = false;
  bool probe = true;  // run check_operator in the constructor
  uint64_t probe_seed = 0;
};

class CurvatureOperator : public LinearOperator {
 public:
  // x: (n, ...) inputs; targets: (n, C) floating (one-hot rows for classification, any
  // distribution for cross entropy, y for regression). The per-sample estimator uses all n
  // samples given (b = n): pick the subset with random_subset().
  CurvatureOperator(Net model, const at::Tensor& x, const at::Tensor& targets,
                    const CurvatureOptions& options);

  // Same model, samples, options and outputs as `other`, another matrix. Rows come from other's
  // raw Jacobians where it holds them (no pass over the data), from its Sigma rows for Sigma0,
  // else they are built; the Jacobians stay alive while any operator made from them does.
  CurvatureOperator(const CurvatureOperator& other, MatrixKind matrix);

  int64_t dim() const override { return layout_.size; }
  at::TensorOptions options() const override;
  const CurvatureOptions& settings() const { return opt_; }
  const ParameterLayout& layout() const { return layout_; }
  int64_t num_samples() const { return n_; }
  int64_t num_outputs() const { return c_; }
  double loss() const { return loss_; }  // L over the operator's samples
  // grad L over the operator's samples (flat, options()); computed on first use.
  const at::Tensor& gradient();
  // The method exact products use now (Auto resolves after the first product).
  JvpMethod jvp_method() const { return jvp_; }
  // Rows B with A = B^T B / num_samples() (per-sample estimator, or exact within row_budget;
  // G/Sigma/Sigma0 only).
  bool has_rows() const { return rows_.defined(); }
  const at::Tensor& rows() const;
  // K = B B^T / num_samples() in float64 on the device (rows x rows), formed once and kept: the
  // Gram solver and the exact metrics (tr A^2 = |K|_F^2) share it. Needs rows. Operators sharing
  // raw Jacobians derive it from their one Jacobian Gram matrix P = J J^T (formed once, by
  // symmetric tiles): K = F P F^T / n with F block-diagonal in the factors M_i, centred for
  // Sigma0; otherwise it is B B^T by symmetric tiles.
  const at::Tensor& gram_matrix();
  // Whether gram_matrix() is formed already, or costs only O(n^2 C^3) from a formed Jacobian Gram
  // matrix P.
  bool has_gram() const { return gram_.defined() || (jac_ && jac_->gram.defined()); }
  // B B_other^T / num_samples() in float64 (this operator's rows x other's): from P when both
  // share Jacobians (O(n^2 C^3)), else by one product over the rows. Needs rows on both, on the
  // same samples. tr(A_this A_other) = |gram_with(other)|_F^2.
  at::Tensor gram_with(CurvatureOperator& other);
  // "rows" (products from B), "dense" (from A itself, rows freed) or "streamed" (products by
  // passes over the samples).
  std::string storage() const {
    return rows_.defined() ? "rows" : dense_.defined() ? "dense" : "streamed";
  }
  // How the rows were built, Batched or Loop (Auto: no rows built here); why not Batched.
  RowsMethod rows_method() const { return rows_method_; }
  const std::string& rows_note() const { return rows_note_; }
  // How many workers built the rows, or the Jacobians they come from (0 without rows).
  int rows_threads() const { return rows_threads_; }
  // Raw per-sample Jacobians (n, C, p) held for operators made from this one.
  bool has_jacobian() const { return jac_ != nullptr; }
  // Whether both operators hold the same raw Jacobians (one made from the other).
  bool shares_jacobian(const CurvatureOperator& other) const {
    return jac_ != nullptr && jac_ == other.jac_;
  }
  // (n, C): row i is J_i v, by the given method (Auto: the operator's). For tests and metrics.
  at::Tensor jacobian_vector(const at::Tensor& v, JvpMethod method = JvpMethod::Auto);
  // v^T A v by the cheapest form the operator holds (method Auto): v^T (A v) from the dense
  // matrix when it is no larger than the rows, |B v|^2 / n from the rows, else one
  // Jacobian-vector product (half an exact product): (1/n) sum_i (J_i v)^T W_i (J_i v), minus
  // (grad L . v)^2 for Sigma0. A method other than Auto forces the JVP. Not for the Hessian.
  double quadratic_form(const at::Tensor& v, JvpMethod method = JvpMethod::Auto);
  // A itself (p x p, the operator's dtype and device) as B^T B / n, formed once from the rows
  // and kept; products and quadratic forms use it from then on where it is the smaller form.
  // Needs rows; p over kMaxDenseP is an error (p^2 numbers, and p^3 for anything done with it).
  static constexpr int64_t kMaxDenseP = 4096;  // 128 MiB in float64
  const at::Tensor& dense_matrix();
  bool has_dense() const { return dense_.defined(); }
  // Frees the rows (and the Gram matrices and raw Jacobians) once dense_matrix() holds A: the
  // operator then keeps p^2 numbers instead of rows x p.
  void keep_dense_only();
  // Model outputs f_i (n, C) at the operator's parameters.
  const at::Tensor& outputs() const { return out_; }

 protected:
  at::Tensor apply_impl(const at::Tensor& v) override;

 private:
  at::Tensor forward(int64_t start, int64_t count);
  at::Tensor batch_loss_sum(const at::Tensor& f, int64_t start, int64_t count) const;
  at::Tensor weight(const at::Tensor& jv, int64_t start, int64_t count) const;
  at::Tensor factors(int64_t start, int64_t count) const;  // M_i stacked: (count, m, C)
  int64_t factor_rows() const;                             // m
  // J v for samples [start, start + count); *f gets the outputs with their backward graph.
  at::Tensor batch_jv(int64_t start, int64_t count, const std::vector<at::Tensor>& vparts,
                      JvpMethod method, at::Tensor* f);
  at::Tensor batch_jv_forward_ad(int64_t start, int64_t count,
                                 const std::vector<at::Tensor>& vparts, at::Tensor* f);
  at::Tensor batch_jv_rop(int64_t start, int64_t count, const std::vector<at::Tensor>& vparts,
                          at::Tensor* f);
  at::Tensor apply_gauss_newton(const at::Tensor& v);
  at::Tensor apply_hessian(const at::Tensor& v);
  bool wants_rows() const;  // per-sample (rows too large: an error), or exact within budget
  void build_rows();
  // out_, resid_ and prob_ by a forward pass of their own, or chunk by chunk from a forward f of
  // samples [start, start + f.size(0)).
  void compute_outputs();
  void set_outputs(int64_t start, const at::Tensor& f);
  // The rows (n, m, p) of samples [start, start + count), and their raw Jacobians (n, C, p) when
  // jac is defined. The batched path returns "" or why it cannot serve the model (checked on the
  // first chunk); first_chunk_batched acts on that (fall back to the loop, or fail).
  // ChunkTarget: where a chunk's backward passes accumulate, zeroed, and with which cotangents (the
  // raw Jacobians with e_r when jac is kept, else the rows with M_i); rows_from_raw then forms the
  // rows M_i J_i from the raw Jacobians (cross entropy), overwriting them.
  struct ChunkTarget {
    at::Tensor out, cot;
  };
  ChunkTarget chunk_target(int64_t start, int64_t count, at::Tensor& rows, at::Tensor& jac) const;
  void rows_from_raw(int64_t start, int64_t count, at::Tensor& rows, at::Tensor& jac) const;
  // fill_outputs: out_ etc. are set from the chunks' recorded forwards.
  void first_chunk_batched(int64_t count, bool fill_outputs, at::Tensor& rows, at::Tensor& jac);
  std::string chunk_rows_batched(int64_t start, int64_t count, bool first, bool fill_outputs,
                                 at::Tensor& rows, at::Tensor& jac);
  void chunk_rows_loop(int64_t start, int64_t count, at::Tensor& rows, at::Tensor& jac);
  // out (count, m, p) += cot_ir^T J_i for samples [start, start + count), cot (count, m, C).
  void vjp_rows_loop(int64_t start, int64_t count, const at::Tensor& cot, at::Tensor& out);
  void probe();

  Net model_;
  CurvatureOptions opt_;
  ParameterLayout layout_;
  at::Tensor x_, y_;  // on device, dtype
  at::Tensor out_;    // (n, C) detached outputs
  at::Tensor resid_;  // (n, C) dl_i/df_i
  at::Tensor prob_;   // (n, C) softmax outputs (cross entropy)
  at::Tensor rows_;   // per-sample rows
  at::Tensor gram_;   // gram_matrix(), once asked for
  at::Tensor dense_;  // dense_matrix(), once asked for
  // The raw Jacobians J (n, C, p) when held (mse G: rows_'s storage), shared by the operators
  // made from one another, with P = J J^T (nC x nC, float64) once someone asked for it.
  struct Jacobian {
    at::Tensor j, gram;
  };
  std::shared_ptr<Jacobian> jac_;
  void rows_from_jacobian(const std::shared_ptr<Jacobian>& shared);
  const at::Tensor& jacobian_gram();  // P, formed on first use
  // F (n, m, C) in float64 with B = F J: this operator's rows from the raw Jacobians.
  at::Tensor jacobian_factors() const;
  RowsMethod rows_method_ = RowsMethod::Auto;
  std::string rows_note_;
  int rows_threads_ = 0;
  at::Tensor grad_;  // grad L, lazily
  int64_t n_ = 0, c_ = 0;
  double loss_ = 0;
  JvpMethod jvp_ = JvpMethod::Auto;
};

// Bytes of `rows` per-sample rows of p parameters in `dtype`.
int64_t row_bytes(int64_t rows, int64_t p, at::ScalarType dtype);
// Bytes of the rows an exact analysis over n samples with C outputs holds: G's n C rows, Sigma's
// n, and for cross entropy the raw Jacobians (n C) that Sigma's rows are formed from.
int64_t exact_row_bytes(int64_t n, int64_t c, int64_t p, at::ScalarType dtype, bool cross_entropy);
// Per-sample rows of matrix m for a model with C outputs: C for G, 1 for Sigma and Sigma0.
int64_t rows_per_sample(MatrixKind m, int64_t c);
// Whether the exact estimator's operator for m over n samples holds its n m p rows (within
// `budget`; 0: never) rather than streaming its products: the operator's own test, for callers
// that decide before making it (several ranks shard only what one process would stream).
bool exact_operator_holds_rows(MatrixKind m, int64_t n, int64_t c, int64_t p, at::ScalarType dtype,
                               int64_t budget);
// The default row budget: a quarter of the physical memory on the CPU (6 GiB of this project's
// 24 GiB machine), half of the free device memory on a GPU (40 GiB of an idle 80 GiB H100);
// 4 GiB where the machine does not say.
int64_t default_row_budget(const c10::Device& device);
// Whether exact_row_bytes fits `budget` (bytes; 0: nothing fits), the one test every analysis
// uses to choose between rows and streamed products.
bool exact_rows_fit(int64_t n, int64_t c, int64_t p, at::ScalarType dtype, bool cross_entropy,
                    int64_t budget);

// b samples drawn without replacement by a seeded generator, kept in data order (the same seed
// gives the same subset on every machine). b >= n returns everything.
std::vector<int64_t> random_subset(int64_t n, int64_t b, uint64_t seed);

}  // namespace ng
