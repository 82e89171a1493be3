// Speed of LLM serving (experiment/serving/). A benchmark, not a test: see bench/README.md.
// 10,000 requests (prompt 512, output 128 tokens, Poisson at `rate` req/s, seed 1) of Llama-2-7B on one
// A100 (the GPU model, wave fidelity) with continuous batching; prints the wall time of the whole run
// (iteration-model memo filled from empty), the iterations simulated and the distinct op shapes the
// device model ran. The target is under 10 s (issue 14).
// usage: bench_serve [rate=8] [requests=10000]
#include <fmt/format.h>

#include <chrono>
#include <cstdlib>
#include <string>

#include "experiment/serving/serving.h"

int main(int argc, char** argv) {
    setenv("MLSIM_CONFIGS", MLSIM_BENCH_CONFIGS, 0);
    mlsim::serving::ServeOptions o;
    o.system = "a100";
    o.model = "llama2-7b";
    o.requests.rate = argc > 1 ? std::atof(argv[1]) : 8.0;
    o.requests.count = argc > 2 ? std::atoll(argv[2]) : 10000;
    o.requests.prompt_tokens = {512};
    o.requests.output_tokens = {128};
    for (const double rate : {o.requests.rate, 0.0}) {
        o.requests.rate = rate;
        const auto t0 = std::chrono::steady_clock::now();
        const mlsim::serving::ServeRun run = mlsim::serving::run_serving(o);
        const double wall = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
        const auto& r = run.result;
        fmt::print(
            "serve llama2-7b on a100, {} requests at rate {} req/s: {:.3f} s wall, {} iterations, {} "
            "op shapes simulated, {:.0f} output tok/s simulated, target < 10 s: {}\n",
            r.requests.size(), rate, wall, r.iterations, r.simulated_shapes, r.tokens_per_s,
            wall < 10 ? "PASS" : "FAIL");
    }
    return 0;
}
