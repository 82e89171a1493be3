#include "db/schema.h"

#include <fmt/format.h>

#include <algorithm>
#include <array>
#include <charconv>
#include <cmath>
#include <iterator>
#include <optional>
#include <set>
#include <vector>

#include "db/sqlite.h"
#include "sim/config/error.h"
#include "sim/core/check.h"

namespace mlsim::db::schema {

namespace {

// To add a column: append it to its table with since = current_version + 1, then bump current_version.
// To move or drop one: also add a Step (below) that does it for files older than the new version.
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
    // Schema 4. average_power_w = total_energy_j / total_time_s; tdp_w NULL when the device's TDP is
    // unknown, and then over_tdp NULL too. The total_<part>_s are sums of the layers' time parts.
    Column{"average_power_w", "REAL", 4},
    Column{"tdp_w", "REAL", 4},
    Column{"over_tdp", "INTEGER CHECK (over_tdp IN (0, 1))", 4},
    Column{"total_compute_s", "REAL", 4},
    Column{"total_memory_s", "REAL", 4},
    Column{"total_overhead_s", "REAL", 4},
    Column{"total_communication_s", "REAL", 4},
    // Schema 12: the run's rows of layer_results are those numbered first_layer_row to last_layer_row (with
    // its run_id); NULL when it has none (a failed run, --layer-rows none, a serving or collective run).
    Column{"first_layer_row", "INTEGER", 12},
    Column{"last_layer_row", "INTEGER", 12},
};

// Schema 11: what the workload says each layer is, once for every run that shares it (the view `layers`
// joins it to each run's layer_results). The writer looks a definition up before it adds one (ResultsDb), so
// no two rows are alike, also where a column is NULL (which UNIQUE would let through; only files older than
// 11 have NULLs there).
constexpr std::array k_layer_def_columns{
    Column{"def_id", "INTEGER PRIMARY KEY", 11},
    Column{"name", "TEXT NOT NULL", 11},
    Column{"op", "TEXT NOT NULL", 11},
    Column{"phase", "TEXT", 11},
    Column{"dtype", "TEXT", 11},
    Column{"macs", "REAL", 11},
    Column{"flops", "REAL", 11},
    Column{"params", "INTEGER", 11},
};

// Schema 11: a run's layers, each naming its definition (layer_defs); what the device made of it follows, as
// the table `layers` of schema 10 had it (see k_v10_layer_columns for what each column holds).
// Schema 12: numbered by layer_row in order of writing (SQLite gives the numbers: rows are inserted with
// it NULL), with no other key or index, so that a row is an append (see schema.h); the step to 12 rebuilds
// schema 11's table, which is the only way to add the key. The key is the last column: SQLite then builds a
// row's record from the inserted values where they lie, where a key in front of them made it copy each value
// first (22 copies a row, some 660 instructions: bench/README.md, twelfth round).
constexpr std::array k_layer_result_columns{
    Column{"run_id", "INTEGER NOT NULL REFERENCES runs(run_id)", 11},
    Column{"idx", "INTEGER NOT NULL", 11},
    Column{"def_id", "INTEGER NOT NULL REFERENCES layer_defs(def_id)", 11},
    Column{"bytes_read", "REAL", 11},
    Column{"bytes_written", "REAL", 11},
    Column{"start_s", "REAL", 11},
    Column{"end_s", "REAL", 11},
    Column{"time_s", "REAL", 11},
    Column{"cycles", "INTEGER", 11},
    Column{"stall_cycles", "INTEGER", 11},
    Column{"energy_j", "REAL", 11},
    Column{"energy_compute_j", "REAL", 11},
    Column{"energy_memory_j", "REAL", 11},
    Column{"energy_static_j", "REAL", 11},
    Column{"utilization", "REAL", 11},
    Column{"bound", "TEXT", 11},
    Column{"compute_s", "REAL", 11},
    Column{"memory_s", "REAL", 11},
    Column{"overhead_s", "REAL", 11},
    Column{"communication_s", "REAL", 11},
    // The layer's levels object (level -> [bytes_read, bytes_written, accesses, energy_j]); schema 13: where
    // the layer has one level, whose bytes read and written are the row's bytes_read and bytes_written, with
    // no accesses counted and the row's energy_memory_j as its energy (the roofline's one level), each number
    // below 2^53 (k_named_level_bound), that level's name alone as a JSON string ('"hbm"'): the views show it
    // as before (k_views). Its numbers
    // were a third of such a row's bytes and repeated the row's own (bench/README.md, seventeenth round).
    Column{"levels", "TEXT", 11},
    Column{"metrics", "TEXT", 11},
    Column{"layer_row", "INTEGER PRIMARY KEY", 12},
};

// The table `layers` of schema 1 to 10 (since 11 the view of that name over layer_defs and layer_results).
// Only the migration makes or extends it: the steps to 4, 8 and 10 work on it, and the step to 11 moves its
// rows on and drops it.
constexpr std::array k_v10_layer_columns{
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
    // Schema 4: time_s split by what dominated each part (they sum to time_s; bound names the largest).
    // NULL in rows migrated from older files, where the split is unknown.
    Column{"compute_s", "REAL", 4},
    Column{"memory_s", "REAL", 4},
    Column{"overhead_s", "REAL", 4},
    Column{"communication_s", "REAL", 4},
    // Schema 10: what differs by device family, one JSON object each (the views layer_levels and
    // layer_metrics show them a row per entry, as the tables of schema 4 to 9 held them; NULL when the layer
    // has none). `levels`: level name -> [bytes_read, bytes_written, accesses, energy_j]; `metrics`: metric
    // id (metric_names) -> its value, the text of a text metric, or null. Numbers are the shortest text that
    // reads back as the same double. A row per level and per metric cost a systolic sweep point three fifths
    // of its writing (bench/README.md, sixth round).
    Column{"levels", "TEXT", 10},
    Column{"metrics", "TEXT", 10},
};
const Table k_v10_layers{"layers", k_v10_layer_columns, "PRIMARY KEY (run_id, idx)", true};

// Schema 4 to 9's table of levels, a row per memory level a layer's family models (since schema 10 in
// layers.levels). Only the migration makes it: the step to 4 writes there, and the step to 10 moves its
// rows on and drops it.
constexpr std::array k_v9_level_columns{
    Column{"run_id", "INTEGER NOT NULL REFERENCES runs(run_id)", 4},
    Column{"idx", "INTEGER NOT NULL", 4},
    Column{"level", "TEXT NOT NULL", 4},
    Column{"bytes_read", "REAL NOT NULL", 4},
    Column{"bytes_written", "REAL NOT NULL", 4},
    Column{"accesses", "INTEGER NOT NULL", 4},
    Column{"energy_j", "REAL NOT NULL", 4},
};
const Table k_v9_levels{
    "layer_levels", k_v9_level_columns,
    "PRIMARY KEY (run_id, idx, level), FOREIGN KEY (run_id, idx) REFERENCES layers(run_id, idx)", true};

// Schema 9: metrics name their metric by id (metric_names: a name and its unit, '' for a text metric), and
// the view `layer_metrics` shows them with name and unit as schema 4 to 8 stored them. A systolic ResNet-50
// run writes some 1,970 metrics of ~14 names: with the name and unit in each row they were half of a sweep
// point's bytes (bench/README.md, fifth round).
constexpr std::array k_metric_name_columns{
    Column{"metric_id", "INTEGER PRIMARY KEY", 9},
    Column{"name", "TEXT NOT NULL", 9},
    Column{"unit", "TEXT NOT NULL", 9},
};
// Schema 9's table of metrics, a row each (since schema 10 in layers.metrics). Only the migration makes it:
// the steps to 4 and 9 write there, and the step to 10 moves its rows on and drops it.
constexpr std::array k_v9_metric_value_columns{
    Column{"run_id", "INTEGER NOT NULL REFERENCES runs(run_id)", 9},
    Column{"idx", "INTEGER NOT NULL", 9},
    Column{"metric_id", "INTEGER NOT NULL REFERENCES metric_names(metric_id)", 9},
    Column{"value", "REAL", 9},
    Column{"text", "TEXT", 9},
};
const Table k_v9_metric_values{
    "layer_metric_values", k_v9_metric_value_columns,
    "PRIMARY KEY (run_id, idx, metric_id), FOREIGN KEY (run_id, idx) REFERENCES layers(run_id, idx)", true};
// What schema 4 to 8 stored as the table `layer_metrics` (moved by the step to 9).
constexpr std::array<std::string_view, 6> k_v8_metric_columns{"run_id", "idx",  "name",
                                                              "value",  "unit", "text"};

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

// Schema 5: the points being simulated right now, one row per key (the resolved config's hash, or the
// point description's hash for a point that fails before it resolves), naming the process that holds it.
// A row lives from the claim to the commit of the run that releases it (in that run's transaction); a row
// whose process is gone (killed) is stale and the next claimer takes it over. sweep_name and point say
// which point it was claimed for, for people reading the file.
constexpr std::array k_claim_columns{
    Column{"claim_key", "TEXT PRIMARY KEY", 5},
    Column{"host", "TEXT NOT NULL", 5},
    Column{"pid", "INTEGER NOT NULL", 5},
    Column{"process_start", "TEXT NOT NULL", 5},
    Column{"claimed_utc", "TEXT NOT NULL", 5},
    Column{"sweep_name", "TEXT", 5},
    Column{"point", "INTEGER", 5},
};

// Schema 6 (issue 12): collective operations timed by the network model (arch/net), one row per call, in
// nccl-tests' units: algbw = bytes / time, busbw = algbw x the kind's factor (2(n-1)/n all-reduce, (n-1)/n
// all-gather, reduce-scatter, all-to-all, scatter, gather, 1 broadcast, reduce, send/recv); GB = 1e9 B.
constexpr std::array k_collective_columns{
    Column{"run_id", "INTEGER NOT NULL REFERENCES runs(run_id)", 6},
    Column{"idx", "INTEGER NOT NULL", 6},
    Column{"kind", "TEXT NOT NULL", 6},
    Column{"algorithm", "TEXT NOT NULL", 6},
    Column{"protocol", "TEXT", 6},
    Column{"ranks", "INTEGER NOT NULL", 6},
    Column{"bytes", "INTEGER NOT NULL", 6},
    Column{"start_s", "REAL NOT NULL", 6},
    Column{"end_s", "REAL NOT NULL", 6},
    Column{"time_s", "REAL NOT NULL", 6},
    Column{"algbw_GBps", "REAL", 6},
    Column{"busbw_GBps", "REAL", 6},
    Column{"steps", "INTEGER", 6},
    // Schema 7: link energy of the call: bytes on the wire x each crossed link's energy per byte, plus the
    // bytes each switch forwarded x its energy per byte (0 where the system gives no figure).
    Column{"energy_j", "REAL", 7},
    // Schema 7: in a parallel run (issue 13), what the call was for (tp_forward, dp_bucket, ...) and how
    // many calls the row stands for (the stage symmetry's mirrors); NULL for `mlsim collective` runs.
    Column{"purpose", "TEXT", 7},
    Column{"copies", "INTEGER", 7},
};

// Schema 6: per link direction, the busiest links of a run's collectives: bytes carried, time spent
// sending (bytes / bandwidth) and utilisation = busy_s / the run's span.
constexpr std::array k_link_util_columns{
    Column{"run_id", "INTEGER NOT NULL REFERENCES runs(run_id)", 6},
    Column{"link", "INTEGER NOT NULL", 6},
    Column{"direction", "TEXT NOT NULL", 6},  // "a->b" names, as in the system file
    Column{"kind", "TEXT", 6},
    Column{"bytes", "REAL NOT NULL", 6},
    Column{"busy_s", "REAL NOT NULL", 6},
    Column{"utilization", "REAL NOT NULL", 6},
    Column{"energy_j", "REAL", 7},  // schema 7: the bytes' link energy (and the entered switch's)
};

// Schema 6: serving runs (experiment/serving/, db/results_db.h).
constexpr std::array k_request_columns{
    Column{"run_id", "INTEGER NOT NULL REFERENCES runs(run_id)", 6},
    Column{"request_id", "INTEGER NOT NULL", 6},
    Column{"arrival_s", "REAL NOT NULL", 6},
    Column{"first_token_s", "REAL NOT NULL", 6},
    Column{"finish_s", "REAL NOT NULL", 6},
    Column{"prompt_tokens", "INTEGER NOT NULL", 6},
    Column{"output_tokens", "INTEGER NOT NULL", 6},
    Column{"preemptions", "INTEGER NOT NULL", 6},
};
constexpr std::array k_serving_metric_columns{
    Column{"run_id", "INTEGER NOT NULL REFERENCES runs(run_id)", 6},
    Column{"name", "TEXT NOT NULL", 6},
    Column{"value", "REAL NOT NULL", 6},
    Column{"unit", "TEXT NOT NULL", 6},
};
constexpr std::array k_kv_occupancy_columns{
    Column{"run_id", "INTEGER NOT NULL REFERENCES runs(run_id)", 6},
    Column{"sample", "INTEGER NOT NULL", 6},
    Column{"time_s", "REAL NOT NULL", 6},
    Column{"used_blocks", "INTEGER NOT NULL", 6},
    Column{"total_blocks", "INTEGER NOT NULL", 6},
    Column{"running", "INTEGER NOT NULL", 6},
    Column{"waiting", "INTEGER NOT NULL", 6},
};

// Schema 7: `mlsim compare` studies (experiment/compare.h): one row per (workload, system) pair.
constexpr std::array k_comparison_columns{
    Column{"compare_id", "INTEGER NOT NULL", 7},
    Column{"name", "TEXT NOT NULL", 7},
    Column{"idx", "INTEGER NOT NULL", 7},
    Column{"run_id", "INTEGER NOT NULL REFERENCES runs(run_id)", 7},
    Column{"workload", "TEXT NOT NULL", 7},
    Column{"system", "TEXT NOT NULL", 7},
    Column{"status", "TEXT NOT NULL", 7},  // ok | error | not_modelled
    Column{"error", "TEXT", 7},
    Column{"devices", "INTEGER NOT NULL", 7},
    Column{"batch", "INTEGER NOT NULL", 7},
    Column{"latency_s", "REAL", 7},
    Column{"samples_per_s", "REAL", 7},
    Column{"energy_per_sample_j", "REAL", 7},
    Column{"average_power_w", "REAL", 7},
    Column{"system_tdp_w", "REAL", 7},
    Column{"samples_per_s_per_w", "REAL", 7},
    Column{"usd_per_million_samples", "REAL", 7},
    Column{"time_to_train_s", "REAL", 7},
    Column{"latency_target_s", "REAL", 7},
    Column{"compute_s", "REAL", 7},
    Column{"memory_s", "REAL", 7},
    Column{"communication_s", "REAL", 7},
    Column{"overhead_s", "REAL", 7},
    Column{"flops_per_sample", "REAL", 7},
    Column{"bytes_per_sample", "REAL", 7},
    Column{"peak_flops_per_s", "REAL", 7},
    Column{"mem_bandwidth_Bps", "REAL", 7},
};

// Schema 7 (issue 13): a parallel run's summary (one row per run with a parallel plan, `mlsim run`),
// its ranks (one row per rank: times in seconds over the step, memory in bytes) and the critical rank's
// exposed communication by purpose; its collectives and pipeline transfers go to `collectives` (with
// purpose and copies: the calls a stage-symmetric run stood for by one row).
constexpr std::array k_parallel_run_columns{
    Column{"run_id", "INTEGER PRIMARY KEY REFERENCES runs(run_id)", 7},
    Column{"data", "INTEGER NOT NULL", 7},
    Column{"tensor", "INTEGER NOT NULL", 7},
    Column{"pipeline", "INTEGER NOT NULL", 7},
    Column{"expert", "INTEGER NOT NULL", 7},
    Column{"zero", "INTEGER NOT NULL", 7},
    Column{"microbatches", "INTEGER NOT NULL", 7},
    Column{"schedule", "TEXT NOT NULL", 7},
    Column{"ranks", "INTEGER NOT NULL", 7},
    Column{"step_time_s", "REAL NOT NULL", 7},
    Column{"samples_per_s", "REAL", 7},
    Column{"tokens_per_s", "REAL", 7},
    Column{"mfu", "REAL", 7},
    Column{"critical_rank", "INTEGER NOT NULL", 7},
    Column{"compute_s", "REAL NOT NULL", 7},  // the critical rank's
    Column{"exposed_comm_s", "REAL NOT NULL", 7},
    Column{"bubble_s", "REAL NOT NULL", 7},
    Column{"peak_memory_bytes", "REAL", 7},
    Column{"device_energy_j", "REAL", 7},
    Column{"link_energy_j", "REAL", 7},
    Column{"symmetry", "TEXT NOT NULL", 7},  // off | stage
    Column{"simulated_ranks", "INTEGER NOT NULL", 7},
    Column{"network_calls", "INTEGER NOT NULL", 7},
    Column{"memo_hits", "INTEGER NOT NULL", 7},
};
constexpr std::array k_parallel_rank_columns{
    Column{"run_id", "INTEGER NOT NULL REFERENCES runs(run_id)", 7},
    Column{"rank", "INTEGER NOT NULL", 7},
    Column{"stage", "INTEGER NOT NULL", 7},
    Column{"compute_s", "REAL NOT NULL", 7},
    Column{"comm_s", "REAL NOT NULL", 7},
    Column{"exposed_comm_s", "REAL NOT NULL", 7},
    Column{"bubble_s", "REAL NOT NULL", 7},
    Column{"end_s", "REAL NOT NULL", 7},
    Column{"energy_j", "REAL NOT NULL", 7},
    Column{"flops", "REAL NOT NULL", 7},
    Column{"memory_bytes", "REAL NOT NULL", 7},
    Column{"weights_bytes", "REAL NOT NULL", 7},
    Column{"gradients_bytes", "REAL NOT NULL", 7},
    Column{"optimizer_bytes", "REAL NOT NULL", 7},
    Column{"activations_bytes", "REAL NOT NULL", 7},
    Column{"kv_cache_bytes", "REAL NOT NULL", 7},
};
constexpr std::array k_parallel_exposed_columns{
    Column{"run_id", "INTEGER NOT NULL REFERENCES runs(run_id)", 7},
    Column{"purpose", "TEXT NOT NULL", 7},
    Column{"exposed_s", "REAL NOT NULL", 7},
};

const std::array k_tables{
    Table{"meta", k_meta_columns, ""},
    Table{"runs", k_run_columns, ""},
    // The view `layers` joins these two (schema 11). layer_results: a rowid table without a key on
    // (run_id, idx) since schema 12 (WITHOUT ROWID, keyed so, from 8 to 11): a run's rows are found by their
    // range of layer_row (runs.first_layer_row, last_layer_row).
    Table{"layer_defs", k_layer_def_columns, "UNIQUE (name, op, phase, dtype, macs, flops, params)"},
    Table{"layer_results", k_layer_result_columns, ""},
    // A metric has exactly one of value or text, and a unit (metric_names) exactly when it has a value:
    // checked by the writer (ResultsDb), not by CHECK constraints, which cost SQLite about 520
    // instructions a row (bench/README.md, third round).
    Table{"metric_names", k_metric_name_columns, "UNIQUE (name, unit)"},
    Table{"sweeps", k_sweep_columns, "PRIMARY KEY (sweep_name, run_id)"},
    Table{"sweep_factors", k_sweep_factor_columns, "PRIMARY KEY (sweep_name, run_id, factor)"},
    Table{"claims", k_claim_columns, ""},
    Table{"collectives", k_collective_columns, "PRIMARY KEY (run_id, idx)"},
    Table{"link_utilization", k_link_util_columns, "PRIMARY KEY (run_id, link, direction)"},
    Table{"requests", k_request_columns, "PRIMARY KEY (run_id, request_id)"},
    Table{"serving_metrics", k_serving_metric_columns, "PRIMARY KEY (run_id, name)"},
    Table{"kv_occupancy", k_kv_occupancy_columns, "PRIMARY KEY (run_id, sample)"},
    Table{"comparisons", k_comparison_columns, "PRIMARY KEY (compare_id, idx)"},
    Table{"parallel_runs", k_parallel_run_columns, ""},
    Table{"parallel_ranks", k_parallel_rank_columns, "PRIMARY KEY (run_id, rank)"},
    Table{"parallel_exposed", k_parallel_exposed_columns, "PRIMARY KEY (run_id, purpose)"},
};

// The views mlsim makes (schema 9), after its tables; since schema 10 a row per entry of a layer's levels or
// metrics, numbers as the tables stored them (REAL; JSON writes 3.0 as 3), in key order (the writer orders
// each layer's entries by key, as the tables of schema 4 to 9 were).
// Schema 13: a layer whose one memory level carries the row's own numbers (see k_layer_result_columns) has
// that level's name alone in `levels`: layer_levels takes that level's numbers from the row, and `layers`
// shows its object as before, each number as JSON that reads back as the same double: a whole number below
// 2^53 as an integer (as the writer writes it), any other with 17 significant digits ('%!.17g': SQLite's
// printf with all its digits; exact below k_named_level_bound, which the writer keeps to). Its text then need
// not be the writer's (17 digits where the writer wrote the shortest), and the column has no declared type.
constexpr std::array k_views{
    // Schema 11: the columns, rows and values of schema 10's table `layers`, in its column order. Schema 12:
    // each run's rows found by its range of layer_row (runs scanned in run_id order, NOT INDEXED: no index's
    // order), the run_id compared too. Schema 13: `levels` in full where the row has the level's name alone.
    View{
        "layers",
        "SELECT u.run_id AS run_id, r.idx AS idx, d.name AS name, d.op AS op, d.phase AS phase, d.dtype AS "
        "dtype, d.macs AS macs, d.flops AS flops, d.params AS params, r.bytes_read AS bytes_read, "
        "r.bytes_written AS bytes_written, r.start_s AS start_s, r.end_s AS end_s, r.time_s AS time_s, "
        "r.cycles AS cycles, r.stall_cycles AS stall_cycles, r.energy_j AS energy_j, r.energy_compute_j AS "
        "energy_compute_j, r.energy_memory_j AS energy_memory_j, r.energy_static_j AS energy_static_j, "
        "r.utilization AS utilization, r.bound AS bound, r.compute_s AS compute_s, r.memory_s AS memory_s, "
        "r.overhead_s AS overhead_s, r.communication_s AS communication_s, CASE WHEN substr(r.levels, 1, 1) "
        "= '\"' THEN '{' || r.levels || ':[' || CASE WHEN r.bytes_read = CAST(r.bytes_read AS INTEGER) AND "
        "abs(r.bytes_read) < 9007199254740992.0 THEN CAST(CAST(r.bytes_read AS INTEGER) AS TEXT) ELSE "
        "printf('%!.17g', r.bytes_read) END || ',' || CASE WHEN r.bytes_written = CAST(r.bytes_written AS "
        "INTEGER) AND abs(r.bytes_written) < 9007199254740992.0 THEN CAST(CAST(r.bytes_written AS INTEGER) "
        "AS TEXT) ELSE printf('%!.17g', r.bytes_written) END || ',0,' || CASE WHEN r.energy_memory_j = "
        "CAST(r.energy_memory_j AS INTEGER) AND abs(r.energy_memory_j) < 9007199254740992.0 THEN "
        "CAST(CAST(r.energy_memory_j AS INTEGER) AS TEXT) ELSE printf('%!.17g', r.energy_memory_j) END || "
        "']}' ELSE r.levels END AS levels, r.metrics AS metrics FROM runs u NOT INDEXED JOIN layer_results r "
        "ON r.layer_row BETWEEN u.first_layer_row AND u.last_layer_row AND r.run_id = u.run_id JOIN "
        "layer_defs d ON d.def_id = r.def_id",
        11},
    View{
        "layer_levels",
        "SELECT u.run_id AS run_id, l.idx AS idx, CASE WHEN v.type = 'text' THEN v.value ELSE v.key END AS "
        "level, CASE WHEN v.type = 'text' THEN l.bytes_read ELSE CAST(json_extract(v.value, '$[0]') AS REAL) "
        "END AS bytes_read, CASE WHEN v.type = 'text' THEN l.bytes_written ELSE CAST(json_extract(v.value, "
        "'$[1]') AS REAL) END AS bytes_written, CASE WHEN v.type = 'text' THEN 0 ELSE json_extract(v.value, "
        "'$[2]') END AS accesses, CASE WHEN v.type = 'text' THEN l.energy_memory_j ELSE "
        "CAST(json_extract(v.value, '$[3]') AS REAL) END AS energy_j FROM runs u NOT INDEXED JOIN "
        "layer_results l ON l.layer_row BETWEEN u.first_layer_row AND u.last_layer_row AND l.run_id = "
        "u.run_id JOIN json_each(l.levels) v",
        10},
    View{"layer_metrics",
         "SELECT u.run_id AS run_id, l.idx AS idx, n.name AS name, CASE WHEN m.type IN ('integer', 'real') "
         "THEN CAST(m.atom AS REAL) END AS value, NULLIF(n.unit, '') AS unit, CASE WHEN m.type = 'text' THEN "
         "m.atom END AS text FROM runs u NOT INDEXED JOIN layer_results l ON l.layer_row BETWEEN "
         "u.first_layer_row AND u.last_layer_row AND l.run_id = u.run_id JOIN json_each(l.metrics) m JOIN "
         "metric_names n ON "
         "n.metric_id = "
         "CAST(m.key AS INTEGER)",
         9},
};
// The views older schemas made, which a file of that version has instead (the steps to 10 and 11 replace
// them).
struct OldView {
    View view;
    int64_t version;  // the one version whose files have it
};
constexpr std::array k_old_views{
    // Schema 12's, before a layer's one level could be its name alone (schema 13).
    OldView{
        View{"layers",
             "SELECT u.run_id AS run_id, r.idx AS idx, d.name AS name, d.op AS op, d.phase AS phase, d.dtype "
             "AS "
             "dtype, d.macs AS macs, d.flops AS flops, d.params AS params, r.bytes_read AS bytes_read, "
             "r.bytes_written AS bytes_written, r.start_s AS start_s, r.end_s AS end_s, r.time_s AS time_s, "
             "r.cycles "
             "AS cycles, r.stall_cycles AS stall_cycles, r.energy_j AS energy_j, r.energy_compute_j AS "
             "energy_compute_j, r.energy_memory_j AS energy_memory_j, r.energy_static_j AS energy_static_j, "
             "r.utilization AS utilization, r.bound AS bound, r.compute_s AS compute_s, r.memory_s AS "
             "memory_s, "
             "r.overhead_s AS overhead_s, r.communication_s AS communication_s, r.levels AS levels, "
             "r.metrics AS "
             "metrics FROM runs u NOT INDEXED JOIN layer_results r ON r.layer_row BETWEEN u.first_layer_row "
             "AND "
             "u.last_layer_row AND r.run_id = u.run_id JOIN layer_defs d ON d.def_id = r.def_id",
             11},
        12},
    OldView{
        View{"layer_levels",
             "SELECT u.run_id AS run_id, l.idx AS idx, v.key AS level, CAST(json_extract(v.value, '$[0]') AS "
             "REAL) "
             "AS bytes_read, CAST(json_extract(v.value, '$[1]') AS REAL) AS bytes_written, "
             "json_extract(v.value, "
             "'$[2]') AS accesses, CAST(json_extract(v.value, '$[3]') AS REAL) AS energy_j FROM runs u NOT "
             "INDEXED JOIN layer_results l ON l.layer_row BETWEEN u.first_layer_row AND u.last_layer_row AND "
             "l.run_id = u.run_id "
             "JOIN json_each(l.levels) v",
             10},
        12},
    OldView{
        View{"layer_metrics",
             "SELECT v.run_id AS run_id, v.idx AS idx, n.name AS name, v.value AS value, NULLIF(n.unit, "
             "'') AS unit, v.text AS text FROM layer_metric_values v JOIN metric_names n ON n.metric_id = "
             "v.metric_id",
             9},
        9},
    // Schema 10's, over the table `layers`.
    OldView{
        View{"layer_levels",
             "SELECT l.run_id AS run_id, l.idx AS idx, v.key AS level, CAST(json_extract(v.value, '$[0]') AS "
             "REAL) AS bytes_read, CAST(json_extract(v.value, '$[1]') AS REAL) AS bytes_written, "
             "json_extract(v.value, '$[2]') AS accesses, CAST(json_extract(v.value, '$[3]') AS REAL) AS "
             "energy_j FROM layers l JOIN json_each(l.levels) v",
             10},
        10},
    OldView{
        View{
            "layer_metrics",
            "SELECT l.run_id AS run_id, l.idx AS idx, n.name AS name, CASE WHEN m.type IN ('integer', "
            "'real') THEN CAST(m.atom AS REAL) END AS value, NULLIF(n.unit, '') AS unit, CASE WHEN m.type = "
            "'text' THEN m.atom END AS text FROM layers l JOIN json_each(l.metrics) m JOIN metric_names n ON "
            "n.metric_id = CAST(m.key AS INTEGER)",
            9},
        10},
    // Schema 11's, over layer_results keyed by (run_id, idx).
    OldView{
        View{"layers",
             "SELECT r.run_id AS run_id, r.idx AS idx, d.name AS name, d.op AS op, d.phase AS phase, d.dtype "
             "AS "
             "dtype, d.macs AS macs, d.flops AS flops, d.params AS params, r.bytes_read AS bytes_read, "
             "r.bytes_written AS bytes_written, r.start_s AS start_s, r.end_s AS end_s, r.time_s AS time_s, "
             "r.cycles "
             "AS cycles, r.stall_cycles AS stall_cycles, r.energy_j AS energy_j, r.energy_compute_j AS "
             "energy_compute_j, r.energy_memory_j AS energy_memory_j, r.energy_static_j AS energy_static_j, "
             "r.utilization AS utilization, r.bound AS bound, r.compute_s AS compute_s, r.memory_s AS "
             "memory_s, "
             "r.overhead_s AS overhead_s, r.communication_s AS communication_s, r.levels AS levels, "
             "r.metrics AS "
             "metrics FROM layer_results r JOIN layer_defs d ON d.def_id = r.def_id",
             11},
        11},
    OldView{
        View{"layer_levels",
             "SELECT l.run_id AS run_id, l.idx AS idx, v.key AS level, CAST(json_extract(v.value, '$[0]') AS "
             "REAL) "
             "AS bytes_read, CAST(json_extract(v.value, '$[1]') AS REAL) AS bytes_written, "
             "json_extract(v.value, "
             "'$[2]') AS accesses, CAST(json_extract(v.value, '$[3]') AS REAL) AS energy_j FROM "
             "layer_results l "
             "JOIN "
             "json_each(l.levels) v",
             10},
        11},
    OldView{View{"layer_metrics",
                 "SELECT l.run_id AS run_id, l.idx AS idx, n.name AS name, CASE WHEN m.type IN ('integer', "
                 "'real') "
                 "THEN CAST(m.atom AS REAL) END AS value, NULLIF(n.unit, '') AS unit, CASE WHEN m.type = "
                 "'text' THEN "
                 "m.atom END AS text FROM layer_results l JOIN json_each(l.metrics) m JOIN metric_names n ON "
                 "n.metric_id = "
                 "CAST(m.key AS INTEGER)",
                 9},
            11},
};

// Schema 11: deleting rows of the view `layers` deletes them from layer_results, as deleting from the table
// of schema 10 did (a user's clean-up of runs keeps working); layer_defs keeps the definitions, which other
// runs may share. Schema 12: the row is found in its run's range of layer_row.
constexpr std::array k_triggers{
    Trigger{"layers_delete",
            "INSTEAD OF DELETE ON layers BEGIN DELETE FROM layer_results WHERE layer_row BETWEEN (SELECT "
            "first_layer_row FROM runs WHERE run_id = old.run_id) AND (SELECT last_layer_row FROM runs WHERE "
            "run_id = old.run_id) AND run_id = old.run_id AND idx = old.idx; END"},
};
// The triggers of schema 11, which the step to 12 replaces.
constexpr std::array k_old_triggers{
    Trigger{"layers_delete",
            "INSTEAD OF DELETE ON layers BEGIN DELETE FROM layer_results WHERE run_id = old.run_id AND idx = "
            "old.idx; END"},
};

// Queries by run (or run and layer) on layer_levels / layer_metric_values use their primary keys' prefix.
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

// 0 when the file has no meta table (brand new). mlsim writes the version row in the transaction that
// makes the table (since its first schema), so a meta table without one was changed by another program:
// read as 0, the file's views and tables would be made again over the existing ones.
int64_t read_schema_version(sql::Connection& conn) {
    if (!table_exists(conn, "meta")) return 0;
    sql::Statement q(conn, "SELECT value FROM meta WHERE key = 'schema_version'");
    if (!q.step())
        throw cfg::UserError(fmt::format(
            "{}: error: results database: the table meta has no schema_version row; the file was changed by "
            "another program, and mlsim writes nothing to it (restore the row, or use another file)",
            conn.path()));
    std::string text = q.column_text(0);
    // The whole text: '3abc' is not version 3 (a file whose meta another program wrote).
    int64_t version = -1;
    const auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), version);
    if (ec != std::errc{} || end != text.data() + text.size() || text.empty() || version < 0)
        throw cfg::UserError(fmt::format(
            "{}: error: results database: meta.schema_version is '{}', not a version number (0, 1, 2, ...); "
            "the file was changed by another program, and mlsim writes nothing to it",
            conn.path(), text));
    return version;
}

