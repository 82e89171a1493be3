// Sweeps: key paths, sweep-file checking (located errors), enumeration, overrides, determinism over
// thread counts, skipping of points already in the database, and failed points.
#include <fmt/format.h>
#include <sqlite3.h>

#include <catch2/catch.hpp>
#include <chrono>
#include <filesystem>
#include <fstream>
#include <functional>
#include <map>
#include <set>
#include <string>
#include <vector>

#include "db/results_db.h"
#include "db/schema.h"
#include "experiment/experiment.h"
#include "experiment/key_path.h"
#include "experiment/sweep.h"
#include "experiment/sweep_writer.h"
#include "sim/config/error.h"
#include "sim/config/limits.h"
#include "sim/config/loader.h"
#include "tests/experiment/query.h"

using namespace mlsim;
namespace fs = std::filesystem;

namespace {

std::string data(const char* name) {
    return std::string(MLSIM_SOURCE_DIR) + "/tests/experiment/data/" + name;
}

struct TempDir {
    fs::path path;
    explicit TempDir(const char* name) : path(fs::temp_directory_path() / name) {
        fs::remove_all(path);
        fs::create_directories(path);
    }
    ~TempDir() { fs::remove_all(path); }
    std::string file(const char* name) const { return (path / name).string(); }
};

using mlsim::test::query;

// Writes `sweep` into a new file at `path` as the sweep writer does with `jobs` threads and a bound of `hold`
// outcomes held uncommitted (no remote workers).
exp::SweepSummary write_with(const exp::Sweep& sweep, const exp::SystemCache& systems,
                             const std::string& path, int jobs, std::size_t hold) {
    db::ResultsDb db(path);
    exp::SweepRunOptions o;
    o.jobs = jobs;
    return exp::write_sweep(sweep, systems, db, o, exp::read_known_runs(db, false),
                            std::make_shared<exp::ModelCache>(), hold, nullptr);
}

int64_t count(const std::string& db_path, const std::string& sql) {
    auto rows = query(db_path, sql);
    REQUIRE(rows.size() == 1);
    return std::stoll(rows.front());
}

// config_hash -> every `layers` column except run_id, then the run's layer_levels and layer_metrics rows,
// for each ok run.
std::map<std::string, std::vector<std::string>> layers_by_hash(const std::string& db_path) {
    std::map<std::string, std::vector<std::string>> out;
    for (const std::string& row :
         query(db_path, "SELECT run_id, config_hash FROM runs WHERE status = 'ok'")) {
        const auto bar = row.find('|');
        const std::string id = row.substr(0, bar);
        const std::string hash = row.substr(bar + 1, row.size() - bar - 2);
        REQUIRE(out.count(hash) == 0);
        out[hash] =
            query(db_path,
                  "SELECT idx, name, op, phase, dtype, macs, flops, params, bytes_read, bytes_written, "
                  "start_s, end_s, time_s, cycles, stall_cycles, energy_j, energy_compute_j, "
                  "energy_memory_j, energy_static_j, utilization, bound, compute_s, memory_s, overhead_s, "
                  "communication_s FROM layers WHERE run_id = " +
                      id + " ORDER BY idx");
        for (const std::string& r :
             query(db_path,
                   "SELECT idx, level, bytes_read, bytes_written, accesses, energy_j FROM layer_levels "
                   "WHERE run_id = " +
                       id + " ORDER BY idx, level"))
            out[hash].push_back("level " + r);
        for (const std::string& r : query(db_path,
                                          "SELECT idx, name, value, unit, text FROM layer_metrics "
                                          "WHERE run_id = " +
                                              id + " ORDER BY idx, name"))
            out[hash].push_back("metric " + r);
    }
    return out;
}

std::string error_of(const std::function<void()>& f) {
    try {
        f();
    } catch (const cfg::UserError& e) {
        return e.what();
    }
    return "";
}

exp::SweepSummary run(const std::string& file, const std::string& db_path, int jobs, bool retry = false) {
    const exp::Sweep sweep = exp::load_sweep(file);
    const exp::SystemCache systems = exp::check_points(sweep);
    db::ResultsDb db(db_path);
    exp::SweepRunOptions o;
    o.jobs = jobs;
    o.retry_failed = retry;
    return exp::run_sweep(sweep, systems, db, o);
}

bool contains(const std::string& text, const std::string& part) {
    return text.find(part) != std::string::npos;
}

// Layer rows as text: every field of every layer, level and metric (values exactly).
std::string rows_text(const std::vector<db::LayerRow>& rows) {
    std::string out;
    for (const db::LayerRow& l : rows) {
        out +=
            fmt::format("{} {} {} {} {} {} {} {} {} {} {} {} {} {} {} {} {} {}\n", l.idx, l.name, l.op,
                        l.phase, l.dtype, l.macs, l.flops, l.params, l.bytes_read, l.bytes_written, l.start_s,
                        l.end_s, l.time_s, l.cycles, l.stall_cycles, l.energy_j, l.bound, l.utilization);
        for (const db::LevelRow& v : l.levels)
            out += fmt::format("  {} {} {} {} {}\n", v.level, v.bytes_read, v.bytes_written, v.accesses,
                               v.energy_j);
        for (const db::MetricRow& m : l.metrics)
            out += fmt::format("  {} {} {} {}\n", m.name, m.value.value_or(-1), m.unit, m.text);
    }
    return out;
}

// The rows a run stores.
std::string rows_text(const exp::ExperimentResult& r) { return rows_text(exp::to_rows(r.layers)); }

}  // namespace

TEST_CASE("A key path splits into map keys and list indices", "[sweep]") {
    const cfg::SourceLoc loc{"s.yaml", 3, 4};
    const auto steps = exp::parse_key_path("device.memory[1].bandwidth", loc);
    REQUIRE(steps.size() == 4);
    CHECK(steps[0].key == "device");
    CHECK(steps[1].key == "memory");
    CHECK(steps[2].index == 1u);
    CHECK(steps[3].key == "bandwidth");
    for (const char* bad : {"", "device..clock", "device.", "[0].x", "device.memory[x]", "device.memory[1"}) {
        INFO(bad);
        CHECK(contains(error_of([&] { exp::parse_key_path(bad, loc); }), "s.yaml:3:4: error:"));
    }
}

