// Speed of the systolic family's two fidelities. A benchmark, not a test: see bench/README.md.
//  * cycle fidelity (arch/systolic/pe_grid.h): a 128x128 PE grid runs a 512x512x512 GEMM in each
//    dataflow; prints PE-cycles per second = R·C·cycles / seconds, median of the repetitions;
//  * tile fidelity (arch/systolic/fold_model.h): layers per second of gemm_cycles and gemm_stats over a
//    fixed spread of layer shapes and arrays.
// Rates are given per wall-clock second and per second of this thread's CPU time (which stays
// meaningful when other jobs share the cores).
#include <algorithm>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <ctime>
#include <string>
#include <vector>

#include "arch/systolic/fold_model.h"
#include "arch/systolic/pe_grid.h"

namespace sys = mlsim::arch::systolic;

namespace {

double thread_cpu_seconds() {
    timespec ts{};
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
    return static_cast<double>(ts.tv_sec) + 1e-9 * static_cast<double>(ts.tv_nsec);
}

sys::Matrix pattern(int64_t rows, int64_t cols, int64_t salt) {
    sys::Matrix m(rows, cols);
    for (size_t i = 0; i < m.data.size(); ++i)
        m.data[i] = static_cast<int64_t>((i * 7 + static_cast<size_t>(salt)) % 13) - 6;
    return m;
}

struct Rates {
    double wall = 0, cpu = 0;
};

double median(std::vector<double> v) {
    std::sort(v.begin(), v.end());
    return v[v.size() / 2];
}

}  // namespace

int main(int argc, char** argv) {
    const int reps = argc > 1 ? std::max(5, std::atoi(argv[1])) : 5;
    const sys::ArrayShape arr{128, 128};
    const sys::GemmShape gemm{512, 512, 512};
    const sys::Matrix a = pattern(gemm.m, gemm.k, 1), b = pattern(gemm.k, gemm.n, 2);

    std::printf("cycle fidelity: %lldx%lld PE grid, GEMM M=%lld N=%lld K=%lld, median of %d repetitions\n",
                static_cast<long long>(arr.rows), static_cast<long long>(arr.cols),
                static_cast<long long>(gemm.m), static_cast<long long>(gemm.n),
                static_cast<long long>(gemm.k), reps);
    std::printf("%9s %10s %22s %22s %22s\n", "dataflow", "cycles", "median PE-cycles/s",
                "min..max PE-cycles/s", "median PE-cycles/cpu-s");
    sys::PeGrid grid(arr);
    int64_t checksum = 0;
    for (sys::Dataflow df : {sys::Dataflow::os, sys::Dataflow::ws, sys::Dataflow::is}) {
        std::vector<double> wall, cpu;
        int64_t cycles = 0;
        for (int r = 0; r < reps; ++r) {
            const double c0 = thread_cpu_seconds();
            const auto t0 = std::chrono::steady_clock::now();
            const sys::CycleRun run = grid.run(df, a, b);
            const auto t1 = std::chrono::steady_clock::now();
            const double c1 = thread_cpu_seconds();
            cycles = run.stats.cycles.count();
            checksum += run.c.data[static_cast<size_t>(gemm.m * gemm.n / 2)];
            const double pe_cycles = static_cast<double>(arr.rows * arr.cols * cycles);
            wall.push_back(pe_cycles / std::chrono::duration<double>(t1 - t0).count());
            cpu.push_back(pe_cycles / (c1 - c0));
        }
        std::printf("%9s %10lld %22.3e %10.3e..%9.3e %22.3e\n", std::string(sys::to_string(df)).c_str(),
                    static_cast<long long>(cycles), median(wall), *std::min_element(wall.begin(), wall.end()),
                    *std::max_element(wall.begin(), wall.end()), median(cpu));
    }

    // Tile fidelity: a spread of arrays and layer shapes, cycled through so the branch predictor sees
    // varied fold structures.
    std::vector<sys::ArrayShape> arrays = {{128, 128}, {32, 32}, {256, 256}, {16, 64}, {8, 8}};
    std::vector<sys::GemmShape> shapes;
    for (int64_t m : {1, 49, 196, 3136, 12544})
        for (int64_t n : {64, 96, 1000, 4096})
            for (int64_t k : {27, 576, 1152, 4608}) shapes.push_back({m, n, k});
    const int64_t layers = 4'000'000;
    std::printf("\ntile fidelity: %lld layers over %zu shapes x %zu arrays x 3 dataflows, median of %d\n",
                static_cast<long long>(layers), shapes.size(), arrays.size(), reps);
    std::printf("%12s %22s %22s\n", "function", "median layers/s", "median layers/cpu-s");
    for (int which = 0; which < 2; ++which) {
        std::vector<double> wall, cpu;
        for (int r = 0; r < reps; ++r) {
            const double c0 = thread_cpu_seconds();
            const auto t0 = std::chrono::steady_clock::now();
            size_t si = 0, ai = 0;
            int di = 0;
            for (int64_t i = 0; i < layers; ++i) {
                const auto df = static_cast<sys::Dataflow>(di);
                if (which == 0) {
                    checksum += sys::gemm_cycles(df, arrays[ai], shapes[si]).count();
                } else {
                    const sys::GemmStats st = sys::gemm_stats(df, arrays[ai], shapes[si]);
                    checksum += st.cycles.count() + st.counts.a_reads + st.counts.out_hops;
                }
                if (++si == shapes.size()) si = 0;
                if (++ai == arrays.size()) ai = 0;
                if (++di == 3) di = 0;
            }
            const auto t1 = std::chrono::steady_clock::now();
            const double c1 = thread_cpu_seconds();
            wall.push_back(static_cast<double>(layers) / std::chrono::duration<double>(t1 - t0).count());
            cpu.push_back(static_cast<double>(layers) / (c1 - c0));
        }
        std::printf("%12s %22.3e %22.3e\n", which == 0 ? "gemm_cycles" : "gemm_stats", median(wall),
                    median(cpu));
    }
    std::printf("\n(checksum %lld)\n", static_cast<long long>(checksum));
    return 0;
}
