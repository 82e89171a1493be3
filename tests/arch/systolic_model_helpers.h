#pragma once
// Shared helpers for the systolic device-model tests: small devices written as config text (so they go
// through the same schema and checks as presets), and small ops.
#include <fmt/format.h>

#include <catch2/catch.hpp>
#include <string>

#include "arch/device_model.h"
#include "arch/device_spec.h"
#include "arch/systolic/systolic_model.h"
#include "sim/config/loader.h"
#include "sim/config/schema.h"
#include "tests/arch/user_error.h"
#include "workloads/op.h"

namespace mlsim::test {

struct ToyBuffer {
    std::string capacity = "1MiB";
    std::string bandwidth = "1TB/s";
    bool double_buffered = true;
};

// A device at 1 GHz computing int8 (and bf16 at 1/4 rate): main memory at `dram` with `latency`.
// With dram = 1GB/s one byte takes exactly one cycle.
struct Toy {
    int64_t rows = 4, cols = 4, arrays = 1;
    std::string dataflow = "ws";
    std::string dram = "1GB/s";
    std::string latency = "0ns";
    ToyBuffer ifmap, filter, ofmap;
    std::string extra;  // more lines for the systolic section, indented by 4

    std::string yaml() const {
        const double rate = static_cast<double>(rows * cols * arrays) * 2 * 1e9;
        auto buffer = [](const char* name, const ToyBuffer& b) {
            return fmt::format(
                "      {}: {{capacity: {}, bandwidth: {}, double_buffered: {}, read_energy: 1pJ/B, "
                "write_energy: 2pJ/B}}\n",
                name, b.capacity, b.bandwidth, b.double_buffered ? "true" : "false");
        };
        return fmt::format(
                   "device:\n"
                   "  name: toy\n"
                   "  family: tpu\n"
                   "  clock: 1GHz\n"
                   "  peak: {{int8: {:.0f}OP/s, bf16: {:.0f}FLOP/s}}\n"
                   "  mac_energy: {{int8: 0.3pJ, bf16: 1.5pJ}}\n"
                   "  memory:\n"
                   "    - {{name: dram, capacity: 1GiB, bandwidth: {}, latency: {}, read_energy: 100pJ/B, "
                   "write_energy: 120pJ/B}}\n"
                   "  static_power: 0.1W\n"
                   "  tdp: 10W\n"
                   "  op_overhead: 0s\n"
                   "  systolic:\n"
                   "    rows: {}\n"
                   "    cols: {}\n"
                   "    arrays: {}\n"
                   "    dataflow: {}\n"
                   "    pe_hop_energy: 0.01pJ\n"
                   "    buffers:\n",
                   rate, rate / 4, dram, latency, rows, cols, arrays, dataflow) +
               buffer("ifmap", ifmap) + buffer("filter", filter) + buffer("ofmap", ofmap) + extra;
    }
};

inline arch::DeviceSpec device_from_text(const std::string& text, const std::string& file = "toy.yaml") {
    const cfg::Node doc = cfg::parse_string(text, file);
    return arch::device_from_node(cfg::validate(*doc.find("device"), arch::device_schema()));
}

inline arch::DeviceSpec toy_device(const Toy& t) { return device_from_text(t.yaml()); }

using mlsim::test::user_error_of;

// C(M×N) = A(M×K)·W(K×N) with weights and no bias: a GEMM with nothing for the vector unit.
inline wl::Op linear(int64_t m, int64_t n, int64_t k, wl::DType dt = wl::DType::int8) {
    wl::LinearAttr a;
    a.out_features = n;
    a.bias = false;
    return wl::make_op("fc", a, {{m, k}}, dt);
}

inline wl::Op conv(int64_t n, int64_t c, int64_t h, int64_t w, int64_t cout, int64_t kernel, int64_t stride,
                   int64_t pad, int64_t groups = 1, wl::DType dt = wl::DType::int8) {
    wl::ConvAttr a;
    a.out_channels = cout;
    a.kernel = {kernel, kernel, 1};
    a.stride = {stride, stride, 1};
    a.pad_begin = {pad, pad, 0};
    a.pad_end = {pad, pad, 0};
    a.groups = groups;
    return wl::make_op("conv", a, {{n, c, h, w}}, dt);
}

// A text metric of a layer ("" when absent).
inline std::string text_of(const arch::LayerResult& r, std::string_view name) {
    const arch::Metric* m = r.metric(name);
    return m ? m->text : std::string();
}

// The systolic model's levels in the order it writes them: the ifmap, filter and ofmap buffers, then
// main memory (the test devices name their buffers apart, so none are merged).
inline arch::systolic::LevelAccesses access_of(const arch::LayerResult& r) {
    REQUIRE(r.levels.size() == 4);
    const auto bytes = [&](size_t i) {
        return arch::systolic::AccessBytes{r.levels[i].bytes_read, r.levels[i].bytes_written};
    };
    return arch::systolic::LevelAccesses{bytes(0), bytes(1), bytes(2), bytes(3)};
}

// Dynamic energy over every level of a layer.
inline double level_energy(const arch::LayerResult& r) {
    double e = 0;
    for (const arch::LevelTraffic& l : r.levels) e += l.energy_j;
    return e;
}

// The same device with its parsed systolic section changed by `edit`.
template <class Edit>
arch::DeviceSpec with_systolic(const arch::DeviceSpec& spec, Edit edit) {
    arch::DeviceSpec out = spec;
    auto sys = std::make_shared<arch::systolic::SystolicSpec>(*arch::systolic::spec_of(spec));
    edit(*sys);
    out.params["systolic"] = sys;
    return out;
}

// The same device with its systolic section's fidelity set (what `--fidelity` does through the config).
inline arch::DeviceSpec with_fidelity(const arch::DeviceSpec& spec, arch::systolic::Fidelity fidelity) {
    return with_systolic(spec, [&](arch::systolic::SystolicSpec& s) { s.fidelity = fidelity; });
}

inline arch::LayerResult run_one(const arch::DeviceSpec& spec, const wl::Op& op,
                                 arch::systolic::Fidelity fidelity = arch::systolic::Fidelity::tile) {
    arch::systolic::SystolicModel model(with_fidelity(spec, fidelity));
    return model.run_op(op);
}

}  // namespace mlsim::test
