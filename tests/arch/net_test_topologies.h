#pragma once
// Hand-built topologies for the network-model tests (arch/net): a star (one switch), a ring of devices,
// a two-level system (nodes with a switch each, joined by a top switch) and a dumbbell.
#include <memory>
#include <string>

#include "arch/net/topology.h"

namespace mlsim::test::net {

using namespace mlsim::arch::net;

// prefix + i, appended (GCC 12's -Wrestrict misfires on operator+ of a literal and a temporary).
inline std::string indexed(std::string prefix, int i) {
    prefix += std::to_string(i);
    return prefix;
}

inline LinkProps link_of(double bw_Bps, int64_t latency_ns, const std::string& kind = "test") {
    LinkProps p;
    p.kind = kind;
    p.bandwidth_Bps = bw_Bps;
    p.latency = Tick::from_ns(latency_ns);
    return p;
}

inline SwitchProps switch_of(int64_t latency_ns, bool reduction = false) {
    SwitchProps p;
    p.latency = Tick::from_ns(latency_ns);
    p.in_network_reduction = reduction;
    return p;
}

// p devices "d.i" on one switch "sw": every pair is two links and the switch apart.
inline std::shared_ptr<Topology> star(int p, double bw_Bps, int64_t link_ns, int64_t switch_ns,
                                      bool reduction = false) {
    auto t = std::make_shared<Topology>();
    for (int i = 0; i < p; ++i) t->add_device(indexed("d.", i));
    const VertexId s = t->add_switch("sw", switch_of(switch_ns, reduction));
    for (int i = 0; i < p; ++i) t->add_link(static_cast<VertexId>(i), s, link_of(bw_Bps, link_ns));
    return t;
}

// p devices in a cycle, device i linked to i+1 (mod p).
inline std::shared_ptr<Topology> ring(int p, double bw_Bps, int64_t link_ns) {
    auto t = std::make_shared<Topology>();
    for (int i = 0; i < p; ++i) t->add_device(indexed("d.", i));
    for (int i = 0; i < p; ++i)
        t->add_link(static_cast<VertexId>(i), static_cast<VertexId>((i + 1) % p), link_of(bw_Bps, link_ns));
    return t;
}

// N nodes of L devices ("n<i>.<l>"); each node's devices on a switch "nvs<i>" (bandwidth b1, latency l1,
// switch s1), every device also on the top switch "top" (b2, l2, s2): intra-node traffic goes through the
// node's switch when 2 l1 + s1 < 2 l2 + s2.
inline std::shared_ptr<Topology> two_level(int N, int L, double b1, int64_t l1, int64_t s1, double b2,
                                           int64_t l2, int64_t s2, bool reduction = false) {
    auto t = std::make_shared<Topology>();
    for (int i = 0; i < N; ++i)
        for (int l = 0; l < L; ++l) t->add_device(indexed(indexed("n", i) + ".", l));
    const VertexId top = t->add_switch("top", switch_of(s2));
    for (int i = 0; i < N; ++i) {
        const VertexId s = t->add_switch(indexed("nvs", i), switch_of(s1, reduction));
        for (int l = 0; l < L; ++l) {
            const VertexId d = static_cast<VertexId>(i * L + l);
            t->add_link(d, s, link_of(b1, l1, "nvlink"));
            t->add_link(d, top, link_of(b2, l2, "infiniband"));
        }
    }
    return t;
}

}  // namespace mlsim::test::net
