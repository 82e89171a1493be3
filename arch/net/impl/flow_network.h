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
// - Costs per protocol (Protocol), as NCCL's tuning model has them (NVIDIA/nccl src/graph/tuning.cc, the
//   stored version 01afd20, tables baseLat, hwLat and the bandwidth factors):
//     per call:  LL 3.6 us, LL128 10.0 us, Simple 8.4 us (ring row; tree: 4.4, 4.4, 0 us);
//     per step:  NCCL's per-hop latency less its LL figure, which the topology's link and switch latencies
//                already stand for (the presets set their latencies to NCCL's LL per-step figure):
//                NVLink LL128 +1.43 us, Simple +2.93 us; PCIe LL128 +1.5 us, Simple +4.7 us; network LL128
//                +1.3 us, Simple +6.9 us (ring rows: .47/1.9/3.4, 1.0/2.5/5.7, 2.7/4.0/9.6 us);
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
// - Automatic choice, the rule (issue 12): every (algorithm, protocol) candidate below is first timed by its
//   closed form (estimate(): the alpha-beta-gamma time of the algorithm's steps, with alpha the slowest
//   path latency of the pairs it joins plus the protocol's per-step cost, beta over the narrowest payload
//   rate of those paths, the busiest port's share of concurrent flows, the receivers' reduction rate, the
//   protocol's per-call latency and payload factor, and hierarchical's pipelining over 1, 2, 4, ...
//   pieces); the candidates are ranked by that estimate (ties: declaration order) and only the best
//   choice_simulations (default 3) are simulated; the fastest simulated one runs. The estimate ignores
//   contention between paths, lock-step waits and earlier calls, so the three best are simulated rather
//   than one (with two, 2 of 84 cases in the test differed from the exhaustive choice). With
//   choice_simulations = 0 every candidate is simulated (the exhaustive choice; tests compare the two).
// - Algorithm::automatic considers each of the algorithms NCCL itself would consider for the kind
//   (automatic_candidates: ring, tree, hierarchical, NVLS for all-reduce; ring, hierarchical, NVLS for
//   all-gather and reduce-scatter; ring and hierarchical for broadcast and reduce; direct point-to-point for
//   the rest; an all-to-all too large for direct, over 16M concurrent flows, runs Bruck with Simple) that
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

    struct Impl;

  private:
    std::unique_ptr<Impl> m_impl;
};

// The algorithms FlowNetwork implements for `kind` (automatic excluded), in declaration order.
std::vector<CollectiveAlgorithm> supported_algorithms(CollectiveKind kind);
// Those that Algorithm::automatic chooses among (see the contract).
std::vector<CollectiveAlgorithm> automatic_candidates(CollectiveKind kind);

}  // namespace mlsim::arch::net
