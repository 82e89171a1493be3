#include "sim/config/error.h"

#include <fmt/format.h>

namespace mlsim::cfg {

std::string SourceLoc::str() const {
    if (file.empty()) return "<built-in>";
    if (line <= 0) return file;
    if (col <= 0) return fmt::format("{}:{}", file, line);
    return fmt::format("{}:{}:{}", file, line, col);
}

void fail(const SourceLoc& loc, std::string_view key_path, std::string_view message) {
    if (key_path.empty()) throw UserError(fmt::format("{}: error: {}", loc.str(), message));
    throw UserError(fmt::format("{}: error: {}: {}", loc.str(), key_path, message));
}

}  // namespace mlsim::cfg
