// Every kind of bad system file is a UserError located at the offending key (file:line:col and key
// path), with the nearest valid name where one exists.
#include <catch2/catch.hpp>
#include <string>

#include "arch/system/system_spec.h"
#include "tests/arch/system_test_helpers.h"

using namespace mlsim;
using Catch::Matchers::Contains;

namespace {

// A valid two-node system; each test changes one line and expects the error there.
std::string base(const std::string& nodes, const std::string& switches, const std::string& links,
                 const std::string& extra = "") {
    return "system:\n"           // 1
           "  name: t\n"         // 2
           "  device: a100\n" +  // 3
           extra +               //
           "  nodes:\n" +
           nodes +  //
           "  switches:\n" + switches + "  links:\n" + links;
}

const std::string two_nodes = "    - {name: a, devices: 2}\n    - {name: b, devices: 2}\n";
const std::string one_switch = "    - {name: sw}\n";
const std::string good_links =
    "    - {from: a.*, to: sw, bandwidth: 10GB/s}\n    - {from: b.*, to: sw, bandwidth: 10GB/s}\n";

// The error of that text, which must point at `line` of the file and name `key_path`.
std::string error_at(const std::string& text, int line, const std::string& key_path) {
    static int n = 0;
    const std::string name = "bad" + std::to_string(++n) + ".yaml";
    const std::string msg = test::system_error(name, text);
    INFO(text);
    INFO(msg);
    CHECK_THAT(msg, Contains(name + ":" + std::to_string(line) + ":"));
    CHECK_THAT(msg, Contains("error: " + key_path + ":"));
    return msg;
}

}  // namespace

TEST_CASE("the base system of the error tests loads", "[arch][system][errors]") {
    const arch::SystemSpec s = test::load_test_system("base.yaml", base(two_nodes, one_switch, good_links));
    CHECK(s.device_count == 4);
    CHECK(s.topology->link_count() == 4);
}

TEST_CASE("an unknown device preset is located at the reference, with a suggestion",
          "[arch][system][errors]") {
    CHECK_THAT(error_at("system:\n  name: t\n  device: a10O\n", 3, "system.device"),
               Contains("did you mean 'a100'"));
    const std::string msg =
        error_at(base("    - {name: a, devices: 2}\n    - {name: b, device: h10, devices: 2}\n", one_switch,
                      good_links),
                 6, "system.nodes[1].device");
    CHECK_THAT(msg, Contains("no device preset 'h10'"));
    CHECK_THAT(msg, Contains("did you mean 'h100'"));
}

TEST_CASE("a link to nowhere names the nearest endpoint", "[arch][system][errors]") {
    SECTION("a misspelt switch") {
        const std::string msg = error_at(base(two_nodes, one_switch,
                                              "    - {from: a.*, to: sw, bandwidth: 10GB/s}\n    - {from: "
                                              "b.*, to: sx, bandwidth: 10GB/s}\n"),
                                         11, "system.links[1].to");
        CHECK_THAT(msg, Contains("link to nowhere: 'sx'"));
        CHECK_THAT(msg, Contains("did you mean 'sw'"));
    }
    SECTION("a misspelt node") {
        const std::string msg = error_at(base(two_nodes, one_switch,
                                              "    - {from: a.*, to: sw, bandwidth: 10GB/s}\n    - {from: "
                                              "c.1, to: sw, bandwidth: 10GB/s}\n"),
                                         11, "system.links[1].from");
        CHECK_THAT(msg, Contains("there is no node 'c'"));
        CHECK_THAT(msg, Contains("did you mean"));
    }
    SECTION("a device index past the node's devices") {
        const std::string msg = error_at(base(two_nodes, one_switch,
                                              "    - {from: a.*, to: sw, bandwidth: 10GB/s}\n    - {from: "
                                              "b.2, to: sw, bandwidth: 10GB/s}\n"),
                                         11, "system.links[1].from");
        CHECK_THAT(msg, Contains("node 'b' has 2 devices (b.0 ... b.1), so 'b.2' names none"));
    }
    SECTION("a node named without a device") {
        const std::string msg = error_at(
            base(
                two_nodes, one_switch,
                "    - {from: a, to: sw, bandwidth: 10GB/s}\n    - {from: b.*, to: sw, bandwidth: 10GB/s}\n"),
            10, "system.links[0].from");
        CHECK_THAT(msg, Contains("'a' is a node"));
        CHECK_THAT(msg, Contains("a.*"));
    }
    SECTION("an index that is not a number") {
        error_at(base(two_nodes, one_switch, "    - {from: a.x, to: sw, bandwidth: 10GB/s}\n"), 10,
                 "system.links[0].from");
    }
}

