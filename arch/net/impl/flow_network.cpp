#include "arch/net/impl/flow_network.h"

#include <fmt/format.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <map>
#include <string>

#include "arch/net/impl/routing.h"
#include "arch/net/impl/stage_solver.h"
#include "sim/config/error.h"
#include "sim/core/check.h"

namespace mlsim::arch::net {

using impl::DirLink;
using impl::LinkClass;

namespace {

// NCCL's tuning tables (NVIDIA/nccl src/graph/tuning.cc), microseconds. Index: protocol LL, LL128, Simple.
// Per-call base latencies: NVIDIA/nccl v2.30.7 (commit 5067397c, ncclTunerConstantsDefaults baseLatencies):
// tree 6.8 / 14.0 / 8.4, ring 6.6 / 14.0 / 8.4; NVLS and NVLS_TREE 0 (Simple only), but their latency
// starts from hwLat NVLINK NVLS / NVLSTree Simple, 25 us, charged once per call (tuning.cc: latencies of
// NVLS = intraLat, of NVLS_TREE = intraLat + 2 log2(nNodes) interLat).
constexpr double base_lat_ring_us[3] = {6.6, 14.0, 8.4};
constexpr double base_lat_tree_us[3] = {6.8, 14.0, 8.4};
constexpr double nvls_call_us = 25.0;
// hwLat, ring row, by link class (NVLink, PCI, network). NVLink and PCI: the stored version 01afd20 (v2.30.7
// has the same PCI row and NVLink 0.6 / 1.9 / 3.4: the presets' NVLink paths are 0.6 us already, and only
// the LL128 / Simple differences below are used). Network: NVIDIA/nccl v2.30.7 (commit 5067397c,
// src/graph/tuning.cc ncclTunerConstantsDefaults hwLatencies NCCL_HW_NET, ring LL / LL128 / Simple), where
// 01afd20 had Simple 9.6 us.
constexpr double hw_lat_ring_us[3][3] = {{0.47, 1.9, 3.4}, {1.0, 2.5, 5.7}, {2.7, 4.0, 14.0}};
// hwLat NCCL_HW_NET, tree row (v2.30.7, as above): the tree's steps between nodes. Its steps within a node
// keep the ring row (the tree row's NVLink / PCI figures are not used).
constexpr double hw_lat_tree_net_us[3] = {5.0, 8.5, 14.0};
// hwLat NCCL_HW_NET, NVLSTree row, Simple (v2.30.7, as above): NVLS_TREE's steps between nodes.
constexpr double hw_lat_nvls_tree_net_us = 20.9;

// Which of NCCL's latency rows a run's steps use.
enum class LatRow { ring, tree, nvls };

// The protocol's per-step cost beyond the path latency (the topology's latencies stand for the ring LL
// figure of the path's class): NCCL's hwLat less that figure; tree steps over the network use the tree row,
// so they pay some even with LL. NVLS steps into and out of a node's switch pay nothing more (the per-call
// nvls_call_us stands for them); NVLS_TREE's steps between nodes use its NET row.
double step_extra_s(int pi, int cls, LatRow row) {
    if (pi < 0 || cls < 0) return 0;
    const double base = hw_lat_ring_us[cls][0];
    const bool net = cls == static_cast<int>(LinkClass::net);
    if (row == LatRow::nvls) return net ? (hw_lat_nvls_tree_net_us - base) * 1e-6 : 0.0;
    if (row == LatRow::tree && net) return (hw_lat_tree_net_us[pi] - base) * 1e-6;
    return (hw_lat_ring_us[cls][pi] - base) * 1e-6;
}

// The per-call latency (NCCL's baseLat; for NVLS and NVLS_TREE their in-node hwLat). The MPI-literature
// algorithms (direct, pairwise, halving-doubling, Bruck) and mlsim's hierarchical, which NCCL does not have,
// take the ring's.
double call_latency_s(int pi, CollectiveAlgorithm alg) {
    if (pi < 0) return 0;
    switch (alg) {
        case CollectiveAlgorithm::tree:
            return base_lat_tree_us[pi] * 1e-6;
        case CollectiveAlgorithm::nvls:
        case CollectiveAlgorithm::nvls_tree:
            return nvls_call_us * 1e-6;
        default:
            return base_lat_ring_us[pi] * 1e-6;
    }
}

int proto_index(Protocol p) {
    switch (p) {
        case Protocol::ll:
            return 0;
        case Protocol::ll128:
            return 1;
        case Protocol::simple:
            return 2;
        default:
            return -1;
    }
}

bool is_reduction(CollectiveKind k) {
    return k == CollectiveKind::all_reduce || k == CollectiveKind::reduce ||
           k == CollectiveKind::reduce_scatter;
}

[[noreturn]] void unsupported(CollectiveKind kind, CollectiveAlgorithm alg, const std::string& why = "") {
    std::string msg = "error: collective " + std::string(to_string(kind)) + ": algorithm '" +
                      std::string(to_string(alg)) + "' is not available" +
                      (why.empty() ? "" : " (" + why + ")") + "; supported: ";
    bool first = true;
    for (CollectiveAlgorithm a : supported_algorithms(kind)) {
        msg += (first ? "" : ", ") + std::string(to_string(a));
        first = false;
    }
    throw cfg::UserError(msg + ", auto");
}

bool power_of_two(std::size_t p) { return p > 0 && (p & (p - 1)) == 0; }

int ceil_log2(std::size_t p) {
    int k = 0;
    while ((std::size_t{1} << k) < p) ++k;
    return k;
}

// A flow of a step, before routing.
struct StepFlow {
    VertexId src = 0, dst = 0;
    double bytes = 0;     // payload
    bool reduce = false;  // the receiver reduces it into its buffer
    // > 0: the flow runs at most at this share of its path's narrowest payload rate (a switch's in-network
    // reduction engine: SwitchProps::reduction_efficiency)
    double rate_share = 0;

    bool operator==(const StepFlow&) const = default;
};

}  // namespace

std::vector<CollectiveAlgorithm> supported_algorithms(CollectiveKind kind) {
    using A = CollectiveAlgorithm;
    using K = CollectiveKind;
    switch (kind) {
        case K::all_reduce:
            return {A::ring, A::tree, A::direct, A::halving_doubling, A::hierarchical, A::nvls, A::nvls_tree};
        case K::broadcast:
        case K::reduce:
            return {A::ring, A::tree, A::direct, A::halving_doubling, A::hierarchical, A::nvls};
        case K::all_gather:
            return {A::ring, A::direct, A::halving_doubling, A::hierarchical, A::bruck, A::nvls};
        case K::reduce_scatter:
            return {A::ring, A::direct, A::halving_doubling, A::hierarchical, A::nvls};
        case K::scatter:
        case K::gather:
            return {A::ring, A::tree, A::direct, A::halving_doubling};
        case K::all_to_all:
            return {A::direct, A::pairwise, A::bruck};
        case K::send_recv:
            return {A::ring, A::direct};
    }
    return {};
}

std::vector<CollectiveAlgorithm> automatic_candidates(CollectiveKind kind, bool across_nodes) {
    using A = CollectiveAlgorithm;
    using K = CollectiveKind;
    // NCCL v2.30.7 (src/graph/tuning.cc ncclTopoTuneModel and its enable rules): broadcast and reduce run
    // ring only; all-gather and reduce-scatter ring, NVLS, PAT (one rank per node) and CollNet; all-reduce
    // ring, tree, NVLS, NVLS_TREE and CollNet; NVLS only within one node (across nodes it needs CollNet),
    // NVLS_TREE only across nodes. CollNet (in-network reduction by the network's switches) and PAT are not
    // modelled.
    switch (kind) {
        case K::all_reduce:
            if (across_nodes) return {A::ring, A::tree, A::nvls_tree};
            return {A::ring, A::tree, A::nvls};
        case K::all_gather:
        case K::reduce_scatter:
            if (across_nodes) return {A::ring};
            return {A::ring, A::nvls};
        case K::broadcast:
        case K::reduce:
            return {A::ring};
        case K::scatter:
        case K::gather:
        case K::all_to_all:
        case K::send_recv:
            return {A::direct};
    }
    return {};
}

struct FlowNetwork::Impl {
    std::shared_ptr<const Topology> topo;
    NetworkOptions opt;
    impl::RouteTable routes;
    impl::FluidSolver fluid;
    std::vector<double> busy_until;      // per directed link, seconds
    std::vector<double> busy_seconds;    // per directed link, accumulated
    std::vector<double> energy_j;        // per directed link, accumulated
    std::vector<double> joule_per_byte;  // per directed link: per payload-level byte it carries
    std::vector<double> reduce_scratch;
    std::vector<int> into_scratch;     // per vertex: flows of a step it reduces
    std::vector<int32_t> acc_scratch;  // per directed link: Run::repeat's index of its bytes, -1 between uses
    int64_t repeated_steps = 0;        // Run::repeat's steps not solved, over all calls

    Impl(std::shared_ptr<const Topology> t, NetworkOptions o)
        : topo(std::move(t)), opt(std::move(o)), routes(*topo), fluid(routes) {
        busy_until.assign(routes.resource_count(), 0);
        busy_seconds.assign(routes.resource_count(), 0);
        energy_j.assign(routes.resource_count(), 0);
        reduce_scratch.assign(topo->vertex_count(), 0);
        into_scratch.assign(topo->vertex_count(), 0);
        // A byte the model moves is 1 / efficiency bytes on the line (the link's packet overhead), each
        // costing the link's energy and that of the switch it enters.
        joule_per_byte.assign(routes.resource_count(), 0);
        for (LinkId l = 0; l < topo->link_count(); ++l) {
            const Link& link = topo->link(l);
            const double line = 1 / link.props.efficiency;
            for (int dir = 0; dir < 2; ++dir) {
                const Vertex& head = topo->vertex(dir == 0 ? link.b : link.a);
                const double sw = head.is_switch() ? head.sw.energy_J_per_byte : 0.0;
                joule_per_byte[2 * l + static_cast<std::size_t>(dir)] =
                    line * (link.props.energy_J_per_byte + sw);
            }
        }
    }

    double energy_of(const std::vector<double>& dir_bytes) const {
        double e = 0;
        for (std::size_t d = 0; d < dir_bytes.size(); ++d)
            if (dir_bytes[d] > 0) e += dir_bytes[d] * joule_per_byte[d];
        return e;
    }

