#pragma once
// The parsed `mcu:` section of a device (arch/mcu/mcu_family.cpp declares and checks it). Every figure in
// SI units or cycles. What the MCU model needs beyond the core device keys: the core (which fixes the
// MACs per cycle of its DSP / Helium unit and its FPU, from Arm's technical reference manuals), the
// kernel runtime, the flash wait states and line, the cache in front of the flash, and the SRAM / flash
// capacities (the device's memory levels named `sram` and `flash`).
#include <cstdint>
#include <string>
#include <vector>

#include "arch/device_spec.h"
#include "sim/config/node.h"

namespace mlsim::arch::mcu {

enum class Runtime { cmsis_nn, reference };

// One row of a datasheet's flash wait-state table: up to `max_clock_hz`, `wait_states` (at the device's
// supply-voltage range). The wait states at a clock are those of the first row whose max_clock_hz >= it.
struct WaitStep {
    double max_clock_hz = 0;
    int64_t wait_states = 0;
};

// One SRAM region the arena may be placed in (a contiguous address range: the tensor arena is one
// buffer). `wait_states`: extra core cycles per data access (after the core's data cache, if any).
struct SramBank {
    std::string name;
    double bytes = 0;
    int64_t wait_states = 0;
    bool tcm = false;  // tightly coupled: zero wait states, single-cycle at the core clock
};

// Memory outside the chip on a memory controller (OCTOSPI PSRAM, SDRAM): read in `line_bytes` bursts,
// each costing the access latency plus its transfer time at the bandwidth, stalling the in-order core.
struct ExternalMemory {
    std::string name;
    double bytes = 0;
    double bandwidth_Bps = 0;
    double latency_s = 0;
    double line_bytes = 32;
    double read_energy_J_per_byte = 0;
    bool present() const { return bytes > 0; }
};

// What one core class issues, per the Arm TRMs cited in mcu_family.cpp.
struct CoreInfo {
    std::string name;
    double int8_macs_per_cycle = 0;  // the SIMD peak: SMLAD dual 16-bit MACs, or Helium beats
    double int16_macs_per_cycle = 0;
    double fp32_macs_per_cycle = 0;  // FPU FMA throughput
    double issue_width = 1;          // sustained instructions per cycle of CMSIS-NN inner loops (est.)
    bool helium = false;             // M-profile vector extension (MVE)
};

struct McuSpec final : FamilyParams {
    CoreInfo core;
    Runtime runtime = Runtime::cmsis_nn;
    int64_t flash_wait_states = 0;     // at the device's clock (from the table when one is given)
    std::vector<WaitStep> wait_table;  // empty: flash_wait_states as given
    double flash_line_bytes = 8;
    double flash_cache_bytes = 0;  // data-side cache / accelerator in front of the flash
    double dispatch_cycles = 0;    // per operator, the runtime's interpreter
    double runtime_ram_bytes = 0;  // SRAM the runtime itself needs besides the arena
    double sram_bytes = 0, flash_bytes = 0;
    std::vector<SramBank> banks;      // never empty: one bank of the whole `sram` level when none is given
    std::string arena_bank = "auto";  // a bank's (or the external memory's) name, or auto
    ExternalMemory external;
    double sleep_power_W = 0;  // between inferences (sleep current x supply voltage)
    double duty_period_s = 0;  // one inference per period; 0: back to back (no sleep)
    bool npu = false;          // the device also has an NPU (`systolic:`): the ops it supports run there
    std::string sram_level = "sram", flash_level = "flash";
    cfg::SourceLoc loc;  // the `mcu:` section, where "does not fit" errors point
    std::string key_path;
};

const McuSpec* spec_of(const DeviceSpec& spec);
// The table of cores (cortex-m4, -m7, -m33, -m55, -m85); nullptr for an unknown name.
const CoreInfo* find_core(const std::string& name);
// The wait states of `table` at `clock_hz`; -1 when the clock is above its last row.
int64_t wait_states_at(const std::vector<WaitStep>& table, double clock_hz);

}  // namespace mlsim::arch::mcu
