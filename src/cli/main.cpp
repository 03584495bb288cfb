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
};

void print_usage(std::FILE* out) {
  std::fprintf(out,
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
