// The CPU family: peaks derived from its units and checked against `peak`, BLIS blocking, the closed-form
// cache traffic against the set-associative LRU trace, the roofline floor over the zoo on every CPU preset,
// the DRAM model against STREAM, and the trace fidelity's refusal of large shapes.
#include <unistd.h>

#include <catch2/catch.hpp>
#include <cmath>
#include <cstdio>
#include <fstream>
#include <string>
#include <vector>

#include "arch/cpu/cache_sim.h"
#include "arch/cpu/cpu_model.h"
#include "arch/cpu/cpu_spec.h"
#include "arch/roofline/roofline.h"
#include "user_error.h"
#include "workloads/model.h"

using namespace mlsim;
using namespace mlsim::test;
using Catch::Matchers::Contains;

namespace {

const std::string k_devices = std::string(MLSIM_SOURCE_DIR) + "/configs/devices/";
const char* k_presets[] = {"xeon-8380", "xeon-8480", "epyc-9654", "orin-cpu"};

arch::DeviceSpec preset(const std::string& name) { return arch::load_device(k_devices + name + ".yaml"); }

arch::cpu::CacheLevel level(const char* name, double capacity, int64_t ways, double bpc) {
    arch::cpu::CacheLevel c;
    c.name = name;
    c.capacity_bytes = capacity;
    c.associativity = ways;
    c.line_bytes = 64;
    c.bytes_per_cycle = bpc;
    return c;
}

// A one-core AVX2-like CPU (16 registers of 256 bits, 2 FMA pipes) with the given cache geometry.
arch::cpu::CpuSpec avx2_core(double l1, int64_t w1, double l2, int64_t w2, double l3, int64_t w3) {
    arch::cpu::CpuSpec s;
    s.cores = 1;
    s.simd_bits = 256;
    s.fma_pipes = 2;
    s.vector_registers = 16;
    s.fma_latency = 5;
    s.load_ports = 2;
    s.caches = {level("l1d", l1, w1, 64), level("l2", l2, w2, 64), level("l3", l3, w3, 32)};
    return s;
}

arch::cpu::ComputeUnit fp32_unit(const arch::cpu::CpuSpec& s) {
    arch::cpu::ComputeUnit u;
    u.name = "avx2";
    u.macs_per_cycle = s.lanes(4) * static_cast<double>(s.fma_pipes);
    u.clock_hz = 3e9;
    return u;
}

std::string write_temp(const std::string& name, const std::string& text) {
    const std::string path = std::string(MLSIM_SOURCE_DIR) + "/build/" + name;
    std::ofstream(path) << text;
    return path;
}

wl::Model one_op_model(const std::string& yaml) {
    // One file a process: ctest runs the test cases in parallel processes, and a shared name let one
    // overwrite another's model between its write and its read.
    const std::string path = write_temp("cpu_test_model_" + std::to_string(::getpid()) + ".yaml", yaml);
    wl::Model m = wl::load_model_yaml(path, wl::ZooOptions{});
    std::remove(path.c_str());
    return m;
}

// A zoo model; "<name>-training" lowers it to a training step (backward GEMMs, optimizer).
wl::Model zoo(const std::string& name, const wl::ZooOptions& o) {
    const std::string suffix = "-training";
    if (name.size() > suffix.size() && name.compare(name.size() - suffix.size(), suffix.size(), suffix) == 0)
        return wl::lower_training(wl::zoo_build(name.substr(0, name.size() - suffix.size()), o),
                                  wl::TrainingOptions{"adam", false});
    return wl::zoo_build(name, o);
}

}  // namespace

TEST_CASE("CPU presets derive their peaks from their units and agree with the declared ones", "[cpu]") {
    const arch::DeviceSpec x = preset("xeon-8380");
    REQUIRE(arch::cpu::spec_of(x) != nullptr);
    CHECK(x.model == "cpu");
    // 40 cores x (512 / 32 lanes x 2 pipes) x 2 x 2.3 GHz
    CHECK(x.peak_for("fp32") == Approx(40 * 32 * 2 * 2.3e9).epsilon(1e-3));
    const arch::DeviceSpec s = preset("xeon-8480");
    CHECK(arch::cpu::spec_of(s)->units.at("bf16").matrix);
    CHECK(s.peak_for("bf16") == Approx(56 * 512 * 2 * 2.0e9).epsilon(2e-3));
    const arch::DeviceSpec o = preset("orin-cpu");
    CHECK(o.peak_for("fp32") == Approx(12 * 8 * 2 * 2.2e9).epsilon(1e-9));  // derived, no `peak:`
    CHECK(o.peak_for("int8") == Approx(12 * 32 * 2 * 2.2e9).epsilon(1e-9));
    for (const char* p : k_presets) CHECK(arch::make_device_model(preset(p))->model_name() == "cpu");
}

