#include <catch2/catch.hpp>
#include <cmath>
#include <string>

#include "sim/config/units.h"
#include "tests/config/helpers.h"

using namespace mlsim::cfg;
using mlsim::cfg::test::error_of;

namespace {

double parse(const std::string& text, Dim dim) {
    return parse_quantity(text, dim, SourceLoc{"u.yaml", 3, 7}, "a.b").value;
}

}  // namespace

TEST_CASE("time units scale by powers of ten from ps to s", "[units]") {
    CHECK(parse("1ps", Dim::time) == 1e-12);
    CHECK(parse("1ns", Dim::time) == 1e-9);
    CHECK(parse("1us", Dim::time) == 1e-6);
    CHECK(parse("1ms", Dim::time) == 1e-3);
    CHECK(parse("2s", Dim::time) == 2.0);
    CHECK(parse("2.5ns", Dim::time) == 2.5e-9);
}

TEST_CASE("frequency units from Hz to GHz, rounded once", "[units]") {
    CHECK(parse("50Hz", Dim::frequency) == 50.0);
    CHECK(parse("3kHz", Dim::frequency) == 3e3);
    CHECK(parse("700MHz", Dim::frequency) == 7e8);
    // 1.41 * 1e9 in floating point is not 1410000000; the parser must not round twice.
    CHECK(parse("1.41GHz", Dim::frequency) == 1410000000.0);
}

TEST_CASE("decimal size prefixes are powers of ten and binary ones powers of two", "[units]") {
    CHECK(parse("7B", Dim::size) == 7.0);
    CHECK(parse("1KB", Dim::size) == 1e3);
    CHECK(parse("1KiB", Dim::size) == 1024.0);
    CHECK(parse("1MB", Dim::size) == 1e6);
    CHECK(parse("40MiB", Dim::size) == 40.0 * 1024 * 1024);
    CHECK(parse("1GB", Dim::size) == 1e9);
    CHECK(parse("1GiB", Dim::size) == 1073741824.0);
    CHECK(parse("2TB", Dim::size) == 2e12);
    CHECK(parse("1TiB", Dim::size) == std::ldexp(1.0, 40));
}

TEST_CASE("a lower-case b means bits and an upper-case B bytes", "[units]") {
    CHECK(parse("8b", Dim::size) == 1.0);
    CHECK(parse("1Kb", Dim::size) == 125.0);
    CHECK(parse("1Kib", Dim::size) == 128.0);
    CHECK(parse("1Mb", Dim::size) == 125e3);
    CHECK(parse("1Mib", Dim::size) == 131072.0);
    CHECK(parse("1Gb", Dim::size) == 1.25e8);
    CHECK(parse("1Gib", Dim::size) == 134217728.0);
    CHECK(parse("1Gb/s", Dim::bandwidth) == 1.25e8);
    CHECK(parse("1GB/s", Dim::bandwidth) == 1e9);
    CHECK(parse("100Gb/s", Dim::bandwidth) == 12.5e9);
}

TEST_CASE("bandwidth is any size unit over /s", "[units]") {
    CHECK(parse("2039GB/s", Dim::bandwidth) == 2.039e12);
    CHECK(parse("64GiB/s", Dim::bandwidth) == 64.0 * 1073741824.0);
    CHECK(parse("5TB/s", Dim::bandwidth) == 5e12);
    CHECK(parse("10KB/s", Dim::bandwidth) == 1e4);
    CHECK(parse("3B/s", Dim::bandwidth) == 3.0);
}

TEST_CASE("energy, energy per byte and power units", "[units]") {
    CHECK(parse("2fJ", Dim::energy) == Approx(2e-15).epsilon(1e-15));
    CHECK(parse("0.9pJ", Dim::energy) == 0.9e-12);
    CHECK(parse("4nJ", Dim::energy) == 4e-9);
    CHECK(parse("1uJ", Dim::energy) == 1e-6);
    CHECK(parse("3mJ", Dim::energy) == 3e-3);
    CHECK(parse("1J", Dim::energy) == 1.0);
    CHECK(parse("7pJ/B", Dim::energy_per_byte) == 7e-12);
    // Per bit: a byte costs eight times as much.
    CHECK(parse("1pJ/b", Dim::energy_per_byte) == 8e-12);
    CHECK(parse("5uW", Dim::power) == 5e-6);
    CHECK(parse("250mW", Dim::power) == 0.25);
    CHECK(parse("400W", Dim::power) == 400.0);
    CHECK(parse("1.5kW", Dim::power) == 1500.0);
}

