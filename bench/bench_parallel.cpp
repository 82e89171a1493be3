// Parallel-engine benchmark (issue 13 §2): one training step of GPT-3 175B (zoo gpt3-175b-prefill,
// sequence 2048, bf16, Adam) on the 1,024 GPUs of configs/systems/superpod-h100-1024.yaml with
// T = 8, P = 16, D = 8 and M micro-batches of one sample (batch D x M), the whole experiment as
// `mlsim run` does it: lowering, device-model timing of each stage's program and the parallel engine
// (arch/system/parallel_exec.h). Prints the median, minimum and maximum wall time of several runs, the
// median CPU time, the step time and the engine's network calls and memo replays. Target: < 5 s wall.
// A benchmark, not a test: see bench/README.md.
//
//   bench_parallel [repetitions (default 5)] [micro-batches ... (default 16 64)]
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <ctime>
#include <string>
#include <vector>

#include "experiment/experiment.h"
#include "experiment/run_options.h"

using namespace mlsim;

namespace {

double median(std::vector<double> v) {
    std::sort(v.begin(), v.end());
    return v.empty() ? 0 : v[v.size() / 2];
}

}  // namespace

int main(int argc, char** argv) {
    const int repeats = argc > 1 ? std::max(1, std::atoi(argv[1])) : 5;
    std::vector<int64_t> ms;
    for (int i = 2; i < argc; ++i) ms.push_back(std::atoll(argv[i]));
    if (ms.empty()) ms = {16, 64};
    for (const int64_t m : ms) {
        exp::ExperimentOptions o;
        o.system = std::string(MLSIM_BENCH_CONFIGS) + "/systems/superpod-h100-1024.yaml";
        o.model = "gpt3-175b-prefill";
        o.mode = "training";
        o.dtype = "bf16";
        o.data_parallel = 8;
        o.tensor_parallel = 8;
        o.pipeline_parallel = 16;
        o.microbatches = m;
        o.batch = 8 * m;
        std::vector<double> walls, cpus;
        exp::ExperimentResult r;
        for (int i = 0; i < repeats; ++i) {
            const auto t0 = std::chrono::steady_clock::now();
            const std::clock_t c0 = std::clock();
            r = exp::run_experiment(o);
            walls.push_back(std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count());
            cpus.push_back(static_cast<double>(std::clock() - c0) / CLOCKS_PER_SEC);
        }
        const arch::ExecResult& x = *r.parallel_exec;
        std::printf(
            "gpt3-175b T=8 P=16 D=8 M=%lld batch %lld: wall median %.2f s (min %.2f, max %.2f, %d runs), "
            "cpu median %.2f s; step %.3f s, %lld network calls, %lld replayed, %lld ranks simulated "
            "(target < 5 s wall)\n",
            static_cast<long long>(m), static_cast<long long>(o.batch), median(walls),
            *std::min_element(walls.begin(), walls.end()), *std::max_element(walls.begin(), walls.end()),
            repeats, median(cpus), x.step_time_s, static_cast<long long>(x.network_calls),
            static_cast<long long>(x.memo_hits), static_cast<long long>(x.simulated_ranks));
        std::fflush(stdout);
    }
    return 0;
}
