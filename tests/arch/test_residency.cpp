// The residency tracker (arch/residency.h) on its own, with hand-written layer needs: what stays on
// chip, and why not when it does not.
#include <catch2/catch.hpp>
#include <string>
#include <vector>

#include "arch/residency.h"
#include "workloads/model.h"

using namespace mlsim;

namespace {

// An element-wise op on [1, n] int8 activations: n bytes in, n bytes out.
wl::Op relu(const std::string& name, int64_t n) {
    wl::EltwiseAttr a;
    a.fn = wl::Eltwise::relu;
    return wl::make_op(name, a, {{1, n}}, wl::DType::int8);
}

wl::Op add2(const std::string& name, int64_t n) {
    wl::EltwiseAttr a;
    a.fn = wl::Eltwise::add;
    return wl::make_op(name, a, {{1, n}, {1, n}}, wl::DType::int8);
}

// a -> b -> c, each n bytes.
wl::Model chain(int64_t n) {
    wl::ModelBuilder b("chain");
    const size_t a = b.add(relu("a", n));
    const size_t m = b.add(relu("b", n), {wl::TensorRef{a, 0}});
    b.add(relu("c", n), {wl::TensorRef{m, 0}});
    return std::move(b).build();
}

arch::LayerNeeds reads_all(size_t slots, double from_memory = 0, double on_chip = 0) {
    arch::LayerNeeds n;
    n.reads_on_chip.assign(slots, true);
    n.space_from_memory = from_memory;
    n.space_on_chip = on_chip;
    return n;
}

}  // namespace

TEST_CASE("Residency keeps a tensor until its last consumer when it fits, and never a model output") {
    const wl::Model m = chain(100);
    arch::ResidencyTracker t(m, 1000, {reads_all(1), reads_all(1), reads_all(1)});
    CHECK(t.decide(0) == std::vector<double>{100});
    CHECK(t.inputs_on_chip(0) == std::vector<double>{0});  // a model input comes from main memory
    CHECK(t.decide(1) == std::vector<double>{100});
    CHECK(t.inputs_on_chip(1) == std::vector<double>{100});
    CHECK(t.decide(2) == std::vector<double>{0});  // nobody reads c: it goes to main memory
    CHECK(t.inputs_on_chip(2) == std::vector<double>{100});
    // a's output is resident at a and b, b's at b and c.
    CHECK(t.resident_bytes(0) == 100);
    CHECK(t.resident_bytes(1) == 200);
    CHECK(t.resident_bytes(2) == 100);
}

TEST_CASE("Residency counts each layer's own working space, the smaller one when it reads in place") {
    const wl::Model m = chain(100);
    SECTION("b needs 850 B for tiles of an input from memory, nothing with it on chip: a's output fits") {
        arch::ResidencyTracker t(m, 1000, {reads_all(1), reads_all(1, 850, 0), reads_all(1)});
        CHECK(t.decide(0) == std::vector<double>{100});
        CHECK(t.decide(1) == std::vector<double>{100});
    }
    SECTION("c needs 850 B even with its input on chip: b's output does not fit beside c's tiles") {
        arch::ResidencyTracker t(m, 900, {reads_all(1, 0, 0), reads_all(1), reads_all(1, 850, 850)});
        CHECK(t.decide(0) == std::vector<double>{100});
        CHECK(t.decide(1) == std::vector<double>{0});  // 100 + 850 > 900 at c
        t.decide(2);
        CHECK(t.inputs_on_chip(2) == std::vector<double>{0});
    }
    SECTION("a layer's space from memory counts when it reads the tensor from memory") {
        // b reads a's output in place, so the 850 B it would need otherwise do not count against it;
        // c reads b's output, which is kept too.
        arch::ResidencyTracker t(m, 900, {reads_all(1), reads_all(1, 850, 0), reads_all(1, 850, 0)});
        CHECK(t.decide(0) == std::vector<double>{100});
        CHECK(t.decide(1) == std::vector<double>{100});
    }
}

TEST_CASE("Residency spills what does not fit beside the tensors kept before it") {
    // src feeds left and right, which both feed sum: src's output is live until sum; left's output
    // is live from left to sum. With room for two tensors, src and left stay and right spills.
    wl::ModelBuilder b("diamond");
    const size_t src = b.add(relu("src", 100));
    const size_t left = b.add(relu("left", 100), {wl::TensorRef{src, 0}});
    const size_t right = b.add(relu("right", 100), {wl::TensorRef{src, 0}});
    b.add(add2("sum", 100), {wl::TensorRef{left, 0}, wl::TensorRef{right, 0}});
    const wl::Model m = std::move(b).build();
    REQUIRE(m.op(3).name == "sum");
    arch::ResidencyTracker t(m, 250, {reads_all(1), reads_all(1), reads_all(1), reads_all(2)});
    CHECK(t.decide(0) == std::vector<double>{100});  // src, live until right (layer 2)
    CHECK(t.decide(1) == std::vector<double>{100});  // left, live until sum
    CHECK(t.decide(2) == std::vector<double>{0});    // right: 300 at layer 2 > 250
    t.decide(3);
    CHECK(t.inputs_on_chip(3) == std::vector<double>{100, 0});
    CHECK(t.resident_bytes(2) == 200);
}

TEST_CASE("Residency needs every consumer to read in place and the producer to write in place") {
    const wl::Model m = chain(100);
    SECTION("b cannot read its input in place") {
        arch::LayerNeeds no;
        no.reads_on_chip = {false};
        arch::ResidencyTracker t(m, 1000, {reads_all(1), no, reads_all(1)});
        CHECK(t.decide(0) == std::vector<double>{0});
        CHECK(t.decide(1) == std::vector<double>{100});
    }
    SECTION("a cannot leave its output on chip") {
        arch::LayerNeeds a = reads_all(1);
        a.writes_on_chip = false;
        arch::ResidencyTracker t(m, 1000, {a, reads_all(1), reads_all(1)});
        CHECK(t.decide(0) == std::vector<double>{0});
        CHECK(t.inputs_on_chip(0) == std::vector<double>{0});
    }
}

TEST_CASE("Residency keeps nothing of a model with one layer") {
    wl::ModelBuilder b("one");
    b.add(relu("only", 100));
    const wl::Model m = std::move(b).build();
    arch::ResidencyTracker t(m, 1e9, {reads_all(1)});
    CHECK(t.decide(0) == std::vector<double>{0});
    CHECK(t.resident_bytes(0) == 0);
}
