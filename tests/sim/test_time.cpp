// Tick, Cycles and ClockDomain: strong types and exact conversions.
#include <boost/multiprecision/cpp_int.hpp>
#include <catch2/catch.hpp>
#include <cstdint>
#include <type_traits>

#include "sim/config/error.h"
#include "sim/core/check.h"
#include "sim/core/clock_domain.h"
#include "sim/core/time.h"

using namespace mlsim;
using namespace mlsim::literals;
using boost::multiprecision::cpp_int;

static_assert(!std::is_convertible_v<Cycles, Tick>, "cycles must not become time implicitly");
static_assert(!std::is_convertible_v<Tick, Cycles>, "time must not become cycles implicitly");
static_assert(!std::is_convertible_v<std::int64_t, Tick>, "a raw integer is not a time");
static_assert(!std::is_convertible_v<std::int64_t, Cycles>, "a raw integer is not a cycle count");
static_assert(!std::is_constructible_v<Tick, Cycles> && !std::is_constructible_v<Cycles, Tick>);
static_assert(sizeof(Tick) == 8 && std::is_trivially_copyable_v<Tick>);

namespace {

// The oracle: floor(n * 10^12 / f) in arbitrary precision, independent of the 128-bit code under test.
std::int64_t exact_edge(std::int64_t n, std::uint64_t hz) {
    const cpp_int num = cpp_int(n) * cpp_int(1'000'000'000'000ULL);
    return static_cast<std::int64_t>(num / cpp_int(hz));
}

// Smallest n with exact_edge(n) >= t, by arbitrary-precision ceiling division.
std::int64_t exact_first_edge_at_or_after(std::int64_t t, std::uint64_t hz) {
    const cpp_int num = cpp_int(t) * cpp_int(hz);
    const cpp_int den = cpp_int(1'000'000'000'000ULL);
    return static_cast<std::int64_t>((num + den - 1) / den);
}

}  // namespace

