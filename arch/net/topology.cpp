#include "arch/net/topology.h"

#include <fmt/format.h>

#include <algorithm>
#include <atomic>
#include <boost/graph/adjacency_list.hpp>
#include <boost/graph/connected_components.hpp>
#include <boost/graph/push_relabel_max_flow.hpp>
#include <cmath>
#include <limits>
#include <map>
#include <mutex>
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

uint64_t splitmix64(uint64_t x) {
    x += 0x9E3779B97F4A7C15ull;
    x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9ull;
    x = (x ^ (x >> 27)) * 0x94D049BB133111EBull;
    return x ^ (x >> 31);
}

using CostVector = std::vector<Cost>;

// The lazily built parts that make routes cheap: neighbours sorted by (name, link id) in one array,
// and the cheapest-path costs to each destination asked for. A copy starts empty; adding a vertex or
// a link clears it.
// A neighbour in the route cache, with the cost of the link to it.
struct AdjEntry {
    VertexId vertex = 0;
    LinkId link = 0;
    Cost cost;
};

// What a hop needs of its link, packed (Link itself carries strings).
struct HopData {
    VertexId a = 0, b = 0;
    int64_t latency_ps = 0;
    double bandwidth_Bps = 0;
};

struct RouteCache {
    std::mutex mutex;
    std::atomic<bool> adjacency_ready{false};
    std::vector<std::size_t> adj_begin;  // CSR offsets into adj, one per vertex plus one
    std::vector<AdjEntry> adj;
    std::vector<HopData> hop;             // per link
    std::vector<int64_t> switch_latency;  // per vertex, ps; 0 for devices
    std::vector<std::shared_ptr<const CostVector>> to_dst;
    std::vector<uint8_t> derived;    // per vertex: its cached costs came from its neighbours' (derive_costs)
    std::vector<uint8_t> derivable;  // per vertex: a device whose every link goes to a switch
    std::size_t entries = 0;

    RouteCache() = default;
    RouteCache(const RouteCache&) {}
    RouteCache& operator=(const RouteCache&) {
        clear();
        return *this;
    }
    void clear() {
        std::lock_guard<std::mutex> lock(mutex);
        adjacency_ready = false;
        adj_begin.clear();
        adj.clear();
        hop.clear();
        switch_latency.clear();
        to_dst.clear();
        derived.clear();
        derivable.clear();
        entries = 0;
    }
};

// A torus declared by add_torus: chip ids by index, and for each chip, dimension and direction the link
// to the neighbour (npos where there is none).
struct Torus {
    std::vector<VertexId> chips;
    std::vector<int64_t> dims;
    bool wrap = true;
    std::vector<LinkId> next;  // [(chip * dims + d) * 2 + (0: +, 1: -)]
    static constexpr LinkId none = std::numeric_limits<LinkId>::max();
};

struct TorusMember {
    static constexpr std::size_t none = std::numeric_limits<std::size_t>::max();
    std::size_t torus = none;
    std::size_t index = 0;
};

}  // namespace

struct Topology::Impl {
    Graph graph;
    std::vector<Vertex> vertices;
    std::vector<Link> links;
    std::vector<VertexId> devices;
    std::vector<VertexId> switches;
    std::map<std::string, VertexId, std::less<>> by_name;
    std::vector<Torus> tori;
    std::vector<TorusMember> torus_of;  // by vertex id; torus == none (or past the end): in no torus
    RouteCache cache;

    VertexId add_vertex(std::string name, VertexKind kind, SwitchProps sw) {
        MLSIM_CHECK(!name.empty(), "a topology vertex needs a name");
        MLSIM_CHECK(by_name.find(name) == by_name.end(), "topology vertex '" + name + "' added twice");
        const VertexId id = boost::add_vertex(graph);
        MLSIM_CHECK(id == vertices.size(), "topology vertex ids out of step with the graph");
        by_name.emplace(name, id);
        cache.clear();
        vertices.push_back(Vertex{id, std::move(name), kind, std::move(sw), Placement{}});
        (kind == VertexKind::device ? devices : switches).push_back(id);
        return id;
    }

    int64_t switch_latency_ps(VertexId v) const {
        return vertices[v].is_switch() ? vertices[v].sw.latency.ps() : 0;
    }

    // A link's payload rate (bandwidth x efficiency), which orders parallel links.
    double rate(LinkId id) const { return links[id].bandwidth_Bps * links[id].props.efficiency; }

