// `mlsim compare` as a library (experiment/compare.h): the compare file's located errors, rows for pairs
// that do not run, the figures' identities, the cost rule and deterministic database rows.
#include <fmt/format.h>

#include <catch2/catch.hpp>
#include <cmath>
#include <fstream>
#include <string>

#include "../db/temp_dir.h"
#include "experiment/compare.h"
#include "query.h"
#include "sim/config/error.h"

using namespace mlsim;

namespace {

std::string write(const test::TempDir& dir, const std::string& name, const std::string& text) {
    const std::string path = dir.file(name);
    std::ofstream(path) << text;
    return path;
}

// The user error load_compare() raises, or "" when the file loads.
std::string load_error(const std::string& path) {
    try {
        (void)exp::load_compare(path);
    } catch (const cfg::UserError& e) {
        return e.what();
    }
    return "";
}

bool has(const std::string& text, const std::string& part) { return text.find(part) != std::string::npos; }

const char* k_small = R"(name: small
systems: [stm32f746, a100]
workloads:
  - name: kws
    model: ds-cnn-kws
    dtype: int8
  - name: mobilenet
    model: mobilenetv2
    dtype: int8
    systems: [stm32f746]
)";

}  // namespace

TEST_CASE("compare: every bad input in a compare file is a located error naming its key",
          "[experiment][compare]") {
    test::TempDir dir("compare-errors");
    struct Case {
        const char* text;
        const char* where;  // file:line:col suffix expected
        const char* what;
    };
    const Case cases[] = {
        {"systems: [a100]\nworkloads:\n  - {name: a, model: resnet50}\nsytems: [h100]\n",
         ":4:1:", "did you mean 'systems'"},
        {"systems: [a100]\nworkloads:\n  - name: a\n    modle: resnet50\n", ":4:5:", "did you mean 'model'"},
        {"systems: [a100]\nworkloads:\n  - name: a\n    model: resnet5\n",
         ":4:12:", "did you mean 'resnet50'"},
        {"systems: [a10O]\nworkloads:\n  - {name: a, model: resnet50}\n", ":1:11:", "no preset 'a10O'"},
        {"systems: [a100]\nworkloads:\n  - name: a\n    model: resnet50\n    systems: [h100]\n",
         ":5:15:", "no system 'h100' in this file's systems"},
        {"systems: [a100]\nworkloads:\n  - name: a\n    model: resnet50\n    batch: 2\n    latency_target: "
         "1ms\n",
         ":6:5:", "give one of batch, batch_per_replica and latency_target"},
        {"systems: [a100]\nworkloads:\n  - name: a\n    model: resnet50\n    mode: training\n    "
         "latency_target: "
         "1ms\n",
         ":6:5:", "applies only to inference"},
        {"systems: [a100]\nworkloads:\n  - name: a\n    model: resnet50\n    latency_target: 5GB\n",
         ":5:21:", "expected a time"},
        {"systems: [a100]\nworkloads:\n  - {name: a, model: resnet50}\n  - {name: a, model: lenet5}\n",
         ":4:12:", "named twice"},
        {"systems: [a100]\nworkloads:\n  - name: a\n    model: resnet50\n    batch_per_replica: 4\n",
         ":5:5:", "needs a parallel plan"},
        {"systems: [a100]\nworkloads:\n  - name: a\n    model: resnet50\n    parallel: {data: many}\n",
         ":5:22:", "expected an integer, found \"many\""},
        {"systems: [a100]\nworkloads:\n  - name: a\n    model: resnet50\n    train_samples: 1e6\n",
         ":5:5:", "applies only to mode: training"},
        {"workloads:\n  - {name: a, model: resnet50}\n", ":1:1:", "missing required key 'systems'"},
        {"systems: [a100]\nworkloads:\n  - name: a\n    model: dlrm-kaggle\n    embedding_sharding: auto\n"
         "    parallel: {data: 2}\n",
         ":6:5:", "drop `parallel`"},
        {"systems: [a100]\nworkloads:\n  - name: a\n    model: dlrm-kaggle\n    mode: training\n"
         "    sparse_optimizer: unfused\n",
         ":6:5:", "needs embedding_sharding"},
        {"systems: [a100]\nworkloads:\n  - name: a\n    model: dlrm-kaggle\n    embedding_sharding: auto\n"
         "    sparse_optimizer: unfused\n",
         ":6:5:", "applies only to mode: training"},
        {"systems: [a100]\nworkloads:\n  - name: a\n    model: dlrm-kaggle\n    embedding_dtype: fp99\n",
         ":5:22:", "expected one of"},
        // A misspelt kind or a missing placement file: the file's error at the key (it was a row "does not
        // run -> autox: cannot open 'autox'", exit 0).
        {"systems: [a100]\nworkloads:\n  - name: a\n    model: dlrm-kaggle\n    embedding_sharding: autox\n",
         ":5:25:", "(did you mean 'auto'?)"},
        {"systems: [a100]\nworkloads:\n  - name: a\n    model: dlrm-kaggle\n    embedding_sharding: "
         "no.yaml\n",
         ":5:25:", "no placement file"},
        {"systems: [a100, a100]\nworkloads:\n  - {name: a, model: resnet50}\n", ":1:17:", "listed twice"},
        // Degrees are bounded where they are read, before any product of them is formed (a product of two
        // 2^32 degrees wrapped to 0 and divided the device count).
        {"systems: [dgx-a100]\nworkloads:\n  - name: a\n    model: mlp3\n    mode: training\n"
         "    parallel: {tensor: 4294967296, pipeline: 4294967296, data: auto}\n",
         ":6:24:", "must be at most 1048576"},
        {"systems: [dgx-a100]\nworkloads:\n  - name: a\n    model: mlp3\n    parallel: {data: 2097152}\n",
         ":5:22:", "must be from 1 to 2^20"},
        // The workload's own model refuses it on every system: the file's error, at the key.
        {"systems: [a100]\nworkloads:\n  - name: a\n    model: resnet50\n    image: 7\n",
         ":5:12:", "workloads[0].image: model 'resnet50': image must be between 32 and 8192"},
        {"systems: [a100]\nworkloads:\n  - name: a\n    model: llama2-7b-decode\n    seq: 4096\n",
         ":5:10:", "workloads[0].seq: "},
    };
    for (const Case& c : cases) {
        const std::string path = write(dir, "bad.yaml", c.text);
        const std::string err = load_error(path);
        INFO(c.text);
        INFO(err);
        CHECK(has(err, path + c.where));
        CHECK(has(err, c.what));
    }
}

