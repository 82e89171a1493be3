#!/usr/bin/python3
"""Wall time and peak resident memory of one `mlsim` command, median of N runs.

    /usr/bin/python3 bench/bench_cli.py [--mlsim build/mlsim] [-n 9] [-- mlsim arguments...]

Default command: ResNet-50 on the A100 preset, fp16, batch 1, totals only (no database).
Issue 2 targets: under 50 ms wall and under 50 MB peak RSS.
"""
import argparse
import os
import statistics
import subprocess
import sys
import time


def measure(cmd):
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - t0
    err = proc.stderr.read().decode()
    proc.stderr.close()
    if os.waitstatus_to_exitcode(status) != 0:
        sys.exit(f"command failed ({status}): {' '.join(cmd)}\n{err}")
    return wall, usage.ru_maxrss * 1024  # ru_maxrss is in KiB on Linux


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--mlsim", default="build/mlsim")
    ap.add_argument("-n", type=int, default=9)
    ap.add_argument("args", nargs="*")
    a = ap.parse_args()
    args = a.args or ["run", "--system", "a100", "--model", "resnet50", "--dtype", "fp16", "--quiet"]
    cmd = [a.mlsim] + args
    measure(cmd)  # warm the page cache
    runs = [measure(cmd) for _ in range(a.n)]
    walls = [w for w, _ in runs]
    rss = [r for _, r in runs]
    print(f"command: {' '.join(cmd)}")
    print(f"runs: {a.n}  median wall: {statistics.median(walls) * 1e3:.1f} ms  "
          f"(min {min(walls) * 1e3:.1f}, max {max(walls) * 1e3:.1f})  "
          f"median peak RSS: {statistics.median(rss) / 1e6:.1f} MB")


if __name__ == "__main__":
    main()
