#pragma once
// Systolic-array dataflows: how a GEMM maps onto an R×C PE grid, how it is cut into folds, and the
// timing rules every fidelity of the systolic family obeys.
//
// Promises: one description of the mapping, the fold order and the timing rules, shared by the
// cycle-stepped reference (pe_grid.h) and the closed-form tile model (fold_model.h). Both fill in the
// same FoldStats / GemmStats, so a test can compare them field by field.
// Assumes: C(M×N) = A(M×K)·B(K×N) with M, N, K ≥ 1 on an array of R, C ≥ 1 PEs; no memory stalls (operand
// SRAMs deliver one word per edge PE per cycle and the output SRAM takes one word per column per cycle).
//
// Mapping (SCALE-Sim's names: Sr = dimension on array rows, Sc = on array columns, T = streamed):
//   os: Sr = M, Sc = N, T = K. PE(i,j) accumulates C[m][n]; A[m][k] enters row i from the left,
//       B[k][n] enters column j from the top; operands shift right / down one PE per cycle.
//   ws: Sr = K, Sc = N, T = M. PE(i,j) holds B[k][n]; A[m][k] enters row i from the left and shifts
//       right; partial sums flow down the columns and leave at the bottom edge.
//   is: Sr = K, Sc = M, T = N. PE(i,j) holds A[m][k]; B[k][n] enters row i from the left and shifts
//       right; partial sums flow down the columns and leave at the bottom edge.
// ws and is are the same machine ("stationary operand W, streamed operand X"): ws has W = B, X = A;
// is has W = Aᵀ, X = Bᵀ.
//
// Folds. Sr is cut into row folds of R (the last holds r_last = Sr − (Fr−1)·R rows) and Sc into column
// folds of C (the last holds c_last columns). Fold f = fc·Fr + fr: column folds outer, row folds inner,
// as SCALE-Sim orders them, so in ws/is the K-slices of one output tile run back to back. A fold uses
// the top-left r×c PEs; every fold streams all T steps.
//
// Timing rules (cycle t runs from edge t to edge t+1; counts are from the first cycle of the layer):
//  * An edge PE uses the SRAM word it reads in the same cycle. Operands move one PE per cycle and only
//    as far as the last PE of the fold that uses them (row r−1, column c−1).
//  * Row i and column j are skewed: the operand for step τ of a fold that starts at s reaches PE(i,j) in
//    cycle s + τ + i + j.
//  * Outputs leave through the bottom edge, one word per column per cycle, so they cross all R rows,
//    used or not. An output is written to the output SRAM in the cycle it leaves row R−1.
//  * Controllers decide at the end of a cycle from what they saw in it; the decision acts next cycle.
//  * os: each PE has an accumulator and a shadow output register (double-buffered output). In the
//    cycle of its last MAC a PE copies the result to its shadow register; the cycle after the last
//    copy in column j that column's shadow registers shift down R times (drain), writing one word per
//    cycle from row R−1. The next fold may stream back to back (s' ≥ s + K) but its first copy in a
//    column must come after that column's drain: s' ≥ s + r + R. Hence
//        s_0 = 0,  s_{f+1} = s_f + max(K, r_f + R).
//  * ws/is: each PE has an active and a shadow stationary register (double-buffered, as in TPU v1).
//    The next fold's words shift down a column's shadow chain (r_{f+1} cycles, one word per cycle,
//    bottom row first) while the current fold computes. A token that travels with the first streamed
//    operand of a fold copies shadow → active in each PE. A column's shadow chain may start loading
//    the cycle after the last copy of the previous load; a fold may start streaming the cycle after
//    its column-0 load completes and after the previous stream has left the edge. Hence
//        P_0 = 0, s_0 = r_0,  P_{f+1} = s_f + r_f,  s_{f+1} = s_f + max(T, r_f + r_{f+1}),
//    i.e. preloading overlaps computing; only the part longer than the stream shows in the count.
//    Partial sums of K-fold fr > 0 are added at the bottom edge to the value read back from the
//    output SRAM (one read, one write per output word).
//  * Fold f is done when its last output is written. With exclusive ends:
//        compute_end = s + T + r + c − 2                      (one past the last MAC)
//        os done     = s + K + r + c + R − 2                  (compute, then the R-cycle drain)
//        ws/is done  = s + T + R + c − 2                      (last partial sum leaves row R−1)
//    The layer ends when its last output is written: max over folds of done (a narrow last column
//    fold can finish before the previous wide one). Cycles attributed to fold f are its non-overlapped
//    part: from s_f (0 for fold 0, so fold 0 carries the first preload) to s_{f+1}, or to the layer end
//    for the last fold; they sum to the layer's cycles.
// Single full fold on an idle array: os K + 2R + C − 2 (K + R + C − 2 compute and skew, R drain);
// ws 2R + C + M − 2 (R preload, then M + R + C − 2); is 2R + C + N − 2.
// Across tiles (pipeline.h, faithful convention) the same rules link the last fold of one tile to the
// first of the next; and a fold whose stationary operand is the one already in the PEs needs no
// preload (ws/is) or drain before it (os): s' = s + T, as if the two streams were one.
#include <cstdint>
#include <iosfwd>
#include <optional>
#include <string_view>

