#pragma once
// Design-space sweeps (what `mlsim sweep FILE` runs): a sweep file names a base experiment and factors, each
// a config key path with a list of values. The points are the Cartesian product of the factors; a zipped
// group of factors counts as one factor whose values move together.
//
// Contract:
// - load_sweep() reads and checks the whole file: its keys against sweep_schema() (unknown keys get a
//   suggestion), every factor path (an experiment key, or a key path into the device or system config
//   checked against the device / system schema), non-empty value lists without repeats, equal lengths
//   within a zipped group. Every problem is a cfg::UserError located in the sweep file.
// - Bounded: a sweep has at most limits::hard_max_sweep_points points (load_sweep); checking or running
//   more than a caller's limit (default limits::default_max_sweep_points, `mlsim sweep --max-points`)
//   is refused before any point is resolved. Loading is linear in the file (repeated values are found
//   by hashing).
// - Points are enumerated in a fixed order: axes (single factors and zipped groups) in the order the
//   file gives them, the first varying slowest. Point i is the same configuration on every run of the
//   same file.
// - check_points() resolves every point without simulating: experiment values (validated against the
//   base schema), system and model files, device overrides (the overridden tree re-validated with the
//   device schema). A bad value is reported at its line in the sweep file, with the point it belongs to.
// - run_sweep() simulates the points on `jobs` threads, the calling thread being one of them and the writer
//   (experiment/sweep_writer.h): the points are committed in point order, in transactions of up to 64
//   points (a point's run row, layer rows and sweep rows always in the same one), so run_ids follow the
//   points whatever `jobs` (unless another process writes a sweep to the file at the same time: the two
//   then share the points out, sweep_writer.h), and a killed sweep leaves whole points only. A point whose
//   resolved config (db::config_hash of ExperimentResult::resolved_yaml) already has an ok run in the
//   database is skipped and linked to this sweep, so an interrupted sweep resumes with nothing lost or
//   duplicated. A point that fails with a user error (the model does not fit, the device lacks the data type)
//   is recorded as a failed run with its message, and the sweep goes on; on a later run it is skipped
//   (identified by the hash of its point description) unless retry_failed. The rows written, ids included,
//   never depend on `jobs`. An internal error, or a database that cannot be written, stops the sweep: points
//   in flight finish, then it is rethrown.
// - Nothing here prints: run_sweep() reports progress only through SweepRunOptions::progress, which it
//   calls from the thread that called run_sweep().
#include <chrono>
#include <cstddef>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "db/results_db.h"
#include "experiment/experiment.h"
#include "sim/config/limits.h"
#include "sim/config/node.h"
#include "sim/config/schema.h"
#include "sim/config/units.h"

