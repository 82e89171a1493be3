#pragma once
// Key paths into config trees ("device.memory[1].bandwidth") and setting a value at one.
// Contract:
// - parse_key_path splits a path into map keys and list indices; an empty segment, an unclosed or
//   non-numeric index, or a path that starts with an index is a UserError located at `loc`.
// - set_at_path replaces the node at `path` (or adds it when its map lacks the key), creating missing
//   maps on the way; the new node takes the key path it lands at and `loc` as its key location. An index
//   must address an existing list item; indexing something that is not a list, or stepping into a scalar,
//   is a UserError at `loc` naming the path. Whether a key is *allowed* is the schema's business: the
//   caller validates the tree afterwards.
// - schema_leaf walks a path through a schema without any tree, so that a misspelt key is reported (with
//   the nearest valid one) before anything is loaded: an unknown key, an index into a map, a list
//   entered without an index and a step into a single value are UserErrors at `loc` naming the path.
#include <cstddef>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "sim/config/node.h"
#include "sim/config/schema.h"

namespace mlsim::exp {

struct PathStep {
    std::string key;                   // a map key, when index is empty
    std::optional<std::size_t> index;  // a list index
};

std::vector<PathStep> parse_key_path(std::string_view path, const cfg::SourceLoc& loc);

void set_at_path(cfg::Node& root, std::string_view path, cfg::Node value, const cfg::SourceLoc& loc);

// What a key path ends at, under `schema` (the map steps[0] names): the declaration of its last key,
// or null for the root itself. For a path ending at an entry of a dict (device.peak.bf16), `param` is
// the dict's declaration and `dict_entry` is set: the entry's type is param->value_type.
struct SchemaLeaf {
    const cfg::Param* param = nullptr;
    bool dict_entry = false;
    // The dimension of the value when the path ends at a quantity.
    std::optional<cfg::Dim> dim() const;
};
SchemaLeaf schema_leaf(const cfg::Schema& schema, const std::vector<PathStep>& steps, std::string_view path,
                       const cfg::SourceLoc& loc);

}  // namespace mlsim::exp
