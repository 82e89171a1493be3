#pragma once
// Simulated time and cycle counts.
//
// Promises: `Tick` is an exact signed 64-bit count of picoseconds and `Cycles` an exact signed 64-bit
// count of clock cycles; they are distinct types with no implicit conversion to each other or to raw
// integers, so a cycle count can never be scheduled as a time by accident. Only `ClockDomain`
// (clock_domain.h) converts between them. Integer arithmetic that would overflow int64 throws instead of
// wrapping, because a wrapped time silently reorders events: a cfg::UserError when the run's own durations
// grow past 2^63 ps (about 106 days; a duration in seconds beyond it, or a sum of two non-negative times, as
// a link of 1 kB/s makes), an InternalError for anything else (a sentinel such as Tick::max() in a sum).
#include <compare>
#include <cstdint>
#include <iosfwd>
#include <limits>
#include <string>

#include "sim/core/check.h"

namespace mlsim {

namespace detail {

// Throws the UserError of a run whose simulated time outgrows 64-bit picoseconds; `what` says where.
[[noreturn]] void simulated_time_overflow(const char* what);

constexpr std::int64_t checked_add(std::int64_t a, std::int64_t b) {
    std::int64_t r = 0;
    if (__builtin_add_overflow(a, b, &r)) {
        constexpr std::int64_t top = std::numeric_limits<std::int64_t>::max();
        if (a >= 0 && b >= 0 && a != top && b != top) simulated_time_overflow("a sum of two times");
        MLSIM_CHECK(false, "64-bit time/cycle addition overflows");
    }
    return r;
}

constexpr std::int64_t checked_sub(std::int64_t a, std::int64_t b) {
    std::int64_t r = 0;
    MLSIM_CHECK(!__builtin_sub_overflow(a, b, &r), "64-bit time/cycle subtraction overflows");
    return r;
}

constexpr std::int64_t checked_mul(std::int64_t a, std::int64_t b) {
    std::int64_t r = 0;
    MLSIM_CHECK(!__builtin_mul_overflow(a, b, &r), "64-bit time/cycle multiplication overflows");
    return r;
}

}  // namespace detail

class Tick {
  public:
    using rep = std::int64_t;

    constexpr Tick() noexcept = default;

    static constexpr Tick from_ps(rep ps) noexcept { return Tick{ps}; }
    static constexpr Tick from_ns(rep ns) { return Tick{detail::checked_mul(ns, 1'000)}; }
    static constexpr Tick from_us(rep us) { return Tick{detail::checked_mul(us, 1'000'000)}; }
    static constexpr Tick from_ms(rep ms) { return Tick{detail::checked_mul(ms, 1'000'000'000)}; }
    // Rounds to the nearest picosecond; NaN, infinities and out-of-range values are rejected.
    static Tick from_seconds(double seconds);
    static constexpr Tick zero() noexcept { return Tick{0}; }
    static constexpr Tick max() noexcept { return Tick{std::numeric_limits<rep>::max()}; }

    constexpr rep ps() const noexcept { return m_ps; }
    double to_seconds() const noexcept { return static_cast<double>(m_ps) * 1e-12; }

    constexpr Tick& operator+=(Tick o) {
        m_ps = detail::checked_add(m_ps, o.m_ps);
        return *this;
    }
    constexpr Tick& operator-=(Tick o) {
        m_ps = detail::checked_sub(m_ps, o.m_ps);
        return *this;
    }
    friend constexpr Tick operator+(Tick a, Tick b) { return a += b; }
    friend constexpr Tick operator-(Tick a, Tick b) { return a -= b; }
    friend constexpr Tick operator-(Tick a) { return Tick{detail::checked_sub(0, a.m_ps)}; }
    friend constexpr Tick operator*(Tick a, rep k) { return Tick{detail::checked_mul(a.m_ps, k)}; }
    friend constexpr Tick operator*(rep k, Tick a) { return a * k; }
    // Truncates toward zero, like integer division.
    friend constexpr Tick operator/(Tick a, rep k) {
        MLSIM_CHECK(k != 0, "Tick divided by zero");
        return Tick{a.m_ps / k};
    }
    // How many whole `b` fit in `a` (truncating).
    friend constexpr rep operator/(Tick a, Tick b) {
        MLSIM_CHECK(b.m_ps != 0, "Tick divided by a zero Tick");
        return a.m_ps / b.m_ps;
    }
    friend constexpr Tick operator%(Tick a, Tick b) {
        MLSIM_CHECK(b.m_ps != 0, "Tick modulo a zero Tick");
        return Tick{a.m_ps % b.m_ps};
    }
    friend constexpr auto operator<=>(Tick, Tick) noexcept = default;

  private:
    explicit constexpr Tick(rep ps) noexcept : m_ps(ps) {}
    rep m_ps = 0;
};

class Cycles {
  public:
    using rep = std::int64_t;

    constexpr Cycles() noexcept = default;
    explicit constexpr Cycles(rep n) noexcept : m_n(n) {}

    constexpr rep count() const noexcept { return m_n; }

    constexpr Cycles& operator+=(Cycles o) {
        m_n = detail::checked_add(m_n, o.m_n);
        return *this;
    }
    constexpr Cycles& operator-=(Cycles o) {
        m_n = detail::checked_sub(m_n, o.m_n);
        return *this;
    }
    friend constexpr Cycles operator+(Cycles a, Cycles b) { return a += b; }
    friend constexpr Cycles operator-(Cycles a, Cycles b) { return a -= b; }
    friend constexpr Cycles operator*(Cycles a, rep k) { return Cycles{detail::checked_mul(a.m_n, k)}; }
    friend constexpr Cycles operator*(rep k, Cycles a) { return a * k; }
    friend constexpr auto operator<=>(Cycles, Cycles) noexcept = default;

  private:
    rep m_n = 0;
};

std::string to_string(Tick t);    // "1234 ps"
std::string to_string(Cycles c);  // "1234 cycles"
std::ostream& operator<<(std::ostream& os, Tick t);
std::ostream& operator<<(std::ostream& os, Cycles c);

namespace literals {

constexpr Tick operator""_ps(unsigned long long v) {
    MLSIM_CHECK(v <= static_cast<unsigned long long>(std::numeric_limits<Tick::rep>::max()),
                "literal too big");
    return Tick::from_ps(static_cast<Tick::rep>(v));
}
constexpr Tick operator""_ns(unsigned long long v) { return Tick::from_ns(operator""_ps(v).ps()); }
constexpr Tick operator""_us(unsigned long long v) { return Tick::from_us(operator""_ps(v).ps()); }
constexpr Tick operator""_ms(unsigned long long v) { return Tick::from_ms(operator""_ps(v).ps()); }
constexpr Cycles operator""_cycles(unsigned long long v) { return Cycles{operator""_ps(v).ps()}; }

}  // namespace literals

}  // namespace mlsim
