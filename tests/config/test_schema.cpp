#include <algorithm>
#include <catch2/catch.hpp>
#include <random>
#include <string>

#include "sim/config/loader.h"
#include "sim/config/schema.h"
#include "sim/core/check.h"
#include "tests/config/helpers.h"

using namespace mlsim::cfg;
using Catch::Matchers::Contains;
using mlsim::cfg::test::data_path;
using mlsim::cfg::test::error_of;

namespace {

Param with_choices(Param p, std::vector<std::string> choices) {
    p.choices = std::move(choices);
    return p;
}

Param with_min(Param p, double min) {
    p.min = min;
    return p;
}

Param sub_param(std::string name, PType type, const Schema& sub, bool is_required, std::string doc) {
    Param p;
    p.name = std::move(name);
    p.type = type;
    p.sub = &sub;
    if (type == PType::dict) p.value_type = PType::map;
    p.required = is_required;
    p.doc = std::move(doc);
    return p;
}

Param dict_of(std::string name, Dim dim, std::vector<std::string> keys, bool is_required, std::string doc) {
    Param p;
    p.name = std::move(name);
    p.type = PType::dict;
    p.value_type = PType::quantity;
    p.dim = dim;
    p.choices = std::move(keys);
    p.required = is_required;
    p.positive = true;
    p.doc = std::move(doc);
    return p;
}

const Schema memory_schema{
    "device.memory",
    "one level of the memory hierarchy",
    {
        required("name", PType::string, "level name"),
        quantity("size", Dim::size, std::nullopt, "capacity of the level"),
        quantity("bandwidth", Dim::bandwidth, std::nullopt, "peak bandwidth of the level"),
        quantity("latency", Dim::time, "100ns", "access latency", false),
    },
};

const Schema noc_schema{
    "device.noc",
    "on-chip network",
    {
        quantity("hop_latency", Dim::time, "1ns", "latency of one hop"),
        quantity("link_bandwidth", Dim::bandwidth, "100GB/s", "bandwidth of one link"),
    },
};

const Schema cluster_schema{
    "device.clusters",
    "a cluster of cores",
    {
        required("cores", PType::integer, "cores in the cluster"),
    },
};

const Schema device_schema{
    "device",
    "an accelerator",
    {
        required("name", PType::string, "device name"),
        quantity("clock", Dim::frequency, std::nullopt, "core clock"),
        with_choices(optional("dataflow", PType::choice, "ws", "systolic dataflow"), {"os", "ws", "is"}),
        with_choices(optional("collective", PType::choice, "ring", "all-reduce algorithm"),
                     {"ring", "tree", "halving_doubling"}),
        with_min(optional("rows", PType::integer, "128", "rows of the PE array"), 1),
        optional("double_buffer", PType::boolean, "true", "double-buffer operand tiles"),
        with_min(optional("efficiency", PType::real, "0.9", "achievable fraction of peak"), 0),
        quantity("static_power", Dim::power, "0W", "static power", false),
        sub_param("memory", PType::list, memory_schema, true, "memory levels, innermost last"),
        dict_of("peak", Dim::throughput, {"fp16", "bf16", "fp32", "int8"}, true,
                "peak dense throughput per data type"),
        dict_of("energy", Dim::energy_per_byte, {}, false, "energy per byte moved, by memory level"),
        sub_param("noc", PType::map, noc_schema, false, "network on chip"),
        sub_param("clusters", PType::dict, cluster_schema, false, "core clusters by name"),
    },
};

const Schema root_schema{
    "", "a device file", {sub_param("device", PType::map, device_schema, true, "the device")}};

const char* const good_device =
    "device:\n"
    "  name: npu\n"
    "  clock: 1.41GHz\n"
    "  memory:\n"
    "    - name: hbm\n"
    "      size: 40GiB\n"
    "      bandwidth: 2039GB/s\n"
    "    - name: sram\n"
    "      size: 24MiB\n"
    "      bandwidth: 10TB/s\n"
    "      latency: 2ns\n"
    "  peak:\n"
    "    fp16: 312TFLOP/s\n"
    "    int8: 624TOPS\n";

Node parse(const std::string& text) { return parse_string(text, "dev.yaml"); }

std::string validate_error(const std::string& text) {
    return error_of([&] { validate(parse(text), root_schema); });
}

// good_device with one line replaced.
std::string replace(std::string text, const std::string& from, const std::string& to) {
    auto at = text.find(from);
    REQUIRE(at != std::string::npos);
    return text.replace(at, from.size(), to);
}

}  // namespace

