// Closed-form counts of single ops, the seed claims about operator counts, and op-level user errors.
#include <catch2/catch.hpp>
#include <cmath>
#include <cstdint>

#include "sim/config/error.h"
#include "workloads/model.h"

using namespace mlsim;
using namespace mlsim::wl;

namespace {

ConvAttr conv2d(int64_t cout, int64_t k, int64_t stride = 1, int64_t pad = 0, int64_t groups = 1) {
    ConvAttr a;
    a.out_channels = cout;
    a.kernel = {k, k, 1};
    a.stride = {stride, stride, 1};
    a.pad_begin = a.pad_end = {pad, pad, 0};
    a.groups = groups;
    return a;
}

AttentionAttr attn(int64_t heads, int64_t kv_heads, bool decode, int64_t cache) {
    AttentionAttr a;
    a.heads = heads;
    a.kv_heads = kv_heads;
    a.decode = decode;
    a.cache_len = cache;
    return a;
}

}  // namespace

TEST_CASE("dtype names round-trip and widths are storage widths", "[op]") {
    for (std::string_view n : dtype_names()) CHECK(dtype_name(*parse_dtype(n)) == n);
    CHECK_FALSE(parse_dtype("fp128"));
    CHECK_FALSE(parse_dtype("FP64"));  // names are lower case
    CHECK(dtype_bits(DType::tf32) == 32);
    CHECK(dtype_bits(DType::bf16) == 16);
    CHECK(dtype_bits(DType::fp8) == 8);
    CHECK(dtype_bits(DType::int16) == 16);
    CHECK(dtype_bytes(DType::int16) == 2);
    CHECK(dtype_is_float(DType::fp8));
    CHECK_FALSE(dtype_is_float(DType::int16));
    CHECK(dtype_names() ==
          std::vector<std::string>{"fp64", "fp32", "tf32", "bf16", "fp16", "fp8", "int16", "int8", "int4"});
    CHECK(dtype_bits(DType::fp64) == 64);
    CHECK(dtype_bytes(DType::fp64) == 8);
    CHECK(dtype_is_float(DType::fp64));
    CHECK(dtype_bits(DType::int4) == 4);
    CHECK(dtype_bytes(DType::int4) == 0.5);
    CHECK(phase_name(Phase::recompute) == "recompute");
}

TEST_CASE("seed: an FC layer costs 2·B·N_out·N_in FLOPs", "[op][seed]") {
    const Op fc = make_op("fc", LinearAttr{0, 300, false}, {{16, 500}});
    CHECK(fc.counts().flops == 2.0 * 16 * 300 * 500);
    CHECK(fc.counts().params == 300 * 500);
    CHECK(fc.gemm() == GemmShape{1, 16, 300, 500});
    const Op fcb = make_op("fcb", LinearAttr{500, 300, true}, {{16, 500}});
    CHECK(fcb.counts().flops == 2.0 * 16 * 300 * 500 + 16 * 300);  // bias: one add per output
    CHECK(fcb.counts().params == 300 * 500 + 300);
    // Leading dimensions are tokens: [B, S, d] is B·S rows.
    CHECK(make_op("t", LinearAttr{0, 64, false}, {{2, 10, 32}}).gemm() == GemmShape{1, 20, 64, 32});
}

TEST_CASE("seed: GEMV 4096x4096 FP32 is 33.6 MFLOPs over 67.1 MB, about 0.5 FLOP/byte", "[op][seed]") {
    const Op gemv = make_op("gemv", LinearAttr{0, 4096, false}, {{1, 4096}});
    const OpCounts c = gemv.counts();
    CHECK(c.flops == 2.0 * 4096 * 4096);
    CHECK(c.flops == Approx(33.6e6).epsilon(0.002));  // 33.55 M: the seed rounds up
    CHECK(c.weight_bytes == Approx(67.1e6).epsilon(0.001));
    CHECK(c.flops / c.total_bytes() == Approx(0.5).epsilon(0.001));
}

TEST_CASE("seed: a conv without padding or stride outputs H_in - K + 1 and costs Ho·Wo·Nf·Kh·Kw·Nc MACs",
          "[op][seed]") {
    const Op c = make_op("c", conv2d(16, 5), {{1, 3, 32, 28}});
    CHECK(c.output() == Shape{1, 16, 28, 24});
    CHECK(c.counts().macs == 28.0 * 24 * 16 * 5 * 5 * 3);
    CHECK(c.counts().flops == 2 * c.counts().macs);
    CHECK(c.kind == "conv2d");
    // im2col view: m = N·Ho·Wo, n = Cout, k = Cin·Kh·Kw.
    CHECK(c.gemm() == GemmShape{1, 28 * 24, 16, 3 * 25});
}

