// `mlsim run`, `validate`, `list` and `demo` as a user runs them: options, help and exit statuses.
#include <catch2/catch.hpp>
#include <string>

#include "tests/cli/run_mlsim.h"

namespace {

using mlsim::test::contains;
using mlsim::test::Output;
using mlsim::test::run_mlsim;

}  // namespace

TEST_CASE("mlsim run --dtype int16 runs on the TPU v1, which declares an int16 peak", "[run]") {
    const Output o = run_mlsim("run --system tpu-v1 --model mlp3 --dtype int16 --quiet");
    CHECK(o.status == 0);
    CHECK(contains(o.text, "mlp3 on tpu-v1 (5 layers, batch 1, int16, inference)"));
    CHECK(contains(o.text, "of peak 22.9 TFLOP/s"));
}

TEST_CASE("mlsim run --help lists every data type", "[run]") {
    const Output o = run_mlsim("run --help");
    CHECK(o.status == 0);
    CHECK(contains(o.text, "fp32 tf32 bf16 fp16 fp8 int16 int8 int4"));
}
