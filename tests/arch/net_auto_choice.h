#pragma once
// The automatic collective choice (the closed-form best three, simulated) against the exhaustive one
// (every candidate simulated) on a preset system: same algorithm, protocol and end time.

#include <catch2/catch.hpp>
#include <cstdint>
#include <initializer_list>
#include <string>
#include <vector>

#include "arch/net/impl/flow_network.h"
#include "experiment/collective_study.h"
#include "experiment/experiment.h"

namespace mlsim::test::net {

// Compares every kind at 8 B, 128 B, ..., 1 GiB (7 sizes) over the devices of the system's first device
// type; returns how many cases were compared.
inline int check_automatic_matches_exhaustive(const std::string& system,
                                              std::initializer_list<arch::net::CollectiveKind> kinds) {
    using namespace mlsim::arch::net;
    const arch::SystemSpec sys = exp::load_system_file(exp::resolve_system_path(system));
    NetworkOptions pruned = exp::network_options_for(sys, "fp32");
    NetworkOptions exhaustive = pruned;
    exhaustive.choice_simulations = 0;
    std::vector<VertexId> group;
    for (std::size_t i = 0; i < sys.devices.size(); ++i)
        if (sys.devices[i].type == sys.devices[0].type) group.push_back(i);
    int compared = 0;
    for (CollectiveKind kind : kinds) {
        for (int64_t bytes = 8; bytes <= (int64_t{1} << 30); bytes *= 16) {
            INFO(system << " " << to_string(kind) << " " << bytes << " B");
            CollectiveRequest q;
            q.kind = kind;
            q.algorithm = CollectiveAlgorithm::automatic;
            q.protocol = Protocol::automatic;
            q.group = group;
            q.bytes = bytes;
            FlowNetwork a(sys.topology, pruned), b(sys.topology, exhaustive);
            const CollectiveResult ra = a.collective(q), rb = b.collective(q);
            CHECK(to_string(ra.algorithm) == to_string(rb.algorithm));
            CHECK(to_string(ra.protocol) == to_string(rb.protocol));
            CHECK(ra.end == rb.end);
            ++compared;
        }
    }
    return compared;
}

}  // namespace mlsim::test::net
