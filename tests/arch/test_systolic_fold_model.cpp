// The closed-form tile model against the cycle-stepped PE grid, and both against hand-computed oracles.
// The two fidelities must agree exactly: layer cycles, every fold's start, compute end, done and
// attributed cycles, and every access count.
#include <algorithm>
#include <catch2/catch.hpp>
#include <cstdint>
#include <vector>

#include "arch/systolic/fold_model.h"
#include "arch/systolic/pe_grid.h"

using namespace mlsim;
using namespace mlsim::arch::systolic;

namespace {

Matrix filled(int64_t rows, int64_t cols) {
    Matrix m(rows, cols);
    for (size_t i = 0; i < m.data.size(); ++i) m.data[i] = static_cast<int64_t>(i % 7) - 3;
    return m;
}

CycleRun cycle_run(Dataflow df, ArrayShape arr, GemmShape s) {
    PeGrid grid(arr);
    return grid.run(df, filled(s.m, s.k), filled(s.k, s.n));
}

const Dataflow dataflows[] = {Dataflow::os, Dataflow::ws, Dataflow::is};

}  // namespace

TEST_CASE("tile and cycle fidelities agree exactly on cycles, fold timing and access counts", "[systolic]") {
    const std::vector<ArrayShape> arrays = {{1, 1}, {1, 4},  {4, 1},  {2, 2}, {3, 5},
                                            {4, 4}, {4, 16}, {16, 4}, {8, 8}};
    const std::vector<int64_t> dims = {1, 2, 3, 5, 8, 17};
    int64_t compared = 0;
    for (const ArrayShape& arr : arrays) {
        PeGrid grid(arr);
        for (int64_t m : dims)
            for (int64_t n : dims)
                for (int64_t k : dims) {
                    const Matrix a = filled(m, k), b = filled(k, n);
                    for (Dataflow df : dataflows) {
                        INFO(to_string(df) << " on " << arr.rows << "x" << arr.cols << ", M=" << m
                                           << " N=" << n << " K=" << k);
                        const FoldGeometry g = fold_geometry(df, arr, {m, n, k});
                        const CycleRun run = grid.run(df, a, b);
                        REQUIRE(run.stats == gemm_stats(g));
                        REQUIRE(static_cast<int64_t>(run.folds.size()) == g.folds());
                        for (int64_t f = 0; f < g.folds(); ++f)
                            REQUIRE(run.folds[static_cast<size_t>(f)] == fold_stats(g, f));
                        ++compared;
                    }
                }
    }
    CHECK(compared == 9 * 216 * 3);
}

TEST_CASE(
    "os on an idle array: one full fold takes K + R + C - 2 cycles of compute and skew, then R to drain",
    "[systolic]") {
    struct Case {
        ArrayShape arr;
        int64_t k, compute, total;
    };
    // Hand-computed: compute = K + R + C − 2, total = compute + R.
    const Case cases[] = {{{4, 4}, 8, 14, 18},
                          {{1, 1}, 1, 1, 2},
                          {{4, 16}, 3, 21, 25},
                          {{16, 4}, 3, 21, 37},
                          {{32, 32}, 100, 162, 194}};
    for (const Case& c : cases) {
        const GemmShape s{c.arr.rows, c.arr.cols, c.k};
        const FoldStats f = fold_stats(fold_geometry(Dataflow::os, c.arr, s), 0);
        CHECK(f.timing.compute_end == Cycles{c.compute});
        CHECK(f.timing.done == Cycles{c.total});
        CHECK(gemm_cycles(Dataflow::os, c.arr, s) == Cycles{c.total});
        if (c.arr.rows * c.arr.cols <= 64) {
            const CycleRun run = cycle_run(Dataflow::os, c.arr, s);
            CHECK(run.folds[0].timing.compute_end == Cycles{c.compute});
            CHECK(run.stats.cycles == Cycles{c.total});
        }
    }
}