TEST_CASE("a valid config validates and gets its defaults filled in", "[schema]") {
    Node resolved = validate(parse(good_device), root_schema);
    const Node& dev = *resolved.find("device");
    CHECK(dev.find("dataflow")->scalar() == "ws");
    CHECK(dev.find("rows")->scalar() == "128");
    CHECK(dev.find("double_buffer")->scalar() == "true");
    CHECK(dev.find("memory")->items()[0].find("latency")->scalar() == "100ns");
    CHECK(dev.find("memory")->items()[1].find("latency")->scalar() == "2ns");
    // An absent optional section with no required keys resolves to its defaults.
    REQUIRE(dev.find("noc"));
    CHECK(dev.find("noc")->find("link_bandwidth")->scalar() == "100GB/s");
    // Absent optional dicts stay absent.
    CHECK(dev.find("energy") == nullptr);
    CHECK(dev.find("clusters") == nullptr);
}

TEST_CASE("defaults are located at the parent map and carry their key path", "[schema]") {
    Node resolved = validate(parse(good_device), root_schema);
    const Node& dev = *resolved.find("device");
    const Node* rows = dev.find("rows");
    CHECK(rows->path() == "device.rows");
    CHECK(rows->loc().file == "dev.yaml");
    CHECK(rows->loc().line == dev.loc().line);
    CHECK(rows->loc().col == dev.loc().col);
    const Node* latency = dev.find("memory")->items()[0].find("latency");
    CHECK(latency->path() == "device.memory[0].latency");
    CHECK(latency->loc().line == 5);
}

TEST_CASE("the resolved tree lists keys in declaration order and round-trips", "[schema]") {
    Node resolved = validate(parse(good_device), root_schema);
    const auto& entries = resolved.find("device")->entries();
    REQUIRE(entries.size() >= 3);
    CHECK(entries[0].first == "name");
    CHECK(entries[1].first == "clock");
    CHECK(entries[2].first == "dataflow");
    Node again = validate(parse_string(to_yaml(resolved), "resolved.yaml"), root_schema);
    CHECK(again.same_content(resolved));
}

TEST_CASE("an unknown key suggests the nearest valid key", "[schema][errors]") {
    CHECK(validate_error(replace(good_device, "  memory:\n", "  memroy:\n")) ==
          "dev.yaml:4:3: error: device.memroy: unknown key 'memroy' in device; did you mean 'memory'?");
}

TEST_CASE("an unknown key with nothing near lists the valid keys", "[schema][errors]") {
    std::string e =
        validate_error(replace(good_device, "  clock: 1.41GHz\n", "  clock: 1.41GHz\n  zzzzqqq: 1\n"));
    CHECK(e ==
          "dev.yaml:4:3: error: device.zzzzqqq: unknown key 'zzzzqqq' in device; valid keys: name, clock, "
          "dataflow, collective, rows, double_buffer, efficiency, static_power, memory, peak, energy, noc, "
          "clusters");
}

TEST_CASE("a missing required key is reported at the parent map with its doc", "[schema][errors]") {
    std::string text = replace(good_device, "  peak:\n    fp16: 312TFLOP/s\n    int8: 624TOPS\n", "");
    CHECK(validate_error(text) ==
          "dev.yaml:1:1: error: device: missing required key 'peak' (peak dense throughput per data type)");
    CHECK(validate_error(
              replace(good_device, "    - name: sram\n      size: 24MiB\n", "    - size: 24MiB\n")) ==
          "dev.yaml:8:7: error: device.memory[1]: missing required key 'name' (level name)");
}

