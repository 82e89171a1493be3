// The run-option table: one declaration per option of `mlsim run`, from which the command line, sweep
// files and checks of options set in code all derive.
#include <catch2/catch.hpp>
#include <string>
#include <vector>

#include "arch/device_spec.h"
#include "arch/family.h"
#include "experiment/experiment.h"
#include "experiment/run_options.h"
#include "experiment/sweep.h"
#include "sim/config/error.h"
#include "sim/core/check.h"
#include "tests/arch/user_error.h"
#include "workloads/dtype.h"

using namespace mlsim;
using mlsim::test::user_error_of;

namespace {

std::string data(const char* name) {
    return std::string(MLSIM_SOURCE_DIR) + "/tests/experiment/data/" + name;
}

bool contains(const std::string& text, const std::string& part) {
    return text.find(part) != std::string::npos;
}

}  // namespace

TEST_CASE("Every run option is declared once, and ExperimentOptions' defaults are the table's", "[options]") {
    const exp::ExperimentOptions defaults;
    std::vector<std::string> names;
    for (const exp::RunOption& e : exp::run_options()) {
        names.push_back(e.name());
        INFO(e.name());
        CHECK(!e.param.doc.empty());
        if (e.is_device_override()) {
            CHECK_FALSE(e.param.default_value.has_value());  // the device config's value stands
            continue;
        }
        CHECK(e.get(defaults) == e.param.default_value);
    }
    CHECK(names == std::vector<std::string>{"system",
                                            "model",
                                            "batch",
                                            "seq",
                                            "image",
                                            "dtype",
                                            "mode",
                                            "optimizer",
                                            "checkpointing",
                                            "data-parallel",
                                            "tensor-parallel",
                                            "pipeline-parallel",
                                            "expert-parallel",
                                            "zero",
                                            "microbatches",
                                            "sequence-parallel",
                                            "pipeline-schedule",
                                            "recompute",
                                            "embedding-sharding",
                                            "embedding-dtype",
                                            "max-table-rows",
                                            "sparse-optimizer",
                                            "layer-rows",
                                            "max-pe-cycles",
                                            "device-model",
                                            "fidelity",
                                            "convention",
                                            "fusion",
                                            "duty-period",
                                            "arena-bank"});
    const exp::RunOption* dtype = exp::find_run_option("dtype");
    REQUIRE(dtype != nullptr);
    CHECK(dtype->short_name == 't');
    CHECK(dtype->param.choices == wl::dtype_names());
}

TEST_CASE("Device settings are device-override entries whose choices come from the device schema",
          "[options]") {
    // --device-model is the core key device.model; --fidelity and --convention come from the registry.
    const exp::RunOption* model = exp::find_run_option("device-model");
    REQUIRE(model != nullptr);
    CHECK(model->device_key == "device.model");
    std::vector<std::string> family_names;
    for (const arch::Family& f : arch::families()) family_names.push_back(f.name);
    CHECK(model->param.choices == family_names);
    for (const arch::FamilyOption& o : arch::family_options()) {
        const exp::RunOption* e = exp::find_run_option(o.flag);
        REQUIRE(e != nullptr);
        // A flag one family declares sets its key; a shared one lists every family's key.
        CHECK((e->device_key == o.key_path ||
               std::find(e->shared_keys.begin(), e->shared_keys.end(), o.key_path) != e->shared_keys.end()));
    }
    // --fidelity is shared by the systolic, GPU and CPU families: the choices are the union of theirs.
    const exp::RunOption* fidelity = exp::find_run_option("fidelity");
    REQUIRE(fidelity != nullptr);
    CHECK(fidelity->is_device_override());
    CHECK(fidelity->device_key == "device.systolic.fidelity");
    CHECK(fidelity->shared_keys ==
          std::vector<std::string>{"device.systolic.fidelity", "device.gpu.fidelity", "device.cpu.fidelity"});
    CHECK(fidelity->param.type == cfg::PType::choice);
    CHECK(fidelity->param.choices ==
          std::vector<std::string>{"tile", "cycle", "wave", "block", "closed", "trace"});
    const exp::RunOption* convention = exp::find_run_option("convention");
    REQUIRE(convention != nullptr);
    CHECK(convention->param.choices == std::vector<std::string>{"faithful", "scalesim"});

    // Set from code, they land in the generic list of overrides, not in a field per option.
    exp::ExperimentOptions o;
    exp::set_run_option(o, "fidelity", "cycle");
    REQUIRE(o.device_overrides.size() == 1);
    CHECK(o.device_overrides[0].key_path == "device.systolic.fidelity");
    CHECK(o.device_overrides[0].value.scalar() == "cycle");
    CHECK(o.device_overrides[0].option == "--fidelity");
    CHECK(o.device_overrides[0].alternatives ==
          std::vector<std::string>{"device.gpu.fidelity", "device.cpu.fidelity"});
}

