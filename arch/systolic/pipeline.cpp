#include "arch/systolic/pipeline.h"

#include <fmt/format.h>

#include <algorithm>
#include <cmath>
#include <optional>

#include "sim/core/bounded_buffer.h"
#include "sim/core/channel.h"
#include "sim/core/check.h"
#include "sim/core/clock_domain.h"
#include "sim/core/process.h"
#include "sim/core/simulator.h"

namespace mlsim::arch::systolic {

namespace {

// splitmix64: a fixed, portable mix, so operand values are the same on every machine.
uint64_t mix(uint64_t x) {
    x += 0x9e3779b97f4a7c15ULL;
    x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ULL;
    x = (x ^ (x >> 27)) * 0x94d049bb133111ebULL;
    return x ^ (x >> 31);
}

// Small signed values keep every product exact in int64 and still catch misplaced words.
Matrix random_matrix(int64_t rows, int64_t cols, uint64_t seed) {
    Matrix m(rows, cols);
    uint64_t state = mix(seed);
    for (int64_t& v : m.data) {
        state = mix(state);
        v = static_cast<int64_t>(state >> 60) - 8;
    }
    return m;
}

// Tile statistics of tile fidelity, memoized by shape: a job has at most a handful of tile shapes.
class TileStatsCache {
  public:
    TileStatsCache(Dataflow df, ArrayShape shape) : m_df(df), m_shape(shape) {}
    const TileRun& get(int64_t m, int64_t n, int64_t k) {
        for (const Entry& e : m_entries)
            if (e.m == m && e.n == n && e.k == k) return e.run;
        const FoldGeometry g = fold_geometry(m_df, m_shape, GemmShape{m, n, k});
        m_entries.push_back(Entry{m, n, k, TileRun{gemm_stats(g), tile_schedule(g)}});
        return m_entries.back().run;
    }

