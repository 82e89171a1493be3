#include "arch/system/system_spec.h"

#include <fmt/format.h>

#include <algorithm>
#include <cctype>
#include <cstdlib>
#include <filesystem>
#include <map>
#include <optional>
#include <utility>

#include "sim/config/limits.h"
#include "sim/config/loader.h"
#include "sim/config/messages.h"
#include "sim/config/units.h"
#include "sim/core/check.h"

namespace mlsim::arch {

namespace fs = std::filesystem;
using cfg::Dim;
using cfg::Param;
using cfg::PType;

using cfg::did_you_mean;
using cfg::fail_at;
using cfg::join;

namespace {

// Far more devices than any system built; keeps the expanded device and link lists in memory.
constexpr int64_t max_devices = limits::max_system_devices;
// A latency beyond this is a unit slip, and keeps sums of latencies along any route inside 64-bit ps.
constexpr double max_latency_s = limits::quantity_range(Dim::time).max;
// The name of the one node of the simple form (`device` and `count`, no `nodes:`).
constexpr const char* simple_node_name = "device";

const std::vector<std::string>& link_kinds() {
    static const std::vector<std::string> kinds = {"nvlink", "pcie", "infiniband", "ethernet",
                                                   "cxl",    "ici",  "other"};
    return kinds;
}

bool ends_with(std::string_view s, std::string_view suffix) {
    return s.size() >= suffix.size() && s.substr(s.size() - suffix.size()) == suffix;
}

std::string parent_dir(const std::string& path) {
    fs::path p = fs::path(path).parent_path();
    return p.empty() ? std::string(".") : p.string();
}

bool file_exists(const fs::path& p) {
    std::error_code ec;
    return fs::is_regular_file(p, ec);
}

Param optional_no_default(std::string name, PType type, std::string doc) {
    Param p;
    p.name = std::move(name);
    p.type = type;
    p.doc = std::move(doc);
    return p;
}

Param list_param(std::string name, const cfg::Schema& sub, std::string doc) {
    Param p = optional_no_default(std::move(name), PType::list, std::move(doc));
    p.sub = &sub;
    return p;
}

Param latency_param(std::string doc) {
    return cfg::quantity("latency", Dim::time, std::string("0ns"), std::move(doc), false);
}

Param energy_param(std::string doc) {
    return cfg::quantity("energy", Dim::energy_per_byte, std::string("0pJ/b"), std::move(doc), false);
}

// A share in (0, 1] (issue 12: protocol efficiencies of links and switches).
// A share of a link's or a switch's line rate that carries payload, from 0.01 to 1: real protocols carry
// 0.6-0.97 of it (PCIe with small packets at the low end, InfiniBand at the high); a figure below a hundredth
// is a typing slip (1e-9 made a 25 GB/s link a 25 B/s one), not a link.
Param share_param(std::string name, std::string doc) {
    Param p = cfg::optional(std::move(name), PType::real, "1", std::move(doc));
    p.positive = true;
    p.min = 0.01;
    p.max = 1;
    return p;
}

Param link_efficiency_param() {
    return share_param("efficiency",
                       "payload bytes per byte of line rate (packet headers, CRC, flow control): the "
                       "network model moves payload at bandwidth x efficiency; 1 = every byte is payload");
}

Param reduction_efficiency_param() {
    return share_param("reduction_efficiency",
                       "with in_network_reduction: the switch reduces and multicasts at this share of "
                       "a port's payload rate (NVLink SHARP: 0.85 on NVSwitch gen3, NCCL)");
}

const cfg::Schema& node_schema() {
    static const cfg::Schema schema = [] {
        cfg::Schema s;
        s.name = "system.nodes";
        s.doc = "a node: devices of one type; node n with k devices holds n.0 ... n.(k-1)";
        s.params.push_back(
            cfg::required("name", PType::string, "node name (no '.', '*' or spaces), e.g. dgx0"));
        s.params.push_back(optional_no_default("device", PType::string,
                                               "device type: a key of the file's `devices:` map, a preset "
                                               "name or a path; default system.device"));
        Param devices = cfg::optional("devices", PType::integer, "1", "how many devices of that type");
        devices.min = 1;
        devices.max = static_cast<double>(max_devices);
        s.params.push_back(devices);
        Param count =
            optional_no_default("count", PType::integer,
                                "that many nodes alike, named <name>0 ... <name>(count-1); default one, "
                                "named <name>");
        count.min = 1;
        count.max = static_cast<double>(max_devices);
        s.params.push_back(count);
        s.params.push_back(cfg::optional("host", PType::boolean, "false",
                                         "a host (a CPU that stages data) that runs no rank: a parallel plan "
                                         "or sharded tables span the other devices; host nodes come last"));
        return s;
    }();
    return schema;
}

const cfg::Schema& switch_schema() {
    static const cfg::Schema schema = [] {
        cfg::Schema s;
        s.name = "system.switches";
        s.doc = "a switch: links to it join the devices behind it";
        s.params.push_back(cfg::required("name", PType::string, "switch name (no '.', '*' or spaces)"));
        s.params.push_back(
            cfg::optional("kind", PType::string, "", "what it is, for people, e.g. NVSwitch gen2"));
        s.params.push_back(latency_param("to cross the switch, port to port"));
        Param bw =
            optional_no_default("bandwidth", PType::quantity,
                                "per port, per direction; caps each link plugged into it; default no cap");
        bw.dim = Dim::bandwidth;
        bw.positive = true;
        s.params.push_back(bw);
        s.params.push_back(energy_param("per bit (pJ/b) or byte (pJ/B) switched; 0 = not modelled"));
        s.params.push_back(cfg::optional("in_network_reduction", PType::boolean, "false",
                                         "reduces data in flight, e.g. NVLink SHARP"));
        s.params.push_back(reduction_efficiency_param());
        return s;
    }();
    return schema;
}

const cfg::Schema& link_schema() {
    static const cfg::Schema schema = [] {
        cfg::Schema s;
        s.name = "system.links";
        s.doc =
            "a full-duplex link between two endpoints: a switch, a device node.i, or node.* (one link "
            "from each device of the node)";
        s.params.push_back(cfg::required("from", PType::string, "one endpoint: switch, node.i or node.*"));
        s.params.push_back(
            cfg::required("to", PType::string, "the other endpoint (the order does not matter)"));
        Param kind =
            cfg::optional("kind", PType::choice, "other", "link technology: " + join(link_kinds(), " | "));
        kind.choices = link_kinds();
        s.params.push_back(kind);
        s.params.push_back(cfg::quantity("bandwidth", Dim::bandwidth, std::nullopt,
                                         "per link, per direction (full duplex)"));
        s.params.push_back(latency_param("one way, per link"));
        s.params.push_back(energy_param("per bit (pJ/b) or byte (pJ/B) carried; 0 = not modelled"));
        s.params.push_back(link_efficiency_param());
        Param count = cfg::optional("count", PType::integer, "1", "parallel links, e.g. 12 NVLinks");
        count.min = 1;
        count.max = static_cast<double>(limits::max_parallel_links);
        s.params.push_back(count);
        return s;
    }();
    return schema;
}

// The figures of one generated link (the shapes of `topology:` and `fabric:`).
const cfg::Schema& link_props_schema() {
    static const cfg::Schema schema = [] {
        cfg::Schema s;
        s.name = "link";
        s.doc = "the figures of each generated link";
        Param kind =
            cfg::optional("kind", PType::choice, "other", "link technology: " + join(link_kinds(), " | "));
        kind.choices = link_kinds();
        s.params.push_back(kind);
        s.params.push_back(cfg::quantity("bandwidth", Dim::bandwidth, std::nullopt,
                                         "per link, per direction (full duplex)"));
        s.params.push_back(latency_param("one way, per link"));
        s.params.push_back(energy_param("per bit (pJ/b) or byte (pJ/B) carried; 0 = not modelled"));
        s.params.push_back(link_efficiency_param());
        Param count = optional_no_default("count", PType::integer, "parallel links; default 1");
        count.min = 1;
        count.max = static_cast<double>(limits::max_parallel_links);
        s.params.push_back(count);
        return s;
    }();
    return schema;
}

void add_switch_props(cfg::Schema& s) {
    s.params.push_back(cfg::optional("kind", PType::string, "", "what it is, for people"));
    s.params.push_back(latency_param("to cross the switch, port to port"));
    Param bw = optional_no_default("bandwidth", PType::quantity,
                                   "per port, per direction; caps each link plugged into it; default no cap");
    bw.dim = Dim::bandwidth;
    bw.positive = true;
    s.params.push_back(bw);
    s.params.push_back(energy_param("per bit (pJ/b) or byte (pJ/B) switched; 0 = not modelled"));
    s.params.push_back(cfg::optional("in_network_reduction", PType::boolean, "false",
                                     "reduces data in flight, e.g. NVLink SHARP"));
    s.params.push_back(reduction_efficiency_param());
}

const cfg::Schema& switch_props_schema() {
    static const cfg::Schema schema = [] {
        cfg::Schema s;
        s.name = "switch";
        s.doc = "the figures of each generated switch";
        add_switch_props(s);
        return s;
    }();
    return schema;
}

const cfg::Schema& node_switch_schema() {
    static const cfg::Schema schema = [] {
        cfg::Schema s;
        s.name = "system.topology.switch";
        s.doc = "shape switch: the switch inside each node that every device links to";
        add_switch_props(s);
        Param planes = cfg::optional("planes", PType::integer, "1",
                                     "separate switches, each taking count/planes of every device's links "
                                     "(1 = one logical switch)");
        planes.min = 1;
        planes.max = 64;
        s.params.push_back(planes);
        return s;
    }();
    return schema;
}

const cfg::Schema& spine_schema() {
    static const cfg::Schema schema = [] {
        cfg::Schema s;
        s.name = "system.fabric.spine";
        s.doc = "the spine switches; every leaf links to every spine";
        add_switch_props(s);
        Param count = cfg::optional("count", PType::integer, "0", "spine switches (0 = no spine layer)");
        count.min = 0;
        count.max = 4096;
        s.params.push_back(count);
        return s;
    }();
    return schema;
}

const cfg::Schema& pcie_schema() {
    static const cfg::Schema schema = [] {
        cfg::Schema s;
        s.name = "system.topology.pcie";
        s.doc = "a PCIe tree in each node: devices - PCIe switches - CPU root complexes - socket links";
        Param sockets = cfg::optional("sockets", PType::integer, "1", "CPU sockets (root complexes)");
        sockets.min = 1;
        sockets.max = 64;
        s.params.push_back(sockets);
        Param sw = cfg::optional("switches_per_socket", PType::integer, "1",
                                 "PCIe switches under each root complex (0 = devices on the root complex)");
        sw.min = 0;
        sw.max = 1024;
        s.params.push_back(sw);
        Param link = cfg::required("link", PType::map, "device to its PCIe switch (or root complex)");
        link.sub = &link_props_schema();
        s.params.push_back(link);
        Param up = optional_no_default("uplink", PType::map, "PCIe switch to root complex; default `link`");
        up.sub = &link_props_schema();
        s.params.push_back(up);
        Param psw = optional_no_default("switch", PType::map, "each PCIe switch");
        psw.sub = &switch_props_schema();
        s.params.push_back(psw);
        Param rc = optional_no_default("root_complex", PType::map, "each CPU root complex (host bridge)");
        rc.sub = &switch_props_schema();
        s.params.push_back(rc);
        Param sock = optional_no_default("socket_link", PType::map,
                                         "between every two sockets (UPI, xGMI); needed with sockets > 1");
        sock.sub = &link_props_schema();
        s.params.push_back(sock);
        return s;
    }();
    return schema;
}

const std::vector<std::string>& topology_shapes() {
    static const std::vector<std::string> shapes = {"switch", "fully-connected", "ring", "torus",
                                                    "pcie-tree"};
    return shapes;
}

const std::vector<std::string>& fabric_shapes() {
    static const std::vector<std::string> shapes = {"fat-tree", "rail-optimised"};
    return shapes;
}

const cfg::Schema& topology_schema() {
    static const cfg::Schema schema = [] {
        cfg::Schema s;
        s.name = "system.topology";
        s.doc = "the shape that joins the devices inside each node";
        Param shape = cfg::required("shape", PType::choice, join(topology_shapes(), " | "));
        shape.choices = topology_shapes();
        s.params.push_back(shape);
        s.params.push_back(optional_no_default("dims", PType::string,
                                               "torus: sizes, first dimension first, e.g. 16x16x16; their "
                                               "product is the devices of each node"));
        s.params.push_back(optional_no_default("wrap", PType::boolean,
                                               "torus: wrap-around links (default true; false = a mesh)"));
        Param link = optional_no_default("link", PType::map,
                                         "each device-to-device (torus, ring, fully-connected) or "
                                         "device-to-switch (switch) link");
        link.sub = &link_props_schema();
        s.params.push_back(link);
        Param sw = optional_no_default("switch", PType::map, "shape switch: the switch in each node");
        sw.sub = &node_switch_schema();
        s.params.push_back(sw);
        Param pcie = optional_no_default("pcie", PType::map,
                                         "a PCIe tree in each node, with any shape (the only links of "
                                         "pcie-tree)");
        pcie.sub = &pcie_schema();
        s.params.push_back(pcie);
        return s;
    }();
    return schema;
}

const cfg::Schema& fabric_schema() {
    static const cfg::Schema schema = [] {
        cfg::Schema s;
        s.name = "system.fabric";
        s.doc = "the network across nodes: NICs, leaf switches and spines";
        Param shape = cfg::required("shape", PType::choice, join(fabric_shapes(), " | "));
        shape.choices = fabric_shapes();
        s.params.push_back(shape);
        Param nics = optional_no_default("nics_per_node", PType::integer,
                                         "NICs of each node, a multiple of its devices (each device gets "
                                         "nics/devices); default one per device");
        nics.min = 1;
        nics.max = static_cast<double>(limits::max_parallel_links);
        s.params.push_back(nics);
        Param nic = cfg::required(
            "nic", PType::map, "each NIC: a link from its device to its leaf switch, of the NIC's figures");
        nic.sub = &link_props_schema();
        s.params.push_back(nic);
        Param per_su = optional_no_default("nodes_per_su", PType::integer,
                                           "rail-optimised: nodes per scalable unit (one leaf per rail in "
                                           "each); default all nodes");
        per_su.min = 1;
        s.params.push_back(per_su);
        Param per_leaf = optional_no_default("nodes_per_leaf", PType::integer,
                                             "fat-tree: nodes whose NICs share a leaf; default all nodes");
        per_leaf.min = 1;
        s.params.push_back(per_leaf);
        Param leaf = optional_no_default("leaf", PType::map, "each leaf switch");
        leaf.sub = &switch_props_schema();
        s.params.push_back(leaf);
        Param spine = optional_no_default("spine", PType::map, "the spine switches");
        spine.sub = &spine_schema();
        s.params.push_back(spine);
        Param up = optional_no_default("uplink", PType::map,
                                       "each leaf-to-spine link; default the NIC's figures; `count` per "
                                       "leaf-spine pair, default from oversubscription");
        up.sub = &link_props_schema();
        s.params.push_back(up);
        Param over = optional_no_default("oversubscription", PType::real,
                                         "down:up bandwidth at each leaf (default 1, non-blocking); "
                                         "sets the uplinks per leaf-spine pair");
        over.positive = true;
        over.min = 0;
        over.max = 1e6;
        s.params.push_back(over);
        return s;
    }();
    return schema;
}

// The top-level keys of a system document.
const std::vector<std::string>& top_level_keys() {
    static const std::vector<std::string> keys = {"system", "device", "devices"};
    return keys;
}

void check_top_level(const cfg::Node& doc) {
    if (!doc.is_map())
        cfg::fail(doc.loc(), "",
                  "expected a map with a top-level `device:` or `system:` key, got " +
                      std::string(doc.kind_name()));
    for (const auto& [key, value] : doc.entries()) {
        if (std::find(top_level_keys().begin(), top_level_keys().end(), key) == top_level_keys().end())
            fail_at(value, "unknown top-level key" + did_you_mean(key, top_level_keys()) +
                               "; expected `system:`, and beside it `device:` (merged over system.device) or "
                               "`devices:` (named device types)");
        if (!value.is_map()) fail_at(value, "expected a map, got " + std::string(value.kind_name()));
    }
}

DeviceSpec validate_and_build(const cfg::Node& device_map) {
    return device_from_node(cfg::validate(device_map, device_schema()));
}

std::vector<std::string> preset_search_dirs(const std::string& system_file,
                                            const std::vector<std::string>& extra) {
    std::vector<std::string> dirs = extra;
    if (const char* env = std::getenv("MLSIM_DEVICES_DIR"); env && *env) dirs.emplace_back(env);
    const std::string here = parent_dir(system_file);
    dirs.push_back((fs::path(here) / ".." / "devices").lexically_normal().string());
    dirs.emplace_back("configs/devices");
    return dirs;
}

// Names for nodes and switches double as link endpoints: node.i, node.*, switch.
void check_name(const cfg::Node& name_node, const std::string& what) {
    const std::string name = name_node.as_string();
    if (name.empty()) fail_at(name_node, "a " + what + " needs a name");
    for (char c : name)
        if (c == '.' || c == '*' || std::isspace(static_cast<unsigned char>(c)))
            fail_at(name_node, fmt::format("a {} name may not contain '.', '*' or spaces (devices are named "
                                           "<node>.<index>, and <node>.* means each device of a node); found "
                                           "\"{}\"",
                                           what, name));
}

// Builds a SystemSpec from a parsed system document (a file, or a resolved document when `file` is
// empty, which reads nothing from disk).
class Builder {
  public:
    Builder(const cfg::Node& doc, std::string file, std::vector<std::string> preset_dirs)
        : m_doc(doc), m_file(std::move(file)), m_preset_dirs(std::move(preset_dirs)) {}

