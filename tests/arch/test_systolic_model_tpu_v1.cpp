// The systolic model on TPU v1 (Jouppi et al., ISCA 2017) against what the paper reports of it: small-
// batch MLPs wait on their weights from DDR3, partial sums stay in the 32-bit accumulators, and
// activations stay in the 24 MiB unified buffer between layers.
#include <catch2/catch.hpp>
#include <optional>
#include <string>
#include <vector>

#include "arch/roofline/roofline.h"
#include "systolic_model_helpers.h"
#include "workloads/model.h"

using namespace mlsim;
using namespace mlsim::test;

namespace {

const std::string k_devices = std::string(MLSIM_SOURCE_DIR) + "/configs/devices/";

arch::DeviceSpec tpu_v1() { return arch::load_device(k_devices + "tpu-v1.yaml"); }

}  // namespace

TEST_CASE("TPU v1 runs a 2000x2000 layer at batch 200 weight-bound on DDR3", "[systolic]") {
    // A 64 KiB weight tile takes ~1,350 cycles over 34 GB/s; a batch of 200 rows streams in 200.
    const arch::DeviceSpec spec = tpu_v1();
    const wl::Op op = linear(200, 2000, 2000);
    const arch::LayerResult r = run_one(spec, op);
    const wl::OpCounts c = op.counts();
    INFO(text_of(r, "tiling"));
    // Only the compulsory traffic: weights once, inputs once, outputs once at 8 bits; the partial sums
    // stay in the accumulators.
    CHECK(r.bytes_read == c.weight_bytes + c.input_bytes);
    CHECK(r.bytes_written == c.output_bytes);
    CHECK(r.bytes_read + r.bytes_written == 4.8e6);
    // The layer sits on the DDR3 roofline (within 2 %), and says so.
    const double dram_s = (r.bytes_read + r.bytes_written) / 34e9;
    CHECK(r.time_s - spec.op_overhead_s >= dram_s);
    CHECK(r.time_s - spec.op_overhead_s <= dram_s * 1.02);
    CHECK(r.bound == "memory");
    CHECK(text_of(r, "memory_level") == "dram");
    CHECK(r.parts.memory_s > 0.9 * r.time_s);
    // The arrays wait mostly on weights: more than half the cycles, more than on anything else.
    const double weight = r.metric_value("stall_weight_cycles");
    CHECK(weight > 0.5 * static_cast<double>(r.cycles));
    CHECK(weight > 2 * (r.metric_value("stall_input_cycles") + r.metric_value("stall_output_cycles")));
    // The arrays stream for a small share of the cycles (the paper's counters: 12.7 % array active on
    // MLP0); a batch of 200 rows is shorter than two 256-row weight shifts, so shifts show too.
    CHECK(r.cycles - r.stall_cycles < 0.2 * static_cast<double>(r.cycles));
    CHECK(r.metric_value("stall_shift_cycles") > 0);
    // Full 256x256 weight folds: the arrays are used as the TPU uses them.
    int tm = 0, tn = 0, tk = 0;
    REQUIRE(std::sscanf(text_of(r, "tiling").c_str(), "m=%d n=%d k=%d", &tm, &tn, &tk) == 3);
    CHECK(tn % 256 == 0);
    CHECK(tk % 256 == 0);
}

TEST_CASE(
    "A layer whose arrays compute longer than main memory transfers is compute-bound, its memory "
    "part its stalls",
    "[systolic]") {
    // (No single 8-bit layer gets there on TPU v1 when all its operands come from DDR3: its 4 MiB of
    // accumulators bound the rows that share a weight tile, so the weights or the activations always
    // take longer than 65,536 MACs per cycle. A toy with a wide memory does.)
    Toy t;
    t.dram = "64GB/s";
    const arch::DeviceSpec spec = toy_device(t);
    const arch::LayerResult r = run_one(spec, linear(256, 64, 64));
    CHECK(r.bound == "compute");
    CHECK(r.parts.compute_s > 0.9 * r.time_s);
    CHECK(r.metric_value("dram_busy_time_s") > 0);
    // Main memory was less busy than the arrays: the memory part is what the arrays waited.
    CHECK(r.parts.memory_s * 1e9 == Approx(static_cast<double>(r.stall_cycles)));
    CHECK(r.metric("memory_level") == nullptr);
}

