#include "mpi/sweep_mpi.h"

#include <fmt/format.h>
#include <mpi.h>

#include <algorithm>
#include <atomic>
#include <charconv>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <deque>
#include <exception>
#include <functional>
#include <list>
#include <map>
#include <new>
#include <optional>
#include <string_view>
#include <thread>
#include <type_traits>
#include <vector>

#include "experiment/sweep_writer.h"
#include "sim/config/error.h"
#include "sim/core/check.h"

namespace mlsim::mpi {

namespace {

using Clock = std::chrono::steady_clock;
using exp::Sweep;
using exp::SweepPointConfig;
using exp::SweepSummary;
using exp::SystemCache;
using exp::thread_cpu_s;
using Outcome = exp::PointOutcome;
using Known = exp::KnownRuns;

constexpr int k_tag_work = 1;    // rank 0 -> worker: one int64 point index, or -1: no more points
constexpr int k_tag_result = 2;  // worker -> rank 0: a serialized Outcome
constexpr int k_tag_done = 3;    // rank 0 -> worker: the sweep is committed (empty)
constexpr int k_tag_ring = 4;    // worker -> rank 0: where in its ring (below) a serialized Outcome lies
// Points a worker holds at once: enough that it never waits while rank 0 commits a batch or simulates a
// point (a batch of 64 systolic points takes rank 0 some 60-80 ms, while a worker simulates a point in about
// 2 ms). 8 left the worker waiting some 5 % of a 2,000-point systolic sweep (bench/README.md, seventh round);
// the points a worker holds at the end cost no more than that many points' time on the other core.
constexpr int k_in_flight = 24;
// Results rank 0 holds uncommitted (exp::write_sweep's bound) beyond which a worker that sends one gets its
// next point only once a commit makes room: workers that simulate faster than rank 0 writes would otherwise
// fill its memory.
constexpr std::size_t k_max_pending = exp::k_max_held;
// The whole number in the environment variable `name`, from `least` to `most`, or `otherwise` where it is
// unset. Any other value is a UserError (exit status 2) naming `what` it sets, not the default taken
// silently.
std::size_t env_count(const char* name, std::size_t least, std::size_t most, std::size_t otherwise,
                      std::string_view what) {
    const char* v = std::getenv(name);
    if (!v) return otherwise;
    std::size_t n = 0;
    const char* end = v + std::strlen(v);
    const auto [stop, ec] = std::from_chars(v, end, n);
    if (ec != std::errc{} || stop != end || n < least || n > most)
        throw cfg::UserError(
            fmt::format("error: {} is '{}', not a whole number from {} to {} ({}; unset, {})", name, v, least,
                        most, what, otherwise));
    return n;
}

// k_max_pending, or MLSIM_MPI_MAX_PENDING: the tests set 1, so that a small sweep takes the path where
// workers wait for their next point.
std::size_t max_pending() {
    return env_count("MLSIM_MPI_MAX_PENDING", 1, std::size_t{1} << 30, k_max_pending,
                     "the points rank 0 holds uncommitted");
}

// The bytes of the ring of each worker on rank 0's node (SharedRings below), or MLSIM_MPI_RING_BYTES (0: no
// rings, every result a message). A ring holds the results rank 0 has not read yet: it reads every arrived
// result whenever it is not simulating a point or committing a batch's end, so a few at most (a systolic
// ResNet-50 point is ~105 KB, a roofline one ~56 KB: 2 MiB holds 19 of the larger). A result that finds no
// room goes as a message instead. Rings of 1 and 8 MiB gave the same rates (bench/README.md, thirteenth
// round).
constexpr std::size_t k_ring_bytes = std::size_t{2} << 20;
std::size_t ring_bytes() {
    return env_count("MLSIM_MPI_RING_BYTES", 0, std::size_t{1} << 30, k_ring_bytes,
                     "the bytes of each worker's shared-memory ring on rank 0's node; 0: none");
}

// With MLSIM_SWEEP_CPU set in the environment, each rank writes to stderr where its sweep thread's CPU time
// went (bench/bench_sweep_mpi.py reads it: the CPU cost per point of the writer and of the simulating ranks,
// which a loaded machine does not blur as it blurs wall times).
struct CpuAccount {
    bool on = std::getenv("MLSIM_SWEEP_CPU") != nullptr;
    double start = thread_cpu_s();
    double simulating = 0;   // in run_point, serializing and sending included on other ranks
    double committing = 0;   // rank 0: in batches of commits (receiving during a batch included)
    double checkpoints = 0;  // rank 0: the results file's background checkpoints (another thread's CPU)
    double receiving = 0;    // rank 0: taking the other ranks' results, in batches or not
    std::size_t points = 0;
    void report(int rank) const {
        if (!on) return;
        std::fprintf(
            stderr,
            "mlsim sweep cpu: rank %d simulated %zu points in %.4f s, committed in %.4f s, other work "
            "%.4f s\n",
            rank, points, simulating, committing + checkpoints,
            thread_cpu_s() - start - simulating - committing);
        // Rank 0's writing, split (bench/bench_sweep_mpi.py prints it): its receiving, and the checkpoints'
        // CPU (counted in "committed" above).
        if (rank == 0)
            std::fprintf(
                stderr, "mlsim sweep cpu: rank 0's writing: receiving %.4f s, the log's checkpoints %.4f s\n",
                receiving, checkpoints);
    }
};

// ---- Serialization: little-endian-as-the-host bytes (every rank runs the same binary) ----
class Writer {
  public:
    Writer() = default;
    // Writes into [place, place + room) (a worker's ring, SharedRings::reserve; none when null) until that
    // is full, then goes on in `buffer`'s memory (its contents replaced: a rank reuses the buffers of sent
    // results), the bytes written so far copied there.
    Writer(char* place, std::size_t room, std::vector<char>&& buffer)
        : m_buf(std::move(buffer)), m_place(place), m_room(room) {
        m_buf.clear();
    }
    void u64(uint64_t v) { raw(&v, sizeof v); }
    void i64(int64_t v) { raw(&v, sizeof v); }
    void f64(double v) { raw(&v, sizeof v); }
    void str(const std::string& s) {
        u64(s.size());
        raw(s.data(), s.size());
    }
    void opt(const std::optional<double>& v) {
        u64(v ? 1 : 0);
        f64(v.value_or(0));
    }
    // Whether every byte went to the place given (none to the buffer).
    bool in_place() const { return m_place != nullptr; }
    std::size_t size() const { return m_size; }
    // The bytes, when not in place.
    std::vector<char>& bytes() {
        MLSIM_CHECK(!m_place, "mpi: the bytes of a result written in place");
        m_buf.resize(m_size);
        return m_buf;
    }
    // The buffer's memory, for the next result, when in place.
    std::vector<char>&& buffer() { return std::move(m_buf); }
    // Fields are copied into room made ahead (the buffer doubles when full) instead of vector::insert, which
    // cost a simulating rank about 6 % of its time when a point's layers were sent field by field.
    void raw(const void* p, std::size_t n) {
        if (n == 0) return;  // an empty list's data() may be null, which memcpy must not be given
        if (m_place) {
            if (m_room - m_size >= n) {
                std::memcpy(m_place + m_size, p, n);
                m_size += n;
                return;
            }
            m_buf.resize(std::max<std::size_t>(2 * (m_size + n), m_buf.capacity()));
            std::memcpy(m_buf.data(), m_place, m_size);
            m_place = nullptr;
        }
        if (m_buf.size() - m_size < n)
            m_buf.resize(std::max<std::size_t>(2 * m_buf.size(), m_size + n) + 4096);
        std::memcpy(m_buf.data() + m_size, p, n);
        m_size += n;
    }

