// The `device.systolic` section: its keys, its consistency checks (located user errors), the presets
// that carry it, and the factory that picks the systolic model for them.
#include <algorithm>
#include <catch2/catch.hpp>
#include <filesystem>
#include <map>
#include <string>

#include "arch/device_model.h"
#include "arch/family.h"
#include "arch/roofline/roofline.h"
#include "arch/systolic/scalesim_cfg.h"
#include "systolic_model_helpers.h"

using namespace mlsim;
using namespace mlsim::test;
using arch::systolic::Convention;
using arch::systolic::Dataflow;
using arch::systolic::Fidelity;
using Catch::Matchers::Contains;

namespace {

const std::string k_devices = std::string(MLSIM_SOURCE_DIR) + "/configs/devices/";

arch::DeviceSpec preset(const std::string& name) { return arch::load_device(k_devices + name + ".yaml"); }

std::string replace(std::string text, const std::string& from, const std::string& to) {
    const size_t at = text.find(from);
    REQUIRE(at != std::string::npos);
    return text.replace(at, from.size(), to);
}

}  // namespace

TEST_CASE("TPU v1's systolic section parses into its buffers, dataflow and passes", "[systolic]") {
    const arch::DeviceSpec v1 = preset("tpu-v1");
    REQUIRE((arch::systolic::spec_of(v1) != nullptr));
    const arch::systolic::SystolicSpec& s = *arch::systolic::spec_of(v1);
    CHECK(s.rows == 256);
    CHECK(s.cols == 256);
    CHECK(s.arrays == 1);
    CHECK(s.dataflow == Dataflow::ws);
    CHECK(s.fidelity == Fidelity::tile);
    CHECK(s.convention == Convention::faithful);
    CHECK(s.ifmap.name == "unified_buffer");
    CHECK(s.ifmap.capacity_bytes == Approx(24.0 * 1024 * 1024));
    CHECK(s.filter.name == "weight_fifo");
    CHECK(s.filter.capacity_bytes == Approx(256.0 * 1024));
    CHECK(s.ofmap.name == "accumulators");
    CHECK(s.ofmap.double_buffered);
    CHECK(s.ofmap.tile_capacity_bytes() == Approx(2.0 * 1024 * 1024));
    CHECK(s.passes_for("int8") == 1);
    CHECK(s.passes_for("int16") == 4);  // 16-bit operands at quarter speed
    CHECK(s.vector_throughput_ops == Approx(179.2e9));
    CHECK(s.pe_hop_energy_J == Approx(0.019e-12));
    // 32-bit accumulators: 4 bytes per partial sum for 8- and 16-bit operands.
    CHECK(s.accumulator_bits == 32);
    CHECK(s.accumulator_bytes(1) == 4);
    CHECK(s.accumulator_bytes(2) == 4);
}

TEST_CASE("Every systolic preset matches its array and gets the systolic model", "[systolic]") {
    for (const char* name :
         {"tpu-v1", "tpu-v4", "ethos-u55", "scalesim-google", "scalesim-scale", "scalesim-eyeriss"}) {
        INFO(name);
        const arch::DeviceSpec d = preset(name);
        REQUIRE((arch::systolic::spec_of(d) != nullptr));
        const double rate = static_cast<double>(arch::systolic::spec_of(d)->pes()) * 2 * d.clock_hz;
        for (const auto& [dtype, peak] : d.peak_ops_per_s) {
            const double full = rate / static_cast<double>(arch::systolic::spec_of(d)->passes_for(dtype));
            CHECK(peak >= full * (1 - 1e-12));
            CHECK(peak <= full * 1.01);
        }
        CHECK(arch::make_device_model(d)->model_name() == "systolic");
    }
    const arch::DeviceSpec v4 = preset("tpu-v4");
    CHECK(arch::systolic::spec_of(v4)->arrays == 8);
    CHECK(arch::systolic::spec_of(preset("scalesim-google"))->convention == Convention::scalesim);
    CHECK(arch::systolic::spec_of(preset("scalesim-scale"))->dataflow == Dataflow::os);
    // Row-stationary is not a dataflow of the model: Eyeriss itself stays a roofline device.
    CHECK_FALSE((arch::systolic::spec_of(preset("eyeriss")) != nullptr));
    CHECK(arch::make_device_model(preset("eyeriss"))->model_name() == "roofline");
    CHECK(arch::make_device_model(preset("a100"))->model_name() == "gpu");
}

