#include <fmt/format.h>
#include <sys/stat.h>
#include <unistd.h>

#include <catch2/catch.hpp>
#include <cmath>
#include <cstring>
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
#include "tests/db/temp_dir.h"

namespace fs = std::filesystem;
using mlsim::InternalError;
using mlsim::cfg::UserError;
using mlsim::db::LayerRow;
using mlsim::db::LevelRow;
using mlsim::db::MetricRow;
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

// Splits time_s with every part in use and the bound's part the largest: compute-bound for even i.
void split_time(LayerRow& l, int i) {
    l.overhead_s = 0.05 * l.time_s;
    l.communication_s = i % 3 == 0 ? 0.1 * l.time_s : 0.0;
    (i % 2 == 0 ? l.memory_s : l.compute_s) = 0.2 * l.time_s;
    (i % 2 == 0 ? l.compute_s : l.memory_s) = l.time_s - 0.2 * l.time_s - l.overhead_s - l.communication_s;
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
        split_time(l, i);
        l.levels = {LevelRow{"sram", 8192.0 * (i + 1), 2048.0 * (i + 1), 64 * (i + 1), 1e-7 * (i + 1)},
                    LevelRow{"dram", l.bytes_read, l.bytes_written, 0, 4e-7 * (i % 4 + 1)}};
        l.metrics = {MetricRow{"pe_hops", 1000.0 * i, "count", ""},
                     MetricRow{"stall_weight_cycles", 3.0 * (i % 3), "cycles", ""}};
        if (i % 2 == 0)
            l.metrics.push_back(MetricRow{"tiling", std::nullopt, "", fmt::format("m={} n=8", i + 1)});
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
    for (const char* col : {"run_id",
                            "status",
                            "error",
                            "config_yaml",
                            "config_hash",
                            "version",
                            "wall_s",
                            "created_utc",
                            "system",
                            "device",
                            "model",
                            "mode",
                            "dtype",
                            "batch",
                            "seq",
                            "peak_flops_per_s",
                            "mem_bandwidth_Bps",
                            "total_time_s",
                            "total_energy_j",
                            "average_power_w",
                            "tdp_w",
                            "over_tdp",
                            "total_compute_s",
                            "total_memory_s",
                            "total_overhead_s",
                            "total_communication_s"})
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
                            "bound",
                            "compute_s",
                            "memory_s",
                            "overhead_s",
                            "communication_s",
                            "levels",
                            "metrics"})
        CHECK(layers.contains(col));
    // What differs by family lives in long-format tables, not in per-family layer columns.
    for (const char* col : {"stall_weight_cycles", "pe_hops", "tiling", "energy_sram_j", "bytes_ifmap_read"})
        CHECK_FALSE(layers.contains(col));
    CHECK(column_names(path, "layer_levels") == std::set<std::string>{"run_id", "idx", "level", "bytes_read",
                                                                      "bytes_written", "accesses",
                                                                      "energy_j"});
    CHECK(column_names(path, "layer_metrics") ==
          std::set<std::string>{"run_id", "idx", "name", "value", "unit", "text"});
    // Schema 9: layer_metrics is a view, metrics named by id in metric_names; schema 10: both views over the
    // objects in layers.levels and layers.metrics.
    CHECK(query_text(path, "SELECT type FROM sqlite_schema WHERE name = 'layer_metrics'") == "view");
    CHECK(query_text(path, "SELECT type FROM sqlite_schema WHERE name = 'layer_levels'") == "view");
    CHECK(column_names(path, "metric_names") == std::set<std::string>{"metric_id", "name", "unit"});
    CHECK(query_int(path, "SELECT COUNT(*) FROM sqlite_schema WHERE name = 'layer_metric_values'") == 0);
    CHECK(column_names(path, "meta") == std::set<std::string>{"key", "value"});
    // Schema 11: `layers` is a view over layer_results and layer_defs (what the workload says a layer is,
    // once). Schema 12: layer_results is keyed by layer_row alone (a rowid table, no other index), each
    // run's range of it in runs.
    CHECK(query_text(path, "SELECT type FROM sqlite_schema WHERE name = 'layers'") == "view");
    CHECK(query_text(path, "SELECT name FROM pragma_table_info('layer_results') WHERE pk > 0") ==
          "layer_row");
    CHECK(query_int(path, "SELECT COUNT(*) FROM sqlite_schema WHERE tbl_name = 'layer_results'") == 1);
    CHECK(query_int(path,
                    "SELECT COUNT(*) FROM pragma_table_info('runs') WHERE name IN ('first_layer_row', "
                    "'last_layer_row')") == 2);
    CHECK(column_names(path, "layer_defs") ==
          std::set<std::string>{"def_id", "name", "op", "phase", "dtype", "macs", "flops", "params"});
    std::set<std::string> results = column_names(path, "layer_results");
    for (const char* col : {"name", "op", "phase", "dtype", "macs", "flops", "params"})
        CHECK_FALSE(results.contains(col));
    CHECK(results.size() == layers.size() - 7 + 2);  // + def_id, layer_row
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
    CHECK(query_real(path, "SELECT compute_s" + lw) == l.compute_s);
    CHECK(query_real(path, "SELECT memory_s" + lw) == l.memory_s);
    CHECK(query_real(path, "SELECT overhead_s" + lw) == l.overhead_s);
    CHECK(query_real(path, "SELECT communication_s" + lw) == l.communication_s);

    // Its levels and metrics, as given.
    CHECK(query_int(path, "SELECT COUNT(*) FROM layer_levels WHERE run_id = 1") == 3 * 2);
    std::string vw = " FROM layer_levels WHERE run_id = 1 AND idx = 1 AND level = 'sram'";
    CHECK(query_real(path, "SELECT bytes_read" + vw) == l.levels[0].bytes_read);
    CHECK(query_real(path, "SELECT bytes_written" + vw) == l.levels[0].bytes_written);
    CHECK(query_int(path, "SELECT accesses" + vw) == l.levels[0].accesses);
    CHECK(query_real(path, "SELECT energy_j" + vw) == l.levels[0].energy_j);
    CHECK(query_real(path,
                     "SELECT bytes_read FROM layer_levels WHERE run_id = 1 AND idx = 1 AND level = 'dram'") ==
          l.bytes_read);
    CHECK(query_int(path, "SELECT COUNT(*) FROM layer_metrics WHERE run_id = 1") ==
          3 * 2 + 2);  // tilings: 0, 2
    std::string mw = " FROM layer_metrics WHERE run_id = 1 AND idx = 1 AND name = 'pe_hops'";
    CHECK(query_real(path, "SELECT value" + mw) == 1000.0);
    CHECK(query_text(path, "SELECT unit" + mw) == "count");
    CHECK(query_int(path, "SELECT text IS NULL" + mw) == 1);
    std::string tw = " FROM layer_metrics WHERE run_id = 1 AND idx = 2 AND name = 'tiling'";
    CHECK(query_text(path, "SELECT text" + tw) == "m=3 n=8");
    CHECK(query_int(path, "SELECT value IS NULL AND unit IS NULL" + tw) == 1);
    CHECK(query_int(path,
                    "SELECT COUNT(*) FROM layer_metrics WHERE run_id = 1 AND idx = 1 AND name = 'tiling'") ==
          0);

    // Run totals of the time split and the average power over the run's span; the TDP was not given.
    CHECK(query_real(path, "SELECT total_compute_s" + where) ==
          layers[0].compute_s + layers[1].compute_s + layers[2].compute_s);
    CHECK(query_real(path, "SELECT total_memory_s" + where) ==
          layers[0].memory_s + layers[1].memory_s + layers[2].memory_s);
    CHECK(query_real(path, "SELECT total_overhead_s" + where) ==
          layers[0].overhead_s + layers[1].overhead_s + layers[2].overhead_s);
    CHECK(query_real(path, "SELECT total_communication_s" + where) ==
          layers[0].communication_s + layers[1].communication_s + layers[2].communication_s);
    CHECK(query_real(path, "SELECT average_power_w" + where) ==
          energy / (layers[2].end_s - layers[0].start_s));
    CHECK(query_int(path, "SELECT tdp_w IS NULL AND over_tdp IS NULL" + where) == 1);
}

