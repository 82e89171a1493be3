#pragma once
// Test helper: the message of the UserError that f() throws; fails the test when it throws none.
#include <catch2/catch.hpp>
#include <string>

#include "sim/config/error.h"

namespace mlsim::test {

template <typename F>
std::string user_error_of(F&& f) {
    try {
        f();
    } catch (const cfg::UserError& e) {
        return e.what();
    }
    FAIL("expected a UserError, but nothing was thrown");
    return {};
}

}  // namespace mlsim::test
