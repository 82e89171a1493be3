#pragma once
// The detailed SIMT GPU model: each op lowers to kernels; a GEMM kernel runs as a grid of thread blocks
// in waves over the SMs, its main loop loading A and B tiles through L2 into shared memory while the
// tensor cores (or CUDA cores) compute; other kernels stream through DRAM. Timed in the event engine.
//
// Lowering (per op):
//  * linear, matmul, interaction, lowered backward GEMMs: one GEMM kernel per GemmShape of op.gemms()
//    (a batched GEMM is one kernel whose grid has `batch` layers). RNN: its GEMMs likewise, the cell's
//    other arithmetic as an element-wise kernel.
//  * convolution: implicit GEMM (cuDNN's IMPLICIT_PRECOMP_GEMM): M = N·Ho·Wo, N = Cout/groups,
//    K = Cin/groups·Kh·Kw, one grid layer per group; the A tile is gathered from the input tensor on the
//    fly, so A's DRAM bytes are the input's (each input element is read once per filter tap that uses it
//    through L2; DRAM sees the compulsory bytes when the input fits the L2, see l2 model below). A grouped
//    convolution whose groups have fewer than 8 output channels (depthwise) cannot fill a tensor-core
//    tile: it runs as a direct convolution on the CUDA cores, streaming input and output through DRAM.
//  * attention: unfused = two batched GEMM kernels (Q·K^T, P·V) with the score matrix written to and read
//    from DRAM and a softmax kernel between them; fused (default, FlashAttention-style): one kernel whose
//    blocks keep a Q tile and stream K/V tiles through shared memory: DRAM traffic is Q, K, V and O only
//    (O(N) instead of O(N²)); its MACs run on the tensor cores at the GEMM tile efficiency (over the
//    scores it computes: half of them, causal with skip_masked), its softmax arithmetic on the CUDA cores
//    and one exponential a score on the special-function units (16 a clock an SM), serialised with them.
//    Decode attention streams the KV cache.
//  * element-wise, batch-norm, pooling, concat, slice: one streaming kernel each (inputs read once,
//    output written once; a pooling window's overlap is served by L1/L2).
//  * softmax and layer/RMS norm: one kernel; a row that fits a thread block's registers and shared memory
//    (<= 16 K elements) is read once (online max/sum, Welford) and written once; a longer row is read twice
//    (its statistics in one online pass, then again to normalise) and written once. Training batch-norm:
//    two reads (statistics, normalise).
//  * embedding gather: each looked-up row is fetched in 32-byte DRAM sectors (ceil(dim·size / 32) per row),
//    plus the int64 indices; the output written once.
//  * reshape / flatten: views, no kernel.
// Fusion (`fusion: epilogue`, the default, as inference engines build a network: TensorRT, cuDNN's fused
// conv-bias-activation): a batch-norm after a convolution is folded into it (its scale into the weights,
// its shift into the bias), and a chain of element-wise ops (bias, activation, residual add, BN) that is
// the sole consumer of a GEMM's output runs in that GEMM's epilogue: no kernel or launch of its own, its
// input stays in registers, a residual's other input is read in the epilogue. In training (the model has
// backward ops) the fused intermediate results are still written, because backward reads them.
// `fusion: none`: a kernel per op.
// GEMM kernels: tile BM×BN×BK with S stages from a candidate set like CUTLASS's SM80 tensor-op
// configurations (or `tile:` fixed), split-K for grids that do not fill the SMs, chosen by the smallest
// closed-form time. Occupancy: blocks per SM from shared memory, registers and threads; waves =
// ceil(blocks / (SMs × blocks per SM)), the tail wave included. Tensor cores when the data type has a
// tensor rate and K and N are multiples of 16 bytes of elements (8 fp16, 16 int8, 4 tf32: the alignment
// NVIDIA's performance guide documents); otherwise the CUDA cores (FP32 lanes, HFMA2 / DP4A rates; FP16 and
// BF16 at gpu.cuda_core_fp16_ratio / _bf16_ratio x FP32's).
// Main loop per K step: each block loads its A (BM×BK) and B (BK×BN) tiles through L2 into shared memory;
// with S >= 2 stages the loads of step k+S-1 are issued as step k computes, so a step takes the longest of:
// the blocks' MMAs on the SM (tensor rate; at least the shared-memory fragment reads; a block of w < 4
// warps alone on its SM at w / 4 of it, one processing block a warp), their L2 loads
// through the SM's L2 port, the wave's L2 traffic over the L2 bandwidth, its L2 misses over the sustained
// DRAM bandwidth, and the load latency over S-1 steps in flight; with S = 1 load and compute serialise. The
// latency is a DRAM round trip in every wave that reads from DRAM (the blocks sharing a tile wait for one
// merged fill), an L2 hit's in waves whose operands stay in L2.
// L2 hits: the blocks of a wave (rasterised in stripes of 8 tile rows, column by column, as CUTLASS's
// swizzle does) share A tiles along a row and B tiles down a column, so DRAM reads per wave are its
// distinct tiles; across waves a tile stays in L2 when the GEMM's operands fit the usable L2
// (l2_reuse_fraction of it), else it is re-read. DRAM writes: the C tiles. Split-K is serial inside the
// kernel: the fp32 partials go through L2 and the last block of a tile sums them.
// Fidelities: wave (default): each wave's closed form, one event per wave in the engine with the waves
// sharing the L2 and DRAM channels; block: every block's every K step as events, blocks dispatched to SMs
// as slots free, contending FIFO for each SM's tensor cores and L2 port and for the shared L2 and DRAM.
// Time parts: compute = the SM's arithmetic, memory = the rest of the kernel time, overhead = launches.
// Energy: MACs × the data type's MAC energy + register-file operand bytes (0.4375 B per MAC per byte of
// element on the tensor cores' m16n8k(32 B) fragments; 16 B per FFMA on CUDA cores) × register_file_energy
// + shared memory, L2 and DRAM bytes × their level energies + static power × time. A kernel whose power
// would exceed the TDP runs at a lower clock (the GPU's power limit): its compute time stretches until
// its average power is the TDP (metric power_capped).
// Promises (MLSIM_CHECK): no layer is faster than the roofline bound over the bytes it moves across DRAM
// (fused inputs/outputs excluded: input_bytes_on_chip, output_bytes_kept); energies >= 0.
#include <cstdint>
#include <string>
#include <unordered_map>
#include <vector>

