// The residency tracker (arch/residency.h) on its own, with hand-written layer needs: what stays on
// chip, and why not when it does not.
#include <algorithm>
#include <catch2/catch.hpp>
#include <optional>
#include <random>
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

namespace {

// The tracker's rule spelled out as directly as it reads in arch/residency.h: each layer's in-place inputs
// walked for every layer a tensor would live through. The tracker counts instead; both must decide alike.
struct ReferenceTracker {
    const wl::Model& m;
    double capacity;
    std::vector<arch::LayerNeeds> needs;
    std::vector<std::vector<bool>> kept;  // [op][slot]
    std::vector<double> resident;

    static bool in_place(const arch::LayerNeeds& n, int slot) {
        const auto s = static_cast<size_t>(slot);
        return s < n.reads_on_chip.size() && n.reads_on_chip[s];
    }
    size_t last_use(size_t op, int slot) const {
        size_t last = 0;
        for (const wl::Edge& e : m.edges())
            if (e.from == op && e.from_slot == slot) last = std::max(last, e.to);
        return last;
    }
    std::vector<double> decide(size_t layer) {
        const wl::Op& op = m.op(layer);
        std::vector<double> out_kept(op.outputs.size(), 0.0);
        for (size_t s = 0; s < op.outputs.size(); ++s) {
            const double bytes =
                static_cast<double>(wl::numel(op.outputs[s])) * wl::dtype_bytes(wl::output_dtype(op));
            if (!needs[layer].writes_on_chip) continue;
            bool consumed = false, all_in_place = true;
            for (const wl::Edge& e : m.out_edges(layer))
                if (e.from_slot == static_cast<int>(s)) {
                    consumed = true;
                    all_in_place = all_in_place && in_place(needs[e.to], e.to_slot);
                }
            if (!consumed || !all_in_place || bytes <= 0) continue;
            const size_t last = last_use(layer, static_cast<int>(s));
            bool fits = true;
            for (size_t q = layer; q <= last && fits; ++q) {
                bool reads_kept = false;
                for (const wl::Edge& e : m.in_edges(q))
                    if (in_place(needs[q], e.to_slot) &&
                        (kept[e.from][static_cast<size_t>(e.from_slot)] ||
                         (e.from == layer && e.from_slot == static_cast<int>(s))))
                        reads_kept = true;
                const double space = reads_kept ? needs[q].space_on_chip : needs[q].space_from_memory;
                fits = resident[q] + bytes + space <= capacity;
            }
            if (!fits) continue;
            kept[layer][s] = true;
            out_kept[s] = bytes;
            for (size_t q = layer; q <= last; ++q) resident[q] += bytes;
        }
        return out_kept;
    }
};

}  // namespace

TEST_CASE("Residency decides as the rule walked layer by layer does, on random graphs with wide joins") {
    std::mt19937 rng(11);
    auto uniform = [&](int lo, int hi) { return std::uniform_int_distribution<int>(lo, hi)(rng); };
    int kept_any = 0, spilled_any = 0;
    for (int trial = 0; trial < 200; ++trial) {
        wl::ModelBuilder b("random");
        const int ops = uniform(2, 30);
        std::vector<size_t> ids;
        for (int i = 0; i < ops; ++i) {
            std::vector<std::optional<wl::TensorRef>> refs;  // every tensor [1, 128]: any may join any
            const int inputs = ids.empty() ? 0 : uniform(1, std::min<int>(4, static_cast<int>(ids.size())));
            for (int k = 0; k < inputs; ++k)
                refs.push_back(
                    wl::TensorRef{ids[static_cast<size_t>(uniform(0, static_cast<int>(ids.size()) - 1))], 0});
            const std::string name =
                std::to_string(i);  // ("r" + std::to_string(i) trips GCC 12's -Wrestrict)
            wl::Op op;
            if (refs.size() <= 1) {
                op = relu(name, 128);
            } else {
                wl::EltwiseAttr a;
                a.fn = wl::Eltwise::add;
                op = wl::make_op(name, a, std::vector<wl::Shape>(refs.size(), wl::Shape{1, 128}),
                                 wl::DType::int8);
            }
            ids.push_back(refs.empty() ? b.add(op) : b.add(op, refs));
        }
        const wl::Model m = std::move(b).build();
        std::vector<arch::LayerNeeds> needs(m.ops().size());
        for (size_t i = 0; i < needs.size(); ++i) {
            needs[i].reads_on_chip.resize(m.op(i).inputs.size());
            for (size_t s = 0; s < needs[i].reads_on_chip.size(); ++s)
                needs[i].reads_on_chip[s] = uniform(0, 5) > 0;
            needs[i].writes_on_chip = uniform(0, 7) > 0;
            needs[i].space_from_memory = 8.0 * uniform(0, 40);
            needs[i].space_on_chip = needs[i].space_from_memory * uniform(0, 4) / 4.0;
        }
        const double capacity = 64.0 * uniform(1, 16);
        arch::ResidencyTracker t(m, capacity, needs);
        ReferenceTracker ref{m, capacity, needs, {}, std::vector<double>(m.ops().size(), 0.0)};
        for (size_t i = 0; i < m.ops().size(); ++i) ref.kept.emplace_back(m.op(i).outputs.size(), false);
        for (size_t i = 0; i < m.ops().size(); ++i) {
            INFO("trial " << trial << ", layer " << i);
            const std::vector<double> got = t.decide(i);
            CHECK(got == ref.decide(i));
            CHECK(t.resident_bytes(i) == ref.resident[i]);
            kept_any += got.front() > 0;
            spilled_any += got.front() == 0 && !m.out_edges(i).empty();
        }
    }
    CHECK(kept_any > 100);  // both outcomes were exercised
    CHECK(spilled_any > 100);
}
