// Device and system specs: every preset loads, key figures match shared/reference/hardware.md, `extends:`
// overrides what it should, and each kind of bad config is a UserError located at file:line.
#include <unistd.h>

#include <algorithm>
#include <catch2/catch.hpp>
#include <cctype>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include "arch/device_spec.h"
#include "arch/system/system_spec.h"
#include "sim/config/error.h"
#include "sim/config/loader.h"
#include "tests/arch/user_error.h"

namespace fs = std::filesystem;
using namespace mlsim;
using Catch::Matchers::Contains;

namespace {

const std::string configs_dir = std::string(MLSIM_SOURCE_DIR) + "/configs";

std::string device_path(const std::string& name) { return configs_dir + "/devices/" + name + ".yaml"; }
std::string system_path(const std::string& name) { return configs_dir + "/systems/" + name + ".yaml"; }

arch::DeviceSpec preset(const std::string& name) { return arch::load_device(device_path(name)); }

constexpr double KiB = 1024.0;
constexpr double MiB = 1024.0 * KiB;
constexpr double GiB = 1024.0 * MiB;

// A per-process scratch folder, removed when the test program exits.
fs::path temp_dir() {
    struct Scratch {
        fs::path dir = fs::temp_directory_path() / ("mlsim_arch_test_" + std::to_string(::getpid()));
        ~Scratch() {
            std::error_code ec;
            fs::remove_all(dir, ec);
        }
    };
    static const Scratch scratch;
    fs::create_directories(scratch.dir);
    return scratch.dir;
}

std::string write_temp(const std::string& name, const std::string& text) {
    fs::path p = temp_dir() / name;
    fs::create_directories(p.parent_path());
    std::ofstream(p) << text;
    return p.string();
}

template <typename F>
std::string error_of(F&& f) {
    return mlsim::test::user_error_of(std::forward<F>(f));
}

// A small valid device; the error tests change one line of it and expect the error on that line.
const std::vector<std::string> base_lines = {
    "device:",                    // 1
    "  name: test-dev",           // 2
    "  family: gpu",              // 3
    "  clock: 1GHz",              // 4
    "  peak:",                    // 5
    "    fp16: 100TFLOP/s",       // 6
    "  mac_energy:",              // 7
    "    fp16: 1pJ",              // 8
    "  memory:",                  // 9
    "    - name: l1",             // 10
    "      capacity: 64KiB",      // 11
    "      bandwidth: 10TB/s",    // 12
    "      read_energy: 1pJ/B",   // 13
    "    - name: hbm",            // 14
    "      capacity: 16GiB",      // 15
    "      bandwidth: 1TB/s",     // 16
    "      read_energy: 30pJ/B",  // 17
    "  static_power: 10W",        // 18
    "  tdp: 100W",                // 19
};

std::string text_of(const std::vector<std::string>& lines) {
    std::string out;
    for (const std::string& l : lines) out += l + "\n";
    return out;
}

// base_lines with line `line` (1-based) replaced by `text`.
std::string with_line(int line, const std::string& text) {
    std::vector<std::string> lines = base_lines;
    lines.at(static_cast<size_t>(line - 1)) = text;
    return text_of(lines);
}

std::string without_line(int line) {
    std::vector<std::string> lines = base_lines;
    lines.erase(lines.begin() + (line - 1));
    return text_of(lines);
}

// Loads `text` as a device file and returns the error; checks that it names file:line.
std::string device_error(const std::string& name, const std::string& text, int line) {
    const std::string path = write_temp(name, text);
    std::string msg = error_of([&] { arch::load_device(path); });
    INFO(msg);
    CHECK_THAT(msg, Contains(path + ":" + std::to_string(line) + ":"));
    return msg;
}

bool near_rel(double a, double b, double tol) { return std::fabs(a - b) <= tol * std::fabs(b); }

}  // namespace

