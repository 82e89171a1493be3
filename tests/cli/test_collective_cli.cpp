// `mlsim collective` as a user sees it: an nccl-tests-style table, the database rows, located errors.
#include <catch2/catch.hpp>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include "tests/cli/run_mlsim.h"
#include "tests/experiment/query.h"

using mlsim::test::contains;
using mlsim::test::run_mlsim;
namespace fs = std::filesystem;

namespace {

// The data rows of the table: size, count, type, redop, root, time (us), algbw, busbw, algorithm, protocol.
struct Row {
    double size = 0, count = 0, time_us = 0, algbw = 0, busbw = 0;
    std::string algorithm;
};

std::vector<Row> rows_of(const std::string& text) {
    std::vector<Row> out;
    std::istringstream in(text);
    for (std::string line; std::getline(in, line);) {
        if (line.empty() || line[0] == '#') continue;
        std::istringstream l(line);
        Row r;
        std::string type, redop, root, proto;
        l >> r.size >> r.count >> type >> redop >> root >> r.time_us >> r.algbw >> r.busbw >> r.algorithm >>
            proto;
        if (l) out.push_back(r);
    }
    return out;
}

}  // namespace

TEST_CASE("mlsim collective prints nccl-tests' columns, sizes doubling, busbw = algbw x 2(n-1)/n") {
    const auto out = run_mlsim("collective --system dgx-h100 --op all-reduce --sizes 8B:1MiB");
    INFO(out.text);
    REQUIRE(out.status == 0);
    CHECK(contains(out.text, "size"));
    CHECK(contains(out.text, "(elements)"));
    CHECK(contains(out.text, "algbw"));
    CHECK(contains(out.text, "busbw"));
    const auto rows = rows_of(out.text);
    REQUIRE(rows.size() == 18);  // 8 B .. 1 MiB by x2
    for (std::size_t i = 0; i < rows.size(); ++i) {
        CHECK(rows[i].size == 8 * std::pow(2.0, static_cast<double>(i)));
        CHECK(rows[i].count == rows[i].size / 4);  // fp32 elements
        // both columns are printed to 0.01: busbw's rounding (0.005) plus algbw's (0.005) x 1.75
        CHECK(rows[i].busbw == Approx(rows[i].algbw * 2 * 7 / 8).margin(0.005 + 0.005 * 1.75 + 1e-9));
        if (i > 0) CHECK(rows[i].time_us >= rows[i - 1].time_us);  // more bytes never take less time
    }
}

TEST_CASE("mlsim collective: a host node of the default type takes no part in the group") {
    // Two A100s that run, and a third of the same type marked as the host: a 2-rank all-reduce, whose bus
    // bandwidth factor is 2 (2 - 1) / 2 = 1.
    const fs::path dir = fs::temp_directory_path() / "mlsim_collective_host";
    fs::create_directories(dir);
    const fs::path sys = dir / "host3.yaml";
    std::ofstream(sys)
        << "system:\n  name: host3\n  device: a100\n  nodes:\n"
           "    - {name: a, devices: 2}\n    - {name: h, devices: 1, host: true}\n"
           "  switches:\n    - {name: sw}\n  links:\n"
           "    - {from: a.*, to: sw, bandwidth: 10GB/s}\n    - {from: h.*, to: sw, bandwidth: 10GB/s}\n";
    const auto out = run_mlsim("collective --system " + sys.string() + " --op all-reduce --sizes 1MiB:1MiB");
    INFO(out.text);
    REQUIRE(out.status == 0);
    CHECK(contains(out.text, ", 2 ranks,"));
    const auto rows = rows_of(out.text);
    REQUIRE(rows.size() == 1);
    CHECK(rows[0].busbw == Approx(rows[0].algbw).margin(0.011));
    fs::remove_all(dir);
}

TEST_CASE("mlsim collective writes a run with its collectives and busiest links") {
    const fs::path db = fs::temp_directory_path() / "mlsim_test_collective.db";
    fs::remove(db);
    const auto out = run_mlsim(
        "collective --system dgx-a100 --op all-gather --sizes 1KiB:1MiB --step 4 --algorithm ring --db '" +
        db.string() + "'");
    INFO(out.text);
    REQUIRE(out.status == 0);
    const auto rows = mlsim::test::query(
        db.string(),
        "SELECT kind, algorithm, ranks, bytes, time_s > 0, abs(algbw_GBps - bytes / time_s / 1e9) < 1e-9, "
        "abs(busbw_GBps - algbw_GBps * 7.0 / 8) < 1e-9, end_s >= start_s FROM collectives ORDER BY idx");
    REQUIRE(rows.size() == 6);
    CHECK(rows[0] == "all_gather|ring|8|1024|1|1|1|1|");
    CHECK(rows[5] == "all_gather|ring|8|1048576|1|1|1|1|");
    const auto runs = mlsim::test::query(db.string(), "SELECT status, mode, system FROM runs");
    REQUIRE(runs.size() == 1);
    CHECK(runs[0] == "ok|collective|dgx-a100|");
    const auto links = mlsim::test::query(
        db.string(), "SELECT COUNT(*), MAX(utilization) <= 1, MIN(bytes) > 0 FROM link_utilization");
    CHECK(links[0] == "16|1|1|");
    fs::remove(db);
}

