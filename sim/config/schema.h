#pragma once
// Parameter declarations: each component declares its parameters once (type, unit, default or required,
// one-line doc). The same declarations drive validation (unknown keys with a nearest-key suggestion,
// missing required keys, wrong types and units, out-of-range values) and the --help text.
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "sim/config/node.h"
#include "sim/config/units.h"

namespace mlsim::cfg {

struct Schema;

enum class PType {
    boolean,
    integer,
    real,
    string,
    choice,    // one of Param::choices
    quantity,  // a physical quantity of Param::dim
    map,       // a nested map validated against Param::sub
    list,      // a list of maps, each validated against Param::sub
    dict,      // a map with free keys whose values are validated as Param::value_type
               // (quantity of Param::dim, or map of Param::sub), e.g. peak throughput per data type
};

struct Param {
    std::string name;
    PType type = PType::string;
    std::string doc;
    bool required = false;
    std::optional<std::string> default_value;  // scalar text, parsed like user input
    Dim dim = Dim::size;                       // for quantity / dict of quantities
    const Schema* sub = nullptr;               // for map / list / dict of maps
    PType value_type = PType::quantity;        // for dict
    std::vector<std::string> choices;          // for choice (and for dict: allowed keys if non-empty)
    std::optional<double> min;                 // inclusive lower bound (in SI units for quantities)
    std::optional<double> max;                 // inclusive upper bound (integers and reals)
    bool positive = false;                     // value must be > 0
};

struct Schema {
    std::string name;  // e.g. "device", "device.memory"
    std::string doc;
    std::vector<Param> params;
};

// Helpers to declare parameters readably.
Param required(std::string name, PType type, std::string doc);
Param optional(std::string name, PType type, std::string default_value, std::string doc);
Param quantity(std::string name, Dim dim, std::optional<std::string> default_value, std::string doc,
               bool positive = true);

// Validate `node` (a map) against `schema`. Throws UserError at the first problem, located at the
// offending node. Returns the resolved tree: a copy of `node` with defaults filled in for absent
// optional parameters (so to_yaml of it is the fully resolved config).
// Details: keys of the resolved map follow the schema's declaration order (dict keys keep the user's
// order); a default is a scalar node located at the parent map; an absent optional map parameter whose
// sub-schema has no required keys is filled with its defaults; an empty value ("memory:") for a map,
// list or dict reads as empty; quantities must be >= 0 (and > 0 when `positive`) and inside the valid
// range of their dimension (limits::quantity_range; 0 stays allowed where the parameter allows it). A default
// that does not validate is an internal error. An error about a scalar points at the scalar; one about a
// whole map or list (wrong kind, missing required key) points at the key that holds it.
Node validate(const Node& node, const Schema& schema);

// Text for --help: one line per parameter with type/unit, default or "required", and its doc;
// nested schemas indented.
std::string describe(const Schema& schema);

// One line per physical dimension with its valid range (sim/config/limits.h), for --help.
std::string describe_quantity_ranges();

// Nearest candidate by edit distance, or empty when nothing is close (distance > max(2, len/3)).
// Case is ignored, an adjacent swap counts as one edit, ties go to the earlier candidate, and a
// candidate that shares nothing with the word (distance >= the longer length) is never near.
std::string nearest(std::string_view word, const std::vector<std::string>& candidates);

// Typed access to a validated node. Accessors look up declared keys; asking for a key that the schema
// does not declare, or that is absent with no default, is an internal error (MLSIM_CHECK), because
// validate() has already run. list(), quantity_dict() and map_dict() of an absent optional key are
// empty. A Reader points into the node it was given: keep that node alive while using it.
class Reader {
  public:
    Reader(const Node& node, const Schema& schema);
    bool has(std::string_view key) const;
    const Node& node() const { return *m_node; }
    const Node& at(std::string_view key) const;
    std::string str(std::string_view key) const;
    int64_t integer(std::string_view key) const;
    double real(std::string_view key) const;
    bool boolean(std::string_view key) const;
    double quantity(std::string_view key) const;  // SI value
    Reader sub(std::string_view key) const;       // for map params
    std::vector<Reader> list(std::string_view key) const;
    // dict params: (key, SI value) pairs for dict-of-quantity; (key, Reader) for dict-of-map.
    std::vector<std::pair<std::string, double>> quantity_dict(std::string_view key) const;
    std::vector<std::pair<std::string, Reader>> map_dict(std::string_view key) const;

  private:
    const Param& param(std::string_view key) const;
    const Node* m_node;
    const Schema* m_schema;
};

}  // namespace mlsim::cfg
