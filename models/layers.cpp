// The recording (and replicating) layer functions of layers.h.
#include "models/layers.h"

#include <ATen/ATen.h>
#include <fmt/format.h>

#include <type_traits>
#include <utility>

namespace ng::layers {
namespace {

thread_local Recorder* active = nullptr;
thread_local Replicas* replicas = nullptr;

std::vector<int64_t> vec(const torch::ExpandingArray<2>& a) {
  return {(*a)[0], (*a)[1]};
}

// Conv2d options hold variants: c10::variant in LibTorch 1.13, std::variant in 2.x. An
// unqualified visit() finds c10::visit or std::visit by argument-dependent lookup, so this
// compiles against both.
template <typename Options>
bool zero_padding_mode(const Options& o) {
  return visit(
      [](const auto& mode) {
        return std::is_same_v<std::decay_t<decltype(mode)>, torch::enumtype::kZeros>;
      },
      o.padding_mode());
}

// Explicit (or "valid") padding; false for "same", whose split may be uneven.
template <typename Options>
bool explicit_padding(const Options& o, std::vector<int64_t>* out) {
  return visit(
      [out](const auto& pad) {
        using T = std::decay_t<decltype(pad)>;
        if constexpr (std::is_same_v<T, torch::ExpandingArray<2>>) {
          *out = vec(pad);
          return true;
        } else if constexpr (std::is_same_v<T, torch::enumtype::kValid>) {
          *out = {0, 0};
          return true;
        } else {
          return false;
        }
      },
      o.padding());
}

void note(Record r) {
  active->records.push_back(std::move(r));
}

// The per-sample forms of x + p and x * p sum over x's dims, so p must not reach the batch dim
// and must not widen x.
void note_elementwise(Op op, const at::Tensor& x, const at::Tensor& y, const at::Tensor& p) {
  if (p.dim() < x.dim() && y.sizes() == x.sizes())
    note({op, x.detach(), y, p, {}, {}, {}, {}, {}});
  else
    active->refused.push_back(fmt::format("a parameter of shape {} broadcast against {}",
                                          c10::str(p.sizes()), c10::str(x.sizes())));
}

// ---- Replica mode ----

void refuse(const std::string& why) {
  replicas->refused.push_back(why);
}

// The stack standing for parameter p, or an undefined tensor when p is not replicated (a buffer,
// shared by every replica).
at::Tensor stack_of(const at::Tensor& p) {
  if (!p.defined()) return {};
  const auto it = replicas->stacked.find(p.unsafeGetTensorImpl());
  if (it == replicas->stacked.end()) return {};
  replicas->used.insert(it->first);
  return it->second;
}

// (R * B, rest) as (R, B, rest) and back.
at::Tensor split_replicas(const at::Tensor& x) {
  std::vector<int64_t> shape{replicas->count, -1};
  shape.insert(shape.end(), x.sizes().begin() + 1, x.sizes().end());
  return x.reshape(shape);
}

at::Tensor join_replicas(const at::Tensor& x) {
  std::vector<int64_t> shape{-1};
  shape.insert(shape.end(), x.sizes().begin() + 2, x.sizes().end());
  return x.reshape(shape);
}

at::Tensor apply(Op op, const at::Tensor& x, const at::Tensor& p) {
  return op == Op::Add ? x + p : x * p;
}

// x + p or x * p with each replica's p on its own rows: the stack (R, p shape) viewed as
// (R, 1, ..., 1, p shape) against x as (R, B, rest).
at::Tensor replicated_elementwise(Op op, const at::Tensor& x, const at::Tensor& p) {
  const at::Tensor stack = stack_of(p);
  if (!stack.defined()) return apply(op, x, p);
  if (p.dim() >= x.dim()) {
    refuse(fmt::format("a parameter of shape {} broadcast against {}", c10::str(p.sizes()),
                       c10::str(x.sizes())));
    return apply(op, x, p);
  }
  std::vector<int64_t> shape{replicas->count};
  shape.insert(shape.end(), x.dim() - p.dim(), 1);
  shape.insert(shape.end(), p.sizes().begin(), p.sizes().end());
  return join_replicas(apply(op, split_replicas(x), stack.view(shape)));
}

// x W^T (or x w) + b over the last dim, as one batched product over the replicas.
at::Tensor replicated_linear(const at::Tensor& x, const at::Tensor& w, const at::Tensor& b) {
  const at::Tensor stack = stack_of(w);
  at::Tensor y;
  if (!stack.defined()) {
    y = w.dim() == 1 ? at::matmul(x, w) : at::matmul(x, w.t());
  } else {
    const at::Tensor xs = x.reshape({replicas->count, -1, x.size(-1)});
    std::vector<int64_t> shape(x.sizes().begin(), x.sizes().end() - 1);
    if (w.dim() == 1) {
      y = at::bmm(xs, stack.unsqueeze(2)).reshape(shape);
    } else {
      shape.push_back(w.size(0));
      y = at::bmm(xs, stack.transpose(1, 2)).reshape(shape);
    }
  }
  return b.defined() ? replicated_elementwise(Op::Add, y, b) : y;
}

// The replicas' convolutions as one convolution of groups R (CUDA): the input (R B, C, H, W)
// regrouped to (B, R C, H, W), the weights (R, out, ...) to (R out, ...), and the output back.
at::Tensor replicated_conv2d(const torch::nn::Conv2d& layer, const at::Tensor& x) {
  const auto& o = layer->options;
  const at::Tensor w = stack_of(layer->weight), b = stack_of(layer->bias);
  if (!w.defined() && !b.defined()) return layer.ptr()->forward(x);
  std::vector<int64_t> padding;
  if (!w.defined() || b.defined() != layer->bias.defined() || !zero_padding_mode(o) ||
      !explicit_padding(o, &padding)) {
    refuse("a Conv2d with padding other than explicit zeros, or only partly replicated");
    return layer.ptr()->forward(x);
  }
  const int64_t R = replicas->count, B = x.size(0) / R;
  if (!x.is_cuda() && !replicas->grouped_conv_on_cpu) {
    // On the CPU a grouped convolution measured 1.5-2x slower than the replicas' own (CNN of
    // Figure 2b, R = 8, B = 32, one thread): one convolution per replica instead.
    std::vector<at::Tensor> ys;
    for (int64_t r = 0; r < R; ++r)
      ys.push_back(at::conv2d(x.slice(0, r * B, (r + 1) * B), w.select(0, r),
                              b.defined() ? b.select(0, r) : b, vec(o.stride()), padding,
                              vec(o.dilation()), o.groups()));
    return at::cat(ys);
  }
  const at::Tensor xg = x.reshape({R, B, x.size(1), x.size(2), x.size(3)})
                            .transpose(0, 1)
                            .reshape({B, R * x.size(1), x.size(2), x.size(3)});
  std::vector<int64_t> wshape(w.sizes().begin() + 1, w.sizes().end());
  wshape[0] *= R;
  const at::Tensor y = at::conv2d(xg, w.reshape(wshape), b.defined() ? b.reshape({-1}) : b,
                                  vec(o.stride()), padding, vec(o.dilation()), R * o.groups());
  const int64_t out = y.size(1) / R;
  return y.reshape({B, R, out, y.size(2), y.size(3)})
      .transpose(0, 1)
      .reshape({R * B, out, y.size(2), y.size(3)});
}

}  // namespace

ReplicaMode::ReplicaMode(Replicas& r) : previous_(replicas) {
  replicas = &r;
}

ReplicaMode::~ReplicaMode() {
  replicas = previous_;
}

Recording::Recording(Recorder& recorder) : previous_(active) {
  active = &recorder;
}

Recording::~Recording() {
  active = previous_;
}

at::Tensor linear(const torch::nn::Linear& layer, const at::Tensor& x) {
  if (replicas) return replicated_linear(x, layer->weight, layer->bias);
  at::Tensor y = layer.ptr()->forward(x);
  if (active) note({Op::Linear, x.detach(), y, layer->weight, layer->bias, {}, {}, {}, {}});
  return y;
}

at::Tensor conv2d(const torch::nn::Conv2d& layer, const at::Tensor& x) {
  if (replicas) return replicated_conv2d(layer, x);
  at::Tensor y = layer.ptr()->forward(x);
  if (!active) return y;
  const auto& o = layer->options;
  std::vector<int64_t> padding;
  if (o.groups() != 1 || !zero_padding_mode(o) || !explicit_padding(o, &padding)) {
    active->refused.push_back(
        fmt::format("a Conv2d with groups {} or padding other than explicit zeros", o.groups()));
    return y;
  }
  note({Op::Conv2d, x.detach(), y, layer->weight, layer->bias, vec(o.kernel_size()),
        vec(o.stride()), padding, vec(o.dilation())});
  return y;
}

at::Tensor linear(const at::Tensor& x, const at::Tensor& w, const at::Tensor& b) {
  if (replicas) return replicated_linear(x, w, b);
  at::Tensor y = w.dim() == 1 ? at::matmul(x, w) : at::matmul(x, w.t());
  if (b.defined()) y = y + b;
  if (active) note({Op::Linear, x.detach(), y, w, b, {}, {}, {}, {}});
  return y;
}

at::Tensor add_param(const at::Tensor& x, const at::Tensor& p) {
  if (replicas) return replicated_elementwise(Op::Add, x, p);
  at::Tensor y = x + p;
  if (active) note_elementwise(Op::Add, x, y, p);
  return y;
}

at::Tensor mul_param(const at::Tensor& x, const at::Tensor& p) {
  if (replicas) return replicated_elementwise(Op::Mul, x, p);
  at::Tensor y = x * p;
  if (active) note_elementwise(Op::Mul, x, y, p);
  return y;
}

at::Tensor elementwise_of(const at::Tensor& value, std::vector<at::Tensor> params) {
  // The value was computed from the replica model's own parameters, not from their stacks.
  if (replicas) {
    refuse("a parameter used through a function of parameters (elementwise_of)");
    return value;
  }
  if (active) active->derived.push_back({value, std::move(params)});
  return value;
}

}  // namespace ng::layers
