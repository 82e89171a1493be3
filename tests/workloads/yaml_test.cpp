// User models from YAML: the shipped examples, the format's features, and located errors.
#include <catch2/catch.hpp>

#include "sim/config/error.h"
#include "workloads/model.h"

using namespace mlsim;
using namespace mlsim::wl;

namespace {

std::string data(const std::string& f) {
    return std::string(MLSIM_SOURCE_DIR) + "/tests/workloads/data/" + f;
}
std::string example(const std::string& f) { return std::string(MLSIM_SOURCE_DIR) + "/configs/models/" + f; }

std::string error_of(const std::string& path, const ZooOptions& o = {}) {
    try {
        load_model_yaml(path, o);
    } catch (const cfg::UserError& e) {
        return e.what();
    }
    return "no error";
}

}  // namespace

TEST_CASE("the small CNN example loads with the expected parameters and shapes", "[yaml]") {
    ZooOptions o;
    o.batch = 4;
    const Model m = load_model_yaml(example("small_cnn.yaml"), o);
    CHECK(m.name() == "small-cnn");
    CHECK(m.ops().size() == 14);
    // conv1 864 + bn1 64 + dw2 288 + pw2 2,048 + conv3 36,864 + fc 650
    CHECK(m.totals().params == 40778);
    const Op& dw = m.op(*m.find("dw2"));
    CHECK(dw.kind == "depthwise_conv2d");
    CHECK(dw.output() == Shape{4, 32, 16, 16});
    CHECK(m.op(*m.find("fc")).output() == Shape{4, 10});
    CHECK(m.op(*m.find("conv1")).loc.line == 9);
    CHECK(m.op(*m.find("conv1")).key_path == "ops[0]");
    // The residual add reads pool2 directly: two edges leave pool2.
    CHECK(m.out_edges(*m.find("pool2")).size() == 2);
}

TEST_CASE("the transformer block example uses grouped-query attention and the file's seq", "[yaml]") {
    const Model m = load_model_yaml(example("small_transformer.yaml"), ZooOptions{});
    const Op& a = m.op(*m.find("attn"));
    CHECK(a.kind == "attention_prefill");
    CHECK(a.get<AttentionAttr>()->kv_heads == 2);
    CHECK(a.get<AttentionAttr>()->head_dim == 64);
    CHECK(a.counts().macs == 2.0 * 8 * 128 * 128 * 64);
    ZooOptions o;
    o.seq = 256;  // the command line wins over the file
    const Model m2 = load_model_yaml(example("small_transformer.yaml"), o);
    CHECK(m2.op(*m2.find("res2")).output() == Shape{1, 256, 512});
    // The block trains: gradients reach every linear.
    const Model t = lower_training(m, TrainingOptions{});
    CHECK(t.find("q_proj.grad_weight"));
    CHECK(t.find("attn.grad"));
}

TEST_CASE("explicit edges connect ops that declare their input shapes", "[yaml]") {
    const Model m = load_model_yaml(example("mlp_edges.yaml"), ZooOptions{});
    CHECK(m.name() == "mlp-explicit-edges");
    CHECK(m.edges().size() == 2);
    CHECK(m.inputs().size() == 1);
    CHECK(m.totals().flops == 2.0 * 784 * 256 + 256 + 2.0 * 256 * 10);
}

TEST_CASE("ops may be listed in any order and carry their own dtype", "[yaml]") {
    ZooOptions o;
    o.batch = 2;
    const Model m = load_model_yaml(data("ops_any_order.yaml"), o);
    CHECK(m.name() == "any-order");
    CHECK(m.ops().size() == 6);
    CHECK(m.op(*m.find("inter")).output() == Shape{2, 4 + 3});
    CHECK(m.op(*m.find("emb0")).output() == Shape{2, 4});
    CHECK(m.op(*m.find("emb1")).get<EmbeddingAttr>()->mean);
    CHECK(m.op(*m.find("bot")).dtype == DType::fp16);
    CHECK(m.op(*m.find("seq_model")).kind == "lstm");
    CHECK(*m.find("bot") < *m.find("inter"));
    CHECK(*m.find("inter") < *m.find("top"));
}

