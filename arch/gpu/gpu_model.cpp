#include "arch/gpu/gpu_model.h"

#include <fmt/format.h>

#include <algorithm>
#include <cmath>
#include <limits>

#include "arch/roofline/roofline.h"
#include "sim/config/error.h"
#include "sim/core/check.h"
#include "sim/core/simulator.h"
#include "workloads/model.h"

namespace mlsim::arch::gpu {

namespace {

// Per K step a block waits at one barrier for its stage's asynchronous copies (cp.async.wait_group and
// __syncthreads in the multistage main loop). About 20 clocks (est.: a barrier over 4-8 warps plus the
// wait's round trip through the scoreboard); hidden when another block on the SM has work.
constexpr double k_sync_cycles = 20;
// Softmax / norm rows up to this many elements stay in one block's registers and shared memory (one
// read); longer rows take a second read (est.: 16 K fp32 values = 64 KB, a third of A100's shared memory).
constexpr int64_t k_row_in_block = 16384;
// DRAM sector size: the unit an L2 miss fetches (NVIDIA CUDA C Best Practices Guide, "Coalesced Access to
// Global Memory": 32-byte segments).
constexpr double k_sector = 32;
constexpr double k_mufu_per_clock_per_sm = 16;  // special-function results (exp2f) a clock an SM
constexpr double k_sm_partitions = 4;           // processing blocks of an SM (Volta to Hopper)

double bytes_of(const std::string& dtype) {
    const auto t = wl::parse_dtype(dtype);
    MLSIM_CHECK(t.has_value(), "unknown data type " + dtype);
    return wl::dtype_bytes(*t);
}

int64_t cdiv(int64_t a, int64_t b) { return (a + b - 1) / b; }

// A thread-block tile as CUTLASS's SM80 tensor-op GEMMs configure them (cutlass/gemm/device/
// default_gemm_configuration.h and the profiler's kernel list): BM x BN with warps of 64x64 (or 32x64)
// accumulators, a K step of 32 fp16 elements (64 bytes; 128 bytes for 8-bit types), 3-6 stages.
struct Candidate {
    int64_t bm, bn, warps;
};
// Small-M tiles (BM 16 or 32: one m16 MMA row per warp) serve the skinny GEMMs of decode and small
// batches, as the libraries' small-M / GEMV-like kernels do.
constexpr Candidate k_tensor_tiles[] = {{256, 128, 8}, {128, 256, 8}, {128, 128, 4}, {256, 64, 4},
                                        {64, 256, 4},  {128, 64, 4},  {64, 128, 4},  {64, 64, 4},
                                        {32, 128, 4},  {16, 128, 4},  {16, 256, 4}};
// CUDA-core (SIMT) tiles, as CUTLASS's SIMT SGEMMs: 8-element K step, 2 stages; and the GEMV-like tiles
// of one or a few rows that the libraries use for matrix-vector products (M of 1 to 8).
constexpr Candidate k_simt_tiles[] = {{128, 128, 8}, {128, 64, 4}, {64, 128, 4}, {64, 64, 4},
                                      {32, 64, 2},   {8, 128, 4},  {1, 256, 4}};

// A FIFO resource (a channel's occupancy): acquire(at, amount) starts when both the request and the
// resource are ready and holds it amount / rate seconds; returns when it is released.
struct Resource {
    double rate = 1, free_at = 0, busy = 0;
    double acquire(double at, double amount) {
        const double start = std::max(at, free_at);
        const double hold = amount / rate;
        free_at = start + hold;
        busy += hold;
        return free_at;
    }
};

}  // namespace

int64_t GemmPlan::waves() const { return blocks_per_sm > 0 ? cdiv(blocks, blocks_per_sm) : 0; }

// ---- the GEMM wave model ------------------------------------------------------------------------------

namespace {

// The quantities of one plan that every wave shares.
struct Geometry {
    double a_tile = 0, b_tile = 0;             // bytes per block per K step (edge tiles' average fill)
    double t_mma = 0, t_smem = 0, t_sync = 0;  // seconds per block per K step on its SM
    // A block alone on its SM: its warps drive at most as many of the SM's four processing blocks (each a
    // warp scheduler, its CUDA cores and a tensor core: the Volta, Ampere and Hopper whitepapers) as it
    // has warps, so a block of w < 4 warps takes at least 4 / w times t_mma a step.
    double t_alone = 0;
    double c_block = 0;   // bytes a block writes (C tile or split-K partial)
    double epi_read = 0;  // bytes a block reads in its epilogue (a fused residual)
    double port_Bps = 0, l2_Bps = 0, dram_Bps = 0;
    double l2_lat = 0, dram_lat = 0;
    int64_t slots = 0, per_group = 0;
    bool fit = false;            // the operands stay in L2 across waves
    double a_dram_per_tile = 0;  // DRAM bytes of an A tile per K step (implicit-GEMM reuse applied)
};

Geometry geometry(const GemmPlan& p, const GpuSpec& g, const DeviceSpec& d) {
    Geometry x;
    const wl::GemmShape& s = p.shape;
    const double fill_m = static_cast<double>(s.m) / static_cast<double>(p.tiles_m * p.bm);
    const double fill_n = static_cast<double>(s.n) / static_cast<double>(p.tiles_n * p.bn);
    const double k_per_split = static_cast<double>(cdiv(s.k, p.split_k));
    const double fill_k = k_per_split / static_cast<double>(p.k_steps * p.bk);
    x.a_tile = static_cast<double>(p.bm * p.bk) * p.elem_bytes * fill_m * fill_k;
    x.b_tile = static_cast<double>(p.bk * p.bn) * p.elem_bytes * fill_n * fill_k;
    x.a_dram_per_tile = x.a_tile * p.a_conv_reuse;
    const double clock = d.clock_hz;
    const double sm_rate = p.tensor ? g.tensor_rate(p.dtype, clock) / static_cast<double>(g.sms)
                                    : g.cuda_core_rate(p.dtype) / static_cast<double>(g.sms);
    x.t_mma = 2.0 * static_cast<double>(p.bm * p.bn * p.bk) / sm_rate;
    x.t_alone = x.t_mma * k_sm_partitions / static_cast<double>(std::clamp<int64_t>(p.warps, 1, 4));
    // Shared memory per K step: the tiles written by the copies, and every warp reading its A and B
    // fragments (warp tile 64 x 64, or 32 x 64 for 8 warps on 128-wide tiles: BM·BN / warps elements).
    const double warp_elems = static_cast<double>(p.bm * p.bn) / static_cast<double>(p.warps);
    const double wm = std::sqrt(warp_elems), wn = warp_elems / wm;
    const double frag = static_cast<double>(p.warps) * (wm + wn) * static_cast<double>(p.bk) * p.elem_bytes;
    x.t_smem = (x.a_tile + x.b_tile + frag) / (g.shared_memory_bandwidth_per_clock * clock);
    x.t_sync = k_sync_cycles / clock;
    const double c_elems = static_cast<double>(p.bm * p.bn) * fill_m * fill_n;
    // With split-K only one block in `split_k` writes the final C tile (the others' partials stay in L2).
    x.c_block = c_elems * p.out_bytes / static_cast<double>(p.split_k);
    x.epi_read = c_elems * p.epilogue_read_bytes;
    x.port_Bps = g.l2_port_bytes_per_clock * clock;
    const MemoryLevel* l2 = d.find_memory("l2");
    x.l2_Bps = l2 ? l2->bandwidth_Bps : d.main_memory().bandwidth_Bps * 4;
    x.dram_Bps = d.main_memory().bandwidth_Bps * g.dram_efficiency;
    x.l2_lat = g.l2_latency_s;
    x.dram_lat = g.dram_latency_s;
    x.slots = g.sms * p.blocks_per_sm;
    x.per_group = p.tiles_m * p.tiles_n;
    const double a_group = static_cast<double>(s.m) * k_per_split * p.elem_bytes * p.a_conv_reuse;
    const double b_group = k_per_split * static_cast<double>(s.n) * p.elem_bytes;
    const double groups_in_wave =
        std::max(1.0, static_cast<double>(x.slots) / static_cast<double>(x.per_group));
    const double l2_cap = l2 ? l2->total_capacity_bytes() * g.l2_effective_fraction : 0;
    x.fit =
        (a_group + b_group) * std::min(groups_in_wave, static_cast<double>(s.batch * p.split_k)) <= l2_cap;
    return x;
}

struct Wave {
    int64_t blocks = 0, per_sm = 0;
    double time = 0, compute = 0;
    double l2_bytes = 0, dram_read = 0, dram_write = 0, smem = 0;
    double miss = 0;  // DRAM share of the wave's L2 loads
    double lat = 0;   // average load latency
    double step = 0;
    double stall_latency = 0, stall_l2 = 0, stall_dram = 0, stall_port = 0;
};

// Block order (rasterisation): CUTLASS's GemmIdentityThreadblockSwizzle<8> and cuBLAS walk the grid in
// stripes of 8 tile rows, column by column inside a stripe, so the blocks in flight cover a squarish
// region and share A rows and B columns. Batch (or split-K slice) outermost.
constexpr int64_t k_swizzle = 8;

// DRAM bytes of the A and B tiles the blocks [start, start + n) load per K step: their distinct tiles;
// when the operands fit the L2, only those no earlier block loaded. Counted per stripe of the blocks'
// order: a run of `count` consecutive blocks inside a stripe of height h covers min(h, count) rows, and
// its columns are an interval; a row is first loaded in its stripe's first column, a column in the
// group's first stripe.
double wave_dram_per_step(const GemmPlan& p, const Geometry& x, int64_t start, int64_t n) {
    const int64_t tn = p.tiles_n, stripe_blocks = k_swizzle * tn;
    const int64_t h0 = std::min(k_swizzle, p.tiles_m);
    double rows = 0, cols = 0;
    for (int64_t g = start / x.per_group; g <= (start + n - 1) / x.per_group; ++g) {
        const int64_t base = g * x.per_group;
        const int64_t ls = std::max(start, base) - base;  // first block of the range in the group
        const int64_t le = std::min(start + n, base + x.per_group) - base;  // one past its last
        int64_t col_lo = tn, col_hi = -1, col_lo2 = tn, col_hi2 = -1;       // up to two column intervals
        for (int64_t st = ls / stripe_blocks; st * stripe_blocks < le; ++st) {
            const int64_t sb = st * stripe_blocks;
            const int64_t h = std::min(k_swizzle, p.tiles_m - st * k_swizzle);
            const int64_t a = std::max(ls, sb) - sb,
                          b = std::min(le, sb + h * tn) - sb;  // [a, b) in the stripe
            if (b <= a) continue;
            if (x.fit) {
                rows += static_cast<double>(std::max<int64_t>(0, std::min(h, b) - a));  // first column only
            } else {
                rows += static_cast<double>(std::min(h, b - a));
                const int64_t c0 = a / h, c1 = (b - 1) / h;
                if (col_hi < 0) {
                    col_lo = c0;
                    col_hi = c1;
                } else {
                    col_lo2 = std::min(col_lo2, c0);
                    col_hi2 = std::max(col_hi2, c1);
                }
            }
        }
        if (x.fit) {
            // Columns first loaded in stripe 0, at positions c·h0: those in [ls, le).
            const int64_t hi = std::min(le, h0 * tn);
            if (hi > ls) cols += static_cast<double>((hi + h0 - 1) / h0 - (ls + h0 - 1) / h0);
        } else {
            double c = col_hi >= 0 ? static_cast<double>(col_hi - col_lo + 1) : 0;
            if (col_hi2 >= 0) {
                // Union of two intervals.
                const int64_t lo = std::max(col_lo, col_lo2), hi = std::min(col_hi, col_hi2);
                c += static_cast<double>(col_hi2 - col_lo2 + 1) -
                     static_cast<double>(std::max<int64_t>(0, hi - lo + 1));
            }
            cols += std::min(c, static_cast<double>(tn));
        }
    }
    return rows * x.a_dram_per_tile + cols * x.b_tile;
}

Wave wave_cost(const GemmPlan& p, const Geometry& x, const GpuSpec& g, int64_t w) {
    Wave v;
    const int64_t start = w * x.slots;
    v.blocks = std::min(x.slots, p.blocks - start);
    v.per_sm = cdiv(v.blocks, g.sms);
    const double n = static_cast<double>(v.blocks), b = static_cast<double>(v.per_sm);
    const double steps = static_cast<double>(p.k_steps);
    const double tile = x.a_tile + x.b_tile;
    const double dram_step = wave_dram_per_step(p, x, start, v.blocks);
    v.miss = std::min(1.0, dram_step / (n * tile));
    // A step waits for its slowest load. Where the wave first touches a K slice (it loads anything from
    // DRAM), that is a DRAM round trip for every block: the blocks sharing a tile issue their loads
    // together, and L2 merges their misses into one fill they all wait for. (A miss-weighted average made
    // a wave whose blocks share more of their tiles wait less: a GEMM with 32x the rows took 10 % less
    // time.)
    v.lat = dram_step > 0 ? x.dram_lat : x.l2_lat;
    const double t_blk = std::max(x.t_mma, x.t_smem);
    const double t_sm = std::max(b * t_blk, x.t_alone) + (v.per_sm == 1 ? x.t_sync : 0.0);
    const double t_l2 = n * tile / x.l2_Bps;
    const double t_port = b * tile / x.port_Bps;
    const double t_dram = dram_step / x.dram_Bps;
    const double xfer = std::max({tile / x.port_Bps, t_l2 / b, t_dram / b});
    double t_lat = 0;
    if (p.stages >= 2) {
        t_lat = (v.lat + xfer) / static_cast<double>(p.stages - 1);
        v.step = std::max({t_sm, t_l2, t_port, t_dram, t_lat});
    } else {
        v.step = t_sm + v.lat + std::max({t_l2, t_port, t_dram});
    }
    // Prologue: the first loads' latency; epilogue: C (or partials) out, a fused residual in.
    const double prologue = v.lat + xfer;
    const double epi_bytes = n * (x.c_block + x.epi_read);
    const double epilogue =
        std::max(epi_bytes / x.dram_Bps, b * (x.c_block + x.epi_read) / x.port_Bps) + x.l2_lat;
    v.time = prologue + steps * v.step + epilogue;
    v.compute = steps * b * t_blk;
    const double stall = v.time - v.compute;
    // The stall goes to the cause that set the step (latency also for the prologue and epilogue).
    const double binding = std::max({t_l2, t_port, t_dram, t_lat});
    double* cause = &v.stall_latency;
    if (binding == t_dram && t_dram > 0)
        cause = &v.stall_dram;
    else if (binding == t_l2)
        cause = &v.stall_l2;
    else if (binding == t_port)
        cause = &v.stall_port;
    *cause += std::max(0.0, stall - prologue - epilogue);
    v.stall_latency += prologue + epilogue;
    v.l2_bytes = n * steps * tile + epi_bytes;
    v.dram_read = steps * dram_step + n * x.epi_read;
    v.dram_write = n * x.c_block;
    const double warp_elems = static_cast<double>(p.bm * p.bn) / static_cast<double>(p.warps);
    const double wm = std::sqrt(warp_elems), wn = warp_elems / wm;
    v.smem = n * steps *
             (tile + static_cast<double>(p.warps) * (wm + wn) * static_cast<double>(p.bk) * p.elem_bytes);
    return v;
}

// Split-K is serial, inside the kernel (as cuBLAS and CUTLASS's "serial split-K" do for skinny GEMMs): the
// blocks of one output tile leave fp32 partials in a workspace that stays in L2, and the last one sums
// them: each partial is written and read once through L2, no second kernel.
double reduction_time(const GemmPlan& p, const GpuSpec& g, const DeviceSpec& d) {
    if (p.split_k <= 1) return 0;
    const double mn = static_cast<double>(p.shape.batch * p.shape.m * p.shape.n);
    const MemoryLevel* l2 = d.find_memory("l2");
    const double l2_Bps = l2 ? l2->bandwidth_Bps : d.main_memory().bandwidth_Bps;
    return mn * 4.0 * static_cast<double>(p.split_k) * 2 / l2_Bps + g.l2_latency_s;
}

}  // namespace

double GpuModel::closed_form(GemmPlan& p) const {
    const Geometry x = geometry(p, m_gpu, m_spec);
    const int64_t waves = cdiv(p.blocks, x.slots);
    double t = 0;
    // Waves after the second are alike but for the tail: time the first two and the last exactly, the
    // middle ones as the second (a search over candidates need not walk thousands of waves).
    for (int64_t w = 0; w < waves; ++w) {
        if (w >= 2 && w < waves - 1) {
            const double mid = wave_cost(p, x, m_gpu, 1).time;
            t += mid * static_cast<double>(waves - 3);
            w = waves - 2;
            continue;
        }
        t += wave_cost(p, x, m_gpu, w).time;
    }
    p.time_s = t + reduction_time(p, m_gpu, m_spec);
    return p.time_s;
}

GemmPlan GpuModel::plan_gemm(const wl::GemmShape& s, const std::string& dtype, double a_dram_ratio) const {
    const GpuSpec& g = m_gpu;
    GemmPlan base;
    base.a_conv_reuse = a_dram_ratio;
    base.shape = s;
    base.dtype = dtype;
    base.elem_bytes = bytes_of(dtype);
    base.out_bytes = base.elem_bytes;
    // Tensor-core alignment (NVIDIA Deep Learning Performance Guide, "Tensor Core Requirements"): the
    // contiguous dimensions K and N in multiples of 16 bytes (8 fp16, 16 int8, 4 tf32 elements).
    // FP64 (DMMA, mma.m8n8k4) takes any K and N: CUTLASS's SM80 double tensor-op GEMM is configured with
    // an alignment of one element (cutlass/gemm/device/default_gemm_configuration.h, Sm80 double).
    const int64_t align =
        base.elem_bytes >= 8 ? 1 : std::max<int64_t>(1, static_cast<int64_t>(16 / base.elem_bytes));
    base.aligned = s.k % align == 0 && s.n % align == 0;
    base.tensor = g.tensor_rate(dtype, m_spec.clock_hz) > 0 && base.aligned;
    // Outside the tensor cores an int8 / fp8 GEMM runs in 32-bit arithmetic words (DP4A packs 4).
    std::vector<Candidate> tiles;
    if (base.tensor)
        tiles.assign(std::begin(k_tensor_tiles), std::end(k_tensor_tiles));
    else
        tiles.assign(std::begin(k_simt_tiles), std::end(k_simt_tiles));
    // FP64 tensor op: a K step of 16 doubles (128 B), CUTLASS's SM80 double configuration (128 x 128 x 16).
    const int64_t bk_bytes = base.tensor ? (base.elem_bytes >= 8   ? 128
                                            : base.elem_bytes >= 2 ? 64
                                                                   : 128)
                                         : 32;
    const int64_t bk =
        std::max<int64_t>(1, static_cast<int64_t>(static_cast<double>(bk_bytes) / base.elem_bytes));
    std::vector<int64_t> stage_options;
    if (!g.async_copy)
        stage_options = {2};
    else if (base.tensor)
        stage_options = {3, 4, 5, 6};
    else
        stage_options = {2, 3, 4};
    if (g.tile.given()) {
        tiles = {Candidate{g.tile.bm, g.tile.bn,
                           std::max<int64_t>(1, std::min<int64_t>(8, g.tile.bm * g.tile.bn / 4096))}};
        stage_options = {g.tile.stages};
    }
    GemmPlan best;
    best.time_s = std::numeric_limits<double>::infinity();
    for (const Candidate& c : tiles) {
        for (int64_t stages : stage_options) {
            GemmPlan p = base;
            p.bm = c.bm;
            p.bn = c.bn;
            p.bk = g.tile.given() ? g.tile.bk : bk;
            p.stages = stages;
            p.warps = c.warps;
            p.tiles_m = cdiv(s.m, p.bm);
            p.tiles_n = cdiv(s.n, p.bn);
            // Occupancy: shared memory (S stages of A and B), registers (fp32 accumulators plus about
            // 40 per thread for addresses and fragments, est.), threads, and the block limit.
            const double smem = static_cast<double>(stages * (p.bm + p.bn) * p.bk) * p.elem_bytes;
            if (smem > g.shared_memory_per_block_bytes) continue;
            const int64_t threads = 32 * p.warps;
            // An FP64 accumulator takes two 32-bit registers.
            const int64_t acc_regs = std::max<int64_t>(1, static_cast<int64_t>(p.out_bytes / 4));
            const int64_t regs_per_thread = p.bm * p.bn / threads * acc_regs + 40;
            if (regs_per_thread > g.max_registers_per_thread) continue;
            const double regs = static_cast<double>(threads * regs_per_thread * 4);
            int64_t per_sm = std::min({static_cast<int64_t>(g.shared_memory_bytes / smem),
                                       static_cast<int64_t>(g.registers_bytes / regs),
                                       g.max_threads_per_sm / threads, g.max_blocks_per_sm});
            if (per_sm < 1) continue;
            p.blocks_per_sm = per_sm;
            p.occupancy =
                static_cast<double>(per_sm * p.warps * 32) / static_cast<double>(g.max_threads_per_sm);
            const int64_t tiles_total = s.batch * p.tiles_m * p.tiles_n;
            // Split-K when the grid leaves SMs idle and K is long: 1, 2, 4, ... up to filling the SMs.
            for (int64_t split = 1; split <= 16; split *= 2) {
                if (split > 1 && (tiles_total * split > 2 * g.sms * per_sm || s.k / split < 4 * p.bk)) break;
                if (g.tile.given() && split > 1) break;
                GemmPlan q = p;
                q.split_k = split;
                q.k_steps = cdiv(cdiv(s.k, split), q.bk);
                q.blocks = tiles_total * split;
                closed_form(q);
                // The fastest; among plans within 0.1 % of it, the one computing the least padding
                // (a memory-bound GEMV is as fast with a 128-row tile as with a 16-row one, but not as
                // frugal).
                const auto padded = [](const GemmPlan& x) {
                    return static_cast<double>(x.blocks) *
                           static_cast<double>(x.bm * x.bn * x.bk * x.k_steps);
                };
                if (q.time_s < best.time_s * (1 - 1e-3) ||
                    (q.time_s <= best.time_s * (1 + 1e-3) && padded(q) < padded(best)))
                    best = q;
            }
        }
    }
    if (!std::isfinite(best.time_s) && g.tile.given())  // the file's tile: located there
        cfg::fail(
            g.tile.loc, g.tile.key,
            fmt::format("device '{}': this tile ({} x {} x {}, {} stages) does not fit its SMs: a thread "
                        "block needs more than gpu.shared_memory_per_block ({:.0f} B), gpu.registers_per_sm "
                        "({:.0f} B), gpu.max_registers_per_thread ({}) or gpu.max_threads_per_sm ({}) allow "
                        "for {} operands; use a smaller one, or leave it out to have it searched",
                        m_spec.name, g.tile.bm, g.tile.bn, g.tile.bk, g.tile.stages,
                        g.shared_memory_per_block_bytes, g.registers_bytes, g.max_registers_per_thread,
                        g.max_threads_per_sm, dtype));
    if (!std::isfinite(best.time_s))
        cfg::fail(
            g.loc, g.key_path,
            fmt::format("device '{}': no GEMM tile fits its SMs: every thread block of {} warps or more "
                        "needs more than "
                        "gpu.shared_memory_per_block ({:.0f} B), gpu.registers_per_sm ({:.0f} B), "
                        "gpu.max_registers_per_thread "
                        "({}) or gpu.max_threads_per_sm ({}) allow{}",
                        m_spec.name,
                        tiles.empty() ? 0
                                      : std::min_element(tiles.begin(), tiles.end(),
                                                         [](const Candidate& a, const Candidate& b) {
                                                             return a.warps < b.warps;
                                                         })
                                            ->warps,
                        g.shared_memory_per_block_bytes, g.registers_bytes, g.max_registers_per_thread,
                        g.max_threads_per_sm, g.tile.given() ? "; the fixed `gpu.tile` is too large" : ""));
    return best;
}

// ---- simulating a GEMM kernel in the event engine ------------------------------------------------------

namespace {

// Wave fidelity: one event per wave; the wave's DRAM and L2 transfers go through the shared channels.
GemmRun run_waves(const GemmPlan& p, const GpuSpec& g, const DeviceSpec& d) {
    const Geometry x = geometry(p, g, d);
    GemmRun r;
    r.waves = cdiv(p.blocks, x.slots);
    Simulator sim;
    struct State {
        const GemmPlan* p;
        const Geometry* x;
        const GpuSpec* g;
        GemmRun* r;
        Simulator* sim;
        Resource dram, l2;
        int64_t wave = 0;
        double end = 0;
        void on_wave() {
            const double now = sim->now().to_seconds();
            // Beyond 4096 waves (a GEMM far larger than any layer of the zoo) the identical middle waves
            // run as one event of their summed time and traffic, so a run stays bounded.
            double times = 1;
            int64_t w = wave;
            if (r->waves > 4096 && wave >= 2 && wave < r->waves - 1) {
                times = static_cast<double>(r->waves - 3);
                w = 1;
                wave = r->waves - 2;
            }
            const Wave v = wave_cost(*p, *x, *g, w);
            // The wave holds the channels for its traffic; it ends when its closed form and its transfers
            // are done.
            const double t_dram = dram.acquire(now, times * (v.dram_read + v.dram_write));
            const double t_l2 = l2.acquire(now, times * v.l2_bytes);
            const double done = std::max({now + times * v.time, t_dram, t_l2});
            r->compute_s += times * v.compute;
            r->l2_bytes += times * v.l2_bytes;
            r->dram_read += times * v.dram_read;
            r->dram_write += times * v.dram_write;
            r->smem_bytes += times * v.smem;
            r->stall_latency_s += times * v.stall_latency;
            r->stall_l2_s += times * v.stall_l2;
            r->stall_dram_s += times * v.stall_dram;
            r->stall_port_s += times * v.stall_port + (done - now - times * v.time);
            end = done;
            if (++wave < r->waves)
                sim->schedule_at(Tick::from_seconds(done), callback<&State::on_wave>(this));
        }
    } st{&p, &x, &g, &r, &sim, Resource{x.dram_Bps}, Resource{x.l2_Bps}};
    sim.schedule_at(Tick::zero(), callback<&State::on_wave>(&st));
    sim.run();
    r.events = sim.events_run();
    r.time_s = st.end + reduction_time(p, g, d);
    return r;
}

// Block fidelity: every block's every K step as events.
class BlockSim {
  public:
    BlockSim(const GemmPlan& p, const GpuSpec& g, const DeviceSpec& d)
        : m_p(p), m_g(g), m_x(geometry(p, g, d)) {
        m_dram.rate = m_x.dram_Bps;
        m_l2.rate = m_x.l2_Bps;
        m_port.assign(static_cast<size_t>(g.sms), Resource{m_x.port_Bps});
        m_sm_free.assign(static_cast<size_t>(g.sms), 0.0);
        const int64_t waves = cdiv(p.blocks, m_x.slots);
        for (int64_t w = 0; w < waves; ++w) {
            const Wave v = wave_cost(p, m_x, g, w);
            m_miss.push_back(v.miss);
            m_lat.push_back(v.lat);
        }
        m_blocks.resize(static_cast<size_t>(p.blocks));
    }

