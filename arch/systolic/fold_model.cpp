#include "arch/systolic/fold_model.h"

#include <algorithm>

#include "sim/core/check.h"

namespace mlsim::arch::systolic {

namespace {

[[gnu::always_inline]] inline int64_t mul(int64_t a, int64_t b) {
    int64_t r = 0;
    MLSIM_CHECK(!__builtin_mul_overflow(a, b, &r), "systolic access count overflows int64");
    return r;
}

int64_t rows_of(const FoldGeometry& g, int64_t fold) {
    return fold % g.row_folds == g.row_folds - 1 ? g.rows_last : g.array_rows;
}

int64_t cols_of(const FoldGeometry& g, int64_t fold) {
    return fold / g.row_folds == g.col_folds - 1 ? g.cols_last : g.array_cols;
}

// s_f as a closed sum of the per-fold steps s_{g+1} − s_g for g < f (dataflow.h). Only the row extent
// of a fold enters a step, and in the fold order (row folds inner) the partial row fold is the last of
// every group of Fr, so counting the steps of each kind needs no loop.
int64_t stream_start(const FoldGeometry& g, int64_t f) {
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
int64_t done_at(const FoldGeometry& g, int64_t f, int64_t s) {
    const int64_t R = g.array_rows, T = g.t, c = cols_of(g, f);
    if (g.dataflow == Dataflow::os) return s + T + rows_of(g, f) + c + R - 2;
    return s + T + R + c - 2;
}

// The last output write of the layer is that of the last fold or, when the last column fold is
// narrow, possibly that of the last fold of the previous column group (dones rise within a group and
// from one full-width group to the next, see dataflow.h).
int64_t layer_end(const FoldGeometry& g) {
    const int64_t last = g.folds() - 1;
    int64_t end = done_at(g, last, stream_start(g, last));
    if (g.col_folds >= 2) {
        const int64_t prev = last - g.row_folds;
        end = std::max(end, done_at(g, prev, stream_start(g, prev)));
    }
    return end;
}

AccessCounts fold_counts(const FoldGeometry& g, const FoldCoord& c) {
    const int64_t R = g.array_rows, T = g.t, r = c.rows, w = c.cols;
    AccessCounts n;
    n.macs = mul(mul(r, w), T);
    if (g.dataflow == Dataflow::os) {
        n.a_reads = mul(r, T);
        n.b_reads = mul(w, T);
        n.out_writes = r * w;
        n.a_hops = mul(mul(r, T), w - 1);
        n.b_hops = mul(mul(w, T), r - 1);
        // Row i's output crosses R − 1 − i rows on its way out: Σ_{i<r} (R−1−i) = r(2R−1−r)/2.
        n.out_hops = mul(w, r * (2 * R - 1 - r) / 2);
        return n;
    }
    const int64_t stream_reads = mul(r, T), stat_reads = r * w;
    const int64_t stream_hops = mul(mul(r, T), w - 1), stat_hops = mul(w, r * (r - 1) / 2);
    n.out_writes = mul(w, T);
    n.out_reads = c.row_fold > 0 ? n.out_writes : 0;
    n.out_hops = mul(n.out_writes, R - 1);  // every partial sum crosses all R rows
    if (g.dataflow == Dataflow::ws) {
        n.a_reads = stream_reads, n.b_reads = stat_reads, n.a_hops = stream_hops, n.b_hops = stat_hops;
    } else {
        n.b_reads = stream_reads, n.a_reads = stat_reads, n.b_hops = stream_hops, n.a_hops = stat_hops;
    }
    return n;
}

// Layer sums of fold_counts in closed form. Sums over folds factor into sums over row folds times sums
// over column folds: Σ r = Fc·Sr, Σ c = Fr·Sc, Σ r·c = Sr·Sc.
AccessCounts layer_counts(const FoldGeometry& g) {
    const int64_t R = g.array_rows, T = g.t, Sr = g.sr, Sc = g.sc, Fr = g.row_folds, Fc = g.col_folds;
    const int64_t rl = g.rows_last;
    const int64_t sum_r = mul(Fc, Sr), sum_c = mul(Fr, Sc), sum_rc = mul(Sr, Sc);
    AccessCounts n;
    n.macs = mul(sum_rc, T);
    if (g.dataflow == Dataflow::os) {
        n.a_reads = mul(T, sum_r);
        n.b_reads = mul(T, sum_c);
        n.out_writes = sum_rc;
        n.a_hops = mul(T, sum_rc - sum_r);
        n.b_hops = mul(T, sum_rc - sum_c);
        const int64_t per_col = mul(Fr - 1, R * (R - 1) / 2) + rl * (2 * R - 1 - rl) / 2;
        n.out_hops = mul(Sc, per_col);
        return n;
    }
    const int64_t stream_reads = mul(T, sum_r), stat_reads = sum_rc;
    const int64_t stream_hops = mul(T, sum_rc - sum_r);
    const int64_t stat_hops = mul(Sc, mul(Fr - 1, R * (R - 1) / 2) + rl * (rl - 1) / 2);
    n.out_writes = mul(T, sum_c);
    n.out_reads = mul(T, sum_c - Sc);  // every K fold but the first reads back its outputs
    n.out_hops = mul(n.out_writes, R - 1);
    if (g.dataflow == Dataflow::ws) {
        n.a_reads = stream_reads, n.b_reads = stat_reads, n.a_hops = stream_hops, n.b_hops = stat_hops;
    } else {
        n.b_reads = stream_reads, n.a_reads = stat_reads, n.b_hops = stream_hops, n.a_hops = stat_hops;
    }
    return n;
}

}  // namespace

Cycles fold_stream_start(const FoldGeometry& g, int64_t fold) {
    MLSIM_CHECK(fold >= 0 && fold < g.folds(), "fold index out of range");
    return Cycles{stream_start(g, fold)};
}

FoldStats fold_stats(const FoldGeometry& g, int64_t fold) {
    FoldStats st;
    st.coord = fold_coord(g, fold);
    const int64_t s = stream_start(g, fold);
    const int64_t r = st.coord.rows, c = st.coord.cols, T = g.t;
    const int64_t last = g.folds() - 1;
    FoldTiming& tm = st.timing;
    tm.stream_start = Cycles{s};
    if (g.dataflow == Dataflow::os) {
        tm.preload_start = Cycles{s};
    } else {
        // The column-0 shadow chain starts loading the cycle after the previous fold's last copy there.
        tm.preload_start = Cycles{fold == 0 ? 0 : stream_start(g, fold - 1) + rows_of(g, fold - 1)};
    }
    tm.compute_end = Cycles{s + T + r + c - 2};
    tm.done = Cycles{done_at(g, fold, s)};
    const int64_t from = fold == 0 ? 0 : s;
    const int64_t to = fold == last ? layer_end(g) : stream_start(g, fold + 1);
    tm.cycles = Cycles{to - from};
    st.counts = fold_counts(g, st.coord);
    return st;
}

GemmStats gemm_stats(const FoldGeometry& g) {
    GemmStats st;
    st.cycles = Cycles{layer_end(g)};
    st.folds = g.folds();
    st.counts = layer_counts(g);
    return st;
}

GemmSummary gemm_summary(const FoldGeometry& g) {
    GemmSummary s;
    s.stats = gemm_stats(g);
    s.first_start = stream_start(g, 0);
    s.last_start = stream_start(g, g.folds() - 1);
    return s;
}

GemmStats gemm_stats(Dataflow df, ArrayShape array, GemmShape gemm) {
    return gemm_stats(fold_geometry(df, array, gemm));
}

Cycles gemm_cycles(const FoldGeometry& g) { return Cycles{layer_end(g)}; }

Cycles gemm_cycles(Dataflow df, ArrayShape array, GemmShape gemm) {
    return gemm_cycles(fold_geometry(df, array, gemm));
}

}  // namespace mlsim::arch::systolic
