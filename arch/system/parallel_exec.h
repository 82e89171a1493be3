#pragma once
// The execution engine of parallel plans (issue 13 §2): every rank of a ParallelLowering
// (workloads/parallel.h) runs its program on the device model of its device, every communication runs on
// one FlowNetwork (arch/net/impl/flow_network.h) for the whole system, in the event engine (sim/).
//
// Contract:
// - Placement: rank i runs on system device i (SystemSpec::devices order; Megatron's rank order then puts
//   tensor-parallel ranks on adjacent devices of one node). The system must have at least as many devices
//   as the plan has ranks (extra devices idle and are not counted).
// - Compute: each distinct program (the compute ops of its forward, backward and step sections, in order)
//   runs once per device type on arch::make_device_model as one model whose edges are the tasks'
//   compute-to-compute dependencies (matched by shape), so fusion and on-chip residency act within a
//   section as in a single-device run; every task then takes its op's LayerResult time and energy. A
//   plan on one device thus runs exactly the ops, in the order, of the single-device training lowering.
// - Streams, per rank: one compute stream runs the compute tasks in program order (schedule items in
//   order, then the step section), each when its dependencies are done; communication runs on its own
//   streams, one FIFO per (axis, direction): a comm task starts when its dependencies are done on its
//   rank and the previous task of its stream has ended. A collective starts when every member of its
//   group has started it (each member's n-th task on a group is the group's n-th collective, and must be
//   the same collective: NCCL needs every member to issue a communicator's calls in one order; a mismatch
//   is a broken invariant), then takes the network's time. A receive is posted when the compute stream
//   reaches its section (it has finished every compute task before it: Megatron's synchronous p2p in its
//   schedules); a transfer starts when both its send has started and its receive is posted. Sends never block
//   the compute stream (an isend on a communication stream). Communication overlaps compute wherever the
//   dependencies allow it: DDP buckets during backward, pipeline sends, ZeRO-3 parameter gathers (each
//   section's gathers start when the section starts, one after the other on the data stream: an unbounded
//   prefetch whose buffers the memory account does not hold).
// - Gradient accumulation: tasks marked last_microbatch_only run in the last backward item of the
//   schedule only; step tasks wait for their after_backward tasks of that item.
// - Accounting per rank: compute_s = the sum of its compute tasks' times; while its compute stream waits
//   for a dependency, the wait goes to the dependency that ended last: until that communication started,
//   to the bubble (a pipeline receive whose neighbour stage had not produced it, or a collective whose
//   other members had not reached it: they were behind in the pipeline or in their own waits), from its
//   start to exposed communication of that task's purpose; after its last compute task, the wait for its last
//   communication likewise (bubble until it started, then exposed). So compute + exposed + bubble = the
//   rank's end. comm_s = the time its communication tasks ran (start to end, summed, overlapping ones counted
//   each). The step time is the latest rank's end; that rank (the lowest on a tie) is the critical rank of
//   the summary.
// - Energy: device = every rank's compute tasks' energies plus the device's static power over the rest of
//   the step (idle in bubbles and waits, and after its end); links = bytes each link carried x its
//   energy per byte (switch energies per byte as well).
// - Symmetry (ExecOptions::symmetry): with `stage` (automatic when it applies) only one rank per pipeline
//   stage is simulated (d = 0, t = 0), standing for every rank of its stage: they run the same program
//   and, on a symmetric system, see the same times. Its collectives go to the network once for its own
//   group and once for each other distinct group of its stage (the mirrors, issued at the same start),
//   and the task ends when the last of them ends; its sends likewise for every rank of the stage. Mirrors
//   of tensor-parallel groups are not issued when every tensor-parallel collective stayed on links inside
//   one node that no other traffic touched and the nodes have identical devices and links: then each
//   node's copy is the same call on an isomorphic idle part of the network, and its link bytes are
//   counted once per group. It applies when there are no per-rank programs, E = 1 and D·T > 1, the nodes
//   are alike, and every stage's ranks hold one device type. The result states whether every mirror ended
//   within 1 ns of the representative (exact) or gives the largest spread (ECMP collisions between
//   replicas' flows break the symmetry: the step then follows the slowest copy).
// - Memo (ExecOptions::memoize): a network call is a pure function of its request (collective: kind,
//   algorithm, protocol, bytes, counts and the exact group; transfer: source, destination, bytes) and of
//   when the link directions it touches were last busy (FCFS between calls; routes are fixed per pair).
//   The engine keeps, per link direction, until when any call used it (a call holds every direction it
//   sent on from its start to its end: the network's own record, when the last byte was sent, is never
//   later) and which request used it (its owner, or `shared` once two different requests did). A call
//   whose directions were all idle at its start is remembered with its duration, links and bytes. A later
//   identical call replays it without simulating when every remembered direction is idle at its start
//   and owned by that request alone: a TP group's all-reduces on its node's private NVLink ports (4 per
//   layer and micro-batch), a pipeline pair's sends on a path no other traffic takes. The network never
//   learns of a replayed call, so the run is checked: when a simulated call sent on a direction during a
//   replayed call's span, the run is redone with those directions shared from the start (at most three
//   times, then without the memo); replays thus never change a result. The footprint is the chosen
//   algorithm's links: with the automatic choice, a candidate the first call rejected could have been
//   slowed by traffic on other links (on an NVSwitch node every candidate uses the same GPU-switch
//   ports). Tests: equal to the unmemoized run, call for call.
// - Limit: calls of different groups that overlap in time on a link share it first come, first served
//   (flow_network.h), where NCCL's communicators run concurrently on their own channels and share the
//   link's bandwidth: a small call issued just after a large one on the same port waits for all of it.
//   With the lowering's placement of the embedding all-reduce (after the whole backward) and the
//   collectives' order, tests find no plan that doubling link bandwidth slows (test_parallel_exec.cpp).
// - Deterministic: a pure function of (system, lowering, options).
#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "arch/device_model.h"
#include "arch/net/impl/flow_network.h"
#include "arch/system/system_spec.h"
#include "workloads/parallel.h"

