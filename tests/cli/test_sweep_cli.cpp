// `mlsim sweep` as a user runs it: help text, dry run, summary, exit statuses.
#include <catch2/catch.hpp>
#include <filesystem>
#include <fstream>
#include <string>

#include "tests/cli/run_mlsim.h"

namespace fs = std::filesystem;

namespace {

using mlsim::test::contains;
using Output = mlsim::test::MlsimOutput;
using mlsim::test::run_mlsim;

const std::string k_src = MLSIM_SOURCE_DIR;

}  // namespace

TEST_CASE("mlsim sweep --help documents the sweep file keys from their declarations, with an example",
          "[sweep]") {
    const Output o = run_mlsim("sweep --help");
    CHECK(o.status == 0);
    for (const char* part : {"usage: mlsim sweep FILE", "--jobs", "--dry-run", "base", "factors", "zip",
                             "batch               integer >= 1",
                             "device.systolic.rows: [8, 16, 32, 64, 128, 256]", "sweep_factors"})
        CHECK(contains(o.text, part));
}

TEST_CASE("mlsim sweep --dry-run checks every point and lists them without running anything", "[sweep]") {
    const fs::path dir = fs::temp_directory_path() / "mlsim_test_sweep_cli";
    fs::remove_all(dir);
    const Output o = run_mlsim("sweep '" + k_src + "/configs/sweeps/smoke.yaml' --dry-run --db '" +
                               (dir / "x.db").string() + "'");
    CHECK(o.status == 0);
    CHECK(contains(o.text, "sweep 'smoke': 12 points (batch 2 x dtype 2 x device.memory[2].bandwidth 3)"));
    CHECK(contains(o.text, "   11  8      bf16   4TB/s"));
    CHECK_FALSE(fs::exists(dir / "x.db"));
}

TEST_CASE("mlsim sweep prints a summary and exits 0, and a bad sweep file exits 2 with its location",
          "[sweep]") {
    const fs::path dir = fs::temp_directory_path() / "mlsim_test_sweep_cli_run";
    fs::remove_all(dir);
    const std::string db = (dir / "s.db").string();
    const Output first =
        run_mlsim("sweep '" + k_src + "/configs/sweeps/smoke.yaml' --jobs 2 --db '" + db + "'");
    CHECK(first.status == 0);
    CHECK(contains(first.text, "done: 12 points in"));
    CHECK(contains(first.text, "12 run, 0 failed"));
    const Output again = run_mlsim("sweep '" + k_src + "/configs/sweeps/smoke.yaml' --db '" + db + "'");
    CHECK(contains(again.text, "0 run, 12 skipped (already in the database), 0 failed"));

    const std::string bad = k_src + "/tests/experiment/data/sweep_bad_zip.yaml";
    const Output b = run_mlsim("sweep '" + bad + "' --db '" + db + "'");
    CHECK(b.status == 2);
    CHECK(contains(b.text, bad + ":7:5: error: device.systolic.cols: zipped factors"));
    const Output j = run_mlsim("sweep '" + k_src + "/configs/sweeps/smoke.yaml' --jobs 0");
    CHECK(j.status == 2);
    const Output many = run_mlsim("sweep '" + k_src + "/configs/sweeps/smoke.yaml' --jobs 100000");
    CHECK(many.status == 2);
    CHECK(contains(many.text, "--jobs: must be from 1 to 1024"));
    fs::remove_all(dir);
}

TEST_CASE("a sweep's name is a plain file name: it names the default database results/<name>.db", "[sweep]") {
    const fs::path dir = fs::temp_directory_path() / "mlsim_test_sweep_name";
    fs::remove_all(dir);
    fs::create_directories(dir);
    for (const char* name : {"../escape", "/tmp/abs", "a/b", ".."}) {
        const fs::path file = dir / "named.yaml";
        std::ofstream(file) << "name: \"" << name
                            << "\"\nbase: {system: a100, model: mlp3}\nfactors: {batch: [1, 2]}\n";
        const Output o = run_mlsim("sweep '" + file.string() + "' --dry-run");
        INFO(name << ": " << o.text);
        CHECK(o.status == 2);
        CHECK(contains(o.text, file.string() + ":1:7: error: name: must be a plain file name"));
    }
    fs::remove_all(dir);
}

TEST_CASE("a model option no point can take is an error of the sweep file, found before anything runs",
          "[sweep]") {
    const std::filesystem::path dir =
        std::filesystem::temp_directory_path() / "mlsim_test_sweep_model_options";
    std::filesystem::remove_all(dir);
    std::filesystem::create_directories(dir);
    // resnet50 takes no sequence length; GPT-2 small none above 1024: a dry run said "all check out" and a
    // run recorded a failed run for every point. (Where some combination builds, the others' points fail as
    // recorded runs: `mixed.yaml`.)
    std::ofstream(dir / "base.yaml") << "name: b\nbase:\n  system: a100\n  model: resnet50\n  seq: 5\n"
                                        "factors:\n  batch: [1, 2]\n";
    std::ofstream(dir / "factor.yaml") << "name: f\nbase:\n  system: a100\n  model: gpt2-small-prefill\n"
                                          "factors:\n  seq: [2048, 4096]\n  batch: [1, 2]\n";
    std::ofstream(dir / "mixed.yaml") << "name: m\nbase:\n  system: a100\n  model: gpt2-small-prefill\n"
                                         "factors:\n  seq: [128, 2048]\n  batch: [1, 2]\n";
    const std::string db = (dir / "r.db").string();
    for (const char* flag : {" --dry-run", ""}) {
        const Output b = run_mlsim("sweep '" + (dir / "base.yaml").string() + "' --db '" + db + "'" + flag);
        INFO(b.text);
        CHECK(b.status == 2);
        CHECK(contains(b.text,
                       "base.yaml:5:3: error: base.seq: model 'resnet50': this model takes no sequence"));
        const Output f = run_mlsim("sweep '" + (dir / "factor.yaml").string() + "' --db '" + db + "'" + flag);
        INFO(f.text);
        CHECK(f.status == 2);
        CHECK(
            contains(f.text, "factor.yaml:6:3: error: factor seq: model 'gpt2-small-prefill': seq must be"));
        CHECK(contains(f.text, "(in sweep point 0 of 4: seq=2048, batch=1)"));
    }
    CHECK_FALSE(std::filesystem::exists(db));  // refused before the database was opened
    const Output m = run_mlsim("sweep '" + (dir / "mixed.yaml").string() + "' --db '" + db + "'");
    INFO(m.text);
    CHECK(m.status == 0);
    CHECK(contains(m.text, "2 run, 2 failed"));
    // Every point fails where it runs (a 2-rank plan on one A100): recorded, and the exit status says so
    // (it was 0, "0 run, 2 failed").
    std::ofstream(dir / "plan.yaml") << "name: p\nbase:\n  system: a100\n  model: resnet50\n"
                                        "  data-parallel: 2\nfactors:\n  batch: [2, 4]\n";
    const Output p = run_mlsim("sweep '" + (dir / "plan.yaml").string() + "' --db '" + db + "'");
    INFO(p.text);
    CHECK(p.status == 2);
    CHECK(contains(p.text, "0 run, 2 failed"));
    CHECK(contains(p.text, "plan.yaml: error: every point of the sweep failed"));
    std::filesystem::remove_all(dir);
}