TEST_CASE("FP64 runs on the vector FMA units: 8 doubles per 512-bit FMA, 2 per 128-bit NEON FMA", "[cpu]") {
    // Peaks: cores x (SIMD bits / 64 lanes x FMA pipes) x 2 x the unit's clock.
    CHECK(preset("xeon-8380").peak_for("fp64") == Approx(40.0 * 8 * 2 * 2 * 2.3e9).epsilon(1e-9));
    CHECK(preset("xeon-8480").peak_for("fp64") == Approx(56.0 * 8 * 2 * 2 * 2.0e9).epsilon(1e-9));
    CHECK(preset("epyc-9654").peak_for("fp64") == Approx(96.0 * 4 * 2 * 2 * 2.4e9).epsilon(1e-9));
    CHECK(preset("orin-cpu").peak_for("fp64") == Approx(12.0 * 2 * 2 * 2 * 2.2e9).epsilon(1e-9));
    for (const char* p : k_presets) {
        INFO(p);
        const arch::DeviceSpec d = preset(p);
        // Half the FP32 rate on the same units (declared peaks are rounded up by at most 1 %).
        CHECK(d.peak_for("fp64") == Approx(d.peak_for("fp32") / 2).epsilon(0.01));
        CHECK_FALSE(arch::cpu::spec_of(d)->units.at("fp64").matrix);  // AMX has no FP64 tiles
    }
}

TEST_CASE("FP64 blocking: the same register tile in 8-double vectors, cache blocks sized in bytes", "[cpu]") {
    const arch::DeviceSpec d = preset("xeon-8380");
    const arch::cpu::CpuSpec& s = *arch::cpu::spec_of(d);
    const double l3 = s.caches.back().capacity_bytes;
    const arch::cpu::Blocking b32 = arch::cpu::choose_blocking(s, s.units.at("fp32"), 4, l3);
    const arch::cpu::Blocking b64 = arch::cpu::choose_blocking(s, s.units.at("fp64"), 8, l3);
    // The accumulator tile is the same registers: MR in 8-double vectors is half MR in 16-float ones.
    CHECK(b64.mr % 8 == 0);
    CHECK(b64.mr * 2 == b32.mr);
    CHECK(b64.nr == b32.nr);
    CHECK(b64.mr / 8 * b64.nr + b64.mr / 8 + 1 <= s.vector_registers);
    // The blocks fit their levels in bytes: the A and B micro-panels in all L1 ways but one (Low et al.:
    // one way for the C stream); halving MR in elements frees L1 ways for a deeper B panel.
    const double ways = static_cast<double>(s.caches[0].associativity);
    CHECK(static_cast<double>(b64.kc * (b64.mr + b64.nr) * 8) <=
          (ways - 1) / ways * s.caches[0].capacity_bytes);
    CHECK(b64.kc * 8 * b64.nr >= b32.kc * 4 * b32.nr);
    CHECK(static_cast<double>(b64.mc * b64.kc * 8) <= s.caches[1].capacity_bytes);
    CHECK(static_cast<double>(b64.kc * b64.nc * 8) <= l3);
    CHECK(b64.mc % b64.mr == 0);
}

TEST_CASE("A narrow classifier's weights are read from DRAM once, as the dense block they are", "[cpu]") {
    // 1024 -> 10, int8, one sample (matrix-vector form): 10 KiB of weights and a 1 KiB input. Rows of 10
    // bytes share lines: each was counted a line or two of its own (74 KB from DRAM, more than L1 saw).
    const arch::DeviceSpec spec = preset("xeon-8380");
    const wl::Model m = one_op_model(
        "name: c\ninputs:\n  x: [1, 1024]\nops:\n  - {name: fc, kind: linear, inputs: [x], out_features: 10, "
        "bias: false, dtype: int8}\n");
    std::ifstream in(k_devices + "xeon-8380.yaml");
    const std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    const arch::DeviceSpec traced =
        arch::load_device(write_temp("cpu_trace_narrow.yaml", text + "    fidelity: trace\n"));
    for (const arch::DeviceSpec* s : {&spec, &traced}) {
        const arch::LayerResult r = arch::cpu::CpuModel(*s).run_op(m.op(0));
        INFO(r.metric("fidelity")->text);
        const arch::LevelTraffic* dram = r.level("dram");
        REQUIRE(dram != nullptr);
        const double operands = 1024.0 * 10 + 1024;
        CHECK(dram->bytes_read >= operands);
        CHECK(dram->bytes_read <= operands + 4 * 64);  // a partial line at each operand's ends at most
        CHECK(dram->bytes_read <= r.level("l1d")->bytes_read + 64);
    }
}

TEST_CASE("A large DGEMM runs near the FP64 peak, twice as long as the SGEMM, moving twice the bytes",
          "[cpu]") {
    const arch::DeviceSpec spec = preset("xeon-8380");
    const auto gemm = [](const char* dtype) {
        return one_op_model(
            std::string("name: g\ninputs:\n  x: [2048, 2048]\nops:\n  - {name: fc, kind: linear, ") +
            "inputs: [x], out_features: 2048, bias: false, dtype: " + dtype + "}\n");
    };
    arch::cpu::CpuModel model(spec);
    const wl::Model m64 = gemm("fp64"), m32 = gemm("fp32");
    REQUIRE(m64.op(0).dtype == wl::DType::fp64);
    const arch::LayerResult r64 = model.run_op(m64.op(0));
    const arch::LayerResult r32 = model.run_op(m32.op(0));
    const double achieved = r64.counts.flops / (r64.time_s - spec.op_overhead_s);
    CHECK(achieved <= spec.peak_for("fp64"));
    CHECK(achieved >= 0.7 * spec.peak_for("fp64"));
    CHECK(r64.bound == "compute");
    CHECK(r64.metric_value("threads") == 40);
    const double ratio = (r64.time_s - spec.op_overhead_s) / (r32.time_s - spec.op_overhead_s);
    CHECK(ratio > 1.7);
    CHECK(ratio < 2.3);
    CHECK(r64.counts.input_bytes == 2 * r32.counts.input_bytes);
    CHECK(r64.bytes_read >= 2 * 2048.0 * 2048 * 8);          // A and B from DRAM at least once
    CHECK(r64.energy_compute_j > 3 * r32.energy_compute_j);  // a 53-bit multiplier per FMA
}