    GemmRun run(const DeviceSpec& d) {
        const int64_t first = std::min(m_x.slots, m_p.blocks);
        for (int64_t i = 0; i < first; ++i) start_block(i, i % m_g.sms);
        m_next = first;
        m_sim.run();
        GemmRun r;
        r.waves = cdiv(m_p.blocks, m_x.slots);
        r.time_s = m_end + reduction_time(m_p, m_g, d);
        r.compute_s = m_compute / static_cast<double>(m_g.sms);  // the average SM's busy time
        r.l2_bytes = m_l2_bytes;
        r.dram_read = m_dram_read;
        r.dram_write = m_dram_write;
        r.smem_bytes = m_smem;
        r.events = m_sim.events_run();
        // Stalls by cause in this fidelity: the SMs' idle time beside their busy time, split by which
        // shared channel was the busier.
        const double idle =
            std::max(0.0, m_end * static_cast<double>(m_g.sms) - m_compute) / static_cast<double>(m_g.sms);
        (m_dram.busy >= m_l2.busy ? r.stall_dram_s : r.stall_l2_s) = idle;
        return r;
    }

  private:
    struct Block {
        int64_t sm = 0, k = 0, wave = 0;
        double ready[8] = {};
    };
    double now() const { return m_sim.now().to_seconds(); }
    Tick at(double s) const { return Tick::from_seconds(std::max(s, now())); }