  private:
    std::vector<char> m_buf;
    std::size_t m_size = 0;   // bytes written; m_buf beyond them is room
    char* m_place = nullptr;  // writing in place while not null
    std::size_t m_room = 0;
};

class Reader {
  public:
    Reader(const char* p, std::size_t n) : m_p(p), m_end(p + n) {}
    uint64_t u64() { return get<uint64_t>(); }
    int64_t i64() { return get<int64_t>(); }
    double f64() { return get<double>(); }
    std::string str() {
        std::string s;
        str(s);
        return s;
    }
    // Into `s` directly, its memory reused: a temporary moved into place cost a tenth of reading the strings
    // of a point when its layers came string by string.
    void str(std::string& s) {
        const uint64_t n = u64();
        MLSIM_CHECK(n <= static_cast<uint64_t>(m_end - m_p), "mpi: a truncated message");
        s.assign(m_p, n);
        m_p += n;
    }
    std::optional<double> opt() {
        const bool has = u64() != 0;
        const double v = f64();
        return has ? std::optional<double>(v) : std::nullopt;
    }
    std::size_t left() const { return static_cast<std::size_t>(m_end - m_p); }
    void raw(void* p, std::size_t n) {
        MLSIM_CHECK(n <= static_cast<std::size_t>(m_end - m_p), "mpi: a truncated message");
        if (n) std::memcpy(p, m_p, n);
        m_p += n;
    }

