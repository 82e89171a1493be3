#include <fmt/format.h>

#include <catch2/catch.hpp>
#include <string>
#include <thread>
#include <vector>

#include "sim/config/loader.h"
#include "sim/config/node.h"
#include "sim/core/check.h"
#include "tests/config/helpers.h"

using namespace mlsim::cfg;
using mlsim::cfg::test::error_of;

namespace {

Node scalar(const std::string& text) { return Node::make_scalar(text, SourceLoc{"n.yaml", 4, 9}, "a.b"); }

}  // namespace

TEST_CASE("SourceLoc prints file:line:col, file alone, or <built-in>", "[node]") {
    CHECK(SourceLoc{"f.yaml", 3, 7}.str() == "f.yaml:3:7");
    CHECK(SourceLoc{"f.yaml", 3, 0}.str() == "f.yaml:3");
    CHECK(SourceLoc{"f.yaml", 0, 0}.str() == "f.yaml");
    CHECK(SourceLoc{"", 3, 7}.str() == "<built-in>");
}

TEST_CASE("fail formats location, key path and message on one line", "[node][errors]") {
    CHECK(error_of([] { fail(SourceLoc{"f.yaml", 3, 7}, "x.y", "bad"); }) == "f.yaml:3:7: error: x.y: bad");
    CHECK(error_of([] { fail(SourceLoc{"f.yaml", 3, 7}, "", "bad"); }) == "f.yaml:3:7: error: bad");
}

TEST_CASE("a message past 8 KiB keeps its start and end, the middle counted", "[node][errors]") {
    // A 10 MB unknown key was echoed twice in a 20 MB message.
    const std::string key(1'000'000, 'k');
    const std::string msg = error_of([&] {
        fail(SourceLoc{"f.yaml", 3, 7}, key, "unknown key; valid: a, b");
    });
    CHECK(msg.size() <= mlsim::cfg::k_max_message_bytes);
    CHECK(msg.rfind("f.yaml:3:7: error: kkk", 0) == 0);
    CHECK(msg.ends_with("unknown key; valid: a, b"));
    CHECK(msg.find("bytes left out ...]") != std::string::npos);
    // A cut never splits a UTF-8 character ("é" is 0xC3 0xA9; the head's cut falls between the two).
    std::string wide = std::string(6143, 'a');
    for (int i = 0; i < 2000; ++i) wide += "\xc3\xa9";
    wide += "end";
    const std::string cut = mlsim::cfg::bounded_message(wide);
    const std::size_t mark = cut.find(" [... ");
    REQUIRE(mark != std::string::npos);
    CHECK(cut[mark - 1] == 'a');  // not a lone 0xC3
    CHECK(static_cast<unsigned char>(cut[mark + cut.substr(mark).find("] ") + 2]) == 0xc3);  // a whole é
    const std::string short_one = "short";
    CHECK(mlsim::cfg::bounded_message(short_one) == short_one);
}

TEST_CASE("as_int accepts decimal integers only", "[node]") {
    CHECK(scalar("42").as_int() == 42);
    CHECK(scalar("-7").as_int() == -7);
    CHECK(scalar("+7").as_int() == 7);
    CHECK(scalar("9223372036854775807").as_int() == INT64_MAX);
    CHECK(error_of([] { scalar("abc").as_int(); }) ==
          "n.yaml:4:9: error: a.b: expected an integer, found \"abc\"");
    CHECK(error_of([] { scalar("1e3").as_int(); }) ==
          "n.yaml:4:9: error: a.b: expected an integer, found \"1e3\"");
    CHECK(error_of([] { scalar("0x10").as_int(); }) ==
          "n.yaml:4:9: error: a.b: expected an integer, found \"0x10\"");
    CHECK(error_of([] { scalar("99999999999999999999").as_int(); }) ==
          "n.yaml:4:9: error: a.b: integer out of range, found \"99999999999999999999\"");
    CHECK_THROWS_AS(scalar("").as_int(), UserError);
    CHECK_THROWS_AS(scalar("--1").as_int(), UserError);
    CHECK_THROWS_AS(scalar(" 1").as_int(), UserError);
}

