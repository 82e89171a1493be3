// The microcontroller family: its `mcu:` section is declared here; the detailed model is not built yet,
// so MCU devices run on the roofline (and `device.model: mcu` says so).
#include "arch/family.h"
#include "arch/section_params.h"

namespace mlsim::arch::mcu {

namespace {

const cfg::Schema& mcu_schema() {
    static const cfg::Schema schema = [] {
        cfg::Schema s;
        s.name = "device.mcu";
        s.doc = "microcontroller organisation (used by the detailed MCU model)";
        s.params.push_back(optional_no_default("core", cfg::PType::string, "CPU core, e.g. cortex-m7"));
        s.params.push_back(count_param("macs_per_cycle", "int8/int16 MACs per cycle of the SIMD/DSP unit"));
        cfg::Param ws = optional_no_default("flash_wait_states", cfg::PType::integer, "flash wait states at `clock`");
        ws.min = 0;
        s.params.push_back(ws);
        s.params.push_back(size_param("flash_line", "bytes fetched from flash per access"));
        return s;
    }();
    return schema;
}

}  // namespace

void register_family() {
    Family f;
    f.name = "mcu";
    f.description = "microcontroller: one core with DSP MACs, SRAM arena, flash (model not built yet)";
    f.section = "mcu";
    f.schema = &mcu_schema();
    // An NPU is either a spatial array (systolic) or a microcontroller with an accelerator attached.
    f.hardware = {"mcu", "npu"};
    register_family(std::move(f));
}

}  // namespace mlsim::arch::mcu
