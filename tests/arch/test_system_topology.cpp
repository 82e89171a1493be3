// The topology graph: lookups, neighbours, connectivity, and routes that take the least latency, then
// the fewest hops, then the smallest names, whatever order the graph was built in.
#include <algorithm>
#include <catch2/catch.hpp>
#include <cmath>
#include <limits>
#include <set>
#include <string>
#include <tuple>
#include <vector>

#include "arch/net/topology.h"

using namespace mlsim;
using namespace mlsim::arch::net;

namespace {

LinkProps link(double gbps, int64_t latency_ns, int64_t count = 1) {
    LinkProps p;
    p.kind = "test";
    p.bandwidth_Bps = gbps * 1e9;
    p.latency = Tick::from_ns(latency_ns);
    p.count = count;
    return p;
}

SwitchProps sw(int64_t latency_ns, double port_gbps = 0) {
    SwitchProps p;
    p.latency = Tick::from_ns(latency_ns);
    p.port_bandwidth_Bps = port_gbps * 1e9;
    return p;
}

std::vector<std::string> names(const Topology& t, const Route& r) {
    std::vector<std::string> out;
    for (VertexId v : r.vertices()) out.push_back(t.vertex(v).name);
    return out;
}

Route route(const Topology& t, const std::string& a, const std::string& b) {
    const auto r = t.route(*t.find(a), *t.find(b));
    REQUIRE(r.has_value());
    return *r;
}

}  // namespace

TEST_CASE("a topology finds devices and switches by name and lists neighbours in name order", "[arch][net]") {
    Topology t;
    const VertexId d0 = t.add_device("d0");
    const VertexId d1 = t.add_device("d1");
    const VertexId s = t.add_switch("s", sw(1));
    CHECK(t.vertex_count() == 3);
    CHECK(t.devices() == std::vector<VertexId>{d0, d1});
    CHECK(t.switches() == std::vector<VertexId>{s});
    CHECK(t.find("s") == s);
    CHECK(t.find_switch("s") == s);
    CHECK_FALSE(t.find_device("s").has_value());
    CHECK(t.find_device("d1") == d1);
    CHECK_FALSE(t.find("d2").has_value());
    CHECK(t.vertex(s).is_switch());
    CHECK(t.vertex(d0).is_device());

    const LinkId l0 = t.add_link(s, d1, link(10, 1));
    const LinkId l1 = t.add_link(d0, s, link(10, 1));
    const LinkId l2 = t.add_link(d0, s, link(10, 1));  // a second, parallel entry
    CHECK(t.link_count() == 3);
    CHECK(t.link(l0).other(s) == d1);
    const std::vector<Neighbour> n = t.neighbours(s);
    REQUIRE(n.size() == 3);
    CHECK(n[0].vertex == d0);
    CHECK(n[0].link == l1);
    CHECK(n[1].vertex == d0);
    CHECK(n[1].link == l2);
    CHECK(n[2].vertex == d1);
    CHECK(n[2].link == l0);
}

TEST_CASE("a route takes the least latency even over more hops", "[arch][net]") {
    Topology t;
    t.add_device("a");
    t.add_device("b");
    t.add_switch("s", sw(2));
    t.add_link(*t.find("a"), *t.find("b"), link(100, 10));  // direct, slow to start
    t.add_link(*t.find("a"), *t.find("s"), link(10, 3));
    t.add_link(*t.find("s"), *t.find("b"), link(10, 3));
    const Route r = route(t, "a", "b");
    CHECK(names(t, r) == std::vector<std::string>{"a", "s", "b"});
    CHECK(r.latency == Tick::from_ns(8));  // 3 + 2 + 3
    CHECK(r.bottleneck_Bps == Approx(10e9));
    // One nanosecond more in the switch and the direct link wins (a tie at 9 ns would go to fewer hops).
    Topology slower;
    slower.add_device("a");
    slower.add_device("b");
    slower.add_switch("s", sw(4));
    slower.add_link(0, 1, link(100, 10));
    slower.add_link(0, 2, link(10, 3));
    slower.add_link(2, 1, link(10, 3));
    CHECK(names(slower, route(slower, "a", "b")) == std::vector<std::string>{"a", "b"});
}

