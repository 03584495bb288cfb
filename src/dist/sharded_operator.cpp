// Each rank's operator averages over its own n_r samples, so the global average is the sum over
// ranks of (n_r / n) times the local product: one all-reduce per product.
#include "src/dist/sharded_operator.h"

#include <ATen/ATen.h>

#include <cmath>
#include <limits>

#include "src/core/error.h"

namespace ng {

ShardedOperator::ShardedOperator(Net model, const at::Tensor& x, const at::Tensor& targets,
                                 const CurvatureOptions& options)
    : matrix_(options.matrix), n_(x.size(0)), range_(shard(x.size(0))) {
  if (targets.size(0) != n_)
    fail("sharded operator: {} inputs but {} targets", n_, targets.size(0));
  if (n_ < dist().world)
    fail("sharded operator: {} samples cannot be split over WORLD_SIZE={} ranks", n_, dist().world);
  weight_ = static_cast<double>(range_.size()) / static_cast<double>(n_);
  // Sigma0 = Sigma - g g^T with g the gradient over ALL n samples. A local Sigma0 would subtract
  // each shard's own g_r g_r^T, and sum_r (n_r/n) g_r g_r^T is not g g^T (it exceeds it by the
  // spread of the shard means), nor would per-sample rows centred on a shard's mean be centred on
  // the global one. So every rank builds Sigma, whose average over shards is exact, and the
  // rank-1 term is subtracted after the all-reduce with the all-reduced gradient.
  CurvatureOptions local = options;
  if (matrix_ == MatrixKind::Sigma0) local.matrix = MatrixKind::Sigma;
  local_ =
      std::make_unique<CurvatureOperator>(model, x.narrow(0, range_.begin, range_.size()),
                                          targets.narrow(0, range_.begin, range_.size()), local);
  at::Tensor loss = at::full({1}, local_->loss() * weight_, at::kDouble);
  all_reduce_sum(loss);
  loss_ = loss.item<double>();
  grad_ = local_->gradient() * weight_;
  all_reduce_sum(grad_);
}

at::Tensor ShardedOperator::apply_impl(const at::Tensor& v) {
  at::Tensor out = local_->apply(v) * weight_;
  all_reduce_sum(out);
  if (matrix_ == MatrixKind::Sigma0) out.sub_(grad_ * at::dot(grad_, v.to(grad_.options())));
  return out;
}

Alignment sharded_alignment(ShardedOperator& g, ShardedOperator& sigma, const Eigenpairs& eig,
                            const AlignmentOptions& opt) {
  if (g.matrix() != MatrixKind::G || g.dim() != sigma.dim() ||
      g.num_samples() != sigma.num_samples())
    fail("metrics: need sharded G and Sigma on the same samples");
  return hutchinson_alignment(g, sigma, g.loss(), eig, opt);
}

}  // namespace ng
