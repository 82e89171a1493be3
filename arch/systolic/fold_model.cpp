#include "arch/systolic/fold_model.h"

#include <algorithm>

#include "arch/systolic/fold_model_inline.h"
#include "sim/core/check.h"

namespace mlsim::arch::systolic {

namespace {

using detail::cols_of;
using detail::done_at;
using detail::layer_end;
using detail::rows_of;
using detail::stream_start;

int64_t mul(int64_t a, int64_t b) { return detail::checked_mul(a, b); }

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

GemmStats gemm_stats(const FoldGeometry& g) { return detail::gemm_stats(g); }

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
