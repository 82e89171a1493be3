// libFuzzer target: a SCALE-Sim architecture .cfg (arch/systolic/scalesim_cfg.cpp) read as a system.
#include "arch/systolic/scalesim_cfg.h"
#include "fuzz/fuzz_input.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, std::size_t size) {
    static mlsim::fuzz::ScratchFile file("arch.cfg");
    const std::string& path = file.write(data, size);
    mlsim::fuzz::run_input([&] { (void)mlsim::arch::systolic::load_scalesim_cfg(path); });
    return 0;
}