  private:
    template <class T>
    T get() {
        MLSIM_CHECK(sizeof(T) <= static_cast<std::size_t>(m_end - m_p), "mpi: a truncated message");
        T v;
        std::memcpy(&v, m_p, sizeof v);
        m_p += sizeof v;
        return v;
    }
    const char* m_p;
    const char* m_end;
};

// A RunInfo's fields, in one order for writing and reading.
template <class R, class S, class I, class F>
void info_fields(R& r, S&& str, I&& i64, F&& f64) {
    for (auto* s :
         {&r.config_yaml, &r.config_hash, &r.system, &r.device, &r.model, &r.mode, &r.dtype, &r.device_model})
        str(*s);
    i64(r.batch);
    i64(r.seq);
    for (auto* v : {&r.peak_flops_per_s, &r.mem_bandwidth_Bps, &r.tdp_W}) f64(*v);
}

void put(Writer& w, const db::RunInfo& r) {
    info_fields(
        r, [&](const std::string& v) { w.str(v); }, [&](int64_t v) { w.i64(v); },
        [&](double v) { w.f64(v); });
}

db::RunInfo get_info(Reader& rd) {
    db::RunInfo r;
    info_fields(
        r, [&](std::string& v) { rd.str(v); }, [&](int64_t& v) { v = rd.i64(); },
        [&](double& v) { v = rd.f64(); });
    return r;
}

// A point's rows as the simulating rank prepared them (db::prepare_layers): the run's metric names, its
// totals, and its layers, their metrics and their text as blocks of bytes (PreparedLayers::Layer and
// RunTotals are trivially copyable): rank 0, which writes every point, reads a point in a few copies instead
// of reading a systolic point's ~3,500 numbers and ~1,200 strings one by one. RunTotals: 16 numbers of 8
// bytes, no padding.
static_assert(std::is_trivially_copyable_v<db::RunTotals> && sizeof(db::RunTotals) == 16 * 8);

template <class T>
void put_block(Writer& w, const std::vector<T>& v) {
    static_assert(std::is_trivially_copyable_v<T>);
    w.u64(v.size());
    w.raw(v.data(), v.size() * sizeof(T));
}

template <class T>
void get_block(Reader& rd, std::vector<T>& v) {
    static_assert(std::is_trivially_copyable_v<T>);
    const uint64_t n = rd.u64();
    MLSIM_CHECK(n <= rd.left() / sizeof(T), "mpi: a truncated message");
    v.resize(n);
    rd.raw(v.data(), n * sizeof(T));
}

void put(Writer& w, const db::PreparedLayers& p) {
    w.u64(p.metric_keys.size());
    for (const auto& [name, unit] : p.metric_keys) {
        w.str(name);
        w.str(unit);
    }
    w.raw(&p.totals, sizeof p.totals);
    put_block(w, p.layers);
    put_block(w, p.metrics);
    w.str(p.text);
}

// Into `p` in place: lists and text keep their memory when `p` held a point before (rank 0 reuses the rows of
// committed points, see RowPool).
void get_prepared(Reader& rd, db::PreparedLayers& p) {
    p.metric_keys.resize(rd.u64());
    for (auto& [name, unit] : p.metric_keys) {
        rd.str(name);
        rd.str(unit);
    }
    rd.raw(&p.totals, sizeof p.totals);
    get_block(rd, p.layers);
    get_block(rd, p.metrics);
    rd.str(p.text);
    // A span past the text or a metric without a name would be read out of bounds by the writer.
    MLSIM_CHECK(p.consistent(), "mpi: a point's layers refer outside their text or metric names");
}

void put(Writer& w, const db::CollectiveRow& c) {
    w.i64(c.idx);
    for (const std::string* s : {&c.kind, &c.algorithm, &c.protocol}) w.str(*s);
    w.i64(c.ranks);
    w.i64(c.bytes);
    for (double v : {c.start_s, c.end_s, c.algbw_GBps, c.busbw_GBps}) w.f64(v);
    w.i64(c.steps);
    w.f64(c.energy_j);
}

db::CollectiveRow get_collective(Reader& rd) {
    db::CollectiveRow c;
    c.idx = rd.i64();
    for (std::string* s : {&c.kind, &c.algorithm, &c.protocol}) *s = rd.str();
    c.ranks = rd.i64();
    c.bytes = rd.i64();
    for (double* v : {&c.start_s, &c.end_s, &c.algbw_GBps, &c.busbw_GBps}) *v = rd.f64();
    c.steps = rd.i64();
    c.energy_j = rd.f64();
    return c;
}

// The fields of a parallel run's rows, in one order for writing and reading.
template <class P, class F, class I, class S>
void parallel_fields(P& p, F&& f64, I&& i64, S&& str) {
    for (auto* v : {&p.data, &p.tensor, &p.pipeline, &p.expert, &p.zero, &p.microbatches, &p.ranks}) i64(*v);
    str(p.schedule);
    for (auto* v : {&p.step_time_s, &p.samples_per_s, &p.tokens_per_s, &p.mfu}) f64(*v);
    i64(p.critical_rank);
    for (auto* v : {&p.compute_s, &p.exposed_comm_s, &p.bubble_s, &p.peak_memory_bytes, &p.device_energy_j,
                    &p.link_energy_j})
        f64(*v);
    str(p.symmetry);
    for (auto* v : {&p.simulated_ranks, &p.network_calls, &p.memo_hits}) i64(*v);
}

template <class R, class F, class I>
void rank_fields(R& r, F&& f64, I&& i64) {
    i64(r.rank);
    i64(r.stage);
    for (auto* v : {&r.compute_s, &r.comm_s, &r.exposed_comm_s, &r.bubble_s, &r.end_s, &r.energy_j, &r.flops,
                    &r.memory_bytes, &r.weights_bytes, &r.gradients_bytes, &r.optimizer_bytes,
                    &r.activations_bytes, &r.kv_cache_bytes})
        f64(*v);
}

void put(Writer& w, const db::ParallelRows& p) {
    auto f = [&](double v) { w.f64(v); };
    auto i = [&](int64_t v) { w.i64(v); };
    auto s = [&](const std::string& v) { w.str(v); };
    parallel_fields(p, f, i, s);
    w.u64(p.rank_rows.size());
    for (const db::ParallelRankRow& r : p.rank_rows) rank_fields(r, f, i);
    w.u64(p.exposed_by_purpose.size());
    for (const auto& [purpose, t] : p.exposed_by_purpose) {
        w.str(purpose);
        w.f64(t);
    }
    w.u64(p.collectives.size());
    for (const db::ParallelCollectiveRow& c : p.collectives) {
        put(w, c.call);
        w.str(c.purpose);
        w.i64(c.copies);
    }
}

db::ParallelRows get_parallel(Reader& rd) {
    db::ParallelRows p;
    auto f = [&](double& v) { v = rd.f64(); };
    auto i = [&](int64_t& v) { v = rd.i64(); };
    auto s = [&](std::string& v) { v = rd.str(); };
    parallel_fields(p, f, i, s);
    p.rank_rows.resize(rd.u64());
    for (db::ParallelRankRow& r : p.rank_rows) rank_fields(r, f, i);
    p.exposed_by_purpose.resize(rd.u64());
    for (auto& [purpose, t] : p.exposed_by_purpose) {
        purpose = rd.str();
        t = rd.f64();
    }
    p.collectives.resize(rd.u64());
    for (db::ParallelCollectiveRow& c : p.collectives) {
        c.call = get_collective(rd);
        c.purpose = rd.str();
        c.copies = rd.i64();
    }
    return p;
}

void serialize(const Outcome& o, Writer& w) {
    w.u64(o.index);
    w.u64(static_cast<uint64_t>(o.kind));
    w.str(o.hash);
    w.str(o.error);
    w.f64(o.wall_s);
    put(w, o.fail_info);
    w.str(o.point.sweep_name);
    w.i64(o.point.point);
    w.u64(o.point.factors.size());
    for (const db::SweepFactorValue& f : o.point.factors) {
        w.str(f.factor);
        w.str(f.value);
        w.opt(f.value_num);
    }
    w.str(o.description);
    put(w, o.info);
    put(w, o.rows);
    w.u64(o.parallel ? 1 : 0);
    if (o.parallel) put(w, *o.parallel);
}

// Rows of committed points, kept for the next points rank 0 receives: a systolic ResNet-50 point has 175
// layers, ~1,950 metrics and some 55 KB of text, and reading them into fresh memory (allocated, its pages
// faulted in, and freed once committed) costs rank 0 more than copying them. The points of a sweep have
// mostly the same layers, so reused lists and text rarely allocate.
class RowPool {
  public:
    db::PreparedLayers take() {
        if (m_spare.empty()) return {};
        db::PreparedLayers rows = std::move(m_spare.back());
        m_spare.pop_back();
        return rows;
    }
    void give(db::PreparedLayers&& rows) {
        if (m_spare.size() < k_max) m_spare.push_back(std::move(rows));
    }