TEST_CASE("A CPU section that contradicts itself is a located error", "[cpu]") {
    std::ifstream in(k_devices + "xeon-8380.yaml");
    const std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    const auto with = [&](const std::string& from, const std::string& to) {
        std::string t = text;
        const size_t at = t.find(from);
        REQUIRE(at != std::string::npos);
        t.replace(at, from.size(), to);
        return write_temp("cpu_bad.yaml", t);
    };
    SECTION("a peak the units do not give") {
        const std::string msg =
            user_error_of([&] { arch::load_device(with("fp32: 5.888TFLOP/s", "fp32: 7TFLOP/s")); });
        CHECK_THAT(msg, Contains("cpu_bad.yaml:"));
        CHECK_THAT(msg, Contains("device.peak.fp32"));
        CHECK_THAT(msg, Contains("avx512"));
    }
    SECTION("a cache bandwidth that disagrees with bytes per cycle") {
        const std::string msg =
            user_error_of([&] { arch::load_device(with("bytes_per_cycle: 64B}", "bytes_per_cycle: 32B}")); });
        CHECK_THAT(msg, Contains("device.cpu.caches.l2.bytes_per_cycle"));
    }
    SECTION("a capacity that is not a whole number of sets") {
        const std::string msg =
            user_error_of([&] { arch::load_device(with("associativity: 20", "associativity: 7")); });
        CHECK_THAT(msg, Contains("device.cpu.caches.l2.associativity"));
    }
    SECTION("a cache level without its geometry") {
        const std::string msg = user_error_of([&] {
            arch::load_device(with(
                "      l3: {line: 64B, associativity: 12, latency: 70, bytes_per_cycle: 16B, slices: 40}",
                ""));
        });
        CHECK_THAT(msg, Contains("'l3'"));
    }
    SECTION("a main-memory latency that disagrees with the DRAM's, or is no DRAM's") {
        // The memory level's latency won silently over cpu.dram.latency, past its 10 us bound (1 s: a
        // 196-second MLP).
        const std::string both = user_error_of([&] {
            arch::load_device(
                with("      read_energy: 358pJ/B", "      latency: 50ns\n      read_energy: 358pJ/B"));
        });
        CHECK_THAT(both, Contains("device.cpu.dram.latency"));
        CHECK_THAT(both, Contains("disagrees with device.memory[3].latency"));
        const std::string slow = user_error_of([&] {
            arch::load_device(
                with("      read_energy: 358pJ/B", "      latency: 1s\n      read_energy: 358pJ/B"));
        });
        CHECK_THAT(slow, Contains("device.memory[3].latency"));
        CHECK(arch::load_device(
                  with("      read_energy: 358pJ/B", "      latency: 90ns\n      read_energy: 358pJ/B"))
                  .main_memory()
                  .latency_s == Approx(90e-9));
    }
    SECTION("more cores than a socket, more FMA pipes than a core") {
        CHECK_THAT(user_error_of([&] { arch::load_device(with("cores: 40", "cores: 100000")); }),
                   Contains("device.cpu.cores"));
        CHECK_THAT(user_error_of([&] {
                       arch::load_device(with("fma_units_per_core: 2", "fma_units_per_core: 100000000"));
                   }),
                   Contains("device.cpu.fma_units_per_core"));
    }
    SECTION("a main-memory latency above 10 us without cpu.dram.latency") {
        std::string t = text;
        t.replace(t.find("dram: {channels: 8, latency: 90ns, "), 35, "dram: {channels: 8, ");
        t.replace(t.find("      read_energy: 358pJ/B"), 26,
                  "      latency: 20us\n      read_energy: 358pJ/B");
        const std::string msg = user_error_of([&] { arch::load_device(write_temp("cpu_bad.yaml", t)); });
        CHECK_THAT(msg, Contains("device.memory[3].latency") && Contains("not a DRAM"));
        CHECK_THAT(msg, Contains("cpu_bad.yaml:60:"));  // at the level's own key
    }
}

