#pragma once
// Statistics: integer counters registered once, incremented on hot paths, dumped at the end.
//
// Promises: `StatRegistry::counter` registers a counter with a unique dotted name, a unit and a
// one-line description, and returns a reference that stays valid for the registry's lifetime; hot
// paths keep that reference and add integers, never looking a stat up by string. `dump()` lists every
// stat in registration order with its current value, for the results writer. Derived figures
// (bandwidth, utilization) are not stats: compute them when writing results.
// Assumes: names are unique within a registry (a duplicate is a bug and throws InternalError).
#include <cstdint>
#include <deque>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

namespace mlsim {

class Counter {
  public:
    void add(std::uint64_t n) noexcept { m_value += n; }
    Counter& operator+=(std::uint64_t n) noexcept {
        m_value += n;
        return *this;
    }
    Counter& operator++() noexcept {
        ++m_value;
        return *this;
    }
    std::uint64_t value() const noexcept { return m_value; }
    void reset() noexcept { m_value = 0; }

  private:
    std::uint64_t m_value = 0;
};

struct StatRow {
    std::string name;
    std::string unit;  // "ps", "bytes", "count", ...
    std::uint64_t value;
    std::string description;
};

class StatRegistry {
  public:
    StatRegistry() = default;
    StatRegistry(const StatRegistry&) = delete;
    StatRegistry& operator=(const StatRegistry&) = delete;

    // `description` is static text (a string literal): it is kept as a pointer and copied only by dump(),
    // since a short simulation registers hundreds of counters and keeps few of their rows.
    Counter& counter(std::string name, std::string unit, const char* description);

    // Null when no stat has that name. For tests and result writers, not for hot paths.
    const Counter* find(std::string_view name) const;

    std::vector<StatRow> dump() const;
    // The rows whose names start with `prefix`, in registration order (the rows of dump() that do).
    std::vector<StatRow> dump(std::string_view prefix) const;
    std::size_t size() const noexcept { return m_entries.size(); }
    void reset_all() noexcept;

  private:
    struct Entry {
        std::string name;
        std::string unit;
        const char* description;
        Counter counter;
    };
    std::deque<Entry> m_entries;  // a deque never moves its elements, so Counter& stays valid
    std::unordered_map<std::string_view, std::size_t> m_index;
};

}  // namespace mlsim
