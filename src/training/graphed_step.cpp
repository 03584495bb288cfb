// The CUDA-graph step of graphed_step.h. The graph code is compiled only into CUDA builds
// (NOISEGEOM_CUDA_BUILD): Debian's LibTorch has no CUDA headers.
#include "src/training/graphed_step.h"

#include <ATen/ATen.h>
#include <ATen/core/grad_mode.h>

#include <cstdlib>
#include <exception>
#include <utility>

#if NOISEGEOM_CUDA_BUILD
#include <ATen/cuda/CUDAGraph.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>
#endif

namespace ng {

#if NOISEGEOM_CUDA_BUILD
struct GraphedStep::Graph {
  at::cuda::CUDAGraph graph;
  std::vector<at::Tensor> inputs;  // static buffers the captured kernels read
  double key = 0;
  at::Tensor loss;  // the captured step's output
};
#else
struct GraphedStep::Graph {};
#endif

GraphedStep::GraphedStep(Body body, std::vector<at::Tensor> state, bool use_graphs)
    : body_(std::move(body)), state_(std::move(state)), use_graphs_(use_graphs) {}

GraphedStep::~GraphedStep() = default;

bool GraphedStep::captured() const {
  return graph_ != nullptr;
}

void GraphedStep::reset(std::vector<at::Tensor> state) {
  graph_.reset();
  state_ = std::move(state);
}

bool cuda_graphs_built() {
  return NOISEGEOM_CUDA_BUILD != 0;
}

#if NOISEGEOM_CUDA_BUILD
namespace {

bool same_shapes(const std::vector<at::Tensor>& a, const std::vector<at::Tensor>& b) {
  if (a.size() != b.size()) return false;
  for (size_t k = 0; k < a.size(); ++k)
    if (a[k].sizes() != b[k].sizes() || a[k].scalar_type() != b[k].scalar_type() ||
        a[k].device() != b[k].device())
      return false;
  return true;
}

}  // namespace

bool GraphedStep::capture(const std::vector<at::Tensor>& inputs, double key) {
  auto g = std::make_unique<Graph>();
  g->key = key;
  for (const auto& t : inputs) g->inputs.push_back(t.clone());
  std::vector<at::Tensor> saved;
  for (const auto& t : state_) saved.push_back(t.detach().clone());
  const auto current = c10::cuda::getCurrentCUDAStream();
  const auto side = c10::cuda::getStreamFromPool();
  current.synchronize();
  try {
    c10::cuda::CUDAStreamGuard guard(side);
    // Warm-up outside the graph: LibTorch's lazy initialisations (cuBLAS handles, autograd's
    // device threads) must not happen during capture.
    for (int k = 0; k < 2; ++k) body_(g->inputs, key);
    {
      at::NoGradGuard no_grad;
      for (size_t k = 0; k < state_.size(); ++k) {
        state_[k].copy_(saved[k]);
        state_[k].mutable_grad() = at::Tensor();  // else the captured backward accumulates
      }
    }
    side.synchronize();
    g->graph.capture_begin();
    try {
      g->loss = body_(g->inputs, key);
    } catch (...) {
      try {
        g->graph.capture_end();
      } catch (...) {
      }
      throw;
    }
    g->graph.capture_end();
    side.synchronize();
  } catch (const std::exception& e) {
    const std::string what = e.what();
    note_ = "CUDA graph capture failed, steps run eagerly: " + what.substr(0, what.find('\n'));
    at::NoGradGuard no_grad;
    for (size_t k = 0; k < state_.size(); ++k) state_[k].copy_(saved[k]);
    use_graphs_ = false;
    return false;
  }
  graph_ = std::move(g);
  return true;
}

at::Tensor GraphedStep::run(const std::vector<at::Tensor>& inputs, double key) {
  const bool cuda = !state_.empty() && state_.front().is_cuda();
  if (!use_graphs_ || !cuda) return body_(inputs, key);
  if (!graph_ && !capture(inputs, key)) return body_(inputs, key);
  // A step unlike the captured one (an epoch's short last batch, another learning rate).
  if (graph_->key != key || !same_shapes(inputs, graph_->inputs)) return body_(inputs, key);
  for (size_t k = 0; k < inputs.size(); ++k) graph_->inputs[k].copy_(inputs[k], true);
  graph_->graph.replay();
  return graph_->loss.clone();
}

#else

bool GraphedStep::capture(const std::vector<at::Tensor>&, double) {
  return false;
}

at::Tensor GraphedStep::run(const std::vector<at::Tensor>& inputs, double key) {
  if (use_graphs_ && !state_.empty() && state_.front().is_cuda() && note_.empty())
    note_ = "this build has no CUDA graphs, steps run eagerly";
  return body_(inputs, key);
}

#endif

}  // namespace ng
