#include "experiment/compare.h"

#include <fmt/format.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <filesystem>
#include <map>
#include <memory>
#include <set>

#include "arch/family.h"
#include "experiment/sweep.h"
#include "sim/config/error.h"
#include "sim/config/limits.h"
#include "sim/config/loader.h"
#include "sim/config/messages.h"
#include "sim/config/units.h"
#include "sim/core/check.h"
#include "workloads/dtype.h"
#include "workloads/model.h"

namespace mlsim::exp {

namespace fs = std::filesystem;
using cfg::Param;
using cfg::PType;

namespace {

// Hours in a Julian year (365.25 days): the amortisation period of a purchase price.
constexpr double k_hours_per_year = 8766.0;

Param opt(std::string name, PType type, std::string doc) {
    Param p;
    p.name = std::move(name);
    p.type = type;
    p.doc = std::move(doc);
    return p;
}

Param at_least(Param p, double min) {
    p.min = min;
    return p;
}

// A parallel degree: 1 to 2^20, the bound the plan's own check puts on every degree (workloads/parallel.cpp),
// checked here too so that products of degrees, batches and micro-batch sizes are formed from bounded
// numbers.
constexpr double k_max_degree = static_cast<double>(limits::max_parallel_degree);
Param degree(Param p) {
    p.min = 1;
    p.max = k_max_degree;
    return p;
}

Param choice(std::string name, std::vector<std::string> choices, std::optional<std::string> def,
             std::string doc) {
    Param p = opt(std::move(name), PType::choice, std::move(doc));
    p.choices = std::move(choices);
    p.default_value = std::move(def);
    return p;
}

const cfg::Schema& parallel_schema() {
    static const cfg::Schema s = [] {
        cfg::Schema p;
        p.name = "workload.parallel";
        p.doc = "the parallel plan (workloads/parallel.h); data x tensor x pipeline = the system's devices";
        p.params.push_back(opt("data", PType::string,
                               "data-parallel degree, or auto: the system's devices / (tensor x pipeline)"));
        p.params.push_back(degree(cfg::optional("tensor", PType::integer, "1", "tensor-parallel degree")));
        p.params.push_back(
            degree(cfg::optional("pipeline", PType::integer, "1", "pipeline-parallel degree")));
        p.params.push_back(degree(cfg::optional("expert", PType::integer, "1", "expert-parallel degree")));
        Param zero = cfg::optional("zero", PType::integer, "0", "ZeRO stage 0..3");
        zero.min = 0;
        zero.max = 3;
        p.params.push_back(zero);
        p.params.push_back(degree(opt("microbatches", PType::integer, "micro-batches per step")));
        p.params.push_back(at_least(
            opt("microbatch_size", PType::integer,
                "samples per micro-batch: microbatches = batch / (data x this); instead of microbatches"),
            1));
        p.params.push_back(cfg::optional("sequence_parallel", PType::boolean, "false",
                                         "Megatron sequence parallelism (needs tensor > 1)"));
        p.params.push_back(choice("schedule", {"1f1b", "gpipe"}, "1f1b", "pipeline schedule"));
        return p;
    }();
    return s;
}

const cfg::Schema& workload_schema() {
    static const cfg::Schema s = [] {
        cfg::Schema w;
        w.name = "workload";
        w.doc = "one workload: a model, how it runs, and its batch or latency target";
        w.params.push_back(cfg::required("name", PType::string, "the row label, unique in the file"));
        w.params.push_back(
            cfg::required("model", PType::string,
                          "zoo model (mlsim list models) or a model .yaml / .csv, relative to this file"));
        w.params.push_back(choice("mode", {"inference", "training"}, "inference", "what to simulate"));
        w.params.push_back(
            at_least(opt("batch", PType::integer, "samples per batch (global); default 1"), 1));
        w.params.push_back(at_least(
            opt("batch_per_replica", PType::integer,
                "with a parallel plan: samples per data-parallel replica (global batch = this x data)"),
            1));
        Param target = cfg::quantity("latency_target", cfg::Dim::time, std::nullopt,
                                     "inference: the largest batch (1, 2, 4, ... max_batch) whose latency is "
                                     "within this, instead of batch");
        target.required = false;
        w.params.push_back(target);
        w.params.push_back(at_least(
            cfg::optional("max_batch", PType::integer, "1024", "the largest batch a latency target tries"),
            1));
        w.params.push_back(
            at_least(cfg::optional("seq", PType::integer, "0", "sequence length; 0 = default"), 0));
        w.params.push_back(
            at_least(cfg::optional("image", PType::integer, "0", "image side; 0 = default"), 0));
        w.params.push_back(choice("dtype", wl::dtype_names(), std::nullopt,
                                  "data type; default: the device's (fp32, else its first type)"));
        w.params.push_back(choice("optimizer", {"sgd", "momentum", "adam"}, std::nullopt,
                                  "training optimizer; default adam"));
        w.params.push_back(opt("checkpointing", PType::boolean, "training: activation checkpointing"));
        // Embedding tables (workloads/embedding_sharding.h; the run options of the same names).
        w.params.push_back(opt("embedding_sharding", PType::string,
                               "shard the embedding tables over the system's devices: auto, table, row, "
                               "column, table-row, data, or a placement file (relative to this file); the "
                               "dense part data-parallel over every device, instead of `parallel`"));
        w.params.push_back(choice("embedding_dtype", wl::dtype_names(), std::nullopt,
                                  "the embedding tables' data type (their pooled outputs and the other ops "
                                  "stay in dtype); default: dtype"));
        w.params.push_back(
            at_least(cfg::optional("max_table_rows", PType::integer, "0",
                                   "cap every embedding-bag table at this many rows; 0 = the model's own"),
                     0));
        w.params.push_back(choice("sparse_optimizer", {"rowwise_adagrad", "unfused"}, std::nullopt,
                                  "training with embedding_sharding: how the tables are updated; default "
                                  "rowwise_adagrad"));
        Param par = opt("parallel", PType::map, "a parallel plan (multi-device systems)");
        par.sub = &parallel_schema();
        w.params.push_back(par);
        Param samples =
            opt("train_samples", PType::real, "training: samples to train, for the time to train");
        samples.min = 1;
        samples.max = 1e18;
        w.params.push_back(samples);
        // Checked by hand (a list of names): declared for the docs and the nearest-key suggestions.
        w.params.push_back(opt("systems", PType::string, "names of the systems it runs on; default all"));
        return w;
    }();
    return s;
}

std::string resolve_model(const std::string& file, const cfg::Node& v) {
    return resolve_model_ref(file, "compare", v);
}

std::string resolve_system(const std::string& file, const cfg::Node& v) {
    return resolve_system_ref(file, "compare", v);
}

cfg::SourceLoc where(const cfg::Node& n) { return n.is_scalar() || n.is_null() ? n.loc() : n.key_loc(); }

std::vector<const cfg::Node*> name_list(const cfg::Node& v, std::string_view what) {
    if (!v.is_sequence())
        cfg::fail(where(v), v.path(),
                  fmt::format("expected a list of {} (e.g. [a100, h100]), found {}", what, v.kind_name()));
    std::vector<const cfg::Node*> out;
    for (const cfg::Node& item : v.items()) {
        if (!item.is_scalar())
            cfg::fail(where(item), item.path(), fmt::format("expected a name, found {}", item.kind_name()));
        out.push_back(&item);
    }
    return out;
}

CompareWorkload load_workload(const std::string& file, const cfg::Node& raw) {
    if (!raw.is_map())
        cfg::fail(where(raw), raw.path(), fmt::format("expected a workload map, found {}", raw.kind_name()));
    cfg::Node head = raw;
    head.erase("systems");
    const cfg::Node w = cfg::validate(head, workload_schema());
    const cfg::Reader r(w, workload_schema());
    CompareWorkload out;
    out.loc = raw.key_loc();
    out.name = r.str("name");
    if (out.name.empty()) cfg::fail(r.at("name").loc(), r.at("name").path(), "must not be empty");
    ExperimentOptions& o = out.options;
    o.model = resolve_model(file, r.at("model"));
    o.mode = r.str("mode");
    const bool training = o.mode == "training";
    o.seq = r.integer("seq");
    o.image = r.integer("image");
    if (r.has("dtype")) o.dtype = r.str("dtype");
    const auto only_training = [&](std::string_view key) {
        if (r.has(key) && !training)
            cfg::fail(r.at(key).key_loc(), r.at(key).path(), "applies only to mode: training");
    };
    only_training("optimizer");
    only_training("checkpointing");
    only_training("train_samples");
    if (r.has("optimizer")) o.optimizer = r.str("optimizer");
    if (r.has("embedding_sharding")) {
        const cfg::Node& es = r.at("embedding_sharding");
        o.embedding_sharding = es.as_string();
        if (o.embedding_sharding.ends_with(".yaml") || o.embedding_sharding.ends_with(".yml")) {
            const fs::path f(o.embedding_sharding);
            o.embedding_sharding = (f.is_absolute() ? f : fs::path(file).parent_path() / f).string();
            std::error_code ec;
            if (!fs::is_regular_file(o.embedding_sharding, ec))
                cfg::fail(es.loc(), es.path(),
                          fmt::format("no placement file '{}' (relative paths are from this file's folder)",
                                      o.embedding_sharding));
        }
        if (const std::string why = wl::embedding_sharding_spec_error(o.embedding_sharding); !why.empty())
            cfg::fail(es.loc(), es.path(), why);
        if (raw.find("parallel") != nullptr)
            cfg::fail(
                r.at("parallel").key_loc(), r.at("parallel").path(),
                "embedding_sharding makes the dense part data-parallel over every device: drop `parallel`");
        if (r.has("latency_target"))
            cfg::fail(r.at("latency_target").key_loc(), r.at("latency_target").path(),
                      "a latency target searches batches on one device: drop embedding_sharding");
    }
    if (r.has("embedding_dtype")) o.embedding_dtype = r.str("embedding_dtype");
    o.max_table_rows = r.integer("max_table_rows");
    only_training("sparse_optimizer");
    if (r.has("sparse_optimizer")) {
        if (o.embedding_sharding.empty())
            cfg::fail(r.at("sparse_optimizer").key_loc(), r.at("sparse_optimizer").path(),
                      "updates sharded tables: it needs embedding_sharding");
        o.sparse_optimizer = r.str("sparse_optimizer");
    }
    if (r.has("checkpointing")) o.checkpointing = r.boolean("checkpointing");
    if (r.has("train_samples")) out.train_samples = r.real("train_samples");
    const int given =
        (r.has("batch") ? 1 : 0) + (r.has("batch_per_replica") ? 1 : 0) + (r.has("latency_target") ? 1 : 0);
    if (given > 1) {
        const char* second = r.has("latency_target") ? "latency_target" : "batch_per_replica";
        cfg::fail(r.at(second).key_loc(), r.at(second).path(),
                  "give one of batch, batch_per_replica and latency_target");
    }
    o.batch = r.has("batch") ? r.integer("batch") : 1;
    out.max_batch = r.integer("max_batch");
    if (r.has("latency_target")) {
        if (training)
            cfg::fail(r.at("latency_target").key_loc(), r.at("latency_target").path(),
                      "applies only to inference (a training step has no latency target)");
        out.latency_target_s = r.quantity("latency_target");
    }
    // An absent `parallel:` resolves to its defaults (its keys are all optional): ask the file.
    if (raw.find("parallel") != nullptr) {
        const cfg::Node& pn = r.at("parallel");
        const cfg::Reader p(pn, parallel_schema());
        if (out.latency_target_s)
            cfg::fail(pn.key_loc(), pn.path(),
                      "a latency target searches batches on one device: drop `parallel`");
        if (p.has("data")) {
            const cfg::Node& d = p.at("data");
            if (d.as_string() == "auto") {
                out.data_auto = true;
            } else {
                o.data_parallel = d.as_int();
                if (o.data_parallel < 1 || o.data_parallel > static_cast<int64_t>(k_max_degree))
                    cfg::fail(d.loc(), d.path(), "must be from 1 to 2^20, or auto");
            }
        } else {
            out.data_auto = true;
        }
        o.tensor_parallel = p.integer("tensor");
        o.pipeline_parallel = p.integer("pipeline");
        o.expert_parallel = p.integer("expert");
        o.zero = p.integer("zero");
        o.sequence_parallel = p.boolean("sequence_parallel");
        o.pipeline_schedule = p.str("schedule");
        if (p.has("microbatches") && p.has("microbatch_size"))
            cfg::fail(p.at("microbatch_size").key_loc(), p.at("microbatch_size").path(),
                      "give microbatches or microbatch_size, not both");
        if (p.has("microbatches")) o.microbatches = p.integer("microbatches");
        if (p.has("microbatch_size")) out.microbatch_size = p.integer("microbatch_size");
    } else if (r.has("batch_per_replica") && o.embedding_sharding.empty()) {
        cfg::fail(r.at("batch_per_replica").key_loc(), r.at("batch_per_replica").path(),
                  "needs a parallel plan (`parallel:`) or embedding_sharding; without one, give batch");
    }
    if (r.has("batch_per_replica")) out.batch_per_replica = r.integer("batch_per_replica");
    // The workload's own errors (a sequence or image size its model refuses, a broken model file) are the
    // file's, not a row on every system: located at the key the error names (`seq`, `image`), else at the
    // workload; an error inside a model file keeps that file's location.
    try {
        check_model_options(o);
    } catch (const cfg::UserError& e) {
        const std::string message = e.what();
        const std::string cli = "<command line>: error: ";
        if (!message.starts_with(cli)) throw;
        std::string rest = message.substr(cli.size());
        const cfg::Node* at = &raw;
        std::string path = raw.path();
        if (const std::size_t colon = rest.find(": "); colon != std::string::npos) {
            std::string key = rest.substr(0, colon);  // "image", or a flag: "--seq"
            if (key.starts_with("--")) key.erase(0, 2);
            std::replace(key.begin(), key.end(), '-', '_');
            if (!key.empty() && raw.find(key) != nullptr) {
                at = &r.at(key);
                path = at->path();
                rest = rest.substr(colon + 2);
            }
        }
        cfg::fail(at == &raw ? raw.key_loc() : at->loc(), path, rest);
    }
    if (const cfg::Node* s = raw.find("systems"))
        for (const cfg::Node* n : name_list(*s, "system names")) out.systems.push_back(n->as_string());
    return out;
}

// A pair that cannot run: the message is the row's reason (a user error of this pair, not of the file).
[[noreturn]] void pair_error(const CompareWorkload& w, const std::string& message) {
    cfg::fail(w.loc, "workload " + w.name, message);
}

struct PairPlan {
    ExperimentOptions options;
    int64_t replicas = 1;  // independent copies of a one-device run (inference without a plan)
};

// a x b, a pair error naming `what` when it does not fit in 64 bits (batch_per_replica and microbatch_size
// are bounded only by int64).
int64_t product(const CompareWorkload& w, int64_t a, int64_t b, std::string_view what) {
    int64_t out = 0;
    if (__builtin_mul_overflow(a, b, &out))
        pair_error(w, fmt::format("{} = {} x {} is too large", what, a, b));
    return out;
}

// The devices of the system's default type (device_types[0]), which a one-device run models: all of them in
// a system of one type; in a mixed one (pcie-4gpu: 4 x a100 + 1 x xeon-8380) the others are not replicas.
int64_t default_type_devices(const arch::SystemSpec& sys) {
    if (sys.devices.empty()) return sys.device_count;
    // Hosts (`host: true`) run no workload, whatever their type.
    int64_t n = 0;
    for (std::size_t i = 0; i < sys.devices.size(); ++i) n += sys.default_type_worker(i) ? 1 : 0;
    return n;
}

// The summed TDP of the devices that run: `n` copies of the default type (replicas), or the system's
// devices 0 to n - 1 for a run whose ranks they are (a plan or sharded tables: rank r on device r); 0 when
// some device's TDP is unknown.
double running_tdp_w(const arch::SystemSpec& sys, int64_t n, bool ranks) {
    if (!ranks || sys.devices.empty()) return sys.device.tdp_W * static_cast<double>(n);
    double sum = 0;
    for (std::size_t i = 0; i < sys.devices.size() && static_cast<int64_t>(i) < n; ++i) {
        const double tdp = sys.type_of(sys.devices[i]).tdp_W;
        if (!(tdp > 0)) return 0;
        sum += tdp;
    }
    return sum;
}

PairPlan plan_pair(const CompareWorkload& w, const arch::SystemSpec& sys) {
    PairPlan p;
    p.options = w.options;
    ExperimentOptions& o = p.options;
    const int64_t n = sys.rank_devices();  // the devices that run (a host runs none)
    if (!o.embedding_sharding.empty()) {
        // The sharded lowering spans the system's devices (one rank per device, the dense part data-parallel
        // over all of them; not its hosts: pcie-4gpu's xeon): no replicas; batch_per_replica is per rank.
        if (w.batch_per_replica > 0)
            o.batch =
                product(w, w.batch_per_replica, sys.rank_devices(), "the batch, batch_per_replica x devices");
        return p;
    }
    const bool plan = w.data_auto || has_parallel_plan(o) || w.microbatch_size > 0;
    if (!plan) {
        if (n > 1 && o.mode == "training")
            pair_error(w, fmt::format("training on {} devices needs a parallel plan (`parallel:`)", n));
        p.replicas = default_type_devices(sys);
        return p;
    }
    if (w.data_auto) {
        // The devices that run ranks (not the hosts: pcie-4gpu's xeon).
        const int64_t ranks = sys.rank_devices();
        const int64_t tp = o.tensor_parallel * o.pipeline_parallel;
        if (ranks % tp != 0)
            pair_error(
                w, fmt::format("the plan needs a multiple of tensor x pipeline = {} devices; {} has {}{}", tp,
                               sys.name, ranks, ranks == sys.device_count ? "" : " besides its hosts"));
        o.data_parallel = ranks / tp;
    }
    if (w.batch_per_replica > 0)
        o.batch = product(w, w.batch_per_replica, o.data_parallel, "the batch, batch_per_replica x data");
    if (w.microbatch_size > 0) {
        const int64_t per = product(w, o.data_parallel, w.microbatch_size, "data x microbatch_size");
        if (o.batch % per != 0)
            pair_error(
                w, fmt::format("batch {} is not a multiple of data x microbatch_size = {}", o.batch, per));
        o.microbatches = o.batch / per;
    }
    // A plan that is the identity on one device is a one-device run.
    if (!has_parallel_plan(o) && n > 1) p.replicas = default_type_devices(sys);
    return p;
}

double sum_parts(const std::vector<arch::LayerResult>& layers, double arch::TimeParts::*part) {
    double s = 0;
    for (const arch::LayerResult& l : layers) s += l.parts.*part;
    return s;
}

// The row's figures from a finished run (see the contract's rules).
void fill_figures(CompareRow& row, const ExperimentResult& r, int64_t replicas) {
    const double batch = static_cast<double>(r.info.batch);
    double flops = 0, bytes = 0;
    for (const arch::LayerResult& l : r.layers) {
        flops += l.counts.flops;
        bytes += l.bytes_read + l.bytes_written;
    }
    row.batch = r.info.batch;
    row.peak_flops_per_s = r.info.peak_flops_per_s;
    row.mem_bandwidth_Bps = r.info.mem_bandwidth_Bps;
    row.bytes_per_sample = bytes / batch;
    if (r.parallel_run) {
        const ParallelSummary& s = *r.parallel_run;
        row.latency_s = s.step_time_s;
        row.samples_per_s = batch / s.step_time_s;
        row.energy_per_sample_j = (s.device_energy_j + s.link_energy_j) / batch;
        // The critical rank's busy time is its layers' time: split as rank 0's layers split theirs
        // (compute, memory, overhead; every rank runs the same layers but for a pipeline's stages). Its
        // pipeline bubble is idle time, counted as overhead; what is left of the step (the ranks' starts
        // apart) too.
        const double c = sum_parts(r.layers, &arch::TimeParts::compute_s);
        const double m = sum_parts(r.layers, &arch::TimeParts::memory_s);
        const double o = sum_parts(r.layers, &arch::TimeParts::overhead_s);
        const double busy = c + m + o;
        row.compute_s = busy > 0 ? s.compute_s * c / busy : s.compute_s;
        row.memory_s = busy > 0 ? s.compute_s * m / busy : 0.0;
        row.communication_s = s.exposed_comm_s;
        row.overhead_s = (busy > 0 ? s.compute_s * o / busy : 0.0) + s.bubble_s +
                         std::max(0.0, s.step_time_s - s.compute_s - s.exposed_comm_s - s.bubble_s);
        // `layers` holds rank 0's: the model's FLOPs and bytes per sample are about the devices' share
        // each, both scaled alike, so that their ratio (the roofline's intensity) is rank 0's own.
        row.flops_per_sample = flops * static_cast<double>(row.devices) / batch;
        row.bytes_per_sample = bytes * static_cast<double>(row.devices) / batch;
    } else {
        row.latency_s = r.total_time_s;
        row.samples_per_s = batch * static_cast<double>(replicas) / r.total_time_s;
        row.energy_per_sample_j = r.total_energy_j / batch;
        row.compute_s = sum_parts(r.layers, &arch::TimeParts::compute_s);
        row.memory_s = sum_parts(r.layers, &arch::TimeParts::memory_s);
        row.communication_s = sum_parts(r.layers, &arch::TimeParts::communication_s);
        row.overhead_s = sum_parts(r.layers, &arch::TimeParts::overhead_s);
        row.flops_per_sample = flops / batch;
    }
    row.average_power_w = row.energy_per_sample_j * row.samples_per_s;
    row.samples_per_s_per_w = row.average_power_w > 0 ? row.samples_per_s / row.average_power_w : 0;
}

db::RunInfo failed_info(const CompareStudy& study, const CompareWorkload& w, const CompareSystem& s,
                        const arch::SystemSpec& sys, const ExperimentOptions& o) {
    db::RunInfo info;
    info.system = sys.name;
    info.device = sys.device.name;
    info.model = o.model;
    info.mode = o.mode;
    info.dtype = o.dtype;
    info.batch = o.batch;
    info.seq = o.seq;
    info.tdp_W = sys.device.tdp_W;
    // What was asked, so that each failed pair keeps its own config text and hash.
    const cfg::SourceLoc here{"<compare>", 0, 0};
    cfg::Node req = cfg::Node::make_map(here, "compare_pair");
    req.set("study", cfg::Node::make_scalar(study.name, here, "compare_pair.study"));
    req.set("workload", cfg::Node::make_scalar(w.name, here, "compare_pair.workload"));
    req.set("system", cfg::Node::make_scalar(s.path, here, "compare_pair.system"));
    req.set("model", cfg::Node::make_scalar(o.model, here, "compare_pair.model"));
    set_workload_options(req, o);
    cfg::Node root = cfg::Node::make_map(here, "");
    root.set("compare_pair", std::move(req));
    info.config_yaml = cfg::to_yaml(root);
    return info;
}

// A pair's reason from its UserError: the message alone where the error is the pair's own (pair_error, at the
// workload) or names no file (the run's option checks, located at "<command line>", which here is the
// workload), else "file:line:col: key: message", so that an error in a model or placement file the workload
// names still says where it is.
std::string pair_reason(const CompareWorkload& w, const std::string& msg) {
    constexpr std::string_view mark = ": error: ";
    const auto pos = msg.find(mark);
    if (pos == std::string::npos) return msg;
    const std::string_view where = std::string_view(msg).substr(0, pos);
    std::string rest = msg.substr(pos + mark.size());
    if (where == w.loc.str()) {
        const std::string own = "workload " + w.name + ": ";
        if (rest.compare(0, own.size(), own) == 0) rest.erase(0, own.size());
        return rest;
    }
    if (where == "<command line>" || where == "<built-in>") return rest;
    return fmt::format("{}: {}", where, rest);
}

}  // namespace

const cfg::Schema& compare_schema() {
    static const cfg::Schema s = [] {
        cfg::Schema c;
        c.name = "compare file";
        c.doc = "workloads and the systems to run each on (mlsim compare)";
        c.params.push_back(opt("name", PType::string, "the study's name; default the file name"));
        c.params.push_back(cfg::optional("description", PType::string, "", "what the study compares"));
        c.params.push_back(opt("systems", PType::string,
                               "systems: preset names or system / device files (relative to this "
                               "file), or maps {name, system}"));
        Param w = opt("workloads", PType::list, "the workloads, each run on every system it names");
        w.sub = &workload_schema();
        c.params.push_back(w);
        return c;
    }();
    return s;
}

std::optional<double> cost_per_hour_usd(const SystemPrice& p) {
    if (p.usd_per_hour) return *p.usd_per_hour;
    if (p.purchase_usd && p.lifetime_years > 0)
        return *p.purchase_usd / (p.lifetime_years * k_hours_per_year);
    return std::nullopt;
}

std::optional<double> cost_per_million_samples_usd(const SystemPrice& p, double samples_per_s,
                                                   double energy_per_sample_j) {
    const std::optional<double> hourly = cost_per_hour_usd(p);
    if (!hourly || !(samples_per_s > 0)) return std::nullopt;
    const double seconds = 1e6 / samples_per_s;
    const double kwh = 1e6 * energy_per_sample_j / 3.6e6;
    return seconds / 3600.0 * *hourly + kwh * p.usd_per_kwh;
}

std::optional<SystemPrice> system_price(const arch::SystemSpec& system) {
    const cfg::Node* sys = system.resolved.is_map() ? system.resolved.find("system") : nullptr;
    const cfg::Node* price = sys && sys->is_map() ? sys->find("price") : nullptr;
    if (!price || !price->is_map()) return std::nullopt;
    SystemPrice p;
    const auto real = [&](const char* key) -> std::optional<double> {
        const cfg::Node* v = price->find(key);
        if (!v || v->is_null()) return std::nullopt;
        return v->as_double();
    };
    p.usd_per_hour = real("usd_per_hour");
    p.purchase_usd = real("purchase_usd");
    p.lifetime_years = real("lifetime_years").value_or(0);
    p.usd_per_kwh = real("usd_per_kwh").value_or(0);
    if (const cfg::Node* s = price->find("source")) p.source = s->as_string();
    if (p.usd_per_hour && p.purchase_usd)
        cfg::fail(price->find("purchase_usd")->key_loc(), price->path() + ".purchase_usd",
                  "give usd_per_hour (a rental price) or purchase_usd with lifetime_years, not both");
    if (!p.purchase_usd && price->find("lifetime_years"))
        cfg::fail(price->find("lifetime_years")->key_loc(), price->path() + ".lifetime_years",
                  "amortises purchase_usd, which this price does not give (a rental is usd_per_hour alone)");
    if (p.purchase_usd && p.lifetime_years <= 0)
        cfg::fail(price->find("purchase_usd")->key_loc(), price->path() + ".purchase_usd",
                  "needs lifetime_years, the years the purchase is amortised over");
    if (!p.usd_per_hour && !p.purchase_usd)
        cfg::fail(price->key_loc(), price->path(), "needs usd_per_hour, or purchase_usd and lifetime_years");
    return p;
}

std::vector<std::pair<std::size_t, std::size_t>> CompareStudy::pairs() const {
    std::vector<std::pair<std::size_t, std::size_t>> out;
    for (std::size_t w = 0; w < workloads.size(); ++w)
        for (std::size_t s = 0; s < systems.size(); ++s) {
            const std::vector<std::string>& only = workloads[w].systems;
            if (only.empty() || std::find(only.begin(), only.end(), systems[s].name) != only.end())
                out.emplace_back(w, s);
        }
    return out;
}

std::string default_compare_path() { return (fs::path(configs_dir()) / "compare" / "default.yaml").string(); }

CompareStudy load_compare(const std::string& path) {
    const cfg::Node doc = cfg::load_file(path);
    if (!doc.is_map())
        cfg::fail(
            doc.loc(), "",
            fmt::format("expected a compare file map (systems:, workloads:), found {}", doc.kind_name()));
    // `systems` (names, files or maps) and `workloads` (whose `systems` lists names) are checked by hand
    // below, each workload against workload_schema().
    cfg::Node head = doc;
    head.erase("systems");
    head.erase("workloads");
    if (!doc.find("systems"))
        cfg::fail(doc.loc(), "", "missing required key 'systems' (preset names or system / device files)");
    if (!doc.find("workloads"))
        cfg::fail(doc.loc(), "", "missing required key 'workloads' (the workloads to run on the systems)");
    const cfg::Node checked = cfg::validate(head, compare_schema());
    const cfg::Reader r(checked, compare_schema());
    CompareStudy study;
    study.file = path;
    study.name = r.has("name") ? r.str("name") : fs::path(path).stem().string();
    if (study.name.empty()) cfg::fail(r.at("name").loc(), "name", "must not be empty");
    study.description = r.str("description");

    // Systems: a name or file, or {name, system}.
    const cfg::Node& systems = *doc.find("systems");
    if (!systems.is_sequence() || systems.items().empty())
        cfg::fail(where(systems), "systems",
                  fmt::format("expected a non-empty list of systems (preset names or files), found {}",
                              systems.is_sequence() ? "an empty list" : systems.kind_name()));
    std::map<std::string, cfg::SourceLoc> seen_systems;
    static const cfg::Schema entry_schema{
        "systems entry",
        "a system with its own label",
        {cfg::required("system", PType::string, "a preset name or a system / device file"),
         opt("name", PType::string, "the label; default the system's name")}};
    for (const cfg::Node& item : systems.items()) {
        CompareSystem s;
        const cfg::Node* sys_node = &item;
        std::optional<cfg::Node> checked_entry;
        if (item.is_map()) {
            checked_entry = cfg::validate(item, entry_schema);
            sys_node = checked_entry->find("system");
        } else if (!item.is_scalar()) {
            cfg::fail(where(item), item.path(),
                      fmt::format("expected a preset name, a file or a map {{name, system}}, found {}",
                                  item.kind_name()));
        }
        s.path = resolve_system(path, *sys_node);
        s.loc = sys_node->loc();
        s.spec = std::make_shared<const arch::SystemSpec>(load_system_file(s.path));
        s.price = system_price(*s.spec);
        if (checked_entry && checked_entry->find("name")) {
            s.name = checked_entry->find("name")->as_string();
        } else {
            s.name = names_a_file(sys_node->as_string()) ? s.spec->name : sys_node->as_string();
        }
        if (s.name.empty()) cfg::fail(s.loc, item.path(), "a system's name is empty");
        if (auto [it, fresh] = seen_systems.emplace(s.name, s.loc); !fresh)
            cfg::fail(s.loc, item.path(),
                      fmt::format("system '{}' is listed twice (also at line {}); give one a `name`", s.name,
                                  it->second.line));
        study.systems.push_back(std::move(s));
    }
    std::vector<std::string> system_names;
    for (const CompareSystem& s : study.systems) system_names.push_back(s.name);

    const cfg::Node& workloads = *doc.find("workloads");
    if (!workloads.is_sequence())
        cfg::fail(where(workloads), "workloads",
                  fmt::format("expected a list of workloads, found {}", workloads.kind_name()));
    std::map<std::string, cfg::SourceLoc> seen;
    for (const cfg::Node& item : workloads.items()) {
        CompareWorkload w = load_workload(path, item);
        if (auto [it, fresh] = seen.emplace(w.name, w.loc); !fresh)
            cfg::fail(item.find("name")->loc(), item.path() + ".name",
                      fmt::format("workload '{}' is named twice (also at line {})", w.name, it->second.line));
        if (const cfg::Node* only = item.find("systems")) {
            const std::vector<const cfg::Node*> names = name_list(*only, "system names");
            if (names.empty()) cfg::fail(where(*only), only->path(), "lists no system; leave it out for all");
            for (const cfg::Node* n : names)
                if (std::find(system_names.begin(), system_names.end(), n->as_string()) ==
                    system_names.end()) {
                    const std::string near = cfg::nearest(n->as_string(), system_names);
                    cfg::fail(
                        n->loc(), n->path(),
                        fmt::format("no system '{}' in this file's systems{} (they are: {})", n->as_string(),
                                    near.empty() ? "" : fmt::format("; did you mean '{}'?", near),
                                    cfg::join(system_names)));
                }
        }
        study.workloads.push_back(std::move(w));
    }
    if (study.workloads.empty()) cfg::fail(where(workloads), "workloads", "lists no workload");
    return study;
}

std::vector<db::ComparisonRow> to_comparison_rows(const std::vector<CompareRow>& rows) {
    std::vector<db::ComparisonRow> out;
    for (std::size_t i = 0; i < rows.size(); ++i) {
        const CompareRow& r = rows[i];
        db::ComparisonRow d;
        d.idx = static_cast<int64_t>(i);
        d.run_id = r.run_id;
        d.workload = r.workload;
        d.system = r.system;
        d.status = r.status;
        d.error = r.error;
        d.devices = r.devices;
        d.batch = r.batch;
        d.latency_target_s = r.latency_target_s;
        if (r.status == "ok") {
            d.latency_s = r.latency_s;
            d.samples_per_s = r.samples_per_s;
            d.energy_per_sample_j = r.energy_per_sample_j;
            d.average_power_w = r.average_power_w;
            d.samples_per_s_per_w = r.samples_per_s_per_w;
            d.usd_per_million_samples = r.usd_per_million_samples;
            d.time_to_train_s = r.time_to_train_s;
            d.compute_s = r.compute_s;
            d.memory_s = r.memory_s;
            d.communication_s = r.communication_s;
            d.overhead_s = r.overhead_s;
            d.flops_per_sample = r.flops_per_sample;
            d.bytes_per_sample = r.bytes_per_sample;
            d.peak_flops_per_s = r.peak_flops_per_s;
            d.mem_bandwidth_Bps = r.mem_bandwidth_Bps;
        }
        if (r.system_tdp_w > 0) d.system_tdp_w = r.system_tdp_w;
        out.push_back(std::move(d));
    }
    return out;
}

CompareOutcome run_compare(const CompareStudy& study, const CompareOptions& options) {
    using Clock = std::chrono::steady_clock;
    CompareOutcome out;
    const auto pairs = study.pairs();
    for (std::size_t k = 0; k < pairs.size(); ++k) {
        const CompareWorkload& w = study.workloads[pairs[k].first];
        const CompareSystem& s = study.systems[pairs[k].second];
        MLSIM_CHECK(s.spec != nullptr, "run_compare: a system not loaded by load_compare");
        const arch::SystemSpec& sys = *s.spec;
        if (options.progress) options.progress(k, pairs.size(), w.name, s.name);
        CompareRow row;
        row.workload = w.name;
        row.system = s.name;
        row.model = w.options.model;
        row.mode = w.options.mode;
        row.device = sys.device.name;
        row.devices = sys.rank_devices();
        row.system_tdp_w = running_tdp_w(sys, row.devices, true);
        row.latency_target_s = w.latency_target_s;
        row.batch = w.options.batch;
        const auto t0 = Clock::now();
        std::optional<ExperimentResult> result;
        ExperimentOptions asked = w.options;
        asked.system = s.path;
        int64_t replicas = 1;
        try {
            PairPlan plan = plan_pair(w, sys);
            plan.options.system = s.path;
            plan.options.preloaded_system = s.spec;
            asked = plan.options;
            replicas = plan.replicas;
            if (!w.latency_target_s) {
                result = run_experiment(plan.options);
            } else {
                // Doubling search: the largest batch of 1, 2, 4, ... and max_batch itself within the target;
                // a batch that does not fit ends the search like one over the target.
                const auto next = [&](int64_t b) {
                    return b <= (w.max_batch - 1) / 2 ? 2 * b : b < w.max_batch ? w.max_batch : 0;
                };
                for (int64_t b = 1; b > 0; b = next(b)) {
                    ExperimentOptions o = plan.options;
                    o.batch = b;
                    std::optional<ExperimentResult> r;
                    try {
                        r = run_experiment(o);
                    } catch (const cfg::UserError&) {
                        if (!result) throw;
                        break;
                    }
                    if (r->total_time_s > *w.latency_target_s) {
                        if (!result)
                            pair_error(w,
                                       fmt::format("misses the latency target of {}: batch 1 takes {}",
                                                   cfg::format_quantity(*w.latency_target_s, cfg::Dim::time),
                                                   cfg::format_quantity(r->total_time_s, cfg::Dim::time)));
                        break;
                    }
                    result = std::move(r);
                    asked = o;
                }
            }
        } catch (const cfg::UserError& e) {
            row.status = "error";
            row.error = pair_reason(w, e.what());
            result.reset();
        }
        const double wall = std::chrono::duration<double>(Clock::now() - t0).count();
        row.dtype = result ? result->info.dtype : asked.dtype;
        row.batch = asked.batch;
        if (result && result->parallel && !result->parallel_run) {
            // The plan was lowered and its memory checked, but nothing timed the ranks: the layers are one
            // device's whole model, not a step of the plan.
            row.status = "not_modelled";
            row.error =
                "multi-device execution is not modelled in this build (no parallel engine): the plan "
                "fits in memory, but a step cannot be timed";
            if (options.db)
                row.run_id =
                    options.db->record_failed_run(failed_info(study, w, s, sys, asked), row.error, wall);
        } else if (result) {
            row.replicas = replicas;
            if (!result->parallel_run) {
                // Replicas of one device: what runs is `replicas` devices of the default type (in a mixed
                // system, not the others), and the TDP that of those.
                row.devices = replicas;
                row.system_tdp_w = running_tdp_w(sys, replicas, false);
            } else if (result->parallel) {
                // The plan's ranks: the system's devices but its hosts (pcie-4gpu's A100s, not the xeon).
                row.devices = result->parallel->ranks();
                row.system_tdp_w = running_tdp_w(sys, row.devices, true);
            }
            fill_figures(row, *result, replicas);
            if (s.price)
                row.usd_per_million_samples =
                    cost_per_million_samples_usd(*s.price, row.samples_per_s, row.energy_per_sample_j);
            if (w.train_samples) {
                // Whole steps: the last one runs a full batch even when fewer samples are left.
                const double per_step = row.samples_per_s * row.latency_s;
                row.time_to_train_s = std::ceil(*w.train_samples / per_step * (1 - 1e-12)) * row.latency_s;
            }
            if (options.db) {
                // The parallel engine's rank-0 layers may carry a busy time a rounding above their interval
                // (arch/system/parallel_exec; `mlsim run --db` with a plan stops on the same check): such a
                // run is recorded as failed with that reason, its figures kept in the comparison row.
                std::string bad_layer;
                for (const arch::LayerResult& l : result->layers)
                    if (bad_layer.empty() &&
                        l.time_s > (l.end_s - l.start_s) + 1e-9 * std::max(l.end_s, l.time_s))
                        bad_layer = l.name;
                if (result->parallel_run && !bad_layer.empty())
                    row.run_id = options.db->record_failed_run(
                        failed_info(study, w, s, sys, asked),
                        fmt::format(
                            "not recorded with its layers: rank 0's layer '{}' is busy longer than its "
                            "interval (parallel engine); the step's figures are in `comparisons`",
                            bad_layer),
                        wall);
                else if (result->parallel_run) {
                    // As `mlsim run --db` records it: the whole step's time, energy and power in `runs`,
                    // with its parallel_runs, parallel_ranks and collective rows.
                    const db::ParallelRows par = parallel_rows(*result);
                    row.run_id =
                        options.db->record_run(result->info, to_rows(result->layers), wall, nullptr, &par);
                } else {
                    row.run_id = options.db->record_run(result->info, to_rows(result->layers), wall);
                }
            }
        } else if (options.db) {
            row.run_id = options.db->record_failed_run(failed_info(study, w, s, sys, asked), row.error, wall);
        }
        out.rows.push_back(std::move(row));
    }
    if (options.db) out.compare_id = options.db->record_comparison(study.name, to_comparison_rows(out.rows));
    return out;
}

}  // namespace mlsim::exp
