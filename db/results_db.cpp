#include "db/results_db.h"

#include <fcntl.h>
#include <fmt/format.h>
#include <signal.h>
#include <sqlite3.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <atomic>
#include <cerrno>
#include <charconv>
#include <chrono>
#include <cmath>
#include <condition_variable>
#include <cstddef>
#include <cstring>
#include <ctime>
#include <filesystem>
#include <fstream>
#include <functional>
#include <limits>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <set>
#include <sstream>
#include <system_error>
#include <thread>
#include <type_traits>
#include <unordered_map>
#include <utility>

#include "db/schema.h"
#include "db/sqlite.h"
#include "sim/config/error.h"
#include "sim/core/check.h"
#include "sim/version.h"

namespace mlsim::db {

namespace {

// Long enough to ride out another process's commit of a large run; short enough that a stuck
// writer is reported rather than waited on forever.
constexpr int k_busy_timeout_ms = 30'000;

// The columns each insert writes, in the order write_run()/write_layer() bind them. The SQL is
// generated from these lists, and finish_binding() checks that the number of values bound matches.
constexpr const char* k_run_insert_columns[] = {
    "status",
    "error",
    "config_yaml",
    "config_hash",
    "version",
    "wall_s",
    "created_utc",
    "system",
    "device",
    "model",
    "mode",
    "dtype",
    "batch",
    "seq",
    "peak_flops_per_s",
    "mem_bandwidth_Bps",
    "total_time_s",
    "total_energy_j",
    "layer_count",
    "total_macs",
    "total_flops",
    "total_bytes_read",
    "total_bytes_written",
    "total_energy_compute_j",
    "total_energy_memory_j",
    "total_energy_static_j",
    "device_model",
    "total_cycles",
    "total_stall_cycles",
    "average_power_w",
    "tdp_w",
    "over_tdp",
    "total_compute_s",
    "total_memory_s",
    "total_overhead_s",
    "total_communication_s",
};

constexpr const char* k_layer_insert_columns[] = {
    "run_id",          "idx",
    "def_id",          "bytes_read",
    "bytes_written",   "start_s",
    "end_s",           "time_s",
    "cycles",          "stall_cycles",
    "energy_j",        "energy_compute_j",
    "energy_memory_j", "energy_static_j",
    "utilization",     "bound",
    "compute_s",       "memory_s",
    "overhead_s",      "communication_s",
    "levels",          "metrics",
};

constexpr const char* k_factor_insert_columns[] = {
    "sweep_name", "run_id", "factor", "value", "value_num",
};

// Rows per INSERT statement for the row tables of a run (layers, sweep factors):
// a statement's fixed cost (opening its cursors, halting the VM, resetting) is shared by this many rows,
// which with the uncopied row text cut the instructions to record a ResNet-50 run by about a third
// (bench/README.md, Sweeps over MPI). 32 rows of the 28 layer columns bind 896 values, far below SQLite's
// limit of 32,766.
constexpr std::size_t k_rows_per_insert = 32;

// Multi-row inserts (rows > 1) are INSERT OR ROLLBACK: a constraint failure (a bug: rows are validated
// first) rolls back the whole transaction instead of the one statement, so SQLite keeps no statement journal
// for them (a copy of each page a statement touches first; with the savepoints Impl::Transaction no longer
// opens in a batch, 1.3 M instructions of the 21 M a systolic point's record_run cost). A failed
// statement fails its write either way, and a failed write is undone entirely (Impl::Transaction).
// With `shared_first`, every row's first column is the one parameter ?1 (a run's rows all carry its run_id),
// bound once per statement instead of once per row.
template <size_t N>
std::string insert_sql(std::string_view table, const char* const (&columns)[N], std::size_t rows = 1,
                       bool shared_first = false) {
    std::string names;
    std::string marks = "(";
    for (size_t i = 0; i < N; ++i) {
        names += fmt::format("{}{}", i == 0 ? "" : ", ", columns[i]);
        marks += i == 0 ? (shared_first ? "?1" : "?") : ", ?";
    }
    marks += ")";
    std::string values = marks;
    for (size_t r = 1; r < rows; ++r) values += ", " + marks;
    return fmt::format("INSERT{} INTO {} ({}) VALUES {}", rows > 1 ? " OR ROLLBACK" : "", table, names,
                       values);
}

using Totals = RunTotals;

bool non_negative(double v) { return std::isfinite(v) && v >= 0; }

void check_quantity(const LayerRow& layer, const char* field, double v) {
    MLSIM_CHECK(non_negative(v), fmt::format("results: layer {} '{}': {} = {} must be finite and >= 0",
                                             layer.idx, layer.name, field, v));
}

void check_count(const LayerRow& layer, const char* field, int64_t v) {
    MLSIM_CHECK(v >= 0,
                fmt::format("results: layer {} '{}': {} = {} must be >= 0", layer.idx, layer.name, field, v));
}

// The parts of a layer's time, in the order and with the names `bound` uses.
struct TimePart {
    const char* name;   // as in `bound`
    const char* field;  // the LayerRow field
    double value;
};
std::array<TimePart, 4> time_parts(const LayerRow& l) {
    return {TimePart{"compute", "compute_s", l.compute_s}, TimePart{"memory", "memory_s", l.memory_s},
            TimePart{"overhead", "overhead_s", l.overhead_s},
            TimePart{"communication", "communication_s", l.communication_s}};
}

void check_time_split(const LayerRow& l) {
    const auto parts = time_parts(l);
    double sum = 0;
    for (const TimePart& p : parts) {
        check_quantity(l, p.field, p.value);
        sum += p.value;
    }
    // Rounding of the producer's own split; far below a picosecond at any layer time.
    const double slack = 1e-9 * l.time_s + 1e-15;
    MLSIM_CHECK(
        std::abs(sum - l.time_s) <= slack,
        fmt::format("results: layer {} '{}': compute_s + memory_s + overhead_s + communication_s = {} "
                    "but time_s = {}",
                    l.idx, l.name, sum, l.time_s));
    const auto named =
        std::find_if(parts.begin(), parts.end(), [&](const TimePart& p) { return l.bound == p.name; });
    MLSIM_CHECK(named != parts.end(),
                fmt::format("results: layer {} '{}': bound '{}' is not one of compute, memory, overhead, "
                            "communication",
                            l.idx, l.name, l.bound));
    for (const TimePart& p : parts)
        MLSIM_CHECK(
            named->value + slack >= p.value,
            fmt::format("results: layer {} '{}': bound '{}' ({} s) is not the largest part of its time: "
                        "{} takes {} s",
                        l.idx, l.name, l.bound, named->value, p.name, p.value));
}

// Finds names repeated within a layer's levels or metrics. A layer has a handful of levels and about a dozen
// metrics: comparing each with the earlier ones costs less than a set's allocations (a node per row, about a
// twentieth of the writer's CPU for a systolic point before); long lists fall back to the set.
class RepeatCheck {
  public:
    explicit RepeatCheck(std::size_t rows) : m_small(rows <= k_small) {}
    // Whether `name` (the i-th name offered, in order) equals an earlier one.
    bool repeats(std::string_view name) {
        if (!m_small) return !m_seen.insert(name).second;
        for (std::size_t j = 0; j < m_count; ++j)
            if (m_names[j] == name) return true;
        m_names[m_count++] = name;
        return false;
    }

