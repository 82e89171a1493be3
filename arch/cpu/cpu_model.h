#pragma once
// The detailed CPU model: layers run as a BLAS / oneDNN library runs them on SIMD cores with
// set-associative caches and shared DRAM (the kernels and their blocking: cpu_spec.h).
//
// Per op:
//  * GEMM ops (linear, matmul, convolution as an implicit-im2col GEMM: the packing routine reads the
//    feature map, so memory holds and moves the feature map; attention's two products; RNN gates; the
//    GEMMs of lowered backward ops) run the blocked loop nest: micro-kernel cycles per MR x NR tile per
//    KC pass = ceil(KC / k granule) · cycles per step + the C tile update (2 · MR·NR words through L1
//    + FMA latency) + kernel_call_cycles; edge tiles are padded to MR x NR (computed, wasted).
//    All the cores are factored over the batch of independent GEMMs, the 3rd loop (ic, MR rows at a
//    time) and the 2nd (jr): the split whose busiest thread has the fewest tiles (split_threads); the
//    slowest thread's tiles set the time. Packing copies A (once per jc) and B (once)
//    at the core's L2 bandwidth, on the cores, before the micro-kernels of each block (not overlapped:
//    the same load/store ports do it): `stall_packing_cycles`. The op's arithmetic beyond its MACs
//    (bias, activation, softmax inside attention) runs on the vector unit afterwards.
//  * A GEMM with at most MR / 2 rows (a matrix-vector product: LLM decode, small-batch MLPs) runs in
//    matrix-vector form instead (cpu_spec.h, packs_b): no packing, B streamed once row by row, threads
//    over the columns, one B vector load per vector FMA.
//  * Depthwise convolution (one output channel per group) runs a direct kernel: channels across the
//    lanes, per output pixel and lane group kh·kw FMAs and kh·kw loads, input and output streamed once.
//  * Every other op (element-wise, norms, softmax, pooling, embedding gathers, concat, slice) streams:
//    vector-unit cycles = FLOPs / (threads · lanes · pipes), its bytes read from the level its
//    working set lives in (an input kept in L3 by the previous layers, else DRAM) and written to L3
//    (kept) or DRAM (non-temporal stores: no read for ownership). Views take no time.
//  * Post-op fusion (`fusion: epilogue`, the default; `none` turns it off): in inference, an element-wise
//    op or a batch-norm whose input is the only use of a convolution's / GEMM's output (or of an op already
//    fused into one) runs as that primitive's post-op, as oneDNN applies eltwise / binary / sum post-ops
//    to each output tile before storing it and inference runtimes fold batch-norm into the weights
//    (oneDNN developer guide, "Primitive Attributes: Post-ops"). The fused layer has no fork/join
//    (op_overhead) of its own; its arithmetic runs on the vector units of all the producer's threads; its
//    fused input is the producer's output tile, already in registers (no loads, no cache traffic); its
//    other inputs (a residual) come from where they lie; a result that a further post-op takes stays in
//    registers (no store). The producer's row still stores its C tiles (to L3 when its output fits
//    there, else DRAM), and the chain's last op stores the final result too unless the producer's store
//    already went to DRAM (then that store stands for it): so a chain costs one DRAM store at most, and
//    an extra L3 write when it stays on chip (est.: oneDNN stores only the final result). Training steps
//    are not fused (backward reads every intermediate result). Rows: `fused_into` names the producer.
//  * Threads: GEMMs as above; streaming ops one thread per 32 KiB of data, at most the cores (est.:
//    below that a fork/join costs more than the work saves).
// Timing (the event engine): the traffic below L1 goes through bandwidth servers (sim/core/channel.h),
// one per level: each cache level at bytes_per_cycle · threads · clock (private L2 bandwidth scales
// with the cores used; the L3 and its slices are shared), DRAM at min(sustained bandwidth for the
// op's read/write mix (refresh and bus turnarounds: DramParams), threads · miss_buffers · line /
// latency (Little's law: the misses a core can keep in flight)). The op is cut into up to 32 equal
// chunks; the overlap rule is the hardware prefetchers': a chunk's transfers at every level are
// issued when the cores start the previous chunk (one chunk of lookahead), and the cores start a chunk
// when its data has arrived and they finished the previous one. So the first chunk's fill is exposed,
// the rest overlaps, and a layer runs at the pace of its slowest server.
// Fidelity trace (`device.cpu.fidelity: trace`): each GEMM's misses and write-backs per level come from
// replaying its loop nest through set-associative LRU caches (cache_sim.h) instead of the closed form;
// the rest of the layer is modelled as above (other ops keep the closed form). A GEMM whose replay would
// exceed `trace_limit` line accesses is refused with a UserError located at device.cpu.fidelity. A
// layer that would outlast the engine's clock (1e6 s) is refused with a UserError, too. Closed-form
// results are memoized per op signature and L3 context within a model run.
// Residency: caches are transparent to software, so a layer's output stays in L3 for its consumers
// when it fits beside the other kept activations and the layer's packed blocks (ResidencyTracker
// over the L3's total capacity); a layer reading such an input reads it from L3, not DRAM.
// Time parts: compute = the micro-kernels' (or the vector unit's) cycles; memory = the rest (packing,
// and waiting for a server); overhead = op_overhead (thread fork/join). `memory_level` names the
// server that held the cores longest ("packing" when packing took longer than the waiting). Metrics: threads,
// blocking (text), fidelity (text), misses_<level> and bytes_<level> per cache level and DRAM,
// stall_packing_cycles, stall_<level>_cycles (the wait split over the servers by their busy time beyond the
// compute), input_bytes_on_chip, input_bytes_from_dram, output_bytes_kept, and the servers' counters. Levels:
// every cache level and DRAM; bytes_read of a level = the lines it delivered to the level above (L1: the
// registers' loads), bytes_written = what the level above wrote into it. Energy: MACs x mac_energy(dtype),
// other FLOPs x mac_energy / 2 (est.: one add or multiply of an FMA), each level's bytes x its read / write
// energy, static power x time. Promises (MLSIM_CHECK): no layer below arch::roofline_bound over the bytes it
// moves across DRAM; energies >= 0; DRAM reads >= the compulsory bytes not found in L3; level traffic
// conserved (bytes read from level i+1 = misses of level i x line).
#include <cstdint>
#include <string>
#include <unordered_map>
#include <vector>

