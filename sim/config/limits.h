#pragma once
// Every limit mlsim puts on its input and on the work one command may start, in one place.
// Contract: input beyond a limit is a located cfg::UserError (exit 2) that names the limit, never a
// crash, a hang or a wrong number. configs/README.md ("Limits") and README.md state the same figures;
// change both with the constants. The limits exist so that hostile or mistaken input (a FIFO or
// /dev/zero as a config, a YAML "billion laughs", a 2^32 x 2^32 layer, a clock of 1e30 Hz, a sweep of
// 10^7 points) fails fast with a clear message. They are far above anything a real study needs, except
// the two work limits, which a user may raise from the command line or a sweep file.
#include <cstddef>
#include <cstdint>

#include "sim/config/units.h"

namespace mlsim::limits {

// ---- input files (YAML configs, models, sweeps, SCALE-Sim .cfg and .csv files)
// Only regular files are read (not a directory, FIFO, socket or device such as /dev/zero).
inline constexpr std::uintmax_t max_file_bytes = 16u << 20;  // 16 MiB
// Nodes of one YAML document after alias expansion: an alias counts every node it copies, so a
// "billion laughs" document stops here, before it is expanded.
inline constexpr std::size_t max_yaml_nodes = 1'000'000;
// Text in the keys and values of one document after alias expansion (an alias of a long string
// copies it).
inline constexpr std::size_t max_yaml_bytes = std::size_t{64} << 20;  // 64 MiB
// Maps and lists nested in one another (real configs nest about 6 deep).
inline constexpr std::size_t max_yaml_depth = 64;
// Files in one `extends:` chain (a file, the file it extends, and so on).
inline constexpr std::size_t max_extends_depth = 32;

// ---- workloads
// Elements of any one tensor (input or output of an op): every byte count stays an exact double.
inline constexpr int64_t max_tensor_elements = int64_t{1} << 53;
// MACs and parameters of one op, each GEMM's batch x m x n x k and every product of its attributes
// (FLOPs: 4 x this, 2^62); with the tensor limit, every integer the op's counts and GEMM views
// compute fits in 64 bits.
inline constexpr int64_t max_op_count = int64_t{1} << 60;

// ---- physical values in device and system configs: the valid range per dimension, in SI units
// (min inclusive; a parameter may narrow it, e.g. `> 0`). Outside it a value is a located error.
struct Range {
    double min, max;
};
constexpr Range quantity_range(cfg::Dim d) {
    switch (d) {
        case cfg::Dim::time:
            return {0, 1};  // latencies and per-op overheads: up to 1 s
        case cfg::Dim::frequency:
            return {1e3, 1e11};  // 1 kHz to 100 GHz
        case cfg::Dim::size:
            return {0, 1125899906842624.0};  // up to 1 PiB (2^50 B)
        case cfg::Dim::bandwidth:
            return {1e3, 1e15};  // 1 kB/s to 1 PB/s
        case cfg::Dim::energy:
            return {0, 1e-6};  // energy per MAC: up to 1 uJ
        case cfg::Dim::energy_per_byte:
            return {0, 1e-6};  // up to 1 uJ/B
        case cfg::Dim::power:
            return {0, 1e6};  // up to 1 MW
        case cfg::Dim::throughput:
            return {1e3, 1e21};  // 1 kOP/s to 1 ZOP/s
    }
    return {0, 0};
}

// ---- counts in device and system configs
inline constexpr int64_t max_array_side = 65536;          // systolic rows, cols and arrays; a .cfg's sides
inline constexpr int64_t max_passes = 256;                // systolic array passes per MAC
inline constexpr int64_t max_tile_extent = 1 << 24;       // systolic `tile` m, n, k
inline constexpr int64_t max_memory_instances = 1 << 20;  // instances of one memory level
inline constexpr int64_t max_process_nm = 100'000;
inline constexpr int64_t max_system_devices = int64_t{1} << 20;  // devices of one system
inline constexpr int64_t max_parallel_links = 65536;             // `count` of one system link
// Each degree of a parallel plan (data, tensor, pipeline) and its micro-batches: workloads/parallel.cpp
// checks the plan, and compare files are refused above it before products of degrees and batches are formed.
inline constexpr int64_t max_parallel_degree = int64_t{1} << 20;
// A SCALE-Sim .cfg's interface: words per cycle (at the translator's 1 GHz clock, 1 PB/s for bytes).
inline constexpr int64_t max_cfg_words_per_cycle = 1'000'000;

// ---- simulated time: picoseconds in 64 bits (2^63 ps, about 106 days). A run that would simulate
// more is refused at the layer that crosses it.
inline constexpr double max_simulated_s = 9.2e6;

// ---- work one command may start (raise with the option named)
// Points of one sweep (`mlsim sweep --max-points N`); no sweep may exceed the hard limit.
inline constexpr std::size_t default_max_sweep_points = 100'000;
inline constexpr std::size_t hard_max_sweep_points = 10'000'000;
// Simulating threads of one sweep (`mlsim sweep --jobs N`): each holds a point's model and rows, and beyond a
// few per core they only add memory and switching (a point never waits on anything but a core).
inline constexpr int max_jobs = 1024;
// Memory the parallel execution engine (arch/system/parallel_exec.cpp) may take for one step's task
// instances: every task of every schedule item (a micro-batch's forward or backward) of every simulated rank.
// Rank 0's also record a layer row each: ~5,200 B an instance against ~220 B for another rank's (measured:
// GPT-2 small, seq 16, data-parallel 8, rank 0 alone simulated, 414 tasks a micro-batch: 2.13 MB more
// resident a micro-batch between 256 and 512 of them; 8 pipeline stages, 100,000 micro-batches, 1.63e7
// instances of which 1/8 rank 0's: 13.6 GB resident). A step past the bound is refused before it runs.
inline constexpr double max_parallel_task_bytes = 3.5e9;
inline constexpr double parallel_rank0_task_bytes = 5200;
inline constexpr double parallel_task_bytes = 220;
// Ranks of a run with sharded embedding tables (workloads/embedding_sharding.h): every rank runs its own
// program, with all-to-alls between every pair, and the state grows about as ranks^3 (measured, DLRM-MLPerf
// on H100 DGX nodes in a fat-tree: 128 ranks 53 MB, 256 307 MB, 512 2.2 GB; 768 went past 6 GB).
inline constexpr int64_t max_embedding_sharding_ranks = 512;
// Cycle fidelity of the systolic array: PE-cycles stepped on the grid (each cycle also counted as 8, its own
// cost) plus the MACs of the reference products, summed over a run (`mlsim run --max-pe-cycles N`; about 30 s
// at 3e8 PE-cycles/s).
inline constexpr double default_max_pe_cycles = 1e10;
// Memory the cycle fidelity may take for the PE grid's registers and one layer's operand matrices.
inline constexpr double max_cycle_fidelity_bytes = 4.0 * (1u << 30);  // 4 GiB
// Tile steps the systolic model builds for one layer (memory: about 100 bytes each), at either fidelity.
inline constexpr int64_t max_tile_steps = 10'000'000;

}  // namespace mlsim::limits
