#include "sim/config/schema.h"

#include <fmt/format.h>

#include <algorithm>
#include <cctype>
#include <cmath>

#include "sim/config/limits.h"
#include "sim/core/check.h"

namespace mlsim::cfg {

namespace {

// Deeper nesting than this can only come from a schema that contains itself.
constexpr int max_depth = 64;

// A complaint about a value points at the value; one about a whole map or list (or a missing value)
// points at its key, since a block map or list starts on the line after it.
const SourceLoc& where(const Node& n) { return n.is_scalar() ? n.loc() : n.key_loc(); }

std::string found_text(const Node& n) {
    if (n.is_scalar()) return fmt::format("\"{}\"", n.scalar());
    return std::string(n.kind_name());
}

const Param* find_param(const Schema& schema, std::string_view name) {
    for (const Param& p : schema.params) {
        if (p.name == name) return &p;
    }
    return nullptr;
}

std::vector<std::string> param_names(const Schema& schema) {
    std::vector<std::string> names;
    for (const Param& p : schema.params) names.push_back(p.name);
    return names;
}

bool has_required(const Schema& schema) {
    return std::any_of(schema.params.begin(), schema.params.end(), [](const Param& p) { return p.required; });
}

[[noreturn]] void unknown_key(const std::string& key, const Node& value, std::string_view where,
                              const std::vector<std::string>& valid) {
    std::string suggestion = nearest(key, valid);
    if (!suggestion.empty())
        fail(value.key_loc(), value.path(),
             fmt::format("unknown key '{}' in {}; did you mean '{}'?", key, where, suggestion));
    fail(value.key_loc(), value.path(),
         fmt::format("unknown key '{}' in {}; valid keys: {}", key, where,
                     valid.empty() ? std::string("(none)") : fmt::format("{}", fmt::join(valid, ", "))));
}

std::string where_text(const Node& map, const Schema& schema) {
    if (!map.path().empty()) return map.path();
    if (!schema.name.empty()) return schema.name;
    return "the top level";
}

// A null value where a map or list is expected ("memory:" with nothing after it) reads as empty.
Node empty_if_null(const Node& n, Node::Kind kind) {
    if (!n.is_null()) return n;
    Node empty =
        kind == Node::Kind::map ? Node::make_map(n.loc(), n.path()) : Node::make_sequence(n.loc(), n.path());
    empty.set_key_loc(n.key_loc());
    return empty;
}

void check_number_range(const Node& n, double value, const Param& p, std::string_view min_text) {
    if (p.positive && !(value > 0))
        fail(n.loc(), n.path(), fmt::format("must be greater than 0, found {}", found_text(n)));
    if (p.min && value < *p.min)
        fail(n.loc(), n.path(), fmt::format("must be at least {}, found {}", min_text, found_text(n)));
    if (p.max && value > *p.max)
        fail(n.loc(), n.path(), fmt::format("must be at most {}, found {}", *p.max, found_text(n)));
}

Node validate_map(const Node& node, const Schema& schema, int depth);

Node validate_value(const Node& v, const Param& p, int depth) {
    switch (p.type) {
        case PType::boolean:
            v.as_bool();
            return v;
        case PType::integer: {
            int64_t x = v.as_int();
            check_number_range(v, static_cast<double>(x), p, p.min ? fmt::format("{}", *p.min) : "");
            return v;
        }
        case PType::real: {
            double x = v.as_double();
            check_number_range(v, x, p, p.min ? fmt::format("{}", *p.min) : "");
            return v;
        }
        case PType::string:
            v.as_string();
            return v;
        case PType::choice: {
            auto expected = fmt::format("expected one of: {}", fmt::join(p.choices, ", "));
            if (!v.is_scalar())
                fail(where(v), v.path(), fmt::format("{}; found {}", expected, found_text(v)));
            if (std::find(p.choices.begin(), p.choices.end(), v.scalar()) == p.choices.end()) {
                // Very short choices ("os", "ws") are all one edit apart; a guess there is noise.
                std::string guess = v.scalar().size() >= 4 ? nearest(v.scalar(), p.choices) : "";
                fail(v.loc(), v.path(),
                     fmt::format("{}; found {}{}", expected, found_text(v),
                                 guess.empty() ? "" : fmt::format("; did you mean '{}'?", guess)));
            }
            return v;
        }
        case PType::quantity: {
            if (!v.is_scalar())
                fail(where(v), v.path(),
                     fmt::format("expected {} (e.g. \"{}\"), found {}", dim_name(p.dim), dim_example(p.dim),
                                 v.kind_name()));
            Quantity q = parse_quantity(v.scalar(), p.dim, v.loc(), v.path());
            if (q.value < 0)
                fail(v.loc(), v.path(), fmt::format("must not be negative, found {}", found_text(v)));
            check_number_range(v, q.value, p, p.min ? format_quantity(*p.min, p.dim) : "");
            // Every dimension has a valid range (limits.h); 0 stays allowed where the parameter allows it. A
            // parameter's own `max` replaces the range's (an MCU's duty period may be longer than any
            // latency).
            limits::Range range = limits::quantity_range(p.dim);
            if (p.max) range.max = *p.max;
            if (!(q.value == 0 && !p.positive) && (q.value < range.min || q.value > range.max))
                fail(v.loc(), v.path(),
                     fmt::format("must be {} {} (the valid range of {} is {} to {}), found {}",
                                 q.value > range.max ? "at most"
                                 : p.positive        ? "at least"
                                                     : "0 or at least",
                                 format_quantity(q.value > range.max ? range.max : range.min, p.dim),
                                 dim_name(p.dim), format_quantity(range.min, p.dim),
                                 format_quantity(range.max, p.dim), found_text(v)));
            return v;
        }
        case PType::map:
            MLSIM_CHECK(p.sub, fmt::format("map parameter '{}' has no sub-schema", p.name));
            return validate_map(empty_if_null(v, Node::Kind::map), *p.sub, depth + 1);
        case PType::list: {
            MLSIM_CHECK(p.sub, fmt::format("list parameter '{}' has no sub-schema", p.name));
            Node list = empty_if_null(v, Node::Kind::sequence);
            if (!list.is_sequence())
                fail(where(v), v.path(), fmt::format("expected a list, found {}", found_text(v)));
            Node out = Node::make_sequence(list.loc(), list.path());
            out.set_key_loc(list.key_loc());
            for (const Node& item : list.items()) out.push_back(validate_map(item, *p.sub, depth + 1));
            return out;
        }
        case PType::dict: {
            MLSIM_CHECK(
                p.value_type != PType::dict && p.value_type != PType::list && p.value_type != PType::choice,
                fmt::format("dict parameter '{}' has an unsupported value type", p.name));
            Node dict = empty_if_null(v, Node::Kind::map);
            if (!dict.is_map())
                fail(where(v), v.path(), fmt::format("expected a map, found {}", found_text(v)));
            Param value_param = p;
            value_param.type = p.value_type;
            value_param.choices.clear();
            Node out = Node::make_map(dict.loc(), dict.path());
            out.set_key_loc(dict.key_loc());
            for (const auto& [key, value] : dict.entries()) {
                if (!p.choices.empty() &&
                    std::find(p.choices.begin(), p.choices.end(), key) == p.choices.end())
                    unknown_key(key, value, dict.path().empty() ? p.name : dict.path(), p.choices);
                out.set(key, validate_value(value, value_param, depth + 1));
            }
            return out;
        }
    }
    MLSIM_CHECK(false, "unknown parameter type");
    return v;
}

Node validate_map(const Node& node, const Schema& schema, int depth) {
    MLSIM_CHECK(depth < max_depth,
                fmt::format("schema '{}' nests deeper than {} levels", schema.name, max_depth));
    if (!node.is_map())
        fail(where(node), node.path(), fmt::format("expected a map, found {}", found_text(node)));
    for (const auto& [key, value] : node.entries()) {
        if (!find_param(schema, key)) unknown_key(key, value, where_text(node, schema), param_names(schema));
    }
    // The resolved map lists parameters in declaration order, so equal configs print equally.
    Node out = Node::make_map(node.loc(), node.path());
    out.set_key_loc(node.key_loc());
    for (const Param& p : schema.params) {
        MLSIM_CHECK(find_param(schema, p.name) == &p,
                    fmt::format("schema '{}' declares '{}' twice", schema.name, p.name));
        std::string path = child_key_path(node.path(), p.name);
        if (const Node* value = node.find(p.name)) {
            out.set(p.name, validate_value(*value, p, depth));
        } else if (p.required) {
            fail(node.key_loc(), node.path(),
                 p.doc.empty() ? fmt::format("missing required key '{}'", p.name)
                               : fmt::format("missing required key '{}' ({})", p.name, p.doc));
        } else if (p.default_value) {
            MLSIM_CHECK(
                p.type != PType::map && p.type != PType::list && p.type != PType::dict,
                fmt::format("parameter '{}' of schema '{}': defaults are scalar text", p.name, schema.name));
            Node d = Node::make_scalar(*p.default_value, node.loc(), path);
            try {
                out.set(p.name, validate_value(d, p, depth));
            } catch (const UserError& e) {
                MLSIM_CHECK(false, fmt::format("default of '{}' in schema '{}' is invalid: {}", p.name,
                                               schema.name, e.what()));
            }
        } else if (p.type == PType::map && p.sub && !has_required(*p.sub)) {
            // An optional section left out entirely still resolves to its defaults.
            out.set(p.name, validate_map(Node::make_map(node.loc(), path), *p.sub, depth + 1));
        }
    }
    return out;
}

std::string type_text(const Param& p) {
    std::string constraint;
    if (p.positive)
        constraint = " > 0";
    else if (p.min && !(p.type == PType::quantity && *p.min <= 0))  // quantities are never negative anyway
        constraint = fmt::format(
            " >= {}", p.type == PType::quantity ? format_quantity(*p.min, p.dim) : fmt::format("{}", *p.min));
    auto dim_word = [](Dim d) {
        std::string_view n = dim_name(d);
        return std::string(n.substr(n.find(' ') + 1));
    };
    switch (p.type) {
        case PType::boolean:
            return "true|false";
        case PType::integer:
            return "integer" + constraint;
        case PType::real:
            return "number" + constraint;
        case PType::string:
            return "string";
        case PType::choice:
            return fmt::format("{}", fmt::join(p.choices, "|"));
        case PType::quantity:
            return dim_word(p.dim) + constraint;
        case PType::map:
            return "map";
        case PType::list:
            return "list of maps";
        case PType::dict: {
            std::string keys = p.choices.empty() ? "name" : fmt::format("{}", fmt::join(p.choices, "|"));
            Param value_param = p;
            value_param.type = p.value_type;
            value_param.choices.clear();
            std::string value = p.value_type == PType::dict ? std::string("?") : type_text(value_param);
            return fmt::format("map of {} -> {}", keys, value);
        }
    }
    return "";
}

struct Row {
    int indent;
    std::string name;
    std::string type;
    std::string status;
    std::string doc;
};

void collect_rows(const Schema& schema, int indent, std::vector<const Schema*>& open,
                  std::vector<Row>& rows) {
    open.push_back(&schema);
    for (const Param& p : schema.params) {
        std::string status =
            p.required ? "required"
            : p.default_value
                ? fmt::format("default {}", p.default_value->empty() ? std::string("\"\"") : *p.default_value)
                : "optional";
        rows.push_back(Row{indent, p.name, type_text(p), status, p.doc});
        bool has_sub = p.sub && (p.type == PType::map || p.type == PType::list ||
                                 (p.type == PType::dict && p.value_type == PType::map));
        if (has_sub) {
            if (std::find(open.begin(), open.end(), p.sub) != open.end())
                rows.push_back(Row{indent + 2, "...", fmt::format("(as {})", p.sub->name), "", ""});
            else
                collect_rows(*p.sub, indent + 2, open, rows);
        }
    }
    open.pop_back();
}

// Edit distance counting an adjacent swap as one edit ("memroy" is one edit from "memory").
// Optimal string alignment distance (insertions, deletions, substitutions, adjacent transpositions), in three
// rows of b's length: a hostile megabyte key once built a matrix of a million rows for each candidate.
std::size_t edit_distance(std::string_view a, std::string_view b) {
    std::vector<std::size_t> before(b.size() + 1), prev(b.size() + 1), cur(b.size() + 1);  // rows i-2, i-1, i
    for (std::size_t j = 0; j <= b.size(); ++j) prev[j] = j;
    for (std::size_t i = 1; i <= a.size(); ++i) {
        cur[0] = i;
        for (std::size_t j = 1; j <= b.size(); ++j) {
            const std::size_t cost = a[i - 1] == b[j - 1] ? 0 : 1;
            cur[j] = std::min({prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + cost});
            if (i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1])
                cur[j] = std::min(cur[j], before[j - 2] + 1);
        }
        std::swap(before, prev);
        std::swap(prev, cur);
    }
    return prev[b.size()];
}

std::string lower(std::string_view s) {
    std::string out(s);
    for (char& c : out) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
    return out;
}

}  // namespace

