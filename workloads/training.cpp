#include "workloads/training.h"

#include <fmt/format.h>

#include <algorithm>
#include <cmath>
#include <map>
#include <set>

#include "sim/config/schema.h"
#include "sim/core/check.h"

namespace mlsim::wl {

namespace {

constexpr double k_index_bytes = 8;  // as in op.cpp: embedding ids are int64

}  // namespace

Optimizer optimizer_of(const std::string& name) {
    static const std::vector<Optimizer> all = {{"sgd", 2, 0}, {"momentum", 4, 1}, {"adam", 12, 2}};
    std::vector<std::string> names;
    for (const Optimizer& o : all) {
        if (o.name == name) return o;
        names.push_back(o.name);
    }
    const std::string near = cfg::nearest(name, names);
    cfg::fail(cfg::SourceLoc{"<command line>", 0, 0}, "optimizer",
              fmt::format("unknown optimizer '{}'{}; expected sgd, momentum or adam", name,
                          near.empty() ? "" : fmt::format(" (did you mean '{}'?)", near)));
}

namespace {

// A reference from a backward op to a tensor: the gradient of the forward op's output `index`, the
// forward op's input `index` (a saved activation), or output `slot` of the plan's own op `index`.
struct Ref {
    enum Kind { grad, saved, local } kind = grad;
    int index = 0;
    int slot = 0;
};

struct BwdOp {
    Op op;
    std::vector<Ref> in;
};

struct BwdPlan {
    std::vector<BwdOp> ops;
    std::vector<std::optional<Ref>> grad_in;  // per forward input slot: where its gradient comes from
    int weight_grad = -1;                     // plan op whose output 0 is the weight gradient
};

bool owns_weights(const Op& f) { return f.counts().params > 0 || !f.tied_to.empty(); }

bool is_index_input(const Op& f, size_t slot) { return f.get<EmbeddingAttr>() && slot == 0; }

class Planner {
  public:
    Planner(const Op& f, const std::vector<bool>& need) : m_f(f), m_need(need), m_b(dtype_bytes(f.dtype)) {
        MLSIM_CHECK(f.outputs.size() == 1, "forward op '" + f.name + "' has several outputs");
        m_plan.grad_in.assign(f.inputs.size(), std::nullopt);
    }

    BwdPlan run() {
        std::visit([this](const auto& a) { plan(a); }, m_f.attr);
        return std::move(m_plan);
    }

  private:
    const Shape& dy() const { return m_f.output(); }
    const Shape& x(size_t j = 0) const { return m_f.inputs[j]; }
    double elems(const Shape& s) const { return static_cast<double>(numel(s)); }
    double weight_bytes() const { return static_cast<double>(m_f.get<LoweredAttr>() ? 0 : params()) * m_b; }
    int64_t params() const {
        Op untied = m_f;
        untied.tied_to.clear();
        return untied.counts().params;
    }

    int add(std::string suffix, std::string kind, std::vector<Shape> ins, std::vector<Ref> refs,
            std::vector<Shape> outs, double macs, double flops, double wbytes,
            std::vector<GemmShape> gemms = {}) {
        OpCounts c;
        c.macs = macs;
        c.flops = flops;
        c.weight_bytes = wbytes;
        for (const Shape& s : ins) c.input_bytes += elems(s) * m_b;
        for (const Shape& s : outs) c.output_bytes += elems(s) * m_b;
        Op op = make_lowered(m_f.name + "." + suffix, std::move(kind), Phase::backward, m_f.dtype,
                             std::move(ins), std::move(outs), c, std::move(gemms));
        op.forward_of = m_f.name;
        op.loc = m_f.loc;
        op.key_path = m_f.key_path;
        m_plan.ops.push_back(BwdOp{std::move(op), std::move(refs)});
        return static_cast<int>(m_plan.ops.size() - 1);
    }
    void set_grad(size_t slot, int op, int out_slot) {
        if (m_need[slot]) m_plan.grad_in[slot] = Ref{Ref::local, op, out_slot};
    }
    static Ref grad() { return Ref{Ref::grad, 0, 0}; }
    static Ref saved(int j) { return Ref{Ref::saved, j, 0}; }

    void weight_grad(int op) { m_plan.weight_grad = op; }

