#pragma once
// The roofline device: the floor every detailed model must respect.
// For each op:  time = max(FLOPs / peak(dtype), bytes / main-memory bandwidth) + per-op overhead.
// Reuse assumption that decides the bytes: within one op, every operand is fetched from main memory
// exactly once (perfect on-chip reuse: weights + inputs read once, outputs written once); between ops
// nothing is kept on chip (each op's inputs come back from main memory). This is the least traffic a
// layer-at-a-time execution can have, so the bound is a true lower bound on a detailed model's time
// only when that model also runs layer by layer without fusion.
// Time parts: the larger of the two terms is compute or memory time, the overhead is overhead; the
// layer's bound is the largest part (so an op dominated by launch overhead is "overhead"-bound).
// Energy = FLOPs × (MAC energy of the dtype / 2) + bytes × per-byte energy of main memory
//          + static power × time. One MAC counts as two FLOPs.
#include "arch/device_model.h"

namespace mlsim::arch {

struct RooflineBound {
    double compute_s = 0;  // FLOPs / peak
    double memory_s = 0;   // bytes / bandwidth
    double bound_s() const { return compute_s > memory_s ? compute_s : memory_s; }
    // An op with no arithmetic (a gather, a copy) is memory-bound even when it moves nothing.
    bool compute_bound() const { return compute_s > 0 && compute_s >= memory_s; }
};

// The bound of one op on a device (no overhead). Throws UserError if the device lacks the op's dtype.
RooflineBound roofline_bound(const DeviceSpec& spec, const wl::Op& op);

class RooflineModel final : public DeviceModel {
public:
    explicit RooflineModel(DeviceSpec spec);
    std::string_view model_name() const override { return "roofline"; }
    std::vector<LayerResult> run(const wl::Model& model) override;

private:
    DeviceSpec m_spec;
};

}  // namespace mlsim::arch
