#include "sim/config/number.h"

#include <charconv>
#include <cmath>
#include <string>

namespace mlsim::cfg::detail {

namespace {

bool is_digit(char c) { return c >= '0' && c <= '9'; }

}  // namespace

std::optional<ScannedNumber> scan_number(std::string_view text) {
    std::size_t i = 0;
    if (i < text.size() && (text[i] == '+' || text[i] == '-')) ++i;
    std::size_t digits = 0;
    while (i < text.size() && is_digit(text[i])) {
        ++i;
        ++digits;
    }
    if (i < text.size() && text[i] == '.') {
        ++i;
        while (i < text.size() && is_digit(text[i])) {
            ++i;
            ++digits;
        }
    }
    if (digits == 0) return std::nullopt;
    ScannedNumber n;
    n.mantissa = text.substr(0, i);
    // An exponent only counts when digits follow, so "5e" or "5eV" leave the 'e' to the unit.
    if (i < text.size() && (text[i] == 'e' || text[i] == 'E')) {
        std::size_t j = i + 1;
        bool negative = false;
        if (j < text.size() && (text[j] == '+' || text[j] == '-')) {
            negative = text[j] == '-';
            ++j;
        }
        if (j < text.size() && is_digit(text[j])) {
            int64_t e = 0;
            while (j < text.size() && is_digit(text[j])) {
                // Saturate: anything this large over- or underflows a double anyway.
                if (e < 100000) e = e * 10 + (text[j] - '0');
                ++j;
            }
            n.exponent = negative ? -e : e;
            i = j;
        }
    }
    n.length = i;
    return n;
}

std::optional<double> number_value(const ScannedNumber& n, int64_t extra_exponent) {
    // Rebuild the text with the exponent folded in, so that "1.41" with a giga prefix reads as
    // "1.41e9" and rounds once (1.41 * 1e9 in floating point would round twice).
    std::string_view m = n.mantissa;
    if (!m.empty() && m.front() == '+') m.remove_prefix(1);
    std::string text(m);
    text += 'e';
    text += std::to_string(n.exponent + extra_exponent);
    double value = 0;
    auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), value);
    if (ec == std::errc::result_out_of_range) {
        // Underflow to zero is harmless; overflow is not.
        bool tiny = n.exponent + extra_exponent < 0;
        if (tiny) return m.front() == '-' ? -0.0 : 0.0;
        return std::nullopt;
    }
    if (ec != std::errc() || end != text.data() + text.size() || !std::isfinite(value)) return std::nullopt;
    return value;
}

std::optional<double> parse_real(std::string_view text) {
    auto n = scan_number(text);
    if (!n || n->length != text.size()) return std::nullopt;
    return number_value(*n);
}

std::optional<int64_t> parse_integer(std::string_view text) {
    std::size_t start = 0;
    if (!text.empty() && text[0] == '+') start = 1;
    if (start == text.size()) return std::nullopt;
    for (std::size_t i = start; i < text.size(); ++i) {
        if (!is_digit(text[i]) && !(i == start && text[i] == '-' && start == 0)) return std::nullopt;
    }
    int64_t value = 0;
    auto [end, ec] = std::from_chars(text.data() + start, text.data() + text.size(), value);
    if (ec != std::errc() || end != text.data() + text.size()) return std::nullopt;
    return value;
}

}  // namespace mlsim::cfg::detail
