#pragma once
// User errors: anything wrong with what the user gave us (config, model, flags, files).
// Contract: a UserError carries a complete, human-readable message that names the file, line and
// column, the key path, what was expected and what was found. The command line prints it and exits
// with status 2. Internal invariants use MLSIM_CHECK (sim/core/check.h) instead and exit 1.
#include <cstddef>
#include <stdexcept>
#include <string>
#include <string_view>

namespace mlsim::cfg {

struct SourceLoc {
    std::string file;         // path as given by the user; empty for built-in text
    int line = 0;             // 1-based; 0 = unknown
    int col = 0;              // 1-based; 0 = unknown
    std::string str() const;  // "file:line:col", "file" when line is 0, "<built-in>" when file empty
};

// A message longer than k_max_message_bytes keeps its start and end, the middle left out and counted: a
// megabyte-long key or CSV field is echoed once, in part, not in full (twice, with the valid keys).
constexpr std::size_t k_max_message_bytes = 8192;
std::string bounded_message(const std::string& message);

class UserError : public std::runtime_error {
  public:
    explicit UserError(const std::string& message) : std::runtime_error(bounded_message(message)) {}
};

// Throws UserError with "<loc>: error: <key_path>: <message>" (the key part omitted when key_path is empty).
[[noreturn]] void fail(const SourceLoc& loc, std::string_view key_path, std::string_view message);

}  // namespace mlsim::cfg
