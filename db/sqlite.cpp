#include "db/sqlite.h"

#include <fmt/format.h>
#include <sqlite3.h>

#include <cstring>

#include "sim/config/error.h"
#include "sim/core/check.h"

namespace mlsim::db::sql {

namespace {

// Codes that describe the file or the machine rather than a mistake in our SQL.
bool is_environment_error(int rc) {
    switch (rc & 0xff) {
        case SQLITE_CANTOPEN:
        case SQLITE_NOTADB:
        case SQLITE_CORRUPT:
        case SQLITE_FULL:
        case SQLITE_IOERR:
        case SQLITE_READONLY:
        case SQLITE_BUSY:
        case SQLITE_LOCKED:
        case SQLITE_PERM:
        case SQLITE_NOLFS:
        case SQLITE_PROTOCOL:
            return true;
        default:
            return false;
    }
}

// A statement as a message names it: its first words (a batch insert's text runs to kilobytes).
std::string statement_text(std::string_view sql) {
    constexpr std::size_t k_shown = 60;
    if (sql.size() <= k_shown) return std::string(sql);
    std::size_t cut = sql.rfind(' ', k_shown);
    if (cut == std::string_view::npos || cut < k_shown / 2) cut = k_shown;
    return std::string(sql.substr(0, cut)) + " ...";
}

[[noreturn]] void raise(int rc, const std::string& path, std::string_view what, const char* detail) {
    std::string msg = fmt::format("{}: error: results database: cannot {}: {}", path, what,
                                  detail != nullptr ? detail : sqlite3_errstr(rc));
    // The disk or the file system is full: what was committed stays (WAL), and a sweep resumes.
    if ((rc & 0xff) == SQLITE_FULL)
        msg +=
            "; everything committed before stays in the file: free some space and run again (a sweep "
            "resumes where it stopped)";
    if (is_environment_error(rc)) throw cfg::UserError(msg);
    MLSIM_CHECK(false, msg);
    throw cfg::UserError(msg);  // unreachable; MLSIM_CHECK(false) always throws
}

}  // namespace

Connection::Connection(const std::string& path, Mode mode) : m_path(path) {
    // Before SQLite's first use in the process (a Connection is mlsim's first): no statistics of its memory
    // use, which took a global mutex and its bookkeeping on every allocation, some 1.7 % of a sweep
    // writer's instructions (bench/README.md, tenth round); mlsim reads no such statistic and sets no heap
    // limit. Should SQLite already be in use, the call is refused (SQLITE_MISUSE) and nothing changes.
    static const int memstatus = sqlite3_config(SQLITE_CONFIG_MEMSTATUS, 0);
    (void)memstatus;
    int flags = mode == Mode::read_only ? SQLITE_OPEN_READONLY : (SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE);
    // Each Connection belongs to one owner that serialises its use, so SQLite's own mutexes are not needed.
    flags |= SQLITE_OPEN_NOMUTEX;
    int rc = sqlite3_open_v2(path.c_str(), &m_db, flags, nullptr);
    if (rc != SQLITE_OK) {
        std::string detail = m_db != nullptr ? sqlite3_errmsg(m_db) : sqlite3_errstr(rc);
        sqlite3_close(m_db);
        m_db = nullptr;
        // Opening can only fail because of the file or the machine.
        throw cfg::UserError(fmt::format("{}: error: results database: cannot open: {}", path, detail));
    }
    sqlite3_extended_result_codes(m_db, 1);
}

Connection::~Connection() {
    // All statements are finalised by their owners first, so close cannot report SQLITE_BUSY.
    sqlite3_close(m_db);
}

void Connection::exec(const std::string& sql) {
    char* err = nullptr;
    int rc = sqlite3_exec(m_db, sql.c_str(), nullptr, nullptr, &err);
    if (rc != SQLITE_OK) {
        std::string detail = err != nullptr ? err : sqlite3_errstr(rc);
        sqlite3_free(err);
        raise(rc, m_path, fmt::format("run '{}'", statement_text(sql)), detail.c_str());
    }
}

int64_t Connection::last_insert_rowid() const { return sqlite3_last_insert_rowid(m_db); }

void Connection::check(int rc, std::string_view what) const {
    if (rc != SQLITE_OK && rc != SQLITE_ROW && rc != SQLITE_DONE)
        raise(rc, m_path, what, sqlite3_errmsg(m_db));
}

Statement::Statement(Connection& conn, const std::string& sql) : m_conn(conn), m_sql(sql) {
    int rc = sqlite3_prepare_v3(conn.handle(), sql.c_str(), static_cast<int>(sql.size()),
                                SQLITE_PREPARE_PERSISTENT, &m_stmt, nullptr);
    conn.check(rc, fmt::format("prepare '{}'", statement_text(sql)));
    m_param_count = sqlite3_bind_parameter_count(m_stmt);
}

Statement::~Statement() { sqlite3_finalize(m_stmt); }

int Statement::next_index() {
    MLSIM_CHECK(m_next_param <= m_param_count, fmt::format("too many values bound for '{}'", m_sql));
    return m_next_param++;
}

Statement::Kept& Statement::kept(int index) {
    if (m_kept.empty()) m_kept.resize(static_cast<std::size_t>(m_param_count));
    return m_kept[static_cast<std::size_t>(index - 1)];
}

Statement& Statement::bind_int(int64_t v) {
    const int i = next_index();
    forget(i);
    m_conn.check(sqlite3_bind_int64(m_stmt, i, v), "bind a value");
    return *this;
}

Statement& Statement::bind_real(double v) {
    const int i = next_index();
    forget(i);
    m_conn.check(sqlite3_bind_double(m_stmt, i, v), "bind a value");
    return *this;
}

Statement& Statement::bind_text(std::string_view v) {
    const int i = next_index();
    forget(i);
    m_conn.check(sqlite3_bind_text64(m_stmt, i, v.data(), v.size(), SQLITE_TRANSIENT, SQLITE_UTF8),
                 "bind a value");
    return *this;
}

Statement& Statement::bind_text_static(std::string_view v) {
    const int i = next_index();
    forget(i);
    m_conn.check(sqlite3_bind_text64(m_stmt, i, v.data(), v.size(), SQLITE_STATIC, SQLITE_UTF8),
                 "bind a value");
    return *this;
}

Statement& Statement::bind_null() {
    const int i = next_index();
    forget(i);
    m_conn.check(sqlite3_bind_null(m_stmt, i), "bind a value");
    return *this;
}

template <class Bind>
Statement& Statement::keep_number(Kept::Kind kind, uint64_t bits, Bind bind) {
    // keep_* found the parameter not holding the value (holds), so it is bound here without looking again.
    const int i = next_index();
    Kept& k = kept(i);
    k.kind = Kept::Kind::none;  // until SQLite has it
    if (const int rc = bind(i); rc != SQLITE_OK) m_conn.check(rc, "bind a value");
    k.kind = kind;
    k.bits = bits;
    return *this;
}

Statement& Statement::bind_kept_real(double v) {
    uint64_t bits = 0;
    std::memcpy(&bits, &v, sizeof bits);
    return keep_number(Kept::Kind::real, bits, [&](int i) { return sqlite3_bind_double(m_stmt, i, v); });
}

Statement& Statement::bind_kept_int(int64_t v) {
    return keep_number(Kept::Kind::integer, static_cast<uint64_t>(v),
                       [&](int i) { return sqlite3_bind_int64(m_stmt, i, v); });
}

Statement& Statement::keep_text(std::string_view v) {
    const int i = next_index();
    Kept& k = kept(i);
    if (k.kind == Kept::Kind::text && k.text == v) return *this;
    k.kind = Kept::Kind::none;
    m_conn.check(sqlite3_bind_text64(m_stmt, i, v.data(), v.size(), SQLITE_TRANSIENT, SQLITE_UTF8),
                 "bind a value");
    k.kind = Kept::Kind::text;
    k.text.assign(v);
    return *this;
}

void Statement::finish_binding() const {
    MLSIM_CHECK(m_next_param - 1 == m_param_count,
                fmt::format("bound {} of {} values for '{}'", m_next_param - 1, m_param_count, m_sql));
}

bool Statement::step() {
    int rc = sqlite3_step(m_stmt);
    if (rc == SQLITE_ROW) return true;
    if (rc == SQLITE_DONE) return false;
    // Take the message before resetting, and leave the statement reusable for a caller that recovers.
    std::string detail = sqlite3_errmsg(m_conn.handle());
    reset();
    raise(rc, m_conn.path(), fmt::format("execute '{}'", statement_text(m_sql)), detail.c_str());
}

void Statement::run() {
    finish_binding();
    while (step()) {
    }
    // Rewound without clearing the bindings: finish_binding() above proved that every parameter was bound
    // for this run, and the next run must bind every one again before it steps, so a stale value is never
    // read. (Clearing them cost a systolic point's multi-row inserts about 0.4 M instructions.)
    rewind();
}

void Statement::rewind() {
    sqlite3_reset(m_stmt);
    m_next_param = 1;
}

void Statement::reset() {
    sqlite3_reset(m_stmt);
    sqlite3_clear_bindings(m_stmt);
    m_kept.clear();
    m_next_param = 1;
}

int Statement::column_count() const { return sqlite3_column_count(m_stmt); }

bool Statement::column_is_null(int col) const { return sqlite3_column_type(m_stmt, col) == SQLITE_NULL; }

int64_t Statement::column_int(int col) const { return sqlite3_column_int64(m_stmt, col); }

double Statement::column_real(int col) const { return sqlite3_column_double(m_stmt, col); }

std::string Statement::column_text(int col) const {
    const unsigned char* text = sqlite3_column_text(m_stmt, col);
    if (text == nullptr) return {};
    return std::string(reinterpret_cast<const char*>(text),
                       static_cast<size_t>(sqlite3_column_bytes(m_stmt, col)));
}

}  // namespace mlsim::db::sql