TEST_CASE("compare: a system price needs a rental or a purchase price, located in the system file",
          "[experiment][compare]") {
    test::TempDir dir("compare-price");
    const std::string sys = write(dir, "priced.yaml",
                                  "system:\n  name: p\n  device: a100\n  price:\n    source: nowhere\n"
                                  "    purchase_usd: 10000\n");
    const std::string path =
        write(dir, "c.yaml", fmt::format("systems: [{}]\nworkloads:\n  - {{name: a, model: lenet5}}\n", sys));
    const std::string err = load_error(path);
    CHECK(has(err, sys + ":6:5:"));
    CHECK(has(err, "needs lifetime_years"));
    const std::string unsourced =
        write(dir, "unsourced.yaml", "system:\n  name: p\n  device: a100\n  price: {usd_per_hour: 2}\n");
    const std::string path2 =
        write(dir, "c2.yaml",
              fmt::format("systems: [{}]\nworkloads:\n  - {{name: a, model: lenet5}}\n", unsourced));
    CHECK(has(load_error(path2), "missing required key 'source'"));
    // A lifetime without a purchase to amortise is an error; electricity at $0 (the default) may be written.
    const std::string lifetime = write(dir, "lifetime.yaml",
                                       "system:\n  name: p\n  device: a100\n  price:\n    source: s\n"
                                       "    usd_per_hour: 2\n    lifetime_years: 3\n");
    const std::string err3 = load_error(
        write(dir, "c3.yaml",
              fmt::format("systems: [{}]\nworkloads:\n  - {{name: a, model: lenet5}}\n", lifetime)));
    CHECK(has(err3, lifetime + ":7:5:"));
    CHECK(has(err3, "amortises purchase_usd"));
    const std::string free_power = write(dir, "free_power.yaml",
                                         "system:\n  name: p\n  device: a100\n  price:\n    source: s\n"
                                         "    usd_per_hour: 2\n    usd_per_kwh: 0\n");
    CHECK(load_error(write(
              dir, "c4.yaml",
              fmt::format("systems: [{}]\nworkloads:\n  - {{name: a, model: lenet5}}\n", free_power))) == "");
}

