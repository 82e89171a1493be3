#include "experiment/collective_study.h"

#include <fmt/format.h>

#include <algorithm>
#include <chrono>
#include <cmath>

#include "experiment/experiment.h"
#include "sim/config/error.h"
#include "sim/config/loader.h"

namespace mlsim::exp {

using namespace arch::net;

int64_t element_bytes(const std::string& dtype) {
    if (dtype == "fp32" || dtype == "int32" || dtype == "tf32") return 4;  // tf32 is stored as fp32
    if (dtype == "fp16" || dtype == "bf16" || dtype == "int16") return 2;
    if (dtype == "fp8" || dtype == "int8") return 1;
    if (dtype == "fp64") return 8;
    throw cfg::UserError(
        fmt::format("<command line>: error: --dtype: unknown element type '{}' (expected fp32, tf32, fp16, "
                    "bf16, int16, fp8, int8, int32 or fp64)",
                    dtype));
}

double reduction_Bps(const arch::DeviceSpec& device, const std::string& dtype) {
    double rate = 0;
    if (!device.memory.empty() && device.main_memory().bandwidth_Bps > 0)
        rate = device.main_memory().bandwidth_Bps / 3;
    if (device.supports(dtype)) {
        const double compute = device.peak_for(dtype) * static_cast<double>(element_bytes(dtype));
        rate = rate > 0 ? std::min(rate, compute) : compute;
    }
    return rate;
}

NetworkOptions network_options_for(const arch::SystemSpec& system, const std::string& dtype) {
    NetworkOptions o;
    if (!system.topology) return o;
    o.reduce_Bps.assign(system.topology->vertex_count(), 0);
    for (std::size_t i = 0; i < system.devices.size(); ++i)
        o.reduce_Bps[i] = reduction_Bps(system.type_of(system.devices[i]), dtype);
    return o;
}

CollectiveStudyResult run_collective_study(const CollectiveStudyOptions& opt) {
    const auto t0 = std::chrono::steady_clock::now();
    const cfg::SourceLoc cli{"<command line>", 0, 0};
    CollectiveStudyResult out;
    out.system = load_system_file(resolve_system_path(opt.system));
    const arch::SystemSpec& sys = out.system;
    if (!sys.has_network() || sys.devices.size() < 2)
        cfg::fail(
            cli, "--system",
            fmt::format("system '{}' has no network ({} device{}, no links): a collective needs devices "
                        "joined by links (see configs/README.md, \"A system file\")",
                        sys.name, sys.devices.size(), sys.devices.size() == 1 ? "" : "s"));
    if (opt.min_bytes <= 0 || opt.max_bytes < opt.min_bytes)
        cfg::fail(cli, "--sizes",
                  fmt::format("expected 0 < min <= max, got {}:{}", opt.min_bytes, opt.max_bytes));
    if (!(opt.step > 1))
        cfg::fail(cli, "--step", fmt::format("the size factor must be above 1, got {}", opt.step));
    const int64_t esize = element_bytes(opt.dtype);
    if (opt.min_bytes < esize)
        cfg::fail(cli, "--sizes",
                  fmt::format("the smallest size, {} B, is less than one {} element ({} B)", opt.min_bytes,
                              opt.dtype, esize));
    // The rows, counted before any runs: at most k_max_rows, none repeating a size.
    constexpr int k_max_rows = 200;
    const double rows =
        std::floor(std::log(static_cast<double>(opt.max_bytes) / static_cast<double>(opt.min_bytes)) /
                       std::log(opt.step) +
                   1e-9) +
        1;
    if (rows > k_max_rows)
        cfg::fail(cli, "--step",
                  fmt::format("sizes from {} to {} B at a factor of {} make {:.0f} rows, more than {}: use a "
                              "larger factor or a narrower range",
                              opt.min_bytes, opt.max_bytes, opt.step, rows, k_max_rows));
    NetworkOptions nopt = network_options_for(sys, opt.dtype);
    nopt.fidelity = opt.fidelity;
    nopt.packet_bytes = opt.packet_bytes;
    FlowNetwork net(sys.topology, nopt);
    std::vector<VertexId> group;
    for (std::size_t i = 0; i < sys.devices.size(); ++i)
        if (sys.default_type_worker(i)) group.push_back(i);  // a host node's devices take no part
    const int64_t ranks = static_cast<int64_t>(group.size());
    out.ranks = ranks;
    Tick now = Tick::zero();
    double b = static_cast<double>(opt.min_bytes);
    for (; b <= static_cast<double>(opt.max_bytes) * (1 + 1e-12); b *= opt.step) {
        CollectivePoint p;
        p.bytes = static_cast<int64_t>(std::floor(b + 1e-9));
        if (!out.points.empty() && p.bytes == out.points.back().bytes) continue;  // a factor near 1
        p.count = p.bytes / esize;
        CollectiveRequest q;
        q.kind = opt.kind;
        q.algorithm = opt.algorithm;
        q.protocol = opt.protocol;
        q.group = group;
        q.bytes = p.bytes;
        q.start = now;
        p.result = net.collective(q);
        now = p.result.end;
        p.time_s = p.result.duration().to_seconds();
        p.algbw_GBps = p.time_s > 0 ? static_cast<double>(p.bytes) / p.time_s / 1e9 : 0;
        p.busbw_GBps = p.algbw_GBps * bus_bandwidth_factor(opt.kind, ranks);
        out.points.push_back(p);
    }
    const double span = now.to_seconds();
    const Topology& topo = *sys.topology;
    std::vector<std::pair<double, std::size_t>> busy;
    const auto& bs = net.busy_seconds();
    for (std::size_t d = 0; d < bs.size(); ++d)
        if (bs[d] > 0) busy.push_back({bs[d], d});
    std::stable_sort(busy.begin(), busy.end(), [](auto x, auto y) { return x.first > y.first; });
    if (busy.size() > opt.busiest_links) busy.resize(opt.busiest_links);
    for (const auto& [sec, d] : busy) {
        const Link& l = topo.link(d / 2);
        const VertexId from = d % 2 == 0 ? l.a : l.b;
        db::LinkUtilRow r;
        r.link = static_cast<int64_t>(l.id);
        r.direction = topo.vertex(from).name + "->" + topo.vertex(l.other(from)).name;
        r.kind = l.props.kind;
        r.busy_s = sec;
        r.bytes = sec * l.bandwidth_Bps;
        r.utilization = span > 0 ? std::min(1.0, sec / span) : 0;
        r.energy_j = net.link_energy_j()[d];
        out.busiest.push_back(r);
    }
    out.wall_s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    if (!opt.db_path.empty()) {
        db::RunInfo info;
        cfg::Node doc = sys.resolved;
        std::string config = cfg::to_yaml(doc);
        config += fmt::format(
            "# collective study\ncollective:\n  op: {}\n  algorithm: {}\n  protocol: {}\n  fidelity: {}\n  "
            "sizes: "
            "{}:{}\n  step: {}\n  dtype: {}\n",
            to_string(opt.kind), to_string(opt.algorithm), to_string(opt.protocol),
            opt.fidelity == Fidelity::flow ? "flow" : "packet", opt.min_bytes, opt.max_bytes, opt.step,
            opt.dtype);
        info.config_yaml = config;
        info.system = sys.name;
        info.device = sys.device.name;
        info.model = fmt::format("collective:{}", to_string(opt.kind));
        info.mode = "collective";
        info.dtype = opt.dtype;
        info.device_model = "network";
        std::vector<db::CollectiveRow> rows;
        for (std::size_t i = 0; i < out.points.size(); ++i) {
            const CollectivePoint& p = out.points[i];
            db::CollectiveRow r;
            r.idx = static_cast<int64_t>(i);
            r.kind = std::string(to_string(opt.kind));
            r.algorithm = std::string(to_string(p.result.algorithm));
            r.protocol = std::string(to_string(p.result.protocol));
            r.ranks = ranks;
            r.bytes = p.bytes;
            r.start_s = p.result.start.to_seconds();
            r.end_s = p.result.end.to_seconds();
            r.algbw_GBps = p.algbw_GBps;
            r.busbw_GBps = p.busbw_GBps;
            r.steps = p.result.steps;
            r.energy_j = p.result.energy_j;
            rows.push_back(r);
        }
        db::ResultsDb rdb(opt.db_path);
        out.run_id = rdb.record_collectives(info, rows, out.busiest, out.wall_s);
    }
    return out;
}

}  // namespace mlsim::exp
