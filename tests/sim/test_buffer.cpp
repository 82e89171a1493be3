// BoundedBuffer laws: blocking, FIFO grants, accounting, and the double-buffered pipeline closed form.
#include <algorithm>
#include <catch2/catch.hpp>
#include <cstdint>
#include <memory>
#include <vector>

#include "sim/core/bounded_buffer.h"
#include "sim/core/channel.h"
#include "sim/core/check.h"
#include "sim/core/process.h"
#include "sim/core/simulator.h"

using namespace mlsim;
using namespace mlsim::literals;

namespace {

Process producer_puts(BoundedBuffer& buf, int items, std::vector<Tick>& put_done, Simulator& sim) {
    for (int i = 0; i < items; ++i) {
        co_await buf.put(1);
        put_done.push_back(sim.now());
    }
}

}  // namespace

TEST_CASE("a producer is blocked while the buffer is full until a consumer frees space", "[buffer]") {
    Simulator sim;
    BoundedBuffer buf{sim, "fifo", 2, "slots"};
    std::vector<Tick> put_done;
    sim.spawn(producer_puts(buf, 3, put_done, sim));
    const Tick t = 40_ns;
    sim.schedule_at(t, [&buf] { buf.request(BoundedBuffer::Request::get, 1, [] {}); });

    sim.run_until(t - 1_ps);
    CHECK(put_done == std::vector<Tick>{0_ps, 0_ps});
    CHECK(buf.waiting_producers() == 1);
    CHECK(buf.data() == 2);
    sim.run_until(t);
    CHECK(put_done == std::vector<Tick>{0_ps, 0_ps, t});
    CHECK(buf.data() == 2);
    CHECK(buf.waiting_producers() == 0);
    CHECK(sim.stats().find("fifo.producer_wait")->value() == static_cast<std::uint64_t>(t.ps()));
}

TEST_CASE("an unregistered buffer behaves the same and adds no stats", "[buffer]") {
    for (const bool registered : {true, false}) {
        Simulator sim;
        const std::size_t before = sim.stats().size();
        auto buf = registered
                       ? std::make_unique<BoundedBuffer>(sim, "fifo", 2, "slots")
                       : std::make_unique<BoundedBuffer>(sim, "fifo", 2, BoundedBuffer::Unregistered{});
        std::vector<Tick> put_done;
        sim.spawn(producer_puts(*buf, 3, put_done, sim));
        const Tick t = 40_ns;
        sim.schedule_at(t, [&buf] { buf->request(BoundedBuffer::Request::get, 1, [] {}); });
        sim.run_until(t);
        CHECK(put_done == std::vector<Tick>{0_ps, 0_ps, t});
        CHECK(buf->data() == 2);
        CHECK(sim.stats().size() == before + (registered ? 4 : 0));
        CHECK((sim.stats().find("fifo.producer_wait") != nullptr) == registered);
    }
}

TEST_CASE("a consumer is blocked while the buffer is empty until a producer commits", "[buffer]") {
    Simulator sim;
    BoundedBuffer buf{sim, "buf", 1024};
    Tick got_at = Tick::max();
    sim.spawn([](BoundedBuffer& b, Simulator& s, Tick& out) -> Process {
        co_await b.get(512);
        out = s.now();
    }(buf, sim, got_at));
    sim.schedule_at(10_ns, [&buf] { buf.request(BoundedBuffer::Request::reserve, 512, [] {}); });
    sim.schedule_at(25_ns, [&buf] { buf.commit(512); });
    sim.run_until(25_ns - 1_ps);
    CHECK(got_at == Tick::max());
    CHECK(buf.reserved() == 512);
    CHECK(buf.free() == 512);
    sim.run_until(25_ns);
    CHECK(got_at == 25_ns);
    CHECK(buf.free() == 1024);
    CHECK(sim.stats().find("buf.consumer_wait")->value() == static_cast<std::uint64_t>((25_ns).ps()));
}

TEST_CASE("waiting requests are granted first-in first-out, a big head is not overtaken", "[buffer]") {
    Simulator sim;
    BoundedBuffer buf{sim, "b", 10};
    std::vector<int> order;
    buf.request(BoundedBuffer::Request::put, 8, [&order] { order.push_back(0); });
    buf.request(BoundedBuffer::Request::put, 5, [&order] { order.push_back(1); });  // waits: 2 free
    buf.request(BoundedBuffer::Request::put, 1,
                [&order] { order.push_back(2); });  // fits, but waits its turn
    sim.run();
    CHECK(order == std::vector<int>{0});
    CHECK(buf.waiting_producers() == 2);
    sim.schedule_at(5_ns, [&buf] { buf.request(BoundedBuffer::Request::get, 4, [] {}); });
    sim.run();
    // 6 free: the 5 goes, then the 1 fits exactly.
    CHECK(order == std::vector<int>{0, 1, 2});
    CHECK(buf.data() == 10);
}

TEST_CASE("a callback request granted at once still runs as an event, not inside the call", "[buffer]") {
    Simulator sim;
    BoundedBuffer buf{sim, "b", 4};
    bool ran = false;
    buf.request(BoundedBuffer::Request::put, 1, [&ran] { ran = true; });
    CHECK_FALSE(ran);
    CHECK(buf.data() == 1);  // accounted immediately
    sim.run();
    CHECK(ran);
}

