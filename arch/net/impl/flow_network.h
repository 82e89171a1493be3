#pragma once
// FlowNetwork: the interconnect model behind INetwork (arch/net/i_network.h).
//
// What it promises:
// - Traffic is flows over routes (routing.h: least latency, ECMP per flow by a hash of (src, dst) across
//   equal-cost paths), sharing each link direction max-min fairly, recomputed as flows start and end
//   (stage_solver.h). With Fidelity::packet the same flows are cut into packets through per-port FIFO
//   queues instead (stage_solver.h), for small systems.
// - A collective runs as a sequence of synchronised steps (stages): the flows of a step start together when
//   the previous step has ended, and the step ends when its last byte has arrived, plus the receivers'
//   reduction time and the protocol's per-step cost. This is the lock-step of the alpha-beta literature and
//   of NCCL's step-by-step primitives; it ignores that a rank whose data came early could start its next
//   step before a slower rank (a bound on the error: the spread of arrival times within a step).
// - Costs per protocol (Protocol), as NCCL's tuning model has them (NVIDIA/nccl src/graph/tuning.cc; the
//   per-call and network rows from v2.30.7, commit 5067397c; NVLink / PCI step rows from the stored 01afd20):
//     per call:  NCCL's baseLat, ring LL 6.6, LL128 14.0, Simple 8.4 us; tree 6.8, 14.0, 8.4 us; NVLS and
//                NVLS_TREE 25 us (their baseLat 0 plus hwLat NVLINK NVLS / NVLSTree Simple, which NCCL
//                charges once per call); mlsim's other algorithms take the ring's;
//     per step:  NCCL's per-hop latency less its LL figure, which the topology's link and switch latencies
//                already stand for (the presets set their latencies to NCCL's LL per-step figure):
//                NVLink LL128 +1.43 us, Simple +2.93 us; PCIe LL128 +1.5 us, Simple +4.7 us; network LL128
//                +1.3 us, Simple +11.3 us (ring rows: .47/1.9/3.4, 1.0/2.5/5.7, 2.7/4.0/14.0 us); a tree
//                all-reduce's steps between nodes use NCCL's tree network row (5.0/8.5/14.0 us): +2.3, +5.8,
//                +11.3 us over the path's 2.7 us, LL included; NVLS steps into and out of a node's switch
//                pay nothing more (the per-call 25 us stands for them), NVLS_TREE's steps between nodes
//                NCCL's NVLSTree network row, 20.9 us (+18.2 us);
//     payload:   LL 1/4 of the wire for reductions and across nodes, 1/3 otherwise (NCCL's ring LL factors:
//                8-byte stores carry 4 data bytes, and LL's flag polling costs the rest); LL128 0.92
//                (120 of 128 bytes per line, NCCL's 0.92); Simple 1.
//   Protocol::ideal has none of these: every collective is then its alpha-beta formula (tests).
// - Reductions cost the receiving device: reduce_Bps[v] bytes of payload per second (from the device model:
//   arch/system's caller derives it from memory bandwidth and vector compute). Pipelined (overlap_reduction,
//   the default, as NCCL reduces chunk by chunk while the next arrives) a flow that is reduced on arrival
//   cannot go faster than its receiver reduces, and one chunk's reduction is exposed per step; otherwise the
//   whole step's reduction follows the transfer (the gamma term of Thakur, Rabenseifner and Gropp 2005).
// - NVLS (in-switch reduction) runs with Simple (or ideal) only: NCCL offers no LL / LL128 for it.
// - NVLS_TREE (all-reduce across nodes whose ranks each share a switch with in_network_reduction, Simple
//   only), as NCCL's: the in-switch reduce-scatter inside every node, per local index l NCCL's double binary
//   tree over the nodes' l-th ranks all-reducing that rank's 1/L of the data (two trees, each 1/(2L)), and
//   the in-switch all-gather, pipelined over 1, 2, 4, ... pieces as hierarchical is.
// - Across nodes (a group whose ranks sit in several nodes, the node being a device name's part before its
//   last '.'), as NCCL builds its channels (src/graph/search.cc, v2.30.7): the node's NICs are found from
//   the routes (a rank's NIC is the first network-class link on its route to the same local index of the
//   next node; ranks that share one share the NIC), and with k NICs per node at the same local indices in
//   every node:
//     ring (all-reduce, reduce-scatter, all-gather; broadcast and reduce as chains from / to the root):
//       k rings stepping together, each 1/k of the data, ring j entering every node at the j-th NIC's rank
//       and leaving at the rank before it (every other node walked backwards when the node count is even,
//       so the hops between nodes join equal local indices: one rail); each NIC sends one ring's traffic
//       and receives one ring's;
//     tree (all-reduce): per NIC two trees (2k in all, each 1/(2k) of the data): a chain through each node
//       from the NIC's rank, and NCCL's double binary tree over the nodes' NIC ranks.
//   Nodes of unequal size or without NICs of their own: one ring in node order and the flat double binary
//   tree over all ranks. NCCL's per-channel bandwidth caps (llMaxBws, perChMax*) and getNetOverhead are not
//   modelled: mlsim has no channel count, and its lock-step already charges every step of a ring across
//   nodes the network's per-step latency, above getNetOverhead.
// - Automatic choice, the rule (issue 12): every (algorithm, protocol) candidate below is first timed by its
//   closed form (estimate(): the alpha-beta-gamma time of the algorithm's steps, with alpha the slowest
//   path latency of the pairs it joins plus the protocol's per-step cost, beta over the narrowest payload
//   rate of those paths, the busiest port's share of concurrent flows (rings, and trees across nodes:
//   each link's rate over the flows crossing it; a tree's fill level by level, then a chunk per step), the
//   receivers' reduction rate, the protocol's per-call latency and payload factor, and hierarchical's
//   pipelining over 1, 2, 4, ... pieces); the candidates are ranked by that estimate (ties: declaration
//   order) and only the best choice_simulations (default 3) are simulated; the fastest simulated one runs.
//   The estimate ignores contention between paths, lock-step waits and earlier calls, so the three best are
//   simulated rather than one (with two, 2 of 84 cases in the test differed from the exhaustive choice). With
//   choice_simulations = 0 every candidate is simulated (the exhaustive choice; tests compare the two).
// - Algorithm::automatic considers what NCCL v2.30.7 itself considers (automatic_candidates; tuning.cc's
//   per-collective algorithm lists and enable rules): all-reduce ring, tree and, within one node, NVLS or,
//   across nodes, NVLS_TREE; all-gather and reduce-scatter ring and, within one node, NVLS (across nodes
//   NCCL's NVLS needs CollNet); broadcast and reduce ring only; direct point-to-point for the rest (an
//   all-to-all too large for direct, over 16M concurrent flows, runs Bruck with Simple). CollNet (reduction
//   in the network's switches) and PAT (all-gather / reduce-scatter with one rank per node) are not
//   modelled. hierarchical (ring phases) runs only when asked for. Of these, each candidate that
//   supports the request, on the idle network from the request's start, and keeps the
//   fastest; Protocol::automatic likewise over LL, LL128 and Simple. Ties go to the earlier in declaration
//   order. The MPI-literature algorithms (direct, pairwise, halving-doubling, Bruck) run when asked for:
//   they model no per-peer cost, so on a full-bisection switch their two or log2(p) steps would beat what
//   NCCL does on real hardware.
// - Across calls a network remembers, per link direction, when its last byte was sent: a later call's flows
//   on that link start no earlier (first come, first served between calls, fair sharing within one).
#include <cstdint>
#include <memory>
#include <vector>

