#pragma once
// The results database: one SQLite file per study, one `runs` row per simulated point, one `layers`
// row per layer of that point, and in long format what differs by device family: `layer_levels` (bytes,
// accesses and energy per memory level) and `layer_metrics` (any other named figure with its unit). Since
// schema 10 both are views over a JSON object per layer, `layers.levels` (level -> [bytes_read,
// bytes_written, accesses, energy_j]) and `layers.metrics` (metric id, in `metric_names`, -> value or text).
// Since schema 11 `layers` is a view too, over `layer_defs` (a layer's name, op, phase, dtype, macs, flops
// and params, once for every run that shares them) and `layer_results` (the rest of each row, with its
// def_id). Since schema 12 a run's rows of layer_results are consecutive, numbered by layer_row, and its
// range is in runs (first_layer_row, last_layer_row), which the views read. Since schema 13 a layer whose one
// level carries the row's own numbers (the roofline's) has that level's name alone in layer_results.levels
// (the views show the object). Schema in db/schema.h; units in column names.
//
// Contract:
// - Opening never truncates: an existing mlsim file is appended to (and migrated to the current schema,
//   see db/schema.h); a missing file and its parent directories are created. A path that cannot be
//   created, a file that is not an SQLite database, a foreign SQLite file or one from a newer mlsim is a
//   cfg::UserError naming the path.
// - record_run() writes the run row and all its layer, level and metric rows in ONE transaction: after
//   a crash (even SIGKILL mid-write) a run is either entirely present or absent. Run totals are computed
//   from the layers.
// - Rows are validated before anything is written; these are bugs in the producer and throw
//   InternalError (MLSIM_CHECK), and nothing is written then: NaN/infinite or negative times, energies,
//   bytes, counts; a layer whose busy time exceeds its [start_s, end_s] interval; time parts (compute_s,
//   memory_s, overhead_s, communication_s) that are negative or do not sum to time_s (relative 1e-9 plus
//   1e-15 s); a bound that is not one of the four parts or not the largest of them; an unnamed or repeated
//   level or metric within a layer; a metric without exactly one of value / text (an empty text counts as
//   unset), with a non-finite value, a numeric metric without a unit or a text metric with one.
// - Equal inputs write equal `layers`, `layer_levels` and `layer_metrics` rows (only run_id differs).
// - A ResultsDb may be shared between threads (writes are serialised by an internal mutex); several
//   processes may append to one file (SQLite locking plus a busy timeout).
// - Durability: WAL with synchronous=NORMAL. A committed run survives the process being killed; a power
//   loss may drop the last few commits but never corrupts the file. A resumable sweep re-runs those
//   points (has_ok_run), which is far cheaper than an fsync per point.
// - SQLite I/O failures (disk full, read-only, locked past the timeout) are UserErrors naming the path.
// - Sweeps: given a SweepPoint, record_run/record_failed_run also write the point's `sweeps` row and its
//   `sweep_factors` rows in the SAME transaction as the run, so a run of a sweep is never without them.
//   link_sweep_point() attaches an existing run to a sweep (a resumed sweep, or a point already run
//   elsewhere); linking the same run to the same sweep again changes nothing.
// - Claims (schema 5) let several processes (and threads) share out the points of sweeps writing one file
//   so that each point is simulated once: claim() checks in ONE write transaction whether a run already
//   settles the point and, if not, whether a live process holds it, and otherwise records this process as
//   its holder. The run that settles the point releases the claim in its own transaction
//   (SweepPoint::claim_key), so a claim never outlives its run and a run is never without its claim
//   released. A claim is live while its process runs: same host, same boot, a process with that pid and
//   start time that is not a zombie. Any other claim is stale (its holder was killed, or the file was
//   copied from another machine; WAL files are only ever shared on one host) and is taken over.
//   Inside a batch (begin_batch) claim() decides the same way but writes no claim row: the batch holds the
//   write lock until it commits, so the caller must record the point's run in the same batch (as a sweep's
//   writer does, experiment/sweep_writer.h: it claims points after simulating them, when it commits them,
//   and shares the work out with other writers of the file by other means, announce_writer below), and no
//   other process can ever see the point unclaimed and unsettled.
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace mlsim::db {

// What identifies a run and the device limits its roofline needs.
struct RunInfo {
    std::string config_yaml;  // the fully resolved config
    std::string config_hash;  // config_hash(config_yaml) when left empty
    std::string system, device, model, mode, dtype;
    int64_t batch = 1;
    int64_t seq = 0;
    double peak_flops_per_s = 0;   // device peak for the run's dtype
    double mem_bandwidth_Bps = 0;  // device main-memory bandwidth, bytes per second
    std::string device_model;      // which device model produced the layers: roofline, systolic, ...
    double tdp_W = 0;              // the device's thermal design power; 0 = unknown
};

// Traffic at one memory level a family models (on-chip buffers, caches, main memory): one
// `layer_levels` row.
struct LevelRow {
    std::string level;  // the level's name, e.g. unified_buffer, weight_fifo, l2, hbm, dram
    double bytes_read = 0, bytes_written = 0;
    int64_t accesses = 0;  // accesses (words, lines) when the family counts them, else 0
    double energy_j = 0;   // dynamic energy of this level's accesses
};

// Any other per-layer figure: one `layer_metrics` row (an entry of layers.metrics). Exactly one of value /
// text is set.
struct MetricRow {
    std::string name;  // e.g. stall_weight_cycles, pe_hops, energy_pe_hops_j, tiling, memory_level
    std::optional<double> value;
    std::string unit;  // "cycles", "count", "J", "B", "1" (ratio); empty for a text metric
    std::string text;  // for a text metric (value empty), else empty
};

struct LayerRow {
    int64_t idx = 0;  // unique within a run
    std::string name, op, phase, dtype;
    double macs = 0, flops = 0;
    int64_t params = 0;
    double bytes_read = 0, bytes_written = 0;
    double start_s = 0, end_s = 0;  // interval on the run's timeline
    double time_s = 0;              // busy time, at most end_s - start_s
    int64_t cycles = 0, stall_cycles = 0;
    double energy_j = 0;  // total; at least the sum of the parts below
    double energy_compute_j = 0, energy_memory_j = 0, energy_static_j = 0;
    double utilization = 0;  // in [0, 1]
    std::string bound;       // "compute" | "memory" | "overhead" | "communication"
    // The layer's time split by what dominated each part; compute_s + memory_s + overhead_s +
    // communication_s == time_s. bound is the largest of the four.
    double compute_s = 0, memory_s = 0, overhead_s = 0, communication_s = 0;
    // What differs by device family, in long format (empty when the family models none of it).
    std::vector<LevelRow> levels;
    std::vector<MetricRow> metrics;
};

// One collective call timed by the network model: a `collectives` row (nccl-tests' units, GB = 1e9 B).
struct CollectiveRow {
    int64_t idx = 0;  // unique within a run
    std::string kind, algorithm, protocol;
    int64_t ranks = 0, bytes = 0;
    double start_s = 0, end_s = 0;
    double algbw_GBps = 0, busbw_GBps = 0;
    int64_t steps = 0;
    double energy_j = 0;  // link (and switch) energy of the call
};

// A parallel run (schema 7, issue 13): the `parallel_runs` row, one `parallel_ranks` row per rank, the
// critical rank's exposed communication by purpose (`parallel_exposed`) and the step's collectives and
// pipeline transfers as `collectives` rows (with purpose and copies).
struct ParallelRankRow {
    int64_t rank = 0, stage = 0;
    double compute_s = 0, comm_s = 0, exposed_comm_s = 0, bubble_s = 0, end_s = 0, energy_j = 0, flops = 0;
    double memory_bytes = 0, weights_bytes = 0, gradients_bytes = 0, optimizer_bytes = 0,
           activations_bytes = 0, kv_cache_bytes = 0;
};
struct ParallelCollectiveRow {
    CollectiveRow call;
    std::string purpose;
    int64_t copies = 1;
};
struct ParallelRows {
    int64_t data = 1, tensor = 1, pipeline = 1, expert = 1, zero = 0, microbatches = 1, ranks = 1;
    std::string schedule;
    double step_time_s = 0, samples_per_s = 0, tokens_per_s = 0, mfu = 0;
    int64_t critical_rank = 0;
    double compute_s = 0, exposed_comm_s = 0, bubble_s = 0, peak_memory_bytes = 0, device_energy_j = 0,
           link_energy_j = 0;
    std::string symmetry;
    int64_t simulated_ranks = 0, network_calls = 0, memo_hits = 0;
    std::vector<ParallelRankRow> rank_rows;
    std::vector<std::pair<std::string, double>> exposed_by_purpose;
    std::vector<ParallelCollectiveRow> collectives;
};

// One direction of one link over a run's collectives: a `link_utilization` row.
struct LinkUtilRow {
    int64_t link = 0;
    std::string direction;  // "from->to"
    std::string kind;
    double bytes = 0, busy_s = 0, utilization = 0;
    double energy_j = 0;  // the bytes x the link's energy per byte (plus the switch it enters)
};

// One factor of a sweep point: the key path and the value as written in the sweep file.
struct SweepFactorValue {
    std::string factor;               // "batch", "device.memory[0].capacity", ...
    std::string value;                // "8MiB"
    std::optional<double> value_num;  // SI value when the text is a number or a quantity
};

// Which point of which sweep a run is.
struct SweepPoint {
    std::string sweep_name;
    int64_t point = 0;  // index in the sweep's enumeration, from 0
    std::vector<SweepFactorValue> factors;
    std::string claim_key;  // the key this process claimed for the point, released with its run; may be empty
};

// What claim() found.
struct ClaimResult {
    enum class State {
        claimed,  // this process now holds the key: simulate the point, then record it
        done,     // a run already settles the point: link it
        busy,     // another live process holds the key: try again later
    };
    State state = State::claimed;
    int64_t run_id = 0;   // done: the run
    bool run_ok = false;  // done: whether that run's status is 'ok' (else 'error')
};

// What settles a point for claim(): an ok run with ok_hash (when not empty), or a failed run with
// error_hash (when not empty) whose run_id is above errors_after (0: any; a rerun of failed points passes
// the largest run_id it found at its start, so only failures of this round count).
struct ClaimQuery {
    std::string key;
    std::string ok_hash, error_hash;
    int64_t errors_after = 0;
    const SweepPoint* point = nullptr;  // recorded with the claim, for people reading the file
};

// ---- serving runs (schema 6; experiment/serving/) ------------------------------------------------
// One `requests` row per request of a serving run, one `serving_metrics` row per summary figure (TTFT
// and TPOT percentiles, throughput, energy per token, ...) and a sampled KV-cache occupancy series in
// `kv_occupancy`. Times are seconds on the run's timeline (the first arrival is not shifted).
struct RequestRow {
    int64_t request_id = 0;
    double arrival_s = 0, first_token_s = 0, finish_s = 0;
    int64_t prompt_tokens = 0, output_tokens = 0, preemptions = 0;
};
struct OccupancyRow {
    double time_s = 0;
    int64_t used_blocks = 0, total_blocks = 0, running = 0, waiting = 0;
};
struct ServingMetric {
    std::string name;  // snake_case, unit-suffixed: ttft_p99_s, throughput_tokens_per_s
    double value = 0;
    std::string unit;
};
struct ServingRows {
    double makespan_s = 0, energy_j = 0;  // the run row's total_time_s and total_energy_j
    std::vector<RequestRow> requests;
    std::vector<OccupancyRow> occupancy;
    std::vector<ServingMetric> summary;
};

// ---- comparisons (schema 7; experiment/compare.h) -------------------------------------------------
// One `comparisons` row per (workload, system) pair of an `mlsim compare` study; run_id is the pair's run
// (ok or failed). Figures are NULL where they do not apply (a failed pair, no price, not training).
struct ComparisonRow {
    int64_t idx = 0;  // the pair's place in the study
    int64_t run_id = 0;
    std::string workload, system, status, error;
    int64_t devices = 1, batch = 0;
    std::optional<double> latency_s, samples_per_s, energy_per_sample_j, average_power_w, system_tdp_w,
        samples_per_s_per_w, usd_per_million_samples, time_to_train_s, latency_target_s;
    std::optional<double> compute_s, memory_s, communication_s, overhead_s;
    std::optional<double> flops_per_sample, bytes_per_sample, peak_flops_per_s, mem_bandwidth_Bps;
};

// A run's sums over its layers (the runs row's totals).
struct RunTotals {
    int64_t layer_count = 0;
    double time_s = 0, energy_j = 0, macs = 0, flops = 0, bytes_read = 0, bytes_written = 0;
    double energy_compute_j = 0, energy_memory_j = 0, energy_static_j = 0;
    int64_t cycles = 0, stall_cycles = 0;
    double compute_s = 0, memory_s = 0, overhead_s = 0, communication_s = 0;
};

// A run's layers checked and encoded for writing (prepare_layers): what record_run does before it touches the
// file, which needs no database. Each layer's levels object is complete; of its metrics, the values are
// encoded and the names are keys into `metric_keys`, which the writer turns into metric_names ids (the object
// lists its entries in id order). An MPI sweep's simulating ranks prepare their points' rows, so that rank
// 0, which writes every point, only binds them (issue 15). The writer trusts what it is given: only
// prepare_layers() makes one.
struct PreparedLayers {
    // A string of the run's layers: bytes [begin, begin + size) of `text`.
    struct Text {
        uint32_t begin = 0, size = 0;
    };
    struct Metric {
        uint32_t key = 0;  // into metric_keys
        uint32_t end = 0;  // one past its value in `text` (it starts where the layer's metric before it ends,
                           // the layer's first at the start of its `values`)
    };
    // A layer's columns: its scalars, and its strings in `text`. Trivially copyable, without padding: an MPI
    // sweep sends a point's layers as one block of bytes, and rank 0, which writes every point, takes them in
    // three copies rather than a few thousand string and field reads (issue 15).
    struct Layer {
        int64_t idx = 0;
        double macs = 0, flops = 0;
        int64_t params = 0;
        double bytes_read = 0, bytes_written = 0, start_s = 0, end_s = 0, time_s = 0;
        int64_t cycles = 0, stall_cycles = 0;
        double energy_j = 0, energy_compute_j = 0, energy_memory_j = 0, energy_static_j = 0, utilization = 0;
        double compute_s = 0, memory_s = 0, overhead_s = 0, communication_s = 0;
        Text name, op, phase, dtype, bound;
        Text levels;  // the levels object, or its one level's name (schema 13); empty: NULL
        Text values;  // the metrics' values as JSON (schema::append_metric_value_json), one after another
        uint32_t metrics_begin = 0, metrics_end = 0;  // its metrics: [begin, end) of `metrics`
    };
    std::vector<Layer> layers;
    std::vector<Metric> metrics;
    std::string text;
    std::vector<std::pair<std::string, std::string>> metric_keys;  // name, unit ('' for a text metric)
    RunTotals totals;

    std::string_view str(Text t) const { return std::string_view(text).substr(t.begin, t.size); }
    // Whether every span and index stays inside the lists and the text, and each layer's metric values
    // follow one another inside its `values` (what the writer relies on); what came over MPI is checked so.
    bool consistent() const;
    // Leaves only the totals (a run recorded without its layer rows: --layer-rows none); the lists keep
    // their memory.
    void drop_rows();
};
// Checks `layers` as record_run does (an InternalError names the first row that breaks physics, and `out` is
// then unusable) and encodes them into `out`, whose memory is reused.
void prepare_layers(const std::vector<LayerRow>& layers, PreparedLayers& out);

// A sweep point's factors as the `sweeps` table stores them: {"factor": "value", ...} in the sweep file's
// factor order.
std::string factors_json(const SweepPoint& point);

class ResultsDb {
  public:
    // Writes a study's comparison rows in one transaction under a new compare_id (1 + the largest in the
    // file) and returns it. Figures must be finite and non-negative, idx unique (InternalError otherwise,
    // nothing written).
    int64_t record_comparison(const std::string& name, const std::vector<ComparisonRow>& rows);

    // Atomically writes a status 'ok' serving run (mode 'serving', no layers) with its requests, summary
    // and occupancy rows; returns the new run_id. Rows are validated first (InternalError, nothing
    // written): finite non-negative times with arrival <= first token <= finish, counts >= 0, unique
    // request ids and metric names.
    int64_t record_serving_run(const RunInfo& info, const ServingRows& rows, double wall_s);

    explicit ResultsDb(const std::string& path);
    ~ResultsDb();
    ResultsDb(const ResultsDb&) = delete;
    ResultsDb& operator=(const ResultsDb&) = delete;

    // Atomically writes a status 'ok' run and its layers (with their levels and metrics); returns the
    // new run_id. total_time_s = max(end_s) - min(start_s) over the layers, total_energy_j = sum of
    // energy_j, total_<part>_s = sum of the layers' <part>_s; average_power_w = total_energy_j /
    // total_time_s (NULL for a zero span); over_tdp = average power above info.tdp_W (NULL when unknown).
    // With `point`, the run's sweep rows are written in the same transaction.
    // With `parallel`, its rows (ParallelRows) are written in the same transaction; figures must be finite
    // and non-negative, ranks and collective idx unique (InternalError, nothing written). Its layers are
    // rank 0's, and the run row's total_time_s, total_energy_j and average_power_w the whole step's
    // (every rank, idle time and links): the other totals, its energy split among them, stay rank 0's sums;
    // its over_tdp compares the devices' own power (without the links') with their summed TDP.
    int64_t record_run(const RunInfo& info, const std::vector<LayerRow>& layers, double wall_s,
                       const SweepPoint* point = nullptr, const ParallelRows* parallel = nullptr);
    // The same for layers prepare_layers() checked and encoded (the same rows, byte for byte).
    int64_t record_run(const RunInfo& info, const PreparedLayers& layers, double wall_s,
                       const SweepPoint* point = nullptr, const ParallelRows* parallel = nullptr);
    // Writes a status 'error' run with its message and no layers; returns the new run_id.
    int64_t record_failed_run(const RunInfo& info, const std::string& error, double wall_s,
                              const SweepPoint* point = nullptr);
    // Atomically writes a status 'ok' run without layers and its collective and link rows (schema 6);
    // total_time_s = the sum of the collectives' times, total_energy_j the sum of their energy_j (schema 7).
    // Rows are checked as layers are (finite, non-negative, end_s >= start_s, unique idx): a violation is an
    // InternalError and writes nothing.
    int64_t record_collectives(const RunInfo& info, const std::vector<CollectiveRow>& rows,
                               const std::vector<LinkUtilRow>& links, double wall_s);
    // True when some run with this config hash finished with status 'ok'.
    bool has_ok_run(const std::string& config_hash) const;
    // The latest run with this config hash and status ('ok' or 'error'), if any.
    std::optional<int64_t> find_run(const std::string& config_hash, std::string_view status) const;
    // Writes the sweep rows of `point` for the existing run `run_id` (one transaction), unless that
    // run is already linked to that sweep. Returns whether rows were written.
    bool link_sweep_point(const SweepPoint& point, int64_t run_id);

    // See the contract: done, busy or claimed, decided and (for claimed) recorded in one transaction.
    ClaimResult claim(const ClaimQuery& query);
    // Drops this process's claim on `key`, if it holds one (a point given up without a run).
    void release_claim(const std::string& key);
    // The largest run_id in the file, 0 when it has no runs.
    int64_t max_run_id() const;
    // The rows of sweep `name` in `sweeps`: each run's point index and its factors as JSON (factors_json),
    // in point order then run order.
    std::vector<std::pair<int64_t, std::string>> sweep_points(const std::string& name) const;
    // The text recorded under `key` in `meta` (a sweep's base, "sweep_base <name>"), if any; and setting it.
    std::optional<std::string> meta_value(const std::string& key) const;
    void set_meta_value(const std::string& key, const std::string& value);

    // Sweep writers sharing a file (experiment/sweep_writer.h). announce_writer() records this process as a
    // sweep writer of the file (a `claims` row with the key "writer HOST PID START", no point), drops the
    // rows of writers no longer live, and returns whether another live process is writing a sweep to the
    // file; withdraw_writer() removes this process's row. other_writers() tells, reading only, whether
    // another live process's row is there. Called outside a batch.
    bool announce_writer();
    void withdraw_writer();
    bool other_writers() const;
    // The config hashes of the runs with `status` ('ok', 'error') whose run_id is above `after`, which
    // becomes the largest run_id listed (reading only: the runs a sweep finds at its start, and what other
    // processes committed since).
    std::vector<std::string> run_hashes_after(const std::string& status, int64_t& after) const;
    // Groups every write until end_batch() into one transaction: one commit for many points. Nothing of the
    // batch is in the file before end_batch() returns, so a process killed in between leaves the file as it
    // was before begin_batch() (the points are run again on resume). A write refused before it wrote
    // anything (invalid rows: InternalError) leaves the batch as it was; a write that fails after writing
    // some rows (an SQLite error) rolls the WHOLE batch back: the batch then takes no more writes
    // (InternalError), end_batch() commits nothing and throws, and the file is as before begin_batch(). The
    // write lock is held throughout: keep batches short.
    void begin_batch();
    void end_batch();
    // From now on, copies the write-ahead log into the file from a thread of its own rather than in the
    // commit that takes the log past 1,000 pages (results_db.cpp, Checkpointer): for a sweep's writer, whose
    // commits then return without copying and syncing megabytes. What is committed is as durable as before.
    // Where a second connection to the file cannot be opened, SQLite's own checkpoints stay.
    void checkpoint_in_background();
    // Whether the background checkpoint is due or running.
    bool checkpointing() const;
    // Whether the log is long enough to start over and its copy is running: a transaction begun before the
    // copy ends keeps the log growing, and a growing log costs each commit more (results_db.cpp,
    // Checkpointer), so a writer with other work does that first (a few milliseconds).
    bool log_restart_due() const;
    // Whether the background thread also starts the kernel writing back the file's and the log's pages
    // ahead of the copies' syncs (Linux, SQLite's unix VFS; results_db.cpp, Checkpointer): known once a
    // commit has woken it.
    bool background_writeback() const;
    // Checkpoints the background thread has run (tests), and the CPU time it spent in them and in starting
    // the writeback (benchmarks).
    int64_t background_checkpoints() const;
    double background_checkpoint_cpu_s() const;

    // While one lives (they nest), this file's writes skip SQLite's foreign-key lookups: a b-tree search per
    // row and reference, about a third of the cost of writing a systolic ResNet-50 point's ~2,800 rows. For a
    // sweep's writer, whose rows refer only to rows written before them in the same transaction (record_run:
    // the run row, then each layer row before its levels and metrics, all from one LayerRow) or to runs found
    // in the file (link_sweep_point, claim; mlsim never deletes a run): the references hold by construction,
    // and tests check the files with PRAGMA foreign_key_check. Created and destroyed outside a batch; other
    // writers (and every other connection) keep the checks.
    class ReferenceChecksOff {
      public:
        explicit ReferenceChecksOff(ResultsDb& db);
        ~ReferenceChecksOff();
        ReferenceChecksOff(const ReferenceChecksOff&) = delete;
        ReferenceChecksOff& operator=(const ReferenceChecksOff&) = delete;

      private:
        ResultsDb& m_db;
    };

    const std::string& path() const;

  private:
    struct Impl;
    std::unique_ptr<Impl> m_impl;
};

// Lower-case hex SHA-256 (FIPS 180-4) of the resolved config text: 64 characters, identical to
// `sha256sum` of the same bytes, stable across platforms and versions.
// On an x86-64 processor with the SHA extensions (Intel since Goldmont and Ice Lake, AMD since Zen) the
// blocks go through them; config_hash_portable always takes the plain C++ rounds (the tests compare the two).
std::string config_hash(const std::string& resolved_yaml);
std::string config_hash_portable(const std::string& resolved_yaml);

}  // namespace mlsim::db
