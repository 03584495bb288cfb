// Internal to src/escape: the prepared state (data on the device, theta*, U, thresholds, model
// replicas) that run_escape, the resumable sweep and the learning-rate search share, so a search
// that probes many learning rates prepares once.
#pragma once

#include <ATen/core/Tensor.h>

#include <chrono>
#include <cmath>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "models/params.h"
#include "src/curvature/curvature.h"
#include "src/escape/escape.h"
#include "src/escape/replicas.h"
#include "src/io/json.h"
#include "src/training/train.h"

namespace ng::escape_detail {

struct Replica {
  Net model;
  ParameterLayout layout;
  // EscapeOptions::energy: G at theta* over the energy samples, on a model of its own that stays
  // at theta* (float64): the engine's one operator when it holds G's rows or G itself, else one
  // per worker, so that workers never share autograd state.
  std::shared_ptr<CurvatureOperator> energy;
};

class Engine {
 public:
  Engine(const ModelFactory& factory, const at::Tensor& theta_star, const at::Tensor& U,
         const Dataset& data, const EscapeOptions& opt);

  // Runs the given run indices on the worker pool; returns the finished runs in the order of
  // `runs` (runs dropped by should_stop are missing). lr, runs, steps, stop_at_escape and the
  // concurrency settings of `options()` may change between calls. Running out of memory is one
  // line naming the options that shrink the runs.
  std::vector<RunResult> execute(const std::vector<int64_t>& runs, const EscapeHooks& hooks);

  EscapeOptions& options() { return opt_; }
  const EscapeOptions& options() const { return opt_; }
  double loss_star() const { return loss_star_; }
  double energy_lambda1() const { return energy_lambda1_; }
  double threshold() const { return threshold_; }
  int64_t workers_used() const { return workers_used_; }
  int64_t intra_used() const { return intra_used_; }
  // Runs per batched group in the last execute (1: one at a time), and why the model could not
  // be batched when it was asked to be ("" otherwise).
  int64_t group_used() const { return group_used_; }
  const std::string& replica_refusal() const { return replica_refusal_; }
  // Runs per batched group that execute will use: opt_.replicas resolved (1 when the model cannot
  // run replicated). The groups are fixed ranges of run indices.
  int64_t group_size();
  // Worker threads and intra-op threads per worker for groups of `group` runs: the options
  // resolved against this process's threads (execute uses no more workers than it has tasks).
  std::pair<int64_t, int64_t> concurrency(int64_t group) const;

  // Status, escape and final values of a run from its logged points (the one definition used for
  // computed and for reloaded runs).
  RunResult summarize(int64_t run, std::vector<TrajectoryPoint> points) const;
  // Everything that determines a run's trajectory (the sweep's escape.json).
  json settings() const;
  // Column names of a run's CSV file and its rows.
  std::string csv_header() const;
  std::string to_csv(const RunResult& r) const;
  // Parses the text of a run file written by to_csv; throws ng::Error naming `path` (the file
  // it came from, or will go to) when it is not one.
  std::vector<TrajectoryPoint> parse_csv(const std::string& text, const std::string& path,
                                         int64_t run) const;

 private:
  std::vector<RunResult> execute_runs(const std::vector<int64_t>& runs, const EscapeHooks& hooks);
  // The logged points of a run so far.
  struct Trajectory {
    std::vector<TrajectoryPoint> points;
    bool escaped = false;  // a logged point is above the threshold
  };

