// The detailed microcontroller model: its section and derived peaks (located errors), the tensor-arena
// planner against hand-worked lifetimes, "does it fit", and the roofline floor over the small zoo models
// on every MCU preset.
#include <catch2/catch.hpp>
#include <string>
#include <vector>

#include "arch/device_model.h"
#include "arch/device_spec.h"
#include "arch/mcu/mcu_model.h"
#include "arch/mcu/mcu_spec.h"
#include "arch/roofline/roofline.h"
#include "sim/config/loader.h"
#include "sim/config/schema.h"
#include "tests/arch/user_error.h"
#include "workloads/model.h"
#include "workloads/op.h"
#include "workloads/zoo/zoo.h"

using namespace mlsim;
using Catch::Matchers::Contains;
using test::user_error_of;

namespace {

const std::string k_devices = std::string(MLSIM_SOURCE_DIR) + "/configs/devices/";
const char* const k_mcus[] = {"stm32f746", "stm32h7a3", "stm32l4r5", "stm32u575"};

arch::DeviceSpec preset(const std::string& name) { return arch::load_device(k_devices + name + ".yaml"); }

arch::DeviceSpec from_text(const std::string& text) {
    const cfg::Node doc = cfg::parse_string(text, "mcu.yaml");
    return arch::device_from_node(cfg::validate(*doc.find("device"), arch::device_schema()));
}

// A Cortex-`core` MCU at 100 MHz: 64 KiB SRAM, 1 MiB flash read 8 B per (2 + 1) cycles; `extra` lines go
// into the device map, `sec` into its mcu section.
std::string mcu_device(const std::string& core = "cortex-m4", const std::string& extra = "",
                       const std::string& sec = "") {
    return "device:\n"
           "  name: toy\n"
           "  family: mcu\n"
           "  clock: 100MHz\n"
           "  mac_energy: {int8: 1pJ, int16: 1pJ, fp32: 5pJ}\n"
           "  memory:\n"
           "    - {name: sram, capacity: 64KiB, bandwidth: 400MB/s, read_energy: 5pJ/B}\n"
           "    - {name: flash, capacity: 1MiB, bandwidth: 266.6667MB/s, read_energy: 50pJ/B}\n"
           "  static_power: 0.01W\n"
           "  tdp: 0.1W\n" +
           extra +
           "  mcu:\n"
           "    core: " +
           core +
           "\n"
           "    flash_wait_states: 2\n"
           "    flash_line: 8B\n" +
           sec;
}

wl::Model zoo(const std::string& name, wl::DType dtype = wl::DType::int8) {
    wl::ZooOptions o;
    o.dtype = dtype;
    return wl::zoo_build(name, o);
}

wl::Op relu(const std::string& name, int64_t n) {
    wl::EltwiseAttr a;
    a.fn = wl::Eltwise::relu;
    return wl::make_op(name, a, {{1, n}}, wl::DType::int8);
}

const arch::mcu::McuSpec& mcu_of(const arch::DeviceSpec& d) {
    const arch::mcu::McuSpec* m = arch::mcu::spec_of(d);
    REQUIRE(m != nullptr);
    return *m;
}

}  // namespace

TEST_CASE("The core fixes the MCU's peaks; declared figures that disagree are located errors", "[mcu]") {
    const arch::DeviceSpec m4 = from_text(mcu_device());
    CHECK(m4.model == "mcu");
    CHECK(m4.peak_for("int8") == Approx(2 * 2 * 100e6));  // SMLAD: 2 MACs per cycle
    CHECK(m4.peak_for("fp32") == Approx(2 * 100e6 / 3));  // VFMA.F32 every 3 cycles
    const arch::DeviceSpec m55 = from_text(mcu_device("cortex-m55"));
    CHECK(m55.peak_for("int8") == Approx(8 * 2 * 100e6));  // dual-beat Helium
    CHECK(m55.peak_for("int16") == Approx(4 * 2 * 100e6));

    std::string msg = user_error_of([] { from_text(mcu_device("cortex-m4", "  peak: {int8: 800MOP/s}\n")); });
    CHECK_THAT(msg, Contains("mcu.yaml:"));
    CHECK_THAT(msg, Contains("does not match the cortex-m4"));
    msg = user_error_of([] { from_text(mcu_device("cortex-m4", "", "    macs_per_cycle: 4\n")); });
    CHECK_THAT(msg, Contains("macs_per_cycle"));
    msg = user_error_of([] { from_text(mcu_device("cortex-m4", "", "    core: cortex-m3\n")); });
    msg = user_error_of([] {
        std::string t = mcu_device();
        t.replace(t.find("266.6667MB/s"), 12, "500MB/s");
        from_text(t);
    });
    CHECK_THAT(msg, Contains("flash bandwidth"));
    msg = user_error_of([] {
        std::string t = mcu_device();
        t.replace(t.find("name: flash"), 11, "name: nvm");
        from_text(t);
    });
    CHECK_THAT(msg, Contains("`sram` and `flash`"));
    msg = user_error_of([] {
        std::string t = mcu_device();
        t.replace(t.find("    flash_line: 8B\n"), 19, "");
        from_text(t);
    });
    CHECK_THAT(msg, Contains("flash_line"));
}

