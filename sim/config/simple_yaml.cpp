#include "sim/config/simple_yaml.h"

#include <cstddef>

#include "sim/config/limits.h"

namespace mlsim::cfg::detail {

namespace {

// Thrown wherever the text leaves the subset (or is malformed): yaml-cpp reads it instead.
struct Outside {};

constexpr int k_max_depth = 32;  // well below limits::max_yaml_depth, whose error yaml-cpp reports

bool null_word(std::string_view s) {
    return s.empty() || s == "~" || s == "null" || s == "Null" || s == "NULL";
}

// Characters of a plain key: identifiers, numbers, file-like names. Anything else goes to yaml-cpp.
bool key_char(char c) {
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_' ||
           c == '-' || c == '.' || c == '/' || c == '+';
}

// A plain scalar may not start with an indicator ('-' only when a space follows it).
bool indicator(char c) {
    switch (c) {
        case '?':
        case ':':
        case ',':
        case '[':
        case ']':
        case '{':
        case '}':
        case '#':
        case '&':
        case '*':
        case '!':
        case '|':
        case '>':
        case '\'':
        case '"':
        case '%':
        case '@':
        case '`':
            return true;
        default:
            return false;
    }
}

// Key paths as child_key_path / child_index_path (node.h) write them, without fmt.
std::string key_path(const std::string& parent, std::string_view key) {
    if (parent.empty()) return std::string(key);
    std::string p;
    p.reserve(parent.size() + 1 + key.size());
    p.append(parent).append(1, '.').append(key);
    return p;
}
std::string index_path(const std::string& parent, std::size_t index) {
    std::string p = parent;
    p += '[';
    p += std::to_string(index);
    p += ']';
    return p;
}

class Reader {
  public:
    Reader(std::string_view text, const std::string& file) : m_t(text), m_file(file) {}

    Node document() {
        prescan();
        if (!next_content() || col() != 1) throw Outside{};
        Node root = entry_here() ? block_seq(1, "") : block_map(1, "");
        if (!m_eof) throw Outside{};
        return root;
    }

  private:
    std::string_view m_t;
    const std::string& m_file;
    std::size_t m_pos = 0;
    std::size_t m_line_start = 0;
    int m_line = 1;
    bool m_eof = false;
    int m_depth = 0;
    std::size_t m_nodes = 0;
    std::size_t m_bytes = 0;

    char peek(std::size_t ahead = 0) const { return m_pos + ahead < m_t.size() ? m_t[m_pos + ahead] : '\0'; }
    int col() const { return static_cast<int>(m_pos - m_line_start) + 1; }
    SourceLoc here() const { return SourceLoc{m_file, m_line, col()}; }

    // Printable ASCII and newlines only; no document markers or directives.
    void prescan() const {
        bool line_start = true;
        for (std::size_t i = 0; i < m_t.size(); ++i) {
            const char c = m_t[i];
            if (c == '\n') {
                line_start = true;
                continue;
            }
            if (c < 0x20 || c > 0x7e) throw Outside{};
            if (line_start && (c == '%' || m_t.substr(i, 3) == "---" || m_t.substr(i, 3) == "..."))
                throw Outside{};
            line_start = false;
        }
        if (m_t.size() > limits::max_yaml_bytes) throw Outside{};
    }

    void newline() {
        ++m_pos;
        ++m_line;
        m_line_start = m_pos;
    }
    void skip_spaces() {
        while (peek() == ' ') ++m_pos;
    }
    void skip_comment() {
        while (peek() != '\n' && peek() != '\0') ++m_pos;
    }
    // Moves to the next character that is not a space, a comment or a line break; false at the end.
    bool next_content() {
        for (;;) {
            skip_spaces();
            const char c = peek();
            if (c == '\0') {
                m_eof = true;
                return false;
            }
            if (c == '#') {
                skip_comment();
                continue;
            }
            if (c == '\n') {
                newline();
                continue;
            }
            return true;
        }
    }
    // After a value: nothing but spaces and a comment (after a space) to the end of the line.
    void end_of_line() {
        const std::size_t start = m_pos;
        skip_spaces();
        const char c = peek();
        if (c == '#' && m_pos > start) return;
        if (c != '\n' && c != '\0') throw Outside{};
    }
    bool entry_here() const {
        return peek() == '-' && (peek(1) == ' ' || peek(1) == '\n' || peek(1) == '\0');
    }

    void count(std::size_t nodes, std::size_t bytes) {
        m_nodes += nodes;
        m_bytes += bytes;
        if (m_nodes > limits::max_yaml_nodes || m_bytes > limits::max_yaml_bytes) throw Outside{};
    }
    void enter() {
        if (++m_depth > k_max_depth) throw Outside{};
    }

