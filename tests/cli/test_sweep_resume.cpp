// A real `mlsim sweep` process killed with SIGKILL part way through, then rerun: every point ends up in
// the database exactly once with status ok, and the file is intact.
#include <catch2/catch.hpp>
#include <chrono>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "tests/cli/processes.h"

namespace fs = std::filesystem;
using mlsim::test::db_count;
using mlsim::test::db_count_or_minus_one;
using mlsim::test::db_rows;
using mlsim::test::exited_ok;

namespace {

pid_t spawn_sweep(const std::string& sweep_file, const std::string& db_path,
                  const std::vector<std::string>& extra) {
    std::vector<std::string> args{"sweep", sweep_file, "--db", db_path};
    args.insert(args.end(), extra.begin(), extra.end());
    return mlsim::test::spawn_mlsim(args);
}

int wait_exit(pid_t pid) { return mlsim::test::wait_status(pid); }

int64_t count_or_minus_one(const std::string& db_path, const char* sql) {
    return db_count_or_minus_one(db_path, sql);
}

std::string text(const std::string& db_path, const char* sql) {
    const std::vector<std::string> rows = db_rows(db_path, sql);
    REQUIRE(rows.size() == 1);
    return rows.front();
}

int64_t count(const std::string& db_path, const char* sql) { return db_count(db_path, sql); }

}  // namespace

TEST_CASE("A sweep killed with SIGKILL part way resumes on rerun: every point once, status ok, file intact",
          "[sweep]") {
    const fs::path dir = fs::temp_directory_path() / "mlsim_test_sweep_kill";
    fs::remove_all(dir);
    fs::create_directories(dir);
    const std::string db_path = (dir / "kill.db").string();
    const std::string sweep = std::string(MLSIM_SOURCE_DIR) + "/tests/cli/data/sweep_kill.yaml";
    constexpr int64_t total = 512;

    const pid_t pid = spawn_sweep(sweep, db_path, {"--jobs", "1"});
    // Wait until some points are committed, then kill it without warning.
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(120);
    int64_t committed = -1;
    while (std::chrono::steady_clock::now() < deadline) {
        committed = count_or_minus_one(db_path, "SELECT COUNT(*) FROM sweeps WHERE sweep_name = 'kill'");
        if (committed >= 20) break;
        std::this_thread::sleep_for(std::chrono::milliseconds(1));
    }
    REQUIRE(kill(pid, SIGKILL) == 0);
    const int status = wait_exit(pid);
    REQUIRE(WIFSIGNALED(status));
    REQUIRE(WTERMSIG(status) == SIGKILL);

    const int64_t before = count(db_path, "SELECT COUNT(*) FROM runs WHERE status = 'ok'");
    INFO("points committed before the kill: " << before);
    REQUIRE(before >= 20);
    REQUIRE(before < total);  // it really was stopped part way
    // Every committed run came with its sweep rows and its layers (one transaction each).
    CHECK(count(db_path, "SELECT COUNT(*) FROM sweeps") == before);
    CHECK(count(db_path,
                "SELECT COUNT(*) FROM runs r WHERE layer_count != "
                "(SELECT COUNT(*) FROM layers l WHERE l.run_id = r.run_id)") == 0);

    const pid_t again = spawn_sweep(sweep, db_path, {"--jobs", "2"});
    const int status2 = wait_exit(again);
    REQUIRE(WIFEXITED(status2));
    REQUIRE(WEXITSTATUS(status2) == 0);

    CHECK(count(db_path, "SELECT COUNT(*) FROM runs") == total);
    CHECK(count(db_path, "SELECT COUNT(*) FROM runs WHERE status = 'ok'") == total);
    CHECK(count(db_path, "SELECT COUNT(DISTINCT config_hash) FROM runs") == total);
    CHECK(count(db_path, "SELECT COUNT(*) FROM sweeps WHERE sweep_name = 'kill'") == total);
    CHECK(count(db_path, "SELECT COUNT(DISTINCT point) FROM sweeps WHERE sweep_name = 'kill'") == total);
    CHECK(count(db_path, "SELECT MIN(point) FROM sweeps") == 0);
    CHECK(count(db_path, "SELECT MAX(point) FROM sweeps") == total - 1);
    CHECK(count(db_path, "SELECT COUNT(*) FROM sweep_factors") == total * 3);
    CHECK(count(db_path,
                "SELECT COUNT(*) FROM runs r WHERE layer_count != "
                "(SELECT COUNT(*) FROM layers l WHERE l.run_id = r.run_id)") == 0);
    CHECK(text(db_path, "PRAGMA integrity_check") == "ok");
    CHECK(count(db_path, "SELECT COUNT(*) FROM pragma_foreign_key_check") == 0);
    fs::remove_all(dir);
}