namespace {

// `count` convolutions (kernel x kernel, same padding) of `channels` channels at side x side, batch 1,
// each reading the one before.
wl::Model conv_chain(int count, int64_t channels, int64_t side, int64_t kernel) {
    wl::ModelBuilder b("chain");
    std::optional<wl::TensorRef> prev;
    for (int i = 0; i < count; ++i) {
        wl::Op op = conv(1, channels, side, side, channels, kernel, 1, kernel / 2);
        op.name = "conv" + std::to_string(i);
        const size_t id = b.add(std::move(op), {prev});
        prev = wl::TensorRef{id, 0};
    }
    return std::move(b).build();
}

arch::DeviceSpec without_residency(const arch::DeviceSpec& spec) {
    return with_systolic(spec, [](arch::systolic::SystolicSpec& s) { s.keep_activations = false; });
}

std::vector<arch::LayerResult> run_model(const arch::DeviceSpec& spec, const wl::Model& m) {
    arch::systolic::SystolicModel model(spec);
    return model.run(m);
}

double total(const std::vector<arch::LayerResult>& rs, double (*f)(const arch::LayerResult&)) {
    double t = 0;
    for (const arch::LayerResult& r : rs) t += f(r);
    return t;
}

}  // namespace

TEST_CASE("A chain of convolutions that fits TPU v1's unified buffer keeps its activations there",
          "[systolic]") {
    // 1x1 convolutions of 256 channels at 56 x 56: 800 KB activations against 24 MiB, 64 KiB of
    // weights. From DDR3 each layer's activations take ten times as long as its arithmetic.
    const arch::DeviceSpec spec = tpu_v1();
    const wl::Model m = conv_chain(4, 256, 56, 1);
    const std::vector<arch::LayerResult> on = run_model(spec, m), off = run_model(without_residency(spec), m);
    REQUIRE(on.size() == 4);
    double weights = 0;
    for (size_t i = 0; i < on.size(); ++i) {
        const arch::LayerResult& r = on[i];
        const wl::OpCounts c = m.op(i).counts();
        INFO(r.name << " " << text_of(r, "tiling"));
        weights += c.weight_bytes;
        // The first layer reads the model's input from DDR3, the others read the layer before in place.
        CHECK(r.metric_value("input_bytes_on_chip") == (i == 0 ? 0 : c.input_bytes));
        CHECK(r.metric_value("input_bytes_from_dram") == (i == 0 ? c.input_bytes : 0));
        // Every output but the model's stays.
        CHECK(r.metric_value("output_bytes_kept") == (i + 1 < on.size() ? c.output_bytes : 0));
        CHECK(r.bytes_read == c.weight_bytes + (i == 0 ? c.input_bytes : 0));
        CHECK(r.bytes_written == (i + 1 < on.size() ? 0 : c.output_bytes));
        // What stays is written into the unified buffer.
        CHECK(r.level("unified_buffer")->bytes_written >= r.metric_value("output_bytes_kept"));
        // Without residency every layer goes to DDR3 and back.
        CHECK(off[i].metric_value("input_bytes_on_chip") == 0);
        CHECK(off[i].metric_value("output_bytes_kept") == 0);
        CHECK(off[i].bytes_read == c.weight_bytes + c.input_bytes);
        // Faster, with fewer cycles spent waiting for outputs to drain.
        if (i + 1 < on.size())
            CHECK(r.metric_value("stall_output_cycles") < off[i].metric_value("stall_output_cycles"));
        if (i > 0) CHECK(r.time_s < off[i].time_s);
    }
    const auto bytes = [](const arch::LayerResult& r) { return r.bytes_read + r.bytes_written; };
    CHECK(total(on, bytes) == weights + m.op(0).counts().input_bytes + m.op(3).counts().output_bytes);
    const auto time = [](const arch::LayerResult& r) { return r.time_s; };
    CHECK(total(on, time) < 0.5 * total(off, time));
    const auto output_stalls = [](const arch::LayerResult& r) {
        return r.metric_value("stall_output_cycles");
    };
    const auto cycles = [](const arch::LayerResult& r) { return static_cast<double>(r.cycles); };
    // Without residency a large share of the cycles wait for outputs to drain to DDR3; with it, the
    // middle layers' outputs go into the unified buffer at its port's pace.
    CHECK(total(off, output_stalls) > 0.15 * total(off, cycles));
    CHECK(total(on, output_stalls) < total(off, output_stalls));
    for (size_t i : {1, 2}) CHECK(output_stalls(on[i]) < 0.25 * output_stalls(off[i]));
    // The middle layers wait on nothing but their weights' first tile: they compute.
    CHECK(on[1].bound == "compute");
    CHECK(on[2].bound == "compute");
    CHECK(off[1].bound == "memory");
}

