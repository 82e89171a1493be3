// Convolutional networks of the zoo. Layer tables follow the papers; where a reference implementation
// fixes details the paper leaves open (padding, biases), the cited implementation is followed so the
// parameter counts can be compared with published figures exactly.
#include <fmt/format.h>

#include "workloads/zoo/net.h"
#include "workloads/zoo/zoo.h"

namespace mlsim::wl::zoo {

// LeNet-5: Y. LeCun et al., "Gradient-based learning applied to document recognition", Proc. IEEE 1998.
// The variant built here is the one most reimplementations use: C3 fully connected to S2's 6 maps
// (the paper's sparse C3 table has 1,516 weights, this has 2,416), parameter-free 2x2 average pooling
// (the paper's S2/S4 have a trainable coefficient and bias per map) and a 10-way linear output in place
// of the paper's fixed RBF layer; tanh activations. Parameters: 61,706 (the paper: 60,000 trainable).
Model lenet5(const ZooOptions& o) {
    check_options("lenet5", o, false, true);
    const int64_t img = pick("lenet5", "image", o.image, 32, 16, 4096);
    Net n("lenet5", o.dtype);
    T x = Net::input({o.batch, 1, img, img});
    x = n.conv2d("conv1", x, 6, 5, 1, 0, 1, true);
    x = n.act("tanh1", Eltwise::tanh, x);
    x = n.pool2d("pool1", PoolType::avg, x, 2, 2, 0);
    x = n.conv2d("conv2", x, 16, 5, 1, 0, 1, true);
    x = n.act("tanh2", Eltwise::tanh, x);
    x = n.pool2d("pool2", PoolType::avg, x, 2, 2, 0);
    x = n.flatten("flatten", x);
    x = n.linear("fc1", x, 120);
    x = n.act("tanh3", Eltwise::tanh, x);
    x = n.linear("fc2", x, 84);
    x = n.act("tanh4", Eltwise::tanh, x);
    n.linear("fc3", x, 10);
    return std::move(n).build();
}

// ResNet-50: K. He et al., "Deep Residual Learning for Image Recognition", CVPR 2016, Table 1; version
// 1.5 as in torchvision (stride 2 on the 3x3 conv of a bottleneck, not the first 1x1), convs without
// bias, batchnorm after each conv. torchvision reports 25,557,032 parameters and 4.09 GMACs at 224x224.
Model resnet50(const ZooOptions& o) {
    check_options("resnet50", o, false, true);
    const int64_t img = pick("resnet50", "image", o.image, 224, 32, 8192);
    Net n("resnet50", o.dtype);
    T x = Net::input({o.batch, 3, img, img});
    x = n.conv2d("conv1", x, 64, 7, 2, 3);
    x = n.norm("bn1", NormType::batch, x);
    x = n.act("relu", Eltwise::relu, x);
    x = n.pool2d("maxpool", PoolType::max, x, 3, 2, 1);
    const int blocks[4] = {3, 4, 6, 3};
    const int64_t widths[4] = {64, 128, 256, 512};
    for (int l = 0; l < 4; ++l) {
        for (int b = 0; b < blocks[l]; ++b) {
            const std::string p = fmt::format("layer{}.{}.", l + 1, b);
            const int64_t w = widths[l];
            const int64_t stride = (b == 0 && l > 0) ? 2 : 1;
            T y = n.conv2d(p + "conv1", x, w, 1, 1, 0);
            y = n.norm(p + "bn1", NormType::batch, y);
            y = n.act(p + "relu1", Eltwise::relu, y);
            y = n.conv2d(p + "conv2", y, w, 3, stride, 1);
            y = n.norm(p + "bn2", NormType::batch, y);
            y = n.act(p + "relu2", Eltwise::relu, y);
            y = n.conv2d(p + "conv3", y, 4 * w, 1, 1, 0);
            y = n.norm(p + "bn3", NormType::batch, y);
            T skip = x;
            if (b == 0) {
                skip = n.conv2d(p + "downsample.0", x, 4 * w, 1, stride, 0);
                skip = n.norm(p + "downsample.1", NormType::batch, skip);
            }
            x = n.add(p + "add", y, skip);
            x = n.act(p + "relu3", Eltwise::relu, x);
        }
    }
    x = n.global_avgpool("avgpool", x);
    x = n.flatten("flatten", x);
    n.linear("fc", x, 1000);
    return std::move(n).build();
}

// MobileNetV2 (width 1.0): M. Sandler et al., "MobileNetV2: Inverted Residuals and Linear Bottlenecks",
// CVPR 2018, Table 2 (t, c, n, s rows); torchvision's module layout (no expansion conv when t = 1,
// ReLU6, linear bottleneck, 1280-wide last conv, dropout omitted as it costs nothing at inference).
// The paper reports 3.4 M parameters and 300 M multiply-adds; torchvision counts 3,504,872 parameters.
Model mobilenetv2(const ZooOptions& o) {
    check_options("mobilenetv2", o, false, true);
    const int64_t img = pick("mobilenetv2", "image", o.image, 224, 32, 8192);
    Net n("mobilenetv2", o.dtype);
    T x = Net::input({o.batch, 3, img, img});
    x = n.conv2d("features.0.conv", x, 32, 3, 2, 1);
    x = n.norm("features.0.bn", NormType::batch, x);
    x = n.act("features.0.relu6", Eltwise::relu6, x);
    struct Row {
        int64_t t, c, n, s;
    };
    const Row rows[] = {{1, 16, 1, 1}, {6, 24, 2, 2},  {6, 32, 3, 2}, {6, 64, 4, 2},
                        {6, 96, 3, 1}, {6, 160, 3, 2}, {6, 320, 1, 1}};
    int idx = 1;
    int64_t cin = 32;
    for (const Row& r : rows) {
        for (int64_t i = 0; i < r.n; ++i, ++idx) {
            const std::string p = fmt::format("features.{}.", idx);
            const int64_t stride = i == 0 ? r.s : 1;
            const int64_t hidden = cin * r.t;
            T y = x;
            if (r.t != 1) {
                y = n.conv2d(p + "expand", y, hidden, 1, 1, 0);
                y = n.norm(p + "expand_bn", NormType::batch, y);
                y = n.act(p + "expand_relu6", Eltwise::relu6, y);
            }
            y = n.conv2d(p + "dw", y, hidden, 3, stride, 1, hidden);
            y = n.norm(p + "dw_bn", NormType::batch, y);
            y = n.act(p + "dw_relu6", Eltwise::relu6, y);
            y = n.conv2d(p + "project", y, r.c, 1, 1, 0);
            y = n.norm(p + "project_bn", NormType::batch, y);
            if (stride == 1 && cin == r.c) y = n.add(p + "add", y, x);
            x = y;
            cin = r.c;
        }
    }
    x = n.conv2d(fmt::format("features.{}.conv", idx), x, 1280, 1, 1, 0);
    x = n.norm(fmt::format("features.{}.bn", idx), NormType::batch, x);
    x = n.act(fmt::format("features.{}.relu6", idx), Eltwise::relu6, x);
    x = n.global_avgpool("avgpool", x);
    x = n.flatten("flatten", x);
    n.linear("classifier", x, 1000);
    return std::move(n).build();
}

// A DS-CNN's first layer on its 49 x 10 MFCC input: conv1 to `c` channels, 10x4, stride (2, stride_w), with
// bias, padding 4 / 5 over time and 1 / pad_end_w over the coefficients; batchnorm + ReLU.
static T ds_cnn_stem(Net& n, int64_t batch, int64_t c, int64_t stride_w, int64_t pad_end_w) {
    ConvAttr c1;
    c1.out_channels = c;
    c1.kernel = {10, 4, 1};
    c1.stride = {2, stride_w, 1};
    c1.pad_begin = {4, 1, 0};
    c1.pad_end = {5, pad_end_w, 0};
    c1.bias = true;
    T x = n.op("conv1", c1, {Net::input({batch, 1, 49, 10})});
    x = n.norm("bn1", NormType::batch, x);
    return n.act("relu1", Eltwise::relu, x);
}

// A DS-CNN's depthwise-separable layer after its depthwise convolution `dw` (prefix `p`): batchnorm + ReLU,
// a 1x1 pointwise convolution to `c` channels with bias, batchnorm + ReLU.
static T ds_cnn_layer_rest(Net& n, const std::string& p, T dw, int64_t c) {
    T x = n.norm(p + "dw_bn", NormType::batch, dw);
    x = n.act(p + "dw_relu", Eltwise::relu, x);
    x = n.conv2d(p + "pw", x, c, 1, 1, 0, 1, true);
    x = n.norm(p + "pw_bn", NormType::batch, x);
    return n.act(p + "pw_relu", Eltwise::relu, x);
}

// A DS-CNN's head: average pool over the remaining t x f frames and coefficients, 12-way dense, softmax.
static Model ds_cnn_head(Net&& n, T x, int64_t t, int64_t f) {
    PoolAttr pool;
    pool.type = PoolType::avg;
    pool.kernel = {t, f, 1};
    pool.stride = {t, f, 1};
    x = n.op("avgpool", pool, {x});
    x = n.flatten("flatten", x);
    x = n.linear("fc", x, 12);
    n.op("softmax", SoftmaxAttr{}, {x});
    return std::move(n).build();
}

// DS-CNN for keyword spotting as in the MLPerf Tiny reference (C. Banbury et al., "MLPerf Tiny
// Benchmark", NeurIPS Datasets and Benchmarks 2021; model from Y. Zhang et al., "Hello Edge: Keyword
// Spotting on Microcontrollers", arXiv:1711.07128): input 49 frames x 10 MFCC; Conv 64 x (10x4) stride 2
// with TensorFlow "same" padding, then 4 x (3x3 depthwise + 1x1 pointwise, 64 channels), each conv with
// bias and followed by batchnorm + ReLU; average pool (24x5), 12-way dense + softmax (Keras defaults:
// conv biases on, pool stride = pool size). Counted from that architecture: 23,756 trainable parameters
// (24,908 with the batchnorm moving statistics Keras also lists) and 2,656,768 MACs.
Model ds_cnn_kws(const ZooOptions& o) {
    check_options("ds-cnn-kws", o, false, false);
    Net n("ds-cnn-kws", o.dtype);
    // TensorFlow "same": total padding (out-1)*stride + k - in, the odd unit at the end: H 9 = 4 + 5, W 2.
    T x = ds_cnn_stem(n, o.batch, 64, 2, 1);
    for (int i = 1; i <= 4; ++i) {
        const std::string p = fmt::format("ds{}.", i);
        x = ds_cnn_layer_rest(n, p, n.conv2d(p + "dw", x, 64, 3, 1, 1, 64, true), 64);
    }
    return ds_cnn_head(std::move(n), x, 24, 5);
}

// The medium DS-CNN of "Hello Edge" (Zhang et al., arXiv:1711.07128, Table: DS-CNN S / M / L), as ARM's
// ML-KWS-for-MCU trains it (train_commands.txt: --model_size_info 5 172 10 4 2 1 172 3 3 2 2 172 3 3 1 1
// 172 3 3 1 1 172 3 3 1 1; models.py create_ds_cnn_model): input 49 frames x 10 MFCC (40 ms windows every
// 20 ms); Conv 172 x (10x4) stride (2, 1), then 4 depthwise-separable layers of 172 channels, 3x3, the first
// with stride (2, 2); TensorFlow "same" padding, biases on every convolution (slim's arg_scope), batchnorm +
// ReLU after each; average pool over the remaining 13 x 5; 12-way dense. Counted from that architecture:
// 138,128 trainable parameters and 9,816,384 MACs. Hello Edge gives it 19.8 M operations (about MACs x 2)
// and 189.7 KB of memory: 8-bit weights plus activations.
Model ds_cnn_kws_m(const ZooOptions& o) {
    check_options("ds-cnn-kws-m", o, false, false);
    Net n("ds-cnn-kws-m", o.dtype);
    constexpr int64_t c = 172;
    // "same": out 25 x 10; total padding H (25-1)*2 + 10 - 49 = 9 = 4 + 5, W (10-1) + 4 - 10 = 3 = 1 + 2.
    T x = ds_cnn_stem(n, o.batch, c, 1, 2);
    for (int i = 1; i <= 4; ++i) {
        const std::string p = fmt::format("ds{}.", i);
        ConvAttr dw;
        dw.out_channels = c;
        dw.kernel = {3, 3, 1};
        dw.groups = c;
        dw.bias = true;
        if (i == 1) {
            // "same" at stride 2: out 13 x 5; padding H (13-1)*2 + 3 - 25 = 2 = 1 + 1, W (5-1)*2 + 3 - 10
            // = 1.
            dw.stride = {2, 2, 1};
            dw.pad_begin = {1, 0, 0};
            dw.pad_end = {1, 1, 0};
        } else {
            dw.pad_begin = {1, 1, 0};
            dw.pad_end = {1, 1, 0};
        }
        x = ds_cnn_layer_rest(n, p, n.op(p + "dw", dw, {x}), c);
    }
    return ds_cnn_head(std::move(n), x, 13, 5);
}

// MLPerf Tiny visual wake words (Banbury et al. 2021; the reference Keras model): MobileNetV1 at width
// 0.25, 96x96 RGB, 2 classes. Depthwise-separable blocks (output channels, stride) as in Howard et al.
// 2017 Table 1 times 0.25; the depthwise and pointwise convolutions have no bias (BN follows).
Model vww_mobilenetv1(const ZooOptions& o) {
    check_options("vww-mobilenetv1", o, false, false);
    Net n("vww-mobilenetv1", o.dtype);
    T x = Net::input({o.batch, 3, 96, 96});
    x = n.conv2d("conv1", x, 8, 3, 2, 1);
    x = n.norm("bn1", NormType::batch, x);
    x = n.act("relu1", Eltwise::relu, x);
    const std::pair<int64_t, int64_t> blocks[] = {{16, 1},  {32, 2},  {32, 1},  {64, 2},  {64, 1},
                                                  {128, 2}, {128, 1}, {128, 1}, {128, 1}, {128, 1},
                                                  {128, 1}, {256, 2}, {256, 1}};
    int i = 0;
    for (const auto& [cout, stride] : blocks) {
        const std::string p = fmt::format("block{}.", ++i);
        const int64_t c = x.shape[1];
        x = n.conv2d(p + "dw", x, c, 3, stride, 1, c);
        x = n.norm(p + "dw_bn", NormType::batch, x);
        x = n.act(p + "dw_relu", Eltwise::relu, x);
        x = n.conv2d(p + "pw", x, cout, 1, 1, 0);
        x = n.norm(p + "pw_bn", NormType::batch, x);
        x = n.act(p + "pw_relu", Eltwise::relu, x);
    }
    x = n.global_avgpool("avgpool", x);
    x = n.flatten("flatten", x);
    x = n.linear("fc", x, 2);
    n.op("softmax", SoftmaxAttr{}, {x});
    return std::move(n).build();
}

// MLPerf Tiny image classification (the reference Keras model, resnet_v1_eembc): ResNet-8 on CIFAR-10,
// 32x32 RGB: a 3x3 convolution of 16, three residual stacks of two 3x3 convolutions (16, 32, 64
// channels; the second and third start with stride 2 and a 1x1 stride-2 projection shortcut), 8x8
// average pooling, a 10-way dense layer. Keras convolutions keep their bias.
Model resnet8_cifar(const ZooOptions& o) {
    check_options("resnet8-cifar", o, false, false);
    Net n("resnet8-cifar", o.dtype);
    T x = Net::input({o.batch, 3, 32, 32});
    x = n.conv2d("conv1", x, 16, 3, 1, 1, 1, true);
    x = n.norm("bn1", NormType::batch, x);
    x = n.act("relu1", Eltwise::relu, x);
    int i = 0;
    for (const int64_t c : {16, 32, 64}) {
        const std::string p = fmt::format("stack{}.", ++i);
        const int64_t stride = c == 16 ? 1 : 2;
        T y = n.conv2d(p + "conv1", x, c, 3, stride, 1, 1, true);
        y = n.norm(p + "bn1", NormType::batch, y);
        y = n.act(p + "relu1", Eltwise::relu, y);
        y = n.conv2d(p + "conv2", y, c, 3, 1, 1, 1, true);
        y = n.norm(p + "bn2", NormType::batch, y);
        T s = stride == 1 ? x : n.conv2d(p + "shortcut", x, c, 1, stride, 0, 1, true);
        x = n.add(p + "add", y, s);
        x = n.act(p + "relu2", Eltwise::relu, x);
    }
    x = n.pool2d("avgpool", PoolType::avg, x, 8, 8, 0);
    x = n.flatten("flatten", x);
    x = n.linear("fc", x, 10);
    n.op("softmax", SoftmaxAttr{}, {x});
    return std::move(n).build();
}

// MLPerf Tiny anomaly detection (the DCASE 2020 task 2 baseline): a fully connected autoencoder on
// 640 features (5 frames x 128 mel bands): 4 x (dense 128, BN, ReLU), a bottleneck of 8 (dense, BN,
// ReLU), 4 x (dense 128, BN, ReLU), dense 640.
Model fc_autoencoder(const ZooOptions& o) {
    check_options("fc-autoencoder", o, false, false);
    Net n("fc-autoencoder", o.dtype);
    T x = Net::input({o.batch, 640});
    int i = 0;
    for (const int64_t w : {128, 128, 128, 128, 8, 128, 128, 128, 128}) {
        const std::string p = fmt::format("dense{}", ++i);
        x = n.linear(p, x, w);
        x = n.norm(p + "_bn", NormType::batch, x);
        x = n.act(p + "_relu", Eltwise::relu, x);
    }
    n.linear("dense10", x, 640);
    return std::move(n).build();
}

}  // namespace mlsim::wl::zoo
