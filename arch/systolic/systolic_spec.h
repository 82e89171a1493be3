#pragma once
// The `device.systolic` section of a device config, parsed: the array organisation, the on-chip
// buffer per operand, the tiling policy, the vector unit, and the per-action energies the section adds
// to the device's table. arch/systolic/systolic_family.cpp declares the keys and fills this struct
// (kept in DeviceSpec::params); the systolic device model (systolic_model.h) is its only reader.
//
// Promises: every figure is in SI units (bytes, bytes/s, J, J/byte, op/s). A SystolicSpec that came
// out of device_from_node() passed the consistency checks documented in configs/README.md: each
// data type's peak equals rows·cols·arrays·2·clock / p for a whole number of passes p ≥ 1 (p = 1 at
// full rate, p = 4 for TPU v1's 16-bit operands), never below that value and at most 1 % above it,
// so no layer on the arrays can beat the roofline; the model caps the vector unit at the op's peak
// for the same reason.
// Assumes: nothing; it is a plain value.
#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <string_view>

#include "arch/device_spec.h"
#include "arch/systolic/dataflow.h"

namespace mlsim::arch::systolic {

// tile: closed-form fold timing per tile (fold_model.h); cycle: every tile's folds stepped on the PE
// grid with real values (pe_grid.h). Both drive the same memory pipeline and give identical numbers.
enum class Fidelity { tile, cycle };
// faithful: mlsim's own timing; scalesim: cycles = SCALE-Sim v2's CALC-mode count (no memory stalls).
enum class Convention { faithful, scalesim };
// search: pick the tiling with the fewest estimated cycles; fixed: use `tile` from the config.
enum class Tiling { search, fixed };

std::string_view to_string(Fidelity f);
std::string_view to_string(Convention c);
std::string_view to_string(Tiling t);
std::optional<Fidelity> parse_fidelity(std::string_view name);      // "tile" | "cycle"
std::optional<Convention> parse_convention(std::string_view name);  // "faithful" | "scalesim"

// Bytes moved at one storage level, by direction.
struct AccessBytes {
    double read = 0, write = 0;
};

// A layer's traffic per level: `ifmap`, `filter`, `ofmap` are the three operand buffers; writes into a
// buffer are fills from main memory (and, for ofmap, outputs and partial sums written by the array),
// reads are words crossing the array edge (and, for ofmap, drains to main memory); `dram` is the
// main-memory interface.
struct LevelAccesses {
    AccessBytes ifmap, filter, ofmap, dram;
};

// One operand's on-chip SRAM. With double buffering the capacity is split into two halves: one is
// filled (or drained) while the array works on the other.
struct BufferSpec {
    std::string name;           // e.g. unified_buffer, weight_fifo, accumulators
    double capacity_bytes = 0;  // the whole buffer (both halves when double-buffered)
    double bandwidth_Bps = 0;   // toward the array, per direction (reads and writes each)
    bool double_buffered = true;
    double read_energy_J_per_byte = 0;
    double write_energy_J_per_byte = 0;

    // Bytes one tile may occupy.
    double tile_capacity_bytes() const { return double_buffered ? capacity_bytes / 2 : capacity_bytes; }
};

struct SystolicSpec : FamilyParams {
    int64_t rows = 0, cols = 0;  // PEs of one array
    int64_t arrays = 1;          // arrays sharing the buffers and main memory
    Dataflow dataflow = Dataflow::ws;
    Fidelity fidelity = Fidelity::tile;
    Convention convention = Convention::faithful;
    BufferSpec ifmap;   // A: input activations (im2col rows for convolutions)
    BufferSpec filter;  // B: weights
    BufferSpec ofmap;   // C: outputs and partial sums
    Tiling tiling = Tiling::search;
    int64_t tile_m = 0, tile_n = 0, tile_k = 0;  // fixed tiling; 0 = the whole dimension
    double vector_throughput_ops = 0;            // op/s of the vector unit (given or the default)
    // Bits of one partial sum in the ofmap buffer (TPU v1: 32-bit accumulators for 8-bit operands);
    // 0: the layer's word size. Partial sums are stored, moved and spilled at this width, never
    // narrower than the layer's word; finished outputs leave the ofmap buffer at the layer's word size.
    int64_t accumulator_bits = 0;
    // Activations stay in the ifmap buffer between layers when they fit (arch/residency.h; faithful
    // convention only: SCALE-Sim runs every layer from main memory).
    bool keep_activations = true;
    double pe_hop_energy_J = 0;  // one operand word moved to a neighbouring PE
    // Per data type with a peak: passes of the array per MAC (peak = rows·cols·arrays·2·clock / passes).
    std::map<std::string, int64_t> passes;

    int64_t passes_for(std::string_view dtype) const;  // 1 when the data type is not listed
    // Bytes of one partial sum for a layer whose words are `word_bytes` long.
    double accumulator_bytes(double word_bytes) const {
        const double acc = static_cast<double>(accumulator_bits) / 8;
        return acc > word_bytes ? acc : word_bytes;
    }

    ArrayShape shape() const { return ArrayShape{rows, cols}; }
    int64_t pes() const { return rows * cols * arrays; }
};

// The parsed `systolic:` section of a device, or nullptr when it has none.
inline const SystolicSpec* spec_of(const DeviceSpec& device) {
    return device.params_of<SystolicSpec>("systolic");
}

}  // namespace mlsim::arch::systolic