// The type of the schema object called `name` ("table", "view", "index", "trigger"), empty when none.
std::string object_type(sql::Connection& conn, std::string_view name) {
    sql::Statement q(conn, "SELECT type FROM sqlite_schema WHERE name = ? COLLATE NOCASE");
    q.bind_text(name).finish_binding();
    return q.step() ? q.column_text(0) : std::string();
}

[[noreturn]] void foreign_shape(sql::Connection& conn, const std::string& what) {
    throw cfg::UserError(fmt::format(
        "{}: error: results database: {}; the file was changed or written by another program, and mlsim "
        "writes nothing to it (use another file)",
        conn.path(), what));
}

bool stored_without_rowid(sql::Connection& conn, std::string_view table);

// A column a step adds by rebuilding its table, as ALTER TABLE cannot: layer_results.layer_row, the key of
// schema 12 (the step to 12).
bool rebuilt_by_step(const Table& table, const Column& col) {
    return table.name == "layer_results" && col.name == "layer_row";
}

// Whether the file's table lacks `col` only until its step rebuilds it: schema 11's layer_results (WITHOUT
// ROWID) has no layer_row.
bool added_by_rebuild(sql::Connection& conn, const Table& table, const Column& col) {
    return rebuilt_by_step(table, col) && stored_without_rowid(conn, table.name);
}

