#pragma once
// Routes for the network models: one shortest-path DAG per source, with every equal-cost path kept, and a
// deterministic ECMP choice among them.
//
// Contract:
// - A flow from src to dst takes Topology::route(src, dst, h) with h a fixed hash of (src, dst): the one
//   routing rule of topology.h (least latency, then fewer hops; ECMP per flow among equal-cost next hops
//   by the hash; dimension order on tori declared with add_torus). So a pair always takes the same path and
//   different pairs spread over the equal paths, as switches' ECMP does.
// - A path is a list of directed link ids: 2 * link + 0 for Link::a -> Link::b, 2 * link + 1 for b -> a.
// - Trees are built once per source and kept (a few bytes per vertex and source), so asking for many pairs
//   costs one Dijkstra per distinct source.
#include <cstdint>
#include <memory>
#include <unordered_map>
#include <vector>

#include "arch/net/topology.h"

namespace mlsim::arch::net::impl {

using DirLink = uint32_t;

inline DirLink dir_link(const Link& l, VertexId from) {
    return static_cast<DirLink>(2 * l.id + (from == l.a ? 0 : 1));
}

// Link classes for protocol overheads (NCCL's NVLink / PCI / network latency rows).
enum class LinkClass : uint8_t { nvlink = 0, pci = 1, net = 2 };
LinkClass link_class_of(const LinkProps& props);

struct PathView {
    const DirLink* hops = nullptr;
    uint32_t size = 0;
    double latency_s = 0;  // links + switches passed (src and dst included when they are switches)
    LinkClass cls = LinkClass::nvlink;  // the slowest class on the path
};

class RouteTable {
  public:
    explicit RouteTable(const Topology& topology);
    ~RouteTable();
    RouteTable(const RouteTable&) = delete;
    RouteTable& operator=(const RouteTable&) = delete;

    // nullopt-like: size 0 and latency < 0 when dst cannot be reached. The view stays valid until the next
    // call.
    PathView path(VertexId src, VertexId dst);
    bool reachable(VertexId src, VertexId dst);

    const Topology& topology() const { return m_topo; }
    std::size_t resource_count() const { return 2 * m_topo.link_count(); }
    double capacity(DirLink d) const { return m_capacity[d]; }
    LinkClass link_class(DirLink d) const { return m_class[d / 2]; }
    // Latency to cross directed link d, including the switch it enters.
    double hop_latency(DirLink d) const { return m_hop_latency[d]; }
    VertexId head(DirLink d) const;  // the vertex d enters

  private:
    struct Tree;
    const Tree& tree(VertexId src);

    const Topology& m_topo;
    std::vector<double> m_capacity;
    std::vector<double> m_hop_latency;
    std::vector<LinkClass> m_class;
    std::vector<int64_t> m_step_ps;                // per directed link: its latency plus the switch it enters
    std::vector<int64_t> m_dist_lat, m_dist_hops;  // Dijkstra scratch
    // adjacency in CSR form: for vertex v, m_adj[m_adj_off[v] .. m_adj_off[v+1]) = (neighbour, link)
    std::vector<uint32_t> m_adj_off;
    std::vector<std::pair<uint32_t, uint32_t>> m_adj;
    std::vector<std::unique_ptr<Tree>> m_trees;
    std::vector<DirLink> m_scratch;
    Route m_route;  // scratch for Topology::route_into
    // Paths already walked, by (src, dst): their hops live in m_pool. Bounded (m_pool_limit hops); past
    // that, paths are walked again each time (large all-to-alls visit each pair once anyway).
    struct Cached {
        uint32_t off = 0, len = 0;
        double latency_s = 0;
        LinkClass cls = LinkClass::nvlink;
    };
    std::unordered_map<uint64_t, Cached> m_cache;
    std::vector<DirLink> m_pool;
    std::size_t m_pool_limit = std::size_t{1} << 24;
};

}  // namespace mlsim::arch::net::impl
