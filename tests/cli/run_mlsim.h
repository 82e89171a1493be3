#pragma once
// Test helper: run the mlsim binary as a user would and capture its exit status and output.
#include <sys/wait.h>

#include <catch2/catch.hpp>
#include <cstdio>
#include <string>

namespace mlsim::test {

struct MlsimOutput {
    int status = -1;
    std::string text;  // stdout and stderr together
};

// `args` is appended to the binary's path as shell words.
inline MlsimOutput run_mlsim(const std::string& args) {
    const std::string cmd = std::string("'") + MLSIM_BINARY + "' " + args + " 2>&1";
    MlsimOutput out;
    std::FILE* pipe = popen(cmd.c_str(), "r");
    REQUIRE(pipe != nullptr);
    char buf[4096];
    std::size_t n = 0;
    while ((n = std::fread(buf, 1, sizeof buf, pipe)) > 0) out.text.append(buf, n);
    const int status = pclose(pipe);
    out.status = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
    return out;
}

inline bool contains(const std::string& text, const std::string& part) {
    return text.find(part) != std::string::npos;
}

}  // namespace mlsim::test
