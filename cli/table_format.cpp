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

namespace {

// The columns a terminal gives one character: 0 for a combining mark, 2 for an East Asian wide or fullwidth
// character or an emoji (Unicode Standard Annex #11 and the Unicode character database; the main blocks, not
// every code point), 1 otherwise.
int columns(char32_t c) {
    const auto in = [c](char32_t lo, char32_t hi) { return c >= lo && c <= hi; };
    if (in(0x0300, 0x036F) || in(0x1AB0, 0x1AFF) || in(0x1DC0, 0x1DFF) || in(0x20D0, 0x20FF) ||
        in(0xFE00, 0xFE0F) || in(0xFE20, 0xFE2F) || c == 0x200D)
        return 0;  // combining marks, variation selectors, the zero-width joiner
    if (in(0x1100, 0x115F) || in(0x2E80, 0x303E) || in(0x3041, 0x33FF) || in(0x3400, 0x4DBF) ||
        in(0x4E00, 0x9FFF) || in(0xA000, 0xA4CF) || in(0xAC00, 0xD7A3) || in(0xF900, 0xFAFF) ||
        in(0xFE30, 0xFE4F) || in(0xFF00, 0xFF60) || in(0xFFE0, 0xFFE6) || in(0x1F300, 0x1F64F) ||
        in(0x1F680, 0x1F6FF) || in(0x1F900, 0x1F9FF) || in(0x20000, 0x3FFFD))
        return 2;
    return 1;
}

}  // namespace

std::size_t display_width(std::string_view s) {
    std::size_t n = 0;
    for (std::size_t i = 0; i < s.size();) {
        const auto b = static_cast<unsigned char>(s[i]);
        // The code point's length from its lead byte; a stray continuation byte or a cut sequence counts as
        // one column a byte.
        const std::size_t len = b < 0x80           ? 1
                                : (b >> 5) == 0x6  ? 2
                                : (b >> 4) == 0xE  ? 3
                                : (b >> 3) == 0x1E ? 4
                                                   : 1;
        if (len == 1 || i + len > s.size()) {
            ++n;
            ++i;
            continue;
        }
        char32_t c = b & (0x7F >> len);
        bool ok = true;
        for (std::size_t k = 1; k < len; ++k) {
            const auto cont = static_cast<unsigned char>(s[i + k]);
            ok = ok && (cont & 0xC0) == 0x80;
            c = (c << 6) | (cont & 0x3F);
        }
        if (!ok) {
            ++n;
            ++i;
            continue;
        }
        n += static_cast<std::size_t>(columns(c));
        i += len;
    }
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
