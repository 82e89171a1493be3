// SCALE-Sim v2's cycle convention, against numbers SCALE-Sim itself produced, and its structure:
// folds back to back, partial folds as long as full ones, one less than the occupied cycles, its own
// ofmap size for strided convolutions, one layer per channel for depthwise ones.
#include <catch2/catch.hpp>
#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "arch/systolic/fold_model.h"
#include "arch/systolic/scalesim_convention.h"
#include "arch/systolic/systolic_model.h"
#include "tests/arch/systolic_model_helpers.h"
#include "workloads/model.h"

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

TEST_CASE("SCALE-Sim sizes a convolution's output as ceil((in - window + stride) / stride)", "[systolic]") {
    // One more than the real floor((in - window) / stride) + 1 exactly when the stride does not divide
    // in - window: ResNet-18's Conv1 (224, 7x7, stride 2) has 109 outputs a side, SCALE-Sim counts 110.
    CHECK(scalesim_out_extent(224, 7, 2) == 110);
    CHECK(scalesim_out_extent(56, 1, 2) == 29);    // Conv3_s: 28 real
    CHECK(scalesim_out_extent(224, 11, 4) == 55);  // AlexNet Conv1: 54 real, 55 in SCALE-Sim's reports
    CHECK(scalesim_out_extent(56, 3, 1) == 54);    // stride 1: the real size
    CHECK(scalesim_out_extent(11, 3, 2) == 5);     // the stride divides in - window: the real size
    CHECK(scalesim_out_extent(5, 5, 3) == 1);

    // The op keeps its real shape; only SCALE-Sim's GEMM has the larger M, batch and padding included
    // (a padded layer is counted as SCALE-Sim would count its padded input: 230 wide here).
    const wl::Op c1 = test::conv(2, 3, 224, 224, 64, 7, 2, 3);
    CHECK(c1.output() == wl::Shape{2, 64, 112, 112});
    CHECK(scalesim_gemm(c1, *c1.gemm()) == wl::GemmShape{1, 2 * 113 * 113, 64, 147});
    const wl::Op dw = test::conv(1, 8, 10, 10, 8, 3, 2, 0, 8);  // depthwise: 8 instances of N = 1
    CHECK(scalesim_gemm(dw, *dw.gemm()) == wl::GemmShape{8, 5 * 5, 1, 9});
    const wl::Op fc = test::linear(7, 30, 17);
    CHECK(scalesim_gemm(fc, *fc.gemm()) == *fc.gemm());
}

TEST_CASE("Convention scalesim matches SCALE-Sim v2.0.2 run on strided, depthwise and GEMM topologies",
          "[systolic]") {
    // Expected: "Total Cycles" of COMPUTE_REPORT.csv from SCALE-Sim v2.0.2 itself (scalesim.scale, CALC
    // mode, google.cfg with an 8 x 6 array and the dataflow changed), on the two topology files in
    // tests/arch/data:
    //  * scalesim_small.csv: A_DP and B_DP are depthwise by name; SCALE-Sim runs them as one layer per
    //    channel (4 x 167 os, 4 x 167 ws, 4 x 461 is for A_DP; 3 x 83, 3 x 89, 3 x 219 for B_DP, whose
    //    Num Filter 2 is filters per channel), reported here as one layer with their sum. D (13 x 9,
    //    5 x 3, stride 3) and E (the same with a ninth field: width stride 2) have real outputs 3 x 3 and
    //    3 x 4, SCALE-Sim's 4 x 3 and 4 x 4.
    //  * scalesim_small_mnk.csv, run with `-i gemm`.
    const std::string data = std::string(MLSIM_SOURCE_DIR) + "/tests/arch/data/";
    struct Case {
        const char* dataflow;
        std::vector<int64_t> conv, gemm;
    };
    for (const Case& c : {Case{"os", {4 * 167, 3 * 83, 155, 167, 167}, {125, 144}},
                          Case{"ws", {4 * 167, 3 * 89, 179, 255, 287}, {159, 404}},
                          Case{"is", {4 * 461, 3 * 219, 499, 215, 323}, {255, 299}}}) {
        INFO(c.dataflow);
        test::Toy t;
        t.rows = 8;
        t.cols = 6;
        t.dataflow = c.dataflow;
        t.dram = "1TB/s";  // SCALE-Sim's CALC mode: the roofline floor must not bind
        t.extra = "    convention: scalesim\n";
        const arch::DeviceSpec dev = test::toy_device(t);
        wl::ZooOptions zo;
        zo.dtype = wl::DType::int8;
        for (const auto& [file, expect] : {std::pair{std::string("scalesim_small.csv"), c.conv},
                                           std::pair{std::string("scalesim_small_mnk.csv"), c.gemm}}) {
            const wl::Model m = wl::load_scalesim_csv(data + file, zo);
            SystolicModel model(dev);
            const std::vector<arch::LayerResult> r = model.run(m);
            REQUIRE(r.size() == expect.size());
            for (size_t i = 0; i < r.size(); ++i) {
                INFO(file << " " << r[i].name);
                CHECK(r[i].cycles == expect[i]);
                CHECK(r[i].stall_cycles == 0);
            }
        }
    }
}
