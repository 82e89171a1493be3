// Parallel lowering (workloads/parallel.h) against hand-worked figures: Megatron's per-layer
// communication, DDP buckets, the pipeline schedules and bubble, and the ZeRO paper's model-state memory.
#include "workloads/parallel.h"

#include <algorithm>
#include <catch2/catch.hpp>
#include <cmath>

#include "sim/config/error.h"
#include "workloads/model.h"
#include "workloads/training.h"

using namespace mlsim;
using namespace mlsim::wl;
using arch::net::CollectiveKind;

namespace {

ParallelPlan make_plan(int64_t d, int64_t t, int64_t p, int zero = 0, int64_t m = 1) {
    ParallelPlan plan;
    plan.data = d;
    plan.tensor = t;
    plan.pipeline = p;
    plan.zero = zero;
    plan.microbatches = m;
    return plan;
}

ParallelOptions inference() {
    ParallelOptions o;
    o.training = false;
    return o;
}

std::vector<const Task*> comms(const std::vector<Task>& tasks, std::string_view purpose) {
    std::vector<const Task*> out;
    for (const Task& t : tasks)
        if (t.comm && (purpose.empty() || t.comm->purpose == purpose)) out.push_back(&t);
    return out;
}

double total_flops(const ParallelLowering& l) {
    double s = 0;
    for (int64_t r = 0; r < l.ranks(); ++r) s += l.rank_flops(r);
    return s;
}

Model gpt2(int64_t batch, int64_t seq, DType dtype = DType::fp16) {
    ZooOptions o;
    o.batch = batch;
    o.seq = seq;
    o.dtype = dtype;
    return zoo_build("gpt2-small-prefill", o);
}

std::string error_of(const std::function<void()>& f) {
    try {
        f();
    } catch (const cfg::UserError& e) {
        return e.what();
    }
    return "no error";
}

}  // namespace

TEST_CASE("a plan of one device runs the unchanged model", "[parallel]") {
    const Model m = gpt2(2, 64);
    const ParallelPlan single;
    const ParallelLowering inf = lower_parallel(m, single, inference());
    REQUIRE(inf.stages.size() == 1);
    const StageProgram& p = inf.stages[0];
    REQUIRE(p.forward.size() == m.ops().size());
    for (size_t i = 0; i < m.ops().size(); ++i) {
        REQUIRE(p.forward[i].op);
        CHECK(p.forward[i].op->name == m.op(i).name);
        CHECK(p.forward[i].op->counts().flops == m.op(i).counts().flops);
        CHECK(p.forward[i].op->counts().total_bytes() == m.op(i).counts().total_bytes());
    }
    CHECK(comms(p.forward, "").empty());
    CHECK(p.backward.empty());
    CHECK(inf.rank_flops(0) == m.totals().flops);

    const ParallelLowering tr = lower_parallel(m, single);
    const Model lowered = lower_training(m, TrainingOptions{});
    CHECK(tr.rank_flops(0) == Approx(lowered.totals().flops).epsilon(1e-12));
    CHECK(tr.stages[0].forward.size() + tr.stages[0].backward.size() + tr.stages[0].step.size() ==
          lowered.ops().size());
    CHECK(comms(tr.stages[0].backward, "").empty());
    // Model states as the ZeRO paper counts them for mixed-precision Adam: 2 + 2 + 12 bytes per parameter.
    const StageMemory& mem = tr.memory[0];
    CHECK(mem.params == 124439808);
    CHECK(mem.weights_bytes == 2.0 * 124439808);
    CHECK(mem.gradients_bytes == 2.0 * 124439808);
    CHECK(mem.optimizer_state_bytes == 12.0 * 124439808);
}

TEST_CASE("data parallelism splits the batch and conserves FLOPs (ZeRO shards the update)", "[parallel]") {
    ZooOptions o;
    o.batch = 16;
    const Model m = zoo_build("mlp3", o);
    const Model whole = lower_training(m, TrainingOptions{});
    double optimizer = 0;
    for (const Op& op : whole.ops())
        if (op.phase == Phase::optimizer) optimizer += op.counts().flops;
    REQUIRE(optimizer > 0);
    const ParallelLowering z0 = lower_parallel(m, make_plan(4, 1, 1, 0, 2));
    CHECK(z0.microbatch_size == 2);
    CHECK(z0.stages[0].forward[0].op->inputs[0] == Shape{2, 784});
    // Every replica runs the whole optimizer update: 3 extra copies.
    CHECK(total_flops(z0) == Approx(whole.totals().flops + 3 * optimizer).epsilon(1e-12));
    const ParallelLowering z1 = lower_parallel(m, make_plan(4, 1, 1, 1, 2));
    CHECK(total_flops(z1) == Approx(whole.totals().flops).epsilon(1e-12));
}

