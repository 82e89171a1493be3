#include "arch/net/topology.h"

#include <fmt/format.h>

#include <algorithm>
#include <boost/graph/adjacency_list.hpp>
#include <boost/graph/connected_components.hpp>
#include <boost/graph/dijkstra_shortest_paths.hpp>
#include <boost/property_map/function_property_map.hpp>
#include <limits>
#include <map>
#include <tuple>
#include <utility>

#include "sim/core/check.h"

namespace mlsim::arch::net {

namespace {

struct EdgeData {
    LinkId link = 0;
};

// Vertex descriptors of a vecS graph are the vertex ids, so no vertex property is needed.
using Graph =
    boost::adjacency_list<boost::vecS, boost::vecS, boost::undirectedS, boost::no_property, EdgeData>;
using EdgeDesc = boost::graph_traits<Graph>::edge_descriptor;
using VertexDesc = boost::graph_traits<Graph>::vertex_descriptor;

// The cost Dijkstra minimises: latency first, then hops. A switch's latency is split over the two
// links of a route that touch it; halves would not stay whole picoseconds, so the cost counts twice
// the latency (an endpoint that is a switch then counts once, the same on every route, which leaves
// the choice of route unchanged).
struct Cost {
    int64_t latency2_ps = 0;
    int64_t hops = 0;
    friend bool operator==(const Cost&, const Cost&) = default;
};

constexpr Cost infinite_cost{std::numeric_limits<int64_t>::max(), std::numeric_limits<int64_t>::max()};

struct CostLess {
    bool operator()(const Cost& x, const Cost& y) const {
        return std::tie(x.latency2_ps, x.hops) < std::tie(y.latency2_ps, y.hops);
    }
};

int64_t saturating_add(int64_t x, int64_t y) {
    int64_t r = 0;
    return __builtin_add_overflow(x, y, &r) ? std::numeric_limits<int64_t>::max() : r;
}

// Boost relaxes an undirected edge from either end, so an infinite distance may be combined: saturate.
struct CostPlus {
    Cost operator()(const Cost& x, const Cost& y) const {
        if (x == infinite_cost || y == infinite_cost) return infinite_cost;
        return Cost{saturating_add(x.latency2_ps, y.latency2_ps), saturating_add(x.hops, y.hops)};
    }
};

}  // namespace

struct Topology::Impl {
    Graph graph;
    std::vector<Vertex> vertices;
    std::vector<Link> links;
    std::vector<VertexId> devices;
    std::vector<VertexId> switches;
    std::map<std::string, VertexId, std::less<>> by_name;

    VertexId add_vertex(std::string name, VertexKind kind, SwitchProps sw) {
        MLSIM_CHECK(!name.empty(), "a topology vertex needs a name");
        MLSIM_CHECK(by_name.find(name) == by_name.end(), "topology vertex '" + name + "' added twice");
        const VertexId id = boost::add_vertex(graph);
        MLSIM_CHECK(id == vertices.size(), "topology vertex ids out of step with the graph");
        by_name.emplace(name, id);
        vertices.push_back(Vertex{id, std::move(name), kind, std::move(sw)});
        (kind == VertexKind::device ? devices : switches).push_back(id);
        return id;
    }

    int64_t switch_latency_ps(VertexId v) const {
        return vertices[v].is_switch() ? vertices[v].sw.latency.ps() : 0;
    }

