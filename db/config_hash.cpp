// SHA-256 as specified in FIPS 180-4, written for config hashing (not for secrets: no constant-time care).
#include <array>
#include <bit>
#include <cstdint>
#include <string>

#include "db/results_db.h"

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#include <cpuid.h>
#include <immintrin.h>
#define MLSIM_SHA_EXTENSIONS 1
#endif

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

void compress_portable(std::array<uint32_t, 8>& state, const unsigned char* blocks, size_t count) {
    for (size_t i = 0; i < count; ++i) compress(state, blocks + 64 * i);
}

#ifdef MLSIM_SHA_EXTENSIONS
// Whether the processor has the SHA extensions (CPUID leaf 7, EBX bit 29) and the SSSE3 and SSE4.1 shuffles
// and blends used around them (leaf 1, ECX bits 9 and 19): Intel 64 and IA-32 Architectures Software
// Developer's Manual, vol. 2A, CPUID.
bool has_sha_extensions() {
    unsigned a = 0, b = 0, c = 0, d = 0;
    if (!__get_cpuid(1, &a, &b, &c, &d) || !(c & (1u << 9)) || !(c & (1u << 19))) return false;
    if (__get_cpuid_max(0, nullptr) < 7) return false;
    __cpuid_count(7, 0, a, b, c, d);
    return (b & (1u << 29)) != 0;
}

// The same rounds through SHA256RNDS2 (two rounds on the state held as {A,B,E,F} and {C,D,G,H}, A in the
// highest lane, with two words of W + K in the low lanes), SHA256MSG1 and SHA256MSG2 (the message schedule's
// sigma0 and sigma1 parts for four words at once): Intel SDM vol. 2, and Gulley et al., "Intel SHA
// Extensions", Intel white paper 402097 (2013).
[[gnu::target("sha,sse4.1,ssse3")]] void compress_sha_extensions(std::array<uint32_t, 8>& state,
                                                                 const unsigned char* blocks, size_t count) {
    // Each 32-bit word of the block is big-endian.
    const __m128i big_endian = _mm_set_epi8(12, 13, 14, 15, 8, 9, 10, 11, 4, 5, 6, 7, 0, 1, 2, 3);
    // state[0..3] = a b c d and state[4..7] = e f g h (lane 0 first) to {A,B,E,F} and {C,D,G,H}.
    const __m128i badc =
        _mm_shuffle_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(state.data())), 0xB1);
    const __m128i hgfe =
        _mm_shuffle_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(state.data() + 4)), 0x1B);
    __m128i abef = _mm_alignr_epi8(badc, hgfe, 8);     // lanes f e b a
    __m128i cdgh = _mm_blend_epi16(hgfe, badc, 0xF0);  // lanes h g d c
    for (size_t block = 0; block < count; ++block, blocks += 64) {
        const __m128i abef_in = abef, cdgh_in = cdgh;
        // The schedule's words four at a time, the last four groups kept: group j in w[j % 4].
        __m128i w[4] = {};
        for (size_t j = 0; j < 16; ++j) {
            __m128i group;
            if (j < 4) {
                group = _mm_shuffle_epi8(_mm_loadu_si128(reinterpret_cast<const __m128i*>(blocks + 16 * j)),
                                         big_endian);
            } else {
                // W[t] = sigma1(W[t-2]) + W[t-7] + sigma0(W[t-15]) + W[t-16], for t = 4j .. 4j + 3.
                const __m128i minus7 = _mm_alignr_epi8(w[(j + 3) % 4], w[(j + 2) % 4], 4);
                group = _mm_sha256msg2_epu32(
                    _mm_add_epi32(_mm_sha256msg1_epu32(w[j % 4], w[(j + 1) % 4]), minus7), w[(j + 3) % 4]);
            }
            w[j % 4] = group;
            const __m128i wk = _mm_add_epi32(
                group, _mm_loadu_si128(reinterpret_cast<const __m128i*>(k_round.data() + 4 * j)));
            // Two rounds leave the old {A,B,E,F} as the new {C,D,G,H}: the registers swap roles twice.
            cdgh = _mm_sha256rnds2_epu32(cdgh, abef, wk);
            abef = _mm_sha256rnds2_epu32(abef, cdgh, _mm_shuffle_epi32(wk, 0x0E));
        }
        abef = _mm_add_epi32(abef, abef_in);
        cdgh = _mm_add_epi32(cdgh, cdgh_in);
    }
    const __m128i abef_lanes = _mm_shuffle_epi32(abef, 0x1B);  // lanes a b e f
    const __m128i ghcd = _mm_shuffle_epi32(cdgh, 0xB1);        // lanes g h c d
    _mm_storeu_si128(reinterpret_cast<__m128i*>(state.data()), _mm_blend_epi16(abef_lanes, ghcd, 0xF0));
    _mm_storeu_si128(reinterpret_cast<__m128i*>(state.data() + 4), _mm_alignr_epi8(ghcd, abef_lanes, 8));
}
#endif

using Compress = void (*)(std::array<uint32_t, 8>&, const unsigned char*, size_t);

Compress fastest_compress() {
#ifdef MLSIM_SHA_EXTENSIONS
    if (has_sha_extensions()) return compress_sha_extensions;
#endif
    return compress_portable;
}

std::string hash_with(const std::string& resolved_yaml, Compress compress_blocks) {
    std::array<uint32_t, 8> state = k_initial_hash;
    const auto* bytes = reinterpret_cast<const unsigned char*>(resolved_yaml.data());
    size_t size = resolved_yaml.size();
    size_t whole = size - size % 64;
    compress_blocks(state, bytes, whole / 64);

    // Tail: the remaining bytes, a 1 bit, zeros, and the message length in bits (big-endian), in one or two
    // blocks.
    std::array<unsigned char, 128> tail{};
    size_t rest = size - whole;
    for (size_t i = 0; i < rest; ++i) tail[i] = bytes[whole + i];
    tail[rest] = 0x80;
    size_t tail_len = rest + 1 + 8 <= 64 ? 64 : 128;
    uint64_t bits = static_cast<uint64_t>(size) * 8;
    for (size_t i = 0; i < 8; ++i) tail[tail_len - 1 - i] = static_cast<unsigned char>(bits >> (8 * i));
    compress_blocks(state, tail.data(), tail_len / 64);

    static constexpr char k_hex[] = "0123456789abcdef";
    std::string out;
    out.reserve(64);
    for (uint32_t word : state)
        for (int shift = 28; shift >= 0; shift -= 4) out += k_hex[(word >> shift) & 0xf];
    return out;
}

}  // namespace

std::string config_hash(const std::string& resolved_yaml) {
    static const Compress compress_blocks = fastest_compress();
    return hash_with(resolved_yaml, compress_blocks);
}

std::string config_hash_portable(const std::string& resolved_yaml) {
    return hash_with(resolved_yaml, compress_portable);
}

}  // namespace mlsim::db