TEST_CASE("ws and is on an idle array: one full fold takes R to preload, then T + R + C - 2", "[systolic]") {
    // 4x4, one fold: ws streams M, is streams N. Hand-computed 2R + C + T − 2.
    CHECK(gemm_cycles(Dataflow::ws, {4, 4}, {10, 4, 4}) == Cycles{20});
    CHECK(gemm_cycles(Dataflow::is, {4, 4}, {4, 10, 4}) == Cycles{20});
    CHECK(gemm_cycles(Dataflow::ws, {8, 2}, {1, 2, 8}) == Cycles{17});
    CHECK(cycle_run(Dataflow::ws, {4, 4}, {10, 4, 4}).stats.cycles == Cycles{20});
    CHECK(cycle_run(Dataflow::is, {4, 4}, {4, 10, 4}).stats.cycles == Cycles{20});
    CHECK(cycle_run(Dataflow::ws, {8, 2}, {1, 2, 8}).stats.cycles == Cycles{17});
    const FoldStats f = fold_stats(fold_geometry(Dataflow::ws, {4, 4}, {10, 4, 4}), 0);
    CHECK(f.timing.preload_start == Cycles{0});
    CHECK(f.timing.stream_start == Cycles{4});
    CHECK(f.timing.compute_end == Cycles{4 + 10 + 4 + 4 - 2});
}

TEST_CASE("multi-fold schedules match hand-computed starts", "[systolic]") {
    // os 4x4, M = 8 (two row folds), K = 3: the drain binds, s_1 = max(K, r + R) = 8;
    // done_1 = 8 + K + r + c + R − 2 = 21.
    {
        const FoldGeometry g = fold_geometry(Dataflow::os, {4, 4}, {8, 4, 3});
        CHECK(fold_stats(g, 1).timing.stream_start == Cycles{8});
        CHECK(gemm_cycles(g) == Cycles{21});
        CHECK(cycle_run(Dataflow::os, {4, 4}, {8, 4, 3}).stats.cycles == Cycles{21});
    }
    // ws 4x4, K = 8 (two K folds), M = 10: s_0 = 4, s_1 = 4 + max(10, 8) = 14, done = 14 + 10 + 4 + 4 − 2.
    {
        const FoldGeometry g = fold_geometry(Dataflow::ws, {4, 4}, {10, 4, 8});
        CHECK(fold_stats(g, 1).timing.preload_start == Cycles{8});  // after fold 0's last copy in column 0
        CHECK(fold_stats(g, 1).timing.stream_start == Cycles{14});
        CHECK(gemm_cycles(g) == Cycles{30});
        CHECK(cycle_run(Dataflow::ws, {4, 4}, {10, 4, 8}).stats.cycles == Cycles{30});
    }
    // ws 4x4, K = 7 (folds of 4 and 3 rows), M = 2: the preload binds, s_1 = 4 + (4 + 3) = 11,
    // done = 11 + 2 + 4 + 4 − 2 = 19.
    {
        const FoldGeometry g = fold_geometry(Dataflow::ws, {4, 4}, {2, 4, 7});
        CHECK(fold_stats(g, 1).timing.stream_start == Cycles{11});
        CHECK(gemm_cycles(g) == Cycles{19});
        CHECK(cycle_run(Dataflow::ws, {4, 4}, {2, 4, 7}).stats.cycles == Cycles{19});
    }
}

TEST_CASE("double-buffered weights hide the preload when the stream is at least 2R long", "[systolic]") {
    // ws 4x4, K = 16 (4 K folds), M = 16 ≥ 2R: folds start every T = 16 cycles after the first preload.
    const FoldGeometry g = fold_geometry(Dataflow::ws, {4, 4}, {16, 4, 16});
    for (int64_t f = 0; f < 4; ++f) CHECK(fold_stats(g, f).timing.stream_start == Cycles{4 + 16 * f});
    CHECK(gemm_cycles(g) == Cycles{4 + 3 * 16 + 16 + 4 + 4 - 2});
    // One cycle shorter than 2R and the preload shows: every step is r + r' = 8 instead of T = 7.
    const FoldGeometry h = fold_geometry(Dataflow::ws, {4, 4}, {7, 4, 16});
    CHECK(fold_stats(h, 3).timing.stream_start == Cycles{4 + 3 * 8});
}

