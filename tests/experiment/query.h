#pragma once
// Test helper: the rows of a read-only SQLite query as text, one "v1|v2|...|" string per row.
#include <sqlite3.h>

#include <catch2/catch.hpp>
#include <string>
#include <vector>

namespace mlsim::test {

inline std::vector<std::string> query(const std::string& db_path, const std::string& sql) {
    sqlite3* db = nullptr;
    REQUIRE(sqlite3_open_v2(db_path.c_str(), &db, SQLITE_OPEN_READONLY, nullptr) == SQLITE_OK);
    sqlite3_stmt* st = nullptr;
    REQUIRE(sqlite3_prepare_v2(db, sql.c_str(), -1, &st, nullptr) == SQLITE_OK);
    std::vector<std::string> rows;
    while (sqlite3_step(st) == SQLITE_ROW) {
        std::string row;
        for (int c = 0; c < sqlite3_column_count(st); ++c) {
            const unsigned char* t = sqlite3_column_text(st, c);
            row += (t ? reinterpret_cast<const char*>(t) : "NULL");
            row += '|';
        }
        rows.push_back(row);
    }
    sqlite3_finalize(st);
    sqlite3_close(db);
    return rows;
}

}  // namespace mlsim::test