    // ---- one collective with a fixed algorithm and protocol ----
    struct Run {
        Impl& net;
        CollectiveKind kind;
        Protocol proto;
        LatRow row = LatRow::ring;  // NCCL's latency row for its steps (step_extra_s)
        double eff = 1;
        double now = 0;
        int64_t steps = 0;
        std::vector<double> dir_bytes;   // per directed link, wire bytes
        std::vector<double> local_busy;  // busy_until as this run sees it
        std::vector<impl::StageFlowTiming> timing;
        std::vector<DirLink> hops;
        std::vector<double> finish;
        std::unique_ptr<impl::PacketSolver> packets;
        // The previous step's flows and the class of its slowest path: a step with the same flows (the
        // steps of a ring) reuses their routes, caps and bytes (timing, hops) and only sets their starts.
        std::vector<StepFlow> last_flows;
        int last_cls = -1;
        // The last step's exposed reduction and protocol cost (finish_step), for repeat().
        double last_reduce_s = 0, last_step_s = 0;

        Run(Impl& n, CollectiveKind k, Protocol p, bool multi_node, double t0)
            : net(n), kind(k), proto(p), now(t0) {
            const int pi = proto_index(p);
            if (pi == 0) eff = (is_reduction(k) || multi_node) ? 1.0 / 4.0 : 1.0 / 3.0;
            if (pi == 1) eff = 0.92;
            dir_bytes.assign(n.routes.resource_count(), 0);
            local_busy = n.busy_until;
            if (n.opt.fidelity == Fidelity::packet)
                packets =
                    std::make_unique<impl::PacketSolver>(n.routes, n.opt.packet_bytes, n.opt.max_packet_hops);
        }

        double reduce_rate(VertexId v) const {
            return v < net.opt.reduce_Bps.size() ? net.opt.reduce_Bps[v] : 0.0;
        }

        // Runs one synchronised step; `extra_s` is added after the last arrival (e.g. a pipeline fill).
        void step(const std::vector<StepFlow>& flows, double extra_s = 0) {
            std::vector<double>& red = net.reduce_scratch;
            std::vector<VertexId> reducers;
            for (const StepFlow& f : flows) {
                if (f.reduce && reduce_rate(f.dst) > 0) {
                    if (red[f.dst] == 0) reducers.push_back(f.dst);
                    red[f.dst] += f.bytes;
                }
            }
            int cls = -1;
            if (!flows.empty() && flows == last_flows) {
                cls = last_cls;
                for (impl::StageFlowTiming& t : timing) {
                    t.start_s = now;
                    for (uint32_t k = 0; k < t.path_len; ++k)
                        t.start_s = std::max(t.start_s, local_busy[hops[t.path_off + k]]);
                }
            } else {
                plan_flows(flows, cls);
                last_flows = flows;
                last_cls = cls;
            }
            if (packets)
                packets->solve(timing, hops, finish);
            else
                net.fluid.solve(timing, hops, finish);
            finish_step(reducers, cls, extra_s);
        }

        // Runs `flows` as `n` synchronised steps, one after another (the steps of a ring). Once a step has
        // released every flow at `now` (the links it crosses were free by then), each later step is that step
        // shifted in time: the step before freed its links by its end, so its flows leave at the new `now`
        // too, every flow's release is again exactly the stage's first, and the fluid solver, which times a
        // stage from its first release, finishes them the same span later (FluidSolver::span). Those steps
        // only move the clock and add the links' bytes, by the same operations as step() (a 4,096-GPU ring
        // all-reduce: 8,190 steps of 4,096 flows). The last step runs in full: it leaves the links' busy
        // times as the n-th step does, each step's flows having stopped sending later than the step before's.
        // The packet solver's steps all run in full.
        void repeat(const std::vector<StepFlow>& flows, std::size_t n, double extra_s = 0) {
            std::size_t s = 0;
            while (s < n) {
                const double at = now;
                step(flows, extra_s);
                ++s;
                if (!net.opt.repeat_steps || packets || flows.empty() || s + 1 >= n) continue;
                if (!std::all_of(timing.begin(), timing.end(),
                                 [&](const impl::StageFlowTiming& t) { return t.start_s == at; }))
                    continue;
                // Each repeat below adds every link's bytes again (to the bit as step by step): bounded work,
                // checked before the shared scratch is touched (a trial caught for another protocol reuses
                // it).
                double hops_per_step = 0;
                for (const impl::StageFlowTiming& t : timing) hops_per_step += t.path_len;
                const double updates = static_cast<double>(n - 1 - s) * hops_per_step;
                if (updates > net.opt.max_link_updates)
                    throw cfg::UserError(fmt::format(
                        "error: the collective repeats a step of {} flows {} times: {:.3g} link updates, "
                        "more "
                        "than the flow model's {:.3g} (about a minute); use fewer ranks or smaller sizes",
                        timing.size(), n - 1 - s, updates, net.opt.max_link_updates));
                const double span = net.fluid.span();
                // The step's additions to the links' bytes, by link (one total in `acc` per link crossed)
                // and, per link, in finish_step's order: added step after step, each link's total is
                // finish_step's to the bit.
                std::vector<int32_t>& at_acc = net.acc_scratch;  // per directed link: -1, or into acc
                at_acc.resize(dir_bytes.size(), -1);
                std::vector<DirLink> links;
                std::vector<double> acc;
                std::vector<uint32_t> off{0};  // per link: its additions in `add`, [off[j], off[j + 1])
                for (const impl::StageFlowTiming& t : timing)
                    for (uint32_t k = 0; k < t.path_len; ++k) {
                        const DirLink d = hops[t.path_off + k];
                        if (at_acc[d] < 0) {
                            at_acc[d] = static_cast<int32_t>(links.size());
                            links.push_back(d);
                            acc.push_back(dir_bytes[d]);
                            off.push_back(0);
                        }
                        ++off[static_cast<std::size_t>(at_acc[d]) + 1];
                    }
                for (std::size_t j = 1; j < off.size(); ++j) off[j] += off[j - 1];
                std::vector<double> add(off.back());
                std::vector<uint32_t> fill(off.begin(), off.end() - 1);
                for (const impl::StageFlowTiming& t : timing)
                    for (uint32_t k = 0; k < t.path_len; ++k)
                        add[fill[static_cast<std::size_t>(at_acc[hops[t.path_off + k]])]++] = t.bytes;
                const std::size_t repeats = n - 1 - s;
                // Step after step; within a step the links' sums are independent of one another (a link's
                // additions alone form a chain), so the processor overlaps them.
                for (std::size_t r = 0; r < repeats; ++r)
                    for (std::size_t j = 0; j < acc.size(); ++j) {
                        double x = acc[j];
                        for (uint32_t q = off[j]; q < off[j + 1]; ++q) x += add[q];
                        acc[j] = x;
                    }
                for (std::size_t r = 0; r < repeats; ++r) {
                    const double end = std::max(now, now + span);
                    now = end + last_reduce_s + last_step_s + extra_s;
                    ++steps;
                }
                s += repeats;
                net.repeated_steps += static_cast<int64_t>(repeats);
                for (std::size_t j = 0; j < links.size(); ++j) {
                    dir_bytes[links[j]] = acc[j];
                    at_acc[links[j]] = -1;
                }
            }
        }

        // Routes `flows` into timing and hops (their starts from `now` and the links' busy times).
        void plan_flows(const std::vector<StepFlow>& flows, int& cls) {
            timing.clear();
            hops.clear();
            // flows reduced by one receiver share its reduction rate
            std::vector<int>& into = net.into_scratch;  // zero between steps
            if (net.opt.overlap_reduction)
                for (const StepFlow& f : flows)
                    if (f.reduce && reduce_rate(f.dst) > 0) ++into[f.dst];
            for (const StepFlow& f : flows) {
                impl::PathView pv = net.routes.path(f.src, f.dst);
                MLSIM_CHECK(pv.latency_s >= 0, "a planned flow has no route");
                impl::StageFlowTiming t;
                t.path_off = static_cast<uint32_t>(hops.size());
                t.path_len = pv.size;
                t.bytes = f.bytes / eff;
                t.latency_s = pv.latency_s;
                t.start_s = now;
                for (uint32_t k = 0; k < pv.size; ++k) {
                    hops.push_back(pv.hops[k]);
                    t.start_s = std::max(t.start_s, local_busy[pv.hops[k]]);
                }
                if (f.reduce && net.opt.overlap_reduction && reduce_rate(f.dst) > 0)
                    t.cap_Bps = reduce_rate(f.dst) / into[f.dst] / eff;
                if (f.rate_share > 0 && pv.size > 0) {
                    double narrowest = std::numeric_limits<double>::infinity();
                    for (uint32_t k = 0; k < pv.size; ++k)
                        narrowest = std::min(narrowest, net.routes.capacity(pv.hops[k]));
                    const double cap = f.rate_share * narrowest;
                    t.cap_Bps = t.cap_Bps > 0 ? std::min(t.cap_Bps, cap) : cap;
                }
                if (pv.size > 0) cls = std::max(cls, static_cast<int>(pv.cls));
                timing.push_back(t);
            }
            for (const StepFlow& f : flows) into[f.dst] = 0;
        }

        // The step's end: the last arrival, the receivers' exposed reduction, the protocol's step cost.
        void finish_step(const std::vector<VertexId>& reducers, int cls, double extra_s) {
            std::vector<double>& red = net.reduce_scratch;
            double end = now;
            for (std::size_t i = 0; i < timing.size(); ++i) {
                end = std::max(end, finish[i]);
                const impl::StageFlowTiming& t = timing[i];
                // when the flow stopped sending: its arrival less the path latency
                const double sent = finish[i] - t.latency_s;
                for (uint32_t k = 0; k < t.path_len; ++k) {
                    const DirLink d = hops[t.path_off + k];
                    dir_bytes[d] += t.bytes;
                    local_busy[d] = std::max(local_busy[d], sent);
                }
            }
            double reduce_s = 0;
            for (VertexId v : reducers) {
                const double b = net.opt.overlap_reduction ? std::min(red[v], net.opt.chunk_bytes) : red[v];
                reduce_s = std::max(reduce_s, b / reduce_rate(v));
                red[v] = 0;
            }
            const double step_s = step_extra_s(proto_index(proto), cls, row);
            now = end + reduce_s + step_s + extra_s;
            ++steps;
            last_reduce_s = reduce_s;
            last_step_s = step_s;
        }
    };