TEST_CASE("conv output size follows stride, padding and dilation in 1, 2 and 3 dimensions", "[op]") {
    ConvAttr a = conv2d(8, 3, 2, 1);
    a.dilation = {2, 2, 1};
    // floor((H + 2p - d(k-1) - 1)/s) + 1 = floor((15 + 2 - 4 - 1)/2) + 1 = 7
    CHECK(make_op("d", a, {{2, 4, 15, 15}}).output() == Shape{2, 8, 7, 7});
    ConvAttr c1;
    c1.dims = 1;
    c1.out_channels = 32;
    c1.kernel = {3, 1, 1};
    c1.stride = {2, 1, 1};
    const Op o1 = make_op("c1", c1, {{1, 16, 101}});
    CHECK(o1.kind == "conv1d");
    CHECK(o1.output() == Shape{1, 32, 50});
    CHECK(o1.counts().macs == 50.0 * 32 * 16 * 3);
    ConvAttr c3;
    c3.dims = 3;
    c3.out_channels = 64;
    c3.kernel = {3, 3, 3};
    c3.pad_begin = c3.pad_end = {1, 1, 1};
    const Op o3 = make_op("c3", c3, {{1, 3, 16, 112, 112}});
    CHECK(o3.kind == "conv3d");
    CHECK(o3.output() == Shape{1, 64, 16, 112, 112});
    CHECK(o3.counts().params == 64 * 3 * 27);
    CHECK(o3.gemm() == GemmShape{1, 16 * 112 * 112, 64, 81});
}

TEST_CASE("seed: depthwise conv drops the N_c factor: params c·k² vs c²·k²", "[op][seed]") {
    const int64_t c = 64, k = 3;
    const Op dw = make_op("dw", conv2d(c, k, 1, 1, c), {{1, c, 28, 28}});
    const Op full = make_op("full", conv2d(c, k, 1, 1), {{1, c, 28, 28}});
    CHECK(dw.kind == "depthwise_conv2d");
    CHECK(dw.counts().params == c * k * k);
    CHECK(full.counts().params == c * c * k * k);
    CHECK(full.counts().macs == c * dw.counts().macs);
    CHECK(dw.gemm() == GemmShape{c, 28 * 28, 1, 9});  // one tiny GEMM per group
    // Grouped (not depthwise) conv: params Cout·Cin/g·k².
    const Op g = make_op("g", conv2d(128, 3, 1, 1, 4), {{1, 64, 8, 8}});
    CHECK(g.kind == "conv2d");
    CHECK(g.counts().params == 128 * 16 * 9);
}

TEST_CASE("seed: a 3x3 conv vs an FC layer mapping d x d x c to d x d x c", "[op][seed]") {
    const int64_t d = 8, c = 16;
    const Op conv = make_op("conv", conv2d(c, 3, 1, 1), {{1, c, d, d}});
    const Op fc = make_op("fc", LinearAttr{0, d * d * c, false}, {{1, d * d * c}});
    CHECK(conv.counts().params == 9 * c * c);
    CHECK(fc.counts().params == c * c * d * d * d * d);
    CHECK(conv.counts().flops == 18.0 * c * c * d * d);
    CHECK(fc.counts().flops == 2.0 * c * c * d * d * d * d);
}