    // The order of a vertex's links among routes of equal cost: by the neighbour's name, then, between
    // parallel links to one neighbour (an NVLink and a PCIe link between two GPUs, say), the faster first, as
    // NCCL takes the fastest path between two GPUs; then the order they were given in.
    bool link_order(VertexId xv, LinkId xl, VertexId yv, LinkId yl) const {
        if (vertices[xv].name != vertices[yv].name) return vertices[xv].name < vertices[yv].name;
        if (rate(xl) != rate(yl)) return rate(xl) > rate(yl);
        return xl < yl;
    }

    Cost cost(LinkId id) const {
        const Link& l = links[id];
        const int64_t twice = saturating_add(l.props.latency.ps(), l.props.latency.ps());
        return Cost{saturating_add(twice, saturating_add(switch_latency_ps(l.a), switch_latency_ps(l.b))), 1};
    }

    // The cache's adjacency and hop data, built once (double-checked: routes on a built cache take no lock).
    void ensure_adjacency() {
        if (cache.adjacency_ready.load(std::memory_order_acquire)) return;
        std::lock_guard<std::mutex> lock(cache.mutex);
        build_adjacency();
    }

    // Under cache.mutex.
    void build_adjacency() {
        if (cache.adjacency_ready.load(std::memory_order_relaxed)) return;
        const std::size_t n = vertices.size();
        cache.adj_begin.assign(n + 1, 0);
        cache.adj.clear();
        cache.adj.reserve(2 * links.size());
        for (VertexId v = 0; v < n; ++v) {
            cache.adj_begin[v] = cache.adj.size();
            const std::size_t first = cache.adj.size();
            for (auto [it, end] = boost::out_edges(v, graph); it != end; ++it)
                cache.adj.push_back(
                    AdjEntry{boost::target(*it, graph), graph[*it].link, cost(graph[*it].link)});
            std::sort(cache.adj.begin() + static_cast<std::ptrdiff_t>(first), cache.adj.end(),
                      [&](const AdjEntry& x, const AdjEntry& y) {
                          return link_order(x.vertex, x.link, y.vertex, y.link);
                      });
        }
        cache.adj_begin[n] = cache.adj.size();
        cache.hop.clear();
        for (const Link& l : links)
            cache.hop.push_back(HopData{l.a, l.b, l.props.latency.ps(), l.bandwidth_Bps});
        cache.switch_latency.assign(n, 0);
        for (VertexId v = 0; v < n; ++v) cache.switch_latency[v] = switch_latency_ps(v);
        cache.to_dst.assign(n, nullptr);
        cache.derived.assign(n, 0);
        // No sum of link costs can saturate (then the order of the additions does not matter): a device
        // whose links all go to switches takes its costs from theirs (derive_costs).
        int64_t total = 0;
        for (const AdjEntry& e : cache.adj) total = saturating_add(total, e.cost.latency2_ps);
        const bool exact = total < std::numeric_limits<int64_t>::max() / 2;
        cache.derivable.assign(n, 0);
        for (VertexId v = 0; v < n; ++v) {
            bool all = exact && !vertices[v].is_switch() && cache.adj_begin[v] < cache.adj_begin[v + 1];
            for (std::size_t i = cache.adj_begin[v]; all && i < cache.adj_begin[v + 1]; ++i)
                all = vertices[cache.adj[i].vertex].is_switch();
            cache.derivable[v] = all ? 1 : 0;
        }
        cache.entries = 0;
        cache.adjacency_ready.store(true, std::memory_order_release);
    }

    // Cheapest-path costs from every vertex to dst (the graph is undirected, so the costs from dst): Dijkstra
    // with a binary heap over the cached adjacency, whose link costs are precomputed.
    CostVector dijkstra_to(VertexId dst) const {
        const std::size_t n = vertices.size();
        CostVector dist(n, infinite_cost);
        struct Item {
            Cost cost;
            VertexId v;
        };
        auto later = [](const Item& x, const Item& y) { return CostLess{}(y.cost, x.cost); };
        std::vector<Item> heap;
        heap.reserve(n);
        dist[dst] = Cost{};
        heap.push_back(Item{Cost{}, dst});
        while (!heap.empty()) {
            std::pop_heap(heap.begin(), heap.end(), later);
            const Item top = heap.back();
            heap.pop_back();
            if (CostLess{}(dist[top.v], top.cost)) continue;  // a stale entry
            for (std::size_t i = cache.adj_begin[top.v]; i < cache.adj_begin[top.v + 1]; ++i) {
                const AdjEntry& e = cache.adj[i];
                const Cost c = CostPlus{}(top.cost, e.cost);
                if (CostLess{}(c, dist[e.vertex])) {
                    dist[e.vertex] = c;
                    heap.push_back(Item{c, e.vertex});
                    std::push_heap(heap.begin(), heap.end(), later);
                }
            }
        }
        return dist;
    }

