// The main demo: the same workloads on an edge GPU, datacenter accelerators and microcontrollers,
// written to one results database and summarized in one comparison table.
#include <fmt/format.h>

#include <boost/program_options.hpp>
#include <chrono>
#include <iostream>

#include "cli/commands.h"
#include "cli/experiment.h"
#include "cli/format.h"
#include "db/results_db.h"
#include "sim/config/loader.h"

namespace mlsim::cli {

namespace po = boost::program_options;

namespace {

struct DemoPoint {
    const char* model;
    const char* device;
    int64_t batch;
    int64_t seq;
    const char* dtype;
};

// Edge (Jetson Orin Nano), datacenter (A100, H100, TPU v4) and microcontrollers (STM32).
constexpr DemoPoint k_points[] = {
    {"resnet50", "jetson-orin-nano", 1, 0, "fp16"},   {"resnet50", "a100", 1, 0, "fp16"},
    {"resnet50", "h100", 1, 0, "fp16"},               {"resnet50", "tpu-v4", 1, 0, "bf16"},
    {"resnet50", "jetson-orin-nano", 32, 0, "fp16"},  {"resnet50", "a100", 32, 0, "fp16"},
    {"resnet50", "h100", 32, 0, "fp16"},              {"resnet50", "tpu-v4", 32, 0, "bf16"},
    {"gpt2-xl-decode", "jetson-orin-nano", 1, 1023, "fp16"}, {"gpt2-xl-decode", "a100", 1, 1023, "fp16"},
    {"gpt2-xl-decode", "h100", 1, 1023, "fp16"},      {"gpt2-xl-decode", "tpu-v4", 1, 1023, "bf16"},
    {"dlrm-mlperf", "jetson-orin-nano", 256, 0, "fp16"}, {"dlrm-mlperf", "a100", 256, 0, "fp16"},
    {"dlrm-mlperf", "h100", 256, 0, "fp16"},          {"dlrm-mlperf", "tpu-v4", 256, 0, "bf16"},
    {"ds-cnn-kws", "stm32f746", 1, 0, "int8"},        {"ds-cnn-kws", "stm32u575", 1, 0, "int8"},
    {"ds-cnn-kws", "jetson-orin-nano", 1, 0, "int8"},
};

}  // namespace

int cmd_demo(const Args& args) {
    std::string db_path = "results/demo.db";
    po::options_description desc("mlsim demo options");
    desc.add_options()("help,h", "show this help")("db", po::value(&db_path)->default_value(db_path),
                                                   "SQLite results database to append to");
    po::variables_map vm;
    po::store(po::command_line_parser(args).options(desc).run(), vm);
    if (vm.count("help")) {
        std::cout << "usage: mlsim demo [--db FILE]\n\nRuns ResNet-50 (batch 1 and 32), GPT-2 XL decode, "
                     "DLRM and keyword spotting on edge, datacenter and microcontroller presets.\n\n"
                  << desc;
        return 0;
    }
    po::notify(vm);
    db::ResultsDb db(db_path);
    fmt::print("mlsim demo: the roofline model, or the systolic model for devices with a systolic section "
               "(TPU v4); per-layer rows in {}\n\n",
               db_path);
    fmt::print("{:<16} {:<18} {:>5} {:<5} {:>10} {:>12} {:>12} {:>10} {:>8} {:>6}\n", "model", "device", "batch",
               "dtype", "latency", "samples/s", "energy/smpl", "avg power", "compute", "util");
    int failed = 0;
    for (const DemoPoint& p : k_points) {
        ExperimentOptions opt;
        opt.system = p.device;
        opt.model = p.model;
        opt.batch = p.batch;
        opt.seq = p.seq;
        opt.dtype = p.dtype;
        const auto t0 = std::chrono::steady_clock::now();
        try {
            ExperimentResult r = run_experiment(opt);
            const double wall = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
            db.record_run(r.info, to_rows(r.layers), wall);
            double compute_s = 0, flops = 0;
            for (const auto& l : r.layers) {
                if (l.bound == "compute") compute_s += l.time_s;
                flops += l.counts.flops;
            }
            const double b = static_cast<double>(p.batch);
            fmt::print("{:<16} {:<18} {:>5} {:<5} {:>10} {:>12.4g} {:>12} {:>10} {:>8} {:>6}\n", p.model, p.device,
                       p.batch, p.dtype, seconds(r.total_time_s), b / r.total_time_s, si(r.total_energy_j / b, "J"),
                       si(r.total_energy_j / r.total_time_s, "W"), percent(compute_s / r.total_time_s),
                       percent(flops / r.total_time_s / r.info.peak_flops_per_s));
        } catch (const cfg::UserError& e) {
            ++failed;
            const double wall = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
            db::RunInfo info;
            info.system = p.device;
            info.device = p.device;
            info.model = p.model;
            info.mode = "inference";
            info.dtype = p.dtype;
            info.batch = p.batch;
            info.seq = p.seq;
            // What was asked, so each failed point keeps its own config text and hash.
            cfg::Node req = cfg::Node::make_map(cfg::SourceLoc{"<demo>", 0, 0}, "experiment");
            req.set("system", cfg::Node::make_scalar(p.device, req.loc(), "experiment.system"));
            req.set("model", cfg::Node::make_scalar(p.model, req.loc(), "experiment.model"));
            set_workload_options(req, opt);
            cfg::Node root = cfg::Node::make_map(req.loc(), "");
            root.set("experiment", std::move(req));
            info.config_yaml = cfg::to_yaml(root);
            db.record_failed_run(info, e.what(), wall);
            std::string msg = e.what();
            const auto pos = msg.find("error: ");
            if (pos != std::string::npos) msg = msg.substr(pos + 7);
            fmt::print("{:<16} {:<18} {:>5} {:<5} -- {}\n", p.model, p.device, p.batch, p.dtype, msg);
        }
    }
    fmt::print("\nRows: one per run in table 'runs', one per layer in 'layers' ({}). "
               "Plot: /usr/bin/python3 analysis/roofline.py {} --out results/plots\n",
               failed ? fmt::format("{} point(s) recorded as status 'error'", failed) : "all points ok",
               db_path);
    return 0;
}

}  // namespace mlsim::cli