    void plan(const LinearAttr& a) {
        const double macs = m_f.counts().macs;
        const int64_t tokens = numel(x()) / a.in_features;
        if (m_need[0])
            set_grad(0,
                     add("grad_input", "linear_grad_input", {dy()}, {grad()}, {x()}, macs, 2 * macs,
                         weight_bytes(), {GemmShape{1, tokens, a.in_features, a.out_features}}),
                     0);
        const double bias = a.bias ? static_cast<double>(tokens * a.out_features) : 0;
        weight_grad(add("grad_weight", "linear_grad_weight", {dy(), x()}, {grad(), saved(0)}, {{params()}},
                        macs, 2 * macs + bias, 0, {GemmShape{1, a.out_features, a.in_features, tokens}}));
    }
    void plan(const MatmulAttr& a) {
        const double macs = m_f.counts().macs;
        const GemmShape g = *m_f.gemm();  // {b, m, n, k}
        if (m_need[0])
            set_grad(0,
                     add("grad_a", "matmul_grad_a", {dy(), x(1)}, {grad(), saved(1)}, {x(0)}, macs, 2 * macs,
                         0, {GemmShape{g.batch, g.m, g.k, g.n}}),
                     0);
        if (m_need[1]) {
            const GemmShape gb =
                a.transpose_b ? GemmShape{g.batch, g.n, g.k, g.m} : GemmShape{g.batch, g.k, g.n, g.m};
            set_grad(1,
                     add("grad_b", "matmul_grad_b", {dy(), x(0)}, {grad(), saved(0)}, {x(1)}, macs, 2 * macs,
                         0, {gb}),
                     0);
        }
    }
    void plan(const ConvAttr& a) {
        const double macs = m_f.counts().macs;
        const GemmShape g = *m_f.gemm();  // {groups, N·Ho·Wo, Cout/g, Cin/g·K}
        if (m_need[0])
            set_grad(0,
                     add("grad_input", m_f.kind + "_grad_input", {dy()}, {grad()}, {x()}, macs, 2 * macs,
                         weight_bytes(), {GemmShape{g.batch, g.m, g.k, g.n}}),
                     0);
        const double bias = a.bias ? elems(dy()) : 0;
        weight_grad(add("grad_weight", m_f.kind + "_grad_weight", {dy(), x()}, {grad(), saved(0)},
                        {{params()}}, macs, 2 * macs + bias, 0, {GemmShape{g.batch, g.n, g.k, g.m}}));
    }
    void plan(const PoolAttr&) {
        if (m_need[0])
            set_grad(
                0, add("grad", m_f.kind + "_grad", {dy(), x()}, {grad(), saved(0)}, {x()}, 0, elems(x()), 0),
                0);
    }
    void plan(const EltwiseAttr& a) {
        if (a.fn == Eltwise::add) {
            for (size_t j = 0; j < m_f.inputs.size(); ++j)
                if (m_need[j]) m_plan.grad_in[j] = grad();
            return;
        }
        if (a.fn == Eltwise::mul) {
            std::vector<Shape> outs;
            std::vector<size_t> slots;
            for (size_t j = 0; j < 2; ++j)
                if (m_need[j]) {
                    outs.push_back(x(j));
                    slots.push_back(j);
                }
            if (outs.empty()) return;
            const int op = add("grad", "mul_grad", {dy(), x(0), x(1)}, {grad(), saved(0), saved(1)}, outs, 0,
                               elems(dy()) * static_cast<double>(outs.size()), 0);
            for (size_t k = 0; k < slots.size(); ++k) set_grad(slots[k], op, static_cast<int>(k));
            return;
        }
        if (m_need[0])
            set_grad(0,
                     add("grad", m_f.kind + "_grad", {dy(), x()}, {grad(), saved(0)}, {x()}, 0,
                         elems(x()) * (eltwise_flops(a.fn, 1) + 1), 0),
                     0);
    }
    void plan(const NormAttr& a) {
        const bool rms = a.type == NormType::rms;
        if (m_need[0])
            set_grad(0,
                     add("grad_input", m_f.kind + "_grad_input", {dy(), x()}, {grad(), saved(0)}, {x()}, 0,
                         elems(x()) * (rms ? 6 : 9), weight_bytes()),
                     0);
        weight_grad(add("grad_weight", m_f.kind + "_grad_weight", {dy(), x()}, {grad(), saved(0)},
                        {{params()}}, 0, elems(x()) * (rms ? 2 : 3), 0));
    }
    void plan(const SoftmaxAttr&) {
        if (m_need[0])
            set_grad(
                0, add("grad", "softmax_grad", {dy(), x()}, {grad(), saved(0)}, {x()}, 0, 4 * elems(x()), 0),
                0);
    }
    void plan(const AttentionAttr&) {
        const std::vector<GemmShape> fg = m_f.gemms();  // {BH, Sq, T, d}, {BH, Sq, d, T}
        const GemmShape s = fg[0];
        const int64_t bh = s.batch, sq = s.m, t = s.n, d = s.k;
        const double scores = attention_scores(m_f);
        const double macs = 2.5 * m_f.counts().macs;
        const int op =
            add("grad", "attention_grad", {dy(), x(0), x(1), x(2)}, {grad(), saved(0), saved(1), saved(2)},
                {x(0), x(1), x(2)}, macs, 2 * macs + 11 * scores, 0,
                {GemmShape{bh, sq, t, d},    // S = Q·K^T, recomputed
                 GemmShape{bh, t, d, sq},    // dV = P^T·dO
                 GemmShape{bh, sq, t, d},    // dP = dO·V^T
                 GemmShape{bh, sq, d, t},    // dQ = dS·K
                 GemmShape{bh, t, d, sq}});  // dK = dS^T·Q
        for (size_t j = 0; j < 3; ++j) set_grad(j, op, static_cast<int>(j));
    }
    void plan(const EmbeddingAttr& a) {
        const double lookups = elems(x());
        // A bag's gradient is sparse: the looked-up rows, one per lookup (uncoalesced). A plain embedding's
        // is dense: the table's shape, zeroed and the lookups' rows added in (see update_elems).
        const Shape g = a.bag ? Shape{numel(x()), a.dim} : Shape{a.rows, a.dim};
        const int op = add("grad_weight", m_f.kind + "_grad_weight", {dy(), x()}, {grad(), saved(0)}, {g}, 0,
                           lookups * static_cast<double>(a.dim), 0);
        OpCounts& c = std::get<LoweredAttr>(m_plan.ops[static_cast<size_t>(op)].op.attr).counts;
        // The ids are int64, not the op's dtype; the incoming gradient is in the pooled output's.
        c.input_bytes =
            elems(dy()) * dtype_bytes(a.output_dtype.value_or(m_f.dtype)) + lookups * k_index_bytes;
        weight_grad(op);
    }
    void plan(const RnnAttr& a) {
        const double macs = m_f.counts().macs;
        const int64_t b = x()[0], t = x()[1];
        const int64_t gh = rnn_gates(a.cell) * a.hidden_size;
        const double steps = static_cast<double>(b * t);
        const Shape dgates{b, t, gh};
        const int gi =
            add("grad_input", m_f.kind + "_grad_input", {dy(), x()}, {grad(), saved(0)}, {x(), dgates}, macs,
                2 * macs + steps * static_cast<double>(a.hidden_size) * rnn_cell_flops(a.cell),
                weight_bytes(), {GemmShape{t, b, a.hidden_size, gh}, GemmShape{1, b * t, a.input_size, gh}});
        set_grad(0, gi, 0);
        weight_grad(add("grad_weight", m_f.kind + "_grad_weight", {dgates, x()},
                        {Ref{Ref::local, gi, 1}, saved(0)}, {{params()}}, macs,
                        2 * macs + (a.bias ? steps * static_cast<double>(gh) : 0), 0,
                        {GemmShape{1, gh, a.input_size, b * t}, GemmShape{1, gh, a.hidden_size, b * t}}));
    }
    void plan(const ConcatAttr&) {
        bool any = false;
        for (size_t j = 0; j < m_f.inputs.size(); ++j) any = any || m_need[j];
        if (!any) return;
        const int op = add("grad", "concat_grad", {dy()}, {grad()}, m_f.inputs, 0, 0, 0);
        for (size_t j = 0; j < m_f.inputs.size(); ++j) set_grad(j, op, static_cast<int>(j));
    }
    void plan(const ReshapeAttr&) {
        if (!m_need[0]) return;
        const int op = add("grad", "reshape_grad", {dy()}, {grad()}, {x()}, 0, 0, 0);
        std::get<LoweredAttr>(m_plan.ops[static_cast<size_t>(op)].op.attr).counts = OpCounts{};  // a view
        set_grad(0, op, 0);
    }
    void plan(const SliceAttr&) {
        if (m_need[0]) set_grad(0, add("grad", "slice_grad", {dy()}, {grad()}, {x()}, 0, 0, 0), 0);
    }
    void plan(const InteractionAttr&) {
        std::vector<Shape> ins{dy()};
        std::vector<Ref> refs{grad()};
        for (size_t j = 0; j < m_f.inputs.size(); ++j) {
            ins.push_back(x(j));
            refs.push_back(saved(static_cast<int>(j)));
        }
        const double macs = 2 * m_f.counts().macs;
        const GemmShape g = *m_f.gemm();  // {B, F, F, D}
        const int op = add("grad", "dot_interaction_grad", ins, refs, m_f.inputs, macs, 2 * macs, 0,
                           {GemmShape{g.batch, g.m, g.k, g.n}, GemmShape{g.batch, g.m, g.k, g.n}});
        for (size_t j = 0; j < m_f.inputs.size(); ++j) set_grad(j, op, static_cast<int>(j));
    }
    // MoE dispatch: its gradient scatters the C·d rows back to the token positions (the top_k copies of
    // a token are summed by the accumulation of the dispatch ops' gradients); written as x-shaped
    // tensors (the IR's gradients are dense) though only the C·d rows are written, which is what is
    // counted. No gradient reaches the probabilities through dispatch (the routing choice is discrete).
    // Combine: each expert output's gradient is the gate-weighted dy (C·d multiplies per expert), and
    // each token's top_k gate gradients are dot products of dy with the expert outputs (top_k·d MACs).
    void plan(const MoeAttr& a) {
        const double rows = static_cast<double>(a.capacity) * static_cast<double>(a.dim);
        if (!a.combine) {
            if (!m_need[0]) return;
            const int op = add("grad", "moe_dispatch_grad", {dy()}, {grad()}, {x()}, 0, 0, 0);
            OpCounts& c = std::get<LoweredAttr>(m_plan.ops[static_cast<size_t>(op)].op.attr).counts;
            c.output_bytes = rows * m_b;
            set_grad(0, op, 0);
            return;
        }
        std::vector<Shape> ins{dy()};
        std::vector<Ref> refs{grad()};
        for (size_t j = 0; j < m_f.inputs.size(); ++j) {
            ins.push_back(x(j));
            refs.push_back(saved(static_cast<int>(j)));
        }
        const double tokens = elems(x(0)) / static_cast<double>(a.experts);
        const double gate_macs = tokens * static_cast<double>(a.top_k * a.dim);
        const int op = add("grad", "moe_combine_grad", ins, refs, m_f.inputs, gate_macs,
                           2 * gate_macs + static_cast<double>(a.experts / a.ep) * rows, 0);
        for (size_t j = 0; j < m_f.inputs.size(); ++j) set_grad(j, op, static_cast<int>(j));
    }
    void plan(const LoweredAttr&) {
        cfg::fail(m_f.loc, m_f.key_path,
                  fmt::format("op '{}' ({}) is already a training op; lower_training takes a forward model",
                              m_f.name, m_f.kind));
    }