TEST_CASE("throughput accepts OP/s, FLOP/s, OPS and FLOPS with prefixes", "[units]") {
    CHECK(parse("312TFLOP/s", Dim::throughput) == 312e12);
    CHECK(parse("19.5TFLOPS", Dim::throughput) == 19.5e12);
    CHECK(parse("624TOPS", Dim::throughput) == 624e12);
    CHECK(parse("10GOP/s", Dim::throughput) == 1e10);
    CHECK(parse("5OPS", Dim::throughput) == 5.0);
    CHECK(parse("2kFLOP/s", Dim::throughput) == 2e3);
    CHECK(parse("3MOPS", Dim::throughput) == 3e6);
    CHECK(parse("1PFLOPS", Dim::throughput) == 1e15);
}

TEST_CASE("one optional space between number and unit, scientific notation allowed", "[units]") {
    CHECK(parse("2039 GB/s", Dim::bandwidth) == 2.039e12);
    CHECK(parse("1e9Hz", Dim::frequency) == 1e9);
    CHECK(parse("1.5e-3 s", Dim::time) == 1.5e-3);
    CHECK(parse("2E3MHz", Dim::frequency) == 2e9);
    CHECK(parse(".5ns", Dim::time) == 0.5e-9);
    CHECK(parse("+3W", Dim::power) == 3.0);
    // Two spaces are not "an optional space": the unit would be " GB/s".
    CHECK_FALSE(parse_quantity_any("2039  GB/s").has_value());
}

TEST_CASE("negative quantities parse (validation rejects them)", "[units]") {
    CHECK(parse("-5ns", Dim::time) == -5e-9);
}

TEST_CASE("parse_quantity_any infers the dimension from the unit", "[units]") {
    auto q = parse_quantity_any("40MiB");
    REQUIRE(q);
    CHECK(q->dim == Dim::size);
    CHECK(q->value == 41943040.0);
    CHECK(parse_quantity_any("1.41GHz")->dim == Dim::frequency);
    CHECK(parse_quantity_any("2039GB/s")->dim == Dim::bandwidth);
    CHECK(parse_quantity_any("0.9pJ")->dim == Dim::energy);
    CHECK(parse_quantity_any("0.9pJ/b")->dim == Dim::energy_per_byte);
    CHECK(parse_quantity_any("400W")->dim == Dim::power);
    CHECK(parse_quantity_any("312TFLOP/s")->dim == Dim::throughput);
    CHECK(parse_quantity_any("5ns")->dim == Dim::time);
    CHECK_FALSE(parse_quantity_any("2039").has_value());
    CHECK_FALSE(parse_quantity_any("fast").has_value());
    CHECK_FALSE(parse_quantity_any("5 parsecs").has_value());
    CHECK_FALSE(parse_quantity_any("GB/s").has_value());
}

TEST_CASE("a unit of another dimension names both dimensions", "[units][errors]") {
    CHECK(error_of([] { parse("40MiB", Dim::bandwidth); }) ==
          "u.yaml:3:7: error: a.b: expected a bandwidth (e.g. \"2039GB/s\"), found \"40MiB\" (a size)");
    CHECK(error_of([] { parse("1.41GHz", Dim::time); }) ==
          "u.yaml:3:7: error: a.b: expected a time (e.g. \"5ns\"), found \"1.41GHz\" (a frequency)");
    CHECK(error_of([] { parse("1pJ", Dim::energy_per_byte); }) ==
          "u.yaml:3:7: error: a.b: expected an energy per byte (e.g. \"7pJ/B\"), found \"1pJ\" (an energy)");
}

TEST_CASE("a bare number where a quantity is expected asks for a unit", "[units][errors]") {
    CHECK(error_of([] { parse("2039", Dim::bandwidth); }) ==
          "u.yaml:3:7: error: a.b: expected a bandwidth with a unit (e.g. \"2039GB/s\"), found \"2039\" (no "
          "unit)");
}

