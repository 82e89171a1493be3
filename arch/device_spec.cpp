#include "arch/device_spec.h"

#include <fmt/format.h>

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <filesystem>
#include <optional>
#include <set>
#include <utility>

#include "sim/config/loader.h"
#include "sim/config/units.h"
#include "sim/core/check.h"

namespace mlsim::arch {

namespace fs = std::filesystem;
using cfg::Dim;
using cfg::Param;
using cfg::PType;

const std::vector<std::string>& known_dtypes() {
    static const std::vector<std::string> dtypes = {"fp32", "tf32",  "bf16", "fp16",
                                                    "fp8",  "int16", "int8", "int4"};
    return dtypes;
}

const std::vector<std::string>& known_families() {
    static const std::vector<std::string> families = {"tpu", "gpu", "cpu", "mcu", "npu"};
    return families;
}

namespace {

// Which families may carry which per-family section. An NPU is either a spatial array (systolic) or a
// microcontroller with an accelerator attached (mcu).
const std::vector<std::pair<std::string, std::vector<std::string>>>& section_families() {
    static const std::vector<std::pair<std::string, std::vector<std::string>>> table = {
        {"systolic", {"tpu", "npu"}},
        {"gpu", {"gpu"}},
        {"cpu", {"cpu"}},
        {"mcu", {"mcu", "npu"}},
    };
    return table;
}

// An optional parameter with no default: absent from the resolved tree unless the file gives it.
Param optional_no_default(std::string name, PType type, std::string doc) {
    Param p;
    p.name = std::move(name);
    p.type = type;
    p.doc = std::move(doc);
    return p;
}

Param count_param(std::string name, std::string doc) {
    Param p = optional_no_default(std::move(name), PType::integer, std::move(doc));
    p.min = 1;
    return p;
}

Param size_param(std::string name, std::string doc) {
    Param p = optional_no_default(std::move(name), PType::quantity, std::move(doc));
    p.dim = Dim::size;
    p.positive = true;
    return p;
}

Param map_param(std::string name, const cfg::Schema& sub, std::string doc) {
    Param p = optional_no_default(std::move(name), PType::map, std::move(doc));
    p.sub = &sub;
    return p;
}

Param dict_param(std::string name, Dim dim, bool positive, std::string doc) {
    Param p;
    p.name = std::move(name);
    p.type = PType::dict;
    p.doc = std::move(doc);
    p.required = true;
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
        s.params.push_back(instances);
        s.params.push_back(cfg::quantity("bandwidth", Dim::bandwidth, std::nullopt,
                                         "total bandwidth over all instances, toward the compute units"));
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

Param choice_param(std::string name, std::string default_value, std::vector<std::string> choices,
                   std::string doc) {
    Param p = cfg::optional(std::move(name), PType::choice, std::move(default_value), std::move(doc));
    p.choices = std::move(choices);
    return p;
}

// One operand buffer of the systolic array. The keys are fixed: a SCALE-Sim .cfg translator
// (arch/systolic/scalesim_cfg.cpp) writes exactly these names.
const cfg::Schema& systolic_buffer_schema() {
    static const cfg::Schema schema = [] {
        cfg::Schema s;
        s.name = "device.systolic.buffers.<operand>";
        s.doc = "one operand's on-chip SRAM; its word size is the layer's data type";
        s.params.push_back(optional_no_default("name", PType::string,
                                               "buffer name, e.g. unified_buffer; the operand's name when absent"));
        s.params.push_back(cfg::quantity("capacity", Dim::size, std::nullopt,
                                         "capacity of the whole buffer (both halves when double-buffered)"));
        s.params.push_back(cfg::quantity("bandwidth", Dim::bandwidth, std::nullopt,
                                         "toward the array, per direction, shared by all arrays"));
        s.params.push_back(cfg::optional("double_buffered", PType::boolean, "true",
                                         "fill / drain one half while the array uses the other"));
        Param read = cfg::quantity("read_energy", Dim::energy_per_byte, std::nullopt,
                                   "energy per byte read from this buffer", false);
        read.min = 0.0;
        s.params.push_back(read);
        Param write = optional_no_default("write_energy", PType::quantity,
                                          "energy per byte written to this buffer; read_energy when absent");
        write.dim = Dim::energy_per_byte;
        write.min = 0.0;
        s.params.push_back(write);
        return s;
    }();
    return schema;
}

const cfg::Schema& systolic_buffers_schema() {
    static const cfg::Schema schema = [] {
        cfg::Schema s;
        s.name = "device.systolic.buffers";
        s.doc = "on-chip SRAM per operand";
        for (const auto& [name, doc] :
             {std::pair<const char*, const char*>{"ifmap", "input activations (A; im2col rows of a convolution)"},
              {"filter", "weights (B)"},
              {"ofmap", "outputs and partial sums (C)"}}) {
            Param p = map_param(name, systolic_buffer_schema(), doc);
            p.required = true;
            s.params.push_back(p);
        }
        return s;
    }();
    return schema;
}

const cfg::Schema& systolic_tile_schema() {
    static const cfg::Schema schema = [] {
        cfg::Schema s;
        s.name = "device.systolic.tile";
        s.doc = "the tile of a GEMM (per array) when `tiling: fixed`";
        for (const char* dim : {"m", "n", "k"}) {
            Param p = cfg::optional(dim, PType::integer, "0", std::string("tile extent along ") + dim +
                                                                  "; 0 = the whole dimension");
            p.min = 0;
            s.params.push_back(p);
        }
        return s;
    }();
    return schema;
}

// The detailed systolic model's section. The key names are fixed (see configs/README.md).
const cfg::Schema& systolic_schema() {
    static const cfg::Schema schema = [] {
        cfg::Schema s;
        s.name = "device.systolic";
        s.doc = "systolic array organisation, buffers and tiling (read by the detailed systolic model)";
        Param rows = cfg::required("rows", PType::integer, "PE rows of one array");
        rows.min = 1;
        // Far beyond any built array; keeps cycle counts (R·C·folds) inside 64-bit arithmetic.
        rows.max = 65536;
        s.params.push_back(rows);
        Param cols = cfg::required("cols", PType::integer, "PE columns of one array");
        cols.min = 1;
        cols.max = 65536;
        s.params.push_back(cols);
        Param arrays = cfg::optional("arrays", PType::integer, "1",
                                     "arrays sharing the buffers and main memory (e.g. MXUs); work is "
                                     "partitioned across them");
        arrays.min = 1;
        arrays.max = 65536;
        s.params.push_back(arrays);
        // The long names are accepted for configs written before the short ones were chosen.
        s.params.push_back(choice_param("dataflow", "ws",
                                        {"os", "ws", "is", "output_stationary", "weight_stationary",
                                         "input_stationary"},
                                        "output-, weight- or input-stationary"));
        s.params.push_back(choice_param("fidelity", "tile", {"tile", "cycle"},
                                        "tile: closed-form folds; cycle: PE grid stepped with real values"));
        s.params.push_back(choice_param("convention", "faithful", {"faithful", "scalesim"},
                                        "faithful: mlsim timing; scalesim: SCALE-Sim v2 CALC-mode cycle count"));
        Param buffers = map_param("buffers", systolic_buffers_schema(), "on-chip SRAM per operand");
        buffers.required = true;
        s.params.push_back(buffers);
        s.params.push_back(choice_param("tiling", "search", {"search", "fixed"},
                                        "search: fewest estimated cycles; fixed: use `tile`"));
        s.params.push_back(map_param("tile", systolic_tile_schema(), "tile extents for `tiling: fixed`"));
        Param vector = optional_no_default("vector_throughput", PType::quantity,
                                           "vector unit for non-matmul ops; default cols x arrays x clock "
                                           "(one element per column per cycle); never faster than the op's peak");
        vector.dim = Dim::throughput;
        vector.positive = true;
        s.params.push_back(vector);
        Param hop = cfg::quantity("pe_hop_energy", Dim::energy, std::string("0pJ"),
                                  "energy of moving one operand word to a neighbouring PE", false);
        hop.min = 0.0;
        s.params.push_back(hop);
        return s;
    }();
    return schema;
}

const cfg::Schema& gpu_schema() {
    static const cfg::Schema schema = [] {
        cfg::Schema s;
        s.name = "device.gpu";
        s.doc = "SIMT GPU organisation (used by the detailed GPU model)";
        s.params.push_back(count_param("sms", "streaming multiprocessors"));
        s.params.push_back(count_param("cuda_cores_per_sm", "FP32 lanes per SM"));
        s.params.push_back(count_param("tensor_cores_per_sm", "tensor cores per SM"));
        s.params.push_back(size_param("registers_per_sm", "register file per SM"));
        s.params.push_back(size_param("shared_memory_per_sm", "largest shared-memory carve-out per SM"));
        return s;
    }();
    return schema;
}

const cfg::Schema& cpu_schema() {
    static const cfg::Schema schema = [] {
        cfg::Schema s;
        s.name = "device.cpu";
        s.doc = "CPU organisation (used by the detailed CPU model)";
        s.params.push_back(count_param("cores", "physical cores"));
        s.params.push_back(size_param("simd_width", "SIMD register width, e.g. 512b"));
        s.params.push_back(count_param("fma_units_per_core", "SIMD FMA pipes per core"));
        Param matrix = optional_no_default("matrix_unit", PType::string, "matrix extension, e.g. amx");
        s.params.push_back(matrix);
        return s;
    }();
    return schema;
}

const cfg::Schema& mcu_schema() {
    static const cfg::Schema schema = [] {
        cfg::Schema s;
        s.name = "device.mcu";
        s.doc = "microcontroller organisation (used by the detailed MCU model)";
        s.params.push_back(optional_no_default("core", PType::string, "CPU core, e.g. cortex-m7"));
        s.params.push_back(count_param("macs_per_cycle", "int8/int16 MACs per cycle of the SIMD/DSP unit"));
        Param ws = optional_no_default("flash_wait_states", PType::integer, "flash wait states at `clock`");
        ws.min = 0;
        s.params.push_back(ws);
        s.params.push_back(size_param("flash_line", "bytes fetched from flash per access"));
        return s;
    }();
    return schema;
}

std::string join(const std::vector<std::string>& items, std::string_view sep = ", ") {
    std::string out;
    for (size_t i = 0; i < items.size(); ++i) {
        if (i) out += sep;
        out += items[i];
    }
    return out;
}

bool contains(const std::vector<std::string>& items, std::string_view item) {
    return std::find(items.begin(), items.end(), item) != items.end();
}

std::string did_you_mean(std::string_view word, const std::vector<std::string>& candidates) {
    std::string near = cfg::nearest(word, candidates);
    return near.empty() ? std::string() : " (did you mean '" + near + "'?)";
}

const cfg::Node& child(const cfg::Node& map, std::string_view key) {
    const cfg::Node* n = map.find(key);
    MLSIM_CHECK(n != nullptr, "validated tree lacks key " + std::string(key));
    return *n;
}

// A complaint about a whole map or list points at its key; one about a value points at the value.
[[noreturn]] void fail_at(const cfg::Node& node, const std::string& message) {
    cfg::fail(node.is_scalar() ? node.loc() : node.key_loc(), node.path(), message);
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
        s.params.push_back(node);
        s.params.push_back(
            cfg::quantity("clock", Dim::frequency, std::nullopt, "clock the peaks are quoted at"));
        s.params.push_back(dict_param(
            "peak", Dim::throughput, true,
            "dense peak throughput per data type (" + join(known_dtypes(), " ") + "); one MAC = 2 ops"));
        s.params.push_back(dict_param("mac_energy", Dim::energy, false,
                                      "energy per MAC per data type; every data type with a peak needs one"));
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
        s.params.push_back(map_param("systolic", systolic_schema(), "systolic array detail (tpu, npu)"));
        s.params.push_back(map_param("gpu", gpu_schema(), "GPU detail (gpu)"));
        s.params.push_back(map_param("cpu", cpu_schema(), "CPU detail (cpu)"));
        s.params.push_back(map_param("mcu", mcu_schema(), "microcontroller detail (mcu, npu)"));
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
    cfg::SourceLoc loc = node ? node->loc() : cfg::SourceLoc{};
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

const cfg::Node* DeviceSpec::section(std::string_view section_name) const {
    if (!resolved.is_map()) return nullptr;
    const cfg::Node* n = resolved.find(section_name);
    if (!n || !n->is_map() || n->entries().empty()) return nullptr;
    return n;
}

namespace {

// Enough digits that the value can be pasted back into the config and pass the check.
std::string exact_throughput(double ops) {
    static const std::pair<double, const char*> units[] = {
        {1e15, "POP/s"}, {1e12, "TOP/s"}, {1e9, "GOP/s"}, {1e6, "MOP/s"}, {1e3, "kOP/s"}};
    for (const auto& [scale, unit] : units)
        if (ops >= scale) return fmt::format("{:.7g}{}", ops / scale, unit);
    return fmt::format("{:.7g}OP/s", ops);
}

systolic::BufferSpec parse_buffer(const cfg::Reader& r, const std::string& operand) {
    systolic::BufferSpec b;
    b.name = r.has("name") ? r.str("name") : operand;
    b.capacity_bytes = r.quantity("capacity");
    b.bandwidth_Bps = r.quantity("bandwidth");
    b.double_buffered = r.boolean("double_buffered");
    b.read_energy_J_per_byte = r.quantity("read_energy");
    b.write_energy_J_per_byte = r.has("write_energy") ? r.quantity("write_energy") : b.read_energy_J_per_byte;
    return b;
}

// The systolic section, with the checks that tie it to the roofline figures: a detailed model may
// never report a layer faster than the roofline of the same device, so every peak must be at least
// what the array computes at its rate for that data type (and close to it, or the roofline misleads).
systolic::SystolicSpec parse_systolic(const cfg::Node& dev, const DeviceSpec& d) {
    const cfg::Node& node = child(dev, "systolic");
    const cfg::Reader r(node, systolic_schema());
    systolic::SystolicSpec s;
    s.rows = r.integer("rows");
    s.cols = r.integer("cols");
    s.arrays = r.integer("arrays");
    std::string df = r.str("dataflow");
    if (df == "output_stationary") df = "os";
    if (df == "weight_stationary") df = "ws";
    if (df == "input_stationary") df = "is";
    const std::optional<systolic::Dataflow> dataflow = systolic::parse_dataflow(df);
    MLSIM_CHECK(dataflow.has_value(), "validated dataflow does not parse: " + df);
    s.dataflow = *dataflow;
    s.fidelity = *systolic::parse_fidelity(r.str("fidelity"));
    s.convention = *systolic::parse_convention(r.str("convention"));
    const cfg::Reader buffers = r.sub("buffers");
    s.ifmap = parse_buffer(buffers.sub("ifmap"), "ifmap");
    s.filter = parse_buffer(buffers.sub("filter"), "filter");
    s.ofmap = parse_buffer(buffers.sub("ofmap"), "ofmap");
    s.tiling = r.str("tiling") == "fixed" ? systolic::Tiling::fixed : systolic::Tiling::search;
    const cfg::Reader tile = r.sub("tile");
    s.tile_m = tile.integer("m");
    s.tile_n = tile.integer("n");
    s.tile_k = tile.integer("k");
    // Tile extents only take effect with `tiling: fixed`; given under `search` they would be ignored.
    if (s.tiling == systolic::Tiling::search && (s.tile_m || s.tile_n || s.tile_k))
        cfg::fail(tile.node().loc(), tile.node().path(),
                  "tile extents are used only with `tiling: fixed`; set `tiling: fixed` or remove `tile`");
    s.pe_hop_energy_J = r.quantity("pe_hop_energy");

    const double pes = static_cast<double>(s.rows) * static_cast<double>(s.cols) * static_cast<double>(s.arrays);
    const double array_rate = pes * 2 * d.clock_hz;
    const std::string rate_text =
        std::to_string(s.rows) + " x " + std::to_string(s.cols) + " x " + std::to_string(s.arrays) +
        " PEs x 2 x " + cfg::format_quantity(d.clock_hz, Dim::frequency) + " = " +
        cfg::format_quantity(array_rate, Dim::throughput);
    const cfg::Node& peak_node = child(dev, "peak");
    for (const auto& [dtype, peak] : d.peak_ops_per_s) {
        // A data type the array runs at reduced rate takes a whole number of passes per MAC.
        const double ratio = array_rate / peak;
        const int64_t passes = std::max<int64_t>(1, static_cast<int64_t>(std::llround(ratio)));
        const double expected = array_rate / static_cast<double>(passes);
        if (peak < expected * (1 - 1e-12) || peak > expected * 1.01) {
            const std::string rate = passes == 1 ? "its full rate" : "1/" + std::to_string(passes) + " rate";
            fail_at(child(peak_node, dtype),
                    "peak " + cfg::format_quantity(peak, Dim::throughput) + " for " + dtype +
                        " does not match the systolic array (" + rate_text + "): a data type's peak must be " +
                        "the array's rate divided by a whole number of passes, at least that and at most 1 % "
                        "more; the nearest is " + exact_throughput(expected * (1 + 1e-6)) + " (" + rate + ")");
        }
        s.passes[dtype] = passes;
    }
    // The vector unit may be given faster than a small array's peak (a sweep over array sizes keeps
    // it); the model then caps it at the op's peak, so the roofline still bounds every op.
    s.vector_throughput_ops = r.has("vector_throughput")
                                  ? r.quantity("vector_throughput")
                                  : static_cast<double>(s.cols) * static_cast<double>(s.arrays) * d.clock_hz;
    return s;
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

    d.peak_ops_per_s = dtype_table(r, "peak", true);
    if (d.peak_ops_per_s.empty())
        fail_at(r.at("peak"), "needs at least one data type (" + join(known_dtypes()) + ")");
    d.mac_energy_J = dtype_table(r, "mac_energy", false);
    for (const auto& [dtype, peak] : d.peak_ops_per_s) {
        if (d.mac_energy_J.count(dtype) == 0)
            fail_at(r.at("mac_energy"), "no MAC energy for data type '" + dtype +
                                            "', which has a peak; every data type in `peak` needs one here");
    }

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
        m.bandwidth_Bps = lr.quantity("bandwidth");
        if (!(m.bandwidth_Bps > 0)) fail_at(lr.at("bandwidth"), "must be greater than zero");
        m.latency_s = lr.quantity("latency");
        if (m.latency_s < 0) fail_at(lr.at("latency"), "must be zero or more");
        m.read_energy_J_per_byte = lr.quantity("read_energy");
        if (m.read_energy_J_per_byte < 0) fail_at(lr.at("read_energy"), "must be zero or more");
        m.write_energy_J_per_byte =
            lr.has("write_energy") ? lr.quantity("write_energy") : m.read_energy_J_per_byte;
        if (m.write_energy_J_per_byte < 0) fail_at(lr.at("write_energy"), "must be zero or more");
        if (!d.memory.empty()) {
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

    for (const auto& [section, families] : section_families()) {
        const cfg::Node* n = dev->find(section);
        if (!n || !n->is_map() || n->entries().empty()) continue;
        if (!contains(families, d.family))
            fail_at(*n, "a `" + section + ":` section describes a " + join(families, " or ") +
                            " device, but this device's family is '" + d.family + "'");
    }
    if (const cfg::Node* sys = dev->find("systolic"); sys && sys->is_map() && !sys->entries().empty())
        d.systolic = parse_systolic(*dev, d);
    // validate() fills every absent section with an empty map; records read better without them.
    d.resolved = *dev;
    for (const auto& [section, families] : section_families()) {
        const cfg::Node* n = d.resolved.find(section);
        if (n && (n->is_null() || (n->is_map() && n->entries().empty()))) d.resolved.erase(section);
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
