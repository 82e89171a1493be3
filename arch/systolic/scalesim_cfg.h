#pragma once
// SCALE-Sim architecture configs (.cfg, INI style) read as mlsim systems, so that
// `mlsim run --system google.cfg --model topology.csv` takes SCALE-Sim's own inputs.
//
// Contract:
// - Sections and keys as SCALE-Sim v2 writes them ([general] run_name; [architecture_presets]
//   ArrayHeight, ArrayWidth, IfmapSramSzkB, FilterSramSzkB, OfmapSramSzkB, IfmapOffset, FilterOffset,
//   OfmapOffset, Dataflow, Bandwidth, MemoryBanks, ReadRequestBuffer, WriteRequestBuffer;
//   [run_presets] InterfaceBandwidth CALC|USER). Separators ':' or '='; '#' and ';' start comments.
//   An unknown section or key, a missing required key, a non-numeric or non-positive size is a
//   UserError at file:line:col with the nearest valid key.
// - The translation (each value keeps the .cfg line it came from, so later validation errors point there):
//     ArrayHeight x ArrayWidth -> systolic.rows x cols, one array; Dataflow -> systolic.dataflow;
//     *SramSzkB -> systolic.buffers.{ifmap,filter,ofmap}.capacity in KiB (SCALE-Sim multiplies kB by 1024),
//     double-buffered as SCALE-Sim's scratchpads are; SRAM bandwidth = one word per edge PE per cycle.
//     SCALE-Sim has no clock and no data type: the clock is taken as 1 GHz (est.), words are 1 byte
//     (int8), so cycles map to ns. Bandwidth (words/cycle) -> DRAM bandwidth (1 B x 1 GHz); in CALC
//     mode SCALE-Sim sizes the interface so the array never stalls: there the DRAM bandwidth is set to
//     what the array can consume (ifmap rows + filter cols + ofmap cols words per cycle). The
//     convention stays mlsim's faithful one unless --convention scalesim asks for SCALE-Sim's count.
// - Energies (est.): on chip, Horowitz 45 nm figures; main memory by its bandwidth, LPDDR4 (8 pJ/bit) up
//   to 204.8 GB/s, the most one LPDDR interface carries, HBM2 (3.9 pJ/bit) above. TDP = every part at
//   its configured peak rate (MACs, vector unit, buffer reads and writes, main memory, three PE links
//   a PE), so a run averaging more means an energy or a rate is wrong. configs/devices/scalesim-google.yaml
//   and scalesim-scale.yaml are what google.cfg and scale.cfg translate into (scalesim-eyeriss.yaml takes
//   the tables Accelergy uses for its Eyeriss example instead, its TDP derived the same way).
#include <string>

#include "arch/device_spec.h"
#include "arch/system/system_spec.h"
#include "sim/config/node.h"

namespace mlsim::arch::systolic {

// The `device:` document (a map with a single `device` key) equivalent to a SCALE-Sim .cfg, unvalidated.
cfg::Node scalesim_cfg_document(const std::string& path);

// The system: one device built from the .cfg, count 1.
SystemSpec load_scalesim_cfg(const std::string& path);

}  // namespace mlsim::arch::systolic
