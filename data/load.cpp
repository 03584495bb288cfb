// The data path of a config: data.* keys -> a Dataset.
#include <ATen/core/Tensor.h>

#include "data/dataset.h"
#include "src/core/config.h"
#include "src/core/error.h"

namespace ng {

Dataset load_training_data(const Config& cfg, const std::string& data_dir_flag) {
  const std::string& source = cfg.s("data.source");
  const auto seed = static_cast<uint64_t>(cfg.i("seed"));
  if (source == "cifar10") {
    CifarOptions o;
    // The command line wins over the config, so a run moved to another machine finds its data.
    o.dir = !data_dir_flag.empty() || !cfg.is_set("data.dir") || cfg.s("data.dir").empty()
                ? resolve_data_dir(data_dir_flag)
                : cfg.s("data.dir");
    o.classes = cfg.ints("data.classes");
    o.max_samples = cfg.i("data.max_samples");
    o.normalize = cfg.s("data.normalize") == "per_channel";
    o.seed = seed;
    return load_cifar10_train(o);
  }
  if (source == "gaussian") {
    GaussianOptions o;
    o.n = cfg.i("data.n");
    o.d = cfg.i("data.d");
    o.covariance = cfg.s("data.covariance");
    o.power = cfg.f("data.power");
    o.bulk = cfg.f("data.bulk");
    o.scale = cfg.f("data.scale");
    o.outputs = cfg.i("data.outputs");
    o.zero_teacher = cfg.s("data.teacher") == "zero";
    o.seed = seed;
    return make_gaussian(o);
  }
  fail("{}: data.source: '{}' is not one of cifar10|gaussian", cfg.origin(), source);
}

}  // namespace ng