TEST_CASE("Setting a value at a key path replaces it, adds missing keys and keeps the value's location",
          "[sweep]") {
    cfg::Node doc = cfg::parse_string(
        "device:\n  clock: 1GHz\n  memory:\n    - name: a\n      capacity: 1MiB\n", "d.yaml");
    const cfg::SourceLoc where{"sweep.yaml", 7, 3};
    exp::set_at_path(doc, "device.memory[0].capacity",
                     cfg::Node::make_scalar("2MiB", cfg::SourceLoc{"sweep.yaml", 7, 30}, "x"), where);
    exp::set_at_path(doc, "device.systolic.rows", cfg::Node::make_scalar("8", where, "y"), where);
    const cfg::Node& cap = *doc.find("device")->find("memory")->items()[0].find("capacity");
    CHECK(cap.scalar() == "2MiB");
    CHECK(cap.loc().line == 7);
    CHECK(cap.loc().col == 30);
    CHECK(cap.path() == "device.memory[0].capacity");
    CHECK(doc.find("device")->find("systolic")->find("rows")->scalar() == "8");
    CHECK(doc.find("device")->find("clock")->scalar() == "1GHz");  // untouched
    // The list keeps its other items and its length.
    CHECK(doc.find("device")->find("memory")->items().size() == 1);
    CHECK(contains(error_of([&] { exp::set_at_path(doc, "device.memory[3].capacity", cfg::Node(), where); }),
                   "index 3 is out of range: 'device.memory' has 1 item"));
    CHECK(contains(error_of([&] { exp::set_at_path(doc, "device.clock.x", cfg::Node(), where); }),
                   "'device.clock' is a scalar, so it has no key 'x'"));
    CHECK(contains(error_of([&] { exp::set_at_path(doc, "device.clock[0]", cfg::Node(), where); }),
                   "not a list"));
}

TEST_CASE("Sweep-file errors name the sweep file, line and column, and suggest the nearest key", "[sweep]") {
    auto check_error = [](const char* file, const std::string& where, const std::string& what) {
        INFO(file);
        const std::string msg = error_of([&] {
            const exp::Sweep s = exp::load_sweep(data(file));
            exp::check_points(s);
        });
        CHECK(contains(msg, data(file) + ":" + where + ": error: "));
        CHECK(contains(msg, what));
    };
    check_error("sweep_bad_zip.yaml", "7:5",
                "zipped factors must have the same number of values: 'device.systolic.cols' has 2, but "
                "'device.systolic.rows' (line 6) has 3");
    check_error("sweep_bad_key.yaml", "5:1", "unknown key 'factor' in sweep file; did you mean 'factors'?");
    check_error("sweep_bad_path.yaml", "5:3", "unknown key 'rowz' in device.systolic; did you mean 'rows'?");
    check_error("sweep_bad_index.yaml", "5:3", "index 5 is out of range: 'device.memory' has 2 items");
    // A bad value is reported at the value, in the sweep file, by the device schema; with its point.
    check_error("sweep_bad_value.yaml", "6:37", "expected a size");
    check_error("sweep_bad_value.yaml", "6:37", "(in sweep point 1 of 2: device.memory[0].capacity=8GHz)");
    check_error("sweep_bad_dataflow.yaml", "6:49", "device.systolic.dataflow: expected one of:");
    check_error("sweep_bad_batch.yaml", "5:14", "must be at least 1");
}

TEST_CASE("An unknown factor path suggests the nearest experiment key or device path", "[sweep]") {
    TempDir dir("mlsim_test_sweep_factor");
    const std::string file = dir.file("s.yaml");
    {
        std::FILE* f = std::fopen(file.c_str(), "w");
        std::fputs(
            "base:\n  system: a100\n  model: resnet50\nfactors:\n  devcie.clock: [1GHz]\n  btach: [1]\n", f);
        std::fclose(f);
    }
    const std::string msg = error_of([&] { exp::load_sweep(file); });
    CHECK(contains(msg, file + ":5:3: error: devcie.clock: unknown factor 'devcie.clock' (did you mean "
                               "'device.clock'?)"));
}

TEST_CASE("A zip group's lists may repeat a value; only a repeated row is one point twice", "[sweep]") {
    TempDir dir("mlsim_test_sweep_zip_repeat");
    const std::string file = dir.file("s.yaml");
    const auto write = [&](const char* zip) {
        std::FILE* f = std::fopen(file.c_str(), "w");
        std::fputs("base:\n  system: a100\n  model: resnet50\nzip:\n", f);
        std::fputs(zip, f);
        std::fclose(f);
    };
    // Plans with D x T x P = 8 repeat degrees down each list.
    write("  - {pipeline-parallel: [1, 2, 4, 8, 2, 1], data-parallel: [8, 4, 2, 1, 1, 2]}\n");
    const exp::Sweep s = exp::load_sweep(file);
    CHECK(s.point_count() == 6);
    CHECK(exp::make_point(s, 4).description == "pipeline-parallel=2, data-parallel=1");
    write("  - {pipeline-parallel: [1, 2, 4, 2], data-parallel: [8, 4, 2, 4]}\n");
    CHECK(contains(
        error_of([&] { exp::load_sweep(file); }),
        ":5:35: error: zip[0].pipeline-parallel[3]: zipped values 1 and 3 of this group are the same "
        "combination"));
}

// The error of loading a sweep of resnet50 on the A100 with these factors (lines from 5 on), written to
// `file`; empty when it loads.
std::string load_error(const std::string& file, const char* factors) {
    std::FILE* f = std::fopen(file.c_str(), "w");
    std::fputs("base:\n  system: a100\n  model: resnet50\nfactors:\n", f);
    std::fputs(factors, f);
    std::fclose(f);
    return error_of([&] { exp::load_sweep(file); });
}

TEST_CASE("Two values of a factor equal in value, however written, are one value listed twice", "[sweep]") {
    TempDir dir("mlsim_test_sweep_equal_values");
    const std::string file = dir.file("s.yaml");
    const auto error_for = [&](const char* factors) { return load_error(file, factors); };
    // Each would be a config text of its own, so one configuration run twice.
    CHECK(contains(error_for("  device.memory[2].bandwidth: [1TB/s, 1000GB/s]\n"),
                   "the value is listed twice"));
    CHECK(contains(error_for("  device.clock: [1.41GHz, 1410MHz]\n"), "the value is listed twice"));
    CHECK(contains(error_for("  batch: [8, 8.0]\n"), "the value is listed twice"));
    // Different values stay different.
    CHECK(error_for("  device.clock: [1.41GHz, 1411MHz]\n").empty());
}