  private:
    struct Entry {
        int64_t m, n, k;
        TileRun run;
    };
    Dataflow m_df;
    ArrayShape m_shape;
    std::vector<Entry> m_entries;
};

// One array's share of a lockstep group: its instance and its range of the instance's M and N.
struct ArrayWork {
    int64_t instance = 0;
    int64_t m0 = 0, n0 = 0;  // offsets in the instance
    int64_t m = 0, n = 0;    // extents
};

}  // namespace

uint64_t StepList::dram_read() const {
    uint64_t r = 0;
    for (const Step& s : steps) {
        if (s.has(Step::a_new)) r += s.a_bytes;
        if (s.has(Step::b_new)) r += s.b_bytes;
        r += s.c_read();
    }
    return r;
}

uint64_t StepList::kept() const {
    uint64_t k = 0;
    for (const Step& s : steps) k += s.c_kept();
    return k;
}

uint64_t StepList::dram_write() const {
    uint64_t w = 0;
    for (const Step& s : steps) w += s.c_write();
    return w;
}

// --- cycle fidelity ----------------------------------------------------------------------------

CycleChecker::CycleChecker(ArrayShape shape, Dataflow dataflow) : m_grid(shape), m_dataflow(dataflow) {}

void CycleChecker::begin_instance(int64_t job, int64_t instance, const wl::GemmShape& shape) {
    const uint64_t seed = mix(static_cast<uint64_t>(job) * 1000003ULL + static_cast<uint64_t>(instance));
    Instance in;
    in.a = random_matrix(shape.m, shape.k, seed);
    in.b = random_matrix(shape.k, shape.n, ~seed);
    in.c = Matrix(shape.m, shape.n);
    m_open[{job, instance}] = std::move(in);
}

TileRun CycleChecker::run_tile(int64_t job, int64_t instance, int64_t m0, int64_t n0, int64_t k0, int64_t tm,
                               int64_t tn, int64_t tk) {
    auto it = m_open.find({job, instance});
    MLSIM_CHECK(it != m_open.end(), "cycle fidelity: a tile of an instance that was not begun");
    Instance& in = it->second;
    Matrix a(tm, tk), b(tk, tn);
    for (int64_t i = 0; i < tm; ++i)
        for (int64_t l = 0; l < tk; ++l) a.at(i, l) = in.a.at(m0 + i, k0 + l);
    for (int64_t l = 0; l < tk; ++l)
        for (int64_t j = 0; j < tn; ++j) b.at(l, j) = in.b.at(k0 + l, n0 + j);
    const CycleRun run = m_grid.run(m_dataflow, a, b);
    for (int64_t i = 0; i < tm; ++i)
        for (int64_t j = 0; j < tn; ++j) in.c.at(m0 + i, n0 + j) += run.c.at(i, j);
    ++m_tiles;
    // Where the folds sat, as the grid measured them.
    const FoldGeometry g = fold_geometry(m_dataflow, m_grid.shape(), GemmShape{tm, tn, tk});
    MLSIM_CHECK(!run.folds.empty(), "cycle fidelity: a tile without folds");
    return TileRun{run.stats, tile_schedule(g, run.folds.front(), run.folds.back(), run.stats.cycles)};
}

void CycleChecker::verify(int64_t job, int64_t instance) {
    auto it = m_open.find({job, instance});
    MLSIM_CHECK(it != m_open.end(), "cycle fidelity: verifying an instance that was not begun");
    const Instance& in = it->second;
    for (int64_t i = 0; i < in.c.rows; ++i)
        for (int64_t j = 0; j < in.c.cols; ++j) {
            int64_t ref = 0;
            for (int64_t l = 0; l < in.a.cols; ++l) ref += in.a.at(i, l) * in.b.at(l, j);
            MLSIM_CHECK(in.c.at(i, j) == ref,
                        fmt::format("cycle fidelity: the PE grid computed C[{}][{}] = {} but A·B gives {} "
                                    "(job {}, instance {})",
                                    i, j, in.c.at(i, j), ref, job, instance));
        }
    m_open.erase(it);
}

// --- steps -------------------------------------------------------------------------------------

StepList build_steps(const MappingContext& ctx, const std::vector<GemmJob>& jobs,
                     const std::vector<TilePlan>& plans, CycleChecker* checker, bool keep_output) {
    MLSIM_CHECK(jobs.size() == plans.size(), "one plan per GEMM job");
    const SystolicSpec& spec = *ctx.spec;
    const Dataflow df = spec.dataflow;
    const int64_t passes = ctx.passes;
    StepList out;
    out.dataflow = df;
    out.array_rows = spec.rows * passes;
    TileStatsCache cache(df, spec.shape());
    size_t total_steps = 0;
    for (const TilePlan& p : plans) total_steps += static_cast<size_t>(p.steps() * p.part.groups);
    out.steps.reserve(total_steps);
    std::vector<ArrayWork> work;

    // A step whose numbers wait for its successor: streaming on into it decides what it saves.
    struct Tile {
        int64_t m = 0, n = 0;
        TileRun run;
    };
    struct Pending {
        Step step;
        int64_t k_tile = 0;
        std::vector<Tile> tiles;
    };
    // Two in turn: the step being built and the one waiting for it (their tile vectors are reused, not
    // allocated per step).
    std::array<Pending, 2> slots;
    size_t building = 0;       // the slot the next step is built in; the other one waits, if any
    bool has_pending = false;  // the other slot holds a step waiting for its successor
    const auto finish = [&](Pending& st, bool continued) {
        Step& s = st.step;
        const bool continues = s.has(Step::streams_on);
        for (const Tile& t : st.tiles) {
            GemmStats g = t.run.stats;
            const TileSchedule& sch = t.run.schedule;
            // Streaming on: the stationary operand is already in the PEs (ws: B, is: A), and in os the
            // outputs stay in the accumulators: not drained after the tile before, not read back.
            if (continues && df == Dataflow::ws) g.counts.b_reads = g.counts.b_hops = 0;
            if (continues && df == Dataflow::is) g.counts.a_reads = g.counts.a_hops = 0;
            if (continued && df == Dataflow::os) g.counts.out_writes = g.counts.out_hops = 0;
            const bool accumulate = st.k_tile > 0 && !(continues && df == Dataflow::os);
            const int64_t span = (sch.last_start - sch.lead + sch.stream) * passes;
            const PortStretch ps = port_stretch(ctx, g, span, t.m, t.n, accumulate);
            out.counts += g.counts;
            if (accumulate) out.accumulate_reads += static_cast<double>(t.m * t.n);
            s.lead = std::max(s.lead, sch.lead * passes);
            // The arrays run in lockstep: the one whose last stream starts latest sets the step's pace,
            // and its stationary shifts and port stretch are what the step waits for.
            const int64_t last = (sch.last_start - sch.lead) * passes + ps.cycles;
            const int64_t shift = (sch.last_start - sch.lead - (sch.folds - 1) * sch.stream) * passes;
            if (last > s.last_start || (last == s.last_start && shift + ps.cycles > s.shift + s.port_stall)) {
                s.shift = shift;
                s.port_stall = ps.cycles;
                s.port_cause = ps.cause;
            }
            s.last_start = std::max(s.last_start, last);
            s.stream = std::max(s.stream, sch.stream * passes);
            s.hold = std::max(s.hold, sch.hold(df, spec.rows) * passes);
            s.done = std::max(s.done, (sch.done - sch.lead) * passes + ps.cycles);
            s.a_free = std::max(s.a_free, (sch.a_free(df) - sch.lead) * passes + ps.cycles);
            s.b_free = std::max(s.b_free, (sch.b_free(df) - sch.lead) * passes + ps.cycles);
        }
        MLSIM_CHECK(s.done > 0, "a tile step in which no array computes");
        out.steps.push_back(s);
    };

    for (size_t ji = 0; ji < jobs.size(); ++ji) {
        const GemmJob& job = jobs[ji];
        const TilePlan& plan = plans[ji];
        const Partition& part = plan.part;
        const wl::GemmShape& g = job.shape;
        const auto [tm, tn, tk] = plan.tile;
        if (!out.tiling.empty()) out.tiling += "; ";
        out.tiling += plan.describe();

        for (int64_t grp = 0; grp < part.groups; ++grp) {
            work.clear();
            for (int64_t a = 0; a < part.arrays_used; ++a) {
                ArrayWork w{grp, 0, 0, g.m, g.n};
                switch (part.split) {
                    case Split::none:
                        break;
                    case Split::batch:
                        w.instance = grp * spec.arrays + a;
                        break;
                    case Split::n:
                        w.n0 = a * part.chunk;
                        w.n = std::min(part.chunk, g.n - w.n0);
                        break;
                    case Split::m:
                        w.m0 = a * part.chunk;
                        w.m = std::min(part.chunk, g.m - w.m0);
                        break;
                }
                if (w.instance >= g.batch || w.m <= 0 || w.n <= 0) continue;
                work.push_back(w);
            }
            if (checker)
                for (const ArrayWork& w : work)
                    if (w.m0 == 0 && w.n0 == 0)
                        checker->begin_instance(static_cast<int64_t>(ji), w.instance, g);

            // Kept operands: which of their tiles the buffer holds already.
            std::vector<char> seen_a(plan.keep_a ? static_cast<size_t>(plan.count[dim_m] * plan.count[dim_k])
                                                 : 0);
            std::vector<char> seen_b(plan.keep_b ? static_cast<size_t>(plan.count[dim_k] * plan.count[dim_n])
                                                 : 0);
            std::array<int64_t, 3> idx{}, prev{-1, -1, -1};
            const std::array<Dim, 3>& o = plan.order;
            for (idx[o[0]] = 0; idx[o[0]] < plan.count[o[0]]; ++idx[o[0]])
                for (idx[o[1]] = 0; idx[o[1]] < plan.count[o[1]]; ++idx[o[1]])
                    for (idx[o[2]] = 0; idx[o[2]] < plan.count[o[2]]; ++idx[o[2]]) {
                        const int64_t i = idx[dim_m], j = idx[dim_n], l = idx[dim_k];
                        Pending& cur = slots[building];
                        cur.step = Step{};
                        cur.tiles.clear();
                        cur.k_tile = l;
                        Step& s = cur.step;
                        const bool first = prev[0] < 0;
                        const bool a_changed = first || i != prev[dim_m] || l != prev[dim_k];
                        const bool b_changed = first || l != prev[dim_k] || j != prev[dim_n];
                        const bool c_changed = first || i != prev[dim_m] || j != prev[dim_n];
                        prev = idx;
                        if (a_changed && !job.a_on_chip) {
                            const auto at = static_cast<size_t>(i * plan.count[dim_k] + l);
                            if (!plan.keep_a || !seen_a[at]) s.flags |= Step::a_new;
                            if (plan.keep_a) seen_a[at] = 1;
                        }
                        if (b_changed) {
                            const auto at = static_cast<size_t>(l * plan.count[dim_n] + j);
                            if (!plan.keep_b || !seen_b[at]) s.flags |= Step::b_new;
                            if (plan.keep_b) seen_b[at] = 1;
                        }
                        if (c_changed) s.flags |= Step::c_new;
                        if (c_changed && l > 0) s.flags |= Step::c_reload;
                        if (l == plan.count[dim_k] - 1) s.flags |= Step::c_final;
                        if (keep_output && ji + 1 == jobs.size()) s.flags |= Step::c_keep;
                        if (first && (grp == 0 || job.sequential)) s.flags |= Step::barrier;

                        const int64_t k0 = l * tk, kk = std::min(tk, g.k - k0);
                        double a_words = 0, b_words = 0, c_words = 0;
                        bool one_fold = true;
                        for (const ArrayWork& w : work) {
                            const int64_t mm = std::min(tm, w.m - i * tm), nn = std::min(tn, w.n - j * tn);
                            if (mm <= 0 || nn <= 0) continue;  // this array has no tile in this step
                            Tile t{mm, nn,
                                   checker ? checker->run_tile(static_cast<int64_t>(ji), w.instance,
                                                               w.m0 + i * tm, w.n0 + j * tn, k0, mm, nn, kk)
                                           : cache.get(mm, nn, kk)};
                            one_fold = one_fold && t.run.schedule.folds == 1;
                            cur.tiles.push_back(t);
                            a_words += static_cast<double>(mm * kk);
                            b_words += static_cast<double>(kk * nn);
                            c_words += static_cast<double>(mm * nn);
                        }
                        // The stationary operand stays and each array holds it in one fold: stream on.
                        const bool stationary_stays = df == Dataflow::ws   ? !b_changed
                                                      : df == Dataflow::is ? !a_changed
                                                                           : !c_changed;
                        if (ctx.stream_across_tiles && !first && stationary_stays && one_fold)
                            s.flags |= Step::streams_on;
                        // A shared operand is one tile for all arrays, fetched and stored once.
                        if (part.shared_a()) a_words = static_cast<double>(std::min(tm, g.m - i * tm) * kk);
                        if (part.shared_b()) b_words = static_cast<double>(kk * std::min(tn, g.n - j * tn));
                        if (s.has(Step::a_new)) s.a_bytes = operand_bytes(ctx, a_words, job.scale.a);
                        if (s.has(Step::b_new)) s.b_bytes = operand_bytes(ctx, b_words, job.scale.b);
                        s.c_bytes = operand_bytes(ctx, c_words, job.scale.c);
                        s.c_partial_bytes =
                            static_cast<uint64_t>(std::ceil(c_words * ctx.partial_bytes() * job.scale.c));
                        if (has_pending) finish(slots[1 - building], s.has(Step::streams_on));
                        has_pending = true;
                        building = 1 - building;
                    }
            if (checker)
                for (const ArrayWork& w : work)
                    if (w.m0 == 0 && w.n0 == 0) checker->verify(static_cast<int64_t>(ji), w.instance);
        }
    }
    if (has_pending) finish(slots[1 - building], false);
    // What is used for the last time before a step that loads its successor (or the layer's end); an
    // operand read in place (on chip) is never acquired, so never released.
    bool a_held = false, b_held = false;
    for (size_t t = 0; t < out.steps.size(); ++t) {
        const bool end = t + 1 == out.steps.size();
        const Step* next = end ? nullptr : &out.steps[t + 1];
        Step& s = out.steps[t];
        a_held = a_held || s.has(Step::a_new);
        b_held = b_held || s.has(Step::b_new);
        if (a_held && (end || next->has(Step::a_new))) {
            s.flags |= Step::a_last;
            a_held = false;
        }
        if (b_held && (end || next->has(Step::b_new))) {
            s.flags |= Step::b_last;
            b_held = false;
        }
        if (end || next->has(Step::c_new)) s.flags |= Step::c_end;
    }
    return out;
}

void add_compulsory(StepList& list, double read_bytes, double write_bytes, bool weights) {
    if (list.steps.empty()) return;
    const double r = static_cast<double>(list.dram_read());
    if (r < read_bytes) {
        const auto extra = static_cast<uint64_t>(std::ceil(read_bytes - r));
        // Into the first load of the weights when the op has them, else of its inputs; failing that
        // (an operand read in place), into whatever the layer does fetch first.
        uint64_t* target = nullptr;
        for (Step& s : list.steps)
            if (s.has(weights ? Step::b_new : Step::a_new)) {
                target = weights ? &s.b_bytes : &s.a_bytes;
                break;
            }
        for (Step& s : list.steps) {
            if (target) break;
            if (s.has(Step::b_new)) target = &s.b_bytes;
            if (s.has(Step::a_new)) target = &s.a_bytes;
        }
        MLSIM_CHECK(target != nullptr, "compulsory reads for a layer that fetches nothing");
        *target += extra;
    }
    const double w = static_cast<double>(list.dram_write());
    if (w < write_bytes) list.steps.back().c_extra += static_cast<uint64_t>(std::ceil(write_bytes - w));
}

LevelAccesses level_accesses(const StepList& list, double word_bytes, double acc_bytes) {
    if (acc_bytes <= 0) acc_bytes = word_bytes;
    LevelAccesses acc;
    for (const Step& s : list.steps) {
        if (s.has(Step::a_new)) acc.ifmap.write += static_cast<double>(s.a_bytes);
        if (s.has(Step::b_new)) acc.filter.write += static_cast<double>(s.b_bytes);
        acc.ofmap.write += static_cast<double>(s.c_read());
        // A drain reads accumulator words out of the buffer, whatever width leaves for main memory.
        if (s.has(Step::c_end)) acc.ofmap.read += static_cast<double>(s.c_partial_bytes + s.c_extra);
        // A finished output kept for a later layer goes to the activations' buffer.
        acc.ifmap.write += static_cast<double>(s.c_kept());
    }
    const AccessCounts& c = list.counts;
    acc.ifmap.read += static_cast<double>(c.a_reads) * word_bytes;
    acc.filter.read += static_cast<double>(c.b_reads) * word_bytes;
    acc.ofmap.write += static_cast<double>(c.out_writes) * acc_bytes;
    acc.ofmap.read += (static_cast<double>(c.out_reads) + list.accumulate_reads) * acc_bytes;
    acc.dram.read = static_cast<double>(list.dram_read());
    acc.dram.write = static_cast<double>(list.dram_write());
    return acc;
}

// --- the event-driven run ------------------------------------------------------------------------

namespace {

class PipelineSim {
  public:
    PipelineSim(const MappingContext& ctx, const StepList& list)
        : m_ctx(ctx),
          m_list(list),
          m_clock(static_cast<uint64_t>(std::ceil(ctx.clock_hz))),
          // Rounding the bandwidth down keeps every transfer at least as long as the roofline charges.
          m_dram(m_sim, "dram", std::max<uint64_t>(1, static_cast<uint64_t>(std::floor(ctx.dram_Bps))),
                 Tick::from_seconds(ctx.dram_latency_s)),
          // The buffers' counters are never read (run() keeps the dram.* rows): not registered.
          m_ifmap(m_sim, "ifmap", ctx.spec->ifmap.double_buffered ? 2 : 1, BoundedBuffer::Unregistered{}),
          m_filter(m_sim, "filter", ctx.spec->filter.double_buffered ? 2 : 1, BoundedBuffer::Unregistered{}),
          m_ofmap(m_sim, "ofmap", ctx.spec->ofmap.double_buffered ? 2 : 1, BoundedBuffer::Unregistered{}),
          m_done(m_sim, "finished_runs", std::max<uint64_t>(1, runs(list)), BoundedBuffer::Unregistered{}) {}

