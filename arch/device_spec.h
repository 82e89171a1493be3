#pragma once
// Device descriptions at roofline level: what a device can compute (peak throughput per data type),
// what it can hold and move (memory levels, innermost first), and what that costs (energy per MAC, per
// byte read/written at each level, static power), plus a fixed per-op dispatch overhead. Systems of
// devices (nodes, links, switches) are in arch/system/system_spec.h.
//
// Contract:
// - A device file has a top-level `device:` map (see configs/README.md).
// - load_device validates against device_schema(): unknown keys (with a
//   suggestion), missing required keys, wrong units, non-positive sizes and bandwidths are UserErrors
//   located at file:line:col and key path. Consistency errors (a peak for an unknown data type, a data
//   type with a peak but no MAC energy, a memory level smaller per instance than the level inside it,
//   static power above TDP, a family section that does not match `family`) are UserErrors located at
//   the offending key, too.
// - Every figure in a DeviceSpec is in SI units (Hz, op/s, bytes, bytes/s, J, J/byte, W, s).
// - Per-family sections (`systolic:`, `gpu:`, `cpu:`, `mcu:`, ...) are declared by their families
//   (arch/family.h), each in its own folder; device_schema() gathers them. A family that reads its
//   section parses it into DeviceSpec::params and may derive the device's peaks from it (a systolic
//   array's peak is rows x cols x arrays x 2 x clock); a declared `peak` must then agree with it.
// - `model` chooses the family whose model runs the device (DeviceSpec::model): when absent, the first
//   family with a model whose section the device gives, else the roofline.
// - A DeviceSpec is a plain value: copying it is cheap enough for sweeps; it owns its resolved tree.
#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "sim/config/node.h"
#include "sim/config/schema.h"

namespace mlsim::arch {

// A family's parsed section (arch/family.h); each family derives its own type from it.
struct FamilyParams {
    virtual ~FamilyParams() = default;
};

// Data types a device may declare a peak for. One MAC counts as 2 ops (FLOP or OP).
const std::vector<std::string>& known_dtypes();  // fp64 fp32 tf32 bf16 fp16 fp8 int16 int8 int4
// Device families: tpu gpu cpu mcu npu.
const std::vector<std::string>& known_families();

struct MemoryLevel {
    std::string name;
    double capacity_bytes = 0;  // per instance (one L1 per SM, one L2 slice per core, ...)
    int64_t instances = 1;      // identical copies of this level on the device
    double bandwidth_Bps = 0;   // total over all instances, toward the compute units
    double latency_s = 0;       // access latency; 0 = not modelled at this level of detail
    double read_energy_J_per_byte = 0;
    double write_energy_J_per_byte = 0;

    double total_capacity_bytes() const { return capacity_bytes * static_cast<double>(instances); }
};

struct DeviceSpec {
    std::string name;
    std::string family;  // one of known_families()
    std::string description;
    std::string source;
    int64_t process_nm = 0;  // technology node; 0 = not given
    double clock_hz = 0;
    std::map<std::string, double> peak_ops_per_s;  // dense, per data type
    std::vector<MemoryLevel> memory;               // innermost first; the last is main memory
    double static_power_W = 0;
    double tdp_W = 0;
    std::map<std::string, double> mac_energy_J;  // energy per MAC per data type
    double op_overhead_s = 0;                    // fixed per-op launch / dispatch overhead
    cfg::Node resolved;  // the validated `device` map, defaults filled in, empty family sections left out
    std::string model;   // the family whose model runs this device (`device.model`, or the default)
    // Parsed family sections, by family name (only for families that read their section).
    std::map<std::string, std::shared_ptr<const FamilyParams>> params;

    // The parsed section of family `family_name` as its own type, or nullptr when the device has none.
    template <class T>
    const T* params_of(std::string_view family_name) const {
        auto it = params.find(std::string(family_name));
        return it == params.end() ? nullptr : dynamic_cast<const T*>(it->second.get());
    }

    const MemoryLevel& main_memory() const;
    // nullptr when there is no level of that name.
    const MemoryLevel* find_memory(std::string_view level_name) const;
    // Throw UserError (located at the device's `peak` / `mac_energy` key) when the device has no figure
    // for that data type; the message lists the data types it supports.
    double peak_for(std::string_view dtype) const;
    double mac_energy_for(std::string_view dtype) const;
    bool supports(std::string_view dtype) const;
    std::vector<std::string> dtypes() const;  // those with a peak, in known_dtypes() order
    // Roofline ridge point against main memory: peak_for(dtype) / main_memory().bandwidth_Bps, in op/byte.
    double ridge_point(std::string_view dtype) const;
    // The per-family section (`systolic`, `gpu`, `cpu`, `mcu`) when the file gives one, else nullptr.
    const cfg::Node* section(std::string_view section_name) const;
};

// Parameter declarations of a `device:` map (also printed by `mlsim run --help`).
const cfg::Schema& device_schema();

// Load a device file (top-level `device:` map): load_file + validate + build.
DeviceSpec load_device(const std::string& path);
// Build from an already validated tree: the `device` map itself, or a document holding it under `device`.
DeviceSpec device_from_node(const cfg::Node& resolved);

// Names (file stems, sorted) of the device presets in `configs_dir`/devices/*.yaml, or in
// `configs_dir`/*.yaml when it has no devices/ folder. Empty when the folder does not exist.
std::vector<std::string> list_device_presets(const std::string& configs_dir);

// The path of preset `name` in the search order of load_system (arch/system/system_spec.h), or a
// UserError (located at `where`) naming the folders searched, the presets found and the nearest name.
std::string find_device_preset(const std::string& name, const std::vector<std::string>& search_dirs,
                               const cfg::SourceLoc& where, std::string_view key_path);

}  // namespace mlsim::arch