TEST_CASE("A factor inside another factor's value is located at the later one, naming both", "[sweep]") {
    TempDir dir("mlsim_test_sweep_nested_factors");
    const std::string file = dir.file("s.yaml");
    const auto error_for = [&](const char* factors) { return load_error(file, factors); };
    // It failed on the part's line, as "'device.memory' is a scalar, not a list, so it cannot be indexed".
    CHECK(contains(error_for("  device.memory: [1, 2]\n  device.memory[2].bandwidth: [1TB/s, 2TB/s]\n"),
                   ":6:3: error: device.memory[2].bandwidth: factor 'device.memory[2].bandwidth' is part of "
                   "factor 'device.memory' (line 5, column 3)"));
    CHECK(contains(error_for("  device.memory[2].bandwidth: [1TB/s, 2TB/s]\n  device.memory: [1, 2]\n"),
                   "factor 'device.memory' contains factor 'device.memory[2].bandwidth' (line 5, column 3)"));
    // The factor `system` picks a file; `system.<key>` overrides a key inside it: both may be swept.
    CHECK(error_for("  system: [dgx-a100, dgx-a100-node]\n  system.description: [one, two]\n").empty());
    // An embedding sharding that is no kind and no file: the value's error as the file is read (each point
    // was a failed run), in a factor or in the base.
    CHECK(contains(
        error_for("  embedding-sharding: [auto, autox]\n"),
        ":5:30: error: factors.embedding-sharding[1]: 'autox' is no sharding (did you mean 'auto'?)"));
    CHECK(error_for("  embedding-sharding: [auto, table, row]\n").empty());
    {
        std::FILE* f = std::fopen(file.c_str(), "w");
        std::fputs("base:\n  system: a100\n  model: resnet50\n  embedding-sharding: tabel\n", f);
        std::fclose(f);
        CHECK(contains(
            error_of([&] { exp::load_sweep(file); }),
            ":4:23: error: base.embedding-sharding: 'tabel' is no sharding (did you mean 'table'?)"));
    }
    // Siblings whose names share a prefix are not nested.
    CHECK(error_for("  device.clock: [1GHz, 2GHz]\n  device.clock_boost: [1, 2]\n").find("is part of") ==
          std::string::npos);
}

TEST_CASE("Points are the product of the factors, zipped groups move together, the first factor slowest",
          "[sweep]") {
    const exp::Sweep s = exp::load_sweep(data("sweep_small.yaml"));
    REQUIRE(s.point_count() == 16);
    REQUIRE(s.axes.size() == 4);
    CHECK(s.axes[3].zipped);
    std::set<std::string> seen;
    for (std::size_t i = 0; i < 16; ++i) {
        const exp::SweepPointConfig p = exp::make_point(s, i);
        seen.insert(p.description);
        REQUIRE(p.db_point.factors.size() == 5);
        // clock and static_power are zipped: 1GHz always with 50W.
        CHECK((p.db_point.factors[3].value == "1GHz") == (p.db_point.factors[4].value == "50W"));
    }
    CHECK(seen.size() == 16);
    const exp::SweepPointConfig first = exp::make_point(s, 0), second = exp::make_point(s, 1),
                                last = exp::make_point(s, 15);
    CHECK(
        first.description ==
        "batch=1, dtype=fp16, device.memory[2].bandwidth=1TB/s, device.clock=1GHz, device.static_power=50W");
    CHECK(second.description ==
          "batch=1, dtype=fp16, device.memory[2].bandwidth=1TB/s, device.clock=1.41GHz, "
          "device.static_power=60W");
    CHECK(last.options.batch == 4);
    CHECK(last.options.dtype == "bf16");
    REQUIRE(last.options.device_overrides.size() == 3);
    CHECK(first.db_point.factors[2].value_num == Approx(1e12));
    CHECK(first.db_point.factors[3].value_num == Approx(1e9));
    CHECK(!first.db_point.factors[1].value_num);  // "fp16" is not a number
}

TEST_CASE(
    "A device override changes the simulated device and the config hash, and an override to the "
    "preset's own value changes neither",
    "[sweep]") {
    exp::ExperimentOptions o;
    o.system = "a100";
    o.model = "resnet50";
    o.dtype = "fp16";
    const auto plain = exp::run_experiment(o);

    exp::ExperimentOptions same = o;
    same.device_overrides.push_back(
        exp::ConfigOverride{"device.memory[2].bandwidth",
                            cfg::Node::make_scalar("2039GB/s", cfg::SourceLoc{"s.yaml", 1, 1}, "v")});
    const auto a = exp::run_experiment(same);
    CHECK(a.info.config_hash == plain.info.config_hash);

    exp::ExperimentOptions slower = o;
    slower.device_overrides.push_back(
        exp::ConfigOverride{"device.memory[2].bandwidth",
                            cfg::Node::make_scalar("500GB/s", cfg::SourceLoc{"s.yaml", 1, 1}, "v")});
    const auto b = exp::run_experiment(slower);
    CHECK(b.info.config_hash != plain.info.config_hash);
    CHECK(b.info.mem_bandwidth_Bps == Approx(500e9));
    CHECK(b.total_time_s > plain.total_time_s);
    CHECK(contains(b.resolved_yaml, "bandwidth: 500GB/s"));

    exp::ExperimentOptions bad = o;
    bad.device_overrides.push_back(exp::ConfigOverride{
        "device.clock", cfg::Node::make_scalar("fast", cfg::SourceLoc{"s.yaml", 9, 12}, "v")});
    CHECK(contains(error_of([&] { exp::run_experiment(bad); }), "s.yaml:9:12: error: device.clock:"));
}