TEST_CASE("tensor parallelism splits column/row pairs; replicated ops are the stated duplication",
          "[parallel]") {
    ZooOptions o;
    o.batch = 8;
    const Model m = zoo_build("mlp3", o);  // fc1 (column) relu1 fc2 (row) | relu2 fc3 replicated
    const ParallelLowering l = lower_parallel(m, make_plan(1, 2, 1));
    const StageProgram& p = l.stages[0];
    auto find = [&](const std::vector<Task>& ts, std::string_view name) -> const Task& {
        for (const Task& t : ts)
            if (t.name == name) return t;
        FAIL("no task " << name);
        return ts.front();
    };
    CHECK(find(p.forward, "fc1").op->output() == Shape{8, 512});
    CHECK(find(p.forward, "fc2").op->inputs[0] == Shape{8, 512});
    CHECK(find(p.forward, "fc3").op->inputs[0] == Shape{8, 1024});
    const Model whole = lower_training(m, TrainingOptions{});
    double replicated = 0;
    for (const Op& op : whole.ops()) {
        const std::string base = op.phase == Phase::forward ? op.name : op.forward_of;
        if (base == "relu2" || base == "fc3") replicated += op.counts().flops;
    }
    CHECK(l.tp_duplicated_flops == Approx(replicated).epsilon(1e-12));
    CHECK(total_flops(l) ==
          Approx(whole.totals().flops + l.tp_duplicated_flops + l.vocab_padding_flops).epsilon(1e-12));
    // One all-reduce forward (after fc2) of the [8, 1024] fp32 output.
    const auto fwd = comms(p.forward, "tp_forward");
    REQUIRE(fwd.size() == 1);
    CHECK(fwd[0]->comm->collective == CollectiveKind::all_reduce);
    CHECK(fwd[0]->comm->bytes == 8 * 1024 * 4);
    // Its dependencies: fc2 produces its input; relu2 waits for it.
    const size_t ar = static_cast<size_t>(fwd[0] - p.forward.data());
    CHECK(p.forward[fwd[0]->deps.at(0)].name == "fc2");
    CHECK(std::find(find(p.forward, "relu2").deps.begin(), find(p.forward, "relu2").deps.end(), ar) !=
          find(p.forward, "relu2").deps.end());
    CHECK(l.group(0, GroupAxis::tensor) == std::vector<int64_t>{0, 1});
}

TEST_CASE("Megatron GPT layer: two all-reduces of b·s·h forward and two backward", "[parallel]") {
    const int64_t b = 2, s = 64, h = 768;
    const Model m = gpt2(b, s);
    const ParallelLowering l = lower_parallel(m, make_plan(1, 4, 1));
    const StageProgram& p = l.stages[0];
    // Two per layer, and (the vocabulary padded to 50,688 and split) the embedding's lookups forward and
    // the LM head's input gradient backward.
    const auto fwd = comms(p.forward, "tp_forward");
    CHECK(fwd.size() == 2 * 12 + 1);
    for (const Task* t : fwd) {
        CHECK(t->comm->collective == CollectiveKind::all_reduce);
        CHECK(t->comm->bytes == b * s * h * 2);
    }
    const auto bwd = comms(p.backward, "tp_backward_grad");
    CHECK(bwd.size() == 2 * 12 + 1);
    for (const Task* t : bwd) CHECK(t->comm->bytes == b * s * h * 2);
    // Heads and the MLP width are split four ways.
    for (const Task& t : p.forward)
        if (t.name == "h.3.attn.attn")
            CHECK(t.op->get<AttentionAttr>()->heads == 3);
        else if (t.name == "h.3.mlp.c_fc")
            CHECK(t.op->output().back() == 768);
    CHECK(total_flops(l) == Approx(lower_training(m, TrainingOptions{}).totals().flops +
                                   l.tp_duplicated_flops + l.vocab_padding_flops)
                                .epsilon(1e-9));

    // Sequence parallelism: a reduce-scatter after each row linear and an all-gather before each column
    // group (the first layer's input norm runs on the whole sequence: its group needs no gather), all of
    // the whole b·s·h tensor; no duplication left inside the layers.
    ParallelPlan sp = make_plan(1, 4, 1);
    sp.sequence_parallel = true;
    const ParallelLowering q = lower_parallel(m, sp);
    const auto rs = comms(q.stages[0].forward, "sp_reduce_scatter");
    const auto ag = comms(q.stages[0].forward, "sp_gather");
    // The embedding's output is reduce-scattered too (Megatron's VocabParallelEmbedding under sequence
    // parallelism), so the first layer's group gathers as well, and the LM head gathers its input.
    CHECK(rs.size() == 24 + 1);
    CHECK(ag.size() == 24 + 1);
    for (const Task* t : rs)
        CHECK((t->comm->collective == CollectiveKind::reduce_scatter && t->comm->bytes == b * s * h * 2));
    for (const Task* t : ag)
        CHECK((t->comm->collective == CollectiveKind::all_gather && t->comm->bytes == b * s * h * 2));
    CHECK(q.tp_duplicated_flops < l.tp_duplicated_flops / 4);
    // Activations: layer norms and residuals are split too.
    CHECK(q.memory[0].activations_bytes < l.memory[0].activations_bytes);
}

