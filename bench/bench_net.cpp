// Network-model benchmark (issue 12): a 1 GiB ring all-reduce over 1,024 GPUs (128 nodes x 8 GPUs on a
// rail-optimised two-level leaf/spine InfiniBand fabric, SuperPOD-like) and an all-to-all over 4,096 chips
// of a 16 x 16 x 16 torus (a TPU v4 pod's shape), and a direct all-to-all over 512 GPUs (superpod-h100-512).
// Prints wall and CPU time and peak resident memory. Targets (issue 12): < 2 s and < 10 s wall, < 1 GB
// memory. A benchmark, not a test: see bench/README.md.
//
// The systems are the presets configs/systems/superpod-h100-1024.yaml and tpu-v4-4096.yaml. `auto` times
// the automatic choice (closed-form ranking, two simulated) over 8 B ... 8 GiB on the SuperPOD.
#include <sys/resource.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <ctime>
#include <memory>
#include <string>
#include <vector>

#include "arch/net/impl/flow_network.h"
#include "experiment/collective_study.h"
#include "experiment/experiment.h"

using namespace mlsim;
using namespace mlsim::arch::net;

namespace {

double peak_rss_mb() {
    rusage u{};
    getrusage(RUSAGE_SELF, &u);
    return static_cast<double>(u.ru_maxrss) / 1024.0;
}

double median(std::vector<double> v) {
    std::sort(v.begin(), v.end());
    return v.empty() ? 0 : v[v.size() / 2];
}

// Times one collective on a fresh network `repeats` times; prints the median wall and CPU time.
void time_it(const char* what, const arch::SystemSpec& sys, CollectiveKind kind, CollectiveAlgorithm alg,
             int64_t bytes, double target_s, int repeats) {
    std::vector<double> walls, cpus;
    CollectiveResult r;
    std::size_t ranks = 0;
    for (int i = 0; i < repeats; ++i) {
        const auto t0 = std::chrono::steady_clock::now();
        const std::clock_t c0 = std::clock();
        FlowNetwork net(sys.topology, exp::network_options_for(sys, "fp32"));
        CollectiveRequest q;
        q.kind = kind;
        q.algorithm = alg;
        q.protocol = alg == CollectiveAlgorithm::automatic ? Protocol::automatic : Protocol::simple;
        for (std::size_t d = 0; d < sys.devices.size(); ++d) q.group.push_back(d);
        q.bytes = bytes;
        ranks = q.group.size();
        r = net.collective(q);
        walls.push_back(std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count());
        cpus.push_back(static_cast<double>(std::clock() - c0) / CLOCKS_PER_SEC);
    }
    const double sim = r.duration().to_seconds();
    const double algbw = static_cast<double>(bytes) / sim / 1e9;
    std::printf(
        "%-40s ranks %5zu  %-12s simulated %10.3f ms  busbw %7.2f GB/s  steps %6lld  wall %6.2f s cpu %6.2f "
        "s "
        "(median of %d; target < %.0f s)  peak RSS %6.0f MB\n",
        what, ranks, std::string(to_string(r.algorithm)).c_str(), sim * 1e3,
        algbw * bus_bandwidth_factor(kind, static_cast<int64_t>(ranks)), static_cast<long long>(r.steps),
        median(walls), median(cpus), repeats, target_s, peak_rss_mb());
    std::fflush(stdout);
}

}  // namespace

int main(int argc, char** argv) {
    // bench_net [ring|direct|a2a|auto|all] [a2a algorithm, default bruck] [repeats, default 3]
    const std::string mode = argc > 1 ? argv[1] : "all";
    const auto a2a_alg = argc > 2 ? parse_collective_algorithm(argv[2]) : CollectiveAlgorithm::bruck;
    const int repeats = argc > 3 ? std::max(1, std::atoi(argv[3])) : 3;
    if (!a2a_alg) {
        std::fprintf(stderr, "bench_net: unknown algorithm %s\n", argv[2]);
        return 2;
    }
    if (mode == "ring" || mode == "all" || mode == "auto") {
        const arch::SystemSpec pod = exp::load_system_file(exp::resolve_system_path("superpod-h100-1024"));
        if (mode != "auto")
            time_it("ring all-reduce 1 GiB, superpod-h100-1024", pod, CollectiveKind::all_reduce,
                    CollectiveAlgorithm::ring, int64_t{1} << 30, 2, repeats);
        if (mode != "ring")
            for (int64_t b = 8; b <= (int64_t{8} << 30); b *= 8)
                time_it(("automatic all-reduce " + std::to_string(b) + " B, superpod-h100-1024").c_str(), pod,
                        CollectiveKind::all_reduce, CollectiveAlgorithm::automatic, b, 60, 1);
    }
    if (mode == "direct" || mode == "all") {
        // p (p - 1) = 261,632 concurrent flows in one step (issue 12: the direct all-to-all's solver cost)
        const arch::SystemSpec pod = exp::load_system_file(exp::resolve_system_path("superpod-h100-512"));
        time_it("direct all-to-all 128 MiB, superpod-h100-512", pod, CollectiveKind::all_to_all,
                CollectiveAlgorithm::direct, int64_t{128} << 20, 60, repeats);
    }
    if (mode == "a2a" || mode == "all") {
        const arch::SystemSpec tpu = exp::load_system_file(exp::resolve_system_path("tpu-v4-4096"));
        time_it("all-to-all 1 GiB per rank, tpu-v4-4096", tpu, CollectiveKind::all_to_all, *a2a_alg,
                int64_t{1} << 30, 10, repeats);
    }
    return 0;
}
