#pragma once
// Number formatting for tables: SI prefixes with decimal meanings (k = 1e3, M = 1e6, G = 1e9), fixed width.
#include <string>

namespace mlsim::cli {

std::string si(double value, const char* unit, int digits = 3);  // "4.11 GMAC", "1.23 ms", "0 B"
std::string seconds(double s);                                   // "812 ns", "1.23 ms", "4.5 s"
std::string percent(double fraction);                            // "87.5%"

}  // namespace mlsim::cli
