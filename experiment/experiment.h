#pragma once
// An experiment: a system, a workload and the options that shape it, resolved into one config tree whose
// YAML text (and its hash) identifies the run in the results database.
// Contract: run_experiment() never writes partial results; a UserError (bad config, unknown model, a model
// that does not fit) propagates to the caller before anything is recorded.
// Overrides: ExperimentOptions::device_overrides set values at key paths of the loaded system document
// ("device.clock", "device.memory[1].bandwidth", "system.count") before the device is built; the
// overridden tree is validated again with the device and system schemas, so a bad value is reported at
// the override node's own location (e.g. the sweep file that gave it).
#include <algorithm>
#include <cstdint>
#include <list>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <tuple>
#include <unordered_map>
#include <vector>

#include "arch/device_model.h"
#include "arch/device_spec.h"
#include "arch/system/parallel_exec.h"
#include "arch/system/system_spec.h"
#include "db/results_db.h"
#include "sim/config/limits.h"
#include "sim/config/node.h"
#include "workloads/embedding_sharding.h"
#include "workloads/model.h"
#include "workloads/parallel.h"

namespace mlsim::exp {

// One value set at a key path of the system document (`system:` and `device:` maps).
struct ConfigOverride {
    std::string key_path;  // "device.clock", "device.memory[0].capacity", "device.systolic.rows", ...
    cfg::Node value;       // located where the user wrote it; its key_loc() is where the key path was written
    // Set by a run option (experiment/run_options.h): how the user named it ("--fidelity",
    // "base.fidelity"). Such an override sets a key of a section the device must already have.
    std::string option = {};
    // A run option several families share (--fidelity): the other families' key paths. The first of
    // key_path and these whose section the device has is set; the device's section decides.
    std::vector<std::string> alternatives = {};
};

// The fields are declared, with their defaults, docs and checks, in experiment/run_options.h.
struct ExperimentOptions {
    std::string system;  // path to a system or device file, or a device preset name
    std::string model;   // zoo name or a .yaml / .csv file
    int64_t batch = 1;
    int64_t seq = 0;
    int64_t image = 0;
    std::string dtype;  // empty: fp32 where the device has it, else its first supported data type
    std::string mode = "inference";  // inference | training
    std::string optimizer = "adam";
    bool checkpointing = false;
    // The parallel plan (workloads/parallel.h; run options --data-parallel, --tensor-parallel, ...).
    // All at their defaults: a single-device run, exactly as before.
    int64_t data_parallel = 1, tensor_parallel = 1, pipeline_parallel = 1, expert_parallel = 1;
    int64_t zero = 0;
    int64_t microbatches = 1;
    bool sequence_parallel = false;
    std::string pipeline_schedule = "1f1b";  // 1f1b | gpipe
    std::string recompute = "none";          // none | full | selective (workloads/parallel.h)
    // Embedding sharding (workloads/embedding_sharding.h): auto | table | row | column | table-row | data |
    // a placement file; empty: off. The dense part is then data-parallel over every device.
    std::string embedding_sharding;
    // The embedding ops' data type: their tables, lookups, gradients and updates (FP32 tables under mixed
    // precision: PyTorch AMP keeps parameters in FP32); their pooled outputs and the other ops stay in
    // `dtype`. Empty: `dtype`.
    std::string embedding_dtype;
    // Embedding-bag tables capped at this many rows (ids hashed into them: the reference DLRM's
    // --max-ind-range, DeepLearningExamples' --max_table_size); 0: the model's own.
    int64_t max_table_rows = 0;
    // With embedding_sharding, training: how the sharded tables are updated (workloads/embedding_sharding.h):
    // rowwise_adagrad (fused into the backward) | unfused (the training optimizer on the rows the step
    // touched, reading a gradient the backward wrote out).
    std::string sparse_optimizer = "rowwise_adagrad";
    // The per-layer rows a run records in the results database: all | none (the run's row, with its
    // totals, and its sweep rows only: for sweeps of many points, whose writer is then some 8x cheaper a
    // point). The simulation is the same; part of the resolved config when none, so that a run recorded
    // without its layers is not taken for one recorded with them (a sweep's resume).
    std::string layer_rows = "all";
    // What the run may cost (sim/config/limits.h): refused before it starts when its estimate is above.
    // Not part of the resolved config: it never changes a result.
    int64_t max_pe_cycles = static_cast<int64_t>(limits::default_max_pe_cycles);
    // Applied in order to the loaded system before the device is built (see the contract above). Run
    // options that are device settings (--fidelity, --convention: experiment/run_options.h) land here too.
    std::vector<ConfigOverride> device_overrides;
    // When set, used instead of loading `system` (a sweep loads each system file once); overrides still
    // apply.
    std::shared_ptr<const arch::SystemSpec> preloaded_system;
    // When set, a zoo model is built once per name and zoo options and copied for each later run that asks
    // for it again (a sweep's points mostly vary the device); model files are read each time.
    std::shared_ptr<class ModelCache> model_cache;
    // When set (with preloaded_system), the overridden system comes from it: points of a sweep that give
    // the same overrides share one application of them.
    std::shared_ptr<class OverrideCache> override_cache;
};

// Zoo models built once per (name, wl::ZooOptions), handed out as copies: building ResNet-50 from the zoo
// costs about 1.8 M instructions, copying the built model (which shares its ops and graph) almost nothing.
// Thread-safe; a failed build is not kept (it fails again, with the same error, for the next run).
class ModelCache {
  public:
    wl::Model get(std::string_view name, const wl::ZooOptions& zo);

