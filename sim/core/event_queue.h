#pragma once
// The pending-event priority queue: a 4-ary min-heap of 16-byte keys.
//
// Promises: pop order is by (time, phase, insertion sequence), so entries with equal time and phase
// leave first-in first-out and a run is bit-for-bit repeatable. Each key carries a 24-bit slot index
// that the owner (Simulator) uses to find the payload; the queue never looks at payloads. Pushing and
// popping allocate nothing once the heap has grown to its high-water mark (only the rare renumbering
// below takes temporary memory).
// Assumes: fewer than 2^24 entries are pending at once (checked); times are non-negative; top(), pop()
// and replace_top() are called on a non-empty queue only.
//
// The insertion sequence has 32 bits in the key. When it runs out, all pending keys are renumbered
// 0..n-1 in their current order; every comparison between pending keys is unchanged, so the heap stays
// valid and FIFO order survives. This costs O(n log n) once per 2^32 pushes.
#include <algorithm>
#include <cstdint>
#include <new>
#include <vector>

#include "sim/core/check.h"
#include "sim/core/time.h"

namespace mlsim {

// Lower phases run first among events at the same time. Any value 0..255 is a valid phase.
enum class Phase : std::uint8_t { first = 0, normal = 128, last = 255 };

class EventQueue {
  public:
    static constexpr unsigned k_slot_bits = 24;
    static constexpr unsigned k_sequence_bits = 32;
    static constexpr std::uint32_t k_max_slots = 1U << k_slot_bits;
    static constexpr std::uint64_t k_sequence_limit = 1ULL << k_sequence_bits;

    struct Entry {
        Tick time;
        Phase phase;
        std::uint32_t slot;
    };

    // `sequence_limit` exists so tests can force renumbering; keep the default otherwise.
    explicit EventQueue(std::uint64_t sequence_limit = k_sequence_limit) : m_sequence_limit(sequence_limit) {
        MLSIM_CHECK(sequence_limit >= 2 && sequence_limit <= k_sequence_limit, "bad sequence limit");
    }

    EventQueue(const EventQueue&) = delete;
    EventQueue& operator=(const EventQueue&) = delete;
    ~EventQueue() { release(m_storage); }

    bool empty() const noexcept { return m_size == 0; }
    std::size_t size() const noexcept { return m_size; }

    void push(Tick time, Phase phase, std::uint32_t slot) {
        const Key k = make_key(time, phase, slot);
        if (m_size == m_capacity) [[unlikely]]
            grow();
        sift_up(m_size++, k);
    }

    // pop() then push() in one pass: the hole left by the top walks down and the new key fills it.
    // This is what an event that schedules its successor costs.
    void replace_top(Tick time, Phase phase, std::uint32_t slot) {
        const Key k = make_key(time, phase, slot);
        sift_up(hole_to_leaf(m_size), k);
    }

    Entry top() const noexcept {
        const Key& k = m_heap[0];
        return Entry{Tick::from_ps(static_cast<std::int64_t>(k.time)),
                     static_cast<Phase>(k.order >> (k_sequence_bits + k_slot_bits)),
                     static_cast<std::uint32_t>(k.order & (k_max_slots - 1))};
    }

    Tick top_time() const noexcept { return Tick::from_ps(static_cast<std::int64_t>(m_heap[0].time)); }

    // Removes the top entry. The hole left at the root walks down to a leaf along the smaller children
    // and the last entry is dropped into it and sifted up: the last entry almost always belongs near
    // the bottom, so this skips the comparison against it on every level on the way down.
    void pop() noexcept {
        const std::size_t n = --m_size;
        if (n == 0) return;
        sift_up(hole_to_leaf(n), m_heap[n]);
    }

    void reserve(std::size_t n) {
        while (m_capacity < n) grow();
    }

  private:
    struct Key {
        std::uint64_t time;   // non-negative ps
        std::uint64_t order;  // phase:8 | sequence:32 | slot:24
    };
    static_assert(sizeof(Key) == 16);
    // Logical entry i lives at storage[i + k_pad]: the children 4i+1..4i+4 of any entry then fill one
    // 64-byte cache line, so each level of a sift costs at most one miss.
    static constexpr std::size_t k_pad = 3;
    static constexpr std::align_val_t k_align{64};
    static constexpr std::size_t k_prefetch_above = 32768;  // entries: 512 KiB of keys

    // Hides a value from the optimizer, which would otherwise turn the arithmetic selections that use it
    // back into branches, mispredicted half the time.
    template <class T>
    [[gnu::always_inline]] static T opaque(T v) noexcept {
        asm("" : "+r"(v));
        return v;
    }

    static bool less(const Key& a, const Key& b) noexcept {
        // Times almost always differ, so the branch is well predicted and the tie is rarely looked at.
        if (a.time != b.time) [[likely]]
            return a.time < b.time;
        return a.order < b.order;
    }