TEST_CASE("Activations too large for the unified buffer spill to DDR3", "[systolic]") {
    const arch::DeviceSpec spec = tpu_v1();
    SECTION("each one larger than the buffer: the chain runs as without residency") {
        // 64 x 640 x 640 int8 = 26.2 MB > 24 MiB.
        const wl::Model m = conv_chain(2, 64, 640, 3);
        const std::vector<arch::LayerResult> on = run_model(spec, m),
                                             off = run_model(without_residency(spec), m);
        for (size_t i = 0; i < on.size(); ++i) {
            INFO(on[i].name);
            CHECK(on[i].metric_value("output_bytes_kept") == 0);
            CHECK(on[i].metric_value("input_bytes_on_chip") == 0);
            CHECK(on[i].cycles == off[i].cycles);
            CHECK(on[i].bytes_read == off[i].bytes_read);
            CHECK(on[i].bytes_written == off[i].bytes_written);
        }
    }
    SECTION("each fits, two do not: a residual's second branch spills while the first stays") {
        // x -> c1 -> c2 -> add(c1, c2), 13.1 MB activations: c1's output is live until the add, so c2's
        // would need 26.1 MB beside it.
        const int64_t side = 452;
        wl::ModelBuilder b("residual");
        wl::Op c1 = conv(1, 64, side, side, 64, 3, 1, 1), c2 = c1;
        c1.name = "c1";
        c2.name = "c2";
        const size_t i1 = b.add(std::move(c1));
        const size_t i2 = b.add(std::move(c2), {wl::TensorRef{i1, 0}});
        wl::EltwiseAttr add;
        add.fn = wl::Eltwise::add;
        b.add(wl::make_op("sum", add, {{1, 64, side, side}, {1, 64, side, side}}, wl::DType::int8),
              {wl::TensorRef{i1, 0}, wl::TensorRef{i2, 0}});
        const wl::Model m = std::move(b).build();
        const std::vector<arch::LayerResult> rs = run_model(spec, m);
        const double act = static_cast<double>(64 * side * side);
        REQUIRE(act < 24.0 * 1024 * 1024);
        REQUIRE(2 * act > 24.0 * 1024 * 1024);
        CHECK(rs[0].metric_value("output_bytes_kept") == act);
        CHECK(rs[1].metric_value("input_bytes_on_chip") == act);
        CHECK(rs[1].metric_value("output_bytes_kept") == 0);
        CHECK(rs[1].bytes_written >= act);
        CHECK(rs[2].metric_value("input_bytes_on_chip") == act);    // c1's output, in place
        CHECK(rs[2].metric_value("input_bytes_from_dram") == act);  // c2's, back from DDR3
        CHECK(rs[2].bytes_read == act);
    }
}

TEST_CASE("Residency never changes the results of a model with one layer", "[systolic]") {
    const arch::DeviceSpec spec = tpu_v1();
    for (const wl::Op& op : {linear(200, 2000, 2000), conv(1, 64, 56, 56, 64, 3, 1, 1)}) {
        wl::ModelBuilder b("one");
        b.add(op);
        const wl::Model m = std::move(b).build();
        const arch::LayerResult on = run_model(spec, m).at(0),
                                off = run_model(without_residency(spec), m).at(0);
        const arch::LayerResult alone = run_one(spec, op);
        for (const arch::LayerResult* r : {&off, &alone}) {
            CHECK(on.cycles == r->cycles);
            CHECK(on.stall_cycles == r->stall_cycles);
            CHECK(on.bytes_read == r->bytes_read);
            CHECK(on.bytes_written == r->bytes_written);
            CHECK(on.energy_j() == r->energy_j());
            CHECK(on.bound == r->bound);
        }
        CHECK(on.metric_value("output_bytes_kept") == 0);
    }
}