    // A block key at the cursor: the end of its text and where its ':' is, or npos when the line does not
    // start with one (plain key characters or a quoted text without escapes, then ':' and a space or the
    // end).
    struct KeySpan {
        std::size_t begin = 0, end = 0, colon = std::string_view::npos;
    };
    KeySpan key_span() const {
        KeySpan k;
        std::size_t i = m_pos;
        const char q = peek();
        if (q == '"' || q == '\'') {
            ++i;
            k.begin = i;
            while (i < m_t.size() && m_t[i] != q) {
                if (m_t[i] == '\n' || m_t[i] == '\\') return k;
                ++i;
            }
            if (i >= m_t.size()) return k;
            k.end = i;
            ++i;                                          // the closing quote
            if (i < m_t.size() && m_t[i] == q) return k;  // '' inside single quotes
        } else {
            k.begin = i;
            while (i < m_t.size() && key_char(m_t[i])) ++i;
            k.end = i;
            if (k.end == k.begin || m_t[k.begin] == '-') return k;
            // A null word is no key to yaml-cpp's reader ("a map key is empty"): its error, not a key here.
            if (null_word(m_t.substr(k.begin, k.end - k.begin))) return k;
        }
        if (i >= m_t.size() || m_t[i] != ':') return k;
        if (i + 1 < m_t.size() && m_t[i + 1] != ' ' && m_t[i + 1] != '\n') return k;
        k.colon = i;
        return k;
    }

    // A map's next key, its location, and the position after its colon; a line that is no key, or a key
    // the map has already (a duplicate: yaml-cpp's path reports it), is left to yaml-cpp.
    std::pair<std::string, SourceLoc> map_key(const Node& map) {
        const KeySpan k = key_span();
        if (k.colon == std::string_view::npos) throw Outside{};
        SourceLoc loc = here();
        std::string key(m_t.substr(k.begin, k.end - k.begin));
        count(0, key.size());
        if (map.find(key)) throw Outside{};
        m_pos = k.colon + 1;
        return {std::move(key), std::move(loc)};
    }

    Node block_map(int indent, const std::string& path) {
        enter();
        Node map = Node::make_map(here(), path);
        count(1, 0);
        for (;;) {
            auto [key, key_loc] = map_key(map);
            std::string child = key_path(path, key);
            skip_spaces();
            Node value;
            const char c = peek();
            if (c == '\n' || c == '\0' || c == '#') {
                // The value is a block below, more indented (a null value goes to yaml-cpp).
                if (!next_content() || col() <= indent) throw Outside{};
                const int inner = col();
                value = entry_here() ? block_seq(inner, child) : block_map(inner, child);
            } else {
                value = inline_value(child, indent);
                if (next_content() && col() > indent) throw Outside{};  // a continued scalar
            }
            value.set_key_loc(std::move(key_loc));
            map.set(std::move(key), std::move(value));
            if (m_eof || col() < indent) break;
            if (col() > indent) throw Outside{};
        }
        --m_depth;
        return map;
    }

    Node block_seq(int indent, const std::string& path) {
        enter();
        Node seq = Node::make_sequence(here(), path);
        count(1, 0);
        for (;;) {
            if (peek() != '-' || peek(1) != ' ') throw Outside{};
            m_pos += 2;
            skip_spaces();
            const char c = peek();
            if (c == '\n' || c == '\0' || c == '#' || entry_here()) throw Outside{};
            std::string child = index_path(path, seq.items().size());
            if (key_span().colon != std::string_view::npos) {
                seq.push_back(block_map(col(), child));  // `- key: value` and the keys below it
            } else {
                seq.push_back(inline_value(child, indent));
                if (next_content() && col() > indent) throw Outside{};
            }
            if (m_eof || col() < indent) break;
            if (col() > indent) throw Outside{};
        }
        --m_depth;
        return seq;
    }

    // A value that starts on the current line (a flow collection, a quoted or a plain scalar), with the
    // rest of the line checked; `indent` is the column of the block holding it.
    Node inline_value(const std::string& path, int indent) {
        const char c = peek();
        Node v;
        if (c == '{' || c == '[')
            v = flow_node(path, indent);
        else if (c == '"' || c == '\'')
            v = quoted(path);
        else
            v = plain(path, false);
        end_of_line();
        return v;
    }

    Node scalar(std::string_view text, SourceLoc at, const std::string& path) {
        count(1, text.size());
        return Node::make_scalar(std::string(text), std::move(at), path);
    }

