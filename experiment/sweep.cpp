#include "experiment/sweep.h"

#include <fmt/format.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cmath>
#include <condition_variable>
#include <deque>
#include <exception>
#include <filesystem>
#include <map>
#include <mutex>
#include <optional>
#include <set>
#include <thread>
#include <unordered_map>

#include "arch/family.h"
#include "db/claim_guard.h"
#include "experiment/key_path.h"
#include "experiment/run_options.h"
#include "experiment/sweep_writer.h"
#include "sim/config/limits.h"
#include "sim/config/loader.h"
#include "sim/config/messages.h"
#include "sim/core/check.h"
#include "workloads/embedding_sharding.h"
#include "workloads/model.h"

namespace mlsim::exp {

namespace fs = std::filesystem;
using cfg::Param;
using cfg::PType;

using cfg::join;

const cfg::Schema& sweep_base_schema() {
    // The options of `mlsim run`, from their one declaration: the same keys and values in both.
    static const cfg::Schema schema = run_options_schema(
        run_options(), "base", "the experiment every point starts from (the options of `mlsim run`)");
    return schema;
}

const cfg::Schema& sweep_schema() {
    static const cfg::Schema schema = [] {
        cfg::Schema s;
        s.name = "sweep file";
        s.doc = "a base experiment and the factors that vary it";
        Param name;
        name.name = "name";
        name.type = PType::string;
        name.doc =
            "the sweep's name in the results database and of its default file results/<name>.db (no "
            "'/'); default: the file name without .yaml";
        s.params.push_back(name);
        s.params.push_back(cfg::optional("description", PType::string, "", "what the sweep studies"));
        Param base = cfg::required("base", PType::map, "the experiment every point starts from");
        base.sub = &sweep_base_schema();
        s.params.push_back(base);
        Param factors;
        factors.name = "factors";
        factors.type = PType::dict;
        factors.value_type = PType::string;
        factors.doc =
            "key path -> list of values; the points are the Cartesian product of all factors "
            "(e.g. `batch: [1, 8]`, `device.clock: [1GHz, 2GHz]`)";
        s.params.push_back(factors);
        Param zip;
        zip.name = "zip";
        zip.type = PType::list;
        static const cfg::Schema group{
            "zip group", "key path -> list of values, all lists the same length", {}};
        zip.sub = &group;
        zip.doc =
            "groups of factors (maps of key path -> list of values, all of one length) whose i-th values "
            "go together; each group is one factor of the product";
        s.params.push_back(zip);
        return s;
    }();
    return schema;
}

std::size_t Sweep::point_count() const {
    std::size_t n = 1;
    for (const SweepAxis& a : axes) n *= a.size();
    return n;
}

namespace {

bool ends_with(std::string_view s, std::string_view suffix) {
    return s.size() >= suffix.size() && s.substr(s.size() - suffix.size()) == suffix;
}

// A SCALE-Sim .cfg is a system file too, as on the command line.
std::vector<std::string> param_names(const cfg::Schema& schema) {
    std::vector<std::string> names;
    for (const Param& p : schema.params) names.push_back(p.name);
    return names;
}

const Param* find_param(const cfg::Schema& schema, std::string_view name) {
    for (const Param& p : schema.params)
        if (p.name == name) return &p;
    return nullptr;
}

// Checks an override path against the device / system schema, step by step, so that a misspelt key is
// reported with the nearest valid one before any point is built. Returns the dimension of the value
// when the path ends at a quantity.
std::optional<cfg::Dim> check_override_path(const std::vector<PathStep>& steps, const std::string& path,
                                            const cfg::SourceLoc& loc) {
    const cfg::Schema& schema = steps.front().key == "device" ? arch::device_schema() : arch::system_schema();
    return schema_leaf(schema, steps, path, loc).dim();
}

// The candidates offered for a factor path that names nothing known.
std::vector<std::string> factor_candidates() {
    std::vector<std::string> out = param_names(sweep_base_schema());
    for (const Param& p : arch::device_schema().params) out.push_back("device." + p.name);
    for (const Param& p : arch::system_schema().params)
        if (p.name != "device") out.push_back("system." + p.name);
    return out;
}

// Equal for nodes with the same content (Node::same_content), different otherwise: the kind, then the
// deterministic YAML text, which writes a null, a scalar "null" and a list differently.
std::string content_key(const cfg::Node& v) {
    // A quantity or a number by its value: 1TB/s and 1000GB/s, or 8 and 8.0, are one value written twice
    // (each its own config text, so two runs of one configuration).
    if (v.is_scalar()) {
        if (auto q = cfg::parse_quantity_any(v.scalar()))
            return fmt::format("q{}:{:.12g}", static_cast<int>(q->dim),
                               q->value);  // 12 digits: 1.41GHz = 1410MHz
        if (auto d = v.try_double()) return fmt::format("n:{:.12g}", *d);
    }
    return std::to_string(static_cast<int>(v.kind())) + cfg::to_yaml(v);
}

// `zipped`: a factor of a zip group, whose values may repeat (the group's rows must differ, checked there).
SweepFactor make_factor(const std::string& path, const cfg::Node& values, bool zipped = false) {
    SweepFactor f;
    f.path = path;
    f.loc = values.key_loc();
    const std::vector<PathStep> steps = parse_key_path(path, f.loc);
    const std::string& head = steps.front().key;
    if (steps.size() == 1 && !steps.front().index && find_param(sweep_base_schema(), head)) {
        f.override = false;
        if (const Param* p = find_param(sweep_base_schema(), head); p->type == PType::quantity)
            f.dim = p->dim;
    } else if ((head == "device" || head == "system") && steps.size() >= 2) {
        f.override = true;
        f.dim = check_override_path(steps, path, f.loc);
        if (head == "system" && steps[1].key == "device")
            cfg::fail(f.loc, path,
                      "the device cannot be swept through system.device; use the `system` factor "
                      "(a list of system or device files or presets)");
    } else if (head == "device" || head == "system") {
        cfg::fail(f.loc, path,
                  fmt::format("name a key inside the {0}, e.g. {0}.{1}", head,
                              head == "device" ? "clock" : "count"));
    } else {
        const std::vector<std::string> candidates = factor_candidates();
        const std::string near = cfg::nearest(path, candidates);
        cfg::fail(
            f.loc, path,
            fmt::format("unknown factor '{}'{}; a factor is an experiment key ({}) or a key path into the "
                        "device or system config (device.clock, device.memory[0].capacity, system.count, "
                        "...; see mlsim run --help)",
                        path, near.empty() ? "" : fmt::format(" (did you mean '{}'?)", near),
                        join(param_names(sweep_base_schema()))));
    }
    if (!values.is_sequence())
        cfg::fail(values.is_scalar() ? values.loc() : values.key_loc(), values.path(),
                  fmt::format("expected a list of values (e.g. [a, b]), found {}", values.kind_name()));
    if (values.items().empty()) cfg::fail(values.key_loc(), values.path(), "needs at least one value");
    // Repeats are found by content (content_key), in time linear in the number of values.
    std::unordered_map<std::string, std::size_t> seen;
    for (std::size_t i = 0; i < values.items().size(); ++i) {
        const cfg::Node& v = values.items()[i];
        if (!f.override && !v.is_scalar())
            cfg::fail(v.is_null() ? v.loc() : v.key_loc(), v.path(),
                      fmt::format("expected a single value, found {}", v.kind_name()));
        if (v.is_null()) cfg::fail(v.loc(), v.path(), "a value is empty");
        if (auto [it, fresh] = seen.emplace(content_key(v), i); !fresh && !zipped)
            cfg::fail(
                v.loc(), v.path(),
                fmt::format("the value is listed twice (also at line {}, column {})",
                            values.items()[it->second].loc().line, values.items()[it->second].loc().col));
        f.values.push_back(v);
    }
    return f;
}

std::string value_text(const cfg::Node& v) {
    if (v.is_scalar()) return v.scalar();
    std::string text = cfg::to_yaml(v);
    while (!text.empty() && (text.back() == '\n' || text.back() == ' ')) text.pop_back();
    return text;
}

std::optional<double> value_number(const cfg::Node& v, std::optional<cfg::Dim> dim) {
    if (!v.is_scalar()) return std::nullopt;
    if (auto q = cfg::parse_quantity_any(v.scalar())) {
        if (!dim || q->dim == *dim) return q->value;
    }
    // Not as_double(): most texts that are not quantities are not numbers either (os, ws, is), and its
    // error, thrown and caught here, cost about a million instructions a point (make_point runs twice).
    return v.try_double();
}

// `resolve(...)` of a `system:` or `model:` value, kept in `known` (a map of sweep.refs) once it resolved.
template <class Resolve>
std::string resolve_once(const Sweep& sweep, std::map<std::string, std::string, std::less<>>& known,
                         const cfg::Node& v, Resolve&& resolve) {
    const std::string text = v.as_string();
    {
        std::lock_guard lock(sweep.refs->mutex);
        if (auto it = known.find(text); it != known.end()) return it->second;
    }
    std::string resolved = resolve(sweep.file, "sweep", v);
    std::lock_guard lock(sweep.refs->mutex);
    known.emplace(text, resolved);
    return resolved;
}

std::string resolve_system(const Sweep& sweep, const cfg::Node& v) {
    return resolve_once(sweep, sweep.refs->systems, v, resolve_system_ref);
}

std::string resolve_model(const Sweep& sweep, const cfg::Node& v) {
    return resolve_once(sweep, sweep.refs->models, v, resolve_model_ref);
}

// Each embedding-sharding value of the base or a factor (a scalar: the base schema refuses others where a
// point is made) is a sharding kind or a file (wl::embedding_sharding_spec_error), located at the value.
void check_embedding_sharding(const std::vector<cfg::Node>& values) {
    for (const cfg::Node& v : values)
        if (v.is_scalar() && !v.scalar().empty())
            if (const std::string why = wl::embedding_sharding_spec_error(v.scalar()); !why.empty())
                cfg::fail(v.loc(), v.path(), why);
}

}  // namespace

Sweep load_sweep(const std::string& path) {
    const cfg::Node doc = cfg::load_file(path);
    // The schema checks the keys, `name`, `description` and `base`; the factor maps hold free key paths
    // with lists of values, which no schema type describes, so they are checked below.
    cfg::Node head = doc;
    if (head.is_map()) {
        head.erase("factors");
        head.erase("zip");
    }
    const cfg::Node checked = cfg::validate(head, sweep_schema());
    const cfg::Reader r(checked, sweep_schema());

    Sweep sweep;
    sweep.file = path;
    sweep.name = r.has("name") ? r.str("name") : fs::path(path).stem().string();
    if (sweep.name.empty()) cfg::fail(r.at("name").loc(), "name", "must not be empty");
    // The name is also the default database's file name (results/<name>.db): one plain file name, so that
    // the file lands in results/ and is the one the message names.
    if (r.has("name") && (sweep.name == "." || sweep.name == ".." ||
                          std::any_of(sweep.name.begin(), sweep.name.end(), [](char ch) {
                              return ch == '/' || ch == '\\' || static_cast<unsigned char>(ch) < 0x20 ||
                                     ch == 0x7f;
                          })))
        cfg::fail(r.at("name").loc(), "name",
                  "must be a plain file name (no '/', '\\', control characters, '.' or '..'): it names the "
                  "default database results/<name>.db");
    sweep.description = r.str("description");
    sweep.base = r.at("base");
    if (const cfg::Node* es = sweep.base.find("embedding-sharding")) check_embedding_sharding({*es});

    struct Seen {
        cfg::SourceLoc loc;
        bool override = false;  // a key path into the system document
    };
    std::map<std::string, Seen> seen;
    auto add_factor = [&](SweepFactor f, std::vector<SweepFactor>& into) {
        if (auto it = seen.find(f.path); it != seen.end())
            cfg::fail(f.loc, f.path,
                      fmt::format("factor '{}' is given twice (first at line {}, column {})", f.path,
                                  it->second.loc.line, it->second.loc.col));
        // One factor inside another's value (device.memory and device.memory[2].bandwidth): each point would
        // set the whole and then a part of it, whichever the order (the error showed at the part's line).
        // Only overrides nest: the factor `system` picks a file, `system.<key>` overrides a key inside it.
        const auto inside = [](const std::string& outer, const std::string& inner) {
            return inner.size() > outer.size() && inner.starts_with(outer) &&
                   (inner[outer.size()] == '.' || inner[outer.size()] == '[');
        };
        if (f.override)
            for (const auto& [other, o] : seen)
                if (o.override && (inside(other, f.path) || inside(f.path, other)))
                    cfg::fail(
                        f.loc, f.path,
                        fmt::format("factor '{}' {} factor '{}' (line {}, column {}): a point would set "
                                    "both; sweep the one or the other",
                                    f.path, inside(other, f.path) ? "is part of" : "contains", other,
                                    o.loc.line, o.loc.col));
        // A word that is no sharding kind and no file: the value's error as the file is read (as run and
        // compare refuse it), not a failed run at every point.
        if (!f.override && f.path == "embedding-sharding") check_embedding_sharding(f.values);
        seen.emplace(f.path, Seen{f.loc, f.override});
        into.push_back(std::move(f));
    };
    for (const auto& [key, value] : doc.entries()) {
        if (key == "factors") {
            if (value.is_null()) continue;
            if (!value.is_map())
                cfg::fail(
                    value.is_scalar() ? value.loc() : value.key_loc(), "factors",
                    fmt::format("expected a map of key path -> list of values, found {}", value.kind_name()));
            for (const auto& [factor_path, values] : value.entries()) {
                SweepAxis axis;
                add_factor(make_factor(factor_path, values), axis.factors);
                sweep.axes.push_back(std::move(axis));
            }
        } else if (key == "zip") {
            if (value.is_null()) continue;
            if (!value.is_sequence())
                cfg::fail(
                    value.is_scalar() ? value.loc() : value.key_loc(), "zip",
                    fmt::format("expected a list of groups (maps of key path -> list of values), found {}",
                                value.kind_name()));
            for (const cfg::Node& group : value.items()) {
                if (!group.is_map() || group.entries().empty())
                    cfg::fail(group.is_scalar() ? group.loc() : group.key_loc(), group.path(),
                              fmt::format("expected a map of key path -> list of values, found {}",
                                          group.is_map() ? "an empty map" : group.kind_name()));
                SweepAxis axis;
                axis.zipped = true;
                for (const auto& [factor_path, values] : group.entries())
                    add_factor(make_factor(factor_path, values, true), axis.factors);
                const SweepFactor& first = axis.factors.front();
                for (const SweepFactor& f : axis.factors) {
                    if (f.values.size() != first.values.size())
                        cfg::fail(
                            f.loc, f.path,
                            fmt::format("zipped factors must have the same number of values: '{}' has {}, "
                                        "but '{}' (line {}) has {}",
                                        f.path, f.values.size(), first.path, first.loc.line,
                                        first.values.size()));
                }
                // A repeated combination would be one point listed twice (found by content, in linear time).
                std::unordered_map<std::string, std::size_t> combinations;
                for (std::size_t i = 0; i < axis.size(); ++i) {
                    std::string key;
                    for (const SweepFactor& f : axis.factors) {
                        const std::string part = content_key(f.values[i]);
                        key += std::to_string(part.size()) + ':' + part;
                    }
                    if (auto [it, fresh] = combinations.emplace(std::move(key), i); !fresh)
                        cfg::fail(
                            first.values[i].loc(), first.values[i].path(),
                            fmt::format("zipped values {} and {} of this group are the same combination",
                                        it->second, i));
                }
                sweep.axes.push_back(std::move(axis));
            }
        }
    }
    std::size_t n = 1;
    for (const SweepAxis& a : sweep.axes) {
        if (n > limits::hard_max_sweep_points / a.size())
            cfg::fail(a.factors.front().loc, a.factors.front().path,
                      fmt::format("the sweep has more than {} points (the most one sweep may have) with this "
                                  "factor; split it into several files",
                                  limits::hard_max_sweep_points));
        n *= a.size();
    }
    return sweep;
}

namespace {

// A located error naming the point it belongs to, when there are points to tell apart.
cfg::UserError in_point(const cfg::UserError& e, const SweepPointConfig& pc, const Sweep& sweep) {
    if (sweep.axes.empty()) return e;
    return cfg::UserError(fmt::format("{}\n  (in sweep point {} of {}: {})", e.what(), pc.index,
                                      sweep.point_count(), pc.description));
}

[[noreturn]] void rethrow_in_point(const cfg::UserError& e, const SweepPointConfig& pc, const Sweep& sweep) {
    throw in_point(e, pc, sweep);
}

}  // namespace

std::string locate_in_sweep(const Sweep& sweep, const std::string& message) {
    // "<command line>: error: KEY: ..." from the run's option checks (the zoo's, the plan's).
    constexpr std::string_view from = "<command line>: error: ";
    if (message.compare(0, from.size(), from) != 0) return message;
    const std::size_t end = message.find(':', from.size());
    if (end == std::string::npos) return message;
    std::string key = message.substr(from.size(), end - from.size());
    std::string rest = message.substr(from.size());
    // A flag's name ("--zero", "--tensor-parallel") is the sweep key of the same name.
    if (key.rfind("--", 0) == 0) {
        key.erase(0, 2);
        rest.erase(0, 2);
    }
    for (const SweepAxis& axis : sweep.axes)
        for (const SweepFactor& f : axis.factors)
            if (!f.override && f.path == key) return fmt::format("{}: error: factor {}", f.loc.str(), rest);
    // The plan as a whole ("--parallel: ... ranks, but the system has ..."): at the first of its degrees the
    // sweep varies.
    if (key == "parallel")
        for (const char* degree :
             {"data-parallel", "tensor-parallel", "pipeline-parallel", "expert-parallel"})
            for (const SweepAxis& axis : sweep.axes)
                for (const SweepFactor& f : axis.factors)
                    if (!f.override && f.path == degree)
                        return fmt::format("{}: error: factor {} ({})", f.loc.str(), degree, rest);
    if (const cfg::Node* b = sweep.base.find(key))
        return fmt::format("{}: error: base.{}", b->key_loc().str(), rest);
    return message;
}

SweepPointConfig make_point(const Sweep& sweep, std::size_t index) {
    MLSIM_CHECK(index < sweep.point_count(), fmt::format("sweep point {} of {}", index, sweep.point_count()));
    SweepPointConfig pc;
    pc.index = index;
    pc.db_point.sweep_name = sweep.name;
    pc.db_point.point = static_cast<int64_t>(index);

    // Mixed-radix digits, the last axis fastest.
    std::vector<std::size_t> digit(sweep.axes.size());
    std::size_t rest = index;
    for (std::size_t a = sweep.axes.size(); a-- > 0;) {
        digit[a] = rest % sweep.axes[a].size();
        rest /= sweep.axes[a].size();
    }

    cfg::Node base = sweep.base;
    std::vector<std::string> parts;
    std::vector<ConfigOverride> factor_overrides;
    for (std::size_t a = 0; a < sweep.axes.size(); ++a) {
        for (const SweepFactor& f : sweep.axes[a].factors) {
            const cfg::Node& v = f.values[digit[a]];
            const std::string text = value_text(v);
            pc.db_point.factors.push_back(db::SweepFactorValue{f.path, text, value_number(v, f.dim)});
            parts.push_back(fmt::format("{}={}", f.path, text));
            if (f.override) {
                cfg::Node value = v;
                value.set_key_loc(f.loc);
                factor_overrides.push_back(ConfigOverride{f.path, std::move(value)});
            } else {
                base.set(f.path, v);  // keeps its sweep-file location and path for messages
            }
        }
    }
    pc.description = parts.empty() ? "the base experiment" : join(parts);

    try {
        const cfg::Node validated = cfg::validate(base, sweep_base_schema());
        const cfg::Reader r(validated, sweep_base_schema());
        ExperimentOptions& o = pc.options;
        // Options first, key-path factors after: a factor overrides what an option set.
        apply_run_options(validated, o);
        o.system = resolve_system(sweep, r.at("system"));
        o.model = resolve_model(sweep, r.at("model"));
        for (ConfigOverride& f : factor_overrides) o.device_overrides.push_back(std::move(f));
    } catch (const cfg::UserError& e) {
        rethrow_in_point(e, pc, sweep);
    }
    return pc;
}

void check_point_count(const Sweep& sweep, std::size_t max_points) {
    const std::size_t n = sweep.point_count();
    if (n <= max_points) return;
    // At the first factor: the factors are what make the count.
    const SweepFactor& first = sweep.axes.front().factors.front();
    cfg::fail(first.loc, first.path,
              fmt::format("the sweep has {} points, more than the limit of {} (mlsim sweep --max-points; "
                          "checking them alone may take {:.0f} s); raise --max-points to run it, or "
                          "split the sweep",
                          n, max_points, static_cast<double>(n) * 4e-4));
}

std::vector<std::string> point_values(const Sweep& sweep, std::size_t index) {
    MLSIM_CHECK(index < sweep.point_count(), fmt::format("sweep point {} of {}", index, sweep.point_count()));
    std::vector<std::size_t> digit(sweep.axes.size());
    std::size_t rest = index;
    for (std::size_t a = sweep.axes.size(); a-- > 0;) {
        digit[a] = rest % sweep.axes[a].size();
        rest /= sweep.axes[a].size();
    }
    std::vector<std::string> out;
    for (std::size_t a = 0; a < sweep.axes.size(); ++a)
        for (const SweepFactor& f : sweep.axes[a].factors) out.push_back(value_text(f.values[digit[a]]));
    return out;
}

SystemCache check_points(const Sweep& sweep, std::size_t max_points,
                         const std::function<void(std::size_t done, std::size_t total)>& progress,
                         OverrideCache* overridden) {
    check_point_count(sweep, max_points);
    SystemCache systems;
    // Points that differ only in factors other than the overrides (batch, dtype) check them once.
    OverrideCache own;
    OverrideCache& applied = overridden ? *overridden : own;
    const std::size_t n = sweep.point_count();
    // The model options of each distinct combination (`seq` on a model that takes none, a model file that
    // does not load), each built once: when no combination builds, that is an error of the sweep file, found
    // here rather than as a failed run of every point. Where some do (a seq some models of a factor take and
    // others not), the others' points fail as recorded runs, as a design-space sweep's points may.
    std::set<std::string> models_checked;
    std::optional<cfg::UserError> model_error;
    bool model_built = false;
    for (std::size_t i = 0; i < n; ++i) {
        if (progress) progress(i, n);
        const SweepPointConfig pc = make_point(sweep, i);
        const ExperimentOptions& o = pc.options;
        if (models_checked
                .insert(fmt::format("{}\n{}\n{}\n{}\n{}", o.model, o.batch, o.seq, o.image, o.dtype))
                .second) {
            if (!model_built) {
                try {
                    check_model_options(o);
                    model_built = true;
                } catch (const cfg::UserError& e) {
                    if (!model_error)
                        model_error = in_point(cfg::UserError(locate_in_sweep(sweep, e.what())), pc, sweep);
                }
            }
        }
        auto it = systems.find(pc.options.system);
        if (it == systems.end()) {
            auto spec = std::make_shared<const arch::SystemSpec>(load_system_file(pc.options.system));
            it = systems.emplace(pc.options.system, std::move(spec)).first;
        }
        if (pc.options.device_overrides.empty()) continue;  // the loaded system is valid as it is
        try {
            (void)applied.get(it->second, pc.options.device_overrides);
        } catch (const cfg::UserError& e) {
            rethrow_in_point(e, pc, sweep);
        }
    }
    if (!model_built && model_error) throw *model_error;
    return systems;
}

std::string point_description_yaml(const SweepPointConfig& pc) {
    const cfg::SourceLoc here{"<sweep>", 0, 0};
    auto scalar = [&](const std::string& v, const std::string& path) {
        return cfg::Node::make_scalar(v, here, path);
    };
    const ExperimentOptions& o = pc.options;
    cfg::Node p = cfg::Node::make_map(here, "sweep_point");
    p.set("system", scalar(o.system, "sweep_point.system"));
    p.set("model", scalar(o.model, "sweep_point.model"));
    set_workload_options(p, o);
    if (!o.device_overrides.empty()) {
        cfg::Node overrides = cfg::Node::make_map(here, "sweep_point.overrides");
        for (const ConfigOverride& ov : o.device_overrides) overrides.set(ov.key_path, ov.value);
        p.set("overrides", std::move(overrides));
    }
    cfg::Node root = cfg::Node::make_map(here, "");
    root.set("sweep_point", std::move(p));
    return cfg::to_yaml(root);
}

db::RunInfo failed_run_info(const SweepPointConfig& pc, const SystemCache& systems) {
    db::RunInfo info;
    info.config_yaml = point_description_yaml(pc);
    info.config_hash = db::config_hash(info.config_yaml);
    const ExperimentOptions& o = pc.options;
    if (auto it = systems.find(o.system); it != systems.end()) {
        info.system = it->second->name;
        info.device = it->second->device.name;
    } else {
        info.system = o.system;
    }
    info.model = o.model;
    info.mode = o.mode;
    info.dtype = o.dtype;
    info.batch = o.batch;
    info.seq = o.seq;
    return info;
}

namespace {

using Clock = std::chrono::steady_clock;

}  // namespace

void check_sweep_history(const Sweep& sweep, db::ResultsDb& db) {
    // The base every point shares (system, model, options as written), recorded with the sweep's first run
    // of this file: points with the same factors under another base are other configurations.
    const std::string base_key = "sweep_base " + sweep.name;
    const std::string base = cfg::to_yaml(sweep.base);
    if (const std::optional<std::string> stored = db.meta_value(base_key); stored && *stored != base)
        cfg::fail(
            sweep.base.key_loc(), "base",
            fmt::format("the database {} holds sweep '{}' from another file, whose base was:\n{}give this "
                        "sweep another `name:` or use another database (--db)",
                        db.path(), sweep.name, *stored));
    const std::size_t n = sweep.point_count();
    std::size_t last = n;  // the point index whose factors `now` holds
    std::string now;
    for (const auto& [point, stored] : db.sweep_points(sweep.name)) {
        // Points past this file's end (a list cut short at its end) keep their numbers: nothing collides.
        const auto index = static_cast<std::size_t>(point);
        if (point < 0 || index >= n) continue;
        if (index != last) {
            now = db::factors_json(make_point(sweep, index).db_point);
            last = index;
        }
        if (now == stored) continue;
        cfg::fail(
            cfg::SourceLoc{sweep.file, 0, 0}, "name",
            fmt::format("the database {} holds sweep '{}' from another file: its point {} is {}, but this "
                        "file's point {} is {}; give this sweep another `name:` or use another database "
                        "(--db)",
                        db.path(), sweep.name, point, stored, point, now));
    }
    db.set_meta_value(base_key, base);
}

DistributedSweep*& distributed_sweep() {
    static DistributedSweep* backend = nullptr;
    return backend;
}

SweepSummary run_sweep(const Sweep& sweep, const SystemCache& systems, db::ResultsDb& db,
                       const SweepRunOptions& options) {
    MLSIM_CHECK(options.jobs >= 1, fmt::format("run_sweep: jobs = {}", options.jobs));
    // The calling thread writes (and simulates when it has nothing to commit), jobs - 1 threads simulate
    // (experiment/sweep_writer.h); the points' zoo models are built once each, shared by the points that
    // differ only in the device.
    return write_sweep(sweep, systems, db, options, read_known_runs(db, options.retry_failed),
                       std::make_shared<ModelCache>(), k_max_held, nullptr);
}

std::string relative_to_file(const std::string& referrer, const std::string& value) {
    fs::path p(value);
    if (p.is_relative()) {
        const fs::path dir = fs::path(referrer).parent_path();
        p = (dir.empty() ? fs::path(".") : dir) / p;
    }
    return fs::absolute(p).lexically_normal().string();
}

bool names_a_file(std::string_view s) {
    return s.find('/') != std::string_view::npos || ends_with(s, ".yaml") || ends_with(s, ".yml") ||
           ends_with(s, ".csv") || arch::find_system_format(s) != nullptr;
}

std::string resolve_system_ref(const std::string& referrer, std::string_view kind, const cfg::Node& v) {
    const std::string s = v.as_string();
    if (s.empty()) cfg::fail(v.loc(), v.path(), "a system is empty");
    if (names_a_file(s)) {
        const std::string file = relative_to_file(referrer, s);
        std::error_code ec;
        if (!fs::is_regular_file(file, ec))
            cfg::fail(
                v.loc(), v.path(),
                fmt::format("no system or device file '{}' (paths are relative to the {} file)", file, kind));
        return file;
    }
    if (std::optional<std::string> preset = find_system_preset(s)) return *preset;
    std::vector<std::string> names = arch::list_device_presets(configs_dir());
    for (const std::string& n : arch::list_system_presets(configs_dir())) names.push_back(n);
    const std::string near = cfg::nearest(s, names);
    cfg::fail(
        v.loc(), v.path(),
        fmt::format("no preset '{}'{}; see mlsim list devices / systems (a file path needs a '/' or .yaml)",
                    s, near.empty() ? "" : fmt::format(" (did you mean '{}'?)", near)));
}

std::string resolve_model_ref(const std::string& referrer, std::string_view kind, const cfg::Node& v) {
    const std::string s = v.as_string();
    if (names_a_file(s)) {
        const std::string file = relative_to_file(referrer, s);
        std::error_code ec;
        if (!fs::is_regular_file(file, ec))
            cfg::fail(v.loc(), v.path(),
                      fmt::format("no model file '{}' (paths are relative to the {} file)", file, kind));
        return file;
    }
    std::vector<std::string> names;
    for (const wl::ZooEntry& e : wl::zoo_list()) names.push_back(e.name);
    if (std::find(names.begin(), names.end(), s) == names.end()) {
        const std::string near = cfg::nearest(s, names);
        cfg::fail(v.loc(), v.path(),
                  fmt::format("unknown model '{}'{}; see mlsim list models, or give a .yaml / .csv file", s,
                              near.empty() ? "" : fmt::format(" (did you mean '{}'?)", near)));
    }
    return s;
}

}  // namespace mlsim::exp
