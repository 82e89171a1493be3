// Transformer models of the zoo. Module names follow the Hugging Face implementations so results can be
// matched against published per-layer profiles. Q, K and V are three linear ops (GPT-2's fused c_attn
// has the same parameters and MACs, split so that grouped-query models and MHA look alike).
#include <fmt/format.h>

#include "workloads/zoo/net.h"
#include "workloads/zoo/zoo.h"

namespace mlsim::wl::zoo {

namespace {

struct Block {
    int64_t d = 0, heads = 0, kv_heads = 0, ffn = 0;
    bool bias = true;
    bool causal = true;
    bool decode = false;
    int64_t cache_len = 0;
};

// Self-attention: q, k, v projections, attention, output projection. Returns the projection output.
T self_attention(Net& n, const std::string& p, const T& x, const Block& b, bool rope) {
    const int64_t kv_width = b.d / b.heads * b.kv_heads;
    T q = n.linear(p + "q_proj", x, b.d, b.bias);
    T k = n.linear(p + "k_proj", x, kv_width, b.bias);
    T v = n.linear(p + "v_proj", x, kv_width, b.bias);
    if (rope) {
        q = n.act(p + "rope_q", Eltwise::rope, q);
        k = n.act(p + "rope_k", Eltwise::rope, k);
    }
    AttentionAttr a;
    a.heads = b.heads;
    a.kv_heads = b.kv_heads;
    a.decode = b.decode;
    a.cache_len = b.cache_len;
    a.causal = b.causal;
    T y = n.op(p + "attn", a, {q, k, v});
    return n.linear(p + "o_proj", y, b.d, b.bias);
}

}  // namespace

// BERT-base: J. Devlin et al., "BERT: Pre-training of Deep Bidirectional Transformers for Language
// Understanding", NAACL 2019 (L = 12, H = 768, A = 12, "110M"); Hugging Face bert-base-uncased layout:
// word (30,522), position (512) and token-type (2) embeddings, post-LN encoder layers, GELU, and the
// tanh pooler on the [CLS] token: 109,482,240 parameters. No MLM head.
Model bert_base(const ZooOptions& o) {
    check_options("bert-base", o, true, false);
    const int64_t s = pick("bert-base", "seq", o.seq, 128, 1, 512);
    Net n("bert-base", o.dtype);
    const Shape ids{o.batch, s};
    T we = n.embedding("embeddings.word", Net::input(ids), 30522, 768);
    T pe = n.embedding("embeddings.position", Net::input(ids), 512, 768);
    T te = n.embedding("embeddings.token_type", Net::input(ids), 2, 768);
    T x = n.eltwise("embeddings.add", Eltwise::add, {we, pe, te});
    x = n.norm("embeddings.layernorm", NormType::layer, x);
    Block b{768, 12, 12, 3072, true, false, false, 0};
    for (int l = 0; l < 12; ++l) {
        const std::string p = fmt::format("encoder.{}.", l);
        T y = self_attention(n, p + "attention.", x, b, false);
        x = n.add(p + "attention.add", y, x);
        x = n.norm(p + "attention.layernorm", NormType::layer, x);
        y = n.linear(p + "intermediate", x, b.ffn);
        y = n.act(p + "gelu", Eltwise::gelu, y);
        y = n.linear(p + "output", y, b.d);
        x = n.add(p + "output.add", y, x);
        x = n.norm(p + "output.layernorm", NormType::layer, x);
    }
    T cls = n.op("pooler.cls", SliceAttr{1, 0, 1}, {x});
    cls = n.linear("pooler.dense", cls, 768);
    n.act("pooler.tanh", Eltwise::tanh, cls);
    return std::move(n).build();
}

// GPT-2: A. Radford et al., "Language Models are Unsupervised Multitask Learners", 2019; sizes from the
// released checkpoints (small: 12 layers, d = 768, 12 heads; XL: 48 layers, d = 1600, 25 heads;
// vocabulary 50,257, context 1,024, pre-LN, GELU, LM head tied to the token embedding). Parameters:
// small 124,439,808, XL 1,557,611,200. Prefill computes logits at every prompt position (the usual
// forward pass); decode runs one new token per sequence against a KV cache of `seq` tokens.
Model gpt2(std::string_view name, const ZooOptions& o, bool xl, bool decode) {
    check_options(name, o, true, false);
    const int64_t ctx = 1024;
    const int64_t s =
        decode ? pick(name, "seq", o.seq, ctx - 1, 1, ctx - 1) : pick(name, "seq", o.seq, ctx, 1, ctx);
    const int64_t layers = xl ? 48 : 12;
    Block b;
    b.d = xl ? 1600 : 768;
    b.heads = b.kv_heads = xl ? 25 : 12;
    b.ffn = 4 * b.d;
    b.decode = decode;
    b.cache_len = decode ? s : 0;
    const int64_t tokens = decode ? 1 : s;
    Net n(std::string(name), o.dtype);
    const Shape ids{o.batch, tokens};
    T x = n.embedding("wte", Net::input(ids), 50257, b.d);
    T pos = n.embedding("wpe", Net::input(ids), ctx, b.d);
    x = n.add("embed.add", x, pos);
    for (int64_t l = 0; l < layers; ++l) {
        const std::string p = fmt::format("h.{}.", l);
        T y = n.norm(p + "ln_1", NormType::layer, x);
        y = self_attention(n, p + "attn.", y, b, false);
        x = n.add(p + "attn.add", y, x);
        y = n.norm(p + "ln_2", NormType::layer, x);
        y = n.linear(p + "mlp.c_fc", y, b.ffn);
        y = n.act(p + "mlp.gelu", Eltwise::gelu, y);
        y = n.linear(p + "mlp.c_proj", y, b.d);
        x = n.add(p + "mlp.add", y, x);
    }
    x = n.norm("ln_f", NormType::layer, x);
    n.linear("lm_head", x, 50257, false);
    n.last().tied_to = "wte";
    return std::move(n).build();
}

// Llama-2-7B: H. Touvron et al., "Llama 2: Open Foundation and Fine-Tuned Chat Models",
// arXiv:2307.09288; checkpoint config: 32 layers, d = 4096, 32 heads (no GQA at 7B), SwiGLU FFN of
// 11,008, RMSNorm, rotary embeddings, no biases, vocabulary 32,000, untied LM head, context 4,096:
// 6,738,415,616 parameters. One decode step against a KV cache of `seq` tokens.
Model llama2_7b_decode(const ZooOptions& o) {
    check_options("llama2-7b-decode", o, true, false);
    const int64_t s = pick("llama2-7b-decode", "seq", o.seq, 1024, 1, 4095);
    Block b{4096, 32, 32, 11008, false, true, true, s};
    Net n("llama2-7b-decode", o.dtype);
    T x = n.embedding("embed_tokens", Net::input({o.batch, 1}), 32000, b.d);
    for (int l = 0; l < 32; ++l) {
        const std::string p = fmt::format("layers.{}.", l);
        T y = n.norm(p + "input_layernorm", NormType::rms, x);
        y = self_attention(n, p + "self_attn.", y, b, true);
        x = n.add(p + "self_attn.add", y, x);
        y = n.norm(p + "post_attention_layernorm", NormType::rms, x);
        T gate = n.linear(p + "mlp.gate_proj", y, b.ffn, false);
        T up = n.linear(p + "mlp.up_proj", y, b.ffn, false);
        gate = n.act(p + "mlp.silu", Eltwise::silu, gate);
        y = n.eltwise(p + "mlp.mul", Eltwise::mul, {gate, up});
        y = n.linear(p + "mlp.down_proj", y, b.d, false);
        x = n.add(p + "mlp.add", y, x);
    }
    x = n.norm("norm", NormType::rms, x);
    n.linear("lm_head", x, 32000, false);
    return std::move(n).build();
}

// ---- large decoder-only language models (issue 13) ---------------------------------------------------
// One builder for the GPT-3 and Llama families and Mixtral: pre-norm decoder layers, then a final norm
// and the LM head. Prefill runs `seq` prompt tokens (default: the context length; also the forward pass
// that training lowers); decode runs one new token per sequence against a KV cache of `seq` tokens
// (default 1,024, as llama2-7b-decode).
namespace {

struct DecoderSpec {
    int64_t layers = 0, d = 0, heads = 0, kv_heads = 0, ffn = 0, vocab = 0, ctx = 0;
    bool gpt = false;     // GPT-2/3 style: LayerNorm, GELU MLP, biases, learned positions, tied LM head
    int64_t experts = 0;  // > 0: every FFN is a mixture of `experts` SwiGLU experts, top_k routed
    int64_t top_k = 0;
};

// A SwiGLU MLP (Shazeer 2020, arXiv:2002.05202) as Llama's: down(silu(gate(x)) * up(x)).
T swiglu(Net& n, const std::string& p, const T& x, int64_t d, int64_t ffn, const char* gate_name,
         const char* up_name, const char* down_name) {
    T gate = n.linear(p + gate_name, x, ffn, false);
    T up = n.linear(p + up_name, x, ffn, false);
    gate = n.act(p + "silu", Eltwise::silu, gate);
    T y = n.eltwise(p + "mul", Eltwise::mul, {gate, up});
    return n.linear(p + down_name, y, d, false);
}

// Mixtral's sparse MoE block (Hugging Face MixtralSparseMoeBlock names): router `gate` and softmax,
// one dispatch per expert, the experts' SwiGLU (w1 gate, w3 up, w2 down), and the weighted combine.
T moe_block(Net& n, const std::string& p, const T& x, const DecoderSpec& s) {
    T logits = n.linear(p + "gate", x, s.experts, false);
    T probs = n.op(p + "softmax", SoftmaxAttr{}, {logits});
    std::vector<T> outs{probs};
    for (int64_t e = 0; e < s.experts; ++e) {
        const std::string q = fmt::format("{}experts.{}.", p, e);
        MoeAttr a;
        a.experts = s.experts;
        a.top_k = s.top_k;
        a.expert = e;
        T tok = n.op(q + "dispatch", a, {x, probs});
        outs.push_back(swiglu(n, q, tok, s.d, s.ffn, "w1", "w3", "w2"));
    }
    MoeAttr c;
    c.experts = s.experts;
    c.top_k = s.top_k;
    c.combine = true;
    return n.op(p + "combine", c, outs);
}

Model decoder_lm(std::string_view name, const DecoderSpec& s, const ZooOptions& o, bool decode) {
    check_options(name, o, true, false);
    const int64_t seq =
        decode ? pick(name, "seq", o.seq, 1024, 1, s.ctx - 1) : pick(name, "seq", o.seq, s.ctx, 1, s.ctx);
    Block b{s.d, s.heads, s.kv_heads, s.ffn, s.gpt, true, decode, decode ? seq : 0};
    const int64_t tokens = decode ? 1 : seq;
    Net n(std::string(name), o.dtype);
    const Shape ids{o.batch, tokens};
    const NormType norm = s.gpt ? NormType::layer : NormType::rms;
    T x = n.embedding(s.gpt ? "wte" : "embed_tokens", Net::input(ids), s.vocab, s.d);
    if (s.gpt) x = n.add("embed.add", x, n.embedding("wpe", Net::input(ids), s.ctx, s.d));
    for (int64_t l = 0; l < s.layers; ++l) {
        const std::string p = fmt::format("{}.{}.", s.gpt ? "h" : "layers", l);
        T y = n.norm(p + (s.gpt ? "ln_1" : "input_layernorm"), norm, x);
        y = self_attention(n, p + (s.gpt ? "attn." : "self_attn."), y, b, !s.gpt);
        x = n.add(p + (s.gpt ? "attn.add" : "self_attn.add"), y, x);
        y = n.norm(p + (s.gpt ? "ln_2" : "post_attention_layernorm"), norm, x);
        if (s.gpt) {
            y = n.linear(p + "mlp.c_fc", y, s.ffn);
            y = n.act(p + "mlp.gelu", Eltwise::gelu, y);
            y = n.linear(p + "mlp.c_proj", y, s.d);
            x = n.add(p + "mlp.add", y, x);
        } else if (s.experts > 0) {
            y = moe_block(n, p + "block_sparse_moe.", y, s);
            x = n.add(p + "block_sparse_moe.add", y, x);
        } else {
            y = swiglu(n, p + "mlp.", y, s.d, s.ffn, "gate_proj", "up_proj", "down_proj");
            x = n.add(p + "mlp.add", y, x);
        }
    }
    x = n.norm(s.gpt ? "ln_f" : "norm", norm, x);
    n.linear("lm_head", x, s.vocab, false);
    if (s.gpt) n.last().tied_to = "wte";
    return std::move(n).build();
}

}  // namespace

// GPT-3 175B: T. Brown et al., "Language Models are Few-Shot Learners", NeurIPS 2020, Table 2.1:
// 96 layers, d_model 12,288, 96 heads of 128, context 2,048, FFN 4·d_model; "the same model and
// architecture as GPT-2" (vocabulary 50,257, learned positions, pre-LN, GELU, biases, tied LM head).
// The paper's alternating locally banded sparse attention is counted as dense attention (the upper
// bound; the paper does not give the band width). Parameters: 174,604,259,328 (the paper's "175.0B").
Model gpt3_175b(std::string_view name, const ZooOptions& o, bool decode) {
    DecoderSpec s;
    s.layers = 96;
    s.d = 12288;
    s.heads = s.kv_heads = 96;
    s.ffn = 4 * s.d;
    s.vocab = 50257;
    s.ctx = 2048;
    s.gpt = true;
    return decoder_lm(name, s, o, decode);
}

// Llama 2 70B: H. Touvron et al., "Llama 2: Open Foundation and Fine-Tuned Chat Models",
// arXiv:2307.09288 (Table 1: 70B, context 4k, GQA); checkpoint config: 80 layers, d 8,192, 64 heads
// with 8 KV heads, SwiGLU FFN 28,672, vocabulary 32,000, untied LM head: 68,976,648,192 parameters.
// Llama 3 8B and 70B: Llama Team, AI @ Meta, "The Llama 3 Herd of Models", arXiv:2407.21783, Table 3
// (8B: 32 layers, d 4,096, FFN 14,336, 32 heads / 8 KV heads; 70B: 80 layers, d 8,192, FFN 28,672,
// 64 / 8; vocabulary 128,000 + 256 reserved = 128,256; untied LM head) and the model card (context
// 8,192 for the Llama 3 release): 8,030,261,248 and 70,553,706,496 parameters.
Model llama(std::string_view name, const ZooOptions& o, int version, bool big, bool decode) {
    DecoderSpec s;
    s.layers = big ? 80 : 32;
    s.d = big ? 8192 : 4096;
    s.heads = big ? 64 : 32;
    s.kv_heads = 8;
    s.ffn = big ? 28672 : 14336;
    s.vocab = version == 2 ? 32000 : 128256;
    s.ctx = version == 2 ? 4096 : 8192;
    return decoder_lm(name, s, o, decode);
}

// Mixtral 8x7B: A. Q. Jiang et al., "Mixtral of Experts", arXiv:2401.04088, Table 1: 32 layers, d 4,096,
// 32 heads of 128 with 8 KV heads, 8 SwiGLU experts of hidden 14,336, top-2 routing, vocabulary 32,000,
// fully dense context of 32,768 tokens; "47B" parameters of which "13B" active per token (the Mistral AI
// release: 46.7 B and 12.9 B): 46,702,792,704 stored, 12,879,925,248 used per token.
Model mixtral_8x7b(std::string_view name, const ZooOptions& o, bool decode) {
    DecoderSpec s;
    s.layers = 32;
    s.d = 4096;
    s.heads = 32;
    s.kv_heads = 8;
    s.ffn = 14336;
    s.vocab = 32000;
    s.ctx = 32768;
    s.experts = 8;
    s.top_k = 2;
    return decoder_lm(name, s, o, decode);
}

}  // namespace mlsim::wl::zoo
