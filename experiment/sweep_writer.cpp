#include "experiment/sweep_writer.h"

#include <fmt/format.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <ctime>
#include <deque>
#include <exception>
#include <mutex>
#include <set>
#include <string_view>
#include <thread>
#include <tuple>
#include <unordered_set>
#include <utility>
#include <vector>

#include "db/claim_guard.h"
#include "sim/config/error.h"
#include "sim/core/check.h"

namespace mlsim::exp {

namespace {

using Clock = std::chrono::steady_clock;
// Failure messages kept for the summary.
constexpr std::size_t k_max_errors = 5;

}  // namespace

double thread_cpu_s() {
    timespec t{};
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &t);
    return static_cast<double>(t.tv_sec) + 1e-9 * static_cast<double>(t.tv_nsec);
}

KnownRuns read_known_runs(const db::ResultsDb& db, bool retry_failed) {
    KnownRuns k;
    for (const char* status : {"ok", "error"}) {
        if (retry_failed && std::string_view(status) == "error") continue;
        int64_t from = 0;
        std::vector<std::string> hashes = db.run_hashes_after(status, from);
        (status == std::string_view("ok") ? k.ok : k.failed).insert(hashes.begin(), hashes.end());
    }
    return k;
}

PointOutcome simulate_point(const Sweep& sweep, const SystemCache& systems, std::size_t index,
                            const KnownRuns& known, const std::shared_ptr<ModelCache>& models,
                            const std::shared_ptr<OverrideCache>& overridden,
                            const std::function<bool(const std::string&)>& done_elsewhere) {
    const auto t0 = Clock::now();
    PointOutcome out;
    out.index = index;
    SweepPointConfig pc = make_point(sweep, index);
    auto sys = systems.find(pc.options.system);
    MLSIM_CHECK(sys != systems.end(), "sweep: a system missing from check_points()");
    pc.options.preloaded_system = sys->second;
    pc.options.model_cache = models;
    pc.options.override_cache = overridden;
    out.fail_info = failed_run_info(pc, systems);
    out.point = pc.db_point;
    out.description = pc.description;
    if (known.failed.count(out.fail_info.config_hash)) {
        out.kind = PointOutcome::Kind::failed_before;
        return out;
    }
    std::optional<PreparedExperiment> prepared;
    try {
        prepared.emplace(prepare_experiment(pc.options));
        out.hash = prepared->result->info.config_hash;
        if (known.ok.count(out.hash) || (done_elsewhere && done_elsewhere(out.hash))) {
            out.kind = PointOutcome::Kind::known_ok;
            return out;
        }
        ExperimentResult r = simulate(std::move(*prepared));
        if (r.parallel_run) out.parallel = parallel_rows(r);
        out.info = std::move(r.info);
        prepare_rows(std::move(r.layers), pc.options, out.rows);
        out.kind = PointOutcome::Kind::ran;
    } catch (const cfg::UserError& e) {
        out.kind = PointOutcome::Kind::failed;
        out.error = locate_in_sweep(sweep, e.what());
    }
    out.wall_s = std::chrono::duration<double>(Clock::now() - t0).count();
    return out;
}

