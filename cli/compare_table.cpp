#include "cli/compare_table.h"

#include <fmt/format.h>

#include "cli/table_format.h"

namespace mlsim::cli {

std::string compare_table(const std::vector<exp::CompareRow>& rows) {
    std::vector<std::vector<std::string>> t = {{"workload", "system", "devices", "dtype", "batch", "latency",
                                                "samples/s", "energy/sample", "power", "of TDP", "samples/J",
                                                "$/M samples", "time to train"}};
    const std::vector<bool> right = {false, false, false, false, true, true, true,
                                     true,  true,  true,  true,  true, true};
    std::string last;
    for (const exp::CompareRow& r : rows) {
        if (!last.empty() && r.workload != last) t.push_back({""});
        last = r.workload;
        const std::string devices = r.devices > 1 ? fmt::format("{} x {}", r.devices, r.device) : r.device;
        if (r.status != "ok") {
            t.push_back({r.workload, r.system, devices, r.dtype, std::to_string(r.batch),
                         r.status == "not_modelled" ? "not modelled" : "does not run"});
            t.push_back({"    -> " + r.error});
            continue;
        }
        const std::string tdp = r.system_tdp_w > 0
                                    ? fmt::format("{:.0f}%", 100 * r.average_power_w / r.system_tdp_w)
                                    : std::string("-");
        const std::string batch =
            r.replicas > 1 ? fmt::format("{} x {}", r.replicas, r.batch) : std::to_string(r.batch);
        t.push_back({r.workload, r.system, devices, r.dtype, batch, human(r.latency_s, "s"),
                     human(r.samples_per_s, "", false), human(r.energy_per_sample_j, "J"),
                     human(r.average_power_w, "W"), tdp, human(r.samples_per_s_per_w, "", false),
                     r.usd_per_million_samples ? dollars(*r.usd_per_million_samples) : "-",
                     r.time_to_train_s ? duration(*r.time_to_train_s) : "-"});
    }
    return format_table(t, right);
}

std::string compare_legend() {
    return "latency: one batch (training: one step); samples/s, energy/sample and power: the whole system "
           "(energy/sample x samples/s = power)\n"
           "of TDP: average power / the summed TDP of the devices that run; samples/J: samples/s per watt; "
           "$/M samples: from system.price (configs/README.md)\n"
           "a system of N devices runs a workload without a parallel plan as N independent replicas (a mixed "
           "system: its default type's devices)\n";
}

}  // namespace mlsim::cli
