#include "db/schema.h"

#include <fmt/format.h>

#include <array>
#include <set>

#include "db/sqlite.h"
#include "sim/config/error.h"
#include "sim/core/check.h"

namespace mlsim::db::schema {

namespace {

// To add a column: append it to its table with since = current_version + 1, then bump current_version.
constexpr std::array k_meta_columns{
    Column{"key", "TEXT PRIMARY KEY"},
    Column{"value", "TEXT NOT NULL"},
};

constexpr std::array k_run_columns{
    Column{"run_id", "INTEGER PRIMARY KEY"},
    Column{"status", "TEXT NOT NULL CHECK (status IN ('ok', 'error'))"},
    Column{"error", "TEXT"},
    Column{"config_yaml", "TEXT NOT NULL"},
    Column{"config_hash", "TEXT NOT NULL"},
    Column{"version", "TEXT NOT NULL"},
    Column{"wall_s", "REAL"},
    Column{"created_utc", "TEXT"},
    Column{"system", "TEXT"},
    Column{"device", "TEXT"},
    Column{"model", "TEXT"},
    Column{"mode", "TEXT"},
    Column{"dtype", "TEXT"},
    Column{"batch", "INTEGER"},
    Column{"seq", "INTEGER"},
    Column{"peak_flops_per_s", "REAL"},
    Column{"mem_bandwidth_Bps", "REAL"},
    Column{"total_time_s", "REAL"},
    Column{"total_energy_j", "REAL"},
    Column{"layer_count", "INTEGER"},
    Column{"total_macs", "REAL"},
    Column{"total_flops", "REAL"},
    Column{"total_bytes_read", "REAL"},
    Column{"total_bytes_written", "REAL"},
    Column{"total_energy_compute_j", "REAL"},
    Column{"total_energy_memory_j", "REAL"},
    Column{"total_energy_static_j", "REAL"},
    Column{"device_model", "TEXT", 3},  // roofline | systolic | ...
    Column{"total_cycles", "INTEGER", 3},
    Column{"total_stall_cycles", "INTEGER", 3},
};

constexpr std::array k_layer_columns{
    Column{"run_id", "INTEGER NOT NULL REFERENCES runs(run_id)"},
    Column{"idx", "INTEGER NOT NULL"},
    Column{"name", "TEXT NOT NULL"},
    Column{"op", "TEXT NOT NULL"},
    Column{"phase", "TEXT"},
    Column{"dtype", "TEXT"},
    Column{"macs", "REAL"},
    Column{"flops", "REAL"},
    Column{"params", "INTEGER"},
    Column{"bytes_read", "REAL"},
    Column{"bytes_written", "REAL"},
    Column{"start_s", "REAL"},
    Column{"end_s", "REAL"},
    Column{"time_s", "REAL"},
    Column{"cycles", "INTEGER"},
    Column{"stall_cycles", "INTEGER"},
    Column{"energy_j", "REAL"},
    Column{"energy_compute_j", "REAL"},
    Column{"energy_memory_j", "REAL"},
    Column{"energy_static_j", "REAL"},
    Column{"utilization", "REAL"},
    Column{"bound", "TEXT"},
    // Detailed device models (schema 3): stalls by cause, the mapping, energy and bytes per level.
    Column{"stall_weight_cycles", "INTEGER", 3},
    Column{"stall_input_cycles", "INTEGER", 3},
    Column{"stall_output_cycles", "INTEGER", 3},
    Column{"pe_hops", "INTEGER", 3},
    Column{"tiling", "TEXT", 3},
    Column{"energy_sram_j", "REAL", 3},
    Column{"energy_dram_j", "REAL", 3},
    Column{"energy_noc_j", "REAL", 3},
    Column{"bytes_ifmap_read", "REAL", 3},
    Column{"bytes_ifmap_written", "REAL", 3},
    Column{"bytes_filter_read", "REAL", 3},
    Column{"bytes_filter_written", "REAL", 3},
    Column{"bytes_ofmap_read", "REAL", 3},
    Column{"bytes_ofmap_written", "REAL", 3},
};

// One row per (sweep, run): which point of which sweep a run is. A point rerun after a failure
// (--retry-failed) has one row per attempt; a point found already done (in another sweep or by
// `mlsim run`) is linked to that run.
constexpr std::array k_sweep_columns{
    Column{"sweep_name", "TEXT NOT NULL", 2},
    Column{"point", "INTEGER NOT NULL", 2},
    Column{"run_id", "INTEGER NOT NULL REFERENCES runs(run_id)", 2},
    Column{"config_hash", "TEXT NOT NULL", 2},
    Column{"factors_json", "TEXT NOT NULL", 2},
    Column{"created_utc", "TEXT", 2},
};

// The same factor values in long format, one row per factor, for pandas to pivot; value_num is the
// value in SI units when it is a number or a quantity ("8MiB" -> 8388608), else NULL.
constexpr std::array k_sweep_factor_columns{
    Column{"sweep_name", "TEXT NOT NULL", 2}, Column{"run_id", "INTEGER NOT NULL REFERENCES runs(run_id)", 2},
    Column{"factor", "TEXT NOT NULL", 2},     Column{"value", "TEXT NOT NULL", 2},
    Column{"value_num", "REAL", 2},
};

const std::array k_tables{
    Table{"meta", k_meta_columns, ""},
    Table{"runs", k_run_columns, ""},
    Table{"layers", k_layer_columns, "PRIMARY KEY (run_id, idx)"},
    Table{"sweeps", k_sweep_columns, "PRIMARY KEY (sweep_name, run_id)"},
    Table{"sweep_factors", k_sweep_factor_columns, "PRIMARY KEY (sweep_name, run_id, factor)"},
};

constexpr std::array k_indexes{
    Index{"runs_by_config_hash", "runs(config_hash, status)"},
    Index{"sweeps_by_run", "sweeps(run_id)"},
};

bool contains(std::string_view haystack, std::string_view needle) {
    return haystack.find(needle) != std::string_view::npos;
}

// ALTER TABLE ADD COLUMN cannot add keys or unique columns, nor NOT NULL ones without a default.
bool addable(const Column& col) {
    if (contains(col.decl, "PRIMARY KEY") || contains(col.decl, "UNIQUE")) return false;
    return !contains(col.decl, "NOT NULL") || contains(col.decl, "DEFAULT");
}

std::set<std::string> existing_columns(sql::Connection& conn, std::string_view table) {
    std::set<std::string> names;
    sql::Statement info(conn, fmt::format("SELECT name FROM pragma_table_info('{}')", table));
    while (info.step()) names.insert(info.column_text(0));
    return names;
}

bool table_exists(sql::Connection& conn, std::string_view table) {
    sql::Statement q(conn, "SELECT 1 FROM sqlite_schema WHERE type = 'table' AND name = ?");
    q.bind_text(table).finish_binding();
    return q.step();
}

int64_t count_schema_objects(sql::Connection& conn) {
    sql::Statement q(conn, "SELECT COUNT(*) FROM sqlite_schema");
    q.step();
    return q.column_int(0);
}

int64_t read_application_id(sql::Connection& conn) {
    sql::Statement q(conn, "PRAGMA application_id");
    q.step();
    return q.column_int(0);
}

// 0 when the file has no meta table or no version row (older than versioning, or brand new).
int64_t read_schema_version(sql::Connection& conn) {
    if (!table_exists(conn, "meta")) return 0;
    sql::Statement q(conn, "SELECT value FROM meta WHERE key = 'schema_version'");
    if (!q.step()) return 0;
    std::string text = q.column_text(0);
    try {
        return std::stoll(text);
    } catch (const std::exception&) {
        throw cfg::UserError(fmt::format(
            "{}: error: results database: meta.schema_version is '{}', not a number", conn.path(), text));
    }
}

void check_identity(sql::Connection& conn) {
    int64_t app_id = read_application_id(conn);
    if (app_id == application_id) return;
    // A brand-new (empty) file is ours to stamp; anything else with a different stamp belongs to another
    // tool.
    if (app_id != 0 || count_schema_objects(conn) != 0)
        throw cfg::UserError(fmt::format(
            "{}: error: results database: this SQLite file was not written by mlsim (application_id {:#x}, "
            "expected {:#x}); choose another file",
            conn.path(), app_id, application_id));
    conn.exec(fmt::format("PRAGMA application_id = {}", application_id));
}

void migrate_table(sql::Connection& conn, const Table& table) {
    if (!table_exists(conn, table.name)) {
        conn.exec(create_table_sql(table));
        return;
    }
    std::set<std::string> have = existing_columns(conn, table.name);
    for (const Column& col : table.columns) {
        if (have.contains(std::string(col.name))) continue;
        MLSIM_CHECK(addable(col),
                    fmt::format("column {}.{} '{}' cannot be added by ALTER TABLE; give it a DEFAULT "
                                "or drop the key constraint",
                                table.name, col.name, col.decl));
        conn.exec(fmt::format("ALTER TABLE {} ADD COLUMN {} {}", table.name, col.name, col.decl));
    }
}

// Rolls back unless committed, so a failed migration leaves the file as it was.
class MigrationTransaction {
  public:
    explicit MigrationTransaction(sql::Connection& conn) : m_conn(conn) { m_conn.exec("BEGIN IMMEDIATE"); }
    ~MigrationTransaction() {
        if (!m_committed) {
            try {
                m_conn.exec("ROLLBACK");
            } catch (...) {  // NOLINT: the original exception is the one worth reporting
            }
        }
    }
    MigrationTransaction(const MigrationTransaction&) = delete;
    MigrationTransaction& operator=(const MigrationTransaction&) = delete;
    void commit() {
        m_conn.exec("COMMIT");
        m_committed = true;
    }