Param required(std::string name, PType type, std::string doc) {
    Param p;
    p.name = std::move(name);
    p.type = type;
    p.doc = std::move(doc);
    p.required = true;
    return p;
}

Param optional(std::string name, PType type, std::string default_value, std::string doc) {
    Param p;
    p.name = std::move(name);
    p.type = type;
    p.doc = std::move(doc);
    p.default_value = std::move(default_value);
    return p;
}

Param quantity(std::string name, Dim dim, std::optional<std::string> default_value, std::string doc,
               bool positive) {
    Param p;
    p.name = std::move(name);
    p.type = PType::quantity;
    p.dim = dim;
    p.doc = std::move(doc);
    p.required = !default_value.has_value();
    p.default_value = std::move(default_value);
    p.positive = positive;
    return p;
}

Node validate(const Node& node, const Schema& schema) { return validate_map(node, schema, 0); }

std::string describe(const Schema& schema) {
    std::vector<Row> rows;
    std::vector<const Schema*> open;
    collect_rows(schema, 2, open, rows);
    std::size_t name_width = 0;
    std::size_t type_width = 0;
    std::size_t status_width = 0;
    // A long list of choices would push every doc far right; such a row overflows its column instead.
    constexpr std::size_t max_type_width = 32;
    for (const Row& r : rows) {
        name_width = std::max(name_width, static_cast<std::size_t>(r.indent) + r.name.size());
        if (r.type.size() <= max_type_width) type_width = std::max(type_width, r.type.size());
        status_width = std::max(status_width, r.status.size());
    }
    std::string out;
    if (!schema.name.empty() || !schema.doc.empty()) {
        if (schema.name.empty())
            out += schema.doc + "\n";
        else if (schema.doc.empty())
            out += schema.name + ":\n";
        else
            out += fmt::format("{}: {}\n", schema.name, schema.doc);
    }
    for (const Row& r : rows) {
        std::string line = fmt::format("{:{}}{:<{}}  {:<{}}  {:<{}}  {}", "", r.indent, r.name,
                                       name_width - static_cast<std::size_t>(r.indent), r.type, type_width,
                                       r.status, status_width, r.doc);
        while (!line.empty() && line.back() == ' ') line.pop_back();
        out += line + "\n";
    }
    return out;
}