TEST_CASE("BLIS blocking follows the registers and the caches", "[cpu]") {
    const arch::cpu::CpuSpec s = avx2_core(32768, 8, 262144, 8, 8 << 20, 16);
    const arch::cpu::Blocking b = arch::cpu::choose_blocking(s, fp32_unit(s), 4, 8 << 20);
    // 16 registers of 8 floats: 2 x 6 accumulators + 2 A vectors + 1 broadcast = 15 (BLIS's Haswell 6x16).
    CHECK(b.mr == 16);
    CHECK(b.nr == 6);
    // Every block fits its level: B micro-panel + A micro-panel in L1, the A block in L2, Bp in L3.
    CHECK(static_cast<double>(b.kc * (b.mr + b.nr) * 4) <= 32768);
    CHECK(static_cast<double>(b.mc * b.kc * 4) <= 262144);
    CHECK(static_cast<double>(b.kc * b.nc * 4) <= 8 << 20);
    CHECK(b.mc % b.mr == 0);
    CHECK(b.nc % b.nr == 0);
    CHECK(b.cycles_per_step == Approx(6));  // 12 FMAs on 2 pipes; loads (8) and latency (5) hidden
}

TEST_CASE("The closed-form misses per level agree with the set-associative LRU trace", "[cpu]") {
    // Tolerance 25 % per level. Why they differ at all: the closed form counts a block as kept when the
    // data touched between two uses fits (W-1)/W of the capacity, and as reloaded on every use otherwise;
    // LRU with real sets keeps part of a block that is just too large, and loses a few lines of one that
    // just fits to conflicts (rows that map to the same sets); partial edge blocks and the alignment of
    // row segments shift a few percent. Counts under 5000 lines (cold misses of tiny shapes, where one
    // block's boundary lines matter) are compared to 50 %.
    struct Geo {
        const char* name;
        double l1;
        int64_t w1;
        double l2;
        int64_t w2;
        double l3;
        int64_t w3;
    };
    const Geo geos[] = {{"desktop 32K/8 256K/8 8M/16", 32768, 8, 262144, 8, 8 << 20, 16},
                        {"small L3 32K/8 256K/8 1M/16", 32768, 8, 262144, 8, 1 << 20, 16},
                        {"icx-like 48K/12 1.25M/20 6M/12", 49152, 12, 1310720, 20, 6 << 20, 12}};
    // Shapes that fit every level (24x40x32: 12 KiB), L2 and L3 only, L3 only, or no level; thin and odd;
    // and matrix-vector products (M <= MR / 2: B read in place, row by row), also with rows shorter than a
    // line (a classifier's 10 outputs: consecutive rows share lines, read once).
    const int64_t shapes[][3] = {{24, 40, 32},     {64, 64, 64},   {96, 1000, 300}, {500, 200, 700},
                                 {1000, 72, 1000}, {37, 129, 513}, {300, 300, 40},  {1, 4096, 4096},
                                 {8, 3000, 500},   {1, 10, 1024},  {2, 12, 84}};
    int compared = 0, not_fitting_l3 = 0, fitting_l1 = 0;
    for (const Geo& g : geos) {
        const arch::cpu::CpuSpec s = avx2_core(g.l1, g.w1, g.l2, g.w2, g.l3, g.w3);
        const arch::cpu::Blocking b = arch::cpu::choose_blocking(s, fp32_unit(s), 4, g.l3);
        for (const auto& sh : shapes) {
            arch::cpu::GemmTask t;
            t.m = sh[0];
            t.n = sh[1];
            t.k = sh[2];
            t.elem_bytes = 4;
            const arch::cpu::Traffic closed = arch::cpu::gemm_traffic(s, b, t, g.l3);
            const arch::cpu::TraceResult trace =
                arch::cpu::trace_gemm(arch::cpu::trace_levels(s, g.l3), b, t);
            const double data = static_cast<double>(sh[0] * sh[2] + sh[2] * sh[1] + sh[0] * sh[1]) * 4;
            not_fitting_l3 += data > g.l3;
            fitting_l1 += data <= g.l1;
            for (size_t l = 0; l < 3; ++l) {
                INFO(g.name << " " << sh[0] << "x" << sh[1] << "x" << sh[2] << " level " << l << ": closed "
                            << closed.misses[l] << ", trace " << trace.traffic.misses[l]);
                const double c = closed.misses[l], tr = trace.traffic.misses[l];
                const double tol = std::max(c, tr) < 5000 ? 0.5 : 0.25;
                CHECK(std::abs(c - tr) <= tol * std::max(c, tr));
                // Both at least the compulsory lines of A, B and C.
                CHECK(tr >= data / 64 * 0.99);
                ++compared;
            }
        }
    }
    CHECK(compared == 99);
    CHECK(not_fitting_l3 >= 3);
    CHECK(fitting_l1 >= 3);
}

TEST_CASE("A power-of-two leading dimension adds conflict misses the closed form does not count", "[cpu]") {
    // 256 floats per row: C strips map onto 1/16 of the L2's sets and evict the A block there.
    const arch::cpu::CpuSpec s = avx2_core(32768, 8, 262144, 8, 8 << 20, 16);
    const arch::cpu::Blocking b = arch::cpu::choose_blocking(s, fp32_unit(s), 4, 8 << 20);
    arch::cpu::GemmTask t;
    t.m = t.n = t.k = 256;
    const arch::cpu::Traffic closed = arch::cpu::gemm_traffic(s, b, t, 8 << 20);
    const arch::cpu::TraceResult trace = arch::cpu::trace_gemm(arch::cpu::trace_levels(s, 8 << 20), b, t);
    CHECK(trace.traffic.misses[1] > closed.misses[1] * 1.2);
    CHECK(trace.traffic.misses[2] == Approx(closed.misses[2]).epsilon(0.05));  // L3 holds everything
}

