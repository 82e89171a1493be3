#include "sim/config/error.h"

#include <fmt/format.h>

namespace mlsim::cfg {

std::string SourceLoc::str() const {
    if (file.empty()) return "<built-in>";
    if (line <= 0) return file;
    if (col <= 0) return fmt::format("{}:{}", file, line);
    return fmt::format("{}:{}:{}", file, line, col);
}

std::string bounded_message(const std::string& message) {
    if (message.size() <= k_max_message_bytes) return message;
    constexpr std::size_t head = 6144, tail = 1024;
    // Cut on UTF-8 character boundaries (never inside a multi-byte sequence).
    std::size_t a = head, b = message.size() - tail;
    while (a > 0 && (static_cast<unsigned char>(message[a]) & 0xC0) == 0x80) --a;
    while (b < message.size() && (static_cast<unsigned char>(message[b]) & 0xC0) == 0x80) ++b;
    return message.substr(0, a) + fmt::format(" [... {} bytes left out ...] ", b - a) + message.substr(b);
}

void fail(const SourceLoc& loc, std::string_view key_path, std::string_view message) {
    if (key_path.empty()) throw UserError(fmt::format("{}: error: {}", loc.str(), message));
    throw UserError(fmt::format("{}: error: {}: {}", loc.str(), key_path, message));
}

}  // namespace mlsim::cfg
