// `mlsim list systems` as a user runs it: one row per preset in aligned columns; the other lists still work.
#include <sys/wait.h>

#include <catch2/catch.hpp>
#include <cstdio>
#include <sstream>
#include <string>
#include <vector>

namespace {

struct Output {
    int status = -1;
    std::string out;  // stdout only
    std::string all;  // stdout and stderr
};

Output run_mlsim(const std::string& args) {
    Output o;
    for (bool with_stderr : {false, true}) {
        const std::string cmd = std::string("MLSIM_CONFIGS='") + MLSIM_SOURCE_DIR + "/configs' '" +
                                MLSIM_BINARY + "' " + args + (with_stderr ? " 2>&1" : " 2>/dev/null");
        std::FILE* pipe = popen(cmd.c_str(), "r");
        REQUIRE(pipe != nullptr);
        std::string text;
        char buf[4096];
        std::size_t n = 0;
        while ((n = std::fread(buf, 1, sizeof buf, pipe)) > 0) text.append(buf, n);
        const int status = pclose(pipe);
        o.status = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
        (with_stderr ? o.all : o.out) = text;
    }
    return o;
}

std::vector<std::string> lines_of(const std::string& text) {
    std::vector<std::string> out;
    std::istringstream in(text);
    for (std::string line; std::getline(in, line);) out.push_back(line);
    return out;
}

// The words of a line, split on runs of two or more spaces (a description may hold single spaces).
std::vector<std::string> cells(const std::string& line) {
    std::vector<std::string> out;
    std::size_t i = 0;
    while (i < line.size()) {
        while (i < line.size() && line[i] == ' ') ++i;
        std::size_t end = i;
        while (end < line.size() && !(line[end] == ' ' && end + 1 < line.size() && line[end + 1] == ' '))
            ++end;
        if (end > i) out.push_back(line.substr(i, end - i));
        i = end;
    }
    return out;
}

}  // namespace

TEST_CASE("mlsim list systems prints every preset in aligned columns", "[arch][system][cli]") {
    const Output o = run_mlsim("list systems");
    REQUIRE(o.status == 0);
    const std::vector<std::string> lines = lines_of(o.out);
    REQUIRE(lines.size() >= 8);
    const std::string& header = lines.front();
    CHECK(cells(header) == std::vector<std::string>{"preset", "devices", "device types", "nodes", "switches",
                                                    "links", "bisection", "description"});
    // Right-aligned numbers end under their header; text columns start under theirs.
    const std::size_t devices_end = header.find("devices") + std::string("devices").size();
    const std::size_t types_at = header.find("device types");
    const std::size_t links_end = header.find("links") + std::string("links").size();
    const std::size_t desc_at = header.find("description");
    bool saw_dgx = false, saw_cluster = false, saw_pcie = false;
    for (std::size_t i = 1; i < lines.size(); ++i) {
        const std::string& line = lines[i];
        INFO(line);
        const std::vector<std::string> c = cells(line);
        REQUIRE(c.size() == 8);
        CHECK(line.substr(devices_end - c[1].size(), c[1].size()) == c[1]);
        CHECK(line.substr(types_at, c[2].size()) == c[2]);
        CHECK(line.substr(links_end - c[5].size(), c[5].size()) == c[5]);
        CHECK(line.substr(desc_at) == c[7]);
        if (c[0] == "dgx-a100") {
            saw_dgx = true;
            CHECK(c ==
                  std::vector<std::string>{"dgx-a100", "8", "a100", "1", "1", "8", "1.2 TB/s",
                                           "NVIDIA DGX A100, 8 x A100 SXM 80GB on NVLink3 / NVSwitch gen2"});
        }
        if (c[0] == "dgx-a100-2node") {
            saw_cluster = true;
            CHECK(c[1] == "16");
            CHECK(c[3] == "2");
            CHECK(c[4] == "3");
            CHECK(c[5] == "32");
        }
        if (c[0] == "pcie-4gpu") {
            saw_pcie = true;
            CHECK(c[1] == "5");
            CHECK(c[2] == "a100,xeon-8380");
        }
    }
    CHECK(saw_dgx);
    CHECK(saw_cluster);
    CHECK(saw_pcie);
}

TEST_CASE("mlsim list keeps devices and models, and suggests on a typo", "[arch][system][cli]") {
    const Output devices = run_mlsim("list devices");
    CHECK(devices.status == 0);
    CHECK(devices.out.find("a100") != std::string::npos);
    const Output models = run_mlsim("list models");
    CHECK(models.status == 0);
    CHECK(models.out.find("resnet50") != std::string::npos);
    const Output typo = run_mlsim("list sytems");
    CHECK(typo.status == 2);
    CHECK(typo.all.find("did you mean 'systems'?") != std::string::npos);
}

TEST_CASE("mlsim validate accepts every system preset and run still runs on one device of dgx-a100",
          "[arch][system][cli]") {
    const std::string dir = std::string(MLSIM_SOURCE_DIR) + "/configs/systems/";
    const Output v = run_mlsim("validate " + dir + "*.yaml");
    CHECK(v.status == 0);
    CHECK(v.out.find("dgx-a100.yaml: ok (system 'dgx-a100': 8 x a100; 1 switch, 8 links)") !=
          std::string::npos);
    CHECK(
        v.out.find("pcie-4gpu.yaml: ok (system 'pcie-4gpu': 4 x a100 + 1 x xeon-8380; 1 switch, 5 links)") !=
        std::string::npos);
    const Output r = run_mlsim("run --system dgx-a100 --model mlp3 -q");
    CHECK(r.status == 0);
    CHECK(r.all.find("has 8 devices, and without a parallel plan these figures are for one a100") !=
          std::string::npos);
    CHECK(r.all.find("--data-parallel") != std::string::npos);
    // With a plan, the run is the parallel one and the note is not printed.
    const Output p = run_mlsim("run --system dgx-a100 --model mlp3 -q --batch 8 --data-parallel 8");
    CHECK(p.status == 0);
    CHECK(p.all.find("without a parallel plan") == std::string::npos);
    CHECK(r.all.find("mlp3 on a100") != std::string::npos);
}
