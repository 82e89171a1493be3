#include "arch/mcu/mcu_model.h"

#include <fmt/format.h>

#include <algorithm>
#include <cmath>
#include <map>

#include "arch/family.h"
#include "arch/roofline/roofline.h"
#include "sim/config/error.h"
#include "sim/config/units.h"
#include "sim/core/check.h"
#include "sim/core/simulator.h"
#include "workloads/model.h"

namespace mlsim::arch::mcu {

namespace {

// ---- kernel figures (est.: instruction counts of the CMSIS-NN / TFLM kernels' inner loops, read from
// the kernels' structure, timed with the cores' TRM instruction timings: 1 cycle for an ALU op, a
// SMLAD or a pipelined load on the DSP cores; 2 cycles per 128-bit instruction on the dual-beat Helium
// cores). None is fitted to a benchmark.

// DSP cores, arm_nn_mat_mult_kernel_s8_s16 shape: 2 output channels x 2 output pixels x 4 K values per
// iteration = 16 MACs in 8 SMLAD, 2 weight words loaded and sign-extended to 16-bit pairs (LDR + ROR +
// 2 SXTB16 each = 8), 4 im2col words (4 LDR), loop 2: 22 instructions per 16 MACs.
constexpr double dsp_gemm_instr_per_mac = 22.0 / 16;
// Vector-matrix (fully connected), arm_nn_vec_mat_mult_t_s8 shape: 2 rows x 4 K = 8 MACs in 4 SMLAD,
// input word load + extend (4), 2 weight words load + extend (8): 16 instructions per 8 MACs.
constexpr double dsp_fc_instr_per_mac = 16.0 / 8;
// Depthwise, arm_depthwise_conv_s8_opt's DSP loop: 4 channels x 2 taps = 8 MACs an iteration in 4 SMLAD,
// with 2 weight-word and 4 column-word loads, 4 SXTB16 (the weights to 16 bits), 8 PKHBT / PKHTB (pairing
// the two taps' halfwords) and 3 for pointers and the loop: 25 instructions per 8 MACs. Before it, each
// output pixel's patch (taps x channels) is copied to the column buffer in 16 bits with the input offset
// (arm_q7_to_q15_with_offset): one im2col element a MAC, at dsp_im2col_cycles_per_elem.
constexpr double dsp_dw_instr_per_mac = 25.0 / 8;
// im2col copy with the input offset, int8 -> int16 (arm_q7_to_q15_with_offset shape: LDR, 2 SXTAB16,
// 2 PKHBT/PKHTB, 2 STR per 4 elements, plus the loop): 2 cycles per element.
constexpr double dsp_im2col_cycles_per_elem = 2.0;
// Requantisation of one output (arm_nn_requantize: 64-bit doubling multiply-high with rounding (SMULL +
// adds, ~4), rounding right shift (~3), output offset, SSAT clamp, STRB): 10 instructions.
constexpr double dsp_requant_instr = 10.0;
// Helium (arm_nn_mat_mult_nt_t_s8 MVE shape): 4 output pixels x 16 K per iteration: 4 activation and 1
// weight VLDRB plus 4 VMLADAVA = 9 vector instructions x 2 cycles for 64 MACs, with loads overlapping
// the MACs of the previous instruction by one beat pair (x 1 / 1.5, est.).
constexpr double mve_gemm_cycles_per_mac = 9.0 * 2 / 64 / 1.5;
// Helium depthwise (4 channels in 32-bit lanes per tap: 2 VLDRB.S32 + VMLA.S32 = 3 x 2 cycles for 4
// MACs, overlapped x 1 / 1.5, est.).
constexpr double mve_dw_cycles_per_mac = 3.0 * 2 / 4 / 1.5;
// Helium requantisation, 4 outputs per vector: ~10 vector instructions x 2 cycles / 4 lanes (est.).
constexpr double mve_requant_cycles = 10.0 * 2 / 4;
// Helium im2col (int8 copy, VLDRB/VSTRB of 16 B, 2 cycles each): 0.25 cycles per element.
constexpr double mve_im2col_cycles_per_elem = 0.25;
// Reference (portable C) kernels: per MAC LDRSB input, LDRSB filter, add the input offset, MLA and
// about two instructions of index arithmetic: 6 instructions; weights re-read for every output pixel.
constexpr double ref_instr_per_mac = 6.0;
constexpr double ref_requant_instr = 12.0;  // the same requantisation, not unrolled
// FP32 kernels: per MAC two loads (VLDR) and a VFMA whose throughput the core sets.
constexpr double fp32_load_instr_per_mac = 2.0;
// Other kernels, instructions per element (est., scalar loops): pooling per window element (load +
// add/max); an int8 add re-scales both inputs then requantises (2 x 5 + 2); ReLU load/max/store;
// softmax by exp table and fixed-point division; a standalone norm: a multiply-add and requantise;
// copies (concat, slice): per byte, word loads and stores.
constexpr double pool_instr_per_elem = 2.0;
constexpr double add_instr_per_elem = 12.0;
constexpr double act_instr_per_elem = 2.0;
constexpr double softmax_instr_per_elem = 30.0;
constexpr double norm_instr_per_elem = 10.0;
constexpr double copy_instr_per_byte = 0.5;

bool is_gemm_kind(const std::string& k) {
    return k == "linear" || k == "matmul" || k.rfind("conv", 0) == 0 || k == "depthwise_conv2d";
}
bool is_view(const wl::Op& op) { return op.kind == "reshape" || op.kind == "flatten"; }

// Ops folded into the preceding kernel (its bias/scale or its clamp): a batch-norm or ReLU/ReLU6 whose
// single input comes from a GEMM-like op or another folded op, being that producer's only consumer.
std::vector<bool> fused_ops(const wl::Model& model) {
    const size_t n = model.ops().size();
    std::vector<bool> fused(n, false);
    for (size_t i = 0; i < n; ++i) {
        const wl::Op& op = model.op(i);
        const auto* norm = std::get_if<wl::NormAttr>(&op.attr);
        const bool foldable =
            (norm && norm->type == wl::NormType::batch) || op.kind == "relu" || op.kind == "relu6";
        if (!foldable || op.inputs.size() != 1) continue;
        const auto prod = model.producer(i, 0);
        if (!prod) continue;
        const wl::Op& p = model.op(prod->op);
        if (!(is_gemm_kind(p.kind) || fused[prod->op])) continue;
        if (model.out_edges(prod->op).size() != 1) continue;
        fused[i] = true;
    }
    return fused;
}

struct ConvGeom {
    int64_t k = 0;       // reduction per output (Cin/groups x Kh x Kw)
    int64_t pixels = 0;  // N x Ho x Wo
    int64_t cin = 0;
    bool pointwise = false;  // 1x1, stride 1, no padding: no im2col
};

ConvGeom conv_geom(const wl::Op& op) {
    ConvGeom g;
    const auto* c = std::get_if<wl::ConvAttr>(&op.attr);
    if (!c || op.outputs.empty()) return g;
    int64_t taps = 1;
    for (int d = 0; d < c->dims; ++d) taps *= c->kernel[static_cast<size_t>(d)];
    g.cin = c->in_channels;
    g.k = c->in_channels / std::max<int64_t>(1, c->groups) * taps;
    const wl::Shape& out = op.outputs[0];
    g.pixels = out.size() >= 2 ? wl::numel(out) / std::max<int64_t>(1, out[1]) : 1;
    g.pointwise = taps == 1;
    for (int d = 0; d < c->dims; ++d) {
        const auto u = static_cast<size_t>(d);
        g.pointwise = g.pointwise && c->stride[u] == 1 && c->pad_begin[u] == 0 && c->pad_end[u] == 0;
    }
    return g;
}

// Scratch (im2col) bytes the kernel of `op` asks the arena for (arm_convolve_s8_get_buffer_size and
// arm_depthwise_conv_s8_opt_get_buffer_size shapes): DSP: 2 columns of K int16; Helium: 4 columns of
// K int8; depthwise: one column of Cin x taps int16 (DSP) or int8 (Helium). Reference kernels: none.
double scratch_bytes(const wl::Op& op, const McuSpec& m) {
    if (m.runtime == Runtime::reference || op.dtype == wl::DType::fp32) return 0;
    const ConvGeom g = conv_geom(op);
    if (g.k == 0) return 0;
    if (op.kind == "depthwise_conv2d") return static_cast<double>(g.k * g.cin) * (m.core.helium ? 1 : 2);
    if (g.pointwise) return 0;
    return m.core.helium ? 4.0 * static_cast<double>(g.k) : 2.0 * 2 * static_cast<double>(g.k);
}

double elems_of(const wl::Op& op, double bytes) {
    const double e = wl::dtype_bytes(op.dtype);
    return e > 0 ? bytes / e : bytes;
}

// One op's kernel on the core.
struct Kernel {
    double compute_cycles = 0;  // instructions over the issue width, at least the MAC peak
    double passes = 1;          // traversals of the weights by the kernel
    // Weight bytes the kernel touches between two traversals (what the flash cache must hold for them to
    // be read from flash once); 0: all of the op's weights.
    double reuse_bytes = 0;
    double im2col_elems = 0;
    double sram_read = 0, sram_write = 0;
};

Kernel kernel_of(const wl::Op& op, const McuSpec& m) {
    Kernel k;
    const wl::OpCounts c = op.counts();
    const double w = m.core.issue_width;
    const double out_elems = elems_of(op, c.output_bytes);
    const double in_elems = elems_of(op, c.input_bytes);
    k.sram_read = c.input_bytes;
    k.sram_write = c.output_bytes;
    const bool helium = m.core.helium && m.runtime == Runtime::cmsis_nn;
    const bool ref = m.runtime == Runtime::reference;
    if (is_gemm_kind(op.kind)) {
        const bool dw = op.kind == "depthwise_conv2d";
        const ConvGeom g = conv_geom(op);
        const double macs = c.macs;
        double per_mac = 0;  // cycles
        if (op.dtype == wl::DType::fp32) {
            per_mac = std::max(1.0 / m.core.fp32_macs_per_cycle, (1 + fp32_load_instr_per_mac) / w);
            k.passes = std::max<double>(1, static_cast<double>(g.pixels));
        } else if (ref) {
            per_mac = ref_instr_per_mac / w;
            k.passes = std::max<double>(1, static_cast<double>(g.pixels));
        } else if (helium) {
            per_mac = dw ? mve_dw_cycles_per_mac : mve_gemm_cycles_per_mac;
            k.passes = dw ? std::max<double>(1, static_cast<double>(g.pixels))
                          : std::max<double>(1, std::ceil(static_cast<double>(g.pixels) / 4));
        } else {
            per_mac = (dw        ? dsp_dw_instr_per_mac
                       : g.k > 0 ? dsp_gemm_instr_per_mac
                                 : dsp_fc_instr_per_mac) /
                      w;
            k.passes = dw ? std::max<double>(1, static_cast<double>(g.pixels))
                          : std::max<double>(1, std::ceil(static_cast<double>(g.pixels) / 2));
            // An int8 1x1 convolution runs as arm_nn_mat_mult_nt_t_s8 (arm_convolve_1x1_s8_fast): its
            // DSP path takes two output channels' weight rows at a time and runs them over every pair
            // of pixels, so only those two rows (2 x K bytes) are re-read between passes, and the input
            // is read once per pair of output channels; the im2col kernel (arm_nn_mat_mult_kernel_s8_s16,
            // and int16's arm_convolve_s16) runs all of the weights over each pair of pixels.
            if (g.pointwise && op.dtype == wl::DType::int8 && !dw) {
                k.reuse_bytes = 2.0 * static_cast<double>(g.k);
                const auto* conv = std::get_if<wl::ConvAttr>(&op.attr);
                const double pairs = conv ? std::ceil(static_cast<double>(conv->out_channels) / 2) : 1;
                k.sram_read = c.input_bytes * std::max(1.0, pairs);
            }
        }
        // A fully connected layer over a batch: arm_fully_connected_s8 calls the vector-matrix kernel
        // (arm_nn_vec_mat_mult_t_s8) once per row of the batch, each a traversal of all the weights.
        if (const auto* lin = std::get_if<wl::LinearAttr>(&op.attr); lin && !op.inputs.empty()) {
            const double rows = static_cast<double>(wl::numel(op.inputs[0])) /
                                static_cast<double>(std::max<int64_t>(1, lin->in_features));
            k.passes = std::max(k.passes, rows);
        }
        // Never faster than the SIMD peak of the data type.
        const double peak_mac = op.dtype == wl::DType::fp32    ? m.core.fp32_macs_per_cycle
                                : op.dtype == wl::DType::int16 ? m.core.int16_macs_per_cycle
                                                               : m.core.int8_macs_per_cycle;
        per_mac = std::max(per_mac, 1.0 / peak_mac);
        double requant = ref ? ref_requant_instr / w : helium ? mve_requant_cycles : dsp_requant_instr / w;
        if (op.dtype == wl::DType::fp32) requant = 2 / w;  // bias add and store
        if (g.k > 0 && !g.pointwise && !dw && !ref && op.dtype != wl::DType::fp32)
            k.im2col_elems = static_cast<double>(g.pixels) * static_cast<double>(g.k);
        // The DSP depthwise kernel's per-pixel patch copy (int8: arm_depthwise_conv_s8_opt; Helium's
        // kernel reads the input in place).
        if (dw && !helium && !ref && op.dtype == wl::DType::int8)
            k.im2col_elems = static_cast<double>(g.pixels) * static_cast<double>(g.k * g.cin);
        const double im2col =
            k.im2col_elems * (helium ? mve_im2col_cycles_per_elem : dsp_im2col_cycles_per_elem / w);
        k.compute_cycles = macs * per_mac + out_elems * requant + im2col;
        k.sram_read += k.im2col_elems * (helium ? 1 : 2);
        k.sram_write += k.im2col_elems * (helium ? 1 : 2);
        return k;
    }
    double per_elem = 0, elems = out_elems;
    const auto* pool = std::get_if<wl::PoolAttr>(&op.attr);
    if (pool) {
        per_elem = pool_instr_per_elem;
        elems = std::max(c.flops, in_elems);
    } else if (op.kind == "add" || op.kind == "mul") {
        per_elem = add_instr_per_elem;
    } else if (op.kind == "softmax") {
        per_elem = softmax_instr_per_elem;
    } else if (std::holds_alternative<wl::EltwiseAttr>(op.attr)) {
        per_elem = act_instr_per_elem;
    } else if (std::holds_alternative<wl::NormAttr>(op.attr)) {
        per_elem = norm_instr_per_elem;
    } else if (is_view(op)) {
        per_elem = 0;
        k.sram_read = k.sram_write = 0;
    } else {
        per_elem = copy_instr_per_byte;
        elems = c.output_bytes;
    }
    // Vectorised on Helium, 4 lanes of 32 bits (est.).
    const double lanes = helium ? 4.0 / 2 : 1.0;
    k.compute_cycles = elems * per_elem / w / lanes;
    return k;
}

}  // namespace

// ---- the NPU's operators -----------------------------------------------------------------------------
// Arm Ethos-U Vela 3.6, SUPPORTED_OPS.md ("TFLite Summary Table" and its constraints; generated by
// `vela --supported-ops-report`). An operator outside the table, or one that breaks a constraint, is left
// to the CPU. Generic constraints used here: "Tensors must be of type: int16, int32, int8, uint8" (so a
// float model runs on the host entirely); "IFM Tensor batch size must be 1" except for FULLY_CONNECTED,
// RESHAPE, SLICE, SOFTMAX, SPLIT, SQUEEZE, STRIDED_SLICE, ...; tensors at most 4-D. Per operator:
//  * CONV_2D: stride "between 1 and 4", dilated kernel height [1, 64], dilated kernel width x height
//    [1, 4096]; DEPTHWISE_CONV_2D: the same but stride [1, 3], and a depth multiplier > 1 only with one
//    input channel; no 3-D convolution (CONV_3D is not in the table). A grouped convolution is split by
//    the TFLite converter into SPLIT + CONV_2D + CONCATENATION, all in the table: taken as supported;
//  * FULLY_CONNECTED: yes (2-D output). BATCH_MATMUL (a matmul of two activations) is not in the table;
//  * MAX_POOL_2D: stride [1, 3], kernel height [1, 256], width x height [1, 65536]; AVERAGE_POOL_2D:
//    stride [1, 3], kernel [1, 8] each (SAME padding), with VALID padding height [1, 256] and width x
//    height [1, 65536]; a global average pool is MEAN (int8, H x W <= 65536);
//  * ADD, SUB, MUL, LOGISTIC, TANH, RELU, RELU6, HARD_SWISH, LEAKY_RELU, PRELU, SOFTMAX, CONCATENATION,
//    RESHAPE, SLICE, STRIDED_SLICE (unit strides): yes; SiLU is LOGISTIC + MUL; a standalone batch-norm
//    is MUL + ADD;
//  * not in the table, so on the host: GELU, GATHER (embeddings), attention as one op, recurrent cells
//    (est.: UNIDIRECTIONAL_SEQUENCE_LSTM is not in 3.6's table), layer / RMS normalisation, mlsim's
//    lowered and interaction ops.
bool npu_runs(const wl::Op& op) {
    if (op.dtype != wl::DType::int8 && op.dtype != wl::DType::int16) return false;
    for (const wl::Shape& t : op.inputs)
        if (t.size() > 4) return false;
    const bool batch_exempt = std::holds_alternative<wl::LinearAttr>(op.attr) ||
                              std::holds_alternative<wl::SoftmaxAttr>(op.attr) ||
                              std::holds_alternative<wl::SliceAttr>(op.attr) || is_view(op);
    if (!batch_exempt && !op.inputs.empty() && !op.inputs[0].empty() && op.inputs[0][0] > 1) return false;
    const auto stride_within = [](const auto& stride, int dims, int64_t most) {
        for (int d = 0; d < dims; ++d)
            if (stride[static_cast<size_t>(d)] < 1 || stride[static_cast<size_t>(d)] > most) return false;
        return true;
    };
    if (const auto* c = std::get_if<wl::ConvAttr>(&op.attr)) {
        const bool dw = c->groups > 1 && c->groups == c->in_channels;
        if (c->dims > 2 || !stride_within(c->stride, c->dims, dw ? 3 : 4)) return false;
        int64_t area = 1;
        for (int d = 0; d < c->dims; ++d) {
            const auto u = static_cast<size_t>(d);
            const int64_t dilated = (c->kernel[u] - 1) * c->dilation[u] + 1;
            if (d == 0 && dilated > 64) return false;  // height (the first spatial dimension)
            area *= dilated;
        }
        if (area > 4096) return false;
        if (dw && c->out_channels != c->in_channels && c->in_channels != 1) return false;
        return true;
    }
    if (const auto* p = std::get_if<wl::PoolAttr>(&op.attr)) {
        if (p->global) return op.dtype == wl::DType::int8;  // MEAN
        if (p->dims > 2 || !stride_within(p->stride, p->dims, 3)) return false;
        int64_t area = 1;
        bool padded = false;
        for (int d = 0; d < p->dims; ++d) {
            const auto u = static_cast<size_t>(d);
            if (d == 0 && p->kernel[u] > 256) return false;
            area *= p->kernel[u];
            padded = padded || p->padding[u] > 0;
        }
        if (p->type == wl::PoolType::avg && padded)
            for (int d = 0; d < p->dims; ++d)
                if (p->kernel[static_cast<size_t>(d)] > 8) return false;
        return area <= 65536;
    }
    if (const auto* e = std::get_if<wl::EltwiseAttr>(&op.attr))
        return e->fn != wl::Eltwise::gelu && e->fn != wl::Eltwise::rope;
    if (const auto* n = std::get_if<wl::NormAttr>(&op.attr)) return n->type == wl::NormType::batch;
    return std::holds_alternative<wl::LinearAttr>(op.attr) ||
           std::holds_alternative<wl::SoftmaxAttr>(op.attr) ||
           std::holds_alternative<wl::ConcatAttr>(op.attr) ||
           std::holds_alternative<wl::ReshapeAttr>(op.attr) ||
           std::holds_alternative<wl::SliceAttr>(op.attr) || is_view(op);
}

// ---- placement ------------------------------------------------------------------------------------------

Placement place(const ArenaPlan& arena, double weights, const McuSpec& m, const std::string& model,
                const std::string& device) {
    const auto size = [](double b) { return cfg::format_quantity(b, cfg::Dim::size); };
    Placement p;
    const double extra = arena.persistent_bytes + m.runtime_ram_bytes;
    const double need = arena.peak_bytes + extra;
    const ExternalMemory& ext = m.external;
    // The arena is checked first, then the weights (its message is the more telling one).
    const bool weights_fit = weights <= m.flash_bytes || (ext.present() && weights <= ext.bytes);
    p.weights_external = weights > m.flash_bytes && weights_fit;
    const auto check_weights = [&] {
        if (!weights_fit)
            cfg::fail(
                m.loc, m.key_path,
                fmt::format("model '{}' does not fit on {}: its weights need {} but the flash holds {}{}",
                            model, device, size(weights), size(m.flash_bytes),
                            ext.present() ? fmt::format(" and the {} {}", ext.name, size(ext.bytes))
                                          : std::string()));
    };
    const double ext_free = ext.bytes - (p.weights_external ? weights : 0);
    const SramBank* chosen = nullptr;
    if (m.arena_bank == "auto") {
        for (const SramBank& b : m.banks) {
            // With an NPU the arena is where the NPU's AXI masters read it: not in the core's TCMs.
            if (need > b.bytes || (m.npu && b.tcm)) continue;
            if (!chosen || b.wait_states < chosen->wait_states ||
                (b.wait_states == chosen->wait_states && b.tcm && !chosen->tcm))
                chosen = &b;
        }
        if (!chosen && ext.present() && need <= ext_free) {
            p.arena_where = ext.name;
            p.arena_external = true;
            check_weights();
            return p;
        }
    } else if (ext.present() && m.arena_bank == ext.name) {
        if (need > ext_free)
            cfg::fail(
                m.loc, m.key_path,
                fmt::format("model '{}' does not fit on {}: its tensor arena needs {} (+ {} runtime) but "
                            "the {} has {} free",
                            model, device, size(arena.peak_bytes), size(extra), ext.name, size(ext_free)));
        p.arena_where = ext.name;
        p.arena_external = true;
        check_weights();
        return p;
    } else {
        for (const SramBank& b : m.banks)
            if (b.name == m.arena_bank) chosen = &b;
        if (chosen && need > chosen->bytes)
            cfg::fail(
                m.loc, m.key_path,
                fmt::format("model '{}' does not fit on {}: its tensor arena needs {} (+ {} runtime) but "
                            "bank {} (arena_bank) holds {}",
                            model, device, size(arena.peak_bytes), size(extra), chosen->name,
                            size(chosen->bytes)));
    }
    if (!chosen) {
        double largest = 0;
        for (const SramBank& b : m.banks) largest = std::max(largest, b.bytes);
        cfg::fail(m.loc, m.key_path,
                  fmt::format("model '{}' does not fit on {}: its tensor arena needs {} (+ {} runtime) but "
                              "the SRAM holds {}{} (weights plus the largest layer would say {})",
                              model, device, size(arena.peak_bytes), size(extra), size(m.sram_bytes),
                              m.banks.size() > 1 ? fmt::format(", its largest bank {}", size(largest))
                                                 : std::string(),
                              size(weights + arena.naive_bytes)));
    }
    p.arena_where = chosen->name;
    p.arena_wait_states = chosen->wait_states;
    check_weights();
    return p;
}

// ---- the tensor arena ----------------------------------------------------------------------------------

ArenaPlan plan_arena(const wl::Model& model, const McuSpec& mcu) {
    ArenaPlan plan;
    const size_t n = model.ops().size();
    const std::vector<bool> fused = fused_ops(model);
    std::map<std::pair<size_t, int>, size_t> input_tensor;  // (op, slot) of a model input -> tensor
    for (const wl::ModelInput& in : model.inputs()) {
        const wl::Op& op = model.op(in.op);
        ArenaTensor t;
        t.name = fmt::format("input:{}.{}", op.name, in.slot);
        t.bytes = static_cast<double>(wl::numel(op.inputs.at(static_cast<size_t>(in.slot)))) *
                  wl::dtype_bytes(op.dtype);
        t.first = 0;
        t.last = static_cast<int64_t>(in.op);
        input_tensor[{in.op, in.slot}] = plan.tensors.size();
        plan.tensors.push_back(t);
    }
    std::vector<size_t> out_tensor(n, 0);
    const auto tensor_of_input = [&](size_t i, int slot) -> size_t {
        if (const auto p = model.producer(i, slot)) return out_tensor[p->op];
        return input_tensor.at({i, slot});
    };
    std::vector<std::vector<size_t>> used(n);  // tensors each op touches
    for (size_t i = 0; i < n; ++i) {
        const wl::Op& op = model.op(i);
        const auto step = static_cast<int64_t>(i);
        for (int s = 0; s < static_cast<int>(op.inputs.size()); ++s) {
            const size_t t = tensor_of_input(i, s);
            plan.tensors[t].last = std::max(plan.tensors[t].last, step);
            used[i].push_back(t);
        }
        if ((fused[i] || is_view(op)) && !op.inputs.empty()) {
            out_tensor[i] = tensor_of_input(i, 0);  // in place
        } else {
            ArenaTensor t;
            t.name = op.name;
            t.bytes = op.counts().output_bytes;
            t.first = t.last = step;
            out_tensor[i] = plan.tensors.size();
            plan.tensors.push_back(t);
            used[i].push_back(out_tensor[i]);
        }
        if (const double s = scratch_bytes(op, mcu); s > 0) {
            ArenaTensor t;
            t.name = op.name + ".scratch";
            t.bytes = s;
            t.first = t.last = step;
            used[i].push_back(plan.tensors.size());
            plan.tensors.push_back(t);
        }
        const wl::OpCounts c = op.counts();
        plan.naive_bytes = std::max(plan.naive_bytes, c.input_bytes + c.output_bytes);
    }
    for (const wl::TensorRef& o : model.outputs())
        plan.tensors[out_tensor[o.op]].last = static_cast<int64_t>(n) - 1;
    // The runtime's persistent records (TFLite Micro's arena "tail", docs/memory_management.md), 32-bit
    // core: a TfLiteEvalTensor of 12 B per tensor (data pointer, dims pointer, type: the Recording
    // allocator reports "'TfLiteEvalTensor data' ... 120 bytes for 10 allocations", Samsung/ONE issue
    // 7598); per op a node and its registration (est. 40 B: TfLiteNode's input / output / intermediate /
    // temporary array pointers, user data, builtin data, custom data size, plus the registration
    // pointer); per int8 convolution (depthwise too) its kernel's per-channel output multiplier and
    // shift, 2 x 4 B per output channel (TFLM's conv and depthwise kernels allocate them as persistent
    // buffers; fully connected layers are quantised per tensor by the converter: one multiplier); and a fixed
    // ~300 B of interpreter, subgraph and allocator records (est.: the tail of that issue's 3-op sine model
    // is 636 B, of which 120 B tensors and ~120 B nodes).
    double records = 300;
    for (size_t i = 0; i < n; ++i) {
        const wl::Op& op = model.op(i);
        if (fused[i]) continue;  // folded away by the converter: no node, no tensor
        const wl::OpCounts c = op.counts();
        const double weight_tensors = c.weight_bytes > 0 ? 2 : 0;  // weights and bias
        records += 40 + 12 * (1 + weight_tensors);
        if (std::holds_alternative<wl::ConvAttr>(op.attr) && op.dtype != wl::DType::fp32 &&
            !op.outputs.empty() && op.outputs[0].size() >= 2)
            records += 8.0 * static_cast<double>(op.outputs[0][1]);
    }
    records += 12.0 * static_cast<double>(input_tensor.size());
    plan.persistent_bytes = records;
    for (size_t i = 0; i < n; ++i) {
        std::sort(used[i].begin(), used[i].end());
        used[i].erase(std::unique(used[i].begin(), used[i].end()), used[i].end());
        double b = 0;
        for (size_t t : used[i]) b += plan.tensors[t].bytes;
        plan.largest_op_bytes = std::max(plan.largest_op_bytes, b);
    }

    // Greedy by size: largest first (ties: earlier first, then name), each at the lowest offset where it
    // overlaps no placed tensor that is live at the same time.
    std::vector<size_t> order(plan.tensors.size());
    for (size_t i = 0; i < order.size(); ++i) order[i] = i;
    std::sort(order.begin(), order.end(), [&](size_t a, size_t b) {
        const ArenaTensor &x = plan.tensors[a], &y = plan.tensors[b];
        if (x.bytes != y.bytes) return x.bytes > y.bytes;
        if (x.first != y.first) return x.first < y.first;
        return a < b;
    });
    std::vector<size_t> placed;
    for (size_t idx : order) {
        ArenaTensor& t = plan.tensors[idx];
        std::vector<std::pair<double, double>> busy;  // [offset, end) of live-overlapping placed tensors
        for (size_t p : placed) {
            const ArenaTensor& q = plan.tensors[p];
            if (q.first <= t.last && t.first <= q.last) busy.emplace_back(q.offset, q.offset + q.bytes);
        }
        std::sort(busy.begin(), busy.end());
        double offset = 0;
        for (const auto& [lo, hi] : busy) {
            if (offset + t.bytes <= lo) break;
            offset = std::max(offset, hi);
        }
        t.offset = offset;
        plan.peak_bytes = std::max(plan.peak_bytes, offset + t.bytes);
        placed.push_back(idx);
    }
    return plan;
}

// ---- the model ------------------------------------------------------------------------------------------

McuModel::McuModel(DeviceSpec spec) : m_spec(std::move(spec)) {
    const McuSpec* m = spec_of(m_spec);
    MLSIM_CHECK(m != nullptr, "the MCU model needs an `mcu:` section");
    m_mcu = *m;
}

std::vector<LayerResult> McuModel::run(const wl::Model& model) {
    const McuSpec& m = m_mcu;
    const DeviceSpec& d = m_spec;
    const ArenaPlan arena = plan_arena(model, m);
    const double weights = model.totals().weight_bytes;
    const Placement where = place(arena, weights, m, model.name(), d.name);

    const std::vector<bool> fused = fused_ops(model);
    const MemoryLevel* sram = nullptr;
    for (const MemoryLevel& lv : d.memory)
        if (lv.name == m.sram_level) sram = &lv;
    MLSIM_CHECK(sram != nullptr, "MCU device without an sram level");
    const MemoryLevel& flash = d.main_memory();
    const double clock = d.clock_hz;

    const size_t n_ops = model.ops().size();
    // The NPU's layers (a device with a `systolic:` section beside this one): the ops it runs (npu_runs)
    // go to the systolic model of the same device, each on its own (its operands come from the SRAM
    // arena); a folded op goes where its producer goes. The host runs the rest.
    std::vector<LayerResult> npu_results;
    std::vector<int64_t> npu_index(n_ops, -1);
    std::vector<bool> on_npu(n_ops, false);
    if (m.npu) {
        wl::ModelBuilder b(model.name() + ".npu");
        for (size_t i = 0; i < n_ops; ++i) {
            if (fused[i]) {
                on_npu[i] = on_npu[model.producer(i, 0)->op];
            } else if (npu_runs(model.op(i))) {
                on_npu[i] = true;
                npu_index[i] = static_cast<int64_t>(b.size());
                b.add(model.op(i));
            }
        }
        if (b.size() > 0) {
            const Family* sys = find_family("systolic");
            MLSIM_CHECK(sys != nullptr && sys->has_model(), "an NPU device without the systolic model");
            npu_results = sys->factory(d)->run(std::move(b).build());
        }
    }

    std::vector<LayerResult> out;
    out.reserve(n_ops);
    // The layers run one after another on the core: each is an event of the engine at its end time.
    Simulator sim;
    struct Chain {
        Simulator* sim;
        double end = 0;
        void on_end() { end = sim->now().to_seconds(); }
    } chain{&sim};
    double now = 0;
    const ExternalMemory& ext = m.external;
    // One external burst, in core cycles: the latency plus the line at the bandwidth.
    const double ext_burst_cycles =
        ext.present() ? (ext.latency_s + ext.line_bytes / ext.bandwidth_Bps) * clock : 0;
    // Bytes per data access of the core to its SRAM (a 32-bit load; 64-bit beats on the Helium cores'
    // data path, Cortex-M55 / M85 TRMs, est.).
    const double access_bytes = m.core.helium ? 8.0 : 4.0;
    for (size_t i = 0; i < n_ops; ++i) {
        const wl::Op& op = model.op(i);
        const wl::OpCounts c = op.counts();
        LayerResult r;
        double kernel_cycles = 0, stall_cycles = 0, dispatch = 0, flash_bytes = 0, flash_lines = 0;
        double sram_stall = 0, ext_bytes = 0, ext_lines = 0, ext_stall = 0;
        Kernel k;
        if (npu_index[i] >= 0) {
            // On the NPU: its layer as the systolic model gives it; the host dispatches one Ethos-U
            // custom operator per run of consecutive NPU ops (Vela merges them), not one per op.
            r = std::move(npu_results[static_cast<size_t>(npu_index[i])]);
            const bool segment_start = i == 0 || !on_npu[i - 1];
            dispatch = segment_start ? m.dispatch_cycles : 0;
            TimeParts parts = r.parts;
            parts.overhead_s += dispatch / clock;
            r.set_parts(parts);
            r.energy_static_j += d.static_power_W * dispatch / clock;
            r.time_s = parts.total();
            r.add_text("runs_on", "npu");
        } else {
            r.name = op.name;
            r.op = op.kind;
            r.phase = std::string(wl::phase_name(op.phase));
            r.dtype = std::string(wl::dtype_name(op.dtype));
            r.counts = c;
            // Activations stay in SRAM; the floor is over the weights from flash.
            const RooflineBound floor = roofline_bound(d, op, OnChip{c.input_bytes, c.output_bytes});
            if (fused[i]) {
                // Folded into the producer's bias / scale, read where the weights are: from external memory
                // a burst per line, as the kernels' weights (at flash speed they ran 4x faster than the
                // SDRAM allows; found by a review).
                if (where.weights_external && c.weight_bytes > 0) {
                    ext_lines = std::ceil(c.weight_bytes / ext.line_bytes);
                    ext_bytes = std::max(c.weight_bytes, ext_lines * ext.line_bytes);
                    ext_stall = ext_lines * ext_burst_cycles;
                } else {
                    flash_bytes = c.weight_bytes;
                }
                r.add_text("fused_into", model.op(model.producer(i, 0)->op).name);
            } else {
                k = kernel_of(op, m);
                kernel_cycles = k.compute_cycles;
                dispatch = m.dispatch_cycles;
                const double reused =
                    k.reuse_bytes > 0 ? std::min(k.reuse_bytes, c.weight_bytes) : c.weight_bytes;
                if (c.weight_bytes > 0 && where.weights_external) {
                    // Weights in external memory: one burst per line, per pass unless the cache holds them.
                    const double once = std::ceil(c.weight_bytes / ext.line_bytes);
                    ext_lines = reused <= m.flash_cache_bytes ? once : once * k.passes;
                    ext_bytes = std::max(c.weight_bytes, ext_lines * ext.line_bytes);
                    ext_stall = ext_lines * ext_burst_cycles;
                } else if (c.weight_bytes > 0) {
                    const double line = m.flash_line_bytes;
                    const double once = std::ceil(c.weight_bytes / line);
                    flash_lines = reused <= m.flash_cache_bytes ? once : once * k.passes;
                    flash_bytes = std::max(c.weight_bytes, flash_lines * line);
                    stall_cycles = flash_lines * static_cast<double>(m.flash_wait_states);
                }
                // The arena's bank: its wait states on every data access; in external memory, one burst
                // per line of activations moved.
                const double act_bytes = k.sram_read + k.sram_write;
                if (where.arena_external) {
                    const double lines = std::ceil(act_bytes / ext.line_bytes);
                    ext_lines += lines;
                    ext_bytes += lines * ext.line_bytes;
                    ext_stall += lines * ext_burst_cycles;
                } else {
                    sram_stall = act_bytes / access_bytes * static_cast<double>(where.arena_wait_states);
                }
            }
            TimeParts parts;
            parts.compute_s = kernel_cycles / clock;
            parts.memory_s = (stall_cycles + sram_stall + ext_stall) / clock;
            parts.overhead_s = dispatch / clock;
            // The floor: the MACs at the SIMD peak and the weights at the flash bandwidth, or what is read
            // from external memory at its own.
            RooflineBound bound = floor;
            if (ext_bytes > 0) bound.memory_s = std::max(bound.memory_s, ext_bytes / ext.bandwidth_Bps);
            const double busy = parts.compute_s + parts.memory_s;
            if (busy < bound.bound_s()) {
                const double gap = bound.bound_s() - busy;
                (bound.compute_bound() ? parts.compute_s : parts.memory_s) += gap;
            }
            r.set_parts(parts);
            r.time_s = parts.total();
            r.cycles = static_cast<int64_t>(std::ceil(r.time_s * clock - 1e-6));
            r.stall_cycles = static_cast<int64_t>(std::llround(stall_cycles + sram_stall + ext_stall));
            r.bytes_read = flash_bytes + ext_bytes;
            r.bytes_written = 0;
            const double peak = d.peak_for(r.dtype);
            r.utilization = r.time_s > 0 ? std::min(1.0, c.flops / r.time_s / peak) : 0;
            r.energy_compute_j = c.flops * d.mac_energy_for(r.dtype) / 2;
            const double flash_e = flash_bytes * flash.read_energy_J_per_byte;
            const double ext_e = ext_bytes * ext.read_energy_J_per_byte;
            const double sram_e = where.arena_external ? 0
                                                       : k.sram_read * sram->read_energy_J_per_byte +
                                                             k.sram_write * sram->write_energy_J_per_byte;
            r.energy_memory_j = flash_e + sram_e + ext_e;
            r.energy_static_j = d.static_power_W * r.time_s;
            r.levels.push_back(LevelTraffic{sram->name, where.arena_external ? 0 : k.sram_read,
                                            where.arena_external ? 0 : k.sram_write, 0, sram_e});
            r.levels.push_back(
                LevelTraffic{flash.name, flash_bytes, 0, static_cast<int64_t>(flash_lines), flash_e});
            if (ext.present())
                r.levels.push_back(
                    LevelTraffic{ext.name, ext_bytes, 0, static_cast<int64_t>(ext_lines), ext_e});
            r.add_metric("macs_per_cycle", r.cycles > 0 ? c.macs / static_cast<double>(r.cycles) : 0, "1");
            r.add_metric("kernel_cycles", kernel_cycles, "cycles");
            r.add_metric("flash_wait_cycles", stall_cycles, "cycles");
            r.add_metric("sram_wait_cycles", sram_stall, "cycles");
            if (ext.present()) r.add_metric("external_wait_cycles", ext_stall, "cycles");
            r.add_metric("dispatch_cycles", dispatch, "cycles");
            r.add_metric("im2col_elements", k.im2col_elems, "count");
            r.add_metric("weight_passes", k.passes, "count");
            r.add_metric("input_bytes_on_chip", c.input_bytes, "B");
            r.add_metric("output_bytes_kept", c.output_bytes, "B");
            if (r.bound == "memory")
                r.add_text("memory_level",
                           where.weights_external || where.arena_external ? ext.name : flash.name);
            MLSIM_CHECK(r.time_s >= floor.bound_s() * (1 - 1e-9),
                        fmt::format("MCU layer {} beats its roofline floor", op.name));
            if (m.npu) r.add_text("runs_on", on_npu[i] ? "npu" : "host");
        }
        r.idx = static_cast<int64_t>(i);
        check_simulated_time(op, now + r.time_s, d);
        sim.schedule_at(Tick::from_seconds(now + r.time_s), callback<&Chain::on_end>(&chain));
        sim.run();
        r.start_s = now;
        r.end_s = std::max(chain.end, now + r.time_s);
        now = r.end_s;
        if (i == 0) {  // the run's figures, once (the database keeps every layer's metrics)
            r.add_metric("arena_bytes", arena.peak_bytes, "B");
            r.add_metric("largest_layer_io_bytes", arena.naive_bytes, "B");
            r.add_metric("runtime_records_bytes", arena.persistent_bytes, "B");
            r.add_text("arena_bank", where.arena_where);
        }
        for (const ArenaTensor& t : arena.tensors) {
            if (t.name == op.name) {
                r.add_metric("arena_offset", t.offset, "B");
                r.add_metric("arena_tensor_bytes", t.bytes, "B");
            }
            if (t.name == op.name + ".scratch") r.add_metric("scratch_bytes", t.bytes, "B");
        }
        MLSIM_CHECK(r.energy_compute_j >= 0 && r.energy_memory_j >= 0 && r.energy_static_j >= 0,
                    "negative energy");
        out.push_back(std::move(r));
        report_progress(out.size(), n_ops);
    }
    // A duty cycle: one inference per period, asleep for the rest of it (the last layer carries it).
    if (m.duty_period_s > 0 && !out.empty()) {
        out.back().add_metric("duty_period", m.duty_period_s, "s");
        out.back().add_metric("sleep_energy_per_period",
                              m.sleep_power_W * std::max(0.0, m.duty_period_s - now), "J");
    }
    return out;
}

}  // namespace mlsim::arch::mcu