    PipelineTiming run() {
        m_sim.spawn(loader());
        m_sim.spawn(compute());
        m_sim.spawn(drainer());
        m_sim.run();
        MLSIM_CHECK(
            m_loaded == m_list.steps.size() && m_computed == m_list.steps.size() && m_drained == runs(m_list),
            fmt::format("systolic pipeline stopped early (loaded {}, computed {}, drained {} of {} steps / "
                        "{} runs): a buffer protocol deadlock",
                        m_loaded, m_computed, m_drained, m_list.steps.size(), runs(m_list)));
        MLSIM_CHECK(m_dram.bytes() == m_list.dram_read() + m_list.dram_write(),
                    "main-memory channel carried other bytes than the steps asked for");
        MLSIM_CHECK(
            m_t.busy > 0 && m_end_edge == m_t.busy + m_t.stall_weight + m_t.stall_input + m_t.stall_output,
            "systolic pipeline: stalls exceed the compute timeline");
        const Tick end = std::max(m_clock.edge(Cycles{m_end_edge}), m_drain_end);
        m_t.cycles = m_clock.edge_at_or_after(end).count();
        // After the last step the arrays wait for the outputs to reach main memory.
        m_t.stall_output += m_t.cycles - m_end_edge;
        m_t.events = m_sim.events_run();
        m_t.dram_busy = static_cast<int64_t>(
            std::ceil(static_cast<double>(m_dram.busy_time_ps()) * 1e-12 * m_ctx.clock_hz * (1 - 1e-12)));
        // The engine's counters of the main-memory channel, for the layer's metrics.
        m_t.stats = m_sim.stats().dump("dram.");
        return m_t;
    }