#include "arch/net/i_network.h"

namespace mlsim::arch::net {

enum class Fidelity { flow, packet };

struct NetworkOptions {
    Fidelity fidelity = Fidelity::flow;
    double packet_bytes = 4096;             // packet fidelity: payload per packet
    int64_t max_packet_hops = 100'000'000;  // packet fidelity: larger collectives are a UserError
    // flow fidelity: a repeated step's link updates (steps x links crossed) above this are a UserError;
    // ~1 ns each (a 262,144-chip torus's ring all-reduce: 1.4e11, minutes)
    double max_link_updates = 2e10;
    // Pipelining unit of chained / tree algorithms: NCCL's default buffer (NCCL_BUFFSIZE, 4 MiB) split into
    // its 8 steps (NCCL_STEPS) = 512 KiB per chunk (NCCL environment-variable documentation).
    double chunk_bytes = 512.0 * 1024;
    std::vector<double> reduce_Bps;  // per vertex id; missing or 0 = reductions are free
    // Hierarchical all-reduce / reduce-scatter / all-gather over several nodes pipeline their phases over
    // up to this many pieces (the fastest of 1, 2, 4, ...: more pieces hide more of the shorter phases but
    // pay every step's latency once per piece; 1 = the phases one after the other). NCCL overlaps them
    // through its chunked steps; 8 pieces bring the pipeline within 1 / 8 of the busier link set.
    std::size_t pipeline_pieces = 8;
    bool overlap_reduction = true;
    // Automatic choice (see the contract): how many of the (algorithm, protocol) candidates, ranked by
    // their closed-form estimates, are simulated; 0 = every candidate (the exhaustive choice).
    std::size_t choice_simulations = 3;
    // A run of steps with the same flows (a ring's steps, a pipeline's steady state) is solved until a step
    // releases every flow at once; the steps after it are that step shifted in time and are added without
    // solving them, to the same numbers to the bit (Run::repeat). false solves every step: the tests
    // compare the two.
    bool repeat_steps = true;
};

class FlowNetwork final : public INetwork {
  public:
    FlowNetwork(std::shared_ptr<const Topology> topology, NetworkOptions options = {});
    ~FlowNetwork() override;

    const Topology& topology() const override;
    Transfer transfer(VertexId src, VertexId dst, int64_t bytes, Tick start) override;
    CollectiveResult collective(const CollectiveRequest& request) override;

    const NetworkOptions& options() const;
    // Seconds each directed link (2 * link + direction, as in LinkBytes) was busy sending, over all calls.
    const std::vector<double>& busy_seconds() const;
    // Joules each directed link spent (CollectiveResult::energy_j's terms: its bytes x its energy per byte,
    // and the switch it enters), over all recorded calls.
    const std::vector<double>& link_energy_j() const;
    // Steps advanced without being solved (NetworkOptions::repeat_steps), over all calls, trials of the
    // automatic choice included: a measure of the work saved.
    int64_t repeated_steps() const;

    struct Impl;

  private:
    std::unique_ptr<Impl> m_impl;
};

// The algorithms FlowNetwork implements for `kind` (automatic excluded), in declaration order.
std::vector<CollectiveAlgorithm> supported_algorithms(CollectiveKind kind);
// Those that Algorithm::automatic chooses among for a group within one node or across nodes (the contract).
std::vector<CollectiveAlgorithm> automatic_candidates(CollectiveKind kind, bool across_nodes);

}  // namespace mlsim::arch::net
