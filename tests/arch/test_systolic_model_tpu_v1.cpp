// The systolic model on TPU v1 (Jouppi et al., ISCA 2017) against what the paper reports of it: small-
// batch MLPs wait on their weights from DDR3, partial sums stay in the 32-bit accumulators, and
// activations stay in the 24 MiB unified buffer between layers.
#include <catch2/catch.hpp>
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
    // Full 256x256 weight folds: the arrays are used as the TPU uses them.
    int tm = 0, tn = 0, tk = 0;
    REQUIRE(std::sscanf(text_of(r, "tiling").c_str(), "m=%d n=%d k=%d", &tm, &tn, &tk) == 3);
    CHECK(tn % 256 == 0);
    CHECK(tk % 256 == 0);
}

TEST_CASE("A layer whose arrays compute longer than main memory transfers is compute-bound, its memory "
          "part its stalls", "[systolic]") {
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
