// SCALE-Sim v2's cycle convention, against numbers SCALE-Sim itself produced, and its structure:
// folds back to back, partial folds as long as full ones, one less than the occupied cycles.
#include <catch2/catch.hpp>
#include <cstdint>

#include "arch/systolic/fold_model.h"
#include "arch/systolic/scalesim_convention.h"

using namespace mlsim;
using namespace mlsim::arch::systolic;

TEST_CASE("SCALE-Sim convention reproduces SCALE-Sim's published cycle counts", "[systolic]") {
    // From the report files in SCALE-Sim v2's repository (scalesim-project/scale-sim-v2), all on its
    // 32x32 example configuration:
    //  * test/general/golden_trace_user_{os,ws,is}/COMPUTE_REPORT.csv: GEMM M = 256, N = 128, K = 256
    //    (topologies/GEMM_mnk/test_mnk_input.csv) in USER-bandwidth mode, which adds stalls on top of the
    //    stall-free count, so stall-free = "Total Cycles" − "Stall Cycles":
    //    os 52447 − 42272, ws 52447 − 41248, is 19984 − 5777.
    //  * test/golden_trace/COMPUTE_REPORT.csv: ws, AlexNet Conv1 in CALC mode (0 stall cycles),
    //    112283 cycles. Its im2col GEMM: M = 55·55 ofmap pixels, K = 11·11·3, N = 96 filters (its
    //    mapping efficiency 94.53% and compute utilisation 90.78% pin down K = 363 and M = 3025).
    //  * rundir-accelergy/output/scale_sim_output_scale_example_run_32x32_os/COMPUTE_REPORT.csv: os,
    //    0 stall cycles, 21479 cycles; Inc5b_3x3 of topologies/conv_nets/test.csv (7x7 ifmap, 3x3x192
    //    filters, 384 of them, stride 1): M = 25, K = 1728, N = 384 (mapping efficiency 78.125% = 25/32).
    const ArrayShape arr{32, 32};
    CHECK(scalesim_cycles(Dataflow::os, arr, {256, 128, 256}) == Cycles{52447 - 42272});
    CHECK(scalesim_cycles(Dataflow::ws, arr, {256, 128, 256}) == Cycles{52447 - 41248});
    CHECK(scalesim_cycles(Dataflow::is, arr, {256, 128, 256}) == Cycles{19984 - 5777});
    CHECK(scalesim_cycles(Dataflow::ws, arr, {3025, 96, 363}) == Cycles{112283});
    CHECK(scalesim_cycles(Dataflow::os, arr, {25, 384, 1728}) == Cycles{21479});
}

TEST_CASE("SCALE-Sim charges a partial fold as much as a full one", "[systolic]") {
    const ArrayShape arr{8, 8};
    for (Dataflow df : {Dataflow::os, Dataflow::ws, Dataflow::is}) {
        INFO(to_string(df));
        // One fold of 8x8 vs one fold of 1x1 used PEs (os: M, N; ws: K, N; is: K, M).
        const GemmShape full = df == Dataflow::os ? GemmShape{8, 8, 5} : GemmShape{8, 8, 8};
        const GemmShape tiny = df == Dataflow::os   ? GemmShape{1, 1, 5}
                               : df == Dataflow::ws ? GemmShape{8, 1, 1}
                                                    : GemmShape{1, 8, 1};
        CHECK(scalesim_cycles(df, arr, full) == scalesim_cycles(df, arr, tiny));
        // The faithful model does not pad: the tiny fold finishes sooner.
        CHECK(gemm_cycles(df, arr, tiny) < gemm_cycles(df, arr, full));
    }
}

TEST_CASE("SCALE-Sim runs folds strictly one after another", "[systolic]") {
    // ws 16x16, M = 40 ≥ 2R: SCALE-Sim charges 2R + C + M − 2 per fold, 4 K folds x 2 N folds.
    const ArrayShape arr{16, 16};
    const GemmShape s{40, 32, 64};
    CHECK(scalesim_folds(Dataflow::ws, arr, s) == 8);
    CHECK(scalesim_fold_rows(Dataflow::ws, arr, s) == 2 * 16 + 16 + 40 - 2);
    CHECK(scalesim_cycles(Dataflow::ws, arr, s) == Cycles{8 * 86 - 1});
    // The faithful model overlaps the next fold's preload and fill with the current fold.
    CHECK(gemm_cycles(Dataflow::ws, arr, s) == Cycles{16 + 7 * 40 + 40 + 16 + 16 - 2});
    // os: K + R + C − 2 per fold, 3 x 2 folds.
    CHECK(scalesim_cycles(Dataflow::os, arr, {33, 17, 10}) == Cycles{6 * (10 + 16 + 16 - 2) - 1});
}

TEST_CASE("on one full fold SCALE-Sim reports one less than the occupied cycles, and os omits the drain",
          "[systolic]") {
    for (const ArrayShape arr : {ArrayShape{4, 4}, ArrayShape{8, 32}, ArrayShape{32, 8}, ArrayShape{1, 1}}) {
        const int64_t R = arr.rows, C = arr.cols;
        INFO(R << "x" << C);
        // ws/is: the faithful single-fold count 2R + C + T − 2 is SCALE-Sim's occupancy.
        CHECK(gemm_cycles(Dataflow::ws, arr, {50, C, R}) + Cycles{-1} ==
              scalesim_cycles(Dataflow::ws, arr, {50, C, R}));
        CHECK(gemm_cycles(Dataflow::is, arr, {C, 50, R}) + Cycles{-1} ==
              scalesim_cycles(Dataflow::is, arr, {C, 50, R}));
        // os: the faithful count adds the R-cycle drain.
        CHECK(gemm_cycles(Dataflow::os, arr, {R, C, 50}) + Cycles{-1 - R} ==
              scalesim_cycles(Dataflow::os, arr, {R, C, 50}));
    }
}