// A table of the file that lacks a column of `table` ALTER TABLE cannot add (a key, a NOT NULL one) was not
// made by mlsim (partial tables of another program).
void check_columns(sql::Connection& conn, const Table& table) {
    if (!table_exists(conn, table.name)) return;
    const std::set<std::string> have = existing_columns(conn, table.name);
    for (const Column& col : table.columns)
        if (!have.contains(std::string(col.name)) && !addable(col) && !added_by_rebuild(conn, table, col))
            foreign_shape(
                conn, fmt::format("table '{}' has no column '{}' ({}), which only creating the table makes",
                                  table.name, col.name, col.decl));
}

// Read-only checks that the file's objects under mlsim's names are what mlsim would have made, so that
// the migration below cannot fail half-way on them: a view or index where a table belongs, a meta table
// of another shape, a table or view where an index belongs.
void check_shapes(sql::Connection& conn) {
    for (const Table& table : k_tables) {
        const std::string type = object_type(conn, table.name);
        if (!type.empty() && type != "table")
            foreign_shape(conn, fmt::format("'{}' is a {}, not a table", table.name, type));
    }
    for (const Index& index : k_indexes) {
        const std::string type = object_type(conn, index.name);
        if (!type.empty() && type != "index")
            foreign_shape(conn, fmt::format("'{}' is a {}, where mlsim keeps an index", index.name, type));
    }
    // A view's name: a table in files older than the view (check_views), never an index or trigger.
    for (const View& view : k_views) {
        const std::string type = object_type(conn, view.name);
        if (!type.empty() && type != "view" && type != "table")
            foreign_shape(conn, fmt::format("'{}' is a {}, where mlsim keeps a view", view.name, type));
    }
    if (table_exists(conn, "meta")) {
        const std::set<std::string> have = existing_columns(conn, "meta");
        if (!have.contains("key") || !have.contains("value"))
            foreign_shape(conn, fmt::format("table 'meta' has the columns ({}), not (key, value)",
                                            fmt::join(have, ", ")));
    }
    // Schema 9's tables, which the step to 10 reads, with every column they had.
    for (const Table* table : {&k_v9_levels, &k_v9_metric_values}) {
        if (!table_exists(conn, table->name)) continue;
        const std::set<std::string> have = existing_columns(conn, table->name);
        for (const Column& col : table->columns)
            if (!have.contains(std::string(col.name)))
                foreign_shape(
                    conn, fmt::format("table '{}' has no column '{}' ({})", table->name, col.name, col.decl));
    }
    // A table that lacks a column ALTER TABLE cannot add (a key, a NOT NULL one) was not made by mlsim
    // (partial tables of another program): refused before any table is changed.
    for (const Table& table : k_tables) check_columns(conn, table);
    // A trigger's name: nothing, or the trigger mlsim makes (after the tables: a table renamed by hand
    // changes the trigger's text too, and the table is what to report).
    for (const Trigger& trigger : k_triggers) {
        const std::string type = object_type(conn, trigger.name);
        if (type.empty()) continue;
        if (type != "trigger")
            foreign_shape(conn, fmt::format("'{}' is a {}, where mlsim keeps a trigger", trigger.name, type));
        sql::Statement q(conn, "SELECT sql FROM sqlite_schema WHERE type = 'trigger' AND name = ?");
        q.bind_text(trigger.name).finish_binding();
        const std::string sql = q.step() ? q.column_text(0) : std::string();
        bool ours = sql == fmt::format("CREATE TRIGGER {} {}", trigger.name, trigger.body);
        for (const Trigger& old : k_old_triggers)
            if (old.name == trigger.name && sql == fmt::format("CREATE TRIGGER {} {}", old.name, old.body))
                ours = true;
        if (!ours)
            foreign_shape(conn, fmt::format("the trigger '{}' is not the one mlsim makes", trigger.name));
    }
}