#include "sim/core/time.h"

namespace mlsim::arch::systolic {

enum class Dataflow { os, ws, is };

std::string_view to_string(Dataflow df);
std::optional<Dataflow> parse_dataflow(std::string_view name);  // "os" | "ws" | "is"

struct ArrayShape {
    int64_t rows = 0;  // R
    int64_t cols = 0;  // C
};

struct GemmShape {
    int64_t m = 0, n = 0, k = 0;
};

// The GEMM seen through a dataflow, cut into folds. Cheap to build (two divisions).
struct FoldGeometry {
    Dataflow dataflow = Dataflow::os;
    int64_t array_rows = 0, array_cols = 0;  // R, C
    int64_t sr = 0, sc = 0, t = 0;           // spatial rows, spatial columns, streamed steps
    int64_t row_folds = 0, col_folds = 0;    // Fr, Fc
    int64_t rows_last = 0, cols_last = 0;    // r_last, c_last: extents of the last row / column fold
    int64_t folds() const { return row_folds * col_folds; }
};

FoldGeometry fold_geometry(Dataflow df, ArrayShape array, GemmShape gemm);

// Where fold `index` sits: fold = col_fold · Fr + row_fold.
struct FoldCoord {
    int64_t index = 0;
    int64_t row_fold = 0, col_fold = 0;
    int64_t row0 = 0, col0 = 0;  // first index of Sr / Sc covered
    int64_t rows = 0, cols = 0;  // r, c: PEs used
    friend bool operator==(const FoldCoord&, const FoldCoord&) = default;
};

FoldCoord fold_coord(const FoldGeometry& g, int64_t index);

// Words moved. SRAM counts are words crossing the array edge; hops are PE-to-PE register moves of a
// word (entering an edge PE from SRAM or leaving to SRAM is not a hop).
struct AccessCounts {
    int64_t macs = 0;
    int64_t a_reads = 0;     // A words read from its SRAM into the array
    int64_t b_reads = 0;     // B words read from its SRAM into the array
    int64_t out_writes = 0;  // output words written to the output SRAM
    int64_t out_reads = 0;   // partial sums read back to accumulate across K folds (ws, is)
    int64_t a_hops = 0;      // moves of A words between neighbouring PEs
    int64_t b_hops = 0;      // moves of B words between neighbouring PEs
    int64_t out_hops = 0;    // moves of partial sums (ws, is) or drained outputs (os)
    int64_t hops() const { return a_hops + b_hops + out_hops; }
    AccessCounts& operator+=(const AccessCounts& o);
    friend bool operator==(const AccessCounts&, const AccessCounts&) = default;
};

// Points are cycle numbers from the start of the layer; ends are exclusive.
struct FoldTiming {
    Cycles preload_start;  // ws/is: first cycle of this fold's column-0 shadow load; os: = stream_start
    Cycles stream_start;   // s_f: cycle the fold's first streamed word enters PE(0,0)
    Cycles compute_end;    // one past the fold's last MAC
    Cycles done;           // one past the cycle its last output is written
    Cycles cycles;         // non-overlapped cycles attributed to this fold (they sum to the layer's)
    friend bool operator==(const FoldTiming&, const FoldTiming&) = default;
};

struct FoldStats {
    FoldCoord coord;
    FoldTiming timing;
    AccessCounts counts;
    friend bool operator==(const FoldStats&, const FoldStats&) = default;
};

struct GemmStats {
    Cycles cycles;  // first cycle of the layer to one past its last output write
    int64_t folds = 0;
    AccessCounts counts;
    friend bool operator==(const GemmStats&, const GemmStats&) = default;
};

std::ostream& operator<<(std::ostream& os, const AccessCounts& c);
std::ostream& operator<<(std::ostream& os, const FoldTiming& t);
std::ostream& operator<<(std::ostream& os, const FoldCoord& c);
std::ostream& operator<<(std::ostream& os, const FoldStats& s);
std::ostream& operator<<(std::ostream& os, const GemmStats& s);

}  // namespace mlsim::arch::systolic
