#pragma once
// The parsed `mcu:` section of a device (arch/mcu/mcu_family.cpp declares and checks it). Every figure in
// SI units or cycles. What the MCU model needs beyond the core device keys: the core (which fixes the
// MACs per cycle of its DSP / Helium unit and its FPU, from Arm's technical reference manuals), the
// kernel runtime, the flash wait states and line, the cache in front of the flash, and the SRAM / flash
// capacities (the device's memory levels named `sram` and `flash`).
#include <cstdint>
#include <string>

#include "arch/device_spec.h"
#include "sim/config/node.h"

namespace mlsim::arch::mcu {

enum class Runtime { cmsis_nn, reference };

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
    int64_t flash_wait_states = 0;
    double flash_line_bytes = 8;
    double flash_cache_bytes = 0;  // data-side cache / accelerator in front of the flash
    double dispatch_cycles = 0;    // per operator, the runtime's interpreter
    double runtime_ram_bytes = 0;  // SRAM the runtime itself needs besides the arena
    double sram_bytes = 0, flash_bytes = 0;
    std::string sram_level = "sram", flash_level = "flash";
    cfg::SourceLoc loc;  // the `mcu:` section, where "does not fit" errors point
    std::string key_path;
};

const McuSpec* spec_of(const DeviceSpec& spec);
// The table of cores (cortex-m4, -m7, -m33, -m55, -m85); nullptr for an unknown name.
const CoreInfo* find_core(const std::string& name);

}  // namespace mlsim::arch::mcu
