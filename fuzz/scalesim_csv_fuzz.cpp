// libFuzzer target: a SCALE-Sim topology CSV (workloads/scalesim_csv.cpp) loaded as a model, then its
// totals computed.
#include "fuzz/fuzz_input.h"
#include "workloads/model.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, std::size_t size) {
    static mlsim::fuzz::ScratchFile file("topology.csv");
    const std::string& path = file.write(data, size);
    mlsim::fuzz::run_input([&] {
        const mlsim::wl::Model model = mlsim::wl::load_scalesim_csv(path, mlsim::wl::ZooOptions{});
        (void)model.totals();
    });
    return 0;
}
