// Recommendation and MLP models of the zoo.
#include <fmt/format.h>

#include <array>
#include <string>
#include <vector>

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

// Criteo Kaggle Display Advertising Challenge: rows per categorical feature after the DLRM reference's
// preprocessing (facebookresearch/dlrm, bench/dlrm_s_criteo_kaggle.sh; the same list is TorchRec's
// KAGGLE_NUM_EMBEDDINGS_PER_FEATURE). Sum 33,762,577 rows; x 16 = 540,201,232 embedding parameters.
constexpr std::array<int64_t, 26> k_criteo_kaggle_rows = {
    1460, 583,   10131227, 2202608, 305,  24,   12517, 633,     3,  93145, 5683,   8351593, 3194,
    27,   14992, 5461306,  10,      5652, 2173, 4,     7046547, 18, 15,    286181, 105,     142572};

// MLPerf Training DLRM-DCNv2 (v3.0 onwards; mlcommons/training recommendation_v2/torchrec_dlrm): Criteo
// 1TB with every table capped at 40 M rows (--num_embeddings_per_feature) and the synthetic multi-hot
// sizes (--multi_hot_sizes) as pooling factors. Sum 204,184,588 rows; x 128 = 26,135,627,264 parameters.
constexpr std::array<int64_t, 26> k_dcnv2_rows = {
    40000000, 39060, 17295, 7424, 20265, 3,  7122,     1543,     63,       40000000, 3067956, 405282, 10,
    2209,     11938, 155,   4,    976,   14, 40000000, 40000000, 40000000, 590152,   12973,   108,    36};
constexpr std::array<int64_t, 26> k_dcnv2_hot = {3, 2, 1, 2, 6, 1, 1,  1,   1,  7,  3, 8, 1,
                                                 6, 9, 5, 1, 1, 1, 12, 100, 27, 10, 3, 1, 1};

T mlp(Net& n, const std::string& p, T x, const std::vector<int64_t>& widths, bool last_sigmoid) {
    for (size_t i = 0; i < widths.size(); ++i) {
        x = n.linear(fmt::format("{}_l.{}", p, i), x, widths[i]);
        if (i + 1 < widths.size() || !last_sigmoid)
            x = n.act(fmt::format("{}_relu.{}", p, i), Eltwise::relu, x);
        else
            x = n.act(fmt::format("{}_sigmoid", p), Eltwise::sigmoid, x);
    }
    return x;
}

}  // namespace

// DLRM on Criteo Kaggle, the reference's small configuration (facebookresearch/dlrm,
// bench/dlrm_s_criteo_kaggle.sh: --arch-sparse-feature-size=16 --arch-mlp-bot="13-512-256-64-16"
// --arch-mlp-top="512-256-1", dot interaction without self terms: 16 + 351 = 367 wide): 540,677,217
// parameters, 2.16 GB in FP32, so it trains on one GPU. One-hot lookups (`seq` sets a pooling factor).
Model dlrm_kaggle(const ZooOptions& o) {
    check_options("dlrm-kaggle", o, true, false);
    const int64_t pooling = pick("dlrm-kaggle", "seq", o.seq, 1, 1, 1 << 20);
    Net n("dlrm-kaggle", o.dtype);
    std::vector<T> features{mlp(n, "bot", Net::input({o.batch, 13}), {512, 256, 64, 16}, false)};
    for (size_t t = 0; t < k_criteo_kaggle_rows.size(); ++t)
        features.push_back(n.embedding(fmt::format("emb.{}", t), Net::input({o.batch, pooling}),
                                       k_criteo_kaggle_rows[t], 16, true));
    T x = n.op("interaction", InteractionAttr{}, features);
    mlp(n, "top", x, {512, 256, 1}, true);
    return std::move(n).build();
}

// DLRM-DCNv2, the MLPerf Training recommendation benchmark since v3.0 (R. Wang et al., "DCN V2: Improved
// Deep & Cross Network", WWW 2021, arXiv:2008.13535; the mlcommons/training torchrec_dlrm reference:
// --dense_arch_layer_sizes 512,256,128 --over_arch_layer_sizes 1024,1024,512,256,1 --embedding_dim 128
// --interaction_type dcn --dcn_num_layers 3 --dcn_low_rank_dim 512). The bottom MLP output and the 26
// pooled embeddings are concatenated (27 x 128 = 3,456 wide) and pass 3 low-rank cross layers
// x_{l+1} = x_0 * (U (V x_l) + b) + x_l (V 3,456 -> 512 without bias, U 512 -> 3,456 with bias), then the
// top MLP. Multi-hot bags of the benchmark's sizes (sum pooling). 26,151,671,809 parameters.
Model dlrm_dcnv2(const ZooOptions& o) {
    check_options("dlrm-dcnv2", o, false, false);
    Net n("dlrm-dcnv2", o.dtype);
    std::vector<T> features{mlp(n, "bot", Net::input({o.batch, 13}), {512, 256, 128}, false)};
    for (size_t t = 0; t < k_dcnv2_rows.size(); ++t)
        features.push_back(n.embedding(fmt::format("emb.{}", t), Net::input({o.batch, k_dcnv2_hot[t]}),
                                       k_dcnv2_rows[t], 128, true));
    const T x0 = n.op("interaction.concat", ConcatAttr{1}, features);
    T x = x0;
    for (int l = 0; l < 3; ++l) {
        const std::string p = fmt::format("crossnet.{}.", l);
        T v = n.linear(p + "V", x, 512, false);
        T w = n.linear(p + "U", v, 3456, true);
        w = n.eltwise(p + "mul", Eltwise::mul, {x0, w});
        x = n.add(p + "add", w, x);
    }
    mlp(n, "top", x, {1024, 1024, 512, 256, 1}, true);
    return std::move(n).build();
}

// DLRM: M. Naumov et al., "Deep Learning Recommendation Model for Personalization and Recommendation
// Systems", arXiv:1906.00091; the MLPerf Criteo Terabyte configuration: 13 dense features, bottom MLP
// 13-512-256-128, 26 embedding tables of dimension 128, dot interaction without self terms (27 features:
// 128 + 351 = 479 wide), top MLP 479-1024-1024-512-256-1 with a sigmoid. Criteo is one-hot, so each bag
// gathers one row; `seq` sets a multi-hot pooling factor instead.
Model dlrm_mlperf(const ZooOptions& o) { return dlrm_criteo_tb("dlrm-mlperf", o, 1); }

// NVIDIA DeepLearningExamples' DLRM (PyTorch/Recommendation/DLRM, release 24.03): the same architecture
// with the interaction output zero-padded to a multiple of 8 (479 -> 480; dlrm/nn/interactions.py,
// padding_size) so the top MLP's first GEMM runs on the tensor cores.
Model dlrm_dle(const ZooOptions& o) { return dlrm_criteo_tb("dlrm-dle", o, 8); }

Model dlrm_criteo_tb(const std::string& name, const ZooOptions& o, int64_t pad_to) {
    check_options(name, o, true, false);
    const int64_t pooling = pick(name, "seq", o.seq, 1, 1, 1 << 20);
    Net n(name, o.dtype);
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
    InteractionAttr ia;
    ia.pad_to = pad_to;
    x = n.op("interaction", ia, features);
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