    // The costs to a device whose every link goes to a switch, from those switches' costs: a cheapest path
    // to dst ends with one of its links (u, c), and what comes before is a cheapest path to u, so
    // cost(v, dst) is at least the least cost(v, u) + c; and each cost(v, u) + c is the cost of a walk to
    // dst (through dst itself, maybe, which only makes it dearer than reaching dst), so it is at most that.
    // Equal, exactly: the costs are whole numbers that no sum saturates (build_adjacency). A few thousand
    // additions per link instead of a Dijkstra over the graph, and the switches' costs serve every device on
    // them (a 4,096-GPU fabric has 672 switches).
    CostVector derive_costs(VertexId dst) {
        CostVector dist(vertices.size(), infinite_cost);
        for (std::size_t i = cache.adj_begin[dst]; i < cache.adj_begin[dst + 1]; ++i) {
            const AdjEntry& e = cache.adj[i];
            const std::shared_ptr<const CostVector> from = costs_to(e.vertex);
            for (std::size_t v = 0; v < dist.size(); ++v) {
                const Cost c = CostPlus{}((*from)[v], e.cost);
                if (CostLess{}(c, dist[v])) dist[v] = c;
            }
        }
        dist[dst] = Cost{};
        return dist;
    }

    // The cached costs to dst, computed on first use; with the adjacency ready. Over max_cached_costs
    // entries the derived costs go first (cheap to derive again), then all.
    std::shared_ptr<const CostVector> costs_to(VertexId dst) {
        bool derivable = false;
        {
            std::lock_guard<std::mutex> lock(cache.mutex);
            build_adjacency();
            if (cache.to_dst[dst]) return cache.to_dst[dst];
            derivable = cache.derivable[dst] != 0;
        }
        auto dist = std::make_shared<const CostVector>(derivable ? derive_costs(dst) : dijkstra_to(dst));
        std::lock_guard<std::mutex> lock(cache.mutex);
        if (cache.to_dst[dst]) return cache.to_dst[dst];
        if (cache.entries + dist->size() > max_cached_costs) {
            for (std::size_t v = 0; v < cache.to_dst.size(); ++v)
                if (cache.to_dst[v] && cache.derived[v]) {
                    cache.entries -= cache.to_dst[v]->size();
                    cache.to_dst[v] = nullptr;
                }
        }
        if (cache.entries + dist->size() > max_cached_costs) {
            std::fill(cache.to_dst.begin(), cache.to_dst.end(), nullptr);
            cache.entries = 0;
        }
        cache.to_dst[dst] = dist;
        cache.derived[dst] = derivable ? 1 : 0;
        cache.entries += dist->size();
        return dist;
    }

    // The neighbours of v that stay on a cheapest path to the destination of `dist`, in link_order, written
    // to `out`; of parallel links to one neighbour only the fastest (those as fast).
    void next_hops(VertexId v, const CostVector& dist, std::vector<Neighbour>& out) const {
        out.clear();
        const Cost here = dist[v];
        for (std::size_t i = cache.adj_begin[v]; i < cache.adj_begin[v + 1]; ++i) {
            const AdjEntry& nb = cache.adj[i];
            const Cost& there = dist[nb.vertex];
            if (there == infinite_cost) continue;
            if (CostPlus{}(there, nb.cost) != here) continue;
            // The adjacency lists a neighbour's parallel links fastest first (link_order).
            if (!out.empty() && out.back().vertex == nb.vertex && rate(nb.link) < rate(out.back().link))
                continue;
            out.push_back(Neighbour{nb.vertex, nb.link});
        }
    }

    // With the adjacency ready.
    void append_hop(Route& r, int64_t& latency_ps, LinkId id, VertexId from) const {
        const HopData& l = cache.hop[id];
        const VertexId to = l.a == from ? l.b : l.a;
        r.hops.push_back(Hop{id, from, to});
        latency_ps = saturating_add(latency_ps, saturating_add(l.latency_ps, cache.switch_latency[to]));
        r.bottleneck_Bps = std::min(r.bottleneck_Bps, l.bandwidth_Bps);
    }

