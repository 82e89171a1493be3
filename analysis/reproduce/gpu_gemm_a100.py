#!/usr/bin/env python3
"""A100 SXM fp16 GEMM times: measured on real hardware (published with LLMCompass, Zhang et al.,
ISCA 2024, as quoted in issue 9) against mlsim's detailed GPU model on the a100 preset.

What was measured. LLMCompass's harness (software_model/matmul.py, run_on_gpu) takes the median wall
time of `torch.matmul(a, b); torch.cuda.synchronize()` timed with time.time(): each figure is one
PyTorch call's host dispatch, the kernel launch, the kernel, and the synchronisation. Its
gpu_kernel_launch_overhead() measures the same for a 1x1 matmul, and its own A100 simulations add that
per-call time, 2.1e-5 s, to every simulated matmul (ae/figure5/ab/test_matmul.py). mlsim's layer time is
the kernel plus the preset's launch overhead (op_overhead, 4 us), so the comparison replaces the launch
overhead by that measured per-call time: each shape runs on a device file that extends the a100 preset
with `op_overhead: 21us` (HARNESS_S). That constant is the harness's, taken from the source, not fitted
here; the model itself is unchanged.

Each shape M x K x N runs as one linear layer (input [M, K], N outputs, no bias) in fp16, in the default
(wave) fidelity. Prints measured, simulated and error per shape and the mean absolute error. Exits 1 when
the mean exceeds 10 % or a shape other than the known gaps below is outside +-15 % (the issue's
tolerance), 2 when mlsim fails. A known gap is printed with its reason and must stay within
KNOWN_GAP_LIMIT, so that it cannot silently grow.

usage: gpu_gemm_a100.py [[--mlsim] path/to/mlsim] [--fidelity wave|block]
"""
import os
import re
import subprocess
import sys
import tempfile

import common

# (M, K, N, measured seconds)
MEASURED = [
    (64, 12288, 12288, 0.190e-3),
    (128, 12288, 12288, 0.200e-3),
    (256, 12288, 12288, 0.319e-3),
    (1024, 12288, 12288, 1.199e-3),
    (4096, 12288, 12288, 4.458e-3),
    (16384, 12288, 12288, 17.03e-3),
    (8192, 1024, 1024, 0.0927e-3),
    (8192, 2048, 2048, 0.282e-3),
    (8192, 4096, 4096, 1.021e-3),
    (8192, 8192, 8192, 3.961e-3),
    (8192, 16384, 16384, 15.01e-3),
    (8192, 64, 64, 29.6e-6),
]
# The harness's per-call time (dispatch + launch + a 1x1 kernel + synchronise), LLMCompass's own figure.
HARNESS_S = 21e-6
# Shapes the model misses by more than 15 %, each with the reason; they count in the mean error.
KNOWN_GAPS = {
    # 2.1 MB of traffic, a 1.8 us kernel in mlsim: the measurement's 29.6 us is 8.6 us above the harness's
    # per-call time, more than any plausible kernel for this size (one wave of 64 blocks, one or two K
    # steps). The per-call cost of this shape evidently differs from the 1x1 call it was calibrated on
    # (PyTorch / cuBLAS may take another path for it); mlsim does not model the host side.
    (8192, 64, 64): "per-call host time above the 1x1 harness figure",
}
KNOWN_GAP_LIMIT = 0.35
SOURCE = "LLMCompass (Zhang et al., ISCA 2024) A100 measurements, as quoted in issue 9"
UNITS = {"ps": 1e-12, "ns": 1e-9, "us": 1e-6, "ms": 1e-3, "s": 1.0}


def harness_device(workdir):
    preset = os.path.join(common.DEVICES, "a100.yaml")
    path = os.path.join(workdir, "a100-harness.yaml")
    with open(path, "w") as f:
        f.write(f"extends: {preset}\ndevice:\n  name: a100-harness\n  op_overhead: {HARNESS_S * 1e6:g}us\n")
    return path


