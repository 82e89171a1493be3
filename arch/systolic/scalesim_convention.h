#pragma once
// The cycle count SCALE-Sim v2 (2.0.x) reports for one GEMM layer in CALC mode (no memory stalls),
// for comparing mlsim with published SCALE-Sim numbers. It is a convention, not a model: the faithful
// count is fold_model.h's.
//
// How SCALE-Sim counts (derived from its compute and memory modules; see the .cpp for the derivation):
// for every fold it appends a block of rows to per-operand "demand matrices", one row per cycle, then
// reports the index of the last row, i.e. rows − 1. Where this differs from mlsim's faithful count:
//   * folds run strictly one after another: nothing of the next fold (not even the weight preload in
//     ws/is) overlaps the current one;
//   * every fold takes as long as a full one: partial folds pad their unused rows/columns;
//   * the reported count is one less than the cycles the array is occupied;
//   * os leaves out the output drain: a fold ends when its last MAC does.
// Promises: scalesim_cycles(...) = folds · scalesim_fold_rows(...) − 1, exactly SCALE-Sim's
// "Total Cycles" with zero stall cycles; checked against five numbers from SCALE-Sim's own outputs.
// Assumes: a plain dense GEMM (no sparsity, no custom layout); for a convolution pass its im2col GEMM.
#include "arch/systolic/dataflow.h"

namespace mlsim::arch::systolic {

// Rows each fold adds to SCALE-Sim's demand matrices (the cycles it charges per fold).
int64_t scalesim_fold_rows(Dataflow df, ArrayShape array, GemmShape gemm);

// SCALE-Sim's fold count: ceil(Sr / R) · ceil(Sc / C), the same folds as mlsim's.
int64_t scalesim_folds(Dataflow df, ArrayShape array, GemmShape gemm);

// SCALE-Sim's reported "Total Cycles" in CALC mode.
Cycles scalesim_cycles(Dataflow df, ArrayShape array, GemmShape gemm);

}  // namespace mlsim::arch::systolic
