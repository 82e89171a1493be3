// The CPU family: its `cpu:` section (declared here, next to the model), how the section is parsed and
// how it fixes the device's peaks (cores x MACs per cycle of each data type's unit x 2 x that unit's
// clock), the model's factory, its run option and summary lines.
#include <fmt/format.h>

#include <algorithm>
#include <cmath>

#include "arch/cpu/cpu_model.h"
#include "arch/cpu/cpu_spec.h"
#include "arch/device_model.h"
#include "arch/family.h"
#include "arch/section_params.h"
#include "sim/config/error.h"
#include "sim/config/messages.h"
#include "sim/config/units.h"
#include "sim/core/check.h"

namespace mlsim::arch::cpu {

using cfg::child;
using cfg::fail_at;

namespace {

// Section keys carry no schema default (a device without `cpu:` must resolve to no section at all); the
// defaults are applied by parse_cpu (the `*_or` readers) and named in the docs.
cfg::Param int_param(const char* name, const char* default_value, int64_t lo, int64_t hi, const char* doc) {
    cfg::Param p =
        optional_no_default(name, cfg::PType::integer, std::string(doc) + " (default " + default_value + ")");
    p.min = static_cast<double>(lo);
    p.max = static_cast<double>(hi);
    return p;
}

const cfg::Schema& unit_schema() {
    static const cfg::Schema schema = [] {
        cfg::Schema s;
        s.name = "device.cpu.units.<dtype>";
        s.doc = "the unit that computes one data type";
        s.params.push_back(
            cfg::required("unit", cfg::PType::string, "its name: avx512, avx512_vnni, amx, neon, ..."));
        cfg::Param kind =
            optional_no_default("kind", cfg::PType::choice,
                                "vector (default): simd_width / element bits lanes x FMA pipes MACs "
                                "per cycle (dot-product extensions count lanes of the narrow type); "
                                "matrix: `macs_per_cycle`");
        kind.choices = {"vector", "matrix"};
        s.params.push_back(kind);
        cfg::Param macs = optional_no_default("macs_per_cycle", cfg::PType::integer,
                                              "MACs per cycle per core of a matrix unit (AMX BF16: 512)");
        macs.min = 1;
        macs.max = 1 << 20;
        s.params.push_back(macs);
        cfg::Param clock =
            optional_no_default("clock", cfg::PType::quantity,
                                "the core clock while this unit runs (wide-vector and matrix "
                                "code may run below the all-core turbo); the device clock when absent");
        clock.dim = cfg::Dim::frequency;
        clock.positive = true;
        s.params.push_back(clock);
        return s;
    }();
    return schema;
}

const cfg::Schema& cache_schema() {
    static const cfg::Schema schema = [] {
        cfg::Schema s;
        s.name = "device.cpu.caches.<level>";
        s.doc = "geometry of the `memory:` level of that name (capacity, instances, energy come from there)";
        cfg::Param line = cfg::quantity("line", cfg::Dim::size, std::string("64B"), "line size");
        line.max = 4096;
        s.params.push_back(line);
        cfg::Param ways = cfg::required("associativity", cfg::PType::integer, "ways per set");
        ways.min = 1;
        ways.max = 1024;
        s.params.push_back(ways);
        s.params.push_back(int_param("latency", "0", 0, 100000, "load-to-use latency in core cycles"));
        cfg::Param bpc = cfg::required("bytes_per_cycle", cfg::PType::quantity,
                                       "bandwidth toward the level above, per core per cycle (e.g. 64B); the "
                                       "`memory:` bandwidth must be this x cores x clock");
        bpc.dim = cfg::Dim::size;
        bpc.positive = true;
        s.params.push_back(bpc);
        s.params.push_back(
            int_param("slices", "1", 1, 4096, "slices per instance (an L3 split over the mesh)"));
        return s;
    }();
    return schema;
}

const cfg::Schema& dram_schema() {
    static const cfg::Schema schema = [] {
        cfg::Schema s;
        s.name = "device.cpu.dram";
        s.doc = "main memory as the cores see it (its bandwidth and energy are the last `memory:` level's)";
        // Required, so that a device without `cpu.dram` resolves to no `dram` map at all.
        cfg::Param channels = cfg::required("channels", cfg::PType::integer, "memory channels");
        channels.min = 1;
        channels.max = 1024;
        s.params.push_back(channels);
        cfg::Param lat =
            optional_no_default("latency", cfg::PType::quantity, "load-to-use latency (default 100ns)");
        lat.dim = cfg::Dim::time;
        s.params.push_back(lat);
        cfg::Param refresh =
            optional_no_default("refresh_overhead", cfg::PType::real,
                                "tRFC / tREFI: fraction of time a rank is refreshing (default 0)");
        refresh.min = 0;
        refresh.max = 0.5;
        s.params.push_back(refresh);
        cfg::Param turn =
            optional_no_default("turnaround", cfg::PType::quantity,
                                "bus turnaround (read->write->read) per write burst (default 0)");
        turn.dim = cfg::Dim::time;
        s.params.push_back(turn);
        s.params.push_back(int_param("write_batch", "32", 1, 1 << 20, "lines drained per write burst"));
        s.params.push_back(int_param("miss_buffers", "16", 1, 1 << 16,
                                     "misses one core keeps in flight toward DRAM (Little's law bound)"));
        return s;
    }();
    return schema;
}

const cfg::Schema& cpu_schema() {
    static const cfg::Schema schema = [] {
        cfg::Schema s;
        s.name = "device.cpu";
        s.doc =
            "CPU organisation: SIMD cores, compute units per data type, cache geometry, DRAM (read by the "
            "detailed CPU model)";
        // At most 4,096 cores: a device is one socket (the largest ship 128-288 cores), and the thread
        // split of each GEMM (cpu_model.cpp, split_threads) searches the ways of dividing them.
        cfg::Param cores = count_param("cores", "physical cores (at most 4096)");
        cores.max = 4096;
        s.params.push_back(cores);
        s.params.push_back(size_param("simd_width", "SIMD register width (datapath width), e.g. 512b"));
        // At most 64 pipes a core (cores issue 2-4 vector FMAs a cycle).
        cfg::Param pipes = count_param("fma_units_per_core", "SIMD FMA pipes per core (at most 64)");
        pipes.max = 64;
        s.params.push_back(pipes);
        s.params.push_back(
            optional_no_default("matrix_unit", cfg::PType::string, "matrix extension, e.g. amx"));
        s.params.push_back(int_param("vector_registers", "32", 4, 1024, "architectural vector registers"));
        s.params.push_back(int_param("fma_latency", "4", 1, 64, "FMA latency in cycles"));
        s.params.push_back(int_param("load_ports", "2", 1, 16, "vector loads per cycle from L1"));
        cfg::Param call =
            optional_no_default("kernel_call_cycles", cfg::PType::real,
                                "cycles per micro-kernel call beyond its C tile update (call, loop "
                                "set-up; default 20, est.)");
        call.min = 0;
        s.params.push_back(call);
        cfg::Param units;
        units.name = "units";
        units.type = cfg::PType::dict;
        units.value_type = cfg::PType::map;
        units.sub = &unit_schema();
        units.choices = known_dtypes();
        units.doc = "the unit computing each data type; peak = cores x MACs per cycle x 2 x its clock";
        s.params.push_back(units);
        cfg::Param caches;
        caches.name = "caches";
        caches.type = cfg::PType::dict;
        caches.value_type = cfg::PType::map;
        caches.sub = &cache_schema();
        caches.doc = "geometry of each cache level, keyed by its `memory:` name";
        s.params.push_back(caches);
        s.params.push_back(map_param("dram", dram_schema(), "main memory timing"));
        cfg::Param fid =
            optional_no_default("fidelity", cfg::PType::choice,
                                "closed (default): closed-form traffic per level; trace: set-associative "
                                "LRU caches fed the blocked loop nest's addresses (small and medium GEMMs)");
        fid.choices = {"closed", "trace"};
        s.params.push_back(fid);
        cfg::Param fusion = optional_no_default(
            "fusion", cfg::PType::choice,
            "epilogue (default): in inference, element-wise ops and batch-norm that are the sole consumer of "
            "a "
            "convolution's or GEMM's output run as its post-ops (oneDNN), without a pass of their own over "
            "memory; none: every op on its own");
        fusion.choices = {"none", "epilogue"};
        s.params.push_back(fusion);
        cfg::Param limit = optional_no_default("trace_limit", cfg::PType::integer,
                                               "most line accesses the trace fidelity replays for one layer "
                                               "(default 200000000)");
        limit.min = 1;
        s.params.push_back(limit);
        return s;
    }();
    return schema;
}

std::string exact_throughput(double ops) {
    static const std::pair<double, const char*> units[] = {
        {1e15, "POP/s"}, {1e12, "TOP/s"}, {1e9, "GOP/s"}, {1e6, "MOP/s"}, {1e3, "kOP/s"}};
    for (const auto& [scale, unit] : units)
        if (ops >= scale) return fmt::format("{:.7g}{}", ops / scale, unit);
    return fmt::format("{:.7g}OP/s", ops);
}

double dtype_bytes_of(const std::string& dtype) {
    for (const std::string& n : wl::dtype_names())
        if (n == dtype) return wl::dtype_bytes(*wl::parse_dtype(n));
    return 4;
}

std::shared_ptr<const FamilyParams> parse_cpu(const cfg::Node& dev, DeviceSpec& d) {
    const cfg::Node& node = child(dev, "cpu");
    const cfg::Reader r(node, cpu_schema());
    auto sp = std::make_shared<CpuSpec>();
    CpuSpec& s = *sp;
    const auto need = [&](const char* key) {
        if (!r.has(key))
            cfg::fail(node.key_loc(), node.path(),
                      fmt::format("the CPU model needs `{}` (see configs/README.md, \"cpu:\")", key));
    };
    need("cores");
    need("simd_width");
    need("fma_units_per_core");
    s.cores = r.integer("cores");
    s.simd_bits = static_cast<int64_t>(std::llround(r.quantity("simd_width") * 8));
    s.fma_pipes = r.integer("fma_units_per_core");
    const auto int_or = [](const cfg::Reader& rd, const char* k, int64_t v) {
        return rd.has(k) ? rd.integer(k) : v;
    };
    const auto real_or = [](const cfg::Reader& rd, const char* k, double v) {
        return rd.has(k) ? rd.real(k) : v;
    };
    const auto qty_or = [](const cfg::Reader& rd, const char* k, double v) {
        return rd.has(k) ? rd.quantity(k) : v;
    };
    s.vector_registers = int_or(r, "vector_registers", 32);
    s.fma_latency = int_or(r, "fma_latency", 4);
    s.load_ports = int_or(r, "load_ports", 2);
    s.kernel_call_cycles = real_or(r, "kernel_call_cycles", 20);
    s.fidelity = r.has("fidelity") && r.str("fidelity") == "trace" ? Fidelity::trace : Fidelity::closed;
    s.fidelity_loc = r.has("fidelity") ? r.at("fidelity").loc() : node.key_loc();
    s.fidelity_path = r.has("fidelity") ? r.at("fidelity").path() : node.path() + ".fidelity";
    s.trace_limit = int_or(r, "trace_limit", 200000000);
    s.fuse_post_ops = !(r.has("fusion") && r.str("fusion") == "none");
    if (s.simd_bits < 64 || s.simd_bits % 64 != 0)
        fail_at(r.at("simd_width"), "simd_width must be a whole number of 64-bit lanes");

    // Caches: every `memory:` level before main memory, with its geometry from `caches:`.
    std::map<std::string, cfg::Reader> geometry;
    for (auto& [name, g] : r.map_dict("caches")) geometry.emplace(name, g);
    const cfg::Node* caches_node = node.find("caches");
    for (const auto& [name, g] : geometry)
        if (!d.find_memory(name) || name == d.main_memory().name)
            fail_at(child(*caches_node, name),
                    "cache geometry for '" + name + "', which is not a `memory:` level before main memory");
    for (size_t i = 0; i + 1 < d.memory.size(); ++i) {
        const MemoryLevel& m = d.memory[i];
        auto it = geometry.find(m.name);
        if (it == geometry.end())
            cfg::fail(node.key_loc(), node.path() + ".caches",
                      "memory level '" + m.name + "' needs its geometry under `cpu.caches." + m.name +
                          "` (line, associativity, latency, bytes_per_cycle)");
        const cfg::Reader& g = it->second;
        CacheLevel c;
        c.name = m.name;
        c.capacity_bytes = m.capacity_bytes;
        c.instances = m.instances;
        if (s.cores % m.instances != 0)
            fail_at(child(*caches_node, m.name),
                    fmt::format("{} cores do not divide evenly over {} instances "
                                "of '{}'",
                                s.cores, m.instances, m.name));
        c.cores_sharing = s.cores / m.instances;
        c.line_bytes = static_cast<int64_t>(std::llround(g.quantity("line")));
        c.associativity = g.integer("associativity");
        c.latency_cycles = g.has("latency") ? g.integer("latency") : 0;
        c.bytes_per_cycle = g.quantity("bytes_per_cycle");
        c.slices = g.has("slices") ? g.integer("slices") : 1;
        c.read_energy_J_per_byte = m.read_energy_J_per_byte;
        c.write_energy_J_per_byte = m.write_energy_J_per_byte;
        const double sets = m.capacity_bytes / static_cast<double>(c.line_bytes * c.associativity);
        if (c.line_bytes < 8 || (c.line_bytes & (c.line_bytes - 1)) != 0)
            fail_at(g.at("line"), "a cache line must be a power of two of at least 8 bytes");
        if (sets < 1 || std::abs(sets - std::round(sets)) > 1e-9)
            fail_at(g.at("associativity"),
                    fmt::format("'{}': capacity {} is not a whole number of sets of {} ways x {} B lines",
                                m.name, cfg::format_quantity(m.capacity_bytes, cfg::Dim::size),
                                c.associativity, c.line_bytes));
        const double derived = c.bytes_per_cycle * static_cast<double>(s.cores) * d.clock_hz;
        if (std::abs(m.bandwidth_Bps - derived) > 0.01 * derived)
            fail_at(
                g.at("bytes_per_cycle"),
                fmt::format("'{}': {} B per cycle per core x {} cores x {} = {}, but its `memory:` bandwidth "
                            "is {} (they must agree within 1 %)",
                            m.name, c.bytes_per_cycle, s.cores,
                            cfg::format_quantity(d.clock_hz, cfg::Dim::frequency),
                            cfg::format_quantity(derived, cfg::Dim::bandwidth),
                            cfg::format_quantity(m.bandwidth_Bps, cfg::Dim::bandwidth)));
        s.caches.push_back(c);
    }
    if (s.caches.empty())
        cfg::fail(node.key_loc(), node.path(),
                  "the CPU model needs at least one cache level before main memory");

    const MemoryLevel& mem = d.main_memory();
    const bool has_dram = r.has("dram");
    s.dram.name = mem.name;
    s.dram.bandwidth_Bps = mem.bandwidth_Bps;
    if (has_dram) {
        const cfg::Reader dr = r.sub("dram");
        s.dram.channels = dr.integer("channels");
        s.dram.latency_s = qty_or(dr, "latency", 100e-9);
        s.dram.refresh_overhead = real_or(dr, "refresh_overhead", 0);
        s.dram.turnaround_s = qty_or(dr, "turnaround", 0);
        if (s.dram.latency_s > 1e-5) fail_at(dr.at("latency"), "DRAM latency above 10 us is not a DRAM");
        if (s.dram.turnaround_s > 1e-6)
            fail_at(dr.at("turnaround"), "a bus turnaround above 1 us is not a DRAM bus");
        s.dram.write_batch = int_or(dr, "write_batch", 32);
        s.dram.miss_buffers = int_or(dr, "miss_buffers", 16);
    } else {
        s.dram.latency_s = 100e-9;
    }
    // The main memory level's `latency`, where given, is the DRAM latency too: both given must agree, and
    // either is held to the DRAM bound above (the level's own value went past it unchecked, and won).
    if (mem.latency_s > 0) {
        const std::string level = fmt::format("device.memory[{}].latency", d.memory.size() - 1);
        if (has_dram && r.sub("dram").has("latency") && std::abs(s.dram.latency_s - mem.latency_s) > 1e-12)
            fail_at(r.sub("dram").at("latency"),
                    fmt::format("DRAM latency {} disagrees with {} ({}); give one of them",
                                cfg::format_quantity(s.dram.latency_s, cfg::Dim::time), level,
                                cfg::format_quantity(mem.latency_s, cfg::Dim::time)));
        const cfg::Node* levels = dev.find("memory");
        const cfg::Node* at = levels && levels->is_sequence() && !levels->items().empty()
                                  ? levels->items().back().find("latency")
                                  : nullptr;
        if (mem.latency_s > 1e-5)
            cfg::fail(at ? at->loc() : node.key_loc(), level,
                      fmt::format("main memory '{}' has latency {}: DRAM latency above 10 us is not a DRAM",
                                  mem.name, cfg::format_quantity(mem.latency_s, cfg::Dim::time)));
        s.dram.latency_s = mem.latency_s;
    }
    s.dram.read_energy_J_per_byte = mem.read_energy_J_per_byte;
    s.dram.write_energy_J_per_byte = mem.write_energy_J_per_byte;

    // Units: declared per data type, or a vector unit at the device clock for every data type with a
    // MAC energy.
    const cfg::Node* units_node = node.find("units");
    std::vector<std::pair<std::string, cfg::Reader>> declared = r.map_dict("units");
    for (const auto& [dtype, u] : declared) {
        if (!d.mac_energy_J.count(dtype))
            fail_at(child(*units_node, dtype),
                    "a unit for data type '" + dtype + "', which has no MAC energy (`mac_energy`)");
        ComputeUnit cu;
        cu.name = u.str("unit");
        cu.matrix = u.has("kind") && u.str("kind") == "matrix";
        cu.clock_hz = u.has("clock") ? u.quantity("clock") : d.clock_hz;
        const double bytes = dtype_bytes_of(dtype);
        if (cu.matrix) {
            if (!u.has("macs_per_cycle"))
                fail_at(child(*units_node, dtype), "a matrix unit needs `macs_per_cycle`");
            cu.macs_per_cycle = static_cast<double>(u.integer("macs_per_cycle"));
        } else {
            if (u.has("macs_per_cycle"))
                fail_at(u.at("macs_per_cycle"),
                        "a vector unit's MACs per cycle follow from simd_width and "
                        "fma_units_per_core; give `macs_per_cycle` only with `kind: matrix`");
            cu.macs_per_cycle = s.lanes(bytes) * static_cast<double>(s.fma_pipes);
        }
        s.units[dtype] = cu;
    }
    if (declared.empty())
        for (const auto& [dtype, e] : d.mac_energy_J) {
            ComputeUnit cu;
            cu.name = "simd";
            cu.clock_hz = d.clock_hz;
            cu.macs_per_cycle = s.lanes(dtype_bytes_of(dtype)) * static_cast<double>(s.fma_pipes);
            s.units[dtype] = cu;
        }

    // Peaks: derived from the units, or checked against them.
    const auto rate_of = [&](const std::string& dtype) {
        const ComputeUnit& u = s.units.at(dtype);
        return static_cast<double>(s.cores) * u.macs_per_cycle * 2 * u.clock_hz;
    };
    if (d.peak_ops_per_s.empty()) {
        for (const auto& [dtype, u] : s.units) d.peak_ops_per_s[dtype] = rate_of(dtype);
        return sp;
    }
    const cfg::Node& peak_node = child(dev, "peak");
    for (const auto& [dtype, peak] : d.peak_ops_per_s) {
        if (!s.units.count(dtype))
            fail_at(child(peak_node, dtype), "peak for " + dtype + ", which no unit in `cpu.units` computes");
        const ComputeUnit& u = s.units.at(dtype);
        const double expected = rate_of(dtype);
        if (peak < expected * (1 - 1e-12) || peak > expected * 1.01)
            fail_at(child(peak_node, dtype),
                    fmt::format(
                        "peak {} for {} does not match its unit {} ({} cores x {} MACs/cycle x 2 x {} = "
                        "{}); it must be at least that and at most 1 % more: {}. Leave `peak` out to have it "
                        "derived",
                        cfg::format_quantity(peak, cfg::Dim::throughput), dtype, u.name, s.cores,
                        u.macs_per_cycle, cfg::format_quantity(u.clock_hz, cfg::Dim::frequency),
                        cfg::format_quantity(expected, cfg::Dim::throughput),
                        exact_throughput(expected * (1 + 1e-6))));
    }
    for (const auto& [dtype, u] : s.units)
        if (!d.peak_ops_per_s.count(dtype))
            fail_at(child(*units_node, dtype), "a unit for " + dtype +
                                                   ", which has no peak in `peak` (list it there, "
                                                   "or leave `peak` out to have every peak derived)");
    return sp;
}

std::vector<std::string> summary_lines(const std::vector<LayerResult>& layers) {
    double cycles = 0, pack = 0, mem = 0;
    std::map<std::string, double> by_level;
    for (const LayerResult& l : layers) {
        cycles += static_cast<double>(l.cycles);
        pack += l.metric_value("stall_packing_cycles");
        mem += static_cast<double>(l.stall_cycles) - l.metric_value("stall_packing_cycles");
        for (const LevelTraffic& t : l.levels) by_level[t.level] += t.bytes_read + t.bytes_written;
    }
    std::string traffic;
    for (const auto& [name, b] : by_level) traffic += fmt::format(" {} {:.3g} GB", name, b / 1e9);
    return {
        fmt::format("cycles  {:.0f} (cpu model; stalls: packing {:.0f}, memory {:.0f})", cycles, pack, mem),
        "traffic" + traffic};
}

}  // namespace

const CpuSpec* spec_of(const DeviceSpec& d) { return d.params_of<CpuSpec>("cpu"); }

void register_family() {
    Family f;
    f.name = "cpu";
    f.description = "CPU: SIMD cores, set-associative caches, BLIS-blocked kernels, threads, DRAM";
    f.section = "cpu";
    f.schema = &cpu_schema();
    f.hardware = {"cpu"};
    f.parse = parse_cpu;
    f.factory = [](const DeviceSpec& spec) -> std::unique_ptr<DeviceModel> {
        return std::make_unique<CpuModel>(spec);
    };
    f.options = {
        {"fidelity", "device.cpu.fidelity",
         "CPU devices: closed (closed-form misses per level, default) | trace (set-associative LRU "
         "caches replay each GEMM's blocked loop nest; small and medium shapes)"},
        {"fusion", "device.cpu.fusion",
         "CPU devices: epilogue (default: element-wise ops and BN after a GEMM as its oneDNN post-ops) | "
         "none"}};
    f.summary = summary_lines;
    register_family(std::move(f));
}

}  // namespace mlsim::arch::cpu
