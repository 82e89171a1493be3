#include <fmt/format.h>
#include <unistd.h>

#include <catch2/catch.hpp>

#include "tests/db/temp_dir.h"
#include <cmath>
#include <filesystem>
#include <fstream>
#include <functional>
#include <limits>
#include <random>
#include <set>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "db/results_db.h"
#include "db/schema.h"
#include "db/sqlite.h"
#include "sim/config/error.h"
#include "sim/core/check.h"
#include "sim/version.h"

namespace fs = std::filesystem;
using mlsim::InternalError;
using mlsim::cfg::UserError;
using mlsim::db::LayerRow;
using mlsim::db::ResultsDb;
using mlsim::db::RunInfo;
namespace sql = mlsim::db::sql;

namespace {

// Each test gets its own directory, tagged "db".
struct TempDir : mlsim::test::TempDir {
    TempDir() : mlsim::test::TempDir("db") {}
};

RunInfo sample_info(const std::string& yaml = "device: tpu_v4i\nbatch: 8\n") {
    RunInfo info;
    info.config_yaml = yaml;
    info.system = "single";
    info.device = "tpu_v4i";
    info.model = "resnet50";
    info.mode = "inference";
    info.dtype = "bf16";
    info.batch = 8;
    info.seq = 0;
    info.peak_flops_per_s = 138e12;
    info.mem_bandwidth_Bps = 614e9;
    return info;
}

// Layers back to back on the timeline, with values that differ from layer to layer.
std::vector<LayerRow> sample_layers(int count) {
    std::vector<LayerRow> layers;
    double t = 0;
    for (int i = 0; i < count; ++i) {
        LayerRow l;
        l.idx = i;
        l.name = fmt::format("layer{}", i);
        l.op = i % 3 == 0 ? "conv2d" : (i % 3 == 1 ? "gemm" : "relu");
        l.phase = "fwd";
        l.dtype = "bf16";
        l.macs = 1e6 * (i + 1);
        l.flops = 2 * l.macs;
        l.params = 1000 * (i + 1);
        l.bytes_read = 4096.0 * (i % 5 + 1);
        l.bytes_written = 1024.0 * (i % 4 + 1);
        l.start_s = t;
        l.time_s = 1e-7 * (i % 7 + 1);
        l.end_s = t + l.time_s;
        t = l.end_s;
        l.cycles = 100 * (i % 7 + 1);
        l.stall_cycles = 10 * (i % 3);
        l.energy_compute_j = 1e-6 * (i + 1);
        l.energy_memory_j = 5e-7 * (i % 4 + 1);
        l.energy_static_j = 1e-8;
        l.energy_j = l.energy_compute_j + l.energy_memory_j + l.energy_static_j;
        l.utilization = 0.1 * (i % 10);
        l.bound = i % 2 == 0 ? "compute" : "memory";
        layers.push_back(l);
    }
    return layers;
}

int64_t query_int(const std::string& path, const std::string& query) {
    sql::Connection conn(path, sql::Connection::Mode::read_only);
    sql::Statement s(conn, query);
    REQUIRE(s.step());
    return s.column_int(0);
}

double query_real(const std::string& path, const std::string& query) {
    sql::Connection conn(path, sql::Connection::Mode::read_only);
    sql::Statement s(conn, query);
    REQUIRE(s.step());
    return s.column_real(0);
}

std::string query_text(const std::string& path, const std::string& query) {
    sql::Connection conn(path, sql::Connection::Mode::read_only);
    sql::Statement s(conn, query);
    REQUIRE(s.step());
    return s.column_text(0);
}

std::set<std::string> column_names(const std::string& path, const std::string& table) {
    sql::Connection conn(path, sql::Connection::Mode::read_only);
    sql::Statement s(conn, fmt::format("SELECT name FROM pragma_table_info('{}')", table));
    std::set<std::string> names;
    while (s.step()) names.insert(s.column_text(0));
    return names;
}

std::string file_bytes(const std::string& path) {
    std::ifstream in(path, std::ios::binary);
    std::ostringstream out;
    out << in.rdbuf();
    return out.str();
}

}  // namespace

