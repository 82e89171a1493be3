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
    m_step_ps.resize(2 * nl);
    std::vector<std::vector<std::pair<uint32_t, uint32_t>>> adj(nv);
    for (LinkId id = 0; id < nl; ++id) {
        const Link& l = topology.link(id);
        // payload rate: the line rate less the link's packet overhead (LinkProps::efficiency)
        m_capacity[2 * id] = m_capacity[2 * id + 1] = l.bandwidth_Bps * l.props.efficiency;
        auto sw = [&](VertexId v) {
            const Vertex& x = topology.vertex(v);
            return x.is_switch() ? x.sw.latency.to_seconds() : 0.0;
        };
        m_hop_latency[2 * id] = l.props.latency.to_seconds() + sw(l.b);
        m_hop_latency[2 * id + 1] = l.props.latency.to_seconds() + sw(l.a);
        m_class[id] = link_class_of(l.props);
        m_step_ps[2 * id] = l.props.latency.ps() +
                            (topology.vertex(l.b).is_switch() ? topology.vertex(l.b).sw.latency.ps() : 0);
        m_step_ps[2 * id + 1] = l.props.latency.ps() +
                                (topology.vertex(l.a).is_switch() ? topology.vertex(l.a).sw.latency.ps() : 0);
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
    constexpr int64_t inf = std::numeric_limits<int64_t>::max();
    // cost = (latency ps, hops), compared lexicographically
    m_dist_lat.assign(nv, inf);
    m_dist_hops.assign(nv, inf);
    using Item = std::tuple<int64_t, int64_t, uint32_t>;
    std::priority_queue<Item, std::vector<Item>, std::greater<>> q;
    m_dist_lat[src] = 0;
    m_dist_hops[src] = 0;
    q.push({0, 0, static_cast<uint32_t>(src)});
    while (!q.empty()) {
        const auto [lat, hops, v] = q.top();
        q.pop();
        if (lat != m_dist_lat[v] || hops != m_dist_hops[v]) continue;
        for (uint32_t k = m_adj_off[v]; k < m_adj_off[v + 1]; ++k) {
            const auto [w, link] = m_adj[k];
            const int64_t l2 = lat + m_step_ps[link * 2 + (m_topo.link(link).a == v ? 0 : 1)];
            if (l2 < m_dist_lat[w] || (l2 == m_dist_lat[w] && hops + 1 < m_dist_hops[w])) {
                m_dist_lat[w] = l2;
                m_dist_hops[w] = hops + 1;
                q.push({l2, hops + 1, w});
            }
        }
    }
    // every link into v from a u with dist(u) + step == dist(v) lies on a least-cost path
    auto t = std::make_unique<Tree>();
    t->pred_off.resize(nv + 1, 0);
    t->reached.resize(nv, 0);
    for (std::size_t v = 0; v < nv; ++v) {
        t->reached[v] = m_dist_lat[v] != inf;
        if (t->reached[v] && v != src)
            for (uint32_t k = m_adj_off[v]; k < m_adj_off[v + 1]; ++k) {
                const auto [u, link] = m_adj[k];
                if (m_dist_lat[u] == inf) continue;
                const int64_t step = m_step_ps[link * 2 + (m_topo.link(link).a == u ? 0 : 1)];
                if (m_dist_lat[u] + step == m_dist_lat[v] && m_dist_hops[u] + 1 == m_dist_hops[v])
                    t->pred.push_back(link);
            }
        t->pred_off[v + 1] = static_cast<uint32_t>(t->pred.size());
    }
    t->pred.shrink_to_fit();
    m_trees[src] = std::move(t);
    return *m_trees[src];
}

bool RouteTable::reachable(VertexId src, VertexId dst) { return tree(src).reached[dst] != 0; }

PathView RouteTable::path(VertexId src, VertexId dst) {
    PathView out;
    m_scratch.clear();
    if (src == dst) return out;
    const uint64_t key = (static_cast<uint64_t>(src) << 32) | static_cast<uint64_t>(dst);
    if (const auto it = m_cache.find(key); it != m_cache.end()) {
        out.hops = m_pool.data() + it->second.off;
        out.size = it->second.len;
        out.latency_s = it->second.latency_s;
        out.cls = it->second.cls;
        return out;
    }
    // One routing rule for the whole project: Topology::route (topology.h), with this pair's flow hash:
    // dimension order on tori, ECMP by the hash elsewhere.
    const uint64_t flow = mix((static_cast<uint64_t>(src) << 32) ^ static_cast<uint64_t>(dst));
    if (!m_topo.route_into(src, dst, flow, m_route)) {
        out.latency_s = -1;
        return out;
    }
    double latency = 0;
    LinkClass cls = LinkClass::nvlink;
    for (const Hop& h : m_route.hops) {
        const Link& l = m_topo.link(h.link);
        const DirLink d = dir_link(l, h.from);
        m_scratch.push_back(d);
        latency += m_hop_latency[d];
        cls = std::max(cls, m_class[l.id]);
    }
    const Vertex& sv = m_topo.vertex(src);
    if (sv.is_switch()) latency += sv.sw.latency.to_seconds();
    out.size = static_cast<uint32_t>(m_scratch.size());
    out.latency_s = latency;
    out.cls = cls;
    if (m_pool.size() + m_scratch.size() <= m_pool_limit) {
        const Cached c{static_cast<uint32_t>(m_pool.size()), out.size, latency, cls};
        if (m_pool.capacity() < m_pool.size() + m_scratch.size())
            m_pool.reserve(std::max(m_pool.size() + m_scratch.size(), 2 * m_pool.capacity()));
        m_pool.insert(m_pool.end(), m_scratch.begin(), m_scratch.end());
        m_cache.emplace(key, c);
        out.hops = m_pool.data() + c.off;
    } else {
        out.hops = m_scratch.data();
    }
    return out;
}

}  // namespace mlsim::arch::net::impl