TEST_CASE("equal latency goes to fewer hops, then to smaller names, then to the faster and the lower link id",
          "[arch][net]") {
    SECTION("fewer hops") {
        Topology t;
        t.add_device("a");
        t.add_device("b");
        t.add_switch("s", sw(0));
        t.add_link(0, 2, link(10, 5));
        t.add_link(2, 1, link(10, 5));
        t.add_link(0, 1, link(10, 10));
        const Route r = route(t, "a", "b");
        CHECK(r.hops.size() == 1);
        CHECK(r.latency == Tick::from_ns(10));
    }
    SECTION("smaller names, whatever the insertion order") {
        for (bool s1_first : {true, false}) {
            Topology t;
            t.add_device("a");
            t.add_device("b");
            if (s1_first) {
                t.add_switch("s1", sw(1));
                t.add_switch("s0", sw(1));
            } else {
                t.add_switch("s0", sw(1));
                t.add_switch("s1", sw(1));
            }
            for (const char* s : {"s1", "s0"}) {
                t.add_link(*t.find("a"), *t.find(s), link(10, 1));
                t.add_link(*t.find(s), *t.find("b"), link(10, 1));
            }
            CHECK(names(t, route(t, "a", "b")) == std::vector<std::string>{"a", "s0", "b"});
            CHECK(names(t, route(t, "b", "a")) == std::vector<std::string>{"b", "s0", "a"});
        }
    }
    SECTION("parallel links of equal latency: the faster, then the lower id") {
        Topology t;
        t.add_device("a");
        t.add_device("b");
        t.add_link(0, 1, link(10, 4));
        const LinkId slow = t.add_link(0, 1, link(20, 2));
        const LinkId fast = t.add_link(1, 0, link(30, 2));
        const LinkId twin = t.add_link(0, 1, link(30, 2));
        const Route r = route(t, "a", "b");
        REQUIRE(r.hops.size() == 1);
        CHECK(r.hops[0].link == fast);  // not the slower link given first
        CHECK(r.hops[0].link != slow);
        CHECK(r.hops[0].link != twin);  // as fast: the lower id
        CHECK(r.hops[0].from == 0);
        CHECK(r.hops[0].to == 1);
        // Flows spread (ECMP) over the fastest parallel links only, never onto the slower ones.
        CHECK(t.equal_cost_next_hops(0, 1) == 2);
        std::set<LinkId> used;
        for (uint64_t h = 1; h <= 64; ++h) used.insert(t.route(0, 1, h)->hops.at(0).link);
        CHECK(used == std::set<LinkId>{fast, twin});
    }
}

TEST_CASE("the bottleneck is the narrowest link, counting parallel links and switch ports", "[arch][net]") {
    Topology t;
    t.add_device("a");
    t.add_device("b");
    t.add_device("c");
    t.add_switch("s", sw(1, 20));      // 20 GB/s per port
    t.add_link(0, 3, link(25, 1, 4));  // 4 x min(25, 20) = 80 GB/s
    t.add_link(3, 1, link(10, 1, 3));  // 3 x 10 = 30 GB/s
    t.add_link(1, 2, link(50, 1, 2));  // no switch: 2 x 50 = 100 GB/s
    CHECK(t.link(0).bandwidth_Bps == Approx(80e9));
    CHECK(t.link(1).bandwidth_Bps == Approx(30e9));
    CHECK(t.link(2).bandwidth_Bps == Approx(100e9));
    const Route r = route(t, "a", "c");
    CHECK(names(t, r) == std::vector<std::string>{"a", "s", "b", "c"});
    CHECK(r.links() == std::vector<LinkId>{0, 1, 2});
    CHECK(r.bottleneck_Bps == Approx(30e9));
    CHECK(r.latency == Tick::from_ns(4));
    CHECK(route(t, "a", "s").latency == Tick::from_ns(2));  // a switch at the end counts too
}

