// models, data check and train.
#include <fmt/format.h>
#include <torch/nn/module.h>

#include <memory>

#include "data/dataset.h"
#include "models/model.h"
#include "src/cli/commands.h"
#include "src/cli/options.h"
#include "src/core/error.h"
#include "src/core/stop.h"
#include "src/study/figures.h"
#include "src/training/train.h"

namespace ng {
namespace {

void print_model_row(const ModelSpec& spec) {
  try {
    const Net net = make_model(spec);
    fmt::print("  {:<12} {:>12}  {}\n", spec.name, count_parameters(*net), net->describe());
  } catch (const Error& e) {
    fmt::print("  {:<12} {:>12}  ({})\n", spec.name, "-", e.what());
  }
}

int list_models(int64_t classes, int64_t input_dim) {
  fmt::print("The paper's models (Appendix A):\n");
  fmt::print("  {:<11} {:>8} {:>12} {:>12}  {}\n", "model", "classes", "parameters", "paper",
             "architecture");
  for (const auto& pm : paper_models()) {
    const Net net = make_model(pm.spec);
    const int64_t count = count_parameters(*net);
    fmt::print("  {:<11} {:>8} {:>12} {:>12}  {}{}\n", pm.label, pm.spec.num_classes, count,
               pm.paper_count, net->describe(), count == pm.paper_count ? "" : "  [differs]");
    if (!pm.note.empty()) fmt::print("  {:<11} note: {}\n", "", pm.note);
  }
  fmt::print("\nEvery family at its default configuration, {} classes (vector models: d = {}):\n",
             classes, input_dim);
  for (const char* name : {"resnet", "vgg", "cnn", "fnn"}) {
    ModelSpec s;
    s.name = name;
    s.num_classes = classes;
    print_model_row(s);
  }
  for (const std::string name : {"linear", "linear_net", "diag_linear", "two_layer", "toy"}) {
    ModelSpec s;
    s.name = name;
    s.num_classes = name == "linear" || name == "linear_net" ? classes : 1;
    s.input_dim = name == "toy" ? 1 : input_dim;
    s.hidden = name == "linear_net"  ? std::vector<int64_t>{input_dim, input_dim, input_dim}
               : name == "two_layer" ? std::vector<int64_t>{100}
                                     : std::vector<int64_t>{};
    print_model_row(s);
  }
  std::fflush(stdout);
  return 0;
}

}  // namespace

Command add_models_command(CLI::App& app) {
  auto* sub = app.add_subcommand("models", "list the models with their parameter counts");
  sub->footer(
      wrap("Prints the paper's model configurations with our parameter count next to the paper's, "
           "then every model family at its default configuration."));
  auto a = std::make_shared<std::pair<int64_t, int64_t>>(10, 50);
  sub->add_option("--classes", a->first, "classes C of the model families")
      ->check(CLI::PositiveNumber);
  sub->add_option("--input-dim", a->second, "input dimension D of the vector models")
      ->check(CLI::PositiveNumber);
  return {sub, [a] { return list_models(a->first, a->second); }};
}

Command add_data_command(CLI::App& app) {
  auto* sub = app.add_subcommand("data", "check CIFAR-10 data files");
  sub->require_subcommand(1);
  auto* check = sub->add_subcommand("check", "validate a cifar-10-batches-bin directory");
  check->footer(
      wrap("Checks record sizes and label bytes and prints per-file class counts. DIR defaults to "
           "--data-dir, $NOISEGEOM_DATA, then data/cifar-10-batches-bin. Get the data with "
           "data/download_cifar10.sh."));
  auto a = std::make_shared<std::pair<std::string, std::string>>();
  check->add_option("DIR", a->first, "the directory to check");
  check->add_option("--data-dir", a->second, "CIFAR-10 directory");
  return {sub, [a] {
            fmt::print(
                "{}", check_cifar10_dir(a->first.empty() ? resolve_data_dir(a->second) : a->first));
            return 0;
          }};
}

Command add_train_command(CLI::App& app) {
  auto* sub = app.add_subcommand("train", "train a model to a minimum with constant-LR SGD");
  sub->footer(wrap(
      "Trains the model of the YAML experiment CONFIG with plain SGD (no momentum, weight decay "
      "or augmentation) until the full training loss is below train.target_loss or "
      "train.max_steps is reached, writing the run directory (default runs/<name>): "
      "config.yaml, manifest.json, samples.csv, train_log.csv, checkpoint.pt and theta.pt (a dict "
      "of named tensors that Python's torch.load reads).\n\nExit status: 0 done (converged or "
      "step cap), 1 bad input, 2 usage, 3 diverged, 130 interrupted (SIGINT/SIGTERM), 75 time "
      "budget spent; the last two save a checkpoint first and --resume continues."));
  auto o = std::make_shared<TrainOptions>();
  sub->add_option("CONFIG", o->config_path, "the YAML experiment")->required();
  sub->add_option("--set", o->overrides,
                  "override a config key (checked like the file), e.g. --set train.lr=0.05")
      ->type_name("KEY=VALUE")
      ->allow_extra_args(false);
  sub->add_option("--out", o->out_dir, "run directory (default runs/<name>)");
  sub->add_flag("--resume", o->resume,
                "continue an interrupted run from its last checkpoint (same config)");
  sub->add_option("--data-dir", o->data_dir,
                  "CIFAR-10 directory (else data.dir, $NOISEGEOM_DATA, data/cifar-10-batches-bin)");
  sub->add_flag("--quiet", o->quiet, "no progress lines");
  add_budget_option(*sub);
  return {sub, [o] {
            const TrainResult r = train(*o);
            if (r.status == "diverged") {
              fmt::print(stderr, "noisegeom: error: {}\n", r.message);
              return kExitDiverged;
            }
            const bool interrupted = r.status == "interrupted";
            if (!interrupted && r.status != "budget_spent") return 0;
            // Said even when quiet: the exit status alone does not tell where the run stands.
            if (o->quiet) fmt::print(stderr, "noisegeom train: {} -> {}\n", r.message, r.run_dir);
            return interrupted ? kExitInterrupted : kExitBudgetSpent;
          }};
}

}  // namespace ng
