#pragma once
// Physical quantities in configs. Every quantity is written with its unit ("1.41GHz", "2039GB/s",
// "40MiB", "0.9pJ", "312TFLOP/s") and parsed into a value in SI base units of its dimension.
// KB/MB/GB/TB are powers of ten, KiB/MiB/GiB/TiB powers of two, everywhere, output included.
// A lower-case 'b' means bits (Gb/s, Kib); upper-case 'B' means bytes.
#include <optional>
#include <string>
#include <string_view>

#include "sim/config/error.h"

namespace mlsim::cfg {

enum class Dim {
    time,             // s       : ps ns us ms s
    frequency,        // Hz      : Hz kHz MHz GHz
    size,             // bytes   : B KB KiB MB MiB GB GiB TB TiB, and bits b Kb Kib Mb Mib Gb Gib
    bandwidth,        // bytes/s : any size unit followed by /s (B/s, GB/s, GiB/s, Gb/s, ...)
    energy,           // J       : fJ pJ nJ uJ mJ J
    energy_per_byte,  // J/byte  : an energy unit over B or b (pJ/B, pJ/b)
    power,            // W       : uW mW W kW
    throughput,       // ops/s   : OP/s, FLOP/s, OPS, FLOPS with k/M/G/T/P prefixes (TOPS, TFLOP/s)
};

struct Quantity {
    double value = 0;  // in the SI base unit of dim (s, Hz, B, B/s, J, J/B, W, op/s)
    Dim dim = Dim::size;
};

std::string_view dim_name(Dim d);     // "a time", "a frequency", "a size", ...
std::string_view dim_example(Dim d);  // "5ns", "1.41GHz", "40MiB", "2039GB/s", ...

// Parse "2039GB/s" or "2039 GB/s". Returns nullopt when the text is not a number followed by a known
// unit. parse_quantity_any figures out the dimension from the unit.
std::optional<Quantity> parse_quantity_any(std::string_view text);

// Parse a quantity of an expected dimension; throws UserError located at `loc`/`key_path` on a missing
// unit, an unknown unit, or a unit of another dimension ("expected a bandwidth, got a size").

Quantity parse_quantity(std::string_view text, Dim expected, const SourceLoc& loc, std::string_view key_path);

// Human-readable formatting with decimal prefixes ("2.04 TB/s", "40 MiB" when exact in binary).
std::string format_quantity(double value, Dim dim);

}  // namespace mlsim::cfg