TEST_CASE("compare: the cost rule: rental per hour, or purchase over its lifetime, plus electricity",
          "[experiment][compare]") {
    exp::SystemPrice rent;
    rent.usd_per_hour = 3.6;
    CHECK(*exp::cost_per_hour_usd(rent) == 3.6);
    // 1e6 samples at 1000/s take 1000 s = 1/3.6 h: $1.
    CHECK(*exp::cost_per_million_samples_usd(rent, 1000, 0.5) == Approx(1.0).epsilon(1e-12));
    exp::SystemPrice own;
    own.purchase_usd = 8766;
    own.lifetime_years = 1;
    own.usd_per_kwh = 0.1;
    CHECK(*exp::cost_per_hour_usd(own) == Approx(1.0).epsilon(1e-12));
    // 1000 s at $1/h = $0.2778, plus 1e6 x 3.6 J = 1 kWh at $0.1.
    CHECK(*exp::cost_per_million_samples_usd(own, 1000, 3.6) == Approx(1000.0 / 3600 + 0.1).epsilon(1e-12));
    CHECK_FALSE(exp::cost_per_hour_usd(exp::SystemPrice{}).has_value());
    CHECK_FALSE(exp::cost_per_million_samples_usd(rent, 0, 1).has_value());
}

TEST_CASE("compare: a pair that does not fit is a row with its reason; the others run",
          "[experiment][compare]") {
    test::TempDir dir("compare-rows");
    const exp::CompareStudy study = exp::load_compare(write(dir, "small.yaml", k_small));
    REQUIRE(study.pairs().size() == 3);
    const exp::CompareOutcome out = exp::run_compare(study);
    REQUIRE(out.rows.size() == 3);
    const exp::CompareRow& bad = out.rows[2];
    CHECK(bad.workload == "mobilenet");
    CHECK(bad.system == "stm32f746");
    CHECK(bad.status == "error");
    CHECK(has(bad.error, "does not fit on stm32f746"));
    for (std::size_t i = 0; i < 2; ++i) {
        const exp::CompareRow& r = out.rows[i];
        INFO(r.workload << " on " << r.system);
        REQUIRE(r.status == "ok");
        CHECK(r.latency_s > 0);
        // energy per sample x throughput = average power, and samples/J = throughput / power.
        CHECK(r.energy_per_sample_j * r.samples_per_s == Approx(r.average_power_w).epsilon(1e-12));
        CHECK(r.samples_per_s_per_w * r.average_power_w == Approx(r.samples_per_s).epsilon(1e-12));
        CHECK(r.samples_per_s == Approx(static_cast<double>(r.batch) / r.latency_s).epsilon(1e-12));
        CHECK(r.average_power_w <= r.system_tdp_w);
        CHECK(r.compute_s + r.memory_s + r.communication_s + r.overhead_s ==
              Approx(r.latency_s).epsilon(1e-9));
    }
}

