#pragma once
// The CPU model's trace fidelity: set-associative LRU caches with their real line size and
// associativity (write-back, write-allocate, non-inclusive: a miss fills the line from the level below,
// a dirty victim is written to the level below), fed the address stream of the blocked GEMM loop nest
// of cpu_spec.h, line by line: packing reads of A and B, writes of Ap and Bp, the micro-kernels' reads
// of Ap and Bp for each k step, and the read and write of each C tile per KC pass.
// Layout: each matrix starts at its own line-aligned base; rows are padded to whole 64-byte lines (as
// BLAS callers lay out leading dimensions). A convolution's im2col view maps its row i, column p to
// the feature map at (i · pitch + p · w) · a_scale, so the duplicated elements of the view fall on the
// same lines, as they do when a kernel packs straight from the feature map.
#include <cstdint>
#include <vector>

#include "arch/cpu/cpu_spec.h"

namespace mlsim::arch::cpu {

class SetAssocCache {
  public:
    SetAssocCache(double capacity_bytes, int64_t line_bytes, int64_t ways);
    // Looks a line up (its byte address >> line shift); true on a hit. On a miss the LRU way is replaced;
    // `victim_dirty` / `victim` tell whether a dirty line was evicted and which.
    bool access(uint64_t line, bool write, bool& victim_dirty, uint64_t& victim);
    int64_t line_bytes() const { return m_line; }

  private:
    int64_t m_line;
    uint64_t m_sets;
    uint64_t m_mask = 0;  // m_sets - 1 when a power of two (an AND instead of a division)
    int64_t m_ways;
    std::vector<uint64_t> m_tag;  // per set, most recently used first: (line + 1) << 1 | dirty; 0 = empty
};

struct TraceResult {
    Traffic traffic;
    uint64_t accesses = 0;  // line accesses made at L1
};

// Line accesses the trace of `g` would make at L1 (to refuse large shapes before replaying them).
double trace_accesses_estimate(const Blocking& b, const GemmTask& g, int64_t line_bytes);

// Replays the loop nest of `g` through `levels` (innermost first). Deterministic.
TraceResult trace_gemm(const std::vector<CacheLevel>& levels, const Blocking& b, const GemmTask& g);

}  // namespace mlsim::arch::cpu