TEST_CASE("Llama: the vocabulary splits with the tensor group (embedding all-reduced, LM head split)",
          "[parallel]") {
    ZooOptions o;
    o.batch = 2;
    o.seq = 16;
    o.dtype = DType::bf16;
    const Model m = zoo_build("llama3-8b-prefill", o);
    const ParallelLowering l = lower_parallel(m, make_plan(1, 8, 1));
    const int64_t norms = (2 * 32 + 1) * 4096;
    CHECK(l.memory[0].params == (8030261248 - norms) / 8 + norms);
    const auto fwd = comms(l.stages[0].forward, "tp_forward");
    CHECK(fwd.size() == 2 * 32 + 1);
    CHECK(fwd.front()->name == "embed_tokens.tp_g");
    for (const Task* t : fwd) CHECK(t->comm->bytes == 2 * 16 * 4096 * 2);
    for (const Task& t : l.stages[0].forward)
        if (t.name == "lm_head") CHECK(t.op->output() == Shape{2, 16, 128256 / 8});
    CHECK(total_flops(l) == Approx(lower_training(m, TrainingOptions{}).totals().flops +
                                   l.tp_duplicated_flops + l.vocab_padding_flops)
                                .epsilon(1e-9));
}

TEST_CASE("DDP buckets of 25 MiB in the order backward produces the gradients", "[parallel]") {
    ZooOptions o;
    o.batch = 4;
    o.hidden = 4096;
    const Model m = zoo_build("mlp3", o);  // fp32: fc1 12.8 MB, fc2 67.1 MB, fc3 0.16 MB
    const ParallelLowering l = lower_parallel(m, make_plan(2, 1, 1));
    const auto buckets = comms(l.stages[0].backward, "dp_bucket");
    REQUIRE(buckets.size() == 2);
    // fc3's gradient comes first; with fc2's the bucket passes 25 MiB and closes; fc1 fills the next.
    CHECK(buckets[0]->comm->bytes == (4096 * 10 + 4096 * 4096) * 4);
    CHECK(buckets[1]->comm->bytes == 784 * 4096 * 4);
    for (const Task* t : buckets) {
        CHECK(t->comm->collective == CollectiveKind::all_reduce);
        CHECK(t->last_microbatch_only);
        CHECK(t->comm->axis == GroupAxis::data);
    }
    // GPT-2 small in fp16: the buckets hold every gradient once; each but the last holds >= 25 MiB.
    const ParallelLowering g = lower_parallel(gpt2(2, 32), make_plan(2, 1, 1));
    const auto gb = comms(g.stages[0].backward, "dp_bucket");
    double sum = 0;
    for (size_t i = 0; i < gb.size(); ++i) {
        sum += static_cast<double>(gb[i]->comm->bytes);
        if (i + 1 < gb.size()) CHECK(gb[i]->comm->bytes >= 25 * 1024 * 1024);
    }
    CHECK(sum == 2.0 * 124439808);
    CHECK(gb.size() <= 9);  // 248.9 MB in buckets of >= 26.2 MB (the last one partial)
    // ZeRO-1: reduce-scatter the same buckets and all-gather the updated parameters.
    const ParallelLowering z = lower_parallel(gpt2(2, 32), make_plan(2, 1, 1, 1));
    CHECK(comms(z.stages[0].backward, "zero_reduce_scatter").size() == gb.size());
    CHECK(comms(z.stages[0].step, "zero_param_gather").size() == gb.size());
}

TEST_CASE("GPipe and 1F1B orders with P = 4, M = 8, and the bubble (P-1)/(M+P-1)", "[parallel]") {
    using F = ScheduleItem;
    const Pass f = Pass::forward, b = Pass::backward;
    const std::vector<ScheduleItem> one_f_one_b_0 = {F{0, f}, F{1, f}, F{2, f}, F{3, f}, F{0, b}, F{4, f},
                                                     F{1, b}, F{5, f}, F{2, b}, F{6, f}, F{3, b}, F{7, f},
                                                     F{4, b}, F{5, b}, F{6, b}, F{7, b}};
    CHECK(pipeline_schedule(PipelineSchedule::one_f_one_b, 0, 4, 8, true) == one_f_one_b_0);
    std::vector<ScheduleItem> last;
    for (int64_t i = 0; i < 8; ++i) {
        last.push_back({i, f});
        last.push_back({i, b});
    }
    CHECK(pipeline_schedule(PipelineSchedule::one_f_one_b, 3, 4, 8, true) == last);
    std::vector<ScheduleItem> gpipe;
    for (int64_t i = 0; i < 8; ++i) gpipe.push_back({i, f});
    for (int64_t i = 8; i-- > 0;) gpipe.push_back({i, b});
    CHECK(pipeline_schedule(PipelineSchedule::gpipe, 2, 4, 8, true) == gpipe);
    CHECK(bubble_fraction(4, 8) == 3.0 / 11.0);

    // GPT-2 small on 4 stages of 3 layers: activations b·s·h go forward, their gradients backward;
    // 1F1B keeps P - s micro-batches in flight, GPipe all M.
    const ParallelLowering l = lower_parallel(gpt2(8, 32), make_plan(1, 1, 4, 0, 8));
    CHECK(l.bubble_fraction == 3.0 / 11.0);
    for (int64_t s = 0; s < 4; ++s) {
        const StageProgram& p = l.stages[static_cast<size_t>(s)];
        CHECK(p.layers == 3);
        CHECK(p.first_layer == 3 * s);
        const auto sends = comms(p.forward, "pp_activation");
        CHECK(sends.size() == (s == 0 || s == 3 ? 1u : 2u));
        for (const Task* t : sends) CHECK(t->comm->bytes == 1 * 32 * 768 * 2);
        CHECK(l.memory[static_cast<size_t>(s)].inflight_microbatches == 4 - s);
    }
    CHECK(l.stages[0].forward.front().name == "wte");
    CHECK(l.stages[3].forward.back().name == "lm_head");
    // The LM head tied to the first stage's embedding: both stages all-reduce its gradient.
    CHECK(comms(l.stages[0].backward, "embedding_grad").size() == 1);
    CHECK(comms(l.stages[3].backward, "embedding_grad").size() == 1);
    // Megatron-LM all-reduces them in finalize_model_grads, after the schedule: each waits for every
    // compute task of its stage's backward (the last stage produces the LM head's gradient first).
    for (const size_t s : {size_t{0}, size_t{3}}) {
        const std::vector<Task>& bw = l.stages[s].backward;
        const Task* e = comms(bw, "embedding_grad").front();
        for (size_t j = 0; j < bw.size(); ++j)
            if (bw[j].op) {
                INFO("stage " << s << ": " << bw[j].name);
                CHECK(std::find(e->deps.begin(), e->deps.end(), j) != e->deps.end());
            }
    }
    CHECK(l.group(l.rank_of(RankCoord{0, 0, 3}), GroupAxis::embedding) == std::vector<int64_t>{0, 3});
    ParallelPlan gp = make_plan(1, 1, 4, 0, 8);
    gp.schedule = PipelineSchedule::gpipe;
    CHECK(lower_parallel(gpt2(8, 32), gp).memory[0].inflight_microbatches == 8);
    CHECK(total_flops(l) ==
          Approx(lower_training(gpt2(8, 32), TrainingOptions{}).totals().flops).epsilon(1e-12));
}

