// The CPU family: its `cpu:` section is declared here; the detailed model is not built yet, so CPU
// devices run on the roofline (and `device.model: cpu` says so).
#include "arch/family.h"
#include "arch/section_params.h"

namespace mlsim::arch::cpu {

namespace {

const cfg::Schema& cpu_schema() {
    static const cfg::Schema schema = [] {
        cfg::Schema s;
        s.name = "device.cpu";
        s.doc = "CPU organisation (used by the detailed CPU model)";
        s.params.push_back(count_param("cores", "physical cores"));
        s.params.push_back(size_param("simd_width", "SIMD register width, e.g. 512b"));
        s.params.push_back(count_param("fma_units_per_core", "SIMD FMA pipes per core"));
        s.params.push_back(optional_no_default("matrix_unit", cfg::PType::string, "matrix extension, e.g. amx"));
        return s;
    }();
    return schema;
}

}  // namespace

void register_family() {
    Family f;
    f.name = "cpu";
    f.description = "CPU: SIMD cores, caches, DRAM (model not built yet)";
    f.section = "cpu";
    f.schema = &cpu_schema();
    f.hardware = {"cpu"};
    register_family(std::move(f));
}

}  // namespace mlsim::arch::cpu
