// Claims (schema 5): how processes writing one file share out sweep points. A claim is settled by a run,
// refused while a live process holds it, taken over from a dead one, and released with the run that
// settles it (db/results_db.h).
#include <fmt/format.h>
#include <sys/wait.h>
#include <unistd.h>

#include <catch2/catch.hpp>
#include <fstream>
#include <sstream>
#include <string>

#include "db/results_db.h"
#include "db/sqlite.h"
#include "tests/db/temp_dir.h"

using mlsim::db::ClaimQuery;
using mlsim::db::ClaimResult;
using mlsim::db::ResultsDb;
using mlsim::db::RunInfo;
using mlsim::db::SweepPoint;
namespace sql = mlsim::db::sql;

namespace {

struct TempDir : mlsim::test::TempDir {
    TempDir() : mlsim::test::TempDir("claims") {}
};

std::string first_line(const std::string& path) {
    std::ifstream in(path);
    std::string line;
    std::getline(in, line);
    return line;
}

// "<boot id>/<start time>" of a running process, as a claim records it (field 22 of /proc/PID/stat).
std::string start_of(pid_t pid) {
    const std::string stat = first_line(fmt::format("/proc/{}/stat", pid));
    std::istringstream fields(stat.substr(stat.rfind(')') + 1));
    std::string field;
    for (int n = 3; n <= 22; ++n) fields >> field;
    return fmt::format("{}/{}", first_line("/proc/sys/kernel/random/boot_id"), field);
}

std::string host() {
    char buf[256] = {};
    gethostname(buf, sizeof buf - 1);
    return buf;
}

// Writes a claim row as another process would have.
void put_claim(const std::string& path, const std::string& key, const std::string& host, int64_t pid,
               const std::string& start) {
    sql::Connection raw(path, sql::Connection::Mode::read_write_create);
    raw.exec(
        fmt::format("INSERT OR REPLACE INTO claims (claim_key, host, pid, process_start, claimed_utc) "
                    "VALUES ('{}', '{}', {}, '{}', '2024-01-01T00:00:00.000Z')",
                    key, host, pid, start));
}

int64_t count(const std::string& path, const std::string& sql_text) {
    sql::Connection raw(path, sql::Connection::Mode::read_only);
    sql::Statement s(raw, sql_text);
    REQUIRE(s.step());
    return s.column_int(0);
}

RunInfo info(const std::string& yaml) {
    RunInfo i;
    i.config_yaml = yaml;
    i.system = "single";
    i.device = "device";
    i.model = "model";
    i.mode = "inference";
    i.dtype = "bf16";
    return i;
}

ClaimQuery query(const std::string& key, const std::string& ok_hash = "", const std::string& error_hash = "",
                 int64_t errors_after = 0) {
    ClaimQuery q;
    q.key = key;
    q.ok_hash = ok_hash;
    q.error_hash = error_hash;
    q.errors_after = errors_after;
    return q;
}

}  // namespace

TEST_CASE(
    "A claimed point is released in the transaction of the run that settles it, which settles it for "
    "every later claim",
    "[db][claims]") {
    TempDir dir;
    const std::string path = dir.file("c.db");
    ResultsDb db(path);
    const RunInfo ok = info("a: 1\n");
    const std::string hash = mlsim::db::config_hash(ok.config_yaml);

    CHECK(db.claim(query(hash, hash)).state == ClaimResult::State::claimed);
    CHECK(count(path, fmt::format("SELECT COUNT(*) FROM claims WHERE pid = {}", getpid())) == 1);
    SweepPoint point{"s", 3, {}, hash};
    const int64_t id = db.record_run(ok, std::vector<mlsim::db::LayerRow>{}, 0.1, &point);
    CHECK(count(path, "SELECT COUNT(*) FROM claims") == 0);

    const ClaimResult again = db.claim(query(hash, hash));
    CHECK(again.state == ClaimResult::State::done);
    CHECK(again.run_id == id);
    CHECK(again.run_ok);
    CHECK(count(path, "SELECT COUNT(*) FROM claims") == 0);  // nothing written for a settled point
}

TEST_CASE("A failed run settles its point, unless it is older than the round that retries failures",
          "[db][claims]") {
    TempDir dir;
    const std::string path = dir.file("c.db");
    ResultsDb db(path);
    const RunInfo failed = info("sweep_point: {model: x}\n");
    const std::string fail_hash = mlsim::db::config_hash(failed.config_yaml);
    SweepPoint point{"s", 0, {}, fail_hash};
    CHECK(db.claim(query(fail_hash, "", fail_hash)).state == ClaimResult::State::claimed);
    const int64_t id = db.record_failed_run(failed, "does not fit", 0.1, &point);
    CHECK(count(path, "SELECT COUNT(*) FROM claims") == 0);

    const ClaimResult settled = db.claim(query(fail_hash, "", fail_hash));
    CHECK(settled.state == ClaimResult::State::done);
    CHECK(settled.run_id == id);
    CHECK_FALSE(settled.run_ok);
    CHECK(db.max_run_id() == id);
    // A --retry-failed round that started after that failure reruns the point.
    CHECK(db.claim(query(fail_hash, "", fail_hash, db.max_run_id())).state == ClaimResult::State::claimed);
}

