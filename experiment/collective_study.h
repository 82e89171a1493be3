#pragma once
// Collective studies (issue 12): a size sweep of one collective on a system's network, in the form of
// nccl-tests (sizes from min to max, each the previous times a factor; per size time, algbw and busbw).
//
// Contract:
// - The system is loaded as `mlsim run` loads it (a preset name or a file); it must have a network (links
//   or switches) joining at least two devices, else a UserError naming the system.
// - The devices of the first device's type take part (the GPUs of a server whose host CPU is a device too),
//   in the system's device order; the root of rooted kinds is rank 0.
// - Sizes: min, min * step, ... while <= max (bytes, whole numbers, rounded down); step > 1.
// - Calls run one after the other on one network (each starts when the previous ended), so that the link
//   table covers the whole study.
// - Reductions cost each device reduction_Bps(device) (network_options_for): each reduced byte of payload
//   reads the local and the received element and writes the result in main memory (3 bytes of traffic, est.:
//   NCCL's reduction kernels stream both inputs and the output through memory), and one add per element at
//   the device's peak for the element type, whichever is slower.
// - With a database path, one `runs` row (the resolved system and the study's options as config) plus one
//   `collectives` row per size and `link_utilization` rows for the busiest link directions, in one
//   transaction; both carry the link energy (CollectiveResult::energy_j, FlowNetwork::link_energy_j).
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "arch/net/impl/flow_network.h"
#include "arch/system/system_spec.h"
#include "db/results_db.h"

namespace mlsim::exp {

struct CollectiveStudyOptions {
    std::string system;  // preset name or path
    arch::net::CollectiveKind kind = arch::net::CollectiveKind::all_reduce;
    arch::net::CollectiveAlgorithm algorithm = arch::net::CollectiveAlgorithm::automatic;
    arch::net::Protocol protocol = arch::net::Protocol::automatic;
    arch::net::Fidelity fidelity = arch::net::Fidelity::flow;
    double packet_bytes = 4096;
    int64_t min_bytes = 8, max_bytes = int64_t{8} << 30;
    double step = 2;
    std::string dtype = "fp32";  // element type of the buffers (nccl-tests' default: float)
    std::string db_path;         // empty: no database
    std::size_t busiest_links = 16;
};

struct CollectivePoint {
    int64_t bytes = 0, count = 0;
    arch::net::CollectiveResult result;
    double time_s = 0, algbw_GBps = 0, busbw_GBps = 0;
};

struct CollectiveStudyResult {
    arch::SystemSpec system;
    std::vector<CollectivePoint> points;
    std::vector<db::LinkUtilRow> busiest;  // busiest link directions, busiest first
    int64_t ranks = 0;
    int64_t run_id = 0;  // when written to a database
    double wall_s = 0;
};

// Bytes of one element of `dtype` (fp32 4, fp16/bf16 2, fp8/int8 1, fp64 8); UserError for others.
int64_t element_bytes(const std::string& dtype);
// Payload bytes a device reduces per second (see the contract); 0 when its spec gives nothing to go on.
double reduction_Bps(const arch::DeviceSpec& device, const std::string& dtype);
arch::net::NetworkOptions network_options_for(const arch::SystemSpec& system, const std::string& dtype);

CollectiveStudyResult run_collective_study(const CollectiveStudyOptions& opt);

}  // namespace mlsim::exp
