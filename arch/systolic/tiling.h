#pragma once
// How one GEMM of a layer is spread over the arrays and cut into tiles that fit the operand buffers,
// and a closed-form estimate of the double-buffered pipeline that chooses among the candidates.
//
// Lowering (done by wl::Op::gemms(); restated because everything here depends on it):
//   C(M×N) = A(M×K)·B(K×N), `batch` independent instances. linear: M = tokens, N = out, K = in.
//   Convolution through im2col: M = N·Ho·Wo, N = Cout/groups, K = Cin/groups·Kh·Kw, batch = groups
//   (a depthwise convolution is `groups` GEMMs with N = 1). Attention: Q·Kᵀ then P·V, batch = B·heads.
//   RNN: the input projection over all steps, then T dependent recurrent GEMMs (batch = T, sequential).
// A is the ifmap operand, B the filter operand, C the ofmap operand, whatever the dataflow.
//
// Partitioning across `arrays` (they share the buffers and main memory and run in lockstep, tile step
// by tile step): independent instances are dealt out one per array (split=batch); a single instance
// is split along N (each array owns a slice of output columns and its weights; A is shared and
// fetched once) or along M (each array owns a slice of rows; B is shared and fetched once), whichever
// the estimate prefers (ties go to N). Split extents are rounded up to whole folds of the array.
// A step takes as long as its slowest array, so a layer ends when its slowest array does.
//
// Tiles: (tm, tn, tk) per array; a tile's operands must fit the buffers (half of each when
// double-buffered; a shared operand is stored once, private ones once per array). The loop order
// (outer to inner, e.g. "mnk") decides reuse: an operand stays in its buffer while its tile index does
// not change between consecutive steps, and is fetched again (a refetch, counted) whenever it changes,
// even if an earlier step had it, unless the whole operand fits in half of its buffer: then it is
// kept (TilePlan::keep_a / keep_b) and each tile is fetched once. An A operand a previous layer left
// in the ifmap buffer (GemmJob::a_on_chip) is not fetched at all. An output tile left before all its K
// tiles are done is written out as partial sums and read back when the order returns to it.
//
// Bytes in main memory and in the buffers: a word of the layer's data type, except that an
// im2col matrix is not stored: its DRAM traffic and buffer footprint are those of the input feature
// map (scale = input elements / A elements, e.g. 1/9 for a 3×3 stride-1 convolution), while the
// array edge still reads every im2col word from the ifmap buffer (on-chip im2col). The ofmap buffer
// holds partial sums at the accumulator width (MappingContext::acc_bytes): its capacity is counted in
// accumulator words, partial sums spilled to main memory and read back move at that width, and only a
// finished output tile leaves at the layer's word size.
//
// Choice: the search estimates each candidate's cycles (the pipeline's rules in closed form) and
// takes, among the candidates within 2 % of the fastest estimate, the one whose arrays compute for the
// fewest cycles: when main memory sets the pace, many tilings tie, and the one that uses the arrays
// best (full folds) does the same work with fewer buffer reads, hops and preloads.
//
// Promises: plan_gemm never returns a tiling that does not fit; it throws cfg::UserError (located at
// the buffer's `capacity`, or at `tile` for a fixed tiling) when none does. The search is a pure
// function of its inputs and cheap (tens of closed-form evaluations per GEMM).
#include <algorithm>
#include <array>
#include <cstdint>
#include <limits>
#include <optional>
#include <string>
#include <unordered_map>
#include <vector>

#include "arch/device_spec.h"
#include "arch/systolic/dataflow.h"
#include "arch/systolic/systolic_spec.h"
#include "workloads/op.h"

