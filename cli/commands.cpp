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
#include "arch/family.h"
#include "arch/system/system_spec.h"
#include "cli/experiment.h"
#include "arch/systolic/scalesim_cfg.h"
#include "cli/format.h"
#include "cli/sweep.h"
#include "db/results_db.h"
#include "sim/config/loader.h"
#include "sim/config/schema.h"
#include "workloads/model.h"

namespace mlsim::cli {

namespace po = boost::program_options;
namespace fs = std::filesystem;

namespace {

// Parses args against desc; returns nullopt after printing help when --help was given.
std::optional<po::variables_map> parse(const Args& args, const po::options_description& desc,
                                       const po::positional_options_description* pos = nullptr) {
    po::variables_map vm;
    // With no positional arguments declared, a stray word is an error, not silently ignored.
    static const po::positional_options_description none;
    auto parser = po::command_line_parser(args).options(desc).positional(pos ? *pos : none);
    po::store(parser.run(), vm);
    if (vm.count("help")) return std::nullopt;
    po::notify(vm);
    return vm;
}

// Rows of cells in columns as wide as their widest cell; `right` aligns a column to the right.
void print_columns(const std::vector<std::vector<std::string>>& rows, const std::vector<bool>& right) {
    std::vector<size_t> width(right.size(), 0);
    for (const auto& row : rows)
        for (size_t i = 0; i < row.size() && i < width.size(); ++i) width[i] = std::max(width[i], row[i].size());
    for (const auto& row : rows) {
        std::string line;
        for (size_t i = 0; i < row.size(); ++i) {
            if (i) line += "  ";
            const bool last = i + 1 == row.size();
            if (right[i]) line += fmt::format("{:>{}}", row[i], width[i]);
            else line += last ? row[i] : fmt::format("{:<{}}", row[i], width[i]);
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

void print_layer_table(const ExperimentResult& r) {
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

void print_totals(const ExperimentResult& r) {
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
    if (const arch::Family* f = arch::find_family(r.info.device_model); f && f->summary)
        for (const std::string& line : f->summary(r.layers)) fmt::print("  {}\n", line);
    const auto share = [&](double part) { return percent(t.time_s > 0 ? part / t.time_s : 0); };
    std::string parts = fmt::format("compute {}, memory {}, overhead {}", share(t.parts.compute_s),
                                    share(t.parts.memory_s), share(t.parts.overhead_s));
    if (t.parts.communication_s > 0) parts += fmt::format(", communication {}", share(t.parts.communication_s));
    fmt::print("  bound   {} of the time ({} bound); achieved {} of peak {}\n", parts,
               arch::bound_of(t.parts), si(t.flops / t.time_s, "FLOP/s"), si(r.info.peak_flops_per_s, "FLOP/s"));
    const double power = t.time_s > 0 ? t.energy_j / t.time_s : 0;
    if (power > dev.tdp_W * (1 + 1e-9))
        fmt::print(stderr,
                   "warning: average power {} exceeds {}'s TDP {}: an energy figure of this device is too high\n",
                   si(power, "W"), dev.name, si(dev.tdp_W, "W"));
}

}  // namespace

int cmd_run(const Args& args) {
    ExperimentOptions opt;
    std::string db_path;
    bool quiet = false;
    po::options_description desc("mlsim run options");
    desc.add_options()("help,h", "show this help and the device config keys")(
        "system,s", po::value(&opt.system)->required(),
        "system or device config file, a SCALE-Sim .cfg, or a preset name (mlsim list devices)")(
        "model,m", po::value(&opt.model)->required(),
        "zoo model name (mlsim list models), a model .yaml, or a SCALE-Sim topology .csv")(
        "batch,b", po::value(&opt.batch)->default_value(1), "batch size")(
        "seq", po::value(&opt.seq)->default_value(0),
        "sequence length (prompt length for prefill, KV-cache length for decode); 0 = model default")(
        "image", po::value(&opt.image)->default_value(0), "image side in pixels; 0 = model default")(
        "dtype,t", po::value(&opt.dtype),
        "data type: fp32 tf32 bf16 fp16 fp8 int8 int4; default fp32, or the device's first data type when it "
        "has no fp32")(
        "mode", po::value(&opt.mode)->default_value("inference"), "inference | training")(
        "optimizer", po::value(&opt.optimizer)->default_value("adam"), "training optimizer: sgd | momentum | adam")(
        "checkpointing", po::bool_switch(&opt.checkpointing), "training: recompute activations (checkpointing)")(
        "fidelity", po::value(&opt.fidelity),
        "systolic devices: tile (closed-form folds in the event engine, default) | cycle (PE grid stepped "
        "cycle by cycle with real values)")(
        "convention", po::value(&opt.convention),
        "systolic devices: faithful (default) | scalesim (SCALE-Sim v2 cycle counts, CALC mode)")(
        "db", po::value(&db_path), "append the run to this SQLite results database")(
        "quiet,q", po::bool_switch(&quiet), "print totals only, not the per-layer table");
    auto vm = parse(args, desc);
    if (!vm) {
        std::cout << "usage: mlsim run --system FILE --model NAME|FILE [options]\n\n" << desc << "\n"
                  << "Device config keys (configs/README.md):\n"
                  << cfg::describe(arch::device_schema());
        return 0;
    }
    if (opt.mode != "training" && (!vm->at("optimizer").defaulted() || opt.checkpointing))
        cfg::fail(cfg::SourceLoc{"<command line>", 0, 0}, opt.checkpointing ? "--checkpointing" : "--optimizer",
                  "applies only to --mode training");
    // Open the database first so a bad path fails before any simulation work.
    std::optional<db::ResultsDb> db;
    if (!db_path.empty()) db.emplace(db_path);
    const auto t0 = std::chrono::steady_clock::now();
    ExperimentResult r = run_experiment(opt);
    const double wall =
        std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    if (!quiet) print_layer_table(r);
    if (r.system.device_count > 1)
        fmt::print(stderr,
                   "note: system '{}' has {} devices; multi-device execution is not modelled yet, so these "
                   "figures are for one {}\n",
                   r.system.name, r.system.device_count, r.system.device.name);
    print_totals(r);
    if (db) {
        const int64_t id = db->record_run(r.info, to_rows(r.layers), wall);
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
            const bool csv = f.size() > 4 && f.substr(f.size() - 4) == ".csv";
            if (csv) {
                wl::Model m = wl::load_scalesim_csv(f, wl::ZooOptions{});
                fmt::print("{}: ok (SCALE-Sim topology, {} layers)\n", f, m.ops().size());
                continue;
            }
            if (f.size() > 4 && f.substr(f.size() - 4) == ".cfg") {
                arch::SystemSpec s = arch::systolic::load_scalesim_cfg(f);
                fmt::print("{}: ok (SCALE-Sim config: {})\n", f, s.device.description);
                continue;
            }
            const cfg::Node doc = cfg::load_file(f);
            if (doc.is_map() && (doc.find("factors") || doc.find("base") || doc.find("zip"))) {
                const Sweep sweep = load_sweep(f);
                check_points(sweep);
                fmt::print("{}: ok (sweep '{}', {} points)\n", f, sweep.name, sweep.point_count());
            } else if (doc.is_map() && (doc.find("ops") || doc.find("model"))) {
                wl::Model m = wl::load_model_yaml(f, wl::ZooOptions{});
                fmt::print("{}: ok (model '{}', {} ops)\n", f, m.name(), m.ops().size());
            } else {
                arch::SystemSpec s = arch::load_system(f, {configs_dir() + "/devices"});
                const std::size_t switches = s.topology->switches().size(), links = s.topology->link_count();
                fmt::print("{}: ok (system '{}': {}{})\n", f, s.name, s.device_summary(),
                           s.has_network() || switches
                               ? fmt::format("; {} switch{}, {} link{}", switches, switches == 1 ? "" : "es",
                                             links, links == 1 ? "" : "s")
                               : "");
            }
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
    const std::vector<std::string> header = {"preset",   "devices", "device types", "nodes",
                                             "switches", "links",   "description"};
    const std::vector<bool> right = {false, true, false, true, true, true, false};
    std::vector<std::vector<std::string>> rows{header};
    for (const std::string& name : arch::list_system_presets(configs_dir())) {
        const arch::SystemSpec s = arch::load_system(
            (fs::path(configs_dir()) / "systems" / (name + ".yaml")).string(), {configs_dir() + "/devices"});
        std::string types;
        for (const std::string& t : s.type_names()) types += (types.empty() ? "" : ",") + t;
        rows.push_back({name, std::to_string(s.device_count), types, std::to_string(s.nodes.size()),
                        std::to_string(s.topology->switches().size()),
                        std::to_string(s.topology->link_count()), s.description});
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
        for (const std::string& name : arch::list_device_presets(configs_dir())) {
            const arch::DeviceSpec d =
                arch::load_device((fs::path(configs_dir()) / "devices" / (name + ".yaml")).string());
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
