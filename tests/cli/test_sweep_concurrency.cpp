// Several real `mlsim` processes writing one results database at the same time: nothing is lost, nothing
// is duplicated (each sweep point is claimed atomically, db/results_db.h); and what a sweep writes, ids
// included, does not depend on --jobs or the number of MPI ranks.
#include <fmt/format.h>

#include <algorithm>
#include <catch2/catch.hpp>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <string>
#include <vector>

#include "db/schema.h"
#include "tests/cli/processes.h"

namespace fs = std::filesystem;
using mlsim::test::db_count;
using mlsim::test::db_rows;
using mlsim::test::exited_ok;
using mlsim::test::spawn_mlsim;
using mlsim::test::wait_status;

namespace {

std::string data(const std::string& name) {
    return std::string(MLSIM_SOURCE_DIR) + "/tests/cli/data/" + name;
}

struct TempDir {
    explicit TempDir(const std::string& name) : path(fs::temp_directory_path() / name) {
        fs::remove_all(path);
        fs::create_directories(path);
    }
    ~TempDir() { fs::remove_all(path); }
    std::string file(const std::string& name) const { return (path / name).string(); }
    fs::path path;
};

// Every table of the file, whole, as sorted text rows, the wall-clock columns (wall_s, created_utc,
// claimed_utc) left out. With `ids` false, rows that do not depend on the order in which runs were committed:
// a run_id is replaced by its run's config_hash (unique among the runs a sweep writes), a def_id by its
// definition (layer_defs: ids given as runs commit); with `ids`, the ids as stored (a sweep commits its
// points in point order whatever its threads and ranks, experiment/sweep_writer.h).
std::vector<std::string> whole_file(const std::string& db_path, bool ids = false) {
    std::vector<std::string> out;
    for (const std::string& table :
         db_rows(db_path, "SELECT name FROM sqlite_schema WHERE type = 'table' ORDER BY name")) {
        std::vector<std::string> exprs;
        for (const std::string& col :
             db_rows(db_path, fmt::format("SELECT name FROM pragma_table_info('{}') ORDER BY cid", table))) {
            if (col == "wall_s" || col == "created_utc" || col == "claimed_utc") continue;
            // Where a row sits in the file (schema 12's numbering of layer rows, and each run's range of it):
            // ids, compared with them.
            if (!ids && (col == "layer_row" || col == "first_layer_row" || col == "last_layer_row")) continue;
            if (ids)
                exprs.push_back(fmt::format("quote(t.{})", col));
            else if (col == "run_id")
                exprs.push_back("(SELECT r.config_hash FROM runs r WHERE r.run_id = t.run_id)");
            else if (col == "def_id" && table == "layer_defs")
                continue;  // the row is its definition
            else if (col == "def_id")
                exprs.push_back(
                    "(SELECT quote(d.name) || ',' || quote(d.op) || ',' || quote(d.phase) || ',' || "
                    "quote(d.dtype) "
                    "|| ',' || quote(d.macs) || ',' || quote(d.flops) || ',' || quote(d.params) FROM "
                    "layer_defs d "
                    "WHERE d.def_id = t.def_id)");
            else
                exprs.push_back(fmt::format("quote(t.{})", col));
        }
        std::vector<std::string> rows =
            db_rows(db_path, fmt::format("SELECT {} FROM {} t", fmt::join(exprs, ", "), table));
        std::sort(rows.begin(), rows.end());
        out.push_back(
            fmt::format("table {} ({} columns compared, {} rows)", table, exprs.size(), rows.size()));
        for (std::string& r : rows) out.push_back(table + ": " + r);
    }
    return out;
}

// What a sweep's summary line says it simulated that another process recorded first (0 when it says nothing).
int64_t recorded_elsewhere(const std::string& output_path) {
    std::ifstream in(output_path);
    const std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    REQUIRE(text.find("done: ") != std::string::npos);
    const std::string mark = "(of which ";
    const std::size_t at = text.find(mark);
    return at == std::string::npos ? 0 : std::stoll(text.substr(at + mark.size()));
}

// Runs `mlsim sweep SWEEP --db DB --jobs 2` twice at once (outputs into `dir`, named after `tag`); whether
// both exited 0, and the points simulated by both (what their summaries say the other recorded first).
struct Twice {
    bool ok = false;
    int64_t simulated_by_both = 0;
};
Twice sweep_twice(const TempDir& dir, const std::string& sweep, const std::string& db,
                  const std::string& tag) {
    std::vector<std::string> outs;
    std::vector<pid_t> pids;
    for (const char* who : {"a", "b"}) {
        outs.push_back(dir.file(fmt::format("{}-{}.txt", tag, who)));
        pids.push_back(spawn_mlsim({"sweep", sweep, "--db", db, "--jobs", "2", "--quiet"}, outs.back()));
    }
    Twice t;
    t.ok = exited_ok(wait_status(pids[0]));
    t.ok = exited_ok(wait_status(pids[1])) && t.ok;
    if (t.ok) t.simulated_by_both = recorded_elsewhere(outs[0]) + recorded_elsewhere(outs[1]);
    return t;
}

// The file of a sweep run twice at once: every point recorded once, whole, no claim left.
void check_each_point_once(const std::string& db_path, const std::string& sweep_name, int64_t points) {
    CHECK(db_count(db_path, "SELECT COUNT(*) FROM runs") == points);
    CHECK(db_count(db_path, "SELECT COUNT(*) FROM runs WHERE status = 'ok'") == points);
    CHECK(db_count(db_path, "SELECT COUNT(DISTINCT config_hash) FROM runs") == points);
    const std::string where = fmt::format("FROM sweeps WHERE sweep_name = '{}'", sweep_name);
    CHECK(db_count(db_path, "SELECT COUNT(*) " + where) == points);
    CHECK(db_count(db_path, "SELECT COUNT(DISTINCT point) " + where) == points);
    CHECK(db_count(db_path,
                   "SELECT COUNT(*) FROM runs r WHERE layer_count != "
                   "(SELECT COUNT(*) FROM layers l WHERE l.run_id = r.run_id)") == 0);
    CHECK(db_count(db_path, "SELECT COUNT(*) FROM claims") == 0);
    CHECK(db_rows(db_path, "PRAGMA integrity_check") == std::vector<std::string>{"ok"});
}

}  // namespace