TEST_CASE("ZeRO model states per GPU: 7.5 B parameters on 64 GPUs (ZeRO paper, Figure 1)", "[parallel]") {
    const StateBytes sb = state_bytes_per_param(DType::fp16, "adam");
    CHECK(sb.weights == 2);
    CHECK(sb.gradients == 2);
    CHECK(sb.optimizer == 12);
    const double psi = 7.5e9, nd = 64;
    CHECK((sb.weights + sb.gradients + sb.optimizer) * psi == 120e9);  // baseline 120 GB
    CHECK((sb.weights + sb.gradients) * psi + sb.optimizer * psi / nd == Approx(31.4e9).epsilon(0.002));
    CHECK(sb.weights * psi + (sb.gradients + sb.optimizer) * psi / nd == Approx(16.6e9).epsilon(0.003));
    CHECK((sb.weights + sb.gradients + sb.optimizer) * psi / nd == Approx(1.9e9).epsilon(0.02));
    // Through the lowering: a 7.57 B-parameter MLP on 64 data-parallel ranks, fp16.
    ZooOptions o;
    o.batch = 64;
    o.hidden = 86600;
    o.dtype = DType::fp16;
    const Model m = zoo_build("mlp3", o);
    const double params = static_cast<double>(m.totals().params);
    const double want[4] = {16 * params, 4 * params + 12 * params / 64, 2 * params + 14 * params / 64,
                            16 * params / 64};
    for (int zero = 0; zero <= 3; ++zero) {
        const ParallelLowering low = lower_parallel(m, make_plan(64, 1, 1, zero));
        const StageMemory& mem = low.memory[0];
        CHECK(mem.weights_bytes + mem.gradients_bytes + mem.optimizer_state_bytes == Approx(want[zero]));
    }
    // ZeRO-3 gathers every layer's parameters before its forward and again before its backward.
    const ParallelLowering z3 = lower_parallel(m, make_plan(64, 1, 1, 3));
    double gathered = 0;
    for (const Task* t : comms(z3.stages[0].forward, "zero_gather"))
        gathered += static_cast<double>(t->comm->bytes);
    CHECK(gathered == 2 * params);
    CHECK(comms(z3.stages[0].backward, "zero_gather").size() ==
          comms(z3.stages[0].forward, "zero_gather").size());
}

TEST_CASE("a data-parallel plan keeps an embedding bag's optimizer state in its table's type", "[parallel]") {
    // One rule for one device and a plan: DLRM in bf16 under plain data parallelism (no ZeRO) holds the
    // optimizer state training_memory counts on one device: the MLPs an FP32 master copy and FP32 Adam
    // moments (12 B a parameter), the embedding bags two bf16 moments (4 B a parameter).
    ZooOptions o;
    o.batch = 256;
    o.dtype = DType::bf16;
    const Model m = zoo_build("dlrm-mlperf", o);
    double bag_params = 0;
    for (const Op& op : m.ops())
        if (const EmbeddingAttr* e = op.get<EmbeddingAttr>(); e && e->bag)
            bag_params += static_cast<double>(op.counts().params);
    const double params = static_cast<double>(m.totals().params);
    REQUIRE(bag_params > 0.9 * params);
    const ParallelLowering low = lower_parallel(m, make_plan(2, 1, 1));
    const double want = 12 * (params - bag_params) + 4 * bag_params;
    CHECK(low.memory[0].optimizer_state_bytes == Approx(want).epsilon(1e-12));
    CHECK(training_memory(m, TrainingOptions{"adam", false}).optimizer_state_bytes ==
          Approx(want).epsilon(1e-12));
    CHECK(op_state_bytes_per_param(m.op(*m.find("emb.0")), "momentum").optimizer == 2);
    CHECK(op_state_bytes_per_param(m.op(*m.find("bot_l.0")), "momentum").optimizer == 8);  // master + one
}

