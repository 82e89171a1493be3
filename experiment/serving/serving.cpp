#include "experiment/serving/serving.h"

#include <fmt/format.h>

#include <cmath>
#include <limits>
#include <map>
#include <memory>

#include "arch/net/impl/flow_network.h"
#include "experiment/collective_study.h"
#include "experiment/serving/pipeline.h"
#include "sim/config/error.h"
#include "sim/config/loader.h"
#include "sim/core/check.h"
#include "workloads/dtype.h"

namespace mlsim::serving {

namespace {

const cfg::SourceLoc k_cl{"<command line>", 0, 0};

cfg::Node scalar(const std::string& value, const std::string& path) {
    return cfg::Node::make_scalar(value, k_cl, path);
}

}  // namespace

GroupComm ring_comm(const arch::net::Topology& topo, const std::vector<arch::net::VertexId>& ranks) {
    double latency = 0, bw = std::numeric_limits<double>::infinity(), energy = 0;
    for (size_t i = 0; i < ranks.size(); ++i) {
        const std::optional<arch::net::Route> r = topo.route(ranks[i], ranks[(i + 1) % ranks.size()]);
        if (!r)
            cfg::fail(k_cl, "--tp",
                      fmt::format("no route from {} to {}", topo.vertex(ranks[i]).name,
                                  topo.vertex(ranks[(i + 1) % ranks.size()]).name));
        latency = std::max(latency, r->latency.to_seconds());
        bw = std::min(bw, r->bottleneck_Bps);
        double e = 0;
        for (const arch::net::Hop& h : r->hops) e += topo.link(h.link).props.energy_J_per_byte;
        energy = std::max(energy, e);
    }
    const double n = static_cast<double>(ranks.size());
    GroupComm c;
    // Ring traffic: every rank sends S/n per step.
    c.all_reduce = [=](double bytes) {
        return CommCost{2 * (n - 1) * (latency + bytes / n / bw), 2 * (n - 1) * bytes * energy};
    };
    c.all_gather = [=](double bytes) {
        return CommCost{(n - 1) * (latency + bytes / n / bw), (n - 1) * bytes * energy};
    };
    return c;
}

namespace {

// One network model shared by a serving run's collectives and sends. Each distinct call is simulated
// once on an idle network (a probe clock moved past the previous call's end, so no call sees another's
// traffic) and memoized: serving times an iteration's communication as if the group's links were its
// own, which they are within one TP group or one stage boundary of a single replica.
struct NetworkProbe {
    arch::net::FlowNetwork net;
    Tick clock = Tick::zero();
    std::map<std::pair<int, int64_t>, CommCost> memo;

    NetworkProbe(const arch::SystemSpec& sys, const std::string& dtype)
        : net(sys.topology, exp::network_options_for(sys, dtype)) {}

    double link_energy(const std::vector<arch::net::LinkBytes>& bytes) const {
        double e = 0;
        for (const arch::net::LinkBytes& b : bytes)
            e += (b.a_to_b + b.b_to_a) * net.topology().link(b.link).props.energy_J_per_byte;
        return e;
    }
    // Start every call a microsecond after the last one ended: the links are idle again.
    Tick next_start(Tick end) { return std::max(clock, end) + Tick::from_seconds(1e-6); }

