#include "sim/core/simulator.h"

#include <fmt/format.h>

#include <coroutine>

namespace mlsim {

Simulator::Simulator() { m_processes.prev = m_processes.next = &m_processes; }

Simulator::~Simulator() {
    // Destroying a frame runs its promise destructor, which unlinks it; children awaited by a frame are
    // owned by that frame and go with it.
    while (m_processes.next != &m_processes)
        std::coroutine_handle<>::from_address(m_processes.next->frame).destroy();
}

std::uint32_t Simulator::grow_slots() {
    const std::size_t n = m_slots.size();
    MLSIM_CHECK(n < EventQueue::k_max_slots, "too many pending events (2^24)");
    m_slots.emplace_back();
    return static_cast<std::uint32_t>(n);
}

bool Simulator::cancel(EventHandle h) noexcept {
    if (!is_pending(h)) return false;
    Slot& s = m_slots[h.slot];
    s.cb.reset();
    // A new generation makes this handle stale at once; the slot itself is freed when its key pops.
    ++s.generation;
    --m_pending;
    return true;
}

void Simulator::run() {
    settle();
    m_stop = false;
    while (!m_queue.empty() && !m_stop) run_top();
}

void Simulator::run_until(Tick t) {
    MLSIM_CHECK(t >= m_now, past_message(t));
    settle();
    m_stop = false;
    while (!m_queue.empty() && !m_stop && m_queue.top_time() <= t) run_top();
    if (!m_stop) m_now = t;
}

bool Simulator::step() {
    settle();
    while (!m_queue.empty()) {
        const bool live = static_cast<bool>(m_slots[m_queue.top().slot].cb);
        run_top();
        if (live) return true;
    }
    return false;
}

std::string Simulator::past_message(Tick at) const {
    return fmt::format("time {} ps is before now ({} ps)", at.ps(), m_now.ps());
}

}  // namespace mlsim
