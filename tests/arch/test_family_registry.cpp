// The family registry: which families exist, how a device picks its model (`device.model`), how a
// detailed family derives the device's peaks, and the one meaning of `bound` (time parts).
#include <algorithm>
#include <catch2/catch.hpp>
#include <string>
#include <vector>

#include "arch/device_model.h"
#include "arch/family.h"
#include "arch/roofline/roofline.h"
#include "arch/systolic/systolic_spec.h"
#include "sim/config/schema.h"
#include "systolic_model_helpers.h"

using namespace mlsim;
using namespace mlsim::test;
using Catch::Matchers::Contains;

namespace {

const std::string k_devices = std::string(MLSIM_SOURCE_DIR) + "/configs/devices/";

arch::DeviceSpec preset(const std::string& name) { return arch::load_device(k_devices + name + ".yaml"); }

// A 4x4 int8 array at 1 GHz (peak 32 GOP/s) with `extra` lines added to the device map and `sys` to
// its systolic section; no `peak:` unless `extra` gives one.
std::string array_device(const std::string& extra = "", const std::string& sys = "",
                         const std::string& family = "tpu") {
    return "device:\n"
           "  name: arr\n"
           "  family: " +
           family +
           "\n"
           "  clock: 1GHz\n"
           "  mac_energy: {int8: 0.3pJ, int16: 1pJ}\n"
           "  memory:\n"
           "    - {name: dram, capacity: 1GiB, bandwidth: 10GB/s, read_energy: 100pJ/B}\n"
           "  static_power: 0.1W\n"
           "  tdp: 10W\n" +
           extra +
           "  systolic:\n"
           "    rows: 4\n"
           "    cols: 4\n" +
           sys +
           "    buffers:\n"
           "      ifmap: {capacity: 64KiB, bandwidth: 100GB/s, read_energy: 1pJ/B}\n"
           "      filter: {capacity: 64KiB, bandwidth: 100GB/s, read_energy: 1pJ/B}\n"
           "      ofmap: {capacity: 64KiB, bandwidth: 100GB/s, read_energy: 1pJ/B}\n";
}

}  // namespace

TEST_CASE("The registry lists every family once, in families.def order, with its section and schema") {
    std::vector<std::string> names;
    for (const arch::Family& f : arch::families()) {
        names.push_back(f.name);
        CHECK(f.section.empty() == (f.schema == nullptr));
        CHECK(arch::find_family(f.name) == &f);
    }
    CHECK(names == std::vector<std::string>{"roofline", "systolic", "gpu", "cpu", "mcu"});
    CHECK(arch::model_names() == std::vector<std::string>{"roofline", "systolic", "gpu", "cpu", "mcu"});
    CHECK(arch::find_family("tpu") == nullptr);  // a hardware family, not a model family
    // The device schema gathers `model` and every family's section.
    std::vector<std::string> keys;
    for (const cfg::Param& p : arch::device_schema().params) keys.push_back(p.name);
    for (const char* key : {"model", "systolic", "gpu", "cpu", "mcu"})
        CHECK(std::find(keys.begin(), keys.end(), key) != keys.end());
    // --help text shows the sections' keys, declared in their own folders.
    const std::string help = cfg::describe(arch::device_schema());
    CHECK_THAT(help, Contains("passes"));
    CHECK_THAT(help, Contains("tensor_cores_per_sm"));
    CHECK_THAT(help, Contains("flash_wait_states"));
}

TEST_CASE("A device runs on its section's detailed model by default, and `model:` chooses another") {
    CHECK(preset("tpu-v1").model == "systolic");
    CHECK(preset("a100").model == "gpu");
    CHECK(preset("eyeriss").model == "roofline");
    CHECK(arch::make_device_model(preset("tpu-v4"))->model_name() == "systolic");
    CHECK(arch::make_device_model(preset("xeon-8380"))->model_name() == "cpu");

    const arch::DeviceSpec r = device_from_text(array_device("  model: roofline\n"));
    CHECK(r.model == "roofline");
    CHECK(arch::make_device_model(r)->model_name() == "roofline");
    // The section still defines the device: its peak is the array's.
    CHECK(r.peak_for("int8") == Approx(4 * 4 * 2 * 1e9));
    CHECK(device_from_text(array_device("  model: systolic\n")).model == "systolic");
}