    // ---- helpers over the group ----
    struct Group {
        std::vector<VertexId> r;                   // ranks
        std::size_t root = 0;                      // index into r
        std::vector<std::vector<VertexId>> nodes;  // ranks by node, in order of first appearance
        std::size_t p() const { return r.size(); }
        VertexId at(std::size_t i) const { return r[i % r.size()]; }
        VertexId rel(std::size_t i) const { return r[(root + i) % r.size()]; }  // relative to the root
    };

    static std::string node_of(const std::string& device) {
        const auto dot = device.rfind('.');
        return dot == std::string::npos ? device : device.substr(0, dot);
    }

    Group make_group(const CollectiveRequest& q) const {
        Group g;
        g.r = q.group;
        if (q.root) {
            const auto it = std::find(g.r.begin(), g.r.end(), *q.root);
            if (it == g.r.end())
                throw cfg::UserError("error: collective " + std::string(to_string(q.kind)) + ": root '" +
                                     topo->vertex(*q.root).name + "' is not in the group");
            g.root = static_cast<std::size_t>(it - g.r.begin());
        }
        std::vector<std::string> names;
        for (VertexId v : g.r) {
            const std::string n = node_of(topo->vertex(v).name);
            const auto it = std::find(names.begin(), names.end(), n);
            if (it == names.end()) {
                names.push_back(n);
                g.nodes.push_back({v});
            } else {
                g.nodes[static_cast<std::size_t>(it - names.begin())].push_back(v);
            }
        }
        return g;
    }

    // The switch with in-network reduction that every rank of `ranks` is linked to directly, if any.
    std::optional<VertexId> nvls_switch(const std::vector<VertexId>& ranks) const {
        for (VertexId s : topo->switches()) {
            if (!topo->vertex(s).sw.in_network_reduction) continue;
            bool all = true;
            for (VertexId v : ranks) {
                bool linked = false;
                for (const Neighbour& nb : topo->neighbours(v))
                    if (nb.vertex == s) linked = true;
                if (!linked) {
                    all = false;
                    break;
                }
            }
            if (all) return s;
        }
        return std::nullopt;
    }

    std::size_t chunks(double bytes) const {
        if (opt.chunk_bytes <= 0 || bytes <= opt.chunk_bytes) return 1;
        return static_cast<std::size_t>(std::ceil(bytes / opt.chunk_bytes));
    }

    // Steps handed one at a time, those with the same flows as the step before gathered into one
    // Run::repeat (a pipeline's steady state, where every stage of it moves a chunk). flush() runs what is
    // gathered; it must run before the Run is used otherwise.
    struct StepRuns {
        explicit StepRuns(Run& r) : run(r) {}
        Run& run;
        std::vector<StepFlow> flows;
        std::size_t count = 0;
        void add(const std::vector<StepFlow>& f, std::size_t n = 1) {
            if (n == 0) return;
            if (count > 0 && f == flows) {
                count += n;
                return;
            }
            flush();
            flows = f;
            count = n;
        }
        void flush() {
            if (count > 0) run.repeat(flows, count);
            count = 0;
        }
    };

    // ---- building blocks (each runs its own steps) ----
    // Ring steps: `nsteps` steps in each of which chain[i] sends `piece` to chain[i+1 mod size].
    static void ring_steps(Run& run, const std::vector<VertexId>& ring, double piece, std::size_t nsteps,
                           bool reduce) {
        std::vector<StepFlow> f;
        for (std::size_t i = 0; i < ring.size(); ++i)
            f.push_back({ring[i], ring[(i + 1) % ring.size()], piece, reduce});
        run.repeat(f, nsteps);
    }
    // Several rings stepping together (the rings of a hierarchical phase).
    static void rings_steps(Run& run, const std::vector<std::vector<VertexId>>& rings, double piece,
                            std::size_t nsteps, bool reduce) {
        std::vector<StepFlow> f;
        for (const auto& ring : rings)
            if (ring.size() > 1)
                for (std::size_t i = 0; i < ring.size(); ++i)
                    f.push_back({ring[i], ring[(i + 1) % ring.size()], piece, reduce});
        if (!f.empty()) run.repeat(f, nsteps);
    }
    // Pipelined chains: every chain[0] -> chain[1] -> ... moves `bytes` in `k` chunks.
    static void chains(Run& run, const std::vector<std::vector<VertexId>>& cs, double bytes, std::size_t k,
                       bool reduce) {
        std::size_t len = 0;
        for (const auto& c : cs) len = std::max(len, c.size());
        if (len < 2) return;
        const double c = bytes / static_cast<double>(k);
        std::vector<StepFlow> f;
        StepRuns runs(run);
        // Hop j carries chunks in steps j to j + k - 1: between those bounds the steps' flows are alike, so
        // each stretch is planned once and repeated (a 1 TB chain is 2 million steps of 512 KiB).
        std::vector<std::size_t> bounds{0, len - 2 + k};
        for (std::size_t j = 0; j + 1 < len; ++j) {
            bounds.push_back(j);
            bounds.push_back(j + k);
        }
        std::sort(bounds.begin(), bounds.end());
        bounds.erase(std::unique(bounds.begin(), bounds.end()), bounds.end());
        for (std::size_t b = 0; b + 1 < bounds.size() && bounds[b] < len - 2 + k; ++b) {
            const std::size_t s = bounds[b], until = std::min(bounds[b + 1], len - 2 + k);
            f.clear();
            for (const auto& ch : cs)
                for (std::size_t j = 0; j + 1 < ch.size(); ++j)
                    if (s >= j && s - j < k) f.push_back({ch[j], ch[j + 1], c, reduce});
            runs.add(f, until - s);
        }
        runs.flush();
    }
    static void binomial_scatter(Run& run, const Group& g, double piece) {
        const std::size_t p = g.p();
        std::size_t mask = std::size_t{1} << (ceil_log2(p) - 1);
        std::vector<StepFlow> f;
        for (; mask >= 1; mask >>= 1) {
            f.clear();
            for (std::size_t i = 0; i < p; i += 2 * mask)
                if (i + mask < p)
                    f.push_back({g.rel(i), g.rel(i + mask),
                                 piece * static_cast<double>(std::min(i + 2 * mask, p) - (i + mask)), false});
            run.step(f);
            if (mask == 1) break;
        }
    }
    static void binomial_gather(Run& run, const Group& g, double piece) {
        const std::size_t p = g.p();
        std::vector<StepFlow> f;
        for (std::size_t mask = 1; mask < p; mask <<= 1) {
            f.clear();
            for (std::size_t i = 0; i < p; i += 2 * mask)
                if (i + mask < p)
                    f.push_back({g.rel(i + mask), g.rel(i),
                                 piece * static_cast<double>(std::min(i + 2 * mask, p) - (i + mask)), false});
            run.step(f);
        }
    }
    static void halving_rs(Run& run, const Group& g, double n) {
        const std::size_t p = g.p();
        std::vector<StepFlow> f;
        double part = n;
        for (std::size_t d = p / 2; d >= 1; d /= 2) {
            part /= 2;
            f.clear();
            for (std::size_t i = 0; i < p; ++i) f.push_back({g.rel(i), g.rel(i ^ d), part, true});
            run.step(f);
            if (d == 1) break;
        }
    }
    static void doubling_ag(Run& run, const Group& g, double n) {
        const std::size_t p = g.p();
        std::vector<StepFlow> f;
        for (std::size_t d = 1; d < p; d *= 2) {
            f.clear();
            for (std::size_t i = 0; i < p; ++i)
                f.push_back(
                    {g.rel(i), g.rel(i ^ d), n / static_cast<double>(p) * static_cast<double>(d), false});
            run.step(f);
        }
    }
    struct Edge {
        VertexId child, parent;
        int depth;  // of the child
    };
    // An in-order binary tree over positions 1..m: a position's lowest set bit b gives its level, its parent
    // is (x | 2b) & ~b (going further up while that is past m), the root the largest power of two <= m. The
    // odd positions are the leaves. Returns parent position (0 = none) and depth, indexed by position.
    static void btree(std::size_t m, std::vector<std::size_t>& parent, std::vector<int>& depth) {
        parent.assign(m + 1, 0);
        depth.assign(m + 1, 0);
        for (std::size_t x = 1; x <= m; ++x) {
            std::size_t y = x;
            while (true) {
                const std::size_t bit = y & (~y + 1);
                const std::size_t up = (y | (bit << 1)) & ~bit;
                if (up == y || bit << 1 > (std::size_t{1} << 62)) break;
                y = up;
                if (y <= m) break;
            }
            parent[x] = (y != x && y <= m) ? y : 0;
        }
        for (std::size_t x = 1; x <= m; ++x) {
            int d = 0;
            for (std::size_t y = x; parent[y] != 0; y = parent[y]) ++d;
            depth[x] = d;
        }
    }
    // NCCL's double binary tree (after Sanders, Speck and Traeff 2009): two trees over `ranks`, the second
    // shifted by one position, so that the leaves of one (odd positions) are the interior ranks of the
    // other; for an odd count the second is the mirror image instead, as NCCL does.
    static std::vector<std::vector<Edge>> double_tree(const std::vector<VertexId>& ranks, int depth0) {
        const std::size_t m = ranks.size();
        std::vector<std::size_t> par;
        std::vector<int> dep;
        btree(m, par, dep);
        std::vector<std::vector<Edge>> out(2);
        auto second = [&](std::size_t pos) {  // position (1-based) in tree 1 -> rank index for tree 2
            return m % 2 == 0 ? pos % m : m - pos;
        };
        for (std::size_t x = 1; x <= m; ++x)
            if (par[x] != 0) {
                out[0].push_back({ranks[x - 1], ranks[par[x] - 1], dep[x] + depth0});
                out[1].push_back({ranks[second(x)], ranks[second(par[x])], dep[x] + depth0});
            }
        return out;
    }
    // The ranks at the roots of the two trees of double_tree.
    static std::pair<VertexId, VertexId> tree_roots(const std::vector<VertexId>& ranks) {
        const std::size_t m = ranks.size();
        std::size_t root = 1;
        while (root * 2 <= m) root *= 2;
        return {ranks[root - 1], ranks[m % 2 == 0 ? root % m : m - root]};
    }