namespace mlsim::arch::systolic {

enum class StallCause : uint8_t { weight, input, output };

// The ifmap buffer's capacities per tile that answer a search's comparisons as its own capacity did: the
// capacity enters a search only through `footprint <= capacity` (a tile's A operand fits, the whole A operand
// is kept), so any capacity in [lo, hi), lo the largest footprint that fitted and hi the smallest that did
// not, makes the same comparisons with the same answers, evaluates the same candidates and chooses the same
// plan (plan_gemm's memo of plans, ComputeMemo::find_plan).
struct CapacityWindow {
    double lo = -std::numeric_limits<double>::infinity();
    double hi = std::numeric_limits<double>::infinity();
    void saw(double footprint, bool fits) {
        if (fits)
            lo = std::max(lo, footprint);
        else
            hi = std::min(hi, footprint);
    }
    bool holds(double capacity) const { return lo <= capacity && capacity < hi; }
};

class ComputeMemo;  // below

// What a layer's GEMMs see of the device.
struct MappingContext {
    const DeviceSpec* device = nullptr;
    const SystolicSpec* spec = nullptr;
    std::string op_name;  // for messages
    double clock_hz = 0;
    double dram_Bps = 0;  // main memory
    double dram_latency_s = 0;
    // Bytes of the ifmap buffer this layer's own A tiles may use: its capacity less the activations
    // other layers keep there (residency); < 0: the whole buffer.
    double ifmap_free_bytes = -1;
    // Tiles may stream back to back and overlap their preloads across tile boundaries (faithful
    // convention); off, only the step list's counts matter (scalesim convention).
    bool stream_across_tiles = true;
    double word_bytes = 0;  // one element of the layer's data type (0.5 for int4)
    double acc_bytes =
        0;  // one partial sum in the ofmap buffer (SystolicSpec::accumulator_bytes); 0: word_bytes
    int64_t passes = 1;  // array passes per MAC for this data type
    // Sums of tile-shape costs kept across searches (ComputeMemo); none: every search costs its own.
    ComputeMemo* compute_memo = nullptr;
    double partial_bytes() const { return acc_bytes > 0 ? acc_bytes : word_bytes; }
    // What one A tile may occupy (half of the free part when double-buffered).
    double ifmap_tile_capacity() const;
};

// Main-memory / buffer bytes per word, relative to word_bytes, per operand (see the header comment).
struct OperandScale {
    double a = 1, b = 1, c = 1;
};

struct GemmJob {
    wl::GemmShape shape;      // batch, m, n, k
    bool sequential = false;  // the batch entries depend on each other (RNN steps)
    // A is already in the ifmap buffer (a previous layer left its output there): it is neither
    // fetched nor given space of its own; the arrays read it in place.
    bool a_on_chip = false;
    OperandScale scale;
};

enum class Split : uint8_t { none, batch, n, m };

struct Partition {
    Split split = Split::none;
    int64_t arrays_used = 1;  // arrays with work
    int64_t chunk = 0;        // extent of the split dimension per array (the last may be smaller)
    int64_t groups = 1;       // lockstep groups: instances run one after another (batch: ceil(batch/arrays))
    int64_t m = 0, n = 0, k = 0;  // the largest per-array sub-GEMM
    bool shared_a() const { return split == Split::n; }
    bool shared_b() const { return split == Split::m; }
};

enum Dim : uint8_t { dim_m = 0, dim_n = 1, dim_k = 2 };

struct TilePlan {
    Partition part;
    std::array<int64_t, 3> tile{};                  // tm, tn, tk
    std::array<int64_t, 3> count{};                 // tiles per dimension
    std::array<Dim, 3> order{dim_m, dim_n, dim_k};  // outer to inner
    // The whole operand (of one lockstep group) fits in half of its buffer, so it stays there for the
    // group: each of its tiles is fetched once, on first use, however often the loop order returns.
    bool keep_a = false, keep_b = false;
    double estimate_cycles = 0;  // for the whole job (all groups)
    double array_cycles = 0;     // of which the arrays compute (all groups)
    int64_t steps() const { return count[0] * count[1] * count[2]; }
    // "m=392 n=64 k=576 tiles=1x1x1 order=mnk" (+ " split=m/8" with several arrays)
    std::string describe() const;
};

// The arrays' cycles of a job's tiles (the search's sum over the tile shapes of a candidate tiling), kept
// from one search to the next: plan_gemm searches most GEMMs of a network twice, with A fetched from
// main memory and with A read in place (a layer before left it in the ifmap buffer); the two searches
// differ in traffic, but cost the same tile shapes on the same partition. Devices that differ only in
// what the sums do not read (buffer capacities, main memory, the batch) cost the same shapes too: the
// points of a sweep over such values share the sums of the first (issue 15).
//
// A sum depends on its key (the partition's extents and the tile) and on what bind() is given: the
// dataflow, the array's shape, the passes, streaming across tiles, and each buffer port's word size and
// share of bandwidth per array cycle (tiling.cpp, Evaluator). A change of those empties the table in
// O(1) (a new generation). SystolicModel uses the one of its thread (for_this_thread()), passed in
// MappingContext::compute_memo. Open addressing in one flat table (no allocation per entry) of 2^13
// slots (256 KiB; a ResNet-50 run on the TPU v4 preset stores 3,494 sums); half full, it doubles, up to
// 2^16 slots (2 MiB, a sweep's), and there it empties.
class ComputeMemo {
  public:
    // 32 B, two to a cache line: a sweep's searches probe the table at random some 13,000 times a point,
    // and a probe that misses the processor's caches costs more than the rest of the lookup
    // (bench/README.md: with 64 B entries, 4 MiB at the largest size, slot() took 14 % of a systolic
    // sweep's CPU time on an Intel Xeon host).
    struct alignas(32) Entry {
        // The key packed (pack()): the partition's extents m, n, k per array, and the tile tm, tn, tk.
        std::array<uint64_t, 2> key{};
        double total = 0;         // the sum, or (partial) a partial sum of it
        uint32_t generation = 0;  // the bind() it was stored under; older entries count as empty
        uint8_t state = 0;        // 0 empty, 1 partial, 2 the whole sum
    };
    // Each of the six values in k_key_bits bits (three to a word), or nothing where one does not fit (such
    // jobs are not memoized: a sum is costed as without a memo).
    static constexpr int k_key_bits = 21;
    static std::optional<std::array<uint64_t, 2>> pack(const std::array<int64_t, 6>& key);
    static_assert(sizeof(Entry) == 32);
    // A search's whole evaluations, in the order it made them: a candidate's tile, its tile-shape sum and
    // its fastest loop order's estimate (per lockstep group) and that order. Kept per search key (below)
    // for the next search with the same key, which finds most of its candidates there: the points of a
    // sweep that differ in a buffer's capacity search the same jobs with the same traffic over nearly the
    // same candidates, in the same order. Read in order, so a found evaluation costs no miss in the
    // processor's caches, unlike a table probed at random (bench/README.md, fifth round).
    struct TraceEntry {
        std::array<int64_t, 3> tile{};
        double compute = 0;
        double best = 0;
        std::array<uint8_t, 3> order{};
    };
    using Trace = std::vector<TraceEntry>;
    // Called as a model's run starts on this thread: traces are kept from its second run on. A single
    // `mlsim run` never repeats a search key (a GEMM searched twice differs in traffic; repeated layers
    // are memoized whole), and keeping its traces cost it 1.6 % more instructions.
    void begin_run() {
        if (m_runs < 2) ++m_runs;
    }
    bool keeps_traces() const { return m_runs >= 2; }
    // Everything an evaluation reads besides its candidate (tiling.cpp, Evaluator::search_key): the tag
    // bind() was given, the partition (extents, groups, split, arrays), the operands' bytes in main memory,
    // the accumulator width, main memory's bytes per cycle and latency, which operands are kept whole and
    // which buffers are double-buffered.
    using SearchKey = std::array<uint64_t, 24>;
    // The trace kept for `key` (empty when none), for a search to read while it writes its own into
    // trace_scratch() (cleared here); then keep_scratch(that trace) puts the new one in its place. The
    // reference stays valid until the next call of trace().
    Trace& trace(const SearchKey& key);
    Trace& trace_scratch() { return m_scratch; }
    void keep_scratch(Trace& kept) {
        m_trace_entries -= kept.size();
        kept.swap(m_scratch);  // the old trace's memory is the next search's scratch
        m_trace_entries += kept.size();
    }
    // Evaluations found in traces, since this memo was made (tests).
    int64_t trace_hits() const { return m_trace_hits; }
    void count_trace_hit() { ++m_trace_hits; }
    // At most this many evaluations kept in all (48 B each: 12 MiB), and an eighth as many traces; past
    // either the traces are dropped.
    static constexpr std::size_t k_max_trace_entries = std::size_t{1} << 18;

