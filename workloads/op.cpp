#include "workloads/op.h"

#include <fmt/format.h>

#include <numeric>

#include "sim/config/limits.h"
#include "sim/core/check.h"

namespace mlsim::wl {

namespace {

// Embedding indices are int64 (PyTorch's default index type), whatever the op's data type.
constexpr double k_index_bytes = 8;

[[noreturn]] void op_fail(const Op& op, const std::string& msg) {
    cfg::fail(op.loc, op.key_path, fmt::format("op '{}' ({}): {}", op.name, op.kind, msg));
}

// Integer arithmetic on user-given dimensions and attributes, checked: a count that would pass
// limits::max_op_count (and so could wrap a 64-bit integer later) is a located user error naming the
// op and the limit, never a garbage number.
[[noreturn]] void too_large(const Op& op, std::string_view what) {
    op_fail(op, fmt::format("{} exceeds 2^60 = {}, the largest count mlsim computes with", what,
                            limits::max_op_count));
}

int64_t mul(const Op& op, int64_t a, int64_t b, std::string_view what) {
    int64_t r = 0;
    if (__builtin_mul_overflow(a, b, &r) || r > limits::max_op_count || r < -limits::max_op_count)
        too_large(op, what);
    return r;
}

int64_t add(const Op& op, int64_t a, int64_t b, std::string_view what) {
    int64_t r = 0;
    if (__builtin_add_overflow(a, b, &r) || r > limits::max_op_count || r < -limits::max_op_count)
        too_large(op, what);
    return r;
}

// Elements of a shape, or nullopt when they pass the tensor limit (or the product overflows).
std::optional<int64_t> checked_numel(const Shape& s) {
    int64_t n = 1;
    for (const int64_t d : s)
        if (d < 0 || __builtin_mul_overflow(n, d, &n) || n > limits::max_tensor_elements) return std::nullopt;
    return n;
}

void check_tensor(const Op& op, const Shape& s, std::string_view what) {
    if (!checked_numel(s))
        op_fail(op, fmt::format("{} has shape {}, more than 2^53 = {} elements (the limit for one tensor)",
                                what, shape_str(s), limits::max_tensor_elements));
}

double bytes_of(const Shape& s, DType t) { return static_cast<double>(numel(s)) * dtype_bytes(t); }

double bytes_of(const std::vector<Shape>& ss, DType t) {
    double b = 0;
    for (const Shape& s : ss) b += bytes_of(s, t);
    return b;
}

int64_t prod(const Shape& s, size_t begin, size_t end) {
    int64_t p = 1;
    for (size_t i = begin; i < end; ++i) p *= s[i];
    return p;
}

int64_t window_size(const Op& op, const std::array<int64_t, 3>& k, int dims) {
    int64_t p = 1;
    for (int d = 0; d < dims; ++d) p = mul(op, p, k[static_cast<size_t>(d)], "the kernel window");
    return p;
}

std::string conv_kind(const ConvAttr& a) {
    if (a.dims == 2 && a.groups > 1 && a.groups == a.in_channels) return "depthwise_conv2d";
    if (a.dims >= 1 && a.dims <= 3) return std::string("conv") + static_cast<char>('0' + a.dims) + "d";
    return fmt::format("conv{}d", a.dims);
}

std::string initial_kind(const OpAttr& attr) {
    struct V {
        std::string operator()(const LinearAttr&) const { return "linear"; }
        std::string operator()(const MatmulAttr&) const { return "matmul"; }
        std::string operator()(const ConvAttr& a) const { return conv_kind(a); }
        std::string operator()(const PoolAttr& a) const {
            const char* t = a.type == PoolType::max ? "max" : "avg";
            if (a.global) return fmt::format("global_{}pool", t);
            return fmt::format("{}pool{}d", t, a.dims);
        }
        std::string operator()(const EltwiseAttr& a) const { return std::string(eltwise_name(a.fn)); }
        std::string operator()(const NormAttr& a) const {
            switch (a.type) {
                case NormType::batch:
                    return "batchnorm";
                case NormType::layer:
                    return "layernorm";
                case NormType::rms:
                    return "rmsnorm";
            }
            return "norm";
        }
        std::string operator()(const SoftmaxAttr&) const { return "softmax"; }
        std::string operator()(const AttentionAttr& a) const {
            return a.decode ? "attention_decode" : "attention_prefill";
        }
        std::string operator()(const EmbeddingAttr& a) const { return a.bag ? "embedding_bag" : "embedding"; }
        std::string operator()(const RnnAttr& a) const { return std::string(rnn_cell_name(a.cell)); }
        std::string operator()(const ConcatAttr&) const { return "concat"; }
        std::string operator()(const ReshapeAttr& a) const { return a.flatten ? "flatten" : "reshape"; }
        std::string operator()(const SliceAttr&) const { return "slice"; }
        std::string operator()(const InteractionAttr&) const { return "dot_interaction"; }
        std::string operator()(const MoeAttr& a) const { return a.combine ? "moe_combine" : "moe_dispatch"; }
        std::string operator()(const LoweredAttr&) const { return "lowered"; }
    };
    return std::visit(V{}, attr);
}

void expect_inputs(const Op& op, size_t lo, size_t hi) {
    const size_t n = op.inputs.size();
    if (n < lo || n > hi) {
        if (lo == hi) op_fail(op, fmt::format("takes {} input(s), got {}", lo, n));
        if (hi == SIZE_MAX) op_fail(op, fmt::format("takes at least {} inputs, got {}", lo, n));
        op_fail(op, fmt::format("takes {} to {} inputs, got {}", lo, hi, n));
    }
}

void expect_rank(const Op& op, size_t slot, size_t lo, size_t hi, std::string_view layout) {
    const size_t r = op.inputs[slot].size();
    if (r < lo || r > hi)
        op_fail(op,
                fmt::format("input {} has shape {}, expected {}", slot, shape_str(op.inputs[slot]), layout));
}

void check_derived(const Op& op, int64_t& field, int64_t actual, std::string_view what) {
    if (field != 0 && field != actual)
        op_fail(op, fmt::format("{} is {} but the input gives {}", what, field, actual));
    field = actual;
}

void check_positive(const Op& op, int64_t v, std::string_view what) {
    if (v <= 0) op_fail(op, fmt::format("{} must be positive, got {}", what, v));
}

Shape infer(Op& op, LinearAttr& a) {
    expect_inputs(op, 1, 1);
    expect_rank(op, 0, 1, 8, "[..., in_features]");
    check_derived(op, a.in_features, op.inputs[0].back(), "in_features");
    check_positive(op, a.out_features, "out_features");
    Shape out = op.inputs[0];
    out.back() = a.out_features;
    return out;
}

Shape infer(Op& op, MatmulAttr& a) {
    expect_inputs(op, 2, 2);
    const Shape& x = op.inputs[0];
    const Shape& y = op.inputs[1];
    expect_rank(op, 0, 2, 8, "[..., m, k]");
    expect_rank(op, 1, 2, 8, a.transpose_b ? "[..., n, k]" : "[..., k, n]");
    if (x.size() != y.size() || !std::equal(x.begin(), x.end() - 2, y.begin()))
        op_fail(op, fmt::format("batch dimensions of {} and {} differ", shape_str(x), shape_str(y)));
    const int64_t k = x.back();
    const int64_t kb = a.transpose_b ? y.back() : y[y.size() - 2];
    const int64_t n = a.transpose_b ? y[y.size() - 2] : y.back();
    if (k != kb)
        op_fail(op, fmt::format("inner dimensions differ: {} · {}{}", shape_str(x), shape_str(y),
                                a.transpose_b ? "^T" : ""));
    Shape out = x;
    out.back() = n;
    return out;
}

Shape infer(Op& op, ConvAttr& a) {
    expect_inputs(op, 1, 1);
    if (a.dims < 1 || a.dims > 3) op_fail(op, fmt::format("dims must be 1, 2 or 3, got {}", a.dims));
    const size_t d = static_cast<size_t>(a.dims);
    expect_rank(op, 0, d + 2, d + 2,
                a.dims == 1   ? "[N, C, W]"
                : a.dims == 2 ? "[N, C, H, W]"
                              : "[N, C, D, H, W]");
    check_derived(op, a.in_channels, op.inputs[0][1], "in_channels");
    op.kind = conv_kind(a);
    check_positive(op, a.out_channels, "out_channels");
    check_positive(op, a.groups, "groups");
    if (a.in_channels % a.groups != 0 || a.out_channels % a.groups != 0)
        op_fail(op, fmt::format("groups = {} must divide in_channels = {} and out_channels = {}", a.groups,
                                a.in_channels, a.out_channels));
    Shape out{op.inputs[0][0], a.out_channels};
    for (size_t i = 0; i < d; ++i) {
        check_positive(op, a.kernel[i], "kernel");
        check_positive(op, a.stride[i], "stride");
        check_positive(op, a.dilation[i], "dilation");
        if (a.pad_begin[i] < 0 || a.pad_end[i] < 0) op_fail(op, "padding must not be negative");
        const int64_t in = add(op, add(op, op.inputs[0][2 + i], a.pad_begin[i], "the padded input extent"),
                               a.pad_end[i], "the padded input extent");
        const int64_t span =
            add(op, mul(op, a.dilation[i], a.kernel[i] - 1, "the kernel extent"), 1, "the kernel extent");
        if (in < span)
            op_fail(op, fmt::format("kernel extent {} exceeds the padded input extent {} (input {})", span,
                                    in, shape_str(op.inputs[0])));
        out.push_back((in - span) / a.stride[i] + 1);
    }
    return out;
}

Shape infer(Op& op, PoolAttr& a) {
    expect_inputs(op, 1, 1);
    if (a.dims < 1 || a.dims > 3) op_fail(op, fmt::format("dims must be 1, 2 or 3, got {}", a.dims));
    const size_t d = static_cast<size_t>(a.dims);
    expect_rank(op, 0, d + 2, d + 2, "[N, C, spatial...]");
    Shape out{op.inputs[0][0], op.inputs[0][1]};
    for (size_t i = 0; i < d; ++i) {
        if (a.global) {
            a.kernel[i] = op.inputs[0][2 + i];
            a.stride[i] = 1;
            a.padding[i] = 0;
            out.push_back(1);
            continue;
        }
        check_positive(op, a.kernel[i], "kernel");
        check_positive(op, a.stride[i], "stride");
        if (a.padding[i] < 0) op_fail(op, "padding must not be negative");
        const int64_t in =
            add(op, op.inputs[0][2 + i], mul(op, 2, a.padding[i], "the padding"), "the padded input extent");
        if (in < a.kernel[i])
            op_fail(op, fmt::format("kernel {} exceeds the padded input extent {}", a.kernel[i], in));
        out.push_back((in - a.kernel[i]) / a.stride[i] + 1);
    }
    return out;
}

Shape infer(Op& op, EltwiseAttr& a) {
    if (a.fn == Eltwise::add)
        expect_inputs(op, 2, SIZE_MAX);
    else if (a.fn == Eltwise::mul)
        expect_inputs(op, 2, 2);
    else
        expect_inputs(op, 1, 1);
    for (size_t i = 1; i < op.inputs.size(); ++i)
        if (op.inputs[i] != op.inputs[0])
            op_fail(op, fmt::format("input {} has shape {} but input 0 has {}", i, shape_str(op.inputs[i]),
                                    shape_str(op.inputs[0])));
    return op.inputs[0];
}

Shape infer(Op& op, NormAttr& a) {
    expect_inputs(op, 1, 1);
    if (a.type == NormType::batch) {
        expect_rank(op, 0, 2, 5, "[N, C, ...]");
        check_derived(op, a.features, op.inputs[0][1], "features");
    } else {
        expect_rank(op, 0, 1, 8, "[..., features]");
        check_derived(op, a.features, op.inputs[0].back(), "features");
    }
    return op.inputs[0];
}

Shape infer(Op& op, SoftmaxAttr&) {
    expect_inputs(op, 1, 1);
    expect_rank(op, 0, 1, 8, "[..., n]");
    return op.inputs[0];
}

Shape infer(Op& op, AttentionAttr& a) {
    expect_inputs(op, 3, 3);
    for (size_t i = 0; i < 3; ++i)
        expect_rank(op, i, 3, 3, i == 0 ? "[B, Sq, heads·head_dim]" : "[B, Sk, kv_heads·head_dim]");
    const Shape& q = op.inputs[0];
    const Shape& k = op.inputs[1];
    const Shape& v = op.inputs[2];
    check_positive(op, a.heads, "heads");
    if (a.kv_heads == 0) a.kv_heads = a.heads;
    check_positive(op, a.kv_heads, "kv_heads");
    if (a.heads % a.kv_heads != 0)
        op_fail(op, fmt::format("kv_heads = {} must divide heads = {}", a.kv_heads, a.heads));
    if (q.back() % a.heads != 0)
        op_fail(op, fmt::format("query width {} is not a multiple of heads = {}", q.back(), a.heads));
    check_derived(op, a.head_dim, q.back() / a.heads, "head_dim");
    if (k != v) op_fail(op, fmt::format("k {} and v {} differ", shape_str(k), shape_str(v)));
    if (k[0] != q[0]) op_fail(op, fmt::format("batch of q {} and k {} differ", shape_str(q), shape_str(k)));
    if (k[2] != a.kv_heads * a.head_dim)
        op_fail(op, fmt::format("k width {} is not kv_heads·head_dim = {}·{}", k[2], a.kv_heads, a.head_dim));
    if (a.cache_len < 0) op_fail(op, "cache_len must not be negative");
    // The keys each query attends to, and the KV cache read, stay countable.
    check_tensor(op, Shape{k[0], add(op, a.cache_len, k[1], "cache_len + new tokens"), k[2]}, "the KV cache");
    if (!a.decode && a.cache_len != 0) op_fail(op, "cache_len is only meaningful for attention_decode");
    if (a.causal && q[1] != k[1])
        op_fail(op, fmt::format("a causal mask needs as many new keys as queries (q {} vs k {})",
                                shape_str(q), shape_str(k)));
    if (a.skip_masked && !a.causal) op_fail(op, "skip_masked needs causal");
    return q;
}

Shape infer(Op& op, EmbeddingAttr& a) {
    expect_inputs(op, 1, 1);
    check_positive(op, a.rows, "rows");
    check_positive(op, a.dim, "dim");
    if (a.bag) {
        expect_rank(op, 0, 2, 2, "[B, pooling]");
        return Shape{op.inputs[0][0], a.dim};
    }
    expect_rank(op, 0, 1, 7, "[... ids]");
    Shape out = op.inputs[0];
    out.push_back(a.dim);
    return out;
}

Shape infer(Op& op, RnnAttr& a) {
    expect_inputs(op, 1, 1);
    expect_rank(op, 0, 3, 3, "[B, T, input_size]");
    check_derived(op, a.input_size, op.inputs[0][2], "input_size");
    check_positive(op, a.hidden_size, "hidden_size");
    return Shape{op.inputs[0][0], op.inputs[0][1], a.hidden_size};
}

Shape infer(Op& op, ConcatAttr& a) {
    expect_inputs(op, 1, SIZE_MAX);
    const int rank = static_cast<int>(op.inputs[0].size());
    const int axis = a.axis < 0 ? a.axis + rank : a.axis;
    if (axis < 0 || axis >= rank)
        op_fail(op, fmt::format("axis {} is out of range for rank {}", a.axis, rank));
    a.axis = axis;
    Shape out = op.inputs[0];
    for (size_t i = 1; i < op.inputs.size(); ++i) {
        const Shape& s = op.inputs[i];
        bool ok = s.size() == out.size();
        for (size_t d = 0; ok && d < s.size(); ++d)
            if (static_cast<int>(d) != axis && s[d] != out[d]) ok = false;
        if (!ok)
            op_fail(op, fmt::format("input {} has shape {}, which does not concatenate with {} on axis {}", i,
                                    shape_str(s), shape_str(op.inputs[0]), axis));
        out[static_cast<size_t>(axis)] =
            add(op, out[static_cast<size_t>(axis)], s[static_cast<size_t>(axis)], "the concatenated extent");
    }
    return out;
}

Shape infer(Op& op, ReshapeAttr& a) {
    expect_inputs(op, 1, 1);
    const Shape& in = op.inputs[0];
    if (a.flatten) {
        expect_rank(op, 0, 1, 8, "[N, ...]");
        a.shape = Shape{in[0], numel(in) / in[0]};
        return a.shape;
    }
    Shape out = a.shape;
    int infer_at = -1;
    for (size_t i = 0; i < out.size(); ++i) {
        if (out[i] == 0) {
            if (i >= in.size())
                op_fail(op, fmt::format("shape entry {} copies a dimension the input lacks", i));
            out[i] = in[i];
        } else if (out[i] == -1) {
            if (infer_at >= 0) op_fail(op, "only one shape entry may be -1");
            infer_at = static_cast<int>(i);
        } else if (out[i] < 0) {
            op_fail(op, fmt::format("shape entry {} is {}", i, out[i]));
        }
    }
    if (infer_at >= 0) {
        out[static_cast<size_t>(infer_at)] = 1;
        const std::optional<int64_t> rest = checked_numel(out);
        if (!rest || *rest == 0 || numel(in) % *rest != 0)
            op_fail(op, fmt::format("cannot reshape {} into {}", shape_str(in), shape_str(a.shape)));
        out[static_cast<size_t>(infer_at)] = numel(in) / *rest;
    }
    const std::optional<int64_t> out_elements = checked_numel(out);
    if (out_elements != numel(in))
        op_fail(op,
                fmt::format("cannot reshape {} ({} elements) into {} ({} elements)", shape_str(in), numel(in),
                            shape_str(out),
                            out_elements ? fmt::format("{}", *out_elements) : std::string("more than 2^53")));
    a.shape = out;
    return out;
}

Shape infer(Op& op, SliceAttr& a) {
    expect_inputs(op, 1, 1);
    const int rank = static_cast<int>(op.inputs[0].size());
    const int axis = a.axis < 0 ? a.axis + rank : a.axis;
    if (axis < 0 || axis >= rank)
        op_fail(op, fmt::format("axis {} is out of range for rank {}", a.axis, rank));
    a.axis = axis;
    const int64_t extent = op.inputs[0][static_cast<size_t>(axis)];
    // start > extent - length rather than start + length > extent: the sum could wrap.
    if (a.start < 0 || a.length <= 0 || a.length > extent || a.start > extent - a.length)
        op_fail(op, fmt::format("slice of length {} from {} is outside axis {} of extent {}", a.length,
                                a.start, axis, extent));
    Shape out = op.inputs[0];
    out[static_cast<size_t>(axis)] = a.length;
    return out;
}

Shape infer(Op& op, InteractionAttr& a) {
    expect_inputs(op, 2, SIZE_MAX);
    for (size_t i = 0; i < op.inputs.size(); ++i) {
        expect_rank(op, i, 2, 2, "[B, D]");
        if (op.inputs[i] != op.inputs[0])
            op_fail(op, fmt::format("input {} has shape {} but input 0 has {}", i, shape_str(op.inputs[i]),
                                    shape_str(op.inputs[0])));
    }
    check_derived(op, a.features, static_cast<int64_t>(op.inputs.size()), "features");
    check_derived(op, a.dim, op.inputs[0][1], "dim");
    check_positive(op, a.pad_to, "pad_to");
    const int64_t f = a.features;
    const int64_t pairs = a.self_interaction ? f * (f + 1) / 2 : f * (f - 1) / 2;
    const int64_t width = (a.dim + pairs + a.pad_to - 1) / a.pad_to * a.pad_to;
    return Shape{op.inputs[0][0], width};
}

Shape infer(Op& op, MoeAttr& a) {
    check_positive(op, a.experts, "experts");
    if (a.top_k < 1 || a.top_k > a.experts)
        op_fail(op, fmt::format("top_k must be between 1 and experts ({}), got {}", a.experts, a.top_k));
    if (a.ep < 1 || a.experts % a.ep != 0)
        op_fail(op, fmt::format("expert parallelism {} does not divide the {} experts", a.ep, a.experts));
    const int64_t local = a.experts / a.ep;
    if (a.combine) {
        if (a.experts > (1 << 20)) op_fail(op, fmt::format("experts is {}, above 2^20", a.experts));
        expect_inputs(op, static_cast<size_t>(local) + 1, static_cast<size_t>(local) + 1);
    } else {
        expect_inputs(op, 2, 2);
        if (a.expert < 0 || a.expert >= a.experts)
            op_fail(op, fmt::format("expert must be between 0 and {}, got {}", a.experts - 1, a.expert));
    }
    const Shape& probs = op.inputs[a.combine ? 0 : 1];
    expect_rank(op, a.combine ? 0 : 1, 2, 8, "probabilities [..., experts]");
    if (probs.back() != a.experts)
        op_fail(op, fmt::format("the probabilities {} are not over {} experts", shape_str(probs), a.experts));
    const int64_t tokens = numel(probs) / a.experts;
    const int64_t routed = mul(op, mul(op, tokens, a.top_k, "tokens x top_k"), a.ep, "tokens x top_k x ep");
    const int64_t cap = routed / a.experts + (routed % a.experts ? 1 : 0);
    if (a.combine) {
        const Shape& e0 = op.inputs[1];
        for (size_t i = 1; i < op.inputs.size(); ++i) {
            expect_rank(op, i, 3, 3, "[1, C, d]");
            if (op.inputs[i] != e0 || e0[0] != 1)
                op_fail(op,
                        fmt::format("expert output {} has shape {}; expected [1, C, d] like expert 0's {}",
                                    i - 1, shape_str(op.inputs[i]), shape_str(e0)));
        }
        check_derived(op, a.dim, e0[2], "dim");
        check_derived(op, a.capacity, cap, "capacity");
        if (e0[1] != cap)
            op_fail(op, fmt::format("experts hold {} tokens each but the routing gives {}", e0[1], cap));
        Shape out = probs;
        out.back() = a.dim;
        return out;
    }
    const Shape& x = op.inputs[0];
    expect_rank(op, 0, 2, 8, "[..., d]");
    if (numel(x) / x.back() != tokens)
        op_fail(op, fmt::format("x {} and probabilities {} hold different token counts", shape_str(x),
                                shape_str(probs)));
    check_derived(op, a.dim, x.back(), "dim");
    check_derived(op, a.capacity, cap, "capacity");
    return Shape{1, cap, a.dim};
}

Shape infer(Op& op, LoweredAttr&) { op_fail(op, "lowered ops are built with make_lowered"); }

// ---- counts

struct Counter {
    const Op& op;
    double b;  // bytes per element

