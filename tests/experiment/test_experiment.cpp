// End-to-end: configs + zoo + roofline device + results database, through the same code path as `mlsim run`.
#include <sqlite3.h>

#include <catch2/catch.hpp>
#include <cmath>
#include <cstdlib>
#include <filesystem>
#include <string>
#include <vector>

#include "arch/roofline/roofline.h"
#include "arch/systolic/scalesim_convention.h"
#include "db/results_db.h"
#include "experiment/experiment.h"
#include "experiment/run_options.h"
#include "experiment/sweep.h"
#include "sim/config/error.h"
#include "tests/experiment/query.h"

using namespace mlsim;
namespace fs = std::filesystem;

namespace {

exp::ExperimentOptions options(const char* system, const char* model, const char* dtype, int64_t batch = 1) {
    exp::ExperimentOptions o;
    o.system = system;
    o.model = model;
    o.dtype = dtype;
    o.batch = batch;
    return o;
}

// All `layers` rows of a run, as text, without the run id (the table's first column).
std::vector<std::string> layer_rows(const std::string& db_path, int64_t run_id) {
    std::vector<std::string> rows = mlsim::test::query(
        db_path, "SELECT * FROM layers WHERE run_id = " + std::to_string(run_id) + " ORDER BY idx");
    for (std::string& r : rows) r.erase(0, r.find('|') + 1);
    return rows;
}

}  // namespace

TEST_CASE(
    "ResNet-50 at batch 32 on the A100: most convolutions are compute-bound, norms and activations "
    "memory-bound") {
    const auto r = exp::run_experiment(options("a100", "resnet50", "fp16", 32));
    int conv = 0, conv_compute = 0, eltwise = 0, eltwise_memory = 0;
    double flops = 0;
    for (const auto& l : r.layers) {
        flops += l.counts.flops;
        if (l.op == "conv2d") {
            ++conv;
            conv_compute += l.bound == "compute";
        }
        if (l.op == "batchnorm" || l.op == "relu") {
            ++eltwise;
            eltwise_memory += l.bound == "memory";
        }
    }
    CHECK(conv_compute * 3 > conv * 2);
    CHECK(eltwise_memory == eltwise);
    CHECK(r.total_time_s > flops / 312e12);
    CHECK(r.info.peak_flops_per_s == Approx(312e12));
}

TEST_CASE("GPT-2 XL decode at batch 1 is memory-bound on every datacenter preset") {
    for (const char* dev : {"a100", "h100"}) {
        const auto r = exp::run_experiment(options(dev, "gpt2-xl-decode", "fp16"));
        double memory_s = 0;
        for (const auto& l : r.layers)
            if (l.bound == "memory") memory_s += l.time_s;
        INFO(dev);
        CHECK(memory_s > 0.9 * r.total_time_s);
        // Every token streams all weights: time at least weights / bandwidth.
        CHECK(r.total_time_s >= r.model.totals().weight_bytes / r.info.mem_bandwidth_Bps);
    }
}

TEST_CASE("Every roofline layer respects the bound, with non-negative energy and consistent times") {
    for (const char* model : {"resnet50", "mobilenetv2", "bert-base", "gpt2-small-prefill", "dlrm-mlperf"}) {
        const auto r = exp::run_experiment(options("h100", model, "fp16"));
        double t = 0;
        for (const auto& l : r.layers) {
            INFO(model << " " << l.name);
            CHECK(l.start_s == Approx(t).margin(1e-15));
            CHECK(l.time_s >= arch::roofline_bound(r.system.device, r.model.ops()[l.idx]).bound_s());
            CHECK(l.energy_compute_j >= 0);
            CHECK(l.energy_memory_j >= 0);
            CHECK(l.energy_static_j >= 0);
            CHECK(l.utilization <= 1.0 + 1e-12);
            t = l.end_s;
        }
    }
}

TEST_CASE("A device without the requested data type is a user error") {
    CHECK_THROWS_AS(exp::run_experiment(options("stm32f746", "ds-cnn-kws", "bf16")), cfg::UserError);
}

TEST_CASE("Data types are listed once: device peaks, --dtype and sweep files take wl::dtype_names()") {
    CHECK(arch::known_dtypes() == wl::dtype_names());
    const cfg::Param* dtype = nullptr;
    for (const cfg::Param& p : exp::sweep_base_schema().params)
        if (p.name == "dtype") dtype = &p;
    REQUIRE(dtype != nullptr);
    CHECK(dtype->choices == wl::dtype_names());
    auto o = options("a100", "lenet5", "fp12");
    try {
        exp::run_experiment(o);
        FAIL("expected a UserError");
    } catch (const cfg::UserError& e) {
        CHECK(std::string(e.what()).find("expected one of: fp32, tf32, bf16, fp16, fp8, int16, int8, int4;") !=
              std::string::npos);
    }
}

