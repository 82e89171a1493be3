#include "sim/config/units.h"

#include <fmt/format.h>

#include <cmath>
#include <vector>

#include "sim/config/number.h"
#include "sim/config/schema.h"
#include "sim/core/check.h"

namespace mlsim::cfg {

namespace {

// A unit scales its number by 10^pow10 * factor; factor is a power of two (binary prefixes, bits
// as 1/8 byte) so that the product stays exact and the decimal part rounds only once.
struct Unit {
    std::string text;
    Dim dim;
    int pow10;
    double factor;
};

struct Prefix {
    std::string_view text;
    int pow10;
};

std::vector<Unit> build_units() {
    std::vector<Unit> units;
    for (Prefix p : {Prefix{"p", -12}, Prefix{"n", -9}, Prefix{"u", -6}, Prefix{"m", -3}, Prefix{"", 0}})
        units.push_back({fmt::format("{}s", p.text), Dim::time, p.pow10, 1.0});
    for (Prefix p : {Prefix{"", 0}, Prefix{"k", 3}, Prefix{"M", 6}, Prefix{"G", 9}})
        units.push_back({fmt::format("{}Hz", p.text), Dim::frequency, p.pow10, 1.0});

    // Sizes: bytes then bits, decimal then binary prefixes; bandwidths are the same over /s.
    std::vector<Unit> sizes;
    for (auto [letter, factor] : {std::pair<std::string_view, double>{"B", 1.0}, {"b", 0.125}}) {
        sizes.push_back({std::string(letter), Dim::size, 0, factor});
        for (Prefix p : {Prefix{"K", 3}, Prefix{"M", 6}, Prefix{"G", 9}, Prefix{"T", 12}})
            sizes.push_back({fmt::format("{}{}", p.text, letter), Dim::size, p.pow10, factor});
        int shift = 10;
        for (std::string_view p : {"Ki", "Mi", "Gi", "Ti"}) {
            sizes.push_back({fmt::format("{}{}", p, letter), Dim::size, 0, std::ldexp(factor, shift)});
            shift += 10;
        }
    }
    for (const Unit& u : sizes) units.push_back(u);
    for (const Unit& u : sizes) units.push_back({u.text + "/s", Dim::bandwidth, u.pow10, u.factor});

    std::vector<Prefix> energy = {{"f", -15}, {"p", -12}, {"n", -9}, {"u", -6}, {"m", -3}, {"", 0}};
    for (Prefix p : energy) units.push_back({fmt::format("{}J", p.text), Dim::energy, p.pow10, 1.0});
    for (Prefix p : energy)
        units.push_back({fmt::format("{}J/B", p.text), Dim::energy_per_byte, p.pow10, 1.0});
    for (Prefix p : energy)
        units.push_back({fmt::format("{}J/b", p.text), Dim::energy_per_byte, p.pow10, 8.0});
    for (Prefix p : {Prefix{"u", -6}, Prefix{"m", -3}, Prefix{"", 0}, Prefix{"k", 3}})
        units.push_back({fmt::format("{}W", p.text), Dim::power, p.pow10, 1.0});
    for (std::string_view form : {"OP/s", "FLOP/s", "OPS", "FLOPS"}) {
        for (Prefix p : {Prefix{"", 0}, Prefix{"k", 3}, Prefix{"M", 6}, Prefix{"G", 9}, Prefix{"T", 12},
                         Prefix{"P", 15}})
            units.push_back({fmt::format("{}{}", p.text, form), Dim::throughput, p.pow10, 1.0});
    }
    return units;
}

const std::vector<Unit>& units() {
    static const std::vector<Unit> table = build_units();
    return table;
}

const Unit* find_unit(std::string_view text) {
    for (const Unit& u : units()) {
        if (u.text == text) return &u;
    }
    return nullptr;
}

std::vector<std::string> unit_names(Dim d) {
    std::vector<std::string> names;
    for (const Unit& u : units()) {
        if (u.dim == d) names.push_back(u.text);
    }
    return names;
}

// Splits "2039 GB/s" into its number and unit text. Between them at most one space.
struct Split {
    detail::ScannedNumber number;
    std::string_view unit;
};

std::optional<Split> split(std::string_view text) {
    auto n = detail::scan_number(text);
    if (!n) return std::nullopt;
    std::string_view rest = text.substr(n->length);
    if (!rest.empty() && rest.front() == ' ') rest.remove_prefix(1);
    return Split{*n, rest};
}

std::string_view trim(std::string_view s) {
    while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) s.remove_prefix(1);
    while (!s.empty() && (s.back() == ' ' || s.back() == '\t')) s.remove_suffix(1);
    return s;
}

// Output prefixes per dimension, smallest first; every unit written here parses back.
std::vector<std::pair<int, std::string>> output_units(Dim d) {
    auto with = [](std::vector<std::pair<int, std::string_view>> prefixes, std::string_view base) {
        std::vector<std::pair<int, std::string>> out;
        for (auto [p, t] : prefixes) out.emplace_back(p, fmt::format("{}{}", t, base));
        return out;
    };
    std::vector<std::pair<int, std::string_view>> bytes = {{0, ""}, {3, "K"}, {6, "M"}, {9, "G"}, {12, "T"}};
    std::vector<std::pair<int, std::string_view>> joules = {{-15, "f"}, {-12, "p"}, {-9, "n"},
                                                            {-6, "u"},  {-3, "m"},  {0, ""}};
    switch (d) {
        case Dim::time:
            return with({{-12, "p"}, {-9, "n"}, {-6, "u"}, {-3, "m"}, {0, ""}}, "s");
        case Dim::frequency:
            return with({{0, ""}, {3, "k"}, {6, "M"}, {9, "G"}}, "Hz");
        case Dim::size:
            return with(bytes, "B");
        case Dim::bandwidth:
            return with(bytes, "B/s");
        case Dim::energy:
            return with(joules, "J");
        case Dim::energy_per_byte:
            return with(joules, "J/B");
        case Dim::power:
            return with({{-6, "u"}, {-3, "m"}, {0, ""}, {3, "k"}}, "W");
        case Dim::throughput:
            return with({{0, ""}, {3, "k"}, {6, "M"}, {9, "G"}, {12, "T"}, {15, "P"}}, "FLOP/s");
    }
    MLSIM_CHECK(false, "unknown dimension");
    return {};
}

std::string format_mantissa(double m) {
    if (std::fabs(m) >= 1e4) return fmt::format("{:.0f}", m);
    return fmt::format("{:.4g}", m);
}

// "40 MiB" when the value is a whole number of KiB/MiB/GiB/TiB but not a whole number of the
// decimal unit it would otherwise be written in.
std::optional<std::string> binary_text(double value, Dim d, double decimal_mantissa) {
    if (d != Dim::size && d != Dim::bandwidth) return std::nullopt;
    if (value < 1024 || value != std::floor(value) || decimal_mantissa == std::floor(decimal_mantissa))
        return std::nullopt;
    std::string_view suffix = d == Dim::size ? "B" : "B/s";
    constexpr std::string_view names[] = {"Ki", "Mi", "Gi", "Ti"};
    for (int k = 4; k >= 1; --k) {
        double unit = std::ldexp(1.0, 10 * k);
        if (value >= unit && std::fmod(value, unit) == 0) {
            // 19.5e12 is a whole number of KiB too, but "19042968750 KiB" helps nobody.
            double mantissa = value / unit;
            if (mantissa >= 1024 && k < 4) return std::nullopt;
            return fmt::format("{} {}{}", format_mantissa(mantissa), names[k - 1], suffix);
        }
    }
    return std::nullopt;
}

}  // namespace

