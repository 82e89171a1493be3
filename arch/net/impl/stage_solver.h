#pragma once
// The two ways a stage of flows is timed: the fluid (flow-level) model and the packet-level reference.
//
// A stage is a set of flows, each a byte count over a path of directed links, released at a time of its
// own. Both solvers return, per flow, when its last byte reaches the destination.
//
// Fluid model (FluidSolver): every directed link's bandwidth is shared max-min fairly among the flows
// crossing it (progressive filling: all unfrozen flows grow at the same rate until a link is full or a
// flow reaches its own rate cap; the flows of that link are frozen, and so on), recomputed whenever a flow
// is released or finishes. A flow's last byte arrives its path latency after it finished sending
// (cut-through: latency and transmission overlap across hops, alpha + n beta for one flow).
//
// Packet model (PacketSolver): each flow is cut into packets of `packet_bytes` (the last one shorter),
// which cross each link store-and-forward through a FIFO output queue per directed link: a packet is sent
// when the link is free and it is at the head of the queue, takes size / bandwidth, and arrives at the
// next vertex the hop latency later (link plus the switch it enters). A source keeps one packet per flow in
// its first queue, so flows leaving one port take turns packet by packet (round robin). For one flow over
// h equal hops it gives n/B + (h-1) packet/B + latency: above the fluid time by (h-1) packets' worth.
#include <cstdint>
#include <vector>

#include "arch/net/impl/routing.h"

namespace mlsim::arch::net::impl {

struct StageFlowTiming {
    uint32_t path_off = 0;  // into the hops array given to solve()
    uint32_t path_len = 0;
    double bytes = 0;      // on the wire
    double start_s = 0;    // released
    double cap_Bps = 0;    // the flow's own rate limit; 0 = none
    double latency_s = 0;  // the path's latency
};

// The fluid model, recomputed incrementally. Progressive filling freezes flows in order of rising rate;
// when some flows finish, every flow frozen before the first of them (in that order, from the start of
// its bottleneck's group) keeps its rate: the finished flows crossed none of the links that were full by
// then (a full link freezes all its flows), so without them those links fill the same way. Only the flows
// frozen later are filled again, from the links' spare capacity as it was at that point (kept per hop).
// A release recomputes everything. A stage equal to the previous one but for a shift in time (the steps
// of a ring) reuses its finish times, shifted. Bytes left are updated only when a flow's rate changes, and
// the next finish comes from a heap of projected finish times. The rates equal ReferenceFluidSolver's (the
// max-min fair allocation is unique) up to rounding.
class FluidSolver {
  public:
    explicit FluidSolver(const RouteTable& routes) : m_routes(routes) {}
    // finish[i] = when flow i's last byte arrives.
    void solve(const std::vector<StageFlowTiming>& flows, const std::vector<DirLink>& hops,
               std::vector<double>& finish);
    // Flows whose rate was filled (again) over the last solve(): a measure of the work done.
    uint64_t refilled() const { return m_refilled; }
    // The last solve()'s latest finish less its first release, as the solver computed it: each finish is
    // that first release plus its own such figure. A stage shifted in time whose releases less its first
    // come out the same bits (every flow released at the first release, as in FlowNetwork's Run::repeat;
    // a general shift may round them differently) is solved with the same numbers, so it ends at its new
    // first release plus this, to the bit.
    double span() const { return m_span; }

  private:
    // Refills the flows frozen from position `from` of the freeze order on, plus m_added, at time t.
    void refill(std::size_t from, double t, const std::vector<StageFlowTiming>& flows,
                const std::vector<DirLink>& hops);
    void set_rate(uint32_t f, double rate, double t);
    bool same_as_last(const std::vector<StageFlowTiming>& flows, const std::vector<DirLink>& hops,
                      double t0) const;
    void remember(const std::vector<StageFlowTiming>& flows, const std::vector<DirLink>& hops, double t0,
                  const std::vector<double>& finish);
    static constexpr std::size_t memo_flows = std::size_t{1} << 16;
    // the last stage solved, when it looked like the one before (see remember()) and has at most memo_flows
    // flows; its times relative to its first release
    std::vector<StageFlowTiming> m_last;
    std::vector<DirLink> m_last_hops;
    std::vector<double> m_last_finish;
    std::vector<double> m_sig, m_sig_scratch;  // a sample of the last stage's numbers

