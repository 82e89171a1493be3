#include "workloads/embedding_sharding.h"

#include <fmt/format.h>

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <limits>
#include <map>
#include <set>

#include "sim/config/limits.h"
#include "sim/config/loader.h"
#include "sim/config/messages.h"
#include "sim/core/check.h"
#include "workloads/training.h"

namespace mlsim::wl {

namespace {

using arch::net::CollectiveKind;

constexpr double k_id_bytes = 8;             // embedding ids are int64 (workloads/op.h)
constexpr double k_length_bytes = 4;         // KeyedJaggedTensor lengths, int32 (est.)
constexpr double k_rowwise_state_bytes = 4;  // FBGEMM rowwise_adagrad: one FP32 accumulator per row
constexpr double k_rowwise_flops_elem = 4;   // g^2, its sum, the scaled step, the subtraction
constexpr double k_rowwise_flops_row = 3;    // mean, accumulate, rsqrt
constexpr double k_inf = std::numeric_limits<double>::infinity();

[[noreturn]] void sfail(const ShardingOptions& o, const std::string& msg) { cfg::fail(o.loc, o.key, msg); }

int64_t model_batch(const Model& m) {
    const std::vector<ModelInput> ins = m.inputs();
    MLSIM_CHECK(!ins.empty(), "a model without inputs");
    return m.op(ins.front().op).inputs.at(static_cast<size_t>(ins.front().slot)).at(0);
}

int64_t nodes_of(const ShardingOptions& o) {
    return o.ranks / (o.ranks_per_node > 0 ? o.ranks_per_node : o.ranks);
}
int64_t per_node(const ShardingOptions& o) { return o.ranks_per_node > 0 ? o.ranks_per_node : o.ranks; }

double shard_weight_bytes(const EmbeddingTable& t, int64_t rows, int64_t cols) {
    return static_cast<double>(rows) * static_cast<double>(cols) * dtype_bytes(t.dtype);
}

// Optimizer state per element of a table under the training optimizer (sparse optimizer "unfused"):
// table_state_bytes_per_param's (workloads/training.h), states in the table's type and no master copy.
double table_state_bytes(DType dtype, const ShardingOptions& o) {
    return table_state_bytes_per_param(dtype, o.training_options.optimizer).optimizer;
}

double shard_state_bytes(const EmbeddingTable& t, int64_t rows, int64_t cols, const ShardingOptions& o) {
    if (!o.training) return 0;
    if (o.sparse_optimizer == "rowwise_adagrad") return static_cast<double>(rows) * k_rowwise_state_bytes;
    return static_cast<double>(rows) * static_cast<double>(cols) * table_state_bytes(t.dtype, o);
}

// A sharded table's backward with FBGEMM's rowwise_adagrad fused into it (one kernel): it reads the pooled
// gradient and the ids as the lowered gradient op does (`grad`), reads each looked-up row and its FP32
// accumulator, and writes both back; the gradient rows are never written out. Duplicate ids in a step are
// counted as separate rows (an upper bound: FBGEMM sorts and merges them first).
Op rowwise_fused_backward(const Op& grad, const Op& table) {
    const EmbeddingAttr& ea = *table.get<EmbeddingAttr>();
    const double rows = static_cast<double>(numel(table.inputs[0]));
    const double elems = rows * static_cast<double>(ea.dim);
    const double dt = dtype_bytes(table.dtype);
    const OpCounts g = grad.counts();
    OpCounts c;
    c.flops = g.flops + elems * k_rowwise_flops_elem + rows * k_rowwise_flops_row;
    c.input_bytes = g.input_bytes;
    c.weight_bytes = elems * dt + rows * k_rowwise_state_bytes;
    c.output_bytes = elems * dt + rows * k_rowwise_state_bytes;
    Op op = make_lowered(grad.name, table.kind + "_backward_rowwise_adagrad", Phase::backward, table.dtype,
                         grad.inputs, grad.outputs, c);
    op.forward_of = grad.forward_of;
    return op;
}

double shard_bytes(const EmbeddingTable& t, int64_t rows, int64_t cols, const ShardingOptions& o) {
    return shard_weight_bytes(t, rows, cols) + shard_state_bytes(t, rows, cols, o);
}

std::vector<TableShard> row_split(const EmbeddingTable& t, const std::vector<int64_t>& ranks) {
    const int64_t k = static_cast<int64_t>(ranks.size());
    const int64_t block = (t.rows + k - 1) / k;
    std::vector<TableShard> s;
    for (int64_t i = 0; i < k; ++i) {
        const int64_t begin = std::min(t.rows, i * block);
        const int64_t end = std::min(t.rows, begin + block);
        s.push_back({ranks[static_cast<size_t>(i)], begin, end - begin, 0, t.dim});
    }
    return s;
}

// Column blocks by default: at least 32 columns each (est.: a block narrower than a 128-byte FP32 row
// segment wastes the gather's memory transactions, and every block receives all the table's indices), at
// most one per rank.
int64_t default_blocks(const EmbeddingTable& t, const ShardingOptions& o) {
    return std::max<int64_t>(1, std::min(o.ranks, t.dim / 32));
}

std::vector<int64_t> col_widths(int64_t dim, int64_t k) {
    std::vector<int64_t> w;
    for (int64_t i = 0; i < k; ++i) w.push_back(dim / k + (i < dim % k ? 1 : 0));
    return w;
}

// The dense part's memory per rank, reserved by the planner: its model state and every forward output at
// batch b (an upper bound on the activations backward keeps).
double dense_reserve(const Model& m, const std::vector<EmbeddingTable>& tables, const ShardingOptions& o) {
    std::set<size_t> tab;
    for (const EmbeddingTable& t : tables) tab.insert(t.op);
    const double frac = 1.0 / static_cast<double>(o.ranks);
    double state = 0, act = 0, work = 0;
    for (size_t i = 0; i < m.ops().size(); ++i) {
        if (tab.count(i)) continue;
        const Op& op = m.op(i);
        const OpCounts c = op.counts();
        const StateBytes sb = op_state_bytes_per_param(op, o.training_options.optimizer);
        const double p = static_cast<double>(c.params);
        state += p * (sb.weights + (o.training ? sb.gradients + sb.optimizer : 0));
        act += c.output_bytes * frac;
        work = std::max(work, (c.input_bytes + c.output_bytes) * frac);
    }
    return state + (o.training ? act : work);
}

struct Request {  // a placement asked for in a file
    std::optional<ShardKind> kind;
    std::optional<int64_t> rank, node;
    std::vector<int64_t> ranks;
    const cfg::Node* at = nullptr;
};

class Planner {
  public:
    Planner(const Model& m, const ShardingOptions& o) : m_o(o) {
        m_s.tables = embedding_tables(m);
        m_s.ranks = o.ranks;
        m_s.ranks_per_node = per_node(o);
        m_s.placements.resize(m_s.tables.size());
        m_B = model_batch(m);
        m_s.batch = m_B;
        m_load.assign(static_cast<size_t>(o.ranks), 0);
        const double reserve = o.capacity_bytes > 0 ? dense_reserve(m, m_s.tables, o) : 0;
        m_free.assign(static_cast<size_t>(o.ranks), k_inf);
        for (int64_t r = 0; r < o.ranks; ++r)
            if (o.capacity_of(r) > 0) m_free[static_cast<size_t>(r)] = o.capacity_of(r) - reserve;
        m_done.assign(m_s.tables.size(), false);
    }

    EmbeddingSharding& result() { return m_s; }
    const std::vector<EmbeddingTable>& tables() const { return m_s.tables; }

