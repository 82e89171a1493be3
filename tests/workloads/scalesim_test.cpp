// SCALE-Sim topology CSVs: both formats, real (unpadded) layers, depthwise by name, located errors.
#include <array>
#include <catch2/catch.hpp>

#include "sim/config/error.h"
#include "workloads/model.h"

using namespace mlsim;
using namespace mlsim::wl;

namespace {

std::string data(const std::string& f) {
    return std::string(MLSIM_SOURCE_DIR) + "/tests/workloads/data/" + f;
}

}  // namespace

TEST_CASE("a SCALE-Sim conv topology becomes independent unpadded conv layers", "[scalesim]") {
    const Model m = load_scalesim_csv(data("conv_topology.csv"), ZooOptions{});
    CHECK(m.name() == "conv_topology");
    REQUIRE(m.ops().size() == 4);
    CHECK(m.edges().empty());
    CHECK(m.inputs().size() == 4);
    const Op& c1 = m.op(0);
    CHECK(c1.name == "Conv1");
    CHECK(c1.kind == "conv2d");
    // No padding; the real convolution's ofmap, floor((224 - 7) / 2) + 1 = 109 (SCALE-Sim's cycle count
    // uses 110: the systolic model's scalesim convention applies that, the layer keeps its real size).
    CHECK(c1.output() == Shape{1, 64, 109, 109});
    CHECK(c1.counts().macs == 109.0 * 109 * 64 * 7 * 7 * 3);
    CHECK(c1.gemm() == GemmShape{1, 109 * 109, 64, 147});
    const Op& dp = m.op(1);
    CHECK(dp.kind == "depthwise_conv2d");  // "DP" in the name
    CHECK(dp.output() == Shape{1, 64, 54, 54});
    CHECK(dp.counts().macs == 54.0 * 54 * 64 * 9);
    CHECK(m.op(2).name == "Conv3_pw");  // fields are trimmed
    CHECK(m.op(2).output() == Shape{1, 128, 56, 56});
    CHECK(m.op(3).gemm() == GemmShape{1, 1, 1000, 512});  // a row without the trailing comma
    CHECK(m.op(0).loc.str() == data("conv_topology.csv") + ":2:1");
}

TEST_CASE("DP layers take Num Filter per channel; a ninth field is the width's stride", "[scalesim]") {
    const Model m = load_scalesim_csv(data("dp_stride_topology.csv"), ZooOptions{});
    REQUIRE(m.ops().size() == 3);
    // SCALE-Sim runs a "DP" layer as one layer per channel, each of Num Filter filters over one channel.
    const Op& b = m.op(0);
    CHECK(b.kind == "depthwise_conv2d");
    CHECK(b.output() == Shape{1, 6, 5, 5});
    CHECK(b.gemm() == GemmShape{3, 25, 2, 9});
    const Op& c = m.op(1);
    CHECK(c.output() == Shape{1, 16, 6, 6});  // Num Filter = Channels: 4 filters on each of 4 channels
    CHECK(c.gemm() == GemmShape{4, 36, 4, 9});
    const Op& e = m.op(2);
    CHECK(e.get<ConvAttr>()->stride == std::array<int64_t, 3>{3, 2, 1});
    CHECK(e.output() == Shape{1, 7, 3, 4});
}

TEST_CASE("a SCALE-Sim GEMM topology is M output rows, N output columns, K reduction", "[scalesim]") {
    ZooOptions o;
    o.dtype = DType::int8;
    const Model m = load_scalesim_csv(data("gemm_topology.csv"), o);
    REQUIRE(m.ops().size() == 2);
    CHECK(m.op(0).gemm() == GemmShape{1, 512, 2304, 768});
    CHECK(m.op(0).counts().macs == 512.0 * 2304 * 768);
    CHECK(m.op(0).counts().weight_bytes == 768.0 * 2304);  // K x N at one byte
    CHECK(m.op(1).dtype == DType::int8);
}

TEST_CASE("malformed SCALE-Sim rows are user errors at file:line:col", "[scalesim][errors]") {
    CHECK_THROWS_WITH(load_scalesim_csv(data("bad_fields.csv"), ZooOptions{}),
                      Catch::StartsWith(data("bad_fields.csv") + ":3:1: error: expected 8 fields"));
    CHECK_THROWS_WITH(
        load_scalesim_csv(data("bad_number.csv"), ZooOptions{}),
        Catch::StartsWith(data("bad_number.csv") + ":2:21: error: layer 'Conv1': Num Filter must be a "
                                                   "positive integer, got '6x4'"));
    CHECK_THROWS_WITH(
        load_scalesim_csv(data("bad_filter.csv"), ZooOptions{}),
        Catch::Contains("bad_filter.csv:2:") && Catch::Contains("filter 7x7 is larger than the 5x5 input"));
    CHECK_THROWS_WITH(load_scalesim_csv(data("bad_header.csv"), ZooOptions{}),
                      Catch::Contains("bad_header.csv:1:1: error: not a SCALE-Sim topology header"));
    CHECK_THROWS_WITH(load_scalesim_csv(data("missing.csv"), ZooOptions{}), Catch::Contains("cannot open"));
}