TEST_CASE("A sweep writes the same layers rows whatever the number of threads", "[sweep]") {
    TempDir dir("mlsim_test_sweep_jobs");
    const auto one = run(data("sweep_small.yaml"), dir.file("one.db"), 1);
    const auto four = run(data("sweep_small.yaml"), dir.file("four.db"), 4);
    CHECK(one.ran == 16);
    CHECK(four.ran == 16);
    const auto a = layers_by_hash(dir.file("one.db"));
    const auto b = layers_by_hash(dir.file("four.db"));
    REQUIRE(a.size() == 16);
    CHECK(a.begin()->second.size() > 50);
    CHECK(a == b);
    // Written without SQLite's foreign-key lookups (ResultsDb::ReferenceChecksOff), the references all hold.
    for (const char* file : {"one.db", "four.db"})
        CHECK(count(dir.file(file), "SELECT COUNT(*) FROM pragma_foreign_key_check") == 0);
    // Each point is in `sweeps` once, with its factors in long form.
    CHECK(count(dir.file("four.db"), "SELECT COUNT(DISTINCT point) FROM sweeps WHERE sweep_name = 'small'") ==
          16);
    CHECK(count(dir.file("four.db"), "SELECT COUNT(*) FROM sweep_factors WHERE sweep_name = 'small'") ==
          16 * 5);
    CHECK(
        count(
            dir.file("four.db"),
            "SELECT COUNT(*) FROM sweeps s JOIN runs r USING (run_id) WHERE s.config_hash = r.config_hash") ==
        16);
    CHECK(query(dir.file("one.db"), "SELECT factors_json FROM sweeps WHERE point = 0").front() ==
          R"({"batch": "1", "dtype": "fp16", "device.memory[2].bandwidth": "1TB/s", "device.clock": "1GHz", )"
          R"("device.static_power": "50W"}|)");
}

TEST_CASE(
    "The sweep writer commits in point order whatever its threads and its bound on held points, the same "
    "rows with the same ids",
    "[sweep]") {
    TempDir dir("mlsim_test_sweep_writer");
    const exp::Sweep sweep = exp::load_sweep(data("sweep_small.yaml"));
    const exp::SystemCache systems = exp::check_points(sweep);
    // Every table's rows as stored (ids included), wall-clock columns left out.
    auto dump = [](const std::string& path) {
        std::vector<std::string> out;
        for (const char* sql :
             {"SELECT run_id, config_hash, status, layer_count, total_time_s, total_energy_j FROM runs ORDER "
              "BY "
              "run_id",
              "SELECT * FROM layer_results ORDER BY run_id, idx", "SELECT * FROM layer_defs ORDER BY def_id",
              "SELECT sweep_name, point, run_id, config_hash FROM sweeps ORDER BY point",
              "SELECT * FROM sweep_factors ORDER BY run_id, factor"})
            for (std::string& r : query(path, sql)) out.push_back(std::move(r));
        return out;
    };
    std::vector<std::string> expected;
    // (jobs, hold): one thread alone; threads outpacing a writer that may hold a single point, so that they
    // wait for its commits (the bound that keeps a long sweep's rows out of memory); the default bound.
    for (const auto& [jobs, hold] :
         {std::pair<int, std::size_t>{1, exp::k_max_held}, {4, 1}, {3, 2}, {4, exp::k_max_held}}) {
        INFO(jobs << " jobs, holding at most " << hold);
        const std::string path = dir.file(fmt::format("w{}-{}.db", jobs, hold).c_str());
        CHECK(write_with(sweep, systems, path, jobs, hold).ran == 16);
        // run_ids follow the points.
        CHECK(count(path,
                    "SELECT COUNT(*) FROM sweeps a JOIN sweeps b ON a.point < b.point WHERE a.run_id > "
                    "b.run_id") == 0);
        CHECK(count(path, "SELECT COUNT(*) FROM pragma_foreign_key_check") == 0);
        const std::vector<std::string> got = dump(path);
        if (expected.empty()) {
            expected = got;
            REQUIRE(expected.size() > 16 * 50);
            continue;
        }
        REQUIRE(got.size() == expected.size());
        for (std::size_t i = 0; i < got.size(); ++i) {
            INFO("row " << i);
            CHECK(got[i] == expected[i]);
        }
    }
}

TEST_CASE("Threads taking runs of consecutive points finish them under any bound on held points", "[sweep]") {
    // 64 points: runs of 4 at the start (a sixteenth of what is left, at most exp::k_run). A thread that
    // began a run goes on past the writer's bound, which may wait for a point of it: with a bound of 1 and 4
    // threads some run is always unfinished when the bound is reached.
    TempDir dir("mlsim_test_sweep_runs");
    const exp::Sweep sweep = exp::load_sweep(data("sweep_runs.yaml"));
    const exp::SystemCache systems = exp::check_points(sweep);
    REQUIRE(sweep.point_count() == 64);
    auto rows = [](const std::string& path) {
        return query(path,
                     "SELECT r.run_id, r.config_hash, r.total_time_s, s.point FROM runs r JOIN sweeps s ON "
                     "s.run_id = r.run_id ORDER BY r.run_id");
    };
    std::vector<std::string> expected;
    for (const auto& [jobs, hold] :
         {std::pair<int, std::size_t>{1, exp::k_max_held}, {4, 1}, {3, 2}, {2, 5}}) {
        INFO(jobs << " jobs, holding at most " << hold);
        const std::string path = dir.file(fmt::format("r{}-{}.db", jobs, hold).c_str());
        CHECK(write_with(sweep, systems, path, jobs, hold).ran == 64);
        const std::vector<std::string> got = rows(path);
        if (expected.empty()) {
            expected = got;
            REQUIRE(expected.size() == 64);
        } else {
            CHECK(got == expected);
        }
    }
}

TEST_CASE("run_sweep reports progress only through its callback, ending with one final report of every point",
          "[sweep]") {
    TempDir dir("mlsim_test_sweep_progress");
    const exp::Sweep sweep = exp::load_sweep(data("sweep_small.yaml"));
    const exp::SystemCache systems = exp::check_points(sweep);
    db::ResultsDb db(dir.file("p.db"));
    std::vector<exp::SweepProgress> reports;
    exp::SweepRunOptions o;
    o.jobs = 2;
    o.progress = [&](const exp::SweepProgress& p) { reports.push_back(p); };
    o.progress_interval = std::chrono::milliseconds(1);
    const exp::SweepSummary s = exp::run_sweep(sweep, systems, db, o);
    CHECK(s.ran == 16);
    REQUIRE(!reports.empty());
    for (std::size_t i = 0; i < reports.size(); ++i) {
        CHECK(reports[i].total == 16);
        CHECK(reports[i].failed == 0);
        CHECK(reports[i].final == (i + 1 == reports.size()));
        if (i > 0) CHECK(reports[i].done >= reports[i - 1].done);
    }
    CHECK(reports.back().done == 16);
}