TEST_CASE("training a decode step under a plan holds each rank's KV cache", "[parallel]") {
    // GPT-2 small decode, batch 8 after 256 tokens, 2 data-parallel ranks: each holds its 4 sequences'
    // cache, as one device's training_memory counts all 8 (the plan counted none in training).
    ZooOptions o;
    o.batch = 8;
    o.seq = 256;
    o.dtype = DType::fp16;
    const Model m = zoo_build("gpt2-small-decode", o);
    REQUIRE(m.kv_cache_bytes() > 0);
    const ParallelLowering low = lower_parallel(m, make_plan(2, 1, 1));
    CHECK(low.memory[0].kv_cache_bytes == Approx(m.kv_cache_bytes() / 2).epsilon(1e-12));
}

TEST_CASE("expert parallelism: all-to-all dispatch and combine around each MoE layer", "[parallel]") {
    ZooOptions o;
    o.batch = 4;
    o.seq = 16;
    o.dtype = DType::bf16;
    const Model m = zoo_build("mixtral-8x7b-prefill", o);
    ParallelPlan plan = make_plan(4, 1, 1);
    plan.expert = 4;
    const ParallelLowering l = lower_parallel(m, plan);
    const StageProgram& p = l.stages[0];
    // Each rank holds 8 / 4 = 2 experts; each expert gets the tokens of 4 ranks: 4 x 16 x 2 / 8 = 16.
    int dispatch = 0;
    for (const Task& t : p.forward)
        if (t.op && t.op->kind == "moe_dispatch") {
            ++dispatch;
            CHECK(t.op->output() == Shape{1, 16, 4096});
        }
    CHECK(dispatch == 2 * 32);
    // Per layer, forward and backward: dispatch and combine, each rank's send buffer b·s·top_k·d·2 bytes.
    for (const char* purpose : {"ep_dispatch", "ep_combine"}) {
        const auto a = comms(p.forward, purpose);
        CHECK(a.size() == 32);
        for (const Task* t : a) {
            CHECK(t->comm->collective == CollectiveKind::all_to_all);
            CHECK(t->comm->bytes == 1 * 16 * 2 * 4096 * 2);
        }
    }
    CHECK(comms(p.backward, "ep_dispatch_grad").size() == 32);
    CHECK(comms(p.backward, "ep_combine_grad").size() == 32);
    CHECK(l.group(3, GroupAxis::expert) == std::vector<int64_t>{0, 1, 2, 3});
    CHECK(l.group(3, GroupAxis::expert_data) == std::vector<int64_t>{3});
    // Expert gradients sync over the expert-data group (here of one rank: none); the rest over all 4.
    CHECK(comms(p.backward, "dp_bucket").size() > 0);
    for (const Task* t : comms(p.backward, "dp_bucket")) CHECK(t->comm->axis == GroupAxis::data);
    // A rank stores the shared weights and a quarter of the experts.
    int64_t expert_params = 0;
    for (const Op& op : m.ops())
        if (op.name.find(".experts.") != std::string::npos) expert_params += op.counts().params;
    CHECK(l.memory[0].params == m.totals().params - expert_params + expert_params / 4);
    // Full recomputation re-runs each layer's two all-to-alls in backward, before the gradients'.
    plan.recompute = Recompute::full;
    const ParallelLowering r = lower_parallel(m, plan);
    CHECK(comms(r.stages[0].backward, "ep_dispatch_recompute").size() == 32);
    CHECK(comms(r.stages[0].backward, "ep_combine_recompute").size() == 32);
    CHECK(comms(r.stages[0].backward, "ep_dispatch_grad").size() == 32);
}

TEST_CASE("ZeRO-3 with expert parallelism gathers the experts over their expert-data group only",
          "[parallel]") {
    // Mixtral on D = 8 with E = 4: each rank keeps 2 experts, sharded over the D / E = 2 ranks that hold
    // the same ones (the memory account's divisor); the attention and router weights over all 8. Gathering
    // both over the 8 (as it did) moved each expert's 7/8 instead of 1/2 per layer and pass.
    ZooOptions o;
    o.batch = 8;
    o.seq = 16;
    o.dtype = DType::bf16;
    const Model m = zoo_build("mixtral-8x7b-prefill", o);
    ParallelPlan plan = make_plan(8, 1, 1, 3);
    plan.expert = 4;
    const ParallelLowering l = lower_parallel(m, plan);
    double dense = 0, expert = 0;
    for (const Op& op : m.ops())
        if (op.name.starts_with("layers.0."))
            (op.name.find(".experts.") != std::string::npos ? expert : dense) += op.weight_storage_bytes();
    const auto gathers = comms(l.stages[0].forward, "zero_gather");
    REQUIRE(gathers.size() == 2 * 32);
    for (const Task* t : gathers) {
        INFO(t->name);
        if (t->comm->axis == GroupAxis::expert_data)
            CHECK(t->comm->bytes == std::llround(expert / 4));  // the rank's 2 of 8 experts
        else if (t->name != "zero3.gather.layer0" &&
                 t->name != "zero3.gather.layer31")  // + the embedding, head
            CHECK((t->comm->axis == GroupAxis::data && t->comm->bytes == std::llround(dense)));
        else
            CHECK(t->comm->axis == GroupAxis::data);
    }
    CHECK(l.group(0, GroupAxis::expert_data).size() == 2);
    // With D = E every rank holds its experts whole: only the dense weights are gathered.
    plan.data = 4;
    const ParallelLowering whole = lower_parallel(m, plan);
    REQUIRE(comms(whole.stages[0].forward, "zero_gather").size() == 32);
    for (const Task* t : comms(whole.stages[0].forward, "zero_gather")) {
        CHECK(t->comm->axis == GroupAxis::data);
        if (t->name == "zero3.gather.layer5") CHECK(t->comm->bytes == std::llround(dense));
    }
    // With E = 1 the experts are sharded over the data group like the rest: one gather of the whole layer.
    plan.data = 8;
    plan.expert = 1;
    const ParallelLowering one = lower_parallel(m, plan);
    REQUIRE(comms(one.stages[0].forward, "zero_gather").size() == 32);
    for (const Task* t : comms(one.stages[0].forward, "zero_gather"))
        if (t->name == "zero3.gather.layer5") CHECK(t->comm->bytes == std::llround(dense + expert));
}