  private:
    // Rank 0 holds at most k_max_pending points and those that arrive from the workers' points in flight;
    // a pooled point is some 100 KB.
    static constexpr std::size_t k_max = k_max_pending + 2 * k_in_flight;
    std::vector<db::PreparedLayers> m_spare;
};

Outcome deserialize(const char* bytes, std::size_t size, RowPool* pool = nullptr) {
    Reader rd(bytes, size);
    Outcome o;
    if (pool) o.rows = pool->take();
    o.index = rd.u64();
    o.kind = static_cast<Outcome::Kind>(rd.u64());
    o.hash = rd.str();
    o.error = rd.str();
    o.wall_s = rd.f64();
    o.fail_info = get_info(rd);
    o.point.sweep_name = rd.str();
    o.point.point = rd.i64();
    o.point.factors.resize(rd.u64());
    for (db::SweepFactorValue& f : o.point.factors) {
        f.factor = rd.str();
        f.value = rd.str();
        f.value_num = rd.opt();
    }
    o.description = rd.str();
    o.info = get_info(rd);
    get_prepared(rd, o.rows);
    if (rd.u64() != 0) o.parallel = get_parallel(rd);
    return o;
}

std::vector<char> serialize(const Known& k) {
    Writer w;
    for (const auto* set : {&k.ok, &k.failed}) {
        std::vector<std::string> sorted(set->begin(), set->end());
        std::sort(sorted.begin(), sorted.end());
        w.u64(sorted.size());
        for (const std::string& h : sorted) w.str(h);
    }
    return std::move(w.bytes());
}

Known deserialize_known(const std::vector<char>& bytes) {
    Reader rd(bytes.data(), bytes.size());
    Known k;
    for (auto* set : {&k.ok, &k.failed})
        for (uint64_t n = rd.u64(); n-- > 0;) set->insert(rd.str());
    return k;
}

// One point, on any rank (exp::simulate_point).
// The zoo models this rank built for its points (exp::ModelCache: shared by points that differ only in the
// device). One per process: every rank, and rank 0's threads, take their models from it.
const std::shared_ptr<exp::ModelCache>& rank_models() {
    static const auto models = std::make_shared<exp::ModelCache>();
    return models;
}

Outcome run_point(const Sweep& sweep, const SystemCache& systems, std::size_t index, const Known& known,
                  const std::shared_ptr<exp::OverrideCache>& overridden) {
    return exp::simulate_point(sweep, systems, index, known, rank_models(), overridden);
}

std::vector<char> broadcast(std::vector<char> bytes) {
    uint64_t n = bytes.size();
    MPI_Bcast(&n, 1, MPI_UINT64_T, 0, MPI_COMM_WORLD);
    bytes.resize(n);
    if (n) MPI_Bcast(bytes.data(), static_cast<int>(n), MPI_CHAR, 0, MPI_COMM_WORLD);
    return bytes;
}

// Waits for a message from rank 0 with `tag` by polling: a blocking receive keeps a core busy in Open MPI,
// and the core is what the other ranks need.
void wait_for(int tag) {
    auto pause = std::chrono::microseconds(20);
    for (int flag = 0;;) {
        MPI_Iprobe(0, tag, MPI_COMM_WORLD, &flag, MPI_STATUS_IGNORE);
        if (flag) return;
        std::this_thread::sleep_for(pause);
        pause = std::min<std::chrono::microseconds>(pause * 2, std::chrono::milliseconds(1));
    }
}

void send_index(int rank, int64_t index) {
    MPI_Send(&index, 1, MPI_INT64_T, rank, k_tag_work, MPI_COMM_WORLD);
}

// ---- Results through shared memory, on rank 0's node ----
// A worker on rank 0's node writes each result into a ring of bytes of its own, in an MPI-3 shared-memory
// window (MPI_Win_allocate_shared, which every rank of the node can load from and store to), and sends rank 0
// a notice of 16 bytes (k_tag_ring) saying where it lies; rank 0 reads the result where it lies, then stores
// how far it has read into the ring's header, which hands that space back. As a message, a result of 56-105
// KB goes by rendezvous: rank 0 copies it out of the worker's memory (process_vm_readv) before reading it,
// some 9 µs a roofline point on this project's 2-vCPU host, against ~7 µs for reading it (bench/README.md,
// thirteenth round); with the ring it reads it once, and its notice is an eager message. Rank 0 is the
// writer of every point, the serial part of a sweep, so its time a point is what bounds parallel efficiency
// (issue 15). Ranks on other nodes send messages, as does a worker whose ring has no room.
//
// A ring is [header: the bytes read so far, the capacity (64 bytes, a cache line of its own)][data:
// `capacity` bytes]. Offsets are counted from the start of the sweep (they only grow) and taken modulo the
// capacity; a result is never split: one that would cross the end starts at the beginning instead, the bytes
// skipped counted as used. Each result's space is rounded up to 64 bytes, so that the worker writing the next
// one does not share a cache line with rank 0 reading this one.
class SharedRings {
  public:
    static constexpr std::size_t k_header = 64;
    static constexpr std::size_t k_align = 64;
    static_assert(std::atomic_ref<uint64_t>::is_always_lock_free, "the ring's header is shared by processes");