  private:
    using Key = std::tuple<std::string, int64_t, int64_t, int64_t, int, int64_t>;
    static constexpr std::size_t k_max_models = 16;  // a sweep's distinct models; emptied when full
    std::mutex m_mutex;
    std::map<Key, wl::Model> m_models;
};

// apply_overrides() results, kept per (system, overrides) for the points of a sweep that give the same
// overrides (the factors that are not key paths, such as batch, vary beside them): applying them copies
// and re-validates the system document and builds the device again, about 1 M instructions for a TPU v4,
// where a copy of the result costs about 0.13 M. The key is the system's address and every part of each
// override (key path, option, alternatives, and the value's text, kinds, paths and locations), so a hit
// is exactly what apply_overrides would return. Thread-safe; an application that fails is not kept (it
// fails again, with the same error). At most `capacity` entries, and at most `max_bytes` of them by
// estimated_bytes (an entry is a whole system: a sweep over a 4,096-chip pod's clock would otherwise hold
// gigabytes).
class OverrideCache {
  public:
    // check_points() applies every point's overrides before the sweep starts and the points take their
    // systems from here: room for every distinct set of overrides of a sweep of a few thousand points
    // (990 in the 1,980-point systolic sweep of bench/bench_sweep_mpi.py; with 128 entries, half its points
    // applied theirs a second time, some 4 % of a simulating rank's CPU).
    static constexpr std::size_t k_max_systems = 1024;
    // When full (entries or bytes), a new entry replaces the one just older than the most recent half: the
    // sets a sweep's inner loop takes in turn stay while there are at most half the capacity of them (as
    // least-recently-used would keep them), and the older half stays until used again. A sweep visits its
    // sets in nested loops: with more distinct sets in its inner loop than entries (2,000 memory bandwidths
    // under a batch factor), dropping the least recently used dropped each set just before its next turn and
    // no point found its set; this way about a third do (bench/README.md, eighteenth round). 1,024
    // single-device systems take about 9-34 MB; the budget holds 128 systems of a 1,024-GPU SuperPOD, 29 of a
    // 4,096-chip TPU v4 pod.
    static constexpr std::size_t k_max_bytes = std::size_t{128} << 20;
    // An entry's memory, estimated: 32 KB for the documents and the devices (34 KB a TPU v4, 9 KB an A100,
    // measured as above), and 270 bytes a topology vertex or link (peak memory over 200 distinct clocks of
    // superpod-h100-1024, 1.0 MB an entry, and 50 of tpu-v4-4096, 4.3 MB: both 260-270 bytes a vertex or
    // link).
    static std::size_t estimated_bytes(const arch::SystemSpec& s);

    explicit OverrideCache(std::size_t capacity = k_max_systems, std::size_t max_bytes = k_max_bytes)
        : m_capacity(std::max<std::size_t>(capacity, 1)), m_max_bytes(max_bytes) {}
    std::shared_ptr<const arch::SystemSpec> get(const std::shared_ptr<const arch::SystemSpec>& system,
                                                const std::vector<ConfigOverride>& overrides);
    std::size_t size() const;   // entries kept
    std::size_t bytes() const;  // their estimated_bytes

