// The systolic device model on single layers: closed-form oracles of the memory pipeline, the two
// fidelities agreeing exactly, tiling, reuse and refetch counts, partitioning across arrays, stall
// attribution, conservation of bytes between levels, and the SCALE-Sim convention.
#include <catch2/catch.hpp>
#include <cstdio>
#include <limits>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "arch/roofline/roofline.h"
#include "arch/systolic/fold_model.h"
#include "arch/systolic/pe_grid.h"
#include "arch/systolic/pipeline.h"
#include "arch/systolic/scalesim_convention.h"
#include "arch/systolic/tiling.h"
#include "systolic_model_helpers.h"

using namespace mlsim;
using namespace mlsim::test;
using namespace mlsim::arch::systolic;
using Catch::Matchers::Contains;

namespace {

// The tile search's context for a toy device: a 1 GHz clock, 1-byte words, main memory at `dram_Bps`.
MappingContext toy_context(const arch::DeviceSpec& spec, double dram_Bps = 1e9) {
    MappingContext ctx;
    ctx.device = &spec;
    ctx.spec = &*arch::systolic::spec_of(spec);
    ctx.clock_hz = 1e9;
    ctx.dram_Bps = dram_Bps;
    ctx.word_bytes = 1;
    return ctx;
}

int64_t fold_cycles(const char* df, int64_t r, int64_t c, int64_t m, int64_t n, int64_t k) {
    return gemm_cycles(*parse_dataflow(df), ArrayShape{r, c}, GemmShape{m, n, k}).count();
}

std::string fixed_tile(int64_t m, int64_t n, int64_t k) {
    return fmt::format("    tiling: fixed\n    tile: {{m: {}, n: {}, k: {}}}\n", m, n, k);
}

void check_same(const arch::LayerResult& a, const arch::LayerResult& b) {
    CHECK(a.cycles == b.cycles);
    CHECK(a.stall_cycles == b.stall_cycles);
    CHECK(a.metric_value("stall_weight_cycles") == b.metric_value("stall_weight_cycles"));
    CHECK(a.metric_value("stall_input_cycles") == b.metric_value("stall_input_cycles"));
    CHECK(a.metric_value("stall_output_cycles") == b.metric_value("stall_output_cycles"));
    CHECK(a.time_s == b.time_s);
    CHECK(text_of(a, "tiling") == text_of(b, "tiling"));
    CHECK(a.metric_value("pe_hops") == b.metric_value("pe_hops"));
    CHECK(a.bytes_read == b.bytes_read);
    CHECK(a.bytes_written == b.bytes_written);
    for (auto [x, y] : {std::pair{access_of(a).ifmap, access_of(b).ifmap},
                        std::pair{access_of(a).filter, access_of(b).filter},
                        std::pair{access_of(a).ofmap, access_of(b).ofmap},
                        std::pair{access_of(a).dram, access_of(b).dram}}) {
        CHECK(x.read == y.read);
        CHECK(x.write == y.write);
    }
    CHECK(a.energy_j() == b.energy_j());
    CHECK(a.utilization == b.utilization);
}

// Bytes conservation and the other per-layer invariants of a GEMM layer.
void check_invariants(const arch::DeviceSpec& spec, const wl::Op& op, const arch::LayerResult& r) {
    const wl::OpCounts c = op.counts();
    CHECK(r.time_s >= arch::roofline_bound(spec, op).bound_s());
    CHECK(r.stall_cycles == r.metric_value("stall_weight_cycles") + r.metric_value("stall_input_cycles") +
                                r.metric_value("stall_output_cycles"));
    CHECK(r.stall_cycles <= r.cycles);
    CHECK(r.bytes_read >= c.weight_bytes + c.input_bytes);
    CHECK(r.bytes_written >= c.output_bytes);
    CHECK(r.bytes_read == access_of(r).dram.read);
    CHECK(r.utilization <= 1.0);
    CHECK(r.energy_compute_j >= 0);
    CHECK(r.energy_memory_j == Approx(level_energy(r) + r.metric_value("energy_pe_hops_j")));
}

}  // namespace

TEST_CASE("One tile without double buffering overlap: load B and A, compute the folds, drain C",
          "[systolic]") {
    // 1 GB/s at 1 GHz: one byte per cycle, no latency, so the layer takes exactly
    // K·N + M·K (loads) + the folds + M·N (drain) cycles, less what the stationary operand's preload
    // hides: ws preloads its weights (r_0 = 4 rows) while A still arrives; is preloads A only once A
    // is there, and os has nothing to preload. The cycles the array spends shifting its stationary
    // operand in (os: outputs out) without a stream to hide it are stalls of that operand: the first
    // preload, and between folds s_{f+1} − s_f − T.
    for (const char* df : {"os", "ws", "is"}) {
        INFO(df);
        Toy t;
        t.dataflow = df;
        t.extra = fixed_tile(0, 0, 0);
        const arch::DeviceSpec spec = toy_device(t);
        const int64_t m = 10, n = 6, k = 7;
        const arch::LayerResult r = run_one(spec, linear(m, n, k));
        const int64_t folds = fold_cycles(df, 4, 4, m, n, k);
        const FoldGeometry g = fold_geometry(*parse_dataflow(df), {4, 4}, {m, n, k});
        const int64_t between = fold_stats(g, g.folds() - 1).timing.stream_start.count() -
                                fold_stats(g, 0).timing.stream_start.count() - (g.folds() - 1) * g.t;
        CHECK(between == (std::string(df) == "ws" ? 0 : std::string(df) == "is" ? 5 : 4));
        const int64_t r0 = std::string(df) == "os" ? 0 : 4;
        const bool ws = std::string(df) == "ws", is = std::string(df) == "is";
        CHECK(r.cycles == k * n + m * k + folds - (ws ? r0 : 0) + m * n);
        CHECK(r.metric_value("stall_weight_cycles") == k * n + (ws ? r0 + between : -r0));
        CHECK(r.metric_value("stall_input_cycles") == m * k + (ws ? -r0 : 2 * r0) + (is ? between : 0));
        CHECK(r.metric_value("stall_output_cycles") == m * n + (ws || is ? 0 : between));
        CHECK(r.metric_value("stall_shift_cycles") == r0 + between);
        CHECK(text_of(r, "tiling") == "m=10 n=6 k=7 tiles=1x1x1 order=mnk");
        CHECK(r.time_s == Approx(static_cast<double>(r.cycles) * 1e-9));
        CHECK(r.bound == "memory");
        CHECK(text_of(r, "memory_level") == "dram");
        CHECK(access_of(r).dram.read == k * n + m * k);
        CHECK(access_of(r).dram.write == m * n);
    }
}