TEST_CASE("a quantity of the wrong dimension inside a list of maps has the full key path",
          "[schema][errors]") {
    CHECK(error_of([] { validate(load_file(data_path("a100.yaml")), root_schema); }) ==
          data_path("a100.yaml") +
              ":12:18: error: device.memory[1].bandwidth: expected a bandwidth (e.g. \"2039GB/s\"), found "
              "\"40MiB\" "
              "(a size)");
}

TEST_CASE("a quantity without a unit", "[schema][errors]") {
    CHECK(validate_error(replace(good_device, "1.41GHz", "1410000000")) ==
          "dev.yaml:3:10: error: device.clock: expected a frequency with a unit (e.g. \"1.41GHz\"), found "
          "\"1410000000\" (no unit)");
}

TEST_CASE("choices are enforced", "[schema][errors]") {
    CHECK(validate_error(replace(good_device, "  name: npu\n", "  name: npu\n  dataflow: xs\n")) ==
          "dev.yaml:3:13: error: device.dataflow: expected one of: os, ws, is; found \"xs\"");
    CHECK(validate_error(
              replace(good_device, "  name: npu\n", "  name: npu\n  collective: halving-doubling\n")) ==
          "dev.yaml:3:15: error: device.collective: expected one of: ring, tree, halving_doubling; found "
          "\"halving-doubling\"; did you mean 'halving_doubling'?");
    Node ok =
        validate(parse(replace(good_device, "  name: npu\n", "  name: npu\n  dataflow: os\n")), root_schema);
    CHECK(ok.find("device")->find("dataflow")->scalar() == "os");
}

TEST_CASE("positive and min bounds", "[schema][errors]") {
    CHECK(validate_error(replace(good_device, "2039GB/s", "0GB/s")) ==
          "dev.yaml:7:18: error: device.memory[0].bandwidth: must be greater than 0, found \"0GB/s\"");
    CHECK(validate_error(replace(good_device, "2039GB/s", "-5GB/s")) ==
          "dev.yaml:7:18: error: device.memory[0].bandwidth: must not be negative, found \"-5GB/s\"");
    // Not `positive`, but still a quantity: zero is fine, negative is not.
    CHECK_NOTHROW(validate(parse(replace(good_device, "  name: npu\n", "  name: npu\n  static_power: 0W\n")),
                           root_schema));
    CHECK_THAT(validate_error(replace(good_device, "  name: npu\n", "  name: npu\n  static_power: -1W\n")),
               Contains("must not be negative"));
    CHECK(validate_error(replace(good_device, "  name: npu\n", "  name: npu\n  rows: 0\n")) ==
          "dev.yaml:3:9: error: device.rows: must be at least 1, found \"0\"");
    CHECK_NOTHROW(
        validate(parse(replace(good_device, "  name: npu\n", "  name: npu\n  rows: 1\n")), root_schema));
    CHECK(validate_error(replace(good_device, "  name: npu\n", "  name: npu\n  efficiency: -0.5\n")) ==
          "dev.yaml:3:15: error: device.efficiency: must be at least 0, found \"-0.5\"");
}

TEST_CASE("scalar type errors", "[schema][errors]") {
    CHECK(validate_error(replace(good_device, "  name: npu\n", "  name: npu\n  rows: abc\n")) ==
          "dev.yaml:3:9: error: device.rows: expected an integer, found \"abc\"");
    CHECK(validate_error(replace(good_device, "  name: npu\n", "  name: npu\n  rows: 1.5\n")) ==
          "dev.yaml:3:9: error: device.rows: expected an integer, found \"1.5\"");
    CHECK(validate_error(replace(good_device, "  name: npu\n", "  name: npu\n  double_buffer: yes\n")) ==
          "dev.yaml:3:18: error: device.double_buffer: expected true or false, found \"yes\"");
    CHECK(validate_error(replace(good_device, "  name: npu\n", "  name: npu\n  efficiency: high\n")) ==
          "dev.yaml:3:15: error: device.efficiency: expected a number, found \"high\"");
    CHECK(validate_error(replace(good_device, "  name: npu\n", "  name: [a, b]\n")) ==
          "dev.yaml:2:3: error: device.name: expected a string, found a list");
}

