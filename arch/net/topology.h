#pragma once
// The interconnect of a multi-device system as a graph: vertices are devices and switches, edges are
// links. A builder (arch/system/system_spec.cpp, from a system file) adds every vertex and link once;
// afterwards the topology is read-only and answers name lookups, neighbours and routes.
//
// Contract:
// - Vertex ids and link ids are dense and assigned in insertion order (0, 1, ...). Names are unique
//   across devices and switches. Adding a duplicate name, a link to a vertex that does not exist or a
//   link from a vertex to itself is an internal error: the config loader reports those as UserErrors
//   before it builds a topology.
// - A link is full duplex: its bandwidth is per direction, and both directions can run at once.
//   `count` parallel links act as one wider link; its effective bandwidth (Link::bandwidth_Bps) is
//   count x the per-link bandwidth, each parallel link capped at the per-port bandwidth of a switch it
//   plugs into (one port per parallel link).
// - route(src, dst) is the path of least latency, where the latency of a path is the sum of its links'
//   latencies plus the latency of every switch on it (an endpoint that is a switch included). Ties go
//   to fewer hops, then to the lexicographically smallest sequence of vertex names, then, between parallel
//   links to one neighbour, to the faster (bandwidth x efficiency, as NCCL takes the fastest path between
//   two GPUs), then to the lower link id, so a route is a pure function of the graph, never of insertion
//   or hash order. Latencies
//   are whole picoseconds (sim/core/time.h), so equal sums are real ties. Vertices in different
//   components have no route (nullopt); src == dst is the empty route (zero latency, infinite
//   bottleneck).
// - route(src, dst, flow_hash) spreads flows over equal-cost paths (ECMP), deterministically: the walk
//   from src to dst takes, at every vertex with k > 1 next hops that stay on a cheapest path (in
//   (name, link id) order; of parallel links to one neighbour only the fastest), choice number
//   splitmix64(flow_hash ^ splitmix64(vertex id)) mod k.
//   flow_hash 0 always takes choice 0, so route(src, dst, 0) == route(src, dst). A model gives each
//   flow its own hash (e.g. from (src, dst, flow index)) to spread flows over the spines of a fat tree
//   or the planes of a switch; the same hash always gives the same path.
// - Tori (add_torus): between two chips of one torus, route() uses dimension-order routing instead:
//   first dimension first, each dimension the shorter way round (a mesh: the only way); when both ways
//   are equally short (exactly half way round an even ring), + for flow_hash 0, else bit d of
//   splitmix64(flow_hash) for dimension d (1 = -). Its hop count is the Manhattan distance with
//   wrap-around, which is the least; with equal links it is also a least-latency route (other links to
//   the chips are not considered: a torus routes on its own links).
// - One rule (issue 12): the network models (arch/net/impl/routing.h) route every flow with
//   route(src, dst, flow_hash), the hash fixed per (src, dst) pair; no model breaks ties its own way (link
//   kinds play no part in routing). A torus therefore routes in dimension order only when it is declared
//   with add_torus (the `torus` shape does); links named per dimension are not needed.
// - Routes cost O(hops) after the first route to a destination: the cheapest-path costs to a
//   destination are cached inside the topology, up to max_cached_costs entries in all. A device whose
//   links all go to switches takes its costs from those switches' (the least of theirs plus the link,
//   exactly), any other vertex from one Dijkstra; past the bound the derived costs are dropped first,
//   then all. Tori need no Dijkstra at all. route_into() reuses the
//   caller's Route, so a model asking for millions of routes allocates nothing per route. A const
//   Topology may be routed from several threads at once (the cache is locked).
// - Placement (set_placement): where a vertex sits, for models that group devices (intra-node first)
//   or use rails and coordinates; the shape builders of system_spec.cpp set it, a hand-built topology
//   may leave it empty (node = rail = -1, no coords, role "").
// - max_flow_Bps(a, b): the most bytes per second that can cross from the vertices of `a` to those of
//   `b` at once, each link carrying up to its Link::bandwidth_Bps in each direction (switches
//   non-blocking), in whole MB/s (the figures are rounded to 1e6 B/s). With a and b the two halves of
//   the devices it is a bisection bandwidth, one way.
// - The Boost graph stays inside topology.cpp (pimpl): including this header does not pull in Boost.
// - A Topology is a value: copies are deep and independent (a copy starts with an empty route cache).
#include <cstddef>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "sim/core/time.h"

namespace mlsim::arch::net {

using VertexId = std::size_t;
using LinkId = std::size_t;

enum class VertexKind { device, network_switch };

struct SwitchProps {
    std::string kind;                   // free text for people, e.g. "NVSwitch gen2"
    Tick latency = Tick::zero();        // to cross the switch, input port to output port
    double port_bandwidth_Bps = 0;      // per port, per direction; 0 = no limit beyond the links'
    double energy_J_per_byte = 0;       // per byte switched; 0 = not modelled
    bool in_network_reduction = false;  // the switch can reduce data in flight (NVLink SHARP)
    // With in_network_reduction: the share of a port's payload rate at which the switch reduces and
    // multicasts (1 = as fast as its links); the network models cap in-switch-reduction flows with it.
    double reduction_efficiency = 1;
};

// Where a vertex sits in its system (see the contract): set by the shape builders.
struct Placement {
    int64_t node = -1;            // index of its node (SystemSpec::nodes); -1: a fabric switch, or unknown
    int64_t rail = -1;            // rail-optimised fabric: the rail of a device's NIC (its index in the
                                  // node), the rail a leaf serves; -1 otherwise
    std::vector<int64_t> coords;  // torus chips: coordinates, first dimension first; empty otherwise
    std::string role;             // switches of a shape: nvswitch, pcie-switch, root-complex, leaf, spine
};

struct Vertex {
    VertexId id = 0;
    std::string name;
    VertexKind kind = VertexKind::device;
    SwitchProps sw;  // meaningful for switches only
    Placement place;

