#!/usr/bin/python3
"""CPU time (user + system) of short `mlsim` commands, median of N runs.

    /usr/bin/python3 bench/bench_startup.py [--mlsim build/mlsim] [-n 21] [-- mlsim arguments...]

Without arguments it measures two commands: `mlsim --version` (start-up alone: the dynamic loader,
static initialisers, argument dispatch) and one ResNet-50 run on the TPU v4 preset (the systolic
model), bf16, totals only, no database. Issue 8 target: that run under 5 ms of CPU.

CPU time, not wall time: it is what the process itself costs, and it stays meaningful when other jobs
share the cores. It comes from wait4()'s resource usage of each child, so it covers the whole process
(loader included) and nothing of this script.
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
    ap.add_argument("-n", type=int, default=21, help="counted runs per command (after one warm-up)")
    ap.add_argument("args", nargs="*", help="one mlsim command to measure instead of the default two")
    a = ap.parse_args()
    commands = [a.args] if a.args else DEFAULT_COMMANDS
    for args in commands:
        cmd = [a.mlsim] + args
        cpu_seconds(cmd)  # warm the page cache
        runs = [cpu_seconds(cmd) for _ in range(a.n)]
        total = [t for t, _, _ in runs]
        print(f"{' '.join(args)}")
        print(f"  runs: {a.n}  median CPU (user+sys): {statistics.median(total) * 1e3:.2f} ms  "
              f"(min {min(total) * 1e3:.2f}, max {max(total) * 1e3:.2f}; "
              f"median user {statistics.median(u for _, u, _ in runs) * 1e3:.2f}, "
              f"sys {statistics.median(s for _, _, s in runs) * 1e3:.2f})")


if __name__ == "__main__":
    main()
