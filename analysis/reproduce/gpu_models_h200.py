#!/usr/bin/env python3
"""Whole-model inference measured on an H200 (this project's device machine) against mlsim's GPU model.

What was measured (analysis/reproduce/data/h200_models.json; bench/gpu/measure_models.py made it, and says
how): PyTorch eager forwards in bf16 with random weights of torchvision's ResNet-50 (channels-last, batch 1 /
8 / 64 / 256), transformers' BERT-base (seq 128, batch 1 / 8 / 32 / 128) and GPT-2 small and XL with the LM
head (prefill of 1024 tokens), and one Llama-2-7B decode step over a 1024-token KV cache (batch 1 / 8 / 32,
plain PyTorch). The compared figure is the GPU time of one eager forward's kernels, summed by torch.profiler:
what the GPU did, without the host's dispatch (18-23 us a kernel there, which makes small eager forwards
host-bound) and without the gaps between kernels.

How mlsim is run. The zoo model of the same name on configs/devices/h200.yaml, `--fusion none` (eager
PyTorch runs each op as its own kernels: no epilogue fusion, batch-norm not folded), default (wave)
fidelity; its figure is the layers' time less the launch overheads it adds (`launch overhead` in its
summary), so the GPU time of its kernels. Where the forward was also profiled by kernel name, its time is
split by kind (GEMMs and convolutions, attention, other, by the kernels' names; mlsim's by its layers' ops)
and the first two are compared too: they test the model's physics, where "other" (element-wise ops, norms,
pooling, copies) is mostly the kernels PyTorch adds. Nothing is fitted here.

What to expect. mlsim lowers each op to the kernels an ideal implementation needs; PyTorch launches more
(ResNet-50: 280-282 kernels against mlsim's 174: memory-format copies, batch-norm transforms; the Llama step
written here: 1,323-1,355 against 515: RMSNorm, RoPE and SwiGLU as several element-wise kernels each), and
on Hopper every kernel lasts a few microseconds however little it does. So small batches, where those
kernels are most of the time, come out fast in mlsim; large ones test the model's GEMMs, attention and
streaming. Tolerance +-15 % a case; GAPs are reported, not hidden. Exits 1 when a case is a GAP, 2 when
mlsim fails.

usage: gpu_models_h200.py [[--mlsim] path/to/mlsim] [--fidelity wave|block] [--data FILE]
"""
import os
import re
import sqlite3
import statistics
import subprocess
import sys
import tempfile

import common

DATA = os.path.join(common.DATA, "h200_models.json")
PRESET = os.path.join(common.DEVICES, "h200.yaml")
SOURCE = "measured on an H200 SXM (device machine, 2026-12-04; analysis/reproduce/data/h200_models.json)"
TOL = 0.15
UNITS = {"ps": 1e-12, "ns": 1e-9, "us": 1e-6, "µs": 1e-6, "ms": 1e-3, "s": 1.0}
# The zoo model mlsim runs for each measured model.
ZOO = {"resnet50": "resnet50", "bert-base": "bert-base", "gpt2-small-prefill": "gpt2-small-prefill",
       "gpt2-xl-prefill": "gpt2-xl-prefill", "llama2-7b-decode": "llama2-7b-decode"}


def quantity(text, pattern):
    m = re.search(pattern + r"\s+([0-9.e+-]+)\s*(ps|ns|us|µs|ms|s)\b", text, re.M)
    return float(m.group(1)) * UNITS[m.group(2)] if m else None


# Kernel names (CUDA, cuBLAS, cuDNN, PyTorch) by what they do, first match wins; and mlsim's ops the same way.
# GEMMs and convolutions are one kind: cuDNN runs 1x1 convolutions as cuBLAS GEMM kernels (nvjet).
KERNEL_KINDS = [("attention", ("sdpa", "flash", "fmha", "attention")),
                ("gemm+conv", ("fprop", "convolve", "conv2d", "implicit_gemm", "nvjet", "gemm", "splitkreduce",
                               "cublas", "cutlass"))]
OP_KINDS = {"linear": "gemm+conv", "matmul": "gemm+conv", "conv1d": "gemm+conv", "conv2d": "gemm+conv",
            "conv3d": "gemm+conv", "depthwise_conv2d": "gemm+conv", "attention_prefill": "attention",
            "attention_decode": "attention"}


def kernel_kind(name):
    low = name.lower()
    for kind, keys in KERNEL_KINDS:
        if any(k in low for k in keys):
            return kind
    return "other"


