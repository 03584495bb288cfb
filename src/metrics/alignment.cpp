// The noise-geometry metrics of alignment.h: alignment along the eigenvectors of G, loss alignment
// and effective ranks, exact from the per-sample rows or by Hutchinson estimates.
#include "src/metrics/alignment.h"

#include <ATen/ATen.h>

#include <cmath>
#include <limits>

#include "src/core/error.h"
#include "src/curvature/curvature.h"
#include "src/eigen/eigensolver.h"

namespace ng {

namespace {

// A^T A in float64 (p x p), by row blocks so that the float64 copy stays small.
at::Tensor gram_of_columns(const at::Tensor& a) {
  const int64_t m = a.size(0), p = a.size(1);
  const int64_t block = std::max<int64_t>(1, (int64_t{32} << 20) / std::max<int64_t>(p, 1));
  at::Tensor g = at::zeros({p, p}, a.options().dtype(at::kDouble));
  for (int64_t s = 0; s < m; s += block) {
    const at::Tensor bl = a.narrow(0, s, std::min(block, m - s)).to(at::kDouble);
    g.addmm_(bl.t(), bl);
  }
  return g;
}

// tr(A^2) for A = B^T B / b: |B^T B|_F^2 / b^2 from the p x p Gram matrix of the columns when there
// are fewer parameters than rows (Figure 3: n = 1e5 samples of p = 1e3 parameters, where the n x n
// Gram matrix cannot even be held), else |K|_F^2 from the operator's (shared) K = B B^T / b.
double trace_of_square(CurvatureOperator& a) {
  const at::Tensor& rows = a.rows();
  if (rows.size(1) * rows.size(1) < rows.size(0) * rows.size(0)) {
    const double b = static_cast<double>(a.num_samples());
    return gram_of_columns(rows).pow(2).sum().item<double>() / (b * b);
  }
  return a.gram_matrix().pow(2).sum().item<double>();
}

double frob_sq(const at::Tensor& a) {
  return a.to(at::kDouble).pow(2).sum().item<double>();
}

struct Moments {
  double mean = 0, se = 0;
};

Moments moments(const std::vector<double>& x) {
  Moments m;
  const double n = static_cast<double>(x.size());
  if (x.empty()) return m;
  for (double v : x) m.mean += v;
  m.mean /= n;
  if (x.size() > 1) {
    double ss = 0;
    for (double v : x) ss += (v - m.mean) * (v - m.mean);
    m.se = std::sqrt(ss / (n - 1) / n);
  }
  return m;
}

Estimate estimate(const std::vector<double>& x) {
  const Moments m = moments(x);
  return {m.mean, m.se, static_cast<int64_t>(x.size())};
}

// a_mean / b_mean with its delta-method standard error from paired samples.
Estimate ratio(const std::vector<double>& a, const std::vector<double>& b) {
  const Moments ma = moments(a), mb = moments(b);
  Estimate r;
  r.probes = static_cast<int64_t>(a.size());
  r.value = ma.mean / mb.mean;
  std::vector<double> lin(a.size());
  for (size_t j = 0; j < a.size(); ++j) lin[j] = a[j] - r.value * b[j];
  r.se = moments(lin).se / std::fabs(mb.mean);
  return r;
}

Estimate scaled(Estimate e, double s) {
  e.value *= s;
  e.se *= std::fabs(s);
  return e;
}

}  // namespace

std::vector<double> quadratic_forms(LinearOperator& a, const at::Tensor& vectors) {
  std::vector<double> out;
  const at::TensorOptions o = a.options();
  auto* c = dynamic_cast<CurvatureOperator*>(&a);
  if (c && c->has_rows()) {
    // u^T A u = |B u|^2 / b for all rows of `vectors` in one matrix product.
    const at::Tensor bu = at::mm(c->rows(), vectors.to(o.device(), o.dtype().toScalarType()).t());
    const at::Tensor q =
        bu.to(at::kDouble).pow(2).sum(0).cpu() / static_cast<double>(c->num_samples());
    for (int64_t j = 0; j < q.size(0); ++j) out.push_back(q[j].item<double>());
    return out;
  }
  for (int64_t j = 0; j < vectors.size(0); ++j) {
    const at::Tensor u = vectors[j].to(o.device(), o.dtype().toScalarType());
    out.push_back(at::dot(u, a.apply(u)).item<double>());
  }
  return out;
}

TraceStats trace_stats(CurvatureOperator& a, int64_t probes, uint64_t seed) {
  TraceStats t;
  if (a.has_rows()) {
    const double b = static_cast<double>(a.num_samples());
    t.trace = {frob_sq(a.rows()) / b, 0, 0};
    t.trace_sq = {trace_of_square(a), 0, 0};
    return t;
  }
  if (probes < 2) fail("metrics: Hutchinson needs at least 2 probes, got {}", probes);
  std::vector<double> tr, tr2;
  for (int64_t j = 0; j < probes; ++j) {
    const at::Tensor z = seeded_rademacher(a.dim(), seed + static_cast<uint64_t>(j), a.options());
    const at::Tensor az = a.apply(z);
    tr.push_back(at::dot(z, az).item<double>());
    tr2.push_back(at::dot(az, az).item<double>());
  }
  t.trace = estimate(tr);
  t.trace_sq = estimate(tr2);
  return t;
}

namespace {

// L, lambda_k, alpha_k and g_k along G's eigenvectors: the part every method shares.
Alignment along_eigenvectors(LinearOperator& sigma, double loss, const Eigenpairs& eig) {
  Alignment r;
  r.loss = loss;
  r.lambda = eig.values;
  const double two_l = 2 * loss;
  const std::vector<double> quad = quadratic_forms(sigma, eig.vectors);
  for (size_t j = 0; j < quad.size(); ++j) {
    const double a = two_l > 0 ? quad[j] / two_l : std::numeric_limits<double>::quiet_NaN();
    r.alpha.push_back(a);
    r.g.push_back(a / r.lambda[j]);
  }
  return r;
}

// mu at L = 0 by the paper's convention, |G|_F and the srks from the traces.
Alignment finished(Alignment r) {
  if (!(2 * r.loss > 0)) r.mu = {1.0, 0, r.trace_sigma_g.probes};  // 0/0 := 1 (Sec. 3)
  const double f2 = r.frob_g_sq.value, lam1 = r.lambda.front();
  r.frob_g = {std::sqrt(std::max(f2, 0.0)), f2 > 0 ? r.frob_g_sq.se / (2 * std::sqrt(f2)) : 0,
              r.frob_g_sq.probes};
  r.srk_g = scaled(r.trace_g, 1 / lam1);
  r.srk_g2 = scaled(r.frob_g_sq, 1 / (lam1 * lam1));
  return r;
}

}  // namespace

Alignment hutchinson_alignment(LinearOperator& g, LinearOperator& sigma, double loss,
                               const Eigenpairs& eig, const AlignmentOptions& opt) {
  if (opt.probes < 2) fail("metrics: Hutchinson needs at least 2 probes, got {}", opt.probes);
  Alignment r = along_eigenvectors(sigma, loss, eig);
  r.method = "hutchinson";
  std::vector<double> a, bq, t;
  for (int64_t j = 0; j < opt.probes; ++j) {
    const at::Tensor z =
        seeded_rademacher(g.dim(), opt.seed + static_cast<uint64_t>(j), g.options());
    const at::Tensor gz = g.apply(z);
    const at::Tensor sgz = sigma.apply(gz);
    a.push_back(at::dot(z, sgz).item<double>());
    bq.push_back(at::dot(gz, gz).item<double>());
    t.push_back(at::dot(z, gz).item<double>());
  }
  r.trace_sigma_g = estimate(a);
  r.frob_g_sq = estimate(bq);
  r.trace_g = estimate(t);
  if (2 * loss > 0) r.mu = scaled(ratio(a, bq), 1 / (2 * loss));
  return finished(std::move(r));
}

Alignment compute_alignment(CurvatureOperator& g, CurvatureOperator& sigma, const Eigenpairs& eig,
                            const AlignmentOptions& opt) {
  if (g.settings().matrix != MatrixKind::G)
    fail("metrics: the first operator must be G, got {}", to_string(g.settings().matrix));
  if (g.dim() != sigma.dim() || g.num_samples() != sigma.num_samples() ||
      std::fabs(g.loss() - sigma.loss()) > 1e-6 * std::max(1.0, std::fabs(g.loss())))
    fail(
        "metrics: G and Sigma must be built on the same model and samples (p {} vs {}, n {} vs "
        "{}, L {} vs {})",
        g.dim(), sigma.dim(), g.num_samples(), sigma.num_samples(), g.loss(), sigma.loss());
  if (eig.values.empty() || !eig.vectors.defined() || eig.vectors.size(1) != g.dim())
    fail("metrics: need eigenpairs of G with p = {} entries", g.dim());
  if (!g.has_rows() || !sigma.has_rows()) return hutchinson_alignment(g, sigma, g.loss(), eig, opt);

  Alignment r = along_eigenvectors(sigma, g.loss(), eig);
  r.method = "gram";
  const double b = static_cast<double>(g.num_samples());
  // tr(Sigma G) = (1/b^2) tr(B_S^T B_S B_G^T B_G) = |B_G B_S^T|_F^2 / b^2.
  const at::Tensor& bg = g.rows();
  const at::Tensor& bs = sigma.rows();
  // At a global minimum every per-sample gradient is 0 (Figure 3's theta*): tr(Sigma G) = 0
  // without a product over the rows.
  const bool sigma_zero = frob_sq(bs) == 0;
  if (bg.size(1) * bg.size(1) < bg.size(0) * bg.size(0)) {
    // Fewer parameters than rows: one p x p Gram matrix of G's rows serves both traces.
    const at::Tensor pg = gram_of_columns(bg);
    r.frob_g_sq = {pg.pow(2).sum().item<double>() / (b * b), 0, 0};
    r.trace_sigma_g = {sigma_zero ? 0.0 : (pg * gram_of_columns(bs)).sum().item<double>() / (b * b),
                       0, 0};
  } else {
    // |B_G B_G^T|_F^2 / b^2 = |K|_F^2: the Gram matrix the Gram solver formed, or forms now
    // once for whoever asks next; B_G B_S^T / b from the shared Jacobian Gram matrix where
    // one operator was made from the other.
    r.frob_g_sq = {g.gram_matrix().pow(2).sum().item<double>(), 0, 0};
    r.trace_sigma_g = {sigma_zero ? 0.0 : g.gram_with(sigma).pow(2).sum().item<double>(), 0, 0};
  }
  r.trace_g = {frob_sq(bg) / b, 0, 0};
  if (2 * r.loss > 0) r.mu = {r.trace_sigma_g.value / (2 * r.loss * r.frob_g_sq.value), 0, 0};
  return finished(std::move(r));
}

}  // namespace ng
