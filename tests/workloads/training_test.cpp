// Training lowering: backward and optimizer ops, memory accounting, activation checkpointing.
#include "workloads/training.h"

#include <catch2/catch.hpp>

#include "sim/config/error.h"
#include "workloads/model.h"

using namespace mlsim;
using namespace mlsim::wl;

namespace {

OpCounts phase_totals(const Model& m, Phase p, std::string_view kind_prefix = "") {
    OpCounts t;
    for (const Op& op : m.ops())
        if (op.phase == p && op.kind.substr(0, kind_prefix.size()) == kind_prefix) t += op.counts();
    return t;
}

Model mlp(int64_t n, int64_t h) {
    ZooOptions o;
    o.batch = n;
    o.hidden = h;
    return zoo_build("mlp3", o);
}

}  // namespace

TEST_CASE("backward of the 3-layer MLP is exactly 2x forward in its matmuls", "[training][seed]") {
    const double N = 64, d = 784, h = 256, k = 10;
    const Model fwd = mlp(64, 256);
    const double fwd_mm = 2 * d * h * N + 2 * h * h * N + 2 * h * k * N;

    // With gradients for the model input too, every linear gets grad_input and grad_weight: exactly 2x.
    TrainingOptions all;
    all.input_grads = true;
    const Model t = lower_training(fwd, all);
    CHECK(phase_totals(t, Phase::backward, "linear_grad").flops == 2 * fwd_mm);
    // What else backward counts: each ReLU's derivative times the incoming gradient, 2 FLOPs per element.
    CHECK(phase_totals(t, Phase::backward).flops == 2 * fwd_mm + 2 * (2 * h * N));
    CHECK(phase_totals(t, Phase::forward).flops == fwd.totals().flops);

    // As frameworks do by default, no gradient for the model input: fc1's grad-input GEMM is skipped.
    const Model d2 = lower_training(fwd, TrainingOptions{});
    CHECK(phase_totals(d2, Phase::backward, "linear_grad").flops == 2 * fwd_mm - 2 * d * h * N);
    CHECK_FALSE(d2.find("fc1.grad_input"));
    CHECK(d2.find("fc2.grad_input"));
    CHECK(d2.find("fc1.grad_weight"));
    // The seed's "backward ~ 2x forward" assumes every input gradient; here fc1 (d = 784 wide) is most of
    // the forward, so skipping its grad-input leaves backward at 1.25x forward.
    CHECK(phase_totals(d2, Phase::backward).flops == 2 * fwd_mm - 2 * d * h * N + 4 * h * N);
    CHECK(phase_totals(t, Phase::backward).flops / fwd.totals().flops == Approx(2).epsilon(0.01));
}

TEST_CASE("the lowered graph is a DAG that orders backward after forward and updates after gradients",
          "[training]") {
    const Model t = lower_training(mlp(8, 32), TrainingOptions{"sgd", false});
    CHECK(t.name() == "mlp3.train");
    std::vector<std::string> names;
    for (const Op& op : t.ops()) names.push_back(op.name);
    // Insertion order is already topological here, so it is the order.
    CHECK(names == std::vector<std::string>{"fc1", "relu1", "fc2", "relu2", "fc3", "fc3.grad_input",
                                            "fc3.grad_weight", "relu2.grad", "fc2.grad_input",
                                            "fc2.grad_weight", "relu1.grad", "fc1.grad_weight",
                                            "fc1.sgd_update", "fc2.sgd_update", "fc3.sgd_update"});
    const size_t gw = *t.find("fc2.grad_weight");
    const Op& op = t.op(gw);
    CHECK(op.kind == "linear_grad_weight");
    CHECK(op.phase == Phase::backward);
    CHECK(op.forward_of == "fc2");
    CHECK(op.gemm() == GemmShape{1, 32, 32, 8});  // dW = dY^T · X: out x in, reduced over the batch
    CHECK(t.op(*t.find("fc2.grad_input")).gemm() == GemmShape{1, 8, 32, 32});
    // fc2.grad_weight reads relu2.grad's output and the saved relu1 output.
    CHECK(t.producer(gw, 0) == TensorRef{*t.find("relu2.grad"), 0});
    CHECK(t.producer(gw, 1) == TensorRef{*t.find("relu1"), 0});
    // The gradient of the model output is an input of the training graph.
    CHECK_FALSE(t.producer(*t.find("fc3.grad_input"), 0));
    CHECK(t.totals().params == mlp(8, 32).totals().params);
}

