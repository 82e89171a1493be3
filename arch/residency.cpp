#include "arch/residency.h"

#include <algorithm>

#include "sim/core/check.h"

namespace mlsim::arch {

namespace {

double slot_bytes(const wl::Shape& shape, wl::DType dtype) {
    return static_cast<double>(wl::numel(shape)) * wl::dtype_bytes(dtype);
}

bool reads_in_place(const LayerNeeds& needs, int slot) {
    const auto s = static_cast<size_t>(slot);
    return s < needs.reads_on_chip.size() && needs.reads_on_chip[s];
}

}  // namespace

ResidencyTracker::ResidencyTracker(const wl::Model& model, double capacity_bytes,
                                   std::vector<LayerNeeds> needs)
    : m_model(model), m_capacity(capacity_bytes), m_needs(std::move(needs)) {
    const size_t n = model.ops().size();
    MLSIM_CHECK(m_needs.size() == n, "residency: one LayerNeeds per layer");
    for (const LayerNeeds& l : m_needs)
        MLSIM_CHECK(l.space_on_chip <= l.space_from_memory && l.space_on_chip >= 0,
                    "residency: a layer needs more space with its inputs on chip than without");
    m_first.resize(n);
    for (size_t i = 0; i < n; ++i) {
        m_first[i] = m_tensors.size();
        const wl::Op& op = model.op(i);
        for (const wl::Shape& out : op.outputs)
            m_tensors.push_back(Tensor{slot_bytes(out, wl::output_dtype(op)), i});
    }
    for (const wl::Edge& e : model.edges()) {
        Tensor& t = tensor(e.from, e.from_slot);
        t.last_use = std::max(t.last_use, e.to);
    }
    m_resident.assign(n, 0.0);
    m_kept_reads.assign(n, 0);
    m_reads_pending.assign(n, false);
}

std::vector<double> ResidencyTracker::decide(size_t layer) {
    MLSIM_CHECK(layer == m_next, "residency: layers are decided in order");
    ++m_next;
    const wl::Op& op = m_model.op(layer);
    std::vector<double> kept(op.outputs.size(), 0.0);
    const std::vector<wl::Edge> out = m_model.out_edges(layer);
    for (size_t s = 0; s < op.outputs.size(); ++s) {
        Tensor& t = tensor(layer, static_cast<int>(s));
        t.decided = true;
        if (!m_needs[layer].writes_on_chip) continue;
        bool consumed = false, in_place = true;
        for (const wl::Edge& e : out) {
            if (e.from_slot != static_cast<int>(s)) continue;
            consumed = true;
            in_place = in_place && reads_in_place(m_needs[e.to], e.to_slot);
        }
        if (!consumed || !in_place || t.bytes <= 0) continue;
        // Every consumer reads the tensor in place: a layer from here to its last use takes its smaller space
        // when it reads a kept tensor in place or is one of these consumers.
        for (const wl::Edge& e : out)
            if (e.from_slot == static_cast<int>(s)) m_reads_pending[e.to] = true;
        bool fits = true;
        for (size_t q = layer; q <= t.last_use && fits; ++q) {
            const LayerNeeds& nq = m_needs[q];
            const bool on_chip = m_kept_reads[q] > 0 || m_reads_pending[q];
            const double space = on_chip ? nq.space_on_chip : nq.space_from_memory;
            fits = m_resident[q] + t.bytes + space <= m_capacity;
        }
        for (const wl::Edge& e : out)
            if (e.from_slot == static_cast<int>(s)) {
                m_reads_pending[e.to] = false;
                if (fits) ++m_kept_reads[e.to];
            }
        if (!fits) continue;
        t.kept = true;
        kept[s] = t.bytes;
        for (size_t q = layer; q <= t.last_use; ++q) m_resident[q] += t.bytes;
    }
    return kept;
}

std::vector<double> ResidencyTracker::inputs_on_chip(size_t layer) const {
    const wl::Op& op = m_model.op(layer);
    std::vector<double> on_chip(op.inputs.size(), 0.0);
    for (const wl::Edge& e : m_model.in_edges(layer)) {
        const Tensor& t = tensor(e.from, e.from_slot);
        MLSIM_CHECK(t.decided, "residency: a layer asked for inputs its producer has not decided");
        if (t.kept)
            on_chip[static_cast<size_t>(e.to_slot)] =
                slot_bytes(op.inputs[static_cast<size_t>(e.to_slot)], op.dtype);
    }
    return on_chip;
}

}  // namespace mlsim::arch
