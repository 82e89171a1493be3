#pragma once
// LLM serving, part 1: what one iteration of a decoder model costs on a system.
//
// A serving iteration runs a batch that mixes prompt tokens being prefilled (whole prompts, or chunks of
// them) with sequences generating one token each (decode). Its cost comes from the device models: the
// iteration is lowered to the ops of one decoder layer over the batch's T tokens (RMS/layer norm, Q/K/V
// projections, rotary embedding, output projection, residual adds, the (gated) MLP), times the model's
// layer count, plus the embedding gather of T tokens, the final norm and the LM head over the R rows
// whose logits are sampled (one per sequence that emits a token this iteration, as vLLM computes logits
// only at each sequence's last position), plus the attention of every sequence over its own KV cache:
//   - a prefill chunk of c tokens with ctx tokens already cached: one attention op (FlashAttention style
//     on the GPU model: causal, masked blocks skipped) over ctx + c keys;
//   - the decode sequences: one batched attention_decode op of B sequences over the cache, memory-bound.
// Ops run one after another (arch/device_model.h), so an iteration's time and energy are the sums of
// its parts; each part is simulated once per distinct shape and memoized (see DeviceIterationModel).
//
// The TP/PP seam: the scheduler (experiment/serving/scheduler.h) asks an IterationModel for the cost of
// a batch and for the KV-cache capacity of one rank. DeviceIterationModel is the single-device one; a
// tensor-parallel plan implements the same interface with the shards' GEMMs (d/TP heads and FFN columns
// per rank) plus the all-reduces of the network model, a pipeline-parallel plan with its stages.
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <tuple>
#include <vector>

#include "arch/device_model.h"
#include "arch/device_spec.h"
#include "workloads/dtype.h"
#include "workloads/model.h"

namespace mlsim::serving {

// A decoder-only transformer's dimensions (no parsing of zoo models: the serving ops are built from
// these). Sources are in decoder.cpp next to each preset.
struct DecoderShape {
    std::string name;
    int64_t layers = 0, d_model = 0, heads = 0, kv_heads = 0, ffn = 0, vocab = 0;
    int64_t max_context = 0;  // the model's context window (tokens)
    bool gated_ffn = true;    // SwiGLU (gate, up, down) vs GELU MLP (fc, proj)
    bool rms_norm = true;     // RMSNorm vs LayerNorm
    bool bias = false;        // biases on the projections (GPT-2)
    bool rope = true;         // rotary embeddings (Llama) vs learned positions (GPT-2)
    bool tied_head = false;   // LM head tied to the token embedding
    std::string source;

    int64_t head_dim() const { return d_model / heads; }
    // Parameters: embeddings (+ positions), layers, final norm, untied LM head.
    double parameters() const;
    double weight_bytes(wl::DType t) const { return parameters() * wl::dtype_bytes(t); }
    // K and V of one token in every layer.
    double kv_bytes_per_token(wl::DType t) const {
        return 2.0 * static_cast<double>(layers * kv_heads * head_dim()) * wl::dtype_bytes(t);
    }
};

// The presets: llama2-7b, llama2-13b, llama2-70b, llama3-8b, llama3-70b, gpt2, gpt2-xl.
std::vector<std::string> decoder_names();
// A UserError at `loc` / `key` naming the nearest preset when `name` is none of them.
DecoderShape decoder_shape(const std::string& name, const cfg::SourceLoc& loc, std::string_view key);

// One prefill piece: `tokens` prompt tokens of one sequence whose first `context` tokens are already
// in the KV cache (0 for a whole prompt; > 0 for a later chunk, or a recompute after preemption).
struct PrefillChunk {
    int64_t tokens = 0, context = 0;
    bool last = true;  // the chunk ends the prompt: the sequence emits a token (its logits are computed)
};

// What one iteration runs.
struct Batch {
    std::vector<PrefillChunk> prefills;
    std::vector<int64_t> decode_context;  // per decode sequence: tokens already in its KV cache

    int64_t tokens() const;
    int64_t logit_rows() const;  // decode sequences + prefills that end their prompt
};

struct IterationCost {
    double time_s = 0, energy_j = 0;  // energy includes the device's static power over time_s
    IterationCost& operator+=(const IterationCost& o) {
        time_s += o.time_s;
        energy_j += o.energy_j;
        return *this;
    }
};

// Time and link energy of one collective call or point-to-point send.
struct CommCost {
    double time_s = 0, energy_j = 0;
};

// The iteration-time interface the scheduler uses (one rank's view; see the header comment).
class IterationModel {
  public:
    virtual ~IterationModel() = default;
    virtual IterationCost cost(const Batch& batch) = 0;
    // Bytes of one rank's memory available to the KV cache (see DeviceIterationModel::kv_capacity).
    virtual double kv_capacity_bytes() const = 0;
    // KV bytes of one token on one rank (a TP plan holds kv_heads / TP heads per rank).
    virtual double kv_bytes_per_token() const = 0;
    // Static power of the ranks together, W: charged over idle time.
    virtual double static_power_W() const = 0;
    // Distinct shapes simulated so far (memo entries).
    virtual int64_t simulated_shapes() const = 0;

