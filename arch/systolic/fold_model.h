#pragma once
// Tile fidelity of the systolic array: each fold's timing and access counts in closed form.
//
// Promises: for every dataflow, array and GEMM, the numbers equal those of the cycle-stepped reference
// (pe_grid.h) exactly (tests/arch/test_systolic_fold_model.cpp proves it over a grid of shapes); the
// timing rules and the formulas are stated in dataflow.h. fold_stats and gemm_stats are O(1): per-layer
// sums over full and partial folds are closed forms, never loops over folds. gemm_cycles is the sweep
// hot path (no allocation, a handful of integer divisions).
// Assumes: no memory stalls; the memory system adds its own delays on top of these counts.
#include "arch/systolic/dataflow.h"

namespace mlsim::arch::systolic {

// s_f: the cycle fold f's stream starts (dataflow.h gives the recurrence; this is its closed sum).
Cycles fold_stream_start(const FoldGeometry& g, int64_t fold);

// Timing and access counts of one fold.
FoldStats fold_stats(const FoldGeometry& g, int64_t fold);

// The layer: cycles to its last output write and summed access counts.
GemmStats gemm_stats(const FoldGeometry& g);
GemmStats gemm_stats(Dataflow df, ArrayShape array, GemmShape gemm);

// gemm_stats(g) and the stream starts of the first and last folds (fold_stream_start): what the tile
// search (tiling.h) needs of one tile shape, in one call.
struct GemmSummary {
    GemmStats stats;
    int64_t first_start = 0, last_start = 0;
};
GemmSummary gemm_summary(const FoldGeometry& g);

// Cycles only.
Cycles gemm_cycles(const FoldGeometry& g);
Cycles gemm_cycles(Dataflow df, ArrayShape array, GemmShape gemm);

}  // namespace mlsim::arch::systolic
