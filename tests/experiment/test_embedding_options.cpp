// The run options that shape a model's embedding tables (experiment/experiment.h): --embedding-dtype,
// --max-table-rows and --sparse-optimizer, against the counts they must give, their errors, and the
// resolved config (unchanged when they are not given, so older runs keep their hashes).
#include <catch2/catch.hpp>
#include <string>

#include "experiment/experiment.h"
#include "sim/config/error.h"
#include "workloads/dtype.h"
#include "workloads/model.h"
#include "workloads/parallel.h"

using namespace mlsim;

namespace {

// dlrm-kaggle (26 tables x 16, one-hot) trained on an A100 at batch 64 in FP16.
exp::ExperimentOptions dlrm(const std::string& embedding_dtype = "", int64_t max_rows = 0) {
    exp::ExperimentOptions o;
    o.system = "a100";
    o.model = "dlrm-kaggle";
    o.dtype = "fp16";
    o.batch = 64;
    o.mode = "training";
    o.optimizer = "sgd";
    o.embedding_dtype = embedding_dtype;
    o.max_table_rows = max_rows;
    return o;
}

const wl::Op& op_named(const wl::Model& m, const std::string& name) {
    const std::optional<size_t> i = m.find(name);
    REQUIRE(i.has_value());
    return m.op(*i);
}

std::string error_of(const exp::ExperimentOptions& o) {
    try {
        (void)exp::prepare_experiment(o);
    } catch (const cfg::UserError& e) {
        return e.what();
    }
    return "no error";
}

}  // namespace

TEST_CASE("Embedding dtype fp32: tables, lookups, gradients and updates in FP32, pooled outputs in --dtype",
          "[embedding]") {
    const exp::PreparedExperiment half = exp::prepare_experiment(dlrm());
    const exp::PreparedExperiment full = exp::prepare_experiment(dlrm("fp32"));
    const wl::Model& h = half.result->model;
    const wl::Model& f = full.result->model;
    const wl::Op& lookup = op_named(f, "emb.0");
    const wl::EmbeddingAttr& a = *lookup.get<wl::EmbeddingAttr>();
    CHECK(lookup.dtype == wl::DType::fp32);
    REQUIRE(a.output_dtype.has_value());
    CHECK(*a.output_dtype == wl::DType::fp16);
    // 64 one-hot lookups of 16 elements: the rows read in 4 bytes, the pooled [64, 16] written in 2.
    const wl::OpCounts c = lookup.counts(), c16 = op_named(h, "emb.0").counts();
    CHECK(c.weight_bytes == 64.0 * 16 * 4);
    CHECK(c16.weight_bytes == 64.0 * 16 * 2);
    CHECK(c.output_bytes == c16.output_bytes);
    CHECK(c.output_bytes == 64.0 * 16 * 2);
    // The table's gradient and its update follow the table; its incoming gradient is the FP16 output's.
    const wl::OpCounts g = op_named(f, "emb.0.grad_weight").counts(),
                       g16 = op_named(h, "emb.0.grad_weight").counts();
    CHECK(g.input_bytes == g16.input_bytes);
    CHECK(g.output_bytes == 2 * g16.output_bytes);
    // The other ops are untouched.
    CHECK(op_named(f, "bot_l.0").dtype == wl::DType::fp16);
    CHECK(op_named(f, "bot_l.0").counts().total_bytes() == op_named(h, "bot_l.0").counts().total_bytes());
    // Memory: the tables (nearly all of the 541 M parameters) twice the bytes.
    CHECK(full.result->training_memory.weights_bytes > 1.9 * half.result->training_memory.weights_bytes);
    // The pooled outputs backward keeps are FP16 either way.
    CHECK(full.result->training_memory.activations_bytes == half.result->training_memory.activations_bytes);
    // The resolved config names it; without it, the config has no such key (hashes of older runs kept).
    CHECK(full.result->resolved_yaml.find("embedding_dtype: fp32") != std::string::npos);
    CHECK(half.result->resolved_yaml.find("embedding_dtype") == std::string::npos);
    CHECK(half.result->resolved_yaml.find("max_table_rows") == std::string::npos);
    CHECK(half.result->resolved_yaml.find("sparse_optimizer") == std::string::npos);
    // The same type as --dtype changes nothing but the config.
    const exp::PreparedExperiment same = exp::prepare_experiment(dlrm("fp16"));
    CHECK_FALSE(op_named(same.result->model, "emb.0").get<wl::EmbeddingAttr>()->output_dtype.has_value());
    CHECK(op_named(same.result->model, "emb.0").counts().total_bytes() == c16.total_bytes());
}

TEST_CASE("A table row cap (--max-table-rows): memory shrinks, a one-hot step's time does not",
          "[embedding]") {
    exp::ExperimentOptions o = dlrm("", 1000);
    o.mode = "inference";
    exp::ExperimentOptions u = dlrm();
    u.mode = "inference";
    const exp::ExperimentResult capped = exp::run_experiment(o), full = exp::run_experiment(u);
    int64_t rows_capped = 0, rows_full = 0;
    for (const wl::Op& op : capped.model.ops())
        if (const auto* e = op.get<wl::EmbeddingAttr>()) {
            CHECK(e->rows <= 1000);
            rows_capped += e->rows;
        }
    for (const wl::Op& op : full.model.ops())
        if (const auto* e = op.get<wl::EmbeddingAttr>()) rows_full += e->rows;
    CHECK(rows_capped < rows_full);
    CHECK(capped.model.totals().weight_bytes < full.model.totals().weight_bytes);
    CHECK(capped.total_time_s == Approx(full.total_time_s).epsilon(1e-12));
    CHECK(capped.resolved_yaml.find("max_table_rows: 1000") != std::string::npos);
}

