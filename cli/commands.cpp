#include "cli/commands.h"

#include <fmt/format.h>

#include <algorithm>
#include <boost/program_options.hpp>
#include <chrono>
#include <filesystem>
#include <iostream>
#include <map>
#include <optional>

#include "arch/device_spec.h"
#include "cli/format.h"
#include "cli/parse_args.h"
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
    if (e.is_device_override()) help += fmt::format(" (sets {})", e.device_key);
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

struct Totals {
    double macs = 0, flops = 0, bytes = 0, time_s = 0, energy_j = 0, compute_bound_s = 0;
};

Totals totals_of(const std::vector<arch::LayerResult>& layers) {
    Totals t;
    for (const auto& l : layers) {
        t.macs += l.counts.macs;
        t.flops += l.counts.flops;
        t.bytes += l.bytes_read + l.bytes_written;
        t.time_s += l.time_s;
        t.energy_j += l.energy_j();
        if (l.bound == "compute") t.compute_bound_s += l.time_s;
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

void print_totals(const exp::ExperimentResult& r) {
    const Totals t = totals_of(r.layers);
    const auto& dev = r.system.device;
    fmt::print("\n{} on {} ({} layers, batch {}, {}, {}):\n", r.model.name(), dev.name, r.layers.size(),
               r.info.batch, r.info.dtype, r.info.mode);
    fmt::print("  time    {}   ({} per sample, {:.4g} samples/s)\n", seconds(t.time_s),
               seconds(t.time_s / static_cast<double>(r.info.batch)),
               static_cast<double>(r.info.batch) / t.time_s);
    fmt::print("  energy  {}   ({} per sample, average power {})\n", si(t.energy_j, "J"),
               si(t.energy_j / static_cast<double>(r.info.batch), "J"), si(t.energy_j / t.time_s, "W"));
    if (r.info.mode == "training") {
        const wl::MemoryAccount m = r.training_memory;
        fmt::print("  memory  {} resident: weights {}, gradients {}, optimizer state {}, activations {}\n",
                   si(m.total_bytes, "B"), si(m.weights_bytes, "B"), si(m.gradients_bytes, "B"),
                   si(m.optimizer_state_bytes, "B"), si(m.activations_bytes, "B"));
    }
    fmt::print("  work    {} MACs, {} FLOPs, {} moved, intensity {:.3g} FLOP/B\n", si(t.macs, ""),
               si(t.flops, ""), si(t.bytes, "B"), t.bytes > 0 ? t.flops / t.bytes : 0.0);
    if (r.info.device_model != "roofline") {
        int64_t cycles = 0, stalls = 0, sw = 0, si_ = 0, so = 0;
        for (const auto& l : r.layers) {
            cycles += l.cycles;
            stalls += l.stall_cycles;
            sw += l.stall_weight_cycles;
            si_ += l.stall_input_cycles;
            so += l.stall_output_cycles;
        }
        fmt::print("  cycles  {} ({} model; stalls {}: weight {}, input {}, output {})\n", cycles,
                   r.info.device_model, stalls, sw, si_, so);
    }
    fmt::print("  bound   compute {} of the time, memory {}; achieved {} of peak {}\n",
               percent(t.compute_bound_s / t.time_s), percent(1 - t.compute_bound_s / t.time_s),
               si(t.flops / t.time_s, "FLOP/s"), si(r.info.peak_flops_per_s, "FLOP/s"));
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
        "quiet,q", po::bool_switch(&quiet), "print totals only, not the per-layer table");
    auto vm = parse(args, desc);
    if (!vm) {
        std::cout << "usage: mlsim run --system FILE --model NAME|FILE [options]\n\n" << desc << "\n"
                  << "Device config keys (configs/README.md):\n"
                  << cfg::describe(arch::device_schema());
        return 0;
    }
    // Options the user gave, in table order; the others keep ExperimentOptions' defaults, which are the
    // table's.
    exp::ExperimentOptions opt;
    for (const exp::RunOption& e : table) {
        const po::variable_value& v = (*vm)[e.name()];
        if (v.empty() || v.defaulted()) continue;
        if (e.param.type == cfg::PType::boolean) {
            if (v.as<bool>()) exp::set_run_option(opt, e.name(), "true", table);
        } else {
            exp::set_run_option(opt, e.name(), v.as<std::string>(), table);
        }
    }
    const po::variable_value& optimizer = (*vm)["optimizer"];
    const bool optimizer_given = !optimizer.empty() && !optimizer.defaulted();
    if (opt.mode != "training" && (optimizer_given || opt.checkpointing))
        cfg::fail(cfg::SourceLoc{"<command line>", 0, 0}, opt.checkpointing ? "--checkpointing" : "--optimizer",
                  "applies only to --mode training");
    // Open the database first so a bad path fails before any simulation work.
    std::optional<db::ResultsDb> db;
    if (!db_path.empty()) db.emplace(db_path);
    const auto t0 = std::chrono::steady_clock::now();
    exp::ExperimentResult r = exp::run_experiment(opt);
    const double wall = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    if (!quiet) print_layer_table(r);
    if (r.system.device_count > 1)
        fmt::print(stderr,
                   "note: system '{}' has {} devices; multi-device execution is not modelled yet, so these "
                   "figures are for one {}\n",
                   r.system.name, r.system.device_count, r.system.device.name);
    print_totals(r);
    if (db) {
        const int64_t id = db->record_run(r.info, exp::to_rows(r.layers), wall);
        fmt::print("  saved   run {} in {}\n", id, db_path);
    }
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

int cmd_list(const Args& args) {
    std::string what;
    po::options_description desc("mlsim list options");
    desc.add_options()("help,h", "show this help")("what", po::value(&what), "devices | models");
    po::positional_options_description pos;
    pos.add("what", 1);
    auto vm = parse(args, desc, &pos);
    if (!vm || what.empty()) {
        std::cout << "usage: mlsim list devices|models\n\n" << desc;
        return vm ? 2 : 0;
    }
    if (what == "models") {
        for (const wl::ZooEntry& e : wl::zoo_list()) fmt::print("{:<22} {}\n", e.name, e.description);
        return 0;
    }
    if (what == "devices") {
        fmt::print("{:<24} {:<6} {:>14} {:>14}  {}\n", "preset", "family", "peak (best)", "main memory BW",
                   "name");
        for (const std::string& name : arch::list_device_presets(exp::configs_dir())) {
            const arch::DeviceSpec d =
                arch::load_device((fs::path(exp::configs_dir()) / "devices" / (name + ".yaml")).string());
            double best = 0;
            std::string best_t;
            for (const auto& [t, v] : d.peak_ops_per_s)
                if (v > best) best = v, best_t = t;
            fmt::print("{:<24} {:<6} {:>14} {:>14}  {}\n", name, d.family, si(best, "OP/s") + " " + best_t,
                       si(d.main_memory().bandwidth_Bps, "B/s"), d.name);
        }
        return 0;
    }
    const std::string near = cfg::nearest(what, {"devices", "models"});
    fmt::print(stderr, "mlsim list: error: unknown list '{}'{}\n", what,
               near.empty() ? "; expected devices or models" : fmt::format("; did you mean '{}'?", near));
    return 2;
}

}  // namespace mlsim::cli