// In a file older than schema 11, the table `layers` as check_columns() wants it: the steps extend it and the
// step to 11 reads it. (In a newer file, check_views() refuses a table of that name.)
void check_v10_layers(sql::Connection& conn, int64_t version) {
    if (version < 11) check_columns(conn, k_v10_layers);
}

// Under a view's name a file has that view as mlsim makes it (or as the file's version made it), nothing (it
// is made), or, in a file older than the view, the table a step replaces.
void check_views(sql::Connection& conn, int64_t version) {
    for (const View& view : k_views) {
        const std::string type = object_type(conn, view.name);
        if (type.empty()) continue;
        if (type == "table" && version >= view.since)
            foreign_shape(conn, fmt::format("'{}' is a table in a schema-{} file, where mlsim keeps a view",
                                            view.name, version));
        if (type != "view") continue;
        sql::Statement q(conn, "SELECT sql FROM sqlite_schema WHERE type = 'view' AND name = ?");
        q.bind_text(view.name).finish_binding();
        const std::string sql = q.step() ? q.column_text(0) : std::string();
        const auto made = [&](const View& v) {
            return sql == fmt::format("CREATE VIEW {} AS {}", v.name, v.select);
        };
        bool ours = made(view);
        for (const OldView& old : k_old_views)
            if (old.view.name == view.name && old.version == version && made(old.view)) ours = true;
        if (!ours) foreign_shape(conn, fmt::format("the view '{}' is not the one mlsim makes", view.name));
    }
}