TEST_CASE("every device preset loads, validates and is self-consistent", "[arch][device]") {
    const std::vector<std::string> names = arch::list_device_presets(configs_dir);
    REQUIRE(names.size() >= 14);
    for (const std::string& name : names) {
        INFO("preset " << name);
        const arch::DeviceSpec d = preset(name);
        CHECK(d.name == name);  // the file name is the preset name
        CHECK(std::find(arch::known_families().begin(), arch::known_families().end(), d.family) !=
              arch::known_families().end());
        CHECK_FALSE(d.source.empty());
        CHECK_FALSE(d.description.empty());
        CHECK(d.clock_hz > 0);
        CHECK(d.tdp_W > 0);
        CHECK(d.static_power_W <= d.tdp_W);
        REQUIRE_FALSE(d.peak_ops_per_s.empty());
        for (const auto& [dtype, peak] : d.peak_ops_per_s) {
            CHECK(peak > 0);
            CHECK(d.mac_energy_for(dtype) > 0);
            CHECK(d.ridge_point(dtype) > 0);
        }
        REQUIRE_FALSE(d.memory.empty());
        CHECK(&d.main_memory() == &d.memory.back());
        for (size_t i = 0; i < d.memory.size(); ++i) {
            CHECK(d.memory[i].bandwidth_Bps > 0);
            CHECK(d.memory[i].read_energy_J_per_byte > 0);
            if (i > 0) CHECK(d.memory[i].capacity_bytes >= d.memory[i - 1].capacity_bytes);
        }
        // A device file is also a system of one.
        const arch::SystemSpec s = arch::load_system(device_path(name));
        CHECK(s.name == name);
        CHECK(s.device_count == 1);
        CHECK(s.device.peak_ops_per_s == d.peak_ops_per_s);
    }
}

TEST_CASE("the preset list has every device of hardware.md, sorted", "[arch][device]") {
    const std::vector<std::string> names = arch::list_device_presets(configs_dir);
    for (const char* want :
         {"tpu-v1", "tpu-v4", "a100", "h100", "h200", "jetson-orin-nano", "jetson-orin-nano-super",
          "jetson-agx-orin", "xeon-8380", "xeon-8480", "epyc-9654", "stm32f746", "stm32h7a3", "stm32l4r5",
          "stm32u575", "eyeriss", "ethos-u55"})
        CHECK(std::find(names.begin(), names.end(), want) != names.end());
    CHECK(std::is_sorted(names.begin(), names.end()));
    CHECK(arch::list_device_presets(configs_dir + "/devices") == names);
    CHECK(arch::list_device_presets(configs_dir + "/no-such-folder").empty());
}

TEST_CASE("A100 figures match hardware.md", "[arch][device]") {
    // The peaks are derived from the SM array (arch/gpu): within 0.5 % of the rounded published figures.
    const arch::DeviceSpec d = preset("a100");
    CHECK(d.family == "gpu");
    CHECK(d.clock_hz == Approx(1.41e9));
    CHECK(d.peak_for("fp16") == Approx(312e12).epsilon(0.005));
    CHECK(d.peak_for("bf16") == Approx(312e12).epsilon(0.005));
    CHECK(d.peak_for("tf32") == Approx(156e12).epsilon(0.005));
    CHECK(d.peak_for("fp32") == Approx(19.5e12).epsilon(0.005));
    CHECK(d.peak_for("int8") == Approx(624e12).epsilon(0.005));
    CHECK_FALSE(d.supports("fp8"));
    CHECK(d.main_memory().name == "hbm");
    CHECK(d.main_memory().bandwidth_Bps == Approx(2039e9));
    REQUIRE(d.find_memory("l2") != nullptr);
    CHECK(d.find_memory("l2")->capacity_bytes == Approx(40 * MiB));
    CHECK(d.find_memory("l1")->capacity_bytes == Approx(192 * KiB));
    CHECK(d.find_memory("l1")->instances == 108);
    CHECK(d.find_memory("l1")->total_capacity_bytes() == Approx(108 * 192 * KiB));
    CHECK(d.find_memory("nope") == nullptr);
    CHECK(d.tdp_W == Approx(400));
    // HBM2 3.9 pJ/bit; write energy defaults to read energy.
    CHECK(d.main_memory().read_energy_J_per_byte == Approx(31.2e-12));
    CHECK(d.main_memory().write_energy_J_per_byte == Approx(31.2e-12));
    CHECK(d.op_overhead_s >= 3e-6);
    CHECK(d.op_overhead_s <= 5e-6);
    REQUIRE(d.section("gpu") != nullptr);
    CHECK(d.section("gpu")->find("sms")->as_int() == 108);
    CHECK(d.section("cpu") == nullptr);
}