TEST_CASE("A model that cannot run the device is a located error") {
    // Every family has its model now: naming one whose section the device lacks is the error left.
    const std::string not_built = user_error_of([] {
        device_from_text(
            "device:\n  name: g\n  family: mcu\n  model: mcu\n  clock: 1GHz\n"
            "  peak: {fp16: 1TFLOP/s}\n  mac_energy: {fp16: 1pJ}\n"
            "  memory:\n    - {name: hbm, capacity: 1GiB, bandwidth: 1TB/s, read_energy: 1pJ/B}\n"
            "  tdp: 100W\n  static_power: 10W\n",
            "g.yaml");
    });
    CHECK_THAT(not_built, Contains("g.yaml:4:"));
    CHECK_THAT(not_built, Contains("device.model"));
    CHECK_THAT(not_built, Contains("the mcu model needs a `mcu:` section"));

    const std::string no_section = user_error_of([] {
        device_from_text(
            "device:\n  name: g\n  family: gpu\n  model: systolic\n  clock: 1GHz\n"
            "  peak: {fp16: 1TFLOP/s}\n  mac_energy: {fp16: 1pJ}\n"
            "  memory:\n    - {name: hbm, capacity: 1GiB, bandwidth: 1TB/s, read_energy: 1pJ/B}\n"
            "  tdp: 100W\n  static_power: 10W\n",
            "g.yaml");
    });
    CHECK_THAT(no_section, Contains("g.yaml:4:"));
    CHECK_THAT(no_section, Contains("needs a `systolic:` section"));

    const std::string unknown =
        user_error_of([] { device_from_text(array_device("  model: systolc\n"), "a.yaml"); });
    CHECK_THAT(unknown, Contains("a.yaml:10:"));
    CHECK_THAT(unknown, Contains("systolic"));
}

TEST_CASE("A systolic device derives its peaks from the array; a declared peak must agree") {
    SECTION("derived for every data type with a MAC energy, at 1/passes for the ones given") {
        const arch::DeviceSpec d = device_from_text(array_device("", "    passes: {int16: 4}\n"));
        CHECK(d.peak_for("int8") == Approx(32e9));
        CHECK(d.peak_for("int16") == Approx(8e9));
        CHECK(arch::systolic::spec_of(d)->passes_for("int16") == 4);
        CHECK(d.dtypes() == std::vector<std::string>{"int16", "int8"});
    }
    SECTION("a bigger array has a bigger peak, with nothing else to change (sweeps over array size)") {
        std::string text = array_device();
        text.replace(text.find("rows: 4"), 7, "rows: 8");
        CHECK(device_from_text(text).peak_for("int8") == Approx(64e9));
    }
    SECTION("a declared peak that matches passes; one that does not names the array's rate") {
        CHECK(device_from_text(array_device("  peak: {int8: 32GOP/s}\n")).peak_for("int8") == Approx(32e9));
        const std::string msg =
            user_error_of([] { device_from_text(array_device("  peak: {int8: 40GOP/s}\n"), "p.yaml"); });
        CHECK_THAT(msg, Contains("p.yaml:10:"));
        CHECK_THAT(msg, Contains("device.peak.int8"));
        CHECK_THAT(msg, Contains("4 x 4 x 1 PEs x 2 x 1 GHz"));
        CHECK_THAT(msg, Contains("Leave `peak` out"));
        // Declared passes must agree with a declared peak too.
        const std::string passes = user_error_of(
            [] { device_from_text(array_device("  peak: {int8: 32GOP/s}\n", "    passes: {int8: 2}\n")); });
        CHECK_THAT(passes, Contains("device.peak.int8"));
    }
    SECTION("passes for a data type the device cannot compute in") {
        const std::string msg =
            user_error_of([] { device_from_text(array_device("", "    passes: {bf16: 2}\n"), "q.yaml"); });
        CHECK_THAT(msg, Contains("q.yaml:"));
        CHECK_THAT(msg, Contains("device.systolic.passes.bf16"));
        CHECK_THAT(msg, Contains("no MAC energy"));
    }
    SECTION("TPU v1 and v4 come out at their published peaks") {
        CHECK(preset("tpu-v1").peak_for("int8") == Approx(91.75e12).epsilon(1e-3));
        CHECK(preset("tpu-v1").peak_for("int16") == Approx(22.94e12).epsilon(1e-3));
        CHECK(preset("tpu-v4").peak_for("bf16") == Approx(275e12).epsilon(1e-5));
    }
}

TEST_CASE("A device with neither a peak nor a section that derives one is a located error") {
    const std::string msg = user_error_of([] {
        device_from_text(
            "device:\n  name: n\n  family: cpu\n  clock: 1GHz\n  mac_energy: {fp32: 1pJ}\n"
            "  memory:\n    - {name: dram, capacity: 1GiB, bandwidth: 10GB/s, read_energy: 1pJ/B}\n"
            "  tdp: 100W\n  static_power: 10W\n",
            "n.yaml");
    });
    CHECK_THAT(msg, Contains("n.yaml:"));
    CHECK_THAT(msg, Contains("needs `peak:`"));
}

TEST_CASE("A family section on a device of another hardware family is a located error") {
    const std::string msg = user_error_of([] { device_from_text(array_device("", "", "gpu"), "w.yaml"); });
    CHECK_THAT(msg, Contains("w.yaml:"));
    CHECK_THAT(msg, Contains("`systolic:` section describes a tpu or npu device"));
}

