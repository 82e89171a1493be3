#pragma once
// Which activations stay in an on-chip buffer between layers: a tracker any device family with such a
// buffer drives (the systolic family's ifmap buffer, TPU v1's unified buffer; a GPU's L2 or shared
// memory, an MCU's tensor arena would do the same).
//
// A tensor is one output slot of an op; layers run one after another in the model's topological order
// (arch/device_model.h). Before layer i runs, decide(i) settles, once and for all, whether each of its
// outputs stays in the buffer ("kept") until its last consumer has run, or goes to main memory. It
// stays when
//   - its producer can leave it there (LayerNeeds::writes_on_chip), some later layer consumes it (a
//     model output goes to main memory), every consumer can read it in place
//     (LayerNeeds::reads_on_chip; otherwise it must be written out anyway), and
//   - at every layer from i to its last consumer it fits, together with every tensor kept earlier that
//     is still live there, and with that layer's own working space in the buffer (LayerNeeds: the
//     space its tiles take when its inputs come from main memory, or when one of them is on chip).
// Decisions are greedy in layer order and never revisited: a tensor kept earlier is never evicted for
// a later one. A kept tensor's consumers read it from the buffer; everything else moves through main
// memory as before. Model inputs come from main memory.
//
// Promises: at every layer, the kept tensors live there plus that layer's working space fit the
// capacity (so a family that plans the layer's tiles within capacity − resident_bytes(i) finds room
// for the plan it reported); a model with one layer keeps nothing; results are deterministic.
// Assumes: decide() is called for layers 0, 1, 2, ... in order; inputs() and resident_bytes() of layer
// i after decide(i).
#include <cstddef>
#include <functional>
#include <vector>

#include "workloads/model.h"

namespace mlsim::arch {

// What a layer needs of the buffer, as its family sees it.
struct LayerNeeds {
    double space_from_memory = 0;  // bytes its own tiles take when its inputs come from main memory
    double space_on_chip = 0;      // ... when an input it reads in place is on chip
    // Input slots it can read from the buffer in place (empty: none).
    std::vector<bool> reads_on_chip;
    // Whether it can leave its outputs in the buffer (write them there instead of to main memory).
    bool writes_on_chip = true;
};

class ResidencyTracker {
  public:
    ResidencyTracker(const wl::Model& model, double capacity_bytes, std::vector<LayerNeeds> needs);

    // Decides which outputs of `layer` stay on chip; returns the bytes kept per output slot.
    std::vector<double> decide(size_t layer);

    // Bytes of each input slot of `layer` it finds on chip (0: from main memory), at the layer's own
    // data type.
    std::vector<double> inputs_on_chip(size_t layer) const;
    // Bytes kept in the buffer while `layer` runs: the kept tensors live there, its own kept outputs
    // and on-chip inputs included.
    double resident_bytes(size_t layer) const { return m_resident.at(layer); }
    double capacity() const { return m_capacity; }

  private:
    struct Tensor {
        double bytes = 0;
        size_t last_use = 0;  // index of its last consumer
        bool kept = false;
        bool decided = false;
    };
    Tensor& tensor(size_t op, int slot) { return m_tensors[m_first[op] + static_cast<size_t>(slot)]; }
    const Tensor& tensor(size_t op, int slot) const {
        return m_tensors[m_first[op] + static_cast<size_t>(slot)];
    }

    const wl::Model& m_model;
    double m_capacity;
    std::vector<LayerNeeds> m_needs;
    std::vector<size_t> m_first;     // index of op i's first output tensor
    std::vector<Tensor> m_tensors;   // all output slots of all ops
    std::vector<double> m_resident;  // per layer: bytes of kept tensors live there
    size_t m_next = 0;               // the next layer decide() expects
    // Per layer: how many of its in-place inputs are kept tensors (it then takes its smaller space; a count,
    // not a walk over its inputs, so that a concat of 10,000 inputs is not visited once per input), and
    // whether it consumes the tensor being decided.
    std::vector<size_t> m_kept_reads;
    std::vector<bool> m_reads_pending;
};

}  // namespace mlsim::arch