// A column added after its table existed must be addable by ALTER TABLE (see schema.h): a declaration
// mistake, checked on every open.
void check_declarations() {
    for (const Table& table : k_tables) {
        int64_t born = table.columns.front().since;
        for (const Column& col : table.columns) born = std::min(born, col.since);
        for (const Column& col : table.columns)
            MLSIM_CHECK(col.since == born || addable(col) || rebuilt_by_step(table, col),
                        fmt::format("column {}.{} '{}' cannot be added by ALTER TABLE; give it a DEFAULT "
                                    "or drop the key constraint",
                                    table.name, col.name, col.decl));
    }
}

// True for a brand-new (empty) file, which is ours to stamp; a file with another stamp, or an unstamped
// one with content, belongs to another tool.
bool check_stamp(sql::Connection& conn) {
    int64_t app_id = read_application_id(conn);
    if (app_id == application_id) return false;
    if (app_id != 0 || count_schema_objects(conn) != 0)
        throw cfg::UserError(fmt::format(
            "{}: error: results database: this SQLite file was not written by mlsim (application_id {:#x}, "
            "expected {:#x}); choose another file",
            conn.path(), app_id, application_id));
    return true;
}

void check_identity(sql::Connection& conn) {
    if (check_stamp(conn)) conn.exec(fmt::format("PRAGMA application_id = {}", application_id));
}

