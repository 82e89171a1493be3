// Steps that repeat (a ring's steps, a pipeline's steady state) are advanced without solving them again
// (NetworkOptions::repeat_steps, FlowNetwork's Run::repeat): every figure must be what solving each step
// gives, to the bit, for every algorithm, protocol and size, also when an earlier call keeps some links busy
// so that a run's first step releases its flows at different times. (The flows of one step carry equal bytes
// here, as in every caller of Run::repeat, so the order of a link's additions within a step is not tested:
// it cannot change their sum.)
#include <catch2/catch.hpp>
#include <cstring>
#include <string>
#include <vector>

#include "arch/net/impl/flow_network.h"
#include "experiment/collective_study.h"
#include "experiment/experiment.h"
#include "net_test_topologies.h"
#include "sim/config/error.h"

using namespace mlsim;
using namespace mlsim::arch::net;
using namespace mlsim::test::net;

namespace {

bool same_bits(double a, double b) { return std::memcmp(&a, &b, sizeof a) == 0; }

bool same_bits(const std::vector<double>& a, const std::vector<double>& b) {
    if (a.size() != b.size()) return false;
    for (std::size_t i = 0; i < a.size(); ++i)
        if (!same_bits(a[i], b[i])) return false;
    return true;
}

// A call's figures on two networks, the same to the bit.
void check_same(const CollectiveResult& a, const CollectiveResult& b) {
    CHECK(a.start == b.start);
    CHECK(a.end == b.end);
    CHECK(a.steps == b.steps);
    CHECK(a.algorithm == b.algorithm);
    CHECK(a.protocol == b.protocol);
    CHECK(same_bits(a.energy_j, b.energy_j));
    REQUIRE(a.link_bytes.size() == b.link_bytes.size());
    for (std::size_t i = 0; i < a.link_bytes.size(); ++i) {
        CHECK(a.link_bytes[i].link == b.link_bytes[i].link);
        CHECK(same_bits(a.link_bytes[i].a_to_b, b.link_bytes[i].a_to_b));
        CHECK(same_bits(a.link_bytes[i].b_to_a, b.link_bytes[i].b_to_a));
    }
}

// Runs `calls` on two networks over `topology`, one advancing repeated steps, one solving every step, and
// checks that every result and the links' totals agree to the bit; returns how many steps the calls took.
int64_t compare(const std::shared_ptr<const Topology>& topology, NetworkOptions opt,
                const std::vector<CollectiveRequest>& calls) {
    opt.repeat_steps = true;
    FlowNetwork fast(topology, opt);
    opt.repeat_steps = false;
    FlowNetwork full(topology, opt);
    int64_t steps = 0;
    for (const CollectiveRequest& q : calls) {
        CollectiveResult a, b;
        bool unsupported = false;
        try {
            a = fast.collective(q);
        } catch (const cfg::UserError&) {
            unsupported = true;
        }
        if (unsupported) {
            CHECK_THROWS_AS(full.collective(q), cfg::UserError);
            continue;
        }
        b = full.collective(q);
        INFO(to_string(q.kind) << " " << to_string(a.algorithm) << " " << to_string(a.protocol) << " "
                               << q.bytes << " B from " << q.start.to_seconds() << " s");
        check_same(a, b);
        steps += a.steps;
    }
    CHECK(same_bits(fast.busy_seconds(), full.busy_seconds()));
    CHECK(same_bits(fast.link_energy_j(), full.link_energy_j()));
    CHECK(fast.repeated_steps() > 0);  // the steps advanced without solving them were there to compare
    CHECK(full.repeated_steps() == 0);
    return steps;
}

// Every algorithm and protocol of the kinds that run rings and pipelines, at a small and a large size, each
// call also repeated while the one before still holds links (start 0 again).
std::vector<CollectiveRequest> calls_over(const std::vector<VertexId>& group) {
    std::vector<CollectiveRequest> calls;
    for (CollectiveKind kind :
         {CollectiveKind::all_reduce, CollectiveKind::all_gather, CollectiveKind::reduce_scatter,
          CollectiveKind::broadcast, CollectiveKind::reduce})
        for (CollectiveAlgorithm alg : supported_algorithms(kind))
            for (Protocol proto : {Protocol::ll, Protocol::simple, Protocol::automatic})
                for (int64_t bytes : {int64_t{1} << 12, int64_t{48} << 20}) {
                    CollectiveRequest q;
                    q.kind = kind;
                    q.algorithm = alg;
                    q.protocol = proto;
                    q.group = group;
                    q.bytes = bytes;
                    calls.push_back(q);
                    calls.push_back(q);  // the same at time 0: its first steps wait for busy links
                }
    return calls;
}

}  // namespace