TEST_CASE("Double buffering loads the next tile and drains the last while the array computes", "[systolic]") {
    // ws on 2x2, two tiles along M (the streamed dimension): B stays, A and C change. K > R·C and
    // N > R·C make a tile's folds outlast its A load and its C drain. A tile has 16 folds, so the
    // second one does not stream on; it follows the first by the fold rule (its first preload hidden
    // in the shadow registers while the first tile's last fold streams).
    const int64_t m = 64, n = 8, k = 8, tm = 32;
    const int64_t a = tm * k, b = k * n, d = tm * n;
    const FoldGeometry g = fold_geometry(Dataflow::ws, {2, 2}, {tm, n, k});
    REQUIRE(g.folds() == 16);
    const int64_t lead = fold_stats(g, 0).timing.stream_start.count();          // 2
    const int64_t last = fold_stats(g, 15).timing.stream_start.count() - lead;  // 15 x 32
    const int64_t span = gemm_cycles(g).count() - lead;  // first stream start to the last output
    const int64_t step = last + tm;                      // max(T, r + r') = T = 32
    REQUIRE(a <= step);
    REQUIRE(d <= step);
    Toy t;
    t.rows = t.cols = 2;
    t.extra = fixed_tile(tm, 0, 0);
    SECTION("on: B, A0 (the weights preload meanwhile), two tiles back to back, the last drain") {
        const arch::LayerResult r = run_one(toy_device(t), linear(m, n, k));
        CHECK(r.cycles == b + a + step + span + d);
        // The first preload is a weight stall; the streams (32) hide every later one (4).
        CHECK(r.metric_value("stall_weight_cycles") == b + lead);
        CHECK(r.metric_value("stall_shift_cycles") == lead);
        CHECK(r.metric_value("stall_input_cycles") == a - lead);
        CHECK(r.metric_value("stall_output_cycles") == d);
    }
    SECTION("off: every load and drain waits for the tile before it") {
        t.ifmap.double_buffered = t.filter.double_buffered = t.ofmap.double_buffered = false;
        const arch::LayerResult r = run_one(toy_device(t), linear(m, n, k));
        // B, A0, tile 0; A1 once tile 0 has read its last A word (row 1 of the last fold, one cycle
        // after row 0), C0 drains behind it on the channel, tile 1 waits for both; C1.
        const int64_t a_free = last + tm + 2 - 1;
        CHECK(r.cycles == b + a + a_free + a + d + span + d);
        CHECK(r.metric_value("stall_input_cycles") == (a - lead) + (a_free + a - step));
        CHECK(r.metric_value("stall_output_cycles") == 2 * d);
    }
}

TEST_CASE("Main-memory latency delays the first load and the last drain", "[systolic]") {
    Toy t;
    t.latency = "50ns";
    t.extra = fixed_tile(0, 0, 0);
    const int64_t m = 10, n = 6, k = 7;
    const arch::LayerResult r = run_one(toy_device(t), linear(m, n, k));
    // The two loads pipeline behind each other: one latency before compute, one after the drain (the
    // weights' 4-row preload overlaps the A load).
    CHECK(r.cycles == k * n + m * k + 50 + fold_cycles("ws", 4, 4, m, n, k) - 4 + m * n + 50);
}

TEST_CASE("Tile and cycle fidelity agree exactly, with and without double buffering and stalls",
          "[systolic]") {
    struct Device {
        int64_t rows, cols, arrays;
        const char* dram;
        const char* latency;
        const char* capacity;  // small: forces tiling
        bool db;
    };
    const Device devices[] = {
        {4, 4, 1, "1GB/s", "0ns", "1MiB", true},  {4, 4, 1, "1GB/s", "3ns", "64B", true},
        {3, 5, 1, "2GB/s", "0ns", "96B", false},  {4, 4, 2, "1GB/s", "5ns", "128B", true},
        {2, 3, 3, "4GB/s", "0ns", "1MiB", false}, {4, 2, 2, "0.5GB/s", "2ns", "160B", false},
    };
    std::vector<wl::Op> ops;
    ops.push_back(linear(9, 7, 11));
    ops.push_back(linear(1, 20, 16));
    ops.push_back(conv(1, 3, 6, 6, 5, 3, 1, 1));     // im2col: M = 36, N = 5, K = 27
    ops.push_back(conv(1, 4, 5, 5, 4, 3, 2, 0, 4));  // depthwise: 4 GEMMs of N = 1
    ops.push_back(wl::make_op("mm", wl::MatmulAttr{}, {{3, 5, 6}, {3, 6, 4}}, wl::DType::int8));  // batch 3
    int64_t compared = 0, with_stalls = 0, tiled = 0, on_grid = 0, in_place = 0;
    for (const Device& dv : devices)
        for (const char* df : {"os", "ws", "is"}) {
            Toy t;
            t.rows = dv.rows, t.cols = dv.cols, t.arrays = dv.arrays;
            t.dataflow = df;
            t.dram = dv.dram;
            t.latency = dv.latency;
            t.ifmap.capacity = t.filter.capacity = t.ofmap.capacity = dv.capacity;
            t.ifmap.double_buffered = t.filter.double_buffered = t.ofmap.double_buffered = dv.db;
            t.ofmap.bandwidth = "3GB/s";  // narrower than the array's edge: port stalls too
            const arch::DeviceSpec spec = toy_device(t);
            for (const wl::Op& op : ops) {
                INFO(df << " on " << dv.rows << "x" << dv.cols << " x" << dv.arrays << ", buffers "
                        << dv.capacity << (dv.db ? " double" : " single") << ", op " << op.kind << " "
                        << op.gemms().front().m << "x" << op.gemms().front().n << "x"
                        << op.gemms().front().k);
                arch::systolic::SystolicModel tile(spec);
                arch::systolic::SystolicModel cycle(with_fidelity(spec, Fidelity::cycle));
                const arch::LayerResult a = tile.run_op(op), b = cycle.run_op(op);
                check_same(a, b);
                check_invariants(spec, op, a);
                // The same layer reading its input in place and keeping its output (residency), where
                // the op allows it (its input 0 is the A operand and its one GEMM makes the output).
                if (op.get<wl::LinearAttr>() || op.get<wl::ConvAttr>()) {
                    arch::systolic::SystolicModel::OnChip chip;
                    chip.inputs = {op.counts().input_bytes};
                    chip.kept = op.counts().output_bytes;
                    chip.resident = chip.inputs[0] + chip.kept;
                    const arch::LayerResult ca = tile.run_op(op, chip), cb = cycle.run_op(op, chip);
                    check_same(ca, cb);
                    CHECK(ca.metric_value("input_bytes_on_chip") == op.counts().input_bytes);
                    CHECK(ca.metric_value("output_bytes_kept") == op.counts().output_bytes);
                    CHECK(ca.bytes_read >= op.counts().weight_bytes);
                    CHECK(ca.bytes_read + ca.bytes_written < a.bytes_read + a.bytes_written);
                    if (std::string(dv.capacity) == "1MiB") {  // nothing refetched, no partial sums
                        CHECK(ca.bytes_read == op.counts().weight_bytes);
                        CHECK(ca.bytes_written == 0);
                    }
                    ++in_place;
                }
                on_grid += static_cast<int64_t>(cycle.work().grid_tiles);
                with_stalls += a.stall_cycles > 0;
                tiled += text_of(a, "tiling").find("tiles=1x1x1") == std::string::npos;
                ++compared;
            }
        }
    CHECK(compared == 6 * 3 * 5);
    CHECK(in_place == 6 * 3 * 4);
    CHECK(with_stalls == compared);
    CHECK(tiled > compared / 3);
    CHECK(on_grid > compared);
}