TEST_CASE("Every MCU preset loads on the MCU model with its peaks and flash cross-checked", "[mcu]") {
    for (const char* name : k_mcus) {
        INFO(name);
        const arch::DeviceSpec d = preset(name);
        CHECK(d.model == "mcu");
        const arch::mcu::McuSpec& m = mcu_of(d);
        CHECK(d.peak_for("int8") == Approx(m.core.int8_macs_per_cycle * 2 * d.clock_hz).epsilon(0.01));
        CHECK(d.main_memory().bandwidth_Bps ==
              Approx(m.flash_line_bytes / static_cast<double>(m.flash_wait_states + 1) * d.clock_hz)
                  .epsilon(0.01));
        CHECK(m.flash_cache_bytes > 0);
    }
}

TEST_CASE("The arena planner matches hand-worked lifetimes", "[mcu]") {
    const arch::DeviceSpec device = from_text(mcu_device());  // owns the section m refers to
    const arch::mcu::McuSpec& m = mcu_of(device);
    SECTION("a chain: two 100 B tensors live at a time") {
        wl::ModelBuilder b("chain");
        const size_t a = b.add(relu("a", 100));
        const size_t c = b.add(relu("b", 100), {wl::TensorRef{a, 0}});
        b.add(relu("c", 100), {wl::TensorRef{c, 0}});
        const arch::mcu::ArenaPlan p = arch::mcu::plan_arena(std::move(b).build(), m);
        CHECK(p.peak_bytes == 200);
        CHECK(p.tensors.size() == 4);  // the input and three outputs
    }
    SECTION("a residual block: a lives until the add, beside b and the sum") {
        wl::ModelBuilder b("res");
        const size_t a = b.add(relu("a", 100));
        const size_t x = b.add(relu("b", 100), {wl::TensorRef{a, 0}});
        wl::EltwiseAttr add;
        add.fn = wl::Eltwise::add;
        b.add(wl::make_op("sum", add, {{1, 100}, {1, 100}}, wl::DType::int8),
              {wl::TensorRef{a, 0}, wl::TensorRef{x, 0}});
        CHECK(arch::mcu::plan_arena(std::move(b).build(), m).peak_bytes == 300);
    }
    SECTION("a branch and concat: both branches and the 200 B concat at the last step") {
        wl::ModelBuilder b("branch");
        const size_t in = b.add(relu("in", 100));
        const size_t a = b.add(relu("a", 100), {wl::TensorRef{in, 0}});
        const size_t c = b.add(relu("b", 100), {wl::TensorRef{in, 0}});
        b.add(wl::make_op("cat", wl::ConcatAttr{1}, {{1, 100}, {1, 100}}, wl::DType::int8),
              {wl::TensorRef{a, 0}, wl::TensorRef{c, 0}});
        const arch::mcu::ArenaPlan p = arch::mcu::plan_arena(std::move(b).build(), m);
        // Step 2 (b): in, a, b live = 300; step 3 (cat): a, b, cat = 400.
        CHECK(p.peak_bytes == 400);
    }
    SECTION("zoo models: the arena holds the largest op and no two live tensors overlap") {
        for (const char* name :
             {"ds-cnn-kws", "vww-mobilenetv1", "resnet8-cifar", "fc-autoencoder", "lenet5"}) {
            INFO(name);
            const arch::mcu::ArenaPlan p = arch::mcu::plan_arena(zoo(name), m);
            CHECK(p.peak_bytes >= p.largest_op_bytes);
            CHECK(p.largest_op_bytes > 0);
            for (size_t i = 0; i < p.tensors.size(); ++i)
                for (size_t j = i + 1; j < p.tensors.size(); ++j) {
                    const auto &x = p.tensors[i], &y = p.tensors[j];
                    const bool live = x.first <= y.last && y.first <= x.last;
                    const bool apart = x.offset + x.bytes <= y.offset || y.offset + y.bytes <= x.offset;
                    if (live && x.bytes > 0 && y.bytes > 0) CHECK(apart);
                }
        }
    }
}

