#include "sim/core/stats.h"

#include <fmt/format.h>

#include "sim/core/check.h"

namespace mlsim {

Counter& StatRegistry::counter(std::string name, std::string unit, const char* description) {
    MLSIM_CHECK(!name.empty(), "stat registered without a name");
    MLSIM_CHECK(!m_index.contains(name), fmt::format("stat '{}' registered twice", name));
    Entry& e =
        m_entries.emplace_back(Entry{std::move(name), std::move(unit), description ? description : "", {}});
    // The key views the deque-held string, which never moves.
    m_index.emplace(std::string_view{e.name}, m_entries.size() - 1);
    return e.counter;
}

const Counter* StatRegistry::find(std::string_view name) const {
    const auto it = m_index.find(name);
    return it == m_index.end() ? nullptr : &m_entries[it->second].counter;
}

std::vector<StatRow> StatRegistry::dump() const {
    std::vector<StatRow> rows;
    rows.reserve(m_entries.size());
    for (const Entry& e : m_entries)
        rows.push_back(StatRow{e.name, e.unit, e.counter.value(), e.description});
    return rows;
}

std::vector<StatRow> StatRegistry::dump(std::string_view prefix) const {
    std::vector<StatRow> rows;
    for (const Entry& e : m_entries)
        if (std::string_view(e.name).starts_with(prefix))
            rows.push_back(StatRow{e.name, e.unit, e.counter.value(), e.description});
    return rows;
}

void StatRegistry::reset_all() noexcept {
    for (Entry& e : m_entries) e.counter.reset();
}

}  // namespace mlsim