TEST_CASE("over_tdp says whether the average power exceeds the device's TDP, and is unknown without one",
          "[db]") {
    TempDir dir;
    std::string path = dir.file("r.db");
    ResultsDb db(path);
    std::vector<LayerRow> layers = sample_layers(4);
    double energy = 0;
    for (const LayerRow& l : layers) energy += l.energy_j;
    const double power = energy / layers.back().end_s;
    const auto over_tdp = [&](double tdp) {
        RunInfo info = sample_info(fmt::format("tdp: {}\n", tdp));
        info.tdp_W = tdp;
        int64_t id = db.record_run(info, layers, 0);
        std::string where = fmt::format(" FROM runs WHERE run_id = {}", id);
        CHECK(query_real(path, "SELECT average_power_w" + where) == power);
        if (tdp == 0) {
            CHECK(query_int(path, "SELECT tdp_w IS NULL AND over_tdp IS NULL" + where) == 1);
            return std::string("unknown");
        }
        CHECK(query_real(path, "SELECT tdp_w" + where) == tdp);
        return std::to_string(query_int(path, "SELECT over_tdp" + where));
    };
    CHECK(over_tdp(power * 0.5) == "1");
    CHECK(over_tdp(power * (1 - 1e-6)) == "1");
    CHECK(over_tdp(power) == "0");                // at the TDP is not over it
    CHECK(over_tdp(power * (1 - 1e-12)) == "0");  // nor within rounding of it
    CHECK(over_tdp(power * 2) == "0");
    CHECK(over_tdp(0) == "unknown");
    // A failed run has no power: its TDP is kept, the comparison unknown.
    RunInfo failed = sample_info("failed\n");
    failed.tdp_W = 300;
    int64_t id = db.record_failed_run(failed, "x", 0);
    CHECK(
        query_int(path, fmt::format("SELECT tdp_w = 300 AND over_tdp IS NULL AND average_power_w IS NULL AND "
                                    "total_compute_s IS NULL FROM runs WHERE run_id = {}",
                                    id)) == 1);
    // A run without layers has no span to average over.
    RunInfo empty = sample_info("empty\n");
    empty.tdp_W = 300;
    id = db.record_run(empty, std::vector<LayerRow>{}, 0);
    CHECK(query_int(path,
                    fmt::format("SELECT average_power_w IS NULL AND over_tdp IS NULL AND total_compute_s = 0 "
                                "FROM runs WHERE run_id = {}",
                                id)) == 1);
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
    split_time(layers[0], 0);
    split_time(layers[1], 1);
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
    db.record_run(info, std::vector<LayerRow>{}, 0.0);
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
    // Every layers column except run_id, taken from the file so new columns are compared too.
    std::string cols;
    for (const std::string& c : column_names(path, "layers"))
        if (c != "run_id") cols += fmt::format("{}{}", cols.empty() ? "" : ", ", c);
    REQUIRE(cols.find("energy_j") != std::string::npos);
    REQUIRE(cols.find("name") != std::string::npos);
    // The second run's layers name the first one's definitions (schema 11): 50 distinct, stored once.
    CHECK(query_int(path, "SELECT COUNT(*) FROM layer_defs") == 50);
    CHECK(query_int(
              path,
              "SELECT COUNT(*) FROM layer_results a JOIN layer_results b ON b.run_id = 2 AND b.idx = a.idx "
              "AND b.def_id = a.def_id WHERE a.run_id = 1") == 50);
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
    // The long-format rows too.
    for (const char* table : {"layer_levels", "layer_metrics"}) {
        INFO(table);
        const std::string long_cols = table == std::string("layer_metrics")
                                          ? "idx, name, value, unit, text"
                                          : "idx, level, bytes_read, bytes_written, accesses, energy_j";
        std::string a = fmt::format("SELECT {} FROM {} WHERE run_id = 1", long_cols, table);
        std::string b = fmt::format("SELECT {} FROM {} WHERE run_id = 2", long_cols, table);
        CHECK(query_int(path, fmt::format("SELECT COUNT(*) FROM {} WHERE run_id = 2", table)) >= 100);
        CHECK(query_int(path, fmt::format("SELECT COUNT(*) FROM ({} EXCEPT {})", a, b)) == 0);
        CHECK(query_int(path, fmt::format("SELECT COUNT(*) FROM ({} EXCEPT {})", b, a)) == 0);
    }
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
        // The time split (layer 2 is compute-bound: compute 0.75, memory 0.2, overhead 0.05 of its time).
        {"time parts that do not add up", [](LayerRow& l) { l.memory_s += 1e-6 * l.time_s; }},
        {"a negative time part",
         [](LayerRow& l) {
             l.compute_s += 2 * l.overhead_s;
             l.overhead_s = -l.overhead_s;
         }},
        {"a NaN time part", [&](LayerRow& l) { l.communication_s = nan; }},
        {"a bound that is not the largest part", [](LayerRow& l) { l.bound = "memory"; }},
        {"a bound that names no part", [](LayerRow& l) { l.bound = "io"; }},
        {"no bound", [](LayerRow& l) { l.bound.clear(); }},
        // Levels (sram, dram).
        {"negative level bytes read", [](LayerRow& l) { l.levels[0].bytes_read = -1; }},
        {"infinite level bytes written", [&](LayerRow& l) { l.levels[1].bytes_written = inf; }},
        {"NaN level energy", [&](LayerRow& l) { l.levels[1].energy_j = nan; }},
        {"negative level energy", [](LayerRow& l) { l.levels[0].energy_j = -1e-12; }},
        {"negative accesses", [](LayerRow& l) { l.levels[0].accesses = -1; }},
        {"a level twice", [](LayerRow& l) { l.levels[1].level = "sram"; }},
        {"an unnamed level", [](LayerRow& l) { l.levels[0].level.clear(); }},
        // Metrics (pe_hops, stall_weight_cycles, tiling).
        {"a metric twice", [](LayerRow& l) { l.metrics[1].name = "pe_hops"; }},
        {"an unnamed metric", [](LayerRow& l) { l.metrics[0].name.clear(); }},
        {"a metric with a value and a text", [](LayerRow& l) { l.metrics[0].text = "many"; }},
        {"a metric with neither value nor text", [](LayerRow& l) { l.metrics[0].value.reset(); }},
        {"a text metric with an empty text", [](LayerRow& l) { l.metrics[2].text.clear(); }},
        {"an infinite metric value", [&](LayerRow& l) { l.metrics[0].value = inf; }},
        {"a NaN metric value", [&](LayerRow& l) { l.metrics[1].value = nan; }},
        {"a numeric metric without a unit", [](LayerRow& l) { l.metrics[1].unit.clear(); }},
        {"a text metric with a unit", [](LayerRow& l) { l.metrics[2].unit = l.metrics[1].unit; }},
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
    bad = sample_info();
    bad.tdp_W = -1;
    CHECK_THROWS_AS(db.record_run(bad, sample_layers(2), 1.0), InternalError);
    bad.tdp_W = inf;
    CHECK_THROWS_AS(db.record_failed_run(bad, "x", 1.0), InternalError);
    CHECK(query_int(path, "SELECT COUNT(*) FROM runs") == 0);
    CHECK(query_int(path, "SELECT COUNT(*) FROM layers") == 0);
    CHECK(query_int(path, "SELECT COUNT(*) FROM layer_levels") == 0);
    CHECK(query_int(path, "SELECT COUNT(*) FROM layer_metrics") == 0);
    // The refusals left the database usable.
    CHECK(db.record_run(sample_info(), sample_layers(4), 1.0) == 1);
}

TEST_CASE("the time parts must sum to time_s within 1e-9 relative plus 1e-15 s", "[db]") {
    TempDir dir;
    std::string path = dir.file("r.db");
    ResultsDb db(path);
    const auto off_by = [](double excess, double time_s) {
        std::vector<LayerRow> layers = sample_layers(1);
        LayerRow& l = layers[0];
        l.time_s = time_s;
        l.end_s = l.start_s + time_s;
        l.memory_s = l.overhead_s = l.communication_s = 0;
        l.compute_s = time_s + excess;
        return layers;
    };
    // 1 ms: the relative part dominates (slack 1e-12 s + 1e-15 s).
    CHECK_NOTHROW(db.record_run(sample_info("a\n"), off_by(0.9e-12, 1e-3), 0));
    CHECK_NOTHROW(db.record_run(sample_info("b\n"), off_by(-0.9e-12, 1e-3), 0));
    CHECK_THROWS_AS(db.record_run(sample_info("c\n"), off_by(1.2e-12, 1e-3), 0), InternalError);
    CHECK_THROWS_AS(db.record_run(sample_info("d\n"), off_by(-1.2e-12, 1e-3), 0), InternalError);
    // A zero-time layer: only the absolute part.
    CHECK_NOTHROW(db.record_run(sample_info("e\n"), off_by(0.9e-15, 0), 0));
    CHECK_THROWS_AS(db.record_run(sample_info("f\n"), off_by(1.1e-15, 0), 0), InternalError);
    CHECK(query_int(path, "SELECT COUNT(*) FROM runs") == 3);
}

TEST_CASE("deleting from the view layers deletes the rows of layer_results and keeps the definitions",
          "[db]") {
    TempDir dir;
    std::string path = dir.file("r.db");
    {
        ResultsDb db(path);
        db.record_run(sample_info("a\n"), sample_layers(5), 1.0);
        db.record_run(sample_info("b\n"), sample_layers(7), 1.0);
    }
    const int64_t defs = query_int(path, "SELECT COUNT(*) FROM layer_defs");
    REQUIRE(defs == 7);  // the first run's five are the second run's first five
    {
        sql::Connection raw(path, sql::Connection::Mode::read_write_create);
        raw.exec("DELETE FROM layers WHERE run_id = 1; DELETE FROM layers WHERE run_id = 2 AND idx >= 5");
    }
    CHECK(query_int(path, "SELECT COUNT(*) FROM layer_results WHERE run_id = 1") == 0);
    CHECK(query_int(path, "SELECT COUNT(*) FROM layer_results WHERE run_id = 2") == 5);
    CHECK(query_int(path, "SELECT COUNT(*) FROM layers") == 5);
    CHECK(query_int(path, "SELECT COUNT(*) FROM layer_defs") == defs);
    // The file opens again as mlsim's, and takes new runs.
    {
        ResultsDb db(path);
        db.record_run(sample_info("c\n"), sample_layers(2), 1.0);
    }
    CHECK(query_int(path, "SELECT COUNT(*) FROM layers WHERE run_id = 3") == 2);
    // Another trigger under the name mlsim keeps is not mlsim's: refused, naming it.
    {
        sql::Connection raw(path, sql::Connection::Mode::read_write_create);
        raw.exec(
            "DROP TRIGGER layers_delete; CREATE TRIGGER layers_delete INSTEAD OF DELETE ON layers BEGIN "
            "SELECT 1; "
            "END");
    }
    CHECK_THROWS_WITH(ResultsDb(path), Catch::Contains(path) && Catch::Contains("layers_delete"));
}

