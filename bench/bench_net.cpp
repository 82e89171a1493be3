// Network-model benchmark (issue 12): a 1 GiB ring all-reduce over 1,024 GPUs (128 nodes x 8 GPUs on a
// rail-optimised two-level leaf/spine InfiniBand fabric, SuperPOD-like) and an all-to-all over 4,096 chips
// of a 16 x 16 x 16 torus (a TPU v4 pod's shape). Prints wall time and peak resident memory. Targets
// (issue 12): < 2 s and < 10 s wall, < 1 GB memory. A benchmark, not a test: see bench/README.md.
//
// The fabrics are built here by hand until the SuperPOD and TPU v4 presets land (configs/systems); the
// figures are the presets' kind (est.): NVLink4 450 GB/s per GPU through one logical NVSwitch, one NDR
// 400 Gb/s = 50 GB/s NIC per GPU to its rail's leaf, 32 nodes per scalable unit, each leaf with 32 links
// up; torus links 50 GB/s per direction (TPU v4 ICI, est.), 6 per chip.
#include <sys/resource.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <ctime>
#include <memory>
#include <string>

#include "arch/net/impl/flow_network.h"

using namespace mlsim;
using namespace mlsim::arch::net;

namespace {

std::string indexed(std::string prefix, long i) {
    prefix += std::to_string(i);
    return prefix;
}

LinkProps link(const char* kind, double bw, int64_t ns, int64_t count = 1) {
    LinkProps p;
    p.kind = kind;
    p.bandwidth_Bps = bw;
    p.latency = Tick::from_ns(ns);
    p.count = count;
    return p;
}

SwitchProps sw(int64_t ns) {
    SwitchProps p;
    p.latency = Tick::from_ns(ns);
    return p;
}

std::shared_ptr<Topology> superpod(int nodes, int gpus, int su_nodes, int spines) {
    auto t = std::make_shared<Topology>();
    for (int n = 0; n < nodes; ++n)
        for (int g = 0; g < gpus; ++g) t->add_device(indexed(indexed("n", n) + ".", g));
    const int sus = (nodes + su_nodes - 1) / su_nodes;
    std::vector<VertexId> leaves;
    for (int s = 0; s < sus; ++s)
        for (int r = 0; r < gpus; ++r)
            leaves.push_back(t->add_switch(indexed(indexed("leaf", s) + ".", r), sw(200)));
    std::vector<VertexId> spine;
    for (int s = 0; s < spines; ++s) spine.push_back(t->add_switch(indexed("spine", s), sw(200)));
    for (int n = 0; n < nodes; ++n) {
        const VertexId nvs = t->add_switch(indexed("nvs", n), sw(200));
        for (int g = 0; g < gpus; ++g) {
            const VertexId d = static_cast<VertexId>(n * gpus + g);
            t->add_link(d, nvs, link("nvlink", 25e9, 200, 18));
            t->add_link(d, leaves[static_cast<std::size_t>((n / su_nodes) * gpus + g)],
                        link("infiniband", 50e9, 1250));
        }
    }
    for (VertexId l : leaves)
        for (VertexId s : spine) t->add_link(l, s, link("infiniband", 50e9, 500, su_nodes / spines));
    return t;
}

std::shared_ptr<Topology> torus(int k) {
    auto t = std::make_shared<Topology>();
    for (int i = 0; i < k * k * k; ++i) t->add_device(indexed("c", i));
    auto id = [k](int x, int y, int z) {
        return static_cast<VertexId>(((x + k) % k) * k * k + ((y + k) % k) * k + (z + k) % k);
    };
    for (int x = 0; x < k; ++x)
        for (int y = 0; y < k; ++y)
            for (int z = 0; z < k; ++z) {
                t->add_link(id(x, y, z), id(x + 1, y, z), link("ici-x", 50e9, 500));
                t->add_link(id(x, y, z), id(x, y + 1, z), link("ici-y", 50e9, 500));
                t->add_link(id(x, y, z), id(x, y, z + 1), link("ici-z", 50e9, 500));
            }
    return t;
}

double peak_rss_mb() {
    rusage u{};
    getrusage(RUSAGE_SELF, &u);
    return static_cast<double>(u.ru_maxrss) / 1024.0;
}

void time_it(const char* what, const std::shared_ptr<Topology>& t, CollectiveKind kind,
             CollectiveAlgorithm alg, int64_t bytes, double target_s) {
    const auto t0 = std::chrono::steady_clock::now();
    const std::clock_t c0 = std::clock();
    FlowNetwork net(t);
    CollectiveRequest q;
    q.kind = kind;
    q.algorithm = alg;
    q.protocol = Protocol::simple;
    for (VertexId v : t->devices()) q.group.push_back(v);
    q.bytes = bytes;
    const CollectiveResult r = net.collective(q);
    const double wall = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    const double cpu = static_cast<double>(std::clock() - c0) / CLOCKS_PER_SEC;
    const double sim = r.duration().to_seconds();
    const double algbw = static_cast<double>(bytes) / sim / 1e9;
    std::printf(
        "%-44s ranks %5zu  simulated %10.3f ms  algbw %7.2f GB/s  busbw %7.2f GB/s  steps %6lld  wall %6.2f "
        "s cpu %6.2f s (target < %.0f s)  peak RSS %6.0f MB\n",
        what, q.group.size(), sim * 1e3, algbw,
        algbw * bus_bandwidth_factor(kind, static_cast<int64_t>(q.group.size())),
        static_cast<long long>(r.steps), wall, cpu, target_s, peak_rss_mb());
}

}  // namespace

int main(int argc, char** argv) {
    const bool only_ring = argc > 1 && std::strcmp(argv[1], "ring") == 0;
    const bool only_a2a = argc > 1 && std::strcmp(argv[1], "a2a") == 0;
    const int k = argc > 2 ? std::atoi(argv[2]) : 16;
    const auto a2a_alg = argc > 3 ? *parse_collective_algorithm(argv[3]) : CollectiveAlgorithm::pairwise;
    if (!only_a2a)
        time_it("ring all-reduce 1 GiB, 128 x 8 GPUs leaf/spine", superpod(128, 8, 32, 16),
                CollectiveKind::all_reduce, CollectiveAlgorithm::ring, int64_t{1} << 30, 2);
    if (!only_ring)
        time_it("all-to-all 1 GiB per rank, k^3 torus", torus(k), CollectiveKind::all_to_all, a2a_alg,
                int64_t{1} << 30, 10);
    return 0;
}