    double cost(size_t t) const { return table_cost_bytes(m_s.tables[t], m_B, m_o.training); }
    double mem(size_t t, int64_t rows, int64_t cols) const {
        return shard_bytes(m_s.tables[t], rows, cols, m_o);
    }

    // A shard placement, charged to its ranks; false (nothing charged) when some rank lacks room.
    bool commit(size_t t, TablePlacement p, double share_cost, bool check_room = true) {
        std::map<int64_t, double> need;
        for (const TableShard& s : p.shards) need[s.rank] += mem(t, s.rows, s.cols);
        if (check_room)
            for (const auto& [r, b] : need)
                if (b > m_free[static_cast<size_t>(r)]) return false;
        for (const auto& [r, b] : need) m_free[static_cast<size_t>(r)] -= b;
        const EmbeddingTable& tb = m_s.tables[t];
        if (p.kind != ShardKind::data)
            for (const TableShard& s : p.shards)
                m_load[static_cast<size_t>(s.rank)] +=
                    share_cost * static_cast<double>(s.rows) * static_cast<double>(s.cols) /
                    (static_cast<double>(tb.rows) * static_cast<double>(tb.dim));
        m_s.placements[t] = std::move(p);
        m_done[t] = true;
        return true;
    }

    std::optional<int64_t> least_loaded(double need, const std::set<int64_t>& avoid = {}) const {
        std::optional<int64_t> best;
        for (int64_t r = 0; r < m_o.ranks; ++r) {
            if (avoid.count(r) || m_free[static_cast<size_t>(r)] < need) continue;
            if (!best || m_load[static_cast<size_t>(r)] < m_load[static_cast<size_t>(*best)]) best = r;
        }
        return best;
    }

    bool place_table(size_t t, std::optional<int64_t> rank = {}) {
        const EmbeddingTable& tb = m_s.tables[t];
        const std::optional<int64_t> r = rank ? rank : least_loaded(mem(t, tb.rows, tb.dim));
        if (!r) return false;
        TablePlacement p;
        p.kind = ShardKind::table;
        p.shards = {{*r, 0, tb.rows, 0, tb.dim}};
        return commit(t, std::move(p), cost(t));
    }

    bool place_column(size_t t, std::vector<int64_t> ranks = {}) {
        const EmbeddingTable& tb = m_s.tables[t];
        const int64_t k = ranks.empty() ? default_blocks(tb, m_o) : static_cast<int64_t>(ranks.size());
        const std::vector<int64_t> w = col_widths(tb.dim, k);
        TablePlacement p;
        p.kind = ShardKind::column;
        std::set<int64_t> used;
        std::vector<double> trial_free = m_free;
        int64_t col = 0;
        for (int64_t i = 0; i < k; ++i) {
            const double need = mem(t, tb.rows, w[static_cast<size_t>(i)]);
            std::optional<int64_t> r;
            if (!ranks.empty()) {
                r = ranks[static_cast<size_t>(i)];
            } else {
                for (int64_t q = 0; q < m_o.ranks; ++q) {
                    if (used.count(q) || trial_free[static_cast<size_t>(q)] < need) continue;
                    if (!r || m_load[static_cast<size_t>(q)] < m_load[static_cast<size_t>(*r)]) r = q;
                }
                if (!r) return false;
            }
            used.insert(*r);
            trial_free[static_cast<size_t>(*r)] -= need;
            p.shards.push_back({*r, 0, tb.rows, col, w[static_cast<size_t>(i)]});
            col += w[static_cast<size_t>(i)];
        }
        return commit(t, std::move(p), cost(t));
    }

    bool place_row(size_t t) {
        std::vector<int64_t> all;
        for (int64_t r = 0; r < m_o.ranks; ++r) all.push_back(r);
        TablePlacement p;
        p.kind = ShardKind::row;
        p.shards = row_split(m_s.tables[t], all);
        return commit(t, std::move(p), cost(t));
    }

    bool place_table_row(size_t t, std::optional<int64_t> node = {}) {
        const int64_t L = per_node(m_o), N = nodes_of(m_o);
        std::optional<int64_t> best;
        double best_load = 0;
        for (int64_t n = 0; n < N; ++n) {
            if (node && n != *node) continue;
            std::vector<int64_t> rs;
            for (int64_t l = 0; l < L; ++l) rs.push_back(n * L + l);
            bool fits = true;
            for (const TableShard& s : row_split(m_s.tables[t], rs))
                fits = fits && mem(t, s.rows, s.cols) <= m_free[static_cast<size_t>(s.rank)];
            double load = 0;
            for (int64_t r : rs) load += m_load[static_cast<size_t>(r)];
            if (fits && (!best || load < best_load)) {
                best = n;
                best_load = load;
            }
        }
        if (!best) return false;
        std::vector<int64_t> rs;
        for (int64_t l = 0; l < L; ++l) rs.push_back(*best * L + l);
        TablePlacement p;
        p.kind = ShardKind::table_row;
        p.node = *best;
        p.shards = row_split(m_s.tables[t], rs);
        return commit(t, std::move(p), cost(t));
    }

    bool place_data(size_t t) {
        const EmbeddingTable& tb = m_s.tables[t];
        TablePlacement p;
        p.kind = ShardKind::data;
        for (int64_t r = 0; r < m_o.ranks; ++r) p.shards.push_back({r, 0, tb.rows, 0, tb.dim});
        return commit(t, std::move(p), 0);
    }

    bool place(size_t t, ShardKind k) {
        switch (k) {
            case ShardKind::table:
                return place_table(t);
            case ShardKind::row:
                return place_row(t);
            case ShardKind::column:
                return place_column(t);
            case ShardKind::table_row:
                return place_table_row(t);
            case ShardKind::data:
                return place_data(t);
        }
        return false;
    }

    // The located error of a table that fits nowhere (placed as `kind`, or by the planner when nullopt).
    [[noreturn]] void overflow(size_t t, std::optional<ShardKind> kind, const cfg::Node* at = nullptr,
                               std::optional<int64_t> pinned = {}) const {
        const EmbeddingTable& tb = m_s.tables[t];
        size_t fullest = 0, roomiest = 0;
        for (size_t r = 0; r < m_free.size(); ++r) {
            if (m_free[r] < m_free[fullest]) fullest = r;
            if (m_free[r] > m_free[roomiest]) roomiest = r;
        }
        const double whole = mem(t, tb.rows, tb.dim);
        const ShardKind k = kind ? *kind : ShardKind::row;  // the planner's last resort
        const int64_t L = per_node(m_o);
        double need = whole;
        size_t r = roomiest;
        std::string what = "the table needs";
        switch (k) {
            case ShardKind::table:
                if (pinned) r = static_cast<size_t>(*pinned);
                break;
            case ShardKind::data:
                r = fullest;
                what = "a copy needs";
                break;
            case ShardKind::column:
                need = mem(t, tb.rows, (tb.dim + default_blocks(tb, m_o) - 1) / default_blocks(tb, m_o));
                what = "a column block needs";
                break;
            case ShardKind::row:
                need = mem(t, (tb.rows + m_o.ranks - 1) / m_o.ranks, tb.dim);
                r = fullest;
                what = fmt::format("a 1/{} row share needs", m_o.ranks);
                break;
            case ShardKind::table_row:
                need = mem(t, (tb.rows + L - 1) / L, tb.dim);
                what = fmt::format("a 1/{} row share on a node needs", L);
                break;
        }
        const double left = std::max(0.0, m_free[r]);
        const std::string msg = fmt::format(
            "embedding table '{}' ({} rows x {}, {:.2f} GB{}) does not fit {}: rank "
            "{} has "
            "{:.2f} GB left of its {:.1f} GB ('{}', after the dense part and the tables placed before) and "
            "{} "
            "{:.2f} GB: {:.2f} GB over",
            tb.name, tb.rows, tb.dim, whole / 1e9, m_o.training ? " with its optimizer state" : "",
            kind ? fmt::format("as {}", to_string(*kind)) : std::string("any placement"), r, left / 1e9,
            m_o.capacity_of(static_cast<int64_t>(r)) / 1e9, m_o.device_of(static_cast<int64_t>(r)), what,
            need / 1e9, (need - left) / 1e9);
        if (at) cfg::fail_at(*at, msg);
        sfail(m_o, msg);
    }