std::string_view dim_name(Dim d) {
    switch (d) {
        case Dim::time:
            return "a time";
        case Dim::frequency:
            return "a frequency";
        case Dim::size:
            return "a size";
        case Dim::bandwidth:
            return "a bandwidth";
        case Dim::energy:
            return "an energy";
        case Dim::energy_per_byte:
            return "an energy per byte";
        case Dim::power:
            return "a power";
        case Dim::throughput:
            return "a throughput";
    }
    MLSIM_CHECK(false, "unknown dimension");
    return {};
}

std::string_view dim_example(Dim d) {
    switch (d) {
        case Dim::time:
            return "5ns";
        case Dim::frequency:
            return "1.41GHz";
        case Dim::size:
            return "40MiB";
        case Dim::bandwidth:
            return "2039GB/s";
        case Dim::energy:
            return "0.9pJ";
        case Dim::energy_per_byte:
            return "7pJ/B";
        case Dim::power:
            return "400W";
        case Dim::throughput:
            return "312TFLOP/s";
    }
    MLSIM_CHECK(false, "unknown dimension");
    return {};
}

std::optional<Quantity> parse_quantity_any(std::string_view text) {
    auto parts = split(trim(text));
    if (!parts) return std::nullopt;
    const Unit* unit = find_unit(parts->unit);
    if (!unit) return std::nullopt;
    auto value = detail::number_value(parts->number, unit->pow10);
    if (!value) return std::nullopt;
    return Quantity{*value * unit->factor, unit->dim};
}