TEST_CASE("The same sweep started twice at once runs every point exactly once", "[sweep][concurrency]") {
    TempDir dir("mlsim_test_sweep_twice");
    constexpr int64_t points = 48;
    // Each trial races two fresh processes from the first point on a new file. Without claims about half of
    // such trials end with duplicated points, so six trials catch a regression nearly always.
    for (int trial = 0; trial < 6; ++trial) {
        const std::string db_path = dir.file(fmt::format("twice{}.db", trial));
        INFO("trial " << trial);
        const Twice t = sweep_twice(dir, data("sweep_twice.yaml"), db_path, fmt::format("twice{}", trial));
        CHECK(t.ok);
        // Both simulated at most every point once each (the share-out is checked on a longer sweep below).
        CHECK(t.simulated_by_both <= points);
        check_each_point_once(db_path, "twice", points);
        CHECK(db_count(db_path, "SELECT COUNT(*) FROM sweep_factors") == points * 3);
    }
}

TEST_CASE("Two processes running the same sweep at once share its points out", "[sweep][concurrency]") {
    TempDir dir("mlsim_test_sweep_share");
    constexpr int64_t points = 512;
    for (int trial = 0; trial < 2; ++trial) {
        const std::string db_path = dir.file(fmt::format("share{}.db", trial));
        INFO("trial " << trial);
        const Twice t = sweep_twice(dir, data("sweep_kill.yaml"), db_path, fmt::format("share{}", trial));
        REQUIRE(t.ok);
        check_each_point_once(db_path, "kill", points);
        // The second writer takes the points from the last, and each skips what the other recorded
        // (experiment/sweep_writer.h): only the points in flight where they meet, or held uncommitted when
        // the second starts, are simulated by both (2-7 in 10 trials on the 2-core host). Two writers that
        // ignore each other simulate every point twice (512), or every point the later one reaches.
        INFO("points simulated by both: " << t.simulated_by_both);
        CHECK(t.simulated_by_both <= points / 8);
    }
}

