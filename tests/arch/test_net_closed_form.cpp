// The flow model against closed forms: on an uncontended topology every collective algorithm takes its
// alpha-beta(-gamma) time (Thakur, Rabenseifner and Gropp, "Optimization of collective communication
// operations in MPICH", IJHPCA 2005; Chan et al. 2007 for the pipelined chain), with the ideal protocol and
// reductions that follow the transfer (no overlap). alpha is the path latency between two devices, beta the
// inverse link bandwidth, gamma the inverse reduction rate.
#include <catch2/catch.hpp>
#include <cmath>
#include <string>
#include <vector>

#include "arch/net/impl/flow_network.h"
#include "net_test_topologies.h"
#include "user_error.h"

using namespace mlsim;
using namespace mlsim::arch::net;
using namespace mlsim::test::net;

namespace {

constexpr double B = 100e9;            // bytes/s per direction
constexpr int64_t link_ns = 500;       // per link
constexpr int64_t switch_ns = 250;     // the star's switch
constexpr double alpha = 1.25e-6;      // device -> switch -> device
constexpr double gamma_s = 1 / 400e9;  // reduction: 400 GB/s of payload

NetworkOptions exact_options(const Topology& t, bool with_gamma = true) {
    NetworkOptions o;
    o.overlap_reduction = false;
    o.pipeline_pieces = 1;  // hierarchical phases one after the other: the serial formulas
    o.reduce_Bps.assign(t.vertex_count(), with_gamma ? 1 / gamma_s : 0.0);
    return o;
}

// A fresh network per call: a network remembers busy links between calls.
struct Net {
    std::shared_ptr<Topology> t;
    NetworkOptions o;
};

double run(const Net& where, CollectiveKind kind, CollectiveAlgorithm alg, int64_t bytes, int p,
           int root = 0) {
    CollectiveRequest q;
    q.kind = kind;
    q.algorithm = alg;
    q.protocol = Protocol::ideal;
    for (int i = 0; i < p; ++i) q.group.push_back(static_cast<VertexId>(i));
    q.bytes = bytes;
    q.root = static_cast<VertexId>(root);
    FlowNetwork net(where.t, where.o);
    const CollectiveResult r = net.collective(q);
    CHECK(r.algorithm == alg);
    return r.duration().to_seconds();
}

// Ticks are whole picoseconds: each step may round by one.
void check_time(double got, double want, int steps) {
    INFO("got " << got << " s, want " << want << " s");
    CHECK(std::abs(got - want) <= steps * 1e-12 + want * 1e-9);
}

}  // namespace

TEST_CASE("ring collectives take their alpha-beta-gamma time on a switch", "[arch][net][closed-form]") {
    for (int p : {2, 5, 8}) {
        auto t = star(p, B, link_ns, switch_ns);
        Net net{t, exact_options(*t)};
        const double n = 64e6, pd = p;
        INFO("p = " << p);
        using K = CollectiveKind;
        const auto ring = CollectiveAlgorithm::ring;
        check_time(run(net, K::all_reduce, ring, 64'000'000, p),
                   2 * (pd - 1) * alpha + 2 * (pd - 1) / pd * n / B + (pd - 1) / pd * n * gamma_s, 2 * p);
        check_time(run(net, K::reduce_scatter, ring, 64'000'000, p),
                   (pd - 1) * alpha + (pd - 1) / pd * n / B + (pd - 1) / pd * n * gamma_s, p);
        check_time(run(net, K::all_gather, ring, 64'000'000, p), (pd - 1) * alpha + (pd - 1) / pd * n / B, p);
        check_time(run(net, K::scatter, ring, 64'000'000, p, 1), (pd - 1) * (alpha + n / pd / B), p);
        check_time(run(net, K::gather, ring, 64'000'000, p, p - 1), (pd - 1) * (alpha + n / pd / B), p);
        // pipelined chain: k chunks of 512 KiB, p - 2 + k steps of one chunk each
        const double k = std::ceil(n / (512.0 * 1024));
        check_time(run(net, K::broadcast, ring, 64'000'000, p), (pd - 2 + k) * (alpha + n / k / B), p + 200);
        check_time(run(net, K::reduce, ring, 64'000'000, p),
                   (pd - 2 + k) * (alpha + n / k / B + n / k * gamma_s), p + 200);
        check_time(run(net, K::send_recv, ring, 64'000'000, p), alpha + n / B, 1);
    }
}