TEST_CASE("opening creates the file, its parent directories and the schema", "[db]") {
    TempDir dir;
    std::string path = dir.file("study/nested/results.db");
    { ResultsDb db(path); }
    REQUIRE(fs::exists(path));
    CHECK(query_text(path, "PRAGMA journal_mode") == "wal");
    CHECK(query_text(path, "SELECT value FROM meta WHERE key = 'schema_version'") ==
          std::to_string(mlsim::db::schema::current_version));
    CHECK(query_int(path, "SELECT COUNT(*) FROM runs") == 0);

    std::set<std::string> runs = column_names(path, "runs");
    for (const char* col : {"run_id", "status", "error", "config_yaml", "config_hash", "version", "wall_s",
                            "created_utc", "system", "device", "model", "mode", "dtype", "batch", "seq",
                            "peak_flops_per_s", "mem_bandwidth_Bps", "total_time_s", "total_energy_j"})
        CHECK(runs.contains(col));
    std::set<std::string> layers = column_names(path, "layers");
    for (const char* col : {"run_id",
                            "idx",
                            "name",
                            "op",
                            "phase",
                            "dtype",
                            "macs",
                            "flops",
                            "params",
                            "bytes_read",
                            "bytes_written",
                            "start_s",
                            "end_s",
                            "time_s",
                            "cycles",
                            "stall_cycles",
                            "energy_j",
                            "energy_compute_j",
                            "energy_memory_j",
                            "energy_static_j",
                            "utilization",
                            "bound"})
        CHECK(layers.contains(col));
    CHECK(column_names(path, "meta") == std::set<std::string>{"key", "value"});
    // (run_id, idx) is the key: pk positions 1 and 2 in table_info.
    CHECK(query_int(path, "SELECT COUNT(*) FROM pragma_table_info('layers') WHERE pk > 0") == 2);
}

TEST_CASE("record_run writes one run row with totals computed from its layers", "[db]") {
    TempDir dir;
    std::string path = dir.file("r.db");
    RunInfo info = sample_info();
    std::vector<LayerRow> layers = sample_layers(3);
    int64_t id = 0;
    {
        ResultsDb db(path);
        id = db.record_run(info, layers, 0.25);
    }
    CHECK(id == 1);
    std::string where = fmt::format(" FROM runs WHERE run_id = {}", id);
    CHECK(query_text(path, "SELECT status" + where) == "ok");
    CHECK(query_int(path, "SELECT error IS NULL" + where) == 1);
    CHECK(query_text(path, "SELECT config_yaml" + where) == info.config_yaml);
    CHECK(query_text(path, "SELECT config_hash" + where) == mlsim::db::config_hash(info.config_yaml));
    CHECK(query_text(path, "SELECT version" + where) == mlsim::version());
    CHECK(query_real(path, "SELECT wall_s" + where) == 0.25);
    CHECK(query_text(path, "SELECT device || '/' || model || '/' || mode || '/' || dtype || '/' || system" +
                               where) == "tpu_v4i/resnet50/inference/bf16/single");
    CHECK(query_int(path, "SELECT batch" + where) == 8);
    CHECK(query_int(path, "SELECT seq" + where) == 0);
    CHECK(query_real(path, "SELECT peak_flops_per_s" + where) == 138e12);
    CHECK(query_real(path, "SELECT mem_bandwidth_Bps" + where) == 614e9);
    CHECK(query_int(path, "SELECT layer_count" + where) == 3);
    CHECK(query_real(path, "SELECT total_time_s" + where) == layers[2].end_s - layers[0].start_s);
    double energy = layers[0].energy_j + layers[1].energy_j + layers[2].energy_j;
    CHECK(query_real(path, "SELECT total_energy_j" + where) == energy);
    CHECK(query_real(path, "SELECT total_flops" + where) ==
          layers[0].flops + layers[1].flops + layers[2].flops);
    std::string created = query_text(path, "SELECT created_utc" + where);
    CHECK(created.size() == 24);
    CHECK(created[10] == 'T');
    CHECK(created.back() == 'Z');

    CHECK(query_int(path, "SELECT COUNT(*) FROM layers WHERE run_id = 1") == 3);
    const LayerRow& l = layers[1];
    std::string lw = " FROM layers WHERE run_id = 1 AND idx = 1";
    CHECK(query_text(path, "SELECT name || ',' || op || ',' || phase || ',' || dtype || ',' || bound" + lw) ==
          "layer1,gemm,fwd,bf16,memory");
    CHECK(query_real(path, "SELECT macs" + lw) == l.macs);
    CHECK(query_real(path, "SELECT flops" + lw) == l.flops);
    CHECK(query_int(path, "SELECT params" + lw) == l.params);
    CHECK(query_real(path, "SELECT bytes_read" + lw) == l.bytes_read);
    CHECK(query_real(path, "SELECT bytes_written" + lw) == l.bytes_written);
    CHECK(query_real(path, "SELECT start_s" + lw) == l.start_s);
    CHECK(query_real(path, "SELECT end_s" + lw) == l.end_s);
    CHECK(query_real(path, "SELECT time_s" + lw) == l.time_s);
    CHECK(query_int(path, "SELECT cycles" + lw) == l.cycles);
    CHECK(query_int(path, "SELECT stall_cycles" + lw) == l.stall_cycles);
    CHECK(query_real(path, "SELECT energy_j" + lw) == l.energy_j);
    CHECK(query_real(path, "SELECT energy_compute_j" + lw) == l.energy_compute_j);
    CHECK(query_real(path, "SELECT energy_memory_j" + lw) == l.energy_memory_j);
    CHECK(query_real(path, "SELECT energy_static_j" + lw) == l.energy_static_j);
    CHECK(query_real(path, "SELECT utilization" + lw) == l.utilization);
}

