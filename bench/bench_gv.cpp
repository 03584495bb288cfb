// Benchmarks of the curvature operators, run by hand (not a test).
//
//   bench_gv ratio [--model cnn|resnet] [--depth 20] [--batch 32] [--n 1024] [--threads 2]
//                  [--reps 5] [--data-dir DIR] [--device cpu|cuda]
//       cost of one exact G v over n samples (forward-mode Jv, then one VJP per batch; and the
//       double-backward R-op) divided by the cost of one forward+backward training pass over the
//       same n samples in batches of the same size. Real CIFAR-10 {0,1} when --data-dir (or
//       $NOISEGEOM_DATA) holds it, else Gaussian images.
//   bench_gv topk --run RUN_DIR [--k 20] [--n 2000] [--batch 256] [--tol 1e-5] [--dtype float32]
//                  [--threads 2] [--residuals explicit|krylov]
//       top-k eigenpairs of G (exact estimator, Lanczos) on the first n training samples of a
//       run at its theta.pt, timed from operator construction to converged pairs; prints the
//       eigenvalues and residuals; --dump FILE saves the samples used (x, y) for the Python side
//       (bench/spectrum_vs_curvlinops.sh compares with curvlinops).
//   bench_gv rows [--model cnn|resnet] [--depth 8] [--n 1000] [--classes 2] [--matrix G]
//                 [--loss mse] [--dtype float64|float32] [--batch 256] [--threads 2]
//                 [--loop-n N] [--data-dir DIR] [--device cpu|cuda]
//       per-sample rows of n samples built batched and by the one-sample loop (on the first
//       loop-n samples, scaled to n: its cost per sample is constant); prints both and the ratio.
//   bench_gv gram [--model cnn|resnet] [--n 1000] [--classes 2] [--dtype float64] [--threads 2]
//       the Gram route's pieces on G's rows (mse): K by symmetric tiles against one GEMM (ratio),
//       Sigma's K and tr(Sigma G)'s cross term from the shared Jacobian Gram matrix, eigh.
#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <fmt/format.h>
#include <torch/csrc/autograd/autograd.h>
#include <torch/cuda.h>

#include <algorithm>
#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "data/dataset.h"
#include "models/model.h"
#include "src/core/error.h"
#include "src/core/memory.h"
#include "src/curvature/curvature.h"
#include "src/eigen/eigensolver.h"
#include "src/io/files.h"
#include "src/spectrum/spectrum.h"
#include "src/training/loss.h"
#include "src/training/sgd.h"
#include "src/training/train.h"

namespace {

using Clock = std::chrono::steady_clock;

double since(Clock::time_point t0) {
  return std::chrono::duration<double>(Clock::now() - t0).count();
}

std::map<std::string, std::string> options(int argc, char** argv, int first) {
  std::map<std::string, std::string> o;
  for (int k = first; k + 1 < argc; k += 2) {
    const std::string key = argv[k];
    if (key.rfind("--", 0) != 0) ng::fail("expected --option value, got '{}'", key);
    o[key.substr(2)] = argv[k + 1];
  }
  return o;
}

std::string get(const std::map<std::string, std::string>& o, const std::string& k,
                const std::string& def) {
  auto it = o.find(k);
  return it == o.end() ? def : it->second;
}

double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v[v.size() / 2];
}

// n images of the first `classes` classes: real CIFAR-10 when --data-dir (or $NOISEGEOM_DATA)
// holds it, else Gaussian images labelled 0. Returns what they are, for the report.
std::string load_images(const std::map<std::string, std::string>& o, int64_t n, int64_t classes,
                        at::Tensor* x, at::Tensor* y) {
  std::string dir = get(o, "data-dir", "");
  if (dir.empty() && std::getenv("NOISEGEOM_DATA")) dir = std::getenv("NOISEGEOM_DATA");
  if (!dir.empty() && std::filesystem::exists(dir + "/data_batch_1.bin")) {
    ng::CifarOptions co;
    co.dir = dir;
    for (int64_t c = 0; c < classes; ++c) co.classes.push_back(c);
    co.max_samples = n;
    const ng::Dataset d = ng::load_cifar10_train(co);
    *x = d.x;
    *y = d.targets;
    return fmt::format("CIFAR-10 classes 0-{}, n = {}", classes - 1, d.size());
  }
  at::manual_seed(0);
  *x = at::randn({n, 3, 32, 32});
  *y = at::zeros({n, classes});
  y->select(1, 0).fill_(1);
  return fmt::format("Gaussian images, n = {}", n);
}

