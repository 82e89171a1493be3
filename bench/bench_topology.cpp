// Route and bisection speed on the big topology presets: every ordered pair of the 4,096-chip TPU v4 torus
// (16.8 M dimension-order routes, what an all-to-all asks for) and of the 1,024-GPU SuperPOD (1.0 M
// routes: one Dijkstra per destination, cached, then an O(hops) walk each), written into one reused
// Route (Topology::route_into), with a flow hash per pair; and the max-flow bisection of each. Prints wall
// and CPU seconds. A benchmark, not a test: see bench/README.md.
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <ctime>
#include <string>

#include "arch/system/system_spec.h"

namespace {

double cpu_seconds() {
    timespec ts{};
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
    return static_cast<double>(ts.tv_sec) + static_cast<double>(ts.tv_nsec) * 1e-9;
}

struct Timer {
    std::chrono::steady_clock::time_point wall = std::chrono::steady_clock::now();
    double cpu = cpu_seconds();
    void print(const char* what, double extra_count = 0, const char* unit = "") const {
        const double w = std::chrono::duration<double>(std::chrono::steady_clock::now() - wall).count();
        const double c = cpu_seconds() - cpu;
        if (extra_count > 0)
            std::printf("%-46s %8.3f s wall %8.3f s cpu  (%.1f ns per %s)\n", what, w, c,
                        1e9 * c / extra_count, unit);
        else
            std::printf("%-46s %8.3f s wall %8.3f s cpu\n", what, w, c);
    }
};

void all_pairs(const std::string& preset) {
    const std::string path = std::string(MLSIM_BENCH_CONFIGS) + "/systems/" + preset + ".yaml";
    Timer load;
    const mlsim::arch::SystemSpec s =
        mlsim::arch::load_system(path, {std::string(MLSIM_BENCH_CONFIGS) + "/devices"});
    load.print((preset + ": load").c_str());
    const mlsim::arch::net::Topology& t = *s.topology;
    const std::size_t n = t.devices().size();
    mlsim::arch::net::Route r;
    uint64_t hops = 0;
    // A ring's routes, i -> i + 1: the first route to each destination (one Dijkstra each off a torus).
    Timer ring;
    for (std::size_t a = 0; a < n; ++a) t.route_into(a, (a + 1) % n, 0, r);
    ring.print((preset + ": ring routes, first to each dst").c_str(), static_cast<double>(n), "route");
    Timer routes;
    for (std::size_t a = 0; a < n; ++a)
        for (std::size_t b = 0; b < n; ++b) {
            t.route_into(a, b, (static_cast<uint64_t>(a) << 32) | b, r);
            hops += r.hops.size();
        }
    const double pairs = static_cast<double>(n) * static_cast<double>(n);
    routes.print((preset + ": all " + std::to_string(n) + "^2 routes").c_str(), pairs, "route");
    std::printf("%-46s %.3f hops per route\n", "", static_cast<double>(hops) / pairs);
    Timer again;
    for (std::size_t a = 0; a < n; ++a) t.route_into(a, (a * 7 + 1) % n, a, r);
    again.print((preset + ": n more routes, costs cached").c_str(), static_cast<double>(n), "route");
    Timer bis;
    const double bw = s.bisection_Bps();
    bis.print((preset + ": bisection (max flow)").c_str());
    std::printf("%-46s %.4g TB/s one way\n", "", bw / 1e12);
}

}  // namespace

int main() {
    all_pairs("tpu-v4-4096");
    all_pairs("superpod-h100-1024");
    return 0;
}
