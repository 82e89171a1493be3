#pragma once
// LLM serving, part 3: one serving run from its options (system, model, requests, scheduler), as the
// `mlsim serve` command and the tests run it, and its rows for the results database.
#include <string>
#include <vector>

#include "arch/net/topology.h"
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
    int64_t tp = 1;                // tensor-parallel ranks: the first tp devices of the system's default type
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

// Checks the options (UserErrors located at the option), builds the IterationModel and runs the
// scheduler. tp = 1: one device (a system of several serves one replica on one of them). tp > 1: the
// first tp devices of the default type form a tensor-parallel group; its collectives are timed by
// ring_comm() over the system's topology.
// Ring collectives over `ranks` (topology device vertices, in ring order), alpha-beta form: an
// all-reduce of S bytes is 2(n-1) steps and an all-gather n-1 steps, each moving S/n bytes over every
// ring edge at once, a step taking the slowest edge's route latency + S/n / its bottleneck bandwidth
// (R. Thakur, R. Rabenseifner, W. Gropp, "Optimization of Collective Communication Operations in
// MPICH", IJHPCA 2005; P. Patarasuk, X. Yuan, "Bandwidth optimal all-reduce algorithms", JPDC 2009).
// Contention between ring edges sharing a link is not modelled; the network model (arch/net/INetwork)
// replaces this when it lands.
GroupComm ring_comm(const arch::net::Topology& topo, const std::vector<arch::net::VertexId>& ranks);
ServeRun run_serving(const ServeOptions& opt);

// The rows for the results database's serving tables.
db::ServingRows to_serving_rows(const ServeRun& run);

}  // namespace mlsim::serving
