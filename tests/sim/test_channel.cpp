// Channel timing laws: hold = ceil(n * 1e12 / B), FIFO service, pipelined latency, stats.
#include <catch2/catch.hpp>
#include <cstdint>
#include <vector>

#include "sim/core/channel.h"
#include "sim/core/process.h"
#include "sim/core/simulator.h"

using namespace mlsim;
using namespace mlsim::literals;

TEST_CASE("a transfer of n bytes has not arrived at t-1 and has at t = start + ceil(n/B) + latency",
          "[channel]") {
    Simulator sim;
    // 3 GB/s: 1000 bytes take 333333.33... ps, held for 333334 ps.
    Channel ch{sim, "link", 3'000'000'000ULL, 500_ps};
    REQUIRE(ch.hold_time(1'000) == Tick::from_ps(333'334));
    bool arrived = false;
    sim.run_until(7_ns);  // start from a non-zero time
    const Tick arrival = ch.send(1'000, [&arrived] { arrived = true; });
    const Tick t = 7_ns + Tick::from_ps(333'334) + 500_ps;
    CHECK(arrival == t);
    sim.run_until(t - 1_ps);
    CHECK_FALSE(arrived);
    sim.run_until(t);
    CHECK(arrived);
}

TEST_CASE("hold time rounds up to whole picoseconds and is exact for huge transfers", "[channel]") {
    Simulator sim;
    Channel hbm{sim, "hbm", 2'039'000'000'000ULL, 0_ps};  // 2039 GB/s
    CHECK(hbm.hold_time(0) == 0_ps);
    CHECK(hbm.hold_time(1) == 1_ps);             // 0.49 ps rounds up
    CHECK(hbm.hold_time(2'039) == 1_ns);         // exact, no rounding
    CHECK(hbm.hold_time(2'040) == 1_ns + 1_ps);  // 1000.49 ps rounds up
    // 80 GiB at 2039 GB/s: 85899345920e12 / 2039e9 = 42128173575.3... ps.
    CHECK(hbm.hold_time(85'899'345'920ULL) == Tick::from_ps(42'128'173'576));
}

TEST_CASE("back-to-back transfers are served first-in first-out with latency pipelined", "[channel]") {
    Simulator sim;
    Channel ch{sim, "link", 1'000'000'000ULL, 10_ns};  // 1 byte per ns
    struct Log {
        Simulator* sim;
        std::vector<int> order;
        std::vector<Tick> arrivals;
        void on_arrival(std::uint64_t id) {
            order.push_back(static_cast<int>(id));
            arrivals.push_back(sim->now());
        }
    } log{&sim, {}, {}};
    auto record = [&log](std::uint64_t id) { return callback<&Log::on_arrival>(&log, id); };
    // All issued at t = 0: the second starts when the first releases the channel (not when it arrives).
    CHECK(ch.send(100, record(0)) == 110_ns);
    CHECK(ch.send(50, record(1)) == 160_ns);
    CHECK(ch.send(1, record(2)) == 161_ns);
    CHECK(ch.free_at() == 151_ns);
    sim.run_until(160_ns - 1_ps);
    CHECK(log.order == std::vector<int>{0});
    sim.run_until(160_ns);
    CHECK(log.order == std::vector<int>{0, 1});
    sim.run();
    CHECK(log.arrivals == std::vector<Tick>{110_ns, 160_ns, 161_ns});
    // Once idle, a new transfer starts at once.
    sim.run_until(1'000_ns);
    CHECK(ch.send(10, [] {}) == 1'020_ns);
}

TEST_CASE("channel stats count busy time, bytes and transfers", "[channel][stats]") {
    Simulator sim;
    Channel ch{sim, "dram", 3'000'000'000ULL, 5_ns};
    ch.send(1'000, [] {});
    ch.send(3'000, [] {});
    sim.run();
    sim.run_until(sim.now() + 1_us);
    ch.send(1, [] {});
    sim.run();
    CHECK(ch.transfers() == 3);
    CHECK(ch.bytes() == 4'001);
    CHECK(ch.busy_time_ps() == 333'334 + 1'000'000 + 334);
    const Counter* busy = sim.stats().find("dram.busy_time");
    REQUIRE(busy != nullptr);
    CHECK(busy->value() == ch.busy_time_ps());
    CHECK(sim.stats().find("dram.bytes")->value() == 4'001);
    CHECK(sim.stats().find("dram.transfers")->value() == 3);
}

namespace {
Process mover(Channel& ch, std::uint64_t bytes, int count, std::vector<Tick>& done) {
    for (int i = 0; i < count; ++i) {
        co_await ch.transfer(bytes);
        done.push_back(ch.free_at());
    }
}
}  // namespace

TEST_CASE("a process awaiting transfers resumes at each arrival", "[channel][process]") {
    Simulator sim;
    Channel ch{sim, "link", 1'000'000'000ULL, 3_ns};
    std::vector<Tick> resumed;
    std::vector<Tick> free_at;
    sim.spawn([](Simulator& s, Channel& c, std::vector<Tick>& out) -> Process {
        for (int i = 0; i < 3; ++i) {
            co_await c.transfer(4);
            out.push_back(s.now());
        }
    }(sim, ch, resumed));
    sim.run();
    // Each transfer is issued only after the previous arrived: 4 ns hold + 3 ns latency apiece.
    CHECK(resumed == std::vector<Tick>{7_ns, 14_ns, 21_ns});
    sim.spawn(mover(ch, 2, 2, free_at));
    sim.run();
    CHECK(free_at == std::vector<Tick>{23_ns, 28_ns});
}