TEST_CASE("plans that cannot run are located errors", "[parallel]") {
    const Model m = gpt2(8, 32);
    auto check = [&](ParallelPlan p, int64_t devices, const std::string& want) {
        p.loc = cfg::SourceLoc{"sweep.yaml", 4, 3};
        const std::string e = error_of([&] { check_parallel_plan(m, p, devices); });
        CHECK_THAT(e, Catch::Contains("sweep.yaml:4:3") && Catch::Contains(want));
    };
    check(make_plan(2, 2, 1), 8,
          "parallel: data x tensor x pipeline = 2 x 2 x 1 = 4 ranks, but the system has 8");
    // The mode's own refusal comes first: an inference plan with ZeRO on 8 devices was told its rank count.
    {
        ParallelOptions inference;
        inference.training = false;
        const std::string e = error_of([&] { check_parallel_plan(m, make_plan(1, 1, 1, 2), 8, inference); });
        CHECK_THAT(e, Catch::Contains("ZeRO shards training state; this run is inference"));
    }
    check(make_plan(1, 5, 1), 5,
          "parallel.tensor: tensor = 5 does not divide the 768 output features of column-parallel op "
          "'h.0.attn.q_proj'");
    check(make_plan(1, 8, 1), 8, "parallel.tensor: tensor = 8 does not divide the 12 heads");
    check(make_plan(1, 1, 13), 13,
          "parallel.pipeline: pipeline = 13 stages, but model 'gpt2-small-prefill' has 12");
    check(make_plan(1, 1, 1, 1), 1,
          "parallel.zero: ZeRO stage 1 shards over data-parallel ranks, but data = 1");
    check(make_plan(1, 1, 1, 0, 3), 1,
          "parallel.microbatches: the batch 8 is not a multiple of data x microbatches");
    check(make_plan(1, 1, 1, 4), 1, "parallel.zero: must be 0, 1, 2 or 3");
    ParallelPlan e = make_plan(2, 1, 1);
    e.expert = 2;
    check(e, 2,
          "parallel.expert: expert = 2, but model 'gpt2-small-prefill' has no mixture-of-experts layer");
    ParallelPlan s = make_plan(1, 1, 1);
    s.sequence_parallel = true;
    check(s, 1, "parallel.sequence_parallel");
    // Tensor parallelism on a CNN splits nothing: every rank would run the whole model (8x the energy).
    ZooOptions cnn_options;
    cnn_options.batch = 8;
    const Model cnn = zoo_build("resnet50", cnn_options);
    ParallelPlan t = make_plan(1, 8, 1);
    t.loc = cfg::SourceLoc{"sweep.yaml", 4, 3};
    CHECK_THAT(
        error_of([&] { check_parallel_plan(cnn, t, 8); }),
        Catch::Contains("sweep.yaml:4:3") &&
            Catch::Contains("parallel.tensor: tensor = 8, but model 'resnet50' has no layer that tensor "
                            "parallelism splits"));
    // A plan that does not fit: named rank, what it holds, by how much it is over.
    const ParallelLowering l = lower_parallel(m, make_plan(1, 1, 2));
    const std::string over = error_of([&] { check_parallel_memory(l, 1e9, "tiny"); });
    CHECK_THAT(over, Catch::Contains("rank 0 (pipeline stage 0 of 2, layers 0-5) needs") &&
                         Catch::Contains("its device 'tiny' has 1.0 GB of main memory") &&
                         Catch::Contains("GB over"));
    CHECK(error_of([&] { check_parallel_memory(l, 1e12, "big"); }) == "no error");
}

