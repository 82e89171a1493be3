#include "experiment/key_path.h"

#include <fmt/format.h>

#include <algorithm>
#include <cctype>
#include <span>

namespace mlsim::exp {

std::vector<PathStep> parse_key_path(std::string_view path, const cfg::SourceLoc& loc) {
    std::vector<PathStep> steps;
    auto bad = [&](std::string_view why) {
        cfg::fail(loc, path,
                  fmt::format("not a valid key path ({}); write keys separated by '.' and list indices in "
                              "brackets, e.g. device.memory[1].bandwidth",
                              why));
    };
    if (path.empty()) bad("it is empty");
    std::size_t i = 0;
    while (i < path.size()) {
        if (path[i] == '[') {
            if (steps.empty()) bad("it starts with an index");
            const std::size_t close = path.find(']', i);
            if (close == std::string_view::npos) bad("an index has no closing ']'");
            const std::string_view digits = path.substr(i + 1, close - i - 1);
            if (digits.empty() || digits.size() > 9) bad("an index must be a number");
            std::size_t n = 0;
            for (char c : digits) {
                if (!std::isdigit(static_cast<unsigned char>(c))) bad("an index must be a number");
                n = n * 10 + static_cast<std::size_t>(c - '0');
            }
            steps.push_back(PathStep{{}, n});
            i = close + 1;
            if (i < path.size() && path[i] != '.' && path[i] != '[') bad("expected '.' or '[' after ']'");
            if (i < path.size() && path[i] == '.') {
                ++i;
                if (i == path.size()) bad("it ends with '.'");
            }
            continue;
        }
        std::size_t end = i;
        while (end < path.size() && path[end] != '.' && path[end] != '[') ++end;
        if (end == i) bad("it has an empty key");
        steps.push_back(PathStep{std::string(path.substr(i, end - i)), std::nullopt});
        i = end;
        if (i < path.size() && path[i] == '.') {
            ++i;
            if (i == path.size()) bad("it ends with '.'");
        }
    }
    return steps;
}

namespace {

// Sets `value` at `steps` below `node`, whose key path is `at`. `path` and `loc` are for messages.
void set_steps(cfg::Node& node, std::span<const PathStep> steps, const std::string& at, cfg::Node& value,
               std::string_view path, const cfg::SourceLoc& loc) {
    const PathStep& step = steps.front();
    const bool last = steps.size() == 1;
    if (step.index) {
        if (!node.is_sequence())
            cfg::fail(loc, path,
                      fmt::format("'{}' is {}, not a list, so it cannot be indexed", at, node.kind_name()));
        const std::size_t size = node.items().size();
        if (*step.index >= size)
            cfg::fail(loc, path,
                      size == 0
                          ? fmt::format("'{}' is an empty list", at)
                          : fmt::format("index {} is out of range: '{}' has {} item{} (indices 0 to {})",
                                        *step.index, at, size, size == 1 ? "" : "s", size - 1));
        const std::string item_path = cfg::child_index_path(at, *step.index);
        // Node gives list items read-only: edit a copy of the list and put it back.
        std::vector<cfg::Node> items = node.items();
        if (last) {
            value.set_path(item_path);
            value.set_key_loc(loc);
            items[*step.index] = std::move(value);
        } else {
            set_steps(items[*step.index], steps.subspan(1), item_path, value, path, loc);
        }
        cfg::Node list = cfg::Node::make_sequence(node.loc(), node.path());
        list.set_key_loc(node.key_loc());
        for (cfg::Node& item : items) list.push_back(std::move(item));
        node = std::move(list);
        return;
    }
    if (node.is_null()) {
        cfg::Node map = cfg::Node::make_map(node.loc(), node.path());
        map.set_key_loc(node.key_loc());
        node = std::move(map);
    }
    if (!node.is_map())
        cfg::fail(loc, path,
                  fmt::format("'{}' is {}, so it has no key '{}'", at.empty() ? "the document" : at,
                              node.kind_name(), step.key));
    const std::string child_path = cfg::child_key_path(at, step.key);
    if (last) {
        value.set_path(child_path);
        value.set_key_loc(loc);
        node.set(step.key, std::move(value));
        return;
    }
    if (!node.find(step.key)) {
        cfg::Node map = cfg::Node::make_map(loc, child_path);
        map.set_key_loc(loc);
        node.set(step.key, std::move(map));
    }
    set_steps(*node.find(step.key), steps.subspan(1), child_path, value, path, loc);
}

}  // namespace

void set_at_path(cfg::Node& root, std::string_view path, cfg::Node value, const cfg::SourceLoc& loc) {
    const std::vector<PathStep> steps = parse_key_path(path, loc);
    set_steps(root, steps, root.path(), value, path, loc);
}

namespace {

std::vector<std::string> param_names(const cfg::Schema& schema) {
    std::vector<std::string> names;
    for (const cfg::Param& p : schema.params) names.push_back(p.name);
    return names;
}

const cfg::Param* find_param(const cfg::Schema& schema, std::string_view name) {
    for (const cfg::Param& p : schema.params)
        if (p.name == name) return &p;
    return nullptr;
}

std::string suggestion(std::string_view word, const std::vector<std::string>& candidates) {
    const std::string near = cfg::nearest(word, candidates);
    return near.empty() ? fmt::format("; valid keys: {}", fmt::join(candidates, ", "))
                        : fmt::format("; did you mean '{}'?", near);
}

}  // namespace

std::optional<cfg::Dim> SchemaLeaf::dim() const {
    if (!param) return std::nullopt;
    const cfg::PType type = dict_entry ? param->value_type : param->type;
    if (type == cfg::PType::quantity) return param->dim;
    return std::nullopt;
}

SchemaLeaf schema_leaf(const cfg::Schema& root, const std::vector<PathStep>& steps, std::string_view path,
                       const cfg::SourceLoc& loc) {
    using cfg::PType;
    const cfg::Schema* schema = &root;
    std::string at = steps.front().key;
    auto no_index = [&] {
        cfg::fail(loc, path, fmt::format("'{}' is a map, not a list, so it cannot be indexed", at));
    };
    auto single = [&](std::size_t i) {
        if (i < steps.size())
            cfg::fail(loc, path,
                      fmt::format("'{}' is a single value; it has no key '{}'", at,
                                  steps[i].index ? fmt::format("[{}]", *steps[i].index) : steps[i].key));
    };
    SchemaLeaf leaf;
    std::size_t i = 1;
    while (i < steps.size()) {
        if (steps[i].index) no_index();
        const std::string& key = steps[i].key;
        const cfg::Param* p = find_param(*schema, key);
        if (!p)
            cfg::fail(
                loc, path,
                fmt::format("unknown key '{}' in {}{}", key, at, suggestion(key, param_names(*schema))));
        leaf = SchemaLeaf{p, false};
        at = cfg::child_key_path(at, key);
        ++i;
        if (p->type == PType::map) {
            schema = p->sub;
        } else if (p->type == PType::list) {
            if (i == steps.size()) return leaf;  // the whole list
            if (!steps[i].index)
                cfg::fail(loc, path,
                          fmt::format("'{}' is a list; give an index, e.g. {}[0].{}", at, at, steps[i].key));
            at = cfg::child_index_path(at, *steps[i].index);
            ++i;
            schema = p->sub;
        } else if (p->type == PType::dict) {
            if (i == steps.size()) return leaf;  // the whole map
            if (steps[i].index) no_index();
            const std::string& entry = steps[i].key;
            if (!p->choices.empty() &&
                std::find(p->choices.begin(), p->choices.end(), entry) == p->choices.end())
                cfg::fail(loc, path,
                          fmt::format("unknown key '{}' in {}{}", entry, at, suggestion(entry, p->choices)));
            at = cfg::child_key_path(at, entry);
            ++i;
            leaf.dict_entry = true;
            if (p->value_type == PType::map) {
                schema = p->sub;
            } else {
                single(i);
                return leaf;
            }
        } else {
            single(i);
            return leaf;
        }
    }
    return leaf;  // a whole section
}

}  // namespace mlsim::exp
