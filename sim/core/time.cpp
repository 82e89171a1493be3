#include "sim/core/time.h"

#include <fmt/format.h>

#include <cmath>
#include <ostream>

namespace mlsim {

Tick Tick::from_seconds(double seconds) {
    MLSIM_CHECK(std::isfinite(seconds), "time in seconds is not finite");
    const double ps = std::round(seconds * 1e12);
    // 2^63 is exactly representable; anything at or beyond it does not fit in int64.
    MLSIM_CHECK(ps < 9223372036854775808.0 && ps >= -9223372036854775808.0,
                fmt::format("{} s does not fit in 64-bit picoseconds", seconds));
    return Tick{static_cast<rep>(ps)};
}

std::string to_string(Tick t) { return fmt::format("{} ps", t.ps()); }
std::string to_string(Cycles c) { return fmt::format("{} cycles", c.count()); }
std::ostream& operator<<(std::ostream& os, Tick t) { return os << t.ps() << " ps"; }
std::ostream& operator<<(std::ostream& os, Cycles c) { return os << c.count() << " cycles"; }

}  // namespace mlsim
