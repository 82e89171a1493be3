#include "arch/cpu/cache_sim.h"

#include <algorithm>
#include <cmath>

#include "sim/core/check.h"

namespace mlsim::arch::cpu {

SetAssocCache::SetAssocCache(double capacity_bytes, int64_t line_bytes, int64_t ways)
    : m_line(line_bytes), m_ways(ways) {
    const double sets = capacity_bytes / static_cast<double>(line_bytes * ways);
    m_sets = static_cast<uint64_t>(std::max(1.0, std::floor(sets)));
    if ((m_sets & (m_sets - 1)) == 0) m_mask = m_sets - 1;
    m_tag.assign(static_cast<size_t>(m_sets) * static_cast<size_t>(m_ways), 0);
}

// Each set keeps its ways in recency order, most recent first: an entry is (line + 1) << 1 | dirty, 0
// when empty. A hit moves its entry to the front; a miss drops the last (least recently used) entry.
bool SetAssocCache::access(uint64_t line, bool write, bool& victim_dirty, uint64_t& victim) {
    victim_dirty = false;
    const uint64_t set = m_mask ? (line & m_mask) : line % m_sets;
    uint64_t* w = m_tag.data() + static_cast<size_t>(set) * static_cast<size_t>(m_ways);
    const uint64_t tag = (line + 1) << 1;
    const auto n = static_cast<size_t>(m_ways);
    for (size_t i = 0; i < n; ++i)
        if ((w[i] & ~uint64_t{1}) == tag) {
            const uint64_t e = w[i] | static_cast<uint64_t>(write);
            for (size_t j = i; j > 0; --j) w[j] = w[j - 1];
            w[0] = e;
            return true;
        }
    const uint64_t last = w[n - 1];
    if (last != 0 && (last & 1)) {
        victim_dirty = true;
        victim = (last >> 1) - 1;
    }
    for (size_t j = n - 1; j > 0; --j) w[j] = w[j - 1];
    w[0] = tag | static_cast<uint64_t>(write);
    return false;
}

namespace {

int64_t ceil_div(int64_t a, int64_t b) { return (a + b - 1) / b; }

class Hierarchy {
  public:
    explicit Hierarchy(const std::vector<CacheLevel>& levels) {
        for (const CacheLevel& l : levels)
            m_caches.emplace_back(l.capacity_bytes, l.line_bytes, l.associativity);
        m_result.traffic.resize(levels.size());
        m_shift = 0;
        while ((int64_t{1} << m_shift) < m_caches.front().line_bytes()) ++m_shift;
        for (const SetAssocCache& c : m_caches)
            MLSIM_CHECK(c.line_bytes() == m_caches.front().line_bytes(),
                        "the trace needs one line size at every level");
    }
    // Every line of [addr, addr + bytes).
    void touch(uint64_t addr, uint64_t bytes, bool write) {
        if (bytes == 0) return;
        const uint64_t first = addr >> m_shift, last = (addr + bytes - 1) >> m_shift;
        for (uint64_t l = first; l <= last; ++l) {
            ++m_result.accesses;
            // The line the previous access touched is in L1 and most recently used: a hit that
            // changes no LRU order (only its dirty bit, which the next lookup of it sets anyway).
            if (l == m_last && !(write && !m_last_dirty)) continue;
            at(0, l, write);
            m_last = l;
            m_last_dirty = write;
        }
    }
    TraceResult result() const { return m_result; }