    // The ring of the symmetric ring collectives: node by node, each node's ranks in index order, every
    // other node reversed, so that consecutive nodes meet on the same local index (the same NIC rail of a
    // rail-optimised fabric, as NCCL's ring search arranges). Nodes of unequal size, an odd number of
    // nodes, or one node: rank order.
    static std::vector<VertexId> node_ring(const Group& g) {
        const std::size_t N = g.nodes.size();
        if (N < 2 || N % 2 != 0) return g.r;
        for (const auto& nd : g.nodes)
            if (nd.size() != g.nodes[0].size()) return g.r;
        std::vector<VertexId> out;
        for (std::size_t i = 0; i < N; ++i) {
            if (i % 2 == 0)
                out.insert(out.end(), g.nodes[i].begin(), g.nodes[i].end());
            else
                out.insert(out.end(), g.nodes[i].rbegin(), g.nodes[i].rend());
        }
        return out;
    }

    // The local indices of the ranks with a NIC of their own, the same in every node (see node_rings); empty
    // for one node, nodes of unequal size, or nodes whose NICs sit at different local indices.
    std::vector<std::size_t> nic_leaders(const Group& g) {
        const std::size_t N = g.nodes.size();
        if (N < 2) return {};
        const std::size_t L = g.nodes[0].size();
        for (const auto& nd : g.nodes)
            if (nd.size() != L) return {};
        std::vector<std::size_t> leaders;
        for (std::size_t i = 0; i < N; ++i) {
            std::vector<DirLink> nics;
            std::vector<std::size_t> lead;
            for (std::size_t l = 0; l < L; ++l) {
                const impl::PathView pv = routes.path(g.nodes[i][l], g.nodes[(i + 1) % N][l]);
                std::optional<DirLink> nic;
                for (uint32_t h = 0; h < pv.size && !nic; ++h)
                    if (routes.link_class(pv.hops[h]) == LinkClass::net) nic = pv.hops[h];
                if (!nic) return {};
                if (std::find(nics.begin(), nics.end(), *nic) == nics.end()) {
                    nics.push_back(*nic);
                    lead.push_back(l);
                }
            }
            if (i == 0)
                leaders = lead;
            else if (lead != leaders)
                return {};
        }
        return leaders;
    }
    // The rings of the ring collectives across nodes, as NCCL builds them (NVIDIA/nccl src/graph/search.cc,
    // v2.30.7: one ring per channel, "NET n -> GPU a -> .. -> GPU x -> NET n", the channels taking the
    // node's NICs in turn; src/graph/rings.cc joins the nodes' chains into rings): k rings, k the number
    // of the node's NICs, each carrying 1/k of the data. A rank's NIC is the first network-class link
    // (LinkClass::net) on its route to the rank of the same local index in the next node; ranks that
    // share it (behind one PCIe switch) share the NIC. Ring j enters every node at the j-th rank with a
    // NIC of its own (its leader) and walks the node's ranks in index order from there, leaving at the
    // rank before the leader; with an even number of nodes every other node is walked backwards (as
    // node_ring), so each hop between nodes joins ranks of the same local index (the same rail). Each
    // NIC then sends one ring's traffic and receives one ring's. One node, nodes of unequal size, nodes
    // whose NICs sit at different local indices, or one NIC per node: node_ring alone.
    std::vector<std::vector<VertexId>> node_rings(const Group& g) {
        const std::vector<std::size_t> leaders = nic_leaders(g);
        if (leaders.size() < 2) return {node_ring(g)};
        const std::size_t N = g.nodes.size(), L = g.nodes[0].size();
        std::vector<std::vector<VertexId>> rings;
        for (std::size_t s : leaders) {
            std::vector<VertexId> ring;
            ring.reserve(g.p());
            for (std::size_t i = 0; i < N; ++i) {
                const bool backwards = N % 2 == 0 && i % 2 == 1;
                for (std::size_t l = 0; l < L; ++l) {
                    const std::size_t at = backwards ? (s + L - 1 - l) % L : (s + l) % L;
                    ring.push_back(g.nodes[i][at]);
                }
            }
            rings.push_back(std::move(ring));
        }
        return rings;
    }
    // The trees of the tree all-reduce. Across nodes, NCCL's (src/graph/search.cc tree pattern "NET n ->
    // GPU a -> GPU b -> .. -> GPU x", src/graph/trees.cc the double binary tree over nodes; v2.30.7): per
    // channel a chain through each node's ranks from the rank at its NIC (the leader), and the nodes joined
    // by a double binary tree of the leaders; one channel per NIC (nic_leaders), the two trees of a channel
    // on the same NICs, each of the 2k trees carrying 1/(2k) of the data. A rank of node i at position c of
    // its chain has depth depth_node(i) + c. One node, or nodes without NICs of their own: the flat double
    // binary tree over all ranks (double_tree).
    std::vector<std::vector<Edge>> allreduce_trees(const Group& g) {
        const std::vector<std::size_t> leaders = nic_leaders(g);
        if (leaders.empty()) return double_tree(g.r, 0);
        const std::size_t N = g.nodes.size(), L = g.nodes[0].size();
        std::vector<std::vector<Edge>> out;
        for (std::size_t s : leaders) {
            std::vector<VertexId> heads(N);
            for (std::size_t i = 0; i < N; ++i) heads[i] = g.nodes[i][s];
            for (std::vector<Edge>& t : double_tree(heads, 0)) {
                std::vector<int> depth(N, 0);
                for (const Edge& e : t)
                    for (std::size_t i = 0; i < N; ++i)
                        if (heads[i] == e.child) depth[i] = e.depth;
                for (std::size_t i = 0; i < N; ++i)
                    for (std::size_t c = 1; c < L; ++c)
                        t.push_back({g.nodes[i][(s + c) % L], g.nodes[i][(s + c - 1) % L],
                                     depth[i] + static_cast<int>(c)});
                out.push_back(std::move(t));
            }
        }
        return out;
    }
    // The chains of a rooted ring collective: each ring from the root (or, to_root, ending at it).
    std::vector<std::vector<VertexId>> root_chains(const Group& g, bool to_root) {
        std::vector<std::vector<VertexId>> out;
        const VertexId root = g.rel(0);
        for (const auto& ring : node_rings(g)) {
            const std::size_t p = ring.size();
            const std::size_t at =
                static_cast<std::size_t>(std::find(ring.begin(), ring.end(), root) - ring.begin());
            std::vector<VertexId> c(p);
            for (std::size_t i = 0; i < p; ++i) c[i] = to_root ? ring[(at + 1 + i) % p] : ring[(at + i) % p];
            out.push_back(std::move(c));
        }
        return out;
    }

