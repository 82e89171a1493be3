"""Shared helpers of the CPU reproduction scripts (analysis/reproduce/cpu_*.py).

Each script runs `mlsim run ... --db DB --quiet` on a device and a small user model it writes to a
temporary folder, reads the layer rows back from the SQLite results database, compares one figure with a
published measurement within a stated tolerance, prints one line, and exits 0 when the figure is within
it, 1 when it is not (a gap: the figure is still printed), 2 when mlsim is missing or a run fails.
"""
import argparse
import os
import sqlite3
import subprocess
import sys
import tempfile

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def args(doc):
    p = argparse.ArgumentParser(description=doc)
    p.add_argument("--mlsim", default=os.path.join(ROOT, "build", "mlsim"))
    a = p.parse_args()
    if not os.access(a.mlsim, os.X_OK):
        print(f"{sys.argv[0]}: no mlsim at {a.mlsim} (build it, or pass --mlsim)", file=sys.stderr)
        sys.exit(2)
    return a


class Run:
    def __init__(self, mlsim):
        self.mlsim = mlsim
        self.tmp = tempfile.TemporaryDirectory()
        self.db = os.path.join(self.tmp.name, "r.db")

    def write(self, name, text):
        path = os.path.join(self.tmp.name, name)
        with open(path, "w") as f:
            f.write(text)
        return path

    def layers(self, system, model, *opts):
        """The layer rows (dicts) of one run."""
        cmd = [self.mlsim, "run", "--system", system, "--model", model, "--db", self.db, "--quiet", *opts]
        p = subprocess.run(cmd, capture_output=True, text=True)
        if p.returncode != 0:
            print(f"run failed (exit {p.returncode}): {' '.join(cmd)}\n{p.stderr.strip()}", file=sys.stderr)
            sys.exit(2)
        with sqlite3.connect(self.db) as con:
            con.row_factory = sqlite3.Row
            rid = con.execute("SELECT max(run_id) FROM runs").fetchone()[0]
            return [dict(r) for r in con.execute("SELECT * FROM layers WHERE run_id=? ORDER BY idx", (rid,))]


def report(name, ours, published, lo, hi, unit, source, note=""):
    ok = lo <= ours <= hi
    print(f"{'PASS' if ok else 'GAP '} {name}: mlsim {ours:.1f} {unit}, published {published} {unit} "
          f"(tolerance {lo:.1f}-{hi:.1f}; {source}){'; ' + note if note else ''}")
    return 0 if ok else 1
