#pragma once
// The CPU family's parsed `cpu:` section and the BLAS-style kernel model built on it (arch/cpu/).
//
// Hardware (CpuSpec): cores with SIMD units (register width, FMA pipes, vector registers, FMA latency,
// vector load ports), one compute unit per data type (a vector unit: SIMD lanes x pipes MACs per cycle,
// where dot-product extensions such as AVX-512 BF16 / VNNI and NEON SDOT count as lanes of the narrow
// type; or a matrix unit such as AMX with its MACs per cycle), each with the clock it runs at; caches
// (the `memory:` levels before main memory, each with line size, associativity, latency in cycles,
// bandwidth in bytes per cycle per core, slices); DRAM (channels, latency, refresh and read/write
// turnaround overheads, misses a core keeps in flight).
//
// Kernels (the Goto / BLIS way; K. Goto and R. van de Geijn, "Anatomy of High-Performance Matrix
// Multiplication", ACM TOMS 34(3), 2008; F. Van Zee and R. van de Geijn, "BLIS", ACM TOMS 41(3), 2015;
// T. M. Low et al., "Analytical Modeling Is Enough for High-Performance BLIS", ACM TOMS 43(2), 2016):
//   for jc in N step NC            (5th loop; B panel KC x NC lives in L3)
//     for pc in K step KC          (4th loop; B panel packed into Bp)
//       for ic in M step MC        (3rd loop; A block packed into Ap, MC x KC, lives in L2)   <- threads
//         for jr in NC step NR     (2nd loop; B micro-panel KC x NR lives in L1)             <- threads
//           for ir in MC step MR   (1st loop; micro-kernel MR x NR x KC from registers)
// Threads: all the cores factored over the independent GEMMs of a batch (groups, heads), the 3rd loop
// (ic) and the 2nd (jr), the split whose busiest thread has the fewest tiles. Blocking (choose_blocking):
//   - MR x NR: a = MR / lanes vector rows and NR columns of accumulators, a·NR + a + 1 <= registers
//     (accumulators, the A vectors, one B broadcast), a·NR >= pipes · FMA latency where possible
//     (enough independent accumulators to keep every pipe busy): the highest FMA rate per cycle given
//     issue, loads and latency, ties to more accumulators (more reuse of each load). Matrix units: MR = NR =
//     2 tiles of 16 rows (AMX: 8 tile registers, 2 x 2 accumulator tiles and 2 + 2 operand tiles), k granule
//     = 64 B of the data type.
//   - KC from L1 (Low et al.): the B micro-panel KC x NR takes C_B = floor((W1 - 1) / (1 + MR / NR))
//     of the W1 ways and the A micro-panel MR x KC the C_B · MR / NR ways beside it (one way left for C):
//     KC = C_B · (L1 / W1) / (NR · w).
//   - MC from L2: the A block MC x KC, the C strip MC x NR and the B micro-panel KC x NR (what one jr
//     iteration touches) within W2 - 2 of the W2 ways: MC = ((W2 - 2) / W2 · L2 - KC · NR · w) /
//     ((KC + NR) · w), a multiple of MR.
//   - NC from L3: Bp KC x NC takes W3 - 2 of the W3 ways of the L3 share of the cores that use it:
//     NC = (W3 - 2) / W3 · L3 / (KC · w), a multiple of NR.
// Depthwise convolution (groups = channels, one output channel per group) runs as a direct kernel
// instead (as oneDNN does): channels across the SIMD lanes, the kh·kw taps as FMAs from L1.
//
// Closed-form traffic (gemm_traffic): for each stream (A read by packing, Ap written and read by the
// micro-kernels, B read by packing, Bp written and read, C read and written per KC pass) the lines
// that miss at each cache level: its footprint in lines, times how often it is reloaded, which is 1
// (first touch only) when the data touched between two uses of a line fits in the level's
// effective capacity (capacity · (W - 1) / W: one way is left to the other streams), else the number
// of uses. The trace fidelity (cache_sim.h) replays the same loop nest's addresses instead.
#include <array>
#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "arch/device_spec.h"
#include "sim/config/node.h"
#include "workloads/model.h"

