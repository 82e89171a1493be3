#include <fmt/format.h>
#include <sys/stat.h>

#include <catch2/catch.hpp>
#include <filesystem>
#include <string>

#include "sim/config/loader.h"
#include "tests/config/helpers.h"

using namespace mlsim::cfg;
using Catch::Matchers::Contains;
using Catch::Matchers::StartsWith;
using mlsim::cfg::test::data_path;
using mlsim::cfg::test::error_of;

namespace {

const char* const device_text =
    "device:\n"                    // 1
    "  name: a100\n"               // 2
    "  memory:\n"                  // 3
    "    - size: 40GiB\n"          // 4
    "      bandwidth: 1555GB/s\n"  // 5
    "    - size: 40MiB\n"          // 6
    "      bandwidth: 5TB/s\n"     // 7
    "  tags: [fast, big]\n";       // 8

}  // namespace

TEST_CASE("every node knows its file, 1-based line and column, and key path", "[loader]") {
    Node root = parse_string(device_text, "dev.yaml");
    REQUIRE(root.is_map());
    const Node* bw = root.find("device")->find("memory")->items().at(1).find("bandwidth");
    REQUIRE(bw);
    CHECK(bw->scalar() == "5TB/s");
    CHECK(bw->path() == "device.memory[1].bandwidth");
    CHECK(bw->loc().file == "dev.yaml");
    CHECK(bw->loc().line == 7);
    CHECK(bw->loc().col == 18);
    CHECK(bw->key_loc().line == 7);
    CHECK(bw->key_loc().col == 7);
    CHECK(bw->loc().str() == "dev.yaml:7:18");

    const Node* name = root.find("device")->find("name");
    CHECK(name->path() == "device.name");
    CHECK(name->loc().line == 2);
    CHECK(name->loc().col == 9);

    const Node& tag = root.find("device")->find("tags")->items().at(1);
    CHECK(tag.path() == "device.tags[1]");
    CHECK(tag.scalar() == "big");
    CHECK(tag.loc().line == 8);
    CHECK(tag.loc().col == 16);
    CHECK(root.find("device")->find("memory")->items().at(0).path() == "device.memory[0]");
}

TEST_CASE("map keys keep their order of appearance", "[loader]") {
    Node root = parse_string("z: 1\na: 2\nm: 3\n", "o.yaml");
    REQUIRE(root.entries().size() == 3);
    CHECK(root.entries()[0].first == "z");
    CHECK(root.entries()[1].first == "a");
    CHECK(root.entries()[2].first == "m");
}

TEST_CASE("a duplicate key is an error at the second occurrence", "[loader][errors]") {
    CHECK(error_of([] { parse_string("device:\n  name: a\n  clock: 1GHz\n  name: b\n", "dup.yaml"); }) ==
          "dup.yaml:4:3: error: device.name: duplicate key 'name' (first set at line 2, column 3)");
    // The same key in different maps is fine.
    CHECK_NOTHROW(parse_string("a: {x: 1}\nb: {x: 2}\n", "ok.yaml"));
}

TEST_CASE("malformed YAML reports yaml-cpp's location, 1-based", "[loader][errors]") {
    CHECK(error_of([] { load_file(data_path("malformed.yaml")); }) ==
          data_path("malformed.yaml") + ":4:8: error: invalid YAML: end of sequence flow not found");
    CHECK_THAT(error_of([] { load_file(data_path("bad_indent.yaml")); }),
               StartsWith(data_path("bad_indent.yaml") + ":3:2: error: invalid YAML: "));
    CHECK_THAT(error_of([] { parse_string("a: 1\n---\nb: 2\n", "two.yaml"); }),
               StartsWith("two.yaml:2:1: error: expected a single YAML document"));
}

TEST_CASE("a missing file is an error naming the path", "[loader][errors]") {
    std::string path = data_path("does_not_exist.yaml");
    CHECK(error_of([&] { load_file(path); }) == path + ": error: cannot open '" + path + "': no such file");
    CHECK_THAT(error_of([] { load_file(data_path("chain")); }), Contains("it is a directory"));
}