TEST_CASE("A known gap: one micro-panel of rows misses L1 more often than the closed form counts", "[cpu]") {
    // M = MR (16 rows, blocked path): the trace finds 1.67x the closed form's L1 misses (L2 and L3
    // agree). The cause is not pinned down; likely candidates: with a single MR-row panel the A block is
    // one micro-panel, so the closed form's "B micro-panel stays in L1" (KC chosen for it) meets C rows at
    // a 4000-byte pitch and the packed A in the same sets. Recorded here so that a change shows.
    const arch::cpu::CpuSpec s = avx2_core(32768, 8, 262144, 8, 8 << 20, 16);
    const arch::cpu::Blocking b = arch::cpu::choose_blocking(s, fp32_unit(s), 4, 8 << 20);
    arch::cpu::GemmTask t;
    t.m = 16;
    t.n = 1000;
    t.k = 2000;
    const arch::cpu::Traffic closed = arch::cpu::gemm_traffic(s, b, t, 8 << 20);
    const arch::cpu::TraceResult trace = arch::cpu::trace_gemm(arch::cpu::trace_levels(s, 8 << 20), b, t);
    CHECK(trace.traffic.misses[0] > closed.misses[0] * 1.4);
    CHECK(trace.traffic.misses[0] < closed.misses[0] * 2.0);
    CHECK(trace.traffic.misses[2] == Approx(closed.misses[2]).epsilon(0.05));
}

TEST_CASE("No layer of any zoo model runs faster than the roofline bound of its CPU preset", "[cpu]") {
    const char* models[] = {"lenet5",      "resnet50",           "mobilenetv2",       "ds-cnn-kws",
                            "bert-base",   "gpt2-small-prefill", "gpt2-small-decode", "mlp3",
                            "dlrm-mlperf", "mlp3-training",      "lenet5-training",   "resnet50-training"};
    int64_t layers = 0, memory_bound = 0, compute_bound = 0, kept = 0;
    for (const char* p : k_presets) {
        const arch::DeviceSpec spec = preset(p);
        for (const char* name : models) {
            wl::ZooOptions o;
            o.dtype = std::string(p) == "xeon-8480" ? wl::DType::bf16 : wl::DType::fp32;
            if (std::string(name) == "dlrm-mlperf") o.batch = 4;
            const wl::Model model = zoo(name, o);
            auto dm = arch::make_device_model(spec);
            REQUIRE(dm->model_name() == "cpu");
            const std::vector<arch::LayerResult> rs = dm->run(model);
            REQUIRE(rs.size() == model.ops().size());
            double t = 0;
            for (const arch::LayerResult& r : rs) {
                const wl::Op& op = model.ops()[static_cast<size_t>(r.idx)];
                INFO(p << " " << name << " layer " << r.idx << " " << r.name << " (" << r.op << ")");
                const double on_chip = r.metric_value("input_bytes_on_chip", -1);
                const double out_kept = r.metric_value("output_bytes_kept", -1);
                REQUIRE(on_chip >= 0);
                REQUIRE(out_kept >= 0);
                const arch::RooflineBound bnd =
                    arch::roofline_bound(spec, op, arch::OnChip{on_chip, out_kept});
                CHECK(r.time_s >= bnd.bound_s());
                CHECK(r.time_s - r.parts.overhead_s >= bnd.compute_s * (1 - 1e-12));
                CHECK(r.parts.overhead_s == (r.metric("fused_into") ? 0 : spec.op_overhead_s));
                CHECK(r.start_s == t);
                t = r.end_s;
                CHECK(r.energy_compute_j >= 0);
                CHECK(r.energy_memory_j >= 0);
                CHECK(r.energy_static_j >= 0);
                CHECK(r.utilization <= 1.0);
                CHECK(r.parts.total() == Approx(r.time_s));
                CHECK(r.bytes_read >= op.counts().weight_bytes + op.counts().input_bytes - on_chip - 1e-6);
                CHECK(r.bytes_written >= op.counts().output_bytes - out_kept - 1e-6);
                // Bytes are conserved between levels: what level i+1 delivers is level i's misses x line.
                REQUIRE(r.levels.size() == 4);
                CHECK(r.levels[1].bytes_read == Approx(r.metric_value("misses_l1d") * 64));
                CHECK(r.levels[2].bytes_read == Approx(r.metric_value("misses_l2") * 64));
                CHECK(r.levels[3].bytes_read == Approx(r.bytes_read));
                double e = 0;
                for (const arch::LevelTraffic& l : r.levels) e += l.energy_j;
                CHECK(r.energy_memory_j == Approx(e));
                CHECK(r.metric_value("threads") >= 1);
                CHECK(r.metric_value("threads") <= static_cast<double>(arch::cpu::spec_of(spec)->cores));
                memory_bound += r.bound == "memory";
                compute_bound += r.bound == "compute";
                kept += out_kept > 0;
                ++layers;
            }
        }
    }
    CHECK(layers > 2500);
    CHECK(memory_bound > 100);
    CHECK(compute_bound > 100);
    CHECK(kept > 100);  // activations stay in L3 between layers
}

