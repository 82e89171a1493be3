#pragma once
// A point-to-point channel with bandwidth and latency: the port through which components exchange data.
//
// Promises: a transfer of n bytes occupies the channel for hold(n) = ceil(n * 10^12 / B) ps, where B is
// the bandwidth in bytes per second; transfers are served first-in first-out, so one issued while the
// channel is busy starts when the previous one releases it. The data arrives at
// start + hold(n) + latency, and the completion callback (or the awaiting coroutine) runs then. Latency
// is pipelined: the next transfer may start while earlier data is still in flight.
// Stats, registered as "<name>.busy_time" (ps), "<name>.bytes" and "<name>.transfers", are counted
// when a transfer is issued, so mid-run they include committed future occupancy.
// Assumes: B >= 1 byte/s; the channel and its callbacks' targets outlive pending transfers.
#include <coroutine>
#include <cstdint>
#include <string>

#include "sim/core/callback.h"
#include "sim/core/simulator.h"
#include "sim/core/stats.h"
#include "sim/core/time.h"

namespace mlsim {

class Channel {
  public:
    Channel(Simulator& sim, std::string name, std::uint64_t bytes_per_second, Tick latency);
    Channel(const Channel&) = delete;
    Channel& operator=(const Channel&) = delete;

    // Issues a transfer now; `on_arrival` runs when the last byte arrives. Returns the arrival time.
    Tick send(std::uint64_t bytes, Callback on_arrival);

    // `co_await channel.transfer(n)` issues a transfer now and resumes at its arrival.
    auto transfer(std::uint64_t bytes) noexcept {
        struct Awaiter {
            Channel* channel;
            std::uint64_t bytes;
            bool await_ready() const noexcept { return false; }
            void await_suspend(std::coroutine_handle<> h) const { channel->send(bytes, Callback::resume(h)); }
            void await_resume() const noexcept {}
        };
        return Awaiter{this, bytes};
    }

    // Time the channel is held by n bytes: ceil(n * 1e12 / B).
    Tick hold_time(std::uint64_t bytes) const;
    // Arrival time a transfer of n bytes issued now would have.
    Tick arrival_if_sent_now(std::uint64_t bytes) const;
    // When the channel is free for a new transfer to start (<= now() when idle).
    Tick free_at() const noexcept { return m_free_at; }

    const std::string& name() const noexcept { return m_name; }
    std::uint64_t bandwidth() const noexcept { return m_bytes_per_second; }
    Tick latency() const noexcept { return m_latency; }
    std::uint64_t busy_time_ps() const noexcept { return m_busy_ps.value(); }
    std::uint64_t bytes() const noexcept { return m_bytes.value(); }
    std::uint64_t transfers() const noexcept { return m_transfers.value(); }

  private:
    Simulator& m_sim;
    std::string m_name;
    std::uint64_t m_bytes_per_second;
    Tick m_latency;
    Tick m_free_at;
    Counter& m_busy_ps;
    Counter& m_bytes;
    Counter& m_transfers;
};

}  // namespace mlsim