TEST_CASE("total_time_s is the span of overlapping layers, not the sum of their times", "[db]") {
    TempDir dir;
    std::string path = dir.file("r.db");
    std::vector<LayerRow> layers = sample_layers(2);
    layers[0].start_s = 1e-6;
    layers[0].end_s = 4e-6;
    layers[0].time_s = 3e-6;
    layers[1].start_s = 2e-6;
    layers[1].end_s = 5e-6;
    layers[1].time_s = 2e-6;  // busy for part of its interval
    ResultsDb db(path);
    int64_t id = db.record_run(sample_info(), layers, 0);
    CHECK(query_real(path, fmt::format("SELECT total_time_s FROM runs WHERE run_id = {}", id)) ==
          5e-6 - 1e-6);
}

TEST_CASE("an explicit config_hash is stored as given and a run without layers has zero totals", "[db]") {
    TempDir dir;
    std::string path = dir.file("r.db");
    RunInfo info = sample_info();
    info.config_hash = "sweep-point-17";
    ResultsDb db(path);
    db.record_run(info, {}, 0.0);
    CHECK(query_text(path, "SELECT config_hash FROM runs") == "sweep-point-17");
    CHECK(query_real(path, "SELECT total_time_s + total_energy_j + layer_count FROM runs") == 0.0);
    CHECK(db.has_ok_run("sweep-point-17"));
}

TEST_CASE("reopening an existing file appends and never truncates", "[db]") {
    TempDir dir;
    std::string path = dir.file("r.db");
    {
        ResultsDb db(path);
        CHECK(db.record_run(sample_info("a: 1\n"), sample_layers(5), 1.0) == 1);
        CHECK(db.record_run(sample_info("a: 2\n"), sample_layers(6), 1.0) == 2);
    }
    {
        ResultsDb db(path);
        CHECK(db.has_ok_run(mlsim::db::config_hash("a: 1\n")));
        CHECK(db.record_run(sample_info("a: 3\n"), sample_layers(7), 1.0) == 3);
    }
    CHECK(query_int(path, "SELECT COUNT(*) FROM runs") == 3);
    CHECK(query_int(path, "SELECT COUNT(*) FROM layers") == 5 + 6 + 7);
    CHECK(query_text(path, "SELECT config_yaml FROM runs WHERE run_id = 1") == "a: 1\n");
}

