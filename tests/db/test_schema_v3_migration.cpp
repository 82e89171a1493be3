// Migration of real files written by older mlsim to the current schema: a schema-3 file, from before the
// long-format tables existed, and a schema-10 file, from before `layers` split into definitions and results
// (tests/db/data/schema_v3.db, schema_v10.db; how they were made: tests/db/data/README.md).
#include <fmt/format.h>
#include <sqlite3.h>

#include <algorithm>
#include <catch2/catch.hpp>
#include <filesystem>
#include <fstream>
#include <map>
#include <optional>
#include <set>
#include <sstream>
#include <string>
#include <vector>

#include "db/results_db.h"
#include "db/schema.h"
#include "db/sqlite.h"
#include "sim/config/error.h"
#include "tests/db/temp_dir.h"

namespace fs = std::filesystem;
using mlsim::cfg::UserError;
using mlsim::db::LayerRow;
using mlsim::db::LevelRow;
using mlsim::db::MetricRow;
using mlsim::db::ResultsDb;
using mlsim::db::RunInfo;

namespace {

struct TempDir : mlsim::test::TempDir {
    TempDir() : mlsim::test::TempDir("v3") {}
};

const std::string k_fixture = std::string(MLSIM_SOURCE_DIR) + "/tests/db/data/schema_v3.db";

// The schema-3 per-family columns of `layers` and where schema 4 keeps them.
struct MovedMetric {
    const char* column;
    const char* unit;  // empty: a text metric
};
const std::vector<MovedMetric> k_moved_metrics{
    {"stall_weight_cycles", "cycles"},
    {"stall_input_cycles", "cycles"},
    {"stall_output_cycles", "cycles"},
    {"pe_hops", "count"},
    {"energy_sram_j", "J"},
    {"energy_dram_j", "J"},
    {"energy_noc_j", "J"},
    {"tiling", ""},
};
const std::vector<std::string> k_moved_levels{"ifmap", "filter", "ofmap"};

std::vector<std::string> moved_columns() {
    std::vector<std::string> cols;
    for (const MovedMetric& m : k_moved_metrics) cols.emplace_back(m.column);
    for (const std::string& l : k_moved_levels) {
        cols.push_back("bytes_" + l + "_read");
        cols.push_back("bytes_" + l + "_written");
    }
    return cols;
}

// A plain SQLite connection for the test's own queries. `immutable` reads a file exactly as it is on
// disk and creates nothing beside it (no -wal / -shm), so the fixture in the source tree is never touched.
class Raw {
  public:
    Raw(const std::string& path, bool immutable) {
        const std::string uri = immutable ? "file:" + path + "?immutable=1" : "file:" + path;
        const int flags = SQLITE_OPEN_URI | (immutable ? SQLITE_OPEN_READONLY : SQLITE_OPEN_READWRITE);
        REQUIRE(sqlite3_open_v2(uri.c_str(), &m_db, flags, nullptr) == SQLITE_OK);
    }
    ~Raw() { sqlite3_close(m_db); }
    Raw(const Raw&) = delete;
    Raw& operator=(const Raw&) = delete;

    // Rows as text, each value exact: integers as integers, reals with 17 significant digits (they
    // round-trip), NULL as NULL, text quoted.
    std::vector<std::string> rows(const std::string& sql) {
        std::vector<std::string> out;
        each(sql, [&](sqlite3_stmt* st) {
            std::string row;
            for (int c = 0; c < sqlite3_column_count(st); ++c) {
                if (c) row += '|';
                switch (sqlite3_column_type(st, c)) {
                    case SQLITE_NULL:
                        row += "NULL";
                        break;
                    case SQLITE_INTEGER:
                        row += std::to_string(sqlite3_column_int64(st, c));
                        break;
                    case SQLITE_FLOAT:
                        row += fmt::format("{:.17g}", sqlite3_column_double(st, c));
                        break;
                    default:
                        row += fmt::format("'{}'", reinterpret_cast<const char*>(sqlite3_column_text(st, c)));
                }
            }
            out.push_back(row);
        });
        return out;
    }