TEST_CASE("optimizers keep 0, 1 and 2 state tensors per weight; Adam adds two", "[training][seed]") {
    const Model fwd = mlp(16, 128);
    const double w = double(fwd.totals().params) * 4;
    const MemoryAccount sgd = training_memory(fwd, TrainingOptions{"sgd", false});
    const MemoryAccount mom = training_memory(fwd, TrainingOptions{"momentum", false});
    const MemoryAccount adam = training_memory(fwd, TrainingOptions{"adam", false});
    CHECK(sgd.weights_bytes == w);
    CHECK(sgd.gradients_bytes == w);
    CHECK(sgd.optimizer_state_bytes == 0);
    CHECK(mom.optimizer_state_bytes == w);
    CHECK(adam.optimizer_state_bytes == 2 * w);
    CHECK(adam.total_bytes ==
          adam.weights_bytes + adam.gradients_bytes + adam.optimizer_state_bytes + adam.activations_bytes);
    // Activations kept for backward: the input (read by fc1's weight gradient) and the four hidden tensors.
    CHECK(adam.activations_bytes == (16.0 * 784 + 4 * 16.0 * 128) * 4);
    // The update ops: 12 FLOPs per weight for Adam, reading the gradient and both moments.
    const Model t = lower_training(fwd, TrainingOptions{"adam", false});
    const OpCounts up = t.op(*t.find("fc2.adam_update")).counts();
    CHECK(up.flops == 12.0 * 128 * 128);
    CHECK(up.input_bytes == 3.0 * 128 * 128 * 4);
    CHECK(up.output_bytes == 3.0 * 128 * 128 * 4);
    CHECK_THROWS_WITH(training_memory(fwd, TrainingOptions{"adamw", false}),
                      Catch::Contains("unknown optimizer 'adamw'") && Catch::Contains("did you mean 'adam'"));
}

TEST_CASE("checkpointing lowers activation memory and adds recompute FLOPs", "[training]") {
    for (const char* name : {"resnet50", "gpt2-small-prefill", "mobilenetv2"}) {
        ZooOptions o;
        if (std::string(name) == "gpt2-small-prefill") o.seq = 256;
        const Model fwd = zoo_build(name, o);
        const MemoryAccount plain = training_memory(fwd, TrainingOptions{"adam", false});
        const MemoryAccount ckpt = training_memory(fwd, TrainingOptions{"adam", true});
        INFO(name);
        CHECK(ckpt.activations_bytes < 0.5 * plain.activations_bytes);
        CHECK(ckpt.weights_bytes == plain.weights_bytes);
        CHECK(ckpt.optimizer_state_bytes == plain.optimizer_state_bytes);

        const Model a = lower_training(fwd, TrainingOptions{"adam", false});
        const Model b = lower_training(fwd, TrainingOptions{"adam", true});
        const OpCounts re = phase_totals(b, Phase::recompute);
        CHECK(phase_totals(a, Phase::recompute).flops == 0);
        CHECK(re.flops > 0);
        CHECK(re.flops < fwd.totals().flops);  // the last segment is not recomputed
        CHECK(b.totals().flops == Approx(a.totals().flops + re.flops));
        CHECK(b.totals().params == fwd.totals().params);  // recompute copies own no weights
    }
}

TEST_CASE("recompute ops feed the backward ops of their segment", "[training]") {
    const Model fwd = zoo_build("resnet50", ZooOptions{});
    const Model t = lower_training(fwd, TrainingOptions{"sgd", true});
    const size_t r = *t.find("layer1.0.conv2.recompute");
    CHECK(t.op(r).phase == Phase::recompute);
    CHECK(t.op(r).tied_to == "layer1.0.conv2");
    bool feeds_backward = false;
    for (const Edge& e : t.out_edges(r))
        feeds_backward = feeds_backward || t.op(e.to).phase == Phase::backward;
    CHECK(feeds_backward);
    // Every recompute op runs after the backward ops of later segments have started.
    CHECK(r > *t.find("fc.grad_weight"));
}

TEST_CASE("fan-out gradients are accumulated and residual adds pass gradients through", "[training]") {
    const Model t = lower_training(zoo_build("resnet50", ZooOptions{}), TrainingOptions{"sgd", false});
    // layer1.1's input feeds both its conv1 and its residual add.
    const size_t acc = *t.find("layer1.0.relu3.grad_acc");
    CHECK(t.op(acc).kind == "grad_accumulate");
    CHECK(t.op(acc).inputs.size() == 2);
    CHECK_FALSE(t.find("layer1.0.add.grad"));
    // Conv backward MACs: exactly twice the forward's (the first conv has no input gradient).
    double fwd_conv = 0, bwd_conv = 0;
    for (const Op& op : t.ops()) {
        if (op.phase == Phase::forward && op.get<ConvAttr>()) fwd_conv += op.counts().macs;
        if (op.phase == Phase::backward && op.kind.find("conv2d_grad") != std::string::npos)
            bwd_conv += op.counts().macs;
    }
    const double first = t.op(*t.find("conv1")).counts().macs;
    CHECK(bwd_conv == 2 * fwd_conv - first);
}