TEST_CASE("a disconnected topology names a device that cannot be reached", "[arch][system][errors]") {
    SECTION("a node with no links") {
        const std::string msg =
            error_at(base(two_nodes, one_switch, "    - {from: a.*, to: sw, bandwidth: 10GB/s}\n"), 6,
                     "system.nodes[1].name");
        CHECK_THAT(msg, Contains("device 'b.0' cannot be reached from 'a.0'"));
        CHECK_THAT(msg, Contains("2 of 4 devices"));
    }
    SECTION("two islands, each with a switch") {
        const std::string msg = error_at(base(two_nodes, "    - {name: s1}\n    - {name: s2}\n",
                                              "    - {from: a.*, to: s1, bandwidth: 10GB/s}\n    - {from: "
                                              "b.*, to: s2, bandwidth: 10GB/s}\n"),
                                         6, "system.nodes[1].name");
        CHECK_THAT(msg, Contains("device 'b.0' cannot be reached"));
    }
    SECTION("a switch joined to nothing") {
        const std::string msg =
            error_at(base(two_nodes, "    - {name: sw}\n    - {name: spare}\n", good_links), 9,
                     "system.switches[1].name");
        CHECK_THAT(msg, Contains("switch 'spare' is not connected to the devices"));
    }
    SECTION("nodes without any links") {
        const std::string msg =
            error_at("system:\n  name: t\n  device: a100\n  nodes:\n    - {name: a, devices: 2}\n", 5,
                     "system.nodes[0].name");
        CHECK_THAT(msg, Contains("device 'a.1' cannot be reached from 'a.0'"));
        CHECK_THAT(msg, Contains("no `links:`"));
    }
}

TEST_CASE("bandwidths must be positive and latencies not negative", "[arch][system][errors]") {
    CHECK_THAT(error_at(base(two_nodes, one_switch, "    - {from: a.*, to: sw, bandwidth: 0GB/s}\n"), 10,
                        "system.links[0].bandwidth"),
               Contains("must be greater than 0"));
    CHECK_THAT(error_at(base(two_nodes, one_switch, "    - {from: a.*, to: sw, bandwidth: -5GB/s}\n"), 10,
                        "system.links[0].bandwidth"),
               Contains("must not be negative"));
    CHECK_THAT(
        error_at(base(two_nodes, one_switch, "    - {from: a.*, to: sw, bandwidth: 5GB/s, latency: -1ns}\n"),
                 10, "system.links[0].latency"),
        Contains("must not be negative"));
    CHECK_THAT(error_at(base(two_nodes, "    - {name: sw, latency: -1us}\n", good_links), 8,
                        "system.switches[0].latency"),
               Contains("must not be negative"));
    CHECK_THAT(error_at(base(two_nodes, "    - {name: sw, bandwidth: 0GB/s}\n", good_links), 8,
                        "system.switches[0].bandwidth"),
               Contains("must be greater than 0"));
    CHECK_THAT(error_at(base(two_nodes, one_switch, "    - {from: a.*, to: sw, bandwidth: 5GB}\n"), 10,
                        "system.links[0].bandwidth"),
               Contains("expected a bandwidth"));
    CHECK_THAT(
        error_at(base(two_nodes, one_switch, "    - {from: a.*, to: sw, bandwidth: 5GB/s, latency: 2s}\n"),
                 10, "system.links[0].latency"),
        Contains("must be at most 1 s"));
    CHECK_THAT(
        error_at(base(two_nodes, one_switch, "    - {from: a.*, to: sw, bandwidth: 5GB/s, energy: 1pJ}\n"),
                 10, "system.links[0].energy"),
        Contains("expected"));
}