    int64_t count(const std::string& sql) {
        std::vector<std::string> r = rows(sql);
        REQUIRE(r.size() == 1);
        return std::stoll(r.front());
    }

    std::vector<std::string> columns(const std::string& table) {
        std::vector<std::string> out;
        each(fmt::format("SELECT name FROM pragma_table_info('{}') ORDER BY cid", table),
             [&](sqlite3_stmt* st) {
                 out.emplace_back(reinterpret_cast<const char*>(sqlite3_column_text(st, 0)));
             });
        return out;
    }

    void exec(const std::string& sql) {
        char* err = nullptr;
        const int rc = sqlite3_exec(m_db, sql.c_str(), nullptr, nullptr, &err);
        INFO(sql << ": " << (err ? err : ""));
        sqlite3_free(err);
        REQUIRE(rc == SQLITE_OK);
    }

    template <class F>
    void each(const std::string& sql, F&& f) {
        sqlite3_stmt* st = nullptr;
        INFO(sql);
        REQUIRE(sqlite3_prepare_v2(m_db, sql.c_str(), -1, &st, nullptr) == SQLITE_OK);
        int rc;
        while ((rc = sqlite3_step(st)) == SQLITE_ROW) f(st);
        sqlite3_finalize(st);
        REQUIRE(rc == SQLITE_DONE);
    }

  private:
    sqlite3* m_db = nullptr;
};

std::string join(const std::vector<std::string>& names) {
    std::string out;
    for (const std::string& n : names) out += (out.empty() ? "" : ", ") + n;
    return out;
}

std::string file_bytes(const std::string& path) {
    std::ifstream in(path, std::ios::binary);
    std::ostringstream out;
    out << in.rdbuf();
    return out.str();
}

// A copy of the fixture to migrate; the fixture itself is never opened for writing.
std::string copy_fixture(const TempDir& dir) {
    const std::string path = dir.file("v3.db");
    fs::copy_file(k_fixture, path);
    return path;
}

// One layer's schema-3 per-family values, read straight from the fixture.
struct V3Layer {
    int64_t run_id = 0, idx = 0;
    bool detailed = false;                  // the run's device_model is set and not 'roofline'
    std::map<std::string, double> numeric;  // column -> value
    std::string tiling;
    std::map<std::string, std::pair<double, double>> levels;  // ifmap -> (read, written)
};

std::vector<V3Layer> read_v3_layers(Raw& db) {
    std::string cols;
    for (const MovedMetric& m : k_moved_metrics) cols += fmt::format(", l.{}", m.column);
    for (const std::string& l : k_moved_levels)
        cols += fmt::format(", l.bytes_{0}_read, l.bytes_{0}_written", l);
    std::vector<V3Layer> out;
    db.each(
        fmt::format("SELECT l.run_id, l.idx, r.device_model IS NOT NULL AND r.device_model <> 'roofline'{} "
                    "FROM layers l JOIN runs r USING (run_id) ORDER BY l.run_id, l.idx",
                    cols),
        [&](sqlite3_stmt* st) {
            V3Layer v;
            v.run_id = sqlite3_column_int64(st, 0);
            v.idx = sqlite3_column_int64(st, 1);
            v.detailed = sqlite3_column_int64(st, 2) != 0;
            int c = 3;
            for (const MovedMetric& m : k_moved_metrics) {
                REQUIRE(sqlite3_column_type(st, c) != SQLITE_NULL);
                if (*m.unit)
                    v.numeric[m.column] = sqlite3_column_double(st, c);
                else
                    v.tiling = reinterpret_cast<const char*>(sqlite3_column_text(st, c));
                ++c;
            }
            for (const std::string& l : k_moved_levels) {
                v.levels[l] = {sqlite3_column_double(st, c), sqlite3_column_double(st, c + 1)};
                c += 2;
            }
            out.push_back(v);
        });
    return out;
}

// Everything a file holds, as text: its schema and every row of every table.
std::vector<std::string> dump(Raw& db) {
    std::vector<std::string> out = db.rows("SELECT type, name, sql FROM sqlite_schema ORDER BY type, name");
    for (const std::string& t :
         db.rows("SELECT name FROM sqlite_schema WHERE type = 'table' ORDER BY name")) {
        const std::string name = t.substr(1, t.size() - 2);  // unquote
        // A WITHOUT ROWID table (schema 8) has no rowid: its rows come in its primary key's order.
        const bool keyed =
            db.count(fmt::format("SELECT COUNT(*) FROM sqlite_schema WHERE name = '{}' AND sql LIKE "
                                 "'%WITHOUT ROWID'",
                                 name)) != 0;
        for (const std::string& r :
             db.rows(fmt::format("SELECT * FROM {}{}", name, keyed ? "" : " ORDER BY rowid")))
            out.push_back(name + ": " + r);
    }
    return out;
}

}  // namespace

