#pragma once
// Sweeps over MPI (mlsim-mpi, built when CMake finds MPI): `mpirun -np N mlsim-mpi sweep FILE`.
//
// Contract:
// - Rank 0 owns the database and runs the threaded sweep's writer (exp::write_sweep,
//   experiment/sweep_writer.h), the other ranks being its remote workers: it hands point indices out one at
//   a time (each other rank holds at most 24 at once and gets a new one for each result it sends, so a rank
//   that finishes early takes more: dynamic load balancing). Rank 0's own thread is the writer first: it
//   receives, commits (once 32 points are ready in order, or none is left to simulate), and simulates a point
//   itself otherwise (so 2 ranks on 2 cores keep both cores busy without a third thread competing with the
//   writer); each `--jobs` beyond 1 adds a simulating thread on rank 0. The other ranks simulate and send
//   back what the writer commits for a point (exp::PointOutcome): the run's info and layer rows (with levels
//   and metrics), or the error, and the point's sweep rows and failure identity. They never touch the
//   database file. A worker on rank 0's node writes each result into a ring of its own in MPI-3 shared
//   memory (MLSIM_MPI_RING_BYTES, default 2 MiB; 0: none) and sends rank 0 a notice of where it lies; rank 0
//   reads it there. Other workers, and a result that finds its ring full, send it as a message.
// - Rank 0 commits the points in point order (results that arrive early wait), with the threaded sweep's
//   writer and rules (claims, repeats of an earlier point, failed points, the summary), so the database holds
//   the same rows, ids included, for any number of ranks and any --jobs, and as `mlsim sweep` writes them,
//   apart from wall times.
// - Resume: rank 0 reads the config hashes of the file's ok runs (and of its failed runs, unless
//   --retry-failed) once and broadcasts them; a rank that resolves a point to one of them skips the
//   simulation, and rank 0 links the existing run, as run_sweep() does.
// - One rank alone (mpirun -np 1) is rank 0 with no other rank: its thread simulates every point between
//   its batched commits (plus --jobs - 1 simulating threads), the same writer as with more ranks.
// - Errors: a user error in a point is a failed run, as in run_sweep(); anything else stops the sweep and
//   mpi/main.cpp aborts every rank (MPI_Abort) with mlsim's exit status.
#include "experiment/sweep.h"

namespace mlsim::mpi {

// The backend for exp::distributed_sweep(); MPI must be initialised (MPI_THREAD_FUNNELED at least).
exp::DistributedSweep make_backend();

}  // namespace mlsim::mpi