#include "arch/device_model.h"
#include "arch/gpu/gpu_spec.h"

namespace mlsim::arch::gpu {

// One GEMM kernel as planned.
struct GemmPlan {
    wl::GemmShape shape;
    std::string dtype;
    double elem_bytes = 2, out_bytes = 2;
    bool tensor = false;  // on the tensor cores
    bool aligned = true;  // K and N multiples of the tensor-core alignment
    int64_t bm = 0, bn = 0, bk = 0, stages = 0, warps = 0, split_k = 1;
    int64_t tiles_m = 0, tiles_n = 0, blocks = 0, blocks_per_sm = 0, k_steps = 0;
    double occupancy = 0;     // resident warps / max warps per SM
    double a_conv_reuse = 1;  // implicit GEMM: A bytes in DRAM per A-tile byte loaded (1 for a plain GEMM)
    double epilogue_read_bytes = 0;  // per output element: a fused residual read
    double time_s = 0;               // closed-form kernel time (no launch)
    int64_t waves() const;
};

// What simulating one GEMM kernel gives.
struct GemmRun {
    double time_s = 0, compute_s = 0;
    double l2_bytes = 0, dram_read = 0, dram_write = 0, smem_bytes = 0;
    double stall_latency_s = 0, stall_l2_s = 0, stall_dram_s = 0, stall_port_s = 0;
    int64_t waves = 0;
    uint64_t events = 0;
};

class GpuModel final : public DeviceModel {
  public:
    explicit GpuModel(DeviceSpec spec);  // the device must have a `gpu:` section
    std::string_view model_name() const override { return "gpu"; }
    std::vector<LayerResult> run(const wl::Model& model) override;

    // One op as a layer on its own, nothing fused.
    LayerResult run_op(const wl::Op& op);

    // The GEMM planner and simulator, for tests and the reproduction script.
    // a_dram_ratio: DRAM bytes of A per byte of A tiles loaded (an implicit-GEMM convolution's input over
    // its im2col matrix; 1 for a plain GEMM).
    GemmPlan plan_gemm(const wl::GemmShape& g, const std::string& dtype, double a_dram_ratio = 1) const;
    GemmRun simulate_gemm(const GemmPlan& plan, Fidelity fidelity) const;

    const GpuSpec& gpu() const { return m_gpu; }
    struct Work {
        uint64_t events = 0, blocks = 0, layers_simulated = 0, cache_hits = 0;
    };
    const Work& work() const { return m_work; }

  private:
    struct Fused;  // what fusion decides for a layer
    LayerResult layer(const wl::Op& op, const Fused& f);
    double closed_form(GemmPlan& p) const;

    DeviceSpec m_spec;
    GpuSpec m_gpu;
    std::unordered_map<std::string, LayerResult> m_memo;
    mutable Work m_work;
};

}  // namespace mlsim::arch::gpu
