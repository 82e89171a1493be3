#include "arch/net/impl/routing.h"

#include <algorithm>
#include <limits>
#include <queue>
#include <tuple>

#include "sim/core/check.h"

namespace mlsim::arch::net::impl {

namespace {

uint64_t mix(uint64_t x) {  // splitmix64 finaliser: a fixed, portable hash
    x += 0x9e3779b97f4a7c15ULL;
    x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ULL;
    x = (x ^ (x >> 27)) * 0x94d049bb133111ebULL;
    return x ^ (x >> 31);
}

bool contains(const std::string& s, std::string_view what) { return s.find(what) != std::string::npos; }

}  // namespace

LinkClass link_class_of(const LinkProps& props) {
    std::string k;
    for (char c : props.kind) k += static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
    if (contains(k, "nvlink") || contains(k, "nvl")) return LinkClass::nvlink;
    if (contains(k, "pci")) return LinkClass::pci;
    // InfiniBand, Ethernet, RoCE, ICI and anything unnamed: a network hop.
    return LinkClass::net;
}

struct RouteTable::Tree {
    std::vector<uint32_t> pred_off;  // size V + 1
    std::vector<uint32_t> pred;      // link ids into each vertex on a least-cost path
    std::vector<uint8_t> reached;
};

RouteTable::RouteTable(const Topology& topology) : m_topo(topology) {
    const std::size_t nl = topology.link_count(), nv = topology.vertex_count();
    m_capacity.resize(2 * nl);
    m_hop_latency.resize(2 * nl);
    m_class.resize(nl);
    std::vector<std::vector<std::pair<uint32_t, uint32_t>>> adj(nv);
    for (LinkId id = 0; id < nl; ++id) {
        const Link& l = topology.link(id);
        m_capacity[2 * id] = m_capacity[2 * id + 1] = l.bandwidth_Bps;
        auto sw = [&](VertexId v) {
            const Vertex& x = topology.vertex(v);
            return x.is_switch() ? x.sw.latency.to_seconds() : 0.0;
        };
        m_hop_latency[2 * id] = l.props.latency.to_seconds() + sw(l.b);
        m_hop_latency[2 * id + 1] = l.props.latency.to_seconds() + sw(l.a);
        m_class[id] = link_class_of(l.props);
        adj[l.a].push_back({static_cast<uint32_t>(l.b), static_cast<uint32_t>(id)});
        adj[l.b].push_back({static_cast<uint32_t>(l.a), static_cast<uint32_t>(id)});
    }
    m_adj_off.resize(nv + 1, 0);
    for (std::size_t v = 0; v < nv; ++v) {
        std::sort(adj[v].begin(), adj[v].end(), [](auto x, auto y) { return x.second < y.second; });
        m_adj_off[v + 1] = m_adj_off[v] + static_cast<uint32_t>(adj[v].size());
        m_adj.insert(m_adj.end(), adj[v].begin(), adj[v].end());
    }
    m_trees.resize(nv);
}

RouteTable::~RouteTable() = default;

VertexId RouteTable::head(DirLink d) const {
    const Link& l = m_topo.link(d / 2);
    return (d % 2 == 0) ? l.b : l.a;
}

const RouteTable::Tree& RouteTable::tree(VertexId src) {
    if (m_trees[src]) return *m_trees[src];
    const std::size_t nv = m_topo.vertex_count();
    using Cost = std::pair<int64_t, int64_t>;  // (latency ps, hops)
    constexpr int64_t inf = std::numeric_limits<int64_t>::max();
    std::vector<Cost> dist(nv, Cost{inf, inf});
    std::vector<std::vector<uint32_t>> preds(nv);
    using Item = std::tuple<int64_t, int64_t, uint32_t>;
    std::priority_queue<Item, std::vector<Item>, std::greater<>> q;
    dist[src] = {0, 0};
    q.push({0, 0, static_cast<uint32_t>(src)});
    while (!q.empty()) {
        auto [lat, hops, v] = q.top();
        q.pop();
        if (Cost{lat, hops} != dist[v]) continue;
        for (uint32_t k = m_adj_off[v]; k < m_adj_off[v + 1]; ++k) {
            const auto [w, link] = m_adj[k];
            const Link& l = m_topo.link(link);
            const Vertex& wv = m_topo.vertex(w);
            const int64_t step = l.props.latency.ps() + (wv.is_switch() ? wv.sw.latency.ps() : 0);
            const Cost c{lat + step, hops + 1};
            if (c < dist[w]) {
                dist[w] = c;
                preds[w].assign(1, link);
                q.push({c.first, c.second, w});
            } else if (c == dist[w]) {
                preds[w].push_back(link);
            }
        }
    }
    auto t = std::make_unique<Tree>();
    t->pred_off.resize(nv + 1, 0);
    t->reached.resize(nv, 0);
    for (std::size_t v = 0; v < nv; ++v) {
        t->reached[v] = dist[v].first != inf;
        t->pred_off[v + 1] = t->pred_off[v] + static_cast<uint32_t>(preds[v].size());
        t->pred.insert(t->pred.end(), preds[v].begin(), preds[v].end());
    }
    m_trees[src] = std::move(t);
    return *m_trees[src];
}

bool RouteTable::reachable(VertexId src, VertexId dst) { return tree(src).reached[dst] != 0; }

PathView RouteTable::path(VertexId src, VertexId dst) {
    PathView out;
    m_scratch.clear();
    if (src == dst) return out;
    const Tree& t = tree(src);
    if (!t.reached[dst]) {
        out.latency_s = -1;
        return out;
    }
    const uint64_t flow = mix((static_cast<uint64_t>(src) << 32) ^ static_cast<uint64_t>(dst));
    VertexId at = dst;
    double latency = 0;
    LinkClass cls = LinkClass::nvlink;
    while (at != src) {
        const uint32_t lo = t.pred_off[at], n = t.pred_off[at + 1] - lo;
        MLSIM_CHECK(n > 0, "route walk lost its way");
        const uint32_t pick = n == 1 ? 0 : static_cast<uint32_t>(mix(flow ^ (at * 0x100000001b3ULL)) % n);
        const Link& l = m_topo.link(t.pred[lo + pick]);
        const VertexId from = l.other(at);
        const DirLink d = dir_link(l, from);
        m_scratch.push_back(d);
        latency += m_hop_latency[d];
        cls = std::max(cls, m_class[l.id]);
        at = from;
    }
    std::reverse(m_scratch.begin(), m_scratch.end());
    const Vertex& sv = m_topo.vertex(src);
    if (sv.is_switch()) latency += sv.sw.latency.to_seconds();
    out.hops = m_scratch.data();
    out.size = static_cast<uint32_t>(m_scratch.size());
    out.latency_s = latency;
    out.cls = cls;
    return out;
}

}  // namespace mlsim::arch::net::impl
