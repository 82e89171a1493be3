#pragma once
// Systems: devices, grouped into nodes, joined by links and switches (configs/README.md, "A system file").
//
// Contract:
// - A system file has a top-level `system:` map; beside it, an optional partial `device:` map that is
//   deep-merged over `system.device` (what-if studies), and an optional `devices:` map of named,
//   complete device maps that nodes may name instead of a preset or a file.
// - The simple form (`device` and `count`, no `nodes:`) is `count` devices of one type with no links,
//   named device.0 … device.(count-1). With `nodes:`, node `n` with k devices holds n.0 … n.(k-1), and
//   links and switches join them into a topology.
// - load_system validates against system_schema(): unknown keys (with a suggestion), missing keys and
//   wrong units are UserErrors located at file:line:col and key path, and so is every topology error: a
//   node or switch name given twice (or containing '.', '*' or spaces), a node with no devices, a link
//   endpoint that names nothing (with the nearest name), a link from an endpoint to itself, zero or
//   negative bandwidths, negative latencies, `count` that disagrees with the nodes' device total, links
//   or switches without nodes, and a topology in which some device or switch cannot be reached from the
//   first device (when there is more than one device).
// - Each distinct device type is loaded once (one per file, one per `devices:` entry, one for the
//   merged default); device_types[0] is the default type, which `device` repeats for the single-device
//   path: system.device (merged with the `device:` map) when given, else the first node's type.
// - `resolved` is a system document that reloads (load_system, or system_from_resolved) to the same
//   system without any preset or device file: `system:` without `device`, `count` = the total, a node
//   without `device` uses the default type, the complete default device under `device:`, and the other
//   types under `devices:`.
// - The topology's vertices are the devices (vertex i = devices[i]), then the `switches:` entries in file
//   order, then the switches the shapes make (each node's, in node order, then the fabric's leaves and
//   spines); its links are the shapes' links (each node's `topology:`, then the `fabric:`), then the
//   `links:` entries in file order, a `node.*` entry expanded to one link per device of the node in
//   index order. `links:` may name the shapes' switches. A SystemSpec is a plain value; the topology is
//   shared and immutable.
// - Shapes (configs/README.md, "A system file"): a node entry with `count: N` is N nodes <name>0 ...
//   <name>(N-1). `topology:` joins the devices inside every node (switch, fully-connected, ring, torus,
//   pcie-tree, plus an optional PCIe tree for any shape); `fabric:` joins the nodes (fat-tree or
//   rail-optimised leaf/spine), a NIC being a link from its device to its leaf of the NIC's figures.
//   Generated switch names: <node>-switch[p], <node>-pcie<i>, <node>-cpu<s>, leaf<g> (fat-tree),
//   su<g>-rail<r> (rail-optimised), spine<i>; each vertex's Placement (node, rail, torus coords, role)
//   is set. Every error in these keys is a located UserError, like the rest.
#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "arch/device_spec.h"
#include "arch/net/topology.h"
#include "sim/config/node.h"
#include "sim/config/schema.h"

namespace mlsim::arch {

struct SystemNode {
    std::string name;
    std::size_t type = 0;   // index into SystemSpec::device_types
    int64_t devices = 0;    // how many devices the node holds
    std::size_t first = 0;  // index of its first device in SystemSpec::devices
    bool host = false;      // a host CPU that runs no rank (host nodes come after all others)
};

struct SystemDevice {
    std::string name;      // "<node>.<index>"
    std::size_t node = 0;  // index into SystemSpec::nodes
    int64_t index = 0;     // within its node
    std::size_t type = 0;  // index into SystemSpec::device_types
};

struct SystemSpec {
    std::string name;
    std::string description;
    DeviceSpec device;         // the default device type (== device_types[0]): what a single-device run uses
    int64_t device_count = 1;  // == devices.size()
    std::vector<DeviceSpec> device_types;
    std::vector<SystemNode> nodes;      // the simple form has one node, "device"
    std::vector<SystemDevice> devices;  // in node order, then index order
    std::shared_ptr<const net::Topology> topology;
    // The fully resolved document (see the contract); to_yaml(resolved) reloads to the same system.
    cfg::Node resolved;

    // True when the file describes a network (`nodes:` with links or switches); the simple form has none.
    bool has_network() const { return topology && topology->link_count() > 0; }
    const DeviceSpec& type_of(const SystemDevice& d) const { return device_types.at(d.type); }
    // "8 x a100", or "4 x a100 + 1 x xeon-8380" (types in device_types order).
    std::string device_summary() const;
    // The devices a parallel plan's ranks or sharded tables span: all but those of host nodes (`host: true`,
    // listed last: pcie-4gpu's xeon-8380 beside its 4 A100s), so devices 0 to n - 1, rank r on device r.
    int64_t rank_devices() const;
    // Whether device `i` (index into devices) is one of the default type that runs work: not on a host
    // node. What the one-type views (a collective's group, a serving group, the bisection) take.
    bool default_type_worker(std::size_t i) const;
    // Device names of the types, in device_types order.
    std::vector<std::string> type_names() const;
    // Bisection bandwidth, one way, B/s: Topology::max_flow_Bps from the first half of the devices of the
    // default type (device_types[0]) that are not hosts, in device order, to the second half (with an odd
    // count the middle device goes to the second half). For the shapes here, whose devices are numbered node
    // by node and a torus dimension by dimension, that split is a least balanced cut (worked by hand for each
    // preset in tests/arch/test_system_shapes.cpp). 0 with fewer than two such devices.
    double bisection_Bps() const;
};

// Parameter declarations of a `system:` map (nodes, switches and links included).
const cfg::Schema& system_schema();

// Accepts a system file or a device file (then the system is that device, count 1, named after it).
// A preset name in `system.device` or a node's `device` is looked up, in order, in: the file's own
// `devices:` map (nodes only), each of `preset_dirs`, the directory named by the environment variable
// MLSIM_DEVICES_DIR, <dir of the system file>/../devices (the configs/systems -> configs/devices
// layout), ./configs/devices (relative to the working directory). Anything with a '/' or ending in
// .yaml is a path relative to the system file.
SystemSpec load_system(const std::string& path, const std::vector<std::string>& preset_dirs = {});

// Rebuilds a system from a resolved document (SystemSpec::resolved, possibly with values changed at key
// paths, e.g. by sweep overrides): validated again, located at the nodes' own locations; reads no files,
// so every device must be inline (`device:`, `devices:`).
SystemSpec system_from_resolved(const cfg::Node& doc);

// A system of one device (device files given as systems, SCALE-Sim .cfg files): named after the
// device, its resolved document located at `where`.
SystemSpec system_of_one(DeviceSpec device, const cfg::SourceLoc& where);

// Names (file stems, sorted) of the system presets in `configs_dir`/systems/*.yaml. Empty when the
// folder does not exist.
std::vector<std::string> list_system_presets(const std::string& configs_dir);

}  // namespace mlsim::arch
