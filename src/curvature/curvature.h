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
//
// The constructor moves the model to the requested device and dtype and puts it in eval mode
// (the caller's module is changed), caches the outputs, and runs check_operator unless told not
// to. Flat vectors follow ParameterLayout (src/curvature/params.h).
#pragma once

#include <ATen/core/Tensor.h>
#include <c10/core/Device.h>

#include <cstdint>
#include <string>
#include <vector>

#include "models/model.h"
#include "src/core/names.h"
#include "src/curvature/linear_operator.h"
#include "src/curvature/params.h"
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

struct CurvatureOptions {
  LossKind loss = LossKind::Mse;
  MatrixKind matrix = MatrixKind::G;
  Estimator estimator = Estimator::Exact;
  JvpMethod jvp = JvpMethod::Auto;
  int64_t batch_size = 256;  // samples per forward pass (exact products, loss, gradient)
  at::ScalarType dtype = at::kFloat;
  c10::Device device = c10::Device(c10::kCPU);
  int64_t max_row_bytes = int64_t{8} << 30;  // per-sample rows larger than this are an error
  bool probe = true;                         // run check_operator in the constructor
  uint64_t probe_seed = 0;
};

class CurvatureOperator : public LinearOperator {
 public:
  // x: (n, ...) inputs; targets: (n, C) floating (one-hot rows for classification, any
  // distribution for cross entropy, y for regression). The per-sample estimator uses all n
  // samples given (b = n): pick the subset with random_subset().
  CurvatureOperator(Net model, const at::Tensor& x, const at::Tensor& targets,
                    const CurvatureOptions& options);

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
  // Rows B with A = B^T B / num_samples() (per-sample estimator, G/Sigma/Sigma0 only).
  bool has_rows() const { return rows_.defined(); }
  const at::Tensor& rows() const;
  // (n, C): row i is J_i v, by the given method (Auto: the operator's). For tests and metrics.
  at::Tensor jacobian_vector(const at::Tensor& v, JvpMethod method = JvpMethod::Auto);
  // v^T A v from one Jacobian-vector product (half an exact product): (1/n) sum_i
  // (J_i v)^T W_i (J_i v), minus (grad L . v)^2 for Sigma0. Not for the Hessian.
  double quadratic_form(const at::Tensor& v, JvpMethod method = JvpMethod::Auto);
  // Model outputs f_i (n, C) at the operator's parameters.
  const at::Tensor& outputs() const { return out_; }

 protected:
  at::Tensor apply_impl(const at::Tensor& v) override;

 private:
  at::Tensor forward(int64_t start, int64_t count);
  at::Tensor batch_loss_sum(const at::Tensor& f, int64_t start, int64_t count) const;
  at::Tensor weight(const at::Tensor& jv, int64_t start, int64_t count) const;
  at::Tensor factor(int64_t i) const;  // M_i (rows x C)
  int64_t factor_rows() const;
  // J v for samples [start, start + count); *f gets the outputs with their backward graph.
  at::Tensor batch_jv(int64_t start, int64_t count, const std::vector<at::Tensor>& vparts,
                      JvpMethod method, at::Tensor* f);
  at::Tensor batch_jv_forward_ad(int64_t start, int64_t count,
                                 const std::vector<at::Tensor>& vparts, at::Tensor* f);
  at::Tensor batch_jv_rop(int64_t start, int64_t count, const std::vector<at::Tensor>& vparts,
                          at::Tensor* f);
  at::Tensor apply_gauss_newton(const at::Tensor& v);
  at::Tensor apply_hessian(const at::Tensor& v);
  void build_rows();

  Net model_;
  CurvatureOptions opt_;
  ParameterLayout layout_;
  at::Tensor x_, y_;  // on device, dtype
  at::Tensor out_;    // (n, C) detached outputs
  at::Tensor resid_;  // (n, C) dl_i/df_i
  at::Tensor prob_;   // (n, C) softmax outputs (cross entropy)
  at::Tensor rows_;   // per-sample rows
  at::Tensor grad_;   // grad L, lazily
  int64_t n_ = 0, c_ = 0;
  double loss_ = 0;
  JvpMethod jvp_ = JvpMethod::Auto;
};

// b samples drawn without replacement by a seeded generator, kept in data order (the same seed
// gives the same subset on every machine). b >= n returns everything.
std::vector<int64_t> random_subset(int64_t n, int64_t b, uint64_t seed);

}  // namespace ng
