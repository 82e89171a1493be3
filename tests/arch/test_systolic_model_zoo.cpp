// The systolic model over the model zoo on its presets: every layer respects the roofline bound of the
// same device and the model's other invariants, results are deterministic, and memoized layers equal
// freshly simulated ones.
#include <catch2/catch.hpp>
#include <string>
#include <vector>

#include "arch/roofline/roofline.h"
#include "systolic_model_helpers.h"
#include "workloads/model.h"

using namespace mlsim;
using namespace mlsim::test;

namespace {

const std::string k_devices = std::string(MLSIM_SOURCE_DIR) + "/configs/devices/";

struct Case {
    const char* device;
    wl::DType dtype;
};

const Case k_cases[] = {{"tpu-v1", wl::DType::int8},           {"tpu-v4", wl::DType::bf16},
                        {"scalesim-google", wl::DType::int8},  {"scalesim-scale", wl::DType::int8},
                        {"scalesim-eyeriss", wl::DType::int8}, {"ethos-u55", wl::DType::int8}};

wl::Model zoo(const char* name, wl::DType dtype) {
    wl::ZooOptions o;
    o.dtype = dtype;
    if (std::string(name) == "dlrm-mlperf") o.batch = 4;  // a small batch
    const std::string n = name;
    const std::string suffix = "-training";
    if (n.size() > suffix.size() && n.compare(n.size() - suffix.size(), suffix.size(), suffix) == 0)
        return wl::lower_training(wl::zoo_build(n.substr(0, n.size() - suffix.size()), o),
                                  wl::TrainingOptions{"adam", false});
    return wl::zoo_build(name, o);
}

}  // namespace

TEST_CASE("No layer of any zoo model runs faster than the roofline bound of its systolic preset",
          "[systolic]") {
    const char* models[] = {"lenet5",         "resnet50",           "mobilenetv2",       "ds-cnn-kws",
                            "bert-base",      "gpt2-small-prefill", "gpt2-small-decode", "dlrm-mlperf",
                            "mlp3",           "gpt2-xl-decode",     "llama2-7b-decode",  "mlp3-training",
                            "lenet5-training"};
    int64_t layers = 0, on_arrays = 0, memory_bound = 0, resident = 0;
    for (const Case& c : k_cases) {
        const arch::DeviceSpec spec = arch::load_device(k_devices + c.device + ".yaml");
        for (const char* name : models) {
            // The Ethos-U55 preset holds 4 MiB of flash: only the edge models are its workload.
            if (std::string(c.device) == "ethos-u55" && std::string(name) != "ds-cnn-kws" &&
                std::string(name) != "lenet5" && std::string(name) != "mlp3")
                continue;
            // The SCALE-Sim stand-ins model small arrays; the billion-parameter decoders are covered on
            // the TPUs and the google array.
            if ((std::string(c.device) == "scalesim-scale" || std::string(c.device) == "scalesim-eyeriss") &&
                (std::string(name) == "gpt2-xl-decode" || std::string(name) == "llama2-7b-decode"))
                continue;
            const wl::Model model = zoo(name, c.dtype);
            auto dm = arch::make_device_model(spec);
            REQUIRE(dm->model_name() == "systolic");
            const std::vector<arch::LayerResult> rs = dm->run(model);
            REQUIRE(rs.size() == model.ops().size());
            double t = 0;
            for (const arch::LayerResult& r : rs) {
                const wl::Op& op = model.ops()[static_cast<size_t>(r.idx)];
                INFO(c.device << " " << name << " layer " << r.idx << " " << r.name << " (" << r.op << ", "
                              << text_of(r, "tiling") << ")");
                // The floor: the roofline over the bytes the layer still moves across main memory (its
                // inputs found on chip and its output kept there do not); with nothing on chip, the
                // roofline's own bound.
                const double on_chip = r.metric_value("input_bytes_on_chip", -1);
                const double kept = r.metric_value("output_bytes_kept", -1);
                REQUIRE(on_chip >= 0);
                REQUIRE(kept >= 0);
                CHECK(on_chip + r.metric_value("input_bytes_from_dram") == Approx(op.counts().input_bytes));
                const arch::RooflineBound b = arch::roofline_bound(spec, op, arch::OnChip{on_chip, kept});
                CHECK(r.time_s >= b.bound_s());
                if (on_chip == 0 && kept == 0) CHECK(r.time_s >= arch::roofline_bound(spec, op).bound_s());
                resident += on_chip > 0;
                CHECK(r.start_s == t);
                t = r.end_s;
                CHECK(r.energy_compute_j >= 0);
                CHECK(r.energy_memory_j >= 0);
                CHECK(r.energy_static_j >= 0);
                // Average power within the TDP, layer by layer (mlp3's flash-bound layers drew 104 mW on
                // the Ethos-U55 preset when its TDP was 100 mW).
                if (r.time_s > 0) CHECK(r.energy_j() / r.time_s <= spec.tdp_W * (1 + 1e-9));
                CHECK(r.stall_cycles <= r.cycles);
                CHECK(r.stall_cycles == r.metric_value("stall_weight_cycles") +
                                            r.metric_value("stall_input_cycles") +
                                            r.metric_value("stall_output_cycles"));
                CHECK(r.utilization <= 1.0);
                CHECK(r.bytes_read >= op.counts().weight_bytes + op.counts().input_bytes - on_chip);
                CHECK(r.bytes_written >= op.counts().output_bytes - kept);
                CHECK(r.bytes_read == access_of(r).dram.read);
                CHECK(r.bytes_written == access_of(r).dram.write);
                // Bytes are conserved between levels: what main memory delivers is what the buffers take in
                // (the ofmap buffer also takes the array's outputs, the ifmap buffer the outputs kept for
                // later layers), and what it receives is what the ofmap buffer gives out beyond the
                // array's read-backs.
                CHECK(access_of(r).ifmap.write - kept + access_of(r).filter.write <= access_of(r).dram.read);
                CHECK(access_of(r).ofmap.read >= access_of(r).dram.write);
                CHECK(r.energy_memory_j == Approx(level_energy(r) + r.metric_value("energy_pe_hops_j")));
                on_arrays += text_of(r, "tiling") != "vector";
                memory_bound += r.bound == "memory";
                ++layers;
            }
        }
    }
    CHECK(layers > 2000);
    CHECK(on_arrays > 400);
    CHECK(memory_bound > 0);
    CHECK(resident > 500);  // activations stay on chip between layers
}

