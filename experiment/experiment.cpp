#include "experiment/experiment.h"

#include <fmt/format.h>

#include <algorithm>
#include <cstdlib>
#include <filesystem>
#include <tuple>
#include <type_traits>
#include <utility>

#include "arch/family.h"
#include "arch/system/parallel_exec.h"
#include "experiment/collective_study.h"
#include "experiment/key_path.h"
#include "experiment/run_options.h"
#include "sim/config/loader.h"
#include "sim/config/schema.h"
#include "sim/config/units.h"
#include "sim/core/check.h"

namespace mlsim::exp {

namespace fs = std::filesystem;

namespace {

bool ends_with(std::string_view s, std::string_view suffix) {
    return s.size() >= suffix.size() && s.substr(s.size() - suffix.size()) == suffix;
}

cfg::Node scalar(const std::string& value, const std::string& path) {
    return cfg::Node::make_scalar(value, cfg::SourceLoc{"<command line>", 0, 0}, path);
}

// The model with its embedding tables as the options ask (ExperimentOptions::embedding_dtype and
// max_table_rows): embedding ops in embedding_dtype (their tables and lookups, and so their gradients,
// updates and optimizer state in training) with their pooled outputs in the op's former type
// (EmbeddingAttr::output_dtype), embedding-bag tables capped at max_table_rows rows; every other op as built.
wl::Model adjust_embeddings(const wl::Model& m, const ExperimentOptions& opt,
                            const arch::DeviceSpec& device) {
    const cfg::SourceLoc cli{"<command line>", 0, 0};
    std::optional<wl::DType> dt;
    if (!opt.embedding_dtype.empty()) {
        dt = wl::parse_dtype(opt.embedding_dtype);
        MLSIM_CHECK(dt.has_value(), "embedding dtype not checked against the data types");
        // The device must compute in it (a bag's pooling adds in the table's type); fail before any work.
        if (!device.peak_ops_per_s.count(opt.embedding_dtype))
            cfg::fail(cli, "--embedding-dtype",
                      fmt::format("device '{}' does not compute in {} (its peaks: {})", device.name,
                                  opt.embedding_dtype, fmt::join(device.dtypes(), ", ")));
    }
    bool any = false, any_bag = false;
    for (const wl::Op& op : m.ops()) {
        const wl::EmbeddingAttr* e = op.get<wl::EmbeddingAttr>();
        any = any || e;
        any_bag = any_bag || (e && e->bag);
    }
    if (dt && !any)
        cfg::fail(cli, "--embedding-dtype",
                  fmt::format("model '{}' has no embedding ops whose data type it could set", m.name()));
    if (opt.max_table_rows > 0 && !any_bag)
        cfg::fail(cli, "--max-table-rows",
                  fmt::format("model '{}' has no embedding-bag tables to cap", m.name()));
    // A table another op reuses (a tied LM head) would be read in two types.
    if (dt)
        for (const wl::Op& op : m.ops())
            if (const std::optional<size_t> t = op.tied_to.empty() ? std::nullopt : m.find(op.tied_to);
                t && m.op(*t).get<wl::EmbeddingAttr>() && !op.get<wl::EmbeddingAttr>())
                cfg::fail(
                    cli, "--embedding-dtype",
                    fmt::format("op '{}' of model '{}' shares the weights of embedding '{}' (tied): its "
                                "table cannot take another data type than the op",
                                op.name, m.name(), op.tied_to));
    wl::ModelBuilder b(m.name());
    for (const wl::Op& op : m.ops()) {
        wl::Op copy = op;
        if (wl::EmbeddingAttr* e = std::get_if<wl::EmbeddingAttr>(&copy.attr)) {
            if (dt && *dt != copy.dtype) {
                // The lookups pool in the table's type; their output is cast to the type the next ops
                // run in (autocast: NVIDIA's DLRM casts them to FP16, dlrm/nn/parts.py DlrmBottom).
                e->output_dtype = copy.dtype;
                copy.dtype = *dt;
            }
            if (e->bag && opt.max_table_rows > 0) e->rows = std::min(e->rows, opt.max_table_rows);
        }
        b.add(std::move(copy));
    }
    for (const wl::Edge& e : m.edges()) b.connect(wl::TensorRef{e.from, e.from_slot}, e.to, e.to_slot);
    return std::move(b).build();
}

wl::Model build_model(const ExperimentOptions& opt, const wl::ZooOptions& zo, std::string* model_source) {
    const bool file_like = ends_with(opt.model, ".yaml") || ends_with(opt.model, ".yml") ||
                           ends_with(opt.model, ".csv") || opt.model.find('/') != std::string::npos;
    if (!file_like)
        return opt.model_cache ? opt.model_cache->get(opt.model, zo) : wl::zoo_build(opt.model, zo);
    if (!fs::is_regular_file(opt.model))
        cfg::fail(cfg::SourceLoc{opt.model, 0, 0}, "",
                  fmt::format("cannot open model file ({}); give a zoo model name (mlsim list models) "
                              "or a .yaml / .csv file",
                              fs::exists(opt.model) ? "not a regular file" : "no such file"));
    *model_source = cfg::read_text_file(opt.model, cfg::SourceLoc{opt.model, 0, 0}, "");
    if (ends_with(opt.model, ".csv")) return wl::load_scalesim_csv(opt.model, zo);
    return wl::load_model_yaml(opt.model, zo);
}

// A model that cannot be held by the device is a user error, not a silently optimistic number.
void check_fits(const arch::SystemSpec& sys, const wl::Model& model, const ExperimentOptions& opt) {
    const arch::DeviceSpec& dev = sys.device;
    const arch::MemoryLevel& main = dev.main_memory();
    double resident = 0;
    std::string what;
    if (opt.mode == "training") {
        const wl::MemoryAccount m =
            wl::training_memory(model, wl::TrainingOptions{opt.optimizer, opt.checkpointing});
        resident = m.total_bytes;
        what = fmt::format("training state (weights {}, gradients {}, optimizer state {}, activations {}{})",
                           cfg::format_quantity(m.weights_bytes, cfg::Dim::size),
                           cfg::format_quantity(m.gradients_bytes, cfg::Dim::size),
                           cfg::format_quantity(m.optimizer_state_bytes, cfg::Dim::size),
                           cfg::format_quantity(m.activations_bytes, cfg::Dim::size),
                           m.kv_cache_bytes > 0
                               ? ", KV cache " + cfg::format_quantity(m.kv_cache_bytes, cfg::Dim::size)
                               : "");
    } else {
        // With external memory the MCU model places the weights and the arena itself (flash, SRAM
        // banks, external memory) and refuses a model that does not fit, with both figures
        // (arch/mcu/mcu_model.h, place()).
        const cfg::Node* mcu = dev.section("mcu");
        if (dev.model == "mcu" && mcu != nullptr && mcu->find("external") != nullptr) return;
        // The largest layer's activations; a decode attention's KV cache is counted once for the whole model
        // below (every layer's cache is held at once), not again as that layer's input.
        double working = 0;
        for (const wl::Op& op : model.ops()) {
            const wl::OpCounts c = op.counts();
            working = std::max(working, c.input_bytes + c.output_bytes - wl::kv_cache_bytes(op));
        }
        const double kv_cache = model.kv_cache_bytes();
        const double weights = model.totals().weight_bytes;
        // A main memory named flash (an MCU's, or an NPU's beside one: ethos-u55) is written only when the
        // device is programmed: activations cannot live there, only in the SRAM below it.
        if ((dev.family == "mcu" || main.name == "flash") && dev.memory.size() > 1) {
            // Weights stay in flash (main memory); activations must fit in the SRAM arena.
            const arch::MemoryLevel& sram = dev.memory.front();
            // The MCU model plans the tensor arena itself (in-place ops share a buffer) and refuses
            // a model that does not fit, with both figures; this estimate is for the roofline.
            if (dev.model != "mcu" && weights <= main.capacity_bytes && working > sram.capacity_bytes)
                cfg::fail(cfg::SourceLoc{"<command line>", 0, 0}, "--model",
                          fmt::format("model '{}' does not fit on {}: its largest layer needs {} of "
                                      "activations but {} has {}",
                                      model.name(), dev.name, cfg::format_quantity(working, cfg::Dim::size),
                                      sram.name, cfg::format_quantity(sram.capacity_bytes, cfg::Dim::size)));
            resident = weights;
            what = "its weights";
        } else if (kv_cache > 0) {
            resident = weights + kv_cache + working;
            what = fmt::format("its weights ({}), KV cache ({}) and largest layer's activations",
                               cfg::format_quantity(weights, cfg::Dim::size),
                               cfg::format_quantity(kv_cache, cfg::Dim::size));
        } else {
            resident = weights + working;
            what = "its weights plus the largest layer's activations";
        }
    }
    if (resident > main.capacity_bytes)
        cfg::fail(cfg::SourceLoc{"<command line>", 0, 0}, "--model",
                  fmt::format("model '{}' does not fit on {}: {} need {} but {} holds {}", model.name(),
                              dev.name, what, cfg::format_quantity(resident, cfg::Dim::size), main.name,
                              cfg::format_quantity(main.capacity_bytes, cfg::Dim::size)));
}

}  // namespace

std::string configs_dir() {
    if (const char* env = std::getenv("MLSIM_CONFIGS"); env && *env) return env;
    return std::string(MLSIM_DEFAULT_CONFIGS);
}

std::optional<std::string> find_system_preset(const std::string& name) {
    for (const char* sub : {"systems", "devices"}) {
        fs::path p = fs::path(configs_dir()) / sub / (name + ".yaml");
        std::error_code ec;
        if (fs::is_regular_file(p, ec)) return p.string();
    }
    return std::nullopt;
}

std::string resolve_system_path(const std::string& arg, const cfg::SourceLoc& loc, std::string_view key) {
    if (fs::exists(arg)) return arg;
    const bool path_like = arg.find('/') != std::string::npos || ends_with(arg, ".yaml") ||
                           ends_with(arg, ".yml") || arch::find_system_format(arg) != nullptr;
    if (!path_like) {
        if (std::optional<std::string> preset = find_system_preset(arg)) return *preset;
        std::vector<std::string> names = arch::list_device_presets(configs_dir());
        const std::string near = cfg::nearest(arg, names);
        cfg::fail(loc, key,
                  fmt::format("no such file or preset '{}'{}", arg,
                              near.empty() ? "; see 'mlsim list devices'"
                                           : fmt::format("; did you mean '{}'?", near)));
    }
    cfg::fail(cfg::SourceLoc{arg, 0, 0}, "", "cannot open system file (no such file)");
}

wl::Model ModelCache::get(std::string_view name, const wl::ZooOptions& zo) {
    // Every field of ZooOptions is in the key: a field added there must be added here.
    static_assert(sizeof(wl::ZooOptions) == 5 * sizeof(int64_t),
                  "ModelCache's key misses a ZooOptions field");
    Key key{std::string(name), zo.batch, zo.seq, zo.image, static_cast<int>(zo.dtype), zo.hidden};
    {
        std::lock_guard lock(m_mutex);
        if (auto it = m_models.find(key); it != m_models.end()) return it->second;
    }
    wl::Model built = wl::zoo_build(name, zo);  // outside the lock: other threads build or copy meanwhile
    std::lock_guard lock(m_mutex);
    if (m_models.size() >= k_max_models) m_models.clear();
    m_models.emplace(std::move(key), built);
    return built;
}

arch::SystemSpec load_system_file(const std::string& path) {
    if (const arch::SystemFormat* format = arch::find_system_format(path)) return format->load(path);
    return arch::load_system(path, {configs_dir() + "/devices"});
}

// One layer's row; from an rvalue (`Layer` = arch::LayerResult) its strings are moved rather than copied:
// a systolic ResNet-50 point has some 3,000 of them (names, levels, metric names and units), and copying
// them cost about a million instructions a point in a sweep.
// Filled in place (`r` is the rows' new last element): a row built apart and moved in moved each of its
// ~40 strings twice, about a third of to_rows' 0.7 M instructions a sweep point.
template <class Layer>
void to_row(Layer&& l, db::LayerRow& r) {
    constexpr bool move = !std::is_lvalue_reference_v<Layer>;
    const auto take = [](auto& s) -> decltype(auto) {
        if constexpr (move)
            return std::move(s);
        else
            return static_cast<const std::remove_reference_t<decltype(s)>&>(s);
    };
    r.idx = l.idx;
    r.name = take(l.name);
    r.op = take(l.op);
    r.phase = take(l.phase);
    r.dtype = take(l.dtype);
    r.macs = l.counts.macs;
    r.flops = l.counts.flops;
    r.params = l.counts.params;
    r.bytes_read = l.bytes_read;
    r.bytes_written = l.bytes_written;
    r.start_s = l.start_s;
    r.end_s = l.end_s;
    r.time_s = l.time_s;
    r.cycles = l.cycles;
    r.stall_cycles = l.stall_cycles;
    r.energy_j = l.energy_j();
    r.energy_compute_j = l.energy_compute_j;
    r.energy_memory_j = l.energy_memory_j;
    r.energy_static_j = l.energy_static_j;
    r.utilization = l.utilization;
    r.bound = take(l.bound);
    r.compute_s = l.parts.compute_s;
    r.memory_s = l.parts.memory_s;
    r.overhead_s = l.parts.overhead_s;
    r.communication_s = l.parts.communication_s;
    r.levels.reserve(l.levels.size());
    // Braced, not emplace_back(args...): aggregates built from parentheses need clang 16 (CI's sanitizer
    // build uses Debian 12's clang 14).
    for (auto& lv : l.levels)
        r.levels.push_back(
            db::LevelRow{take(lv.level), lv.bytes_read, lv.bytes_written, lv.accesses, lv.energy_j});
    r.metrics.reserve(l.metrics.size());
    for (auto& m : l.metrics)
        r.metrics.push_back(db::MetricRow{take(m.name), m.value, take(m.unit), take(m.text)});
}

std::vector<db::LayerRow> to_rows(const std::vector<arch::LayerResult>& layers) {
    std::vector<db::LayerRow> rows;
    rows.reserve(layers.size());
    for (const auto& l : layers) to_row(l, rows.emplace_back());
    return rows;
}

std::vector<db::LayerRow> to_rows(std::vector<arch::LayerResult>&& layers) {
    std::vector<db::LayerRow> rows;
    rows.reserve(layers.size());
    for (auto& l : layers) to_row(std::move(l), rows.emplace_back());
    return rows;
}

void prepare_rows(std::vector<arch::LayerResult>&& layers, const ExperimentOptions& o,
                  db::PreparedLayers& out) {
    db::prepare_layers(to_rows(std::move(layers)), out);
    if (o.layer_rows == "none") out.drop_rows();
}

arch::SystemSpec apply_overrides(const arch::SystemSpec& system,
                                 const std::vector<ConfigOverride>& overrides) {
    if (overrides.empty()) return system;
    cfg::Node doc = system.resolved;
    for (const ConfigOverride& o : overrides) {
        const std::vector<PathStep> steps = parse_key_path(o.key_path, o.value.key_loc());
        const std::string& head = steps.front().key;
        if ((head != "device" && head != "system") || steps.size() < 2 || steps[1].index)
            cfg::fail(o.value.key_loc(), o.key_path,
                      "an override names a key inside the device or the system: device.<key>... or "
                      "system.<key> (e.g. device.clock, device.memory[0].capacity, system.count)");
        std::string key_path = o.key_path;
        if (!o.option.empty()) {
            // A run option sets one setting of a section the device has; it does not create the section.
            // A shared one (several families declare it) sets the key of the section the device has.
            const auto section_of = [&](const std::vector<PathStep>& path) {
                const cfg::Node* section = &doc;
                for (std::size_t i = 0; section && i + 1 < path.size(); ++i)
                    section = path[i].index || !section->is_map() ? nullptr : section->find(path[i].key);
                return section;
            };
            std::vector<std::string> candidates{o.key_path};
            candidates.insert(candidates.end(), o.alternatives.begin(), o.alternatives.end());
            std::vector<std::string> sections;
            const cfg::Node* section = nullptr;
            for (const std::string& candidate : candidates) {
                const std::vector<PathStep> path = parse_key_path(candidate, o.value.key_loc());
                sections.push_back(path[path.size() - 2].key);
                if ((section = section_of(path))) {
                    key_path = candidate;
                    break;
                }
            }
            if (!section && candidates.size() == 1)
                cfg::fail(o.value.key_loc(), o.option,
                          fmt::format("device '{}' has no {} section, so {} cannot be set",
                                      system.device.name, steps[steps.size() - 2].key, o.key_path));
            if (!section)
                cfg::fail(
                    o.value.key_loc(), o.option,
                    fmt::format("device '{}' has none of the sections it sets ({}: {})", system.device.name,
                                fmt::join(sections, ", "), fmt::join(candidates, ", ")));
        }
        set_at_path(doc, key_path, o.value, o.value.key_loc());
    }
    const cfg::Node* dev = doc.find("device");
    const cfg::Node* sys = doc.find("system");
    MLSIM_CHECK(dev && sys, "a resolved system lacks its `system` or `device` map");
    if (const cfg::Node* d = sys->is_map() ? sys->find("device") : nullptr)
        cfg::fail(d->loc(), "system.device",
                  "cannot be overridden: the device is already loaded; sweep over `system` (the file or "
                  "preset) instead");
    return arch::system_from_resolved(doc);
}

namespace {

// Appends `t` with its length first, so that no two sequences of texts give the same key.
void append_text_key(std::string& out, std::string_view t) {
    out += std::to_string(t.size());
    out += ':';
    out += t;
}

// Appends everything of `n` that apply_overrides can carry into the system (see OverrideCache).
void append_node_key(std::string& out, const cfg::Node& n) {
    const auto text = [&](std::string_view t) { append_text_key(out, t); };
    const auto loc = [&](const cfg::SourceLoc& l) {
        text(l.file);
        out += fmt::format("{},{};", l.line, l.col);
    };
    out += static_cast<char>('0' + static_cast<int>(n.kind()));
    loc(n.loc());
    loc(n.key_loc());
    text(n.path());
    if (n.is_scalar()) text(n.scalar());
    out += std::to_string(n.entries().size()) + '{';
    for (const auto& [key, value] : n.entries()) {
        text(key);
        append_node_key(out, value);
    }
    out += std::to_string(n.items().size()) + '[';
    for (const cfg::Node& item : n.items()) append_node_key(out, item);
}

}  // namespace

std::shared_ptr<const arch::SystemSpec> OverrideCache::get(
    const std::shared_ptr<const arch::SystemSpec>& system, const std::vector<ConfigOverride>& overrides) {
    std::string key = fmt::format("{}|{}|", static_cast<const void*>(system.get()), overrides.size());
    for (const ConfigOverride& o : overrides) {
        const auto text = [&](std::string_view t) { append_text_key(key, t); };
        text(o.key_path);
        text(o.option);
        key += std::to_string(o.alternatives.size()) + '(';
        for (const std::string& a : o.alternatives) text(a);
        append_node_key(key, o.value);
    }
    {
        std::lock_guard lock(m_mutex);
        if (auto it = m_index.find(key); it != m_index.end()) {
            m_lru.splice(m_lru.begin(), m_lru, it->second);
            return it->second->system;
        }
    }
    // Outside the lock: other threads apply theirs meanwhile. A failure propagates, and nothing is kept.
    auto applied = std::make_shared<const arch::SystemSpec>(apply_overrides(*system, overrides));
    std::lock_guard lock(m_mutex);
    if (auto it = m_index.find(key); it != m_index.end()) return it->second->system;  // another thread's
    const std::size_t bytes = estimated_bytes(*applied);
    m_lru.push_front(Entry{std::move(key), system, applied, bytes});
    m_index.emplace(m_lru.front().key, m_lru.begin());
    m_bytes += bytes;
    // Over either bound, the entry just older than the most recent half of those the bounds hold goes (the
    // new one, first, always stays).
    while (m_lru.size() > 1 && (m_lru.size() > m_capacity || m_bytes > m_max_bytes)) {
        const std::size_t kept = std::min(m_capacity, m_lru.size() - 1) / 2;
        const auto victim = std::next(m_lru.begin(), static_cast<std::ptrdiff_t>(kept + 1));
        m_bytes -= victim->bytes;
        m_index.erase(victim->key);
        m_lru.erase(victim);
    }
    return applied;
}

std::size_t OverrideCache::size() const {
    std::lock_guard lock(m_mutex);
    return m_lru.size();
}

std::size_t OverrideCache::bytes() const {
    std::lock_guard lock(m_mutex);
    return m_bytes;
}

std::size_t OverrideCache::estimated_bytes(const arch::SystemSpec& s) {
    const std::size_t parts = s.topology ? s.topology->vertex_count() + s.topology->link_count() : 0;
    return std::size_t{32} * 1024 + 270 * parts;
}

// fp32 where the device has it; else its first floating-point type, widest first; else an integer
// accelerator's native mode: its fastest integer type, the narrower on a tie (TPU v1 and Eyeriss run
// int16 too, but int8 is what they are built for).
std::string default_dtype(const arch::DeviceSpec& device) {
    if (device.supports("fp32")) return "fp32";
    for (const std::string& t : device.dtypes())
        if (const auto d = wl::parse_dtype(t); d && wl::dtype_is_float(*d)) return t;
    std::string best;
    for (const std::string& t : device.dtypes()) {
        const auto d = wl::parse_dtype(t);
        if (!d) continue;
        if (best.empty() || device.peak_for(t) > device.peak_for(best) ||
            (device.peak_for(t) == device.peak_for(best) &&
             wl::dtype_bits(*d) < wl::dtype_bits(*wl::parse_dtype(best))))
            best = t;
    }
    if (!best.empty()) return best;
    cfg::fail(cfg::SourceLoc{"<command line>", 0, 0}, "--dtype",
              fmt::format("device '{}' supports no workload data type; give --dtype", device.name));
}

wl::ParallelPlan parallel_plan(const ExperimentOptions& o) {
    wl::ParallelPlan p;
    p.data = o.data_parallel;
    p.tensor = o.tensor_parallel;
    p.pipeline = o.pipeline_parallel;
    p.expert = o.expert_parallel;
    p.zero = o.zero;
    p.microbatches = o.microbatches;
    p.sequence_parallel = o.sequence_parallel;
    p.schedule =
        o.pipeline_schedule == "gpipe" ? wl::PipelineSchedule::gpipe : wl::PipelineSchedule::one_f_one_b;
    p.recompute = o.recompute == "full"        ? wl::Recompute::full
                  : o.recompute == "selective" ? wl::Recompute::selective
                                               : wl::Recompute::none;
    p.loc = cfg::SourceLoc{"<command line>", 0, 0};
    p.key = "--parallel";
    p.keys = {{"data", "--data-parallel"},
              {"tensor", "--tensor-parallel"},
              {"pipeline", "--pipeline-parallel"},
              {"expert", "--expert-parallel"},
              {"zero", "--zero"},
              {"microbatches", "--microbatches"},
              {"sequence_parallel", "--sequence-parallel"},
              {"recompute", "--recompute"}};
    return p;
}

namespace {

// Each device's main memory and type name, in device order (rank i runs on device i, of whatever type).
struct DeviceMemories {
    std::vector<double> capacity_bytes;
    std::vector<std::string> names;
};
DeviceMemories device_memories(const arch::SystemSpec& system) {
    DeviceMemories m;
    for (const arch::SystemDevice& d : system.devices) {
        m.capacity_bytes.push_back(system.type_of(d).main_memory().capacity_bytes);
        m.names.push_back(system.type_of(d).name);
    }
    return m;
}

}  // namespace

// " besides its host(s) (...)" where a system has host nodes, whose devices run no rank; else empty.
std::string hosts_note(const arch::SystemSpec& system) {
    std::vector<std::string> hosts;
    for (const arch::SystemNode& n : system.nodes)
        if (n.host) hosts.push_back(fmt::format("{} x {}", n.devices, system.device_types.at(n.type).name));
    if (hosts.empty()) return {};
    std::string list = hosts.front();
    for (std::size_t i = 1; i < hosts.size(); ++i) list += ", " + hosts[i];
    return fmt::format(" besides its host{} ({}), which run no rank", hosts.size() == 1 ? "" : "s", list);
}

wl::ShardingOptions sharding_options(const ExperimentOptions& o, const arch::SystemSpec& system) {
    wl::ShardingOptions so;
    so.ranks = system.rank_devices();
    // Nodes of equal size give the node and cross-node groups (table-row-wise); otherwise one node. Ranks
    // on the leading devices of the default type alone (a host after them) are the nodes those fill.
    int64_t per_node = system.nodes.empty() ? 0 : system.nodes.front().devices;
    int64_t covered = 0;
    for (const arch::SystemNode& n : system.nodes) {
        if (covered >= so.ranks) break;
        if (n.devices != per_node) per_node = 0;
        covered += n.devices;
    }
    if (covered != so.ranks) per_node = 0;
    so.ranks_per_node = per_node;
    so.training = o.mode == "training";
    so.training_options = wl::TrainingOptions{o.optimizer, o.checkpointing};
    so.sparse_optimizer = o.sparse_optimizer;
    so.capacity_bytes = system.device.main_memory().capacity_bytes;
    so.device_name = system.device.name;
    // Rank i holds its shards on device i: in a system of several types, each its own memory.
    if (system.device_types.size() > 1) {
        DeviceMemories m = device_memories(system);
        m.capacity_bytes.resize(static_cast<size_t>(so.ranks));
        m.names.resize(static_cast<size_t>(so.ranks));
        so.rank_capacity_bytes = std::move(m.capacity_bytes);
        so.rank_device_names = std::move(m.names);
    }
    return so;
}

bool has_parallel_plan(const ExperimentOptions& o) {
    return o.data_parallel != 1 || o.tensor_parallel != 1 || o.pipeline_parallel != 1 ||
           o.expert_parallel != 1 || o.zero != 0 || o.microbatches != 1 || o.sequence_parallel ||
           o.pipeline_schedule != "1f1b" || o.recompute != "none";
}

namespace {

// set_workload_options() with the data type given apart (prepare_experiment's default one), so that the
// options need not be copied to change it.
void put_workload_options(cfg::Node& map, const ExperimentOptions& o, const std::string& dtype) {
    const cfg::SourceLoc loc = map.loc();
    const auto put = [&](const char* key, const std::string& value) {
        map.set(key, cfg::Node::make_scalar(value, loc, map.path() + "." + key));
    };
    put("batch", std::to_string(o.batch));
    put("seq", std::to_string(o.seq));
    put("image", std::to_string(o.image));
    put("dtype", dtype);
    put("mode", o.mode);
    if (o.mode == "training") {
        put("optimizer", o.optimizer);
        put("checkpointing", o.checkpointing ? "true" : "false");
    }
    if (!o.embedding_sharding.empty()) put("embedding_sharding", o.embedding_sharding);
    // Only when set, so that the configs of runs without them keep their hashes.
    if (!o.embedding_dtype.empty()) put("embedding_dtype", o.embedding_dtype);
    if (o.max_table_rows > 0) put("max_table_rows", std::to_string(o.max_table_rows));
    if (o.sparse_optimizer != "rowwise_adagrad") put("sparse_optimizer", o.sparse_optimizer);
    if (o.layer_rows != "all") put("layer_rows", o.layer_rows);
    if (has_parallel_plan(o)) {  // only then, so that single-device configs keep their hashes
        cfg::Node par = cfg::Node::make_map(loc, map.path() + ".parallel");
        const auto pput = [&](const char* key, const std::string& value) {
            par.set(key, cfg::Node::make_scalar(value, loc, par.path() + "." + key));
        };
        pput("data", std::to_string(o.data_parallel));
        pput("tensor", std::to_string(o.tensor_parallel));
        pput("pipeline", std::to_string(o.pipeline_parallel));
        pput("expert", std::to_string(o.expert_parallel));
        pput("zero", std::to_string(o.zero));
        pput("microbatches", std::to_string(o.microbatches));
        pput("sequence_parallel", o.sequence_parallel ? "true" : "false");
        pput("schedule", o.pipeline_schedule);
        if (o.recompute != "none") pput("recompute", o.recompute);  // absent: the hashes of older runs
        map.set("parallel", std::move(par));
    }
}

}  // namespace

void set_workload_options(cfg::Node& map, const ExperimentOptions& o) {
    put_workload_options(map, o, o.dtype);
}

void check_model_options(const ExperimentOptions& opt) {
    wl::ZooOptions zo;
    zo.batch = opt.batch;
    zo.seq = opt.seq;
    zo.image = opt.image;
    zo.dtype = opt.dtype.empty() ? wl::DType::fp32 : wl::parse_dtype(opt.dtype).value_or(wl::DType::fp32);
    std::string model_source;
    (void)build_model(opt, zo, &model_source);
}

PreparedExperiment prepare_experiment(const ExperimentOptions& opt) {
    check_run_options(opt);

    PreparedExperiment p;
    p.result = std::make_unique<ExperimentResult>();
    ExperimentResult& r = *p.result;
    if (!opt.preloaded_system) {
        r.system = load_system_file(resolve_system_path(opt.system));
        if (!opt.device_overrides.empty()) r.system = apply_overrides(r.system, opt.device_overrides);
    } else if (opt.device_overrides.empty()) {
        r.system = *opt.preloaded_system;
    } else if (opt.override_cache) {
        r.system = *opt.override_cache->get(opt.preloaded_system, opt.device_overrides);
    } else {
        // Straight from the preloaded system: a copy of it first would be thrown away (~0.1 M
        // instructions a sweep point).
        r.system = apply_overrides(*opt.preloaded_system, opt.device_overrides);
    }
    // No --dtype: fp32 where the device computes in it, else see default_dtype()
    // (a SCALE-Sim .cfg or an int8 accelerator).
    const std::string dtype_name = opt.dtype.empty() ? default_dtype(r.system.device) : opt.dtype;
    const std::optional<wl::DType> dtype = wl::parse_dtype(dtype_name);
    MLSIM_CHECK(dtype.has_value(), "default data type not a workload data type");
    // The dtype must be one the device computes in; fail before any work.
    (void)r.system.device.peak_for(dtype_name);

    wl::ZooOptions zo;
    zo.batch = opt.batch;
    zo.seq = opt.seq;
    zo.image = opt.image;
    zo.dtype = *dtype;
    std::string model_source;
    wl::Model forward = build_model(opt, zo, &model_source);
    if (!opt.embedding_dtype.empty() || opt.max_table_rows > 0)
        forward = adjust_embeddings(forward, opt, r.system.device);
    if (opt.sparse_optimizer != "rowwise_adagrad" &&
        (opt.embedding_sharding.empty() || opt.mode != "training"))
        cfg::fail(cfg::SourceLoc{"<command line>", 0, 0}, "--sparse-optimizer",
                  "the sparse optimizer updates sharded embedding tables in training: it needs "
                  "--embedding-sharding and --mode training");
    if (!opt.embedding_sharding.empty()) {
        // Embedding sharding (workloads/embedding_sharding.h): tables placed over the devices, the dense
        // part data-parallel over all of them; its own lowering and per-rank memory check.
        const int64_t ranks = r.system.rank_devices();
        if (opt.tensor_parallel != 1 || opt.pipeline_parallel != 1 || opt.expert_parallel != 1 ||
            opt.zero != 0 || opt.microbatches != 1 || (opt.data_parallel != 1 && opt.data_parallel != ranks))
            cfg::fail(
                cfg::SourceLoc{"<command line>", 0, 0}, "--embedding-sharding",
                fmt::format("embedding sharding makes the dense part data-parallel over all {} devices{}; "
                            "it takes no tensor, pipeline, expert, ZeRO or micro-batch plan",
                            ranks, hosts_note(r.system)));
        const wl::ShardingOptions so = sharding_options(opt, r.system);
        const wl::EmbeddingSharding es = wl::make_embedding_sharding(opt.embedding_sharding, forward, so);
        auto lowering = std::make_shared<wl::ParallelLowering>(wl::lower_embedding_sharding(forward, es, so));
        wl::check_embedding_memory(*lowering, es, so);
        r.parallel = std::move(lowering);
    } else if (has_parallel_plan(opt)) {
        // The plan decides what each device holds: checked against the system's device count and each
        // rank's memory against its device (workloads/parallel.h); the execution engine runs the ranks.
        wl::ParallelOptions po;
        po.training = opt.mode == "training";
        po.training_options = wl::TrainingOptions{opt.optimizer, opt.checkpointing};
        const wl::ParallelPlan plan = parallel_plan(opt);
        // Its ranks run on the system's devices, rank r on device r; host nodes (listed last) run none.
        wl::check_parallel_plan(forward, plan, r.system.rank_devices(), po, hosts_note(r.system));
        if (plan.devices() > 1 && !r.system.has_network())
            cfg::fail(plan.loc, plan.key,
                      fmt::format("system '{}' has {} devices but no links or switches between them: a plan "
                                  "over several devices needs a system with a network (e.g. dgx-a100-node)",
                                  r.system.name, r.system.device_count));
        auto lowering = std::make_shared<wl::ParallelLowering>(wl::lower_parallel(forward, plan, po));
        // Each rank against its own device (rank i runs on the system's device i, of whatever type).
        DeviceMemories m = device_memories(r.system);
        std::vector<double>& capacity = m.capacity_bytes;
        std::vector<std::string>& names = m.names;
        if (capacity.empty()) {
            capacity.push_back(r.system.device.main_memory().capacity_bytes);
            names.push_back(r.system.device.name);
        }
        capacity.resize(std::max<size_t>(capacity.size(), static_cast<size_t>(lowering->ranks())),
                        capacity.back());
        names.resize(capacity.size(), names.back());
        wl::check_parallel_memory(*lowering, capacity, names);
        r.parallel = std::move(lowering);
    } else {
        check_fits(r.system, forward, opt);
    }
    if (opt.mode == "training")
        r.training_memory =
            wl::training_memory(forward, wl::TrainingOptions{opt.optimizer, opt.checkpointing});
    r.model = opt.mode == "training"
                  ? wl::lower_training(forward, wl::TrainingOptions{opt.optimizer, opt.checkpointing})
                  : std::move(forward);

    p.device = arch::make_device_model(r.system.device);
    const std::unique_ptr<arch::DeviceModel>& device = p.device;
    // Refused here, before anything runs, when it would take too long or too much memory.
    device->check_work(r.model, arch::WorkLimits{static_cast<double>(opt.max_pe_cycles)});

    // The fully resolved config: everything that decides the numbers, in one deterministic text.
    cfg::Node exp = cfg::Node::make_map(cfg::SourceLoc{"<command line>", 0, 0}, "experiment");
    exp.set("model", scalar(opt.model, "experiment.model"));
    if (!model_source.empty()) exp.set("model_source", scalar(model_source, "experiment.model_source"));
    put_workload_options(exp, opt, dtype_name);
    exp.set("device_model", scalar(std::string(device->model_name()), "experiment.device_model"));
    cfg::Node root = cfg::Node::make_map(cfg::SourceLoc{"<command line>", 0, 0}, "");
    root.set("experiment", std::move(exp));
    // The system's tree is lent to the document for its text and taken back, not copied (~3,000 heap
    // blocks a point in a sweep).
    root.set("system", std::move(r.system.resolved));
    r.resolved_yaml = cfg::to_yaml(root);
    r.system.resolved = std::move(*root.find("system"));

    db::RunInfo& info = r.info;
    info.config_yaml = r.resolved_yaml;
    info.config_hash = db::config_hash(r.resolved_yaml);
    info.system = r.system.name;
    info.device = r.system.device.name;
    info.model = r.model.name();
    info.mode = opt.mode;
    info.dtype = dtype_name;
    info.batch = opt.batch;
    info.seq = opt.seq;
    info.peak_flops_per_s = r.system.device.peak_for(dtype_name);
    info.mem_bandwidth_Bps = r.system.device.main_memory().bandwidth_Bps;
    info.device_model = std::string(device->model_name());
    info.tdp_W = r.system.device.tdp_W;
    return p;
}

ExperimentResult simulate(PreparedExperiment&& prepared) { return simulate(std::move(prepared), {}); }

// ---- parallel runs (issue 13 §2): the execution engine, arch/system/parallel_exec.h ----
namespace {

// Tokens in the batch: the ids of a leading token embedding ([B, S]), else batch x seq when seq is given.
double batch_tokens(const wl::Model& model, const db::RunInfo& info) {
    for (const wl::Op& op : model.ops()) {
        if (op.phase != wl::Phase::forward) continue;
        if (const wl::EmbeddingAttr* e = op.get<wl::EmbeddingAttr>();
            e && !e->bag && op.inputs[0].size() == 2)
            return static_cast<double>(wl::numel(op.inputs[0]));
        break;
    }
    return info.seq > 0 ? static_cast<double>(info.batch * info.seq) : 0.0;
}

}  // namespace

ExperimentResult simulate_parallel(PreparedExperiment&& prepared) {
    ExperimentResult r = std::move(*prepared.result);
    const wl::ParallelLowering& low = *r.parallel;
    arch::ExecOptions eo;
    eo.network = network_options_for(r.system, r.info.dtype);
    auto ex = std::make_shared<arch::ExecResult>(arch::run_parallel(r.system, low, eo));
    ParallelSummary s;
    s.step_time_s = ex->step_time_s;
    if (s.step_time_s > 0) {
        s.samples_per_s = static_cast<double>(r.info.batch) / s.step_time_s;
        s.tokens_per_s = batch_tokens(r.model, r.info) / s.step_time_s;
        s.mfu =
            low.model_flops / (s.step_time_s * static_cast<double>(low.ranks()) * r.info.peak_flops_per_s);
    }
    const arch::RankExec& crit = ex->ranks.at(static_cast<size_t>(ex->critical_rank));
    s.compute_s = crit.compute_s;
    s.exposed_comm_s = crit.exposed_comm_s;
    s.bubble_s = crit.bubble_s;
    for (const arch::RankExec& k : ex->ranks)
        s.peak_memory_bytes = std::max(s.peak_memory_bytes, k.memory.total_bytes);
    s.device_energy_j = ex->device_energy_j;
    s.link_energy_j = ex->link_energy_j;
    r.parallel_run = s;
    r.layers = ex->rank0_layers;  // rank 0's layers (the per-rank table: parallel_exec)
    r.total_time_s = s.step_time_s;
    r.total_energy_j = s.device_energy_j + s.link_energy_j;
    // The run's TDP is that of every device that runs (rank i on the system's device i), as its power is the
    // whole step's.
    if (r.system.devices.size() >= ex->ranks.size()) {
        double tdp = 0;
        for (size_t i = 0; i < ex->ranks.size(); ++i) tdp += r.system.type_of(r.system.devices[i]).tdp_W;
        r.info.tdp_W = tdp;
    } else {
        r.info.tdp_W *= static_cast<double>(ex->ranks.size());
    }
    r.parallel_exec = std::move(ex);
    return r;
}

db::ParallelRows parallel_rows(const ExperimentResult& r) {
    MLSIM_CHECK(r.parallel && r.parallel_run && r.parallel_exec, "parallel_rows of a run without a plan");
    const wl::ParallelPlan& pl = r.parallel->plan;
    const ParallelSummary& s = *r.parallel_run;
    const arch::ExecResult& x = *r.parallel_exec;
    db::ParallelRows p;
    p.data = pl.data;
    p.tensor = pl.tensor;
    p.pipeline = pl.pipeline;
    p.expert = r.parallel->expert_degree();
    p.zero = pl.zero;
    p.microbatches = pl.microbatches;
    p.schedule = pl.schedule == wl::PipelineSchedule::gpipe ? "gpipe" : "1f1b";
    p.ranks = r.parallel->ranks();
    p.step_time_s = s.step_time_s;
    p.samples_per_s = s.samples_per_s;
    p.tokens_per_s = s.tokens_per_s;
    p.mfu = s.mfu;
    p.critical_rank = x.critical_rank;
    p.compute_s = s.compute_s;
    p.exposed_comm_s = s.exposed_comm_s;
    p.bubble_s = s.bubble_s;
    p.peak_memory_bytes = s.peak_memory_bytes;
    p.device_energy_j = s.device_energy_j;
    p.link_energy_j = s.link_energy_j;
    p.symmetry = x.symmetry;
    p.simulated_ranks = x.simulated_ranks;
    p.network_calls = x.network_calls;
    p.memo_hits = x.memo_hits;
    for (const arch::RankExec& k : x.ranks) {
        db::ParallelRankRow row;
        row.rank = k.rank;
        row.stage = k.stage;
        row.compute_s = k.compute_s;
        row.comm_s = k.comm_s;
        row.exposed_comm_s = k.exposed_comm_s;
        row.bubble_s = k.bubble_s;
        row.end_s = k.end_s;
        row.energy_j = k.energy_j;
        row.flops = k.flops;
        row.memory_bytes = k.memory.total_bytes;
        row.weights_bytes = k.memory.weights_bytes;
        row.gradients_bytes = k.memory.gradients_bytes;
        row.optimizer_bytes = k.memory.optimizer_state_bytes;
        row.activations_bytes = k.memory.activations_bytes;
        row.kv_cache_bytes = k.memory.kv_cache_bytes;
        p.rank_rows.push_back(row);
    }
    for (const auto& [purpose, t] : x.exposed_by_purpose) p.exposed_by_purpose.emplace_back(purpose, t);
    for (size_t i = 0; i < x.comms.size(); ++i) {
        const arch::ExecComm& c = x.comms[i];
        db::ParallelCollectiveRow row;
        row.call.idx = static_cast<int64_t>(i);
        row.call.kind = c.kind;
        row.call.algorithm = c.algorithm;
        row.call.protocol = c.protocol;
        row.call.ranks = c.ranks;
        row.call.bytes = c.bytes;
        row.call.start_s = c.start_s;
        row.call.end_s = c.end_s;
        const double t = c.end_s - c.start_s;
        if (t > 0) {
            row.call.algbw_GBps = static_cast<double>(c.bytes) / t / 1e9;
            const std::optional<arch::net::CollectiveKind> k = arch::net::parse_collective_kind(c.kind);
            row.call.busbw_GBps =
                row.call.algbw_GBps * (k ? arch::net::bus_bandwidth_factor(*k, c.ranks) : 1.0);
        }
        row.purpose = c.purpose;
        row.copies = c.copies;
        p.collectives.push_back(std::move(row));
    }
    return p;
}

ExperimentResult simulate(PreparedExperiment&& prepared, const arch::LayerProgress& progress) {
    MLSIM_CHECK(prepared.device != nullptr && prepared.result != nullptr,
                "simulate() of an experiment that was not prepared");
    if (prepared.result->parallel) return simulate_parallel(std::move(prepared));
    prepared.device->set_progress(progress);
    // Run before moving the result out: a device model may refer to the spec and model it was built from.
    prepared.result->layers = prepared.device->run(prepared.result->model);
    ExperimentResult r = std::move(*prepared.result);
    for (const arch::LayerResult& l : r.layers) {
        r.total_time_s += l.time_s;
        r.total_energy_j += l.energy_j();
    }
    return r;
}

ExperimentResult run_experiment(const ExperimentOptions& opt) { return simulate(prepare_experiment(opt)); }

}  // namespace mlsim::exp