    const Op& m_f;
    const std::vector<bool>& m_need;
    double m_b;
    BwdPlan m_plan;
};

// Everything lower_training and training_memory share: which tensors need gradients, the backward plan
// of each op, the saved tensors, and the checkpoint segments.
struct Analysis {
    const Model& m;
    std::vector<bool> rg;                 // per op: its output requires a gradient
    std::vector<std::vector<bool>> need;  // per op, per input slot: a gradient must flow there
    std::vector<std::optional<BwdPlan>> plans;
    // Tensors backward reads: as produced (op, output slot), and canonical, i.e. looked at through
    // reshape views to the tensor that holds the data; model inputs as (op, input slot).
    std::set<std::pair<size_t, int>> saved_raw;
    std::set<std::pair<size_t, int>> saved;
    std::set<std::pair<size_t, int>> saved_inputs;
    // Checkpointing.
    size_t segments = 1;
    std::vector<size_t> seg;
    std::set<std::pair<size_t, int>> kept;        // tensors crossing a segment boundary, as produced
    std::set<std::pair<size_t, int>> kept_canon;  // the same, canonical
    std::vector<bool> recompute;

    Analysis(const Model& model, const TrainingOptions& opts,
             const CheckpointSegments* explicit_segments = nullptr)
        : m(model) {
        const size_t n = m.ops().size();
        rg.assign(n, false);
        need.resize(n);
        plans.resize(n);
        for (size_t i = 0; i < n; ++i) {
            const Op& f = m.op(i);
            need[i].assign(f.inputs.size(), false);
            for (size_t j = 0; j < f.inputs.size(); ++j) {
                const std::optional<TensorRef> p = m.producer(i, static_cast<int>(j));
                need[i][j] = p ? rg[p->op] : (opts.input_grads && !is_index_input(f, j));
            }
            rg[i] = owns_weights(f) || std::any_of(need[i].begin(), need[i].end(), [](bool b) { return b; });
            if (!rg[i]) continue;
            plans[i] = Planner(f, need[i]).run();
            for (const BwdOp& b : plans[i]->ops)
                for (const Ref& r : b.in) {
                    if (r.kind != Ref::saved) continue;
                    if (const std::optional<TensorRef> p = m.producer(i, r.index))
                        saved_raw.insert({p->op, p->slot});
                    add_canonical(i, r.index, saved, true);
                }
        }
        seg.assign(n, 0);
        recompute.assign(n, false);
        if (explicit_segments && n > 0) {
            const CheckpointSegments& cs = *explicit_segments;
            MLSIM_CHECK(cs.segment_of.size() == n && cs.rerun.size() == n,
                        "explicit checkpoint segments must cover every forward op");
            for (size_t i = 0; i < n; ++i) {
                MLSIM_CHECK(cs.segment_of[i] >= 0 && (i == 0 || cs.segment_of[i] >= cs.segment_of[i - 1]),
                            "checkpoint segments must be non-decreasing in op order");
                seg[i] = static_cast<size_t>(cs.segment_of[i]);
                recompute[i] = cs.rerun[i];
            }
            segments = seg[n - 1] + 1;
            for (const Edge& e : m.edges())
                if (seg[e.from] < seg[e.to]) {
                    kept.insert({e.from, e.from_slot});
                    add_canonical(e.to, e.to_slot, kept_canon, false);
                }
            return;
        }
        if (!opts.checkpointing || n == 0) return;
        const size_t want =
            std::max<size_t>(1, static_cast<size_t>(std::llround(std::sqrt(static_cast<double>(n)))));
        const size_t size = (n + want - 1) / want;
        for (size_t i = 0; i < n; ++i) seg[i] = i / size;
        segments = (n + size - 1) / size;
        for (const Edge& e : m.edges())
            if (seg[e.from] < seg[e.to]) {
                kept.insert({e.from, e.from_slot});
                add_canonical(e.to, e.to_slot, kept_canon, false);
            }
        // Recompute, in every segment but the last, the ops whose needed outputs were not kept, and
        // whatever inside the segment they in turn depend on.
        for (size_t i = n; i-- > 0;) {
            if (seg[i] + 1 >= segments) continue;
            bool needed = false;
            for (int s = 0; s < static_cast<int>(m.op(i).outputs.size()); ++s)
                if (saved_raw.count({i, s}) && !kept.count({i, s})) needed = true;
            for (const Edge& e : m.out_edges(i))
                if (recompute[e.to] && seg[e.to] == seg[i] && !kept.count({i, e.from_slot})) needed = true;
            recompute[i] = needed;
        }
        // A view is recomputed with the tensor it views, so backward never reads a view of dropped data.
        for (size_t i = 0; i < n; ++i)
            if (m.op(i).get<ReshapeAttr>() && seg[i] + 1 < segments)
                if (const std::optional<TensorRef> p = m.producer(i, 0);
                    p && recompute[p->op] && seg[p->op] == seg[i])
                    recompute[i] = true;
    }

