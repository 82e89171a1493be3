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
//   * a convolution's output is sized ceil((in − window + stride) / stride) per axis, with no padding
//     of its own: one more row or column than the real convolution's floor((in − window) / stride) + 1
//     whenever the stride does not divide in − window (SCALE-Sim counts a last window that hangs over
//     the edge). So its GEMM has more rows M (ofmap pixels) than the layer computes.
//   * each GEMM is one SCALE-Sim layer with its own count (a depthwise "DP" layer of a topology file is
//     one layer per channel), so an op with several GEMM instances pays the − 1 once per instance.
// Promises: scalesim_cycles(...) = folds · scalesim_fold_rows(...) − 1, exactly SCALE-Sim's
// "Total Cycles" with zero stall cycles; checked against numbers from SCALE-Sim's own outputs.
// Assumes: a plain dense GEMM (no sparsity, no custom layout); for a convolution pass
// scalesim_gemm()'s im2col GEMM.
#include "arch/systolic/dataflow.h"
#include "workloads/op.h"

namespace mlsim::arch::systolic {

// Rows each fold adds to SCALE-Sim's demand matrices (the cycles it charges per fold).
int64_t scalesim_fold_rows(Dataflow df, ArrayShape array, GemmShape gemm);

// SCALE-Sim's fold count: ceil(Sr / R) · ceil(Sc / C), the same folds as mlsim's.
int64_t scalesim_folds(Dataflow df, ArrayShape array, GemmShape gemm);

// SCALE-Sim's reported "Total Cycles" in CALC mode.
Cycles scalesim_cycles(Dataflow df, ArrayShape array, GemmShape gemm);

// SCALE-Sim's output extent of a convolution along one axis: ceil((in − window + stride) / stride)
// = ceil((in − window) / stride) + 1, for in >= window >= 1 and stride >= 1.
int64_t scalesim_out_extent(int64_t in, int64_t window, int64_t stride);

// The GEMM SCALE-Sim counts for `g`, one of op.gemms(): for a convolution, M = batch × SCALE-Sim's
// output extents (scalesim_out_extent of the padded input and the dilated window, so a zoo layer with
// padding is counted as SCALE-Sim would count its padded input); every other GEMM unchanged.
// Why here and not in the model: SCALE-Sim's sizing is a rule of its cycle count, not a property of
// the layer. The topology loader (workloads/scalesim_csv.h) builds the model before any device or
// convention is known, and the same model runs on every family, on the roofline and in the faithful
// convention, all of which must see the tensors the layer really has (bytes, MACs, the roofline
// floor). Only the count that claims to be SCALE-Sim's uses SCALE-Sim's M.
wl::GemmShape scalesim_gemm(const wl::Op& op, const wl::GemmShape& g);

}  // namespace mlsim::arch::systolic
