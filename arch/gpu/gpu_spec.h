#pragma once
// The parsed `gpu:` section of a device (arch/gpu/gpu_family.cpp declares and checks it; configs/README.md
// lists its keys). Every figure in SI units. What a GPU model needs beyond the core device keys:
// the SM array and its per-SM rates (from which the device's peaks are derived and cross-checked), the
// per-SM resources that bound occupancy, the latencies of L2 and DRAM, launch overheads, fusion and
// fidelity. L2 and DRAM capacity and bandwidth are the device's memory levels named `l2` and the last one.
#include <cstdint>
#include <map>
#include <string>

#include "arch/device_spec.h"

namespace mlsim::arch::gpu {

enum class Fidelity { wave, block };
enum class Fusion { none, epilogue };

// A fixed GEMM tile (`tile:` in the section); all zero: the search chooses.
struct FixedTile {
    int64_t bm = 0, bn = 0, bk = 0, stages = 0;
    cfg::SourceLoc loc;  // where the file sets it, and its key path (device.gpu.tile)
    std::string key;
    bool given() const { return bm > 0; }
};

struct GpuSpec final : FamilyParams {
    int64_t sms = 0;
    int64_t fp32_lanes_per_sm = 0;    // CUDA cores (FP32 FMA lanes) per SM
    int64_t fp64_lanes_per_sm = 0;    // FP64 FMA lanes per SM (0: no FP64)
    int64_t tensor_cores_per_sm = 0;  // informative; the rates below are per SM
    // Dense tensor-core throughput per SM per clock, in ops (1 MAC = 2 ops), per data type.
    std::map<std::string, double> tensor_ops_per_clock;
    double cuda_core_clock_hz = 0;  // clock of the FP32 peak (H100 quotes it at the 1.98 GHz boost)
    // FP64 (CUDA cores and DMMA tensor cores) runs at the CUDA-core clock: NVIDIA quotes H100's FP64 and
    // FP64 tensor peaks at the 1.98 GHz of its FP32 peak (66.9 = 256 op x 132 SMs x 1.98 GHz), the
    // lower-precision tensor peaks at 1.83 GHz. tensor_rate scales its clock argument by this ratio.
    double fp64_clock_ratio = 1;     // cuda_core_clock / device clock
    double registers_bytes = 0;      // register file per SM
    double shared_memory_bytes = 0;  // largest shared-memory carve-out per SM
    double shared_memory_per_block_bytes = 0;
    int64_t max_threads_per_sm = 0;
    int64_t max_blocks_per_sm = 0;
    int64_t max_registers_per_thread = 255;
    double shared_memory_bandwidth_per_clock = 0;  // bytes per clock per SM
    double l2_port_bytes_per_clock = 0;            // bytes per clock one SM can take from L2
    double l2_latency_s = 0;
    double dram_latency_s = 0;
    double dram_efficiency = 1;  // sustained / peak DRAM bandwidth
    // CUDA-core rates over FP32's by data type: fp16, bf16 (non-tensor) and int8 (DP4A; int4 too).
    std::map<std::string, double> cuda_core_ratio;
    double l2_effective_fraction = 1;    // share of the L2 usable to keep GEMM operands across waves
    double launch_overhead_s = 0;        // per kernel, launched one by one
    double graph_launch_overhead_s = 0;  // per kernel inside a CUDA graph
    bool cuda_graphs = false;
    bool async_copy =
        true;  // cp.async (Ampere and later): multi-stage pipelines; false: 2 stages via registers
    double register_file_energy_J_per_byte = 0;
    Fusion fusion = Fusion::epilogue;
    Fidelity fidelity = Fidelity::wave;
    bool fused_attention = true;
    FixedTile tile;
    cfg::SourceLoc loc;    // the section, for errors found as a GEMM is planned
    std::string key_path;  // device.gpu

    double tensor_rate(const std::string& dtype, double clock_hz) const;  // op/s over all SMs, 0 if none
    double cuda_core_rate(const std::string& dtype) const;                // op/s over all SMs
    double launch_s() const { return cuda_graphs ? graph_launch_overhead_s : launch_overhead_s; }
};

// The section of a device, or nullptr when it has none.
const GpuSpec* spec_of(const DeviceSpec& spec);

}  // namespace mlsim::arch::gpu