  private:
    static constexpr std::size_t k_small = 64;
    bool m_small;
    std::size_t m_count = 0;
    std::array<std::string_view, k_small> m_names;
    std::set<std::string_view> m_seen;
};

void check_levels(const LayerRow& l) {
    RepeatCheck seen(l.levels.size());
    for (const LevelRow& v : l.levels) {
        MLSIM_CHECK(!v.level.empty(),
                    fmt::format("results: layer {} '{}': a memory level without a name", l.idx, l.name));
        MLSIM_CHECK(
            !seen.repeats(v.level),
            fmt::format("results: layer {} '{}': level '{}' appears more than once", l.idx, l.name, v.level));
        for (const auto& [field, value] :
             {std::pair{"bytes_read", v.bytes_read}, std::pair{"bytes_written", v.bytes_written},
              std::pair{"energy_j", v.energy_j}})
            MLSIM_CHECK(non_negative(value),
                        fmt::format("results: layer {} '{}': level '{}': {} = {} must be finite and >= 0",
                                    l.idx, l.name, v.level, field, value));
        MLSIM_CHECK(v.accesses >= 0,
                    fmt::format("results: layer {} '{}': level '{}': accesses = {} must be >= 0", l.idx,
                                l.name, v.level, v.accesses));
    }
}

void check_metrics(const LayerRow& l) {
    RepeatCheck seen(l.metrics.size());
    for (const MetricRow& m : l.metrics) {
        MLSIM_CHECK(!m.name.empty(),
                    fmt::format("results: layer {} '{}': a metric without a name", l.idx, l.name));
        MLSIM_CHECK(
            !seen.repeats(m.name),
            fmt::format("results: layer {} '{}': metric '{}' appears more than once", l.idx, l.name, m.name));
        MLSIM_CHECK(
            m.value.has_value() != !m.text.empty(),
            fmt::format("results: layer {} '{}': metric '{}' needs exactly one of a value or a text ({})",
                        l.idx, l.name, m.name, m.value ? "both are set" : "neither is set"));
        if (m.value) {
            MLSIM_CHECK(std::isfinite(*m.value),
                        fmt::format("results: layer {} '{}': metric '{}' = {} must be finite", l.idx, l.name,
                                    m.name, *m.value));
            MLSIM_CHECK(!m.unit.empty(),
                        fmt::format("results: layer {} '{}': metric '{}' has a value but no unit "
                                    "(\"1\" for a ratio, \"count\" for a count)",
                                    l.idx, l.name, m.name));
        } else {
            MLSIM_CHECK(m.unit.empty(),
                        fmt::format("results: layer {} '{}': text metric '{}' has a unit '{}'", l.idx, l.name,
                                    m.name, m.unit));
        }
    }
}

void validate_info(const RunInfo& info, double wall_s) {
    MLSIM_CHECK(non_negative(wall_s), fmt::format("results: wall_s = {} must be finite and >= 0", wall_s));
    MLSIM_CHECK(info.batch >= 0 && info.seq >= 0,
                fmt::format("results: batch = {} and seq = {} must be >= 0", info.batch, info.seq));
    MLSIM_CHECK(
        non_negative(info.peak_flops_per_s) && non_negative(info.mem_bandwidth_Bps),
        fmt::format("results: peak_flops_per_s = {} and mem_bandwidth_Bps = {} must be finite and >= 0",
                    info.peak_flops_per_s, info.mem_bandwidth_Bps));
    MLSIM_CHECK(non_negative(info.tdp_W),
                fmt::format("results: tdp_W = {} must be finite and >= 0", info.tdp_W));
}

// Checks every physics invariant before anything touches the file, and sums the run totals.
Totals validate_layers(const std::vector<LayerRow>& layers) {
    Totals t;
    std::vector<int64_t> ids;
    ids.reserve(layers.size());
    double first_start = std::numeric_limits<double>::infinity();
    double last_end = 0;
    for (const LayerRow& l : layers) {
        check_quantity(l, "macs", l.macs);
        check_quantity(l, "flops", l.flops);
        check_quantity(l, "bytes_read", l.bytes_read);
        check_quantity(l, "bytes_written", l.bytes_written);
        check_quantity(l, "start_s", l.start_s);
        check_quantity(l, "end_s", l.end_s);
        check_quantity(l, "time_s", l.time_s);
        check_quantity(l, "energy_j", l.energy_j);
        check_quantity(l, "energy_compute_j", l.energy_compute_j);
        check_quantity(l, "energy_memory_j", l.energy_memory_j);
        check_quantity(l, "energy_static_j", l.energy_static_j);
        check_quantity(l, "utilization", l.utilization);
        check_count(l, "params", l.params);
        check_count(l, "cycles", l.cycles);
        check_count(l, "stall_cycles", l.stall_cycles);
        MLSIM_CHECK(l.stall_cycles <= l.cycles,
                    fmt::format("results: layer {} '{}': stall_cycles {} > cycles {}", l.idx, l.name,
                                l.stall_cycles, l.cycles));
        MLSIM_CHECK(l.end_s >= l.start_s, fmt::format("results: layer {} '{}': end_s {} < start_s {}", l.idx,
                                                      l.name, l.end_s, l.start_s));
        // Relative slack for the rounding of end_s - start_s in seconds; far below one picosecond.
        double span = l.end_s - l.start_s;
        MLSIM_CHECK(l.time_s <= span + 1e-9 * std::max(l.end_s, l.time_s),
                    fmt::format("results: layer {} '{}': time_s {} exceeds its interval [{}, {}]", l.idx,
                                l.name, l.time_s, l.start_s, l.end_s));
        double parts = l.energy_compute_j + l.energy_memory_j + l.energy_static_j;
        MLSIM_CHECK(
            l.energy_j >= parts * (1 - 1e-9),
            fmt::format("results: layer {} '{}': energy_j {} is less than its parts (compute + memory + "
                        "static = {})",
                        l.idx, l.name, l.energy_j, parts));
        MLSIM_CHECK(l.utilization <= 1 + 1e-9,
                    fmt::format("results: layer {} '{}': utilization {} > 1", l.idx, l.name, l.utilization));
        check_time_split(l);
        check_levels(l);
        check_metrics(l);

        ids.push_back(l.idx);
        first_start = std::min(first_start, l.start_s);
        last_end = std::max(last_end, l.end_s);
        t.energy_j += l.energy_j;
        t.energy_compute_j += l.energy_compute_j;
        t.energy_memory_j += l.energy_memory_j;
        t.energy_static_j += l.energy_static_j;
        t.macs += l.macs;
        t.flops += l.flops;
        t.bytes_read += l.bytes_read;
        t.bytes_written += l.bytes_written;
        t.cycles += l.cycles;
        t.stall_cycles += l.stall_cycles;
        t.compute_s += l.compute_s;
        t.memory_s += l.memory_s;
        t.overhead_s += l.overhead_s;
        t.communication_s += l.communication_s;
    }
    std::sort(ids.begin(), ids.end());
    auto dup = std::adjacent_find(ids.begin(), ids.end());
    MLSIM_CHECK(dup == ids.end(), fmt::format("results: layer idx {} appears more than once", *dup));
    t.layer_count = static_cast<int64_t>(layers.size());
    t.time_s = layers.empty() ? 0.0 : last_end - first_start;
    return t;
}

void bind_optional(sql::Statement& s, std::optional<double> v) {
    if (v)
        s.bind_real(*v);
    else
        s.bind_null();
}

std::string utc_now() {
    auto now = std::chrono::system_clock::now();
    std::time_t secs = std::chrono::system_clock::to_time_t(now);
    auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(now.time_since_epoch()).count() % 1000;
    std::tm tm{};
    gmtime_r(&secs, &tm);
    return fmt::format("{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:03}Z", tm.tm_year + 1900, tm.tm_mon + 1,
                       tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec, ms);
}

// JSON string literal: quotes, backslashes and control characters escaped; UTF-8 passes through.
std::string json_string(std::string_view text) {
    std::string out;
    schema::append_json_string(out, text);
    return out;
}

void validate_point(const SweepPoint& point) {
    MLSIM_CHECK(!point.sweep_name.empty(), "results: a sweep point needs its sweep name");
    MLSIM_CHECK(point.point >= 0, fmt::format("results: sweep point index {} must be >= 0", point.point));
    for (const SweepFactorValue& f : point.factors)
        MLSIM_CHECK(
            !f.value_num || std::isfinite(*f.value_num),
            fmt::format("results: sweep factor {} = {} has a non-finite value_num", f.factor, f.value));
}

// Also refuses a path that exists but is not a regular file: SQLite would wait forever reading a FIFO.
void create_parent_directories(const std::string& path) {
    // SQLite's in-memory and temporary databases keep nothing, and a URI ("file:x.db?mode=ro") is no
    // file's path: its directories ("file:sub") would be made before SQLite reads it as a URI. Refused
    // before anything is created (a relative path "./file:x.db" still names a file).
    if (path.empty() || path == ":memory:" || path.starts_with("file:"))
        throw cfg::UserError(
            fmt::format("{}: error: results database: give the path of a file (an in-memory "
                        "database or a URI keeps no results)",
                        path.empty() ? "''" : path));
    std::error_code status_ec;
    const auto status = std::filesystem::status(path, status_ec);
    if (!status_ec && std::filesystem::exists(status) && !std::filesystem::is_regular_file(status))
        throw cfg::UserError(fmt::format("{}: error: results database: cannot open: {}", path,
                                         std::filesystem::is_directory(status)
                                             ? "it is a directory"
                                             : "not a regular file (a FIFO, socket or device)"));
    std::filesystem::path parent = std::filesystem::path(path).parent_path();
    if (parent.empty()) return;
    std::error_code ec;
    std::filesystem::create_directories(parent, ec);
    if (ec)
        throw cfg::UserError(fmt::format("{}: error: results database: cannot create directory '{}': {}",
                                         path, parent.string(), ec.message()));
}

// Who holds a claim: enough to tell, on this host, whether that process still runs.
struct ProcessIdentity {
    std::string host;
    int64_t pid = 0;
    std::string start;  // "<boot id>/<start time in clock ticks>"; empty where /proc is unavailable
};

std::string first_line(const std::string& path) {
    std::ifstream in(path);
    std::string line;
    std::getline(in, line);
    return line;
}

// Fields 3 (state) and 22 (start time) of /proc/PID/stat; nullopt when there is no such process. The
// command name (field 2) may hold spaces and parentheses, so fields are counted after its last ')'.
struct ProcStat {
    char state = '?';
    std::string start_ticks;
};
std::optional<ProcStat> proc_stat(int64_t pid) {
    const std::string line = first_line(fmt::format("/proc/{}/stat", pid));
    const size_t paren = line.rfind(')');
    if (paren == std::string::npos) return std::nullopt;
    std::istringstream fields(line.substr(paren + 1));
    ProcStat st;
    std::string field;
    for (int n = 3; n <= 22 && fields >> field; ++n) {
        if (n == 3) st.state = field.empty() ? '?' : field[0];
        if (n == 22) st.start_ticks = field;
    }
    if (st.start_ticks.empty()) return std::nullopt;
    return st;
}

std::string process_start(int64_t pid, const std::string& boot_id) {
    if (boot_id.empty()) return "";
    const std::optional<ProcStat> st = proc_stat(pid);
    return st ? fmt::format("{}/{}", boot_id, st->start_ticks) : "";
}

std::string host_name() {
    char buf[256] = {};
    if (gethostname(buf, sizeof buf - 1) != 0) return "localhost";
    return buf;
}

ProcessIdentity this_process() {
    ProcessIdentity me;
    me.host = host_name();
    me.pid = getpid();
    me.start = process_start(me.pid, first_line("/proc/sys/kernel/random/boot_id"));
    return me;
}

// See the contract in results_db.h: live only on this host, while a process with that pid and start
// time runs (a zombie has finished).
bool claim_is_live(const ProcessIdentity& holder, const ProcessIdentity& me) {
    if (holder.host != me.host) return false;
    if (me.start.empty()) return kill(static_cast<pid_t>(holder.pid), 0) == 0 || errno == EPERM;
    const std::optional<ProcStat> st = proc_stat(holder.pid);
    if (!st || st->state == 'Z' || st->state == 'X') return false;
    const std::string boot = me.start.substr(0, me.start.find('/'));
    return holder.start == fmt::format("{}/{}", boot, st->start_ticks);
}

}  // namespace

// Switches the file to write-ahead logging and returns the journal mode it then has. The switch needs the
// file to itself for a moment; when another process is opening the same new file, SQLite answers
// SQLITE_BUSY at once instead of calling the busy handler (waiting could deadlock), so the switch is
// retried every millisecond up to the busy timeout. A file that is not a database fails here, on the
// first statement that reads it.
std::string set_wal(sql::Connection& conn) {
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(k_busy_timeout_ms);
    for (;;) {
        sqlite3_stmt* st = nullptr;
        int rc = sqlite3_prepare_v2(conn.handle(), "PRAGMA journal_mode = WAL", -1, &st, nullptr);
        std::string mode;
        if (rc == SQLITE_OK) {
            rc = sqlite3_step(st);
            if (rc == SQLITE_ROW) {
                const unsigned char* text = sqlite3_column_text(st, 0);
                mode = text != nullptr ? reinterpret_cast<const char*>(text) : "";
            }
            sqlite3_finalize(st);
        }
        if (rc == SQLITE_ROW) return mode;
        const int primary = rc & 0xff;
        if ((primary == SQLITE_BUSY || primary == SQLITE_LOCKED) &&
            std::chrono::steady_clock::now() < deadline) {
            std::this_thread::sleep_for(std::chrono::milliseconds(1));
            continue;
        }
        conn.check(rc, "switch to write-ahead logging");
    }
}

// An INSERT of 1 to k_rows_per_insert rows into one table. write() binds `items` in order, k_rows_per_insert
// rows a statement: the rows and their rowids are those of one INSERT per item. For a table whose rows share
// their first column (insert_sql's shared_first), `first` binds it once per statement and `bind` the rest of
// a row. The first k_kept_chunks chunks of rows each have a statement of their own, made when first needed
// (or when that chunk's row count changes), so that a chunk's parameters still hold the values of the same
// rows of the run before: Statement::keep_* leaves those that repeat as they are. Later chunks share one
// statement per row count.
class MultiInsert {
  public:
    explicit MultiInsert(std::function<std::string(std::size_t rows)> sql) : m_sql(std::move(sql)) {}

    template <class Items, class Bind>
    void write(sql::Connection& conn, const Items& items, Bind bind) {
        write(
            conn, items, [](sql::Statement&) {}, bind);
    }
    template <class Items, class First, class Bind>
    void write(sql::Connection& conn, const Items& items, First first, Bind bind) {
        const std::size_t size = items.size();
        for (std::size_t i = 0, chunk = 0; i < size; ++chunk) {
            const std::size_t n = std::min(k_rows_per_insert, size - i);
            sql::Statement& s = statement(conn, chunk, n);
            s.rewind();
            first(s);
            for (std::size_t j = 0; j < n; ++j) bind(s, items[i + j]);
            s.run();
            i += n;
        }
    }

  private:
    // 64 chunks: the 2,048 first rows of a run (a ResNet-50's 175 layers take 6); a statement of 32 layer
    // rows takes some 80 KB in SQLite and 43 KB of kept values.
    static constexpr std::size_t k_kept_chunks = 64;
    struct Chunk {
        std::size_t rows = 0;
        std::unique_ptr<sql::Statement> statement;
    };
    sql::Statement& statement(sql::Connection& conn, std::size_t chunk, std::size_t rows) {
        if (chunk >= k_kept_chunks) {
            std::unique_ptr<sql::Statement>& s = m_by_rows[rows];
            if (!s) s = std::make_unique<sql::Statement>(conn, m_sql(rows));
            return *s;
        }
        if (m_chunks.size() <= chunk) m_chunks.resize(chunk + 1);
        Chunk& c = m_chunks[chunk];
        if (!c.statement || c.rows != rows) {
            c.statement = std::make_unique<sql::Statement>(conn, m_sql(rows));
            c.rows = rows;
        }
        return *c.statement;
    }

