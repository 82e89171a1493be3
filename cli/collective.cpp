// mlsim collective: an nccl-tests-style size sweep of one collective on a system's network.
#include <fmt/format.h>

#include <boost/program_options.hpp>
#include <cmath>
#include <iostream>

#include "cli/commands.h"
#include "cli/parse_args.h"
#include "experiment/collective_study.h"
#include "sim/config/error.h"
#include "sim/config/schema.h"
#include "sim/config/units.h"

namespace mlsim::cli {

namespace po = boost::program_options;
using namespace arch::net;

namespace {

const cfg::SourceLoc k_cli{"<command line>", 0, 0};

std::vector<std::string> names_of(const auto& all) {
    std::vector<std::string> out;
    for (auto v : all) out.emplace_back(to_string(v));
    return out;
}

[[noreturn]] void bad_choice(std::string_view key, const std::string& got,
                             const std::vector<std::string>& choices) {
    const std::string near = cfg::nearest(got, choices);
    cfg::fail(k_cli, key,
              fmt::format("unknown value '{}'{}; expected one of: {}", got,
                          near.empty() ? "" : fmt::format(" (did you mean '{}'?)", near),
                          fmt::join(choices, ", ")));
}

int64_t size_of(const std::string& text, std::string_view key) {
    const cfg::Quantity q = cfg::parse_quantity(text, cfg::Dim::size, k_cli, key);
    // A rank's buffer is in its device's memory (the largest hold a few hundred GB): up to 1 TB. Larger
    // ones only lengthened the study (1000 TB by the tree: 2 x 10^9 pipelined chunks, 76 s).
    if (!(q.value >= 1) || q.value > 1e12)
        cfg::fail(
            k_cli, key,
            fmt::format("a size from 1B to 1TB (a rank's buffer, in its device's memory), got '{}'", text));
    return static_cast<int64_t>(std::floor(q.value));
}

}  // namespace

int cmd_collective(const Args& args) {
    std::string system, op = "all_reduce", sizes = "8B:8GiB", algorithm = "auto", protocol = "auto",
                        fidelity = "flow", packet = "4KiB", dtype = "fp32", db_path;
    double step = 2;
    po::options_description desc("mlsim collective options");
    desc.add_options()("help,h", "show this help")("system,s", po::value(&system)->required(),
                                                   "system preset name or file (e.g. dgx-h100)")(
        "op", po::value(&op)->default_value(op),
        "collective: all-reduce, all-gather, reduce-scatter, broadcast, reduce, scatter, gather, all-to-all, "
        "send-recv")("sizes", po::value(&sizes)->default_value(sizes),
                     "MIN:MAX message sizes (nccl-tests' size: see README); GB = 1e9 B, GiB = 2^30 B")(
        "step,f", po::value(&step)->default_value(step), "size factor between rows (nccl-tests -f)")(
        "algorithm", po::value(&algorithm)->default_value(algorithm),
        "ring, tree, direct, halving-doubling, hierarchical, pairwise, bruck, nvls, nvls-tree, or auto "
        "(fastest)")("protocol", po::value(&protocol)->default_value(protocol),
                     "ll, ll128, simple, ideal, or auto (fastest)")(
        "fidelity", po::value(&fidelity)->default_value(fidelity),
        "flow (max-min fair flows) or packet (packets through per-port queues; small systems)")(
        "packet-size", po::value(&packet)->default_value(packet), "packet payload with --fidelity packet")(
        "dtype", po::value(&dtype)->default_value(dtype),
        "element type: fp32 (nccl-tests float), fp16, bf16, ...")(
        "db", po::value(&db_path), "append the study to this SQLite results database");
    auto vm = parse(args, desc);
    if (!vm) {
        std::cout << "usage: mlsim collective --system NAME [options]\n\n" << desc << "\n";
        return 0;
    }
    exp::CollectiveStudyOptions opt;
    opt.system = system;
    const auto kind = parse_collective_kind(op);
    if (!kind) bad_choice("--op", op, names_of(all_collective_kinds()));
    opt.kind = *kind;
    const auto alg = parse_collective_algorithm(algorithm);
    if (!alg) bad_choice("--algorithm", algorithm, names_of(all_collective_algorithms()));
    opt.algorithm = *alg;
    const auto proto = parse_protocol(protocol);
    if (!proto) bad_choice("--protocol", protocol, names_of(all_protocols()));
    opt.protocol = *proto;
    if (fidelity == "flow")
        opt.fidelity = Fidelity::flow;
    else if (fidelity == "packet")
        opt.fidelity = Fidelity::packet;
    else
        bad_choice("--fidelity", fidelity, {"flow", "packet"});
    opt.packet_bytes = static_cast<double>(size_of(packet, "--packet-size"));
    const auto colon = sizes.find(':');
    if (colon == std::string::npos)
        cfg::fail(k_cli, "--sizes", fmt::format("expected MIN:MAX such as 8B:8GB, got '{}'", sizes));
    opt.min_bytes = size_of(sizes.substr(0, colon), "--sizes");
    opt.max_bytes = size_of(sizes.substr(colon + 1), "--sizes");
    if (!std::isfinite(step) || step <= 1)
        cfg::fail(k_cli, "--step", fmt::format("a factor above 1, got {}", step));
    opt.step = step;
    opt.dtype = dtype;
    opt.db_path = db_path;
    exp::element_bytes(dtype);  // an unknown type fails before simulating

    const exp::CollectiveStudyResult r = exp::run_collective_study(opt);
    const int64_t ranks = r.points.empty() ? 0 : r.ranks;
    const bool rooted = opt.kind == CollectiveKind::broadcast || opt.kind == CollectiveKind::reduce ||
                        opt.kind == CollectiveKind::scatter || opt.kind == CollectiveKind::gather;
    const bool reducing = opt.kind == CollectiveKind::all_reduce || opt.kind == CollectiveKind::reduce ||
                          opt.kind == CollectiveKind::reduce_scatter;
    fmt::print("# mlsim collective: {} on {} ({}), {} ranks, fidelity {}\n", to_string(opt.kind),
               r.system.name, r.system.device_summary(), ranks, fidelity);
    fmt::print("# busbw = algbw x {:.4g} (nccl-tests' factor for {}); GB/s = 1e9 B/s\n#\n",
               bus_bandwidth_factor(opt.kind, ranks), to_string(opt.kind));
    fmt::print("#{:>12} {:>13} {:>8} {:>6} {:>6} {:>12} {:>8} {:>8}  {:<16} {}\n", "size", "count", "type",
               "redop", "root", "time", "algbw", "busbw", "algorithm", "protocol");
    fmt::print("#{:>12} {:>13} {:>8} {:>6} {:>6} {:>12} {:>8} {:>8}\n", "(B)", "(elements)", "", "", "",
               "(us)", "(GB/s)", "(GB/s)");
    for (const exp::CollectivePoint& p : r.points)
        fmt::print(" {:>12} {:>13} {:>8} {:>6} {:>6} {:>12.2f} {:>8.2f} {:>8.2f}  {:<16} {}\n", p.bytes,
                   p.count, opt.dtype, reducing ? "sum" : "none", rooted ? "0" : "-1", p.time_s * 1e6,
                   p.algbw_GBps, p.busbw_GBps, to_string(p.result.algorithm), to_string(p.result.protocol));
    if (!r.busiest.empty()) {
        fmt::print("#\n# busiest links over the study ({} of the span):\n", "share of time sending");
        for (std::size_t i = 0; i < std::min<std::size_t>(r.busiest.size(), 4); ++i)
            fmt::print("#   {:<40} {:<12} {:>6.1f}%\n", r.busiest[i].direction, r.busiest[i].kind,
                       100 * r.busiest[i].utilization);
    }
    double joules = 0;
    for (const exp::CollectivePoint& p : r.points) joules += p.result.energy_j;
    fmt::print(
        "# link energy over the study: {:.6g} J (bytes on the wire x the links' and switches' energy)\n",
        joules);
    if (!db_path.empty()) fmt::print("# written to {} (run {})\n", db_path, r.run_id);
    fmt::print("# simulated in {:.3f} s\n", r.wall_s);
    return 0;
}

}  // namespace mlsim::cli
