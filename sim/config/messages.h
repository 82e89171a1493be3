#pragma once
// Small helpers that every config reader uses to word and place its errors the same way: lists joined
// for messages, "did you mean" suggestions, and errors located at a node of a validated tree.
#include <string>
#include <string_view>
#include <vector>

#include "sim/config/node.h"

namespace mlsim::cfg {

// "a, b, c" (or with another separator).
std::string join(const std::vector<std::string>& items, std::string_view sep = ", ");
bool contains(const std::vector<std::string>& items, std::string_view item);
// " (did you mean 'x'?)" for the nearest candidate (schema.h: nearest), or "" when none is near.
std::string did_you_mean(std::string_view word, const std::vector<std::string>& candidates);
// The child `key` of a validated map; its absence is an internal error (validation put it there).
const Node& child(const Node& map, std::string_view key);
// A UserError located at `node`: a complaint about a whole map or list points at its key, one about a
// value at the value.
[[noreturn]] void fail_at(const Node& node, const std::string& message);

}  // namespace mlsim::cfg
