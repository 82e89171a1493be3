#pragma once
// A YAML document as a tree that remembers, for every node, the file, line and column it came from
// and its key path ("device.memory[1].bandwidth"). Built by load_file/parse_string (loader.h);
// merged across `extends:` so each node still points at the file that set it.
// Map keys keep their order of appearance; duplicate keys are a user error at load time.
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <utility>
#include <vector>

#include "sim/config/error.h"

namespace mlsim::cfg {

class Node {
  public:
    enum class Kind { null, scalar, sequence, map };

    Node() = default;
    static Node make_scalar(std::string value, SourceLoc loc, std::string path);
    static Node make_map(SourceLoc loc, std::string path);
    static Node make_sequence(SourceLoc loc, std::string path);
    // An explicit YAML null ("key:" or "key: ~"), kept with its location so errors can point at it.
    static Node make_null(SourceLoc loc, std::string path);

    Kind kind() const { return m_kind; }
    bool is_null() const { return m_kind == Kind::null; }
    bool is_scalar() const { return m_kind == Kind::scalar; }
    bool is_map() const { return m_kind == Kind::map; }
    bool is_sequence() const { return m_kind == Kind::sequence; }
    std::string_view kind_name() const;  // "nothing", "a scalar", "a list", "a map"

    const SourceLoc& loc() const { return m_loc; }
    const std::string& path() const { return m_path; }  // key path from the document root
    // Where the key of this node was written, for a value inside a map (loc() otherwise), so that an
    // unknown or duplicate key can point at the key rather than at its value.
    const SourceLoc& key_loc() const { return m_key_loc.line > 0 ? m_key_loc : m_loc; }
    void set_key_loc(SourceLoc loc) { m_key_loc = std::move(loc); }

    // Scalars.
    const std::string& scalar() const;  // precondition: is_scalar()

    // Maps (in order of appearance). find() returns nullptr when the key is absent. Lookups take
    // constant time however many keys a map has (a large map keeps a hash index), so building or
    // validating a map of n keys is linear in n.
    const std::vector<std::pair<std::string, Node>>& entries() const { return m_map; }
    const Node* find(std::string_view key) const;
    Node* find(std::string_view key);
    void set(std::string key, Node value);  // replaces an existing key in place, else appends
    bool erase(std::string_view key);

    // Sequences.
    const std::vector<Node>& items() const { return m_seq; }
    void push_back(Node value);

    // Typed scalar views that throw UserError (located at this node) when the text does not parse.
    std::string as_string() const;
    int64_t as_int() const;
    double as_double() const;
    // as_double() without the error: nullopt for a non-scalar or a text that is not a number. For callers
    // that only ask (a sweep's factor values), where throwing and catching costs ~100,000 instructions.
    std::optional<double> try_double() const;
    bool as_bool() const;

    // Re-root paths (used when a subtree is moved under another key): this node gets `path` and every
    // descendant the path below it.
    void set_path(std::string path);

    // Same kinds, scalar texts, keys (in order) and items, ignoring locations and paths.
    bool same_content(const Node& other) const;

  private:
    Kind m_kind = Kind::null;
    SourceLoc m_loc;
    std::string m_path;
    SourceLoc m_key_loc;
    std::string m_scalar;
    std::vector<std::pair<std::string, Node>> m_map;
    std::vector<Node> m_seq;
    // Position of each key in m_map, kept once a map has more than k_index_from keys (empty before).
    std::unordered_map<std::string, std::size_t> m_index;
    std::optional<std::size_t> position(std::string_view key) const;
};

// Key paths: child_key_path("device", "memory") == "device.memory", child_key_path("", "device") ==
// "device", child_index_path("device.memory", 1) == "device.memory[1]".
std::string child_key_path(std::string_view parent, std::string_view key);
std::string child_index_path(std::string_view parent, std::size_t index);

}  // namespace mlsim::cfg
