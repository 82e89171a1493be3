#include "experiment/demo.h"

#include <chrono>

#include "sim/config/error.h"
#include "sim/config/loader.h"

namespace mlsim::exp {

const std::vector<DemoPoint>& demo_points() {
    // Edge (Jetson Orin Nano), datacenter (A100, H100, TPU v4), CPUs (Xeon 8480+, Orin's Cortex-A78AE
    // cluster) and microcontrollers (STM32).
    static const std::vector<DemoPoint> points = {
        {"resnet50", "jetson-orin-nano", 1, 0, "fp16"},
        {"resnet50", "a100", 1, 0, "fp16"},
        {"resnet50", "h100", 1, 0, "fp16"},
        {"resnet50", "tpu-v4", 1, 0, "bf16"},
        {"resnet50", "jetson-orin-nano", 32, 0, "fp16"},
        {"resnet50", "a100", 32, 0, "fp16"},
        {"resnet50", "h100", 32, 0, "fp16"},
        {"resnet50", "tpu-v4", 32, 0, "bf16"},
        {"gpt2-xl-decode", "jetson-orin-nano", 1, 1023, "fp16"},
        {"gpt2-xl-decode", "a100", 1, 1023, "fp16"},
        {"gpt2-xl-decode", "h100", 1, 1023, "fp16"},
        {"gpt2-xl-decode", "tpu-v4", 1, 1023, "bf16"},
        {"dlrm-mlperf", "jetson-orin-nano", 256, 0, "fp16"},
        {"dlrm-mlperf", "a100", 256, 0, "fp16"},
        {"dlrm-mlperf", "h100", 256, 0, "fp16"},
        {"dlrm-mlperf", "tpu-v4", 256, 0, "bf16"},
        {"ds-cnn-kws", "stm32f746", 1, 0, "int8"},
        {"ds-cnn-kws", "stm32u575", 1, 0, "int8"},
        {"ds-cnn-kws", "jetson-orin-nano", 1, 0, "int8"},
        // CPUs (the detailed CPU model): a server socket with AMX and an edge cluster.
        {"resnet50", "xeon-8480", 1, 0, "bf16"},
        {"resnet50", "xeon-8480", 32, 0, "bf16"},
        {"gpt2-xl-decode", "xeon-8480", 1, 1023, "bf16"},
        {"ds-cnn-kws", "orin-cpu", 1, 0, "int8"},
    };
    return points;
}

ExperimentOptions demo_options(const DemoPoint& p) {
    ExperimentOptions opt;
    opt.system = p.device;
    opt.model = p.model;
    opt.batch = p.batch;
    opt.seq = p.seq;
    opt.dtype = p.dtype;
    return opt;
}

DemoOutcome run_demo_point(const DemoPoint& p, db::ResultsDb& db) {
    const ExperimentOptions opt = demo_options(p);
    const auto t0 = std::chrono::steady_clock::now();
    const auto wall = [&] {
        return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    };
    DemoOutcome out;
    try {
        out.result = run_experiment(opt);
    } catch (const cfg::UserError& e) {
        out.error = e.what();
    }
    if (out.result) {
        db.record_run(out.result->info, to_rows(out.result->layers), wall());
        return out;
    }
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
    db.record_failed_run(info, out.error, wall());
    return out;
}

}  // namespace mlsim::exp