TEST_CASE("Two mlsim run processes writing one new database at once are both recorded", "[concurrency]") {
    TempDir dir("mlsim_test_run_twice");
    for (int trial = 0; trial < 3; ++trial) {
        const std::string db_path = dir.file(fmt::format("runs{}.db", trial));
        // The same config twice (mlsim run records every run it is asked for) and a different one.
        std::vector<pid_t> pids;
        for (const char* dtype : {"bf16", "bf16", "int8"})
            pids.push_back(spawn_mlsim({"run", "--system", "tpu-v4", "--model", "resnet50", "--dtype", dtype,
                                        "--db", db_path, "-q"}));
        INFO("trial " << trial);
        for (pid_t pid : pids) CHECK(exited_ok(wait_status(pid)));
        CHECK(db_count(db_path, "SELECT COUNT(*) FROM runs WHERE status = 'ok'") == 3);
        CHECK(db_count(db_path, "SELECT COUNT(*) FROM runs WHERE dtype = 'bf16'") == 2);
        CHECK(db_count(db_path, "SELECT COUNT(DISTINCT config_hash) FROM runs") == 2);
        CHECK(db_count(db_path, "SELECT MIN(layer_count) FROM runs") > 50);
        CHECK(db_count(db_path,
                       "SELECT COUNT(*) FROM runs r WHERE layer_count != "
                       "(SELECT COUNT(*) FROM layers l WHERE l.run_id = r.run_id)") == 0);
        // The two bf16 runs wrote identical layers.
        CHECK(db_count(
                  db_path,
                  "SELECT COUNT(*) FROM (SELECT idx, name, cycles, time_s, energy_j FROM layers l JOIN runs "
                  "r USING (run_id) WHERE r.dtype = 'bf16' GROUP BY idx, name, cycles, time_s, energy_j "
                  "HAVING COUNT(*) != 2)") == 0);
        CHECK(db_rows(db_path, "PRAGMA integrity_check") == std::vector<std::string>{"ok"});
    }
}

TEST_CASE("A sweep writes the same database with --jobs 1 and --jobs 2, every table, apart from wall times",
          "[sweep]") {
    TempDir dir("mlsim_test_sweep_jobs_db");
    const std::string one = dir.file("one.db"), two = dir.file("two.db");
    CHECK(
        exited_ok(wait_status(spawn_mlsim({"sweep", data("sweep_jobs.yaml"), "--db", one, "--jobs", "1"}))));
    CHECK(
        exited_ok(wait_status(spawn_mlsim({"sweep", data("sweep_jobs.yaml"), "--db", two, "--jobs", "2"}))));
    // What the comparison covers: ok and failed runs, per-family rows, the sweep rows.
    CHECK(db_count(one, "SELECT COUNT(*) FROM runs WHERE status = 'ok'") == 6);
    CHECK(db_count(one, "SELECT COUNT(*) FROM runs WHERE status = 'error'") == 6);
    CHECK(db_count(one, "SELECT COUNT(*) FROM layer_levels") > 1000);
    CHECK(db_count(one, "SELECT COUNT(*) FROM layer_metrics") > 1000);
    CHECK(db_count(one, "SELECT COUNT(*) FROM sweeps") == 12);
    // Committed in point order with either: the ids as stored are the same too.
    const std::vector<std::string> a = whole_file(one, true);
    const std::vector<std::string> b = whole_file(two, true);
    // Every table of the schema (db/schema.h), each written as one "table" line.
    CHECK(std::count_if(a.begin(), a.end(), [](const std::string& l) { return l.rfind("table ", 0) == 0; }) ==
          static_cast<std::ptrdiff_t>(mlsim::db::schema::tables().size()));
    REQUIRE(a.size() == b.size());
    for (std::size_t i = 0; i < a.size(); ++i) {
        INFO("row " << i);
        CHECK(a[i] == b[i]);  // one line each so that a difference shows the row
    }
}