    // ---- algorithms ----
    void plan(Run& run, const CollectiveRequest& q, CollectiveAlgorithm alg, const Group& g) {
        using A = CollectiveAlgorithm;
        using K = CollectiveKind;
        const std::size_t p = g.p();
        const double n = static_cast<double>(q.bytes);
        const double pd = static_cast<double>(p);
        const K kind = q.kind;
        const auto& sup = supported_algorithms(kind);
        if (std::find(sup.begin(), sup.end(), alg) == sup.end()) unsupported(kind, alg);
        if ((alg == A::nvls || alg == A::nvls_tree) &&
            (run.proto == Protocol::ll || run.proto == Protocol::ll128))
            unsupported(kind, alg, "NVLS runs with the Simple protocol only, as in NCCL");
        if (!q.counts.empty() && kind == K::all_to_all && alg == A::bruck)
            unsupported(kind, alg, "all-to-allv needs direct or pairwise");
        std::vector<StepFlow> f;
        // ranks in order starting at the root
        std::vector<VertexId> from_root(p);
        for (std::size_t i = 0; i < p; ++i) from_root[i] = g.rel(i);
        // the root last, in ring order: root+1, ..., root
        std::vector<VertexId> to_root(p);
        for (std::size_t i = 0; i < p; ++i) to_root[i] = g.rel(i + 1);

        auto a2a_bytes = [&](std::size_t i, std::size_t j) {
            if (!q.counts.empty()) return static_cast<double>(q.counts[i * p + j]);
            return n / pd;
        };

        switch (alg) {
            case A::ring:
                switch (kind) {
                    case K::all_reduce:
                    case K::reduce_scatter:
                    case K::all_gather: {
                        const auto rings = node_rings(g);
                        const double piece = n / pd / static_cast<double>(rings.size());
                        if (kind != K::all_gather) rings_steps(run, rings, piece, p - 1, true);
                        if (kind != K::reduce_scatter) rings_steps(run, rings, piece, p - 1, false);
                        return;
                    }
                    case K::broadcast:
                    case K::reduce: {
                        const auto cs = root_chains(g, kind == K::reduce);
                        const double share = n / static_cast<double>(cs.size());
                        chains(run, cs, share, chunks(share), kind == K::reduce);
                        return;
                    }
                    case K::send_recv:
                        ring_steps(run, g.r, n, 1, false);
                        return;
                    case K::scatter:
                        for (std::size_t s = 0; s + 1 < p; ++s) {
                            f.clear();
                            for (std::size_t j = 0; j <= s; ++j)
                                f.push_back({from_root[j], from_root[j + 1], n / pd, false});
                            run.step(f);
                        }
                        return;
                    case K::gather:
                        for (std::size_t s = 0; s + 1 < p; ++s) {
                            f.clear();
                            for (std::size_t j = p - 2 - s; j + 1 < p; ++j)
                                f.push_back({to_root[j], to_root[j + 1], n / pd, false});
                            run.step(f);
                        }
                        return;
                    default:
                        break;
                }
                break;
            case A::direct:
                switch (kind) {
                    case K::broadcast:
                    case K::scatter:
                        f.clear();
                        for (std::size_t i = 1; i < p; ++i)
                            f.push_back({g.rel(0), g.rel(i), kind == K::broadcast ? n : n / pd, false});
                        run.step(f);
                        return;
                    case K::reduce:
                    case K::gather:
                        for (std::size_t i = 1; i < p; ++i)
                            f.push_back(
                                {g.rel(i), g.rel(0), kind == K::reduce ? n : n / pd, kind == K::reduce});
                        run.step(f);
                        return;
                    case K::all_gather:
                    case K::reduce_scatter:
                    case K::all_reduce:
                        if (kind != K::all_gather) {
                            f.clear();
                            for (std::size_t i = 0; i < p; ++i)
                                for (std::size_t j = 0; j < p; ++j)
                                    if (i != j) f.push_back({g.r[i], g.r[j], n / pd, true});
                            run.step(f);
                        }
                        if (kind != K::reduce_scatter) {
                            f.clear();
                            for (std::size_t i = 0; i < p; ++i)
                                for (std::size_t j = 0; j < p; ++j)
                                    if (i != j) f.push_back({g.r[i], g.r[j], n / pd, false});
                            run.step(f);
                        }
                        return;
                    case K::all_to_all:
                        if (p * (p - 1) > 16'000'000)
                            unsupported(kind, alg,
                                        std::to_string(p * (p - 1)) + " concurrent flows; use pairwise");
                        f.reserve(p * (p - 1));
                        for (std::size_t i = 0; i < p; ++i)
                            for (std::size_t j = 0; j < p; ++j)
                                if (i != j) f.push_back({g.r[i], g.r[j], a2a_bytes(i, j), false});
                        run.step(f);
                        return;
                    case K::send_recv:
                        ring_steps(run, g.r, n, 1, false);
                        return;
                }
                break;
            case A::pairwise:
                for (std::size_t k = 1; k < p; ++k) {
                    f.clear();
                    for (std::size_t i = 0; i < p; ++i)
                        f.push_back({g.r[i], g.r[(i + k) % p], a2a_bytes(i, (i + k) % p), false});
                    run.step(f);
                }
                return;
            case A::bruck:
                for (std::size_t d = 1; d < p; d *= 2) {
                    f.clear();
                    if (kind == K::all_gather) {
                        const double blocks = static_cast<double>(std::min(d, p - d));
                        for (std::size_t i = 0; i < p; ++i)
                            f.push_back({g.r[i], g.r[(i + p - d) % p], blocks * n / pd, false});
                    } else {
                        std::size_t blocks = 0;
                        for (std::size_t j = 0; j < p; ++j) blocks += (j & d) ? 1 : 0;
                        for (std::size_t i = 0; i < p; ++i)
                            f.push_back(
                                {g.r[i], g.r[(i + d) % p], static_cast<double>(blocks) * n / pd, false});
                    }
                    run.step(f);
                }
                return;
            case A::halving_doubling:
                if (!power_of_two(p))
                    unsupported(kind, alg, "needs a power-of-two group, got " + std::to_string(p));
                switch (kind) {
                    case K::all_reduce:
                        halving_rs(run, g, n);
                        doubling_ag(run, g, n);
                        return;
                    case K::reduce_scatter:
                        halving_rs(run, g, n);
                        return;
                    case K::all_gather:
                        doubling_ag(run, g, n);
                        return;
                    case K::broadcast:
                        binomial_scatter(run, g, n / pd);
                        doubling_ag(run, g, n);
                        return;
                    case K::reduce:
                        halving_rs(run, g, n);
                        binomial_gather(run, g, n / pd);
                        return;
                    case K::scatter:
                        binomial_scatter(run, g, n / pd);
                        return;
                    case K::gather:
                        binomial_gather(run, g, n / pd);
                        return;
                    default:
                        break;
                }
                break;
            case A::tree:
                switch (kind) {
                    case K::scatter:
                        binomial_scatter(run, g, n / pd);
                        return;
                    case K::gather:
                        binomial_gather(run, g, n / pd);
                        return;
                    case K::all_reduce: {
                        const auto trees = allreduce_trees(g);
                        tree_pipeline(run, trees, n / static_cast<double>(trees.size()), true, true);
                        return;
                    }
                    case K::broadcast:
                    case K::reduce: {
                        std::vector<VertexId> others(from_root.begin() + 1, from_root.end());
                        auto trees = double_tree(others, 1);
                        // the root is the parent of both trees' roots
                        const auto [r1, r2] = tree_roots(others);
                        trees[0].push_back({r1, g.rel(0), 1});
                        trees[1].push_back({r2, g.rel(0), 1});
                        tree_pipeline(run, trees, n / 2, kind == K::reduce, kind == K::broadcast);
                        return;
                    }
                    default:
                        break;
                }
                break;
            case A::hierarchical:
                hierarchical(run, q, g, false);
                return;
            case A::nvls_tree:
                hierarchical(run, q, g, true);
                return;
            case A::nvls:
                nvls(run, q, g);
                return;
            case A::automatic:
                break;
        }
        unsupported(kind, alg);
    }

    // Both trees move `half` bytes each in chunks: up (child -> parent, reduced) then down.
    void tree_pipeline(Run& run, const std::vector<std::vector<Edge>>& trees, double half, bool up,
                       bool down) {
        int depth = 0;
        for (const auto& t : trees)
            for (const Edge& e : t) depth = std::max(depth, e.depth);
        if (depth == 0) return;
        const std::size_t k = chunks(half);
        const double c = half / static_cast<double>(k);
        const long D = depth, K = static_cast<long>(k);
        const long total = up && down ? 2 * D + K - 1 : D + K - 1;
        const long first = up ? D : 0;  // a chunk leaves the root after it got there
        std::vector<StepFlow> f;
        StepRuns runs(run);
        // An edge at depth d carries chunks up in steps D - d to D - d + K - 1 and down in first + d - 1 to
        // first + d + K - 2: between those bounds the steps' flows are alike (planned once, repeated).
        std::vector<long> bounds{0, total};
        for (long d = 1; d <= D; ++d)
            for (const long b : {D - d, D - d + K, first + d - 1, first + d - 1 + K}) bounds.push_back(b);
        std::sort(bounds.begin(), bounds.end());
        bounds.erase(std::unique(bounds.begin(), bounds.end()), bounds.end());
        for (std::size_t b = 0; b + 1 < bounds.size(); ++b) {
            const long s = bounds[b], until = std::min(bounds[b + 1], total);
            if (s < 0 || s >= total) continue;
            f.clear();
            for (const auto& t : trees)
                for (const Edge& e : t) {
                    if (up) {
                        const long ch = s - (D - e.depth);
                        if (ch >= 0 && ch < K) f.push_back({e.child, e.parent, c, true});
                    }
                    if (down) {
                        const long ch = s - first - (e.depth - 1);
                        if (ch >= 0 && ch < K) f.push_back({e.parent, e.child, c, false});
                    }
                }
            runs.add(f, static_cast<std::size_t>(until - s));
        }
        runs.flush();
    }

    // nvls_tree: NCCL's NVLS_TREE (all-reduce only): the in-switch reduce-scatter inside each node, per
    // local index l a double binary tree over the nodes' l-th ranks all-reducing that rank's 1/L, and the
    // in-switch all-gather; pipelined over pieces as the hierarchical plan is.
    void hierarchical(Run& run, const CollectiveRequest& q, const Group& g, bool nvls_tree) {
        using K = CollectiveKind;
        const CollectiveAlgorithm self =
            nvls_tree ? CollectiveAlgorithm::nvls_tree : CollectiveAlgorithm::hierarchical;
        const std::size_t N = g.nodes.size();
        const std::size_t L = g.nodes[0].size();
        for (const auto& nd : g.nodes)
            if (nd.size() != L) unsupported(q.kind, self, "every node must hold as many ranks of the group");
        const double n = static_cast<double>(q.bytes);
        const double pd = static_cast<double>(g.p()), Ld = static_cast<double>(L);
        // inter-node rings: one per local index
        std::vector<std::vector<VertexId>> across(L);
        for (std::size_t l = 0; l < L; ++l)
            for (std::size_t i = 0; i < N; ++i) across[l].push_back(g.nodes[i][l]);
        bool sharp = L > 1 && run.proto != Protocol::ll && run.proto != Protocol::ll128;  // NVLS: Simple only
        for (const auto& nd : g.nodes) sharp = sharp && nvls_switch(nd).has_value();
        std::vector<std::vector<Edge>> trees_across;
        if (nvls_tree) {
            if (q.kind != K::all_reduce) unsupported(q.kind, self);
            if (N < 2) unsupported(q.kind, self, "the group is within one node (NCCL runs NVLS there)");
            if (!sharp)
                unsupported(q.kind, self,
                            "every node needs a switch with in_network_reduction joining its ranks, and more "
                            "than one rank per node");
            for (const auto& ranks : across)
                for (auto& t : double_tree(ranks, 0)) trees_across.push_back(std::move(t));
        }
        auto intra = [&](Run& r, bool reduce_scatter_phase, double bytes) {
            if (L < 2) return;
            const double n = bytes;  // the phase's own size
            if (sharp) {
                std::vector<StepFlow> f;
                for (const auto& nd : g.nodes) {
                    const VertexId sw = *nvls_switch(nd);
                    const double share = sharp_share(sw);
                    for (VertexId v : nd) {
                        f.push_back({v, sw, reduce_scatter_phase ? n : n / Ld, false, share});
                        f.push_back({sw, v, reduce_scatter_phase ? n / Ld : n, false, share});
                    }
                }
                r.step(f, up_latency(g.nodes[0][0], *nvls_switch(g.nodes[0])));
            } else {
                rings_steps(r, g.nodes, n / Ld, L - 1, reduce_scatter_phase);
            }
        };
        // The symmetric kinds may pipeline their phases over C pieces of the message, as NCCL overlaps its
        // intra- and inter-node stages: each phase is timed on one piece, and the whole takes the pipeline
        // time sum_j T_j + (C - 1) max(T_inside, T_across), where T_inside sums the phases within nodes
        // (they share the node's links) and T_across those across nodes. This assumes the two sets use
        // different links (NVLink inside a node, NICs across), as hierarchical fabrics do; the link bytes
        // are those of C pieces. C is the fastest of 1, 2, 4, ... up to pipeline_pieces (more pieces hide
        // more of the shorter set but pay every step's latency once per piece).
        const bool symmetric =
            q.kind == K::all_reduce || q.kind == K::reduce_scatter || q.kind == K::all_gather;
        auto pipeline = [&](Run& r, std::size_t C) {
            const double m = n / static_cast<double>(C);
            double inside = 0, across_s = 0;  // phases on the same links add up
            auto timed = [&](double& into, auto&& phase) {
                const double t0 = r.now;
                phase();
                into += r.now - t0;
            };
            if (nvls_tree) {
                timed(inside, [&] { intra(r, true, m); });
                timed(across_s, [&] {
                    tree_pipeline(r, trees_across, m / static_cast<double>(trees_across.size()), true, true);
                });
                timed(inside, [&] { intra(r, false, m); });
            } else if (q.kind != K::all_gather) {
                timed(inside, [&] { intra(r, true, m); });
                timed(across_s, [&] { rings_steps(r, across, m / pd, N - 1, true); });
            }
            if (!nvls_tree && q.kind != K::reduce_scatter) {
                timed(across_s, [&] { rings_steps(r, across, m / pd, N - 1, false); });
                timed(inside, [&] { intra(r, false, m); });
            }
            if (C > 1) {
                r.now += static_cast<double>(C - 1) * std::max(inside, across_s);
                for (std::size_t d = 0; d < r.dir_bytes.size(); ++d)
                    if (r.dir_bytes[d] > 0) {
                        r.dir_bytes[d] *= static_cast<double>(C);
                        r.local_busy[d] = std::max(r.local_busy[d], r.now);
                    }
            }
        };
        if (symmetric) {
            std::size_t best = 1;
            if (N > 1 && L > 1) {
                double best_end = std::numeric_limits<double>::infinity();
                for (std::size_t C = 1; C <= std::max<std::size_t>(1, opt.pipeline_pieces); C *= 2) {
                    Run trial(*this, run.kind, run.proto, true, run.now);
                    trial.row = run.row;
                    pipeline(trial, C);
                    if (trial.now < best_end) best_end = trial.now, best = C;
                }
            }
            pipeline(run, best);
            return;
        }
        std::size_t root_node = 0, root_local = 0;
        for (std::size_t i = 0; i < N; ++i)
            for (std::size_t l = 0; l < L; ++l)
                if (g.nodes[i][l] == g.rel(0)) root_node = i, root_local = l;
        switch (q.kind) {
            case K::broadcast:
            case K::reduce: {
                std::vector<VertexId> inter;  // the root's local peers, starting at the root's node
                for (std::size_t i = 0; i < N; ++i) inter.push_back(g.nodes[(root_node + i) % N][root_local]);
                std::vector<std::vector<VertexId>> local;
                for (std::size_t i = 0; i < N; ++i) {
                    std::vector<VertexId> c;
                    for (std::size_t l = 0; l < L; ++l) c.push_back(g.nodes[i][(root_local + l) % L]);
                    local.push_back(c);
                }
                if (q.kind == K::broadcast) {
                    chains(run, {inter}, n, chunks(n), false);
                    chains(run, local, n, chunks(n), false);
                } else {
                    for (auto& c : local) std::reverse(c.begin(), c.end());
                    std::reverse(inter.begin(), inter.end());
                    chains(run, local, n, chunks(n), true);
                    chains(run, {inter}, n, chunks(n), true);
                }
                return;
            }
            default:
                unsupported(q.kind, self);
        }
    }

