#pragma once
// `mlsim compare`: workloads against systems (edge, datacenter, supercomputer), one row per pair.
//
// Contract:
// - load_compare() reads and checks the whole compare file (configs/README.md, "A compare file") against
//   compare_schema(): unknown keys get the nearest valid key; every workload's model, data type, mode and
//   parallel plan, every system (a preset or a file, relative to the compare file) and every name a
//   workload's `systems:` lists are checked before anything runs. Every problem is a cfg::UserError
//   located in the compare file (file, line, column, key path).
// - default_compare_path() is the built-in study (configs/compare/default.yaml), `mlsim compare` with no
//   file and the main demo.
// - run_compare() runs the pairs in a fixed order (workloads in file order, systems in file order within
//   each), so the rows never depend on anything but the file. A pair that fails with a user error (the
//   model does not fit, the plan does not divide the system, the device lacks the data type) is a row with
//   status `error` and the message; nothing else stops the study but an internal error.
// - Figures per row (CompareRow) follow the rules written beside its fields: latency is one batch (one
//   training step), throughput batch / latency, energy per sample the whole system's energy / batch, so
//   energy per sample x throughput = average power exactly; the system's TDP is the summed TDP of the
//   devices that run (every device for a plan, the replicas below otherwise); cost per million samples comes
//   from the system file's `system.price` (cost_per_hour_usd()).
// - Multi-device systems: a workload with a parallel plan runs through the execution engine, which fills
//   ExperimentResult::parallel_run. Until that engine is present, such a run times one device only, so
//   its row has status `not_modelled` and no figures. A workload without a plan on a system of N devices
//   runs inference as N independent replicas of one device (throughput, power and TDP x N, latency and
//   energy per sample as one device: no traffic joins replicas), N counting only the devices of the
//   system's default type (a mixed system's other devices do not run); training without a plan is refused. A
//   workload with `embedding_sharding` (DLRM-style tables over the devices, workloads/embedding_sharding.h)
//   runs one rank per device of any system through the engine, never as replicas; its batch_per_replica
//   is per device.
// - With a database, each pair's run is recorded as `mlsim run` records it (ok, or failed with its
//   message) and the rows go to the `comparisons` table in one transaction (ResultsDb::record_comparison).
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "db/results_db.h"
#include "experiment/experiment.h"
#include "sim/config/node.h"
#include "sim/config/schema.h"

namespace mlsim::exp {

const cfg::Schema& compare_schema();

struct CompareWorkload {
    std::string name;               // the row label
    ExperimentOptions options;      // model, mode, batch, seq, dtype, the plan (data filled per system)
    bool data_auto = false;         // parallel.data: auto = devices / (tensor x pipeline)
    int64_t batch_per_replica = 0;  // > 0: global batch = this x data-parallel degree
    int64_t microbatch_size = 0;    // > 0: microbatches = batch / (data x this)
    std::optional<double> latency_target_s;  // largest batch (powers of two up to max_batch) within it
    int64_t max_batch = 1024;
    std::optional<double> train_samples;  // training: samples to train, for the time to train
    std::vector<std::string> systems;     // system names it runs on; empty: all
    cfg::SourceLoc loc;                   // where the workload is written
};

// A system's price (`system.price` in a system file), converted to US dollars per hour of the whole system.
struct SystemPrice {
    std::optional<double> usd_per_hour;  // rental price
    std::optional<double> purchase_usd;  // or a purchase price, amortised over lifetime_years
    double lifetime_years = 0;
    double usd_per_kwh = 0;  // electricity, charged on the energy the run uses
    std::string source;
};
// The rule: usd_per_hour when given, else purchase_usd / (lifetime_years x 8766 h) (straight-line
// amortisation over a Julian year of 8766 h); nullopt when neither is given.
std::optional<double> cost_per_hour_usd(const SystemPrice& p);
// Cost of one million samples at `samples_per_s` with `energy_per_sample_j` (whole system):
// 1e6 / samples_per_s / 3600 x cost_per_hour + 1e6 x energy_per_sample_j / 3.6e6 x usd_per_kwh.
std::optional<double> cost_per_million_samples_usd(const SystemPrice& p, double samples_per_s,
                                                   double energy_per_sample_j);
// Reads `price` from a system's resolved document (system.price); nullopt when the system has none.
std::optional<SystemPrice> system_price(const arch::SystemSpec& system);

struct CompareSystem {
    std::string name;  // the label: `name` in the file, else the preset name or the file's system name
    std::string path;  // resolved system or device file
    cfg::SourceLoc loc;
    std::shared_ptr<const arch::SystemSpec> spec;  // loaded once, by load_compare
    std::optional<SystemPrice> price;
};

struct CompareStudy {
    std::string file;
    std::string name;
    std::string description;
    std::vector<CompareWorkload> workloads;
    std::vector<CompareSystem> systems;
    // The (workload, system) pairs, in run order.
    std::vector<std::pair<std::size_t, std::size_t>> pairs() const;
};

std::string default_compare_path();
CompareStudy load_compare(const std::string& path);

struct CompareRow {
    std::string workload, system, model, mode, dtype, device;
    std::string status = "ok";  // ok | error | not_modelled
    std::string error;          // the user error's message (status error), or why not modelled
    int64_t devices = 1;
    int64_t batch = 0;         // samples per step (the chosen batch under a latency target), per replica
    int64_t replicas = 1;      // independent one-device copies (no parallel plan on N devices)
    double latency_s = 0;      // one batch (training: one step)
    double samples_per_s = 0;  // whole system
    double energy_per_sample_j = 0;  // whole system's energy / samples
    double average_power_w = 0;      // = energy_per_sample_j x samples_per_s
    double system_tdp_w = 0;         // the summed TDP of the devices that run; 0 = unknown
    double samples_per_s_per_w = 0;  // throughput / average power
    std::optional<double> usd_per_million_samples;
    std::optional<double> time_to_train_s;
    std::optional<double> latency_target_s;
    // Time split of one device's run (seconds, summed over layers): compute, memory, communication
    // (exposed), overhead; for parallel runs from ParallelSummary: the critical rank's busy time split as
    // rank 0's layers split theirs, its exposed communication, and its pipeline bubble as overhead.
    double compute_s = 0, memory_s = 0, communication_s = 0, overhead_s = 0;
    double flops_per_sample = 0, bytes_per_sample = 0;   // one device's main-memory traffic
    double peak_flops_per_s = 0, mem_bandwidth_Bps = 0;  // one device, the run's data type
    int64_t run_id = 0;                                  // in the database, 0 without one
};

struct CompareOptions {
    db::ResultsDb* db = nullptr;
    // Called before each pair with (pairs done, total, workload, system).
    std::function<void(std::size_t, std::size_t, const std::string&, const std::string&)> progress;
};

struct CompareOutcome {
    std::vector<CompareRow> rows;
    int64_t compare_id = 0;  // the rows' id in the `comparisons` table, 0 without a database
};

CompareOutcome run_compare(const CompareStudy& study, const CompareOptions& options = {});

// The rows as database rows (for ResultsDb::record_comparison).
std::vector<db::ComparisonRow> to_comparison_rows(const std::vector<CompareRow>& rows);

}  // namespace mlsim::exp
