// Start-up page-fault avoidance (cli/warm_start.h).
#include "cli/warm_start.h"

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <iostream>
#include <string_view>
#include <vector>

#if defined(__has_feature)
#if __has_feature(address_sanitizer) || __has_feature(memory_sanitizer) || __has_feature(thread_sanitizer)
#define MLSIM_WARM_START_SANITIZED 1
#endif
#endif
#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
#define MLSIM_WARM_START_SANITIZED 1
#endif

#if defined(__linux__) && defined(__GLIBC__) && !defined(MLSIM_WARM_START_SANITIZED)
#define MLSIM_WARM_START_ENABLED 1
#include <link.h>
#include <malloc.h>
#include <sys/mman.h>
#include <unistd.h>
#endif

namespace mlsim::cli {

#ifdef MLSIM_WARM_START_ENABLED
namespace {

constexpr std::uintptr_t k_small_page = 4096;
constexpr std::uintptr_t k_huge_page = std::uintptr_t{2} << 20;  // x86-64 / arm64 (4 KiB base) PMD size
// What a sweep's writer heap fits in (a 2,000-point ResNet-50 sweep's rank 0 peaks at 60-65 MB). A short run
// touches only the window's first megabytes; the rest is address space. 8 MiB left a 2-rank MPI sweep's rank
// 0 with 8,500-9,600 page faults of ~11 us each on a virtual machine (4 KiB first touches), 64 MiB with
// 1,600-2,100, and 8 alternated rounds ran 9 % faster for one rank and for two (bench/README.md, twentieth
// round). glibc keeps up to this much free memory at the heap's top (M_TOP_PAD) instead of returning it.
constexpr std::size_t k_heap_window = std::size_t{64} << 20;

#ifndef MADV_POPULATE_READ
#define MADV_POPULATE_READ 22  // Linux 5.14, include/uapi/asm-generic/mman-common.h
#endif
#ifndef MADV_POPULATE_WRITE
#define MADV_POPULATE_WRITE 23
#endif

void* volatile g_kept[2] = {};  // the blocks that move the heap's top (huge_heap)

std::uintptr_t align_down(std::uintptr_t v, std::uintptr_t a) { return v & ~(a - 1); }
std::uintptr_t align_up(std::uintptr_t v, std::uintptr_t a) { return align_down(v + a - 1, a); }

// Pre-fault the executable's own loaded segments with one call each instead of one trap per page.
int populate_segment(dl_phdr_info* info, std::size_t, void*) {
    if (info->dlpi_name != nullptr && info->dlpi_name[0] != '\0') return 0;  // the main program only
    // The writable segment starts with the relocation read-only part (PT_GNU_RELRO), made read-only
    // before main: populated for reading, and the rest of the segment for writing, one call each.
    std::uintptr_t relro_lo = 0, relro_hi = 0;
    for (int i = 0; i < info->dlpi_phnum; ++i) {
        const ElfW(Phdr)& ph = info->dlpi_phdr[i];
        if (ph.p_type != PT_GNU_RELRO) continue;
        relro_lo = align_down(info->dlpi_addr + ph.p_vaddr, k_small_page);
        relro_hi = align_down(info->dlpi_addr + ph.p_vaddr + ph.p_memsz, k_small_page);  // mprotect's end
    }
    for (int i = 0; i < info->dlpi_phnum; ++i) {
        const ElfW(Phdr)& ph = info->dlpi_phdr[i];
        if (ph.p_type != PT_LOAD) continue;
        std::uintptr_t lo = align_down(info->dlpi_addr + ph.p_vaddr, k_small_page);
        const std::uintptr_t hi = align_up(info->dlpi_addr + ph.p_vaddr + ph.p_memsz, k_small_page);
        if (!(ph.p_flags & PF_W)) {
            (void)madvise(reinterpret_cast<void*>(lo), hi - lo, MADV_POPULATE_READ);  // old kernels: EINVAL
            continue;
        }
        if (relro_lo == lo && relro_hi > lo && relro_hi < hi) {
            (void)madvise(reinterpret_cast<void*>(lo), relro_hi - lo, MADV_POPULATE_READ);
            lo = relro_hi;
        }
        if (madvise(reinterpret_cast<void*>(lo), hi - lo, MADV_POPULATE_WRITE) != 0) {
            // The segment starts with the relocation read-only part (RELRO, made read-only after start):
            // the rest page by page.
            for (std::uintptr_t page = lo; page < hi; page += k_small_page) {
                if (madvise(reinterpret_cast<void*>(page), k_small_page, MADV_POPULATE_WRITE) != 0)
                    (void)madvise(reinterpret_cast<void*>(page), k_small_page, MADV_POPULATE_READ);
            }
        }
    }
    return 1;
}

// Moves glibc's heap top to a 2 MiB boundary inside a 64 MiB window marked MADV_HUGEPAGE, so that the
// first megabytes a run allocates cost a few huge-page faults instead of one fault per 4 KiB page.
void huge_heap() {
    // The heap glibc has so far (its first ~132 KiB, from the static initialisers): once the heap moves to
    // the window, glibc puts the unused rest of it in its free lists and serves the run's first small
    // blocks from there, one fault per 4 KiB page (a dozen in a ResNet-50 run): populated in one call.
    // (Where the heap stays, its blocks come from there anyway.)
    if (void* brk = sbrk(0); brk != reinterpret_cast<void*>(-1)) {
        const std::uintptr_t end = reinterpret_cast<std::uintptr_t>(brk);
        const std::size_t arena = mallinfo2().arena;  // bytes glibc took with sbrk, ending at the break
        if (arena > 0 && arena <= end) {
            const std::uintptr_t lo = align_down(end - arena, k_small_page);
            (void)madvise(reinterpret_cast<void*>(lo), end - lo, MADV_POPULATE_WRITE);
        }
    }
    // Only where transparent huge pages may be used on request.
    if (std::FILE* f = std::fopen("/sys/kernel/mm/transparent_hugepage/enabled", "r")) {
        char buf[64] = {};
        const std::size_t n = std::fread(buf, 1, sizeof buf - 1, f);
        std::fclose(f);
        buf[n] = '\0';
        const std::string_view mode(buf);
        if (mode.find("[never]") != std::string_view::npos) return;
    } else {
        return;
    }
    // The next growth of the heap is at least the window, so the window is one mapping; blocks up to the
    // window's size come from the heap while it is set up.
    if (mallopt(M_TOP_PAD, static_cast<int>(k_heap_window + 2 * k_huge_page)) == 0) return;
    if (mallopt(M_MMAP_THRESHOLD, static_cast<int>(2 * k_huge_page)) == 0) return;
    struct Restore {
        ~Restore() { mallopt(M_MMAP_THRESHOLD, 128 * 1024); }  // glibc's default
    } restore;
    void* cur = sbrk(0);
    if (cur == reinterpret_cast<void*>(-1)) return;
    const std::uintptr_t base = reinterpret_cast<std::uintptr_t>(cur);
    const std::uintptr_t target = align_up(base, k_huge_page);
    // Move the program break to a boundary: glibc sees a foreign sbrk at its next growth and starts its
    // new top chunk there. The skipped bytes are address space only (never touched, never resident).
    if (target > base && sbrk(static_cast<intptr_t>(target - base)) == reinterpret_cast<void*>(-1)) return;
    // Make glibc grow the heap with a block larger than whatever is left of its old top chunk (below the
    // mmap threshold set above): it lands at the boundary and touches only the boundary's first page.
    void* first = std::malloc(k_huge_page / 2);
    if (first == nullptr) return;
    const std::uintptr_t at = reinterpret_cast<std::uintptr_t>(first);
    const std::uintptr_t window = target + k_huge_page;
    if (at < target || at + k_huge_page / 2 >= window) {
        std::free(first);  // not where expected (another allocator): leave the heap as it is
        return;
    }
    // Mark the window before anything touches it, then fill the rest of the boundary's first huge page
    // with one block that is never freed (address space only), so the next chunk starts in the window.
    void* end = sbrk(0);
    const std::uintptr_t top = align_down(reinterpret_cast<std::uintptr_t>(end), k_huge_page);
    if (top <= window || madvise(reinterpret_cast<void*>(window), top - window, MADV_HUGEPAGE) != 0) return;
    const std::uintptr_t used = at + malloc_usable_size(first);   // the end of the first block
    constexpr std::uintptr_t k_header = 2 * sizeof(std::size_t);  // glibc's chunk header
    // Kept for the process's life, untouched; stored where the compiler cannot prove it unused (an
    // allocation whose result is never read may be removed).
    if (window > used + 2 * k_header) g_kept[1] = std::malloc(window - used - k_header);
    g_kept[0] = first;
    // `first` is kept as well: freed, it would serve the run's small blocks below the window. M_TOP_PAD
    // stays: glibc keeps that much at the top when it trims, so the window is never given back.
}

// The stack below main: a run's deepest calls reach a few tens of KiB down, and each new 4 KiB page is
// a fault. Populated in one call, within the stack mapping the kernel sets up (at least 128 KiB; a
// range outside it fails with ENOMEM and populates nothing, hence the smaller retry).
[[gnu::noinline]] void populate_stack() {
    volatile char here = 0;  // in this frame, just below main's
    const std::uintptr_t top = align_down(reinterpret_cast<std::uintptr_t>(&here), k_small_page);
    for (std::uintptr_t span : {std::uintptr_t{96} << 10, std::uintptr_t{48} << 10})
        if (madvise(reinterpret_cast<void*>(top - span), span, MADV_POPULATE_WRITE) == 0) return;
}

}  // namespace

namespace {
bool g_early_done = false;  // constant-initialised: valid before the static initialisers run
}  // namespace

void warm_start_early() {
    if (g_early_done) return;
    g_early_done = true;
    if (std::getenv("MLSIM_NO_WARM_START") != nullptr) return;
    dl_iterate_phdr(populate_segment, nullptr);
    populate_stack();
}

void warm_start() {
    if (std::getenv("MLSIM_NO_WARM_START") != nullptr) return;
    warm_start_early();
    huge_heap();
}
#else
void warm_start_early() {}
void warm_start() {}
#endif

namespace {
bool g_fast_exit_allowed = false;
}

void allow_fast_exit() { g_fast_exit_allowed = true; }

void fast_exit(int status) {
#ifdef MLSIM_WARM_START_SANITIZED
    (void)status;
#else
    if (!g_fast_exit_allowed) return;
    std::cout.flush();
    std::cerr.flush();
    std::fflush(nullptr);
    std::_Exit(status);
#endif
}

}  // namespace mlsim::cli