TEST_CASE("the ridge point of the A100 at fp16 is about 153 FLOP per byte", "[arch][device]") {
    CHECK(preset("a100").ridge_point("fp16") == Approx(153.0).epsilon(0.005));
}

TEST_CASE("H100 figures match hardware.md", "[arch][device]") {
    const arch::DeviceSpec d = preset("h100");
    CHECK(d.main_memory().bandwidth_Bps == Approx(3350e9));
    CHECK(d.peak_for("fp16") == Approx(989e12).epsilon(0.005));
    CHECK(d.peak_for("fp8") == Approx(1979e12).epsilon(0.005));
    CHECK(d.peak_for("int8") == Approx(1979e12).epsilon(0.005));
    CHECK(d.peak_for("tf32") == Approx(494.5e12).epsilon(0.005));
    CHECK(d.peak_for("fp32") == Approx(67e12).epsilon(0.005));
    CHECK(d.find_memory("l2")->capacity_bytes == Approx(50e6));
    CHECK(d.tdp_W == Approx(700));
    CHECK(d.ridge_point("fp16") == Approx(989e12 / 3350e9).epsilon(0.005));
}

TEST_CASE("H200: the H100's chip with HBM3e and the 60 MiB L2 the CUDA runtime reports", "[arch][device]") {
    const arch::DeviceSpec d = preset("h200"), h100 = preset("h100");
    CHECK(d.name == "h200");
    CHECK(d.main_memory().bandwidth_Bps == Approx(4.8e12));
    CHECK(d.main_memory().capacity_bytes == Approx(141e9));
    CHECK(d.find_memory("l2")->capacity_bytes == Approx(60.0 * MiB));
    for (const char* dtype : {"fp64", "fp32", "tf32", "fp16", "bf16", "fp8", "int8"})
        CHECK(d.peak_for(dtype) == h100.peak_for(dtype));
    CHECK(d.tdp_W == Approx(700));
    CHECK(d.ridge_point("bf16") == Approx(989e12 / 4.8e12).epsilon(0.005));
}

TEST_CASE("TPU figures match hardware.md", "[arch][device]") {
    const arch::DeviceSpec v1 = preset("tpu-v1");
    CHECK(near_rel(v1.peak_for("int8"), 92e12, 0.01));
    CHECK(v1.peak_for("int8") == Approx(256.0 * 256 * 2 * 700e6));
    CHECK(v1.main_memory().bandwidth_Bps == Approx(34e9));
    CHECK(v1.main_memory().capacity_bytes == Approx(8 * GiB));
    CHECK(v1.find_memory("unified_buffer")->capacity_bytes == Approx(24 * MiB));
    CHECK(v1.find_memory("accumulators")->capacity_bytes == Approx(4 * MiB));
    CHECK(v1.clock_hz == Approx(700e6));
    CHECK(v1.tdp_W == Approx(75));
    CHECK(v1.process_nm == 28);
    REQUIRE(v1.section("systolic") != nullptr);
    CHECK(v1.section("systolic")->find("rows")->as_int() == 256);

    const arch::DeviceSpec v4 = preset("tpu-v4");
    CHECK(v4.peak_for("bf16") == Approx(275e12));
    CHECK(v4.peak_for("int8") == Approx(275e12));
    CHECK(v4.main_memory().bandwidth_Bps == Approx(1200e9));
    CHECK(v4.main_memory().capacity_bytes == Approx(32 * GiB));
}

