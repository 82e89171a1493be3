#pragma once
// The writer of a sweep: how `mlsim sweep` commits its points, threaded (run_sweep) or over MPI (rank 0,
// mpi/sweep_mpi.cpp).
//
// Contract:
// - The calling thread is the writer. Points are simulated by `jobs - 1` threads of their own, by the writer
//   itself whenever it has nothing to commit or receive, and by remote workers (other MPI ranks) when given.
//   Simulating touches no database (simulate_point).
// - The writer commits the points in point order (outcomes that arrive early wait), k_commit_batch points a
//   transaction once k_min_batch are ready in order (or none is left to simulate), so run_ids follow the
//   point order and the rows written never depend on `jobs` or the number of ranks, apart from wall times.
//   A SIGKILL leaves whole batches only, and a rerun resumes (every point once).
// - A point resolving to a config with an ok run in the file at the start (KnownRuns) is not simulated; its
//   run is linked. A point whose description failed before is linked to that failure unless retry_failed.
//   A point another live process holds (its claim) is retried after the others. A repeat of an earlier
//   point of the sweep shares its run. A user error in a point is a failed run and the sweep goes on;
//   anything else stops the sweep (points in flight finish) and is rethrown.
// - Bounded memory: the writer holds at most `hold` outcomes uncommitted before its threads wait (each holds
//   a point's rows, ~60 KB for a ResNet-50 roofline point); remote workers are bounded by RemoteWorkers.
// - Other processes writing a sweep to the same file (db::ResultsDb::announce_writer): a writer that finds
// one
//   when it starts takes its points from the last to the first, and once any is found (checked every
//   k_presence_interval) the writer commits each point as soon as it is ready in order and, before each
//   point its threads simulate, skips the configs the others recorded meanwhile: two processes running the
//   same sweep at once work towards each other and share its points out, each point recorded once (run_ids
//   then follow the order of the commits of both). A point simulated here that another process recorded
//   first is counted (SweepSummary::recorded_elsewhere).
// - Progress goes only through SweepRunOptions::progress, called from the writer's thread.
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <unordered_set>

#include "db/results_db.h"
#include "experiment/sweep.h"

