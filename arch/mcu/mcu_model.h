#pragma once
// The detailed microcontroller model: one in-order core runs the network op by op through an embedded
// runtime's int8 kernels (CMSIS-NN style), weights in flash, activations in an SRAM tensor arena.
//
// Lowering (per op, after fusion):
//  * Fusion as a TFLite-for-microcontrollers graph is built: a batch-norm right after a convolution or
//    linear layer is folded into its weights and bias, and a ReLU / ReLU6 that is the sole consumer of
//    one is its requantisation clamp: no kernel of their own, their tensor aliases the producer's.
//    Reshape / flatten are views. Such layers report the roofline floor of their own bytes on chip
//    (a few cycles), never zero (the floor applies to every layer).
//  * convolution (not depthwise): im2col + matrix multiply (arm_convolve_s8 shape): per output pixel the
//    K = Cin·Kh·Kw inputs are copied into the im2col buffer (skipped for 1x1 stride-1 convolutions,
//    which multiply the activations in place), then an inner loop of `k_block` K values over a block of
//    output channels × output pixels; linear layers use the vector-matrix kernel.
//  * depthwise convolution: per channel group and tap (arm_depthwise_conv_s8_opt shape).
//  * every GEMM-like kernel adds per output element the requantisation (bias, fixed-point multiply,
//    shift, offset, clamp, store).
//  * pooling, element-wise, softmax and standalone norms: cycles per element of the kernel.
//  * per operator: the runtime's dispatch cycles (interpreter loop, tensor look-ups, kernel prologue).
// Cycle figures are instruction counts of the kernels' inner loops over the core's issue width, as
// written beside each constant in mcu_model.cpp (estimates from the kernels' structure and the TRMs'
// instruction timings, not fitted to any benchmark).
// Flash: weights are read from flash through the flash cache. A layer whose weights fit the cache
// misses once per line; one whose weights do not re-reads them from flash once per pass of the kernel:
// per pair of output pixels (im2col GEMM, DSP), per four (Helium), per pixel (depthwise, reference
// kernels), per row of the batch (fully connected). An int8 1x1 convolution on a DSP core keeps two weight
// rows at a time and runs them over every pixel: it reads its weights once when those rows fit the cache,
// and its input once per pair of output channels. Each miss stalls the in-order core for
// `flash_wait_states` cycles.
// The layer's time is at least the flash time of its weights at the flash bandwidth (the roofline's
// main memory) and its MACs at the SIMD peak: time = max(kernel + stalls, roofline floor).
// Tensor arena: lifetimes of every activation tensor from the execution order (an aliased tensor lives
// until its aliases' last reader), plus each kernel's scratch (im2col) buffer for its own op; offsets by
// greedy-by-size (largest first, lowest offset free over its lifetime), as TFLM's planner does. The run
// is refused (a UserError at the `mcu:` section) when arena + the runtime's persistent records +
// runtime_ram > SRAM (the bank it goes to) or weights > flash (and no external memory holds them).
// Energy: MACs × MAC energy + flash bytes × flash read energy + SRAM bytes × SRAM energy + active power
// (static_power) × time.
// Bytes: bytes_read / bytes_written are flash traffic (the device's main memory is flash); activations
// stay in SRAM (input_bytes_on_chip / output_bytes_kept = all of them).
#include <cstdint>
#include <string>
#include <vector>

#include "arch/device_model.h"
#include "arch/mcu/mcu_spec.h"

namespace mlsim::arch::mcu {

struct ArenaTensor {
    std::string name;  // the op that produces it ("input" for the model's inputs, "<op>.scratch")
    double bytes = 0;
    int64_t first = 0, last = 0;  // execution steps (op indices) it is live over, inclusive
    double offset = 0;
};

struct ArenaPlan {
    std::vector<ArenaTensor> tensors;
    double peak_bytes = 0;        // the arena: max over tensors of offset + bytes
    double largest_op_bytes = 0;  // the largest single op's inputs + outputs + scratch (a lower bound)
    double naive_bytes = 0;       // the estimate used before: the largest op's inputs + outputs
    // The runtime's persistent records, which TFLite Micro keeps in the same arena (its "tail"):
    // see plan_arena. Placement counts peak_bytes + persistent_bytes + runtime_ram.
    double persistent_bytes = 0;
};

// Plans the tensor arena of a model on this MCU (its kernels' scratch sizes depend on the runtime).
ArenaPlan plan_arena(const wl::Model& model, const McuSpec& mcu);

// Where the arena and the weights go. The weights: the flash when they fit, else the external memory.
// The arena (+ persistent records + runtime_ram): the bank `arena_bank` names; under auto the bank with the
// fewest wait states that holds it (a TCM first on a tie, then the listed order; on a device with an NPU not
// a TCM, which the NPU cannot read), else the external memory.
struct Placement {
    std::string arena_where;        // a bank's name or the external memory's
    int64_t arena_wait_states = 0;  // of that bank (external: 0, its latency counts instead)
    bool arena_external = false, weights_external = false;
};
// Throws a UserError located at the `mcu:` section, with both numbers, when something does not fit.
Placement place(const ArenaPlan& arena, double weight_bytes, const McuSpec& mcu, const std::string& model,
                const std::string& device);

// Whether the Ethos-U55 runs this op (Arm's Vela compiler 3.6, SUPPORTED_OPS.md: int8 / int16
// operators with their constraints); the others run on the host core.
bool npu_runs(const wl::Op& op);

class McuModel final : public DeviceModel {
  public:
    explicit McuModel(DeviceSpec spec);  // the device must have an `mcu:` section
    std::string_view model_name() const override { return "mcu"; }
    std::vector<LayerResult> run(const wl::Model& model) override;
    const McuSpec& mcu() const { return m_mcu; }

  private:
    DeviceSpec m_spec;
    McuSpec m_mcu;
};

}  // namespace mlsim::arch::mcu