#include "arch/cpu/cpu_spec.h"
#include "arch/device_model.h"

namespace mlsim::arch::cpu {

class CpuModel final : public DeviceModel {
  public:
    explicit CpuModel(DeviceSpec spec);
    std::string_view model_name() const override { return "cpu"; }
    std::vector<LayerResult> run(const wl::Model& model) override;

    struct OnChip {
        double inputs = 0;  // input bytes read from L3
        double kept = 0;    // output bytes kept in L3
        double resident = 0;
        double in_registers = 0;        // of `inputs`: bytes a fused post-op takes from the producer's tile
        bool out_in_registers = false;  // a fused post-op's result goes on in registers (no store)
    };
    LayerResult run_op(const wl::Op& op) { return run_op(op, OnChip{}); }
    LayerResult run_op(const wl::Op& op, const OnChip& on_chip);

    const CpuSpec& cpu() const { return m_cpu; }
    struct Work {
        uint64_t events = 0, layers_simulated = 0, cache_hits = 0, trace_accesses = 0;
    };
    const Work& work() const { return m_work; }

  private:
    struct Plan;
    LayerResult simulate(const wl::Op& op, const OnChip& on_chip);
    DeviceSpec m_spec;
    CpuSpec m_cpu;
    std::unordered_map<std::string, LayerResult> m_memo;
    Work m_work;
};

}  // namespace mlsim::arch::cpu