TEST_CASE("decode on a pipeline keeps the KV cache of its layers for all of the rank's sequences",
          "[parallel]") {
    ZooOptions o;
    o.batch = 8;
    o.seq = 1000;
    o.dtype = DType::fp16;
    const Model m = zoo_build("llama3-8b-decode", o);
    const ParallelLowering l = lower_parallel(m, make_plan(2, 2, 2, 0, 2), inference());
    // 4 sequences per data rank, 16 layers per stage, 8 / 2 KV heads of 128 per tensor rank.
    CHECK(l.memory[0].kv_cache_bytes == 2.0 * 4 * 1000 * 16 * 4 * 128 * 2);
    CHECK(l.memory[0].gradients_bytes == 0);
    for (const StageProgram& p : l.stages) {
        CHECK(p.backward.empty());
        CHECK(p.step.empty());
        CHECK(comms(p.forward, "pp_activation").size() == 1);  // stage 0 sends, stage 1 receives
        CHECK(comms(p.forward, "tp_forward").size() == 2 * 16 + (p.stage == 0 ? 1 : 0));
    }
    CHECK(total_flops(l) ==
          Approx(m.totals().flops + l.tp_duplicated_flops + l.vocab_padding_flops).epsilon(1e-9));
}

// Korthikanti et al. 2022 (arXiv:2205.05198), section 4.1, count a GPT layer's stored activations as
// s·b·h·(34 + 5·a·s/h) bytes in 16-bit without recomputation, s·b·h·(10 + 24/t + 5·a·s/(h·t)) with
// tensor parallelism. The lowering stores what its backward ops read: no dropout masks (the 2 of the 10,
// 1 byte each for the two residual dropouts... and attention's), and FlashAttention's backward keeps q, k
// and v instead of the s x s scores (the 5·a·s/h term). The rest is their derivation term for term:
// layer-norm inputs 4, the QKV and MLP inputs 4 (their 2 + 2), q k v 6/t, the attention output 2/t for
// the projection, the MLP's 8/t + 8/t: s·b·h·(8 + 24/t).
TEST_CASE("a GPT layer stores s·b·h·(8 + 24/t) bytes: Korthikanti's count without dropout and scores",
          "[parallel]") {
    const int64_t b = 2, s = 64, h = 768;
    for (int64_t t : {1, 2, 4}) {
        // One layer per stage: stage 5 holds layer 5 alone (and receives its input from stage 4).
        const Model m = gpt2(b, s);
        const ParallelPlan plan = make_plan(1, t, 12);
        const ParallelLowering l = lower_parallel(m, plan);
        const double sbh = static_cast<double>(s * b * h);
        CHECK(l.memory[5].activations_per_microbatch_bytes == sbh * (8 + 24.0 / static_cast<double>(t)));
    }
}

// Megatron-LM pads the vocabulary to a multiple of 128 x T (_vocab_size_with_padding;
// --make-vocab-size-divisible-by 128): GPT-2's 50,257 becomes 50,688 at T = 4, 51,200 at T = 8.
TEST_CASE("a vocabulary T does not divide is padded to 128·T and split; the padding is stated apart",
          "[parallel]") {
    CHECK(padded_vocabulary(50257, 8) == 51200);
    CHECK(padded_vocabulary(50257, 4) == 50688);
    CHECK(padded_vocabulary(50257, 1) == 50257);
    CHECK(padded_vocabulary(128256, 8) == 128256);  // T divides it: split as is
    const int64_t b = 2, s = 32, h = 768, V = 50257, Vp = 50688, T = 4;
    const Model m = gpt2(b, s);
    const ParallelLowering l = lower_parallel(m, make_plan(1, T, 1));
    CHECK(l.vocab == V);
    CHECK(l.padded_vocab == Vp);
    for (const Task& t : l.stages[0].forward) {
        if (t.name == "lm_head") CHECK(t.op->output() == Shape{b, s, Vp / T});
        if (t.name == "wte") CHECK(t.op->get<EmbeddingAttr>()->rows == Vp / T);
    }
    // The padding rows' work, by hand: the LM head's forward, input gradient and weight gradient
    // (2·b·s·h FLOPs per row each) and the tied table's dense Adam update (12 per element, plus 1 to sum
    // the LM head's gradient into the embedding's): (V' - V)·h·(6·b·s + 13), over all ranks.
    const double rows = static_cast<double>(Vp - V);
    CHECK(l.vocab_padding_flops == Approx(rows * h * (6.0 * b * s + 13)).epsilon(1e-12));
    CHECK(total_flops(l) == Approx(lower_training(m, TrainingOptions{}).totals().flops +
                                   l.tp_duplicated_flops + l.vocab_padding_flops)
                                .epsilon(1e-12));
    // The tied table: each rank holds V'/T rows, (V' - V)/T of them padding, 16 bytes each (fp16 Adam).
    CHECK(l.memory[0].vocab_padding_params == (Vp - V) * h / T);
    CHECK(l.memory[0].vocab_padding_bytes == Approx(16.0 * (Vp - V) * h / T));
    // The model FLOPs (MFU's numerator) are the unpadded, unsplit model's.
    CHECK(l.model_flops == lower_training(m, TrainingOptions{}).totals().flops);
    // The last stage no longer runs the whole LM head: it runs V'/T of it. Its FLOPs beyond those of
    // stage 1 (three layers each) are the LM head's forward and two backward GEMMs on V'/T rows and the
    // final norm (under 20 FLOPs per element forward and backward, replicated).
    const Model m8 = gpt2(8, 32);
    const ParallelLowering p = lower_parallel(m8, make_plan(1, T, 4, 0, 8));
    const double head = 3.0 * m8.op(*m8.find("lm_head")).counts().flops * static_cast<double>(Vp) / V / T;
    const double extra =
        p.rank_flops(p.rank_of(RankCoord{0, 0, 3})) - p.rank_flops(p.rank_of(RankCoord{0, 0, 1}));
    CHECK(extra >= head);
    CHECK(extra <= head + 20.0 * 8 * 32 * h);
    CHECK(total_flops(p) == Approx(lower_training(gpt2(8, 32), TrainingOptions{}).totals().flops +
                                   p.tp_duplicated_flops + p.vocab_padding_flops)
                                .epsilon(1e-9));
    // The Llama vocabulary needs no padding.
    ZooOptions o;
    o.batch = 2;
    o.seq = 16;
    const ParallelLowering q = lower_parallel(zoo_build("llama3-8b-prefill", o), make_plan(1, 8, 1));
    CHECK(q.padded_vocab == 128256);
    CHECK(q.vocab_padding_flops == 0);
    CHECK(q.memory[0].vocab_padding_params == 0);
}