TEST_CASE("A flag shared by families: choices are the union, each section keeps its own", "[options]") {
    // Two sections that declare the same flag with overlapping choices (the CPU family will declare
    // `fidelity` with `trace`): the union keeps each choice once, in declaration order.
    const exp::RunOption shared = exp::shared_device_option(
        "fidelity", {"device.systolic.fidelity", "device.gpu.fidelity"}, {"systolic: ...", "gpu: ..."});
    CHECK(shared.param.choices == std::vector<std::string>{"tile", "cycle", "wave", "block"});
    CHECK(shared.param.doc == "systolic: ...; gpu: ...");
    CHECK(shared.keys_text() == "device.systolic.fidelity | device.gpu.fidelity");
    const exp::RunOption same = exp::shared_device_option(
        "fidelity", {"device.systolic.fidelity", "device.systolic.fidelity"}, {"a", "b"});
    CHECK(same.param.choices == std::vector<std::string>{"tile", "cycle"});
    // A single-family flag names one key.
    const exp::RunOption* convention = exp::find_run_option("convention");
    REQUIRE(convention != nullptr);
    CHECK(convention->shared_keys.empty());
    CHECK(convention->keys_text() == "device.systolic.convention");
}

TEST_CASE("The sweep file's base schema is the run-option table", "[options]") {
    const cfg::Schema& base = exp::sweep_base_schema();
    REQUIRE(base.params.size() == exp::run_options().size());
    for (std::size_t i = 0; i < base.params.size(); ++i) {
        const exp::RunOption& e = exp::run_options()[i];
        INFO(e.name());
        CHECK(base.params[i].name == e.name());
        CHECK(base.params[i].type == e.param.type);
        CHECK(base.params[i].choices == e.param.choices);
        CHECK(base.params[i].default_value == e.param.default_value);
        CHECK(base.params[i].required == e.param.required);
        CHECK(base.params[i].min == e.param.min);
    }
}

TEST_CASE("A sweep takes run options in the form mlsim run does, with the same resolved configs",
          "[options]") {
    const exp::Sweep sweep = exp::load_sweep(data("sweep_options.yaml"));
    REQUIRE(sweep.point_count() == 4);
    exp::check_points(sweep);
    const exp::SweepPointConfig pc = exp::make_point(sweep, 3);
    CHECK(pc.description == "convention=scalesim, dtype=int16");

    exp::ExperimentOptions o;
    for (const auto& [name, value] :
         std::vector<std::pair<const char*, const char*>>{{"system", "tpu-v1"},
                                                          {"model", "mlp3"},
                                                          {"fidelity", "cycle"},
                                                          {"convention", "scalesim"},
                                                          {"dtype", "int16"}})
        exp::set_run_option(o, name, value);
    const exp::PreparedExperiment from_run = exp::prepare_experiment(o);
    const exp::PreparedExperiment from_sweep = exp::prepare_experiment(pc.options);
    CHECK(contains(from_run.result->resolved_yaml, "fidelity: cycle"));
    CHECK(contains(from_run.result->resolved_yaml, "convention: scalesim"));
    CHECK(from_sweep.result->info.config_hash == from_run.result->info.config_hash);

    const std::string msg =
        user_error_of([] { exp::check_points(exp::load_sweep(data("sweep_option_no_section.yaml"))); });
    CHECK(contains(msg, "sweep_option_no_section.yaml:6:14: error:"));
    CHECK(contains(msg,
                   "device 'eyeriss' has none of the sections it sets (systolic, gpu, cpu: "
                   "device.systolic.fidelity, device.gpu.fidelity, device.cpu.fidelity)"));
    CHECK(contains(msg, "(in sweep point 0 of 2: fidelity=tile)"));
}

