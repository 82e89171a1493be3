#include "arch/roofline/roofline.h"

#include <algorithm>
#include <cmath>

#include "sim/core/check.h"

namespace mlsim::arch {

RooflineBound roofline_bound(const DeviceSpec& spec, const wl::Op& op) {
    const wl::OpCounts c = op.counts();
    const double peak = spec.peak_for(wl::dtype_name(op.dtype));
    const double bw = spec.main_memory().bandwidth_Bps;
    MLSIM_CHECK(peak > 0 && bw > 0, "validated device has zero peak or bandwidth");
    RooflineBound b;
    b.compute_s = c.flops / peak;
    b.memory_s = (c.weight_bytes + c.input_bytes + c.output_bytes) / bw;
    return b;
}

RooflineBound roofline_bound(const DeviceSpec& spec, const wl::Op& op, const OnChip& on_chip) {
    const wl::OpCounts c = op.counts();
    MLSIM_CHECK(on_chip.input_bytes >= 0 && on_chip.input_bytes <= c.input_bytes * (1 + 1e-12) &&
                    on_chip.output_bytes >= 0 && on_chip.output_bytes <= c.output_bytes * (1 + 1e-12),
                "more bytes on chip than the op moves");
    RooflineBound b = roofline_bound(spec, op);
    const double bytes = c.weight_bytes + std::max(0.0, c.input_bytes - on_chip.input_bytes) +
                         std::max(0.0, c.output_bytes - on_chip.output_bytes);
    b.memory_s = bytes / spec.main_memory().bandwidth_Bps;
    return b;
}

RooflineModel::RooflineModel(DeviceSpec spec) : m_spec(std::move(spec)) {}

std::vector<LayerResult> RooflineModel::run(const wl::Model& model) {
    std::vector<LayerResult> out;
    out.reserve(model.ops().size());
    const MemoryLevel& mem = m_spec.main_memory();
    double now = 0;
    int64_t idx = 0;
    for (const wl::Op& op : model.ops()) {
        const wl::OpCounts c = op.counts();
        const RooflineBound b = roofline_bound(m_spec, op);
        LayerResult r;
        r.idx = idx++;
        r.name = op.name;
        r.op = op.kind;
        r.phase = std::string(wl::phase_name(op.phase));
        r.dtype = std::string(wl::dtype_name(op.dtype));
        r.counts = c;
        r.bytes_read = c.weight_bytes + c.input_bytes;
        r.bytes_written = c.output_bytes;
        r.time_s = b.bound_s() + m_spec.op_overhead_s;
        check_simulated_time(op, now + r.time_s, m_spec);
        r.start_s = now;
        now += r.time_s;
        r.end_s = now;
        TimeParts parts;
        (b.compute_bound() ? parts.compute_s : parts.memory_s) = b.bound_s();
        parts.overhead_s = m_spec.op_overhead_s;
        r.set_parts(parts);
        r.cycles = static_cast<int64_t>(std::ceil(r.time_s * m_spec.clock_hz));
        // The compute units idle for whatever part of the layer is not spent computing.
        r.stall_cycles = static_cast<int64_t>(std::floor((r.time_s - b.compute_s) * m_spec.clock_hz));
        const double peak = m_spec.peak_for(r.dtype);
        // Clamped: at zero overhead a compute-bound layer reaches the peak up to one rounding step.
        r.utilization = r.time_s > 0 ? std::min(1.0, (c.flops / r.time_s) / peak) : 0;
        r.energy_compute_j = c.flops * m_spec.mac_energy_for(r.dtype) / 2;
        r.energy_memory_j =
            r.bytes_read * mem.read_energy_J_per_byte + r.bytes_written * mem.write_energy_J_per_byte;
        r.energy_static_j = m_spec.static_power_W * r.time_s;
        // The one level this model sees: main memory.
        r.levels.push_back(LevelTraffic{mem.name, r.bytes_read, r.bytes_written, 0, r.energy_memory_j});
        if (r.bound == "memory") r.add_text("memory_level", mem.name);
        MLSIM_CHECK(r.time_s >= b.bound_s(), "roofline layer faster than its own bound");
        MLSIM_CHECK(r.energy_j() >= 0, "negative energy");
        out.push_back(std::move(r));
        report_progress(out.size(), model.ops().size());
    }
    return out;
}

}  // namespace mlsim::arch