TEST_CASE(
    "Rerunning a sweep skips the points already in the database, including an mlsim run of the same "
    "config",
    "[sweep]") {
    TempDir dir("mlsim_test_sweep_skip");
    const std::string path = dir.file("r.db");
    {
        // The same config as point 3 of `small` (batch 1, fp16, 2039GB/s, 1.41GHz, 60W), run by hand.
        exp::ExperimentOptions o;
        o.system = "a100";
        o.model = "resnet50";
        o.dtype = "fp16";
        auto value = [](const char* v) { return cfg::Node::make_scalar(v, cfg::SourceLoc{}, ""); };
        o.device_overrides = {{"device.memory[2].bandwidth", value("2039GB/s")},
                              {"device.clock", value("1.41GHz")},
                              {"device.static_power", value("60W")}};
        const auto r = exp::run_experiment(o);
        db::ResultsDb db(path);
        db.record_run(r.info, exp::to_rows(r.layers), 0.0);
    }
    const auto first = run(data("sweep_small.yaml"), path, 2);
    CHECK(first.ran == 15);
    CHECK(first.skipped == 1);
    CHECK(query(path, "SELECT run_id FROM sweeps WHERE point = 3").front() == "1|");
    const auto second = run(data("sweep_small.yaml"), path, 2);
    CHECK(second.ran == 0);
    CHECK(second.skipped == 16);
    CHECK(count(path, "SELECT COUNT(*) FROM runs") == 16);
    CHECK(count(path, "SELECT COUNT(*) FROM sweeps") == 16);
}

TEST_CASE("A point that fails with a user error is recorded with its message and the sweep goes on",
          "[sweep]") {
    TempDir dir("mlsim_test_sweep_fail");
    const std::string path = dir.file("f.db");
    const auto s = run(data("sweep_fail.yaml"), path, 2);
    CHECK(s.ran == 1);
    CHECK(s.failed == 3);
    REQUIRE(s.errors.size() == 3);
    CHECK(contains(s.errors[0], "point 1 (device.memory[1].capacity=32GiB, dtype=fp16)"));
    CHECK(contains(s.errors[0], "no peak for data type 'fp16'"));
    CHECK(contains(s.errors[1], "does not fit"));
    CHECK(count(path, "SELECT COUNT(*) FROM runs WHERE status = 'error' AND error LIKE '%does not fit%'") ==
          1);
    CHECK(count(path, "SELECT COUNT(*) FROM sweeps s JOIN runs r USING (run_id) WHERE r.status = 'error'") ==
          3);

    // A rerun skips them (they would fail the same way) ...
    const auto again = run(data("sweep_fail.yaml"), path, 1);
    CHECK(again.failed_before == 3);
    CHECK(again.skipped == 1);
    CHECK(count(path, "SELECT COUNT(*) FROM runs") == 4);
    // ... unless asked to retry them.
    const auto retried = run(data("sweep_fail.yaml"), path, 1, true);
    CHECK(retried.failed == 3);
    CHECK(count(path, "SELECT COUNT(*) FROM runs WHERE status = 'error'") == 6);
}

// A sweep `file` whose factor `system` names one preset twice (its name and its file), in `dtype`, with
// `more` lines of factors after it.
void write_two_names(const std::string& file, const std::string& preset, const std::string& model,
                     const std::string& dtype, const std::string& more = "") {
    std::ofstream(file) << "name: repeat\nbase:\n  system: " << preset << "\n  model: " << model
                        << "\n  dtype: " << dtype << "\nfactors:\n  system: [" << preset << ", "
                        << MLSIM_SOURCE_DIR << "/configs/devices/" << preset << ".yaml]\n"
                        << more;
}

TEST_CASE("Points that repeat an earlier point's configuration are one run, and the summary says so",
          "[sweep]") {
    // Two names of one device: points 2 and 3 are points 0 and 1. The summary said "2 skipped (already
    // in the database)" on a fresh file, and `sweeps` holds the run once.
    TempDir dir("mlsim_test_sweep_repeat_ok");
    const std::string file = dir.file("s.yaml");
    write_two_names(file, "tpu-v4", "mlp3", "bf16", "  batch: [1, 8]\n");
    const std::string path = dir.file("r.db");
    const auto s = run(file, path, 2);
    CHECK(s.ran == 2);
    CHECK(s.skipped == 2);
    CHECK(s.repeated == 2);
    CHECK(s.recorded_elsewhere == 0);
    REQUIRE(s.repeat_examples.size() == 2);
    CHECK(contains(s.repeat_examples[0], "point 2 ("));
    CHECK(contains(s.repeat_examples[0], ") = point 0"));
    CHECK(count(path, "SELECT COUNT(*) FROM sweeps") == 2);
    // Run again: all four are in the database (skipped), points 2 and 3 still repeats of 0 and 1.
    const auto again = run(file, path, 1);
    CHECK(again.skipped == 4);
    CHECK(again.repeated == 2);
    CHECK(again.ran == 0);
}

TEST_CASE("A point that fails as an earlier point of the same sweep did is a failure of this run",
          "[sweep]") {
    // Two names of one device: the second point's configuration is the first's. Its failure was counted
    // as "failed before" and "recorded first by another process" on a fresh file with one process.
    TempDir dir("mlsim_test_sweep_fail_repeat");
    const std::string file = dir.file("s.yaml");
    write_two_names(file, "stm32l4r5", "mobilenetv2", "int8");
    const auto s = run(file, dir.file("r.db"), 1);
    CHECK(s.failed == 2);
    CHECK(s.failed_before == 0);
    CHECK(s.recorded_elsewhere == 0);
    REQUIRE(s.errors.size() == 2);
    CHECK(contains(s.errors[1], "same configuration as a failed point"));
    CHECK(contains(s.errors[1], "does not fit"));
}

TEST_CASE("A point's error from the run's option checks is located at its factor in the sweep file",
          "[sweep]") {
    // mlp3 takes no sequence length: the zoo's check says so of "<command line>", which in a sweep is the
    // factor `seq` (line 4, column 3). Point 0 (seq 0: none) builds, so the check before running lets the
    // sweep run and point 1 fails as a recorded run.
    TempDir dir("mlsim_test_sweep_located");
    const std::string file = data("sweep_seq_error.yaml");
    const auto s = run(file, dir.file("l.db"), 1);
    CHECK(s.ran == 1);
    REQUIRE(s.errors.size() == 1);
    CHECK(contains(s.errors[0], "point 1 (seq=128): " + file +
                                    ":4:3: error: factor seq: model 'mlp3': this model "
                                    "takes no sequence length"));
    // At the base's key when no factor names it; a message located elsewhere is left as it is.
    const exp::Sweep sweep = exp::load_sweep(file);
    CHECK(exp::locate_in_sweep(sweep, "<command line>: error: dtype: no") ==
          file + ":2:35: error: base.dtype: no");
    CHECK(exp::locate_in_sweep(sweep, "<command line>: error: --parallel: x") ==
          "<command line>: error: --parallel: x");
    // A flag's name is the key of the same name (a plan's checks say "--zero", "--tensor-parallel").
    CHECK(exp::locate_in_sweep(sweep, "<command line>: error: --seq: y") ==
          file + ":4:3: error: factor seq: y");
    CHECK(exp::locate_in_sweep(sweep, "m.yaml:1:1: error: seq: x") == "m.yaml:1:1: error: seq: x");
}