TEST_CASE("pooling, element-wise, normalization and softmax follow the stated FLOP table", "[op]") {
    PoolAttr p;
    p.kernel = {3, 3, 1};
    p.stride = {2, 2, 1};
    p.padding = {1, 1, 0};
    const Op mp = make_op("mp", p, {{1, 64, 112, 112}});
    CHECK(mp.kind == "maxpool2d");
    CHECK(mp.output() == Shape{1, 64, 56, 56});
    CHECK(mp.counts().flops == 64.0 * 56 * 56 * 9);
    PoolAttr g;
    g.type = PoolType::avg;
    g.global = true;
    const Op gp = make_op("gp", g, {{2, 512, 7, 7}});
    CHECK(gp.kind == "global_avgpool");
    CHECK(gp.output() == Shape{2, 512, 1, 1});
    CHECK(gp.counts().flops == 2.0 * 512 * 49);

    const Shape s{4, 100};
    CHECK(make_op("r", EltwiseAttr{Eltwise::relu}, {s}).counts().flops == 400);
    CHECK(make_op("g", EltwiseAttr{Eltwise::gelu}, {s}).counts().flops == 12 * 400);
    CHECK(make_op("a", EltwiseAttr{Eltwise::add}, {s, s, s}).counts().flops == 2 * 400);
    CHECK(make_op("sm", SoftmaxAttr{}, {s}).counts().flops == 5 * 400);
    const Op ln = make_op("ln", NormAttr{NormType::layer, 0}, {s});
    CHECK(ln.counts().flops == 7 * 400);
    CHECK(ln.counts().params == 200);
    const Op bn = make_op("bn", NormAttr{NormType::batch, 0}, {{2, 32, 10, 10}});
    CHECK(bn.counts().params == 64);
    CHECK(bn.weight_storage_bytes() == 128 * 4);  // + running mean and variance
    CHECK(make_op("rms", NormAttr{NormType::rms, 0}, {s}).counts().params == 100);
    const Op add = make_op("add", EltwiseAttr{Eltwise::add}, {s, s});
    CHECK(add.counts().input_bytes == 2 * 400 * 4);
    CHECK(add.counts().output_bytes == 400 * 4);
}

TEST_CASE("prefill attention counts the full S x S matrices, or the causal half when asked", "[op]") {
    const int64_t B = 2, S = 128, H = 12, d = 64;
    const Shape x{B, S, H * d};
    const Op a = make_op("a", attn(H, 0, false, 0), {x, x, x});
    CHECK(a.kind == "attention_prefill");
    const double scores = double(B) * H * S * S;
    CHECK(attention_scores(a) == scores);
    CHECK(a.counts().macs == 2 * scores * d);
    CHECK(a.counts().flops == 4 * scores * d + 6 * scores);
    CHECK_FALSE(a.gemm());
    CHECK(a.gemms() == std::vector<GemmShape>{{B * H, S, S, d}, {B * H, S, d, S}});
    AttentionAttr half = attn(H, 0, false, 0);
    half.skip_masked = true;
    const Op h = make_op("h", half, {x, x, x});
    CHECK(attention_scores(h) == double(B) * H * S * (S + 1) / 2);
}

TEST_CASE("decode attention attends to kv_len cached tokens plus the new one; GQA shares K and V", "[op]") {
    const int64_t B = 4, H = 32, d = 128, kv = 1000;
    const Op a = make_op("a", attn(H, 0, true, kv), {{B, 1, H * d}, {B, 1, H * d}, {B, 1, H * d}});
    CHECK(a.kind == "attention_decode");
    CHECK(a.counts().macs == 2.0 * B * H * (kv + 1) * d);
    CHECK(a.gemms().front() == GemmShape{B * H, 1, kv + 1, d});
    CHECK(kv_cache_bytes(a) == 2.0 * B * kv * H * d * 4);
    CHECK(a.counts().input_bytes == 3.0 * B * H * d * 4 + kv_cache_bytes(a));
    CHECK(a.counts().output_bytes == 3.0 * B * H * d * 4);  // output + the new K and V appended
    const Op g = make_op("g", attn(H, 8, true, kv), {{B, 1, H * d}, {B, 1, 8 * d}, {B, 1, 8 * d}});
    CHECK(g.counts().macs == a.counts().macs);
    CHECK(kv_cache_bytes(g) == kv_cache_bytes(a) / 4);
}

TEST_CASE("seed: the KV cache of Llama-2-7B at 2048 tokens in FP16 is about 1.07 GB", "[op][seed]") {
    ZooOptions o;
    o.seq = 2048;
    o.dtype = DType::fp16;
    const Model m = zoo_build("llama2-7b-decode", o);
    CHECK(m.kv_cache_bytes() == 32.0 * 2 * 32 * 2048 * 128 * 2);
    CHECK(m.kv_cache_bytes() == Approx(1.07e9).epsilon(0.005));
}

TEST_CASE("seed: a 100 000-token score matrix with 12 heads in FP16 is 240 GB", "[op][seed]") {
    const Shape x{1, 100000, 768};
    const Op a = make_op("a", attn(12, 0, false, 0), {x, x, x}, DType::fp16);
    CHECK(attention_scores(a) * 2 == Approx(240e9));
}

