#include "workloads/dtype.h"

#include <array>
#include <utility>

#include "sim/core/check.h"

namespace mlsim::wl {

namespace {

constexpr std::array<std::pair<DType, std::string_view>, 9> k_dtypes{{
    {DType::fp64, "fp64"},
    {DType::fp32, "fp32"},
    {DType::tf32, "tf32"},
    {DType::bf16, "bf16"},
    {DType::fp16, "fp16"},
    {DType::fp8, "fp8"},
    {DType::int16, "int16"},
    {DType::int8, "int8"},
    {DType::int4, "int4"},
}};

}  // namespace

int dtype_bits(DType t) {
    switch (t) {
        case DType::fp64:
            return 64;
        case DType::fp32:
        case DType::tf32:
            return 32;
        case DType::bf16:
        case DType::fp16:
        case DType::int16:
            return 16;
        case DType::fp8:
        case DType::int8:
            return 8;
        case DType::int4:
            return 4;
    }
    MLSIM_CHECK(false, "unhandled DType");
    return 0;
}

double dtype_bytes(DType t) { return dtype_bits(t) / 8.0; }

bool dtype_is_float(DType t) {
    switch (t) {
        case DType::fp64:
        case DType::fp32:
        case DType::tf32:
        case DType::bf16:
        case DType::fp16:
        case DType::fp8:
            return true;
        case DType::int16:
        case DType::int8:
        case DType::int4:
            return false;
    }
    MLSIM_CHECK(false, "unhandled DType");
    return false;
}

std::string_view dtype_name(DType t) {
    for (const auto& [d, name] : k_dtypes)
        if (d == t) return name;
    MLSIM_CHECK(false, "unhandled DType");
    return {};
}

std::optional<DType> parse_dtype(std::string_view name) {
    for (const auto& [d, n] : k_dtypes)
        if (n == name) return d;
    return std::nullopt;
}

const std::vector<std::string>& dtype_names() {
    static const std::vector<std::string> names = [] {
        std::vector<std::string> out;
        for (const auto& [d, n] : k_dtypes) out.emplace_back(n);
        return out;
    }();
    return names;
}

std::string_view phase_name(Phase p) {
    switch (p) {
        case Phase::forward:
            return "forward";
        case Phase::backward:
            return "backward";
        case Phase::optimizer:
            return "optimizer";
        case Phase::recompute:
            return "recompute";
    }
    MLSIM_CHECK(false, "unhandled Phase");
    return {};
}

}  // namespace mlsim::wl
