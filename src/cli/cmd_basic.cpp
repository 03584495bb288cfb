// models, data check and train.
#include <fmt/format.h>
#include <torch/nn/module.h>

#include "data/dataset.h"
#include "models/model.h"
#include "src/cli/args.h"
#include "src/cli/commands.h"
#include "src/core/error.h"
#include "src/training/train.h"

namespace ng {
namespace {}  // namespace

int cmd_models(const std::vector<std::string>& argv) {
  const Args a = parse_args(argv, {{}, {"--classes", "--input-dim"}, {}}, "models");
  if (!a.positional.empty()) throw UsageError{"models: unexpected argument " + a.positional[0]};
  const int64_t classes = a.integer("--classes", 10, 1);
  const int64_t input_dim = a.integer("--input-dim", 50, 1);

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
  const char* image[] = {"resnet", "vgg", "cnn", "fnn"};
  const char* vector[] = {"linear", "linear_net", "diag_linear", "two_layer", "toy"};
  auto row = [&](ModelSpec spec) {
    try {
      const Net net = make_model(spec);
      fmt::print("  {:<12} {:>12}  {}\n", spec.name, count_parameters(*net), net->describe());
    } catch (const Error& e) {
      fmt::print("  {:<12} {:>12}  ({})\n", spec.name, "-", e.what());
    }
  };
  for (const char* name : image) {
    ModelSpec s;
    s.name = name;
    s.num_classes = classes;
    row(s);
  }
  for (const char* name : vector) {
    ModelSpec s;
    s.name = name;
    s.num_classes =
        std::string(name) == "linear" || std::string(name) == "linear_net" ? classes : 1;
    s.input_dim = std::string(name) == "toy" ? 1 : input_dim;
    s.hidden = std::string(name) == "linear_net"
                   ? std::vector<int64_t>{input_dim, input_dim, input_dim}
               : std::string(name) == "two_layer" ? std::vector<int64_t>{100}
                                                  : std::vector<int64_t>{};
    row(s);
  }
  return 0;
}

int cmd_data(const std::vector<std::string>& argv) {
  const Args a = parse_args(argv, {{}, {"--data-dir"}, {}}, "data");
  if (a.positional.empty() || a.positional[0] != "check")
    throw UsageError{"data: expected the subcommand 'check'"};
  if (a.positional.size() > 2) throw UsageError{"data check: expected at most one directory"};
  const std::string dir =
      a.positional.size() == 2 ? a.positional[1] : resolve_data_dir(a.get("--data-dir"));
  fmt::print("{}", check_cifar10_dir(dir));
  return 0;
}

int cmd_train(const std::vector<std::string>& argv) {
  const Args a =
      parse_args(argv, {{"--resume", "--quiet"}, {"--out", "--data-dir"}, {"--set"}}, "train");
  if (a.positional.size() != 1) throw UsageError{"train: expected exactly one CONFIG file"};
  TrainOptions opt;
  opt.config_path = a.positional[0];
  opt.overrides = a.all("--set");
  opt.out_dir = a.get("--out");
  opt.data_dir = a.get("--data-dir");
  opt.resume = a.has("--resume");
  opt.quiet = a.has("--quiet");
  const TrainResult r = train(opt);
  if (r.status == "diverged") {
    fmt::print(stderr, "noisegeom: error: {}\n", r.message);
    return kExitDiverged;
  }
  if (r.status == "interrupted") return kExitInterrupted;
  return 0;
}

}  // namespace ng