    [[gnu::always_inline]] Key make_key(Tick time, Phase phase, std::uint32_t slot) {
        MLSIM_CHECK(slot < k_max_slots, "event slot index exceeds 24 bits");
        if (m_next_sequence == m_sequence_limit) [[unlikely]]
            renumber();
        return Key{static_cast<std::uint64_t>(time.ps()),
                   (static_cast<std::uint64_t>(phase) << (k_sequence_bits + k_slot_bits)) |
                       (m_next_sequence++ << k_slot_bits) | slot};
    }

    // Moves the hole at the root down to a leaf of the heap h[0..n), always promoting the smaller child,
    // and returns where the hole ended. The key that fills it almost always belongs near the bottom, so
    // walking all the way down and sifting up a little beats comparing it on every level going down.
    [[gnu::always_inline]] std::size_t hole_to_leaf(std::size_t n) noexcept {
        Key* const h = m_heap;
        std::size_t i = 0;  // the hole
        std::size_t c = 1;  // its first child
        const bool prefetch = n > k_prefetch_above;
        while (c + 3 < n) {
            // Once the heap outgrows the L2 cache, fetch the four grandchild groups while this level is
            // compared: one of them is the next level's cache line. Below that size it only costs.
            const std::size_t gc = 4 * c + 1;
            if (prefetch && gc + 15 < n) {
                __builtin_prefetch(h + gc);
                __builtin_prefetch(h + gc + 4);
                __builtin_prefetch(h + gc + 8);
                __builtin_prefetch(h + gc + 12);
            }
            // Which child is smallest is a coin toss, so it is selected by arithmetic, not by branches,
            // and from times already in registers, so each level waits on one round of loads only.
            // Equal times are rare (a well-predicted branch); only they look at the order word.
            const Key* const g = h + c;
            const std::uint64_t t0 = g[0].time, t1 = g[1].time, t2 = g[2].time, t3 = g[3].time;
            std::size_t a, b;
            if (t0 != t1 && t2 != t3) [[likely]] {
                a = t1 < t0;
                b = 2 + (t3 < t2);
            } else {
                a = less(g[1], g[0]);
                b = 2 + less(g[3], g[2]);
            }
            a = opaque(a);
            b = opaque(b);
            const std::uint64_t ta = t0 ^ ((t0 ^ t1) & (std::uint64_t{0} - a));
            const std::uint64_t tb = t2 ^ ((t2 ^ t3) & (std::uint64_t{0} - (b & 1)));
            const std::size_t sel = opaque<std::size_t>(ta != tb ? tb < ta : less(g[b], g[a]));
            const std::size_t m = a ^ ((a ^ b) & (std::size_t{0} - sel));
            h[i] = g[m];
            i = c + m;
            c = 4 * i + 1;
        }
        if (c < n) {  // a last, partial group of children; their children lie beyond n
            std::size_t m = c;
            for (std::size_t j = c + 1; j < n; ++j)
                if (less(h[j], h[m])) m = j;
            h[i] = h[m];
            i = m;
        }
        return i;
    }

    [[gnu::always_inline]] void sift_up(std::size_t i, Key k) noexcept {
        Key* const h = m_heap;
        while (i > 0) {
            const std::size_t parent = (i - 1) / 4;
            if (!less(k, h[parent])) break;
            h[i] = h[parent];
            i = parent;
        }
        h[i] = k;
    }

    void grow() {
        const std::size_t cap = m_capacity == 0 ? 64 : 2 * m_capacity;
        Key* storage = static_cast<Key*>(::operator new((cap + k_pad) * sizeof(Key), k_align));
        for (std::size_t i = 0; i < m_size; ++i) storage[i + k_pad] = m_heap[i];
        release(m_storage);
        m_storage = storage;
        m_heap = storage + k_pad;
        m_capacity = cap;
    }

    static void release(Key* storage) noexcept {
        if (storage) ::operator delete(storage, k_align);
    }

    void renumber() {
        MLSIM_CHECK(m_size < m_sequence_limit, "more pending events than sequence numbers");
        std::vector<std::uint32_t> idx(m_size);
        for (std::uint32_t i = 0; i < idx.size(); ++i) idx[i] = i;
        std::sort(idx.begin(), idx.end(), [this](auto a, auto b) { return less(m_heap[a], m_heap[b]); });
        constexpr std::uint64_t seq_mask = ((1ULL << k_sequence_bits) - 1) << k_slot_bits;
        for (std::uint64_t rank = 0; rank < idx.size(); ++rank) {
            Key& k = m_heap[idx[rank]];
            k.order = (k.order & ~seq_mask) | (rank << k_slot_bits);
        }
        m_next_sequence = m_size;
    }

    Key* m_storage = nullptr;  // 64-byte aligned allocation
    Key* m_heap = nullptr;     // m_storage + k_pad
    std::size_t m_size = 0;
    std::size_t m_capacity = 0;
    std::uint64_t m_next_sequence = 0;
    std::uint64_t m_sequence_limit;
};

}  // namespace mlsim
