// The parallel plan as experiment options: checked against the system, lowered, its memory checked, and
// absent from the resolved config when not given (single-device runs keep their config hashes).
#include <catch2/catch.hpp>

#include "experiment/experiment.h"
#include "experiment/run_options.h"
#include "sim/config/error.h"

using namespace mlsim;

namespace {

exp::ExperimentOptions dgx(const std::string& model) {
    exp::ExperimentOptions o;
    o.system = std::string(MLSIM_SOURCE_DIR) + "/configs/systems/dgx-a100.yaml";
    o.model = model;
    o.dtype = "fp16";
    return o;
}

std::string error_of(const exp::ExperimentOptions& o) {
    try {
        exp::prepare_experiment(o);
    } catch (const cfg::UserError& e) {
        return e.what();
    }
    return "no error";
}

}  // namespace

TEST_CASE("a parallel plan is lowered and its memory kept; none leaves the config as it was", "[parallel]") {
    exp::ExperimentOptions o = dgx("gpt2-small-prefill");
    o.mode = "training";
    o.seq = 128;
    o.batch = 8;
    const exp::PreparedExperiment single = [&] {
        exp::ExperimentOptions one = o;
        one.system = "a100";
        return exp::prepare_experiment(one);
    }();
    CHECK(single.result->parallel == nullptr);
    CHECK(single.result->resolved_yaml.find("parallel") == std::string::npos);

    exp::set_run_option(o, "data-parallel", "2");
    exp::set_run_option(o, "tensor-parallel", "4");
    exp::set_run_option(o, "zero", "1");
    exp::set_run_option(o, "microbatches", "2");
    const exp::PreparedExperiment p = exp::prepare_experiment(o);
    REQUIRE(p.result->parallel != nullptr);
    const wl::ParallelLowering& l = *p.result->parallel;
    CHECK(l.ranks() == 8);
    CHECK(l.microbatch_size == 2);
    REQUIRE(l.memory.size() == 1);
    CHECK(l.memory[0].total_bytes > 0);
    CHECK(p.result->resolved_yaml.find("tensor: 4") != std::string::npos);
}

TEST_CASE("plan errors from the command line name the flag", "[parallel]") {
    exp::ExperimentOptions o = dgx("llama3-70b-prefill");
    o.seq = 128;
    exp::set_run_option(o, "tensor-parallel", "3");
    CHECK_THAT(error_of(o),
               Catch::Contains("<command line>: error: --parallel: data x tensor x pipeline = 1 x 3 x 1 "
                               "= 3 ranks, but the system has 8 device(s)"));
    o = dgx("llama3-70b-prefill");
    o.seq = 128;
    exp::set_run_option(o, "data-parallel", "8");
    exp::set_run_option(o, "zero", "5");
    CHECK_THAT(error_of(o), Catch::Contains("--zero: must be 0, 1, 2 or 3, found 5"));
    // Training Llama-3-70B on 8 data-parallel A100s: each rank holds all 70.6 B parameters' states.
    o = dgx("llama3-70b-prefill");
    o.seq = 128;
    o.batch = 8;
    o.mode = "training";
    exp::set_run_option(o, "data-parallel", "8");
    CHECK_THAT(error_of(o),
               Catch::Contains("--parallel: rank 0 (pipeline stage 0 of 1, layers 0-79) needs") &&
                   Catch::Contains("its device 'a100' has") && Catch::Contains("GB over"));
}

TEST_CASE("a plan and sharded tables run on a system's devices but its hosts", "[parallel]") {
    // pcie-4gpu: 4 x a100, then a xeon-8380 node marked `host: true`. A plan's ranks are the four A100s (rank
    // r on device r), the host idle; a plan that counts the host as a rank is refused, naming it.
    const auto pcie = [](int64_t data, int64_t batch) {
        exp::ExperimentOptions o;
        o.system = std::string(MLSIM_SOURCE_DIR) + "/configs/systems/pcie-4gpu.yaml";
        o.model = "mlp3";
        o.mode = "training";
        o.dtype = "fp32";
        o.batch = batch;
        exp::set_run_option(o, "data-parallel", std::to_string(data));
        return o;
    };
    const exp::ExperimentResult four = exp::run_experiment(pcie(4, 8));
    REQUIRE(four.parallel != nullptr);
    CHECK(four.parallel->ranks() == 4);
    REQUIRE(four.parallel_run.has_value());
    // The run's TDP is the four A100s' (400 W each), not with the host's 270 W.
    CHECK(four.info.tdp_W == Approx(4 * four.system.device.tdp_W));
    CHECK(four.system.type_of(four.system.devices[4]).name == "xeon-8380");
    for (const int64_t d : {5, 3})
        CHECK_THAT(
            error_of(pcie(d, 30)),
            Catch::Contains(std::to_string(d) + " ranks, but the system has 4 device(s) besides its host "
                                                "(1 x xeon-8380), which run no rank"));

    exp::ExperimentOptions o;
    o.system = std::string(MLSIM_SOURCE_DIR) + "/configs/systems/pcie-4gpu.yaml";
    o.model = "dlrm-kaggle";
    o.mode = "training";
    o.batch = 2048;
    o.embedding_sharding = "table";
    const exp::PreparedExperiment sharded = exp::prepare_experiment(o);
    REQUIRE(sharded.result->parallel != nullptr);
    CHECK(sharded.result->parallel->ranks() == 4);
    // Its plan's expert field holds the devices per node (the all-to-alls' node groups): no expert-parallel
    // degree to report (the run printed and stored E=4).
    CHECK(sharded.result->parallel->embedding_sharding);
    CHECK(sharded.result->parallel->expert_degree() == 1);
    exp::set_run_option(o, "data-parallel", "5");
    CHECK_THAT(error_of(o),
               Catch::Contains("data-parallel over all 4 devices besides its host (1 x xeon-8380)"));
}