    std::function<std::string(std::size_t)> m_sql;
    std::vector<Chunk> m_chunks;
    std::array<std::unique_ptr<sql::Statement>, k_rows_per_insert + 1> m_by_rows;
};

// Checkpoints the write-ahead log from a thread of its own (ResultsDb::checkpoint_in_background): SQLite's
// automatic checkpoint runs in the commit that takes the log past 1,000 pages, and copies the log into the
// file and syncs both before the commit returns. For a sweep's writer that was 30-50 ms with nothing done,
// some 10 times in a 2,000-point systolic sweep: the MPI ranks it feeds ran out of points meanwhile
// (bench/README.md, seventh round). Here a commit only wakes the thread, which runs a PASSIVE checkpoint on
// its own connection: it copies what is committed without waiting for (or blocking) the writer. Durability
// is unchanged: a committed transaction is in the log whether or not it has been copied.
//
// The log starts over (its next frame written at its start) only in a transaction that begins when every
// frame in it is copied. A log that never does grows for the whole sweep, and appending a page to a growing
// file costs the kernel about twice what writing over a page of it does (allocating and zeroing page-cache
// pages and file blocks: 9.5-12 against 4.3-4.9 µs of CPU a 16 KiB frame on this project's host; the MPI
// writer of a roofline sweep writes ~4 frames a point; bench/README.md, thirteenth round). So the thread
// starts copying once the log holds k_early_frames pages, after each commit, in the background; once it holds
// k_frames, the writer is asked (restart_due) to begin its next transaction only after the copy running
// then, a few milliseconds for the frames of one batch, so that the log starts over. Should the log still
// grow past k_max_frames (a checkpoint that keeps falling behind), the writer checkpoints in its commit, as
// SQLite would. The thread stops, and its connection closes, before the writer's connection, whose close
// copies the rest and removes the log as before.
//
// The copies' syncs are what the writer waits for: a 2,000-point roofline sweep writes ~70 MB of rows, and
// the syncs of the log and of the file, a few megabytes each, took 5-16 ms apiece on this project's host
// (~130 ms of a 0.4 s sweep in all), the last of each lap while the writer waited for the log to start over.
// So the thread also starts the kernel writing back what was written meanwhile, without waiting for it
// (Linux's sync_file_range with SYNC_FILE_RANGE_WRITE): the log after each of the writer's commits, the file
// after each copy. A sync then finds most pages written or on their way. Durability is SQLite's syncs', as
// before; this only starts the same writes earlier (bench/README.md, fifteenth round).
namespace {

// The descriptor of `file`, opened by SQLite's unix VFS (`vfs`) at `path`; -1 where that cannot be told for
// sure. SQLite has no interface that gives it. The unix VFS's file object (SQLite's os_unix.c, struct
// unixFile) begins with its methods, its VFS and its inode's lock record, then the descriptor, as it has
// since SQLite 3.7. The number read there is taken only when it is a descriptor of `path`'s file (same
// device and inode), so that another layout or VFS gives -1 (no writeback), never another file. The
// descriptor stays SQLite's: closing it, or any other descriptor of the file, would drop the process's
// POSIX locks on it, which SQLite's locking relies on.
int unix_vfs_fd(const sqlite3_vfs* vfs, sqlite3_file* file, const std::string& path) {
    if (!vfs || !vfs->zName || std::string_view(vfs->zName).substr(0, 4) != "unix" || !file ||
        !file->pMethods)
        return -1;
    struct UnixFileStart {
        const sqlite3_io_methods* methods;
        sqlite3_vfs* vfs;
        void* inode;
        int fd;
    };
    if (vfs->szOsFile < static_cast<int>(sizeof(UnixFileStart))) return -1;
    int fd = -1;
    std::memcpy(&fd, reinterpret_cast<const char*>(file) + offsetof(UnixFileStart, fd), sizeof fd);
    struct stat opened {
    }, named{};
    if (fd < 0 || ::fstat(fd, &opened) != 0 || ::stat(path.c_str(), &named) != 0) return -1;
    return S_ISREG(opened.st_mode) && opened.st_dev == named.st_dev && opened.st_ino == named.st_ino ? fd
                                                                                                     : -1;
}

// Starts writing back the dirty pages of descriptor `fd`'s file, without waiting for them.
void start_writeback(int fd) {
#ifdef __linux__
    if (fd >= 0) (void)::sync_file_range(fd, 0, 0, SYNC_FILE_RANGE_WRITE);
#else
    (void)fd;
#endif
}

}  // namespace

class Checkpointer {
  public:
    explicit Checkpointer(sql::Connection& writer)
        : m_writer(writer), m_own(writer.path(), sql::Connection::Mode::read_write_create) {
        m_own.exec(fmt::format("PRAGMA busy_timeout = {}", k_busy_timeout_ms));
        // A connection learns that the file is in WAL mode when it first reads it; until then a checkpoint
        // does nothing (and says so only through its frame counts, -1).
        m_own.exec("SELECT count(*) FROM sqlite_schema");
        sqlite3_wal_hook(m_writer.handle(), &Checkpointer::on_commit, this);  // replaces the automatic one
        m_thread = std::thread([this] { loop(); });
    }
    ~Checkpointer() {
        sqlite3_wal_autocheckpoint(m_writer.handle(), k_frames);  // SQLite's own again (removes the hook)
        {
            std::lock_guard lock(m_mutex);
            m_stop = true;
        }
        m_wake.notify_one();
        m_thread.join();
    }
    Checkpointer(const Checkpointer&) = delete;
    Checkpointer& operator=(const Checkpointer&) = delete;

    // The log's length, in pages, at which the writer waits for the copy before its next transaction
    // (SQLite's default threshold of the automatic checkpoint).
    static constexpr int k_frames = 1000;
    // Early enough that the copy has caught up when the log reaches k_frames (a roofline batch writes some
    // 150 frames), so that the writer waits for one batch's frames; from 250 frames hot pages (the right edge
    // of the b-trees) were copied more often: +0.006 ms a roofline point of the thread's CPU
    // (bench/README.md, thirteenth round).
    static constexpr int k_early_frames = 600;
    static constexpr int k_max_frames = 4 * k_frames;
    // Commits after which a log that did not start over stops the waiting (see restart_due): one may miss by
    // a copy that began before the wait, a second one shows that something else holds the frames.
    static constexpr int k_max_missed = 2;

    // Whether a checkpoint is due or running.
    bool running() const { return m_running.load(); }
    // Whether the log is long enough to start over and a checkpoint is due or running: a transaction begun
    // before it ends keeps the log growing (see above). Not once the log went on growing twice after the
    // writer was asked to wait: another connection reading an older snapshot of the file keeps frames from
    // being copied, and the writer would wait for copies that cannot finish (until the log starts over).
    bool restart_due() const {
        return m_running.load() && m_frames.load() >= k_frames && m_missed.load() < k_max_missed;
    }
    // Whether the thread starts the writeback of the file and its log (both descriptors found).
    bool writing_back() const { return m_writing_back.load(); }
    int64_t count() const { return m_count.load(); }                              // checkpoints run so far
    double cpu_s() const { return 1e-9 * static_cast<double>(m_cpu_ns.load()); }  // the thread's CPU in them

  private:
    // After each commit of the writer, in its thread, with the log's length in pages.
    static int on_commit(void* self, sqlite3* db, const char* schema, int frames) {
        auto* c = static_cast<Checkpointer*>(self);
        const int before = c->m_frames.exchange(frames);
        if (frames < before)
            c->m_missed = 0;  // the log started over
        else if (before >= k_frames)
            ++c->m_missed;  // the writer was asked to wait for it to start over, and it did not
        if (frames >= k_max_frames) {
            // Busy (the thread is at it) or not, the commit stands: its pages are in the log.
            (void)sqlite3_wal_checkpoint_v2(db, schema, SQLITE_CHECKPOINT_PASSIVE, nullptr, nullptr);
        }
        {
            std::lock_guard lock(c->m_mutex);
            c->m_log_written = true;
            if (frames >= k_early_frames && frames < k_max_frames) {
                c->m_due = true;
                c->m_running = true;
            }
        }
        c->m_wake.notify_one();
        return SQLITE_OK;
    }
    void loop() {
        std::unique_lock lock(m_mutex);
        for (;;) {
            m_wake.wait(lock, [this] { return m_due || m_log_written || m_stop; });
            if (m_stop) return;
            const bool log_written = std::exchange(m_log_written, false);
            const bool due = std::exchange(m_due, false);
            lock.unlock();
            timespec t0{}, t1{};
            clock_gettime(CLOCK_THREAD_CPUTIME_ID, &t0);
            find_descriptors();
            if (log_written) start_writeback(m_log_fd);
            if (due) {
                // A failure (an I/O error, SQLITE_BUSY while another process checkpoints) loses nothing: the
                // pages stay in the log for the next checkpoint, or the close.
                (void)sqlite3_wal_checkpoint_v2(m_own.handle(), nullptr, SQLITE_CHECKPOINT_PASSIVE, nullptr,
                                                nullptr);
                start_writeback(m_file_fd);
            }
            clock_gettime(CLOCK_THREAD_CPUTIME_ID, &t1);
            m_cpu_ns += (t1.tv_sec - t0.tv_sec) * 1'000'000'000LL + (t1.tv_nsec - t0.tv_nsec);
            lock.lock();
            if (!due) continue;
            ++m_count;
            if (!m_due) m_running = false;  // a commit meanwhile made another one due: still running
        }
    }

    // The descriptors of the file and of its log as this thread's connection opened them (unix_vfs_fd),
    // looked up at the first commits until both are found (at most k_max_lookups times): -1 where they cannot
    // be told (no writeback then).
    void find_descriptors() {
        if (m_writing_back.load() || m_lookups >= k_max_lookups) return;
        ++m_lookups;
        sqlite3* db = m_own.handle();
        sqlite3_vfs* vfs = nullptr;
        sqlite3_file* file = nullptr;
        sqlite3_file* log = nullptr;
        if (sqlite3_file_control(db, "main", SQLITE_FCNTL_VFS_POINTER, &vfs) != SQLITE_OK ||
            sqlite3_file_control(db, "main", SQLITE_FCNTL_FILE_POINTER, &file) != SQLITE_OK ||
            sqlite3_file_control(db, "main", SQLITE_FCNTL_JOURNAL_POINTER, &log) != SQLITE_OK)
            return;
        const char* name = sqlite3_db_filename(db, "main");
        if (!name || !*name) return;
        m_file_fd = unix_vfs_fd(vfs, file, name);
        m_log_fd = unix_vfs_fd(vfs, log, std::string(name) + "-wal");
        m_writing_back = m_file_fd >= 0 && m_log_fd >= 0;
    }