SweepSummary write_sweep(const Sweep& sweep, const SystemCache& systems, db::ResultsDb& db,
                         const SweepRunOptions& options, const KnownRuns& known,
                         const std::shared_ptr<ModelCache>& models, std::size_t hold, RemoteWorkers* remote,
                         WriterCpu* cpu) {
    MLSIM_CHECK(options.jobs >= 1, fmt::format("write_sweep: jobs = {}", options.jobs));
    MLSIM_CHECK(hold >= 1, "write_sweep: hold = 0");
    const std::size_t total = sweep.point_count();
    const auto start = Clock::now();
    // A rerun of failed points counts only the failures of this round as settling a point.
    const int64_t errors_after = options.retry_failed ? db.max_run_id() : 0;
    // Every write below refers to a run written before it or found in the file (db/results_db.h).
    const db::ResultsDb::ReferenceChecksOff unchecked(db);
    // The points' overridden systems, from check_points() when it kept them.
    const std::shared_ptr<OverrideCache> overridden =
        options.overridden ? options.overridden : std::make_shared<OverrideCache>();
    // Other sweep writers of the file (see the contract): this process's row in `claims` until it returns.
    const bool others_at_start = db.announce_writer();
    struct Withdraw {
        db::ResultsDb& db;
        ~Withdraw() {
            try {
                db.withdraw_writer();
            } catch (...) {  // NOLINT: a row left behind is stale once this process ends
            }
        }
    } withdraw{db};
    // The k-th point taken: from the last to the first when another writer was there first.
    const bool reverse = others_at_start;
    auto point_at = [&](std::size_t k) { return reverse ? total - 1 - k : k; };
    // Whether other writers share the file (then commits are not batched), and the configs they recorded.
    std::atomic<bool> shared{others_at_start};
    auto last_presence_check = Clock::now();
    int64_t seen_run = db.max_run_id();         // runs committed before: in `known`
    std::unordered_set<std::string> others_ok;  // guarded by mutex (declared below)

    // The writer's threads, its own simulating and the remote workers draw from one counter, each a run of
    // consecutive points at a time (see k_run in sweep_writer.h).
    std::atomic<std::size_t> next{0};
    std::atomic<bool> stop{false};
    std::mutex mutex;
    std::condition_variable room;                 // the writer committed, or the sweep stops
    std::map<std::size_t, PointOutcome> arrived;  // guarded by mutex: the threads' outcomes
    std::size_t held = 0;            // guarded by mutex: the writer's uncommitted outcomes (pending)
    std::exception_ptr local_fatal;  // guarded by mutex
    const std::function<bool(const std::string&)> done_elsewhere = [&](const std::string& hash) {
        if (!shared.load()) return false;
        std::lock_guard lock(mutex);
        return others_ok.count(hash) > 0;
    };
    // A thread takes a point only while fewer than `hold` outcomes wait to be committed (`shared_hold` while
    // other writers share the file: simulating far ahead of the commits would take points the others are
    // about to record), and hands in what it took whatever the count then: the writer may be waiting for
    // exactly that point.
    const std::size_t shared_hold =
        std::min(hold, std::max<std::size_t>(k_shared_batch, static_cast<std::size_t>(options.jobs)));
    // The next point of `run` (its index in the order taken), claiming a new run from the counter when it is
    // used up: k_run points, fewer towards the end (a sixteenth of what is left, so that the last runs do
    // not keep one worker busy while the others have nothing), one while other writers share the file (each
    // point is then taken as late as possible, so that fewer are simulated by both).
    struct Run {
        std::size_t cur = 0, end = 0;
    };
    // (`claim` false: only the run's next point, none once it is used up.) A worker finishes the run it began
    // whatever the bound on held outcomes, which it exceeds by fewer than k_run: the writer may be waiting
    // for a point of it.
    auto take = [&](Run& run, bool claim) -> std::optional<std::size_t> {
        if (run.cur < run.end) return run.cur++;
        if (!claim) return std::nullopt;
        const std::size_t at = next.load();
        const std::size_t n =
            shared.load() ? 1 : std::clamp<std::size_t>((total - std::min(at, total)) / 16, 1, k_run);
        const std::size_t k = next.fetch_add(n);
        if (k >= total) return std::nullopt;
        run.cur = k + 1;
        run.end = std::min(k + n, total);
        return k;
    };
    auto local = [&] {
        try {
            Run run;
            while (!stop.load()) {
                if (run.cur >= run.end) {
                    std::unique_lock lock(mutex);
                    room.wait(lock, [&] {
                        return stop.load() || arrived.size() + held < (shared.load() ? shared_hold : hold);
                    });
                }
                if (stop.load()) break;
                const std::optional<std::size_t> k = take(run, true);
                if (!k) break;
                PointOutcome o =
                    simulate_point(sweep, systems, point_at(*k), known, models, overridden, done_elsewhere);
                std::lock_guard lock(mutex);
                arrived.emplace(*k, std::move(o));
            }
        } catch (...) {
            std::lock_guard lock(mutex);
            if (!local_fatal) local_fatal = std::current_exception();
            stop = true;
        }
    };
    std::vector<std::thread> threads;
    struct Joiner {
        std::atomic<bool>& stop;
        std::mutex& mutex;
        std::condition_variable& room;
        std::vector<std::thread>& threads;
        ~Joiner() {
            {
                std::lock_guard lock(mutex);
                stop = true;
            }
            room.notify_all();
            for (std::thread& t : threads)
                if (t.joinable()) t.join();
        }
    } joiner{stop, mutex, room, threads};
    // This thread is the writer, and simulates points itself whenever it has nothing to commit or receive
    // (see the main loop): so `jobs` 1 adds no thread, and with a core of its own the writer never waits
    // for a simulating thread of its own. Each further job is one more simulating thread.
    for (int t = 1; t < options.jobs; ++t) threads.emplace_back(local);
    std::map<int, Run> remote_runs;  // by worker (the writer's thread only)
    if (remote)
        remote->start([&](int worker, bool claim) -> std::optional<std::size_t> {
            if (stop.load()) return std::nullopt;
            const std::optional<std::size_t> k = take(remote_runs[worker], claim);
            return k ? std::optional<std::size_t>(point_at(*k)) : std::nullopt;
        });
    Run own_run;  // the writer's own simulating

    std::size_t committed = 0, failed = 0, ran = 0, skipped = 0, failed_before = 0, recorded_elsewhere = 0,
                repeated = 0;
    std::vector<std::string> repeat_examples;
    std::map<std::string, std::size_t> claimed;  // hash -> the first point of this run with it
    std::vector<std::tuple<db::SweepPoint, std::string, std::string>> repeats;  // point, hash, description
    std::vector<std::pair<std::size_t, std::string>> errors;
    std::map<std::string, std::pair<int64_t, std::string>> failed_by_hash;
    std::map<int64_t, std::string> failed_here;  // run id -> error, of the failed runs this process recorded
    std::deque<PointOutcome> busy;               // held by another live process: retried after the others

    // Commits one point; false when another process holds it. `in_batch`: inside a batch transaction, whose
    // claims are not written (ResultsDb::claim) and so have nothing to release.
    auto commit = [&](PointOutcome& o, bool in_batch) -> bool {
        if (o.kind == PointOutcome::Kind::failed_before) {
            if (auto id = db.find_run(o.fail_info.config_hash, "error")) {
                db.link_sweep_point(o.point, *id);
                ++failed_before;
                return true;
            }
            // Gone since the start: prepare and simulate it here.
            o = simulate_point(sweep, systems, o.index, KnownRuns{}, models, overridden);
        }
        db::ClaimQuery query;
        query.error_hash = o.fail_info.config_hash;
        query.errors_after = errors_after;
        query.point = &o.point;
        if (!o.hash.empty()) {
            if (auto [it, fresh] = claimed.emplace(o.hash, o.index); !fresh) {
                // The configuration of an earlier point of this sweep (two names of one file, a factor
                // the model ignores): one run, which `sweeps` links to the sweep once, at that point.
                repeats.emplace_back(o.point, o.hash, o.description);
                ++skipped;
                ++repeated;
                if (repeat_examples.size() < k_max_errors)
                    repeat_examples.push_back(
                        fmt::format("point {} ({}) = point {}", o.index, o.description, it->second));
                return true;
            }
            query.key = query.ok_hash = o.hash;
        } else {
            query.key = o.fail_info.config_hash;
        }
        const db::ClaimResult claim = db.claim(query);
        if (claim.state == db::ClaimResult::State::done) {
            db.link_sweep_point(o.point, claim.run_id);
            if (auto own = failed_here.find(claim.run_id); own != failed_here.end()) {
                // A point that fails as an earlier point of this sweep did (the same configuration,
                // found by the failure's hash): a failure of this run, not one recorded before or by
                // another process.
                ++failed;
                errors.emplace_back(
                    o.index, fmt::format("point {} ({}): same configuration as a failed point: {}", o.index,
                                         o.description, own->second));
                return true;
            }
            ++(claim.run_ok ? skipped : failed_before);
            if (o.kind == PointOutcome::Kind::ran || o.kind == PointOutcome::Kind::failed)
                ++recorded_elsewhere;
            return true;
        }
        if (claim.state == db::ClaimResult::State::busy) {
            if (!o.hash.empty()) claimed.erase(o.hash);  // retried later: its first point again
            return false;
        }
        db::ClaimGuard guard(db, query.key);
        if (o.kind == PointOutcome::Kind::known_ok)  // its run is gone since the start: simulate it here
            o = simulate_point(sweep, systems, o.index, KnownRuns{}, models, overridden);
        if (!in_batch) o.point.claim_key = query.key;
        if (o.kind == PointOutcome::Kind::ran) {
            db.record_run(o.info, o.rows, o.wall_s, &o.point, o.parallel ? &*o.parallel : nullptr);
            guard.released();
            ++ran;
        } else {
            const int64_t id = db.record_failed_run(o.fail_info, o.error, o.wall_s, &o.point);
            guard.released();
            failed_here.emplace(id, o.error);
            ++failed;
            errors.emplace_back(o.index, fmt::format("point {} ({}): {}", o.index, o.description, o.error));
            if (!o.hash.empty()) failed_by_hash.emplace(o.hash, std::make_pair(id, o.error));
        }
        return true;
    };

    auto report = [&](bool final) {
        if (options.progress) options.progress(SweepProgress{committed + busy.size(), failed, total, final});
    };
    auto last_report = Clock::now();
    std::map<std::size_t, PointOutcome> pending;  // by the order taken: waiting for the points before them
    // Whether the writer waits for the results file's log to start over before its next batch (see
    // batch_due).
    auto restart_wait = [&] { return !shared.load() && db.log_restart_due(); };
    // The writer's uncommitted outcomes as its simulating threads and the remote workers count them against
    // `hold`: while it waits for the log to start over, it holds up to k_restart_hold times as many, and they
    // go on simulating meanwhile.
    auto held_count = [&] { return restart_wait() ? pending.size() / k_restart_hold : pending.size(); };
    // Tells the threads how many outcomes the writer holds, waking them when that made room.
    auto update_held = [&] {
        bool more_room = false;
        const std::size_t now = held_count();
        {
            std::lock_guard lock(mutex);
            more_room = now < held;
            held = now;
        }
        if (more_room) room.notify_all();
    };
    // Takes every outcome that has arrived; false when none had.
    auto receive = [&] {
        const double t0 = cpu && remote ? thread_cpu_s() : 0;
        bool any = remote && remote->receive([&](PointOutcome&& o) {
            const std::size_t k = point_at(o.index);  // point_at is its own inverse
            pending.emplace(k, std::move(o));
            return held_count();
        });
        if (cpu && remote) cpu->receiving += thread_cpu_s() - t0;
        {
            std::lock_guard lock(mutex);
            if (local_fatal) std::rethrow_exception(local_fatal);
            if (!arrived.empty()) any = true;
            pending.merge(arrived);
        }
        update_held();
        return any;
    };
    auto head_ready = [&] { return !pending.empty() && pending.begin()->first == committed + busy.size(); };
    // Whether to commit now rather than simulate: once k_min_batch points (k_shared_batch while other writers
    // share the file) are ready in order, or no point is left to simulate, so that a writer with time to
    // spare still commits in batches.
    auto batch_due = [&] {
        if (!head_ready()) return false;
        if (stop.load() || next.load() >= total) return true;
        // Sharing the file, in small batches (k_shared_batch): the other writers see them soon.
        const std::size_t want = shared.load() ? k_shared_batch : k_min_batch;
        // While the results file's log is copied so that it can start over (ResultsDb::log_restart_due), a
        // batch begun would keep it growing: simulate meanwhile (a few milliseconds), holding up to
        // k_restart_hold times the usual outcomes (remote workers' points in flight keep arriving).
        if (restart_wait() && pending.size() < k_restart_hold * hold) return false;
        std::size_t ready = 0;
        for (auto it = pending.begin(); it != pending.end() && ready < want; ++it, ++ready)
            if (it->first != committed + busy.size() + ready) return false;
        return ready >= want;
    };
    while (committed + busy.size() < total) {
        if (!shared.load() && Clock::now() - last_presence_check >= k_presence_interval) {
            shared = db.other_writers();
            last_presence_check = Clock::now();
        }
        if (shared.load()) {
            std::vector<std::string> hashes = db.run_hashes_after("ok", seen_run);
            std::lock_guard lock(mutex);
            for (std::string& h : hashes) others_ok.insert(std::move(h));
        }
        bool idle = !receive();
        // In point order: the run_ids and the choice among repeated points do not depend on timing.
        int batch = 0;
        if (batch_due()) {
            const double t0 = cpu ? thread_cpu_s() : 0;
            // One transaction for the batch: a SIGKILL before end_batch() leaves none of its points in the
            // file, and a resumed sweep runs them again (every point once).
            db.begin_batch();
            struct End {
                db::ResultsDb& db;
                bool done = false;
                ~End() {
                    if (!done) {
                        try {
                            db.end_batch();
                        } catch (...) {  // NOLINT: the exception in flight is the one to report
                        }
                    }
                }
            } end{db};
            while (head_ready() && batch < k_commit_batch) {
                auto it = pending.begin();
                if (!commit(it->second, true))
                    busy.push_back(std::move(it->second));
                else
                    ++committed;
                if (remote) remote->recycle(std::move(it->second.rows));
                pending.erase(it);
                if (remote) remote->room(held_count());
                ++batch;
                // Outcomes that arrived meanwhile are taken at once, so that remote workers get their next
                // points without waiting for the end of the batch.
                receive();
            }
            end.done = true;
            db.end_batch();
            update_held();
            if (cpu) cpu->committing += thread_cpu_s() - t0;
        }
        if (batch) {
            idle = false;
        } else if (!stop.load()) {
            // No batch due: simulate the next point here rather than wait.
            if (const std::optional<std::size_t> k = take(own_run, true)) {
                const double t0 = cpu ? thread_cpu_s() : 0;
                PointOutcome o =
                    simulate_point(sweep, systems, point_at(*k), known, models, overridden, done_elsewhere);
                if (cpu) {
                    cpu->simulating += thread_cpu_s() - t0;
                    ++cpu->points;
                }
                pending.emplace(*k, std::move(o));
                update_held();
                idle = false;
            }
        }
        if (Clock::now() - last_report >= options.progress_interval) {
            report(false);
            last_report = Clock::now();
        }
        if (idle) std::this_thread::sleep_for(std::chrono::microseconds(200));
    }
    // Points another process held: retried until it records them (or its claim goes stale).
    while (!busy.empty()) {
        PointOutcome o = std::move(busy.front());
        busy.pop_front();
        if (commit(o, false))
            ++committed;
        else {
            busy.push_back(std::move(o));
            std::this_thread::sleep_for(std::chrono::milliseconds(10));
        }
    }
    if (remote) remote->finish();
    report(true);

    for (const auto& [point, hash, description] : repeats) {
        if (auto id = db.find_run(hash, "ok")) {
            db.link_sweep_point(point, *id);
        } else if (auto f = failed_by_hash.find(hash); f != failed_by_hash.end()) {
            db.link_sweep_point(point, f->second.first);
            --skipped;
            --repeated;
            ++failed;
            errors.emplace_back(point.point,
                                fmt::format("point {} ({}): same configuration as a failed point: {}",
                                            point.point, description, f->second.second));
        }
    }
    SweepSummary s;
    s.points = total;
    s.ran = ran;
    s.skipped = skipped;
    s.failed = failed;
    s.failed_before = failed_before;
    s.recorded_elsewhere = recorded_elsewhere;
    s.repeated = repeated;
    s.repeat_examples = std::move(repeat_examples);
    s.wall_s = std::chrono::duration<double>(Clock::now() - start).count();
    std::sort(errors.begin(), errors.end());
    for (std::size_t k = 0; k < errors.size() && k < k_max_errors; ++k) s.errors.push_back(errors[k].second);
    return s;
}

}  // namespace mlsim::exp
