#pragma once
// The roofline device: the floor every detailed model must respect.
// For each op:  time = max(FLOPs / peak(dtype), bytes / main-memory bandwidth) + per-op overhead.
// Reuse assumption that decides the bytes: within one op, every operand is fetched from main memory
// exactly once (perfect on-chip reuse: weights + inputs read once, outputs written once); between ops
// nothing is kept on chip (each op's inputs come back from main memory). This is the least traffic a
// layer-at-a-time execution can have, so the bound is a true lower bound on a detailed model's time
// only when that model also runs layer by layer without fusion and keeps nothing on chip between
// layers.
// A detailed model that keeps activations on chip between layers (arch/residency.h) can move fewer
// main-memory bytes than that: a layer that finds some inputs on chip does not read them, one whose
// output stays does not write it. Such a layer is held to the roofline bound over the bytes it still
// must move (OnChip: all weights, the inputs not on chip, the outputs not kept), never below the
// compute bound; with nothing on chip this is the bound above. The roofline device itself keeps its
// no-reuse-between-ops assumption.
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

// Bytes of an op's compulsory traffic that a detailed model found on chip or left there.
struct OnChip {
    double input_bytes = 0;   // inputs read from an on-chip buffer (at most the op's input bytes)
    double output_bytes = 0;  // outputs kept in it (at most the op's output bytes)
};
// The bound of an op whose inputs and outputs are partly on chip: memory_s over the weights, the
// inputs not on chip and the outputs not kept.
RooflineBound roofline_bound(const DeviceSpec& spec, const wl::Op& op, const OnChip& on_chip);

class RooflineModel final : public DeviceModel {
  public:
    explicit RooflineModel(DeviceSpec spec);
    std::string_view model_name() const override { return "roofline"; }
    std::vector<LayerResult> run(const wl::Model& model) override;

  private:
    DeviceSpec m_spec;
};

}  // namespace mlsim::arch
