#pragma once
// The interface every device family implements: map each op of a model onto the device and report, per
// layer, when it ran, how long it took, what it moved and what it cost in energy.
// Contract:
// - results are deterministic functions of (device spec, model options, model);
// - no detailed model reports a layer time below the roofline bound of the same device
//   (arch/roofline/roofline.h: roofline_bound), energy is never negative, and
//   bytes_read/bytes_written are what crossed the device's main-memory interface;
// - layers run one after another in the model's topological order: start_s of layer i+1 is end_s of layer i;
// - fields a family does not model stay zero / empty (the roofline fills none of the "detailed" ones).
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "arch/device_spec.h"
#include "workloads/model.h"

namespace mlsim::arch {

// Bytes moved at one storage level, by direction.
struct AccessBytes {
    double read = 0, write = 0;
};

// Per-level access record of a layer (detailed models). For the systolic model: `ifmap`, `filter`,
// `ofmap` are its three operand buffers; writes into a buffer are fills from main memory (and, for
// ofmap, outputs and partial sums written by the array), reads are words crossing the array edge (and,
// for ofmap, drains to main memory); `dram` is the main-memory interface (= bytes_read / bytes_written).
struct LevelAccesses {
    AccessBytes ifmap, filter, ofmap, dram;
};

struct LayerResult {
    int64_t idx = 0;
    std::string name, op, phase, dtype;
    wl::OpCounts counts;
    double bytes_read = 0, bytes_written = 0;  // across the main-memory interface
    double start_s = 0, end_s = 0, time_s = 0;
    // Device clock cycles the layer occupies. Roofline: ceil(time_s · clock). Systolic: the array's
    // cycles (pipeline plus vector unit), without the fixed op_overhead that time_s adds on top.
    int64_t cycles = 0;
    // Cycles the compute units wait on memory: the sum of the three causes below (systolic), or the
    // non-computing part of the layer (roofline).
    int64_t stall_cycles = 0;
    double energy_compute_j = 0, energy_memory_j = 0, energy_static_j = 0;
    // Roofline: achieved / peak throughput for the layer's data type. Systolic: MACs performed by the
    // arrays / (cycles · rows · cols · arrays).
    double utilization = 0;
    std::string bound;  // "compute" | "memory"

    // --- detailed models (zero / empty under the roofline) ---
    // Stall cycles by cause: waiting for weights (filter buffer), input activations (ifmap buffer),
    // or output space / partial sums (ofmap buffer, including the final drain to main memory).
    int64_t stall_weight_cycles = 0, stall_input_cycles = 0, stall_output_cycles = 0;
    // How the layer was mapped, one entry per GEMM of the op, separated by "; ", e.g.
    // "m=392 n=64 k=576 tiles=1x1x1 order=mnk split=m/8"; "vector" for ops on the vector unit.
    std::string tiling;
    // The parts of energy_memory_j: on-chip buffers, main memory, PE-to-PE operand hops.
    double energy_sram_j = 0, energy_dram_j = 0, energy_noc_j = 0;
    LevelAccesses access;
    int64_t pe_hops = 0;  // operand words moved between neighbouring PEs

    double energy_j() const { return energy_compute_j + energy_memory_j + energy_static_j; }
};

class DeviceModel {
public:
    virtual ~DeviceModel() = default;
    virtual std::string_view model_name() const = 0;  // e.g. "roofline", "systolic"
    virtual std::vector<LayerResult> run(const wl::Model& model) = 0;
};

// Run-time choices that override the device config (the command line's --fidelity / --convention).
// Unset fields keep the config's value; families without such a choice ignore them.
struct ModelOptions {
    std::optional<systolic::Fidelity> fidelity;
    std::optional<systolic::Convention> convention;
};

// The model for a device spec: the systolic model when the spec has a `systolic` section
// (DeviceSpec::systolic), the roofline otherwise. Defined in arch/device_model.cpp.
std::unique_ptr<DeviceModel> make_device_model(const DeviceSpec& spec, const ModelOptions& options = {});

}  // namespace mlsim::arch