TEST_CASE("direct collectives take their alpha-beta-gamma time on a switch", "[arch][net][closed-form]") {
    const int p = 6;
    auto t = star(p, B, link_ns, switch_ns);
    Net net{t, exact_options(*t)};
    const double n = 48e6, pd = p;
    using K = CollectiveKind;
    const auto direct = CollectiveAlgorithm::direct;
    // every port carries p - 1 flows of n / p at once, each at B / (p - 1)
    check_time(run(net, K::all_to_all, direct, 48'000'000, p), alpha + (pd - 1) / pd * n / B, 1);
    check_time(run(net, K::all_gather, direct, 48'000'000, p), alpha + (pd - 1) / pd * n / B, 1);
    check_time(run(net, K::reduce_scatter, direct, 48'000'000, p),
               alpha + (pd - 1) / pd * n / B + (pd - 1) / pd * n * gamma_s, 1);
    check_time(run(net, K::all_reduce, direct, 48'000'000, p),
               2 * alpha + 2 * (pd - 1) / pd * n / B + (pd - 1) / pd * n * gamma_s, 2);
    // the root's one port carries everything
    check_time(run(net, K::broadcast, direct, 48'000'000, p, 2), alpha + (pd - 1) * n / B, 1);
    check_time(run(net, K::reduce, direct, 48'000'000, p, 2),
               alpha + (pd - 1) * n / B + (pd - 1) * n * gamma_s, 1);
    check_time(run(net, K::scatter, direct, 48'000'000, p), alpha + (pd - 1) / pd * n / B, 1);
    check_time(run(net, K::gather, direct, 48'000'000, p), alpha + (pd - 1) / pd * n / B, 1);
    check_time(run(net, K::all_to_all, CollectiveAlgorithm::pairwise, 48'000'000, p),
               (pd - 1) * (alpha + n / pd / B), p);
}

TEST_CASE("recursive halving-doubling and binomial trees take their closed-form time",
          "[arch][net][closed-form]") {
    const int p = 8;
    auto t = star(p, B, link_ns, switch_ns);
    Net net{t, exact_options(*t)};
    const double n = 64e6, pd = p, lg = 3;
    using K = CollectiveKind;
    const auto hd = CollectiveAlgorithm::halving_doubling;
    check_time(run(net, K::all_reduce, hd, 64'000'000, p),
               2 * lg * alpha + 2 * (pd - 1) / pd * n / B + (pd - 1) / pd * n * gamma_s, 6);
    check_time(run(net, K::reduce_scatter, hd, 64'000'000, p),
               lg * alpha + (pd - 1) / pd * n / B + (pd - 1) / pd * n * gamma_s, 3);
    check_time(run(net, K::all_gather, hd, 64'000'000, p), lg * alpha + (pd - 1) / pd * n / B, 3);
    // van de Geijn broadcast: binomial scatter + recursive-doubling all-gather
    check_time(run(net, K::broadcast, hd, 64'000'000, p, 3), 2 * lg * alpha + 2 * (pd - 1) / pd * n / B, 6);
    // Rabenseifner reduce: recursive-halving reduce-scatter + binomial gather
    check_time(run(net, K::reduce, hd, 64'000'000, p, 3),
               2 * lg * alpha + 2 * (pd - 1) / pd * n / B + (pd - 1) / pd * n * gamma_s, 6);
    for (auto alg : {hd, CollectiveAlgorithm::tree}) {
        check_time(run(net, K::scatter, alg, 64'000'000, p, 5), lg * alpha + (pd - 1) / pd * n / B, 3);
        check_time(run(net, K::gather, alg, 64'000'000, p, 5), lg * alpha + (pd - 1) / pd * n / B, 3);
    }
    const std::string e = test::user_error_of([&] {
        auto t6 = star(6, B, link_ns, switch_ns);
        Net n6{t6, exact_options(*t6)};
        run(n6, K::all_reduce, hd, 1000, 6);
    });
    CHECK(e.find("power-of-two") != std::string::npos);
    CHECK(e.find("supported: ring, tree") != std::string::npos);
}

