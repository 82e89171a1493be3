// The mlsim command line under another name, for mpi/main.cpp to call after MPI start-up.
#define MLSIM_MAIN mlsim_cli_main
#include "cli/main.cpp"  // NOLINT(bugprone-suspicious-include): one main, two binaries