    CommCost collective(arch::net::CollectiveKind kind, const std::vector<arch::net::VertexId>& group,
                        double bytes_in, int tag) {
        const auto bytes = static_cast<int64_t>(std::ceil(bytes_in));
        const auto key = std::make_pair(tag, bytes);
        if (auto it = memo.find(key); it != memo.end()) return it->second;
        arch::net::CollectiveRequest q;
        q.kind = kind;
        // NCCL picks the algorithm and the protocol per call from its tuning model; so does the network
        // model (arch/net/impl/flow_network.h, automatic).
        q.algorithm = arch::net::CollectiveAlgorithm::automatic;
        q.protocol = arch::net::Protocol::automatic;
        q.group = group;
        q.bytes = bytes;
        q.start = clock;
        const arch::net::CollectiveResult r = net.collective(q);
        clock = next_start(r.end);
        const CommCost c{r.duration().to_seconds(), link_energy(r.link_bytes)};
        memo.emplace(key, c);
        return c;
    }
    // Every pair (src[i], dst[i]) sends `bytes` at once; the send ends when the last one arrives.
    CommCost sends(const std::vector<arch::net::VertexId>& src, const std::vector<arch::net::VertexId>& dst,
                   double bytes_in, int tag) {
        const auto bytes = static_cast<int64_t>(std::ceil(bytes_in));
        const auto key = std::make_pair(tag, bytes);
        if (auto it = memo.find(key); it != memo.end()) return it->second;
        const Tick start = clock;
        Tick end = start;
        double energy = 0;
        for (size_t i = 0; i < src.size(); ++i) {
            const arch::net::Transfer t = net.transfer(src[i], dst[i], bytes, start);
            end = std::max(end, t.end);
            for (const arch::net::Hop& h : t.hops)
                energy += static_cast<double>(bytes) * net.topology().link(h.link).props.energy_J_per_byte;
        }
        clock = next_start(end);
        const CommCost c{(end - start).to_seconds(), energy};
        memo.emplace(key, c);
        return c;
    }
};

GroupComm group_comm(const std::shared_ptr<NetworkProbe>& probe,
                     const std::vector<arch::net::VertexId>& ranks, int tag) {
    GroupComm c;
    c.all_reduce = [probe, ranks, tag](double bytes) {
        return probe->collective(arch::net::CollectiveKind::all_reduce, ranks, bytes, 2 * tag);
    };
    c.all_gather = [probe, ranks, tag](double bytes) {
        return probe->collective(arch::net::CollectiveKind::all_gather, ranks, bytes, 2 * tag + 1);
    };
    return c;
}

}  // namespace

GroupComm network_comm(const arch::SystemSpec& system, const std::vector<arch::net::VertexId>& ranks,
                       const std::string& dtype) {
    MLSIM_CHECK(system.has_network(), "serving: network_comm on a system without a network");
    return group_comm(std::make_shared<NetworkProbe>(system, dtype), ranks, 0);
}

ServeRun run_serving(const ServeOptions& opt) {
    ServeRun run;
    run.system = exp::apply_overrides(exp::load_system_file(exp::resolve_system_path(opt.system)),
                                      opt.device_overrides);
    run.shape = decoder_shape(opt.model, k_cl, "--model");
    const std::optional<wl::DType> dtype = wl::parse_dtype(opt.dtype);
    if (!dtype)
        cfg::fail(
            k_cl, "--dtype",
            fmt::format("unknown data type '{}'; one of {}", opt.dtype, fmt::join(wl::dtype_names(), ", ")));
    (void)run.system.device.peak_for(opt.dtype);  // a UserError when the device does not compute in it

    SchedulerOptions sched = opt.scheduler;
    if (sched.max_batched_tokens <= 0)
        sched.max_batched_tokens = std::max<int64_t>(run.shape.max_context, 2048);
    const auto positive = [](int64_t v, const char* key, int64_t hi) {
        if (v < 1 || v > hi) cfg::fail(k_cl, key, fmt::format("must be from 1 to {}, got {}", hi, v));
    };
    positive(sched.max_batch, "--max-batch", 1 << 20);
    positive(sched.max_batched_tokens, "--max-tokens", 1 << 24);
    positive(sched.block, "--block", 1 << 16);
    positive(opt.kv_bucket, "--kv-bucket", 1 << 16);
    if (sched.chunked_prefill < 0 || sched.chunked_prefill > (1 << 24))
        cfg::fail(k_cl, "--chunked-prefill",
                  fmt::format("must be from 0 (off) to {}, got {}", 1 << 24, sched.chunked_prefill));
    if (!(opt.memory_utilization > 0 && opt.memory_utilization <= 1))
        cfg::fail(k_cl, "--mem-util", fmt::format("must be in (0, 1], got {}", opt.memory_utilization));
    if (opt.requests.trace.empty()) {
        positive(opt.requests.count, "--requests", 1'000'000);
        if (!(opt.requests.rate >= 0) || !std::isfinite(opt.requests.rate))
            cfg::fail(k_cl, "--rate",
                      fmt::format("must be a finite rate >= 0 (0: all at once), got {}", opt.requests.rate));
        for (int64_t p : opt.requests.prompt_tokens) positive(p, "--prompt", 1 << 24);
        for (int64_t o : opt.requests.output_tokens) positive(o, "--output", 1 << 24);
    }
    std::vector<Request> reqs = make_requests(opt.requests);
    for (const Request& r : reqs)
        if (r.prompt_tokens + r.output_tokens > run.shape.max_context)
            cfg::fail(
                opt.requests.trace.empty() ? k_cl : cfg::SourceLoc{opt.requests.trace, r.line, 1},
                opt.requests.trace.empty() ? "--prompt" : "trace",
                fmt::format("request {}: prompt {} + output {} tokens exceed {}'s context of {} tokens", r.id,
                            r.prompt_tokens, r.output_tokens, run.shape.name, run.shape.max_context));

    DeviceModelOptions dm;
    dm.dtype = *dtype;
    dm.kv_bucket = opt.kv_bucket;
    dm.memory_utilization = opt.memory_utilization;
    dm.max_batched_tokens = sched.chunked_prefill > 0 ? sched.chunked_prefill : sched.max_batched_tokens;
    dm.max_batch = sched.max_batch;
    dm.kv_capacity_override = opt.kv_capacity_bytes;
    if (opt.tp < 1 || opt.tp > 4096)
        cfg::fail(k_cl, "--tp", fmt::format("must be from 1 to 4096, got {}", opt.tp));
    if (opt.pp < 1 || opt.pp > run.shape.layers)
        cfg::fail(k_cl, "--pipeline-parallel",
                  fmt::format("must be from 1 to {}'s {} layers, got {}", run.shape.name, run.shape.layers,
                              opt.pp));
    dm.tp = opt.tp;
    const int64_t group = opt.tp * opt.pp;
    std::unique_ptr<IterationModel> model;
    if (group > 1) {
        // The group: the first tp x pp devices of the default type (hosts run none); rank = t + tp * s
        // (pipeline.h).
        std::vector<arch::net::VertexId> ranks;
        if (run.system.has_network())
            for (std::size_t i = 0; i < run.system.devices.size(); ++i)
                if (run.system.default_type_worker(i) && static_cast<int64_t>(ranks.size()) < group)
                    if (const auto v = run.system.topology->find_device(run.system.devices[i].name))
                        ranks.push_back(*v);
        if (static_cast<int64_t>(ranks.size()) < group)
            cfg::fail(
                k_cl, opt.tp > 1 ? "--tp" : "--pipeline-parallel",
                fmt::format("{} has {} networked {} devices; tensor parallel {} x pipeline parallel {} "
                            "needs {} (a system file with nodes and links, e.g. dgx-a100-node)",
                            run.system.name, ranks.size(), run.system.device.name, opt.tp, opt.pp, group));
        const auto probe = std::make_shared<NetworkProbe>(run.system, opt.dtype);
        const auto stage_ranks = [ranks, tp = opt.tp](int64_t st) {
            return std::vector<arch::net::VertexId>(ranks.begin() + st * tp, ranks.begin() + (st + 1) * tp);
        };
        std::vector<DeviceModelOptions> stages;
        for (int64_t st = 0; st < opt.pp; ++st) {
            DeviceModelOptions so = PipelineIterationModel::stage_options(dm, run.shape, st, opt.pp);
            if (opt.tp > 1)
                so.comm = opt.ring_collectives ? ring_comm(*run.system.topology, stage_ranks(st))
                                               : group_comm(probe, stage_ranks(st), static_cast<int>(st));
            stages.push_back(so);
        }
        const auto send = [probe, stage_ranks, pp = opt.pp](int64_t st, double bytes) {
            return probe->sends(stage_ranks(st), stage_ranks(st + 1), bytes, static_cast<int>(2 * pp + st));
        };
        model = std::make_unique<PipelineIterationModel>(run.system.device, run.shape, stages, send);
        const auto& pm = static_cast<const PipelineIterationModel&>(*model);
        run.weight_bytes = pm.max_weight_bytes_per_rank();
        run.workspace_bytes = pm.workspace_bytes();
    } else {
        auto dev = std::make_unique<DeviceIterationModel>(run.system.device, run.shape, dm);
        run.weight_bytes = dev->weight_bytes_per_rank();
        run.workspace_bytes = dev->workspace_bytes();
        model = std::move(dev);
    }
    run.kv_capacity_bytes = model->kv_capacity_bytes();
    run.result = serve(*model, std::move(reqs), sched);

    // The resolved config: everything that decides the numbers.
    cfg::Node s = cfg::Node::make_map(k_cl, "experiment.serving");
    const auto put = [&](const char* k, const std::string& v) {
        s.set(k, scalar(v, std::string("experiment.serving.") + k));
    };
    put("model", run.shape.name);
    put("dtype", opt.dtype);
    put("tensor_parallel", std::to_string(opt.tp));
    // Written only when used, so that the single-stage runs keep the hash they had before.
    if (opt.pp > 1) put("pipeline_parallel", std::to_string(opt.pp));
    if (opt.ring_collectives) put("collectives", "ring");
    if (opt.requests.trace.empty()) {
        put("requests", std::to_string(opt.requests.count));
        put("rate", fmt::format("{}", opt.requests.rate));
        put("seed", std::to_string(opt.requests.seed));
        put("prompt_tokens", fmt::format("{}", fmt::join(opt.requests.prompt_tokens, ",")));
        put("output_tokens", fmt::format("{}", fmt::join(opt.requests.output_tokens, ",")));
    } else {
        put("trace", opt.requests.trace);
    }
    put("max_batch", std::to_string(sched.max_batch));
    put("max_batched_tokens", std::to_string(sched.max_batched_tokens));
    put("chunked_prefill", std::to_string(sched.chunked_prefill));
    put("block", std::to_string(sched.block));
    put("kv_bucket", std::to_string(opt.kv_bucket));
    put("memory_utilization", fmt::format("{}", opt.memory_utilization));
    put("kv_capacity_bytes", fmt::format("{}", run.kv_capacity_bytes));
    cfg::Node exp = cfg::Node::make_map(k_cl, "experiment");
    exp.set("serving", std::move(s));
    cfg::Node root = cfg::Node::make_map(k_cl, "");
    root.set("experiment", std::move(exp));
    root.set("system", run.system.resolved);
    run.resolved_yaml = cfg::to_yaml(root);

    db::RunInfo& info = run.info;
    info.config_yaml = run.resolved_yaml;
    info.config_hash = db::config_hash(run.resolved_yaml);
    info.system = run.system.name;
    info.device = run.system.device.name;
    info.model = run.shape.name;
    info.mode = "serving";
    info.dtype = opt.dtype;
    info.batch = sched.max_batch;
    info.seq = 0;
    info.peak_flops_per_s = run.system.device.peak_for(opt.dtype);
    info.mem_bandwidth_Bps = run.system.device.main_memory().bandwidth_Bps;
    info.device_model = run.system.device.model;
    info.tdp_W = run.system.device.tdp_W;
    return run;
}

db::ServingRows to_serving_rows(const ServeRun& run) {
    db::ServingRows rows;
    const ServingResult& r = run.result;
    rows.makespan_s = r.makespan_s;
    rows.energy_j = r.energy_j;
    for (const RequestResult& q : r.requests)
        rows.requests.push_back(db::RequestRow{q.req.id, q.req.arrival_s, q.first_token_s, q.finish_s,
                                               q.req.prompt_tokens, q.req.output_tokens, q.preemptions});
    for (const OccupancySample& o : r.occupancy)
        rows.occupancy.push_back(
            db::OccupancyRow{o.time_s, o.used_blocks, r.total_blocks, o.running, o.waiting});
    const auto add = [&](const char* name, double v, const char* unit) {
        rows.summary.push_back(db::ServingMetric{name, v, unit});
    };
    const auto pct = [&](const char* base, const Percentiles& p) {
        if (p.count == 0) return;  // no values (every request one token: no TPOT): no rows, not 0 s
        add(fmt::format("{}_mean_s", base).c_str(), p.mean, "s");
        add(fmt::format("{}_p50_s", base).c_str(), p.p50, "s");
        add(fmt::format("{}_p90_s", base).c_str(), p.p90, "s");
        add(fmt::format("{}_p99_s", base).c_str(), p.p99, "s");
    };
    pct("ttft", r.ttft_s);
    pct("tpot", r.tpot_s);
    pct("e2e", r.e2e_s);
    add("throughput_tokens_per_s", r.tokens_per_s, "1/s");
    add("throughput_requests_per_s", r.requests_per_s, "1/s");
    add("max_batch_reached", static_cast<double>(r.max_batch_reached), "count");
    add("iterations", static_cast<double>(r.iterations), "count");
    add("preemptions", static_cast<double>(r.preemptions), "count");
    add("energy_per_token_j", r.energy_per_token_j, "J");
    add("kv_blocks", static_cast<double>(r.total_blocks), "count");
    add("kv_capacity_bytes", run.kv_capacity_bytes, "B");
    add("kv_occupancy_mean", r.mean_kv_occupancy, "1");
    add("kv_occupancy_max", r.max_kv_occupancy, "1");
    add("busy_s", r.busy_s, "s");
    // Pipeline runs only (single-stage runs keep the rows they had): each stage's compute time.
    if (r.stage_busy_s.size() > 1)
        for (size_t st = 0; st < r.stage_busy_s.size(); ++st)
            add(fmt::format("stage{}_busy_s", st).c_str(), r.stage_busy_s[st], "s");
    return rows;
}

}  // namespace mlsim::serving