    // Whole plans (plan_gemm), kept with the window of ifmap capacities per tile that give them: a sweep over
    // the ifmap buffer's capacity, or over anything the search does not read (main memory's size, the
    // batch of other layers), finds most of its plans here. Keyed by everything else plan_gemm reads
    // (tiling.cpp, plan_key): the job, the context's per-layer fields and the systolic section.
    using PlanKey = std::array<uint64_t, 25>;
    const TilePlan* find_plan(const PlanKey& key, double capacity) const;
    void keep_plan(const PlanKey& key, const CapacityWindow& window, const TilePlan& plan);
    // Plans found kept, since this memo was made (tests).
    int64_t plan_hits() const { return m_plan_hits; }
    void count_plan_hit() { ++m_plan_hits; }
    // At most this many plans kept in all (about 200 B each: some 3 MiB), and this many windows a key; past
    // either, the plans (of all keys, or of the key) are dropped.
    static constexpr std::size_t k_max_plans = std::size_t{1} << 14;
    static constexpr std::size_t k_max_plans_per_key = 64;

    using Tag = std::array<uint64_t, 11>;
    // Sets what the sums depend on besides the key (above); a change empties the table.
    void bind(const Tag& tag);
    const Tag& tag() const { return m_tag; }
    // The entry for `key`: found, or the empty slot to store it in (its key already written, state 0);
    // nullptr where the key does not pack.
    Entry* slot(const std::array<int64_t, 6>& key);
    // Marks a slot returned by slot() as used (state 1 or 2 set by the caller).
    void used() { ++m_used; }
    // Sums found whole, since this memo was made (tests).
    int64_t hits() const { return m_hits; }
    void count_hit() { ++m_hits; }
    size_t slots() const { return m_table.size(); }
    // The memo of the calling thread, kept for the thread's life (the points a sweep's worker runs).
    static ComputeMemo& for_this_thread();

