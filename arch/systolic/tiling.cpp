#include "arch/systolic/tiling.h"

#include <fmt/format.h>

#include <algorithm>
#include <cmath>
#include <functional>
#include <limits>
#include <optional>
#include <vector>

#include "arch/systolic/fold_model.h"
#include "sim/config/error.h"
#include "sim/config/units.h"
#include "sim/core/check.h"

namespace mlsim::arch::systolic {

namespace {

int64_t ceil_div(int64_t a, int64_t b) { return (a + b - 1) / b; }
int64_t round_up(int64_t a, int64_t b) { return ceil_div(a, b) * b; }

constexpr char k_dim_names[3] = {'m', 'n', 'k'};

// Candidate tile extents of a dimension of extent x, largest first: x cut into 1, 2, 3, 4, 6, 9, ...
// pieces, each rounded up to whole folds (granularity g) while a piece is at least one fold, and
// below that down to 1, for buffers too small for a full fold; and exactly one fold.
std::vector<int64_t> tile_sizes(int64_t x, int64_t g) {
    std::vector<int64_t> out;
    for (int64_t t = 1;; t = t < 4 ? t + 1 : t + t / 2) {
        int64_t s = ceil_div(x, t);
        if (s >= g) s = std::min(x, round_up(s, g));
        if (out.empty() || s < out.back()) out.push_back(s);
        if (s == 1) break;
    }
    if (x > g && std::find(out.begin(), out.end(), g) == out.end())
        out.insert(std::upper_bound(out.begin(), out.end(), g, std::greater<>()), g);
    return out;
}

// A GEMM job under a partition: operand footprints, traffic per step and the closed-form estimate.
class Evaluator {
  public:
    Evaluator(const MappingContext& ctx, const GemmJob& job, const Partition& part)
        : m_ctx(ctx), m_job(job), m_part(part), m_array(ctx.spec->shape()) {
        const double w = ctx.word_bytes;
        const double mult = part.split == Split::batch ? static_cast<double>(part.arrays_used) : 1.0;
        const auto M = static_cast<double>(job.shape.m), N = static_cast<double>(job.shape.n),
                   K = static_cast<double>(job.shape.k);
        m_total[0] = w * job.scale.a * M * K * mult;
        m_total[1] = w * job.scale.b * K * N * mult;
        m_total[2] = w * job.scale.c * M * N * mult;
        m_acc = ctx.partial_bytes() / ctx.word_bytes;
        if (job.a_on_chip) m_total[0] = 0;  // read in place, never fetched
        // Whole operands that fit half of their buffer stay for the group (fetched once).
        m_keep_a = !job.a_on_chip && footprint_a(part.m, part.k) <= ctx.ifmap_tile_capacity();
        m_keep_b = footprint_b(part.k, part.n) <= ctx.spec->filter.tile_capacity_bytes();
        m_bpc = ctx.dram_Bps / ctx.clock_hz;
        m_latency = ctx.dram_latency_s * ctx.clock_hz;
        const SystolicSpec& s = *ctx.spec;
        m_db = {s.ifmap.double_buffered, s.filter.double_buffered, s.ofmap.double_buffered};
    }

    // Bytes each operand's tile occupies in its buffer, and whether that fits.
    double footprint_a(int64_t tm, int64_t tk) const {
        return words(tm, tk) * m_job.scale.a * (m_part.shared_a() ? 1.0 : used());
    }
    double footprint_b(int64_t tk, int64_t tn) const {
        return words(tk, tn) * m_job.scale.b * (m_part.shared_b() ? 1.0 : used());
    }
    // Partial sums: accumulator words.
    double footprint_c(int64_t tm, int64_t tn) const {
        return words(tm, tn) * m_acc * m_job.scale.c * used();
    }
    bool fits_a(int64_t tm, int64_t tk) const {
        return m_job.a_on_chip || footprint_a(tm, tk) <= m_ctx.ifmap_tile_capacity();
    }
    bool fits_b(int64_t tk, int64_t tn) const {
        return footprint_b(tk, tn) <= m_ctx.spec->filter.tile_capacity_bytes();
    }
    bool fits_c(int64_t tm, int64_t tn) const {
        return footprint_c(tm, tn) <= m_ctx.spec->ofmap.tile_capacity_bytes();
    }