// Sweeps over MPI (mpi/sweep_mpi.h): built only when CMake finds MPI (MLSIM_MPI_BINARY, MLSIM_MPIEXEC).
namespace {

// `mpirun -np RANKS mlsim-mpi ARGS...`, quiet; allowed to run as root (CI containers); returns its status.
// `env`: variables set for every rank (MLSIM_MPI_MAX_PENDING: rank 0 holds at most that many points before a
// worker waits; MLSIM_MPI_RING_BYTES: each worker's shared-memory ring, 0 for none).
using Env = std::vector<std::pair<std::string, std::string>>;
[[maybe_unused]] int run_mpi(int ranks, std::vector<std::string> args, const Env& env = {}) {
#ifdef MLSIM_MPI_BINARY
    std::vector<std::string> cmd{MLSIM_MPIEXEC, "--oversubscribe", "--allow-run-as-root", "-np",
                                 std::to_string(ranks)};
    for (const auto& [name, value] : env) cmd.insert(cmd.end(), {"-x", name});
    cmd.emplace_back(MLSIM_MPI_BINARY);
    cmd.insert(cmd.end(), args.begin(), args.end());
    const pid_t pid = fork();
    REQUIRE(pid >= 0);
    if (pid == 0) {
        const int null = open("/dev/null", O_WRONLY);
        dup2(null, 1);
        dup2(null, 2);
        setenv("OMPI_ALLOW_RUN_AS_ROOT", "1", 1);
        setenv("OMPI_ALLOW_RUN_AS_ROOT_CONFIRM", "1", 1);
        // A sanitized mlsim-mpi (the sanitizer build): Open MPI leaves memory to its exit, which
        // LeakSanitizer would report as leaks of every rank; mlsim's own code is leak-checked by the other
        // tests.
        setenv("ASAN_OPTIONS", "detect_leaks=0", 1);
        for (const auto& [name, value] : env) setenv(name.c_str(), value.c_str(), 1);
        std::vector<char*> argv;
        for (std::string& a : cmd) argv.push_back(a.data());
        argv.push_back(nullptr);
        execv(argv[0], argv.data());
        _exit(127);
    }
    return wait_status(pid);
#else
    (void)ranks;
    (void)args;
    (void)env;
    return -1;
#endif
}

}  // namespace

