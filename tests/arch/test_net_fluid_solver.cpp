// The incremental fluid solver (FluidSolver) against the from-scratch one it replaced (ReferenceFluidSolver):
// the max-min fair allocation is unique, so both must give every flow the same finish time, to rounding,
// on random flow sets: random pairs over a fat tree with ECMP, random sizes, release times and rate caps,
// each solved again shifted in time (the solver then reuses its last answer).
#include <algorithm>
#include <catch2/catch.hpp>
#include <cmath>
#include <cstdint>
#include <random>
#include <vector>

#include "arch/net/impl/routing.h"
#include "arch/net/impl/stage_solver.h"
#include "net_test_topologies.h"

using namespace mlsim;
using namespace mlsim::arch::net;
using namespace mlsim::test::net;

namespace {

// `leaves` leaves of `per_leaf` devices each, every leaf linked to each of `spines` spines; device links of
// 10 GB/s, uplinks of `up_Bps` (below 10 GB/s x per_leaf / spines: oversubscribed, so spines bottleneck too).
std::shared_ptr<Topology> fat_tree(int leaves, int per_leaf, int spines, double up_Bps) {
    auto t = std::make_shared<Topology>();
    for (int i = 0; i < leaves * per_leaf; ++i) t->add_device(indexed("d.", i));
    std::vector<VertexId> leaf, spine;
    for (int l = 0; l < leaves; ++l) leaf.push_back(t->add_switch(indexed("leaf", l), switch_of(100)));
    for (int s = 0; s < spines; ++s) spine.push_back(t->add_switch(indexed("spine", s), switch_of(100)));
    for (int i = 0; i < leaves * per_leaf; ++i)
        t->add_link(static_cast<VertexId>(i), leaf[static_cast<std::size_t>(i / per_leaf)],
                    link_of(10e9, 100));
    for (VertexId l : leaf)
        for (VertexId s : spine) t->add_link(l, s, link_of(up_Bps, 100));
    return t;
}

struct Stage {
    std::vector<impl::StageFlowTiming> flows;
    std::vector<impl::DirLink> hops;
};

void add_flow(impl::RouteTable& rt, Stage& s, VertexId a, VertexId b, double bytes, double start,
              double cap) {
    const impl::PathView pv = rt.path(a, b);
    impl::StageFlowTiming f;
    f.path_off = static_cast<uint32_t>(s.hops.size());
    f.path_len = pv.size;
    f.bytes = bytes;
    f.start_s = start;
    f.cap_Bps = cap;
    f.latency_s = pv.latency_s;
    s.hops.insert(s.hops.end(), pv.hops, pv.hops + pv.size);
    s.flows.push_back(f);
}

// Checks that `fast` (which may remember its previous stage) gives the reference's finish times, within
// 1 ps + 1e-9 relative; returns how many rates it filled.
uint64_t compare(impl::FluidSolver& fast, impl::RouteTable& rt, const Stage& s) {
    impl::ReferenceFluidSolver ref(rt);
    std::vector<double> a, b;
    fast.solve(s.flows, s.hops, a);
    ref.solve(s.flows, s.hops, b);
    REQUIRE(a.size() == s.flows.size());
    REQUIRE(b.size() == s.flows.size());
    int bad = 0;
    for (std::size_t i = 0; i < a.size(); ++i)
        if (!(std::abs(a[i] - b[i]) <= 1e-12 + 1e-9 * std::abs(b[i]))) {
            if (bad++ < 5) {
                INFO("flow " << i << ": incremental " << a[i] << " s, reference " << b[i] << " s");
                CHECK(a[i] == b[i]);
            }
        }
    CHECK(bad == 0);
    return fast.refilled();
}

uint64_t compare(impl::RouteTable& rt, const Stage& s) {
    impl::FluidSolver fast(rt);
    return compare(fast, rt, s);
}

}  // namespace

