#pragma once
// LLM serving over pipeline-parallel stages (issue 14): the IterationModel of P stages, each a
// tensor-parallel group of T devices running its share of the decoder layers.
//
// Contract:
// - Split: workloads/parallel.h's uniform split: stage s holds floor(L/P) consecutive layers, one more
//   for the first L mod P stages; the token embedding is on stage 0, the final norm and the LM head on
//   stage P-1. Devices: rank = t + T·s (Megatron-LM's order, as workloads/parallel.h: the tensor ranks
//   of a stage adjacent, stages outermost), so stage s runs on devices [s·T, (s+1)·T) of the group.
// - Each stage is a DeviceIterationModel over its layers (its own memo, its own TP collectives).
// - Between stage s and s+1 every one of the T tensor ranks sends the micro-batch's hidden states and
//   the residual stream to its peer of the next stage (vLLM's pipeline stages pass both,
//   IntermediateTensors{"hidden_states", "residual"} in vllm/model_executor/models/llama.py): 2·T_tok·d
//   elements per rank; the T sends start together and the send ends when the last arrives. Its time is
//   the network model's (INetwork::transfer on an idle network, memoized by size); contention between
//   these sends and the TP collectives of other micro-batches is not modelled.
// - KV cache: each stage holds its own layers' K and V of every sequence it serves; the scheduler's
//   block count is the smallest over the stages (vLLM takes the minimum over its workers), stated in
//   bytes of the stage with the most layers (kv_bytes_per_token / kv_capacity_bytes below).
// - cost(batch) is one micro-batch through every stage, one after another, with the P-1 sends: the
//   latency of one iteration of one micro-batch (what a request waits for its next token).
//
// The schedule (experiment/serving/scheduler.cpp runs it): vLLM's pipeline-parallel serving (v0.6,
// "virtual engines"): P schedulers, each with its own waiting queue, running batch and 1/P of the KV
// blocks (vllm/core/scheduler.py: num_gpu_blocks //= pipeline_parallel_size); a new request joins the
// scheduler with the fewest unfinished requests (vllm/engine/llm_engine.py); each scheduler forms its
// next micro-batch when its previous one has left the last stage (its tokens are sampled), and the
// micro-batches of the P schedulers follow each other through the stages, each stage working on one
// micro-batch at a time in the order they arrive (first come, first served). With P balanced
// schedulers every stage is busy in steady state (no bubble); the bubbles come from imbalance between
// the stages (layers, embedding, head) and from the sends. The sampled tokens' return from the last
// stage to the first (a few bytes per sequence through the host) is not modelled.
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <vector>

#include "experiment/serving/decoder.h"

namespace mlsim::serving {

// Layers of each of `stages` stages for a model of `layers` layers (the uniform split above).
std::vector<int64_t> stage_layer_split(int64_t layers, int64_t stages);

class PipelineIterationModel final : public IterationModel {
  public:
    // One DeviceModelOptions per stage (tp, comm, stage_layers and first/last set by the caller; see
    // stage_options), and the send between consecutive stages: `send(s, bytes_per_rank)` for the hop
    // from stage s to s + 1.
    PipelineIterationModel(const arch::DeviceSpec& device, const DecoderShape& shape,
                           const std::vector<DeviceModelOptions>& stages,
                           std::function<CommCost(int64_t stage, double bytes_per_rank)> send);

    // The options of stage s of `stages` from the whole model's (layers and first/last filled in).
    static DeviceModelOptions stage_options(const DeviceModelOptions& whole, const DecoderShape& shape,
                                            int64_t stage, int64_t stages);

    IterationCost cost(const Batch& batch) override;
    double kv_capacity_bytes() const override { return m_kv_capacity; }
    double kv_bytes_per_token() const override { return m_kv_bytes_per_token; }
    double static_power_W() const override;
    int64_t simulated_shapes() const override;
    int64_t stages() const override { return static_cast<int64_t>(m_stages.size()); }
    void stage_costs(const Batch& batch, std::vector<StageCost>& out) override;
    double stage_static_power_W(int64_t stage) const override;

    DeviceIterationModel& stage(int64_t s) { return *m_stages[static_cast<size_t>(s)]; }
    // Bytes one tensor rank sends to the next stage for a micro-batch of `tokens` tokens.
    double send_bytes_per_rank(int64_t tokens) const;
    // Weights of the most loaded stage's rank, bytes.
    double max_weight_bytes_per_rank() const;
    double workspace_bytes() const { return m_stages.front()->workspace_bytes(); }

  private:
    CommCost send(int64_t stage, int64_t tokens);

    DecoderShape m_shape;
    wl::DType m_dtype;
    std::vector<std::unique_ptr<DeviceIterationModel>> m_stages;
    std::function<CommCost(int64_t, double)> m_send;
    std::map<std::pair<int64_t, int64_t>, CommCost> m_send_memo;
    double m_kv_capacity = 0, m_kv_bytes_per_token = 0;
};

}  // namespace mlsim::serving