namespace mlsim::arch::cpu {

enum class Fidelity { closed, trace };

// The unit that computes one data type.
struct ComputeUnit {
    std::string name;  // avx512, avx512_vnni, amx, neon, ... (as the config names it)
    bool matrix = false;
    double macs_per_cycle = 0;  // per core
    double clock_hz = 0;        // the clock while the unit runs (wide-vector / matrix code clocks lower)
};

// One cache level (a `memory:` level before main memory) with its geometry.
struct CacheLevel {
    std::string name;
    double capacity_bytes = 0;  // per instance
    int64_t instances = 1;
    int64_t cores_sharing = 1;  // cores per instance
    int64_t line_bytes = 64;
    int64_t associativity = 8;
    int64_t latency_cycles = 0;
    double bytes_per_cycle = 0;  // per core, toward the level above
    int64_t slices = 1;
    double read_energy_J_per_byte = 0, write_energy_J_per_byte = 0;
};

struct DramParams {
    std::string name;
    double bandwidth_Bps = 0;  // peak, all channels (the `memory:` level's bandwidth)
    int64_t channels = 1;
    double latency_s = 0;
    double refresh_overhead = 0;  // tRFC / tREFI: the fraction of time a rank is refreshing
    double turnaround_s = 0;      // read->write->read bus turnaround, per batch of writes
    int64_t write_batch = 32;     // lines the controller drains per write burst
    int64_t miss_buffers = 16;    // misses one core keeps in flight to DRAM (Little's law)
    double read_energy_J_per_byte = 0, write_energy_J_per_byte = 0;
    // Sustained bandwidth for a stream whose traffic is `write_fraction` writes.
    double sustained_Bps(double write_fraction) const;
};

struct CpuSpec final : FamilyParams {
    int64_t cores = 1;
    int64_t simd_bits = 128;
    int64_t fma_pipes = 1;
    int64_t vector_registers = 16;
    int64_t fma_latency = 4;
    int64_t load_ports = 2;
    double kernel_call_cycles = 20;            // per micro-kernel call, beyond its C tile update
    std::map<std::string, ComputeUnit> units;  // by data type
    std::vector<CacheLevel> caches;            // innermost first (L1D, L2, L3)
    DramParams dram;
    Fidelity fidelity = Fidelity::closed;
    bool fuse_post_ops = true;    // `fusion: epilogue` (default): element-wise / BN after a GEMM as post-ops
    int64_t trace_limit = 0;      // most line accesses the trace fidelity replays per layer
    cfg::SourceLoc fidelity_loc;  // where the fidelity was chosen, for located refusals
    std::string fidelity_path;

    // SIMD lanes of a data type (register bits / element bits).
    double lanes(double elem_bytes) const { return static_cast<double>(simd_bits) / (8 * elem_bytes); }
};

// The CPU section of a device, or nullptr.
const CpuSpec* spec_of(const DeviceSpec& d);

struct Blocking {
    int64_t mr = 1, nr = 1, kc = 1, mc = 1, nc = 1;
    int64_t k_granule = 1;       // k per micro-kernel step (1 for vector FMAs; a tile's depth for AMX)
    double cycles_per_step = 1;  // micro-kernel cycles per k step at full speed
    bool matrix = false;
    std::string text() const;  // "MRxNR=16x6 KC=256 MC=72 NC=4080"
};

// The blocking a BLAS library would choose for a data type on this CPU, for `l3_share` bytes of L3.
Blocking choose_blocking(const CpuSpec& s, const ComputeUnit& u, double elem_bytes, double l3_share);

// Misses (lines filled from below) and write-backs (lines written below) per cache level, and the
// accesses the cores made to L1 (register loads and stores, in bytes).
struct Traffic {
    std::vector<double> misses;      // per cache level
    std::vector<double> writebacks;  // per cache level
    double l1_load_bytes = 0, l1_store_bytes = 0;
    double pack_bytes = 0;  // bytes the packing routines copied
    void resize(size_t n) {
        misses.assign(n, 0);
        writebacks.assign(n, 0);
    }
};

// One GEMM of a layer as the kernels see it: C (m x n) += A (m x k) · B (k x n), `count` times.
struct GemmTask {
    int64_t count = 1, m = 0, n = 0, k = 0;
    double elem_bytes = 4;
    double a_scale = 1;  // bytes of A in memory / bytes of the im2col view (a convolution's feature map)
};

// Whether the kernels run the blocked GEMM: not for at most half a micro-panel of rows (M <= MR / 2, a
// matrix-vector product), whose B elements are used once each, so packing would cost as much as it saves.
// Those run in matrix-vector form instead (as BLAS libraries switch to GEMV kernels): for each chunk of
// gemv_chunk() columns (its M rows of C fill a quarter of L1), for each k, C[:, chunk] += A[:, k] ·
// B[k, chunk], B streaming row by row from where it lies; threads split the columns; each FMA needs
// one B vector load, so a core does min(pipes, load ports) vector FMAs per cycle.
bool packs_b(const Blocking& b, const GemmTask& g);
int64_t gemv_chunk(const std::vector<CacheLevel>& levels, const GemmTask& g);

// Closed-form traffic of the blocked loop nest of one GEMM (all of its `count` instances), single
// thread's view: L1 and L2 as one core has them, L3 at `l3_capacity`.
Traffic gemm_traffic(const CpuSpec& s, const Blocking& b, const GemmTask& g, double l3_capacity);

// The caches as the trace replays them: one core's L1 and L2, `l3_capacity` of L3.
std::vector<CacheLevel> trace_levels(const CpuSpec& s, double l3_capacity);

}  // namespace mlsim::arch::cpu
