#include "arch/section_params.h"

#include <fmt/format.h>

#include <utility>

namespace mlsim::arch {

cfg::Param optional_no_default(std::string name, cfg::PType type, std::string doc) {
    cfg::Param p;
    p.name = std::move(name);
    p.type = type;
    p.doc = std::move(doc);
    return p;
}

cfg::Param count_param(std::string name, std::string doc) {
    cfg::Param p = optional_no_default(std::move(name), cfg::PType::integer, std::move(doc));
    p.min = 1;
    return p;
}

cfg::Param size_param(std::string name, std::string doc) {
    cfg::Param p = optional_no_default(std::move(name), cfg::PType::quantity, std::move(doc));
    p.dim = cfg::Dim::size;
    p.positive = true;
    return p;
}

cfg::Param map_param(std::string name, const cfg::Schema& sub, std::string doc) {
    cfg::Param p = optional_no_default(std::move(name), cfg::PType::map, std::move(doc));
    p.sub = &sub;
    return p;
}

cfg::Param choice_param(std::string name, std::string default_value, std::vector<std::string> choices,
                        std::string doc) {
    cfg::Param p =
        cfg::optional(std::move(name), cfg::PType::choice, std::move(default_value), std::move(doc));
    p.choices = std::move(choices);
    return p;
}

std::string bytes_si(double bytes) {
    static const std::pair<double, const char*> units[] = {
        {1e12, "TB"}, {1e9, "GB"}, {1e6, "MB"}, {1e3, "kB"}};
    for (const auto& [scale, unit] : units)
        if (bytes >= scale) return fmt::format("{:.3g} {}", bytes / scale, unit);
    return fmt::format("{:.3g} B", bytes);
}

}  // namespace mlsim::arch