    bool done(size_t t) const { return m_done[t]; }

    // The greedy planner over the tables not yet placed (see the contract).
    void plan() {
        std::vector<size_t> order;
        for (size_t t = 0; t < m_s.tables.size(); ++t) {
            if (m_done[t]) continue;
            const EmbeddingTable& tb = m_s.tables[t];
            const double grad = shard_weight_bytes(tb, tb.rows, tb.dim);
            const double msgs = table_cost_bytes(tb, m_B, m_o.training) -
                                static_cast<double>(m_B * tb.pooling * tb.dim) * dtype_bytes(tb.dtype);
            if (m_o.ranks > 1 && 2 * grad <= msgs / static_cast<double>(m_o.ranks) && place_data(t)) continue;
            order.push_back(t);
        }
        std::stable_sort(order.begin(), order.end(), [&](size_t a, size_t b) {
            const double ca = cost(a), cb = cost(b);
            if (ca != cb) return ca > cb;
            const EmbeddingTable &ta = m_s.tables[a], &tb = m_s.tables[b];
            return mem(a, ta.rows, ta.dim) > mem(b, tb.rows, tb.dim);
        });
        double total = 0;
        for (size_t t : order) total += cost(t);
        const double mean = total / static_cast<double>(m_o.ranks);
        for (size_t t : order) {
            if (nodes_of(m_o) > 1 && cost(t) > 2 * mean && place_table_row(t)) continue;
            if (place_table(t)) continue;
            if (nodes_of(m_o) > 1 && place_table_row(t)) continue;
            if (place_row(t)) continue;
            overflow(t, std::nullopt);
        }
    }

