// Speed of the GPU family (arch/gpu). A benchmark, not a test: see bench/README.md.
//  * wave fidelity: ResNet-50 batch 32 and GPT-2 XL decode on the A100 preset, wall time of one model
//    run (a fresh model each time, so nothing is memoized across repetitions), median of N, and the
//    process's peak resident memory;
// usage: bench_gpu [repetitions=5] [configs/devices]
//  * block fidelity: one 8192 x 4096 x 4096 fp16 GEMM on the A100, thread blocks and engine events per
//    second.
// Rates are given per wall-clock second and per second of this thread's CPU time.
#include <sys/resource.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <ctime>
#include <string>
#include <vector>

#include "arch/device_spec.h"
#include "arch/gpu/gpu_model.h"
#include "workloads/model.h"

namespace {

double thread_cpu_seconds() {
    timespec ts{};
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
    return static_cast<double>(ts.tv_sec) + 1e-9 * static_cast<double>(ts.tv_nsec);
}

double now_s() {
    return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count();
}

double median(std::vector<double> v) {
    std::sort(v.begin(), v.end());
    return v[v.size() / 2];
}

double peak_rss_mb() {
    rusage u{};
    getrusage(RUSAGE_SELF, &u);
    return static_cast<double>(u.ru_maxrss) / 1024.0;
}

}  // namespace

int main(int argc, char** argv) {
    const int reps = argc > 1 ? std::max(1, std::atoi(argv[1])) : 5;
    // Run from the repository root, or give the folder of the device presets.
    const std::string dir = argc > 2 ? std::string(argv[2]) + "/" : std::string("configs/devices/");
    const mlsim::arch::DeviceSpec a100 = mlsim::arch::load_device(dir + "a100.yaml");

    struct Case {
        const char* name;
        const char* model;
        int64_t batch;
    };
    for (const Case c :
         {Case{"ResNet-50 b32", "resnet50", 32}, Case{"GPT-2 XL decode", "gpt2-xl-decode", 1}}) {
        mlsim::wl::ZooOptions o;
        o.dtype = mlsim::wl::DType::fp16;
        o.batch = c.batch;
        const mlsim::wl::Model model = mlsim::wl::zoo_build(c.model, o);
        std::vector<double> wall, cpu;
        double sim = 0;
        for (int i = 0; i < reps; ++i) {
            const double t0 = now_s(), c0 = thread_cpu_seconds();
            mlsim::arch::gpu::GpuModel m(a100);
            const auto layers = m.run(model);
            wall.push_back(now_s() - t0);
            cpu.push_back(thread_cpu_seconds() - c0);
            sim = layers.back().end_s;
        }
        std::printf(
            "%-16s on a100 (wave fidelity): %.2f ms wall, %.2f ms CPU (median of %d); simulated %.3f ms\n",
            c.name, median(wall) * 1e3, median(cpu) * 1e3, reps, sim * 1e3);
    }
    std::printf("peak resident memory so far: %.1f MB\n", peak_rss_mb());

    mlsim::arch::gpu::GpuModel m(a100);
    const mlsim::arch::gpu::GemmPlan p = m.plan_gemm(mlsim::wl::GemmShape{1, 8192, 4096, 4096}, "fp16");
    std::vector<double> wall, cpu;
    uint64_t events = 0;
    for (int i = 0; i < reps; ++i) {
        const double t0 = now_s(), c0 = thread_cpu_seconds();
        const mlsim::arch::gpu::GemmRun r = m.simulate_gemm(p, mlsim::arch::gpu::Fidelity::block);
        wall.push_back(now_s() - t0);
        cpu.push_back(thread_cpu_seconds() - c0);
        events = r.events;
    }
    const double blocks = static_cast<double>(p.blocks);
    std::printf(
        "block fidelity, 8192x4096x4096 fp16 on a100 (%lld blocks x %lld K steps, %llu events): "
        "%.3g blocks/s wall, %.3g blocks/s CPU, %.3g events/s wall (median of %d)\n",
        static_cast<long long>(p.blocks), static_cast<long long>(p.k_steps),
        static_cast<unsigned long long>(events), blocks / median(wall), blocks / median(cpu),
        static_cast<double>(events) / median(wall), reps);
    std::printf("peak resident memory: %.1f MB\n", peak_rss_mb());
    return 0;
}
