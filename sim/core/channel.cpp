#include "sim/core/channel.h"

#include <algorithm>

#include "sim/core/check.h"

namespace mlsim {

Channel::Channel(Simulator& sim, std::string name, std::uint64_t bytes_per_second, Tick latency)
    : m_sim(sim),
      m_name(std::move(name)),
      m_bytes_per_second(bytes_per_second),
      m_latency(latency),
      m_busy_ps(
          sim.stats().counter(m_name + ".busy_time", "ps", "time the channel was occupied by transfers")),
      m_bytes(sim.stats().counter(m_name + ".bytes", "bytes", "bytes carried")),
      m_transfers(sim.stats().counter(m_name + ".transfers", "count", "transfers carried")) {
    MLSIM_CHECK(bytes_per_second >= 1, "channel '" + m_name + "' has zero bandwidth");
    MLSIM_CHECK(latency >= Tick::zero(), "channel '" + m_name + "' has negative latency");
}

Tick Channel::hold_time(std::uint64_t bytes) const {
    using u128 = unsigned __int128;
    const u128 ps =
        (static_cast<u128>(bytes) * 1'000'000'000'000ULL + m_bytes_per_second - 1) / m_bytes_per_second;
    MLSIM_CHECK(ps <= static_cast<u128>(INT64_MAX), "transfer time does not fit in 64 bits");
    return Tick::from_ps(static_cast<std::int64_t>(ps));
}

Tick Channel::arrival_if_sent_now(std::uint64_t bytes) const {
    return std::max(m_sim.now(), m_free_at) + hold_time(bytes) + m_latency;
}

Tick Channel::send(std::uint64_t bytes, Callback on_arrival) {
    const Tick start = std::max(m_sim.now(), m_free_at);
    const Tick hold = hold_time(bytes);
    m_free_at = start + hold;
    const Tick arrival = m_free_at + m_latency;
    m_busy_ps += static_cast<std::uint64_t>(hold.ps());
    m_bytes += bytes;
    ++m_transfers;
    m_sim.schedule_at(arrival, on_arrival);
    return arrival;
}

}  // namespace mlsim
