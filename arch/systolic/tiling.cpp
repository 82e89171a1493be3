#include "arch/systolic/tiling.h"

#include <fmt/format.h>

#include <algorithm>
#include <bit>
#include <cmath>
#include <functional>
#include <limits>
#include <optional>
#include <vector>

#include "arch/systolic/fold_model.h"
#include "arch/systolic/fold_model_inline.h"
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
    // Pieces grow by half from 4 on: 64 extents hold any x below about 10^11 (one allocation, not ~6).
    out.reserve(64);
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

// Where a search reads the evaluations its key's previous search made (ComputeMemo::Trace), and the trace it
// writes for the next one.
struct TraceCursor {
    const ComputeMemo::Trace* prev = nullptr;
    std::size_t pos = 0;
    ComputeMemo::Trace* out = nullptr;
    // How far ahead of the last found entry a candidate is looked for: a capacity that admits another
    // candidate or two shifts the rest of the trace by as many.
    static constexpr std::size_t k_window = 8;
    const ComputeMemo::TraceEntry* find(const std::array<int64_t, 3>& tile) {
        const std::size_t end = std::min(prev->size(), pos + k_window);
        for (std::size_t i = pos; i < end; ++i) {
            // Element by element: std::array's == calls memcmp.
            const std::array<int64_t, 3>& t = (*prev)[i].tile;
            if (t[0] == tile[0] && t[1] == tile[1] && t[2] == tile[2]) {
                pos = i + 1;
                return &(*prev)[i];
            }
        }
        return nullptr;
    }
};