TEST_CASE("no route between components; the empty route to oneself", "[arch][net]") {
    Topology t;
    t.add_device("a");
    t.add_device("b");
    t.add_device("c");
    t.add_link(0, 1, link(10, 1));
    CHECK_FALSE(t.route(0, 2).has_value());
    CHECK(t.unreachable_from(0) == std::vector<VertexId>{2});
    CHECK(t.unreachable_from(2) == std::vector<VertexId>{0, 1});
    CHECK_FALSE(t.connected());
    const Route self = route(t, "a", "a");
    CHECK(self.hops.empty());
    CHECK(self.latency == Tick::zero());
    CHECK(std::isinf(self.bottleneck_Bps));
    t.add_link(1, 2, link(10, 1));
    CHECK(t.connected());
    CHECK(t.unreachable_from(0).empty());
}

TEST_CASE("routes on a ring are the same for every build order and both directions agree", "[arch][net]") {
    // A ring of 6 devices with equal links: opposite devices have two equally good routes.
    auto build = [](bool reversed) {
        Topology t;
        const std::vector<std::string> n = {"r0", "r1", "r2", "r3", "r4", "r5"};
        for (std::size_t i = 0; i < n.size(); ++i) t.add_device(reversed ? n[n.size() - 1 - i] : n[i]);
        for (std::size_t i = 0; i < n.size(); ++i) {
            const std::size_t j = (i + 1) % n.size();
            if (reversed)
                t.add_link(*t.find(n[j]), *t.find(n[i]), link(10, 1));
            else
                t.add_link(*t.find(n[i]), *t.find(n[j]), link(10, 1));
        }
        return t;
    };
    const Topology a = build(false), b = build(true);
    CHECK(names(a, route(a, "r0", "r3")) == std::vector<std::string>{"r0", "r1", "r2", "r3"});
    CHECK(names(b, route(b, "r0", "r3")) == names(a, route(a, "r0", "r3")));
    CHECK(names(a, route(a, "r3", "r0")) == std::vector<std::string>{"r3", "r2", "r1", "r0"});
    CHECK(names(b, route(b, "r3", "r0")) == names(a, route(a, "r3", "r0")));
    CHECK(names(a, route(a, "r0", "r4")) == std::vector<std::string>{"r0", "r5", "r4"});
}

TEST_CASE("a copied topology is independent of the original", "[arch][net]") {
    Topology t;
    t.add_device("a");
    t.add_device("b");
    Topology copy = t;
    copy.add_link(0, 1, link(10, 1));
    CHECK(copy.link_count() == 1);
    CHECK(t.link_count() == 0);
    CHECK_FALSE(t.route(0, 1).has_value());
    CHECK(copy.route(0, 1).has_value());
    Topology moved = std::move(copy);
    CHECK(moved.link_count() == 1);
}

TEST_CASE("building a topology the loader should have rejected is an internal error", "[arch][net]") {
    Topology t;
    t.add_device("a");
    CHECK_THROWS_AS(t.add_device("a"), InternalError);
    CHECK_THROWS_AS(t.add_link(0, 0, link(10, 1)), InternalError);
    CHECK_THROWS_AS(t.add_link(0, 5, link(10, 1)), InternalError);
    t.add_device("b");
    CHECK_THROWS_AS(t.add_link(0, 1, link(0, 1)), InternalError);
}

