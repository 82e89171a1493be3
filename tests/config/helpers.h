#pragma once
// Shared helpers for the config tests.
#include <unistd.h>

#include <catch2/catch.hpp>
#include <filesystem>
#include <fstream>
#include <string>

#include "sim/config/error.h"

namespace mlsim::cfg::test {

// The message of the UserError that `f` throws; fails the test when it throws nothing.
template <typename F>
std::string error_of(F&& f) {
    try {
        f();
    } catch (const UserError& e) {
        return e.what();
    }
    FAIL("expected a UserError, but nothing was thrown");
    return {};
}

inline std::string data_path(const std::string& name) {
    return std::string(MLSIM_SOURCE_DIR) + "/tests/config/data/" + name;
}

// Writes `text` to a file in a per-process temporary folder and returns its path.
inline std::string write_temp(const std::string& name, const std::string& text) {
    auto dir = std::filesystem::temp_directory_path() / ("mlsim_config_test_" + std::to_string(::getpid()));
    std::filesystem::create_directories(dir);
    auto path = (dir / name).generic_string();
    std::ofstream(path) << text;
    return path;
}

}  // namespace mlsim::cfg::test
