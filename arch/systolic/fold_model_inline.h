#pragma once
// The closed forms of fold_model.cpp and fold_geometry (dataflow.cpp) as inline functions, so that the
// tile search (tiling.cpp), which costs thousands of tile shapes per run, compiles them into its loop
// instead of calling across translation units (bench/README.md, issue 8). fold_model.cpp and
// dataflow.cpp call these same functions: one definition of each formula.
#include <algorithm>

#include "arch/systolic/dataflow.h"
#include "sim/core/check.h"

namespace mlsim::arch::systolic::detail {

[[gnu::always_inline]] inline int64_t checked_mul(int64_t a, int64_t b) {
    int64_t r = 0;
    MLSIM_CHECK(!__builtin_mul_overflow(a, b, &r), "systolic access count overflows int64");
    return r;
}

inline FoldGeometry fold_geometry(Dataflow df, ArrayShape array, GemmShape gemm) {
    MLSIM_CHECK(array.rows >= 1 && array.cols >= 1, "systolic array needs at least one PE");
    MLSIM_CHECK(gemm.m >= 1 && gemm.n >= 1 && gemm.k >= 1, "GEMM dimensions must be at least 1");
    FoldGeometry g;
    g.dataflow = df;
    g.array_rows = array.rows;
    g.array_cols = array.cols;
    switch (df) {
        case Dataflow::os:
            g.sr = gemm.m, g.sc = gemm.n, g.t = gemm.k;
            break;
        case Dataflow::ws:
            g.sr = gemm.k, g.sc = gemm.n, g.t = gemm.m;
            break;
        case Dataflow::is:
            g.sr = gemm.k, g.sc = gemm.m, g.t = gemm.n;
            break;
    }
    g.row_folds = (g.sr + array.rows - 1) / array.rows;
    g.col_folds = (g.sc + array.cols - 1) / array.cols;
    g.rows_last = g.sr - (g.row_folds - 1) * array.rows;
    g.cols_last = g.sc - (g.col_folds - 1) * array.cols;
    return g;
}

inline int64_t rows_of(const FoldGeometry& g, int64_t fold) {
    return fold % g.row_folds == g.row_folds - 1 ? g.rows_last : g.array_rows;
}

inline int64_t cols_of(const FoldGeometry& g, int64_t fold) {
    return fold / g.row_folds == g.col_folds - 1 ? g.cols_last : g.array_cols;
}

// s_f as a closed sum of the per-fold steps s_{g+1} − s_g for g < f (dataflow.h). Only the row extent
// of a fold enters a step, and in the fold order (row folds inner) the partial row fold is the last of
// every group of Fr, so counting the steps of each kind needs no loop.
inline int64_t stream_start(const FoldGeometry& g, int64_t f) {
    const int64_t R = g.array_rows, T = g.t, rl = g.rows_last, Fr = g.row_folds;
    if (g.dataflow == Dataflow::os) {
        // step(g) = max(K, r_g + R); folds g < f with r_g = r_last are those with g mod Fr = Fr − 1.
        const int64_t n_last = f / Fr;
        return n_last * std::max(T, rl + R) + (f - n_last) * std::max(T, 2 * R);
    }
    // ws/is: s_0 = r_0, step(g) = max(T, r_g + r_{g+1}).
    if (Fr == 1) return rl + f * std::max(T, 2 * rl);
    // Pairs (r_last, R) end a group (g mod Fr = Fr − 1) and pairs (R, r_last) lead into one
    // (g mod Fr = Fr − 2); both sum to R + r_last. The rest are (R, R).
    const int64_t n_end = f / Fr, n_into = (f + 1) / Fr;
    const int64_t n_mixed = n_end + n_into;
    return R + n_mixed * std::max(T, R + rl) + (f - n_mixed) * std::max(T, 2 * R);
}

// One past the cycle fold f writes its last output.
inline int64_t done_at(const FoldGeometry& g, int64_t f, int64_t s) {
    const int64_t R = g.array_rows, T = g.t, c = cols_of(g, f);
    if (g.dataflow == Dataflow::os) return s + T + rows_of(g, f) + c + R - 2;
    return s + T + R + c - 2;
}

// The last output write of the layer is that of the last fold or, when the last column fold is
// narrow, possibly that of the last fold of the previous column group (dones rise within a group and
// from one full-width group to the next, see dataflow.h). `last_start`: the last fold's stream start,
// stream_start(g, folds − 1), which the tile search has at hand.
inline int64_t layer_end(const FoldGeometry& g, int64_t last_start) {
    const int64_t last = g.folds() - 1;
    int64_t end = done_at(g, last, last_start);
    if (g.col_folds >= 2) {
        const int64_t prev = last - g.row_folds;
        end = std::max(end, done_at(g, prev, stream_start(g, prev)));
    }
    return end;
}

inline int64_t layer_end(const FoldGeometry& g) { return layer_end(g, stream_start(g, g.folds() - 1)); }

// Layer sums of the folds' access counts in closed form. Sums over folds factor into sums over row
// folds times sums over column folds: Σ r = Fc·Sr, Σ c = Fr·Sc, Σ r·c = Sr·Sc.
[[gnu::always_inline]] inline AccessCounts layer_counts(const FoldGeometry& g) {
    const int64_t R = g.array_rows, T = g.t, Sr = g.sr, Sc = g.sc, Fr = g.row_folds, Fc = g.col_folds;
    const int64_t rl = g.rows_last;
    const int64_t sum_r = checked_mul(Fc, Sr), sum_c = checked_mul(Fr, Sc), sum_rc = checked_mul(Sr, Sc);
    AccessCounts n;
    n.macs = checked_mul(sum_rc, T);
    if (g.dataflow == Dataflow::os) {
        n.a_reads = checked_mul(T, sum_r);
        n.b_reads = checked_mul(T, sum_c);
        n.out_writes = sum_rc;
        n.a_hops = checked_mul(T, sum_rc - sum_r);
        n.b_hops = checked_mul(T, sum_rc - sum_c);
        const int64_t per_col = checked_mul(Fr - 1, R * (R - 1) / 2) + rl * (2 * R - 1 - rl) / 2;
        n.out_hops = checked_mul(Sc, per_col);
        return n;
    }
    const int64_t stream_reads = checked_mul(T, sum_r), stat_reads = sum_rc;
    const int64_t stream_hops = checked_mul(T, sum_rc - sum_r);
    const int64_t stat_hops = checked_mul(Sc, checked_mul(Fr - 1, R * (R - 1) / 2) + rl * (rl - 1) / 2);
    n.out_writes = checked_mul(T, sum_c);
    n.out_reads = checked_mul(T, sum_c - Sc);  // every K fold but the first reads back its outputs
    n.out_hops = checked_mul(n.out_writes, R - 1);
    if (g.dataflow == Dataflow::ws) {
        n.a_reads = stream_reads, n.b_reads = stat_reads, n.a_hops = stream_hops, n.b_hops = stat_hops;
    } else {
        n.b_reads = stream_reads, n.a_reads = stat_reads, n.b_hops = stream_hops, n.a_hops = stat_hops;
    }
    return n;
}

// The buffer-port words of layer_counts (a_reads, b_reads, out_writes, out_reads; the rest zero), with
// the same formulas: the tile search's port stretch reads only these, for thousands of tile shapes a run.
[[gnu::always_inline]] inline AccessCounts port_counts(const FoldGeometry& g) {
    const int64_t T = g.t, Sr = g.sr, Sc = g.sc;
    const int64_t sum_r = checked_mul(g.col_folds, Sr), sum_c = checked_mul(g.row_folds, Sc);
    const int64_t sum_rc = checked_mul(Sr, Sc);
    AccessCounts n;
    if (g.dataflow == Dataflow::os) {
        n.a_reads = checked_mul(T, sum_r);
        n.b_reads = checked_mul(T, sum_c);
        n.out_writes = sum_rc;
        return n;
    }
    const int64_t stream_reads = checked_mul(T, sum_r), stat_reads = sum_rc;
    n.out_writes = checked_mul(T, sum_c);
    n.out_reads = checked_mul(T, sum_c - Sc);
    if (g.dataflow == Dataflow::ws) {
        n.a_reads = stream_reads, n.b_reads = stat_reads;
    } else {
        n.b_reads = stream_reads, n.a_reads = stat_reads;
    }
    return n;
}

inline GemmStats gemm_stats(const FoldGeometry& g) {
    GemmStats st;
    st.cycles = Cycles{layer_end(g)};
    st.folds = g.folds();
    st.counts = layer_counts(g);
    return st;
}

}  // namespace mlsim::arch::systolic::detail