    void start_block(int64_t i, int64_t sm) {
        Block& b = m_blocks[static_cast<size_t>(i)];
        b.sm = sm;
        b.wave = i / m_x.slots;
        const int64_t ahead = m_p.stages >= 2 ? std::min(m_p.stages - 1, m_p.k_steps) : 1;
        for (int64_t j = 0; j < ahead; ++j) load(b, j);
        m_sim.schedule_at(at(b.ready[0]), callback<&BlockSim::on_ready>(this, static_cast<uint64_t>(i)));
    }
    void load(Block& b, int64_t j) {
        const double t = now();
        const double tile = m_x.a_tile + m_x.b_tile;
        const double miss = tile * m_miss[static_cast<size_t>(b.wave)];
        const double l2_done =
            std::max(m_l2.acquire(t, tile), m_port[static_cast<size_t>(b.sm)].acquire(t, tile));
        const double dram_done = miss > 0 ? m_dram.acquire(t, miss) : t;
        b.ready[j % m_p.stages] = std::max(l2_done, dram_done) + m_lat[static_cast<size_t>(b.wave)];
        m_l2_bytes += tile;
        m_dram_read += miss;
    }
    void on_ready(uint64_t i) {
        Block& b = m_blocks[i];
        double& free = m_sm_free[static_cast<size_t>(b.sm)];
        const double start = std::max(now(), free);
        const double service = std::max(m_x.t_mma, m_x.t_smem);
        free = start + service;
        m_compute += service;
        const double warp_elems = static_cast<double>(m_p.bm * m_p.bn) / static_cast<double>(m_p.warps);
        const double wm = std::sqrt(warp_elems), wn = warp_elems / wm;
        m_smem += m_x.a_tile + m_x.b_tile +
                  static_cast<double>(m_p.warps) * (wm + wn) * static_cast<double>(m_p.bk) * m_p.elem_bytes;
        if (start > now())
            m_sim.schedule_at(at(start), callback<&BlockSim::on_start>(this, i));
        else
            on_start(i);
    }
    void on_start(uint64_t i) {
        Block& b = m_blocks[i];
        if (m_p.stages >= 2 && b.k + m_p.stages - 1 < m_p.k_steps) load(b, b.k + m_p.stages - 1);
        const double service = std::max({m_x.t_mma, m_x.t_smem, m_x.t_alone});
        m_sim.schedule_at(at(now() + service + m_x.t_sync), callback<&BlockSim::on_end>(this, i));
    }
    void on_end(uint64_t i) {
        Block& b = m_blocks[i];
        ++b.k;
        if (b.k < m_p.k_steps) {
            if (m_p.stages < 2) load(b, b.k);
            m_sim.schedule_at(at(b.ready[b.k % m_p.stages]), callback<&BlockSim::on_ready>(this, i));
            return;
        }
        // Epilogue: the C tile (or partial) out, a fused residual in.
        const double t = now();
        const double bytes = m_x.c_block + m_x.epi_read;
        const double done =
            std::max(m_dram.acquire(t, bytes), m_port[static_cast<size_t>(b.sm)].acquire(t, bytes)) +
            m_x.l2_lat;
        m_dram_read += m_x.epi_read;
        m_dram_write += m_x.c_block;
        m_l2_bytes += bytes;
        m_sim.schedule_at(at(done), callback<&BlockSim::on_done>(this, i));
    }
    void on_done(uint64_t i) {
        m_end = std::max(m_end, now());
        if (m_next < m_p.blocks) start_block(m_next++, m_blocks[i].sm);
    }