TEST_CASE("Tiles that follow each other in the fold sequence take as long as one tile of the whole stream",
          "[systolic]") {
    // A job cut into tiles along one dimension, with main memory so fast that nothing waits after the
    // first load: the arrays' busy cycles and every access count must equal those of the uncut GEMM,
    // in closed form and on the PE grid, and the two fidelities must build identical steps.
    //  * the streamed dimension (os K, ws M, is N) with the stationary operand in one fold: the tiles
    //    stream back to back (Step::streams_on), without a preload or a drain in between;
    //  * K in ws/is, or the spatial dimensions in any dataflow: the stationary operand changes and the
    //    next tile's first fold follows the last one's by the fold rule, as folds of one GEMM do (the
    //    cases keep the other spatial dimension to one fold, so the uncut GEMM's folds come in the same
    //    order).
    struct Case {
        const char* df;
        ArrayShape arr;
        GemmShape whole;
        std::array<int64_t, 3> tile;  // tm, tn, tk
        bool streams_on;
    };
    const Case cases[] = {
        {"ws", {4, 4}, {23, 3, 4}, {7, 3, 4}, true},  // M tiles 7, 7, 7, 2 under one weight fold
        {"ws", {3, 5}, {10, 5, 2}, {3, 5, 2}, true},  // partial fold in both array extents
        {"is", {4, 4}, {3, 19, 4}, {3, 5, 4}, true},  // N tiles under one A fold
        {"os", {4, 4}, {4, 3, 17}, {4, 3, 5}, true},  // K tiles accumulate in place
        {"os", {2, 3}, {2, 3, 9}, {2, 3, 2}, true},
        {"ws", {4, 4}, {9, 4, 11}, {9, 4, 4}, false},  // K tiles: row folds 4, 4, 3
        {"ws", {4, 4}, {6, 11, 3}, {6, 4, 3}, false},  // N tiles: column folds
        {"is", {4, 4}, {4, 9, 10}, {4, 9, 4}, false},  // K tiles
        {"os", {4, 4}, {11, 4, 6}, {4, 4, 6}, false},  // M tiles: row folds
    };
    for (const Case& c : cases) {
        INFO(c.df << " on " << c.arr.rows << "x" << c.arr.cols << ", M=" << c.whole.m << " N=" << c.whole.n
                  << " K=" << c.whole.k << " in tiles of " << c.tile[0] << "x" << c.tile[1] << "x"
                  << c.tile[2]);
        Toy t;
        t.rows = c.arr.rows;
        t.cols = c.arr.cols;
        t.dataflow = c.df;
        t.dram = "1000TB/s";
        const arch::DeviceSpec spec = toy_device(t);
        MappingContext ctx = toy_context(spec, 1e15);
        GemmJob job;
        job.shape = wl::GemmShape{1, c.whole.m, c.whole.n, c.whole.k};
        TilePlan plan;
        plan.part.m = c.whole.m, plan.part.n = c.whole.n, plan.part.k = c.whole.k;
        plan.tile = c.tile;
        for (size_t d = 0; d < 3; ++d) {
            const int64_t x = d == 0 ? c.whole.m : d == 1 ? c.whole.n : c.whole.k;
            plan.count[d] = (x + c.tile[d] - 1) / c.tile[d];
        }
        plan.order = {dim_m, dim_n, dim_k};
        const Dataflow df = *parse_dataflow(c.df);
        CycleChecker checker(c.arr, df);
        const StepList tile = build_steps(ctx, {job}, {plan}, nullptr);
        const StepList cycle = build_steps(ctx, {job}, {plan}, &checker);
        REQUIRE(tile.steps.size() > 1);
        int64_t streamed = 0;
        for (const Step& st : tile.steps) streamed += st.has(Step::streams_on);
        CHECK(streamed == (c.streams_on ? static_cast<int64_t>(tile.steps.size()) - 1 : 0));
        const PipelineTiming pt = run_pipeline(ctx, tile), pc = run_pipeline(ctx, cycle);
        const GemmStats whole = gemm_stats(df, c.arr, c.whole);
        const CycleRun grid =
            PeGrid(c.arr).run(df, Matrix(c.whole.m, c.whole.k), Matrix(c.whole.k, c.whole.n));
        CHECK(grid.stats == whole);
        // The arrays' own time: computing, and shifting stationary operands where no stream hides it.
        CHECK(pt.busy + pt.shift == whole.cycles.count());
        CHECK(pc.busy == pt.busy);
        CHECK(pc.shift == pt.shift);
        CHECK(pc.cycles == pt.cycles);
        // The same words move: K tiles add into the partial sums of the tiles before (out_reads of
        // the whole GEMM are the step list's own plus its accumulations).
        AccessCounts counts = tile.counts;
        counts.out_reads += static_cast<int64_t>(tile.accumulate_reads);
        CHECK(counts == whole.counts);
        CHECK(cycle.counts == tile.counts);
        CHECK(cycle.accumulate_reads == tile.accumulate_reads);
    }
}

