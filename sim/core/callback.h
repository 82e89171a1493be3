#pragma once
// A fixed-size, allocation-free callable used for every event, completion and wake-up in the engine.
//
// Promises: a Callback is 24 bytes, trivially copyable and never allocates. It holds either a small
// trivially copyable callable (at most 16 bytes: a lambda capturing a pointer or two, a pointer and an
// integer, a coroutine handle) or nothing. Member functions are bound at compile time through a
// template argument: `callback<&Dma::on_done>(this)` or `callback<&Dma::on_tile>(this, index)`, so the
// call inlines and no std::function is involved.
// Assumes: whatever the stored callable points at outlives the event that holds it.
#include <coroutine>
#include <cstdint>
#include <new>
#include <type_traits>

namespace mlsim {

class Callback {
  public:
    static constexpr std::size_t k_capacity = 16;

    constexpr Callback() noexcept = default;

    template <class F>
    requires(!std::is_same_v<std::remove_cvref_t<F>, Callback> && std::is_invocable_v<std::decay_t<F>&>)
        Callback(F&& f)
    noexcept {  // NOLINT: implicit so that a lambda can be passed where a Callback is taken
        using Fd = std::decay_t<F>;
        static_assert(sizeof(Fd) <= k_capacity, "callable too big for a Callback: capture a pointer instead");
        static_assert(alignof(Fd) <= alignof(std::uint64_t), "callable over-aligned for a Callback");
        static_assert(std::is_trivially_copyable_v<Fd> && std::is_trivially_destructible_v<Fd>,
                      "a Callback stores only trivially copyable callables (pointers, integers, handles)");
        if constexpr (sizeof(Fd) <= k_capacity) {  // keeps a failed assertion the only diagnostic
            ::new (static_cast<void*>(m_storage)) Fd(static_cast<F&&>(f));
            m_fn = &invoke_stored<Fd>;
        }
    }

    static Callback resume(std::coroutine_handle<> h) noexcept {
        return Callback{[h] { h.resume(); }};
    }

    explicit operator bool() const noexcept { return m_fn != nullptr; }
    // Empties the callback; cheaper than assigning Callback{} since the storage is left as it was.
    void reset() noexcept { m_fn = nullptr; }

    // Calls the stored callable. The callable may be stateful (mutable lambda); state changes stay in
    // this copy.
    void operator()() { m_fn(m_storage); }

  private:
    using Fn = void (*)(void*);

    template <class F>
    static void invoke_stored(void* storage) {
        (*std::launder(static_cast<F*>(storage)))();
    }

    Fn m_fn = nullptr;
    alignas(std::uint64_t) unsigned char m_storage[k_capacity] = {};
};

static_assert(sizeof(Callback) == 24 && std::is_trivially_copyable_v<Callback>);

// Binds `obj->*Member()` without allocation; the member pointer is a compile-time constant.
template <auto Member, class T>
Callback callback(T* obj) noexcept {
    return Callback{[obj] { (obj->*Member)(); }};
}

// Binds `obj->*Member(arg)`, e.g. a tile index or a request id.
template <auto Member, class T>
Callback callback(T* obj, std::uint64_t arg) noexcept {
    return Callback{[obj, arg] { (obj->*Member)(arg); }};
}

}  // namespace mlsim
