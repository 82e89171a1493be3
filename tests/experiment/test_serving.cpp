// LLM serving (experiment/serving/): the iteration model against plain runs, the scheduler's KV-cache
// limits, the device's influence, determinism, the requests table and the command's errors.
#include <fmt/format.h>

#include <catch2/catch.hpp>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include "db/schema.h"
#include "experiment/experiment.h"
#include "experiment/serving/pipeline.h"
#include "experiment/serving/serving.h"
#include "sim/config/error.h"
#include "tests/cli/run_mlsim.h"
#include "tests/db/temp_dir.h"
#include "tests/experiment/query.h"

using namespace mlsim;
using namespace mlsim::serving;

namespace {

arch::DeviceSpec device(const char* name) {
    return exp::load_system_file(exp::resolve_system_path(name)).device;
}

DeviceIterationModel a100_llama(int64_t bucket = 16, double kv_capacity = 0) {
    DeviceModelOptions o;
    o.kv_bucket = bucket;
    o.kv_capacity_override = kv_capacity;
    return DeviceIterationModel(device("a100"),
                                decoder_shape("llama2-7b", cfg::SourceLoc{"test", 0, 0}, "model"), o);
}

std::vector<Request> fixed(int64_t n, int64_t prompt, int64_t output, double rate, uint64_t seed = 1) {
    RequestSource s;
    s.count = n;
    s.rate = rate;
    s.seed = seed;
    s.prompt_tokens = {prompt};
    s.output_tokens = {output};
    return make_requests(s);
}

Batch prefill_of(int64_t tokens) {
    Batch b;
    b.prefills.push_back(PrefillChunk{tokens, 0, true});
    return b;
}
Batch decode_of(std::vector<int64_t> ctx) {
    Batch b;
    b.decode_context = std::move(ctx);
    return b;
}

}  // namespace