TEST_CASE("a failure halfway through a run's layers rolls the whole run back", "[db]") {
    TempDir dir;
    std::string path = dir.file("r.db");
    ResultsDb db(path);
    db.record_run(sample_info("first\n"), sample_layers(10), 1.0);
    {
        sql::Connection raw(path, sql::Connection::Mode::read_write_create);
        raw.exec(
            "CREATE TRIGGER fail_midway BEFORE INSERT ON layer_results WHEN NEW.idx = 150 "
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

TEST_CASE("an in-memory database or a URI is refused before anything is made", "[db]") {
    // ':memory:' failed to use write-ahead logging ("is it on a network filesystem?"); a URI made a
    // directory "file:" under the working directory, then failed to open.
    CHECK_THROWS_WITH(ResultsDb(":memory:"), Catch::Contains("give the path of a file"));
    TempDir dir;
    const std::string uri = "file:" + dir.file("sub/u.db") + "?mode=ro";
    CHECK_THROWS_WITH(ResultsDb(uri), Catch::Contains("give the path of a file"));
    CHECK_FALSE(std::filesystem::exists("file:"));
}

TEST_CASE("a file whose meta lost its schema_version row is refused, its runs kept", "[db]") {
    // It read as a brand-new file: the migration made `layers` again over the view, an internal error.
    TempDir dir;
    std::string path = dir.file("r.db");
    {
        ResultsDb db(path);
        db.record_run(sample_info("kept\n"), sample_layers(3), 1.0);
    }
    {
        sql::Connection raw(path, sql::Connection::Mode::read_write_create);
        raw.exec("DELETE FROM meta WHERE key = 'schema_version'");
    }
    CHECK_THROWS_AS(ResultsDb(path), mlsim::cfg::UserError);
    CHECK_THROWS_WITH(ResultsDb(path), Catch::Contains(path) && Catch::Contains("no schema_version row"));
    CHECK(query_int(path, "SELECT COUNT(*) FROM runs") == 1);
}

namespace {

// Schema 10's table `layers` and its views over it, as mlsim 9d1449a made them.
constexpr const char* k_v10_layers_table =
    "CREATE TABLE v10_layers (run_id INTEGER NOT NULL REFERENCES runs(run_id), idx INTEGER NOT NULL, name "
    "TEXT NOT "
    "NULL, op TEXT NOT NULL, phase TEXT, dtype TEXT, macs REAL, flops REAL, params INTEGER, bytes_read REAL, "
    "bytes_written REAL, start_s REAL, end_s REAL, time_s REAL, cycles INTEGER, stall_cycles INTEGER, "
    "energy_j "
    "REAL, energy_compute_j REAL, energy_memory_j REAL, energy_static_j REAL, utilization REAL, bound TEXT, "
    "compute_s REAL, memory_s REAL, overhead_s REAL, communication_s REAL, levels TEXT, metrics TEXT, "
    "PRIMARY KEY "
    "(run_id, idx)) WITHOUT ROWID";
constexpr const char* k_v10_views =
    "CREATE VIEW layer_levels AS SELECT l.run_id AS run_id, l.idx AS idx, v.key AS level, "
    "CAST(json_extract(v.value, '$[0]') AS REAL) AS bytes_read, CAST(json_extract(v.value, '$[1]') AS REAL) "
    "AS "
    "bytes_written, json_extract(v.value, '$[2]') AS accesses, CAST(json_extract(v.value, '$[3]') AS REAL) "
    "AS "
    "energy_j FROM layers l JOIN json_each(l.levels) v; "
    "CREATE VIEW layer_metrics AS SELECT l.run_id AS run_id, l.idx AS idx, n.name AS name, CASE WHEN m.type "
    "IN "
    "('integer', 'real') THEN CAST(m.atom AS REAL) END AS value, NULLIF(n.unit, '') AS unit, CASE WHEN "
    "m.type = "
    "'text' THEN m.atom END AS text FROM layers l JOIN json_each(l.metrics) m JOIN metric_names n ON "
    "n.metric_id "
    "= CAST(m.key AS INTEGER)";

// Turns a current file into what schema 10 wrote: the table `layers` (every column of the view of that name),
// schema 10's views over it, no layer_defs or layer_results, version 10.
void make_schema_10(const std::string& path) {
    sql::Connection raw(path, sql::Connection::Mode::read_write_create);
    raw.exec("PRAGMA foreign_keys = OFF; BEGIN");
    raw.exec(k_v10_layers_table);
    raw.exec("INSERT INTO v10_layers SELECT * FROM layers");
    raw.exec(
        "DROP VIEW layer_levels; DROP VIEW layer_metrics; DROP VIEW layers; DROP TABLE layer_results; DROP "
        "TABLE "
        "layer_defs; ALTER TABLE v10_layers RENAME TO layers");
    raw.exec(k_v10_views);
    raw.exec("UPDATE meta SET value = '10' WHERE key = 'schema_version'; COMMIT");
}

}  // namespace

TEST_CASE("opening an older file adds the missing columns and keeps its rows", "[db]") {
    TempDir dir;
    std::string path = dir.file("r.db");
    {
        ResultsDb db(path);
        db.record_run(sample_info("old\n"), sample_layers(4), 2.0);
    }
    // Make it look like a file from before these columns existed (and before views).
    make_schema_10(path);
    {
        sql::Connection raw(path, sql::Connection::Mode::read_write_create);
        raw.exec(
            "DROP VIEW layer_levels; DROP VIEW layer_metrics; ALTER TABLE runs DROP COLUMN "
            "total_energy_static_j; ALTER TABLE runs DROP COLUMN layer_count; "
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

namespace {

// Every row of the per-layer tables, as text, in key order; of `layers`, the columns but `levels` and
// `metrics` (whose entries the views show, and whose metric ids a migration may give anew).
std::vector<std::string> layer_table_rows(const std::string& path) {
    sql::Connection conn(path, sql::Connection::Mode::read_write_create);
    std::vector<std::string> out;
    std::string layer_columns;
    {
        sql::Statement q(
            conn,
            "SELECT name FROM pragma_table_info('layers') WHERE name NOT IN ('levels', 'metrics') "
            "ORDER BY cid");
        while (q.step()) layer_columns += (layer_columns.empty() ? "" : ", ") + q.column_text(0);
    }
    for (const auto& [table, columns, key] :
         {std::tuple{"layers", layer_columns, "run_id, idx"},
          std::tuple{"layer_levels", std::string("*"), "run_id, idx, level"},
          std::tuple{"layer_metrics", std::string("*"), "run_id, idx, name"}}) {
        sql::Statement q(conn, fmt::format("SELECT {} FROM {} ORDER BY {}", columns, table, key));
        while (q.step()) {
            std::string row = table;
            for (int c = 0; c < q.column_count(); ++c) {
                row.push_back('|');
                row.append(q.column_is_null(c) ? std::string("NULL") : q.column_text(c));
            }
            out.push_back(row);
        }
    }
    return out;
}

int64_t without_rowid_tables(const std::string& path) {
    return query_int(path,
                     "SELECT COUNT(*) FROM sqlite_schema WHERE type = 'table' AND name IN ('layers', "
                     "'layer_results') AND sql "
                     "LIKE '%WITHOUT ROWID'");
}

// Schema 11's layer_results (WITHOUT ROWID, keyed by (run_id, idx)), its views and its trigger, as mlsim 11
// made them.
constexpr const char* k_v11_layer_results_table =
    "CREATE TABLE v11_layer_results (run_id INTEGER NOT NULL REFERENCES runs(run_id), idx INTEGER NO"
    "T NULL, def_id INTEGER NOT NULL REFERENCES layer_defs(def_id), bytes_read REAL, bytes_written R"
    "EAL, start_s REAL, end_s REAL, time_s REAL, cycles INTEGER, stall_cycles INTEGER, energy_j REAL"
    ", energy_compute_j REAL, energy_memory_j REAL, energy_static_j REAL, utilization REAL, bound TE"
    "XT, compute_s REAL, memory_s REAL, overhead_s REAL, communication_s REAL, levels TEXT, metrics "
    "TEXT, PRIMARY KEY (run_id, idx)) WITHOUT ROWID";
constexpr const char* k_v11_views =
    "CREATE VIEW layers AS SELECT r.run_id AS run_id, r.idx AS idx, d.name AS name, d.op AS op, d.ph"
    "ase AS phase, d.dtype AS dtype, d.macs AS macs, d.flops AS flops, d.params AS params, r.bytes_r"
    "ead AS bytes_read, r.bytes_written AS bytes_written, r.start_s AS start_s, r.end_s AS end_s, r."
    "time_s AS time_s, r.cycles AS cycles, r.stall_cycles AS stall_cycles, r.energy_j AS energy_j, r"
    ".energy_compute_j AS energy_compute_j, r.energy_memory_j AS energy_memory_j, r.energy_static_j "
    "AS energy_static_j, r.utilization AS utilization, r.bound AS bound, r.compute_s AS compute_s, r"
    ".memory_s AS memory_s, r.overhead_s AS overhead_s, r.communication_s AS communication_s, r.leve"
    "ls AS levels, r.metrics AS metrics FROM layer_results r JOIN layer_defs d ON d.def_id = r.def_i"
    "d; CREATE VIEW layer_levels AS SELECT l.run_id AS run_id, l.idx AS idx, v.key AS level, CAST(js"
    "on_extract(v.value, '$[0]') AS REAL) AS bytes_read, CAST(json_extract(v.value, '$[1]') AS REAL)"
    " AS bytes_written, json_extract(v.value, '$[2]') AS accesses, CAST(json_extract(v.value, '$[3]'"
    ") AS REAL) AS energy_j FROM layer_results l JOIN json_each(l.levels) v; CREATE VIEW layer_metri"
    "cs AS SELECT l.run_id AS run_id, l.idx AS idx, n.name AS name, CASE WHEN m.type IN ('integer', "
    "'real') THEN CAST(m.atom AS REAL) END AS value, NULLIF(n.unit, '') AS unit, CASE WHEN m.type = "
    "'text' THEN m.atom END AS text FROM layer_results l JOIN json_each(l.metrics) m JOIN metric_nam"
    "es n ON n.metric_id = CAST(m.key AS INTEGER); CREATE TRIGGER layers_delete INSTEAD OF DELETE ON"
    " layers BEGIN DELETE FROM layer_results WHERE run_id = old.run_id AND idx = old.idx; END";

// Turns a current file into what schema 11 wrote: layer_results WITHOUT ROWID without layer_row, runs without
// the row ranges, the views and trigger of 11, version 11.
void make_schema_11(const std::string& path) {
    sql::Connection raw(path, sql::Connection::Mode::read_write_create);
    raw.exec("PRAGMA foreign_keys = OFF; BEGIN");
    raw.exec(k_v11_layer_results_table);
    raw.exec(
        "INSERT INTO v11_layer_results SELECT run_id, idx, def_id, bytes_read, bytes_written, start_s, "
        "end_s, time_s, cycles, stall_cycles, energy_j, energy_compute_j, energy_memory_j, energy_static_j, "
        "utilization, bound, compute_s, memory_s, overhead_s, communication_s, levels, metrics FROM "
        "layer_results");
    raw.exec(
        "DROP VIEW layer_levels; DROP VIEW layer_metrics; DROP VIEW layers; DROP TABLE layer_results; ALTER "
        "TABLE v11_layer_results RENAME TO layer_results");
    raw.exec(k_v11_views);
    raw.exec(
        "ALTER TABLE runs DROP COLUMN first_layer_row; ALTER TABLE runs DROP COLUMN last_layer_row; UPDATE "
        "meta "
        "SET value = '11' WHERE key = 'schema_version'; COMMIT");
}

// Turns a current file into what schema 7 wrote: the per-layer tables as rowid tables, the metrics in the
// table `layer_metrics` with their names and units and the levels in the table `layer_levels` (schema 4 to
// 8), not in layers.levels and layers.metrics, version 7.
void make_schema_7(const std::string& path) {
    make_schema_10(path);
    sql::Connection raw(path, sql::Connection::Mode::read_write_create);
    raw.exec("PRAGMA foreign_keys = OFF; BEGIN");
    raw.exec(
        "CREATE TABLE v7_layer_metrics (run_id INTEGER NOT NULL REFERENCES runs(run_id), idx INTEGER NOT "
        "NULL, "
        "name TEXT NOT NULL, value REAL, unit TEXT, text TEXT, PRIMARY KEY (run_id, idx, name), FOREIGN KEY "
        "(run_id, idx) REFERENCES layers(run_id, idx), CHECK ((value IS NULL) = (text IS NOT NULL)), CHECK "
        "((value IS NULL) = (unit IS NULL)))");
    raw.exec(
        "INSERT INTO v7_layer_metrics SELECT * FROM layer_metrics; DROP VIEW layer_metrics; DROP TABLE "
        "metric_names; ALTER TABLE v7_layer_metrics RENAME TO layer_metrics");
    raw.exec(
        "CREATE TABLE v7_layer_levels (run_id INTEGER NOT NULL REFERENCES runs(run_id), idx INTEGER NOT "
        "NULL, "
        "level TEXT NOT NULL, bytes_read REAL NOT NULL, bytes_written REAL NOT NULL, accesses INTEGER NOT "
        "NULL, "
        "energy_j REAL NOT NULL, PRIMARY KEY (run_id, idx, level), FOREIGN KEY (run_id, idx) REFERENCES "
        "layers(run_id, idx))");
    raw.exec(
        "INSERT INTO v7_layer_levels SELECT * FROM layer_levels; DROP VIEW layer_levels; ALTER TABLE "
        "v7_layer_levels RENAME TO layer_levels");
    // `layers` (the one per-layer table of schema 10) as a rowid table.
    std::string create = k_v10_layers_table;
    const std::string suffix = " WITHOUT ROWID";
    REQUIRE(create.ends_with(suffix));
    create.erase(create.size() - suffix.size());
    create.replace(create.find("v10_layers"), 10, "v7_layers");
    raw.exec(create);
    raw.exec(
        "INSERT INTO v7_layers SELECT * FROM layers; DROP TABLE layers; ALTER TABLE v7_layers RENAME TO "
        "layers");
    raw.exec("ALTER TABLE layers DROP COLUMN levels; ALTER TABLE layers DROP COLUMN metrics");
    raw.exec("UPDATE meta SET value = '7' WHERE key = 'schema_version'; COMMIT");
}

// `file` with one run, made into an older schema's file by `make_old`, then `sql` run on it.
std::string old_file_with(const std::string& file, void (*make_old)(const std::string&),
                          const std::string& sql) {
    {
        ResultsDb db(file);
        db.record_run(sample_info("a\n"), sample_layers(2), 1.0);
    }
    make_old(file);
    sql::Connection raw(file, sql::Connection::Mode::read_write_create);
    raw.exec(sql);
    return file;
}

}  // namespace

TEST_CASE("a schema-7 file's per-layer rows reach schema 12's tables, every row kept", "[db]") {
    TempDir dir;
    const std::string path = dir.file("r.db");
    {
        ResultsDb db(path);
        db.record_run(sample_info("a\n"), sample_layers(5), 1.0);
        db.record_run(sample_info("b\n"), sample_layers(3), 1.0);
    }
    REQUIRE(without_rowid_tables(path) == 0);  // none since schema 12
    const std::vector<std::string> before = layer_table_rows(path);
    REQUIRE(before.size() > 20);
    make_schema_7(path);
    REQUIRE(without_rowid_tables(path) == 0);
    REQUIRE(query_text(path, "SELECT type FROM sqlite_schema WHERE name = 'layer_metrics'") == "table");
    REQUIRE(layer_table_rows(path) == before);
    {
        ResultsDb db(path);
        CHECK(without_rowid_tables(path) == 0);
        CHECK(layer_table_rows(path) == before);
        // The step to 12: each run's rows numbered consecutively, their range in runs.
        CHECK(query_int(path,
                        "SELECT COUNT(*) FROM runs r WHERE r.last_layer_row - r.first_layer_row + 1 <> "
                        "(SELECT COUNT(*) FROM layer_results l WHERE l.run_id = r.run_id)") == 0);
        // The step to 9: the metrics' rows by id, the names in name order, layer_metrics a view again.
        CHECK(query_text(path, "SELECT type FROM sqlite_schema WHERE name = 'layer_metrics'") == "view");
        CHECK(
            query_int(path,
                      "SELECT COUNT(*) FROM metric_names a JOIN metric_names b ON a.metric_id < b.metric_id "
                      "WHERE a.name > b.name") == 0);
        CHECK(query_int(path, "SELECT COUNT(*) FROM metric_names") ==
              query_int(path, "SELECT COUNT(DISTINCT name) FROM layer_metrics"));
        CHECK(query_int(path, "SELECT COUNT(*) FROM pragma_foreign_key_check") == 0);
        CHECK(query_text(path, "SELECT value FROM meta WHERE key = 'schema_version'") ==
              std::to_string(mlsim::db::schema::current_version));
        db.record_run(sample_info("c\n"), sample_layers(2), 1.0);  // and the file takes new runs
    }
    CHECK(query_int(path, "SELECT COUNT(*) FROM layers WHERE run_id = 3") == 2);

    // A schema-7 file of one run with `sql` run on it (something added by hand).
    const auto schema_7_with = [&](const std::string& name, const std::string& sql) {
        return old_file_with(dir.file(name), make_schema_7, sql);
    };
    // An index added by hand would be lost: the migration stops, naming it, and leaves the file as it was.
    const std::string hand = schema_7_with("hand.db", "CREATE INDEX my_metric_names ON layer_metrics(name)");
    CHECK_THROWS_WITH(ResultsDb(hand), Catch::Contains(hand) && Catch::Contains("my_metric_names") &&
                                           Catch::Contains("layer_metric_values"));
    CHECK(without_rowid_tables(hand) == 0);
    CHECK(query_text(hand, "SELECT type FROM sqlite_schema WHERE name = 'layer_metrics'") == "table");
    CHECK(query_text(hand, "SELECT value FROM meta WHERE key = 'schema_version'") == "7");
    // An index on `layers` stops the step to 11, which splits the table (and leaves the file as it was) too.
    const std::string hand8 = schema_7_with("hand8.db", "CREATE INDEX my_layer_names ON layers(name)");
    CHECK_THROWS_WITH(ResultsDb(hand8), Catch::Contains(hand8) && Catch::Contains("my_layer_names") &&
                                            Catch::Contains("layer_defs"));
    CHECK(query_text(hand8, "SELECT type FROM sqlite_schema WHERE name = 'layers'") == "table");
    CHECK(query_text(hand8, "SELECT value FROM meta WHERE key = 'schema_version'") == "7");
    // And one on the levels' table stops the step to 10, which moves its rows into layers.levels.
    const std::string hand10 =
        schema_7_with("hand10.db", "CREATE INDEX my_level_names ON layer_levels(level)");
    CHECK_THROWS_WITH(ResultsDb(hand10), Catch::Contains(hand10) && Catch::Contains("my_level_names") &&
                                             Catch::Contains("layers.levels"));
    CHECK(query_text(hand10, "SELECT value FROM meta WHERE key = 'schema_version'") == "7");
    CHECK(query_text(hand10, "SELECT type FROM sqlite_schema WHERE name = 'layer_levels'") == "table");
}

namespace {

// Turns a current file into what schema 9 wrote: the levels a row each in layer_levels, the metrics a row
// each in layer_metric_values (with the ids the file has), no layers.levels or layers.metrics, schema 9's
// view, version 9.
void make_schema_9(const std::string& path) {
    make_schema_10(path);
    sql::Connection raw(path, sql::Connection::Mode::read_write_create);
    raw.exec("PRAGMA foreign_keys = OFF; BEGIN");
    raw.exec(
        "CREATE TABLE layer_metric_values (run_id INTEGER NOT NULL REFERENCES runs(run_id), idx INTEGER NOT "
        "NULL, metric_id INTEGER NOT NULL REFERENCES metric_names(metric_id), value REAL, text TEXT, PRIMARY "
        "KEY "
        "(run_id, idx, metric_id), FOREIGN KEY (run_id, idx) REFERENCES layers(run_id, idx)) WITHOUT ROWID");
    raw.exec(
        "INSERT INTO layer_metric_values SELECT m.run_id, m.idx, n.metric_id, m.value, m.text FROM "
        "layer_metrics m "
        "JOIN metric_names n ON n.name = m.name AND n.unit = COALESCE(m.unit, '')");
    raw.exec(
        "CREATE TABLE v9_layer_levels (run_id INTEGER NOT NULL REFERENCES runs(run_id), idx INTEGER NOT "
        "NULL, "
        "level TEXT NOT NULL, bytes_read REAL NOT NULL, bytes_written REAL NOT NULL, accesses INTEGER NOT "
        "NULL, "
        "energy_j REAL NOT NULL, PRIMARY KEY (run_id, idx, level), FOREIGN KEY (run_id, idx) REFERENCES "
        "layers(run_id, idx)) WITHOUT ROWID");
    raw.exec(
        "INSERT INTO v9_layer_levels SELECT * FROM layer_levels; DROP VIEW layer_levels; ALTER TABLE "
        "v9_layer_levels RENAME TO layer_levels");
    raw.exec(
        "DROP VIEW layer_metrics; ALTER TABLE layers DROP COLUMN metrics; ALTER TABLE layers DROP COLUMN "
        "levels");
    raw.exec(
        "CREATE VIEW layer_metrics AS SELECT v.run_id AS run_id, v.idx AS idx, n.name AS name, v.value AS "
        "value, "
        "NULLIF(n.unit, '') AS unit, v.text AS text FROM layer_metric_values v JOIN metric_names n ON "
        "n.metric_id = v.metric_id");
    raw.exec("UPDATE meta SET value = '9' WHERE key = 'schema_version'; COMMIT");
}

// Each layer's levels and metrics objects, in key order.
std::vector<std::string> layer_objects(const std::string& path) {
    sql::Connection conn(path, sql::Connection::Mode::read_only);
    sql::Statement q(conn, "SELECT run_id, idx, levels, metrics FROM layers ORDER BY run_id, idx");
    std::vector<std::string> out;
    while (q.step())
        out.push_back(fmt::format("{}|{}|{}|{}", q.column_int(0), q.column_int(1),
                                  q.column_is_null(2) ? "NULL" : q.column_text(2),
                                  q.column_is_null(3) ? "NULL" : q.column_text(3)));
    return out;
}

}  // namespace

TEST_CASE("a schema-9 file's level and metric rows become the layers' objects the writer writes", "[db]") {
    TempDir dir;
    const std::string path = dir.file("r.db");
    {
        ResultsDb db(path);
        db.record_run(sample_info("a\n"), sample_layers(5), 1.0);
        std::vector<LayerRow> odd = sample_layers(3);
        odd[1].metrics.push_back(MetricRow{"third", 1.0 / 3.0, "1", ""});
        odd[1].metrics.push_back(MetricRow{"quoted", std::nullopt, "", "a \"b\" \\ c\nd \x01 \xc2\xb5s"});
        odd[1].levels.push_back(LevelRow{"a \"quoted\" level", 1e-300, 2.5, 7, 1.0 / 7.0});
        odd[2].metrics.clear();
        odd[2].levels.clear();
        db.record_run(sample_info("b\n"), odd, 1.0);
    }
    const std::vector<std::string> before = layer_table_rows(path);
    const std::vector<std::string> objects = layer_objects(path);
    REQUIRE(before.size() > 20);
    CHECK(query_int(path, "SELECT COUNT(*) FROM layers WHERE metrics IS NULL") == 1);
    CHECK(query_int(path, "SELECT COUNT(*) FROM layers WHERE levels IS NULL") == 1);
    make_schema_9(path);
    REQUIRE(layer_table_rows(path) == before);
    REQUIRE(query_int(path, "SELECT COUNT(*) FROM layer_metric_values") ==
            query_int(path, "SELECT COUNT(*) FROM layer_metrics"));
    REQUIRE(query_text(path, "SELECT type FROM sqlite_schema WHERE name = 'layer_levels'") == "table");
    {
        ResultsDb db(path);
        CHECK(layer_table_rows(path) == before);
        // The same text, byte for byte, as the writer gives the same metrics.
        CHECK(layer_objects(path) == objects);
        CHECK(query_int(path, "SELECT COUNT(*) FROM sqlite_schema WHERE name = 'layer_metric_values'") == 0);
        CHECK(query_text(path, "SELECT type FROM sqlite_schema WHERE name = 'layer_levels'") == "view");
        CHECK(query_text(path, "SELECT value FROM meta WHERE key = 'schema_version'") ==
              std::to_string(mlsim::db::schema::current_version));
        db.record_run(sample_info("c\n"), sample_layers(2), 1.0);
    }
    CHECK(query_int(path, "SELECT COUNT(*) FROM layer_metrics WHERE run_id = 3") > 0);

    // A schema-9 file of one run with `sql` run on it.
    const auto schema_9_with = [&](const std::string& name, const std::string& sql) {
        return old_file_with(dir.file(name), make_schema_9, sql);
    };
    // An index added by hand on the table would be lost: the migration stops, naming it, file unchanged.
    const std::string hand = schema_9_with("hand.db", "CREATE INDEX my_values ON layer_metric_values(value)");
    CHECK_THROWS_WITH(ResultsDb(hand), Catch::Contains(hand) && Catch::Contains("my_values") &&
                                           Catch::Contains("layers.metrics"));
    CHECK(query_text(hand, "SELECT value FROM meta WHERE key = 'schema_version'") == "9");
    CHECK(query_int(hand, "SELECT COUNT(*) FROM layer_metrics") > 0);
    // A metric row whose layer is missing would be lost too.
    const std::string orphan = schema_9_with(
        "orphan.db",
        "PRAGMA foreign_keys = OFF; INSERT INTO layer_metric_values VALUES (1, 99, 1, 2.0, NULL)");
    CHECK_THROWS_WITH(ResultsDb(orphan), Catch::Contains("run 1 layer 99"));
    CHECK(query_text(orphan, "SELECT value FROM meta WHERE key = 'schema_version'") == "9");
}

TEST_CASE("a schema-10 file's layers with NULL in their definitions read back the same, each definition once",
          "[db]") {
    TempDir dir;
    const std::string path = dir.file("r.db");
    {
        ResultsDb db(path);
        db.record_run(sample_info("a\n"), sample_layers(4), 1.0);
        db.record_run(sample_info("b\n"), sample_layers(4), 1.0);  // the same four definitions
    }
    make_schema_10(path);
    {
        // What older writers or hands may have left: NULL wherever schema 10 allowed it.
        sql::Connection raw(path, sql::Connection::Mode::read_write_create);
        raw.exec(
            "UPDATE layers SET phase = NULL, dtype = NULL WHERE idx % 2 = 0; UPDATE layers SET macs = NULL, "
            "flops = NULL, params = NULL WHERE idx = 1");
    }
    const std::vector<std::string> before = layer_table_rows(path);
    REQUIRE(query_int(path, "SELECT COUNT(*) FROM layers WHERE phase IS NULL") == 4);
    { ResultsDb db(path); }
    CHECK(query_text(path, "SELECT type FROM sqlite_schema WHERE name = 'layers'") == "view");
    CHECK(layer_table_rows(path) == before);
    CHECK(query_int(path, "SELECT COUNT(*) FROM layer_defs") == 4);  // the two runs share them, NULLs and all
    CHECK(query_int(path, "SELECT COUNT(*) FROM layer_defs WHERE phase IS NULL AND dtype IS NULL") == 2);
    CHECK(query_int(path, "SELECT COUNT(*) FROM layer_defs WHERE macs IS NULL AND params IS NULL") == 1);
    CHECK(query_int(path, "SELECT COUNT(*) FROM layers WHERE macs IS NULL") == 2);
    CHECK(query_int(path, "SELECT COUNT(*) FROM pragma_foreign_key_check") == 0);
}

TEST_CASE("metric values read back through layer_metrics bit for bit, texts unchanged", "[db]") {
    TempDir dir;
    const std::string path = dir.file("r.db");
    const std::vector<double> values{0.1,
                                     1.0 / 3.0,
                                     2.0 / 3.0 * 1e-300,
                                     std::numeric_limits<double>::denorm_min(),
                                     std::numeric_limits<double>::min(),
                                     std::numeric_limits<double>::max(),
                                     -std::numeric_limits<double>::max(),
                                     9007199254740992.0,
                                     1e16,
                                     1e22,
                                     123456789.123456789,
                                     -42.0,
                                     0.0,
                                     std::nextafter(1.0, 2.0),
                                     6.02214076e23};
    std::vector<LayerRow> layers = sample_layers(1);
    layers[0].metrics.clear();
    for (std::size_t i = 0; i < values.size(); ++i)
        layers[0].metrics.push_back(MetricRow{fmt::format("v{:02}", i), values[i], "1", ""});
    const std::string text = "say \"hi\"\\ \t tab\r\n\x1f \xc2\xb5s {\"x\": [1]}";
    layers[0].metrics.push_back(MetricRow{"z_text", std::nullopt, "", text});
    {
        ResultsDb db(path);
        db.record_run(sample_info(), layers, 1.0);
    }
    sql::Connection conn(path, sql::Connection::Mode::read_only);
    sql::Statement q(conn, "SELECT name, value, unit, text, typeof(value) FROM layer_metrics ORDER BY name");
    std::size_t i = 0;
    for (; i < values.size(); ++i) {
        REQUIRE(q.step());
        CHECK(q.column_text(0) == fmt::format("v{:02}", i));
        CHECK(q.column_text(4) == "real");
        const double got = q.column_real(1);
        INFO(fmt::format("{} read back as {}", values[i], got));
        CHECK(std::memcmp(&got, &values[i], sizeof got) == 0);
        CHECK(q.column_text(2) == "1");
        CHECK(q.column_is_null(3));
    }
    REQUIRE(q.step());
    CHECK(q.column_text(0) == "z_text");
    CHECK(q.column_is_null(1));
    CHECK(q.column_is_null(2));
    CHECK(q.column_text(3) == text);
    CHECK_FALSE(q.step());
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

TEST_CASE("a damaged or foreign database is refused with its problem named, and left byte for byte", "[db]") {
    TempDir dir;
    const std::string good = dir.file("good.db");
    {
        ResultsDb db(good);
        db.record_run(sample_info("kept\n"), sample_layers(2), 1.0);
    }
    struct Damage {
        const char* sql;
        const char* says;
    };
    const Damage damages[] = {
        {"UPDATE meta SET value = '3abc' WHERE key = 'schema_version'", "meta.schema_version is '3abc'"},
        {"UPDATE meta SET value = '-1' WHERE key = 'schema_version'", "meta.schema_version is '-1'"},
        {"ALTER TABLE runs RENAME TO runs_t; CREATE VIEW runs AS SELECT * FROM runs_t", "'runs' is a view"},
        {"DROP TABLE meta; CREATE TABLE meta (a, b, c)", "table 'meta' has the columns (a, b, c)"},
        {"DROP TABLE sweep_factors; CREATE TABLE sweep_factors (x)", "table 'sweep_factors' has no column"},
        {"DROP INDEX runs_by_config_hash; CREATE TABLE runs_by_config_hash (x)",
         "'runs_by_config_hash' is a table"},
    };
    for (const Damage& d : damages) {
        INFO(d.sql);
        const std::string path = dir.file("damaged.db");
        std::filesystem::copy_file(good, path, std::filesystem::copy_options::overwrite_existing);
        {
            mlsim::db::sql::Connection raw(path, mlsim::db::sql::Connection::Mode::read_write_create);
            raw.exec(d.sql);
            raw.exec("PRAGMA journal_mode = DELETE");  // everything in the main file
        }
        const std::string before = file_bytes(path);
        CHECK_THROWS_WITH(ResultsDb(path),
                          Catch::StartsWith(path + ": error: results database: ") && Catch::Contains(d.says));
        CHECK(file_bytes(path) == before);
    }
}

TEST_CASE("partial mlsim tables written by another program are refused before anything is added", "[db]") {
    TempDir dir;
    const std::string path = dir.file("partial.db");
    {
        mlsim::db::sql::Connection raw(path, mlsim::db::sql::Connection::Mode::read_write_create);
        raw.exec(fmt::format("PRAGMA application_id = {}", mlsim::db::schema::application_id));
        raw.exec("CREATE TABLE runs (x INTEGER)");
    }
    const std::string before = file_bytes(path);
    CHECK_THROWS_WITH(ResultsDb(path), Catch::Contains("table 'runs' has no column 'run_id'"));
    CHECK(file_bytes(path) == before);
    // A FIFO is not opened at all (SQLite would wait on it forever).
    const std::string fifo = dir.file("fifo.db");
    REQUIRE(::mkfifo(fifo.c_str(), 0600) == 0);
    CHECK_THROWS_WITH(ResultsDb(fifo), Catch::Contains("not a regular file"));
}

namespace {
// A file's size, 0 while it does not exist (the log, between its removal and its creation).
std::uintmax_t size_of(const std::string& p) {
    std::error_code ec;
    const auto n = fs::file_size(p, ec);
    return ec ? std::uintmax_t{0} : n;
}

// Writes `runs` runs of 400 layers (some 200 KB of rows each) into `path` in batches of 4, with the log
// copied in the background, as a sweep's writer does: before each batch it waits (up to a second) while
// ResultsDb::log_restart_due. How often it waited, the log's largest size, and the copies run.
struct BatchedWrite {
    int waits = 0;
    std::uintmax_t largest_log = 0;
    int64_t checkpoints = 0;
};
BatchedWrite write_in_batches(const std::string& path, int runs) {
    constexpr int per_batch = 4;
    const std::vector<LayerRow> layers = sample_layers(400);
    BatchedWrite w;
    ResultsDb db(path);
    db.checkpoint_in_background();
    for (int r = 0; r < runs; r += per_batch) {
        if (db.log_restart_due()) ++w.waits;
        for (int t = 0; t < 1000 && db.log_restart_due(); ++t)
            std::this_thread::sleep_for(std::chrono::milliseconds(1));
        db.begin_batch();
        for (int k = r; k < r + per_batch; ++k)
            db.record_run(sample_info(fmt::format("run: {}\n", k)), layers, 0.1);
        db.end_batch();
        w.largest_log = std::max(w.largest_log, size_of(path + "-wal"));
    }
    w.checkpoints = db.background_checkpoints();
    return w;
}
}  // namespace

TEST_CASE("a background checkpoint copies the log into the file while the writer goes on, and bounds the log",
          "[db]") {
    // ResultsDb::checkpoint_in_background (issue 15): commits wake a thread that copies the write-ahead log
    // into the file; the log starts over once copied, and every run stays readable, during and after.
    TempDir dir;
    const std::string path = dir.file("bg.db");
    const std::vector<LayerRow> layers = sample_layers(400);  // some 200 KB of rows a run
    constexpr int runs = 240;                                 // some 3,000 pages of log in all
    std::uintmax_t largest_log = 0, file_during = 0;
    {
        ResultsDb db(path);
        db.checkpoint_in_background();
        for (int r = 0; r < runs; ++r) {
            db.record_run(sample_info(fmt::format("run: {}\n", r)), layers, 0.1);
            largest_log = std::max(largest_log, size_of(path + "-wal"));
        }
        // Copied while the writer still has the file open (without the thread, only its close would copy).
        for (int wait = 0; wait < 500 && db.checkpointing(); ++wait)
            std::this_thread::sleep_for(std::chrono::milliseconds(10));
        CHECK_FALSE(db.checkpointing());
        CHECK(db.background_checkpoints() >= 2);  // the thread copied the log (SQLite's own copy is off)
#ifdef __linux__
        // ... and started the writeback of the file and of the log ahead of the copies' syncs: it found the
        // descriptors SQLite's unix VFS opened (results_db.cpp, unix_vfs_fd), which a layout of SQLite's file
        // object other than the one read there would fail to give.
        CHECK(db.background_writeback());
#endif
        file_during = size_of(path);
        CHECK(query_int(path, "SELECT COUNT(*) FROM runs") == runs);
    }
    CHECK_FALSE(fs::exists(path + "-wal"));  // the writer's close copied the rest and removed the log
    CHECK(file_during > 10'000'000);
    // The log starts over instead of growing with the runs: at most the writer's own limit (4,000 pages of
    // 16 KiB) plus a run, far below the ~50 MB written.
    CHECK(largest_log < std::uintmax_t{4'000} * 16'424 + 400'000);
    CHECK(query_int(path, "SELECT COUNT(*) FROM runs") == runs);
    CHECK(query_int(path, "SELECT COUNT(*) FROM layers") == runs * 400);
    CHECK(query_int(path, "SELECT COUNT(*) FROM layer_metrics WHERE run_id = 240") > 800);
}

TEST_CASE("a writer that begins its batches after the copy the log asks for keeps the log starting over",
          "[db]") {
    // ResultsDb::log_restart_due (issue 15): once the log holds 1,000 pages, a batch begun while the
    // background copy runs would keep it from starting over; a writer that waits for it (as the sweep writer
    // does, simulating meanwhile) keeps the log near 1,000 pages of 16 KiB, where one that begins at once
    // lets it grow with what it writes (~3,000 pages here) up to 4,000.
    TempDir dir;
    const std::string path = dir.file("restart.db");
    constexpr int runs = 240;
    const auto [waits, largest_log, checkpoints] = write_in_batches(path, runs);
    CHECK(checkpoints >= 2);
    CHECK(waits >= 1);
    // 1,000 pages, the batch that took it there and the next (~50 pages each), and headroom for a copy that
    // had not caught up.
    CHECK(largest_log < std::uintmax_t{1'300} * 16'408);
    CHECK(query_int(path, "SELECT COUNT(*) FROM runs") == runs);
    CHECK(query_int(path, "SELECT COUNT(*) FROM layers") == runs * 400);
}

TEST_CASE(
    "a reader holding an old snapshot keeps the log from starting over, and the writer does not wait for it",
    "[db]") {
    // ResultsDb::log_restart_due asks the writer to wait only for a copy that can start the log over: with
    // another connection reading the file as it was (frames it may still need stay uncopied), waiting at each
    // batch would hold the writer back for nothing.
    TempDir dir;
    const std::string path = dir.file("reader.db");
    { ResultsDb(path).record_run(sample_info("run: first\n"), sample_layers(400), 0.1); }
    sql::Connection reader(path, sql::Connection::Mode::read_write_create);
    reader.exec("BEGIN; SELECT COUNT(*) FROM runs;");  // a read transaction left open: an old snapshot
    constexpr int runs = 240;
    const auto [waits, largest_log, checkpoints] = write_in_batches(path, runs);
    CHECK(checkpoints >= 2);
    reader.exec("COMMIT");
    // The log could not start over (more than the 1,300 pages it stays under otherwise), and the writer
    // waited twice at most: the log went on growing after each wait, and it was not asked again.
    CHECK(largest_log > std::uintmax_t{1'300} * 16'408);
    CHECK(waits <= 2);
    CHECK(query_int(path, "SELECT COUNT(*) FROM runs") == runs + 1);
}

TEST_CASE("rows prepared apart (prepare_layers) are written byte for byte as record_run writes the rows",
          "[db]") {
    // An MPI sweep's simulating ranks prepare their points' rows and rank 0 writes them (issue 15): the file
    // must be the one record_run(rows) writes, metric ids included.
    TempDir dir;
    const std::string direct = dir.file("direct.db"), prepared = dir.file("prepared.db");
    std::vector<std::vector<LayerRow>> runs = {sample_layers(30), sample_layers(7), sample_layers(12)};
    // A metric name new in the second run, text with characters JSON escapes, and a metric order that
    // differs from layer to layer.
    runs[1][3].metrics.push_back(MetricRow{"late_metric", 2.5, "1", ""});
    runs[1][4].metrics.push_back(MetricRow{"note", std::nullopt, "", "a \"quoted\"\\ line\n"});
    std::reverse(runs[2][5].metrics.begin(), runs[2][5].metrics.end());
    {
        ResultsDb a(direct), b(prepared);
        mlsim::db::PreparedLayers p;
        for (std::size_t r = 0; r < runs.size(); ++r) {
            const RunInfo info = sample_info(fmt::format("run: {}\n", r));
            a.record_run(info, runs[r], 0.5);
            mlsim::db::prepare_layers(runs[r], p);  // reused from run to run, as the ranks reuse theirs
            b.record_run(info, p, 0.5);
        }
    }
    for (const char* q :
         {"SELECT group_concat(quote(levels) || quote(metrics), '|') FROM layers",
          "SELECT group_concat(metric_id || name || unit, '|') FROM metric_names",
          "SELECT group_concat(total_energy_j || ',' || total_time_s || ',' || layer_count, '|') "
          "FROM runs"})
        CHECK(query_text(direct, q) == query_text(prepared, q));
    CHECK(query_int(prepared, "SELECT COUNT(*) FROM layer_metrics WHERE name = 'late_metric'") == 1);
    CHECK(query_text(prepared, "SELECT text FROM layer_metrics WHERE name = 'note'") ==
          "a \"quoted\"\\ line\n");
}

TEST_CASE("prepared rows hold their strings in one text, and consistent() finds a span or index out of place",
          "[db]") {
    // An MPI sweep sends a point's prepared layers as blocks of bytes, and rank 0 checks them with
    // consistent() before it binds their text (issue 15).
    mlsim::db::PreparedLayers p;
    std::vector<LayerRow> layers = sample_layers(4);
    layers[2].metrics.push_back(MetricRow{"note", std::nullopt, "", "text \"q\""});
    mlsim::db::prepare_layers(layers, p);
    REQUIRE(p.layers.size() == 4);
    CHECK(p.consistent());
    for (std::size_t i = 0; i < layers.size(); ++i) {
        const auto& l = p.layers[i];
        CHECK(p.str(l.name) == layers[i].name);
        CHECK(p.str(l.op) == layers[i].op);
        CHECK(p.str(l.bound) == layers[i].bound);
        CHECK(l.metrics_end - l.metrics_begin == layers[i].metrics.size());
        CHECK(l.idx == layers[i].idx);
        CHECK(l.energy_j == layers[i].energy_j);
    }
    // The last metric of layer 2 is the text one, its value JSON text ending where the layer's values end.
    const auto& l2 = p.layers[2];
    CHECK(p.metrics[l2.metrics_end - 1].end == l2.values.begin + l2.values.size);
    CHECK(p.str(l2.values).ends_with("\"text \\\"q\\\"\""));

    auto broken = [&](auto&& change) {
        mlsim::db::PreparedLayers q = p;
        change(q);
        return !q.consistent();
    };
    CHECK(broken([](auto& q) {
        q.layers[1].name.begin = static_cast<uint32_t>(q.text.size());
        q.layers[1].name.size = 1;
    }));
    CHECK(broken([](auto& q) { q.layers[3].levels.size = static_cast<uint32_t>(q.text.size() + 1); }));
    CHECK(broken([](auto& q) { q.layers[0].metrics_end = static_cast<uint32_t>(q.metrics.size() + 1); }));
    CHECK(broken([](auto& q) { q.layers[0].metrics_begin = q.layers[0].metrics_end + 1; }));
    CHECK(broken([](auto& q) { q.metrics[0].key = static_cast<uint32_t>(q.metric_keys.size()); }));
    // A metric value past its layer's values, and one that starts before the one before it ends.
    CHECK(broken([&](auto& q) { q.metrics[l2.metrics_end - 1].end = l2.values.begin + l2.values.size + 1; }));
    CHECK(broken([&](auto& q) { q.metrics[l2.metrics_begin + 1].end = l2.values.begin - 1; }));
    CHECK_FALSE(broken([](auto&) {}));
}

TEST_CASE("a layer's definition is found again whether or not its strings lie one after another", "[db]") {
    // prepare_layers puts a layer's name, op, phase and dtype one after another, and the writer compares them
    // at once; rows from elsewhere (an MPI rank's block) may place them apart, and the same definitions must
    // then get the same ids, and different ones (a string's bytes moved into its neighbour) new ids.
    TempDir dir;
    const std::string path = dir.file("defs.db");
    const std::vector<LayerRow> layers = sample_layers(3);
    mlsim::db::PreparedLayers p;
    mlsim::db::prepare_layers(layers, p);
    // The same layers with each string copied to the end of the text, in reverse order.
    mlsim::db::PreparedLayers apart = p;
    for (auto& l : apart.layers)
        for (auto* t : {&l.dtype, &l.phase, &l.op, &l.name}) {
            const std::string copy(p.str(*t));
            *t = {static_cast<uint32_t>(apart.text.size()), static_cast<uint32_t>(copy.size())};
            apart.text += copy;
        }
    REQUIRE(apart.consistent());
    REQUIRE(apart.layers[0].op.begin != apart.layers[0].name.begin + apart.layers[0].name.size);
    // The same lengths, other bytes (bf16 for fp16, as a sweep over the data type gives): another definition.
    std::vector<LayerRow> other_dtype = layers;
    for (LayerRow& l : other_dtype) l.dtype = l.dtype == "fp16" ? "bf16" : "fp16";
    mlsim::db::PreparedLayers bf;
    mlsim::db::prepare_layers(other_dtype, bf);
    REQUIRE(bf.layers[0].dtype.size == p.layers[0].dtype.size);
    // The same bytes in one place, split differently: the name one byte shorter, the op one longer.
    mlsim::db::PreparedLayers shifted = p;
    shifted.layers[1].name.size -= 1;
    shifted.layers[1].op.begin -= 1;
    shifted.layers[1].op.size += 1;
    REQUIRE(shifted.consistent());
    {
        ResultsDb db(path);
        db.record_run(sample_info("a\n"), p, 1.0);
        db.record_run(sample_info("b\n"), apart, 1.0);
        db.record_run(sample_info("c\n"), p, 1.0);
        db.record_run(sample_info("d\n"), shifted, 1.0);
        db.record_run(sample_info("e\n"), bf, 1.0);
        db.record_run(sample_info("f\n"), p, 1.0);
    }
    CHECK(query_int(path, "SELECT COUNT(*) FROM layer_defs") == 7);
    CHECK(query_int(path, "SELECT COUNT(DISTINCT dtype) FROM layer_defs") == 2);
    const auto defs = [&](int64_t run) {
        return query_text(path, fmt::format("SELECT group_concat(def_id, ',') FROM (SELECT def_id FROM "
                                            "layer_results WHERE run_id = {} ORDER BY idx)",
                                            run));
    };
    CHECK(defs(1) == "1,2,3");
    CHECK(defs(2) == "1,2,3");
    CHECK(defs(3) == "1,2,3");
    CHECK(defs(4) == "1,4,3");
    CHECK(defs(5) == "5,6,7");
    CHECK(defs(6) == "1,2,3");
    CHECK(query_text(path, "SELECT name || '|' || op FROM layer_defs WHERE def_id = 4") ==
          std::string(p.str(p.layers[1].name)).substr(0, p.layers[1].name.size - 1) + "|" +
              std::string(p.str(p.layers[1].name)).substr(p.layers[1].name.size - 1) +
              std::string(p.str(p.layers[1].op)));
}

TEST_CASE("prepare_layers refuses rows that break physics, as record_run does, without a database", "[db]") {
    mlsim::db::PreparedLayers p;
    std::vector<LayerRow> layers = sample_layers(3);
    mlsim::db::prepare_layers(layers, p);
    CHECK(p.layers.size() == 3);
    CHECK(p.totals.layer_count == 3);
    layers[1].energy_j = -1;
    CHECK_THROWS_AS(mlsim::db::prepare_layers(layers, p), InternalError);
    layers = sample_layers(3);
    layers[2].metrics.push_back(layers[2].metrics.front());  // a metric twice
    CHECK_THROWS_AS(mlsim::db::prepare_layers(layers, p), InternalError);
}

TEST_CASE("Statement::keep_* leaves a parameter that holds the same value as it is, and only then", "[db]") {
    // The layer rows of a sweep's points repeat most of their columns, and write_layers binds them with
    // keep_* (issue 15): what was kept must be exactly what a plain bind would have bound.
    TempDir dir;
    const std::string path = dir.file("keep.db");
    sql::Connection conn(path, sql::Connection::Mode::read_write_create);
    conn.exec("CREATE TABLE t (k INTEGER PRIMARY KEY, a, b, c)");
    sql::Statement s(conn, "INSERT INTO t (k, a, b, c) VALUES (?, ?, ?, ?)");
    int64_t key = 0;
    auto row = [&](auto&& bind) {
        s.rewind();
        s.bind_int(++key);
        bind();
        s.run();
        return query_text(
            path,
            fmt::format("SELECT quote(a) || ',' || quote(b) || ',' || quote(c) FROM t WHERE k = {}", key));
    };
    CHECK(row([&] {
              std::string text = "layer1";
              s.keep_int(3).keep_real(2.5).keep_text(text);
              text = "changed after binding";  // keep_text copied it
          }) == "3,2.5,'layer1'");
    CHECK(row([&] { s.keep_int(3).keep_real(2.5).keep_text("layer1"); }) == "3,2.5,'layer1'");
    CHECK(row([&] { s.keep_int(4).keep_real(2.5).keep_text("layer2"); }) == "4,2.5,'layer2'");
    // The same type and value only: the real 1.0 after the integer 4, the integer 1 after the real 1.0.
    CHECK(row([&] { s.keep_real(1.0).keep_int(0).keep_real(0.0); }) == "1.0,0,0.0");
    CHECK(row([&] { s.keep_int(1).keep_real(0.0).keep_real(0.0); }) == "1,0.0,0.0");
    // A plain bind in between replaces the kept value: keeping the earlier value again binds it again.
    CHECK(row([&] { s.keep_int(5).keep_text("x").keep_text("y"); }) == "5,'x','y'");
    CHECK(row([&] { s.bind_int(6).bind_text("z").bind_null(); }) == "6,'z',NULL");
    CHECK(row([&] { s.keep_int(5).keep_text("x").keep_text("y"); }) == "5,'x','y'");
    // reset() clears every binding, and what was kept with them.
    s.reset();
    CHECK(row([&] { s.keep_int(5).keep_text("x").keep_text("y"); }) == "5,'x','y'");
    // A value past the statement's parameters is refused, even one that a parameter holds.
    s.rewind();
    s.bind_int(++key).keep_int(5).keep_text("x").keep_text("y");
    CHECK_THROWS_AS(s.keep_int(5), InternalError);
    CHECK_THROWS_AS(s.keep_real(1.0), InternalError);
    s.reset();
}

TEST_CASE("a schema-11 file's layer rows are numbered, each run's range in runs, every row kept", "[db]") {
    TempDir dir;
    const std::string path = dir.file("r.db");
    {
        ResultsDb db(path);
        db.record_run(sample_info("a\n"), sample_layers(5), 1.0);
        db.record_run(sample_info("b\n"), sample_layers(3), 1.0);
        db.record_run(sample_info("c\n"), sample_layers(4), 1.0);
    }
    const std::vector<std::string> before = layer_table_rows(path);
    REQUIRE(before.size() > 20);
    make_schema_11(path);
    REQUIRE(without_rowid_tables(path) == 1);
    REQUIRE(layer_table_rows(path) == before);  // the views of 11 over the table of 11
    {
        ResultsDb db(path);
        CHECK(without_rowid_tables(path) == 0);
        CHECK(layer_table_rows(path) == before);
        CHECK(query_text(path, "SELECT value FROM meta WHERE key = 'schema_version'") ==
              std::to_string(mlsim::db::schema::current_version));
        // Numbered in (run_id, idx) order: each run's rows from its first to its last, nothing else there.
        CHECK(
            query_text(path,
                       "SELECT group_concat(run_id || ':' || first_layer_row || '-' || last_layer_row, ' ') "
                       "FROM (SELECT * FROM runs ORDER BY run_id)") == "1:1-5 2:6-8 3:9-12");
        CHECK(query_int(path,
                        "SELECT COUNT(*) FROM layer_results a JOIN layer_results b ON b.layer_row = "
                        "a.layer_row + 1 WHERE (b.run_id, b.idx) <= (a.run_id, a.idx)") == 0);
        CHECK(query_int(path, "SELECT COUNT(*) FROM pragma_foreign_key_check") == 0);
        db.record_run(sample_info("d\n"), sample_layers(2), 1.0);  // and the file takes new runs
    }
    CHECK(query_text(path, "SELECT first_layer_row || '-' || last_layer_row FROM runs WHERE run_id = 4") ==
          "13-14");
    CHECK(query_int(path, "SELECT COUNT(*) FROM layers WHERE run_id = 4") == 2);
    // The trigger of 12: deleting a run's layers through the view deletes its rows only.
    {
        sql::Connection raw(path, sql::Connection::Mode::read_write_create);
        raw.exec("DELETE FROM layers WHERE run_id = 2");
    }
    CHECK(query_int(path, "SELECT COUNT(*) FROM layer_results WHERE run_id = 2") == 0);
    CHECK(query_int(path, "SELECT COUNT(*) FROM layer_results") == 5 + 4 + 2);
    // A run's lookup is a range of the rowid, not a scan.
    {
        sql::Connection raw(path, sql::Connection::Mode::read_write_create);
        sql::Statement plan(raw, "EXPLAIN QUERY PLAN SELECT * FROM layers WHERE run_id = 3");
        std::string steps;
        while (plan.step()) steps += plan.column_text(3) + "; ";
        INFO(steps);
        CHECK(steps.find("SCAN") == std::string::npos);
        CHECK(steps.find("SEARCH r USING INTEGER PRIMARY KEY (rowid>? AND rowid<?)") != std::string::npos);
    }

    // An index added by hand to schema 11's table would be lost: the migration stops, naming it, and leaves
    // the file as it was.
    const std::string hand = old_file_with(dir.file("hand.db"), make_schema_11,
                                           "CREATE INDEX my_layer_bytes ON layer_results(bytes_read)");
    CHECK_THROWS_WITH(ResultsDb(hand), Catch::Contains(hand) && Catch::Contains("my_layer_bytes"));
    CHECK(without_rowid_tables(hand) == 1);
    CHECK(query_text(hand, "SELECT value FROM meta WHERE key = 'schema_version'") == "11");
}

// Schema 13: a layer whose one level carries the row's own numbers stores the level's name alone.
TEST_CASE(
    "a layer whose one level is the row's own numbers keeps its name alone, and the views show it as before",
    "[db]") {
    TempDir dir;
    const std::string path = dir.file("r.db");
    std::vector<LayerRow> layers = sample_layers(8);
    // Numbers the views must give back bit for bit: 17 significant digits, the largest whole number below
    // 2^53, zeros.
    layers[0].bytes_read = 0.1 + 0.2;
    layers[0].energy_memory_j = 6.0075724799999997e-05;
    layers[1].bytes_read = 9007199254740991.0;
    layers[1].bytes_written = 0;
    layers[2].energy_memory_j = 0;
    // 2^53 and past it (SQLite's printf is not exact for every large number): the object is kept.
    layers[6].bytes_read = 9007199254740992.0;
    layers[7].bytes_written = 1.7976931348623157e308;
    const std::vector<std::string> names{"hbm", "say \"hi\"\\", "dram", "hbm", "hbm", "hbm", "hbm", "hbm"};
    for (std::size_t i = 0; i < layers.size(); ++i) {
        LayerRow& l = layers[i];
        l.energy_j = l.energy_compute_j + l.energy_memory_j + l.energy_static_j;
        l.levels = {LevelRow{names[i], l.bytes_read, l.bytes_written, 0, l.energy_memory_j}};
    }
    // Not the row's numbers: accesses counted, other bytes, another energy. Each keeps its object.
    layers[3].levels[0].accesses = 7;
    layers[4].levels[0].bytes_written += 1;
    layers[5].levels[0].energy_j = layers[5].energy_memory_j / 2;
    { ResultsDb(path).record_run(sample_info("a\n"), layers, 1.0); }

    sql::Connection conn(path, sql::Connection::Mode::read_write_create);
    std::vector<std::string> stored;
    {
        sql::Statement q(conn, "SELECT levels FROM layer_results ORDER BY layer_row");
        while (q.step()) stored.push_back(q.column_text(0));
    }
    REQUIRE(stored.size() == 8);
    CHECK(stored[0] == "\"hbm\"");
    CHECK(stored[1] == "\"say \\\"hi\\\"\\\\\"");
    CHECK(stored[2] == "\"dram\"");
    for (std::size_t i = 3; i < 8; ++i) CHECK(stored[i].starts_with("{\"hbm\":["));

    // layer_levels: each layer's one level with the numbers it was given, bit for bit.
    const auto check_levels = [&] {
        sql::Statement q(
            conn,
            "SELECT idx, level, bytes_read, bytes_written, accesses, energy_j, typeof(bytes_read), "
            "typeof(accesses) FROM layer_levels WHERE run_id = 1 ORDER BY idx");
        std::size_t n = 0;
        while (q.step()) {
            const LevelRow& v = layers.at(static_cast<std::size_t>(q.column_int(0))).levels.front();
            INFO("layer " << q.column_int(0));
            CHECK(q.column_text(1) == v.level);
            CHECK(q.column_real(2) == v.bytes_read);
            CHECK(q.column_real(3) == v.bytes_written);
            CHECK(q.column_int(4) == v.accesses);
            CHECK(q.column_real(5) == v.energy_j);
            CHECK(q.column_text(6) == "real");
            CHECK(q.column_text(7) == "integer");
            ++n;
        }
        CHECK(n == layers.size());
    };
    check_levels();
    // `layers`: the levels object in full, its numbers reading back as the same doubles.
    {
        sql::Statement q(
            conn,
            "SELECT l.idx, json_valid(l.levels), v.key, json_extract(v.value, '$[0]'), "
            "json_extract(v.value, '$[1]'), json_extract(v.value, '$[2]'), json_extract(v.value, "
            "'$[3]') FROM layers l JOIN json_each(l.levels) v WHERE l.run_id = 1 ORDER BY l.idx");
        std::size_t n = 0;
        while (q.step()) {
            const LevelRow& v = layers.at(static_cast<std::size_t>(q.column_int(0))).levels.front();
            INFO("layer " << q.column_int(0));
            CHECK(q.column_int(1) == 1);
            CHECK(q.column_text(2) == v.level);
            CHECK(q.column_real(3) == v.bytes_read);
            CHECK(q.column_real(4) == v.bytes_written);
            CHECK(q.column_int(5) == v.accesses);
            CHECK(q.column_real(6) == v.energy_j);
            ++n;
        }
        CHECK(n == layers.size());
    }
    CHECK(query_text(path, "SELECT levels FROM layers WHERE run_id = 1 AND idx = 2") ==
          fmt::format("{{\"dram\":[{},{},0,0]}}", layers[2].bytes_read, layers[2].bytes_written));
    // The objects `layers` shows, stored in place of the names, read back as the same rows: both forms are
    // one to the views.
    const std::vector<std::string> before = layer_table_rows(path);
    conn.exec(
        "UPDATE layer_results SET levels = (SELECT l.levels FROM layers l WHERE l.run_id = "
        "layer_results.run_id "
        "AND l.idx = layer_results.idx) WHERE substr(levels, 1, 1) = '\"'");
    CHECK(query_int(path, "SELECT COUNT(*) FROM layer_results WHERE substr(levels, 1, 1) = '\"'") == 0);
    CHECK(layer_table_rows(path) == before);
    check_levels();
}

// What schema 12 made of `layers` and layer_levels, and the trigger on `layers` (which 13 keeps as it was).
constexpr const char* k_v12_views =
    "CREATE VIEW layers AS SELECT u.run_id AS run_id, r.idx AS idx, d.name AS name, d.op AS op, d.phase AS "
    "phase, d.dtype AS dtype, d.macs AS macs, d.flops AS flops, d.params AS params, r.bytes_read AS "
    "bytes_read, r.bytes_written AS bytes_written, r.start_s AS start_s, r.end_s AS end_s, r.time_s AS "
    "time_s, r.cycles AS cycles, r.stall_cycles AS stall_cycles, r.energy_j AS energy_j, r.energy_compute_j "
    "AS energy_compute_j, r.energy_memory_j AS energy_memory_j, r.energy_static_j AS energy_static_j, "
    "r.utilization AS utilization, r.bound AS bound, r.compute_s AS compute_s, r.memory_s AS memory_s, "
    "r.overhead_s AS overhead_s, r.communication_s AS communication_s, r.levels AS levels, r.metrics AS "
    "metrics FROM runs u NOT INDEXED JOIN layer_results r ON r.layer_row BETWEEN u.first_layer_row AND "
    "u.last_layer_row AND r.run_id = u.run_id JOIN layer_defs d ON d.def_id = r.def_id; CREATE VIEW "
    "layer_levels AS SELECT u.run_id AS run_id, l.idx AS idx, v.key AS level, CAST(json_extract(v.value, "
    "'$[0]') AS REAL) AS bytes_read, CAST(json_extract(v.value, '$[1]') AS REAL) AS bytes_written, "
    "json_extract(v.value, '$[2]') AS accesses, CAST(json_extract(v.value, '$[3]') AS REAL) AS energy_j FROM "
    "runs u NOT INDEXED JOIN layer_results l ON l.layer_row BETWEEN u.first_layer_row AND u.last_layer_row "
    "AND l.run_id = u.run_id JOIN json_each(l.levels) v; CREATE TRIGGER layers_delete INSTEAD OF DELETE ON "
    "layers BEGIN DELETE FROM layer_results WHERE layer_row BETWEEN (SELECT first_layer_row FROM runs WHERE "
    "run_id = old.run_id) AND (SELECT last_layer_row FROM runs WHERE run_id = old.run_id) AND run_id = "
    "old.run_id AND idx = old.idx; END";

// Turns a current file into what schema 12 wrote: every level as an object, the views of 12, version 12.
void make_schema_12(const std::string& path) {
    sql::Connection raw(path, sql::Connection::Mode::read_write_create);
    raw.exec("BEGIN");
    raw.exec(
        "UPDATE layer_results SET levels = (SELECT l.levels FROM layers l WHERE l.run_id = "
        "layer_results.run_id "
        "AND l.idx = layer_results.idx) WHERE substr(levels, 1, 1) = '\"'");
    raw.exec("DROP VIEW layers; DROP VIEW layer_levels");
    raw.exec(k_v12_views);
    raw.exec("UPDATE meta SET value = '12' WHERE key = 'schema_version'; COMMIT");
}

TEST_CASE("a schema-12 file opens as 13 with the views of 13 and every row as it was", "[db]") {
    TempDir dir;
    const std::string path = dir.file("r.db");
    std::vector<LayerRow> named = sample_layers(3);
    for (LayerRow& l : named)
        l.levels = {LevelRow{"hbm", l.bytes_read, l.bytes_written, 0, l.energy_memory_j}};
    {
        ResultsDb db(path);
        db.record_run(sample_info("a\n"), sample_layers(4), 1.0);
        db.record_run(sample_info("b\n"), named, 1.0);
    }
    const std::vector<std::string> before = layer_table_rows(path);
    make_schema_12(path);
    REQUIRE(query_int(path, "SELECT COUNT(*) FROM layer_results WHERE substr(levels, 1, 1) = '\"'") == 0);
    REQUIRE(layer_table_rows(path) == before);  // the views of 12 over objects
    {
        ResultsDb db(path);
        CHECK(query_text(path, "SELECT value FROM meta WHERE key = 'schema_version'") ==
              std::to_string(mlsim::db::schema::current_version));
        CHECK(layer_table_rows(path) == before);        // the views of 13 over the same objects
        db.record_run(sample_info("c\n"), named, 1.0);  // written the way of 13
    }
    CHECK(query_int(path, "SELECT COUNT(*) FROM layer_results WHERE run_id = 3 AND levels = '\"hbm\"'") == 3);
    CHECK(query_int(path, "SELECT COUNT(*) FROM layer_levels WHERE run_id = 3 AND level = 'hbm'") == 3);
    // The trigger is made again with its view.
    {
        sql::Connection raw(path, sql::Connection::Mode::read_write_create);
        raw.exec("DELETE FROM layers WHERE run_id = 2");
    }
    CHECK(query_int(path, "SELECT COUNT(*) FROM layer_results WHERE run_id = 2") == 0);
    CHECK(query_int(path, "SELECT COUNT(*) FROM layer_results") == 4 + 3);
    // A view of 12 changed by hand is not mlsim's: the file is refused, as it was.
    const std::string hand =
        old_file_with(dir.file("hand.db"), make_schema_12,
                      "DROP VIEW layer_levels; CREATE VIEW layer_levels AS SELECT 1 AS x");
    CHECK_THROWS_WITH(ResultsDb(hand), Catch::Contains(hand) && Catch::Contains("layer_levels"));
    CHECK(query_text(hand, "SELECT value FROM meta WHERE key = 'schema_version'") == "12");
}
