// The fast reader of the plain YAML subset (sim/config/simple_yaml.h) against yaml-cpp: wherever the fast
// reader accepts a text, yaml-cpp must accept it too and build the same tree, locations and key paths
// included; everything else must be left to yaml-cpp (parse_string then gives yaml-cpp's error).
#include <catch2/catch.hpp>
#include <filesystem>
#include <fstream>
#include <random>
#include <sstream>
#include <string>
#include <vector>

#include "sim/config/loader.h"
#include "sim/config/simple_yaml.h"

using namespace mlsim::cfg;

namespace {

std::string read_all(const std::filesystem::path& p) {
    std::ifstream in(p, std::ios::binary);
    std::ostringstream s;
    s << in.rdbuf();
    return s.str();
}

std::string where(const SourceLoc& l) {
    return l.file + ":" + std::to_string(l.line) + ":" + std::to_string(l.col);
}

// The first difference between two trees ("" when none): kinds, texts, keys in order, items, locations,
// key locations and key paths.
std::string difference(const Node& a, const Node& b) {
    const std::string at = "'" + a.path() + "' ";
    if (a.kind() != b.kind())
        return at + "kind " + std::string(a.kind_name()) + " / " + std::string(b.kind_name());
    if (a.path() != b.path()) return at + "path / '" + b.path() + "'";
    if (where(a.loc()) != where(b.loc())) return at + "loc " + where(a.loc()) + " / " + where(b.loc());
    if (where(a.key_loc()) != where(b.key_loc()))
        return at + "key loc " + where(a.key_loc()) + " / " + where(b.key_loc());
    if (a.is_scalar() && a.scalar() != b.scalar())
        return at + "text '" + a.scalar() + "' / '" + b.scalar() + "'";
    if (a.is_map()) {
        if (a.entries().size() != b.entries().size()) return at + "map sizes differ";
        for (std::size_t i = 0; i < a.entries().size(); ++i) {
            if (a.entries()[i].first != b.entries()[i].first)
                return at + "key '" + a.entries()[i].first + "' / '" + b.entries()[i].first + "'";
            std::string d = difference(a.entries()[i].second, b.entries()[i].second);
            if (!d.empty()) return d;
        }
    }
    if (a.is_sequence()) {
        if (a.items().size() != b.items().size()) return at + "list sizes differ";
        for (std::size_t i = 0; i < a.items().size(); ++i) {
            std::string d = difference(a.items()[i], b.items()[i]);
            if (!d.empty()) return d;
        }
    }
    return "";
}

// Where the fast reader accepts `text`, yaml-cpp's tree must be the same. Returns whether it accepted.
bool agrees(const std::string& text, const std::string& name) {
    const std::optional<Node> fast = detail::parse_simple_yaml(text, name);
    if (!fast) return false;
    Node full;
    try {
        full = detail::parse_string_yaml_cpp(text, name);
    } catch (const UserError& e) {
        FAIL_CHECK("the fast reader accepted a text yaml-cpp rejects (" << e.what() << "):\n" << text);
        return true;
    }
    const std::string d = difference(*fast, full);
    if (!d.empty()) FAIL_CHECK(name << ": fast / yaml-cpp differ at " << d << " in:\n" << text);
    return true;
}

std::vector<std::filesystem::path> repository_yaml() {
    std::vector<std::filesystem::path> files;
    for (const char* dir : {"configs", "tests", "experiment", "bench", "analysis"}) {
        const std::filesystem::path root = std::filesystem::path(MLSIM_SOURCE_DIR) / dir;
        if (!std::filesystem::exists(root)) continue;
        for (const auto& e : std::filesystem::recursive_directory_iterator(root))
            if (e.is_regular_file() && (e.path().extension() == ".yaml" || e.path().extension() == ".yml"))
                files.push_back(e.path());
    }
    std::sort(files.begin(), files.end());
    return files;
}

}  // namespace

TEST_CASE("simple YAML: the same trees as yaml-cpp on every YAML file of the repository",
          "[config][simple_yaml]") {
    std::size_t accepted = 0, presets = 0, presets_accepted = 0;
    const auto files = repository_yaml();
    REQUIRE(files.size() > 50);
    for (const auto& f : files) {
        const bool ok = agrees(read_all(f), f.generic_string());
        accepted += ok;
        const std::string parent = f.parent_path().filename().string();
        if (parent == "devices" || parent == "systems") {
            ++presets;
            presets_accepted += ok;
        }
    }
    INFO(accepted << " of " << files.size() << " files read by the fast reader");
    // The point of the reader: every built-in device and system preset takes the fast path.
    CHECK(presets > 20);
    CHECK(presets_accepted == presets);
}

