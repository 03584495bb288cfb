#include "src/training/train.h"

#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <ATen/core/Dict.h>
#include <fmt/ranges.h>
#include <torch/cuda.h>
#include <torch/version.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cmath>
#include <csignal>
#include <filesystem>

#include "data/dataset.h"
#include "models/model.h"
#include "src/core/config.h"
#include "src/core/error.h"
#include "src/core/random.h"
#include "src/io/files.h"
#include "src/io/rundir.h"

namespace fs = std::filesystem;

namespace ng {
namespace {

std::atomic<int> g_stop_signal{0};
void on_signal(int sig) {
  g_stop_signal = sig;
}

std::vector<std::pair<std::string, at::Tensor>> named_params(NetImpl& model) {
  std::vector<std::pair<std::string, at::Tensor>> out;
  for (const auto& p : model.named_parameters()) out.emplace_back(p.key(), p.value());
  return out;
}

bool all_finite(NetImpl& model) {
  for (const auto& p : model.parameters())
    if (!p.isfinite().all().item<bool>()) return false;
  return true;
}

void save_checkpoint(const std::string& path, NetImpl& model, int64_t step, double initial_loss,
                     double wall) {
  c10::Dict<std::string, at::Tensor> params;
  for (const auto& [name, t] : named_params(model)) params.insert(name, t.detach().cpu());
  c10::impl::GenericDict d(c10::StringType::get(), c10::AnyType::get());
  d.insert("model", c10::IValue(params));
  d.insert("step", c10::IValue(step));
  d.insert("initial_loss", c10::IValue(initial_loss));
  d.insert("wall_seconds", c10::IValue(wall));
  d.insert("format", c10::IValue(std::string("noisegeom-checkpoint-1")));
  save_ivalue(path, c10::IValue(d));
}

// Copies a saved parameter dict into the model; any mismatch names the file and the parameter.
void load_parameters(NetImpl& model, const c10::Dict<c10::IValue, c10::IValue>& saved,
                     const std::string& file) {
  at::NoGradGuard no_grad;
  size_t matched = 0;
  for (auto& p : model.named_parameters()) {
    auto it = saved.find(p.key());
    if (it == saved.end()) fail("{}: parameter '{}' of the model is missing", file, p.key());
    const at::Tensor src = it->value().toTensor();
    if (src.sizes() != p.value().sizes())
      fail("{}: parameter '{}' has shape {} but the model expects {}", file, p.key(),
           fmt::format("{}", fmt::join(src.sizes().vec(), "x")),
           fmt::format("{}", fmt::join(p.value().sizes().vec(), "x")));
    p.value().copy_(src);
    ++matched;
  }
  if (matched != saved.size())
    fail("{}: holds {} tensors but the model has {} parameters (a different model?)", file,
         saved.size(), matched);
}

// samples.csv: which records of the data files the run trained on, so anyone can rebuild the set.
std::string samples_csv(const Dataset& data) {
  std::string out = "position,index,label,class\n";
  const at::Tensor labels =
      data.labels.defined() ? data.labels.cpu().to(at::kLong).contiguous() : at::Tensor();
  for (int64_t k = 0; k < data.size(); ++k)
    out += fmt::format("{},{},{},{}\n", k, data.indices.empty() ? k : data.indices[k],
                       data.original_labels.empty() ? -1 : data.original_labels[k],
                       labels.defined() ? labels.data_ptr<int64_t>()[k] : -1);
  return out;
}

}  // namespace

Eval evaluate(NetImpl& model, const at::Tensor& x, const at::Tensor& y, const at::Tensor& labels,
              bool cross_entropy, int64_t batch) {
  at::NoGradGuard no_grad;
  model.eval();
  const int64_t n = x.size(0);
  // Sums stay on the device until the end: one synchronisation per evaluation, not per batch.
  at::Tensor total = at::zeros({}, x.options().dtype(at::kDouble));
  at::Tensor correct = at::zeros({}, x.options().dtype(at::kLong));
  for (int64_t s = 0; s < n; s += batch) {
    const int64_t e = std::min(n, s + batch);
    const at::Tensor out = model.forward(x.slice(0, s, e));
    const at::Tensor lab = labels.defined() ? labels.slice(0, s, e) : at::Tensor();
    total += batch_loss(out, y.slice(0, s, e), lab, cross_entropy).to(at::kDouble) * (e - s);
    if (labels.defined()) correct += out.argmax(1).eq(lab).sum();
  }
  model.train();
  return {total.item<double>() / n, labels.defined() ? correct.item<double>() / n : -1.0};
}

at::Tensor batch_loss(const at::Tensor& out, const at::Tensor& target, const at::Tensor& label,
                      bool cross_entropy) {
  if (cross_entropy) return at::cross_entropy_loss(out, label);
  return (out - target).pow(2).sum(1).mean() * 0.5;
}

LoadedRun load_run(const std::string& run_dir, const std::string& data_dir_flag,
                   const std::string& params_file) {
  const fs::path root(run_dir);
  const std::string cfg_path = (root / "config.yaml").string();
  if (!fs::exists(cfg_path)) fail("{}: not a run directory (no config.yaml)", run_dir);
  LoadedRun r{run_dir, Config::load(cfg_path), {}, nullptr, "cpu", at::kFloat};
  r.data = load_training_data(r.cfg, data_dir_flag);
  // The samples must be the ones the run trained on, or every number computed here is off.
  const std::string samples_path = (root / "samples.csv").string();
  if (fs::exists(samples_path)) {
    if (read_file(samples_path) != samples_csv(r.data))
      fail(
          "{}: the training samples rebuilt from the data directory differ from the run's (another "
          "copy of CIFAR-10?)",
          samples_path);
  }
  r.device = resolve_device(r.cfg.s("device"), cfg_path);
  r.dtype = r.cfg.s("dtype") == "float64" ? at::kDouble : at::kFloat;
  const int64_t input_dim = r.data.x.dim() == 2 ? r.data.x.size(1) : 0;
  at::manual_seed(static_cast<uint64_t>(r.cfg.i("seed")));
  r.model = make_model(model_spec_from_config(r.cfg, r.data.num_classes, input_dim));
  const std::string pfile = (root / params_file).string();
  if (!fs::exists(pfile)) fail("{}: missing (did the training finish?)", pfile);
  const c10::IValue saved = load_ivalue(pfile);
  if (!saved.isGenericDict()) fail("{}: expected a dict of named tensors", pfile);
  auto dict = saved.toGenericDict();
  if (dict.contains("model") && dict.contains("step")) dict = dict.at("model").toGenericDict();
  load_parameters(*r.model, dict, pfile);
  r.model->to(at::Device(r.device == "cuda" ? at::kCUDA : at::kCPU), r.dtype);
  r.model->eval();
  return r;
}

std::vector<int64_t> epoch_permutation(int64_t n, uint64_t seed, int64_t epoch) {
  return seeded_permutation(n, splitmix64(seed * 1000003ULL + static_cast<uint64_t>(epoch)));
}

BatchOrder::BatchOrder(int64_t n, int64_t batch, uint64_t seed, at::Device device)
    : n_(n),
      batch_(std::min(batch, n)),
      per_epoch_((n + batch_ - 1) / batch_),
      seed_(seed),
      device_(device) {}

at::Tensor BatchOrder::at(int64_t step) {
  const int64_t epoch = step / per_epoch_, pos = step % per_epoch_;
  if (epoch != epoch_) {
    order_ = at::tensor(epoch_permutation(n_, seed_, epoch), at::kLong).to(device_);
    epoch_ = epoch;
  }
  return order_.slice(0, pos * batch_, std::min(n_, (pos + 1) * batch_));
}

std::string resolve_device(const std::string& requested, const std::string& origin) {
  const bool gpu = torch::cuda::is_available();
  if (requested == "cuda" && !gpu)
    fail("{}: device: cuda requested but no CUDA device is usable ({}); use device: auto or cpu",
         origin, cuda_build() ? "no GPU found" : "this is a CPU build");
  if (requested == "auto") return gpu ? "cuda" : "cpu";
  return requested;
}

std::string run_name(const Config& cfg, const std::string& config_path) {
  const std::string name = cfg.s("name");
  return name.empty() ? fs::path(config_path).stem().string() : name;
}

void require_same_config(const std::string& run_dir, Config cfg, const std::string& name,
                         const std::string& what, const std::string& hint) {
  const std::string stored_path = (fs::path(run_dir) / "config.yaml").string();
  Config stored = Config::load(stored_path);
  stored.set("name=" + name);
  cfg.set("name=" + name);
  const auto changed = cfg.diff(stored);
  if (!changed.empty())
    fail("{}: {} ({} differs); {}", stored_path, what, fmt::format("{}", fmt::join(changed, ", ")),
         hint);
}

TrainResult train(const TrainOptions& opt) {
  const auto t_start = std::chrono::steady_clock::now();
  Config cfg = Config::load(opt.config_path, opt.overrides);
  const std::string name = run_name(cfg, opt.config_path);
  const std::string root = opt.out_dir.empty() ? (fs::path("runs") / name).string() : opt.out_dir;

  const bool has_run = fs::exists(fs::path(root) / "config.yaml");
  int64_t start_step = 0;
  double initial_loss = NAN, wall_before = 0;
  c10::IValue ckpt;
  if (opt.resume) {
    if (!has_run)
      fail("{}: nothing to resume (no config.yaml); start the run without --resume", root);
    require_same_config(root, cfg, name, "--resume with a different config",
                        "resume with the same config and --set values");
    const std::string ck = (fs::path(root) / "checkpoint.pt").string();
    if (fs::exists(ck)) {
      ckpt = load_ivalue(ck);
      if (!ckpt.isGenericDict()) fail("{}: not a noisegeom checkpoint", ck);
      const auto d = ckpt.toGenericDict();
      if (!d.contains("step") || !d.contains("model")) fail("{}: not a noisegeom checkpoint", ck);
      start_step = d.at("step").toInt();
      initial_loss = d.at("initial_loss").toDouble();
      wall_before = d.at("wall_seconds").toDouble();
    }
  } else if (has_run) {
    fail(
        "{}: a run directory is already there; pass --resume to continue it or --out DIR for a "
        "new one",
        root);
  }
  cfg.set("name=" + name);

  if (cfg.i("threads") > 0) at::set_num_threads(static_cast<int>(cfg.i("threads")));
  const std::string device_name = resolve_device(cfg.s("device"), cfg.origin());
  const at::Device device(device_name == "cuda" ? at::kCUDA : at::kCPU);
  const at::ScalarType dtype = cfg.s("dtype") == "float64" ? at::kDouble : at::kFloat;
  const uint64_t seed = static_cast<uint64_t>(cfg.i("seed"));

  Dataset data = load_training_data(cfg, opt.data_dir);
  const int64_t n = data.size();
  const int64_t input_dim = data.x.dim() == 2 ? data.x.size(1) : 0;
  at::manual_seed(seed);
  Net model = make_model(model_spec_from_config(cfg, data.num_classes, input_dim));
  model->to(device, dtype);
  const int64_t p = count_parameters(*model);
  if (!ckpt.isNone())
    load_parameters(*model, ckpt.toGenericDict().at("model").toGenericDict(),
                    (fs::path(root) / "checkpoint.pt").string());
  // Only now, with config, data and model known to be good, does the run directory appear.
  RunDir run(root);

  if (!opt.resume) {
    write_file_atomic(run.path("config.yaml"), cfg.to_yaml());
    write_file_atomic(run.path("samples.csv"), samples_csv(data));
  }

  const bool ce = cfg.s("train.loss") == "cross_entropy";
  if (ce && !data.labels.defined())
    fail("{}: train.loss: cross_entropy needs class labels (data.source is {})", cfg.origin(),
         cfg.s("data.source"));
  const at::Tensor x = data.x.to(device, dtype);
  const at::Tensor y = data.targets.to(device, dtype);
  const at::Tensor labels = data.labels.defined() ? data.labels.to(device) : at::Tensor();
  const double lr = cfg.f("train.lr");
  const int64_t batch = std::min(cfg.i("train.batch_size"), n);
  const int64_t per_epoch = (n + batch - 1) / batch;
  const int64_t max_steps = cfg.i("train.max_steps");
  const int64_t eval_every = cfg.i("train.eval_every");
  const int64_t ckpt_every = cfg.i("train.checkpoint_every");
  const double target = cfg.f("train.target_loss");
  const std::vector<at::Tensor> params = model->parameters();

  auto manifest = [&](const std::string& status, int64_t step, const Eval& ev, double wall,
                      const std::string& message) {
    Json j;
    j.str("tool", "noisegeom")
        .str("version", version())
        .str("git_commit", git_commit())
        .str("updated", iso_time_now())
        .str("name", name)
        .str("config_file", cfg.origin())
        .integer("seed", cfg.i("seed"))
        .str("device", device_name)
        .str("dtype", cfg.s("dtype"))
        .integer("threads", at::get_num_threads())
        .str("libtorch_version", TORCH_VERSION)
        .boolean("cuda_build", cuda_build())
        .str("model", model->describe())
        .integer("parameter_count", p)
        .str("data", data.description)
        .integer("num_samples", n)
        .str("samples_file", "samples.csv")
        .integer("steps", step)
        .integer("resumed_from_step", opt.resume ? start_step : -1)
        .num("epochs", double(step) / per_epoch)
        .num("wall_seconds", wall)
        .num("initial_loss", initial_loss)
        .num("final_loss", ev.loss)
        .num("final_accuracy", ev.accuracy)
        .num("target_loss", target)
        .str("status", status)
        .str("message", message);
    write_file_atomic(run.path("manifest.json"), j.dump() + "\n");
  };

  CsvLog log(run.path("train_log.csv"),
             "step,epoch,loss,accuracy,batch_loss,lr,wall_seconds,steps_per_second",
             opt.resume ? start_step : -1);

  g_stop_signal = 0;
  auto old_int = std::signal(SIGINT, on_signal);
  auto old_term = std::signal(SIGTERM, on_signal);
  const bool tty = !opt.quiet && isatty(STDERR_FILENO);
  auto wall = [&] {
    return wall_before +
           std::chrono::duration<double>(std::chrono::steady_clock::now() - t_start).count();
  };

  if (!opt.quiet)
    fmt::print(stderr, "noisegeom train: {} | {} | {} params | {} | {} | lr {} batch {}\n", name,
               model->describe(), p, data.description, device_name, lr, batch);

  int64_t step = start_step;
  Eval ev = evaluate(*model, x, y, labels, ce, cfg.i("train.eval_batch"));
  if (std::isnan(initial_loss)) initial_loss = ev.loss;
  double batch_loss_sum = 0;
  int64_t batch_loss_count = 0;
  auto t_rate = std::chrono::steady_clock::now();
  int64_t rate_step = step;
  double rate = 0;
  std::vector<std::pair<int64_t, double>> recent;  // (step, log loss) of the last evaluations
  std::string status, message;
  BatchOrder batches(n, batch, seed, device);

  auto record = [&](const Eval& e) {
    const auto now = std::chrono::steady_clock::now();
    const double dt = std::chrono::duration<double>(now - t_rate).count();
    if (step > rate_step && dt > 0) rate = (step - rate_step) / dt;
    t_rate = now;
    rate_step = step;
    const double bl = batch_loss_count ? batch_loss_sum / batch_loss_count : NAN;
    batch_loss_sum = 0;
    batch_loss_count = 0;
    log.row(fmt::format(
        "{},{:.4f},{:.8g},{},{:.8g},{},{:.3f},{:.2f}", step, double(step) / per_epoch, e.loss,
        e.accuracy < 0 ? std::string() : fmt::format("{:.6f}", e.accuracy), bl, lr, wall(), rate));
    if (opt.quiet) return;
    // ETA to the target from the log-linear decrease of the loss over the last evaluations
    // (SGD's loss is noisy from one evaluation to the next), else to the step cap.
    recent.emplace_back(step, e.loss > 0 ? std::log(e.loss) : NAN);
    if (recent.size() > 6) recent.erase(recent.begin());
    std::string eta = "ETA ?";
    if (rate > 0) {
      const auto& [s0, l0] = recent.front();
      const double slope = step > s0 && std::isfinite(l0) && e.loss > 0
                               ? (l0 - std::log(e.loss)) / double(step - s0)
                               : 0;
      const double to_cap = (max_steps - step) / rate;
      if (slope > 0 && e.loss > target) {
        const double steps_needed = (std::log(e.loss) - std::log(target)) / slope;
        eta = "ETA " + format_duration(std::min(to_cap, steps_needed / rate));
      } else {
        eta = "ETA <=" + format_duration(to_cap);
      }
    }
    const std::string acc = e.accuracy < 0 ? "" : fmt::format(" acc {:.1f}%", 100 * e.accuracy);
    fmt::print(stderr, "{}step {}/{} epoch {:.1f} loss {:.3e}{} {:.0f} steps/s {}{}",
               tty ? "\r" : "", step, max_steps, double(step) / per_epoch, e.loss, acc, rate, eta,
               tty ? "\x1b[K" : "\n");
  };
  // A resumed run's log already holds the rows up to its checkpoint.
  if (log.data_rows() == 0) record(ev);
  manifest("running", step, ev, wall(), "");

  model->train();
  while (true) {
    if (ev.loss < target) {
      status = "converged";
      message = fmt::format("training loss {:.3e} < {:.0e} after {} steps", ev.loss, target, step);
      break;
    }
    if (!std::isfinite(ev.loss) || ev.loss > cfg.f("train.divergence_factor") * initial_loss) {
      status = "diverged";
      message = fmt::format(
          "{}: training diverged at step {} (loss {:.3e}, initial {:.3e}); the last good "
          "checkpoint is kept; lower train.lr",
          cfg.origin(), step, ev.loss, initial_loss);
      break;
    }
    if (step >= max_steps) {
      status = "max_steps";
      message =
          fmt::format("step cap {} reached with loss {:.3e} >= {:.0e}", max_steps, ev.loss, target);
      break;
    }
    if (g_stop_signal) {
      status = "interrupted";
      message = fmt::format("interrupted by signal {} at step {}; continue with --resume",
                            g_stop_signal.load(), step);
      save_checkpoint(run.path("checkpoint.pt"), *model, step, initial_loss, wall());
      break;
    }
    const at::Tensor idx = batches.at(step);
    const at::Tensor out = model->forward(x.index_select(0, idx));
    const at::Tensor loss =
        batch_loss(out, y.index_select(0, idx),
                   labels.defined() ? labels.index_select(0, idx) : at::Tensor(), ce);
    for (auto& t : params) t.mutable_grad() = at::Tensor();
    loss.backward();
    {
      at::NoGradGuard no_grad;
      for (auto& t : params)
        if (t.grad().defined()) t.add_(t.grad(), -lr);
    }
    ++step;
    if (step % eval_every == 0 || step >= max_steps) {
      batch_loss_sum += loss.item<double>();
      ++batch_loss_count;
      ev = evaluate(*model, x, y, labels, ce, cfg.i("train.eval_batch"));
      record(ev);
    }
    // Only finite parameters become a checkpoint, so a diverged run keeps the last good one.
    if (step % ckpt_every == 0 && all_finite(*model)) {
      save_checkpoint(run.path("checkpoint.pt"), *model, step, initial_loss, wall());
      manifest("running", step, ev, wall(), "");
    }
  }
  std::signal(SIGINT, old_int);
  std::signal(SIGTERM, old_term);
  if (tty) fmt::print(stderr, "\n");

  const double total = wall();
  if (status != "diverged") {
    if (status != "interrupted")
      save_checkpoint(run.path("checkpoint.pt"), *model, step, initial_loss, total);
    save_tensor_dict(run.path("theta.pt"), named_params(*model));
  }
  manifest(status, step, ev, total, message);
  if (!opt.quiet && status != "diverged")
    fmt::print(stderr, "noisegeom train: {}: {} ({}) -> {}\n", status, message,
               format_duration(total), root);
  return {root, status, step, ev.loss, total, message};
}

}  // namespace ng