TEST_CASE("an unknown unit is named and the dimension's units are listed", "[units][errors]") {
    std::string e = error_of([] { parse("2039GBps", Dim::bandwidth); });
    CHECK_THAT(
        e, Catch::Matchers::StartsWith("u.yaml:3:7: error: a.b: expected a bandwidth (e.g. \"2039GB/s\"), "
                                       "found \"2039GBps\": unknown unit 'GBps'; did you mean 'GB/s'?"));
    CHECK_THAT(e, Catch::Matchers::Contains("B/s, KB/s, MB/s, GB/s, TB/s, KiB/s, MiB/s, GiB/s, TiB/s, b/s"));
    std::string f = error_of([] { parse("3 parsecs", Dim::time); });
    CHECK_THAT(f, Catch::Matchers::Contains("unknown unit 'parsecs'"));
    CHECK_THAT(f, Catch::Matchers::Contains("(units for time: ps, ns, us, ms, s)"));
    CHECK_THAT(f, !Catch::Matchers::Contains("did you mean"));
    CHECK_THAT(error_of([] { parse("1.41ghz", Dim::frequency); }),
               Catch::Matchers::Contains("did you mean 'GHz'?"));
}

TEST_CASE("text that is not a number is reported as found", "[units][errors]") {
    CHECK(error_of([] { parse("fast", Dim::frequency); }) ==
          "u.yaml:3:7: error: a.b: expected a frequency (e.g. \"1.41GHz\"), found \"fast\"");
    CHECK_THAT(error_of([] { parse("1e999GB", Dim::size); }), Catch::Matchers::Contains("out of range"));
}

TEST_CASE("format_quantity uses decimal prefixes and 4 significant digits", "[units][format]") {
    CHECK(format_quantity(2.039e12, Dim::bandwidth) == "2.039 TB/s");
    CHECK(format_quantity(1.41e9, Dim::frequency) == "1.41 GHz");
    CHECK(format_quantity(19.5e12, Dim::throughput) == "19.5 TFLOP/s");
    CHECK(format_quantity(1e9, Dim::size) == "1 GB");
    CHECK(format_quantity(5e-9, Dim::time) == "5 ns");
    CHECK(format_quantity(2.5e-12, Dim::energy) == "2.5 pJ");
    CHECK(format_quantity(0.9e-12, Dim::energy) == "900 fJ");
    CHECK(format_quantity(7e-12, Dim::energy_per_byte) == "7 pJ/B");
    CHECK(format_quantity(0.25, Dim::power) == "250 mW");
    CHECK(format_quantity(0, Dim::size) == "0 B");
    CHECK(format_quantity(123456, Dim::frequency) == "123.5 kHz");
    // Rounding to 1000 of one prefix moves up to the next.
    CHECK(format_quantity(999.96e3, Dim::frequency) == "1 MHz");
    CHECK(format_quantity(-3e-6, Dim::time) == "-3 us");
}

TEST_CASE("format_quantity writes exact binary sizes in binary units and nothing else", "[units][format]") {
    CHECK(format_quantity(40.0 * 1024 * 1024, Dim::size) == "40 MiB");
    CHECK(format_quantity(1073741824.0, Dim::size) == "1 GiB");
    CHECK(format_quantity(4096, Dim::size) == "4 KiB");
    // Whole in decimal: stays decimal even though it is also a whole number of bytes.
    CHECK(format_quantity(2e12, Dim::size) == "2 TB");
    CHECK(format_quantity(19.5e12, Dim::size) == "19.5 TB");
    CHECK(format_quantity(1536, Dim::size) == "1.536 KB");
}

TEST_CASE("format_quantity output parses back to the same value", "[units][format]") {
    for (auto [value, dim] : {std::pair{2.039e12, Dim::bandwidth},
                              {1.41e9, Dim::frequency},
                              {19.5e12, Dim::throughput},
                              {41943040.0, Dim::size},
                              {5e-9, Dim::time},
                              {400.0, Dim::power}}) {
        auto q = parse_quantity_any(format_quantity(value, dim));
        REQUIRE(q);
        CHECK(q->dim == dim);
        CHECK(q->value == Approx(value));
    }
}

TEST_CASE("dimension names and examples", "[units]") {
    CHECK(dim_name(Dim::bandwidth) == "a bandwidth");
    CHECK(dim_name(Dim::energy) == "an energy");
    CHECK(dim_example(Dim::size) == "40MiB");
    // Every example parses as its own dimension.
    for (Dim d : {Dim::time, Dim::frequency, Dim::size, Dim::bandwidth, Dim::energy, Dim::energy_per_byte,
                  Dim::power, Dim::throughput}) {
        auto q = parse_quantity_any(dim_example(d));
        REQUIRE(q);
        CHECK(q->dim == d);
    }
}
