// Gaussian inputs of the paper's small-scale experiments: x ~ N(0, S), S diagonal, and targets
// from a random linear teacher.
#include <ATen/ATen.h>
#include <ATen/Parallel.h>

#include <algorithm>
#include <cmath>

#include "data/dataset.h"
#include "src/core/error.h"
#include "src/core/random.h"

namespace ng {
namespace {

constexpr double kTwoPi = 6.283185307179586476925286766559;
constexpr int64_t kRowsPerStream = 256;

// Independent seeds per (purpose, block of rows).
uint64_t stream_seed(uint64_t seed, uint64_t purpose, uint64_t row) {
  return splitmix64(splitmix64(splitmix64(seed) ^ purpose) ^ row);
}

// Upper bound on sum_{k=d+1}^{D} k^-q (integral of a decreasing function).
double tail_bound(double q, double d, double big_d) {
  if (std::abs(q - 1.0) < 1e-12) return std::log(big_d / d);
  return (std::pow(big_d, 1.0 - q) - std::pow(d, 1.0 - q)) / (1.0 - q);
}

}  // namespace

std::vector<double> gaussian_variances(const GaussianOptions& opt) {
  if (opt.d < 1) fail("data.d: {} must be at least 1", opt.d);
  std::vector<double> s(static_cast<size_t>(opt.d));
  if (!opt.variances.empty()) {
    if (static_cast<int64_t>(opt.variances.size()) != opt.d)
      fail("gaussian: {} variances given for data.d = {}", opt.variances.size(), opt.d);
    for (double v : opt.variances)
      if (!(v >= 0 && std::isfinite(v))) fail("gaussian: variance {} is not finite and >= 0", v);
    return opt.variances;
  }
  if (!(opt.scale > 0) || !std::isfinite(opt.scale))
    fail("data.scale: {} must be a positive finite number", opt.scale);
  if (opt.covariance == "isotropic") {
    std::fill(s.begin(), s.end(), 1.0);
  } else if (opt.covariance == "spiked") {
    if (!(opt.bulk >= 0) || !std::isfinite(opt.bulk))
      fail("data.bulk: {} must be a finite number >= 0", opt.bulk);
    std::fill(s.begin(), s.end(), opt.bulk);
    s[0] = 1.0;
  } else if (opt.covariance == "power") {
    if (!(opt.power >= 0)) fail("data.power: {} must be >= 0", opt.power);
    for (int64_t k = 1; k <= opt.d; ++k) s[k - 1] = std::pow(static_cast<double>(k), -opt.power);
  } else {
    fail("data.covariance: '{}' is not one of isotropic|power|spiked", opt.covariance);
  }
  for (double& v : s) v *= opt.scale;
  return s;
}

double stable_rank(const std::vector<double>& s) {
  double tr = 0, top = 0;
  for (double v : s) {
    tr += v;
    top = std::max(top, v);
  }
  return top > 0 ? tr / top : 0.0;
}

double effective_dimension(const std::vector<double>& s) {
  std::vector<double> sq(s.size());
  for (size_t k = 0; k < s.size(); ++k) sq[k] = s[k] * s[k];
  return std::min(stable_rank(s), stable_rank(sq));
}

int64_t dimension_for_effective_dimension(double target, double power, int64_t max_d) {
  if (!(power >= 0)) fail("data.power: {} must be >= 0", power);
  if (!(target >= 1) || !std::isfinite(target))
    fail("d_eff target {} must be a finite number >= 1", target);
  // With S_11 = 1 the largest eigenvalue of S and S^2 is 1, so srk is a plain partial sum.
  double sum1 = 0, sum2 = 0;
  const double goal = target * (1 - 1e-12);  // accept d_eff = target up to rounding of the sums
  for (int64_t d = 1; d <= max_d; ++d) {
    const double k = static_cast<double>(d);
    sum1 += std::pow(k, -power);
    sum2 += std::pow(k, -2 * power);
    if (std::min(sum1, sum2) >= goal) return d;
    if (d % 4096 == 0 || d == max_d) {
      const double bound = std::min(sum1 + tail_bound(power, k, static_cast<double>(max_d)),
                                    sum2 + tail_bound(2 * power, k, static_cast<double>(max_d)));
      if (bound < goal)
        fail(
            "d_eff = {} is out of reach for S_kk = k^-{}: d_eff = min(srk(S), srk(S^2)) stays "
            "below {:.4g} for every d <= {} (srk(S^2) = sum of k^-{} grows too slowly)",
            target, power, bound, max_d, 2 * power);
    }
  }
  fail("d_eff = {} is out of reach for S_kk = k^-{} with d <= {}", target, power, max_d);
}

Dataset make_gaussian(const GaussianOptions& opt) {
  if (opt.n < 1) fail("data.n: {} must be at least 1", opt.n);
  if (opt.outputs < 1) fail("data.outputs: {} must be at least 1", opt.outputs);
  const std::vector<double> s = gaussian_variances(opt);
  const int64_t n = opt.n, d = opt.d, m = opt.outputs;
  std::vector<double> scale(s.size());
  for (size_t k = 0; k < s.size(); ++k) scale[k] = std::sqrt(s[k]);

  Dataset out;
  out.teacher = at::empty({d, m}, at::kFloat);
  float* w = out.teacher.data_ptr<float>();
  Normal gw(stream_seed(opt.seed, 1, 0));
  for (int64_t k = 0; k < d * m; ++k) w[k] = opt.zero_teacher ? 0.0f : static_cast<float>(gw());

  out.x = at::empty({n, d}, at::kFloat);
  out.targets = at::empty({n, m}, at::kFloat);
  float* x = out.x.data_ptr<float>();
  float* y = out.targets.data_ptr<float>();
  // Rows come in fixed blocks, each with its own stream: the values do not depend on the number
  // of threads, and seeding a Mersenne Twister (2.5 KB of state) per row would dominate for small
  // d.
  const int64_t blocks = (n + kRowsPerStream - 1) / kRowsPerStream;
  at::parallel_for(0, blocks, 1, [&](int64_t b, int64_t e) {
    std::vector<double> acc(static_cast<size_t>(m));
    for (int64_t block = b; block < e; ++block) {
      Normal g(stream_seed(opt.seed, 2, static_cast<uint64_t>(block)));
      const int64_t end = std::min(n, (block + 1) * kRowsPerStream);
      for (int64_t i = block * kRowsPerStream; i < end; ++i) {
        float* xi = x + i * d;
        for (int64_t k = 0; k < d; ++k) xi[k] = static_cast<float>(scale[k] * g());
        // y from the stored float x and W* in double, rounded once: the float closest to x W*.
        std::fill(acc.begin(), acc.end(), 0.0);
        for (int64_t k = 0; k < d; ++k)
          for (int64_t o = 0; o < m; ++o) acc[o] += double(xi[k]) * double(w[k * m + o]);
        for (int64_t o = 0; o < m; ++o) y[i * m + o] = static_cast<float>(acc[o]);
      }
    }
  });
  out.num_classes = m;
  out.indices.resize(static_cast<size_t>(n));
  for (int64_t i = 0; i < n; ++i) out.indices[i] = i;
  std::string cov = !opt.variances.empty()      ? "S = diag(given variances)"
                    : opt.covariance == "power" ? fmt::format("S_kk = k^-{}", opt.power)
                    : opt.covariance == "spiked"
                        ? fmt::format("S = diag(1, {}, ..., {})", opt.bulk, opt.bulk)
                        : std::string("S = I");
  if (opt.variances.empty() && opt.scale != 1) cov += fmt::format(" x {}", opt.scale);
  out.description =
      fmt::format("Gaussian: n={}, d={}, {} (d_eff {:.4g}), {} output(s){}, seed {}", n, d, cov,
                  effective_dimension(s), m, opt.zero_teacher ? " y = 0" : "", opt.seed);
  return out;
}

}  // namespace ng
