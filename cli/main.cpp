// mlsim command line: dispatches subcommands and maps failures to exit statuses
// (0 ok, 2 user error with a located message, 1 internal error).
#include <fmt/format.h>

#include <boost/program_options/errors.hpp>
#include <cstdio>
#include <exception>
#include <new>
#include <string>
#include <string_view>
#include <vector>

#include "cli/commands.h"
#include "cli/warm_start.h"
#include "sim/config/error.h"
#include "sim/config/schema.h"
#include "sim/core/check.h"
#include "sim/version.h"

namespace {

const char* k_usage = R"(usage: mlsim <command> [options]

commands:
  run       simulate a model on a system and print per-layer time and energy
  sweep     run every point of a design-space sweep file into a results database
  validate  check config, model and topology files without simulating
  list      list device presets (mlsim list devices) or zoo models (mlsim list models)
  serve     serve LLM requests with continuous batching: TTFT, TPOT, throughput, energy per token
  compare   compare workloads on edge, datacenter and supercomputer systems (a table, the database, a report)
  demo      the built-in comparison (mlsim compare with its default file)
  collective  time a collective over a system's network for a range of sizes (nccl-tests style)

options:
  --help     this text; 'mlsim <command> --help' for a command's options
  --version  print the version

exit status: 0 success, 2 user error (bad config or input), 1 internal error
)";

}  // namespace

// mlsim-mpi compiles this file with MLSIM_MAIN renamed and wraps it in MPI start-up (mpi/main.cpp).
#ifndef MLSIM_MAIN
#define MLSIM_MAIN main
#define MLSIM_PLAIN_MAIN 1  // mlsim itself: commands may end the process at once on success
#endif

#ifdef MLSIM_PLAIN_MAIN
namespace {
// Before the static initialisers (priority 101, the first a program may use; glibc passes main's
// arguments to constructors): the pre-faulting of cli/warm_start.h, for the commands that warm start.
[[gnu::constructor(101)]] void early_warm_start(int argc, char** argv, char**) {
    if (argc < 2) return;
    const std::string_view cmd = argv[1];
    if (cmd == "--help" || cmd == "-h" || cmd == "help" || cmd == "--version") return;
    mlsim::cli::warm_start_early();
}
}  // namespace
#endif

int MLSIM_MAIN(int argc, char** argv) {
    std::vector<std::string> args(argv + 1, argv + argc);
    try {
        if (args.empty()) {
            std::fputs(k_usage, stderr);
            return 2;
        }
        const std::string cmd = args.front();
        if (cmd == "--help" || cmd == "-h" || cmd == "help") {
            std::fputs(k_usage, stdout);
            return 0;
        }
        if (cmd == "--version") {
            fmt::print("mlsim {}\n", mlsim::version());
            return 0;
        }
        const std::vector<std::string> rest(args.begin() + 1, args.end());
        mlsim::cli::warm_start();
#ifdef MLSIM_PLAIN_MAIN
        mlsim::cli::allow_fast_exit();
#endif
        if (cmd == "run") return mlsim::cli::cmd_run(rest);
        if (cmd == "sweep") return mlsim::cli::cmd_sweep(rest);
        if (cmd == "validate") return mlsim::cli::cmd_validate(rest);
        if (cmd == "list") return mlsim::cli::cmd_list(rest);
        if (cmd == "demo") return mlsim::cli::cmd_demo(rest);
        if (cmd == "compare") return mlsim::cli::cmd_compare(rest);
        if (cmd == "collective") return mlsim::cli::cmd_collective(rest);
        if (cmd == "serve") return mlsim::cli::cmd_serve(rest);
        const std::string near = mlsim::cfg::nearest(
            cmd, {"run", "sweep", "validate", "list", "demo", "compare", "collective", "serve"});
        fmt::print(stderr, "mlsim: error: unknown command '{}'{}\n{}", cmd,
                   near.empty() ? "" : fmt::format("; did you mean '{}'?", near), k_usage);
        return 2;
    } catch (const mlsim::cfg::UserError& e) {
        // An error that names no file follows from the command line's choices (a collective's algorithm, a
        // plan's size, a run's length): located there.
        const std::string_view message = e.what();
        fmt::print(stderr, "{}{}\n", message.starts_with("error: ") ? "<command line>: " : "", message);
        return 2;
    } catch (const boost::program_options::error& e) {
        fmt::print(stderr, "mlsim {}: error: {}\n", args.empty() ? "" : args.front(), e.what());
        return 2;
    } catch (const mlsim::InternalError& e) {
        fmt::print(stderr, "mlsim: {}\n", e.what());
        return 1;
    } catch (const std::bad_alloc&) {
        // What the run asked for did not fit the memory this process may use (an address-space limit, the
        // machine's memory): the user's to change, like a model that does not fit a device. A constant
        // message: formatting one could need the memory that just ran out.
        std::fputs(
            "mlsim: error: out of memory: this run needs more memory than the process may use (its "
            "address-space limit or the machine's); try a smaller model, batch, plan, sweep or --jobs\n",
            stderr);
        return 2;
    } catch (const std::exception& e) {
        fmt::print(stderr, "mlsim: internal error: {}\n", e.what());
        return 1;
    }
}