TEST_CASE("embeddings: lookups read only the gathered rows; bags add (pooling-1)·dim", "[op][seed]") {
    const Op e = make_op("e", EmbeddingAttr{100000000, 128, false, false, std::nullopt}, {{8, 16}});
    CHECK(e.output() == Shape{8, 16, 128});
    CHECK(e.counts().params == 100000000LL * 128);
    CHECK(e.counts().weight_bytes == 8.0 * 16 * 128 * 4);
    CHECK(e.counts().input_bytes == 8.0 * 16 * 8);      // int64 ids
    CHECK(e.weight_storage_bytes() == Approx(51.2e9));  // seed: 100 M x 128 x FP32 = 51.2 GB
    const Op bag = make_op("b", EmbeddingAttr{1000, 64, true, false, std::nullopt}, {{32, 20}});
    CHECK(bag.kind == "embedding_bag");
    CHECK(bag.output() == Shape{32, 64});
    CHECK(bag.counts().flops == 32.0 * 19 * 64);
    CHECK(bag.counts().macs == 0);
}

TEST_CASE("RNN, LSTM and GRU cells match PyTorch's parameter counts and T·B·G·H·(I+H) MACs", "[op]") {
    const int64_t B = 8, T = 50, I = 40, Hd = 128;
    const Op lstm = make_op("l", RnnAttr{RnnCell::lstm, 0, Hd, true}, {{B, T, I}});
    CHECK(lstm.output() == Shape{B, T, Hd});
    CHECK(lstm.counts().params == 4 * Hd * (I + Hd) + 8 * Hd);
    CHECK(lstm.counts().macs == double(T) * B * 4 * Hd * (I + Hd));
    CHECK(lstm.counts().flops == 2 * lstm.counts().macs + double(T) * B * Hd * 32);
    CHECK(lstm.gemms() == std::vector<GemmShape>{{1, B * T, 4 * Hd, I}, {T, B, 4 * Hd, Hd}});
    const Op gru = make_op("g", RnnAttr{RnnCell::gru, 0, Hd, true}, {{B, T, I}});
    CHECK(gru.counts().params == 3 * Hd * (I + Hd) + 6 * Hd);
    const Op rnn = make_op("r", RnnAttr{RnnCell::rnn, 0, Hd, false}, {{B, T, I}});
    CHECK(rnn.counts().params == Hd * (I + Hd));
}

TEST_CASE("DLRM dot interaction, concat, slice and reshape shapes", "[op]") {
    std::vector<Shape> feats(27, Shape{64, 128});
    const Op dot = make_op("dot", InteractionAttr{}, feats);
    CHECK(dot.output() == Shape{64, 128 + 351});
    CHECK(dot.counts().macs == 64.0 * 27 * 27 * 128);
    CHECK(dot.gemm() == GemmShape{64, 27, 27, 128});
    const Op cat = make_op("cat", ConcatAttr{1}, {{2, 3, 4}, {2, 5, 4}});
    CHECK(cat.output() == Shape{2, 8, 4});
    CHECK(cat.counts().flops == 0);
    CHECK(make_op("sl", SliceAttr{1, 0, 1}, {{2, 128, 768}}).output() == Shape{2, 1, 768});
    const Op r = make_op("r", ReshapeAttr{{0, -1, 64}, false}, {{2, 8, 128}});
    CHECK(r.output() == Shape{2, 16, 64});
    CHECK(r.counts().total_bytes() == 0);
    CHECK(make_op("f", ReshapeAttr{{}, true}, {{2, 8, 4, 4}}).output() == Shape{2, 128});
    const Op mm = make_op("mm", MatmulAttr{true}, {{3, 10, 64}, {3, 20, 64}});
    CHECK(mm.output() == Shape{3, 10, 20});
    CHECK(mm.gemm() == GemmShape{3, 10, 20, 64});
    CHECK(mm.counts().params == 0);
}