TEST_CASE("The schema-3 fixture is what the migration test needs", "[db][migration]") {
    Raw v3(k_fixture, true);
    CHECK(v3.count("SELECT CAST(value AS INTEGER) FROM meta WHERE key = 'schema_version'") == 3);
    // Runs of the systolic model, the roofline, and failed ones; a sweep over some of them.
    CHECK(v3.count("SELECT COUNT(*) FROM runs WHERE status = 'ok' AND device_model = 'systolic'") >= 2);
    CHECK(v3.count("SELECT COUNT(*) FROM runs WHERE status = 'ok' AND device_model = 'roofline'") >= 1);
    CHECK(v3.count("SELECT COUNT(*) FROM runs WHERE status = 'error'") >= 1);
    CHECK(v3.count("SELECT COUNT(*) FROM sweeps") >= 3);
    // Non-zero and zero values, array and vector tilings, so every kind of copy is exercised.
    CHECK(v3.count("SELECT COUNT(*) FROM layers WHERE pe_hops > 0 AND stall_weight_cycles > 0") >= 2);
    CHECK(v3.count("SELECT COUNT(*) FROM layers WHERE tiling = 'vector'") >= 2);
    CHECK(v3.count("SELECT COUNT(*) FROM layers WHERE tiling LIKE 'm=%'") >= 2);
    CHECK(v3.count("SELECT COUNT(*) FROM layers WHERE tiling = ''") >= 1);  // the roofline's
    CHECK(v3.count("SELECT COUNT(*) FROM layers WHERE bytes_filter_read > 0 AND energy_noc_j > 0") >= 2);
    for (const std::string& col : moved_columns())
        CHECK(v3.count(fmt::format("SELECT COUNT(*) FROM pragma_table_info('layers') WHERE name = '{}'",
                                   col)) == 1);
    CHECK(fs::file_size(k_fixture) < 300 * 1024);
    CHECK_FALSE(fs::exists(k_fixture + "-wal"));
}