    sql::Connection& m_writer;
    sql::Connection m_own;
    std::mutex m_mutex;
    std::condition_variable m_wake;
    bool m_due = false, m_stop = false;
    bool m_log_written = false;  // a commit wrote to the log since its last writeback
    // The thread's only: the descriptors, and how often it looked for them (a log not open yet is looked for
    // again at the next commit, a few times).
    static constexpr int k_max_lookups = 8;
    int m_lookups = 0;
    int m_file_fd = -1, m_log_fd = -1;
    std::atomic<bool> m_writing_back{false};
    std::atomic<bool> m_running{false};
    std::atomic<int> m_frames{0};  // the log's length at the writer's last commit
    std::atomic<int> m_missed{0};  // commits since the log could have started over and did not
    std::atomic<int64_t> m_count{0};
    std::atomic<int64_t> m_cpu_ns{0};
    std::thread m_thread;
};

struct ResultsDb::Impl {
    explicit Impl(const std::string& p)
        : path(p), conn((create_parent_directories(p), p), sql::Connection::Mode::read_write_create) {
        conn.exec(fmt::format("PRAGMA busy_timeout = {}", k_busy_timeout_ms));
        // A file mlsim must not write to is refused before the journal mode below changes its header.
        schema::check_file(conn);
        // A new file gets 16 KiB pages (SQLite's default is 4 KiB; an existing file keeps its own): a
        // systolic sweep point writes some 90 KB of rows, ~500 B a layer with its levels and metrics objects,
        // and larger pages split and log (WAL frames, checksums) less often per row: the MPI writer's CPU a
        // point fell by about a tenth (bench/README.md, sixth round).
        conn.exec("PRAGMA page_size = 16384");
        {
            const std::string mode = set_wal(conn);
            if (mode != "wal")
                throw cfg::UserError(
                    fmt::format("{}: error: results database: cannot use write-ahead logging "
                                "(journal mode stays '{}'); is it on a network filesystem?",
                                path, mode));
        }
        // See the contract in results_db.h for why NORMAL rather than FULL.
        conn.exec("PRAGMA synchronous = NORMAL");
        // Journals of savepoints and statements (a write inside a batch was a savepoint) went to temporary
        // files: kept in memory, they cut the MPI sweep writer's CPU per point by about a quarter
        // (bench/README.md, Sweeps over MPI). Durability is that of the WAL commit, unchanged. (A 64 MB page
        // cache, tried too, made it slower: SQLite's default is kept.)
        conn.exec("PRAGMA temp_store = MEMORY");
        // Debian builds SQLite with SECURE_DELETE, which zeroes every byte a b-tree frees: each split of a
        // page moving layer rows (every ~15 rows of a sweep) and each new page. A results file holds nothing
        // to hide from its own reader, and the zeroing was about 5 % of a sweep writer's instructions
        // (bench/README.md, tenth round).
        conn.exec("PRAGMA secure_delete = OFF");
        conn.exec("PRAGMA foreign_keys = ON");
        schema::migrate(conn);

        insert_run.emplace(conn, insert_sql("runs", k_run_insert_columns));
        find_ok.emplace(conn, "SELECT 1 FROM runs WHERE config_hash = ? AND status = 'ok' LIMIT 1");
        find_run.emplace(
            conn,
            "SELECT run_id FROM runs WHERE config_hash = ? AND status = ? ORDER BY run_id DESC LIMIT 1");
        find_link.emplace(conn, "SELECT 1 FROM sweeps WHERE sweep_name = ? AND run_id = ?");
        run_hash.emplace(conn, "SELECT config_hash FROM runs WHERE run_id = ?");
        insert_sweep.emplace(
            conn,
            "INSERT INTO sweeps (sweep_name, point, run_id, config_hash, factors_json, created_utc) "
            "VALUES (?, ?, ?, ?, ?, ?)");
        find_error_after.emplace(conn,
                                 "SELECT run_id FROM runs WHERE config_hash = ? AND status = 'error' AND "
                                 "run_id > ? ORDER BY run_id DESC LIMIT 1");
        find_claim.emplace(conn, "SELECT host, pid, process_start FROM claims WHERE claim_key = ?");
        put_claim.emplace(conn,
                          "INSERT OR REPLACE INTO claims (claim_key, host, pid, process_start, claimed_utc, "
                          "sweep_name, point) VALUES (?, ?, ?, ?, ?, ?, ?)");
        drop_claim.emplace(
            conn, "DELETE FROM claims WHERE claim_key = ? AND host = ? AND pid = ? AND process_start = ?");
        max_run.emplace(conn, "SELECT COALESCE(MAX(run_id), 0) FROM runs");
        find_writers.emplace(
            conn,
            "SELECT claim_key, host, pid, process_start FROM claims WHERE claim_key >= 'writer ' "
            "AND claim_key < 'writer!'");
        hashes_after.emplace(conn, "SELECT run_id, config_hash FROM runs WHERE run_id > ? AND status = ?");
        find_metric.emplace(conn, "SELECT metric_id FROM metric_names WHERE name = ? AND unit = ?");
        find_layer_row.emplace(conn, "SELECT run_id, idx FROM layer_results WHERE layer_row = ?");
        set_layer_rows.emplace(conn,
                               "UPDATE runs SET first_layer_row = ?, last_layer_row = ? WHERE run_id = ?");
        add_metric.emplace(conn, "INSERT INTO metric_names (name, unit) VALUES (?, ?)");
        // The writer binds no NULL (phase and dtype '' when unset); IS also finds a definition of an older
        // file with NULL there.
        find_def.emplace(
            conn,
            "SELECT def_id FROM layer_defs WHERE name = ? AND op = ? AND phase IS ? AND dtype IS ? "
            "AND macs IS ? AND flops IS ? AND params IS ?");
        add_def.emplace(
            conn,
            "INSERT INTO layer_defs (name, op, phase, dtype, macs, flops, params) VALUES (?, ?, ?, ?, ?, "
            "?, ?)");
        begin.emplace(conn, "BEGIN IMMEDIATE");
        commit.emplace(conn, "COMMIT");
        rollback.emplace(conn, "ROLLBACK");
    }

    // Binds the shared run columns; totals are null for a failed run.
    // `device_energy_j` (>= 0): the energy the devices spent, which over_tdp compares with their TDP where it
    // differs from the run's total (a parallel step's links spend outside the devices).
    int64_t write_run(const RunInfo& info, const char* status, const std::string* error, double wall_s,
                      const Totals* totals, double device_energy_j = -1) {
        std::string hash = info.config_hash.empty() ? config_hash(info.config_yaml) : info.config_hash;
        sql::Statement& s = *insert_run;
        s.reset();
        s.bind_text(status);
        if (error != nullptr)
            s.bind_text(*error);
        else
            s.bind_null();
        s.bind_text(info.config_yaml)
            .bind_text(hash)
            .bind_text(version())
            .bind_real(wall_s)
            .bind_text(utc_now());
        s.bind_text(info.system)
            .bind_text(info.device)
            .bind_text(info.model)
            .bind_text(info.mode)
            .bind_text(info.dtype);
        s.bind_int(info.batch)
            .bind_int(info.seq)
            .bind_real(info.peak_flops_per_s)
            .bind_real(info.mem_bandwidth_Bps);
        if (totals != nullptr) {
            s.bind_real(totals->time_s).bind_real(totals->energy_j).bind_int(totals->layer_count);
            s.bind_real(totals->macs).bind_real(totals->flops).bind_real(totals->bytes_read);
            s.bind_real(totals->bytes_written).bind_real(totals->energy_compute_j);
            s.bind_real(totals->energy_memory_j).bind_real(totals->energy_static_j);
        } else {
            s.bind_null().bind_null().bind_int(0);
            for (int i = 0; i < 7; ++i) s.bind_null();
        }
        s.bind_text(info.device_model);
        if (totals != nullptr)
            s.bind_int(totals->cycles).bind_int(totals->stall_cycles);
        else
            s.bind_null().bind_null();
        // Power needs a span to average over; the TDP comparison needs both figures.
        std::optional<double> power;
        if (totals != nullptr && totals->time_s > 0) power = totals->energy_j / totals->time_s;
        const bool tdp_known = info.tdp_W > 0;
        bind_optional(s, power);
        bind_optional(s, tdp_known ? std::optional<double>(info.tdp_W) : std::nullopt);
        if (power && tdp_known) {
            const double device_power = device_energy_j >= 0 ? device_energy_j / totals->time_s : *power;
            s.bind_int(device_power > info.tdp_W * (1 + 1e-9) ? 1 : 0);
        } else
            s.bind_null();
        if (totals != nullptr)
            s.bind_real(totals->compute_s)
                .bind_real(totals->memory_s)
                .bind_real(totals->overhead_s)
                .bind_real(totals->communication_s);
        else
            s.bind_null().bind_null().bind_null().bind_null();
        s.run();
        return conn.last_insert_rowid();
    }

    void write_sweep_point(const SweepPoint& p, int64_t run_id, const std::string& hash) {
        sql::Statement& s = *insert_sweep;
        s.reset();
        s.bind_text(p.sweep_name)
            .bind_int(p.point)
            .bind_int(run_id)
            .bind_text(hash)
            .bind_text(factors_json(p));
        s.bind_text(utc_now());
        s.run();
        insert_factors.write(conn, p.factors, [&](sql::Statement& fs, const SweepFactorValue& f) {
            fs.bind_text_static(p.sweep_name)
                .bind_int(run_id)
                .bind_text_static(f.factor)
                .bind_text_static(f.value);
            if (f.value_num)
                fs.bind_real(*f.value_num);
            else
                fs.bind_null();
        });
    }

    // The latest run with this hash and status whose run_id is above `after`.
    std::optional<int64_t> latest_run(const std::string& hash, std::string_view status, int64_t after) {
        sql::Statement& s = status == "ok" ? *find_run : *find_error_after;
        s.reset();
        s.bind_text(hash);
        if (status == "ok")
            s.bind_text(status);
        else
            s.bind_int(after);
        s.finish_binding();
        std::optional<int64_t> id;
        if (s.step()) id = s.column_int(0);
        s.reset();
        if (status == "ok" && id && *id <= after) id.reset();
        return id;
    }

    void release(const std::string& key) {
        sql::Statement& d = *drop_claim;
        d.reset();
        d.bind_text(key).bind_text(me.host).bind_int(me.pid).bind_text(me.start);
        d.run();
    }

    void write_parallel(int64_t run_id, const ParallelRows& p);

    // A layer's definition as a key of `def_ids`: the lengths of its four strings, the strings one after
    // another, then the bits of macs, flops and params.
    static void def_key(std::string& key, const PreparedLayers& p, const PreparedLayers::Layer& l) {
        const std::array<PreparedLayers::Text, 4> texts{l.name, l.op, l.phase, l.dtype};
        key.clear();
        for (const PreparedLayers::Text t : texts)
            key.append(reinterpret_cast<const char*>(&t.size), sizeof t.size);
        for (const PreparedLayers::Text t : texts) key.append(p.text, t.begin, t.size);
        key.append(reinterpret_cast<const char*>(&l.macs), sizeof l.macs);
        key.append(reinterpret_cast<const char*>(&l.flops), sizeof l.flops);
        key.append(reinterpret_cast<const char*>(&l.params), sizeof l.params);
    }

    // Whether `key` (def_key) is the key of layer `l`, compared where it lies (no key built). prepare_layers
    // puts a layer's four strings one after another in the text: then they are compared at once (a sweep's
    // writer asks this of every layer of every point; bench/README.md, eighteenth round).
    static bool is_def_key(std::string_view key, const PreparedLayers& p, const PreparedLayers::Layer& l) {
        const std::array<uint32_t, 4> sizes{l.name.size, l.op.size, l.phase.size, l.dtype.size};
        const std::size_t strings = std::size_t{sizes[0]} + sizes[1] + sizes[2] + sizes[3];
        constexpr std::size_t numbers = 3 * 8;
        if (key.size() != sizeof sizes + strings + numbers ||
            std::memcmp(key.data(), sizes.data(), sizeof sizes) != 0)
            return false;
        const char* at = key.data() + sizeof sizes;
        if (l.op.begin == l.name.begin + l.name.size && l.phase.begin == l.op.begin + l.op.size &&
            l.dtype.begin == l.phase.begin + l.phase.size) {
            if (std::memcmp(at, p.text.data() + l.name.begin, strings) != 0) return false;
        } else {
            for (const PreparedLayers::Text t : {l.name, l.op, l.phase, l.dtype}) {
                if (std::memcmp(at, p.text.data() + t.begin, t.size) != 0) return false;
                at += t.size;
            }
        }
        at = key.data() + sizeof sizes + strings;
        return std::memcmp(at, &l.macs, 8) == 0 && std::memcmp(at + 8, &l.flops, 8) == 0 &&
               std::memcmp(at + 16, &l.params, 8) == 0;
    }

    // The id of a layer's definition in layer_defs, added there when new; inside the caller's write
    // transaction, and kept as metric ids are (a rollback empties `def_ids` and `last_defs`). A sweep's
    // points mostly have the definitions of the point before, layer by layer: `last_defs[i]` is the i-th
    // layer's of the run before.
    int64_t def_id(const PreparedLayers& p, std::size_t i) {
        const PreparedLayers::Layer& l = p.layers[i];
        if (last_defs.size() <= i) last_defs.resize(i + 1);
        auto& [last_key, last_id] = last_defs[i];
        if (last_id != 0 && is_def_key(last_key, p, l)) return last_id;
        def_key(m_key, p, l);
        int64_t id = 0;
        if (auto it = def_ids.find(m_key); it != def_ids.end()) {
            id = it->second;
        } else {
            // Both statements take the definition's seven values, in layer_defs' order.
            const auto bind_def = [&](sql::Statement& st) {
                st.reset();
                st.bind_text(p.str(l.name)).bind_text(p.str(l.op)).bind_text(p.str(l.phase));
                st.bind_text(p.str(l.dtype)).bind_real(l.macs).bind_real(l.flops).bind_int(l.params);
                st.finish_binding();
            };
            bind_def(*find_def);
            if (find_def->step()) {
                id = find_def->column_int(0);
            } else {
                bind_def(*add_def);
                add_def->run();
                id = sqlite3_last_insert_rowid(conn.handle());
            }
            find_def->reset();
            // Bounded: a sweep over the workload (batch, sequence length) makes new definitions at every
            // point, and the file, not this map, is where they are found.
            if (def_ids.size() >= k_max_def_ids) def_ids.clear();
            def_ids.emplace(m_key, id);
        }
        last_key = m_key;
        last_id = id;
        return id;
    }
    void forget_ids() {
        metric_ids.clear();
        def_ids.clear();
        last_defs.clear();
    }

