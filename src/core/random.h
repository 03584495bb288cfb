// Seeded randomness that gives the same numbers on every platform, standard library and LibTorch
// version: std::shuffle, std::uniform_int_distribution, std::normal_distribution and at::randperm
// are all free to change their algorithms. Every seeded choice of the tool goes through here.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
#include <random>
#include <vector>

namespace ng {

// splitmix64: turns structured seeds ((seed, epoch), (seed, run), ...) into unrelated ones.
inline uint64_t splitmix64(uint64_t x) {
  x += 0x9e3779b97f4a7c15ULL;
  x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ULL;
  x = (x ^ (x >> 27)) * 0x94d049bb133111ebULL;
  return x ^ (x >> 31);
}

// Uniform in [0, m) by rejection (no modulo bias).
inline uint64_t uniform_below(std::mt19937_64& rng, uint64_t m) {
  const uint64_t top = std::numeric_limits<uint64_t>::max();
  const uint64_t limit = top - top % m;
  uint64_t r;
  do r = rng();
  while (r >= limit);
  return r % m;
}

// 0..n-1 in a seeded random order (Fisher-Yates).
inline std::vector<int64_t> seeded_permutation(int64_t n, uint64_t seed) {
  std::vector<int64_t> p(static_cast<size_t>(n));
  for (int64_t k = 0; k < n; ++k) p[k] = k;
  std::mt19937_64 rng(seed);
  for (int64_t k = n - 1; k > 0; --k)
    std::swap(p[k], p[uniform_below(rng, static_cast<uint64_t>(k + 1))]);
  return p;
}

// k of `rows` chosen by a partial Fisher-Yates shuffle, returned sorted (k >= size: all rows).
inline std::vector<int64_t> seeded_subset(std::vector<int64_t> rows, int64_t k, uint64_t seed) {
  const auto n = static_cast<uint64_t>(rows.size());
  if (k < 0 || static_cast<uint64_t>(k) > n) k = static_cast<int64_t>(n);
  std::mt19937_64 rng(seed);
  for (uint64_t i = 0; i < static_cast<uint64_t>(k); ++i)
    std::swap(rows[i], rows[i + uniform_below(rng, n - i)]);
  rows.resize(static_cast<size_t>(k));
  std::sort(rows.begin(), rows.end());
  return rows;
}

// Standard normal numbers by Box-Muller on mt19937_64 (cos, then sin of each pair).
class Normal {
 public:
  explicit Normal(uint64_t seed) : rng_(seed) {}
  double operator()() {
    if (has_spare_) {
      has_spare_ = false;
      return spare_;
    }
    const double u1 = static_cast<double>((rng_() >> 11) + 1) * 0x1p-53;  // (0, 1]: log is finite
    const double u2 = static_cast<double>(rng_() >> 11) * 0x1p-53;
    const double r = std::sqrt(-2.0 * std::log(u1));
    constexpr double kTwoPi = 6.283185307179586476925286766559;
    spare_ = r * std::sin(kTwoPi * u2);
    has_spare_ = true;
    return r * std::cos(kTwoPi * u2);
  }

 private:
  std::mt19937_64 rng_;
  bool has_spare_ = false;
  double spare_ = 0.0;
};

}  // namespace ng
