#include "sim/core/bounded_buffer.h"

#include <fmt/format.h>

#include "sim/core/check.h"

namespace mlsim {

BoundedBuffer::BoundedBuffer(Simulator& sim, std::string name, std::uint64_t capacity, std::string unit)
    : m_sim(sim),
      m_name(std::move(name)),
      m_capacity(capacity),
      m_producer_wait(
          sim.stats().counter(m_name + ".producer_wait", "ps", "time producers waited for free space")),
      m_consumer_wait(sim.stats().counter(m_name + ".consumer_wait", "ps", "time consumers waited for data")),
      m_committed(sim.stats().counter(m_name + ".committed", unit, "units made readable by producers")),
      m_released(sim.stats().counter(m_name + ".released", unit, "units freed by consumers")) {
    MLSIM_CHECK(capacity >= 1, fmt::format("buffer '{}' has zero capacity", m_name));
}

BoundedBuffer::BoundedBuffer(Simulator& sim, std::string name, std::uint64_t capacity, Unregistered)
    : m_sim(sim),
      m_name(std::move(name)),
      m_capacity(capacity),
      m_producer_wait(m_own[0]),
      m_consumer_wait(m_own[1]),
      m_committed(m_own[2]),
      m_released(m_own[3]) {
    MLSIM_CHECK(capacity >= 1, fmt::format("buffer '{}' has zero capacity", m_name));
}

void BoundedBuffer::WaitQueue::push_back(const Waiter& w) {
    if (m_size == m_items.size()) {
        // Unroll the ring into a buffer twice the size.
        std::vector<Waiter> bigger;
        bigger.reserve(m_items.empty() ? 4 : 2 * m_items.size());
        for (std::size_t i = 0; i < m_size; ++i)
            bigger.push_back(m_items[(m_head + i) & (m_items.size() - 1)]);
        bigger.resize(bigger.capacity());
        m_items.swap(bigger);
        m_head = 0;
    }
    m_items[(m_head + m_size) & (m_items.size() - 1)] = w;
    ++m_size;
}

bool BoundedBuffer::can_grant(Request k, std::uint64_t n) const noexcept {
    return is_producer(k) ? n <= free() : n <= m_data;
}

void BoundedBuffer::grant(Request k, std::uint64_t n) {
    switch (k) {
        case Request::reserve:
            m_reserved += n;
            break;
        case Request::put:
            m_data += n;
            m_committed += n;
            break;
        case Request::acquire:
            m_data -= n;
            m_acquired += n;
            break;
        case Request::get:
            m_data -= n;
            m_released += n;
            break;
    }
}

bool BoundedBuffer::try_grant_now(Request k, std::uint64_t n) {
    MLSIM_CHECK(n <= m_capacity, fmt::format("request of {} units on buffer '{}' exceeds its capacity {}", n,
                                             m_name, m_capacity));
    const WaitQueue& queue = is_producer(k) ? m_producers : m_consumers;
    if (!queue.empty() || !can_grant(k, n)) return false;
    grant(k, n);
    // A put adds data and a get frees space: either may unblock the other side.
    if (k == Request::put || k == Request::get) wake_waiters();
    return true;
}

void BoundedBuffer::enqueue(Request k, std::uint64_t n, Callback cb) {
    (is_producer(k) ? m_producers : m_consumers).push_back(Waiter{n, m_sim.now(), cb, k});
}

void BoundedBuffer::request(Request kind, std::uint64_t n, Callback on_granted) {
    if (try_grant_now(kind, n))
        m_sim.schedule_at(m_sim.now(), on_granted);
    else
        enqueue(kind, n, on_granted);
}

void BoundedBuffer::commit(std::uint64_t n) {
    MLSIM_CHECK(n <= m_reserved, fmt::format("buffer '{}': commit of {} exceeds the {} units reserved",
                                             m_name, n, m_reserved));
    m_reserved -= n;
    m_data += n;
    m_committed += n;
    wake_waiters();
}

void BoundedBuffer::release(std::uint64_t n) {
    MLSIM_CHECK(n <= m_acquired, fmt::format("buffer '{}': release of {} exceeds the {} units acquired",
                                             m_name, n, m_acquired));
    m_acquired -= n;
    m_released += n;
    wake_waiters();
}

void BoundedBuffer::wake_waiters() {
    // Granting a put adds data and granting a get frees space, so keep going until neither side moves.
    bool progress = true;
    while (progress) {
        progress = false;
        while (!m_producers.empty() && can_grant(m_producers.front().kind, m_producers.front().amount)) {
            const Waiter w = m_producers.front();
            m_producers.pop_front();
            grant(w.kind, w.amount);
            m_producer_wait += static_cast<std::uint64_t>((m_sim.now() - w.since).ps());
            m_sim.schedule_at(m_sim.now(), w.cb);
            progress = true;
        }
        while (!m_consumers.empty() && can_grant(m_consumers.front().kind, m_consumers.front().amount)) {
            const Waiter w = m_consumers.front();
            m_consumers.pop_front();
            grant(w.kind, w.amount);
            m_consumer_wait += static_cast<std::uint64_t>((m_sim.now() - w.since).ps());
            m_sim.schedule_at(m_sim.now(), w.cb);
            progress = true;
        }
    }
}

}  // namespace mlsim
