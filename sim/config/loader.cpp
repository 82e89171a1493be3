#include "sim/config/loader.h"

#include <fmt/format.h>
#include <yaml-cpp/eventhandler.h>
#include <yaml-cpp/exceptions.h>
#include <yaml-cpp/mark.h>
#include <yaml-cpp/parser.h>

#include <filesystem>
#include <fstream>
#include <map>
#include <memory>
#include <sstream>

#include "sim/config/limits.h"
#include "sim/config/simple_yaml.h"
#include "sim/core/check.h"

namespace mlsim::cfg {

namespace fs = std::filesystem;

namespace {

// Builds a Node tree from yaml-cpp's parse events. The event API (rather than YAML::Load) is used
// because it reports every key, so duplicate keys can be caught, and gives a mark for every node.
class TreeBuilder : public YAML::EventHandler {
  public:
    explicit TreeBuilder(std::string file) : m_file(std::move(file)) {}

    Node take_root() { return std::move(m_root); }
    int documents() const { return m_documents; }

    void OnDocumentStart(const YAML::Mark& mark) override {
        ++m_documents;
        if (m_documents > 1) fail(loc(mark), "", "expected a single YAML document, found a second one here");
        m_root = Node::make_null(SourceLoc{m_file, 1, 1}, "");
    }
    void OnDocumentEnd() override {}

    void OnNull(const YAML::Mark& mark, YAML::anchor_t anchor) override {
        if (expecting_key()) fail(loc(mark), top().node.path(), "a map key is empty");
        // For an empty value ("key:" at the end of a line) yaml-cpp marks the next token, which may be
        // lines below; the key is the better place to point at.
        SourceLoc at = loc(mark);
        if (!m_stack.empty() && top().has_key && top().key_loc.line > 0 && at.line > top().key_loc.line)
            at = top().key_loc;
        count(mark, Size{1, 0});
        add(Node::make_null(std::move(at), child_path()), mark, anchor, Size{1, 0});
    }

    void OnAlias(const YAML::Mark& mark, YAML::anchor_t anchor) override {
        auto it = m_anchors.find(anchor);
        if (it == m_anchors.end()) {
            // yaml-cpp knows the anchor but its node is not finished: the alias is inside it.
            fail(loc(mark), child_path(),
                 "this alias refers to a map or list that contains it; a YAML alias cannot be recursive");
        }
        if (expecting_key()) {
            if (!it->second.node.is_scalar())
                fail(loc(mark), top().node.path(), "a map key must be plain text, not a map or list");
            add_key(it->second.node.scalar(), mark);
            return;
        }
        // An alias copies its anchor's whole tree: count every node and byte it copies before copying
        // any, so that aliases of aliases ("billion laughs") stop at the limit instead of filling memory.
        count(mark, it->second.size);
        // The copy keeps the anchored text's locations (that is where the values are written) but
        // takes the key path of the place it is used.
        Node copy = it->second.node;
        copy.set_path(child_path());
        add(std::move(copy), mark, 0, it->second.size);
    }

    void OnScalar(const YAML::Mark& mark, const std::string& /*tag*/, YAML::anchor_t anchor,
                  const std::string& value) override {
        if (expecting_key()) {
            if (anchor != 0)
                m_anchors[anchor] = Anchored{Node::make_scalar(value, loc(mark), ""), Size{1, value.size()}};
            add_key(value, mark);
            return;
        }
        const Size size{1, value.size()};
        count(mark, size);
        add(Node::make_scalar(value, loc(mark), child_path()), mark, anchor, size);
    }

    void OnSequenceStart(const YAML::Mark& mark, const std::string& /*tag*/, YAML::anchor_t anchor,
                         YAML::EmitterStyle::value /*style*/) override {
        open(Node::make_sequence(loc(mark), child_path()), mark, anchor);
    }
    void OnSequenceEnd() override { close(); }

    void OnMapStart(const YAML::Mark& mark, const std::string& /*tag*/, YAML::anchor_t anchor,
                    YAML::EmitterStyle::value /*style*/) override {
        open(Node::make_map(loc(mark), child_path()), mark, anchor);
    }
    void OnMapEnd() override { close(); }

  private:
    // What a tree holds: nodes, and bytes of text in its keys and values.
    struct Size {
        std::size_t nodes = 0;
        std::size_t bytes = 0;
    };
    struct Frame {
        Node node;
        YAML::Mark mark;
        YAML::anchor_t anchor = 0;
        Size before;           // m_size when it opened: its subtree is what was counted since
        bool has_key = false;  // maps: a key has been read and waits for its value
        std::string key;
        SourceLoc key_loc;
    };