TEST_CASE("Bruck all-gather and all-to-all take ceil(log2 p) steps", "[arch][net][closed-form]") {
    using K = CollectiveKind;
    for (int p : {6, 8}) {
        auto t = star(p, B, link_ns, switch_ns);
        Net net{t, exact_options(*t)};
        const double n = 48e6, pd = p, lg = std::ceil(std::log2(pd));
        INFO("p = " << p);
        check_time(run(net, K::all_gather, CollectiveAlgorithm::bruck, 48'000'000, p),
                   lg * alpha + (pd - 1) / pd * n / B, 3);
        if (p == 8)  // each step moves the half of the blocks whose index has that bit set
            check_time(run(net, K::all_to_all, CollectiveAlgorithm::bruck, 48'000'000, p),
                       lg * (alpha + n / 2 / B), 3);
    }
}

TEST_CASE("a double binary tree all-reduce of a small message takes 2 x depth latencies",
          "[arch][net][closed-form]") {
    const int p =
        8;  // in-order trees over 8 positions: root 8, then 4, then 2 and 6, then the odd ones: depth 3
    auto t = star(p, B, link_ns, switch_ns);
    Net net{t, exact_options(*t, false)};
    const double got = run(net, CollectiveKind::all_reduce, CollectiveAlgorithm::tree, 8, p);
    CHECK(got >= 6 * alpha);
    CHECK(got <= 6 * alpha + 6 * (4 * 4.0 / B) + 1e-11);  // at most 4 chunks of 4 bytes share a port per step
    // large messages pipeline: every rank is interior (one parent, two children) in one tree and a leaf in
    // the other, so its port carries 3 + 1 chunk streams each way: k chunks of n/2 take k steps of alpha +
    // 4c/B, plus the pipeline's 2 x depth fill
    const double n = 512e6;
    const double big = run(net, CollectiveKind::all_reduce, CollectiveAlgorithm::tree, 512'000'000, p);
    const double k = std::ceil(n / 2 / (512.0 * 1024)), c = n / 2 / k;
    const double full_step = alpha + 4 * c / B;  // a step in which every stream is flowing
    CHECK(big >= k * full_step);
    CHECK(big <= (2 * 3 + k - 1) * full_step);
}

TEST_CASE("in-switch reduction moves n + n/p each way through the switch", "[arch][net][closed-form]") {
    const int p = 8;
    auto t = star(p, B, link_ns, switch_ns, true);
    Net net{t, exact_options(*t)};
    const double n = 64e6, pd = p;
    const double up = (link_ns + switch_ns) * 1e-9;
    // the multicast starts one up-latency after the first data: 2 (link + switch) + (n + n/p) beta
    check_time(run(net, CollectiveKind::all_reduce, CollectiveAlgorithm::nvls, 64'000'000, p),
               2 * up + (n + n / pd) / B, 2);
    check_time(run(net, CollectiveKind::all_gather, CollectiveAlgorithm::nvls, 64'000'000, p), 2 * up + n / B,
               2);
    check_time(run(net, CollectiveKind::reduce_scatter, CollectiveAlgorithm::nvls, 64'000'000, p),
               2 * up + n / B, 2);
    // the switch is counted as forwarding what it multicast: each device's link carries n + n/p each way
    CollectiveRequest q;
    q.kind = CollectiveKind::all_reduce;
    q.algorithm = CollectiveAlgorithm::nvls;
    q.protocol = Protocol::ideal;
    for (int i = 0; i < p; ++i) q.group.push_back(static_cast<VertexId>(i));
    q.bytes = 64'000'000;
    FlowNetwork fresh(t, exact_options(*t));
    const CollectiveResult r = fresh.collective(q);
    REQUIRE(r.link_bytes.size() == static_cast<std::size_t>(p));
    for (const LinkBytes& lb : r.link_bytes) {
        CHECK(lb.a_to_b == Approx(n + n / pd));
        CHECK(lb.b_to_a == Approx(n + n / pd));
    }
    // without a reducing switch NVLS is refused, naming the alternatives
    auto plain = star(p, B, link_ns, switch_ns, false);
    Net pn{plain, exact_options(*plain)};
    const std::string e =
        test::user_error_of([&] { run(pn, CollectiveKind::all_reduce, CollectiveAlgorithm::nvls, 1000, p); });
    CHECK(e.find("in_network_reduction") != std::string::npos);
}

