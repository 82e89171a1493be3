#include "sim/config/node.h"

#include <fmt/format.h>

#include <atomic>
#include <charconv>

#include "sim/config/number.h"
#include "sim/core/check.h"

namespace mlsim::cfg {

namespace {

// Values as YAML plain scalars write them; anything else is not a boolean.
std::optional<bool> bool_value(std::string_view s) {
    if (s == "true" || s == "True" || s == "TRUE") return true;
    if (s == "false" || s == "False" || s == "FALSE") return false;
    return std::nullopt;
}

}  // namespace

std::string child_key_path(std::string_view parent, std::string_view key) {
    if (parent.empty()) return std::string(key);
    return fmt::format("{}.{}", parent, key);
}

std::string child_index_path(std::string_view parent, std::size_t index) {
    return fmt::format("{}[{}]", parent, index);
}

Node::Data& Node::w() {
    if (!m_data) {
        m_data = std::make_shared<Data>();
    } else if (m_data.use_count() != 1) {
        m_data = std::make_shared<Data>(*m_data);
    } else {
        // The last other owner let go (possibly in another thread): its reads happen before these writes.
        std::atomic_thread_fence(std::memory_order_acquire);
    }
    return *m_data;
}

Node Node::make_scalar(std::string value, SourceLoc loc, std::string path) {
    Node n = make_null(std::move(loc), std::move(path));
    n.m_data->kind = Kind::scalar;
    n.m_data->scalar = std::move(value);
    return n;
}

Node Node::make_map(SourceLoc loc, std::string path) {
    Node n = make_null(std::move(loc), std::move(path));
    n.m_data->kind = Kind::map;
    return n;
}

Node Node::make_sequence(SourceLoc loc, std::string path) {
    Node n = make_null(std::move(loc), std::move(path));
    n.m_data->kind = Kind::sequence;
    return n;
}

Node Node::make_null(SourceLoc loc, std::string path) {
    Node n;
    Data& d = n.w();
    d.loc = std::move(loc);
    d.path = std::move(path);
    return n;
}

void Node::set_key_loc(SourceLoc loc) { w().key_loc = std::move(loc); }

std::string_view Node::kind_name() const {
    switch (kind()) {
        case Kind::null:
            return "nothing";
        case Kind::scalar:
            return "a scalar";
        case Kind::sequence:
            return "a list";
        case Kind::map:
            return "a map";
    }
    MLSIM_CHECK(false, "unknown node kind");
    return {};
}

const std::string& Node::scalar() const {
    MLSIM_CHECK(is_scalar(), fmt::format("Node::scalar() on {} at {}", kind_name(), path()));
    return d().scalar;
}

namespace {

// Small maps (nearly all of them) are searched in place; an index pays off only for large ones.
constexpr std::size_t k_index_from = 16;

}  // namespace

std::optional<std::size_t> Node::position(std::string_view key) const {
    const Data& data = d();
    if (!data.index.empty()) {
        auto it = data.index.find(std::string(key));
        if (it == data.index.end()) return std::nullopt;
        return it->second;
    }
    for (std::size_t i = 0; i < data.map.size(); ++i)
        if (data.map[i].first == key) return i;
    return std::nullopt;
}

const Node* Node::find(std::string_view key) const {
    const std::optional<std::size_t> i = position(key);
    return i ? &d().map[*i].second : nullptr;
}

// Mutable: the caller may change the child, so this node's contents become its own first.
Node* Node::find(std::string_view key) {
    const std::optional<std::size_t> i = position(key);
    return i ? &w().map[*i].second : nullptr;
}

void Node::set(std::string key, Node value) {
    MLSIM_CHECK(is_map(), fmt::format("Node::set('{}') on {} at {}", key, kind_name(), path()));
    const std::optional<std::size_t> i = position(key);
    Data& data = w();
    if (i) {
        data.map[*i].second = std::move(value);
        return;
    }
    data.map.emplace_back(std::move(key), std::move(value));
    if (!data.index.empty()) {
        data.index.emplace(data.map.back().first, data.map.size() - 1);
    } else if (data.map.size() > k_index_from) {
        for (std::size_t j = 0; j < data.map.size(); ++j) data.index.emplace(data.map[j].first, j);
    }
}

bool Node::erase(std::string_view key) {
    const std::optional<std::size_t> i = position(key);
    if (!i) return false;
    Data& data = w();
    data.map.erase(data.map.begin() + static_cast<std::ptrdiff_t>(*i));
    if (!data.index.empty()) {
        data.index.clear();
        if (data.map.size() > k_index_from)
            for (std::size_t j = 0; j < data.map.size(); ++j) data.index.emplace(data.map[j].first, j);
    }
    return true;
}

void Node::push_back(Node value) {
    MLSIM_CHECK(is_sequence(), fmt::format("Node::push_back on {} at {}", kind_name(), path()));
    w().seq.push_back(std::move(value));
}

std::string Node::as_string() const {
    if (!is_scalar()) fail(key_loc(), path(), fmt::format("expected a string, found {}", kind_name()));
    return d().scalar;
}

int64_t Node::as_int() const {
    if (!is_scalar()) fail(key_loc(), path(), fmt::format("expected an integer, found {}", kind_name()));
    const std::string& text = d().scalar;
    auto v = detail::parse_integer(text);
    if (!v) {
        if (detail::parse_real(text) && text.find_first_of(".eE") == std::string::npos)
            fail(loc(), path(), fmt::format("integer out of range, found \"{}\"", text));
        fail(loc(), path(), fmt::format("expected an integer, found \"{}\"", text));
    }
    return *v;
}

double Node::as_double() const {
    if (!is_scalar()) fail(key_loc(), path(), fmt::format("expected a number, found {}", kind_name()));
    auto v = detail::parse_real(d().scalar);
    if (!v) fail(loc(), path(), fmt::format("expected a number, found \"{}\"", d().scalar));
    return *v;
}

std::optional<double> Node::try_double() const {
    if (!is_scalar()) return std::nullopt;
    return detail::parse_real(d().scalar);
}

bool Node::as_bool() const {
    if (!is_scalar()) fail(key_loc(), path(), fmt::format("expected true or false, found {}", kind_name()));
    auto v = bool_value(d().scalar);
    if (!v) fail(loc(), path(), fmt::format("expected true or false, found \"{}\"", d().scalar));
    return *v;
}

void Node::set_path(std::string path) {
    // A system's build re-roots its device document under `device` (arch/system/system_spec.cpp), where a
    // sweep point's document, the base system's with one value changed, mostly is already: re-rooting copied
    // every node from the base system's copy, a fifth of applying a point's overrides (bench/README.md,
    // eighteenth round).
    if (rooted_at(path)) return;
    reroot(std::move(path));
}

void Node::reroot(std::string path) {
    Data& data = w();
    data.path = std::move(path);
    for (auto& [k, v] : data.map) v.reroot(child_key_path(data.path, k));
    for (std::size_t i = 0; i < data.seq.size(); ++i) data.seq[i].reroot(child_index_path(data.path, i));
}

bool Node::rooted_at(std::string_view path) const {
    const Data& data = d();
    if (data.path != path) return false;
    // A child's path is child_key_path's or child_index_path's, compared in place.
    for (const auto& [k, v] : data.map) {
        const std::string_view p = v.d().path;
        const bool ok = path.empty() ? p == k
                                     : p.size() == path.size() + 1 + k.size() && p.starts_with(path) &&
                                           p[path.size()] == '.' && p.ends_with(k);
        if (!ok || !v.rooted_at(p)) return false;
    }
    char index[32];
    for (std::size_t i = 0; i < data.seq.size(); ++i) {
        const std::string_view p = data.seq[i].d().path;
        index[0] = '[';
        char* end = std::to_chars(index + 1, index + sizeof index - 1, i).ptr;
        *end++ = ']';
        const std::string_view suffix(index, static_cast<std::size_t>(end - index));
        if (p.size() != path.size() + suffix.size() || !p.starts_with(path) || !p.ends_with(suffix) ||
            !data.seq[i].rooted_at(p))
            return false;
    }
    return true;
}

bool Node::same_content(const Node& other) const {
    if (m_data == other.m_data) return true;  // shared contents (or both null nodes)
    const Data &a = d(), &b = other.d();
    if (a.kind != b.kind) return false;
    switch (a.kind) {
        case Kind::null:
            return true;
        case Kind::scalar:
            return a.scalar == b.scalar;
        case Kind::sequence:
            if (a.seq.size() != b.seq.size()) return false;
            for (std::size_t i = 0; i < a.seq.size(); ++i) {
                if (!a.seq[i].same_content(b.seq[i])) return false;
            }
            return true;
        case Kind::map:
            if (a.map.size() != b.map.size()) return false;
            for (std::size_t i = 0; i < a.map.size(); ++i) {
                if (a.map[i].first != b.map[i].first || !a.map[i].second.same_content(b.map[i].second))
                    return false;
            }
            return true;
    }
    return false;
}

}  // namespace mlsim::cfg