TEST_CASE("Opening a schema-3 file moves the per-family columns into layer_metrics and layer_levels",
          "[db][migration]") {
    const std::string fixture_before = file_bytes(k_fixture);
    TempDir dir;
    const std::string path = copy_fixture(dir);

    // What schema 3 held, read before anything migrates.
    std::vector<V3Layer> v3_layers;
    std::vector<std::string> v3_run_cols, v3_runs, v3_core_layers, v3_sweeps, v3_factors;
    std::vector<std::string> core_cols;
    {
        Raw v3(k_fixture, true);
        v3_layers = read_v3_layers(v3);
        v3_run_cols = v3.columns("runs");
        v3_runs = v3.rows(fmt::format("SELECT {} FROM runs ORDER BY run_id", join(v3_run_cols)));
        const std::vector<std::string> moved = moved_columns();
        for (const std::string& c : v3.columns("layers"))
            if (std::find(moved.begin(), moved.end(), c) == moved.end()) core_cols.push_back(c);
        v3_core_layers = v3.rows(fmt::format("SELECT {} FROM layers ORDER BY run_id, idx", join(core_cols)));
        v3_sweeps = v3.rows("SELECT * FROM sweeps ORDER BY rowid");
        v3_factors = v3.rows("SELECT * FROM sweep_factors ORDER BY rowid");
    }
    REQUIRE(v3_layers.size() > 20);
    REQUIRE(core_cols.size() == 22);

    { ResultsDb db(path); }  // migrates

    Raw db(path, false);
    CHECK(db.count("SELECT CAST(value AS INTEGER) FROM meta WHERE key = 'schema_version'") ==
          mlsim::db::schema::current_version);
    CHECK(db.rows("PRAGMA integrity_check") == std::vector<std::string>{"'ok'"});
    CHECK(db.count("SELECT COUNT(*) FROM pragma_foreign_key_check") == 0);

    SECTION("the dropped columns are gone and layers has exactly the declared columns") {
        const std::vector<std::string> have = db.columns("layers");
        for (const std::string& col : moved_columns()) {
            INFO(col);
            CHECK(std::find(have.begin(), have.end(), col) == have.end());
        }
        // The view `layers` (schema 11): run_id and idx, the definition's columns, then the rest of the
        // results'.
        std::vector<std::string> declared, defs, results;
        for (const auto& table : mlsim::db::schema::tables())
            for (const auto& c : table.columns)
                if (c.name != "def_id" && c.name != "layer_row") {
                    if (table.name == "layer_defs") defs.emplace_back(c.name);
                    if (table.name == "layer_results") results.emplace_back(c.name);
                }
        REQUIRE(results.size() > 2);
        declared.assign(results.begin(), results.begin() + 2);
        declared.insert(declared.end(), defs.begin(), defs.end());
        declared.insert(declared.end(), results.begin() + 2, results.end());
        CHECK(have == declared);
    }

    SECTION("every moved value is in the right table, exactly, and nothing else is") {
        int64_t metrics = 0, levels = 0;
        for (const V3Layer& v : v3_layers) {
            INFO("run " << v.run_id << " layer " << v.idx);
            const std::string where = fmt::format("WHERE run_id = {} AND idx = {}", v.run_id, v.idx);
            if (!v.detailed) {
                // The roofline's zeros measured nothing: no rows.
                CHECK(db.count("SELECT COUNT(*) FROM layer_metrics " + where) == 0);
                CHECK(db.count("SELECT COUNT(*) FROM layer_levels " + where) == 0);
                continue;
            }
            for (const auto& [name_binding, value] : v.numeric) {
                const std::string& name =
                    name_binding;  // a lambda may not capture a structured binding (clang)
                INFO(name);
                const MovedMetric& m = *std::find_if(k_moved_metrics.begin(), k_moved_metrics.end(),
                                                     [&](const MovedMetric& x) { return name == x.column; });
                CHECK(db.rows(fmt::format("SELECT value, unit, text FROM layer_metrics {} AND name = '{}'",
                                          where, name)) ==
                      std::vector<std::string>{fmt::format("{:.17g}|'{}'|NULL", value, m.unit)});
                ++metrics;
            }
            const auto tiling = db.rows(
                fmt::format("SELECT value, unit, text FROM layer_metrics {} AND name = 'tiling'", where));
            if (v.tiling.empty()) {
                CHECK(tiling.empty());
            } else {
                CHECK(tiling == std::vector<std::string>{fmt::format("NULL|NULL|'{}'", v.tiling)});
                ++metrics;
            }
            for (const auto& [level, bytes] : v.levels) {
                INFO(level);
                CHECK(db.rows(fmt::format(
                          "SELECT bytes_read, bytes_written, accesses, energy_j FROM layer_levels "
                          "{} AND level = '{}'",
                          where, level)) == std::vector<std::string>{fmt::format("{:.17g}|{:.17g}|0|0",
                                                                                 bytes.first, bytes.second)});
                ++levels;
            }
        }
        CHECK(metrics > 100);
        CHECK(db.count("SELECT COUNT(*) FROM layer_metrics") == metrics);
        CHECK(db.count("SELECT COUNT(*) FROM layer_levels") == levels);
    }

    SECTION("layer rows keep their core values and have an unknown time split") {
        CHECK(db.rows(fmt::format("SELECT {} FROM layers ORDER BY run_id, idx", join(core_cols))) ==
              v3_core_layers);
        CHECK(db.count("SELECT COUNT(*) FROM layers WHERE compute_s IS NOT NULL OR memory_s IS NOT NULL OR "
                       "overhead_s IS NOT NULL OR communication_s IS NOT NULL") == 0);
    }

    SECTION("run rows are untouched; the new run columns are unknown except the average power") {
        CHECK(db.rows(fmt::format("SELECT {} FROM runs ORDER BY run_id", join(v3_run_cols))) == v3_runs);
        CHECK(db.count(
                  "SELECT COUNT(*) FROM runs WHERE tdp_w IS NOT NULL OR over_tdp IS NOT NULL OR "
                  "total_compute_s IS NOT NULL OR total_memory_s IS NOT NULL OR total_overhead_s IS NOT NULL "
                  "OR total_communication_s IS NOT NULL") == 0);
        CHECK(db.count("SELECT COUNT(*) FROM runs WHERE status = 'error' AND average_power_w IS NOT NULL") ==
              0);
        // Exactly the quotient of the untouched totals.
        CHECK(db.count("SELECT COUNT(*) FROM runs WHERE status = 'ok' AND total_time_s > 0 AND "
                       "average_power_w = total_energy_j / total_time_s") ==
              db.count("SELECT COUNT(*) FROM runs WHERE status = 'ok'"));
        CHECK(db.rows("SELECT * FROM sweeps ORDER BY rowid") == v3_sweeps);
        CHECK(db.rows("SELECT * FROM sweep_factors ORDER BY rowid") == v3_factors);
    }

    SECTION("a new run is appended after the old ones, with its levels and metrics") {
        const int64_t last = db.count("SELECT MAX(run_id) FROM runs");
        RunInfo info;
        info.config_yaml = "after: migration\n";
        info.device_model = "systolic";
        info.tdp_W = 40;
        LayerRow l;
        l.name = "conv";
        l.op = "conv2d";
        l.bound = "compute";
        l.end_s = l.time_s = 2e-6;
        l.compute_s = 1.5e-6;
        l.memory_s = 0.5e-6;
        l.energy_j = l.energy_compute_j = 1e-4;  // 50 W: over the TDP
        l.levels = {LevelRow{"unified_buffer", 1024, 512, 48, 1e-7}};
        l.metrics = {MetricRow{"pe_hops", 4096.0, "count", ""},
                     MetricRow{"tiling", std::nullopt, "", "m=1 n=2"}};
        {
            ResultsDb rdb(path);
            CHECK(rdb.record_run(info, {l}, 0.1) == last + 1);
        }
        const std::string id = std::to_string(last + 1);
        CHECK(db.rows("SELECT level, bytes_read, bytes_written, accesses, energy_j FROM layer_levels WHERE "
                      "run_id = " +
                      id) ==
              std::vector<std::string>{fmt::format("'unified_buffer'|1024|512|48|{:.17g}", 1e-7)});
        CHECK(db.rows("SELECT name, value, unit, text FROM layer_metrics WHERE run_id = " + id +
                      " ORDER BY name") ==
              std::vector<std::string>{"'pe_hops'|4096|'count'|NULL", "'tiling'|NULL|NULL|'m=1 n=2'"});
        CHECK(db.rows("SELECT compute_s, memory_s, overhead_s, communication_s FROM layers WHERE run_id = " +
                      id) == std::vector<std::string>{fmt::format("{:.17g}|{:.17g}|0|0", 1.5e-6, 0.5e-6)});
        CHECK(db.rows("SELECT tdp_w, over_tdp FROM runs WHERE run_id = " + id) ==
              std::vector<std::string>{"40|1"});
        // The old rows did not move.
        CHECK(db.rows(fmt::format("SELECT {} FROM runs WHERE run_id <= {} ORDER BY run_id", join(v3_run_cols),
                                  last)) == v3_runs);
    }

    SECTION("opening the migrated file again changes nothing") {
        const std::vector<std::string> before = dump(db);
        const int64_t cookie = db.count("PRAGMA schema_version");
        { ResultsDb again(path); }
        CHECK(dump(db) == before);
        CHECK(db.count("PRAGMA schema_version") == cookie);
    }

    CHECK(file_bytes(k_fixture) == fixture_before);
}

