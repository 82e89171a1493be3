// mlsim serve: an LLM serving run (experiment/serving/): requests through a continuous-batching
// scheduler on a system's device model; prints TTFT, TPOT, throughput and energy per token, and writes
// the requests and summary to a results database with --db.
#include <fmt/format.h>

#include <algorithm>
#include <boost/program_options.hpp>
#include <charconv>
#include <chrono>
#include <cmath>
#include <iostream>

#include "cli/commands.h"
#include "cli/parse_args.h"
#include "cli/table_format.h"
#include "db/results_db.h"
#include "experiment/serving/serving.h"
#include "sim/config/error.h"
#include "sim/config/units.h"

namespace mlsim::cli {

namespace po = boost::program_options;

namespace {

const cfg::SourceLoc k_cl{"<command line>", 0, 0};

int64_t to_int(const std::string& text, const char* key) {
    int64_t v = 0;
    const auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), v);
    if (text.empty() || ec != std::errc{} || end != text.data() + text.size())
        cfg::fail(k_cl, key, fmt::format("'{}' is not a whole number", text));
    return v;
}

double to_real(const std::string& text, const char* key) {
    char* end = nullptr;
    const double v = std::strtod(text.c_str(), &end);
    if (text.empty() || end != text.c_str() + text.size() || !std::isfinite(v))
        cfg::fail(k_cl, key, fmt::format("'{}' is not a number", text));
    return v;
}

std::vector<int64_t> to_list(const std::string& text, const char* key) {
    std::vector<int64_t> out;
    size_t start = 0;
    while (true) {
        const size_t comma = text.find(',', start);
        out.push_back(
            to_int(text.substr(start, comma == std::string::npos ? std::string::npos : comma - start), key));
        if (comma == std::string::npos) break;
        start = comma + 1;
    }
    return out;
}

// Times and rates at a human scale (cli/table_format.h): a 0.7 ms latency is "700 µs", not "0.001 s".
std::string secs(double s) { return human(s, "s"); }
// A share in percent to three significant digits, however small: "0.00417 %", "12.5 %".
std::string percent(double share) {
    const double p = share * 100;
    if (!(p > 0) || p >= 99.95) return fmt::format("{:.0f} %", p);
    if (p >= 0.995) return fmt::format("{} %", fixed3(p));
    // Below 1 %: fixed-point with the decimals three significant digits take (at most 12).
    const int decimals = std::min(12, 2 - static_cast<int>(std::floor(std::log10(p))));
    return fmt::format("{:.{}f} %", p, decimals);
}

}  // namespace

