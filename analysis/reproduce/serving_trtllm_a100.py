#!/usr/bin/env python3
"""Llama-2-7B serving on one A100 SXM 80GB (fp16): NVIDIA's published TensorRT-LLM figures against
`mlsim serve` on the a100 preset (the detailed GPU model).

Source: NVIDIA TensorRT-LLM, docs/source/performance.md (github.com/NVIDIA/TensorRT-LLM, the release
0.6.x performance page): "A100 GPUs (FP16)" tables. The throughput rows ("data updated for v0.6.1") are
gptSessionBenchmark runs: a static batch of B requests with fixed input and output lengths, output
tokens/s over the whole run; the first-token rows (v0.5) are batch 1 with one output token. The page
states the Llama rows are Llama-2-7B and Llama-2-70B ("LLaMA 7B", "LLaMA 70B"). The 70B throughput rows
are left out: the A100 table's header says "out tok/s" while the H100 table's says "out tok/s/GPU", so
whether they are per GPU or per group is ambiguous.

How mlsim runs each case: B requests arrive at t = 0 (--rate 0), --max-batch B, and --max-tokens B x
input so that all prompts prefill in one iteration as the static batch does; then decode steps of the
whole batch. Nothing here is fitted: the device preset and the serving model are used as they are.

Tolerance: +-25 % (a serving stack's framework overheads, kernel choices and the v0.5/v0.6 software
differ from the model's kernels; the issue asks for the gaps to be reported, not hidden). A case outside
is printed as GAP with its reason; the script exits 1 when a case outside the tolerance is not a listed
known gap or a known gap grows past KNOWN_GAP_LIMIT, 2 when mlsim fails.

usage: serving_trtllm_a100.py [--mlsim path/to/mlsim]
"""
import os
import re
import sqlite3
import subprocess
import sys
import tempfile

import common

SOURCE = "NVIDIA TensorRT-LLM docs/source/performance.md, A100 GPUs (FP16), Llama-2-7B TP 1, Llama-2-70B TP 4"
TOL = 0.25
# (label, batch, input, output, metric, published)
CASES = [
    ("throughput B=384 128/128", 384, 128, 128, "tok_s", 5586.0),
    ("throughput B=60 128/2048", 60, 128, 2048, "tok_s", 1928.0),
    ("throughput B=52 2048/128", 52, 2048, 128, "tok_s", 591.0),
    ("first token B=1 in 128", 1, 128, 1, "ttft_ms", 16.0),
    ("first token B=1 in 2048", 1, 2048, 1, "ttft_ms", 133.0),
    # Llama-2-70B, TP 4 (mlsim: the first 4 GPUs of dgx-a100-node, its all-reduces from the network model).
    ("70B TP4 first token in 128", 1, 128, 1, "ttft_ms", 47.0, "llama2-70b", 4),
    ("70B TP4 first token in 2048", 1, 2048, 1, "ttft_ms", 377.0, "llama2-70b", 4),
]
KNOWN_GAPS = {
    # mlsim's prefill of 128 tokens is 9.7 ms: 32 layers x ~11 kernels at 4 us launch each (1.4 ms) and
    # the 13.5 GB of weights streamed once (6.6 ms at 2.04 TB/s): a memory-bound pass. The published
    # 16 ms (v0.5, batch 1) is 6 ms above that; what the runtime spends it on (request setup, sampling,
    # host synchronisation) is not stated by the source and not simulated by mlsim (est.).
    "first token B=1 in 128": "host/runtime time per request not modelled",
    # The same pattern on four GPUs: 33.2 ms simulated (2026-12-05) against 47 ms published.
    "70B TP4 first token in 128": "host/runtime time per request not modelled",
}
KNOWN_GAP_LIMIT = 0.45


def run(mlsim, batch, inp, out, model="llama2-7b", tp=1):
    """The run's mean TTFT (ms) and output tokens/s, read at full precision from the results database it is
    recorded in (the terminal rounds to three digits)."""
    system = "a100" if tp == 1 else "dgx-a100-node"
    with tempfile.TemporaryDirectory() as tmp:
        db = os.path.join(tmp, "serve.db")
        cmd = [mlsim, "serve", "--system", system, "--model", model, "--tp", str(tp), "--dtype", "fp16", "--rate",
               "0", "--requests", str(batch), "--max-batch", str(batch), "--max-tokens", str(batch * inp),
               "--prompt", str(inp), "--output", str(out), "--db", db]
        p = subprocess.run(cmd, capture_output=True, text=True)
        if p.returncode != 0:
            sys.stderr.write(p.stdout + p.stderr)
            sys.exit(2)
        with sqlite3.connect(db) as con:
            got = dict(con.execute("SELECT name, value FROM serving_metrics WHERE name IN "
                                   "('throughput_tokens_per_s', 'ttft_mean_s')").fetchall())
    return {"tok_s": got["throughput_tokens_per_s"], "ttft_ms": got["ttft_mean_s"] * 1e3}


def main():
    mlsim = "mlsim"
    args = sys.argv[1:]
    if "--mlsim" in args:
        mlsim = args[args.index("--mlsim") + 1]
    elif args:
        mlsim = args[0]
    print(f"source: {SOURCE}")
    print(f"{'case':28} {'metric':8} {'published':>10} {'mlsim':>10} {'error':>8}  verdict")
    bad = False
    for label, b, i, o, metric, published, *rest in CASES:
        sim = run(mlsim, b, i, o, *rest)[metric]
        err = sim / published - 1
        ok = abs(err) <= TOL
        status, note = "PASS", ""
        if not ok:
            reason = KNOWN_GAPS.get(label)
            if reason is None or abs(err) > KNOWN_GAP_LIMIT:
                bad = True
                status, note = "GAP", "unexpected"
            else:
                status, note = "KNOWN GAP", f"known: {reason} (bound {KNOWN_GAP_LIMIT:.0%})"
        print(f"{label:28} {metric:8} {published:10.1f} {sim:10.1f} {err:+8.1%}  {status}")
        common.report(f"TensorRT-LLM A100 {label} ({metric})", SOURCE, f"{published:.1f}", f"{sim:.1f}", status,
                      f"±{TOL:.0%}", error=err, note=note)
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