TEST_CASE("mlsim collective: bad input is a located user error (exit 2)") {
    struct Bad {
        const char* args;
        const char* says;
    };
    for (const Bad& b :
         {Bad{"collective --system dgx-h100 --op allreduse", "did you mean 'all_reduce'"},
          Bad{"collective --system dgx-h100 --sizes 8GB:8B", "--sizes"},
          Bad{"collective --system dgx-h100 --sizes 8", "--sizes"},
          Bad{"collective --system dgx-h100 --sizes 8:16", "--sizes"},
          Bad{"collective --system dgx-h100 --step 1", "--step"},
          Bad{"collective --system dgx-h100 --algorithm butterfly", "--algorithm"},
          Bad{"collective --system dgx-h100 --fidelity cycle", "--fidelity"},
          Bad{"collective --system dgx-h100 --op all-to-all --algorithm ring", "supported: direct"},
          Bad{"collective --system a100-single", "no network"},
          // More rows than it prints (it stopped at 200 without a word), or a size below one element.
          Bad{"collective --system dgx-h100 --sizes 8B:1GB --step 1.05", "make 383 rows, more than 200"},
          Bad{"collective --system dgx-h100 --sizes 1B:1B", "less than one fp32 element"},
          // A rank's buffer lives in its device's memory (1000 TB by the tree ran 76 s).
          Bad{"collective --system dgx-h100 --sizes 2TB:2TB", "a size from 1B to 1TB"},
          // Its own reason, not the LL protocols' (it said "NVLS runs with the Simple protocol only").
          Bad{"collective --system dgx-a100 --sizes 8B:8B --algorithm nvls",
              "no switch with in_network_reduction"},
          Bad{"collective --system no-such-system", "--system"}}) {
        const auto out = run_mlsim(b.args);
        INFO(b.args << "\n" << out.text);
        CHECK(out.status == 2);
        CHECK(contains(out.text, b.says));
        CHECK(contains(out.text, "error"));
    }
}

TEST_CASE("mlsim collective --fidelity packet agrees with the flow model on a DGX") {
    const auto flow = rows_of(run_mlsim("collective --system dgx-a100 --op all-reduce --algorithm ring "
                                        "--protocol simple --sizes 4MiB:4MiB")
                                  .text);
    const auto pkt =
        rows_of(run_mlsim("collective --system dgx-a100 --op all-reduce --algorithm ring --protocol simple "
                          "--sizes 4MiB:4MiB --fidelity packet --packet-size 4KiB")
                    .text);
    REQUIRE(flow.size() == 1);
    REQUIRE(pkt.size() == 1);
    CHECK(pkt[0].time_us >= flow[0].time_us * 0.999);
    CHECK(pkt[0].time_us <= flow[0].time_us * 1.03);
}

TEST_CASE("mlsim collective: a run longer than 2^63 ps is a user error, not an internal one") {
    // 8 GiB over a 1 kB/s ring (the slowest bandwidth a system file takes) would take ~1.8e7 s.
    const fs::path dir = fs::temp_directory_path() / "mlsim_test_collective_slow";
    fs::remove_all(dir);
    fs::create_directories(dir);
    const fs::path sys = dir / "slow.yaml";
    std::ofstream(sys) << "system:\n  name: slow\n  device: h100\n  count: 2\n  topology:\n    shape: ring\n"
                          "    link: {bandwidth: 1KB/s}\n";
    const auto out = run_mlsim("collective --system '" + sys.string() + "'");
    INFO(out.text);
    CHECK(out.status == 2);
    CHECK(contains(out.text,
                   "<command line>: error: the run's simulated time outgrows 64-bit picoseconds (2^63 "
                   "ps, about 106 days)"));
    CHECK_FALSE(contains(out.text, "internal error"));
    fs::remove_all(dir);
}

TEST_CASE("mlsim collective: an algorithm the operation lacks is located on the command line") {
    const auto out = run_mlsim("collective --system dgx-a100 --op all_reduce --algorithm bruck");
    INFO(out.text);
    CHECK(out.status == 2);
    CHECK(contains(out.text,
                   "<command line>: error: collective all_reduce: algorithm 'bruck' is not available"));
}

TEST_CASE("mlsim collective and parallel runs take tf32 (stored as fp32) and int16 buffers") {
    // A parallel run in tf32 failed in the collective layer: "unknown element type 'tf32'".
    const auto tf = run_mlsim("collective --system dgx-h100 --op all-reduce --sizes 1MiB:1MiB --dtype tf32");
    INFO(tf.text);
    REQUIRE(tf.status == 0);
    const auto rows = rows_of(tf.text);
    REQUIRE(rows.size() == 1);
    CHECK(rows[0].count == 1024 * 1024 / 4);
    const auto i16 =
        run_mlsim("collective --system dgx-h100 --op all-reduce --sizes 1MiB:1MiB --dtype int16");
    REQUIRE(i16.status == 0);
    CHECK(rows_of(i16.text).at(0).count == 1024 * 1024 / 2);
    const auto run =
        run_mlsim("run -q --system dgx-a100 --model mlp3 --mode training -t tf32 -b 64 --data-parallel 8");
    INFO(run.text);
    CHECK(run.status == 0);
}