    OpCounts base() const {
        OpCounts c;
        c.input_bytes = bytes_of(op.inputs, op.dtype);
        c.output_bytes = bytes_of(op.outputs, op.dtype);
        return c;
    }
    void weights(OpCounts& c, int64_t params) const {
        c.params = params;
        c.weight_bytes = static_cast<double>(params) * b;
    }

    OpCounts operator()(const LinearAttr& a) const {
        OpCounts c = base();
        const double tokens = static_cast<double>(numel(op.inputs[0]) / a.in_features);
        c.macs = tokens * a.in_features * a.out_features;
        c.flops = 2 * c.macs + (a.bias ? tokens * a.out_features : 0);
        weights(c, add(op, mul(op, a.in_features, a.out_features, "the parameter count"),
                       a.bias ? a.out_features : 0, "the parameter count"));
        return c;
    }
    OpCounts operator()(const MatmulAttr&) const {
        OpCounts c = base();
        const Shape& x = op.inputs[0];
        c.macs = static_cast<double>(numel(x)) * static_cast<double>(op.output().back());
        c.flops = 2 * c.macs;
        return c;
    }
    OpCounts operator()(const ConvAttr& a) const {
        OpCounts c = base();
        const int64_t per_out =
            mul(op, a.in_channels / a.groups, window_size(op, a.kernel, a.dims), "MACs per output element");
        c.macs = static_cast<double>(numel(op.output())) * static_cast<double>(per_out);
        c.flops = 2 * c.macs + (a.bias ? static_cast<double>(numel(op.output())) : 0);
        weights(c, add(op, mul(op, a.out_channels, per_out, "the parameter count"),
                       a.bias ? a.out_channels : 0, "the parameter count"));
        return c;
    }
    OpCounts operator()(const PoolAttr& a) const {
        OpCounts c = base();
        c.flops =
            static_cast<double>(numel(op.output())) * static_cast<double>(window_size(op, a.kernel, a.dims));
        return c;
    }
    OpCounts operator()(const EltwiseAttr& a) const {
        OpCounts c = base();
        c.flops =
            static_cast<double>(numel(op.output())) * eltwise_flops(a.fn, static_cast<int>(op.inputs.size()));
        return c;
    }
    OpCounts operator()(const NormAttr& a) const {
        OpCounts c = base();
        const double n = static_cast<double>(numel(op.output()));
        switch (a.type) {
            case NormType::batch:
                c.flops = 2 * n;
                weights(c, 2 * a.features);
                c.weight_bytes = 4.0 * static_cast<double>(a.features) * b;  // + running mean and variance
                break;
            case NormType::layer:
                c.flops = 7 * n;
                weights(c, 2 * a.features);
                break;
            case NormType::rms:
                c.flops = 4 * n;
                weights(c, a.features);
                break;
        }
        return c;
    }
    OpCounts operator()(const SoftmaxAttr&) const {
        OpCounts c = base();
        c.flops = 5.0 * static_cast<double>(numel(op.output()));
        return c;
    }
    OpCounts operator()(const AttentionAttr& a) const {
        OpCounts c = base();
        const double scores = attention_scores(op);
        c.macs = 2 * scores * static_cast<double>(a.head_dim);
        c.flops = 2 * c.macs + 6 * scores;
        if (a.decode) {
            c.input_bytes += kv_cache_bytes(op);
            c.output_bytes += bytes_of(op.inputs[1], op.dtype) + bytes_of(op.inputs[2], op.dtype);
        }
        return c;
    }
    OpCounts operator()(const EmbeddingAttr& a) const {
        OpCounts c;
        const double lookups = static_cast<double>(numel(op.inputs[0]));
        c.input_bytes = lookups * k_index_bytes;
        c.output_bytes = bytes_of(op.outputs, output_dtype(op));
        c.params = mul(op, a.rows, a.dim, "the parameter count (rows x dim)");
        c.weight_bytes = lookups * static_cast<double>(a.dim) * b;
        if (a.bag) {
            const double bags = static_cast<double>(op.inputs[0][0]);
            const double pooling = static_cast<double>(op.inputs[0][1]);
            c.flops = bags * (pooling - 1) * static_cast<double>(a.dim) + (a.mean ? bags * a.dim : 0);
        }
        return c;
    }
    OpCounts operator()(const RnnAttr& a) const {
        OpCounts c = base();
        const double steps = static_cast<double>(op.inputs[0][0] * op.inputs[0][1]);  // B·T
        const int64_t g = rnn_gates(a.cell);
        const int64_t per_step =
            mul(op, mul(op, g, a.hidden_size, "the gate width"),
                add(op, a.input_size, a.hidden_size, "input_size + hidden_size"), "the parameter count");
        c.macs = steps * static_cast<double>(per_step);
        c.flops = 2 * c.macs + steps * static_cast<double>(a.hidden_size) * rnn_cell_flops(a.cell);
        weights(c, add(op, per_step, a.bias ? 2 * g * a.hidden_size : 0, "the parameter count"));
        return c;
    }
    OpCounts operator()(const ConcatAttr&) const { return base(); }
    OpCounts operator()(const ReshapeAttr&) const { return OpCounts{}; }
    OpCounts operator()(const SliceAttr&) const {  // reads only the slice it copies
        OpCounts c = base();
        c.input_bytes = c.output_bytes;
        return c;
    }
    OpCounts operator()(const InteractionAttr& a) const {
        OpCounts c = base();
        c.macs = static_cast<double>(op.inputs[0][0]) *
                 static_cast<double>(
                     mul(op, mul(op, a.features, a.features, "features^2"), a.dim, "MACs per sample"));
        c.flops = 2 * c.macs;
        return c;
    }
    OpCounts operator()(const MoeAttr& a) const {
        OpCounts c;
        const double rows = static_cast<double>(a.capacity) * static_cast<double>(a.dim);
        if (!a.combine) {  // a gather of C rows
            c.input_bytes = rows * b;
            c.output_bytes = rows * b;
            return c;
        }
        const double tokens = static_cast<double>(numel(op.inputs[0]) / a.experts);
        c.input_bytes =
            static_cast<double>(a.experts / a.ep) * rows * b + tokens * static_cast<double>(a.top_k) * b;
        c.output_bytes = bytes_of(op.outputs, op.dtype);
        c.flops = tokens * static_cast<double>(a.dim) * static_cast<double>(2 * a.top_k - 1);
        return c;
    }
    OpCounts operator()(const LoweredAttr& a) const { return a.counts; }
};

struct GemmViews {
    const Op& op;
    std::vector<GemmShape> operator()(const LinearAttr& a) const {
        return {GemmShape{1, numel(op.inputs[0]) / a.in_features, a.out_features, a.in_features}};
    }
    std::vector<GemmShape> operator()(const MatmulAttr&) const {
        const Shape& x = op.inputs[0];
        const int64_t batch = prod(x, 0, x.size() - 2);
        return {GemmShape{batch, x[x.size() - 2], op.output().back(), x.back()}};
    }
    std::vector<GemmShape> operator()(const ConvAttr& a) const {
        const Shape& y = op.output();
        const int64_t m = y[0] * prod(y, 2, y.size());
        return {GemmShape{a.groups, m, a.out_channels / a.groups,
                          a.in_channels / a.groups * window_size(op, a.kernel, a.dims)}};
    }
    std::vector<GemmShape> operator()(const AttentionAttr& a) const {
        const int64_t bh = op.inputs[0][0] * a.heads;
        const int64_t sq = op.inputs[0][1];
        const int64_t keys = a.cache_len + op.inputs[1][1];
        return {GemmShape{bh, sq, keys, a.head_dim}, GemmShape{bh, sq, a.head_dim, keys}};
    }
    std::vector<GemmShape> operator()(const RnnAttr& a) const {
        // The input projection runs as one GEMM over all steps; the recurrent one runs T times in
        // sequence (batch = T here means T dependent steps, not independent matrices).
        const int64_t b = op.inputs[0][0];
        const int64_t t = op.inputs[0][1];
        const int64_t gh = rnn_gates(a.cell) * a.hidden_size;
        return {GemmShape{1, b * t, gh, a.input_size}, GemmShape{t, b, gh, a.hidden_size}};
    }
    std::vector<GemmShape> operator()(const InteractionAttr& a) const {
        return {GemmShape{op.inputs[0][0], a.features, a.features, a.dim}};
    }
    std::vector<GemmShape> operator()(const LoweredAttr& a) const { return a.gemms; }
    std::vector<GemmShape> operator()(const auto&) const { return {}; }
};

}  // namespace

int64_t numel(const Shape& s) { return std::accumulate(s.begin(), s.end(), int64_t{1}, std::multiplies<>()); }

std::string shape_str(const Shape& s) { return fmt::format("[{}]", fmt::join(s, ",")); }

OpCounts& OpCounts::operator+=(const OpCounts& o) {
    macs += o.macs;
    flops += o.flops;
    params += o.params;
    weight_bytes += o.weight_bytes;
    input_bytes += o.input_bytes;
    output_bytes += o.output_bytes;
    return *this;
}

double eltwise_flops(Eltwise fn, int arity) {
    switch (fn) {
        case Eltwise::relu:
            return 1;
        case Eltwise::relu6:
            return 2;
        case Eltwise::sigmoid:
        case Eltwise::tanh:
            return 4;
        case Eltwise::silu:
            return 5;
        case Eltwise::gelu:
            return 12;
        case Eltwise::rope:
            return 3;
        case Eltwise::add:
            return arity - 1;
        case Eltwise::mul:
            return 1;
    }
    MLSIM_CHECK(false, "unhandled Eltwise");
    return 0;
}

std::string_view eltwise_name(Eltwise fn) {
    switch (fn) {
        case Eltwise::relu:
            return "relu";
        case Eltwise::relu6:
            return "relu6";
        case Eltwise::sigmoid:
            return "sigmoid";
        case Eltwise::tanh:
            return "tanh";
        case Eltwise::silu:
            return "silu";
        case Eltwise::gelu:
            return "gelu";
        case Eltwise::rope:
            return "rope";
        case Eltwise::add:
            return "add";
        case Eltwise::mul:
            return "mul";
    }
    MLSIM_CHECK(false, "unhandled Eltwise");
    return {};
}

double rnn_cell_flops(RnnCell cell) {
    switch (cell) {
        case RnnCell::rnn:
            return 6;  // 2 bias adds + tanh
        case RnnCell::lstm:
            return 32;  // 8 bias adds + 3 sigmoid + 2 tanh (20) + c = f·c + i·g (3) + h = o·tanh(c) (1)
        case RnnCell::gru:
            return 24;  // 6 bias adds + 2 sigmoid + tanh (12) + r·(W_hn h) and its add (2) + h' (4)
    }
    MLSIM_CHECK(false, "unhandled RnnCell");
    return 0;
}

int rnn_gates(RnnCell cell) {
    switch (cell) {
        case RnnCell::rnn:
            return 1;
        case RnnCell::lstm:
            return 4;
        case RnnCell::gru:
            return 3;
    }
    MLSIM_CHECK(false, "unhandled RnnCell");
    return 0;
}

std::string_view rnn_cell_name(RnnCell cell) {
    switch (cell) {
        case RnnCell::rnn:
            return "rnn";
        case RnnCell::lstm:
            return "lstm";
        case RnnCell::gru:
            return "gru";
    }
    MLSIM_CHECK(false, "unhandled RnnCell");
    return {};
}

double attention_scores(const Op& op) {
    const AttentionAttr* a = op.get<AttentionAttr>();
    MLSIM_CHECK(a, "attention_scores on a non-attention op " + op.name);
    const double batch_heads = static_cast<double>(op.inputs[0][0] * a->heads);
    const double sq = static_cast<double>(op.inputs[0][1]);
    const double keys = static_cast<double>(a->cache_len + op.inputs[1][1]);
    if (!a->skip_masked) return batch_heads * sq * keys;
    // Query i (0-based) of the Sq new tokens sees the cache and the new tokens up to itself.
    const double seen = sq * static_cast<double>(a->cache_len) + sq * (sq + 1) / 2;
    return batch_heads * seen;
}

double kv_cache_bytes(const Op& op) {
    const AttentionAttr* a = op.get<AttentionAttr>();
    if (!a || !a->decode) return 0;
    return 2.0 * static_cast<double>(op.inputs[1][0]) * static_cast<double>(a->cache_len) *
           static_cast<double>(a->kv_heads * a->head_dim) * dtype_bytes(op.dtype);
}

Op make_op(std::string name, OpAttr attr, std::vector<Shape> inputs, DType dtype, cfg::SourceLoc loc,
           std::string key_path) {
    Op op;
    op.name = std::move(name);
    op.dtype = dtype;
    op.inputs = std::move(inputs);
    op.loc = std::move(loc);
    op.key_path = std::move(key_path);
    op.kind = initial_kind(attr);
    if (op.name.empty()) op_fail(op, "an op needs a name");
    for (size_t i = 0; i < op.inputs.size(); ++i) {
        if (op.inputs[i].empty()) op_fail(op, fmt::format("input {} has no shape", i));
        for (int64_t d : op.inputs[i])
            if (d <= 0)
                op_fail(op, fmt::format("input {} has shape {}: dimensions must be positive", i,
                                        shape_str(op.inputs[i])));
    }
    // Labels are formatted only for a message (a run builds hundreds of ops).
    for (size_t i = 0; i < op.inputs.size(); ++i)
        if (!checked_numel(op.inputs[i])) check_tensor(op, op.inputs[i], fmt::format("input {}", i));
    Shape out = std::visit([&](auto& a) { return infer(op, a); }, attr);
    op.attr = std::move(attr);
    op.kind = initial_kind(op.attr);
    check_tensor(op, out, "the output");
    op.outputs = {std::move(out)};
    // Every count and GEMM view is computed here once, with checked arithmetic (which throws for an
    // op beyond the limits), so that counts() and gemms() never overflow later.
    const OpCounts c = op.counts();
    const double limit = static_cast<double>(limits::max_op_count);
    if (!(c.macs <= limit)) too_large(op, fmt::format("its MAC count {:.4g}", c.macs));
    // FLOPs are 2 per MAC plus the op's other arithmetic: a quarter of their limit is left to spare.
    if (!(c.flops <= 4 * limit))
        op_fail(op,
                fmt::format("its FLOP count {:.4g} exceeds 2^62, the largest FLOP count mlsim computes with",
                            c.flops));
    if (c.params > limits::max_op_count) too_large(op, fmt::format("its parameter count {}", c.params));
    for (const GemmShape& g : op.gemms()) {
        const int64_t bmn = mul(op, mul(op, g.batch, g.m, "a GEMM"), g.n, "a GEMM");
        int64_t r = 0;
        // mul's test, so that the label is formatted only when it fails.
        if (__builtin_mul_overflow(bmn, g.k, &r) || r > limits::max_op_count || r < -limits::max_op_count)
            (void)mul(op, bmn, g.k,
                      fmt::format("its GEMM {}x{}x{}x{} (batch x m x n x k)", g.batch, g.m, g.n, g.k));
    }
    return op;
}

Op make_lowered(std::string name, std::string kind, Phase phase, DType dtype, std::vector<Shape> inputs,
                std::vector<Shape> outputs, OpCounts counts, std::vector<GemmShape> gemms) {
    Op op;
    op.name = std::move(name);
    op.kind = std::move(kind);
    op.phase = phase;
    op.dtype = dtype;
    op.inputs = std::move(inputs);
    op.outputs = std::move(outputs);
    op.attr = LoweredAttr{counts, std::move(gemms)};
    return op;
}

OpCounts Op::counts() const {
    OpCounts c = std::visit(Counter{*this, dtype_bytes(dtype)}, attr);
    if (!tied_to.empty()) c.params = 0;
    return c;
}

std::vector<GemmShape> Op::gemms() const { return std::visit(GemmViews{*this}, attr); }

std::optional<GemmShape> Op::gemm() const {
    if (get<AttentionAttr>() || get<RnnAttr>()) return std::nullopt;
    std::vector<GemmShape> g = gemms();
    if (g.size() != 1) return std::nullopt;
    return g.front();
}

DType output_dtype(const Op& op) {
    if (const EmbeddingAttr* e = op.get<EmbeddingAttr>(); e && e->output_dtype) return *e->output_dtype;
    return op.dtype;
}

double Op::weight_storage_bytes() const {
    if (!tied_to.empty() || get<LoweredAttr>()) return 0;
    const OpCounts c = counts();
    double params = static_cast<double>(c.params);
    if (const NormAttr* n = get<NormAttr>(); n && n->type == NormType::batch)
        params += 2.0 * static_cast<double>(n->features);  // running mean and variance
    return params * dtype_bytes(dtype);
}

}  // namespace mlsim::wl
