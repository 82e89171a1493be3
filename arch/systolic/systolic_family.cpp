// The systolic-array family: its `systolic:` section (declared here, next to the model), how the section
// is parsed and how it fixes the device's peaks, the model's factory, its run options and summary lines.
#include <fmt/format.h>

#include <algorithm>
#include <cmath>

#include "arch/device_model.h"
#include "arch/family.h"
#include "arch/section_params.h"
#include "arch/systolic/scalesim_cfg.h"
#include "arch/systolic/systolic_model.h"
#include "arch/systolic/systolic_spec.h"
#include "sim/config/error.h"
#include "sim/config/limits.h"
#include "sim/config/messages.h"
#include "sim/config/units.h"
#include "sim/core/check.h"

namespace mlsim::arch::systolic {

using cfg::child;
using cfg::fail_at;

namespace {

// One operand buffer of the systolic array. The keys are fixed: a SCALE-Sim .cfg translator
// (arch/systolic/scalesim_cfg.cpp) writes exactly these names.
const cfg::Schema& systolic_buffer_schema() {
    static const cfg::Schema schema = [] {
        cfg::Schema s;
        s.name = "device.systolic.buffers.<operand>";
        s.doc = "one operand's on-chip SRAM; its word size is the layer's data type";
        s.params.push_back(optional_no_default(
            "name", cfg::PType::string, "buffer name, e.g. unified_buffer; the operand's name when absent"));
        s.params.push_back(cfg::quantity("capacity", cfg::Dim::size, std::nullopt,
                                         "capacity of the whole buffer (both halves when double-buffered)"));
        s.params.push_back(cfg::quantity("bandwidth", cfg::Dim::bandwidth, std::nullopt,
                                         "toward the array, per direction, shared by all arrays"));
        s.params.push_back(cfg::optional("double_buffered", cfg::PType::boolean, "true",
                                         "fill / drain one half while the array uses the other"));
        cfg::Param read = cfg::quantity("read_energy", cfg::Dim::energy_per_byte, std::nullopt,
                                        "energy per byte read from this buffer", false);
        read.min = 0.0;
        s.params.push_back(read);
        cfg::Param write =
            optional_no_default("write_energy", cfg::PType::quantity,
                                "energy per byte written to this buffer; read_energy when absent");
        write.dim = cfg::Dim::energy_per_byte;
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
        for (const auto& [name, doc] : {std::pair<const char*, const char*>{
                                            "ifmap", "input activations (A; im2col rows of a convolution)"},
                                        {"filter", "weights (B)"},
                                        {"ofmap", "outputs and partial sums (C)"}}) {
            cfg::Param p = map_param(name, systolic_buffer_schema(), doc);
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
            cfg::Param p =
                cfg::optional(dim, cfg::PType::integer, "0",
                              std::string("tile extent along ") + dim + "; 0 = the whole dimension");
            p.min = 0;
            p.max = static_cast<double>(limits::max_tile_extent);  // products of extents stay in 64 bits
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
        cfg::Param rows = cfg::required("rows", cfg::PType::integer, "PE rows of one array");
        rows.min = 1;
        // Far beyond any built array; keeps cycle counts (R·C·folds) inside 64-bit arithmetic.
        rows.max = static_cast<double>(limits::max_array_side);
        s.params.push_back(rows);
        cfg::Param cols = cfg::required("cols", cfg::PType::integer, "PE columns of one array");
        cols.min = 1;
        cols.max = static_cast<double>(limits::max_array_side);
        s.params.push_back(cols);
        cfg::Param arrays = cfg::optional("arrays", cfg::PType::integer, "1",
                                          "arrays sharing the buffers and main memory (e.g. MXUs); work is "
                                          "partitioned across them");
        arrays.min = 1;
        arrays.max = static_cast<double>(limits::max_array_side);
        s.params.push_back(arrays);
        // The long names are accepted for configs written before the short ones were chosen.
        s.params.push_back(
            choice_param("dataflow", "ws",
                         {"os", "ws", "is", "output_stationary", "weight_stationary", "input_stationary"},
                         "output-, weight- or input-stationary"));
        s.params.push_back(choice_param("fidelity", "tile", {"tile", "cycle"},
                                        "tile: closed-form folds; cycle: PE grid stepped with real values"));
        s.params.push_back(
            choice_param("convention", "faithful", {"faithful", "scalesim"},
                         "faithful: mlsim timing; scalesim: SCALE-Sim v2 CALC-mode cycle count"));
        cfg::Param buffers = map_param("buffers", systolic_buffers_schema(), "on-chip SRAM per operand");
        buffers.required = true;
        s.params.push_back(buffers);
        s.params.push_back(choice_param("tiling", "search", {"search", "fixed"},
                                        "search: fewest estimated cycles; fixed: use `tile`"));
        s.params.push_back(map_param("tile", systolic_tile_schema(), "tile extents for `tiling: fixed`"));
        // A data type the array computes at a fraction of its rate takes a whole number of passes per MAC.
        cfg::Param passes;
        passes.name = "passes";
        passes.type = cfg::PType::dict;
        passes.value_type = cfg::PType::integer;
        passes.choices = known_dtypes();
        passes.min = 1;
        passes.max = static_cast<double>(limits::max_passes);
        passes.doc =
            "array passes per MAC, per data type (e.g. int16: 4 on an 8-bit array); 1 when absent. "
            "The peak of a data type is rows x cols x arrays x 2 x clock / passes";
        s.params.push_back(passes);
        cfg::Param vector =
            optional_no_default("vector_throughput", cfg::PType::quantity,
                                "vector unit for non-matmul ops; default cols x arrays x clock "
                                "(one element per column per cycle); never faster than the op's peak");
        vector.dim = cfg::Dim::throughput;
        vector.positive = true;
        s.params.push_back(vector);
        cfg::Param acc = optional_no_default(
            "accumulator_bits", cfg::PType::integer,
            "bits of one partial sum in the ofmap buffer (e.g. 32 for TPU v1's accumulators); its capacity "
            "is counted in these words and spilled partial sums move at this width. Absent: the layer's word "
            "size; never narrower than it");
        acc.min = 1;
        acc.max = 128;
        s.params.push_back(acc);
        s.params.push_back(cfg::optional(
            "keep_activations", cfg::PType::boolean, "true",
            "a layer's output stays in the ifmap buffer for the layers that read it when it fits beside the "
            "other activations kept there and their tiles (faithful convention); false: every layer "
            "reads its inputs from and writes its output to main memory"));
        cfg::Param hop = cfg::quantity("pe_hop_energy", cfg::Dim::energy, std::string("0pJ"),
                                       "energy of moving one operand word to a neighbouring PE", false);
        hop.min = 0.0;
        s.params.push_back(hop);
        return s;
    }();
    return schema;
}

// Enough digits that the value can be pasted back into the config and pass the check.
std::string exact_throughput(double ops) {
    static const std::pair<double, const char*> units[] = {
        {1e15, "POP/s"}, {1e12, "TOP/s"}, {1e9, "GOP/s"}, {1e6, "MOP/s"}, {1e3, "kOP/s"}};
    for (const auto& [scale, unit] : units)
        if (ops >= scale) return fmt::format("{:.7g}{}", ops / scale, unit);
    return fmt::format("{:.7g}OP/s", ops);
}

BufferSpec parse_buffer(const cfg::Reader& r, const std::string& operand) {
    BufferSpec b;
    b.name = r.has("name") ? r.str("name") : operand;
    b.capacity_bytes = r.quantity("capacity");
    b.bandwidth_Bps = r.quantity("bandwidth");
    b.double_buffered = r.boolean("double_buffered");
    b.read_energy_J_per_byte = r.quantity("read_energy");
    b.write_energy_J_per_byte = r.has("write_energy") ? r.quantity("write_energy") : b.read_energy_J_per_byte;
    return b;
}

// The systolic section, with the rule that ties it to the roofline figures: a detailed model may never
// report a layer faster than the roofline of the same device, so the array fixes each data type's peak
// at rows x cols x arrays x 2 x clock / passes. Without `peak:` the device's peaks are derived so (for
// every data type with a MAC energy); a declared peak must be at least that and at most 1 % more (and,
// without `passes:` for its data type, it tells the passes: the nearest whole ratio).
std::shared_ptr<const FamilyParams> parse_systolic(const cfg::Node& dev, DeviceSpec& d) {
    const cfg::Node& node = child(dev, "systolic");
    const cfg::Reader r(node, systolic_schema());
    auto sp = std::make_shared<SystolicSpec>();
    SystolicSpec& s = *sp;
    s.rows = r.integer("rows");
    s.cols = r.integer("cols");
    s.arrays = r.integer("arrays");
    std::string df = r.str("dataflow");
    if (df == "output_stationary") df = "os";
    if (df == "weight_stationary") df = "ws";
    if (df == "input_stationary") df = "is";
    const std::optional<Dataflow> dataflow = parse_dataflow(df);
    MLSIM_CHECK(dataflow.has_value(), "validated dataflow does not parse: " + df);
    s.dataflow = *dataflow;
    s.fidelity = *parse_fidelity(r.str("fidelity"));
    s.convention = *parse_convention(r.str("convention"));
    const cfg::Reader buffers = r.sub("buffers");
    s.ifmap = parse_buffer(buffers.sub("ifmap"), "ifmap");
    s.filter = parse_buffer(buffers.sub("filter"), "filter");
    s.ofmap = parse_buffer(buffers.sub("ofmap"), "ofmap");
    s.tiling = r.str("tiling") == "fixed" ? Tiling::fixed : Tiling::search;
    const cfg::Reader tile = r.sub("tile");
    s.tile_m = tile.integer("m");
    s.tile_n = tile.integer("n");
    s.tile_k = tile.integer("k");
    // Tile extents only take effect with `tiling: fixed`; given under `search` they would be ignored.
    if (s.tiling == Tiling::search && (s.tile_m || s.tile_n || s.tile_k))
        cfg::fail(tile.node().loc(), tile.node().path(),
                  "tile extents are used only with `tiling: fixed`; set `tiling: fixed` or remove `tile`");
    s.pe_hop_energy_J = r.quantity("pe_hop_energy");
    s.accumulator_bits = r.has("accumulator_bits") ? r.integer("accumulator_bits") : 0;
    s.keep_activations = r.boolean("keep_activations");
    // The vector unit may be given faster than a small array's peak (a sweep over array sizes keeps
    // it); the model then caps it at the op's peak, so the roofline still bounds every op.
    s.vector_throughput_ops = r.has("vector_throughput")
                                  ? r.quantity("vector_throughput")
                                  : static_cast<double>(s.cols) * static_cast<double>(s.arrays) * d.clock_hz;

    std::map<std::string, int64_t> given_passes;
    const cfg::Node* passes_node = node.find("passes");
    if (passes_node && passes_node->is_map())
        for (const auto& [dtype, value] : passes_node->entries()) {
            if (!d.mac_energy_J.count(dtype))
                fail_at(value,
                        "passes for data type '" + dtype + "', which has no MAC energy (`mac_energy`)");
            given_passes[dtype] = value.as_int();
        }

    const double pes =
        static_cast<double>(s.rows) * static_cast<double>(s.cols) * static_cast<double>(s.arrays);
    const double array_rate = pes * 2 * d.clock_hz;
    const double max_rate = limits::quantity_range(cfg::Dim::throughput).max;
    if (array_rate > max_rate)
        fail_at(
            child(node, "rows"),
            fmt::format("the array's peak, rows x cols x arrays x 2 x clock = {}, exceeds {}, the largest "
                        "throughput mlsim accepts",
                        cfg::format_quantity(array_rate, cfg::Dim::throughput),
                        cfg::format_quantity(max_rate, cfg::Dim::throughput)));
    const std::string rate_text = std::to_string(s.rows) + " x " + std::to_string(s.cols) + " x " +
                                  std::to_string(s.arrays) + " PEs x 2 x " +
                                  cfg::format_quantity(d.clock_hz, cfg::Dim::frequency) + " = " +
                                  cfg::format_quantity(array_rate, cfg::Dim::throughput);
    if (d.peak_ops_per_s.empty()) {
        // Derived: every data type the device has a MAC energy for.
        for (const auto& [dtype, energy] : d.mac_energy_J) {
            auto it = given_passes.find(dtype);
            const int64_t passes = it == given_passes.end() ? 1 : it->second;
            s.passes[dtype] = passes;
            d.peak_ops_per_s[dtype] = array_rate / static_cast<double>(passes);
        }
        return sp;
    }
    const cfg::Node& peak_node = child(dev, "peak");
    for (const auto& [dtype, peak] : d.peak_ops_per_s) {
        auto it = given_passes.find(dtype);
        const int64_t passes =
            it != given_passes.end()
                ? it->second
                : std::max<int64_t>(1, static_cast<int64_t>(std::llround(array_rate / peak)));
        const double expected = array_rate / static_cast<double>(passes);
        if (peak < expected * (1 - 1e-12) || peak > expected * 1.01) {
            const std::string rate = passes == 1 ? "its full rate" : "1/" + std::to_string(passes) + " rate";
            fail_at(child(peak_node, dtype),
                    "peak " + cfg::format_quantity(peak, cfg::Dim::throughput) + " for " + dtype +
                        " does not match the systolic array (" + rate_text +
                        "): a data type's peak must be " +
                        "the array's rate divided by a whole number of passes, at least that and at most 1 % "
                        "more; the nearest is " +
                        exact_throughput(expected * (1 + 1e-6)) + " (" + rate +
                        "). Leave `peak` out to have it derived from the array");
        }
        s.passes[dtype] = passes;
    }
    for (const auto& [dtype, passes] : given_passes)
        if (!d.peak_ops_per_s.count(dtype))
            fail_at(child(*passes_node, dtype), "passes for data type '" + dtype +
                                                    "', which has no peak in `peak` (list it there, or leave "
                                                    "`peak` out to have every peak derived from the array)");
    return sp;
}

// The run's cycles, its stalls by cause, and the activations it kept on chip, summed over the layers.
std::vector<std::string> summary_lines(const std::vector<LayerResult>& layers) {
    int64_t cycles = 0, stalls = 0;
    double weight = 0, input = 0, output = 0, shift = 0, on_chip = 0, from_dram = 0;
    int64_t kept = 0, outputs = 0;
    for (const LayerResult& l : layers) {
        cycles += l.cycles;
        stalls += l.stall_cycles;
        weight += l.metric_value("stall_weight_cycles");
        input += l.metric_value("stall_input_cycles");
        output += l.metric_value("stall_output_cycles");
        shift += l.metric_value("stall_shift_cycles");
        on_chip += l.metric_value("input_bytes_on_chip");
        from_dram += l.metric_value("input_bytes_from_dram");
        kept += l.metric_value("output_bytes_kept") > 0;
        outputs += l.counts.output_bytes > 0;
    }
    return {
        fmt::format("cycles  {} (systolic model; stalls {}: weight {:.0f}, input {:.0f}, output {:.0f}; "
                    "of them shifting stationary operands {:.0f})",
                    cycles, stalls, weight, input, output, shift),
        fmt::format("on chip {} of {} layer outputs kept for later layers; inputs read {} on chip, {} from "
                    "main memory",
                    kept, outputs, bytes_si(on_chip), bytes_si(from_dram))};
}

}  // namespace

void register_family() {
    Family f;
    f.name = "systolic";
    f.description = "systolic arrays (TPU-like): PE grid, per-operand SRAM buffers, tiling, DRAM channel";
    f.section = "systolic";
    f.schema = &systolic_schema();
    f.hardware = {"tpu", "npu"};
    f.parse = parse_systolic;
    f.factory = [](const DeviceSpec& spec) -> std::unique_ptr<DeviceModel> {
        return std::make_unique<SystolicModel>(spec);
    };
    f.options = {
        {"fidelity", "device.systolic.fidelity",
         "systolic devices: tile (closed-form folds in the event engine, default) | cycle (PE grid stepped "
         "cycle by cycle with real values)"},
        {"convention", "device.systolic.convention",
         "systolic devices: faithful (default) | scalesim (SCALE-Sim v2 cycle counts, CALC mode)"},
    };
    f.system_formats = {{".cfg", "SCALE-Sim config", load_scalesim_cfg}};
    f.summary = summary_lines;
    register_family(std::move(f));
}

}  // namespace mlsim::arch::systolic
