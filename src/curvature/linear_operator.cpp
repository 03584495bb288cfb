// LinearOperator's checked apply, the operator probe (determinism, symmetry), the dense operator
// and the seeded test vectors.
#include "src/curvature/linear_operator.h"

#include <ATen/ATen.h>
#include <ATen/CPUGeneratorImpl.h>

#include <cmath>
#include <limits>

#include "models/model.h"
#include "src/core/error.h"

namespace ng {

void LinearOperator::apply(const at::Tensor& v, at::Tensor& out) {
  at::Tensor r = apply(v);
  if (out.defined() && out.sizes() == r.sizes() && out.scalar_type() == r.scalar_type() &&
      out.device() == r.device())
    out.copy_(r);
  else
    out = r;
}

at::Tensor LinearOperator::apply(const at::Tensor& v) {
  if (!v.defined() || v.dim() != 1 || v.size(0) != dim())
    fail("operator: expected a flat vector of {} entries, got shape {}", dim(), shape_text(v));
  ++matvecs_;
  const at::TensorOptions o = options();
  if (v.scalar_type() == o.dtype().toScalarType() && v.device() == o.device())
    return apply_impl(v.contiguous());
  return apply_impl(v.to(o.device(), o.dtype().toScalarType()).contiguous());
}

namespace {

double default_tolerance(at::ScalarType t) {
  const double eps = t == at::kDouble ? std::numeric_limits<double>::epsilon()
                                      : static_cast<double>(std::numeric_limits<float>::epsilon());
  return 10 * std::sqrt(eps);
}

}  // namespace

void check_operator(LinearOperator& op, const std::string& what, uint64_t seed, double tol) {
  const at::TensorOptions o = op.options();
  if (tol <= 0) tol = default_tolerance(o.dtype().toScalarType());
  const int64_t p = op.dim();
  const at::Tensor v = seeded_normal(p, seed * 2 + 1, o);
  const at::Tensor u = seeded_normal(p, seed * 2 + 2, o);
  const at::Tensor av1 = op.apply(v);
  const at::Tensor av2 = op.apply(v);
  const double n1 = av1.norm().item<double>();
  const double diff = (av1 - av2).norm().item<double>();
  if (!std::isfinite(n1))
    fail("{}: probe failed: A v has non-finite entries (|A v| = {})", what, n1);
  if (diff > tol * n1)
    fail(
        "{}: probe failed: A v is not deterministic (two applications to the same v differ by "
        "{:.3g} relative, tolerance {:.3g}); is dropout or augmentation active?",
        what, n1 > 0 ? diff / n1 : diff, tol);
  const at::Tensor au = op.apply(u);
  const double uav = at::dot(u, av1).item<double>();
  const double vau = at::dot(v, au).item<double>();
  // Random u, v make u.(A v) of the order |u||A v|/sqrt(p), and so are both the asymmetry of a
  // broken operator and the rounding error of the products: compare on that scale.
  const double scale =
      (u.norm().item<double>() * n1 + v.norm().item<double>() * au.norm().item<double>()) /
      std::sqrt(static_cast<double>(p));
  if (std::fabs(uav - vau) > tol * scale)
    fail(
        "{}: probe failed: operator is not symmetric (u.(A v) = {:.10g}, v.(A u) = {:.10g}, "
        "difference {:.3g} of the scale {:.3g}, tolerance {:.3g})",
        what, uav, vau, std::fabs(uav - vau) / (scale > 0 ? scale : 1), scale, tol);
}

DenseOperator::DenseOperator(at::Tensor matrix) : a_(std::move(matrix)) {
  if (!a_.defined() || a_.dim() != 2 || a_.size(0) != a_.size(1))
    fail("dense operator: expected a square matrix");
}

int64_t DenseOperator::dim() const {
  return a_.size(0);
}

at::TensorOptions DenseOperator::options() const {
  return a_.options();
}

at::Tensor DenseOperator::apply_impl(const at::Tensor& v) {
  return at::mv(a_, v);
}

at::Tensor seeded_normal(int64_t n, uint64_t seed, const at::TensorOptions& options) {
  at::Generator gen = at::make_generator<at::CPUGeneratorImpl>(seed);
  at::Tensor z = at::randn({n}, gen, at::TensorOptions().dtype(at::kDouble));
  return z.to(options.device(), options.dtype().toScalarType());
}

at::Tensor seeded_rademacher(int64_t n, uint64_t seed, const at::TensorOptions& options) {
  at::Generator gen = at::make_generator<at::CPUGeneratorImpl>(seed);
  at::Tensor bits = at::randint(0, 2, {n}, gen, at::TensorOptions().dtype(at::kDouble));
  return (bits * 2 - 1).to(options.device(), options.dtype().toScalarType());
}

}  // namespace ng
