// BLIS-style blocking and the closed-form traffic of the blocked GEMM loop nest (cpu_spec.h), and the
// sustained DRAM bandwidth.
#include <fmt/format.h>

#include <algorithm>
#include <cmath>
#include <numeric>

#include "arch/cpu/cpu_spec.h"
#include "sim/core/check.h"

namespace mlsim::arch::cpu {

namespace {

int64_t round_down(int64_t v, int64_t m) { return std::max(m, v / m * m); }
int64_t ceil_div(int64_t a, int64_t b) { return (a + b - 1) / b; }

// Average lines touched by a contiguous segment of `bytes` that starts at a multiple of `stride` bytes
// from a line-aligned base (the row segments of a block: offsets jc·w, pc·w, jr·w).
double seg_lines(double bytes, double stride, int64_t line) {
    const auto s = static_cast<int64_t>(std::llround(bytes));
    const auto st = std::max<int64_t>(1, static_cast<int64_t>(std::llround(stride)));
    if (s <= 0) return 0;
    const int64_t period = line / std::gcd(st % line == 0 ? line : st % line, line);
    double sum = 0;
    for (int64_t t = 0; t < period; ++t) {
        const int64_t off = (t * st) % line;
        sum += static_cast<double>(ceil_div(off + s, line));
    }
    return sum / static_cast<double>(period);
}

}  // namespace

double DramParams::sustained_Bps(double write_fraction) const {
    // A channel moves one line in line_time; every write_batch writes the bus turns around twice
    // (read->write, write->read), costing turnaround_s; refresh takes refresh_overhead of the time.
    const double per_channel = bandwidth_Bps / static_cast<double>(channels);
    const double line_time = 64.0 / per_channel;
    const double turn = write_fraction / static_cast<double>(write_batch) * turnaround_s / line_time;
    return bandwidth_Bps * (1 - refresh_overhead) / (1 + turn);
}

std::string Blocking::text() const {
    return fmt::format("{}MRxNR={}x{} KC={} MC={} NC={}", matrix ? "tiles " : "", mr, nr, kc, mc, nc);
}

Blocking choose_blocking(const CpuSpec& s, const ComputeUnit& u, double w, double l3_share) {
    Blocking b;
    const CacheLevel& l1 = s.caches.front();
    const auto lanes = static_cast<int64_t>(std::max(1.0, s.lanes(w)));
    if (u.matrix) {
        // AMX-like: 2 x 2 accumulator tiles of 16 rows x 64 B, operand tiles of 16 rows x 64 B.
        b.matrix = true;
        b.mr = 32;
        b.nr = 32;
        b.k_granule = std::max<int64_t>(1, static_cast<int64_t>(64 / w));
        const double macs = static_cast<double>(b.mr * b.nr * b.k_granule);
        const double load_bytes = static_cast<double>(b.mr + b.nr) * static_cast<double>(b.k_granule) * w;
        b.cycles_per_step = std::max(macs / u.macs_per_cycle, load_bytes / l1.bytes_per_cycle);
    } else {
        // a vector rows of accumulators by nr columns.
        int64_t best_a = 1, best_n = 1;
        double best_rate = -1;
        for (int64_t a = 1; a <= 4; ++a)
            for (int64_t n = 1; a * n + a + 1 <= s.vector_registers; ++n) {
                // cycles per k step: FMA issue, loads (a vectors + n broadcasts), dependency latency
                const double cps = std::max({static_cast<double>(a * n) / static_cast<double>(s.fma_pipes),
                                             static_cast<double>(a + n) / static_cast<double>(s.load_ports),
                                             static_cast<double>(s.fma_latency)});
                const double rate = static_cast<double>(a * n) / cps;  // FMAs per cycle
                if (rate > best_rate + 1e-9 ||
                    (std::abs(rate - best_rate) <= 1e-9 && a * n > best_a * best_n)) {
                    best_rate = rate;
                    best_a = a;
                    best_n = n;
                }
            }
        b.mr = best_a * lanes;
        b.nr = best_n;
        b.k_granule = 1;
        b.cycles_per_step = static_cast<double>(best_a * best_n) / best_rate;
    }
    // KC from L1 (Low et al. 2016): the B micro-panel keeps C_B of the W ways.
    const double ways1 = static_cast<double>(l1.associativity);
    const double cb =
        std::max(1.0, std::floor((ways1 - 1) / (1 + static_cast<double>(b.mr) / static_cast<double>(b.nr))));
    const double way_bytes = l1.capacity_bytes / ways1;
    const int64_t gran = std::max<int64_t>(b.k_granule, static_cast<int64_t>(64 / w));
    b.kc = round_down(static_cast<int64_t>(cb * way_bytes / (static_cast<double>(b.nr) * w)), gran);
    // MC from L2 (the A block), NC from L3 (the B panel); one level serves both when there is no L3.
    const CacheLevel& l2 = s.caches.size() > 1 ? s.caches[1] : l1;
    // The A block shares L2 with what the micro-kernels stream past it between two of its uses (one jr
    // iteration, gemm_traffic's (f)): the B micro-panel (KC x NR) and the C strip (MC x NR). All three
    // within W2 - 2 of the W2 ways (one more way of margin than the traffic model's test); MC sized for
    // the A block alone failed that test wherever NR / KC is large (AMX bf16: 32 / 320), and the model
    // then read all of A from L3 N / NR times, where the library's blocking keeps it in L2.
    const double w2 = static_cast<double>(l2.associativity);
    const double kc_bytes = static_cast<double>(b.kc) * w, nr_bytes = static_cast<double>(b.nr) * w;
    b.mc = round_down(
        static_cast<int64_t>(((w2 - 2) / w2 * l2.capacity_bytes - kc_bytes * static_cast<double>(b.nr)) /
                             (kc_bytes + nr_bytes)),
        b.mr);
    const CacheLevel& l3 = s.caches.back();
    const double w3 = static_cast<double>(l3.associativity);
    const double l3_bytes = s.caches.size() > 2 ? l3_share : l2.capacity_bytes;
    b.nc = round_down(static_cast<int64_t>((w3 - 2) / w3 * l3_bytes / (static_cast<double>(b.kc) * w)),
                      std::lcm(b.nr, std::max<int64_t>(1, static_cast<int64_t>(64 / w))));
    return b;
}

bool packs_b(const Blocking& b, const GemmTask& g) { return 2 * g.m > b.mr; }

int64_t gemv_chunk(const std::vector<CacheLevel>& levels, const GemmTask& g) {
    // A quarter of L1 for the C chunk (M rows), in whole 64-byte lines of elements.
    const int64_t per_line = std::max<int64_t>(1, static_cast<int64_t>(64 / g.elem_bytes));
    const auto cols = static_cast<int64_t>(levels.front().capacity_bytes / 4 /
                                           (static_cast<double>(std::max<int64_t>(1, g.m)) * g.elem_bytes));
    return std::min(std::max(per_line, cols / per_line * per_line), std::max<int64_t>(1, g.n));
}

std::vector<CacheLevel> trace_levels(const CpuSpec& s, double l3_capacity) {
    std::vector<CacheLevel> v = s.caches;
    if (v.size() > 2) v.back().capacity_bytes = l3_capacity;
    return v;
}

Traffic gemm_traffic(const CpuSpec& s, const Blocking& b, const GemmTask& g, double l3_capacity) {
    const std::vector<CacheLevel> levels = trace_levels(s, l3_capacity);
    Traffic t;
    t.resize(levels.size());
    const double w = g.elem_bytes;
    const int64_t M = g.m, N = g.n, K = g.k;
    if (M <= 0 || N <= 0 || K <= 0) return t;
    const int64_t kc = std::min(b.kc, K);
    const int64_t mc = std::min(b.mc, ceil_div(M, b.mr) * b.mr);
    const int64_t nc = std::min(b.nc, ceil_div(N, b.nr) * b.nr);
    const int64_t nJ = ceil_div(N, nc), nP = ceil_div(K, kc), nI = ceil_div(M, mc);
    const double cnt = static_cast<double>(g.count);
    const double Md = static_cast<double>(M), Nd = static_cast<double>(N), Kd = static_cast<double>(K);

    // With at most half a micro-panel of rows (M <= MR / 2) each B element is used about once: the
    // kernels run in matrix-vector form, reading B where it lies (packs_b in cpu_spec.h).
    const bool pack_b = packs_b(b, g);
    // Bytes of the working sets between two uses (see cpu_spec.h).
    const double bp = pack_b ? static_cast<double>(kc) * static_cast<double>(nc) * w : 0.0;  // packed B panel
    const double ap = static_cast<double>(mc) * static_cast<double>(kc) * w;                 // packed A block
    const double a_block = ap * g.a_scale;                                                   // its source
    const double a_panel = Md * static_cast<double>(kc) * w * g.a_scale;  // A source for one pc
    const double a_all = Md * Kd * w * g.a_scale;
    const double c_panel = Md * static_cast<double>(nc) * w;
    const double c_block = static_cast<double>(mc) * static_cast<double>(nc) * w;
    const double c_strip = static_cast<double>(mc) * static_cast<double>(b.nr) * w;
    const double b_micro = static_cast<double>(kc) * static_cast<double>(b.nr) * w;
    // 2nd-loop iterations over all jc blocks (the last block may be narrower).
    const int64_t jr_iters = (N / nc) * ceil_div(nc, b.nr) + ceil_div(N % nc, b.nr);

    // Register traffic with L1 (bytes): micro-kernel operand loads, C tile loads and stores, packing.
    const double tiles = static_cast<double>(ceil_div(M, b.mr)) * static_cast<double>(ceil_div(N, b.nr));
    t.l1_load_bytes = cnt * (tiles * Kd * static_cast<double>(b.mr + b.nr) * w +
                             tiles * static_cast<double>(nP) * static_cast<double>(b.mr * b.nr) * w +
                             a_all * static_cast<double>(nJ) + (pack_b ? Kd * Nd * w : 0.0));
    t.l1_store_bytes = cnt * (tiles * static_cast<double>(nP) * static_cast<double>(b.mr * b.nr) * w +
                              Md * Kd * w * static_cast<double>(nJ) + (pack_b ? Kd * Nd * w : 0.0));
    t.pack_bytes = cnt * (Md * Kd * w * static_cast<double>(nJ) + (pack_b ? Kd * Nd * w : 0.0));
    if (!pack_b) {
        // Matrix-vector form: every B element loaded once, A once per chunk, C chunks updated per k.
        const double chunks = std::ceil(Nd / static_cast<double>(gemv_chunk(levels, g)));
        t.l1_load_bytes = cnt * (Kd * Nd * w + Md * Kd * w * chunks + Md * Nd * w);
        t.l1_store_bytes = cnt * Md * Nd * w;
        t.pack_bytes = 0;
    }

    for (size_t li = 0; li < levels.size(); ++li) {
        const CacheLevel& L = levels[li];
        const auto line = L.line_bytes;
        const double ld = static_cast<double>(line);
        const double eff = L.capacity_bytes * (static_cast<double>(L.associativity) - 1) /
                           static_cast<double>(L.associativity);
        const auto fits = [&](double bytes) { return bytes <= eff; };
        double miss = 0, wb = 0;
        // (a) B source, read once by packing: kc rows of nc·w bytes per block; where one block spans the
        // rows (nc >= N) they lie one after another, and a line two rows share is read once.
        const double b_src =
            nc >= N ? std::ceil(Kd * Nd * w / ld)
                    : Kd * (Nd / static_cast<double>(nc)) *
                          seg_lines(static_cast<double>(nc) * w, static_cast<double>(nc) * w, line);
        if (!pack_b) {
            // Matrix-vector form (gemv_chunk): B streams row by row, read once; each chunk of C is
            // touched at every k, so LRU keeps it: its lines miss once; A (M x K) is read once per chunk
            // unless it stays.
            // One chunk spanning the rows streams B as one block (a line two short rows share is read
            // once: a 1024 x 10 int8 matrix is 160 lines, not 1,024 rows of a line or two each).
            const double chunk = static_cast<double>(gemv_chunk(levels, g));
            const double b_rows = chunk >= Nd ? std::ceil(Kd * Nd * w / ld)
                                              : Kd * (Nd / chunk) * seg_lines(chunk * w, chunk * w, line);
            const double a_lines = Md * Kd * w / ld;
            const double n_chunks = std::ceil(Nd / chunk);
            const double c_lines = Md * std::ceil(Nd * w / ld);
            miss = b_rows + (fits(Md * Kd * w + chunk * Md * w) ? a_lines : a_lines * n_chunks) + c_lines;
            t.misses[li] = cnt * miss;
            t.writebacks[li] = cnt * c_lines;
            continue;
        }
        miss += b_src;
        // (b) Bp written per (jc, pc); kept when one pc iteration's data fits.
        const double bp_lines = std::ceil(bp / ld);
        const double ws_pc = bp + a_panel + ap + c_panel;
        const double bp_writes = fits(ws_pc) ? bp_lines : bp_lines * static_cast<double>(nJ * nP);
        miss += bp_writes;
        wb += fits(ws_pc) ? 0 : bp_writes;
        // (c) Bp read by the micro-kernels once per ic.
        const double ws_b = bp + ap + a_block + c_block;
        if (!fits(ws_b)) miss += bp_lines * static_cast<double>(nJ * nP * nI);
        // (d) A source, read by packing once per jc.
        const double a_lines = Md * Kd * w * g.a_scale / ld;
        const double ws_jc = a_all + bp + c_panel + ap;
        miss += fits(ws_jc) ? a_lines : a_lines * static_cast<double>(nJ);
        // (e) Ap written per (jc, pc, ic); kept when one ic iteration's data fits.
        const double ap_lines = std::ceil(ap / ld);
        const double ws_ic = ap + bp + c_block + a_block;
        const double ap_writes = fits(ws_ic) ? ap_lines : ap_lines * static_cast<double>(nJ * nP * nI);
        miss += ap_writes;
        wb += fits(ws_ic) ? 0 : ap_writes;
        // (f) Ap read by the micro-kernels once per jr: all of A, N / NR times, unless the A block stays.
        const double ws_jr = ap + b_micro + c_strip;
        if (!fits(ws_jr)) miss += Md * Kd * w / ld * static_cast<double>(jr_iters);
        // (g) C: read and written once per pc pass, MR rows of NR·w bytes per tile.
        // Neighbouring tiles share the lines at their edges: when a C strip (MC rows of the tile's
        // lines) stays beside Ap and the B micro-panel, a pass touches each line of C once; otherwise
        // each tile's row segments miss on their own.
        const double tile_seg = seg_lines(static_cast<double>(b.nr) * w, static_cast<double>(b.nr) * w, line);
        const double c_lines = fits(ap + b_micro + static_cast<double>(mc) * tile_seg * ld)
                                   ? Md * std::ceil(Nd * w / ld)
                                   : Md * (Nd / static_cast<double>(b.nr)) * tile_seg;
        const double ws_c = c_panel + bp + ap + a_panel;
        const double c_miss = fits(ws_c) ? c_lines : c_lines * static_cast<double>(nP);
        miss += c_miss;
        wb += c_miss;
        t.misses[li] = cnt * miss;
        t.writebacks[li] = cnt * wb;
    }
    return t;
}

}  // namespace mlsim::arch::cpu
