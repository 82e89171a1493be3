// The SIMT GPU family: its `gpu:` section (declared here, next to the model), how the section is parsed
// and how it fixes the device's peaks, the model's factory, its run options and summary lines.
#include <fmt/format.h>

#include <cmath>

#include "arch/device_model.h"
#include "arch/family.h"
#include "arch/gpu/gpu_model.h"
#include "arch/gpu/gpu_spec.h"
#include "arch/section_params.h"
#include "sim/config/error.h"
#include "sim/config/messages.h"
#include "sim/config/units.h"

namespace mlsim::arch::gpu {

using cfg::child;
using cfg::fail_at;

namespace {

// The CUDA cores' rates over FP32's (gpu.cuda_core_<dtype>_ratio): data type, default, what it is.
struct CudaCoreRatio {
    const char* dtype;
    const char* default_ratio;
    const char* what;
};
constexpr CudaCoreRatio k_cuda_core_ratios[] = {
    {"fp16", "2", "(non-tensor) FP16"}, {"bf16", "2", "(non-tensor) BF16"}, {"int8", "4", "(DP4A) INT8 MAC"}};

cfg::Param with_min(cfg::Param p, double min, std::optional<double> max = std::nullopt) {
    p.min = min;
    p.max = max;
    return p;
}

const cfg::Schema& gpu_tile_schema() {
    static const cfg::Schema schema = [] {
        cfg::Schema s;
        s.name = "device.gpu.tile";
        s.doc = "a fixed GEMM thread-block tile (instead of the search over the candidates)";
        for (const char* key : {"bm", "bn", "bk", "stages"}) {
            cfg::Param p = cfg::required(
                key, cfg::PType::integer,
                std::string(key) == "stages" ? "pipeline stages in shared memory" : "tile extent (elements)");
            p.min = 1;
            p.max = std::string(key) == "stages" ? 8 : 1024;  // CUTLASS ships pipelines of up to 8 stages
            s.params.push_back(p);
        }
        return s;
    }();
    return schema;
}

const cfg::Schema& gpu_schema() {
    static const cfg::Schema schema = [] {
        cfg::Schema s;
        s.name = "device.gpu";
        s.doc = "SIMT GPU organisation (read by the detailed GPU model)";
        // Required, so that a device without a `gpu:` section does not get one filled with defaults.
        cfg::Param sms = count_param("sms", "streaming multiprocessors");
        sms.required = true;
        sms.max = 100000;  // far beyond any GPU; keeps grid and wave arithmetic inside 64-bit integers
        s.params.push_back(sms);
        cfg::Param lanes =
            count_param("cuda_cores_per_sm", "FP32 lanes per SM (the FP32 peak is lanes x 2 x SMs x clock)");
        lanes.max = 100000;
        s.params.push_back(lanes);
        s.params.push_back(count_param("tensor_cores_per_sm", "tensor cores per SM (informative)"));
        cfg::Param fp64 = count_param("fp64_cores_per_sm",
                                      "FP64 FMA lanes per SM (the CUDA-core FP64 peak is lanes x 2 x SMs x "
                                      "cuda_core_clock); absent: no FP64");
        fp64.max = 100000;
        s.params.push_back(fp64);
        cfg::Param rates;
        rates.name = "tensor_ops_per_clock";
        rates.type = cfg::PType::dict;
        rates.value_type = cfg::PType::integer;
        rates.choices = known_dtypes();
        rates.min = 1;
        rates.doc =
            "dense tensor-core ops (1 MAC = 2) per clock per SM, per data type; the peak is this x SMs "
            "x clock. Absent: no tensor cores";
        s.params.push_back(rates);
        cfg::Param cclock =
            optional_no_default("cuda_core_clock", cfg::PType::quantity,
                                "clock of the FP32 (CUDA core) peak; default the device clock");
        cclock.dim = cfg::Dim::frequency;
        cclock.positive = true;
        s.params.push_back(cclock);
        s.params.push_back(size_param("registers_per_sm", "register file per SM"));
        s.params.push_back(size_param("shared_memory_per_sm", "largest shared-memory carve-out per SM"));
        s.params.push_back(
            size_param("shared_memory_per_block",
                       "largest shared memory one thread block may use; default per SM - 1 KiB"));
        s.params.push_back(with_min(
            cfg::optional("max_threads_per_sm", cfg::PType::integer, "2048", "resident threads per SM"), 32,
            1 << 20));
        s.params.push_back(with_min(
            cfg::optional("max_blocks_per_sm", cfg::PType::integer, "32", "resident thread blocks per SM"), 1,
            1 << 16));
        s.params.push_back(with_min(cfg::optional("shared_memory_bandwidth", cfg::PType::integer, "128",
                                                  "shared-memory bytes per clock per SM (32 banks x 4 B)"),
                                    1, 1 << 20));
        s.params.push_back(with_min(cfg::optional("l2_port_bandwidth", cfg::PType::integer, "64",
                                                  "bytes per clock one SM can take from L2"),
                                    1, 1 << 20));
        s.params.push_back(cfg::quantity("l2_latency", cfg::Dim::time, std::string("200ns"),
                                         "load latency of an L2 hit, SM to SM"));
        s.params.push_back(cfg::quantity("dram_latency", cfg::Dim::time, std::string("500ns"),
                                         "load latency of an L2 miss served by DRAM, SM to SM"));
        s.params.push_back(with_min(cfg::optional("dram_efficiency", cfg::PType::real, "0.9",
                                                  "sustained / peak DRAM bandwidth of streaming kernels"),
                                    0.05, 1.0));
        // Non-tensor FP16 / BF16 rates over FP32's: Volta and Hopper 2 (packed half2 FMAs), A100 4 for
        // FP16 and 2 for BF16 (whitepaper Table 1: 78 and 39 TFLOPS against 19.5 FP32), Ada 1 (RTX 4090:
        // 82.6 FP16 non-tensor = FP32). They set the CUDA cores' rate of element-wise work, softmax and
        // GEMMs the tensor cores cannot take.
        // DP4A (int8, int4) runs on the INT32 lanes, 4 MACs an instruction: 4x FP32 where an SM has as
        // many INT32 lanes as FP32 ones (Volta, A100: 64 and 64), 2x where it has half (Hopper and Ada:
        // 64 INT32 against 128 FP32 lanes, their whitepapers' SM diagrams).
        for (const auto& [dtype, ratio, what] : k_cuda_core_ratios)
            s.params.push_back(
                with_min(cfg::optional(std::string("cuda_core_") + dtype + "_ratio", cfg::PType::real, ratio,
                                       std::string("CUDA-core ") + what + " rate / FP32 rate"),
                         0.0625, 16.0));
        s.params.push_back(
            with_min(cfg::optional("l2_reuse_fraction", cfg::PType::real, "1",
                                   "share of the L2 that keeps a GEMM's operands between waves"),
                     0.0, 1.0));
        s.params.push_back(cfg::quantity("graph_launch_overhead", cfg::Dim::time, std::string("1us"),
                                         "per kernel inside a CUDA graph (the device's op_overhead is the "
                                         "per-kernel launch overhead without one)"));
        s.params.push_back(cfg::optional("cuda_graphs", cfg::PType::boolean, "false",
                                         "kernels launched as one CUDA graph (graph_launch_overhead each)"));
        s.params.push_back(cfg::optional("async_copy", cfg::PType::boolean, "true",
                                         "asynchronous global-to-shared copies (Ampere and later): pipelines "
                                         "of up to 8 stages; false: 2 stages through registers (Volta)"));
        s.params.push_back(cfg::quantity("register_file_energy", cfg::Dim::energy_per_byte,
                                         std::string("0pJ/B"),
                                         "energy per byte of register-file operand traffic", false));
        s.params.push_back(choice_param("fusion", "epilogue", {"none", "epilogue"},
                                        "epilogue: batch-norm folded, bias / activation / residual add fused "
                                        "into the GEMM epilogue (inference engines); none: a kernel per op"));
        s.params.push_back(choice_param("attention", "fused", {"fused", "unfused"},
                                        "fused: FlashAttention-style tiles in shared memory; unfused: the "
                                        "score matrix goes through DRAM"));
        s.params.push_back(
            choice_param("fidelity", "wave", {"wave", "block"},
                         "wave: each wave of thread blocks in closed form; block: every thread "
                         "block's every K step as events"));
        s.params.push_back(map_param("tile", gpu_tile_schema(), "a fixed GEMM tile; absent: searched"));
        return s;
    }();
    return schema;
}

std::string exact_throughput(double ops) {
    static const std::pair<double, const char*> units[] = {
        {1e15, "POP/s"}, {1e12, "TOP/s"}, {1e9, "GOP/s"}, {1e6, "MOP/s"}, {1e3, "kOP/s"}};
    for (const auto& [scale, unit] : units)
        if (ops >= scale) return fmt::format("{:.6g}{}", ops / scale, unit);
    return fmt::format("{:.6g}OP/s", ops);
}

// The section, with the rule that ties it to the roofline figures: the SM array fixes each data type's
// peak (tensor ops per clock x SMs x clock; FP32: lanes x 2 x SMs x CUDA-core clock). Without `peak:` the
// device's peaks are derived so; a declared peak must agree within 1 % (vendors round: A100's
// 2048 x 108 x 1.41 GHz = 311.9 TFLOP/s is quoted as 312).
std::shared_ptr<const FamilyParams> parse_gpu(const cfg::Node& dev, DeviceSpec& d) {
    const cfg::Node& node = child(dev, "gpu");
    const cfg::Reader r(node, gpu_schema());
    auto gp = std::make_shared<GpuSpec>();
    GpuSpec& g = *gp;
    const auto need = [&](const char* key) {
        if (!r.has(key))
            fail_at(node, std::string("the GPU model needs `") + key + "` in the `gpu:` section");
    };
    for (const char* key : {"cuda_cores_per_sm", "registers_per_sm", "shared_memory_per_sm"}) need(key);
    // The model reads the first memory level as each SM's L1 / shared memory, the level named l2 (when there
    // is one) as the L2 and the last as DRAM (gpu_model.cpp): they must be different levels.
    if (d.memory.size() < 2 || d.memory.front().name == "l2") {
        const cfg::Node* mem = dev.find("memory");
        fail_at(mem ? *mem : dev,
                fmt::format("the GPU model takes the first memory level as each SM's L1 / shared memory, a "
                            "level named l2 as the L2 and the last as DRAM; this device lists {} level(s){}: "
                            "give at least two, the first not named l2 (e.g. l1, l2, hbm)",
                            d.memory.size(),
                            d.memory.empty() ? "" : ", the first '" + d.memory.front().name + "'"));
    }
    g.sms = r.integer("sms");
    g.fp32_lanes_per_sm = r.integer("cuda_cores_per_sm");
    g.tensor_cores_per_sm = r.has("tensor_cores_per_sm") ? r.integer("tensor_cores_per_sm") : 0;
    g.fp64_lanes_per_sm = r.has("fp64_cores_per_sm") ? r.integer("fp64_cores_per_sm") : 0;
    if (const cfg::Node* rates = node.find("tensor_ops_per_clock"); rates && rates->is_map())
        for (const auto& [dtype, value] : rates->entries())
            g.tensor_ops_per_clock[dtype] = static_cast<double>(value.as_int());
    g.cuda_core_clock_hz = r.has("cuda_core_clock") ? r.quantity("cuda_core_clock") : d.clock_hz;
    g.fp64_clock_ratio = g.cuda_core_clock_hz / d.clock_hz;
    // What the FP64 tensor cores cannot take (misaligned GEMMs, element-wise ops) runs on the FP64 CUDA
    // cores, so DMMA without them would leave those ops without a unit.
    if (g.tensor_ops_per_clock.count("fp64") && g.fp64_lanes_per_sm == 0)
        fail_at(child(child(node, "tensor_ops_per_clock"), "fp64"),
                "FP64 tensor cores need `fp64_cores_per_sm` (the FP64 CUDA cores that run the ops the "
                "tensor cores cannot)");
    g.registers_bytes = r.quantity("registers_per_sm");
    g.shared_memory_bytes = r.quantity("shared_memory_per_sm");
    g.shared_memory_per_block_bytes = r.has("shared_memory_per_block") ? r.quantity("shared_memory_per_block")
                                                                       : g.shared_memory_bytes - 1024;
    if (g.shared_memory_per_block_bytes > g.shared_memory_bytes)
        fail_at(child(node, "shared_memory_per_block"), "larger than `shared_memory_per_sm`");
    // Shared memory is a carve-out of each SM's L1 (the first memory level, one instance per SM).
    if (!d.memory.empty() && g.shared_memory_bytes > d.memory.front().capacity_bytes)
        fail_at(
            child(node, "shared_memory_per_sm"),
            fmt::format("{} is more than the SM's L1 ('{}', {} per instance), of which shared memory is "
                        "a carve-out",
                        cfg::format_quantity(g.shared_memory_bytes, cfg::Dim::size), d.memory.front().name,
                        cfg::format_quantity(d.memory.front().capacity_bytes, cfg::Dim::size)));
    g.max_threads_per_sm = r.integer("max_threads_per_sm");
    g.max_blocks_per_sm = r.integer("max_blocks_per_sm");
    g.shared_memory_bandwidth_per_clock = static_cast<double>(r.integer("shared_memory_bandwidth"));
    // The first level is each SM's L1 / shared memory, whose bandwidth the model takes from the SM array
    // (gpu_model.cpp: shared_memory_bandwidth per clock per SM). A level's declared bandwidth that the model
    // did not read made a sweep over it a silent no-op; it is now derived when left out, and a declared one
    // must agree with the SM array, as a declared peak must.
    {
        MemoryLevel& l1 = d.memory.front();
        const double derived_l1 =
            g.shared_memory_bandwidth_per_clock * static_cast<double>(g.sms) * d.clock_hz;
        if (l1.bandwidth_Bps == 0) {
            l1.bandwidth_Bps = derived_l1;
        } else if (std::abs(l1.bandwidth_Bps - derived_l1) > 0.01 * derived_l1) {
            const cfg::Node& level = child(dev, "memory").items().front();
            fail_at(child(level, "bandwidth"),
                    "bandwidth " + cfg::format_quantity(l1.bandwidth_Bps, cfg::Dim::bandwidth) + " of '" +
                        l1.name +
                        "', the GPU's L1 / shared memory, does not match the SM array: "
                        "gpu.shared_memory_bandwidth x SMs x clock = " +
                        cfg::format_quantity(derived_l1, cfg::Dim::bandwidth) +
                        " (a declared bandwidth must agree within 1 %; leave it out to have it derived, and "
                        "set gpu.shared_memory_bandwidth or the clock to change it)");
        }
    }
    g.l2_port_bytes_per_clock = static_cast<double>(r.integer("l2_port_bandwidth"));
    g.l2_latency_s = r.quantity("l2_latency");
    g.dram_latency_s = r.quantity("dram_latency");
    g.dram_efficiency = r.real("dram_efficiency");
    g.loc = node.key_loc();
    g.key_path = node.path();
    for (const auto& [dtype, ratio, what] : k_cuda_core_ratios)
        g.cuda_core_ratio[dtype] = r.real(std::string("cuda_core_") + dtype + "_ratio");
    g.l2_effective_fraction = r.real("l2_reuse_fraction");
    g.launch_overhead_s = d.op_overhead_s;
    g.graph_launch_overhead_s = r.quantity("graph_launch_overhead");
    g.cuda_graphs = r.boolean("cuda_graphs");
    g.async_copy = r.boolean("async_copy");
    g.register_file_energy_J_per_byte = r.quantity("register_file_energy");
    g.fusion = r.str("fusion") == "none" ? Fusion::none : Fusion::epilogue;
    g.fused_attention = r.str("attention") == "fused";
    g.fidelity = r.str("fidelity") == "block" ? Fidelity::block : Fidelity::wave;
    if (r.has("tile")) {
        const cfg::Reader t = r.sub("tile");
        g.tile = FixedTile{t.integer("bm"),     t.integer("bn"), t.integer("bk"),
                           t.integer("stages"), t.node().loc(),  t.node().path()};
        if (g.tile.stages > 1 && !g.async_copy && g.tile.stages != 2)
            fail_at(child(t.node(), "stages"), "without async_copy a GEMM pipeline has 2 stages (or 1)");
    }

    // The peaks the SM array gives.
    std::map<std::string, double> derived;
    derived["fp32"] =
        static_cast<double>(g.fp32_lanes_per_sm) * 2 * static_cast<double>(g.sms) * g.cuda_core_clock_hz;
    // FP64: the DMMA tensor cores' rate where there are some, else the FP64 CUDA cores'.
    if (g.fp64_lanes_per_sm > 0) derived["fp64"] = g.cuda_core_rate("fp64");
    for (const auto& [dtype, ops] : g.tensor_ops_per_clock) derived[dtype] = g.tensor_rate(dtype, d.clock_hz);
    if (d.peak_ops_per_s.empty()) {
        d.peak_ops_per_s = derived;
        return gp;
    }
    const cfg::Node& peak_node = child(dev, "peak");
    for (const auto& [dtype, peak] : d.peak_ops_per_s) {
        auto it = derived.find(dtype);
        if (it == derived.end())
            fail_at(child(peak_node, dtype),
                    "peak for " + dtype +
                        ", which the GPU neither computes on tensor cores (add it to "
                        "`gpu.tensor_ops_per_clock`) nor is FP32 or FP64 (`fp64_cores_per_sm`) on the CUDA "
                        "cores");
        if (std::abs(peak - it->second) > 0.01 * it->second)
            fail_at(child(peak_node, dtype),
                    "peak " + cfg::format_quantity(peak, cfg::Dim::throughput) + " for " + dtype +
                        " does not match the SM array: " +
                        (dtype == "fp32"   ? "cuda_cores_per_sm x 2 x SMs x cuda_core_clock"
                         : dtype == "fp64" ? (g.tensor_ops_per_clock.count("fp64")
                                                  ? "tensor_ops_per_clock x SMs x cuda_core_clock"
                                                  : "fp64_cores_per_sm x 2 x SMs x cuda_core_clock")
                                           : "tensor_ops_per_clock x SMs x clock") +
                        " = " + exact_throughput(it->second) +
                        " (a declared peak must agree within 1 %; leave `peak` out to have it derived)");
    }
    return gp;
}

std::vector<std::string> summary_lines(const std::vector<LayerResult>& layers) {
    double kernels = 0, fused = 0, l2 = 0, dram = 0, launch = 0, energy = 0, time = 0;
    for (const LayerResult& l : layers) {
        kernels += l.metric_value("kernels");
        fused += l.metric("fused_into") != nullptr;
        launch += l.parts.overhead_s;
        if (const LevelTraffic* lv = l.level("l2")) l2 += lv->bytes_read + lv->bytes_written;
        dram += l.bytes_read + l.bytes_written;
        energy += l.energy_j();
        time += l.time_s;
    }
    return {fmt::format("kernels {:.0f} ({:.0f} layers fused into a GEMM epilogue); launch overhead {}",
                        kernels, fused, cfg::format_quantity(launch, cfg::Dim::time)),
            fmt::format("traffic L2 {}, DRAM {}; average power {:.1f} W", bytes_si(l2), bytes_si(dram),
                        time > 0 ? energy / time : 0.0)};
}

}  // namespace

const GpuSpec* spec_of(const DeviceSpec& spec) { return spec.params_of<GpuSpec>("gpu"); }

double GpuSpec::tensor_rate(const std::string& dtype, double clock_hz) const {
    auto it = tensor_ops_per_clock.find(dtype);
    const double clock = dtype == "fp64" ? clock_hz * fp64_clock_ratio : clock_hz;
    return it == tensor_ops_per_clock.end() ? 0.0 : it->second * static_cast<double>(sms) * clock;
}

// CUDA-core arithmetic (CUDA C Programming Guide, "Arithmetic Instructions" throughput table): one FP32
// FMA per lane per clock; 16-bit floats as paired HFMA2 (2 per lane); 8-bit integers as DP4A (4 MACs per
// lane); TF32 and FP8 computed in FP32 there; FP64 on the FP64 lanes (fp64_cores_per_sm: 32 per SM on
// GA100 and GV100, 64 on GH100, 2 on GA10x and AD10x). 2 ops per MAC.
double GpuSpec::cuda_core_rate(const std::string& dtype) const {
    const double fp32 =
        static_cast<double>(fp32_lanes_per_sm) * 2 * static_cast<double>(sms) * cuda_core_clock_hz;
    if (auto it = cuda_core_ratio.find(dtype == "int4" ? "int8" : dtype); it != cuda_core_ratio.end())
        return it->second * fp32;
    if (dtype == "fp64")
        return static_cast<double>(fp64_lanes_per_sm) * 2 * static_cast<double>(sms) * cuda_core_clock_hz;
    return fp32;
}

void register_family() {
    Family f;
    f.name = "gpu";
    f.description = "SIMT GPU: thread blocks and waves on SMs, tensor cores, shared memory, L2, DRAM";
    f.section = "gpu";
    f.schema = &gpu_schema();
    f.hardware = {"gpu"};
    f.parse = parse_gpu;
    f.factory = [](const DeviceSpec& spec) -> std::unique_ptr<DeviceModel> {
        return std::make_unique<GpuModel>(spec);
    };
    // Shared with the systolic family's --fidelity: the device's section decides which key it sets.
    f.options = {
        {"fidelity", "device.gpu.fidelity",
         "GPU devices: wave (each wave in closed form, default) | block (every thread block's K steps "
         "as events)"},
        {"fusion", "device.gpu.fusion",
         "GPU devices: epilogue (default: BN folded, bias/activation/residual fused into GEMMs) | none"}};
    f.summary = summary_lines;
    register_family(std::move(f));
}

}  // namespace mlsim::arch::gpu