  private:
    static uint64_t runs(const StepList& list) {
        uint64_t n = 0;
        for (const Step& s : list.steps) n += s.has(Step::c_end);
        return n;
    }

    // Issues a transfer of `bytes` between main memory and a buffer port of `port_Bps` and runs `done`
    // when both have moved the last byte: at the channel's arrival, or later when the port (which moves
    // one transfer after another) is the slower of the two. The caller does not wait: several
    // transfers may be in flight, and the channel serves them in order.
    void transfer(uint64_t bytes, double port_Bps, Tick& port_free, Callback done) {
        const Tick port_done =
            std::max(m_sim.now(), port_free) + Tick::from_seconds(static_cast<double>(bytes) / port_Bps);
        const Tick arrival = m_dram.arrival_if_sent_now(bytes);
        if (port_done <= arrival) {
            m_dram.send(bytes, done);
            port_free = arrival;
            return;
        }
        m_dram.send(bytes, Callback{[] {}});
        m_sim.schedule_at(port_done, done);
        port_free = port_done;
    }

    Process loader() {
        const SystolicSpec& s = *m_ctx.spec;
        for (const Step& st : m_list.steps) {
            if (st.has(Step::b_new)) {
                co_await m_filter.reserve(1);
                if (st.b_bytes > 0)
                    transfer(st.b_bytes, s.filter.bandwidth_Bps, m_port_filter,
                             callback<&BoundedBuffer::commit>(&m_filter, 1));
                else
                    m_filter.commit(1);
            }
            if (st.has(Step::a_new)) {
                co_await m_ifmap.reserve(1);
                if (st.a_bytes > 0)
                    transfer(st.a_bytes, s.ifmap.bandwidth_Bps, m_port_ifmap,
                             callback<&BoundedBuffer::commit>(&m_ifmap, 1));
                else
                    m_ifmap.commit(1);
            }
            if (st.has(Step::c_new)) {
                co_await m_ofmap.reserve(1);
                if (st.c_read() > 0)
                    transfer(st.c_read(), s.ofmap.bandwidth_Bps, m_port_ofmap_in,
                             callback<&BoundedBuffer::commit>(&m_ofmap, 1));
                else
                    m_ofmap.commit(1);  // a fresh output tile starts from zero
            }
            ++m_loaded;
        }
    }