TEST_CASE("A model run is deterministic and memoized layers equal freshly simulated ones", "[systolic]") {
    const arch::DeviceSpec spec = arch::load_device(k_devices + "tpu-v4.yaml");
    const wl::Model model = zoo("resnet50", wl::DType::bf16);
    arch::systolic::SystolicModel a(spec), b(spec);
    const std::vector<arch::LayerResult> ra = a.run(model), rb = b.run(model);
    CHECK(a.work().cache_hits > 50);  // ResNet-50 repeats its blocks
    REQUIRE(ra.size() == rb.size());
    for (size_t i = 0; i < ra.size(); ++i) {
        INFO(ra[i].name);
        CHECK(ra[i].cycles == rb[i].cycles);
        CHECK(ra[i].end_s == rb[i].end_s);
        CHECK(ra[i].energy_j() == rb[i].energy_j());
        CHECK(text_of(ra[i], "tiling") == text_of(rb[i], "tiling"));
    }
    // Every layer simulated afresh (no memo), with the same activations on chip: the same numbers.
    arch::systolic::SystolicModel fresh(spec);
    fresh.set_memoize_for_test(false);
    const std::vector<arch::LayerResult> rf = fresh.run(model);
    CHECK(fresh.work().cache_hits == 0);
    REQUIRE(rf.size() == ra.size());
    for (size_t i = 0; i < ra.size(); ++i) {
        INFO(ra[i].name);
        CHECK(rf[i].cycles == ra[i].cycles);
        CHECK(rf[i].metric_value("stall_input_cycles") == ra[i].metric_value("stall_input_cycles"));
        CHECK(rf[i].metric_value("input_bytes_on_chip") == ra[i].metric_value("input_bytes_on_chip"));
        CHECK(rf[i].energy_j() == ra[i].energy_j());
    }
    // A layer with nothing on chip is the op on its own.
    int64_t alone = 0;
    for (size_t i = 0; i < ra.size(); ++i) {
        if (ra[i].metric_value("input_bytes_on_chip") > 0 || ra[i].metric_value("output_bytes_kept") > 0)
            continue;
        arch::systolic::SystolicModel one(spec);
        const arch::LayerResult f = one.run_op(model.ops()[i]);
        INFO(ra[i].name);
        CHECK(f.bytes_read == ra[i].bytes_read);
        CHECK(f.bytes_written == ra[i].bytes_written);
        ++alone;
    }
    CHECK(alone > 0);
}

