#include "sim/core/check.h"

#include <fmt/format.h>

namespace mlsim {

void check_failed(const char* expr, const char* file, int line, const std::string& detail) {
    throw InternalError(fmt::format("internal error: check '{}' failed at {}:{}{}{}", expr, file, line,
                                    detail.empty() ? "" : ": ", detail));
}

}  // namespace mlsim