TEST_CASE("as_double accepts finite decimal numbers", "[node]") {
    CHECK(scalar("0.9").as_double() == 0.9);
    CHECK(scalar("1e-3").as_double() == 1e-3);
    CHECK(scalar("-2").as_double() == -2.0);
    CHECK(scalar(".5").as_double() == 0.5);
    CHECK(error_of([] { scalar("inf").as_double(); }) ==
          "n.yaml:4:9: error: a.b: expected a number, found \"inf\"");
    CHECK_THROWS_AS(scalar(".inf").as_double(), UserError);
    CHECK_THROWS_AS(scalar("nan").as_double(), UserError);
    CHECK_THROWS_AS(scalar("1e999").as_double(), UserError);
    CHECK_THROWS_AS(scalar("1.5GHz").as_double(), UserError);
}

TEST_CASE("try_double is as_double without the error", "[node]") {
    for (const char* text : {"0.9", "1e-3", "-2", ".5", "5.", "0"}) {
        INFO(text);
        REQUIRE(scalar(text).try_double().has_value());
        CHECK(*scalar(text).try_double() == scalar(text).as_double());
    }
    for (const char* text : {"inf", ".inf", "nan", "1e999", "1.5GHz", "os", "", " 1"}) {
        INFO(text);
        CHECK_FALSE(scalar(text).try_double().has_value());
        CHECK_THROWS_AS(scalar(text).as_double(), UserError);
    }
    CHECK_FALSE(Node::make_map(SourceLoc{"n.yaml", 1, 1}, "m").try_double().has_value());
}

TEST_CASE("as_bool accepts true and false only", "[node]") {
    CHECK(scalar("true").as_bool());
    CHECK(scalar("True").as_bool());
    CHECK_FALSE(scalar("false").as_bool());
    CHECK_FALSE(scalar("FALSE").as_bool());
    CHECK(error_of([] { scalar("yes").as_bool(); }) ==
          "n.yaml:4:9: error: a.b: expected true or false, found \"yes\"");
    CHECK_THROWS_AS(scalar("1").as_bool(), UserError);
}

TEST_CASE("typed views of a map or list name what was found", "[node]") {
    Node m = Node::make_map(SourceLoc{"n.yaml", 2, 3}, "m");
    CHECK(error_of([&] { m.as_string(); }) == "n.yaml:2:3: error: m: expected a string, found a map");
    CHECK(error_of([&] { m.as_int(); }) == "n.yaml:2:3: error: m: expected an integer, found a map");
    CHECK(error_of([&] {
              Node::make_null(SourceLoc{"n.yaml", 5, 1}, "z").as_bool();
          }) == "n.yaml:5:1: error: z: expected true or false, found nothing");
}

TEST_CASE("kind names", "[node]") {
    CHECK(Node().kind_name() == "nothing");
    CHECK(scalar("x").kind_name() == "a scalar");
    CHECK(Node::make_sequence({}, "").kind_name() == "a list");
    CHECK(Node::make_map({}, "").kind_name() == "a map");
}

TEST_CASE("set replaces in place, erase removes, find misses return null", "[node]") {
    Node m = Node::make_map({}, "");
    m.set("a", scalar("1"));
    m.set("b", scalar("2"));
    m.set("a", scalar("3"));
    REQUIRE(m.entries().size() == 2);
    CHECK(m.entries()[0].first == "a");
    CHECK(m.find("a")->scalar() == "3");
    CHECK(m.erase("a"));
    CHECK_FALSE(m.erase("a"));
    CHECK(m.find("a") == nullptr);
    CHECK(m.entries().size() == 1);
}

TEST_CASE("misusing a node is an internal error", "[node]") {
    CHECK_THROWS_AS(Node::make_map({}, "").scalar(), mlsim::InternalError);
    Node s = scalar("x");
    CHECK_THROWS_AS(s.set("k", scalar("v")), mlsim::InternalError);
    CHECK_THROWS_AS(s.push_back(scalar("v")), mlsim::InternalError);
}