TEST_CASE("Reuse follows the loop order: an operand is fetched again whenever its tile index changes",
          "[systolic]") {
    Toy t;
    t.rows = t.cols = 2;
    const arch::DeviceSpec spec = toy_device(t);
    MappingContext ctx = toy_context(spec);
    GemmJob job;
    job.shape = wl::GemmShape{1, 8, 8, 8};
    TilePlan plan;
    plan.part.m = plan.part.n = plan.part.k = 8;
    plan.tile = {4, 4, 4};
    plan.count = {2, 2, 2};
    SECTION("order mnk: A and B change every step, each output tile is finished in one run") {
        plan.order = {dim_m, dim_n, dim_k};
        const StepList s = build_steps(ctx, {job}, {plan}, nullptr);
        CHECK(s.steps.size() == 8);
        CHECK(s.dram_read() == 8 * 16 + 8 * 16);  // A refetched for each n tile, B for each m tile
        CHECK(s.dram_write() == 4 * 16);
        CHECK(s.tiling == "m=4 n=4 k=4 tiles=2x2x2 order=mnk");
    }
    SECTION("order kmn: A fetched once, outputs leave as partial sums and come back") {
        plan.order = {dim_k, dim_m, dim_n};
        const StepList s = build_steps(ctx, {job}, {plan}, nullptr);
        CHECK(s.dram_read() == 4 * 16 + 8 * 16 + 4 * 16);  // A once, B every step, 4 read-backs
        CHECK(s.dram_write() == 8 * 16);                   // every run ends with a write
        const arch::systolic::LevelAccesses acc = level_accesses(s, 1.0);
        CHECK(acc.dram.read == acc.ifmap.write + acc.filter.write + 4 * 16);
        CHECK(s.accumulate_reads == 4 * 16);
    }
}

TEST_CASE(
    "Partial sums spill and come back at the accumulator width; finished outputs leave at the word size",
    "[systolic]") {
    Toy t;
    t.rows = t.cols = 2;
    const arch::DeviceSpec spec = toy_device(t);
    MappingContext ctx = toy_context(spec);
    ctx.acc_bytes = 4;  // 32-bit accumulators for 8-bit words
    GemmJob job;
    job.shape = wl::GemmShape{1, 8, 8, 8};
    TilePlan plan;
    plan.part.m = plan.part.n = plan.part.k = 8;
    plan.tile = {4, 4, 4};
    plan.count = {2, 2, 2};
    plan.order = {dim_k, dim_m, dim_n};  // every output tile is left after its first K tile
    const StepList s = build_steps(ctx, {job}, {plan}, nullptr);
    // A once, B every step, and the 4 output tiles read back once each as 32-bit partial sums.
    CHECK(s.dram_read() == 4 * 16 + 8 * 16 + 4 * 16 * 4);
    // 4 spills of partial sums (32-bit), then the 4 finished tiles at 8 bits.
    CHECK(s.dram_write() == 4 * 16 * 4 + 4 * 16);
    const arch::systolic::LevelAccesses acc = level_accesses(s, 1.0, 4.0);
    CHECK(acc.dram.read == acc.ifmap.write + acc.filter.write + 4 * 16 * 4);
    // The array writes every partial sum and output into the buffer as a 32-bit word; drains read them.
    CHECK(acc.ofmap.write == 4 * 16 * 4 + static_cast<double>(s.counts.out_writes) * 4);
    CHECK(acc.ofmap.read == 8 * 16 * 4 + (static_cast<double>(s.counts.out_reads) + s.accumulate_reads) * 4);
    CHECK(acc.ofmap.read >= acc.dram.write);
}

TEST_CASE("The ofmap buffer holds accumulator words: a wider accumulator leaves room for fewer outputs",
          "[systolic]") {
    Toy t;
    t.ofmap.capacity = "2KiB";  // 1 KiB per tile: 1024 8-bit outputs, 256 32-bit partial sums
    t.dram = "100GB/s";
    Toy wide = t;
    wide.extra = "    accumulator_bits: 32\n";
    const wl::Op op = linear(32, 32, 64);
    const arch::LayerResult narrow_r = run_one(toy_device(t), op), wide_r = run_one(toy_device(wide), op);
    int tm = 0, tn = 0;
    REQUIRE(std::sscanf(text_of(narrow_r, "tiling").c_str(), "m=%d n=%d", &tm, &tn) == 2);
    CHECK(tm * tn == 32 * 32);  // the whole output fits at 8 bits
    REQUIRE(std::sscanf(text_of(wide_r, "tiling").c_str(), "m=%d n=%d", &tm, &tn) == 2);
    CHECK(tm * tn <= 256);  // not at 32 bits
    // Either way the finished outputs leave once, at their word size.
    CHECK(narrow_r.bytes_written >= 32 * 32);
    CHECK(wide_r.bytes_written >= 32 * 32);
    CHECK(access_of(wide_r).ofmap.write >= 4.0 * 32 * 32);
}

