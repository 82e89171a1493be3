#include "sim/core/time.h"

#include <fmt/format.h>

#include <cmath>
#include <ostream>

#include "sim/config/error.h"

namespace mlsim {

namespace detail {

void simulated_time_overflow(const char* what) {
    throw cfg::UserError(fmt::format(
        "error: the run's simulated time outgrows 64-bit picoseconds (2^63 ps, about 106 days) in {}: its "
        "inputs (a slow link, a large transfer or batch) make it longer than mlsim represents",
        what));
}

}  // namespace detail

Tick Tick::from_seconds(double seconds) {
    MLSIM_CHECK(std::isfinite(seconds), "time in seconds is not finite");
    const double ps = std::round(seconds * 1e12);
    // 2^63 is exactly representable; anything at or beyond it does not fit in int64.
    if (ps >= 9223372036854775808.0)
        detail::simulated_time_overflow(fmt::format("a duration of {:.3g} s", seconds).c_str());
    MLSIM_CHECK(ps >= -9223372036854775808.0,
                fmt::format("{} s does not fit in 64-bit picoseconds", seconds));
    return Tick{static_cast<rep>(ps)};
}

std::string to_string(Tick t) { return fmt::format("{} ps", t.ps()); }
std::string to_string(Cycles c) { return fmt::format("{} cycles", c.count()); }
std::ostream& operator<<(std::ostream& os, Tick t) { return os << t.ps() << " ps"; }
std::ostream& operator<<(std::ostream& os, Cycles c) { return os << c.count() << " cycles"; }

}  // namespace mlsim