std::string describe_quantity_ranges() {
    std::string out;
    for (Dim d : {Dim::time, Dim::frequency, Dim::size, Dim::bandwidth, Dim::energy, Dim::energy_per_byte,
                  Dim::power, Dim::throughput}) {
        const limits::Range r = limits::quantity_range(d);
        std::string_view name = dim_name(d);
        name.remove_prefix(name.find(' ') + 1);
        out += fmt::format("  {:<16} {} to {}\n", name, format_quantity(r.min, d), format_quantity(r.max, d));
    }
    return out;
}

std::string nearest(std::string_view word, const std::vector<std::string>& candidates) {
    std::string w = lower(word);
    std::size_t limit = std::max<std::size_t>(2, word.size() / 3);
    std::string best;
    std::size_t best_distance = limit + 1;
    for (const std::string& c : candidates) {
        // The distance is at least the difference of the lengths: a candidate that cannot beat the best so
        // far is not compared (a megabyte-long key is compared with none).
        if ((word.size() > c.size() ? word.size() - c.size() : c.size() - word.size()) >= best_distance)
            continue;
        std::size_t d = edit_distance(w, lower(c));
        // Replacing every character is not "near", however short the words are.
        if (d >= std::max(word.size(), c.size())) continue;
        if (d < best_distance) {
            best_distance = d;
            best = c;
        }
    }
    return best;
}

