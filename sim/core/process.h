#pragma once
// Processes written as C++20 coroutines.
//
//     Process load_tiles(Channel& hbm, BoundedBuffer& buf, int tiles) {
//         for (int i = 0; i < tiles; ++i) {
//             co_await buf.reserve(1);          // wait for a free half of the double buffer
//             co_await hbm.transfer(tile_bytes);
//             buf.commit(1);
//         }
//     }
//     sim.spawn(load_tiles(hbm, buf, 8));
//
// Promises: a Process starts suspended; sim.spawn(p) starts it at now() as an ordinary event and makes
// the simulator its owner. `co_await other_process(...)` runs a sub-process to completion and then
// continues, without a trip through the event queue. `co_await delay(d)` / `co_await wait_until(t)`
// resume the process at now() + d / t. Every awaitable puts only the coroutine handle (in a Callback)
// into the event queue or a wait list: no allocation per wait. The frame itself is allocated once,
// when the coroutine is called. An exception escaping a process propagates out of Simulator::run().
// Assumes: a Process is either spawned or awaited exactly once; objects a process refers to outlive
// it (or the simulator, for processes still suspended when the simulator is destroyed).
#include <coroutine>
#include <exception>
#include <utility>

#include "sim/core/callback.h"
#include "sim/core/check.h"
#include "sim/core/simulator.h"
#include "sim/core/time.h"

namespace mlsim {

class [[nodiscard]] Process {
  public:
    struct promise_type;
    using handle_type = std::coroutine_handle<promise_type>;

    struct FinalAwaiter {
        bool await_ready() const noexcept { return false; }
        std::coroutine_handle<> await_suspend(handle_type h) noexcept {
            promise_type& p = h.promise();
            if (p.continuation) return p.continuation;
            if (p.link.linked())  // a spawned root: nobody else will free the frame
                h.destroy();
            return std::noop_coroutine();
        }
        void await_resume() const noexcept {}
    };

    struct promise_type {
        Simulator* sim = nullptr;
        std::coroutine_handle<> continuation;
        detail::ProcessLink link;

        Process get_return_object() noexcept { return Process{handle_type::from_promise(*this)}; }
        std::suspend_always initial_suspend() const noexcept { return {}; }
        FinalAwaiter final_suspend() const noexcept { return {}; }
        void return_void() const noexcept {}
        // Rethrowing hands the exception to whoever resumed the coroutine: the event loop, and from
        // there the caller of run(). The frame counts as finished and is freed by its owner.
        void unhandled_exception() const { throw; }
        ~promise_type() { link.unlink(); }
    };

    Process(Process&& o) noexcept : m_handle(std::exchange(o.m_handle, {})) {}
    Process& operator=(Process&& o) noexcept {
        if (this != &o) {
            if (m_handle) m_handle.destroy();
            m_handle = std::exchange(o.m_handle, {});
        }
        return *this;
    }
    Process(const Process&) = delete;
    Process& operator=(const Process&) = delete;
    ~Process() {
        if (m_handle) m_handle.destroy();
    }

    bool done() const noexcept { return !m_handle || m_handle.done(); }

    struct ChildAwaiter {
        handle_type child;
        bool await_ready() const noexcept { return !child || child.done(); }
        std::coroutine_handle<> await_suspend(handle_type parent) const noexcept {
            child.promise().sim = parent.promise().sim;
            child.promise().continuation = parent;
            return child;
        }
        void await_resume() const noexcept {}
    };

    // Awaiting a process runs it to completion as part of the awaiting one.
    ChildAwaiter operator co_await() && noexcept { return ChildAwaiter{m_handle}; }

  private:
    friend class Simulator;
    explicit Process(handle_type h) noexcept : m_handle(h) {}
    handle_type m_handle;
};

inline void Simulator::spawn(Process process) {
    MLSIM_CHECK(process.m_handle && !process.m_handle.done(), "spawned an empty or finished process");
    Process::handle_type h = std::exchange(process.m_handle, {});
    Process::promise_type& p = h.promise();
    MLSIM_CHECK(!p.link.linked() && !p.continuation, "process spawned twice");
    p.sim = this;
    p.link.frame = h.address();
    p.link.next = m_processes.next;
    p.link.prev = &m_processes;
    m_processes.next->prev = &p.link;
    m_processes.next = &p.link;
    schedule_at(m_now, Callback::resume(h));
}

namespace detail {
struct DelayAwaiter {
    Tick amount;
    Phase phase;
    bool absolute;

    bool await_ready() const noexcept { return false; }
    void await_suspend(Process::handle_type h) const {
        Simulator* sim = h.promise().sim;
        MLSIM_CHECK(sim != nullptr, "delay awaited by a process that was never spawned");
        if (absolute)
            sim->schedule_at(amount, phase, Callback::resume(h));
        else
            sim->schedule_in(amount, phase, Callback::resume(h));
    }
    void await_resume() const noexcept {}
};
}  // namespace detail

// Resumes the awaiting process at now() + d (d = 0 yields to events already pending at now()).
inline detail::DelayAwaiter delay(Tick d, Phase phase = Phase::normal) { return {d, phase, false}; }
// Resumes the awaiting process at time t (not before now()).
inline detail::DelayAwaiter wait_until(Tick t, Phase phase = Phase::normal) { return {t, phase, true}; }

}  // namespace mlsim