    // Estimated cycles of the whole job for this tile, with the best loop order (written to `plan`).
    double evaluate(int64_t tm, int64_t tn, int64_t tk, TilePlan& plan) const {
        const std::array<int64_t, 3> ext{m_part.m, m_part.n, m_part.k};
        const std::array<int64_t, 3> t{tm, tn, tk};
        std::array<int64_t, 3> cnt{};
        for (int d = 0; d < 3; ++d)
            cnt[static_cast<size_t>(d)] = ceil_div(ext[static_cast<size_t>(d)], t[static_cast<size_t>(d)]);
        const double steps = static_cast<double>(cnt[0] * cnt[1] * cnt[2]);
        const double compute = compute_cycles(ext, t, cnt);
        const double c_avg = compute / steps;

        // Dimensions with one tile never change; they go outermost in m, n, k order.
        std::array<Dim, 3> base{};
        int fixed = 0, active = 0;
        std::array<Dim, 3> act{};
        for (int d = 0; d < 3; ++d) {
            if (cnt[static_cast<size_t>(d)] == 1)
                base[static_cast<size_t>(fixed++)] = static_cast<Dim>(d);
            else
                act[static_cast<size_t>(active++)] = static_cast<Dim>(d);
        }
        // act is filled in ascending order, the first permutation next_permutation needs.
        double best = std::numeric_limits<double>::infinity();
        do {
            std::array<Dim, 3> order = base;
            for (int i = 0; i < active; ++i)
                order[static_cast<size_t>(fixed + i)] = act[static_cast<size_t>(i)];
            const double e = pipeline(order, cnt, c_avg);
            if (e < best) {
                best = e;
                plan.order = order;
            }
        } while (std::next_permutation(act.begin(), act.begin() + active));
        plan.part = m_part;
        plan.tile = t;
        plan.count = cnt;
        plan.keep_a = m_keep_a;
        plan.keep_b = m_keep_b;
        plan.estimate_cycles = best * static_cast<double>(m_part.groups);
        plan.array_cycles = compute * static_cast<double>(m_part.groups);
        return plan.estimate_cycles;
    }

  private:
    // Steps (the first included) at which the operand indexed by dimensions x and y changes tile.
    static int64_t changes(const std::array<Dim, 3>& order, const std::array<int64_t, 3>& cnt, Dim x, Dim y) {
        int64_t n = 1, outer = 1;
        for (int q = 0; q < 3; ++q) {
            const Dim d = order[static_cast<size_t>(q)];
            const int64_t tq = cnt[d];
            const int64_t advances = outer * (tq - 1);
            outer *= tq;
            bool changed = false;
            for (int p = q; p < 3; ++p) {
                const Dim e = order[static_cast<size_t>(p)];
                if ((e == x || e == y) && (p == q || cnt[e] > 1)) changed = true;
            }
            if (changed) n += advances;
        }
        return n;
    }

    double used() const { return static_cast<double>(m_part.arrays_used); }
    double words(int64_t x, int64_t y) const {
        return static_cast<double>(x) * static_cast<double>(y) * m_ctx.word_bytes;
    }

    // Σ over the tiles of array 0 (which holds the largest share, so it is the slowest in every
    // step) of the tile time; tiles come in at most 2 × 2 × 2 shapes (full and edge per dimension).
    double compute_cycles(const std::array<int64_t, 3>& ext, const std::array<int64_t, 3>& t,
                          const std::array<int64_t, 3>& cnt) const {
        std::array<std::array<int64_t, 2>, 3> size{}, num{};
        for (size_t d = 0; d < 3; ++d) {
            const int64_t edge = ext[d] - (cnt[d] - 1) * t[d];
            size[d] = {t[d], edge};
            num[d] = edge == t[d] ? std::array<int64_t, 2>{cnt[d], 0} : std::array<int64_t, 2>{cnt[d] - 1, 1};
        }
        // Faithful: tiles follow each other in the array's fold sequence (the pipeline's rule), so a
        // tile costs its chained span and the job pays one lead-in and one tail, those of its first
        // (full) tile. Otherwise every tile runs on its own.
        const Dataflow df = m_ctx.spec->dataflow;
        const int64_t p = m_ctx.passes;
        double total = 0;
        bool ends_added = false;
        for (size_t i = 0; i < 2; ++i)
            for (size_t j = 0; j < 2; ++j)
                for (size_t l = 0; l < 2; ++l) {
                    const int64_t n = num[0][i] * num[1][j] * num[2][l];
                    if (n == 0) continue;
                    const int64_t tm = size[0][i], tn = size[1][j], tk = size[2][l];
                    const FoldGeometry g = fold_geometry(df, m_array, GemmShape{tm, tn, tk});
                    const GemmStats st = gemm_stats(g);
                    const TileSchedule sch = tile_schedule(g);
                    const int64_t span = (sch.last_start - sch.lead + sch.stream) * p;
                    const int64_t stretch = port_stretch(m_ctx, st, span, tm, tn, false).cycles;
                    if (!m_ctx.stream_across_tiles) {
                        total +=
                            static_cast<double>(n) * static_cast<double>(st.cycles.count() * p + stretch);
                        continue;
                    }
                    const int64_t step = sch.chained(df, m_array.rows);
                    total += static_cast<double>(n) * static_cast<double>(step * p + stretch);
                    if (!ends_added) {
                        total += static_cast<double>(
                            (sch.lead + std::max<int64_t>(0, sch.done - sch.lead - step)) * p);
                        ends_added = true;
                    }
                }
        return total;
    }

