// The recording layer functions of layers.h.
#include "models/layers.h"

#include <ATen/ATen.h>
#include <fmt/format.h>

#include <type_traits>
#include <utility>

namespace ng::layers {
namespace {

thread_local Recorder* active = nullptr;

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

}  // namespace

Recording::Recording(Recorder& recorder) : previous_(active) {
  active = &recorder;
}

Recording::~Recording() {
  active = previous_;
}

at::Tensor linear(const torch::nn::Linear& layer, const at::Tensor& x) {
  at::Tensor y = layer.ptr()->forward(x);
  if (active) note({Op::Linear, x.detach(), y, layer->weight, layer->bias, {}, {}, {}, {}});
  return y;
}

at::Tensor conv2d(const torch::nn::Conv2d& layer, const at::Tensor& x) {
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
  at::Tensor y = w.dim() == 1 ? at::matmul(x, w) : at::matmul(x, w.t());
  if (b.defined()) y = y + b;
  if (active) note({Op::Linear, x.detach(), y, w, b, {}, {}, {}, {}});
  return y;
}

at::Tensor add_param(const at::Tensor& x, const at::Tensor& p) {
  at::Tensor y = x + p;
  if (active) note_elementwise(Op::Add, x, y, p);
  return y;
}

at::Tensor mul_param(const at::Tensor& x, const at::Tensor& p) {
  at::Tensor y = x * p;
  if (active) note_elementwise(Op::Mul, x, y, p);
  return y;
}

at::Tensor elementwise_of(const at::Tensor& value, std::vector<at::Tensor> params) {
  if (active) active->derived.push_back({value, std::move(params)});
  return value;
}

}  // namespace ng::layers
