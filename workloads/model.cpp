#include "workloads/model.h"

#include <fmt/format.h>

#include <algorithm>
#include <boost/graph/adjacency_list.hpp>
#include <boost/graph/depth_first_search.hpp>
#include <queue>

#include "sim/config/schema.h"
#include "sim/core/check.h"

namespace mlsim::wl {

namespace {

struct EdgeProp {
    int from_slot = 0;
    int to_slot = 0;
};
using BoostGraph =
    boost::adjacency_list<boost::vecS, boost::vecS, boost::bidirectionalS, boost::no_property, EdgeProp>;
using Vertex = boost::graph_traits<BoostGraph>::vertex_descriptor;
using GEdge = boost::graph_traits<BoostGraph>::edge_descriptor;

// Records the first back edge a depth-first search meets, and the tree parents to walk the cycle.
struct CycleFinder : boost::default_dfs_visitor {
    std::vector<Vertex>* parent;
    std::optional<std::pair<Vertex, Vertex>>* back;
    void tree_edge(GEdge e, const BoostGraph& g) const {
        (*parent)[boost::target(e, g)] = boost::source(e, g);
    }
    void back_edge(GEdge e, const BoostGraph& g) const {
        if (!*back) *back = std::make_pair(boost::source(e, g), boost::target(e, g));
    }
};

bool edge_less(const Edge& a, const Edge& b) {
    return std::tie(a.to, a.to_slot, a.from, a.from_slot) < std::tie(b.to, b.to_slot, b.from, b.from_slot);
}

}  // namespace

// Vertex i is ops()[i]; edges were added in edges() order, so each vertex's edge lists are sorted too.
struct Model::Graph {
    BoostGraph g;
};

const Model::Graph& Model::graph() const {
    static const Graph empty;
    return m_graph ? *m_graph : empty;
}

// ---- Model

size_t Model::edge_count() const { return boost::num_edges(graph().g); }

const std::vector<Op>& Model::no_ops() {
    static const std::vector<Op> none;
    return none;
}

std::optional<size_t> Model::find(std::string_view name) const {
    if (!m_ops) return std::nullopt;
    auto it = m_ops->index.find(std::string(name));
    if (it == m_ops->index.end()) return std::nullopt;
    return it->second;
}

std::vector<Edge> Model::edges() const {
    const BoostGraph& g = graph().g;
    std::vector<Edge> out;
    for (auto [it, end] = boost::edges(g); it != end; ++it) {
        const EdgeProp& p = g[*it];
        out.push_back(Edge{boost::source(*it, g), p.from_slot, boost::target(*it, g), p.to_slot});
    }
    std::sort(out.begin(), out.end(), edge_less);
    return out;
}

std::vector<Edge> Model::in_edges(size_t i) const {
    const BoostGraph& g = graph().g;
    std::vector<Edge> out;
    for (auto [it, end] = boost::in_edges(i, g); it != end; ++it) {
        const EdgeProp& p = g[*it];
        out.push_back(Edge{boost::source(*it, g), p.from_slot, i, p.to_slot});
    }
    std::sort(out.begin(), out.end(), edge_less);
    return out;
}

std::vector<Edge> Model::out_edges(size_t i) const {
    const BoostGraph& g = graph().g;
    std::vector<Edge> out;
    for (auto [it, end] = boost::out_edges(i, g); it != end; ++it) {
        const EdgeProp& p = g[*it];
        out.push_back(Edge{i, p.from_slot, boost::target(*it, g), p.to_slot});
    }
    std::sort(out.begin(), out.end(), edge_less);
    return out;
}

std::optional<TensorRef> Model::producer(size_t op, int slot) const {
    const BoostGraph& g = graph().g;
    for (auto [it, end] = boost::in_edges(op, g); it != end; ++it)
        if (g[*it].to_slot == slot) return TensorRef{boost::source(*it, g), g[*it].from_slot};
    return std::nullopt;
}

std::vector<ModelInput> Model::inputs() const {
    std::vector<ModelInput> out;
    for (size_t i = 0; i < ops().size(); ++i) {
        std::vector<bool> fed(ops()[i].inputs.size(), false);
        for (const Edge& e : in_edges(i)) fed[static_cast<size_t>(e.to_slot)] = true;
        for (size_t s = 0; s < fed.size(); ++s)
            if (!fed[s]) out.push_back(ModelInput{i, static_cast<int>(s)});
    }
    return out;
}

std::vector<TensorRef> Model::outputs() const {
    std::vector<TensorRef> out;
    for (size_t i = 0; i < ops().size(); ++i) {
        std::vector<bool> read(ops()[i].outputs.size(), false);
        for (const Edge& e : out_edges(i)) read[static_cast<size_t>(e.from_slot)] = true;
        for (size_t s = 0; s < read.size(); ++s)
            if (!read[s]) out.push_back(TensorRef{i, static_cast<int>(s)});
    }
    return out;
}

OpCounts Model::totals() const {
    OpCounts t;
    double stored = 0;
    for (const Op& op : ops()) {
        t += op.counts();
        stored += op.weight_storage_bytes();
    }
    t.weight_bytes = stored;
    return t;
}

double Model::kv_cache_bytes() const {
    double b = 0;
    for (const Op& op : ops()) b += wl::kv_cache_bytes(op);
    return b;
}

// ---- ModelBuilder

ModelBuilder::ModelBuilder(std::string name) : m_name(std::move(name)) {}

size_t ModelBuilder::add(Op op) {
    m_ops.push_back(std::move(op));
    return m_ops.size() - 1;
}

size_t ModelBuilder::add(Op op, const std::vector<std::optional<TensorRef>>& sources) {
    MLSIM_CHECK(sources.size() <= op.inputs.size(), fmt::format("op '{}' has {} inputs but {} sources",
                                                                op.name, op.inputs.size(), sources.size()));
    const size_t id = add(std::move(op));
    for (size_t s = 0; s < sources.size(); ++s)
        if (sources[s]) connect(*sources[s], id, static_cast<int>(s));
    return id;
}

void ModelBuilder::connect(TensorRef from, size_t to, int to_slot) {
    m_edges.push_back(Edge{from.op, from.slot, to, to_slot});
}

void ModelBuilder::connect(std::string from, int from_slot, std::string to, int to_slot, cfg::SourceLoc loc,
                           std::string key_path) {
    m_named.push_back(
        PendingEdge{std::move(from), std::move(to), from_slot, to_slot, std::move(loc), std::move(key_path)});
}

Model ModelBuilder::build() && {
    const size_t n = m_ops.size();
    std::unordered_map<std::string, size_t> index;
    std::vector<std::string> names;
    for (size_t i = 0; i < n; ++i) {
        const Op& op = m_ops[i];
        auto [it, fresh] = index.emplace(op.name, i);
        if (!fresh) {
            const Op& first = m_ops[it->second];
            cfg::fail(op.loc, op.key_path,
                      fmt::format("model '{}': op name '{}' is used twice (first{})", m_name, op.name,
                                  first.loc.file.empty() ? "" : " at " + first.loc.str()));
        }
        names.push_back(op.name);
    }

    // Tied weights must name an op that has weights of its own.
    for (const Op& op : m_ops) {
        if (op.tied_to.empty()) continue;
        auto it = index.find(op.tied_to);
        if (it == index.end() || it->second == index.at(op.name))
            cfg::fail(op.loc, op.key_path,
                      fmt::format("op '{}' ties its weights to '{}', which is not another op of model '{}'",
                                  op.name, op.tied_to, m_name));
        const Op& owner = m_ops[it->second];
        Op untied = op;
        untied.tied_to.clear();
        // A chain (or a cycle: a tied to b, b tied to a) names no owner: tie every op to the one that owns
        // them.
        if (!owner.tied_to.empty())
            cfg::fail(
                op.loc, op.key_path,
                fmt::format("op '{}' ties its weights to '{}', which ties its own to '{}': tie each op to "
                            "the op that owns the weights",
                            op.name, op.tied_to, owner.tied_to));
        if (owner.counts().params == 0 || untied.counts().params != owner.counts().params)
            cfg::fail(
                op.loc, op.key_path,
                fmt::format("op '{}' ties its weights to '{}', which does not own as many weights ({} vs {})",
                            op.name, op.tied_to, untied.counts().params,
                            owner.tied_to.empty() ? owner.counts().params : 0));
    }

    // Resolve named edges; remember where each edge came from for error messages.
    struct Located {
        Edge e;
        cfg::SourceLoc loc;
        std::string key_path;
    };
    std::vector<Located> all;
    for (const Edge& e : m_edges) {
        if (e.from >= n || e.to >= n)
            cfg::fail({}, "",
                      fmt::format("model '{}': edge {} -> {} joins an op that does not exist (model has "
                                  "{} ops)",
                                  m_name, e.from, e.to, n));
        all.push_back(Located{e, m_ops[e.to].loc, m_ops[e.to].key_path});
    }
    for (const PendingEdge& p : m_named) {
        auto resolve = [&](const std::string& name) -> size_t {
            auto it = index.find(name);
            if (it != index.end()) return it->second;
            const std::string near = cfg::nearest(name, names);
            cfg::fail(p.loc, p.key_path,
                      fmt::format("edge '{}' -> '{}': no op named '{}'{}", p.from, p.to, name,
                                  near.empty() ? "" : fmt::format("; did you mean '{}'?", near)));
        };
        const size_t from = resolve(p.from);
        const size_t to = resolve(p.to);
        all.push_back(Located{Edge{from, p.from_slot, to, p.to_slot}, p.loc, p.key_path});
    }

    // Slots, single feeding and shapes.
    std::vector<std::vector<int>> fed(n);
    for (size_t i = 0; i < n; ++i) fed[i].assign(m_ops[i].inputs.size(), -1);
    for (size_t k = 0; k < all.size(); ++k) {
        const Located& l = all[k];
        const Op& src = m_ops[l.e.from];
        const Op& dst = m_ops[l.e.to];
        if (l.e.from_slot < 0 || static_cast<size_t>(l.e.from_slot) >= src.outputs.size())
            cfg::fail(l.loc, l.key_path,
                      fmt::format("edge '{}' -> '{}': op '{}' has no output {} (it has {})", src.name,
                                  dst.name, src.name, l.e.from_slot, src.outputs.size()));
        if (l.e.to_slot < 0 || static_cast<size_t>(l.e.to_slot) >= dst.inputs.size())
            cfg::fail(l.loc, l.key_path,
                      fmt::format("edge '{}' -> '{}': op '{}' has no input {} (it has {})", src.name,
                                  dst.name, dst.name, l.e.to_slot, dst.inputs.size()));
        int& f = fed[l.e.to][static_cast<size_t>(l.e.to_slot)];
        if (f >= 0)
            cfg::fail(l.loc, l.key_path,
                      fmt::format("input {} of op '{}' is fed twice (by '{}' and '{}')", l.e.to_slot,
                                  dst.name, m_ops[all[static_cast<size_t>(f)].e.from].name, src.name));
        f = static_cast<int>(k);
        const Shape& produced = src.outputs[static_cast<size_t>(l.e.from_slot)];
        const Shape& expected = dst.inputs[static_cast<size_t>(l.e.to_slot)];
        if (produced != expected)
            cfg::fail(l.loc, l.key_path,
                      fmt::format("shape mismatch: op '{}' input {} expects {} but op '{}' output {} is {}",
                                  dst.name, l.e.to_slot, shape_str(expected), src.name, l.e.from_slot,
                                  shape_str(produced)));
    }

    BoostGraph g(n);
    for (const Located& l : all) boost::add_edge(l.e.from, l.e.to, EdgeProp{l.e.from_slot, l.e.to_slot}, g);

    // A cycle: Boost's depth-first search reports a back edge u -> v; the tree path v ... u closes it.
    {
        std::vector<Vertex> parent(n);
        for (size_t i = 0; i < n; ++i) parent[i] = i;
        std::optional<std::pair<Vertex, Vertex>> back;
        CycleFinder vis;
        vis.parent = &parent;
        vis.back = &back;
        std::vector<boost::default_color_type> color(n);
        boost::depth_first_search(g, boost::visitor(vis).color_map(boost::make_iterator_property_map(
                                         color.begin(), boost::get(boost::vertex_index, g))));
        if (back) {
            std::vector<std::string> path;
            for (Vertex v = back->first;; v = parent[v]) {
                path.push_back("'" + m_ops[v].name + "'");
                if (v == back->second || parent[v] == v) break;
            }
            std::reverse(path.begin(), path.end());
            path.push_back("'" + m_ops[back->second].name + "'");
            const Op& at = m_ops[back->second];
            cfg::fail(at.loc, at.key_path,
                      fmt::format("model '{}' has a cycle: {}", m_name, fmt::join(path, " -> ")));
        }
    }

    // Kahn's algorithm; ties go to the op added first.
    std::vector<size_t> indeg(n);
    for (size_t i = 0; i < n; ++i) indeg[i] = boost::in_degree(i, g);
    std::priority_queue<size_t, std::vector<size_t>, std::greater<>> ready;
    for (size_t i = 0; i < n; ++i)
        if (indeg[i] == 0) ready.push(i);
    std::vector<size_t> order;
    order.reserve(n);
    while (!ready.empty()) {
        const size_t v = ready.top();
        ready.pop();
        order.push_back(v);
        for (auto [it, end] = boost::out_edges(v, g); it != end; ++it)
            if (--indeg[boost::target(*it, g)] == 0) ready.push(boost::target(*it, g));
    }
    MLSIM_CHECK(order.size() == n, "Kahn's order missed ops of an acyclic graph");

    std::vector<size_t> pos(n);
    for (size_t i = 0; i < n; ++i) pos[order[i]] = i;
    Model m;
    m.m_name = std::move(m_name);
    auto ops = std::make_shared<Model::Ops>();
    if (std::is_sorted(order.begin(), order.end())) {
        // Added in an order already topological (the zoo's models are): the ops stay where they are,
        // and the builder's vector becomes the model's without a second copy of every op alive.
        ops->list = std::move(m_ops);
    } else {
        ops->list.reserve(n);
        for (size_t i = 0; i < n; ++i) ops->list.push_back(std::move(m_ops[order[i]]));
    }
    auto graph = std::make_shared<Model::Graph>(Model::Graph{BoostGraph(n)});
    std::vector<Edge> sorted;
    for (const Located& l : all)
        sorted.push_back(Edge{pos[l.e.from], l.e.from_slot, pos[l.e.to], l.e.to_slot});
    std::sort(sorted.begin(), sorted.end(), edge_less);
    for (const Edge& e : sorted) boost::add_edge(e.from, e.to, EdgeProp{e.from_slot, e.to_slot}, graph->g);
    m.m_graph = std::move(graph);
    for (size_t i = 0; i < n; ++i) ops->index.emplace(ops->list[i].name, i);
    m.m_ops = std::move(ops);
    return m;
}

}  // namespace mlsim::wl
