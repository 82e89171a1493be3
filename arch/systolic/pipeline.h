#pragma once
// The memory pipeline of one layer on the systolic device, run in the event engine.
//
// A layer is a list of tile steps (every GEMM job, every lockstep group, every tile in loop order;
// tiling.h). Each step names what must be in the buffers before the arrays start it (the operand
// tiles that changed since the previous step, and partial sums to read back) and how many cycles the
// slowest array computes. Three coroutine processes share one main-memory Channel (bandwidth +
// latency, first come first served between reads and writes):
//   loader:  for each step, for each operand tile that changed: reserve a half of that operand's
//            buffer (a BoundedBuffer of 2 slots when double-buffered, 1 otherwise), issue its transfer
//            from main memory, and commit it when it arrives; it does not wait for the arrival before
//            issuing the next, so transfers pipeline behind each other and latency is paid once per
//            burst. The output buffer gets a slot per output tile run (filled with partial sums from
//            main memory when the run resumes an earlier one).
//   compute: for each step, wait for its filter, ifmap and ofmap slots (in that order; each wait is a
//            stall of that cause, counted in whole cycles), then compute on clock edges; free an
//            operand's slot after the last step that uses it; hand a finished output run to the drainer.
//   drainer: write each finished output run to main memory; its slot is free once the bytes arrive.
// A tile is one run of its folds through the array (fold_model.h: preload, skew and drain included);
// tiles do not overlap inside the array, only their memory traffic overlaps their compute.
// With double buffering the next tile loads and the previous output drains while a tile computes;
// without it they wait for each other. A fill or drain cannot be faster than the buffer's own
// bandwidth either. The layer ends when the last output byte reaches main memory; the cycles after the
// last compute are output stalls, so cycles = busy + weight + input + output stalls exactly.
//
// Promises: the step list is built from per-tile fold statistics, closed-form (tile fidelity) or
// measured on the PE grid with real values (cycle fidelity, CycleChecker); everything downstream is
// shared, so both fidelities give identical cycles and access counts whenever the per-tile
// statistics agree (fold_model.h proves they do). The run checks that it finished (no deadlock) and
// that the channel carried exactly the bytes the steps asked for.
// Assumes: steps are valid (the first step of every group loads every operand).
#include <cstdint>
#include <map>
#include <vector>

#include "arch/device_model.h"
#include "sim/core/stats.h"
#include "arch/systolic/fold_model.h"
#include "arch/systolic/pe_grid.h"
#include "arch/systolic/tiling.h"

namespace mlsim::arch::systolic {

struct Step {
    enum Flag : uint8_t {
        a_new = 1,
        b_new = 2,
        c_new = 4,
        c_reload = 8,  // before the step
        a_last = 16,
        b_last = 32,
        c_end = 64,    // after it
        c_final = 128,  // the step adds the last K tile: what c_end writes is the finished output
    };
    uint64_t a_bytes = 0;          // main-memory bytes of the A tile(s) (when a_new)
    uint64_t b_bytes = 0;          // of the B tile(s) (when b_new)
    uint64_t c_bytes = 0;          // of the finished output tile(s), at the layer's word size
    uint64_t c_partial_bytes = 0;  // of the same tile(s) as partial sums, at the accumulator width
    uint64_t c_extra = 0;          // compulsory bytes written with this step's drain (add_compulsory)
    int64_t cycles = 0;    // of the slowest array, including port_stall
    int64_t port_stall = 0;
    StallCause port_cause = StallCause::input;
    uint8_t flags = 0;
    bool has(Flag f) const { return (flags & f) != 0; }
    // Main-memory bytes read back before the step (partial sums) and written after it (the finished
    // tile, or partial sums spilled because the loop order leaves the tile before its last K tile).
    uint64_t c_read() const { return has(c_reload) ? c_partial_bytes : 0; }
    uint64_t c_write() const {
        return has(c_end) ? (has(c_final) ? c_bytes : c_partial_bytes) + c_extra : 0;
    }
};

struct StepList {
    std::vector<Step> steps;
    AccessCounts counts;          // summed over steps and arrays
    double accumulate_reads = 0;  // output words read to add a K tile into earlier partial sums
    int64_t scalesim_rows = 0;    // SCALE-Sim's serialized fold rows of the slowest array (all jobs)
    std::string tiling;           // TilePlan::describe() of each job, "; "-separated
    uint64_t dram_read() const;
    uint64_t dram_write() const;
};

// Runs every tile of a job on the PE grid with deterministic pseudo-random operands, and checks each
// finished instance's product against a plain matmul (a mismatch is an InternalError). Cost: the grid's
// R·C work per simulated cycle, plus M·N·K for each reference product.
class CycleChecker {
  public:
    CycleChecker(ArrayShape shape, Dataflow dataflow);
    void begin_instance(int64_t job, int64_t instance, const wl::GemmShape& shape);
    GemmStats run_tile(int64_t job, int64_t instance, int64_t m0, int64_t n0, int64_t k0, int64_t tm,
                       int64_t tn, int64_t tk);
    void verify(int64_t job, int64_t instance);
    int64_t tiles_run() const { return m_tiles; }

  private:
    struct Instance {
        Matrix a, b, c;
    };
    PeGrid m_grid;
    Dataflow m_dataflow;
    std::map<std::pair<int64_t, int64_t>, Instance> m_open;
    int64_t m_tiles = 0;
};

// Builds the steps of a layer's jobs with their plans. `checker` null: tile fidelity.
StepList build_steps(const MappingContext& ctx, const std::vector<GemmJob>& jobs,
                     const std::vector<TilePlan>& plans, CycleChecker* checker);

// Main-memory traffic the workload counts as compulsory but the GEMM view does not move (a bias, the
// rows a strided convolution skips, the KV-cache append): added to the first load (into the filter
// buffer when the op has weights, else the ifmap buffer) and to the last drain, so the layer moves at
// least what the roofline charges it.
void add_compulsory(StepList& list, double read_bytes, double write_bytes, bool weights);

// Bytes at each level: fills and edge reads of each buffer, drains, and main memory. The ofmap
// buffer's traffic with the array and its drains are accumulator words of `acc_bytes` (0: word_bytes).
LevelAccesses level_accesses(const StepList& list, double word_bytes, double acc_bytes = 0);

struct PipelineTiming {
    int64_t cycles = 0;  // first cycle to the last byte in main memory
    int64_t busy = 0;    // cycles the arrays computed (the slowest array of each step)
    int64_t stall_weight = 0, stall_input = 0, stall_output = 0;
    uint64_t events = 0;
    std::vector<StatRow> stats;  // the main-memory channel's engine counters (dram.busy_time, ...)
};

// The event-driven run of a step list.
PipelineTiming run_pipeline(const MappingContext& ctx, const StepList& list);

}  // namespace mlsim::arch::systolic
