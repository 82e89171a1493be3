// The microcontroller family: its `mcu:` section (declared here, next to the model), how the section is
// parsed and how the core fixes the device's peaks, the model's factory and its summary lines.
#include <fmt/format.h>
#include <fmt/ranges.h>

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

const cfg::Schema& wait_step_schema() {
    static const cfg::Schema schema = [] {
        cfg::Schema s;
        s.name = "device.mcu.flash_wait_table";
        s.doc = "one row of the datasheet's flash wait-state table (at the supply-voltage range used)";
        s.params.push_back(
            cfg::quantity("max_clock", cfg::Dim::frequency, std::nullopt, "highest clock of this row"));
        cfg::Param ws = cfg::required("wait_states", cfg::PType::integer, "wait states up to max_clock");
        ws.min = 0;
        ws.max = 64;
        s.params.push_back(ws);
        return s;
    }();
    return schema;
}

const cfg::Schema& bank_schema() {
    static const cfg::Schema schema = [] {
        cfg::Schema s;
        s.name = "device.mcu.banks";
        s.doc = "one SRAM region (contiguous addresses) the tensor arena may be placed in";
        s.params.push_back(cfg::required("name", cfg::PType::string, "region name, e.g. dtcm, sram1"));
        s.params.push_back(cfg::quantity("capacity", cfg::Dim::size, std::nullopt, "bytes"));
        cfg::Param ws = cfg::optional("wait_states", cfg::PType::integer, "0",
                                      "extra core cycles per data access (after the data cache, if any)");
        ws.min = 0;
        ws.max = 64;
        s.params.push_back(ws);
        s.params.push_back(cfg::optional("tcm", cfg::PType::boolean, "false",
                                         "tightly coupled to the core (zero wait states)"));
        return s;
    }();
    return schema;
}