  private:
    sql::Connection& m_conn;
    bool m_committed = false;
};

}  // namespace

std::span<const Table> tables() { return k_tables; }

std::span<const Index> indexes() { return k_indexes; }

std::string create_table_sql(const Table& table) {
    std::string sql = fmt::format("CREATE TABLE {} (", table.name);
    for (size_t i = 0; i < table.columns.size(); ++i)
        sql += fmt::format("{}{} {}", i == 0 ? "" : ", ", table.columns[i].name, table.columns[i].decl);
    if (!table.constraints.empty()) sql += fmt::format(", {}", table.constraints);
    sql += ")";
    return sql;
}

void migrate(sql::Connection& conn) {
    MigrationTransaction txn(conn);
    check_identity(conn);
    int64_t found = read_schema_version(conn);
    if (found > current_version)
        throw cfg::UserError(fmt::format(
            "{}: error: results database: schema version {} is newer than this mlsim understands ({}); "
            "use a newer mlsim or another file",
            conn.path(), found, current_version));
    for (const Table& table : k_tables) migrate_table(conn, table);
    for (const Index& index : k_indexes)
        conn.exec(fmt::format("CREATE INDEX IF NOT EXISTS {} ON {}", index.name, index.definition));
    if (found != current_version)
        conn.exec(fmt::format("INSERT OR REPLACE INTO meta (key, value) VALUES ('schema_version', '{}')",
                              current_version));
    txn.commit();
}

}  // namespace mlsim::db::schema
