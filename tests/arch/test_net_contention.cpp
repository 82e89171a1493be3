// Sharing: max-min fairness in the flow model, contention between calls, bisection limits, ECMP, and the
// packet-level reference against the flow model.
#include <catch2/catch.hpp>
#include <cmath>
#include <string>
#include <vector>

#include "arch/net/impl/flow_network.h"
#include "arch/net/impl/routing.h"
#include "arch/net/impl/stage_solver.h"
#include "net_test_topologies.h"
#include "user_error.h"

using namespace mlsim;
using namespace mlsim::arch::net;
using namespace mlsim::test::net;

namespace {

std::vector<double> solve(impl::RouteTable& rt, const std::vector<std::pair<VertexId, VertexId>>& pairs,
                          const std::vector<double>& bytes, bool packet = false, double packet_bytes = 4096) {
    std::vector<impl::StageFlowTiming> flows;
    std::vector<impl::DirLink> hops;
    for (std::size_t i = 0; i < pairs.size(); ++i) {
        const impl::PathView pv = rt.path(pairs[i].first, pairs[i].second);
        impl::StageFlowTiming f;
        f.path_off = static_cast<uint32_t>(hops.size());
        f.path_len = pv.size;
        f.bytes = bytes[i];
        f.latency_s = pv.latency_s;
        hops.insert(hops.end(), pv.hops, pv.hops + pv.size);
        flows.push_back(f);
    }
    std::vector<double> finish;
    if (packet) {
        impl::PacketSolver s(rt, packet_bytes, 1'000'000'000);
        s.solve(flows, hops, finish);
    } else {
        impl::FluidSolver s(rt);
        s.solve(flows, hops, finish);
    }
    return finish;
}

CollectiveRequest request(CollectiveKind kind, CollectiveAlgorithm alg, int p, int64_t bytes) {
    CollectiveRequest q;
    q.kind = kind;
    q.algorithm = alg;
    q.protocol = Protocol::ideal;
    for (int i = 0; i < p; ++i) q.group.push_back(static_cast<VertexId>(i));
    q.bytes = bytes;
    return q;
}

}  // namespace

TEST_CASE("two flows on one link take twice as long as one", "[arch][net][contention]") {
    auto t = star(3, 10e9, 0, 0);
    impl::RouteTable rt(*t);
    const double one = solve(rt, {{0, 2}}, {1e9})[0];
    CHECK(one == Approx(0.1).epsilon(1e-12));
    const auto two = solve(rt, {{0, 2}, {1, 2}}, {1e9, 1e9});  // both into d.2's port
    CHECK(two[0] == Approx(2 * one).epsilon(1e-12));
    CHECK(two[1] == Approx(2 * one).epsilon(1e-12));
    // opposite directions of a link do not share
    const auto both_ways = solve(rt, {{0, 2}, {2, 0}}, {1e9, 1e9});
    CHECK(both_ways[0] == Approx(one).epsilon(1e-12));
}

TEST_CASE("rates are max-min fair and recomputed when a flow ends", "[arch][net][contention]") {
    // d.0 -> d.2 and d.1 -> d.2 share d.2's port; d.1 -> d.0 shares d.1's port with d.1 -> d.2.
    auto t = star(3, 10e9, 0, 0);
    impl::RouteTable rt(*t);
    // a short flow leaves after sharing; the long one then gets the whole port
    const auto f = solve(rt, {{0, 2}, {1, 2}}, {0.5e9, 2e9});
    CHECK(f[0] == Approx(0.1).epsilon(1e-12));         // 0.5 GB at 5 GB/s
    CHECK(f[1] == Approx(0.1 + 0.15).epsilon(1e-12));  // then the remaining 1.5 GB at 10 GB/s
    // a flow limited elsewhere leaves the rest of a link to the others (classic max-min example)
    auto t2 = std::make_shared<Topology>();
    for (int i = 0; i < 4; ++i) t2->add_device(indexed("d.", i));
    t2->add_link(0, 1, link_of(10e9, 0));
    t2->add_link(1, 2, link_of(10e9, 0));
    t2->add_link(2, 3, link_of(4e9, 0));
    impl::RouteTable rt2(*t2);
    // A: 0 -> 3 (bottleneck 2-3, 4 GB/s, shared with C: 2 GB/s each); B: 0 -> 2 gets 10 - 2 = 8 GB/s
    const auto g = solve(rt2, {{0, 3}, {0, 2}, {2, 3}}, {1e9, 1e9, 1e9});
    CHECK(g[2] == Approx(1e9 / 2e9).epsilon(1e-9));
    CHECK(g[1] == Approx(1e9 / 8e9).epsilon(1e-9));
}

TEST_CASE("a later call waits for the links an earlier call keeps busy", "[arch][net][contention]") {
    auto t = star(2, 10e9, 0, 0);
    FlowNetwork net(t);
    const Transfer a = net.transfer(0, 1, 1'000'000'000, Tick::zero());
    CHECK(a.end.to_seconds() == Approx(0.1));
    REQUIRE(a.hops.size() == 2);
    CHECK(a.hops[0].from == 0);
    const Transfer b = net.transfer(0, 1, 1'000'000'000, Tick::zero());
    CHECK(b.end.to_seconds() == Approx(0.2));  // two transfers on one link: twice the time
    const Transfer c = net.transfer(1, 0, 1'000'000'000, Tick::zero());
    CHECK(c.end.to_seconds() == Approx(0.1));  // the other direction was free
    CHECK(net.transfer(0, 0, 5, Tick::from_ns(3)).end == Tick::from_ns(3));
}

TEST_CASE("a bisection-limited all-to-all is slower on a ring than on a switch by the ratio of bisections",
          "[arch][net][contention]") {
    // 7 devices (odd: every pair has one shortest way round the ring). Each device injects at 2B on both:
    // two ring links of B, or one switch port of 2B.
    const int p = 7;
    const double b = 10e9, n = 7e8, pd = p;
    auto r = ring(p, b, 0);
    auto s = star(p, 2 * b, 0, 0);
    FlowNetwork on_ring(r), on_switch(s);
    const auto q = request(CollectiveKind::all_to_all, CollectiveAlgorithm::direct, p, 700'000'000);
    const double t_ring = on_ring.collective(q).duration().to_seconds();
    const double t_switch = on_switch.collective(q).duration().to_seconds();
    // the ring: 3 x 4 blocks of n/p cross its bisection each way, over 2 links of b
    const double cross = std::floor(pd / 2) * std::ceil(pd / 2) * n / pd;
    CHECK(t_ring == Approx(cross / (2 * b)).epsilon(1e-9));
    // the switch has full bisection: only injection limits it
    CHECK(t_switch == Approx((pd - 1) / pd * n / (2 * b)).epsilon(1e-9));
    // so the ratio is the ratio of the bounds: cross-traffic over the ring's bisection vs. injection
    CHECK(t_ring / t_switch == Approx((pd + 1) / 4).epsilon(1e-9));
    // a switch fabric cut to the ring's bisection (two switches joined by one 2b link... ) is as slow
    auto d = std::make_shared<Topology>();
    for (int i = 0; i < 8; ++i) d->add_device(indexed("d.", i));
    const VertexId s0 = d->add_switch("s0", switch_of(0)), s1 = d->add_switch("s1", switch_of(0));
    for (int i = 0; i < 8; ++i) d->add_link(static_cast<VertexId>(i), i < 4 ? s0 : s1, link_of(2 * b, 0));
    d->add_link(s0, s1, link_of(2 * b, 0));
    FlowNetwork dumbbell(d);
    auto s8 = star(8, 2 * b, 0, 0);
    FlowNetwork full(s8);
    const auto q8 = request(CollectiveKind::all_to_all, CollectiveAlgorithm::direct, 8, 800'000'000);
    const double t_cut = dumbbell.collective(q8).duration().to_seconds();
    const double t_full = full.collective(q8).duration().to_seconds();
    // 16 blocks of 1e8 cross one 2b link (bisection 2b) vs. 7 blocks through a 2b port (bisection 8b)
    CHECK(t_cut == Approx(16 * 1e8 / (2 * b)).epsilon(1e-9));
    CHECK(t_full == Approx(7 * 1e8 / (2 * b)).epsilon(1e-9));
}

TEST_CASE("ECMP spreads flows over equal-cost paths, the same way every time", "[arch][net][routing]") {
    // two leaves joined by two spines: 2 equal paths between leaves
    auto t = std::make_shared<Topology>();
    for (int i = 0; i < 8; ++i) t->add_device(indexed("d.", i));
    const VertexId l0 = t->add_switch("leaf0", switch_of(100)), l1 = t->add_switch("leaf1", switch_of(100));
    const VertexId s0 = t->add_switch("spine0", switch_of(100)), s1 = t->add_switch("spine1", switch_of(100));
    for (int i = 0; i < 8; ++i) t->add_link(static_cast<VertexId>(i), i < 4 ? l0 : l1, link_of(10e9, 100));
    for (VertexId l : {l0, l1})
        for (VertexId s : {s0, s1}) t->add_link(l, s, link_of(10e9, 100));
    impl::RouteTable rt(*t);
    int via0 = 0;
    for (VertexId a = 0; a < 4; ++a)
        for (VertexId b = 4; b < 8; ++b) {
            const impl::PathView pv = rt.path(a, b);
            REQUIRE(pv.size == 4);
            CHECK(pv.latency_s == Approx(4 * 100e-9 + 3 * 100e-9));
            const VertexId spine = rt.head(pv.hops[1]);
            CHECK((spine == s0 || spine == s1));
            via0 += spine == s0;
            impl::RouteTable again(*t);
            CHECK(again.head(again.path(a, b).hops[1]) == spine);
        }
    CHECK(via0 > 0);
    CHECK(via0 < 16);
    // a unique shortest path is Topology::route's
    auto st = star(4, 1e9, 10, 10);
    impl::RouteTable rs(*st);
    const auto route = st->route(1, 3);
    const impl::PathView pv = rs.path(1, 3);
    REQUIRE(pv.size == route->hops.size());
    CHECK(pv.latency_s == Approx(route->latency.to_seconds()));
}

TEST_CASE("the packet reference agrees with the flow model", "[arch][net][packet]") {
    // Stated tolerance: 3% when every flow is at least 64 packets; the packet model is slower by about one
    // packet per extra hop (store-and-forward) and by the granularity of its round robin.
    using K = CollectiveKind;
    using A = CollectiveAlgorithm;
    const int p = 8;
    auto t = star(p, 50e9, 300, 200);
    NetworkOptions flow_opt, pkt_opt;
    pkt_opt.fidelity = Fidelity::packet;
    pkt_opt.packet_bytes = 4096;
    struct Case {
        K kind;
        A alg;
        int64_t bytes;
        const char* what;
    };
    for (const Case& c : {Case{K::all_reduce, A::ring, 16 << 20, "uncontended ring all-reduce"},
                          Case{K::all_gather, A::ring, 16 << 20, "uncontended ring all-gather"},
                          Case{K::all_to_all, A::direct, 16 << 20, "contended all-to-all (7 flows per port)"},
                          Case{K::gather, A::direct, 16 << 20, "contended gather into one port"},
                          Case{K::broadcast, A::direct, 4 << 20, "contended broadcast out of one port"}}) {
        INFO(c.what);
        FlowNetwork fnet(t, flow_opt), pnet(t, pkt_opt);
        const auto q = request(c.kind, c.alg, p, c.bytes);
        const double f = fnet.collective(q).duration().to_seconds();
        const double k = pnet.collective(q).duration().to_seconds();
        CHECK(k >= f * (1 - 1e-9));  // store-and-forward never beats the fluid bound
        CHECK(std::abs(k - f) / f <= 0.03);
    }
    // too big for the packet reference: a user error, not a hang
    pkt_opt.max_packet_hops = 1000;
    FlowNetwork small(t, pkt_opt);
    const auto q = request(K::all_reduce, A::ring, p, 1 << 30);
    CHECK(test::user_error_of([&] { small.collective(q); }).find("packet") != std::string::npos);
}

TEST_CASE("automatic choice picks the fastest algorithm and protocol, and says which", "[arch][net]") {
    auto t = star(8, 100e9, 200, 200, true);
    FlowNetwork net(t), net2(t);
    auto q = request(CollectiveKind::all_reduce, CollectiveAlgorithm::automatic, 8, 8);
    q.protocol = Protocol::automatic;
    const CollectiveResult small = net.collective(q);
    CHECK(small.protocol == Protocol::ll);  // small messages: the lowest per-step cost
    q.bytes = int64_t{1} << 30;
    const CollectiveResult big = net2.collective(q);
    CHECK(big.protocol == Protocol::simple);            // large: all payload
    CHECK(big.algorithm == CollectiveAlgorithm::nvls);  // the switch reduces: n + n/p instead of 2n(p-1)/p
    // no fixed choice beats the automatic one
    for (CollectiveAlgorithm a : automatic_candidates(CollectiveKind::all_reduce, false)) {
        FlowNetwork fresh(t);
        auto fixed = q;
        fixed.algorithm = a;
        CHECK(fresh.collective(fixed).duration() >= big.duration());
    }
}

TEST_CASE("a protocol's costs: per call, per step, and payload per wire byte", "[arch][net]") {
    auto t = star(4, 100e9, 235, 0);  // two links: 0.47 us, NCCL's NVLink LL step latency
    auto lp = t->link(0).props;
    (void)lp;
    FlowNetwork net(t);
    auto q = request(CollectiveKind::all_gather, CollectiveAlgorithm::ring, 4, 4'000'000);
    q.protocol = Protocol::ideal;
    const double ideal = net.collective(q).duration().to_seconds();
    FlowNetwork n2(t);
    q.protocol = Protocol::simple;
    const double simple = n2.collective(q).duration().to_seconds();
    // Simple: + 8.4 us per call (NCCL v2.30.7 baseLat, ring Simple); links of kind "test" count as network
    // hops: + (14.0 - 2.7) us per step (NCCL v2.30.7's NET ring row)
    CHECK(simple - ideal == Approx(8.4e-6 + 3 * 11.3e-6).epsilon(1e-6));
    FlowNetwork n3(t);
    q.protocol = Protocol::ll;
    const double ll = n3.collective(q).duration().to_seconds();
    // LL: + 6.6 us per call (NCCL v2.30.7 baseLat, ring LL); a third of the wire is payload for a
    // non-reducing collective within one node
    CHECK(ll - 6.6e-6 == Approx(ideal + 2 * 3 * 1e6 / 100e9).epsilon(1e-6));
}