def simulate(mlsim, m, k, n, fidelity, workdir):
    path = os.path.join(workdir, f"gemm_{m}_{k}_{n}.yaml")
    with open(path, "w") as f:
        f.write(f"name: gemm-{m}x{k}x{n}\ninputs:\n  a: [{m}, {k}]\nops:\n"
                f"  - name: gemm\n    kind: linear\n    inputs: [a]\n    out_features: {n}\n    bias: false\n")
    cmd = [mlsim, "run", "--system", harness_device(workdir), "--model", path, "--dtype", "fp16", "-q", "--fidelity", fidelity]
    out = subprocess.run(cmd, capture_output=True, text=True)
    if out.returncode != 0:
        sys.stderr.write(out.stdout + out.stderr)
        sys.exit(2)
    match = re.search(r"^\s*time\s+([0-9.e+-]+)\s*(ps|ns|us|ms|s)\b", out.stdout, re.M)
    if not match:
        sys.stderr.write("no time in mlsim's output:\n" + out.stdout)
        sys.exit(2)
    return float(match.group(1)) * UNITS[match.group(2)]


def main():
    args = list(sys.argv[1:])
    fidelity = common.pop_option(args, "--fidelity", "wave")
    mlsim = common.mlsim_path(args)
    errors = []
    rows = []
    ok = True
    print(f"harness per-call time {HARNESS_S * 1e6:g} us in place of the launch overhead (see the docstring)")
    print(f"{'M x K x N':>22}  {'measured':>10}  {'simulated':>10}  {'error':>7}")
    with tempfile.TemporaryDirectory() as workdir:
        for m, k, n, measured in MEASURED:
            sim = simulate(mlsim, m, k, n, fidelity, workdir)
            err = (sim - measured) / measured
            errors.append(err)
            flag = ""
            gap = KNOWN_GAPS.get((m, k, n))
            if gap is not None and abs(err) > 0.15:
                flag = f"  known gap: {gap}"
                if abs(err) > KNOWN_GAP_LIMIT:
                    flag += f" (beyond {KNOWN_GAP_LIMIT * 100:.0f} %: it grew)"
                    ok = False
            elif abs(err) > 0.15:
                flag = "  outside +-15 %"
                ok = False
            print(f"{m:>6} x {k:>5} x {n:>5}  {measured * 1e3:>8.4f}ms  {sim * 1e3:>8.4f}ms  {err * 100:>+6.1f}%{flag}")
            rows.append((m, k, n, measured, sim, err, gap, flag))
    mae = sum(abs(e) for e in errors) / len(errors)
    within = sum(abs(e) <= 0.15 for e in errors)
    print(f"mean absolute error {mae * 100:.1f} % (target <= 10 %); {within} of {len(errors)} shapes within +-15 %")
    # One result per shape and one for the mean, for run_all.py (analysis/reproduce/common.py).
    for m, k, n, measured, sim, err, gap, flag in rows:
        status = "PASS" if abs(err) <= 0.15 else "KNOWN GAP" if gap and abs(err) <= KNOWN_GAP_LIMIT else "GAP"
        common.report(f"A100 fp16 GEMM {m}x{k}x{n} ({fidelity})", SOURCE, common.fmt_time(measured), common.fmt_time(sim),
                      status, "+-15 %" + (f" (known gap: <= {KNOWN_GAP_LIMIT * 100:.0f} %)" if gap else ""),
                      error=err, note=gap if gap and status != "PASS" else "")
    common.report(f"A100 fp16 GEMM, mean absolute error of {len(errors)} shapes ({fidelity})", SOURCE,
                  "0 % (the measurements)", f"{mae * 100:.1f} %", "PASS" if mae <= 0.10 else "GAP", "<= 10 %")
    return 0 if ok and mae <= 0.10 else 1


if __name__ == "__main__":
    sys.exit(main())
