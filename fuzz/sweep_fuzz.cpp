// libFuzzer target: a sweep file (experiment/sweep.cpp): loaded and checked, its first and last points
// built, and, for a sweep small enough to check quickly, every point resolved as `mlsim sweep --dry-run`
// does. Nothing is simulated.
#include "experiment/sweep.h"
#include "fuzz/fuzz_input.h"

namespace {
// check_points() loads each system once and applies every point's overrides; a few dozen points keep an
// input's run well under a second.
constexpr std::size_t k_max_checked_points = 64;
}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, std::size_t size) {
    static mlsim::fuzz::ScratchFile file("sweep.yaml");
    const std::string& path = file.write(data, size);
    mlsim::fuzz::run_input([&] {
        using namespace mlsim;
        const exp::Sweep sweep = exp::load_sweep(path);
        const std::size_t n = sweep.point_count();
        (void)exp::make_point(sweep, 0);
        (void)exp::make_point(sweep, n - 1);
        if (n <= k_max_checked_points) (void)exp::check_points(sweep);
    });
    return 0;
}
