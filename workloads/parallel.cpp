#include "workloads/parallel.h"

#include <fmt/format.h>

#include <algorithm>
#include <functional>
#include <map>
#include <set>

#include "sim/config/limits.h"
#include "sim/core/check.h"
#include "workloads/training.h"

namespace mlsim::wl {

namespace {

using arch::net::CollectiveKind;

[[noreturn]] void plan_fail(const ParallelPlan& p, std::string_view field, const std::string& message) {
    if (auto k = p.keys.find(std::string(field)); k != p.keys.end()) cfg::fail(p.loc, k->second, message);
    cfg::fail(p.loc, field.empty() ? p.key : p.key + "." + std::string(field), message);
}

// The name up to and including its first all-digit dotted component ("layers.3."), or "".
std::string layer_key(const std::string& name) {
    size_t start = 0;
    while (start <= name.size()) {
        const size_t dot = name.find('.', start);
        const size_t end = dot == std::string::npos ? name.size() : dot;
        bool digits = end > start;
        for (size_t i = start; i < end && digits; ++i) digits = name[i] >= '0' && name[i] <= '9';
        if (digits) return name.substr(0, end) + ".";
        if (dot == std::string::npos) break;
        start = dot + 1;
    }
    return "";
}

// Layer (unit) index of every op, in topological order (see the contract).
std::vector<int64_t> layer_units(const Model& m, int64_t& count) {
    const size_t n = m.ops().size();
    std::vector<int64_t> unit(n, -1);
    std::vector<size_t> pending;
    std::string current;
    int64_t u = -1;
    for (size_t i = 0; i < n; ++i) {
        const std::string key = layer_key(m.op(i).name);
        if (key.empty()) {
            pending.push_back(i);
            continue;
        }
        if (u < 0 || key != current) {
            ++u;
            current = key;
        }
        unit[i] = u;
        for (size_t p : pending) unit[p] = u;
        pending.clear();
    }
    if (u < 0) u = 0;
    for (size_t p : pending) unit[p] = u;
    count = u + 1;
    return unit;
}

enum class Role { replicated, column, sharded, row, vocab };

bool passthrough(const Op& op) {
    if (op.get<AttentionAttr>()) return true;
    const EltwiseAttr* e = op.get<EltwiseAttr>();
    return e && e->fn != Eltwise::add;
}

struct TpGroup {
    size_t row = 0;
    std::vector<size_t> columns;  // the column linears, in topological order
    std::vector<size_t> between;
    std::optional<size_t> combine;  // the all-reduce moves past this MoE combine
    // Vocabulary-parallel groups (row = the token embedding, columns = {the LM head}): the vocabulary
    // and the padded size split over the T ranks (see padded_vocabulary); 0 for Megatron pairs.
    int64_t vocab = 0, padded_vocab = 0;
};

}  // namespace

int64_t padded_vocabulary(int64_t vocab, int64_t tensor) {
    if (tensor <= 1 || vocab % tensor == 0) return vocab;
    const int64_t multiple = k_vocab_multiple * tensor;
    return (vocab + multiple - 1) / multiple * multiple;
}

namespace {

// Megatron pairs, greedily in topological order (see the contract).
std::vector<TpGroup> tp_groups(const Model& m, std::vector<Role>& role, int64_t T) {
    const size_t n = m.ops().size();
    role.assign(n, Role::replicated);
    std::vector<TpGroup> groups;
    for (size_t r = 0; r < n; ++r) {
        if (!m.op(r).get<LinearAttr>() || role[r] != Role::replicated) continue;
        std::set<size_t> leaves, between, seen;
        std::vector<size_t> stack;
        bool ok = true;
        const std::optional<TensorRef> p0 = m.producer(r, 0);
        if (!p0) continue;
        stack.push_back(p0->op);
        while (!stack.empty() && ok) {
            const size_t i = stack.back();
            stack.pop_back();
            if (!seen.insert(i).second) continue;
            const Op& op = m.op(i);
            if (op.get<LinearAttr>()) {
                ok = role[i] == Role::replicated;
                leaves.insert(i);
            } else if (passthrough(op)) {
                between.insert(i);
                for (size_t j = 0; j < op.inputs.size() && ok; ++j) {
                    const std::optional<TensorRef> p = m.producer(i, static_cast<int>(j));
                    if (!p)
                        ok = false;
                    else
                        stack.push_back(p->op);
                }
            } else {
                ok = false;
            }
        }
        if (!ok || leaves.empty()) continue;
        auto inside = [&](size_t c) { return c == r || between.count(c) > 0; };
        for (size_t i : seen)
            for (const Edge& e : m.out_edges(i)) ok = ok && inside(e.to);
        for (size_t i : seen) ok = ok && m.op(i).outputs.size() == 1;
        if (!ok) continue;
        TpGroup g;
        g.row = r;
        g.columns.assign(leaves.begin(), leaves.end());
        g.between.assign(between.begin(), between.end());
        role[r] = Role::row;
        for (size_t i : leaves) role[i] = Role::column;
        for (size_t i : between) role[i] = Role::sharded;
        const std::vector<Edge> outs = m.out_edges(r);
        if (!outs.empty() && std::all_of(outs.begin(), outs.end(), [&](const Edge& e) {
                const MoeAttr* a = m.op(e.to).get<MoeAttr>();
                return a && a->combine;
            }))
            g.combine = outs.front().to;
        groups.push_back(std::move(g));
    }
    // Vocabulary parallelism (Megatron-LM's VocabParallelEmbedding and column-parallel output layer): a
    // token embedding and the model-output linear over the same vocabulary (tied to it, or as wide) are
    // split by rows when T divides the vocabulary (Megatron pads it instead; a vocabulary T does not
    // divide stays replicated). The embedding's partial lookups are all-reduced (a "row" group of its
    // own); the logits stay split (the vocabulary-parallel loss's reductions of b·s values are not
    // modelled).
    for (size_t h = 0; h < n; ++h) {
        const LinearAttr* la = m.op(h).get<LinearAttr>();
        if (!la || role[h] != Role::replicated || !m.out_edges(h).empty()) continue;
        for (size_t e = 0; e < n; ++e) {
            const EmbeddingAttr* ea = m.op(e).get<EmbeddingAttr>();
            if (!ea || ea->bag || role[e] != Role::replicated) continue;
            if (m.op(h).tied_to != m.op(e).name && la->out_features != ea->rows) continue;
            role[e] = Role::vocab;
            role[h] = Role::column;
            TpGroup g;
            g.row = e;
            g.columns = {h};
            g.vocab = ea->rows;
            g.padded_vocab = padded_vocabulary(ea->rows, T);
            groups.push_back(std::move(g));
            break;
        }
    }
    return groups;
}

// The ops of each expert (dispatch e and everything downstream of it before the combine).
std::map<size_t, std::pair<size_t, int64_t>> expert_ops(const Model& m) {  // op -> (combine, expert)
    std::map<size_t, std::pair<size_t, int64_t>> out;
    for (size_t i = 0; i < m.ops().size(); ++i) {
        const MoeAttr* a = m.op(i).get<MoeAttr>();
        if (!a || a->combine) continue;
        std::vector<size_t> stack{i};
        std::vector<size_t> members;
        std::optional<size_t> combine;
        std::set<size_t> seen;
        while (!stack.empty()) {
            const size_t k = stack.back();
            stack.pop_back();
            if (!seen.insert(k).second) continue;
            const MoeAttr* b = m.op(k).get<MoeAttr>();
            if (b && b->combine) {
                combine = k;
                continue;
            }
            members.push_back(k);
            for (const Edge& e : m.out_edges(k)) stack.push_back(e.to);
        }
        if (!combine) continue;
        for (size_t k : members) out[k] = {*combine, a->expert};
    }
    return out;
}

double tensor_bytes(const Shape& s, DType t) { return static_cast<double>(numel(s)) * dtype_bytes(t); }

int64_t to_bytes(double b) { return static_cast<int64_t>(std::llround(b)); }

// Placeholders the lowering adds to the rank's model, and what they become in each pass.
struct Placeholder {
    std::optional<CollectiveKind> fwd, bwd;
    GroupAxis axis = GroupAxis::tensor;
    std::string purpose;
};

struct Builder {
    const Model& m;
    const ParallelPlan& plan;
    const ParallelOptions& opts;
    int64_t batch = 0, b = 0;
    std::vector<Role> role;
    std::vector<TpGroup> groups;
    std::map<size_t, std::pair<size_t, int64_t>> experts;
    std::vector<int64_t> unit;
    int64_t units = 0;
    std::vector<int64_t> stage_of_unit;

