#!/usr/bin/env python3
"""Measures kernels on a real NVIDIA GPU with PyTorch, for analysis/reproduce/gpu_kernels_measured.py.

Runs where a GPU and PyTorch are (this project's device machine lends an H200 to some sessions); mlsim never
needs it. Writes one JSON file (default: $OUT/gpu_kernels.json, else ./gpu_kernels.json) and prints a table.

    python3 bench/gpu/measure_kernels.py [--out FILE] [--graph] [--misaligned] [--quick]

What it measures, each as the median of several timed batches (CUDA events around `reps` back-to-back
launches, after a warm-up; a batch lasts >= ~20 ms):
  gemm      F.linear(x [M, K], w [N, K]) without bias (mlsim's `linear` op), bf16 / fp16 / fp32 (CUDA
            cores: TF32 off) / tf32, for the LLMCompass A100 shapes, LLM decode and prefill shapes and
            squares. Operands rotate through enough copies that the set exceeds the L2 twice over, so each
            call reads its operands from HBM, as mlsim assumes for a layer.
  copy      dst.copy_(src) of 8 MiB to 2 GiB (bf16): bytes read + written per second.
  eltwise   add (2 in, 1 out), relu, gelu on 256 Mi-element bf16 tensors; layernorm and softmax over
            [rows, 4096] and [rows, 2048] bf16.
  conv      ResNet-50's distinct conv layers, batch 64, bf16, channels_last, cuDNN autotuned.
  power     nvidia-smi's power.draw and SM clock every 100 ms during ~4 s of an 8192^3 bf16 GEMM loop,
            and at idle before it.
The file also records the GPU, driver, PyTorch/CUDA/cuDNN versions, SM count, L2 size and the clocks.
"""
import argparse
import json
import os
import statistics
import subprocess
import sys
import time
import traceback

import torch
import torch.nn.functional as F

RESULTS = {"meta": {}, "gemm": [], "copy": [], "eltwise": [], "conv": [], "power": {}, "errors": []}
L2_BYTES = 0


def log(*a):
    print(*a, flush=True)


def time_batches(fn, batches=5, min_batch_s=0.02, warmup=3):
    """Median seconds per call of fn() over `batches` batches of back-to-back calls (CUDA events)."""
    for _ in range(warmup):
        fn()
    torch.cuda.synchronize()
    # Size a batch so that it lasts at least min_batch_s.
    start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    reps = 1
    while True:
        start.record()
        for _ in range(reps):
            fn()
        end.record()
        end.synchronize()
        t = start.elapsed_time(end) * 1e-3
        if t >= min_batch_s or reps >= 1 << 14:
            break
        reps = min(1 << 14, max(reps * 2, int(reps * min_batch_s / max(t, 1e-7)) + 1))
    per = []
    for _ in range(batches):
        start.record()
        for _ in range(reps):
            fn()
        end.record()
        end.synchronize()
        per.append(start.elapsed_time(end) * 1e-3 / reps)
    return statistics.median(per), reps, per


GRAPH = False


def time_case(step, c):
    """Seconds per call of step(j), j cycling over c operand sets: eager back-to-back calls, or (GRAPH) the
    replay of one CUDA graph holding the c calls, which leaves out the host's dispatch of each call."""
    if not GRAPH:
        i = [0]

        def fn():
            step(i[0] % c)
            i[0] += 1

        return time_batches(fn)
    s = torch.cuda.Stream()
    s.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(s):
        for j in range(min(c, 3)):
            step(j)
    torch.cuda.current_stream().wait_stream(s)
    torch.cuda.synchronize()
    g = torch.cuda.CUDAGraph()
    with torch.cuda.graph(g):
        for j in range(c):
            step(j)
    t, reps, per = time_batches(g.replay)
    return t / c, reps * c, [x / c for x in per]


