#include "cli/table_format.h"

#include <fmt/format.h>

#include <algorithm>
#include <cmath>

namespace mlsim::cli {

namespace {

struct Prefix {
    double scale;
    const char* text;
};
constexpr Prefix k_prefixes[] = {{1e15, "P"}, {1e12, "T"}, {1e9, "G"},  {1e6, "M"},  {1e3, "k"},
                                 {1, ""},     {1e-3, "m"}, {1e-6, "µ"}, {1e-9, "n"}, {1e-12, "p"}};
constexpr std::size_t k_unit = 5;  // index of the prefix "" in k_prefixes

// Rounds to 3 significant digits as fixed3 prints them.
double round3(double m) {
    const double a = std::fabs(m);
    const int decimals = a >= 100 ? 0 : a >= 10 ? 1 : 2;
    const double f = std::pow(10.0, decimals);
    return std::round(a * f) / f;
}

}  // namespace

std::string fixed3(double m) {
    const double a = std::fabs(m);
    const int decimals = a >= 99.95 ? 0 : a >= 9.995 ? 1 : 2;
    return fmt::format("{:.{}f}", m, decimals);
}

std::string human(double value, std::string_view unit, bool small) {
    if (!std::isfinite(value)) return "-";
    const std::string sep = unit.empty() ? "" : " ";
    if (value == 0) return fmt::format("0{}{}", sep, unit);
    const double a = std::fabs(value);
    const std::size_t last = small ? std::size(k_prefixes) - 1 : k_unit;
    std::size_t i = 0;
    while (i < last && a < k_prefixes[i].scale) ++i;
    // Rounding may carry the mantissa to 1000: then the next larger prefix.
    if (i > 0 && round3(a / k_prefixes[i].scale) >= 1000) --i;
    const double m = value / k_prefixes[i].scale;
    // A million times the largest prefix and beyond (1e21, past any figure a real system gives): exponent
    // notation, not a number of many digits.
    if (i == 0 && std::fabs(m) >= 1e6) return fmt::format("{:.2e}{}{}", value, sep, unit);
    std::string text;
    if (std::fabs(m) < 0.995) {
        // Below the smallest prefix allowed: fixed-point with 3 significant digits.
        const int decimals = std::min(12, 2 - static_cast<int>(std::floor(std::log10(std::fabs(m)))));
        text = fmt::format("{:.{}f}", m, decimals);
    } else {
        text = fixed3(m);
    }
    const std::string p = k_prefixes[i].text;
    if (p.empty() && unit.empty()) return text;
    return fmt::format("{} {}{}", text, p, unit);
}

std::string duration(double s) {
    if (!std::isfinite(s)) return "-";
    if (s < 60) return human(s, "s");
    if (s < 3600) return fixed3(s / 60) + " min";
    if (s < 86400 * 2) return fixed3(s / 3600) + " h";
    return human(s / 86400, "d", false);
}

std::string dollars(double usd) {
    if (!std::isfinite(usd)) return "-";
    std::string text = human(usd, "", false);
    if (const auto space = text.find(' '); space != std::string::npos) text.erase(space, 1);  // "4.56k"
    return fmt::format("${}", text);
}

std::size_t display_width(std::string_view s) {
    std::size_t n = 0;
    for (unsigned char c : s)
        if ((c & 0xC0) != 0x80) ++n;  // count lead bytes only
    return n;
}

std::string format_table(const std::vector<std::vector<std::string>>& rows, const std::vector<bool>& right) {
    std::vector<std::size_t> width(right.size(), 0);
    for (const auto& row : rows) {
        if (row.size() == 1) continue;
        for (std::size_t i = 0; i < row.size() && i < width.size(); ++i)
            width[i] = std::max(width[i], display_width(row[i]));
    }
    std::string out;
    for (const auto& row : rows) {
        std::string line;
        if (row.size() == 1) {
            line = row[0];
        } else {
            for (std::size_t i = 0; i < row.size() && i < width.size(); ++i) {
                if (i) line += "  ";
                const std::size_t pad = width[i] - display_width(row[i]);
                if (right[i]) line.append(pad, ' ');
                line.append(row[i]);
                if (!right[i]) line.append(pad, ' ');
            }
        }
        while (!line.empty() && line.back() == ' ') line.pop_back();
        out.append(line);
        out.push_back('\n');
    }
    return out;
}

}  // namespace mlsim::cli