TEST_CASE("extends: the derived file overrides a nested scalar and replaces a list", "[loader][extends]") {
    Node root = load_file(data_path("derived.yaml"));
    CHECK(root.find("extends") == nullptr);
    const Node& dev = *root.find("device");
    CHECK(dev.find("clock")->scalar() == "1.5GHz");
    CHECK(dev.find("name")->scalar() == "base-gpu");
    // Lists are replaced, not merged item by item.
    REQUIRE(dev.find("memory")->items().size() == 1);
    CHECK(dev.find("memory")->items()[0].find("size")->scalar() == "80GiB");
    // Maps merge key by key.
    CHECK(dev.find("peak")->find("fp16")->scalar() == "400TFLOP/s");
    CHECK(dev.find("peak")->find("fp32")->scalar() == "19.5TFLOP/s");
    // Base keys keep their order; the base's order comes first.
    CHECK(dev.entries()[0].first == "name");
}

TEST_CASE("extends: each node reports the file that set it", "[loader][extends]") {
    Node root = load_file(data_path("derived.yaml"));
    const Node& dev = *root.find("device");
    const Node* name = dev.find("name");
    CHECK(name->loc().file == data_path("base.yaml"));
    CHECK(name->loc().line == 3);
    CHECK(name->path() == "device.name");
    const Node* fp32 = dev.find("peak")->find("fp32");
    CHECK(fp32->loc().file == data_path("base.yaml"));
    CHECK(fp32->loc().line == 14);
    const Node* clock = dev.find("clock");
    CHECK(clock->loc().file == data_path("derived.yaml"));
    CHECK(clock->loc().line == 3);
    CHECK(dev.find("memory")->items()[0].find("bandwidth")->loc().file == data_path("derived.yaml"));
}

TEST_CASE("extends: a chain of three files with paths relative to each file", "[loader][extends]") {
    Node root = load_file(data_path("chain/top.yaml"));
    CHECK(root.find("level")->scalar() == "top");
    CHECK(root.find("level")->loc().file == data_path("chain/top.yaml"));
    CHECK(root.find("from_mid")->scalar() == "yes");
    CHECK(root.find("from_mid")->loc().file == data_path("chain/mid/mid.yaml"));
    CHECK(root.find("from_bottom")->scalar() == "1");
    // "mid/../bottom.yaml" is normalised.
    CHECK(root.find("from_bottom")->loc().file == data_path("chain/bottom.yaml"));
    CHECK(root.find("extends") == nullptr);
}

TEST_CASE("extends: a list of files merges left to right, then the document", "[loader][extends]") {
    Node root = load_file(data_path("multi.yaml"));
    const Node& dev = *root.find("device");
    CHECK(dev.find("name")->scalar() == "overlay-gpu");
    CHECK(dev.find("clock")->scalar() == "2GHz");
    CHECK(dev.find("peak")->find("fp16")->scalar() == "312TFLOP/s");
    CHECK(dev.find("peak")->find("int8")->scalar() == "624TOPS");
    CHECK(dev.find("peak")->find("int8")->loc().file == data_path("overlay.yaml"));
}

TEST_CASE("extends: a cycle is reported with the chain of files", "[loader][extends][errors]") {
    std::string a = data_path("cycle_a.yaml");
    std::string b = data_path("cycle_b.yaml");
    CHECK(error_of([&] { load_file(a); }) ==
          b + ":2:10: error: extends: extends cycle: " + a + " -> " + b + " -> " + a);
    std::string self = data_path("self.yaml");
    CHECK(error_of([&] { load_file(self); }) ==
          self + ":1:10: error: extends: extends cycle: " + self + " -> " + self);
}

TEST_CASE("extends: a missing extended file is located at the extends entry", "[loader][extends][errors]") {
    std::string from = data_path("extends_missing.yaml");
    CHECK(error_of([&] { load_file(from); }) ==
          from + ":3:10: error: extends: cannot open '" + data_path("no_such_base.yaml") + "': no such file");
}

TEST_CASE("extends must name files", "[loader][extends][errors]") {
    std::string path = mlsim::cfg::test::write_temp("extends_map.yaml", "a: 1\nextends: {x: 1}\n");
    CHECK(error_of([&] { load_file(path); }) ==
          path + ":2:10: error: extends: expected a file name (or a list of file names), found a map");
    // parse_string leaves extends alone: it has no file to be relative to.
    CHECK(parse_string("extends: base.yaml\n", "e.yaml").find("extends") != nullptr);
}

