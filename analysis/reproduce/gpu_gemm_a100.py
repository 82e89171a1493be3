#!/usr/bin/env python3
"""A100 SXM fp16 GEMM times: measured on real hardware (published with LLMCompass, Zhang et al.,
ISCA 2024, as quoted in issue 9) against mlsim's detailed GPU model on the a100 preset.

Each shape M x K x N runs as one linear layer (input [M, K], N outputs, no bias) in fp16, in the default
(wave) fidelity, with the preset's launch overhead. Prints measured, simulated and error per shape, the
mean absolute error, and exits 1 when a shape is outside +-15 % or the mean exceeds 10 % (the issue's
tolerance), 2 when mlsim fails.

usage: gpu_gemm_a100.py [path/to/mlsim] [--fidelity wave|block] [--ctest]
--ctest: exit 77 instead of 1 on a miss, which ctest reports as "Skipped" (not passed) with this table in
its log, so that a known accuracy gap stays visible without failing the build.
"""
import os
import re
import subprocess
import sys
import tempfile

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
UNITS = {"ps": 1e-12, "ns": 1e-9, "us": 1e-6, "ms": 1e-3, "s": 1.0}


def simulate(mlsim, m, k, n, fidelity, workdir):
    path = os.path.join(workdir, f"gemm_{m}_{k}_{n}.yaml")
    with open(path, "w") as f:
        f.write(f"name: gemm-{m}x{k}x{n}\ninputs:\n  a: [{m}, {k}]\nops:\n"
                f"  - name: gemm\n    kind: linear\n    inputs: [a]\n    out_features: {n}\n    bias: false\n")
    cmd = [mlsim, "run", "--system", "a100", "--model", path, "--dtype", "fp16", "-q", "--fidelity", fidelity]
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
    args = [a for a in sys.argv[1:]]
    miss_code = 1
    if "--ctest" in args:
        args.remove("--ctest")
        miss_code = 77
    fidelity = "wave"
    if "--fidelity" in args:
        i = args.index("--fidelity")
        fidelity = args[i + 1]
        del args[i:i + 2]
    here = os.path.dirname(os.path.abspath(__file__))
    mlsim = args[0] if args else os.path.join(here, "..", "..", "build", "mlsim")
    errors = []
    print(f"{'M x K x N':>22}  {'measured':>10}  {'simulated':>10}  {'error':>7}")
    with tempfile.TemporaryDirectory() as workdir:
        for m, k, n, measured in MEASURED:
            sim = simulate(mlsim, m, k, n, fidelity, workdir)
            err = (sim - measured) / measured
            errors.append(err)
            flag = "" if abs(err) <= 0.15 else "  outside +-15 %"
            print(f"{m:>6} x {k:>5} x {n:>5}  {measured * 1e3:>8.4f}ms  {sim * 1e3:>8.4f}ms  {err * 100:>+6.1f}%{flag}")
    mae = sum(abs(e) for e in errors) / len(errors)
    worst = max(abs(e) for e in errors)
    print(f"mean absolute error {mae * 100:.1f} % (target <= 10 %), worst {worst * 100:.1f} % (target <= 15 %)")
    return 0 if mae <= 0.10 and worst <= 0.15 else miss_code


if __name__ == "__main__":
    sys.exit(main())