    static constexpr int k_min_bits = 13;
    static constexpr int k_max_bits = 16;

  private:
    void resize(int bits);  // a table of 2^bits slots holding this generation's entries
    Entry* slot(const std::array<uint64_t, 2>& packed);
    Tag m_tag{};
    std::vector<Entry> m_table;
    int m_bits = k_min_bits;
    size_t m_mask = 0;   // slots − 1
    size_t m_limit = 0;  // half the slots: the used count at which the table grows or empties
    size_t m_used = 0;
    uint32_t m_generation = 0;
    int64_t m_hits = 0;
    struct KeyHash {
        template <std::size_t N>
        std::size_t operator()(const std::array<uint64_t, N>& k) const {
            uint64_t h = 0;
            for (uint64_t x : k) h = (h ^ x) * 0x9e3779b97f4a7c15u;
            return static_cast<std::size_t>(h ^ (h >> 29));
        }
    };
    std::unordered_map<SearchKey, Trace, KeyHash> m_traces;
    struct KeptPlan {
        CapacityWindow window;
        TilePlan plan;
    };
    std::unordered_map<PlanKey, std::vector<KeptPlan>, KeyHash> m_plans;
    std::size_t m_plan_count = 0;
    int64_t m_plan_hits = 0;
    Trace m_scratch;
    int m_runs = 0;
    std::size_t m_trace_entries = 0;
    int64_t m_trace_hits = 0;
};

// A tile's folds on an idle array (dataflow.h), counted from the tile's first cycle, in array cycles
// (before the data type's passes): what the pipeline needs to place a tile right behind the one before.
struct TileSchedule {
    int64_t lead = 0;        // s_0: the first stream starts (ws/is: after fold 0's preload; os: 0)
    int64_t last_start = 0;  // s of the last fold
    int64_t stream = 0;      // T: streamed steps of every fold
    int64_t first_rows = 0;  // r of the first fold
    int64_t last_rows = 0;   // r of the last fold
    int64_t last_cols = 0;   // c of the last fold
    int64_t folds = 0;
    int64_t done = 0;  // the tile's cycles: one past its last output write
    // After the last fold's stream starts, the cycles before a fold of another tile may start besides
    // its own preload: ws/is r_last (its shadow chain is free once the last copy passed), os r_last + R
    // (its drain must have left the shadow registers).
    int64_t hold(Dataflow df, int64_t array_rows) const {
        return df == Dataflow::os ? last_rows + array_rows : last_rows;
    }
    // One past the cycle the tile reads its last A and B word from the buffers: a stationary operand
    // is read by the preloads, so by the last fold's stream start; a streamed one enters row i (os B:
    // column j) at s + τ + i, so by s_last + T + r_last − 1 (os B: + c_last − 1).
    int64_t a_free(Dataflow df) const {
        return df == Dataflow::is ? last_start : last_start + stream + last_rows - 1;
    }
    int64_t b_free(Dataflow df) const {
        switch (df) {
            case Dataflow::ws:
                return last_start;
            case Dataflow::is:
                return last_start + stream + last_rows - 1;
            case Dataflow::os:
                break;
        }
        return last_start + stream + last_cols - 1;
    }
    // Cycles from one tile's first stream start to the next one's, when tiles of this shape follow
    // each other with the stationary operand changing (dataflow.h's fold rule across tiles).
    int64_t chained(Dataflow df, int64_t array_rows) const {
        return last_start - lead + std::max(stream, hold(df, array_rows) + lead);
    }
};
// The schedule from a tile's first and last folds and its cycles (closed form or measured on the grid).
TileSchedule tile_schedule(const FoldGeometry& g, const FoldStats& first, const FoldStats& last,
                           Cycles cycles);
TileSchedule tile_schedule(const FoldGeometry& g);  // closed form (fold_model.h)
// The same, given the layer's cycles (gemm_cycles(g), e.g. from gemm_stats(g)): no fold's stats needed.
TileSchedule tile_schedule(const FoldGeometry& g, Cycles cycles);

// Cycles by which a buffer port slower than the array edge stretches a tile: the words it moves need
// more cycles than the tile streams for (`span`, already times passes). A port's bandwidth is shared
// equally by all arrays; reads and writes have a port each.
struct PortStretch {
    int64_t cycles = 0;
    StallCause cause = StallCause::input;  // the buffer that stretched it, when cycles > 0
};
// `accumulate`: the tile adds into partial sums of earlier K tiles, so every output word is also read.
PortStretch port_stretch(const MappingContext& ctx, const GemmStats& st, int64_t span, int64_t m, int64_t n,
                         bool accumulate);

// Bytes of the ifmap buffer a plan's A operand takes: both halves when double-buffered, the whole
// operand (of one lockstep group) when kept, nothing when read in place.
double ifmap_space(const MappingContext& ctx, const GemmJob& job, const TilePlan& plan);

// Bytes of `words` words of an operand with scale `s` (rounded up to whole bytes).
uint64_t operand_bytes(const MappingContext& ctx, double words, double s);

// The partition and tiling of one GEMM job.
TilePlan plan_gemm(const MappingContext& ctx, const GemmJob& job);

// The ifmap capacity per tile (MappingContext::ifmap_tile_capacity) from which on plan_gemm's result no
// longer depends on it: every split keeps its whole A operand in the buffer (so every tile fits as
// well); 0 when A is read in place. Lets a caller memoize plans across layers that leave different
// room in the ifmap buffer.
double ifmap_capacity_settled(const MappingContext& ctx, const GemmJob& job);

// The partition of one GEMM job over the arrays under `split` (the rules above); the convention
// scalesim applies it to SCALE-Sim's GEMM of the same job (systolic_model.cpp).
Partition make_partition(const MappingContext& ctx, const GemmJob& job, Split split);

// Fold granularity of a GEMM dimension under a dataflow: the array extent it is spread over (rows
// or columns), or 1 for the streamed dimension.
int64_t granularity(Dataflow df, ArrayShape array, Dim d);

}  // namespace mlsim::arch::systolic
