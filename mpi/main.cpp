// mlsim-mpi: the mlsim command line, plus MPI when launched by mpirun (see mpi/sweep_mpi.h). Started any
// other way it is the plain mlsim: MPI_Init runs only when the launcher's environment says so.
#include <mpi.h>

#include <cstdio>
#include <cstdlib>

#include "mpi/sweep_mpi.h"

int mlsim_cli_main(int argc, char** argv);  // cli/main.cpp, compiled with MLSIM_MAIN=mlsim_cli_main

namespace {

// OpenMPI's mpirun sets OMPI_COMM_WORLD_SIZE; MPICH's hydra and PMIx launchers set PMI_SIZE / PMIX_RANK.
bool launched_by_mpirun() {
    return std::getenv("OMPI_COMM_WORLD_SIZE") || std::getenv("PMI_SIZE") || std::getenv("PMIX_RANK");
}

}  // namespace

int main(int argc, char** argv) {
    if (!launched_by_mpirun()) return mlsim_cli_main(argc, argv);
    int provided = 0;
    MPI_Init_thread(&argc, &argv, MPI_THREAD_FUNNELED, &provided);
    if (provided < MPI_THREAD_FUNNELED) {
        std::fputs("mlsim-mpi: the MPI library does not support threads (MPI_THREAD_FUNNELED)\n", stderr);
        MPI_Abort(MPI_COMM_WORLD, 1);
    }
    mlsim::exp::DistributedSweep backend = mlsim::mpi::make_backend();
    mlsim::exp::distributed_sweep() = &backend;
    const int rc = mlsim_cli_main(argc, argv);
    std::fflush(stdout);
    std::fflush(stderr);
    // A rank that failed may leave the others waiting for it: stop them all with its status.
    if (rc != 0) MPI_Abort(MPI_COMM_WORLD, rc);
    mlsim::exp::distributed_sweep() = nullptr;
    MPI_Finalize();
    return 0;
}