    const GemmPlan& m_p;
    const GpuSpec& m_g;
    Geometry m_x;
    Simulator m_sim;
    Resource m_dram, m_l2;
    std::vector<Resource> m_port;
    std::vector<double> m_sm_free, m_miss, m_lat;
    std::vector<Block> m_blocks;
    int64_t m_next = 0;
    double m_end = 0, m_compute = 0, m_l2_bytes = 0, m_dram_read = 0, m_dram_write = 0, m_smem = 0;
};

}  // namespace

GemmRun GpuModel::simulate_gemm(const GemmPlan& plan, Fidelity fidelity) const {
    MLSIM_CHECK(plan.stages <= 8, "a GEMM plan with more than 8 stages");
    GemmRun r;
    if (fidelity == Fidelity::block) {
        // Every block's every K step is an event: beyond 10^8 of them a run would take minutes and
        // gigabytes; the wave fidelity times such a GEMM.
        const double steps = static_cast<double>(plan.blocks) * static_cast<double>(plan.k_steps);
        if (steps > 1e8) {
            const cfg::Node* gpu = m_spec.resolved.find("gpu");
            const cfg::Node* fid = gpu ? gpu->find("fidelity") : nullptr;
            cfg::fail(fid ? fid->loc() : cfg::SourceLoc{}, "device.gpu.fidelity",
                      fmt::format("block fidelity would simulate {:.3g} block K steps of a {}x{}x{} GEMM (at "
                                  "most 1e8); use the wave fidelity for it",
                                  steps, plan.shape.m, plan.shape.k, plan.shape.n));
        }
        BlockSim sim(plan, m_gpu, m_spec);
        r = sim.run(m_spec);
        m_work.blocks += static_cast<uint64_t>(plan.blocks);
    } else {
        r = run_waves(plan, m_gpu, m_spec);
    }
    m_work.events += r.events;
    return r;
}

// ---- layers --------------------------------------------------------------------------------------------

struct GpuModel::Fused {
    bool in_epilogue = false;  // runs in a GEMM's epilogue (no kernel of its own)
    std::string into;          // the GEMM layer it is fused into
    double input_on_chip = 0;  // bytes of its input coming from the epilogue's registers
    bool write_output = true;  // false: a later fused op (or the epilogue's final store) writes it
};

namespace {

// Register-file bytes a MAC on the CUDA cores moves: an FMA-class instruction reads three 32-bit registers
// and writes one (16 B, est.: no operand-reuse cache), and HFMA2 (fp16, bf16) packs two MACs into one such
// instruction and DP4A (int8, int4) four: 8 and 4 B a MAC, whatever rate a generation issues them at
// (gpu.cuda_core_fp16_ratio sets how many issue a clock, not what each moves). (FP64 keeps 16 B, est.,
// although a DFMA's operands are register pairs.) Counting 16 B a packed MAC made an fp16 GEMM on the CUDA
// cores twice as power-hungry as an FP32 one at the same instruction rate: on H200 such a GEMM (K or N not
// a multiple of 8) ran power-capped at 2.5x the measured time (analysis/reproduce/gpu_kernels_h200.py).
double cuda_core_rf_bytes_per_mac(const std::string& dtype) {
    if (dtype == "fp16" || dtype == "bf16") return 8.0;
    if (dtype == "int8" || dtype == "int4") return 4.0;
    return 16.0;
}

struct Acc {
    int64_t kernels = 0, blocks = 0, waves = 0;
    double compute = 0, memory = 0, overhead = 0;
    double l2 = 0, dram_read = 0, dram_write = 0, smem = 0;
    double stall_latency = 0, stall_l2 = 0, stall_dram = 0, stall_port = 0;
    double rf_bytes = 0, mac_energy = 0;
    const GemmPlan* plan = nullptr;  // the largest GEMM kernel, for the tile metrics
    GemmPlan keep;
    bool tensor = false, aligned = true;
};

bool is_depthwise_like(const wl::Op& op) {
    const auto* c = op.get<wl::ConvAttr>();
    return c && c->groups > 1 && c->out_channels / c->groups < 8;
}

bool gemm_op(const wl::Op& op) {
    if (op.get<wl::AttentionAttr>() || op.get<wl::EmbeddingAttr>() || is_depthwise_like(op)) return false;
    return !op.gemms().empty();
}

bool epilogue_op(const wl::Op& op) {
    if (op.phase != wl::Phase::forward) return false;
    if (op.get<wl::EltwiseAttr>()) return true;
    const auto* n = op.get<wl::NormAttr>();
    return n && n->type == wl::NormType::batch;
}

}  // namespace

GpuModel::GpuModel(DeviceSpec spec) : m_spec(std::move(spec)) {
    const GpuSpec* g = spec_of(m_spec);
    MLSIM_CHECK(g != nullptr, "the GPU model needs a device with a `gpu:` section");
    m_gpu = *g;
}

LayerResult GpuModel::run_op(const wl::Op& op) { return layer(op, Fused{}); }

std::vector<LayerResult> GpuModel::run(const wl::Model& model) {
    const std::vector<wl::Op>& ops = model.ops();
    bool training = false;
    for (const wl::Op& op : ops) training = training || op.phase != wl::Phase::forward;
    // Epilogue fusion: an element-wise op or batch-norm whose input comes from a GEMM (or from an op
    // already fused into one) that has no other consumer.
    std::vector<Fused> fused(ops.size());
    std::vector<int64_t> head(ops.size(), -1);
    if (m_gpu.fusion == Fusion::epilogue) {
        for (size_t i = 0; i < ops.size(); ++i) {
            if (!epilogue_op(ops[i])) continue;
            for (const wl::Edge& e : model.in_edges(i)) {
                const size_t p = e.from;
                const bool from_gemm = gemm_op(ops[p]) && ops[p].phase == wl::Phase::forward;
                if (!(from_gemm || head[p] >= 0) || model.out_edges(p).size() != 1) continue;
                head[i] = head[p] >= 0 ? head[p] : static_cast<int64_t>(p);
                fused[i].in_epilogue = true;
                fused[i].into = ops[static_cast<size_t>(head[i])].name;
                // Counted as the fused op reads it, in its own data type: an epilogue converts the GEMM's
                // result in registers (an fp16 ReLU after an fp32 GEMM reads 2 bytes an element, not 4),
                // and never more than the op's inputs.
                fused[i].input_on_chip =
                    std::min(static_cast<double>(wl::numel(ops[p].output())) * wl::dtype_bytes(ops[i].dtype),
                             ops[i].counts().input_bytes);
                break;
            }
        }
        // The GEMM writes the chain's result in its epilogue; a fused op writes only in training
        // (backward reads the intermediate results) - otherwise its output is the epilogue's store.
        for (size_t i = 0; i < ops.size(); ++i)
            if (fused[i].in_epilogue) fused[i].write_output = training;
    }
    std::vector<LayerResult> out;
    out.reserve(ops.size());
    double t = 0;
    for (size_t i = 0; i < ops.size(); ++i) {
        LayerResult r = layer(ops[i], fused[i]);
        r.idx = static_cast<int64_t>(i);
        r.start_s = t;
        r.end_s = t + r.time_s;
        t = r.end_s;
        out.push_back(std::move(r));
    }
    return out;
}

LayerResult GpuModel::layer(const wl::Op& op, const Fused& f) {
    std::string key = fmt::format("{}|{}|{}|{}|{}|{}", op.kind, wl::dtype_name(op.dtype),
                                  static_cast<int>(op.phase), f.in_epilogue, f.input_on_chip, f.write_output);
    for (const wl::Shape& s : op.inputs) key += wl::shape_str(s);
    key += "->";
    for (const wl::Shape& s : op.outputs) key += wl::shape_str(s);
    const wl::OpCounts c = op.counts();
    key += fmt::format("|{}|{}|{}|{}|{}|{}", c.macs, c.flops, c.weight_bytes, c.input_bytes, c.output_bytes,
                       c.params);
    if (auto it = m_memo.find(key); it != m_memo.end()) {
        ++m_work.cache_hits;
        LayerResult r = it->second;
        r.name = op.name;
        r.counts = c;  // the op's own counts (parameters and all), whatever the memoized op had
        for (Metric& m : r.metrics)
            if (m.name == "fused_into") m.text = f.into;
        return r;
    }
    ++m_work.layers_simulated;

    const GpuSpec& g = m_gpu;
    const DeviceSpec& d = m_spec;
    const std::string dtype(wl::dtype_name(op.dtype));
    const double e = wl::dtype_bytes(op.dtype);
    const double dram_Bps = d.main_memory().bandwidth_Bps * g.dram_efficiency;
    const double cuda_rate = g.cuda_core_rate(dtype);
    Acc a;

    // A streaming kernel: DRAM bytes in and out, CUDA-core arithmetic, one DRAM round trip of latency.
    const auto stream = [&](double read, double write, double flops) {
        const double comp = flops / cuda_rate;
        const double mem = (read + write) / dram_Bps + g.dram_latency_s;
        a.kernels += 1;
        // The busier of the two takes the kernel's time (overlap goes to the pacing side).
        (mem >= comp ? a.memory : a.compute) += std::max(comp, mem);
        a.overhead += g.launch_s();
        a.dram_read += read;
        a.dram_write += write;
        a.l2 += read + write;
        a.mac_energy += flops / 2 * d.mac_energy_for(dtype);
        a.rf_bytes += flops * 3 * e;  // (est.) two operands read and one result written per op
        if (mem > comp) a.stall_dram += mem - comp;
    };
    const auto gemm_kernel = [&](const wl::GemmShape& s, double a_reuse, double epi_read_per_elem) {
        GemmPlan p = plan_gemm(s, dtype, a_reuse);
        if (epi_read_per_elem > 0) {
            p.epilogue_read_bytes = epi_read_per_elem;
            closed_form(p);
        }
        const GemmRun run = simulate_gemm(p, g.fidelity);
        a.kernels += 1;
        a.blocks += p.blocks;
        a.waves += run.waves;
        const double red = reduction_time(p, g, d);
        const double kernel = run.time_s - red;
        // A kernel paced by DRAM (its transfers busier than its SMs) is memory time even where it
        // computed; otherwise compute is the SMs' busy time and the rest is waiting on memory.
        const double dram_busy = (run.dram_read + run.dram_write) / dram_Bps;
        // (The latency of the first loads and of the last stores is waiting on memory either way.)
        const double memory = dram_busy > run.compute_s
                                  ? std::max(dram_busy + run.stall_latency_s, kernel - run.compute_s)
                                  : kernel - run.compute_s;
        a.compute += std::max(0.0, kernel - memory);
        a.memory += std::min(kernel, memory) + red;
        a.overhead += g.launch_s();
        a.l2 += run.l2_bytes;
        a.dram_read += run.dram_read;
        a.dram_write += run.dram_write;
        a.smem += run.smem_bytes;
        a.stall_latency += run.stall_latency_s;
        a.stall_l2 += run.stall_l2_s;
        a.stall_dram += run.stall_dram_s;
        a.stall_port += run.stall_port_s;
        if (p.split_k > 1)
            a.l2 += static_cast<double>(s.batch * s.m * s.n) * 8 * static_cast<double>(p.split_k);
        a.mac_energy += s.macs() * d.mac_energy_for(dtype);
        a.rf_bytes += s.macs() * (p.tensor ? 0.4375 * e : cuda_core_rf_bytes_per_mac(dtype));
        a.tensor = a.tensor || p.tensor;
        a.aligned = a.aligned && p.aligned;
        if (!a.plan || s.macs() >= a.keep.shape.macs()) {
            a.keep = p;
            a.plan = &a.keep;
        }
        return run;
    };

    const auto* conv = op.get<wl::ConvAttr>();
    const auto* att = op.get<wl::AttentionAttr>();
    const auto* emb = op.get<wl::EmbeddingAttr>();
    const auto* norm = op.get<wl::NormAttr>();
    const bool view = op.kind == "reshape" || op.kind == "flatten";
    double extra_flops = c.flops - 2 * c.macs;  // bias, activations, softmax beyond the MACs

    if (view) {
        // A view: no kernel, nothing moved.
    } else if (f.in_epilogue) {
        // In a GEMM's epilogue: arithmetic on the CUDA cores, a residual's other input read, the output
        // written only when backward needs it (or when it ends the chain: the GEMM's epilogue store is
        // then this layer's write).
        const double other_in = std::max(0.0, c.input_bytes - f.input_on_chip) + c.weight_bytes;
        const double write = f.write_output ? c.output_bytes : 0.0;
        const double comp = c.flops / cuda_rate;
        const double mem = (other_in + write) / dram_Bps;
        (mem >= comp ? a.memory : a.compute) += std::max(comp, mem);
        a.dram_read += other_in;
        a.dram_write += write;
        a.l2 += other_in + write;
        a.mac_energy += c.flops / 2 * d.mac_energy_for(dtype);
        a.rf_bytes += c.flops * 3 * e;  // as a streaming kernel's arithmetic
        extra_flops = 0;
    } else if (att) {
        const std::vector<wl::GemmShape> gs = op.gemms();
        const double scores = wl::attention_scores(op);
        // Every score of the full S x S (the masked ones too): Q·K^T's output.
        const wl::GemmShape& qk = gs.front();
        const double full =
            static_cast<double>(qk.batch) * static_cast<double>(qk.m) * static_cast<double>(qk.n);
        if (g.fused_attention && gs.size() == 2) {
            // One kernel: the products' MACs at the GEMM tiles' efficiency (their compute time alone), the
            // softmax on the CUDA cores, DRAM traffic Q, K, V (the cache for decode) and O only.
            // Each product's blocks on the SMs: K steps x the step's MMA (or shared-memory) time x the
            // blocks each SM runs one after another. The tile metrics are those of Q·K^T.
            // A causal kernel that skips the masked blocks (skip_masked: FlashAttention-2's causal path)
            // runs the products over the scores it computes, the fraction f of the full S x S. Its thread
            // blocks each take a query tile (128 rows) and run it over the key tiles it sees; the last
            // tile of a sequence sees them all, so where there are fewer query tiles than SMs the kernel
            // takes as long as unmasked, and with n tiles over the SMs it saves at most 1 - SMs / n.
            const double q_tiles = static_cast<double>(qk.batch) * std::ceil(static_cast<double>(qk.m) / 128);
            const double computed =
                full > 0 && q_tiles > 0
                    ? std::min(1.0, std::max(scores / full, static_cast<double>(g.sms) / q_tiles))
                    : 1.0;
            double mac_time = 0;
            for (const wl::GemmShape& s : gs) {
                const GemmPlan p = plan_gemm(s, dtype);
                const Geometry x = geometry(p, g, d);
                mac_time += static_cast<double>(p.k_steps) * std::max(x.t_mma, x.t_smem) *
                            static_cast<double>(cdiv(p.blocks, g.sms)) * computed;
                a.tensor = a.tensor || p.tensor;
                a.blocks += p.blocks;
                if (!a.plan) {
                    a.keep = p;
                    a.plan = &a.keep;
                }
            }
            // The softmax in FP32 on the CUDA cores (scale, max, subtract, sum, rescale: 5 FLOPs a score)
            // and each score's exponential on the special-function units: 16 results per clock per SM
            // (CUDA C Programming Guide, arithmetic instruction throughput: exp2f, compute capability
            // 7.x to 9.0), not overlapped with the products in FlashAttention-2's loop (FlashAttention-3,
            // Shah et al. 2024, section 3: H100's 3.9 TFLOP/s of exponentials against 989 of matmul;
            // FlashAttention-3's warp-group ping-pong overlaps them on Hopper, which is not modelled).
            const double mufu_rate = k_mufu_per_clock_per_sm * static_cast<double>(g.sms) * d.clock_hz;
            // (FP64 attention: the softmax in FP64, its exponential a polynomial on the FP64 lanes: the
            // op's 6 FLOPs a score there.)
            const bool f64 = dtype == "fp64";
            // Over the scores on the critical path, as the products (the fraction `computed` of all).
            const double timed_scores = full > 0 ? full * computed : scores;
            const double softmax =
                timed_scores * (f64 ? 6 / cuda_rate : 5 / g.cuda_core_rate("fp32") + 1 / mufu_rate);
            const double comp = mac_time + softmax;
            const double read = c.input_bytes + c.weight_bytes, write = c.output_bytes;
            const double mem = (read + write) / dram_Bps + g.dram_latency_s;
            a.kernels = 1;
            (mem >= comp ? a.memory : a.compute) += std::max(comp, mem);
            a.stall_dram += std::max(0.0, mem - comp);
            a.overhead += g.launch_s();
            a.dram_read += read;
            a.dram_write += write;
            a.l2 += read + write;
            a.mac_energy += c.macs * d.mac_energy_for(dtype) + scores * 3 * d.mac_energy_for(dtype);
            a.rf_bytes +=
                c.macs * (a.tensor ? 0.4375 * e : cuda_core_rf_bytes_per_mac(dtype)) + scores * 6 * 3 * e;
        } else {
            // Unfused: S = Q·K^T written to DRAM, softmax over it, P·V reading it back; every score, the
            // masked ones too (separate kernels skip nothing).
            for (size_t j = 0; j < gs.size(); ++j) {
                gemm_kernel(gs[j], 1, 0);
                if (j == 0) stream(full * e, full * e, full * 6);
            }
        }
        extra_flops = 0;
    } else if (emb) {
        // Gathers: each looked-up row in 32-byte sectors, the int64 ids, the output once.
        const double lookups = static_cast<double>(wl::numel(op.inputs.at(0)));
        const double row = std::ceil(static_cast<double>(emb->dim) * e / k_sector) * k_sector;
        stream(lookups * row + lookups * 8, c.output_bytes, c.flops);
        extra_flops = 0;
    } else if (gemm_op(op)) {
        // GEMM kernels; a convolution as an implicit GEMM whose A tiles gather the input.
        const std::vector<wl::GemmShape> gs = op.gemms();
        double a_reuse = 1;
        if (conv && gs.size() == 1) {
            const double a_bytes = gs[0].macs() / static_cast<double>(gs[0].n) * e;
            // DRAM bytes of the input per byte of A tiles loaded: below 1 where filter taps overlap (the L2
            // serves the repeats), above 1 for a strided 1x1 convolution, which still reads whole sectors
            // of its input (counted whole, as the roofline's compulsory traffic does).
            a_reuse = c.input_bytes / a_bytes;
        }
        for (const wl::GemmShape& s : gs) gemm_kernel(s, a_reuse, 0);
        // The op's compulsory DRAM traffic, which its GEMMs may not cover: the backward of a convolution
        // whose stride exceeds its filter (a ResNet shortcut's 1x1, stride 2) is lowered to GEMMs over the
        // sampled positions only, yet its input gradient is written whole (zeros where no filter tap
        // lands) and its weight gradient's input counted whole, as the forward's A tiles are above and as
        // the roofline's compulsory traffic counts them. What the GEMMs left out streams on DRAM after
        // them: their time already covers their own bytes, so the layer stays at or above the roofline
        // over all of them.
        const double short_read = std::max(0.0, c.input_bytes + c.weight_bytes - a.dram_read);
        const double short_write = std::max(0.0, c.output_bytes - a.dram_write);
        if (short_read + short_write > 0) {
            const double t = (short_read + short_write) / dram_Bps;
            a.memory += t;
            a.stall_dram += t;
            a.dram_read += short_read;
            a.dram_write += short_write;
            a.l2 += short_read + short_write;
        }
        if (op.get<wl::RnnAttr>() && extra_flops > 0) {
            stream(c.output_bytes, c.output_bytes, extra_flops);
            extra_flops = 0;
        }
    } else {
        // Streaming kernels: element-wise, norms (passes as stated in the header), softmax, pooling,
        // concat, slice, direct (depthwise) convolution, lowered ops without GEMMs.
        double reads = 1;
        const int64_t row = op.inputs.empty() || op.inputs[0].empty() ? 0 : op.inputs[0].back();
        if (op.kind == "softmax" || (norm && norm->type != wl::NormType::batch))
            reads = row <= k_row_in_block ? 1 : 2;
        if (norm && norm->type == wl::NormType::batch && op.phase != wl::Phase::forward) reads = 2;
        stream(c.input_bytes * reads + c.weight_bytes, c.output_bytes, c.flops);
        extra_flops = 0;
    }
    if (extra_flops > 0) {
        // Bias (and other per-element arithmetic of a GEMM op) in the epilogue, on the CUDA cores.
        a.compute += extra_flops / cuda_rate;
        a.mac_energy += extra_flops / 2 * d.mac_energy_for(dtype);
    }

    LayerResult r;
    r.name = op.name;
    r.op = op.kind;
    r.phase = std::string(wl::phase_name(op.phase));
    r.dtype = dtype;
    r.counts = c;
    r.bytes_read = a.dram_read;
    r.bytes_written = a.dram_write;
    // Energy: arithmetic, operand delivery, memory levels, static power.
    const MemoryLevel* l1 = &d.memory.front();
    const MemoryLevel* l2 = d.find_memory("l2");
    const MemoryLevel& dram = d.main_memory();
    const double e_rf = a.rf_bytes * g.register_file_energy_J_per_byte;
    const double e_smem = a.smem * l1->read_energy_J_per_byte;
    const double e_l2 = l2 ? a.l2 * l2->read_energy_J_per_byte : 0;
    const double e_dram =
        a.dram_read * dram.read_energy_J_per_byte + a.dram_write * dram.write_energy_J_per_byte;
    r.energy_compute_j = a.mac_energy + e_rf;
    r.energy_memory_j = e_smem + e_l2 + e_dram;
    TimeParts parts{a.compute, a.memory, a.overhead, 0};
    // The power limit: a layer that would draw more than the TDP runs at a lower clock until it does not.
    const double dyn = r.energy_compute_j + r.energy_memory_j;
    const double busy = parts.compute_s + parts.memory_s;
    double capped = 0;
    if (busy > 0 && d.tdp_W > d.static_power_W && dyn / busy + d.static_power_W > d.tdp_W) {
        const double stretched = dyn / (d.tdp_W - d.static_power_W);
        capped = stretched / busy;
        parts.compute_s += stretched - busy;
    }
    r.set_parts(parts);
    r.time_s = parts.total();
    r.energy_static_j = d.static_power_W * r.time_s;
    r.cycles = static_cast<int64_t>(std::ceil((parts.compute_s + parts.memory_s) * d.clock_hz));
    r.stall_cycles = static_cast<int64_t>(std::floor(parts.memory_s * d.clock_hz));
    const double peak = d.peak_for(dtype);
    r.utilization = r.time_s > 0 ? c.flops / (r.time_s * peak) : 0;

    r.levels.push_back(LevelTraffic{l1->name, a.smem, 0, 0, e_smem});
    if (l2) r.levels.push_back(LevelTraffic{l2->name, a.l2, 0, 0, e_l2});
    r.levels.push_back(LevelTraffic{dram.name, a.dram_read, a.dram_write, 0, e_dram});
    r.add_metric("kernels", static_cast<double>(a.kernels), "count");
    if (a.plan) {
        const GemmPlan& p = *a.plan;
        r.add_metric("grid_blocks", static_cast<double>(a.blocks), "count");
        r.add_text("tile", fmt::format("{}x{}x{}", p.bm, p.bn, p.bk));
        r.add_metric("stages", static_cast<double>(p.stages), "count");
        r.add_metric("split_k", static_cast<double>(p.split_k), "count");
        r.add_metric("waves", static_cast<double>(a.waves), "count");
        r.add_metric("occupancy", p.occupancy, "1");
        r.add_metric("blocks_per_sm", static_cast<double>(p.blocks_per_sm), "count");
        r.add_metric("tensor_cores", a.tensor ? 1 : 0, "1");
        r.add_metric("aligned", a.aligned ? 1 : 0, "1");
    }
    if (l2 && a.l2 > 0)
        r.add_metric("l2_hit_rate",
                     std::clamp(1.0 - a.dram_read / std::max(a.l2 - a.dram_write, 1.0), 0.0, 1.0), "1");
    // Stall times are differences of times (a stall less the prologue and epilogue): a rounding below zero
    // (-2e-15 s) is none.
    r.add_metric("stall_latency_s", std::max(0.0, a.stall_latency), "s");
    r.add_metric("stall_l2_s", std::max(0.0, a.stall_l2), "s");
    r.add_metric("stall_dram_s", std::max(0.0, a.stall_dram), "s");
    r.add_metric("stall_l2_port_s", std::max(0.0, a.stall_port), "s");
    r.add_metric("achieved_tflops", r.time_s > 0 ? c.flops / r.time_s / 1e12 : 0, "TFLOP/s");
    r.add_metric("energy_register_file_j", e_rf, "J");
    r.add_metric("power_w", r.time_s > 0 ? r.energy_j() / r.time_s : 0, "W");
    if (capped > 0) r.add_metric("power_capped", capped, "1");
    r.add_metric("input_bytes_on_chip", f.in_epilogue ? f.input_on_chip : 0, "B");
    r.add_metric("output_bytes_kept", f.in_epilogue && !f.write_output ? c.output_bytes : 0, "B");
    if (f.in_epilogue) r.add_text("fused_into", f.into);
    if (r.bound == "memory") r.add_text("memory_level", dram.name);

    // The floor: the roofline over the bytes the layer moves across DRAM.
    const RooflineBound bound = roofline_bound(
        d, op,
        OnChip{f.in_epilogue ? f.input_on_chip : 0, f.in_epilogue && !f.write_output ? c.output_bytes : 0});
    MLSIM_CHECK(r.time_s >= bound.bound_s() * (1 - 1e-9),
                fmt::format("GPU layer {} ({}) at {:.4g} s beats its roofline bound {:.4g} s", op.name,
                            op.kind, r.time_s, bound.bound_s()));
    MLSIM_CHECK(r.energy_compute_j >= 0 && r.energy_memory_j >= 0 && r.energy_static_j >= 0,
                "negative GPU energy");
    m_memo.emplace(key, r);
    return r;
}

}  // namespace mlsim::arch::gpu
