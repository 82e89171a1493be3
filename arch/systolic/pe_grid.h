#pragma once
// Cycle fidelity of the systolic array: the R×C PE grid stepped one cycle at a time with real operand
// values in the PE registers (left-to-right and top-to-bottom neighbour links, stationary registers
// with their shadows, accumulators, partial-sum and drain registers).
//
// Promises: run() computes the actual product C = A·B by moving words through the grid under the
// timing rules of dataflow.h, and counts per fold and in total what happened: MACs performed, words
// read into the array edge from the A and B SRAMs, output words written (and read back for K-fold
// accumulation), PE-to-PE hops, and when each fold started, computed, and finished. Nothing is assumed
// from the closed forms of fold_model.h: PEs act only on the words and tokens in their registers, and
// the controllers start a column load, a drain or a fold from what they observe (a column's copies or
// captures completing, the edge ports going idle). One controller schedules statically: the os stream
// controller must commit to a fold's start before the previous fold's drain is visible, so it uses the
// fixed latencies (first capture K − 1 cycles after a start, a column's captures spread over r cycles,
// a drain lasts R cycles); the hazard checks confirm that schedule in every column. Every
// structural hazard (two words on one edge port, a copy from an incomplete shadow load, a capture into
// a draining column, operands of different steps meeting in a PE) is an MLSIM_CHECK, so a schedule that
// would corrupt the result throws InternalError instead.
// Assumes: small problems (tests, validation): cost is R·C per cycle; the state lives in flat arrays
// sized once per run, and stepping allocates nothing.
#include <cstdint>
#include <vector>

#include "arch/systolic/dataflow.h"

namespace mlsim::arch::systolic {

// Row-major integer matrix: integer arithmetic keeps the product exact for comparisons.
struct Matrix {
    int64_t rows = 0, cols = 0;
    std::vector<int64_t> data;

    Matrix() = default;
    Matrix(int64_t r, int64_t c);
    int64_t& at(int64_t r, int64_t c) { return data[static_cast<size_t>(r * cols + c)]; }
    int64_t at(int64_t r, int64_t c) const { return data[static_cast<size_t>(r * cols + c)]; }
    friend bool operator==(const Matrix&, const Matrix&) = default;
};

struct CycleRun {
    Matrix c;                      // the product, as written to the output SRAM
    GemmStats stats;               // layer totals
    std::vector<FoldStats> folds;  // in fold order (dataflow.h)
};

class PeGrid {
  public:
    explicit PeGrid(ArrayShape shape);

    ArrayShape shape() const { return m_shape; }

    // C = A·B with A (M×K) and B (K×N).
    CycleRun run(Dataflow df, const Matrix& a, const Matrix& b);

    // Test hook: let each fold after the first start `cycles` earlier than its controller allows, to
    // show that the timing rules are tight, not merely sufficient (the run then trips a hazard check).
    void set_start_advance_for_test(int64_t cycles) { m_advance = cycles; }

  private:
    // A word in a PE register. fold < 0: the register is empty. step: which streamed step (k in os,
    // the row of the streamed matrix in ws/is) the word belongs to.
    struct Word {
        int64_t val = 0;
        int32_t fold = -1;
        int32_t step = 0;
    };
    struct OutWord {
        int64_t val = 0;
        int64_t index = 0;  // flat index into C
        int32_t fold = -1;
    };

    CycleRun run_os(const FoldGeometry& g, const Matrix& a, const Matrix& b);
    CycleRun run_stationary(const FoldGeometry& g, const Matrix& a, const Matrix& b);
    void finish(const FoldGeometry& g, CycleRun& run, int64_t end, const std::vector<int64_t>& start) const;

    ArrayShape m_shape;
    int64_t m_advance = 0;

    // Register files, R·C each, reused across runs.
    std::vector<Word> m_left;    // word moving left to right (A in os and ws, Bᵀ in is)
    std::vector<Word> m_top;     // os: B word moving top to bottom; ws/is: partial sum moving down
    std::vector<int64_t> m_acc;  // os accumulators
    std::vector<OutWord> m_out;  // os shadow output registers (the drain chain)
    std::vector<int64_t> m_active, m_shadow;            // ws/is stationary registers
    std::vector<int32_t> m_active_fold, m_shadow_fold;  // which fold each holds
};

}  // namespace mlsim::arch::systolic
