#include "arch/systolic/energy.h"

#include "sim/core/check.h"

namespace mlsim::arch::systolic {

namespace {

double buffer_energy(const BufferSpec& b, const AccessBytes& a) {
    return a.read * b.read_energy_J_per_byte + a.write * b.write_energy_J_per_byte;
}

}  // namespace

EnergyBreakdown energy_of(const DeviceSpec& device, std::string_view dtype, const ActionCounts& actions) {
    const SystolicSpec* sys = spec_of(device);
    MLSIM_CHECK(sys != nullptr, "systolic energy of a device without a systolic section");
    const SystolicSpec& s = *sys;
    const MemoryLevel& mem = device.main_memory();
    const double mac = device.mac_energy_for(dtype);
    EnergyBreakdown e;
    e.mac = actions.macs * mac;
    e.vector = actions.vector_ops * mac / 2;
    e.ifmap = buffer_energy(s.ifmap, actions.access.ifmap);
    e.filter = buffer_energy(s.filter, actions.access.filter);
    e.ofmap = buffer_energy(s.ofmap, actions.access.ofmap);
    e.sram = e.ifmap + e.filter + e.ofmap;
    e.dram = actions.access.dram.read * mem.read_energy_J_per_byte +
             actions.access.dram.write * mem.write_energy_J_per_byte;
    e.noc = actions.pe_hops * s.pe_hop_energy_J;
    MLSIM_CHECK(e.mac >= 0 && e.vector >= 0 && e.sram >= 0 && e.dram >= 0 && e.noc >= 0, "negative energy");
    return e;
}

}  // namespace mlsim::arch::systolic