const cfg::Schema& external_schema() {
    static const cfg::Schema schema = [] {
        cfg::Schema s;
        s.name = "device.mcu.external";
        s.doc =
            "external memory (OCTOSPI PSRAM, SDRAM): holds the weights when the flash is too small, "
            "the arena when no SRAM bank holds it";
        s.params.push_back(cfg::required("name", cfg::PType::string, "e.g. psram, sdram"));
        s.params.push_back(cfg::quantity("capacity", cfg::Dim::size, std::nullopt, "bytes"));
        s.params.push_back(
            cfg::quantity("bandwidth", cfg::Dim::bandwidth, std::nullopt, "sustained read bandwidth"));
        s.params.push_back(cfg::quantity("latency", cfg::Dim::time, std::string("0ns"),
                                         "access latency of one burst (command + address + dummy cycles)",
                                         false));
        s.params.push_back(
            cfg::quantity("line", cfg::Dim::size, std::string("32B"), "bytes per burst (a cache line)"));
        cfg::Param e = cfg::quantity("read_energy", cfg::Dim::energy_per_byte, std::string("0pJ/B"),
                                     "energy per byte read", false);
        s.params.push_back(e);
        return s;
    }();
    return schema;
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
        cfg::Param ws = optional_no_default("flash_wait_states", cfg::PType::integer,
                                            "flash wait states at `clock` (datasheet / reference manual); "
                                            "required without `flash_wait_table`, must agree with it");
        ws.min = 0;
        ws.max = 64;
        s.params.push_back(ws);
        cfg::Param table = optional_no_default(
            "flash_wait_table", cfg::PType::list,
            "the datasheet's wait states per clock range, lowest first: the wait states (and the flash "
            "level's bandwidth) then follow `clock`");
        table.sub = &wait_step_schema();
        s.params.push_back(table);
        cfg::Param line = size_param("flash_line", "bytes fetched from flash per access");
        line.required = true;
        s.params.push_back(line);
        s.params.push_back(cfg::quantity("flash_cache", cfg::Dim::size, std::string("0B"),
                                         "data cache / accelerator in front of the flash", false));
        s.params.push_back(choice_param("runtime", "cmsis-nn", {"cmsis-nn", "reference"},
                                        "cmsis-nn: optimised int8 kernels (SIMD); reference: portable "
                                        "scalar kernels"));
        // Per operator (est., no published per-op overhead was found): TFLite Micro's Invoke loop
        // (node and registration look-up, the indirect call, the profiler scope when one is given:
        // some 30 instructions) and the kernel's prologue before its inner loop (GetEvalInput / Output
        // for 3-4 tensors, the op data, filling the cmsis_nn_context / dims / params structs, the
        // wrapper's choice of kernel and its buffer-size query: a few hundred instructions), about
        // 400 instructions, fetched from flash through a small instruction cache that misses on each
        // new kernel's code (each miss costs the flash wait states): ~1000 cycles.
        cfg::Param disp = cfg::optional("dispatch_cycles", cfg::PType::integer, "1000",
                                        "per-operator cycles of the runtime's interpreter (est.)");
        disp.min = 0;
        disp.max = 100000000;
        s.params.push_back(disp);
        s.params.push_back(cfg::quantity("runtime_ram", cfg::Dim::size, std::string("0B"),
                                         "SRAM the application needs in the arena's bank besides the "
                                         "arena and the runtime's records (which the model counts)",
                                         false));
        cfg::Param banks = optional_no_default(
            "banks", cfg::PType::list,
            "SRAM regions (their capacities add up to the `sram` level's); default: one region");
        banks.sub = &bank_schema();
        s.params.push_back(banks);
        s.params.push_back(cfg::optional("arena_bank", cfg::PType::string, "auto",
                                         "where the tensor arena goes: a bank's name, the external "
                                         "memory's, or auto (the fewest wait states that holds it, TCM "
                                         "first on a tie, then listed order; external when none does)"));
        s.params.push_back(map_param("external", external_schema(), "optional external memory"));
        s.params.push_back(optional_no_default(
            "active_power_per_mhz", cfg::PType::quantity,
            "run-mode power per MHz of clock (datasheet current per MHz x supply voltage); when given "
            "it sets `static_power` at `clock`"));
        s.params.back().dim = cfg::Dim::power;
        s.params.push_back(cfg::quantity("sleep_power", cfg::Dim::power, std::string("0W"),
                                         "power between inferences (sleep current x supply voltage)", false));
        s.params.push_back(cfg::quantity("duty_period", cfg::Dim::time, std::string("0s"),
                                         "one inference per period, asleep in between (0: back to back); up "
                                         "to a day",
                                         false));
        s.params.back().max = 86400;  // one inference a day; the valid range of other times ends at 1 s
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
    for (const cfg::Reader& row : r.list("flash_wait_table")) {
        WaitStep w{row.quantity("max_clock"), row.integer("wait_states")};
        if (!m.wait_table.empty() && (w.max_clock_hz <= m.wait_table.back().max_clock_hz ||
                                      w.wait_states < m.wait_table.back().wait_states))
            fail_at(row.node(), "rows must rise in clock and not fall in wait states");
        m.wait_table.push_back(w);
    }
    if (!m.wait_table.empty()) {
        m.flash_wait_states = wait_states_at(m.wait_table, d.clock_hz);
        if (m.flash_wait_states < 0)
            fail_at(child(dev, "clock"),
                    fmt::format("clock {} is above the flash wait-state table's last row ({})",
                                cfg::format_quantity(d.clock_hz, cfg::Dim::frequency),
                                cfg::format_quantity(m.wait_table.back().max_clock_hz, cfg::Dim::frequency)));
        if (r.has("flash_wait_states") && r.integer("flash_wait_states") != m.flash_wait_states)
            fail_at(r.at("flash_wait_states"),
                    fmt::format("{} wait states, but the table gives {} at {} (leave it out to have it "
                                "derived)",
                                r.integer("flash_wait_states"), m.flash_wait_states,
                                cfg::format_quantity(d.clock_hz, cfg::Dim::frequency)));
    } else if (r.has("flash_wait_states")) {
        m.flash_wait_states = r.integer("flash_wait_states");
    } else {
        fail_at(node, "needs `flash_wait_states` or `flash_wait_table`");
    }
    m.flash_line_bytes = r.quantity("flash_line");
    m.flash_cache_bytes = r.quantity("flash_cache");
    // A flash line is a power-of-two burst (the ART accelerator's 128- or 256-bit line, a cache's line);
    // a cache in front of the flash holds at most the flash (a typo of 4GiB for 4KiB made every layer's
    // weights hit it).
    {
        const double line = m.flash_line_bytes;
        if (!(line >= 1 && line <= 4096 && std::exp2(std::round(std::log2(line))) == line))
            fail_at(r.at("flash_line"), fmt::format("{} is not a power of two from 1 B to 4 KiB",
                                                    cfg::format_quantity(line, cfg::Dim::size)));
        for (const MemoryLevel& lv : d.memory)
            if (lv.name == "flash" && m.flash_cache_bytes > lv.capacity_bytes)
                fail_at(r.at("flash_cache"),
                        fmt::format("{} is larger than the flash it caches ({})",
                                    cfg::format_quantity(m.flash_cache_bytes, cfg::Dim::size),
                                    cfg::format_quantity(lv.capacity_bytes, cfg::Dim::size)));
    }
    m.runtime = r.str("runtime") == "reference" ? Runtime::reference : Runtime::cmsis_nn;
    m.dispatch_cycles = static_cast<double>(r.integer("dispatch_cycles"));
    m.runtime_ram_bytes = r.quantity("runtime_ram");
    m.loc = node.loc();
    m.key_path = node.path();
    m.arena_bank = r.str("arena_bank");
    m.sleep_power_W = r.quantity("sleep_power");
    m.duty_period_s = r.quantity("duty_period");
    if (r.has("active_power_per_mhz")) {
        d.static_power_W = r.quantity("active_power_per_mhz") * d.clock_hz / 1e6;
        if (d.static_power_W > d.tdp_W)
            fail_at(r.at("active_power_per_mhz"),
                    fmt::format("{} per MHz x {} = {}, above the TDP {}",
                                cfg::format_quantity(r.quantity("active_power_per_mhz"), cfg::Dim::power),
                                cfg::format_quantity(d.clock_hz, cfg::Dim::frequency),
                                cfg::format_quantity(d.static_power_W, cfg::Dim::power),
                                cfg::format_quantity(d.tdp_W, cfg::Dim::power)));
    }
    // Asleep, the part draws less than running (the datasheet's stop-mode current against its run-mode
    // one): a sleep power above the run-mode static power gave averages above the TDP.
    if (m.sleep_power_W > d.static_power_W)
        fail_at(
            r.at("sleep_power"),
            fmt::format("{} is above the run-mode static power {}: the part draws less asleep than running",
                        cfg::format_quantity(m.sleep_power_W, cfg::Dim::power),
                        cfg::format_quantity(d.static_power_W, cfg::Dim::power)));
    if (r.has("external")) {
        const cfg::Reader e = r.sub("external");
        m.external.name = e.str("name");
        m.external.bytes = e.quantity("capacity");
        m.external.bandwidth_Bps = e.quantity("bandwidth");
        m.external.latency_s = e.quantity("latency");
        m.external.line_bytes = e.quantity("line");
        m.external.read_energy_J_per_byte = e.quantity("read_energy");
        // A burst is a power-of-two line up to 4 KiB (as flash_line), and no larger than the memory.
        const double line = m.external.line_bytes;
        if (!(line >= 1 && line <= 4096 && std::exp2(std::round(std::log2(line))) == line))
            fail_at(e.at("line"), fmt::format("{} is not a power of two from 1 B to 4 KiB",
                                              cfg::format_quantity(line, cfg::Dim::size)));
        if (line > m.external.bytes)
            fail_at(e.at("line"), fmt::format("a {} line is larger than the memory ({})",
                                              cfg::format_quantity(line, cfg::Dim::size),
                                              cfg::format_quantity(m.external.bytes, cfg::Dim::size)));
        // Its name is where `arena_bank` sends the arena: a memory level's name would make that ambiguous.
        for (const MemoryLevel& lv : d.memory)
            if (lv.name == m.external.name)
                fail_at(e.at("name"),
                        fmt::format("'{}' is the name of a memory level; name the external memory apart",
                                    m.external.name));
    }
    // An NPU beside the core (a `systolic:` section, parsed before this one): the device's peaks are the
    // NPU's; the core runs the ops the NPU does not.
    m.npu = d.params.count("systolic") > 0;
    MemoryLevel* sram = nullptr;
    MemoryLevel* flash = nullptr;
    for (MemoryLevel& lv : d.memory) {
        if (lv.name == "sram") sram = &lv;
        if (lv.name == "flash") flash = &lv;
    }
    if (sram == nullptr || flash == nullptr || &d.main_memory() != flash)
        fail_at(child(dev, "memory"),
                "the MCU model needs memory levels named `sram` and `flash`, flash the last (main memory)");
    m.sram_bytes = sram->total_capacity_bytes();
    m.flash_bytes = flash->total_capacity_bytes();
    double bank_sum = 0;
    for (const cfg::Reader& b : r.list("banks")) {
        SramBank bank{b.str("name"), b.quantity("capacity"), b.integer("wait_states"), b.boolean("tcm")};
        if (bank.tcm && bank.wait_states != 0)
            fail_at(b.at("wait_states"), "a tightly coupled bank has zero wait states");
        for (const SramBank& o : m.banks)
            if (o.name == bank.name) fail_at(b.at("name"), "a second bank named '" + bank.name + "'");
        if (bank.name == m.external.name) fail_at(b.at("name"), "the external memory has this name too");
        bank_sum += bank.bytes;
        m.banks.push_back(bank);
    }
    if (m.banks.empty()) {
        m.banks.push_back(SramBank{sram->name, m.sram_bytes, 0, false});
    } else if (std::abs(bank_sum - m.sram_bytes) > 0.5) {
        fail_at(child(node, "banks"),
                fmt::format("the banks hold {} but the `{}` level holds {}; they must add up",
                            cfg::format_quantity(bank_sum, cfg::Dim::size), sram->name,
                            cfg::format_quantity(m.sram_bytes, cfg::Dim::size)));
    }
    if (m.arena_bank != "auto" && m.arena_bank != m.external.name) {
        bool found = false;
        std::vector<std::string> names;
        for (const SramBank& b : m.banks) {
            found = found || b.name == m.arena_bank;
            names.push_back(b.name);
        }
        if (!m.external.name.empty()) names.push_back(m.external.name);
        if (!found)
            fail_at(r.at("arena_bank"),
                    fmt::format("no bank '{}' (auto, {})", m.arena_bank, fmt::join(names, ", ")));
    }
    // The flash as the roofline sees it: one line per (wait states + 1) cycles. With a wait-state table the
    // level's bandwidth follows the clock: derived when left out (as the presets do, so that a clock override
    // moves it). A declared one must agree within 1 %, with or without a table: before, a table replaced the
    // declared figure, and a sweep over it changed nothing.
    const double flash_Bps = m.flash_line_bytes / static_cast<double>(m.flash_wait_states + 1) * d.clock_hz;
    if (flash->bandwidth_Bps == 0) {
        flash->bandwidth_Bps = flash_Bps;  // left out: device_from_node allows it only with a table
    } else if (std::abs(flash->bandwidth_Bps - flash_Bps) > 0.01 * flash_Bps) {
        const cfg::Node& memory = child(dev, "memory");
        const cfg::Node* where = &memory;
        for (const cfg::Node& level : memory.items())
            if (const cfg::Node* name = level.find("name"); name && name->scalar() == "flash")
                if (const cfg::Node* bw = level.find("bandwidth")) where = bw;
        fail_at(*where,
                fmt::format("flash bandwidth {} does not match flash_line / (wait states + 1) x clock = {} "
                            "({} wait state{} at {}; a declared bandwidth must agree within 1 %{})",
                            cfg::format_quantity(flash->bandwidth_Bps, cfg::Dim::bandwidth),
                            cfg::format_quantity(flash_Bps, cfg::Dim::bandwidth), m.flash_wait_states,
                            m.flash_wait_states == 1 ? "" : "s",
                            cfg::format_quantity(d.clock_hz, cfg::Dim::frequency),
                            m.wait_table.empty() ? "" : "; leave it out to have it derived"));
    }

    // The peaks the core gives: MACs / cycle x 2 x clock.
    std::map<std::string, double> derived = {{"int8", core->int8_macs_per_cycle * 2 * d.clock_hz},
                                             {"int16", core->int16_macs_per_cycle * 2 * d.clock_hz},
                                             {"fp32", core->fp32_macs_per_cycle * 2 * d.clock_hz}};
    if (m.npu) {
        // The NPU's peaks (checked by its section); a data type the NPU does not compute is the host's.
        for (const auto& [dtype, peak] : derived)
            if (!d.peak_ops_per_s.count(dtype) && d.mac_energy_J.count(dtype)) d.peak_ops_per_s[dtype] = peak;
        return mp;
    }
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
    double period = 0, sleep_j = 0, npu_layers = 0, records = 0;
    std::string bank;
    double ext = 0, ext_stall = 0;
    std::string ext_name;
    for (const LayerResult& l : layers) {
        period = std::max(period, l.metric_value("duty_period"));
        records = std::max(records, l.metric_value("runtime_records_bytes"));
        sleep_j = std::max(sleep_j, l.metric_value("sleep_energy_per_period"));
        if (const Metric* t = l.metric("arena_bank")) bank = t->text;
        if (const Metric* t = l.metric("runs_on"); t && t->text == "npu") ++npu_layers;
        // Flash: the level named so (the main memory); the rest of the main-memory traffic is external.
        const LevelTraffic* fl = l.level("flash");
        flash += fl ? fl->bytes_read : l.bytes_read;
        ext += fl ? l.bytes_read - fl->bytes_read : 0;
        ext_stall += l.metric_value("external_wait_cycles");
        if (l.levels.size() > 2 && ext_name.empty()) ext_name = l.levels.back().level;
        stall += l.metric_value("flash_wait_cycles");
        energy += l.energy_j();
        time += l.time_s;
        macs += l.counts.macs;
        cycles += static_cast<double>(l.cycles);
        arena = std::max(arena, l.metric_value("arena_bytes"));
        largest = std::max(largest, l.metric_value("largest_layer_io_bytes"));
    }
    std::vector<std::string> lines = {
        fmt::format("tensor arena {:.1f} KiB + {:.1f} KiB runtime records in {} (largest layer's inputs + "
                    "outputs {:.1f} KiB); flash read {:.1f} KiB, {:.0f} wait cycles",
                    arena / 1024, records / 1024, bank.empty() ? "sram" : bank, largest / 1024, flash / 1024,
                    stall),
        fmt::format("{:.3f} MACs per cycle overall; {:.1f} uJ per inference, average power {:.1f} mW",
                    cycles > 0 ? macs / cycles : 0.0, energy * 1e6, time > 0 ? energy / time * 1e3 : 0.0)};
    if (ext > 0)
        lines.push_back(fmt::format("{} read {:.1f} KiB, {:.0f} stall cycles",
                                    ext_name.empty() ? "external memory" : ext_name, ext / 1024, ext_stall));
    if (npu_layers > 0)
        lines.push_back(fmt::format("{:.0f} of {} layers on the NPU, the rest on the host core", npu_layers,
                                    layers.size()));
    if (period > 0) {
        const double total = energy + sleep_j;
        lines.push_back(
            time > period
                ? fmt::format("duty period {:g} ms is shorter than one inference ({:.3f} ms): no sleep",
                              period * 1e3, time * 1e3)
                : fmt::format("duty period {:g} ms: {:.1f} uJ per period (active {:.1f} + sleep {:.1f}), "
                              "average power {:.3f} mW",
                              period * 1e3, total * 1e6, energy * 1e6, sleep_j * 1e6, total / period * 1e3));
    }
    return lines;
}

}  // namespace

const McuSpec* spec_of(const DeviceSpec& spec) { return spec.params_of<McuSpec>("mcu"); }

int64_t wait_states_at(const std::vector<WaitStep>& table, double clock_hz) {
    for (const WaitStep& w : table)
        if (clock_hz <= w.max_clock_hz * (1 + 1e-9)) return w.wait_states;
    return -1;
}

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
    f.options = {
        {"duty-period", "device.mcu.duty_period",
         "MCU devices: one inference per period, asleep in between (energy per period in the summary)"},
        {"arena-bank", "device.mcu.arena_bank",
         "MCU devices: the SRAM bank (or external memory) for the tensor arena; auto picks the fastest"},
    };
    f.summary = summary_lines;
    register_family(std::move(f));
}

}  // namespace mlsim::arch::mcu