// --device cpu|cuda.
at::Device device_option(const std::map<std::string, std::string>& o) {
  const std::string name = get(o, "device", "cpu");
  if (name != "cpu" && name != "cuda") ng::fail("--device: expected cpu or cuda, got '{}'", name);
  if (name == "cuda" && !torch::cuda::is_available())
    ng::fail("--device cuda: no usable CUDA device");
  return at::Device(name == "cuda" ? at::kCUDA : at::kCPU);
}

// Kernels on a GPU run asynchronously: a timing ends when the queue is empty.
void sync_device(const at::Device& device) {
  if (device.is_cuda()) torch::cuda::synchronize();
}

int ratio(const std::map<std::string, std::string>& o) {
  const std::string model = get(o, "model", "cnn");
  const int64_t depth = std::stoll(get(o, "depth", "20"));
  const int64_t batch = std::stoll(get(o, "batch", "32"));
  int64_t n = std::stoll(get(o, "n", "1024"));
  const int threads = std::stoi(get(o, "threads", "2"));
  const int reps = std::stoi(get(o, "reps", "5"));
  const at::Device device = device_option(o);
  auto sync = [&] { sync_device(device); };
  at::set_num_threads(threads);

  at::Tensor x, y;
  const std::string data_text = load_images(o, n, 2, &x, &y);
  n = x.size(0);
  x = x.to(device);
  y = y.to(device);

  ng::ModelSpec spec;
  spec.name = model;
  spec.depth = model == "resnet" ? depth : 0;
  spec.num_classes = 2;
  at::manual_seed(0);
  ng::Net net = ng::make_model(spec);
  net->to(device);
  const std::vector<at::Tensor> params = net->parameters();

  // One training pass: forward, the paper's loss, backward, per batch (no update: the step
  // itself is an axpy and the same in both).
  auto train_pass = [&] {
    net->train();
    for (int64_t s = 0; s < n; s += batch) {
      const int64_t m = std::min(batch, n - s);
      ng::clear_gradients(params);
      const at::Tensor out = net->forward(x.narrow(0, s, m));
      ng::batch_loss(out, y.narrow(0, s, m), {}, ng::LossKind::Mse).backward();
    }
  };
  // The operators' products and the training pass are timed in turns, so that both see the same
  // machine (on this CPU the pass alone varied 2x between calls as the OpenMP pool woke or slept).
  std::vector<std::unique_ptr<ng::CurvatureOperator>> ops;
  for (const auto method : {ng::JvpMethod::ForwardAD, ng::JvpMethod::ROp}) {
    ng::CurvatureOptions co;
    co.matrix = ng::MatrixKind::G;
    co.estimator = ng::Estimator::Exact;
    co.jvp = method;
    co.batch_size = batch;
    co.dtype = at::kFloat;
    co.device = device;
    co.probe = false;
    ops.push_back(std::make_unique<ng::CurvatureOperator>(net, x, y, co));
  }
  const at::Tensor v = ng::seeded_normal(ops[0]->dim(), 1, ops[0]->options());
  auto timed = [&](const std::function<void()>& work) {
    sync();
    const auto t0 = Clock::now();
    work();
    sync();
    return since(t0);
  };
  std::vector<double> tp;
  std::vector<std::vector<double>> gv(ops.size());
  for (int r = -1; r < reps; ++r) {  // r = -1: warm-up
    const double t = timed(train_pass);
    if (r >= 0) tp.push_back(t);
    for (size_t m = 0; m < ops.size(); ++m) {
      const double g = timed([&] { ops[m]->apply(v); });
      if (r >= 0) gv[m].push_back(g);
    }
  }
  const double train_s = median(tp);

  fmt::print("{} ({} params), {}, batch {}, {}\n", net->describe(), ng::count_parameters(*net),
             data_text, batch,
             device.is_cuda() ? std::string("cuda") : fmt::format("{} threads", threads));
  fmt::print("  forward+backward training pass over n: {:.4f}s\n", train_s);
  for (size_t m = 0; m < ops.size(); ++m) {
    const double g = median(gv[m]);
    fmt::print("  exact G v ({:<7}) over n: {:.4f}s   ratio G v / training pass = {:.2f}\n",
               m == 0 ? "fwd-AD" : "R-op", g, g / train_s);
  }
  return 0;
}

