// The cycle-stepped PE grid: for every dataflow it computes the true product (checked against a plain
// triple loop over many shapes, partial folds included), and its overlap rules are tight: starting a
// fold one cycle earlier than its controller allows trips a hazard check.
#include <catch2/catch.hpp>
#include <cstdint>
#include <vector>

#include "arch/systolic/pe_grid.h"
#include "sim/core/check.h"

using namespace mlsim;
using namespace mlsim::arch::systolic;

namespace {

// Deterministic small signed values; negative ones catch sign slips, distinct ones catch mix-ups.
Matrix random_matrix(int64_t rows, int64_t cols, uint64_t seed) {
    Matrix m(rows, cols);
    uint64_t s = seed * 0x9E3779B97F4A7C15ULL + 1;
    for (auto& v : m.data) {
        s = s * 6364136223846793005ULL + 1442695040888963407ULL;
        v = static_cast<int64_t>((s >> 33) % 19) - 9;
    }
    return m;
}

Matrix triple_loop(const Matrix& a, const Matrix& b) {
    Matrix c(a.rows, b.cols);
    for (int64_t m = 0; m < a.rows; ++m)
        for (int64_t n = 0; n < b.cols; ++n) {
            int64_t sum = 0;
            for (int64_t k = 0; k < a.cols; ++k) sum += a.at(m, k) * b.at(k, n);
            c.at(m, n) = sum;
        }
    return c;
}

const std::vector<ArrayShape> arrays = {{1, 1}, {1, 4},  {4, 1},  {2, 2}, {3, 5},
                                        {4, 4}, {4, 16}, {16, 4}, {8, 8}};
const std::vector<int64_t> dims = {1, 2, 3, 5, 8, 17};
const Dataflow dataflows[] = {Dataflow::os, Dataflow::ws, Dataflow::is};

}  // namespace

TEST_CASE("the PE grid computes A·B exactly for every dataflow, array and shape", "[systolic]") {
    uint64_t seed = 1;
    for (const ArrayShape& arr : arrays) {
        PeGrid grid(arr);
        for (int64_t m : dims)
            for (int64_t n : dims)
                for (int64_t k : dims) {
                    const Matrix a = random_matrix(m, k, seed++), b = random_matrix(k, n, seed++);
                    const Matrix want = triple_loop(a, b);
                    for (Dataflow df : dataflows) {
                        INFO(to_string(df) << " on " << arr.rows << "x" << arr.cols << ", M=" << m
                                           << " N=" << n << " K=" << k);
                        const CycleRun run = grid.run(df, a, b);
                        REQUIRE(run.c == want);
                        REQUIRE(run.stats.counts.macs == m * n * k);
                    }
                }
    }
}

TEST_CASE("a 16x16 PE grid multiplies a larger GEMM with partial folds in every dimension", "[systolic]") {
    const Matrix a = random_matrix(37, 45, 7), b = random_matrix(45, 29, 8);
    const Matrix want = triple_loop(a, b);
    PeGrid grid({16, 16});
    for (Dataflow df : dataflows) {
        INFO(to_string(df));
        CHECK(grid.run(df, a, b).c == want);
    }
}

TEST_CASE("the PE grid counts every output word written once per K fold", "[systolic]") {
    // 3 K folds on a 4-row array: ws and is write each output 3 times and read it back twice.
    const Matrix a = random_matrix(6, 10, 3), b = random_matrix(10, 7, 4);
    PeGrid grid({4, 4});
    for (Dataflow df : {Dataflow::ws, Dataflow::is}) {
        const CycleRun run = grid.run(df, a, b);
        CHECK(run.stats.counts.out_writes == 3 * 6 * 7);
        CHECK(run.stats.counts.out_reads == 2 * 6 * 7);
    }
    const CycleRun os = grid.run(Dataflow::os, a, b);
    CHECK(os.stats.counts.out_writes == 6 * 7);
    CHECK(os.stats.counts.out_reads == 0);
}

// Each case has two folds; `binding` says which rule fixes the second fold's start.
struct TightCase {
    const char* binding;
    Dataflow df;
    ArrayShape arr;
    int64_t m, n, k;
};

TEST_CASE("starting a fold one cycle before its controller allows trips a hazard check", "[systolic]") {
    const TightCase cases[] = {
        // os: two row folds. K = 3 < r + R = 8: the drain of column 0 binds.
        {"os drain", Dataflow::os, {4, 4}, 8, 4, 3},
        // os: K = 20 ≥ r + R: the edge ports bind.
        {"os stream", Dataflow::os, {4, 4}, 8, 4, 20},
        // ws: two K folds. T = M = 3 < r + r' = 8: the shadow load binds.
        {"ws preload", Dataflow::ws, {4, 4}, 3, 4, 8},
        {"ws stream", Dataflow::ws, {4, 4}, 20, 4, 8},
        {"is preload", Dataflow::is, {4, 4}, 4, 3, 8},
        {"is stream", Dataflow::is, {4, 4}, 4, 20, 8},
    };
    for (const TightCase& c : cases) {
        INFO(c.binding);
        const Matrix a = random_matrix(c.m, c.k, 11), b = random_matrix(c.k, c.n, 12);
        PeGrid grid(c.arr);
        REQUIRE(grid.run(c.df, a, b).c == triple_loop(a, b));
        grid.set_start_advance_for_test(1);
        CHECK_THROWS_AS(grid.run(c.df, a, b), InternalError);
    }
}