  private:
    const ShardingOptions& m_o;
    EmbeddingSharding m_s;
    int64_t m_B = 0;
    std::vector<double> m_load, m_free;
    std::vector<bool> m_done;
};

void check_options(const Model& m, const ShardingOptions& o) {
    if (o.ranks < 1) sfail(o, fmt::format("needs at least one rank, found {}", o.ranks));
    if (o.ranks_per_node < 0 || (o.ranks_per_node > 0 && o.ranks % o.ranks_per_node != 0))
        sfail(o, fmt::format("{} ranks per node does not divide the {} ranks", o.ranks_per_node, o.ranks));
    if (o.sparse_optimizer != "rowwise_adagrad" && o.sparse_optimizer != "unfused")
        sfail(o, fmt::format("unknown sparse optimizer '{}'; expected rowwise_adagrad or unfused",
                             o.sparse_optimizer));
    if (embedding_tables(m).empty())
        sfail(o, fmt::format("model '{}' has no embedding-bag tables to shard", m.name()));
    const int64_t B = model_batch(m);
    for (const ModelInput& in : m.inputs())
        if (m.op(in.op).inputs.at(static_cast<size_t>(in.slot)).at(0) != B)
            sfail(o,
                  fmt::format("model input {} of op '{}' does not have the batch {} as its first dimension",
                              in.slot, m.op(in.op).name, B));
    if (B % o.ranks != 0)
        sfail(o,
              fmt::format("the batch {} is not a multiple of the {} ranks (the dense part is data-parallel)",
                          B, o.ranks));
}

}  // namespace

std::string to_string(ShardKind k) {
    switch (k) {
        case ShardKind::table:
            return "table";
        case ShardKind::row:
            return "row";
        case ShardKind::column:
            return "column";
        case ShardKind::table_row:
            return "table-row";
        case ShardKind::data:
            return "data";
    }
    return "?";
}

std::optional<ShardKind> parse_shard_kind(std::string_view s) {
    for (ShardKind k :
         {ShardKind::table, ShardKind::row, ShardKind::column, ShardKind::table_row, ShardKind::data})
        if (s == to_string(k)) return k;
    return std::nullopt;
}

std::vector<EmbeddingTable> embedding_tables(const Model& m) {
    std::vector<EmbeddingTable> out;
    for (size_t i = 0; i < m.ops().size(); ++i) {
        const Op& op = m.op(i);
        const EmbeddingAttr* e = op.get<EmbeddingAttr>();
        if (!e || !e->bag || !op.tied_to.empty() || m.producer(i, 0)) continue;
        EmbeddingTable t;
        t.name = op.name;
        t.op = i;
        t.rows = e->rows;
        t.dim = e->dim;
        t.pooling = op.inputs.at(0).size() > 1 ? op.inputs[0].back() : 1;
        t.dtype = op.dtype;
        t.out_dtype = output_dtype(op);
        out.push_back(std::move(t));
    }
    return out;
}

double table_cost_bytes(const EmbeddingTable& t, int64_t batch, bool training) {
    const double B = static_cast<double>(batch), dt = dtype_bytes(t.dtype);
    const double lookup = B * static_cast<double>(t.pooling * t.dim) * dt;
    const double ids = B * (static_cast<double>(t.pooling) * k_id_bytes + k_length_bytes);
    const double pooled = B * static_cast<double>(t.dim) * dtype_bytes(t.out_dtype);
    return lookup + ids + pooled * (training ? 2 : 1);
}

EmbeddingSharding place_embeddings(const Model& m, ShardKind kind, const ShardingOptions& o) {
    check_options(m, o);
    Planner p(m, o);
    std::vector<size_t> order(p.tables().size());
    for (size_t t = 0; t < order.size(); ++t) order[t] = t;
    std::stable_sort(order.begin(), order.end(), [&](size_t a, size_t b) { return p.cost(a) > p.cost(b); });
    for (size_t t : order)
        if (!p.place(t, kind)) p.overflow(t, kind);
    p.result().source = to_string(kind);
    return std::move(p.result());
}

EmbeddingSharding plan_embedding_sharding(const Model& m, const ShardingOptions& o,
                                          const std::vector<std::optional<TablePlacement>>& fixed) {
    check_options(m, o);
    Planner p(m, o);
    for (size_t t = 0; t < fixed.size() && t < p.tables().size(); ++t)
        if (fixed[t]) p.commit(t, *fixed[t], p.cost(t), false);
    p.plan();
    p.result().source = "auto";
    return std::move(p.result());
}

EmbeddingSharding load_embedding_sharding(const std::string& path, const Model& m, const ShardingOptions& o) {
    check_options(m, o);
    const cfg::Node doc = cfg::load_file(path);
    auto fail_keys = [](const cfg::Node& map, const std::vector<std::string>& allowed) {
        for (const auto& [k, v] : map.entries())
            if (!cfg::contains(allowed, k)) {
                cfg::fail(v.key_loc(), map.path().empty() ? k : map.path() + "." + k,
                          fmt::format("unknown key '{}'{}; expected {}", k, cfg::did_you_mean(k, allowed),
                                      cfg::join(allowed)));
            }
    };
    if (!doc.is_map())
        cfg::fail_at(doc, "an embedding sharding file is a map with the key embedding_sharding");
    fail_keys(doc, {"embedding_sharding"});
    const cfg::Node* root = doc.find("embedding_sharding");
    if (!root) cfg::fail(doc.loc(), "embedding_sharding", "missing key 'embedding_sharding'");
    if (!root->is_map()) cfg::fail_at(*root, "expected a map with the keys tables, default and dense_bottom");
    fail_keys(*root, {"tables", "default", "dense_bottom"});
    Planner p(m, o);
    std::vector<std::string> names;
    std::map<std::string, size_t> index;
    for (size_t t = 0; t < p.tables().size(); ++t) {
        names.push_back(p.tables()[t].name);
        index[p.tables()[t].name] = t;
    }
    const std::vector<std::string> kinds = {"table", "row", "column", "table-row", "data"};
    auto kind_of = [&](const cfg::Node& n) {
        if (!n.is_scalar()) cfg::fail_at(n, "expected a sharding kind: " + cfg::join(kinds));
        const std::optional<ShardKind> k = parse_shard_kind(n.scalar());
        if (!k)
            cfg::fail_at(n, fmt::format("unknown sharding kind '{}'{}; expected {}", n.scalar(),
                                        cfg::did_you_mean(n.scalar(), kinds), cfg::join(kinds)));
        return *k;
    };
    auto rank_of = [&](const cfg::Node& n, int64_t limit, const char* what) {
        const int64_t r = n.as_int();
        if (r < 0 || r >= limit)
            cfg::fail_at(
                n, fmt::format("{} {} out of range: the system has {} (0-{})", what, r, limit, limit - 1));
        return r;
    };
    std::optional<ShardKind> fallback;
    if (const cfg::Node* d = root->find("default"); d && !(d->is_scalar() && d->scalar() == "auto"))
        fallback = kind_of(*d);
    if (const cfg::Node* tables = root->find("tables")) {
        if (!tables->is_map()) cfg::fail_at(*tables, "expected a map from table name to its placement");
        for (const auto& [name, spec] : tables->entries()) {
            auto it = index.find(name);
            if (it == index.end())
                cfg::fail(spec.key_loc(), spec.path(),
                          fmt::format("model '{}' has no embedding table '{}'{}", m.name(), name,
                                      cfg::did_you_mean(name, names)));
            const size_t t = it->second;
            const EmbeddingTable& tb = p.tables()[t];
            Request rq;
            rq.at = &spec;
            if (spec.is_scalar()) {
                rq.kind = kind_of(spec);
            } else if (spec.is_map()) {
                fail_keys(spec, {"kind", "rank", "ranks", "node"});
                const cfg::Node* k = spec.find("kind");
                if (!k) cfg::fail(spec.key_loc(), spec.path(), "missing key 'kind'");
                rq.kind = kind_of(*k);
                if (const cfg::Node* r = spec.find("rank")) {
                    if (*rq.kind != ShardKind::table) cfg::fail_at(*r, "'rank' goes with kind table");
                    rq.rank = rank_of(*r, o.ranks, "rank");
                }
                if (const cfg::Node* r = spec.find("ranks")) {
                    if (*rq.kind != ShardKind::column) cfg::fail_at(*r, "'ranks' goes with kind column");
                    if (!r->is_sequence() || r->items().empty()) cfg::fail_at(*r, "expected a list of ranks");
                    std::set<int64_t> seen;
                    for (const cfg::Node& x : r->items()) {
                        rq.ranks.push_back(rank_of(x, o.ranks, "rank"));
                        if (!seen.insert(rq.ranks.back()).second)
                            cfg::fail_at(x, fmt::format("rank {} given twice", rq.ranks.back()));
                    }
                    if (static_cast<int64_t>(rq.ranks.size()) > tb.dim)
                        cfg::fail_at(*r, fmt::format("{} column shards of a table of dim {}", rq.ranks.size(),
                                                     tb.dim));
                }
                if (const cfg::Node* n = spec.find("node")) {
                    if (*rq.kind != ShardKind::table_row) cfg::fail_at(*n, "'node' goes with kind table-row");
                    rq.node = rank_of(*n, nodes_of(o), "node");
                }
            } else {
                cfg::fail_at(spec, "expected a sharding kind or a map with kind (and rank, ranks or node)");
            }
            bool ok = false;
            switch (*rq.kind) {
                case ShardKind::table:
                    ok = p.place_table(t, rq.rank);
                    break;
                case ShardKind::column:
                    ok = p.place_column(t, rq.ranks);
                    break;
                case ShardKind::table_row:
                    ok = p.place_table_row(t, rq.node);
                    break;
                default:
                    ok = p.place(t, *rq.kind);
            }
            if (!ok) p.overflow(t, rq.kind, &spec, rq.rank);
        }
    }
    if (fallback) {
        for (size_t t = 0; t < p.tables().size(); ++t)
            if (!p.done(t) && !p.place(t, *fallback)) p.overflow(t, fallback, root->find("default"));
    }
    p.plan();
    if (const cfg::Node* d = root->find("dense_bottom")) {
        if (d->is_map()) {
            fail_keys(*d, {"rank"});
            const cfg::Node* r = d->find("rank");
            if (!r) cfg::fail(d->key_loc(), d->path(), "missing key 'rank'");
            p.result().bottom_rank = rank_of(*r, o.ranks, "rank");
        } else if (!d->is_scalar() || d->scalar() != "data") {
            cfg::fail_at(*d, "expected data (every rank, the default) or a map {rank: R}");
        }
    }
    p.result().source = path;
    return std::move(p.result());
}

std::string embedding_sharding_spec_error(const std::string& spec) {
    if (spec == "auto" || parse_shard_kind(spec) || spec.ends_with(".yaml") || spec.ends_with(".yml"))
        return "";
    std::error_code ec;
    if (std::filesystem::is_regular_file(spec, ec)) return "";
    const std::vector<std::string> words = {"auto", "table", "row", "column", "table-row", "data"};
    return fmt::format("'{}' is no sharding{} and no file; expected {} or a placement file (.yaml)", spec,
                       cfg::did_you_mean(spec, words), cfg::join(words));
}

EmbeddingSharding make_embedding_sharding(const std::string& spec, const Model& m, const ShardingOptions& o) {
    if (o.ranks > limits::max_embedding_sharding_ranks)
        sfail(o, fmt::format(
                     "{} ranks: sharded embedding tables run every rank's own program and all-to-alls "
                     "between every pair of ranks, whose state grows about as ranks^3 (512 ranks take 2.2 "
                     "GB, 768 more than 6 GB); at most {} ranks",
                     o.ranks, limits::max_embedding_sharding_ranks));
    if (const std::string why = embedding_sharding_spec_error(spec); !why.empty()) sfail(o, why);
    if (spec == "auto") return plan_embedding_sharding(m, o);
    if (const std::optional<ShardKind> k = parse_shard_kind(spec)) return place_embeddings(m, *k, o);
    return load_embedding_sharding(spec, m, o);
}

std::vector<ShardLoad> sharding_loads(const EmbeddingSharding& s, const ShardingOptions& o) {
    std::vector<ShardLoad> out(static_cast<size_t>(s.ranks));
    for (size_t t = 0; t < s.tables.size(); ++t) {
        const EmbeddingTable& tb = s.tables[t];
        const TablePlacement& p = s.placements[t];
        const double cost = table_cost_bytes(tb, s.batch, o.training);
        for (const TableShard& sh : p.shards) {
            ShardLoad& l = out.at(static_cast<size_t>(sh.rank));
            l.table_bytes += shard_bytes(tb, sh.rows, sh.cols, o);
            if (p.kind != ShardKind::data)
                l.cost_bytes += cost * static_cast<double>(sh.rows) * static_cast<double>(sh.cols) /
                                (static_cast<double>(tb.rows) * static_cast<double>(tb.dim));
            ++l.shards;
        }
    }
    return out;
}

// ---- lowering -------------------------------------------------------------------------------------------

namespace {

int64_t to_bytes(double b) { return static_cast<int64_t>(std::llround(b)); }

struct KindComm {  // the collectives of one sharding kind, global (every rank's view)
    bool any = false;
    std::vector<double> ids;      // W x W index all-to-all
    std::vector<double> pooled;   // table/column: W x W pooled-embedding all-to-all (forward)
    double rs_bytes = 0;          // row: B x D x dtype
    std::vector<double> node_rs;  // table_row: per node, B x D_n x dtype
    std::vector<double> cross;    // table_row: N x N (forward)
};

std::vector<int64_t> rounded(const std::vector<double>& v) {
    std::vector<int64_t> out;
    out.reserve(v.size());
    for (double x : v) out.push_back(to_bytes(x));
    return out;
}

std::vector<int64_t> transposed(const std::vector<int64_t>& v, int64_t p) {
    std::vector<int64_t> out(v.size());
    for (int64_t i = 0; i < p; ++i)
        for (int64_t j = 0; j < p; ++j)
            out[static_cast<size_t>(j * p + i)] = v[static_cast<size_t>(i * p + j)];
    return out;
}

int64_t row_sum(const std::vector<int64_t>& v, int64_t p, int64_t i) {
    int64_t s = 0;
    for (int64_t j = 0; j < p; ++j) s += v[static_cast<size_t>(i * p + j)];
    return s;
}

// The dense bottom (see the contract): forward ops that no table feeds, directly or through other ops;
// none unless the sharding puts it on one rank of several.
std::vector<bool> dense_bottom_ops(const Model& m, const std::map<size_t, size_t>& table_of,
                                   const EmbeddingSharding& S, int64_t W) {
    std::vector<bool> bottom(m.ops().size(), false);
    if (!S.bottom_rank || W == 1) return bottom;
    for (size_t i = 0; i < m.ops().size(); ++i) {  // ops are in topological order
        if (table_of.count(i)) continue;
        bool fed = false;
        for (size_t j = 0; j < m.op(i).inputs.size(); ++j) {
            const std::optional<TensorRef> pr = m.producer(i, static_cast<int>(j));
            fed = fed || (pr && !bottom[pr->op]);
        }
        bottom[i] = !fed;
    }
    return bottom;
}

// The bytes of the bottom's outputs that other ops read, for the whole batch (each distinct tensor once).
double bottom_output_bytes(const Model& m, const std::vector<bool>& bottom) {
    std::set<std::pair<size_t, int>> seen;
    double bytes = 0;
    for (size_t i = 0; i < m.ops().size(); ++i) {
        if (bottom[i]) continue;
        for (size_t j = 0; j < m.op(i).inputs.size(); ++j) {
            const std::optional<TensorRef> pr = m.producer(i, static_cast<int>(j));
            if (!pr || !bottom[pr->op] || !seen.insert({pr->op, pr->slot}).second) continue;
            const Op& p = m.op(pr->op);
            bytes += static_cast<double>(numel(p.outputs.at(static_cast<size_t>(pr->slot)))) *
                     dtype_bytes(p.dtype);
        }
    }
    return bytes;
}

}  // namespace

ParallelLowering lower_embedding_sharding(const Model& fwd, const EmbeddingSharding& S,
                                          const ShardingOptions& o) {
    check_options(fwd, o);
    MLSIM_CHECK(S.ranks == o.ranks && S.placements.size() == S.tables.size(), "sharding for another system");
    const int64_t W = o.ranks, L = per_node(o), N = nodes_of(o);
    const int64_t B = model_batch(fwd), b = B / W;
    const double bd = static_cast<double>(b), Bd = static_cast<double>(B);
    ParallelLowering Lw;
    Lw.plan.data = W;
    Lw.plan.loc = o.loc;
    Lw.plan.key = o.key;
    Lw.microbatch_size = b;
    Lw.layers = 1;
    Lw.plan.expert = L;  // the node groups (see the contract)
    Lw.embedding_sharding = true;
    Lw.model_flops = (o.training ? lower_training(fwd, o.training_options) : fwd).totals().flops;

    std::map<size_t, size_t> table_of;  // model op -> table
    for (size_t t = 0; t < S.tables.size(); ++t) table_of[S.tables[t].op] = t;
    const std::vector<bool> bottom = dense_bottom_ops(fwd, table_of, S, W);

    // The collectives, from the placements (see the contract).
    const std::vector<ShardKind> kinds = {ShardKind::table, ShardKind::column, ShardKind::row,
                                          ShardKind::table_row};
    std::map<ShardKind, KindComm> comm;
    for (ShardKind k : kinds) {
        KindComm& c = comm[k];
        c.ids.assign(static_cast<size_t>(W * W), 0);
        c.pooled.assign(static_cast<size_t>(W * W), 0);
        c.node_rs.assign(static_cast<size_t>(N), 0);
        c.cross.assign(static_cast<size_t>(N * N), 0);
    }
    for (size_t t = 0; t < S.tables.size(); ++t) {
        const EmbeddingTable& tb = S.tables[t];
        const TablePlacement& p = S.placements[t];
        if (p.kind == ShardKind::data) continue;
        KindComm& c = comm[p.kind];
        c.any = true;
        // The pooled vectors (and their gradients) are sent in the lookups' output type.
        const double dt = dtype_bytes(tb.out_dtype), pool = static_cast<double>(tb.pooling);
        for (const TableShard& s : p.shards) {
            const bool rowsplit = p.kind == ShardKind::row || p.kind == ShardKind::table_row;
            const double frac = rowsplit ? static_cast<double>(s.rows) / static_cast<double>(tb.rows) : 1.0;
            for (int64_t i = 0; i < W; ++i) {
                c.ids[static_cast<size_t>(i * W + s.rank)] +=
                    bd * (pool * k_id_bytes * frac + k_length_bytes);
                if (!rowsplit)
                    c.pooled[static_cast<size_t>(s.rank * W + i)] += bd * static_cast<double>(s.cols) * dt;
            }
        }
        if (p.kind == ShardKind::row) c.rs_bytes += Bd * static_cast<double>(tb.dim) * dt;
        if (p.kind == ShardKind::table_row) {
            c.node_rs[static_cast<size_t>(p.node)] += Bd * static_cast<double>(tb.dim) * dt;
            for (int64_t m = 0; m < N; ++m)
                c.cross[static_cast<size_t>(p.node * N + m)] += bd * static_cast<double>(tb.dim) * dt;
        }
    }
    if (S.bottom_rank && W > 1) {
        KindComm& c = comm[ShardKind::table];
        c.any = true;
        const double per_sample = bottom_output_bytes(fwd, bottom) / Bd;
        for (int64_t i = 0; i < W; ++i)
            c.pooled[static_cast<size_t>(*S.bottom_rank * W + i)] += bd * per_sample;
    }
    std::map<ShardKind, std::vector<int64_t>> ids_i, pooled_i, cross_i;
    for (ShardKind k : kinds) {
        ids_i[k] = rounded(comm[k].ids);
        pooled_i[k] = rounded(comm[k].pooled);
        cross_i[k] = rounded(comm[k].cross);
    }

    const Optimizer opt_rule = optimizer_of(o.training_options.optimizer);
    const double opt_flops = opt_rule.flops_per_elem;
    const int opt_states = opt_rule.state_tensors;

    for (int64_t r = 0; r < W; ++r) {
        // The rank model: the dense part at batch b, data-parallel tables, this rank's shards.
        ModelBuilder mb(fwd.name() + ".rank");
        const size_t n = fwd.ops().size();
        std::vector<std::optional<size_t>> id(n);
        std::map<std::string, ShardKind> shard_kind;  // shard op -> kind
        std::map<std::string, size_t> shard_table;    // shard op -> table
        std::set<std::string> data_tables, feature_consumers;
        std::set<std::string> dense_input_ops;  // ops reading a (non-index) model input
        std::set<std::string> bottom_names;     // the dense bottom's ops on its rank
        for (size_t i = 0; i < n; ++i) {
            const Op& orig = fwd.op(i);
            if (bottom[i] && r != *S.bottom_rank) continue;
            if (auto tt = table_of.find(i); tt != table_of.end()) {
                const EmbeddingTable& tb = S.tables[tt->second];
                const TablePlacement& p = S.placements[tt->second];
                const EmbeddingAttr& ea = *orig.get<EmbeddingAttr>();
                if (p.kind == ShardKind::data) {
                    Shape in = orig.inputs[0];
                    in[0] = b;
                    id[i] = mb.add(make_op(orig.name, orig.attr, {in}, orig.dtype, orig.loc, orig.key_path));
                    data_tables.insert(orig.name);
                    continue;
                }
                const bool single = p.shards.size() == 1;
                for (size_t k = 0; k < p.shards.size(); ++k) {
                    const TableShard& s = p.shards[k];
                    if (s.rank != r || s.rows == 0 || s.cols == 0) continue;
                    int64_t bags = B;
                    if (p.kind == ShardKind::row || p.kind == ShardKind::table_row)
                        bags = (B * s.rows + tb.rows - 1) / tb.rows;
                    EmbeddingAttr a = ea;
                    a.rows = s.rows;
                    a.dim = s.cols;
                    Shape in = orig.inputs[0];
                    in[0] = bags;
                    const std::string name = single ? orig.name : fmt::format("{}.shard{}", orig.name, k);
                    mb.add(make_op(name, a, {in}, orig.dtype, orig.loc, orig.key_path));
                    shard_kind[name] = p.kind;
                    shard_table[name] = tt->second;
                }
                continue;
            }
            std::vector<std::optional<TensorRef>> srcs;
            std::vector<Shape> shapes;
            bool reads_dense_input = false;
            for (size_t j = 0; j < orig.inputs.size(); ++j) {
                const std::optional<TensorRef> pr = fwd.producer(i, static_cast<int>(j));
                Shape s = orig.inputs[j];
                if (!pr || (table_of.count(pr->op) && !id[pr->op]) || (bottom[pr->op] && !bottom[i])) {
                    if (pr)
                        feature_consumers.insert(orig.name);
                    else
                        reads_dense_input = true;
                    s[0] = bottom[i] ? B : b;
                    srcs.push_back(std::nullopt);
                    shapes.push_back(std::move(s));
                    continue;
                }
                srcs.push_back(TensorRef{*id[pr->op], pr->slot});
                shapes.push_back(mb.op(*id[pr->op]).outputs.at(static_cast<size_t>(pr->slot)));
            }
            if (reads_dense_input) dense_input_ops.insert(orig.name);
            OpAttr attr = orig.attr;
            if (MoeAttr* a = std::get_if<MoeAttr>(&attr)) {
                a->capacity = 0;
                a->dim = 0;
            }
            Op op =
                make_op(orig.name, std::move(attr), std::move(shapes), orig.dtype, orig.loc, orig.key_path);
            op.tied_to = orig.tied_to;
            id[i] = mb.add(std::move(op), srcs);
            if (bottom[i]) bottom_names.insert(orig.name);
        }
        const Model rank_fwd = std::move(mb).build();
        TrainingOptions to = o.training_options;
        to.input_grads = !feature_consumers.empty();
        const Model rm = o.training ? lower_training(rank_fwd, to) : rank_fwd;
        const size_t rn = rm.ops().size();

        auto base_of = [&](const Op& op) -> std::string {
            if (op.phase == Phase::forward) return op.name;
            if (op.phase == Phase::recompute) return op.name.substr(0, op.name.size() - 10);
            return op.forward_of;
        };
        // Dropped: the input gradient of the dense input (frameworks skip it; input_grads only serves the
        // pooled embeddings).
        std::vector<bool> drop(rn, false);
        for (size_t i = 0; i < rn; ++i) {
            const Op& op = rm.op(i);
            if (op.phase != Phase::backward || !rm.out_edges(i).empty()) continue;
            const std::string base = base_of(op);
            if (!dense_input_ops.count(base) || feature_consumers.count(base)) continue;
            if (op.kind.size() >= 10 && op.kind.compare(op.kind.size() - 10, 10, "grad_input") == 0)
                drop[i] = true;
        }
        // Forward order groups: 0 = not downstream of a pooled embedding, 1 = shard lookups, 2 = the rest.
        std::vector<int> group(rn, 0);
        for (size_t i = 0; i < rn; ++i) {
            const Op& op = rm.op(i);
            if (op.phase != Phase::forward) continue;
            if (shard_kind.count(op.name) || bottom_names.count(op.name)) {
                group[i] = 1;
                continue;
            }
            if (feature_consumers.count(op.name)) group[i] = 2;
            for (const Edge& e : rm.in_edges(i))
                if (rm.op(e.from).phase == Phase::forward && group[e.from] == 2) group[i] = 2;
        }

        StageProgram prog;
        prog.stage = 0;
        prog.schedule = pipeline_schedule(PipelineSchedule::one_f_one_b, 0, 1, 1, o.training);
        prog.first_layer = 0;
        prog.layers = 1;
        std::vector<std::optional<size_t>> task(rn);
        auto comm_task = [&](std::vector<Task>& sec, std::string name, CollectiveKind kind, GroupAxis axis,
                             int64_t bytes, std::vector<int64_t> counts, std::vector<size_t> deps,
                             std::string purpose) -> size_t {
            Task t;
            t.name = std::move(name);
            CommOp c;
            c.collective = kind;
            c.axis = axis;
            c.bytes = bytes;
            c.counts = std::move(counts);
            c.purpose = std::move(purpose);
            t.comm = std::move(c);
            std::sort(deps.begin(), deps.end());
            deps.erase(std::unique(deps.begin(), deps.end()), deps.end());
            t.deps = std::move(deps);
            sec.push_back(std::move(t));
            return sec.size() - 1;
        };
        auto compute_task = [&](std::vector<Task>& sec, size_t i, std::vector<size_t> extra) {
            Task t;
            t.name = rm.op(i).name;
            t.op = rm.op(i);
            const bool fw = rm.op(i).phase == Phase::forward;
            for (const Edge& e : rm.in_edges(i))
                if (task[e.from] && (rm.op(e.from).phase == Phase::forward) == fw)
                    extra.push_back(*task[e.from]);
            std::sort(extra.begin(), extra.end());
            extra.erase(std::unique(extra.begin(), extra.end()), extra.end());
            t.deps = std::move(extra);
            sec.push_back(std::move(t));
            task[i] = sec.size() - 1;
        };
        auto is_phase = [&](size_t i, Pass p) {
            const Phase ph = rm.op(i).phase;
            return p == Pass::forward ? ph == Phase::forward
                                      : (ph == Phase::backward || ph == Phase::recompute);
        };

        // ---- forward
        std::map<ShardKind, size_t> ids_task;
        const int64_t node = r / L;
        if (W > 1)
            for (ShardKind k : kinds)
                if (comm[k].any)
                    ids_task[k] = comm_task(prog.forward, "emb." + to_string(k) + ".ids_all_to_all",
                                            CollectiveKind::all_to_all, GroupAxis::data,
                                            row_sum(ids_i[k], W, r), ids_i[k], {}, "emb_ids");
        std::map<ShardKind, std::vector<size_t>> lookups;
        std::map<ShardKind, size_t> out_task;
        bool out_done = false;
        auto emit_output_dists = [&]() {
            out_done = true;
            if (W == 1) return;
            for (ShardKind k : kinds) {
                if (!comm[k].any) continue;
                const std::string p = "emb." + to_string(k);
                const std::vector<size_t>& deps = lookups[k];
                if (k == ShardKind::table || k == ShardKind::column) {
                    out_task[k] = comm_task(prog.forward, p + ".pooled_all_to_all",
                                            CollectiveKind::all_to_all, GroupAxis::data,
                                            row_sum(pooled_i[k], W, r), pooled_i[k], deps, "emb_pooled");
                } else if (k == ShardKind::row) {
                    out_task[k] =
                        comm_task(prog.forward, p + ".pooled_reduce_scatter", CollectiveKind::reduce_scatter,
                                  GroupAxis::data, to_bytes(comm[k].rs_bytes), {}, deps, "emb_pooled");
                } else {
                    std::vector<size_t> d = deps;
                    const double rs = comm[k].node_rs[static_cast<size_t>(node)];
                    if (L > 1 && rs > 0)
                        d = {comm_task(prog.forward, p + ".pooled_reduce_scatter",
                                       CollectiveKind::reduce_scatter, GroupAxis::expert, to_bytes(rs), {},
                                       deps, "emb_pooled")};
                    if (N > 1)
                        d = {comm_task(prog.forward, p + ".pooled_all_to_all", CollectiveKind::all_to_all,
                                       GroupAxis::expert_data, row_sum(cross_i[k], N, node), cross_i[k], d,
                                       "emb_pooled")};
                    if (!d.empty()) out_task[k] = d.front();
                }
            }
        };
        for (int g = 0; g < 3; ++g)
            for (size_t i = 0; i < rn; ++i) {
                if (!is_phase(i, Pass::forward) || group[i] != g) continue;
                std::vector<size_t> extra;
                if (g == 1) {
                    const bool bot = bottom_names.count(rm.op(i).name) > 0;
                    const ShardKind k = bot ? ShardKind::table : shard_kind.at(rm.op(i).name);
                    if (!bot && ids_task.count(k)) extra.push_back(ids_task.at(k));
                    compute_task(prog.forward, i, extra);
                    lookups[k].push_back(*task[i]);
                    continue;
                }
                if (feature_consumers.count(rm.op(i).name)) {
                    if (!out_done) emit_output_dists();
                    for (const auto& [k, t] : out_task) extra.push_back(t);
                }
                compute_task(prog.forward, i, extra);
            }

        // ---- backward
        std::map<ShardKind, size_t> grad_task;
        if (o.training) {
            std::set<size_t> producers;  // backward ops of the pooled-embedding consumers
            for (size_t i = 0; i < rn; ++i)
                if (is_phase(i, Pass::backward) && !drop[i] && feature_consumers.count(base_of(rm.op(i))))
                    producers.insert(i);
            std::vector<size_t> producer_tasks;
            auto emit_grad_dists = [&]() {
                if (W == 1) return;
                for (ShardKind k : kinds) {
                    if (!comm[k].any) continue;
                    const std::string p = "emb." + to_string(k);
                    if (k == ShardKind::table || k == ShardKind::column) {
                        const std::vector<int64_t> c = transposed(pooled_i[k], W);
                        grad_task[k] =
                            comm_task(prog.backward, p + ".grad_all_to_all", CollectiveKind::all_to_all,
                                      GroupAxis::data, row_sum(c, W, r), c, producer_tasks, "emb_grad");
                    } else if (k == ShardKind::row) {
                        grad_task[k] = comm_task(prog.backward, p + ".grad_all_gather",
                                                 CollectiveKind::all_gather, GroupAxis::data,
                                                 to_bytes(comm[k].rs_bytes), {}, producer_tasks, "emb_grad");
                    } else {
                        std::vector<size_t> d = producer_tasks;
                        if (N > 1) {
                            const std::vector<int64_t> c = transposed(cross_i[k], N);
                            d = {comm_task(prog.backward, p + ".grad_all_to_all", CollectiveKind::all_to_all,
                                           GroupAxis::expert_data, row_sum(c, N, node), c, d, "emb_grad")};
                        }
                        const double rs = comm[k].node_rs[static_cast<size_t>(node)];
                        if (L > 1 && rs > 0)
                            d = {comm_task(prog.backward, p + ".grad_all_gather", CollectiveKind::all_gather,
                                           GroupAxis::expert, to_bytes(rs), {}, d, "emb_grad")};
                        grad_task[k] = d.front();
                    }
                }
            };
            bool grads_done = producers.empty();
            for (int g = 0; g < 2; ++g)
                for (size_t i = 0; i < rn; ++i) {
                    if (!is_phase(i, Pass::backward) || drop[i]) continue;
                    const std::string base = base_of(rm.op(i));
                    const bool bot = bottom_names.count(base) > 0;
                    const bool shard = shard_kind.count(base) > 0 || bot;
                    if (shard != (g == 1)) continue;
                    std::vector<size_t> extra;
                    if (shard) {
                        if (!grads_done) {
                            grads_done = true;
                            emit_grad_dists();
                        }
                        const ShardKind k = bot ? ShardKind::table : shard_kind.at(base);
                        if (grad_task.count(k)) extra.push_back(grad_task.at(k));
                    }
                    compute_task(prog.backward, i, extra);
                    if (shard && !bot && o.training && o.sparse_optimizer == "rowwise_adagrad" &&
                        rm.op(i).kind.ends_with("_grad_weight")) {
                        // FBGEMM's fused backward: the table's update in the same kernel, no gradient
                        // tensor written (its update task is not emitted in the step).
                        Task& t = prog.backward[*task[i]];
                        t.op = rowwise_fused_backward(*t.op, rank_fwd.op(*rank_fwd.find(base)));
                        t.name = t.op->name;
                    }
                    if (producers.count(i)) {
                        producer_tasks.push_back(*task[i]);
                        if (producer_tasks.size() == producers.size() && !grads_done) {
                            grads_done = true;
                            emit_grad_dists();
                        }
                    }
                }
        }

        // ---- step: optimizer updates (sparse ones replaced per the sparse optimizer), DDP buckets
        StageMemory mem;
        double dense_w = 0, dense_g = 0, dense_o = 0, emb_w = 0, emb_g = 0, emb_o = 0;
        int64_t params = 0;
        for (size_t i = 0; i < rank_fwd.ops().size(); ++i) {
            const Op& f = rank_fwd.op(i);
            const int64_t pc = f.counts().params;
            if (pc == 0 || !f.tied_to.empty()) continue;
            params += pc;
            const double p = static_cast<double>(pc);
            const StateBytes sb = op_state_bytes_per_param(f, o.training_options.optimizer);
            const EmbeddingAttr* ea = f.get<EmbeddingAttr>();
            const bool shard = shard_kind.count(f.name) > 0, dp = data_tables.count(f.name) > 0;
            if (!shard && !dp) {
                dense_w += p * sb.weights;
                if (o.training) {
                    dense_g += p * sb.gradients;
                    dense_o += p * sb.optimizer;
                }
                continue;
            }
            emb_w += p * dtype_bytes(f.dtype);
            if (!o.training) continue;
            if (o.sparse_optimizer == "rowwise_adagrad")
                emb_o += static_cast<double>(ea->rows) * k_rowwise_state_bytes;
            else
                emb_o += p * table_state_bytes(f.dtype, o);
            if (dp)
                emb_g += p * dtype_bytes(f.dtype);  // dense gradient, all-reduced
            else if (o.sparse_optimizer != "rowwise_adagrad")
                emb_g += static_cast<double>(numel(f.inputs[0]) * ea->dim) * dtype_bytes(f.dtype);
        }
        if (o.training) {
            struct Grad {
                size_t ready;
                size_t step;
                double bytes;
            };
            std::vector<Grad> grads;
            for (size_t i = 0; i < rn; ++i) {
                const Op& up = rm.op(i);
                if (up.phase != Phase::optimizer) continue;
                Op op = up;
                const Op& owner = rank_fwd.op(*rank_fwd.find(up.forward_of));
                const bool shard = shard_kind.count(owner.name) > 0, dp = data_tables.count(owner.name) > 0;
                if (shard && o.sparse_optimizer == "rowwise_adagrad") continue;  // in its backward kernel
                if (shard || dp) {
                    const EmbeddingAttr& ea = *owner.get<EmbeddingAttr>();
                    const double dt = dtype_bytes(owner.dtype);
                    const double rows =
                        dp ? static_cast<double>(ea.rows) : static_cast<double>(numel(owner.inputs[0]));
                    const double elems = rows * static_cast<double>(ea.dim);
                    if (o.sparse_optimizer == "rowwise_adagrad") {
                        OpCounts c;
                        c.flops = elems * k_rowwise_flops_elem + rows * k_rowwise_flops_row;
                        c.weight_bytes = elems * dt;
                        c.input_bytes = elems * dt + rows * k_rowwise_state_bytes;
                        c.output_bytes = elems * dt + rows * k_rowwise_state_bytes;
                        op = make_lowered(owner.name + ".rowwise_adagrad_update", "rowwise_adagrad_update",
                                          Phase::optimizer, owner.dtype, up.inputs, up.outputs, c);
                        op.forward_of = owner.name;
                    } else {
                        // The training optimizer on a table (sharded: the looked-up rows; data-parallel:
                        // all of them): states in the table's type, no FP32 master copy (table_state_bytes),
                        // as on one device (training.cpp's update of a bag).
                        OpCounts c;
                        c.flops = elems * opt_flops;
                        c.weight_bytes = elems * dt;
                        c.input_bytes = elems * dt * (1 + opt_states);
                        c.output_bytes = elems * dt * (1 + opt_states);
                        op = make_lowered(up.name, up.kind, Phase::optimizer, owner.dtype, up.inputs,
                                          up.outputs, c);
                        op.forward_of = owner.name;
                    }
                }
                Task t;
                t.name = op.name;
                t.op = std::move(op);
                std::optional<size_t> ready;
                for (const Edge& e : rm.in_edges(i))
                    if (task[e.from]) ready = ready ? std::max(*ready, *task[e.from]) : *task[e.from];
                if (shard && ready) t.after_backward.push_back(*ready);
                prog.step.push_back(std::move(t));
                // The bottom's weights live on its rank only: no all-reduce.
                const bool local = shard || bottom_names.count(owner.name) > 0;
                if (local && ready && !shard)
                    prog.step.back().after_backward.push_back(*ready);
                else if (!local && ready && W > 1)
                    grads.push_back({*ready, prog.step.size() - 1, owner.weight_storage_bytes()});
                else if (!local && ready)
                    prog.step.back().after_backward.push_back(*ready);
            }
            std::stable_sort(grads.begin(), grads.end(),
                             [](const Grad& a, const Grad& c) { return a.ready < c.ready; });
            struct Bucket {
                double bytes = 0;
                std::vector<size_t> producers, updates;
            };
            std::vector<Bucket> bs;
            for (const Grad& g : grads) {
                if (bs.empty() || bs.back().bytes >= static_cast<double>(o.bucket_bytes)) bs.emplace_back();
                bs.back().bytes += g.bytes;
                bs.back().producers.push_back(g.ready);
                bs.back().updates.push_back(g.step);
            }
            for (size_t j = 0; j < bs.size(); ++j) {
                const size_t bi =
                    comm_task(prog.backward, fmt::format("dp.grad_bucket{}", j), CollectiveKind::all_reduce,
                              GroupAxis::data, to_bytes(bs[j].bytes), {}, bs[j].producers, "dp_bucket");
                prog.backward[bi].last_microbatch_only = true;
                for (size_t k : bs[j].updates) prog.step[k].after_backward.push_back(bi);
            }
        }

        // Activations.
        double act = 0;
        if (o.training) {
            act += saved_forward_bytes(rm, [&](size_t i) { return !drop[i]; });
            for (size_t i = 0; i < rank_fwd.ops().size(); ++i) {
                const Op& f = rank_fwd.op(i);
                if (shard_kind.count(f.name) || data_tables.count(f.name))
                    act += static_cast<double>(numel(f.inputs[0])) * k_id_bytes;  // indices, for the backward
            }
        } else {
            for (const Op& f : rank_fwd.ops()) {
                const OpCounts c = f.counts();
                act = std::max(act, c.input_bytes + c.output_bytes);
            }
        }
        mem.params = params;
        mem.weights_bytes = dense_w + emb_w;
        mem.gradients_bytes = dense_g + emb_g;
        mem.optimizer_state_bytes = dense_o + emb_o;
        mem.activations_per_microbatch_bytes = act;
        mem.activations_bytes = act;
        mem.inflight_microbatches = 1;
        mem.total_bytes = mem.weights_bytes + mem.gradients_bytes + mem.optimizer_state_bytes + act;
        Lw.rank_programs.push_back(std::move(prog));
        Lw.rank_memory.push_back(mem);
    }
    Lw.stages = {Lw.rank_programs.front()};
    Lw.memory = {Lw.rank_memory.front()};
    return Lw;
}

void check_embedding_memory(const ParallelLowering& l, const EmbeddingSharding& s, const ShardingOptions& o) {
    for (size_t r = 0; r < l.rank_memory.size(); ++r) {
        const StageMemory& m = l.rank_memory[r];
        const double capacity = o.capacity_of(static_cast<int64_t>(r));
        if (capacity <= 0 || m.total_bytes <= capacity) continue;
        int64_t shards = 0;
        for (const TablePlacement& p : s.placements)
            for (const TableShard& sh : p.shards) shards += sh.rank == static_cast<int64_t>(r);
        sfail(o, fmt::format(
                     "rank {} needs {:.2f} GB with embedding sharding '{}' ({} table shard(s)): weights "
                     "{:.2f} GB, gradients {:.2f} GB, optimizer state {:.2f} GB, activations {:.2f} GB; "
                     "its device '{}' has {:.2f} GB of main memory: {:.2f} GB over",
                     r, m.total_bytes / 1e9, s.source, shards, m.weights_bytes / 1e9, m.gradients_bytes / 1e9,
                     m.optimizer_state_bytes / 1e9, m.activations_bytes / 1e9,
                     o.device_of(static_cast<int64_t>(r)), capacity / 1e9, (m.total_bytes - capacity) / 1e9));
    }
}

}  // namespace mlsim::wl
