// The stat registry, and bit-for-bit repeatability of whole runs.
#include <catch2/catch.hpp>
#include <cstdint>
#include <random>
#include <utility>
#include <vector>

#include "sim/core/bounded_buffer.h"
#include "sim/core/channel.h"
#include "sim/core/check.h"
#include "sim/core/process.h"
#include "sim/core/simulator.h"
#include "sim/core/stats.h"

using namespace mlsim;
using namespace mlsim::literals;

TEST_CASE("stats are registered once and dumped with name, unit, value and description", "[stats]") {
    StatRegistry reg;
    Counter& macs = reg.counter("pe.macs", "count", "multiply-accumulates performed");
    Counter& bytes = reg.counter("sram.read_bytes", "bytes", "bytes read from the SRAM");
    for (int i = 0; i < 10; ++i) ++macs;
    bytes += 4096;
    bytes.add(4);
    // Registering more stats must not move the ones already handed out.
    for (int i = 0; i < 100; ++i) reg.counter("filler." + std::to_string(i), "count", "padding");
    macs += 5;

    const std::vector<StatRow> rows = reg.dump();
    REQUIRE(rows.size() == 102);
    CHECK(rows[0].name == "pe.macs");
    CHECK(rows[0].unit == "count");
    CHECK(rows[0].value == 15);
    CHECK(rows[0].description == "multiply-accumulates performed");
    CHECK(rows[1].name == "sram.read_bytes");
    CHECK(rows[1].unit == "bytes");
    CHECK(rows[1].value == 4100);
    CHECK(reg.find("sram.read_bytes") == &bytes);
    CHECK(reg.find("nope") == nullptr);
    CHECK_THROWS_AS(reg.counter("pe.macs", "count", "again"), InternalError);
    reg.reset_all();
    CHECK(macs.value() == 0);
}

namespace {

using Trace = std::vector<std::pair<std::int64_t, std::uint64_t>>;

Process worker(Simulator& sim, Channel& link, BoundedBuffer& buf, std::uint64_t seed, int id, Trace& trace) {
    std::mt19937_64 rng{seed};
    for (int step = 0; step < 50; ++step) {
        switch (rng() % 3) {
            case 0:
                co_await delay(Tick::from_ps(static_cast<std::int64_t>(rng() % 4) * 500));
                break;
            case 1:
                co_await link.transfer(rng() % 3000);
                break;
            default:
                if (id % 2 == 0)
                    co_await buf.put(1);
                else
                    co_await buf.get(1);
        }
        trace.emplace_back(sim.now().ps(), static_cast<std::uint64_t>(id) * 1000 + step);
    }
}

struct Ticker {
    Simulator* sim;
    Trace* trace;
    std::uint64_t id;
    int left;
    void on_tick() {
        trace->emplace_back(sim->now().ps(), 1'000'000 + id);
        if (--left > 0)
            sim->schedule_in(Tick::from_ps(static_cast<std::int64_t>(id % 3) * 700),
                             callback<&Ticker::on_tick>(this));
    }
};

Trace run_scenario() {
    Simulator sim;
    Channel link{sim, "link", 7'000'000'000ULL, 300_ps};
    BoundedBuffer buf{sim, "buf", 3, "slots"};
    Trace trace;
    std::vector<Ticker> tickers;
    tickers.reserve(8);
    for (std::uint64_t i = 0; i < 8; ++i) tickers.push_back(Ticker{&sim, &trace, i, 40});
    for (Ticker& t : tickers) sim.schedule_at(Tick::zero(), callback<&Ticker::on_tick>(&t));
    for (int id = 0; id < 6; ++id)
        sim.spawn(worker(sim, link, buf, 42 + static_cast<std::uint64_t>(id), id, trace));
    sim.run();
    trace.emplace_back(sim.now().ps(), sim.events_run());
    return trace;
}

}  // namespace

TEST_CASE("two identical runs produce identical traces of (time, event id)", "[determinism]") {
    const Trace a = run_scenario();
    const Trace b = run_scenario();
    REQUIRE(a.size() > 500);
    CHECK(a == b);
    // The trace is not trivially ordered: many events share a time, so FIFO tie-breaking is exercised.
    std::size_t ties = 0;
    for (std::size_t i = 1; i < a.size(); ++i) ties += a[i].first == a[i - 1].first;
    CHECK(ties > 100);
}