  private:
    void at(size_t level, uint64_t line, bool write) {
        bool dirty = false;
        uint64_t victim = 0;
        const bool hit = m_caches[level].access(line, write, dirty, victim);
        if (dirty) {
            m_result.traffic.writebacks[level] += 1;
            if (level + 1 < m_caches.size()) at(level + 1, victim, true);
        }
        if (!hit) {
            m_result.traffic.misses[level] += 1;
            if (level + 1 < m_caches.size()) at(level + 1, line, false);
        }
    }
    std::vector<SetAssocCache> m_caches;
    TraceResult m_result;
    uint64_t m_last = UINT64_MAX;
    bool m_last_dirty = false;
    int m_shift = 6;
};

uint64_t pad(uint64_t bytes) { return (bytes + 63) / 64 * 64; }

}  // namespace

double trace_accesses_estimate(const Blocking& b, const GemmTask& g, int64_t line_bytes) {
    const double w = g.elem_bytes, ld = static_cast<double>(line_bytes);
    const double tiles = static_cast<double>(ceil_div(g.m, b.mr)) * static_cast<double>(ceil_div(g.n, b.nr));
    const double per_step =
        std::ceil(static_cast<double>(b.mr) * w / ld) + std::ceil(static_cast<double>(b.nr) * w / ld);
    const double kernel =
        tiles * static_cast<double>(ceil_div(g.k, b.k_granule)) * per_step * static_cast<double>(b.k_granule);
    const double nj = static_cast<double>(ceil_div(g.n, std::max<int64_t>(1, b.nc)));
    const double pack = (static_cast<double>(g.m) * static_cast<double>(g.k) * nj +
                         static_cast<double>(g.k) * static_cast<double>(g.n)) *
                        w / ld * 2;
    return static_cast<double>(g.count) * (kernel + pack);
}

TraceResult trace_gemm(const std::vector<CacheLevel>& levels, const Blocking& b, const GemmTask& g) {
    Hierarchy h(levels);
    const auto w = static_cast<uint64_t>(std::llround(g.elem_bytes));
    MLSIM_CHECK(w >= 1, "the trace fidelity needs whole-byte elements");
    const int64_t M = g.m, N = g.n, K = g.k;
    const int64_t kc_max = std::min(b.kc, K);
    const int64_t mc_max = std::min(b.mc, ceil_div(M, b.mr) * b.mr);
    const int64_t nc_max = std::min(b.nc, ceil_div(N, b.nr) * b.nr);
    const bool pack_b = packs_b(b, g);
    // A's and C's rows start on a line; B (the weights) is dense, its rows one after another as a framework
    // stores a matrix (a 1024 x 10 int8 one is 160 lines, not 1,024 rows of a line each).
    const uint64_t a_pitch = pad(static_cast<uint64_t>(K) * w), b_pitch = static_cast<uint64_t>(N) * w,
                   c_pitch = pad(static_cast<uint64_t>(N) * w);
    const int64_t chunk = pack_b ? 0 : gemv_chunk(levels, g);
    for (int64_t inst = 0; !pack_b && inst < g.count; ++inst) {
        // Matrix-vector form (cpu_spec.h): per column chunk, per k: A[:, k], B[k, chunk], C[:, chunk].
        const uint64_t off = static_cast<uint64_t>(inst) << 34;
        const uint64_t A = (uint64_t{1} << 40) + off, B = (uint64_t{2} << 40) + off,
                       C = (uint64_t{3} << 40) + off;
        for (int64_t jc = 0; jc < N; jc += chunk) {
            const uint64_t nb = static_cast<uint64_t>(std::min(chunk, N - jc)) * w;
            for (int64_t p = 0; p < K; ++p) {
                for (int64_t i = 0; i < M; ++i)
                    h.touch(A + static_cast<uint64_t>(i) * a_pitch + static_cast<uint64_t>(p) * w, w, false);
                h.touch(B + static_cast<uint64_t>(p) * b_pitch + static_cast<uint64_t>(jc) * w, nb, false);
                for (int64_t i = 0; i < M; ++i) {
                    const uint64_t c = C + static_cast<uint64_t>(i) * c_pitch + static_cast<uint64_t>(jc) * w;
                    h.touch(c, nb, false);
                    h.touch(c, nb, true);
                }
            }
        }
    }
    for (int64_t inst = 0; pack_b && inst < g.count; ++inst) {
        // Each instance has its own A, B, C (groups, heads); the packing buffers are reused.
        const uint64_t off = static_cast<uint64_t>(inst) << 34;
        const uint64_t A = (uint64_t{1} << 40) + off, B = (uint64_t{2} << 40) + off,
                       C = (uint64_t{3} << 40) + off;
        const uint64_t Ap = uint64_t{4} << 40, Bp = uint64_t{5} << 40;
        for (int64_t jc = 0; jc < N; jc += nc_max) {
            const int64_t nc = std::min(nc_max, N - jc);
            for (int64_t pc = 0; pc < K; pc += kc_max) {
                const int64_t kc = std::min(kc_max, K - pc);
                // Pack B: kc rows of nc elements into NR-wide micro-panels.
                for (int64_t p = 0; p < kc; ++p) {
                    h.touch(B + static_cast<uint64_t>(pc + p) * b_pitch + static_cast<uint64_t>(jc) * w,
                            static_cast<uint64_t>(nc) * w, false);
                    for (int64_t jr = 0; jr < nc; jr += b.nr)
                        h.touch(Bp + (static_cast<uint64_t>(jr) * static_cast<uint64_t>(kc) +
                                      static_cast<uint64_t>(p) * static_cast<uint64_t>(b.nr)) *
                                         w,
                                static_cast<uint64_t>(b.nr) * w, true);
                }
                for (int64_t ic = 0; ic < M; ic += mc_max) {
                    const int64_t mc = std::min(mc_max, M - ic);
                    // Pack A: mc rows of kc elements into MR-tall micro-panels.
                    for (int64_t i = 0; i < mc; ++i) {
                        const double src = static_cast<double>(static_cast<uint64_t>(ic + i) * a_pitch +
                                                               static_cast<uint64_t>(pc) * w) *
                                           g.a_scale;
                        h.touch(A + static_cast<uint64_t>(src), static_cast<uint64_t>(kc) * w, false);
                    }
                    for (int64_t ir = 0; ir < mc; ir += b.mr)
                        h.touch(
                            Ap + static_cast<uint64_t>(ir) * static_cast<uint64_t>(kc) * w,
                            static_cast<uint64_t>(std::min(b.mr, mc - ir)) * static_cast<uint64_t>(kc) * w,
                            true);
                    for (int64_t jr = 0; jr < nc; jr += b.nr) {
                        const int64_t nr = std::min(b.nr, nc - jr);
                        for (int64_t ir = 0; ir < mc; ir += b.mr) {
                            const int64_t mr = std::min(b.mr, mc - ir);
                            const uint64_t a0 =
                                Ap + static_cast<uint64_t>(ir) * static_cast<uint64_t>(kc) * w;
                            const uint64_t b0 =
                                Bp + static_cast<uint64_t>(jr) * static_cast<uint64_t>(kc) * w;
                            for (int64_t p = 0; p < kc; ++p) {
                                h.touch(a0 + static_cast<uint64_t>(p * b.mr) * w,
                                        static_cast<uint64_t>(mr) * w, false);
                                h.touch(b0 + static_cast<uint64_t>(p * b.nr) * w,
                                        static_cast<uint64_t>(nr) * w, false);
                            }
                            for (int64_t i = 0; i < mr; ++i) {
                                const uint64_t c = C + static_cast<uint64_t>(ic + ir + i) * c_pitch +
                                                   static_cast<uint64_t>(jc + jr) * w;
                                h.touch(c, static_cast<uint64_t>(nr) * w, false);
                                h.touch(c, static_cast<uint64_t>(nr) * w, true);
                            }
                        }
                    }
                }
            }
        }
    }
    return h.result();
}

}  // namespace mlsim::arch::cpu