    // Collective over MPI_COMM_WORLD: every rank constructs it once, at the same point of the sweep. A
    // worker on rank 0's node offers a ring of `capacity` bytes (0: none).
    SharedRings(int world_rank, int world_size, std::size_t capacity) {
        MPI_Comm_split_type(MPI_COMM_WORLD, MPI_COMM_TYPE_SHARED, 0, MPI_INFO_NULL, &m_node);
        MPI_Group world_group = MPI_GROUP_NULL, node_group = MPI_GROUP_NULL;
        MPI_Comm_group(MPI_COMM_WORLD, &world_group);
        MPI_Comm_group(m_node, &node_group);
        std::vector<int> world(static_cast<std::size_t>(world_size)), node(world.size());
        for (int r = 0; r < world_size; ++r) world[static_cast<std::size_t>(r)] = r;
        MPI_Group_translate_ranks(world_group, world_size, world.data(), node_group, node.data());
        MPI_Group_free(&world_group);
        MPI_Group_free(&node_group);
        if (node[0] == MPI_UNDEFINED) return;  // not on rank 0's node: no window (its node's ranks agree)
        if (world_rank != 0) m_capacity = capacity - capacity % k_align;
        const MPI_Aint mine = m_capacity ? static_cast<MPI_Aint>(k_header + m_capacity) : 0;
        // Each rank's part on its own pages (first touched by the worker that writes it).
        MPI_Info info = MPI_INFO_NULL;
        MPI_Info_create(&info);
        MPI_Info_set(info, "alloc_shared_noncontig", "true");
        char* base = nullptr;
        // Refused (shared memory too small for every worker's ring, a ring too large), the sweep goes on with
        // messages, and says so.
        MPI_Comm_set_errhandler(m_node, MPI_ERRORS_RETURN);
        const int ok = MPI_Win_allocate_shared(mine, 1, info, m_node, &base, &m_win) == MPI_SUCCESS ? 1 : 0;
        MPI_Info_free(&info);
        int all = 0;
        MPI_Allreduce(&ok, &all, 1, MPI_INT, MPI_MIN, m_node);
        if (!all) {
            // A window made on some ranks only cannot be freed together: it stays until MPI_Finalize.
            m_win = MPI_WIN_NULL;
            m_capacity = 0;
            if (world_rank == 0)
                std::fputs(
                    "mlsim-mpi: no shared-memory rings (MPI_Win_allocate_shared failed; "
                    "MLSIM_MPI_RING_BYTES sets their size): results go as messages\n",
                    stderr);
            return;
        }
        // One passive epoch for the whole sweep: MPI_Win_sync is what orders a worker's stores before its
        // notice, and rank 0's loads after it (MPI-3.1 section 11.5.5, the unified memory model).
        MPI_Win_lock_all(MPI_MODE_NOCHECK, m_win);
        if (m_capacity) {
            m_data = base + k_header;
            m_consumed = new (base) uint64_t(0);
            new (base + sizeof(uint64_t)) uint64_t(m_capacity);
        }
        // The headers written, then read by rank 0 (the window's size may be rounded up to whole pages: the
        // capacity is the worker's word).
        MPI_Win_sync(m_win);
        MPI_Barrier(m_node);
        if (world_rank != 0) return;
        MPI_Win_sync(m_win);
        m_rings.resize(static_cast<std::size_t>(world_size));
        for (int r = 1; r < world_size; ++r) {
            const int n = node[static_cast<std::size_t>(r)];
            if (n == MPI_UNDEFINED) continue;
            MPI_Aint size = 0;
            int unit = 0;
            char* p = nullptr;
            MPI_Win_shared_query(m_win, n, &size, &unit, &p);
            if (size <= static_cast<MPI_Aint>(k_header)) continue;
            uint64_t capacity = 0;
            std::memcpy(&capacity, p + sizeof(uint64_t), sizeof capacity);
            MLSIM_CHECK(capacity > 0 && capacity <= static_cast<uint64_t>(size) - k_header,
                        fmt::format("mpi: rank {}'s ring of {} bytes in a part of {}", r, capacity, size));
            m_rings[static_cast<std::size_t>(r)] =
                View{reinterpret_cast<uint64_t*>(p), p + k_header, static_cast<std::size_t>(capacity)};
        }
    }
    SharedRings(const SharedRings&) = delete;
    SharedRings& operator=(const SharedRings&) = delete;
    // Collective over the node's ranks, like the construction. Skipped while an exception unwinds: the rank
    // then stops them all (mpi/main.cpp, MPI_Abort), and freeing would wait for ranks that never get here.
    ~SharedRings() {
        if (std::uncaught_exceptions() > 0) return;
        if (m_win != MPI_WIN_NULL) {
            MPI_Win_unlock_all(m_win);
            MPI_Win_free(&m_win);
        }
        if (m_node != MPI_COMM_NULL) MPI_Comm_free(&m_node);
    }