  private:
    struct Entry {
        std::string key;
        std::shared_ptr<const arch::SystemSpec> base;  // keeps the address in `key` from being reused
        std::shared_ptr<const arch::SystemSpec> system;
        std::size_t bytes = 0;  // estimated_bytes(*system)
    };
    std::size_t m_capacity;
    std::size_t m_max_bytes;
    std::size_t m_bytes = 0;  // the entries' estimated_bytes
    mutable std::mutex m_mutex;
    std::list<Entry> m_lru;                                                    // most recently used first
    std::unordered_map<std::string_view, std::list<Entry>::iterator> m_index;  // views of Entry::key
};

// One step of a parallel run (a parallel plan on a multi-device system), from the execution engine that
// runs every rank's program on its device model and every communication on the network model
// (arch/system/parallel_exec.h). Times in seconds, energies in joules.
struct ParallelSummary {
    double step_time_s = 0;        // one training step (inference: one batch), first start to last end
    double samples_per_s = 0;      // batch / step time
    double tokens_per_s = 0;       // batch x seq / step time (0 for models without a sequence)
    double mfu = 0;                // model FLOPs / (step time x devices x peak for the dtype)
    double compute_s = 0;          // the critical rank's busy compute time
    double exposed_comm_s = 0;     // time the critical rank waits on communication
    double bubble_s = 0;           // time the critical rank idles on the pipeline schedule
    double peak_memory_bytes = 0;  // the largest rank's peak
    double device_energy_j = 0;    // every rank's device energy
    double link_energy_j = 0;      // bytes over links x their energy per bit
};

struct ExperimentResult {
    arch::SystemSpec system;
    wl::Model model;
    std::vector<arch::LayerResult> layers;
    wl::MemoryAccount training_memory;  // filled in training mode
    // With a parallel plan: its lowering (per-stage programs) and per-stage memory; null without one.
    std::shared_ptr<const wl::ParallelLowering> parallel;
    // With a parallel plan, after simulate(): the step (total_time_s = step time, total_energy_j =
    // device + link energy); `layers` then holds rank 0's layers.
    std::optional<ParallelSummary> parallel_run;
    // With a parallel run: the engine's full result (per-rank table, collectives, exposed communication
    // by purpose on the critical rank).
    std::shared_ptr<const arch::ExecResult> parallel_exec;
    std::string resolved_yaml;
    db::RunInfo info;
    double total_time_s = 0;
    double total_energy_j = 0;
};

// The directory holding configs/ presets (MLSIM_CONFIGS env var, else the source tree's configs/).
std::string configs_dir();
// A preset's file: configs/systems/<name>.yaml, else configs/devices/<name>.yaml; nullopt when neither
// exists.
std::optional<std::string> find_system_preset(const std::string& name);
// Resolves a --system argument: an existing file, or a preset name in configs/devices or configs/systems.
// A name that is neither is a UserError at `loc`, keyed by `key` ("--system").
std::string resolve_system_path(const std::string& arg,
                                const cfg::SourceLoc& loc = cfg::SourceLoc{"<command line>", 0, 0},
                                std::string_view key = "--system");
// Loads a resolved system path: a SCALE-Sim .cfg, or a system or device YAML file (a device named inside
// it by preset is looked up in configs/devices).
arch::SystemSpec load_system_file(const std::string& path);

// The system with the overrides applied and re-validated; `system` unchanged when there are none.
arch::SystemSpec apply_overrides(const arch::SystemSpec& system,
                                 const std::vector<ConfigOverride>& overrides);

ExperimentResult run_experiment(const ExperimentOptions& opt);

// run_experiment in two steps, for callers that need a run's identity (resolved config and its hash)
// before simulating it: a resumable sweep skips points whose config already has a result.
// prepare_experiment does every check and builds the model and the device; simulate() runs it.
// The result lives on the heap so that moving a PreparedExperiment never moves the spec and model that
// `device` may refer to.
struct PreparedExperiment {
    std::unique_ptr<ExperimentResult> result;  // all but layers and totals
    std::unique_ptr<arch::DeviceModel> device;
};
PreparedExperiment prepare_experiment(const ExperimentOptions& opt);
ExperimentResult simulate(PreparedExperiment&& prepared);

// Builds the options' model once, without a system (its batch, seq and image; the given data type, else
// fp32): the errors of the workload itself (a sequence its model refuses, a broken model file), which no
// system changes. Errors as prepare_experiment raises them (located at "<command line>", keyed by the flag,
// or in the model file).
void check_model_options(const ExperimentOptions& opt);

// The parallel plan the options give (errors located at "<command line>", keyed by the flags), and whether
// they give one (any option not at its default).
wl::ParallelPlan parallel_plan(const ExperimentOptions& o);
bool has_parallel_plan(const ExperimentOptions& o);
// The embedding-sharding options for a system (ranks, ranks per node, capacity), located at the flag.
wl::ShardingOptions sharding_options(const ExperimentOptions& o, const arch::SystemSpec& system);

// Writes the workload options (batch, seq, image, dtype, mode, and optimizer/checkpointing when
// training) into `map`, located at the map; the one place that lists what shapes a workload.
void set_workload_options(cfg::Node& map, const ExperimentOptions& o);

// A prepared experiment with a parallel plan: every rank on the execution engine
// (arch/system/parallel_exec.h); simulate() calls it when `parallel` is set.
ExperimentResult simulate_parallel(PreparedExperiment&& prepared);

// Runs a prepared experiment like simulate(), reporting each finished layer to `progress`.
ExperimentResult simulate(PreparedExperiment&& prepared, const arch::LayerProgress& progress);

// Per-layer results as results-database rows; from an rvalue, the layers' strings are moved into the rows
// (the layers are left valid but their strings unspecified).
std::vector<db::LayerRow> to_rows(const std::vector<arch::LayerResult>& layers);
std::vector<db::LayerRow> to_rows(std::vector<arch::LayerResult>&& layers);
// The rows a run records (db::ResultsDb::record_run): its layers checked and encoded into `out` (memory
// reused), then left out when the options ask for the totals only (ExperimentOptions::layer_rows none).
void prepare_rows(std::vector<arch::LayerResult>&& layers, const ExperimentOptions& o,
                  db::PreparedLayers& out);
// A parallel run's database rows (schema 7: parallel_runs, parallel_ranks, parallel_exposed and its
// collectives); `r` must hold a parallel run (parallel_run and parallel_exec set).
db::ParallelRows parallel_rows(const ExperimentResult& r);

}  // namespace mlsim::exp
