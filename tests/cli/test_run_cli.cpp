// `mlsim run`, `validate`, `list` and `demo` as a user runs them: options, help and exit statuses.
#include <catch2/catch.hpp>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>
#include <utility>
#include <vector>

#include "tests/cli/run_mlsim.h"
#include "tests/experiment/query.h"

namespace {

using mlsim::test::contains;
using MlsimOutput = mlsim::test::MlsimOutput;
using Output = mlsim::test::MlsimOutput;
using mlsim::test::run_mlsim;

}  // namespace

TEST_CASE("mlsim run --dtype int16 runs on the TPU v1, which declares an int16 peak", "[run]") {
    const Output o = run_mlsim("run --system tpu-v1 --model mlp3 --dtype int16 --quiet");
    CHECK(o.status == 0);
    CHECK(contains(o.text, "mlp3 on tpu-v1 (5 layers, batch 1, int16, inference)"));
    CHECK(contains(o.text, "of peak 22.9 TFLOP/s"));
}

TEST_CASE("mlsim run --help is generated from the run-option table", "[run]") {
    const Output o = run_mlsim("run --help");
    CHECK(o.status == 0);
    // boost wraps the help at 80 columns: compare with runs of white space as one space.
    std::string text;
    for (char c : o.text) {
        const bool space = c == ' ' || c == '\n';
        if (!(space && !text.empty() && text.back() == ' ')) text += space ? ' ' : c;
    }
    for (const char* part :
         {"-t [ --dtype ] arg data type; default fp32, else the device's first floating-point type, else its "
          "fastest integer type "
          "[fp64 | fp32 | tf32 | bf16 | fp16 | fp8 | int16 | int8 | int4]",
          "-b [ --batch ] arg (=1) batch size", "--mode arg (=inference)", "--checkpointing training:",
          "[tile | cycle | wave | block | closed | trace] (sets device.systolic.fidelity | "
          "device.gpu.fidelity | "
          "device.cpu.fidelity)",
          "(sets device.systolic.convention)", "--db arg", "-q [ --quiet ]"})
        CHECK(contains(text, part));
}

TEST_CASE("mlsim run reads option values as the sweep file does: a bad integer is a located user error",
          "[run]") {
    const Output o = run_mlsim("run --system a100 --model mlp3 --batch many");
    CHECK(o.status == 2);
    CHECK(contains(o.text, "<command line>: error: --batch: expected an integer, found \"many\""));
    const Output f = run_mlsim("run --system eyeriss --model mlp3 --fidelity cycle");
    CHECK(f.status == 2);
    CHECK(contains(f.text,
                   "<command line>: error: --fidelity: device 'eyeriss' has none of the sections it sets"));
    // Shared with the GPU family: a GPU device takes the GPU's choices, and rejects the systolic ones.
    const Output g = run_mlsim("run --system a100 --model mlp3 --fidelity cycle");
    CHECK(g.status == 2);
    CHECK(contains(g.text, "<command line>: error: device.gpu.fidelity: expected one of: wave, block"));
    // And with the CPU family: a CPU device takes closed | trace.
    const Output c = run_mlsim("run --system orin-cpu --model mlp3 --fidelity wave");
    CHECK(c.status == 2);
    CHECK(contains(c.text, "<command line>: error: device.cpu.fidelity: expected one of: closed, trace"));
    const Output t = run_mlsim("run --system orin-cpu --model mlp3 --fidelity trace");
    CHECK(t.status == 0);
}

TEST_CASE("No parser guesses an abbreviated option: each rejects it, names it and suggests the real one",
          "[run]") {
    const Output run = run_mlsim("run --system a100 --model mlp3 --dtyp fp16");
    CHECK(run.status == 2);
    CHECK(contains(run.text, "mlsim run: error: unrecognised option '--dtyp'; did you mean '--dtype'?"));
    CHECK_FALSE(contains(run.text, "mlp3 on a100"));
    // Built by appending: GCC 12 misreports -Wrestrict on operator+ of a literal and a string here.
    std::string sweep_dry = "sweep '";
    sweep_dry += MLSIM_SOURCE_DIR;
    sweep_dry += "/configs/sweeps/smoke.yaml' --dry";
    for (const auto& [args, message] : std::vector<std::pair<std::string, std::string>>{
             {sweep_dry, "mlsim sweep: error: unrecognised option '--dry'; did you mean '--dry-run'?"},
             {"validate --hel", "mlsim validate: error: unrecognised option '--hel'; did you mean '--help'?"},
             {"list devices --hel", "mlsim list: error: unrecognised option '--hel'; did you mean '--help'?"},
             {"demo --d /tmp/mlsim_test_never.db",
              "mlsim demo: error: unrecognised option '--d'; did you mean '--db'?"}}) {
        const Output o = run_mlsim(args);
        INFO(args);
        CHECK(o.status == 2);
        CHECK(contains(o.text, message));
    }
}