    // The rank model and its side tables, by op name.
    std::map<std::string, Placeholder> placeholders;
    std::map<std::string, int64_t> stage_of;    // forward ops (and placeholders) -> stage
    std::map<std::string, int64_t> unit_of;     // forward ops -> layer
    std::map<std::string, bool> is_expert;      // forward ops inside an expert
    std::map<std::string, bool> replicated_op;  // forward ops replicated over the tensor group
    std::set<std::string> row_bias;  // row-parallel linears with a bias (added whole on every rank)
};

}  // namespace

std::string to_string(GroupAxis axis) {
    switch (axis) {
        case GroupAxis::tensor:
            return "tensor";
        case GroupAxis::data:
            return "data";
        case GroupAxis::expert:
            return "expert";
        case GroupAxis::expert_data:
            return "expert_data";
        case GroupAxis::pipeline_next:
            return "pipeline_next";
        case GroupAxis::pipeline_prev:
            return "pipeline_prev";
        case GroupAxis::embedding:
            return "embedding";
    }
    return "?";
}

double bubble_fraction(int64_t stages, int64_t microbatches) {
    return static_cast<double>(stages - 1) / static_cast<double>(microbatches + stages - 1);
}

std::vector<ScheduleItem> pipeline_schedule(PipelineSchedule kind, int64_t stage, int64_t stages,
                                            int64_t microbatches, bool training) {
    std::vector<ScheduleItem> s;
    const int64_t m = microbatches;
    if (!training || kind == PipelineSchedule::gpipe) {
        for (int64_t i = 0; i < m; ++i) s.push_back({i, Pass::forward});
        if (training)
            for (int64_t i = m; i-- > 0;) s.push_back({i, Pass::backward});
        return s;
    }
    const int64_t warm = std::min(stages - stage - 1, m);
    for (int64_t i = 0; i < warm; ++i) s.push_back({i, Pass::forward});
    for (int64_t i = 0; i < m - warm; ++i) {
        s.push_back({warm + i, Pass::forward});
        s.push_back({i, Pass::backward});
    }
    for (int64_t i = m - warm; i < m; ++i) s.push_back({i, Pass::backward});
    return s;
}

RankCoord ParallelLowering::coord(int64_t rank) const {
    MLSIM_CHECK(rank >= 0 && rank < ranks(), fmt::format("rank {} out of range", rank));
    RankCoord c;
    c.tensor = rank % plan.tensor;
    c.data = (rank / plan.tensor) % plan.data;
    c.pipeline = rank / (plan.tensor * plan.data);
    return c;
}

int64_t ParallelLowering::rank_of(const RankCoord& c) const {
    return c.tensor + plan.tensor * (c.data + plan.data * c.pipeline);
}

std::vector<int64_t> ParallelLowering::group(int64_t rank, GroupAxis axis) const {
    const RankCoord c = coord(rank);
    std::vector<int64_t> g;
    RankCoord k = c;
    switch (axis) {
        case GroupAxis::tensor:
            for (k.tensor = 0; k.tensor < plan.tensor; ++k.tensor) g.push_back(rank_of(k));
            break;
        case GroupAxis::data:
            for (k.data = 0; k.data < plan.data; ++k.data) g.push_back(rank_of(k));
            break;
        case GroupAxis::expert: {
            const int64_t base = c.data / plan.expert * plan.expert;
            for (int64_t e = 0; e < plan.expert; ++e) {
                k.data = base + e;
                g.push_back(rank_of(k));
            }
            break;
        }
        case GroupAxis::expert_data:
            for (k.data = c.data % plan.expert; k.data < plan.data; k.data += plan.expert)
                g.push_back(rank_of(k));
            break;
        case GroupAxis::pipeline_next:
            if (c.pipeline + 1 < plan.pipeline) {
                k.pipeline = c.pipeline + 1;
                g.push_back(rank_of(k));
            }
            break;
        case GroupAxis::pipeline_prev:
            if (c.pipeline > 0) {
                k.pipeline = c.pipeline - 1;
                g.push_back(rank_of(k));
            }
            break;
        case GroupAxis::embedding:
            k.pipeline = 0;
            g.push_back(rank_of(k));
            if (plan.pipeline > 1) {
                k.pipeline = plan.pipeline - 1;
                g.push_back(rank_of(k));
            }
            break;
    }
    return g;
}

double ParallelLowering::rank_flops(int64_t rank) const {
    const StageProgram& p = program(rank);
    double f = 0;
    auto sum = [](const std::vector<Task>& ts) {
        double s = 0;
        for (const Task& t : ts)
            if (t.op) s += t.op->counts().flops;
        return s;
    };
    f += static_cast<double>(plan.microbatches) * (sum(p.forward) + sum(p.backward));
    f += sum(p.step);
    return f;
}

void check_parallel_plan(const Model& m, const ParallelPlan& p, int64_t devices, const ParallelOptions& opts,
                         std::string_view devices_note) {
    auto at_least_1 = [&](int64_t v, std::string_view f) {
        if (v < 1) plan_fail(p, f, fmt::format("must be at least 1, found {}", v));
    };
    at_least_1(p.data, "data");
    at_least_1(p.tensor, "tensor");
    at_least_1(p.pipeline, "pipeline");
    at_least_1(p.expert, "expert");
    at_least_1(p.microbatches, "microbatches");
    if (p.zero < 0 || p.zero > 3) plan_fail(p, "zero", fmt::format("must be 0, 1, 2 or 3, found {}", p.zero));
    for (const int64_t v : {p.data, p.tensor, p.pipeline, p.microbatches})
        if (v > limits::max_parallel_degree) plan_fail(p, "", "each degree must be at most 2^20");
    // What the run's mode rules out, before the device count (on an 8-GPU system `--zero 2` said "1 ranks,
    // but the system has 8" for an inference run).
    if (p.zero > 0 && !opts.training)
        plan_fail(p, "zero", "ZeRO shards training state; this run is inference");
    if (p.recompute != Recompute::none && !opts.training)
        plan_fail(p, "recompute", "activation recomputation applies to training; this run is inference");
    if (p.devices() != devices)
        plan_fail(p, "",
                  fmt::format("data x tensor x pipeline = {} x {} x {} = {} ranks, but the system has {} "
                              "device(s){}",
                              p.data, p.tensor, p.pipeline, p.devices(), devices, devices_note));
    if (p.zero > 0 && p.data < 2)
        plan_fail(
            p, "zero",
            fmt::format("ZeRO stage {} shards over data-parallel ranks, but data = {}", p.zero, p.data));
    if (p.recompute == Recompute::full && opts.training_options.checkpointing)
        plan_fail(p, "recompute",
                  "full recomputation of every layer and checkpointing's sqrt(n) segments are two choices of "
                  "what to recompute: give one");
    if (p.sequence_parallel && p.tensor < 2)
        plan_fail(p, "sequence_parallel",
                  "sequence parallelism splits the tensor-parallel group; tensor = 1");
    if (p.data % p.expert != 0)
        plan_fail(
            p, "expert",
            fmt::format("expert = {} must divide data = {} (expert-parallel groups are carved out of the "
                        "data-parallel ranks)",
                        p.expert, p.data));
    const std::vector<ModelInput> ins = m.inputs();
    MLSIM_CHECK(!ins.empty(), "a model without inputs");
    const int64_t batch = m.op(ins.front().op).inputs.at(static_cast<size_t>(ins.front().slot)).at(0);
    for (const ModelInput& in : ins) {
        const Op& op = m.op(in.op);
        if (op.inputs.at(static_cast<size_t>(in.slot)).at(0) != batch)
            plan_fail(
                p, "data",
                fmt::format("model input {} of op '{}' has shape {}, whose first dimension is not the batch "
                            "{}; it cannot be split over data-parallel ranks and micro-batches",
                            in.slot, op.name, shape_str(op.inputs[static_cast<size_t>(in.slot)]), batch));
    }
    if (batch % (p.data * p.microbatches) != 0)
        plan_fail(p, p.data > 1 ? "data" : "microbatches",
                  fmt::format("the batch {} is not a multiple of data x microbatches = {} x {}", batch,
                              p.data, p.microbatches));
    int64_t units = 0;
    layer_units(m, units);
    if (p.pipeline > units)
        plan_fail(
            p, "pipeline",
            fmt::format("pipeline = {} stages, but model '{}' has {} layer(s)", p.pipeline, m.name(), units));
    bool moe = false;
    for (const Op& op : m.ops()) {
        const MoeAttr* a = op.get<MoeAttr>();
        if (!a) continue;
        moe = true;
        if (a->experts % p.expert != 0)
            plan_fail(p, "expert",
                      fmt::format("expert = {} does not divide the {} experts of op '{}'", p.expert,
                                  a->experts, op.name));
    }
    if (p.expert > 1 && !moe)
        plan_fail(
            p, "expert",
            fmt::format("expert = {}, but model '{}' has no mixture-of-experts layer", p.expert, m.name()));
    if (moe && p.sequence_parallel)
        plan_fail(p, "sequence_parallel",
                  "sequence parallelism with mixture-of-experts layers is not modelled");
    if (p.tensor > 1) {
        std::vector<Role> role;
        const std::vector<TpGroup> groups = tp_groups(m, role, p.tensor);
        // Like expert parallelism on a dense model: a plan whose tensor groups would split nothing (a CNN)
        // would run the whole model on every rank of the group, at T times the energy.
        if (groups.empty())
            plan_fail(p, "tensor",
                      fmt::format("tensor = {}, but model '{}' has no layer that tensor parallelism splits "
                                  "(Megatron-style column- and row-parallel linear layers)",
                                  p.tensor, m.name()));
        std::set<size_t> vocab_heads;  // padded to a multiple of T (padded_vocabulary)
        for (const TpGroup& g : groups)
            if (g.padded_vocab > 0) vocab_heads.insert(g.columns.begin(), g.columns.end());
        for (size_t i = 0; i < m.ops().size(); ++i) {
            const Op& op = m.op(i);
            if (role[i] == Role::column && !vocab_heads.count(i)) {
                const int64_t out = op.get<LinearAttr>()->out_features;
                if (out % p.tensor != 0)
                    plan_fail(
                        p, "tensor",
                        fmt::format("tensor = {} does not divide the {} output features of column-parallel "
                                    "op '{}'",
                                    p.tensor, out, op.name));
            }
            if (const AttentionAttr* a = op.get<AttentionAttr>(); a && role[i] == Role::sharded) {
                if (a->heads % p.tensor != 0 || a->kv_heads % p.tensor != 0)
                    plan_fail(
                        p, "tensor",
                        fmt::format("tensor = {} does not divide the {} heads and {} KV heads of op '{}'",
                                    p.tensor, a->heads, a->kv_heads, op.name));
            }
        }
        if (p.sequence_parallel) {
            for (const ModelInput& in : ins) {
                const Shape& s = m.op(in.op).inputs[static_cast<size_t>(in.slot)];
                if (s.size() < 2 || s[1] % p.tensor != 0)
                    plan_fail(
                        p, "sequence_parallel",
                        fmt::format("model input {} of op '{}' has shape {}: its sequence is not divisible "
                                    "by tensor = {}",
                                    in.slot, m.op(in.op).name, shape_str(s), p.tensor));
            }
        }
    }
}

namespace {

// Builds the rank model: batch b, this rank's tensor and expert shards, placeholders for tensor-parallel
// communication. Records stages, layers and roles by op name.
Model build_rank_model(Builder& B) {
    const Model& m = B.m;
    const ParallelPlan& p = B.plan;
    const int64_t T = p.tensor;
    const bool sp = p.sequence_parallel;
    ModelBuilder mb(m.name() + ".rank");
    const size_t n = m.ops().size();
    std::vector<std::optional<size_t>> id(n);
    std::vector<bool> seq(n, false);  // output split along the sequence (sequence parallelism)
    std::map<size_t, const TpGroup*> group_of_row, group_of_combine;
    std::map<size_t, const TpGroup*> group_of_column;
    for (const TpGroup& g : B.groups) {
        group_of_row[g.row] = &g;
        if (g.combine) group_of_combine[*g.combine] = &g;
        for (size_t c : g.columns) group_of_column[c] = &g;
    }
    // The f placeholder of each group (keyed by its input tensor), shared by the group's columns.
    std::map<std::pair<size_t, int>, TensorRef> f_of;
    std::map<std::pair<size_t, int>, TensorRef> split_of;  // sequence-split copies of full tensors
    std::map<size_t, TensorRef> out_of;                    // the tensor consumers of op i read

    auto shape_of = [&](const TensorRef& t) { return mb.op(t.op).outputs.at(static_cast<size_t>(t.slot)); };
    // `copies` > 1: the other tensor-parallel ranks' shards join as inputs of the rank model (an
    // all-gather's concat), so no gradient flows back to them.
    // `replicated`: the gradient sums at its output (the f operator's) run whole on every rank.
    auto add_placeholder = [&](const std::string& name, OpAttr attr, std::vector<TensorRef> srcs,
                               Placeholder ph, int64_t stage, int64_t copies = 1, bool replicated = false) {
        std::vector<Shape> shapes;
        std::vector<std::optional<TensorRef>> s;
        for (const TensorRef& t : srcs) {
            shapes.push_back(shape_of(t));
            s.push_back(t);
        }
        for (int64_t k = 1; k < copies; ++k) {
            shapes.push_back(shapes.front());
            s.push_back(std::nullopt);
        }
        Op op = make_op(name, std::move(attr), std::move(shapes), output_dtype(mb.op(srcs.front().op)));
        B.placeholders[name] = std::move(ph);
        B.stage_of[name] = stage;
        B.replicated_op[name] = replicated;
        return TensorRef{mb.add(std::move(op), s), 0};
    };

    for (size_t i = 0; i < n; ++i) {
        const Op& orig = m.op(i);
        if (auto e = B.experts.find(i); e != B.experts.end()) {
            const int64_t experts = m.op(e->second.first).get<MoeAttr>()->experts;
            if (e->second.second >= experts / p.expert) continue;  // another expert-parallel rank's expert
        }
        const int64_t stage = B.stage_of_unit[static_cast<size_t>(B.unit[i])];
        OpAttr attr = orig.attr;
        std::visit(
            [&](auto& a) {
                using A = std::decay_t<decltype(a)>;
                if constexpr (std::is_same_v<A, LinearAttr>) {
                    a.in_features = 0;
                    if (auto v = group_of_column.find(i);
                        v != group_of_column.end() && v->second->padded_vocab)
                        a.out_features = v->second->padded_vocab / T;  // the LM head's padded rows
                    else if (B.role[i] == Role::column)
                        a.out_features /= T;
                } else if constexpr (std::is_same_v<A, AttentionAttr>) {
                    a.head_dim = 0;
                    if (B.role[i] == Role::sharded) {
                        a.heads /= T;
                        a.kv_heads /= T;
                    }
                } else if constexpr (std::is_same_v<A, EmbeddingAttr>) {
                    if (B.role[i] == Role::vocab) a.rows = group_of_row.at(i)->padded_vocab / T;
                } else if constexpr (std::is_same_v<A, NormAttr>) {
                    a.features = 0;
                } else if constexpr (std::is_same_v<A, ConvAttr>) {
                    a.in_channels = 0;
                } else if constexpr (std::is_same_v<A, RnnAttr>) {
                    a.input_size = 0;
                } else if constexpr (std::is_same_v<A, InteractionAttr>) {
                    a.features = 0;
                    a.dim = 0;
                } else if constexpr (std::is_same_v<A, MoeAttr>) {
                    a.ep = p.expert;
                    a.dim = 0;
                    a.capacity = 0;
                }
            },
            attr);
        // Input tensors.
        std::vector<std::optional<TensorRef>> srcs;
        std::vector<Shape> shapes;
        std::vector<bool> in_seq;
        const bool column = B.role[i] == Role::column;
        for (size_t j = 0; j < orig.inputs.size(); ++j) {
            const std::optional<TensorRef> pr = m.producer(i, static_cast<int>(j));
            if (!pr) {
                Shape s = orig.inputs[j];
                s[0] = B.b;
                srcs.push_back(std::nullopt);
                shapes.push_back(std::move(s));
                in_seq.push_back(false);
                continue;
            }
            if (!id[pr->op]) {  // a dropped expert's output: never read by a kept op but the combine
                srcs.push_back(std::nullopt);
                shapes.push_back({});
                in_seq.push_back(false);
                continue;
            }
            TensorRef t{*id[pr->op], pr->slot};
            if (pr->slot == 0 && out_of.count(pr->op)) t = out_of.at(pr->op);
            bool s_in = seq[pr->op] && pr->slot == 0;
            if (column) {  // the f operator before the group, once per input tensor
                const auto key = std::make_pair(pr->op, pr->slot);
                auto f = f_of.find(key);
                if (f == f_of.end()) {
                    const std::string name = orig.name + ".tp_f";
                    Placeholder ph;
                    ph.axis = GroupAxis::tensor;
                    TensorRef ft;
                    if (s_in) {
                        ph.fwd = CollectiveKind::all_gather;
                        ph.bwd = CollectiveKind::reduce_scatter;
                        ph.purpose = "sp_gather";
                        ft = add_placeholder(name, ConcatAttr{1}, {t}, ph, stage, T, true);
                    } else {
                        ph.bwd = CollectiveKind::all_reduce;
                        ph.purpose = "tp_backward";
                        ft = add_placeholder(name, ReshapeAttr{Shape(shape_of(t).size(), 0), false}, {t}, ph,
                                             stage, 1, true);
                    }
                    f = f_of.emplace(key, ft).first;
                }
                t = f->second;
                s_in = false;
            }
            srcs.push_back(t);
            shapes.push_back(shape_of(t));
            in_seq.push_back(s_in);
        }
        // Mixed layouts on a replicated op: split the full inputs (free; an all-gather backward).
        if (sp && B.role[i] == Role::replicated &&
            std::any_of(in_seq.begin(), in_seq.end(), [](bool v) { return v; })) {
            for (size_t j = 0; j < srcs.size(); ++j) {
                if (in_seq[j] || !srcs[j]) continue;
                const Shape& s = shapes[j];
                if (s.size() < 2 || s[1] % T != 0)
                    plan_fail(
                        p, "sequence_parallel",
                        fmt::format("input {} of op '{}' has shape {}, whose sequence is not divisible by "
                                    "tensor = {}",
                                    j, orig.name, shape_str(s), T));
                const auto key = std::make_pair(srcs[j]->op, srcs[j]->slot);
                auto it = split_of.find(key);
                if (it == split_of.end()) {
                    Placeholder ph;
                    ph.bwd = CollectiveKind::all_gather;
                    ph.purpose = "sp_scatter";
                    it = split_of
                             .emplace(key, add_placeholder(orig.name + fmt::format(".sp_split{}", j),
                                                           SliceAttr{1, 0, s[1] / T}, {*srcs[j]}, ph, stage))
                             .first;
                }
                srcs[j] = it->second;
                shapes[j] = shape_of(it->second);
                in_seq[j] = true;
            }
        }
        // A combine takes only the rank's experts.
        if (const MoeAttr* a = orig.get<MoeAttr>(); a && a->combine) {
            std::vector<std::optional<TensorRef>> s2{srcs[0]};
            std::vector<Shape> sh2{shapes[0]};
            for (size_t j = 1; j < srcs.size(); ++j)
                if (srcs[j]) {
                    s2.push_back(srcs[j]);
                    sh2.push_back(shapes[j]);
                }
            srcs = std::move(s2);
            shapes = std::move(sh2);
        }
        Op op = make_op(orig.name, std::move(attr), std::move(shapes), orig.dtype, orig.loc, orig.key_path);
        op.tied_to = orig.tied_to;
        const bool out_seq = std::any_of(in_seq.begin(), in_seq.end(), [](bool v) { return v; });
        B.stage_of[orig.name] = stage;
        B.unit_of[orig.name] = B.unit[i];
        B.is_expert[orig.name] = B.experts.count(i) > 0;
        // Replicated ops on a sequence-split input run on their share only: no duplication.
        // A vocabulary-parallel embedding looks up (masks) every token on every rank: counted as duplication.
        B.replicated_op[orig.name] = (B.role[i] == Role::replicated && !out_seq) || B.role[i] == Role::vocab;
        if (B.role[i] == Role::row && orig.get<LinearAttr>()->bias) B.row_bias.insert(orig.name);
        id[i] = mb.add(std::move(op), srcs);
        seq[i] = out_seq;
        // The g operator after a row-parallel linear (or after the MoE combine it feeds).
        const TpGroup* g = nullptr;
        if (auto r = group_of_row.find(i); r != group_of_row.end() && !r->second->combine) g = r->second;
        if (auto c = group_of_combine.find(i); c != group_of_combine.end()) g = c->second;
        if (g) {
            const TensorRef t{*id[i], 0};
            Placeholder ph;
            ph.axis = GroupAxis::tensor;
            const std::string name = orig.name + ".tp_g";
            if (sp) {
                const Shape s = shape_of(t);
                if (s.size() < 2 || s[1] % T != 0)
                    plan_fail(
                        p, "sequence_parallel",
                        fmt::format("op '{}' has output {}, whose sequence is not divisible by tensor = {}",
                                    orig.name, shape_str(s), T));
                ph.fwd = CollectiveKind::reduce_scatter;
                ph.bwd = CollectiveKind::all_gather;
                ph.purpose = "sp_reduce_scatter";
                out_of[i] = add_placeholder(name, SliceAttr{1, 0, s[1] / T}, {t}, ph, stage);
                seq[i] = true;
            } else {
                ph.fwd = CollectiveKind::all_reduce;
                ph.purpose = "tp_forward";
                out_of[i] = add_placeholder(name, ReshapeAttr{Shape(shape_of(t).size(), 0), false}, {t}, ph,
                                            stage, 1, true);
            }
        }
    }
    return std::move(mb).build();
}

struct SectionBuilder {
    std::vector<Task>& tasks;

