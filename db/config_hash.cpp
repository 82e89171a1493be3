// SHA-256 as specified in FIPS 180-4, written for config hashing (not for secrets: no constant-time care).
#include <array>
#include <bit>
#include <cstdint>
#include <string>

#include "db/results_db.h"

namespace mlsim::db {

namespace {

using u128 = unsigned __int128;

constexpr std::array<uint32_t, 64> first_primes() {
    std::array<uint32_t, 64> primes{};
    uint32_t found = 0;
    for (uint32_t n = 2; found < primes.size(); ++n) {
        bool prime = true;
        for (uint32_t d = 2; d * d <= n; ++d) prime = prime && n % d != 0;
        if (prime) primes[found++] = n;
    }
    return primes;
}

// Largest x with x^power <= value (power 2 or 3), by bisection.
constexpr uint64_t integer_root(u128 value, int power) {
    uint64_t lo = 0;
    uint64_t hi = uint64_t{1} << (power == 2 ? 40 : 36);
    while (lo < hi) {
        uint64_t mid = lo + (hi - lo + 1) / 2;
        u128 p = u128{mid} * mid;
        if (power == 3) p *= mid;
        if (p <= value)
            lo = mid;
        else
            hi = mid - 1;
    }
    return lo;
}

// The standard's constants are the first 32 fractional bits of square roots (initial hash) and cube
// roots (round constants) of the first primes; deriving them avoids transcribing 72 magic numbers.
constexpr std::array<uint32_t, 8> initial_hash() {
    std::array<uint32_t, 8> h{};
    auto primes = first_primes();
    for (size_t i = 0; i < h.size(); ++i)
        h[i] = static_cast<uint32_t>(integer_root(u128{primes[i]} << 64, 2));
    return h;
}

constexpr std::array<uint32_t, 64> round_constants() {
    std::array<uint32_t, 64> k{};
    auto primes = first_primes();
    for (size_t i = 0; i < k.size(); ++i)
        k[i] = static_cast<uint32_t>(integer_root(u128{primes[i]} << 96, 3));
    return k;
}

constexpr std::array<uint32_t, 8> k_initial_hash = initial_hash();
constexpr std::array<uint32_t, 64> k_round = round_constants();
static_assert(k_initial_hash[0] == 0x6a09e667u && k_round[0] == 0x428a2f98u && k_round[63] == 0xc67178f2u);

void compress(std::array<uint32_t, 8>& state, const unsigned char* block) {
    std::array<uint32_t, 64> w{};
    for (size_t t = 0; t < 16; ++t)
        w[t] = uint32_t{block[4 * t]} << 24 | uint32_t{block[4 * t + 1]} << 16 |
               uint32_t{block[4 * t + 2]} << 8 | uint32_t{block[4 * t + 3]};
    for (size_t t = 16; t < 64; ++t) {
        uint32_t s0 = std::rotr(w[t - 15], 7) ^ std::rotr(w[t - 15], 18) ^ (w[t - 15] >> 3);
        uint32_t s1 = std::rotr(w[t - 2], 17) ^ std::rotr(w[t - 2], 19) ^ (w[t - 2] >> 10);
        w[t] = w[t - 16] + s0 + w[t - 7] + s1;
    }
    auto [a, b, c, d, e, f, g, h] = state;
    for (size_t t = 0; t < 64; ++t) {
        uint32_t big_s1 = std::rotr(e, 6) ^ std::rotr(e, 11) ^ std::rotr(e, 25);
        uint32_t choose = (e & f) ^ (~e & g);
        uint32_t t1 = h + big_s1 + choose + k_round[t] + w[t];
        uint32_t big_s0 = std::rotr(a, 2) ^ std::rotr(a, 13) ^ std::rotr(a, 22);
        uint32_t majority = (a & b) ^ (a & c) ^ (b & c);
        uint32_t t2 = big_s0 + majority;
        h = g;
        g = f;
        f = e;
        e = d + t1;
        d = c;
        c = b;
        b = a;
        a = t1 + t2;
    }
    std::array<uint32_t, 8> add{a, b, c, d, e, f, g, h};
    for (size_t i = 0; i < 8; ++i) state[i] += add[i];
}

}  // namespace

std::string config_hash(const std::string& resolved_yaml) {
    std::array<uint32_t, 8> state = k_initial_hash;
    const auto* bytes = reinterpret_cast<const unsigned char*>(resolved_yaml.data());
    size_t size = resolved_yaml.size();
    size_t whole = size - size % 64;
    for (size_t off = 0; off < whole; off += 64) compress(state, bytes + off);

    // Tail: the remaining bytes, a 1 bit, zeros, and the message length in bits (big-endian), in one or two
    // blocks.
    std::array<unsigned char, 128> tail{};
    size_t rest = size - whole;
    for (size_t i = 0; i < rest; ++i) tail[i] = bytes[whole + i];
    tail[rest] = 0x80;
    size_t tail_len = rest + 1 + 8 <= 64 ? 64 : 128;
    uint64_t bits = static_cast<uint64_t>(size) * 8;
    for (size_t i = 0; i < 8; ++i) tail[tail_len - 1 - i] = static_cast<unsigned char>(bits >> (8 * i));
    for (size_t off = 0; off < tail_len; off += 64) compress(state, tail.data() + off);

    static constexpr char k_hex[] = "0123456789abcdef";
    std::string out;
    out.reserve(64);
    for (uint32_t word : state)
        for (int shift = 28; shift >= 0; shift -= 4) out += k_hex[(word >> shift) & 0xf];
    return out;
}

}  // namespace mlsim::db
