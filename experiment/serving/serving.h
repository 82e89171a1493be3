#pragma once
// LLM serving, part 3: one serving run from its options (system, model, requests, scheduler), as the
// `mlsim serve` command and the tests run it, and its rows for the results database.
#include <string>
#include <vector>

#include "arch/system/system_spec.h"
#include "db/results_db.h"
#include "experiment/experiment.h"
#include "experiment/serving/scheduler.h"

namespace mlsim::serving {

struct ServeOptions {
    std::string system = "a100";
    std::string model = "llama2-7b";
    std::string dtype = "fp16";
    RequestSource requests;
    SchedulerOptions scheduler;  // max_batched_tokens <= 0: the model's context window (vLLM's default)
    int64_t kv_bucket = 16;
    double memory_utilization = 0.9;
    double kv_capacity_bytes = 0;  // > 0: instead of the memory budget
    std::vector<exp::ConfigOverride> device_overrides;
};

struct ServeRun {
    arch::SystemSpec system;
    DecoderShape shape;
    ServingResult result;
    double kv_capacity_bytes = 0, weight_bytes = 0, workspace_bytes = 0;
    std::string resolved_yaml;  // identifies the run (experiment.serving options + the system)
    db::RunInfo info;
};

// Checks the options (UserErrors located at the option), builds the single-device IterationModel and
// runs the scheduler. A system of several devices serves on one of them (one replica; TP/PP plans are
// not modelled yet) and says so in the resolved config.
ServeRun run_serving(const ServeOptions& opt);

// The rows for the results database's serving tables.
db::ServingRows to_serving_rows(const ServeRun& run);

}  // namespace mlsim::serving
