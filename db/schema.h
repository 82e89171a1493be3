#pragma once
// The results-database schema, declared once, and the migration that brings any older mlsim file to it.
// Contract: after migrate() the file holds every table, column and index declared here and
// meta.schema_version == current_version. migrate() runs in ONE transaction: it either completes or
// leaves the file exactly as it was. It has two parts:
// - Additive: missing tables are created and missing columns added (NULL in existing rows). A column is
//   added by appending a Column (with `since` = the new version) to its table below and bumping
//   current_version. Columns added that way must be addable by ALTER TABLE (no PRIMARY KEY / UNIQUE,
//   and NOT NULL only with a DEFAULT); migrate() checks it.
// - Versioned steps, run after the additive part, each on files older than its version, for changes
//   that move data. Step to 4: the schema-3 per-family columns of `layers` move to the long-format
//   tables, for runs whose device_model is set and is not 'roofline' (the roofline wrote zeros that
//   measured nothing): stall_weight_cycles, stall_input_cycles, stall_output_cycles ("cycles"), pe_hops
//   ("count"), energy_sram_j, energy_dram_j, energy_noc_j ("J") become layer_metrics rows of the same
//   name, tiling a text metric when non-empty; bytes_<op>_read / bytes_<op>_written become layer_levels
//   rows 'ifmap', 'filter', 'ofmap' with accesses 0 and energy_j 0 (schema 3 did not split them). The
//   columns are then dropped from `layers` (ALTER TABLE DROP COLUMN, SQLite >= 3.35); an index, view or
//   trigger added by hand that uses one stops the migration with a UserError. Finished runs get
//   average_power_w = total_energy_j / total_time_s; the time split (layers.compute_s ..., runs.total_*_s)
//   and tdp_w / over_tdp stay NULL: unknown. Every other existing value is untouched. Step to 8: the tables
//   declared without_rowid are rebuilt so (SQLite's procedure for changing a table's storage: a new table
//   made as declared, every row copied, the old one dropped and the new one renamed, foreign-key
//   enforcement off for the connection meanwhile and checked with PRAGMA foreign_key_check before the
//   commit); a column, index, view or trigger on them that mlsim did not make stops it with a UserError.
//   Step to 9: the rows of the table layer_metrics move to layer_metric_values (metric ids given in name
//   order in metric_names), the table is dropped and the view layer_metrics made in its place; a column,
//   index or trigger on the table that mlsim did not make stops it with a UserError.
//   Step to 10: the rows of layer_levels and layer_metric_values become each layer's `levels` and `metrics`
//   JSON objects (every value reads back as the same double), the tables and the view of schema 9 are
//   dropped and the views layer_levels and layer_metrics made (the same rows); a column, index or trigger on
//   the tables that mlsim did not make, or a row whose layer is missing, stops it with a UserError.
//   Step to 11: the table `layers` splits into layer_defs (each distinct name, op, phase, dtype, macs, flops,
//   params once, ids given in the order of their first row) and layer_results (every other column, with
//   def_id naming the row's definition); the table is dropped and the view `layers` made in its place (the
//   same columns, rows and values); a column, index or trigger on it that mlsim did not make stops it with a
//   UserError.
//   Step to 12: layer_results (schema 11's WITHOUT ROWID table) is rebuilt as a rowid table, its rows
//   numbered in (run_id, idx) order, each run's first and last row written to runs, and the views and the
//   trigger over it made again; a column, index or trigger on it that mlsim did not make stops it with a
//   UserError.
//   Step to 13: the views `layers` and layer_levels (and the trigger on `layers`) are made again as 13
//   declares them; no row changes.
// A file written by a newer schema is refused with a UserError rather than half-understood, and so is an
// SQLite file whose application_id is not mlsim's, and one whose objects under mlsim's names are not what
// mlsim makes (a view or index where a table belongs, a meta table without key and value, a table that
// lacks a key or NOT NULL column, a schema_version that is not a whole number): each a UserError naming
// the file and what is wrong, found before anything is written.
#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <string_view>

namespace mlsim::db::sql {
class Connection;
}