TEST_CASE("A system factor takes presets and files relative to the sweep file", "[sweep]") {
    const exp::Sweep s = exp::load_sweep(data("sweep_system_file.yaml"));
    const exp::SystemCache systems = exp::check_points(s);
    CHECK(systems.size() == 2);
    const auto p = exp::make_point(s, 1);
    CHECK(fs::equivalent(p.options.system,
                         std::string(MLSIM_SOURCE_DIR) + "/configs/systems/a100-hbm-2x.yaml"));
}

TEST_CASE("A sweep's system takes a SCALE-Sim .cfg as mlsim run does, and presets by name", "[sweep]") {
    const exp::Sweep s = exp::load_sweep(data("sweep_scalesim_cfg.yaml"));
    const exp::SystemCache systems = exp::check_points(s);
    REQUIRE(systems.size() == 1);
    CHECK(systems.begin()->second->device.family == "tpu");
    const exp::SweepPointConfig pc = exp::make_point(s, 1);
    exp::ExperimentOptions direct;
    direct.system = std::string(MLSIM_SOURCE_DIR) + "/tests/arch/data/google.cfg";
    direct.model = "mlp3";
    direct.batch = 2;
    CHECK(exp::prepare_experiment(pc.options).result->info.config_hash ==
          exp::prepare_experiment(direct).result->info.config_hash);

    const exp::Sweep presets = exp::load_sweep(data("sweep_system_file.yaml"));
    CHECK(exp::make_point(presets, 0).options.system == exp::resolve_system_path("a100"));
}

TEST_CASE("The example sweeps in configs/sweeps check out", "[sweep]") {
    for (const char* name : {"smoke", "resnet50-array", "gpt2-decode-array", "dlrm-tables"}) {
        INFO(name);
        const exp::Sweep s =
            exp::load_sweep(std::string(MLSIM_SOURCE_DIR) + "/configs/sweeps/" + name + ".yaml");
        CHECK(s.name == name);
        CHECK_NOTHROW(exp::check_points(s));
    }
    CHECK(exp::load_sweep(std::string(MLSIM_SOURCE_DIR) + "/configs/sweeps/smoke.yaml").point_count() == 12);
    CHECK(exp::load_sweep(std::string(MLSIM_SOURCE_DIR) + "/configs/sweeps/resnet50-array.yaml")
              .point_count() == 72);
    CHECK(exp::load_sweep(std::string(MLSIM_SOURCE_DIR) + "/configs/sweeps/dlrm-tables.yaml").point_count() ==
          8);
}

TEST_CASE("A results database from before sweeps gains the sweep tables when a sweep opens it", "[sweep]") {
    TempDir dir("mlsim_test_sweep_migrate");
    const std::string path = dir.file("old.db");
    { db::ResultsDb create(path); }
    // Make it look like a version-1 file: no sweep tables, no views, `layers` a table, schema_version 1.
    sqlite3* raw = nullptr;
    REQUIRE(sqlite3_open(path.c_str(), &raw) == SQLITE_OK);
    REQUIRE(
        sqlite3_exec(raw,
                     "DROP INDEX sweeps_by_run; DROP TABLE sweeps; DROP TABLE sweep_factors; "
                     "DROP VIEW layer_levels; DROP VIEW layer_metrics; DROP VIEW layers; DROP TABLE "
                     "layer_results; DROP TABLE layer_defs; CREATE TABLE layers (run_id INTEGER NOT NULL "
                     "REFERENCES runs(run_id), idx INTEGER NOT NULL, name TEXT NOT NULL, op TEXT NOT NULL, "
                     "PRIMARY KEY (run_id, idx)); "
                     "UPDATE meta SET value = '1' WHERE key = 'schema_version'",
                     nullptr, nullptr, nullptr) == SQLITE_OK);
    sqlite3_close(raw);
    CHECK(count(path, "SELECT COUNT(*) FROM sqlite_schema WHERE name LIKE 'sweep%'") == 0);
    const auto s = run(data("sweep_system_file.yaml"), path, 1);
    CHECK(s.ran == 2);
    CHECK(count(path, "SELECT COUNT(*) FROM sweeps") == 2);
    CHECK(query(path, "SELECT value FROM meta WHERE key = 'schema_version'").front() ==
          std::to_string(db::schema::current_version) + "|");
}

TEST_CASE("device.model is a sweep factor, and an array-size factor needs no peak beside it", "[sweep]") {
    const fs::path dir = fs::temp_directory_path() / "mlsim_test_sweep_device_model";
    fs::remove_all(dir);
    const std::string db_path = (dir / "m.db").string();
    const exp::SweepSummary s = run(data("sweep_device_model.yaml"), db_path, 2);
    CHECK(s.points == 6);
    CHECK(s.ran == 6);
    CHECK(s.failed == 0);
    // Each point ran on the model it named, with the peak of its own array (8 arrays x rows x 128 x 2 x
    // clock).
    const auto rows = mlsim::test::query(
        db_path,
        "SELECT r.device_model, f.value, r.peak_flops_per_s / (8.0 * f.value_num * 128 * 2 * 1.049042e9), "
        "r.total_time_s FROM runs r JOIN sweep_factors f ON f.run_id = r.run_id "
        "AND f.factor = 'device.systolic.rows' ORDER BY r.device_model, f.value_num");
    REQUIRE(rows.size() == 6);
    std::vector<double> times;
    for (size_t i = 0; i < rows.size(); ++i) {
        INFO(rows[i]);
        CHECK(rows[i].rfind(i < 3 ? "roofline|" : "systolic|", 0) == 0);
        const size_t a = rows[i].find('|', rows[i].find('|') + 1);
        const size_t b = rows[i].find('|', a + 1);
        CHECK(std::stod(rows[i].substr(a + 1, b - a - 1)) == Approx(1.0).epsilon(1e-9));
        times.push_back(std::stod(rows[i].substr(b + 1)));
    }
    // The roofline is the floor of the systolic model at every array size.
    for (size_t i = 0; i < 3; ++i) CHECK(times[i + 3] >= times[i]);
    fs::remove_all(dir);
}

