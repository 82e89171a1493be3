#pragma once
// Fixed-point figures with human-scale prefixes for terminal tables, and a table printer that aligns
// columns by what a terminal shows (UTF-8 code points, so "µs" is two columns wide).
// Contract: every figure is fixed-point (never exponent notation), three significant digits, with the
// decimal prefix that keeps the mantissa in [1, 1000) (rounding that reaches 1000 moves to the next
// prefix); values beyond the largest or smallest prefix stay fixed-point at that prefix. Non-finite
// values print as "-".
#include <string>
#include <string_view>
#include <vector>

namespace mlsim::cli {

// 3 significant digits, fixed-point: "1.23", "12.3", "123".
std::string fixed3(double mantissa);
// With a decimal prefix (P T G M k, m µ n p): "14.4 ks", "312 µs", "4.85 mJ", "0 W". `small` allows
// the prefixes below 1 (a count of samples per second does not take them: 0.500, not 500 m).
std::string human(double value, std::string_view unit, bool small = true);
// A duration for people: "812 µs", "4.52 s", "3.40 min", "2.10 h", "12.0 d".
std::string duration(double seconds);
// US dollars: "$0.0412", "$12.3", "$4.56k".
std::string dollars(double usd);

// Columns as wide as their widest cell (display width); `right` aligns a column to the right. A row
// with a single cell is printed as it is (a message line).
std::string format_table(const std::vector<std::vector<std::string>>& rows, const std::vector<bool>& right);
std::size_t display_width(std::string_view s);

}  // namespace mlsim::cli
