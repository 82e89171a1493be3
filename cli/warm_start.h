#pragma once
// Start-up cost of a short run: on a virtual machine a page fault costs 10-30 us, and a ResNet-50 run
// touches about 300 pages (its heap, its data and the parts of the binary it executes) - more CPU time
// than the simulation itself. warm_start() cuts the faults, with no effect on any result:
// - the executable's loaded segments are pre-faulted with one madvise(MADV_POPULATE_READ / _WRITE) call
//   each (Linux >= 5.14; older kernels ignore it), the relocation read-only part (PT_GNU_RELRO) of the
//   writable one for reading, the rest for writing;
// - so are the 96 KiB of stack below main and the heap glibc holds before main (its unused rest serves
//   a run's first small blocks), which cost a ResNet-50 run about 20 faults before;
// - glibc's heap top is moved to a 2 MiB boundary inside a 64 MiB window marked MADV_HUGEPAGE, so the
//   first megabytes allocated are served by transparent huge pages where the kernel offers them on
//   request (transparent_hugepage/enabled = madvise or always).
// It does nothing under the sanitizers (their allocators own the heap), off Linux/glibc, or when the
// environment variable MLSIM_NO_WARM_START is set (bench/bench_startup.py compares both).
// Call it once, first thing in main, before any other thread exists.
//
// At the other end, a run's results (a few hundred layers, their strings and metric vectors) cost about
// 1 M instructions to free at exit, for nothing: fast_exit(status) flushes stdout and stderr and ends
// the process at once. It does so only where the program's own main allowed it (allow_fast_exit():
// mlsim, not mlsim-mpi, which must finalize MPI, nor the tests, which call commands in-process) and
// the build has no sanitizer (LeakSanitizer checks at a normal exit); otherwise it returns.
//
// warm_start_early() does the pre-faulting alone (no heap): mlsim's main.cpp calls it from a constructor
// that runs before the static initialisers (init_array priority 101), which would otherwise fault in
// some 20 pages of code and data one at a time; warm_start() then skips that part.
namespace mlsim::cli {
void warm_start_early();
void warm_start();
void allow_fast_exit();
void fast_exit(int status);
}  // namespace mlsim::cli
