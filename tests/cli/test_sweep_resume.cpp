// A real `mlsim sweep` process killed with SIGKILL part way through, then rerun: every point ends up in
// the database exactly once with status ok, and the file is intact.
#include <fcntl.h>
#include <signal.h>
#include <sqlite3.h>
#include <sys/wait.h>
#include <unistd.h>

#include <catch2/catch.hpp>
#include <chrono>
#include <filesystem>
#include <string>
#include <thread>
#include <vector>

namespace fs = std::filesystem;

namespace {

// Starts `mlsim sweep FILE --db DB ARGS...` with stdout and stderr sent to /dev/null; returns its pid.
pid_t spawn_sweep(const std::string& sweep_file, const std::string& db_path,
                  const std::vector<std::string>& extra) {
    std::vector<std::string> args{MLSIM_BINARY, "sweep", sweep_file, "--db", db_path};
    args.insert(args.end(), extra.begin(), extra.end());
    const pid_t pid = fork();
    REQUIRE(pid >= 0);
    if (pid == 0) {
        const int null = open("/dev/null", O_WRONLY);
        dup2(null, 1);
        dup2(null, 2);
        std::vector<char*> argv;
        for (std::string& a : args) argv.push_back(a.data());
        argv.push_back(nullptr);
        execv(argv[0], argv.data());
        _exit(127);
    }
    return pid;
}

int wait_exit(pid_t pid) {
    int status = 0;
    REQUIRE(waitpid(pid, &status, 0) == pid);
    return status;
}

// -1 while the database cannot be read yet (not created, or its tables not migrated).
int64_t count_or_minus_one(const std::string& db_path, const char* sql) {
    sqlite3* db = nullptr;
    int64_t n = -1;
    if (sqlite3_open_v2(db_path.c_str(), &db, SQLITE_OPEN_READONLY, nullptr) == SQLITE_OK) {
        sqlite3_busy_timeout(db, 1000);
        sqlite3_stmt* st = nullptr;
        if (sqlite3_prepare_v2(db, sql, -1, &st, nullptr) == SQLITE_OK && sqlite3_step(st) == SQLITE_ROW)
            n = sqlite3_column_int64(st, 0);
        sqlite3_finalize(st);
    }
    sqlite3_close(db);
    return n;
}

std::string text(const std::string& db_path, const char* sql) {
    sqlite3* db = nullptr;
    REQUIRE(sqlite3_open_v2(db_path.c_str(), &db, SQLITE_OPEN_READONLY, nullptr) == SQLITE_OK);
    sqlite3_stmt* st = nullptr;
    REQUIRE(sqlite3_prepare_v2(db, sql, -1, &st, nullptr) == SQLITE_OK);
    REQUIRE(sqlite3_step(st) == SQLITE_ROW);
    std::string out = reinterpret_cast<const char*>(sqlite3_column_text(st, 0));
    sqlite3_finalize(st);
    sqlite3_close(db);
    return out;
}

int64_t count(const std::string& db_path, const char* sql) {
    const int64_t n = count_or_minus_one(db_path, sql);
    REQUIRE(n >= 0);
    return n;
}

}  // namespace

TEST_CASE("A sweep killed with SIGKILL part way resumes on rerun: every point once, status ok, file intact",
          "[sweep]") {
    const fs::path dir = fs::temp_directory_path() / "mlsim_test_sweep_kill";
    fs::remove_all(dir);
    fs::create_directories(dir);
    const std::string db_path = (dir / "kill.db").string();
    const std::string sweep = std::string(MLSIM_SOURCE_DIR) + "/tests/cli/data/sweep_kill.yaml";
    constexpr int64_t total = 512;

    const pid_t pid = spawn_sweep(sweep, db_path, {"--jobs", "1"});
    // Wait until some points are committed, then kill it without warning.
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(120);
    int64_t committed = -1;
    while (std::chrono::steady_clock::now() < deadline) {
        committed = count_or_minus_one(db_path, "SELECT COUNT(*) FROM sweeps WHERE sweep_name = 'kill'");
        if (committed >= 20) break;
        std::this_thread::sleep_for(std::chrono::milliseconds(1));
    }
    REQUIRE(kill(pid, SIGKILL) == 0);
    const int status = wait_exit(pid);
    REQUIRE(WIFSIGNALED(status));
    REQUIRE(WTERMSIG(status) == SIGKILL);

    const int64_t before = count(db_path, "SELECT COUNT(*) FROM runs WHERE status = 'ok'");
    INFO("points committed before the kill: " << before);
    REQUIRE(before >= 20);
    REQUIRE(before < total);  // it really was stopped part way
    // Every committed run came with its sweep rows and its layers (one transaction each).
    CHECK(count(db_path, "SELECT COUNT(*) FROM sweeps") == before);
    CHECK(count(db_path,
                "SELECT COUNT(*) FROM runs r WHERE layer_count != "
                "(SELECT COUNT(*) FROM layers l WHERE l.run_id = r.run_id)") == 0);

    const pid_t again = spawn_sweep(sweep, db_path, {"--jobs", "2"});
    const int status2 = wait_exit(again);
    REQUIRE(WIFEXITED(status2));
    REQUIRE(WEXITSTATUS(status2) == 0);

    CHECK(count(db_path, "SELECT COUNT(*) FROM runs") == total);
    CHECK(count(db_path, "SELECT COUNT(*) FROM runs WHERE status = 'ok'") == total);
    CHECK(count(db_path, "SELECT COUNT(DISTINCT config_hash) FROM runs") == total);
    CHECK(count(db_path, "SELECT COUNT(*) FROM sweeps WHERE sweep_name = 'kill'") == total);
    CHECK(count(db_path, "SELECT COUNT(DISTINCT point) FROM sweeps WHERE sweep_name = 'kill'") == total);
    CHECK(count(db_path, "SELECT MIN(point) FROM sweeps") == 0);
    CHECK(count(db_path, "SELECT MAX(point) FROM sweeps") == total - 1);
    CHECK(count(db_path, "SELECT COUNT(*) FROM sweep_factors") == total * 3);
    CHECK(count(db_path,
                "SELECT COUNT(*) FROM runs r WHERE layer_count != "
                "(SELECT COUNT(*) FROM layers l WHERE l.run_id = r.run_id)") == 0);
    CHECK(text(db_path, "PRAGMA integrity_check") == "ok");
    CHECK(count(db_path, "SELECT COUNT(*) FROM pragma_foreign_key_check") == 0);
    fs::remove_all(dir);
}