def copies_for(bytes_per_set):
    """How many operand sets to rotate through so that they exceed twice the L2."""
    return max(1, min(4096, int(2 * L2_BYTES // max(bytes_per_set, 1)) + 1))


def gemm(m, k, n, dtype_name):
    dtype = {"bf16": torch.bfloat16, "fp16": torch.float16, "fp32": torch.float32, "tf32": torch.float32}[dtype_name]
    torch.backends.cuda.matmul.allow_tf32 = dtype_name == "tf32"
    esize = torch.tensor([], dtype=dtype).element_size()
    set_bytes = (m * k + n * k + m * n) * esize
    c = copies_for(set_bytes)
    xs = [torch.randn(m, k, device="cuda", dtype=dtype) for _ in range(c)]
    ws = [torch.randn(n, k, device="cuda", dtype=dtype) for _ in range(c)]
    t, reps, per = time_case(lambda j: F.linear(xs[j], ws[j]), c)
    flops = 2.0 * m * k * n
    row = {"dtype": dtype_name, "m": m, "k": k, "n": n, "seconds": t, "tflops": flops / t / 1e12,
           "reps": reps, "operand_sets": c, "batches": per}
    RESULTS["gemm"].append(row)
    log(f"gemm {dtype_name:>4} {m:>6} x {k:>6} x {n:>6}: {t * 1e6:10.2f} us  {flops / t / 1e12:7.1f} TFLOP/s  (sets {c})")
    del xs, ws
    torch.backends.cuda.matmul.allow_tf32 = False


def copy(nbytes):
    n = nbytes // 2
    c = copies_for(2 * nbytes)
    srcs = [torch.empty(n, device="cuda", dtype=torch.bfloat16).normal_() for _ in range(c)]
    dsts = [torch.empty(n, device="cuda", dtype=torch.bfloat16) for _ in range(c)]
    t, reps, per = time_case(lambda j: dsts[j].copy_(srcs[j]), c)
    row = {"bytes": nbytes, "seconds": t, "read_write_GBps": 2 * nbytes / t / 1e9, "reps": reps, "batches": per}
    RESULTS["copy"].append(row)
    log(f"copy {nbytes / 2**20:8.0f} MiB: {t * 1e6:10.2f} us  {2 * nbytes / t / 1e9:8.1f} GB/s read+written")
    del srcs, dsts


def eltwise():
    n = 256 * 2**20
    a = torch.randn(n, device="cuda", dtype=torch.bfloat16)
    b = torch.randn(n, device="cuda", dtype=torch.bfloat16)
    out = torch.empty_like(a)
    cases = [
        ("add", lambda: torch.add(a, b, out=out), 3 * 2 * n, [n]),
        ("relu", lambda: torch.relu(a), 2 * 2 * n, [n]),
        ("gelu", lambda: F.gelu(a), 2 * 2 * n, [n]),
    ]
    for name, fn, nbytes, shape in cases:
        t, reps, per = time_case(lambda j: fn(), 1)
        RESULTS["eltwise"].append({"op": name, "shape": shape, "bytes": nbytes, "seconds": t,
                                   "GBps": nbytes / t / 1e9, "reps": reps, "batches": per})
        log(f"{name:>9} {shape}: {t * 1e6:10.2f} us  {nbytes / t / 1e9:8.1f} GB/s")
    del a, b, out
    for rows, cols in ((65536, 4096), (131072, 2048)):
        x = torch.randn(rows, cols, device="cuda", dtype=torch.bfloat16)
        w = torch.ones(cols, device="cuda", dtype=torch.bfloat16)
        bias = torch.zeros(cols, device="cuda", dtype=torch.bfloat16)
        for name, fn in (("layernorm", lambda: F.layer_norm(x, (cols,), w, bias)),
                         ("softmax", lambda: torch.softmax(x, dim=-1))):
            nbytes = 2 * 2 * rows * cols
            t, reps, per = time_case(lambda j: fn(), 1)
            RESULTS["eltwise"].append({"op": name, "shape": [rows, cols], "bytes": nbytes, "seconds": t,
                                       "GBps": nbytes / t / 1e9, "reps": reps, "batches": per})
            log(f"{name:>9} [{rows}, {cols}]: {t * 1e6:10.2f} us  {nbytes / t / 1e9:8.1f} GB/s")
        del x, w, bias


# ResNet-50's distinct conv layers (torchvision's v1.5: stride on the 3x3): (name, in_ch, out_ch, kernel,
# stride, padding, input H=W).
RESNET50_CONVS = [
    ("conv1", 3, 64, 7, 2, 3, 224),
    ("l1.conv1x1_64_64", 64, 64, 1, 1, 0, 56),
    ("l1.conv3x3_64", 64, 64, 3, 1, 1, 56),
    ("l1.conv1x1_64_256", 64, 256, 1, 1, 0, 56),
    ("l1.conv1x1_256_64", 256, 64, 1, 1, 0, 56),
    ("l2.conv1x1_256_128", 256, 128, 1, 1, 0, 56),
    ("l2.conv3x3_128_s2", 128, 128, 3, 2, 1, 56),
    ("l2.conv3x3_128", 128, 128, 3, 1, 1, 28),
    ("l2.conv1x1_128_512", 128, 512, 1, 1, 0, 28),
    ("l2.conv1x1_512_128", 512, 128, 1, 1, 0, 28),
    ("l3.conv3x3_256", 256, 256, 3, 1, 1, 14),
    ("l3.conv1x1_256_1024", 256, 1024, 1, 1, 0, 14),
    ("l3.conv1x1_1024_256", 1024, 256, 1, 1, 0, 14),
    ("l4.conv3x3_512", 512, 512, 3, 1, 1, 7),
    ("l4.conv1x1_512_2048", 512, 2048, 1, 1, 0, 7),
    ("l4.conv1x1_2048_512", 2048, 512, 1, 1, 0, 7),
]


def conv(name, cin, cout, kernel, stride, pad, hw, batch=64):
    torch.backends.cudnn.benchmark = True
    ho = (hw + 2 * pad - kernel) // stride + 1
    c = copies_for(2 * (batch * cin * hw * hw + cout * cin * kernel * kernel + batch * cout * ho * ho))
    xs = [torch.randn(batch, cin, hw, hw, device="cuda", dtype=torch.bfloat16).to(memory_format=torch.channels_last)
          for _ in range(c)]
    ws = [torch.randn(cout, cin, kernel, kernel, device="cuda", dtype=torch.bfloat16).to(
        memory_format=torch.channels_last) for _ in range(c)]
    t, reps, per = time_case(lambda j: F.conv2d(xs[j], ws[j], stride=stride, padding=pad), c)
    macs = batch * cout * ho * ho * cin * kernel * kernel
    RESULTS["conv"].append({"name": name, "batch": batch, "in_channels": cin, "out_channels": cout, "kernel": kernel,
                            "stride": stride, "padding": pad, "hw": hw, "operand_sets": c, "seconds": t, "tflops": 2 * macs / t / 1e12,
                            "reps": reps, "batches": per})
    log(f"conv {name:>22}: {t * 1e6:10.2f} us  {2 * macs / t / 1e12:7.1f} TFLOP/s")


def smi(query):
    out = subprocess.run(["nvidia-smi", f"--query-gpu={query}", "--format=csv,noheader,nounits"],
                         capture_output=True, text=True, timeout=30)
    return out.stdout.strip()


def power():
    fields = "power.draw,clocks.sm,clocks.mem,temperature.gpu,power.limit"
    RESULTS["power"]["idle"] = smi(fields)
    m = k = n = 8192
    x = torch.randn(m, k, device="cuda", dtype=torch.bfloat16)
    w = torch.randn(n, k, device="cuda", dtype=torch.bfloat16)
    for _ in range(20):
        F.linear(x, w)
    torch.cuda.synchronize()
    proc = subprocess.Popen(["nvidia-smi", f"--query-gpu={fields}", "--format=csv,noheader,nounits", "-lms", "100"],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    t0 = time.time()
    calls = 0
    start.record()
    while time.time() - t0 < 4.0:
        for _ in range(50):
            F.linear(x, w)
        calls += 50
        torch.cuda.synchronize()
    end.record()
    end.synchronize()
    proc.terminate()
    samples = proc.communicate(timeout=30)[0].strip().splitlines()
    secs = start.elapsed_time(end) * 1e-3
    RESULTS["power"]["gemm_bf16_8192"] = {"calls": calls, "seconds": secs, "tflops": 2.0 * m * k * n * calls / secs / 1e12,
                                          "samples": samples, "fields": fields}
    draws = []
    clocks = []
    for s in samples:
        parts = [p.strip() for p in s.split(",")]
        try:
            draws.append(float(parts[0]))
            clocks.append(float(parts[1]))
        except (ValueError, IndexError):
            pass
    # Skip the first second's samples (ramp-up).
    steady = draws[10:] if len(draws) > 15 else draws
    steady_clk = clocks[10:] if len(clocks) > 15 else clocks
    if steady:
        RESULTS["power"]["gemm_bf16_8192"]["median_power_w"] = statistics.median(steady)
        RESULTS["power"]["gemm_bf16_8192"]["median_sm_clock_mhz"] = statistics.median(steady_clk)
    log(f"power: idle {RESULTS['power']['idle']}; 8192^3 bf16 loop {RESULTS['power']['gemm_bf16_8192']['tflops']:.1f} "
        f"TFLOP/s, median {statistics.median(steady) if steady else float('nan'):.0f} W at "
        f"{statistics.median(steady_clk) if steady_clk else float('nan'):.0f} MHz ({len(draws)} samples)")


OUT_PATH = None


def save():
    if OUT_PATH:
        with open(OUT_PATH, "w") as f:
            json.dump(RESULTS, f, indent=1)


def section(name, fn):
    try:
        fn()
        save()
    except Exception as e:  # keep what the other sections measure
        RESULTS["errors"].append(f"{name}: {e!r}\n{traceback.format_exc()}")
        log(f"{name}: FAILED {e!r}")
        torch.cuda.empty_cache()


def main():
    global L2_BYTES
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default=os.path.join(os.environ.get("OUT", "."), "gpu_kernels.json"))
    ap.add_argument("--quick", action="store_true", help="a few cases of each kind (a check of the script)")
    ap.add_argument("--misaligned", action="store_true",
                    help="only GEMMs whose K or N is not a multiple of 8 elements, beside aligned neighbours")
    ap.add_argument("--graph", action="store_true",
                    help="time CUDA-graph replays (kernels without the host's per-call dispatch); no power run")
    args = ap.parse_args()
    global GRAPH
    GRAPH = args.graph
    time.sleep(2)
    RESULTS["power"]["idle_at_start"] = smi("power.draw,clocks.sm,clocks.mem,temperature.gpu,power.limit")
    global OUT_PATH
    OUT_PATH = args.out
    p = torch.cuda.get_device_properties(0)
    L2_BYTES = getattr(p, "L2_cache_size", 50 * 2**20)
    RESULTS["meta"] = {
        "gpu": p.name, "sms": p.multi_processor_count, "l2_bytes": L2_BYTES, "memory_bytes": p.total_memory,
        "torch": torch.__version__, "cuda": torch.version.cuda, "cudnn": torch.backends.cudnn.version(),
        "driver_clocks": smi("driver_version,clocks.max.sm,clocks.max.mem,clocks.sm,power.limit,pstate"),
        "date_utc": time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime()),
        "timing": ("CUDA-graph replays of the calls" if GRAPH else "CUDA events around back-to-back calls")
        + "; median of 5 batches of >= 20 ms",
    }
    log(json.dumps(RESULTS["meta"]))
    t_start = time.time()

    gemms = []
    # LLMCompass's A100 shapes (analysis/reproduce/gpu_gemm_a100.py), fp16 and bf16.
    llmc = [(64, 12288, 12288), (128, 12288, 12288), (256, 12288, 12288), (1024, 12288, 12288),
            (4096, 12288, 12288), (16384, 12288, 12288), (8192, 1024, 1024), (8192, 2048, 2048),
            (8192, 4096, 4096), (8192, 8192, 8192), (8192, 16384, 16384), (8192, 64, 64)]
    gemms += [(m, k, n, "fp16") for m, k, n in llmc]
    gemms += [(m, k, n, "bf16") for m, k, n in llmc]
    # LLM decode / prefill shapes (Llama-2-7B: hidden 4096, FFN 11008, vocab 32000), bf16.
    for m in (1, 8, 32, 128, 512, 2048):
        gemms += [(m, 4096, 4096, "bf16"), (m, 4096, 11008, "bf16"), (m, 11008, 4096, "bf16")]
    gemms += [(1, 4096, 32000, "bf16"), (32, 4096, 32000, "bf16"), (1, 64, 64, "bf16")]
    # Squares across sizes, bf16; fp32 (CUDA cores) and tf32 on a few.
    gemms += [(s, s, s, "bf16") for s in (256, 512, 1024, 2048, 4096, 16384)]
    gemms += [(s, s, s, "fp32") for s in (1024, 4096, 8192)]
    gemms += [(s, s, s, "tf32") for s in (1024, 4096, 8192)]
    if args.quick:
        gemms = gemms[:2] + [(4096, 4096, 4096, "fp32")]
    if args.misaligned:
        # GPT-2's LM head (vocab 50257, and nanoGPT's padded 50304), and 4096^3 with one dimension less one.
        gemms = []
        for d in ("fp16", "bf16"):
            gemms += [(1024, 768, 50257, d), (1024, 768, 50304, d), (1024, 1600, 50257, d), (1024, 1600, 50304, d),
                      (4096, 4096, 4096, d), (4096, 4095, 4096, d), (4096, 4096, 4095, d), (4095, 4096, 4096, d),
                      (4096, 4097, 4096, d), (4096, 4096, 4097, d)]
    for m, k, n, d in gemms:
        section(f"gemm {d} {m}x{k}x{n}", lambda: gemm(m, k, n, d))
        torch.cuda.empty_cache()
    if args.misaligned:
        RESULTS["meta"]["seconds"] = time.time() - t_start
        save()
        log(f"wrote {args.out} ({len(RESULTS['gemm'])} GEMMs; {len(RESULTS['errors'])} errors)")
        return 0
    sizes = [8, 64, 256, 1024, 2048] if not args.quick else [64]
    for mib in sizes:
        section(f"copy {mib} MiB", lambda: copy(mib * 2**20))
        torch.cuda.empty_cache()
    section("eltwise", eltwise)
    torch.cuda.empty_cache()
    for c in (RESNET50_CONVS if not args.quick else RESNET50_CONVS[:2]):
        section(f"conv {c[0]}", lambda: conv(*c))
        torch.cuda.empty_cache()
    if not GRAPH:
        section("power", power)
    RESULTS["meta"]["seconds"] = time.time() - t_start
    save()
    log(f"wrote {args.out} ({len(RESULTS['gemm'])} GEMMs, {len(RESULTS['copy'])} copies, "
        f"{len(RESULTS['eltwise'])} elementwise, {len(RESULTS['conv'])} convs; {len(RESULTS['errors'])} errors) "
        f"in {RESULTS['meta']['seconds']:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
