#pragma once
// The interface of an interconnect model: point-to-point transfers and collectives over a Topology.
// Implementations (arch/net/impl/, a later issue) decide how links are shared; this header fixes only
// what they are asked and what they answer.
//
// Contract:
// - A network is built from a std::shared_ptr<const Topology> and keeps it; it never changes it.
// - Calls describe traffic that starts at a given simulated time. A network may keep state (when each
//   link direction is next free), so a call sees the contention of every earlier call that overlaps it.
//   Callers issue calls in non-decreasing start time; results are deterministic functions of the
//   topology and the sequence of calls.
// - transfer(src, dst, bytes, start): `bytes` from device src to device dst along
//   Topology::route(src, dst); the result's `end` is when the last byte arrives at dst (never before
//   start + route latency + bytes / route bottleneck bandwidth), `hops` are the links it crossed in
//   order. src == dst costs nothing (end == start, no hops). Devices with no route between them, or a
//   vertex that is not a device, is a UserError naming both.
// - collective(request): `bytes` follows nccl-tests' "size": the buffer each rank contributes for
//   broadcast, reduce, all-reduce (the whole message), the full gathered buffer for all-gather and
//   gather, the full buffer before splitting for reduce-scatter and scatter, and each rank's whole
//   send buffer for all-to-all. So algbw = bytes / time and busbw = algbw x the factors of
//   shared/reference/hardware.md (2(n-1)/n for all-reduce, (n-1)/n for all-gather, reduce-scatter,
//   all-to-all). `root` is used by broadcast, scatter, gather and reduce only. The result gives the
//   time the last rank finishes and the bytes each link carried in each direction (links that carried
//   nothing are left out, the rest in link id order). An algorithm a model does not implement for a
//   kind, a group with a repeated or unknown device, or an empty group is a UserError that names the
//   supported choices; a group of one costs nothing.
// - A switch with in_network_reduction may reduce in flight: a model that uses it says so in its
//   algorithm (nvls, hierarchical) and counts the bytes the switch forwarded, not the bytes it would have
//   forwarded without reduction.
// - Extensions (issue 12): send_recv (every rank i sends `bytes` to rank i+1 mod p at once, nccl-tests'
//   sendrecv_perf), all-to-all(v) through CollectiveRequest::counts, the algorithms pairwise, bruck, nvls
//   and automatic (the model picks; the result names what it picked), and protocols (NCCL's LL, LL128,
//   Simple, or ideal: the bare alpha-beta model with no protocol cost). The implementation and its rules
//   are in arch/net/impl/flow_network.h.
// - Link energy (issue 12): CollectiveResult::energy_j, filled by every implementation (flow and packet
//   fidelity alike), whether or not the call is recorded.
#include <cstdint>
#include <memory>
#include <optional>
#include <string_view>
#include <vector>

#include "arch/net/topology.h"
#include "sim/core/time.h"