TEST_CASE("The bound is the largest part of a layer's time, in every family") {
    arch::TimeParts p;
    CHECK(arch::bound_of(p) == "memory");  // a view: no time at all
    p.compute_s = 2;
    p.memory_s = 1;
    CHECK(arch::bound_of(p) == "compute");
    p.overhead_s = 3;
    CHECK(arch::bound_of(p) == "overhead");
    p.communication_s = 4;
    CHECK(arch::bound_of(p) == "communication");
    p = arch::TimeParts{1, 1, 0, 0};
    CHECK(arch::bound_of(p) == "compute");  // ties go to the earlier part

    for (const char* name : {"a100", "tpu-v4"}) {
        INFO(name);
        const arch::DeviceSpec d = preset(name);
        const wl::Model m = wl::zoo_build("resnet50", [] {
            wl::ZooOptions o;
            o.dtype = wl::DType::bf16;
            return o;
        }());
        const std::vector<arch::LayerResult> layers = arch::make_device_model(d)->run(m);
        double total = 0, overhead = 0;
        for (const arch::LayerResult& l : layers) {
            CHECK(l.parts.total() == Approx(l.time_s).epsilon(1e-12));
            CHECK(l.bound == arch::bound_of(l.parts));
            // The roofline and systolic models charge the overhead once per op; the GPU model once per
            // kernel (none for a view or an op fused into a GEMM's epilogue).
            if (d.model == "gpu")
                CHECK(l.parts.overhead_s == Approx(l.metric_value("kernels") * d.op_overhead_s));
            else
                CHECK(l.parts.overhead_s == Approx(d.op_overhead_s));
            if (l.bound == "memory") {
                // The level waited on: main memory, or (a detailed model) one of the layer's own levels,
                // e.g. the on-chip buffer an activation kept there is read from.
                REQUIRE(l.metric("memory_level") != nullptr);
                const std::string level = l.metric("memory_level")->text;
                if (l.levels.size() <= 1) CHECK(level == d.main_memory().name);
                CHECK(l.level(level) != nullptr);
            }
            total += l.time_s;
            overhead += l.parts.overhead_s;
        }
        // At batch 1 the A100's per-kernel launch overhead is most of ResNet-50's time (the GPU model
        // charges it per kernel: each convolution with its fused BN, ReLU and residual add, the pools,
        // the classifier), and the layers dominated by it say so.
        if (std::string(name) == "a100") {
            CHECK(overhead > 0.5 * total);
            CHECK(std::count_if(layers.begin(), layers.end(),
                                [](const arch::LayerResult& l) { return l.bound == "overhead"; }) > 40);
        }
    }
}

TEST_CASE("Each family reports per-level traffic that conserves main-memory bytes") {
    for (const char* name : {"tpu-v1", "a100"}) {
        INFO(name);
        const arch::DeviceSpec d = preset(name);
        wl::Model m = wl::zoo_build("mlp3", [] {
            wl::ZooOptions o;
            o.dtype = wl::DType::int8;
            return o;
        }());
        for (const arch::LayerResult& l : arch::make_device_model(d)->run(m)) {
            const arch::LevelTraffic* main = l.level(d.main_memory().name);
            REQUIRE(main != nullptr);
            CHECK(main->bytes_read == l.bytes_read);
            CHECK(main->bytes_written == l.bytes_written);
            double energy = 0;
            for (const arch::LevelTraffic& lv : l.levels) energy += lv.energy_j;
            // Level energies and the hop energy metric make up the memory energy.
            CHECK(energy + l.metric_value("energy_pe_hops_j") == Approx(l.energy_memory_j));
        }
    }
}

TEST_CASE("The engine's counters of the main-memory channel become metrics that agree with the layer") {
    // The channel counted every byte it carried; the layer reports the same bytes across main memory.
    const arch::DeviceSpec d = preset("tpu-v1");
    arch::systolic::SystolicModel model(d);
    const arch::LayerResult r = model.run_op(linear(256, 512, 1024));
    REQUIRE(r.metric("dram_bytes") != nullptr);
    CHECK(r.metric("dram_bytes")->unit == "B");
    CHECK(r.metric_value("dram_bytes") == r.bytes_read + r.bytes_written);
    CHECK(r.metric_value("dram_transfers") > 0);
    CHECK(r.metric("dram_busy_time_s")->unit == "s");
    CHECK(r.metric_value("dram_busy_time_s") > 0);
    CHECK(r.metric_value("dram_busy_time_s") <= r.time_s);
}

TEST_CASE("A family's own system file format is found by extension") {
    const arch::SystemFormat* cfg_format =
        arch::find_system_format("../shared/reference/scalesim/google.cfg");
    REQUIRE(cfg_format != nullptr);
    CHECK(cfg_format->extension == ".cfg");
    CHECK(cfg_format->description == "SCALE-Sim config");
    CHECK(arch::find_system_format("configs/systems/dgx-a100.yaml") == nullptr);
    CHECK(arch::find_system_format(".cfg") == nullptr);  // a bare extension names no file
}
