// The SGD gradient and update of src/training/sgd.h.
#include "src/training/sgd.h"

#include <ATen/ATen.h>

namespace ng {

void clear_gradients(const std::vector<at::Tensor>& params) {
  for (auto& t : params) t.mutable_grad() = at::Tensor();
}

at::Tensor sgd_gradient(NetImpl& model, const std::vector<at::Tensor>& params, const at::Tensor& x,
                        const at::Tensor& y, const at::Tensor& labels, const at::Tensor& idx,
                        LossKind loss) {
  const at::Tensor out = model.forward(x.index_select(0, idx));
  const at::Tensor value =
      batch_loss(out, y.index_select(0, idx),
                 labels.defined() ? labels.index_select(0, idx) : at::Tensor(), loss);
  clear_gradients(params);
  value.backward();
  return value;
}

void sgd_step(const std::vector<at::Tensor>& params, double lr) {
  at::NoGradGuard no_grad;
  for (auto& t : params)
    if (t.grad().defined()) t.add_(t.grad(), -lr);
}

GraphedStep::Body sgd_step_body(NetImpl& model, std::vector<at::Tensor> params, at::Tensor x,
                                at::Tensor y, at::Tensor labels, LossKind loss) {
  return [&model, params = std::move(params), x = std::move(x), y = std::move(y),
          labels = std::move(labels), loss](const std::vector<at::Tensor>& in, double lr) {
    const at::Tensor value = sgd_gradient(model, params, x, y, labels, in.at(0), loss);
    sgd_step(params, lr);
    return value;
  };
}

}  // namespace ng