TEST_CASE("node and switch names are unique and usable as endpoints", "[arch][system][errors]") {
    CHECK_THAT(
        error_at(base("    - {name: a, devices: 2}\n    - {name: a, devices: 2}\n", one_switch, good_links),
                 6, "system.nodes[1].name"),
        Contains("the name 'a' is already used by a node at"));
    CHECK_THAT(error_at(base(two_nodes, "    - {name: sw}\n    - {name: sw}\n", good_links), 9,
                        "system.switches[1].name"),
               Contains("already used by a switch"));
    CHECK_THAT(error_at(base(two_nodes, "    - {name: b}\n", good_links), 8, "system.switches[0].name"),
               Contains("the name 'b' is already used by a node"));
    CHECK_THAT(
        error_at(base("    - {name: a.x, devices: 2}\n", one_switch, good_links), 5, "system.nodes[0].name"),
        Contains("may not contain '.'"));
}

TEST_CASE("a link from an endpoint to itself is an error, also through node.*", "[arch][system][errors]") {
    CHECK_THAT(
        error_at(base(two_nodes, one_switch, good_links + "    - {from: sw, to: sw, bandwidth: 1GB/s}\n"), 12,
                 "system.links[2].to"),
        Contains("a link from 'sw' to itself"));
    CHECK_THAT(
        error_at(base(two_nodes, one_switch, good_links + "    - {from: a.1, to: a.1, bandwidth: 1GB/s}\n"),
                 12, "system.links[2].to"),
        Contains("a link from 'a.1' to itself"));
    CHECK_THAT(
        error_at(base(two_nodes, one_switch, good_links + "    - {from: a.*, to: a.1, bandwidth: 1GB/s}\n"),
                 12, "system.links[2].to"),
        Contains("a link from 'a.1' to itself ('a.*' includes 'a.1')"));
    CHECK_THAT(
        error_at(base(two_nodes, one_switch, good_links + "    - {from: a.*, to: b.*, bandwidth: 1GB/s}\n"),
                 12, "system.links[2].to"),
        Contains("only one end of a link may be <node>.*"));
}

TEST_CASE("count must agree with the nodes, and a node holds at least one device", "[arch][system][errors]") {
    CHECK_THAT(error_at(base(two_nodes, one_switch, good_links, "  count: 8\n"), 4, "system.count"),
               Contains("count 8 disagrees with the nodes, which hold 4 devices (a 2, b 2)"));
    CHECK_THAT(
        error_at(base("    - {name: a, devices: 2}\n    - {name: b, devices: 0}\n", one_switch, good_links),
                 6, "system.nodes[1].devices"),
        Contains("must be at least 1"));
    CHECK_THAT(error_at("system:\n  name: t\n  device: a100\n  count: 0\n", 4, "system.count"),
               Contains("must be at least 1"));
    CHECK_THAT(error_at("system:\n  name: t\n  device: a100\n  nodes:\n", 4, "system.nodes"),
               Contains("needs at least one node"));
}