TEST_CASE("An MPI sweep writes the same rows as the threaded one, for any number of ranks, and resumes",
          "[sweep][mpi]") {
#ifndef MLSIM_MPI_BINARY
    WARN("skipped: mlsim-mpi is not built (CMake found no MPI; scripts/setup.sh installs Open MPI)");
#else
    TempDir dir("mlsim_test_sweep_mpi");
    const std::string threads = dir.file("threads.db");
    CHECK(exited_ok(
        wait_status(spawn_mlsim({"sweep", data("sweep_jobs.yaml"), "--db", threads, "--jobs", "2"}))));
    const std::vector<std::string> expected = whole_file(threads);
    const std::vector<std::string> expected_ids = whole_file(threads, true);
    REQUIRE(expected.size() > 1000);
    // Sweeps write without SQLite's foreign-key lookups (ResultsDb::ReferenceChecksOff): every reference
    // must hold all the same.
    const char* dangling = "SELECT COUNT(*) FROM pragma_foreign_key_check";
    CHECK(db_count(threads, dangling) == 0);
    // Rank 0 holding one point at most: workers wait for their next point while it writes (as when they
    // simulate faster than it writes a long sweep). The workers' results through their shared-memory rings
    // (the default, 2 MiB), as messages only (no ring), and both (a ring of 128 KiB holds one ok point's
    // ~105 KB: the others go as messages while rank 0 has not read it, and the ring wraps around). And with
    // Open MPI's one-sided component that cannot allocate shared memory (osc rdma): the rings are refused and
    // every result goes as a message.
    struct Case {
        int ranks;
        const char* jobs;
        Env env;
    };
    const std::vector<Case> cases{{1, "1", {}},
                                  {2, "1", {}},
                                  {3, "2", {}},
                                  {3, "1", {{"MLSIM_MPI_MAX_PENDING", "1"}}},
                                  {2, "1", {{"MLSIM_MPI_RING_BYTES", "0"}}},
                                  {3, "1", {{"MLSIM_MPI_RING_BYTES", "131072"}}},
                                  {2, "1", {{"OMPI_MCA_osc", "rdma"}}}};
    for (std::size_t c = 0; c < cases.size(); ++c) {
        const auto& [ranks, jobs, env] = cases[c];
        std::string setting;
        for (const auto& [name, value] : env) setting += fmt::format(" {}={}", name, value);
        INFO(ranks << " ranks, --jobs " << jobs << " on rank 0," << setting);
        const std::string db = dir.file(fmt::format("mpi-{}.db", c));
        REQUIRE(
            exited_ok(run_mpi(ranks, {"sweep", data("sweep_jobs.yaml"), "--db", db, "--jobs", jobs}, env)));
        const std::vector<std::string> got = whole_file(db);
        REQUIRE(got.size() == expected.size());
        for (std::size_t i = 0; i < got.size(); ++i) {
            INFO("row " << i);
            CHECK(got[i] == expected[i]);
        }
        CHECK(db_count(db, dangling) == 0);
        // Committed in point order, as the threaded sweep: the same ids too.
        CHECK(whole_file(db, true) == expected_ids);
        CHECK(db_count(db,
                       "SELECT COUNT(*) FROM sweeps a JOIN sweeps b ON a.point < b.point "
                       "WHERE a.run_id > b.run_id") == 0);
        // Run again: every point is found (ok runs skipped, failed ones not retried); nothing is added.
        REQUIRE(exited_ok(run_mpi(ranks, {"sweep", data("sweep_jobs.yaml"), "--db", db})));
        CHECK(whole_file(db) == expected);
        CHECK(db_count(db, "SELECT COUNT(*) FROM runs") == 12);
    }
    // A sweep long enough that workers take runs of several consecutive points (exp::k_run), with rank 0
    // holding one point at most: a worker at the bound still gets the rest of its run, which rank 0 may be
    // waiting for. The same rows as threads write.
    {
        // The experiment tests' sweep of 64 points (tests/experiment/data/sweep_runs.yaml).
        const std::string runs = std::string(MLSIM_SOURCE_DIR) + "/tests/experiment/data/sweep_runs.yaml";
        const std::string runs_threads = dir.file("runs-threads.db");
        REQUIRE(exited_ok(wait_status(spawn_mlsim({"sweep", runs, "--db", runs_threads, "--jobs", "2"}))));
        for (int ranks : {2, 3}) {
            INFO(ranks << " ranks, rank 0 holding one point at most");
            const std::string db = dir.file(fmt::format("runs-{}.db", ranks));
            REQUIRE(exited_ok(run_mpi(ranks, {"sweep", runs, "--db", db}, {{"MLSIM_MPI_MAX_PENDING", "1"}})));
            CHECK(whole_file(db) == whole_file(runs_threads));
            CHECK(whole_file(db, true) == whole_file(runs_threads, true));
            CHECK(db_count(db, "SELECT COUNT(*) FROM runs WHERE status = 'ok'") == 64);
        }
    }
    // A bound that is not a whole number >= 1, or a ring size that is not a whole number of bytes up to
    // 2^30, is refused (exit status 2) before any point runs.
    for (const auto& [name, bad] :
         std::vector<std::pair<std::string, std::string>>{{"MLSIM_MPI_MAX_PENDING", "0"},
                                                          {"MLSIM_MPI_MAX_PENDING", "two"},
                                                          {"MLSIM_MPI_MAX_PENDING", "-1"},
                                                          {"MLSIM_MPI_MAX_PENDING", "1.5"},
                                                          {"MLSIM_MPI_MAX_PENDING", ""},
                                                          {"MLSIM_MPI_RING_BYTES", "-1"},
                                                          {"MLSIM_MPI_RING_BYTES", "2MiB"},
                                                          {"MLSIM_MPI_RING_BYTES", ""},
                                                          {"MLSIM_MPI_RING_BYTES", "2000000000"}}) {
        INFO(name << "='" << bad << "'");
        const std::string db = dir.file("bad-setting.db");
        const int status = run_mpi(2, {"sweep", data("sweep_jobs.yaml"), "--db", db}, {{name, bad}});
        CHECK(WIFEXITED(status));
        CHECK(WEXITSTATUS(status) == 2);
        CHECK(db_count(db, "SELECT COUNT(*) FROM runs") == 0);
    }
    // A partly done file (the first run's ok points deleted from the threaded file's copy) is completed.
    const std::string partial = dir.file("partial.db");
    fs::copy_file(threads, partial);
    {
        sqlite3* h = nullptr;
        REQUIRE(sqlite3_open(partial.c_str(), &h) == SQLITE_OK);
        REQUIRE(sqlite3_exec(
                    h,
                    "PRAGMA foreign_keys = ON; DELETE FROM sweep_factors WHERE run_id IN (SELECT run_id "
                    "FROM runs WHERE batch = 4); DELETE FROM sweeps WHERE run_id IN (SELECT run_id FROM "
                    "runs WHERE batch = 4); DELETE FROM layer_results WHERE run_id IN (SELECT run_id FROM "
                    "runs WHERE batch = 4); DELETE FROM runs WHERE batch = 4;",
                    nullptr, nullptr, nullptr) == SQLITE_OK);
        sqlite3_close(h);
    }
    REQUIRE(db_count(partial, "SELECT COUNT(*) FROM runs") == 6);
    REQUIRE(exited_ok(run_mpi(2, {"sweep", data("sweep_jobs.yaml"), "--db", partial})));
    CHECK(whole_file(partial) == expected);
    CHECK(db_count(partial, dangling) == 0);
#endif
}

