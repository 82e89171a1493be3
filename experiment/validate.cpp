#include "experiment/validate.h"

#include <fmt/format.h>
#include <fmt/ranges.h>

#include <filesystem>
#include <optional>

#include "arch/device_spec.h"
#include "arch/family.h"
#include "arch/gpu/gpu_model.h"
#include "arch/gpu/gpu_spec.h"
#include "arch/system/system_spec.h"
#include "experiment/compare.h"
#include "experiment/experiment.h"
#include "experiment/sweep.h"
#include "sim/config/loader.h"
#include "workloads/model.h"

namespace mlsim::exp {

namespace fs = std::filesystem;

namespace {

bool ends_with(std::string_view s, std::string_view suffix) {
    return s.size() >= suffix.size() && s.substr(s.size() - suffix.size()) == suffix;
}

// "system 'dgx': 8 x h100; 6 switches, 56 links" (the network part only when there is one).
// A GPU's fixed GEMM tile (gpu.tile) is checked against its SMs only when a GEMM is planned: here, a
// 4096^3 GEMM in each data type the device has a peak for. A tile that fits none is the file's error (run
// would refuse every GEMM); one that misses some types is noted.
std::string gpu_tile_note(const arch::SystemSpec& s) {
    std::string note;
    for (const arch::DeviceSpec& d : s.device_types) {
        const arch::gpu::GpuSpec* g = arch::gpu::spec_of(d);
        if (g == nullptr || !g->tile.given()) continue;
        const arch::gpu::GpuModel model(d);
        std::vector<std::string> misfits;
        std::optional<cfg::UserError> first;
        for (const auto& [dtype, peak] : d.peak_ops_per_s) {
            try {
                (void)model.plan_gemm(wl::GemmShape{1, 4096, 4096, 4096}, dtype);
            } catch (const cfg::UserError& e) {
                misfits.push_back(dtype);
                if (!first) first = e;
            }
        }
        if (first && misfits.size() == d.peak_ops_per_s.size()) throw *first;
        if (first)
            note += fmt::format("; {}'s fixed gpu.tile fits no SM in {}", d.name, fmt::join(misfits, ", "));
    }
    return note;
}

std::string system_summary(const arch::SystemSpec& s) {
    const std::size_t switches = s.topology->switches().size(), links = s.topology->link_count();
    const std::string tile = gpu_tile_note(s);
    return fmt::format("system '{}': {}{}{}", s.name, s.device_summary(), tile,
                       s.has_network() || switches
                           ? fmt::format("; {} switch{}, {} link{}", switches, switches == 1 ? "" : "es",
                                         links, links == 1 ? "" : "s")
                           : "");
}

}  // namespace

std::string check_input(const std::string& arg) {
    // A preset name, as --system and a sweep's `system` take it; anything else is a file.
    std::error_code ec;
    const bool file_like = fs::exists(arg, ec) || arg.find('/') != std::string::npos ||
                           ends_with(arg, ".yaml") || ends_with(arg, ".yml") ||
                           arch::find_system_format(arg) != nullptr || ends_with(arg, ".csv");
    if (!file_like) {
        const std::string path = resolve_system_path(arg, cfg::SourceLoc{arg, 0, 0}, "");
        return fmt::format("preset {}: {}", path, system_summary(load_system_file(path)));
    }
    const std::string& f = arg;
    if (f.size() > 4 && ends_with(f, ".csv")) {
        const wl::Model m = wl::load_scalesim_csv(f, wl::ZooOptions{});
        return fmt::format("SCALE-Sim topology, {} layers", m.ops().size());
    }
    if (const arch::SystemFormat* format = arch::find_system_format(f)) {
        const arch::SystemSpec s = format->load(f);
        return fmt::format("{}: {}", format->description, s.device.description);
    }
    const cfg::Node doc = cfg::load_file(f);
    if (doc.is_map() && (doc.find("factors") || doc.find("base") || doc.find("zip"))) {
        const Sweep sweep = load_sweep(f);
        check_points(sweep);
        return fmt::format("sweep '{}', {} points", sweep.name, sweep.point_count());
    }
    if (doc.is_map() && doc.find("workloads")) {
        const CompareStudy study = load_compare(f);
        return fmt::format("compare study '{}', {} workloads x {} systems, {} pairs", study.name,
                           study.workloads.size(), study.systems.size(), study.pairs().size());
    }
    if (doc.is_map() && (doc.find("ops") || doc.find("model"))) {
        const wl::Model m = wl::load_model_yaml(f, wl::ZooOptions{});
        return fmt::format("model '{}', {} ops", m.name(), m.ops().size());
    }
    return system_summary(load_system_file(f));
}

}  // namespace mlsim::exp