TEST_CASE("The tiling search fits the buffers, and a buffer too small for any tile is a user error",
          "[systolic]") {
    Toy t;
    t.ifmap.capacity = "2KiB";
    t.filter.capacity = "512B";
    t.ofmap.capacity = "1KiB";
    const arch::DeviceSpec spec = toy_device(t);
    const arch::LayerResult r = run_one(spec, linear(64, 48, 40));
    CHECK(text_of(r, "tiling").find("tiles=1x1x1") == std::string::npos);
    // Every fill fits half of its buffer (double-buffered): the largest A tile ≤ 1 KiB etc.
    int tm = 0, tn = 0, tk = 0;
    REQUIRE(std::sscanf(text_of(r, "tiling").c_str(), "m=%d n=%d k=%d", &tm, &tn, &tk) == 3);
    CHECK(tm * tk <= 1024);
    CHECK(tk * tn <= 256);
    CHECK(tm * tn <= 512);

    Toy tiny;
    tiny.filter.capacity = "1B";  // half a byte per half: not even one weight
    const std::string msg = user_error_of([&] { run_one(toy_device(tiny), linear(64, 48, 40)); });
    CHECK_THAT(msg, Contains("toy.yaml:") && Contains("device.systolic.buffers.filter.capacity") &&
                        Contains("layer 'fc'") && Contains("smallest tile"));

    Toy fixed;
    fixed.ifmap.capacity = "256B";
    fixed.extra = fixed_tile(64, 0, 0);
    CHECK_THAT(user_error_of([&] { run_one(toy_device(fixed), linear(64, 48, 40)); }),
               Contains("device.systolic.tile") && Contains("does not fit"));
}

TEST_CASE("Several arrays split N when it is wide, M when N is narrow, and instances when there are many",
          "[systolic]") {
    Toy t;
    t.arrays = 4;
    t.dram = "1TB/s";
    const arch::DeviceSpec spec = toy_device(t);
    CHECK_THAT(text_of(run_one(spec, linear(1, 64, 32)), "tiling"), Contains("split=n/4"));
    CHECK_THAT(text_of(run_one(spec, linear(256, 4, 32)), "tiling"), Contains("split=m/4"));
    CHECK_THAT(text_of(run_one(spec, conv(1, 8, 8, 8, 8, 3, 1, 1, 8)), "tiling"), Contains("split=batch/4"));
    // Work split four ways ends sooner than on one array, and never sooner than a quarter of it.
    Toy one = t;
    one.arrays = 1;
    const arch::LayerResult r4 = run_one(spec, linear(64, 64, 64));
    const arch::LayerResult r1 = run_one(toy_device(one), linear(64, 64, 64));
    CHECK(r4.cycles < r1.cycles);
    CHECK(r4.utilization <= 1.0);
    CHECK(access_of(r4).dram.read >= 64 * 64 * 2);
}

TEST_CASE("A data type at quarter rate keeps the arrays busy four times as long", "[systolic]") {
    Toy t;
    t.dram = "100TB/s";
    t.extra = fixed_tile(0, 0, 0);
    const arch::DeviceSpec spec = toy_device(t);
    CHECK(arch::systolic::spec_of(spec)->passes_for("bf16") == 4);
    const arch::LayerResult r8 = run_one(spec, linear(32, 16, 16, wl::DType::int8));
    const arch::LayerResult r16 = run_one(spec, linear(32, 16, 16, wl::DType::bf16));
    const auto own = [](const arch::LayerResult& r) {
        return r.cycles - r.stall_cycles + static_cast<int64_t>(r.metric_value("stall_shift_cycles"));
    };
    CHECK(own(r16) == 4 * own(r8));
    CHECK(own(r8) == fold_cycles("ws", 4, 4, 32, 16, 16));
}

TEST_CASE("Stalls are attributed to the operand the arrays wait for", "[systolic]") {
    Toy t;
    t.extra = fixed_tile(0, 0, 0);
    const arch::DeviceSpec spec = toy_device(t);
    // Weights dominate: K·N ≫ M·K.
    const arch::LayerResult w = run_one(spec, linear(1, 64, 64));
    CHECK(w.metric_value("stall_weight_cycles") > w.metric_value("stall_input_cycles"));
    CHECK(w.metric_value("stall_weight_cycles") > w.metric_value("stall_output_cycles"));
    // Outputs dominate: M·N ≫ the operands.
    const arch::LayerResult o = run_one(spec, linear(64, 64, 1));
    CHECK(o.metric_value("stall_output_cycles") > o.metric_value("stall_input_cycles"));
    CHECK(o.metric_value("stall_output_cycles") > o.metric_value("stall_weight_cycles"));
    // A buffer port narrower than the array's edge stretches the folds: an input stall that main
    // memory does not cause (its fill is slowed by the port too).
    Toy fast = t;
    fast.dram = "100TB/s";
    Toy slow = fast;
    slow.ifmap.bandwidth = "1GB/s";  // one byte per cycle for a 4-row edge
    const arch::LayerResult p = run_one(toy_device(slow), linear(64, 4, 4));
    const arch::LayerResult q = run_one(toy_device(fast), linear(64, 4, 4));
    const int64_t folds = fold_cycles("ws", 4, 4, 64, 4, 4);
    const auto own = [](const arch::LayerResult& r) {
        return r.cycles - r.stall_cycles + static_cast<int64_t>(r.metric_value("stall_shift_cycles"));
    };
    CHECK(own(q) == folds);
    CHECK(own(p) == folds);  // the arrays compute as long as before...
    CHECK(p.metric_value("stall_input_cycles") >=
          q.metric_value("stall_input_cycles") + 64 * 4 - folds);  // ...but wait on the port
    CHECK(p.metric_value("stall_weight_cycles") == q.metric_value("stall_weight_cycles"));
}

TEST_CASE("Convention scalesim reports SCALE-Sim's CALC-mode count for a plain GEMM layer", "[systolic]") {
    const arch::DeviceSpec spec =
        arch::load_device(std::string(MLSIM_SOURCE_DIR) + "/configs/devices/scalesim-google.yaml");
    // A SCALE-Sim-style convolution (no bias): im2col GEMM M = 56·56, N = 64, K = 3·3·64.
    const wl::Op op = conv(1, 64, 56, 56, 64, 3, 1, 1);
    const arch::LayerResult r = run_one(spec, op);
    const GemmShape g{56 * 56, 64, 576};
    CHECK(r.cycles == scalesim_cycles(Dataflow::ws, ArrayShape{256, 256}, g).count());
    CHECK(r.stall_cycles == 0);
    CHECK(r.bound == "compute");
    // Energy still comes from the tiled pipeline's actions.
    CHECK(r.energy_memory_j > 0);
    CHECK(access_of(r).dram.read >= op.counts().input_bytes + op.counts().weight_bytes);
}

