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

namespace {

// Mean of paired Hutchinson samples and its standard error.
Estimate mean_of(const std::vector<double>& x) {
  Estimate e;
  e.probes = static_cast<int64_t>(x.size());
  const double n = static_cast<double>(x.size());
  for (double v : x) e.value += v;
  e.value /= n;
  double ss = 0;
  for (double v : x) ss += (v - e.value) * (v - e.value);
  e.se = x.size() > 1 ? std::sqrt(ss / (n - 1) / n) : 0;
  return e;
}

Estimate scaled(Estimate e, double s) {
  e.value *= s;
  e.se *= std::fabs(s);
  return e;
}

}  // namespace

Alignment sharded_alignment(ShardedOperator& g, ShardedOperator& sigma, const Eigenpairs& eig,
                            const AlignmentOptions& opt) {
  if (g.matrix() != MatrixKind::G || g.dim() != sigma.dim() ||
      g.num_samples() != sigma.num_samples())
    fail("metrics: need sharded G and Sigma on the same samples");
  if (opt.probes < 2) fail("metrics: Hutchinson needs at least 2 probes, got {}", opt.probes);
  Alignment r;
  r.method = "hutchinson";
  r.loss = g.loss();
  const double two_l = 2 * r.loss;
  r.lambda = eig.values;
  for (double q : quadratic_forms(sigma, eig.vectors)) {
    const double a = two_l > 0 ? q / two_l : std::numeric_limits<double>::quiet_NaN();
    r.alpha.push_back(a);
    r.g.push_back(a / r.lambda[r.g.size()]);
  }
  std::vector<double> sg, gg, tg;
  for (int64_t j = 0; j < opt.probes; ++j) {
    const at::Tensor z =
        seeded_rademacher(g.dim(), opt.seed + static_cast<uint64_t>(j), g.options());
    const at::Tensor gz = g.apply(z);
    sg.push_back(at::dot(z, sigma.apply(gz)).item<double>());
    gg.push_back(at::dot(gz, gz).item<double>());
    tg.push_back(at::dot(z, gz).item<double>());
  }
  r.trace_sigma_g = mean_of(sg);
  r.frob_g_sq = mean_of(gg);
  r.trace_g = mean_of(tg);
  if (two_l > 0) {
    // mu = mean(sg) / (2L mean(gg)); its standard error by the delta method.
    r.mu.value = r.trace_sigma_g.value / (two_l * r.frob_g_sq.value);
    std::vector<double> lin(sg.size());
    for (size_t j = 0; j < sg.size(); ++j) lin[j] = sg[j] - two_l * r.mu.value * gg[j];
    r.mu.se = mean_of(lin).se / std::fabs(two_l * r.frob_g_sq.value);
    r.mu.probes = opt.probes;
  } else {
    r.mu = {1.0, 0, opt.probes};  // 0/0 := 1 (Sec. 3)
  }
  const double f2 = r.frob_g_sq.value;
  r.frob_g = {std::sqrt(std::max(f2, 0.0)), f2 > 0 ? r.frob_g_sq.se / (2 * std::sqrt(f2)) : 0,
              opt.probes};
  const double lam1 = r.lambda.front();
  r.srk_g = scaled(r.trace_g, 1 / lam1);
  r.srk_g2 = scaled(r.frob_g_sq, 1 / (lam1 * lam1));
  return r;
}

}  // namespace ng