TEST_CASE("Jetson figures match hardware.md (dense INT8 = sparse / 2)", "[arch][device]") {
    const arch::DeviceSpec nano = preset("jetson-orin-nano");
    CHECK(nano.peak_for("int8") == Approx(40e12 / 2).epsilon(0.03));  // derived: 4096 x 8 x 625 MHz
    CHECK(nano.main_memory().bandwidth_Bps == Approx(68e9));
    CHECK(nano.clock_hz == Approx(625e6));
    CHECK(nano.tdp_W == Approx(15));

    const arch::DeviceSpec agx = preset("jetson-agx-orin");
    CHECK(agx.peak_for("int8") == Approx(170e12 / 2).epsilon(0.005));  // derived: 4096 x 16 x 1.3 GHz
    CHECK(agx.main_memory().bandwidth_Bps == Approx(204.8e9));
    CHECK(agx.find_memory("l2")->capacity_bytes == Approx(4e6));
    CHECK(agx.clock_hz == Approx(1.3e9));
    CHECK(agx.tdp_W == Approx(60));
}

TEST_CASE("Orin Nano Super extends Orin Nano and differs where it should", "[arch][device]") {
    const arch::DeviceSpec base = preset("jetson-orin-nano");
    const arch::DeviceSpec super = preset("jetson-orin-nano-super");
    // Overridden.
    CHECK(super.name == "jetson-orin-nano-super");
    CHECK(super.clock_hz == Approx(1.02e9));
    CHECK(super.peak_for("int8") == Approx(67e12 / 2));
    CHECK(super.main_memory().bandwidth_Bps == Approx(102e9));
    CHECK(super.tdp_W == Approx(25));
    CHECK(super.description != base.description);
    // Inherited.
    CHECK(super.family == base.family);
    CHECK(super.process_nm == base.process_nm);
    CHECK(super.mac_energy_J == base.mac_energy_J);
    CHECK(super.op_overhead_s == base.op_overhead_s);
    CHECK(super.main_memory().capacity_bytes == base.main_memory().capacity_bytes);
    CHECK(super.dtypes() == base.dtypes());
    REQUIRE(super.section("gpu") != nullptr);
    CHECK(super.section("gpu")->find("sms")->as_int() == 8);
    // Errors in inherited values still point at the file that wrote them.
    CHECK(super.resolved.find("family")->loc().file.find("jetson-orin-nano.yaml") != std::string::npos);
    CHECK(super.resolved.find("clock")->loc().file.find("jetson-orin-nano-super.yaml") != std::string::npos);
}

TEST_CASE("CPU figures match hardware.md", "[arch][device]") {
    const arch::DeviceSpec icx = preset("xeon-8380");
    CHECK(icx.main_memory().bandwidth_Bps == Approx(204.8e9));
    CHECK(icx.peak_for("fp32") == Approx(40.0 * 32 * 2 * 2.3e9).epsilon(0.001));
    CHECK(icx.find_memory("l2")->capacity_bytes == Approx(1.25 * MiB));
    CHECK(icx.find_memory("l3")->capacity_bytes == Approx(60e6));
    CHECK(icx.tdp_W == Approx(270));
    CHECK_FALSE(icx.supports("bf16"));

    const arch::DeviceSpec spr = preset("xeon-8480");
    CHECK(spr.main_memory().bandwidth_Bps == Approx(307.2e9));
    CHECK(spr.peak_for("int8") == Approx(56.0 * 2048 * 2.0e9).epsilon(0.001));
    CHECK(spr.peak_for("bf16") == Approx(56.0 * 1024 * 2.0e9).epsilon(0.001));
    CHECK(spr.find_memory("l2")->capacity_bytes == Approx(2 * MiB));
    CHECK(spr.find_memory("l3")->capacity_bytes == Approx(105e6));
    CHECK(spr.tdp_W == Approx(350));

    const arch::DeviceSpec genoa = preset("epyc-9654");
    CHECK(genoa.main_memory().bandwidth_Bps == Approx(460.8e9));
    CHECK(genoa.peak_for("fp32") == Approx(96.0 * 16 * 2 * 2.4e9).epsilon(0.001));
    CHECK(genoa.find_memory("l3")->total_capacity_bytes() == Approx(384 * MiB));
    CHECK(genoa.tdp_W == Approx(360));
}

