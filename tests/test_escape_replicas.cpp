// Batched escape replicas (src/escape/replicas.h, EscapeOptions::replicas) against the per-run
// path: for every model family, SGD and GD runs advanced R at a time on one batched model give
// the per-run trajectories to rounding; models that cannot run replicated fall back to the
// per-run path bit for bit; a resumed batched sweep equals an uninterrupted one bit for bit; the
// layers' grouped (CUDA) and per-replica (CPU) convolutions give each replica's own outputs.
#include <ATen/ATen.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <atomic>
#include <cmath>
#include <filesystem>
#include <set>
#include <string>
#include <vector>

#include "data/dataset.h"
#include "models/layers.h"
#include "models/model.h"
#include "models/params.h"
#include "src/escape/escape.h"
#include "src/escape/replicas.h"
#include "tests/model_specs.h"
#include "tests/testing.h"

namespace {

struct Problem {
  std::string label;
  ng::Dataset data;
  ng::ModelFactory factory;
  at::Tensor theta_star, U;
};

// n samples (images when d = 0, else d-vectors) with random targets, or labels for cross entropy;
// theta* = the model's initial parameters; U = 3 random orthonormal directions.
Problem make_problem(const std::string& label, const ng::ModelSpec& spec, int64_t n,
                     bool labels = false) {
  Problem p;
  p.label = label;
  at::manual_seed(3);
  p.data.x = spec.input_dim > 0 ? at::randn({n, spec.input_dim}) : at::randn({n, 3, 32, 32});
  p.data.num_classes = spec.num_classes;
  if (labels) {
    p.data.labels = at::randint(0, spec.num_classes, {n}, at::TensorOptions().dtype(at::kLong));
    p.data.targets = at::one_hot(p.data.labels, spec.num_classes).to(at::kFloat);
  } else {
    p.data.targets = at::randn({n, spec.num_classes});
  }
  p.factory = [spec] { return ng::make_model(spec); };
  at::manual_seed(4);
  ng::Net m = p.factory();
  std::vector<at::Tensor> flat;
  for (const auto& t : m->parameters()) flat.push_back(t.detach().reshape(-1));
  p.theta_star = at::cat(flat);
  const auto f64 = at::TensorOptions().dtype(at::kDouble);
  p.U = std::get<0>(at::linalg_qr(at::randn({p.theta_star.numel(), 3}, f64)));
  return p;
}

// Every family the batched path takes, at tiny sizes (n = 8 with batch 3: a short last batch).
std::vector<Problem> families() {
  std::vector<Problem> out;
  out.push_back(make_problem("cnn", ngtest::model_spec("cnn", 2), 8));
  ng::ModelSpec fnn = ngtest::model_spec("fnn", 2);
  fnn.hidden = {8, 4};
  out.push_back(make_problem("fnn flatten", fnn, 8));
  fnn.input = "gray28";
  fnn.activation = "leaky_relu";
  out.push_back(make_problem("fnn gray28", fnn, 8));
  ng::ModelSpec resnet = ngtest::model_spec("resnet", 3);
  resnet.depth = 8;
  resnet.width = 2;
  out.push_back(make_problem("resnet cross entropy", resnet, 8, true));
  ng::ModelSpec vgg = ngtest::model_spec("vgg", 2);
  vgg.depth = 11;
  vgg.width = 2;
  vgg.head_width = 8;
  out.push_back(make_problem("vgg", vgg, 8));
  out.push_back(make_problem("linear", ngtest::model_spec("linear", 2, 5), 8));
  ng::ModelSpec net = ngtest::model_spec("linear_net", 2, 5);
  net.hidden = {4, 3};
  out.push_back(make_problem("linear_net", net, 8));
  ng::ModelSpec two = ngtest::model_spec("two_layer", 1, 5);
  two.hidden = {6};
  out.push_back(make_problem("two_layer", two, 8));
  two.train_outer = true;
  out.push_back(make_problem("two_layer train_outer", two, 8));
  return out;
}

ng::EscapeOptions options(ng::Optimizer o, at::ScalarType dtype) {
  ng::EscapeOptions e;
  e.optimizer = o;
  e.runs = 4;  // groups of 3: [0, 3) and [3, 4)
  e.steps = 7;
  e.log_every = 2;
  e.lr = 0.02;
  e.batch = 3;
  e.ks = {1, 2, 3};
  e.seed = 5;
  e.perturb = 0.05;  // GD's runs differ too
  e.escape_factor = 1e6;
  e.dtype = dtype;
  e.workers = 1;
  e.intra_threads = 1;
  e.eval_batch = 5;  // GD's gradient in two chunks
  return e;
}

// |a - b| <= tol (1 + |b|) for every logged number of every run.
void expect_close(const ng::EscapeResult& a, const ng::EscapeResult& b, double tol,
                  const std::string& what) {
  ASSERT_EQ(a.runs.size(), b.runs.size()) << what;
  for (size_t r = 0; r < a.runs.size(); ++r) {
    const auto &x = a.runs[r], &y = b.runs[r];
    EXPECT_EQ(x.run, y.run) << what;
    EXPECT_EQ(x.status, y.status) << what;
    ASSERT_EQ(x.trajectory.size(), y.trajectory.size()) << what << " run " << r;
    for (size_t i = 0; i < x.trajectory.size(); ++i) {
      const auto &p = x.trajectory[i], &q = y.trajectory[i];
      const std::string at = what + " run " + std::to_string(r) + " step " + std::to_string(p.step);
      EXPECT_EQ(p.step, q.step) << at;
      EXPECT_NEAR(p.loss, q.loss, tol * (1 + std::abs(q.loss))) << at;
      EXPECT_NEAR(p.distance, q.distance, tol * (1 + q.distance)) << at;
      if (!std::isnan(q.d1)) {
        EXPECT_NEAR(p.energy_x, q.energy_x, tol * (1 + q.energy_x)) << at;
        EXPECT_NEAR(p.energy_y, q.energy_y, tol * (1 + q.energy_y)) << at;
      }
      for (size_t j = 0; j < p.p.size(); ++j) {
        EXPECT_NEAR(p.p[j], q.p[j], tol * (1 + std::abs(q.p[j]))) << at << " p_" << j;
        EXPECT_NEAR(p.r[j], q.r[j], tol * (1 + q.r[j])) << at << " r_" << j;
      }
    }
  }
}

bool identical(const ng::EscapeResult& a, const ng::EscapeResult& b) {
  if (a.runs.size() != b.runs.size()) return false;
  for (size_t r = 0; r < a.runs.size(); ++r) {
    const auto &x = a.runs[r].trajectory, &y = b.runs[r].trajectory;
    if (x.size() != y.size()) return false;
    for (size_t i = 0; i < x.size(); ++i)
      if (x[i].loss != y[i].loss || x[i].distance != y[i].distance || x[i].p != y[i].p ||
          x[i].r != y[i].r)
        return false;
  }
  return true;
}

ng::EscapeResult run(const Problem& p, ng::EscapeOptions e, int64_t replicas) {
  e.replicas = replicas;
  return ng::run_escape(p.factory, p.theta_star, p.U, p.data, e);
}

TEST(EscapeReplicas, EveryFamilyAgreesWithTheSingleRunPath) {
  for (const Problem& p : families())
    for (auto o : {ng::Optimizer::Sgd, ng::Optimizer::Gd})
      for (auto dtype : {at::kDouble, at::kFloat}) {
        const std::string what =
            p.label + " " + ng::to_string(o) + (dtype == at::kDouble ? " float64" : " float32");
        ng::EscapeOptions e = options(o, dtype);
        e.energy = p.label == "linear";  // X, Y and D_1 measured on the replica model too
        const auto single = run(p, e, 1);
        const auto batched = run(p, e, 3);
        EXPECT_EQ(single.replicas, 1) << what;
        EXPECT_EQ(batched.replicas, 3) << what;
        // float32: rounding, amplified over the steps (GD on the CNN most).
        expect_close(batched, single, dtype == at::kDouble ? 1e-10 : 1e-3, what);
        // The runs moved, and apart: the comparison is not of four copies of theta*.
        EXPECT_NE(single.runs[0].final_distance, single.runs[0].trajectory[0].distance) << what;
        EXPECT_NE(single.runs[0].final_loss, single.runs[1].final_loss) << what;
        if (e.energy) {
          EXPECT_GT(single.runs[0].trajectory.back().energy_y, 0.0) << what;
        }
      }
}

// The layers' replica mode directly: three replicas of a ResNet (convolutions, add/mul
// parameters, Linear) at different parameters, with grouped convolutions (CUDA's form) and with
// one convolution per replica (the CPU's), against the model's own forward pass per replica.
TEST(EscapeReplicas, GroupedAndPerReplicaConvolutionsGiveEachReplicasOutputs) {
  ng::ModelSpec s = ngtest::model_spec("resnet", 2);
  s.depth = 8;
  s.width = 2;
  at::manual_seed(8);
  ng::Net m = ng::make_model(s);
  m->to(at::kDouble);
  const auto layout = ng::ParameterLayout::of(*m);
  const int64_t R = 3, B = 2;
  const at::Tensor x = at::randn({R * B, 3, 32, 32}, at::kDouble);
  std::vector<at::Tensor> thetas;
  for (int64_t r = 0; r < R; ++r)
    thetas.push_back(layout.values() + 0.1 * at::randn({layout.size}, at::kDouble));
  at::Tensor want;
  {
    at::NoGradGuard no_grad;
    std::vector<at::Tensor> outs;
    for (int64_t r = 0; r < R; ++r) {
      const auto parts = layout.split(thetas[r]);
      for (size_t k = 0; k < parts.size(); ++k) layout.tensors[k].copy_(parts[k]);
      outs.push_back(m->forward(x.slice(0, r * B, (r + 1) * B)));
    }
    want = at::cat(outs);
  }
  for (bool grouped : {false, true}) {
    ng::layers::Replicas reps;
    reps.count = R;
    reps.grouped_conv_on_cpu = grouped;
    for (size_t k = 0; k < layout.tensors.size(); ++k) {
      std::vector<at::Tensor> rows;
      for (int64_t r = 0; r < R; ++r) rows.push_back(layout.split(thetas[r])[k]);
      reps.stacked[layout.tensors[k].unsafeGetTensorImpl()] = at::stack(rows);
    }
    at::Tensor got;
    {
      ng::layers::ReplicaMode mode(reps);
      got = m->forward(x);
    }
    EXPECT_TRUE(reps.refused.empty());
    EXPECT_EQ(reps.used.size(), layout.tensors.size());
    EXPECT_LE((got - want).abs().max().item<double>(),
              1e-12 * (1 + want.abs().max().item<double>()))
        << (grouped ? "grouped" : "per replica");
  }
  EXPECT_GT((want.slice(0, 0, B) - want.slice(0, B, 2 * B)).abs().max().item<double>(), 0.0);
}

TEST(EscapeReplicas, ModelsThatCannotRunReplicatedFallBackToTheSingleRunPath) {
  ng::ModelSpec toy = ngtest::model_spec("toy", 1, 1);
  toy.toy_init = {0.5, 0.3};
  for (const Problem& p : {make_problem("diag_linear", ngtest::model_spec("diag_linear", 2, 5), 8),
                           make_problem("toy", toy, 8)}) {
    ng::EscapeOptions e = options(ng::Optimizer::Sgd, at::kDouble);
    e.ks = {1, 2};  // the toy has p = 2
    const auto single = run(p, e, 1);
    const auto asked = run(p, e, 3);
    EXPECT_EQ(asked.replicas, 1) << p.label;
    EXPECT_TRUE(identical(asked, single)) << p.label;
  }
  // The probe names what it refused.
  const Problem p = make_problem("diag_linear", ngtest::model_spec("diag_linear", 2, 5), 8);
  ng::Net m = p.factory();
  m->to(at::kDouble);
  const auto layout = ng::ParameterLayout::of(*m);
  const std::string why =
      ng::escape_detail::replica_refusal(*m, layout, p.data.x.slice(0, 0, 2).to(at::kDouble));
  EXPECT_NE(why.find("elementwise_of"), std::string::npos) << why;
}

TEST(EscapeReplicas, RunsEndingEarlyLeaveTheGroupAndTheOthersGoOn) {
  Problem p = make_problem(
      "fnn",
      [] {
        ng::ModelSpec s = ngtest::model_spec("fnn", 2, 5);
        s.hidden = {8};
        return s;
      }(),
      12);
  ng::EscapeOptions e = options(ng::Optimizer::Sgd, at::kDouble);
  e.runs = 6;
  e.steps = 60;
  e.log_every = 1;
  e.lr = 0.5;
  e.stop_at_escape = true;
  e.escape_factor = 1.2;
  const auto single = run(p, e, 1);
  std::set<int64_t> ends;
  for (const auto& r : single.runs) ends.insert(r.steps);
  ASSERT_GE(ends.size(), 2u) << "the runs should end at different steps";
  expect_close(run(p, e, 3), single, 1e-10, "stop_at_escape");
}

TEST(EscapeReplicas, AResumedBatchedSweepEqualsAnUninterruptedOne) {
  const Problem p = make_problem("cnn", ngtest::model_spec("cnn", 2), 8);
  ng::EscapeOptions e = options(ng::Optimizer::Sgd, at::kFloat);
  e.runs = 5;
  e.replicas = 3;
  const std::string full = ngtest::temp_dir("replicas_full"),
                    part = ngtest::temp_dir("replicas_part");
  const auto whole = ng::run_escape_sweep(full, p.factory, p.theta_star, p.U, p.data, e);
  EXPECT_EQ(whole.computed, 5);

  std::atomic<int> finished{0};
  ng::EscapeHooks stop_after_one;
  stop_after_one.on_run_done = [&](const ng::RunResult&) { ++finished; };
  stop_after_one.should_stop = [&] { return finished.load() >= 1; };
  const auto first =
      ng::run_escape_sweep(part, p.factory, p.theta_star, p.U, p.data, e, stop_after_one);
  EXPECT_GE(first.computed, 1);
  EXPECT_LT(first.computed, 5);
  const auto second = ng::run_escape_sweep(part, p.factory, p.theta_star, p.U, p.data, e);
  EXPECT_EQ(second.computed + second.reused, 5);
  // A run missing from the middle of a group: the whole group runs again, that run reported.
  std::filesystem::remove(part + "/" + ng::sweep_files::run_file(1));
  const auto third = ng::run_escape_sweep(part, p.factory, p.theta_star, p.U, p.data, e);
  EXPECT_EQ(third.computed, 1);
  for (int64_t r = 0; r < 5; ++r)
    EXPECT_EQ(ngtest::read_file(part + "/" + ng::sweep_files::run_file(r)),
              ngtest::read_file(full + "/" + ng::sweep_files::run_file(r)))
        << "run " << r;
}

TEST(EscapeReplicas, BadReplicaCountIsOneLine) {
  const Problem p = make_problem("linear", ngtest::model_spec("linear", 2, 5), 8);
  ng::EscapeOptions e = options(ng::Optimizer::Sgd, at::kDouble);
  e.replicas = -1;
  const std::string msg = ngtest::error_of([&] { run(p, e, -1); });
  EXPECT_NE(msg.find("escape.replicas"), std::string::npos) << msg;
  EXPECT_EQ(ngtest::count_lines(msg + "\n"), 1);
}

}  // namespace
