#include "cli/format.h"

#include <fmt/format.h>

#include <cmath>

namespace mlsim::cli {

std::string si(double value, const char* unit, int digits) {
    if (value == 0 || !std::isfinite(value)) return fmt::format("{} {}", value, unit);
    static const struct {
        double scale;
        const char* prefix;
    } prefixes[] = {{1e15, "P"}, {1e12, "T"}, {1e9, "G"},  {1e6, "M"},  {1e3, "k"},
                    {1, ""},     {1e-3, "m"}, {1e-6, "u"}, {1e-9, "n"}, {1e-12, "p"}};
    const double mag = std::fabs(value);
    for (const auto& p : prefixes) {
        if (mag >= p.scale * 0.9995)
            return fmt::format("{:.{}g} {}{}", value / p.scale, digits, p.prefix, unit);
    }
    return fmt::format("{:.{}g} f{}", value / 1e-15, digits, unit);
}

std::string seconds(double s) { return si(s, "s"); }

std::string percent(double fraction) { return fmt::format("{:.1f}%", fraction * 100); }

}  // namespace mlsim::cli
