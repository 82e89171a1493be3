// Recommendation and MLP models of the zoo.
#include <fmt/format.h>

#include <array>

#include "workloads/zoo/net.h"
#include "workloads/zoo/zoo.h"

namespace mlsim::wl::zoo {

namespace {

// Rows per categorical feature of Criteo Terabyte after the MLPerf reference's preprocessing with
// --max-ind-range=40000000 (day_fea_count capped at 40 M rows), as published with the MLPerf Training
// DLRM reference (facebookresearch/dlrm, MLPerf v0.7-v1.x) and NVIDIA DeepLearningExamples' DLRM.
// Sum 187,767,399 rows; x 128 = 24,034,227,072 embedding parameters.
constexpr std::array<int64_t, 26> k_criteo_tb_rows = {
    39884406, 39043, 17289, 7420, 20263, 3,  7120,     1543,     63,       38532951, 2953546, 403346, 10,
    2208,     11938, 155,   4,    976,   14, 39979771, 25641295, 39664984, 585935,   12972,   108,    36};

}  // namespace

// DLRM: M. Naumov et al., "Deep Learning Recommendation Model for Personalization and Recommendation
// Systems", arXiv:1906.00091; the MLPerf Criteo Terabyte configuration: 13 dense features, bottom MLP
// 13-512-256-128, 26 embedding tables of dimension 128, dot interaction without self terms (27 features:
// 128 + 351 = 479 wide), top MLP 479-1024-1024-512-256-1 with a sigmoid. Criteo is one-hot, so each bag
// gathers one row; `seq` sets a multi-hot pooling factor instead.
Model dlrm_mlperf(const ZooOptions& o) {
    check_options("dlrm-mlperf", o, true, false);
    const int64_t pooling = pick("dlrm-mlperf", "seq", o.seq, 1, 1, 1 << 20);
    Net n("dlrm-mlperf", o.dtype);
    T x = Net::input({o.batch, 13});
    const int64_t bottom[] = {512, 256, 128};
    for (int i = 0; i < 3; ++i) {
        x = n.linear(fmt::format("bot_l.{}", i), x, bottom[i]);
        x = n.act(fmt::format("bot_relu.{}", i), Eltwise::relu, x);
    }
    std::vector<T> features{x};
    for (size_t t = 0; t < k_criteo_tb_rows.size(); ++t)
        features.push_back(n.embedding(fmt::format("emb.{}", t), Net::input({o.batch, pooling}),
                                       k_criteo_tb_rows[t], 128, true));
    x = n.op("interaction", InteractionAttr{}, features);
    const int64_t top[] = {1024, 1024, 512, 256, 1};
    for (int i = 0; i < 5; ++i) {
        x = n.linear(fmt::format("top_l.{}", i), x, top[i]);
        if (i < 4)
            x = n.act(fmt::format("top_relu.{}", i), Eltwise::relu, x);
        else
            x = n.act("top_sigmoid", Eltwise::sigmoid, x);
    }
    return std::move(n).build();
}

// A 3-layer perceptron d -> h -> h -> k with ReLUs between layers and no biases, so its forward FLOPs
// are exactly 2dhN + 2h^2N + 2hkN in the linears (plus 2hN for the two ReLUs). Defaults: d = 784 (a
// flattened 28x28 image; `image` sets the side), h = 1024 (`hidden`), k = 10.
Model mlp3(const ZooOptions& o) {
    check_options("mlp3", o, false, true, true);
    const int64_t side = pick("mlp3", "image", o.image, 28, 1, 1 << 15);
    const int64_t h = pick("mlp3", "hidden", o.hidden, 1024, 1, 1 << 20);
    Net n("mlp3", o.dtype);
    T x = Net::input({o.batch, side * side});
    x = n.linear("fc1", x, h, false);
    x = n.act("relu1", Eltwise::relu, x);
    x = n.linear("fc2", x, h, false);
    x = n.act("relu2", Eltwise::relu, x);
    n.linear("fc3", x, 10, false);
    return std::move(n).build();
}

}  // namespace mlsim::wl::zoo
