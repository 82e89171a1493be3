#pragma once
// The detailed systolic-array (TPU-like) device model: layers mapped onto R×C PE arrays fed by
// per-operand SRAM buffers and one main-memory channel, timed in the event engine.
//
// Per op:
//  * Ops with GEMMs (linear, matmul, convolution through im2col, attention's two products, RNN gates,
//    DLRM interaction, and the GEMMs of lowered backward ops) run on the arrays: each GEMM is
//    partitioned across the arrays and tiled to fit the buffers (tiling.h), and the tiles flow through
//    the double-buffered memory pipeline (pipeline.h). The op's arithmetic beyond its MACs (bias,
//    softmax inside attention, gate activations) then runs on the vector unit, after the GEMMs:
//    ceil(extra FLOPs / vector_throughput) cycles, counted as busy, not stalled.
//  * Every other op (activations, pooling, norms, softmax, element-wise, embedding gathers, concat,
//    slice) runs on the vector unit (its throughput capped at the data type's peak, so the roofline
//    bounds it too): cycles = max(FLOPs / vector_throughput, main-memory bytes / bandwidth + latency,
//    bytes read in place or kept / the ifmap buffer's bandwidth); the excess over the compute part is a
//    stall, split between weight, input and output causes by their share of the bytes. Views
//    (reshape, flatten) take no cycles.
//  * Activations between layers (faithful convention, `keep_activations`, the default): run(model)
//    drives a ResidencyTracker (arch/residency.h) over the ifmap buffer's whole capacity. A layer's
//    output stays in the ifmap buffer for its consumers when it fits beside the activations already
//    kept there and each layer's own A tiles (ifmap_space of its plan), and when its producer can write
//    it there (a linear, convolution or matmul: the one GEMM's output; any vector-unit op) and every
//    consumer can read it in place (the A operand, input 0, of a linear, convolution, matmul or RNN;
//    any input of a vector-unit op). A GEMM layer reading its A in place fetches none of it and needs
//    no A tiles; one keeping its output drains its finished tiles into the ifmap buffer instead of
//    main memory; its tiles are planned in the part of the ifmap buffer the kept activations leave.
//    A model with one layer keeps nothing, so run_op() of an op on its own never differs from it.
//  * time_s = cycles / clock + op_overhead (cycles exclude the fixed per-op overhead).
//  * convention scalesim: the GEMM part's cycles are SCALE-Sim v2's CALC-mode count
//    (scalesim_convention.h) of the slowest array's share: folds strictly serialized, no memory
//    stalls, a count per GEMM instance as SCALE-Sim counts a layer (Σ (folds · rows · passes − 1)),
//    on SCALE-Sim's GEMM (a strided convolution's ofmap sized by SCALE-Sim's rule; the model's
//    tensors, bytes, MACs and energy stay those of the real layer). Energy still comes from the tiled
//    pipeline's action counts. Should that count ever fall
//    below the device's roofline bound (a main memory slower than SCALE-Sim's CALC mode assumes, or a
//    1×1 array), the layer is raised to the bound and the difference counted as input stall.
//  * fidelity cycle: every tile's folds run on the PE grid with real values, checked against a plain
//    matmul; the numbers are exactly those of tile fidelity. Meant for small layers: the cost is the
//    grid's R·C work per simulated cycle. check_work() estimates a run's PE-cycles ((R·C + 8) × the
//    tiling's estimated cycles × arrays, a cycle's own cost counted as 8 PEs', plus the reference products)
//    and refuses a run above WorkLimits::max_pe_cycles, or one whose grid and operand matrices would take
//    more than limits::max_cycle_fidelity_bytes, before anything runs.
//  * bounded at either fidelity: a layer of more than limits::max_tile_steps tile steps is refused
//    (the step list would not fit in memory), and so is one whose serialized steps (compute plus every
//    transfer and its latency, an upper bound of the pipeline's time) would pass
//    limits::max_simulated_s; both are UserErrors located at the op.
// Energy: energy.h (action counts × the config's table) plus static_power × time_s.
// Results: time parts compute = (cycles − stalls) / clock, memory = stalls / clock, overhead =
// op_overhead. The stalls include the arrays waiting for a stationary operand to shift into the PEs
// (os: outputs out) where no stream hides it (pipeline.h). When main memory was busy transferring for
// more cycles than the arrays worked on their own (busy + those shifts), the layer ran at main
// memory's pace with that work hidden under its transfers (a small-batch MLP on TPU v1): memory is
// then main memory's busy time (or the stalls, if longer) and compute the rest. `memory_level` (text,
// on memory-bound layers) names the level waited on: main memory when it set the pace, else the level
// with the most stall cycles (main memory, or the buffer whose port or stationary shifts held the
// arrays). Levels = the three operand buffers under their configured names plus main memory (bytes
// each way and their energy); metrics = stall_weight/input/output_cycles, stall_shift_cycles (of
// those, stationary shifts), pe_hops, energy_pe_hops_j, tiling (text), input_bytes_on_chip,
// input_bytes_from_dram, output_bytes_kept (residency), and the main-memory channel's counters
// (dram_busy_time_s, dram_bytes, dram_transfers; GEMM layers in the faithful convention).
//
// Promises (MLSIM_CHECK, so a violation is an InternalError): no layer is faster than
// arch::roofline_bound of the same device over the bytes it moves across main memory (its inputs
// read in place and its kept output do not; arch/device_model.h); energies are >= 0; stall_cycles <=
// cycles; main-memory reads = bytes filled into the buffers from it, writes = bytes drained to it;
// buffer edge reads = the words the folds consumed; bytes_read/written >= the op's compulsory traffic
// less what it found on chip and kept there.
// Results are memoized per op signature and on-chip context within a model run (tile fidelity
// only): repeated blocks of a network cost nothing extra and give bit-identical rows. Tile plans are
// memoized too, per GEMM job and the mapping context's inputs that plan_gemm reads (tiling.h: a pure
// function), so that needs_of() and run_op() of ops with the same GEMMs search once.
#include <array>
#include <cstdint>
#include <map>
#include <string>
#include <unordered_map>
#include <vector>