TEST_CASE("attention, embeddings and tied weights lower as documented", "[training]") {
    ZooOptions o;
    o.seq = 64;
    const Model fwd = zoo_build("gpt2-small-prefill", o);
    const Model t = lower_training(fwd, TrainingOptions{"adam", false});
    const Op& ag = t.op(*t.find("h.0.attn.attn.grad"));
    CHECK(ag.kind == "attention_grad");
    CHECK(ag.gemms().size() == 5);
    CHECK(ag.counts().macs == 2.5 * fwd.op(*fwd.find("h.0.attn.attn")).counts().macs);
    CHECK(ag.outputs.size() == 3);
    // The tied token embedding is updated once, from its lookups and the LM head.
    const Op& up = t.op(*t.find("wte.adam_update"));
    CHECK(up.inputs.size() == 2);
    CHECK_FALSE(t.find("lm_head.adam_update"));
    CHECK(up.counts().weight_bytes == 50257.0 * 768 * 4);  // dense: the LM head's gradient touches every row
    // The position table (nn.Embedding, a dense gradient in PyTorch) is updated whole, however few rows
    // were looked up: it was updated at the 64 rows looked up (sparse), and at 8 x 1,024 tokens the
    // gradient and the update were 8x the table.
    CHECK(t.op(*t.find("wpe.adam_update")).counts().weight_bytes == 1024.0 * 768 * 4);
    CHECK(t.op(*t.find("wpe.grad_weight")).output() == Shape{1024, 768});
    ZooOptions big;
    big.batch = 8;
    big.seq = 1024;
    const Model fwd_big = zoo_build("gpt2-small-prefill", big);
    const Model t_big = lower_training(fwd_big, TrainingOptions{"adam", false});
    CHECK(t_big.op(*t_big.find("wpe.adam_update")).counts().weight_bytes == 1024.0 * 768 * 4);
    CHECK(training_memory(fwd_big, TrainingOptions{"adam", false}).gradients_bytes ==
          training_memory(fwd, TrainingOptions{"adam", false}).gradients_bytes);  // the tables' size
    CHECK(training_memory(fwd, TrainingOptions{"adam", false}).gradients_bytes == fwd.totals().weight_bytes);
}

TEST_CASE("mixed precision keeps an FP32 master copy and FP32 states: 16 bytes a parameter with Adam",
          "[training]") {
    // The ZeRO paper's accounting (section 3.1): fp16 weights 2 + gradients 2 + K, K = 12 for Adam (master
    // copy 4, two moments 4 + 4), 8 for momentum, 4 for SGD; the parallel plans use the same rule.
    ZooOptions o;
    o.batch = 16;
    o.hidden = 128;
    o.dtype = DType::fp16;
    const Model fwd = zoo_build("mlp3", o);
    const double p = double(fwd.totals().params);
    const MemoryAccount sgd = training_memory(fwd, TrainingOptions{"sgd", false});
    const MemoryAccount mom = training_memory(fwd, TrainingOptions{"momentum", false});
    const MemoryAccount adam = training_memory(fwd, TrainingOptions{"adam", false});
    CHECK(adam.weights_bytes == 2 * p);
    CHECK(adam.gradients_bytes == 2 * p);
    CHECK(adam.optimizer_state_bytes == 12 * p);
    CHECK(mom.optimizer_state_bytes == 8 * p);
    CHECK(sgd.optimizer_state_bytes == 4 * p);
    const StateBytes sb = state_bytes_per_param(DType::bf16, "adam");
    CHECK(sb.weights + sb.gradients + sb.optimizer == 16);
    CHECK(state_bytes_per_param(DType::fp32, "adam").optimizer == 8);
    CHECK(state_bytes_per_param(DType::tf32, "adam").optimizer == 8);
    CHECK(state_bytes_per_param(DType::int8, "adam").optimizer == 12);  // a master copy, as 16-bit
    // fp64 keeps FP64 states and no (narrower) master copy: it was given a 4-byte master of 8-byte weights.
    const StateBytes f64 = state_bytes_per_param(DType::fp64, "adam");
    CHECK(f64.optimizer == 16);
    CHECK_FALSE(f64.master);
    // The update reads the fp16 gradient, the master copy and both moments, and writes the master, the
    // moments and the fp16 weights: 14 bytes each way a parameter.
    const Model t = lower_training(fwd, TrainingOptions{"adam", false});
    const OpCounts up = t.op(*t.find("fc2.adam_update")).counts();
    CHECK(up.weight_bytes + up.input_bytes == 14.0 * 128 * 128);
    CHECK(up.output_bytes == 14.0 * 128 * 128);
}

