// CLI11 definitions of the spectrum and escape options, bound to the study's requests.
#include "src/cli/options.h"

#include <fmt/format.h>
#include <fmt/ranges.h>

#include <algorithm>
#include <cstdio>
#include <sstream>

#include "src/core/dtypes.h"
#include "src/core/error.h"
#include "src/core/memory.h"
#include "src/core/stop.h"

namespace ng {
namespace {

template <typename E>
CLI::Option* add_enum(CLI::App& app, const std::string& flag, E& target, const NameTable<E>& t,
                      const std::string& help) {
  CLI::Option* o = app.add_option_function<std::string>(
      flag, [&target, &t, flag](const std::string& s) { target = t.parse(s, flag); }, help);
  o->type_name(fmt::format("{}", fmt::join(t.canonical(), "|")));
  o->default_str(t.name(target));
  return o;
}

CLI::Option* add_choice(CLI::App& app, const std::string& flag, std::string& target,
                        const std::vector<std::string>& choices, const std::string& help) {
  CLI::Option* o = app.add_option(flag, target, help);
  o->type_name(fmt::format("{}", fmt::join(choices, "|")));
  o->capture_default_str();
  return o;
}

std::vector<std::string> split(const std::string& text) {
  std::vector<std::string> out;
  std::stringstream in(text);
  std::string item;
  while (std::getline(in, item, ','))
    if (!item.empty()) out.push_back(item);
  return out;
}

int64_t integer(const std::string& text, const std::string& flag) {
  try {
    size_t used = 0;
    const long long v = std::stoll(text, &used);
    if (used == text.size()) return v;
  } catch (const std::exception&) {
  }
  fail("{}: expected an integer, got '{}'", flag, text);
}

void apply(CLI::App& app, const std::vector<std::string>& items) {
  std::vector<std::string> args;
  for (const auto& item : items) {
    const size_t eq = item.find('=');
    args.push_back("--" + item.substr(0, eq));
    if (eq != std::string::npos) args.push_back(item.substr(eq + 1));
  }
  std::reverse(args.begin(), args.end());  // CLI11 takes a vector last argument first
  app.parse(args);
}

}  // namespace

void add_spectrum_options(CLI::App& app, SpectrumRequest& r) {
  SpectrumOptions& o = r.options;
  app.add_option("--name", r.name, "the spectrum's name: it goes to RUN_DIR/spectra/NAME/")
      ->capture_default_str();
  app.add_option("--k", o.k, "eigenpairs")->capture_default_str();
  app.add_option_function<std::string>(
         "--matrices",
         [&o](const std::string& s) {
           o.matrices.clear();
           for (const auto& m : split(s))
             o.matrices.push_back(matrix_names().parse(m, "--matrices"));
         },
         "spectra to write besides the alignment along G's eigenvectors")
      ->type_name("LIST")
      ->default_str("G,Sigma");
  add_enum(app, "--estimator", o.estimator, estimator_names(),
           "per-sample: the paper's b explicit per-sample gradients; exact: batched Jacobian "
           "products over the samples");
  app.add_option("--samples", o.samples,
                 "samples b used; 0: 2k for per-sample (Appendix A), all "
                 "for exact")
      ->capture_default_str();
  add_choice(app, "--solver", o.solver, kSpectrumSolvers,
             "gram (the rows' Gram matrix, dense) or lanczos; auto: gram when there are rows "
             "(per-sample, or exact within --row-budget) and at most 32 ncv of them (1312 for "
             "k = 20), or too few for a Lanczos basis; else Lanczos (on the rows when they exist)");
  add_enum(app, "--dtype", o.dtype, dtype_names(),
           "float64: residuals < 1e-6; float32: residuals < 1e-3");
  add_choice(app, "--theta", o.theta, kSpectrumThetas,
             "trained: the run's theta.pt; random: theta ~ N(0, I) drawn with --seed (Figure 2); "
             "init: the model's own initialisation drawn with --seed (Figure 1)");
  app.add_option("--seed", o.seed, "sample subset, random theta, Lanczos start, probes")
      ->capture_default_str();
  app.add_option("--batch-size", o.batch_size, "samples per forward pass")->capture_default_str();
  app.add_option("--ncv", o.ncv, "Lanczos basis size; 0: the solver's default")
      ->capture_default_str();
  app.add_option("--tol", o.tol, "Lanczos tolerance; 0: 1e-10 for float64, 1e-6 for float32")
      ->capture_default_str();
  app.add_option("--maxit", o.maxit, "Lanczos restarts")->capture_default_str();
  app.add_option("--probes", o.probes,
                 "Hutchinson probes for mu, srk and |G|_F when no rows exist (exact estimator "
                 "over --row-budget)")
      ->capture_default_str();
  app.add_option_function<std::string>(
         "--row-budget",
         [&o](const std::string& v) { o.row_budget = parse_budget(v, "--row-budget"); },
         "memory the exact estimator may give its per-sample rows over all samples (then "
         "products, the Gram solver and mu, srk, |G|_F are exact from them), e.g. 6G; 0: never; "
         "auto: a quarter of the RAM, half the free GPU memory")
      ->type_name("SIZE")
      ->default_str("auto");
  add_choice(app, "--residuals", o.residuals, kSpectrumResiduals,
             "Lanczos residuals |Au - lambda u|/|lambda|: explicit (one product per pair) or "
             "krylov (from the Lanczos relation, as eigsh reports them; top pair checked)");
}

void add_escape_options(CLI::App& app, EscapeRequest& r) {
  EscapeOptions& o = r.options;
  app.add_option("--name", r.name,
                 "the sweep's name: it goes to RUN_DIR/escapes/NAME/ (default: the optimizer's)");
  app.add_option("--spectrum", r.spectrum,
                 "the spectrum whose eigenvectors are followed (computed with k = max(ks) when "
                 "missing)")
      ->capture_default_str();
  add_enum(app, "--optimizer", o.optimizer, optimizer_names(),
           "sgd: batches sampled as in training; gd: full batch");
  app.add_option(
         "--runs", o.runs,
         fmt::format("trajectories; 0: {} for sgd, {} for gd", default_escape_runs(Optimizer::Sgd),
                     default_escape_runs(Optimizer::Gd)))
      ->capture_default_str();
  app.add_option("--steps", o.steps, "updates per run")->capture_default_str();
  app.add_option_function<std::string>(
         "--lr",
         [&r](const std::string& s) {
           r.lr_paper = s == "paper";
           r.options.lr = s == "auto" || s == "paper" ? 0.0 : std::stod(s);
         },
         "learning rate; auto searches the smallest one at which the probe runs escape within "
         "the steps, from 2/lambda_1 (gd) or 1.2/|G|_F (sgd), and takes 1.1 times it; paper "
         "takes Figure 3's 1.2/|G|_F (sgd; |G|_F must be exact: a per-sample spectrum) or "
         "4/(lambda_1 + lambda_2) (gd) from the spectrum")
      ->type_name("X|auto|paper")
      ->default_str("auto")
      ->check([](const std::string& s) {
        if (s == "auto" || s == "paper") return std::string();
        try {
          size_t used = 0;
          const double v = std::stod(s, &used);
          if (used == s.size() && v > 0 && std::isfinite(v)) return std::string();
        } catch (const std::exception&) {
        }
        return "expected a positive learning rate, auto or paper, got '" + s + "'";
      });
  app.add_option("--batch", o.batch, "SGD batch size; 0: the run's train.batch_size")
      ->capture_default_str();
  app.add_option_function<std::string>(
         "--ks",
         [&r](const std::string& s) {
           r.options.ks.clear();
           for (const auto& k : split(s)) r.options.ks.push_back(integer(k, "--ks"));
           std::sort(r.options.ks.begin(), r.options.ks.end());
           r.options.ks.erase(std::unique(r.options.ks.begin(), r.options.ks.end()),
                              r.options.ks.end());
           r.ks_given = true;
         },
         "k values of p_k, r_k (the defaults are clipped to the K eigenvectors available)")
      ->type_name("LIST")
      ->default_str(fmt::format("{}", fmt::join(o.ks, ",")));
  app.add_option("--log-every", o.log_every, "steps between logged points")->capture_default_str();
  app.add_option("--perturb", o.perturb, "start at theta* + sigma N(0, I)")->capture_default_str();
  app.add_option("--seed", o.seed, "batch orders and perturbations")->capture_default_str();
  app.add_option("--escape-factor", o.escape_factor,
                 "escaped: loss above F L(theta*); besides the logged steps, GD logs the first "
                 "step whose full-batch loss exceeds it")
      ->capture_default_str();
  app.add_option("--escape-loss", o.escape_loss,
                 "escaped: loss above this absolute value instead (needed when L(theta*) = 0); 0: "
                 "use --escape-factor")
      ->capture_default_str();
  app.add_option("--max-loss-factor", o.max_loss_factor,
                 "a run stops as diverged once its loss exceeds this times the escape threshold")
      ->capture_default_str();
  app.add_flag("--stop-at-escape", o.stop_at_escape,
               "end each run at its first escaped point (Figure 6's trajectories)");
  app.add_option("--eval-samples", o.eval_samples,
                 "the loss on a fixed seeded subset of N training samples; 0: all of them")
      ->capture_default_str();
  app.add_flag("--energy", o.energy,
               "also log Section 5's loss energies X = lambda_1 <d,u_1>^2, Y (the rest of d^T G d) "
               "and D_1 = Y/X at every logged step, G over the spectrum's samples (one "
               "Jacobian-vector product per logged step)");
  app.add_option("--gd-samples", o.gd_samples,
                 "gd: the gradient over a fixed seeded subset of N samples; 0: all of them")
      ->capture_default_str();
  app.add_option("--replicas", o.replicas,
                 fmt::format("runs advanced together on one batched model, in fixed groups by "
                             "run index; 1: one run at a time; 0: {} on CUDA, 1 on the CPU",
                             kAutoReplicasCuda))
      ->check([](const std::string& s) {
        return !s.empty() && s.find_first_not_of("0123456789") == std::string::npos
                   ? std::string()
                   : "expected a count >= 0 (0: automatic, 1: one run at a time), got '" + s + "'";
      })
      ->capture_default_str();
  app.add_option_function<std::string>(
         "--cuda-graphs", [&o](const std::string& s) { o.cuda_graphs = s == "on"; },
         "CUDA: capture each batched SGD step in a CUDA graph; no effect on the CPU")
      ->check(CLI::IsMember({"on", "off"}))
      ->type_name("on|off")
      ->default_str(o.cuda_graphs ? "on" : "off");
}

void add_context_options(CLI::App& app, StudyContext& ctx) {
  app.add_option("--data-dir", ctx.data_dir,
                 "CIFAR-10 directory (else the config's data.dir, $NOISEGEOM_DATA, "
                 "data/cifar-10-batches-bin)");
  app.add_flag("--quiet", ctx.quiet, "no progress lines");
}

void add_budget_option(CLI::App& app) {
  app.add_option_function<std::string>(
         "--budget",
         [](const std::string& s) { set_time_budget(parse_duration(s, "--budget"), s); },
         fmt::format("wall time after which the running job checkpoints and the command exits "
                     "with status {}; the same command continues it",
                     kExitBudgetSpent))
      ->type_name("DURATION (90s, 7m, 1h30m)");
}

void apply_spectrum_overrides(SpectrumRequest& r, const std::vector<std::string>& items) {
  CLI::App app("spectrum job", "spectrum");
  app.option_defaults()->multi_option_policy(CLI::MultiOptionPolicy::TakeLast);  // last --set wins
  add_spectrum_options(app, r);
  apply(app, items);
}

void apply_escape_overrides(EscapeRequest& r, const std::vector<std::string>& items) {
  CLI::App app("escape job", "escape");
  app.option_defaults()->multi_option_policy(CLI::MultiOptionPolicy::TakeLast);
  add_escape_options(app, r);
  apply(app, items);
}

int report_parse_error(const CLI::App& app, const CLI::ParseError& e) {
  if (e.get_exit_code() == 0) {
    // --help, --version: the text on stdout, from the root so that usage reads "noisegeom CMD".
    const CLI::App* root = &app;
    while (root->get_parent()) root = root->get_parent();
    root->exit(e);
    return 0;
  }
  const bool bad_value = dynamic_cast<const CLI::ConversionError*>(&e) ||
                         dynamic_cast<const CLI::ValidationError*>(&e);
  std::string msg = e.what();
  msg = msg.substr(0, msg.find('\n'));
  const std::string cmd = app.get_parent() ? "noisegeom " + app.get_name() : "noisegeom";
  std::fprintf(stderr, "noisegeom: error: %s (see %s --help)\n", msg.c_str(), cmd.c_str());
  return bad_value ? 1 : 2;
}

std::string wrap(const std::string& text, size_t width) {
  std::string out;
  std::istringstream lines(text);
  std::string line;
  for (bool first = true; std::getline(lines, line); first = false) {
    if (!first) out += "\n";
    // An indented line (a list item) keeps its indent and hangs its continuation lines under
    // the item's text.
    const size_t indent = std::min(line.find_first_not_of(' '), line.size());
    const std::string hang(indent > 0 ? indent + 4 : 0, ' ');
    out += std::string(indent, ' ');
    size_t column = indent;
    bool line_empty = true;
    std::istringstream words(line);
    std::string word;
    while (words >> word) {
      if (!line_empty && column + 1 + word.size() > width) {
        out += "\n" + hang;
        column = hang.size();
      } else if (!line_empty) {
        out += " ";
        ++column;
      }
      out += word;
      column += word.size();
      line_empty = false;
    }
  }
  return out;
}

}  // namespace ng
