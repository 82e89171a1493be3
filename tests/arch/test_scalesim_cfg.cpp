// SCALE-Sim .cfg files read as mlsim systems.
#include <catch2/catch.hpp>
#include <filesystem>
#include <fstream>
#include <string>

#include "arch/systolic/scalesim_cfg.h"
#include "sim/config/error.h"

using namespace mlsim;
namespace fs = std::filesystem;

namespace {

const std::string k_ref = std::string(MLSIM_SOURCE_DIR) + "/../shared/reference/scalesim/";
const std::string k_data = std::string(MLSIM_SOURCE_DIR) + "/tests/arch/data/";

// `text` with the first `count` characters of the first `at` replaced by `with`; `at` must be there (the
// test's own mistake otherwise, found here rather than as a replacement at npos).
std::string replaced(const std::string& text, const std::string& at, std::size_t count,
                     const std::string& with) {
    const std::size_t pos = text.find(at);
    REQUIRE(pos != std::string::npos);
    return std::string(text).replace(pos, count, with);
}

std::string error_of(const std::string& text) {
    const fs::path p = fs::temp_directory_path() / "mlsim_bad_scalesim.cfg";
    std::ofstream(p) << text;
    try {
        arch::systolic::load_scalesim_cfg(p.string());
    } catch (const cfg::UserError& e) {
        return e.what();
    }
    return "no error";
}

const char* k_google = R"([general]
run_name = google

[architecture_presets]
ArrayHeight:    256
ArrayWidth:     256
IfmapSramSzkB:    6144
FilterSramSzkB:   6144
OfmapSramSzkB:    2048
IfmapOffset:    0
FilterOffset:   10000000
OfmapOffset:    20000000
Dataflow : ws
Bandwidth : 10
MemoryBanks: 1

[run_presets]
InterfaceBandwidth: CALC
)";

}  // namespace

TEST_CASE("SCALE-Sim's google.cfg becomes a 256x256 weight-stationary system with its SRAM sizes",
          "[scalesim]") {
    const std::string path = fs::exists(k_ref + "google.cfg") ? k_ref + "google.cfg" : k_data + "google.cfg";
    const arch::SystemSpec s = arch::systolic::load_scalesim_cfg(path);
    CHECK(s.device_count == 1);
    CHECK(s.device.family == "tpu");
    CHECK(s.device.peak_for("int8") == Approx(256.0 * 256 * 2 * 1e9));
    const cfg::Node* sys = s.device.section("systolic");
    REQUIRE(sys != nullptr);
    CHECK(sys->find("rows")->scalar() == "256");
    CHECK(sys->find("dataflow")->scalar() == "ws");
    CHECK(sys->find("convention")->scalar() == "faithful");  // unless --convention scalesim
    CHECK(sys->find("buffers")->find("ifmap")->find("capacity")->scalar() == "6144KiB");
    CHECK(sys->find("buffers")->find("ofmap")->find("capacity")->scalar() == "2048KiB");
}

TEST_CASE("Every SCALE-Sim reference config loads", "[scalesim]") {
    if (!fs::exists(k_ref)) return;  // the shared reference folder is outside the repository
    for (const char* name : {"google.cfg", "scale.cfg", "eyeriss.cfg"}) {
        INFO(name);
        CHECK_NOTHROW(arch::systolic::load_scalesim_cfg(k_ref + name));
    }
}

TEST_CASE("Bad SCALE-Sim configs are located user errors", "[scalesim]") {
    std::string text = k_google;
    CHECK_THAT(error_of(replaced(text, "ArrayWidth", 10, "ArrayWdth")),
               Catch::Contains("mlsim_bad_scalesim.cfg:6:1") && Catch::Contains("did you mean 'ArrayWidth'"));
    CHECK_THAT(error_of(replaced(text, "256\nArrayWidth", 3, "-4")),
               Catch::Contains(":5:17") && Catch::Contains("must be greater than 0"));
    CHECK_THAT(error_of(replaced(text, "Dataflow : ws", 13, "Dataflow : rs")),
               Catch::Contains("expected one of: os, ws, is"));
    CHECK_THAT(error_of(replaced(text, "[run_presets]", 13, "[run_preset]")),
               Catch::Contains("did you mean [run_presets]"));
    CHECK_THAT(error_of(replaced(text, "OfmapSramSzkB:    2048\n", 23, "")),
               Catch::Contains("missing required key 'OfmapSramSzkB'"));
    CHECK_THAT(error_of(replaced(text, "CALC", 4, "USR")), Catch::Contains("expected CALC or USER"));
    CHECK_THAT(error_of(replaced(text, "Bandwidth : 10", 14, "Bandwidth : -5")),
               Catch::Contains(":14:13") && Catch::Contains("must be greater than 0"));
}

