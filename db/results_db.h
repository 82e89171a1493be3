#pragma once
// The results database: one SQLite file per study, one `runs` row per simulated point and one `layers`
// row per layer of that point (schema in db/schema.h; units in column names).
//
// Contract:
// - Opening never truncates: an existing mlsim file is appended to (and migrated additively to the
//   current schema); a missing file and its parent directories are created. A path that cannot be
//   created, a file that is not an SQLite database, a foreign SQLite file or one from a newer mlsim is a
//   cfg::UserError naming the path.
// - record_run() writes the run row and all its layer rows in ONE transaction: after a crash (even
//   SIGKILL mid-write) a run is either entirely present or absent. Run totals are computed from the layers.
// - Rows are validated before anything is written: NaN/infinite or negative times, energies, bytes,
//   counts, or a layer whose busy time exceeds its [start_s, end_s] interval, are bugs in the producer and
//   throw InternalError (MLSIM_CHECK); nothing is written then.
// - Equal inputs write equal `layers` rows (only run_id differs).
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
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
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
    std::string bound;       // "compute" | "memory" | "overhead" | "communication" | ...
    // Detailed device models (zero / empty for the roofline): stall cycles by cause, the mapping,
    // energy of on-chip buffers, main memory and PE-to-PE hops, and bytes per operand buffer.
    int64_t stall_weight_cycles = 0, stall_input_cycles = 0, stall_output_cycles = 0, pe_hops = 0;
    std::string tiling;
    double energy_sram_j = 0, energy_dram_j = 0, energy_noc_j = 0;
    double bytes_ifmap_read = 0, bytes_ifmap_written = 0, bytes_filter_read = 0, bytes_filter_written = 0;
    double bytes_ofmap_read = 0, bytes_ofmap_written = 0;
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
};

class ResultsDb {
  public:
    explicit ResultsDb(const std::string& path);
    ~ResultsDb();
    ResultsDb(const ResultsDb&) = delete;
    ResultsDb& operator=(const ResultsDb&) = delete;

    // Atomically writes a status 'ok' run and its layers; returns the new run_id.
    // total_time_s = max(end_s) - min(start_s) over the layers, total_energy_j = sum of energy_j.
    // With `point`, the run's sweep rows are written in the same transaction.
    int64_t record_run(const RunInfo& info, const std::vector<LayerRow>& layers, double wall_s,
                       const SweepPoint* point = nullptr);
    // Writes a status 'error' run with its message and no layers; returns the new run_id.
    int64_t record_failed_run(const RunInfo& info, const std::string& error, double wall_s,
                              const SweepPoint* point = nullptr);
    // True when some run with this config hash finished with status 'ok'.
    bool has_ok_run(const std::string& config_hash) const;
    // The latest run with this config hash and status ('ok' or 'error'), if any.
    std::optional<int64_t> find_run(const std::string& config_hash, std::string_view status) const;
    // Writes the sweep rows of `point` for the existing run `run_id` (one transaction), unless that
    // run is already linked to that sweep. Returns whether rows were written.
    bool link_sweep_point(const SweepPoint& point, int64_t run_id);

    const std::string& path() const;

  private:
    struct Impl;
    std::unique_ptr<Impl> m_impl;
};

// Lower-case hex SHA-256 (FIPS 180-4) of the resolved config text: 64 characters, identical to
// `sha256sum` of the same bytes, stable across platforms and versions.
std::string config_hash(const std::string& resolved_yaml);

}  // namespace mlsim::db