void migrate_table(sql::Connection& conn, const Table& table) {
    if (!table_exists(conn, table.name)) {
        conn.exec(create_table_sql(table));
        return;
    }
    std::set<std::string> have = existing_columns(conn, table.name);
    for (const Column& col : table.columns) {
        if (have.contains(std::string(col.name)) || added_by_rebuild(conn, table, col)) continue;
        MLSIM_CHECK(addable(col),
                    fmt::format("column {}.{} reached ALTER TABLE unchecked", table.name, col.name));
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

// Schema 3 kept the systolic model's figures in fixed `layers` columns; schema 4 moves them into the
// long-format tables under the same names. An empty unit marks the text metric.
struct V3Metric {
    std::string_view column, unit;
};
constexpr std::array k_v3_metrics{
    V3Metric{"stall_weight_cycles", "cycles"},
    V3Metric{"stall_input_cycles", "cycles"},
    V3Metric{"stall_output_cycles", "cycles"},
    V3Metric{"pe_hops", "count"},
    V3Metric{"energy_sram_j", "J"},
    V3Metric{"energy_dram_j", "J"},
    V3Metric{"energy_noc_j", "J"},
    V3Metric{"tiling", ""},
};
// Operand buffers with bytes_<level>_read / bytes_<level>_written columns; schema 3 split neither
// accesses nor energy by level, so those move as 0.
constexpr std::array<std::string_view, 3> k_v3_levels{"ifmap", "filter", "ofmap"};
// The roofline wrote zeros there, which measured nothing; files from before schema 3 have no device_model.
constexpr std::string_view k_v3_detailed_run = "r.device_model IS NOT NULL AND r.device_model <> 'roofline'";

void drop_layers_column(sql::Connection& conn, std::string_view column) {
    try {
        conn.exec(fmt::format("ALTER TABLE layers DROP COLUMN {}", column));
    } catch (const InternalError& e) {
        // Only something added to the file by hand (an index, view or trigger on the column) stops it.
        throw cfg::UserError(fmt::format(
            "{}: error: results database: cannot migrate to schema version {}: column layers.{} moves to "
            "the long-format tables but cannot be dropped ({}); drop the index, view or trigger that uses "
            "it and open the file again",
            conn.path(), current_version, column, e.what()));
    }
}

// Step to schema 4: the per-family columns of `layers` become layer_metrics / layer_levels rows, then
// leave `layers`. Works from whichever of those columns the file has (none before schema 3).
std::string create_table_sql_named(const Table& table, std::string_view name);

// A table of schema 9 made for the steps to 4 and 9 to write to (the step to 10 empties and drops it). A view
// of that name (mlsim's: check_views) makes way; migrate() makes it again after the steps.
void ensure_v9_table(sql::Connection& conn, const Table& table) {
    if (table_exists(conn, table.name)) return;
    if (object_type(conn, table.name) == "view") conn.exec(fmt::format("DROP VIEW {}", table.name));
    conn.exec(create_table_sql_named(table, table.name));
}
void ensure_v9_metric_values(sql::Connection& conn) { ensure_v9_table(conn, k_v9_metric_values); }

void move_family_columns_to_long_tables(sql::Connection& conn) {
    ensure_v9_metric_values(conn);
    ensure_v9_table(conn, k_v9_levels);
    const std::set<std::string> have = existing_columns(conn, "layers");
    const auto has = [&](std::string_view c) { return have.contains(std::string(c)); };
    std::vector<std::string> moved;
    // Written as schema 9 keeps metrics (the step to 9 finds no layer_metrics table to move afterwards).
    for (const V3Metric& m : k_v3_metrics) {
        if (!has(m.column)) continue;
        const bool text = m.unit.empty();
        conn.exec(fmt::format("INSERT OR IGNORE INTO metric_names (name, unit) VALUES ('{}', '{}')", m.column,
                              m.unit));
        conn.exec(fmt::format(
            "INSERT INTO layer_metric_values (run_id, idx, metric_id, value, text) "
            "SELECT l.run_id, l.idx, (SELECT metric_id FROM metric_names WHERE name = '{0}' AND unit = "
            "'{1}'), "
            "{2}, {3} FROM layers l JOIN runs r ON r.run_id = l.run_id WHERE {4} AND l.{0} IS NOT NULL{5}",
            m.column, m.unit, text ? "NULL" : fmt::format("l.{}", m.column),
            text ? fmt::format("l.{}", m.column) : "NULL", k_v3_detailed_run,
            text ? fmt::format(" AND l.{} <> ''", m.column) : ""));
        moved.emplace_back(m.column);
    }
    conn.exec(
        "DELETE FROM metric_names WHERE NOT EXISTS (SELECT 1 FROM layer_metric_values v WHERE v.metric_id = "
        "metric_names.metric_id)");
    for (std::string_view level : k_v3_levels) {
        const std::string read = fmt::format("bytes_{}_read", level);
        const std::string written = fmt::format("bytes_{}_written", level);
        if (!has(read) || !has(written)) continue;
        conn.exec(fmt::format(
            "INSERT INTO layer_levels (run_id, idx, level, bytes_read, bytes_written, accesses, energy_j) "
            "SELECT l.run_id, l.idx, '{0}', l.{1}, l.{2}, 0, 0 FROM layers l JOIN runs r ON r.run_id = "
            "l.run_id "
            "WHERE {3} AND l.{1} IS NOT NULL AND l.{2} IS NOT NULL",
            level, read, written, k_v3_detailed_run));
        moved.push_back(read);
        moved.push_back(written);
    }
    for (const std::string& column : moved) drop_layers_column(conn, column);
    // Known exactly for every finished run; the TDP and the time split are not, and stay NULL.
    conn.exec(
        "UPDATE runs SET average_power_w = total_energy_j / total_time_s "
        "WHERE status = 'ok' AND total_time_s > 0 AND total_energy_j IS NOT NULL");
}

// Whether the file stores `table` WITHOUT ROWID (its CREATE TABLE text says so; mlsim writes it in capitals).
bool stored_without_rowid(sql::Connection& conn, std::string_view table) {
    sql::Statement q(conn, "SELECT sql FROM sqlite_schema WHERE type = 'table' AND name = ?");
    q.bind_text(table).finish_binding();
    return q.step() && contains(q.column_text(0), "WITHOUT ROWID");
}

[[noreturn]] void cannot_rebuild(sql::Connection& conn, std::string_view table, const std::string& why) {
    throw cfg::UserError(
        fmt::format("{}: error: results database: cannot migrate to schema version {}: table {} is rebuilt "
                    "WITHOUT ROWID, "
                    "but {}; remove it and open the file again",
                    conn.path(), current_version, table, why));
}

// What rebuilding or dropping `table` would lose, added by hand: a column not in `declared`, or an index,
// view or trigger on it. Empty when nothing.
std::string added_by_hand(sql::Connection& conn, std::string_view table,
                          const std::set<std::string>& declared) {
    for (const std::string& name : existing_columns(conn, table))
        if (!declared.contains(name)) return fmt::format("it has a column '{}' mlsim did not make", name);
    sql::Statement q(conn,
                     "SELECT type, name FROM sqlite_schema WHERE tbl_name = ? AND type <> 'table' AND "
                     "name NOT LIKE 'sqlite_autoindex_%' ORDER BY name");
    q.bind_text(table).finish_binding();
    if (q.step()) return fmt::format("the {} '{}' uses it", q.column_text(0), q.column_text(1));
    return {};
}

// A row of `table` that refers to a missing row (PRAGMA foreign_key_check), described; empty when none.
std::string broken_reference(sql::Connection& conn, std::string_view table) {
    sql::Statement check(conn, fmt::format("PRAGMA foreign_key_check({})", table));
    if (!check.step()) return {};
    return fmt::format("a row of it refers to a missing row of '{}' (PRAGMA foreign_key_check)",
                       check.column_text(2));
}

// Step to schema 8: the tables declared without_rowid are rebuilt so, rows copied as they are (SQLite's
// procedure for a change a plain ALTER TABLE cannot make; migrate() has foreign-key enforcement off for
// it, and checks the references of the rebuilt tables before it commits). Since schema 11 the one such table,
// layer_results, is new to a file older than 11 (made WITHOUT ROWID by the additive pass), and the rows of
// schema 10's `layers` reach it through the step to 11, which copies them as they are: the step has nothing
// left to rebuild, and a row of an old file whose run is missing is kept, not refused.
void rebuild_without_rowid(sql::Connection& conn) {
    for (const Table& table : k_tables) {
        if (!table.without_rowid || stored_without_rowid(conn, table.name)) continue;
        // What the copy would lose: a column, index, view or trigger added by hand.
        std::set<std::string> declared;
        for (const Column& col : table.columns) declared.insert(std::string(col.name));
        if (const std::string why = added_by_hand(conn, table.name, declared); !why.empty())
            cannot_rebuild(conn, table.name, why);
        std::string columns;
        for (const Column& col : table.columns)
            columns += fmt::format("{}{}", columns.empty() ? "" : ", ", col.name);
        const std::string fresh = fmt::format("mlsim_rebuild_{}", table.name);
        conn.exec(create_table_sql_named(table, fresh));
        conn.exec(fmt::format("INSERT INTO {0} ({1}) SELECT {1} FROM {2}", fresh, columns, table.name));
        conn.exec(fmt::format("DROP TABLE {}", table.name));
        conn.exec(fmt::format("ALTER TABLE {} RENAME TO {}", fresh, table.name));
    }
    for (const Table& table : k_tables)
        if (table.without_rowid)
            if (const std::string why = broken_reference(conn, table.name); !why.empty())
                cannot_rebuild(conn, table.name, why);
}

// Step to schema 9: the rows of the table `layer_metrics` (schema 4 to 8) move to layer_metric_values, each
// naming its metric by id in metric_names (made in name order), and the table is dropped; the view of the
// same name shows them again (migrate() makes it). A column, index or trigger on the table that mlsim did not
// make stops it with a UserError, as for the step to 8.
void metrics_by_id(sql::Connection& conn) {
    if (!table_exists(conn, "layer_metrics")) return;  // older than schema 4: step 4 wrote schema 9's tables
    const std::set<std::string> declared(k_v8_metric_columns.begin(), k_v8_metric_columns.end());
    const auto refuse = [&](const std::string& why) {
        throw cfg::UserError(fmt::format(
            "{}: error: results database: cannot migrate to schema version {}: table layer_metrics moves to "
            "metric_names and layers.metrics (by way of layer_metric_values), but {}; remove it and open the "
            "file again",
            conn.path(), current_version, why));
    };
    if (const std::string why = added_by_hand(conn, "layer_metrics", declared); !why.empty()) refuse(why);
    ensure_v9_metric_values(conn);
    conn.exec(
        "INSERT OR IGNORE INTO metric_names (name, unit) SELECT DISTINCT name, COALESCE(unit, '') FROM "
        "layer_metrics ORDER BY name, COALESCE(unit, '')");
    conn.exec(
        "INSERT INTO layer_metric_values (run_id, idx, metric_id, value, text) SELECT m.run_id, m.idx, "
        "n.metric_id, m.value, m.text FROM layer_metrics m JOIN metric_names n ON n.name = m.name AND n.unit "
        "= "
        "COALESCE(m.unit, '') ORDER BY m.run_id, m.idx, n.metric_id");
    conn.exec("DROP TABLE layer_metrics");
    if (const std::string why = broken_reference(conn, "layer_metric_values"); !why.empty()) refuse(why);
}

// Step to schema 10: schema 9's rows of layer_levels and layer_metric_values (whichever steps wrote them)
// become each layer's `levels` and `metrics` objects (append_level_json, append_metric_json: every value
// reads back as the same double); the tables and the view of schema 9 are dropped (migrate() makes the views
// anew). A column, index or trigger on a table that mlsim did not make, or a row whose layer is missing (it
// would be lost), stops it with a UserError.
void objects_in_layers(sql::Connection& conn) {
    struct Moved {
        const Table& table;
        const char* column;  // of layers
        const char* select;  // the rows in key order: run_id, idx, then what the object's entries hold
    };
    const std::array moved{
        Moved{k_v9_levels, "levels",
              "SELECT run_id, idx, level, bytes_read, bytes_written, accesses, energy_j FROM layer_levels "
              "ORDER "
              "BY run_id, idx, level"},
        Moved{k_v9_metric_values, "metrics",
              "SELECT run_id, idx, metric_id, value, text FROM layer_metric_values ORDER BY run_id, idx, "
              "metric_id"},
    };
    for (const Moved& m : moved) {
        if (!table_exists(conn, m.table.name)) continue;
        const auto refuse = [&](const std::string& why) {
            throw cfg::UserError(
                fmt::format("{}: error: results database: cannot migrate to schema version {}: table {} "
                            "moves to layers.{}, "
                            "but {}; remove it and open the file again",
                            conn.path(), current_version, m.table.name, m.column, why));
        };
        std::set<std::string> declared;
        for (const Column& col : m.table.columns) declared.insert(std::string(col.name));
        if (const std::string why = added_by_hand(conn, m.table.name, declared); !why.empty()) refuse(why);
        {
            sql::Statement orphan(conn,
                                  fmt::format("SELECT t.run_id, t.idx FROM {} t WHERE NOT EXISTS (SELECT 1 "
                                              "FROM layers l WHERE l.run_id = t.run_id AND l.idx = t.idx) "
                                              "LIMIT 1",
                                              m.table.name));
            if (orphan.step())
                refuse(fmt::format("its rows of run {} layer {} have no row in layers", orphan.column_int(0),
                                   orphan.column_int(1)));
        }
    }
    // Schema 9's view of the metrics (check_views found it mlsim's) goes before its table.
    if (table_exists(conn, k_v9_metric_values.name) && object_type(conn, "layer_metrics") == "view")
        conn.exec("DROP VIEW layer_metrics");
    for (const Moved& m : moved) {
        if (!table_exists(conn, m.table.name)) continue;
        sql::Statement rows(conn, m.select);
        sql::Statement put(conn,
                           fmt::format("UPDATE layers SET {} = ? WHERE run_id = ? AND idx = ?", m.column));
        std::string json;
        int64_t run = 0, idx = 0;
        const auto flush = [&] {
            if (json.empty()) return;
            json += '}';
            put.reset();
            put.bind_text(json).bind_int(run).bind_int(idx).finish_binding();
            put.run();
            json.clear();
        };
        const bool levels = &m.table == &k_v9_levels;
        while (rows.step()) {
            const int64_t r = rows.column_int(0), i = rows.column_int(1);
            if (json.empty() || r != run || i != idx) {
                flush();
                run = r;
                idx = i;
                json += '{';
            } else {
                json += ',';
            }
            if (levels) {
                append_level_json(json, rows.column_text(2), rows.column_real(3), rows.column_real(4),
                                  rows.column_int(5), rows.column_real(6));
            } else {
                const std::optional<double> value =
                    rows.column_is_null(3) ? std::nullopt : std::optional<double>(rows.column_real(3));
                append_metric_json(json, rows.column_int(2), value,
                                   rows.column_is_null(4) ? "" : rows.column_text(4));
            }
        }
        flush();
        conn.exec(fmt::format("DROP TABLE {}", m.table.name));
    }
}

// layer_results' columns but its key, which SQLite numbers (schema 12), comma-separated: what a step writes.
std::string written_result_columns() {
    std::string names;
    for (const Column& col : k_layer_result_columns)
        if (col.name != "layer_row") names += fmt::format("{}{}", names.empty() ? "" : ", ", col.name);
    return names;
}

// Step to schema 11: the table `layers` splits into layer_defs (its distinct definitions, ids in the order of
// their first row) and layer_results (the rest of each row, naming its definition); the table is dropped, and
// with it schema 10's views over it (migrate() makes the views anew, `layers` among them). A column, index or
// trigger on the table that mlsim did not make, or a row left without its definition, stops it with a
// UserError.
void split_layers(sql::Connection& conn) {
    if (!table_exists(conn, "layers")) return;
    const auto refuse = [&](const std::string& why) {
        throw cfg::UserError(fmt::format(
            "{}: error: results database: cannot migrate to schema version {}: table layers moves to "
            "layer_defs and layer_results, but {}; remove it and open the file again",
            conn.path(), current_version, why));
    };
    std::set<std::string> declared;
    for (const Column& col : k_v10_layer_columns) declared.insert(std::string(col.name));
    if (const std::string why = added_by_hand(conn, "layers", declared); !why.empty()) refuse(why);
    // The definition's columns (layer_defs but def_id), compared with IS: files older than schema 11 may hold
    // NULL in any of them.
    std::string def, same;
    for (const Column& col : k_layer_def_columns) {
        if (col.name == "def_id") continue;
        def += fmt::format("{}{}", def.empty() ? "" : ", ", col.name);
        same += fmt::format("{0}d.{1} IS l.{1}", same.empty() ? "" : " AND ", col.name);
    }
    conn.exec(fmt::format(
        "INSERT INTO layer_defs ({0}) SELECT {0} FROM (SELECT {0}, MIN(run_id * 4294967296 + idx) AS first "
        "FROM layers GROUP BY {0}) ORDER BY first",
        def));
    // Numbered (layer_row, schema 12) in (run_id, idx) order; the step to 12 gives each run its range.
    std::string results;
    for (const Column& col : k_layer_result_columns)
        if (col.name != "run_id" && col.name != "idx" && col.name != "def_id" && col.name != "layer_row")
            results += fmt::format(", l.{}", col.name);
    conn.exec(
        fmt::format("INSERT INTO layer_results ({}) SELECT l.run_id, l.idx, d.def_id{} FROM layers l JOIN "
                    "layer_defs d ON {} ORDER BY l.run_id, l.idx",
                    written_result_columns(), results, same));
    {
        sql::Statement counts(conn,
                              "SELECT (SELECT COUNT(*) FROM layers), (SELECT COUNT(*) FROM layer_results)");
        counts.step();
        const int64_t rows = counts.column_int(0), moved = counts.column_int(1);
        if (rows != moved)
            refuse(fmt::format("{} of its {} rows found no single definition", rows - moved, rows));
    }  // finished before the table is dropped
    for (const char* view : {"layer_levels", "layer_metrics"})
        if (object_type(conn, view) == "view") conn.exec(fmt::format("DROP VIEW {}", view));
    conn.exec("DROP TABLE layers");
}

// Step to schema 12: layer_results, WITHOUT ROWID in an 11 file, is rebuilt as the rowid table schema 12
// declares, its rows numbered in (run_id, idx) order (a file older than 11 had them so numbered by the step
// to 11); each run's first and last row go to runs; the views and the trigger over the table are made again
// (migrate() makes them after the steps). A column, index or trigger on the table that mlsim did not make
// stops it with a UserError.
void number_layer_rows(sql::Connection& conn) {
    const bool rebuild = stored_without_rowid(conn, "layer_results");
    if (rebuild) {
        std::set<std::string> declared;
        for (const Column& col : k_layer_result_columns) declared.insert(std::string(col.name));
        if (const std::string why = added_by_hand(conn, "layer_results", declared); !why.empty())
            throw cfg::UserError(fmt::format(
                "{}: error: results database: cannot migrate to schema version {}: table layer_results is "
                "rebuilt with its rows numbered, but {}; remove it and open the file again",
                conn.path(), current_version, why));
    }
    // The views and the trigger of 11 (none in an older file: the step to 11 dropped its table's views).
    for (const char* view : {"layers", "layer_levels", "layer_metrics"})
        if (object_type(conn, view) == "view") conn.exec(fmt::format("DROP VIEW {}", view));
    if (object_type(conn, "layers_delete") == "trigger") conn.exec("DROP TRIGGER layers_delete");
    if (rebuild) {
        const Table& table = *std::find_if(k_tables.begin(), k_tables.end(),
                                           [](const Table& t) { return t.name == "layer_results"; });
        conn.exec(create_table_sql_named(table, "mlsim_rebuild_layer_results"));
        conn.exec(
            fmt::format("INSERT INTO mlsim_rebuild_layer_results ({0}) SELECT {0} FROM layer_results ORDER "
                        "BY run_id, idx",
                        written_result_columns()));
        conn.exec("DROP TABLE layer_results");
        conn.exec("ALTER TABLE mlsim_rebuild_layer_results RENAME TO layer_results");
    }
    conn.exec(
        "UPDATE runs SET first_layer_row = t.first, last_layer_row = t.last FROM (SELECT run_id, "
        "MIN(layer_row) AS first, MAX(layer_row) AS last FROM layer_results GROUP BY run_id) AS t WHERE "
        "runs.run_id = t.run_id");
}

// Step to schema 13: the views `layers` and layer_levels of 12 are dropped (with the trigger on `layers`),
// and migrate() makes them again as 13 declares them; no row changes (a 12 file has every level as an
// object, which the views of 13 read as those of 12 did).
void views_for_named_levels(sql::Connection& conn) {
    if (object_type(conn, "layers_delete") == "trigger") conn.exec("DROP TRIGGER layers_delete");
    for (const char* view : {"layers", "layer_levels"})
        if (object_type(conn, view) == "view") conn.exec(fmt::format("DROP VIEW {}", view));
}

// Steps that move data, applied in order to a file older than their version (after the additive pass
// has created the tables and columns they write to).
struct Step {
    int64_t version;
    void (*apply)(sql::Connection&);
};
constexpr std::array k_steps{
    Step{4, move_family_columns_to_long_tables},
    Step{8, rebuild_without_rowid},
    Step{9, metrics_by_id},
    Step{10, objects_in_layers},
    Step{11, split_layers},
    Step{12, number_layer_rows},
    Step{13, views_for_named_levels},
};

// Foreign-key enforcement off for the connection while it lives (a versioned step rebuilds tables that other
// tables refer to); set before the migration's transaction, since SQLite ignores the pragma inside one.
class ForeignKeysOff {
  public:
    explicit ForeignKeysOff(sql::Connection& conn) : m_conn(conn) {
        sql::Statement q(conn, "PRAGMA foreign_keys");
        m_was_on = q.step() && q.column_int(0) != 0;
        if (m_was_on) m_conn.exec("PRAGMA foreign_keys = OFF");
    }
    ~ForeignKeysOff() {
        if (!m_was_on) return;
        try {
            m_conn.exec("PRAGMA foreign_keys = ON");
        } catch (...) {  // NOLINT: nothing to report from a destructor; the connection is closing anyway
        }
    }
    ForeignKeysOff(const ForeignKeysOff&) = delete;
    ForeignKeysOff& operator=(const ForeignKeysOff&) = delete;

  private:
    sql::Connection& m_conn;
    bool m_was_on = false;
};

}  // namespace

void append_json_string(std::string& json, std::string_view text) {
    json += '"';
    const auto escaped = [](char c) { return c == '"' || c == '\\' || static_cast<unsigned char>(c) < 0x20; };
    if (std::none_of(text.begin(), text.end(), escaped)) {  // names nearly always: appended whole
        json += text;
        json += '"';
        return;
    }
    for (const char c : text) {
        switch (c) {
            case '"':
                json += "\\\"";
                break;
            case '\\':
                json += "\\\\";
                break;
            case '\n':
                json += "\\n";
                break;
            case '\t':
                json += "\\t";
                break;
            case '\r':
                json += "\\r";
                break;
            default:
                if (static_cast<unsigned char>(c) < 0x20)
                    fmt::format_to(std::back_inserter(json), "\\u{:04x}", static_cast<unsigned>(c));
                else
                    json += c;
        }
    }
    json += '"';
}

namespace {

// `v` as a JSON number at `out`: the shortest text that reads back as the same double ("0.1", "1e-05", "3":
// std::to_chars), which SQLite's JSON reader returns bit for bit (tests/db). JSON has no infinity or NaN:
// SQLite reads 9e999 as infinity (and stores a NaN as NULL anyway). At most 24 characters.
char* put_json_number(char* out, char* end, double v) {
    if (std::isnan(v)) return std::copy_n("null", 4, out);
    if (std::isinf(v)) return v > 0 ? std::copy_n("9e999", 5, out) : std::copy_n("-9e999", 6, out);
    // A whole number below 2^53 (most byte counts and cycles) as an integer: the same text to_chars(double)
    // writes for it, or a shorter one ("1605632"), read back exactly, at a tenth of the cost (-0.0 becomes 0,
    // as a REAL column of SQLite stores it too).
    if (std::fabs(v) < 9007199254740992.0 && v == std::trunc(v))
        return std::to_chars(out, end, static_cast<int64_t>(v)).ptr;
    return std::to_chars(out, end, v).ptr;
}

}  // namespace

void append_metric_value_json(std::string& json, std::optional<double> value, std::string_view text) {
    if (value) {
        char buf[32];
        json.append(buf, put_json_number(buf, buf + sizeof buf, *value));
    } else if (text.empty()) {
        json += "null";
    } else {
        append_json_string(json, text);
    }
}

void append_metric_json(std::string& json, int64_t metric_id, std::optional<double> value,
                        std::string_view text) {
    // Formatted into a local buffer and appended once: appending character by character cost the writer
    // about 950 instructions a metric.
    char buf[64];
    char* end = buf;
    *end++ = '"';
    end = std::to_chars(end, buf + sizeof buf, metric_id).ptr;
    *end++ = '"';
    *end++ = ':';
    if (value) {
        end = put_json_number(end, buf + sizeof buf, *value);
        json.append(buf, end);
        return;
    }
    json.append(buf, end);
    append_metric_value_json(json, value, text);
}

void append_level_json(std::string& json, std::string_view level, double bytes_read, double bytes_written,
                       int64_t accesses, double energy_j) {
    append_json_string(json, level);
    char buf[128];
    char* end = buf;
    *end++ = ':';
    *end++ = '[';
    end = put_json_number(end, buf + sizeof buf, bytes_read);
    *end++ = ',';
    end = put_json_number(end, buf + sizeof buf, bytes_written);
    *end++ = ',';
    end = std::to_chars(end, buf + sizeof buf, accesses).ptr;
    *end++ = ',';
    end = put_json_number(end, buf + sizeof buf, energy_j);
    *end++ = ']';
    json.append(buf, end);
}

std::span<const Table> tables() { return k_tables; }

std::span<const Index> indexes() { return k_indexes; }

std::span<const View> views() { return k_views; }

std::string create_table_sql(const Table& table) { return create_table_sql_named(table, table.name); }

namespace {

std::string create_table_sql_named(const Table& table, std::string_view name) {
    std::string sql = fmt::format("CREATE TABLE {} (", name);
    for (size_t i = 0; i < table.columns.size(); ++i)
        sql += fmt::format("{}{} {}", i == 0 ? "" : ", ", table.columns[i].name, table.columns[i].decl);
    if (!table.constraints.empty()) sql += fmt::format(", {}", table.constraints);
    sql += ")";
    if (table.without_rowid) sql += " WITHOUT ROWID";
    return sql;
}

}  // namespace

void check_file(sql::Connection& conn) {
    check_declarations();
    // One read transaction: another process may be creating the same file right now (its schema and
    // stamp arrive in one transaction, migrate()), and reads spread over several transactions could see
    // the stamp before and the tables after it.
    conn.exec("BEGIN");
    try {
        check_stamp(conn);
        check_shapes(conn);
        const int64_t found = read_schema_version(conn);
        check_views(conn, found);
        check_v10_layers(conn, found);
        if (found > current_version)
            throw cfg::UserError(fmt::format(
                "{}: error: results database: schema version {} is newer than this mlsim understands ({}); "
                "use a newer mlsim or another file",
                conn.path(), found, current_version));
    } catch (...) {
        try {
            conn.exec("ROLLBACK");
        } catch (...) {  // the first error is the one to report
        }
        throw;
    }
    conn.exec("COMMIT");
}

void migrate(sql::Connection& conn) {
    check_declarations();
    const ForeignKeysOff fk_off(conn);
    MigrationTransaction txn(conn);
    check_identity(conn);
    check_shapes(conn);
    int64_t found = read_schema_version(conn);
    if (found > current_version)
        throw cfg::UserError(fmt::format(
            "{}: error: results database: schema version {} is newer than this mlsim understands ({}); "
            "use a newer mlsim or another file",
            conn.path(), found, current_version));
    // A brand-new file (no meta yet) reads as 0 but has nothing under the views' names.
    check_views(conn, found);
    check_v10_layers(conn, found);
    // A brand-new file is made as declared: the steps have nothing to move.
    const bool fresh = count_schema_objects(conn) == 0;
    for (const Table& table : k_tables) migrate_table(conn, table);
    // The steps up to 10 work on the table `layers` of their schema (the step to 11 drops it).
    if (!fresh && found < 11) migrate_table(conn, k_v10_layers);
    for (const Step& step : k_steps)
        if (!fresh && found < step.version) step.apply(conn);
    for (const Index& index : k_indexes)
        conn.exec(fmt::format("CREATE INDEX IF NOT EXISTS {} ON {}", index.name, index.definition));
    for (const View& view : k_views)
        conn.exec(fmt::format("CREATE VIEW IF NOT EXISTS {} AS {}", view.name, view.select));
    for (const Trigger& trigger : k_triggers)
        conn.exec(fmt::format("CREATE TRIGGER IF NOT EXISTS {} {}", trigger.name, trigger.body));
    if (found != current_version)
        conn.exec(fmt::format("INSERT OR REPLACE INTO meta (key, value) VALUES ('schema_version', '{}')",
                              current_version));
    txn.commit();
}

}  // namespace mlsim::db::schema