int topk(const std::map<std::string, std::string>& o) {
  const std::string run_dir = get(o, "run", "");
  if (run_dir.empty()) ng::fail("bench_gv topk: --run RUN_DIR is required");
  const int64_t k = std::stoll(get(o, "k", "20"));
  const int64_t n_want = std::stoll(get(o, "n", "2000"));
  const int64_t batch = std::stoll(get(o, "batch", "256"));
  const double tol = std::stod(get(o, "tol", "1e-5"));
  const std::string dtype = get(o, "dtype", "float32");
  const int threads = std::stoi(get(o, "threads", "2"));
  at::set_num_threads(threads);

  ng::LoadedRun run = ng::load_run(run_dir, get(o, "data-dir", ""));
  const int64_t n = std::min(n_want, run.data.size());
  const auto t0 = Clock::now();
  ng::CurvatureOptions co;
  co.matrix = ng::MatrixKind::G;
  co.estimator = ng::Estimator::Exact;
  co.batch_size = batch;
  co.dtype = dtype == "float64" ? at::kDouble : at::kFloat;
  // As `noisegeom spectrum --estimator exact`: rows within the budget (default: a quarter of the
  // RAM), streamed products otherwise; --row-budget 0 gives the streamed path.
  const std::string budget = get(o, "row-budget", "auto");
  co.row_budget = ng::parse_budget(budget, "--row-budget");
  if (co.row_budget < 0) co.row_budget = ng::default_row_budget(co.device);
  ng::CurvatureOperator op(run.model, run.data.x.narrow(0, 0, n), run.data.targets.narrow(0, 0, n),
                           co);
  ng::EigenOptions eo;
  eo.k = k;
  eo.tol = tol;
  eo.solver = get(o, "solver", "auto");
  eo.residuals = get(o, "residuals", "explicit");
  const ng::Eigenpairs e = ng::top_eigenpairs(op, eo);
  const double total = since(t0);
  // The exact inputs and targets, so that the Python side computes the same matrix.
  const std::string dump = get(o, "dump", "");
  if (!dump.empty())
    ng::save_tensor_dict(
        dump, {{"x", run.data.x.narrow(0, 0, n)}, {"y", run.data.targets.narrow(0, 0, n)}});
  // The solver's own residual check is part of e.seconds; report the Lanczos part apart.
  fmt::print("ours: p = {}, n = {}, k = {}, {} threads, {}, {} residuals, {} ({}), solver {}\n",
             op.dim(), n, k, threads, dtype, eo.residuals, op.storage(),
             op.has_rows() ? ng::rows_method_names().name(op.rows_method()) : "", e.solver);
  fmt::print("ours_seconds={:.3f} matvecs={} lanczos_seconds={:.3f}\n", total, e.matvecs,
             e.seconds);
  std::string vals, res;
  for (size_t j = 0; j < e.values.size(); ++j) {
    vals += fmt::format("{}{:.8g}", j ? "," : "", e.values[j]);
    res += fmt::format("{}{:.3g}", j ? "," : "", e.residuals[j]);
  }
  fmt::print("ours_eigenvalues={}\nours_residuals={}\nours_max_residual={:.3g}\n", vals, res,
             e.max_residual());
  return 0;
}

// The rows and gram modes' model (--model, --depth, --classes; seed 0) on the first --n images
// (x, y); returns the images' description.
std::string model_and_images(const std::map<std::string, std::string>& o, int64_t b,
                             int64_t classes, ng::Net* net, at::Tensor* x, at::Tensor* y) {
  const std::string model = get(o, "model", "cnn");
  const std::string data_text = load_images(o, b, classes, x, y);
  ng::ModelSpec spec;
  spec.name = model;
  spec.depth = model == "resnet" ? std::stoll(get(o, "depth", "8")) : 0;
  spec.num_classes = classes;
  at::manual_seed(0);
  *net = ng::make_model(spec);
  return data_text;
}

