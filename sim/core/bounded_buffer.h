#pragma once
// A bounded buffer of `capacity` units (bytes or slots): what double buffering is made of.
//
// Space moves through four states: free -> reserved (a producer is filling it) -> data (readable)
// -> acquired (a consumer is using it) -> free.
//   reserve(n): wait until n units are free, claim them;     commit(n):  reserved -> data.
//   acquire(n): wait until n units of data exist, claim them; release(n): acquired -> free.
//   put(n) = reserve(n) then commit(n) at once;  get(n) = acquire(n) then release(n) at once.
// A double buffer is capacity 2 (slots): the producer reserves a free half, loads it, commits it; the
// consumer acquires a full half, computes on it, releases it.
//
// Promises: waiting requests are granted strictly first-in first-out per side (a large request at the
// head is not overtaken by smaller ones), at the instant the space or data appears; the grant is
// accounted at that instant, so nothing can steal it, and the waiter resumes (or its callback runs) as
// an event at that same time. An awaitable whose request can be granted at once does not suspend;
// a callback always runs from the event loop, never inside the call that registered it.
// Stats: "<name>.producer_wait" and "<name>.consumer_wait" (ps spent waiting, summed over requests),
// "<name>.committed" and "<name>.released" (units).
// Assumes: requests do not exceed the capacity (checked: they could never be granted); commit and
// release never exceed what is reserved / acquired (checked).
#include <coroutine>
#include <cstdint>
#include <string>
#include <vector>

#include "sim/core/callback.h"
#include "sim/core/simulator.h"
#include "sim/core/stats.h"
#include "sim/core/time.h"

namespace mlsim {

class BoundedBuffer {
  public:
    enum class Request : std::uint8_t { reserve, put, acquire, get };

    BoundedBuffer(Simulator& sim, std::string name, std::uint64_t capacity, std::string unit = "bytes");
    // The same buffer with its four counters kept to itself, not in the simulator's registry: for a
    // caller that reads none of them and builds many short simulations (the systolic pipeline, one per
    // layer, which keeps only its main-memory channel's counters). Registering them costs more than the
    // simulation of a small layer (bench/README.md, start-up).
    struct Unregistered {};
    BoundedBuffer(Simulator& sim, std::string name, std::uint64_t capacity, Unregistered);
    BoundedBuffer(const BoundedBuffer&) = delete;
    BoundedBuffer& operator=(const BoundedBuffer&) = delete;

    class Awaiter {
      public:
        bool await_ready() { return m_buffer->try_grant_now(m_kind, m_amount); }
        void await_suspend(std::coroutine_handle<> h) {
            m_buffer->enqueue(m_kind, m_amount, Callback::resume(h));
        }
        void await_resume() const noexcept {}

      private:
        friend class BoundedBuffer;
        Awaiter(BoundedBuffer* b, Request k, std::uint64_t n) noexcept
            : m_buffer(b), m_amount(n), m_kind(k) {}
        BoundedBuffer* m_buffer;
        std::uint64_t m_amount;
        Request m_kind;
    };

    // Coroutine forms.
    [[nodiscard]] Awaiter reserve(std::uint64_t n) noexcept { return {this, Request::reserve, n}; }
    [[nodiscard]] Awaiter put(std::uint64_t n) noexcept { return {this, Request::put, n}; }
    [[nodiscard]] Awaiter acquire(std::uint64_t n) noexcept { return {this, Request::acquire, n}; }
    [[nodiscard]] Awaiter get(std::uint64_t n) noexcept { return {this, Request::get, n}; }

    // Callback form of any request: `on_granted` runs as an event once the request is granted.
    void request(Request kind, std::uint64_t n, Callback on_granted);

    void commit(std::uint64_t n);
    void release(std::uint64_t n);

    const std::string& name() const noexcept { return m_name; }
    std::uint64_t capacity() const noexcept { return m_capacity; }
    std::uint64_t free() const noexcept { return m_capacity - m_reserved - m_data - m_acquired; }
    std::uint64_t reserved() const noexcept { return m_reserved; }
    std::uint64_t data() const noexcept { return m_data; }
    std::uint64_t acquired() const noexcept { return m_acquired; }
    std::size_t waiting_producers() const noexcept { return m_producers.size(); }
    std::size_t waiting_consumers() const noexcept { return m_consumers.size(); }

  private:
    struct Waiter {
        std::uint64_t amount;
        Tick since;
        Callback cb;
        Request kind;
    };

    // FIFO ring that keeps its storage, so waiting allocates nothing after warm-up.
    class WaitQueue {
      public:
        bool empty() const noexcept { return m_size == 0; }
        std::size_t size() const noexcept { return m_size; }
        Waiter& front() noexcept { return m_items[m_head]; }
        void pop_front() noexcept {
            m_head = (m_head + 1) & (m_items.size() - 1);
            --m_size;
        }
        void push_back(const Waiter& w);

      private:
        std::vector<Waiter> m_items;  // size is zero or a power of two
        std::size_t m_head = 0;
        std::size_t m_size = 0;
    };

    bool is_producer(Request k) const noexcept { return k == Request::reserve || k == Request::put; }
    bool can_grant(Request k, std::uint64_t n) const noexcept;
    void grant(Request k, std::uint64_t n);
    bool try_grant_now(Request k, std::uint64_t n);
    void enqueue(Request k, std::uint64_t n, Callback cb);
    void wake_waiters();

    Simulator& m_sim;
    std::string m_name;
    std::uint64_t m_capacity;
    std::uint64_t m_reserved = 0;
    std::uint64_t m_data = 0;
    std::uint64_t m_acquired = 0;
    WaitQueue m_producers;
    WaitQueue m_consumers;
    Counter m_own[4];  // the counters of an Unregistered buffer
    Counter& m_producer_wait;
    Counter& m_consumer_wait;
    Counter& m_committed;
    Counter& m_released;
};

}  // namespace mlsim
