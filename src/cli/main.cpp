#include <cstdio>
#include <string>
#include <vector>

#include "src/cli/args.h"
#include "src/cli/commands.h"
#include "src/core/error.h"

namespace {

const ng::Command kCommands[] = {
    {"models", "list the models with their parameter counts",
     "usage: noisegeom models [--classes C] [--input-dim D]\n\n"
     "Prints the paper's model configurations with our parameter count next to the paper's, then\n"
     "every model family at its default configuration for C classes (default 10); the small-scale\n"
     "models on vector inputs use D input dimensions (default 50).\n",
     ng::cmd_models},
    {"data", "check CIFAR-10 data files",
     "usage: noisegeom data check [DIR]\n\n"
     "Validates a cifar-10-batches-bin directory (record sizes, label bytes) and prints per-file\n"
     "class counts. DIR defaults to --data-dir, $NOISEGEOM_DATA, then data/cifar-10-batches-bin.\n"
     "Get the data with data/download_cifar10.sh.\n",
     ng::cmd_data},
    {"train", "train a model to a minimum with constant-LR SGD",
     "usage: noisegeom train CONFIG [--set key=value]... [--out DIR] [--resume] [--data-dir DIR]\n"
     "                       [--quiet]\n\n"
     "Trains the model of the YAML experiment CONFIG with plain SGD (no momentum, weight decay or\n"
     "augmentation) until the full training loss is below train.target_loss or train.max_steps is\n"
     "reached, writing the run directory (default runs/<name>): config.yaml, manifest.json,\n"
     "samples.csv, train_log.csv, checkpoint.pt and theta.pt (a dict of named tensors that\n"
     "Python's torch.load reads).\n\n"
     "  --set key=value  override a config key (checked like the file), e.g. --set train.lr=0.05\n"
     "  --out DIR        run directory\n"
     "  --resume         continue an interrupted run from its last checkpoint (same config)\n"
     "  --data-dir DIR   CIFAR-10 directory (else data.dir, $NOISEGEOM_DATA,\n"
     "                   data/cifar-10-batches-bin)\n"
     "  --quiet          no progress lines\n\n"
     "Exit status: 0 done (converged or step cap), 1 bad input, 2 usage, 3 diverged,\n"
     "130 interrupted (resume with --resume).\n",
     ng::cmd_train},
    {"spectrum", "top-k eigenpairs of G and Sigma at theta*, alignment metrics",
     "usage: noisegeom spectrum RUN_DIR [--k K] [--matrices G,Sigma,Sigma0,H]\n"
     "                          [--estimator per-sample|exact] [--samples b] [--solver "
     "gram|lanczos]\n"
     "                          [--dtype float32|float64] [--theta random] [--seed S]\n"
     "                          [--batch-size N] [--ncv N] [--tol X] [--maxit N] [--probes N]\n"
     "                          [--residuals explicit|krylov]\n"
     "                          [--data-dir DIR] [--quiet]\n\n"
     "Top-k eigenpairs of the Gauss-Newton matrix G at the run's theta.pt, the noise energy along\n"
     "them (alpha_k = u_k^T Sigma u_k / 2L, g_k = alpha_k / lambda_k), the loss alignment mu and\n"
     "srk(G), srk(G^2), |G|_F; with --matrices, also the top-k spectra of Sigma, Sigma0, H.\n"
     "Writes RUN_DIR/spectrum/ (replaced as a whole, never half-written): eigenvalues.csv\n"
     "(matrix,index,eigenvalue,residual), alignment.csv (k,lambda,alpha,g), eigenvectors.pt\n"
     "(torch.load -> {'U': p x k, 'eigenvalues', 'parameter_names', 'parameter_numels'}; rows in\n"
     "named_parameters() order), summary.json, samples.csv (the samples used: position in the\n"
     "run's training set, index into the CIFAR-10 files).\n\n"
     "  --k K             eigenpairs (default 20)\n"
     "  --matrices LIST   spectra to write (default G,Sigma)\n"
     "  --estimator E     per-sample (default; the paper's: b explicit per-sample gradients) or\n"
     "                    exact (batched Jacobian products over the samples)\n"
     "  --samples b       samples used (default 2k for per-sample as in Appendix A, all for "
     "exact)\n"
     "  --solver S        gram (per-sample rows' Gram matrix) or lanczos (default: gram when the\n"
     "                    rows number at most 4096, else lanczos)\n"
     "  --dtype D         float64 (default; residuals < 1e-6) or float32 (residuals < 1e-3)\n"
     "  --theta random    at theta ~ N(0, I) drawn with --seed instead of theta.pt (Figure 2b)\n"
     "  --seed S          sample subset, random theta, Lanczos start, probes (default 0)\n"
     "  --batch-size N    samples per forward pass (default 256)\n"
     "  --ncv N, --tol X, --maxit N   Lanczos basis size, tolerance (default 1e-10 for float64,\n"
     "                    1e-6 for float32), restarts (default 1000)\n"
     "  --probes N        Hutchinson probes for mu, srk and |G|_F with --estimator exact (100)\n"
     "  --residuals R     Lanczos residuals |Au - lambda u|/|lambda|: explicit (default; one\n"
     "                    product per pair) or krylov (from the Lanczos relation, as eigsh\n"
     "                    reports them, with the top pair checked explicitly)\n"
     "  --data-dir DIR    CIFAR-10 directory (else the run's data.dir, $NOISEGEOM_DATA, ...)\n"
     "  --quiet           no progress lines\n",
     ng::cmd_spectrum},
    {"escape", "SGD and GD escapes from theta* along the top eigenvectors of G",
     "usage: noisegeom escape RUN_DIR --optimizer sgd|gd [--runs N] [--steps T] [--lr X|auto]\n"
     "                        [--batch B] [--ks 1,5,10,20] [--log-every S] [--perturb sigma]\n"
     "                        [--seed S] [--escape-factor F] [--stop-at-escape]\n"
     "                        [--eval-samples N] [--gd-samples N] [--data-dir DIR] [--quiet]\n\n"
     "Runs N constant-learning-rate trajectories from the run's theta.pt (Section 6, Figure 6) "
     "and\n"
     "records at every logged step the training loss, d = |theta_t - theta*| and, for each k,\n"
     "p_k (p_1 = <theta_t - theta*, u_1>, signed; |U_k^T (theta_t - theta*)| for k > 1) and\n"
     "r_k = (d^2 - p_k^2)^(1/2), with u_1..u_K from RUN_DIR/spectrum/ (computed first, with\n"
     "k = max(ks), when missing). Writes RUN_DIR/escape/<optimizer>/ (one file per finished run:\n"
     "a re-run computes only the missing runs), RUN_DIR/escape/trajectories.csv\n"
     "(optimizer,run,step,lr,loss,distance,p_1,r_1,...; every optimizer swept so far) and\n"
     "RUN_DIR/escape/summary.json (per optimizer: lr and its search, escaped runs, median escape\n"
     "step, mean final p and r per k, seconds, srk(G^2), the escape criterion).\n\n"
     "  --optimizer O      sgd (batches sampled as in training) or gd (full batch)\n"
     "  --runs N           trajectories (default 50 for sgd, 1 for gd)\n"
     "  --steps T          updates per run (default 500)\n"
     "  --lr X|auto        learning rate; auto (default) searches the smallest one at which the\n"
     "                     probe runs escape within T steps, from 2/lambda_1 (gd) or\n"
     "                     1.2/|G|_F (sgd), and takes 1.1 times it\n"
     "  --batch B          SGD batch size (default: the run's train.batch_size)\n"
     "  --ks LIST          k values of p_k, r_k (default 1,5,10,20, clipped to the K available)\n"
     "  --log-every S      steps between logged points (default 10)\n"
     "  --perturb sigma    start at theta* + sigma N(0, I) (default 0)\n"
     "  --seed S           batch orders and perturbations (default 0)\n"
     "  --escape-factor F  escaped: loss above F L(theta*) (default 10); besides the logged\n"
     "                     steps, GD logs the first step whose full-batch loss exceeds it\n"
     "  --stop-at-escape   end each run at its first escaped point (Figure 6's trajectories)\n"
     "  --eval-samples N   the loss is evaluated on a fixed seeded subset of N training\n"
     "                     samples (default 0: all of them)\n"
     "  --gd-samples N     gd: the gradient over a fixed seeded subset of N samples (default 0:\n"
     "                     the full training set)\n"
     "  --data-dir DIR     CIFAR-10 directory (else the run's data.dir, $NOISEGEOM_DATA, ...)\n"
     "  --quiet            no progress lines\n",
     ng::cmd_escape},
    {"reproduce", "train, spectrum and plot one of the paper's figures",
     "usage: noisegeom reproduce FIGURE --scale quick|paper [--out DIR] [--data-dir DIR]\n"
     "                           [--set key=value]... [--quiet]\n\n"
     "Runs the whole pipeline of a figure: trains its models (experiments/*.yaml), computes the\n"
     "spectra, and plots DIR/figures/FIGURE.png with experiments/plot_FIGURE.py (matplotlib),\n"
     "which reads only the run directories' CSV and JSON files. Run directories go to\n"
     "DIR/runs/<experiment name> (DIR defaults to the current directory). Resumable: a finished\n"
     "training run and a spectrum with the same settings are reused, an interrupted training\n"
     "run is resumed.\n\n"
     "Figures:\n"
     "  fig5   alignment of alpha_k and lambda_k at theta* for a Fixup ResNet and a VGG on\n"
     "         CIFAR-10 {0,1} (paper: ResNet-38 and VGG-13; quick: small ones on 1,000 images)\n"
     "  fig2b  alpha_k against lambda_k for the 4-layer CNN and FNN at theta ~ N(0, I)\n"
     "  fig6   escapes of SGD (50 runs) and GD from theta*: p_{t,k} against r_{t,k}, k = 1, 5,\n"
     "         10, 20 (paper: VGG-19 and ResNet-110 on CIFAR-10; quick: the 4-layer CNN and\n"
     "         FNN on 1,000 images of labels {0,1})\n\n"
     "  --scale S       quick (CPU, minutes) or paper (Appendix A settings; wants a GPU)\n"
     "  --out DIR       where runs/ and figures/ go (default .)\n"
     "  --data-dir DIR  CIFAR-10 directory\n"
     "  --set key=value override a training config key in every run of the figure; keys\n"
     "                  spectrum.OPTION=value and escape.OPTION=value set an option of\n"
     "                  those jobs (e.g. spectrum.k=10, escape.runs=20)\n"
     "  --quiet         no progress lines\n",
     ng::cmd_reproduce},
};

void print_usage(std::FILE* out) {
  std::fprintf(
      out,
      "usage: noisegeom <command> [options]   (noisegeom <command> --help for details)\n\n"
      "Noise geometry of SGD: train to a sharp minimum, spectra of G and Sigma, escapes.\n\n"
      "commands:\n");
  for (const auto& c : kCommands) std::fprintf(out, "  %-10s %s\n", c.name, c.summary);
  std::fprintf(out, "\n  --version  print the version\n");
}

}  // namespace

