// `mlsim list devices` and the device-model choice as a user sees them.
#include <catch2/catch.hpp>
#include <filesystem>
#include <sstream>
#include <string>
#include <vector>

#include "tests/cli/run_mlsim.h"
#include "tests/experiment/query.h"

using Catch::Matchers::Contains;
using mlsim::test::run_mlsim;

namespace {

std::vector<std::string> lines_of(const std::string& text) {
    std::vector<std::string> out;
    std::istringstream in(text);
    for (std::string line; std::getline(in, line);) out.push_back(line);
    return out;
}

}  // namespace

TEST_CASE("mlsim list devices shows each preset's family and model in aligned columns") {
    const auto out = run_mlsim("list devices");
    REQUIRE(out.status == 0);
    const std::vector<std::string> lines = lines_of(out.text);
    REQUIRE(lines.size() > 10);
    const std::string& header = lines.front();
    const size_t family_col = header.find("family"), model_col = header.find("model");
    REQUIRE(family_col != std::string::npos);
    REQUIRE(model_col != std::string::npos);
    bool saw_tpu = false, saw_a100 = false;
    for (size_t i = 1; i < lines.size(); ++i) {
        INFO(lines[i]);
        // Every row's family and model start under their headers.
        CHECK(lines[i].at(family_col - 1) == ' ');
        CHECK(lines[i].at(family_col) != ' ');
        CHECK(lines[i].at(model_col - 1) == ' ');
        CHECK(lines[i].at(model_col) != ' ');
        if (lines[i].rfind("tpu-v1 ", 0) == 0) {
            saw_tpu = true;
            CHECK(lines[i].substr(family_col, 3) == "tpu");
            CHECK(lines[i].substr(model_col, 8) == "systolic");
        }
        if (lines[i].rfind("a100 ", 0) == 0) {
            saw_a100 = true;
            CHECK(lines[i].substr(family_col, 3) == "gpu");
            CHECK(lines[i].substr(model_col, 3) == "gpu");
        }
    }
    CHECK(saw_tpu);
    CHECK(saw_a100);
}

TEST_CASE("The run summary splits the time into compute, memory and overhead and names the bound") {
    const auto out = run_mlsim("run --system a100 --model resnet50 --dtype fp16 -q");
    REQUIRE(out.status == 0);
    CHECK_THAT(out.text, Contains("overhead bound"));
    CHECK_THAT(out.text, Contains("compute "));
    const auto tpu = run_mlsim("run --system tpu-v1 --model lenet5 --dtype int8 -q");
    REQUIRE(tpu.status == 0);
    // The systolic family's own summary line.
    CHECK_THAT(tpu.text, Contains("systolic model; stalls"));
}

TEST_CASE("A run whose average power exceeds the device's TDP is reported and marked in the database") {
    namespace fs = std::filesystem;
    const fs::path db = fs::temp_directory_path() / "mlsim_test_over_tdp.db";
    fs::remove(db);
    const std::string device = std::string(MLSIM_SOURCE_DIR) + "/tests/cli/data/over-tdp.yaml";
    const auto hot =
        run_mlsim("run --system '" + device + "' --model mlp3 --dtype int8 -q --db '" + db.string() + "'");
    REQUIRE(hot.status == 0);
    CHECK_THAT(hot.text, Contains("warning: average power"));
    CHECK_THAT(hot.text, Contains("exceeds over-tdp's TDP 10 W"));
    const auto cool = run_mlsim("run --system a100 --model mlp3 --dtype int8 -q --db '" + db.string() + "'");
    REQUIRE(cool.status == 0);
    CHECK_THAT(cool.text, !Contains("warning: average power"));
    CHECK(mlsim::test::query(db.string(),
                             "SELECT device, over_tdp, average_power_w > tdp_w FROM runs ORDER BY run_id") ==
          std::vector<std::string>{"over-tdp|1|1|", "a100|0|0|"});
    fs::remove(db);
}