TEST_CASE("the incremental fluid solver gives the reference's finish times on random flow sets",
          "[arch][net][contention][fluid]") {
    auto t = fat_tree(4, 4, 3, 12e9);
    impl::RouteTable rt(*t);
    const int p = 16;
    std::mt19937_64 rng(12345);
    std::uniform_int_distribution<int> dev(0, p - 1);
    std::uniform_real_distribution<double> u(0, 1);
    impl::FluidSolver fast(rt);
    for (int trial = 0; trial < 200; ++trial) {
        INFO("trial " << trial);
        Stage s;
        const int n = 1 + static_cast<int>(u(rng) * 120);
        const bool staggered = trial % 3 == 1, capped = trial % 4 == 2, equal = trial % 5 == 0;
        for (int i = 0; i < n; ++i) {
            const int a = dev(rng);
            int b = dev(rng);
            if (b == a) b = (a + 1 + dev(rng) % (p - 1)) % p;
            const double bytes = equal ? 1e6 : (u(rng) < 0.05 ? 0.0 : 1e3 + u(rng) * 1e7);
            const double start = staggered ? std::floor(u(rng) * 4) * 1e-4 : 0.0;
            const double cap = capped && u(rng) < 0.3 ? 1e9 + u(rng) * 5e9 : 0.0;
            add_flow(rt, s, static_cast<VertexId>(a), static_cast<VertexId>(b), bytes, start, cap);
        }
        compare(fast, rt, s);
        // the same stage again, later (as a ring's steps repeat): finish times shifted by as much; the solver
        // keeps a stage that looks like the one before it (the releases' offsets from the first, once
        // shifted, are not always the same numbers), and reuses it for the next
        Stage later = s;
        const double shift = trial % 2 ? 1.5e-3 : 0.0;
        for (impl::StageFlowTiming& f : later.flows) f.start_s += shift;
        compare(fast, rt, later);
        compare(fast, rt, later);
        {  // and exactly what a solver without that memory gives (times run from the first release)
            std::vector<double> reused, fresh;
            fast.solve(later.flows, later.hops, reused);
            CHECK(fast.refilled() == 0);
            impl::FluidSolver(rt).solve(later.flows, later.hops, fresh);
            CHECK(reused == fresh);
        }
        if (trial % 7 == 3) {
            later.flows[0].bytes = 2 * later.flows[0].bytes + 1e3;  // differs: solved afresh
            compare(fast, rt, later);
            CHECK(fast.refilled() > 0);
        }
    }
}

TEST_CASE("an all-to-all refills only the flows whose rates can change", "[arch][net][contention][fluid]") {
    // Equal flows: the fastest finish first and leave the slower flows' rates as they were, so the solver
    // fills far fewer than (flows x finish events) rates, and still agrees with the reference.
    auto t = fat_tree(4, 8, 3, 15e9);
    impl::RouteTable rt(*t);
    const int p = 32;
    Stage s;
    for (int a = 0; a < p; ++a)
        for (int b = 0; b < p; ++b)
            if (a != b) add_flow(rt, s, static_cast<VertexId>(a), static_cast<VertexId>(b), 4e6, 0, 0);
    const uint64_t refilled = compare(rt, s);
    const std::size_t n = s.flows.size();
    std::vector<double> finish;
    impl::ReferenceFluidSolver ref(rt);
    ref.solve(s.flows, s.hops, finish);
    std::sort(finish.begin(), finish.end());
    const auto events = static_cast<uint64_t>(std::unique(finish.begin(), finish.end()) - finish.begin());
    INFO(n << " flows, " << events << " finish times, " << refilled << " refilled");
    REQUIRE(events > 1);
    CHECK(refilled < events * n / 2);
    // a release of one flow refills all, and a set of flows with no finish events refills each once
    Stage one;
    add_flow(rt, one, 0, 9, 1e6, 0, 0);
    CHECK(compare(rt, one) == 1);
}
