#!/usr/bin/env python3
"""Latency-throughput curves of LLM serving (issue 14): runs `mlsim serve` once per request rate and
system (the sweep command's factors are run options of `mlsim run`, which has no serving options, so this
script is the sweep), collects TTFT p50/p99 and TPOT p50/p99 against achieved output throughput from the
results database, writes them as CSV and plots them.

usage: serving_plot.py [--mlsim build/mlsim] [--model llama2-7b] [--systems a100,h100]
                       [--rates 1,2,4,8,12,16,20] [--requests 1000] [--prompt 512] [--output 128]
                       [--seed 1] [--out serving] [--extra "--chunked-prefill 512"]
Writes <out>.csv (one row per system and rate) and <out>.png (TTFT and TPOT against throughput).
"""
import argparse
import os
import shlex
import sqlite3
import subprocess
import sys
import tempfile


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--mlsim", default="mlsim")
    ap.add_argument("--model", default="llama2-7b")
    ap.add_argument("--systems", default="a100,h100")
    ap.add_argument("--rates", default="1,2,4,8,12,16,20")
    ap.add_argument("--requests", default="1000")
    ap.add_argument("--prompt", default="512")
    ap.add_argument("--output", default="128")
    ap.add_argument("--seed", default="1")
    ap.add_argument("--out", default="serving")
    ap.add_argument("--extra", default="", help="more mlsim serve options, one shell string")
    ap.add_argument("--no-plot", action="store_true")
    a = ap.parse_args()
    try:
        extra = shlex.split(a.extra)
    except ValueError as e:
        print(f"serving_plot.py: error: --extra {a.extra!r}: {e}", file=sys.stderr)
        return 2

    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        db = os.path.join(tmp, "serving.db")
        for system in a.systems.split(","):
            for rate in a.rates.split(","):
                cmd = [a.mlsim, "serve", "--system", system, "--model", a.model, "--rate", rate,
                       "--requests", a.requests, "--prompt", a.prompt, "--output", a.output, "--seed", a.seed,
                       "--db", db] + extra
                try:
                    p = subprocess.run(cmd, capture_output=True, text=True)
                except OSError as e:
                    print(f"serving_plot.py: error: cannot run {a.mlsim}: {e}", file=sys.stderr)
                    return 2
                if p.returncode != 0:
                    sys.stderr.write(p.stdout + p.stderr)
                    return 2
                con = sqlite3.connect(db)
                run_id = con.execute("SELECT MAX(run_id) FROM runs").fetchone()[0]
                m = dict(con.execute("SELECT name, value FROM serving_metrics WHERE run_id = ?", (run_id,)))
                con.close()
                rows.append({"system": system, "rate": float(rate),
                             "throughput_tok_s": m["throughput_tokens_per_s"],
                             "throughput_req_s": m["throughput_requests_per_s"],
                             "ttft_p50_ms": m["ttft_p50_s"] * 1e3, "ttft_p99_ms": m["ttft_p99_s"] * 1e3,
                             # no TPOT rows when no request had a second token: not 0 ms
                             "tpot_p50_ms": m.get("tpot_p50_s", float("nan")) * 1e3,
                             "tpot_p99_ms": m.get("tpot_p99_s", float("nan")) * 1e3,
                             "max_batch": int(m["max_batch_reached"]), "preemptions": int(m["preemptions"]),
                             "energy_per_token_j": m["energy_per_token_j"]})
    cols = list(rows[0].keys())
    with open(a.out + ".csv", "w") as f:
        f.write(",".join(cols) + "\n")
        for r in rows:
            f.write(",".join(f"{r[c]:.6g}" if isinstance(r[c], float) else str(r[c]) for c in cols) + "\n")
    print(f"{'system':10} {'rate':>6} {'tok/s':>8} {'req/s':>7} {'TTFT p50':>9} {'TTFT p99':>9} "
          f"{'TPOT p50':>9} {'TPOT p99':>9} {'batch':>6} {'J/tok':>6}")
    for r in rows:
        print(f"{r['system']:10} {r['rate']:6g} {r['throughput_tok_s']:8.0f} {r['throughput_req_s']:7.2f} "
              f"{r['ttft_p50_ms']:9.1f} {r['ttft_p99_ms']:9.1f} {r['tpot_p50_ms']:9.2f} {r['tpot_p99_ms']:9.2f} "
              f"{r['max_batch']:6d} {r['energy_per_token_j']:6.3f}")
    if a.no_plot:
        return 0
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter
    fig, ax = plt.subplots(1, 2, figsize=(11, 4.2))
    # One colour per system, its p50 solid with circles and its p99 dashed with squares.
    colours = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for i, system in enumerate(a.systems.split(",")):
        rs = [r for r in rows if r["system"] == system]
        x = [r["throughput_tok_s"] for r in rs]
        c = colours[i % len(colours)]
        ax[0].plot(x, [r["ttft_p50_ms"] for r in rs], "o-", color=c, label=f"{system} p50")
        ax[0].plot(x, [r["ttft_p99_ms"] for r in rs], "s--", color=c, label=f"{system} p99")
        ax[1].plot(x, [r["tpot_p50_ms"] for r in rs], "o-", color=c, label=f"{system} p50")
        ax[1].plot(x, [r["tpot_p99_ms"] for r in rs], "s--", color=c, label=f"{system} p99")
    ax[0].set_yscale("log")
    # Plain numbers (20, 50, 100, 200 ms), not 10^2.
    ax[0].yaxis.set_major_locator(LogLocator(base=10, subs=(1.0, 2.0, 5.0)))
    ax[0].yaxis.set_major_formatter(FuncFormatter(lambda v, _p: f"{v:g}"))
    ax[0].yaxis.set_minor_formatter(NullFormatter())
    ax[0].set_ylabel("time to first token (ms)")
    ax[1].set_ylabel("time per output token (ms)")
    for x in ax:
        x.set_xlabel("achieved output throughput (tokens/s)")
        x.grid(True, alpha=0.3)
        x.legend(fontsize=8)
    fig.suptitle(f"{a.model}: prompt {a.prompt}, output {a.output}, Poisson arrivals, rates {a.rates} req/s")
    fig.tight_layout()
    fig.savefig(a.out + ".png", dpi=120)
    print(f"wrote {a.out}.csv and {a.out}.png")
    return 0


if __name__ == "__main__":
    sys.exit(main())
