#!/usr/bin/python3
"""Sweep throughput: points per second of `mlsim sweep`, median of N runs, each into a fresh database.

    /usr/bin/python3 bench/bench_sweep.py [--mlsim build/mlsim] [--sweep FILE] [--jobs 2] [-n 3]

Default sweep: configs/sweeps/resnet50-array.yaml (ResNet-50, 72 points). Three rates are reported:
end to end (points / wall time of the whole process: start-up, checking every point, simulating,
writing the database), in sweep (the rate `mlsim sweep` prints, from the first point to the last),
and per CPU second (points / user + system CPU time of the process), which stays meaningful when
other jobs share the cores.
Target (the sweeps issue): at least 100 points/s with --jobs 2 on 2 cores.
"""
import argparse
import os
import re
import resource
import statistics
import subprocess
import sys
import tempfile
import time

SUMMARY = re.compile(r"done: (\d+) points in ([0-9.]+) s \(([0-9.]+) points/s\): (\d+) run")


def children_cpu_s():
    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime


def measure(cmd):
    cpu0 = children_cpu_s()
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True)
    wall = time.perf_counter() - t0
    cpu = children_cpu_s() - cpu0
    if proc.returncode != 0:
        sys.exit(f"command failed ({proc.returncode}): {' '.join(cmd)}\n{proc.stderr}")
    m = SUMMARY.search(proc.stdout)
    if not m:
        sys.exit(f"no summary line in the output of {' '.join(cmd)}:\n{proc.stdout}")
    points, ran = int(m.group(1)), int(m.group(4))
    if ran != points:
        sys.exit(f"expected every point to run in a fresh database, but {ran} of {points} ran")
    return points, wall, float(m.group(3)), cpu


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--mlsim", default="build/mlsim")
    ap.add_argument("--sweep", default="configs/sweeps/resnet50-array.yaml")
    ap.add_argument("--jobs", type=int, default=2)
    ap.add_argument("-n", type=int, default=3)
    a = ap.parse_args()

    results = []
    with tempfile.TemporaryDirectory(prefix="mlsim-bench-sweep-") as tmp:
        for i in range(a.n + 1):  # the first run warms the page cache and is not counted
            db = os.path.join(tmp, f"run{i}.db")
            cmd = [a.mlsim, "sweep", a.sweep, "--db", db, "--jobs", str(a.jobs), "--quiet"]
            r = measure(cmd)
            if i > 0:
                results.append(r)
    points = results[0][0]
    end_to_end = [p / w for p, w, _, _ in results]
    in_sweep = [rate for _, _, rate, _ in results]
    per_cpu = [p / c for p, _, _, c in results]
    walls = [w for _, w, _, _ in results]
    print(f"command: {' '.join(cmd[:3])} --db <fresh> --jobs {a.jobs} --quiet")
    print(f"runs: {a.n}  points: {points}  median wall: {statistics.median(walls) * 1e3:.1f} ms  "
          f"median end to end: {statistics.median(end_to_end):.0f} points/s "
          f"(min {min(end_to_end):.0f}, max {max(end_to_end):.0f})  "
          f"median in sweep: {statistics.median(in_sweep):.0f} points/s  "
          f"median per CPU second: {statistics.median(per_cpu):.0f} points/s")


if __name__ == "__main__":
    main()