TEST_CASE("Vector ops take the longer of their arithmetic and their memory traffic", "[systolic]") {
    Toy t;
    const arch::DeviceSpec spec = toy_device(t);  // vector unit: 4 op/cycle; memory: 1 B/cycle
    wl::EltwiseAttr relu;
    relu.fn = wl::Eltwise::relu;
    const wl::Op op = wl::make_op("relu", relu, {{1, 1000}}, wl::DType::int8);
    const arch::LayerResult r = run_one(spec, op);
    CHECK(r.cycles == 2000);  // 1000 bytes in, 1000 out; 1000 ops take only 250 cycles
    CHECK(r.stall_cycles == 2000 - 250);
    CHECK(r.metric_value("stall_input_cycles") + r.metric_value("stall_output_cycles") == r.stall_cycles);
    CHECK(r.bound == "memory");
    CHECK(text_of(r, "tiling") == "vector");
    CHECK(r.utilization == 0);
    check_invariants(spec, op, r);
    wl::Op view = wl::make_op("flat", wl::ReshapeAttr{{}, true}, {{2, 3, 4}}, wl::DType::int8);
    CHECK(run_one(spec, view).cycles == 0);
}

TEST_CASE("A tile's schedule in closed form is the one read off its first and last folds", "[systolic]") {
    // tile_schedule(g) and gemm_summary skip the folds' full stats (the tiling search's hot path).
    for (const char* df : {"os", "ws", "is"})
        for (ArrayShape a : {ArrayShape{1, 1}, ArrayShape{4, 4}, ArrayShape{3, 5}, ArrayShape{8, 2}})
            for (int64_t m : {1, 3, 4, 9, 17})
                for (int64_t n : {1, 2, 5, 8, 13})
                    for (int64_t k : {1, 4, 7, 16}) {
                        const FoldGeometry g = fold_geometry(*parse_dataflow(df), a, GemmShape{m, n, k});
                        const int64_t last = g.folds() - 1;
                        const TileSchedule want =
                            tile_schedule(g, fold_stats(g, 0), fold_stats(g, last), gemm_cycles(g));
                        const TileSchedule got = tile_schedule(g);
                        CHECK(got.lead == want.lead);
                        CHECK(got.last_start == want.last_start);
                        CHECK(got.stream == want.stream);
                        CHECK(got.first_rows == want.first_rows);
                        CHECK(got.last_rows == want.last_rows);
                        CHECK(got.last_cols == want.last_cols);
                        CHECK(got.folds == want.folds);
                        CHECK(got.done == want.done);
                        const GemmSummary s = gemm_summary(g);
                        CHECK(s.stats == gemm_stats(g));
                        CHECK(s.first_start == fold_stream_start(g, 0).count());
                        CHECK(s.last_start == fold_stream_start(g, last).count());
                    }
}

TEST_CASE("From the settled ifmap capacity on, the tiling no longer depends on the room left", "[systolic]") {
    Toy t;
    t.arrays = 4;
    t.ifmap.capacity = "64KiB";
    t.filter.capacity = "64KiB";
    t.ofmap.capacity = "64KiB";
    const arch::DeviceSpec spec = toy_device(t);
    MappingContext ctx = toy_context(spec);
    for (wl::GemmShape shape : {wl::GemmShape{1, 64, 96, 80}, wl::GemmShape{3, 40, 8, 120}}) {
        GemmJob job;
        job.shape = shape;
        const double settled = ifmap_capacity_settled(ctx, job);
        REQUIRE(settled > 0);
        // ifmap_free_bytes is the room before halving for double buffering.
        ctx.ifmap_free_bytes = 2 * settled;
        const TilePlan at = plan_gemm(ctx, job);
        CHECK(at.keep_a);
        for (double room : {2 * settled * 1.5, 2 * settled * 4}) {
            ctx.ifmap_free_bytes = room;
            const TilePlan p = plan_gemm(ctx, job);
            CHECK(p.describe() == at.describe());
            CHECK(p.estimate_cycles == at.estimate_cycles);
            CHECK(p.array_cycles == at.array_cycles);
        }
        // A read in place takes no room at all.
        job.a_on_chip = true;
        CHECK(ifmap_capacity_settled(ctx, job) == 0);
        ctx.ifmap_free_bytes = -1;
    }
}

namespace {

// The plan of `job` searched without a memo and with `memo`; nothing when no tiling fits (then both
// searches must fail).
std::optional<std::pair<TilePlan, TilePlan>> plans_without_and_with(MappingContext ctx, const GemmJob& job,
                                                                    ComputeMemo& memo) {
    ctx.compute_memo = nullptr;
    TilePlan plain;
    try {
        plain = plan_gemm(ctx, job);
    } catch (const cfg::UserError&) {
        ctx.compute_memo = &memo;
        CHECK_THROWS_AS(plan_gemm(ctx, job), cfg::UserError);
        return std::nullopt;
    }
    ctx.compute_memo = &memo;
    return std::pair{plain, plan_gemm(ctx, job)};
}

// The same plan, to the bit.
void check_same_plan(const TilePlan& kept, const TilePlan& plain) {
    CHECK(kept.describe() == plain.describe());
    CHECK(kept.estimate_cycles == plain.estimate_cycles);
    CHECK(kept.array_cycles == plain.array_cycles);
    CHECK(kept.keep_a == plain.keep_a);
    CHECK(kept.keep_b == plain.keep_b);
}

}  // namespace

