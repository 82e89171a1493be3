// libFuzzer target: a device config as the YAML loader reads it (sim/config parse_string), checked
// against the device schema and built into a DeviceSpec, as load_device() does for a file (without
// `extends:`, which would read other files).
#include "arch/device_spec.h"
#include "fuzz/fuzz_input.h"
#include "sim/config/loader.h"
#include "sim/config/schema.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, std::size_t size) {
    mlsim::fuzz::run_input([&] {
        using namespace mlsim;
        const cfg::Node doc = cfg::parse_string(fuzz::as_text(data, size), "fuzz.yaml");
        // A device file's document is a map holding `device:`; anything else is still checked as a device
        // map, so that the schema sees every shape of input.
        const cfg::Node* dev = doc.is_map() ? doc.find("device") : nullptr;
        const arch::DeviceSpec spec =
            arch::device_from_node(cfg::validate(dev ? *dev : doc, arch::device_schema()));
        (void)cfg::to_yaml(spec.resolved);
    });
    return 0;
}