TEST_CASE("inconsistent attributes are user errors that name the op", "[op][errors]") {
    CHECK_THROWS_WITH(make_op("c", conv2d(8, 3, 1, 0, 3), {{1, 4, 8, 8}}),
                      Catch::Contains("op 'c' (conv2d): groups = 3 must divide in_channels = 4"));
    CHECK_THROWS_WITH(make_op("big", conv2d(8, 9), {{1, 4, 8, 8}}), Catch::Contains("op 'big'"));
    CHECK_THROWS_WITH(make_op("fc", LinearAttr{100, 10, true}, {{1, 64}}),
                      Catch::Contains("in_features is 100 but the input gives 64"));
    CHECK_THROWS_WITH(make_op("mm", MatmulAttr{}, {{4, 8}, {9, 2}}),
                      Catch::Contains("inner dimensions differ"));
    CHECK_THROWS_WITH(make_op("a", attn(12, 5, false, 0), {{1, 4, 768}, {1, 4, 320}, {1, 4, 320}}),
                      Catch::Contains("kv_heads = 5 must divide heads = 12"));
    CHECK_THROWS_WITH(make_op("add", EltwiseAttr{Eltwise::add}, {{2, 3}, {3, 2}}),
                      Catch::Contains("input 1 has shape [3,2] but input 0 has [2,3]"));
    CHECK_THROWS_AS(make_op("neg", EltwiseAttr{Eltwise::relu}, {{2, 0}}), cfg::UserError);
    const cfg::SourceLoc at{"m.yaml", 7, 5};
    CHECK_THROWS_WITH(
        make_op("x", LinearAttr{0, 0, true}, {{2, 3}}, DType::fp32, at, "ops[2]"),
        Catch::StartsWith("m.yaml:7:5: error: ops[2]: op 'x' (linear): out_features must be positive"));
}

TEST_CASE("counts beyond 64 bits are user errors naming the op and the limit, never wrapped",
          "[op][errors]") {
    const int64_t max = INT64_MAX;
    // A tensor of more than 2^53 elements.
    CHECK_THROWS_WITH(
        make_op("fc", LinearAttr{0, 4, true}, {{int64_t{1} << 32, int64_t{1} << 32}}),
        Catch::Contains("op 'fc' (linear): input 0 has shape [4294967296,4294967296], more than 2^53"));
    // Tensors within the limit whose MACs are not: 2^26 tokens x 2^26 x 2^26.
    CHECK_THROWS_WITH(
        make_op("fc", LinearAttr{0, int64_t{1} << 26, true}, {{int64_t{1} << 26, int64_t{1} << 26}}),
        Catch::Contains("op 'fc' (linear): its MAC count") && Catch::Contains("exceeds 2^60"));
    // An embedding table of 2^63 - 1 rows has more parameters than 64 bits count.
    CHECK_THROWS_WITH(make_op("e", EmbeddingAttr{max, 2, false, false, std::nullopt}, {{1, 8}}),
                      Catch::Contains("op 'e' (embedding): the parameter count (rows x dim) exceeds 2^60"));
    // Slice bounds near INT64_MAX: start + length would wrap.
    CHECK_THROWS_WITH(
        make_op("s", SliceAttr{1, max - 10, 100}, {{1, 16}}),
        Catch::Contains("op 's' (slice): slice of length 100 from 9223372036854775797 is outside"));
    // Padding that overflows the padded extent.
    CHECK_THROWS_WITH(make_op("c", conv2d(4, 3, 1, max / 2), {{1, 3, 8, 8}}),
                      Catch::Contains("op 'c' (conv2d): the padded input extent exceeds 2^60"));
    PoolAttr pool;
    pool.kernel = {3, 3, 1};
    pool.stride = {1, 1, 1};
    pool.padding = {max / 2, 0, 0};
    CHECK_THROWS_WITH(make_op("p", pool, {{1, 3, 8, 8}}), Catch::Contains("op 'p' (maxpool2d)"));
    CHECK_THROWS_WITH(make_op("a", attn(1, 1, true, max - 1), {{1, 1, 64}, {1, 1, 64}, {1, 1, 64}}),
                      Catch::Contains("op 'a' (attention_decode): cache_len + new tokens exceeds 2^60"));
    CHECK_THROWS_WITH(
        make_op("r", ReshapeAttr{{int64_t{1} << 62, 4}, false}, {{1, 16}}),
        Catch::Contains("cannot reshape [1,16] (16 elements) into [4611686018427387904,4] (more than "
                        "2^53 elements)"));
    // At the limits themselves an op is fine, and its counts are exact.
    const Op edge =
        make_op("fc", LinearAttr{0, int64_t{1} << 20, false}, {{int64_t{1} << 20, int64_t{1} << 20}});
    CHECK(edge.counts().macs == std::ldexp(1.0, 60));
    CHECK(edge.counts().params == int64_t{1} << 40);
}
