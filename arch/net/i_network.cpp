#include "arch/net/i_network.h"

#include <array>
#include <cctype>
#include <string>
#include <utility>

namespace mlsim::arch::net {

namespace {

constexpr std::array<std::pair<CollectiveKind, std::string_view>, 9> kind_names{{
    {CollectiveKind::broadcast, "broadcast"},
    {CollectiveKind::scatter, "scatter"},
    {CollectiveKind::gather, "gather"},
    {CollectiveKind::reduce, "reduce"},
    {CollectiveKind::all_gather, "all_gather"},
    {CollectiveKind::reduce_scatter, "reduce_scatter"},
    {CollectiveKind::all_reduce, "all_reduce"},
    {CollectiveKind::all_to_all, "all_to_all"},
    {CollectiveKind::send_recv, "send_recv"},
}};

constexpr std::array<std::pair<CollectiveAlgorithm, std::string_view>, 10> algorithm_names{{
    {CollectiveAlgorithm::ring, "ring"},
    {CollectiveAlgorithm::tree, "tree"},
    {CollectiveAlgorithm::direct, "direct"},
    {CollectiveAlgorithm::halving_doubling, "halving_doubling"},
    {CollectiveAlgorithm::hierarchical, "hierarchical"},
    {CollectiveAlgorithm::pairwise, "pairwise"},
    {CollectiveAlgorithm::bruck, "bruck"},
    {CollectiveAlgorithm::nvls, "nvls"},
    {CollectiveAlgorithm::nvls_tree, "nvls_tree"},
    {CollectiveAlgorithm::automatic, "auto"},
}};

constexpr std::array<std::pair<Protocol, std::string_view>, 5> protocol_names{{
    {Protocol::ll, "ll"},
    {Protocol::ll128, "ll128"},
    {Protocol::simple, "simple"},
    {Protocol::ideal, "ideal"},
    {Protocol::automatic, "auto"},
}};

// Lower case without separators, so that all_reduce, all-reduce, AllReduce and allreduce compare equal.
// Only separators between letters count: a name that starts or ends with one is not a spelling.
std::optional<std::string> squeeze(std::string_view text) {
    if (text.empty() || text.front() == '_' || text.front() == '-' || text.back() == '_' ||
        text.back() == '-')
        return std::nullopt;
    std::string out;
    char previous = 0;
    for (char c : text) {
        const bool sep = c == '_' || c == '-';
        if (sep && (previous == '_' || previous == '-')) return std::nullopt;  // "all__reduce"
        previous = c;
        if (sep) continue;
        if (!std::isalnum(static_cast<unsigned char>(c))) return std::nullopt;
        out += static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
    }
    return out;
}

template <typename Enum, std::size_t N>
std::optional<Enum> parse_name(const std::array<std::pair<Enum, std::string_view>, N>& table,
                               std::string_view text) {
    const std::optional<std::string> key = squeeze(text);
    if (!key) return std::nullopt;
    for (const auto& [value, name] : table)
        if (squeeze(name) == key) return value;
    return std::nullopt;
}

template <typename Enum, std::size_t N>
std::string_view name_of(const std::array<std::pair<Enum, std::string_view>, N>& table, Enum value) {
    for (const auto& [v, name] : table)
        if (v == value) return name;
    return "unknown";
}

}  // namespace

std::string_view to_string(CollectiveKind kind) { return name_of(kind_names, kind); }
std::string_view to_string(CollectiveAlgorithm algorithm) { return name_of(algorithm_names, algorithm); }

std::string_view to_string(Protocol protocol) { return name_of(protocol_names, protocol); }

std::optional<Protocol> parse_protocol(std::string_view text) {
    if (text == "automatic") return Protocol::automatic;
    return parse_name(protocol_names, text);
}

const std::vector<Protocol>& all_protocols() {
    static const std::vector<Protocol> out = [] {
        std::vector<Protocol> v;
        for (const auto& [p, name] : protocol_names) v.push_back(p);
        return v;
    }();
    return out;
}

double bus_bandwidth_factor(CollectiveKind kind, int64_t ranks) {
    if (ranks <= 1) return 1.0;
    const double n = static_cast<double>(ranks);
    switch (kind) {
        case CollectiveKind::all_reduce:
            return 2.0 * (n - 1) / n;
        case CollectiveKind::all_gather:
        case CollectiveKind::reduce_scatter:
        case CollectiveKind::all_to_all:
        case CollectiveKind::scatter:
        case CollectiveKind::gather:
            return (n - 1) / n;
        case CollectiveKind::broadcast:
        case CollectiveKind::reduce:
        case CollectiveKind::send_recv:
            return 1.0;
    }
    return 1.0;
}

std::optional<CollectiveKind> parse_collective_kind(std::string_view text) {
    return parse_name(kind_names, text);
}

std::optional<CollectiveAlgorithm> parse_collective_algorithm(std::string_view text) {
    if (text == "automatic") return CollectiveAlgorithm::automatic;
    return parse_name(algorithm_names, text);
}

const std::vector<CollectiveKind>& all_collective_kinds() {
    static const std::vector<CollectiveKind> kinds = [] {
        std::vector<CollectiveKind> out;
        for (const auto& [k, name] : kind_names) out.push_back(k);
        return out;
    }();
    return kinds;
}

const std::vector<CollectiveAlgorithm>& all_collective_algorithms() {
    static const std::vector<CollectiveAlgorithm> algorithms = [] {
        std::vector<CollectiveAlgorithm> out;
        for (const auto& [a, name] : algorithm_names) out.push_back(a);
        return out;
    }();
    return algorithms;
}

}  // namespace mlsim::arch::net