TEST_CASE("structure errors: maps and lists", "[schema][errors]") {
    CHECK(validate_error("device: [1, 2]\n") == "dev.yaml:1:1: error: device: expected a map, found a list");
    CHECK(validate_error(replace(good_device, "  name: npu\n", "  name: npu\n  noc: fast\n")) ==
          "dev.yaml:3:8: error: device.noc: expected a map, found \"fast\"");
    CHECK(validate_error(replace(good_device, "  clock: 1.41GHz\n", "  clock: {a: 1}\n")) ==
          "dev.yaml:3:3: error: device.clock: expected a frequency (e.g. \"1.41GHz\"), found a map");
    std::string not_list =
        replace(good_device,
                "    - name: hbm\n      size: 40GiB\n      bandwidth: 2039GB/s\n    - name: sram\n"
                "      size: 24MiB\n      bandwidth: 10TB/s\n      latency: 2ns\n",
                "    name: hbm\n");
    CHECK(validate_error(not_list) == "dev.yaml:4:3: error: device.memory: expected a list, found a map");
    CHECK(validate_error("") == "dev.yaml: error: expected a map, found nothing");
}

TEST_CASE("an empty value: a section reads as empty, a scalar lacks its value", "[schema][errors]") {
    Node r = validate(parse(replace(good_device, "  name: npu\n", "  name: npu\n  noc:\n")), root_schema);
    CHECK(r.find("device")->find("noc")->find("hop_latency")->scalar() == "1ns");
    CHECK(validate_error(replace(good_device, "  clock: 1.41GHz\n", "  clock:\n")) ==
          "dev.yaml:3:3: error: device.clock: expected a frequency (e.g. \"1.41GHz\"), found nothing");
}

TEST_CASE("dict of quantities: keys restricted to the choices, values checked", "[schema][dict]") {
    Node resolved = validate(parse(good_device), root_schema);
    Reader dev(*resolved.find("device"), device_schema);
    auto peak = dev.quantity_dict("peak");
    REQUIRE(peak.size() == 2);
    CHECK(peak[0].first == "fp16");
    CHECK(peak[0].second == 312e12);
    CHECK(peak[1].first == "int8");
    CHECK(peak[1].second == 624e12);

    CHECK(validate_error(replace(good_device, "    fp16: 312TFLOP/s\n", "    fp61: 312TFLOP/s\n")) ==
          "dev.yaml:13:5: error: device.peak.fp61: unknown key 'fp61' in device.peak; did you mean 'fp16'?");
    CHECK(validate_error(replace(good_device, "    fp16: 312TFLOP/s\n", "    tf32: 312TFLOP/s\n")) ==
          "dev.yaml:13:5: error: device.peak.tf32: unknown key 'tf32' in device.peak; did you mean 'fp32'?");
    CHECK(validate_error(replace(good_device, "    fp16: 312TFLOP/s\n", "    fp16: 312GB/s\n")) ==
          "dev.yaml:13:11: error: device.peak.fp16: expected a throughput (e.g. \"312TFLOP/s\"), found "
          "\"312GB/s\" "
          "(a bandwidth)");
    CHECK(validate_error(replace(good_device, "    fp16: 312TFLOP/s\n", "    fp16: 0TFLOP/s\n")) ==
          "dev.yaml:13:11: error: device.peak.fp16: must be greater than 0, found \"0TFLOP/s\"");
}