    // first load + Σ over steps of max(traffic of the next step, compute) + last drain, with the
    // traffic of buffers that are not double-buffered serialized instead of overlapped. Steps are
    // grouped by which loop advances (all inner ones wrap), which decides what changes.
    double pipeline(const std::array<Dim, 3>& order, const std::array<int64_t, 3>& cnt, double c_avg) const {
        double tile_a = m_total[0] / static_cast<double>(cnt[dim_m] * cnt[dim_k]);
        double tile_b = m_total[1] / static_cast<double>(cnt[dim_k] * cnt[dim_n]);
        const double tile_c = m_total[2] / static_cast<double>(cnt[dim_m] * cnt[dim_n]);
        std::array<int, 3> pos{};
        for (int p = 0; p < 3; ++p) pos[order[static_cast<size_t>(p)]] = p;
        // A kept operand is fetched once in all: spread its bytes over the steps that change it.
        if (m_keep_a) tile_a = m_total[0] / static_cast<double>(changes(order, cnt, dim_m, dim_k));
        if (m_keep_b) tile_b = m_total[1] / static_cast<double>(changes(order, cnt, dim_k, dim_n));
        double total = (tile_a + tile_b) / m_bpc + m_latency;
        int64_t outer = 1;
        for (int q = 0; q < 3; ++q) {
            const int64_t tq = cnt[order[static_cast<size_t>(q)]];
            const int64_t n = outer * (tq - 1);
            outer *= tq;
            if (n == 0) continue;
            // Changed: the advancing loop and every inner one that has more than one tile.
            std::array<bool, 3> changed{};
            for (int p = q; p < 3; ++p) {
                const Dim d = order[static_cast<size_t>(p)];
                changed[d] = p == q || cnt[d] > 1;
            }
            const bool a = changed[dim_m] || changed[dim_k];
            const bool b = changed[dim_k] || changed[dim_n];
            const bool c = changed[dim_m] || changed[dim_n];
            double reload = 0;
            if (c && cnt[dim_k] > 1) {
                if (pos[dim_k] == q)
                    reload = 1;
                else if (pos[dim_k] < q)
                    reload = static_cast<double>(cnt[dim_k] - 1) / static_cast<double>(cnt[dim_k]);
            }
            double overlapped = 0, serial = 0;
            bool serial_any = false;
            auto add = [&](bool db, double bytes) {
                if (bytes <= 0) return;
                if (db) {
                    overlapped += bytes;
                } else {
                    serial += bytes;
                    serial_any = true;
                }
            };
            if (a) add(m_db[0], tile_a);
            if (b) add(m_db[1], tile_b);
            // Partial sums leave and come back at the accumulator width; finished tiles at the word size.
            if (c) add(m_db[2], tile_c * ((1 - reload) + 2 * reload * m_acc));
            const double step =
                std::max(c_avg, overlapped / m_bpc) + serial / m_bpc + (serial_any ? m_latency : 0);
            total += static_cast<double>(n) * step;
        }
        return total + c_avg + tile_c / m_bpc + m_latency;
    }

