#pragma once
// Test helpers for tests that run real `mlsim` processes side by side or kill them: start one without
// waiting, wait for it, and read the database it writes with the SQLite C API (read-only, so reading
// never takes part in the locking under test).
#include <fcntl.h>
#include <signal.h>
#include <sqlite3.h>
#include <sys/wait.h>
#include <unistd.h>

#include <catch2/catch.hpp>
#include <cstdint>
#include <string>
#include <vector>

namespace mlsim::test {

// Starts `mlsim ARGS...` with stdout and stderr sent to `output` (/dev/null unless given); returns its pid.
inline pid_t spawn_mlsim(const std::vector<std::string>& rest, const std::string& output = "/dev/null") {
    std::vector<std::string> args{std::string(MLSIM_BINARY)};
    args.insert(args.end(), rest.begin(), rest.end());
    const pid_t pid = fork();
    REQUIRE(pid >= 0);
    if (pid == 0) {
        const int null = open(output.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
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

// The wait status (see waitpid) of a process started by spawn_mlsim.
inline int wait_status(pid_t pid) {
    int status = 0;
    REQUIRE(waitpid(pid, &status, 0) == pid);
    return status;
}

inline bool exited_ok(int status) { return WIFEXITED(status) && WEXITSTATUS(status) == 0; }

// Every row of a query, each as its columns' text joined by '|' (NULL as "NULL"); empty when the database
// cannot be read yet (not created, tables not migrated) and `allow_missing`, else a test failure.
inline std::vector<std::string> db_rows(const std::string& db_path, const std::string& sql,
                                        bool allow_missing = false) {
    std::vector<std::string> rows;
    sqlite3* db = nullptr;
    const bool opened = sqlite3_open_v2(db_path.c_str(), &db, SQLITE_OPEN_READONLY, nullptr) == SQLITE_OK;
    sqlite3_stmt* st = nullptr;
    bool prepared = false;
    if (opened) {
        sqlite3_busy_timeout(db, 5000);
        prepared = sqlite3_prepare_v2(db, sql.c_str(), -1, &st, nullptr) == SQLITE_OK;
    }
    if (!prepared && !allow_missing)
        FAIL("cannot query " << db_path << ": " << sql << ": " << sqlite3_errmsg(db));
    while (prepared && sqlite3_step(st) == SQLITE_ROW) {
        std::string row;
        for (int c = 0; c < sqlite3_column_count(st); ++c) {
            if (c) row += '|';
            const unsigned char* text = sqlite3_column_text(st, c);
            row += text ? reinterpret_cast<const char*>(text) : "NULL";
        }
        rows.push_back(row);
    }
    sqlite3_finalize(st);
    sqlite3_close(db);
    return rows;
}

// A single-number query; -1 while the database cannot be read yet.
inline int64_t db_count_or_minus_one(const std::string& db_path, const std::string& sql) {
    const std::vector<std::string> rows = db_rows(db_path, sql, true);
    return rows.empty() ? -1 : std::stoll(rows.front());
}

inline int64_t db_count(const std::string& db_path, const std::string& sql) {
    const std::vector<std::string> rows = db_rows(db_path, sql);
    REQUIRE(rows.size() == 1);
    return std::stoll(rows.front());
}

}  // namespace mlsim::test
