#include "arch/device_model.h"

#include "arch/roofline/roofline.h"
#include "arch/systolic/systolic_model.h"

namespace mlsim::arch {

std::unique_ptr<DeviceModel> make_device_model(const DeviceSpec& spec, const ModelOptions& options) {
    if (spec.systolic) return std::make_unique<systolic::SystolicModel>(spec, options);
    return std::make_unique<RooflineModel>(spec);
}

}  // namespace mlsim::arch
