#pragma once
// The interface every device family implements: map each op of a model onto the device and report, per
// layer, when it ran, how long it took, what it moved and what it cost in energy.
// Contract:
// - results are deterministic functions of (device spec, model);
// - no detailed model reports a layer time below the roofline bound of the same device
//   (arch/roofline/roofline.h: roofline_bound_s), energy is never negative, and
//   bytes_read/bytes_written are what crossed the device's main-memory interface;
// - layers run one after another in the model's topological order: start_s of layer i+1 is end_s of layer i.
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "arch/device_spec.h"
#include "workloads/model.h"

namespace mlsim::arch {

struct LayerResult {
    int64_t idx = 0;
    std::string name, op, phase, dtype;
    wl::OpCounts counts;
    double bytes_read = 0, bytes_written = 0;  // across the main-memory interface
    double start_s = 0, end_s = 0, time_s = 0;
    int64_t cycles = 0;        // device clock cycles the layer occupies
    int64_t stall_cycles = 0;  // cycles the compute units wait on memory
    double energy_compute_j = 0, energy_memory_j = 0, energy_static_j = 0;
    double utilization = 0;  // achieved / peak throughput for the layer's data type
    std::string bound;       // "compute" | "memory"
    double energy_j() const { return energy_compute_j + energy_memory_j + energy_static_j; }
};

class DeviceModel {
public:
    virtual ~DeviceModel() = default;
    virtual std::string_view model_name() const = 0;  // e.g. "roofline"
    virtual std::vector<LayerResult> run(const wl::Model& model) = 0;
};

// The model for a device spec; only the roofline family exists so far.
std::unique_ptr<DeviceModel> make_device_model(const DeviceSpec& spec);

}  // namespace mlsim::arch