TEST_CASE("A sweep stores the parallel tables of its points with a parallel plan, threaded and over MPI",
          "[sweep][parallel][mpi]") {
    TempDir dir("mlsim_test_sweep_parallel");
    const std::string threads = dir.file("threads.db");
    REQUIRE(exited_ok(wait_status(spawn_mlsim({"sweep", data("sweep_parallel.yaml"), "--db", threads}))));
    REQUIRE(db_count(threads, "SELECT COUNT(*) FROM runs WHERE status = 'ok'") == 2);
    // One parallel_runs row per point, with the plan the point asked for; 8 rank rows each (data x tensor x
    // pipeline = 8 devices); exposed communication and the step's collectives, all of the sweep's runs.
    CHECK(db_count(threads, "SELECT COUNT(*) FROM parallel_runs p JOIN sweeps s ON s.run_id = p.run_id") ==
          2);
    CHECK(db_count(threads, "SELECT COUNT(*) FROM parallel_runs WHERE data * tensor * pipeline = 8") == 2);
    CHECK(db_count(threads, "SELECT COUNT(*) FROM parallel_runs WHERE data = 4 AND pipeline = 1") == 1);
    CHECK(db_count(threads, "SELECT COUNT(*) FROM parallel_ranks") == 16);
    CHECK(db_count(threads, "SELECT COUNT(DISTINCT run_id) FROM collectives") == 2);
    CHECK(db_count(threads, "SELECT COUNT(DISTINCT run_id) FROM parallel_exposed") == 2);
    // The same rows as `mlsim run` stores for the second point.
    const std::string run = dir.file("run.db");
    REQUIRE(exited_ok(wait_status(spawn_mlsim({"run",
                                               "--system",
                                               "dgx-a100-node",
                                               "--model",
                                               "gpt2-small-prefill",
                                               "--mode",
                                               "training",
                                               "--batch",
                                               "16",
                                               "--seq",
                                               "128",
                                               "--tensor-parallel",
                                               "2",
                                               "--microbatches",
                                               "4",
                                               "--data-parallel",
                                               "4",
                                               "--pipeline-parallel",
                                               "1",
                                               "--db",
                                               run}))));
    for (const char* table : {"parallel_runs", "parallel_ranks", "parallel_exposed", "collectives"}) {
        INFO(table);
        const std::vector<std::string> cols = db_rows(
            run, fmt::format("SELECT name FROM pragma_table_info('{}') WHERE name != 'run_id'", table));
        auto rows = [&](const std::string& db, const std::string& run_id) {
            std::vector<std::string> r = db_rows(
                db, fmt::format("SELECT {} FROM {} WHERE run_id = {}", fmt::join(cols, ", "), table, run_id));
            std::sort(r.begin(), r.end());
            return r;
        };
        const std::vector<std::string> in_run = rows(run, "1");
        CHECK(!in_run.empty());
        CHECK(rows(threads, "(SELECT run_id FROM parallel_runs WHERE data = 4)") == in_run);
    }
#ifdef MLSIM_MPI_BINARY
    const std::string mpi = dir.file("mpi.db");
    REQUIRE(exited_ok(run_mpi(2, {"sweep", data("sweep_parallel.yaml"), "--db", mpi})));
    CHECK(whole_file(mpi) == whole_file(threads));
#endif
}