namespace mlsim::arch::net {

enum class CollectiveKind {
    broadcast,
    scatter,
    gather,
    reduce,
    all_gather,
    reduce_scatter,
    all_reduce,
    all_to_all,
    send_recv,
};

enum class CollectiveAlgorithm {
    ring,              // a ring over the group; bandwidth-optimal for large messages
    tree,              // a (double binary) tree; latency-optimal for small messages
    direct,            // every rank sends straight to every peer that needs its data
    halving_doubling,  // recursive halving / doubling (Rabenseifner)
    hierarchical,      // within each node first, then across nodes (and in-switch reduction where offered)
    pairwise,          // p-1 rounds; in round k rank i exchanges with rank i+k (all-to-all)
    bruck,             // ceil(log2 p) rounds of doubling distance (all-gather, all-to-all)
    nvls,              // in-switch reduction / multicast (NVLink SHARP): one switch joins the whole group
    nvls_tree,         // NCCL's NVLS_TREE: in-switch reduction inside each node, trees between the nodes
    automatic,         // the model picks the fastest (CollectiveResult::algorithm names it)
};

// How data is framed on the wire, as in NCCL (LL: 8-byte stores of 4 data + 4 flag bytes; LL128: 128-byte
// lines with 8 flag bytes; Simple: bulk copies with a synchronisation per step). `ideal` is the bare
// alpha-beta model (no per-call or per-step overhead, every byte is payload), used by closed-form tests.
enum class Protocol { ll, ll128, simple, ideal, automatic };

// Canonical names are snake_case, as in the config and the results database ("all_reduce",
// "halving_doubling"). parse_* also accepts '-' for '_' and no separator ("all-reduce", "allreduce"),
// in any letter case; nullopt for anything else.
std::string_view to_string(CollectiveKind kind);
std::string_view to_string(CollectiveAlgorithm algorithm);
std::string_view to_string(Protocol protocol);
std::optional<Protocol> parse_protocol(std::string_view text);
const std::vector<Protocol>& all_protocols();  // in declaration order

// nccl-tests' bus-bandwidth factor (busbw = algbw x factor) for a group of n ranks: 2(n-1)/n all-reduce;
// (n-1)/n all-gather, reduce-scatter, all-to-all; 1 broadcast, reduce, send/recv; (n-1)/n scatter and
// gather (nccl-tests' scatter/gather tests). 1 for n <= 1.
double bus_bandwidth_factor(CollectiveKind kind, int64_t ranks);
std::optional<CollectiveKind> parse_collective_kind(std::string_view text);
std::optional<CollectiveAlgorithm> parse_collective_algorithm(std::string_view text);
const std::vector<CollectiveKind>& all_collective_kinds();            // in declaration order
const std::vector<CollectiveAlgorithm>& all_collective_algorithms();  // in declaration order

struct Transfer {
    Tick start = Tick::zero();
    Tick end = Tick::zero();  // the last byte has arrived at dst
    std::vector<Hop> hops;    // the links crossed, in order of travel
};

struct CollectiveRequest {
    CollectiveKind kind = CollectiveKind::all_reduce;
    CollectiveAlgorithm algorithm = CollectiveAlgorithm::ring;
    std::vector<VertexId> group;   // the ranks, in rank order (rank i = group[i])
    int64_t bytes = 0;             // nccl-tests' size (see the contract)
    std::optional<VertexId> root;  // rooted kinds; default group[0]
    Tick start = Tick::zero();
    Protocol protocol = Protocol::automatic;
    // all-to-all(v) only: p x p bytes, counts[i * p + j] from rank i to rank j (the diagonal stays local);
    // empty = bytes / p to every rank. `bytes` is then ignored for timing (algbw uses the largest row sum).
    std::vector<int64_t> counts;
};

// Bytes one link carried during a collective, by direction (a_to_b follows Link::a -> Link::b).
struct LinkBytes {
    LinkId link = 0;
    double a_to_b = 0;
    double b_to_a = 0;
};

struct CollectiveResult {
    Tick start = Tick::zero();
    Tick end = Tick::zero();  // the last rank has its result
    std::vector<LinkBytes> link_bytes;
    CollectiveAlgorithm algorithm = CollectiveAlgorithm::ring;  // the one that ran (never automatic)
    Protocol protocol = Protocol::simple;                       // likewise
    int64_t steps = 0;                                          // synchronised steps (rounds) it took
    // Energy of moving the data (issue 12): over every link direction, the bytes on the wire (payload and
    // protocol framing, over LinkProps::efficiency for the link's own packet overhead) x the link's
    // energy_J_per_byte, plus those bytes x the energy_J_per_byte of the switch they enter. Never negative;
    // 0 when the topology gives no energy figures. Device-side (reduction) energy is not included.
    double energy_j = 0;

    Tick duration() const { return end - start; }
};

class INetwork {
  public:
    virtual ~INetwork() = default;
    virtual const Topology& topology() const = 0;
    virtual Transfer transfer(VertexId src, VertexId dst, int64_t bytes, Tick start) = 0;
    virtual CollectiveResult collective(const CollectiveRequest& request) = 0;
};

}  // namespace mlsim::arch::net