    // The first clock edge at or after now.
    int64_t now_edge() const { return m_clock.edge_at_or_after(m_sim.now()).count(); }

    // The arrays work through the steps in order; each step's first stream starts at S, the earliest
    // cycle that (1) the array allows after the step before (the fold rule of dataflow.h across
    // tiles: after that step's last stream, and after its shadow registers are free plus this step's
    // preload; right behind it when it streams on; after every earlier output for a barrier), (2) its
    // stationary operand has arrived plus its preload, (3) its streamed operand and its output slot are
    // there. The part of S beyond (1) is a stall, charged to the operands in the order they are
    // awaited (weights, inputs, outputs). An input's buffer half is released once the array has read
    // its last word; a finished output run goes to the drainer once it is all written, in step order.
    Process compute() {
        const Dataflow df = m_list.dataflow;
        int64_t end = 0;  // one past the last output written so far
        int64_t prev_last = 0, prev_stream = 0, prev_hold = 0;
        bool have_prev = false;
        for (const Step& st : m_list.steps) {
            const int64_t pre = st.has(Step::streams_on) ? 0 : st.lead;
            int64_t at = 0;  // S as the array allows it
            if (!have_prev || st.has(Step::barrier))
                at = end + pre;
            else if (st.has(Step::streams_on))
                at = prev_last + prev_stream;
            else
                at = prev_last + std::max(prev_stream, prev_hold + pre);
            // The array waits for its stationary operand to shift in (or, os, its outputs to shift out)
            // where no stream hides it: before this step's first stream, and between its folds.
            int64_t shift = st.shift;
            if (!have_prev || st.has(Step::barrier))
                shift += pre;
            else if (!st.has(Step::streams_on))
                shift += std::max<int64_t>(0, at - (prev_last + prev_stream));
            int64_t& shift_cause = df == Dataflow::ws   ? m_t.stall_weight
                                   : df == Dataflow::is ? m_t.stall_input
                                                        : m_t.stall_output;
            int64_t& shift_chip = df == Dataflow::ws   ? m_t.chip_weight
                                  : df == Dataflow::is ? m_t.chip_input
                                                       : m_t.chip_output;
            shift_cause += shift;
            shift_chip += shift;
            m_t.shift += shift;
            // Wait until the operands are first needed: the stationary one `pre` cycles ahead.
            if (const Tick need = m_clock.edge(Cycles{at - pre}); need > m_sim.now())
                co_await wait_until(need);
            if (st.has(Step::b_new)) {
                co_await m_filter.acquire(1);
                const int64_t ready = now_edge() + (df == Dataflow::ws ? pre : 0);
                if (ready > at) m_t.stall_weight += ready - at, at = ready;
            }
            if (st.has(Step::a_new)) {
                co_await m_ifmap.acquire(1);
                const int64_t ready = now_edge() + (df == Dataflow::is ? pre : 0);
                if (ready > at) m_t.stall_input += ready - at, at = ready;
            }
            if (st.has(Step::c_new)) {
                co_await m_ofmap.acquire(1);
                const int64_t ready = now_edge();
                if (ready > at) m_t.stall_output += ready - at, at = ready;
            }
            switch (st.port_cause) {
                case StallCause::weight:
                    m_t.stall_weight += st.port_stall;
                    m_t.chip_weight += st.port_stall;
                    break;
                case StallCause::input:
                    m_t.stall_input += st.port_stall;
                    m_t.chip_input += st.port_stall;
                    break;
                case StallCause::output:
                    m_t.stall_output += st.port_stall;
                    m_t.chip_output += st.port_stall;
                    break;
            }
            const int64_t done = at + st.done;
            const Tick done_at = m_clock.edge(Cycles{done});
            // A buffer half may be refilled once the array has read its last word.
            if (st.has(Step::a_last))
                m_sim.schedule_at(m_clock.edge(Cycles{at + st.a_free}),
                                  callback<&BoundedBuffer::release>(&m_ifmap, 1));
            if (st.has(Step::b_last))
                m_sim.schedule_at(m_clock.edge(Cycles{at + st.b_free}),
                                  callback<&BoundedBuffer::release>(&m_filter, 1));
            if (st.has(Step::c_end)) {
                // Output runs drain in step order, each once it is all written.
                m_handoff = std::max(m_handoff, done_at);
                m_sim.schedule_at(m_handoff, callback<&PipelineSim::hand_off>(this));
            }
            end = std::max(end, done);
            prev_last = at + st.last_start;
            prev_stream = st.stream;
            prev_hold = st.hold;
            have_prev = true;
            ++m_computed;
        }
        m_end_edge = end;
        m_t.busy = end - m_t.stall_weight - m_t.stall_input - m_t.stall_output;
    }