    SourceLoc loc(const YAML::Mark& mark) const {
        if (mark.is_null()) return SourceLoc{m_file, 0, 0};
        return SourceLoc{m_file, mark.line + 1, mark.column + 1};
    }

    Frame& top() { return m_stack.back(); }
    bool expecting_key() const {
        return !m_stack.empty() && m_stack.back().node.is_map() && !m_stack.back().has_key;
    }

    // The key path a node created now will have.
    std::string child_path() const {
        if (m_stack.empty()) return "";
        const Frame& f = m_stack.back();
        if (f.node.is_sequence()) return child_index_path(f.node.path(), f.node.items().size());
        return child_key_path(f.node.path(), f.key);
    }

    void add_key(const std::string& key, const YAML::Mark& mark) {
        count(mark, Size{0, key.size()});
        Frame& f = top();
        if (const Node* first = f.node.find(key)) {
            const SourceLoc& at = first->key_loc();
            fail(loc(mark), child_key_path(f.node.path(), key),
                 fmt::format("duplicate key '{}' (first set at line {}, column {})", key, at.line, at.col));
        }
        f.has_key = true;
        f.key = key;
        f.key_loc = loc(mark);
    }

    void open(Node node, const YAML::Mark& mark, YAML::anchor_t anchor) {
        if (expecting_key())
            fail(loc(mark), top().node.path(), "a map key must be plain text, not a map or list");
        if (m_stack.size() >= limits::max_yaml_depth)
            fail(loc(mark), node.path(),
                 fmt::format("maps and lists nest more than {} levels deep here (the limit)",
                             limits::max_yaml_depth));
        const Size before = m_size;
        count(mark, Size{1, 0});
        m_stack.push_back(Frame{std::move(node), mark, anchor, before, false, {}, {}});
    }

    void close() {
        MLSIM_CHECK(!m_stack.empty(), "yaml-cpp closed a collection that was not open");
        Frame f = std::move(m_stack.back());
        m_stack.pop_back();
        add(std::move(f.node), f.mark, f.anchor,
            Size{m_size.nodes - f.before.nodes, m_size.bytes - f.before.bytes});
    }

    // Counts more of the document (aliases count what they copy) against the limits.
    void count(const YAML::Mark& mark, Size more) {
        if (more.nodes > limits::max_yaml_nodes - m_size.nodes)
            fail(loc(mark), child_path(),
                 fmt::format("the document has more than {} nodes (maps, lists and values, aliases "
                             "counted as what they copy), the limit",
                             limits::max_yaml_nodes));
        if (more.bytes > limits::max_yaml_bytes - m_size.bytes)
            fail(loc(mark), child_path(),
                 fmt::format("the document's keys and values hold more than {} MiB of text (aliases counted "
                             "as what they copy), the limit",
                             limits::max_yaml_bytes >> 20));
        m_size.nodes += more.nodes;
        m_size.bytes += more.bytes;
    }

    // `size`: the size of node's tree, remembered with its anchor for aliases to count.
    void add(Node node, const YAML::Mark& /*mark*/, YAML::anchor_t anchor, Size size) {
        if (anchor != 0) m_anchors[anchor] = Anchored{node, size};
        if (m_stack.empty()) {
            m_root = std::move(node);
            return;
        }
        Frame& f = top();
        if (f.node.is_sequence()) {
            f.node.push_back(std::move(node));
            return;
        }
        MLSIM_CHECK(f.has_key, "a map value arrived without its key");
        node.set_key_loc(f.key_loc);
        f.node.set(std::move(f.key), std::move(node));
        f.has_key = false;
        f.key.clear();
    }

