// `mlsim compare [FILE]` and `mlsim demo`: workloads on edge, datacenter and supercomputer systems, one
// row per pair, in a table, the results database and a report folder (report.md and plots, written by
// analysis/compare_report.py).
#include "experiment/compare.h"

#include <fmt/format.h>
#include <sys/wait.h>
#include <unistd.h>

#include <boost/program_options.hpp>
#include <filesystem>
#include <iostream>
#include <system_error>

#include "cli/commands.h"
#include "cli/compare_table.h"
#include "cli/parse_args.h"
#include "cli/progress.h"
#include "db/results_db.h"

namespace mlsim::cli {

namespace po = boost::program_options;
namespace fs = std::filesystem;

namespace {

// Runs /usr/bin/python3 SCRIPT ARGS... (no shell); returns its exit status.
int run_python(const std::vector<std::string>& argv) {
    std::fflush(stdout);
    std::fflush(stderr);
    const pid_t pid = fork();
    if (pid < 0) return -1;
    if (pid == 0) {
        std::vector<char*> args;
        args.push_back(const_cast<char*>("/usr/bin/python3"));
        for (const std::string& a : argv) args.push_back(const_cast<char*>(a.c_str()));
        args.push_back(nullptr);
        execv("/usr/bin/python3", args.data());
        _exit(127);
    }
    int status = 0;
    if (waitpid(pid, &status, 0) < 0) return -1;
    return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

int compare_command(const std::string& command, const Args& args, std::string db_path,
                    std::string report_dir) {
    std::string file;
    bool no_report = false, quiet = false;
    po::options_description desc(fmt::format("mlsim {} options", command));
    desc.add_options()("help,h", "show this help and the compare file's keys")(
        "db", po::value(&db_path)->default_value(db_path), "SQLite results database to append to")(
        "report", po::value(&report_dir)->default_value(report_dir),
        "folder for report.md and the plots (analysis/compare_report.py)")(
        "no-report", po::bool_switch(&no_report), "write no report folder")(
        "quiet,q", po::bool_switch(&quiet), "no progress bar");
    po::positional_options_description pos;
    if (command == "compare") {
        desc.add_options()("file", po::value(&file), "compare file (default: configs/compare/default.yaml)");
        pos.add("file", 1);
    }
    if (!parse(args, desc, &pos)) {
        std::cout
            << fmt::format("usage: mlsim {}{} [--db FILE] [--report DIR]\n\n", command,
                           command == "compare" ? " [FILE]" : "")
            << "Runs workloads (model, mode, batch or latency target, parallel plan) on systems (an MCU, an "
               "edge board, a CPU, datacenter GPUs and a TPU, a DGX node, a cluster) and compares latency, "
               "throughput, energy per sample, power against TDP, samples per joule, cost and time to "
               "train. Without FILE: "
            << exp::default_compare_path() << ".\n\n"
            << desc << "\nCompare file keys (configs/README.md, \"A compare file\"):\n"
            << cfg::describe(exp::compare_schema());
        return 0;
    }
    const cfg::SourceLoc command_line{"<command line>", 0, 0};
    if (db_path.empty()) cfg::fail(command_line, "--db", "needs a file name, found an empty string");
    if (report_dir.empty() && !no_report)
        cfg::fail(command_line, "--report", "needs a folder, found an empty string");
    if (file.empty()) file = exp::default_compare_path();
    const exp::CompareStudy study = exp::load_compare(file);
    // The report folder is made before the study runs: a path that cannot be a folder (a file there or above
    // it, no permission) is a user error now, not a failed report after every pair has run.
    if (!no_report) {
        std::error_code ec;
        fs::create_directories(report_dir, ec);
        if (ec || !fs::is_directory(report_dir))
            cfg::fail(command_line, "--report",
                      fmt::format("cannot make the report folder '{}': {}", report_dir,
                                  ec ? ec.message() : "a file of that name is in the way"));
    }
    db::ResultsDb db(db_path);
    const auto pairs = study.pairs();
    const auto count = [](std::size_t n, const char* what) {
        return fmt::format("{} {}{}", n, what, n == 1 ? "" : "s");
    };
    fmt::print("mlsim compare: {} ({} x {}, {}){}\n", study.name, count(study.workloads.size(), "workload"),
               count(study.systems.size(), "system"), count(pairs.size(), "pair"),
               study.description.empty() ? "" : fmt::format("\n  {}", study.description));
    Progress progress(quiet ? nullptr : stderr, isatty(fileno(stderr)) != 0, pairs.size(), "compare",
                      "pairs");
    exp::CompareOptions options;
    options.db = &db;
    options.progress = [&](std::size_t done, std::size_t, const std::string&, const std::string&) {
        progress.update(done, 0, false);
    };
    exp::CompareOutcome outcome;
    try {
        outcome = exp::run_compare(study, options);
    } catch (...) {
        progress.interrupt();
        throw;
    }
    progress.update(pairs.size(), 0, true);
    fmt::print("\n{}", compare_table(outcome.rows));
    fmt::print("\n{}", compare_legend());
    fmt::print("\nRows: table 'comparisons' (compare_id {}) and each pair's run in 'runs' / 'layers' of {}\n",
               outcome.compare_id, db_path);
    if (no_report) return 0;
    const fs::path script = fs::path(exp::configs_dir()).parent_path() / "analysis" / "compare_report.py";
    if (!fs::is_regular_file(script)) {
        fmt::print(stderr, "mlsim {}: error: no report script at {} (--no-report skips the report)\n",
                   command, script.string());
        return 1;
    }
    const int status = run_python(
        {script.string(), db_path, "--compare-id", std::to_string(outcome.compare_id), "--out", report_dir});
    if (status != 0) {
        fmt::print(stderr, "mlsim {}: error: the report script failed (exit {}): /usr/bin/python3 {} {}\n",
                   command, status, script.string(), db_path);
        return 1;
    }
    return 0;
}

}  // namespace

int cmd_compare(const Args& args) {
    return compare_command("compare", args, "results/compare.db", "results/compare");
}

// The main demo: the built-in comparison (configs/compare/default.yaml).
int cmd_demo(const Args& args) { return compare_command("demo", args, "results/demo.db", "results/compare"); }

}  // namespace mlsim::cli