    // A run's layer rows in the order of `layers`, each with its definition's id and its levels and metrics
    // objects.
    void write_layers(int64_t run_id, const PreparedLayers& prepared) {
        m_def_ids.resize(prepared.layers.size());
        for (std::size_t i = 0; i < prepared.layers.size(); ++i) m_def_ids[i] = def_id(prepared, i);
        // The ids of the run's metric names (a run names a few dozen metrics, its layers some thousands).
        key_ids.clear();
        for (const auto& [name, unit] : prepared.metric_keys) key_ids.push_back(metric_id(name, unit));
        // Each layer's metrics object, its entries in id order: the view's rows then come in key order, as
        // the table of schema 9 gave them.
        m_metric_json.resize(std::max(m_metric_json.size(), prepared.layers.size()));
        for (std::size_t i = 0; i < prepared.layers.size(); ++i) {
            const PreparedLayers::Layer& l = prepared.layers[i];
            std::string& json = m_metric_json[i];
            json.clear();
            if (l.metrics_begin == l.metrics_end) continue;
            m_metrics.clear();
            uint32_t begin = l.values.begin;
            for (uint32_t k = l.metrics_begin; k < l.metrics_end; ++k) {
                const PreparedLayers::Metric& m = prepared.metrics[k];
                m_metrics.push_back({key_ids[m.key], begin, m.end});
                begin = m.end;
            }
            std::sort(m_metrics.begin(), m_metrics.end(),
                      [](const MetricEntry& a, const MetricEntry& b) { return a.id < b.id; });
            json += '{';
            for (const MetricEntry& e : m_metrics) {
                char key[32];
                char* end = key;
                if (json.size() > 1) *end++ = ',';
                *end++ = '"';
                end = std::to_chars(end, key + sizeof key, e.id).ptr;
                *end++ = '"';
                *end++ = ':';
                json.append(key, end);
                json.append(prepared.text, e.begin, e.end - e.begin);
            }
            json += '}';
        }
        const auto bind_run = [run_id](sql::Statement& s) { s.bind_int(run_id); };
        insert_layers.write(
            conn, prepared.layers, bind_run, [&](sql::Statement& s, const PreparedLayers::Layer& l) {
                // keep_*: what a sweep's points repeat (mostly a layer's name and shape, bytes and compute
                // energy when the points vary the hardware) stays bound from the point before; a roofline
                // sweep over the memory bandwidth repeats 11 of the 19 numbers and the levels object.
                const auto i = static_cast<std::size_t>(&l - prepared.layers.data());
                s.keep_int(l.idx).keep_int(m_def_ids[i]).keep_real(l.bytes_read).keep_real(l.bytes_written);
                s.keep_real(l.start_s).keep_real(l.end_s).keep_real(l.time_s).keep_int(l.cycles).keep_int(
                    l.stall_cycles);
                s.keep_real(l.energy_j).keep_real(l.energy_compute_j).keep_real(l.energy_memory_j);
                s.keep_real(l.energy_static_j).keep_real(l.utilization).keep_text(prepared.str(l.bound));
                s.keep_real(l.compute_s)
                    .keep_real(l.memory_s)
                    .keep_real(l.overhead_s)
                    .keep_real(l.communication_s);
                if (l.levels.size == 0)
                    s.bind_null();
                else
                    s.keep_text(prepared.str(l.levels));
                if (m_metric_json[i].empty())
                    s.bind_null();
                else
                    s.bind_text_static(m_metric_json[i]);
            });
        if (prepared.layers.empty()) return;
        // SQLite numbered the rows one after another (each the largest number so far plus one, all in this
        // transaction): their range goes to runs, where the views find a run's rows (schema 12). The first
        // row is checked to be the run's first layer.
        const int64_t last = sqlite3_last_insert_rowid(conn.handle());
        const int64_t first = last - static_cast<int64_t>(prepared.layers.size()) + 1;
        find_layer_row->reset();
        find_layer_row->bind_int(first).finish_binding();
        MLSIM_CHECK(
            find_layer_row->step() && find_layer_row->column_int(0) == run_id &&
                find_layer_row->column_int(1) == prepared.layers.front().idx,
            fmt::format("results: run {}'s layer rows are not numbered {} to {}", run_id, first, last));
        find_layer_row->reset();
        set_layer_rows->reset();
        set_layer_rows->bind_int(first).bind_int(last).bind_int(run_id).finish_binding();
        set_layer_rows->run();
    }

    // The id of a metric's name and unit ('' for a text metric) in metric_names, added there when new. Inside
    // the caller's write transaction, so another process adding the same metric meanwhile is seen (its
    // transaction committed first) rather than duplicated. Ids are kept in `metric_ids`, which a rollback
    // empties (an id added by the rolled-back transaction is gone from the file).
    int64_t metric_id(const std::string& name, const std::string& unit) {
        if (auto it = metric_ids.find(std::pair{std::string_view(name), std::string_view(unit)});
            it != metric_ids.end())
            return it->second;
        find_metric->reset();
        find_metric->bind_text(name).bind_text(unit).finish_binding();
        int64_t id = 0;
        if (find_metric->step()) {
            id = find_metric->column_int(0);
        } else {
            add_metric->reset();
            add_metric->bind_text(name).bind_text(unit).finish_binding();
            add_metric->run();
            id = sqlite3_last_insert_rowid(conn.handle());
        }
        find_metric->reset();
        metric_ids.emplace(std::pair{name, unit}, id);
        return id;
    }
    struct MetricEntry {
        int64_t id = 0;
        uint32_t begin = 0, end = 0;  // its value in the layer's values
    };
    // Name and unit -> metric id, looked up without building strings (a run looks up ~2,000 metrics).
    struct NameUnitLess {
        using is_transparent = void;
        template <class A, class B>
        bool operator()(const A& a, const B& b) const {
            const std::string_view a_name = a.first, b_name = b.first;
            if (a_name != b_name) return a_name < b_name;
            return std::string_view(a.second) < std::string_view(b.second);
        }
    };
    std::map<std::pair<std::string, std::string>, int64_t, NameUnitLess> metric_ids;
    std::vector<int64_t> key_ids;                            // write_layers: the run's metric keys' ids
    static constexpr std::size_t k_max_def_ids = 1 << 16;    // ~10 MB of keys
    std::unordered_map<std::string, int64_t> def_ids;        // def_key -> layer_defs.def_id
    std::vector<std::pair<std::string, int64_t>> last_defs;  // by layer: the run before's key and id
    std::string m_key;                                       // def_id's scratch key
    std::vector<int64_t> m_def_ids;                          // write_layers: the run's layers' definitions

    // One write transaction; rolled back unless commit() ran. IMMEDIATE takes the write lock up front,
    // so a second writer waits in the busy handler instead of failing on a lock upgrade.
    // Inside a batch (begin_batch) it opens nothing: its writes go straight into the batch's transaction.
    // One that ends without commit() having changed nothing (a read, or a write found unnecessary) leaves the
    // batch as it was; one that changed something, or whose failure ended the transaction, undoes the WHOLE
    // batch (none of its points reach the file; end_batch() then commits nothing). A savepoint per write
    // would undo it alone, but it journals every page the write touches first (bench/README.md, Sweeps over
    // MPI; with statement journals, 1.3 M instructions of the 21 M a systolic point's record_run cost), for
    // failures (disk full, I/O errors, bugs) that end the sweep anyway.
    class Transaction {
      public:
        explicit Transaction(Impl& impl) : m_impl(impl), m_nested(impl.in_batch) {
            if (m_nested) {
                MLSIM_CHECK(!m_impl.batch_failed, "results: a write in a batch undone by an earlier failure");
                m_changes = sqlite3_total_changes64(m_impl.conn.handle());
            } else {
                m_impl.begin->run();
            }
        }
        ~Transaction() {
            if (m_committed) return;
            try {
                m_impl.forget_ids();  // ids this transaction added are undone with it
                if (!m_nested) {
                    m_impl.rollback->run();
                } else if (sqlite3_total_changes64(m_impl.conn.handle()) != m_changes ||
                           sqlite3_get_autocommit(m_impl.conn.handle()) != 0) {
                    m_impl.batch_failed = true;
                    if (sqlite3_get_autocommit(m_impl.conn.handle()) == 0) m_impl.rollback->run();
                }
            } catch (...) {  // NOLINT: the exception that got us here is the one to report
            }
        }
        Transaction(const Transaction&) = delete;
        Transaction& operator=(const Transaction&) = delete;
        void commit() {
            if (!m_nested) m_impl.commit->run();
            m_committed = true;
        }

      private:
        Impl& m_impl;
        bool m_nested = false;
        bool m_committed = false;
        int64_t m_changes = 0;  // in a batch: the connection's total changes when it began
    };
    bool in_batch = false;
    bool batch_failed = false;  // a write of the batch failed: the batch is rolled back
    int unchecked_scopes = 0;   // ReferenceChecksOff guards alive

    // SQLite's foreign-key enforcement for this connection, on (as opened) or off. SQLite ignores the pragma
    // inside a transaction; a change expires the prepared statements, which prepare again (with or without
    // the lookups) when next run: so it is switched once per sweep, not per write.
    void check_references(bool on) {
        conn.exec(on ? "PRAGMA foreign_keys = ON" : "PRAGMA foreign_keys = OFF");
    }