// A GEMM job under a partition: operand footprints, traffic per step and the closed-form estimate.
class Evaluator {
  public:
    // `window`, when given, is narrowed to the capacities that answer every comparison this evaluator makes
    // with the ifmap buffer's capacity as it was answered here.
    Evaluator(const MappingContext& ctx, const GemmJob& job, const Partition& part,
              CapacityWindow* window = nullptr)
        : m_ctx(ctx), m_job(job), m_part(part), m_array(ctx.spec->shape()), m_window(window) {
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
        m_ifmap_cap = ctx.ifmap_tile_capacity();
        m_keep_a = !job.a_on_chip && fits_ifmap(footprint_a(part.m, part.k));
        m_keep_b = footprint_b(part.k, part.n) <= ctx.spec->filter.tile_capacity_bytes();
        m_bpc = ctx.dram_Bps / ctx.clock_hz;
        m_latency = ctx.dram_latency_s * ctx.clock_hz;
        const SystolicSpec& s = *ctx.spec;
        m_db = {s.ifmap.double_buffered, s.filter.double_buffered, s.ofmap.double_buffered};
        m_all_db = m_db[0] && m_db[1] && m_db[2];
        const double share = ctx.clock_hz * static_cast<double>(s.arrays);
        m_port_word = {ctx.word_bytes, ctx.word_bytes, ctx.partial_bytes()};
        m_port_share = {s.ifmap.bandwidth_Bps / share, s.filter.bandwidth_Bps / share,
                        s.ofmap.bandwidth_Bps / share};
        // What a tile shape's cost reads besides its extents (shape_cost, port_stretch_cycles): the same
        // values give the same sums, on any device.
        if (ctx.compute_memo) {
            const auto bits = [](double x) { return std::bit_cast<uint64_t>(x); };
            ctx.compute_memo->bind({static_cast<uint64_t>(s.dataflow), static_cast<uint64_t>(m_array.rows),
                                    static_cast<uint64_t>(m_array.cols), static_cast<uint64_t>(ctx.passes),
                                    ctx.stream_across_tiles ? 1u : 0u, bits(m_port_word[0]),
                                    bits(m_port_word[1]), bits(m_port_word[2]), bits(m_port_share[0]),
                                    bits(m_port_share[1]), bits(m_port_share[2])});
        }
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
    bool fits_a(int64_t tm, int64_t tk) const { return m_job.a_on_chip || fits_ifmap(footprint_a(tm, tk)); }
    bool fits_b(int64_t tk, int64_t tn) const {
        return footprint_b(tk, tn) <= m_ctx.spec->filter.tile_capacity_bytes();
    }
    bool fits_c(int64_t tm, int64_t tn) const {
        return footprint_c(tm, tn) <= m_ctx.spec->ofmap.tile_capacity_bytes();
    }

    // What an evaluation reads besides its candidate (ComputeMemo::SearchKey); after the constructor has
    // bound the memo's tag.
    ComputeMemo::SearchKey search_key() const {
        const auto bits = [](double x) { return std::bit_cast<uint64_t>(x); };
        ComputeMemo::SearchKey key{};
        const ComputeMemo::Tag& tag = m_ctx.compute_memo->tag();
        std::copy(tag.begin(), tag.end(), key.begin());
        size_t i = tag.size();
        for (int64_t v : {m_part.m, m_part.n, m_part.k, m_part.groups, static_cast<int64_t>(m_part.split),
                          m_part.arrays_used})
            key[i++] = static_cast<uint64_t>(v);
        for (double v : {m_total[0], m_total[1], m_total[2], m_acc, m_bpc, m_latency}) key[i++] = bits(v);
        key[i++] = (m_keep_a ? 1u : 0u) | (m_keep_b ? 2u : 0u) | (m_db[0] ? 4u : 0u) | (m_db[1] ? 8u : 0u) |
                   (m_db[2] ? 16u : 0u);
        MLSIM_CHECK(i == key.size(), "tiling: a search key's fields and its size differ");
        return key;
    }

    // Estimated cycles of the whole job for this tile, with the best loop order (written to `plan`).
    double evaluate(int64_t tm, int64_t tn, int64_t tk, TilePlan& plan) const {
        const double inf = std::numeric_limits<double>::infinity();
        return *evaluate_unless(tm, tn, tk, plan, inf, inf);  // nothing is above infinity
    }

    // The same, unless the estimate is provably at least `at_least` and above `above`: then nothing
    // (and `plan` is not written). The bound is the arrays' cycles: every loop order's estimate is the
    // first load, plus each of the steps − 1 transitions at no less than c_avg, plus c_avg and the last
    // drain, all non-negative, so it is at least steps · c_avg ≈ compute in exact arithmetic; the few
    // roundings of the sum are far below the 1e-12 taken off. compute_cycles tests it as it sums.
    // With `trace`: an evaluation the key's previous search made is taken from it (the same whole sum,
    // tested as compute_cycles tests a whole sum it keeps, and the same fastest order), and every whole
    // evaluation, found or made, is added to the trace for the next search.
    std::optional<double> evaluate_unless(int64_t tm, int64_t tn, int64_t tk, TilePlan& plan, double at_least,
                                          double above, TraceCursor* trace = nullptr) const {
        const std::array<int64_t, 3> ext{m_part.m, m_part.n, m_part.k};
        const std::array<int64_t, 3> t{tm, tn, tk};
        std::array<int64_t, 3> cnt{};
        for (int d = 0; d < 3; ++d)
            cnt[static_cast<size_t>(d)] = ceil_div(ext[static_cast<size_t>(d)], t[static_cast<size_t>(d)]);
        if (trace) {
            if (const ComputeMemo::TraceEntry* e = trace->find(t)) {
                m_ctx.compute_memo->count_trace_hit();
                trace->out->push_back(*e);
                const double floor = e->compute * (1 - 1e-12) * static_cast<double>(m_part.groups);
                if (floor >= at_least && floor > above) return std::nullopt;
                plan.order = {static_cast<Dim>(e->order[0]), static_cast<Dim>(e->order[1]),
                              static_cast<Dim>(e->order[2])};
                return finish_plan(plan, t, cnt, e->best, e->compute);
            }
        }
        const double steps = static_cast<double>(cnt[0] * cnt[1] * cnt[2]);
        const std::optional<double> sum = compute_cycles(ext, t, cnt, at_least, above);
        if (!sum) return std::nullopt;
        const double compute = *sum;
        const double c_avg = compute / steps;
        const Traffic traffic = traffic_of(cnt);

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
        if (active == 3 && m_all_db)
            best = pipeline_all_orders(cnt, c_avg, traffic, plan.order);
        else
            do {
                std::array<Dim, 3> order = base;
                for (int i = 0; i < active; ++i)
                    order[static_cast<size_t>(fixed + i)] = act[static_cast<size_t>(i)];
                const double e = pipeline(order, cnt, c_avg, traffic);
                if (e < best) {
                    best = e;
                    plan.order = order;
                }
            } while (std::next_permutation(act.begin(), act.begin() + active));
        if (trace)
            trace->out->push_back({t,
                                   compute,
                                   best,
                                   {static_cast<uint8_t>(plan.order[0]), static_cast<uint8_t>(plan.order[1]),
                                    static_cast<uint8_t>(plan.order[2])}});
        return finish_plan(plan, t, cnt, best, compute);
    }

    // The rest of a candidate's plan, from its fastest order's estimate and its tile-shape sum (per
    // lockstep group).
    [[gnu::always_inline]] double finish_plan(TilePlan& plan, const std::array<int64_t, 3>& t,
                                              const std::array<int64_t, 3>& cnt, double best,
                                              double compute) const {
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
    // The one comparison through which the ifmap buffer's capacity enters a search.
    bool fits_ifmap(double bytes) const {
        const bool fits = bytes <= m_ifmap_cap;
        if (m_window) m_window->saw(bytes, fits);
        return fits;
    }

    static constexpr unsigned bit(Dim d) { return 1u << d; }
    static constexpr unsigned k_a_dims = (1u << dim_m) | (1u << dim_k);  // A's tile index
    static constexpr unsigned k_b_dims = (1u << dim_k) | (1u << dim_n);  // B's
    static constexpr unsigned k_c_dims = (1u << dim_m) | (1u << dim_n);  // C's

    // How the loop order `order` steps: for each loop q (outer to inner), the steps at which it
    // advances (all inner loops wrap), and the dimensions whose tile index changes then: its own and
    // every inner one that has more than one tile.
    struct Advances {
        std::array<int64_t, 3> steps{};
        std::array<unsigned, 3> changed{};
        int pos_k = 0;  // the position of the k loop
    };
    static Advances advances(const std::array<Dim, 3>& order, const std::array<int64_t, 3>& cnt) {
        // Unrolled (the search steps through thousands of loop orders a run): loop 2 is the innermost.
        const Dim d0 = order[0], d1 = order[1], d2 = order[2];
        const int64_t c0 = cnt[d0], c1 = cnt[d1], c2 = cnt[d2];
        const unsigned inner2 = c2 > 1 ? bit(d2) : 0u;
        const unsigned inner1 = inner2 | (c1 > 1 ? bit(d1) : 0u);
        Advances a;
        a.changed = {bit(d0) | inner1, bit(d1) | inner2, bit(d2)};
        a.steps = {c0 - 1, c0 * (c1 - 1), c0 * c1 * (c2 - 1)};
        a.pos_k = d0 == dim_k ? 0 : d1 == dim_k ? 1 : 2;
        return a;
    }

    // Steps (the first included) at which the operand indexed by the dimensions `dims` changes tile.
    static int64_t changes(const Advances& adv, unsigned dims) {
        int64_t n = 1;
        for (size_t q = 0; q < 3; ++q)
            if (adv.changed[q] & dims) n += adv.steps[q];
        return n;
    }

    double used() const { return static_cast<double>(m_part.arrays_used); }
    double words(int64_t x, int64_t y) const {
        return static_cast<double>(x) * static_cast<double>(y) * m_ctx.word_bytes;
    }

    // What one tile shape costs the arrays (in array cycles, times the passes): chained behind a tile
    // of the same shape (stream_across_tiles) or alone, plus the port stretch; and, chained, the
    // lead-in and tail the job pays once.
    struct ShapeCost {
        int64_t per_tile = 0;
        int64_t ends = 0;
    };
    ShapeCost shape_cost(int64_t tm, int64_t tn, int64_t tk) const {
        const Dataflow df = m_ctx.spec->dataflow;
        const int64_t p = m_ctx.passes;
        // gemm_summary(g), inlined (fold_model_inline.h): the search costs thousands of shapes a run.
        const FoldGeometry g = detail::fold_geometry(df, m_array, GemmShape{tm, tn, tk});
        // Of the tile's stats only the cycles and the port words enter its cost.
        const AccessCounts counts = detail::port_counts(g);
        // tile_schedule(g) from the summary: lead = s_0, last_start = s_last, done = the layer's end.
        const int64_t lead = detail::stream_start(g, 0), last_start = detail::stream_start(g, g.folds() - 1);
        const int64_t done = detail::layer_end(g, last_start);
        const int64_t span = (last_start - lead + g.t) * p;
        const int64_t stretch = port_stretch_cycles(counts, span);
        ShapeCost c;
        if (!m_ctx.stream_across_tiles) {
            c.per_tile = done * p + stretch;
            return c;
        }
        // TileSchedule::chained and hold.
        const int64_t hold = df == Dataflow::os ? g.rows_last + m_array.rows : g.rows_last;
        const int64_t step = last_start - lead + std::max(g.t, hold + lead);
        c.per_tile = step * p + stretch;
        c.ends = (lead + std::max<int64_t>(0, done - lead - step)) * p;
        return c;
    }

    // port_stretch(ctx, st, span, m, n, false).cycles, with each port's share of its bandwidth taken
    // once per job (the same arithmetic, so the same doubles).
    int64_t port_stretch_cycles(const AccessCounts& counts, int64_t span) const {
        const double out_reads = static_cast<double>(counts.out_reads) + 0.0;
        const std::array<double, 3> words = {static_cast<double>(counts.a_reads),
                                             static_cast<double>(counts.b_reads),
                                             std::max(static_cast<double>(counts.out_writes), out_reads)};
        int64_t cycles = 0;
        const double span_d = static_cast<double>(span);
        for (size_t i = 0; i < 3; ++i) {
            const double x = words[i] * m_port_word[i] / m_port_share[i] * (1 - 1e-12);
            // A port that needs no more than the span stretches nothing: span is a whole number, so
            // ceil(x) <= span too, and need − span <= 0 <= cycles. Only then is the ceil skipped (it
            // is the costliest step here and most ports are fast enough).
            if (!(x > span_d)) continue;
            const double need = std::ceil(x);
            if (need - span_d > static_cast<double>(cycles)) cycles = static_cast<int64_t>(need) - span;
        }
        return cycles;
    }

    // Σ over the tiles of array 0 (which holds the largest share, so it is the slowest in every
    // step) of the tile time; tiles come in at most 2 × 2 × 2 shapes (full and edge per dimension).
    // Nothing (std::nullopt) where the bound of evaluate_unless proves the candidate out: checked
    // after each shape, since a partial sum of terms that are all >= 0 is no more than the whole
    // (adding a non-negative double never lowers a sum, and rounding is monotone), so a partial sum
    // that passes the test means the whole one passes it too; the shapes after it are not costed.
    // Where no partial sum passes, the whole sum is the same double as before and meets the same test.
    std::optional<double> compute_cycles(const std::array<int64_t, 3>& ext, const std::array<int64_t, 3>& t,
                                         const std::array<int64_t, 3>& cnt, double at_least,
                                         double above) const {
        const auto out = [&](double c) {
            const double floor = c * (1 - 1e-12) * static_cast<double>(m_part.groups);
            return floor >= at_least && floor > above;
        };
        // A sum kept from another search of the same partition and tile (ComputeMemo): the whole sum
        // of non-negative terms decides exactly as the loop below (which tests partial sums no larger
        // than it, and the whole sum last); a partial sum that proved a candidate out there is one of
        // the partial sums this loop would test here, in the same order, with the same doubles.
        ComputeMemo::Entry* memo = nullptr;
        if (m_ctx.compute_memo) {
            memo = m_ctx.compute_memo->slot({ext[0], ext[1], ext[2], t[0], t[1], t[2]});
            if (memo && memo->state == 2) {
                m_ctx.compute_memo->count_hit();
                if (out(memo->total)) return std::nullopt;
                return memo->total;
            }
            if (memo && memo->state == 1 && out(memo->total)) return std::nullopt;
        }
        const auto keep = [&](uint8_t state, double total) {
            if (!memo) return;
            if (memo->state == 0) m_ctx.compute_memo->used();
            memo->total = total;
            memo->state = state;
        };
        bool monotone = true;
        std::array<std::array<int64_t, 2>, 3> size{}, num{};
        for (size_t d = 0; d < 3; ++d) {
            const int64_t edge = ext[d] - (cnt[d] - 1) * t[d];
            size[d] = {t[d], edge};
            num[d] = edge == t[d] ? std::array<int64_t, 2>{cnt[d], 0} : std::array<int64_t, 2>{cnt[d] - 1, 1};
        }
        // Faithful: tiles follow each other in the array's fold sequence (the pipeline's rule), so a
        // tile costs its chained span and the job pays one lead-in and one tail, those of its first
        // (full) tile. Otherwise every tile runs on its own.
        double total = 0;
        bool ends_added = false;
        for (size_t i = 0; i < 2; ++i)
            for (size_t j = 0; j < 2; ++j)
                for (size_t l = 0; l < 2; ++l) {
                    const int64_t n = num[0][i] * num[1][j] * num[2][l];
                    if (n == 0) continue;
                    const ShapeCost sc = shape_cost(size[0][i], size[1][j], size[2][l]);
                    total += static_cast<double>(n) * static_cast<double>(sc.per_tile);
                    monotone = monotone && sc.per_tile >= 0;
                    if (m_ctx.stream_across_tiles && !ends_added) {
                        total += static_cast<double>(sc.ends);
                        monotone = monotone && sc.ends >= 0;
                        ends_added = true;
                    }
                    if (monotone && out(total)) {
                        keep(1, total);
                        return std::nullopt;
                    }
                }
        if (monotone) keep(2, total);
        // The whole sum: the test evaluate_unless made on it (terms < 0 or not).
        if (out(total)) return std::nullopt;
        return total;
    }

    // Bytes per step of each operand's tile, whatever the loop order (a kept operand's are spread over
    // the steps that change it, which the order decides), and what a C tile moves when it leaves with
    // no, all or (k − 1)/k of its K tiles to come back for: partial sums leave and come back at the
    // accumulator width, finished tiles at the word size.
    struct Traffic {
        double tile_a = 0, tile_b = 0, tile_c = 0;
        std::array<double, 3> c_out{};  // reload 0, 1, (k − 1)/k
    };
    Traffic traffic_of(const std::array<int64_t, 3>& cnt) const {
        Traffic t;
        t.tile_a = m_total[0] / static_cast<double>(cnt[dim_m] * cnt[dim_k]);
        t.tile_b = m_total[1] / static_cast<double>(cnt[dim_k] * cnt[dim_n]);
        t.tile_c = m_total[2] / static_cast<double>(cnt[dim_m] * cnt[dim_n]);
        const auto c_out = [&](double reload) { return t.tile_c * ((1 - reload) + 2 * reload * m_acc); };
        t.c_out = {c_out(0), c_out(1),
                   cnt[dim_k] > 1
                       ? c_out(static_cast<double>(cnt[dim_k] - 1) / static_cast<double>(cnt[dim_k]))
                       : 0.0};
        return t;
    }

    // first load + Σ over steps of max(traffic of the next step, compute) + last drain, with the
    // traffic of buffers that are not double-buffered serialized instead of overlapped. Steps are
    // grouped by which loop advances (all inner ones wrap), which decides what changes.
    double pipeline(const std::array<Dim, 3>& order, const std::array<int64_t, 3>& cnt, double c_avg,
                    const Traffic& tr) const {
        const Advances adv = advances(order, cnt);
        double tile_a = tr.tile_a;
        double tile_b = tr.tile_b;
        // A kept operand is fetched once in all: spread its bytes over the steps that change it.
        if (m_keep_a) tile_a = m_total[0] / static_cast<double>(changes(adv, k_a_dims));
        if (m_keep_b) tile_b = m_total[1] / static_cast<double>(changes(adv, k_b_dims));
        double total = (tile_a + tile_b) / m_bpc + m_latency;
        for (int q = 0; q < 3; ++q) {
            const int64_t n = adv.steps[static_cast<size_t>(q)];
            if (n == 0) continue;
            const unsigned changed = adv.changed[static_cast<size_t>(q)];
            const bool a = changed & k_a_dims;
            const bool b = changed & k_b_dims;
            const bool c = changed & k_c_dims;
            // Which c_out: the output tile is left for good (0), before its K tiles (the k loop
            // advances: 1), or, k outer, with (k − 1)/k of them still to come.
            size_t reload = 0;
            if (c && cnt[dim_k] > 1) {
                if (adv.pos_k == q)
                    reload = 1;
                else if (adv.pos_k < q)
                    reload = 2;
            }
            if (m_all_db) {
                // Every buffer double-buffered (the usual case): nothing is serialized, and the bytes of
                // an operand that does not change enter as + 0.0, which leaves the sum of the non-negative
                // byte counts the same double as adding only the others (as below).
                const double overlapped =
                    ((a ? tile_a : 0.0) + (b ? tile_b : 0.0)) + (c ? tr.c_out[reload] : 0.0);
                total += static_cast<double>(n) * std::max(c_avg, overlapped / m_bpc);
                continue;
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
            if (c) add(m_db[2], tr.c_out[reload]);
            // With nothing serialized (every buffer double-buffered, the usual case) the serial terms
            // are + 0.0 + 0, which leave the sum as it is: skipped, with its division.
            double step = std::max(c_avg, overlapped / m_bpc);
            if (serial_any) step = step + serial / m_bpc + m_latency;
            total += static_cast<double>(n) * step;
        }
        return total + c_avg + tr.tile_c / m_bpc + m_latency;
    }

    // pipeline() of all six loop orders when every dimension has several tiles and every buffer is
    // double-buffered, with what the orders share computed once: the same doubles, and the first of the
    // fastest in next_permutation's order (m n k, m k n, n m k, n k m, k m n, k n m), as the loop in
    // evaluate_unless takes it. With the innermost loop z, the loops outside it (x, y) change all three
    // operands at each of their steps (any two dimensions index A, B and C); z alone changes the
    // operands it indexes. A kept operand changes at every step when z indexes it, else at each of the
    // cx·cy steps of the outer loops. Partial sums move at reload 1 where the advancing loop is k, 2
    // where k is outer to it, 0 where k is inner (pipeline()).
    double pipeline_all_orders(const std::array<int64_t, 3>& cnt, double c_avg, const Traffic& tr,
                               std::array<Dim, 3>& best_order) const {
        constexpr std::array<std::array<Dim, 3>, 6> k_orders = {{{dim_m, dim_n, dim_k},
                                                                 {dim_m, dim_k, dim_n},
                                                                 {dim_n, dim_m, dim_k},
                                                                 {dim_n, dim_k, dim_m},
                                                                 {dim_k, dim_m, dim_n},
                                                                 {dim_k, dim_n, dim_m}}};
        const int64_t all_steps = cnt[0] * cnt[1] * cnt[2];
        std::array<double, 6> est{};
        for (Dim z : {dim_m, dim_n, dim_k}) {
            const bool za = (bit(z) & k_a_dims) != 0, zb = (bit(z) & k_b_dims) != 0,
                       zc = (bit(z) & k_c_dims) != 0;
            const int64_t outer = all_steps / cnt[z];  // cx·cy
            const double tile_a =
                m_keep_a ? m_total[0] / static_cast<double>(za ? all_steps : outer) : tr.tile_a;
            const double tile_b =
                m_keep_b ? m_total[1] / static_cast<double>(zb ? all_steps : outer) : tr.tile_b;
            const double first = (tile_a + tile_b) / m_bpc + m_latency;
            // The step of z alone: C changes only when z is m or n, and then k is outer (reload 2).
            const double step_z = std::max(
                c_avg, (((za ? tile_a : 0.0) + (zb ? tile_b : 0.0)) + (zc ? tr.c_out[2] : 0.0)) / m_bpc);
            const auto step_all = [&](size_t reload) {
                return std::max(c_avg, ((tile_a + tile_b) + tr.c_out[reload]) / m_bpc);
            };
            for (size_t o = 0; o < 6; ++o) {
                const std::array<Dim, 3>& order = k_orders[o];
                if (order[2] != z) continue;
                const Dim x = order[0], y = order[1];
                const int64_t s0 = cnt[x] - 1, s1 = cnt[x] * (cnt[y] - 1), s2 = outer * (cnt[z] - 1);
                const size_t r0 = x == dim_k ? 1 : 0;
                const size_t r1 = y == dim_k ? 1 : x == dim_k ? 2 : 0;
                double total = first;
                total += static_cast<double>(s0) * step_all(r0);
                total += static_cast<double>(s1) * step_all(r1);
                total += static_cast<double>(s2) * step_z;
                est[o] = total + c_avg + tr.tile_c / m_bpc + m_latency;
            }
        }
        double best = std::numeric_limits<double>::infinity();
        for (size_t o = 0; o < 6; ++o)
            if (est[o] < best) {
                best = est[o];
                best_order = k_orders[o];
            }
        return best;
    }

    const MappingContext& m_ctx;
    const GemmJob& m_job;
    Partition m_part;
    ArrayShape m_array;
    std::array<double, 3> m_total{};  // bytes of A, B, C per group in main memory
    std::array<bool, 3> m_db{};
    bool m_all_db = false;
    double m_acc = 1;  // accumulator bytes per word byte
    bool m_keep_a = false, m_keep_b = false;
    double m_ifmap_cap = 0;  // MappingContext::ifmap_tile_capacity(), asked once
    CapacityWindow* m_window = nullptr;
    double m_bpc = 0, m_latency = 0;
    // Per buffer port (ifmap, filter, ofmap): bytes per word, and the bandwidth one array gets
    // (port_stretch).
    std::array<double, 3> m_port_word{}, m_port_share{};
};

}  // namespace

void ComputeMemo::bind(const Tag& tag) {
    if (!m_table.empty() && tag == m_tag) return;
    if (m_table.empty() || m_generation == std::numeric_limits<uint32_t>::max()) {
        m_table.assign(size_t{1} << m_bits, Entry{});
        m_mask = m_table.size() - 1;
        m_limit = m_table.size() / 2;
        m_generation = 0;
    }
    ++m_generation;  // a model whose layers alternate data types must not clear the table at each switch
    m_tag = tag;
    m_used = 0;
}

void ComputeMemo::resize(int bits) {
    std::vector<Entry> old = std::move(m_table);
    m_table.assign(size_t{1} << bits, Entry{});
    m_bits = bits;
    m_mask = m_table.size() - 1;
    m_limit = m_table.size() / 2;
    const uint32_t live = m_generation;
    m_used = 0;
    for (const Entry& e : old) {
        if (e.generation != live || e.state == 0) continue;
        Entry* to = slot(e.key);
        *to = e;
        to->generation = m_generation;
        ++m_used;
    }
}

std::optional<std::array<uint64_t, 2>> ComputeMemo::pack(const std::array<int64_t, 6>& key) {
    constexpr int64_t limit = int64_t{1} << k_key_bits;
    std::array<uint64_t, 2> packed{};
    for (size_t i = 0; i < key.size(); ++i) {
        if (key[i] < 0 || key[i] >= limit) return std::nullopt;
        packed[i / 3] |= static_cast<uint64_t>(key[i]) << (k_key_bits * static_cast<int>(i % 3));
    }
    return packed;
}

ComputeMemo::Entry* ComputeMemo::slot(const std::array<int64_t, 6>& key) {
    const std::optional<std::array<uint64_t, 2>> packed = pack(key);
    if (!packed) return nullptr;
    return slot(*packed);
}

ComputeMemo::Entry* ComputeMemo::slot(const std::array<uint64_t, 2>& key) {
    // Half full (linear probing stays short below that): doubled, or at the largest size emptied (a new
    // generation), before a slot is chosen.
    if (m_used >= m_limit) {
        if (m_bits < k_max_bits) {
            resize(m_bits + 1);
        } else {
            if (m_generation == std::numeric_limits<uint32_t>::max()) {
                m_table.assign(m_table.size(), Entry{});
                m_generation = 0;
            }
            ++m_generation;
            m_used = 0;
        }
    }
    // Multiplicative hashing; the slot from the top bits (the low bits of a product see only the low
    // bits of the extents, which are mostly multiples of the array's side).
    const uint64_t h = ((key[0] * 0x9e3779b97f4a7c15u) ^ key[1]) * 0x9e3779b97f4a7c15u;
    for (size_t i = static_cast<size_t>(h >> (64 - m_bits));; i = (i + 1) & m_mask) {
        Entry& e = m_table[i];
        if (e.generation != m_generation) {
            e.state = 0;  // stored under another binding: free
            e.generation = m_generation;
        }
        if (e.state == 0) {
            e.key = key;
            return &e;
        }
        if (e.key[0] == key[0] && e.key[1] == key[1]) return &e;  // not std::array's ==: a memcmp call
    }
}

ComputeMemo::Trace& ComputeMemo::trace(const SearchKey& key) {
    if (m_trace_entries > k_max_trace_entries || m_traces.size() > k_max_trace_entries / 8) {
        m_traces.clear();
        m_trace_entries = 0;
    }
    m_scratch.clear();
    return m_traces[key];
}

ComputeMemo& ComputeMemo::for_this_thread() {
    thread_local ComputeMemo memo;
    return memo;
}

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

TilePlan search(const MappingContext& ctx, const GemmJob& job, const Partition& part,
                CapacityWindow* window) {
    const Evaluator ev(ctx, job, part, window);
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
    // Reused from one search to the next (one runs per GEMM job and split): a fresh vector would grow
    // by reallocation every time, touching new heap pages that cost a page fault each.
    thread_local std::vector<TilePlan> evaluated;
    evaluated.clear();
    // The evaluations of this job's previous search with the same key, and this one's for the next.
    ComputeMemo::Trace* kept = nullptr;
    TraceCursor trace;
    if (ctx.compute_memo && ctx.compute_memo->keeps_traces()) {
        kept = &ctx.compute_memo->trace(ev.search_key());
        trace.prev = kept;
        trace.out = &ctx.compute_memo->trace_scratch();
    }
    TraceCursor* const cursor = kept ? &trace : nullptr;
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
                // A candidate that cannot beat this loop's best nor come within 2 % of the fastest
                // seen (so not of the fastest at the end) changes nothing but the count of worse ones.
                const std::optional<double> est =
                    ev.evaluate_unless(tm, tn, tk, cand, best_m, best_e * 1.02, cursor);
                if (!est) {
                    if (++worse_m >= 2) break;
                    continue;
                }
                const double e = *est;
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
    if (kept) ctx.compute_memo->keep_scratch(*kept);
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

TileSchedule tile_schedule(const FoldGeometry& g, Cycles cycles) {
    // What tile_schedule(g, fold_stats(g, 0), fold_stats(g, last), cycles) reads of the two folds: their
    // stream starts and extents (fold 0 is the first row fold, the last the last row and column fold).
    TileSchedule s;
    s.lead = fold_stream_start(g, 0).count();
    s.last_start = fold_stream_start(g, g.folds() - 1).count();
    s.stream = g.t;
    s.first_rows = g.row_folds == 1 ? g.rows_last : g.array_rows;
    s.last_rows = g.rows_last;
    s.last_cols = g.cols_last;
    s.folds = g.folds();
    s.done = cycles.count();
    return s;
}

TileSchedule tile_schedule(const FoldGeometry& g) { return tile_schedule(g, gemm_cycles(g)); }

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
    const double span_d = static_cast<double>(span);
    for (const auto& p : ports) {
        const double x = p.words * p.word_bytes / (p.bandwidth / share) * (1 - 1e-12);
        // A port that needs no more than the span stretches nothing (span is whole, so ceil(x) <= span
        // too, and need − span <= 0 <= cycles): the ceil, the costliest step, is skipped (as in the
        // search's port_stretch_cycles).
        if (!(x > span_d)) continue;
        const double need = std::ceil(x);
        if (need - span_d > static_cast<double>(out.cycles)) {
            out.cycles = static_cast<int64_t>(need) - span;
            out.cause = p.cause;
        }
    }
    return out;
}

namespace {

// The splits plan_gemm tries, in its order.
std::vector<Split> splits_for(const MappingContext& ctx, const GemmJob& job) {
    if (ctx.spec->arrays == 1) return {Split::none};
    std::vector<Split> splits = {Split::n, Split::m};
    if (job.shape.batch > 1 && !job.sequential) splits.insert(splits.begin(), Split::batch);
    return splits;
}

}  // namespace

double ifmap_capacity_settled(const MappingContext& ctx, const GemmJob& job) {
    if (job.a_on_chip) return 0;
    // The capacity enters the search only through keep_a (the whole operand fits) and fits_a (a tile
    // fits); a tile's footprint is at most the whole operand's, so where every split keeps A, every
    // tile fits too and the search sees the same thing at any larger capacity.
    double need = 0;
    for (Split s : splits_for(ctx, job)) {
        const Partition p = make_partition(ctx, job, s);
        need = std::max(need, Evaluator(ctx, job, p).footprint_a(p.m, p.k));
    }
    return need;
}

namespace {

// plan_gemm without the memo of plans; `window` (if given) is narrowed as the searches compare footprints
// with the ifmap buffer's capacity.
TilePlan plan_gemm_searched(const MappingContext& ctx, const GemmJob& job, CapacityWindow* window) {
    if (ctx.spec->arrays == 1) return search(ctx, job, make_partition(ctx, job, Split::none), window);
    const std::vector<Split> splits = splits_for(ctx, job);
    TilePlan best;
    double best_e = std::numeric_limits<double>::infinity();
    std::optional<cfg::UserError> first_error;
    for (Split s : splits) {
        try {
            const TilePlan p = search(ctx, job, make_partition(ctx, job, s), window);
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

// Everything plan_gemm reads besides the ifmap buffer's capacity per tile (ComputeMemo::PlanKey): the job,
// the context's per-layer fields and the systolic section's fields the search reads (the ifmap buffer's
// capacity and the room other layers leave in it excepted), doubles by their bits. The context's device and
// op name enter only the messages of a failed search, which is not kept.
ComputeMemo::PlanKey plan_key(const MappingContext& ctx, const GemmJob& job) {
    const auto bits = [](double x) { return std::bit_cast<uint64_t>(x); };
    const auto u = [](int64_t x) { return static_cast<uint64_t>(x); };
    const SystolicSpec& s = *ctx.spec;
    const uint64_t flags = (job.sequential ? 1u : 0u) | (job.a_on_chip ? 2u : 0u) |
                           (ctx.stream_across_tiles ? 4u : 0u) | (s.ifmap.double_buffered ? 8u : 0u) |
                           (s.filter.double_buffered ? 16u : 0u) | (s.ofmap.double_buffered ? 32u : 0u) |
                           (static_cast<uint64_t>(s.dataflow) << 8) | (static_cast<uint64_t>(s.tiling) << 16);
    return {u(job.shape.batch),
            u(job.shape.m),
            u(job.shape.n),
            u(job.shape.k),
            bits(job.scale.a),
            bits(job.scale.b),
            bits(job.scale.c),
            flags,
            u(s.rows),
            u(s.cols),
            u(s.arrays),
            u(s.tile_m),
            u(s.tile_n),
            u(s.tile_k),
            bits(s.filter.capacity_bytes),
            bits(s.ofmap.capacity_bytes),
            bits(s.ifmap.bandwidth_Bps),
            bits(s.filter.bandwidth_Bps),
            bits(s.ofmap.bandwidth_Bps),
            bits(ctx.clock_hz),
            bits(ctx.dram_Bps),
            bits(ctx.dram_latency_s),
            bits(ctx.word_bytes),
            bits(ctx.acc_bytes),
            u(ctx.passes)};
}

}  // namespace

const TilePlan* ComputeMemo::find_plan(const PlanKey& key, double capacity) const {
    const auto it = m_plans.find(key);
    if (it == m_plans.end()) return nullptr;
    for (const KeptPlan& k : it->second)
        if (k.window.holds(capacity)) return &k.plan;
    return nullptr;
}

void ComputeMemo::keep_plan(const PlanKey& key, const CapacityWindow& window, const TilePlan& plan) {
    if (m_plan_count >= k_max_plans) {
        m_plans.clear();
        m_plan_count = 0;
    }
    std::vector<KeptPlan>& kept = m_plans[key];
    if (kept.size() >= k_max_plans_per_key) {
        m_plan_count -= kept.size();
        kept.clear();
    }
    kept.push_back({window, plan});
    ++m_plan_count;
}

TilePlan plan_gemm(const MappingContext& ctx, const GemmJob& job) {
    MLSIM_CHECK(job.shape.batch >= 1 && job.shape.m >= 1 && job.shape.n >= 1 && job.shape.k >= 1,
                "GEMM job with an empty dimension");
    ComputeMemo* memo = ctx.compute_memo;
    if (!memo) return plan_gemm_searched(ctx, job, nullptr);
    // A plan kept by an earlier search whose comparisons with the capacity all come out the same at this
    // one: the search would make the same comparisons, evaluate the same candidates and choose the same.
    const double capacity = ctx.ifmap_tile_capacity();
    const ComputeMemo::PlanKey key = plan_key(ctx, job);
    if (const TilePlan* kept = memo->find_plan(key, capacity)) {
        memo->count_plan_hit();
        return *kept;
    }
    CapacityWindow window;
    TilePlan p = plan_gemm_searched(ctx, job, &window);
    MLSIM_CHECK(window.holds(capacity), "tiling: a search's capacity window leaves out its own capacity");
    memo->keep_plan(key, window, p);
    return p;
}

}  // namespace mlsim::arch::systolic