TEST_CASE(
    "A claim held by a live process is busy; one whose process is gone, a zombie, another incarnation "
    "of the pid or on another host is stale and taken over",
    "[db][claims]") {
    TempDir dir;
    const std::string path = dir.file("c.db");
    ResultsDb db(path);
    const pid_t parent = getppid();  // alive for the whole test
    const std::string parent_start = start_of(parent);

    put_claim(path, "k-live", host(), parent, parent_start);
    CHECK(db.claim(query("k-live")).state == ClaimResult::State::busy);
    CHECK(count(path, fmt::format("SELECT COUNT(*) FROM claims WHERE claim_key = 'k-live' AND pid = {}",
                                  parent)) == 1);

    put_claim(path, "k-reused-pid", host(), parent, fmt::format("{}0", parent_start));
    CHECK(db.claim(query("k-reused-pid")).state == ClaimResult::State::claimed);
    put_claim(path, "k-other-host", fmt::format("{}-elsewhere", host()), parent, parent_start);
    CHECK(db.claim(query("k-other-host")).state == ClaimResult::State::claimed);

    // A child that has exited: first as a zombie (not yet waited for), then gone.
    const pid_t child = fork();
    REQUIRE(child >= 0);
    if (child == 0) _exit(0);
    const std::string child_start = start_of(child);
    // Wait until it has exited (state Z) without reaping it.
    for (int i = 0; i < 1000; ++i) {
        const std::string stat = first_line(fmt::format("/proc/{}/stat", child));
        if (stat.substr(stat.rfind(')') + 2, 1) == "Z") break;
        usleep(1000);
    }
    put_claim(path, "k-zombie", host(), child, child_start);
    CHECK(db.claim(query("k-zombie")).state == ClaimResult::State::claimed);
    int status = 0;
    REQUIRE(waitpid(child, &status, 0) == child);
    put_claim(path, "k-dead", host(), child, child_start);
    CHECK(db.claim(query("k-dead")).state == ClaimResult::State::claimed);

    // Every claim taken over is now this process's; release_claim drops its own claims only.
    CHECK(count(path, fmt::format("SELECT COUNT(*) FROM claims WHERE pid = {}", getpid())) == 4);
    db.release_claim("k-dead");
    db.release_claim("k-live");
    CHECK(count(path, "SELECT COUNT(*) FROM claims WHERE claim_key = 'k-dead'") == 0);
    CHECK(count(path, "SELECT COUNT(*) FROM claims WHERE claim_key = 'k-live'") == 1);
}

TEST_CASE(
    "A sweep writer announces itself in claims, sees other live writers, drops dead ones' rows and withdraws",
    "[db][claims]") {
    TempDir dir;
    const std::string path = dir.file("w.db");
    ResultsDb db(path);
    CHECK_FALSE(db.other_writers());
    CHECK_FALSE(db.announce_writer());  // alone
    const std::string mine = fmt::format("writer {} {} {}", host(), getpid(), start_of(getpid()));
    CHECK(count(path, fmt::format("SELECT COUNT(*) FROM claims WHERE claim_key = '{}' AND point IS NULL",
                                  mine)) == 1);
    CHECK_FALSE(db.other_writers());  // its own row is not another writer

    // Another live process's row (a child that waits), and a dead one's (a child already reaped).
    const pid_t live = fork();
    REQUIRE(live >= 0);
    if (live == 0) {
        pause();
        _exit(0);
    }
    const pid_t dead = fork();
    REQUIRE(dead >= 0);
    if (dead == 0) _exit(0);
    const std::string dead_start = start_of(dead);  // may be empty once it has exited: stale either way
    REQUIRE(waitpid(dead, nullptr, 0) == dead);
    const std::string live_key = fmt::format("writer {} {} {}", host(), live, start_of(live));
    const std::string dead_key = fmt::format("writer {} {} x", host(), dead);
    put_claim(path, live_key, host(), live, start_of(live));
    put_claim(path, dead_key, host(), dead, dead_start);
    CHECK(db.other_writers());
    CHECK(db.announce_writer());  // the live one counts; the dead one's row goes
    CHECK(count(path, fmt::format("SELECT COUNT(*) FROM claims WHERE claim_key = '{}'", live_key)) == 1);
    CHECK(count(path, fmt::format("SELECT COUNT(*) FROM claims WHERE claim_key = '{}'", dead_key)) == 0);
    kill(live, SIGKILL);
    REQUIRE(waitpid(live, nullptr, 0) == live);
    CHECK_FALSE(db.other_writers());  // its row is there, but its process is gone
    db.withdraw_writer();
    CHECK(count(path, fmt::format("SELECT COUNT(*) FROM claims WHERE claim_key = '{}'", mine)) == 0);
}

TEST_CASE("run_hashes_after lists the runs of a status after a run_id and moves it to the last one listed",
          "[db][claims]") {
    TempDir dir;
    const std::string path = dir.file("h.db");
    ResultsDb db(path);
    const RunInfo a = info("a: 1\n"), b = info("b: 2\n"), c = info("sweep_point: {model: c}\n");
    const int64_t ida = db.record_run(a, std::vector<mlsim::db::LayerRow>{}, 0.1);
    int64_t seen = ida;
    CHECK(db.run_hashes_after("ok", seen).empty());
    CHECK(seen == ida);
    const int64_t idb = db.record_run(b, std::vector<mlsim::db::LayerRow>{}, 0.1);
    const int64_t idc = db.record_failed_run(c, "does not fit", 0.1);
    CHECK(db.run_hashes_after("ok", seen) == std::vector<std::string>{mlsim::db::config_hash(b.config_yaml)});
    CHECK(seen == idb);  // the failed run after it is not listed
    CHECK(idc > idb);
    int64_t from_start = 0;
    CHECK(db.run_hashes_after("ok", from_start).size() == 2);
    int64_t errors_from = 0;
    CHECK(db.run_hashes_after("error", errors_from).size() == 1);  // the failed run, listed by its own status
    CHECK(errors_from == idc);
}
