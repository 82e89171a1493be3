// The detailed microcontroller model: its section and derived peaks (located errors), the tensor-arena
// planner against hand-worked lifetimes, "does it fit", and the roofline floor over the small zoo models
// on every MCU preset.
#include <catch2/catch.hpp>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include "arch/device_model.h"
#include "arch/device_spec.h"
#include "arch/family.h"
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
const char* const k_mcus[] = {"stm32f746", "stm32h7a3", "stm32l4r5", "stm32u575", "nrf5340", "ra8d1"};

arch::DeviceSpec preset(const std::string& name) { return arch::load_device(k_devices + name + ".yaml"); }

std::string preset_text(const std::string& name) {
    std::ifstream in(k_devices + name + ".yaml");
    std::stringstream ss;
    ss << in.rdbuf();
    return ss.str();
}

std::string fmt_uJ(double j) {
    std::ostringstream o;
    o.setf(std::ios::fixed);
    o.precision(1);
    o << "active " << j * 1e6;
    return o.str();
}

std::string replaced(std::string text, const std::string& from, const std::string& to) {
    const size_t at = text.find(from);
    REQUIRE(at != std::string::npos);
    return text.replace(at, from.size(), to);
}

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

TEST_CASE("An MCU's flash line, flash cache and sleep power are checked against the part", "[mcu]") {
    // Each was accepted and changed the results: a 33 B line every layer's flash bytes, a 4 GiB cache in
    // front of 1 MiB of flash every weight read, a 5 W sleep a 4.9 W average on a 0.1 W part.
    const auto error_with = [](const std::string& sec) {
        return user_error_of([&] { from_text(mcu_device("cortex-m4", "", sec)); });
    };
    std::string msg = user_error_of([] {
        std::string t = mcu_device();
        t.replace(t.find("flash_line: 8B"), 14, "flash_line: 33B");
        from_text(t);
    });
    CHECK_THAT(msg, Contains("mcu.flash_line") && Contains("not a power of two"));
    msg = error_with("    flash_cache: 4GiB\n");
    CHECK_THAT(msg, Contains("mcu.flash_cache") && Contains("larger than the flash it caches (1 MiB)"));
    msg = error_with("    sleep_power: 5W\n");
    CHECK_THAT(msg, Contains("mcu.sleep_power") && Contains("above the run-mode static power 10 mW"));
    CHECK_NOTHROW(from_text(mcu_device("cortex-m4", "", "    flash_cache: 1MiB\n    sleep_power: 10mW\n")));
    // External memory: its burst line as the flash's (a 100 MiB line made DS-CNN take 12.6 s), and a name
    // of its own (`sram` sent --arena-bank sram to the external memory).
    const auto external = [&](const std::string& name, const std::string& line) {
        return error_with("    external: {name: " + name +
                          ", capacity: 8MiB, bandwidth: 100MB/s, latency: 100ns, line: " + line +
                          ", read_energy: 20pJ/B}\n");
    };
    CHECK_THAT(external("psram", "100MiB"), Contains("mcu.external.line") && Contains("not a power of two"));
    CHECK_THAT(external("psram", "3B"), Contains("mcu.external.line"));
    CHECK_THAT(external("sram", "32B"), Contains("mcu.external.name") && Contains("name of a memory level"));
    CHECK_NOTHROW(from_text(mcu_device("cortex-m4", "",
                                       "    external: {name: psram, capacity: 8MiB, bandwidth: 100MB/s, "
                                       "latency: 100ns, line: 32B, read_energy: 20pJ/B}\n")));
    // SRAM and flash sit side by side on an MCU: more SRAM than flash (an STM32H750: 1 MB and 128 KiB)
    // is a part, not an error.
    std::string h750 = mcu_device();
    h750.replace(h750.find("capacity: 64KiB"), 15, "capacity: 1MiB");
    h750.replace(h750.find("capacity: 1MiB, bandwidth: 266"), 14, "capacity: 128KiB");
    CHECK_NOTHROW(from_text(h750));
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
        // The runtime's records: 300 B fixed, per op a 40 B node and its output's 12 B eval tensor,
        // 12 B for the input.
        CHECK(p.persistent_bytes == 300 + 3 * (40 + 12) + 12);
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
    SECTION("the runtime's records grow with the output channels of an int8 convolution") {
        const auto one_conv = [&](wl::DType dt) {
            wl::ConvAttr c;
            c.out_channels = 8;
            c.kernel = {3, 3, 1};
            wl::ModelBuilder b("conv");
            b.add(wl::make_op("c", c, {{1, 4, 8, 8}}, dt));
            return arch::mcu::plan_arena(std::move(b).build(), m).persistent_bytes;
        };
        // 300 fixed + node 40 + output, weight and bias tensors 3 x 12 + the input 12; int8 adds the
        // per-channel multiplier and shift, 8 x 8 B.
        CHECK(one_conv(wl::DType::fp32) == 300 + 40 + 36 + 12);
        CHECK(one_conv(wl::DType::int8) == 300 + 40 + 36 + 12 + 64);
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
                double largest_bank = 0;
                for (const arch::mcu::SramBank& b : mcu_of(spec).banks)
                    largest_bank = std::max(largest_bank, b.bytes);
                if (model.totals().weight_bytes > mcu_of(spec).flash_bytes ||
                    plan.peak_bytes + plan.persistent_bytes > largest_bank) {
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
    CHECK(runs >= 45);  // most (device, model, dtype) triples fit
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

TEST_CASE("Flash wait states and active power follow the clock through the datasheet's table", "[mcu]") {
    const std::string l4 = preset_text("stm32l4r5");
    const arch::DeviceSpec at120 = from_text(l4);
    const arch::DeviceSpec at80 = from_text(replaced(l4, "clock: 120MHz", "clock: 80MHz"));
    CHECK(mcu_of(at120).flash_wait_states == 5);  // RM0432, range 1 boost: 100 < HCLK <= 120 MHz
    CHECK(mcu_of(at80).flash_wait_states == 3);   // 60 < HCLK <= 80 MHz
    CHECK(from_text(replaced(l4, "clock: 120MHz", "clock: 20MHz"))
              .params_of<arch::mcu::McuSpec>("mcu")
              ->flash_wait_states == 0);
    // The flash level and the peaks follow: 8 B per (3 + 1) cycles at 80 MHz; 2 MACs x 2 x 80 MHz.
    CHECK(at80.main_memory().bandwidth_Bps == Approx(8.0 / 4 * 80e6));
    CHECK(at80.peak_for("int8") == Approx(4 * 80e6));
    CHECK(at80.static_power_W == Approx(at120.static_power_W * 80.0 / 120));
    // Slower clock: longer, but fewer wait cycles per flash line.
    const wl::Model kws = zoo("ds-cnn-kws");
    const auto sum = [&](const arch::DeviceSpec& d, const char* metric) {
        arch::mcu::McuModel m(d);
        double t = 0, v = 0;
        for (const arch::LayerResult& r : m.run(kws)) {
            t += r.time_s;
            v += r.metric_value(metric);
        }
        return std::pair{t, v};
    };
    const auto f120 = sum(at120, "flash_wait_cycles"), f80 = sum(at80, "flash_wait_cycles");
    CHECK(f80.first > f120.first);
    CHECK(f80.second == Approx(f120.second * 3 / 5));
    // Above the table, or a fixed figure that disagrees with it: located errors.
    std::string msg = user_error_of([&] { from_text(replaced(l4, "clock: 120MHz", "clock: 150MHz")); });
    CHECK_THAT(msg, Contains("mcu.yaml:"));
    CHECK_THAT(msg, Contains("wait-state table"));
    msg = user_error_of([&] {
        from_text(replaced(l4, "    flash_line: 8B", "    flash_wait_states: 4\n    flash_line: 8B"));
    });
    CHECK_THAT(msg, Contains("the table gives 5"));
    msg = user_error_of([&] {
        from_text(replaced(l4, "{max_clock: 40MHz, wait_states: 1}", "{max_clock: 10MHz, wait_states: 1}"));
    });
    CHECK_THAT(msg, Contains("rise in clock"));
    msg = user_error_of([] { from_text(replaced(mcu_device(), "    flash_wait_states: 2\n", "")); });
    CHECK_THAT(msg, Contains("flash_wait_table"));
}

TEST_CASE("The flash bandwidth is derived from the wait-state table, and a declared one is checked",
          "[mcu]") {
    // With a table the flash level's bandwidth follows the clock; before, a declared figure was replaced by
    // it without a word, so a sweep over it changed nothing.
    const std::string l4 = preset_text("stm32l4r5");  // 8 B per (5 + 1) cycles at 120 MHz: 160 MB/s
    CHECK(from_text(l4).main_memory().bandwidth_Bps == Approx(8.0 / 6 * 120e6));
    const std::string flash = "    - name: flash\n";
    const auto with_flash_bandwidth = [&](const std::string& bw) {
        return replaced(l4, flash, flash + "      bandwidth: " + bw + "\n");
    };
    CHECK(from_text(with_flash_bandwidth("160.5MB/s")).main_memory().bandwidth_Bps == Approx(160.5e6));
    std::string msg = user_error_of([&] { from_text(with_flash_bandwidth("320MB/s")); });
    CHECK_THAT(msg, Contains("device.memory[1].bandwidth") && Contains("flash bandwidth 320 MB/s") &&
                        Contains("160 MB/s") && Contains("5 wait states at 120 MHz") &&
                        Contains("leave it out to have it derived"));
    // Without a table the figure is required, and one that disagrees is refused where it is written.
    msg = user_error_of([] { from_text(replaced(mcu_device(), "bandwidth: 266.6667MB/s, ", "")); });
    CHECK_THAT(msg, Contains("device.memory[1]") && Contains("memory level 'flash' needs `bandwidth`") &&
                        Contains("flash_wait_table"));
    msg = user_error_of([] { from_text(replaced(mcu_device(), "266.6667MB/s", "300MB/s")); });
    CHECK_THAT(msg, Contains("device.memory[1].bandwidth") && Contains("2 wait states at 100 MHz") &&
                        !Contains("leave it out"));
    // An empty table is no table.
    msg = user_error_of([] {
        from_text(replaced(mcu_device("cortex-m4", "", "    flash_wait_table: []\n"),
                           "bandwidth: 266.6667MB/s, ", ""));
    });
    CHECK_THAT(msg, Contains("memory level 'flash' needs `bandwidth`"));
    // A flash level under another name: told which name may leave it out.
    msg = user_error_of([&] { from_text(replaced(l4, flash, "    - name: nvm\n")); });
    CHECK_THAT(msg, Contains("memory level 'nvm' needs `bandwidth`") && Contains("named `flash`"));
    // Any other level without one is refused before the family reads it.
    msg = user_error_of([] { from_text(replaced(mcu_device(), "bandwidth: 400MB/s, ", "")); });
    CHECK_THAT(msg, Contains("device.memory[0]") && Contains("memory level 'sram' needs `bandwidth`"));
}

TEST_CASE("The arena goes to the bank the user names or the fastest that holds it", "[mcu]") {
    // 16 KiB of TCM and 48 KiB of SRAM at 2 wait states per access.
    const std::string banks =
        "    banks:\n"
        "      - {name: tcm, capacity: 16KiB, tcm: true}\n"
        "      - {name: slow, capacity: 48KiB, wait_states: 2}\n";
    const auto run = [&](const std::string& model, const std::string& sec) {
        arch::mcu::McuModel m(from_text(mcu_device("cortex-m4", "", banks + sec)));
        return m.run(zoo(model));
    };
    const auto total = [](const std::vector<arch::LayerResult>& rs, const char* metric) {
        double t = 0, v = 0;
        for (const arch::LayerResult& r : rs) {
            t += r.time_s;
            v += r.metric_value(metric);
        }
        return std::pair{t, v};
    };
    // The autoencoder's 0.8 KiB arena fits the TCM: no SRAM wait cycles.
    const auto ae = run("fc-autoencoder", "");
    REQUIRE(ae.front().metric("arena_bank") != nullptr);
    CHECK(ae.front().metric("arena_bank")->text == "tcm");
    CHECK(total(ae, "sram_wait_cycles").second == 0);
    // Forced into the slow bank it pays 2 cycles per 32-bit access of its activations.
    const auto ae_slow = run("fc-autoencoder", "    arena_bank: slow\n");
    CHECK(ae_slow.front().metric("arena_bank")->text == "slow");
    double act_bytes = 0;
    for (const arch::LayerResult& r : ae_slow) {
        const arch::LevelTraffic* s = r.level("sram");
        if (s) act_bytes += s->bytes_read + s->bytes_written;
    }
    CHECK(total(ae_slow, "sram_wait_cycles").second == Approx(act_bytes / 4 * 2));
    CHECK(total(ae_slow, "x").first > total(ae, "x").first);
    // DS-CNN's 16.8 KiB arena does not fit the TCM: auto takes the slow bank; naming the TCM is refused.
    CHECK(run("ds-cnn-kws", "").front().metric("arena_bank")->text == "slow");
    std::string msg = user_error_of([&] { run("ds-cnn-kws", "    arena_bank: tcm\n"); });
    CHECK_THAT(msg, Contains("does not fit"));
    CHECK_THAT(msg, Contains("bank tcm"));
    // ResNet-8's 48.6 KiB fits no bank, though the SRAM holds 64 KiB in all.
    msg = user_error_of([&] { run("resnet8-cifar", ""); });
    CHECK_THAT(msg, Contains("tensor arena needs"));
    CHECK_THAT(msg, Contains("largest bank 48 KiB"));
    // Located errors: banks that do not add up, a TCM with wait states, an unknown bank.
    msg = user_error_of(
        [] { from_text(mcu_device("cortex-m4", "", "    banks:\n      - {name: a, capacity: 32KiB}\n")); });
    CHECK_THAT(msg, Contains("must add up"));
    msg = user_error_of([] {
        from_text(mcu_device("cortex-m4", "",
                             "    banks:\n      - {name: a, capacity: 64KiB, tcm: true, wait_states: 1}\n"));
    });
    CHECK_THAT(msg, Contains("zero wait states"));
    msg = user_error_of([&] { from_text(mcu_device("cortex-m4", "", banks + "    arena_bank: dtcm\n")); });
    CHECK_THAT(msg, Contains("no bank 'dtcm'"));
    // The H7A3 preset puts small arenas in its DTCM.
    arch::mcu::McuModel h7(preset("stm32h7a3"));
    CHECK(h7.run(zoo("ds-cnn-kws")).front().metric("arena_bank")->text == "dtcm");
}

TEST_CASE("External memory holds the weights or the arena that do not fit on chip", "[mcu]") {
    const std::string psram =
        "    external: {name: psram, capacity: 8MiB, bandwidth: 100MB/s, latency: 100ns, line: 32B, "
        "read_energy: 100pJ/B}\n";
    // MobileNetV2 at 224x224: 3.5 MB of weights (flash 1 MiB) and a multi-MiB arena (SRAM 64 KiB).
    const wl::Model mnv2 = zoo("mobilenetv2");
    arch::mcu::McuModel without(from_text(mcu_device()));
    CHECK_THAT(user_error_of([&] { without.run(mnv2); }), Contains("does not fit"));
    arch::mcu::McuModel with(from_text(mcu_device("cortex-m4", "", psram)));
    const std::vector<arch::LayerResult> rs = with.run(mnv2);
    double ext = 0;
    for (const arch::LayerResult& r : rs) {
        if (r.idx == 0) CHECK(r.metric("arena_bank")->text == "psram");
        const arch::LevelTraffic* e = r.level("psram");
        const arch::LevelTraffic* f = r.level("flash");
        REQUIRE(e != nullptr);
        REQUIRE(f != nullptr);
        CHECK(f->bytes_read == 0);  // the weights are in the PSRAM
        CHECK(e->bytes_read + f->bytes_read == Approx(r.bytes_read));
        CHECK(r.bytes_read >= r.counts.weight_bytes * (1 - 1e-12));
        CHECK(r.energy_memory_j >= 0);
        // Nothing read from the PSRAM faster than its 100 MB/s, folded batch-norms included.
        CHECK(r.time_s >= e->bytes_read / 100e6 * (1 - 1e-12));
        ext += e->bytes_read;
    }
    CHECK(ext > mnv2.totals().weight_bytes);
    // A model that fits on chip stays there; forced into the PSRAM its arena is slower.
    const auto time_of = [&](const std::string& sec) {
        arch::mcu::McuModel m(from_text(mcu_device("cortex-m4", "", psram + sec)));
        double t = 0;
        std::string where;
        for (const arch::LayerResult& r : m.run(zoo("ds-cnn-kws"))) {
            t += r.time_s;
            if (r.idx == 0) where = r.metric("arena_bank")->text;
        }
        return std::pair{t, where};
    };
    const auto on_chip = time_of("");
    const auto off_chip = time_of("    arena_bank: psram\n");
    CHECK(on_chip.second == "sram");
    CHECK(off_chip.second == "psram");
    CHECK(off_chip.first > on_chip.first);
    // The 32F746GDISCOVERY preset: MobileNetV2 (3.5 MB of weights) runs from its 8 MiB SDRAM, which the
    // plain STM32F746 refuses.
    arch::mcu::McuModel disco(preset("stm32f746-disco"));
    const std::vector<arch::LayerResult> d = disco.run(mnv2);
    double sdram = 0, stall = 0;
    const double sdram_Bps = 216e6;  // the preset's SDRAM: 16 bits at 108 MHz
    for (const arch::LayerResult& r : d) {
        sdram += r.level("sdram")->bytes_read;
        stall += r.metric_value("external_wait_cycles");
        CHECK(r.time_s >= r.level("sdram")->bytes_read / sdram_Bps * (1 - 1e-12));
    }
    // fc-autoencoder in fp32 (1.05 MB of weights, flash 1 MiB): its folded batch-norms' parameters come from
    // the SDRAM too, not at flash speed.
    int fused_bn = 0;
    for (const arch::LayerResult& r : disco.run(zoo("fc-autoencoder", wl::DType::fp32))) {
        INFO(r.name);
        CHECK(r.time_s >= r.level("sdram")->bytes_read / sdram_Bps * (1 - 1e-12));
        if (r.metric("fused_into") && r.counts.weight_bytes > 0) {
            // Its parameters come from the SDRAM (they were counted at flash speed, with no SDRAM bytes).
            CHECK(r.level("sdram")->bytes_read >= r.counts.weight_bytes);
            ++fused_bn;
        }
    }
    CHECK(fused_bn >= 9);
    CHECK(d.front().metric("arena_bank")->text == "sdram");
    CHECK(sdram >= mnv2.totals().weight_bytes);
    CHECK(stall > 0);
}

TEST_CASE("A duty cycle adds the sleep between inferences to the energy per period", "[mcu]") {
    const arch::DeviceSpec d =
        from_text(mcu_device("cortex-m4", "", "    sleep_power: 10uW\n    duty_period: 1s\n"));
    arch::mcu::McuModel m(d);
    const std::vector<arch::LayerResult> rs = m.run(zoo("ds-cnn-kws"));
    double t = 0, active = 0;
    for (const arch::LayerResult& r : rs) {
        t += r.time_s;
        active += r.energy_j();
    }
    REQUIRE(t < 1);
    CHECK(rs.back().metric_value("duty_period") == 1);
    CHECK(rs.back().metric_value("sleep_energy_per_period") == Approx(10e-6 * (1 - t)));
    const arch::Family* f = arch::find_family("mcu");
    REQUIRE(f != nullptr);
    std::string lines;
    for (const std::string& l : f->summary(rs)) lines += l + "\n";
    CHECK_THAT(lines, Contains("uJ per period"));
    CHECK_THAT(lines, Contains(fmt_uJ(active)));
    // A period shorter than one inference: no sleep, said so.
    arch::mcu::McuModel busy(
        from_text(mcu_device("cortex-m4", "", "    sleep_power: 10uW\n    duty_period: 1ms\n")));
    const std::vector<arch::LayerResult> rb = busy.run(zoo("ds-cnn-kws"));
    CHECK(rb.back().metric_value("sleep_energy_per_period") == 0);
    lines.clear();
    for (const std::string& l : f->summary(rb)) lines += l + "\n";
    CHECK_THAT(lines, Contains("shorter than one inference"));
    // One inference a minute (longer than any other time a device file gives, up to a day).
    arch::mcu::McuModel minute(
        from_text(mcu_device("cortex-m4", "", "    sleep_power: 10uW\n    duty_period: 60s\n")));
    const std::vector<arch::LayerResult> rm = minute.run(zoo("ds-cnn-kws"));
    CHECK(rm.back().metric_value("sleep_energy_per_period") == Approx(10e-6 * (60 - t)));
    CHECK_THROWS_AS(from_text(mcu_device("cortex-m4", "", "    duty_period: 100000s\n")), cfg::UserError);
}

TEST_CASE("The Ethos-U55 runs the ops Vela maps to it; its Cortex-M55 host runs the rest", "[mcu]") {
    // Operator support (Vela's list for the Ethos-U55).
    const auto conv = [](int64_t stride, wl::DType dt, int64_t groups = 1) {
        wl::ConvAttr c;
        c.out_channels = 8;
        c.kernel = {3, 3, 1};
        c.stride = {stride, stride, 1};
        c.pad_begin = {1, 1, 0};
        c.pad_end = {1, 1, 0};
        c.groups = groups;
        return wl::make_op("c", c, {{1, 8, 16, 16}}, dt);
    };
    CHECK(arch::mcu::npu_runs(conv(2, wl::DType::int8)));
    CHECK(arch::mcu::npu_runs(conv(4, wl::DType::int8)));        // CONV_2D: stride 1 to 4
    CHECK_FALSE(arch::mcu::npu_runs(conv(5, wl::DType::int8)));  // stride above 4
    CHECK_FALSE(arch::mcu::npu_runs(conv(1, wl::DType::fp32)));  // not quantised
    CHECK(arch::mcu::npu_runs(conv(1, wl::DType::int8, 2)));     // grouped: split by the converter
    CHECK(arch::mcu::npu_runs(conv(3, wl::DType::int8, 8)));     // depthwise: stride 1 to 3
    CHECK_FALSE(arch::mcu::npu_runs(conv(4, wl::DType::int8, 8)));
    wl::EltwiseAttr gelu;
    gelu.fn = wl::Eltwise::gelu;
    CHECK_FALSE(arch::mcu::npu_runs(wl::make_op("g", gelu, {{1, 64}}, wl::DType::int8)));
    CHECK(arch::mcu::npu_runs(relu("r", 64)));
    wl::ConvAttr b2;
    b2.out_channels = 8;
    b2.kernel = {3, 3, 1};
    CHECK_FALSE(arch::mcu::npu_runs(wl::make_op("b2", b2, {{2, 8, 16, 16}}, wl::DType::int8)));  // batch 2
    CHECK(arch::mcu::npu_runs(wl::make_op("fc2", wl::LinearAttr{0, 10, true}, {{2, 64}}, wl::DType::int8)));
    CHECK(arch::mcu::npu_runs(wl::make_op("s", wl::SoftmaxAttr{}, {{1, 12}}, wl::DType::int8)));

    const arch::DeviceSpec npu = preset("ethos-u55-m55");
    CHECK(npu.model == "mcu");
    CHECK(mcu_of(npu).npu);
    CHECK(npu.peak_for("int8") == Approx(256 * 2 * 400e6));  // the NPU's peak, not the M55's
    // The four MLPerf Tiny networks: every convolution and fully connected layer on the NPU, an op the
    // NPU cannot run (a pool with a stride above 3) on the host, none faster than its roofline, and the
    // arena in system SRAM (the NPU does not read the M55's TCM).
    for (const char* mn : {"ds-cnn-kws", "vww-mobilenetv1", "resnet8-cifar", "fc-autoencoder"}) {
        INFO(mn);
        const wl::Model model = zoo(mn);
        arch::mcu::McuModel m(npu);
        const std::vector<arch::LayerResult> rs = m.run(model);
        REQUIRE(rs.size() == model.ops().size());
        double t = 0;
        int host = 0;
        for (size_t i = 0; i < rs.size(); ++i) {
            const arch::LayerResult& r = rs[i];
            const wl::Op& op = model.op(i);
            INFO(r.name);
            REQUIRE(r.metric("runs_on") != nullptr);
            const bool on_npu = r.metric("runs_on")->text == "npu";
            if (r.metric("fused_into") == nullptr) CHECK(on_npu == arch::mcu::npu_runs(op));
            if (std::holds_alternative<wl::ConvAttr>(op.attr) ||
                std::holds_alternative<wl::LinearAttr>(op.attr))
                CHECK(on_npu);
            host += on_npu ? 0 : 1;
            if (i == 0) CHECK(r.metric("arena_bank")->text == "sysram");
            CHECK(r.start_s == Approx(t));
            CHECK(r.time_s == Approx(r.parts.total()));
            CHECK(r.energy_j() >= 0);
            const arch::RooflineBound b = arch::roofline_bound(npu, op, arch::OnChip{});
            if (r.metric("fused_into") == nullptr) CHECK(r.time_s >= b.bound_s() * (1 - 1e-9));
            t = r.end_s;
        }
        CHECK(host <= 1);
    }
    // A model with an op the NPU cannot run: that op runs on the host, at the M55's rate.
    wl::ModelBuilder b("mixed");
    const size_t c0 = b.add(conv(1, wl::DType::int8));
    wl::EltwiseAttr g;
    g.fn = wl::Eltwise::gelu;
    const size_t g1 =
        b.add(wl::make_op("gelu", g, {{1, 8, 16, 16}}, wl::DType::int8), {wl::TensorRef{c0, 0}});
    wl::ConvAttr c5;
    c5.out_channels = 8;
    c5.kernel = {3, 3, 1};
    c5.stride = {5, 5, 1};
    b.add(wl::make_op("c5", c5, {{1, 8, 16, 16}}, wl::DType::int8), {wl::TensorRef{g1, 0}});
    const wl::Model mixed = std::move(b).build();
    arch::mcu::McuModel mm(npu);
    const std::vector<arch::LayerResult> rs = mm.run(mixed);
    REQUIRE(rs.size() == 3);
    CHECK(rs[0].metric("runs_on")->text == "npu");
    CHECK(rs[1].metric("runs_on")->text == "host");
    CHECK(rs[2].metric("runs_on")->text == "host");
    // The host's convolution runs at the M55's rate (at most 8 int8 MACs per cycle, Helium), not the
    // NPU's 256.
    CHECK(rs[2].metric_value("kernel_cycles") >= rs[2].counts.macs / 8);
    CHECK(rs[2].time_s >= rs[2].counts.macs / (8 * 400e6));
    CHECK(rs[2].metric_value("kernel_cycles") > 0);
    const arch::Family* f = arch::find_family("mcu");
    std::string lines;
    for (const std::string& l : f->summary(rs)) lines += l + "\n";
    CHECK_THAT(lines, Contains("1 of 3 layers on the NPU"));
}

TEST_CASE("CMSIS-NN's loop orders decide how often an MCU reads its weights from flash", "[mcu]") {
    const arch::DeviceSpec l4 = preset("stm32l4r5");  // a 256 B flash data cache (ART accelerator)
    // A 1x1 convolution (arm_nn_mat_mult_nt_t_s8, DSP path) runs two output channels' weight rows
    // (2 x 64 B in DS-CNN) over every pair of pixels: they stay in the cache, and the layer's weights
    // come from flash once. (The model counted pixels / 2 traversals of all of them: 63 x 4 KB.)
    {
        arch::mcu::McuModel m(l4);
        const wl::Model kws = zoo("ds-cnn-kws");
        bool seen = false;
        bool seen_dw = false;
        for (const arch::LayerResult& r : m.run(kws)) {
            if (r.name == "ds1.dw") {
                // arm_depthwise_conv_s8_opt (DSP) copies each output pixel's patch to a 16-bit column
                // buffer first: one element a MAC, 2 cycles each, before its 25 instructions per 8 MACs
                // (the copy was left out and the loop counted 10 per 4).
                seen_dw = true;
                CHECK(r.metric_value("im2col_elements") == r.counts.macs);
                CHECK(r.metric_value("kernel_cycles") >= r.counts.macs * (25.0 / 8 + 2));
            }
            if (r.name != "ds1.pw") continue;
            seen = true;
            CHECK(r.metric_value("weight_passes") > 10);
            CHECK(r.bytes_read <= r.counts.weight_bytes + 32);  // one pass, in whole 32 B lines at most
        }
        CHECK(seen);
        CHECK(seen_dw);
    }
    // A fully connected layer over a batch (arm_fully_connected_s8): the vector-matrix kernel once per
    // row, each reading all of the weights (264 KB for fc-autoencoder, far above the cache): the time per
    // sample does not fall with the batch.
    const auto per_sample = [&](int64_t batch) {
        wl::ZooOptions o;
        o.batch = batch;
        o.dtype = wl::DType::int8;
        arch::mcu::McuModel m(l4);
        double t = 0;
        for (const arch::LayerResult& r : m.run(wl::zoo_build("fc-autoencoder", o))) t += r.time_s;
        return t / static_cast<double>(batch);
    };
    const double b1 = per_sample(1), b4 = per_sample(4);
    CHECK(b4 >= 0.97 * b1);
    CHECK(b4 <= 1.03 * b1);
}

TEST_CASE("An int16 1x1 convolution runs all of its weights over each pair of pixels", "[mcu]") {
    // CMSIS-NN's int16 convolutions (arm_convolve_s16) have no weight-row-outer 1x1 kernel: the int8 rule
    // (two weight rows kept in the flash cache) does not apply to them.
    arch::mcu::McuModel m(preset("stm32l4r5"));
    const wl::Model kws = zoo("ds-cnn-kws", wl::DType::int16);
    bool seen = false;
    for (const arch::LayerResult& r : m.run(kws)) {
        if (r.name != "ds1.pw") continue;
        seen = true;
        CHECK(r.bytes_read > 10 * r.counts.weight_bytes);
    }
    CHECK(seen);
}
