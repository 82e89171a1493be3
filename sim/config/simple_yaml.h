#pragma once
// A fast reader for the plain subset of YAML that mlsim's own files use (issue 8, start-up): block maps
// and lists by indentation, `- key: value` list items, flow maps and lists (`{a: 1, b: [2, 3]}`, across
// lines), plain scalars, quoted scalars without escapes, and comments. yaml-cpp spends about 3 M
// instructions (0.5 ms) on the 2.8 kB TPU v4 preset; this reader about a tenth of that.
// Contract:
// - parse_simple_yaml(text, file) returns the very tree parse_string's yaml-cpp path builds (same kinds,
//   texts, key order, locations, key locations and key paths), or std::nullopt for anything outside the
//   subset or in doubt: anchors, aliases, tags, block scalars (| >), escapes, multi-line plain scalars,
//   null values, empty documents, document markers, directives, tabs, CR, non-ASCII bytes, duplicate
//   keys, nesting past 32 levels, and every malformed input. parse_string then parses the text again
//   with yaml-cpp, which gives the same tree or the same located error as before: the subset reader
//   never reports an error of its own.
// - Linear in the text's length; it builds nothing larger than the text describes (no aliases).
// tests/config/test_simple_yaml.cpp compares both readers on every YAML file in the repository and on
// thousands of mutated copies.
#include <optional>
#include <string>
#include <string_view>

#include "sim/config/node.h"

namespace mlsim::cfg::detail {

std::optional<Node> parse_simple_yaml(std::string_view text, const std::string& filename);

// parse_string without the fast reader (yaml-cpp only): for the tests that compare the two.
Node parse_string_yaml_cpp(std::string_view text, const std::string& filename);

}  // namespace mlsim::cfg::detail