TEST_CASE("routes have the least latency, then the fewest hops, of all paths, on random fabrics",
          "[arch][net]") {
    // Devices on one to three switches (their costs come from their switches', Topology's derive_costs),
    // some also linked to another device (theirs from a Dijkstra), switches joined at random; random whole
    // nanosecond latencies. Checked against every pair's least (latency, hops) by Floyd-Warshall over the
    // contract's latency (links plus every switch on the path).
    for (uint64_t seed = 1; seed <= 12; ++seed) {
        uint64_t x = seed * 0x9E3779B97F4A7C15ull;
        auto next = [&](uint64_t n) {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            return x % n;
        };
        Topology t;
        const std::size_t devices = 10 + next(20), switches = 3 + next(6);
        auto name = [](char kind, std::size_t i) {
            std::string s(1, kind);
            s += std::to_string(i);
            return s;
        };
        for (std::size_t i = 0; i < devices; ++i) t.add_device(name('d', i));
        for (std::size_t i = 0; i < switches; ++i)
            t.add_switch(name('s', i), sw(static_cast<int64_t>(next(300))));
        const std::size_t n = devices + switches;
        struct C {
            int64_t lat = std::numeric_limits<int64_t>::max() / 4, hops = 0;
        };
        std::vector<std::vector<C>> d(n, std::vector<C>(n));
        auto join = [&](std::size_t a, std::size_t b) {
            const int64_t ns = 1 + static_cast<int64_t>(next(900));
            t.add_link(static_cast<VertexId>(a), static_cast<VertexId>(b), link(10, ns));
            for (auto [u, v] : {std::pair{a, b}, std::pair{b, a}}) {
                // to v: the link, and v's own latency when it is a switch (the contract counts every
                // switch on the path, endpoints included)
                const int64_t w =
                    ns * 1000 + (v >= devices ? t.vertex(static_cast<VertexId>(v)).sw.latency.ps() : 0);
                if (d[u][v].hops == 0 || w < d[u][v].lat) d[u][v] = C{w, 1};
            }
        };
        for (std::size_t s = 1; s < switches; ++s)
            join(devices + s, devices + next(s));  // a tree of switches
        for (std::size_t k = 0; k < switches; ++k) {
            const std::size_t a = next(switches), b = next(switches);
            if (a != b) join(devices + a, devices + b);
        }
        for (std::size_t i = 0; i < devices; ++i) {
            const std::size_t links = 1 + next(3);  // two may go to one switch (parallel links)
            for (std::size_t k = 0; k < links; ++k) join(i, devices + next(switches));
            if (i > 0 && next(4) == 0) join(i, next(i));
        }
        for (std::size_t k = 0; k < n; ++k)
            for (std::size_t a = 0; a < n; ++a)
                for (std::size_t b = 0; b < n; ++b) {
                    if (d[a][k].hops == 0 || d[k][b].hops == 0 || a == b) continue;
                    const C via{d[a][k].lat + d[k][b].lat, d[a][k].hops + d[k][b].hops};
                    if (d[a][b].hops == 0 ||
                        std::tie(via.lat, via.hops) < std::tie(d[a][b].lat, d[a][b].hops))
                        d[a][b] = via;
                }
        for (std::size_t a = 0; a < devices; ++a)
            for (std::size_t b = 0; b < devices; ++b) {
                if (a == b) continue;
                INFO("seed " << seed << ": d" << a << " -> d" << b);
                const auto r = t.route(static_cast<VertexId>(a), static_cast<VertexId>(b));
                REQUIRE(r.has_value());
                CHECK(r->latency.ps() == d[a][b].lat);
                CHECK(static_cast<int64_t>(r->hops.size()) == d[a][b].hops);
            }
        // Every vertex's cost to every destination, through the links that stay on a cheapest path: from
        // `at`, a link to u does when its own latency and u's (a switch) plus the least from u equal the
        // least from `at`, with one hop more (the destination's own latency counted once, whatever the link).
        for (std::size_t at = 0; at < n; ++at)
            for (std::size_t dst = 0; dst < devices; ++dst) {
                if (at == dst) continue;
                std::size_t expected = 0;
                for (const Neighbour& nb : t.neighbours(static_cast<VertexId>(at))) {
                    const std::size_t u = nb.vertex;
                    const int64_t to_u = t.link(nb.link).props.latency.ps() +
                                         (u >= devices ? t.vertex(nb.vertex).sw.latency.ps() : 0);
                    const bool last = u == dst;
                    if (!last && d[u][dst].hops == 0) continue;
                    const int64_t lat = to_u + (last ? 0 : d[u][dst].lat);
                    const int64_t hops = 1 + (last ? 0 : d[u][dst].hops);
                    if (lat == d[at][dst].lat && hops == d[at][dst].hops) ++expected;
                }
                INFO("seed " << seed << ": vertex " << at << " -> d" << dst);
                CHECK(t.equal_cost_next_hops(static_cast<VertexId>(at), static_cast<VertexId>(dst)) ==
                      expected);
            }
    }
}