TEST_CASE("FP64 zoo models keep the roofline floor on every CPU preset", "[cpu]") {
    int64_t layers = 0;
    for (const char* p : k_presets) {
        const arch::DeviceSpec spec = preset(p);
        for (const char* name : {"resnet50", "bert-base", "mlp3-training"}) {
            wl::ZooOptions o;
            o.dtype = wl::DType::fp64;
            const wl::Model model = zoo(name, o);
            auto dm = arch::make_device_model(spec);
            for (const arch::LayerResult& r : dm->run(model)) {
                const wl::Op& op = model.ops()[static_cast<size_t>(r.idx)];
                INFO(p << " " << name << " layer " << r.idx << " " << r.name << " (" << r.op << ")");
                const arch::RooflineBound bnd = arch::roofline_bound(
                    spec, op,
                    arch::OnChip{r.metric_value("input_bytes_on_chip"), r.metric_value("output_bytes_kept")});
                CHECK(r.time_s >= bnd.bound_s());
                CHECK(r.dtype == "fp64");
                CHECK(r.energy_compute_j >= 0);
                CHECK(r.utilization <= 1.0);
                ++layers;
            }
        }
    }
    CHECK(layers > 500);
}

TEST_CASE("Post-op fusion: BN, activations and residual adds ride on the convolution's output tiles",
          "[cpu]") {
    const arch::DeviceSpec fused_spec = preset("xeon-8480");
    arch::DeviceSpec plain_spec = fused_spec;
    auto plain_cpu = std::make_shared<arch::cpu::CpuSpec>(*arch::cpu::spec_of(fused_spec));
    plain_cpu->fuse_post_ops = false;
    plain_spec.params["cpu"] = plain_cpu;
    wl::ZooOptions o;
    o.dtype = wl::DType::bf16;
    o.batch = 32;
    const wl::Model m = wl::zoo_build("resnet50", o);
    const std::vector<arch::LayerResult> f = arch::cpu::CpuModel(fused_spec).run(m);
    const std::vector<arch::LayerResult> n = arch::cpu::CpuModel(plain_spec).run(m);
    double tf = 0, tn = 0, dram_f = 0, dram_n = 0;
    int64_t fused = 0;
    for (size_t i = 0; i < f.size(); ++i) {
        tf += f[i].time_s;
        tn += n[i].time_s;
        dram_f += f[i].bytes_read + f[i].bytes_written;
        dram_n += n[i].bytes_read + n[i].bytes_written;
        CHECK(n[i].metric("fused_into") == nullptr);
        if (!f[i].metric("fused_into")) continue;
        ++fused;
        INFO(f[i].name << " (" << f[i].op << ")");
        const std::string op = f[i].op;
        CHECK((op == "batchnorm" || op == "relu" || op == "add"));
        CHECK(f[i].parts.overhead_s == 0);
        CHECK(f[i].time_s <= n[i].time_s);
        // Its fused input never comes from DRAM: a ReLU reads nothing there, a BN its scale and shift at
        // most, an add its shortcut at most.
        CHECK(f[i].bytes_read <= n[i].bytes_read);
        if (op != "add") CHECK(f[i].bytes_read <= f[i].counts.weight_bytes);
        if (op == "relu") CHECK(f[i].bytes_read == 0);
        // A BN whose ReLU is fused after it hands its result on in registers: no store at any level.
        if (op == "batchnorm" && i + 1 < f.size() && f[i + 1].op == "relu" && f[i + 1].metric("fused_into")) {
            CHECK(f[i].levels[0].bytes_written == 0);
            CHECK(f[i].bytes_written == 0);
        }
        CHECK(f[i].levels[0].bytes_read < n[i].levels[0].bytes_read);  // the producer's tile is not loaded
    }
    CHECK(fused > 100);  // 53 BN, 49 ReLU, 16 residual adds
    CHECK(tf < 0.9 * tn);
    CHECK(dram_f < dram_n);
    // Training steps are not fused: backward reads the intermediate results.
    wl::ZooOptions t;
    t.dtype = wl::DType::bf16;
    const wl::Model step = zoo("lenet5-training", t);
    for (const arch::LayerResult& r : arch::cpu::CpuModel(fused_spec).run(step))
        CHECK(r.metric("fused_into") == nullptr);
}

TEST_CASE("A large SGEMM on all cores runs near the FMA peak, limited by the kernel's own overheads",
          "[cpu]") {
    arch::DeviceSpec spec = preset("xeon-8380");
    const wl::Model m = one_op_model(
        "name: g\ninputs:\n  x: [2048, 2048]\nops:\n  - {name: fc, kind: linear, inputs: [x], out_features: "
        "2048, bias: false}\n");
    arch::cpu::CpuModel model(spec);
    const arch::LayerResult r = model.run_op(m.op(0));
    // 40 cores: compute-bound, at most the peak, and more than 70 % of it for a large square GEMM (what
    // is lost: packing, C tile updates per KC pass, the exposed first fill, M/MR rows over 40 threads).
    const double achieved = r.counts.flops / (r.time_s - spec.op_overhead_s);
    CHECK(achieved <= spec.peak_for("fp32"));
    CHECK(achieved >= 0.7 * spec.peak_for("fp32"));
    CHECK(r.bound == "compute");
    CHECK(r.metric_value("threads") == 40);
    CHECK(r.metric("blocking") != nullptr);
}

