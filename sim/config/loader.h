#pragma once
// Reading YAML into cfg::Node trees, with `extends:` resolution, and writing trees back as YAML.
// Contract:
// - load_file("a.yaml"): a missing/unreadable file, malformed YAML (with yaml-cpp's line/column),
//   a duplicate key, or an `extends:` cycle is a UserError naming the file and location.
// - Bounded (sim/config/limits.h): only regular files of at most limits::max_file_bytes are read; a
//   document has at most limits::max_yaml_nodes nodes and limits::max_yaml_bytes of key and value text,
//   counting what every alias copies (so an alias "bomb" stops before it is expanded), and nests at
//   most limits::max_yaml_depth maps and lists;
//   an `extends:` chain has at most limits::max_extends_depth files; a recursive alias is an error.
//   Each is a UserError located where the limit is crossed. Loading is linear in the document's size.
// - `extends: other.yaml` (or a list of files) at the top level of a document: the path is relative to
//   the file that names it; the other file is loaded first, then this document is deep-merged over it
//   (maps merge key by key, scalars and lists are replaced). The `extends` key is removed from the result.
// - to_yaml() writes a deterministic YAML text (same tree -> same bytes) that load_file/parse_string
//   read back into an equal tree.
#include <string>
#include <string_view>

#include "sim/config/node.h"

namespace mlsim::cfg {

// The whole text of an input file, read with the same checks as load_file (a regular file, within the
// size limit); problems are reported at `at` / `key_path` (where the file was named).
std::string read_text_file(const std::string& path, const SourceLoc& at, std::string_view key_path);

// Locations in the result name `path` as given (and extended files as resolved from it, e.g.
// "configs/devices/../base.yaml" becomes "configs/base.yaml"). An empty document is a null node.
Node load_file(const std::string& path);
// Parses one YAML document; `filename` is only used in locations. Does not resolve `extends:`.
Node parse_string(std::string_view text, const std::string& filename);
std::string to_yaml(const Node& node);

// Deep merge: `over` wins. Exposed for tests and for command-line overrides.
Node merge(const Node& base, const Node& over);

}  // namespace mlsim::cfg