TEST_CASE("A run without a device model (migrated from before schema 3) moves nothing", "[db][migration]") {
    TempDir dir;
    const std::string path = copy_fixture(dir);
    {
        // What a schema-2 file looks like after the additive step to 3: NULL device_model and columns.
        Raw raw(path, false);
        raw.exec("UPDATE runs SET device_model = NULL WHERE run_id = 4");
        std::string nulls;
        for (const std::string& c : moved_columns()) nulls += (nulls.empty() ? "" : ", ") + c + " = NULL";
        raw.exec("UPDATE layers SET " + nulls + " WHERE run_id = 4");
    }
    { ResultsDb db(path); }
    Raw db(path, false);
    CHECK(db.count("SELECT COUNT(*) FROM layer_metrics WHERE run_id = 4") == 0);
    CHECK(db.count("SELECT COUNT(*) FROM layer_levels WHERE run_id = 4") == 0);
    CHECK(db.count("SELECT COUNT(*) FROM layer_metrics WHERE run_id = 1") >
          0);  // the other systolic run moved
}

TEST_CASE(
    "An index added by hand on a moved column stops the migration with a user error and changes nothing",
    "[db][migration]") {
    TempDir dir;
    const std::string path = copy_fixture(dir);
    {
        Raw raw(path, false);
        raw.exec("CREATE INDEX my_tilings ON layers(tiling)");
    }
    std::vector<std::string> before;
    {
        Raw raw(path, false);
        before = dump(raw);
    }
    CHECK_THROWS_WITH(ResultsDb(path), Catch::Contains(path) && Catch::Contains("layers.tiling") &&
                                           Catch::Contains("drop the index"));
    CHECK_THROWS_AS(ResultsDb(path), UserError);
    {
        Raw raw(path, false);
        CHECK(dump(raw) == before);  // still schema 3, columns and rows as they were
        raw.exec("DROP INDEX my_tilings");
    }
    { ResultsDb db(path); }
    Raw raw(path, false);
    CHECK(raw.count("SELECT CAST(value AS INTEGER) FROM meta WHERE key = 'schema_version'") ==
          mlsim::db::schema::current_version);
    CHECK(raw.count("SELECT COUNT(*) FROM layer_metrics WHERE name = 'tiling'") > 0);
}

