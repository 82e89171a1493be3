// Issue 12's second round: link protocol efficiency, NVLink SHARP's reduction rate, link energy and the
// closed-form ranking of the automatic choice (arch/net/impl/flow_network.h).
#include <catch2/catch.hpp>
#include <cmath>
#include <string>
#include <vector>

#include "arch/net/impl/flow_network.h"
#include "experiment/collective_study.h"
#include "experiment/experiment.h"
#include "net_auto_choice.h"
#include "net_test_topologies.h"

using namespace mlsim;
using namespace mlsim::arch::net;
using namespace mlsim::test::net;

namespace {

constexpr double B = 100e9;
constexpr double e_link = 10e-12;   // 10 pJ per byte
constexpr double e_switch = 4e-12;  // 4 pJ per byte

// A star whose links carry `efficiency` of their line rate and cost energy; its switch too.
std::shared_ptr<Topology> costly_star(int p, double efficiency, double reduction_efficiency = 1) {
    auto t = std::make_shared<Topology>();
    for (int i = 0; i < p; ++i) t->add_device(indexed("d.", i));
    SwitchProps s = switch_of(200, true);
    s.energy_J_per_byte = e_switch;
    s.reduction_efficiency = reduction_efficiency;
    const VertexId sw = t->add_switch("sw", s);
    for (int i = 0; i < p; ++i) {
        LinkProps l = link_of(B, 300, "nvlink");
        l.efficiency = efficiency;
        l.energy_J_per_byte = e_link;
        t->add_link(static_cast<VertexId>(i), sw, l);
    }
    return t;
}

CollectiveRequest request(CollectiveKind kind, CollectiveAlgorithm alg, int p, int64_t bytes,
                          Protocol proto = Protocol::ideal) {
    CollectiveRequest q;
    q.kind = kind;
    q.algorithm = alg;
    q.protocol = proto;
    for (int i = 0; i < p; ++i) q.group.push_back(static_cast<VertexId>(i));
    q.bytes = bytes;
    return q;
}

}  // namespace

TEST_CASE("a link moves payload at its line rate times its efficiency", "[arch][net][efficiency]") {
    const double n = 1e9;
    const double alpha = 2 * 300e-9 + 200e-9;
    for (double eff : {1.0, 0.8, 0.5}) {
        INFO("efficiency " << eff);
        FlowNetwork net(costly_star(2, eff));
        const CollectiveResult r =
            net.collective(request(CollectiveKind::send_recv, CollectiveAlgorithm::ring, 2, 1'000'000'000));
        // both ranks send at once, each on its own link directions
        CHECK(r.duration().to_seconds() == Approx(alpha + n / (B * eff)).epsilon(1e-9));
    }
    // the bisection figure stays the line rate
    const auto t = costly_star(4, 0.5);
    CHECK(t->max_flow_Bps({0, 1}, {2, 3}) == Approx(2 * B));
}

TEST_CASE("NVLink SHARP runs at the switch's reduction efficiency", "[arch][net][efficiency]") {
    const int p = 8;
    const int64_t bytes = int64_t{64} << 30;  // large: latencies are a few ppm of the time
    auto time_of = [&](double share) {
        FlowNetwork net(costly_star(p, 1, share));
        return net.collective(request(CollectiveKind::all_reduce, CollectiveAlgorithm::nvls, p, bytes))
            .duration()
            .to_seconds();
    };
    const double full = time_of(1), slowed = time_of(0.85);
    // every rank pushes n (1 + 1/p) through each direction of its link, at B x share
    const double n = static_cast<double>(bytes);
    CHECK(full == Approx(n * (1 + 1.0 / p) / B).epsilon(1e-5));
    CHECK(slowed / full == Approx(1 / 0.85).epsilon(1e-5));
    // ring does not use the switch's reduction engine
    FlowNetwork a(costly_star(p, 1, 0.85)), b(costly_star(p, 1, 1));
    const auto q = request(CollectiveKind::all_reduce, CollectiveAlgorithm::ring, p, 1 << 26);
    CHECK(a.collective(q).end == b.collective(q).end);
}

TEST_CASE("collectives count link and switch energy for the bytes they move", "[arch][net][energy]") {
    const int p = 6;
    const double n = 6e8;
    for (double eff : {1.0, 0.8}) {
        for (Fidelity fid : {Fidelity::flow, Fidelity::packet}) {
            INFO("efficiency " << eff << (fid == Fidelity::flow ? " flow" : " packet"));
            NetworkOptions o;
            o.fidelity = fid;
            o.packet_bytes = 1 << 20;
            FlowNetwork net(costly_star(p, eff), o);
            const CollectiveResult r = net.collective(
                request(CollectiveKind::all_reduce, CollectiveAlgorithm::ring, p, 600'000'000));
            // ring all-reduce: every rank sends 2 (p-1)/p n, over two links, entering the switch once
            const double sent = p * 2.0 * (p - 1) / p * n;
            const double want = sent / eff * (2 * e_link + e_switch);
            CHECK(r.energy_j == Approx(want).epsilon(1e-9));
            double from_links = 0;
            for (const LinkBytes& lb : r.link_bytes) from_links += (lb.a_to_b + lb.b_to_a) / eff * e_link;
            CHECK(from_links == Approx(sent / eff * 2 * e_link).epsilon(1e-9));
            double per_link = 0;
            for (double e : net.link_energy_j()) {
                CHECK(e >= 0);
                per_link += e;
            }
            CHECK(per_link == Approx(r.energy_j).epsilon(1e-9));
        }
    }
    // no figures, no energy; a group of one moves nothing
    FlowNetwork plain(star(4, B, 300, 200));
    CHECK(plain.collective(request(CollectiveKind::all_reduce, CollectiveAlgorithm::ring, 4, 1 << 20))
              .energy_j == 0);
    FlowNetwork one(costly_star(4, 1));
    CHECK(
        one.collective(request(CollectiveKind::all_reduce, CollectiveAlgorithm::ring, 1, 1 << 20)).energy_j ==
        0);
}

TEST_CASE("the automatic choice simulates the closed-form best three and agrees with the exhaustive choice",
          "[arch][net][automatic]") {
    using K = CollectiveKind;
    int compared = 0;
    for (const char* system : {"dgx-a100-node", "dgx-h100-node", "dgx-a100-2node"})
        compared += check_automatic_matches_exhaustive(
            system, {K::all_reduce, K::all_gather, K::reduce_scatter, K::broadcast});
    CHECK(compared == 3 * 4 * 7);
}
