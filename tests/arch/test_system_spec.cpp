// System files: every preset loads with the topology it describes, node.* expands to one link per
// device, heterogeneous nodes keep each device type once, and the resolved form reloads to the same
// system without any preset file.
#include <catch2/catch.hpp>
#include <string>
#include <vector>

#include "arch/system/system_spec.h"
#include "sim/config/loader.h"
#include "tests/arch/system_test_helpers.h"

using namespace mlsim;
using Catch::Matchers::Contains;
using test::load_test_system;
using test::system_preset_path;

namespace {

arch::SystemSpec preset(const std::string& name) {
    return arch::load_system(system_preset_path(name), {test::configs_dir() + "/devices"});
}

std::vector<std::string> device_names(const arch::SystemSpec& s) {
    std::vector<std::string> out;
    for (const arch::SystemDevice& d : s.devices) out.push_back(d.name);
    return out;
}

// Every topology figure, as text, so that two systems can be compared whole.
std::string topology_text(const arch::net::Topology& t) {
    std::string out;
    for (arch::net::VertexId v = 0; v < t.vertex_count(); ++v) {
        const arch::net::Vertex& x = t.vertex(v);
        out += x.name +
               (x.is_switch()
                    ? " switch " + x.sw.kind + " " + std::to_string(x.sw.latency.ps()) + " " +
                          std::to_string(x.sw.port_bandwidth_Bps) + " " +
                          std::to_string(x.sw.energy_J_per_byte) + (x.sw.in_network_reduction ? " sharp" : "")
                    : " device") +
               "\n";
    }
    for (arch::net::LinkId l = 0; l < t.link_count(); ++l) {
        const arch::net::Link& k = t.link(l);
        out += t.vertex(k.a).name + " - " + t.vertex(k.b).name + " " + k.props.kind + " x" +
               std::to_string(k.props.count) + " " + std::to_string(k.props.bandwidth_Bps) + " " +
               std::to_string(k.props.latency.ps()) + " " + std::to_string(k.props.energy_J_per_byte) + "\n";
    }
    return out;
}

}  // namespace

TEST_CASE("every system preset loads, and one with a topology is connected", "[arch][system]") {
    const std::vector<std::string> names = arch::list_system_presets(test::configs_dir());
    for (const char* expected :
         {"a100-single", "a100-hbm-2x", "orin-nano", "dgx-a100", "dgx-h100", "dgx-a100-2node", "pcie-4gpu"})
        CHECK(std::find(names.begin(), names.end(), expected) != names.end());
    for (const std::string& name : names) {
        INFO(name);
        const arch::SystemSpec s = preset(name);
        CHECK(s.name == name);
        CHECK_FALSE(s.description.empty());
        REQUIRE(s.topology != nullptr);
        CHECK(s.device_count == static_cast<int64_t>(s.devices.size()));
        CHECK(s.topology->devices().size() == s.devices.size());
        CHECK(s.topology->vertex_count() == s.devices.size() + s.topology->switches().size());
        REQUIRE_FALSE(s.device_types.empty());
        CHECK(s.device.name == s.device_types.front().name);
        for (std::size_t i = 0; i < s.devices.size(); ++i)
            CHECK(s.topology->vertex(i).name == s.devices[i].name);
        if (s.device_count > 1) {
            CHECK(s.has_network());
            CHECK(s.topology->connected());
        }
    }
}

TEST_CASE("the simple form is count devices of one type with no links", "[arch][system]") {
    const arch::SystemSpec one = preset("a100-single");
    CHECK(one.device_count == 1);
    CHECK(device_names(one) == std::vector<std::string>{"device.0"});
    CHECK_FALSE(one.has_network());

    const arch::SystemSpec four =
        load_test_system("simple4.yaml", "system:\n  name: four\n  device: h100\n  count: 4\n");
    CHECK(four.device_count == 4);
    CHECK(device_names(four) == std::vector<std::string>{"device.0", "device.1", "device.2", "device.3"});
    CHECK(four.nodes.size() == 1);
    CHECK(four.topology->link_count() == 0);
    CHECK_FALSE(four.has_network());
    CHECK_FALSE(four.topology->connected());
    CHECK(four.device_summary() == "4 x h100");
}