TEST_CASE("hierarchical all-reduce: ring in each node, ring across nodes, ring in each node",
          "[arch][net][closed-form]") {
    const int N = 3, L = 4, p = N * L;
    const double b1 = 200e9, b2 = 25e9;
    auto t = two_level(N, L, b1, 200, 100, b2, 1000, 300);
    Net net{t, exact_options(*t)};
    const double a1 = 2 * 200e-9 + 100e-9, a2 = 2 * 1000e-9 + 300e-9;
    const double n = 96e6, pd = p, Ld = L, Nd = N;
    const double intra = (Ld - 1) * (a1 + n / Ld / b1);
    const double inter = 2 * (Nd - 1) * (a2 + n / pd / b2);
    const double gamma_part = (Ld - 1) * n / Ld * gamma_s + (Nd - 1) * n / pd * gamma_s;
    check_time(run(net, CollectiveKind::all_reduce, CollectiveAlgorithm::hierarchical, 96'000'000, p),
               2 * intra + inter + gamma_part, 40);
    check_time(run(net, CollectiveKind::all_gather, CollectiveAlgorithm::hierarchical, 96'000'000, p),
               (Nd - 1) * (a2 + n / pd / b2) + intra, 20);
    // The flat ring runs one ring per NIC (every device has its own link to "top": L rings, each 1/L of
    // the data; three nodes, so no reversed nodes, and ring j crosses from rank j-1 of a node to rank j of
    // the next). Every step crosses the slow links once per ring: a NIC flow of n / (L p) bytes alone on
    // its link, the L - 1 NVLink flows of a device sharing its b1, so the step takes a2 + n / (L p) / b2
    // (the NVLink flows take a1 + 3 n / (L p) / b1, less); each reduction step reduces n / p per device.
    const double flat = run(net, CollectiveKind::all_reduce, CollectiveAlgorithm::ring, 96'000'000, p);
    check_time(flat, 2 * (pd - 1) * (a2 + n / (Ld * pd) / b2) + (pd - 1) * n / pd * gamma_s, 2 * (p - 1));
}

TEST_CASE("a group of one costs nothing; bad groups are user errors", "[arch][net]") {
    auto t = star(4, B, link_ns, switch_ns);
    FlowNetwork net(t, exact_options(*t));
    CollectiveRequest q;
    q.group = {2};
    q.bytes = 1000;
    CHECK(net.collective(q).duration() == Tick::zero());
    q.group = {};
    CHECK(test::user_error_of([&] { net.collective(q); }).find("empty") != std::string::npos);
    q.group = {0, 1, 0};
    CHECK(test::user_error_of([&] { net.collective(q); }).find("twice") != std::string::npos);
    q.group = {0, 4};  // vertex 4 is the switch
    CHECK(test::user_error_of([&] { net.collective(q); }).find("switch") != std::string::npos);
    q.group = {0, 1};
    q.kind = CollectiveKind::all_to_all;
    q.algorithm = CollectiveAlgorithm::ring;
    CHECK(test::user_error_of([&] { net.collective(q); }).find("supported: direct, pairwise, bruck") !=
          std::string::npos);
}