TEST_CASE(
    "A sweep SIGKILLed at five random moments and resumed each time ends with every point once, "
    "the file intact",
    "[sweep]") {
    const fs::path dir = fs::temp_directory_path() / "mlsim_test_sweep_kill5";
    fs::remove_all(dir);
    fs::create_directories(dir);
    const std::string db_path = (dir / "kill5.db").string();
    const std::string sweep = std::string(MLSIM_SOURCE_DIR) + "/tests/cli/data/sweep_kill.yaml";
    constexpr int64_t total = 512;
    const char* committed_sql = "SELECT COUNT(*) FROM sweeps WHERE sweep_name = 'kill'";

    // The moments, from a fixed seed: each kill comes once a drawn number of further points are committed
    // (0 for the first: it may land while the file is being created), plus a drawn delay of up to 3 ms so
    // that it can fall inside a transaction; the jobs alternate 1 and 2.
    std::mt19937 rng(20'240'808);
    std::uniform_int_distribution<int64_t> further(0, total / 10);
    std::uniform_int_distribution<int> delay_us(0, 3000);
    int64_t target = 0;
    int64_t before = 0;
    for (int kill_no = 0; kill_no < 5; ++kill_no) {
        target = kill_no == 0 ? 0 : target + further(rng);
        const int delay = delay_us(rng);
        const pid_t pid = spawn_sweep(sweep, db_path, {"--jobs", kill_no % 2 == 0 ? "1" : "2"});
        const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(120);
        while (std::chrono::steady_clock::now() < deadline &&
               count_or_minus_one(db_path, committed_sql) < target)
            std::this_thread::sleep_for(std::chrono::microseconds(200));
        std::this_thread::sleep_for(std::chrono::microseconds(delay));
        REQUIRE(kill(pid, SIGKILL) == 0);
        const int status = wait_exit(pid);
        INFO("kill " << kill_no << " after " << target << " points committed + " << delay << " us");
        REQUIRE(WIFSIGNALED(status));
        REQUIRE(WTERMSIG(status) == SIGKILL);
        const int64_t now = count_or_minus_one(db_path, committed_sql);
        if (now < 0) continue;  // killed before the file had its tables
        // Nothing committed was lost, no point is there twice, every run is whole.
        CHECK(now >= before);
        before = now;
        CHECK(count(db_path, "SELECT COUNT(*) FROM runs") == now);
        CHECK(count(db_path, "SELECT COUNT(DISTINCT point) FROM sweeps") == now);
        CHECK(count(db_path, "SELECT COUNT(DISTINCT config_hash) FROM runs") == now);
        CHECK(count(db_path,
                    "SELECT COUNT(*) FROM runs r WHERE layer_count != "
                    "(SELECT COUNT(*) FROM layers l WHERE l.run_id = r.run_id)") == 0);
        CHECK(text(db_path, "PRAGMA integrity_check") == "ok");
    }
    REQUIRE(before < total);  // every kill really stopped the sweep part way

    const int status = wait_exit(spawn_sweep(sweep, db_path, {"--jobs", "2"}));
    REQUIRE(WIFEXITED(status));
    REQUIRE(WEXITSTATUS(status) == 0);

    CHECK(count(db_path, "SELECT COUNT(*) FROM runs") == total);
    CHECK(count(db_path, "SELECT COUNT(*) FROM runs WHERE status = 'ok'") == total);
    CHECK(count(db_path, "SELECT COUNT(DISTINCT config_hash) FROM runs") == total);
    CHECK(count(db_path, committed_sql) == total);
    CHECK(count(db_path, "SELECT COUNT(DISTINCT point) FROM sweeps WHERE sweep_name = 'kill'") == total);
    CHECK(count(db_path, "SELECT MIN(point) FROM sweeps") == 0);
    CHECK(count(db_path, "SELECT MAX(point) FROM sweeps") == total - 1);
    CHECK(count(db_path, "SELECT COUNT(*) FROM sweep_factors") == total * 3);
    CHECK(count(db_path,
                "SELECT COUNT(*) FROM runs r WHERE layer_count != "
                "(SELECT COUNT(*) FROM layers l WHERE l.run_id = r.run_id)") == 0);
    // The killed processes' claims were taken over and released.
    CHECK(count(db_path, "SELECT COUNT(*) FROM claims") == 0);
    CHECK(text(db_path, "PRAGMA integrity_check") == "ok");
    CHECK(count(db_path, "SELECT COUNT(*) FROM pragma_foreign_key_check") == 0);
    fs::remove_all(dir);
}