    // Pipeline stages (1: the whole model on one device group). With P > 1 the scheduler runs P
    // micro-batches through the stages at once (experiment/serving/pipeline.h states the schedule).
    virtual int64_t stages() const { return 1; }
    // Per stage s: its compute on the batch and the send of the activations to stage s + 1 (none after
    // the last). The single-stage default is cost(batch).
    struct StageCost {
        IterationCost compute;
        CommCost send;
    };
    virtual void stage_costs(const Batch& batch, std::vector<StageCost>& out) {
        out.assign(1, StageCost{cost(batch), {}});
    }
    // Static power of stage s's devices, W.
    virtual double stage_static_power_W(int64_t /*stage*/) const { return static_power_W(); }
};

// Collectives of a tensor-parallel group, for `bytes` in nccl-tests' convention (the whole buffer;
// arch/net/i_network.h): serving.cpp fills them from the network model (INetwork::collective on the
// system's topology, network_comm()); ring_comm() is the closed-form alpha-beta ring kept as the stated
// fallback and cross-check. energy_j is what the links carry (bytes x the links' energy per byte).
struct GroupComm {
    std::function<CommCost(double bytes)> all_reduce, all_gather;
};

struct DeviceModelOptions {
    wl::DType dtype = wl::DType::fp16;
    // Tensor parallelism (Megatron-LM, Shoeybi et al. 2019, arXiv:1909.08053; vLLM's layout): each of `tp`
    // ranks holds heads / tp query heads and kv_heads / tp KV heads (each KV head replicated over
    // tp / kv_heads ranks when tp > kv_heads, as vLLM does), FFN columns ffn / tp, a vocab / tp slice of
    // the embedding and the LM head. Per layer two all-reduces of the T x d activations (after o_proj and
    // after down_proj), one for the embedding, and an all-gather of the R x vocab logits. tp > 1 needs comm.
    int64_t tp = 1;
    GroupComm comm;
    // Pipeline stage (workloads/parallel.h's uniform split; experiment/serving/pipeline.h): the number of
    // decoder layers this device group holds (0: all of them), and whether it holds the token embedding
    // (the first stage) and the final norm and LM head (the last stage). Weights, KV bytes per token and
    // every op count follow.
    int64_t stage_layers = 0;
    bool first_stage = true, last_stage = true;
    // Attention ops are simulated at cached lengths that are multiples of this (1 = every length):
    // the time and energy at another length are interpolated linearly between the two multiples around
    // it. Attention over a cache is linear in its length (every cached K and V row is read once and
    // enters one dot product per query), so the interpolation is exact up to the device model's tile
    // and wave steps; the test bounds the effect on serving results at < 1 %.
    int64_t kv_bucket = 16;
    // Fraction of device memory the server may use (vLLM's gpu_memory_utilization, default 0.9).
    double memory_utilization = 0.9;
    // Tokens the activation workspace is sized for (the scheduler's max batched tokens).
    int64_t max_batched_tokens = 2048;
    int64_t max_batch = 256;
    // When > 0, the KV capacity in bytes instead of the memory budget (tests, what-ifs).
    double kv_capacity_override = 0;
};

// The single-device IterationModel: the ops of the iteration on one DeviceModel.
class DeviceIterationModel final : public IterationModel {
  public:
    DeviceIterationModel(const arch::DeviceSpec& device, DecoderShape shape, DeviceModelOptions opt);

    IterationCost cost(const Batch& batch) override;
    // Without memoization or bucketing: every op of the batch simulated now (tests compare with it).
    IterationCost cost_exact(const Batch& batch);
    // capacity = memory_utilization · main memory − weights − activation workspace, where the
    // workspace holds the largest iteration's live activations: max_batched_tokens · (3·d + 2·ffn)
    // elements of the data type (residual, normed input, attention output, the two FFN intermediates)
    // plus fp32 logits for max_batch rows (max_batch · vocab · 4 B). A UserError when it is not positive
    // (the model does not fit).
    double kv_capacity_bytes() const override { return m_kv_capacity; }
    double kv_bytes_per_token() const override {
        return 2.0 * static_cast<double>(m_layers * m_kv_heads * m_shape.head_dim()) *
               wl::dtype_bytes(m_opt.dtype);
    }
    double static_power_W() const override { return m_device.static_power_W * static_cast<double>(m_opt.tp); }
    // One rank's share of the weights: the sharded matrices / tp, the norms whole.
    double weight_bytes_per_rank() const { return m_weights; }
    int64_t simulated_shapes() const override { return static_cast<int64_t>(m_memo.size()); }
    double workspace_bytes() const { return m_workspace; }
    const DecoderShape& shape() const { return m_shape; }

    // The three parts (public for tests): the dense ops of an iteration of `tokens` tokens and `rows`
    // logit rows (all layers and the head); one prefill chunk's attention (all layers); B decode
    // sequences' attention over `context` cached tokens each (all layers). A decode batch with different
    // cached lengths is simulated at their mean (rounded up to a whole token): the batched kernel reads
    // every sequence's cache once, so its memory time is that of B caches of the mean length.
    IterationCost dense(int64_t tokens, int64_t rows);
    IterationCost prefill_attention(int64_t tokens, int64_t context);
    IterationCost decode_attention(int64_t batch, int64_t context);

  private:
    IterationCost run(const wl::Model& model, double layer_scale_prefix_count);
    IterationCost memo(int kind, int64_t a, int64_t b);
    IterationCost interpolated(int kind, int64_t a, int64_t context);

    arch::DeviceSpec m_device;
    DecoderShape m_shape;
    DeviceModelOptions m_opt;
    std::unique_ptr<arch::DeviceModel> m_model;
    double m_kv_capacity = 0, m_workspace = 0, m_weights = 0;
    int64_t m_heads = 0, m_kv_heads = 0, m_ffn = 0, m_vocab = 0;  // per rank
    int64_t m_layers = 0;                                         // decoder layers on this stage
    IterationCost comm_cost(int64_t tokens, int64_t rows) const;
    std::map<std::tuple<int, int64_t, int64_t>, IterationCost> m_memo;
};

}  // namespace mlsim::serving