    bool is_device() const { return kind == VertexKind::device; }
    bool is_switch() const { return kind == VertexKind::network_switch; }
};

struct LinkProps {
    std::string kind;              // nvlink, pcie, infiniband, ethernet, ...
    double bandwidth_Bps = 0;      // one link, per direction
    Tick latency = Tick::zero();   // one way, first bit in to first bit out
    double energy_J_per_byte = 0;  // per byte carried; 0 = not modelled
    int64_t count = 1;             // parallel links between the same two endpoints
    // Payload bytes per byte of line rate, in (0, 1]: what the link's packet format (headers, CRC, flow
    // control) leaves for data. bandwidth_Bps stays the line rate (bisection figures are line rates);
    // the network models move payload at bandwidth_Bps x efficiency.
    double efficiency = 1;
};

struct Link {
    LinkId id = 0;
    VertexId a = 0, b = 0;  // as declared; the link carries traffic both ways
    LinkProps props;
    double bandwidth_Bps = 0;  // effective, over all parallel links, per direction (see the contract)

    // The endpoint that is not `v` (precondition: v is an endpoint).
    VertexId other(VertexId v) const;
};

// One link crossed by a route, in the direction of travel.
struct Hop {
    LinkId link = 0;
    VertexId from = 0, to = 0;
};

struct Route {
    VertexId src = 0, dst = 0;
    std::vector<Hop> hops;
    Tick latency = Tick::zero();
    double bottleneck_Bps = 0;  // the least Link::bandwidth_Bps on the route; infinity when empty

    std::vector<LinkId> links() const;
    std::vector<VertexId> vertices() const;  // src, every vertex passed, dst
};

struct Neighbour {
    VertexId vertex = 0;
    LinkId link = 0;
};

class Topology {
  public:
    Topology();
    ~Topology();
    Topology(const Topology& other);
    Topology& operator=(const Topology& other);
    Topology(Topology&& other) noexcept;
    Topology& operator=(Topology&& other) noexcept;

    VertexId add_device(std::string name);
    VertexId add_switch(std::string name, SwitchProps props);
    LinkId add_link(VertexId a, VertexId b, LinkProps props);

    std::size_t vertex_count() const;
    std::size_t link_count() const;
    const std::vector<VertexId>& devices() const;   // in insertion order
    const std::vector<VertexId>& switches() const;  // in insertion order
    const Vertex& vertex(VertexId id) const;
    const Link& link(LinkId id) const;

    std::optional<VertexId> find(std::string_view name) const;  // a device or a switch
    std::optional<VertexId> find_device(std::string_view name) const;
    std::optional<VertexId> find_switch(std::string_view name) const;

    // Every (vertex, link) pair adjacent to `id`, ordered by the neighbour's name, then by link id; a
    // neighbour reached by two links is listed twice.
    std::vector<Neighbour> neighbours(VertexId id) const;
    // The vertices with no path to `from`, in id order (empty when the graph is connected).
    std::vector<VertexId> unreachable_from(VertexId from) const;
    bool connected() const;

    std::optional<Route> route(VertexId src, VertexId dst) const;
    // The path that flow `flow_hash` takes (see the contract); flow_hash 0 is route(src, dst).
    std::optional<Route> route(VertexId src, VertexId dst, uint64_t flow_hash) const;
    // As route(src, dst, flow_hash), written into `out` (its hop vector's capacity is reused); false,
    // and `out` unspecified, when there is no route.
    bool route_into(VertexId src, VertexId dst, uint64_t flow_hash, Route& out) const;
    // How many next hops at `at` stay on a cheapest path to `dst` (1 on a single path, 0 at dst or when
    // dst cannot be reached): the ECMP fan-out a flow hash chooses among there.
    std::size_t equal_cost_next_hops(VertexId at, VertexId dst) const;

    void set_placement(VertexId id, Placement place);
    // Declares a torus (wrap) or mesh of chips whose neighbour links are already added: chips[i] has
    // coordinates x with i = x0 + d0 * (x1 + d1 * (x2 + ...)) (first dimension fastest). Each chip's
    // neighbour in each dimension and direction must be joined to it by a link (the lowest link id is
    // used); a dimension of size 1 has none. Sets the chips' coords.
    void add_torus(const std::vector<VertexId>& chips, const std::vector<int64_t>& dims, bool wrap);

    // See the contract: one way from a to b, in B/s (whole MB/s). a and b must not share a vertex.
    double max_flow_Bps(const std::vector<VertexId>& a, const std::vector<VertexId>& b) const;

    // Cheapest-path cost entries the route cache may hold (16 bytes each).
    static constexpr std::size_t max_cached_costs = std::size_t{8} << 20;

  private:
    struct Impl;
    std::unique_ptr<Impl> m_impl;
};

}  // namespace mlsim::arch::net
