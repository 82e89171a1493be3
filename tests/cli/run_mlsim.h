#pragma once
// Test helper: runs the mlsim binary as a user would, capturing its exit status and output.
#include <sys/wait.h>

#include <catch2/catch.hpp>
#include <cstdio>
#include <string>

namespace mlsim::test {

struct Output {
    int status = -1;
    std::string text;  // stdout and stderr together
};

// `args` is appended to the binary's path and run by the shell (quote paths yourself).
inline Output run_mlsim(const std::string& args) {
    const std::string cmd = std::string("'") + MLSIM_BINARY + "' " + args + " 2>&1";
    Output out;
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
