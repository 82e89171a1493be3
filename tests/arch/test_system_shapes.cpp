// Topologies built from a few keys (`topology:` inside each node, `fabric:` across nodes): vertex and
// link counts and degrees of each shape, placements, dimension-order routes on tori, up/down routes with
// ECMP on leaf/spine fabrics, the bisection bandwidth of every preset against a hand-worked figure, and
// the located errors of the new keys.
#include <catch2/catch.hpp>
#include <cstdint>
#include <cstdlib>
#include <map>
#include <set>
#include <string>
#include <vector>

#include "arch/net/topology.h"
#include "arch/system/system_spec.h"
#include "tests/arch/system_test_helpers.h"

using namespace mlsim;
using arch::net::LinkId;
using arch::net::Route;
using arch::net::Topology;
using arch::net::VertexId;
using Catch::Matchers::Contains;

namespace {

arch::SystemSpec preset(const std::string& name) {
    return arch::load_system(test::system_preset_path(name), {test::configs_dir() + "/devices"});
}

std::size_t degree(const Topology& t, const std::string& name) { return t.neighbours(*t.find(name)).size(); }

// Checks that a route is a walk from src to dst over existing links, and returns its vertex names.
std::vector<std::string> walk(const Topology& t, const Route& r) {
    VertexId at = r.src;
    std::vector<std::string> names{t.vertex(at).name};
    for (const auto& h : r.hops) {
        REQUIRE(h.from == at);
        const auto& l = t.link(h.link);
        REQUIRE((l.a == at || l.b == at));
        REQUIRE(h.to == l.other(at));
        at = h.to;
        names.push_back(t.vertex(at).name);
    }
    REQUIRE(at == r.dst);
    return names;
}

int64_t ring_distance(int64_t a, int64_t b, int64_t k) {
    const int64_t d = std::llabs(a - b);
    return std::min(d, k - d);
}

std::string shape_system(const std::string& nodes, const std::string& rest) {
    return "system:\n  name: t\n  device: a100\n  nodes:\n" + nodes + rest;
}

}  // namespace