TEST_CASE("MCU figures match hardware.md", "[arch][device]") {
    struct Want {
        const char* name;
        double clock_hz, sram_bytes, flash_bytes;
    };
    for (const Want& w :
         {Want{"stm32f746", 216e6, 320 * KiB, 1 * MiB}, Want{"stm32h7a3", 280e6, 1376 * KiB, 2 * MiB},
          Want{"stm32l4r5", 120e6, 640 * KiB, 2 * MiB}, Want{"stm32u575", 160e6, 786 * KiB, 2 * MiB}}) {
        INFO(w.name);
        const arch::DeviceSpec d = preset(w.name);
        CHECK(d.family == "mcu");
        CHECK(d.clock_hz == Approx(w.clock_hz));
        REQUIRE(d.memory.size() == 2);
        CHECK(d.memory[0].name == "sram");
        CHECK(d.memory[0].capacity_bytes == Approx(w.sram_bytes));
        CHECK(d.main_memory().name == "flash");
        CHECK(d.main_memory().capacity_bytes == Approx(w.flash_bytes));
        // SMLAD: 2 MACs per cycle = 4 ops per cycle.
        CHECK(d.peak_for("int8") == Approx(4 * w.clock_hz).epsilon(0.001));
        CHECK(d.op_overhead_s == 0);
    }
}

TEST_CASE("Eyeriss energies are those of the tables Accelergy uses for its Eyeriss example",
          "[arch][device]") {
    // Accelergy's Aladdin plug-in: an intmac of w bits is a 32-bit multiplier (8.63 pJ) scaled by (w/32)^2
    // plus a 32-bit adder (0.0857 pJ) scaled by w/32; its CACTI plug-in: LPDDR4 at 8 pJ per bit; the
    // example's 128 KiB global buffer: 75.22 pJ per 64-bit access (timeloop-accelergy-exercises,
    // eyeriss_like).
    const auto mac = [](double bits) {
        return (8.63 * (bits / 32) * (bits / 32) + 0.0857 * bits / 32) * 1e-12;
    };
    const double pJ = 1e-12;
    const arch::DeviceSpec e = preset("eyeriss");
    CHECK(e.mac_energy_for("int16") == Approx(mac(16)).epsilon(1e-3));
    CHECK(e.mac_energy_for("int8") == Approx(mac(16)).epsilon(1e-3));  // 8-bit data on the 16-bit datapath
    CHECK(e.find_memory("global_buffer")->read_energy_J_per_byte == Approx(75.22 * pJ / 8).epsilon(1e-3));
    CHECK(e.main_memory().read_energy_J_per_byte == Approx(8 * 8 * pJ));
    // The scratchpads as a MAC uses them: ifmap and weight reads, a psum read and write, 16-bit words.
    CHECK(e.find_memory("spad")->read_energy_J_per_byte ==
          Approx((0.24 + 1.59 + 0.25 + 0.25) * pJ / 8).epsilon(0.01));

    const arch::DeviceSpec s = preset("scalesim-eyeriss");
    CHECK(s.mac_energy_for("int8") == Approx(mac(8)).epsilon(0.01));
    CHECK(s.main_memory().read_energy_J_per_byte == Approx(8 * 8 * pJ));
    // TDP: every part at its configured peak rate (MACs, vector unit, buffer reads and writes, DRAM,
    // three words out of every PE per cycle), as its preset file derives it.
    const double peak_macs = 12.0 * 14 * 1e9;
    const double tdp = peak_macs * mac(8) + 14e9 * mac(8) / 2 + 2 * (12 + 14 + 14) * 1e9 * 75.22 * pJ / 8 +
                       40e9 * 64 * pJ + 3 * peak_macs * 0.03 * pJ;
    CHECK(s.tdp_W == Approx(tdp).epsilon(0.01));
}

