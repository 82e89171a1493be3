#include "arch/device_spec.h"

#include <fmt/format.h>

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <filesystem>
#include <optional>
#include <set>
#include <utility>

#include "arch/family.h"
#include "arch/section_params.h"
#include "sim/config/limits.h"
#include "sim/config/loader.h"
#include "sim/config/messages.h"
#include "sim/config/units.h"
#include "sim/core/check.h"
#include "workloads/dtype.h"

namespace mlsim::arch {

namespace fs = std::filesystem;
using cfg::Dim;
using cfg::Param;
using cfg::PType;

const std::vector<std::string>& known_dtypes() { return wl::dtype_names(); }

const std::vector<std::string>& known_families() {
    static const std::vector<std::string> families = {"tpu", "gpu", "cpu", "mcu", "npu"};
    return families;
}

using cfg::child;
using cfg::contains;
using cfg::did_you_mean;
using cfg::fail_at;
using cfg::join;

namespace {

std::vector<std::string> family_names() {
    std::vector<std::string> names;
    for (const Family& f : families()) names.push_back(f.name);
    return names;
}

Param dict_param(std::string name, Dim dim, bool positive, std::string doc) {
    Param p;
    p.name = std::move(name);
    p.type = PType::dict;
    p.doc = std::move(doc);
    p.value_type = PType::quantity;
    p.dim = dim;
    p.choices = known_dtypes();
    p.positive = positive;
    if (!positive) p.min = 0.0;
    return p;
}

const cfg::Schema& memory_schema() {
    static const cfg::Schema schema = [] {
        cfg::Schema s;
        s.name = "device.memory";
        s.doc = "one memory level; levels are listed innermost first, the last is main memory";
        s.params.push_back(cfg::required("name", PType::string, "level name, e.g. l1, l2, hbm, sram, flash"));
        s.params.push_back(cfg::quantity("capacity", Dim::size, std::nullopt,
                                         "capacity of one instance (e.g. one L1 of one SM)"));
        Param instances = cfg::optional("instances", PType::integer, "1",
                                        "identical instances of this level (e.g. one per SM or core)");
        instances.min = 1;
        instances.max = static_cast<double>(limits::max_memory_instances);
        s.params.push_back(instances);
        Param bandwidth = optional_no_default(
            "bandwidth", PType::quantity,
            "total bandwidth over all instances, toward the compute units; required, except a GPU's first "
            "level "
            "(L1 / shared memory: gpu.shared_memory_bandwidth x sms x clock) and an MCU's flash with a "
            "flash_wait_table (flash_line / (wait states + 1) x clock), derived when left out");
        bandwidth.dim = Dim::bandwidth;
        bandwidth.positive = true;
        s.params.push_back(bandwidth);
        s.params.push_back(cfg::quantity("latency", Dim::time, std::string("0ns"),
                                         "access latency; 0 = not modelled at this fidelity", false));
        Param read = cfg::quantity("read_energy", Dim::energy_per_byte, std::nullopt,
                                   "energy per byte read from this level", false);
        read.min = 0.0;
        s.params.push_back(read);
        Param write = optional_no_default("write_energy", PType::quantity,
                                          "energy per byte written to this level; read_energy when absent");
        write.dim = Dim::energy_per_byte;
        write.min = 0.0;
        s.params.push_back(write);
        return s;
    }();
    return schema;
}

std::map<std::string, double> dtype_table(const cfg::Reader& r, std::string_view key, bool positive) {
    const cfg::Node& table = r.at(key);
    std::map<std::string, double> out;
    for (const auto& [dtype, value] : r.quantity_dict(key)) {
        const cfg::Node& entry = child(table, dtype);
        if (!contains(known_dtypes(), dtype))
            fail_at(entry, "unknown data type '" + dtype + "'" + did_you_mean(dtype, known_dtypes()) +
                               "; known data types: " + join(known_dtypes()));
        if (positive ? !(value > 0) : !(value >= 0))
            fail_at(entry, std::string("must be ") + (positive ? "greater than zero" : "zero or more"));
        out[dtype] = value;
    }
    return out;
}

// The top-level keys a device or system document may have.
const std::vector<std::string>& top_level_keys() {
    static const std::vector<std::string> keys = {"device", "system"};
    return keys;
}

void check_top_level(const cfg::Node& doc) {
    if (!doc.is_map())
        cfg::fail(doc.loc(), "",
                  "expected a map with a top-level `device:` or `system:` key, got " +
                      std::string(doc.kind_name()));
    for (const auto& [key, value] : doc.entries()) {
        if (!contains(top_level_keys(), key))
            fail_at(value, "unknown top-level key" + did_you_mean(key, top_level_keys()) +
                               "; expected `device:` (a device file) or `system:` (a system file)");
        if (!value.is_map()) fail_at(value, "expected a map, got " + std::string(value.kind_name()));
    }
}

}  // namespace

const cfg::Schema& device_schema() {
    static const cfg::Schema schema = [] {
        cfg::Schema s;
        s.name = "device";
        s.doc =
            "one device at roofline level (peaks, memory levels, energy), plus optional per-family detail";
        s.params.push_back(cfg::required("name", PType::string, "short name, e.g. a100"));
        Param family =
            cfg::required("family", PType::choice, "device family: " + join(known_families(), " | "));
        family.choices = known_families();
        s.params.push_back(family);
        s.params.push_back(cfg::optional("description", PType::string, "", "one line for listings"));
        s.params.push_back(cfg::optional("source", PType::string, "", "where the figures come from"));
        Param node =
            optional_no_default("process_nm", PType::integer, "technology node in nm (for energy scaling)");
        node.min = 1;
        node.max = static_cast<double>(limits::max_process_nm);
        s.params.push_back(node);
        s.params.push_back(
            cfg::quantity("clock", Dim::frequency, std::nullopt, "clock the peaks are quoted at"));
        s.params.push_back(dict_param("peak", Dim::throughput, true,
                                      "dense peak throughput per data type (" + join(known_dtypes(), " ") +
                                          "); one MAC = 2 ops. Required unless the device's model derives "
                                          "it (a systolic array: rows x cols x arrays x 2 x clock); given "
                                          "as well, it must agree"));
        Param mac = dict_param("mac_energy", Dim::energy, false,
                               "energy per MAC per data type; every data type with a peak needs one");
        mac.required = true;
        s.params.push_back(mac);
        Param memory =
            cfg::required("memory", PType::list, "memory levels, innermost first; the last is main memory");
        memory.sub = &memory_schema();
        s.params.push_back(memory);
        Param static_power = cfg::quantity("static_power", Dim::power, std::nullopt,
                                           "power drawn whenever powered and clocked, busy or not", false);
        static_power.min = 0.0;
        s.params.push_back(static_power);
        s.params.push_back(cfg::quantity("tdp", Dim::power, std::nullopt, "thermal design power"));
        Param overhead = cfg::quantity("op_overhead", Dim::time, std::string("0s"),
                                       "fixed per-op launch / dispatch overhead", false);
        overhead.min = 0.0;
        s.params.push_back(overhead);
        // The model that runs the device, and each family's section, from the family registry.
        Param model = optional_no_default(
            "model", PType::choice,
            "the model that runs this device: " + join(family_names(), " | ") +
                "; default: the detailed model of the section the device gives, else roofline");
        model.choices = family_names();
        s.params.push_back(model);
        for (const Family& f : families()) {
            if (f.section.empty()) continue;
            s.params.push_back(
                map_param(f.section, *f.schema, f.description + " (" + join(f.hardware, ", ") + ")"));
        }
        return s;
    }();
    return schema;
}

// --- DeviceSpec ---------------------------------------------------------------------------------

const MemoryLevel& DeviceSpec::main_memory() const {
    MLSIM_CHECK(!memory.empty(), "device '" + name + "' has no memory levels");
    return memory.back();
}

const MemoryLevel* DeviceSpec::find_memory(std::string_view level_name) const {
    for (const MemoryLevel& level : memory)
        if (level.name == level_name) return &level;
    return nullptr;
}

bool DeviceSpec::supports(std::string_view dtype) const {
    return peak_ops_per_s.find(std::string(dtype)) != peak_ops_per_s.end();
}

std::vector<std::string> DeviceSpec::dtypes() const {
    std::vector<std::string> out;
    for (const std::string& d : known_dtypes())
        if (supports(d)) out.push_back(d);
    for (const auto& [d, v] : peak_ops_per_s)  // anything set in code outside the known list
        if (!contains(out, d)) out.push_back(d);
    return out;
}

namespace {

[[noreturn]] void fail_no_dtype(const DeviceSpec& spec, std::string_view key, std::string_view dtype,
                                std::string_view what) {
    const cfg::Node* node = spec.resolved.is_map() ? spec.resolved.find(key) : nullptr;
    // A derived peak has no node of its own: point at the device map.
    cfg::SourceLoc loc = node                     ? node->loc()
                         : spec.resolved.is_map() ? spec.resolved.key_loc()
                                                  : cfg::SourceLoc{};
    std::string path = node ? node->path() : "device." + std::string(key);
    std::vector<std::string> have = spec.dtypes();
    cfg::fail(loc, path,
              "device '" + spec.name + "' has no " + std::string(what) + " for data type '" +
                  std::string(dtype) + "'" + did_you_mean(dtype, have) +
                  "; it supports: " + (have.empty() ? "none" : join(have)));
}

}  // namespace

double DeviceSpec::peak_for(std::string_view dtype) const {
    auto it = peak_ops_per_s.find(std::string(dtype));
    if (it == peak_ops_per_s.end()) fail_no_dtype(*this, "peak", dtype, "peak");
    return it->second;
}

double DeviceSpec::mac_energy_for(std::string_view dtype) const {
    auto it = mac_energy_J.find(std::string(dtype));
    if (it == mac_energy_J.end()) fail_no_dtype(*this, "mac_energy", dtype, "MAC energy");
    return it->second;
}

double DeviceSpec::ridge_point(std::string_view dtype) const {
    return peak_for(dtype) / main_memory().bandwidth_Bps;
}

namespace {

// The device map's `name:` section when it is given, a non-empty map (validate() fills an absent one with an
// empty map); else null.
const cfg::Node* given_section(const cfg::Node& dev, std::string_view name) {
    const cfg::Node* n = dev.is_map() ? dev.find(name) : nullptr;
    return n && n->is_map() && !n->entries().empty() ? n : nullptr;
}

}  // namespace

const cfg::Node* DeviceSpec::section(std::string_view section_name) const {
    return given_section(resolved, section_name);
}

namespace {

// `device.model` when given (it must name a family with a model, and that family's section must be
// there if it has one); else the first family with a model whose section the device gives; else the
// roofline.
std::string choose_model(const cfg::Node& dev) {
    const auto has_section = [&](const Family& f) { return given_section(dev, f.section) != nullptr; };
    if (const cfg::Node* m = dev.find("model"); m && m->is_scalar()) {
        const Family* f = find_family(m->as_string());
        MLSIM_CHECK(f != nullptr, "validated device.model names no family");
        if (!f->has_model())
            fail_at(*m, "the " + f->name +
                            " model is not built yet; this device runs on the roofline "
                            "(`model: roofline`, or leave `model` out)");
        if (!f->section.empty() && !has_section(*f))
            fail_at(*m, "the " + f->name + " model needs a `" + f->section + ":` section in the device");
        return f->name;
    }
    for (const Family& f : families())
        if (f.has_model() && !f.section.empty() && has_section(f)) return f.name;
    return "roofline";
}

}  // namespace

// --- building ----------------------------------------------------------------------------------

DeviceSpec device_from_node(const cfg::Node& resolved) {
    const cfg::Node* dev = &resolved;
    if (resolved.is_map() && !resolved.find("name")) {
        const cfg::Node* inner = resolved.find("device");
        if (inner && inner->is_map()) dev = inner;
    }
    const cfg::Reader r(*dev, device_schema());
    DeviceSpec d;
    d.name = r.str("name");
    d.family = r.str("family");
    d.description = r.str("description");
    d.source = r.str("source");
    if (r.has("process_nm")) d.process_nm = r.integer("process_nm");
    d.clock_hz = r.quantity("clock");
    if (!(d.clock_hz > 0)) fail_at(r.at("clock"), "must be greater than zero");

    d.mac_energy_J = dtype_table(r, "mac_energy", false);
    if (r.has("peak")) d.peak_ops_per_s = dtype_table(r, "peak", true);
    const cfg::Node& memory_node = r.at("memory");
    const std::vector<cfg::Reader> levels = r.list("memory");
    if (levels.empty()) fail_at(memory_node, "needs at least one memory level (the last is main memory)");
    std::set<std::string> seen;
    for (const cfg::Reader& lr : levels) {
        MemoryLevel m;
        m.name = lr.str("name");
        if (!seen.insert(m.name).second)
            fail_at(lr.at("name"), "memory level '" + m.name + "' is listed twice");
        m.capacity_bytes = lr.quantity("capacity");
        if (!(m.capacity_bytes > 0)) fail_at(lr.at("capacity"), "must be greater than zero");
        m.instances = lr.integer("instances");
        if (m.instances < 1) fail_at(lr.at("instances"), "must be at least 1");
        // Left out: 0 here, for the device's family to derive (a GPU's L1, an MCU's flash), checked below.
        if (lr.has("bandwidth")) {
            m.bandwidth_Bps = lr.quantity("bandwidth");
            if (!(m.bandwidth_Bps > 0)) fail_at(lr.at("bandwidth"), "must be greater than zero");
        }
        m.latency_s = lr.quantity("latency");
        if (m.latency_s < 0) fail_at(lr.at("latency"), "must be zero or more");
        m.read_energy_J_per_byte = lr.quantity("read_energy");
        if (m.read_energy_J_per_byte < 0) fail_at(lr.at("read_energy"), "must be zero or more");
        m.write_energy_J_per_byte =
            lr.has("write_energy") ? lr.quantity("write_energy") : m.read_energy_J_per_byte;
        if (m.write_energy_J_per_byte < 0) fail_at(lr.at("write_energy"), "must be zero or more");
        // A microcontroller's SRAM and flash sit side by side, activations in the one and weights in the
        // other (an STM32H750: 1 MB of SRAM, 128 KiB of flash); other devices' levels nest, each holding
        // what the one inside it holds.
        if (!d.memory.empty() && d.family != "mcu") {
            const MemoryLevel& inner = d.memory.back();
            if (m.capacity_bytes < inner.capacity_bytes)
                fail_at(lr.at("capacity"),
                        "memory level '" + m.name + "' holds " +
                            cfg::format_quantity(m.capacity_bytes, Dim::size) + " per instance, less than '" +
                            inner.name + "' inside it (" +
                            cfg::format_quantity(inner.capacity_bytes, Dim::size) +
                            "); levels are listed innermost first and each must hold at least as much as the "
                            "one before it");
        }
        d.memory.push_back(std::move(m));
    }

    d.static_power_W = r.quantity("static_power");
    d.tdp_W = r.quantity("tdp");
    if (!(d.tdp_W > 0)) fail_at(r.at("tdp"), "must be greater than zero");
    if (d.static_power_W > d.tdp_W)
        fail_at(r.at("static_power"), "static power " + cfg::format_quantity(d.static_power_W, Dim::power) +
                                          " exceeds the TDP " + cfg::format_quantity(d.tdp_W, Dim::power));
    d.op_overhead_s = r.quantity("op_overhead");
    if (d.op_overhead_s < 0) fail_at(r.at("op_overhead"), "must be zero or more");

    // A level may leave its bandwidth out only where the device's family derives it (below): a GPU's first
    // level (L1 / shared memory) from its `gpu:` section's SM array, an MCU's flash from the wait states of
    // its `mcu.flash_wait_table` and the clock. Checked before the families read the levels.
    const cfg::Node* mcu_section = given_section(*dev, "mcu");
    for (std::size_t i = 0; i < d.memory.size(); ++i) {
        const MemoryLevel& m = d.memory[i];
        if (m.bandwidth_Bps > 0) continue;
        const bool gpu_l1 = i == 0 && given_section(*dev, "gpu") != nullptr;
        const cfg::Node* table = mcu_section ? mcu_section->find("flash_wait_table") : nullptr;
        const bool mcu_flash = m.name == "flash" && table && table->is_sequence() && !table->items().empty();
        if (gpu_l1 || mcu_flash) continue;
        std::string why =
            "only a GPU's first level with a `gpu:` section and an MCU's flash with a "
            "`mcu.flash_wait_table` have theirs derived";
        if (i == 0 && d.family == "gpu")
            why =
                "a GPU's first level, its L1 / shared memory, may leave it out only when a `gpu:` section "
                "gives the SM array it is derived from";
        else if (m.name == "flash" && mcu_section)
            why = "the flash may leave it out only when `mcu.flash_wait_table` gives its wait states";
        else if (mcu_section)
            why =
                "of an MCU's levels only the one named `flash` may leave it out, when `mcu.flash_wait_table` "
                "gives its wait states";
        fail_at(levels[i].node(), "memory level '" + m.name + "' needs `bandwidth` (" + why + ")");
    }

    // Family sections: each on a device of a family that may carry it, parsed by its family (which
    // may derive the peaks from its own parameters and checks declared ones against them).
    for (const Family& f : families()) {
        if (f.section.empty()) continue;
        const cfg::Node* n = given_section(*dev, f.section);
        if (!n) continue;
        if (!contains(f.hardware, d.family))
            fail_at(*n, "a `" + f.section + ":` section describes a " + join(f.hardware, " or ") +
                            " device, but this device's family is '" + d.family + "'");
        if (f.parse) d.params[f.name] = f.parse(*dev, d);
    }
    for (std::size_t i = 0; i < d.memory.size(); ++i)
        MLSIM_CHECK(d.memory[i].bandwidth_Bps > 0,
                    "memory level '" + d.memory[i].name + "' left without a bandwidth by its family");
    if (d.peak_ops_per_s.empty())
        fail_at(r.has("peak") ? r.at("peak") : *dev,
                r.has("peak")
                    ? "needs at least one data type (" + join(known_dtypes()) + ")"
                    : "needs `peak:` (dense peak throughput per data type), or a section from which "
                      "its model derives it (e.g. `systolic:`)");
    for (const auto& [dtype, peak] : d.peak_ops_per_s) {
        if (d.mac_energy_J.count(dtype) == 0)
            fail_at(r.at("mac_energy"), "no MAC energy for data type '" + dtype +
                                            "', which has a peak; every data type in `peak` needs one here");
    }
    d.model = choose_model(*dev);
    // validate() fills every absent section with an empty map; records read better without them.
    d.resolved = *dev;
    for (const Family& f : families()) {
        if (f.section.empty()) continue;
        const cfg::Node* n = d.resolved.find(f.section);
        if (n && (n->is_null() || (n->is_map() && n->entries().empty()))) d.resolved.erase(f.section);
    }
    return d;
}

namespace {

DeviceSpec validate_and_build(const cfg::Node& device_map) {
    return device_from_node(cfg::validate(device_map, device_schema()));
}

bool file_exists(const fs::path& p) {
    std::error_code ec;
    return fs::is_regular_file(p, ec);
}

}  // namespace

DeviceSpec load_device(const std::string& path) {
    const cfg::Node doc = cfg::load_file(path);
    check_top_level(doc);
    if (const cfg::Node* sys = doc.find("system"))
        fail_at(*sys,
                "this is a system file; a device file has only a top-level `device:` map "
                "(load it as a system instead)");
    const cfg::Node* dev = doc.find("device");
    if (!dev) cfg::fail(doc.loc(), "", "expected a top-level `device:` map");
    return validate_and_build(*dev);
}

std::vector<std::string> list_device_presets(const std::string& configs_dir) {
    std::error_code ec;
    fs::path dir = fs::path(configs_dir);
    if (fs::is_directory(dir / "devices", ec)) dir /= "devices";
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

std::string find_device_preset(const std::string& name, const std::vector<std::string>& search_dirs,
                               const cfg::SourceLoc& where, std::string_view key_path) {
    for (const std::string& dir : search_dirs) {
        fs::path candidate = fs::path(dir) / (name + ".yaml");
        if (file_exists(candidate)) return candidate.string();
    }
    std::vector<std::string> found;
    for (const std::string& dir : search_dirs)
        for (std::string& preset : list_device_presets(dir))
            if (!contains(found, preset)) found.push_back(std::move(preset));
    std::sort(found.begin(), found.end());
    cfg::fail(where, key_path,
              "no device preset '" + name + "'" + did_you_mean(name, found) + "; searched " +
                  join(search_dirs) +
                  "; presets found: " + (found.empty() ? std::string("none") : join(found)) +
                  " (a path to a device file must contain '/' or end in .yaml)");
}

}  // namespace mlsim::arch