    // The rate share of flows into and out of an in-network-reduction switch (1: none below the links').
    double sharp_share(VertexId sw) const {
        const double e = topo->vertex(sw).sw.reduction_efficiency;
        return e > 0 && e < 1 ? e : 0.0;
    }

    double up_latency(VertexId v, VertexId sw) {
        const impl::PathView pv = routes.path(v, sw);
        return pv.latency_s;
    }

    // In-switch reduction and multicast (NVLink SHARP): ranks push their data into the switch, which
    // reduces it and multicasts results. Both directions of every link run at once (chunks pipeline the
    // two halves); the multicast can only start once the first data reached the switch (one up latency).
    void nvls(Run& run, const CollectiveRequest& q, const Group& g) {
        using K = CollectiveKind;
        const auto sw = nvls_switch(g.r);
        if (!sw)
            unsupported(q.kind, CollectiveAlgorithm::nvls,
                        "no switch with in_network_reduction joins every rank");
        const double n = static_cast<double>(q.bytes), pd = static_cast<double>(g.p());
        std::vector<StepFlow> f;
        for (std::size_t i = 0; i < g.p(); ++i) {
            const VertexId v = g.r[i];
            const bool is_root = v == g.rel(0);
            double upb = 0, downb = 0;
            switch (q.kind) {
                case K::all_reduce:
                    upb = n + n / pd;
                    downb = n / pd + n;
                    break;
                case K::all_gather:
                    upb = n / pd;
                    downb = n;
                    break;
                case K::reduce_scatter:
                    upb = n;
                    downb = n / pd;
                    break;
                case K::broadcast:
                    upb = is_root ? n : 0;
                    downb = is_root ? 0 : n;
                    break;
                case K::reduce:
                    upb = n;
                    downb = is_root ? n : 0;
                    break;
                default:
                    unsupported(q.kind, CollectiveAlgorithm::nvls);
            }
            if (upb > 0) f.push_back({v, *sw, upb, false, sharp_share(*sw)});
            if (downb > 0) f.push_back({*sw, v, downb, false, sharp_share(*sw)});
        }
        run.step(f, up_latency(g.r[0], *sw));
    }

    // ---- closed-form estimates for the automatic choice (see the contract in flow_network.h) ----
    struct PathSet {
        double lat = 0;                                        // slowest path latency
        double cap = std::numeric_limits<double>::infinity();  // narrowest payload rate
        int cls = -1;                                          // slowest link class
        double into = 1;  // the most flows one receiver reduces at once (they share its reduction rate)
    };
    // As paths_of, for flows that all run at once: cap is the narrowest rate a flow gets, each link's
    // payload rate split evenly among the flows crossing it (the busiest port's share), and `into` the
    // most flows into one receiver.
    PathSet shared_paths_of(const std::vector<std::pair<VertexId, VertexId>>& pairs) {
        PathSet ps;
        std::map<DirLink, int> on;
        std::map<VertexId, int> dst;
        for (const auto& [a, b] : pairs) {
            if (a == b) continue;
            const impl::PathView pv = routes.path(a, b);
            if (pv.latency_s < 0) continue;
            ps.lat = std::max(ps.lat, pv.latency_s);
            for (uint32_t k = 0; k < pv.size; ++k) ++on[pv.hops[k]];
            if (pv.size > 0) ps.cls = std::max(ps.cls, static_cast<int>(pv.cls));
            ps.into = std::max(ps.into, static_cast<double>(++dst[b]));
        }
        for (const auto& [d, count] : on) ps.cap = std::min(ps.cap, routes.capacity(d) / count);
        return ps;
    }
    PathSet paths_of(const std::vector<std::pair<VertexId, VertexId>>& pairs) {
        PathSet ps;
        for (const auto& [a, b] : pairs) {
            if (a == b) continue;
            const impl::PathView pv = routes.path(a, b);
            if (pv.latency_s < 0) continue;
            ps.lat = std::max(ps.lat, pv.latency_s);
            for (uint32_t k = 0; k < pv.size; ++k) ps.cap = std::min(ps.cap, routes.capacity(pv.hops[k]));
            if (pv.size > 0) ps.cls = std::max(ps.cls, static_cast<int>(pv.cls));
        }
        return ps;
    }
    static std::vector<std::pair<VertexId, VertexId>> ring_pairs(const std::vector<VertexId>& ring) {
        std::vector<std::pair<VertexId, VertexId>> out;
        if (ring.size() < 2) return out;
        for (std::size_t i = 0; i < ring.size(); ++i) out.push_back({ring[i], ring[(i + 1) % ring.size()]});
        return out;
    }

