#include "sim/config/node.h"

#include <fmt/format.h>

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

Node Node::make_scalar(std::string value, SourceLoc loc, std::string path) {
    Node n = make_null(std::move(loc), std::move(path));
    n.m_kind = Kind::scalar;
    n.m_scalar = std::move(value);
    return n;
}

Node Node::make_map(SourceLoc loc, std::string path) {
    Node n = make_null(std::move(loc), std::move(path));
    n.m_kind = Kind::map;
    return n;
}

Node Node::make_sequence(SourceLoc loc, std::string path) {
    Node n = make_null(std::move(loc), std::move(path));
    n.m_kind = Kind::sequence;
    return n;
}

Node Node::make_null(SourceLoc loc, std::string path) {
    Node n;
    n.m_loc = std::move(loc);
    n.m_path = std::move(path);
    return n;
}

std::string_view Node::kind_name() const {
    switch (m_kind) {
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
    MLSIM_CHECK(is_scalar(), fmt::format("Node::scalar() on {} at {}", kind_name(), m_path));
    return m_scalar;
}

namespace {

// Small maps (nearly all of them) are searched in place; an index pays off only for large ones.
constexpr std::size_t k_index_from = 16;

}  // namespace

std::optional<std::size_t> Node::position(std::string_view key) const {
    if (!m_index.empty()) {
        auto it = m_index.find(std::string(key));
        if (it == m_index.end()) return std::nullopt;
        return it->second;
    }
    for (std::size_t i = 0; i < m_map.size(); ++i)
        if (m_map[i].first == key) return i;
    return std::nullopt;
}

const Node* Node::find(std::string_view key) const {
    const std::optional<std::size_t> i = position(key);
    return i ? &m_map[*i].second : nullptr;
}

Node* Node::find(std::string_view key) {
    const std::optional<std::size_t> i = position(key);
    return i ? &m_map[*i].second : nullptr;
}

void Node::set(std::string key, Node value) {
    MLSIM_CHECK(is_map(), fmt::format("Node::set('{}') on {} at {}", key, kind_name(), m_path));
    if (const std::optional<std::size_t> i = position(key)) {
        m_map[*i].second = std::move(value);
        return;
    }
    m_map.emplace_back(std::move(key), std::move(value));
    if (!m_index.empty()) {
        m_index.emplace(m_map.back().first, m_map.size() - 1);
    } else if (m_map.size() > k_index_from) {
        for (std::size_t i = 0; i < m_map.size(); ++i) m_index.emplace(m_map[i].first, i);
    }
}

bool Node::erase(std::string_view key) {
    const std::optional<std::size_t> i = position(key);
    if (!i) return false;
    m_map.erase(m_map.begin() + static_cast<std::ptrdiff_t>(*i));
    if (!m_index.empty()) {
        m_index.clear();
        if (m_map.size() > k_index_from)
            for (std::size_t j = 0; j < m_map.size(); ++j) m_index.emplace(m_map[j].first, j);
    }
    return true;
}

void Node::push_back(Node value) {
    MLSIM_CHECK(is_sequence(), fmt::format("Node::push_back on {} at {}", kind_name(), m_path));
    m_seq.push_back(std::move(value));
}

std::string Node::as_string() const {
    if (!is_scalar()) fail(key_loc(), m_path, fmt::format("expected a string, found {}", kind_name()));
    return m_scalar;
}

int64_t Node::as_int() const {
    if (!is_scalar()) fail(key_loc(), m_path, fmt::format("expected an integer, found {}", kind_name()));
    auto v = detail::parse_integer(m_scalar);
    if (!v) {
        if (detail::parse_real(m_scalar) && m_scalar.find_first_of(".eE") == std::string::npos)
            fail(m_loc, m_path, fmt::format("integer out of range, found \"{}\"", m_scalar));
        fail(m_loc, m_path, fmt::format("expected an integer, found \"{}\"", m_scalar));
    }
    return *v;
}

double Node::as_double() const {
    if (!is_scalar()) fail(key_loc(), m_path, fmt::format("expected a number, found {}", kind_name()));
    auto v = detail::parse_real(m_scalar);
    if (!v) fail(m_loc, m_path, fmt::format("expected a number, found \"{}\"", m_scalar));
    return *v;
}

std::optional<double> Node::try_double() const {
    if (!is_scalar()) return std::nullopt;
    return detail::parse_real(m_scalar);
}

bool Node::as_bool() const {
    if (!is_scalar()) fail(key_loc(), m_path, fmt::format("expected true or false, found {}", kind_name()));
    auto v = bool_value(m_scalar);
    if (!v) fail(m_loc, m_path, fmt::format("expected true or false, found \"{}\"", m_scalar));
    return *v;
}

void Node::set_path(std::string path) {
    m_path = std::move(path);
    for (auto& [k, v] : m_map) v.set_path(child_key_path(m_path, k));
    for (std::size_t i = 0; i < m_seq.size(); ++i) m_seq[i].set_path(child_index_path(m_path, i));
}

bool Node::same_content(const Node& other) const {
    if (m_kind != other.m_kind) return false;
    switch (m_kind) {
        case Kind::null:
            return true;
        case Kind::scalar:
            return m_scalar == other.m_scalar;
        case Kind::sequence:
            if (m_seq.size() != other.m_seq.size()) return false;
            for (std::size_t i = 0; i < m_seq.size(); ++i) {
                if (!m_seq[i].same_content(other.m_seq[i])) return false;
            }
            return true;
        case Kind::map:
            if (m_map.size() != other.m_map.size()) return false;
            for (std::size_t i = 0; i < m_map.size(); ++i) {
                if (m_map[i].first != other.m_map[i].first ||
                    !m_map[i].second.same_content(other.m_map[i].second))
                    return false;
            }
            return true;
    }
    return false;
}

}  // namespace mlsim::cfg
