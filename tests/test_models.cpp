// Model registry tests: the paper's parameter counts, output shapes, closed-form outputs, the Fixup
// initialisation and shortcut, spec errors, and seeding.
#include <ATen/ATen.h>
#include <gtest/gtest.h>
#include <torch/utils.h>

#include <cmath>
#include <functional>
#include <string>
#include <vector>

#include "models/model.h"
#include "src/core/config.h"
#include "src/core/error.h"

namespace {

using ng::ModelSpec;
using ng::Net;

ModelSpec spec_of(const std::string& name, int64_t classes = 2, int64_t input_dim = 0) {
  ModelSpec s;
  s.name = name;
  s.num_classes = classes;
  s.input_dim = input_dim;
  return s;
}

at::Tensor param(const Net& net, const std::string& name) {
  auto params = net->named_parameters();
  const at::Tensor* p = params.find(name);
  if (!p) throw std::runtime_error("no parameter " + name);
  return *p;
}

// Overwrites a parameter without recording it in autograd.
void assign(const Net& net, const std::string& name, const at::Tensor& value) {
  torch::NoGradGuard no_grad;
  param(net, name).copy_(value);
}

// Square loss 1/2 |f - y|^2 averaged over the batch; one plain SGD step.
double sgd_step(const Net& net, const at::Tensor& x, const at::Tensor& y, double lr) {
  auto params = net->parameters();
  for (auto& p : params)
    if (p.grad().defined()) p.mutable_grad().zero_();
  at::Tensor loss = ((net->forward(x) - y).pow(2).sum(1) * 0.5).mean();
  loss.backward();
  torch::NoGradGuard no_grad;
  for (auto& p : params)
    if (p.grad().defined()) p.add_(p.grad(), -lr);
  return loss.item<double>();
}

double loss_of(const Net& net, const at::Tensor& x, const at::Tensor& y) {
  torch::NoGradGuard no_grad;
  return ((net->forward(x) - y).pow(2).sum(1) * 0.5).mean().item<double>();
}

void expect_error_mentions(const ModelSpec& s, const std::string& needle) {
  try {
    ng::make_model(s);
    ADD_FAILURE() << "no error for model " << s.name << " (expected one naming " << needle << ")";
  } catch (const ng::Error& e) {
    EXPECT_NE(std::string(e.what()).find(needle), std::string::npos)
        << "message: " << e.what() << "\nexpected to contain: " << needle;
  }
}

TEST(Models, PaperCountsExact) {
  const auto models = ng::paper_models();
  ASSERT_EQ(models.size(), 6u);
  for (const auto& pm : models) {
    torch::manual_seed(0);
    Net net = ng::make_model(pm.spec);
    EXPECT_EQ(ng::count_parameters(*net), pm.paper_count) << pm.label << ": " << net->describe();
  }
}

TEST(Models, CnnWithLinearBiasesHas43174) {
  ModelSpec s = spec_of("cnn");
  s.bias = true;
  EXPECT_EQ(ng::count_parameters(*ng::make_model(s)), 43174);
  s.bias = false;
  EXPECT_EQ(ng::count_parameters(*ng::make_model(s)), 43072);
  for (const auto& pm : ng::paper_models())
    if (pm.label == "CNN") {
      EXPECT_NE(pm.note.find("43,174"), std::string::npos);
    }
}

TEST(Models, CountsOfOtherDepthsAndWidths) {
  // ResNet-20, width 16, 10 classes: the well-known 0.27M of He et al. plus Fixup's 5 scalars per
  // block and 2 global scalars (without BN's 2 per channel).
  ModelSpec r = spec_of("resnet", 10);
  r.depth = 20;
  // 432 (stem) + 1 + 9 blocks * 5 + convs + 650 (fc) + 1
  const int64_t convs = 2 * 3 * 16 * 16 * 9 + (16 * 32 * 9 + 32 * 32 * 9) + 2 * 2 * 32 * 32 * 9 +
                        (32 * 64 * 9 + 64 * 64 * 9) + 2 * 2 * 64 * 64 * 9;
  EXPECT_EQ(ng::count_parameters(*ng::make_model(r)), 432 + 1 + 45 + convs + 650 + 1);

  // VGG-11 at width 8: convs 3-8-16-32-32-64-64-64-64 (all with bias), head 64->128->2.
  ModelSpec v = spec_of("vgg");
  v.depth = 11;
  v.width = 8;
  const std::vector<int64_t> w = {3, 8, 16, 32, 32, 64, 64, 64, 64};
  int64_t expect = 0;
  for (size_t k = 0; k + 1 < w.size(); ++k) expect += w[k] * w[k + 1] * 9 + w[k + 1];
  expect += 64 * 128 + 128 + 128 * 2 + 2;
  EXPECT_EQ(ng::count_parameters(*ng::make_model(v)), expect);

  ModelSpec f = spec_of("fnn");  // flatten input, biases, default widths
  EXPECT_EQ(ng::count_parameters(*ng::make_model(f)),
            3072 * 256 + 256 + 256 * 64 + 64 + 64 * 32 + 32 + 32 * 2 + 2);
}

TEST(Models, ForwardShapesImageModels) {
  torch::manual_seed(1);
  const at::Tensor x = at::randn({2, 3, 32, 32});
  std::vector<ModelSpec> specs;
  ModelSpec r = spec_of("resnet", 3);
  r.depth = 8;
  specs.push_back(r);
  ModelSpec v = spec_of("vgg", 3);
  v.depth = 11;
  v.width = 8;
  v.head_width = 16;
  specs.push_back(v);
  specs.push_back(spec_of("cnn", 3));
  ModelSpec f = spec_of("fnn", 3);
  specs.push_back(f);
  f.input = "gray28";
  specs.push_back(f);
  for (const auto& s : specs) {
    Net net = ng::make_model(s);
    const at::Tensor out = net->forward(x);
    EXPECT_EQ(out.sizes().vec(), (std::vector<int64_t>{2, 3})) << net->describe();
    EXPECT_TRUE(at::isfinite(out).all().item<bool>()) << net->describe();
  }
}

TEST(Models, Vgg19OneForward) {
  torch::manual_seed(2);
  ModelSpec s = spec_of("vgg", 10);
  s.depth = 19;
  Net net = ng::make_model(s);
  torch::NoGradGuard no_grad;
  const at::Tensor out = net->forward(at::randn({1, 3, 32, 32}));
  EXPECT_EQ(out.sizes().vec(), (std::vector<int64_t>{1, 10}));
  EXPECT_TRUE(at::isfinite(out).all().item<bool>());
  EXPECT_EQ(net->describe(),
            "VGG-19 without BN (conv widths 64/128/256/512/512, head 128, 10 classes)");
}

TEST(Models, VggUsesTorchvisionInit) {
  torch::manual_seed(3);
  ModelSpec s = spec_of("vgg");
  s.depth = 13;
  s.width = 16;
  Net net = ng::make_model(s);
  // features.9: the last 128->128 conv, 147,456 weights: std within 1% of sqrt(2 / (128 * 9)).
  const at::Tensor w = param(net, "features.9.weight");
  EXPECT_EQ(w.sizes().vec(), (std::vector<int64_t>{128, 128, 3, 3}));
  EXPECT_NEAR(w.std().item<double>() / std::sqrt(2.0 / (128 * 9)), 1.0, 0.01);
  EXPECT_EQ(param(net, "features.9.bias").abs().max().item<double>(), 0.0);
  EXPECT_NEAR(param(net, "fc1.weight").std().item<double>(), 0.01, 0.0005);
  EXPECT_EQ(param(net, "fc2.bias").abs().max().item<double>(), 0.0);
}

TEST(Models, FnnGray28IsChannelMeanOfTheCentreCrop) {
  torch::manual_seed(4);
  ModelSpec s = spec_of("fnn", 2);
  s.input = "gray28";
  s.hidden = {5};
  s.bias = false;
  Net net = ng::make_model(s);
  const at::Tensor x = at::randn({2, 3, 32, 32}, at::kDouble);
  net->to(at::kDouble);
  const at::Tensor w1 = param(net, "layers.0.weight");  // (5, 784)
  const at::Tensor w2 = param(net, "layers.1.weight");  // (2, 5)
  ASSERT_EQ(w1.size(1), 784);
  // Dense oracle: explicit loops over the crop rows/cols 2..29, inputs ordered row-major.
  auto xa = x.accessor<double, 4>();
  auto w1a = w1.accessor<double, 2>();
  auto w2a = w2.accessor<double, 2>();
  const at::Tensor out = net->forward(x);
  for (int n = 0; n < 2; ++n) {
    std::vector<double> hidden(5, 0.0);
    for (int r = 0; r < 28; ++r)
      for (int c = 0; c < 28; ++c) {
        const double g =
            (xa[n][0][r + 2][c + 2] + xa[n][1][r + 2][c + 2] + xa[n][2][r + 2][c + 2]) / 3;
        for (int h = 0; h < 5; ++h) hidden[h] += w1a[h][r * 28 + c] * g;
      }
    for (int o = 0; o < 2; ++o) {
      double f = 0;
      for (int h = 0; h < 5; ++h) f += w2a[o][h] * std::max(hidden[h], 0.0);
      EXPECT_NEAR(out[n][o].item<double>(), f, 1e-12);
    }
  }
}

TEST(Models, FnnOnVectors) {
  ModelSpec s = spec_of("fnn", 3, 7);
  s.hidden = {4, 4};
  Net net = ng::make_model(s);
  EXPECT_EQ(net->forward(at::randn({2, 7})).sizes().vec(), (std::vector<int64_t>{2, 3}));
  EXPECT_EQ(ng::count_parameters(*net), 7 * 4 + 4 + 4 * 4 + 4 + 4 * 3 + 3);
}

TEST(Models, FixupInitGivesZeroOutputThenLearns) {
  torch::manual_seed(5);
  ModelSpec s = spec_of("resnet", 2);
  s.depth = 20;
  Net net = ng::make_model(s);
  const int64_t blocks = 9;
  int conv2_seen = 0;
  for (const auto& kv : net->named_parameters()) {
    const std::string& name = kv.key();
    const at::Tensor& p = kv.value();
    const bool is_conv2 = name.find("conv2.weight") != std::string::npos;
    conv2_seen += is_conv2;
    if (is_conv2 || name.rfind("fc.", 0) == 0 || name.find("bias") != std::string::npos) {
      EXPECT_EQ(p.abs().max().item<double>(), 0.0) << name;
    }
    if (name.find("scale") != std::string::npos) {
      EXPECT_EQ(p.item<double>(), 1.0) << name;
    }
  }
  EXPECT_EQ(conv2_seen, blocks);
  // layer3.2.conv1: 64*64*9 = 36,864 draws of N(0, sqrt(2/(64*9)) / sqrt(L)).
  const double sd = param(net, "layer3.2.conv1.weight").std().item<double>();
  EXPECT_NEAR(sd / (std::sqrt(2.0 / (64 * 9)) / std::sqrt(double(blocks))), 1.0, 0.02);

  const at::Tensor x = at::randn({4, 3, 32, 32});
  const at::Tensor y = at::one_hot(at::tensor({0, 1, 1, 0}, at::kLong), 2).to(at::kFloat);
  {
    torch::NoGradGuard no_grad;
    EXPECT_EQ(net->forward(x).abs().max().item<double>(), 0.0);
  }
  const double before = sgd_step(net, x, y, 0.1);
  EXPECT_NEAR(before, 0.5, 1e-12);  // 1/2 |0 - onehot|^2
  {
    torch::NoGradGuard no_grad;
    EXPECT_GT(net->forward(x).abs().max().item<double>(), 0.0);
  }
  EXPECT_LT(loss_of(net, x, y), before);
  // The zero fc blocks the gradient to the convolutions in the first step only.
  EXPECT_EQ(param(net, "layer1.0.conv2.weight").abs().max().item<double>(), 0.0);
  sgd_step(net, x, y, 0.1);
  EXPECT_GT(param(net, "layer1.0.conv2.weight").abs().max().item<double>(), 0.0);
}

// With zero residual branches (conv2 = 0) every block is relu(shortcut(x + bias1a)), with the
// bias only on the option-A (stride-2) path. With every bias1a = c > 0 the features are:
// channels [0, w) the stem output subsampled by 4 (even rows/cols twice) plus 2c, channels
// [w, 2w) c (stage 2's zero channels plus layer3.0's bias), channels [2w, 4w) zero.
TEST(Models, FixupOptionAShortcut) {
  torch::manual_seed(6);
  ModelSpec s = spec_of("resnet", 3);
  s.depth = 8;
  s.width = 4;
  Net net = ng::make_model(s);
  net->to(at::kDouble);
  const double c = 0.1;
  for (const char* name : {"layer1.0.bias1a", "layer2.0.bias1a", "layer3.0.bias1a"})
    assign(net, name, at::full({1}, c, at::kDouble));
  assign(net, "fc.weight", at::randn({3, 16}, at::kDouble));
  assign(net, "fc.bias", at::randn({3}, at::kDouble));
  assign(net, "bias2", at::full({1}, 0.25, at::kDouble));
  const at::Tensor x = at::randn({2, 3, 32, 32}, at::kDouble);
  torch::NoGradGuard no_grad;
  const at::Tensor stem = at::relu(at::conv2d(x, param(net, "conv1.weight"), {}, {1, 1}, {1, 1}));
  const at::Tensor sub = stem.slice(2, 0, 32, 4).slice(3, 0, 32, 4);  // (2, 4, 8, 8)
  at::Tensor pooled = at::zeros({2, 16}, at::kDouble);
  pooled.slice(1, 0, 4).copy_(sub.mean({2, 3}) + 2 * c);
  pooled.slice(1, 4, 8).fill_(c);
  const at::Tensor expect =
      at::matmul(pooled + 0.25, param(net, "fc.weight").t()) + param(net, "fc.bias");
  const at::Tensor out = net->forward(x);
  EXPECT_TRUE(at::allclose(out, expect, 1e-12, 1e-12)) << out << expect;
}

TEST(Models, DescribeLines) {
  const auto pm = ng::paper_models();
  EXPECT_EQ(ng::make_model(pm[0].spec)->describe(),
            "Fixup ResNet-38 (n=6, widths 16/32/64, 2 classes)");
  EXPECT_EQ(ng::make_model(pm[1].spec)->describe(),
            "VGG-13 without BN (conv widths 16/32/64/128/128, head 128, 2 classes)");
  EXPECT_EQ(ng::make_model(pm[5].spec)->describe(),
            "FNN 784-256-64-32-2 (ReLU, gray28 input, no biases)");
  ModelSpec ln = spec_of("linear_net", 1, 10);
  ln.hidden = {20, 30, 40};
  EXPECT_EQ(ng::make_model(ln)->describe(), "linear network 10-20-30-40-1 (4 layers, no biases)");
}

TEST(Models, LinearFamilyClosedForms) {
  torch::manual_seed(7);
  const int64_t d = 6, n = 5;
  const at::Tensor x = at::randn({n, d}, at::kDouble);

  Net lin = ng::make_model(spec_of("linear", 2, d));
  lin->to(at::kDouble);
  EXPECT_EQ(ng::count_parameters(*lin), 2 * d);
  EXPECT_TRUE(at::allclose(lin->forward(x), at::matmul(x, param(lin, "weight").t())));

  ModelSpec s = spec_of("linear_net", 2, d);
  s.hidden = {4, 3, 5};
  Net ln = ng::make_model(s);
  ln->to(at::kDouble);
  EXPECT_EQ(ng::count_parameters(*ln), d * 4 + 4 * 3 + 3 * 5 + 5 * 2);
  // F = W4 W3 W2 W1 (2 x d), f = F x.
  const at::Tensor F = at::matmul(
      param(ln, "layers.3.weight"),
      at::matmul(param(ln, "layers.2.weight"),
                 at::matmul(param(ln, "layers.1.weight"), param(ln, "layers.0.weight"))));
  EXPECT_TRUE(at::allclose(ln->forward(x), at::matmul(x, F.t()), 1e-12, 1e-12));

  Net dl = ng::make_model(spec_of("diag_linear", 1, d));
  dl->to(at::kDouble);
  EXPECT_EQ(ng::count_parameters(*dl), 2 * d);
  auto xa = x.accessor<double, 2>();
  const at::Tensor al = param(dl, "alpha"), be = param(dl, "beta");
  const at::Tensor out = dl->forward(x);
  EXPECT_EQ(out.sizes().vec(), (std::vector<int64_t>{n, 1}));
  for (int64_t i = 0; i < n; ++i) {
    double f = 0;
    for (int64_t j = 0; j < d; ++j) {
      const double a = al[0][j].item<double>(), b = be[0][j].item<double>();
      f += (a * a - b * b) * xa[i][j];
    }
    EXPECT_NEAR(out[i][0].item<double>(), f, 1e-12);
  }
}

TEST(Models, TwoLayerOutputWeightsAreFixedBuffers) {
  torch::manual_seed(8);
  const int64_t d = 4, m = 7;
  for (std::string act : {"relu", "leaky_relu"}) {
    ModelSpec s = spec_of("two_layer", 1, d);
    s.hidden = {m};
    s.activation = act;
    s.leaky_slope = 0.2;
    Net net = ng::make_model(s);
    net->to(at::kDouble);
    EXPECT_EQ(ng::count_parameters(*net), m * d);  // b only
    ASSERT_EQ(net->named_parameters().size(), 1u);
    EXPECT_EQ(net->named_parameters().begin()->key(), "b");
    auto buffers = net->named_buffers();
    const at::Tensor* a = buffers.find("a");
    ASSERT_NE(a, nullptr);
    EXPECT_EQ(a->scalar_type(), at::kDouble);  // moved by .to() with the parameters
    EXPECT_EQ(a->sum().item<double>(), 1.0);   // four +1, three -1
    EXPECT_EQ(a->abs().sum().item<double>(), double(m));

    const at::Tensor x = at::randn({3, d}, at::kDouble);
    const at::Tensor b = param(net, "b");
    const at::Tensor out = net->forward(x);
    EXPECT_EQ(out.sizes().vec(), (std::vector<int64_t>{3, 1}));
    for (int64_t i = 0; i < 3; ++i) {
      double f = 0;
      for (int64_t k = 0; k < m; ++k) {
        double z = 0;
        for (int64_t j = 0; j < d; ++j) z += b[k][j].item<double>() * x[i][j].item<double>();
        const double phi = z > 0 ? z : (act == "relu" ? 0.0 : 0.2 * z);
        f += (k < (m + 1) / 2 ? 1.0 : -1.0) * phi;
      }
      EXPECT_NEAR(out[i][0].item<double>(), f, 1e-12) << act;
    }
  }
}

TEST(Models, ToyClosedForm) {
  Net net = ng::make_model(spec_of("toy", 1, 1));
  EXPECT_EQ(ng::count_parameters(*net), 2);
  net->to(at::kDouble);
  assign(net, "w1", at::full({1}, 0.75, at::kDouble));
  assign(net, "w2", at::full({1}, -2.0, at::kDouble));
  const at::Tensor x = at::tensor({1.5, -0.5}, at::kDouble).unsqueeze(1);
  const at::Tensor out = net->forward(x);
  const double c = -2.0 / std::sqrt(0.75 * 0.75 + 1.0);  // = -1.6
  EXPECT_NEAR(out[0][0].item<double>(), c * 1.5, 1e-15);
  EXPECT_NEAR(out[1][0].item<double>(), c * -0.5, 1e-15);
}

TEST(Models, BadSpecsNameTheKey) {
  ModelSpec s = spec_of("resnet");
  s.depth = 21;
  expect_error_mentions(s, "model.depth: ResNet depth must be 6n+2 (e.g. 20, 38, 110), got 21");
  s.depth = 2;
  expect_error_mentions(s, "model.depth");
  s = spec_of("vgg");
  s.depth = 12;
  expect_error_mentions(s, "model.depth: VGG depth must be 11, 13, 16 or 19, got 12");
  s = spec_of("vgg");
  s.activation = "leaky_relu";
  expect_error_mentions(s, "model.activation");
  s = spec_of("linear_net", 1, 5);
  expect_error_mentions(s, "model.hidden: linear_net needs at least one width");
  s.hidden = {3, 0};
  expect_error_mentions(s, "model.hidden: widths must be positive");
  s = spec_of("two_layer", 1, 5);
  s.hidden = {3, 3};
  expect_error_mentions(s, "model.hidden: two_layer needs exactly one width");
  s.hidden = {3};
  s.num_classes = 2;
  expect_error_mentions(s, "data.outputs");
  expect_error_mentions(spec_of("toy", 1, 3), "data.d");
  expect_error_mentions(spec_of("cnn", 2, 10), "model.name: cnn is an image model");
  expect_error_mentions(spec_of("resnet", 2, 10), "model.name: resnet is an image model");
  expect_error_mentions(spec_of("linear", 2, 0), "model.name: linear works on vectors");
  expect_error_mentions(spec_of("mlp"), "model.name: unknown model 'mlp'");
  expect_error_mentions(spec_of("cnn", 0), "num_classes");
  s = spec_of("fnn", 2, 10);
  s.input = "gray28";
  expect_error_mentions(s, "model.input: gray28 needs image inputs");
  s = spec_of("vgg");
  s.head_width = 0;
  expect_error_mentions(s, "model.head_width");
}

TEST(Models, WrongInputShapeIsAnError) {
  Net cnn = ng::make_model(spec_of("cnn"));
  EXPECT_THROW(cnn->forward(at::randn({2, 3, 28, 28})), ng::Error);
  EXPECT_THROW(cnn->forward(at::randn({2, 3072})), ng::Error);
  Net lin = ng::make_model(spec_of("linear", 1, 4));
  EXPECT_THROW(lin->forward(at::randn({2, 5})), ng::Error);
}

TEST(Models, SameSeedSameParameters) {
  std::vector<ModelSpec> specs = {spec_of("cnn"), spec_of("linear", 2, 5),
                                  spec_of("diag_linear", 1, 5), spec_of("toy", 1, 1)};
  ModelSpec r = spec_of("resnet");
  r.depth = 8;
  specs.push_back(r);
  ModelSpec v = spec_of("vgg");
  v.depth = 11;
  v.width = 8;
  specs.push_back(v);
  specs.push_back(spec_of("fnn"));
  ModelSpec ln = spec_of("linear_net", 1, 5);
  ln.hidden = {3};
  specs.push_back(ln);
  ModelSpec tl = spec_of("two_layer", 1, 5);
  tl.hidden = {4};
  specs.push_back(tl);
  for (const auto& s : specs) {
    auto build = [&](uint64_t seed) {
      torch::manual_seed(seed);
      return ng::make_model(s)->parameters();
    };
    const auto a = build(11), b = build(11), c = build(12);
    ASSERT_EQ(a.size(), b.size());
    bool differs = false;
    for (size_t k = 0; k < a.size(); ++k) {
      EXPECT_TRUE(at::equal(a[k], b[k])) << s.name << " parameter " << k;
      differs = differs || !at::equal(a[k], c[k]);
    }
    EXPECT_TRUE(differs) << s.name << ": a different seed gave the same parameters";
  }
}

TEST(Models, SpecFromConfig) {
  const ng::Config cfg = ng::Config::parse(
      "model:\n  name: two_layer\n  hidden: [64]\n  activation: leaky_relu\n  leaky_slope: 0.3\n"
      "  bias: false\n  depth: 38\n  width: 8\n  head_width: 32\n  input: gray28\n",
      "t.yaml");
  const ModelSpec s = ng::model_spec_from_config(cfg, 1, 50);
  EXPECT_EQ(s.name, "two_layer");
  EXPECT_EQ(s.hidden, (std::vector<int64_t>{64}));
  EXPECT_EQ(s.activation, "leaky_relu");
  EXPECT_DOUBLE_EQ(s.leaky_slope, 0.3);
  EXPECT_FALSE(s.bias);
  EXPECT_EQ(s.depth, 38);
  EXPECT_EQ(s.width, 8);
  EXPECT_EQ(s.head_width, 32);
  EXPECT_EQ(s.input, "gray28");
  EXPECT_EQ(s.num_classes, 1);
  EXPECT_EQ(s.input_dim, 50);
  EXPECT_EQ(ng::count_parameters(*ng::make_model(s)), 64 * 50);
}

}  // namespace

TEST(Models, InitZerosZeroesEveryParameterAndOtherNamesAreRefused) {
  ng::ModelSpec s;
  s.name = "linear_net";
  s.input_dim = 5;
  s.num_classes = 1;
  s.hidden = {4, 3};
  s.init = "zeros";
  const ng::Net net = ng::make_model(s);
  ASSERT_EQ(net->parameters().size(), 3u);
  for (const auto& p : net->parameters()) EXPECT_EQ(p.abs().max().item<float>(), 0.0f);
  EXPECT_EQ(net->forward(at::randn({2, 5})).abs().max().item<float>(), 0.0f);
  s.init = "ones";
  EXPECT_THROW(ng::make_model(s), ng::Error);
}
