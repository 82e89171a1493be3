// `mlsim sweep`: options, help (generated from the sweep schema), dry run and summary.
#include <fmt/format.h>
#include <unistd.h>

#include <algorithm>
#include <boost/program_options.hpp>
#include <chrono>
#include <filesystem>
#include <iostream>

#include "cli/commands.h"
#include "cli/parse_args.h"
#include "cli/progress.h"
#include "experiment/run_options.h"
#include "experiment/sweep.h"
#include "sim/config/limits.h"

namespace mlsim::cli {

namespace fs = std::filesystem;
namespace po = boost::program_options;
using exp::Sweep;

namespace {

std::string join(const std::vector<std::string>& items, std::string_view sep) {
    std::string out;
    for (std::size_t i = 0; i < items.size(); ++i) out += (i ? std::string(sep) : "") + items[i];
    return out;
}

const char* k_sweep_example = R"(example (configs/sweeps/resnet50-array.yaml, 6 x 3 x 4 = 72 points):

  name: resnet50-array        # the sweep's name in the database; default: the file name
  base:
    system: tpu-v4            # a preset, or a system/device file relative to this file
    model: resnet50
    batch: 1
    dtype: bf16
  zip:                        # each group's lists move together (equal lengths)
    - device.systolic.rows: [8, 16, 32, 64, 128, 256]
      device.systolic.cols: [8, 16, 32, 64, 128, 256]
      # the peak must follow the array (8 arrays x rows x cols x 2 x 1.049 GHz)
      device.peak.bf16: [1.0742TFLOP/s, 4.2968TFLOP/s, 17.187TFLOP/s, 68.748TFLOP/s, 275TFLOP/s, 1100TFLOP/s]
      device.peak.int8: [1.0742TOP/s, 4.2968TOP/s, 17.187TOP/s, 68.748TOP/s, 275TOP/s, 1100TOP/s]
  factors:                    # Cartesian product; axes in file order, the first varies slowest
    device.systolic.dataflow: [os, ws, is]
    device.systolic.buffers.ifmap.capacity: [64KiB, 256KiB, 1MiB, 4MiB]

key paths: an experiment key of `base`, the options of `mlsim run`
(@KEYS@),
or a path into the loaded system document: device.<key> or system.<key>, with [i] for list items
(device.clock, device.peak.bf16, device.memory[0].capacity, device.systolic.dataflow,
device.systolic.buffers.ifmap.capacity, system.count). Device keys are listed by `mlsim run --help`.
A factor with one value is a fixed override. Each overridden device is validated again: a bad value is
reported at its line in this file.

results: one `runs` row (and its `layers`) per point in the database, plus `sweeps` (sweep_name,
point, run_id, config_hash, factors_json) and `sweep_factors` (sweep_name, run_id, factor, value,
value_num), written in the same transaction. A point whose resolved config already has an ok run is
skipped, so rerunning an interrupted sweep finishes it. A point that fails with a user error (the model
does not fit, the data type is not supported) is recorded with status 'error' and the sweep goes on;
reruns skip it unless --retry-failed. Exit status: 0 when the sweep ran (failed points are results),
2 for a bad sweep file or database, or when every point failed, 1 for an internal error. More: configs/sweeps/README.md.
)";

// Streams the table: column widths come from each factor's values, so no row is held in memory and a
// sweep of millions of points prints in constant space.
void print_points(const Sweep& sweep) {
    std::vector<std::string> header{"point"};
    std::vector<std::size_t> width{std::max<std::size_t>(5, std::to_string(sweep.point_count() - 1).size())};
    for (const exp::SweepAxis& a : sweep.axes)
        for (const exp::SweepFactor& f : a.factors) {
            header.push_back(f.path);
            width.push_back(f.path.size());
        }
    // The widest value of each factor: every value of an axis appears in one point per value, the
    // axis's digit times the product of the later axes' sizes.
    {
        std::size_t column = 1, stride = sweep.point_count();
        for (const exp::SweepAxis& a : sweep.axes) {
            stride /= a.size();
            for (std::size_t v = 0; v < a.size(); ++v) {
                const std::vector<std::string> values = exp::point_values(sweep, v * stride);
                for (std::size_t f = 0; f < a.factors.size(); ++f)
                    width[column + f] = std::max(width[column + f], values[column - 1 + f].size());
            }
            column += a.factors.size();
        }
    }
    auto print_row = [&](const std::vector<std::string>& row) {
        std::string line;
        for (std::size_t c = 0; c < row.size(); ++c)
            line +=
                c == 0 ? fmt::format("{:>{}}", row[c], width[c]) : fmt::format("  {:<{}}", row[c], width[c]);
        while (!line.empty() && line.back() == ' ') line.pop_back();
        fmt::print("{}\n", line);
    };
    print_row(header);
    for (std::size_t i = 0; i < sweep.point_count(); ++i) {
        std::vector<std::string> row{std::to_string(i)};
        for (std::string& v : exp::point_values(sweep, i)) row.push_back(std::move(v));
        print_row(row);
    }
}

std::string axes_text(const Sweep& sweep) {
    std::vector<std::string> parts;
    for (const exp::SweepAxis& a : sweep.axes) {
        std::vector<std::string> names;
        for (const exp::SweepFactor& f : a.factors) names.push_back(f.path);
        parts.push_back(
            fmt::format("{} {}", a.zipped ? join(names, " + ") + " (zipped)" : names.front(), a.size()));
    }
    return parts.empty() ? "no factors: the base experiment only" : join(parts, " x ");
}

}  // namespace

