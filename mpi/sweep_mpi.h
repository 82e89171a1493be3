#pragma once
// Sweeps over MPI (mlsim-mpi, built when CMake finds MPI): `mpirun -np N mlsim-mpi sweep FILE`.
//
// Contract:
// - Rank 0 owns the database; it hands point indices out one at a time (each other rank holds at most two
//   at once, so a rank that finishes early takes more: dynamic load balancing) and also simulates on
//   `--jobs` threads of its own. The other ranks simulate and send back what run_sweep() would commit for
//   a point: the run's info and layer rows (with levels and metrics), or the error, and the point's
//   sweep rows and failure identity. They never touch the database file.
// - Rank 0 commits the points in point order (results that arrive early wait), with the threaded path's
//   rules (exp::run_sweep: claims, repeats of an earlier point, failed points, the summary), so the database
//   holds the same rows for any number of ranks and any --jobs, apart from wall times, and its run_ids
//   follow the point order.
// - Resume: rank 0 reads the config hashes of the file's ok runs (and of its failed runs, unless
//   --retry-failed) once and broadcasts them; a rank that resolves a point to one of them skips the
//   simulation, and rank 0 links the existing run, as run_sweep() does.
// - One rank alone (mpirun -np 1) runs exp::run_sweep() on its --jobs threads.
// - Errors: a user error in a point is a failed run, as in run_sweep(); anything else stops the sweep and
//   mpi/main.cpp aborts every rank (MPI_Abort) with mlsim's exit status.
#include "experiment/sweep.h"

namespace mlsim::mpi {

// The backend for exp::distributed_sweep(); MPI must be initialised (MPI_THREAD_FUNNELED at least).
exp::DistributedSweep make_backend();

}  // namespace mlsim::mpi