def simulate(mlsim, case, fidelity, db):
    cmd = [mlsim, "run", "--system", PRESET, "--model", ZOO[case["model"]], "--batch", str(case["batch"]),
           "--dtype", "bf16", "--fusion", "none", "--fidelity", fidelity, "--db", db]
    if case.get("seq"):
        cmd += ["--seq", str(case["seq"])]
    out = subprocess.run(cmd, capture_output=True, text=True)
    if out.returncode != 0:
        sys.stderr.write(" ".join(cmd) + "\n" + out.stdout + out.stderr)
        sys.exit(2)
    total = quantity(out.stdout, r"^\s*time")
    launch = quantity(out.stdout, r"launch overhead")
    kernels = re.search(r"^\s*kernels\s+(\d+)", out.stdout, re.M)
    if total is None or launch is None or not kernels:
        sys.stderr.write("no time, launch overhead or kernel count in mlsim's output:\n" + out.stdout)
        sys.exit(2)
    # The GPU time of each kind of op (the layer's time less its launch overhead), from the results file.
    by_kind = {}
    with sqlite3.connect(db) as conn:
        run = conn.execute("SELECT max(run_id) FROM runs").fetchone()[0]
        for op, t in conn.execute("SELECT op, sum(time_s - overhead_s) FROM layers WHERE run_id = ? GROUP BY op",
                                  (run,)):
            kind = OP_KINDS.get(op, "other")
            by_kind[kind] = by_kind.get(kind, 0.0) + t
    return total - launch, int(kernels.group(1)), by_kind


def main():
    mlsim, fidelity, data = common.measured_args(DATA)
    rows = []
    breakdown = []
    with tempfile.TemporaryDirectory() as workdir:
        for n, case in enumerate(data["models"]):
            measured = statistics.median(case["kernel_time_s"])
            kernels = case["kernels"][0]
            sim, sim_kernels, sim_kinds = simulate(mlsim, case, fidelity, os.path.join(workdir, f"{n}.db"))
            err = sim / measured - 1
            label = f"{case['model']} b{case['batch']}" + (f" seq {case['seq']}" if case.get("seq") else "")
            rows.append((label, measured, kernels, sim, sim_kernels, err))
            if case.get("kernels_by_name"):
                kinds = {}
                for name, count, t in case["kernels_by_name"]:
                    kinds[kernel_kind(name)] = kinds.get(kernel_kind(name), 0.0) + t
                breakdown.append((label, kinds, sim_kinds))
    print(f"{'case':>34}  {'measured':>10}  {'kernels':>7}  {'mlsim':>10}  {'kernels':>7}  {'error':>7}")
    for label, measured, kernels, sim, sim_kernels, err in rows:
        flag = "" if abs(err) <= TOL else "  GAP"
        print(f"{label:>34}  {common.fmt_time(measured):>10}  {kernels:>7}  {common.fmt_time(sim):>10}  "
              f"{sim_kernels:>7}  {err * 100:>+6.1f}%{flag}")
    ok = True
    for label, measured, kernels, sim, sim_kernels, err in rows:
        if common.report(f"H200 {label}, GPU time of an eager forward's kernels (bf16, {fidelity})", SOURCE,
                         common.fmt_time(measured), common.fmt_time(sim), "PASS" if abs(err) <= TOL else "GAP",
                         f"+-{TOL * 100:.0f} %", error=err, note=f"{kernels} kernels measured, {sim_kernels} in mlsim"):
            ok = False
    # Where the time goes, by kind of kernel: the GEMMs, convolutions and attention test the model's physics;
    # "other" (element-wise, norms, pooling, copies) is mostly PyTorch's extra kernels.
    print("\nGPU time by kind of kernel (measured / mlsim), where the forward was profiled by kernel name:")
    for label, kinds, sim_kinds in breakdown:
        parts = []
        for kind in ("gemm+conv", "attention", "other"):
            m, x = kinds.get(kind, 0.0), sim_kinds.get(kind, 0.0)
            if m or x:
                parts.append(f"{kind} {common.fmt_time(m)} / {common.fmt_time(x)}")
        print(f"{label:>34}  " + ", ".join(parts))
    for label, kinds, sim_kinds in breakdown:
        for kind in ("gemm+conv", "attention"):
            m, x = kinds.get(kind, 0.0), sim_kinds.get(kind, 0.0)
            if m > 0.05 * sum(kinds.values()) and x > 0:
                err = x / m - 1
                if common.report(f"H200 {label}, GPU time of its {kind} kernels (bf16, {fidelity})", SOURCE,
                                 common.fmt_time(m), common.fmt_time(x), "PASS" if abs(err) <= TOL else "GAP",
                                 f"+-{TOL * 100:.0f} %", error=err):
                    ok = False
    mae = sum(abs(r[5]) for r in rows) / len(rows)
    print(f"{len(rows)} cases, mean absolute error {mae * 100:.1f} %, "
          f"{sum(abs(r[5]) <= TOL for r in rows)} within +-{TOL * 100:.0f} %")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
