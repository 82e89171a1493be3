// Engine conformance: the laws of event order, cancellation and time.
#include <algorithm>
#include <catch2/catch.hpp>
#include <cstdint>
#include <map>
#include <random>
#include <tuple>
#include <vector>

#include "sim/core/check.h"
#include "sim/core/event_queue.h"
#include "sim/core/simulator.h"

using namespace mlsim;
using namespace mlsim::literals;

namespace {

struct Recorder {
    Simulator* sim;
    std::vector<int> order;
    std::vector<Tick> times;

    void on_event(std::uint64_t id) {
        order.push_back(static_cast<int>(id));
        times.push_back(sim->now());
    }
};

}  // namespace

TEST_CASE("events run in time order whatever the order they were scheduled in", "[engine]") {
    Simulator sim;
    Recorder r{&sim, {}, {}};
    sim.schedule_at(30_ns, callback<&Recorder::on_event>(&r, 3));
    sim.schedule_at(10_ns, callback<&Recorder::on_event>(&r, 1));
    sim.schedule_at(20_ns, callback<&Recorder::on_event>(&r, 2));
    sim.schedule_at(10_ns + 1_ps, callback<&Recorder::on_event>(&r, 4));
    sim.run();
    CHECK(r.order == std::vector<int>{1, 4, 2, 3});
    CHECK(r.times == std::vector<Tick>{10_ns, 10_ns + 1_ps, 20_ns, 30_ns});
    CHECK(sim.now() == 30_ns);
    CHECK(sim.events_run() == 4);
}

TEST_CASE("at equal time a lower phase runs first", "[engine]") {
    Simulator sim;
    Recorder r{&sim, {}, {}};
    sim.schedule_at(5_ns, Phase::last, callback<&Recorder::on_event>(&r, 3));
    sim.schedule_at(5_ns, Phase::normal, callback<&Recorder::on_event>(&r, 2));
    sim.schedule_at(5_ns, Phase{7}, callback<&Recorder::on_event>(&r, 1));
    sim.schedule_at(5_ns, Phase::first, callback<&Recorder::on_event>(&r, 0));
    sim.schedule_at(4_ns, Phase::last, callback<&Recorder::on_event>(&r, -1));
    sim.run();
    CHECK(r.order == std::vector<int>{-1, 0, 1, 2, 3});
}