TEST_CASE("tick factories and literals agree on picoseconds", "[time]") {
    CHECK(Tick::from_ns(3).ps() == 3'000);
    CHECK(Tick::from_us(2).ps() == 2'000'000);
    CHECK(Tick::from_ms(1).ps() == 1'000'000'000);
    CHECK(5_ns == Tick::from_ps(5'000));
    CHECK(7_us == Tick::from_ns(7'000));
    CHECK(1_ms == Tick::from_us(1'000));
    CHECK(42_ps == Tick::from_ps(42));
    CHECK(Tick{} == Tick::zero());
}

TEST_CASE("tick arithmetic is exact integer arithmetic on picoseconds", "[time]") {
    CHECK(3_ns + 250_ps == Tick::from_ps(3'250));
    CHECK(3_ns - 250_ps == Tick::from_ps(2'750));
    CHECK(3_ns * 4 == 12_ns);
    CHECK(4 * 3_ns == 12_ns);
    CHECK(10_ns / 4 == Tick::from_ps(2'500));
    CHECK(10_ns / 3_ns == 3);
    CHECK(10_ns % 3_ns == 1_ns);
    CHECK(-(5_ps) == Tick::from_ps(-5));
    CHECK(1_ns < Tick::from_ps(1'001));
    CHECK(Tick::from_ps(999) < 1_ns);
    Tick t = 1_us;
    t += 1_ns;
    t -= 1_ps;
    CHECK(t.ps() == 1'000'999);
}

TEST_CASE("tick overflow throws instead of wrapping", "[time]") {
    // A sentinel in a sum is a bug; two of the run's own times outgrowing 2^63 ps is its input's doing (a
    // link of 1 kB/s carrying gigabytes): a user error, said as such.
    CHECK_THROWS_AS(Tick::max() + 1_ps, InternalError);
    CHECK_THROWS_AS(Tick::from_seconds(9e6) + Tick::from_seconds(9e6), cfg::UserError);
    CHECK_THROWS_AS(Tick::max() * 2, InternalError);
    CHECK_THROWS_AS(Tick::from_ms(INT64_MAX / 1000), InternalError);
    CHECK_THROWS_AS(1_ns / 0, InternalError);
}

TEST_CASE("seconds round-trip to the nearest picosecond", "[time]") {
    CHECK(Tick::from_seconds(1.0).ps() == 1'000'000'000'000);
    CHECK(Tick::from_seconds(1.5e-9) == Tick::from_ps(1'500));
    CHECK(Tick::from_seconds(2.4e-12) == Tick::from_ps(2));
    CHECK(Tick::from_seconds(2.6e-12) == Tick::from_ps(3));
    CHECK(Tick::from_ps(1'500).to_seconds() == Approx(1.5e-9).epsilon(1e-15));
    CHECK(Tick::from_ms(250).to_seconds() == 0.25);
    CHECK_THROWS_AS(Tick::from_seconds(1e10), cfg::UserError);
    CHECK_THROWS_AS(Tick::from_seconds(-1e10), InternalError);
    CHECK_THROWS_AS(Tick::from_seconds(std::numeric_limits<double>::quiet_NaN()), InternalError);
}

TEST_CASE("cycles are their own integer type", "[time]") {
    CHECK((10_cycles + Cycles{5}).count() == 15);
    CHECK((10_cycles - Cycles{5}).count() == 5);
    CHECK((3_cycles * 7).count() == 21);
    CHECK(Cycles{2} < Cycles{3});
}

TEST_CASE("edge n of a clock is floor(n * 1e12 / f) exactly, even at n = 10^12", "[time][clock]") {
    const std::uint64_t freqs[] = {1'410'000'000ULL, 700'000'000ULL, 1'000'000'000ULL,    3'000'000'000ULL,
                                   32'768ULL,        999'999'937ULL, 1'000'000'000'000ULL};
    const std::int64_t ns[] = {0,
                               1,
                               2,
                               3,
                               141,
                               1'000,
                               999'999,
                               1'000'000'007,
                               1'000'000'000'000,
                               1'000'000'000'001,
                               123'456'789'012'345};
    for (std::uint64_t hz : freqs) {
        const ClockDomain clk{hz};
        for (std::int64_t n : ns) {
            if (hz < 1'000'000 && n > 1'000'000'000) continue;  // beyond 2^63 ps for slow clocks
            INFO("f = " << hz << " Hz, n = " << n);
            CHECK(clk.edge(Cycles{n}).ps() == exact_edge(n, hz));
        }
    }
}

TEST_CASE("edges at 1.41 GHz differ from adding a rounded period, which drifts", "[time][clock]") {
    const ClockDomain clk{1'410'000'000ULL};
    const std::int64_t n = 1'000'000'000'000;
    // The rounded period (709 ps) accumulated 10^12 times is about 0.78 ms off the true edge.
    const std::int64_t rounded_period_sum = 709 * n;
    CHECK(clk.edge(Cycles{n}).ps() == 709'219'858'156'028);  // floor(10^24 / 1.41e9)
    CHECK(clk.edge(Cycles{n}).ps() != rounded_period_sum);
}

TEST_CASE("the first edge at or after t is exact and inverts edge()", "[time][clock]") {
    for (std::uint64_t hz : {1'410'000'000ULL, 700'000'000ULL, 2'250'000'000ULL}) {
        const ClockDomain clk{hz};
        for (std::int64_t n : {std::int64_t{1}, std::int64_t{7}, std::int64_t{1'000'003},
                               std::int64_t{1'000'000'000'000}, std::int64_t{987'654'321'012}}) {
            INFO("f = " << hz << " Hz, n = " << n);
            const Tick e = clk.edge(Cycles{n});
            CHECK(clk.edge_at_or_after(e) == Cycles{n});
            // Probe at t - 1 and t: one picosecond before edge n, the first edge at or after is still n,
            // and edge n-1 lies strictly before that probe.
            CHECK(clk.edge_at_or_after(e - 1_ps) == Cycles{n});
            CHECK(clk.edge(Cycles{n - 1}) <= e - 1_ps);
            CHECK(clk.edge_at_or_after(e + 1_ps) == Cycles{n + 1});
            CHECK(clk.next_edge(e - 1_ps) == e);
            CHECK(clk.next_edge(e) == e);
            CHECK(clk.edge_at_or_after(e + 1_ps).count() == exact_first_edge_at_or_after(e.ps() + 1, hz));
        }
    }
}

TEST_CASE("whole cycles in a duration count the edges reached, probed at t-1 and t", "[time][clock]") {
    const ClockDomain clk{700'000'000ULL};
    for (std::int64_t n : {std::int64_t{1}, std::int64_t{10}, std::int64_t{1'000'000'000'000}}) {
        const Tick e = clk.edge(Cycles{n});
        CHECK(clk.cycles_in(e - 1_ps) == Cycles{n - 1});
        CHECK(clk.cycles_in(e) == Cycles{n});
    }
    CHECK(clk.cycles_in(Tick::zero()) == Cycles{0});
    // 700 MHz: edge 10 is at floor(14285.71...) = 14285 ps, so 14284 ps holds 9 cycles and 14285 ps 10.
    CHECK(clk.cycles_in(Tick::from_ps(14'284)) == Cycles{9});
    CHECK(clk.cycles_in(Tick::from_ps(14'285)) == Cycles{10});
}

TEST_CASE("work of n cycles starting mid-period finishes n edges after the next edge", "[time][clock]") {
    const ClockDomain clk{1'000'000'000ULL};  // 1 ns period
    CHECK(clk.after(Tick::from_ps(1'001), Cycles{3}) == 5_ns);
    CHECK(clk.after(2_ns, Cycles{3}) == 5_ns);
    CHECK(clk.after(2_ns, Cycles{0}) == 2_ns);
}

TEST_CASE("clock conversions reject what they cannot represent", "[time][clock]") {
    CHECK_THROWS_AS(ClockDomain{0}, InternalError);
    CHECK_THROWS_AS(ClockDomain{2'000'000'000'000ULL}, InternalError);
    const ClockDomain slow{1};
    CHECK_THROWS_AS(slow.edge(Cycles{10'000'000'000}), InternalError);  // 10^22 ps > 2^63
    CHECK_THROWS_AS(slow.edge(Cycles{-1}), InternalError);
}
