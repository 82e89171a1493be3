#include "experiment/serving/decoder.h"

#include <fmt/format.h>

#include <algorithm>
#include <cmath>

#include "sim/config/error.h"
#include "sim/config/schema.h"
#include "sim/core/check.h"

namespace mlsim::serving {

namespace {

// Llama 2: H. Touvron et al., "Llama 2: Open Foundation and Fine-Tuned Chat Models", arXiv:2307.09288,
// table 1 and the released checkpoints' config.json (hidden_size, num_attention_heads,
// num_key_value_heads, intermediate_size, num_hidden_layers, vocab_size 32,000, context 4,096; GQA with
// 8 KV heads at 70B only). Llama 3: Meta, "The Llama 3 Herd of Models", arXiv:2407.21783, table 3, and the
// Meta-Llama-3-8B / 70B config.json (GQA with 8 KV heads at both sizes, FFN 14,336 / 28,672, vocabulary
// 128,256, context 8,192). GPT-2: A. Radford et al. 2019 and the released checkpoints (see
// workloads/zoo/transformer.cpp): pre-LN, GELU MLP of 4·d, biases, learned positions, tied LM head.
const std::vector<DecoderShape>& presets() {
    static const std::vector<DecoderShape> p = [] {
        std::vector<DecoderShape> v;
        const std::string l2 = "Touvron et al. 2023, arXiv:2307.09288; Llama-2 config.json";
        const std::string l3 = "Llama 3 Herd of Models, arXiv:2407.21783 table 3; Meta-Llama-3 config.json";
        const std::string g2 = "Radford et al. 2019; GPT-2 checkpoints (workloads/zoo/transformer.cpp)";
        v.push_back({"llama2-7b", 32, 4096, 32, 32, 11008, 32000, 4096, true, true, false, true, false, l2});
        v.push_back({"llama2-13b", 40, 5120, 40, 40, 13824, 32000, 4096, true, true, false, true, false, l2});
        v.push_back({"llama2-70b", 80, 8192, 64, 8, 28672, 32000, 4096, true, true, false, true, false, l2});
        v.push_back({"llama3-8b", 32, 4096, 32, 8, 14336, 128256, 8192, true, true, false, true, false, l3});
        v.push_back({"llama3-70b", 80, 8192, 64, 8, 28672, 128256, 8192, true, true, false, true, false, l3});
        v.push_back({"gpt2", 12, 768, 12, 12, 3072, 50257, 1024, false, false, true, false, true, g2});
        v.push_back({"gpt2-xl", 48, 1600, 25, 25, 6400, 50257, 1024, false, false, true, false, true, g2});
        return v;
    }();
    return p;
}

// A model under construction: ops appended in order, each fed by the previous op's output unless
// sources are given (nullopt: a model input).
struct Builder {
    wl::ModelBuilder b;
    wl::DType dtype;
    struct H {
        std::optional<wl::TensorRef> ref;
        wl::Shape shape;
    };
    H op(const std::string& name, wl::OpAttr attr, const std::vector<H>& ins) {
        std::vector<wl::Shape> shapes;
        std::vector<std::optional<wl::TensorRef>> srcs;
        for (const H& h : ins) {
            shapes.push_back(h.shape);
            srcs.push_back(h.ref);
        }
        wl::Op o = wl::make_op(name, std::move(attr), std::move(shapes), dtype);
        wl::Shape out = o.output();
        const size_t id = b.add(std::move(o), srcs);
        return H{wl::TensorRef{id, 0}, std::move(out)};
    }
    static H input(wl::Shape s) { return H{std::nullopt, std::move(s)}; }
};

int64_t round_up(int64_t v, int64_t q) { return q <= 1 ? v : (v + q - 1) / q * q; }

// Ops whose name starts with this prefix are one decoder layer's and count `layers` times.
constexpr std::string_view k_layer_prefix = "layer.";

}  // namespace

double DecoderShape::parameters() const {
    const double d = static_cast<double>(d_model), kvw = static_cast<double>(kv_heads * head_dim());
    const double f = static_cast<double>(ffn);
    double attn = d * d * 2 + d * kvw * 2 + (bias ? 2 * d + 2 * kvw : 0);
    double mlp = gated_ffn ? 3 * d * f : 2 * d * f + (bias ? f + d : 0);
    double norms = (rms_norm ? 1 : 2) * 2 * d;
    double per_layer = attn + mlp + norms;
    double emb = static_cast<double>(vocab) * d + (rope ? 0 : static_cast<double>(max_context) * d);
    double head = tied_head ? 0 : static_cast<double>(vocab) * d;
    return emb + static_cast<double>(layers) * per_layer + (rms_norm ? 1 : 2) * d + head;
}

std::vector<std::string> decoder_names() {
    std::vector<std::string> n;
    for (const DecoderShape& s : presets()) n.push_back(s.name);
    return n;
}

DecoderShape decoder_shape(const std::string& name, const cfg::SourceLoc& loc, std::string_view key) {
    for (const DecoderShape& s : presets())
        if (s.name == name) return s;
    const std::string near = cfg::nearest(name, decoder_names());
    cfg::fail(loc, key,
              fmt::format("unknown serving model '{}'{}; serving models: {}", name,
                          near.empty() ? "" : fmt::format(" (did you mean '{}'?)", near),
                          fmt::join(decoder_names(), ", ")));
}

int64_t Batch::tokens() const {
    int64_t t = static_cast<int64_t>(decode_context.size());
    for (const PrefillChunk& c : prefills) t += c.tokens;
    return t;
}

int64_t Batch::logit_rows() const {
    int64_t r = static_cast<int64_t>(decode_context.size());
    for (const PrefillChunk& c : prefills) r += c.last ? 1 : 0;
    return r;
}

DeviceIterationModel::DeviceIterationModel(const arch::DeviceSpec& device, DecoderShape shape,
                                           DeviceModelOptions opt)
    : m_device(device), m_shape(std::move(shape)), m_opt(opt), m_model(arch::make_device_model(m_device)) {
    MLSIM_CHECK(
        m_opt.kv_bucket >= 1 && m_opt.max_batched_tokens >= 1 && m_opt.max_batch >= 1 && m_opt.tp >= 1,
        "serving: bad device-model options");
    const int64_t tp = m_opt.tp;
    const cfg::SourceLoc cl{"<command line>", 0, 0};
    if (m_shape.heads % tp != 0 || m_shape.ffn % tp != 0 ||
        (m_shape.kv_heads % tp != 0 && tp % m_shape.kv_heads != 0))
        cfg::fail(
            cl, "--tp",
            fmt::format("{} ({} heads, {} KV heads, FFN {}) does not split over {} ranks: tp must divide the "
                        "heads and the FFN width, and divide or be a multiple of the KV heads",
                        m_shape.name, m_shape.heads, m_shape.kv_heads, m_shape.ffn, tp));
    MLSIM_CHECK(tp == 1 || (m_opt.comm.all_reduce && m_opt.comm.all_gather),
                "serving: tensor parallelism without a communication model");
    MLSIM_CHECK(m_opt.stage_layers >= 0 && m_opt.stage_layers <= m_shape.layers,
                "serving: a stage holds more layers than the model");
    m_layers = m_opt.stage_layers > 0 ? m_opt.stage_layers : m_shape.layers;
    m_heads = m_shape.heads / tp;
    m_kv_heads = std::max<int64_t>(1, m_shape.kv_heads / tp);
    m_ffn = m_shape.ffn / tp;
    m_vocab = (m_shape.vocab + tp - 1) / tp;  // vLLM pads the vocabulary to a multiple of the ranks
    const double elem = wl::dtype_bytes(m_opt.dtype);
    m_workspace = static_cast<double>(m_opt.max_batched_tokens) *
                      static_cast<double>(3 * m_shape.d_model + 2 * m_ffn) * elem +
                  static_cast<double>(m_opt.max_batch) * static_cast<double>(m_shape.vocab) * 4.0;
    const double memory = m_device.main_memory().total_capacity_bytes();
    {
        // Sharded: Q/K/V/O, the MLP, embedding and head; replicated: norms (and replicated KV heads).
        const double d = static_cast<double>(m_shape.d_model), hd = static_cast<double>(m_shape.head_dim());
        const bool first = m_opt.first_stage, last = m_opt.last_stage;
        const double norm = (m_shape.rms_norm ? 1.0 : 2.0) * d;
        const double norms = norm * static_cast<double>(2 * m_layers + (last ? 1 : 0));
        const double attn =
            2 * d * static_cast<double>(m_heads) * hd + 2 * d * static_cast<double>(m_kv_heads) * hd;
        const double mlp = (m_shape.gated_ffn ? 3.0 : 2.0) * d * static_cast<double>(m_ffn);
        // The token embedding on the first stage, the LM head on the last (a tied head on both: the last
        // stage keeps its own copy of the shared matrix, as vLLM's pipeline stages do).
        const double table = static_cast<double>(m_vocab) * d;
        const double emb =
            (first ? table + (m_shape.rope ? 0 : static_cast<double>(m_shape.max_context) * d) : 0.0) +
            (last && (!m_shape.tied_head || !first) ? table : 0.0);
        const bool whole = first && last && m_layers == m_shape.layers;
        m_weights = tp == 1 && whole ? m_shape.parameters() * elem
                                     : (norms + static_cast<double>(m_layers) * (attn + mlp) + emb) * elem;
    }
    const double weights = m_weights;
    m_kv_capacity = m_opt.kv_capacity_override > 0
                        ? m_opt.kv_capacity_override
                        : m_opt.memory_utilization * memory - weights - m_workspace;
    if (m_opt.kv_capacity_override > 0 && m_kv_capacity < m_shape.kv_bytes_per_token(m_opt.dtype))
        cfg::fail(
            cfg::SourceLoc{"<command line>", 0, 0}, "--kv-capacity",
            fmt::format("{:.0f} B holds no token of {}'s KV cache ({:.0f} B a token in {})", m_kv_capacity,
                        m_shape.name, m_shape.kv_bytes_per_token(m_opt.dtype), wl::dtype_name(m_opt.dtype)));
    // A KV cache given outright still shares the device's memory with the weights and the workspace.
    if (m_opt.kv_capacity_override > 0 && weights + m_workspace + m_kv_capacity > memory)
        cfg::fail(
            cfg::SourceLoc{"<command line>", 0, 0}, "--kv-capacity",
            fmt::format("a KV cache of {:.2f} GB does not fit on {} beside {}'s {:.2f} GB of {} weights and "
                        "{:.2f} GB activation workspace ({:.2f} GB main memory)",
                        m_kv_capacity / 1e9, m_device.name, m_shape.name, weights / 1e9,
                        wl::dtype_name(m_opt.dtype), m_workspace / 1e9, memory / 1e9));
    if (m_kv_capacity < m_shape.kv_bytes_per_token(m_opt.dtype))
        cfg::fail(cfg::SourceLoc{"<command line>", 0, 0}, "--model",
                  fmt::format("{} ({:.2f} GB of {} weights) does not fit on {} ({:.2f} GB main memory at "
                              "{:.0f} % utilization, {:.2f} GB activation workspace): no room for a KV cache",
                              m_shape.name, weights / 1e9, wl::dtype_name(m_opt.dtype), m_device.name,
                              memory / 1e9, m_opt.memory_utilization * 100, m_workspace / 1e9));
}

IterationCost DeviceIterationModel::run(const wl::Model& model, double layers) {
    IterationCost c;
    for (const arch::LayerResult& r : m_model->run(model)) {
        const double scale = r.name.starts_with(k_layer_prefix) ? layers : 1.0;
        c.time_s += scale * r.time_s;
        c.energy_j += scale * r.energy_j();
    }
    // Every rank runs the same ops at the same time: the group's energy is tp x one rank's.
    c.energy_j *= static_cast<double>(m_opt.tp);
    return c;
}

IterationCost DeviceIterationModel::comm_cost(int64_t tokens, int64_t rows) const {
    const double e = wl::dtype_bytes(m_opt.dtype);
    const double act = static_cast<double>(tokens * m_shape.d_model) * e;
    const double logits = static_cast<double>(rows * m_vocab * m_opt.tp) * e;
    const double n = static_cast<double>(m_opt.tp);
    IterationCost c;
    // Per layer two all-reduces; the vocabulary-parallel embedding one (first stage); the logits'
    // all-gather on the last stage.
    const double reduces = 2.0 * static_cast<double>(m_layers) + (m_opt.first_stage ? 1 : 0);
    const CommCost ar = m_opt.comm.all_reduce(act);
    const CommCost ag = rows > 0 && m_opt.last_stage ? m_opt.comm.all_gather(logits) : CommCost{};
    c.time_s = reduces * ar.time_s + ag.time_s;
    // The links' energy, and the devices' static power meanwhile (the compute units wait).
    c.energy_j = reduces * ar.energy_j + ag.energy_j + c.time_s * m_device.static_power_W * n;
    return c;
}

IterationCost DeviceIterationModel::dense(int64_t tokens, int64_t rows) {
    const DecoderShape& s = m_shape;
    Builder m{wl::ModelBuilder(fmt::format("{}-dense-{}-{}", s.name, tokens, rows)), m_opt.dtype};
    using H = Builder::H;
    const wl::NormType nt = s.rms_norm ? wl::NormType::rms : wl::NormType::layer;
    const int64_t kvw = m_kv_heads * s.head_dim(), qw = m_heads * s.head_dim();
    std::optional<H> x;
    if (m_opt.first_stage)
        x = m.op("embed_tokens", wl::EmbeddingAttr{m_vocab, s.d_model, false, false, std::nullopt},
                 {Builder::input({1, tokens})});
    if (m_opt.first_stage && !s.rope) {
        H pos =
            m.op("embed_positions", wl::EmbeddingAttr{s.max_context, s.d_model, false, false, std::nullopt},
                 {Builder::input({1, tokens})});
        x = m.op("embed.add", wl::EltwiseAttr{wl::Eltwise::add}, {*x, pos});
    }
    // One layer; its input is a model input of the same shape (the previous layer's output).
    const std::string p(k_layer_prefix);
    H in = Builder::input({1, tokens, s.d_model});
    H y = m.op(p + "input_norm", wl::NormAttr{nt, 0}, {in});
    H q = m.op(p + "q_proj", wl::LinearAttr{0, qw, s.bias}, {y});
    H k = m.op(p + "k_proj", wl::LinearAttr{0, kvw, s.bias}, {y});
    m.op(p + "v_proj", wl::LinearAttr{0, kvw, s.bias}, {y});
    if (s.rope) {
        m.op(p + "rope_q", wl::EltwiseAttr{wl::Eltwise::rope}, {q});
        m.op(p + "rope_k", wl::EltwiseAttr{wl::Eltwise::rope}, {k});
    }
    // The attention output (the attention ops are simulated apart, per sequence) feeds o_proj.
    H o = m.op(p + "o_proj", wl::LinearAttr{0, s.d_model, s.bias}, {Builder::input({1, tokens, qw})});
    H r = m.op(p + "attn.add", wl::EltwiseAttr{wl::Eltwise::add}, {o, in});
    y = m.op(p + "post_attention_norm", wl::NormAttr{nt, 0}, {r});
    if (s.gated_ffn) {
        H gate = m.op(p + "mlp.gate_proj", wl::LinearAttr{0, m_ffn, false}, {y});
        H up = m.op(p + "mlp.up_proj", wl::LinearAttr{0, m_ffn, false}, {y});
        gate = m.op(p + "mlp.silu", wl::EltwiseAttr{wl::Eltwise::silu}, {gate});
        y = m.op(p + "mlp.mul", wl::EltwiseAttr{wl::Eltwise::mul}, {gate, up});
        y = m.op(p + "mlp.down_proj", wl::LinearAttr{0, s.d_model, false}, {y});
    } else {
        y = m.op(p + "mlp.fc", wl::LinearAttr{0, m_ffn, s.bias}, {y});
        y = m.op(p + "mlp.gelu", wl::EltwiseAttr{wl::Eltwise::gelu}, {y});
        y = m.op(p + "mlp.proj", wl::LinearAttr{0, s.d_model, s.bias}, {y});
    }
    m.op(p + "mlp.add", wl::EltwiseAttr{wl::Eltwise::add}, {y, r});
    // The final norm and the LM head over the rows whose next token is sampled.
    if (rows > 0 && m_opt.last_stage) {
        H last = m.op("final_norm", wl::NormAttr{nt, 0}, {Builder::input({1, rows, s.d_model})});
        m.op("lm_head", wl::LinearAttr{0, m_vocab, false}, {last});
    }
    (void)x;
    IterationCost c = run(std::move(m.b).build(), static_cast<double>(m_layers));
    if (m_opt.tp > 1) c += comm_cost(tokens, rows);
    return c;
}

IterationCost DeviceIterationModel::prefill_attention(int64_t tokens_in, int64_t context_in) {
    const DecoderShape& s = m_shape;
    // FlashAttention-style kernels (Dao et al. 2022; vLLM's prefill path) work on whole 64- or 128-row
    // tiles and mask the rows past the sequence's end, so a ragged length costs its padded tiles. The
    // queries and the cached keys are padded to a multiple of 8 here: the GPU model puts a product on the
    // tensor cores only when its dimensions are multiples of 16 bytes (arch/gpu/gpu_model.h), which a
    // real fused kernel satisfies by that padding; unpadded, a 1,500-token prompt would run its attention
    // on the CUDA cores (~10x slower).
    const int64_t tokens = round_up(tokens_in, 8), context = round_up(context_in, 8);
    Builder m{wl::ModelBuilder(fmt::format("{}-prefill-attn-{}-{}", s.name, tokens, context)), m_opt.dtype};
    wl::AttentionAttr a;
    a.heads = m_heads;
    a.kv_heads = m_kv_heads;
    a.causal = true;
    a.skip_masked = true;  // FlashAttention / vLLM's prefill kernels skip fully masked key blocks
    a.decode = context > 0;
    a.cache_len = context;
    const int64_t kvw = m_kv_heads * s.head_dim(), qw = m_heads * s.head_dim();
    m.op(std::string(k_layer_prefix) + "attn", a,
         {Builder::input({1, tokens, qw}), Builder::input({1, tokens, kvw}),
          Builder::input({1, tokens, kvw})});
    return run(std::move(m.b).build(), static_cast<double>(m_layers));
}

IterationCost DeviceIterationModel::decode_attention(int64_t batch, int64_t context) {
    const DecoderShape& s = m_shape;
    Builder m{wl::ModelBuilder(fmt::format("{}-decode-attn-{}-{}", s.name, batch, context)), m_opt.dtype};
    wl::AttentionAttr a;
    a.heads = m_heads;
    a.kv_heads = m_kv_heads;
    a.causal = true;
    a.decode = true;
    a.cache_len = context;
    const int64_t kvw = m_kv_heads * s.head_dim(), qw = m_heads * s.head_dim();
    m.op(std::string(k_layer_prefix) + "attn", a,
         {Builder::input({batch, 1, qw}), Builder::input({batch, 1, kvw}), Builder::input({batch, 1, kvw})});
    return run(std::move(m.b).build(), static_cast<double>(m_layers));
}

IterationCost DeviceIterationModel::memo(int kind, int64_t a, int64_t b) {
    const auto key = std::make_tuple(kind, a, b);
    if (auto it = m_memo.find(key); it != m_memo.end()) return it->second;
    IterationCost c = kind == 0 ? dense(a, b) : kind == 1 ? prefill_attention(a, b) : decode_attention(a, b);
    m_memo.emplace(key, c);
    return c;
}

namespace {
// The decode sequences' mean cached length, rounded up to `bucket` (1: the exact mean, rounded up to a
// whole token).
int64_t decode_context_of(const std::vector<int64_t>& ctx, int64_t bucket) {
    double sum = 0;
    for (int64_t c : ctx) sum += static_cast<double>(c);
    const auto mean = static_cast<int64_t>(std::ceil(sum / static_cast<double>(ctx.size())));
    return round_up(mean, bucket);
}
}  // namespace

IterationCost DeviceIterationModel::interpolated(int kind, int64_t a, int64_t context) {
    const int64_t q = m_opt.kv_bucket;
    const int64_t lo = context / q * q;
    if (lo == context) return memo(kind, a, context);
    const int64_t hi = lo + q;
    const IterationCost cl = memo(kind, a, lo), ch = memo(kind, a, hi);
    const double f = static_cast<double>(context - lo) / static_cast<double>(q);
    return IterationCost{cl.time_s + f * (ch.time_s - cl.time_s),
                         cl.energy_j + f * (ch.energy_j - cl.energy_j)};
}

IterationCost DeviceIterationModel::cost(const Batch& batch) {
    IterationCost c = memo(0, batch.tokens(), batch.logit_rows());
    for (const PrefillChunk& p : batch.prefills) c += interpolated(1, p.tokens, p.context);
    if (!batch.decode_context.empty())
        c += interpolated(2, static_cast<int64_t>(batch.decode_context.size()),
                          decode_context_of(batch.decode_context, 1));
    return c;
}

IterationCost DeviceIterationModel::cost_exact(const Batch& batch) {
    IterationCost c = dense(batch.tokens(), batch.logit_rows());
    for (const PrefillChunk& p : batch.prefills) c += prefill_attention(p.tokens, p.context);
    if (!batch.decode_context.empty())
        c += decode_attention(static_cast<int64_t>(batch.decode_context.size()),
                              decode_context_of(batch.decode_context, 1));
    return c;
}

}  // namespace mlsim::serving