TEST_CASE("Streaming a large vector add is held to the sustained DRAM bandwidth, below its peak", "[cpu]") {
    const arch::DeviceSpec spec = preset("epyc-9654");
    // STREAM-like add: 2 x 256 MB in, 256 MB out, far beyond the L3.
    const wl::Model m = one_op_model(
        "name: s\ninputs:\n  a: [67108864]\n  b: [67108864]\nops:\n  - {name: add, kind: add, inputs: [a, "
        "b]}\n");
    arch::cpu::CpuModel model(spec);
    const arch::LayerResult r = model.run_op(m.op(0));
    const double bw = r.counts.total_bytes() / (r.time_s - spec.op_overhead_s);
    CHECK(bw < 0.9 * spec.main_memory().bandwidth_Bps);  // refresh and bus turnarounds
    CHECK(bw > 0.75 * spec.main_memory().bandwidth_Bps);
    CHECK(r.bound == "memory");
    CHECK(r.metric_value("stall_dram_cycles") > 0);
}

TEST_CASE("The trace fidelity refuses a GEMM above its limit with a located message", "[cpu]") {
    std::ifstream in(k_devices + "orin-cpu.yaml");
    std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    text += "    fidelity: trace\n    trace_limit: 1000000\n";
    const arch::DeviceSpec spec = arch::load_device(write_temp("cpu_trace.yaml", text));
    arch::cpu::CpuModel model(spec);
    const wl::Model small = one_op_model(
        "name: g\ninputs:\n  x: [64, 96]\nops:\n  - {name: fc, kind: linear, inputs: [x], out_features: 80, "
        "bias: false}\n");
    const arch::LayerResult r = model.run_op(small.op(0));
    CHECK(r.metric("fidelity")->text == "trace");
    CHECK(model.work().trace_accesses > 0);
    // The trace and the closed form agree on this layer's time within the cache model's tolerance.
    arch::cpu::CpuModel closed(preset("orin-cpu"));
    CHECK(r.time_s == Approx(closed.run_op(small.op(0)).time_s).epsilon(0.25));
    const wl::Model big = one_op_model(
        "name: g\ninputs:\n  x: [1024, 1024]\nops:\n  - {name: fc, kind: linear, inputs: [x], out_features: "
        "1024, bias: false}\n");
    const std::string msg = user_error_of([&] { model.run_op(big.op(0)); });
    CHECK_THAT(msg, Contains("cpu_trace.yaml:"));
    CHECK_THAT(msg, Contains("device.cpu.fidelity"));
    CHECK_THAT(msg, Contains("trace_limit"));
    // A whole model whose last layer is over the limit is refused before its first layer runs (GPT-2 small's
    // LM head on a Xeon took 25 s of the layers before it to reach the refusal).
    const wl::Model two = one_op_model(
        "name: g\ninputs:\n  x: [64, 96]\nops:\n  - {name: fc, kind: linear, inputs: [x], out_features: 80, "
        "bias: false}\n  - {name: big, kind: linear, inputs: [fc], out_features: 100000, bias: false}\n");
    arch::cpu::CpuModel fresh(spec);
    const std::string whole = user_error_of([&] { fresh.run(two); });
    CHECK_THAT(whole, Contains("layer 'big'"));
    CHECK(fresh.work().layers_simulated == 0);
    // Cache levels of different line sizes: the trace replays one (an internal check failed, exit 1).
    std::string mixed = text;
    mixed.replace(mixed.find("l1d: {line: 64B"), 15, "l1d: {line: 128B");
    arch::cpu::CpuModel lines(arch::load_device(write_temp("cpu_trace_lines.yaml", mixed)));
    const std::string msg_lines = user_error_of([&] { lines.run_op(small.op(0)); });
    CHECK_THAT(msg_lines, Contains("device.cpu.fidelity"));
    CHECK_THAT(msg_lines, Contains("one line size"));
    // An L3 of 4 GiB: 2^26 lines of tags for each traced GEMM (a 64 GiB one took 8 GB a GEMM).
    std::string huge = text;
    const std::size_t l3 = huge.find("name: l3");
    REQUIRE(l3 != std::string::npos);
    const std::size_t cap = huge.find("capacity:", l3);
    const std::size_t eol = huge.find('\n', cap);
    huge.replace(cap, eol - cap, "capacity: 4GiB");
    arch::cpu::CpuModel big_l3(arch::load_device(write_temp("cpu_trace_l3.yaml", huge)));
    CHECK_THAT(user_error_of([&] { big_l3.run_op(small.op(0)); }), Contains("2^25"));
}