int cmd_serve(const Args& args) {
    po::options_description desc("mlsim serve options");
    desc.add_options()("help,h", "show this help")  //
        ("system,s", po::value<std::string>()->default_value("a100"),
         "system or device file, or a preset")  //
        ("model,m", po::value<std::string>()->default_value("llama2-7b"),
         "decoder model: llama2-7b | llama2-13b | llama2-70b | llama3-8b | llama3-70b | gpt2 | gpt2-xl")  //
        ("dtype,t", po::value<std::string>()->default_value("fp16"),
         "weights, activations and KV cache type")  //
        ("rate", po::value<std::string>()->default_value("1"),
         "Poisson arrival rate, requests/s; 0: all at t = 0")                                               //
        ("requests", po::value<std::string>()->default_value("1000"), "number of requests")                 //
        ("seed", po::value<std::string>()->default_value("1"), "seed of the arrival process (mt19937_64)")  //
        ("prompt", po::value<std::string>()->default_value("512"),
         "prompt lengths, tokens: one or a comma list (request i takes entry i mod n)")  //
        ("output", po::value<std::string>()->default_value("128"),
         "output lengths, tokens: one or a comma list")  //
        ("trace", po::value<std::string>(),
         "CSV trace: header arrival_s,prompt_tokens,output_tokens (replaces "
         "--rate, --requests, --seed, --prompt, --output)")  //
        ("max-batch", po::value<std::string>()->default_value("256"),
         "sequences per iteration (vLLM max_num_seqs)")  //
        ("max-tokens", po::value<std::string>()->default_value("0"),
         "tokens per iteration without chunking (vLLM max_num_batched_tokens); 0: the model's context, at "
         "least 2048")  //
        ("chunked-prefill", po::value<std::string>()->default_value("0"),
         "chunked prefill with this token budget per iteration (Sarathi); 0: off")                     //
        ("block", po::value<std::string>()->default_value("16"), "KV-cache block, tokens (vLLM: 16)")  //
        ("kv-bucket", po::value<std::string>()->default_value("16"),
         "attention ops are simulated at KV lengths on multiples of this many tokens, a length between two "
         "interpolated (1: every length simulated)")  //
        ("mem-util", po::value<std::string>()->default_value("0.9"),
         "fraction of device memory for weights, workspace and KV cache (vLLM gpu_memory_utilization)")  //
        ("kv-capacity", po::value<std::string>(),
         "KV-cache bytes (e.g. 2GB) instead of the memory budget")  //
        ("tp", po::value<std::string>()->default_value("1"),
         "tensor-parallel ranks per pipeline stage (collectives on the system's network model)")  //
        ("pipeline-parallel", po::value<std::string>()->default_value("1"),
         "pipeline stages: layers split over P groups of --tp devices (micro-batches as vLLM's virtual "
         "engines)")  //
        ("collectives", po::value<std::string>()->default_value("network"),
         "network: TP collectives on the network model; ring: the closed-form alpha-beta ring")  //
        ("db", po::value<std::string>(), "results database to append the run to");
    auto vm = parse(args, desc);
    if (!vm) {
        std::cout
            << "usage: mlsim serve [--system a100] [--model llama2-7b] [--rate R] [--requests N] "
               "[options]\n\n"
               "Serves LLM requests with continuous batching (vLLM-style paged KV cache, preemption by\n"
               "recompute) on one device, or on --tp N devices of a networked system; prints TTFT, TPOT,\n"
               "throughput and energy.\n\n"
            << desc;
        return 0;
    }
    const auto text = [&](const char* k) { return (*vm)[k].as<std::string>(); };
    serving::ServeOptions o;
    o.system = text("system");
    o.model = text("model");
    o.dtype = text("dtype");
    o.requests.rate = to_real(text("rate"), "--rate");
    o.requests.count = to_int(text("requests"), "--requests");
    const int64_t seed = to_int(text("seed"), "--seed");
    if (seed < 0) cfg::fail(k_cl, "--seed", "must not be negative");
    o.requests.seed = static_cast<uint64_t>(seed);
    o.requests.prompt_tokens = to_list(text("prompt"), "--prompt");
    o.requests.output_tokens = to_list(text("output"), "--output");
    if (vm->count("trace")) {
        o.requests.trace = text("trace");
        // The trace gives the arrivals and lengths: a flag it replaces, given too, would be ignored silently.
        for (const char* k : {"rate", "requests", "seed", "prompt", "output"})
            if (!(*vm)[k].defaulted())
                cfg::fail(k_cl, fmt::format("--{}", k),
                          fmt::format("not with --trace, whose rows give every request's arrival and lengths "
                                      "(--{} would be ignored)",
                                      k));
    }
    o.scheduler.max_batch = to_int(text("max-batch"), "--max-batch");
    o.scheduler.max_batched_tokens = to_int(text("max-tokens"), "--max-tokens");
    if (o.scheduler.max_batched_tokens < 0) cfg::fail(k_cl, "--max-tokens", "must not be negative");
    o.scheduler.chunked_prefill = to_int(text("chunked-prefill"), "--chunked-prefill");
    o.scheduler.block = to_int(text("block"), "--block");
    o.kv_bucket = to_int(text("kv-bucket"), "--kv-bucket");
    o.memory_utilization = to_real(text("mem-util"), "--mem-util");
    o.tp = to_int(text("tp"), "--tp");
    o.pp = to_int(text("pipeline-parallel"), "--pipeline-parallel");
    if (text("collectives") != "network" && text("collectives") != "ring")
        cfg::fail(k_cl, "--collectives",
                  fmt::format("'{}' is neither network nor ring", text("collectives")));
    o.ring_collectives = text("collectives") == "ring";
    if (vm->count("kv-capacity")) {
        const cfg::Quantity q =
            cfg::parse_quantity(text("kv-capacity"), cfg::Dim::size, k_cl, "--kv-capacity");
        if (!(q.value > 0))
            cfg::fail(k_cl, "--kv-capacity",
                      fmt::format("'{}' is not a positive size (e.g. 2GB, 512MiB)", text("kv-capacity")));
        o.kv_capacity_bytes = q.value;
    }

    const auto t0 = std::chrono::steady_clock::now();
    const serving::ServeRun run = serving::run_serving(o);
    const double wall = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    const serving::ServingResult& r = run.result;
    if (run.system.rank_devices() > o.tp * o.pp)
        fmt::print(stderr, "note: {} has {} devices; this run serves one replica on {} of them (--tp {}{})\n",
                   run.system.name, run.system.rank_devices(), o.tp * o.pp, o.tp,
                   o.pp > 1 ? fmt::format(" --pipeline-parallel {}", o.pp) : "");
    fmt::print("{} on {}{} ({}, {}), {} requests{}:\n", run.shape.name,
               o.tp * o.pp > 1 ? fmt::format("{} x ", o.tp * o.pp) : "", run.system.device.name, o.dtype,
               run.system.device.model, r.requests.size(),
               o.requests.trace.empty()
                   ? fmt::format(" at {} req/s (seed {})", o.requests.rate, o.requests.seed)
                   : fmt::format(" from {}", o.requests.trace));
    fmt::print("  memory    per device: weights {}, workspace {}, KV cache {} = {} blocks of {} tokens\n",
               human(run.weight_bytes, "B"), human(run.workspace_bytes, "B"),
               human(run.kv_capacity_bytes, "B"), r.total_blocks, o.scheduler.block);
    fmt::print("  TTFT      mean {}  p50 {}  p90 {}  p99 {}\n", secs(r.ttft_s.mean), secs(r.ttft_s.p50),
               secs(r.ttft_s.p90), secs(r.ttft_s.p99));
    if (r.tpot_s.count == 0)
        fmt::print("  TPOT      none (no request generated a second token)\n");
    else
        fmt::print("  TPOT      mean {}  p50 {}  p90 {}  p99 {}\n", secs(r.tpot_s.mean), secs(r.tpot_s.p50),
                   secs(r.tpot_s.p90), secs(r.tpot_s.p99));
    fmt::print("  latency   mean {}  p99 {} (arrival to last token)\n", secs(r.e2e_s.mean),
               secs(r.e2e_s.p99));
    fmt::print("  throughput {} output tokens/s, {} requests/s over {}\n", human(r.tokens_per_s, "", false),
               human(r.requests_per_s, "", false), duration(r.makespan_s));
    fmt::print("  batch     max {} sequences, {} iterations, {} preemptions\n", r.max_batch_reached,
               r.iterations, r.preemptions);
    if (o.pp > 1) {
        std::string util;
        for (double b : r.stage_busy_s) {
            util += ' ';
            util += percent(r.makespan_s > 0 ? b / r.makespan_s : 0.0);
        }
        fmt::print("  pipeline  {} stages of {} devices, busy{}\n", o.pp, o.tp, util);
    }
    fmt::print("  KV cache  occupancy mean {}, max {}\n", percent(r.mean_kv_occupancy),
               percent(r.max_kv_occupancy));
    fmt::print("  energy    {} per output token ({}, average {})\n", human(r.energy_per_token_j, "J"),
               human(r.energy_j, "J"), human(r.makespan_s > 0 ? r.energy_j / r.makespan_s : 0.0, "W"));
    fmt::print("  simulated {} distinct op shapes in {} wall\n", r.simulated_shapes, secs(wall));
    if (vm->count("db")) {
        db::ResultsDb results(text("db"));
        const int64_t id = results.record_serving_run(run.info, serving::to_serving_rows(run), wall);
        fmt::print("  recorded  run {} in {}\n", id, text("db"));
    }
    return 0;
}

}  // namespace mlsim::cli
