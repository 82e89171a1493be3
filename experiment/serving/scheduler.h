#pragma once
// LLM serving, part 2: requests and the iteration-level scheduler.
//
// Requests: a fixed list of prompt / output lengths (request i takes entry i mod n of each list), a CSV
// trace (arrival_s, prompt_tokens, output_tokens), and arrivals all at 0 (rate 0: an offline batch) or
// as a Poisson process at `rate` requests/s from a seed. Random numbers: std::mt19937_64 (its output is
// specified by the C++ standard), turned into a uniform u in [0, 1) from its top 53 bits and into an
// exponential inter-arrival time -ln(1 - u) / rate by the inverse CDF written here: the standard
// library's distributions are implementation-defined, this is identical on every platform.
//
// Scheduler: continuous (iteration-level) batching as in vLLM (W. Kwon et al., "Efficient Memory
// Management for Large Language Model Serving with PagedAttention", SOSP 2023; Orca, Yu et al. OSDI 2022):
//   - a request joins the batch as soon as it is admitted and leaves it the iteration it finishes;
//   - the KV cache is paged: each sequence holds ceil(tokens / block) blocks of `block` tokens (16 by
//     default, vLLM's block size); a request is admitted only when its prompt's blocks are free (FCFS: the
//     queue head blocks the others) and while the batch has fewer than max_batch sequences;
//   - without chunked prefill (vLLM's default scheduler before v1): an iteration is either a prefill
//     of as many waiting prompts as fit max_batched_tokens (prefills take priority), or one decode step of
//     every running sequence;
//   - with chunked prefill (S. Agrawal et al., "SARATHI: Efficient LLM Inference by Piggybacking Decodes
//     with Chunked Prefills", arXiv:2308.16369, 2023; vLLM's enable_chunked_prefill): every iteration
//     decodes all running sequences and fills the remaining token budget (the chunk size) with prompt
//     chunks, the oldest partially prefilled prompt first;
//   - preemption: when a decode step needs a block and none is free, the youngest running request (the
//     latest arrival) is preempted by recompute (vLLM's default mode): its blocks are freed and it goes
//     back to the head of the queue; on readmission its prompt and the tokens it had generated are
//     prefilled again.
// Pipeline parallelism (IterationModel::stages() = P > 1): P such schedulers (vLLM's virtual engines),
// each with 1/P of the blocks; their micro-batches flow through the stages (the schedule is stated in
// experiment/serving/pipeline.h). P = 1 is the scheduler above, unchanged.
// A request's first token comes at the end of the iteration that completes its prompt's prefill; each
// later iteration that decodes it adds one token. TTFT = first_token − arrival; TPOT = (finish −
// first_token) / (output_tokens − 1) for requests with more than one output token.
#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "experiment/serving/decoder.h"

namespace mlsim::serving {

struct Request {
    int64_t id = 0;
    double arrival_s = 0;
    int64_t prompt_tokens = 0, output_tokens = 0;
    int line = 0;  // the trace line it came from; 0 when generated
};

struct RequestSource {
    int64_t count = 100;
    double rate = 0;  // requests/s; 0: all arrive at t = 0
    uint64_t seed = 1;
    std::vector<int64_t> prompt_tokens{512}, output_tokens{128};
    std::string trace;  // CSV file; when set, replaces the above
};
// A UserError (file:line, column) for a malformed trace: missing header, non-numeric or negative
// fields, non-positive token counts, arrivals out of order.
std::vector<Request> make_requests(const RequestSource& src);
// The uniform and exponential draws used above (exposed for tests).
double uniform01(uint64_t bits);
double exponential(uint64_t bits, double rate);

struct SchedulerOptions {
    int64_t max_batch = 256;            // sequences per iteration (vLLM max_num_seqs)
    int64_t max_batched_tokens = 4096;  // tokens per iteration without chunking (vLLM max_num_batched_tokens)
    int64_t chunked_prefill = 0;        // > 0: chunked prefill with this token budget per iteration
    int64_t block = 16;                 // KV-cache block, tokens
    int64_t occupancy_samples = 1000;   // at most this many KV-occupancy samples are kept
};

struct RequestResult {
    Request req;
    double first_token_s = 0, finish_s = 0;
    int64_t preemptions = 0;
};

struct OccupancySample {
    double time_s = 0;
    int64_t used_blocks = 0, running = 0, waiting = 0;
};

struct Percentiles {
    double mean = 0, p50 = 0, p90 = 0, p99 = 0;
    std::size_t count = 0;  // values taken; 0: none (the figures are not 0 s, they do not exist)
};
// Nearest-rank percentiles (the smallest value with at least p % of values at or below it).
Percentiles percentiles(std::vector<double> v);

struct ServingResult {
    std::vector<RequestResult> requests;
    std::vector<OccupancySample> occupancy;
    int64_t total_blocks = 0;
    int64_t iterations = 0, max_batch_reached = 0, preemptions = 0;
    double makespan_s = 0;             // first arrival to last finish
    double busy_s = 0;                 // time spent in iterations (pipeline: the stages' mean)
    std::vector<double> stage_busy_s;  // per pipeline stage, time spent computing
    double energy_j = 0;               // iterations' device energy + static power over idle time
    int64_t output_tokens = 0, prompt_tokens = 0;
    Percentiles ttft_s, tpot_s, e2e_s;
    double tokens_per_s = 0;    // output tokens / makespan
    double requests_per_s = 0;  // requests / makespan
    double energy_per_token_j = 0;
    double mean_kv_occupancy = 0,
           max_kv_occupancy = 0;  // fraction of blocks used, over iterations (time-weighted)
    int64_t simulated_shapes = 0;
};

// Runs the requests (sorted by arrival, ties by id) through the scheduler on `model`. A request whose
// prompt + output cannot fit the whole KV cache, or exceeds max_batched_tokens without chunking, is a
// UserError naming it.
ServingResult serve(IterationModel& model, std::vector<Request> requests, const SchedulerOptions& opt);

}  // namespace mlsim::serving