    std::string path;
    sql::Connection conn;
    // Declared after conn so they are finalised before it closes.
    std::optional<sql::Statement> insert_run, find_ok, begin, commit, rollback;
    std::optional<sql::Statement> find_run, find_link, run_hash, insert_sweep;
    std::optional<sql::Statement> find_error_after, find_claim, put_claim, drop_claim, max_run;
    std::optional<sql::Statement> find_metric, add_metric, find_def, add_def;
    std::optional<sql::Statement> find_writers, hashes_after, find_layer_row, set_layer_rows;
    // Their first column is run_id, bound once per statement. layer_row is not among the columns: SQLite
    // numbers the rows (schema 12).
    MultiInsert insert_layers{
        [](std::size_t n) { return insert_sql("layer_results", k_layer_insert_columns, n, true); }};
    MultiInsert insert_factors{
        [](std::size_t n) { return insert_sql("sweep_factors", k_factor_insert_columns, n); }};
    // Scratch list of a layer's metrics, and the layers' metrics objects (kept to reuse their memory).
    std::vector<MetricEntry> m_metrics;
    std::vector<std::string> m_metric_json;
    const ProcessIdentity me = this_process();
    std::mutex mutex;
    // After conn: stopped before it closes.
    std::unique_ptr<Checkpointer> checkpointer;
};

ResultsDb::ResultsDb(const std::string& path) : m_impl(std::make_unique<Impl>(path)) {}

ResultsDb::~ResultsDb() = default;

bool ResultsDb::checkpointing() const {
    std::lock_guard lock(m_impl->mutex);
    return m_impl->checkpointer && m_impl->checkpointer->running();
}

bool ResultsDb::log_restart_due() const {
    return m_impl->checkpointer && m_impl->checkpointer->restart_due();
}

int64_t ResultsDb::background_checkpoints() const {
    std::lock_guard lock(m_impl->mutex);
    return m_impl->checkpointer ? m_impl->checkpointer->count() : 0;
}

bool ResultsDb::background_writeback() const {
    std::lock_guard lock(m_impl->mutex);
    return m_impl->checkpointer && m_impl->checkpointer->writing_back();
}

double ResultsDb::background_checkpoint_cpu_s() const {
    std::lock_guard lock(m_impl->mutex);
    return m_impl->checkpointer ? m_impl->checkpointer->cpu_s() : 0;
}

void ResultsDb::checkpoint_in_background() {
    std::lock_guard lock(m_impl->mutex);
    if (m_impl->checkpointer) return;
    try {
        m_impl->checkpointer = std::make_unique<Checkpointer>(m_impl->conn);
    } catch (const cfg::UserError&) {  // NOLINT: a second connection refused: SQLite's own checkpoints stay
    }
}

const std::string& ResultsDb::path() const { return m_impl->path; }

ResultsDb::ReferenceChecksOff::ReferenceChecksOff(ResultsDb& db) : m_db(db) {
    std::lock_guard lock(m_db.m_impl->mutex);
    MLSIM_CHECK(!m_db.m_impl->in_batch, "results: reference checks switched inside a batch");
    if (m_db.m_impl->unchecked_scopes++ == 0) m_db.m_impl->check_references(false);
}

ResultsDb::ReferenceChecksOff::~ReferenceChecksOff() {
    std::lock_guard lock(m_db.m_impl->mutex);
    if (--m_db.m_impl->unchecked_scopes > 0) return;
    try {
        m_db.m_impl->check_references(true);
    } catch (...) {  // NOLINT: a destructor reports nothing; the next open enforces them again anyway
    }
}

void ResultsDb::begin_batch() {
    std::lock_guard lock(m_impl->mutex);
    MLSIM_CHECK(!m_impl->in_batch, "results: a batch inside a batch");
    m_impl->begin->run();
    m_impl->in_batch = true;
    m_impl->batch_failed = false;
}

void ResultsDb::end_batch() {
    std::lock_guard lock(m_impl->mutex);
    MLSIM_CHECK(m_impl->in_batch, "results: end_batch without begin_batch");
    m_impl->in_batch = false;
    // A failed write rolled the batch back already (Impl::Transaction): nothing of it is committed.
    MLSIM_CHECK(!m_impl->batch_failed, "results: end_batch of a batch undone by a failed write");
    try {
        m_impl->commit->run();
    } catch (...) {
        m_impl->forget_ids();  // the batch's new metric and definition ids may be gone with it
        throw;
    }
}

namespace {

void validate_parallel(const ParallelRows& p) {
    for (double v : {p.step_time_s, p.samples_per_s, p.tokens_per_s, p.mfu, p.compute_s, p.exposed_comm_s,
                     p.bubble_s, p.peak_memory_bytes, p.device_energy_j, p.link_energy_j})
        MLSIM_CHECK(non_negative(v), fmt::format("results: parallel run: a figure is {}", v));
    std::vector<int64_t> ids;
    for (const ParallelRankRow& r : p.rank_rows) {
        for (double v : {r.compute_s, r.comm_s, r.exposed_comm_s, r.bubble_s, r.end_s, r.energy_j, r.flops,
                         r.memory_bytes, r.weights_bytes, r.gradients_bytes, r.optimizer_bytes,
                         r.activations_bytes, r.kv_cache_bytes})
            MLSIM_CHECK(non_negative(v), fmt::format("results: parallel rank {}: a figure is {}", r.rank, v));
        ids.push_back(r.rank);
    }
    std::sort(ids.begin(), ids.end());
    MLSIM_CHECK(std::adjacent_find(ids.begin(), ids.end()) == ids.end(), "results: repeated parallel rank");
    ids.clear();
    for (const ParallelCollectiveRow& c : p.collectives) {
        const CollectiveRow& r = c.call;
        for (double v : {r.start_s, r.end_s, r.algbw_GBps, r.busbw_GBps, r.energy_j})
            MLSIM_CHECK(non_negative(v),
                        fmt::format("results: parallel collective {}: a figure is {}", r.idx, v));
        MLSIM_CHECK(r.end_s >= r.start_s && c.copies >= 1,
                    fmt::format("results: parallel collective {}: end before start or no copies", r.idx));
        ids.push_back(r.idx);
    }
    std::sort(ids.begin(), ids.end());
    MLSIM_CHECK(std::adjacent_find(ids.begin(), ids.end()) == ids.end(), "results: repeated collective idx");
    for (const auto& [purpose, t] : p.exposed_by_purpose)
        MLSIM_CHECK(non_negative(t), fmt::format("results: parallel exposed {}: {}", purpose, t));
}

}  // namespace

void ResultsDb::Impl::write_parallel(int64_t run_id, const ParallelRows& p) {
    sql::Statement run(
        conn,
        "INSERT INTO parallel_runs (run_id, data, tensor, pipeline, expert, zero, microbatches, "
        "schedule, ranks, step_time_s, samples_per_s, tokens_per_s, mfu, critical_rank, "
        "compute_s, exposed_comm_s, bubble_s, peak_memory_bytes, device_energy_j, link_energy_j, "
        "symmetry, simulated_ranks, network_calls, memo_hits) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, "
        "?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)");
    run.bind_int(run_id).bind_int(p.data).bind_int(p.tensor).bind_int(p.pipeline).bind_int(p.expert);
    run.bind_int(p.zero).bind_int(p.microbatches).bind_text(p.schedule).bind_int(p.ranks);
    run.bind_real(p.step_time_s).bind_real(p.samples_per_s).bind_real(p.tokens_per_s).bind_real(p.mfu);
    run.bind_int(p.critical_rank).bind_real(p.compute_s).bind_real(p.exposed_comm_s).bind_real(p.bubble_s);
    run.bind_real(p.peak_memory_bytes).bind_real(p.device_energy_j).bind_real(p.link_energy_j);
    run.bind_text(p.symmetry).bind_int(p.simulated_ranks).bind_int(p.network_calls).bind_int(p.memo_hits);
    run.finish_binding();
    run.run();
    sql::Statement rk(
        conn,
        "INSERT INTO parallel_ranks (run_id, rank, stage, compute_s, comm_s, exposed_comm_s, "
        "bubble_s, end_s, energy_j, flops, memory_bytes, weights_bytes, gradients_bytes, "
        "optimizer_bytes, activations_bytes, kv_cache_bytes) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, "
        "?, ?, ?, ?, ?, ?, ?)");
    for (const ParallelRankRow& r : p.rank_rows) {
        rk.reset();
        rk.bind_int(run_id).bind_int(r.rank).bind_int(r.stage).bind_real(r.compute_s).bind_real(r.comm_s);
        rk.bind_real(r.exposed_comm_s).bind_real(r.bubble_s).bind_real(r.end_s).bind_real(r.energy_j);
        rk.bind_real(r.flops)
            .bind_real(r.memory_bytes)
            .bind_real(r.weights_bytes)
            .bind_real(r.gradients_bytes);
        rk.bind_real(r.optimizer_bytes).bind_real(r.activations_bytes).bind_real(r.kv_cache_bytes);
        rk.finish_binding();
        rk.run();
    }
    sql::Statement ex(conn, "INSERT INTO parallel_exposed (run_id, purpose, exposed_s) VALUES (?, ?, ?)");
    for (const auto& [purpose, t] : p.exposed_by_purpose) {
        ex.reset();
        ex.bind_int(run_id).bind_text(purpose).bind_real(t);
        ex.finish_binding();
        ex.run();
    }
    sql::Statement co(
        conn,
        "INSERT INTO collectives (run_id, idx, kind, algorithm, protocol, ranks, bytes, start_s, "
        "end_s, time_s, algbw_GBps, busbw_GBps, steps, energy_j, purpose, copies) VALUES (?, ?, "
        "?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)");
    for (const ParallelCollectiveRow& c : p.collectives) {
        const CollectiveRow& r = c.call;
        co.reset();
        co.bind_int(run_id).bind_int(r.idx).bind_text(r.kind).bind_text(r.algorithm).bind_text(r.protocol);
        co.bind_int(r.ranks).bind_int(r.bytes).bind_real(r.start_s).bind_real(r.end_s);
        co.bind_real(r.end_s - r.start_s).bind_real(r.algbw_GBps).bind_real(r.busbw_GBps).bind_int(r.steps);
        co.bind_real(r.energy_j).bind_text(c.purpose).bind_int(c.copies);
        co.finish_binding();
        co.run();
    }
}

// prepare_layers copies a LayerRow's columns field by field: a field added to LayerRow changes its size, and
// this assertion asks for it there (and in PreparedLayers::Layer and the layers insert).
static_assert(sizeof(LayerRow) == 368, "LayerRow changed: copy the new field in prepare_layers");
// The MPI transport sends a point's PreparedLayers::Layer array as bytes: no pointers, and no padding (whose
// bytes would be indeterminate).
static_assert(std::is_trivially_copyable_v<PreparedLayers::Layer> &&
              std::has_unique_object_representations_v<PreparedLayers::Text> &&
              sizeof(PreparedLayers::Layer) == 20 * 8 + 7 * sizeof(PreparedLayers::Text) + 2 * 4);

void PreparedLayers::drop_rows() {
    layers.clear();
    metrics.clear();
    text.clear();
    metric_keys.clear();
}

bool PreparedLayers::consistent() const {
    const auto inside = [&](Text t) { return t.begin <= text.size() && t.size <= text.size() - t.begin; };
    for (const Layer& l : layers) {
        for (Text t : {l.name, l.op, l.phase, l.dtype, l.bound, l.levels, l.values})
            if (!inside(t)) return false;
        if (l.metrics_begin > l.metrics_end || l.metrics_end > metrics.size()) return false;
        uint32_t at = l.values.begin;
        for (uint32_t k = l.metrics_begin; k < l.metrics_end; ++k) {
            if (metrics[k].key >= metric_keys.size() || metrics[k].end < at) return false;
            at = metrics[k].end;
        }
        if (at > l.values.begin + l.values.size) return false;
    }
    return true;
}

void prepare_layers(const std::vector<LayerRow>& layers, PreparedLayers& out) {
    out.totals = validate_layers(layers);
    out.metric_keys.clear();
    out.layers.resize(layers.size());
    out.metrics.clear();
    out.text.clear();
    std::string& text = out.text;
    // Appends to `text` what `append` writes there; the span it filled.
    const auto put = [&](auto&& append) {
        const std::size_t begin = text.size();
        append();
        // Spans are 32-bit: a run's layers with 4 GB of names and JSON would be a bug.
        MLSIM_CHECK(text.size() <= std::numeric_limits<uint32_t>::max(),
                    "results: a run's layer text over 4 GB");
        return PreparedLayers::Text{static_cast<uint32_t>(begin), static_cast<uint32_t>(text.size() - begin)};
    };
    const auto put_str = [&](const std::string& v) { return put([&] { text += v; }); };
    std::vector<const LevelRow*> sorted;
    // The key of the k-th metric of the layer before: layers of one family mostly list the same metrics in
    // the same order (a run has some thousands of metrics and a few dozen names).
    std::vector<uint32_t> recent;
    for (std::size_t i = 0; i < layers.size(); ++i) {
        const LayerRow& l = layers[i];
        PreparedLayers::Layer& p = out.layers[i];
        p.idx = l.idx;
        p.macs = l.macs;
        p.flops = l.flops;
        p.params = l.params;
        p.bytes_read = l.bytes_read;
        p.bytes_written = l.bytes_written;
        p.start_s = l.start_s;
        p.end_s = l.end_s;
        p.time_s = l.time_s;
        p.cycles = l.cycles;
        p.stall_cycles = l.stall_cycles;
        p.energy_j = l.energy_j;
        p.energy_compute_j = l.energy_compute_j;
        p.energy_memory_j = l.energy_memory_j;
        p.energy_static_j = l.energy_static_j;
        p.utilization = l.utilization;
        p.compute_s = l.compute_s;
        p.memory_s = l.memory_s;
        p.overhead_s = l.overhead_s;
        p.communication_s = l.communication_s;
        p.name = put_str(l.name);
        p.op = put_str(l.op);
        p.phase = put_str(l.phase);
        p.dtype = put_str(l.dtype);
        p.bound = put_str(l.bound);
        // The levels object, its entries by level name (SQLite's BINARY collation: bytes, then length, as
        // std::string compares): the view's rows then come in key order, as the tables of schema 4 to 9 gave
        // them.
        // Schema 13: a layer whose one level carries the row's own numbers (the roofline's), each below 2^53,
        // has its name alone (db/schema.cpp, layer_results.levels; the views show the object).
        p.levels = put([&] {
            if (l.levels.empty()) return;
            if (l.levels.size() == 1) {
                const LevelRow& v = l.levels.front();
                const auto small = [](double x) { return x < schema::k_named_level_bound; };
                if (v.bytes_read == l.bytes_read && v.bytes_written == l.bytes_written && v.accesses == 0 &&
                    v.energy_j == l.energy_memory_j && small(v.bytes_read) && small(v.bytes_written) &&
                    small(v.energy_j)) {
                    schema::append_json_string(text, v.level);
                    return;
                }
            }
            sorted.clear();
            for (const LevelRow& v : l.levels) sorted.push_back(&v);
            std::sort(sorted.begin(), sorted.end(),
                      [](const LevelRow* a, const LevelRow* b) { return a->level < b->level; });
            text += '{';
            for (std::size_t k = 0; k < sorted.size(); ++k) {
                if (k) text += ',';
                const LevelRow* v = sorted[k];
                schema::append_level_json(text, v->level, v->bytes_read, v->bytes_written, v->accesses,
                                          v->energy_j);
            }
            text += '}';
        });
        p.metrics_begin = static_cast<uint32_t>(out.metrics.size());
        p.values = put([&] {
            for (std::size_t k = 0; k < l.metrics.size(); ++k) {
                const MetricRow& m = l.metrics[k];
                // "" and not std::string_view(), whose null data SQLite would bind as NULL.
                const std::string_view unit = m.value ? std::string_view(m.unit) : std::string_view("");
                const auto is = [&](uint32_t key) {
                    return out.metric_keys[key].first == m.name && out.metric_keys[key].second == unit;
                };
                uint32_t key = 0;
                if (k < recent.size() && is(recent[k])) {
                    key = recent[k];
                } else {
                    while (key < out.metric_keys.size() && !is(key)) ++key;
                    if (key == out.metric_keys.size()) out.metric_keys.emplace_back(m.name, unit);
                    if (k >= recent.size()) recent.resize(k + 1);
                    recent[k] = key;
                }
                schema::append_metric_value_json(text, m.value, m.value ? "" : m.text);
                MLSIM_CHECK(text.size() <= std::numeric_limits<uint32_t>::max(),
                            "results: a run's layer text over 4 GB");
                out.metrics.push_back({key, static_cast<uint32_t>(text.size())});
            }
        });
        p.metrics_end = static_cast<uint32_t>(out.metrics.size());
    }
}

int64_t ResultsDb::record_run(const RunInfo& info, const std::vector<LayerRow>& layers, double wall_s,
                              const SweepPoint* point, const ParallelRows* parallel) {
    MLSIM_CHECK(!info.config_yaml.empty(), "results: an ok run needs its resolved config");
    validate_info(info, wall_s);
    // Kept per thread to reuse its memory (a sweep's writer records thousands of runs).
    thread_local PreparedLayers prepared;
    prepare_layers(layers, prepared);
    return record_run(info, prepared, wall_s, point, parallel);
}

int64_t ResultsDb::record_run(const RunInfo& info, const PreparedLayers& layers, double wall_s,
                              const SweepPoint* point, const ParallelRows* parallel) {
    MLSIM_CHECK(!info.config_yaml.empty(), "results: an ok run needs its resolved config");
    validate_info(info, wall_s);
    if (point) validate_point(*point);
    if (parallel) validate_parallel(*parallel);

    // A run with a parallel plan stores rank 0's layers, but its time and energy are the whole step's: every
    // rank, their idle time and the links (the power, against the TDP of every device that runs, follows).
    Totals totals = layers.totals;
    if (parallel) {
        totals.time_s = parallel->step_time_s;
        totals.energy_j = parallel->device_energy_j + parallel->link_energy_j;
    }
    std::lock_guard lock(m_impl->mutex);
    Impl::Transaction txn(*m_impl);
    int64_t run_id =
        m_impl->write_run(info, "ok", nullptr, wall_s, &totals, parallel ? parallel->device_energy_j : -1.0);
    m_impl->write_layers(run_id, layers);
    if (parallel) m_impl->write_parallel(run_id, *parallel);
    if (point) {
        m_impl->write_sweep_point(
            *point, run_id, info.config_hash.empty() ? config_hash(info.config_yaml) : info.config_hash);
        if (!point->claim_key.empty()) m_impl->release(point->claim_key);
    }
    txn.commit();
    return run_id;
}

int64_t ResultsDb::record_collectives(const RunInfo& info, const std::vector<CollectiveRow>& rows,
                                      const std::vector<LinkUtilRow>& links, double wall_s) {
    MLSIM_CHECK(!info.config_yaml.empty(), "results: an ok run needs its resolved config");
    validate_info(info, wall_s);
    Totals totals;
    std::vector<int64_t> ids;
    for (const CollectiveRow& r : rows) {
        for (double v : {r.start_s, r.end_s, r.algbw_GBps, r.busbw_GBps, r.energy_j})
            MLSIM_CHECK(non_negative(v),
                        fmt::format("results: collective {}: a time or bandwidth is {}", r.idx, v));
        MLSIM_CHECK(r.end_s >= r.start_s && r.ranks >= 0 && r.bytes >= 0 && r.steps >= 0,
                    fmt::format("results: collective {}: end before start or a negative count", r.idx));
        ids.push_back(r.idx);
        totals.time_s += r.end_s - r.start_s;
        totals.communication_s += r.end_s - r.start_s;
        totals.energy_j += r.energy_j;
    }
    std::sort(ids.begin(), ids.end());
    MLSIM_CHECK(std::adjacent_find(ids.begin(), ids.end()) == ids.end(), "results: repeated collective idx");
    for (const LinkUtilRow& l : links)
        for (double v : {l.bytes, l.busy_s, l.utilization, l.energy_j})
            MLSIM_CHECK(non_negative(v),
                        fmt::format("results: link {} {}: a figure is {}", l.link, l.direction, v));
    std::lock_guard lock(m_impl->mutex);
    Impl::Transaction txn(*m_impl);
    const int64_t run_id = m_impl->write_run(info, "ok", nullptr, wall_s, &totals);
    sql::Statement ins(
        m_impl->conn,
        "INSERT INTO collectives (run_id, idx, kind, algorithm, protocol, ranks, bytes, start_s, "
        "end_s, time_s, algbw_GBps, busbw_GBps, steps, energy_j) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, "
        "?, "
        "?)");
    for (const CollectiveRow& r : rows) {
        ins.reset();
        ins.bind_int(run_id).bind_int(r.idx).bind_text(r.kind).bind_text(r.algorithm).bind_text(r.protocol);
        ins.bind_int(r.ranks).bind_int(r.bytes).bind_real(r.start_s).bind_real(r.end_s);
        ins.bind_real(r.end_s - r.start_s).bind_real(r.algbw_GBps).bind_real(r.busbw_GBps).bind_int(r.steps);
        ins.bind_real(r.energy_j);
        ins.finish_binding();
        ins.run();
    }
    sql::Statement lin(
        m_impl->conn,
        "INSERT INTO link_utilization (run_id, link, direction, kind, bytes, busy_s, utilization, energy_j) "
        "VALUES (?, ?, ?, ?, ?, ?, ?, ?)");
    for (const LinkUtilRow& l : links) {
        lin.reset();
        lin.bind_int(run_id).bind_int(l.link).bind_text(l.direction).bind_text(l.kind);
        lin.bind_real(l.bytes).bind_real(l.busy_s).bind_real(l.utilization).bind_real(l.energy_j);
        lin.finish_binding();
        lin.run();
    }
    txn.commit();
    return run_id;
}

int64_t ResultsDb::record_comparison(const std::string& name, const std::vector<ComparisonRow>& rows) {
    std::vector<int64_t> ids;
    for (const ComparisonRow& r : rows) {
        for (const std::optional<double>& v :
             {r.latency_s, r.samples_per_s, r.energy_per_sample_j, r.average_power_w, r.system_tdp_w,
              r.samples_per_s_per_w, r.usd_per_million_samples, r.time_to_train_s, r.latency_target_s,
              r.compute_s, r.memory_s, r.communication_s, r.overhead_s, r.flops_per_sample,
              r.bytes_per_sample, r.peak_flops_per_s, r.mem_bandwidth_Bps})
            MLSIM_CHECK(!v || non_negative(*v),
                        fmt::format("results: comparison {} ({} on {}): a figure is {}", r.idx, r.workload,
                                    r.system, v.value_or(0)));
        MLSIM_CHECK(r.run_id > 0 && r.devices >= 1 && r.batch >= 0,
                    fmt::format("results: comparison {}: no run, or a bad device count or batch", r.idx));
        ids.push_back(r.idx);
    }
    std::sort(ids.begin(), ids.end());
    MLSIM_CHECK(std::adjacent_find(ids.begin(), ids.end()) == ids.end(), "results: repeated comparison idx");
    std::lock_guard lock(m_impl->mutex);
    Impl::Transaction txn(*m_impl);
    sql::Statement next(m_impl->conn, "SELECT COALESCE(MAX(compare_id), 0) + 1 FROM comparisons");
    next.finish_binding();
    next.step();
    const int64_t compare_id = next.column_int(0);
    next.reset();
    sql::Statement ins(
        m_impl->conn,
        "INSERT INTO comparisons (compare_id, name, idx, run_id, workload, system, status, error, devices, "
        "batch, latency_s, samples_per_s, energy_per_sample_j, average_power_w, system_tdp_w, "
        "samples_per_s_per_w, usd_per_million_samples, time_to_train_s, latency_target_s, compute_s, "
        "memory_s, communication_s, overhead_s, flops_per_sample, bytes_per_sample, peak_flops_per_s, "
        "mem_bandwidth_Bps) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, "
        "?, "
        "?, ?)");
    for (const ComparisonRow& r : rows) {
        ins.reset();
        ins.bind_int(compare_id).bind_text(name).bind_int(r.idx).bind_int(r.run_id);
        ins.bind_text(r.workload).bind_text(r.system).bind_text(r.status);
        if (r.error.empty())
            ins.bind_null();
        else
            ins.bind_text(r.error);
        ins.bind_int(r.devices).bind_int(r.batch);
        for (const std::optional<double>& v :
             {r.latency_s, r.samples_per_s, r.energy_per_sample_j, r.average_power_w, r.system_tdp_w,
              r.samples_per_s_per_w, r.usd_per_million_samples, r.time_to_train_s, r.latency_target_s,
              r.compute_s, r.memory_s, r.communication_s, r.overhead_s, r.flops_per_sample,
              r.bytes_per_sample, r.peak_flops_per_s, r.mem_bandwidth_Bps})
            bind_optional(ins, v);
        ins.finish_binding();
        ins.run();
    }
    txn.commit();
    return compare_id;
}

int64_t ResultsDb::record_failed_run(const RunInfo& info, const std::string& error, double wall_s,
                                     const SweepPoint* point) {
    validate_info(info, wall_s);
    if (point) validate_point(*point);
    std::lock_guard lock(m_impl->mutex);
    Impl::Transaction txn(*m_impl);
    int64_t run_id = m_impl->write_run(info, "error", &error, wall_s, nullptr);
    if (point) {
        m_impl->write_sweep_point(
            *point, run_id, info.config_hash.empty() ? config_hash(info.config_yaml) : info.config_hash);
        if (!point->claim_key.empty()) m_impl->release(point->claim_key);
    }
    txn.commit();
    return run_id;
}

int64_t ResultsDb::record_serving_run(const RunInfo& info, const ServingRows& rows, double wall_s) {
    MLSIM_CHECK(!info.config_yaml.empty(), "results: an ok run needs its resolved config");
    validate_info(info, wall_s);
    MLSIM_CHECK(non_negative(rows.makespan_s) && non_negative(rows.energy_j),
                "results: serving run with a negative or non-finite makespan or energy");
    std::set<int64_t> ids;
    for (const RequestRow& r : rows.requests) {
        MLSIM_CHECK(non_negative(r.arrival_s) && std::isfinite(r.first_token_s) &&
                        std::isfinite(r.finish_s) && r.arrival_s <= r.first_token_s &&
                        r.first_token_s <= r.finish_s,
                    fmt::format("results: request {}: times out of order or not finite", r.request_id));
        MLSIM_CHECK(r.prompt_tokens >= 0 && r.output_tokens >= 0 && r.preemptions >= 0,
                    fmt::format("results: request {}: negative count", r.request_id));
        MLSIM_CHECK(ids.insert(r.request_id).second,
                    fmt::format("results: request {} repeated", r.request_id));
    }
    std::set<std::string> names;
    for (const ServingMetric& m : rows.summary)
        MLSIM_CHECK(
            std::isfinite(m.value) && !m.name.empty() && !m.unit.empty() && names.insert(m.name).second,
            fmt::format("results: serving metric '{}' unnamed, repeated, without unit or not finite",
                        m.name));
    for (const OccupancyRow& o : rows.occupancy)
        MLSIM_CHECK(non_negative(o.time_s) && o.used_blocks >= 0 && o.used_blocks <= o.total_blocks &&
                        o.running >= 0 && o.waiting >= 0,
                    "results: bad KV-occupancy sample");
    Totals totals;
    totals.time_s = rows.makespan_s;
    totals.energy_j = rows.energy_j;

    std::lock_guard lock(m_impl->mutex);
    Impl::Transaction txn(*m_impl);
    const int64_t run_id = m_impl->write_run(info, "ok", nullptr, wall_s, &totals);
    sql::Statement req(m_impl->conn,
                       "INSERT INTO requests (run_id, request_id, arrival_s, first_token_s, finish_s, "
                       "prompt_tokens, output_tokens, preemptions) VALUES (?, ?, ?, ?, ?, ?, ?, ?)");
    for (const RequestRow& r : rows.requests) {
        req.reset();
        req.bind_int(run_id).bind_int(r.request_id).bind_real(r.arrival_s).bind_real(r.first_token_s);
        req.bind_real(r.finish_s).bind_int(r.prompt_tokens).bind_int(r.output_tokens).bind_int(r.preemptions);
        req.run();
    }
    sql::Statement met(m_impl->conn,
                       "INSERT INTO serving_metrics (run_id, name, value, unit) VALUES (?, ?, ?, ?)");
    for (const ServingMetric& m : rows.summary) {
        met.reset();
        met.bind_int(run_id).bind_text(m.name).bind_real(m.value).bind_text(m.unit);
        met.run();
    }
    sql::Statement occ(
        m_impl->conn,
        "INSERT INTO kv_occupancy (run_id, sample, time_s, used_blocks, total_blocks, running, "
        "waiting) VALUES (?, ?, ?, ?, ?, ?, ?)");
    int64_t sample = 0;
    for (const OccupancyRow& o : rows.occupancy) {
        occ.reset();
        occ.bind_int(run_id).bind_int(sample++).bind_real(o.time_s).bind_int(o.used_blocks);
        occ.bind_int(o.total_blocks).bind_int(o.running).bind_int(o.waiting);
        occ.run();
    }
    txn.commit();
    return run_id;
}

std::optional<int64_t> ResultsDb::find_run(const std::string& config_hash, std::string_view status) const {
    std::lock_guard lock(m_impl->mutex);
    sql::Statement& s = *m_impl->find_run;
    s.reset();
    s.bind_text(config_hash).bind_text(status).finish_binding();
    std::optional<int64_t> id;
    if (s.step()) id = s.column_int(0);
    s.reset();
    return id;
}

bool ResultsDb::link_sweep_point(const SweepPoint& point, int64_t run_id) {
    validate_point(point);
    std::lock_guard lock(m_impl->mutex);
    Impl::Transaction txn(*m_impl);
    sql::Statement& linked = *m_impl->find_link;
    linked.reset();
    linked.bind_text(point.sweep_name).bind_int(run_id).finish_binding();
    const bool already = linked.step();
    linked.reset();
    if (already) return false;  // the transaction rolls back: nothing was written
    sql::Statement& h = *m_impl->run_hash;
    h.reset();
    h.bind_int(run_id).finish_binding();
    MLSIM_CHECK(h.step(), fmt::format("results: link_sweep_point: no run {}", run_id));
    const std::string hash = h.column_text(0);
    h.reset();
    m_impl->write_sweep_point(point, run_id, hash);
    txn.commit();
    return true;
}

ClaimResult ResultsDb::claim(const ClaimQuery& q) {
    MLSIM_CHECK(!q.key.empty(), "results: claim() needs a key");
    std::lock_guard lock(m_impl->mutex);
    Impl::Transaction txn(*m_impl);  // rolled back (nothing written) unless the claim is taken
    ClaimResult result;
    std::optional<int64_t> done;
    if (!q.ok_hash.empty() && (done = m_impl->latest_run(q.ok_hash, "ok", 0))) result.run_ok = true;
    if (!done && !q.error_hash.empty()) done = m_impl->latest_run(q.error_hash, "error", q.errors_after);
    if (done) {
        result.state = ClaimResult::State::done;
        result.run_id = *done;
        return result;
    }
    sql::Statement& f = *m_impl->find_claim;
    f.reset();
    f.bind_text(q.key).finish_binding();
    if (f.step()) {
        const ProcessIdentity holder{f.column_text(0), f.column_int(1), f.column_text(2)};
        f.reset();
        const bool mine = holder.host == m_impl->me.host && holder.pid == m_impl->me.pid &&
                          holder.start == m_impl->me.start;
        if (!mine && claim_is_live(holder, m_impl->me)) {
            result.state = ClaimResult::State::busy;
            return result;
        }
    }
    f.reset();
    if (m_impl->in_batch) {
        // The batch holds the write lock until it commits, and the run that settles the point is recorded
        // in it: a claim row would be released before any other process could see it.
        txn.commit();
        result.state = ClaimResult::State::claimed;
        return result;
    }
    sql::Statement& p = *m_impl->put_claim;
    p.reset();
    p.bind_text(q.key).bind_text(m_impl->me.host).bind_int(m_impl->me.pid).bind_text(m_impl->me.start);
    p.bind_text(utc_now());
    if (q.point)
        p.bind_text(q.point->sweep_name).bind_int(q.point->point);
    else
        p.bind_null().bind_null();
    p.run();
    txn.commit();
    result.state = ClaimResult::State::claimed;
    return result;
}

void ResultsDb::release_claim(const std::string& key) {
    std::lock_guard lock(m_impl->mutex);
    Impl::Transaction txn(*m_impl);
    m_impl->release(key);
    txn.commit();
}

namespace {

std::string writer_key(const ProcessIdentity& me) {
    return fmt::format("writer {} {} {}", me.host, me.pid, me.start);
}

// Whether a live process other than `me` has a writer row (find_writers); the keys of the rows of writers
// no longer live go to `stale` when given.
bool scan_writers(sql::Statement& find_writers, const ProcessIdentity& me, std::vector<std::string>* stale) {
    const std::string mine = writer_key(me);
    bool others = false;
    find_writers.reset();
    find_writers.finish_binding();
    while ((stale || !others) && find_writers.step()) {
        std::string key = find_writers.column_text(0);
        if (key == mine) continue;
        if (claim_is_live(ProcessIdentity{find_writers.column_text(1), find_writers.column_int(2),
                                          find_writers.column_text(3)},
                          me))
            others = true;
        else if (stale)
            stale->push_back(std::move(key));
    }
    find_writers.reset();
    return others;
}

}  // namespace

bool ResultsDb::announce_writer() {
    std::lock_guard lock(m_impl->mutex);
    MLSIM_CHECK(!m_impl->in_batch, "results: announce_writer() inside a batch");
    Impl::Transaction txn(*m_impl);
    const std::string mine = writer_key(m_impl->me);
    std::vector<std::string> stale;
    const bool others = scan_writers(*m_impl->find_writers, m_impl->me, &stale);
    for (const std::string& key : stale) {
        sql::Statement d(m_impl->conn, "DELETE FROM claims WHERE claim_key = ?");
        d.bind_text(key);
        d.run();
    }
    sql::Statement& p = *m_impl->put_claim;
    p.reset();
    p.bind_text(mine).bind_text(m_impl->me.host).bind_int(m_impl->me.pid).bind_text(m_impl->me.start);
    p.bind_text(utc_now()).bind_null().bind_null();
    p.run();
    txn.commit();
    return others;
}

void ResultsDb::withdraw_writer() { release_claim(writer_key(m_impl->me)); }

bool ResultsDb::other_writers() const {
    std::lock_guard lock(m_impl->mutex);
    return scan_writers(*m_impl->find_writers, m_impl->me, nullptr);
}

std::vector<std::string> ResultsDb::run_hashes_after(const std::string& status, int64_t& after) const {
    std::lock_guard lock(m_impl->mutex);
    std::vector<std::string> out;
    sql::Statement& q = *m_impl->hashes_after;
    q.reset();
    q.bind_int(after).bind_text(status).finish_binding();
    while (q.step()) {
        after = std::max(after, q.column_int(0));
        if (std::string hash = q.column_text(1); !hash.empty()) out.push_back(std::move(hash));
    }
    q.reset();
    return out;
}

std::string factors_json(const SweepPoint& point) {
    std::string out = "{";
    for (size_t i = 0; i < point.factors.size(); ++i) {
        if (i) out += ", ";
        out += json_string(point.factors[i].factor) + ": " + json_string(point.factors[i].value);
    }
    return out + "}";
}

std::vector<std::pair<int64_t, std::string>> ResultsDb::sweep_points(const std::string& name) const {
    std::lock_guard lock(m_impl->mutex);
    sql::Statement q(m_impl->conn,
                     "SELECT point, factors_json FROM sweeps WHERE sweep_name = ? ORDER BY point, run_id");
    q.bind_text(name).finish_binding();
    std::vector<std::pair<int64_t, std::string>> out;
    while (q.step()) out.emplace_back(q.column_int(0), q.column_text(1));
    return out;
}

std::optional<std::string> ResultsDb::meta_value(const std::string& key) const {
    std::lock_guard lock(m_impl->mutex);
    sql::Statement q(m_impl->conn, "SELECT value FROM meta WHERE key = ?");
    q.bind_text(key).finish_binding();
    if (!q.step()) return std::nullopt;
    return q.column_text(0);
}

void ResultsDb::set_meta_value(const std::string& key, const std::string& value) {
    std::lock_guard lock(m_impl->mutex);
    MLSIM_CHECK(key != "schema_version", "results: the schema version is the migration's");
    Impl::Transaction txn(*m_impl);
    sql::Statement q(m_impl->conn, "INSERT OR REPLACE INTO meta (key, value) VALUES (?, ?)");
    q.bind_text(key).bind_text(value).finish_binding();
    q.run();
    txn.commit();
}

int64_t ResultsDb::max_run_id() const {
    std::lock_guard lock(m_impl->mutex);
    sql::Statement& s = *m_impl->max_run;
    s.reset();
    s.finish_binding();
    s.step();
    const int64_t id = s.column_int(0);
    s.reset();
    return id;
}

bool ResultsDb::has_ok_run(const std::string& config_hash) const {
    std::lock_guard lock(m_impl->mutex);
    sql::Statement& s = *m_impl->find_ok;
    s.reset();
    s.bind_text(config_hash).finish_binding();
    bool found = s.step();
    s.reset();
    return found;
}

}  // namespace mlsim::db