int main(int argc, char** argv) {
  std::vector<std::string> args(argv + 1, argv + argc);
  if (args.empty()) {
    print_usage(stderr);
    return 2;
  }
  const std::string cmd = args[0];
  if (cmd == "--version" || cmd == "version") {
    std::puts(ng::version_string().c_str());
    return 0;
  }
  if (cmd == "--help" || cmd == "-h" || cmd == "help") {
    print_usage(stdout);
    return 0;
  }
  for (const auto& c : kCommands) {
    if (cmd != c.name) continue;
    std::vector<std::string> rest(args.begin() + 1, args.end());
    for (const auto& a : rest)
      if (a == "--help" || a == "-h") {
        std::fputs(c.help, stdout);
        return 0;
      }
    try {
      return c.run(rest);
    } catch (const ng::UsageError& e) {
      std::fprintf(stderr, "noisegeom %s\n%s", e.message.c_str(), c.help);
      return 2;
    } catch (const ng::Error& e) {
      std::fprintf(stderr, "noisegeom: error: %s\n", e.what());
      return 1;
    } catch (const std::exception& e) {
      // LibTorch errors carry a C++ backtrace after the first line; users need the first line.
      std::string msg = e.what();
      msg = msg.substr(0, msg.find('\n'));
      std::fprintf(stderr, "noisegeom: error: %s\n", msg.c_str());
      return 1;
    }
  }
  std::fprintf(stderr, "noisegeom: unknown command '%s'\n\n", cmd.c_str());
  print_usage(stderr);
  return 2;
}