TEST_CASE("failed runs keep their message, have no layers and do not count as done", "[db]") {
    TempDir dir;
    std::string path = dir.file("r.db");
    RunInfo info = sample_info("device: nope\n");
    std::string hash = mlsim::db::config_hash(info.config_yaml);
    ResultsDb db(path);
    CHECK_FALSE(db.has_ok_run(hash));
    int64_t id = db.record_failed_run(info, "configs/x.yaml:3:9: error: device: unknown device 'nope'", 0.01);
    CHECK(query_text(path, "SELECT status FROM runs") == "error");
    CHECK(query_text(path, "SELECT error FROM runs") ==
          "configs/x.yaml:3:9: error: device: unknown device 'nope'");
    CHECK(query_int(path, "SELECT total_time_s IS NULL AND total_energy_j IS NULL FROM runs") == 1);
    CHECK(query_int(path, fmt::format("SELECT COUNT(*) FROM layers WHERE run_id = {}", id)) == 0);
    CHECK_FALSE(db.has_ok_run(hash));
    db.record_run(info, sample_layers(1), 0.01);
    CHECK(db.has_ok_run(hash));
    CHECK_FALSE(db.has_ok_run(mlsim::db::config_hash("device: other\n")));
}

TEST_CASE("equal inputs write identical layer rows", "[db]") {
    TempDir dir;
    std::string path = dir.file("r.db");
    {
        ResultsDb db(path);
        db.record_run(sample_info(), sample_layers(50), 0.5);
        db.record_run(sample_info(), sample_layers(50), 0.7);
    }
    // Every layers column except run_id, taken from the schema so new columns are compared too.
    std::string cols;
    for (const auto& table : mlsim::db::schema::tables())
        if (table.name == "layers")
            for (const auto& c : table.columns)
                if (c.name != "run_id") cols += fmt::format("{}{}", cols.empty() ? "" : ", ", c.name);
    REQUIRE(cols.find("energy_j") != std::string::npos);
    // EXCEPT compares REAL values exactly, bit for bit.
    std::string one = fmt::format("SELECT {} FROM layers WHERE run_id = 1", cols);
    std::string two = fmt::format("SELECT {} FROM layers WHERE run_id = 2", cols);
    CHECK(query_int(path, "SELECT COUNT(*) FROM layers WHERE run_id = 2") == 50);
    CHECK(query_int(path, fmt::format("SELECT COUNT(*) FROM ({} EXCEPT {})", one, two)) == 0);
    CHECK(query_int(path, fmt::format("SELECT COUNT(*) FROM ({} EXCEPT {})", two, one)) == 0);
    // And the comparison can fail: a different layer list differs.
    {
        ResultsDb db(path);
        auto layers = sample_layers(50);
        layers[7].energy_static_j = 2e-8;
        layers[7].energy_j += 1e-8;
        db.record_run(sample_info(), layers, 0.5);
    }
    std::string three = fmt::format("SELECT {} FROM layers WHERE run_id = 3", cols);
    CHECK(query_int(path, fmt::format("SELECT COUNT(*) FROM ({} EXCEPT {})", three, one)) == 1);
}

TEST_CASE("rows that break physics are refused as internal errors and nothing is written", "[db]") {
    TempDir dir;
    std::string path = dir.file("r.db");
    ResultsDb db(path);
    const double nan = std::numeric_limits<double>::quiet_NaN();
    const double inf = std::numeric_limits<double>::infinity();
    using Mutation = std::function<void(LayerRow&)>;
    std::vector<std::pair<const char*, Mutation>> cases{
        {"NaN time", [&](LayerRow& l) { l.time_s = nan; }},
        {"negative time", [](LayerRow& l) { l.time_s = -1e-9; }},
        {"NaN energy", [&](LayerRow& l) { l.energy_j = nan; }},
        {"negative total energy", [](LayerRow& l) { l.energy_j = -1; }},
        {"negative component energy", [](LayerRow& l) { l.energy_memory_j = -1e-9; }},
        {"negative bytes read", [](LayerRow& l) { l.bytes_read = -1; }},
        {"negative bytes written", [](LayerRow& l) { l.bytes_written = -1; }},
        {"infinite flops", [&](LayerRow& l) { l.flops = inf; }},
        {"negative cycles", [](LayerRow& l) { l.cycles = -1; }},
        {"more stall cycles than cycles", [](LayerRow& l) { l.stall_cycles = l.cycles + 1; }},
        {"end before start", [](LayerRow& l) { l.end_s = l.start_s - 1e-9; }},
        {"busy longer than its interval", [](LayerRow& l) { l.time_s = (l.end_s - l.start_s) * 1.01; }},
        {"energy below the sum of its parts", [](LayerRow& l) { l.energy_j *= 0.5; }},
        {"utilization above one", [](LayerRow& l) { l.utilization = 1.5; }},
        {"duplicate idx", [](LayerRow& l) { l.idx = 0; }},
    };
    for (const auto& [what, mutate] : cases) {
        INFO(what);
        auto layers = sample_layers(4);
        mutate(layers[2]);
        CHECK_THROWS_AS(db.record_run(sample_info(), layers, 1.0), InternalError);
    }
    RunInfo bad = sample_info();
    bad.peak_flops_per_s = nan;
    CHECK_THROWS_AS(db.record_run(bad, sample_layers(2), 1.0), InternalError);
    CHECK_THROWS_AS(db.record_run(sample_info(), sample_layers(2), -1.0), InternalError);
    CHECK_THROWS_AS(db.record_failed_run(sample_info(), "x", nan), InternalError);
    CHECK_THROWS_AS(db.record_run(sample_info(""), sample_layers(2), 1.0), InternalError);
    CHECK(query_int(path, "SELECT COUNT(*) FROM runs") == 0);
    CHECK(query_int(path, "SELECT COUNT(*) FROM layers") == 0);
    // The refusals left the database usable.
    CHECK(db.record_run(sample_info(), sample_layers(4), 1.0) == 1);
}