namespace mlsim::exp {

// The keys of a sweep file, and of its `base:` map (the experiment every point starts from).
const cfg::Schema& sweep_schema();
const cfg::Schema& sweep_base_schema();

struct SweepFactor {
    std::string path;               // "batch", "device.memory[0].capacity", "device.systolic.rows"
    bool override = false;          // a key path into the system document (device.* or system.*)
    cfg::SourceLoc loc;             // where the key path is written
    std::vector<cfg::Node> values;  // as written, located in the sweep file
    std::optional<cfg::Dim> dim;    // for a quantity parameter: the dimension its values parse in
};

// One factor, or a zipped group whose factors all have the same number of values.
struct SweepAxis {
    std::vector<SweepFactor> factors;
    bool zipped = false;
    std::size_t size() const { return factors.front().values.size(); }
};

// The sweep's `system:` and `model:` values resolved so far, by the value as written: a value resolves the
// same way at every point (make_point), and resolving a preset name looks for two files, a zoo name lists
// the zoo: 2 stat calls a point, some 2 % of a roofline point's CPU (bench/README.md, thirteenth round).
// Only what resolved is kept (an error is raised again, located at that point's value). Thread-safe.
struct SweepRefs {
    std::mutex mutex;
    std::map<std::string, std::string, std::less<>> systems, models;
};

struct Sweep {
    std::string file;  // as given
    std::string name;  // `name:`, else the file name without its extension
    std::string description;
    cfg::Node base;  // the validated `base:` map, defaults filled in
    std::vector<SweepAxis> axes;
    std::shared_ptr<SweepRefs> refs = std::make_shared<SweepRefs>();  // shared by copies
    std::size_t point_count() const;
};

// A point's error message located in the sweep file where the run's own checks located it on the command
// line ("<command line>: error: seq: ..."): at the factor of that name, else at the base's key, else as
// given.
std::string locate_in_sweep(const Sweep& sweep, const std::string& message);

// One point: the experiment to run and how the database will know it.
struct SweepPointConfig {
    std::size_t index = 0;
    ExperimentOptions options;  // system and model files resolved to absolute paths
    db::SweepPoint db_point;    // sweep name, index and factor values
    std::string description;    // "device.systolic.rows=8, dtype=bf16"
};

Sweep load_sweep(const std::string& path);
SweepPointConfig make_point(const Sweep& sweep, std::size_t index);

// The factor values of point `index`, as written, in the order of the axes and their factors; cheap
// (nothing is resolved), for listing points.
std::vector<std::string> point_values(const Sweep& sweep, std::size_t index);

// A sweep of more than `max_points` points is a UserError located at its first factor, naming the
// count, the limit and `mlsim sweep --max-points`.
void check_point_count(const Sweep& sweep, std::size_t max_points = limits::default_max_sweep_points);

// Loaded systems, by the path ExperimentOptions::system names.
using SystemCache = std::map<std::string, std::shared_ptr<const arch::SystemSpec>>;
// Resolves every point (see the contract); returns the systems they use, each loaded once. Refuses
// first a sweep of more than `max_points` (check_point_count). `progress`, when given, is called
// before each point with (points checked, total). `overridden`, when given, keeps the points' systems
// with their overrides applied, for run_sweep to take (SweepRunOptions::overridden) rather than apply
// them again; without it, a cache of check_points' own.
SystemCache check_points(const Sweep& sweep, std::size_t max_points = limits::default_max_sweep_points,
                         const std::function<void(std::size_t done, std::size_t total)>& progress = {},
                         OverrideCache* overridden = nullptr);

// Refuses (a UserError located at the sweep file, nothing written) to go on with a sweep whose name the
// database already holds from another file: its base (recorded in `meta`) differs, or a row of it has other
// factors than this file's point of that index (points past this file's end, the first factor's list cut
// short at its end, are left as they are). Resuming such a sweep would give two runs one point number.
// Records this file's base.
void check_sweep_history(const Sweep& sweep, db::ResultsDb& db);

// The YAML text identifying a point that failed (its experiment options and overrides); its hash
// finds the failure again on a rerun.
std::string point_description_yaml(const SweepPointConfig& point);

// The run row recorded for a point that failed with a user error: its description's hash identifies it
// on a rerun (used by the threaded and the MPI sweep).
db::RunInfo failed_run_info(const SweepPointConfig& point, const SystemCache& systems);

// Where a sweep stands, for a progress display.
struct SweepProgress {
    std::size_t done = 0;    // points finished (ran, skipped or failed)
    std::size_t failed = 0;  // of which failed
    std::size_t total = 0;
    bool final = false;  // the last report, after every point finished (not sent when the sweep stops)
};

struct SweepRunOptions {
    int jobs = 1;
    bool retry_failed = false;
    // Called about every progress_interval while points run, then once with final set; empty: no reports.
    std::function<void(const SweepProgress&)> progress;
    std::chrono::milliseconds progress_interval{250};
    // The points' overridden systems (check_points may have filled it: a hit there saves ~1 M
    // instructions a point); null: run_sweep keeps its own.
    std::shared_ptr<OverrideCache> overridden;
};

struct SweepSummary {
    std::size_t points = 0;
    std::size_t ran = 0;                 // simulated and recorded ok
    std::size_t skipped = 0;             // an ok run with the same resolved config was already there
    std::size_t failed = 0;              // simulated, failed with a user error, recorded as failed
    std::size_t failed_before = 0;       // skipped: failed on an earlier run (retry_failed reruns them)
    std::size_t recorded_elsewhere = 0;  // simulated here, but another process recorded it first (skipped)
    // Points whose resolved configuration is an earlier point's of this run (skipped): one run, which the
    // table `sweeps` links to the sweep once (its key is the sweep and the run), at the first such point.
    std::size_t repeated = 0;
    std::vector<std::string> repeat_examples;  // "point 12 (...) = point 0", at most 5
    double wall_s = 0;
    std::vector<std::string> errors;  // failure messages, by point index (at most 5)
};

SweepSummary run_sweep(const Sweep& sweep, const SystemCache& systems, db::ResultsDb& db,
                       const SweepRunOptions& options);

// Distributed sweeps (mlsim-mpi launched by mpirun; mpi/sweep_mpi.h): when a backend is installed,
// `mlsim sweep` runs on every rank. Rank 0 opens the database and calls `coordinate` in place of
// run_sweep(), with the same contract (the rows written never depend on the number of ranks or jobs);
// every other rank calls `work`, simulates the points rank 0 hands it, and writes nothing.
struct DistributedSweep {
    int rank = 0;
    int ranks = 1;
    std::function<SweepSummary(const Sweep&, const SystemCache&, db::ResultsDb&, const SweepRunOptions&)>
        coordinate;
    // On the other ranks; with the overridden systems check_points() kept, which their points take again.
    std::function<void(const Sweep&, const SystemCache&, const std::shared_ptr<OverrideCache>&)> work;
};
// The installed backend; null (the default, and always in the plain mlsim binary): threads only.
DistributedSweep*& distributed_sweep();

// `system:` and `model:` values of a sweep or compare file (`kind`: "sweep", "compare"): a preset or zoo
// name, or a path (a '/', .yaml, .yml, .csv or a SCALE-Sim suffix) relative to the `referrer` file, made
// absolute (a model file's path is part of the resolved config, and so of the hash that lets a rerun from
// another working directory find the points already done). A missing file, an unknown name (with the
// nearest) or an empty system is a UserError located at the value.
// Whether a value names a file rather than a preset or zoo entry (the rule above).
bool names_a_file(std::string_view s);
std::string resolve_system_ref(const std::string& referrer, std::string_view kind, const cfg::Node& v);
std::string resolve_model_ref(const std::string& referrer, std::string_view kind, const cfg::Node& v);

}  // namespace mlsim::exp
