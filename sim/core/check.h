#pragma once
// Internal invariants. A failed MLSIM_CHECK is a bug in mlsim, never a user error: it stays checked in
// release builds, throws InternalError (the command line reports it and exits 1) and never aborts.
#include <stdexcept>
#include <string>

namespace mlsim {

class InternalError : public std::logic_error {
  public:
    explicit InternalError(const std::string& what) : std::logic_error(what) {}
};

[[noreturn]] void check_failed(const char* expr, const char* file, int line, const std::string& detail);

}  // namespace mlsim

#define MLSIM_CHECK(cond, ...)                                                            \
    do {                                                                                  \
        if (!(cond)) [[unlikely]]                                                         \
            ::mlsim::check_failed(#cond, __FILE__, __LINE__, ::std::string{__VA_ARGS__}); \
    } while (0)
