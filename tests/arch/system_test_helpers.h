#pragma once
// Test helpers for the system tests: preset paths and scratch system files.
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include "arch/system/system_spec.h"
#include "tests/arch/user_error.h"

namespace mlsim::test {

inline const std::string& configs_dir() {
    static const std::string dir = std::string(MLSIM_SOURCE_DIR) + "/configs";
    return dir;
}

inline std::string system_preset_path(const std::string& name) {
    return configs_dir() + "/systems/" + name + ".yaml";
}

// A per-process scratch folder under the system temp dir, removed when the test program exits.
inline std::filesystem::path system_scratch_dir() {
    struct Scratch {
        std::filesystem::path dir =
            std::filesystem::temp_directory_path() / ("mlsim_system_test_" + std::to_string(::getpid()));
        ~Scratch() {
            std::error_code ec;
            std::filesystem::remove_all(dir, ec);
        }
    };
    static const Scratch scratch;
    std::filesystem::create_directories(scratch.dir);
    return scratch.dir;
}

inline std::string write_system_file(const std::string& name, const std::string& text) {
    const std::filesystem::path p = system_scratch_dir() / name;
    std::filesystem::create_directories(p.parent_path());
    std::ofstream(p) << text;
    return p.string();
}

// Loads a scratch system file with the presets of configs/devices.
inline arch::SystemSpec load_test_system(const std::string& name, const std::string& text) {
    return arch::load_system(write_system_file(name, text), {configs_dir() + "/devices"});
}

// The UserError message of loading that file (fails the test when it loads).
inline std::string system_error(const std::string& name, const std::string& text) {
    const std::string path = write_system_file(name, text);
    return user_error_of([&] { arch::load_system(path, {configs_dir() + "/devices"}); });
}

}  // namespace mlsim::test
