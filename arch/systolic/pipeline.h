#pragma once
// The memory pipeline of one layer on the systolic device, run in the event engine.
//
// A layer is a list of tile steps (every GEMM job, every lockstep group, every tile in loop order;
// tiling.h). Each step names what must be in the buffers before the arrays start it (the operand
// tiles that changed since the previous step, and partial sums to read back) and where its folds sit
// in time on the slowest array (Step::lead .. done). Three coroutine processes share one main-memory Channel
// (bandwidth + latency, first come first served between reads and writes):
//   loader:  for each step, for each operand tile that changed: reserve a half of that operand's
//            buffer (a BoundedBuffer of 2 slots when double-buffered, 1 otherwise), issue its transfer
//            from main memory, and commit it when it arrives; it does not wait for the arrival before
//            issuing the next, so transfers pipeline behind each other and latency is paid once per
//            burst. The output buffer gets a slot per output tile run (filled with partial sums from
//            main memory when the run resumes an earlier one).
//   compute: places each step in the arrays' fold sequence (below), waiting for its filter, ifmap and
//            ofmap slots (in that order; the part of a wait that delays the step beyond what the
//            array itself allows is a stall of that cause, counted in whole cycles); releases an
//            operand's slot once the array has read its last word of it, and hands a finished output
//            run to the drainer once it is all written.
//   drainer: write each finished output run to main memory (or, kept for a later layer, into the
//            ifmap buffer); its slot is free once the bytes have left.
// A tile is one run of its folds through the array (fold_model.h: preload, skew and drain included).
// In the faithful convention consecutive tiles do not wait for each other's drain: the array goes on
// with its fold sequence across the tile boundary, by dataflow.h's rules between folds: the next
// tile's first stream starts once the last fold's stream has passed, its shadow registers are free
// again and the next stationary operand is preloaded (ws/is: s' = s + max(T, r + r'); os: s' = s +
// max(K, r + R)); and when the stationary operand does not change and each tile is one fold (tiles
// along the streamed dimension: os K, ws M, is N), the next tile streams right behind the last (s' = s
// + T, Step::streams_on), with no preload and, in os, the outputs accumulating in place (no drain,
// no read-back). A step that may read an earlier job's outputs (the first of a job, or of a dependent
// RNN step) waits for every earlier output (Step::barrier). A stationary operand's preload needs its
// tile to have arrived; so the first tile's preload overlaps the streamed operand's load.
// With double buffering the next tile loads and the previous output drains while a tile computes;
// without it they wait for each other. A fill or drain cannot be faster than the buffer's own
// bandwidth either. The layer ends when the last output byte reaches main memory; the cycles after the
// last output write are output stalls, so cycles = busy + weight + input + output stalls exactly.
//
// Promises: the step list is built from per-tile fold statistics, closed-form (tile fidelity) or
// measured on the PE grid with real values (cycle fidelity, CycleChecker); everything downstream is
// shared, so both fidelities give identical cycles and access counts whenever the per-tile
// statistics agree (fold_model.h proves they do). The run checks that it finished (no deadlock) and
// that the channel carried exactly the bytes the steps asked for. The two fidelities agree on tiles
// that stream on or follow each other too: a chain of tiles takes exactly the cycles and moves exactly
// the words of the uncut GEMM on the PE grid (tests/arch/test_systolic_model_pipeline.cpp).
// Assumes: steps are valid (the first step of every group loads every operand it does not read in
// place).
#include <cstdint>
#include <map>
#include <vector>

#include "arch/device_model.h"
#include "arch/systolic/fold_model.h"
#include "arch/systolic/pe_grid.h"
#include "arch/systolic/tiling.h"
#include "sim/core/stats.h"