    void torus_route(const Torus& t, std::size_t a, std::size_t b, uint64_t flow_hash, Route& r,
                     int64_t& latency_ps) const {
        const std::size_t nd = t.dims.size();
        const uint64_t tie_bits = flow_hash == 0 ? 0 : splitmix64(flow_hash);
        std::size_t at = a;
        std::size_t stride = 1;
        for (std::size_t d = 0; d < nd; ++d) {
            const int64_t k = t.dims[d];
            const int64_t xa = static_cast<int64_t>(at / stride) % k;
            const int64_t xb = static_cast<int64_t>(b / stride) % k;
            int64_t steps = 0;
            int dir = 0;  // 0: +, 1: -
            if (t.wrap) {
                const int64_t fwd = ((xb - xa) % k + k) % k;
                const int64_t back = (k - fwd) % k;
                if (fwd < back || (fwd == back && ((tie_bits >> (d % 64)) & 1) == 0)) {
                    steps = fwd;
                } else {
                    steps = back;
                    dir = 1;
                }
            } else {
                steps = xb >= xa ? xb - xa : xa - xb;
                dir = xb >= xa ? 0 : 1;
            }
            int64_t x = xa;
            for (int64_t s = 0; s < steps; ++s) {
                const LinkId id = t.next[(at * nd + d) * 2 + static_cast<std::size_t>(dir)];
                MLSIM_CHECK(id != Torus::none, "a torus chip without the link to its neighbour");
                append_hop(r, latency_ps, id, t.chips[at]);
                const int64_t nx = dir == 0 ? (x + 1) % k : (x + k - 1) % k;
                at = static_cast<std::size_t>(static_cast<int64_t>(at) +
                                              (nx - x) * static_cast<int64_t>(stride));
                x = nx;
            }
            stride *= static_cast<std::size_t>(k);
        }
        MLSIM_CHECK(at == b, "dimension-order routing missed its destination");
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
    im.cache.clear();
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
        return im.link_order(x.vertex, x.link, y.vertex, y.link);
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

std::optional<Route> Topology::route(VertexId src, VertexId dst) const { return route(src, dst, 0); }

std::optional<Route> Topology::route(VertexId src, VertexId dst, uint64_t flow_hash) const {
    Route r;
    if (!route_into(src, dst, flow_hash, r)) return std::nullopt;
    return r;
}

bool Topology::route_into(VertexId src, VertexId dst, uint64_t flow_hash, Route& r) const {
    Impl& im = *m_impl;
    (void)vertex(src);
    (void)vertex(dst);
    r.src = src;
    r.dst = dst;
    r.hops.clear();
    r.latency = Tick::zero();
    r.bottleneck_Bps = std::numeric_limits<double>::infinity();
    if (src == dst) return true;

    int64_t latency_ps = im.switch_latency_ps(src);
    im.ensure_adjacency();
    if (!im.tori.empty()) {
        const std::size_t n = im.torus_of.size();
        const TorusMember a = src < n ? im.torus_of[src] : TorusMember{};
        const TorusMember b = dst < n ? im.torus_of[dst] : TorusMember{};
        if (a.torus != TorusMember::none && a.torus == b.torus) {
            im.torus_route(im.tori[a.torus], a.index, b.index, flow_hash, r, latency_ps);
            r.latency = Tick::from_ps(latency_ps);
            return true;
        }
    }

    // The walk from src takes, at each vertex, one of the next hops that stay on a cheapest path, in
    // (name, link id) order: the first for flow_hash 0, which yields the smallest name sequence among all
    // cheapest routes.
    const std::shared_ptr<const CostVector> dist = im.costs_to(dst);
    if ((*dist)[src] == infinite_cost) return false;
    thread_local std::vector<Neighbour> next;
    VertexId at = src;
    while (at != dst) {
        im.next_hops(at, *dist, next);
        MLSIM_CHECK(!next.empty(),
                    "route walk left the shortest-path tree at '" + im.vertices[at].name + "'");
        const std::size_t pick =
            flow_hash == 0 || next.size() == 1
                ? 0
                : static_cast<std::size_t>(splitmix64(flow_hash ^ splitmix64(at)) % next.size());
        im.append_hop(r, latency_ps, next[pick].link, at);
        at = next[pick].vertex;
    }
    r.latency = Tick::from_ps(latency_ps);
    return true;
}

std::size_t Topology::equal_cost_next_hops(VertexId at, VertexId dst) const {
    Impl& im = *m_impl;
    (void)vertex(at);
    (void)vertex(dst);
    if (at == dst) return 0;
    const std::shared_ptr<const CostVector> dist = im.costs_to(dst);
    if ((*dist)[at] == infinite_cost) return 0;
    std::vector<Neighbour> next;
    im.next_hops(at, *dist, next);
    return next.size();
}

void Topology::set_placement(VertexId id, Placement place) {
    (void)vertex(id);
    m_impl->vertices[id].place = std::move(place);
}

void Topology::add_torus(const std::vector<VertexId>& chips, const std::vector<int64_t>& dims, bool wrap) {
    Impl& im = *m_impl;
    MLSIM_CHECK(!dims.empty(), "a torus needs a dimension");
    std::size_t total = 1;
    for (int64_t k : dims) {
        MLSIM_CHECK(k >= 1, "a torus dimension below 1");
        total *= static_cast<std::size_t>(k);
    }
    MLSIM_CHECK(total == chips.size(), "a torus whose dimensions do not multiply to its chip count");
    Torus t;
    t.chips = chips;
    t.dims = dims;
    t.wrap = wrap;
    const std::size_t nd = dims.size();
    t.next.assign(total * nd * 2, Torus::none);
    // The lowest link id between two vertices.
    auto link_between = [&](VertexId u, VertexId v) {
        LinkId best = Torus::none;
        for (auto [it, end] = boost::out_edges(u, im.graph); it != end; ++it)
            if (boost::target(*it, im.graph) == v) best = std::min(best, im.graph[*it].link);
        return best;
    };
    const std::size_t index = im.tori.size();
    if (im.torus_of.size() < im.vertices.size()) im.torus_of.resize(im.vertices.size());
    for (std::size_t i = 0; i < total; ++i) {
        MLSIM_CHECK(im.torus_of[chips[i]].torus == TorusMember::none, "a chip in two tori");
        im.torus_of[chips[i]] = TorusMember{index, i};
        std::vector<int64_t> coords;
        std::size_t stride = 1;
        for (std::size_t d = 0; d < nd; ++d) {
            const int64_t k = dims[d];
            const int64_t x = static_cast<int64_t>(i / stride) % k;
            coords.push_back(x);
            for (int dir = 0; dir < 2; ++dir) {
                const int64_t nx = dir == 0 ? x + 1 : x - 1;
                if (k == 1 || (!wrap && (nx < 0 || nx >= k))) continue;
                const int64_t wrapped = (nx + k) % k;
                const std::size_t j = i + static_cast<std::size_t>(wrapped * static_cast<int64_t>(stride)) -
                                      static_cast<std::size_t>(x * static_cast<int64_t>(stride));
                const LinkId id = link_between(chips[i], chips[j]);
                MLSIM_CHECK(id != Torus::none, "torus chips '" + im.vertices[chips[i]].name + "' and '" +
                                                   im.vertices[chips[j]].name + "' are not joined");
                t.next[(i * nd + d) * 2 + static_cast<std::size_t>(dir)] = id;
            }
            stride *= static_cast<std::size_t>(k);
        }
        im.vertices[chips[i]].place.coords = std::move(coords);
    }
    im.tori.push_back(std::move(t));
}

double Topology::max_flow_Bps(const std::vector<VertexId>& a, const std::vector<VertexId>& b) const {
    const Impl& im = *m_impl;
    using Traits = boost::adjacency_list_traits<boost::vecS, boost::vecS, boost::directedS>;
    using FlowGraph = boost::adjacency_list<
        boost::vecS, boost::vecS, boost::directedS, boost::no_property,
        boost::property<boost::edge_capacity_t, int64_t,
                        boost::property<boost::edge_residual_capacity_t, int64_t,
                                        boost::property<boost::edge_reverse_t, Traits::edge_descriptor>>>>;
    const std::size_t n = im.vertices.size();
    FlowGraph g(n + 2);
    const std::size_t source = n, sink = n + 1;
    auto capacity = boost::get(boost::edge_capacity, g);
    auto reverse = boost::get(boost::edge_reverse, g);
    auto arc = [&](std::size_t u, std::size_t v, int64_t cap) {
        const auto e = boost::add_edge(u, v, g).first;
        const auto back = boost::add_edge(v, u, g).first;
        capacity[e] = cap;
        capacity[back] = 0;
        reverse[e] = back;
        reverse[back] = e;
    };
    int64_t total = 1;
    for (const Link& l : im.links) {
        const auto cap = static_cast<int64_t>(std::llround(l.bandwidth_Bps / 1e6));
        arc(l.a, l.b, cap);
        arc(l.b, l.a, cap);
        total = saturating_add(total, cap);
    }
    std::vector<char> side(n, 0);
    for (VertexId v : a) {
        (void)vertex(v);
        side[v] = 1;
        arc(source, v, total);
    }
    for (VertexId v : b) {
        (void)vertex(v);
        MLSIM_CHECK(side[v] != 1, "max_flow_Bps: a vertex on both sides");
        arc(v, sink, total);
    }
    if (a.empty() || b.empty()) return 0;
    const int64_t flow = boost::push_relabel_max_flow(g, source, sink);
    return static_cast<double>(flow) * 1e6;
}

}  // namespace mlsim::arch::net
