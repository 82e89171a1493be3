#include "cli/commands.h"

#include <fmt/format.h>
#include <unistd.h>

#include <algorithm>
#include <boost/program_options.hpp>
#include <chrono>
#include <filesystem>
#include <iostream>
#include <map>
#include <optional>

#include "arch/device_spec.h"
#include "arch/family.h"
#include "arch/system/system_spec.h"
#include "cli/format.h"
#include "cli/parse_args.h"
#include "cli/progress.h"
#include "cli/warm_start.h"
#include "db/results_db.h"
#include "experiment/experiment.h"
#include "experiment/run_options.h"
#include "experiment/validate.h"
#include "sim/config/schema.h"
#include "workloads/model.h"

namespace mlsim::cli {

namespace po = boost::program_options;
namespace fs = std::filesystem;

namespace {

// One entry of the run-option table as a command-line option: its doc, its choices, and for a device
// setting the key path it sets. Booleans are switches; everything else is read as text and checked by
// the experiment, so the command line and sweep files give the same messages.
void add_run_option(po::options_description& desc, const exp::RunOption& e) {
    const cfg::Param& p = e.param;
    std::string help = p.doc;
    if (p.type == cfg::PType::choice) help += fmt::format(" [{}]", fmt::join(p.choices, " | "));
    if (e.is_device_override()) help += fmt::format(" (sets {})", e.keys_text());
    const std::string flag = e.short_name ? fmt::format("{},{}", e.name(), e.short_name) : e.name();
    if (p.type == cfg::PType::boolean) {
        desc.add_options()(flag.c_str(), po::bool_switch(), help.c_str());
        return;
    }
    po::typed_value<std::string>* value = po::value<std::string>();
    if (p.required) value->required();
    if (p.default_value) value->default_value(*p.default_value);
    desc.add_options()(flag.c_str(), value, help.c_str());
}

// Rows of cells in columns as wide as their widest cell; `right` aligns a column to the right.
void print_columns(const std::vector<std::vector<std::string>>& rows, const std::vector<bool>& right) {
    std::vector<size_t> width(right.size(), 0);
    for (const auto& row : rows)
        for (size_t i = 0; i < row.size() && i < width.size(); ++i)
            width[i] = std::max(width[i], row[i].size());
    for (const auto& row : rows) {
        std::string line;
        for (size_t i = 0; i < row.size(); ++i) {
            if (i) line += "  ";
            const bool last = i + 1 == row.size();
            if (right[i])
                line += fmt::format("{:>{}}", row[i], width[i]);
            else
                line += last ? row[i] : fmt::format("{:<{}}", row[i], width[i]);
        }
        while (!line.empty() && line.back() == ' ') line.pop_back();
        fmt::print("{}\n", line);
    }
}

struct Totals {
    double macs = 0, flops = 0, bytes = 0, time_s = 0, energy_j = 0;
    arch::TimeParts parts;
};

Totals totals_of(const std::vector<arch::LayerResult>& layers) {
    Totals t;
    for (const auto& l : layers) {
        t.macs += l.counts.macs;
        t.flops += l.counts.flops;
        t.bytes += l.bytes_read + l.bytes_written;
        t.time_s += l.time_s;
        t.energy_j += l.energy_j();
        t.parts.compute_s += l.parts.compute_s;
        t.parts.memory_s += l.parts.memory_s;
        t.parts.overhead_s += l.parts.overhead_s;
        t.parts.communication_s += l.parts.communication_s;
    }
    return t;
}

void print_layer_table(const exp::ExperimentResult& r) {
    fmt::print("{:>4}  {:<28} {:<20} {:>10} {:>10} {:>10} {:>10} {:>10} {:>7}  {}\n", "idx", "layer", "op",
               "MACs", "FLOPs", "bytes", "time", "energy", "util", "bound");
    for (const auto& l : r.layers) {
        std::string name = l.name.size() > 28 ? l.name.substr(0, 27) + "~" : l.name;
        std::string op = l.op.size() > 20 ? l.op.substr(0, 19) + "~" : l.op;
        fmt::print("{:>4}  {:<28} {:<20} {:>10} {:>10} {:>10} {:>10} {:>10} {:>7}  {}\n", l.idx, name, op,
                   si(l.counts.macs, ""), si(l.counts.flops, ""), si(l.bytes_read + l.bytes_written, "B"),
                   seconds(l.time_s), si(l.energy_j(), "J"), percent(l.utilization), l.bound);
    }
}

// A parallel run (issue 13): the step, where the critical rank's time went, and each rank's memory.
void print_parallel_run(const exp::ExperimentResult& r) {
    const exp::ParallelSummary& s = *r.parallel_run;
    const arch::ExecResult& x = *r.parallel_exec;
    const auto share = [&](double v) { return percent(s.step_time_s > 0 ? v / s.step_time_s : 0); };
    // Tokens only where the model has a sequence (a DLRM step has none).
    const std::string tokens = s.tokens_per_s > 0 ? fmt::format(", {:.4g} tokens/s", s.tokens_per_s) : "";
    fmt::print("  step    {} on {} ranks: {:.4g} samples/s{}, MFU {}\n", seconds(s.step_time_s),
               x.ranks.size(), s.samples_per_s, tokens, percent(s.mfu));
    fmt::print("  step    critical rank {}: compute {} ({}), exposed communication {} ({}), bubble {} ({})\n",
               x.critical_rank, seconds(s.compute_s), share(s.compute_s), seconds(s.exposed_comm_s),
               share(s.exposed_comm_s), seconds(s.bubble_s), share(s.bubble_s));
    for (const auto& [purpose, t] : x.exposed_by_purpose)
        fmt::print("          exposed {:<22} {}\n", purpose, seconds(t));
    fmt::print(
        "  energy  devices {}, links {}; symmetry {}{}; {} ranks simulated, {} network calls, {} "
        "replayed\n",
        si(s.device_energy_j, "J"), si(s.link_energy_j, "J"), x.symmetry,
        x.symmetry == "off"
            ? ""
            : (x.symmetry_exact ? " (exact)" : fmt::format(" (spread {})", seconds(x.symmetry_spread_s))),
        x.simulated_ranks, x.network_calls, x.memo_hits);
    fmt::print("  {:>5} {:>5} {:>10} {:>10} {:>10} {:>10} {:>10} {:>10} {:>10} {:>10} {:>10} {:>10}\n",
               "rank", "stage", "compute", "comm", "exposed", "bubble", "memory", "weights", "grads",
               "optimizer", "activ.", "KV");
    const size_t n = x.ranks.size();
    for (size_t i = 0; i < n; ++i) {
        if (n > 16 && i >= 8 && i + 8 < n) {  // long tables: the first and last eight ranks
            if (i == 8) fmt::print("  {:>5}\n", "...");
            continue;
        }
        const arch::RankExec& k = x.ranks[i];
        fmt::print("  {:>5} {:>5} {:>10} {:>10} {:>10} {:>10} {:>10} {:>10} {:>10} {:>10} {:>10} {:>10}\n",
                   k.rank, k.stage, seconds(k.compute_s), seconds(k.comm_s), seconds(k.exposed_comm_s),
                   seconds(k.bubble_s), si(k.memory.total_bytes, "B"), si(k.memory.weights_bytes, "B"),
                   si(k.memory.gradients_bytes, "B"), si(k.memory.optimizer_state_bytes, "B"),
                   si(k.memory.activations_bytes, "B"), si(k.memory.kv_cache_bytes, "B"));
    }
}

void print_totals(const exp::ExperimentResult& r) {
    Totals t = totals_of(r.layers);
    if (r.parallel_run) {  // the step and every device's energy, not rank 0's layers
        t.time_s = r.total_time_s;
        t.energy_j = r.total_energy_j;
    }
    const double devices = r.parallel_exec ? static_cast<double>(r.parallel_exec->ranks.size()) : 1.0;
    const auto& dev = r.system.device;
    fmt::print("\n{} on {} ({} layers, batch {}, {}, {}):\n", r.model.name(), dev.name, r.layers.size(),
               r.info.batch, r.info.dtype, r.info.mode);
    // A model whose every op is a view (reshape, flatten) runs no kernel: no time, so no rate or power.
    const bool timed = t.time_s > 0;
    fmt::print("  time    {}   ({} per sample, {})\n", seconds(t.time_s),
               seconds(t.time_s / static_cast<double>(r.info.batch)),
               timed ? fmt::format("{:.4g} samples/s", static_cast<double>(r.info.batch) / t.time_s)
                     : std::string("no op takes time: nothing runs"));
    fmt::print("  energy  {}   ({} per sample, average power {})\n", si(t.energy_j, "J"),
               si(t.energy_j / static_cast<double>(r.info.batch), "J"),
               timed ? si(t.energy_j / t.time_s, "W") : std::string("-"));
    if (r.info.mode == "training") {
        const wl::MemoryAccount m = r.training_memory;
        fmt::print("  memory  {} {}: weights {}, gradients {}, optimizer state {}, activations {}{}\n",
                   si(m.total_bytes, "B"),
                   r.parallel ? "for the whole model on one device (unsharded)" : "resident",
                   si(m.weights_bytes, "B"), si(m.gradients_bytes, "B"), si(m.optimizer_state_bytes, "B"),
                   si(m.activations_bytes, "B"),
                   m.kv_cache_bytes > 0 ? ", KV cache " + si(m.kv_cache_bytes, "B") : std::string());
    }
    if (r.parallel) {  // the plan's per-rank memory, one line per pipeline stage
        const wl::ParallelLowering& l = *r.parallel;
        fmt::print("  parallel D={} T={} P={} E={} ZeRO-{} M={} (micro-batch {}), bubble {:.1f}%\n",
                   l.plan.data, l.plan.tensor, l.plan.pipeline, l.expert_degree(), l.plan.zero,
                   l.plan.microbatches, l.microbatch_size, 100 * l.bubble_fraction);
        // Work that is not the model's (workloads/parallel.h): vocabulary padding and recomputation.
        if (l.padded_vocab != l.vocab)
            fmt::print(
                "  padding vocabulary {} -> {} (a multiple of 128 x T, as Megatron-LM pads it): {} FLOPs "
                "per step on the padding rows\n",
                l.vocab, l.padded_vocab, si(l.vocab_padding_flops, ""));
        if (l.recompute_flops > 0)
            fmt::print("  recompute {} FLOPs per step (forward re-run in backward; not in MFU)\n",
                       si(l.recompute_flops, ""));
        for (size_t s = 0; s < l.memory.size(); ++s) {
            const wl::StageMemory& m = l.memory[s];
            fmt::print(
                "  stage {} memory per rank {}: weights {}, gradients {}, optimizer state {}, activations {} "
                "({} in flight), KV cache {}\n",
                s, si(m.total_bytes, "B"), si(m.weights_bytes, "B"), si(m.gradients_bytes, "B"),
                si(m.optimizer_state_bytes, "B"), si(m.activations_bytes, "B"), m.inflight_microbatches,
                si(m.kv_cache_bytes, "B"));
        }
        // Embedding sharding (workloads/embedding_sharding.h): ranks hold different table shards; the
        // execution's per-rank table below repeats these figures, so they are printed only without it.
        for (size_t k = 0; !r.parallel_exec && k < l.rank_memory.size(); ++k) {
            const wl::StageMemory& m = l.rank_memory[k];
            fmt::print("  rank {} memory {}: weights {}, gradients {}, optimizer state {}, activations {}\n",
                       k, si(m.total_bytes, "B"), si(m.weights_bytes, "B"), si(m.gradients_bytes, "B"),
                       si(m.optimizer_state_bytes, "B"), si(m.activations_bytes, "B"));
        }
    }
    if (r.parallel_run && r.parallel_exec) print_parallel_run(r);
    fmt::print("  work    {} MACs, {} FLOPs, {} moved, intensity {:.3g} FLOP/B\n", si(t.macs, ""),
               si(t.flops, ""), si(t.bytes, "B"), t.bytes > 0 ? t.flops / t.bytes : 0.0);
    if (const arch::Family* f = arch::find_family(r.info.device_model); f && f->summary)
        // A parallel run's layers are rank 0's: so are the family's figures (its power is not the step's).
        for (const std::string& line : f->summary(r.layers))
            fmt::print("  {}{}\n", r.parallel_exec ? "rank 0: " : "", line);
    const auto share = [&](double part) { return percent(t.time_s > 0 ? part / t.time_s : 0); };
    std::string parts = fmt::format("compute {}, memory {}, overhead {}", share(t.parts.compute_s),
                                    share(t.parts.memory_s), share(t.parts.overhead_s));
    if (t.parts.communication_s > 0)
        parts += fmt::format(", communication {}", share(t.parts.communication_s));
    fmt::print("  bound   {} of the time ({} bound); achieved {} of peak {}\n", parts,
               arch::bound_of(t.parts), timed ? si(t.flops / t.time_s, "FLOP/s") : std::string("-"),
               si(r.info.peak_flops_per_s, "FLOP/s"));
    // The devices' own power against their TDP: a parallel run's link energy (NICs, switches, cables) is
    // spent outside them.
    const double device_energy = r.parallel_run ? r.parallel_run->device_energy_j : t.energy_j;
    const double power = t.time_s > 0 ? device_energy / t.time_s : 0;
    // The summed TDP of the devices that run (exp::simulate_parallel sets it for a plan's ranks).
    const double tdp = r.info.tdp_W;
    if (power > tdp * (1 + 1e-9)) {
        if (r.parallel_exec)
            fmt::print(
                stderr,
                "warning: the devices' average power {} exceeds the summed TDP {} of the {} devices that "
                "run: an "
                "energy figure of a device is too high\n",
                si(power, "W"), si(tdp, "W"), devices);
        else
            fmt::print(stderr,
                       "warning: average power {} exceeds {}'s TDP {}: an energy figure of this device is "
                       "too high\n",
                       si(power, "W"), dev.name, si(dev.tdp_W, "W"));
    }
}

}  // namespace

int cmd_run(const Args& args) {
    const std::vector<exp::RunOption>& table = exp::run_options();
    std::string db_path;
    bool quiet = false;
    po::options_description desc("mlsim run options");
    desc.add_options()("help,h", "show this help and the device config keys");
    for (const exp::RunOption& e : table) add_run_option(desc, e);
    desc.add_options()("db", po::value(&db_path), "append the run to this SQLite results database")(
        "quiet,q", po::bool_switch(&quiet), "print totals only: no per-layer table, no progress bar");
    auto vm = parse(args, desc);
    if (!vm) {
        std::cout << "usage: mlsim run --system FILE --model NAME|FILE [options]\n\n"
                  << desc << "\n"
                  << "Device config keys (configs/README.md):\n"
                  << cfg::describe(arch::device_schema())
                  << "\nValid range of every physical value, by dimension (0 too where a key allows it):\n"
                  << cfg::describe_quantity_ranges();
        return 0;
    }
    // Options the user gave, in table order; the others keep ExperimentOptions' defaults, which are the
    // table's.
    exp::ExperimentOptions opt;
    const cfg::SourceLoc command_line{"<command line>", 0, 0};
    for (const exp::RunOption& e : table) {
        const po::variable_value& v = (*vm)[e.name()];
        if (v.empty() || v.defaulted()) continue;
        if (e.param.type == cfg::PType::boolean) {
            if (v.as<bool>()) exp::set_run_option(opt, e.name(), "true", table);
        } else {
            // An empty value would read as "not given" (--dtype '' as the device's default type).
            if (v.as<std::string>().empty())
                cfg::fail(command_line, "--" + e.name(), "needs a value, found an empty string");
            exp::set_run_option(opt, e.name(), v.as<std::string>(), table);
        }
    }
    if (vm->count("db") && db_path.empty())
        cfg::fail(command_line, "--db", "needs a file name, found an empty string");
    const po::variable_value& optimizer = (*vm)["optimizer"];
    const bool optimizer_given = !optimizer.empty() && !optimizer.defaulted();
    if (opt.mode != "training" && (optimizer_given || opt.checkpointing))
        cfg::fail(cfg::SourceLoc{"<command line>", 0, 0},
                  opt.checkpointing ? "--checkpointing" : "--optimizer", "applies only to --mode training");
    // Open the database first so a bad path fails before any simulation work.
    std::optional<db::ResultsDb> db;
    if (!db_path.empty()) db.emplace(db_path);
    const auto t0 = std::chrono::steady_clock::now();
    exp::PreparedExperiment prepared = exp::prepare_experiment(opt);
    // A bar with an ETA once the run has taken a second (cycle fidelity, large models).
    Progress progress(quiet ? nullptr : stderr, isatty(fileno(stderr)) != 0,
                      prepared.result->model.ops().size(), "run", "layers");
    exp::ExperimentResult r = [&] {
        try {
            return exp::simulate(std::move(prepared), [&](std::size_t done, std::size_t total) {
                progress.update(done, 0, done == total);
            });
        } catch (...) {
            progress.interrupt();
            throw;
        }
    }();
    const double wall = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    if (!quiet && (!r.parallel_run || r.layers.size() <= 2000)) print_layer_table(r);
    if (!quiet && r.parallel_run && r.layers.size() > 2000)
        fmt::print("(rank 0 ran {} layers in the step; the table is left out above 2000: --db keeps them)\n",
                   r.layers.size());
    if (r.system.rank_devices() > 1 && !r.parallel_run)
        fmt::print(stderr,
                   "note: system '{}' has {} devices, and without a parallel plan these figures are for one "
                   "{}; --data-parallel, --tensor-parallel and --pipeline-parallel run the workload on "
                   "several (README: Parallel plans)\n",
                   r.system.name, r.system.rank_devices(), r.system.device.name);
    print_totals(r);
    if (db) {
        const db::ParallelRows par = r.parallel_run ? exp::parallel_rows(r) : db::ParallelRows{};
        db::PreparedLayers rows;
        exp::prepare_rows(std::move(r.layers), opt, rows);  // the layer table is printed above
        const int64_t id = db->record_run(r.info, rows, wall, nullptr, r.parallel_run ? &par : nullptr);
        fmt::print("  saved   run {} in {}\n", id, db_path);
    }
    // Done: close the database, then skip freeing the results (cli/warm_start.h).
    db.reset();
    fast_exit(0);
    return 0;
}

int cmd_validate(const Args& args) {
    std::vector<std::string> files;
    po::options_description desc("mlsim validate options");
    desc.add_options()("help,h", "show this help")("files", po::value(&files)->multitoken(),
                                                   "config, model (.yaml) or topology (.csv) files");
    po::positional_options_description pos;
    pos.add("files", -1);
    auto vm = parse(args, desc, &pos);
    if (!vm) {
        std::cout << "usage: mlsim validate FILE...\n\nChecks each file (device or system config, model "
                     "YAML, SCALE-Sim topology CSV) without simulating.\n\n"
                  << desc;
        return 0;
    }
    if (files.empty()) {
        fmt::print(stderr, "mlsim validate: error: no files given\n");
        return 2;
    }
    int status = 0;
    for (const std::string& f : files) {
        try {
            fmt::print("{}: ok ({})\n", f, exp::check_input(f));
        } catch (const cfg::UserError& e) {
            fmt::print(stderr, "{}\n", e.what());
            status = 2;
        }
    }
    return status;
}

namespace {

// The system presets as a table whose columns fit their widest entry (descriptions last, unpadded).
void print_system_list() {
    // bisection: one way, between the halves of the default-type devices (SystemSpec::bisection_Bps).
    const std::vector<std::string> header = {"preset",   "devices", "device types", "nodes",
                                             "switches", "links",   "bisection",    "description"};
    const std::vector<bool> right = {false, true, false, true, true, true, true, false};
    std::vector<std::vector<std::string>> rows{header};
    for (const std::string& name : arch::list_system_presets(exp::configs_dir())) {
        const arch::SystemSpec s =
            arch::load_system((fs::path(exp::configs_dir()) / "systems" / (name + ".yaml")).string(),
                              {exp::configs_dir() + "/devices"});
        std::string types;
        for (const std::string& t : s.type_names()) types += (types.empty() ? "" : ",") + t;
        rows.push_back(
            {name, std::to_string(s.device_count), types, std::to_string(s.nodes.size()),
             std::to_string(s.topology->switches().size()), std::to_string(s.topology->link_count()),
             s.bisection_Bps() > 0 ? si(s.bisection_Bps(), "B/s") : std::string("-"), s.description});
    }
    print_columns(rows, right);
}

}  // namespace

int cmd_list(const Args& args) {
    std::string what;
    po::options_description desc("mlsim list options");
    desc.add_options()("help,h", "show this help")("what", po::value(&what), "devices | systems | models");
    po::positional_options_description pos;
    pos.add("what", 1);
    auto vm = parse(args, desc, &pos);
    if (!vm || what.empty()) {
        std::cout << "usage: mlsim list devices|systems|models\n\n" << desc;
        return vm ? 2 : 0;
    }
    if (what == "models") {
        for (const wl::ZooEntry& e : wl::zoo_list()) fmt::print("{:<22} {}\n", e.name, e.description);
        return 0;
    }
    if (what == "devices") {
        std::vector<std::vector<std::string>> rows = {
            {"preset", "family", "model", "peak (best)", "main memory BW", "name"}};
        for (const std::string& name : arch::list_device_presets(exp::configs_dir())) {
            const arch::DeviceSpec d =
                arch::load_device((fs::path(exp::configs_dir()) / "devices" / (name + ".yaml")).string());
            double best = 0;
            std::string best_t;
            for (const auto& [t, v] : d.peak_ops_per_s)
                if (v > best) best = v, best_t = t;
            rows.push_back({name, d.family, d.model, si(best, "OP/s") + " " + best_t,
                            si(d.main_memory().bandwidth_Bps, "B/s"), d.name});
        }
        print_columns(rows, {false, false, false, true, true, false});
        return 0;
    }
    if (what == "systems") {
        print_system_list();
        return 0;
    }
    const std::string near = cfg::nearest(what, {"devices", "systems", "models"});
    fmt::print(
        stderr, "mlsim list: error: unknown list '{}'{}\n", what,
        near.empty() ? "; expected devices, systems or models" : fmt::format("; did you mean '{}'?", near));
    return 2;
}

}  // namespace mlsim::cli
