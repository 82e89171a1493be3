#pragma once
// Strict number scanning shared by Node's typed views and the unit parser (internal to sim/config).
// Accepts [+-]digits[.digits][(e|E)[+-]digits] (a leading or trailing '.' is fine: ".5", "5.");
// rejects hex, inf, nan, underscores and surrounding spaces, so "1e9" is a number and "1e9Hz" is a
// number followed by a unit.
#include <cstddef>
#include <cstdint>
#include <optional>
#include <string_view>

namespace mlsim::cfg::detail {

struct ScannedNumber {
    std::string_view mantissa;  // sign, digits and point, without the exponent
    int64_t exponent = 0;       // the written base-10 exponent (0 when none)
    std::size_t length = 0;     // characters consumed from the start of the text
};

// Scans the longest number at the start of `text`; nullopt when it does not start with one.
std::optional<ScannedNumber> scan_number(std::string_view text);

// The double nearest to mantissa * 10^(exponent + extra_exponent); nullopt when it overflows.
std::optional<double> number_value(const ScannedNumber& n, int64_t extra_exponent = 0);

// The whole text must be a number.
std::optional<double> parse_real(std::string_view text);
std::optional<int64_t> parse_integer(std::string_view text);  // nullopt also when out of range

}  // namespace mlsim::cfg::detail
