// The one interface every symmetric p x p matrix of this tool is used through: the curvature
// operators, dense test matrices, and whatever the eigensolver and the metrics are handed.
#pragma once

#include <ATen/core/Tensor.h>
#include <c10/core/TensorOptions.h>

#include <cstdint>
#include <string>

namespace ng {

class LinearOperator {
 public:
  virtual ~LinearOperator() = default;
  virtual int64_t dim() const = 0;
  // dtype and device of the flat vectors apply() works on.
  virtual at::TensorOptions options() const = 0;

  // out = A v for a flat vector v of dim() entries (converted to options() if needed). `out` is
  // overwritten in place when it already has the right size and options, else reassigned.
  void apply(const at::Tensor& v, at::Tensor& out);
  at::Tensor apply(const at::Tensor& v);
  // Applications since construction, the probe's included.
  int64_t matvecs() const { return matvecs_; }

 protected:
  virtual at::Tensor apply_impl(const at::Tensor& v) = 0;

 private:
  int64_t matvecs_ = 0;
};

// Throws ng::Error (one line, naming `what`) unless A v computed twice agrees and
// u.(A v) = v.(A u) for random u, v, both to `tol` relative (0: 10 sqrt(eps) of the dtype).
// Nondeterminism (dropout left on, augmentation, racing kernels beyond rounding) and a broken
// transpose in a hand-written product are the failures this catches before hours of Lanczos.
void check_operator(LinearOperator& op, const std::string& what, uint64_t seed = 0, double tol = 0);

// A dense symmetric (or, for tests, deliberately not) matrix as an operator.
class DenseOperator : public LinearOperator {
 public:
  explicit DenseOperator(at::Tensor matrix);
  int64_t dim() const override;
  at::TensorOptions options() const override;
  const at::Tensor& matrix() const { return a_; }

 protected:
  at::Tensor apply_impl(const at::Tensor& v) override;

 private:
  at::Tensor a_;
};

// Standard normal vector of `n` entries from a seeded CPU generator, then moved to `options`:
// the same seed gives the same vector on every device.
at::Tensor seeded_normal(int64_t n, uint64_t seed, const at::TensorOptions& options);
// Entries +-1 with probability 1/2 each (Hutchinson probes), same seeding rule.
at::Tensor seeded_rademacher(int64_t n, uint64_t seed, const at::TensorOptions& options);

}  // namespace ng