TEST_CASE("mlsim validate takes a device preset name, as --system does", "[run]") {
    const Output ok = run_mlsim("validate a100 tpu-v1");
    CHECK(ok.status == 0);
    CHECK(contains(ok.text, "a100: ok (preset "));
    CHECK(contains(ok.text, "system 'a100': 1 x a100)"));
    CHECK(contains(ok.text, "tpu-v1: ok (preset "));
    const Output bad = run_mlsim("validate a1000");
    CHECK(bad.status == 2);
    CHECK(contains(bad.text, "a1000: error: no such file or preset 'a1000'; did you mean 'a100'?"));
}

TEST_CASE(
    "mlsim run refuses a parallel step of too many micro-batches up front, not by running out of memory",
    "[run]") {
    // 100,000 micro-batches of GPT-2 small on 8 stages: 1.63e7 task instances, ~13.6 GB of engine state.
    const Output o = run_mlsim(
        "run -s dgx-a100-node -m gpt2-small-prefill --pipeline-parallel 8 --microbatches 100000 -b 100000 "
        "-q");
    INFO(o.text);
    CHECK(o.status == 2);
    CHECK(contains(o.text, "<command line>: error: the parallel step would track 1.63e+07 task instances"));
    CHECK(contains(o.text, "use fewer micro-batches or pipeline stages"));
    // Data parallel, rank 0 alone simulated: its instances also record a layer row each (~5.2 KB). 8,192
    // micro-batches of 414 tasks once took 17 GB and two minutes; 512 of them 1.1 GB.
    const Output dp = run_mlsim(
        "run -s dgx-a100 -m gpt2-small-prefill -t fp16 --seq 16 --mode training --data-parallel 8 -b 65536 "
        "--microbatches 8192 -q");
    INFO(dp.text);
    CHECK(dp.status == 2);
    CHECK(contains(dp.text,
                   "the parallel step would track 3.39e+06 task instances (1 simulated rank(s) x 8192"));
}

TEST_CASE("On a system of several device types each rank's memory is its own device's", "[run]") {
    const std::filesystem::path dir = std::filesystem::temp_directory_path() / "mlsim_test_mixed_ranks";
    std::filesystem::remove_all(dir);
    std::filesystem::create_directories(dir);
    // An H100 (the default type) and an 8 GB Jetson: a Llama-3-8B replica fits the first, not the second.
    std::ofstream(dir / "h100_jetson.yaml")
        << "system:\n  name: h100-jetson\n  device: h100\n  nodes:\n    - {name: a, devices: 1}\n"
           "    - {name: b, devices: 1, device: jetson-orin-nano}\n  links:\n"
           "    - {from: a.0, to: b.0, bandwidth: 10GB/s}\n";
    const Output dp =
        run_mlsim("run -q --system '" + (dir / "h100_jetson.yaml").string() +
                  "' --model llama3-8b-prefill --seq 512 --dtype fp16 --batch 2 --data-parallel 2");
    INFO(dp.text);
    CHECK(dp.status == 2);
    CHECK(contains(dp.text, "rank 1 (pipeline stage 0 of 1, layers 0-31) needs 16.2 GB"));
    CHECK(contains(dp.text, "its device 'jetson-orin-nano'"));
    // A Jetson (the default type), an H100 and a Xeon with 256 GiB: DLRM's largest table fits the Xeon.
    std::ofstream(dir / "jetson_h100_xeon.yaml")
        << "system:\n  name: mixed3\n  device: jetson-orin-nano\n  nodes:\n    - {name: a, devices: 1}\n"
           "    - {name: b, devices: 1, device: h100}\n    - {name: c, devices: 1, device: xeon-8380}\n"
           "  switches:\n    - {name: sw}\n  links:\n    - {from: a.*, to: sw, bandwidth: 10GB/s}\n"
           "    - {from: b.*, to: sw, bandwidth: 10GB/s}\n    - {from: c.*, to: sw, bandwidth: 10GB/s}\n";
    std::ofstream(dir / "on_xeon.yaml")
        << "embedding_sharding:\n  default: auto\n  tables:\n    emb.0: {kind: table, rank: 2}\n";
    const Output es = run_mlsim("run -q --system '" + (dir / "jetson_h100_xeon.yaml").string() +
                                "' --model dlrm-mlperf --batch 2046 --embedding-sharding '" +
                                (dir / "on_xeon.yaml").string() + "'");
    INFO(es.text);
    CHECK(es.status == 0);
    // Its power is within the three devices' summed TDP: no warning against the Jetson's 15 W alone.
    const Output train =
        run_mlsim("run -q --system '" + (dir / "jetson_h100_xeon.yaml").string() +
                  "' --model gpt2-small-prefill --mode training --batch 6 --data-parallel 3");
    INFO(train.text);
    CHECK(train.status == 0);
    CHECK_FALSE(contains(train.text, "exceeds"));
    std::filesystem::remove_all(dir);
}

TEST_CASE("mlsim run refuses sharded embedding tables over more than 512 ranks, not by running out of memory",
          "[run]") {
    // 768 ranks went past 6 GB and ended in bad_alloc; 1,024 would take ~15 GB.
    const Output o = run_mlsim(
        "run -q --system superpod-h100-1024 --model dlrm-mlperf --batch 131072 --embedding-sharding table "
        "--dtype "
        "bf16");
    INFO(o.text);
    CHECK(o.status == 2);
    CHECK(contains(o.text, "--embedding-sharding: 1024 ranks"));
    CHECK(contains(o.text, "at most 512 ranks"));
}