TEST_CASE("peak_for a data type the device lacks is a located UserError listing what it supports",
          "[arch][device]") {
    const arch::DeviceSpec d = preset("tpu-v1");
    const std::string msg = error_of([&] { d.peak_for("fp8"); });
    CHECK_THAT(msg, Contains("tpu-v1.yaml:"));
    CHECK_THAT(msg, Contains("'fp8'"));
    CHECK_THAT(msg, Contains("int8"));
    CHECK_THAT(msg, Contains("int16"));
    CHECK_THAT(error_of([&] { d.mac_energy_for("bf16"); }), Contains("int8"));
}

TEST_CASE("a hand-written minimal device loads with defaults filled in", "[arch][device]") {
    const std::string path = write_temp("ok.yaml", text_of(base_lines));
    const arch::DeviceSpec d = arch::load_device(path);
    CHECK(d.name == "test-dev");
    CHECK(d.op_overhead_s == 0);
    CHECK(d.process_nm == 0);
    CHECK(d.memory[0].instances == 1);
    CHECK(d.memory[0].latency_s == 0);
    CHECK(d.memory[1].write_energy_J_per_byte == Approx(30e-12));
    CHECK(d.ridge_point("fp16") == Approx(100.0));
    CHECK(d.section("gpu") == nullptr);
}

TEST_CASE("bad device files are UserErrors located at file:line", "[arch][device][errors]") {
    SECTION("unknown key, with a suggestion") {
        CHECK_THAT(device_error("typo.yaml", with_line(12, "      bandwith: 10TB/s"), 12),
                   Contains("did you mean 'bandwidth'"));
    }
    SECTION("unknown key in a family section") {
        std::string text = text_of(base_lines) + "  gpu:\n    sm: 8\n";
        CHECK_THAT(device_error("section_typo.yaml", text, 21), Contains("did you mean 'sms'"));
    }
    SECTION("undeclared family section") {
        std::string text = text_of(base_lines) + "  tensor:\n    sms: 8\n";
        device_error("undeclared_section.yaml", text, 20);
    }
    SECTION("wrong unit") {
        CHECK_THAT(device_error("unit.yaml", with_line(4, "  clock: 1GB/s"), 4), Contains("frequency"));
    }
    SECTION("missing unit") { device_error("no_unit.yaml", with_line(16, "      bandwidth: 1000"), 16); }
    SECTION("zero bandwidth") {
        CHECK_THAT(device_error("zero_bw.yaml", with_line(16, "      bandwidth: 0GB/s"), 16),
                   Contains("greater than"));
    }
    SECTION("negative size") { device_error("negative.yaml", with_line(15, "      capacity: -16GiB"), 15); }
    SECTION("peak for an unknown data type") {
        CHECK_THAT(device_error("dtype.yaml", with_line(6, "    fp17: 100TFLOP/s"), 6),
                   Contains("did you mean 'fp16'"));
        // One edit from fp64 (and two from fp16): the nearest name wins.
        CHECK_THAT(device_error("dtype.yaml", with_line(6, "    fp61: 100TFLOP/s"), 6),
                   Contains("did you mean 'fp64'"));
    }
    SECTION("unknown family") {
        CHECK_THAT(device_error("family.yaml", with_line(3, "  family: gpx"), 3), Contains("tpu"));
    }
    SECTION("missing required key") {
        const std::string path = write_temp("missing.yaml", without_line(19));
        const std::string msg = error_of([&] { arch::load_device(path); });
        CHECK_THAT(msg, Contains("'tdp'"));
        const size_t at = msg.find(path + ":");
        REQUIRE(at != std::string::npos);
        CHECK(std::isdigit(static_cast<unsigned char>(msg[at + path.size() + 1])));
    }
    SECTION("inconsistent memory capacities") {
        const std::string msg = device_error("capacity.yaml", with_line(15, "      capacity: 32KiB"), 15);
        CHECK_THAT(msg, Contains("'hbm'"));
        CHECK_THAT(msg, Contains("'l1'"));
    }
    SECTION("a data type with a peak but no MAC energy") {
        CHECK_THAT(device_error("energy.yaml", with_line(8, "    int8: 1pJ"), 7), Contains("'fp16'"));
    }
    SECTION("static power above TDP") {
        CHECK_THAT(device_error("power.yaml", with_line(18, "  static_power: 200W"), 18), Contains("TDP"));
    }
    SECTION("a family section that does not match the family") {
        std::string text = text_of(base_lines) + "  cpu:\n    cores: 4\n";
        CHECK_THAT(device_error("mismatch.yaml", text, 20), Contains("family"));
    }
    SECTION("duplicate memory level names") { device_error("dup.yaml", with_line(14, "    - name: l1"), 14); }
    SECTION("a level without a bandwidth, which its family does not derive") {
        // The base device is a GPU without a `gpu:` section: its L1 bandwidth cannot be derived.
        CHECK_THAT(device_error("no_l1_bw.yaml", without_line(12), 10),
                   Contains("memory level 'l1' needs `bandwidth`") && Contains("`gpu:` section"));
        CHECK_THAT(device_error("no_hbm_bw.yaml", without_line(16), 14),
                   Contains("memory level 'hbm' needs `bandwidth`"));
        // A CPU's cache level: refused as such before the CPU section reads it (it said "0 B/s" before).
        std::ifstream in(device_path("xeon-8380"));
        std::stringstream text;
        text << in.rdbuf();
        std::string cpu = text.str();
        const std::string l1d =
            "      bandwidth: 11.78TB/s    # (est.) 2 x 64 B loads/cycle x 40 x 2.3 GHz\n";
        const std::size_t at = cpu.find(l1d);
        REQUIRE(at != std::string::npos);
        cpu.erase(at, l1d.size());
        const std::string path = write_temp("no_l1d_bw.yaml", cpu);
        const std::string msg = error_of([&] { arch::load_device(path); });
        CHECK_THAT(msg, Contains("memory level 'l1d' needs `bandwidth`") && !Contains("0 B/s"));
    }
    SECTION("unknown top-level key, with a suggestion") {
        CHECK_THAT(device_error("top.yaml", with_line(1, "devcie:"), 1), Contains("did you mean 'device'"));
    }
    SECTION("a system file given where a device file is expected") {
        CHECK_THAT(device_error("sys_as_dev.yaml", "system:\n  name: x\n  device: a100\n", 1),
                   Contains("system file"));
    }
}