TEST_CASE("all-to-allv: a receiver's port is shared, then the rest of it goes to the flow left",
          "[arch][net][closed-form]") {
    auto t = star(3, B, link_ns, switch_ns);
    CollectiveRequest q;
    q.kind = CollectiveKind::all_to_all;
    q.algorithm = CollectiveAlgorithm::direct;
    q.protocol = Protocol::ideal;
    q.group = {0, 1, 2};
    q.counts = {0, 6'000'000, 0,   // rank 0 sends 6 MB to rank 1
                0, 0,         0,   //
                0, 2'000'000, 0};  // rank 2 sends 2 MB to rank 1
    FlowNetwork net(t, exact_options(*t));
    // both share rank 1's port at B/2 until the 2 MB flow ends (4 MB sent), then 4 MB at B: 8 MB / B
    check_time(net.collective(q).duration().to_seconds(), alpha + 8e6 / B, 1);
    q.counts.resize(4);
    CHECK(test::user_error_of([&] { net.collective(q); }).find("p x p") != std::string::npos);
}

TEST_CASE("hierarchical all-reduce uses the nodes' reducing switches within each node",
          "[arch][net][closed-form]") {
    const int N = 2, L = 4, p = N * L;
    const double b1 = 200e9, b2 = 25e9;
    auto t = two_level(N, L, b1, 200, 100, b2, 1000, 300, /*reduction=*/true);
    Net net{t, exact_options(*t)};
    const double a2 = 2 * 1000e-9 + 300e-9, up = 200e-9 + 100e-9;
    const double n = 64e6, pd = p, Nd = N;
    // in each node: every rank pushes n into its switch and gets n/L back (reduce-scatter), then pushes n/L
    // and gets n (all-gather): n beta1 + 2 (link + switch) each, the switch doing the reduction
    const double intra = n / b1 + 2 * up;
    const double inter = 2 * (Nd - 1) * (a2 + n / pd / b2) + (Nd - 1) * n / pd * gamma_s;
    check_time(run(net, CollectiveKind::all_reduce, CollectiveAlgorithm::hierarchical, 64'000'000, p),
               2 * intra + inter, 10);
}

TEST_CASE("hierarchical phases pipeline over pieces: one piece's phases + (C - 1) x the busier link set",
          "[arch][net][closed-form]") {
    const int N = 2, L = 4, p = N * L;
    const double b1 = 200e9, b2 = 25e9;
    auto t = two_level(N, L, b1, 200, 100, b2, 1000, 300);
    NetworkOptions o = exact_options(*t);
    o.pipeline_pieces = 8;
    Net net{t, o};
    const double a1 = 2 * 200e-9 + 100e-9, a2 = 2 * 1000e-9 + 300e-9;
    const double n = 64e6, c = n / 8, pd = p, Ld = L, Nd = N;
    // one piece: intra reduce-scatter, inter reduce-scatter, inter all-gather, intra all-gather
    const double rs1 = (Ld - 1) * (a1 + c / Ld / b1 + c / Ld * gamma_s);
    const double rs2 = (Nd - 1) * (a2 + c / pd / b2 + c / pd * gamma_s);
    const double ag2 = (Nd - 1) * (a2 + c / pd / b2);
    const double ag1 = (Ld - 1) * (a1 + c / Ld / b1);
    const double longest = std::max(rs1 + ag1, rs2 + ag2);  // inside the nodes vs. across them
    check_time(run(net, CollectiveKind::all_reduce, CollectiveAlgorithm::hierarchical, 64'000'000, p),
               rs1 + rs2 + ag2 + ag1 + 7 * longest, 20);
    // the link bytes are those of the whole message: each NIC link carries 2 (N-1)/p n each way
    FlowNetwork fresh(t, o);
    CollectiveRequest q;
    q.kind = CollectiveKind::all_reduce;
    q.algorithm = CollectiveAlgorithm::hierarchical;
    q.protocol = Protocol::ideal;
    for (int i = 0; i < p; ++i) q.group.push_back(static_cast<VertexId>(i));
    q.bytes = 64'000'000;
    double nic = 0;
    for (const LinkBytes& lb : fresh.collective(q).link_bytes)
        if (t->link(lb.link).props.kind == "infiniband") nic = std::max(nic, lb.a_to_b);
    CHECK(nic == Approx(2 * (Nd - 1) / pd * n));
}
