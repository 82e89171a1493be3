#include "arch/section_params.h"

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
    cfg::Param p = cfg::optional(std::move(name), cfg::PType::choice, std::move(default_value), std::move(doc));
    p.choices = std::move(choices);
    return p;
}

}  // namespace mlsim::arch
