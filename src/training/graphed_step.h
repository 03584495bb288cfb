// One whole optimisation step (forward, loss, backward, update) captured in a CUDA graph and
// replayed, so that a step costs one graph launch instead of hundreds of kernel launches. The
// batch's inputs are copied into static buffers before each replay; warm-up runs on a side stream
// before capture (and is undone on the state it changed). Everywhere else the step runs eagerly,
// exactly as the body says: on the CPU, in builds without CUDA, with graphs turned off, when the
// capture failed, or when a step's inputs or key do not match the captured ones.
#pragma once

#include <ATen/core/Tensor.h>

#include <functional>
#include <memory>
#include <string>
#include <vector>

namespace ng {

class GraphedStep {
 public:
  // body(inputs, key): one step reading `inputs` and whatever the body holds itself (the data,
  // the parameters); `key` is a value it bakes into the launched kernels (the learning rate).
  // It returns the step's loss. `state`: the tensors it changes in place (the parameters), whose
  // gradients it sets afresh each step.
  using Body = std::function<at::Tensor(const std::vector<at::Tensor>& inputs, double key)>;
  GraphedStep(Body body, std::vector<at::Tensor> state, bool use_graphs);
  ~GraphedStep();
  GraphedStep(const GraphedStep&) = delete;
  GraphedStep& operator=(const GraphedStep&) = delete;

  // One step. On CUDA with graphs on, the first call with given input shapes and key captures
  // the graph, later matching calls replay it; the returned loss is then a copy, so that it
  // survives the next replay. No host synchronisation except at capture.
  at::Tensor run(const std::vector<at::Tensor>& inputs, double key);
  // Forgets the graph (the state tensors were replaced); the next step captures anew.
  void reset(std::vector<at::Tensor> state);
  bool captured() const;
  // Why steps run eagerly although graphs were asked for ("" when they do not).
  const std::string& note() const { return note_; }

 private:
  struct Graph;  // the CUDA graph and its static buffers (CUDA builds)
  Body body_;
  std::vector<at::Tensor> state_;
  bool use_graphs_;
  std::unique_ptr<Graph> graph_;
  std::string note_;
  bool capture(const std::vector<at::Tensor>& inputs, double key);
};

// Whether this build can capture CUDA graphs at all.
bool cuda_graphs_built();

}  // namespace ng
