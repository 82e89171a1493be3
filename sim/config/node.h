#pragma once
// A YAML document as a tree that remembers, for every node, the file, line and column it came from
// and its key path ("device.memory[1].bandwidth"). Built by load_file/parse_string (loader.h);
// merged across `extends:` so each node still points at the file that set it.
// Map keys keep their order of appearance; duplicate keys are a user error at load time.
// Copies share their contents until one of them changes (copy on write): a copy costs a reference count,
// however large the tree (a sweep copies each point's system, whose documents have hundreds of nodes).
// As for any value type, one Node must not be changed while another thread reads or copies it; copies of
// it may be, each in its own thread.
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

    Kind kind() const;
    bool is_null() const { return kind() == Kind::null; }
    bool is_scalar() const { return kind() == Kind::scalar; }
    bool is_map() const { return kind() == Kind::map; }
    bool is_sequence() const { return kind() == Kind::sequence; }
    std::string_view kind_name() const;  // "nothing", "a scalar", "a list", "a map"

    const SourceLoc& loc() const;
    const std::string& path() const;  // key path from the document root
    // Where the key of this node was written, for a value inside a map (loc() otherwise), so that an
    // unknown or duplicate key can point at the key rather than at its value.
    const SourceLoc& key_loc() const;
    void set_key_loc(SourceLoc loc);

    // Scalars.
    const std::string& scalar() const;  // precondition: is_scalar()

    // Maps (in order of appearance). find() returns nullptr when the key is absent. Lookups take
    // constant time however many keys a map has (a large map keeps a hash index), so building or
    // validating a map of n keys is linear in n.
    const std::vector<std::pair<std::string, Node>>& entries() const;
    const Node* find(std::string_view key) const;
    Node* find(std::string_view key);
    void set(std::string key, Node value);  // replaces an existing key in place, else appends
    bool erase(std::string_view key);

    // Sequences.
    const std::vector<Node>& items() const;
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
    // A subtree that has those paths already is left as it is (not copied from the copies sharing it).
    void set_path(std::string path);

    // Same kinds, scalar texts, keys (in order) and items, ignoring locations and paths.
    bool same_content(const Node& other) const;

  private:
    struct Data;
    // The contents, shared by copies; null for a default-constructed (null) node.
    std::shared_ptr<Data> m_data;
    const Data& d() const;
    Data& w();  // the contents, this node's alone (copied first when shared)
    std::optional<std::size_t> position(std::string_view key) const;
    // Whether this node has `path` and every descendant the path below it, as set_path would give them.
    bool rooted_at(std::string_view path) const;
    void reroot(std::string path);  // set_path without the look
};

struct Node::Data {
    Kind kind = Kind::null;
    SourceLoc loc;
    std::string path;
    SourceLoc key_loc;
    std::string scalar;
    std::vector<std::pair<std::string, Node>> map;
    std::vector<Node> seq;
    // Position of each key in map, kept once a map has more than k_index_from keys (empty before).
    std::unordered_map<std::string, std::size_t> index;
};

inline const Node::Data& Node::d() const {
    static const Data empty;
    return m_data ? *m_data : empty;
}
inline Node::Kind Node::kind() const { return d().kind; }
inline const SourceLoc& Node::loc() const { return d().loc; }
inline const std::string& Node::path() const { return d().path; }
inline const SourceLoc& Node::key_loc() const { return d().key_loc.line > 0 ? d().key_loc : d().loc; }
inline const std::vector<std::pair<std::string, Node>>& Node::entries() const { return d().map; }
inline const std::vector<Node>& Node::items() const { return d().seq; }

// Key paths: child_key_path("device", "memory") == "device.memory", child_key_path("", "device") ==
// "device", child_index_path("device.memory", 1) == "device.memory[1]".
std::string child_key_path(std::string_view parent, std::string_view key);
std::string child_index_path(std::string_view parent, std::size_t index);

}  // namespace mlsim::cfg