TEST_CASE("a failure halfway through a run's layers rolls the whole run back", "[db]") {
    TempDir dir;
    std::string path = dir.file("r.db");
    ResultsDb db(path);
    db.record_run(sample_info("first\n"), sample_layers(10), 1.0);
    {
        sql::Connection raw(path, sql::Connection::Mode::read_write_create);
        raw.exec(
            "CREATE TRIGGER fail_midway BEFORE INSERT ON layers WHEN NEW.idx = 150 "
            "BEGIN SELECT RAISE(ABORT, 'injected failure'); END");
    }
    CHECK_THROWS(db.record_run(sample_info("second\n"), sample_layers(200), 1.0));
    CHECK(query_int(path, "SELECT COUNT(*) FROM runs") == 1);
    CHECK(query_int(path, "SELECT COUNT(*) FROM layers") == 10);
    {
        sql::Connection raw(path, sql::Connection::Mode::read_write_create);
        raw.exec("DROP TRIGGER fail_midway");
    }
    CHECK(db.record_run(sample_info("second\n"), sample_layers(200), 1.0) == 2);
    CHECK(query_int(path, "SELECT COUNT(*) FROM layers WHERE run_id = 2") == 200);
}

TEST_CASE("a file that is not an SQLite database is a user error naming the path, and is left alone",
          "[db]") {
    TempDir dir;
    std::string path = dir.file("notes.db");
    std::string text;
    for (int i = 0; i < 200; ++i) text += "these are my notes, not a database\n";
    std::ofstream(path, std::ios::binary) << text;
    try {
        ResultsDb db(path);
        FAIL("opened a text file as a results database");
    } catch (const UserError& e) {
        CHECK_THAT(e.what(), Catch::Contains(path));
    }
    CHECK(file_bytes(path) == text);
}

TEST_CASE("a path that cannot be created is a user error naming the path", "[db]") {
    TempDir dir;
    std::string blocker = dir.file("plain_file");
    std::ofstream(blocker) << "x";
    std::string under_file = blocker + "/study/results.db";
    CHECK_THROWS_WITH(ResultsDb(under_file), Catch::Contains(under_file));
    CHECK_THROWS_AS(ResultsDb(under_file), UserError);
    std::string a_directory = dir.file("");
    CHECK_THROWS_AS(ResultsDb(a_directory), UserError);
}

TEST_CASE("an SQLite file written by another tool is refused and left intact", "[db]") {
    TempDir dir;
    std::string path = dir.file("other.sqlite");
    {
        sql::Connection raw(path, sql::Connection::Mode::read_write_create);
        raw.exec("CREATE TABLE inventory (item TEXT); INSERT INTO inventory VALUES ('bolts')");
    }
    CHECK_THROWS_WITH(ResultsDb(path), Catch::Contains(path) && Catch::Contains("not written by mlsim"));
    CHECK(query_text(path, "SELECT item FROM inventory") == "bolts");
    CHECK(query_int(path, "SELECT COUNT(*) FROM sqlite_schema WHERE name = 'runs'") == 0);
}