TEST_CASE("dict with free keys and dict of maps", "[schema][dict]") {
    std::string text = std::string(good_device) +
                       "  energy:\n    hbm: 7pJ/B\n    sram: 1pJ/b\n"
                       "  clusters:\n    big: {cores: 4}\n    little: {cores: 8}\n";
    Node resolved = validate(parse(text), root_schema);
    Reader dev(*resolved.find("device"), device_schema);
    auto energy = dev.quantity_dict("energy");
    REQUIRE(energy.size() == 2);
    CHECK(energy[1].first == "sram");
    CHECK(energy[1].second == 8e-12);
    auto clusters = dev.map_dict("clusters");
    REQUIRE(clusters.size() == 2);
    CHECK(clusters[0].first == "big");
    CHECK(clusters[0].second.integer("cores") == 4);
    CHECK(clusters[1].second.integer("cores") == 8);
    CHECK(validate_error(replace(text, "{cores: 8}", "{cores: 8, threads: 2}")) ==
          "dev.yaml:20:24: error: device.clusters.little.threads: unknown key 'threads' in "
          "device.clusters.little; "
          "valid keys: cores");
}

TEST_CASE("Reader gives typed access to a validated tree", "[schema][reader]") {
    Node resolved = validate(parse(good_device), root_schema);
    Reader root(resolved, root_schema);
    Reader dev = root.sub("device");
    CHECK(dev.str("name") == "npu");
    CHECK(dev.str("dataflow") == "ws");
    CHECK(dev.quantity("clock") == 1.41e9);
    CHECK(dev.integer("rows") == 128);
    CHECK(dev.real("efficiency") == 0.9);
    CHECK(dev.real("rows") == 128.0);
    CHECK(dev.boolean("double_buffer"));
    CHECK(dev.quantity("static_power") == 0.0);
    CHECK(dev.has("name"));
    CHECK_FALSE(dev.has("energy"));
    CHECK(dev.quantity_dict("energy").empty());
    CHECK(dev.at("name").loc().line == 2);
    auto mem = dev.list("memory");
    REQUIRE(mem.size() == 2);
    CHECK(mem[0].str("name") == "hbm");
    CHECK(mem[0].quantity("size") == 40.0 * 1073741824.0);
    CHECK(mem[1].quantity("bandwidth") == 10e12);
    CHECK(mem[1].quantity("latency") == 2e-9);
    CHECK(dev.sub("noc").quantity("hop_latency") == 1e-9);
}

TEST_CASE("Reader: undeclared keys and wrong accessors are internal errors", "[schema][reader]") {
    Node resolved = validate(parse(good_device), root_schema);
    Reader dev(*resolved.find("device"), device_schema);
    CHECK_THROWS_AS(dev.str("nmae"), mlsim::InternalError);
    CHECK_THROWS_AS(dev.has("nmae"), mlsim::InternalError);
    CHECK_THROWS_AS(dev.integer("name"), mlsim::InternalError);
    CHECK_THROWS_AS(dev.quantity("rows"), mlsim::InternalError);
    // Absent and without a default: validate() would have caught it had it been required.
    Node partial = parse("name: x\n");
    Reader raw(partial, device_schema);
    CHECK_THROWS_AS(raw.quantity("clock"), mlsim::InternalError);
}

TEST_CASE("an invalid default in a schema is an internal error, not a user error", "[schema]") {
    const Schema bad{"bad", "", {quantity("t", Dim::time, "5GHz", "a time with a wrong default")}};
    CHECK_THROWS_AS(validate(parse("{}\n"), bad), mlsim::InternalError);
}