    // Records the tensor feeding input `slot` of op `op`, looked at through reshape views.
    void add_canonical(size_t op, int slot, std::set<std::pair<size_t, int>>& into, bool model_inputs) {
        std::optional<TensorRef> p = m.producer(op, slot);
        while (p && m.op(p->op).get<ReshapeAttr>()) {
            op = p->op;
            slot = 0;
            p = m.producer(op, 0);
        }
        if (p)
            into.insert({p->op, p->slot});
        else if (model_inputs)
            saved_inputs.insert({op, slot});
    }

    double tensor_bytes(size_t op, int slot) const {
        const Op& f = m.op(op);
        return static_cast<double>(numel(f.outputs[static_cast<size_t>(slot)])) *
               dtype_bytes(output_dtype(f));
    }
    double input_bytes(size_t op, int slot) const {
        const Op& f = m.op(op);
        const double per =
            is_index_input(f, static_cast<size_t>(slot)) ? k_index_bytes : dtype_bytes(f.dtype);
        return static_cast<double>(numel(f.inputs[static_cast<size_t>(slot)])) * per;
    }

    double activation_bytes() const {
        double inputs = 0;
        for (const auto& [op, slot] : saved_inputs) inputs += input_bytes(op, slot);
        if (segments <= 1) {
            double b = inputs;
            for (const auto& [op, slot] : saved) b += tensor_bytes(op, slot);
            return b;
        }
        double boundary = 0;
        for (const auto& [op, slot] : kept_canon) boundary += tensor_bytes(op, slot);
        std::vector<double> inside(segments, 0);
        for (const auto& [op, slot] : saved)
            if (!kept_canon.count({op, slot})) inside[seg[op]] += tensor_bytes(op, slot);
        return inputs + boundary + *std::max_element(inside.begin(), inside.end());
    }
};

// What one weight-owning op's optimizer step updates: every element, or, for an embedding bag whose only
// gradients are its own lookups (DLRM's EmbeddingBag(sparse=True)), the gathered rows, duplicates included
// (PyTorch adds an uncoalesced sparse gradient row by row). A plain embedding (nn.Embedding, an LLM's token
// and position tables) has a dense gradient, and the optimizer updates the whole table, as PyTorch and
// Megatron-LM train them (and as the parallel lowering counts them).
double update_elems(const Model& m, size_t owner, const std::vector<size_t>& grads_from) {
    const Op& f = m.op(owner);
    const EmbeddingAttr* e = f.get<EmbeddingAttr>();
    if (e && e->bag && grads_from.size() == 1) return static_cast<double>(numel(f.inputs[0]) * e->dim);
    return static_cast<double>(f.counts().params);
}

// For each weight owner: the ops whose weight gradients it sums (itself and the ops tied to it).
std::map<size_t, std::vector<size_t>> weight_groups(const Model& m) {
    std::map<size_t, std::vector<size_t>> groups;
    for (size_t i = 0; i < m.ops().size(); ++i) {
        const Op& f = m.op(i);
        if (!owns_weights(f)) continue;
        size_t owner = i;
        if (!f.tied_to.empty()) {
            const std::optional<size_t> o = m.find(f.tied_to);
            if (!o)
                cfg::fail(f.loc, f.key_path,
                          fmt::format("op '{}' is tied to '{}', which is not an op of model '{}'", f.name,
                                      f.tied_to, m.name()));
            owner = *o;
        }
        groups[owner].push_back(i);
    }
    return groups;
}

}  // namespace

Model lower_training(const Model& fwd, const TrainingOptions& opts) {
    return lower_training(fwd, opts, CheckpointSegments{});
}

Model lower_training(const Model& fwd, const TrainingOptions& opts, const CheckpointSegments& segments) {
    const Optimizer opt = optimizer_of(opts.optimizer);
    const Analysis an(fwd, opts, segments.segment_of.empty() ? nullptr : &segments);
    const size_t n = fwd.ops().size();
    ModelBuilder b(fwd.name() + ".train");

    // Forward ops keep their ids (0..n-1) and their edges.
    for (const Op& op : fwd.ops()) b.add(op);
    for (const Edge& e : fwd.edges()) b.connect(TensorRef{e.from, e.from_slot}, e.to, e.to_slot);

    std::vector<std::optional<size_t>> copy(n);                   // recompute copies
    std::vector<std::vector<std::vector<TensorRef>>> contrib(n);  // gradient contributions per output
    std::vector<std::optional<TensorRef>> wgrad(n);               // weight gradient per op
    for (size_t i = 0; i < n; ++i) contrib[i].resize(fwd.op(i).outputs.size());

    auto saved_source = [&](size_t i, int slot) -> std::optional<TensorRef> {
        const std::optional<TensorRef> p = fwd.producer(i, slot);
        if (!p) return std::nullopt;
        if (copy[p->op]) return TensorRef{*copy[p->op], p->slot};
        return p;
    };

    auto lower_op = [&](size_t i) {
        const Op& f = fwd.op(i);
        const BwdPlan& plan = *an.plans[i];
        // The gradient of each output: a model output's is an input of the training graph (the loss is
        // outside the model); several contributions are summed.
        std::vector<std::optional<TensorRef>> dy(f.outputs.size());
        for (size_t s = 0; s < f.outputs.size(); ++s) {
            const std::vector<TensorRef>& c = contrib[i][s];
            if (c.size() == 1) dy[s] = c[0];
            if (c.size() > 1) {
                const double el = static_cast<double>(numel(f.outputs[s]));
                OpCounts cnt;
                cnt.flops = el * static_cast<double>(c.size() - 1);
                // The gradients are in the output's type (an FP32 table's lookups may be FP16).
                const DType gt = output_dtype(f);
                cnt.input_bytes = el * dtype_bytes(gt) * static_cast<double>(c.size());
                cnt.output_bytes = el * dtype_bytes(gt);
                Op acc = make_lowered(f.name + (s ? fmt::format(".{}", s) : "") + ".grad_acc",
                                      "grad_accumulate", Phase::backward, gt,
                                      std::vector<Shape>(c.size(), f.outputs[s]), {f.outputs[s]}, cnt);
                acc.forward_of = f.name;
                std::vector<std::optional<TensorRef>> srcs(c.begin(), c.end());
                dy[s] = TensorRef{b.add(std::move(acc), srcs), 0};
            }
        }
        std::vector<size_t> ids;
        auto resolve = [&](const Ref& r) -> std::optional<TensorRef> {
            switch (r.kind) {
                case Ref::grad:
                    return dy[static_cast<size_t>(r.index)];
                case Ref::saved:
                    return saved_source(i, r.index);
                case Ref::local:
                    return TensorRef{ids.at(static_cast<size_t>(r.index)), r.slot};
            }
            return std::nullopt;
        };
        for (const BwdOp& bo : plan.ops) {
            std::vector<std::optional<TensorRef>> srcs;
            for (const Ref& r : bo.in) srcs.push_back(resolve(r));
            ids.push_back(b.add(bo.op, srcs));
        }
        for (size_t j = 0; j < f.inputs.size(); ++j) {
            if (!plan.grad_in[j]) continue;
            const std::optional<TensorRef> g = resolve(*plan.grad_in[j]);
            const std::optional<TensorRef> p = fwd.producer(i, static_cast<int>(j));
            if (g && p) contrib[p->op][static_cast<size_t>(p->slot)].push_back(*g);
        }
        if (plan.weight_grad >= 0) wgrad[i] = TensorRef{ids[static_cast<size_t>(plan.weight_grad)], 0};
    };

    for (size_t k = an.segments; k-- > 0;) {
        // Recompute copies of this segment's ops, just before its backward ops (none for the last).
        for (size_t i = 0; i < n; ++i) {
            if (an.seg[i] != k || !an.recompute[i]) continue;
            Op c = fwd.op(i);
            c.name += ".recompute";
            c.phase = Phase::recompute;
            if (c.tied_to.empty() && c.counts().params > 0) c.tied_to = fwd.op(i).name;
            std::vector<std::optional<TensorRef>> srcs;
            for (size_t j = 0; j < c.inputs.size(); ++j) srcs.push_back(saved_source(i, static_cast<int>(j)));
            copy[i] = b.add(std::move(c), srcs);
        }
        for (size_t i = n; i-- > 0;)
            if (an.seg[i] == k && an.plans[i]) lower_op(i);
    }

    for (const auto& [owner, members] : weight_groups(fwd)) {
        const Op& f = fwd.op(owner);
        std::vector<std::optional<TensorRef>> srcs;
        std::vector<Shape> ins;
        for (size_t mbr : members) {
            MLSIM_CHECK(wgrad[mbr].has_value(),
                        "weight-owning op '" + fwd.op(mbr).name + "' has no weight gradient");
            srcs.push_back(wgrad[mbr]);
            ins.push_back(b.op(wgrad[mbr]->op).outputs[static_cast<size_t>(wgrad[mbr]->slot)]);
        }
        const double u = update_elems(fwd, owner, members);
        const double bytes = dtype_bytes(f.dtype);
        // The update reads the gradients, the weights (the FP32 master copy in mixed precision) and the
        // states, and writes the weights and states back (and, from a master copy, the low-precision
        // weights the next step computes with).
        const StateBytes sb = op_state_bytes_per_param(f, opt.name);
        const double master = sb.master ? 4.0 : 0.0;
        const double states = sb.optimizer - master;  // per element
        OpCounts c;
        c.flops = u * opt.flops_per_elem + u * static_cast<double>(members.size() - 1);
        c.weight_bytes = u * (sb.master ? master : bytes);
        for (const Shape& s : ins) c.input_bytes += static_cast<double>(numel(s)) * bytes;
        c.input_bytes += u * states;
        c.output_bytes = u * (bytes + master + states);
        Op up = make_lowered(f.name + "." + opt.name + "_update", opt.name + "_update", Phase::optimizer,
                             f.dtype, ins, {{f.counts().params}}, c);
        up.forward_of = f.name;
        up.loc = f.loc;
        up.key_path = f.key_path;
        b.add(std::move(up), srcs);
    }
    return std::move(b).build();
}

StateBytes state_bytes_per_param(DType dtype, const std::string& optimizer) {
    const double w = dtype_bytes(dtype);
    const int states = optimizer_of(optimizer).state_tensors;
    StateBytes s;
    s.weights = w;
    s.gradients = w;
    // Below 4 bytes (fp16, bf16, fp8, int8) an FP32 master copy and FP32 states; fp32 and tf32 keep their
    // states in FP32, fp64 in FP64.
    s.master = w < 4;
    s.optimizer = s.master ? 4.0 + 4.0 * states : w * states;
    return s;
}

StateBytes table_state_bytes_per_param(DType dtype, const std::string& optimizer) {
    StateBytes s;
    s.weights = dtype_bytes(dtype);
    s.gradients = s.weights;
    s.optimizer = s.weights * optimizer_of(optimizer).state_tensors;
    return s;
}

StateBytes op_state_bytes_per_param(const Op& f, const std::string& optimizer) {
    if (const EmbeddingAttr* e = f.get<EmbeddingAttr>(); e && e->bag)
        return table_state_bytes_per_param(f.dtype, optimizer);
    return state_bytes_per_param(f.dtype, optimizer);
}

MemoryAccount training_memory(const Model& fwd, const TrainingOptions& opts) {
    const Optimizer opt = optimizer_of(opts.optimizer);
    const Analysis an(fwd, opts);
    MemoryAccount acc;
    acc.weights_bytes = fwd.totals().weight_bytes;
    for (const auto& [owner, members] : weight_groups(fwd)) {
        const Op& f = fwd.op(owner);
        const StateBytes sb = op_state_bytes_per_param(f, opt.name);
        acc.gradients_bytes += update_elems(fwd, owner, members) * sb.gradients;
        acc.optimizer_state_bytes += static_cast<double>(f.counts().params) * sb.optimizer;
    }
    acc.activations_bytes = an.activation_bytes();
    acc.kv_cache_bytes = fwd.kv_cache_bytes();
    acc.total_bytes = acc.weights_bytes + acc.gradients_bytes + acc.optimizer_state_bytes +
                      acc.activations_bytes + acc.kv_cache_bytes;
    return acc;
}

}  // namespace mlsim::wl
