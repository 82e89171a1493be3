#pragma once
// Energy of a layer on the systolic device: action counts × the energy table of the device config,
// plus static power × time (added by the model). Retuning energies never touches the timing code.
//
// Actions and their entries in the table:
//   MACs performed by the arrays            × mac_energy[dtype]
//   vector-unit operations                  × mac_energy[dtype] / 2 (one op costs half a MAC, the
//                                             roofline's FLOP convention; the config has no separate entry)
//   bytes read / written at each buffer     × that buffer's read_energy / write_energy
//   bytes read / written at main memory     × the last memory level's read_energy / write_energy
//   operand words moved between PEs         × systolic.pe_hop_energy
// Promises: every part is >= 0 when the counts are (the config forbids negative energies).
#include <string_view>

#include "arch/device_model.h"
#include "arch/device_spec.h"
#include "arch/systolic/systolic_spec.h"

namespace mlsim::arch::systolic {

struct ActionCounts {
    double macs = 0;
    double vector_ops = 0;
    double pe_hops = 0;
    LevelAccesses access;
};

struct EnergyBreakdown {
    double mac = 0, vector = 0, sram = 0, dram = 0, noc = 0;
    double ifmap = 0, filter = 0, ofmap = 0;  // the parts of sram, per operand buffer
    double compute() const { return mac + vector; }
    double memory() const { return sram + dram + noc; }
};

EnergyBreakdown energy_of(const DeviceSpec& device, std::string_view dtype, const ActionCounts& actions);

}  // namespace mlsim::arch::systolic