TEST_CASE("describe lists every parameter with its type, default and doc", "[schema][describe]") {
    std::string text = describe(root_schema);
    for (const Schema* s : {&device_schema, &memory_schema, &noc_schema, &cluster_schema}) {
        for (const Param& p : s->params) {
            CHECK_THAT(text, Contains(p.name));
            CHECK_THAT(text, Contains(p.doc));
        }
    }
    CHECK_THAT(text, Contains("default 1.41GHz") || Contains("required"));
    CHECK_THAT(text, Contains("default 100ns"));
    CHECK_THAT(text, Contains("os|ws|is"));
    CHECK_THAT(text, Contains("map of fp16|bf16|fp32|int8 -> throughput > 0"));
    CHECK_THAT(text, Contains("frequency > 0"));
    CHECK_THAT(text, Contains("integer >= 1"));
    // Nested parameters are indented under their parent.
    CHECK_THAT(text, Contains("\n      bandwidth"));
    CHECK_THAT(text, Contains("\n    memory"));
}

TEST_CASE("nearest suggests close words only", "[schema]") {
    std::vector<std::string> keys = {"name", "memory", "clock", "peak"};
    CHECK(nearest("memroy", keys) == "memory");
    CHECK(nearest("Memory", keys) == "memory");
    CHECK(nearest("clk", keys) == "clock");
    CHECK(nearest("nmae", keys) == "name");
    CHECK(nearest("bandwidth", keys) == "");
    CHECK(nearest("xy", {"ab", "cd"}) == "");
    CHECK(nearest("memory", {}) == "");
}

namespace {
// The full-matrix optimal string alignment distance, as nearest() once computed it.
std::size_t reference_distance(const std::string& a, const std::string& b) {
    std::vector<std::vector<std::size_t>> d(a.size() + 1, std::vector<std::size_t>(b.size() + 1));
    for (std::size_t i = 0; i <= a.size(); ++i) d[i][0] = i;
    for (std::size_t j = 0; j <= b.size(); ++j) d[0][j] = j;
    for (std::size_t i = 1; i <= a.size(); ++i)
        for (std::size_t j = 1; j <= b.size(); ++j) {
            d[i][j] = std::min(
                {d[i - 1][j] + 1, d[i][j - 1] + 1, d[i - 1][j - 1] + (a[i - 1] == b[j - 1] ? 0 : 1)});
            if (i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1])
                d[i][j] = std::min(d[i][j], d[i - 2][j - 2] + 1);
        }
    return d[a.size()][b.size()];
}
std::string reference_nearest(const std::string& word, const std::vector<std::string>& candidates) {
    const std::size_t limit = std::max<std::size_t>(2, word.size() / 3);
    std::string best;
    std::size_t best_distance = limit + 1;
    for (const std::string& c : candidates) {
        const std::size_t d = reference_distance(word, c);
        if (d >= std::max(word.size(), c.size())) continue;
        if (d < best_distance) {
            best_distance = d;
            best = c;
        }
    }
    return best;
}
}  // namespace

TEST_CASE("nearest gives the full distance matrix's answer, and skips candidates by length", "[schema]") {
    // Random words over a small alphabet (so that many are near one another), against random lists.
    std::mt19937 rng(7);
    auto word = [&](std::size_t max_len) {
        std::string w(std::uniform_int_distribution<std::size_t>(0, max_len)(rng), 'a');
        for (char& c : w) c = static_cast<char>('a' + std::uniform_int_distribution<int>(0, 3)(rng));
        return w;
    };
    int suggested = 0;
    for (int trial = 0; trial < 3000; ++trial) {
        std::vector<std::string> candidates;
        for (int k = std::uniform_int_distribution<int>(0, 6)(rng); k > 0; --k)
            candidates.push_back(word(12));
        const std::string w = word(14);
        const std::string got = nearest(w, candidates);
        INFO("word '" << w << "'");
        CHECK(got == reference_nearest(w, candidates));
        suggested += !got.empty();
    }
    CHECK(suggested > 200);  // the comparison covered words that had a suggestion (285 of 3,000)
    // A megabyte-long key is near no key (a hostile input once took seconds here).
    CHECK(nearest(std::string(1 << 20, 'k'), {"name", "memory", "clock", "peak"}).empty());
}
