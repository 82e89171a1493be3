#!/usr/bin/python3
"""CPU time (user + system) of short `mlsim` commands, median of N runs.

    /usr/bin/python3 bench/bench_startup.py [--mlsim build/mlsim] [--compare OTHER] [-n 21] [-- mlsim arguments...]

Without arguments it measures two commands: `mlsim --version` (start-up alone: the dynamic loader,
static initialisers, argument dispatch) and one ResNet-50 run on the TPU v4 preset (the systolic
model), bf16, totals only, no database. Issue 8 target: that run under 5 ms of CPU.

CPU time, not wall time: it is what the process itself costs, and it stays meaningful when other jobs
share the cores. It comes from wait4()'s resource usage of each child, so it covers the whole process
(loader included) and nothing of this script. With --compare OTHER (another mlsim binary, e.g. one built
from an earlier commit) the two binaries run alternately, so that both see the same load on a shared
machine, and both medians are printed.
"""
import argparse
import os
import statistics
import subprocess
import sys

DEFAULT_COMMANDS = [
    ["--version"],
    ["run", "--system", "tpu-v4", "--model", "resnet50", "--dtype", "bf16", "-q"],
]


def cpu_seconds(cmd):
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    _, status, usage = os.wait4(proc.pid, 0)
    err = proc.stderr.read().decode()
    proc.stderr.close()
    if os.waitstatus_to_exitcode(status) != 0:
        sys.exit(f"command failed ({status}): {' '.join(cmd)}\n{err}")
    return usage.ru_utime + usage.ru_stime, usage.ru_utime, usage.ru_stime


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--mlsim", default="build/mlsim")
    ap.add_argument("--compare", help="another mlsim binary, run alternately with --mlsim")
    ap.add_argument("-n", type=int, default=21, help="counted runs per command (after one warm-up)")
    ap.add_argument("args", nargs="*", help="one mlsim command to measure instead of the default two")
    a = ap.parse_args()
    commands = [a.args] if a.args else DEFAULT_COMMANDS
    binaries = [a.mlsim] + ([a.compare] if a.compare else [])
    for args in commands:
        print(f"{' '.join(args)}")
        runs = {b: [] for b in binaries}
        for b in binaries:
            cpu_seconds([b] + args)  # warm the page cache
        for _ in range(a.n):
            for b in binaries:
                runs[b].append(cpu_seconds([b] + args))
        for b in binaries:
            total = [t for t, _, _ in runs[b]]
            print(f"  {b}: {a.n} runs, median CPU (user+sys) {statistics.median(total) * 1e3:.2f} ms  "
                  f"(min {min(total) * 1e3:.2f}, max {max(total) * 1e3:.2f}; "
                  f"median user {statistics.median(u for _, u, _ in runs[b]) * 1e3:.2f}, "
                  f"sys {statistics.median(s for _, _, s in runs[b]) * 1e3:.2f})")


if __name__ == "__main__":
    main()