TEST_CASE("shape switch: one switch per node, every device linked to it, planes split the links",
          "[arch][system][shapes]") {
    const arch::SystemSpec s =
        test::load_test_system("switch.yaml", shape_system("    - {name: n, devices: 4, count: 2}\n",
                                                           R"(  topology:
    shape: switch
    link: {kind: nvlink, count: 12, bandwidth: 25GB/s}
    switch: {latency: 0.2us}
  fabric: {shape: fat-tree, nic: {bandwidth: 25GB/s, latency: 1us}}
)"));
    const Topology& t = *s.topology;
    CHECK(s.nodes.size() == 2);
    CHECK(s.nodes[0].name == "n0");
    CHECK(s.nodes[1].name == "n1");
    CHECK(s.devices[5].name == "n1.1");
    CHECK(t.switches().size() == 3);  // n0-switch, n1-switch, leaf0
    CHECK(t.link_count() == 8 + 8);
    CHECK(degree(t, "n0-switch") == 4);
    CHECK(degree(t, "n0.0") == 2);
    CHECK(walk(t, *t.route(0, 3)) == std::vector<std::string>{"n0.0", "n0-switch", "n0.3"});
    CHECK(walk(t, *t.route(0, 4)) == std::vector<std::string>{"n0.0", "leaf0", "n1.0"});
    CHECK(t.link(0).bandwidth_Bps == Approx(300e9));
    CHECK(t.vertex(*t.find("n1-switch")).place.node == 1);
    CHECK(t.vertex(*t.find("n1-switch")).place.role == "switch");
    CHECK(t.vertex(*t.find("n1.3")).place.node == 1);

    const arch::SystemSpec planes =
        test::load_test_system("planes.yaml", shape_system("    - {name: n, devices: 4}\n",
                                                           R"(  topology:
    shape: switch
    link: {kind: nvlink, count: 12, bandwidth: 25GB/s}
    switch: {planes: 6}
)"));
    const Topology& p = *planes.topology;
    CHECK(p.switches().size() == 6);
    CHECK(p.link_count() == 24);
    CHECK(p.link(0).props.count == 2);
    CHECK(degree(p, "n.0") == 6);
    // Six equal planes: six next hops, and flow hashes spread over them.
    CHECK(p.equal_cost_next_hops(*p.find("n.0"), *p.find("n.1")) == 6);
    std::set<std::string> used;
    for (uint64_t h = 1; h <= 64; ++h) used.insert(walk(p, *p.route(0, 1, h))[1]);
    CHECK(used.size() == 6);
    CHECK(walk(p, *p.route(0, 1, 0))[1] == "n-switch0");  // hash 0: the first by name
}

TEST_CASE("shapes fully-connected and ring: counts and degrees", "[arch][system][shapes]") {
    const arch::SystemSpec fc =
        test::load_test_system("fc.yaml", shape_system("    - {name: n, devices: 5}\n",
                                                       R"(  topology:
    shape: fully-connected
    link: {kind: other, bandwidth: 50GB/s, count: 2}
)"));
    CHECK(fc.topology->link_count() == 10);
    CHECK(fc.topology->switches().empty());
    for (int i = 0; i < 5; ++i) CHECK(degree(*fc.topology, "n." + std::to_string(i)) == 4);
    CHECK(fc.topology->route(0, 4)->hops.size() == 1);

    const arch::SystemSpec ring =
        test::load_test_system("ring.yaml", shape_system("    - {name: n, devices: 6}\n",
                                                         R"(  topology:
    shape: ring
    link: {bandwidth: 10GB/s}
)"));
    const Topology& r = *ring.topology;
    CHECK(r.link_count() == 6);
    for (int i = 0; i < 6; ++i) CHECK(degree(r, "n." + std::to_string(i)) == 2);
    CHECK(r.route(0, 3)->hops.size() == 3);
    CHECK(r.route(0, 5)->hops.size() == 1);
    // Bisection of a ring: two links cut.
    CHECK(ring.bisection_Bps() == Approx(2 * 10e9));
}

TEST_CASE("shape torus: 6 neighbours per chip, wrap-around, meshes and dimensions of 2",
          "[arch][system][shapes]") {
    const arch::SystemSpec s = test::load_test_system("torus.yaml", R"(system:
  name: t
  device: tpu-v4
  count: 64
  topology: {shape: torus, dims: 4x4x4, link: {kind: ici, bandwidth: 50GB/s, latency: 0.5us}}
)");
    const Topology& t = *s.topology;
    CHECK(t.link_count() == 3 * 64);
    for (VertexId v : t.devices()) CHECK(t.neighbours(v).size() == 6);
    CHECK(t.vertex(21).place.coords == std::vector<int64_t>{1, 1, 1});  // 21 = 1 + 4 * (1 + 4 * 1)
    // Hand-worked bisection: 2 x 4 x 4 = 32 links cut across z.
    CHECK(s.bisection_Bps() == Approx(32 * 50e9));

    const arch::SystemSpec mesh = test::load_test_system(
        "mesh.yaml",
        shape_system("    - {name: m, devices: 9}\n",
                     R"(  topology: {shape: torus, dims: 3x3, wrap: false, link: {bandwidth: 1GB/s}}
)"));
    CHECK(mesh.topology->link_count() == 12);  // 2 x 3 x (3 - 1)
    CHECK(degree(*mesh.topology, "m.0") == 2);
    CHECK(degree(*mesh.topology, "m.4") == 4);
    CHECK(mesh.topology->route(0, 8)->hops.size() == 4);

    // A dimension of 2 with wrap: the pair is joined once, by twice the links.
    const arch::SystemSpec two = test::load_test_system(
        "two.yaml", shape_system("    - {name: m, devices: 8}\n",
                                 R"(  topology: {shape: torus, dims: 4x2, link: {bandwidth: 1GB/s}}
)"));
    CHECK(two.topology->link_count() == 4 * 2 + 4);
    CHECK(two.topology->link(*two.topology->route(0, 4)->links().begin()).props.count == 2);
}

TEST_CASE("torus routes are dimension-order routes of Manhattan length with wrap-around",
          "[arch][system][shapes]") {
    const arch::SystemSpec s = test::load_test_system("torus64.yaml", R"(system:
  name: t
  device: tpu-v4
  count: 64
  topology: {shape: torus, dims: 4x4x4, link: {kind: ici, bandwidth: 50GB/s, latency: 0.5us}}
)");
    const Topology& t = *s.topology;
    for (VertexId a = 0; a < 64; ++a) {
        for (VertexId b = 0; b < 64; ++b) {
            const auto& ca = t.vertex(a).place.coords;
            const auto& cb = t.vertex(b).place.coords;
            int64_t manhattan = 0;
            for (int d = 0; d < 3; ++d) manhattan += ring_distance(ca[d], cb[d], 4);
            const Route r = *t.route(a, b, (a * 64 + b) % 3);
            INFO(a << " -> " << b);
            REQUIRE(static_cast<int64_t>(r.hops.size()) == manhattan);
            (void)walk(t, r);
            CHECK(r.latency == Tick::from_ns(500) * manhattan);
            // Dimension order: once a dimension stops changing it never changes again.
            int last_dim = -1;
            for (const auto& h : r.hops) {
                const auto& x = t.vertex(h.from).place.coords;
                const auto& y = t.vertex(h.to).place.coords;
                int dim = 0;
                while (x[dim] == y[dim]) ++dim;
                REQUIRE(dim >= last_dim);
                last_dim = dim;
            }
        }
    }
    // Half way round a ring of 4: + for hash 0, and some hash takes the other way, as long.
    const Route plus = *t.route(0, 2, 0);
    CHECK(walk(t, plus)[1] == "device.1");
    bool minus = false;
    for (uint64_t h = 1; h < 16 && !minus; ++h) minus = walk(t, *t.route(0, 2, h))[1] == "device.3";
    CHECK(minus);
    // route(src, dst) is route(src, dst, 0).
    CHECK(t.route(5, 42)->links() == t.route(5, 42, 0)->links());
}

TEST_CASE("the TPU v4 pod: 4,096 chips, 12,288 ICI links, routes of Manhattan length",
          "[arch][system][shapes]") {
    const arch::SystemSpec s = preset("tpu-v4-4096");
    const Topology& t = *s.topology;
    CHECK(s.device_count == 4096);
    CHECK(t.link_count() == 12288);
    CHECK(t.switches().empty());
    uint64_t x = 12345;
    Route r;
    for (int i = 0; i < 2000; ++i) {
        x = x * 6364136223846793005ull + 1442695040888963407ull;
        const VertexId a = (x >> 20) % 4096, b = (x >> 40) % 4096;
        REQUIRE(t.route_into(a, b, x, r));
        int64_t manhattan = 0;
        for (int d = 0; d < 3; ++d)
            manhattan += ring_distance(t.vertex(a).place.coords[d], t.vertex(b).place.coords[d], 16);
        REQUIRE(static_cast<int64_t>(r.hops.size()) == manhattan);
    }
    CHECK(t.route(0, 4095)->hops.size() == 3);  // (0,0,0) -> (15,15,15): one wrap-around hop each
    // Hand-worked: 2 x 16 x 16 = 512 links across the cut, 50 GB/s each.
    CHECK(s.bisection_Bps() == Approx(512 * 50e9));
}

TEST_CASE("shape pcie-tree: devices - PCIe switches - root complexes - socket link",
          "[arch][system][shapes]") {
    const arch::SystemSpec s = preset("pcie-8gpu");
    const Topology& t = *s.topology;
    CHECK(t.switches().size() == 6);
    CHECK(t.link_count() == 8 + 4 + 1);
    CHECK(degree(t, "gpu-pcie0") == 3);  // 2 GPUs + uplink
    CHECK(degree(t, "gpu-cpu0") == 3);   // 2 PCIe switches + UPI
    CHECK(t.vertex(*t.find("gpu-cpu1")).place.role == "root-complex");
    CHECK(walk(t, *t.route(0, 1)) == std::vector<std::string>{"gpu.0", "gpu-pcie0", "gpu.1"});
    CHECK(walk(t, *t.route(0, 2)) ==
          std::vector<std::string>{"gpu.0", "gpu-pcie0", "gpu-cpu0", "gpu-pcie1", "gpu.2"});
    CHECK(walk(t, *t.route(0, 7)) ==
          std::vector<std::string>{"gpu.0", "gpu-pcie0", "gpu-cpu0", "gpu-cpu1", "gpu-pcie3", "gpu.7"});
    // Hand-worked: the cut between the sockets is min(2 uplinks x 31.5, 3 UPI x 22.4) = 63 GB/s.
    CHECK(s.bisection_Bps() == Approx(63e9));
}

TEST_CASE("a fat-tree fabric: NICs to leaves, leaves to spines, oversubscription", "[arch][system][shapes]") {
    const std::string nodes = "    - {name: n, devices: 2, count: 4}\n";
    const arch::SystemSpec s = test::load_test_system("ft.yaml", shape_system(nodes, R"(  fabric:
    shape: fat-tree
    nodes_per_leaf: 2
    nic: {kind: infiniband, bandwidth: 25GB/s}
    spine: {count: 2}
)"));
    const Topology& t = *s.topology;
    // 2 leaves x 4 NIC ports down; non-blocking: 4 up, 2 to each spine.
    CHECK(t.switches().size() == 4);
    CHECK(t.link_count() == 8 + 2 * 2);
    CHECK(degree(t, "leaf0") == 4 + 2);
    CHECK(t.link(*t.route(0, 7)->links().rbegin()).props.count == 1);
    const Route up = *t.route(0, 7);
    const std::vector<std::string> names = walk(t, up);
    CHECK(names.size() == 5);  // device - leaf0 - spine - leaf1 - device
    CHECK(names[1] == "leaf0");
    CHECK(names[3] == "leaf1");
    CHECK(t.link(up.hops[1].link).props.count == 2);
    CHECK(walk(t, *t.route(0, 3)) == std::vector<std::string>{"n0.0", "leaf0", "n1.1"});
    // Both spines are equal-cost: ECMP picks each for some flows.
    std::set<std::string> spines;
    for (uint64_t h = 1; h <= 32; ++h) spines.insert(walk(t, *t.route(0, 7, h))[2]);
    CHECK(spines == std::set<std::string>{"spine0", "spine1"});
    CHECK(s.bisection_Bps() == Approx(4 * 25e9));

    const arch::SystemSpec over = test::load_test_system("ft2.yaml", shape_system(nodes, R"(  fabric:
    shape: fat-tree
    nodes_per_leaf: 2
    nic: {kind: infiniband, bandwidth: 25GB/s}
    spine: {count: 2}
    oversubscription: 2
)"));
    CHECK(over.topology->link(over.topology->link_count() - 1).props.count == 1);
    CHECK(over.bisection_Bps() == Approx(2 * 25e9));  // half the up-links
}

TEST_CASE("a rail-optimised fabric keeps same-rail traffic on its leaf", "[arch][system][shapes]") {
    const arch::SystemSpec s = preset("superpod-h100-1024");
    const Topology& t = *s.topology;
    CHECK(s.device_count == 1024);
    CHECK(s.nodes.size() == 128);
    CHECK(t.switches().size() == 128 + 32 + 16);
    CHECK(t.link_count() == 1024 + 1024 + 32 * 16);
    CHECK(degree(t, "su0-rail3") == 32 + 16);
    CHECK(degree(t, "spine7") == 32);
    CHECK(t.link(t.neighbours(*t.find("spine7")).front().link).props.count == 2);
    const VertexId d = *t.find("dgx5.3");
    CHECK(t.vertex(d).place.rail == 3);
    CHECK(t.vertex(d).place.node == 5);
    CHECK(t.vertex(*t.find("su2-rail6")).place.rail == 6);
    // Same rail, same scalable unit: up to the rail's leaf and down.
    CHECK(walk(t, *t.route(d, *t.find("dgx31.3"))) ==
          std::vector<std::string>{"dgx5.3", "su0-rail3", "dgx31.3"});
    // Same node: over NVLink.
    CHECK(walk(t, *t.route(d, *t.find("dgx5.0"))) ==
          std::vector<std::string>{"dgx5.3", "dgx5-switch", "dgx5.0"});
    // Same rail, another scalable unit: leaf - spine - leaf, spread over the 16 spines by flow hash.
    std::set<std::string> spines;
    for (uint64_t h = 0; h < 256; ++h) {
        const std::vector<std::string> names = walk(t, *t.route(d, *t.find("dgx100.3"), h));
        REQUIRE(names.size() == 5);
        CHECK(names[1] == "su0-rail3");
        CHECK(names[3] == "su3-rail3");
        spines.insert(names[2]);
    }
    CHECK(spines.size() == 16);
    // Hand-worked: 64 nodes x 8 NICs x 50 GB/s on each side, and as much up from their 16 leaves.
    CHECK(s.bisection_Bps() == Approx(25.6e12));
    CHECK(preset("superpod-h100-512").bisection_Bps() == Approx(12.8e12));
}

TEST_CASE("the bisection bandwidth of every node and edge preset, worked by hand", "[arch][system][shapes]") {
    // NVSwitch: 4 GPUs x links x 25 GB/s cross.
    CHECK(preset("dgx-a100").bisection_Bps() == Approx(4 * 12 * 25e9));
    CHECK(preset("dgx-h100").bisection_Bps() == Approx(4 * 18 * 25e9));
    // Two DGX A100: the halves are the nodes; 8 HDR NICs of 25 GB/s cross.
    CHECK(preset("dgx-a100-2node").bisection_Bps() == Approx(8 * 25e9));
    // Full nodes: NVSwitch + 4 NICs through the leaf + the PCIe path, min(2 uplinks, socket links).
    CHECK(preset("dgx-a100-node").bisection_Bps() ==
          Approx(1200e9 + 4 * 25e9 + std::min(2 * 31.5e9, 4 * 31.5e9)));
    CHECK(preset("dgx-h100-node").bisection_Bps() ==
          Approx(1800e9 + 4 * 50e9 + std::min(2 * 63e9, 4 * 32e9)));
    // The A100s of pcie-4gpu: two of them on one switch, 2 x 31.5 GB/s.
    CHECK(preset("pcie-4gpu").bisection_Bps() == Approx(2 * 31.5e9));
    // Four Jetsons on one 10 GbE switch: two NICs of 1.25 GB/s.
    CHECK(preset("jetson-orin-10gbe").bisection_Bps() == Approx(2 * 1.25e9));
    CHECK(preset("a100-single").bisection_Bps() == 0);
}

TEST_CASE("a full DGX node: NVLink inside, its NICs and PCIe tree beside", "[arch][system][shapes]") {
    const arch::SystemSpec s = preset("dgx-h100-node");
    const Topology& t = *s.topology;
    CHECK(t.switches().size() == 1 + 2 + 4 + 1);
    CHECK(t.link_count() == 8 + 8 + 4 + 1 + 8);
    CHECK(t.vertex(*t.find("dgx-switch")).sw.in_network_reduction);
    CHECK(degree(t, "dgx.0") == 3);  // NVSwitch, PCIe switch, leaf
    // GPU to GPU takes NVLink (0.6 us) rather than the PCIe tree or the leaf.
    CHECK(walk(t, *t.route(0, 5)) == std::vector<std::string>{"dgx.0", "dgx-switch", "dgx.5"});
}

TEST_CASE("route costs stay cached: many routes to one destination cost one Dijkstra",
          "[arch][system][shapes]") {
    const arch::SystemSpec s = preset("superpod-h100-512");
    const Topology& t = *s.topology;
    Route r;
    std::size_t hops = 0;
    for (VertexId a = 0; a < 512; ++a) {
        REQUIRE(t.route_into(a, 17, a, r));
        hops += r.hops.size();
    }
    CHECK(hops > 0);
    // A copy routes the same, from an empty cache.
    const Topology copy = t;
    CHECK(copy.route(3, 300, 9)->links() == t.route(3, 300, 9)->links());
}

TEST_CASE("bad shape keys are located user errors", "[arch][system][shapes][errors]") {
    auto err = [](const std::string& nodes, const std::string& rest) {
        return test::system_error("bad_shape.yaml", shape_system(nodes, rest));
    };
    const std::string four = "    - {name: n, devices: 4}\n";
    CHECK_THAT(err(four, "  topology: {shape: torus, dims: 3x3, link: {bandwidth: 1GB/s}}\n"),
               Contains("bad_shape.yaml:6:34") && Contains("system.topology.dims") &&
                   Contains("3x3 = 9 chips, but node 'n' holds 4 devices"));
    CHECK_THAT(err(four, "  topology: {shape: torus, dims: 2y2, link: {bandwidth: 1GB/s}}\n"),
               Contains("system.topology.dims") && Contains("expected sizes joined by 'x'"));
    CHECK_THAT(err(four, "  topology: {shape: torus, link: {bandwidth: 1GB/s}}\n"),
               Contains("system.topology.shape") && Contains("needs `dims`"));
    CHECK_THAT(err(four, "  topology: {shape: ring, dims: 4, link: {bandwidth: 1GB/s}}\n"),
               Contains("`dims` belongs to shape torus"));
    CHECK_THAT(err(four, "  topology: {shape: ring}\n"), Contains("shape ring needs a `link:` map"));
    CHECK_THAT(err(four, "  topology: {shape: rign, link: {bandwidth: 1GB/s}}\n"),
               Contains("system.topology.shape") && Contains("ring"));
    CHECK_THAT(err(four, "  topology: {shape: ring, link: {bandwidth: 0GB/s}}\n"),
               Contains("system.topology.link.bandwidth"));
    CHECK_THAT(
        err(four, "  topology: {shape: switch, link: {bandwidth: 1GB/s, count: 3}, switch: {planes: 2}}\n"),
        Contains("system.topology.switch.planes") && Contains("multiple of planes"));
    CHECK_THAT(
        err(four, "  topology:\n    shape: pcie-tree\n    pcie: {sockets: 3, link: {bandwidth: 1GB/s}}\n"),
        Contains("system.topology.pcie.sockets") && Contains("do not spread evenly over 3 PCIe switches"));
    CHECK_THAT(
        err(four, "  topology:\n    shape: pcie-tree\n    pcie: {sockets: 2, link: {bandwidth: 1GB/s}}\n"),
        Contains("system.topology.pcie.sockets") && Contains("socket_link"));
    CHECK_THAT(err(four, "  topology: {shape: pcie-tree}\n"), Contains("needs a `pcie:` map"));
    // Fabrics.
    const std::string nodes = "    - {name: n, devices: 4, count: 4}\n";
    CHECK_THAT(err(nodes, "  fabric: {shape: fat-tree, nic: {bandwidth: 1GB/s}, spine: {count: 3}}\n"),
               Contains("system.fabric.spine.count") && Contains("not a whole number"));
    CHECK_THAT(err(nodes, "  fabric: {shape: fat-tree, nics_per_node: 6, nic: {bandwidth: 1GB/s}}\n"),
               Contains("system.fabric.nics_per_node") && Contains("do not spread evenly"));
    CHECK_THAT(err(nodes, "  fabric: {shape: fat-tree, nodes_per_su: 2, nic: {bandwidth: 1GB/s}}\n"),
               Contains("system.fabric.nodes_per_su") && Contains("belongs to shape rail-optimised"));
    CHECK_THAT(err(nodes, "  fabric: {shape: fat-tree, nic: {bandwidth: 1GB/s}, oversubscription: 2}\n"),
               Contains("system.fabric.oversubscription") && Contains("needs spine switches"));
    CHECK_THAT(err(nodes, "  fabric: {shape: fat-tree}\n"), Contains("system.fabric") && Contains("nic"));
    // Without spines, groups of leaves are cut off from one another: the message says so, at the fabric's
    // shape (before, it said there were no `links:`, though the fabric had made some).
    CHECK_THAT(err(nodes, "  fabric: {shape: rail-optimised, nodes_per_su: 2, nic: {bandwidth: 1GB/s}}\n"),
               Contains("system.fabric.shape") && Contains("cannot be reached") &&
                   Contains("the fabric's 8 leaves fall into 8 groups that nothing joins") &&
                   Contains("spine: {count: N}") && !Contains("no `links:`"));
    // One scalable unit of 4 rails: without a node topology, a node's devices are joined by nothing either.
    CHECK_THAT(err(nodes, "  fabric: {shape: rail-optimised, nodes_per_su: 4, nic: {bandwidth: 1GB/s}}\n"),
               Contains("system.fabric.shape") && Contains("the fabric's 4 leaves fall into 4 groups") &&
                   Contains("the nodes a `topology:`"));
    CHECK_THAT(err(nodes, "  fabric: {shape: fat-tree, nodes_per_leaf: 1, nic: {bandwidth: 1GB/s}}\n"),
               Contains("system.fabric.shape") && Contains("the fabric's 4 leaves fall into 4 groups") &&
                   !Contains("`topology:`"));
    // With a switch in each node, two scalable units of 4 rails are two groups, and a node topology would not
    // join them: the message does not offer one.
    CHECK_THAT(err(nodes,
                   "  topology: {shape: switch, link: {bandwidth: 1GB/s}}\n"
                   "  fabric: {shape: rail-optimised, nodes_per_su: 2, nic: {bandwidth: 1GB/s}}\n"),
               Contains("the fabric's 8 leaves fall into 2 groups") && !Contains("`topology:`"));
    // With a switch in each node, one scalable unit's rails are joined through the nodes: no error.
    CHECK_NOTHROW(test::load_test_system(
        "one_su.yaml",
        shape_system(nodes,
                     "  topology: {shape: switch, link: {bandwidth: 1GB/s}}\n"
                     "  fabric: {shape: rail-optimised, nodes_per_su: 4, nic: {bandwidth: 1GB/s}}\n")));
    // One leaf needs no spine.
    CHECK_NOTHROW(test::load_test_system(
        "one_leaf.yaml",
        shape_system(nodes, "  fabric: {shape: fat-tree, nodes_per_leaf: 4, nic: {bandwidth: 1GB/s}}\n")));
    CHECK_THAT(test::system_error("simple_fabric.yaml",
                                  "system:\n  name: t\n  device: a100\n  count: 4\n"
                                  "  fabric: {shape: fat-tree, nic: {bandwidth: 1GB/s}}\n"),
               Contains("`fabric:` joins nodes"));
    // A generated name that a node already has.
    CHECK_THAT(err("    - {name: leaf0, devices: 1}\n    - {name: b, devices: 1}\n",
                   "  fabric: {shape: fat-tree, nic: {bandwidth: 1GB/s}}\n"),
               Contains("system.fabric.shape") && Contains("makes a switch named 'leaf0'"));
    CHECK_THAT(err("    - {name: n, devices: 1, count: 0}\n", ""), Contains("system.nodes[0].count"));
}

TEST_CASE("a resolved system keeps its shape keys, so a sweep may change them", "[arch][system][shapes]") {
    const arch::SystemSpec s = preset("superpod-h100-512");
    cfg::Node doc = s.resolved;
    cfg::Node* fabric = doc.find("system")->find("fabric");
    REQUIRE(fabric != nullptr);
    CHECK(fabric->find("shape")->as_string() == "rail-optimised");
    // Halve the NIC bandwidth: the bisection halves.
    cfg::Node* nic = fabric->find("nic");
    nic->set("bandwidth", cfg::Node::make_scalar("25GB/s", nic->loc(), "system.fabric.nic.bandwidth"));
    const arch::SystemSpec slower = arch::system_from_resolved(doc);
    CHECK(slower.bisection_Bps() == Approx(s.bisection_Bps() / 2));
    // Half the nodes: one scalable unit; 32 x 8 NICs of 25 GB/s, half of them across.
    cfg::Node node = doc.find("system")->find("nodes")->items().front();
    CHECK(node.find("count")->as_string() == "64");
    node.set("count", cfg::Node::make_scalar("32", node.loc(), "system.nodes[0].count"));
    cfg::Node list = cfg::Node::make_sequence(doc.find("system")->find("nodes")->loc(), "system.nodes");
    list.push_back(node);
    doc.find("system")->set("nodes", list);
    const arch::SystemSpec one_su = arch::system_from_resolved(doc);
    CHECK(one_su.device_count == 256);
    CHECK(one_su.topology->switches().size() == 32 + 8 + 8);
    CHECK(one_su.bisection_Bps() == Approx(128 * 25e9));
}
