// libFuzzer target: a model YAML file (workloads/yaml_model.cpp) loaded as `mlsim run --model FILE`
// would, then its totals computed (the counts every device model starts from).
#include "fuzz/fuzz_input.h"
#include "workloads/model.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, std::size_t size) {
    static mlsim::fuzz::ScratchFile file("model.yaml");
    const std::string& path = file.write(data, size);
    mlsim::fuzz::run_input([&] {
        const mlsim::wl::Model model = mlsim::wl::load_model_yaml(path, mlsim::wl::ZooOptions{});
        (void)model.totals();
    });
    return 0;
}
