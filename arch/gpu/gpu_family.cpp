// The SIMT GPU family: its `gpu:` section is declared here; the detailed model is not built yet, so GPU
// devices run on the roofline (and `device.model: gpu` says so).
#include "arch/family.h"
#include "arch/section_params.h"

namespace mlsim::arch::gpu {

namespace {

const cfg::Schema& gpu_schema() {
    static const cfg::Schema schema = [] {
        cfg::Schema s;
        s.name = "device.gpu";
        s.doc = "SIMT GPU organisation (used by the detailed GPU model)";
        // Required, so that a device without a `gpu:` section does not get one filled with defaults.
        cfg::Param sms = count_param("sms", "streaming multiprocessors");
        sms.required = true;
        s.params.push_back(sms);
        s.params.push_back(count_param("cuda_cores_per_sm", "FP32 lanes per SM"));
        s.params.push_back(count_param("tensor_cores_per_sm", "tensor cores per SM"));
        s.params.push_back(size_param("registers_per_sm", "register file per SM"));
        s.params.push_back(size_param("shared_memory_per_sm", "largest shared-memory carve-out per SM"));
        s.params.push_back(
            choice_param("fidelity", "wave", {"wave", "block"},
                         "wave: each wave of thread blocks in closed form; block: every thread "
                         "block's every K step as events"));
        return s;
    }();
    return schema;
}

}  // namespace

void register_family() {
    Family f;
    f.name = "gpu";
    f.description = "SIMT GPU: SMs, tensor cores, shared memory, L2, HBM (model not built yet)";
    f.section = "gpu";
    f.schema = &gpu_schema();
    f.hardware = {"gpu"};
    // Shared with the systolic family's --fidelity: the device's section decides which key it sets.
    f.options = {
        {"fidelity", "device.gpu.fidelity",
         "GPU devices: wave (each wave in closed form, default) | block (every thread block's K steps "
         "as events)"}};
    register_family(std::move(f));
}

}  // namespace mlsim::arch::gpu