TEST_CASE("A .cfg's main memory is LPDDR4 up to 204.8 GB/s and HBM2 above, by the bandwidth it implies",
          "[scalesim]") {
    // 204.8 GB/s: one 256-bit LPDDR5 bus at 6.4 Gb/s a pin. LPDDR4 8 pJ/bit, HBM2 3.9 pJ/bit.
    const double lpddr = 8 * 8e-12, hbm = 3.9 * 8e-12;
    const auto dram = [](const std::string& text) {
        const fs::path p = fs::temp_directory_path() / "mlsim_dram_class.cfg";
        std::ofstream(p) << text;
        return arch::systolic::load_scalesim_cfg(p.string()).device.main_memory();
    };
    const std::string user = replaced(k_google, "CALC", 4, "USER");
    const auto with_bandwidth = [&](int words) {
        return replaced(user, "Bandwidth : 10", 14, "Bandwidth : " + std::to_string(words));
    };
    CHECK(dram(with_bandwidth(10)).read_energy_J_per_byte == Approx(lpddr));
    CHECK(dram(with_bandwidth(204)).read_energy_J_per_byte == Approx(lpddr));
    CHECK(dram(with_bandwidth(205)).bandwidth_Bps == Approx(205e9));
    CHECK(dram(with_bandwidth(205)).read_energy_J_per_byte == Approx(hbm));
    CHECK(dram(with_bandwidth(205)).write_energy_J_per_byte == Approx(hbm));
    // CALC: the array edge's words per cycle. google.cfg 256 + 2 x 256 = 768 GB/s; scale.cfg 32 + 2 x 32 =
    // 96 GB/s; eyeriss.cfg 12 + 2 x 14 = 40 GB/s.
    CHECK(dram(k_google).read_energy_J_per_byte == Approx(hbm));
    for (const auto& [name, bandwidth] : {std::pair{"scale.cfg", 96e9}, std::pair{"eyeriss.cfg", 40e9}}) {
        INFO(name);
        const std::string path = fs::exists(k_ref + name) ? k_ref + name : k_data + name;
        const arch::MemoryLevel m = arch::systolic::load_scalesim_cfg(path).device.main_memory();
        CHECK(m.bandwidth_Bps == Approx(bandwidth));
        CHECK(m.read_energy_J_per_byte == Approx(lpddr));
    }
}

TEST_CASE("A .cfg's SRAM ports follow the dataflow: input stationary streams the filter along the rows",
          "[scalesim]") {
    // A 256 x 16 array. os and ws stream the ifmap from the left edge (256 rows) and feed the filter down
    // the 16 columns; is keeps the ifmap, loaded down the columns, and streams the filter from the left.
    // (The ports stayed ifmap = rows, filter = cols under is: the array waited on a 16-word filter port
    // feeding 256 rows, ResNet-18 3.4x slower than with the ports the other way round.)
    const auto ports = [&](const char* dataflow) {
        std::string text = replaced(k_google, "ArrayWidth:     256", 19, "ArrayWidth:     16");
        text = replaced(text, "Dataflow : ws", 13, std::string("Dataflow : ") + dataflow);
        const fs::path p = fs::temp_directory_path() / "mlsim_ports_scalesim.cfg";
        std::ofstream(p) << text;
        const arch::SystemSpec s = arch::systolic::load_scalesim_cfg(p.string());
        const cfg::Node* b = s.device.section("systolic")->find("buffers");
        return std::pair{b->find("ifmap")->find("bandwidth")->scalar(),
                         b->find("filter")->find("bandwidth")->scalar()};
    };
    CHECK(ports("os") == std::pair<std::string, std::string>{"256GB/s", "16GB/s"});
    CHECK(ports("ws") == std::pair<std::string, std::string>{"256GB/s", "16GB/s"});
    CHECK(ports("is") == std::pair<std::string, std::string>{"16GB/s", "256GB/s"});
}