#include "arch/device_model.h"
#include "arch/residency.h"
#include "arch/systolic/systolic_spec.h"
#include "arch/systolic/tiling.h"

namespace mlsim::arch::systolic {

class SystolicModel final : public DeviceModel {
  public:
    // The device must have a `systolic:` section (spec_of(spec) != nullptr).
    explicit SystolicModel(DeviceSpec spec);

    std::string_view model_name() const override { return "systolic"; }
    std::vector<LayerResult> run(const wl::Model& model) override;
    void check_work(const wl::Model& model, const WorkLimits& limits) const override;

    // What a layer finds in the ifmap buffer and leaves there (residency across layers).
    struct OnChip {
        std::vector<double> inputs;  // bytes of each input slot read in place (empty / 0: main memory)
        double kept = 0;             // output bytes written into the ifmap buffer for later layers
        double resident = 0;         // bytes other layers' activations occupy in the ifmap buffer meanwhile
        double input_total() const;
    };

    // One op as a layer on its own (idx 0, starting at 0), with nothing on chip.
    LayerResult run_op(const wl::Op& op);
    // One op as a layer of a model, finding `on_chip` in the ifmap buffer.
    LayerResult run_op(const wl::Op& op, const OnChip& on_chip);

    const SystolicSpec& systolic() const { return m_sys; }

    // Work counters, for benchmarks and tests.
    struct Work {
        uint64_t events = 0;  // engine events run
        uint64_t layers_simulated = 0;
        uint64_t cache_hits = 0;  // layers answered from the memo
        uint64_t grid_tiles = 0;  // tiles stepped on the PE grid (cycle fidelity)
    };
    const Work& work() const { return m_work; }
    // Test hook: simulate every layer afresh, to show that memoized layers equal fresh ones.
    void set_memoize_for_test(bool on) { m_memoize = on; }

  private:
    struct Detail;   // what a layer's levels and metrics are made of
    struct Mapping;  // a GEMM layer's context, jobs and plans
    Mapping map_gemms(const wl::Op& op, const OnChip& on_chip) const;
    // Whether the arrays (not the vector unit) run the op.
    static bool on_arrays(const wl::Op& op);
    // Input slot 0 is the A operand of the op's first GEMM, which the arrays can read in place.
    static bool reads_a_in_place(const wl::Op& op);
    // The op's one GEMM produces its output (so the output can stay in the ifmap buffer).
    static bool writes_c_in_place(const wl::Op& op);
    LayerNeeds needs_of(const wl::Op& op) const;
    bool residency() const;
    LayerResult gemm_layer(const wl::Op& op, const OnChip& on_chip, Detail& d);
    LayerResult vector_layer(const wl::Op& op, const OnChip& on_chip, Detail& d);
    // Takes d.tiling (the text moves into the metric rather than being copied).
    void record(LayerResult& r, Detail& d) const;
    double vector_throughput(std::string_view dtype) const;  // op/s, capped at the dtype's peak

    DeviceSpec m_spec;
    SystolicSpec m_sys;  // the spec's section
    std::unordered_map<std::string, LayerResult> m_memo;
    // During run(): the layers so far, and the memo as indices into them (a second copy of every
    // distinct layer would cost its heap pages; the rows differ only in what run_op() sets last).
    const std::vector<LayerResult>* m_run_out = nullptr;
    std::unordered_map<std::string, size_t> m_run_memo;
    // plan_gemm's inputs besides the device (the same for every call of this model): the job and the
    // context's per-layer fields, doubles by their bits; the room in the ifmap buffer only where it
    // matters (below ifmap_capacity_settled).
    using PlanKey = std::array<uint64_t, 12>;
    static PlanKey plan_key(const MappingContext& ctx, const GemmJob& job);
    TilePlan plan(const MappingContext& ctx, const GemmJob& job) const;
    mutable std::map<PlanKey, TilePlan> m_plans;
    Work m_work;
    bool m_memoize = true;
};

}  // namespace mlsim::arch::systolic