namespace mlsim::exp {

// Points the writer commits in one transaction (ResultsDb::begin_batch) between two looks for arriving
// outcomes: one commit per point cost about as much CPU as simulating a roofline point.
constexpr int k_commit_batch = 64;
// Points ready in order at which the writer stops simulating and commits them: a batch's commit costs about
// as much as a point's rows, so batches of one point (a writer alone, simulating each point in turn) would
// double the writer's cost.
constexpr std::size_t k_min_batch = 32;
// The same while other writers share the file: a commit per point cost each of two processes sweeping one
// file 270 page writes a ResNet-50 point against 51 alone (each transaction rewrites the b-trees' last pages
// and makes the other process read them again), and two processes took 7.4 s for what one did in 3.4 s. The
// writers take their points from opposite ends (sweep_writer.cpp), so only where they meet do a few points
// run in both (at most this many each), the other's rows then found at commit.
constexpr std::size_t k_shared_batch = 8;
// Outcomes the writer holds uncommitted (arrived, or simulated) beyond which its simulating threads, and the
// remote workers that send one, wait for a commit to make room: simulating faster than the writer writes
// (roofline points: ~0.3 ms a point against ~0.4 ms to write it) would otherwise fill its memory with the
// whole sweep's rows, and each held point took fresh pages (2 % of the writer's time zeroing and faulting
// them in).
constexpr std::size_t k_max_held = 2 * static_cast<std::size_t>(k_commit_batch);
// While the results file's log is copied so that it can start over (ResultsDb::log_restart_due, a few
// milliseconds), the writer holds its commits, simulating meanwhile, up to this many times its bound, and its
// threads and remote workers go on simulating as if it held that many times fewer: a writer that is the
// bottleneck holds about its bound at all times, and would otherwise begin a batch at once, keeping the log
// growing, or leave its workers without points.
constexpr std::size_t k_restart_hold = 4;
// Points a simulating thread, the writer or a remote worker takes at once: a run of consecutive points
// (fewer towards the sweep's end, one while other writers share the file). Neighbouring points of a sweep
// share most of their work (the systolic model's tile searches and plans kept across points, arch/systolic/
// tiling.h), so a worker given every other point simulates each more slowly: 1.25-1.28 against 1.11-1.16 ms
// a point, one rank, a 1,980-point systolic sweep against its 990 even points. Two ranks taking points one
// at a time interleave so. Alternated 8 times (bench/README.md, fourteenth round), 2 ranks: systolic
// 1,260 points/s with runs of 1, 1,308 with 16, 1,309 with 32 (CPU a point 1.557, 1.495, 1.498 ms);
// roofline 5,188, 5,157 and 5,036 (the writer, the bottleneck there, simulates more of its own runs). Over
// four A/Bs each, runs of 16 gained systolic points 3 % and cost roofline ones 1.3 %, within the noise.
constexpr std::size_t k_run = 16;
// How often a writer alone on its file looks for other sweep writers of it: a read of the few rows of
// `claims`, whose cost at this interval did not show in a 6-round A/B of a 2,000-point roofline sweep
// (bench/README.md, tenth round), against the points a second writer starting meanwhile may simulate before
// the two know of each other (a roofline point takes ~0.3 ms).
constexpr std::chrono::milliseconds k_presence_interval{5};

// What simulating one point found: everything the writer needs to commit it.
struct PointOutcome {
    enum class Kind : uint64_t {
        ran,            // simulated: info and rows
        failed,         // a user error (before or while simulating): error
        known_ok,       // resolved to a config with an ok run at the start of the sweep: not simulated
        failed_before,  // its description failed on an earlier run (and no retry_failed): not prepared
    };
    uint64_t index = 0;
    Kind kind = Kind::ran;
    std::string hash;  // the resolved config's hash; empty when preparing failed or was skipped
    std::string error;
    double wall_s = 0;
    db::RunInfo fail_info;  // identifies the point as a failure (point_description_yaml)
    db::SweepPoint point;   // sweep name, index and factor values
    std::string description;
    db::RunInfo info;
    db::PreparedLayers rows;                   // checked and encoded where it was simulated
    std::optional<db::ParallelRows> parallel;  // a point with a parallel plan: its step's tables
};

// The config hashes of a results file's runs when the sweep starts: ok runs, and failed ones unless
// retry_failed. A point resolving to one is not simulated.
struct KnownRuns {
    std::unordered_set<std::string> ok, failed;
};
KnownRuns read_known_runs(const db::ResultsDb& db, bool retry_failed);

// Point `index`, prepared and simulated (what a sweep does before it touches the database), with the zoo
// models of `models` and the overridden systems of `overridden`, shared by the points of the process.
// `done_elsewhere`, when given, names more resolved configs not to simulate (another process recorded them).
PointOutcome simulate_point(const Sweep& sweep, const SystemCache& systems, std::size_t index,
                            const KnownRuns& known, const std::shared_ptr<ModelCache>& models,
                            const std::shared_ptr<OverrideCache>& overridden,
                            const std::function<bool(const std::string&)>& done_elsewhere = {});

// Workers in other processes that simulate points for the writer (mpi/sweep_mpi.cpp). Called from the
// writer's thread only.
class RemoteWorkers {
  public:
    virtual ~RemoteWorkers() = default;
    // Before the writer's loop: hands the workers their first points, drawing each index from `take` with the
    // worker's number (each worker gets runs of consecutive points, k_run; nullopt once every point is handed
    // out, or the sweep stops); `take` stays valid until finish(). With `claim` false it gives only the next
    // point of the worker's current run, nullopt once that is used up: a worker that the bound on held
    // outcomes would make wait still gets the rest of its run (the writer may be waiting for one of them).
    virtual void start(std::function<std::optional<std::size_t>(int, bool)> take) = 0;
    // Hands every outcome that has arrived to the writer (`hand_in` returns how many it then holds
    // uncommitted, as counted against the bound: see k_restart_hold); whether any had. A worker may be given
    // its next point at once while the writer holds fewer than its bound.
    virtual bool receive(const std::function<std::size_t(PointOutcome&&)>& hand_in) = 0;
    // A commit made room: workers waiting for it get their next points while `held` (counted so) stays below
    // the bound (the rest of their runs whatever `held`).
    virtual void room(std::size_t held) = 0;
    // Every point is committed: the workers are told there is nothing more, and that the sweep is done.
    virtual void finish() = 0;
    // The rows of a committed outcome, for the next outcomes received (their memory reused).
    virtual void recycle(db::PreparedLayers&& rows) = 0;
};

// Where the writer's thread spent its CPU time (benchmarks: MLSIM_SWEEP_CPU, mpi/sweep_mpi.cpp).
struct WriterCpu {
    double simulating = 0;  // in simulate_point
    double committing = 0;  // in batches of commits (receiving during a batch included)
    double receiving =
        0;  // in RemoteWorkers::receive (taking the remote workers' outcomes), in batches or not
    std::size_t points = 0;  // simulated by the writer's thread
};

// Runs the sweep with the calling thread as its writer (see the contract). `hold`: the bound on uncommitted
// outcomes (>= 1). `remote`: null for threads only. `cpu`, when given, is filled in.
SweepSummary write_sweep(const Sweep& sweep, const SystemCache& systems, db::ResultsDb& db,
                         const SweepRunOptions& options, const KnownRuns& known,
                         const std::shared_ptr<ModelCache>& models, std::size_t hold, RemoteWorkers* remote,
                         WriterCpu* cpu = nullptr);

// CPU time of the calling thread, seconds.
double thread_cpu_s();

}  // namespace mlsim::exp
