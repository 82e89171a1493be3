#pragma once
// An experiment: a system, a workload and the options that shape it, resolved into one config tree whose
// YAML text (and its hash) identifies the run in the results database.
// Contract: run_experiment() never writes partial results; a UserError (bad config, unknown model, a model
// that does not fit) propagates to the caller before anything is recorded.
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "arch/device_model.h"
#include "arch/device_spec.h"
#include "db/results_db.h"
#include "sim/config/node.h"
#include "workloads/model.h"

namespace mlsim::cli {

struct ExperimentOptions {
    std::string system;  // path to a system or device file, or a device preset name
    std::string model;   // zoo name or a .yaml / .csv file
    int64_t batch = 1;
    int64_t seq = 0;
    int64_t image = 0;
    std::string dtype = "fp32";
    std::string mode = "inference";  // inference | training
    std::string optimizer = "adam";
    bool checkpointing = false;
};

struct ExperimentResult {
    arch::SystemSpec system;
    wl::Model model;
    std::vector<arch::LayerResult> layers;
    std::string resolved_yaml;
    db::RunInfo info;
    double total_time_s = 0;
    double total_energy_j = 0;
};

// The directory holding configs/ presets (MLSIM_CONFIGS env var, else the source tree's configs/).
std::string configs_dir();
// Resolves a --system argument: an existing file, or a preset name in configs/devices or configs/systems.
std::string resolve_system_path(const std::string& arg);

ExperimentResult run_experiment(const ExperimentOptions& opt);

// Per-layer results as results-database rows.
std::vector<db::LayerRow> to_rows(const std::vector<arch::LayerResult>& layers);

}  // namespace mlsim::cli
