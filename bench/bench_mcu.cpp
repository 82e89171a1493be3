// Speed of the detailed MCU model. A benchmark, not a test: see bench/README.md.
// Each MLPerf Tiny network (int8) on each MCU preset through McuModel::run alone (the device and the
// model are built once, outside the timing; a fresh McuModel each repetition), median of the
// repetitions, in milliseconds of wall-clock and of this thread's CPU time. Target: under 5 ms each.
//     ./build/bench_mcu [repetitions]      (default 9)
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <ctime>
#include <string>
#include <vector>

#include "arch/device_spec.h"
#include "arch/mcu/mcu_model.h"
#include "workloads/model.h"
#include "workloads/zoo/zoo.h"

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
    const int reps = argc > 1 ? std::max(1, std::atoi(argv[1])) : 9;
    const std::string dir = std::string(MLSIM_BENCH_CONFIGS) + "/devices/";
    const char* const presets[] = {"stm32l4r5", "stm32f746", "stm32h7a3",    "stm32u575",
                                   "nrf5340",   "ra8d1",     "ethos-u55-m55"};
    const char* const nets[] = {"ds-cnn-kws", "vww-mobilenetv1", "resnet8-cifar", "fc-autoencoder"};
    double worst = 0;
    std::printf("%-14s %-16s %7s %12s %10s %10s\n", "preset", "network", "layers", "simulated", "wall ms",
                "CPU ms");
    for (const char* p : presets) {
        const arch::DeviceSpec spec = arch::load_device(dir + p + ".yaml");
        for (const char* n : nets) {
            wl::ZooOptions o;
            o.dtype = wl::DType::int8;
            const wl::Model model = wl::zoo_build(n, o);
            std::vector<double> wall, cpu;
            double simulated = 0;
            for (int r = 0; r < reps; ++r) {
                const auto t0 = std::chrono::steady_clock::now();
                const double c0 = thread_cpu_seconds();
                arch::mcu::McuModel m(spec);
                const auto rs = m.run(model);
                cpu.push_back(thread_cpu_seconds() - c0);
                wall.push_back(std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count());
                simulated = rs.back().end_s;
            }
            worst = std::max(worst, median(wall));
            std::printf("%-14s %-16s %7zu %9.3f ms %10.3f %10.3f\n", p, n, model.ops().size(),
                        simulated * 1e3, median(wall) * 1e3, median(cpu) * 1e3);
        }
    }
    std::printf("slowest: %.3f ms wall per run (median of %d); target < 5 ms\n", worst * 1e3, reps);
    return 0;
}
