// A curvature operator over n samples spread over the ranks of dist(): each rank holds the
// CurvatureOperator of its shard (shard(n)) and every product is one all-reduce, so a spectrum of
// 50,000 images splits over GPUs and machines while every rank sees the exact operator of all n;
// and the alignment metrics over such operators.
#pragma once

#include <ATen/core/Tensor.h>

#include <cstdint>
#include <memory>

#include "models/model.h"
#include "src/curvature/curvature.h"
#include "src/curvature/linear_operator.h"
#include "src/dist/dist.h"
#include "src/eigen/eigensolver.h"
#include "src/metrics/alignment.h"

namespace ng {

class ShardedOperator : public LinearOperator {
 public:
  // x, targets: all n samples, the same on every rank (each rank keeps only its shard). Every rank
  // must construct it and call apply() the same number of times with the same vectors (as the same
  // eigensolver with the same seed does): each call is a collective. Throws ng::Error when there
  // are fewer samples than ranks.
  ShardedOperator(Net model, const at::Tensor& x, const at::Tensor& targets,
                  const CurvatureOptions& options);

  int64_t dim() const override { return local_->dim(); }
  at::TensorOptions options() const override { return local_->options(); }
  MatrixKind matrix() const { return matrix_; }
  int64_t num_samples() const { return n_; }
  const Range& samples() const { return range_; }  // this rank's shard
  CurvatureOperator& local() { return *local_; }
  const CurvatureOperator& local() const { return *local_; }
  double loss() const { return loss_; }                 // L over all n samples
  const at::Tensor& gradient() const { return grad_; }  // grad L over all n samples

 protected:
  at::Tensor apply_impl(const at::Tensor& v) override;

 private:
  MatrixKind matrix_;
  int64_t n_;
  Range range_;
  double weight_;  // n_local / n
  std::unique_ptr<CurvatureOperator> local_;
  at::Tensor grad_;
  double loss_ = 0;
};

// compute_alignment's numbers for sharded G and Sigma: alpha_k exactly (one product per
// eigenvector), the traces by Hutchinson (two products per probe, the same probes as
// compute_alignment draws). The rows that would make them exact never meet in one process.
Alignment sharded_alignment(ShardedOperator& g, ShardedOperator& sigma, const Eigenpairs& eig,
                            const AlignmentOptions& opt);

}  // namespace ng
