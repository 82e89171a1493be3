// Speed of the CPU family's two fidelities. A benchmark, not a test: see bench/README.md.
//  * closed fidelity: ResNet-50 (batch 1, fp32) on a CPU preset through the detailed CPU model, a fresh
//    model each repetition (so its per-run memo starts empty); prints milliseconds per model run.
//  * trace fidelity (arch/cpu/cache_sim.h): the blocked loop nest of a 1024^3 fp32 GEMM replayed
//    through the Xeon 8380's L1D / L2 / L3 geometry; prints line accesses per second.
// Each figure is the median of the repetitions, per wall-clock second and per second of this thread's
// CPU time (which stays meaningful when other jobs share the cores).
//     ./build/bench_cpu [preset] [repetitions]      (default epyc-9654, 7)
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <ctime>
#include <string>
#include <vector>

#include "arch/cpu/cache_sim.h"
#include "arch/cpu/cpu_model.h"
#include "workloads/model.h"

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
    const std::string name = argc > 1 ? argv[1] : "epyc-9654";
    const int reps = argc > 2 ? std::max(1, std::atoi(argv[2])) : 7;
    const std::string dir = std::string(MLSIM_BENCH_CONFIGS) + "/devices/";
    const arch::DeviceSpec spec = arch::load_device(dir + name + ".yaml");
    const wl::Model model = wl::zoo_build("resnet50", wl::ZooOptions{});

    std::vector<double> wall, cpu;
    double total = 0;
    for (int r = 0; r < reps; ++r) {
        const auto t0 = std::chrono::steady_clock::now();
        const double c0 = thread_cpu_seconds();
        arch::cpu::CpuModel m(spec);
        const auto rs = m.run(model);
        cpu.push_back(thread_cpu_seconds() - c0);
        wall.push_back(std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count());
        total = rs.back().end_s;
    }
    std::printf(
        "closed fidelity: resnet50 on %s (%zu layers, simulated %.3f ms): %.2f ms wall, %.2f ms CPU "
        "per run (median of %d)\n",
        name.c_str(), model.ops().size(), total * 1e3, median(wall) * 1e3, median(cpu) * 1e3, reps);

    const arch::DeviceSpec x = arch::load_device(dir + "xeon-8380.yaml");
    const arch::cpu::CpuSpec& cs = *arch::cpu::spec_of(x);
    const arch::cpu::Blocking b =
        arch::cpu::choose_blocking(cs, cs.units.at("fp32"), 4, cs.caches.back().capacity_bytes);
    arch::cpu::GemmTask g;
    g.m = g.n = g.k = 1024;
    std::vector<double> aw, ac;
    uint64_t accesses = 0;
    for (int r = 0; r < reps; ++r) {
        const auto t0 = std::chrono::steady_clock::now();
        const double c0 = thread_cpu_seconds();
        const arch::cpu::TraceResult t =
            arch::cpu::trace_gemm(arch::cpu::trace_levels(cs, cs.caches.back().capacity_bytes), b, g);
        const double c = thread_cpu_seconds() - c0;
        const double w = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
        accesses = t.accesses;
        aw.push_back(static_cast<double>(t.accesses) / w);
        ac.push_back(static_cast<double>(t.accesses) / c);
    }
    std::printf(
        "trace fidelity: 1024^3 fp32 GEMM, %s, xeon-8380 caches: %llu line accesses, %.1f M/s wall, "
        "%.1f M/s CPU (median of %d)\n",
        b.text().c_str(), static_cast<unsigned long long>(accesses), median(aw) / 1e6, median(ac) / 1e6,
        reps);
    return 0;
}