TEST_CASE("a relative extends is relative to the naming file, not the working directory",
          "[loader][extends]") {
    std::string base = mlsim::cfg::test::write_temp("rel_base.yaml", "x: 1\n");
    std::string top = mlsim::cfg::test::write_temp("rel_top.yaml", "extends: rel_base.yaml\ny: 2\n");
    Node root = load_file(top);
    CHECK(root.find("x")->loc().file == base);
    CHECK(root.find("y")->loc().file == top);
}

TEST_CASE("merge: maps merge key by key, the overriding side wins", "[loader]") {
    Node base = parse_string("a: {x: 1, y: 2}\nl: [1, 2, 3]\ns: old\n", "base.yaml");
    Node over = parse_string("a: {y: 20, z: 30}\nl: [9]\nn: new\n", "over.yaml");
    Node m = merge(base, over);
    Node expected = parse_string("a: {x: 1, y: 20, z: 30}\nl: [9]\ns: old\nn: new\n", "e.yaml");
    CHECK(m.same_content(expected));
    CHECK(m.find("a")->find("x")->loc().file == "base.yaml");
    CHECK(m.find("a")->find("y")->loc().file == "over.yaml");
}

TEST_CASE("to_yaml round-trips and is deterministic", "[loader][yaml]") {
    Node root = load_file(data_path("derived.yaml"));
    std::string text = to_yaml(root);
    Node back = parse_string(text, "back.yaml");
    CHECK(back.same_content(root));
    CHECK(to_yaml(back) == text);

    const char* tricky =
        "plain: 2039 GB/s\n"
        "colon: \"a: b\"\n"
        "hash: \"x #y\"\n"
        "quote: 'say \"hi\"'\n"
        "empty: \"\"\n"
        "tilde: \"~\"\n"
        "null_word: \"null\"\n"
        "nothing:\n"
        "dash: \"- x\"\n"
        "neg: -5\n"
        "lines: \"one\\ntwo\\ttab\"\n"
        "backslash: 'a\\b'\n"
        "\"key: odd\": 1\n"
        "nested: [[1, 2], [], {}, {a: [x]}]\n"
        "star: \"*x\"\n"
        "percent: \"%d\"\n";
    Node t = parse_string(tricky, "t.yaml");
    std::string out = to_yaml(t);
    Node t2 = parse_string(out, "t2.yaml");
    CHECK(t2.same_content(t));
    CHECK(t2.find("nothing")->is_null());
    CHECK(t2.find("tilde")->scalar() == "~");
    CHECK(t2.find("empty")->scalar() == "");
    CHECK(t2.find("lines")->scalar() == "one\ntwo\ttab");
    CHECK(t2.find("key: odd")->scalar() == "1");
}

TEST_CASE("to_yaml writes block style with two-space indents", "[loader][yaml]") {
    Node root = parse_string("d: {name: x, mem: [{s: 1, b: 2}, {s: 3}], e: []}\n", "s.yaml");
    CHECK(to_yaml(root) ==
          "d:\n"
          "  name: x\n"
          "  mem:\n"
          "    - s: 1\n"
          "      b: 2\n"
          "    - s: 3\n"
          "  e: []\n");
}

TEST_CASE("same_content compares content, not locations", "[loader]") {
    Node a = parse_string("x: 1\ny: [a]\n", "a.yaml");
    Node b = parse_string("x: 1\n\ny: [a]\n", "b.yaml");
    CHECK(a.same_content(b));
    CHECK_FALSE(a.same_content(parse_string("x: 2\ny: [a]\n", "c.yaml")));
    CHECK_FALSE(a.same_content(parse_string("y: [a]\nx: 1\n", "d.yaml")));
    CHECK_FALSE(a.same_content(parse_string("x: 1\ny: a\n", "e.yaml")));
}

TEST_CASE("aliases copy the anchored value under the new key path", "[loader]") {
    Node root = parse_string("a: &m {x: 1}\nb: *m\n", "al.yaml");
    CHECK(root.find("b")->find("x")->scalar() == "1");
    CHECK(root.find("b")->find("x")->path() == "b.x");
}

TEST_CASE("an empty document is a null node", "[loader]") {
    CHECK(parse_string("", "e.yaml").is_null());
    CHECK(parse_string("# only a comment\n", "e.yaml").is_null());
}

// ---- bounded loading (sim/config/limits.h)

