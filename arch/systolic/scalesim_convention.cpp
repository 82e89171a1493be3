#include "arch/systolic/scalesim_convention.h"

#include "sim/core/check.h"

namespace mlsim::arch::systolic {

// Derivation. SCALE-Sim's compute module builds, per fold, one demand matrix per operand (IFMAP = A,
// FILTER = B, OFMAP = C) with one row per cycle and one column per array row or column; the three have
// the same number of rows. Its memory module walks the rows one per cycle and, with no stalls, reports
// the cycle of the last OFMAP row: rows − 1. Two building blocks:
//   * a fold's block is padded to the full array, so a partial fold has as many rows as a full one;
//   * "skew" of a block with w columns delays column c by c rows, adding w − 1 rows.
// os (Sr = M, Sc = N, T = K): the OFMAP block is T − 1 empty rows (operands streaming in) followed by R
//   rows of outputs (one per array row, padded), C columns wide, then skewed: (T − 1) + R + (C − 1).
//   The IFMAP block agrees: T rows plus C − 1 rows for outputs to drain, R wide, skewed: T + C − 1 + R − 1.
//   No rows account for moving the outputs out of the array.          rows = T + R + C − 2
// ws (Sr = K, Sc = N, T = M): the IFMAP block is R rows of weight loading, T rows of inputs, C − 1 rows
//   of drain, R wide, skewed: R + T + C − 1 + R − 1. The FILTER block (R weight rows, then
//   R + C + T − 2 idle rows, not skewed) and the OFMAP block (2R − 1 + T rows, C wide, skewed) agree.
//                                                                     rows = 2R + C + T − 2
// is (Sr = K, Sc = M, T = N): the ws construction with the roles of IFMAP and FILTER exchanged.
//                                                                     rows = 2R + C + T − 2
// Folds are appended one after another, so the layer has folds · rows rows and SCALE-Sim reports
// folds · rows − 1.
int64_t scalesim_fold_rows(Dataflow df, ArrayShape array, GemmShape gemm) {
    const FoldGeometry g = fold_geometry(df, array, gemm);
    const int64_t R = g.array_rows, C = g.array_cols, T = g.t;
    if (df == Dataflow::os) return T + R + C - 2;
    return 2 * R + C + T - 2;
}

int64_t scalesim_folds(Dataflow df, ArrayShape array, GemmShape gemm) {
    return fold_geometry(df, array, gemm).folds();
}

int64_t scalesim_out_extent(int64_t in, int64_t window, int64_t stride) {
    MLSIM_CHECK(in >= window && window >= 1 && stride >= 1, "SCALE-Sim output extent of an invalid window");
    return (in - window + stride - 1) / stride + 1;
}

wl::GemmShape scalesim_gemm(const wl::Op& op, const wl::GemmShape& g) {
    const wl::ConvAttr* a = op.get<wl::ConvAttr>();
    if (!a) return g;
    const wl::Shape& x = op.inputs.at(0);
    int64_t m = x.at(0);
    for (size_t i = 0; i < static_cast<size_t>(a->dims); ++i) {
        const int64_t in = x.at(2 + i) + a->pad_begin[i] + a->pad_end[i];
        const int64_t span = a->dilation[i] * (a->kernel[i] - 1) + 1;
        m *= scalesim_out_extent(in, span, a->stride[i]);
    }
    MLSIM_CHECK(m >= g.m, "SCALE-Sim's ofmap is smaller than the convolution's");
    return wl::GemmShape{g.batch, m, g.n, g.k};
}

Cycles scalesim_cycles(Dataflow df, ArrayShape array, GemmShape gemm) {
    const int64_t folds = scalesim_folds(df, array, gemm), rows = scalesim_fold_rows(df, array, gemm);
    int64_t total = 0;
    MLSIM_CHECK(!__builtin_mul_overflow(folds, rows, &total), "SCALE-Sim cycle count overflows int64");
    return Cycles{total - 1};
}

}  // namespace mlsim::arch::systolic