    Node quoted(const std::string& path) {
        const char q = peek();
        SourceLoc at = here();
        std::size_t i = m_pos + 1;
        while (i < m_t.size() && m_t[i] != q) {
            if (m_t[i] == '\n' || (q == '"' && m_t[i] == '\\')) throw Outside{};
            ++i;
        }
        if (i >= m_t.size()) throw Outside{};
        if (q == '\'' && i + 1 < m_t.size() && m_t[i + 1] == '\'') throw Outside{};
        const std::string_view text = m_t.substr(m_pos + 1, i - m_pos - 1);
        m_pos = i + 1;
        return scalar(text, std::move(at), path);
    }

    // A plain scalar on one line. Block: up to the end of the line or a comment; flow: up to , ] } too.
    // Anything yaml-cpp could read otherwise (": " inside, flow indicators inside a flow scalar, a null
    // word) goes to yaml-cpp.
    Node plain(const std::string& path, bool flow) {
        const char first = peek();
        if (indicator(first) || (first == '-' && (peek(1) == ' ' || peek(1) == '\n' || peek(1) == '\0')))
            throw Outside{};
        SourceLoc at = here();
        const std::size_t begin = m_pos;
        std::size_t i = m_pos, end = m_pos;
        for (; i < m_t.size(); ++i) {
            const char c = m_t[i];
            if (c == '\n') break;
            if (c == '#' && m_t[i - 1] == ' ') break;
            if (c == ':') {
                if (flow) throw Outside{};
                const char next = i + 1 < m_t.size() ? m_t[i + 1] : '\0';
                if (next == ' ' || next == '\n' || next == '\0') throw Outside{};
            }
            if (flow) {
                if (c == ',' || c == ']' || c == '}') break;
                if (c == '[' || c == '{' || c == '?' || c == '#' || c == '"' || c == '\'') throw Outside{};
            }
            if (c != ' ') end = i + 1;
        }
        const std::string_view text = m_t.substr(begin, end - begin);
        if (null_word(text)) throw Outside{};
        m_pos = end;
        return scalar(text, std::move(at), path);
    }

    // Flow collections may run over several lines, each continued line indented past `indent`.
    void flow_space(int indent) {
        bool moved = false;
        for (;;) {
            const char c = peek();
            if (c == ' ') {
                ++m_pos;
            } else if (c == '#') {
                const char before = m_t[m_pos - 1];
                if (before != ' ' && before != '\n') throw Outside{};
                skip_comment();
            } else if (c == '\n') {
                newline();
                moved = true;
            } else if (c == '\0') {
                throw Outside{};  // not closed
            } else {
                break;
            }
        }
        if (moved && col() <= indent) throw Outside{};
    }

    Node flow_node(const std::string& path, int indent) {
        const char c = peek();
        if (c == '{') return flow_map(path, indent);
        if (c == '[') return flow_seq(path, indent);
        if (c == '"' || c == '\'') return quoted(path);
        return plain(path, true);
    }

    // After enter() at a flow collection's opening bracket: counts it and steps past it and the space
    // after; true (the collection left, depth restored) when `close` follows at once: it is empty.
    bool open_flow(char close, int indent) {
        count(1, 0);
        ++m_pos;
        flow_space(indent);
        if (peek() != close) return false;
        ++m_pos;
        --m_depth;
        return true;
    }

    // After an item: steps past `close` (false: the collection ends) or a comma and the space after it
    // (true: an item follows; an empty one is left to yaml-cpp).
    bool next_flow_item(char close, int indent) {
        flow_space(indent);
        const char c = peek();
        ++m_pos;
        if (c == close) return false;
        if (c != ',') throw Outside{};
        flow_space(indent);
        if (peek() == '}' || peek() == ',' || peek() == ']') throw Outside{};
        return true;
    }

    Node flow_map(const std::string& path, int indent) {
        enter();
        Node map = Node::make_map(here(), path);
        if (open_flow('}', indent)) return map;
        for (;;) {
            auto [key, key_loc] = map_key(map);
            flow_space(indent);
            Node value = flow_node(key_path(path, key), indent);
            value.set_key_loc(std::move(key_loc));
            map.set(std::move(key), std::move(value));
            if (!next_flow_item('}', indent)) break;
        }
        --m_depth;
        return map;
    }

    Node flow_seq(const std::string& path, int indent) {
        enter();
        Node seq = Node::make_sequence(here(), path);
        if (open_flow(']', indent)) return seq;
        for (;;) {
            seq.push_back(flow_node(index_path(path, seq.items().size()), indent));
            if (!next_flow_item(']', indent)) break;
        }
        --m_depth;
        return seq;
    }
};

}  // namespace

std::optional<Node> parse_simple_yaml(std::string_view text, const std::string& filename) {
    try {
        return Reader(text, filename).document();
    } catch (const Outside&) {
        return std::nullopt;
    }
}

}  // namespace mlsim::cfg::detail
