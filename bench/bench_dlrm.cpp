// Speed of a sharded DLRM training step (issue 13: "DLRM on 8 and 128 GPUs under 1 s"). A benchmark, not a
// test: see bench/README.md. Each repetition runs the whole experiment as `mlsim run` does: prepare (the
// model, the embedding-sharding planner, the per-rank lowering, the memory check) and simulate (with the
// parallel execution engine, when the build has it, every rank's program on its device model and every
// collective on the network model). Prints the median wall and thread-CPU seconds per step simulated.
//     ./build/bench_dlrm [repetitions]      (default 5)
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <ctime>
#include <string>
#include <vector>

#include "experiment/experiment.h"

using namespace mlsim;

namespace {

double thread_cpu_seconds() {
    timespec ts{};
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
    return static_cast<double>(ts.tv_sec) + 1e-9 * static_cast<double>(ts.tv_nsec);
}

double median(std::vector<double> v) {
    std::sort(v.begin(), v.end());
    return v[v.size() / 2];
}

}  // namespace

int main(int argc, char** argv) {
    const int reps = argc > 1 ? std::max(1, std::atoi(argv[1])) : 5;
    struct Case {
        const char* system;
        int64_t batch;
    };
    // NVIDIA's DLRM recipe: 8k samples per GPU (DeepLearningExamples, PyTorch DLRM README).
    const Case cases[] = {{"dgx-a100-node", 8 * 8192}, {"dgx-a100-16node", 128 * 8192}};
    for (const Case& c : cases) {
        exp::ExperimentOptions o;
        o.system = std::string(MLSIM_BENCH_CONFIGS) + "/systems/" + c.system + ".yaml";
        o.model = "dlrm-mlperf";
        o.batch = c.batch;
        o.dtype = "fp16";
        o.mode = "training";
        o.embedding_sharding = "auto";
        std::vector<double> wall, cpu;
        double step = 0;
        for (int r = 0; r < reps; ++r) {
            const auto t0 = std::chrono::steady_clock::now();
            const double c0 = thread_cpu_seconds();
            const exp::ExperimentResult res = exp::run_experiment(o);
            cpu.push_back(thread_cpu_seconds() - c0);
            wall.push_back(std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count());
            step = res.parallel_run ? res.parallel_run->step_time_s : res.total_time_s;
        }
        std::printf(
            "dlrm-mlperf training, %s (%lld GPUs, batch %lld, auto sharding): %.3f s wall, %.3f s CPU "
            "(median of %d); simulated step %.3f ms%s\n",
            c.system, static_cast<long long>(c.batch / 8192), static_cast<long long>(c.batch), median(wall),
            median(cpu), reps, step * 1e3, step > 0 ? "" : " (no parallel engine in this build)");
    }
    return 0;
}
