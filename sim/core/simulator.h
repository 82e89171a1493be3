#pragma once
// The discrete-event engine.
//
// Promises:
// - Events run in (time, phase, insertion sequence) order; equal (time, phase) run first-in first-out,
//   including events scheduled for the current time by a running event. Identical inputs give an
//   identical run.
// - Scheduling is allocation-free on the hot path: the payload (a 24-byte Callback) goes into a reused
//   slab slot and a 16-byte key into the heap.
// - `cancel` takes a generation-checked handle: a cancelled event never runs, and cancelling an event
//   that already ran or was already cancelled does nothing, even if its slot was reused since.
// - Scheduling before now() is a bug and throws InternalError.
// - Coroutine processes (process.h) started with spawn() are owned by the simulator; those still
//   suspended when it is destroyed are destroyed with it.
// Assumes: single-threaded use; whatever a Callback points at outlives the event. Cancelled events
// keep their heap entry until their time comes (lazy removal), so cancelling is O(1).
#include <cstdint>
#include <vector>

#include "sim/core/callback.h"
#include "sim/core/check.h"
#include "sim/core/event_queue.h"
#include "sim/core/stats.h"
#include "sim/core/time.h"

namespace mlsim {

class Process;

struct EventHandle {
    std::uint32_t slot = UINT32_MAX;
    std::uint32_t generation = 0;
};

namespace detail {
// Intrusive list link for spawned process frames; lives in the coroutine promise.
struct ProcessLink {
    ProcessLink* prev = nullptr;
    ProcessLink* next = nullptr;
    void* frame = nullptr;

    bool linked() const noexcept { return next != nullptr; }
    void unlink() noexcept {
        if (next) {
            prev->next = next;
            next->prev = prev;
            prev = next = nullptr;
        }
    }
};
}  // namespace detail

class Simulator {
  public:
    Simulator();
    ~Simulator();
    Simulator(const Simulator&) = delete;
    Simulator& operator=(const Simulator&) = delete;

    Tick now() const noexcept { return m_now; }

    EventHandle schedule_at(Tick at, Callback cb) { return schedule_at(at, Phase::normal, cb); }
    // Forced inline: the call and register spills cost about 5% of an event in the hold benchmark.
    [[gnu::always_inline]] EventHandle schedule_at(Tick at, Phase phase, Callback cb) {
        MLSIM_CHECK(at >= m_now, past_message(at));
        MLSIM_CHECK(static_cast<bool>(cb), "scheduled an empty Callback");
        const std::uint32_t slot = allocate_slot();
        Slot& s = m_slots[slot];
        s.cb = cb;
        if (m_top_spent) {  // the running event's key is still at the top: reuse its place
            m_top_spent = false;
            m_queue.replace_top(at, phase, slot);
        } else {
            m_queue.push(at, phase, slot);
        }
        ++m_pending;
        return EventHandle{slot, s.generation};
    }
    EventHandle schedule_in(Tick delay, Callback cb) { return schedule_in(delay, Phase::normal, cb); }
    EventHandle schedule_in(Tick delay, Phase phase, Callback cb) {
        MLSIM_CHECK(delay >= Tick::zero(), "negative delay");
        return schedule_at(m_now + delay, phase, cb);
    }

    // True when the event was pending and is now cancelled; false for a stale or empty handle.
    bool cancel(EventHandle h) noexcept;
    bool is_pending(EventHandle h) const noexcept {
        return h.slot < m_slots.size() && m_slots[h.slot].generation == h.generation &&
               static_cast<bool>(m_slots[h.slot].cb);
    }

    // Runs until no event is pending or stop() is called.
    void run();
    // Runs every event with time <= t (including ones they schedule), then sets now() to t.
    // Stops early, leaving now() at the last event, if stop() is called.
    void run_until(Tick t);
    // Runs the next pending event, if any; returns false when there was none.
    bool step();
    // Makes run()/run_until() return after the current event.
    void stop() noexcept { m_stop = true; }

    std::uint64_t events_run() const noexcept { return m_events_run; }
    std::size_t pending() const noexcept { return m_pending; }
    // Time of the next pending (possibly cancelled) event; Tick::max() when none.
    Tick next_time() const noexcept {
        settle();
        return m_queue.empty() ? Tick::max() : m_queue.top_time();
    }

    StatRegistry& stats() noexcept { return m_stats; }
    const StatRegistry& stats() const noexcept { return m_stats; }

    // Takes ownership of a process and starts it at now() (as an event, in FIFO order with other events
    // at now()). Defined in process.h.
    inline void spawn(Process process);

  private:
    struct Slot {
        Callback cb;  // empty when free or cancelled
        std::uint32_t generation = 0;
        std::uint32_t next_free = 0;
    };
    static_assert(sizeof(Slot) == 32);
    static constexpr std::uint32_t k_no_slot = UINT32_MAX;

    std::uint32_t allocate_slot() {
        if (m_free_head != k_no_slot) [[likely]] {
            const std::uint32_t s = m_free_head;
            m_free_head = m_slots[s].next_free;
            return s;
        }
        return grow_slots();
    }
    std::uint32_t grow_slots();

    void free_slot(std::uint32_t s) noexcept {
        Slot& slot = m_slots[s];
        slot.cb.reset();
        ++slot.generation;
        slot.next_free = m_free_head;
        m_free_head = s;
    }

    // Runs the top entry unless it was cancelled. Its key stays in the heap while it runs, marked spent,
    // so that the first event it schedules can take its place in one sift (see schedule_at); if it
    // schedules nothing, the key is popped afterwards.
    void run_top() {
        const EventQueue::Entry e = m_queue.top();
        Slot& slot = m_slots[e.slot];
        // Copy out before freeing: the handler may schedule, which may reuse this slot or grow the slab.
        Callback cb = slot.cb;
        free_slot(e.slot);
        if (!cb) {  // cancelled; cancel() already dropped it from m_pending
            m_queue.pop();
            return;
        }
        --m_pending;
        m_now = e.time;
        ++m_events_run;
        m_top_spent = true;
        cb();
        settle();
    }

    // Drops a spent top key left by a handler that scheduled nothing or threw. Every path that reads the
    // queue outside run_top calls this first.
    void settle() const noexcept {
        if (m_top_spent) {
            m_top_spent = false;
            m_queue.pop();
        }
    }

    std::string past_message(Tick at) const;

    // Mutable only so that const observers can settle a spent top key; the order of events is unaffected.
    mutable EventQueue m_queue;
    mutable bool m_top_spent = false;
    std::vector<Slot> m_slots;
    std::uint32_t m_free_head = k_no_slot;
    Tick m_now;
    std::uint64_t m_events_run = 0;
    std::size_t m_pending = 0;
    bool m_stop = false;
    StatRegistry m_stats;
    detail::ProcessLink m_processes;  // sentinel of a circular list of spawned, unfinished processes
    friend class Process;
};

}  // namespace mlsim
