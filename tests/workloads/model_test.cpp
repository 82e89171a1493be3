// The model graph: topological order, validation errors, inputs and outputs.
#include "workloads/model.h"

#include <catch2/catch.hpp>
#include <stdexcept>

#include "sim/config/error.h"

using namespace mlsim;
using namespace mlsim::wl;

namespace {

Op relu(const std::string& name, Shape s = {2, 8}) {
    return make_op(name, EltwiseAttr{Eltwise::relu}, {std::move(s)});
}
Op add2(const std::string& name, Shape s = {2, 8}) {
    return make_op(name, EltwiseAttr{Eltwise::add}, {s, s});
}

std::vector<std::string> names(const Model& m) {
    std::vector<std::string> out;
    for (const Op& op : m.ops()) out.push_back(op.name);
    return out;
}

}  // namespace

TEST_CASE("ops come out in topological order, ties by insertion order", "[model]") {
    ModelBuilder b("diamond");
    // Inserted consumers first: the order must still put producers before consumers.
    const size_t sum = b.add(add2("sum"));
    const size_t right = b.add(relu("right"));
    const size_t left = b.add(relu("left"));
    const size_t src = b.add(relu("src"));
    const size_t other = b.add(relu("other"));  // independent: ready from the start
    b.connect({src, 0}, left, 0);
    b.connect({src, 0}, right, 0);
    b.connect({left, 0}, sum, 0);
    b.connect({right, 0}, sum, 1);
    (void)other;
    const Model m = std::move(b).build();
    // src (inserted before other) goes first; then right and left (inserted before other); then sum,
    // which is ready by now and was inserted first of all, before other.
    CHECK(names(m) == std::vector<std::string>{"src", "right", "left", "sum", "other"});
    CHECK(m.ops().size() == 5);
    CHECK(m.edge_count() == 4);
    CHECK(m.edges().size() == 4);
    const size_t s = *m.find("sum");
    CHECK(m.producer(s, 0) == TensorRef{*m.find("left"), 0});
    CHECK(m.producer(s, 1) == TensorRef{*m.find("right"), 0});
    CHECK(m.in_edges(s).size() == 2);
    CHECK(m.out_edges(*m.find("src")).size() == 2);
    const auto ins = m.inputs();  // src's and other's inputs are fed by nobody
    REQUIRE(ins.size() == 2);
    CHECK(m.op(ins[0].op).name == "src");
    CHECK(m.op(ins[1].op).name == "other");
    const auto outs = m.outputs();
    REQUIRE(outs.size() == 2);
    CHECK(m.op(outs[0].op).name == "sum");
    CHECK(m.op(outs[1].op).name == "other");

    // Copies and moves share the graph and the ops and see the same edges and names; a default model has
    // no edges and no ops.
    Model copy = m;
    CHECK(copy.edge_count() == 4);
    CHECK(copy.producer(s, 1) == TensorRef{*copy.find("right"), 0});
    CHECK(&copy.ops() == &m.ops());
    CHECK(names(copy) == names(m));
    CHECK(copy.name() == "diamond");
    Model moved = std::move(copy);
    CHECK(moved.in_edges(s).size() == 2);
    CHECK(&moved.ops() == &m.ops());
    CHECK(*moved.find("sum") == s);
    CHECK(Model{}.edge_count() == 0);
    CHECK(Model{}.edges().empty());
    CHECK(Model{}.ops().empty());
    CHECK_FALSE(Model{}.find("sum").has_value());
    CHECK_THROWS_AS(Model{}.op(0), std::out_of_range);
}

TEST_CASE("insertion order that is already topological is kept", "[model]") {
    const Model m = zoo_build("resnet50", ZooOptions{});
    CHECK(m.op(0).name == "conv1");
    CHECK(m.ops().back().name == "fc");
    for (size_t i = 0; i < m.ops().size(); ++i)
        for (const Edge& e : m.in_edges(i)) CHECK(e.from < i);
}

TEST_CASE("a cycle is a user error naming the ops on it", "[model][errors]") {
    ModelBuilder b("loop");
    b.add(relu("a"));
    b.add(relu("b"));
    b.add(relu("c"));
    b.connect("a", 0, "b", 0);
    b.connect("b", 0, "c", 0);
    b.connect("c", 0, "a", 0, cfg::SourceLoc{"m.yaml", 9, 3}, "edges[2]");
    CHECK_THROWS_WITH(std::move(b).build(),
                      Catch::Contains("model 'loop' has a cycle: 'a' -> 'b' -> 'c' -> 'a'"));
}

TEST_CASE("a dangling edge is a user error with the nearest op name and its location", "[model][errors]") {
    ModelBuilder b("m");
    b.add(relu("conv1"));
    b.add(relu("conv2"));
    b.connect("conv1", 0, "cnv2x", 0, cfg::SourceLoc{"m.yaml", 4, 7}, "edges[0]");
    CHECK_THROWS_WITH(
        std::move(b).build(),
        Catch::StartsWith("m.yaml:4:7: error: edges[0]: edge 'conv1' -> 'cnv2x': no op named 'cnv2x'; "
                          "did you mean 'conv2'?"));
    ModelBuilder c("m");
    c.add(relu("x"));
    c.connect({0, 0}, 5, 0);
    CHECK_THROWS_AS(std::move(c).build(), cfg::UserError);
}

TEST_CASE("a shape mismatch between producer and consumer is a user error naming both", "[model][errors]") {
    ModelBuilder b("m");
    b.add(relu("p", {2, 8}));
    b.add(relu("q", {2, 9}));
    b.connect("p", 0, "q", 0);
    CHECK_THROWS_WITH(
        std::move(b).build(),
        Catch::Contains("shape mismatch: op 'q' input 0 expects [2,9] but op 'p' output 0 is [2,8]"));
}

TEST_CASE("duplicate names, double-fed inputs and bad slots are user errors", "[model][errors]") {
    {
        ModelBuilder b("m");
        b.add(relu("x"));
        b.add(relu("x"));
        CHECK_THROWS_WITH(std::move(b).build(), Catch::Contains("op name 'x' is used twice"));
    }
    {
        ModelBuilder b("m");
        b.add(relu("a"));
        b.add(relu("b"));
        b.add(relu("c"));
        b.connect("a", 0, "c", 0);
        b.connect("b", 0, "c", 0);
        CHECK_THROWS_WITH(std::move(b).build(),
                          Catch::Contains("input 0 of op 'c' is fed twice (by 'a' and 'b')"));
    }
    {
        ModelBuilder b("m");
        b.add(relu("a"));
        b.add(relu("b"));
        b.connect("a", 0, "b", 1);
        CHECK_THROWS_WITH(std::move(b).build(), Catch::Contains("op 'b' has no input 1"));
    }
}

TEST_CASE("totals count tied weights once and report stored weights", "[model]") {
    const Model m = zoo_build("gpt2-small-decode", ZooOptions{});
    OpCounts streamed;
    for (const Op& op : m.ops()) streamed += op.counts();
    const OpCounts t = m.totals();
    CHECK(t.params == streamed.params);
    CHECK(t.macs == streamed.macs);
    CHECK(t.weight_bytes == double(t.params) * 4);
    // A decode step streams the tied matrix once (through the LM head) but only one row of the position
    // table, so it streams exactly the stored weights minus the position table plus two gathered rows.
    CHECK(streamed.weight_bytes == t.weight_bytes - (1024.0 * 768 - 2 * 768) * 4);
}
