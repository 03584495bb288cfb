// Training (Appendix A of the paper): SGD with a constant or cyclical learning rate (Figure 4)
// from a config into a run directory with checkpoints, resume, a manifest and, for small models, a
// trace of every parameter; and what the analyses share with it: loading a finished run, the
// full-loss evaluation, samples.csv and the batch order.
#include "src/training/train.h"

#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <ATen/core/Dict.h>
#include <fmt/ranges.h>
#include <torch/cuda.h>
#include <torch/version.h>
#include <unistd.h>

#include <chrono>
#include <cmath>
#include <filesystem>
#include <memory>
#include <optional>

#include "data/dataset.h"
#include "models/model.h"
#include "models/params.h"
#include "src/core/config.h"
#include "src/core/dtypes.h"
#include "src/core/error.h"
#include "src/core/memory.h"
#include "src/core/random.h"
#include "src/core/stop.h"
#include "src/dist/dist.h"
#include "src/io/files.h"
#include "src/io/json.h"
#include "src/io/rundir.h"
#include "src/training/data_parallel.h"
#include "src/training/loss.h"
#include "src/training/progress.h"
#include "src/training/schedule.h"
#include "src/training/sgd.h"

namespace fs = std::filesystem;

namespace ng {
namespace {

std::vector<std::pair<std::string, at::Tensor>> named_params(NetImpl& model) {
  std::vector<std::pair<std::string, at::Tensor>> out;
  for (const auto& p : model.named_parameters()) out.emplace_back(p.key(), p.value());
  return out;
}

// trace.csv holds one column per parameter entry: beyond this many it would be a second, slower
// checkpoint format rather than a trajectory to plot.
constexpr int64_t kMaxTraceParams = 100;

// The trace's column names: a parameter's name, with [k] per entry when it has several.
std::string trace_header(const ParameterLayout& layout) {
  std::string h = "step,lr,loss";
  for (size_t j = 0; j < layout.names.size(); ++j) {
    const std::string& name = layout.names[j];
    const at::Tensor& t = layout.tensors[j];
    if (t.numel() == 1) {
      h += "," + name;
      continue;
    }
    for (int64_t k = 0; k < t.numel(); ++k) h += fmt::format(",{}[{}]", name, k);
  }
  return h;
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

// Where a run starts: step 0, or the checkpoint of the run being resumed.
struct StartPoint {
  int64_t step = 0;
  double initial_loss = NAN, wall_before = 0;
  c10::IValue checkpoint;  // None: a fresh start
};

StartPoint start_point(const TrainOptions& opt, const Config& cfg, const std::string& name,
                       const std::string& root) {
  StartPoint s;
  const bool has_run = fs::exists(fs::path(root) / run_files::kConfig);
  if (!opt.resume) {
    if (has_run)
      fail(
          "{}: a run directory is already there; pass --resume to continue it or --out DIR for a "
          "new one",
          root);
    return s;
  }
  if (!has_run)
    fail("{}: nothing to resume (no config.yaml); start the run without --resume", root);
  require_same_config(root, cfg, name, "--resume with a different config",
                      "resume with the same config and --set values");
  const std::string ck = (fs::path(root) / run_files::kCheckpoint).string();
  if (!fs::exists(ck)) return s;
  s.checkpoint = load_ivalue(ck);
  if (!s.checkpoint.isGenericDict()) fail("{}: not a noisegeom checkpoint", ck);
  const auto d = s.checkpoint.toGenericDict();
  if (!d.contains("step") || !d.contains("model")) fail("{}: not a noisegeom checkpoint", ck);
  s.step = d.at("step").toInt();
  s.initial_loss = d.at("initial_loss").toDouble();
  s.wall_before = d.at("wall_seconds").toDouble();
  return s;
}

// One training run from its config to its finished run directory: setup (start point, device,
// data, model, run directory), the SGD loop with its evaluations, checkpoints and progress lines,
// and the final files.
class Trainer {
 public:
  explicit Trainer(const TrainOptions& opt);
  TrainResult run();

 private:
  void build_model();
  void open_run_directory();
  void write_manifest(const std::string& status, const std::string& message, double wall);
  json manifest(const std::string& status, const std::string& message, double wall) const;
  void check_memory();
  void record(const Eval& e);
  void trace();
  bool stop_now();  // sets status_ and message_ when the run ends before the next update
  void update();
  void checkpoint();
  void loop();
  TrainResult finish();
  double wall() const {
    return start_.wall_before +
           std::chrono::duration<double>(std::chrono::steady_clock::now() - t_start_).count();
  }
  // A paper-scale evaluation on the CPU takes minutes: it keeps the progress lines coming.
  Eval evaluate_now() {
    return evaluate(*model_, x_, y_, labels_, loss_kind_, eval_batch_,
                    [this](int64_t d, int64_t n) {
                      if (progress_) progress_->evaluating(step_, d, n);
                    });
  }

  const TrainOptions& opt_;
  const std::chrono::steady_clock::time_point t_start_ = std::chrono::steady_clock::now();
  Config cfg_;
  std::string name_, root_;
  StartPoint start_;
  std::string device_name_;
  at::Device device_ = at::kCPU;
  at::ScalarType dtype_ = at::kFloat;
  uint64_t seed_ = 0;
  Dataset data_;
  Net model_;
  int64_t n_ = 0, p_ = 0;
  std::optional<RunDir> run_dir_;
  LossKind loss_kind_ = LossKind::Mse;
  at::Tensor x_, y_, labels_;
  LrSchedule schedule_;
  double target_ = 0, divergence_factor_ = 0;
  int64_t batch_ = 0, per_epoch_ = 0, max_steps_ = 0, eval_every_ = 0, ckpt_every_ = 0;
  int64_t trace_every_ = 0;
  int64_t eval_batch_ = 0;
  ParameterLayout layout_;  // the trained parameters, also as one flat vector for the ranks
  std::optional<CsvLog> log_, trace_;
  std::optional<BatchOrder> batches_;
  std::optional<TrainProgress> progress_;  // none when quiet
  std::unique_ptr<GraphedStep> graphed_;   // CUDA with train.cuda_graphs
  // No progress lines: asked for, or a rank other than 0 (whose lines would repeat rank 0's).
  bool quiet_ = false;
  bool tty_ = false;

  // The loop's state.
  int64_t step_ = 0;
  Eval ev_;
  double batch_loss_sum_ = 0;
  int64_t batch_loss_count_ = 0;
  std::chrono::steady_clock::time_point t_rate_;
  int64_t rate_step_ = 0;
  double rate_ = 0;
  std::string status_, message_;
  // What the loop is doing, for an out-of-memory message: the config key that sizes it.
  const char* memory_key_ = "train.batch_size";
};

Trainer::Trainer(const TrainOptions& opt)
    : opt_(opt), cfg_(Config::load(opt.config_path, opt.overrides)) {
  name_ = run_name(cfg_, opt.config_path);
  root_ = opt.out_dir.empty() ? (fs::path("runs") / name_).string() : opt.out_dir;
  // Under a launcher, rank 0's run directory says where the run starts, for every rank.
  decided_by_root([&] {
    start_ = start_point(opt, cfg_, name_, root_);
    return std::string();
  });
  cfg_.set("name=" + name_);
  build_model();
  share_start(layout_, start_.step, start_.initial_loss, start_.wall_before);
  // Only now, with config, data and model known to be good, does the run directory appear.
  open_run_directory();
}

void Trainer::build_model() {
  if (cfg_.i("threads") > 0) at::set_num_threads(static_cast<int>(cfg_.i("threads")));
  device_name_ = resolve_device(cfg_.s("device"), cfg_.origin());
  device_ = torch_device(device_name_);
  dtype_ = dtype_names().parse(cfg_.s("dtype"), cfg_.origin() + ": dtype");
  seed_ = static_cast<uint64_t>(cfg_.i("seed"));

  data_ = load_training_data(cfg_, opt_.data_dir);
  n_ = data_.size();
  const int64_t input_dim = data_.x.dim() == 2 ? data_.x.size(1) : 0;
  at::manual_seed(seed_);
  model_ = make_model(model_spec_from_config(cfg_, data_.num_classes, input_dim));
  model_->to(device_, dtype_);
  p_ = count_parameters(*model_);
  trace_every_ = cfg_.i("train.trace_every");
  if (trace_every_ > 0 && p_ > kMaxTraceParams)
    fail(
        "{}: train.trace_every: a trace holds every parameter, for models of at most {} "
        "parameters; this {} has {} (set train.trace_every: 0)",
        cfg_.origin(), kMaxTraceParams, model_->describe(), p_);
  schedule_ = schedule_from_config(cfg_);
  if (!start_.checkpoint.isNone())
    load_parameters(*model_, start_.checkpoint.toGenericDict().at("model").toGenericDict(),
                    (fs::path(root_) / run_files::kCheckpoint).string());
  layout_ = ParameterLayout::of(*model_);
}

void Trainer::open_run_directory() {
  // Under a launcher only rank 0 writes; the others compute the same run and write nothing.
  run_dir_.emplace(root_, dist().is_root());
  if (!opt_.resume) {
    run_dir_->write(run_files::kConfig,
                    [&](const std::string& path) { write_file_atomic(path, cfg_.to_yaml()); });
    run_dir_->write(run_files::kSamples,
                    [&](const std::string& path) { write_file_atomic(path, samples_csv(data_)); });
  }
  loss_kind_ = loss_names().parse(cfg_.s("train.loss"), cfg_.origin() + ": train.loss");
  if (loss_kind_ == LossKind::CrossEntropy && !data_.labels.defined())
    fail("{}: train.loss: cross_entropy needs class labels (data.source is {})", cfg_.origin(),
         cfg_.s("data.source"));
  check_memory();
  x_ = data_.x.to(device_, dtype_);
  y_ = data_.targets.to(device_, dtype_);
  labels_ = data_.labels.defined() ? data_.labels.to(device_) : at::Tensor();
  batch_ = std::min(cfg_.i("train.batch_size"), n_);
  per_epoch_ = (n_ + batch_ - 1) / batch_;
  max_steps_ = cfg_.i("train.max_steps");
  eval_every_ = cfg_.i("train.eval_every");
  ckpt_every_ = cfg_.i("train.checkpoint_every");
  eval_batch_ = cfg_.i("train.eval_batch");
  target_ = cfg_.f("train.target_loss");
  divergence_factor_ = cfg_.f("train.divergence_factor");
  log_ = run_dir_->log(run_files::kTrainLog,
                       "step,epoch,loss,accuracy,batch_loss,lr,wall_seconds,steps_per_second",
                       opt_.resume ? start_.step : -1);
  if (trace_every_ > 0)
    trace_ =
        run_dir_->log(run_files::kTrace, trace_header(layout_), opt_.resume ? start_.step : -1);
  batches_.emplace(n_, batch_, seed_, device_);
}

// The samples and the gradients must fit beside the model (already on the device); a training
// step's activations are caught when they do not fit (run()).
void Trainer::check_memory() {
  if (!device_.is_cuda()) return;
  const int64_t element = int64_t(c10::elementSize(dtype_));
  const int64_t bytes = (data_.x.numel() + data_.targets.numel() + p_) * element +
                        (data_.labels.defined() ? n_ * 8 : 0);
  require_free_memory(
      bytes, device_,
      fmt::format("{}: the {} training samples and the gradients", cfg_.origin(), n_),
      "use fewer samples (data.max_samples) or device: cpu");
}

void Trainer::write_manifest(const std::string& status, const std::string& message, double wall) {
  run_dir_->write(run_files::kManifest, [&](const std::string& path) {
    write_json(path, manifest(status, message, wall));
  });
}

json Trainer::manifest(const std::string& status, const std::string& message, double wall) const {
  json j;
  j["tool"] = "noisegeom";
  j["version"] = version();
  j["git_commit"] = git_commit();
  j["updated"] = iso_time_now();
  j["name"] = name_;
  j["config_file"] = cfg_.origin();
  j["seed"] = cfg_.i("seed");
  j["device"] = device_name_;
  j["dtype"] = cfg_.s("dtype");
  j["threads"] = at::get_num_threads();
  j["libtorch_version"] = TORCH_VERSION;
  j["cuda_build"] = cuda_build();
  j["model"] = model_->describe();
  j["parameter_count"] = p_;
  j["data"] = data_.description;
  j["num_samples"] = n_;
  j["samples_file"] = run_files::kSamples;
  j["steps"] = step_;
  j["resumed_from_step"] = opt_.resume ? start_.step : -1;
  j["epochs"] = double(step_) / per_epoch_;
  j["wall_seconds"] = wall;
  j["initial_loss"] = start_.initial_loss;
  j["final_loss"] = ev_.loss;
  j["final_accuracy"] = ev_.accuracy;
  j["target_loss"] = target_;
  j["schedule"] = schedule_.describe();
  j["status"] = status;
  j["message"] = message;
  return j;
}

// One row of train_log.csv and, unless quiet, a progress line.
void Trainer::record(const Eval& e) {
  const auto now = std::chrono::steady_clock::now();
  const double dt = std::chrono::duration<double>(now - t_rate_).count();
  if (step_ > rate_step_ && dt > 0) rate_ = (step_ - rate_step_) / dt;
  t_rate_ = now;
  rate_step_ = step_;
  const double bl = batch_loss_count_ ? batch_loss_sum_ / batch_loss_count_ : NAN;
  batch_loss_sum_ = 0;
  batch_loss_count_ = 0;
  if (log_)
    log_->row(fmt::format("{},{:.4f},{:.8g},{},{:.8g},{},{:.3f},{:.2f}", step_,
                          double(step_) / per_epoch_, e.loss,
                          e.accuracy < 0 ? std::string() : fmt::format("{:.6f}", e.accuracy), bl,
                          schedule_.at(step_), wall(), rate_));
  if (progress_) progress_->evaluation(step_, e.loss, e.accuracy);
}

// One row of trace.csv: the step, its learning rate, the full training loss (one pass over the
// samples: the model is small) and every parameter entry, all at theta_step.
void Trainer::trace() {
  std::string row = fmt::format("{},{},{}", step_, g17(schedule_.at(step_)),
                                g17(evaluate(*model_, x_, y_, labels_, loss_kind_, n_).loss));
  for (const at::Tensor& p : layout_.tensors) {
    const at::Tensor v = p.detach().to(at::kCPU, at::kDouble).contiguous().view(-1);
    for (int64_t k = 0; k < v.numel(); ++k) row += "," + g17(v.data_ptr<double>()[k]);
  }
  trace_->row(row);
}

bool Trainer::stop_now() {
  if (ev_.loss < target_) {
    status_ = "converged";
    message_ =
        fmt::format("training loss {:.3e} < {:.0e} after {} steps", ev_.loss, target_, step_);
    return true;
  }
  if (!std::isfinite(ev_.loss) || ev_.loss > divergence_factor_ * start_.initial_loss) {
    status_ = "diverged";
    message_ = fmt::format(
        "{}: training diverged at step {} (loss {:.3e}, initial {:.3e}); the last good "
        "checkpoint is kept; lower train.lr",
        cfg_.origin(), step_, ev_.loss, start_.initial_loss);
    return true;
  }
  if (step_ >= max_steps_) {
    status_ = "max_steps";
    message_ = fmt::format("step cap {} reached with loss {:.3e} >= {:.0e}", max_steps_, ev_.loss,
                           target_);
    return true;
  }
  const StopReason stop = agreed_stop(stop_requested());
  if (stop != StopReason::None) {
    status_ = stop == StopReason::Budget ? "budget_spent" : "interrupted";
    // As at every checkpoint, parameters gone non-finite since the last evaluation are not saved.
    const bool finite = all_finite(*model_);
    if (finite) checkpoint();
    message_ = fmt::format("{} at step {} of {}; {}, the same command with --resume continues",
                           agreed_stop_description(stop), step_, max_steps_,
                           finite ? "checkpoint saved" : "the last finite checkpoint kept");
    return true;
  }
  return false;
}

// One SGD step, then the evaluation and the checkpoint when due.
void Trainer::update() {
  // CUDA: the step as one graph (src/training/graphed_step.h), except with several processes,
  // whose gradients meet between backward and update.
  if (!graphed_ && device_.is_cuda() && cfg_.b("train.cuda_graphs") && !dist().active())
    graphed_ = std::make_unique<GraphedStep>(
        sgd_step_body(*model_, layout_.tensors, x_, y_, labels_, loss_kind_), layout_.tensors,
        true);
  const at::Tensor loss = graphed_ ? graphed_->run({batches_->at(step_)}, schedule_.at(step_))
                                   : data_parallel_gradient(*model_, layout_, x_, y_, labels_,
                                                            batches_->at(step_), loss_kind_);
  if (!graphed_) sgd_step(layout_.tensors, schedule_.at(step_));
  ++step_;
  if (progress_) progress_->add_batch_loss(loss);
  if (trace_ && (step_ % trace_every_ == 0 || step_ >= max_steps_)) trace();
  if (step_ % eval_every_ == 0 || step_ >= max_steps_) {
    batch_loss_sum_ += loss.item<double>();
    ++batch_loss_count_;
    memory_key_ = "train.eval_batch";
    ev_ = evaluate_now();
    memory_key_ = "train.batch_size";
    record(ev_);
  }
  // Only finite parameters become a checkpoint, so a diverged run keeps the last good one.
  if (step_ % ckpt_every_ == 0 && all_finite(*model_)) {
    checkpoint();
    write_manifest("running", "", wall());
  }
  if (progress_) progress_->tick(step_);
}

void Trainer::checkpoint() {
  run_dir_->write(run_files::kCheckpoint, [&](const std::string& path) {
    save_checkpoint(path, *model_, step_, start_.initial_loss, wall());
  });
  if (progress_) progress_->checkpoint_saved(step_);
}

TrainResult Trainer::run() {
  const StopOnSignals stop_on_signals;
  quiet_ = opt_.quiet || !dist().is_root();
  tty_ = !quiet_ && isatty(STDERR_FILENO);
  if (!quiet_)
    fmt::print(stderr, "noisegeom train: {} | {} | {} params | {} | {} | {} | batch {}\n", name_,
               model_->describe(), p_, data_.description, device_name_, schedule_.describe(),
               batch_);
  step_ = start_.step;
  if (!quiet_)
    progress_.emplace(ProgressSettings{max_steps_, per_epoch_, eval_every_, target_, tty_}, step_,
                      start_.checkpoint.isNone() ? -1 : start_.step);
  try {
    loop();
  } catch (const std::exception& e) {
    if (!is_out_of_memory(e)) throw;
    if (tty_) fmt::print(stderr, "\n");
    fail(
        "{}: {} {}: out of {} memory at step {} ({} free now); lower {} (a new run: --set {}=N "
        "--out DIR); the last checkpoint is kept",
        cfg_.origin(), memory_key_, cfg_.i(memory_key_), device_name_, step_,
        format_bytes(free_device_memory_bytes(device_)), memory_key_, memory_key_);
  }
  if (tty_) fmt::print(stderr, "\n");
  return finish();
}

// The first evaluation, then SGD steps until the run converges, diverges, reaches its step cap or
// is asked to stop.
void Trainer::loop() {
  memory_key_ = "train.eval_batch";
  ev_ = evaluate_now();
  memory_key_ = "train.batch_size";
  if (std::isnan(start_.initial_loss)) start_.initial_loss = ev_.loss;
  t_rate_ = std::chrono::steady_clock::now();
  rate_step_ = step_;
  // A resumed run's log already holds the rows up to its checkpoint.
  if (log_ && log_->data_rows() == 0) record(ev_);
  if (trace_ && trace_->data_rows() == 0) trace();
  write_manifest("running", "", wall());

  model_->train();
  while (!stop_now()) update();
}

TrainResult Trainer::finish() {
  const double total = wall();
  // A stopped run has its checkpoint (stop_now) but no theta.pt, which analyses take for theta*.
  const bool stopped = status_ == "interrupted" || status_ == "budget_spent";
  if (status_ != "diverged" && !stopped) {
    run_dir_->write(run_files::kCheckpoint, [&](const std::string& path) {
      save_checkpoint(path, *model_, step_, start_.initial_loss, total);
    });
    run_dir_->write(run_files::kTheta, [&](const std::string& path) {
      save_tensor_dict(path, named_params(*model_));
    });
  }
  write_manifest(status_, message_, total);
  if (!quiet_ && status_ != "diverged")
    fmt::print(stderr, "noisegeom train: {}: {} ({}) -> {}\n", status_, message_,
               format_duration(total), root_);
  return {root_, status_, step_, ev_.loss, total, message_};
}

}  // namespace

std::string samples_csv(const Dataset& data, const std::vector<int64_t>& positions) {
  std::string out = "position,index,label,class\n";
  const at::Tensor labels =
      data.labels.defined() ? data.labels.cpu().to(at::kLong).contiguous() : at::Tensor();
  auto row = [&](int64_t k) {
    out += fmt::format("{},{},{},{}\n", k, data.indices.empty() ? k : data.indices[k],
                       data.original_labels.empty() ? -1 : data.original_labels[k],
                       labels.defined() ? labels.data_ptr<int64_t>()[k] : -1);
  };
  if (positions.empty())
    for (int64_t k = 0; k < data.size(); ++k) row(k);
  for (int64_t k : positions) row(k);
  return out;
}

Eval evaluate(NetImpl& model, const at::Tensor& x, const at::Tensor& y, const at::Tensor& labels,
              LossKind loss, int64_t batch, const std::function<void(int64_t, int64_t)>& on_batch) {
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
    total += batch_loss(out, y.slice(0, s, e), lab, loss).to(at::kDouble) * (e - s);
    if (labels.defined()) correct += out.argmax(1).eq(lab).sum();
    if (on_batch) on_batch(e, n);
  }
  model.train();
  return {total.item<double>() / n, labels.defined() ? correct.item<double>() / n : -1.0};
}

// Under a launcher rank 0 alone reads the run directory and the other ranks get what it read
// over c10d: a node needs its own copy of the data, not of rank 0's disk.
LoadedRun load_run(const std::string& run_dir, const std::string& data_dir_flag,
                   const std::string& params_file) {
  const fs::path root(run_dir);
  const std::string cfg_path = (root / run_files::kConfig).string();
  const std::string cfg_text = decided_by_root([&] {
    if (!fs::is_directory(run_dir)) fail("{}: no such run directory", run_dir);
    if (!fs::exists(cfg_path)) fail("{}: not a run directory (no config.yaml)", run_dir);
    return read_file(cfg_path);
  });
  LoadedRun r{run_dir, Config::parse(cfg_text, cfg_path), {}, nullptr, "cpu", at::kFloat};
  r.data = load_training_data(r.cfg, data_dir_flag);
  // The samples must be the ones the run trained on, or every number computed here is off.
  const std::string samples_path = (root / run_files::kSamples).string();
  const std::string samples = decided_by_root(
      [&] { return fs::exists(samples_path) ? read_file(samples_path) : std::string(); });
  checked_on_every_rank([&] {
    if (!samples.empty() && samples != samples_csv(r.data))
      fail(
          "{}: the training samples rebuilt from the data directory differ from the run's "
          "(another copy of CIFAR-10?)",
          samples_path);
  });
  r.device = resolve_device(r.cfg.s("device"), cfg_path);
  r.dtype = dtype_names().parse(r.cfg.s("dtype"), cfg_path + ": dtype");
  const int64_t input_dim = r.data.x.dim() == 2 ? r.data.x.size(1) : 0;
  at::manual_seed(static_cast<uint64_t>(r.cfg.i("seed")));
  r.model = make_model(model_spec_from_config(r.cfg, r.data.num_classes, input_dim));
  const std::string pfile = (root / params_file).string();
  decided_by_root([&] {
    if (!fs::exists(pfile)) fail("{}: missing (did the training finish?)", pfile);
    const c10::IValue saved = load_ivalue(pfile);
    if (!saved.isGenericDict()) fail("{}: expected a dict of named tensors", pfile);
    auto dict = saved.toGenericDict();
    if (dict.contains("model") && dict.contains("step")) dict = dict.at("model").toGenericDict();
    load_parameters(*r.model, dict, pfile);
    return std::string();
  });
  share_parameters(ParameterLayout::of(*r.model));
  r.model->to(torch_device(r.device), r.dtype);
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
  const DeviceChoice d = device_names().parse(requested, origin + ": device");
  const bool gpu = torch::cuda::is_available();
  if (d == DeviceChoice::Cuda && !gpu)
    fail("{}: device: cuda requested but no CUDA device is usable ({}); use device: auto or cpu",
         origin, cuda_build() ? "no GPU found" : "this is a CPU build");
  const bool cuda = d == DeviceChoice::Cuda || (d == DeviceChoice::Auto && gpu);
  return device_names().name(cuda ? DeviceChoice::Cuda : DeviceChoice::Cpu);
}

c10::Device LoadedRun::torch_device() const {
  return ng::torch_device(device);
}

c10::Device torch_device(const std::string& resolved) {
  if (resolved != device_names().name(DeviceChoice::Cuda)) return c10::Device(c10::kCPU);
  // Under a launcher each rank takes its machine's GPU number LOCAL_RANK.
  // (Ranks beyond the GPUs share them round-robin: a test of several ranks on one GPU.)
  if (dist().active())
    return c10::Device(c10::kCUDA,
                       static_cast<c10::DeviceIndex>(
                           dist().local_rank % std::max<int64_t>(1, torch::cuda::device_count())));
  return c10::Device(c10::kCUDA);
}

std::string run_name(const Config& cfg, const std::string& config_path) {
  const std::string name = cfg.s("name");
  return name.empty() ? fs::path(config_path).stem().string() : name;
}

void require_same_config(const std::string& run_dir, Config cfg, const std::string& name,
                         const std::string& what, const std::string& hint) {
  const std::string stored_path = (fs::path(run_dir) / run_files::kConfig).string();
  Config stored = Config::load(stored_path);
  stored.set("name=" + name);
  cfg.set("name=" + name);
  const auto changed = cfg.diff(stored);
  if (!changed.empty())
    fail("{}: {} ({} differs); {}", stored_path, what, fmt::format("{}", fmt::join(changed, ", ")),
         hint);
}

TrainResult train(const TrainOptions& opt) {
  Trainer trainer(opt);
  return trainer.run();
}

}  // namespace ng