TEST_CASE("dgx-a100: 8 GPUs, each with 12 NVLink3 links to one logical NVSwitch", "[arch][system]") {
    const arch::SystemSpec s = preset("dgx-a100");
    CHECK(s.device_count == 8);
    CHECK(s.device.name == "a100");
    CHECK(s.device.peak_for("fp16") == Approx(312e12).epsilon(0.001));
    CHECK(s.device_types.size() == 1);
    CHECK(device_names(s) ==
          std::vector<std::string>{"gpu.0", "gpu.1", "gpu.2", "gpu.3", "gpu.4", "gpu.5", "gpu.6", "gpu.7"});
    const arch::net::Topology& t = *s.topology;
    REQUIRE(t.switches().size() == 1);
    const arch::net::Vertex& sw = t.vertex(t.switches().front());
    CHECK(sw.name == "nvswitch");
    CHECK(sw.sw.latency == Tick::from_ns(200));
    CHECK(sw.sw.port_bandwidth_Bps == Approx(25e9));
    CHECK_FALSE(sw.sw.in_network_reduction);
    REQUIRE(t.link_count() == 8);
    for (arch::net::LinkId l = 0; l < 8; ++l) {
        const arch::net::Link& k = t.link(l);
        CHECK(t.vertex(k.a).name == "gpu." + std::to_string(l));  // node.* expands in index order
        CHECK(k.b == t.switches().front());
        CHECK(k.props.kind == "nvlink");
        CHECK(k.props.count == 12);
        CHECK(k.props.bandwidth_Bps == Approx(25e9));
        CHECK(k.bandwidth_Bps == Approx(300e9));
        CHECK(k.props.latency == Tick::from_ns(200));
        CHECK(k.props.energy_J_per_byte == Approx(1.3e-12 * 8));  // 1.3 pJ per bit
    }
    const auto r = t.route(*t.find("gpu.0"), *t.find("gpu.7"));
    REQUIRE(r.has_value());
    CHECK(r->hops.size() == 2);
    CHECK(r->latency == Tick::from_ns(600));
    CHECK(r->bottleneck_Bps == Approx(300e9));
}

TEST_CASE("dgx-h100: 18 NVLink4 links per GPU into a switch that reduces in flight", "[arch][system]") {
    const arch::SystemSpec s = preset("dgx-h100");
    CHECK(s.device_count == 8);
    CHECK(s.device.name == "h100");
    const arch::net::Topology& t = *s.topology;
    REQUIRE(t.switches().size() == 1);
    CHECK(t.vertex(t.switches().front()).sw.in_network_reduction);
    REQUIRE(t.link_count() == 8);
    CHECK(t.link(0).props.count == 18);
    CHECK(t.link(0).bandwidth_Bps == Approx(450e9));
}

TEST_CASE("dgx-a100-2node: NVLink inside a node, InfiniBand HDR between them", "[arch][system]") {
    const arch::SystemSpec s = preset("dgx-a100-2node");
    CHECK(s.device_count == 16);
    CHECK(s.nodes.size() == 2);
    CHECK(s.devices[8].name == "dgx1.0");
    CHECK(s.devices[8].node == 1);
    CHECK(s.devices[8].index == 0);
    const arch::net::Topology& t = *s.topology;
    CHECK(t.switches().size() == 3);
    CHECK(t.link_count() == 32);
    const auto inside = t.route(*t.find("dgx0.0"), *t.find("dgx0.5"));
    REQUIRE(inside.has_value());
    CHECK(t.vertex(inside->hops.front().to).name == "nvswitch0");
    CHECK(inside->latency == Tick::from_ns(600));
    CHECK(inside->bottleneck_Bps == Approx(300e9));
    const auto across = t.route(*t.find("dgx0.3"), *t.find("dgx1.6"));
    REQUIRE(across.has_value());
    REQUIRE(across->hops.size() == 2);
    CHECK(t.vertex(across->hops.front().to).name == "ib-leaf");
    CHECK(t.link(across->hops[0].link).props.kind == "infiniband");
    CHECK(across->latency == Tick::from_ns(2700));
    CHECK(across->bottleneck_Bps == Approx(25e9));
}