TEST_CASE("Runs given a model cache store what runs without one store, for every model it holds",
          "[sweep][model_cache]") {
    const auto cache = std::make_shared<exp::ModelCache>();
    for (int64_t batch : {1, 2, 1}) {  // the second batch-1 run copies the model the first one built
        exp::ExperimentOptions o;
        o.system = "tpu-v4";
        o.model = "resnet50";
        o.dtype = "bf16";
        o.batch = batch;
        const auto plain = exp::run_experiment(o);
        o.model_cache = cache;
        const auto cached = exp::run_experiment(o);
        CHECK(cached.resolved_yaml == plain.resolved_yaml);
        CHECK(cached.info.config_hash == plain.info.config_hash);
        CHECK(cached.model.ops().size() == plain.model.ops().size());
        CHECK(rows_text(cached) == rows_text(plain));
    }
    // Copies of one built model; an unknown name fails each time, as the zoo does.
    const wl::Model a = cache->get("resnet50", wl::ZooOptions{});
    const wl::Model b = cache->get("resnet50", wl::ZooOptions{});
    CHECK(a.ops().size() == b.ops().size());
    CHECK(a.ops().front().name == b.ops().front().name);
    CHECK_THROWS_AS(cache->get("resnet5O", wl::ZooOptions{}), cfg::UserError);
}

TEST_CASE("A sweep run with the systems check_points overrode writes what a sweep without them writes",
          "[sweep][override_cache]") {
    TempDir dir("mlsim_test_sweep_overridden");
    for (const char* file : {"sweep_small.yaml", "sweep_fail.yaml"}) {
        INFO(file);
        const std::string plain_db = dir.file((std::string(file) + ".plain.db").c_str());
        const std::string shared_db = dir.file((std::string(file) + ".shared.db").c_str());
        const exp::SweepSummary plain = run(data(file), plain_db, 1);
        const exp::Sweep sweep = exp::load_sweep(data(file));
        exp::SweepRunOptions o;
        o.jobs = 2;
        o.overridden = std::make_shared<exp::OverrideCache>();
        const exp::SystemCache systems =
            exp::check_points(sweep, limits::default_max_sweep_points, {}, o.overridden.get());
        exp::SweepSummary shared;
        {
            db::ResultsDb db(shared_db);
            shared = exp::run_sweep(sweep, systems, db, o);
        }
        CHECK(shared.ran == plain.ran);
        CHECK(shared.failed == plain.failed);
        CHECK(shared.errors == plain.errors);
        CHECK(layers_by_hash(shared_db) == layers_by_hash(plain_db));
        CHECK(count(shared_db, "SELECT COUNT(*) FROM runs") == count(plain_db, "SELECT COUNT(*) FROM runs"));
    }
}

TEST_CASE("A run's layers make the same rows whether to_rows copies or moves their strings",
          "[sweep][to_rows]") {
    exp::ExperimentOptions o;
    o.system = "tpu-v4";
    o.model = "resnet50";
    o.dtype = "bf16";
    exp::ExperimentResult r = exp::run_experiment(o);
    const std::vector<db::LayerRow> copied = exp::to_rows(r.layers);
    const std::vector<db::LayerRow> moved = exp::to_rows(std::move(r.layers));
    REQUIRE(copied.size() > 100);
    CHECK(copied.front().metrics.size() > 5);
    CHECK(rows_text(moved) == rows_text(copied));
}

TEST_CASE("Runs given an override cache store what runs without one store, and share equal overrides only",
          "[sweep][override_cache]") {
    const auto system =
        std::make_shared<const arch::SystemSpec>(exp::load_system_file(exp::resolve_system_path("tpu-v4")));
    const auto value = [](const char* text, int line) {
        return cfg::Node::make_scalar(text, cfg::SourceLoc{"s.yaml", line, 7}, "device.systolic.rows");
    };
    const auto overrides = [&](const char* rows, int line) {
        return std::vector<exp::ConfigOverride>{
            exp::ConfigOverride{"device.systolic.rows", value(rows, line)},
            exp::ConfigOverride{"device.systolic.cols", value(rows, line)}};
    };
    const auto cache = std::make_shared<exp::OverrideCache>();
    for (const char* rows : {"16", "32", "16"}) {  // the second 16 takes the system the first one applied
        exp::ExperimentOptions o;
        o.system = "tpu-v4";
        o.model = "resnet50";
        o.dtype = "bf16";
        o.preloaded_system = system;
        o.device_overrides = overrides(rows, 3);
        const auto plain = exp::run_experiment(o);
        o.override_cache = cache;
        const auto cached = exp::run_experiment(o);
        CHECK(cached.resolved_yaml == plain.resolved_yaml);
        CHECK(cached.info.config_hash == plain.info.config_hash);
        CHECK(rows_text(cached) == rows_text(plain));
    }
    // One application for equal overrides; another value, or the same one written elsewhere, is another.
    const auto a = cache->get(system, overrides("16", 3));
    CHECK(cache->get(system, overrides("16", 3)) == a);
    CHECK(cache->get(system, overrides("32", 3)) != a);
    const auto elsewhere = cache->get(system, overrides("16", 4));
    CHECK(elsewhere != a);
    CHECK(elsewhere->resolved.find("device")->find("systolic")->find("rows")->loc().line == 4);
    CHECK(cfg::to_yaml(elsewhere->resolved) == cfg::to_yaml(a->resolved));
    // A bad override fails each time, with apply_overrides' message.
    const auto bad = overrides("many", 9);
    const std::string message = error_of([&] { exp::apply_overrides(*system, bad); });
    CHECK(contains(message, "s.yaml:9:7: error: device.systolic.rows"));
    CHECK(error_of([&] { cache->get(system, bad); }) == message);
    CHECK(error_of([&] { cache->get(system, bad); }) == message);
}

