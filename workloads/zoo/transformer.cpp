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

}  // namespace mlsim::wl::zoo