    const MappingContext& m_ctx;
    const GemmJob& m_job;
    Partition m_part;
    ArrayShape m_array;
    std::array<double, 3> m_total{};  // bytes of A, B, C per group in main memory
    std::array<bool, 3> m_db{};
    double m_acc = 1;  // accumulator bytes per word byte
    bool m_keep_a = false, m_keep_b = false;
    double m_bpc = 0, m_latency = 0;
};

}  // namespace

Partition make_partition(const MappingContext& ctx, const GemmJob& job, Split split) {
    const wl::GemmShape& s = job.shape;
    const int64_t arrays = ctx.spec->arrays;
    Partition p;
    p.split = split;
    p.m = s.m, p.n = s.n, p.k = s.k;
    p.groups = s.batch;
    switch (split) {
        case Split::none:
            break;
        case Split::batch:
            p.arrays_used = std::min(arrays, s.batch);
            p.chunk = 1;
            p.groups = ceil_div(s.batch, arrays);
            break;
        case Split::n:
        case Split::m: {
            const Dim d = split == Split::n ? dim_n : dim_m;
            const int64_t x = split == Split::n ? s.n : s.m;
            const int64_t g = granularity(ctx.spec->dataflow, ctx.spec->shape(), d);
            p.chunk = std::min(x, round_up(ceil_div(x, arrays), g));
            p.arrays_used = ceil_div(x, p.chunk);
            (split == Split::n ? p.n : p.m) = p.chunk;
            break;
        }
    }
    return p;
}

namespace {

const cfg::Node* resolved_at(const MappingContext& ctx, std::initializer_list<const char*> path) {
    const cfg::Node* n = ctx.device && ctx.device->resolved.is_map() ? &ctx.device->resolved : nullptr;
    for (const char* key : path) {
        if (!n || !n->is_map()) return nullptr;
        n = n->find(key);
    }
    return n;
}

[[noreturn]] void fail_at_key(const MappingContext& ctx, std::initializer_list<const char*> path,
                              const std::string& fallback_path, const std::string& message) {
    const cfg::Node* n = resolved_at(ctx, path);
    if (n) cfg::fail(n->is_scalar() ? n->loc() : n->key_loc(), n->path(), message);
    cfg::fail(cfg::SourceLoc{}, fallback_path, message);
}

std::string bytes_text(double b) { return cfg::format_quantity(b, cfg::Dim::size); }

// No tile fits: say which buffer is too small for the smallest tile.
[[noreturn]] void fail_no_fit(const MappingContext& ctx, const Evaluator& ev, const Partition& p, int64_t tm,
                              int64_t tn, int64_t tk) {
    const SystolicSpec& s = *ctx.spec;
    struct Need {
        const char* operand;
        const BufferSpec* buffer;
        double bytes;
    };
    const Need needs[] = {{"ifmap", &s.ifmap, ev.footprint_a(tm, tk)},
                          {"filter", &s.filter, ev.footprint_b(tk, tn)},
                          {"ofmap", &s.ofmap, ev.footprint_c(tm, tn)}};
    for (const Need& n : needs) {
        const bool ifmap = n.buffer == &s.ifmap;
        const double holds = ifmap ? ctx.ifmap_tile_capacity() : n.buffer->tile_capacity_bytes();
        if (n.bytes <= holds) continue;
        fail_at_key(ctx, {"systolic", "buffers", n.operand, "capacity"},
                    std::string("device.systolic.buffers.") + n.operand + ".capacity",
                    fmt::format("layer '{}': the smallest tile of its GEMM (m={} n={} k={} per array, {} "
                                "array(s)) needs {} in the {} buffer '{}', which holds {} per tile{}; "
                                "enlarge the buffer",
                                ctx.op_name, tm, tn, tk, p.arrays_used, bytes_text(n.bytes), n.operand,
                                n.buffer->name, bytes_text(holds),
                                n.buffer->double_buffered ? " (half, double-buffered)" : ""));
    }
    MLSIM_CHECK(false, "a tiling was rejected although every operand fits");
    std::abort();
}

TilePlan search(const MappingContext& ctx, const GemmJob& job, const Partition& part) {
    const Evaluator ev(ctx, job, part);
    const SystolicSpec& s = *ctx.spec;
    const ArrayShape arr = s.shape();
    TilePlan best, cand;
    double best_e = std::numeric_limits<double>::infinity();

    if (s.tiling == Tiling::fixed) {
        const int64_t tm = s.tile_m > 0 ? std::min(s.tile_m, part.m) : part.m;
        const int64_t tn = s.tile_n > 0 ? std::min(s.tile_n, part.n) : part.n;
        const int64_t tk = s.tile_k > 0 ? std::min(s.tile_k, part.k) : part.k;
        if (!(ev.fits_a(tm, tk) && ev.fits_b(tk, tn) && ev.fits_c(tm, tn)))
            fail_at_key(
                ctx, {"systolic", "tile"}, "device.systolic.tile",
                fmt::format("layer '{}': the fixed tile m={} n={} k={} (per array) does not fit the "
                            "buffers: it needs ifmap {}, filter {}, ofmap {}; they hold {}, {}, {} per tile",
                            ctx.op_name, tm, tn, tk, bytes_text(ev.footprint_a(tm, tk)),
                            bytes_text(ev.footprint_b(tk, tn)), bytes_text(ev.footprint_c(tm, tn)),
                            bytes_text(ctx.ifmap_tile_capacity()), bytes_text(s.filter.tile_capacity_bytes()),
                            bytes_text(s.ofmap.tile_capacity_bytes())));
        ev.evaluate(tm, tn, tk, best);
        return best;
    }

    // Coordinate search from the largest tiles down: along each dimension, stop once two smaller
    // extents in a row did not improve on the best seen (the estimate first falls as tiles overlap
    // better, then rises as per-tile fill, drain and refetches grow).
    const std::vector<int64_t> ms = tile_sizes(part.m, granularity(s.dataflow, arr, dim_m));
    const std::vector<int64_t> ns = tile_sizes(part.n, granularity(s.dataflow, arr, dim_n));
    const std::vector<int64_t> ks = tile_sizes(part.k, granularity(s.dataflow, arr, dim_k));
    std::vector<TilePlan> evaluated;
    int worse_k = 0;
    double best_k = std::numeric_limits<double>::infinity();
    for (int64_t tk : ks) {
        double best_n = std::numeric_limits<double>::infinity();
        int worse_n = 0;
        for (int64_t tn : ns) {
            if (!ev.fits_b(tk, tn)) continue;
            double best_m = std::numeric_limits<double>::infinity();
            int worse_m = 0;
            for (int64_t tm : ms) {
                if (!ev.fits_a(tm, tk) || !ev.fits_c(tm, tn)) continue;
                const double e = ev.evaluate(tm, tn, tk, cand);
                evaluated.push_back(cand);
                best_e = std::min(best_e, e);
                if (e < best_m) {
                    best_m = e;
                    worse_m = 0;
                } else if (++worse_m >= 2) {
                    break;
                }
            }
            if (best_m == std::numeric_limits<double>::infinity()) continue;
            if (best_m < best_n) {
                best_n = best_m;
                worse_n = 0;
            } else if (++worse_n >= 2) {
                break;
            }
        }
        if (best_n == std::numeric_limits<double>::infinity()) continue;
        if (best_n < best_k) {
            best_k = best_n;
            worse_k = 0;
        } else if (++worse_k >= 2) {
            break;
        }
    }
    if (best_e == std::numeric_limits<double>::infinity())
        fail_no_fit(ctx, ev, part, ms.back(), ns.back(), ks.back());
    // Within 2 % of the fastest estimate, the least array work (the first such candidate on ties).
    const TilePlan* chosen = nullptr;
    for (const TilePlan& p : evaluated)
        if (p.estimate_cycles <= best_e * 1.02 && (!chosen || p.array_cycles < chosen->array_cycles))
            chosen = &p;
    return *chosen;
}

}  // namespace

int64_t granularity(Dataflow df, ArrayShape array, Dim d) {
    switch (df) {
        case Dataflow::os:
            return d == dim_m ? array.rows : d == dim_n ? array.cols : 1;
        case Dataflow::ws:
            return d == dim_k ? array.rows : d == dim_n ? array.cols : 1;
        case Dataflow::is:
            return d == dim_k ? array.rows : d == dim_m ? array.cols : 1;
    }
    return 1;
}

std::string TilePlan::describe() const {
    std::string s =
        fmt::format("m={} n={} k={} tiles={}x{}x{} order={}{}{}", tile[0], tile[1], tile[2], count[0],
                    count[1], count[2], k_dim_names[order[0]], k_dim_names[order[1]], k_dim_names[order[2]]);
    switch (part.split) {
        case Split::none:
            break;
        case Split::batch:
            s += fmt::format(" split=batch/{}", part.arrays_used);
            break;
        case Split::n:
            s += fmt::format(" split=n/{}", part.arrays_used);
            break;
        case Split::m:
            s += fmt::format(" split=m/{}", part.arrays_used);
            break;
    }
    return s;
}

double ifmap_space(const MappingContext& ctx, const GemmJob& job, const TilePlan& plan) {
    if (job.a_on_chip) return 0;
    const Partition& p = plan.part;
    const double words = plan.keep_a ? static_cast<double>(p.m) * static_cast<double>(p.k)
                                     : static_cast<double>(plan.tile[0]) * static_cast<double>(plan.tile[2]);
    const double copies = p.shared_a() ? 1.0 : static_cast<double>(p.arrays_used);
    return words * ctx.word_bytes * job.scale.a * copies * (ctx.spec->ifmap.double_buffered ? 2 : 1);
}

uint64_t operand_bytes(const MappingContext& ctx, double words, double s) {
    return static_cast<uint64_t>(std::ceil(words * ctx.word_bytes * s));
}

double MappingContext::ifmap_tile_capacity() const {
    const double cap = ifmap_free_bytes >= 0 ? ifmap_free_bytes : spec->ifmap.capacity_bytes;
    return spec->ifmap.double_buffered ? cap / 2 : cap;
}

TileSchedule tile_schedule(const FoldGeometry& g, const FoldStats& first, const FoldStats& last,
                           Cycles cycles) {
    TileSchedule s;
    s.lead = first.timing.stream_start.count();
    s.last_start = last.timing.stream_start.count();
    s.stream = g.t;
    s.first_rows = first.coord.rows;
    s.last_rows = last.coord.rows;
    s.last_cols = last.coord.cols;
    s.folds = g.folds();
    s.done = cycles.count();
    return s;
}

TileSchedule tile_schedule(const FoldGeometry& g) {
    return tile_schedule(g, fold_stats(g, 0), fold_stats(g, g.folds() - 1), gemm_cycles(g));
}

PortStretch port_stretch(const MappingContext& ctx, const GemmStats& st, int64_t span, int64_t m, int64_t n,
                         bool accumulate) {
    const SystolicSpec& s = *ctx.spec;
    PortStretch out;
    // Words per cycle each array gets from a buffer port; a buffer that delivers fewer than the tile
    // needs while it streams stretches the tile.
    const double share = ctx.clock_hz * static_cast<double>(s.arrays);
    const double out_reads = static_cast<double>(st.counts.out_reads) +
                             (accumulate ? static_cast<double>(m) * static_cast<double>(n) : 0.0);
    const double out_words = std::max(static_cast<double>(st.counts.out_writes), out_reads);
    const struct {
        double words;
        double word_bytes;
        double bandwidth;
        StallCause cause;
    } ports[] = {
        {static_cast<double>(st.counts.a_reads), ctx.word_bytes, s.ifmap.bandwidth_Bps, StallCause::input},
        {static_cast<double>(st.counts.b_reads), ctx.word_bytes, s.filter.bandwidth_Bps, StallCause::weight},
        {out_words, ctx.partial_bytes(), s.ofmap.bandwidth_Bps, StallCause::output}};
    for (const auto& p : ports) {
        const double need = std::ceil(p.words * p.word_bytes / (p.bandwidth / share) * (1 - 1e-12));
        if (need - static_cast<double>(span) > static_cast<double>(out.cycles)) {
            out.cycles = static_cast<int64_t>(need) - span;
            out.cause = p.cause;
        }
    }
    return out;
}

TilePlan plan_gemm(const MappingContext& ctx, const GemmJob& job) {
    MLSIM_CHECK(job.shape.batch >= 1 && job.shape.m >= 1 && job.shape.n >= 1 && job.shape.k >= 1,
                "GEMM job with an empty dimension");
    if (ctx.spec->arrays == 1) return search(ctx, job, make_partition(ctx, job, Split::none));
    std::vector<Split> splits = {Split::n, Split::m};
    if (job.shape.batch > 1 && !job.sequential) splits.insert(splits.begin(), Split::batch);
    TilePlan best;
    double best_e = std::numeric_limits<double>::infinity();
    std::optional<cfg::UserError> first_error;
    for (Split s : splits) {
        try {
            const TilePlan p = search(ctx, job, make_partition(ctx, job, s));
            if (p.estimate_cycles < best_e) {
                best_e = p.estimate_cycles;
                best = p;
            }
        } catch (const cfg::UserError& e) {
            // A split whose shared operand does not fit may still leave another one that does.
            if (!first_error) first_error = e;
        }
    }
    if (best_e == std::numeric_limits<double>::infinity()) throw *first_error;
    return best;
}

}  // namespace mlsim::arch::systolic
