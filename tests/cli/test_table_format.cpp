// The figures of terminal tables (cli/table_format.h): fixed-point with human prefixes, never exponent
// notation, and columns aligned by display width.
#include <fmt/format.h>

#include <catch2/catch.hpp>
#include <cmath>
#include <random>
#include <string>

#include "cli/compare_table.h"
#include "cli/table_format.h"

using namespace mlsim;

namespace {

bool exponent_free(const std::string& s) {
    for (std::size_t i = 0; i + 1 < s.size(); ++i)
        if ((s[i] == 'e' || s[i] == 'E') && (s[i + 1] == '+' || s[i + 1] == '-' || std::isdigit(s[i + 1])) &&
            i > 0 && std::isdigit(static_cast<unsigned char>(s[i - 1])))
            return false;
    return true;
}

}  // namespace

TEST_CASE("table format: figures over 30 decades are fixed-point with 3 significant digits", "[cli][table]") {
    std::mt19937_64 rng(7);
    std::uniform_real_distribution<double> exponent(-16, 19);
    for (int i = 0; i < 20000; ++i) {
        const double v = std::pow(10.0, exponent(rng));
        for (const std::string& s : {cli::human(v, "s"), cli::human(v, "", false), cli::duration(v),
                                     cli::dollars(v), cli::human(-v, "J")}) {
            INFO(v << " -> " << s);
            REQUIRE(exponent_free(s));
            REQUIRE(s.find("inf") == std::string::npos);
        }
    }
    // Rounding that reaches 1000 takes the next prefix; mantissas stay in [1, 1000).
    CHECK(cli::human(999.6, "W") == "1.00 kW");
    CHECK(cli::human(0.00099996, "s") == "1.00 ms");
    CHECK(cli::human(123.4e-6, "s") == "123 µs");
    CHECK(cli::human(4.85e-3, "J") == "4.85 mJ");
    CHECK(cli::human(0.5, "", false) == "0.500");
    CHECK(cli::human(215e3, "", false) == "215 k");
    CHECK(cli::human(0, "W") == "0 W");
    CHECK(cli::human(1e-16, "s") == "0.000100 ps");
    CHECK(cli::duration(90) == "1.50 min");
    CHECK(cli::duration(3 * 86400) == "3.00 d");
    CHECK(cli::dollars(4560) == "$4.56k");
    CHECK(cli::dollars(0.0412) == "$0.0412");
    // Past 1e21 (a price amortised over a moment, say): exponent notation, not hundreds of digits.
    CHECK(cli::dollars(3.08e296) == "$3.08e+296");
    CHECK(cli::human(2e21, "J") == "2.00e+21 J");
    CHECK(cli::human(9.99e20, "J") == "999000 PJ");
}

TEST_CASE("table format: a name's width is the columns a terminal draws", "[cli][table]") {
    CHECK(cli::display_width("resnet50") == 8);
    CHECK(cli::display_width("r\xc3\xa9snet") == 6);  // é, one code point
    CHECK(cli::display_width("e\xcc\x81"
                             "dge") == 4);                       // e + a combining acute accent
    CHECK(cli::display_width("\xe5\x8a\xa0\xe9\x80\x9f") == 4);  // two CJK characters, two columns each
    CHECK(cli::display_width("\xef\xbc\xa2") == 2);              // a fullwidth B
    CHECK(cli::display_width("go \xf0\x9f\x9a\x80") == 5);       // an emoji, two columns
    CHECK(cli::display_width("\xe9x") == 2);                     // a broken sequence: a column a byte
    CHECK(cli::display_width("\x80") == 1);
}

TEST_CASE("table format: the compare table keeps each column aligned and puts errors on their own line",
          "[cli][table]") {
    std::vector<exp::CompareRow> rows;
    double scale = 1e-7;
    for (int i = 0; i < 12; ++i, scale *= 10) {
        exp::CompareRow r;
        r.workload = "w";
        r.system = fmt::format("s{}", i);
        r.device = "dev";
        r.batch = 1;
        r.latency_s = 1.234 * scale;
        r.samples_per_s = 1 / r.latency_s;
        r.energy_per_sample_j = 9.87 * scale;
        r.average_power_w = r.energy_per_sample_j * r.samples_per_s;
        r.system_tdp_w = 100;
        r.samples_per_s_per_w = r.samples_per_s / r.average_power_w;
        r.usd_per_million_samples = 3.21 * scale;
        rows.push_back(r);
    }
    exp::CompareRow bad;
    bad.workload = "w";
    bad.system = "mcu";
    bad.device = "mcu";
    bad.status = "error";
    bad.error = "model 'x' does not fit";
    rows.push_back(bad);
    const std::string table = cli::compare_table(rows);
    INFO(table);
    CHECK(exponent_free(table));
    std::vector<std::string> lines;
    for (std::size_t at = 0, nl; (nl = table.find('\n', at)) != std::string::npos; at = nl + 1)
        lines.push_back(table.substr(at, nl - at));
    REQUIRE(lines.size() == 1 + 12 + 2);
    // Every figure row has the header's display width (right-aligned last column).
    for (std::size_t i = 1; i <= 12; ++i) CHECK(cli::display_width(lines[i]) == cli::display_width(lines[0]));
    CHECK(lines.back() == "    -> model 'x' does not fit");
    CHECK(lines[lines.size() - 2].find("does not run") != std::string::npos);
}
