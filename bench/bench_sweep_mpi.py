#!/usr/bin/python3
"""Sweeps over MPI: parallel efficiency of 2 ranks vs 1, and the sweep path's throughput.

    /usr/bin/python3 bench/bench_sweep_mpi.py [--mlsim build/mlsim] [--mlsim-mpi build/mlsim-mpi]
        [--model resnet50] [--points 2000] [-n 3] [--kinds roofline,systolic] [--unbound] [--no-ceiling]
        [--layer-rows all|none]

For each kind of point it writes a sweep of --points points into a temporary folder:
  roofline: the A100 preset with device.model: roofline; batch x dtype x HBM bandwidth
  systolic: the TPU v4 preset (detailed systolic model); array size (zipped with rows/cols) x dataflow
            x ifmap buffer x batch
and runs it, each run into a fresh database, median of -n runs:
  threads   build/mlsim sweep FILE --jobs 1 (on one core: taskset -c 0) and --jobs 2 (the threaded path, for
            reference)
  mpi 1     mpirun -np 1 --bind-to core build/mlsim-mpi sweep FILE   (rank 0 alone, on one core: one
            simulating thread + the database)
  mpi 2     mpirun -np 2 --bind-to none build/mlsim-mpi sweep FILE   (rank 0 as above + one more simulating
            rank, on two cores)
The one-rank run is bound to one core: the results file's background checkpoint (db/results_db.cpp,
Checkpointer) is a second thread, and unbound it would take the second core, so that "1 rank" would not be
the one-core run parallel efficiency is measured against. Both figures are printed ("unbound" with -n runs of
its own when --unbound is given).
  ceiling   two `mpirun -np 1 --bind-to core --cpu-set C` runs at once, C = 0 and 1, each into its own
            database (skipped with --no-ceiling): the summed rate against twice one rank's is what the host
            lets any two processes reach; on a virtual machine whose two vCPUs slow each other down it is below
            100 %, and parallel efficiency is printed against it too
Rates are the in-sweep rate `mlsim sweep` prints (first point to last; start-up and checking the points
excluded). Parallel efficiency = rate(2 ranks) / (2 x rate(1 rank)), of the medians and round by round (each
2-rank run against the 1-rank run of its round, made a few seconds apart). Targets (issue 15): efficiency
>= 90 % on a 2,000-point sweep; >= 500 points/s on 2 cores for roofline and systolic points. The load
average is printed with the figures: on a shared machine it decides them; the points per CPU second
(user + system time of the whole command, start-up and checking included) show the work each way costs.

CPU-time figures (what a loaded machine does not blur): the MPI runs are made with MLSIM_SWEEP_CPU=1, and
each rank reports its sweep thread's CPU time (mpi/sweep_mpi.cpp): for 1 rank its CPU time per point
(T1, simulating and committing); for 2 ranks the writer's CPU per committed point (w, rank 0 receiving and committing), and the
CPU per simulated point on rank 0 (c0) and on rank 1 (c1, serializing and sending included). On two cores
of its own, rank 0 commits every point and simulates the share x of the points that keeps both ranks
equally busy: w + x c0 = (1 - x) c1, so x = max(0, (c1 - w) / (c0 + c1)) and a point takes
T2 = w + x c0 (T2 = w when the writer alone is the bottleneck). CPU-time efficiency = T1 / (2 T2).
"""
import argparse
import os
import resource
import re
import statistics
import subprocess
import sys
import tempfile

SUMMARY = re.compile(r"done: (\d+) points in ([0-9.]+) s \(([0-9.]+) points/s\): (\d+) run")