    // ---- A worker ----
    // Room for the next result in this rank's ring (none without a ring): the longer of the two contiguous
    // runs of free bytes, at the current place or at the ring's start, unless the first holds the result
    // before (and a quarter more). A result written there is published with publish(); one that did not fit
    // (the Writer went on in its buffer) is sent as a message and its room stays free.
    struct Room {
        char* place = nullptr;
        std::size_t size = 0;
        uint64_t start = 0;  // its offset, counted from the start of the sweep
    };
    Room reserve() {
        if (!m_capacity) return {};
        const uint64_t consumed = std::atomic_ref<uint64_t>(*m_consumed).load(std::memory_order_acquire);
        const std::size_t free = m_capacity - static_cast<std::size_t>(m_produced - consumed);
        const std::size_t at = m_produced % m_capacity;
        const std::size_t here = std::min(free, m_capacity - at);
        // At the ring's start, up to where rank 0 reads (none when the free bytes do not wrap around).
        const std::size_t wrapped = free - here;
        const std::size_t want = m_last + m_last / 4;
        if (here >= want || here >= wrapped) return Room{m_data + at, here, m_produced};
        return Room{m_data, wrapped, m_produced + (m_capacity - at)};
    }
    // Tells rank 0 that `size` bytes of a result lie at `room` (written by a Writer in place there).
    void publish(const Room& room, std::size_t size) {
        MLSIM_CHECK(size <= room.size, "mpi: a result past its room in the ring");
        m_last = size;
        m_produced = room.start + (size + k_align - 1) / k_align * k_align;
        std::atomic_thread_fence(std::memory_order_release);
        MPI_Win_sync(m_win);
        const uint64_t notice[2] = {room.start, size};
        MPI_Send(notice, 2, MPI_UINT64_T, 0, k_tag_ring, MPI_COMM_WORLD);
    }

    // ---- Rank 0 ----
    // Receives the notice `status` announced (k_tag_ring, from a worker with a ring), reads that result
    // where it lies with `read`, and hands its space back.
    template <class Read>
    void take(const MPI_Status& status, Read&& read) {
        uint64_t notice[2] = {0, 0};
        MPI_Recv(notice, 2, MPI_UINT64_T, status.MPI_SOURCE, k_tag_ring, MPI_COMM_WORLD, MPI_STATUS_IGNORE);
        MLSIM_CHECK(status.MPI_SOURCE > 0 && static_cast<std::size_t>(status.MPI_SOURCE) < m_rings.size() &&
                        m_rings[static_cast<std::size_t>(status.MPI_SOURCE)].data,
                    fmt::format("mpi: a ring notice from rank {}, which has no ring", status.MPI_SOURCE));
        const View& ring = m_rings[static_cast<std::size_t>(status.MPI_SOURCE)];
        const auto [start, size] = notice;
        const uint64_t at = start % ring.capacity;
        MLSIM_CHECK(size <= ring.capacity - at, "mpi: a ring notice past the ring's end");
        MPI_Win_sync(m_win);
        std::atomic_thread_fence(std::memory_order_acquire);
        read(ring.data + at, static_cast<std::size_t>(size));
        // Read (copied into rank 0's rows): the worker may write over it.
        const uint64_t end = start + (size + k_align - 1) / k_align * k_align;
        std::atomic_ref<uint64_t>(*ring.consumed).store(end, std::memory_order_release);
    }