    void hand_off() {
        m_done.request(BoundedBuffer::Request::put, 1, Callback{[] {}});
    }

    // The ofmap slot is free again once its bytes have left: to main memory, or (a finished output
    // kept for a later layer) into the ifmap buffer, through the slower of the two buffers' ports.
    Process drainer() {
        const SystolicSpec& s = *m_ctx.spec;
        const double on_chip_Bps = std::min(s.ofmap.bandwidth_Bps, s.ifmap.bandwidth_Bps);
        for (const Step& st : m_list.steps) {
            if (!st.has(Step::c_end)) continue;
            co_await m_done.get(1);
            if (const uint64_t kept = st.c_kept(); kept > 0) {
                m_port_ofmap_out = std::max(m_sim.now(), m_port_ofmap_out) +
                                   Tick::from_seconds(static_cast<double>(kept) / on_chip_Bps);
                m_drain_end = std::max(m_drain_end, m_port_ofmap_out);
            }
            if (const uint64_t bytes = st.c_write(); bytes > 0) {
                transfer(bytes, s.ofmap.bandwidth_Bps, m_port_ofmap_out,
                         callback<&BoundedBuffer::release>(&m_ofmap, 1));
                m_drain_end = std::max(m_drain_end, m_port_ofmap_out);
            } else if (st.c_kept() > 0) {
                m_sim.schedule_at(m_port_ofmap_out, callback<&BoundedBuffer::release>(&m_ofmap, 1));
            } else {
                m_ofmap.release(1);
                m_drain_end = std::max(m_drain_end, m_sim.now());
            }
            ++m_drained;
        }
    }

    const MappingContext& m_ctx;
    const StepList& m_list;
    Simulator m_sim;
    ClockDomain m_clock;
    Channel m_dram;
    BoundedBuffer m_ifmap, m_filter, m_ofmap;
    BoundedBuffer m_done;  // finished output runs, from compute to the drainer
    PipelineTiming m_t;
    Tick m_drain_end;  // when the last output byte reaches main memory (or the ifmap buffer)
    Tick m_handoff;    // when the latest finished output run went to the drainer
    Tick m_port_ifmap, m_port_filter, m_port_ofmap_in, m_port_ofmap_out;  // when each port is free
    int64_t m_end_edge = 0;  // cycle at which the last step's compute ended
    uint64_t m_loaded = 0, m_computed = 0, m_drained = 0;
};

}  // namespace

PipelineTiming run_pipeline(const MappingContext& ctx, const StepList& list) {
    if (list.steps.empty()) return PipelineTiming{};
    PipelineSim sim(ctx, list);
    return sim.run();
}

}  // namespace mlsim::arch::systolic