TEST_CASE("aliases count every node they copy, so an alias bomb stops at the node limit",
          "[loader][limits]") {
    // Each level lists its predecessor ten times: level n copies 10^n scalars.
    std::string text = "a0: &a0 [x, x, x, x, x, x, x, x, x, x]\n";
    for (int i = 1; i < 9; ++i) {
        text += fmt::format("a{0}: &a{0} [", i);
        for (int j = 0; j < 10; ++j) text += fmt::format("{}*a{}", j ? ", " : "", i - 1);
        text += "]\n";
    }
    const std::string msg = error_of([&] { parse_string(text, "bomb.yaml"); });
    // Levels 0..4 hold about 122,000 nodes; level 5 would add 1.1 million.
    CHECK_THAT(msg, StartsWith("bomb.yaml:6:") && Contains("more than 1000000 nodes"));
    // Below the limit an alias is an ordinary copy.
    const Node ok = parse_string("a: &x [1, 2]\nb: *x\n", "ok.yaml");
    CHECK(ok.find("b")->items().size() == 2);
    CHECK(ok.find("b")->path() == "b");
}

TEST_CASE("a recursive alias is a located user error, not an internal one", "[loader][limits]") {
    CHECK_THAT(error_of([] { parse_string("a: &x [1, *x]\n", "r.yaml"); }),
               StartsWith("r.yaml:1:11: error: a[1]: this alias refers to a map or list that contains it"));
    CHECK_THAT(error_of([] { parse_string("a: &x {b: {c: *x}}\n", "r.yaml"); }),
               StartsWith("r.yaml:1:15: error: a.b.c:"));
}

TEST_CASE("maps and lists may nest 64 deep, not deeper", "[loader][limits]") {
    const auto nested = [](int depth) {
        return fmt::format("a: {}{}\n", std::string(depth, '['), std::string(depth, ']'));
    };
    CHECK_NOTHROW(parse_string(nested(63), "n.yaml"));  // the root map is the 64th
    CHECK_THAT(error_of([&] { parse_string(nested(64), "n.yaml"); }),
               StartsWith("n.yaml:1:67: error: ") && Contains("nest more than 64 levels"));
    CHECK_THAT(error_of([&] { parse_string(nested(100000), "n.yaml"); }),
               Contains("nest more than 64 levels"));
}

TEST_CASE("only regular files of at most 16 MiB are read", "[loader][limits]") {
    CHECK_THAT(error_of([] { load_file("/dev/zero"); }),
               StartsWith("/dev/zero: error: cannot open '/dev/zero': not a regular file"));
    const std::string fifo = mlsim::cfg::test::write_temp("placeholder.yaml", "") + ".fifo";
    std::filesystem::remove(fifo);
    REQUIRE(::mkfifo(fifo.c_str(), 0600) == 0);
    CHECK_THAT(error_of([&] { load_file(fifo); }), Contains("not a regular file"));
    std::filesystem::remove(fifo);
    // Exactly at the limit a file is read; one byte more and it is refused unread.
    std::string text = "a: 1\n#";
    text += std::string((16u << 20) - text.size() - 1, 'x') + "\n";
    const std::string big = mlsim::cfg::test::write_temp("big.yaml", text);
    CHECK(load_file(big).find("a")->scalar() == "1");
    std::filesystem::resize_file(big, (16u << 20) + 1);
    CHECK_THAT(error_of([&] { load_file(big); }), Contains("larger than 16 MiB"));
}

TEST_CASE("an extends chain of more than 32 files is refused where it passes the limit", "[loader][limits]") {
    for (int i = 0; i < 40; ++i)
        mlsim::cfg::test::write_temp(fmt::format("chain{}.yaml", i),
                                     fmt::format("extends: chain{}.yaml\n", i + 1));
    const std::string last = mlsim::cfg::test::write_temp("chain40.yaml", "a: 1\n");
    const std::string first = std::filesystem::path(last).parent_path().string() + "/chain0.yaml";
    CHECK_THAT(
        error_of([&] { load_file(first); }),
        Contains("chain31.yaml:1:10: error: extends: the `extends:` chain is more than 32 files long"));
    const std::string ok = std::filesystem::path(last).parent_path().string() + "/chain9.yaml";
    CHECK(load_file(ok).find("a")->scalar() == "1");  // 32 files: chain9 ... chain40
}
