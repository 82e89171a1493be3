#pragma once
// The results-database schema, declared once, and the additive migration that brings any file to it.
// Contract: after migrate() the file holds every table, column and index declared here and
// meta.schema_version == current_version; rows already in the file are untouched. Migrations are only
// additive: a later change appends a Column (with `since` = the new version) to its table below and
// bumps current_version, nothing else. Columns added that way must be addable by ALTER TABLE (no
// PRIMARY KEY / UNIQUE, and NOT NULL only with a DEFAULT); migrate() checks it. A file written by a
// newer schema is refused with a UserError rather than half-understood.
#include <cstdint>
#include <span>
#include <string>
#include <string_view>

namespace mlsim::db::sql {
class Connection;
}

namespace mlsim::db::schema {

// Version 1: runs, layers, meta. Version 2: sweeps, sweep_factors (cli/sweep.h).
inline constexpr int64_t current_version = 3;

// PRAGMA application_id stamped into every file so a foreign SQLite file is recognised ('mlsi').
inline constexpr int32_t application_id = 0x6d6c7369;

struct Column {
    std::string_view name;
    std::string_view decl;  // type and constraints, as written after the name in CREATE TABLE
    int64_t since = 1;      // schema version that introduced the column
};

struct Table {
    std::string_view name;
    std::span<const Column> columns;
    std::string_view constraints;  // table constraints appended to CREATE TABLE; may be empty
};

struct Index {
    std::string_view name;
    std::string_view definition;  // "<table>(<columns>)"
};

std::span<const Table> tables();
std::span<const Index> indexes();

// Creates missing tables, adds missing columns and indexes, stamps the version. Runs in one
// transaction, so a concurrent opener never sees a half-migrated file.
void migrate(sql::Connection& conn);

// The CREATE TABLE statement for a table as declared (all columns, current version).
std::string create_table_sql(const Table& table);

}  // namespace mlsim::db::schema