TEST_CASE("Options set in code are checked against the table with the command line's messages", "[options]") {
    exp::ExperimentOptions o;
    o.system = "a100";
    o.model = "mlp3";
    o.batch = 0;
    CHECK(user_error_of([&] { exp::prepare_experiment(o); }) ==
          "<command line>: error: --batch: must be at least 1, found 0");
    o.batch = 1;
    o.optimizer = "adamw";
    CHECK(user_error_of([&] { exp::prepare_experiment(o); }) ==
          "<command line>: error: --optimizer: expected one of: sgd, momentum, adam; found \"adamw\"");
    o.optimizer = "adam";
    o.seq = -1;
    CHECK(user_error_of([&] { exp::prepare_experiment(o); }) ==
          "<command line>: error: --seq: must be at least 0, found -1");
    o.seq = 0;
    exp::set_run_option(o, "convention", "scalesimm");
    o.system = "tpu-v1";
    CHECK(contains(user_error_of([&] { exp::prepare_experiment(o); }),
                   "<command line>: error: device.systolic.convention: expected one of: faithful, scalesim"));
}

TEST_CASE("A device family's extra entries join the table as device overrides, everywhere it is used",
          "[options]") {
    // What the family registry does for its options: here a stand-in, --clock for device.clock.
    const std::vector<exp::RunOption> table =
        exp::make_run_options({exp::device_option("clock", "device.clock", "run the device at this clock")});
    const exp::RunOption* clock = exp::find_run_option("clock", table);
    REQUIRE(clock != nullptr);
    CHECK(clock->param.type == cfg::PType::quantity);
    CHECK(clock->param.dim == cfg::Dim::frequency);
    CHECK(exp::find_run_option("clock") == nullptr);  // the process's table is not changed

    const cfg::Schema schema = exp::run_options_schema(table, "base", "test");
    cfg::Node base = cfg::Node::make_map(cfg::SourceLoc{"s.yaml", 1, 1}, "base");
    // A device whose peaks do not follow from its clock (a GPU's or systolic array's declared peaks must
    // agree with the clock, so a clock override there needs `peak` left out).
    base.set("system", cfg::Node::make_scalar("eyeriss", cfg::SourceLoc{"s.yaml", 2, 11}, "base.system"));
    base.set("model", cfg::Node::make_scalar("mlp3", cfg::SourceLoc{"s.yaml", 3, 10}, "base.model"));
    base.set("clock", cfg::Node::make_scalar("1GHz", cfg::SourceLoc{"s.yaml", 4, 10}, "base.clock"));
    exp::ExperimentOptions o;
    exp::apply_run_options(cfg::validate(base, schema), o, table);
    REQUIRE(o.device_overrides.size() == 1);
    CHECK(o.device_overrides[0].key_path == "device.clock");
    CHECK(o.device_overrides[0].option == "base.clock");
    const exp::ExperimentResult r = exp::run_experiment(o);
    CHECK(contains(r.resolved_yaml, "clock: 1GHz"));

    base.set("clock", cfg::Node::make_scalar("fast", cfg::SourceLoc{"s.yaml", 4, 10}, "base.clock"));
    CHECK(contains(user_error_of([&] { cfg::validate(base, schema); }), "s.yaml:4:10: error: base.clock:"));

    // Names are unique, and an extra entry cannot be a field of ExperimentOptions.
    CHECK_THROWS_AS(exp::make_run_options({exp::device_option("dtype", "device.clock", "x")}), InternalError);
    exp::RunOption field = *exp::find_run_option("batch");
    field.param.name = "batch2";
    field.short_name = 0;
    CHECK_THROWS_AS(exp::make_run_options({field}), InternalError);
}