    double estimate(const CollectiveRequest& q, const Group& g, CollectiveAlgorithm alg, Protocol proto) {
        using A = CollectiveAlgorithm;
        using K = CollectiveKind;
        constexpr double inf = std::numeric_limits<double>::infinity();
        const std::size_t p = g.p();
        if (p < 2) return 0;
        const auto& sup = supported_algorithms(q.kind);
        if (std::find(sup.begin(), sup.end(), alg) == sup.end()) return inf;
        const int pi = proto_index(proto);
        const bool multi = g.nodes.size() > 1;
        double eff = 1;
        if (pi == 0) eff = (is_reduction(q.kind) || multi) ? 1.0 / 4.0 : 1.0 / 3.0;
        if (pi == 1) eff = 0.92;
        double R = inf;  // the slowest receiver's reduction rate (payload)
        for (VertexId v : g.r) {
            const double r = v < opt.reduce_Bps.size() ? opt.reduce_Bps[v] : 0.0;
            if (r > 0) R = std::min(R, r);
        }
        const LatRow lat_row = alg == A::nvls || alg == A::nvls_tree                ? LatRow::nvls
                               : alg == A::tree && q.kind == K::all_reduce && multi ? LatRow::tree
                                                                                    : LatRow::ring;
        auto extra = [&](int cls) { return step_extra_s(pi, cls, lat_row); };
        // one step: `load` payload bytes through the busiest port, `piece` reduced by a receiver
        auto step = [&](const PathSet& ps, double load, double piece, bool reduce) {
            double rate = ps.cap * eff;
            if (reduce && opt.overlap_reduction) rate = std::min(rate, R / ps.into);
            double t = ps.lat + load / rate + extra(ps.cls);
            if (reduce && R < inf)
                t += (opt.overlap_reduction ? std::min(piece, opt.chunk_bytes) : piece) / R;
            return t;
        };
        const double n = static_cast<double>(q.bytes), pd = static_cast<double>(p);
        const double base = call_latency_s(pi, alg);
        // Trees across nodes (the tree all-reduce's, NVLS_TREE's), all at once, together carrying `total`
        // bytes: each link's rate shared by the tree edges crossing it. The first chunk goes up and down
        // level by level (a step per level: that level's edges at once, t_d; the down wave timed as the up
        // one), every further chunk follows one step later at the steady state's rate, when every edge
        // carries a chunk each way (t_full): the pipeline's 2 sum_d t_d + (k - 1) t_full.
        auto trees_time = [&](const std::vector<std::vector<Edge>>& trees, double total) {
            const double T = static_cast<double>(trees.size());
            const double k = static_cast<double>(chunks(total / T)), c = total / T / k;
            std::map<int, std::vector<std::pair<VertexId, VertexId>>> level;
            std::vector<std::pair<VertexId, VertexId>> up, both;
            int depth = 0;
            for (const auto& t : trees)
                for (const Edge& e : t) {
                    level[e.depth].push_back({e.child, e.parent});
                    up.push_back({e.child, e.parent});
                    both.push_back({e.child, e.parent});
                    both.push_back({e.parent, e.child});
                    depth = std::max(depth, e.depth);
                }
            if (depth == 0) return inf;
            double t_levels = 0;
            for (const auto& [d, pairs] : level) {
                const PathSet ps = shared_paths_of(pairs);
                t_levels += step(ps, c, ps.into * c, true);
            }
            if (k == 1) return 2 * t_levels;
            PathSet full = shared_paths_of(both);
            full.into = shared_paths_of(up).into;  // only the up flows are reduced
            return 2 * t_levels + (k - 1) * step(full, c, full.into * c, true);
        };
        switch (alg) {
            case A::ring: {
                // node_rings' k rings step together, each flow 1/k of the single ring's
                const auto rings = node_rings(g);
                const double kr = static_cast<double>(rings.size());
                std::vector<std::pair<VertexId, VertexId>> pairs;
                for (const auto& ring : rings)
                    for (const auto& e : ring_pairs(ring)) pairs.push_back(e);
                if (q.kind == K::all_reduce || q.kind == K::reduce_scatter || q.kind == K::all_gather) {
                    const PathSet ps = shared_paths_of(pairs);
                    const double piece = n / pd / kr;
                    double t = 0;
                    if (q.kind != K::all_gather) t += (pd - 1) * step(ps, piece, n / pd, true);
                    if (q.kind != K::reduce_scatter) t += (pd - 1) * step(ps, piece, n / pd, false);
                    return base + t;
                }
                if (q.kind == K::broadcast || q.kind == K::reduce) {
                    // in steady state every hop of every chain carries a chunk
                    std::vector<std::pair<VertexId, VertexId>> hops;
                    for (const auto& c : root_chains(g, q.kind == K::reduce))
                        for (std::size_t i = 0; i + 1 < c.size(); ++i) hops.push_back({c[i], c[i + 1]});
                    const PathSet ps = shared_paths_of(hops);
                    const double share = n / kr;
                    const double k = static_cast<double>(chunks(share));
                    return base + (pd - 2 + k) * step(ps, share / k, kr * share / k, q.kind == K::reduce);
                }
                return inf;
            }
            case A::tree: {
                if (q.kind != K::all_reduce) return inf;
                const auto trees = allreduce_trees(g);
                if (trees.size() > 2 || (g.nodes.size() > 1 && !nic_leaders(g).empty())) {
                    // NCCL's trees across nodes (allreduce_trees): 2k trees at once, each link's rate shared
                    // by the tree edges crossing it. The first chunk goes up and down level by level (a step
                    // per level: that level's edges at once, t_d; the down wave timed as the up one), every
                    // further chunk follows one step later at the steady state's rate, when every edge
                    // carries a chunk each way (t_full): the pipeline's 2 sum_d t_d + (k - 1) t_full.
                    return base + trees_time(trees, n);
                }
                std::vector<std::pair<VertexId, VertexId>> pairs;
                std::map<VertexId, int> degree;
                int depth = 0;
                for (const auto& t : trees)
                    for (const Edge& e : t) {
                        pairs.push_back({e.child, e.parent});
                        ++degree[e.child];
                        ++degree[e.parent];
                        depth = std::max(depth, e.depth);
                    }
                if (depth == 0) return inf;
                int busiest = 1;
                for (const auto& [v, d] : degree) busiest = std::max(busiest, d);
                const PathSet ps = paths_of(pairs);
                const double k = static_cast<double>(chunks(n / 2)), c = n / 2 / k;
                // one chunk: the up and down waves never overlap, each step one chunk per port; more chunks:
                // in steady state a rank sends to its parents and children at once
                return base + (2 * depth + k - 1) * step(ps, (k > 1 ? busiest : 1) * c, c, true);
            }
            case A::nvls: {
                if (pi == 0 || pi == 1) return inf;
                const auto sw = nvls_switch(g.r);
                if (!sw) return inf;
                std::vector<std::pair<VertexId, VertexId>> pairs;
                for (VertexId v : g.r) pairs.push_back({v, *sw});
                PathSet ps = paths_of(pairs);
                const double share = sharp_share(*sw);
                if (share > 0) ps.cap *= share;
                double bytes = n;
                if (q.kind == K::all_reduce) bytes = n + n / pd;
                if (q.kind != K::all_reduce && q.kind != K::all_gather && q.kind != K::reduce_scatter &&
                    q.kind != K::broadcast && q.kind != K::reduce)
                    return inf;
                return base + 2 * ps.lat + bytes / (ps.cap * eff) + extra(ps.cls);
            }
            case A::nvls_tree: {
                // as hierarchical() plans it: in-switch reduce-scatter and all-gather inside the nodes, the
                // trees across, pipelined over the fastest of 1, 2, 4, ... pieces
                const std::size_t N = g.nodes.size(), L = g.nodes[0].size();
                if (q.kind != K::all_reduce || N < 2 || L < 2 || pi == 0 || pi == 1) return inf;
                for (const auto& nd : g.nodes)
                    if (nd.size() != L || !nvls_switch(nd)) return inf;
                std::vector<std::vector<Edge>> trees;
                for (std::size_t l = 0; l < L; ++l) {
                    std::vector<VertexId> ranks;
                    for (std::size_t i = 0; i < N; ++i) ranks.push_back(g.nodes[i][l]);
                    for (auto& t : double_tree(ranks, 0)) trees.push_back(std::move(t));
                }
                const VertexId sw = *nvls_switch(g.nodes[0]);
                std::vector<std::pair<VertexId, VertexId>> in_pairs;
                for (VertexId v : g.nodes[0]) in_pairs.push_back({v, sw});
                PathSet in = paths_of(in_pairs);
                const double share = sharp_share(sw);
                if (share > 0) in.cap *= share;
                double best = inf;
                for (std::size_t C = 1; C <= std::max<std::size_t>(1, opt.pipeline_pieces); C *= 2) {
                    const double m = n / static_cast<double>(C);
                    const double inside = 2 * (2 * in.lat + m / (in.cap * eff) + extra(in.cls));
                    const double acr = trees_time(trees, m);
                    best = std::min(best, inside + acr + static_cast<double>(C - 1) * std::max(inside, acr));
                }
                return base + best;
            }
            case A::hierarchical: {
                const std::size_t N = g.nodes.size(), L = g.nodes[0].size();
                for (const auto& nd : g.nodes)
                    if (nd.size() != L) return inf;
                const double Ld = static_cast<double>(L);
                std::vector<std::vector<VertexId>> across(L);
                for (std::size_t l = 0; l < L; ++l)
                    for (std::size_t i = 0; i < N; ++i) across[l].push_back(g.nodes[i][l]);
                bool sharp = L > 1 && pi != 0 && pi != 1;
                for (const auto& nd : g.nodes) sharp = sharp && nvls_switch(nd).has_value();
                std::vector<std::pair<VertexId, VertexId>> in_pairs, x_pairs;
                if (sharp) {
                    const VertexId sw = *nvls_switch(g.nodes[0]);
                    for (VertexId v : g.nodes[0]) in_pairs.push_back({v, sw});
                } else {
                    for (const auto& nd : g.nodes)
                        for (const auto& e : ring_pairs(nd)) in_pairs.push_back(e);
                }
                for (const auto& ring : across)
                    for (const auto& e : ring_pairs(ring)) x_pairs.push_back(e);
                PathSet in = paths_of(in_pairs);
                const PathSet x = paths_of(x_pairs);
                if (sharp) {
                    const double share = sharp_share(*nvls_switch(g.nodes[0]));
                    if (share > 0) in.cap *= share;
                }
                auto intra = [&](double m, bool rs) {
                    if (L < 2) return 0.0;
                    if (sharp) return 2 * in.lat + m / (in.cap * eff) + extra(in.cls);
                    return (Ld - 1) * step(in, m / Ld, m / Ld, rs);
                };
                auto inter = [&](double m, bool rs) {
                    if (N < 2) return 0.0;
                    return (static_cast<double>(N) - 1) * step(x, m / pd, m / pd, rs);
                };
                if (q.kind == K::all_reduce || q.kind == K::reduce_scatter || q.kind == K::all_gather) {
                    double best = inf;
                    const std::size_t maxC =
                        (N > 1 && L > 1) ? std::max<std::size_t>(1, opt.pipeline_pieces) : 1;
                    for (std::size_t C = 1; C <= maxC; C *= 2) {
                        const double m = n / static_cast<double>(C);
                        double inside = 0, acr = 0;
                        if (q.kind != K::all_gather) inside += intra(m, true), acr += inter(m, true);
                        if (q.kind != K::reduce_scatter) inside += intra(m, false), acr += inter(m, false);
                        best =
                            std::min(best, inside + acr + static_cast<double>(C - 1) * std::max(inside, acr));
                    }
                    return base + best;
                }
                if (q.kind == K::broadcast || q.kind == K::reduce) {
                    const double k = static_cast<double>(chunks(n)), c = n / k;
                    const bool r = q.kind == K::reduce;
                    double t = 0;
                    if (N > 1) t += (static_cast<double>(N) - 2 + k) * step(x, c, c, r);
                    if (L > 1) {
                        PathSet chain = paths_of(in_pairs);
                        if (sharp) chain = in;
                        t += (Ld - 2 + k) * step(chain, c, c, r);
                    }
                    return base + t;
                }
                return inf;
            }
            default:
                return inf;
        }
    }