TEST_CASE(
    "compare: a latency target tries max_batch itself; a KV cache that does not fit ends the search; "
    "time to train counts whole steps",
    "[experiment][compare]") {
    test::TempDir dir("compare-search");
    const exp::CompareStudy study = exp::load_compare(write(dir, "search.yaml", R"(name: search
systems: [a100]
workloads:
  - {name: r100, model: resnet50, dtype: bf16, latency_target: 900ms, max_batch: 100}
  - {name: r3, model: resnet50, dtype: bf16, latency_target: 900ms, max_batch: 3}
  - {name: dec, model: llama2-7b-decode, dtype: bf16, seq: 1024, latency_target: 1s, max_batch: 4096}
  - {name: t1, model: resnet50, mode: training, dtype: bf16, batch: 64, train_samples: 1}
  - {name: t65, model: resnet50, mode: training, dtype: bf16, batch: 64, train_samples: 65}
)"));
    const exp::CompareOutcome out = exp::run_compare(study);
    REQUIRE(out.rows.size() == 5);
    for (const exp::CompareRow& r : out.rows) REQUIRE(r.status == "ok");
    CHECK(out.rows[0].batch == 100);  // not 64: max_batch is tried after the powers of two
    CHECK(out.rows[1].batch == 3);
    // Llama-2-7B holds 0.5 MiB of KV cache a token: at 1,024 tokens batch 128 (64 GiB beside 13.5 GB of
    // weights) fits the A100's 80 GiB and batch 256 does not, whatever its latency.
    CHECK(out.rows[2].batch == 128);
    // One sample, or 65 at 64 a step: one step, then two.
    CHECK(out.rows[3].time_to_train_s.value() == out.rows[3].latency_s);
    CHECK(out.rows[4].time_to_train_s.value() == 2 * out.rows[4].latency_s);
}

TEST_CASE("compare: N devices without a plan run inference as N replicas; training needs a plan",
          "[experiment][compare]") {
    test::TempDir dir("compare-replicas");
    const exp::CompareStudy study = exp::load_compare(write(dir, "r.yaml", R"(systems: [h100, dgx-h100]
workloads:
  - {name: r, model: resnet50, batch: 8, dtype: bf16}
  - {name: t, model: mlp3, batch: 8, mode: training, systems: [dgx-h100]}
)"));
    const exp::CompareOutcome out = exp::run_compare(study);
    REQUIRE(out.rows.size() == 3);
    const exp::CompareRow &one = out.rows[0], &eight = out.rows[1];
    REQUIRE(one.status == "ok");
    REQUIRE(eight.status == "ok");
    CHECK(eight.replicas == 8);
    CHECK(eight.latency_s == one.latency_s);
    CHECK(eight.samples_per_s == Approx(8 * one.samples_per_s).epsilon(1e-12));
    CHECK(eight.energy_per_sample_j == Approx(one.energy_per_sample_j).epsilon(1e-12));
    CHECK(eight.system_tdp_w == 8 * one.system_tdp_w);
    CHECK(out.rows[2].status == "error");
    CHECK(has(out.rows[2].error, "needs a parallel plan"));
}

TEST_CASE("compare: a mixed system's replicas are its default type's devices, with their TDP",
          "[experiment][compare]") {
    test::TempDir dir("compare-mixed");
    // pcie-4gpu: 4 x a100 + 1 x xeon-8380. Without a plan the A100 runs; the Xeon is not a fifth replica.
    const exp::CompareStudy study = exp::load_compare(write(dir, "m.yaml", R"(systems: [a100, pcie-4gpu]
workloads:
  - {name: r, model: resnet50, batch: 8, dtype: fp16}
)"));
    const exp::CompareOutcome out = exp::run_compare(study);
    REQUIRE(out.rows.size() == 2);
    const exp::CompareRow &one = out.rows[0], &mixed = out.rows[1];
    REQUIRE(one.status == "ok");
    REQUIRE(mixed.status == "ok");
    CHECK(mixed.replicas == 4);
    CHECK(mixed.devices == 4);
    CHECK(mixed.samples_per_s == Approx(4 * one.samples_per_s).epsilon(1e-12));
    CHECK(mixed.system_tdp_w == 4 * one.system_tdp_w);
    CHECK(mixed.average_power_w <= mixed.system_tdp_w);
}

TEST_CASE("compare: data: auto in a mixed system is its leading accelerators, their TDP the run's",
          "[experiment][compare]") {
    test::TempDir dir("compare-mixed-plan");
    // pcie-4gpu: data-parallel over its 4 A100s (the xeon-8380 host after them is no rank), 400 W each.
    const exp::CompareStudy study = exp::load_compare(write(dir, "p.yaml", R"(systems: [pcie-4gpu]
workloads:
  - {name: t, model: mlp3, mode: training, batch_per_replica: 16, dtype: fp32, parallel: {data: auto}}
)"));
    const exp::CompareOutcome out = exp::run_compare(study);
    REQUIRE(out.rows.size() == 1);
    const exp::CompareRow& row = out.rows[0];
    REQUIRE(row.status == "ok");
    CHECK(row.devices == 4);
    CHECK(row.batch == 64);
    CHECK(row.system_tdp_w == Approx(4 * 400.0));
    CHECK(row.average_power_w <= row.system_tdp_w);
}

TEST_CASE("compare: a product of a workload's numbers too large for 64 bits is the pair's reason",
          "[experiment][compare]") {
    test::TempDir dir("compare-overflow");
    const exp::CompareStudy study = exp::load_compare(write(dir, "o.yaml", R"(systems: [dgx-a100, a100]
workloads:
  - name: wrap
    model: mlp3
    mode: training
    batch_per_replica: 2305843009213693953
    parallel: {data: auto}
    systems: [dgx-a100]
  - name: micro
    model: mlp3
    mode: training
    batch: 8
    parallel: {data: 4, microbatch_size: 4611686018427387904}
    systems: [a100]
)"));
    const exp::CompareOutcome out = exp::run_compare(study);
    REQUIRE(out.rows.size() == 2);
    CHECK(out.rows[0].status == "error");
    CHECK(has(out.rows[0].error, "batch_per_replica x data = 2305843009213693953 x 8 is too large"));
    CHECK(out.rows[1].status == "error");
    CHECK(has(out.rows[1].error, "data x microbatch_size = 4 x 4611686018427387904 is too large"));
}

TEST_CASE("compare: a broken model file the workload names stops the study at that file's location",
          "[experiment][compare]") {
    // The model fails on every system alike: the study's input error (exit 2), not a row per system.
    test::TempDir dir("compare-model-error");
    write(dir, "bad_model.yaml", "name: bad\ninputs:\n  x: [N, 16\n");
    const std::string err = load_error(write(dir, "e.yaml", R"(systems: [a100]
workloads:
  - {name: w, model: bad_model.yaml}
)"));
    INFO(err);
    CHECK(has(err, dir.file("bad_model.yaml") + ":4:1: error: invalid YAML"));
}

TEST_CASE("compare: sharded embedding tables run one rank per device, never as replicas",
          "[experiment][compare]") {
    test::TempDir dir("compare-sharding");
    const exp::CompareStudy study = exp::load_compare(write(dir, "s.yaml", R"(systems: [a100, dgx-a100-node]
workloads:
  - name: dlrm
    model: dlrm-kaggle
    mode: training
    optimizer: sgd
    dtype: fp16
    batch_per_replica: 1024
    embedding_sharding: table
    embedding_dtype: fp32
    sparse_optimizer: unfused
)"));
    const exp::CompareOutcome out = exp::run_compare(study);
    REQUIRE(out.rows.size() == 2);
    const exp::CompareRow &one = out.rows[0], &eight = out.rows[1];
    INFO(one.error);
    INFO(eight.error);
    REQUIRE(one.status == "ok");
    REQUIRE(eight.status == "ok");
    CHECK(one.replicas == 1);
    CHECK(eight.replicas == 1);
    CHECK(one.batch == 1024);
    CHECK(eight.batch == 8 * 1024);
    CHECK(eight.samples_per_s == Approx(8 * 1024 / eight.latency_s).epsilon(1e-12));
    // Eight devices share one step of 8x the samples, each holding a few of the 26 tables.
    CHECK(eight.samples_per_s > one.samples_per_s);
    CHECK(eight.system_tdp_w == 8 * one.system_tdp_w);
}

TEST_CASE("compare: the database rows are the same on every run of a study", "[experiment][compare]") {
    test::TempDir dir("compare-db");
    const exp::CompareStudy study = exp::load_compare(write(dir, "small.yaml", k_small));
    const std::string db_path = dir.file("c.db");
    int64_t ids[2] = {0, 0};
    {
        db::ResultsDb db(db_path);
        exp::CompareOptions o;
        o.db = &db;
        ids[0] = exp::run_compare(study, o).compare_id;
        ids[1] = exp::run_compare(study, o).compare_id;
    }
    CHECK(ids[0] == 1);
    CHECK(ids[1] == 2);
    const std::string cols =
        "c.idx, workload, c.system, c.status, c.error, devices, c.batch, latency_s, samples_per_s, "
        "energy_per_sample_j, c.average_power_w, system_tdp_w, samples_per_s_per_w, usd_per_million_samples, "
        "compute_s, memory_s, communication_s, overhead_s, flops_per_sample, bytes_per_sample, r.status, "
        "r.config_hash, r.total_time_s, r.total_energy_j, r.error";
    const auto rows = [&](int64_t id) {
        return test::query(db_path, "SELECT " + cols +
                                        " FROM comparisons c JOIN runs r USING (run_id) WHERE "
                                        "compare_id = " +
                                        std::to_string(id) + " ORDER BY c.idx");
    };
    const auto first = rows(1);
    REQUIRE(first.size() == 3);
    CHECK(first == rows(2));
    // Each pair's run is recorded: two ok runs with their layers, one failed run with its message.
    CHECK(test::query(db_path, "SELECT COUNT(*) FROM runs WHERE status = 'ok'") ==
          std::vector<std::string>{"4|"});
    CHECK(test::query(db_path,
                      "SELECT COUNT(*) FROM runs WHERE status = 'error' AND error LIKE '%does not fit%'") ==
          std::vector<std::string>{"2|"});
}

TEST_CASE("compare: a pair with a parallel plan is recorded as `mlsim run --db` records it",
          "[experiment][compare]") {
    test::TempDir dir("compare-parallel-db");
    // GPT-2 small data-parallel over a DGX A100 node: the runs row holds the whole step (eight devices and
    // the links), as the comparison row does, with its parallel rows; the roofline's intensity is one
    // device's FLOPs over that device's bytes.
    const exp::CompareStudy study = exp::load_compare(write(dir, "par.yaml", R"(systems: [dgx-a100-node]
workloads:
  - {name: t, model: gpt2-small-prefill, mode: training, seq: 256, dtype: bf16, batch_per_replica: 2,
     parallel: {data: auto}}
)"));
    const std::string db_path = dir.file("p.db");
    exp::CompareOutcome out;
    {
        db::ResultsDb db(db_path);
        exp::CompareOptions o;
        o.db = &db;
        out = exp::run_compare(study, o);
    }
    REQUIRE(out.rows.size() == 1);
    const exp::CompareRow& row = out.rows[0];
    REQUIRE(row.status == "ok");
    REQUIRE(row.devices == 8);
    const auto one = [&](const std::string& sql) {
        const auto rows = test::query(db_path, sql);
        REQUIRE(rows.size() == 1);
        return std::stod(rows[0]);
    };
    const std::string run = " FROM runs WHERE run_id = " + std::to_string(row.run_id);
    CHECK(one("SELECT total_energy_j" + run) == Approx(row.energy_per_sample_j * row.batch).epsilon(1e-12));
    CHECK(one("SELECT total_time_s" + run) == Approx(row.latency_s).epsilon(1e-12));
    CHECK(one("SELECT average_power_w" + run) == Approx(row.average_power_w).epsilon(1e-9));
    CHECK(one("SELECT COUNT(*) FROM parallel_runs WHERE run_id = " + std::to_string(row.run_id)) == 1);
    CHECK(one("SELECT COUNT(*) FROM parallel_ranks WHERE run_id = " + std::to_string(row.run_id)) >= 1);
    CHECK(row.flops_per_sample / row.bytes_per_sample ==
          Approx(one("SELECT total_flops / (total_bytes_read + total_bytes_written)" + run)).epsilon(1e-9));
    // The time split: the parts sum to the step, and the layers' memory-bound time is memory, in the
    // proportion rank 0's layers have it (it was the step less compute, communication and bubble: ~0, with
    // every layer's time called compute).
    CHECK(row.compute_s + row.memory_s + row.communication_s + row.overhead_s ==
          Approx(row.latency_s).epsilon(1e-9));
    const double c = one("SELECT SUM(compute_s) FROM layers WHERE run_id = " + std::to_string(row.run_id));
    const double m = one("SELECT SUM(memory_s) FROM layers WHERE run_id = " + std::to_string(row.run_id));
    REQUIRE(m > 0.05 * (c + m));
    CHECK(row.memory_s / row.compute_s == Approx(m / c).epsilon(1e-9));
}