TEST_CASE("system presets load", "[arch][system]") {
    const arch::SystemSpec single = arch::load_system(system_path("a100-single"));
    CHECK(single.name == "a100-single");
    CHECK(single.device_count == 1);
    CHECK(single.device.name == "a100");

    const arch::SystemSpec dgx = arch::load_system(system_path("dgx-a100"));
    CHECK(dgx.name == "dgx-a100");
    CHECK(dgx.device_count == 8);
    CHECK(dgx.device.peak_for("fp16") == Approx(312e12).epsilon(0.001));

    const arch::SystemSpec orin = arch::load_system(system_path("orin-nano"));  // device given as a path
    CHECK(orin.device.name == "jetson-orin-nano");
    CHECK(orin.device.main_memory().bandwidth_Bps == Approx(68e9));
}

TEST_CASE("a device map in a system file is merged over the named preset", "[arch][system]") {
    const arch::SystemSpec s = arch::load_system(system_path("a100-hbm-2x"));
    CHECK(s.device.name == "a100-hbm-2x");
    CHECK(s.device.main_memory().bandwidth_Bps == Approx(2 * 2039e9));
    CHECK(s.device.peak_for("fp16") == Approx(312e12).epsilon(0.001));  // from the preset
    CHECK(s.device.tdp_W == Approx(400));
    CHECK(s.device.resolved.find("tdp")->loc().file.find("a100.yaml") != std::string::npos);
}