    void validate(const CollectiveRequest& q) const {
        const std::string what = "error: collective " + std::string(to_string(q.kind)) + ": ";
        if (q.group.empty()) throw cfg::UserError(what + "the group is empty");
        if (q.bytes < 0) throw cfg::UserError(what + "negative size " + std::to_string(q.bytes));
        std::vector<VertexId> seen;
        for (VertexId v : q.group) {
            if (v >= topo->vertex_count())
                throw cfg::UserError(what + "vertex " + std::to_string(v) + " does not exist");
            if (!topo->vertex(v).is_device())
                throw cfg::UserError(what + "'" + topo->vertex(v).name + "' is a switch, not a device");
            if (std::find(seen.begin(), seen.end(), v) != seen.end())
                throw cfg::UserError(what + "device '" + topo->vertex(v).name + "' is in the group twice");
            seen.push_back(v);
        }
        if (q.root && (*q.root >= topo->vertex_count()))
            throw cfg::UserError(what + "root vertex " + std::to_string(*q.root) + " does not exist");
        if (!q.counts.empty() &&
            (q.kind != CollectiveKind::all_to_all || q.counts.size() != q.group.size() * q.group.size()))
            throw cfg::UserError(what + "counts must be a p x p matrix (" +
                                 std::to_string(q.group.size() * q.group.size()) +
                                 " entries) and only all_to_all takes them");
        for (int64_t c : q.counts)
            if (c < 0) throw cfg::UserError(what + "negative count " + std::to_string(c));
        for (VertexId v : q.group)
            if (!routes_reachable(q.group[0], v))
                throw cfg::UserError(what + "no route between '" + topo->vertex(q.group[0]).name + "' and '" +
                                     topo->vertex(v).name + "'");
    }
    bool routes_reachable(VertexId a, VertexId b) const {
        return const_cast<impl::RouteTable&>(routes).reachable(a, b);
    }

    // A simulated call before it is recorded: its result (no link bytes yet), and what recording it adds to
    // the links.
    struct Simulated {
        CollectiveResult res;
        std::vector<double> dir_bytes, local_busy;
    };

    CollectiveResult run_one(const CollectiveRequest& q, CollectiveAlgorithm alg, Protocol proto,
                             bool record) {
        Simulated s = simulate_one(q, alg, proto);
        return record ? commit(std::move(s)) : std::move(s.res);
    }

    // Simulates a call on the links as they are, changing none of them (commit() records it).
    Simulated simulate_one(const CollectiveRequest& q, CollectiveAlgorithm alg, Protocol proto) {
        const Group g = make_group(q);
        const double t0 = q.start.to_seconds();
        Run run(*this, q.kind, proto, g.nodes.size() > 1, t0);
        // NCCL's tree latencies apply between nodes (tuning.cc: NCCL_HW_NET only when nNodes > 1); within one
        // node a network-class link (a socket link, say) keeps the ring row. NVLS and NVLS_TREE: their own.
        if (alg == CollectiveAlgorithm::nvls || alg == CollectiveAlgorithm::nvls_tree)
            run.row = LatRow::nvls;
        else if (alg == CollectiveAlgorithm::tree && q.kind == CollectiveKind::all_reduce &&
                 g.nodes.size() > 1)
            run.row = LatRow::tree;
        CollectiveResult res;
        res.start = q.start;
        res.algorithm = alg;
        res.protocol = proto;
        if (g.p() > 1) {
            plan(run, q, alg, g);
            run.now += call_latency_s(proto_index(proto), alg);
        }
        res.end = Tick::from_seconds(run.now);
        if (res.end < res.start) res.end = res.start;
        res.steps = run.steps;
        res.energy_j = energy_of(run.dir_bytes);
        return Simulated{std::move(res), std::move(run.dir_bytes), std::move(run.local_busy)};
    }

    // Records a simulated call: the links' energy, busy time and busy-until, and the result's link bytes.
    // Recording the chosen trial of `automatic` gives what simulating it again would: nothing a trial leaves
    // behind (the routes and the solver's last stage, both caches) changes a simulation's numbers.
    CollectiveResult commit(Simulated&& s) {
        CollectiveResult res = std::move(s.res);
        for (std::size_t d = 0; d < s.dir_bytes.size(); ++d)
            energy_j[d] += s.dir_bytes[d] * joule_per_byte[d];
        for (std::size_t d = 0; d < s.dir_bytes.size(); ++d) {
            if (s.local_busy[d] > busy_until[d]) {
                busy_seconds[d] += s.dir_bytes[d] / routes.capacity(static_cast<DirLink>(d));
                busy_until[d] = s.local_busy[d];
            }
        }
        for (LinkId l = 0; l < topo->link_count(); ++l) {
            const double ab = s.dir_bytes[2 * l], ba = s.dir_bytes[2 * l + 1];
            if (ab > 0 || ba > 0) res.link_bytes.push_back({l, ab, ba});
        }
        return res;
    }
};

FlowNetwork::FlowNetwork(std::shared_ptr<const Topology> topology, NetworkOptions options)
    : m_impl(std::make_unique<Impl>(std::move(topology), std::move(options))) {
    MLSIM_CHECK(m_impl->opt.packet_bytes > 0, "packet size must be positive");
}

FlowNetwork::~FlowNetwork() = default;

const Topology& FlowNetwork::topology() const { return *m_impl->topo; }
const NetworkOptions& FlowNetwork::options() const { return m_impl->opt; }
const std::vector<double>& FlowNetwork::busy_seconds() const { return m_impl->busy_seconds; }
const std::vector<double>& FlowNetwork::link_energy_j() const { return m_impl->energy_j; }
int64_t FlowNetwork::repeated_steps() const { return m_impl->repeated_steps; }

Transfer FlowNetwork::transfer(VertexId src, VertexId dst, int64_t bytes, Tick start) {
    const Topology& t = *m_impl->topo;
    auto name = [&](VertexId v) {
        return v < t.vertex_count() ? "'" + t.vertex(v).name + "'" : "vertex " + std::to_string(v);
    };
    if (src >= t.vertex_count() || dst >= t.vertex_count() || !t.vertex(src).is_device() ||
        !t.vertex(dst).is_device())
        throw cfg::UserError("error: transfer from " + name(src) + " to " + name(dst) +
                             ": both ends must be devices");
    if (bytes < 0) throw cfg::UserError("error: transfer of a negative size");
    Transfer out;
    out.start = out.end = start;
    if (src == dst) return out;
    if (!m_impl->routes_reachable(src, dst))
        throw cfg::UserError("error: transfer: no route between " + name(src) + " and " + name(dst));
    Impl::Run run(*m_impl, CollectiveKind::send_recv, Protocol::ideal, false, start.to_seconds());
    run.step({{src, dst, static_cast<double>(bytes), false}});
    const impl::PathView pv = m_impl->routes.path(src, dst);
    for (uint32_t k = 0; k < pv.size; ++k) {
        const Link& l = t.link(pv.hops[k] / 2);
        const VertexId from = pv.hops[k] % 2 == 0 ? l.a : l.b;
        out.hops.push_back({l.id, from, l.other(from)});
    }
    for (std::size_t d = 0; d < run.dir_bytes.size(); ++d)
        m_impl->energy_j[d] += run.dir_bytes[d] * m_impl->joule_per_byte[d];
    for (std::size_t d = 0; d < run.dir_bytes.size(); ++d)
        if (run.local_busy[d] > m_impl->busy_until[d]) {
            m_impl->busy_seconds[d] += run.dir_bytes[d] / m_impl->routes.capacity(static_cast<DirLink>(d));
            m_impl->busy_until[d] = run.local_busy[d];
        }
    out.end = std::max(start, Tick::from_seconds(run.now));
    return out;
}

CollectiveResult FlowNetwork::collective(const CollectiveRequest& request) {
    Impl& im = *m_impl;
    im.validate(request);
    std::vector<CollectiveAlgorithm> algs;
    if (request.algorithm == CollectiveAlgorithm::automatic)
        algs = automatic_candidates(request.kind, im.make_group(request).nodes.size() > 1);
    else
        algs = {request.algorithm};
    std::vector<Protocol> protos;
    if (request.protocol == Protocol::automatic && (request.algorithm == CollectiveAlgorithm::nvls ||
                                                    request.algorithm == CollectiveAlgorithm::nvls_tree))
        protos = {Protocol::simple};  // NVLS runs Simple only: where it cannot run, the reason is its own
    else if (request.protocol == Protocol::automatic)
        protos = {Protocol::ll, Protocol::ll128, Protocol::simple};
    else
        protos = {request.protocol};
    if (algs.size() == 1 && protos.size() == 1) return im.run_one(request, algs[0], protos[0], true);
    std::vector<std::pair<CollectiveAlgorithm, Protocol>> pairs;
    for (CollectiveAlgorithm a : algs)
        for (Protocol p : protos) pairs.push_back({a, p});
    // The choice rule (flow_network.h): rank by closed form, simulate the best few.
    const std::size_t keep = im.opt.choice_simulations;
    if (keep > 0 && pairs.size() > keep) {
        const Impl::Group g = im.make_group(request);
        std::vector<std::pair<double, std::size_t>> ranked;
        for (std::size_t i = 0; i < pairs.size(); ++i) {
            const double e = im.estimate(request, g, pairs[i].first, pairs[i].second);
            if (std::isfinite(e)) ranked.push_back({e, i});
        }
        if (!ranked.empty()) {
            std::stable_sort(ranked.begin(), ranked.end(),
                             [](const auto& x, const auto& y) { return x.first < y.first; });
            if (ranked.size() > keep) ranked.resize(keep);
            std::sort(ranked.begin(), ranked.end(),
                      [](const auto& x, const auto& y) { return x.second < y.second; });
            std::vector<std::pair<CollectiveAlgorithm, Protocol>> kept;
            for (const auto& r : ranked) kept.push_back(pairs[r.second]);
            pairs = kept;
        }
    }
    // The fastest trial is recorded as it ran (Impl::commit), not simulated again.
    std::optional<Impl::Simulated> best;
    std::optional<cfg::UserError> first_error;
    for (const auto& [a, p] : pairs) {
        try {
            Impl::Simulated s = im.simulate_one(request, a, p);
            if (!best || s.res.end < best->res.end) best = std::move(s);
        } catch (const cfg::UserError& e) {
            const bool too_big = std::string(e.what()).find("packet-hops") != std::string::npos;
            if (too_big) throw;
            if (!first_error) first_error = e;
        }
    }
    // an all-to-all too large for direct (p (p - 1) concurrent flows past the limit) falls back to Bruck
    if (!best && request.algorithm == CollectiveAlgorithm::automatic &&
        request.kind == CollectiveKind::all_to_all && request.counts.empty())
        return im.run_one(request, CollectiveAlgorithm::bruck,
                          protos.size() == 1 ? protos[0] : Protocol::simple, true);
    if (!best) throw *first_error;
    return im.commit(std::move(*best));
}

}  // namespace mlsim::arch::net