TEST_CASE("The systolic family's run options override its section's fidelity and convention", "[systolic]") {
    // --fidelity / --convention are declared by the family as overrides of its section's keys.
    std::map<std::string, std::string> keys;
    for (const arch::FamilyOption& o : arch::find_family("systolic")->options) keys[o.flag] = o.key_path;
    CHECK(keys.at("fidelity") == "device.systolic.fidelity");
    CHECK(keys.at("convention") == "device.systolic.convention");
    // The model reads what the (overridden) section says.
    const arch::DeviceSpec d = with_fidelity(preset("scalesim-google"), Fidelity::cycle);
    arch::systolic::SystolicModel m(d);
    CHECK(m.systolic().fidelity == Fidelity::cycle);
    CHECK(m.systolic().convention == Convention::scalesim);
    CHECK(arch::systolic::parse_fidelity("cycle") == Fidelity::cycle);
    CHECK_FALSE(arch::systolic::parse_fidelity("rtl").has_value());
    CHECK(arch::systolic::parse_convention("scalesim") == Convention::scalesim);
    CHECK_FALSE(arch::systolic::parse_convention("timeloop").has_value());
}

TEST_CASE("Defaults fill the optional systolic keys, and long dataflow names are accepted", "[systolic]") {
    Toy t;
    t.dataflow = "output_stationary";
    const arch::DeviceSpec d = toy_device(t);
    CHECK(arch::systolic::spec_of(d)->dataflow == Dataflow::os);
    CHECK(arch::systolic::spec_of(d)->tiling == arch::systolic::Tiling::search);
    CHECK(arch::systolic::spec_of(d)->tile_m == 0);
    // One element per array column per cycle.
    CHECK(arch::systolic::spec_of(d)->vector_throughput_ops == Approx(4 * 1e9));
    CHECK(arch::systolic::spec_of(d)->filter.write_energy_J_per_byte == Approx(2e-12));
    // No accumulator width: partial sums are words of the layer's data type.
    CHECK(arch::systolic::spec_of(d)->accumulator_bits == 0);
    CHECK(arch::systolic::spec_of(d)->accumulator_bytes(1) == 1);
    CHECK(arch::systolic::spec_of(d)->accumulator_bytes(0.5) == 0.5);
    // Never narrower than the layer's word.
    Toy narrow;
    narrow.extra = "    accumulator_bits: 16\n";
    CHECK(arch::systolic::spec_of(toy_device(narrow))->accumulator_bytes(4) == 4);
    CHECK(arch::systolic::spec_of(toy_device(narrow))->accumulator_bytes(1) == 2);
    const cfg::Node* sys = d.section("systolic");
    REQUIRE(sys != nullptr);
    CHECK(sys->find("fidelity")->scalar() == "tile");
    CHECK(sys->find("convention")->scalar() == "faithful");
}

TEST_CASE("A peak that disagrees with the array is a user error at that peak, naming the expected rate",
          "[systolic]") {
    Toy t;  // 4 x 4 PEs x 2 x 1 GHz = 32 GOP/s
    const std::string good = t.yaml();
    // Above the array by more than 1 %.
    std::string msg =
        user_error_of([&] { device_from_text(replace(good, "int8: 32000000000OP/s", "int8: 33GOP/s")); });
    CHECK_THAT(msg, Contains("toy.yaml:5:") && Contains("device.peak.int8") &&
                        Contains("does not match the systolic array") && Contains("4 x 4 x 1 PEs") &&
                        Contains("the nearest is 32.00003GOP/s"));
    // Below what the array computes: the roofline would no longer bound the model.
    msg = user_error_of([&] { device_from_text(replace(good, "int8: 32000000000OP/s", "int8: 31.9GOP/s")); });
    CHECK_THAT(msg, Contains("device.peak.int8"));
    // A data type at an odd fraction of the rate.
    msg =
        user_error_of([&] { device_from_text(replace(good, "bf16: 8000000000FLOP/s", "bf16: 11TFLOP/s")); });
    CHECK_THAT(msg, Contains("device.peak.bf16") && Contains("its full rate"));
    msg =
        user_error_of([&] { device_from_text(replace(good, "bf16: 8000000000FLOP/s", "bf16: 11GFLOP/s")); });
    CHECK_THAT(msg, Contains("device.peak.bf16") && Contains("(1/3 rate)"));
    // Within 1 % above is fine.
    CHECK_NOTHROW(device_from_text(replace(good, "int8: 32000000000OP/s", "int8: 32.3GOP/s")));
}