def sweep_yaml(kind, model, points, layer_rows="all"):
    """The sweep file; with layer_rows "none" its points record their runs' rows only (mlsim --layer-rows)."""
    base = f"base:\n  layer-rows: {layer_rows}\n" if layer_rows != "all" else "base:\n"
    if kind == "roofline":
        batches = [1, 2, 4, 8, 16]
        dtypes = ["fp16", "bf16"]
        n_bw = max(1, points // (len(batches) * len(dtypes)))
        bws = [f"{1000 + 10 * i}GB/s" for i in range(n_bw)]
        return (f"name: bench-roofline\n{base}  system: a100\n  model: {model}\n"
                f"factors:\n  batch: [{', '.join(map(str, batches))}]\n  dtype: [{', '.join(dtypes)}]\n"
                f"  device.memory[2].bandwidth: [{', '.join(bws)}]\n"
                f"  device.model: [roofline]\n")  # the A100 preset's GPU model off: roofline points
    sizes = [8, 16, 32, 64, 128]
    flows = ["os", "ws", "is"]
    batches = [1, 2]
    n_buf = max(1, points // (len(sizes) * len(flows) * len(batches)))
    bufs = [f"{64 + 4 * i}KiB" for i in range(n_buf)]
    return (f"name: bench-systolic\n{base}  system: tpu-v4\n  model: {model}\n  dtype: bf16\n"
            f"zip:\n  - device.systolic.rows: [{', '.join(map(str, sizes))}]\n"
            f"    device.systolic.cols: [{', '.join(map(str, sizes))}]\n"
            f"factors:\n  device.systolic.dataflow: [{', '.join(flows)}]\n"
            f"  batch: [{', '.join(map(str, batches))}]\n"
            f"  device.systolic.buffers.ifmap.capacity: [{', '.join(bufs)}]\n")


def children_cpu_s():
    r = resource.getrusage(resource.RUSAGE_CHILDREN)  # mpirun's ranks included once it has waited for them
    return r.ru_utime + r.ru_stime


CPU_RANK = re.compile(r"mlsim sweep cpu: rank (\d+) simulated (\d+) points in ([0-9.]+) s, committed in "
                      r"([0-9.]+) s, other work ([0-9.]+) s")
CPU_SPLIT = re.compile(r"mlsim sweep cpu: rank 0's writing: receiving ([0-9.]+) s, the log's checkpoints ([0-9.]+) s")


def cpu_report(stderr):
    """The per-rank CPU lines of an MPI run: {rank: (points simulated, simulating, committing, other)}, and
    under "split" rank 0's (receiving, checkpoints), both part of its committing."""
    out = {}
    for m in CPU_RANK.finditer(stderr):
        out[int(m.group(1))] = (int(m.group(2)), float(m.group(3)), float(m.group(4)), float(m.group(5)))
    if m := CPU_SPLIT.search(stderr):
        out["split"] = (float(m.group(1)), float(m.group(2)))
    return out


def modelled(points, rep):
    """(w, c0, c1, T2) in ms per point from a 2-rank run's CPU report (see the module doc)."""
    n0, sim0, commit0, other0 = rep[0]
    n1, sim1, _, _ = rep[1]
    w = (commit0 + other0) / points
    c1 = sim1 / max(n1, 1)
    c0 = sim0 / n0 if n0 else c1
    x = max(0.0, (c1 - w) / (c0 + c1))
    return w * 1e3, c0 * 1e3, c1 * 1e3, (w + x * c0) * 1e3


def run(cmd, env):
    cpu0 = children_cpu_s()
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env)
    cpu = children_cpu_s() - cpu0
    if proc.returncode != 0:
        sys.exit(f"command failed ({proc.returncode}): {' '.join(cmd)}\n{proc.stdout}\n{proc.stderr}")
    m = SUMMARY.search(proc.stdout)
    if not m:
        sys.exit(f"no summary line in the output of {' '.join(cmd)}:\n{proc.stdout}")
    points, ran = int(m.group(1)), int(m.group(4))
    if ran != points:
        sys.exit(f"expected every point to run in a fresh database, but {ran} of {points} ran")
    return points, float(m.group(3)), cpu, cpu_report(proc.stderr)


def run_pair(cmds, env):
    """Runs the commands at once; their in-sweep rates summed (what the host gives two independent sweeps)."""
    procs = [subprocess.Popen(c, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env) for c in cmds]
    total = 0.0
    for cmd, p in zip(cmds, procs):
        out, err = p.communicate()
        if p.returncode != 0:
            sys.exit(f"command failed ({p.returncode}): {' '.join(cmd)}\n{out}\n{err}")
        m = SUMMARY.search(out)
        if not m:
            sys.exit(f"no summary line in the output of {' '.join(cmd)}:\n{out}")
        total += float(m.group(3))
    return total


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--mlsim", default="build/mlsim")
    ap.add_argument("--mlsim-mpi", default="build/mlsim-mpi")
    ap.add_argument("--mpirun", default="mpirun")
    ap.add_argument("--model", default="resnet50")
    ap.add_argument("--points", type=int, default=2000)
    ap.add_argument("--kinds", default="roofline,systolic")
    ap.add_argument("-n", type=int, default=3)
    ap.add_argument("--layer-rows", choices=["all", "none"], default="all",
                    help="the points' per-layer rows in the database (none: the runs' rows only)")
    ap.add_argument("--unbound", action="store_true", help="also run 1 rank without binding it to a core")
    ap.add_argument("--no-ceiling", action="store_true",
                    help="skip the host's ceiling (two independent one-rank runs at once, one per core)")
    a = ap.parse_args()
    env = dict(os.environ, OMPI_ALLOW_RUN_AS_ROOT="1", OMPI_ALLOW_RUN_AS_ROOT_CONFIRM="1", MLSIM_SWEEP_CPU="1")
    mpirun = [a.mpirun, "--oversubscribe", "--allow-run-as-root", "-x", "MLSIM_SWEEP_CPU"]
    print(f"load average at start: {' '.join(f'{x:.2f}' for x in os.getloadavg())}  cores: {os.cpu_count()}")
    with tempfile.TemporaryDirectory(prefix="mlsim-bench-mpi-") as tmp:
        for kind in a.kinds.split(","):
            sweep = os.path.join(tmp, f"{kind}.yaml")
            with open(sweep, "w") as f:
                f.write(sweep_yaml(kind, a.model, a.points, a.layer_rows))
            configs = {
                "threads --jobs 1": ["taskset", "-c", "0", a.mlsim, "sweep", sweep, "--jobs", "1"],
                "threads --jobs 2": [a.mlsim, "sweep", sweep, "--jobs", "2"],
                "mpi 1 rank": mpirun + ["--bind-to", "core", "-np", "1", a.mlsim_mpi, "sweep", sweep],
                "mpi 2 ranks": mpirun + ["--bind-to", "none", "-np", "2", a.mlsim_mpi, "sweep", sweep],
            }
            if a.unbound:
                configs["mpi 1 rank, unbound"] = mpirun + ["--bind-to", "none", "-np", "1", a.mlsim_mpi, "sweep",
                                                           sweep]
            # The host's ceiling for two cores: two independent one-rank sweeps at once, each bound to a core of
            # its own and writing its own file. They share nothing but the machine, so their summed rate against
            # twice one rank's is the most any two-process run can reach here (two vCPUs of a virtual machine may
            # slow each other down where two physical cores would not).
            pair = [mpirun + ["--bind-to", "core", "--cpu-set", str(c), "-np", "1", a.mlsim_mpi, "sweep", sweep]
                    for c in (0, 1)]
            pair_rates = []
            rates = {name: [] for name in configs}
            cpus = {name: [] for name in configs}
            t1s, t2s, parts = [], [], []
            splits = {"mpi 1 rank": [], "mpi 2 ranks": []}
            points = 0
            for i in range(a.n):  # interleaved, so that a change of load hits every configuration alike
                for name, cmd in configs.items():
                    db = os.path.join(tmp, f"{kind}-{i}-{len(rates[name])}-{name.replace(' ', '_')}.db")
                    points, rate, cpu, rep = run(cmd + ["--db", db, "--quiet"], env)
                    if name in splits and "split" in rep:
                        splits[name].append(tuple(x / points * 1e3 for x in rep["split"]))
                    if name == "mpi 1 rank" and 0 in rep:
                        t1s.append(sum(rep[0][1:]) / points * 1e3)
                    if name == "mpi 2 ranks" and 0 in rep and 1 in rep:
                        parts.append(modelled(points, rep))
                        t2s.append(parts[-1][3])
                    rates[name].append(rate)
                    cpus[name].append(cpu)
                    os.remove(db)
                if not a.no_ceiling:
                    dbs = [os.path.join(tmp, f"{kind}-{i}-pair-{c}.db") for c in (0, 1)]
                    pair_rates.append(run_pair([cmd + ["--db", db, "--quiet"] for cmd, db in zip(pair, dbs)], env))
                    for db in dbs:
                        os.remove(db)
            med = {name: statistics.median(r) for name, r in rates.items()}
            print(f"{kind}: {points} points of {a.model}, median of {a.n} (in-sweep points/s):")
            for name, r in rates.items():
                print(f"  {name:<17} {med[name]:7.0f} points/s  (runs: {', '.join(f'{x:.0f}' for x in r)}); "
                      f"{points / statistics.median(cpus[name]):.0f} points per CPU second (whole process)")
            eff = med["mpi 2 ranks"] / (2 * med["mpi 1 rank"])
            # Each round's 2-rank run against its own 1-rank run, made next to it: on a host whose speed drifts
            # over minutes this pairs runs made at the same speed.
            pairs = [b / (2 * a) for a, b in zip(rates["mpi 1 rank"], rates["mpi 2 ranks"])]
            print(f"  parallel efficiency, 2 ranks vs 1: {eff * 100:.0f} %  "
                  f"(2 ranks vs threads --jobs 1: {med['mpi 2 ranks'] / med['threads --jobs 1']:.2f}x); "
                  f"round by round: median {statistics.median(pairs) * 100:.0f} % "
                  f"({', '.join(f'{x * 100:.0f}' for x in pairs)} %)")
            if pair_rates:
                ceiling = statistics.median(pair_rates) / (2 * med["mpi 1 rank"])
                rounds = [p / (2 * r) for r, p in zip(rates["mpi 1 rank"], pair_rates)]
                print(f"  host's ceiling, two independent 1-rank runs at once (one per core): "
                      f"{statistics.median(pair_rates):.0f} points/s = {ceiling * 100:.0f} % of twice 1 rank's rate "
                      f"(round by round: {', '.join(f'{x * 100:.0f}' for x in rounds)} %); "
                      f"2 ranks reach {eff / ceiling * 100:.0f} % of it "
                      f"(round by round: median {statistics.median(b / c for b, c in zip(pairs, rounds)) * 100:.0f} %)")
            if t1s and t2s:
                t1, t2 = statistics.median(t1s), statistics.median(t2s)
                w, c0, c1 = (statistics.median(p[k] for p in parts) for k in range(3))
                print(f"  CPU per point: 1 rank T1 = {t1:.3f} ms (runs: {', '.join(f'{x:.3f}' for x in t1s)}); "
                      f"2 ranks: writer w = {w:.3f} ms, simulating c0 = {c0:.3f} ms (rank 0), "
                      f"c1 = {c1:.3f} ms (rank 1)")
                if splits["mpi 1 rank"] and splits["mpi 2 ranks"]:
                    k1 = statistics.median(x[1] for x in splits["mpi 1 rank"])
                    r2, k2 = (statistics.median(x[k] for x in splits["mpi 2 ranks"]) for k in range(2))
                    print(f"  of the writing: the log's checkpoints (a thread of their own) {k1:.3f} ms a point "
                          f"with 1 rank, {k2:.3f} ms with 2; receiving {r2:.3f} ms (2 ranks)")
                print(f"  CPU-time efficiency T1 / (2 T2): {t1 / (2 * t2) * 100:.0f} % (T2 = {t2:.3f} ms; "
                      f"runs: {', '.join(f'{t1 / (2 * x) * 100:.0f}' for x in t2s)} %); "
                      f"on 2 idle cores: 1 rank {1e3 / t1:.0f} points/s, 2 ranks {1e3 / t2:.0f} points/s")
    print(f"load average at end: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")


if __name__ == "__main__":
    main()