// Per-sample rows of b samples, batched against the one-sample loop. The loop's cost is the
// same for every sample, so it may run on the first --loop-n samples only and is scaled to b.
int rows(const std::map<std::string, std::string>& o) {
  const int64_t b = std::stoll(get(o, "n", "1000"));
  const int64_t loop_n = std::min<int64_t>(b, std::stoll(get(o, "loop-n", std::to_string(b))));
  const int64_t classes = std::stoll(get(o, "classes", "2"));
  const std::string dtype = get(o, "dtype", "float64");
  const std::string matrix = get(o, "matrix", "G");
  at::set_num_threads(std::stoi(get(o, "threads", "2")));
  ng::Net net;
  at::Tensor x, y;
  const std::string data_text = model_and_images(o, b, classes, &net, &x, &y);
  ng::CurvatureOptions co;
  co.matrix = ng::matrix_names().parse(matrix, "--matrix");
  co.loss = ng::loss_names().parse(get(o, "loss", "mse"), "--loss");
  co.estimator = ng::Estimator::PerSample;
  co.batch_size = std::stoll(get(o, "batch", "256"));
  co.dtype = dtype == "float32" ? at::kFloat : at::kDouble;
  co.probe = false;
  co.max_row_bytes = int64_t{64} << 30;
  co.device = device_option(o);
  net->to(co.device);
  x = x.to(co.device);
  y = y.to(co.device);
  int threads_used = 0;
  auto build = [&](ng::RowsMethod method, int64_t count) {
    co.rows_method = method;
    const auto t0 = Clock::now();
    ng::CurvatureOperator op(net, x.narrow(0, 0, count), y.narrow(0, 0, count), co);
    sync_device(co.device);
    const double t = since(t0);
    threads_used = op.rows_threads();
    return std::make_pair(t, op.rows());
  };
  const auto [batched_s, batched_rows] = build(ng::RowsMethod::Batched, b);
  const int batched_threads = threads_used;
  const auto [loop_part_s, loop_rows] = build(ng::RowsMethod::Loop, loop_n);
  const double loop_s = loop_part_s * static_cast<double>(b) / static_cast<double>(loop_n);
  const at::Tensor head = batched_rows.narrow(0, 0, loop_rows.size(0));
  const double diff = ((head - loop_rows).norm() / loop_rows.norm()).item<double>();
  fmt::print(
      "{} (p = {}), {}, {} rows of {}, {}, batch {}, {}\n", net->describe(),
      ng::count_parameters(*net), data_text, batched_rows.size(0), matrix, dtype, co.batch_size,
      co.device.is_cuda() ? std::string("cuda") : fmt::format("{} threads", at::get_num_threads()));
  fmt::print(
      "  batched: {:.3f}s on {} threads   loop: {:.3f}s on {} threads{}   ratio loop / batched = "
      "{:.1f}\n",
      batched_s, batched_threads, loop_s, threads_used,
      loop_n < b ? fmt::format(" (measured on {} samples, scaled)", loop_n) : "",
      loop_s / batched_s);
  fmt::print("  relative difference of the rows (first {} samples): {:.2e}\n", loop_n, diff);
  return 0;
}

// The Gram route's pieces on the rows of n samples (G, mse, as the exact quick_cnn spectrum):
// K = B B^T / n by symmetric tiles (gram_matrix) against one full GEMM, Sigma's Gram matrix
// and the cross term from the shared Jacobian Gram matrix, and LAPACK's eigh of K.
int gram(const std::map<std::string, std::string>& o) {
  const int64_t b = std::stoll(get(o, "n", "1000"));
  const int64_t classes = std::stoll(get(o, "classes", "2"));
  at::set_num_threads(std::stoi(get(o, "threads", "2")));
  ng::Net net;
  at::Tensor x, y;
  const std::string data_text = model_and_images(o, b, classes, &net, &x, &y);
  ng::CurvatureOptions co;
  co.estimator = ng::Estimator::PerSample;
  co.dtype = get(o, "dtype", "float64") == "float32" ? at::kFloat : at::kDouble;
  co.probe = false;
  co.max_row_bytes = int64_t{64} << 30;
  auto t0 = Clock::now();
  ng::CurvatureOperator g(net, x, y, co);
  const double rows_s = since(t0);
  t0 = Clock::now();
  const at::Tensor k = g.gram_matrix();
  const double tiles_s = since(t0);
  t0 = Clock::now();
  const at::Tensor full = at::mm(g.rows(), g.rows().t()).to(at::kDouble) / static_cast<double>(b);
  const double full_s = since(t0);
  t0 = Clock::now();
  ng::CurvatureOperator s(g, ng::MatrixKind::Sigma);
  const at::Tensor ks = s.gram_matrix();
  const at::Tensor cross = g.gram_with(s);
  const double derived_s = since(t0);
  t0 = Clock::now();
  const auto eig = at::linalg_eigh(k, "L");
  const double eigh_s = since(t0);
  fmt::print("{} (p = {}), {}, {} rows of G, {}, {} threads\n", net->describe(), g.dim(), data_text,
             k.size(0), get(o, "dtype", "float64"), at::get_num_threads());
  fmt::print(
      "  rows {:.3f}s | K by symmetric tiles {:.3f}s, by one GEMM {:.3f}s (ratio {:.2f}, rel. "
      "difference {:.1e}) | Sigma's K and the cross term from P {:.3f}s | eigh {:.3f}s\n",
      rows_s, tiles_s, full_s, full_s / tiles_s, ((k - full).norm() / full.norm()).item<double>(),
      derived_s, eigh_s);
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  const std::string mode = argc > 1 ? argv[1] : "";
  try {
    if (mode == "ratio") return ratio(options(argc, argv, 2));
    if (mode == "topk") return topk(options(argc, argv, 2));
    if (mode == "rows") return rows(options(argc, argv, 2));
    if (mode == "gram") return gram(options(argc, argv, 2));
  } catch (const std::exception& e) {
    std::string msg = e.what();
    fmt::print(stderr, "bench_gv: error: {}\n", msg.substr(0, msg.find('\n')));
    return 1;
  }
  fmt::print(stderr,
             "usage: bench_gv ratio|topk|rows|gram [--option value]... (see bench/bench_gv.cpp)\n");
  return 2;
}
