#include "arch/device_model.h"

#include <fmt/format.h>

#include <algorithm>
#include <cmath>

#include "arch/family.h"
#include "sim/core/check.h"

namespace mlsim::arch {

std::string bound_of(const TimeParts& p) {
    const std::pair<double, const char*> parts[] = {{p.compute_s, "compute"},
                                                    {p.memory_s, "memory"},
                                                    {p.overhead_s, "overhead"},
                                                    {p.communication_s, "communication"}};
    const auto* best = &parts[0];
    for (const auto& part : parts)
        if (part.first > best->first) best = &part;
    // A layer that takes no time at all (a view) waits on nothing: it is memory-bound by convention,
    // like a zero-work op on the roofline.
    if (best->first <= 0) return "memory";
    return best->second;
}

void LayerResult::set_parts(const TimeParts& p) {
    MLSIM_CHECK(p.compute_s >= 0 && p.memory_s >= 0 && p.overhead_s >= 0 && p.communication_s >= 0,
                "negative part of a layer's time");
    parts = p;
    bound = bound_of(p);
}

void LayerResult::add_metric(std::string metric_name, double value, std::string unit) {
    Metric m;
    m.name = std::move(metric_name);
    m.value = value;
    m.unit = std::move(unit);
    metrics.push_back(std::move(m));
}

void LayerResult::add_text(std::string metric_name, std::string text) {
    Metric m;
    m.name = std::move(metric_name);
    m.text = std::move(text);
    metrics.push_back(std::move(m));
}

void LayerResult::add_stats(const std::vector<StatRow>& stats) {
    metrics.reserve(metrics.size() + stats.size());
    for (const StatRow& row : stats) {
        std::string metric_name = row.name;
        std::replace(metric_name.begin(), metric_name.end(), '.', '_');
        if (row.unit == "ps")
            add_metric(metric_name + "_s", static_cast<double>(row.value) * 1e-12, "s");
        else
            add_metric(metric_name, static_cast<double>(row.value), row.unit == "bytes" ? "B" : row.unit);
    }
}

const Metric* LayerResult::metric(std::string_view metric_name) const {
    for (const Metric& m : metrics)
        if (m.name == metric_name) return &m;
    return nullptr;
}

double LayerResult::metric_value(std::string_view metric_name, double fallback) const {
    const Metric* m = metric(metric_name);
    return m && m->value ? *m->value : fallback;
}

const LevelTraffic* LayerResult::level(std::string_view level_name) const {
    for (const LevelTraffic& l : levels)
        if (l.level == level_name) return &l;
    return nullptr;
}

void DeviceModel::check_work(const wl::Model& /*model*/, const WorkLimits& /*limits*/) const {}

void check_simulated_time(const wl::Op& op, double end_s, const DeviceSpec& spec) {
    if (std::isfinite(end_s) && end_s <= limits::max_simulated_s) return;
    cfg::fail(
        op.loc, op.key_path,
        fmt::format("op '{}' ({}) would end {} after the run starts on device '{}', past {:.3g} s "
                    "(about 106 days, 2^63 ps), the longest time mlsim simulates; a device this slow "
                    "for this workload needs a smaller workload or faster figures",
                    op.name, op.kind,
                    std::isfinite(end_s) ? fmt::format("{:.4g} s", end_s) : std::string("infinitely long"),
                    spec.name, limits::max_simulated_s));
}

std::unique_ptr<DeviceModel> make_device_model(const DeviceSpec& spec) {
    const Family* f = find_family(spec.model.empty() ? std::string_view("roofline") : spec.model);
    MLSIM_CHECK(f != nullptr && f->has_model(), "device '" + spec.name + "' names no model family");
    return f->factory(spec);
}

}  // namespace mlsim::arch