TEST_CASE("A model whose arena or weights do not fit is refused with both numbers", "[mcu]") {
    // MobileNetV2 at 224x224: its first activations alone are far above 320 KiB.
    const arch::DeviceSpec f7 = preset("stm32f746");
    arch::mcu::McuModel m(f7);
    const std::string msg = user_error_of([&] { m.run(zoo("mobilenetv2")); });
    CHECK_THAT(msg, Contains("stm32f746.yaml"));
    CHECK_THAT(msg, Contains("tensor arena needs"));
    CHECK_THAT(msg, Contains("320 KiB"));
    // Weights: 1 MiB flash, a 2 MB linear layer.
    arch::mcu::McuModel toy(from_text(mcu_device()));
    wl::ModelBuilder b("big");
    b.add(wl::make_op("fc", wl::LinearAttr{0, 2000, false}, {{1, 1000}}, wl::DType::int8));
    const std::string w = user_error_of([&] { toy.run(std::move(b).build()); });
    CHECK_THAT(w, Contains("weights need"));
    CHECK_THAT(w, Contains("flash holds"));
    // The keyword-spotting network fits every preset.
    for (const char* name : k_mcus) {
        arch::mcu::McuModel ok(preset(name));
        CHECK_NOTHROW(ok.run(zoo("ds-cnn-kws")));
    }
}

TEST_CASE("No layer of the small zoo models beats the roofline on any MCU preset", "[mcu]") {
    int runs = 0;
    for (const char* dev : k_mcus) {
        const arch::DeviceSpec spec = preset(dev);
        for (const char* mn :
             {"ds-cnn-kws", "vww-mobilenetv1", "resnet8-cifar", "fc-autoencoder", "lenet5", "mlp3"}) {
            for (const wl::DType dt : {wl::DType::int8, wl::DType::fp32}) {
                const wl::Model model = zoo(mn, dt);
                arch::mcu::McuModel m(spec);
                const arch::mcu::ArenaPlan plan = arch::mcu::plan_arena(model, mcu_of(spec));
                if (model.totals().weight_bytes > mcu_of(spec).flash_bytes ||
                    plan.peak_bytes > mcu_of(spec).sram_bytes) {
                    CHECK_THAT(user_error_of([&] { m.run(model); }), Contains("does not fit"));
                    continue;
                }
                ++runs;
                const std::vector<arch::LayerResult> rs = m.run(model);
                REQUIRE(rs.size() == model.ops().size());
                double t = 0, cycles = 0, macs = 0;
                for (const arch::LayerResult& r : rs) {
                    const wl::Op& op = model.op(static_cast<size_t>(r.idx));
                    INFO(dev << " " << mn << " " << r.name << " (" << r.op << ")");
                    const arch::RooflineBound b =
                        arch::roofline_bound(spec, op,
                                             arch::OnChip{r.metric_value("input_bytes_on_chip"),
                                                          r.metric_value("output_bytes_kept")});
                    CHECK(r.time_s >= b.bound_s() * (1 - 1e-9));
                    CHECK(r.time_s == Approx(r.parts.total()));
                    CHECK(r.start_s == Approx(t));
                    CHECK(r.energy_compute_j >= 0);
                    CHECK(r.energy_memory_j >= 0);
                    CHECK(r.energy_static_j >= 0);
                    if (r.time_s > 0) CHECK(r.energy_j() / r.time_s <= spec.tdp_W);
                    // Bytes conserved: the flash level is the layer's main-memory traffic, at least its
                    // weights.
                    const arch::LevelTraffic* fl = r.level("flash");
                    REQUIRE(fl != nullptr);
                    CHECK(fl->bytes_read == Approx(r.bytes_read));
                    CHECK(r.bytes_read >= r.counts.weight_bytes * (1 - 1e-12));
                    CHECK(r.metric_value("macs_per_cycle") <= mcu_of(spec).core.int8_macs_per_cycle + 1e-9);
                    t = r.end_s;
                    cycles += static_cast<double>(r.cycles);
                    macs += r.counts.macs;
                }
                // A real kernel does not reach the SIMD peak over a whole network.
                if (dt == wl::DType::int8) CHECK(macs / cycles < mcu_of(spec).core.int8_macs_per_cycle);
            }
        }
    }
    CHECK(runs >= 30);  // most (device, model, dtype) triples fit
}

TEST_CASE("Flash wait states, the runtime and the core change the time the way they should", "[mcu]") {
    const wl::Model kws = zoo("ds-cnn-kws");
    const auto total = [&](const std::string& core, const std::string& extra, const std::string& sec) {
        arch::mcu::McuModel m(from_text(mcu_device(core, extra, sec)));
        double t = 0, wait = 0;
        for (const arch::LayerResult& r : m.run(kws)) {
            t += r.time_s;
            wait += r.metric_value("flash_wait_cycles");
        }
        return std::pair{t, wait};
    };
    const auto base = total("cortex-m4", "", "");
    CHECK(base.second > 0);
    // A flash cache that holds each layer's weights: every line missed once only.
    const auto cached = total("cortex-m4", "", "    flash_cache: 64KiB\n");
    CHECK(cached.second < base.second);
    CHECK(cached.first < base.first);
    // The reference (scalar) kernels are slower than the SIMD ones.
    const auto ref = total("cortex-m4", "", "    runtime: reference\n");
    CHECK(ref.first > 1.5 * base.first);
    // Helium at the same clock is faster.
    const auto m55 = total("cortex-m55", "", "");
    CHECK(m55.first < base.first);
}
