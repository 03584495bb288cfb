// escape: a named SGD or GD escape sweep from a run's theta*, tracked along the eigenvectors of a
// named spectrum (Section 6, Figure 6).
#include <fmt/format.h>

#include <memory>

#include "src/cli/commands.h"
#include "src/cli/options.h"
#include "src/study/escape_study.h"

namespace ng {

Command add_escape_command(CLI::App& app) {
  auto* sub = app.add_subcommand("escape",
                                 "SGD and GD escapes from theta* along the top eigenvectors of G");
  sub->footer(wrap(
      "Runs N constant-learning-rate trajectories from the run's theta.pt and records at every "
      "logged step the training loss, d = |theta_t - theta*| and, for each k, p_k (p_1 = "
      "<theta_t - theta*, u_1>, signed; |U_k^T (theta_t - theta*)| for k > 1) and r_k = (d^2 - "
      "p_k^2)^(1/2), with u_1..u_K from RUN_DIR/spectra/SPECTRUM/. Writes RUN_DIR/escapes/NAME/: "
      "one file per finished run (a re-run computes only the missing runs), trajectories.csv "
      "(optimizer,run,step,lr,loss,distance,p_1,r_1,...) and result.json (lr and its search, "
      "escaped runs, median escape step, median r/|p| at escape and mean final p and r per k, "
      "srk(G^2), the escape criterion). With --energy each logged point also has Section 5's "
      "energy_x = lambda_1 <d,u_1>^2, energy_y (the rest of d^T G d) and D_1 = energy_y/energy_x "
      "(Figure 3). Other settings under the same name are refused."));
  struct Args {
    std::string run_dir;
    EscapeRequest request;
    StudyContext ctx;
  };
  auto a = std::make_shared<Args>();
  sub->add_option("RUN_DIR", a->run_dir, "a trained run directory")->required();
  add_escape_options(*sub, a->request);
  sub->get_option("--optimizer")->required()->default_str("");
  add_context_options(*sub, a->ctx);
  return {sub, [a] {
            const EscapeOutcome out = run_escape_study(a->run_dir, a->request, a->ctx);
            const json& r = out.record;
            fmt::print("{}: {} {}/{} runs escaped, lr {:.6g} -> {}\n", a->run_dir,
                       r["request"]["optimizer"].get<std::string>(),
                       r["escaped_runs"].get<int64_t>(), r["runs"].get<int64_t>(),
                       r["lr"].get<double>(), out.dir);
            return 0;
          }};
}

}  // namespace ng