TEST_CASE("buffer misuse is an internal error", "[buffer]") {
    Simulator sim;
    BoundedBuffer buf{sim, "b", 4};
    CHECK_THROWS_AS(buf.commit(1), InternalError);
    CHECK_THROWS_AS(buf.release(1), InternalError);
    CHECK_THROWS_AS(buf.request(BoundedBuffer::Request::put, 5, [] {}), InternalError);
}

// ---- the double-buffered pipeline ----

namespace {

struct PipelineResult {
    Tick end;
    std::vector<Tick> compute_start;
};

// Each step loads one tile (load_time: a fixed delay, or a transfer on `link` when given) into a free
// slot, then the consumer computes on it for compute_time and frees the slot.
Process loader(BoundedBuffer& buf, Channel* link, std::uint64_t tile_bytes, Tick load_time, int steps) {
    for (int i = 0; i < steps; ++i) {
        co_await buf.reserve(1);
        if (link)
            co_await link->transfer(tile_bytes);
        else
            co_await delay(load_time);
        buf.commit(1);
    }
}

Process computer(Simulator& sim, BoundedBuffer& buf, Tick compute_time, int steps, PipelineResult& out) {
    for (int i = 0; i < steps; ++i) {
        co_await buf.acquire(1);
        out.compute_start.push_back(sim.now());
        co_await delay(compute_time);
        buf.release(1);
    }
    out.end = sim.now();
}

PipelineResult run_pipeline(int slots, Tick load, Tick compute, int steps) {
    Simulator sim;
    BoundedBuffer buf{sim, "tiles", static_cast<std::uint64_t>(slots), "slots"};
    PipelineResult r;
    sim.spawn(loader(buf, nullptr, 0, load, steps));
    sim.spawn(computer(sim, buf, compute, steps, r));
    sim.run();
    CHECK(sim.now() == r.end);  // nothing runs after the last compute
    return r;
}

}  // namespace

TEST_CASE("a double-buffered pipeline takes L + (S-1) * max(L, C) + C", "[buffer][pipeline]") {
    // With two slots, load i+1 overlaps compute i. The first load cannot overlap anything and the last
    // compute cannot either; in between each step costs the slower of the two.
    struct Case {
        Tick load, compute;
        int steps;
    };
    const Case cases[] = {
        {10_ns, 3_ns, 7},                                    // load-bound
        {3_ns, 10_ns, 7},                                    // compute-bound
        {5_ns, 5_ns, 9},                                     // balanced
        {Tick::from_ps(1'409), Tick::from_ps(1'410), 1000},  // off by one picosecond
        {Tick::from_ps(7'777), Tick::from_ps(333), 64},
        {4_ns, 9_ns, 1},  // a single step: just L + C
    };
    for (const Case& c : cases) {
        INFO("load " << c.load << ", compute " << c.compute << ", steps " << c.steps);
        const PipelineResult r = run_pipeline(2, c.load, c.compute, c.steps);
        const Tick expected = c.load + (c.steps - 1) * std::max(c.load, c.compute) + c.compute;
        CHECK(r.end == expected);
        REQUIRE(r.compute_start.size() == static_cast<std::size_t>(c.steps));
        // Step i's compute starts at L + i * max(L, C): the law holds at every step, not just the end.
        for (int i = 0; i < c.steps; ++i)
            CHECK(r.compute_start[i] == c.load + i * std::max(c.load, c.compute));
    }
}

TEST_CASE("a single-buffered pipeline serializes to S * (L + C)", "[buffer][pipeline]") {
    for (auto [load, compute, steps] : {std::tuple{10_ns, 3_ns, 7}, std::tuple{3_ns, 10_ns, 7},
                                        std::tuple{Tick::from_ps(1'409), Tick::from_ps(1'410), 100}}) {
        const PipelineResult r = run_pipeline(1, load, compute, steps);
        CHECK(r.end == steps * (load + compute));
    }
}

TEST_CASE("a double buffer fed by a channel overlaps transfers with compute", "[buffer][pipeline]") {
    // Load time of a tile over the channel = ceil(bytes * 1e12 / B) + latency, since the loader issues
    // the next transfer only once the previous tile has arrived.
    for (Tick compute : {Tick::from_ps(100'000), Tick::from_ps(2'000'000)}) {
        Simulator sim;
        Channel hbm{sim, "hbm", 3'000'000'000ULL, 250_ns};
        BoundedBuffer buf{sim, "sram", 2 * 4096, "bytes"};
        PipelineResult r;
        const int steps = 16;
        sim.spawn([](BoundedBuffer& b, Channel& ch, int n) -> Process {
            for (int i = 0; i < n; ++i) {
                co_await b.reserve(4096);
                co_await ch.transfer(4096);
                b.commit(4096);
            }
        }(buf, hbm, steps));
        sim.spawn([](Simulator& s, BoundedBuffer& b, Tick c, int n, PipelineResult& out) -> Process {
            for (int i = 0; i < n; ++i) {
                co_await b.acquire(4096);
                co_await delay(c);
                b.release(4096);
            }
            out.end = s.now();
        }(sim, buf, compute, steps, r));
        sim.run();
        const Tick load = hbm.hold_time(4096) + 250_ns;  // 1365334 ps + 250 ns
        CHECK(r.end == load + (steps - 1) * std::max(load, compute) + compute);
        CHECK(hbm.bytes() == steps * 4096ULL);
    }
}