TEST_CASE("Tile-shape sums kept across searches (ComputeMemo) change no plan", "[systolic]") {
    // The model shares one ComputeMemo among all its searches (start-up, issue 8); each plan with it,
    // searched first or after others filled it, must be the plan searched without it, to the bit.
    int compared = 0;
    for (const char* df : {"os", "ws", "is"})
        for (int64_t arrays : {int64_t{1}, int64_t{4}}) {
            Toy t;
            t.dataflow = df;
            t.arrays = arrays;
            t.ifmap.capacity = "4KiB";  // small buffers: many tilings fit only in part, the bound prunes
            t.filter.capacity = "2KiB";
            t.ofmap.capacity = "4KiB";
            t.ofmap.double_buffered = false;
            t.latency = "20ns";
            const arch::DeviceSpec spec = toy_device(t);
            ComputeMemo memo;
            for (bool stream : {true, false})
                for (double word : {1.0, 2.0})
                    for (wl::GemmShape shape : {wl::GemmShape{1, 64, 96, 80}, wl::GemmShape{3, 40, 8, 120},
                                                wl::GemmShape{1, 7, 130, 33}, wl::GemmShape{2, 200, 24, 9}})
                        for (bool in_place : {false, true})
                            for (int pass = 0; pass < 2; ++pass) {
                                MappingContext ctx = toy_context(spec);
                                ctx.dram_latency_s = 20e-9;
                                ctx.word_bytes = word;
                                ctx.stream_across_tiles = stream;
                                GemmJob job;
                                job.shape = shape;
                                job.a_on_chip = in_place;
                                job.scale.a = in_place ? 1.0 : 0.5;
                                const auto plans = plans_without_and_with(ctx, job, memo);
                                if (!plans) continue;
                                INFO(df << " arrays=" << arrays << " stream=" << stream << " word=" << word
                                        << " " << plans->first.describe());
                                check_same_plan(plans->second, plans->first);
                                ++compared;
                            }
        }
    CHECK(compared > 300);
}

TEST_CASE("One ComputeMemo shared by devices that differ only in what the sums do not read changes no plan",
          "[systolic]") {
    // A sweep's worker keeps one memo for all its points (ComputeMemo::for_this_thread, issue 15): devices
    // that differ in buffer capacities or main memory share the sums; devices that differ in what a tile
    // shape costs (the array, the dataflow, a buffer port's bandwidth) must not. Each plan searched with
    // the shared memo must be the plan searched without one, to the bit.
    struct Variant {
        Toy toy;
        std::string dram;
    };
    std::vector<Variant> variants;
    for (const char* cap : {"3KiB", "4KiB", "6KiB", "64KiB"})
        for (const char* dram : {"1GB/s", "3GB/s"}) {
            Variant v;
            v.toy.arrays = 2;
            v.toy.ifmap.capacity = cap;
            v.toy.filter.capacity = "2KiB";
            v.toy.ofmap.capacity = "4KiB";
            v.toy.ofmap.bandwidth = "8GB/s";  // slow enough to stretch tiles: the port enters the sums
            v.toy.dram = dram;
            variants.push_back(v);
        }
    Variant other_port = variants[0];
    other_port.toy.ofmap.bandwidth = "5GB/s";
    Variant other_array = variants[0];
    other_array.toy.rows = 8;
    Variant other_flow = variants[0];
    other_flow.toy.dataflow = "os";
    for (const Variant& v : {other_port, other_array, other_flow, variants[1]}) variants.push_back(v);

    ComputeMemo shared;
    int compared = 0;
    int64_t hits_between_devices = 0, hits_second_pass = 0;
    shared.begin_run();  // as from a thread's second model run: searches keep their traces
    shared.begin_run();
    REQUIRE(shared.keeps_traces());
    // Pass 1 runs the same devices again (the next points of a sweep that repeat a device's sums).
    for (int pass = 0; pass < 2; ++pass) {
        for (const Variant& v : variants) {
            const arch::DeviceSpec spec = toy_device(v.toy);
            for (wl::GemmShape shape : {wl::GemmShape{1, 64, 96, 80}, wl::GemmShape{2, 40, 24, 120}})
                for (bool in_place : {false, true}) {
                    MappingContext ctx = toy_context(spec, v.toy.dram == "1GB/s" ? 1e9 : 3e9);
                    GemmJob job;
                    job.shape = shape;
                    job.a_on_chip = in_place;
                    const int64_t before = shared.hits(), plans_before = shared.plan_hits();
                    const auto plans = plans_without_and_with(ctx, job, shared);
                    if (!plans) continue;
                    // In place: the same device as just before.
                    if (!in_place && pass == 0) hits_between_devices += shared.hits() - before;
                    // Pass 1 finds most plans whole (ComputeMemo::find_plan), the rest by their sums.
                    if (pass == 1)
                        hits_second_pass +=
                            shared.hits() - before + 100 * (shared.plan_hits() - plans_before);
                    INFO(v.toy.ifmap.capacity << " " << v.toy.dram << " rows=" << v.toy.rows << " "
                                              << v.toy.dataflow << " " << plans->first.describe());
                    check_same_plan(plans->second, plans->first);
                    ++compared;
                }
        }
    }
    CHECK(compared >= 80);              // 48 plans a pass
    CHECK(hits_between_devices > 100);  // capacities and main memory do not empty the memo
    CHECK(hits_second_pass > 100);      // pass 1 finds pass 0's plans or sums
    CHECK(shared.trace_hits() > 100);   // and the evaluations of pass 0's searches with the same key
}

TEST_CASE("A plan kept with its window of ifmap capacities is the plan searched at any capacity in it",
          "[systolic]") {
    // ComputeMemo::find_plan (issue 15): a sweep over the ifmap buffer's capacity, or over the room other
    // layers leave in it, takes a kept plan wherever the capacity answers every comparison of the search
    // that made it as that search's own did. Every capacity from 256 B to 24 KiB in steps of 64 B, up and
    // then down, with one shared memo, against a search without one: the same plan, to the bit.
    int compared = 0;
    int64_t found = 0;
    for (const char* df : {"ws", "os"})
        for (int64_t arrays : {int64_t{1}, int64_t{3}}) {
            Toy t;
            t.dataflow = df;
            t.arrays = arrays;
            t.filter.capacity = "2KiB";
            t.ofmap.capacity = "4KiB";
            const arch::DeviceSpec spec = toy_device(t);
            ComputeMemo shared;
            for (wl::GemmShape shape : {wl::GemmShape{1, 64, 96, 80}, wl::GemmShape{2, 40, 24, 120}})
                for (int direction : {1, -1})
                    for (int step = 4; step <= 384; ++step) {
                        MappingContext ctx = toy_context(spec);
                        // The room left, as run_op() gives it when other layers' activations are resident.
                        ctx.ifmap_free_bytes = 64.0 * (direction > 0 ? step : 388 - step);
                        GemmJob job;
                        job.shape = shape;
                        const int64_t before = shared.plan_hits();
                        const auto plans = plans_without_and_with(ctx, job, shared);
                        if (!plans) continue;
                        found += shared.plan_hits() - before;
                        INFO(df << " arrays=" << arrays << " room=" << ctx.ifmap_free_bytes << " "
                                << plans->first.describe());
                        check_same_plan(plans->second, plans->first);
                        ++compared;
                    }
        }
    CHECK(compared > 2500);
    // Kept plans are found: above the capacity from which every split keeps A, and between the footprints
    // the searches compared.
    CHECK(found > compared / 2);
}