TEST_CASE("ResNet-50 on TPU v4: convolutions run on the arrays, element-wise ops on the vector unit",
          "[systolic]") {
    const arch::DeviceSpec spec = arch::load_device(k_devices + "tpu-v4.yaml");
    const wl::Model model = zoo("resnet50", wl::DType::bf16);
    arch::systolic::SystolicModel m(spec);
    const std::vector<arch::LayerResult> rs = m.run(model);
    double conv_s = 0, total_s = 0;
    int64_t in_vmem = 0;
    for (const arch::LayerResult& r : rs) {
        total_s += r.time_s;
        if (r.op == "conv2d") {
            conv_s += r.time_s;
            CHECK(text_of(r, "tiling").find("split=") != std::string::npos);  // 8 arrays share the work
            CHECK(r.utilization > 0);
            CHECK(r.metric_value("energy_pe_hops_j") > 0);
        } else if (r.op == "relu" || r.op == "batchnorm" || r.op == "add") {
            CHECK(text_of(r, "tiling") == "vector");
            if (r.metric_value("input_bytes_on_chip") == 0 && r.metric_value("output_bytes_kept") == 0) {
                // Waiting on HBM, or so small at batch 1 that the per-op overhead dominates; never compute.
                CHECK(r.bound != "compute");
                CHECK(r.parts.memory_s > r.parts.compute_s);
            } else {
                // Its activations stayed in VMEM: HBM sees at most its parameters.
                ++in_vmem;
                CHECK(r.bytes_read <= r.counts.weight_bytes + r.metric_value("input_bytes_from_dram"));
                CHECK(r.bytes_written <= r.counts.output_bytes - r.metric_value("output_bytes_kept"));
            }
        }
    }
    CHECK(conv_s > 0.3 * total_s);
    CHECK(in_vmem > 50);
    // Every event of the pipelines ran: a few per tile step, nothing per cycle.
    CHECK(m.work().events > 100);
    CHECK(m.work().events < 20000);
}

TEST_CASE("Cycle fidelity reproduces tile fidelity on every layer of LeNet-5 and DS-CNN", "[systolic]") {
    for (const char* df : {"os", "ws", "is"}) {
        Toy t;
        t.rows = t.cols = 8;
        t.dataflow = df;
        t.dram = "8GB/s";
        t.latency = "20ns";
        t.ifmap.capacity = "16KiB";
        t.filter.capacity = "4KiB";
        t.ofmap.capacity = "8KiB";
        const arch::DeviceSpec spec = toy_device(t);
        for (const char* name : {"lenet5", "ds-cnn-kws"}) {
            const wl::Model model = zoo(name, wl::DType::int8);
            arch::systolic::SystolicModel tile(spec),
                cycle(with_fidelity(spec, arch::systolic::Fidelity::cycle));
            const std::vector<arch::LayerResult> a = tile.run(model), b = cycle.run(model);
            REQUIRE(a.size() == b.size());
            for (size_t i = 0; i < a.size(); ++i) {
                INFO(df << " " << name << " " << a[i].name << " " << text_of(a[i], "tiling"));
                CHECK(a[i].cycles == b[i].cycles);
                CHECK(a[i].metric_value("stall_weight_cycles") == b[i].metric_value("stall_weight_cycles"));
                CHECK(a[i].metric_value("stall_input_cycles") == b[i].metric_value("stall_input_cycles"));
                CHECK(a[i].metric_value("stall_output_cycles") == b[i].metric_value("stall_output_cycles"));
                CHECK(access_of(a[i]).ifmap.read == access_of(b[i]).ifmap.read);
                CHECK(access_of(a[i]).filter.read == access_of(b[i]).filter.read);
                CHECK(access_of(a[i]).ofmap.read == access_of(b[i]).ofmap.read);
                CHECK(access_of(a[i]).ofmap.write == access_of(b[i]).ofmap.write);
                CHECK(access_of(a[i]).dram.read == access_of(b[i]).dram.read);
                CHECK(a[i].energy_j() == b[i].energy_j());
            }
            CHECK(cycle.work().grid_tiles > 0);
        }
    }
}