TEST_CASE("int16 runs on the TPU v1, which declares an int16 peak: 2-byte words, at the int16 peak") {
    const auto r16 = exp::run_experiment(options("tpu-v1", "mlp3", "int16"));
    const auto r8 = exp::run_experiment(options("tpu-v1", "mlp3", "int8"));
    CHECK(r16.info.dtype == "int16");
    CHECK(r16.info.peak_flops_per_s == Approx(22.94e12));
    REQUIRE(r16.layers.size() == r8.layers.size());
    double bytes16 = 0, bytes8 = 0;
    for (std::size_t i = 0; i < r16.layers.size(); ++i) {
        INFO(r16.layers[i].name);
        CHECK(r16.layers[i].dtype == "int16");
        bytes16 += r16.layers[i].bytes_read + r16.layers[i].bytes_written;
        bytes8 += r8.layers[i].bytes_read + r8.layers[i].bytes_written;
    }
    // Every word is twice as wide; the buffers then hold half as many, so refetches differ a little.
    CHECK(bytes16 == Approx(2 * bytes8).epsilon(0.01));
    CHECK(r16.total_time_s > r8.total_time_s);
    CHECK(r16.resolved_yaml.find("dtype: int16") != std::string::npos);
}

TEST_CASE("A model that does not fit in the device memory is a user error naming both") {
    try {
        exp::run_experiment(options("stm32f746", "gpt2-xl-decode", "int8"));
        FAIL("expected a UserError");
    } catch (const cfg::UserError& e) {
        const std::string msg = e.what();
        CHECK(msg.find("does not fit") != std::string::npos);
        CHECK(msg.find("gpt2") != std::string::npos);
    }
}

TEST_CASE(
    "Training lowers the model into backward and optimizer ops with more than twice the forward FLOPs") {
    auto inf = exp::run_experiment(options("a100", "mlp3", "fp16", 64));
    auto opt = options("a100", "mlp3", "fp16", 64);
    opt.mode = "training";
    auto tr = exp::run_experiment(opt);
    CHECK(tr.layers.size() > inf.layers.size());
    double f_inf = 0, f_tr = 0;
    for (const auto& l : inf.layers) f_inf += l.counts.flops;
    for (const auto& l : tr.layers) f_tr += l.counts.flops;
    CHECK(f_tr > 2.2 * f_inf);  // backward skips the first layer's input gradient: 1 + 1.25 + optimizer
}

TEST_CASE("Rerunning the same command produces identical layers rows and the same config hash") {
    const fs::path dir = fs::temp_directory_path() / "mlsim_test_rerun";
    fs::remove_all(dir);
    const std::string path = (dir / "rerun.db").string();
    int64_t ids[2];
    std::string hashes[2];
    for (int i = 0; i < 2; ++i) {
        const auto r = exp::run_experiment(options("a100", "resnet50", "fp16", 8));
        db::ResultsDb db(path);
        ids[i] = db.record_run(r.info, exp::to_rows(r.layers), 0.0);
        hashes[i] = r.info.config_hash;
    }
    CHECK(ids[0] != ids[1]);
    CHECK(hashes[0] == hashes[1]);
    const auto a = layer_rows(path, ids[0]);
    const auto b = layer_rows(path, ids[1]);
    REQUIRE(a.size() > 50);
    CHECK(a == b);
    fs::remove_all(dir);
}

TEST_CASE("Changing a config value changes the resolved config and its hash") {
    const auto a = exp::run_experiment(options("a100", "lenet5", "fp16", 1));
    const auto b = exp::run_experiment(options("a100", "lenet5", "fp16", 2));
    CHECK(a.info.config_hash != b.info.config_hash);
    CHECK(a.resolved_yaml.find("batch: 1") != std::string::npos);
}

TEST_CASE("SCALE-Sim inputs: a .cfg and a topology CSV run end to end with each layer at SCALE-Sim's count") {
    const std::string data = std::string(MLSIM_SOURCE_DIR) + "/tests/arch/data/";
    exp::ExperimentOptions o = options("", "", "");  // no --dtype: the .cfg's only type, int8
    o.system = data + "google.cfg";
    o.model = data + "Resnet18.csv";
    exp::set_run_option(o, "convention", "scalesim");
    const auto r = exp::run_experiment(o);
    REQUIRE(r.info.device_model == "systolic");
    CHECK(r.info.dtype == "int8");
    REQUIRE(r.layers.size() == 21);
    int64_t total = 0;
    for (const auto& l : r.layers) {
        const auto g = r.model.ops()[l.idx].gemm();
        REQUIRE(g.has_value());
        // google.cfg is weight-stationary, 256x256.
        const int64_t expect =
            arch::systolic::scalesim_cycles(arch::systolic::Dataflow::ws, {256, 256}, {g->m, g->n, g->k})
                .count();
        INFO(l.name);
        CHECK(l.cycles == expect);
        CHECK(l.stall_cycles == 0);
        total += l.cycles;
    }
    CHECK(total == 222312);  // the figure README.md reports for ws
    o.device_overrides.clear();
    exp::set_run_option(o, "convention", "faithful");
    const auto f = exp::run_experiment(o);
    CHECK(f.info.config_hash != r.info.config_hash);
    for (const auto& l : f.layers) {
        INFO(l.name);
        CHECK(l.time_s >= arch::roofline_bound(f.system.device, f.model.ops()[l.idx]).bound_s());
    }
}

TEST_CASE("A fidelity choice on a device without a systolic section is a user error") {
    auto o = options("a100", "lenet5", "fp16");
    exp::set_run_option(o, "fidelity", "cycle");
    try {
        exp::run_experiment(o);
        FAIL("expected a UserError");
    } catch (const cfg::UserError& e) {
        CHECK(std::string(e.what()) ==
              "<command line>: error: --fidelity: device 'a100' has no systolic section, so "
              "device.systolic.fidelity cannot be set");
    }
}