// Megatron-LM's full recomputation (--recompute-granularity full, uniform, 1 layer): each layer keeps its
// input and re-runs its whole forward, collectives included, before its backward.
TEST_CASE("full recomputation re-runs every layer's forward: compute rises by it, activations drop",
          "[parallel]") {
    const Model m = gpt2(4, 64);
    ParallelPlan none = make_plan(1, 2, 2, 0, 4);
    ParallelPlan full = none;
    full.recompute = Recompute::full;
    const ParallelLowering a = lower_parallel(m, none);
    const ParallelLowering r = lower_parallel(m, full);
    CHECK(a.recompute_flops == 0);
    // The layers' forward FLOPs, from the unsplit model: the ops named h.<i>.* (all but the embeddings,
    // the final norm and the LM head), with the replicated ones on both tensor ranks.
    double layers = 0;
    for (const Op& op : m.ops())
        if (op.name.rfind("h.", 0) == 0) layers += op.counts().flops;
    CHECK(r.recompute_flops >= layers);
    CHECK(r.recompute_flops < 1.05 * layers);  // + the duplicated norms and residual adds
    CHECK(total_flops(r) == Approx(total_flops(a) + r.recompute_flops).epsilon(1e-12));
    CHECK(r.tp_duplicated_flops == Approx(a.tp_duplicated_flops).epsilon(1e-12));
    CHECK(r.model_flops == a.model_flops);
    // Each layer re-runs its two forward all-reduces.
    for (const StageProgram& p : r.stages) {
        CHECK(comms(p.backward, "tp_forward_recompute").size() == 2 * static_cast<size_t>(p.layers));
        CHECK(comms(p.backward, "tp_backward_grad").size() ==
              comms(a.stages[static_cast<size_t>(p.stage)].backward, "tp_backward_grad").size());
    }
    // Stage 0 (layers 0-5): each layer keeps its input b·s·h (fp16) instead of ~s·b·h·(8 + 24/t).
    for (size_t s = 0; s < 2; ++s) {
        CHECK(r.memory[s].activations_per_microbatch_bytes <
              a.memory[s].activations_per_microbatch_bytes / 4);
        CHECK(r.memory[s].recompute_working_bytes > 0);
        CHECK(r.memory[s].total_bytes < a.memory[s].total_bytes);
    }
    // The working set: one layer's s·b·h·(8 + 24/t) bytes (the Korthikanti test below) less its kept input.
    const double layer = 1.0 * 64 * 768 * (8 + 24.0 / 2);  // micro-batch b = 1
    CHECK(r.memory[0].recompute_working_bytes <= layer);
    CHECK(r.memory[0].recompute_working_bytes >= 0.75 * layer);
    // ZeRO-3: a recomputed layer gathers its parameters before its recompute, once for the pass.
    ParallelPlan z3 = make_plan(2, 1, 1, 3, 2);
    z3.recompute = Recompute::full;
    const ParallelLowering z = lower_parallel(m, z3);
    CHECK(comms(z.stages[0].backward, "zero_gather").size() ==
          comms(z.stages[0].forward, "zero_gather").size());
    for (const Task& t : z.stages[0].backward)
        if (t.name == "h.11.ln_1.recompute") {
            REQUIRE(t.deps.size() >= 1);
            bool gathered = false;
            for (size_t d : t.deps)
                gathered = gathered || (z.stages[0].backward[d].comm &&
                                        z.stages[0].backward[d].comm->purpose == "zero_gather");
            CHECK(gathered);
        }
    // Selective recomputation (the attention core) is what FlashAttention's backward already does here.
    ParallelPlan sel = none;
    sel.recompute = Recompute::selective;
    const ParallelLowering q = lower_parallel(m, sel);
    CHECK(total_flops(q) == total_flops(a));
    CHECK(q.memory[0].total_bytes == a.memory[0].total_bytes);
    // Inference, or with checkpointing's own segments: a located error.
    CHECK_THAT(error_of([&] { lower_parallel(m, full, inference()); }),
               Catch::Contains("parallel.recompute") && Catch::Contains("inference"));
    ParallelOptions ck;
    ck.training_options.checkpointing = true;
    CHECK_THAT(error_of([&] { lower_parallel(m, full, ck); }), Catch::Contains("parallel.recompute"));
}