TEST_CASE("simple YAML: hand-written cases", "[config][simple_yaml]") {
    const std::vector<std::string> accepted = {
        "a: 1\n",
        "a: 1",
        "# c\n\na: x y z   # comment\nb: 'q'\nc: \"d e\"\n",
        "a:\n  b:\n    c: 1\n  d: 2\ne: 3\n",
        "l:\n  - 1\n  - two\n  - {x: 1, y: [2, 3]}\n",
        "l:\n- 1\n",  // a list at its key's indentation: yaml-cpp reads it; the fast reader leaves it
        "m: {a: 1,\n    b: 2}   # c\n",
        "m: {a: 1, # one\n    b: [x,\n      y]}\n",
        "m: {}\nn: []\n",
        "- a: 1\n  b: 2\n- c: 3\n",
        "k: 1.5GHz\nu: http://x/y\n",
        "k: a#b\n",
        "\"q k\": 1\n'r': 2\n",
        "k: -1\nj: -x\n",
    };
    for (const std::string& t : accepted) agrees(t, "hand.yaml");
    CHECK(detail::parse_simple_yaml("a: 1\nb:\n  c: [1, {d: e}]\n", "x.yaml").has_value());
    CHECK(detail::parse_simple_yaml("- a: 1\n  b: 2\n", "x.yaml").has_value());

    // Left to yaml-cpp: outside the subset, or malformed.
    const std::vector<std::string> refused = {
        "",
        "# only a comment\n",
        "a:\n",
        "a: ~\n",
        "a: null\n",
        "a: &x 1\nb: *x\n",
        "a: !tag 1\n",
        "a: |\n  text\n",
        "a: >\n  text\n",
        "a: \"esc\\n\"\n",
        "a: 'it''s'\n",
        "a: b\n  c\n",
        "a: 1\na: 2\n",
        "a: b: c\n",
        "---\na: 1\n",
        "a:\tb\n",
        "a: 1\r\n",
        "a: {b: 1\n",
        "a: {b: 1,}\n",
        "a: [1, 2\n",
        "a: 1\n b: 2\n",
        "  a: 1\nb: 2\n",
        "a: x\n- y\n",
        "- - 1\n",
        "-\n  a: 1\n",
        "a: {b}\n",
        "? a\n: 1\n",
        "a: caf\xc3\xa9\n",
        "null: 1\n",
        "a: {Null: 1}\n",
        "- NULL: 1\n",
    };
    for (const std::string& t : refused) {
        INFO("text: " << t);
        CHECK_FALSE(detail::parse_simple_yaml(t, "hand.yaml").has_value());
    }
}

TEST_CASE("simple YAML: mutated presets are read as yaml-cpp reads them, or left to it",
          "[config][simple_yaml]") {
    std::vector<std::string> texts;
    for (const auto& f : repository_yaml()) {
        const std::string parent = f.parent_path().filename().string();
        if (parent == "devices" || parent == "systems") texts.push_back(read_all(f));
    }
    REQUIRE(!texts.empty());
    std::mt19937_64 rng(8);  // fixed: the same mutations on every run
    const std::string pieces = " :-#{}[],'\"\n&*!|>?~.0a";
    std::size_t accepted = 0, total = 0;
    for (int round = 0; round < 3000; ++round) {
        std::string t = texts[rng() % texts.size()];
        const int edits = 1 + static_cast<int>(rng() % 3);
        for (int e = 0; e < edits && !t.empty(); ++e) {
            const std::size_t at = rng() % t.size();
            switch (rng() % 5) {
                case 0:
                    t.erase(at, 1);
                    break;
                case 1:
                    t.insert(at, 1, pieces[rng() % pieces.size()]);
                    break;
                case 2:
                    t[at] = pieces[rng() % pieces.size()];
                    break;
                case 3: {  // a line indented by one or two more or fewer spaces
                    const std::size_t start =
                        t.rfind('\n', at) == std::string::npos ? 0 : t.rfind('\n', at) + 1;
                    if (rng() % 2)
                        t.insert(start, 1 + rng() % 2, ' ');
                    else if (t.compare(start, 2, "  ") == 0)
                        t.erase(start, 1 + rng() % 2);
                    break;
                }
                default: {  // a line repeated
                    const std::size_t start =
                        t.rfind('\n', at) == std::string::npos ? 0 : t.rfind('\n', at) + 1;
                    const std::size_t end = t.find('\n', at);
                    const std::string line =
                        t.substr(start, end == std::string::npos ? std::string::npos : end - start);
                    t.insert(start, line + "\n");
                    break;
                }
            }
        }
        ++total;
        accepted += agrees(t, "mutated.yaml");
    }
    INFO(accepted << " of " << total << " mutated texts read by the fast reader");
    // Most single edits leave a valid text inside the subset: the comparison above must have run often.
    CHECK(accepted > total / 4);
}