TEST_CASE("pcie-4gpu mixes device types and keeps each once", "[arch][system]") {
    const arch::SystemSpec s = preset("pcie-4gpu");
    CHECK(s.device_count == 5);
    REQUIRE(s.device_types.size() == 2);
    CHECK(s.device_types[0].name == "a100");
    CHECK(s.device_types[1].name == "xeon-8380");
    CHECK(s.device.name == "a100");
    CHECK(s.devices[4].name == "host.0");
    CHECK(s.type_of(s.devices[4]).family == "cpu");
    CHECK(s.type_of(s.devices[0]).family == "gpu");
    CHECK(s.device_summary() == "4 x a100 + 1 x xeon-8380");
    CHECK(s.nodes[1].host);
    CHECK(s.rank_devices() == 4);  // a plan's ranks: the A100s, not the host
    CHECK(preset("dgx-a100").rank_devices() == 8);
    const auto r = s.topology->route(*s.topology->find("host.0"), *s.topology->find("gpu.2"));
    REQUIRE(r.has_value());
    CHECK(r->latency == Tick::from_ns(1000));  // 2 x 0.45 us + 0.1 us
    CHECK(r->bottleneck_Bps == Approx(31.5e9));
}

TEST_CASE("a device type named by preset, by path and inline is loaded once per file", "[arch][system]") {
    const arch::SystemSpec s = load_test_system("hetero/sys.yaml", R"(system:
  name: hetero
  nodes:
    - {name: a, device: h100, devices: 2}
    - {name: b, device: )" + test::configs_dir() + R"(/devices/h100.yaml}
    - {name: c, device: a100, devices: 3}
    - {name: d, device: small}
  switches:
    - {name: s}
  links:
    - {from: a.*, to: s, bandwidth: 10GB/s}
    - {from: b.0, to: s, bandwidth: 10GB/s}
    - {from: c.*, to: s, bandwidth: 10GB/s}
    - {from: s, to: d.0, bandwidth: 10GB/s}
devices:
  small:
    name: small-npu
    family: npu
    clock: 1GHz
    peak: {int8: 1TOP/s}
    mac_energy: {int8: 0.2pJ}
    memory:
      - {name: sram, capacity: 1MiB, bandwidth: 64GB/s, read_energy: 1pJ/B}
    static_power: 0.1W
    tdp: 1W
)");
    REQUIRE(s.device_types.size() == 3);
    CHECK(s.device.name == "h100");  // no system.device: the first node's type is the default
    CHECK(s.rank_devices() == 7);    // no host: every device runs a rank
    CHECK(s.device_types[1].name == "a100");
    CHECK(s.device_types[2].name == "small-npu");
    CHECK(s.nodes[0].type == 0);
    CHECK(s.nodes[1].type == 0);  // the same file as the preset
    CHECK(s.nodes[2].type == 1);
    CHECK(s.nodes[3].type == 2);
    CHECK(device_names(s) == std::vector<std::string>{"a.0", "a.1", "b.0", "c.0", "c.1", "c.2", "d.0"});
    CHECK(s.topology->link_count() == 7);
    CHECK(s.device_summary() == "3 x h100 + 3 x a100 + 1 x small-npu");
}

TEST_CASE("a node without a device uses the default, merged with the file's device map", "[arch][system]") {
    const arch::SystemSpec s = load_test_system("whatif.yaml", R"(system:
  name: whatif
  device: a100
  nodes:
    - {name: fast, devices: 2}
    - {name: plain, device: a100}
  switches: [{name: s}]
  links:
    - {from: fast.*, to: s, bandwidth: 1GB/s}
    - {from: plain.0, to: s, bandwidth: 1GB/s}
device:
  name: a100-fast
  tdp: 500W
)");
    REQUIRE(s.device_types.size() == 2);
    CHECK(s.device.name == "a100-fast");
    CHECK(s.device.tdp_W == Approx(500));
    CHECK(s.device_types[1].name == "a100");
    CHECK(s.device_types[1].tdp_W == Approx(400));
    CHECK(s.devices[2].type == 1);
}

