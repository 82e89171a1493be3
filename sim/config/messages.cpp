#include "sim/config/messages.h"

#include <algorithm>

#include "sim/config/error.h"
#include "sim/config/schema.h"
#include "sim/core/check.h"

namespace mlsim::cfg {

std::string join(const std::vector<std::string>& items, std::string_view sep) {
    std::string out;
    for (size_t i = 0; i < items.size(); ++i) {
        if (i) out += sep;
        out += items[i];
    }
    return out;
}

bool contains(const std::vector<std::string>& items, std::string_view item) {
    return std::find(items.begin(), items.end(), item) != items.end();
}

std::string did_you_mean(std::string_view word, const std::vector<std::string>& candidates) {
    std::string near = nearest(word, candidates);
    return near.empty() ? std::string() : " (did you mean '" + near + "'?)";
}

const Node& child(const Node& map, std::string_view key) {
    const Node* n = map.find(key);
    MLSIM_CHECK(n != nullptr, "validated tree lacks key " + std::string(key));
    return *n;
}

void fail_at(const Node& node, const std::string& message) {
    fail(node.is_scalar() ? node.loc() : node.key_loc(), node.path(), message);
}

}  // namespace mlsim::cfg