TEST_CASE("A sweep name the database holds from another file is refused, a list extended at its end is not",
          "[sweep]") {
    const fs::path dir = fs::temp_directory_path() / "mlsim_test_sweep_history";
    fs::remove_all(dir);
    fs::create_directories(dir);
    const auto sweep = [&](const std::string& file, const std::string& batches,
                           const std::string& system = "a100") {
        const std::string path = (dir / file).string();
        std::ofstream(path) << "name: hist\nbase:\n  system: " << system
                            << "\n  model: mlp3\nfactors:\n  batch: [" << batches << "]\n";
        return path;
    };
    const std::string db = (dir / "h.db").string();
    const std::string out = (dir / "out.txt").string();
    const auto run = [&](const std::string& file) {
        return wait_exit(mlsim::test::spawn_mlsim({"sweep", file, "--db", db, "--quiet"}, out));
    };
    REQUIRE(exited_ok(run(sweep("a.yaml", "1, 2, 3"))));
    // batch 3 as point 1 where the database has batch 2: two runs would share a point number.
    const int refused = run(sweep("b.yaml", "1, 3, 5"));
    CHECK(WIFEXITED(refused));
    CHECK(WEXITSTATUS(refused) == 2);
    std::ifstream in(out);
    const std::string message((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    CHECK(message.find("b.yaml: error: name: the database") != std::string::npos);
    CHECK(message.find("its point 1 is {\"batch\": \"2\"}, but this file's point 1 is {\"batch\": \"3\"}") !=
          std::string::npos);
    CHECK(count(db, "SELECT COUNT(*) FROM runs") == 3);  // nothing written
    // The same factors under another base: other configurations, which would share the points' numbers.
    const int other_base = run(sweep("d.yaml", "1, 2, 3", "h100"));
    CHECK(WIFEXITED(other_base));
    CHECK(WEXITSTATUS(other_base) == 2);
    CHECK(count(db, "SELECT COUNT(*) FROM runs") == 3);
    // The list extended at its end, then cut back: the points keep their numbers.
    CHECK(exited_ok(run(sweep("c.yaml", "1, 2, 3, 4"))));
    CHECK(exited_ok(run(sweep("a.yaml", "1, 2, 3"))));
    CHECK(text(db, "SELECT group_concat(point || '=' || factors_json, ' ') FROM sweeps") ==
          "0={\"batch\": \"1\"} 1={\"batch\": \"2\"} 2={\"batch\": \"3\"} 3={\"batch\": \"4\"}");
    fs::remove_all(dir);
}