Reader::Reader(const Node& node, const Schema& schema) : m_node(&node), m_schema(&schema) {
    MLSIM_CHECK(node.is_map(),
                fmt::format("Reader over {} at '{}' (validate() first)", node.kind_name(), node.path()));
}

const Param& Reader::param(std::string_view key) const {
    const Param* p = find_param(*m_schema, key);
    MLSIM_CHECK(p, fmt::format("key '{}' is not declared in schema '{}'", key, m_schema->name));
    return *p;
}

bool Reader::has(std::string_view key) const {
    param(key);
    const Node* n = m_node->find(key);
    return n && !n->is_null();
}

const Node& Reader::at(std::string_view key) const {
    param(key);
    const Node* n = m_node->find(key);
    MLSIM_CHECK(n, fmt::format("key '{}' is absent from '{}' and has no default (validate() first)", key,
                               m_node->path()));
    return *n;
}

std::string Reader::str(std::string_view key) const {
    const Param& p = param(key);
    MLSIM_CHECK(p.type == PType::string || p.type == PType::choice,
                fmt::format("'{}' is not a string or choice parameter", key));
    return at(key).as_string();
}

int64_t Reader::integer(std::string_view key) const {
    MLSIM_CHECK(param(key).type == PType::integer, fmt::format("'{}' is not an integer parameter", key));
    return at(key).as_int();
}