  private:
    struct View {
        uint64_t* consumed = nullptr;
        char* data = nullptr;
        std::size_t capacity = 0;
    };
    MPI_Comm m_node = MPI_COMM_NULL;
    MPI_Win m_win = MPI_WIN_NULL;
    // A worker's own ring
    std::size_t m_capacity = 0;
    char* m_data = nullptr;
    uint64_t* m_consumed = nullptr;
    uint64_t m_produced = 0;
    std::size_t m_last = 0;  // the size of the last result placed
    // Rank 0: the workers' rings by world rank (data null: none)
    std::vector<View> m_rings;
};

// ---- Other ranks ----
void work(const Sweep& sweep, const SystemCache& systems,
          const std::shared_ptr<exp::OverrideCache>& overridden) {
    const std::size_t ring_capacity = ring_bytes();  // before any message, as on rank 0
    const Known known = deserialize_known(broadcast({}));
    int rank = 0, ranks = 1;
    MPI_Comm_rank(MPI_COMM_WORLD, &rank);
    MPI_Comm_size(MPI_COMM_WORLD, &ranks);
    SharedRings rings(rank, ranks, ring_capacity);
    CpuAccount cpu;
    std::deque<int64_t> queue;
    bool last = false;  // rank 0 said there are no more points
    struct Sending {
        std::vector<char> bytes;
        MPI_Request request = MPI_REQUEST_NULL;
    };
    std::list<Sending> sending;  // results on their way to rank 0 (a list: the buffers must not move)
    std::vector<std::vector<char>> spare;  // buffers of sent results, for the next ones (their memory kept)
    // Frees the finished sends; with `all`, waits (polling) until every send has finished.
    auto reap = [&](bool all) {
        auto pause = std::chrono::microseconds(20);
        while (!sending.empty()) {
            for (auto it = sending.begin(); it != sending.end();) {
                int done = 0;
                MPI_Test(&it->request, &done, MPI_STATUS_IGNORE);
                if (done) {
                    spare.push_back(std::move(it->bytes));
                    it = sending.erase(it);
                } else {
                    it = std::next(it);
                }
            }
            if (!all || sending.empty()) return;
            std::this_thread::sleep_for(pause);
            pause = std::min<std::chrono::microseconds>(pause * 2, std::chrono::milliseconds(1));
        }
    };
    auto receive = [&] {
        wait_for(k_tag_work);
        int64_t index = 0;
        MPI_Recv(&index, 1, MPI_INT64_T, 0, k_tag_work, MPI_COMM_WORLD, MPI_STATUS_IGNORE);
        if (index < 0)
            last = true;
        else
            queue.push_back(index);
    };
    while (true) {
        if (queue.empty()) {
            if (last) break;
            receive();
            continue;
        }
        const auto index = static_cast<std::size_t>(queue.front());
        queue.pop_front();
        // Sent without waiting: a result of many layers goes by rendezvous, and a blocking send would
        // wait (spinning) until rank 0, busy committing, posts its receive.
        const double t0 = cpu.on ? thread_cpu_s() : 0;
        std::vector<char> buffer;
        if (!spare.empty()) {
            buffer = std::move(spare.back());
            spare.pop_back();
        }
        const SharedRings::Room room = rings.reserve();
        Writer w(room.place, room.size, std::move(buffer));
        serialize(run_point(sweep, systems, index, known, overridden), w);
        if (w.in_place()) {
            rings.publish(room, w.size());
            spare.push_back(w.buffer());
        } else {
            sending.emplace_back();
            sending.back().bytes = std::move(w.bytes());
            MPI_Isend(sending.back().bytes.data(), static_cast<int>(sending.back().bytes.size()), MPI_CHAR, 0,
                      k_tag_result, MPI_COMM_WORLD, &sending.back().request);
        }
        if (cpu.on) cpu.simulating += thread_cpu_s() - t0;
        ++cpu.points;
        reap(false);
        for (int flag = 1; flag && !last;) {
            MPI_Iprobe(0, k_tag_work, MPI_COMM_WORLD, &flag, MPI_STATUS_IGNORE);
            if (flag) receive();
        }
    }
    reap(true);
    // Rank 0 may still be committing: wait for its word without spinning (MPI_Finalize would).
    wait_for(k_tag_done);
    MPI_Recv(nullptr, 0, MPI_CHAR, 0, k_tag_done, MPI_COMM_WORLD, MPI_STATUS_IGNORE);
    cpu.report(rank);
}

// ---- Rank 0 ----
// The other ranks, as exp::write_sweep's remote workers: each holds k_in_flight points at once and gets its
// next one for each result it sends, unless rank 0 holds `hold` results uncommitted; it is then owed one,
// served in turn as commits make room (a worker keeps simulating the points it holds meanwhile).
class MpiWorkers final : public exp::RemoteWorkers {
  public:
    MpiWorkers(int ranks, std::size_t hold, SharedRings& rings)
        : m_ranks(ranks),
          m_rings(rings),
          m_hold(hold),
          m_told_last(static_cast<std::size_t>(ranks), false),
          m_busy(ranks - 1) {}

