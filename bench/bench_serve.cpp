// Speed of LLM serving (experiment/serving/). A benchmark, not a test: see bench/README.md.
// 10,000 requests (prompt 512, output 128 tokens, seed 1) through `mlsim serve`'s scheduler, each
// iteration timed on the GPU model (wave fidelity) from an empty memo:
//   Llama-2-7B on one A100 at `rate` req/s and all at t = 0;
//   Llama-2-70B on an 8-GPU DGX A100 node at `rate` req/s: tensor parallel 8, and tensor parallel 4 x
//   pipeline parallel 2 (collectives and stage sends on the network model, arch/net/impl/flow_network.h).
// Prints the wall time of each run, the iterations and the distinct op shapes simulated. Target: < 10 s.
// usage: bench_serve [rate=8] [requests=10000]
#include <fmt/format.h>

#include <chrono>
#include <cstdlib>
#include <string>

#include "experiment/serving/serving.h"

int main(int argc, char** argv) {
    setenv("MLSIM_CONFIGS", MLSIM_BENCH_CONFIGS, 0);
    const double rate = argc > 1 ? std::atof(argv[1]) : 8.0;
    const long long count = argc > 2 ? std::atoll(argv[2]) : 10000;
    struct Case {
        const char* system;
        const char* model;
        int64_t tp, pp;
        double rate;
    };
    for (const Case& c :
         {Case{"a100", "llama2-7b", 1, 1, rate}, Case{"a100", "llama2-7b", 1, 1, 0.0},
          Case{"dgx-a100-node", "llama2-70b", 8, 1, rate}, Case{"dgx-a100-node", "llama2-70b", 4, 2, rate}}) {
        mlsim::serving::ServeOptions o;
        o.system = c.system;
        o.model = c.model;
        o.tp = c.tp;
        o.pp = c.pp;
        o.requests.rate = c.rate;
        o.requests.count = count;
        o.requests.prompt_tokens = {512};
        o.requests.output_tokens = {128};
        const auto t0 = std::chrono::steady_clock::now();
        const mlsim::serving::ServeRun run = mlsim::serving::run_serving(o);
        const double wall = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
        const auto& r = run.result;
        fmt::print(
            "serve {} on {} (tp {}, pp {}), {} requests at rate {} req/s: {:.3f} s wall, {} iterations, {} "
            "op "
            "shapes simulated, {:.0f} output tok/s simulated, target < 10 s: {}\n",
            c.model, c.system, c.tp, c.pp, r.requests.size(), c.rate, wall, r.iterations, r.simulated_shapes,
            r.tokens_per_s, wall < 10 ? "PASS" : "FAIL");
    }
    return 0;
}
