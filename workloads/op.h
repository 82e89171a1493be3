#pragma once
// The layer IR: one Op is one layer (or one backward / optimizer step) of a model, with its attributes
// and the shapes of the tensors it reads and writes. Device models read an op through counts() and
// gemm()/gemms(); they never need to know the kind-specific formulas below.
//
// Contract:
// - make_op() is the only way ops get their output shapes: it checks the attributes against the input
//   shapes, fills attributes that follow from the inputs (in_features, in_channels, ...), and throws
//   cfg::UserError located at op.loc naming the op when they disagree.
// - make_op() also bounds the op (sim/config/limits.h), with checked integer arithmetic: every input
//   and output tensor has at most 2^53 elements, and the op's MACs, parameters, each GEMM's
//   batch·m·n·k and every intermediate product of its attributes (padded extents, kernel windows,
//   slice bounds, cache length) are at most 2^60 (FLOPs at most 2^62). Beyond that it is a UserError
//   naming the op and the limit, so counts() and gemms() never overflow.
// - counts() depends only on the op (attributes, shapes, dtype); it is deterministic and exact up to
//   2^53 (doubles hold every integer up to there; larger MAC and FLOP counts are rounded to 53 bits).
//
// Counting conventions (the figures tests and the seed claims are checked against):
// - MACs are multiply-accumulates of matrix-like arithmetic (linear, matmul, conv, attention's two
//   products, RNN gate GEMMs, the DLRM interaction). FLOPs = 2·MACs plus the op's non-MAC arithmetic,
//   counted per element with these fixed costs (a transcendental such as exp counts as 1 FLOP):
//     bias add 1 per output element; relu 1; relu6 2; sigmoid 4; tanh 4; silu 5; gelu (tanh form) 12;
//     rope 3; add (n inputs) n-1; mul 1; softmax 5 (max, subtract, exp, sum, divide);
//     layernorm 7 (mean, subtract, square, sum, normalize, scale, shift); rmsnorm 4; batchnorm 2
//     (inference form: statistics folded into one scale and one shift);
//     max/avg pooling: kernel-window size per output element; embedding bag: (pooling-1)·dim adds per
//     bag (sum mode), plus dim divides in mean mode; RNN cells per hidden unit per time step beyond the
//     gate GEMMs: rnn 6, lstm 32, gru 24 (two bias adds per gate, activations as above, state update).
// - Attention (prefill and decode): Q·K^T and P·V are two batched matmuls of head_dim-long dot
//   products; the score matrix costs 6 FLOPs per element on top (scale 1 + softmax 5); the mask itself
//   is free. A CAUSAL PREFILL COUNTS THE FULL S×S score and P·V matrices, as a dense kernel computes
//   them (Kaplan et al. 2020, "Scaling Laws for Neural Language Models", count the same way), unless
//   AttentionAttr::skip_masked is set, in which case only the S(S+1)/2 unmasked scores per head count.
//   Decode: each new query token attends to cache_len cached tokens plus the new ones.
//   Grouped-query attention (kv_heads < heads) shares K/V between heads: it changes bytes, not MACs.
// - Parameters are trainable parameters (PyTorch's count: batchnorm has 2·C, its running mean and
//   variance are buffers). An op whose weights are tied to another op's (tied_to) owns no parameters.
// - Bytes: weight_bytes is what one execution of the op reads of its weights (for an embedding: only
//   the gathered rows; the full table is weight_storage_bytes()); input_bytes and output_bytes are the
//   op's activation tensors, each touched once (the compulsory traffic, no re-reads from tiling).
//   Embedding indices are int64 (8 bytes) whatever the op's dtype. Reshape/flatten are views: 0 bytes.
//   Decode attention reads its KV cache (input_bytes) and appends the new K and V to it (output_bytes).
#include <array>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <variant>
#include <vector>

#include "sim/config/error.h"
#include "workloads/dtype.h"

namespace mlsim::wl {

using Shape = std::vector<int64_t>;
int64_t numel(const Shape& s);
std::string shape_str(const Shape& s);  // "[1,3,224,224]"

struct OpCounts {
    double macs = 0, flops = 0;
    int64_t params = 0;
    double weight_bytes = 0, input_bytes = 0, output_bytes = 0;

