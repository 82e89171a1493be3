// The main demo: the same workloads on an edge GPU, datacenter accelerators and microcontrollers,
// written to one results database and summarized in one comparison table.
#include "experiment/demo.h"

#include <fmt/format.h>

#include <boost/program_options.hpp>
#include <iostream>

#include "cli/commands.h"
#include "cli/format.h"
#include "cli/parse_args.h"
#include "db/results_db.h"

namespace mlsim::cli {

namespace po = boost::program_options;

int cmd_demo(const Args& args) {
    std::string db_path = "results/demo.db";
    po::options_description desc("mlsim demo options");
    desc.add_options()("help,h", "show this help")("db", po::value(&db_path)->default_value(db_path),
                                                   "SQLite results database to append to");
    if (!parse(args, desc)) {
        std::cout << "usage: mlsim demo [--db FILE]\n\nRuns ResNet-50 (batch 1 and 32), GPT-2 XL decode, "
                     "DLRM and keyword spotting on edge, datacenter and microcontroller presets.\n\n"
                  << desc;
        return 0;
    }
    db::ResultsDb db(db_path);
    fmt::print(
        "mlsim demo: each device on its detailed model (systolic: TPU v4; GPU: the A100, H100 and Jetson "
        "presets; CPU: Xeon 8480+ and Orin's CPU cluster), else the roofline; per-layer rows in {}\n\n",
        db_path);
    fmt::print("{:<16} {:<18} {:>5} {:<5} {:>10} {:>12} {:>12} {:>10} {:>8} {:>6}\n", "model", "device",
               "batch", "dtype", "latency", "samples/s", "energy/smpl", "avg power", "compute", "util");
    int failed = 0;
    for (const exp::DemoPoint& p : exp::demo_points()) {
        const exp::DemoOutcome o = exp::run_demo_point(p, db);
        if (o.result) {
            const exp::ExperimentResult& r = *o.result;
            double compute_s = 0, flops = 0;
            for (const auto& l : r.layers) {
                if (l.bound == "compute") compute_s += l.time_s;
                flops += l.counts.flops;
            }
            const double b = static_cast<double>(p.batch);
            fmt::print("{:<16} {:<18} {:>5} {:<5} {:>10} {:>12.4g} {:>12} {:>10} {:>8} {:>6}\n", p.model,
                       p.device, p.batch, p.dtype, seconds(r.total_time_s), b / r.total_time_s,
                       si(r.total_energy_j / b, "J"), si(r.total_energy_j / r.total_time_s, "W"),
                       percent(compute_s / r.total_time_s),
                       percent(flops / r.total_time_s / r.info.peak_flops_per_s));
        } else {
            ++failed;
            std::string msg = o.error;
            const auto pos = msg.find("error: ");
            if (pos != std::string::npos) msg = msg.substr(pos + 7);
            fmt::print("{:<16} {:<18} {:>5} {:<5} -- {}\n", p.model, p.device, p.batch, p.dtype, msg);
        }
    }
    fmt::print(
        "\nRows: one per run in table 'runs', one per layer in 'layers' ({}). "
        "Plot: /usr/bin/python3 analysis/roofline.py {} --out results/plots\n",
        failed ? fmt::format("{} point(s) recorded as status 'error'", failed) : "all points ok", db_path);
    return 0;
}

}  // namespace mlsim::cli