TEST_CASE("YAML model errors are located at file:line:col with a suggestion", "[yaml][errors]") {
    CHECK_THAT(error_of(data("bad_kind.yaml")),
               Catch::StartsWith(data("bad_kind.yaml") + ":5:") &&
                   Catch::Contains("unknown op kind 'conv2'; did you mean 'conv2d'?"));
    CHECK_THAT(error_of(data("bad_attr.yaml")),
               Catch::StartsWith(data("bad_attr.yaml") +
                                 ":8:5: error: ops[0].kernal: unknown attribute 'kernal' for "
                                 "op 'c1' (conv2d); did you mean 'kernel'?"));
    CHECK_THAT(error_of(data("bad_missing.yaml")),
               Catch::StartsWith(data("bad_missing.yaml") +
                                 ":4:5: error: ops[0]: op 'fc' (linear) needs 'out_features'"));
    CHECK_THAT(error_of(data("bad_dangling.yaml")),
               Catch::StartsWith(data("bad_dangling.yaml") + ":5:") &&
                   Catch::Contains("op 'relu1': no op or model input named 'fc_1'; did you mean 'fc1'?"));
    CHECK_THAT(error_of(data("bad_cycle.yaml")),
               Catch::StartsWith(data("bad_cycle.yaml") + ":") &&
                   Catch::Contains("has a cycle: 'a' -> 'b' -> 'c' -> 'a'"));
    CHECK_THAT(error_of(data("bad_mismatch.yaml")),
               Catch::StartsWith(data("bad_mismatch.yaml") +
                                 ":5:5: error: edges[0]: shape mismatch: op 'fc2' input 0 "
                                 "expects [1,128] but op 'fc1' output 0 is [1,256]"));
    CHECK_THAT(
        error_of(data("bad_edge.yaml")),
        Catch::StartsWith(data("bad_edge.yaml") + ":5:5: error: edges[0]: edge 'fc1' -> 'fc3': no op named "
                                                  "'fc3'; did you mean 'fc1'?"));
    CHECK_THAT(error_of(data("bad_edge_cycle.yaml")), Catch::Contains("has a cycle: 'a' -> 'b' -> 'a'"));
    CHECK_THAT(
        error_of(data("bad_shape_attr.yaml")),
        Catch::StartsWith(data("bad_shape_attr.yaml") + ":4:5: error: ops[0]: op 'c1' (conv2d): groups = 2 "
                                                        "must divide in_channels = 3"));
    CHECK_THAT(
        error_of(data("bad_top.yaml")),
        Catch::StartsWith(data("bad_top.yaml") + ":1:1: error: input: unknown key 'input'; did you mean "
                                                 "'inputs'?"));
    CHECK_THAT(error_of(data("no_such_file.yaml")), Catch::Contains("no_such_file.yaml"));
    // S without a sequence length.
    CHECK_THAT(error_of(data("ops_any_order.yaml")), Catch::Contains("no error"));
}

TEST_CASE("attributes that were ignored or accepted silently are located errors", "[yaml][errors]") {
    // padding beside pad_begin was dropped; a pool padding past half its kernel has windows of padding only
    // (PyTorch refuses it); head_dim 0 read as "derive it"; a tie cycle said "does not own as many weights".
    CHECK_THAT(
        error_of(data("bad_pad_both.yaml")),
        Catch::StartsWith(data("bad_pad_both.yaml") + ":4:80: error: ops[0].padding: give either padding "
                                                      "or pad_begin / pad_end, not both"));
    CHECK_THAT(
        error_of(data("bad_pool_pad.yaml")),
        Catch::StartsWith(data("bad_pool_pad.yaml") + ":4:66: error: ops[0].padding: op 'p1' (maxpool2d): "
                                                      "padding 2 is more than half the kernel 3"));
    CHECK_THAT(
        error_of(data("bad_head_dim.yaml")),
        Catch::StartsWith(data("bad_head_dim.yaml") + ":4:80: error: ops[0].head_dim: head_dim must be "
                                                      "positive"));
    CHECK_THAT(error_of(data("bad_tie_cycle.yaml")),
               Catch::StartsWith(data("bad_tie_cycle.yaml") + ":4:5:") &&
                   Catch::Contains("ties its weights to 'b', which ties its own to 'a'"));
}

TEST_CASE("a batch above 1 for a model that never reads N is an error, not per-sample figures / batch",
          "[yaml][errors]") {
    // Its work is one [4, 16] x [16, 8] product at any batch: batch 8 would divide it by 8 per sample.
    CHECK(load_model_yaml(data("no_batch.yaml"), ZooOptions{}).totals().macs == 4 * 16 * 8);
    ZooOptions eight;
    eight.batch = 8;
    CHECK_THAT(
        error_of(data("no_batch.yaml"), eight),
        Catch::StartsWith(data("no_batch.yaml") + ":2:1: error: inputs: model 'no-batch' never uses N") &&
            Catch::Contains("batch 8 would not change its work"));
    // A model that reads N takes any batch (the small CNN example above, at batch 4).
    // The same for a sequence length, as the zoo refuses one for a model without a sequence.
    ZooOptions seq;
    seq.seq = 100;
    CHECK_THAT(error_of(data("no_batch.yaml"), seq),
               Catch::StartsWith(data("no_batch.yaml") + ": error: model 'no-batch' never uses S"));
    CHECK(load_model_yaml(example("small_transformer.yaml"), seq).ops().size() > 0);
}

TEST_CASE("ops are built in passes over the file, in file order, however they are listed", "[yaml]") {
    // b reads c, which is listed after it; d reads b. Pass 1 builds c and a (b waits on c, d on b);
    // pass 2 builds b, then d. The model lists its ops in that order (ties in build order).
    const std::string path = std::string(MLSIM_SOURCE_DIR) + "/tests/workloads/data/ops_passes.yaml";
    const Model m = load_model_yaml(path, ZooOptions{});
    std::vector<std::string> names;
    for (const Op& op : m.ops()) names.push_back(op.name);
    CHECK(names == std::vector<std::string>{"c", "a", "b", "d"});
}

TEST_CASE("an op gives inputs or input shapes, not both; axes and slots must fit", "[yaml][errors]") {
    CHECK_THAT(
        error_of(data("bad_inputs_and_shape.yaml")),
        Catch::StartsWith(data("bad_inputs_and_shape.yaml") + ":4:40: error: ops[0].input_shape: op 'a' "
                                                              "gives both 'inputs' and 'input_shape'"));
    CHECK_THAT(error_of(data("bad_concat_axis.yaml")),
               Catch::StartsWith(data("bad_concat_axis.yaml") + ":4:") &&
                   Catch::Contains("axis 4294967297 is out of range"));
}