TEST_CASE("set_path re-roots a whole subtree", "[node]") {
    Node root = parse_string("a:\n  b: [1, {c: 2}]\n", "p.yaml");
    Node sub = *root.find("a");
    sub.set_path("x.y");
    CHECK(sub.path() == "x.y");
    CHECK(sub.find("b")->path() == "x.y.b");
    CHECK(sub.find("b")->items()[1].find("c")->path() == "x.y.b[1].c");
    sub.set_path("");
    CHECK(sub.find("b")->items()[0].path() == "b[0]");
}

TEST_CASE("set_path re-roots a subtree whose root has the path and a descendant does not", "[node]") {
    // set_path leaves a subtree that has its paths already as it is; one wrong path below must still be
    // found, at any depth, in maps and sequences (indices 1 and 11 differ, so do "a.b" and "ab.").
    Node root = parse_string("a:\n  b: [1, {c: 2}, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12]\n  d: 3\n", "p.yaml");
    Node sub = *root.find("a");
    REQUIRE(sub.path() == "a");
    const auto paths = [](const Node& n) {
        return n.path() + " " + n.find("b")->path() + " " + n.find("b")->items()[1].find("c")->path() + " " +
               n.find("b")->items()[11].path() + " " + n.find("d")->path();
    };
    const std::string right = "a a.b a.b[1].c a.b[11] a.d";
    CHECK(paths(sub) == right);
    sub.set_path("a");
    CHECK(paths(sub) == right);
    for (const char* wrong : {"elsewhere", "ab.", "a.c", "a.b[1]", ""}) {
        Node b = *sub.find("b");
        b.set_path(wrong);
        Node moved = sub;
        moved.set("b", b);
        CHECK(paths(moved) != right);
        moved.set_path("a");
        CHECK(paths(moved) == right);
    }
    // A sequence item with another index's path.
    Node b = *sub.find("b");
    Node item = b.items()[1];
    item.set_path("a.b[11]");
    Node list = Node::make_sequence({}, "a.b");
    for (std::size_t i = 0; i < b.items().size(); ++i) list.push_back(i == 1 ? item : b.items()[i]);
    Node moved = sub;
    moved.set("b", list);
    CHECK(moved.find("b")->items()[1].find("c")->path() == "a.b[11].c");
    moved.set_path("a");
    CHECK(paths(moved) == right);
}

TEST_CASE("an empty value is a null node located at its key", "[node]") {
    Node root = parse_string("a:\n  b:\n  c: 1\n", "p.yaml");
    const Node* b = root.find("a")->find("b");
    REQUIRE(b);
    CHECK(b->is_null());
    CHECK(b->loc().line == 2);
    CHECK(b->loc().col == 3);
    CHECK(child_key_path("", "a") == "a");
    CHECK(child_key_path("a", "b") == "a.b");
    CHECK(child_index_path("a.b", 3) == "a.b[3]");
}

TEST_CASE("a large map finds, replaces and erases keys like a small one", "[node]") {
    // Past a few keys a map keeps a hash index; it must agree with the ordered entries after any edit.
    Node m = Node::make_map(SourceLoc{"f.yaml", 1, 1}, "m");
    for (int i = 0; i < 1000; ++i)
        m.set(fmt::format("k{}", i), Node::make_scalar(std::to_string(i), SourceLoc{}, ""));
    REQUIRE(m.entries().size() == 1000);
    CHECK(m.find("k999")->scalar() == "999");
    CHECK(m.find("k1000") == nullptr);
    m.set("k5", Node::make_scalar("five", SourceLoc{}, ""));
    CHECK(m.entries().size() == 1000);
    CHECK(m.entries()[5].second.scalar() == "five");
    CHECK(m.erase("k0"));
    CHECK_FALSE(m.erase("k0"));
    CHECK(m.find("k0") == nullptr);
    CHECK(m.find("k1")->scalar() == "1");
    CHECK(m.entries().front().first == "k1");
    for (int i = 1; i < 990; ++i) CHECK(m.erase(fmt::format("k{}", i)));
    CHECK(m.entries().size() == 10);  // back below the index threshold: found by scanning
    CHECK(m.find("k995")->scalar() == "995");
    m.set("k0", Node::make_scalar("again", SourceLoc{}, ""));
    CHECK(m.entries().back().first == "k0");
    const Node copy = m;
    CHECK(copy.find("k0")->scalar() == "again");
    CHECK(copy.same_content(m));
}