    SystemSpec build();

  private:
    struct DeviceType {
        std::string identity;  // "default", "file:<path>" or "inline:<key>"
        DeviceSpec spec;
    };

    struct Reference {
        std::string identity;  // "file:<canonical path>" or "inline:<key>"
        std::string target;    // the file, or the key of `devices:`
        const cfg::Node* where = nullptr;
    };

    struct Endpoint {
        std::vector<net::VertexId> vertices;  // one, or each device of a node for node.*
        bool each = false;
    };

    bool reads_files() const { return !m_file.empty(); }
    std::size_t add_type(std::string identity, DeviceSpec spec);
    Reference resolve(const cfg::Node& ref) const;
    cfg::Node raw_device(const Reference& r) const;
    std::size_t type_of(const Reference& r);
    void load_inline_types(const cfg::Node& devices_map);
    Endpoint endpoint(const cfg::Node& ref) const;
    void claim_name(const cfg::Node& name_node, const std::string& what);
    // A name made by the loader (a counted node, a shape's switch), claimed at `where`.
    void claim_generated(const std::string& name, const std::string& what, const cfg::Node& where);
    void build_shapes(const cfg::Reader& sr, bool simple);
    void build_node_shape(const cfg::Reader& tr, const SystemNode& node, std::size_t node_index);
    void build_fabric(const cfg::Reader& fr);
    net::VertexId add_shape_switch(const std::string& name, const cfg::Reader* props, const std::string& role,
                                   int64_t node, int64_t rail, const cfg::Node& where);
    // A link of the figures of `props`; `count` parallel links, default props' count (else 1).
    void add_shape_link(net::VertexId a, net::VertexId b, const cfg::Reader& props,
                        std::optional<int64_t> count = std::nullopt);
    void count_link(const cfg::Node& where, int64_t more);
    void check_connected(const cfg::Reader& sr) const;
    cfg::Node resolved_document(const cfg::Node& system_map) const;