    const RouteTable& m_routes;
    // per flow
    std::vector<double> m_rate, m_left, m_tref;  // bytes left at m_tref, sent at m_rate since
    std::vector<double> m_start;                 // release, from the stage's first
    std::vector<uint32_t> m_pos;                 // in m_order; npos = not there
    std::vector<uint32_t> m_version;
    std::vector<uint8_t> m_state;  // 0 waiting, 1 active, 2 finished
    std::vector<uint8_t> m_frozen;
    // freeze order: flows, and per position the position where its group (one bottleneck or cap) starts
    std::vector<uint32_t> m_order, m_group;
    std::vector<double> m_cap_before;  // per hop: the link's spare capacity just before its flow froze
    std::vector<uint32_t> m_added;     // released, not yet filled
    // per directed link
    std::vector<double> m_cap_left;
    std::vector<uint32_t> m_unfrozen, m_mark, m_res_off, m_fill, m_hpos;
    uint32_t m_epoch = 0;
    std::vector<uint32_t> m_touched, m_res_flows, m_refill;
    std::vector<std::pair<double, DirLink>> m_heap;
    std::vector<std::pair<double, uint32_t>> m_caps;
    // projected finish times: (time, flow, version)
    struct Projected {
        double t;
        uint32_t flow, version;
        bool operator>(const Projected& o) const { return t != o.t ? t > o.t : flow > o.flow; }
    };
    std::vector<Projected> m_finish_heap;
    uint64_t m_refilled = 0;
    double m_span = 0;
};

// The fluid model as first written: every release or finish recomputes every active flow's rate from
// scratch. Kept as the reference the incremental FluidSolver is tested against (same rates to rounding).
class ReferenceFluidSolver {
  public:
    explicit ReferenceFluidSolver(const RouteTable& routes) : m_routes(routes) {}
    // finish[i] = when flow i's last byte arrives.
    void solve(const std::vector<StageFlowTiming>& flows, const std::vector<DirLink>& hops,
               std::vector<double>& finish);

  private:
    void rates(const std::vector<uint32_t>& active, const std::vector<StageFlowTiming>& flows,
               const std::vector<DirLink>& hops);

    const RouteTable& m_routes;
    std::vector<double> m_rate;        // per flow
    std::vector<double> m_cap_left;    // per directed link
    std::vector<uint32_t> m_unfrozen;  // per directed link
    std::vector<uint32_t> m_touched;
    std::vector<uint32_t> m_res_off, m_res_flows, m_fill;
    std::vector<uint8_t> m_frozen;
    std::vector<std::pair<double, DirLink>> m_heap;
    std::vector<std::pair<double, uint32_t>> m_caps;
};

class PacketSolver {
  public:
    PacketSolver(const RouteTable& routes, double packet_bytes, int64_t max_packet_hops)
        : m_routes(routes), m_packet_bytes(packet_bytes), m_max_packet_hops(max_packet_hops) {}
    // Throws a UserError when the stage would move more than max_packet_hops packet-hops.
    void solve(const std::vector<StageFlowTiming>& flows, const std::vector<DirLink>& hops,
               std::vector<double>& finish);
    int64_t packet_hops() const { return m_total_packet_hops; }

  private:
    const RouteTable& m_routes;
    double m_packet_bytes;
    int64_t m_max_packet_hops;
    int64_t m_total_packet_hops = 0;
};

}  // namespace mlsim::arch::net::impl
