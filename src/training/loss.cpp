// The loss values of src/training/loss.h. Each reduction keeps the arithmetic (operations and
// their order) its callers have always used, so that trajectories and spectra stay bit for bit.
#include "src/training/loss.h"

#include <ATen/ATen.h>

namespace ng {

const NameTable<LossKind>& loss_names() {
  static const NameTable<LossKind> names(
      "loss", {{LossKind::Mse, "mse"}, {LossKind::CrossEntropy, "cross_entropy"}});
  return names;
}

at::Tensor batch_loss(const at::Tensor& out, const at::Tensor& target, const at::Tensor& label,
                      LossKind loss) {
  if (loss == LossKind::CrossEntropy) return at::cross_entropy_loss(out, label);
  return (out - target).pow(2).sum(1).mean() * 0.5;
}

at::Tensor sample_losses(const at::Tensor& out, const at::Tensor& target, LossKind loss) {
  if (loss == LossKind::CrossEntropy) return -(target * at::log_softmax(out, 1)).sum(1);
  return 0.5 * (out - target).pow(2).sum(1);
}

at::Tensor summed_loss(const at::Tensor& out, const at::Tensor& target, LossKind loss) {
  if (loss == LossKind::CrossEntropy) return -(target * at::log_softmax(out, 1)).sum();
  return 0.5 * (out - target).pow(2).sum();
}

}  // namespace ng
