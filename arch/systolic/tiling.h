#pragma once
// How one GEMM of a layer is spread over the arrays and cut into tiles that fit the operand buffers,
// and a closed-form estimate of the double-buffered pipeline that chooses among the candidates.
//
// Lowering (done by wl::Op::gemms(); restated because everything here depends on it):
//   C(M×N) = A(M×K)·B(K×N), `batch` independent instances. linear: M = tokens, N = out, K = in.
//   Convolution through im2col: M = N·Ho·Wo, N = Cout/groups, K = Cin/groups·Kh·Kw, batch = groups
//   (a depthwise convolution is `groups` GEMMs with N = 1). Attention: Q·Kᵀ then P·V, batch = B·heads.
//   RNN: the input projection over all steps, then T dependent recurrent GEMMs (batch = T, sequential).
// A is the ifmap operand, B the filter operand, C the ofmap operand, whatever the dataflow.
//
// Partitioning across `arrays` (they share the buffers and main memory and run in lockstep, tile step
// by tile step): independent instances are dealt out one per array (split=batch); a single instance
// is split along N (each array owns a slice of output columns and its weights; A is shared and
// fetched once) or along M (each array owns a slice of rows; B is shared and fetched once), whichever
// the estimate prefers (ties go to N). Split extents are rounded up to whole folds of the array.
// A step takes as long as its slowest array, so a layer ends when its slowest array does.
//
// Tiles: (tm, tn, tk) per array; a tile's operands must fit the buffers (half of each when
// double-buffered; a shared operand is stored once, private ones once per array). The loop order
// (outer to inner, e.g. "mnk") decides reuse: an operand stays in its buffer while its tile index does
// not change between consecutive steps, and is fetched again (a refetch, counted) whenever it changes,
// even if an earlier step had it. An output tile left before all its K tiles are done is written out
// as partial sums and read back when the order returns to it.
//
// Bytes in main memory and in the buffers: a word of the layer's data type, except that an
// im2col matrix is not stored: its DRAM traffic and buffer footprint are those of the input feature
// map (scale = input elements / A elements, e.g. 1/9 for a 3×3 stride-1 convolution), while the
// array edge still reads every im2col word from the ifmap buffer (on-chip im2col). The ofmap buffer
// holds partial sums at the accumulator width (MappingContext::acc_bytes): its capacity is counted in
// accumulator words, partial sums spilled to main memory and read back move at that width, and only a
// finished output tile leaves at the layer's word size.
//
// Promises: plan_gemm never returns a tiling that does not fit; it throws cfg::UserError (located at
// the buffer's `capacity`, or at `tile` for a fixed tiling) when none does. The search is a pure
// function of its inputs and cheap (tens of closed-form evaluations per GEMM).
#include <array>
#include <cstdint>
#include <string>

#include "arch/device_spec.h"
#include "arch/systolic/dataflow.h"
#include "arch/systolic/systolic_spec.h"
#include "workloads/op.h"

namespace mlsim::arch::systolic {

enum class StallCause : uint8_t { weight, input, output };

// What a layer's GEMMs see of the device.
struct MappingContext {
    const DeviceSpec* device = nullptr;
    const SystolicSpec* spec = nullptr;
    std::string op_name;  // for messages
    double clock_hz = 0;
    double dram_Bps = 0;  // main memory
    double dram_latency_s = 0;
    double word_bytes = 0;  // one element of the layer's data type (0.5 for int4)
    double acc_bytes = 0;   // one partial sum in the ofmap buffer (SystolicSpec::accumulator_bytes); 0: word_bytes
    int64_t passes = 1;     // array passes per MAC for this data type
    double partial_bytes() const { return acc_bytes > 0 ? acc_bytes : word_bytes; }
};

// Main-memory / buffer bytes per word, relative to word_bytes, per operand (see the header comment).
struct OperandScale {
    double a = 1, b = 1, c = 1;
};

struct GemmJob {
    wl::GemmShape shape;      // batch, m, n, k
    bool sequential = false;  // the batch entries depend on each other (RNN steps)
    OperandScale scale;
};

enum class Split : uint8_t { none, batch, n, m };

struct Partition {
    Split split = Split::none;
    int64_t arrays_used = 1;  // arrays with work
    int64_t chunk = 0;        // extent of the split dimension per array (the last may be smaller)
    int64_t groups = 1;       // lockstep groups: instances run one after another (batch: ceil(batch/arrays))
    int64_t m = 0, n = 0, k = 0;  // the largest per-array sub-GEMM
    bool shared_a() const { return split == Split::n; }
    bool shared_b() const { return split == Split::m; }
};

enum Dim : uint8_t { dim_m = 0, dim_n = 1, dim_k = 2 };

struct TilePlan {
    Partition part;
    std::array<int64_t, 3> tile{};                  // tm, tn, tk
    std::array<int64_t, 3> count{};                 // tiles per dimension
    std::array<Dim, 3> order{dim_m, dim_n, dim_k};  // outer to inner
    double estimate_cycles = 0;                     // for the whole job (all groups)
    int64_t steps() const { return count[0] * count[1] * count[2]; }
    // "m=392 n=64 k=576 tiles=1x1x1 order=mnk" (+ " split=m/8" with several arrays)
    std::string describe() const;
};

// Cycles a tile keeps its array busy: the folds' cycles times the data type's passes, stretched
// when one of the buffers cannot move the tile's words in that time (its bandwidth is shared equally
// by all arrays; reads and writes have a port each).
struct TileTime {
    int64_t base = 0;                      // fold cycles × passes
    int64_t total = 0;                     // >= base
    StallCause cause = StallCause::input;  // the buffer that stretched it, when total > base
};
// `accumulate`: the tile adds into partial sums of earlier K tiles, so every output word is also read.
TileTime tile_time(const MappingContext& ctx, const GemmStats& st, int64_t m, int64_t n, bool accumulate);

// Bytes of `words` words of an operand with scale `s` (rounded up to whole bytes).
uint64_t operand_bytes(const MappingContext& ctx, double words, double s);

// The partition and tiling of one GEMM job.
TilePlan plan_gemm(const MappingContext& ctx, const GemmJob& job);

// Fold granularity of a GEMM dimension under a dataflow: the array extent it is spread over (rows
// or columns), or 1 for the streamed dimension.
int64_t granularity(Dataflow df, ArrayShape array, Dim d);

}  // namespace mlsim::arch::systolic