TEST_CASE("repeated steps advanced without solving give every figure of solving each step, to the bit",
          "[arch][net][repeat]") {
    SECTION("a switch") {
        auto t = star(8, 100e9, 500, 300);
        std::vector<VertexId> group;
        for (int i = 0; i < 8; ++i) group.push_back(static_cast<VertexId>(i));
        CHECK(compare(t, {}, calls_over(group)) > 0);
    }
    SECTION("a ring of links, with reductions that take time, overlapped with the transfers or not") {
        for (bool overlap : {true, false}) {
            auto t = ring(6, 50e9, 700);
            NetworkOptions opt;
            opt.reduce_Bps.assign(6, 333.3e9);  // a rate whose quotients round
            opt.overlap_reduction = overlap;
            std::vector<VertexId> group;
            for (int i = 0; i < 6; ++i) group.push_back(static_cast<VertexId>(i));
            CHECK(compare(t, opt, calls_over(group)) > 0);
        }
    }
    SECTION("nodes joined by a switch, without and with reduction in the node switches") {
        for (bool reduction : {false, true}) {
            auto t = two_level(4, 4, 300e9, 200, 100, 25e9, 1000, 200, reduction);
            std::vector<VertexId> group;
            for (int i = 0; i < 16; ++i) group.push_back(static_cast<VertexId>(i));
            CHECK(compare(t, {}, calls_over(group)) > 0);
        }
    }
    SECTION("two DGX A100 nodes (the preset's NICs and network options)") {
        const arch::SystemSpec sys = exp::load_system_file(exp::resolve_system_path("dgx-a100-2node"));
        std::vector<VertexId> group;
        for (std::size_t i = 0; i < sys.devices.size(); ++i) group.push_back(static_cast<VertexId>(i));
        CHECK(compare(sys.topology, exp::network_options_for(sys, "fp32"), calls_over(group)) > 0);
    }
}

TEST_CASE("the automatic choice records its fastest trial as a call of that algorithm and protocol would",
          "[arch][net][repeat]") {
    // FlowNetwork::collective keeps the fastest trial and records it (Impl::commit) instead of simulating it
    // again: the same call made with the chosen algorithm and protocol on a second network must leave
    // every figure the same, to the bit, call after call (each starting while the one before holds links).
    auto check = [](const std::shared_ptr<const Topology>& topology, const NetworkOptions& opt,
                    const std::vector<VertexId>& group) {
        FlowNetwork chooser(topology, opt), told(topology, opt);
        int chosen = 0;
        for (CollectiveKind kind : {CollectiveKind::all_reduce, CollectiveKind::all_gather,
                                    CollectiveKind::reduce_scatter, CollectiveKind::broadcast})
            for (int64_t bytes : {int64_t{1} << 10, int64_t{1} << 20, int64_t{64} << 20}) {
                CollectiveRequest q;
                q.kind = kind;
                q.algorithm = CollectiveAlgorithm::automatic;
                q.protocol = Protocol::automatic;
                q.group = group;
                q.bytes = bytes;
                const CollectiveResult a = chooser.collective(q);
                q.algorithm = a.algorithm;
                q.protocol = a.protocol;
                const CollectiveResult b = told.collective(q);
                INFO(to_string(kind) << " " << bytes << " B: " << to_string(a.algorithm) << " "
                                     << to_string(a.protocol));
                check_same(a, b);
                CHECK(same_bits(chooser.busy_seconds(), told.busy_seconds()));
                CHECK(same_bits(chooser.link_energy_j(), told.link_energy_j()));
                ++chosen;
            }
        CHECK(chosen == 12);
    };
    SECTION("a switch") {
        std::vector<VertexId> group;
        for (int i = 0; i < 8; ++i) group.push_back(static_cast<VertexId>(i));
        check(star(8, 100e9, 500, 300), {}, group);
    }
    SECTION("nodes joined by a switch, with reduction in the node switches") {
        std::vector<VertexId> group;
        for (int i = 0; i < 16; ++i) group.push_back(static_cast<VertexId>(i));
        check(two_level(4, 4, 300e9, 200, 100, 25e9, 1000, 200, true), {}, group);
    }
    SECTION("two DGX A100 nodes") {
        const arch::SystemSpec sys = exp::load_system_file(exp::resolve_system_path("dgx-a100-2node"));
        std::vector<VertexId> group;
        for (std::size_t i = 0; i < sys.devices.size(); ++i) group.push_back(static_cast<VertexId>(i));
        check(sys.topology, exp::network_options_for(sys, "fp32"), group);
    }
}

TEST_CASE("a repeated step past the flow model's work bound is a user error, and the network stays usable",
          "[arch][net][repeat]") {
    // A 262,144-chip torus's ring all-reduce repeated a step of 262,144 flows 262,141 times (7e10 link
    // updates, minutes). Here the bound is lowered instead: a ring all-reduce of 48 MiB on 8 ranks in 512 KiB
    // pieces repeats steps of 8 flows. Under automatic protocols each refused trial is caught and the next
    // tried, over the same scratch (it was left marked, and the next trial indexed past its arrays).
    auto t = star(8, 100e9, 500, 300);
    std::vector<VertexId> group;
    for (int i = 0; i < 8; ++i) group.push_back(static_cast<VertexId>(i));
    CollectiveRequest big;
    big.kind = CollectiveKind::all_reduce;
    big.algorithm = CollectiveAlgorithm::ring;
    big.protocol = Protocol::automatic;
    big.group = group;
    big.bytes = int64_t{48} << 20;
    NetworkOptions tight;
    tight.max_link_updates = 20;
    FlowNetwork net(t, tight);
    CHECK_THROWS_WITH(net.collective(big), Catch::Contains("link updates, more than the flow model's"));
    // A call within the bound on the same network: what a fresh network gives.
    CollectiveRequest small = big;
    small.bytes = 4096;
    small.algorithm = CollectiveAlgorithm::tree;
    FlowNetwork fresh(t, tight);
    const CollectiveResult a = net.collective(small), b = fresh.collective(small);
    CHECK(a.end - a.start == b.end - b.start);
    CHECK(same_bits(a.energy_j, b.energy_j));
}
