#pragma once
// Thin RAII layer over the SQLite C API, private to db/.
// Contract: every failing SQLite call throws. Failures caused by the environment (file missing or
// unreadable, not a database, disk full, I/O error, read-only, locked past the busy timeout) throw
// cfg::UserError naming the database path; anything else (bad SQL, misuse, constraint violations) is a
// bug in mlsim and throws InternalError through MLSIM_CHECK. Objects are not thread-safe; the owner
// serialises access. A Statement must not outlive its Connection.
#include <cstdint>
#include <cstring>
#include <string>
#include <string_view>
#include <vector>

struct sqlite3;
struct sqlite3_stmt;

namespace mlsim::db::sql {

class Connection {
  public:
    enum class Mode { read_write_create, read_only };

    Connection(const std::string& path, Mode mode);
    ~Connection();
    Connection(const Connection&) = delete;
    Connection& operator=(const Connection&) = delete;

    // Runs one or more statements that return no rows we need.
    void exec(const std::string& sql);
    // Throws for a failed call; `what` says what we were doing (goes into the message).
    void check(int rc, std::string_view what) const;

    int64_t last_insert_rowid() const;
    sqlite3* handle() const { return m_db; }
    const std::string& path() const { return m_path; }

  private:
    sqlite3* m_db = nullptr;
    std::string m_path;
};

class Statement {
  public:
    Statement(Connection& conn, const std::string& sql);
    ~Statement();
    Statement(const Statement&) = delete;
    Statement& operator=(const Statement&) = delete;

    // Binding is positional and sequential: each bind_* fills the next parameter. finish_binding()
    // checks that exactly as many values were bound as the SQL has parameters, which keeps a column
    // list and its values in step.
    Statement& bind_int(int64_t v);
    Statement& bind_real(double v);
    Statement& bind_text(std::string_view v);
    // Binds text without copying it: the caller keeps `v`'s bytes alive and unchanged until the statement
    // has run. SQLite keeps the pointer until the parameter is bound again or reset() clears the bindings,
    // but never reads it unless stepped, and run() refuses to step before every parameter is bound again.
    // For the many row strings of a run (db::ResultsDb's multi-row inserts).
    Statement& bind_text_static(std::string_view v);
    Statement& bind_null();
    // Bind as bind_real / bind_int / bind_text, except that a parameter that already holds this very value,
    // bound by keep_* on an earlier run of the statement (the same type and bits, or the same bytes), is left
    // as it is: SQLite keeps a parameter's value across runs until it is bound again or reset() clears it.
    // For the layer rows of a sweep's points, most of whose columns (a layer's name, shape, bytes, energy of
    // compute) repeat from point to point when the points vary the hardware (issue 15). keep_text copies the
    // text into SQLite when it changes, so the caller's bytes need not stay alive.
    // The check that a parameter already holds the value is inline: a sweep's writer makes it some 4,000
    // times a point, and out of line its calls cost a third of the binding they saved (bench/README.md,
    // eighteenth round).
    Statement& keep_real(double v) {
        uint64_t bits = 0;
        std::memcpy(&bits, &v, sizeof bits);
        return holds(Kept::Kind::real, bits) ? *this : bind_kept_real(v);
    }
    Statement& keep_int(int64_t v) {
        return holds(Kept::Kind::integer, static_cast<uint64_t>(v)) ? *this : bind_kept_int(v);
    }
    Statement& keep_text(std::string_view v);
    void finish_binding() const;

    // Advances; true while a row is available.
    bool step();
    // Runs a statement that yields no rows (every parameter bound), then rewinds it for the next run, which
    // binds every parameter again; the bindings are left in place until then (text bound with
    // bind_text_static must stay alive until it is rebound, reset() or the statement is destroyed).
    void run();
    // Clears bindings and rewinds, ready for the next bind_*/step cycle.
    void reset();
    // Rewinds without clearing the bindings, for a statement that is run() next: run() checks that every
    // parameter was bound again.
    void rewind();

    int column_count() const;
    bool column_is_null(int col) const;
    int64_t column_int(int col) const;
    double column_real(int col) const;
    std::string column_text(int col) const;

  private:
    int next_index();
    // What keep_* bound to a parameter; `none` once anything else binds it.
    struct Kept {
        enum class Kind : uint8_t { none, real, integer, text };
        Kind kind = Kind::none;
        uint64_t bits = 0;  // the double's bits, or the integer
        std::string text;
    };
    // The parameter's Kept (index from 1), the list made on first use.
    Kept& kept(int index);
    // Whether keep_* left the next parameter holding `kind` with these bits; if so it is taken (counted as
    // bound). A parameter past the list (none made yet, or too many bound) is not held: the binding below
    // then makes the list or reports the excess.
    bool holds(Kept::Kind kind, uint64_t bits) {
        const auto i = static_cast<std::size_t>(m_next_param - 1);
        if (i >= m_kept.size() || m_kept[i].kind != kind || m_kept[i].bits != bits) return false;
        ++m_next_param;
        return true;
    }
    // keep_real and keep_int once the parameter does not hold the value: binds it and keeps it.
    Statement& bind_kept_real(double v);
    Statement& bind_kept_int(int64_t v);
    template <class Bind>
    Statement& keep_number(Kept::Kind kind, uint64_t bits, Bind bind);
    // A plain bind replaces what keep_* left in the parameter.
    void forget(int index) {
        if (!m_kept.empty()) m_kept[static_cast<std::size_t>(index - 1)].kind = Kept::Kind::none;
    }

    Connection& m_conn;
    sqlite3_stmt* m_stmt = nullptr;
    std::string m_sql;
    int m_next_param = 1;
    int m_param_count = 0;     // the SQL's parameters
    std::vector<Kept> m_kept;  // per parameter, once a keep_* is used
};

}  // namespace mlsim::db::sql