int cmd_sweep(const Args& args) {
    std::string file, db_path;
    int jobs = 1;
    std::size_t max_points = limits::default_max_sweep_points;
    bool dry_run = false, retry_failed = false, quiet = false;
    po::options_description desc("mlsim sweep options");
    desc.add_options()("help,h", "show this help and the sweep file format")("file", po::value(&file),
                                                                             "the sweep file (YAML)")(
        "db", po::value(&db_path), "results database; default results/<sweep name>.db")(
        "jobs,j", po::value(&jobs)->default_value(1),
        "points simulated in parallel (threads; under mpirun, threads on rank 0 besides the other ranks)")(
        "dry-run,n", po::bool_switch(&dry_run),
        "check the sweep file and every point, list the points, run nothing")(
        "retry-failed", po::bool_switch(&retry_failed), "rerun points recorded as failed by an earlier run")(
        "max-points", po::value(&max_points)->default_value(limits::default_max_sweep_points),
        ("refuse a sweep of more points than this (checking alone takes up to 0.4 ms a point); at "
         "most " +
         std::to_string(limits::hard_max_sweep_points))
            .c_str())("quiet,q", po::bool_switch(&quiet), "no progress output, only the summary");
    po::positional_options_description pos;
    pos.add("file", 1);
    const std::optional<po::variables_map> vm = parse(args, desc, &pos);
    if (!vm) {
        std::vector<std::string> names;
        for (const exp::RunOption& e : exp::run_options()) names.push_back(e.name());
        std::string example = k_sweep_example;
        example.replace(example.find("@KEYS@"), 6, join(names, ", "));
        std::cout << "usage: mlsim sweep FILE [--db FILE] [--jobs N] [--dry-run] [--retry-failed]\n\n"
                  << "Runs every point of a design-space sweep and appends the results to a database.\n\n"
                  << desc << "\nSweep file keys:\n"
                  << cfg::describe(exp::sweep_schema()) << "\n"
                  << example;
        return 0;
    }
    if (file.empty()) {
        fmt::print(stderr, "mlsim sweep: error: no sweep file given (mlsim sweep --help)\n");
        return 2;
    }
    const cfg::SourceLoc command_line{"<command line>", 0, 0};
    if (jobs < 1 || jobs > limits::max_jobs)
        cfg::fail(command_line, "--jobs",
                  fmt::format("must be from 1 to {} (simulating threads), found {}", limits::max_jobs, jobs));
    if (max_points < 1 || max_points > limits::hard_max_sweep_points)
        cfg::fail(
            command_line, "--max-points",
            fmt::format("must be between 1 and {}, found {}", limits::hard_max_sweep_points, max_points));
    if (vm->count("db") && db_path.empty())
        cfg::fail(command_line, "--db", "needs a file name, found an empty string");

    const Sweep sweep = exp::load_sweep(file);
    exp::check_point_count(sweep, max_points);
    const std::size_t n = sweep.point_count();
    // Under mpirun (mlsim-mpi): every rank checks the points; only rank 0 prints and owns the database.
    exp::DistributedSweep* const mpi = dry_run ? nullptr : exp::distributed_sweep();
    if (mpi && mpi->rank != 0) quiet = true;
    const bool tty = !quiet && isatty(fileno(stderr));
    // The points' systems with their overrides applied, kept from checking them for running them.
    const auto overridden = std::make_shared<exp::OverrideCache>();
    const exp::SystemCache systems = [&] {
        // Every point is resolved before any runs: a bar once that takes a second.
        Progress checking(quiet ? nullptr : stderr, tty, n, "checking", "points");
        try {
            exp::SystemCache checked = exp::check_points(
                sweep, max_points, [&](std::size_t done, std::size_t) { checking.update(done, 0, false); },
                overridden.get());
            checking.update(n, 0, true);
            return checked;
        } catch (...) {
            checking.interrupt();
            throw;
        }
    }();
    if (dry_run) {
        fmt::print("sweep '{}': {} point{} ({}); all check out\n", sweep.name, n, n == 1 ? "" : "s",
                   axes_text(sweep));
        print_points(sweep);
        return 0;
    }
    if (mpi && mpi->rank != 0) {
        mpi->work(sweep, systems, overridden);
        return 0;
    }
    if (db_path.empty()) db_path = (fs::path("results") / (sweep.name + ".db")).string();
    db::ResultsDb db(db_path);
    exp::check_sweep_history(sweep, db);
    db.checkpoint_in_background();  // the writer's commits do not wait for the log to be copied
    if (mpi)
        fmt::print("sweep '{}': {} point{} ({}), {} MPI rank{} ({} job{} on rank 0), database {}\n",
                   sweep.name, n, n == 1 ? "" : "s", axes_text(sweep), mpi->ranks, mpi->ranks == 1 ? "" : "s",
                   jobs, jobs == 1 ? "" : "s", db_path);
    else
        fmt::print("sweep '{}': {} point{} ({}), {} job{}, database {}\n", sweep.name, n, n == 1 ? "" : "s",
                   axes_text(sweep), jobs, jobs == 1 ? "" : "s", db_path);
    std::fflush(stdout);

    exp::SweepRunOptions o;
    o.jobs =
        static_cast<int>(std::min<std::size_t>(static_cast<std::size_t>(jobs), std::max<std::size_t>(n, 1)));
    o.retry_failed = retry_failed;
    o.overridden = overridden;
    Progress progress(quiet ? nullptr : stderr, tty, n);
    o.progress = [&](const exp::SweepProgress& p) { progress.update(p.done, p.failed, p.final); };
    o.progress_interval = std::chrono::milliseconds(tty ? 100 : 250);
    exp::SweepSummary s;
    try {
        s = mpi ? mpi->coordinate(sweep, systems, db, o) : exp::run_sweep(sweep, systems, db, o);
    } catch (...) {
        progress.interrupt();  // the error message starts on a line of its own
        throw;
    }

    std::string skipped;
    if (s.skipped) skipped += fmt::format(", {} skipped (already in the database)", s.skipped);
    if (s.recorded_elsewhere)
        skipped += fmt::format(" (of which {} simulated here, recorded first by another process)",
                               s.recorded_elsewhere);
    if (s.repeated)
        skipped += fmt::format(
            " (of which {} repeat an earlier point's configuration: one run, in `sweeps` at "
            "its first point)",
            s.repeated);
    if (s.failed_before)
        skipped += fmt::format(", {} skipped (failed before; --retry-failed reruns them)", s.failed_before);
    fmt::print("done: {} points in {:.2f} s ({:.1f} points/s): {} run{}, {} failed\n", s.points, s.wall_s,
               s.wall_s > 0 ? static_cast<double>(s.points) / s.wall_s : 0.0, s.ran, skipped, s.failed);
    for (const std::string& e : s.errors) fmt::print("  failed: {}\n", e);
    for (const std::string& r : s.repeat_examples) fmt::print("  repeated: {}\n", r);
    if (s.repeated > s.repeat_examples.size())
        fmt::print("  ... and {} more repeated points\n", s.repeated - s.repeat_examples.size());
    if (s.failed > s.errors.size())
        fmt::print("  ... and {} more failed points\n", s.failed - s.errors.size());
    // Every point failed: the file describes nothing that runs (a plan for another system, a data type the
    // device lacks, a model that fits nowhere). The failures are recorded; the exit status says so.
    if (s.failed > 0 && s.failed == s.points) {
        std::fflush(stdout);
        fmt::print(stderr,
                   "{}: error: every point of the sweep failed (recorded as failed runs); the first: {}\n",
                   file, s.errors.empty() ? std::string("-") : s.errors.front());
        return 2;
    }
    return 0;
}

}  // namespace mlsim::cli
