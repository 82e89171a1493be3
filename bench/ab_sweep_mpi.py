#!/usr/bin/python3
"""A/B of MPI sweep configurations: alternates them round by round, one rank and two ranks each.

    /usr/bin/python3 bench/ab_sweep_mpi.py [-n 14] [--kind roofline|systolic] [--points 2000]
        NAME[:VAR=VALUE;VAR=VALUE...] ...

Each NAME is a configuration: environment variables for the run, MBIN=PATH choosing the mlsim-mpi binary
(default build/mlsim-mpi). Every round runs each configuration in turn, `mpirun -np 1 --bind-to core` then
`mpirun -np 2 --bind-to none`, each into a fresh database, so that the host's phases (bench/README.md: its
cores slow each other by up to a fifth, for minutes at a time) hit the configurations alike. Printed per
configuration: the medians of the in-sweep rates (points/s), the parallel efficiency of the medians,
rate(2) / (2 x rate(1)), the median of the rounds' efficiencies, and every round's; and, from the ranks' CPU
reports (MLSIM_SWEEP_CPU=1), the medians of one rank's CPU a point T1, of the 2-rank writer's w, and the
CPU-time efficiency T1 / (2 T2) of bench_sweep_mpi.py's model. The sweeps are those of
bench/bench_sweep_mpi.py. Example, two binaries:

    /usr/bin/python3 bench/ab_sweep_mpi.py -n 14 old:MBIN=/tmp/mlsim-mpi-old new:
"""
import argparse
import os
import statistics
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import bench_sweep_mpi  # noqa: E402


def parse_config(text):
    name, _, rest = text.partition(":")
    env = {}
    for item in filter(None, rest.split(";")):
        key, eq, value = item.partition("=")
        if not eq:
            sys.exit(f"ab_sweep_mpi: '{item}' in '{text}' is not VAR=VALUE")
        env[key] = value
    return name, env


def run(binary, ranks, sweep, db, env):
    """The in-sweep rate of one run into a fresh `db` (bench_sweep_mpi.run checks and reads it)."""
    for suffix in ("", "-wal", "-shm"):
        if os.path.exists(db + suffix):
            os.remove(db + suffix)
    bind = ["--bind-to", "core"] if ranks == 1 else ["--bind-to", "none"]
    cmd = ["mpirun", "--allow-run-as-root", *bind, "-np", str(ranks), binary, "sweep", sweep, "--db", db]
    points, rate, _, rep = bench_sweep_mpi.run(cmd, env)
    return points, rate, rep


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("-n", type=int, default=14, help="rounds")
    ap.add_argument("--kind", choices=["roofline", "systolic"], default="roofline")
    ap.add_argument("--points", type=int, default=2000)
    ap.add_argument("--model", default="resnet50")
    ap.add_argument("configs", nargs="+", help="NAME[:VAR=VALUE;...], MBIN=PATH for the binary")
    a = ap.parse_args()
    here = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    default_binary = os.path.join(here, "build", "mlsim-mpi")
    configs = [parse_config(c) for c in a.configs]
    results = {name: {"r1": [], "r2": [], "eff": [], "t1": [], "w": [], "t2": []} for name, _ in configs}
    with tempfile.TemporaryDirectory() as tmp:
        sweep = os.path.join(tmp, "sweep.yaml")
        with open(sweep, "w") as f:
            f.write(bench_sweep_mpi.sweep_yaml(a.kind, a.model, a.points))
        db = os.path.join(tmp, "ab.db")
        for _ in range(a.n):
            for name, env in configs:
                binary = env.get("MBIN", default_binary)
                run_env = dict(os.environ, MLSIM_SWEEP_CPU="1", **{k: v for k, v in env.items() if k != "MBIN"})
                points, one, rep1 = run(binary, 1, sweep, db, run_env)
                _, two, rep2 = run(binary, 2, sweep, db, run_env)
                r = results[name]
                if 0 in rep1:
                    r["t1"].append(sum(rep1[0][1:]) / points * 1e3)
                if 0 in rep2 and 1 in rep2:
                    w, _, _, t2 = bench_sweep_mpi.modelled(points, rep2)
                    r["w"].append(w)
                    r["t2"].append(t2)
                r["r1"].append(one)
                r["r2"].append(two)
                r["eff"].append(two / (2 * one))
    med = statistics.median
    print(f"{a.kind}: {a.points} points of {a.model}, {a.n} rounds (in-sweep points/s; efficiency of the medians /"
          f" median round)")
    for name, _ in configs:
        r = results[name]
        print(f"  {name:>12}: 1 rank {med(r['r1']):6.0f}  2 ranks {med(r['r2']):6.0f}  "
              f"efficiency {100 * med(r['r2']) / (2 * med(r['r1'])):.0f} % / {100 * med(r['eff']):.0f} %  "
              f"(rounds: {', '.join(f'{100 * e:.0f}' for e in r['eff'])} %)")
        if r["t1"] and r["t2"]:
            print(f"  {'':>12}  CPU a point: 1 rank T1 {med(r['t1']):.3f} ms, 2 ranks' writer w {med(r['w']):.3f} ms; "
                  f"CPU-time efficiency T1 / (2 T2) {100 * med(r['t1']) / (2 * med(r['t2'])):.0f} % "
                  f"(bench_sweep_mpi.py's model)")


if __name__ == "__main__":
    main()