TEST_CASE("the resolved form of every preset reloads to the same system without the presets",
          "[arch][system]") {
    for (const std::string& name : arch::list_system_presets(test::configs_dir())) {
        INFO(name);
        const arch::SystemSpec s = preset(name);
        const std::string text = cfg::to_yaml(s.resolved);
        const std::string copy = test::write_system_file("resolved/" + name + ".yaml", text);
        const arch::SystemSpec again = arch::load_system(copy, {"/nonexistent"});
        CHECK(cfg::to_yaml(again.resolved) == text);
        CHECK(again.name == s.name);
        CHECK(again.description == s.description);
        CHECK(device_names(again) == device_names(s));
        CHECK(again.type_names() == s.type_names());
        CHECK(topology_text(*again.topology) == topology_text(*s.topology));
        const arch::SystemSpec rebuilt = arch::system_from_resolved(s.resolved);
        CHECK(cfg::to_yaml(rebuilt.resolved) == text);
    }
}

TEST_CASE("a resolved topology has no count, so the nodes and links can be changed", "[arch][system]") {
    const arch::SystemSpec s = preset("dgx-a100");
    CHECK(s.resolved.find("system")->find("count") == nullptr);
    CHECK(s.resolved.find("system")->find("device") == nullptr);
    cfg::Node doc = s.resolved;
    cfg::Node* nodes = doc.find("system")->find("nodes");
    REQUIRE(nodes != nullptr);
    cfg::Node node = nodes->items().front();
    node.set("devices", cfg::Node::make_scalar("4", node.loc(), "system.nodes[0].devices"));
    cfg::Node list = cfg::Node::make_sequence(nodes->loc(), nodes->path());
    list.push_back(node);
    *nodes = list;
    const arch::SystemSpec four = arch::system_from_resolved(doc);
    CHECK(four.device_count == 4);
    CHECK(four.topology->link_count() == 4);

    // The simple form keeps its count; changing it changes the system.
    cfg::Node simple = preset("a100-single").resolved;
    simple.find("system")->set("count", cfg::Node::make_scalar("3", {}, "system.count"));
    CHECK(arch::system_from_resolved(simple).device_count == 3);
}

TEST_CASE("a resolved document reads no files", "[arch][system][errors]") {
    cfg::Node doc = preset("pcie-4gpu").resolved;
    cfg::Node* node = doc.find("system")->find("nodes");
    REQUIRE(node != nullptr);
    cfg::Node nodes = *node;
    cfg::Node host = nodes.items()[1];
    CHECK(host.find("device")->as_string() == "xeon-8380");
    doc.erase("devices");
    const std::string msg = test::user_error_of([&] { arch::system_from_resolved(doc); });
    CHECK_THAT(msg, Contains("system.nodes[1].device"));
    CHECK_THAT(msg, Contains("a resolved system carries every device inline"));
}

TEST_CASE("the system schema describes nodes, switches and links for --help", "[arch][system]") {
    const std::string help = cfg::describe(arch::system_schema());
    for (const char* key :
         {"name", "description", "device", "count", "nodes", "devices", "switches", "latency", "bandwidth",
          "energy", "in_network_reduction", "links", "from", "to", "kind"})
        CHECK_THAT(help, Contains(key));
    CHECK_THAT(help, Contains("infiniband"));
}

TEST_CASE("a device file is a system of one whose resolved form rebuilds unchanged", "[arch][system]") {
    // Overrides rebuild a system from its resolved form; an override that changes nothing must leave the
    // text (and so the config hash) alone.
    const arch::SystemSpec s = arch::load_system(test::configs_dir() + "/devices/h100.yaml");
    CHECK(s.name == "h100");
    CHECK(s.device_count == 1);
    CHECK(s.devices.size() == 1);
    CHECK(s.topology->vertex_count() == 1);
    const arch::SystemSpec rebuilt = arch::system_from_resolved(s.resolved);
    CHECK(cfg::to_yaml(rebuilt.resolved) == cfg::to_yaml(s.resolved));
    CHECK(rebuilt.description.empty());
}