TEST_CASE("A full override cache keeps its older sets and its most recent half, for a sweep's nested loops",
          "[sweep][override_cache]") {
    const auto system =
        std::make_shared<const arch::SystemSpec>(exp::load_system_file(exp::resolve_system_path("a100")));
    const auto set = [](int i) {
        return std::vector<exp::ConfigOverride>{exp::ConfigOverride{
            "device.memory[2].bandwidth",
            cfg::Node::make_scalar(fmt::format("{}GB/s", 1000 + i), cfg::SourceLoc{"s.yaml", 3, 7},
                                   "device.memory[2].bandwidth")}};
    };
    // Capacity 32; an inner loop over 40 sets, three times (a bandwidth factor inside a batch factor).
    // Dropping the least recently used, no set would be found again; here every set but the 17 replaced ones
    // (the 16 most recent, half the capacity, and the one just older) is.
    exp::OverrideCache cache(32);
    std::vector<std::shared_ptr<const arch::SystemSpec>> first;
    for (int i = 0; i < 40; ++i) first.push_back(cache.get(system, set(i)));
    for (int round = 0; round < 2; ++round) {
        int found = 0;
        for (int i = 0; i < 40; ++i) found += cache.get(system, set(i)) == first[static_cast<std::size_t>(i)];
        CHECK(found >= 32 - 17);
    }
    // Two new sets taken in turn once the cache is full (a two-valued inner factor): found again, as the 16
    // most recent stay.
    const auto x = cache.get(system, set(100)), y = cache.get(system, set(101));
    for (int k = 0; k < 3; ++k) {
        CHECK(cache.get(system, set(100)) == x);
        CHECK(cache.get(system, set(101)) == y);
    }
    // Capacity 64: an outer factor of 4 values x 3 turns x an inner factor of 24 values (more than 16, at
    // most half the capacity): once the cache is full, each block's second and third turns find all 24 sets,
    // as least-recently-used would (protecting only the 16 most recent, each new set replaced the one needed
    // next).
    exp::OverrideCache mid(64);
    for (int outer = 0; outer < 4; ++outer) {
        std::vector<std::shared_ptr<const arch::SystemSpec>> block;
        for (int i = 0; i < 24; ++i) block.push_back(mid.get(system, set(1000 + 100 * outer + i)));
        int found = 0;
        for (int turn = 1; turn < 3; ++turn)
            for (int i = 0; i < 24; ++i)
                found += mid.get(system, set(1000 + 100 * outer + i)) == block[static_cast<std::size_t>(i)];
        CHECK(found == 48);
    }
    // A byte budget bounds the entries too: an 8-GPU system is 32 KB + 270 B x (8 devices, a switch, 8
    // links); a budget of three such keeps three, the two most recent among them, and the count of bytes
    // follows.
    const auto dgx =
        std::make_shared<const arch::SystemSpec>(exp::load_system_file(exp::resolve_system_path("dgx-a100")));
    const auto clock = [](int i) {
        return std::vector<exp::ConfigOverride>{exp::ConfigOverride{
            "device.clock", cfg::Node::make_scalar(fmt::format("{}MHz", 1000 + i),
                                                   cfg::SourceLoc{"s.yaml", 4, 7}, "device.clock")}};
    };
    const std::size_t each = exp::OverrideCache::estimated_bytes(*dgx);
    CHECK(each == 32 * 1024 + 270 * (8 + 1 + 8));
    exp::OverrideCache budget(1024, 3 * each + 1);
    std::vector<std::shared_ptr<const arch::SystemSpec>> made;
    for (int i = 0; i < 5; ++i) made.push_back(budget.get(dgx, clock(i)));
    CHECK(budget.size() == 3);
    CHECK(budget.bytes() == 3 * each);
    CHECK(budget.get(dgx, clock(4)) == made[4]);
    CHECK(budget.get(dgx, clock(3)) == made[3]);
    CHECK(budget.size() == 3);
    // One entry over the budget is still kept (the one just made).
    exp::OverrideCache tiny(1024, 1);
    const auto kept = tiny.get(dgx, clock(7));
    CHECK(tiny.size() == 1);
    CHECK(tiny.get(dgx, clock(7)) == kept);
    // A cache of one entry keeps the last set.
    exp::OverrideCache one(1);
    const auto a = one.get(system, set(1));
    CHECK(one.get(system, set(1)) == a);
    CHECK(one.get(system, set(2)) != a);
    CHECK(one.get(system, set(1)) != a);
}

TEST_CASE("layer-rows none records a run's totals without its layer rows, as a run of its own", "[sweep]") {
    TempDir dir("mlsim_test_sweep_layer_rows");
    const std::string file = data("sweep_layer_rows.yaml");
    const std::string path = dir.file("r.db");
    const exp::SweepSummary s = run(file, path, 2);
    CHECK(s.ran == 4);
    CHECK(count(path, "SELECT COUNT(*) FROM runs WHERE status = 'ok'") == 4);
    // The points without layer rows: their configs say so, and nothing of theirs is in the layer views.
    const std::string none = "SELECT run_id FROM runs WHERE config_yaml LIKE '%layer_rows: none%'";
    CHECK(count(path, "SELECT COUNT(*) FROM (" + none + ")") == 2);
    CHECK(count(path, "SELECT COUNT(*) FROM layers WHERE run_id IN (" + none + ")") == 0);
    CHECK(count(path, "SELECT COUNT(*) FROM layer_levels WHERE run_id IN (" + none + ")") == 0);
    CHECK(count(path, "SELECT COUNT(*) FROM layers WHERE run_id NOT IN (" + none + ")") == 2 * 175);
    // Same simulation, so the same totals bit for bit (`quote` prints a REAL's 17 digits), under another
    // config hash.
    const std::string totals =
        "SELECT r.batch, quote(r.total_time_s), quote(r.total_energy_j), quote(r.total_flops), "
        "quote(r.total_bytes_read), quote(r.total_bytes_written), r.total_cycles, r.layer_count, "
        "quote(r.average_power_w), quote(r.total_compute_s), quote(r.total_memory_s) FROM runs r WHERE "
        "r.run_id {} IN (" +
        none + ") ORDER BY r.batch";
    const std::vector<std::string> with = query(path, fmt::format(fmt::runtime(totals), "NOT"));
    const std::vector<std::string> without = query(path, fmt::format(fmt::runtime(totals), ""));
    REQUIRE(with.size() == 2);
    CHECK(with == without);
    CHECK(contains(with.front(), "|175|"));
    CHECK(count(path, "SELECT COUNT(DISTINCT config_hash) FROM runs") == 4);
    // The sweep's rows link every point, and a rerun finds all four in the file.
    CHECK(count(path, "SELECT COUNT(*) FROM sweeps WHERE sweep_name = 'rows'") == 4);
    const exp::SweepSummary again = run(file, path, 1);
    CHECK(again.ran == 0);
    CHECK(again.skipped == 4);
}
