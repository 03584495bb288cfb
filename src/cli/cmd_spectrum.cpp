// spectrum: top-k eigenpairs of G (and Sigma, Sigma0, H) at a run's theta*, alignment metrics.
#include <fmt/format.h>

#include <algorithm>
#include <cctype>
#include <cmath>

#include "src/cli/args.h"
#include "src/cli/commands.h"
#include "src/core/error.h"
#include "src/spectrum/spectrum.h"

namespace ng {
namespace {

// G, Sigma, Sigma0, H as written in the output files; lower-case spellings and "hessian" too.
std::string canonical_matrix(const std::string& s) {
  std::string l = s;
  std::transform(l.begin(), l.end(), l.begin(), [](unsigned char c) { return std::tolower(c); });
  if (l == "g") return "G";
  if (l == "sigma" || l == "sigma1") return "Sigma";
  if (l == "sigma0") return "Sigma0";
  if (l == "h" || l == "hessian") return "H";
  fail("--matrices: unknown matrix '{}' (expected G, Sigma, Sigma0 or H)", s);
}

const ArgSpec kSpectrumArgs = {
    {"--quiet"},
    {"--k", "--matrices", "--estimator", "--samples", "--solver", "--dtype", "--theta", "--seed",
     "--batch-size", "--ncv", "--tol", "--maxit", "--probes", "--residuals", "--data-dir"},
    {}};

}  // namespace

SpectrumOptions parse_spectrum_options(const std::vector<std::string>& argv,
                                       std::vector<std::string>* positional) {
  const Args a = parse_args(argv, kSpectrumArgs, "spectrum");
  if (positional) *positional = a.positional;
  SpectrumOptions o;
  o.k = a.integer("--k", o.k, 1);
  if (a.values.count("--matrices")) {
    o.matrices.clear();
    const std::string list = a.get("--matrices");
    size_t start = 0;
    while (true) {
      const size_t comma = list.find(',', start);
      const std::string item = list.substr(start, comma - start);
      if (!item.empty()) o.matrices.push_back(canonical_matrix(item));
      if (comma == std::string::npos) break;
      start = comma + 1;
    }
  }
  o.estimator = a.get("--estimator", o.estimator);
  if (o.estimator == "per_sample") o.estimator = "per-sample";
  o.samples = a.integer("--samples", 0, 2);
  o.solver = a.get("--solver", o.solver);
  o.dtype = a.get("--dtype", o.dtype);
  o.theta = a.get("--theta", o.theta);
  o.seed = static_cast<uint64_t>(a.integer("--seed", 0, 0));
  o.batch_size = a.integer("--batch-size", o.batch_size, 1);
  o.ncv = a.integer("--ncv", 0, 1);
  o.tol = a.number("--tol", 0, true);
  o.maxit = a.integer("--maxit", o.maxit, 1);
  o.probes = a.integer("--probes", o.probes, 2);
  o.residuals = a.get("--residuals", o.residuals);
  o.data_dir = a.get("--data-dir");
  o.quiet = a.has("--quiet");
  validate_spectrum_options(o);
  return o;
}

int cmd_spectrum(const std::vector<std::string>& argv) {
  std::vector<std::string> pos;
  const SpectrumOptions o = parse_spectrum_options(argv, &pos);
  if (pos.size() != 1) throw UsageError{"spectrum: expected exactly one RUN_DIR"};
  const SpectrumResult r = run_spectrum(pos[0], o);
  fmt::print(
      "{}: lambda_1 {:.6g}, loss {:.4g}, mu {:.4g}, srk(G) {:.4g}, |G|_F {:.4g}, "
      "g_1 {:.4g}, max residual {:.2e} -> {}\n",
      pos[0], r.lambda.front(), r.loss, r.mu, r.srk_g, r.frob_g, r.g.front(), r.max_residual,
      r.out_dir);
  return 0;
}

}  // namespace ng