    OpCounts& operator+=(const OpCounts& o);
    double total_bytes() const { return weight_bytes + input_bytes + output_bytes; }
};

// C[b](m×n) += A[b](m×k)·B[b](k×n). Conv maps through im2col: m = N·Ho·Wo, n = Cout/groups,
// k = Cin/groups·Kh·Kw (·Kd), batch = groups.
struct GemmShape {
    int64_t batch = 1, m = 0, n = 0, k = 0;
    double macs() const { return static_cast<double>(batch) * m * n * k; }
    bool operator==(const GemmShape&) const = default;
};

// ---- attributes, one struct per family. Zero-valued "derived" fields are filled by make_op from the
// input shapes; non-zero ones are checked against them.

struct LinearAttr {           // input [..., in] -> [..., out]; weight out×in (+ bias out)
    int64_t in_features = 0;  // derived
    int64_t out_features = 0;
    bool bias = true;
};

struct MatmulAttr {  // A [..., m, k] · B [..., k, n] (B [..., n, k] when transpose_b) -> [..., m, n]
    bool transpose_b = false;
};

struct ConvAttr {  // input [N, C, D?, H?, W] -> [N, Cout, ...]; weight Cout × C/groups × kernel (+ bias)
    int dims = 2;  // 1, 2 or 3 spatial dimensions; the first `dims` entries are used
    int64_t in_channels = 0;  // derived
    int64_t out_channels = 0;
    std::array<int64_t, 3> kernel{1, 1, 1};
    std::array<int64_t, 3> stride{1, 1, 1};
    std::array<int64_t, 3> pad_begin{0, 0, 0};  // asymmetric padding allowed (TensorFlow "same")
    std::array<int64_t, 3> pad_end{0, 0, 0};
    std::array<int64_t, 3> dilation{1, 1, 1};
    int64_t groups = 1;  // depthwise: groups = in_channels
    bool bias = false;
};

enum class PoolType { max, avg };
struct PoolAttr {  // [N, C, spatial...] -> [N, C, out...]; global: out is all ones
    PoolType type = PoolType::max;
    int dims = 2;
    bool global = false;
    std::array<int64_t, 3> kernel{1, 1, 1};
    std::array<int64_t, 3> stride{1, 1, 1};  // PyTorch floor mode
    std::array<int64_t, 3> padding{0, 0, 0};
};

enum class Eltwise { relu, relu6, sigmoid, tanh, silu, gelu, rope, add, mul };
struct EltwiseAttr {  // add: two or more inputs of one shape (residual add); mul: two; others: one
    Eltwise fn = Eltwise::relu;
};

enum class NormType { batch, layer, rms };
struct NormAttr {  // batch: over C of [N, C, ...]; layer / rms: over the last dimension
    NormType type = NormType::layer;
    int64_t features = 0;  // derived
};

struct SoftmaxAttr {};  // over the last dimension

struct AttentionAttr {  // q [B, Sq, H·d], k and v [B, Sk, KVH·d] -> [B, Sq, H·d]
    int64_t heads = 0;
    int64_t kv_heads = 0;  // 0 = heads (multi-head); < heads = grouped-query
    int64_t head_dim = 0;  // derived
    bool decode = false;   // decode: reads cache_len cached tokens and appends the Sk new ones
    int64_t cache_len = 0;
    bool causal = true;
    bool skip_masked = false;  // count only unmasked causal scores (see the header comment)
};

struct EmbeddingAttr {  // ids [...] -> [..., dim]; bag: ids [B, pooling] -> [B, dim]
    int64_t rows = 0;
    int64_t dim = 0;
    bool bag = false;
    bool mean = false;  // bag pooling mode: sum (default) or mean
    // The pooled output's data type when it is not the op's (the table's): a lookup in FP32 tables cast to
    // the FP16 the next ops run in (mixed precision); nullopt: the op's dtype.
    std::optional<DType> output_dtype;
};

enum class RnnCell { rnn, lstm, gru };
struct RnnAttr {  // one unidirectional layer over a sequence: [B, T, I] -> [B, T, H] (PyTorch layout)
    RnnCell cell = RnnCell::lstm;
    int64_t input_size = 0;  // derived
    int64_t hidden_size = 0;
    bool bias = true;  // PyTorch's two bias vectors (b_ih, b_hh)
};

struct ConcatAttr {
    int axis = -1;
};

struct ReshapeAttr {  // entries: 0 copies that input dimension, -1 is inferred (ONNX semantics)
    Shape shape;
    bool flatten = false;  // kind "flatten": [N, ...] -> [N, rest]; shape ignored
};

struct SliceAttr {  // a contiguous range along one axis (e.g. BERT's [CLS] token): a copy, no arithmetic
    int axis = 1;
    int64_t start = 0;
    int64_t length = 1;
};

// DLRM feature interaction (Naumov et al. 2019, arXiv:1906.00091): F inputs of [B, D] (the bottom
// MLP output first); Z = T·T^T over the stacked [B, F, D], computed as a full batched matmul as the
// reference does, then the strictly lower triangle is concatenated after the dense input:
// output [B, D + F(F-1)/2] (+F with self_interaction).
struct InteractionAttr {
    int64_t features = 0;  // derived
    int64_t dim = 0;       // derived
    bool self_interaction = false;
    // The output width zero-padded up to a multiple of pad_to (1: none). NVIDIA DeepLearningExamples' DLRM
    // pads 479 to 480 so the top MLP's first GEMM meets the tensor cores' 8-element alignment
    // (PyTorch/Recommendation/DLRM/dlrm/nn/interactions.py, padding_size).
    int64_t pad_to = 1;
};

// Mixture-of-experts routing (Shazeer et al. 2017, arXiv:1701.06538; Mixtral: Jiang et al. 2024,
// arXiv:2401.04088). A router linear and softmax give probabilities [B, S, experts]; then one dispatch op
// per expert gathers the tokens routed to it, the experts run as ordinary ops on those tokens, and one
// combine op sums each token's top_k expert outputs weighted by their gate values. Routing is assumed
// balanced: every expert gets the average load C = ceil(tokens·top_k / experts) tokens (rounded up, so a
// decode step with fewer routed tokens than experts still runs every expert on one token: an upper
// bound on the weights a small batch reads). Dispatch and combine are also where an expert-parallel
// lowering puts its all-to-alls (workloads/parallel.h).
//   dispatch (combine = false): x [..., d] and probs [..., experts] -> [1, C, d] for expert `expert`;
//     a gather: reads and writes C·d elements, no arithmetic (top-k selection is comparisons, 0 FLOPs).
//   combine (combine = true): probs [..., experts], then `experts` inputs [1, C, d] -> x's shape
//     [..., d] (taken from probs' leading dimensions); (2·top_k - 1)·d FLOPs per token.
struct MoeAttr {
    int64_t experts = 0;
    int64_t top_k = 0;
    int64_t expert = 0;  // dispatch: which expert's tokens
    bool combine = false;
    // Expert parallelism (set by workloads/parallel.h): the experts are spread over `ep` ranks, each
    // holding experts / ep of them and routing its tokens to all: a dispatch gathers the tokens routed to
    // its expert from ep ranks' batches (C = ceil(ep·tokens·top_k / experts)), and a combine takes only
    // the rank's own experts / ep expert outputs.
    int64_t ep = 1;
    int64_t dim = 0;       // derived: d
    int64_t capacity = 0;  // derived: C
};

// Ops produced by lowering (backward, optimizer, gradient accumulation) carry their counts and GEMM
// views, computed when they were created from the forward op.
struct LoweredAttr {
    OpCounts counts;
    std::vector<GemmShape> gemms;
};

using OpAttr = std::variant<LinearAttr, MatmulAttr, ConvAttr, PoolAttr, EltwiseAttr, NormAttr, SoftmaxAttr,
                            AttentionAttr, EmbeddingAttr, RnnAttr, ConcatAttr, ReshapeAttr, SliceAttr,
                            InteractionAttr, MoeAttr, LoweredAttr>;

struct Op {
    std::string name;  // unique within a model
    std::string kind;  // "linear", "conv2d", "depthwise_conv2d", "attention_decode", "linear_grad_input", ...
    DType dtype = DType::fp32;
    Phase phase = Phase::forward;
    OpAttr attr;
    std::vector<Shape> inputs;   // one per input slot
    std::vector<Shape> outputs;  // one per output slot; forward ops have exactly one
    std::string tied_to;         // the op whose weights this one reuses (tied LM head, recompute copies)
    std::string forward_of;      // lowered ops: the forward op they come from
    cfg::SourceLoc loc;          // where the user declared it; empty for built-in models
    std::string key_path;        // its key path in that file ("ops[3]"); empty for built-in models

