#include "arch/cpu/cpu_model.h"

#include <fmt/format.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <memory>
#include <optional>

#include "arch/cpu/cache_sim.h"
#include "arch/residency.h"
#include "arch/roofline/roofline.h"
#include "sim/config/error.h"
#include "sim/core/channel.h"
#include "sim/core/check.h"
#include "sim/core/simulator.h"

namespace mlsim::arch::cpu {

namespace {

int64_t ceil_div(int64_t a, int64_t b) { return (a + b - 1) / b; }

// The threads of a GEMM over its loops of a, b and c tiles (batch, MR row tiles, NR column tiles; a
// matrix-vector product: batch, 1, vectors of columns): ta x tb x tc <= cores, the split whose busiest
// thread has the fewest tiles, ceil(a/ta) x ceil(b/tb) x ceil(c/tc); among equals the most threads, then
// the outer loops split first. BLIS and oneDNN factor all of a socket's threads over the loops so (BLIS:
// bli_thread_partition_2x2, the "ic" and "jc"/"jr" ways); splitting the batch first and the rows next,
// each as far as the cores go, left cores idle wherever a loop's tiles did not divide them (32 row tiles
// on 56 cores: 32 threads; 56 tiles x 3 = 168 on 56 cores but 1.9x the time at 60 row tiles).
struct ThreadSplit {
    int64_t ta = 1, tb = 1, tc = 1;
    int64_t threads() const { return ta * tb * tc; }
};
ThreadSplit split_threads(int64_t a, int64_t b, int64_t c, int64_t cores) {
    a = std::max<int64_t>(a, 1);  // an empty loop still takes one thread
    b = std::max<int64_t>(b, 1);
    c = std::max<int64_t>(c, 1);
    ThreadSplit best;
    double best_tiles = std::numeric_limits<double>::infinity();
    for (int64_t ta = std::min(a, cores); ta >= 1; --ta)
        for (int64_t tb = std::min(b, cores / ta); tb >= 1; --tb) {
            const int64_t tc = std::min(c, cores / (ta * tb));
            const double tiles = static_cast<double>(ceil_div(a, ta)) * static_cast<double>(ceil_div(b, tb)) *
                                 static_cast<double>(ceil_div(c, tc));
            if (tiles < best_tiles || (tiles == best_tiles && ta * tb * tc > best.threads())) {
                best = ThreadSplit{ta, tb, tc};
                best_tiles = tiles;
            }
        }
    return best;
}

std::string op_signature(const wl::Op& op, const wl::OpCounts& c) {
    // params: two embeddings with equal lookups differ in their table, whose size decides the cache
    // level the gathers hit (wte and wpe of a GPT).
    std::string s = fmt::format("{}|{}|{}|{}|{}|{}|{}|{}", op.kind, wl::dtype_name(op.dtype), c.macs, c.flops,
                                c.weight_bytes, c.input_bytes, c.output_bytes, c.params);
    for (const wl::GemmShape& g : op.gemms()) s += fmt::format("|{}x{}x{}x{}", g.batch, g.m, g.n, g.k);
    return s;
}

// Post-op fusion (cpu_model.h): the ops oneDNN applies to a convolution's or matmul's output tile as it
// is written (eltwise, binary / sum post-ops; batch-norm folded into the weights at inference), and the
// ops whose output tile they can take.
bool post_op(const wl::Op& op) {
    if (op.phase != wl::Phase::forward) return false;
    if (op.get<wl::EltwiseAttr>()) return true;
    const auto* n = op.get<wl::NormAttr>();
    return n && n->type == wl::NormType::batch;
}

bool takes_post_ops(const wl::Op& op) {
    if (op.phase != wl::Phase::forward || op.get<wl::AttentionAttr>() || op.get<wl::EmbeddingAttr>())
        return false;
    return !op.gemms().empty() && op.counts().macs > 0;
}

bool is_depthwise(const wl::Op& op) {
    const auto* conv = op.get<wl::ConvAttr>();
    return conv && conv->groups > 1 && conv->out_channels == conv->groups;
}

// Whether the op runs as GEMMs on the micro-kernels (a depthwise convolution runs on the vector unit).
// `gemms` and `macs` are the op's own (Op::gemms, Op::counts), which the caller has at hand.
bool runs_as_gemm(const wl::Op& op, const std::vector<wl::GemmShape>& gemms, double macs) {
    return !gemms.empty() && macs > 0 && !is_depthwise(op);
}

// The task of a GEMM of `w`-byte elements.
GemmTask task_of(const wl::GemmShape& g, double w) {
    GemmTask t;
    t.count = g.batch;
    t.m = g.m;
    t.n = g.n;
    t.k = g.k;
    t.elem_bytes = w;
    return t;
}

// The trace fidelity's budget for one GEMM: its line accesses estimated (cache_sim.h), a located user error
// above the device's trace_limit.
void check_trace_budget(const CpuSpec& cpu, const wl::Op& op, const wl::GemmShape& g, const Blocking& b,
                        const GemmTask& t) {
    // The trace replays one line size through every level (cache_sim.h); and each replayed GEMM builds
    // every level's tags afresh (8 B a line): caches above 2^25 lines in all (2 GiB of 64 B lines) would
    // take more memory and time than the accesses the limit below counts.
    double lines = 0;
    for (const CacheLevel& c : cpu.caches) {
        if (c.line_bytes != cpu.caches.front().line_bytes)
            cfg::fail(
                cpu.fidelity_loc, cpu.fidelity_path,
                fmt::format("the trace fidelity replays one line size through every cache level, but "
                            "{} has {} B lines and {} {} B; use `fidelity: closed`, or give the levels "
                            "one line size",
                            cpu.caches.front().name, cpu.caches.front().line_bytes, c.name, c.line_bytes));
        lines += c.capacity_bytes / static_cast<double>(c.line_bytes);
    }
    if (lines > 33554432.0)
        cfg::fail(cpu.fidelity_loc, cpu.fidelity_path,
                  fmt::format("the trace fidelity keeps every cache line's tag, and these caches hold {:.3g} "
                              "lines, above 2^25 (2 GiB of 64 B lines); use `fidelity: closed`",
                              lines));
    const double est = trace_accesses_estimate(b, t, cpu.caches.front().line_bytes);
    if (est > static_cast<double>(cpu.trace_limit))
        cfg::fail(cpu.fidelity_loc, cpu.fidelity_path,
                  fmt::format("layer '{}' ({}): GEMM {} x {} x {} (x{}) needs about {:.3g} line accesses, "
                              "above trace_limit {}; the trace fidelity is for small and medium "
                              "shapes: use `fidelity: closed`, or raise device.cpu.trace_limit",
                              op.name, op.kind, g.m, g.n, g.k, g.batch, est, cpu.trace_limit));
}

// The work of a layer on the cores and what it moves below L1, before timing.
struct LayerWork {
    double kernel_cycles = 0;  // slowest thread: micro-kernels / vector unit (compute)
    double pack_cycles = 0;    // slowest thread: packing
    double macs_done = 0;      // including padded edge tiles
    int64_t threads = 1;
    Traffic traffic;  // per cache level (lines) + L1 register traffic
    std::string blocking;
    double dram_write_fraction = 0;
};

// The bandwidth servers and the chunked, prefetched pipeline of one layer (see cpu_model.h).
struct Pipe {
    Simulator sim;
    std::vector<std::unique_ptr<Channel>> servers;
    std::vector<double> chunk_bytes;
    Tick chunk_compute = Tick::zero();
    Tick compute_end = Tick::zero();
    int chunks = 1;