TEST_CASE("a file from a newer schema version is refused", "[db]") {
    TempDir dir;
    std::string path = dir.file("r.db");
    { ResultsDb db(path); }
    {
        sql::Connection raw(path, sql::Connection::Mode::read_write_create);
        raw.exec(fmt::format("UPDATE meta SET value = '{}' WHERE key = 'schema_version'",
                             mlsim::db::schema::current_version + 1));
    }
    CHECK_THROWS_WITH(ResultsDb(path), Catch::Contains(path) && Catch::Contains("newer"));
}

TEST_CASE("opening an older file adds the missing columns and keeps its rows", "[db]") {
    TempDir dir;
    std::string path = dir.file("r.db");
    {
        ResultsDb db(path);
        db.record_run(sample_info("old\n"), sample_layers(4), 2.0);
    }
    // Make it look like a file from before these columns existed.
    {
        sql::Connection raw(path, sql::Connection::Mode::read_write_create);
        raw.exec(
            "ALTER TABLE runs DROP COLUMN total_energy_static_j; ALTER TABLE runs DROP COLUMN layer_count; "
            "ALTER TABLE layers DROP COLUMN energy_static_j; ALTER TABLE layers DROP COLUMN bound; "
            "UPDATE meta SET value = '0' WHERE key = 'schema_version'");
    }
    REQUIRE_FALSE(column_names(path, "layers").contains("bound"));
    {
        ResultsDb db(path);
        db.record_run(sample_info("new\n"), sample_layers(3), 1.0);
    }
    CHECK(column_names(path, "layers").contains("bound"));
    CHECK(column_names(path, "layers").contains("energy_static_j"));
    CHECK(column_names(path, "runs").contains("layer_count"));
    CHECK(query_text(path, "SELECT value FROM meta WHERE key = 'schema_version'") ==
          std::to_string(mlsim::db::schema::current_version));
    // Old rows: intact, with NULL in the added columns. New rows: complete.
    CHECK(query_text(path, "SELECT config_yaml FROM runs WHERE run_id = 1") == "old\n");
    CHECK(query_int(path, "SELECT COUNT(*) FROM layers WHERE run_id = 1") == 4);
    CHECK(query_int(path, "SELECT COUNT(*) FROM layers WHERE run_id = 1 AND bound IS NULL") == 4);
    CHECK(query_real(path, "SELECT SUM(flops) FROM layers WHERE run_id = 1") == (2 + 4 + 6 + 8) * 1e6);
    CHECK(query_int(path, "SELECT layer_count FROM runs WHERE run_id = 2") == 3);
    CHECK(query_int(path, "SELECT COUNT(*) FROM layers WHERE run_id = 2 AND bound IS NOT NULL") == 3);
}

TEST_CASE("concurrent writers, threads sharing one ResultsDb or each with its own, lose no run", "[db]") {
    TempDir dir;
    std::string path = dir.file("r.db");
    constexpr int k_runs_per_thread = 15;
    constexpr int k_layers = 40;
    {
        ResultsDb shared(path);
        auto shared_writer = [&](int t) {
            for (int i = 0; i < k_runs_per_thread; ++i)
                shared.record_run(sample_info(fmt::format("shared {} {}\n", t, i)), sample_layers(k_layers),
                                  0);
        };
        auto own_writer = [&](int t) {
            ResultsDb own(path);
            for (int i = 0; i < k_runs_per_thread; ++i)
                own.record_run(sample_info(fmt::format("own {} {}\n", t, i)), sample_layers(k_layers), 0);
        };
        std::vector<std::thread> threads;
        threads.emplace_back(shared_writer, 0);
        threads.emplace_back(shared_writer, 1);
        threads.emplace_back(own_writer, 2);
        threads.emplace_back(own_writer, 3);
        for (auto& th : threads) th.join();
    }
    CHECK(query_int(path, "SELECT COUNT(*) FROM runs") == 4 * k_runs_per_thread);
    CHECK(query_int(path, "SELECT COUNT(DISTINCT config_hash) FROM runs") == 4 * k_runs_per_thread);
    CHECK(query_int(path, "SELECT COUNT(*) FROM layers") == 4 * k_runs_per_thread * k_layers);
    CHECK(query_int(path, fmt::format("SELECT COUNT(*) FROM (SELECT run_id FROM layers GROUP BY run_id "
                                      "HAVING COUNT(*) != {})",
                                      k_layers)) == 0);
}