  void set_minimum(const at::Tensor& theta_star, const at::Tensor& U);  // theta*, U, K
  void load_data(const Dataset& data);  // all samples, evaluation and GD subsets on the device
  // How the step loop advances its runs (escape.cpp): one run on `rep`'s own parameters and
  // plain ops, or a group on one ReplicaBatch.
  class Stepper;
  class SingleStepper;
  class GroupStepper;
  // A run being simulated: its batches and its logged points so far.
  struct Member {
    int64_t run;
    bool wanted;
    BatchOrder order;
    Trajectory traj;
  };
  // The one step loop: the runs of `group` (one run unless `batched`: then together on one
  // ReplicaBatch, `rep` serving their logged points) from theta_0 to their ends; each finished
  // run whose `wanted` is set goes to on_done (the others only keep the group whole).
  void simulate(Replica& rep, const std::vector<int64_t>& group, const std::vector<char>& wanted,
                bool batched, const EscapeHooks& hooks,
                const std::function<void(RunResult)>& on_done, bool* cancelled) const;
  // The loop's logs at `step` (`losses`: GD's, on the host); returns which runs end there.
  std::vector<char> log_runs(Replica& rep, Stepper& stepper, int64_t step,
                             std::vector<Member>* live, const at::Tensor& losses,
                             const EscapeHooks& hooks) const;
  // Reports the ended runs that are wanted, and drops every ended run from `live` and `stepper`.
  void drop_ended(const std::vector<char>& ends, std::chrono::steady_clock::time_point t0,
                  const std::function<void(RunResult)>& on_done, Stepper& stepper,
                  std::vector<Member>* live) const;
  // The batched forms of sgd_gradient (idx: the replicas' batches, replica-major) and
  // gd_gradient: gradients into `batch`, the per-replica losses returned.
  at::Tensor replica_sgd_gradient(ReplicaBatch& batch, const at::Tensor& idx) const;
  at::Tensor replica_gd_gradient(ReplicaBatch& batch) const;
  at::Tensor theta0(int64_t run) const;  // theta*, perturbed when asked (model dtype)
  // theta_0 of the run (theta*, perturbed when asked) into the replica.
  void start_run(Replica& rep, int64_t run) const;
  // Sets the gradient of the full-batch loss over the GD subset; returns that loss.
  at::Tensor gd_gradient(Replica& rep) const;
  // Logs the point at step; `loss`, unless NaN, is its evaluation loss already at hand. True when
  // the run ends there (escaped with stop_at_escape, non-finite, or past the runaway cap).
  bool log_point(Replica& rep, int64_t run, int64_t step, double loss, const EscapeHooks& hooks,
                 Trajectory* traj) const;
  // log_point on the log grid, and for GD also at the step its loss first exceeds the threshold.
  // `load`, when given, puts the run's theta into `rep` before a point is measured.
  bool log_if_due(Replica& rep, int64_t run, int64_t step, const at::Tensor& step_loss,
                  const EscapeHooks& hooks, Trajectory* traj,
                  const std::function<void()>& load = {}) const;
  // The point at the replica's theta; `loss`, when not NaN, is its evaluation loss.
  TrajectoryPoint measure(Replica& rep, int64_t run, int64_t step, double loss) const;
  double eval_loss(Replica& rep) const;
  void load_theta(Replica& rep, const at::Tensor& theta) const;
  void ensure_replicas(size_t count);
  // The energy samples (float64), G's operator(s), and lambda_1 = u_1^T G u_1.
  void setup_energy();
  Net energy_model() const;  // a float64 replica at theta*
  CurvatureOptions energy_options() const;
  void add_energy_operator(Replica& rep) const;
  double energy_form(Replica& rep, const at::Tensor& v) const;  // v^T G v
  // X_t, Y_t, D_{t,1} of `delta` = theta_t - theta* (float64) into `pt`.
  void measure_energy(Replica& rep, const at::Tensor& delta, TrajectoryPoint* pt) const;

  ModelFactory factory_;
  EscapeOptions opt_;
  int64_t n_ = 0, p_ = 0, K_ = 0;
  at::Tensor x_, y_, labels_;      // all samples (SGD), device and dtype
  at::Tensor ex_, ey_, el_;        // evaluation subset
  at::Tensor gx_, gy_, gl_;        // GD subset
  bool gd_is_eval_ = false;        // GD's gradient loss is the evaluation loss
  at::Tensor theta_star_;          // model dtype
  at::Tensor theta_star64_, U64_;  // float64 on the device
  double loss_star_ = 0, threshold_ = 0;
  at::Tensor energy_x_, energy_y_;  // energy samples, float64 on the device
  // G over the energy samples as per-sample rows B (v^T G v = |B v|^2 / n), or G itself (p x p)
  // when p is small and below the rows, shared read-only by the workers when the rows fit in
  // energy_row_bytes; else null, and each replica's operator takes a JVP per point.
  std::shared_ptr<CurvatureOperator> energy_shared_;
  double energy_lambda1_ = std::nan("");
  std::string energy_checksum_;
  std::vector<Replica> replicas_;
  int64_t workers_used_ = 0, intra_used_ = 0, group_used_ = 1;
  bool replica_probed_ = false;
  std::string replica_refusal_;
  std::string data_checksum_, theta_checksum_, u_checksum_;
};

}  // namespace ng::escape_detail