namespace mlsim::db::schema {

// Version 1: runs, layers, meta. Version 2: sweeps, sweep_factors (cli/sweep.h). Version 3: device_model,
// cycle totals and the systolic model's columns in `layers`. Version 4: layer_levels, layer_metrics (the
// per-family columns moved there), the time split by bound, average power and TDP. Version 5: claims (which
// process is simulating which point right now; see db/results_db.h). Version 6: collectives and
// link_utilization (the network model, issue 12); requests, serving_metrics, kv_occupancy (serving runs,
// experiment/serving/). Version 7: comparisons (`mlsim compare` studies, experiment/compare.h); energy_j in
// collectives and link_utilization (link energy, issue 12); parallel_runs, parallel_ranks, parallel_exposed
// and purpose / copies in collectives (parallel runs, issue 13). Version 8: layers, layer_levels and
// layer_metrics are WITHOUT ROWID tables (the same columns and keys; each row is stored once, in its primary
// key's b-tree, instead of in the table and again in the key's index), so `rowid` no longer names their rows.
// Version 9: layer_metrics becomes a view (the same columns and rows) over layer_metric_values, whose rows
// name their metric by id, and metric_names (each metric's name and unit, '' for a text metric); the two
// CHECK constraints of the old table are the writer's checks alone.
// Version 10: a layer's levels and metrics are one JSON object each in layers.levels (level -> [bytes_read,
// bytes_written, accesses, energy_j]) and layers.metrics (metric id -> value or text); the views
// layer_levels and layer_metrics show them a row each as before; the tables layer_levels and
// layer_metric_values are gone.
// Version 11: `layers` is a view (the same columns and rows; DELETE on it deletes the rows of layer_results,
// trigger layers_delete) over layer_results, a row per layer of a run
// (what the device made of it: bytes, times, cycles, energy, levels, metrics), and layer_defs, what the
// workload says a layer is (name, op, phase, dtype, macs, flops, params), stored once for all the runs that
// share it: the points of a sweep over the hardware repeat them, and they were a third of what the writer
// spent on a layer's row (bench/README.md, ninth round).
// Version 12: layer_results is a rowid table numbered by layer_row (INTEGER PRIMARY KEY, given by SQLite in
// order of writing), with no other key or index: a run's rows are consecutive, from runs.first_layer_row to
// runs.last_layer_row (NULL for a run without layer rows), and the views find them by that range. A WITHOUT
// ROWID table keyed by (run_id, idx) cost the writer a uniqueness probe and a b-tree rebalance per row; the
// appends cost about a quarter fewer instructions a row (bench/README.md, twelfth round).
// Version 13: a layer whose one memory level carries the row's own numbers (bytes read and written the
// row's, no accesses counted, the row's energy_memory_j as its energy: the roofline's one level), each below
// 2^53 (k_named_level_bound), has that level's name alone in layer_results.levels, a JSON string ('"hbm"');
// the views layer_levels and `layers` show the same rows and numbers as before (`layers.levels` the object,
// each number as JSON that reads back as the same double, its text not always the writer's: 17 digits where
// the writer wrote the shortest).
inline constexpr int64_t current_version = 13;

// PRAGMA application_id stamped into every file so a foreign SQLite file is recognised ('mlsi').
inline constexpr int32_t application_id = 0x6d6c7369;

struct Column {
    std::string_view name;
    std::string_view decl;  // type and constraints, as written after the name in CREATE TABLE
    int64_t since = 1;      // schema version that introduced the column
};

struct Table {
    std::string_view name;
    std::span<const Column> columns;
    std::string_view constraints;  // table constraints appended to CREATE TABLE; may be empty
    // Stored in its primary key's b-tree (CREATE TABLE ... WITHOUT ROWID, schema 8): for the per-layer row
    // tables, whose composite key is how every reader finds their rows.
    bool without_rowid = false;
};

// A view made after the tables (CREATE VIEW IF NOT EXISTS name AS select).
struct View {
    std::string_view name;
    std::string_view select;
    int64_t since = 9;  // the schema version from which the name is a view (a table in older files)
};

struct Index {
    std::string_view name;
    std::string_view definition;  // "<table>(<columns>)"
};

// A trigger made after the views (CREATE TRIGGER name body).
struct Trigger {
    std::string_view name;
    std::string_view body;  // what follows the name: "INSTEAD OF DELETE ON ... BEGIN ...; END"
};

// Read-only: refuses (a UserError naming the file and what is wrong) a file migrate() would refuse:
// another tool's file, objects of the wrong kind or shape under mlsim's names, a schema version that is
// not a number or is newer than ours. It writes nothing, so it runs before anything that changes the
// file (the journal mode); migrate() checks again inside its transaction.
void check_file(sql::Connection& conn);

std::span<const Table> tables();
std::span<const Index> indexes();
std::span<const View> views();

// Creates missing tables, adds missing columns and indexes, runs the versioned steps, stamps the version.
// Runs in one transaction, so a concurrent opener never sees a half-migrated file.
void migrate(sql::Connection& conn);

// Schema 13: a level is stored by its name alone only when its numbers are below this (2^53). The view
// `layers` writes them back as JSON: a whole number below it as an integer, any other with 17 significant
// digits (SQLite's printf '%!.17g'), which reads back as the same double below it. SQLite 3.40's printf is
// not correctly rounded at 17 digits for some values above 1e100; 6 million sampled doubles from 1e-60 to
// 2^53 (random magnitudes and random bit patterns) all read back exactly, through Python's float() and
// SQLite's JSON reader (bench/README.md, seventeenth round). Larger numbers keep the object.
inline constexpr double k_named_level_bound = 9007199254740992.0;

// Appends `text` as a JSON string literal: quotes, backslashes and control characters escaped, UTF-8 as it
// is.
void append_json_string(std::string& json, std::string_view text);

// Appends one entry of a layer's `metrics` object (schema 10) to `json`, which the caller opens with '{',
// separates with ',' and closes with '}': "<metric_id>": the value (the shortest text that reads back as the
// same double; infinity as 9e999, NaN as null), else the text as a JSON string, else null.
void append_metric_json(std::string& json, int64_t metric_id, std::optional<double> value,
                        std::string_view text);
// The value part of such an entry alone (what follows "<metric_id>":), for entries whose ids are known only
// later (db::PreparedLayers).
void append_metric_value_json(std::string& json, std::optional<double> value, std::string_view text);
// The same for a layer's `levels` object: "<level>": [bytes_read, bytes_written, accesses, energy_j].
void append_level_json(std::string& json, std::string_view level, double bytes_read, double bytes_written,
                       int64_t accesses, double energy_j);

// The CREATE TABLE statement for a table as declared (all columns, current version).
std::string create_table_sql(const Table& table);

}  // namespace mlsim::db::schema