namespace mlsim::arch {

enum class ExecSymmetry { automatic, off, stage };

struct ExecOptions {
    net::NetworkOptions network;  // per-vertex reduction rates and the rest (the caller fills them)
    net::CollectiveAlgorithm algorithm = net::CollectiveAlgorithm::automatic;
    net::Protocol protocol = net::Protocol::automatic;
    ExecSymmetry symmetry = ExecSymmetry::automatic;
    // Reuse a network call's result for a repeat of the same call on idle links (see the contract's
    // Memo rule); false = every call goes to the network.
    bool memoize = true;
};

struct RankExec {
    int64_t rank = 0, stage = 0;
    double compute_s = 0, comm_s = 0, exposed_comm_s = 0, bubble_s = 0, end_s = 0;
    double energy_j = 0;  // device energy over the step (compute + static while idle)
    double flops = 0;     // FLOPs its compute tasks ran
    wl::StageMemory memory;
};

// One collective or point-to-point transfer as the network timed it (the representative's, under
// symmetry; `copies` counts it with its mirrors).
struct ExecComm {
    std::string purpose, kind, algorithm, protocol;  // kind: "all_reduce", ..., "send_recv" for p2p
    int64_t ranks = 0, bytes = 0, copies = 1;
    double start_s = 0, end_s = 0;
};

struct ExecResult {
    double step_time_s = 0;
    int64_t critical_rank = 0;
    std::vector<RankExec> ranks;  // every rank of the plan, in rank order
    std::vector<LayerResult>
        rank0_layers;             // rank 0's compute tasks as executed (start_s / end_s on the step)
    std::vector<ExecComm> comms;  // in start order
    std::map<std::string, double> exposed_by_purpose;  // the critical rank's exposed communication
    double device_energy_j = 0, link_energy_j = 0;
    double flops = 0;              // all ranks' compute FLOPs (TP duplication included)
    std::string symmetry = "off";  // "off" or "stage"
    bool symmetry_exact = true;
    double symmetry_spread_s = 0;  // the largest end-time difference between a task and its mirrors
    int64_t simulated_ranks = 0;
    int64_t device_model_runs = 0;  // distinct programs timed
    int64_t network_calls = 0;      // calls the network simulated
    int64_t memo_hits = 0;          // calls answered from the memo instead (see the contract)
    bool memoized = false;          // the result came from a run with the memo on (its check passed)
};

ExecResult run_parallel(const SystemSpec& system, const wl::ParallelLowering& lowering,
                        const ExecOptions& options = {});

}  // namespace mlsim::arch