TEST_CASE("events with equal time and phase run first-in first-out", "[engine]") {
    Simulator sim;
    Recorder r{&sim, {}, {}};
    std::vector<int> expected;
    for (int i = 0; i < 1000; ++i) {
        // Interleave other times and phases so the heap really reorders things.
        sim.schedule_at(Tick::from_ps(100 + (i * 7919) % 13), Phase::last,
                        callback<&Recorder::on_event>(&r, 10'000 + i));
        sim.schedule_at(100_ps, callback<&Recorder::on_event>(&r, i));
        expected.push_back(i);
    }
    sim.run_until(100_ps);
    std::vector<int> at100;
    for (int id : r.order)
        if (id < 10'000) at100.push_back(id);
    CHECK(at100 == expected);
    sim.run();
    // Within each later (time, phase) group, insertion order holds too.
    for (std::size_t i = 1; i < r.order.size(); ++i)
        if (r.times[i] == r.times[i - 1] && r.order[i] >= 10'000 && r.order[i - 1] >= 10'000)
            CHECK(r.order[i] > r.order[i - 1]);
}

TEST_CASE("an event scheduled for now runs after events already pending at now", "[engine]") {
    Simulator sim;
    std::vector<int> order;
    sim.schedule_at(1_ns, [&order, &sim] {
        order.push_back(1);
        sim.schedule_at(sim.now(), [&order] { order.push_back(3); });
    });
    sim.schedule_at(1_ns, [&order] { order.push_back(2); });
    sim.run();
    CHECK(order == std::vector<int>{1, 2, 3});
}

TEST_CASE("a cancelled event never runs and its handle then reports nothing pending", "[engine]") {
    Simulator sim;
    int ran = 0;
    const EventHandle a = sim.schedule_at(10_ns, [&ran] { ran += 1; });
    const EventHandle b = sim.schedule_at(20_ns, [&ran] { ran += 10; });
    CHECK(sim.pending() == 2);
    CHECK(sim.is_pending(a));
    CHECK(sim.cancel(a));
    CHECK_FALSE(sim.is_pending(a));
    CHECK_FALSE(sim.cancel(a));  // twice is harmless
    CHECK(sim.pending() == 1);
    sim.run();
    CHECK(ran == 10);
    CHECK(sim.events_run() == 1);
    CHECK_FALSE(sim.cancel(b));  // already ran
}

TEST_CASE("a stale handle cannot cancel a later event that reuses its slot", "[engine]") {
    Simulator sim;
    int ran = 0;
    const EventHandle first = sim.schedule_at(1_ns, [&ran] { ran += 1; });
    sim.run();
    REQUIRE(ran == 1);
    const EventHandle second = sim.schedule_at(2_ns, [&ran] { ran += 10; });
    REQUIRE(second.slot == first.slot);  // the slab reuses the freed slot
    CHECK_FALSE(sim.cancel(first));
    CHECK(sim.is_pending(second));
    sim.run();
    CHECK(ran == 11);
    CHECK_FALSE(sim.cancel(EventHandle{}));  // a default handle is harmless too
}

TEST_CASE("an event can cancel another event at the same time", "[engine]") {
    Simulator sim;
    struct Ctx {
        Simulator* sim;
        std::vector<int> order;
        EventHandle victim;
    } c{&sim, {}, {}};
    sim.schedule_at(5_ns, [&c] {
        c.order.push_back(1);
        CHECK(c.sim->cancel(c.victim));
    });
    c.victim = sim.schedule_at(5_ns, [&c] { c.order.push_back(2); });
    sim.schedule_at(5_ns, [&c] { c.order.push_back(3); });
    sim.run();
    CHECK(c.order == std::vector<int>{1, 3});
}

TEST_CASE("scheduling in the past is rejected as an internal error", "[engine]") {
    Simulator sim;
    sim.schedule_at(10_ns, [] {});
    sim.run();
    REQUIRE(sim.now() == 10_ns);
    CHECK_THROWS_AS(sim.schedule_at(10_ns - 1_ps, [] {}), InternalError);
    CHECK_THROWS_AS(sim.schedule_in(-1_ps, [] {}), InternalError);
    CHECK_THROWS_AS(sim.run_until(9_ns), InternalError);
    CHECK_NOTHROW(sim.schedule_at(10_ns, [] {}));  // now itself is fine
    CHECK(sim.pending() == 1);
}

TEST_CASE("run_until(t) runs events at t but not at t+1 and leaves now at t", "[engine]") {
    Simulator sim;
    int ran = 0;
    sim.schedule_at(100_ps, [&ran] { ++ran; });
    sim.schedule_at(101_ps, [&ran] { ++ran; });
    sim.run_until(99_ps);
    CHECK(ran == 0);
    CHECK(sim.now() == 99_ps);
    sim.run_until(100_ps);
    CHECK(ran == 1);
    CHECK(sim.now() == 100_ps);
    sim.run_until(1_ns);
    CHECK(ran == 2);
    CHECK(sim.now() == 1_ns);
    CHECK(sim.pending() == 0);
}

TEST_CASE("schedule_in is relative to now and stop() ends run after the current event", "[engine]") {
    Simulator sim;
    std::vector<Tick> seen;
    sim.schedule_at(3_ns, [&] {
        seen.push_back(sim.now());
        sim.schedule_in(2_ns, [&] {
            seen.push_back(sim.now());
            sim.stop();
        });
    });
    sim.schedule_at(6_ns, [&] { seen.push_back(sim.now()); });
    sim.run();
    CHECK(seen == std::vector<Tick>{3_ns, 5_ns});
    CHECK(sim.pending() == 1);
    sim.run();
    CHECK(seen == std::vector<Tick>{3_ns, 5_ns, 6_ns});
}

TEST_CASE("step runs exactly one live event and skips cancelled ones", "[engine]") {
    Simulator sim;
    int ran = 0;
    const EventHandle h = sim.schedule_at(1_ns, [&ran] { ran += 1; });
    sim.schedule_at(2_ns, [&ran] { ran += 10; });
    sim.cancel(h);
    CHECK(sim.step());
    CHECK(ran == 10);
    CHECK(sim.now() == 2_ns);
    CHECK_FALSE(sim.step());
}

TEST_CASE("the engine orders many random events exactly like a stable sort by (time, phase)", "[engine]") {
    std::mt19937_64 rng{12345};
    Simulator sim;
    struct Ev {
        Tick time;
        int phase;
        std::uint64_t seq;
    };
    std::vector<Ev> scheduled;
    std::vector<std::uint64_t> ran;
    std::uint64_t next_id = 0;
    struct Ctx {
        std::vector<std::uint64_t>* ran;
        std::uint64_t id;
    };
    auto schedule_random = [&](Tick base) {
        const Tick t = base + Tick::from_ps(static_cast<std::int64_t>(rng() % 50));
        const int phase = static_cast<int>(rng() % 3) * 100;
        const std::uint64_t id = next_id++;
        scheduled.push_back(Ev{t, phase, id});
        std::vector<std::uint64_t>* out = &ran;
        sim.schedule_at(t, Phase{static_cast<std::uint8_t>(phase)}, [out, id] { out->push_back(id); });
    };
    for (int i = 0; i < 5000; ++i) schedule_random(Tick::zero());
    sim.run_until(20_ps);
    // More arrive mid-run, after everything at <= 20 ps ran, and queue behind pending equal keys.
    for (int i = 0; i < 5000; ++i) schedule_random(sim.now() + 1_ps);
    sim.run();
    std::vector<Ev> expected = scheduled;
    std::stable_sort(expected.begin(), expected.end(), [](const Ev& a, const Ev& b) {
        return std::tie(a.time, a.phase) < std::tie(b.time, b.phase);
    });
    REQUIRE(ran.size() == expected.size());
    bool same = true;
    for (std::size_t i = 0; i < ran.size(); ++i) same = same && ran[i] == expected[i].seq;
    CHECK(same);
}

TEST_CASE("FIFO order survives running out of sequence numbers", "[engine][queue]") {
    // A limit of 16 forces a renumbering every few pushes; the default limit is 2^32.
    EventQueue q{16};
    std::vector<std::uint32_t> popped;
    std::vector<std::uint32_t> expected;
    std::uint32_t next = 0;
    auto push = [&](int time) {
        q.push(Tick::from_ps(time), Phase::normal, next);
        expected.push_back(next++);
    };
    // Three entries stay pending across every renumbering.
    for (int i = 0; i < 3; ++i) push(0);
    for (int round = 0; round < 50; ++round) {
        for (int i = 0; i < 5; ++i) push(round);
        for (int i = 0; i < 5; ++i) {
            popped.push_back(q.top().slot);
            q.pop();
        }
    }
    while (!q.empty()) {
        popped.push_back(q.top().slot);
        q.pop();
    }
    CHECK(popped == expected);
}

TEST_CASE("random scheduling and cancelling from inside events matches a sorted reference", "[engine]") {
    // Reference: a std::map keyed by (time, phase, sequence) that mirrors every schedule and cancel.
    using RefKey = std::tuple<std::int64_t, int, std::uint64_t>;
    struct World {
        Simulator sim;
        std::mt19937_64 rng{777};
        std::map<RefKey, std::uint64_t> reference;  // key -> id
        std::vector<std::pair<EventHandle, RefKey>> live;
        std::vector<std::uint64_t> ran;
        std::vector<std::uint64_t> expected;
        std::uint64_t next_id = 0;
        int budget = 20'000;

        void schedule_one() {
            const Tick t = sim.now() + Tick::from_ps(static_cast<std::int64_t>(rng() % 20));
            const int phase = static_cast<int>(rng() % 4) * 60;
            const std::uint64_t id = next_id++;
            const EventHandle h = sim.schedule_at(t, Phase{static_cast<std::uint8_t>(phase)},
                                                  callback<&World::on_event>(this, id));
            const RefKey k{t.ps(), phase, id};
            reference.emplace(k, id);
            live.emplace_back(h, k);
        }
        void on_event(std::uint64_t id) {
            ran.push_back(id);
            // The reference's first entry must be this very event.
            REQUIRE(!reference.empty());
            expected.push_back(reference.begin()->second);
            reference.erase(reference.begin());
            if (--budget <= 0) return;
            const auto action = rng() % 10;
            const int births = action < 3 ? 0 : action < 7 ? 1 : 2;
            for (int i = 0; i < births; ++i) schedule_one();
            if (action % 3 == 0 && !live.empty()) {  // cancel a random handle, often a stale one
                const std::size_t pick = rng() % live.size();
                const auto [h, k] = live[pick];
                live[pick] = live.back();
                live.pop_back();
                const bool pending = reference.count(k) == 1;
                CHECK(sim.cancel(h) == pending);
                reference.erase(k);
            }
        }
    } w;
    for (int i = 0; i < 300; ++i) w.schedule_one();
    w.sim.run();
    CHECK(w.ran == w.expected);
    CHECK(w.reference.empty());
    CHECK(w.sim.pending() == 0);
    CHECK(w.ran.size() > 5'000);
}