TEST_CASE("mlsim validate checks a compare file as mlsim compare loads it", "[run]") {
    const std::string file = std::string(MLSIM_SOURCE_DIR) + "/configs/compare/default.yaml";
    const Output ok = run_mlsim("validate '" + file + "'");
    INFO(ok.text);
    CHECK(ok.status == 0);
    CHECK(contains(ok.text, "default.yaml: ok (compare study '"));
    CHECK(contains(ok.text, " pairs)"));
}

TEST_CASE("mlsim validate plans a GEMM with a GPU's fixed tile in each of its data types", "[run]") {
    // A tile that fits no SM in any type said "ok", and every run was refused; one that misses some types
    // is noted.
    std::ifstream in(std::string(MLSIM_SOURCE_DIR) + "/configs/devices/a100.yaml");
    std::stringstream text;
    text << in.rdbuf();
    const std::string yaml = text.str();
    const std::size_t gpu = yaml.find("\n  gpu:");
    REQUIRE(gpu != std::string::npos);
    const std::size_t eol = yaml.find('\n', gpu + 1) + 1;
    const std::filesystem::path dir = std::filesystem::temp_directory_path() / "mlsim_test_validate_tile";
    std::filesystem::create_directories(dir);
    const auto with_tile = [&](const char* name, const char* tile) {
        std::string t = yaml;
        t.insert(eol, std::string("    tile: ") + tile + "\n");
        std::ofstream((dir / name).string()) << t;
        return run_mlsim("validate '" + (dir / name).string() + "'");
    };
    const Output none = with_tile("big.yaml", "{bm: 1024, bn: 1024, bk: 256, stages: 8}");
    INFO(none.text);
    CHECK(none.status == 2);
    CHECK(contains(none.text, "big.yaml:"));
    CHECK(contains(none.text, "device.gpu.tile"));
    const Output some = with_tile("some.yaml", "{bm: 128, bn: 128, bk: 64, stages: 4}");
    INFO(some.text);
    CHECK(some.status == 0);
    CHECK(contains(some.text, "fixed gpu.tile fits no SM in fp32"));
    std::filesystem::remove_all(dir);
}

TEST_CASE("mlsim run --layer-rows none saves the run without its layer rows", "[run]") {
    const std::string db = (std::filesystem::temp_directory_path() / "mlsim_test_run_layer_rows.db").string();
    std::filesystem::remove(db);
    const MlsimOutput out =
        run_mlsim("run --system a100 --model resnet50 --layer-rows none --db '" + db + "'");
    INFO(out.text);
    CHECK(out.status == 0);
    CHECK(contains(out.text, "saved   run 1"));
    // The run's row with its 175 layers counted, none of them in the file.
    CHECK(mlsim::test::query(db, "SELECT layer_count, total_time_s > 0 FROM runs") ==
          std::vector<std::string>{"175|1|"});
    CHECK(mlsim::test::query(db, "SELECT COUNT(*) FROM layers") == std::vector<std::string>{"0|"});
    const MlsimOutput bad = run_mlsim("run --system a100 --model resnet50 --layer-rows some");
    CHECK(bad.status == 2);
    CHECK(contains(bad.text, "--layer-rows"));
    std::filesystem::remove(db);
}

TEST_CASE("a parallel run's link energy does not count against its devices' TDP", "[run]") {
    const std::filesystem::path dir = std::filesystem::temp_directory_path() / "mlsim_test_link_energy_tdp";
    std::filesystem::remove_all(dir);
    std::filesystem::create_directories(dir);
    // Two A100s joined by a link that spends 50 nJ a bit (far beyond real links, on purpose): the step's
    // average power is kilowatts, nearly all in the link, while the devices stay within their 800 W.
    std::ofstream(dir / "hot_links.yaml")
        << "system:\n  name: hot-links\n  device: a100\n  nodes:\n    - {name: g, devices: 2}\n  links:\n"
           "    - {from: g.0, to: g.1, bandwidth: 25GB/s, energy: 50000pJ/b}\n";
    const std::string db = (dir / "r.db").string();
    const Output out = run_mlsim("run -q --system '" + (dir / "hot_links.yaml").string() +
                                 "' --model gpt2-small-prefill --mode training --batch 4 --seq 128 "
                                 "--data-parallel 2 --db '" +
                                 db + "'");
    INFO(out.text);
    CHECK(out.status == 0);
    CHECK(contains(out.text, "kW)"));  // the whole step's power, links included
    CHECK_FALSE(contains(out.text, "exceeds"));
    // The database says the same: the run's power above the TDP, but not over it.
    CHECK(mlsim::test::query(db, "SELECT average_power_w > tdp_w, over_tdp FROM runs") ==
          std::vector<std::string>{"1|0|"});
    std::filesystem::remove_all(dir);
}
