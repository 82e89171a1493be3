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
//   to fewer hops, then to the lexicographically smallest sequence of vertex names, then to the lower
//   link id, so a route is a pure function of the graph, never of insertion or hash order. Latencies
//   are whole picoseconds (sim/core/time.h), so equal sums are real ties. Vertices in different
//   components have no route (nullopt); src == dst is the empty route (zero latency, infinite
//   bottleneck).
// - The Boost graph stays inside topology.cpp (pimpl): including this header does not pull in Boost.
// - A Topology is a value: copies are deep and independent.
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
};

struct Vertex {
    VertexId id = 0;
    std::string name;
    VertexKind kind = VertexKind::device;
    SwitchProps sw;  // meaningful for switches only

    bool is_device() const { return kind == VertexKind::device; }
    bool is_switch() const { return kind == VertexKind::network_switch; }
};

struct LinkProps {
    std::string kind;              // nvlink, pcie, infiniband, ethernet, ...
    double bandwidth_Bps = 0;      // one link, per direction
    Tick latency = Tick::zero();   // one way, first bit in to first bit out
    double energy_J_per_byte = 0;  // per byte carried; 0 = not modelled
    int64_t count = 1;             // parallel links between the same two endpoints
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

  private:
    struct Impl;
    std::unique_ptr<Impl> m_impl;
};

}  // namespace mlsim::arch::net