TEST_CASE("Embedding options that cannot apply are located user errors", "[embedding]") {
    exp::ExperimentOptions cnn;
    cnn.system = "a100";
    cnn.model = "resnet50";
    cnn.dtype = "fp16";
    cnn.embedding_dtype = "fp32";
    CHECK_THAT(error_of(cnn), Catch::Contains("<command line>") && Catch::Contains("--embedding-dtype") &&
                                  Catch::Contains("no embedding ops"));
    cnn.embedding_dtype.clear();
    cnn.max_table_rows = 10;
    CHECK_THAT(error_of(cnn),
               Catch::Contains("--max-table-rows") && Catch::Contains("no embedding-bag tables"));
    // A type the device does not compute in is refused, naming it.
    exp::ExperimentOptions mcu = dlrm("bf16");
    mcu.system = "stm32f746";
    mcu.dtype = "int8";
    mcu.mode = "inference";
    CHECK_THAT(error_of(mcu), Catch::Contains("--embedding-dtype") && Catch::Contains("stm32f746") &&
                                  Catch::Contains("bf16"));
    // A table another op reads through a tie (GPT-2's LM head) cannot change type alone.
    exp::ExperimentOptions gpt;
    gpt.system = "a100";
    gpt.model = "gpt2-small-prefill";
    gpt.dtype = "fp16";
    gpt.embedding_dtype = "fp32";
    CHECK_THAT(error_of(gpt),
               Catch::Contains("--embedding-dtype") && Catch::Contains("tied") && Catch::Contains("'wte'"));
    // The sparse optimizer updates sharded tables in training only.
    exp::ExperimentOptions unsharded = dlrm();
    unsharded.sparse_optimizer = "unfused";
    CHECK_THAT(error_of(unsharded),
               Catch::Contains("--sparse-optimizer") && Catch::Contains("--embedding-sharding"));
    exp::ExperimentOptions bad = dlrm();
    bad.sparse_optimizer = "adagrad";
    CHECK_THAT(error_of(bad), Catch::Contains("rowwise_adagrad, unfused"));
}

TEST_CASE("Sharded FP32 tables under FP16: FP16 all-to-alls, FP32 shards, unfused SGD without a master copy",
          "[embedding]") {
    exp::ExperimentOptions o = dlrm("fp32");
    o.system = "dgx-a100-node";
    o.batch = 8 * 64;
    o.embedding_sharding = "table";
    exp::ExperimentOptions h = o;
    h.embedding_dtype.clear();
    const exp::PreparedExperiment full = exp::prepare_experiment(o), half = exp::prepare_experiment(h);
    const wl::ParallelLowering& lf = *full.result->parallel;
    const wl::ParallelLowering& lh = *half.result->parallel;
    // The pooled all-to-all carries the same FP16 vectors; the shards hold twice the bytes.
    const auto pooled = [](const wl::ParallelLowering& l) {
        double bytes = 0;
        for (int64_t r = 0; r < l.ranks(); ++r)
            for (const wl::Task& t : l.program(r).forward)
                if (t.comm && t.comm->purpose == "emb_pooled") bytes += static_cast<double>(t.comm->bytes);
        return bytes;
    };
    CHECK(pooled(lf) > 0);
    CHECK(pooled(lf) == pooled(lh));
    double wf = 0, wh = 0;
    for (int64_t r = 0; r < lf.ranks(); ++r) {
        wf += lf.memory_of(r).weights_bytes;
        wh += lh.memory_of(r).weights_bytes;
    }
    CHECK(wf > 1.9 * wh);
    // Unfused SGD: an update task per table in the step, and no optimizer state for the tables (SGD keeps
    // none, and a table's update keeps no FP32 master copy).
    exp::ExperimentOptions u = h;
    u.sparse_optimizer = "unfused";
    const exp::PreparedExperiment unfused = exp::prepare_experiment(u);
    const wl::ParallelLowering& lu = *unfused.result->parallel;
    int updates = 0;
    for (int64_t r = 0; r < lu.ranks(); ++r)
        for (const wl::Task& t : lu.program(r).step)
            if (t.op && t.op->kind == "sgd_update" && t.name.rfind("emb.", 0) == 0) ++updates;
    CHECK(updates == 26);
    double state_u = 0, state_fused = 0;
    for (int64_t r = 0; r < lu.ranks(); ++r) {
        state_u += lu.memory_of(r).optimizer_state_bytes;
        state_fused += lh.memory_of(r).optimizer_state_bytes;
    }
    CHECK(state_u < state_fused);  // row-wise Adagrad keeps 4 B a row; SGD nothing for the tables
    CHECK(unfused.result->resolved_yaml.find("sparse_optimizer: unfused") != std::string::npos);
}