TEST_CASE("llama2-7b's shape has the published parameter count", "[serving]") {
    const DecoderShape s = decoder_shape("llama2-7b", {}, "model");
    CHECK(s.parameters() == 6'738'415'616.0);  // Touvron et al. 2023 checkpoint (zoo_test checks the same)
    // ~0.5 MB of fp16 KV per token: a 2,048-token request holds ~1 GB (the seed claim).
    CHECK(s.kv_bytes_per_token(wl::DType::fp16) * 2048 == Approx(1.07e9).epsilon(0.01));
    CHECK(decoder_shape("gpt2", {}, "model").parameters() == 124'439'808.0);
    CHECK(decoder_shape("llama2-70b", {}, "model").parameters() == Approx(68.98e9).epsilon(0.001));
    CHECK_THROWS_AS(decoder_shape("llama2-7", {}, "model"), cfg::UserError);
}

TEST_CASE("a single request equals the plain prefill plus decode steps", "[serving]") {
    DeviceIterationModel m = a100_llama(1);
    const int64_t P = 200, D = 12;
    SchedulerOptions so;
    const ServingResult r = serve(m, fixed(1, P, D, 0), so);
    REQUIRE(r.requests.size() == 1);
    DeviceIterationModel plain = a100_llama(1);
    const double prefill = plain.cost_exact(prefill_of(P)).time_s;
    double total = prefill;
    for (int64_t i = 0; i < D - 1; ++i) total += plain.cost_exact(decode_of({P + i})).time_s;
    CHECK(r.requests[0].first_token_s == Approx(prefill).epsilon(1e-12));
    CHECK(r.requests[0].finish_s == Approx(total).epsilon(1e-12));
    CHECK(r.iterations == D);
    CHECK(r.max_batch_reached == 1);

    // The decomposition (one layer x layers, attention apart) against the zoo's whole decode model run
    // on the same device model: within 5 % (the zoo model adds residency between layers).
    exp::ExperimentOptions eo;
    eo.system = "a100";
    eo.model = "llama2-7b-decode";
    eo.dtype = "fp16";
    eo.seq = 512;
    const double whole = exp::run_experiment(eo).total_time_s;
    const double ours = plain.cost_exact(decode_of({512})).time_s;
    CHECK(ours == Approx(whole).epsilon(0.05));
}

TEST_CASE("TTFT is at least the request's own prefill time", "[serving]") {
    DeviceIterationModel m = a100_llama();
    const ServingResult r = serve(m, fixed(300, 700, 64, 12.0, 3), SchedulerOptions{});
    const double prefill = m.cost(prefill_of(700)).time_s;
    for (const RequestResult& q : r.requests) {
        CHECK(q.first_token_s - q.req.arrival_s >= prefill * (1 - 1e-12));
        CHECK(q.finish_s >= q.first_token_s);
    }
}

TEST_CASE("a full KV cache limits the batch", "[serving]") {
    // 100 requests of 512 + 128 tokens arrive at once: each needs 40 blocks of 16 tokens at the end.
    const double per_token = a100_llama().kv_bytes_per_token();
    const double capacity = 16 * per_token * 400;  // 400 blocks: at most 10 full requests
    DeviceIterationModel small = a100_llama(16, capacity);
    DeviceIterationModel big = a100_llama(16);
    SchedulerOptions so;
    const ServingResult rs = serve(small, fixed(100, 512, 128, 0), so);
    const ServingResult rb = serve(big, fixed(100, 512, 128, 0), so);
    CHECK(rs.total_blocks == 400);
    // Prompts take 32 blocks each at admission: at most 12 fit.
    CHECK(rs.max_batch_reached <= 12);
    CHECK(rs.max_batch_reached >= 10);
    CHECK(rb.max_batch_reached == 100);
    CHECK(rs.preemptions > 0);  // growing sequences run out of blocks
    CHECK(rs.max_kv_occupancy <= 1.0);
    CHECK(rs.makespan_s > rb.makespan_s);
    for (const RequestResult& q : rs.requests) CHECK(q.finish_s > 0);
}

TEST_CASE("doubling HBM bandwidth lowers decode latency", "[serving]") {
    DeviceModelOptions o;
    const DecoderShape s = decoder_shape("llama2-7b", {}, "model");
    DeviceIterationModel base(device("a100"), s, o);
    DeviceIterationModel fast(device("a100-hbm-2x"), s, o);
    const ServingResult rb = serve(base, fixed(200, 256, 128, 4.0), SchedulerOptions{});
    const ServingResult rf = serve(fast, fixed(200, 256, 128, 4.0), SchedulerOptions{});
    // Decode streams the weights and the KV cache: TPOT falls well below the base (not halved: launch
    // overhead and the compute-bound prefills interleaved stay).
    CHECK(rf.tpot_s.p50 < 0.8 * rb.tpot_s.p50);
    CHECK(rf.tpot_s.mean < rb.tpot_s.mean);
    // A large decode step (64 sequences over 1,024 cached tokens: ~34 GB of KV and 13.5 GB of weights)
    // is almost all HBM streaming: at least 1.5x faster with twice the bandwidth.
    const Batch big = decode_of(std::vector<int64_t>(64, 1024));
    CHECK(base.cost(big).time_s > 1.5 * fast.cost(big).time_s);
}

TEST_CASE("serving is deterministic for a seed and the seed matters", "[serving]") {
    const auto rows = [](uint64_t seed) {
        DeviceIterationModel m = a100_llama();
        RequestSource s;
        s.count = 400;
        s.rate = 8;
        s.seed = seed;
        s.prompt_tokens = {128, 1024, 300};
        s.output_tokens = {64, 256};
        const ServingResult r = serve(m, make_requests(s), SchedulerOptions{});
        std::vector<std::string> out;
        for (const RequestResult& q : r.requests)
            out.push_back(fmt::format("{} {:.17g} {:.17g} {:.17g} {} {} {}", q.req.id, q.req.arrival_s,
                                      q.first_token_s, q.finish_s, q.req.prompt_tokens, q.req.output_tokens,
                                      q.preemptions));
        return out;
    };
    CHECK(rows(7) == rows(7));
    CHECK(rows(7) != rows(8));
}

TEST_CASE("Poisson arrivals have the requested rate", "[serving]") {
    CHECK(uniform01(0) == 0.0);
    CHECK(uniform01(~uint64_t{0}) < 1.0);
    CHECK(exponential(uint64_t{1} << 63, 2.0) == Approx(std::log(2.0) / 2.0));
    const std::vector<Request> r = fixed(20000, 10, 10, 5.0, 42);
    const double mean_gap = r.back().arrival_s / static_cast<double>(r.size() - 1);
    CHECK(mean_gap == Approx(0.2).epsilon(0.03));  // 3 % ~ 4 standard errors of 20,000 draws
    for (size_t i = 1; i < r.size(); ++i) REQUIRE(r[i].arrival_s >= r[i - 1].arrival_s);
}

TEST_CASE("KV-length bucketing changes results by less than 1 %", "[serving]") {
    RequestSource s;
    s.count = 1500;
    s.rate = 10;
    s.seed = 5;
    s.prompt_tokens = {97, 611, 333, 1500};
    s.output_tokens = {33, 250, 129};
    DeviceIterationModel exact = a100_llama(1);
    DeviceIterationModel bucketed = a100_llama(16);
    const ServingResult re = serve(exact, make_requests(s), SchedulerOptions{});
    const ServingResult rb = serve(bucketed, make_requests(s), SchedulerOptions{});
    CHECK(rb.tpot_s.mean == Approx(re.tpot_s.mean).epsilon(0.01));
    CHECK(rb.tpot_s.p99 == Approx(re.tpot_s.p99).epsilon(0.01));
    CHECK(rb.ttft_s.p50 == Approx(re.ttft_s.p50).epsilon(0.01));
    CHECK(rb.tokens_per_s == Approx(re.tokens_per_s).epsilon(0.01));
    CHECK(rb.simulated_shapes < re.simulated_shapes);
}

TEST_CASE("chunked prefill serves every request and bounds iteration tokens", "[serving]") {
    DeviceIterationModel m = a100_llama();
    SchedulerOptions so;
    so.chunked_prefill = 512;
    const ServingResult r = serve(m, fixed(300, 1500, 100, 10.0, 2), so);
    for (const RequestResult& q : r.requests) {
        CHECK(q.finish_s >= q.first_token_s);
        CHECK(q.first_token_s > q.req.arrival_s);
    }
    // A 1500-token prompt needs three 512-token iterations at least.
    DeviceIterationModel one = a100_llama();
    const ServingResult single = serve(one, fixed(1, 1500, 2, 0), so);
    CHECK(single.iterations == 3 + 1);
    CHECK(single.requests[0].first_token_s > m.cost(prefill_of(1500)).time_s);
}

TEST_CASE("energy per token and average power are physical", "[serving]") {
    DeviceIterationModel m = a100_llama();
    const ServingResult r = serve(m, fixed(200, 512, 128, 4.0), SchedulerOptions{});
    const arch::DeviceSpec d = device("a100");
    CHECK(r.energy_per_token_j > 0);
    const double power = r.energy_j / r.makespan_s;
    CHECK(power >= d.static_power_W * 0.999);
    CHECK(power <= d.tdp_W);
    CHECK(r.busy_s <= r.makespan_s * (1 + 1e-12));
}

TEST_CASE("mlsim serve writes the requests table and reports bad input as located errors", "[serving][cli]") {
    test::TempDir dir("serve");
    const std::string db = dir.file("s.db");
    const auto out =
        test::run_mlsim(fmt::format("serve --system a100 --model llama2-7b --rate 4 --requests 50 "
                                    "--seed 3 --db '{}'",
                                    db));
    REQUIRE(out.status == 0);
    CHECK(test::contains(out.text, "TTFT"));
    CHECK(test::query(db, "SELECT COUNT(*) FROM requests WHERE run_id = 1") ==
          std::vector<std::string>{"50|"});
    CHECK(test::query(db, "SELECT mode FROM runs") == std::vector<std::string>{"serving|"});
    CHECK(test::query(db,
                      "SELECT COUNT(*) FROM requests WHERE first_token_s < arrival_s OR finish_s < "
                      "first_token_s") == std::vector<std::string>{"0|"});
    CHECK(!test::query(db, "SELECT value FROM serving_metrics WHERE name = 'ttft_p99_s'").empty());
    CHECK(!test::query(db, "SELECT COUNT(*) FROM kv_occupancy").empty());
    // One output token each: no request has a time per output token. It printed and stored TPOT 0 s.
    const std::string db1 = dir.file("one.db");
    const auto one = test::run_mlsim(
        fmt::format("serve --system a100 --model llama2-7b --rate 0 --requests 5 --output 1 --db '{}'", db1));
    REQUIRE(one.status == 0);
    CHECK(test::contains(one.text, "TPOT      none (no request generated a second token)"));
    CHECK(test::query(db1, "SELECT COUNT(*) FROM serving_metrics WHERE name LIKE 'tpot%'") ==
          std::vector<std::string>{"0|"});
    CHECK(test::query(db1, "SELECT COUNT(*) FROM serving_metrics WHERE name = 'ttft_p50_s'") ==
          std::vector<std::string>{"1|"});

    const std::string trace = dir.file("t.csv");
    std::ofstream(trace) << "arrival_s,prompt_tokens,output_tokens\n0,100,10\n0.5,abc,10\n";
    auto bad = test::run_mlsim(fmt::format("serve --trace '{}'", trace));
    CHECK(bad.status == 2);
    CHECK(test::contains(bad.text, "t.csv:3:"));
    CHECK(test::contains(bad.text, "prompt_tokens 'abc' is not a number"));
    std::ofstream(trace) << "arrival_s,prompt_tokens,output_tokens\n0,100,10\n# long\n0.5,4000,200\n";
    bad = test::run_mlsim(fmt::format("serve --trace '{}'", trace));
    CHECK(bad.status == 2);
    CHECK(test::contains(bad.text, "t.csv:4:1"));
    CHECK(test::contains(bad.text, "exceed llama2-7b's context of 4096 tokens"));
    bad = test::run_mlsim("serve --model llama2-7 --requests 5");
    CHECK(bad.status == 2);
    CHECK(test::contains(bad.text, "did you mean 'llama2-7b'"));
    bad = test::run_mlsim("serve --rate -1");
    CHECK(bad.status == 2);
    bad = test::run_mlsim("serve --prompt 4000 --output 200");
    CHECK(bad.status == 2);
    CHECK(test::contains(bad.text, "context"));
    bad = test::run_mlsim("serve --model llama2-70b --system a100");
    CHECK(bad.status == 2);
    CHECK(test::contains(bad.text, "does not fit"));
    // A KV capacity below one token is the option's fault, not the model's size.
    bad = test::run_mlsim("serve --model gpt2 --kv-capacity 1KB");
    CHECK(bad.status == 2);
    CHECK(test::contains(bad.text, "--kv-capacity: 1000 B holds no token of gpt2's KV cache"));
    // A KV cache given outright shares the memory with the weights: neither may go past it.
    bad = test::run_mlsim("serve --model llama2-70b --system a100 --kv-capacity 10GB --requests 5");
    CHECK(bad.status == 2);
    CHECK(test::contains(bad.text,
                         "--kv-capacity: a KV cache of 10.00 GB does not fit on a100 beside llama2-70b's"));
    bad = test::run_mlsim("serve --model llama2-7b --system a100 --kv-capacity 75GB --requests 5");
    CHECK(bad.status == 2);
    CHECK(test::contains(bad.text, "--kv-capacity: a KV cache of 75.00 GB does not fit"));
    CHECK(test::run_mlsim("serve --model llama2-7b --system a100 --kv-capacity 60GB --requests 5").status ==
          0);
    // Arrivals beyond the simulated-time limit: a request's milliseconds would vanish in its arrival time.
    bad = test::run_mlsim("serve --model gpt2 --requests 5 --rate 1e-14");
    CHECK(bad.status == 2);
    CHECK(test::contains(bad.text, "--rate: 5 requests at 1e-14 req/s arrive over about"));
    std::ofstream(trace) << "arrival_s,prompt_tokens,output_tokens\n1e20,10,10\n";
    bad = test::run_mlsim(fmt::format("serve --model gpt2 --trace '{}'", trace));
    CHECK(bad.status == 2);
    CHECK(test::contains(bad.text,
                         "t.csv:2:1: error: trace: arrival_s 1e+20 is beyond the simulated-time limit"));
}

TEST_CASE("a serving run appends to an older results database, which stays readable", "[serving][db]") {
    test::TempDir dir("serve-v3");
    const std::string db = dir.file("old.db");
    std::filesystem::copy_file(std::string(MLSIM_SOURCE_DIR) + "/tests/db/data/schema_v3.db", db);
    const std::vector<std::string> before =
        test::query(db, "SELECT run_id, model, total_time_s FROM runs ORDER BY run_id");
    REQUIRE(!before.empty());
    const auto out = test::run_mlsim(fmt::format("serve --requests 20 --rate 2 --db '{}'", db));
    REQUIRE(out.status == 0);
    CHECK(test::query(db, "SELECT value FROM meta WHERE key = 'schema_version'") ==
          std::vector<std::string>{std::to_string(db::schema::current_version) + "|"});
    std::vector<std::string> after =
        test::query(db, "SELECT run_id, model, total_time_s FROM runs ORDER BY run_id");
    REQUIRE(after.size() == before.size() + 1);
    after.pop_back();
    CHECK(after == before);
    CHECK(test::query(db, "SELECT COUNT(*) FROM requests") == std::vector<std::string>{"20|"});
}

TEST_CASE("tensor-parallel serving splits the work and pays the ring collectives", "[serving][tp]") {
    const arch::SystemSpec node = exp::load_system_file(exp::resolve_system_path("dgx-a100-node"));
    const DecoderShape s = decoder_shape("llama2-13b", {}, "model");
    std::vector<arch::net::VertexId> ranks;
    for (size_t i = 0; i < 2; ++i) ranks.push_back(*node.topology->find_device(node.devices[i].name));
    DeviceModelOptions o1, o2;
    o2.tp = 2;
    o2.comm = ring_comm(*node.topology, ranks);
    // NVLink3 through the NVSwitch: 12 x 25 GB/s per direction; 0.6 us a step (link, switch, link).
    CHECK(o2.comm.all_reduce(0).time_s == Approx(2 * 0.6e-6).epsilon(1e-6));
    CHECK(o2.comm.all_reduce(300e6).time_s == Approx(2 * (0.6e-6 + 150e6 / 300e9)).epsilon(1e-6));
    DeviceIterationModel one(node.device, s, o1), two(node.device, s, o2);
    CHECK(two.kv_bytes_per_token() == Approx(one.kv_bytes_per_token() / 2));
    CHECK(two.weight_bytes_per_rank() < 0.51 * one.weight_bytes_per_rank());
    CHECK(two.weight_bytes_per_rank() > 0.49 * one.weight_bytes_per_rank());
    const Batch step = decode_of(std::vector<int64_t>(32, 1000));
    const double t1 = one.cost(step).time_s, t2 = two.cost(step).time_s;
    CHECK(t2 < t1);
    CHECK(t2 > t1 / 2);  // the collectives and the launch overheads do not shrink
    // The group's energy: both ranks' ops and static power, plus the links.
    CHECK(two.cost(step).energy_j > one.cost(step).energy_j * 0.9);

    ServeOptions so;
    so.system = "dgx-a100-node";
    so.model = "llama2-70b";
    so.tp = 8;
    so.requests.count = 200;
    so.requests.rate = 4;
    const ServeRun run = run_serving(so);
    CHECK(run.result.requests.size() == 200);
    CHECK(run.result.tpot_s.p50 > 0);
    so.system = "a100";
    CHECK_THROWS_AS(run_serving(so), cfg::UserError);  // one device, no network
    so.system = "dgx-a100-node";
    so.tp = 3;  // 64 heads do not split over 3 ranks
    CHECK_THROWS_AS(run_serving(so), cfg::UserError);
}

namespace {

// Two A100s joined by one link of the given bandwidth and latency (a pipeline of two stages).
std::string two_gpu_system(const test::TempDir& dir, const char* bandwidth, const char* latency) {
    static int n = 0;
    const std::string path = dir.file(fmt::format("two-{}.yaml", ++n));
    std::ofstream(path) << fmt::format(
        "system:\n  name: two-a100\n  device: a100\n  nodes:\n    - {{name: gpu, devices: 2}}\n"
        "  links:\n    - {{from: gpu.0, to: gpu.1, kind: other, bandwidth: {}, latency: {}}}\n",
        bandwidth, latency);
    return path;
}

ServeOptions pp_options(const std::string& system, int64_t pp, int64_t count, double rate) {
    ServeOptions o;
    o.system = system;
    o.model = "llama2-7b";
    o.pp = pp;
    o.requests.count = count;
    o.requests.rate = rate;
    o.requests.prompt_tokens = {512};
    o.requests.output_tokens = {64};
    return o;
}

}  // namespace

TEST_CASE("pipeline stages split the layers as the parallel lowering does", "[serving][pp]") {
    CHECK(stage_layer_split(32, 2) == std::vector<int64_t>{16, 16});
    CHECK(stage_layer_split(80, 3) == std::vector<int64_t>{27, 27, 26});
    CHECK(stage_layer_split(5, 5) == std::vector<int64_t>{1, 1, 1, 1, 1});
    // One stage is the single-device model: the same costs, the same served requests.
    DeviceModelOptions o;
    const DecoderShape s = decoder_shape("llama2-7b", {}, "model");
    PipelineIterationModel one(device("a100"), s, {PipelineIterationModel::stage_options(o, s, 0, 1)}, {});
    DeviceIterationModel plain(device("a100"), s, o);
    const Batch b = decode_of({100, 300, 700});
    CHECK(one.cost(b).time_s == plain.cost(b).time_s);
    CHECK(one.kv_capacity_bytes() == Approx(plain.kv_capacity_bytes()).epsilon(1e-12));
    const ServingResult r1 = serve(one, fixed(60, 300, 40, 20), SchedulerOptions{});
    const ServingResult r2 = serve(plain, fixed(60, 300, 40, 20), SchedulerOptions{});
    REQUIRE(r1.requests.size() == r2.requests.size());
    for (size_t i = 0; i < r1.requests.size(); ++i) {
        CHECK(r1.requests[i].first_token_s == r2.requests[i].first_token_s);
        CHECK(r1.requests[i].finish_s == r2.requests[i].finish_s);
    }
    CHECK(r1.energy_j == r2.energy_j);

    // Two stages hold the model between them: layers, weights and KV bytes per token split in half (the
    // embedding on the first, the head on the second), and their compute adds up to the whole model's.
    const auto st0 = PipelineIterationModel::stage_options(o, s, 0, 2);
    const auto st1 = PipelineIterationModel::stage_options(o, s, 1, 2);
    DeviceIterationModel a(device("a100"), s, st0), z(device("a100"), s, st1);
    CHECK(a.kv_bytes_per_token() == Approx(plain.kv_bytes_per_token() / 2));
    CHECK(a.weight_bytes_per_rank() + z.weight_bytes_per_rank() ==
          Approx(plain.weight_bytes_per_rank()).epsilon(1e-12));
    for (const Batch& x : {prefill_of(512), decode_of(std::vector<int64_t>(16, 600))})
        CHECK(a.cost(x).time_s + z.cost(x).time_s == Approx(plain.cost(x).time_s).epsilon(1e-6));
    // A stage without the LM head is cheaper at the same layer count.
    CHECK(z.cost(prefill_of(512)).time_s > a.cost(prefill_of(512)).time_s);
}

TEST_CASE("a pipeline's first token pays the P-1 stage-to-stage sends", "[serving][pp]") {
    test::TempDir dir("serve-pp");
    // 1 GB/s and 50 us: a 512-token prompt's hidden states and residual (2 x 512 x 4096 x 2 B = 8.4 MB)
    // take 8.4 ms, visible beside the ~60 ms prefill.
    const std::string slow = two_gpu_system(dir, "1GB/s", "50us");
    const ServeRun pp = run_serving(pp_options(slow, 2, 1, 0));
    const ServeRun one = run_serving(pp_options(slow, 1, 1, 0));
    const double send = 2.0 * 512 * 4096 * 2 / 1e9 + 50e-6;
    const double ttft_pp = pp.result.requests[0].first_token_s, ttft_1 = one.result.requests[0].first_token_s;
    // The stages' compute adds up to the single device's (checked above); the rest is the send.
    CHECK(ttft_pp - ttft_1 == Approx(send).epsilon(0.02));
    CHECK(ttft_pp > ttft_1 + send * 0.99);
    // Each decode step sends one token's activations: 16 KB + 50 us.
    const double tpot_pp = pp.result.tpot_s.p50, tpot_1 = one.result.tpot_s.p50;
    CHECK(tpot_pp - tpot_1 == Approx(2.0 * 4096 * 2 / 1e9 + 50e-6).epsilon(0.05));
}

TEST_CASE("pipeline-parallel serving on a fast link approaches the ideal pipeline", "[serving][pp]") {
    test::TempDir dir("serve-pp-ideal");
    // An offline batch of 256 requests: the two schedulers stay balanced, so each stage works nearly all
    // the time (an ideal pipeline has no bubble); over a slow link the sends open bubbles.
    const ServeRun fast = run_serving(pp_options(two_gpu_system(dir, "600GB/s", "1us"), 2, 256, 0));
    const ServeRun slow = run_serving(pp_options(two_gpu_system(dir, "2GB/s", "1ms"), 2, 256, 0));
    const ServeRun one = run_serving(pp_options(two_gpu_system(dir, "600GB/s", "1us"), 1, 256, 0));
    REQUIRE(fast.result.stage_busy_s.size() == 2);
    for (double b : fast.result.stage_busy_s) {
        CHECK(b <= fast.result.makespan_s);
        CHECK(b / fast.result.makespan_s > 0.9);
    }
    for (size_t s = 0; s < 2; ++s)
        CHECK(slow.result.stage_busy_s[s] / slow.result.makespan_s <
              fast.result.stage_busy_s[s] / fast.result.makespan_s - 0.05);
    // Twice the memory for the KV cache and two devices' bandwidth: at least the one device's throughput.
    CHECK(fast.result.tokens_per_s > one.result.tokens_per_s);
    CHECK(fast.result.total_blocks > one.result.total_blocks);
    // Every request is served once, with its tokens.
    CHECK(fast.result.requests.size() == 256);
    for (const RequestResult& r : fast.result.requests) CHECK(r.finish_s >= r.first_token_s);
    // Bad plans are located errors.
    ServeOptions bad = pp_options("a100", 2, 4, 0);
    CHECK_THROWS_AS(run_serving(bad), cfg::UserError);  // one device, no network
    bad.system = "dgx-a100-node";
    bad.pp = 33;  // more stages than layers
    CHECK_THROWS_AS(run_serving(bad), cfg::UserError);
    bad.pp = 4;
    bad.tp = 4;  // 16 devices on an 8-GPU node
    CHECK_THROWS_AS(run_serving(bad), cfg::UserError);
}

TEST_CASE("tensor-parallel collectives come from the network model", "[serving][tp][net]") {
    const arch::SystemSpec node = exp::load_system_file(exp::resolve_system_path("dgx-a100-node"));
    std::vector<arch::net::VertexId> ranks;
    for (size_t i = 0; i < 8; ++i) ranks.push_back(*node.topology->find_device(node.devices[i].name));
    const GroupComm net = network_comm(node, ranks, "fp16");
    const GroupComm ring = ring_comm(*node.topology, ranks);
    // Large messages are bandwidth-bound: the network model's ring through the NVSwitch is within 15 % of
    // the alpha-beta ring at the links' payload rate (line rate x `efficiency`, 0.8 on NVLink3: the
    // preset's source), never faster than 0.9 x; the network model adds NCCL's protocol costs and the
    // reduction. The bare ring runs at line rate.
    const double eff = node.topology->link(0).props.efficiency;
    REQUIRE(eff > 0);
    REQUIRE(eff <= 1);
    const double big = 256e6;
    CHECK(net.all_reduce(big).time_s > 0.9 * ring.all_reduce(big).time_s / eff);
    CHECK(net.all_reduce(big).time_s < 1.15 * ring.all_reduce(big).time_s / eff);
    // Small ones pay NCCL's per-call latency (LL: 3.6 us), which the bare ring lacks, and take the
    // latency-optimal tree instead of the ring's 2(n-1) = 14 steps: the same order as the ring's 8.5 us.
    CHECK(net.all_reduce(16384).time_s > 3.6e-6);
    CHECK(net.all_reduce(16384).time_s < 2 * ring.all_reduce(16384).time_s);
    // Memoized: the same size gives the same answer.
    CHECK(net.all_reduce(16384).time_s == net.all_reduce(16384).time_s);
    CHECK(net.all_gather(1e6).time_s > 0);
    // A serving run with the ring fallback differs from the network model's.
    ServeOptions so;
    so.system = "dgx-a100-node";
    so.model = "llama2-70b";
    so.tp = 8;
    so.requests.count = 50;
    so.requests.rate = 4;
    const ServeRun a = run_serving(so);
    so.ring_collectives = true;
    const ServeRun b = run_serving(so);
    CHECK(a.result.tpot_s.p50 > b.result.tpot_s.p50);
    CHECK(a.info.config_hash != b.info.config_hash);
}
