// Hold-model benchmark of the event engine: each event, when run, schedules one new event at
// now + a random delay, so the number of pending events stays constant. Prints the median events per
// second over several repetitions for each pending count. A benchmark, not a test: see bench/README.md.
#include <algorithm>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <ctime>
#include <vector>

#include "sim/core/callback.h"
#include "sim/core/simulator.h"
#include "sim/core/time.h"

namespace {

// xoshiro-style generators are overkill here; a 64-bit LCG step + xorshift output is cheap and, with a
// fixed seed, makes every repetition schedule the same delays.
class Rng {
  public:
    explicit Rng(std::uint64_t seed) : m_state(seed) {}
    std::uint64_t next() noexcept {
        m_state = m_state * 6364136223846793005ULL + 1442695040888963407ULL;
        std::uint64_t x = m_state;
        x ^= x >> 33;
        x *= 0xff51afd7ed558ccdULL;
        x ^= x >> 33;
        return x;
    }
    // Uniform in [0, range) by multiply-shift: a 64-bit division would cost more than the event itself.
    std::uint64_t below(std::uint64_t range) noexcept {
        return static_cast<std::uint64_t>((static_cast<unsigned __int128>(next()) * range) >> 64);
    }

  private:
    std::uint64_t m_state;
};

struct Hold {
    mlsim::Simulator* sim;
    Rng rng{12345};
    std::uint64_t left = 0;
    std::uint64_t max_delay_ps = 1'000'000;

    void on_event() {
        if (--left == 0) {
            sim->stop();
            return;
        }
        const auto d = static_cast<std::int64_t>(rng.below(max_delay_ps)) + 1;
        sim->schedule_in(mlsim::Tick::from_ps(d), mlsim::callback<&Hold::on_event>(this));
    }
};

double thread_cpu_seconds() {
    timespec ts{};
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
    return static_cast<double>(ts.tv_sec) + 1e-9 * static_cast<double>(ts.tv_nsec);
}

struct Rates {
    double wall;  // events per wall-clock second
    double cpu;   // events per second of this thread's CPU time: robust when other jobs share the cores
};

Rates run_once(std::size_t pending, std::uint64_t events) {
    mlsim::Simulator sim;
    Hold h{&sim};
    h.left = events;
    for (std::size_t i = 0; i < pending; ++i) {
        const auto d = static_cast<std::int64_t>(h.rng.below(h.max_delay_ps));
        sim.schedule_at(mlsim::Tick::from_ps(d), mlsim::callback<&Hold::on_event>(&h));
    }
    // Warm up: one full turnover of the pending set so the slab and heap reach steady state.
    h.left = pending + 1;
    sim.run();
    h.left = events;
    const std::uint64_t before = sim.events_run();
    const double c0 = thread_cpu_seconds();
    const auto t0 = std::chrono::steady_clock::now();
    sim.run();
    const auto t1 = std::chrono::steady_clock::now();
    const double c1 = thread_cpu_seconds();
    const auto n = static_cast<double>(sim.events_run() - before);
    return Rates{n / std::chrono::duration<double>(t1 - t0).count(), n / (c1 - c0)};
}

}  // namespace

int main(int argc, char** argv) {
    const int reps = argc > 1 ? std::max(5, std::atoi(argv[1])) : 7;
    const std::uint64_t events = 20'000'000;
    std::printf("hold model, %llu events per repetition, median of %d repetitions\n",
                static_cast<unsigned long long>(events), reps);
    std::printf("%10s %20s %20s %20s\n", "pending", "median events/s", "min..max events/s",
                "median events/cpu-s");
    for (std::size_t pending : {std::size_t{64}, std::size_t{4096}, std::size_t{262144}}) {
        std::vector<double> wall;
        std::vector<double> cpu;
        for (int r = 0; r < reps; ++r) {
            const Rates rates = run_once(pending, events);
            wall.push_back(rates.wall);
            cpu.push_back(rates.cpu);
        }
        std::sort(wall.begin(), wall.end());
        std::sort(cpu.begin(), cpu.end());
        std::printf("%10zu %20.3e %9.3e..%9.3e %20.3e\n", pending, wall[wall.size() / 2], wall.front(),
                    wall.back(), cpu[cpu.size() / 2]);
    }
    return 0;
}
