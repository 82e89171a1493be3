// Registration of the roofline family: no config section; it runs any device from its core figures.
#include "arch/family.h"
#include "arch/roofline/roofline.h"

namespace mlsim::arch::roofline {

void register_family() {
    Family f;
    f.name = "roofline";
    f.description = "peak compute and main-memory bandwidth per op, plus the per-op overhead";
    f.factory = [](const DeviceSpec& spec) -> std::unique_ptr<DeviceModel> {
        return std::make_unique<RooflineModel>(spec);
    };
    register_family(std::move(f));
}

}  // namespace mlsim::arch::roofline
