// spectrum: a named spectrum of G (and Sigma, Sigma0, H) at a run's theta*, alignment metrics.
#include <fmt/format.h>

#include <memory>

#include "src/cli/commands.h"
#include "src/cli/options.h"
#include "src/study/spectrum_study.h"

namespace ng {
namespace {

struct SpectrumArgs {
  std::string run_dir;
  SpectrumRequest request;
  StudyContext ctx;
  bool replace = false;
};

int run(const SpectrumArgs& a) {
  const SpectrumOutcome out = ensure_spectrum(a.run_dir, a.request, a.ctx, a.replace);
  const StoredSpectrum& s = out.spectrum;
  fmt::print(
      "{}: lambda_1 {:.6g}, loss {:.4g}, mu {:.4g}, srk(G) {:.4g}, |G|_F {:.4g}, max residual "
      "{:.2e} -> {}{}\n",
      a.run_dir, s.lambda(1), s.number("loss"), s.number("mu"), s.number("srk_G"),
      s.number("frobenius_G"), s.number("max_residual"), s.dir,
      out.reused ? " (reused: same settings at the same theta.pt)" : "");
  return 0;
}

}  // namespace

Command add_spectrum_command(CLI::App& app) {
  auto* sub =
      app.add_subcommand("spectrum", "top-k eigenpairs of G and Sigma at theta*, alignment");
  sub->footer(wrap(
      "Top-k eigenpairs of the Gauss-Newton matrix G at the run's theta.pt, the noise energy "
      "along them (alpha_k = u_k^T Sigma u_k / 2L, g_k = alpha_k / lambda_k), the loss alignment "
      "mu and srk(G), srk(G^2), |G|_F; with --matrices, also the top-k spectra of Sigma, Sigma0, "
      "H. Writes RUN_DIR/spectra/NAME/ (built beside it and renamed into place): eigenvalues.csv "
      "(matrix,index,eigenvalue,residual), alignment.csv (k,lambda,alpha,g), eigenvectors.pt "
      "(torch.load -> {'U': p x k, 'eigenvalues', 'parameter_names', 'parameter_numels'}; rows in "
      "named_parameters() order), summary.json, samples.csv (the samples used). The same settings "
      "again reuse the spectrum; other settings under the same name are refused unless "
      "--replace."));
  auto a = std::make_shared<SpectrumArgs>();
  sub->add_option("RUN_DIR", a->run_dir, "a trained run directory")->required();
  add_spectrum_options(*sub, a->request);
  sub->add_flag("--replace", a->replace,
                "replace a spectrum of the same name made with other settings");
  add_context_options(*sub, a->ctx);
  return {sub, [a] { return run(*a); }};
}

}  // namespace ng
