// The names of collective kinds and algorithms of the network interface (arch/net/i_network.h).
#include <catch2/catch.hpp>
#include <string>

#include "arch/net/i_network.h"

using namespace mlsim::arch::net;

TEST_CASE("collective kinds print as snake_case and parse back", "[arch][net]") {
    CHECK(all_collective_kinds().size() == 9);
    for (CollectiveKind k : all_collective_kinds()) {
        INFO(std::string(to_string(k)));
        CHECK(parse_collective_kind(to_string(k)) == k);
    }
    CHECK(to_string(CollectiveKind::broadcast) == "broadcast");
    CHECK(to_string(CollectiveKind::all_reduce) == "all_reduce");
    CHECK(to_string(CollectiveKind::reduce_scatter) == "reduce_scatter");
    CHECK(to_string(CollectiveKind::all_to_all) == "all_to_all");
    CHECK(parse_collective_kind("all-reduce") == CollectiveKind::all_reduce);
    CHECK(parse_collective_kind("allreduce") == CollectiveKind::all_reduce);
    CHECK(parse_collective_kind("AllGather") == CollectiveKind::all_gather);
    CHECK(parse_collective_kind("ALL_TO_ALL") == CollectiveKind::all_to_all);
    CHECK(parse_collective_kind("reduce") == CollectiveKind::reduce);
    CHECK(parse_collective_kind("scatter") == CollectiveKind::scatter);
    for (const char* bad :
         {"", "all", "all_", "_all_reduce", "all__reduce", "all reduce", "allreduce2", "reduce-"})
        CHECK_FALSE(parse_collective_kind(bad).has_value());
}

TEST_CASE("collective algorithms print as snake_case and parse back", "[arch][net]") {
    CHECK(all_collective_algorithms().size() == 10);
    for (CollectiveAlgorithm a : all_collective_algorithms()) {
        INFO(std::string(to_string(a)));
        CHECK(parse_collective_algorithm(to_string(a)) == a);
    }
    CHECK(to_string(CollectiveAlgorithm::ring) == "ring");
    CHECK(to_string(CollectiveAlgorithm::halving_doubling) == "halving_doubling");
    CHECK(parse_collective_algorithm("halving-doubling") == CollectiveAlgorithm::halving_doubling);
    CHECK(parse_collective_algorithm("Hierarchical") == CollectiveAlgorithm::hierarchical);
    CHECK(parse_collective_algorithm("direct") == CollectiveAlgorithm::direct);
    CHECK(parse_collective_algorithm("nvls-tree") == CollectiveAlgorithm::nvls_tree);
    CHECK(parse_collective_algorithm("tree") == CollectiveAlgorithm::tree);
    for (const char* bad : {"", "rings", "butterfly", "all_reduce", "halving doubling"})
        CHECK_FALSE(parse_collective_algorithm(bad).has_value());
}

TEST_CASE("a collective result's duration is end minus start", "[arch][net]") {
    CollectiveResult r;
    r.start = mlsim::Tick::from_ns(5);
    r.end = mlsim::Tick::from_ns(12);
    CHECK(r.duration() == mlsim::Tick::from_ns(7));
}