TEST_CASE("a resolved system reloads without the preset files", "[arch][system]") {
    for (const char* name : {"dgx-a100", "a100-hbm-2x", "orin-nano"}) {
        INFO(name);
        const arch::SystemSpec s = arch::load_system(system_path(name));
        const std::string text = cfg::to_yaml(s.resolved);
        CHECK(text.find("device:") != std::string::npos);
        const std::string copy = write_temp(std::string("resolved/") + name + ".yaml", text);
        const arch::SystemSpec again = arch::load_system(copy, {"/nonexistent"});
        CHECK(again.name == s.name);
        CHECK(again.device_count == s.device_count);
        CHECK(again.device.name == s.device.name);
        CHECK(again.device.peak_ops_per_s == s.device.peak_ops_per_s);
        CHECK(again.device.mac_energy_J == s.device.mac_energy_J);
        REQUIRE(again.device.memory.size() == s.device.memory.size());
        for (size_t i = 0; i < s.device.memory.size(); ++i) {
            CHECK(again.device.memory[i].bandwidth_Bps == s.device.memory[i].bandwidth_Bps);
            CHECK(again.device.memory[i].capacity_bytes == s.device.memory[i].capacity_bytes);
        }
        CHECK(cfg::to_yaml(again.resolved) == text);
    }
}

TEST_CASE("system files find presets by name in the given folders", "[arch][system]") {
    const std::string path =
        write_temp("elsewhere/sys.yaml", "system:\n  name: two\n  device: h100\n  count: 2\n");
    const arch::SystemSpec s = arch::load_system(path, {configs_dir + "/devices"});
    CHECK(s.device.name == "h100");
    CHECK(s.device_count == 2);
}

TEST_CASE("bad system files are UserErrors located at file:line", "[arch][system][errors]") {
    const std::vector<std::string> dirs = {configs_dir + "/devices"};
    auto system_error = [&](const std::string& name, const std::string& text, int line) {
        const std::string path = write_temp(name, text);
        std::string msg = error_of([&] { arch::load_system(path, dirs); });
        INFO(msg);
        CHECK_THAT(msg, Contains(path + ":" + std::to_string(line) + ":"));
        return msg;
    };
    SECTION("unknown preset, with a suggestion and the list") {
        const std::string msg = system_error("s1.yaml", "system:\n  name: x\n  device: a10\n", 3);
        CHECK_THAT(msg, Contains("did you mean 'a100'"));
        CHECK_THAT(msg, Contains("h100"));
    }
    SECTION("missing device file") {
        system_error("s2.yaml", "system:\n  name: x\n  device: ./nowhere.yaml\n", 3);
    }
    SECTION("zero devices") {
        system_error("s3.yaml", "system:\n  name: x\n  device: a100\n  count: 0\n", 4);
    }
    SECTION("no device at all") {
        CHECK_THAT(system_error("s4.yaml", "system:\n  name: x\n  count: 2\n", 1), Contains("device"));
    }
    SECTION("unknown key in system") {
        CHECK_THAT(system_error("s5.yaml", "system:\n  name: x\n  device: a100\n  cuont: 2\n", 4),
                   Contains("did you mean 'count'"));
    }
    SECTION("an override that breaks the merged device is located in the system file") {
        system_error("s6.yaml", "system:\n  name: x\n  device: a100\ndevice:\n  tdp: 0W\n", 5);
    }
    SECTION("a system file named as the device") {
        const std::string inner = write_temp("s7_inner.yaml", "system:\n  name: inner\n  device: a100\n");
        system_error("s7.yaml", "system:\n  name: x\n  device: " + inner + "\n", 3);
    }
}

TEST_CASE("the device schema describes every parameter for --help", "[arch][device]") {
    const std::string help = cfg::describe(arch::device_schema());
    for (const char* key :
         {"name", "family", "clock", "peak", "mac_energy", "memory", "capacity", "bandwidth", "read_energy",
          "static_power", "tdp", "op_overhead", "systolic", "gpu", "cpu", "mcu"})
        CHECK_THAT(help, Contains(key));
    CHECK_THAT(cfg::describe(arch::system_schema()), Contains("count"));
}