    void issue(int i) {
        Tick arrival = sim.now();
        for (size_t s = 0; s < servers.size(); ++s)
            if (chunk_bytes[s] > 0)
                arrival = std::max(arrival, servers[s]->send(static_cast<uint64_t>(std::ceil(chunk_bytes[s])),
                                                             Callback{[] {}}));
        const Tick start = std::max(arrival, compute_end);
        compute_end = start + chunk_compute;
        if (i + 1 < chunks) sim.schedule_at(start, Callback{[this, i] { issue(i + 1); }});
    }
};

}  // namespace

CpuModel::CpuModel(DeviceSpec spec) : m_spec(std::move(spec)) {
    const CpuSpec* c = spec_of(m_spec);
    MLSIM_CHECK(c != nullptr, "the CPU model needs a device with a cpu section");
    m_cpu = *c;
}

std::vector<LayerResult> CpuModel::run(const wl::Model& model) {
    // The trace fidelity's budget, every GEMM checked before any runs (as simulate() checks each): a run
    // above it is refused at once, not after the layers before the first that exceeds it.
    if (m_cpu.fidelity == Fidelity::trace)
        for (const wl::Op& op : model.ops()) {
            const double w = wl::dtype_bytes(op.dtype);
            const auto unit = m_cpu.units.find(std::string(wl::dtype_name(op.dtype)));
            if (w < 1 || unit == m_cpu.units.end()) continue;
            const std::vector<wl::GemmShape> gemms = op.gemms();
            if (!runs_as_gemm(op, gemms, op.counts().macs)) continue;
            const Blocking b = choose_blocking(m_cpu, unit->second, w, m_cpu.caches.back().capacity_bytes);
            for (const wl::GemmShape& g : gemms) check_trace_budget(m_cpu, op, g, b, task_of(g, w));
        }
    std::vector<LayerResult> out;
    out.reserve(model.ops().size());
    // L3 (the last cache) keeps activations between layers; its total capacity over all instances.
    const CacheLevel& llc = m_cpu.caches.back();
    std::vector<LayerNeeds> needs;
    needs.reserve(model.ops().size());
    for (const wl::Op& op : model.ops()) {
        LayerNeeds n;
        n.reads_on_chip.assign(op.inputs.size(), true);
        n.writes_on_chip = true;
        // The packed blocks of a GEMM: Bp in every L3 instance, one Ap per core (in L2; counted here
        // as they are backed by the L3 in an inclusive hierarchy).
        if (!op.gemms().empty() && op.counts().macs > 0) {
            const double w = wl::dtype_bytes(op.dtype);
            const auto it = m_cpu.units.find(std::string(wl::dtype_name(op.dtype)));
            if (it != m_cpu.units.end()) {
                const Blocking b = choose_blocking(m_cpu, it->second, w, llc.capacity_bytes);
                n.space_from_memory =
                    static_cast<double>(b.kc * b.nc) * w * static_cast<double>(llc.instances);
            }
        }
        n.space_on_chip = n.space_from_memory;
        needs.push_back(std::move(n));
    }
    ResidencyTracker tracker(model, llc.capacity_bytes * static_cast<double>(llc.instances),
                             std::move(needs));
    // Post-op fusion, in inference only (training keeps every intermediate result for backward): a
    // post_op whose input is the sole output use of a convolution / GEMM, or of an op already fused
    // into one, runs on that output's tiles.
    const std::vector<wl::Op>& ops = model.ops();
    bool training = false;
    for (const wl::Op& op : ops) training = training || op.phase != wl::Phase::forward;
    std::vector<int64_t> head(ops.size(), -1), fused_slot(ops.size(), -1), producer(ops.size(), -1);
    std::vector<bool> has_post_op(ops.size(), false);
    if (m_cpu.fuse_post_ops && !training)
        for (size_t i = 0; i < ops.size(); ++i) {
            if (!post_op(ops[i])) continue;
            for (const wl::Edge& e : model.in_edges(i)) {
                const size_t p = e.from;
                if (!(takes_post_ops(ops[p]) || head[p] >= 0) || model.out_edges(p).size() != 1) continue;
                head[i] = head[p] >= 0 ? head[p] : static_cast<int64_t>(p);
                fused_slot[i] = e.to_slot;
                producer[i] = static_cast<int64_t>(p);
                has_post_op[p] = true;
                break;
            }
        }
    std::vector<bool> stored(ops.size(), false);  // the layer's result went to memory
    double now = 0;
    for (size_t i = 0; i < model.ops().size(); ++i) {
        const wl::Op& op = model.op(i);
        OnChip oc;
        for (double b : tracker.decide(i)) oc.kept += b;
        const std::vector<double> in_chip = tracker.inputs_on_chip(i);
        for (double b : in_chip) oc.inputs += b;
        oc.resident = tracker.resident_bytes(i);
        const double out_bytes = op.counts().output_bytes;
        if (head[i] >= 0) {
            // The fused input is the producer's output tile (charged as an L3 read, est.: oneDNN holds it in
            // registers / L1). The chain's result is stored once: by this layer unless it stays in L3, or
            // already by the producer when the producer's result did not stay.
            const auto slot = static_cast<size_t>(fused_slot[i]);
            const double tile = static_cast<double>(wl::numel(op.inputs[slot])) * wl::dtype_bytes(op.dtype);
            oc.inputs += std::max(0.0, tile - in_chip[slot]);
            oc.in_registers = tile;
            if (stored[static_cast<size_t>(producer[i])] || has_post_op[i]) oc.kept = out_bytes;
            oc.out_in_registers = has_post_op[i];
        }
        stored[i] =
            oc.kept < out_bytes * (1 - 1e-12) || (head[i] >= 0 && stored[static_cast<size_t>(producer[i])]);
        LayerResult r = run_op(op, oc);
        if (head[i] >= 0) {
            // No fork/join of its own: the producer's threads apply it.
            TimeParts parts = r.parts;
            parts.overhead_s = 0;
            r.set_parts(parts);
            r.time_s = parts.total();
            r.energy_static_j = m_spec.static_power_W * r.time_s;
            r.add_text("fused_into", ops[static_cast<size_t>(head[i])].name);
        }
        r.idx = static_cast<int64_t>(i);
        r.start_s = now;
        now += r.time_s;
        r.end_s = now;
        out.push_back(std::move(r));
    }
    return out;
}

LayerResult CpuModel::run_op(const wl::Op& op, const OnChip& on_chip) {
    const wl::OpCounts c = op.counts();
    OnChip oc = on_chip;
    oc.inputs = std::min(oc.inputs, c.input_bytes);
    oc.kept = std::min(oc.kept, c.output_bytes);
    oc.in_registers = std::min(oc.in_registers, oc.inputs);
    if (oc.out_in_registers) oc.kept = c.output_bytes;
    std::string key;
    LayerResult r;
    const bool memoize = m_cpu.fidelity == Fidelity::closed;
    if (memoize) {
        key = op_signature(op, c) + fmt::format("|{:.17g}|{:.17g}|{:.17g}|{}", oc.inputs, oc.kept,
                                                oc.in_registers, oc.out_in_registers);
        if (auto it = m_memo.find(key); it != m_memo.end()) {
            ++m_work.cache_hits;
            r = it->second;
            r.counts = c;
        } else {
            r = simulate(op, oc);
            m_memo.emplace(key, r);
        }
    } else {
        r = simulate(op, oc);
    }
    r.name = op.name;
    r.phase = std::string(wl::phase_name(op.phase));
    r.idx = 0;
    r.start_s = 0;
    r.end_s = r.time_s;
    return r;
}

LayerResult CpuModel::simulate(const wl::Op& op, const OnChip& oc) {
    ++m_work.layers_simulated;
    const wl::OpCounts c = op.counts();
    const std::string dtype(wl::dtype_name(op.dtype));
    // A data type the device does not compute in is a located user error (peak_for), before any work.
    const RooflineBound bound = roofline_bound(m_spec, op, arch::OnChip{oc.inputs, oc.kept});
    const auto uit = m_cpu.units.find(dtype);
    MLSIM_CHECK(uit != m_cpu.units.end(), "data type " + dtype + " has a peak but no CPU unit");
    const ComputeUnit& unit = uit->second;
    const double w = wl::dtype_bytes(op.dtype);
    const std::vector<CacheLevel>& caches = m_cpu.caches;
    const size_t nlev = caches.size();
    const CacheLevel& llc = caches.back();
    const double lanes = std::max(1.0, m_cpu.lanes(w));
    const double vec_ops_per_cycle =
        lanes * static_cast<double>(m_cpu.fma_pipes);  // one op per lane per pipe
    const int64_t cores = m_cpu.cores;

    LayerWork wk;
    wk.traffic.resize(nlev);
    const std::vector<wl::GemmShape> gemms = op.gemms();
    const bool gemm_op = runs_as_gemm(op, gemms, c.macs);
    double vector_flops = std::max(0.0, c.flops - 2 * c.macs);
    // Bytes the op must move across DRAM at least, and how much of that the GEMM loop nest accounts for.
    const double in_dram = c.input_bytes - oc.inputs, out_dram = c.output_bytes - oc.kept;
    double dram_read_lines = 0, dram_write_lines = 0;
    const double line = static_cast<double>(llc.line_bytes);

    if (gemm_op) {
        const double l3 = llc.capacity_bytes;
        const Blocking b = choose_blocking(m_cpu, unit, w, l3);
        bool blocked = false, gemv = false;
        const CacheLevel& l1 = caches.front();
        const double c_update =
            2 * static_cast<double>(b.mr * b.nr) * (b.matrix ? 4.0 : w) / l1.bytes_per_cycle +
            static_cast<double>(m_cpu.fma_latency) + m_cpu.kernel_call_cycles;
        double input_view_bytes = 0;
        for (const wl::GemmShape& g : gemms)
            input_view_bytes +=
                static_cast<double>(g.batch) * static_cast<double>(g.m) * static_cast<double>(g.k) * w;
        int64_t max_threads = 1;
        double kernel = 0, pack = 0;
        for (size_t gi = 0; gi < gemms.size(); ++gi) {
            const wl::GemmShape& g = gemms[gi];
            GemmTask t = task_of(g, w);
            if (op.get<wl::ConvAttr>() && gi == 0 && input_view_bytes > 0)
                t.a_scale = std::min(1.0, c.input_bytes / input_view_bytes);
            int64_t threads = 1;
            blocked = blocked || packs_b(b, t);
            gemv = gemv || !packs_b(b, t);
            if (packs_b(b, t)) {
                // Threads over the batch, the MR rows (3rd loop) and the NR columns (2nd loop).
                const int64_t mt = ceil_div(g.m, b.mr), nt = ceil_div(g.n, b.nr);
                const ThreadSplit sp = split_threads(g.batch, mt, nt, cores);
                const int64_t tb = sp.ta, tm = sp.tb, tn = sp.tc;
                threads = sp.threads();
                const double tiles = static_cast<double>(ceil_div(g.batch, tb)) *
                                     static_cast<double>(ceil_div(mt, tm)) *
                                     static_cast<double>(ceil_div(nt, tn));
                const int64_t kc = std::min(b.kc, g.k);
                const double passes = static_cast<double>(ceil_div(g.k, kc));
                const double steps = static_cast<double>(ceil_div(g.k, b.k_granule));
                kernel += tiles * (steps * b.cycles_per_step + passes * c_update);
                wk.macs_done += static_cast<double>(g.batch) * static_cast<double>(mt) *
                                static_cast<double>(nt) * static_cast<double>(b.mr * b.nr) * steps *
                                static_cast<double>(b.k_granule);
            } else {
                // Matrix-vector form: threads split the batch, then the columns (in SIMD vectors); one
                // B vector load per vector FMA.
                const auto vl = static_cast<int64_t>(lanes);
                const int64_t nv = ceil_div(g.n, vl);
                const ThreadSplit sp = split_threads(g.batch, 1, nv, cores);
                const int64_t tb = sp.ta, tn = sp.tc;
                threads = sp.threads();
                const double per_fma = std::max(1.0 / static_cast<double>(m_cpu.fma_pipes),
                                                1.0 / static_cast<double>(m_cpu.load_ports));
                kernel += static_cast<double>(ceil_div(g.batch, tb)) * static_cast<double>(g.m) *
                              static_cast<double>(g.k) * static_cast<double>(ceil_div(nv, tn)) * per_fma +
                          m_cpu.kernel_call_cycles;
                wk.macs_done += static_cast<double>(g.batch) * static_cast<double>(g.m) *
                                static_cast<double>(g.k) * static_cast<double>(nv * vl);
            }
            max_threads = std::max(max_threads, threads);
            Traffic tr;
            // The trace addresses whole bytes: sub-byte types (int4) keep the closed form.
            if (m_cpu.fidelity == Fidelity::trace && w >= 1) {
                check_trace_budget(m_cpu, op, g, b, t);
                const TraceResult tres = trace_gemm(trace_levels(m_cpu, l3), b, t);
                m_work.trace_accesses += tres.accesses;
                tr = tres.traffic;
                const Traffic closed = gemm_traffic(m_cpu, b, t, l3);
                tr.l1_load_bytes = closed.l1_load_bytes;
                tr.l1_store_bytes = closed.l1_store_bytes;
                tr.pack_bytes = closed.pack_bytes;
            } else {
                tr = gemm_traffic(m_cpu, b, t, l3);
            }
            for (size_t l = 0; l < nlev; ++l) {
                wk.traffic.misses[l] += tr.misses[l];
                wk.traffic.writebacks[l] += tr.writebacks[l];
            }
            wk.traffic.l1_load_bytes += tr.l1_load_bytes;
            wk.traffic.l1_store_bytes += tr.l1_store_bytes;
            wk.traffic.pack_bytes += tr.pack_bytes;
            // Packing on the cores at their L2 bandwidth (A per thread, B shared by all threads).
            const double l2_bpc = caches.size() > 1 ? caches[1].bytes_per_cycle : caches[0].bytes_per_cycle;
            pack += tr.pack_bytes / static_cast<double>(threads) / l2_bpc;
        }
        wk.blocking = blocked ? b.text() : "";
        if (gemv) wk.blocking += std::string(blocked ? "; " : "") + "matrix-vector (B read in place)";
        wk.threads = max_threads;
        wk.kernel_cycles = kernel;
        wk.pack_cycles = pack;
        dram_read_lines = wk.traffic.misses.back();
        dram_write_lines = wk.traffic.writebacks.back();
        // The last level's misses of inputs found in L3 are L3 hits, not DRAM reads.
        dram_read_lines = std::max(dram_read_lines - oc.inputs / line, (c.weight_bytes + in_dram) / line);
        // A kept output is not written back.
        dram_write_lines = std::max(dram_write_lines - oc.kept / line, out_dram / line);
    } else {
        // Streaming ops and the direct depthwise kernel.
        const double bytes = c.total_bytes();
        wk.threads = std::clamp<int64_t>(static_cast<int64_t>(std::ceil(bytes / 32768.0)), 1, cores);
        if (c.macs > 0) {
            // Direct depthwise: per output pixel and lane group, kh·kw FMAs and kh·kw loads.
            const wl::GemmShape g = gemms.empty() ? wl::GemmShape{1, 1, 1, 1} : gemms.front();
            const double taps = static_cast<double>(g.k);
            const double groups = static_cast<double>(ceil_div(g.batch, static_cast<int64_t>(lanes)));
            const double cps = std::max({taps / static_cast<double>(m_cpu.fma_pipes),
                                         (taps + 1) / static_cast<double>(m_cpu.load_ports), 1.0});
            const double per_pixel = cps * groups;
            wk.threads = std::clamp<int64_t>(g.m, 1, cores);
            wk.kernel_cycles = static_cast<double>(ceil_div(g.m, wk.threads)) * per_pixel;
            wk.macs_done = groups * lanes * static_cast<double>(g.m) * taps * static_cast<double>(g.n);
            wk.blocking = fmt::format("direct depthwise, {} lanes", static_cast<int64_t>(lanes));
            // Also counts the MACs if the op has no GEMM shape (lowered ops): at the vector FMA rate.
            if (gemms.empty()) {
                wk.kernel_cycles = c.macs / (static_cast<double>(wk.threads) * unit.macs_per_cycle);
                wk.macs_done = c.macs;
                wk.blocking = "vector";
            }
        } else {
            wk.blocking = "stream";
        }
        wk.kernel_cycles += vector_flops / (static_cast<double>(wk.threads) * vec_ops_per_cycle);
        vector_flops = 0;
        // Every byte passes each level once: lines in from below, written lines out to below; a fused
        // post-op's input from the producer's tile and a result kept in registers pass none.
        const double loaded = c.weight_bytes + c.input_bytes - oc.in_registers;
        const double stored = oc.out_in_registers ? 0.0 : c.output_bytes;
        const double in_lines = loaded / line, out_lines = stored / line;
        for (size_t l = 0; l < nlev; ++l) {
            wk.traffic.misses[l] = in_lines;
            wk.traffic.writebacks[l] = out_lines;
        }
        wk.traffic.l1_load_bytes = loaded;
        wk.traffic.l1_store_bytes = stored;
        // The last cache's misses of inputs kept in it are hits; kept outputs stay (no write-back).
        wk.traffic.misses.back() = (c.weight_bytes + in_dram) / line;
        wk.traffic.writebacks.back() = out_dram / line;
        dram_read_lines = wk.traffic.misses.back();
        dram_write_lines = wk.traffic.writebacks.back();
    }
    wk.traffic.misses.back() = dram_read_lines;
    wk.traffic.writebacks.back() = dram_write_lines;
    // Extra arithmetic of GEMM ops (bias, activations, softmax) on the vector unit.
    const double extra_cycles = vector_flops / (static_cast<double>(wk.threads) * vec_ops_per_cycle);
    wk.kernel_cycles += extra_cycles;

    // ---- timing in the event engine ----
    const double clock = unit.clock_hz;
    const double threads = static_cast<double>(wk.threads);
    Pipe pipe;
    std::vector<double> bytes(nlev, 0);  // per server: traffic below cache level i (i = nlev-1: DRAM)
    for (size_t l = 0; l < nlev; ++l)
        bytes[l] =
            (wk.traffic.misses[l] + wk.traffic.writebacks[l]) * static_cast<double>(caches[l].line_bytes);
    const double dram_bytes = bytes.back();
    wk.dram_write_fraction = dram_bytes > 0 ? dram_write_lines * line / dram_bytes : 0;
    const double little =
        threads * static_cast<double>(m_cpu.dram.miss_buffers) * line / m_cpu.dram.latency_s;
    const double dram_bw = std::min(m_cpu.dram.sustained_Bps(wk.dram_write_fraction), little);
    std::vector<std::string> server_names;
    for (size_t l = 0; l < nlev; ++l) {
        const bool last = l + 1 == nlev;
        // Server l carries the traffic between cache level l and the level below it.
        double bw = 0;
        Tick lat = Tick::zero();
        std::string name;
        if (last) {
            bw = dram_bw;
            lat = Tick::from_seconds(m_cpu.dram.latency_s);
            name = m_cpu.dram.name;
        } else {
            const CacheLevel& below = caches[l + 1];
            const double users = std::min(threads, static_cast<double>(cores));
            bw = below.bytes_per_cycle * users * m_spec.clock_hz;
            lat = Tick::from_seconds(static_cast<double>(below.latency_cycles) / m_spec.clock_hz);
            name = below.name;
        }
        server_names.push_back(name);
        pipe.servers.push_back(
            std::make_unique<Channel>(pipe.sim, name, static_cast<uint64_t>(std::max(1.0, bw)), lat));
    }
    const double core_cycles = wk.kernel_cycles + wk.pack_cycles;
    double total_bytes = 0;
    for (double b : bytes) total_bytes += b;
    // The engine's clock (64-bit picoseconds) covers about 106 days; refuse a layer that would not fit
    // rather than overflow it.
    double longest = core_cycles / clock;
    for (size_t l = 0; l < nlev; ++l)
        longest = std::max(longest, bytes[l] / static_cast<double>(pipe.servers[l]->bandwidth()));
    if (longest > 1e6)
        cfg::fail(op.loc, op.key_path,
                  fmt::format("layer '{}' ({}) would take about {:.3g} s on device '{}', beyond what the "
                              "simulator's clock covers (1e6 s per layer)",
                              op.name, op.kind, longest, m_spec.name));
    pipe.chunks = core_cycles > 0 || total_bytes > 0 ? 32 : 1;
    for (double b : bytes) pipe.chunk_bytes.push_back(b / pipe.chunks);
    pipe.chunk_compute = Tick::from_seconds(core_cycles / clock / pipe.chunks);
    if (core_cycles > 0 || total_bytes > 0) {
        pipe.sim.schedule_at(Tick::zero(), Callback{[&pipe] { pipe.issue(0); }});
        pipe.sim.run();
    }
    m_work.events += pipe.sim.events_run();
    double layer_s = std::max(pipe.compute_end, pipe.sim.now()).to_seconds();
    for (const auto& s : pipe.servers) layer_s = std::max(layer_s, (s->free_at()).to_seconds());
    const double kernel_s = wk.kernel_cycles / clock;
    const double pack_s = wk.pack_cycles / clock;
    // Floating-point rounding of the chunks must not take a layer below its roofline bound.
    layer_s = std::max({layer_s, kernel_s + pack_s, bound.bound_s()});

    LayerResult r;
    r.op = op.kind;
    r.dtype = dtype;
    r.counts = c;
    r.cycles = static_cast<int64_t>(std::ceil(layer_s * clock - 1e-9));
    TimeParts parts;
    parts.compute_s = kernel_s;
    parts.memory_s = std::max(0.0, layer_s - kernel_s);
    parts.overhead_s = m_spec.op_overhead_s;
    r.set_parts(parts);
    r.time_s = parts.total();
    r.stall_cycles = static_cast<int64_t>(std::llround(parts.memory_s * clock));
    r.utilization =
        layer_s > 0 && c.macs > 0
            ? std::min(1.0, c.macs / (layer_s * clock * static_cast<double>(cores) * unit.macs_per_cycle))
            : 0;
    r.bytes_read = dram_read_lines * line;
    r.bytes_written = dram_write_lines * line;

    // Levels: L1 delivers the registers' loads; level i+1 delivers level i's misses.
    double mem_energy = 0;
    for (size_t l = 0; l <= nlev; ++l) {
        LevelTraffic lt;
        double re = 0, we = 0;
        if (l < nlev) {
            lt.level = caches[l].name;
            re = caches[l].read_energy_J_per_byte;
            we = caches[l].write_energy_J_per_byte;
        } else {
            lt.level = m_cpu.dram.name;
            re = m_cpu.dram.read_energy_J_per_byte;
            we = m_cpu.dram.write_energy_J_per_byte;
        }
        if (l == 0) {
            lt.bytes_read = wk.traffic.l1_load_bytes;
            lt.bytes_written = wk.traffic.l1_store_bytes;
        } else {
            const double lb = static_cast<double>(caches[l - 1].line_bytes);
            lt.bytes_read = wk.traffic.misses[l - 1] * lb;
            lt.bytes_written = wk.traffic.writebacks[l - 1] * lb;
            lt.accesses =
                static_cast<int64_t>(std::llround(wk.traffic.misses[l - 1] + wk.traffic.writebacks[l - 1]));
        }
        lt.energy_j = lt.bytes_read * re + lt.bytes_written * we;
        mem_energy += lt.energy_j;
        r.levels.push_back(lt);
    }
    const double mac_e = m_spec.mac_energy_for(dtype);
    r.energy_compute_j = c.macs * mac_e + std::max(0.0, c.flops - 2 * c.macs) * mac_e / 2;
    r.energy_memory_j = mem_energy;
    r.energy_static_j = m_spec.static_power_W * r.time_s;

    // Metrics.
    r.add_metric("threads", static_cast<double>(wk.threads), "count");
    r.add_text("blocking", wk.blocking);
    r.add_text("fidelity", m_cpu.fidelity == Fidelity::trace && gemm_op && w >= 1 ? "trace" : "closed");
    for (size_t l = 0; l < nlev; ++l) {
        r.add_metric("misses_" + caches[l].name, wk.traffic.misses[l], "count");
        r.add_metric("bytes_" + caches[l].name, r.levels[l + 1].bytes_read + r.levels[l + 1].bytes_written,
                     "B");
    }
    r.add_metric("bytes_" + m_cpu.dram.name, r.bytes_read + r.bytes_written, "B");
    r.add_metric("packed_bytes", wk.traffic.pack_bytes, "B");
    const double pack_stall = std::min(parts.memory_s, pack_s) * clock;
    r.add_metric("stall_packing_cycles", pack_stall, "cycles");
    // The wait beyond packing, split over the servers by their busy time beyond the cores' time.
    const double wait = std::max(0.0, parts.memory_s * clock - pack_stall);
    std::vector<double> excess;
    double excess_sum = 0;
    size_t worst = 0;
    for (size_t s = 0; s < pipe.servers.size(); ++s) {
        const double busy = static_cast<double>(pipe.servers[s]->busy_time_ps()) * 1e-12;
        excess.push_back(std::max(0.0, busy - (kernel_s + pack_s)));
        excess_sum += excess.back();
        if (busy > static_cast<double>(pipe.servers[worst]->busy_time_ps()) * 1e-12) worst = s;
    }
    for (size_t s = 0; s < pipe.servers.size(); ++s) {
        // With no server busier than the cores the wait is the exposed first fill: the slowest server's.
        const double share = excess_sum > 0 ? excess[s] / excess_sum : (s == worst ? 1.0 : 0.0);
        r.add_metric("stall_" + server_names[s] + "_cycles", wait * share, "cycles");
    }
    if (r.bound == "memory") r.add_text("memory_level", pack_stall >= wait ? "packing" : server_names[worst]);
    r.add_metric("input_bytes_on_chip", oc.inputs, "B");
    r.add_metric("input_bytes_from_dram", c.input_bytes - oc.inputs, "B");
    r.add_metric("output_bytes_kept", oc.kept, "B");
    r.add_metric("macs_issued", wk.macs_done, "count");
    r.add_stats(pipe.sim.stats().dump());

    MLSIM_CHECK(r.time_s >= bound.bound_s() * (1 - 1e-12),
                fmt::format("cpu layer '{}' ({}) takes {} s, below its roofline bound {} s", op.name, op.kind,
                            r.time_s, bound.bound_s()));
    MLSIM_CHECK(r.energy_compute_j >= 0 && r.energy_memory_j >= 0 && r.energy_static_j >= 0,
                "negative energy");
    MLSIM_CHECK(r.bytes_read >= (c.weight_bytes + in_dram) * (1 - 1e-9) - 1e-6 &&
                    r.bytes_written >= out_dram * (1 - 1e-9) - 1e-6,
                fmt::format("cpu layer '{}' moves less than its compulsory DRAM traffic", op.name));
    MLSIM_CHECK(r.utilization >= 0 && r.utilization <= 1 + 1e-12, "utilization outside [0, 1]");
    return r;
}

}  // namespace mlsim::arch::cpu