TEST_CASE("Bad systolic sections are located user errors", "[systolic]") {
    Toy t;
    const std::string good = t.yaml();
    CHECK_THAT(user_error_of([&] { device_from_text(replace(good, "capacity: 1MiB", "capacity: 0B")); }),
               Contains("device.systolic.buffers.ifmap.capacity") && Contains("must be greater than 0"));
    CHECK_THAT(user_error_of(
                   [&] { device_from_text(replace(good, "double_buffered: true", "double_bufered: true")); }),
               Contains("did you mean 'double_buffered'?"));
    CHECK_THAT(user_error_of([&] { device_from_text(replace(good, "dataflow: ws", "dataflow: rs")); }),
               Contains("device.systolic.dataflow: expected one of: os, ws, is"));
    CHECK_THAT(user_error_of([&] { device_from_text(replace(good, "bandwidth: 1TB/s", "bandwidth: 1TB")); }),
               Contains("device.systolic.buffers.ifmap.bandwidth"));
    CHECK_THAT(
        user_error_of([&] {
            device_from_text(replace(good, "    dataflow: ws\n", "    dataflow: ws\n    fidelity: rtl\n"));
        }),
        Contains("expected one of: tile, cycle"));
    const std::string no_ofmap = good.substr(0, good.find("      ofmap:"));
    CHECK_THAT(user_error_of([&] { device_from_text(no_ofmap); }), Contains("missing required key 'ofmap'"));
    const std::string no_buffers = good.substr(0, good.find("    buffers:"));
    CHECK_THAT(user_error_of([&] { device_from_text(no_buffers); }),
               Contains("missing required key 'buffers'"));
    CHECK_THAT(user_error_of([&] { device_from_text(replace(good, "family: tpu", "family: gpu")); }),
               Contains("a `systolic:` section describes a tpu or npu device"));
}

TEST_CASE("The device schema documents the systolic keys for --help", "[systolic]") {
    const std::string help = cfg::describe(arch::device_schema());
    for (const char* key :
         {"rows", "cols", "arrays", "dataflow", "fidelity", "convention", "buffers", "ifmap", "filter",
          "ofmap", "double_buffered", "tiling", "tile", "vector_throughput", "pe_hop_energy"})
        CHECK_THAT(help, Contains(key));
}