double Reader::real(std::string_view key) const {
    PType t = param(key).type;
    MLSIM_CHECK(t == PType::real || t == PType::integer, fmt::format("'{}' is not a number parameter", key));
    return at(key).as_double();
}

bool Reader::boolean(std::string_view key) const {
    MLSIM_CHECK(param(key).type == PType::boolean, fmt::format("'{}' is not a boolean parameter", key));
    return at(key).as_bool();
}

double Reader::quantity(std::string_view key) const {
    const Param& p = param(key);
    MLSIM_CHECK(p.type == PType::quantity, fmt::format("'{}' is not a quantity parameter", key));
    const Node& n = at(key);
    return parse_quantity(n.as_string(), p.dim, n.loc(), n.path()).value;
}

Reader Reader::sub(std::string_view key) const {
    const Param& p = param(key);
    MLSIM_CHECK(p.type == PType::map && p.sub, fmt::format("'{}' is not a map parameter", key));
    return Reader(at(key), *p.sub);
}

std::vector<Reader> Reader::list(std::string_view key) const {
    const Param& p = param(key);
    MLSIM_CHECK(p.type == PType::list && p.sub, fmt::format("'{}' is not a list parameter", key));
    std::vector<Reader> out;
    if (!has(key)) return out;
    for (const Node& item : at(key).items()) out.emplace_back(item, *p.sub);
    return out;
}

std::vector<std::pair<std::string, double>> Reader::quantity_dict(std::string_view key) const {
    const Param& p = param(key);
    MLSIM_CHECK(p.type == PType::dict && p.value_type == PType::quantity,
                fmt::format("'{}' is not a dict of quantities", key));
    std::vector<std::pair<std::string, double>> out;
    if (!has(key)) return out;
    for (const auto& [k, v] : at(key).entries())
        out.emplace_back(k, parse_quantity(v.as_string(), p.dim, v.loc(), v.path()).value);
    return out;
}

std::vector<std::pair<std::string, Reader>> Reader::map_dict(std::string_view key) const {
    const Param& p = param(key);
    MLSIM_CHECK(p.type == PType::dict && p.value_type == PType::map && p.sub,
                fmt::format("'{}' is not a dict of maps", key));
    std::vector<std::pair<std::string, Reader>> out;
    if (!has(key)) return out;
    for (const auto& [k, v] : at(key).entries()) out.emplace_back(k, Reader(v, *p.sub));
    return out;
}

}  // namespace mlsim::cfg