    size_t add(Task t) {
        std::sort(t.deps.begin(), t.deps.end());
        t.deps.erase(std::unique(t.deps.begin(), t.deps.end()), t.deps.end());
        tasks.push_back(std::move(t));
        return tasks.size() - 1;
    }
};

}  // namespace

ParallelLowering lower_parallel(const Model& fwd, const ParallelPlan& plan, const ParallelOptions& opts) {
    check_parallel_plan(fwd, plan, plan.devices(), opts);
    ParallelLowering L;
    L.plan = plan;
    Builder B{fwd, plan, opts, 0, 0, {}, {}, {}, {}, 0, {}, {}, {}, {}, {}, {}, {}};
    const std::vector<ModelInput> ins = fwd.inputs();
    B.batch = fwd.op(ins.front().op).inputs.at(static_cast<size_t>(ins.front().slot)).at(0);
    B.b = B.batch / (plan.data * plan.microbatches);
    L.microbatch_size = B.b;
    if (plan.tensor > 1)
        B.groups = tp_groups(fwd, B.role, plan.tensor);
    else
        B.role.assign(fwd.ops().size(), Role::replicated);
    B.experts = expert_ops(fwd);
    B.unit = layer_units(fwd, B.units);
    L.layers = B.units;
    const int64_t P = plan.pipeline;
    for (int64_t s = 0, u = 0; s < P; ++s) {
        const int64_t count = B.units / P + (s < B.units % P ? 1 : 0);
        for (int64_t k = 0; k < count; ++k, ++u) B.stage_of_unit.push_back(s);
    }
    L.bubble_fraction = bubble_fraction(P, plan.microbatches);
    TrainingOptions plain = opts.training_options;  // model FLOPs: no recomputation (see the contract)
    plain.checkpointing = false;
    L.model_flops = (opts.training ? lower_training(fwd, plain) : fwd).totals().flops;

    const Model rank_fwd = build_rank_model(B);
    CheckpointSegments segs;
    if (opts.training && plan.recompute == Recompute::full) {
        // One segment per run of ops with the same layer key; the layers' segments re-run whole.
        const size_t k = rank_fwd.ops().size();
        segs.segment_of.assign(k, 0);
        segs.rerun.assign(k, false);
        std::string prev;
        for (size_t i = 0; i < k; ++i) {
            const std::string key = layer_key(rank_fwd.op(i).name);
            segs.segment_of[i] = i == 0 ? 0 : segs.segment_of[i - 1] + (key != prev ? 1 : 0);
            segs.rerun[i] = !key.empty();
            prev = key;
        }
    }
    const Model rm = opts.training ? lower_training(rank_fwd, opts.training_options, segs) : rank_fwd;
    const size_t n = rm.ops().size();

    // Stage and section of every op of the rank model.
    auto base_name = [&](const Op& op) -> std::string {
        if (op.phase == Phase::forward) return op.name;
        if (op.phase == Phase::recompute)
            return op.name.substr(0, op.name.size() - std::string(".recompute").size());
        return op.forward_of;
    };
    std::vector<int64_t> stage(n);
    for (size_t i = 0; i < n; ++i) stage[i] = B.stage_of.at(base_name(rm.op(i)));

    L.stages.resize(static_cast<size_t>(P));
    for (int64_t s = 0; s < P; ++s) {
        StageProgram& sp = L.stages[static_cast<size_t>(s)];
        sp.stage = s;
        sp.schedule = pipeline_schedule(plan.schedule, s, P, plan.microbatches, opts.training);
        int64_t first = -1, count = 0;
        for (int64_t u = 0; u < B.units; ++u)
            if (B.stage_of_unit[static_cast<size_t>(u)] == s) {
                if (first < 0) first = u;
                ++count;
            }
        sp.first_layer = first;
        sp.layers = count;
    }

    // Boundary tensors: forward tensors produced at stage <= c and read at a stage > c, per boundary c.
    std::vector<double> boundary_bytes(static_cast<size_t>(P), 0);
    {
        std::set<std::tuple<size_t, int, int64_t>> counted;
        for (const Edge& e : rm.edges()) {
            const Op& a = rm.op(e.from);
            const Op& c = rm.op(e.to);
            if (a.phase != Phase::forward || c.phase != Phase::forward) continue;
            for (int64_t k = stage[e.from]; k < stage[e.to]; ++k)
                if (counted.insert({e.from, e.from_slot, k}).second)
                    boundary_bytes[static_cast<size_t>(k)] +=
                        tensor_bytes(a.outputs[static_cast<size_t>(e.from_slot)], output_dtype(a));
        }
    }

    // Which section an op runs in.
    enum Sec { fwd_sec, bwd_sec, step_sec };
    auto sec_of = [&](const Op& op) {
        switch (op.phase) {
            case Phase::forward:
                return fwd_sec;
            case Phase::backward:
            case Phase::recompute:
                return bwd_sec;
            case Phase::optimizer:
                return step_sec;
        }
        return fwd_sec;
    };

    // ZeRO shards over the data group; expert weights over the expert-data group.
    const double zero_div = plan.data;
    const double expert_div = static_cast<double>(plan.data / plan.expert);
    std::vector<std::vector<size_t>> task_of(n);  // tasks that make op i's output available

    for (int64_t s = 0; s < P; ++s) {
        StageProgram& prog = L.stages[static_cast<size_t>(s)];
        for (int sec = fwd_sec; sec <= step_sec; ++sec) {
            if (!opts.training && sec != fwd_sec) continue;  // inference: one forward section
            std::vector<Task>& tasks = sec == fwd_sec   ? prog.forward
                                       : sec == bwd_sec ? prog.backward
                                                        : prog.step;
            SectionBuilder sb{tasks};
            // Receive from the neighbour stage first.
            std::optional<size_t> recv;
            if (sec != step_sec) {
                const bool from_prev = sec == fwd_sec;
                if ((from_prev && s > 0) || (!from_prev && s + 1 < P && opts.training)) {
                    Task t;
                    t.name = from_prev ? "pp.recv_activations" : "pp.recv_gradients";
                    CommOp c;
                    c.send = false;
                    c.axis = from_prev ? GroupAxis::pipeline_prev : GroupAxis::pipeline_next;
                    c.bytes = to_bytes(boundary_bytes[static_cast<size_t>(from_prev ? s - 1 : s)]);
                    c.purpose = from_prev ? "pp_activation" : "pp_gradient";
                    t.comm = c;
                    recv = sb.add(std::move(t));
                }
            }
            std::vector<size_t> to_send;  // tasks whose outputs leave the stage
            std::map<int64_t, std::vector<size_t>> zero3_gather;
            std::map<std::string, size_t> a2a_dispatch;  // by layer key
            // Backward all-to-alls wait for every gradient op of their layer's dispatch (or combine):
            // issued when the first op that reads one of them comes.
            std::map<size_t, std::string> a2a_key_of;              // rank-model op -> its all-to-all's key
            std::map<std::string, std::vector<size_t>> a2a_waits;  // key -> the tasks it waits for
            std::map<std::string, CommOp> a2a_comm;
            for (size_t i = 0; i < n; ++i) {
                const Op& op = rm.op(i);
                if (stage[i] != s || sec_of(op) != sec) continue;
                Task t;
                t.name = op.name;
                for (const Edge& e : rm.in_edges(i)) {
                    if (stage[e.from] != s) {
                        if (recv && sec_of(rm.op(e.from)) == sec) t.deps.push_back(*recv);
                        continue;
                    }
                    if (sec_of(rm.op(e.from)) != sec) continue;
                    if (auto k = a2a_key_of.find(e.from); k != a2a_key_of.end()) {
                        auto a = a2a_dispatch.find(k->second);
                        if (a == a2a_dispatch.end()) {
                            Task at;
                            at.name = k->second + ".ep_all_to_all";
                            at.deps = a2a_waits.at(k->second);
                            at.comm = a2a_comm.at(k->second);
                            a = a2a_dispatch.emplace(k->second, sb.add(std::move(at))).first;
                        }
                        t.deps.push_back(a->second);
                        continue;
                    }
                    for (size_t d : task_of[e.from]) t.deps.push_back(d);
                }
                const std::string base = base_name(op);
                // ZeRO-3: gather a layer's parameters before its first weighted op, each pass.
                if (plan.zero == 3 && sec != step_sec) {
                    const size_t fi = *rank_fwd.find(base);
                    const Op& f = rank_fwd.op(fi);
                    if (f.counts().params > 0 &&
                        op.phase != Phase::optimizer) {  // forward, recompute, backward
                        const int64_t u = B.unit_of.at(base);
                        auto z = zero3_gather.find(u);
                        if (z == zero3_gather.end()) {
                            // The layer's dense weights are sharded over the data-parallel group, its
                            // experts' over their expert-data-parallel group (D / E ranks, as the memory
                            // account and the gradients' reduce-scatter have them): each gathered over
                            // its own group, the experts not at all when D = E (each rank holds its own).
                            double dense = 0, expert = 0;
                            for (const Op& g : rank_fwd.ops())
                                if (B.unit_of.count(g.name) && B.unit_of.at(g.name) == u &&
                                    B.stage_of.at(g.name) == s)
                                    (B.is_expert.count(g.name) && B.is_expert.at(g.name) ? expert : dense) +=
                                        g.weight_storage_bytes();
                            std::vector<size_t> tasks;
                            const auto gather = [&](const std::string& name, GroupAxis axis, double bytes) {
                                Task gt;
                                gt.name = name;
                                CommOp c;
                                c.collective = CollectiveKind::all_gather;
                                c.axis = axis;
                                c.bytes = to_bytes(bytes);
                                c.purpose = "zero_gather";
                                gt.comm = c;
                                tasks.push_back(sb.add(std::move(gt)));
                            };
                            if (plan.expert == 1) {  // one group: gathered together, as before
                                dense += expert;
                                expert = 0;
                            }
                            if (dense > 0 || expert == 0)
                                gather(fmt::format("zero3.gather.layer{}", u), GroupAxis::data, dense);
                            if (expert > 0 && expert_div > 1)
                                gather(fmt::format("zero3.gather_edp.layer{}", u), GroupAxis::expert_data,
                                       expert);
                            z = zero3_gather.emplace(u, std::move(tasks)).first;
                        }
                        for (size_t g : z->second) t.deps.push_back(g);
                    }
                }
                // Expert parallelism: an all-to-all before the layer's dispatch ops and before its combine.
                const MoeAttr* moe = op.get<MoeAttr>();
                const bool again =
                    op.phase == Phase::recompute;  // a recomputed layer re-runs its all-to-alls
                if (plan.expert > 1 && (sec == fwd_sec || again) && moe) {
                    const std::string key = layer_key(op.name) + (moe->combine ? "combine" : "dispatch") +
                                            (again ? ".recompute" : "");
                    auto a = a2a_dispatch.find(key);
                    if (a == a2a_dispatch.end()) {
                        Task at;
                        at.name = op.name + ".ep_all_to_all";
                        at.deps = t.deps;
                        CommOp c;
                        c.collective = CollectiveKind::all_to_all;
                        c.axis = GroupAxis::expert;
                        const double tokens = static_cast<double>(numel(op.inputs[moe->combine ? 0 : 1])) /
                                              static_cast<double>(moe->experts);
                        c.bytes = to_bytes(tokens * static_cast<double>(moe->top_k * moe->dim) *
                                           dtype_bytes(op.dtype));
                        c.purpose = std::string(moe->combine ? "ep_combine" : "ep_dispatch") +
                                    (again ? "_recompute" : "");
                        at.comm = c;
                        a = a2a_dispatch.emplace(key, sb.add(std::move(at))).first;
                    } else {
                        Task& at = tasks[a->second];
                        at.deps.insert(at.deps.end(), t.deps.begin(), t.deps.end());
                    }
                    t.deps = {a->second};
                }
                if (plan.expert > 1 && sec == bwd_sec &&
                    (op.kind == "moe_dispatch_grad" || op.kind == "moe_combine_grad")) {
                    // Mirrors: after the combine's gradient, and after the layer's dispatch gradients.
                    const std::string key = layer_key(op.name) + op.kind;
                    const size_t me = sb.add(Task{op, std::nullopt, op.name, t.deps, false, {}});
                    task_of[i] = {me};
                    a2a_key_of[i] = key;
                    a2a_waits[key].push_back(me);
                    if (!a2a_comm.count(key)) {
                        CommOp c;
                        c.collective = CollectiveKind::all_to_all;
                        c.axis = GroupAxis::expert;
                        const Op& f = rank_fwd.op(*rank_fwd.find(op.forward_of));
                        const MoeAttr* fa = f.get<MoeAttr>();
                        const double tokens = static_cast<double>(numel(f.inputs[fa->combine ? 0 : 1])) /
                                              static_cast<double>(fa->experts);
                        c.bytes = to_bytes(tokens * static_cast<double>(fa->top_k * fa->dim) *
                                           dtype_bytes(f.dtype));
                        c.purpose = fa->combine ? "ep_combine_grad" : "ep_dispatch_grad";
                        a2a_comm[key] = c;
                    }
                    continue;
                }
                // Placeholders become comm tasks (or vanish).
                const auto ph =
                    op.kind == "grad_accumulate" ? B.placeholders.end() : B.placeholders.find(base);
                if (ph != B.placeholders.end()) {
                    // A recomputed layer re-runs its forward collectives too.
                    const std::optional<CollectiveKind> kind =
                        sec == fwd_sec || again ? ph->second.fwd : ph->second.bwd;
                    if (!kind || sec == step_sec) {
                        std::sort(t.deps.begin(), t.deps.end());
                        task_of[i] = t.deps;
                        continue;
                    }
                    CommOp c;
                    c.collective = *kind;
                    c.axis = ph->second.axis;
                    // nccl-tests' size: the full tensor (all-reduce), the gathered / unsplit one otherwise.
                    double bytes = 0;
                    for (const Shape& sh : op.outputs) bytes = std::max(bytes, tensor_bytes(sh, op.dtype));
                    for (const Shape& sh : op.inputs) bytes = std::max(bytes, tensor_bytes(sh, op.dtype));
                    c.bytes = to_bytes(bytes);
                    c.purpose = ph->second.purpose + (again ? "_recompute" : sec == bwd_sec ? "_grad" : "");
                    t.comm = c;
                    t.name = op.name + (sec == bwd_sec ? "" : "");
                    task_of[i] = {sb.add(std::move(t))};
                    continue;
                }
                Op o = op;
                // A sparse embedding update covers the rows all M micro-batches touched (the lowering saw
                // one micro-batch's), up to the whole table.
                double scale = 1;
                if (sec == step_sec && plan.microbatches > 1) {
                    const Op& owner = rank_fwd.op(*rank_fwd.find(base));
                    const double full = static_cast<double>(owner.counts().params);
                    const EmbeddingAttr* e = owner.get<EmbeddingAttr>();
                    if (e && e->bag && rm.in_edges(i).size() == 1) {  // a plain embedding's is dense
                        const double touched = static_cast<double>(numel(owner.inputs[0]) * e->dim);
                        scale =
                            std::min(static_cast<double>(plan.microbatches), std::max(1.0, full / touched));
                    }
                }
                if (sec == step_sec && (plan.zero >= 1 || scale != 1)) {  // a sharded (or widened) update
                    OpCounts c = o.counts();
                    const double div =
                        (plan.zero >= 1 ? (B.is_expert.at(base) ? expert_div : zero_div) : 1) / scale;
                    c.flops /= div;
                    c.weight_bytes /= div;
                    c.input_bytes /= div;
                    c.output_bytes /= div;
                    o = make_lowered(o.name, o.kind, o.phase, o.dtype, o.inputs, o.outputs, c, o.gemms());
                    o.forward_of = op.forward_of;
                }
                t.op = std::move(o);
                task_of[i] = {sb.add(std::move(t))};
                for (const Edge& e : rm.out_edges(i))
                    if (stage[e.to] != s && sec_of(rm.op(e.to)) == sec) to_send.push_back(task_of[i].front());
            }
            // Forwarded tensors (produced earlier, read later) leave through this stage too.
            if (recv && sec == fwd_sec && s + 1 < P && boundary_bytes[static_cast<size_t>(s)] > 0) {
                for (const Edge& e : rm.edges())
                    if (stage[e.from] < s && stage[e.to] > s && rm.op(e.from).phase == Phase::forward)
                        to_send.push_back(*recv);
            }
            if (sec != step_sec) {
                const bool to_next = sec == fwd_sec;
                if ((to_next && s + 1 < P) || (!to_next && s > 0)) {
                    Task t;
                    t.name = to_next ? "pp.send_activations" : "pp.send_gradients";
                    t.deps = to_send;
                    CommOp c;
                    c.send = true;
                    c.axis = to_next ? GroupAxis::pipeline_next : GroupAxis::pipeline_prev;
                    c.bytes = to_bytes(boundary_bytes[static_cast<size_t>(to_next ? s : s - 1)]);
                    c.purpose = to_next ? "pp_activation" : "pp_gradient";
                    t.comm = c;
                    sb.add(std::move(t));
                }
            }
        }

        if (!opts.training) continue;
        // Data-parallel gradient buckets (or ZeRO reduce-scatters), in the order backward produces the
        // weight gradients: a weight's gradient is ready when the last op its optimizer update reads is.
        std::vector<std::pair<size_t, size_t>> ready;  // (backward task, step task of the update)
        std::map<size_t, size_t> step_index;           // rank-model op -> step task
        {
            size_t k = 0;
            for (size_t i = 0; i < n; ++i)
                if (stage[i] == s && sec_of(rm.op(i)) == step_sec) step_index[i] = k++;
        }
        struct Bucket {
            double bytes = 0;
            std::vector<size_t> producers, updates;
        };
        std::map<GroupAxis, std::vector<Bucket>> buckets;
        // The embedding-group all-reduce waits for the stage's whole backward (of the last micro-batch):
        // Megatron-LM runs it in finalize_model_grads (megatron/core/distributed/finalize_model_grads.py,
        // _allreduce_word_embedding_grads), after the pipeline schedule has returned, so it never overlaps
        // the stage's own backward and its tensor-parallel collectives.
        const auto after_whole_backward = [&prog](Task& t) {
            for (size_t j = 0; j < prog.backward.size(); ++j)
                if (prog.backward[j].op) t.deps.push_back(j);
            std::sort(t.deps.begin(), t.deps.end());
            t.deps.erase(std::unique(t.deps.begin(), t.deps.end()), t.deps.end());
        };
        std::vector<std::tuple<size_t, size_t, double, GroupAxis>>
            grads;  // (last producer, update, bytes, axis)
        for (const auto& [i, k] : step_index) {
            const Op& up = rm.op(i);
            size_t last = 0;
            bool any = false, cross = false;
            for (const Edge& e : rm.in_edges(i)) {
                if (stage[e.from] != s) {
                    cross = true;
                    continue;
                }
                for (size_t d : task_of[e.from]) {
                    last = any ? std::max(last, d) : d;
                    any = true;
                }
            }
            const Op& owner = rank_fwd.op(*rank_fwd.find(up.forward_of));
            const double bytes = owner.weight_storage_bytes();
            const GroupAxis axis = B.is_expert.at(owner.name) ? GroupAxis::expert_data : GroupAxis::data;
            if (cross) {  // a tied weight used on another stage: Megatron's embedding-group all-reduce
                Task t;
                t.name = owner.name + ".embedding_all_reduce";
                CommOp c;
                c.collective = CollectiveKind::all_reduce;
                c.axis = GroupAxis::embedding;
                c.bytes = to_bytes(bytes);
                c.purpose = "embedding_grad";
                t.comm = c;
                t.last_microbatch_only = true;
                for (const Edge& e : rm.in_edges(i))
                    if (stage[e.from] == s)
                        for (size_t d : task_of[e.from]) t.deps.push_back(d);
                after_whole_backward(t);
                prog.backward.push_back(std::move(t));
                prog.step[k].after_backward.push_back(prog.backward.size() - 1);
            }
            if (any) grads.emplace_back(last, k, bytes, axis);
        }
        // Stages holding only the tied copy (the LM head tied to the first stage's embedding) join the
        // embedding all-reduce too.
        for (size_t i = 0; i < n; ++i) {
            const Op& f = rm.op(i);
            if (stage[i] != s || f.phase != Phase::forward || f.tied_to.empty()) continue;
            const std::optional<size_t> o = rank_fwd.find(f.tied_to);
            if (!o || B.stage_of.at(f.tied_to) == s) continue;
            Task t;
            t.name = f.tied_to + ".embedding_all_reduce";
            CommOp c;
            c.collective = CollectiveKind::all_reduce;
            c.axis = GroupAxis::embedding;
            c.bytes = to_bytes(rank_fwd.op(*o).weight_storage_bytes());
            c.purpose = "embedding_grad";
            t.comm = c;
            t.last_microbatch_only = true;
            for (size_t j = 0; j < n; ++j)
                if (stage[j] == s && rm.op(j).forward_of == f.name && sec_of(rm.op(j)) == bwd_sec)
                    for (size_t d : task_of[j]) t.deps.push_back(d);
            after_whole_backward(t);
            prog.backward.push_back(std::move(t));
        }
        std::stable_sort(grads.begin(), grads.end(),
                         [](const auto& a, const auto& b) { return std::get<0>(a) < std::get<0>(b); });
        const bool any_data = plan.data > 1;
        for (const auto& [last, k, bytes, axis] : grads) {
            const int64_t size = axis == GroupAxis::data ? plan.data : plan.data / plan.expert;
            if (!any_data || size < 2) continue;
            std::vector<Bucket>& bs = buckets[axis];
            if (bs.empty() || bs.back().bytes >= static_cast<double>(opts.bucket_bytes)) bs.emplace_back();
            bs.back().bytes += bytes;
            bs.back().producers.push_back(last);
            bs.back().updates.push_back(k);
        }
        for (auto& [axis, bs] : buckets) {
            for (size_t j = 0; j < bs.size(); ++j) {
                const Bucket& bk = bs[j];
                Task t;
                t.name = fmt::format("{}.grad_bucket{}", axis == GroupAxis::data ? "dp" : "edp", j);
                t.deps = bk.producers;
                std::sort(t.deps.begin(), t.deps.end());
                t.deps.erase(std::unique(t.deps.begin(), t.deps.end()), t.deps.end());
                t.last_microbatch_only = plan.zero <= 1;
                CommOp c;
                c.collective = plan.zero == 0 ? CollectiveKind::all_reduce : CollectiveKind::reduce_scatter;
                c.axis = axis;
                c.bytes = to_bytes(bk.bytes);
                c.purpose = plan.zero == 0 ? "dp_bucket" : "zero_reduce_scatter";
                t.comm = c;
                prog.backward.push_back(std::move(t));
                const size_t bi = prog.backward.size() - 1;
                for (size_t k : bk.updates) prog.step[k].after_backward.push_back(bi);
                if (plan.zero == 1 || plan.zero == 2) {  // the updated parameters, gathered back
                    Task g;
                    g.name =
                        fmt::format("{}.param_gather{}", axis == GroupAxis::data ? "zero" : "zero_edp", j);
                    g.deps = bk.updates;
                    CommOp gc;
                    gc.collective = CollectiveKind::all_gather;
                    gc.axis = axis;
                    gc.bytes = to_bytes(bk.bytes);
                    gc.purpose = "zero_param_gather";
                    g.comm = gc;
                    prog.step.push_back(std::move(g));
                }
            }
        }
    }

    // Vocabulary padding: the ops whose work grows with the rank's vocabulary rows (the LM head in every
    // pass, and a table's dense update) carry (V' - V) / V' of it as padding; a plain table's update is
    // split with its rows, not duplicated (an embedding bag's sparse update follows the lookups: duplicated).
    std::map<std::string, double> pad_share;  // base op -> padding share of its row-scaled work
    std::set<std::string> tied_tables;        // vocabulary-parallel tables an LM head is tied to
    for (const TpGroup& g : B.groups) {
        if (!g.padded_vocab) continue;
        L.vocab = g.vocab;
        L.padded_vocab = g.padded_vocab;
        const double share =
            static_cast<double>(g.padded_vocab - g.vocab) / static_cast<double>(g.padded_vocab);
        for (size_t c : g.columns) {
            pad_share[fwd.op(c).name] = share;
            if (fwd.op(c).tied_to == fwd.op(g.row).name) tied_tables.insert(fwd.op(g.row).name);
        }
        pad_share[fwd.op(g.row).name] = share;
    }
    auto row_scaled = [&](const Op& op, const std::string& base) {
        if (!pad_share.count(base)) return false;
        const EmbeddingAttr* e = rank_fwd.op(*rank_fwd.find(base)).get<EmbeddingAttr>();
        if (!e) return true;
        // A plain table's update is dense (training.h): split with its rows, tied or not; a bag's follows
        // its lookups.
        return op.phase == Phase::optimizer && (tied_tables.count(base) > 0 || !e->bag);
    };

    // Replicated ops run on every tensor-parallel rank: the duplication, counted once per extra rank.
    {
        double dup = 0, pad = 0, rec = 0;
        for (const StageProgram& sp : L.stages) {
            auto sum = [&](const std::vector<Task>& ts, double times) {
                for (const Task& t : ts) {
                    if (!t.op) continue;
                    if (t.op->phase == Phase::recompute) {
                        rec += t.op->counts().flops * times;
                        continue;
                    }
                    const std::string base = t.op->phase == Phase::forward ? t.op->name
                                             : t.op->phase == Phase::recompute
                                                 ? t.op->name.substr(0, t.op->name.size() - 10)
                                                 : t.op->forward_of;
                    if (row_scaled(*t.op, base))
                        pad += t.op->counts().flops * pad_share.at(base) * times;
                    else if (B.replicated_op.count(base) && B.replicated_op.at(base))
                        dup += t.op->counts().flops * times;
                    if (!B.row_bias.count(base)) continue;
                    // A row-parallel linear's bias: its add, its gradient's reduction and its update run
                    // whole.
                    const Op& f = rank_fwd.op(*rank_fwd.find(base));
                    const LinearAttr& a = *f.get<LinearAttr>();
                    const double adds = static_cast<double>(numel(f.inputs[0]) / a.in_features) *
                                        static_cast<double>(a.out_features);
                    if (t.op->phase == Phase::forward || t.op->kind == "linear_grad_weight")
                        dup += adds * times;
                    else if (t.op->phase == Phase::optimizer)
                        dup += t.op->counts().flops * static_cast<double>(a.out_features) /
                               static_cast<double>(f.counts().params) * times;
                }
            };
            sum(sp.forward, static_cast<double>(plan.microbatches));
            sum(sp.backward, static_cast<double>(plan.microbatches));
            sum(sp.step, 1);
        }
        L.tp_duplicated_flops = dup * static_cast<double>(plan.tensor - 1) * static_cast<double>(plan.data);
        L.vocab_padding_flops = pad * static_cast<double>(plan.tensor) * static_cast<double>(plan.data);
        L.recompute_flops = rec * static_cast<double>(plan.tensor) * static_cast<double>(plan.data);
    }

    // Memory per stage.
    const std::string& optname = opts.training_options.optimizer;
    for (int64_t s = 0; s < P; ++s) {
        StageMemory mem;
        double weights = 0, grads = 0, opt = 0, act = 0, kv = 0, work = 0;
        int64_t params = 0;
        std::set<std::string> owned;
        for (size_t i = 0; i < rank_fwd.ops().size(); ++i) {
            const Op& f = rank_fwd.op(i);
            if (B.stage_of.at(f.name) != s) continue;
            std::string owner = f.name;
            const Op* owner_op = &f;
            if (!f.tied_to.empty() && B.stage_of.at(f.tied_to) != s) {  // a tied copy on this stage
                owner = f.tied_to;
                owner_op = &rank_fwd.op(*rank_fwd.find(f.tied_to));
            }
            const int64_t pc = owner_op->counts().params;
            if (pc == 0 || !owned.insert(owner).second) continue;
            // An embedding bag's states in its table's type (as one device and the sharded lowering keep
            // them); every other weight with an FP32 master copy in mixed precision.
            const StateBytes sb = op_state_bytes_per_param(*owner_op, optname);
            const double div = B.is_expert.count(owner) && B.is_expert.at(owner) ? expert_div : zero_div;
            const double p = static_cast<double>(pc);
            params += pc;
            if (auto v = pad_share.find(owner); v != pad_share.end()) {
                const double padp = p * v->second;
                mem.vocab_padding_params += static_cast<int64_t>(std::llround(padp));
                mem.vocab_padding_bytes += padp * (sb.weights / (plan.zero >= 3 ? div : 1));
                if (opts.training)
                    mem.vocab_padding_bytes += padp * (sb.gradients / (plan.zero >= 2 ? div : 1) +
                                                       sb.optimizer / (plan.zero >= 1 ? div : 1));
            }
            weights += p * sb.weights / (plan.zero >= 3 ? div : 1);
            if (opts.training) {
                grads += p * sb.gradients / (plan.zero >= 2 ? div : 1);
                opt += p * sb.optimizer / (plan.zero >= 1 ? div : 1);
            }
        }
        if (opts.training) {
            // Tensors read by a later pass: each forward tensor a backward op of the stage reads (received
            // ones included), seen through reshape views to the tensor that holds the data, each once.
            act += saved_forward_bytes(rm, [&](size_t i) { return stage[i] == s; });
            // A decode step's KV cache: every micro-batch's sequences, as in inference (and as one device's
            // training_memory counts it), read by the attention's forward and backward.
            for (size_t i = 0; i < n; ++i)
                if (stage[i] == s && rm.op(i).phase == Phase::forward)
                    kv += kv_cache_bytes(rm.op(i)) * static_cast<double>(plan.microbatches);
            // Recompute full: one layer's recomputed tensors, those its backward reads, at a time.
            std::map<std::string, std::set<std::pair<size_t, int>>> working;  // layer key -> tensors
            for (size_t i = 0; i < n; ++i) {
                if (stage[i] != s || rm.op(i).phase != Phase::backward) continue;
                for (const Edge& e : rm.in_edges(i)) {
                    TensorRef t{e.from, e.from_slot};
                    while (rm.op(t.op).kind == "reshape" || rm.op(t.op).kind == "flatten") {
                        const std::optional<TensorRef> pr = rm.producer(t.op, 0);
                        if (!pr) break;
                        t = *pr;
                    }
                    if (rm.op(t.op).phase == Phase::recompute)
                        working[layer_key(rm.op(t.op).name)].insert({t.op, t.slot});
                }
            }
            for (const auto& [key, ts] : working) {
                double bytes = 0;
                for (const auto& [op, slot] : ts)
                    bytes += tensor_bytes(rm.op(op).outputs[static_cast<size_t>(slot)], rm.op(op).dtype);
                mem.recompute_working_bytes = std::max(mem.recompute_working_bytes, bytes);
            }
            mem.inflight_microbatches = plan.schedule == PipelineSchedule::gpipe
                                            ? plan.microbatches
                                            : std::min(P - s, plan.microbatches);
        } else {
            for (size_t i = 0; i < n; ++i) {
                const Op& f = rm.op(i);
                if (stage[i] != s) continue;
                kv += kv_cache_bytes(f) * static_cast<double>(plan.microbatches);
                const OpCounts c = f.counts();
                work = std::max(work, c.input_bytes + c.output_bytes);
            }
            mem.inflight_microbatches = 1;
            act = work;
        }
        mem.params = params;
        mem.weights_bytes = weights;
        mem.gradients_bytes = grads;
        mem.optimizer_state_bytes = opt;
        mem.activations_per_microbatch_bytes = act;
        mem.activations_bytes = act * static_cast<double>(mem.inflight_microbatches);
        mem.kv_cache_bytes = kv;
        mem.total_bytes = weights + grads + opt + mem.activations_bytes + mem.recompute_working_bytes + kv;
        L.memory.push_back(mem);
    }
    return L;
}

void check_parallel_memory(const ParallelLowering& L, double capacity_bytes, const std::string& device_name) {
    const auto n = static_cast<size_t>(L.ranks());
    check_parallel_memory(L, std::vector<double>(n, capacity_bytes),
                          std::vector<std::string>(n, device_name));
}

void check_parallel_memory(const ParallelLowering& L, const std::vector<double>& capacities,
                           const std::vector<std::string>& names) {
    MLSIM_CHECK(capacities.size() == names.size() && static_cast<int64_t>(capacities.size()) >= L.ranks(),
                "check_parallel_memory: a capacity for every rank");
    for (int64_t rank = 0; rank < L.ranks(); ++rank) {
        const auto s = static_cast<size_t>(L.coord(rank).pipeline);
        const StageMemory& m = L.memory[s];
        const double capacity_bytes = capacities[static_cast<size_t>(rank)];
        const std::string& device_name = names[static_cast<size_t>(rank)];
        if (m.total_bytes <= capacity_bytes) continue;
        cfg::fail(
            L.plan.loc, L.plan.key,
            fmt::format("rank {} (pipeline stage {} of {}, layers {}-{}) needs {:.1f} GB: weights {:.1f} GB, "
                        "gradients {:.1f} GB, optimizer state {:.1f} GB, activations {:.1f} GB ({} "
                        "micro-batch(es) in flight), KV cache {:.1f} GB; its device '{}' has {:.1f} GB of "
                        "main memory: {:.1f} GB over",
                        rank, s, L.plan.pipeline, L.stages[s].first_layer,
                        L.stages[s].first_layer + L.stages[s].layers - 1, m.total_bytes / 1e9,
                        m.weights_bytes / 1e9, m.gradients_bytes / 1e9, m.optimizer_state_bytes / 1e9,
                        m.activations_bytes / 1e9, m.inflight_microbatches, m.kv_cache_bytes / 1e9,
                        device_name, capacity_bytes / 1e9, (m.total_bytes - capacity_bytes) / 1e9));
    }
}

double saved_forward_bytes(const Model& rm, const std::function<bool(size_t)>& include) {
    std::set<std::pair<size_t, int>> kept;
    double bytes = 0;
    for (size_t i = 0; i < rm.ops().size(); ++i) {
        if (rm.op(i).phase == Phase::forward || !include(i)) continue;
        for (const Edge& e : rm.in_edges(i)) {
            if (rm.op(e.from).phase != Phase::forward) continue;
            TensorRef t{e.from, e.from_slot};
            while (rm.op(t.op).kind == "reshape" || rm.op(t.op).kind == "flatten") {
                const std::optional<TensorRef> pr = rm.producer(t.op, 0);
                if (!pr) break;
                t = *pr;
            }
            if (kept.insert({t.op, t.slot}).second)
                bytes +=
                    tensor_bytes(rm.op(t.op).outputs[static_cast<size_t>(t.slot)], output_dtype(rm.op(t.op)));
        }
    }
    return bytes;
}

}  // namespace mlsim::wl
