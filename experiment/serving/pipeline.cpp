#include "experiment/serving/pipeline.h"

#include <algorithm>
#include <limits>

#include "sim/core/check.h"

namespace mlsim::serving {

std::vector<int64_t> stage_layer_split(int64_t layers, int64_t stages) {
    MLSIM_CHECK(stages >= 1 && stages <= layers, "serving: bad pipeline split");
    std::vector<int64_t> out(static_cast<size_t>(stages), layers / stages);
    for (int64_t s = 0; s < layers % stages; ++s) out[static_cast<size_t>(s)] += 1;
    return out;
}

DeviceModelOptions PipelineIterationModel::stage_options(const DeviceModelOptions& whole,
                                                         const DecoderShape& shape, int64_t stage,
                                                         int64_t stages) {
    DeviceModelOptions o = whole;
    o.stage_layers = stage_layer_split(shape.layers, stages)[static_cast<size_t>(stage)];
    o.first_stage = stage == 0;
    o.last_stage = stage == stages - 1;
    return o;
}

PipelineIterationModel::PipelineIterationModel(const arch::DeviceSpec& device, const DecoderShape& shape,
                                               const std::vector<DeviceModelOptions>& stages,
                                               std::function<CommCost(int64_t, double)> send)
    : m_shape(shape), m_send(std::move(send)) {
    MLSIM_CHECK(!stages.empty() && (stages.size() == 1 || m_send), "serving: a pipeline without sends");
    m_dtype = stages.front().dtype;
    double tokens = std::numeric_limits<double>::infinity();
    for (const DeviceModelOptions& o : stages) {
        m_stages.push_back(std::make_unique<DeviceIterationModel>(device, shape, o));
        const DeviceIterationModel& m = *m_stages.back();
        // Every stage holds the K and V of the same tokens: the stage with the least room decides.
        tokens = std::min(tokens, m.kv_capacity_bytes() / m.kv_bytes_per_token());
        m_kv_bytes_per_token = std::max(m_kv_bytes_per_token, m.kv_bytes_per_token());
    }
    m_kv_capacity = tokens * m_kv_bytes_per_token;
}

double PipelineIterationModel::send_bytes_per_rank(int64_t tokens) const {
    // The hidden states and the residual stream, T x d elements each (see the contract).
    return 2.0 * static_cast<double>(tokens * m_shape.d_model) * wl::dtype_bytes(m_dtype);
}

double PipelineIterationModel::max_weight_bytes_per_rank() const {
    double w = 0;
    for (const auto& m : m_stages) w = std::max(w, m->weight_bytes_per_rank());
    return w;
}

CommCost PipelineIterationModel::send(int64_t stage, int64_t tokens) {
    const auto key = std::make_pair(stage, tokens);
    if (auto it = m_send_memo.find(key); it != m_send_memo.end()) return it->second;
    const CommCost c = m_send(stage, send_bytes_per_rank(tokens));
    m_send_memo.emplace(key, c);
    return c;
}

void PipelineIterationModel::stage_costs(const Batch& batch, std::vector<StageCost>& out) {
    out.resize(m_stages.size());
    const int64_t tokens = batch.tokens();
    for (size_t s = 0; s < m_stages.size(); ++s) {
        out[s].compute = m_stages[s]->cost(batch);
        out[s].send = s + 1 < m_stages.size() ? send(static_cast<int64_t>(s), tokens) : CommCost{};
    }
}

IterationCost PipelineIterationModel::cost(const Batch& batch) {
    std::vector<StageCost> sc;
    stage_costs(batch, sc);
    IterationCost c;
    for (const StageCost& s : sc) {
        c += s.compute;
        c += IterationCost{s.send.time_s, s.send.energy_j};
    }
    return c;
}

double PipelineIterationModel::static_power_W() const {
    double w = 0;
    for (const auto& m : m_stages) w += m->static_power_W();
    return w;
}

double PipelineIterationModel::stage_static_power_W(int64_t stage) const {
    return m_stages[static_cast<size_t>(stage)]->static_power_W();
}

int64_t PipelineIterationModel::simulated_shapes() const {
    int64_t n = 0;
    for (const auto& m : m_stages) n += m->simulated_shapes();
    return n;
}

}  // namespace mlsim::serving