namespace {

// SCALE-Sim's reference configs: shared/reference/scalesim/ when it is there, else the copies in
// tests/arch/data.
std::string reference_cfg(const std::string& name) {
    const std::string shared = std::string(MLSIM_SOURCE_DIR) + "/../shared/reference/scalesim/" + name;
    return std::filesystem::exists(shared) ? shared
                                           : std::string(MLSIM_SOURCE_DIR) + "/tests/arch/data/" + name;
}

// The power of every part of a one-data-type (int8) systolic device at its configured peak rate: every
// MAC each cycle, the vector unit at half a MAC an op, each buffer read and written at its bandwidth,
// main memory at its bandwidth, three words out of every PE each cycle (the streamed operand right, the
// other operand or a shadow load down, a partial sum or drained output down).
double every_part_at_peak_W(const arch::DeviceSpec& d) {
    const arch::systolic::SystolicSpec& s = *arch::systolic::spec_of(d);
    const double mac = d.mac_energy_for("int8");
    const double pes = static_cast<double>(s.pes());
    double buffers = 0;
    for (const arch::systolic::BufferSpec* b : {&s.ifmap, &s.filter, &s.ofmap})
        buffers += b->bandwidth_Bps * (b->read_energy_J_per_byte + b->write_energy_J_per_byte);
    const arch::MemoryLevel& mem = d.main_memory();
    return pes * d.clock_hz * mac + s.vector_throughput_ops * mac / 2 + buffers +
           mem.bandwidth_Bps * std::max(mem.read_energy_J_per_byte, mem.write_energy_J_per_byte) +
           3 * pes * d.clock_hz * s.pe_hop_energy_J;
}

// A preset that reproduces SCALE-Sim agrees with what the translator makes of its .cfg: the array, the
// buffers, main memory, every energy and the TDP, and the cycles of a layer.
void check_preset_is_translation(const std::string& preset_name, const std::string& cfg_name) {
    INFO(preset_name << " vs " << cfg_name);
    arch::DeviceSpec from_cfg = arch::systolic::load_scalesim_cfg(reference_cfg(cfg_name)).device;
    const arch::DeviceSpec p = preset(preset_name);
    REQUIRE((arch::systolic::spec_of(from_cfg) != nullptr));
    // A .cfg runs on mlsim's faithful count unless --convention scalesim asks; the preset exists to
    // reproduce SCALE-Sim and selects its convention. Everything else must agree.
    CHECK(arch::systolic::spec_of(from_cfg)->convention == arch::systolic::Convention::faithful);
    CHECK(arch::systolic::spec_of(p)->convention == arch::systolic::Convention::scalesim);
    from_cfg = with_systolic(from_cfg, [](arch::systolic::SystolicSpec& s) {
        s.convention = arch::systolic::Convention::scalesim;
    });
    const arch::systolic::SystolicSpec &a = *arch::systolic::spec_of(from_cfg),
                                       &b = *arch::systolic::spec_of(p);
    CHECK(a.rows == b.rows);
    CHECK(a.cols == b.cols);
    CHECK(a.dataflow == b.dataflow);
    CHECK(from_cfg.clock_hz == p.clock_hz);
    CHECK(from_cfg.peak_for("int8") == Approx(p.peak_for("int8")));
    CHECK(from_cfg.main_memory().bandwidth_Bps == Approx(p.main_memory().bandwidth_Bps));
    for (auto [x, y] :
         {std::pair{a.ifmap, b.ifmap}, std::pair{a.filter, b.filter}, std::pair{a.ofmap, b.ofmap}}) {
        CHECK(x.capacity_bytes == y.capacity_bytes);
        CHECK(x.bandwidth_Bps == Approx(y.bandwidth_Bps));
        CHECK(x.double_buffered == y.double_buffered);
        CHECK(x.read_energy_J_per_byte == Approx(y.read_energy_J_per_byte));
        CHECK(x.write_energy_J_per_byte == Approx(y.write_energy_J_per_byte));
    }
    CHECK(a.vector_throughput_ops == Approx(b.vector_throughput_ops));
    CHECK(a.pe_hop_energy_J == Approx(b.pe_hop_energy_J));
    CHECK(from_cfg.mac_energy_for("int8") == Approx(p.mac_energy_for("int8")));
    CHECK(from_cfg.main_memory().read_energy_J_per_byte == Approx(p.main_memory().read_energy_J_per_byte));
    CHECK(from_cfg.main_memory().write_energy_J_per_byte == Approx(p.main_memory().write_energy_J_per_byte));
    CHECK(from_cfg.static_power_W == p.static_power_W);
    CHECK(from_cfg.tdp_W == Approx(p.tdp_W).epsilon(1e-4));  // the preset writes it rounded
    // Same cycles and energy for a layer.
    const wl::Op op = conv(1, 16, 28, 28, 32, 3, 1, 1);
    const arch::LayerResult x = run_one(from_cfg, op), y = run_one(p, op);
    CHECK(x.cycles == y.cycles);
    CHECK(x.energy_j() == Approx(y.energy_j()));
}

}  // namespace

TEST_CASE("The scalesim-google preset is what SCALE-Sim's google.cfg translates into", "[systolic]") {
    check_preset_is_translation("scalesim-google", "google.cfg");
}

TEST_CASE("The scalesim-scale preset is what SCALE-Sim's scale.cfg translates into", "[systolic]") {
    check_preset_is_translation("scalesim-scale", "scale.cfg");
}

TEST_CASE("The SCALE-Sim presets' and .cfg translations' TDP is every part at its configured peak rate",
          "[systolic]") {
    // A TDP that leaves out a part every run is charged for (it was "every MAC busy at 0.3 pJ") lets
    // a correct run exceed it; one with every part at its peak rate is what no run can exceed unless
    // an energy or a rate is wrong.
    for (const char* name : {"scalesim-google", "scalesim-scale", "scalesim-eyeriss"}) {
        INFO(name);
        const arch::DeviceSpec d = preset(name);
        CHECK(d.tdp_W == Approx(every_part_at_peak_W(d)).epsilon(1e-3));  // the presets write it rounded
    }
    for (const char* name : {"google.cfg", "scale.cfg", "eyeriss.cfg"}) {
        INFO(name);
        const arch::DeviceSpec d = arch::systolic::load_scalesim_cfg(reference_cfg(name)).device;
        CHECK(d.tdp_W == Approx(every_part_at_peak_W(d)).epsilon(1e-9));
    }
    // The parts, as scalesim-google.yaml derives them: MACs, vector unit, buffers, HBM2, PE links.
    CHECK(preset("scalesim-google").tdp_W ==
          Approx(65536 * 0.3e-3 + 256 * 0.15e-3 + 2 * 768 * 12.5e-3 + 768 * 31.2e-3 + 3 * 65536 * 0.03e-3)
              .epsilon(1e-4));
}
