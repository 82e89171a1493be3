// The microcontroller family: its `mcu:` section (declared here, next to the model), how the section is
// parsed and how the core fixes the device's peaks, the model's factory and its summary lines.
#include <fmt/format.h>

#include <cmath>
#include <map>

#include "arch/device_model.h"
#include "arch/family.h"
#include "arch/mcu/mcu_model.h"
#include "arch/mcu/mcu_spec.h"
#include "arch/section_params.h"
#include "sim/config/error.h"
#include "sim/config/messages.h"
#include "sim/config/units.h"

namespace mlsim::arch::mcu {

using cfg::child;
using cfg::fail_at;

namespace {

// The cores. MAC rates from Arm's technical reference manuals:
//  * Cortex-M4 (TRM r0p1, "Processor instruction timings"): SMLAD (two 16 x 16 MACs) in 1 cycle, so
//    2 int16 MACs / cycle; int8 operands are sign-extended to 16-bit pairs (SXTB16) first, as CMSIS-NN
//    does, so int8 has the same peak. FPU ("FPU instruction set" table): VFMA.F32 3 cycles.
//    Single issue.
//  * Cortex-M7 (TRM r1p2, "Dual-issue"): SMLAD single-cycle throughput on its one MAC pipeline (2 MACs /
//    cycle); pipelined single-precision FMA, 1 / cycle. Dual issue: a load or an ALU op may pair with the
//    MAC; issue_width 1.5 (est.: about half of the non-MAC instructions of a CMSIS-NN inner loop pair).
//  * Cortex-M33 (TRM r0p4; Armv8-M DSP extension): SMLAD 1 cycle as on the M4; FPU VFMA.F32 taken as the
//    M4's 3 cycles (est.; the TRM gives no FMA throughput). Single issue.
//  * Cortex-M55 (TRM r1p0, "Helium"): dual-beat MVE: a 128-bit vector instruction in 2 cycles, so
//    VMLADAV.S8 gives 16 MACs / 2 cycles = 8 int8 MACs / cycle, 4 int16, and VFMA.F32 4 lanes / 2 cycles
//    = 2 FP32 MACs / cycle. Scalar pipeline single issue.
//  * Cortex-M85 (TRM r0p2): the same dual-beat Helium datapath as the M55; dual-issue scalar pipeline
//    (issue_width 1.5, est. as for the M7).
const std::vector<CoreInfo>& cores() {
    static const std::vector<CoreInfo> table = {
        {"cortex-m4", 2, 2, 1.0 / 3, 1.0, false},  {"cortex-m7", 2, 2, 1, 1.5, false},
        {"cortex-m33", 2, 2, 1.0 / 3, 1.0, false}, {"cortex-m55", 8, 4, 2, 1.0, true},
        {"cortex-m85", 8, 4, 2, 1.5, true},
    };
    return table;
}

std::vector<std::string> core_names() {
    std::vector<std::string> names;
    for (const CoreInfo& c : cores()) names.push_back(c.name);
    return names;
}

const cfg::Schema& mcu_schema() {
    static const cfg::Schema schema = [] {
        cfg::Schema s;
        s.name = "device.mcu";
        s.doc = "microcontroller organisation (read by the detailed MCU model)";
        cfg::Param core = cfg::required("core", cfg::PType::string, "CPU core: its DSP / Helium MAC rates");
        core.choices = core_names();
        s.params.push_back(core);
        s.params.push_back(count_param(
            "macs_per_cycle", "int8 MACs per cycle of the SIMD/DSP unit; checked against the core's"));
        cfg::Param ws = cfg::required("flash_wait_states", cfg::PType::integer,
                                      "flash wait states at `clock` (datasheet / reference manual)");
        ws.min = 0;
        ws.max = 64;
        s.params.push_back(ws);
        cfg::Param line = size_param("flash_line", "bytes fetched from flash per access");
        line.required = true;
        s.params.push_back(line);
        s.params.push_back(cfg::quantity("flash_cache", cfg::Dim::size, std::string("0B"),
                                         "data cache / accelerator in front of the flash", false));
        s.params.push_back(choice_param("runtime", "cmsis-nn", {"cmsis-nn", "reference"},
                                        "cmsis-nn: optimised int8 kernels (SIMD); reference: portable "
                                        "scalar kernels"));
        cfg::Param disp = cfg::optional("dispatch_cycles", cfg::PType::integer, "1000",
                                        "per-operator cycles of the runtime's interpreter (est.)");
        disp.min = 0;
        disp.max = 100000000;
        s.params.push_back(disp);
        s.params.push_back(cfg::quantity("runtime_ram", cfg::Dim::size, std::string("0B"),
                                         "SRAM the runtime needs besides the tensor arena", false));
        return s;
    }();
    return schema;
}

std::shared_ptr<const FamilyParams> parse_mcu(const cfg::Node& dev, DeviceSpec& d) {
    const cfg::Node& node = child(dev, "mcu");
    const cfg::Reader r(node, mcu_schema());
    auto mp = std::make_shared<McuSpec>();
    McuSpec& m = *mp;
    const CoreInfo* core = find_core(r.str("core"));
    if (core == nullptr) fail_at(child(node, "core"), "unknown core");
    m.core = *core;
    if (r.has("macs_per_cycle") &&
        static_cast<double>(r.integer("macs_per_cycle")) != core->int8_macs_per_cycle)
        fail_at(child(node, "macs_per_cycle"),
                fmt::format("{} int8 MACs per cycle, but a {} issues {:g} (leave it out to have it derived)",
                            r.integer("macs_per_cycle"), core->name, core->int8_macs_per_cycle));
    m.flash_wait_states = r.integer("flash_wait_states");
    m.flash_line_bytes = r.quantity("flash_line");
    m.flash_cache_bytes = r.quantity("flash_cache");
    m.runtime = r.str("runtime") == "reference" ? Runtime::reference : Runtime::cmsis_nn;
    m.dispatch_cycles = static_cast<double>(r.integer("dispatch_cycles"));
    m.runtime_ram_bytes = r.quantity("runtime_ram");
    m.loc = node.loc();
    m.key_path = node.path();
    const MemoryLevel* sram = nullptr;
    const MemoryLevel* flash = nullptr;
    for (const MemoryLevel& lv : d.memory) {
        if (lv.name == "sram") sram = &lv;
        if (lv.name == "flash") flash = &lv;
    }
    if (sram == nullptr || flash == nullptr || &d.main_memory() != flash)
        fail_at(child(dev, "memory"),
                "the MCU model needs memory levels named `sram` and `flash`, flash the last (main memory)");
    m.sram_bytes = sram->total_capacity_bytes();
    m.flash_bytes = flash->total_capacity_bytes();
    // The flash as the roofline sees it: one line per (wait states + 1) cycles.
    const double flash_Bps = m.flash_line_bytes / static_cast<double>(m.flash_wait_states + 1) * d.clock_hz;
    if (std::abs(flash->bandwidth_Bps - flash_Bps) > 0.01 * flash_Bps)
        fail_at(
            child(dev, "memory"),
            fmt::format("flash bandwidth {} does not match flash_line / (flash_wait_states + 1) x clock = "
                        "{:.6g} MB/s (within 1 %)",
                        cfg::format_quantity(flash->bandwidth_Bps, cfg::Dim::bandwidth), flash_Bps / 1e6));

    // The peaks the core gives: MACs / cycle x 2 x clock.
    std::map<std::string, double> derived = {{"int8", core->int8_macs_per_cycle * 2 * d.clock_hz},
                                             {"int16", core->int16_macs_per_cycle * 2 * d.clock_hz},
                                             {"fp32", core->fp32_macs_per_cycle * 2 * d.clock_hz}};
    if (d.peak_ops_per_s.empty()) {
        d.peak_ops_per_s = derived;
        return mp;
    }
    const cfg::Node& peak_node = child(dev, "peak");
    for (const auto& [dtype, peak] : d.peak_ops_per_s) {
        auto it = derived.find(dtype);
        if (it == derived.end())
            fail_at(child(peak_node, dtype), "peak for " + dtype + ", which a " + core->name +
                                                 " does not compute (int8, int16 and fp32 only)");
        if (std::abs(peak - it->second) > 0.01 * it->second)
            fail_at(child(peak_node, dtype),
                    fmt::format("peak {} for {} does not match the {}: MACs per cycle x 2 x clock = {:.6g} "
                                "MOP/s (a declared peak must agree within 1 %; leave `peak` out to have it "
                                "derived)",
                                cfg::format_quantity(peak, cfg::Dim::throughput), dtype, core->name,
                                it->second / 1e6));
    }
    return mp;
}

std::vector<std::string> summary_lines(const std::vector<LayerResult>& layers) {
    double flash = 0, stall = 0, energy = 0, time = 0, macs = 0, cycles = 0, arena = 0, largest = 0;
    for (const LayerResult& l : layers) {
        flash += l.bytes_read;
        stall += l.metric_value("flash_wait_cycles");
        energy += l.energy_j();
        time += l.time_s;
        macs += l.counts.macs;
        cycles += static_cast<double>(l.cycles);
        arena = std::max(arena, l.metric_value("arena_bytes"));
        largest = std::max(largest, l.metric_value("largest_layer_io_bytes"));
    }
    return {
        fmt::format("tensor arena {:.1f} KiB (largest layer's inputs + outputs {:.1f} KiB); flash read "
                    "{:.1f} KiB, {:.0f} wait cycles",
                    arena / 1024, largest / 1024, flash / 1024, stall),
        fmt::format("{:.3f} MACs per cycle overall; {:.1f} uJ per inference, average power {:.1f} mW",
                    cycles > 0 ? macs / cycles : 0.0, energy * 1e6, time > 0 ? energy / time * 1e3 : 0.0)};
}

}  // namespace

const McuSpec* spec_of(const DeviceSpec& spec) { return spec.params_of<McuSpec>("mcu"); }

const CoreInfo* find_core(const std::string& name) {
    for (const CoreInfo& c : cores())
        if (c.name == name) return &c;
    return nullptr;
}

void register_family() {
    Family f;
    f.name = "mcu";
    f.description =
        "microcontroller: one core running CMSIS-NN-style int8 kernels, SRAM arena, flash weights";
    f.section = "mcu";
    f.schema = &mcu_schema();
    // An NPU is either a spatial array (systolic) or a microcontroller with an accelerator attached.
    f.hardware = {"mcu", "npu"};
    f.parse = parse_mcu;
    f.factory = [](const DeviceSpec& spec) -> std::unique_ptr<DeviceModel> {
        return std::make_unique<McuModel>(spec);
    };
    f.summary = summary_lines;
    register_family(std::move(f));
}

}  // namespace mlsim::arch::mcu