    std::string m_file;
    Node m_root;
    int m_documents = 0;
    std::vector<Frame> m_stack;
    struct Anchored {
        Node node;
        Size size;  // of its tree
    };
    std::map<YAML::anchor_t, Anchored> m_anchors;
    Size m_size;  // of the document so far
};

struct Chain {
    std::vector<std::string> shown;   // paths as resolved, for messages
    std::vector<fs::path> canonical;  // for cycle detection
};

std::string read_file(const std::string& path, const Node* from) {
    if (from) return read_text_file(path, from->loc(), from->path());
    return read_text_file(path, SourceLoc{path, 0, 0}, "");
}

std::string resolve_relative(const std::string& from_file, const std::string& name) {
    fs::path p(name);
    if (p.is_absolute()) return p.lexically_normal().generic_string();
    return (fs::path(from_file).parent_path() / p).lexically_normal().generic_string();
}

Node load_chain(const std::string& path, const Node* from, Chain& chain);

// Loads the file named by one `extends` entry and reports problems at that entry.
Node load_extended(const std::string& from_file, const Node& entry, Chain& chain) {
    if (!entry.is_scalar() || entry.scalar().empty())
        fail(entry.loc(), entry.path(),
             fmt::format("expected a file name (or a list of file names), found {}", entry.kind_name()));
    std::string path = resolve_relative(from_file, entry.scalar());
    std::error_code ec;
    fs::path canonical = fs::weakly_canonical(path, ec);
    if (ec) canonical = fs::path(path).lexically_normal();
    for (std::size_t i = 0; i < chain.canonical.size(); ++i) {
        if (chain.canonical[i] == canonical) {
            std::string cycle;
            for (std::size_t j = i; j < chain.shown.size(); ++j) cycle += chain.shown[j] + " -> ";
            cycle += path;
            fail(entry.loc(), entry.path(), fmt::format("extends cycle: {}", cycle));
        }
    }
    return load_chain(path, &entry, chain);
}

Node load_chain(const std::string& path, const Node* from, Chain& chain) {
    if (from && chain.shown.size() >= limits::max_extends_depth)
        fail(from->loc(), from->path(),
             fmt::format("the `extends:` chain is more than {} files long here (the limit), starting at {}",
                         limits::max_extends_depth, chain.shown.front()));
    std::string text = read_file(path, from);
    std::error_code ec;
    fs::path canonical = fs::weakly_canonical(path, ec);
    if (ec) canonical = fs::path(path).lexically_normal();
    chain.shown.push_back(path);
    chain.canonical.push_back(canonical);

    Node doc = parse_string(text, path);
    const Node* extends = doc.is_map() ? doc.find("extends") : nullptr;
    if (extends) {
        Node base;
        bool have_base = false;
        auto merge_in = [&](Node next) {
            base = have_base ? merge(base, next) : std::move(next);
            have_base = true;
        };
        if (extends->is_sequence()) {
            for (const Node& entry : extends->items()) merge_in(load_extended(path, entry, chain));
        } else {
            merge_in(load_extended(path, *extends, chain));
        }
        doc.erase("extends");
        if (have_base) doc = merge(base, doc);
    }
    chain.shown.pop_back();
    chain.canonical.pop_back();
    return doc;
}

// YAML plain scalars are safe when they cannot be read as anything but the same text: no indicator
// at the start, no ": " or " #", not a null word. Everything else is written double-quoted.
bool plain_ok(const std::string& s) {
    if (s.empty() || s == "~" || s == "null" || s == "Null" || s == "NULL") return false;
    if (s.front() == ' ' || s.back() == ' ' || s.front() == '%' || s.starts_with("---") ||
        s.starts_with("..."))
        return false;
    auto safe = [](char c) {
        return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_' ||
               c == '.' || c == '/' || c == '+' || c == '-' || c == ' ' || c == '(' || c == ')' || c == '%' ||
               c == '=' || c == '^' || c == '$';
    };
    for (char c : s) {
        if (!safe(c)) return false;
    }
    // A leading '-' followed by a space (or alone) would start a list item.
    if (s.front() == '-' && (s.size() == 1 || s[1] == ' ')) return false;
    return true;
}

std::string quoted(const std::string& s) {
    std::string out = "\"";
    for (unsigned char c : s) {
        switch (c) {
            case '"':
                out += "\\\"";
                break;
            case '\\':
                out += "\\\\";
                break;
            case '\n':
                out += "\\n";
                break;
            case '\t':
                out += "\\t";
                break;
            case '\r':
                out += "\\r";
                break;
            default:
                if (c < 0x20 || c == 0x7f)
                    out += fmt::format("\\x{:02x}", c);
                else
                    out += static_cast<char>(c);
        }
    }
    out += '"';
    return out;
}

std::string scalar_text(const std::string& s) { return plain_ok(s) ? s : quoted(s); }

// Text of a node that fits on the line it starts on, or empty for a non-empty map or list.
std::string inline_text(const Node& n) {
    switch (n.kind()) {
        case Node::Kind::null:
            return "null";
        case Node::Kind::scalar:
            return scalar_text(n.scalar());
        case Node::Kind::map:
            return n.entries().empty() ? "{}" : "";
        case Node::Kind::sequence:
            return n.items().empty() ? "[]" : "";
    }
    return "";
}

void emit_seq(const Node& n, int indent, bool first_inline, std::string& out);

void emit_map(const Node& n, int indent, bool first_inline, std::string& out) {
    bool first = true;
    for (const auto& [key, value] : n.entries()) {
        if (!(first && first_inline)) out.append(static_cast<std::size_t>(indent), ' ');
        first = false;
        out += scalar_text(key);
        out += ':';
        std::string text = inline_text(value);
        if (!text.empty()) {
            out += ' ';
            out += text;
            out += '\n';
        } else if (value.is_map()) {
            out += '\n';
            emit_map(value, indent + 2, false, out);
        } else {
            out += '\n';
            emit_seq(value, indent + 2, false, out);
        }
    }
}

void emit_seq(const Node& n, int indent, bool first_inline, std::string& out) {
    bool first = true;
    for (const Node& item : n.items()) {
        if (!(first && first_inline)) out.append(static_cast<std::size_t>(indent), ' ');
        first = false;
        out += "- ";
        std::string text = inline_text(item);
        if (!text.empty()) {
            out += text;
            out += '\n';
        } else if (item.is_map()) {
            emit_map(item, indent + 2, true, out);
        } else {
            emit_seq(item, indent + 2, true, out);
        }
    }
}

}  // namespace

std::string read_text_file(const std::string& path, const SourceLoc& at, std::string_view key_path) {
    auto fail_open = [&](std::string_view why) {
        fail(at, key_path, fmt::format("cannot open '{}': {}", path, why));
    };
    std::error_code ec;
    const auto status = fs::status(path, ec);
    if (ec || !fs::exists(status)) fail_open("no such file");
    if (fs::is_directory(status)) fail_open("it is a directory");
    // A FIFO, socket or device (/dev/zero, /dev/urandom) could be read forever.
    if (!fs::is_regular_file(status)) fail_open("not a regular file (a FIFO, socket or device)");
    const std::uintmax_t size = fs::file_size(path, ec);
    const auto too_large = [&] {
        fail_open(fmt::format("it is larger than {} MiB, the limit for an input file",
                              limits::max_file_bytes >> 20));
    };
    if (!ec && size > limits::max_file_bytes) too_large();
    std::ifstream in(path, std::ios::binary);
    if (!in) fail_open("cannot read it");
    // In chunks, stopping past the limit: the file may grow while it is read.
    std::string text;
    if (!ec) text.reserve(static_cast<std::size_t>(size));
    // On the heap: 64 KiB of stack would reach pages a short run never touches otherwise (a fault each).
    constexpr std::size_t k_chunk = std::size_t{1} << 16;
    const std::unique_ptr<char[]> chunk(new char[k_chunk]);
    while (in) {
        in.read(chunk.get(), k_chunk);
        text.append(chunk.get(), static_cast<std::size_t>(in.gcount()));
        if (text.size() > limits::max_file_bytes) too_large();
    }
    if (in.bad()) fail_open("read error");
    return text;
}

Node parse_string(std::string_view text, const std::string& filename) {
    // mlsim's own files (the presets above all) take the fast reader; anything outside its subset, and
    // every malformed text, is read by yaml-cpp, which gives the same tree or the located error.
    if (std::optional<Node> simple = detail::parse_simple_yaml(text, filename)) return std::move(*simple);
    return detail::parse_string_yaml_cpp(text, filename);
}

Node detail::parse_string_yaml_cpp(std::string_view text, const std::string& filename) {
    std::istringstream in{std::string(text)};
    TreeBuilder builder(filename);
    try {
        YAML::Parser parser(in);
        while (parser.HandleNextDocument(builder)) {
        }
    } catch (const YAML::Exception& e) {
        SourceLoc at{filename, 0, 0};
        if (!e.mark.is_null()) at = SourceLoc{filename, e.mark.line + 1, e.mark.column + 1};
        fail(at, "", fmt::format("invalid YAML: {}", e.msg));
    }
    Node root = builder.take_root();
    if (builder.documents() == 0) root = Node::make_null(SourceLoc{filename, 0, 0}, "");
    return root;
}

Node load_file(const std::string& path) {
    Chain chain;
    return load_chain(path, nullptr, chain);
}

Node merge(const Node& base, const Node& over) {
    if (!base.is_map() || !over.is_map()) return over;
    Node result = base;
    for (const auto& [key, value] : over.entries()) {
        const Node* old = result.find(key);
        if (old && old->is_map() && value.is_map())
            result.set(key, merge(*old, value));
        else
            result.set(key, value);
    }
    // The merged map belongs to the document that wrote it last.
    Node located = Node::make_map(over.loc(), over.path());
    located.set_key_loc(over.key_loc());
    for (auto& [key, value] : result.entries()) located.set(key, value);
    return located;
}

std::string to_yaml(const Node& node) {
    std::string out;
    std::string text = inline_text(node);
    if (!text.empty()) return text + "\n";
    if (node.is_map())
        emit_map(node, 0, false, out);
    else
        emit_seq(node, 0, false, out);
    return out;
}

}  // namespace mlsim::cfg