Quantity parse_quantity(std::string_view text, Dim expected, const SourceLoc& loc,
                        std::string_view key_path) {
    auto expectation = fmt::format("expected {} (e.g. \"{}\")", dim_name(expected), dim_example(expected));
    auto parts = split(trim(text));
    if (!parts) fail(loc, key_path, fmt::format("{}, found \"{}\"", expectation, text));
    if (parts->unit.empty())
        fail(loc, key_path,
             fmt::format("expected {} with a unit (e.g. \"{}\"), found \"{}\" (no unit)", dim_name(expected),
                         dim_example(expected), text));
    const Unit* unit = find_unit(parts->unit);
    if (!unit) {
        std::vector<std::string> names = unit_names(expected);
        std::string hint;
        // Suggest a unit of the expected dimension that differs only in case or by a typo.
        std::string suggestion = nearest(parts->unit, names);
        if (!suggestion.empty()) hint = fmt::format("; did you mean '{}'?", suggestion);
        fail(loc, key_path,
             fmt::format("{}, found \"{}\": unknown unit '{}'{} (units for {}: {})", expectation, text,
                         parts->unit, hint, dim_name(expected).substr(dim_name(expected).find(' ') + 1),
                         fmt::join(names, ", ")));
    }
    if (unit->dim != expected)
        fail(loc, key_path, fmt::format("{}, found \"{}\" ({})", expectation, text, dim_name(unit->dim)));
    auto value = detail::number_value(parts->number, unit->pow10);
    if (!value)
        fail(loc, key_path, fmt::format("{}, found \"{}\": the number is out of range", expectation, text));
    return Quantity{*value * unit->factor, expected};
}

std::string format_quantity(double value, Dim dim) {
    auto prefixes = output_units(dim);
    if (value == 0 || !std::isfinite(value)) {
        for (const auto& [p, unit] : prefixes) {
            if (p == 0) return fmt::format("{} {}", value == 0 ? 0.0 : value, unit);
        }
    }
    double magnitude = std::fabs(value);
    std::size_t chosen = 0;
    for (std::size_t i = 0; i < prefixes.size(); ++i) {
        if (magnitude >= std::pow(10.0, prefixes[i].first)) chosen = i;
    }
    double mantissa = value / std::pow(10.0, prefixes[chosen].first);
    // 999.96 kHz rounds to "1000 kHz"; write it as "1 MHz" instead.
    if (chosen + 1 < prefixes.size() && std::fabs(std::stod(fmt::format("{:.4g}", mantissa))) >= 1000) {
        ++chosen;
        mantissa = value / std::pow(10.0, prefixes[chosen].first);
    }
    if (auto binary = binary_text(value, dim, mantissa)) return *binary;
    return fmt::format("{} {}", format_mantissa(mantissa), prefixes[chosen].second);
}

}  // namespace mlsim::cfg