namespace mlsim::arch::systolic {

struct Step {
    enum Flag : uint16_t {
        a_new = 1,
        b_new = 2,
        c_new = 4,
        c_reload = 8,  // before the step
        a_last = 16,
        b_last = 32,
        c_end = 64,     // after it
        c_final = 128,  // the step adds the last K tile: what c_end writes is the finished output
        // Same stationary operand as the step before and one fold each: the array streams this tile
        // right behind that one (no preload, no drain in between; faithful convention).
        streams_on = 256,
        // The step may not start before every earlier output is written: the first step of a job (it
        // may read the previous job's outputs) and of each dependent instance (RNN steps).
        barrier = 512,
        // The finished output stays on chip (the layer's output is kept for a later layer): its drain
        // goes to the ifmap buffer, not to main memory.
        c_keep = 1024,
    };
    uint64_t a_bytes = 0;          // main-memory bytes of the A tile(s) (when a_new)
    uint64_t b_bytes = 0;          // of the B tile(s) (when b_new)
    uint64_t c_bytes = 0;          // of the finished output tile(s), at the layer's word size
    uint64_t c_partial_bytes = 0;  // of the same tile(s) as partial sums, at the accumulator width
    uint64_t c_extra = 0;          // compulsory bytes written with this step's drain (add_compulsory)
    // Where the step's folds sit, counted from S, the cycle its first stream starts, times the data
    // type's passes; with several arrays, the largest of each (they run in lockstep).
    int64_t lead = 0;        // the stationary operand's preload before S (ws/is), unless streams_on
    int64_t last_start = 0;  // S + last_start: its last fold's stream starts (port stretch included)
    int64_t stream = 0;      // T: the stream length of its folds
    int64_t hold = 0;        // TileSchedule::hold
    // Cycles between its folds' streams spent shifting the next stationary operand in (ws/is) or the
    // last outputs out (os) where the streams are too short to hide it: s_last − s_0 − (folds − 1)·T.
    int64_t shift = 0;
    int64_t done = 0;                // S + done: its last output is written (port stretch included)
    int64_t a_free = 0, b_free = 0;  // S + x: it has read its last A / B word (TileSchedule::a_free)
    int64_t port_stall = 0;          // cycles a buffer port slower than the array edge added
    StallCause port_cause = StallCause::input;
    uint16_t flags = 0;
    bool has(Flag f) const { return (flags & f) != 0; }
    // Main-memory bytes read back before the step (partial sums) and written after it (the finished
    // tile unless it stays on chip, or partial sums spilled because the loop order leaves the tile
    // before its last K tile).
    uint64_t c_read() const { return has(c_reload) ? c_partial_bytes : 0; }
    uint64_t c_write() const {
        if (!has(c_end)) return 0;
        if (!has(c_final)) return c_partial_bytes + c_extra;
        return (has(c_keep) ? 0 : c_bytes) + c_extra;
    }
    // Bytes of the finished tile written into the ifmap buffer instead of main memory.
    uint64_t c_kept() const { return has(c_end) && has(c_final) && has(c_keep) ? c_bytes : 0; }
};

struct StepList {
    std::vector<Step> steps;
    Dataflow dataflow = Dataflow::ws;
    int64_t array_rows = 0;       // R × passes: a drain's length in the fold rule (os)
    AccessCounts counts;          // summed over steps and arrays
    double accumulate_reads = 0;  // output words read to add a K tile into earlier partial sums
    std::string tiling;           // TilePlan::describe() of each job, "; "-separated
    uint64_t dram_read() const;
    uint64_t dram_write() const;
    uint64_t kept() const;  // finished output bytes written into the ifmap buffer
};

// One tile's numbers: its fold statistics and where its folds sit in time.
struct TileRun {
    GemmStats stats;
    TileSchedule schedule;
};

// Runs every tile of a job on the PE grid with deterministic pseudo-random operands, and checks each
// finished instance's product against a plain matmul (a mismatch is an InternalError). Cost: the grid's
// R·C work per simulated cycle, plus M·N·K for each reference product.
class CycleChecker {
  public:
    CycleChecker(ArrayShape shape, Dataflow dataflow);
    void begin_instance(int64_t job, int64_t instance, const wl::GemmShape& shape);
    TileRun run_tile(int64_t job, int64_t instance, int64_t m0, int64_t n0, int64_t k0, int64_t tm,
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

// Builds the steps of a layer's jobs with their plans. `checker` null: tile fidelity. `keep_output`:
// the finished outputs of the last job (the layer's output) stay on chip (Step::c_keep).
StepList build_steps(const MappingContext& ctx, const std::vector<GemmJob>& jobs,
                     const std::vector<TilePlan>& plans, CycleChecker* checker, bool keep_output = false);

// Main-memory traffic the workload counts as compulsory but the GEMM view does not move (a bias, the
// rows a strided convolution skips, the KV-cache append): added to the first load (into the filter
// buffer when the op has weights, else the ifmap buffer) and to the last drain, so the layer moves at
// least what the roofline charges it.
void add_compulsory(StepList& list, double read_bytes, double write_bytes, bool weights);

// Bytes at each level: fills and edge reads of each buffer, drains, and main memory. The ofmap
// buffer's traffic with the array and its drains are accumulator words of `acc_bytes` (0: word_bytes).
// Finished outputs kept on chip are written into the ifmap buffer.
LevelAccesses level_accesses(const StepList& list, double word_bytes, double acc_bytes = 0);

struct PipelineTiming {
    int64_t cycles = 0;  // first cycle to the last byte in main memory
    int64_t busy = 0;    // cycles the arrays computed (the slowest array of each step)
    int64_t stall_weight = 0, stall_input = 0, stall_output = 0;
    // Of those, cycles spent waiting on an on-chip buffer, by cause: a port slower than the array
    // edge, or a stationary operand shifting from its buffer into the PEs when the streams are too
    // short to hide it (the rest waited on main memory).
    int64_t chip_weight = 0, chip_input = 0, chip_output = 0;
    int64_t shift =
        0;  // of the stalls, the stationary operand's shifts (ws: weight, is: input, os: output drain)
    int64_t dram_busy = 0;  // cycles the main-memory channel was transferring (whole cycles, rounded up)
    uint64_t events = 0;
    std::vector<StatRow> stats;  // the main-memory channel's engine counters (dram.busy_time, ...)
};

// The event-driven run of a step list.
PipelineTiming run_pipeline(const MappingContext& ctx, const StepList& list);

}  // namespace mlsim::arch::systolic