    void start(std::function<std::optional<std::size_t>(int, bool)> take) override {
        m_take = std::move(take);
        for (int r = 1; r < m_ranks; ++r)
            for (int k = 0; k < k_in_flight; ++k) hand_out(r);
    }

    bool receive(const std::function<std::size_t(Outcome&&)>& hand_in) override {
        bool any = false;
        for (int flag = 1; flag;) {
            MPI_Status status;
            // Workers send rank 0 results (k_tag_result) and notices of results in their rings (k_tag_ring)
            // only.
            MPI_Iprobe(MPI_ANY_SOURCE, MPI_ANY_TAG, MPI_COMM_WORLD, &flag, &status);
            if (!flag) break;
            any = true;
            std::size_t held = 0;
            if (status.MPI_TAG == k_tag_ring) {
                m_rings.take(status, [&](const char* bytes, std::size_t size) {
                    held = hand_in(deserialize(bytes, size, &m_pool));
                });
            } else {
                MLSIM_CHECK(status.MPI_TAG == k_tag_result,
                            fmt::format("mpi: rank 0 got a message tagged {}", status.MPI_TAG));
                int count = 0;
                MPI_Get_count(&status, MPI_CHAR, &count);
                m_buffer.resize(static_cast<std::size_t>(count));
                MPI_Recv(m_buffer.data(), count, MPI_CHAR, status.MPI_SOURCE, k_tag_result, MPI_COMM_WORLD,
                         MPI_STATUS_IGNORE);
                held = hand_in(deserialize(m_buffer.data(), m_buffer.size(), &m_pool));
            }
            m_owed.push_back(status.MPI_SOURCE);
            room(held);
        }
        return any;
    }

    void room(std::size_t held) override {
        // Below the bound every worker owed a point gets one; at it, only the rest of its run.
        for (auto it = m_owed.begin(); it != m_owed.end();) {
            if (hand_out(*it, held < m_hold))
                it = m_owed.erase(it);
            else
                ++it;
        }
    }

    void finish() override {
        room(0);  // nothing is held now: the last workers owed a point are told there is none
        MLSIM_CHECK(m_busy == 0, fmt::format("mpi sweep: {} ranks still working", m_busy));
        for (int r = 1; r < m_ranks; ++r) MPI_Send(nullptr, 0, MPI_CHAR, r, k_tag_done, MPI_COMM_WORLD);
    }

    void recycle(db::PreparedLayers&& rows) override { m_pool.give(std::move(rows)); }

  private:
    // Sends a worker its next index, or once -1 when every point is handed out; with `claim` false only the
    // next point of its run (exp::RemoteWorkers::start). Whether the worker is served (false: its run is used
    // up and it may not claim another).
    bool hand_out(int rank, bool claim = true) {
        if (m_told_last[static_cast<std::size_t>(rank)]) return true;
        const std::optional<std::size_t> i = m_take(rank, claim);
        if (!i && !claim) return false;
        send_index(rank, i ? static_cast<int64_t>(*i) : -1);
        if (!i) {
            m_told_last[static_cast<std::size_t>(rank)] = true;
            --m_busy;
        }
        return true;
    }

    int m_ranks;
    SharedRings& m_rings;
    std::size_t m_hold;
    std::function<std::optional<std::size_t>(int, bool)> m_take;
    std::vector<bool> m_told_last;
    int m_busy;  // worker ranks that have not been told there is nothing left
    std::deque<int> m_owed;
    std::vector<char> m_buffer;
    RowPool m_pool;
};

SweepSummary coordinate(const Sweep& sweep, const SystemCache& systems, db::ResultsDb& db,
                        const exp::SweepRunOptions& options, int ranks) {
    const std::size_t hold = max_pending();  // before any message: a bad value stops every rank at once
    ring_bytes();                            // checked here too, for the same reason
    const Known known =
        deserialize_known(broadcast(serialize(exp::read_known_runs(db, options.retry_failed))));
    SharedRings rings(0, ranks, 0);
    CpuAccount cpu;
    exp::WriterCpu writer;
    MpiWorkers workers(ranks, hold, rings);
    SweepSummary s = exp::write_sweep(sweep, systems, db, options, known, rank_models(), hold,
                                      ranks > 1 ? &workers : nullptr, cpu.on ? &writer : nullptr);
    cpu.simulating = writer.simulating;
    cpu.committing = writer.committing;
    cpu.points = writer.points;
    cpu.checkpoints = db.background_checkpoint_cpu_s();
    cpu.receiving = writer.receiving;
    cpu.report(0);
    return s;
}

}  // namespace

exp::DistributedSweep make_backend() {
    exp::DistributedSweep b;
    MPI_Comm_rank(MPI_COMM_WORLD, &b.rank);
    MPI_Comm_size(MPI_COMM_WORLD, &b.ranks);
    const int ranks = b.ranks;
    b.coordinate = [ranks](const Sweep& sweep, const SystemCache& systems, db::ResultsDb& db,
                           const exp::SweepRunOptions& options) {
        return coordinate(sweep, systems, db, options, ranks);
    };
    b.work = [](const Sweep& sweep, const SystemCache& systems,
                const std::shared_ptr<exp::OverrideCache>& overridden) { work(sweep, systems, overridden); };
    return b;
}

}  // namespace mlsim::mpi