TEST_CASE("links and switches need nodes; keys are checked with suggestions", "[arch][system][errors]") {
    CHECK_THAT(error_at("system:\n  name: t\n  device: a100\n  count: 2\n  links:\n    - {from: x, to: y, "
                        "bandwidth: 1GB/s}\n",
                        5, "system.links"),
               Contains("joins the devices of `nodes:`"));
    CHECK_THAT(error_at(base(two_nodes, one_switch, "    - {from: a.*, to: sw, bandwith: 10GB/s}\n"), 10,
                        "system.links[0].bandwith"),
               Contains("did you mean 'bandwidth'"));
    CHECK_THAT(
        error_at(base(two_nodes, one_switch, "    - {from: a.*, to: sw, kind: nvlnk, bandwidth: 10GB/s}\n"),
                 10, "system.links[0].kind"),
        Contains("did you mean 'nvlink'"));
    CHECK_THAT(error_at(base(two_nodes, one_switch, good_links) + "devicess:\n  x: {}\n", 12, "devicess"),
               Contains("did you mean 'devices'"));
}

TEST_CASE("a node with no device and no default is located at the node", "[arch][system][errors]") {
    const std::string msg =
        error_at("system:\n  name: t\n  nodes:\n    - {name: a, devices: 2}\n", 4, "system.nodes[0]");
    CHECK_THAT(msg, Contains("names no device"));
}

TEST_CASE("host nodes come after the nodes that run ranks, and not every node is a host",
          "[arch][system][errors]") {
    // Rank r runs on device r, so a host (which runs none) listed first would shift the ranks onto it.
    const std::string first =
        error_at(base("    - {name: a, devices: 1, host: true}\n    - {name: b, devices: 2}\n", one_switch,
                      good_links),
                 6, "system.nodes[1].name");
    CHECK_THAT(first, Contains("comes after the host node 'a': list host nodes last"));
    const std::string all =
        error_at(base("    - {name: a, devices: 1, host: true}\n    - {name: b, devices: 2, host: true}\n",
                      one_switch, good_links),
                 5, "system.nodes[0].name");
    CHECK_THAT(all, Contains("every node is a host"));
    CHECK_THAT(error_at(base("    - {name: a, devices: 2}\n    - {name: b, devices: 2, host: yes please}\n",
                             one_switch, good_links),
                        6, "system.nodes[1].host"),
               Contains("true"));
    const arch::SystemSpec s = test::load_test_system(
        "host-last.yaml", base("    - {name: a, devices: 2}\n    - {name: b, devices: 2, host: true}\n",
                               one_switch, good_links));
    CHECK(s.device_count == 4);
    CHECK(s.rank_devices() == 2);
    // The host's devices are of the default type here, yet take no part in the one-type views: the bisection
    // cuts a.0 from a.1 (one 10 GB/s link), not {a.0, a.1} from the host's {b.0, b.1} (two links).
    CHECK(s.default_type_worker(0));
    CHECK(s.default_type_worker(1));
    CHECK_FALSE(s.default_type_worker(2));
    CHECK_FALSE(s.default_type_worker(3));
    CHECK(s.bisection_Bps() == Approx(10e9));
}

TEST_CASE("a link's payload efficiency below a hundredth is refused as a slip", "[arch][system][errors]") {
    // Real protocols carry 0.6-0.97 of the line rate; 1e-9 would make a 10 GB/s link a 10 B/s one.
    const std::string msg = error_at(base(two_nodes, one_switch,
                                          "    - {from: a.*, to: sw, bandwidth: 10GB/s, efficiency: 1e-9}\n"
                                          "    - {from: b.*, to: sw, bandwidth: 10GB/s}\n"),
                                     10, "system.links[0].efficiency");
    CHECK_THAT(msg, Contains("must be at least 0.01"));
    const arch::SystemSpec s = test::load_test_system(
        "low-eff.yaml", base(two_nodes, one_switch,
                             "    - {from: a.*, to: sw, bandwidth: 10GB/s, efficiency: 0.01}\n"
                             "    - {from: b.*, to: sw, bandwidth: 10GB/s}\n"));
    CHECK(s.topology->link(0).props.efficiency == Approx(0.01));
}
