#include "arch/systolic/systolic_model.h"

#include <fmt/format.h>

#include <algorithm>
#include <bit>
#include <cmath>
#include <cstring>
#include <optional>
#include <type_traits>

#include "arch/roofline/roofline.h"
#include "arch/systolic/energy.h"
#include "arch/systolic/pipeline.h"
#include "arch/systolic/scalesim_convention.h"
#include "arch/systolic/tiling.h"
#include "sim/config/limits.h"
#include "sim/config/units.h"
#include "sim/core/check.h"

namespace mlsim::arch::systolic {

namespace {

// The recurrent GEMM of an RNN runs its T steps one after another: they may not be spread over arrays.
bool sequential_batch(const wl::Op& op, size_t gemm_index) {
    if (op.get<wl::RnnAttr>()) return gemm_index == 1;
    for (const char* cell : {"rnn", "lstm", "gru"})
        if (op.kind == std::string(cell) + "_grad_input") return gemm_index == 0;  // training.cpp's order
    return false;
}

// Appends the bytes of a number to a memo key (a key is never printed; numbers by their bits, so that
// building one formats nothing).
template <class T>
void append_bits(std::string& key, T x) {
    static_assert(std::is_arithmetic_v<T>);
    char b[sizeof(T)];
    std::memcpy(b, &x, sizeof(T));
    key.append(b, sizeof(T));
}

// Everything that decides a layer's numbers besides the device; names and places do not. Strings end
// in a NUL and lists start with their length, so that different signatures never give one key.
std::string op_signature(const wl::Op& op, const wl::OpCounts& c) {
    std::string s = op.kind;
    s += '\0';
    s += wl::dtype_name(op.dtype);
    s += '\0';
    for (double x : {c.macs, c.flops, c.weight_bytes, c.input_bytes, c.output_bytes}) append_bits(s, x);
    const std::vector<wl::GemmShape> gemms = op.gemms();
    append_bits(s, gemms.size());
    for (const wl::GemmShape& g : gemms)
        for (int64_t x : {g.batch, g.m, g.n, g.k}) append_bits(s, x);
    return s;
}

// Whole cycles covering `seconds`, such that cycles / clock_hz >= seconds also in floating point (the
// roofline check compares the two).
int64_t cycles_for(double seconds, double clock_hz) {
    auto c = static_cast<int64_t>(std::ceil(seconds * clock_hz));
    while (static_cast<double>(c) / clock_hz < seconds) ++c;
    return c;
}

// Convention scalesim: the cycles SCALE-Sim would report for the op's GEMMs (scalesim_convention.h).
// Each GEMM instance is a SCALE-Sim layer of folds · rows − 1 cycles (times the data type's passes),
// on SCALE-Sim's GEMM (its larger ofmap for a strided convolution); with several arrays, the count is
// that of the slowest array's share under the split the tiling chose for the job, the instances it
// runs one after another.
int64_t scalesim_op_cycles(const MappingContext& ctx, const wl::Op& op, const std::vector<GemmJob>& jobs,
                           const std::vector<TilePlan>& plans) {
    const SystolicSpec& spec = *ctx.spec;
    int64_t total = 0;
    for (size_t i = 0; i < jobs.size(); ++i) {
        GemmJob job = jobs[i];
        job.shape = scalesim_gemm(op, job.shape);
        const Partition p = make_partition(ctx, job, plans[i].part.split);
        const GemmShape share{p.m, p.n, p.k};
        int64_t rows = 0, per_instance = 0, cycles = 0;
        const bool overflow =
            __builtin_mul_overflow(scalesim_folds(spec.dataflow, spec.shape(), share),
                                   scalesim_fold_rows(spec.dataflow, spec.shape(), share), &rows) ||
            __builtin_mul_overflow(rows, ctx.passes, &per_instance) ||
            __builtin_mul_overflow(per_instance - 1, p.groups, &cycles) ||
            __builtin_add_overflow(total, cycles, &total);
        MLSIM_CHECK(!overflow, fmt::format("layer '{}': SCALE-Sim cycle count overflows int64", op.name));
    }
    return total;
}

}  // namespace

// The figures of a layer that only this family has; record() turns them into levels and metrics.
struct SystolicModel::Detail {
    int64_t stall_weight = 0, stall_input = 0, stall_output = 0;
    // Of the stalls, cycles spent waiting on an on-chip buffer (a slow port, a stationary operand
    // shifting into the PEs), by cause; the rest waited on main memory.
    int64_t chip_weight = 0, chip_input = 0, chip_output = 0;
    int64_t shift = 0;      // of the stalls, stationary shifts
    int64_t dram_busy = 0;  // cycles main memory was transferring (faithful GEMM layers; else 0)
    double input_on_chip = 0, input_from_dram = 0, output_kept = 0;  // bytes (residency)
    LevelAccesses access;
    std::string tiling;
    int64_t pe_hops = 0;
    EnergyBreakdown energy;
    int64_t stalls() const { return stall_weight + stall_input + stall_output; }
};

struct SystolicModel::Mapping {
    MappingContext ctx;
    std::vector<GemmJob> jobs;
    std::vector<TilePlan> plans;
};

SystolicModel::SystolicModel(DeviceSpec spec) : m_spec(std::move(spec)) {
    const SystolicSpec* sys = spec_of(m_spec);
    MLSIM_CHECK(sys != nullptr, "the systolic model needs a device with a systolic section");
    m_sys = *sys;
}

void SystolicModel::record(LayerResult& r, Detail& d) const {
    const MemoryLevel& mem = m_spec.main_memory();
    // The arrays compute for cycles − stalls and wait for the stalls; but when main memory was busy
    // for longer than the arrays worked on their own (computing, or shifting stationary operands in),
    // the layer ran at main memory's pace with that work hidden under its transfers: the memory part
    // is then main memory's busy time (or the stalls, if longer), and compute only what did not overlap.
    const int64_t busy = r.cycles - d.stalls();
    const bool memory_paced = d.dram_busy > busy + d.shift;
    const int64_t memory = memory_paced ? std::max(d.stalls(), std::min(d.dram_busy, r.cycles)) : d.stalls();
    TimeParts parts;
    parts.compute_s = static_cast<double>(r.cycles - memory) / m_spec.clock_hz;
    parts.memory_s = static_cast<double>(memory) / m_spec.clock_hz;
    parts.overhead_s = m_spec.op_overhead_s;
    r.set_parts(parts);
    const auto add_level = [&](const std::string& name, const AccessBytes& a, double energy) {
        // Two operands may share one physical buffer: one level, their traffic added.
        for (LevelTraffic& l : r.levels)
            if (l.level == name) {
                l.bytes_read += a.read;
                l.bytes_written += a.write;
                l.energy_j += energy;
                return;
            }
        r.levels.push_back(LevelTraffic{name, a.read, a.write, 0, energy});
    };
    add_level(m_sys.ifmap.name, d.access.ifmap, d.energy.ifmap);
    add_level(m_sys.filter.name, d.access.filter, d.energy.filter);
    add_level(m_sys.ofmap.name, d.access.ofmap, d.energy.ofmap);
    add_level(mem.name, d.access.dram, d.energy.dram);
    // The 11 metrics below at most, in one allocation: a vector grown one metric at a time ends at
    // nearly twice the room, for every layer kept in the results (heap pages touched: bench/README.md).
    r.metrics.reserve(r.metrics.size() + 11);
    r.add_metric("stall_weight_cycles", static_cast<double>(d.stall_weight), "cycles");
    r.add_metric("stall_input_cycles", static_cast<double>(d.stall_input), "cycles");
    r.add_metric("stall_output_cycles", static_cast<double>(d.stall_output), "cycles");
    // Of the stalls, the arrays waiting for stationary operands to shift into the PEs (or, os, outputs
    // out of them) where the streams are too short to hide it (the TPU paper's "weight shift").
    r.add_metric("stall_shift_cycles", static_cast<double>(d.shift), "cycles");
    r.add_metric("pe_hops", static_cast<double>(d.pe_hops), "count");
    r.add_metric("energy_pe_hops_j", d.energy.noc, "J");
    r.add_text("tiling", std::move(d.tiling));
    // Where the layer's inputs came from and whether its output stayed (arch/residency.h).
    r.add_metric("input_bytes_on_chip", d.input_on_chip, "B");
    r.add_metric("input_bytes_from_dram", d.input_from_dram, "B");
    r.add_metric("output_bytes_kept", d.output_kept, "B");
    if (r.bound == "memory") {
        // The level the layer waited on most: main memory when it set the pace, else the level with
        // the most stall cycles (main memory, or a buffer whose port stretched the tiles).
        const int64_t on_memory = d.stalls() - d.chip_weight - d.chip_input - d.chip_output;
        std::pair<int64_t, const std::string*> level{on_memory, &mem.name};
        for (const auto& [cycles, name] :
             {std::pair{d.chip_weight, &m_sys.filter.name}, std::pair{d.chip_input, &m_sys.ifmap.name},
              std::pair{d.chip_output, &m_sys.ofmap.name}})
            if (cycles > level.first) level = {cycles, name};
        r.add_text("memory_level", memory_paced ? mem.name : *level.second);
    }
}

double SystolicModel::OnChip::input_total() const {
    double t = 0;
    for (double b : inputs) t += b;
    return t;
}

bool SystolicModel::residency() const {
    return m_sys.keep_activations && m_sys.convention == Convention::faithful;
}

bool SystolicModel::on_arrays(const wl::Op& op) { return op.counts().macs > 0 && !op.gemms().empty(); }

bool SystolicModel::reads_a_in_place(const wl::Op& op) {
    return op.get<wl::LinearAttr>() || op.get<wl::ConvAttr>() || op.get<wl::MatmulAttr>() ||
           op.get<wl::RnnAttr>();
}

bool SystolicModel::writes_c_in_place(const wl::Op& op) {
    return op.get<wl::LinearAttr>() || op.get<wl::ConvAttr>() || op.get<wl::MatmulAttr>();
}

LayerNeeds SystolicModel::needs_of(const wl::Op& op) const {
    LayerNeeds n;
    if (!on_arrays(op)) {
        // The vector unit streams its operands through the buffers: any input in place, no tiles.
        n.reads_on_chip.assign(op.inputs.size(), true);
        return n;
    }
    n.reads_on_chip.assign(op.inputs.size(), false);
    n.writes_on_chip = writes_c_in_place(op);
    const Mapping from_memory = map_gemms(op, OnChip{});
    for (size_t j = 0; j < from_memory.jobs.size(); ++j) {
        const double space = ifmap_space(from_memory.ctx, from_memory.jobs[j], from_memory.plans[j]);
        n.space_from_memory = std::max(n.space_from_memory, space);
        // Reading input 0 in place frees the first GEMM's A tiles; later GEMMs keep theirs.
        if (j > 0) n.space_on_chip = std::max(n.space_on_chip, space);
    }
    if (reads_a_in_place(op) && !n.reads_on_chip.empty())
        n.reads_on_chip[0] = true;
    else
        n.space_on_chip = n.space_from_memory;
    return n;
}

std::vector<LayerResult> SystolicModel::run(const wl::Model& model) {
    if (m_memoize) ComputeMemo::for_this_thread().begin_run();
    std::vector<LayerResult> out;
    out.reserve(model.ops().size());
    // run_op() memoizes into `out` for this run (layer i is out[i] once run_op returns).
    struct RunMemo {
        SystolicModel& m;
        RunMemo(SystolicModel& model, const std::vector<LayerResult>& out) : m(model) {
            m.m_run_out = &out;
            m.m_run_memo.clear();
        }
        ~RunMemo() {
            m.m_run_out = nullptr;
            m.m_run_memo.clear();
        }
        RunMemo(const RunMemo&) = delete;
        RunMemo& operator=(const RunMemo&) = delete;
    } run_memo(*this, out);
    std::optional<ResidencyTracker> tracker;
    if (residency()) {
        std::vector<LayerNeeds> needs;
        needs.reserve(model.ops().size());
        for (const wl::Op& op : model.ops()) needs.push_back(needs_of(op));
        tracker.emplace(model, m_sys.ifmap.capacity_bytes, std::move(needs));
    }
    double now = 0;
    int64_t idx = 0;
    for (size_t i = 0; i < model.ops().size(); ++i) {
        OnChip on_chip;
        if (tracker) {
            for (double b : tracker->decide(i)) on_chip.kept += b;
            on_chip.inputs = tracker->inputs_on_chip(i);
            // The layer's own on-chip inputs and kept output count as resident: its tiles fit beside them.
            on_chip.resident = tracker->resident_bytes(i);
        }
        LayerResult r = run_op(model.op(i), on_chip);
        check_simulated_time(model.op(i), now + r.time_s, m_spec);
        r.idx = idx++;
        r.start_s = now;
        now += r.time_s;
        r.end_s = now;
        out.push_back(std::move(r));
        report_progress(out.size(), model.ops().size());
    }
    return out;
}

void SystolicModel::check_work(const wl::Model& model, const WorkLimits& limits) const {
    if (m_sys.fidelity != Fidelity::cycle) return;
    const double pes_per_array = static_cast<double>(m_sys.rows) * static_cast<double>(m_sys.cols);
    // The grid's register files (about 100 bytes per PE), reused by every tile.
    const double grid_bytes = pes_per_array * 100;
    if (grid_bytes > limits::max_cycle_fidelity_bytes) {
        const cfg::Node* section = m_spec.section("systolic");
        const cfg::Node* rows = section ? section->find("rows") : nullptr;
        cfg::fail(
            rows ? rows->loc() : cfg::SourceLoc{"<command line>", 0, 0}, rows ? rows->path() : "--fidelity",
            fmt::format("the cycle fidelity would need about {} for the registers of the {}x{} PE grid, more "
                        "than {}, the most it may take; use --fidelity tile (the same numbers, in closed "
                        "form)",
                        cfg::format_quantity(grid_bytes, cfg::Dim::size), m_sys.rows, m_sys.cols,
                        cfg::format_quantity(limits::max_cycle_fidelity_bytes, cfg::Dim::size)));
    }
    constexpr double k_cycle_pe_steps = 8;
    double work = 0, largest = 0;
    const wl::Op* largest_op = nullptr;
    for (const wl::Op& op : model.ops()) {
        if (!(op.counts().macs > 0) || op.gemms().empty()) continue;
        const Mapping p = map_gemms(op, OnChip{});
        double op_work = 0, matrix_words = 0;
        for (size_t i = 0; i < p.jobs.size(); ++i) {
            const wl::GemmShape& g = p.jobs[i].shape;
            const TilePlan& plan = p.plans[i];
            const double m = static_cast<double>(g.m), n = static_cast<double>(g.n),
                         k = static_cast<double>(g.k);
            // Every array's tiles step the one grid; each instance's product is checked by a plain matmul. A
            // cycle of the grid also costs what stepping k_cycle_pe_steps PEs costs (edges, bookkeeping):
            // measured on MobileNetV2, a 1x1 array stepped 8.5e7 PE-cycles/s and a 16x16 one 4.2e8
            // (2026-12-04, this project's 2-vCPU host), so a 1x1 ResNet-50 estimated as 8.2e9 PE-cycles (27 s
            // at 3e8/s) took 109 s.
            op_work += plan.estimate_cycles * static_cast<double>(plan.part.arrays_used) *
                           (pes_per_array + k_cycle_pe_steps) +
                       static_cast<double>(g.batch) * m * n * k;
            // A, B and C of the instances open at once (one per array), 8 bytes a word.
            matrix_words = std::max(
                matrix_words, (m * k + k * n + m * n) * static_cast<double>(std::min(g.batch, m_sys.arrays)));
        }
        const double bytes = grid_bytes + matrix_words * 8;
        if (bytes > limits::max_cycle_fidelity_bytes)
            cfg::fail(
                op.loc, op.key_path,
                fmt::format("op '{}' ({}): the cycle fidelity would need about {} for the {}x{} PE grid "
                            "and the layer's operand matrices, more than {}, the most it may take; use "
                            "--fidelity tile (the same numbers, in closed form)",
                            op.name, op.kind, cfg::format_quantity(bytes, cfg::Dim::size), m_sys.rows,
                            m_sys.cols,
                            cfg::format_quantity(limits::max_cycle_fidelity_bytes, cfg::Dim::size)));
        work += op_work;
        if (op_work > largest) {
            largest = op_work;
            largest_op = &op;
        }
    }
    if (work <= limits.max_pe_cycles) return;
    cfg::fail(
        cfg::SourceLoc{"<command line>", 0, 0}, "--max-pe-cycles",
        fmt::format("the cycle fidelity would step about {:.3g} PE-cycles for model '{}' on device '{}' "
                    "(the largest layer, '{}', {:.3g}), more than the limit of {:.3g} (about {:.0f} s); "
                    "raise --max-pe-cycles (max-pe-cycles in a sweep's base) to run it, or use "
                    "--fidelity tile (the same numbers, in closed form)",
                    work, model.name(), m_spec.name, largest_op ? largest_op->name : "", largest,
                    limits.max_pe_cycles, limits.max_pe_cycles / 3e8));
}

LayerResult SystolicModel::run_op(const wl::Op& op) { return run_op(op, OnChip{}); }

LayerResult SystolicModel::run_op(const wl::Op& op, const OnChip& on_chip) {
    const wl::OpCounts c = op.counts();
    const double in_on_chip = std::min(on_chip.input_total(), c.input_bytes);
    const double kept = std::min(on_chip.kept, c.output_bytes);
    // Fails (a UserError) for a data type the device does not compute in, before any work. The floor
    // is the roofline over the bytes the layer still moves across main memory (roofline.h).
    const RooflineBound bound = roofline_bound(m_spec, op, arch::OnChip{in_on_chip, kept});
    const bool memoize = m_memoize && m_sys.fidelity == Fidelity::tile;
    std::string key;
    LayerResult r;
    bool found = false;
    if (memoize) {
        key = op_signature(op, c);
        if (in_on_chip > 0 || kept > 0 || on_chip.resident > 0) {
            for (double x : {kept, on_chip.resident, in_on_chip}) append_bits(key, x);
            append_bits(key, on_chip.inputs.size());
            for (double b : on_chip.inputs) append_bits(key, b);
        }
        if (m_run_out) {
            if (auto it = m_run_memo.find(key); it != m_run_memo.end()) {
                r = (*m_run_out)[it->second];
                found = true;
                ++m_work.cache_hits;
            }
        } else if (auto it = m_memo.find(key); it != m_memo.end()) {
            r = it->second;
            found = true;
            ++m_work.cache_hits;
        }
    }
    if (!found) {
        Detail d;
        r = on_arrays(op) ? gemm_layer(op, on_chip, d) : vector_layer(op, on_chip, d);
        d.input_on_chip = in_on_chip;
        d.input_from_dram = c.input_bytes - in_on_chip;
        d.output_kept = kept;
        r.op = op.kind;
        r.dtype = std::string(wl::dtype_name(op.dtype));
        r.counts = c;
        r.time_s = static_cast<double>(r.cycles) / m_spec.clock_hz + m_spec.op_overhead_s;
        r.energy_static_j = m_spec.static_power_W * r.time_s;
        r.bytes_read = d.access.dram.read;
        r.bytes_written = d.access.dram.write;
        r.stall_cycles = d.stalls();
        record(r, d);

        MLSIM_CHECK(
            r.time_s >= bound.bound_s() * (1 - 1e-12),
            fmt::format("systolic layer '{}' ({}) takes {} s, below its roofline bound {} s (over the "
                        "bytes it moves: {} B of its inputs on chip, {} B of its output kept)",
                        op.name, op.kind, r.time_s, bound.bound_s(), in_on_chip, kept));
        MLSIM_CHECK(r.energy_compute_j >= 0 && r.energy_memory_j >= 0 && r.energy_static_j >= 0,
                    "negative energy");
        MLSIM_CHECK(
            d.stall_weight >= 0 && d.stall_input >= 0 && d.stall_output >= 0 && r.stall_cycles <= r.cycles,
            fmt::format("systolic layer '{}': stall cycles {} (weight {}, input {}, output {}) vs cycles {}",
                        op.name, r.stall_cycles, d.stall_weight, d.stall_input, d.stall_output, r.cycles));
        MLSIM_CHECK(r.bytes_read >= (c.weight_bytes + c.input_bytes - in_on_chip) * (1 - 1e-12) &&
                        r.bytes_written >= (c.output_bytes - kept) * (1 - 1e-12),
                    fmt::format("systolic layer '{}' moves less than its compulsory traffic", op.name));
        MLSIM_CHECK(r.utilization >= 0 && r.utilization <= 1 + 1e-12, "utilization outside [0, 1]");
        ++m_work.layers_simulated;
        if (memoize) {
            if (m_run_out)
                m_run_memo.emplace(std::move(key), m_run_out->size());  // where run() puts this layer
            else
                m_memo.emplace(std::move(key), r);
        }
    }
    r.name = op.name;
    r.counts = c;  // a memoized layer may come from an op with other parameters (a smaller table)
    r.phase = std::string(wl::phase_name(op.phase));
    r.idx = 0;
    r.start_s = 0;
    r.end_s = r.time_s;
    return r;
}

double SystolicModel::vector_throughput(std::string_view dtype) const {
    // Never faster than the device's peak for the data type: the roofline must bound vector ops too.
    return std::min(m_sys.vector_throughput_ops, m_spec.peak_for(dtype));
}

SystolicModel::PlanKey SystolicModel::plan_key(const MappingContext& ctx, const GemmJob& job) {
    const auto bits = [](double x) { return std::bit_cast<uint64_t>(x); };
    const auto u = [](int64_t x) { return static_cast<uint64_t>(x); };
    return {u(job.shape.batch), u(job.shape.m), u(job.shape.n), u(job.shape.k),
            (job.sequential ? 1u : 0u) | (job.a_on_chip ? 2u : 0u) | (ctx.stream_across_tiles ? 4u : 0u),
            bits(job.scale.a), bits(job.scale.b), bits(job.scale.c),
            // The room left in the ifmap buffer matters only below the settled capacity.
            ctx.ifmap_tile_capacity() >= ifmap_capacity_settled(ctx, job) ? ~uint64_t{0}
                                                                          : bits(ctx.ifmap_free_bytes),
            bits(ctx.word_bytes), bits(ctx.acc_bytes), u(ctx.passes)};
}

TilePlan SystolicModel::plan(const MappingContext& ctx, const GemmJob& job) const {
    // The rest of the context (device, spec, clock, main memory) is this model's; the op's name only
    // enters error messages, and a failed search is not stored.
    if (!m_memoize) return plan_gemm(ctx, job);
    const PlanKey key = plan_key(ctx, job);
    if (auto it = m_plans.find(key); it != m_plans.end()) return it->second;
    TilePlan p = plan_gemm(ctx, job);
    m_plans.emplace(key, p);
    return p;
}

SystolicModel::Mapping SystolicModel::map_gemms(const wl::Op& op, const OnChip& on_chip) const {
    const wl::OpCounts c = op.counts();
    const MemoryLevel& mem = m_spec.main_memory();
    Mapping mp;
    MappingContext& ctx = mp.ctx;
    ctx.device = &m_spec;
    ctx.spec = &m_sys;
    ctx.op_name = op.name;
    ctx.clock_hz = m_spec.clock_hz;
    ctx.dram_Bps = mem.bandwidth_Bps;
    ctx.dram_latency_s = mem.latency_s;
    ctx.word_bytes = wl::dtype_bytes(op.dtype);
    ctx.acc_bytes = m_sys.accumulator_bytes(ctx.word_bytes);
    ctx.passes = m_sys.passes_for(wl::dtype_name(op.dtype));
    ctx.stream_across_tiles = m_sys.convention == Convention::faithful;
    if (m_memoize) ctx.compute_memo = &ComputeMemo::for_this_thread();
    // Activations other layers keep in the ifmap buffer leave the rest to this layer's tiles.
    if (on_chip.resident > 0)
        ctx.ifmap_free_bytes = std::max(0.0, m_sys.ifmap.capacity_bytes - on_chip.resident);
    const bool a_in_place = reads_a_in_place(op) && !on_chip.inputs.empty() && on_chip.inputs[0] > 0;

    const std::vector<wl::GemmShape> gemms = op.gemms();
    int64_t steps = 0;
    for (size_t i = 0; i < gemms.size(); ++i) {
        GemmJob job;
        job.shape = gemms[i];
        job.sequential = sequential_batch(op, i);
        job.a_on_chip = i == 0 && a_in_place;
        // An im2col matrix is a view of the feature map: memory holds and moves the feature map.
        if (op.get<wl::ConvAttr>()) {
            const double a_words = static_cast<double>(job.shape.batch) * static_cast<double>(job.shape.m) *
                                   static_cast<double>(job.shape.k);
            job.scale.a = c.input_bytes / (a_words * ctx.word_bytes);
        }
        mp.plans.push_back(plan(ctx, job));
        mp.jobs.push_back(job);
        // Counts per dimension are at most the GEMM's extents, whose product is bounded (op.h).
        steps += mp.plans.back().steps() * mp.plans.back().part.groups;
    }
    if (steps > limits::max_tile_steps)
        cfg::fail(op.loc, op.key_path,
                  fmt::format("op '{}' ({}) maps to {} tile steps on device '{}', more than {}, the most one "
                              "layer may take (its step list would not fit in memory); larger buffers make "
                              "larger tiles",
                              op.name, op.kind, steps, m_spec.name, limits::max_tile_steps));
    return mp;
}

LayerResult SystolicModel::gemm_layer(const wl::Op& op, const OnChip& on_chip, Detail& d) {
    const wl::OpCounts c = op.counts();
    const std::string dtype(wl::dtype_name(op.dtype));
    Mapping mp = map_gemms(op, on_chip);
    const MappingContext& ctx = mp.ctx;
    const std::vector<GemmJob>& jobs = mp.jobs;
    const std::vector<TilePlan>& plans = mp.plans;
    const double in_place = mp.jobs.front().a_on_chip ? std::min(on_chip.input_total(), c.input_bytes) : 0.0;
    const double kept = writes_c_in_place(op) ? std::min(on_chip.kept, c.output_bytes) : 0.0;
    MLSIM_CHECK(
        on_chip.input_total() <= in_place * (1 + 1e-12) + 1e-9 && on_chip.kept <= kept * (1 + 1e-12) + 1e-9,
        fmt::format("layer '{}' was given on-chip tensors it cannot use", op.name));

    std::optional<CycleChecker> checker;
    if (m_sys.fidelity == Fidelity::cycle) checker.emplace(m_sys.shape(), m_sys.dataflow);
    StepList list = build_steps(ctx, jobs, plans, checker ? &*checker : nullptr, kept > 0);
    add_compulsory(list, c.weight_bytes + c.input_bytes - in_place, c.output_bytes - kept,
                   c.weight_bytes > 0);
    MLSIM_CHECK(static_cast<double>(list.kept()) >= kept * (1 - 1e-12),
                fmt::format("layer '{}' keeps less of its output on chip than it was told", op.name));
    {
        // The steps one after another, each transfer with its latency: no pipeline takes longer, so
        // within the limit no time below overflows the engine's picoseconds.
        double serial_s = 0;
        for (const Step& s : list.steps)
            serial_s += static_cast<double>(s.lead + s.done) / ctx.clock_hz +
                        static_cast<double>(s.a_bytes + s.b_bytes + s.c_read() + s.c_write() + s.c_kept()) /
                            ctx.dram_Bps +
                        4 * ctx.dram_latency_s;
        const double vector_s = std::max(0.0, c.flops - 2 * c.macs) / vector_throughput(dtype);
        check_simulated_time(op, serial_s + vector_s + m_spec.op_overhead_s, m_spec);
    }
    if (checker) m_work.grid_tiles += static_cast<uint64_t>(checker->tiles_run());

    LayerResult r;
    d.access = level_accesses(list, ctx.word_bytes, ctx.acc_bytes);
    // Conservation between levels.
    // Conservation between levels: main-memory reads are the fills of the buffers (the ifmap buffer
    // also takes the outputs kept for later layers, on chip), writes are the drains that leave.
    MLSIM_CHECK(d.access.dram.read ==
                    d.access.ifmap.write - static_cast<double>(list.kept()) + d.access.filter.write +
                        (d.access.ofmap.write - static_cast<double>(list.counts.out_writes) * ctx.acc_bytes),
                "main-memory reads differ from the bytes filled into the buffers");
    MLSIM_CHECK(d.access.dram.write == static_cast<double>(list.dram_write()),
                "main-memory writes differ from the bytes drained to it");
    MLSIM_CHECK(d.access.ifmap.read == static_cast<double>(list.counts.a_reads) * ctx.word_bytes &&
                    d.access.filter.read == static_cast<double>(list.counts.b_reads) * ctx.word_bytes,
                "buffer reads differ from the words the arrays consumed");

    int64_t pipeline_cycles = 0;
    if (m_sys.convention == Convention::faithful) {
        const PipelineTiming t = run_pipeline(ctx, list);
        m_work.events += t.events;
        pipeline_cycles = t.cycles;
        r.add_stats(t.stats);
        d.stall_weight = t.stall_weight;
        d.stall_input = t.stall_input;
        d.stall_output = t.stall_output;
        d.chip_weight = t.chip_weight;
        d.chip_input = t.chip_input;
        d.chip_output = t.chip_output;
        d.shift = t.shift;
        d.dram_busy = t.dram_busy;
        MLSIM_CHECK(t.busy + t.stall_weight + t.stall_input + t.stall_output == t.cycles,
                    "pipeline cycles are not busy + stalls");
    } else {
        pipeline_cycles = scalesim_op_cycles(ctx, op, jobs, plans);
    }
    const double vector_ops = std::max(0.0, c.flops - 2 * c.macs);
    const double vt = vector_throughput(dtype);
    const int64_t vector_cycles = vector_ops > 0 ? cycles_for(vector_ops / vt, m_spec.clock_hz) : 0;
    r.cycles = pipeline_cycles + vector_cycles;
    if (m_sys.convention == Convention::scalesim) {
        const int64_t floor_cycles = cycles_for(roofline_bound(m_spec, op).bound_s(), m_spec.clock_hz);
        if (r.cycles < floor_cycles) {
            d.stall_input += floor_cycles - r.cycles;
            r.cycles = floor_cycles;
        }
    }
    d.tiling = std::move(list.tiling);  // the list is not read again
    d.pe_hops = list.counts.hops();
    const double macs = static_cast<double>(list.counts.macs);
    r.utilization =
        r.cycles > 0 ? macs / (static_cast<double>(r.cycles) * static_cast<double>(m_sys.pes())) : 0;
    ActionCounts actions;
    actions.macs = macs;
    actions.vector_ops = vector_ops;
    actions.pe_hops = static_cast<double>(d.pe_hops);
    actions.access = d.access;
    d.energy = energy_of(m_spec, dtype, actions);
    r.energy_compute_j = d.energy.compute();
    r.energy_memory_j = d.energy.memory();
    return r;
}

LayerResult SystolicModel::vector_layer(const wl::Op& op, const OnChip& on_chip, Detail& d) {
    const wl::OpCounts c = op.counts();
    const MemoryLevel& mem = m_spec.main_memory();
    LayerResult r;
    d.tiling = "vector";
    // Inputs found in the ifmap buffer and an output kept there do not cross main memory; they move
    // through the ifmap buffer's ports (reads and writes have one each).
    const double in_chip = std::min(on_chip.input_total(), c.input_bytes);
    const double out_kept = std::min(on_chip.kept, c.output_bytes);
    const double in_dram = c.input_bytes - in_chip, out_dram = c.output_bytes - out_kept;
    const double bytes = c.weight_bytes + in_dram + out_dram;
    const double vt = vector_throughput(wl::dtype_name(op.dtype));
    check_simulated_time(
        op, std::max(c.flops / vt, bytes / mem.bandwidth_Bps + mem.latency_s) + m_spec.op_overhead_s, m_spec);
    const int64_t compute = c.flops > 0 ? cycles_for(c.flops / vt, m_spec.clock_hz) : 0;
    const int64_t memory =
        bytes > 0 ? cycles_for(bytes / mem.bandwidth_Bps + mem.latency_s, m_spec.clock_hz) : 0;
    const double port = std::max(in_chip, out_kept);
    const int64_t on_chip_cycles =
        port > 0 ? cycles_for(port / m_sys.ifmap.bandwidth_Bps, m_spec.clock_hz) : 0;
    r.cycles = std::max({compute, memory, on_chip_cycles});
    const int64_t stall = r.cycles - compute;
    if (stall > 0) {
        // Split by what the layer moved: its weights, inputs and outputs, wherever they were.
        const double moved = c.total_bytes();
        d.stall_weight =
            static_cast<int64_t>(std::floor(static_cast<double>(stall) * c.weight_bytes / moved));
        d.stall_output =
            static_cast<int64_t>(std::floor(static_cast<double>(stall) * c.output_bytes / moved));
        d.stall_input = stall - d.stall_weight - d.stall_output;
        // Waiting on the ifmap buffer's port rather than on main memory.
        if (on_chip_cycles > memory) d.chip_input = stall;
    }
    // Data passes through the buffers on its way to and from the vector unit.
    d.access.filter = {c.weight_bytes, c.weight_bytes};
    d.access.ifmap = {c.input_bytes, in_dram + out_kept};
    d.access.ofmap = {c.output_bytes, c.output_bytes};
    d.access.dram = {c.weight_bytes + in_dram, out_dram};
    r.utilization = 0;  // the arrays are idle

    ActionCounts actions;
    actions.vector_ops = c.flops;
    actions.access = d.access;
    d.energy = energy_of(m_spec, wl::dtype_name(op.dtype), actions);
    r.energy_compute_j = d.energy.compute();
    r.energy_memory_j = d.energy.memory();
    return r;
}

}  // namespace mlsim::arch::systolic