TEST_CASE("A CPU model run is deterministic and memoized layers equal fresh ones", "[cpu]") {
    const arch::DeviceSpec spec = preset("epyc-9654");
    const wl::Model model = wl::zoo_build("resnet50", wl::ZooOptions{});
    arch::cpu::CpuModel a(spec), b(spec);
    const auto ra = a.run(model), rb = b.run(model);
    REQUIRE(ra.size() == rb.size());
    for (size_t i = 0; i < ra.size(); ++i) CHECK(ra[i].time_s == rb[i].time_s);
    CHECK(a.work().cache_hits > 0);
}

TEST_CASE("Whole models under the trace fidelity agree with the closed form and respect the roofline",
          "[cpu]") {
    std::ifstream in(k_devices + "orin-cpu.yaml");
    std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    text += "    fidelity: trace\n";
    const arch::DeviceSpec traced = arch::load_device(write_temp("cpu_trace_models.yaml", text));
    const arch::DeviceSpec closed = preset("orin-cpu");
    for (const char* name : {"lenet5", "ds-cnn-kws", "mlp3"}) {
        const wl::Model model = wl::zoo_build(name, wl::ZooOptions{});
        arch::cpu::CpuModel t(traced), c(closed);
        const auto rt = t.run(model), rc = c.run(model);
        REQUIRE(rt.size() == rc.size());
        int64_t traced_layers = 0;
        for (size_t i = 0; i < rt.size(); ++i) {
            INFO(name << " layer " << rt[i].name);
            const arch::RooflineBound bnd =
                arch::roofline_bound(traced, model.ops()[i],
                                     arch::OnChip{rt[i].metric_value("input_bytes_on_chip"),
                                                  rt[i].metric_value("output_bytes_kept")});
            CHECK(rt[i].time_s >= bnd.bound_s());
            traced_layers += rt[i].metric("fidelity")->text == "trace";
        }
        INFO(name);
        CHECK(traced_layers > 0);
        CHECK(t.work().trace_accesses > 0);
        // Small models: the layers are short and their traffic is mostly first touches, on which the
        // two agree closely (the grid test above covers the blocked reuse); 10 % bounds the rest.
        CHECK(rt.back().end_s == Approx(rc.back().end_s).epsilon(0.10));
    }
}

TEST_CASE("Threads divide a GEMM's tiles over all cores: a little more work never nearly doubles the time",
          "[cpu]") {
    // 56 cores (xeon-8480), fp32 768 x 768 layers. Splitting the batch first and the MR rows next, each as
    // far as the cores go, ran 60 row tiles as 56 threads of 2 rounds (M = 960: 1.9x the time of M = 896)
    // and 32 row tiles on 32 threads; the split over rows and columns that keeps every core busy does not.
    const arch::DeviceSpec spec = preset("xeon-8480");
    arch::cpu::CpuModel model(spec);
    const auto time_at = [&](int64_t m) {
        const wl::Model g =
            one_op_model("name: g\ninputs:\n  x: [" + std::to_string(m) +
                         ", 768]\nops:\n  - {name: fc, kind: linear, inputs: [x], out_features: "
                         "768, bias: false}\n");
        const arch::LayerResult r = model.run_op(g.op(0));
        INFO("M = " << m << ": " << r.time_s << " s, " << r.metric_value("threads") << " threads");
        CHECK(r.metric_value("threads") >= 0.9 * 56);
        return r.time_s - spec.op_overhead_s;
    };
    const double t896 = time_at(896), t960 = time_at(960), t1024 = time_at(1024), t1792 = time_at(1792);
    CHECK(t960 < 1.25 * t896);
    CHECK(t1024 < 1.35 * t896);
    CHECK(t1792 > 1.6 * t896);  // twice the work takes about twice the time
    CHECK(t1792 < 2.4 * t896);
}

TEST_CASE("AMX bf16 blocking keeps the A block in L2: fewer L2 ways never make a GEMM faster", "[cpu]") {
    // The A block was sized for L2 alone; with the C strip and the B micro-panel beside it (NR / KC =
    // 32 / 320 on AMX) it never fitted the traffic model's test, and all of A came from L3 N / NR times:
    // a 4096^3 bf16 GEMM took 3.11 ms with 16-way L2 and 1.83 ms with 8 ways.
    const std::string file =
        write_temp("xeon_l2_8way.yaml", "extends: " + k_devices +
                                            "xeon-8480.yaml\ndevice:\n  cpu:\n    caches:\n      l2: "
                                            "{associativity: 8}\n");
    const wl::Model g = one_op_model(
        "name: g\ninputs:\n  x: [4096, 4096]\nops:\n  - {name: fc, kind: linear, inputs: [x], out_features: "
        "4096, bias: false, dtype: bf16}\n");
    const arch::DeviceSpec spec16 = preset("xeon-8480");
    const arch::DeviceSpec spec8 = arch::load_device(file);
    const arch::LayerResult r16 = arch::cpu::CpuModel(spec16).run_op(g.op(0));
    const arch::LayerResult r8 = arch::cpu::CpuModel(spec8).run_op(g.op(0));
    CHECK(r16.time_s <= r8.time_s * 1.001);
    // Compute-bound near the AMX peak: 2 x 4096^3 FLOPs at more than 70 % of it.
    CHECK(r16.counts.flops / (r16.time_s - spec16.op_overhead_s) >= 0.7 * spec16.peak_for("bf16"));
}
