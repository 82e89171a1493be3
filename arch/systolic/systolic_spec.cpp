#include "arch/systolic/systolic_spec.h"

#include "sim/core/check.h"

namespace mlsim::arch::systolic {

std::string_view to_string(Fidelity f) { return f == Fidelity::tile ? "tile" : "cycle"; }
std::string_view to_string(Convention c) { return c == Convention::faithful ? "faithful" : "scalesim"; }
std::string_view to_string(Tiling t) { return t == Tiling::search ? "search" : "fixed"; }

std::optional<Fidelity> parse_fidelity(std::string_view name) {
    if (name == "tile") return Fidelity::tile;
    if (name == "cycle") return Fidelity::cycle;
    return std::nullopt;
}

std::optional<Convention> parse_convention(std::string_view name) {
    if (name == "faithful") return Convention::faithful;
    if (name == "scalesim") return Convention::scalesim;
    return std::nullopt;
}

int64_t SystolicSpec::passes_for(std::string_view dtype) const {
    auto it = passes.find(std::string(dtype));
    return it == passes.end() ? 1 : it->second;
}

}  // namespace mlsim::arch::systolic