    const cfg::Node& m_doc;
    std::string m_file;
    std::vector<std::string> m_preset_dirs;
    SystemSpec m_out;
    std::vector<DeviceType> m_types;
    std::map<std::string, cfg::Node> m_inline;  // validated `devices:` entries by key
    std::map<std::string, std::pair<std::string, cfg::SourceLoc>> m_names;  // name -> (what, where)
    std::vector<const cfg::Node*> m_node_names;    // each node's `name` value, for errors
    std::vector<const cfg::Node*> m_switch_names;  // the `switches:` entries' names, then shape switches'
    // A fabric of more than one leaf without spines (build_fabric), for check_connected's message.
    struct Spineless {
        const cfg::Node* shape = nullptr;
        std::vector<net::VertexId> leaves;
        bool rails = false;  // rail-optimised: a node's devices are on several leaves of its unit
    };
    std::optional<Spineless> m_spineless;
    std::vector<std::size_t> m_entry_first_node;  // per `nodes:` entry, its first node
    int64_t m_shape_links = 0;
    bool m_simple = false;  // the simple form: one node of `count` devices
    std::optional<std::size_t> m_default_type;
    net::Topology m_topology;
};

std::size_t Builder::add_type(std::string identity, DeviceSpec spec) {
    for (std::size_t i = 0; i < m_types.size(); ++i)
        if (m_types[i].identity == identity) return i;
    m_types.push_back(DeviceType{std::move(identity), std::move(spec)});
    return m_types.size() - 1;
}

void Builder::load_inline_types(const cfg::Node& devices_map) {
    for (const auto& [key, value] : devices_map.entries()) {
        if (key.empty()) fail_at(value, "a device type in `devices:` needs a name");
        cfg::Node validated = cfg::validate(value, device_schema());
        (void)device_from_node(validated);  // consistency errors now, even for a type no node uses
        m_inline.emplace(key, std::move(validated));
    }
}

// A node's `device` or system.device: a key of `devices:`, else a preset name or a path. Only the
// identity is worked out here; the device is read once per identity (raw_device).
Builder::Reference Builder::resolve(const cfg::Node& ref_node) const {
    const std::string ref = ref_node.as_string();
    if (m_inline.count(ref)) return Reference{"inline:" + ref, ref, &ref_node};
    std::vector<std::string> inline_keys;
    for (const auto& [key, value] : m_inline) inline_keys.push_back(key);
    if (!reads_files())
        fail_at(ref_node, "names no device type of this document's `devices:` map" +
                              did_you_mean(ref, inline_keys) +
                              "; a resolved system carries every device inline");
    if (const std::string near = cfg::nearest(ref, inline_keys); !near.empty())
        fail_at(ref_node, "no device type '" + ref + "' in this file's `devices:` (did you mean '" + near +
                              "'?), nor a preset of that name");
    std::string file;
    if (ref.find('/') != std::string::npos || ends_with(ref, ".yaml") || ends_with(ref, ".yml")) {
        fs::path p(ref);
        if (p.is_relative()) p = fs::path(parent_dir(m_file)) / p;
        file = p.lexically_normal().string();
        if (!file_exists(file))
            fail_at(ref_node, "no device file '" + file + "' (relative to the system file)");
    } else {
        file = find_device_preset(ref, preset_search_dirs(m_file, m_preset_dirs), ref_node.loc(),
                                  ref_node.path());
    }
    std::error_code ec;
    const fs::path canonical = fs::weakly_canonical(file, ec);
    return Reference{"file:" + (ec ? file : canonical.string()), file, &ref_node};
}

// The unvalidated `device` map a reference names.
cfg::Node Builder::raw_device(const Reference& r) const {
    if (r.identity.rfind("inline:", 0) == 0) return m_inline.at(r.target);
    const cfg::Node doc = cfg::load_file(r.target);
    const cfg::Node* dev = doc.is_map() ? doc.find("device") : nullptr;
    if (!dev || !dev->is_map() || doc.entries().size() != 1)
        fail_at(*r.where,
                "'" + r.target + "' is not a device file (expected only a top-level `device:` map)");
    return *dev;
}

std::size_t Builder::type_of(const Reference& r) {
    for (std::size_t i = 0; i < m_types.size(); ++i)
        if (m_types[i].identity == r.identity) return i;
    return add_type(r.identity, validate_and_build(raw_device(r)));
}

void Builder::claim_name(const cfg::Node& name_node, const std::string& what) {
    check_name(name_node, what);
    const std::string name = name_node.as_string();
    auto [it, fresh] = m_names.emplace(name, std::make_pair(what, name_node.loc()));
    if (!fresh)
        fail_at(name_node,
                fmt::format("the name '{}' is already used by a {} at {}; node and switch names must "
                            "be unique",
                            name, it->second.first, it->second.second.str()));
}

void Builder::claim_generated(const std::string& name, const std::string& what, const cfg::Node& where) {
    auto [it, fresh] = m_names.emplace(name, std::make_pair(what, where.loc()));
    if (!fresh)
        fail_at(where, fmt::format("makes a {} named '{}', a name already used by a {} at {}; node and "
                                   "switch names must be unique",
                                   what, name, it->second.first, it->second.second.str()));
}

// The most links (and switches) the shapes may generate: 170 x the 4,096-chip torus, and ~0.5 GB at most.
constexpr int64_t max_shape_links = int64_t{1} << 21;

void Builder::count_link(const cfg::Node& where, int64_t more) {
    if (more > max_shape_links - m_shape_links)
        fail_at(where, fmt::format("makes more than {} links and switches; at most that many are supported",
                                   max_shape_links));
    m_shape_links += more;
}

net::VertexId Builder::add_shape_switch(const std::string& name, const cfg::Reader* props,
                                        const std::string& role, int64_t node, int64_t rail,
                                        const cfg::Node& where) {
    claim_generated(name, "switch", where);
    net::SwitchProps p;
    if (props) {
        p.kind = props->str("kind");
        const double lat = props->quantity("latency");
        if (lat > max_latency_s)
            fail_at(props->at("latency"),
                    fmt::format("must be at most {} (a switch latency, not a transfer time)",
                                cfg::format_quantity(max_latency_s, Dim::time)));
        p.latency = Tick::from_seconds(lat);
        p.port_bandwidth_Bps = props->has("bandwidth") ? props->quantity("bandwidth") : 0;
        p.energy_J_per_byte = props->quantity("energy");
        p.in_network_reduction = props->boolean("in_network_reduction");
        p.reduction_efficiency = props->real("reduction_efficiency");
    }
    const net::VertexId v = m_topology.add_switch(name, std::move(p));
    m_topology.set_placement(v, net::Placement{node, rail, {}, role});
    m_switch_names.push_back(&where);
    return v;
}

int64_t count_of(const cfg::Reader& l) { return l.has("count") ? l.integer("count") : 1; }

void Builder::add_shape_link(net::VertexId a, net::VertexId b, const cfg::Reader& l,
                             std::optional<int64_t> count) {
    net::LinkProps p;
    p.kind = l.str("kind");
    p.bandwidth_Bps = l.quantity("bandwidth");
    if (!(p.bandwidth_Bps > 0)) fail_at(l.at("bandwidth"), "must be greater than zero");
    const double lat = l.quantity("latency");
    if (lat > max_latency_s)
        fail_at(l.at("latency"), fmt::format("must be at most {} (a link latency, not a transfer time)",
                                             cfg::format_quantity(max_latency_s, Dim::time)));
    p.latency = Tick::from_seconds(lat);
    p.energy_J_per_byte = l.quantity("energy");
    p.efficiency = l.real("efficiency");
    p.count = count ? *count : count_of(l);
    if (p.count > limits::max_parallel_links)
        fail_at(l.node(), fmt::format("makes {} parallel links between two ends; at most {}", p.count,
                                      limits::max_parallel_links));
    m_topology.add_link(a, b, p);
}

// "16x16x16" -> {16, 16, 16}; located errors.
std::vector<int64_t> parse_dims(const cfg::Node& where) {
    const std::string text = where.as_string();
    std::vector<int64_t> dims;
    std::size_t start = 0;
    while (true) {
        const std::size_t x = text.find_first_of("xX", start);
        const std::string part = text.substr(start, x == std::string::npos ? std::string::npos : x - start);
        const bool digits = !part.empty() && part.size() <= 7 &&
                            std::all_of(part.begin(), part.end(),
                                        [](char c) { return std::isdigit(static_cast<unsigned char>(c)); });
        if (!digits)
            fail_at(where, fmt::format("expected sizes joined by 'x', first dimension first (e.g. 16x16x16 "
                                       "or 8x8), found \"{}\"",
                                       text));
        dims.push_back(std::stoll(part));
        if (dims.back() < 1) fail_at(where, "every dimension must be at least 1");
        if (x == std::string::npos) break;
        start = x + 1;
    }
    if (dims.size() > 4) fail_at(where, fmt::format("at most 4 dimensions, found {}", dims.size()));
    return dims;
}

void Builder::build_shapes(const cfg::Reader& sr, bool simple) {
    if (sr.has("topology")) {
        const cfg::Reader tr = sr.sub("topology");
        for (std::size_t n = 0; n < m_out.nodes.size(); ++n) build_node_shape(tr, m_out.nodes[n], n);
    }
    if (sr.has("fabric")) {
        if (simple)
            fail_at(sr.at("fabric"),
                    "`fabric:` joins nodes; list them under `nodes:` (e.g. `- {name: dgx, "
                    "devices: 8, count: 4}`)");
        build_fabric(sr.sub("fabric"));
    }
    for (std::size_t d = 0; d < m_out.devices.size(); ++d) {
        net::Placement p = m_topology.vertex(d).place;
        p.node = static_cast<int64_t>(m_out.devices[d].node);
        m_topology.set_placement(d, std::move(p));
    }
}

void Builder::build_node_shape(const cfg::Reader& tr, const SystemNode& node, std::size_t node_index) {
    const std::string shape = tr.str("shape");
    const int64_t k = node.devices;
    const auto dev = [&](int64_t i) {
        return static_cast<net::VertexId>(node.first + static_cast<std::size_t>(i));
    };
    const int64_t ni = static_cast<int64_t>(node_index);
    if (tr.has("dims") && shape != "torus")
        fail_at(tr.at("dims"), "`dims` belongs to shape torus (this topology is " + shape + ")");
    if (tr.has("wrap") && shape != "torus")
        fail_at(tr.at("wrap"), "`wrap` belongs to shape torus (this topology is " + shape + ")");
    if (shape == "pcie-tree") {
        if (!tr.has("pcie"))
            fail_at(tr.at("shape"),
                    "shape pcie-tree needs a `pcie:` map (sockets, switches_per_socket, link, ...)");
        if (tr.has("link"))
            fail_at(tr.at("link"),
                    "shape pcie-tree takes its links from `pcie:`; `link` joins devices of the "
                    "other shapes");
    } else if (!tr.has("link")) {
        fail_at(tr.at("shape"), "shape " + shape + " needs a `link:` map (kind, bandwidth, latency, count)");
    }
    if (shape == "switch") {
        const cfg::Reader sw = tr.sub("switch");
        const int64_t planes = sw.integer("planes");
        const cfg::Reader link = tr.sub("link");
        const int64_t count = link.has("count") ? link.integer("count") : 1;
        if (count % planes != 0)
            fail_at(sw.at("planes"), fmt::format("{} planes do not share {} link{} per device evenly; give a "
                                                 "link count that is a multiple of planes",
                                                 planes, count, count == 1 ? "" : "s"));
        count_link(tr.at("shape"), k * planes);
        for (int64_t p = 0; p < planes; ++p) {
            const std::string name = node.name + "-switch" + (planes > 1 ? std::to_string(p) : std::string());
            const net::VertexId v = add_shape_switch(name, &sw, "switch", ni, -1, tr.at("shape"));
            // Each plane takes count / planes of every device's links.
            for (int64_t i = 0; i < k; ++i) add_shape_link(dev(i), v, link, count / planes);
        }
    } else if (shape == "fully-connected") {
        const cfg::Reader link = tr.sub("link");
        count_link(tr.at("shape"), k * (k - 1) / 2);
        for (int64_t i = 0; i < k; ++i)
            for (int64_t j = i + 1; j < k; ++j) add_shape_link(dev(i), dev(j), link);
    } else if (shape == "ring") {
        const cfg::Reader link = tr.sub("link");
        count_link(tr.at("shape"), k);
        if (k == 2) add_shape_link(dev(0), dev(1), link);
        if (k >= 3)
            for (int64_t i = 0; i < k; ++i) add_shape_link(dev(i), dev((i + 1) % k), link);
    } else if (shape == "torus") {
        if (!tr.has("dims")) fail_at(tr.at("shape"), "shape torus needs `dims`, e.g. dims: 16x16x16");
        const std::vector<int64_t> dims = parse_dims(tr.at("dims"));
        int64_t product = 1;
        for (int64_t d : dims) product = product > max_devices / d ? max_devices + 1 : product * d;
        if (product != k)
            fail_at(tr.at("dims"),
                    fmt::format("{} = {} chips, but {} holds {} device{}", tr.str("dims"),
                                product > max_devices ? std::string("too many") : std::to_string(product),
                                m_simple ? std::string("the system (`count`)") : "node '" + node.name + "'",
                                k, k == 1 ? "" : "s"));
        const bool wrap = tr.has("wrap") ? tr.boolean("wrap") : true;
        const cfg::Reader link = tr.sub("link");
        count_link(tr.at("dims"), k * static_cast<int64_t>(dims.size()));
        std::vector<net::VertexId> chips;
        int64_t stride = 1;
        for (int64_t i = 0; i < k; ++i) chips.push_back(dev(i));
        for (std::size_t d = 0; d < dims.size(); ++d) {
            const int64_t size = dims[d];
            for (int64_t i = 0; i < k; ++i) {
                const int64_t x = (i / stride) % size;
                if (size == 1) continue;
                if (x + 1 < size) {
                    // A ring of 2 with wrap: the wrap-around link joins the same pair, so one link of twice
                    // the count.
                    add_shape_link(dev(i), dev(i + stride), link,
                                   count_of(link) * (size == 2 && wrap ? 2 : 1));
                } else if (wrap && size > 2) {
                    add_shape_link(dev(i), dev(i - x * stride), link);
                }
            }
            stride *= size;
        }
        m_topology.add_torus(chips, dims, wrap);
    }
    if (tr.has("pcie")) {
        const cfg::Reader pr = tr.sub("pcie");
        const int64_t sockets = pr.integer("sockets");
        const int64_t per_socket = pr.integer("switches_per_socket");
        const int64_t groups = sockets * std::max<int64_t>(per_socket, 1);
        if (k % groups != 0)
            fail_at(
                pr.at("sockets"),
                fmt::format("{} device{} of node '{}' do not spread evenly over {} {} ({} socket{} x {})", k,
                            k == 1 ? "" : "s", node.name, groups,
                            per_socket > 0 ? "PCIe switches" : "sockets", sockets, sockets == 1 ? "" : "s",
                            per_socket > 0 ? fmt::format("{} switches_per_socket", per_socket)
                                           : std::string("devices on the root complex")));
        if (sockets > 1 && !pr.has("socket_link"))
            fail_at(pr.at("sockets"), "more than one socket needs `socket_link:` (UPI, xGMI) to join them");
        const cfg::Reader link = pr.sub("link");
        const cfg::Reader uplink = pr.has("uplink") ? pr.sub("uplink") : link;
        const std::optional<cfg::Reader> psw =
            pr.has("switch") ? std::optional(pr.sub("switch")) : std::nullopt;
        const std::optional<cfg::Reader> rc =
            pr.has("root_complex") ? std::optional(pr.sub("root_complex")) : std::nullopt;
        count_link(tr.at("pcie"), k + sockets * per_socket + sockets * (sockets - 1) / 2);
        std::vector<net::VertexId> cpus;
        for (int64_t c = 0; c < sockets; ++c)
            cpus.push_back(add_shape_switch(node.name + "-cpu" + std::to_string(c), rc ? &*rc : nullptr,
                                            "root-complex", ni, -1, tr.at("pcie")));
        std::vector<net::VertexId> attach;  // where each group of devices plugs in
        for (int64_t c = 0; c < sockets; ++c) {
            if (per_socket == 0) {
                attach.push_back(cpus[static_cast<std::size_t>(c)]);
                continue;
            }
            for (int64_t w = 0; w < per_socket; ++w) {
                const net::VertexId v =
                    add_shape_switch(node.name + "-pcie" + std::to_string(c * per_socket + w),
                                     psw ? &*psw : nullptr, "pcie-switch", ni, -1, tr.at("pcie"));
                add_shape_link(v, cpus[static_cast<std::size_t>(c)], uplink);
                attach.push_back(v);
            }
        }
        const int64_t per_group = k / groups;
        for (int64_t i = 0; i < k; ++i)
            add_shape_link(dev(i), attach[static_cast<std::size_t>(i / per_group)], link);
        if (sockets > 1) {
            const cfg::Reader sock = pr.sub("socket_link");
            for (int64_t a = 0; a < sockets; ++a)
                for (int64_t b = a + 1; b < sockets; ++b)
                    add_shape_link(cpus[static_cast<std::size_t>(a)], cpus[static_cast<std::size_t>(b)],
                                   sock);
        }
    }
}

void Builder::build_fabric(const cfg::Reader& fr) {
    const std::string shape = fr.str("shape");
    const bool rails = shape == "rail-optimised";
    const int64_t n_nodes = static_cast<int64_t>(m_out.nodes.size());
    if (rails && fr.has("nodes_per_leaf"))
        fail_at(fr.at("nodes_per_leaf"),
                "`nodes_per_leaf` belongs to shape fat-tree; a rail-optimised fabric "
                "has a leaf per rail in each scalable unit (`nodes_per_su`)");
    if (!rails && fr.has("nodes_per_su"))
        fail_at(fr.at("nodes_per_su"),
                "`nodes_per_su` belongs to shape rail-optimised; a fat-tree groups "
                "nodes per leaf with `nodes_per_leaf`");
    const char* group_key = rails ? "nodes_per_su" : "nodes_per_leaf";
    const int64_t per_group = fr.has(group_key) ? fr.integer(group_key) : n_nodes;
    if (per_group < 1) fail_at(fr.at(group_key), "must be at least 1");
    const int64_t groups = (n_nodes + per_group - 1) / per_group;
    // NICs per device of each node.
    std::vector<int64_t> nics_per_device;
    int64_t max_nics = 0;
    for (const SystemNode& n : m_out.nodes) {
        int64_t m = 1;
        if (fr.has("nics_per_node")) {
            const int64_t nics = fr.integer("nics_per_node");
            if (nics % n.devices != 0)
                fail_at(fr.at("nics_per_node"),
                        fmt::format("{} NICs do not spread evenly over the {} device{} of node '{}': each "
                                    "device has its own NICs here (a NIC shared by devices is not modelled)",
                                    nics, n.devices, n.devices == 1 ? "" : "s", n.name));
            m = nics / n.devices;
        }
        nics_per_device.push_back(m);
        max_nics = std::max(max_nics, m * n.devices);
    }
    const cfg::Reader nic = fr.sub("nic");
    const std::optional<cfg::Reader> leaf_props =
        fr.has("leaf") ? std::optional(fr.sub("leaf")) : std::nullopt;
    // Leaves: fat-tree leaf<g>; rail-optimised su<g>-rail<r>.
    const int64_t leaves_per_group = rails ? max_nics : 1;
    count_link(fr.at("shape"), groups * leaves_per_group);
    std::vector<net::VertexId> leaves;
    for (int64_t g = 0; g < groups; ++g)
        for (int64_t r = 0; r < leaves_per_group; ++r)
            leaves.push_back(add_shape_switch(
                rails ? fmt::format("su{}-rail{}", g, r) : fmt::format("leaf{}", g),
                leaf_props ? &*leaf_props : nullptr, "leaf", -1, rails ? r : -1, fr.at("shape")));
    int64_t nic_links = 0;
    for (const SystemNode& n : m_out.nodes) nic_links += n.devices * nics_per_device[&n - m_out.nodes.data()];
    count_link(fr.at("nic"), nic_links);
    for (std::size_t ni = 0; ni < m_out.nodes.size(); ++ni) {
        const SystemNode& n = m_out.nodes[ni];
        const int64_t g = static_cast<int64_t>(ni) / per_group;
        const int64_t m = nics_per_device[ni];
        for (int64_t i = 0; i < n.devices; ++i) {
            const net::VertexId d = n.first + static_cast<std::size_t>(i);
            if (rails) {
                for (int64_t j = 0; j < m; ++j)
                    add_shape_link(d, leaves[static_cast<std::size_t>(g * leaves_per_group + i * m + j)],
                                   nic);
                net::Placement p = m_topology.vertex(d).place;
                p.rail = i * m;
                m_topology.set_placement(d, std::move(p));
            } else {
                add_shape_link(d, leaves[static_cast<std::size_t>(g)], nic, count_of(nic) * m);
            }
        }
    }
    const cfg::Reader spine = fr.sub("spine");
    const int64_t spines = spine.integer("count");
    if (spines == 0) {
        for (const char* key : {"uplink", "oversubscription"})
            if (fr.has(key))
                fail_at(fr.at(key), std::string("`") + key + "` needs spine switches (`spine: {count: N}`)");
        // Only spines join one group's leaves to another's: check_connected says so if nothing else does.
        if (leaves.size() > 1) m_spineless = Spineless{&fr.at("shape"), leaves, rails};
        return;
    }
    // Uplinks per leaf-spine pair: given, or the down ports of a full leaf over oversubscription x spines.
    const cfg::Reader up = fr.has("uplink") ? fr.sub("uplink") : nic;
    int64_t per_pair = 0;
    if (fr.has("uplink") && up.has("count")) {
        if (fr.has("oversubscription"))
            fail_at(fr.at("oversubscription"),
                    "give either `uplink.count` (links per leaf-spine pair) or "
                    "`oversubscription`, not both");
        per_pair = up.integer("count");
    } else {
        const double over = fr.has("oversubscription") ? fr.real("oversubscription") : 1.0;
        const int64_t down =
            (rails ? per_group : per_group * max_nics) * count_of(nic);  // NIC ports into a full leaf
        const double exact = static_cast<double>(down) / (over * static_cast<double>(spines));
        per_pair = std::llround(exact);
        if (per_pair < 1 || std::abs(exact - static_cast<double>(per_pair)) > 1e-9)
            fail_at(
                fr.has("oversubscription") ? fr.at("oversubscription") : spine.at("count"),
                fmt::format("a leaf has {} NIC port{} down; over {} spine{} at oversubscription {} that is "
                            "{:.4g} uplinks per leaf-spine pair, which is not a whole number >= 1 (or give "
                            "`uplink.count`)",
                            down, down == 1 ? "" : "s", spines, spines == 1 ? "" : "s", over, exact));
    }
    count_link(spine.at("count"), spines * static_cast<int64_t>(leaves.size()));
    std::vector<net::VertexId> spine_ids;
    for (int64_t s = 0; s < spines; ++s)
        spine_ids.push_back(
            add_shape_switch("spine" + std::to_string(s), &spine, "spine", -1, -1, spine.at("count")));
    for (net::VertexId l : leaves)
        for (net::VertexId s : spine_ids) add_shape_link(l, s, up, per_pair);
}

Builder::Endpoint Builder::endpoint(const cfg::Node& ref_node) const {
    const std::string ref = ref_node.as_string();
    auto nowhere = [&](const std::string& why) {
        std::vector<std::string> candidates;
        for (net::VertexId v : m_topology.switches()) candidates.push_back(m_topology.vertex(v).name);
        for (const SystemNode& n : m_out.nodes) {
            candidates.push_back(n.name + ".*");
            for (int64_t i = 0; i < std::min<int64_t>(n.devices, 64); ++i)
                candidates.push_back(n.name + "." + std::to_string(i));
        }
        fail_at(ref_node, fmt::format("link to nowhere: '{}' {}{}; an endpoint is a switch, a device "
                                      "<node>.<index>, or <node>.* for each device of a node",
                                      ref, why, did_you_mean(ref, candidates)));
    };
    const std::size_t dot = ref.rfind('.');
    if (dot == std::string::npos) {
        if (auto v = m_topology.find_switch(ref)) return Endpoint{{*v}, false};
        for (const SystemNode& n : m_out.nodes)
            if (n.name == ref)
                fail_at(ref_node,
                        fmt::format("'{0}' is a node; a link joins one of its devices ({0}.0 ... {0}.{1}) "
                                    "or each of them ({0}.*)",
                                    ref, n.devices - 1));
        nowhere("names no switch or device");
    }
    const std::string node_name = ref.substr(0, dot);
    const std::string index = ref.substr(dot + 1);
    const SystemNode* node = nullptr;
    for (const SystemNode& n : m_out.nodes)
        if (n.name == node_name) node = &n;
    if (!node) nowhere("names no device: there is no node '" + node_name + "'");
    if (index == "*") {
        Endpoint e{{}, true};
        for (int64_t i = 0; i < node->devices; ++i)
            e.vertices.push_back(node->first + static_cast<std::size_t>(i));
        return e;
    }
    const bool digits = !index.empty() && index.size() <= 9 &&
                        std::all_of(index.begin(), index.end(),
                                    [](char c) { return std::isdigit(static_cast<unsigned char>(c)); });
    if (!digits) nowhere("names no device: after the node name comes a device index or '*'");
    const int64_t i = std::stoll(index);
    if (i >= node->devices)
        fail_at(ref_node,
                fmt::format("link to nowhere: node '{0}' has {1} device{2} ({0}.0 ... {0}.{3}), so '{4}' "
                            "names none",
                            node_name, node->devices, node->devices == 1 ? "" : "s", node->devices - 1, ref));
    return Endpoint{{node->first + static_cast<std::size_t>(i)}, false};
}

void Builder::check_connected(const cfg::Reader& sr) const {
    if (m_topology.devices().empty()) return;
    if (m_topology.devices().size() < 2 && m_topology.switches().empty()) return;
    const std::vector<net::VertexId> lost = m_topology.unreachable_from(m_topology.devices().front());
    if (lost.empty()) return;
    const std::string& first = m_topology.vertex(m_topology.devices().front()).name;
    const auto device_it = std::find_if(lost.begin(), lost.end(),
                                        [&](net::VertexId v) { return m_topology.vertex(v).is_device(); });
    const std::size_t lost_devices = static_cast<std::size_t>(std::count_if(
        lost.begin(), lost.end(), [&](net::VertexId v) { return m_topology.vertex(v).is_device(); }));
    if (device_it != lost.end()) {
        const SystemDevice& d = m_out.devices[*device_it];
        if (m_spineless) {
            // The leaves fall into groups that nothing joins (what joins them: devices, node topologies,
            // links).
            std::vector<int> group(m_topology.vertex_count(), -1);
            int groups = 0;
            for (const net::VertexId leaf : m_spineless->leaves) {
                if (group[leaf] >= 0) continue;
                std::vector<net::VertexId> stack{leaf};
                group[leaf] = groups;
                while (!stack.empty()) {
                    const net::VertexId v = stack.back();
                    stack.pop_back();
                    for (const net::Neighbour& nb : m_topology.neighbours(v))
                        if (group[nb.vertex] < 0) {
                            group[nb.vertex] = groups;
                            stack.push_back(nb.vertex);
                        }
                }
                ++groups;
            }
            if (groups > 1)
                fail_at(*m_spineless->shape,
                        fmt::format(
                            "device '{}' cannot be reached from '{}': the fabric's {} leaves fall into {} "
                            "groups that nothing joins ({} of {} devices are cut off); give the fabric "
                            "spines (`spine: {{count: N}}`: every leaf links to every spine){}",
                            d.name, first, m_spineless->leaves.size(), groups, lost_devices,
                            m_topology.devices().size(),
                            m_spineless->rails && !sr.has("topology")
                                ? ", or the nodes a `topology:` that joins their devices, and so the "
                                  "rails of a scalable unit"
                                : ""));
        }
        const std::string why =
            sr.has("links") ? "no chain of links joins them" : "there are no `links:` to join the devices";
        fail_at(*m_node_names[d.node],
                fmt::format(
                    "device '{}' cannot be reached from '{}': {} ({} of {} devices are cut off); a system "
                    "with more than one device must be connected",
                    d.name, first, why, lost_devices, m_topology.devices().size()));
    }
    const net::VertexId sw = lost.front();
    const std::size_t index = sw - m_topology.devices().size();
    fail_at(*m_switch_names[index],
            fmt::format("switch '{}' is not connected to the devices: no chain of links "
                        "joins it to '{}'",
                        m_topology.vertex(sw).name, first));
}

SystemSpec Builder::build() {
    check_top_level(m_doc);
    const cfg::Node* sys = m_doc.find("system");
    const cfg::Node* dev = m_doc.find("device");
    const cfg::Node* devs = m_doc.find("devices");
    if (!sys) {
        if (devs) fail_at(*devs, "`devices:` belongs in a system file, beside a `system:` map");
        if (!dev) cfg::fail(m_doc.loc(), "", "expected a top-level `system:` or `device:` map");
        return system_of_one(validate_and_build(*dev), dev->loc());
    }
    const cfg::Node system_map = cfg::validate(*sys, system_schema());
    const cfg::Reader sr(system_map, system_schema());
    m_out.name = sr.str("name");
    m_out.description = sr.has("description") ? sr.str("description") : std::string();
    if (devs) load_inline_types(*devs);

    // The default type first, so that it is device_types[0].
    if (sr.has("device")) {
        const Reference ref = resolve(sr.at("device"));
        if (dev) {
            // A what-if map over the named device: the merged device is a type of its own.
            m_default_type = add_type("default", validate_and_build(cfg::merge(raw_device(ref), *dev)));
        } else {
            m_default_type = type_of(ref);
        }
    } else if (dev) {
        m_default_type = add_type("default", validate_and_build(*dev));
    }

    const std::vector<cfg::Reader> nodes = sr.list("nodes");
    const bool simple = !sr.has("nodes");
    m_simple = simple;
    if (simple) {
        for (const char* key : {"switches", "links"})
            if (sr.has(key))
                fail_at(sr.at(key), std::string("`") + key +
                                        ":` joins the devices of `nodes:`; list the nodes "
                                        "(a node n with k devices holds n.0 ... n.(k-1))");
        if (!m_default_type)
            fail_at(*sys,
                    "names no device: give `device: <preset name or path>` here, or a complete "
                    "top-level `device:` map in this file");
        const int64_t count = sr.has("count") ? sr.integer("count") : 1;
        if (count < 1) fail_at(sr.at("count"), "must be at least 1");
        if (count > max_devices)
            fail_at(sr.at("count"), fmt::format("must be at most {} devices", max_devices));
        m_out.nodes.push_back(SystemNode{simple_node_name, *m_default_type, count, 0});
        m_node_names.push_back(&system_map);
    } else {
        if (nodes.empty())
            fail_at(sr.at("nodes"), "needs at least one node (or leave `nodes:` out and give `count`)");
        int64_t total = 0;
        const cfg::Node* first_host = nullptr;  // the name of the first host node
        for (const cfg::Reader& nr : nodes) {
            check_name(nr.at("name"), "node");
            const int64_t copies = nr.has("count") ? nr.integer("count") : 1;
            if (copies < 1) fail_at(nr.at("count"), "must be at least 1");
            std::size_t type = 0;
            if (nr.has("device")) {
                type = type_of(resolve(nr.at("device")));
            } else if (m_default_type) {
                type = *m_default_type;
            } else {
                fail_at(nr.node(),
                        "names no device: give this node `device: <preset name or path>`, or the "
                        "system a default `system.device`");
            }
            if (!m_default_type) m_default_type = type;
            // Rank r runs on device r: the devices that run ranks come first, hosts after them.
            const bool host = nr.boolean("host");
            if (host) {
                if (!first_host) first_host = &nr.at("name");
            } else if (first_host) {
                fail_at(
                    nr.at("name"),
                    fmt::format("comes after the host node '{}': list host nodes last (rank r of a plan runs "
                                "on device r, and hosts run none)",
                                first_host->as_string()));
            }
            const int64_t k = nr.integer("devices");
            if (k < 1) fail_at(nr.at("devices"), "a node holds at least one device");
            if (copies > max_devices / k || total + copies * k > max_devices)
                fail_at(nr.has("count") ? nr.at("count") : nr.at("devices"),
                        fmt::format("brings the system to more than {} devices, the most supported",
                                    max_devices));
            m_entry_first_node.push_back(m_out.nodes.size());
            for (int64_t c = 0; c < copies; ++c) {
                const std::string name =
                    nr.str("name") + (nr.has("count") ? std::to_string(c) : std::string());
                if (nr.has("count"))
                    claim_generated(name, "node", nr.at("name"));
                else
                    claim_name(nr.at("name"), "node");
                m_node_names.push_back(&nr.at("name"));
                total += k;
                m_out.nodes.push_back(SystemNode{name, type, k, static_cast<std::size_t>(total - k), host});
            }
        }
        if (first_host && m_out.nodes.front().host)
            fail_at(*first_host, "every node is a host: at least one node must run ranks");
        if (sr.has("count") && sr.integer("count") != total) {
            std::vector<std::string> parts;
            for (const SystemNode& n : m_out.nodes) parts.push_back(fmt::format("{} {}", n.name, n.devices));
            fail_at(sr.at("count"),
                    fmt::format("count {} disagrees with the nodes, which hold {} device{} ({}); "
                                "give the total or leave `count` out",
                                sr.integer("count"), total, total == 1 ? "" : "s", join(parts)));
        }
    }
    MLSIM_CHECK(m_default_type && *m_default_type == 0, "the default device type is not the first type");

    for (std::size_t n = 0; n < m_out.nodes.size(); ++n) {
        const SystemNode& node = m_out.nodes[n];
        for (int64_t i = 0; i < node.devices; ++i) {
            SystemDevice d{node.name + "." + std::to_string(i), n, i, node.type};
            const net::VertexId v = m_topology.add_device(d.name);
            MLSIM_CHECK(v == m_out.devices.size(), "device vertex ids out of step with the device list");
            m_out.devices.push_back(std::move(d));
        }
    }

    auto latency_of = [](const cfg::Reader& r) {
        const double s = r.quantity("latency");
        if (s < 0) fail_at(r.at("latency"), "must not be negative");
        if (s > max_latency_s)
            fail_at(r.at("latency"), fmt::format("must be at most {} (a link or switch latency, not a "
                                                 "transfer time)",
                                                 cfg::format_quantity(max_latency_s, Dim::time)));
        return Tick::from_seconds(s);
    };
    for (const cfg::Reader& w : sr.list("switches")) {
        claim_name(w.at("name"), "switch");
        m_switch_names.push_back(&w.at("name"));
        net::SwitchProps p;
        p.kind = w.str("kind");
        p.latency = latency_of(w);
        p.port_bandwidth_Bps = w.has("bandwidth") ? w.quantity("bandwidth") : 0;
        if (w.has("bandwidth") && !(p.port_bandwidth_Bps > 0))
            fail_at(w.at("bandwidth"), "must be greater than zero");
        p.energy_J_per_byte = w.quantity("energy");
        p.in_network_reduction = w.boolean("in_network_reduction");
        p.reduction_efficiency = w.real("reduction_efficiency");
        m_topology.add_switch(w.str("name"), std::move(p));
    }

    build_shapes(sr, simple);

    for (const cfg::Reader& l : sr.list("links")) {
        const Endpoint a = endpoint(l.at("from"));
        const Endpoint b = endpoint(l.at("to"));
        if (a.each && b.each)
            fail_at(l.at("to"),
                    "only one end of a link may be <node>.*; the other must be one device or a switch");
        net::LinkProps p;
        p.kind = l.str("kind");
        p.bandwidth_Bps = l.quantity("bandwidth");
        if (!(p.bandwidth_Bps > 0)) fail_at(l.at("bandwidth"), "must be greater than zero");
        p.latency = latency_of(l);
        p.energy_J_per_byte = l.quantity("energy");
        p.efficiency = l.real("efficiency");
        p.count = l.integer("count");
        const Endpoint& many = a.each ? a : b;
        const Endpoint& one = a.each ? b : a;
        for (net::VertexId v : many.vertices) {
            const net::VertexId from = a.each ? v : one.vertices.front();
            const net::VertexId to = a.each ? one.vertices.front() : v;
            if (from == to)
                fail_at(l.at("to"),
                        fmt::format("a link from '{0}' to itself{1}", m_topology.vertex(from).name,
                                    many.each ? fmt::format(" ('{}' includes '{}')",
                                                            (a.each ? l.at("from") : l.at("to")).as_string(),
                                                            m_topology.vertex(from).name)
                                              : std::string()));
            m_topology.add_link(from, to, p);
        }
    }
    if (!simple) check_connected(sr);

    for (DeviceType& t : m_types) m_out.device_types.push_back(std::move(t.spec));
    m_out.device = m_out.device_types.front();
    m_out.device_count = static_cast<int64_t>(m_out.devices.size());
    m_out.topology = std::make_shared<const net::Topology>(std::move(m_topology));
    m_out.resolved = resolved_document(system_map);
    return std::move(m_out);
}

// See the contract in the header: the system map in declaration order, nodes naming only non-default
// types (by a key of `devices:`), every device inline.
cfg::Node Builder::resolved_document(const cfg::Node& system_map) const {
    // Keys of the non-default types: the device's name, made unique.
    std::vector<std::string> keys(m_out.device_types.size());
    std::vector<std::string> taken;
    for (std::size_t t = 1; t < m_out.device_types.size(); ++t) {
        std::string key = m_out.device_types[t].name;
        for (int n = 2; std::find(taken.begin(), taken.end(), key) != taken.end(); ++n)
            key = m_out.device_types[t].name + "-" + std::to_string(n);
        taken.push_back(key);
        keys[t] = key;
    }
    const bool simple = system_map.find("nodes") == nullptr;
    cfg::Node sys = cfg::Node::make_map(system_map.loc(), system_map.path());
    sys.set_key_loc(system_map.key_loc());
    for (const Param& p : system_schema().params) {
        if (p.name == "device") continue;
        if (p.name == "count") {
            // The simple form keeps its count (sweeps override system.count); with nodes it is derived.
            if (simple)
                sys.set("count",
                        cfg::Node::make_scalar(
                            std::to_string(m_out.device_count),
                            system_map.find("count") ? system_map.find("count")->loc() : system_map.loc(),
                            cfg::child_key_path(system_map.path(), "count")));
            continue;
        }
        const cfg::Node* value = system_map.find(p.name);
        if (!value) continue;
        if (p.name != "nodes") {
            sys.set(p.name, *value);
            continue;
        }
        cfg::Node list = cfg::Node::make_sequence(value->loc(), value->path());
        list.set_key_loc(value->key_loc());
        for (std::size_t i = 0; i < value->items().size(); ++i) {
            const cfg::Node& item = value->items()[i];
            cfg::Node node = cfg::Node::make_map(item.loc(), item.path());
            node.set_key_loc(item.key_loc());
            node.set("name", *item.find("name"));
            const std::size_t type = m_out.nodes[m_entry_first_node.at(i)].type;
            if (type != 0) {
                const cfg::Node* ref = item.find("device");
                node.set("device", cfg::Node::make_scalar(keys[type], ref ? ref->loc() : item.loc(),
                                                          cfg::child_key_path(item.path(), "device")));
            }
            node.set("devices", *item.find("devices"));
            if (const cfg::Node* count = item.find("count")) node.set("count", *count);
            // Only where set: the documents (and config hashes) of systems without hosts stay as they were.
            if (m_out.nodes[m_entry_first_node.at(i)].host) node.set("host", *item.find("host"));
            list.push_back(std::move(node));
        }
        sys.set("nodes", std::move(list));
    }
    cfg::Node out = cfg::Node::make_map(m_doc.loc(), "");
    out.set("system", std::move(sys));
    cfg::Node default_device = m_out.device.resolved;
    default_device.set_path("device");
    out.set("device", std::move(default_device));
    if (m_out.device_types.size() > 1) {
        const cfg::Node* devs = m_doc.find("devices");
        cfg::Node types = cfg::Node::make_map(devs ? devs->loc() : m_doc.loc(), "devices");
        for (std::size_t t = 1; t < m_out.device_types.size(); ++t) {
            cfg::Node d = m_out.device_types[t].resolved;
            d.set_path(cfg::child_key_path("devices", keys[t]));
            types.set(keys[t], std::move(d));
        }
        out.set("devices", std::move(types));
    }
    return out;
}

}  // namespace

const cfg::Schema& system_schema() {
    static const cfg::Schema schema = [] {
        cfg::Schema s;
        s.name = "system";
        s.doc = "a system: devices in nodes, joined by links and switches (or simply `count` devices)";
        s.params.push_back(cfg::required("name", PType::string, "system name, e.g. dgx-a100"));
        // No default, so that a system without one resolves as it did before the key existed.
        s.params.push_back(optional_no_default("description", PType::string, "one line for listings"));
        s.params.push_back(
            optional_no_default("device", PType::string,
                                "default device type: preset name (configs/devices/<name>.yaml) or path "
                                "relative to this file; may "
                                "be omitted when the file has a complete top-level `device:` map or every "
                                "node names its device"));
        Param count =
            optional_no_default("count", PType::integer,
                                "number of devices: without `nodes:`, that many of `device` (default 1), no "
                                "links; with `nodes:`, must equal their total");
        count.min = 1;
        s.params.push_back(count);
        s.params.push_back(list_param("nodes", node_schema(), "groups of devices of one type"));
        s.params.push_back(list_param("switches", switch_schema(), "switches that links may join"));
        s.params.push_back(list_param("links", link_schema(), "links between devices and switches"));
        Param topo = optional_no_default("topology", PType::map, "a shape joining the devices of each node");
        topo.sub = &topology_schema();
        s.params.push_back(topo);
        Param fabric = optional_no_default("fabric", PType::map, "a leaf/spine network across the nodes");
        fabric.sub = &fabric_schema();
        s.params.push_back(fabric);
        // What the system costs, for `mlsim compare` (experiment/compare.h states the rule). Its `source`
        // is required, so a price always says where it comes from, and a system without one resolves as it
        // did before the key existed.
        static const cfg::Schema price_schema = [] {
            cfg::Schema p;
            p.name = "system.price";
            p.doc = "the system's price: a rental price per hour, or a purchase price and a lifetime";
            p.params.push_back(
                cfg::required("source", PType::string, "where the price comes from, and when"));
            const auto money = [](std::string name, std::string doc) {
                Param m = optional_no_default(std::move(name), PType::real, std::move(doc));
                m.positive = true;
                m.min = 0;
                m.max = 1e12;
                return m;
            };
            p.params.push_back(
                money("usd_per_hour", "rental price of the whole system, US dollars per hour"));
            p.params.push_back(money("purchase_usd", "purchase price of the whole system, US dollars"));
            Param years = money("lifetime_years", "years the purchase is amortised over (with purchase_usd)");
            years.positive = false;  // a purchase amortised over days to a century
            years.min = 0.01;
            years.max = 100;
            p.params.push_back(years);
            Param kwh = money("usd_per_kwh", "electricity price, US dollars per kWh; default 0 (none)");
            kwh.positive = false;  // 0, the default, may also be written
            p.params.push_back(kwh);
            return p;
        }();
        Param price = optional_no_default("price", PType::map, "what the system costs (mlsim compare)");
        price.sub = &price_schema;
        s.params.push_back(price);
        return s;
    }();
    return schema;
}

std::string SystemSpec::device_summary() const {
    std::vector<int64_t> per_type(device_types.size(), 0);
    for (const SystemDevice& d : devices) ++per_type.at(d.type);
    if (devices.empty() && !per_type.empty()) per_type[0] = device_count;  // a spec built by hand
    std::vector<std::string> parts;
    for (std::size_t t = 0; t < device_types.size(); ++t)
        if (per_type[t] > 0) parts.push_back(fmt::format("{} x {}", per_type[t], device_types[t].name));
    if (parts.empty()) return fmt::format("{} x {}", device_count, device.name);
    return join(parts, " + ");
}

int64_t SystemSpec::rank_devices() const {
    if (nodes.empty()) return device_count;  // a spec built by hand
    int64_t n = 0;
    for (const SystemNode& node : nodes)
        if (!node.host) n += node.devices;
    return n;
}

bool SystemSpec::default_type_worker(std::size_t i) const {
    const SystemDevice& d = devices.at(i);
    return d.type == 0 && !(d.node < nodes.size() && nodes[d.node].host);
}

double SystemSpec::bisection_Bps() const {
    if (!topology) return 0;
    std::vector<net::VertexId> accel;
    for (std::size_t i = 0; i < devices.size(); ++i)
        if (default_type_worker(i)) accel.push_back(i);
    if (accel.size() < 2) return 0;
    const std::size_t half = accel.size() / 2;
    const std::vector<net::VertexId> a(accel.begin(), accel.begin() + static_cast<std::ptrdiff_t>(half));
    const std::vector<net::VertexId> b(accel.begin() + static_cast<std::ptrdiff_t>(half), accel.end());
    return topology->max_flow_Bps(a, b);
}

std::vector<std::string> SystemSpec::type_names() const {
    std::vector<std::string> out;
    for (const DeviceSpec& d : device_types) out.push_back(d.name);
    return out;
}

SystemSpec load_system(const std::string& path, const std::vector<std::string>& preset_dirs) {
    const cfg::Node doc = cfg::load_file(path);
    return Builder(doc, path, preset_dirs).build();
}

SystemSpec system_from_resolved(const cfg::Node& doc) { return Builder(doc, "", {}).build(); }

SystemSpec system_of_one(DeviceSpec device, const cfg::SourceLoc& where) {
    SystemSpec out;
    out.name = device.name;
    out.device = device;
    out.device_count = 1;
    out.nodes.push_back(SystemNode{simple_node_name, 0, 1, 0});
    out.devices.push_back(SystemDevice{std::string(simple_node_name) + ".0", 0, 0, 0});
    auto topology = std::make_shared<net::Topology>();
    topology->add_device(out.devices.front().name);
    out.topology = std::move(topology);
    cfg::Node system_map = cfg::Node::make_map(where, "system");
    system_map.set("name", cfg::Node::make_scalar(out.name, where, "system.name"));
    system_map.set("count", cfg::Node::make_scalar("1", where, "system.count"));
    out.resolved = cfg::Node::make_map(where, "");
    out.resolved.set("system", std::move(system_map));
    out.resolved.set("device", device.resolved);
    out.device_types.push_back(std::move(device));
    return out;
}

std::vector<std::string> list_system_presets(const std::string& configs_dir) {
    std::error_code ec;
    const fs::path dir = fs::path(configs_dir) / "systems";
    std::vector<std::string> names;
    if (!fs::is_directory(dir, ec)) return names;
    for (const auto& entry : fs::directory_iterator(dir, ec)) {
        if (!entry.is_regular_file(ec)) continue;
        const fs::path& p = entry.path();
        if (p.extension() == ".yaml") names.push_back(p.stem().string());
    }
    std::sort(names.begin(), names.end());
    return names;
}

}  // namespace mlsim::arch
