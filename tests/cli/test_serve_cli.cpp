// `mlsim serve` as a user sees it: figures at a human scale, and flags a trace replaces refused.
#include <catch2/catch.hpp>
#include <filesystem>
#include <fstream>
#include <regex>
#include <string>

#include "tests/cli/run_mlsim.h"

using mlsim::test::contains;
using mlsim::test::run_mlsim;
namespace fs = std::filesystem;

TEST_CASE("mlsim serve prints short runs' figures at a human scale, never as zero", "[serve]") {
    const fs::path dir = fs::temp_directory_path() / "mlsim_test_serve_cli";
    fs::remove_all(dir);
    fs::create_directories(dir);
    // Two short GPT-2 requests on an A100: the whole run takes a few milliseconds and the KV cache holds
    // a few thousandths of a percent, which "0.00 s" and "0.0 %" hid.
    std::ofstream(dir / "t.csv") << "arrival_s,prompt_tokens,output_tokens\n0,16,4\n0.001,16,4\n";
    const auto out = run_mlsim("serve --model gpt2 --trace '" + (dir / "t.csv").string() + "'");
    INFO(out.text);
    REQUIRE(out.status == 0);
    CHECK(std::regex_search(out.text, std::regex(R"(TTFT +mean [0-9.]+ (µs|ms))")));
    CHECK(std::regex_search(out.text, std::regex(R"(latency +mean [0-9.]+ ms)")));
    CHECK(std::regex_search(out.text, std::regex(R"(requests/s over [0-9.]+ ms)")));
    CHECK(std::regex_search(out.text,
                            std::regex(R"(occupancy mean 0\.00[1-9][0-9]* %, max 0\.00[1-9][0-9]* %)")));
    CHECK(std::regex_search(out.text, std::regex(R"(energy +[0-9.]+ mJ per output token \([0-9.]+ mJ)")));
    CHECK_FALSE(contains(out.text, " 0.00 s"));
    CHECK_FALSE(contains(out.text, "e-0"));  // no exponent notation
    fs::remove_all(dir);
}

TEST_CASE("mlsim serve refuses a flag its --trace replaces instead of ignoring it", "[serve]") {
    const fs::path dir = fs::temp_directory_path() / "mlsim_test_serve_trace";
    fs::remove_all(dir);
    fs::create_directories(dir);
    std::ofstream(dir / "t.csv") << "arrival_s,prompt_tokens,output_tokens\n0,16,4\n";
    for (const std::string flag : {"--rate 50", "--requests 10", "--prompt 64", "--output 8", "--seed 3"}) {
        const auto out = run_mlsim("serve --model gpt2 --trace '" + (dir / "t.csv").string() + "' " + flag);
        INFO(flag << "\n" << out.text);
        CHECK(out.status == 2);
        CHECK(contains(out.text,
                       "<command line>: error: " + flag.substr(0, flag.find(' ')) + ": not with --trace"));
    }
    fs::remove_all(dir);
}