    const Shape& output() const { return outputs.at(0); }
    OpCounts counts() const;
    // The single GEMM of a matmul-like op (linear, matmul, conv via im2col, interaction, one-GEMM
    // backward ops); nullopt for ops with none or several (attention, RNN: use gemms()).
    std::optional<GemmShape> gemm() const;
    std::vector<GemmShape> gemms() const;  // every matrix-engine GEMM of the op, in execution order
    double weight_storage_bytes() const;   // bytes its stored weights occupy (0 when tied or lowered)
    bool has_weights() const { return counts().params > 0; }

    template <class A>
    const A* get() const {
        return std::get_if<A>(&attr);
    }
};

// The data type of an op's output: an embedding's output_dtype where set, else the op's.
DType output_dtype(const Op& op);

// Builds an op: derives `kind`, checks and completes the attributes, infers the output shape.
Op make_op(std::string name, OpAttr attr, std::vector<Shape> inputs, DType dtype = DType::fp32,
           cfg::SourceLoc loc = {}, std::string key_path = {});

// A lowered op (backward / optimizer step) with precomputed counts.
Op make_lowered(std::string name, std::string kind, Phase phase, DType dtype, std::vector<Shape> inputs,
                std::vector<Shape> outputs, OpCounts counts, std::vector<GemmShape> gemms = {});

// FLOPs per element of an element-wise function (the table in the header comment).
double eltwise_flops(Eltwise fn, int arity);
std::string_view eltwise_name(Eltwise fn);
// Non-MAC FLOPs per hidden unit per time step of an RNN cell, and its gate count (rnn 1, lstm 4, gru 3).
double rnn_cell_flops(RnnCell cell);
int rnn_gates(RnnCell cell);
std::string_view rnn_cell_name(RnnCell cell);

// Attention helpers: the number of score elements (counted per the convention above) and the bytes
// of the KV cache a decode op reads.
double attention_scores(const Op& op);
double kv_cache_bytes(const Op& op);

}  // namespace mlsim::wl