TEST_CASE("a copy shares its tree until one side changes, and then only that side changes", "[node]") {
    const SourceLoc at{"n.yaml", 1, 1};
    Node doc = Node::make_map(at, "");
    Node device = Node::make_map(at, "device");
    device.set("clock", Node::make_scalar("1GHz", at, "device.clock"));
    Node memory = Node::make_sequence(at, "device.memory");
    memory.push_back(Node::make_scalar("8MiB", at, "device.memory[0]"));
    device.set("memory", memory);
    doc.set("device", device);

    Node copy = doc;
    CHECK(copy.same_content(doc));
    CHECK(&copy.entries() == &doc.entries());  // shared, not copied

    // A change through a child of the copy (mutable find) leaves the original and its children as they were.
    copy.find("device")->set("clock", Node::make_scalar("2GHz", at, "device.clock"));
    CHECK(copy.find("device")->find("clock")->scalar() == "2GHz");
    CHECK(doc.find("device")->find("clock")->scalar() == "1GHz");
    CHECK(device.find("clock")->scalar() == "1GHz");
    CHECK_FALSE(copy.same_content(doc));

    // And the other way round: a change to the original after the copy is not seen by the copy.
    Node copy2 = doc;
    doc.find("device")->find("memory")->push_back(Node::make_scalar("16MiB", at, "device.memory[1]"));
    doc.erase("missing");
    CHECK(doc.find("device")->find("memory")->items().size() == 2);
    CHECK(copy2.find("device")->find("memory")->items().size() == 1);
    CHECK(memory.items().size() == 1);

    // Paths and key locations are contents too.
    Node moved = copy2;
    moved.set_path("system.device_doc");
    moved.set_key_loc(SourceLoc{"m.yaml", 7, 3});
    CHECK(moved.find("device")->find("clock")->path() == "system.device_doc.device.clock");
    CHECK(copy2.find("device")->find("clock")->path() == "device.clock");
    CHECK(copy2.key_loc().file == "n.yaml");
    CHECK(moved.key_loc().file == "m.yaml");

    // A default (null) node and a moved-from one read as null; a node built from one is its own.
    Node empty;
    CHECK(empty.is_null());
    CHECK(empty.entries().empty());
    Node taken = std::move(moved);
    CHECK(taken.is_map());
    Node grown = empty;
    grown.set_key_loc(SourceLoc{"g.yaml", 2, 2});
    CHECK(grown.key_loc().file == "g.yaml");
    CHECK(empty.key_loc().file.empty());
}

TEST_CASE("copies of one tree change independently in parallel threads", "[node]") {
    const SourceLoc at{"n.yaml", 1, 1};
    Node doc = Node::make_map(at, "");
    for (int k = 0; k < 40; ++k)
        doc.set(fmt::format("k{}", k), Node::make_scalar("0", at, fmt::format("k{}", k)));
    const Node& shared = doc;
    std::vector<std::thread> threads;
    std::vector<std::string> seen(4);
    for (int t = 0; t < 4; ++t)
        threads.emplace_back([&, t] {
            for (int round = 0; round < 200; ++round) {
                Node mine = shared;  // a copy taken while the other threads copy and change theirs
                mine.set(fmt::format("k{}", round % 40), Node::make_scalar(std::to_string(t), at, "x"));
                mine.erase("k39");
                if (round == 199) seen[static_cast<std::size_t>(t)] = mine.find("k39") ? "kept" : "erased";
            }
        });
    for (std::thread& th : threads) th.join();
    for (const std::string& s : seen) CHECK(s == "erased");
    // The shared tree itself never changed.
    CHECK(doc.entries().size() == 40);
    for (const auto& [key, value] : doc.entries()) CHECK(value.scalar() == "0");
}