TEST_CASE("A capacity window holds the capacities that answer each comparison alike", "[systolic]") {
    CapacityWindow w;
    CHECK(w.holds(0));
    CHECK(w.holds(1e300));
    w.saw(100, true);  // a footprint of 100 B fitted: the capacity is at least 100 B
    w.saw(80, true);
    w.saw(300, false);  // 300 B did not: it is below 300 B
    w.saw(200, false);
    CHECK(w.lo == 100);
    CHECK(w.hi == 200);
    CHECK(w.holds(100));
    CHECK(w.holds(199.5));
    CHECK_FALSE(w.holds(200));   // 200 B would fit there
    CHECK_FALSE(w.holds(99.5));  // 100 B would not
}

TEST_CASE("ComputeMemo grows when half full and empties at its largest size", "[systolic]") {
    ComputeMemo memo;
    memo.bind({1, 2, 3});
    const size_t first = memo.slots();
    CHECK(first == size_t{1} << ComputeMemo::k_min_bits);
    // Fill past half: the table doubles and keeps every sum.
    const auto key = [](int64_t i) { return std::array<int64_t, 6>{i, 7, 9, i % 13 + 1, 2, 3}; };
    const int64_t n = static_cast<int64_t>(first / 2 + 10);
    for (int64_t i = 0; i < n; ++i) {
        ComputeMemo::Entry* e = memo.slot(key(i));
        REQUIRE(e != nullptr);
        REQUIRE(e->state == 0);
        e->total = static_cast<double>(i);
        e->state = 2;
        memo.used();
    }
    CHECK(memo.slots() == 2 * first);
    for (int64_t i = 0; i < n; ++i) {
        const ComputeMemo::Entry* e = memo.slot(key(i));
        REQUIRE(e->state == 2);
        CHECK(e->total == static_cast<double>(i));
    }
    // Another binding empties it (the same size); binding back does not bring old sums back.
    memo.bind({1, 2, 4});
    CHECK(memo.slot(key(5))->state == 0);
    memo.bind({1, 2, 3});
    CHECK(memo.slot(key(5))->state == 0);
    // At the largest size a full table empties instead of growing.
    const size_t largest = size_t{1} << ComputeMemo::k_max_bits;
    for (int64_t i = 0; memo.slots() < largest || i < static_cast<int64_t>(largest / 2); ++i) {
        ComputeMemo::Entry* e = memo.slot(key(i));
        if (e->state != 0) continue;
        e->state = 2;
        memo.used();
    }
    CHECK(memo.slots() == largest);
    memo.slot(key(-1));  // the table was half full: this call empties it first
    CHECK(memo.slot(key(0))->state == 0);
    CHECK(memo.slots() == largest);
}

TEST_CASE("ComputeMemo keeps one trace per search key, swapped in by the search that wrote it",
          "[systolic]") {
    ComputeMemo memo;
    ComputeMemo::SearchKey a{}, b{};
    a[0] = 1;
    b[0] = 2;
    REQUIRE(memo.trace(a).empty());
    // A search reads trace(a) and fills the scratch trace, which then takes its place.
    memo.trace_scratch().push_back({{4, 5, 6}, 10.0, 12.0, {0, 1, 2}});
    ComputeMemo::Trace& kept = memo.trace(a);
    CHECK(memo.trace_scratch().empty());  // trace() starts the scratch afresh
    memo.trace_scratch().push_back({{4, 5, 6}, 10.0, 12.0, {0, 1, 2}});
    memo.keep_scratch(kept);
    REQUIRE(memo.trace(a).size() == 1);
    CHECK(memo.trace(a)[0].best == 12.0);
    CHECK(memo.trace(b).empty());  // another key has its own
}

TEST_CASE("ComputeMemo packs each key exactly and leaves keys it cannot pack alone", "[systolic]") {
    const int64_t top = (int64_t{1} << ComputeMemo::k_key_bits) - 1;
    const std::array<int64_t, 6> base{top, 1, 2, 3, 4, top};
    const auto packed = ComputeMemo::pack(base);
    REQUIRE(packed);
    // A change of any one value gives another packed key.
    for (size_t i = 0; i < base.size(); ++i) {
        std::array<int64_t, 6> other = base;
        other[i] = other[i] == top ? top - 1 : other[i] + 1;
        const auto p = ComputeMemo::pack(other);
        REQUIRE(p);
        CHECK(*p != *packed);
    }
    // Too large or negative: not packed, and slot() gives no entry (the sum is costed without the memo).
    for (int64_t bad : {top + 1, int64_t{-1}, std::numeric_limits<int64_t>::max()}) {
        std::array<int64_t, 6> key = base;
        key[2] = bad;
        CHECK_FALSE(ComputeMemo::pack(key));
        ComputeMemo memo;
        memo.bind({1});
        CHECK(memo.slot(key) == nullptr);
    }
    // Stored and found again under the packed key.
    ComputeMemo memo;
    memo.bind({1});
    ComputeMemo::Entry* e = memo.slot(base);
    REQUIRE(e != nullptr);
    REQUIRE(e->state == 0);
    e->total = 42;
    e->state = 2;
    memo.used();
    CHECK(memo.slot(base)->total == 42);
    CHECK(memo.slot({top, 1, 2, 3, 4, top - 1})->state == 0);
}
