#include "experiment/run_options.h"

#include <fmt/format.h>

#include <algorithm>
#include <map>
#include <set>

#include "arch/device_spec.h"
#include "arch/family.h"
#include "experiment/key_path.h"
#include "sim/core/check.h"
#include "workloads/dtype.h"

namespace mlsim::exp {

using cfg::Param;
using cfg::PType;

namespace {

const cfg::SourceLoc k_command_line{"<command line>", 0, 0};

Param param(std::string name, PType type, std::optional<std::string> default_value, std::string doc) {
    Param p;
    p.name = std::move(name);
    p.type = type;
    p.default_value = std::move(default_value);
    p.doc = std::move(doc);
    return p;
}

Param choice(std::string name, std::vector<std::string> choices, std::optional<std::string> default_value,
             std::string doc) {
    Param p = param(std::move(name), PType::choice, std::move(default_value), std::move(doc));
    p.choices = std::move(choices);
    return p;
}

Param at_least(Param p, double min) {
    p.min = min;
    return p;
}

Param required(Param p) {
    p.required = true;
    return p;
}

RunOption field(Param p, char short_name, std::function<void(ExperimentOptions&, const cfg::Node&)> set,
                std::function<std::optional<std::string>(const ExperimentOptions&)> get) {
    RunOption o;
    o.param = std::move(p);
    o.short_name = short_name;
    o.set = std::move(set);
    o.get = std::move(get);
    return o;
}

// Entries for string, integer and boolean fields, by member pointer.
RunOption string_field(Param p, char short_name, std::string ExperimentOptions::*member) {
    return field(
        std::move(p), short_name,
        [member](ExperimentOptions& o, const cfg::Node& v) { o.*member = v.as_string(); },
        [member](const ExperimentOptions& o) -> std::optional<std::string> {
            if ((o.*member).empty()) return std::nullopt;
            return o.*member;
        });
}

RunOption integer_field(Param p, char short_name, int64_t ExperimentOptions::*member) {
    return field(
        std::move(p), short_name,
        [member](ExperimentOptions& o, const cfg::Node& v) { o.*member = v.as_int(); },
        [member](const ExperimentOptions& o) -> std::optional<std::string> {
            return std::to_string(o.*member);
        });
}

RunOption boolean_field(Param p, char short_name, bool ExperimentOptions::*member) {
    return field(
        std::move(p), short_name,
        [member](ExperimentOptions& o, const cfg::Node& v) { o.*member = v.as_bool(); },
        [member](const ExperimentOptions& o) -> std::optional<std::string> {
            return o.*member ? "true" : "false";
        });
}

std::vector<RunOption> builtin_fields() {
    std::vector<RunOption> t;
    t.push_back(string_field(
        required(
            param("system", PType::string, std::nullopt,
                  "system or device config file, a SCALE-Sim .cfg, or a preset name (mlsim list devices); "
                  "in a sweep file, files are relative to it")),
        's', &ExperimentOptions::system));
    t.push_back(string_field(
        required(
            param("model", PType::string, std::nullopt,
                  "zoo model name (mlsim list models), a model .yaml, or a SCALE-Sim topology .csv; in a "
                  "sweep file, files are relative to it")),
        'm', &ExperimentOptions::model));
    t.push_back(integer_field(at_least(param("batch", PType::integer, "1", "batch size"), 1), 'b',
                              &ExperimentOptions::batch));
    t.push_back(integer_field(
        at_least(param("seq", PType::integer, "0",
                       "sequence length (prompt length for prefill, KV-cache length for decode); 0 = model "
                       "default"),
                 0),
        0, &ExperimentOptions::seq));
    t.push_back(integer_field(
        at_least(param("image", PType::integer, "0", "image side in pixels; 0 = model default"), 0), 0,
        &ExperimentOptions::image));
    // No default: decided once the device is loaded (experiment.cpp, default_dtype()).
    t.push_back(string_field(
        choice("dtype", wl::dtype_names(), std::nullopt,
               "data type; default fp32, else the device's first floating-point type, else its fastest "
               "integer type"),
        't', &ExperimentOptions::dtype));
    t.push_back(string_field(choice("mode", {"inference", "training"}, "inference",
                                    "what to simulate: the forward pass, or training (backward and optimizer "
                                    "ops too)"),
                             0, &ExperimentOptions::mode));
    t.push_back(string_field(choice("optimizer", {"sgd", "momentum", "adam"}, "adam", "training optimizer"),
                             0, &ExperimentOptions::optimizer));
    t.push_back(boolean_field(
        param("checkpointing", PType::boolean, "false", "training: recompute activations (checkpointing)"), 0,
        &ExperimentOptions::checkpointing));
    // The parallel plan (workloads/parallel.h): each degree its own flag, so a sweep can vary one.
    t.push_back(integer_field(
        at_least(param("data-parallel", PType::integer, "1", "parallel plan: data-parallel degree D"), 1), 0,
        &ExperimentOptions::data_parallel));
    t.push_back(
        integer_field(at_least(param("tensor-parallel", PType::integer, "1",
                                     "parallel plan: tensor-parallel degree T (Megatron column/row splits)"),
                               1),
                      0, &ExperimentOptions::tensor_parallel));
    t.push_back(integer_field(
        at_least(param("pipeline-parallel", PType::integer, "1", "parallel plan: pipeline stages P"), 1), 0,
        &ExperimentOptions::pipeline_parallel));
    t.push_back(
        integer_field(at_least(param("expert-parallel", PType::integer, "1",
                                     "parallel plan: expert-parallel degree E (divides D; MoE models)"),
                               1),
                      0, &ExperimentOptions::expert_parallel));
    t.push_back(integer_field(
        at_least(param("zero", PType::integer, "0", "parallel plan: ZeRO stage 0-3 (training, D > 1)"), 0), 0,
        &ExperimentOptions::zero));
    t.push_back(integer_field(
        at_least(param("microbatches", PType::integer, "1",
                       "parallel plan: micro-batches M per step (the batch is a multiple of D x M)"),
                 1),
        0, &ExperimentOptions::microbatches));
    t.push_back(boolean_field(param("sequence-parallel", PType::boolean, "false",
                                    "parallel plan: Megatron sequence parallelism (T > 1)"),
                              0, &ExperimentOptions::sequence_parallel));
    t.push_back(string_field(
        choice("pipeline-schedule", {"1f1b", "gpipe"}, "1f1b", "parallel plan: pipeline schedule"), 0,
        &ExperimentOptions::pipeline_schedule));
    t.push_back(string_field(choice("recompute", {"none", "full", "selective"}, "none",
                                    "parallel plan: activation recomputation (Megatron's granularity)"),
                             0, &ExperimentOptions::recompute));
    // Embedding sharding (workloads/embedding_sharding.h): DLRM-style tables on a multi-device system.
    t.push_back(string_field(
        param("embedding-sharding", PType::string, std::nullopt,
              "shard embedding tables over the system's devices: auto (greedy planner), table, row, column, "
              "table-row, data, or a placement YAML file; the dense part is data-parallel; unset: off"),
        0, &ExperimentOptions::embedding_sharding));
    t.push_back(string_field(
        choice(
            "embedding-dtype", wl::dtype_names(), std::nullopt,
            "data type of the embedding tables, their lookups, gradients and updates (e.g. fp32 tables "
            "in mixed-precision training, as PyTorch AMP keeps them); their pooled outputs and the other ops "
            "stay in --dtype; "
            "default: --dtype"),
        0, &ExperimentOptions::embedding_dtype));
    t.push_back(integer_field(
        at_least(param("max-table-rows", PType::integer, "0",
                       "cap every embedding-bag table at this many rows (ids hashed into them: the reference "
                       "DLRM's --max-ind-range); 0 = the model's own"),
                 0),
        0, &ExperimentOptions::max_table_rows));
    t.push_back(string_field(
        choice("sparse-optimizer", {"rowwise_adagrad", "unfused"}, "rowwise_adagrad",
               "with --embedding-sharding, training: how the tables are updated: rowwise_adagrad (FBGEMM's, "
               "fused into the backward: TorchRec's default) or unfused (--optimizer on the rows the step "
               "touched, after the backward writes their gradient out: torch.optim.SGD on sparse gradients, "
               "as NVIDIA's DLRM example)"),
        0, &ExperimentOptions::sparse_optimizer));
    t.push_back(string_field(
        choice("layer-rows", {"all", "none"}, "all",
               "the per-layer rows a run records in the database (--db; a sweep's points): all, or none (the "
               "run's row with its totals only: ~2 KB a run instead of ~40 KB for a ResNet-50, for sweeps of "
               "many points); the simulation is the same"),
        0, &ExperimentOptions::layer_rows));
    t.push_back(integer_field(
        at_least(param("max-pe-cycles", PType::integer,
                       std::to_string(static_cast<int64_t>(limits::default_max_pe_cycles)),
                       "cycle fidelity: the most PE-cycles (PEs x cycles stepped, plus the reference "
                       "products) a run may take, estimated before it starts (about 3e8 per second); "
                       "raise it to run a larger one"),
                 1),
        0, &ExperimentOptions::max_pe_cycles));
    return t;
}

// Device settings that are not a family's: the model that runs the device.
std::vector<RunOption> builtin_device_options() {
    std::vector<RunOption> t;
    t.push_back(device_option("device-model", "device.model",
                              "the model that runs the device (e.g. roofline, to compare any preset with its "
                              "floor); default: the device config's"));
    return t;
}

// The run options device families declare in the registry (the systolic family's --fidelity, ...): one
// entry per flag, in order of first declaration; a flag declared by several families is shared.
std::vector<RunOption> family_device_options() {
    std::vector<std::string> flags;
    std::map<std::string, std::vector<arch::FamilyOption>> by_flag;
    for (const arch::FamilyOption& o : arch::family_options()) {
        if (!by_flag.count(o.flag)) flags.push_back(o.flag);
        by_flag[o.flag].push_back(o);
    }
    std::vector<RunOption> t;
    for (const std::string& flag : flags) {
        const std::vector<arch::FamilyOption>& decl = by_flag.at(flag);
        if (decl.size() == 1) {
            t.push_back(device_option(flag, decl[0].key_path, decl[0].doc));
            continue;
        }
        std::vector<std::string> keys, docs;
        for (const arch::FamilyOption& o : decl) {
            keys.push_back(o.key_path);
            docs.push_back(o.doc);
        }
        t.push_back(shared_device_option(flag, keys, docs));
    }
    return t;
}

[[noreturn]] void fail_option(const RunOption& e, const std::string& message) {
    cfg::fail(k_command_line, "--" + e.name(), message);
}

}  // namespace

RunOption device_option(std::string name, std::string key_path, std::string doc, char short_name) {
    const std::vector<PathStep> steps = parse_key_path(key_path, k_command_line);
    MLSIM_CHECK(steps.front().key == "device" && steps.size() >= 2,
                fmt::format("device option '{}': '{}' is not a key path into the device", name, key_path));
    const SchemaLeaf leaf = schema_leaf(arch::device_schema(), steps, key_path, k_command_line);
    MLSIM_CHECK(
        leaf.param != nullptr && !leaf.dict_entry && leaf.param->type != PType::map &&
            leaf.param->type != PType::list && leaf.param->type != PType::dict,
        fmt::format("device option '{}': '{}' is not a single value of the device schema", name, key_path));
    RunOption o;
    o.param = *leaf.param;
    o.param.name = std::move(name);
    o.param.doc = std::move(doc);
    o.param.required = false;
    o.param.default_value.reset();  // the device config's value stands unless the option is given
    o.short_name = short_name;
    o.device_key = std::move(key_path);
    return o;
}

RunOption shared_device_option(std::string name, const std::vector<std::string>& key_paths,
                               const std::vector<std::string>& docs) {
    MLSIM_CHECK(!key_paths.empty() && key_paths.size() == docs.size(),
                fmt::format("shared device option '{}': one doc per key path", name));
    RunOption o = device_option(name, key_paths.front(), fmt::format("{}", fmt::join(docs, "; ")));
    for (std::size_t i = 1; i < key_paths.size(); ++i) {
        const RunOption other = device_option(name, key_paths[i], docs[i]);
        MLSIM_CHECK(other.param.type == o.param.type,
                    fmt::format("shared device option '{}': {} and {} are of different kinds", name,
                                key_paths.front(), key_paths[i]));
        for (const std::string& c : other.param.choices)
            if (std::find(o.param.choices.begin(), o.param.choices.end(), c) == o.param.choices.end())
                o.param.choices.push_back(c);
        // A bound holds only where every section has it; each section's own is checked when applied.
        if (o.param.min != other.param.min) o.param.min.reset();
        if (o.param.max != other.param.max) o.param.max.reset();
    }
    o.shared_keys = key_paths;
    return o;
}

std::string RunOption::keys_text() const {
    return shared_keys.empty() ? device_key : fmt::format("{}", fmt::join(shared_keys, " | "));
}

std::vector<RunOption> make_run_options(std::vector<RunOption> extra) {
    std::vector<RunOption> table = builtin_fields();
    for (RunOption& e : builtin_device_options()) table.push_back(std::move(e));
    for (RunOption& e : extra) {
        MLSIM_CHECK(e.is_device_override(),
                    fmt::format("run option '{}': extra entries must be device overrides", e.name()));
        table.push_back(std::move(e));
    }
    std::set<std::string> names;
    std::set<char> shorts;
    for (const RunOption& e : table) {
        MLSIM_CHECK(!e.name().empty() && names.insert(e.name()).second,
                    fmt::format("run option '{}' is declared twice", e.name()));
        MLSIM_CHECK(e.short_name == 0 || shorts.insert(e.short_name).second,
                    fmt::format("run option '{}': short name -{} is taken", e.name(), e.short_name));
        MLSIM_CHECK(e.is_device_override() != static_cast<bool>(e.set),
                    fmt::format("run option '{}' must set a field or be a device override", e.name()));
    }
    return table;
}

const std::vector<RunOption>& run_options() {
    static const std::vector<RunOption> table = make_run_options(family_device_options());
    return table;
}

const RunOption* find_run_option(std::string_view name, const std::vector<RunOption>& table) {
    for (const RunOption& e : table)
        if (e.name() == name) return &e;
    return nullptr;
}

cfg::Schema run_options_schema(const std::vector<RunOption>& table, std::string name, std::string doc) {
    cfg::Schema s;
    s.name = std::move(name);
    s.doc = std::move(doc);
    for (const RunOption& e : table) {
        Param p = e.param;
        if (e.is_device_override()) p.doc += fmt::format(" (sets {})", e.keys_text());
        s.params.push_back(std::move(p));
    }
    return s;
}

void apply_run_option(const RunOption& entry, const cfg::Node& value, ExperimentOptions& o,
                      const std::string& given_as) {
    if (!entry.is_device_override()) {
        entry.set(o, value);
        return;
    }
    cfg::Node v = value;
    v.set_key_loc(value.key_loc());
    ConfigOverride c{entry.device_key, std::move(v), given_as.empty() ? value.path() : given_as};
    if (!entry.shared_keys.empty())
        c.alternatives.assign(entry.shared_keys.begin() + 1, entry.shared_keys.end());
    o.device_overrides.push_back(std::move(c));
}

void apply_run_options(const cfg::Node& validated, ExperimentOptions& o,
                       const std::vector<RunOption>& table) {
    for (const RunOption& e : table)
        if (const cfg::Node* v = validated.find(e.name())) apply_run_option(e, *v, o);
}

void set_run_option(ExperimentOptions& o, std::string_view name, const std::string& value,
                    const std::vector<RunOption>& table) {
    const RunOption* e = find_run_option(name, table);
    MLSIM_CHECK(e != nullptr, fmt::format("no run option '{}'", name));
    const std::string flag = "--" + e->name();
    const std::string path = e->is_device_override() ? e->device_key : flag;
    apply_run_option(*e, cfg::Node::make_scalar(value, k_command_line, path), o, flag);
}

void check_run_options(const ExperimentOptions& o, const std::vector<RunOption>& table) {
    for (const RunOption& e : table) {
        if (e.is_device_override()) continue;  // checked with the device schema when applied
        const std::optional<std::string> text = e.get(o);
        if (!text) continue;
        const Param& p = e.param;
        if (p.type == PType::choice &&
            std::find(p.choices.begin(), p.choices.end(), *text) == p.choices.end())
            fail_option(e,
                        fmt::format("expected one of: {}; found \"{}\"", fmt::join(p.choices, ", "), *text));
        if (p.type == PType::integer && p.min) {
            const int64_t v = std::stoll(*text);
            if (static_cast<double>(v) < *p.min)
                fail_option(e, fmt::format("must be at least {}, found {}", *p.min, v));
        }
    }
}

}  // namespace mlsim::exp