TEST_CASE("the layer ends with its last output write, which may belong to an earlier, wider fold",
          "[systolic]") {
    // ws 2x16, M = 1, K = 2, N = 17: fold 0 is 16 columns wide and finishes at 2 + 1 + 2 + 16 − 2 = 19;
    // fold 1 (one column) starts at 6 and finishes at 8.
    const FoldGeometry g = fold_geometry(Dataflow::ws, {2, 16}, {1, 17, 2});
    CHECK(fold_stats(g, 0).timing.done == Cycles{19});
    CHECK(fold_stats(g, 1).timing.done == Cycles{8});
    CHECK(gemm_cycles(g) == Cycles{19});
    CHECK(fold_stats(g, 1).timing.cycles == Cycles{19 - 6});
    CHECK(cycle_run(Dataflow::ws, {2, 16}, {1, 17, 2}).stats.cycles == Cycles{19});
}

TEST_CASE("per-fold numbers sum to the layer's closed forms on large layers", "[systolic]") {
    const std::vector<ArrayShape> arrays = {{128, 128}, {32, 32}, {4, 16}, {16, 4}, {7, 3}};
    const std::vector<GemmShape> shapes = {
        {1000, 999, 517}, {1, 4096, 1}, {3025, 96, 363}, {64, 64, 64}, {129, 1, 257}};
    for (const ArrayShape& arr : arrays)
        for (const GemmShape& s : shapes)
            for (Dataflow df : dataflows) {
                INFO(to_string(df) << " on " << arr.rows << "x" << arr.cols << ", M=" << s.m << " N=" << s.n
                                   << " K=" << s.k);
                const FoldGeometry g = fold_geometry(df, arr, s);
                const GemmStats layer = gemm_stats(g);
                AccessCounts sum;
                Cycles cycles{0};
                int64_t end = 0;
                for (int64_t f = 0; f < g.folds(); ++f) {
                    const FoldStats st = fold_stats(g, f);
                    sum += st.counts;
                    cycles += st.timing.cycles;
                    end = std::max(end, st.timing.done.count());
                }
                CHECK(sum == layer.counts);
                CHECK(cycles == layer.cycles);
                CHECK(Cycles{end} == layer.cycles);
                CHECK(layer.counts.macs == s.m * s.n * s.k);
                CHECK(gemm_cycles(df, arr, s) == layer.cycles);
            }
}

TEST_CASE("access counts follow the dataflow's reuse", "[systolic]") {
    // 8x8 array, M = 20, N = 12, K = 9: os folds 3 x 2, ws folds 2 x 2 (K x N), is folds 2 x 3 (K x M).
    const ArrayShape arr{8, 8};
    const GemmShape s{20, 12, 9};
    const AccessCounts os = gemm_stats(Dataflow::os, arr, s).counts;
    CHECK(os.a_reads == 20 * 9 * 2);  // A is re-read for each of the 2 column folds over N
    CHECK(os.b_reads == 9 * 12 * 3);  // B for each of the 3 row folds over M
    CHECK(os.out_writes == 20 * 12);
    CHECK(os.out_reads == 0);
    const AccessCounts ws = gemm_stats(Dataflow::ws, arr, s).counts;
    CHECK(ws.b_reads == 9 * 12);      // weights read once
    CHECK(ws.a_reads == 20 * 9 * 2);  // inputs once per column fold
    CHECK(ws.out_writes == 20 * 12 * 2);
    CHECK(ws.out_reads == 20 * 12);
    CHECK(ws.out_hops == 20 * 12 * 2 * 7);  // every partial sum crosses R − 1 = 7 links
    const AccessCounts is = gemm_stats(Dataflow::is, arr, s).counts;
    CHECK(is.a_reads == 20 * 9);
    CHECK(is.b_reads == 9 * 12 * 3);
    CHECK(is.out_writes == 20 * 12 * 2);
}
