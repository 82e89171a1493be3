#pragma once
// A clock domain: the only place where cycles become time and time becomes cycles.
//
// Promises: edge n of a clock of f Hz lies at exactly floor(n * 10^12 / f) ps, computed with 128-bit
// integers, so there is no drift however large n grows (adding a rounded period would drift by up to
// n/2 ps). Edge 0 is at time 0. The inverse functions are exact on this same grid:
// edge_at_or_after(edge(n)) == n and cycles_in(edge(n)) == n for every n.
// Assumes: 1 Hz <= f <= 1 THz (at most one edge per picosecond, so edges are distinct ticks); times
// and cycle counts passed in are non-negative and results fit in 64 bits (checked).
#include <cstdint>

#include "sim/core/check.h"
#include "sim/core/time.h"

namespace mlsim {

class ClockDomain {
  public:
    static constexpr std::uint64_t k_ps_per_second = 1'000'000'000'000ULL;

    explicit ClockDomain(std::uint64_t frequency_hz) : m_hz(frequency_hz) {
        MLSIM_CHECK(frequency_hz >= 1 && frequency_hz <= k_ps_per_second,
                    "clock frequency must lie in [1 Hz, 1 THz]");
    }

    std::uint64_t frequency_hz() const noexcept { return m_hz; }

    // Time of edge n: floor(n * 1e12 / f).
    Tick edge(Cycles n) const {
        MLSIM_CHECK(n.count() >= 0, "negative cycle index");
        const u128 ps = static_cast<u128>(n.count()) * k_ps_per_second / m_hz;
        return Tick::from_ps(narrow(ps));
    }

    // Index of the first edge at or after t: the smallest n with edge(n) >= t, i.e. ceil(t * f / 1e12).
    Cycles edge_at_or_after(Tick t) const {
        MLSIM_CHECK(t.ps() >= 0, "negative time");
        const u128 num = static_cast<u128>(t.ps()) * m_hz;
        return Cycles{narrow((num + k_ps_per_second - 1) / k_ps_per_second)};
    }

    // Time of the first edge at or after t (t itself when t lies on an edge).
    Tick next_edge(Tick t) const { return edge(edge_at_or_after(t)); }

    // Whole cycles completed in a duration d measured from an edge: the largest n with edge(n) <= d.
    Cycles cycles_in(Tick d) const {
        MLSIM_CHECK(d.ps() >= 0, "negative duration");
        return edge_at_or_after(Tick::from_ps(d.ps()) + Tick::from_ps(1)) - Cycles{1};
    }

    // When n cycles that start on the first edge at or after t end: what a unit clocked by this domain
    // that becomes ready at t and needs n cycles reports as its finish time.
    Tick after(Tick t, Cycles n) const { return edge(edge_at_or_after(t) + n); }

  private:
    using u128 = unsigned __int128;

    static std::int64_t narrow(u128 v) {
        MLSIM_CHECK(v <= static_cast<u128>(INT64_MAX), "clock conversion does not fit in 64 bits");
        return static_cast<std::int64_t>(v);
    }

    std::uint64_t m_hz;
};

}  // namespace mlsim