namespace {

// A real schema-10 file (tests/db/data/README.md): `layers` a table, its levels and metrics in JSON objects.
const std::string k_fixture_v10 = std::string(MLSIM_SOURCE_DIR) + "/tests/db/data/schema_v10.db";

std::string copy_v10_fixture(const TempDir& dir) {
    const std::string path = dir.file("v10.db");
    fs::copy_file(k_fixture_v10, path);
    return path;
}

// What a reader sees of a file's layers, through `layers` and the views over it, every value exact.
std::vector<std::string> layer_views(Raw& raw) {
    std::vector<std::string> out;
    for (const char* q : {"SELECT * FROM layers ORDER BY run_id, idx",
                          "SELECT * FROM layer_levels ORDER BY run_id, idx, level",
                          "SELECT * FROM layer_metrics ORDER BY run_id, idx, name"}) {
        out.push_back(q);
        for (std::string& row : raw.rows(q)) out.push_back(std::move(row));
    }
    return out;
}

}  // namespace

TEST_CASE("A schema-10 file's layers table splits into definitions and results that read back the same",
          "[db][migration]") {
    std::vector<std::string> before;
    int64_t rows = 0;
    {
        Raw v10(k_fixture_v10, true);
        REQUIRE(v10.count("SELECT CAST(value AS INTEGER) FROM meta WHERE key = 'schema_version'") == 10);
        REQUIRE(v10.rows("SELECT type FROM sqlite_schema WHERE name = 'layers'") ==
                std::vector<std::string>{"'table'"});
        before = layer_views(v10);
        rows = v10.count("SELECT COUNT(*) FROM layers");
        REQUIRE(rows > 20);
        REQUIRE(v10.count("SELECT COUNT(*) FROM layer_levels") > 0);
        REQUIRE(v10.count("SELECT COUNT(*) FROM layer_metrics WHERE text IS NOT NULL") > 0);
        REQUIRE(v10.count("SELECT COUNT(*) FROM layer_metrics WHERE value IS NOT NULL") > 0);
    }
    TempDir dir;
    const std::string path = copy_v10_fixture(dir);
    { ResultsDb db(path); }
    Raw raw(path, false);
    CHECK(raw.count("SELECT CAST(value AS INTEGER) FROM meta WHERE key = 'schema_version'") ==
          mlsim::db::schema::current_version);
    CHECK(raw.rows("SELECT type FROM sqlite_schema WHERE name = 'layers'") ==
          std::vector<std::string>{"'view'"});
    CHECK(layer_views(raw) == before);
    CHECK(raw.count("SELECT COUNT(*) FROM layer_results") == rows);
    // Each definition once, ids in the order of their first layer.
    CHECK(raw.count("SELECT COUNT(*) FROM layer_defs") ==
          raw.count("SELECT COUNT(*) FROM (SELECT DISTINCT name, op, phase, dtype, macs, flops, params FROM "
                    "layers)"));
    CHECK(raw.count(
              "SELECT COUNT(*) FROM layer_results a JOIN layer_results b ON (b.run_id, b.idx) > (a.run_id, "
              "a.idx) AND b.def_id < a.def_id AND NOT EXISTS (SELECT 1 FROM layer_results c WHERE "
              "c.def_id = b.def_id AND (c.run_id, c.idx) < (b.run_id, b.idx))") == 0);
    CHECK(raw.rows("PRAGMA integrity_check") == std::vector<std::string>{"'ok'"});
    CHECK(raw.count("SELECT COUNT(*) FROM pragma_foreign_key_check") == 0);
}

TEST_CASE("An index added by hand on schema 10's layers stops the step to 11 and changes nothing",
          "[db][migration]") {
    TempDir dir;
    const std::string path = copy_v10_fixture(dir);
    {
        Raw raw(path, false);
        raw.exec("CREATE INDEX my_layer_ops ON layers(op)");
    }
    std::vector<std::string> before;
    {
        Raw raw(path, false);
        before = dump(raw);
    }
    CHECK_THROWS_WITH(ResultsDb(path), Catch::Contains(path) && Catch::Contains("my_layer_ops") &&
                                           Catch::Contains("layer_defs"));
    Raw raw(path, false);
    CHECK(dump(raw) == before);
    CHECK(raw.count("SELECT CAST(value AS INTEGER) FROM meta WHERE key = 'schema_version'") == 10);
    CHECK(raw.rows("SELECT type FROM sqlite_schema WHERE name = 'layers'") ==
          std::vector<std::string>{"'table'"});
    CHECK(raw.count("SELECT COUNT(*) FROM sqlite_schema WHERE name = 'layer_defs'") == 0);
}
