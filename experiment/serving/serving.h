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
    int64_t tp = 1;                // tensor-parallel ranks per stage
    int64_t pp = 1;  // pipeline stages (experiment/serving/pipeline.h); the group is the first tp x pp
                     // devices of the system's default type
    bool ring_collectives = false;  // TP collectives by ring_comm() instead of the network model
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
// scheduler. tp = pp = 1: one device (a system of several serves one replica on one of them). Otherwise
// the first tp x pp devices of the default type form pp stages of tp ranks each; the TP collectives and
// the stage-to-stage sends are timed by the system's network model (network_comm: FlowNetwork, NCCL's
// automatic algorithm and protocol choice, each distinct size simulated once on the idle network).
// A system without a network cannot run tp or pp > 1 (a UserError).
// Ring collectives over `ranks` (topology device vertices, in ring order), alpha-beta form: an
// all-reduce of S bytes is 2(n-1) steps and an all-gather n-1 steps, each moving S/n bytes over every
// ring edge at once, a step taking the slowest edge's route latency + S/n / its bottleneck bandwidth
// (R. Thakur, R. Rabenseifner, W. Gropp, "Optimization of Collective Communication Operations in
// MPICH", IJHPCA 2005; P. Patarasuk, X. Yuan, "Bandwidth optimal all-reduce algorithms", JPDC 2009).
// Contention between ring edges sharing a link is not modelled. The stated fallback (--collectives ring)
// and the closed-form cross-check of network_comm; serving uses network_comm.
GroupComm ring_comm(const arch::net::Topology& topo, const std::vector<arch::net::VertexId>& ranks);
// The collectives of `ranks` on the system's network model (arch/net/impl/flow_network.h, reductions at
// the device's rate for `dtype`), each distinct size simulated once on the idle network and memoized.
GroupComm network_comm(const arch::SystemSpec& system, const std::vector<arch::net::VertexId>& ranks,
                       const std::string& dtype);
ServeRun run_serving(const ServeOptions& opt);

// The rows for the results database's serving tables.
db::ServingRows to_serving_rows(const ServeRun& run);

}  // namespace mlsim::serving