TEST_CASE("DLRM trains with sparse embedding gradients but full-size optimizer state", "[training]") {
    ZooOptions o;
    o.batch = 2048;
    const Model fwd = zoo_build("dlrm-mlperf", o);
    const MemoryAccount sgd = training_memory(fwd, TrainingOptions{"sgd", false});
    const double mlp = 2368897.0 * 4;
    // An embedding bag's gradient is sparse: the rows of its 2,048 lookups, duplicates included (an
    // uncoalesced sparse gradient, as EmbeddingBag(sparse=True) gives), even where the table has fewer rows.
    CHECK(sgd.gradients_bytes == mlp + 26.0 * 2048 * 128 * 4);
    const MemoryAccount adam = training_memory(fwd, TrainingOptions{"adam", false});
    CHECK(adam.optimizer_state_bytes == 2 * double(fwd.totals().params) * 4);
    const Model t = lower_training(fwd, TrainingOptions{"sgd", false});
    CHECK(t.op(*t.find("emb.0.grad_weight")).kind == "embedding_bag_grad_weight");
    CHECK(t.find("interaction.grad"));
    CHECK(t.find("bot_l.0.grad_weight"));
    CHECK_FALSE(t.find("bot_l.0.grad_input"));
}

TEST_CASE("training a decode step counts its KV cache in the training memory", "[training]") {
    // GPT-2 small decode at batch 4 after 512 tokens, fp16: 12 layers x 2 (K, V) x 4 x 512 x 768 x 2 B.
    ZooOptions o;
    o.batch = 4;
    o.seq = 512;
    o.dtype = DType::fp16;
    const Model fwd = zoo_build("gpt2-small-decode", o);
    const MemoryAccount m = training_memory(fwd, TrainingOptions{});
    CHECK(m.kv_cache_bytes == 12.0 * 2 * 4 * 512 * 768 * 2);
    CHECK(m.kv_cache_bytes == fwd.kv_cache_bytes());
    CHECK(m.total_bytes == m.weights_bytes + m.gradients_bytes + m.optimizer_state_bytes +
                               m.activations_bytes + m.kv_cache_bytes);
    // A model without a KV cache has none.
    CHECK(training_memory(mlp(2, 8), TrainingOptions{}).kv_cache_bytes == 0);
}

TEST_CASE("lowering a training graph again is a user error", "[training][errors]") {
    const Model t = lower_training(mlp(2, 8), TrainingOptions{});
    CHECK_THROWS_WITH(lower_training(t, TrainingOptions{}), Catch::Contains("is already a training op"));
}

TEST_CASE("explicit checkpoint segments: a re-run segment recomputes every one of its ops", "[training]") {
    const Model fwd = mlp(64, 256);  // fc1 relu1 fc2 relu2 fc3
    const size_t n = fwd.ops().size();
    REQUIRE(n == 5);
    // fc1 relu1 fc2 in segment 0, re-run whole; relu2 fc3 in segment 1, kept as usual.
    CheckpointSegments cs;
    cs.segment_of = {0, 0, 0, 1, 1};
    cs.rerun = {true, true, true, false, false};
    const Model t = lower_training(fwd, TrainingOptions{}, cs);
    const Model plain = lower_training(fwd, TrainingOptions{});
    double rerun = 0;
    int copies = 0;
    for (const Op& op : t.ops())
        if (op.phase == Phase::recompute) {
            ++copies;
            rerun += op.counts().flops;
        }
    CHECK(copies == 3);  // fc2 too, though its backward reads only its input
    double first = 0;
    for (size_t i = 0; i < 3; ++i) first += fwd.op(i).counts().flops;
    CHECK(rerun == first);
    CHECK(t.totals().flops == Approx(plain.totals().flops + first).epsilon(1e-12));
    // Backward of fc2 reads relu1's recomputed output, never the forward one.
    int found = 0;
    for (size_t i = 0; i < t.ops().size(); ++i)
        if (t.op(i).forward_of == "fc2" && t.op(i).kind == "linear_grad_weight") {
            ++found;
            for (const Edge& e : t.in_edges(i)) CHECK(t.op(e.from).phase != Phase::forward);
        }
    CHECK(found == 1);
}
