// Internal to ng_models: one constructor per model family (the registry dispatches on the name)
// and the checks they share. Each constructor validates the spec fields its family reads.
#pragma once

#include <ATen/core/Tensor.h>

#include <cstdint>
#include <string>
#include <vector>

#include "models/model.h"

namespace ng::models {

Net make_resnet(const ModelSpec& spec);
Net make_vgg(const ModelSpec& spec);
Net make_cnn(const ModelSpec& spec);
Net make_fnn(const ModelSpec& spec);
Net make_linear(const ModelSpec& spec);
Net make_linear_net(const ModelSpec& spec);
Net make_diag_linear(const ModelSpec& spec);
Net make_two_layer(const ModelSpec& spec);
Net make_toy(const ModelSpec& spec);

std::string list_text(const std::vector<int64_t>& v);  // "[256, 64, 32]"

// Throws unless x is (N, 3, H, W), and H = W = 32 when `exactly_32` (models with a flatten).
void check_image_batch(const at::Tensor& x, const std::string& model, bool exactly_32);
// Throws unless x is (N, d).
void check_vector_batch(const at::Tensor& x, const std::string& model, int64_t d);

// Spec checks shared by several families; each error names the model.* (or data.*) key.
void require_relu(const ModelSpec& spec);
void require_positive_widths(const std::vector<int64_t>& widths);

// relu, or leaky relu with the spec's slope.
at::Tensor activate(const at::Tensor& x, bool leaky, double slope);

}  // namespace ng::models