    Cost cost(LinkId id) const {
        const Link& l = links[id];
        const int64_t twice = saturating_add(l.props.latency.ps(), l.props.latency.ps());
        return Cost{saturating_add(twice, saturating_add(switch_latency_ps(l.a), switch_latency_ps(l.b))), 1};
    }
};

VertexId Link::other(VertexId v) const {
    MLSIM_CHECK(v == a || v == b, fmt::format("vertex {} is not an end of link {}", v, id));
    return v == a ? b : a;
}

std::vector<LinkId> Route::links() const {
    std::vector<LinkId> out;
    out.reserve(hops.size());
    for (const Hop& h : hops) out.push_back(h.link);
    return out;
}

std::vector<VertexId> Route::vertices() const {
    std::vector<VertexId> out{src};
    for (const Hop& h : hops) out.push_back(h.to);
    return out;
}

Topology::Topology() : m_impl(std::make_unique<Impl>()) {}
Topology::~Topology() = default;
Topology::Topology(const Topology& other) : m_impl(std::make_unique<Impl>(*other.m_impl)) {}
Topology& Topology::operator=(const Topology& other) {
    if (this != &other) m_impl = std::make_unique<Impl>(*other.m_impl);
    return *this;
}
Topology::Topology(Topology&& other) noexcept = default;
Topology& Topology::operator=(Topology&& other) noexcept = default;

VertexId Topology::add_device(std::string name) {
    return m_impl->add_vertex(std::move(name), VertexKind::device, SwitchProps{});
}

VertexId Topology::add_switch(std::string name, SwitchProps props) {
    MLSIM_CHECK(
        props.port_bandwidth_Bps >= 0 && props.latency >= Tick::zero() && props.energy_J_per_byte >= 0,
        "switch '" + name + "' has a negative figure");
    return m_impl->add_vertex(std::move(name), VertexKind::network_switch, std::move(props));
}

LinkId Topology::add_link(VertexId a, VertexId b, LinkProps props) {
    Impl& im = *m_impl;
    MLSIM_CHECK(
        a < im.vertices.size() && b < im.vertices.size(),
        fmt::format("link between vertices {} and {} of a topology with {}", a, b, im.vertices.size()));
    MLSIM_CHECK(a != b, "a link from '" + im.vertices[a].name + "' to itself");
    MLSIM_CHECK(
        props.bandwidth_Bps > 0 && props.count >= 1 && props.latency >= Tick::zero() &&
            props.energy_J_per_byte >= 0,
        "link '" + im.vertices[a].name + "' - '" + im.vertices[b].name + "' has a figure out of range");
    double per_link = props.bandwidth_Bps;
    for (VertexId v : {a, b}) {
        const Vertex& end = im.vertices[v];
        if (end.is_switch() && end.sw.port_bandwidth_Bps > 0)
            per_link = std::min(per_link, end.sw.port_bandwidth_Bps);
    }
    const LinkId id = im.links.size();
    const double effective = per_link * static_cast<double>(props.count);
    im.links.push_back(Link{id, a, b, std::move(props), effective});
    boost::add_edge(a, b, EdgeData{id}, im.graph);
    return id;
}

std::size_t Topology::vertex_count() const { return m_impl->vertices.size(); }
std::size_t Topology::link_count() const { return m_impl->links.size(); }
const std::vector<VertexId>& Topology::devices() const { return m_impl->devices; }
const std::vector<VertexId>& Topology::switches() const { return m_impl->switches; }

const Vertex& Topology::vertex(VertexId id) const {
    MLSIM_CHECK(id < m_impl->vertices.size(), fmt::format("no topology vertex {}", id));
    return m_impl->vertices[id];
}

const Link& Topology::link(LinkId id) const {
    MLSIM_CHECK(id < m_impl->links.size(), fmt::format("no topology link {}", id));
    return m_impl->links[id];
}

std::optional<VertexId> Topology::find(std::string_view name) const {
    auto it = m_impl->by_name.find(name);
    if (it == m_impl->by_name.end()) return std::nullopt;
    return it->second;
}

std::optional<VertexId> Topology::find_device(std::string_view name) const {
    std::optional<VertexId> v = find(name);
    return v && vertex(*v).is_device() ? v : std::nullopt;
}

std::optional<VertexId> Topology::find_switch(std::string_view name) const {
    std::optional<VertexId> v = find(name);
    return v && vertex(*v).is_switch() ? v : std::nullopt;
}

std::vector<Neighbour> Topology::neighbours(VertexId id) const {
    const Impl& im = *m_impl;
    (void)vertex(id);
    std::vector<Neighbour> out;
    for (auto [it, end] = boost::out_edges(id, im.graph); it != end; ++it)
        out.push_back(Neighbour{boost::target(*it, im.graph), im.graph[*it].link});
    std::sort(out.begin(), out.end(), [&](const Neighbour& x, const Neighbour& y) {
        return std::tie(im.vertices[x.vertex].name, x.link) < std::tie(im.vertices[y.vertex].name, y.link);
    });
    return out;
}

std::vector<VertexId> Topology::unreachable_from(VertexId from) const {
    const Impl& im = *m_impl;
    (void)vertex(from);
    std::vector<int> component(im.vertices.size(), 0);
    boost::connected_components(im.graph, component.data());
    std::vector<VertexId> out;
    for (VertexId v = 0; v < component.size(); ++v)
        if (component[v] != component[from]) out.push_back(v);
    return out;
}

bool Topology::connected() const { return m_impl->vertices.empty() || unreachable_from(0).empty(); }

std::optional<Route> Topology::route(VertexId src, VertexId dst) const {
    const Impl& im = *m_impl;
    (void)vertex(src);
    (void)vertex(dst);
    Route r;
    r.src = src;
    r.dst = dst;
    r.bottleneck_Bps = std::numeric_limits<double>::infinity();
    if (src == dst) return r;

    // Costs to dst from every vertex (the graph is undirected, so they are the costs from it). The walk
    // from src then takes, at each vertex, the first next hop in (name, link id) order that stays on a
    // cheapest path: that yields the smallest name sequence among all cheapest routes.
    const std::size_t n = im.vertices.size();
    std::vector<Cost> dist(n, infinite_cost);
    std::vector<VertexDesc> pred(n);
    const auto index = boost::get(boost::vertex_index, im.graph);
    const auto weight = boost::make_function_property_map<EdgeDesc, Cost>(
        [&im](const EdgeDesc& e) { return im.cost(im.graph[e].link); });
    boost::dijkstra_shortest_paths(
        im.graph, dst,
        boost::predecessor_map(boost::make_iterator_property_map(pred.begin(), index))
            .distance_map(boost::make_iterator_property_map(dist.begin(), index))
            .weight_map(weight)
            .distance_compare(CostLess{})
            .distance_combine(CostPlus{})
            .distance_inf(infinite_cost)
            .distance_zero(Cost{}));
    if (dist[src] == infinite_cost) return std::nullopt;

    int64_t latency_ps = im.switch_latency_ps(src);
    VertexId at = src;
    while (at != dst) {
        std::optional<Neighbour> next;
        for (const Neighbour& nb : neighbours(at)) {
            if (dist[nb.vertex] == infinite_cost) continue;
            if (CostPlus{}(dist[nb.vertex], im.cost(nb.link)) == dist[at]) {
                next = nb;  // neighbours() is in (name, link id) order: the first match wins
                break;
            }
        }
        MLSIM_CHECK(next.has_value(),
                    "route walk left the shortest-path tree at '" + im.vertices[at].name + "'");
        const Link& l = im.links[next->link];
        r.hops.push_back(Hop{l.id, at, next->vertex});
        latency_ps = saturating_add(latency_ps,
                                    saturating_add(l.props.latency.ps(), im.switch_latency_ps(next->vertex)));
        r.bottleneck_Bps = std::min(r.bottleneck_Bps, l.bandwidth_Bps);
        at = next->vertex;
    }
    r.latency = Tick::from_ps(latency_ps);
    return r;
}

}  // namespace mlsim::arch::net
