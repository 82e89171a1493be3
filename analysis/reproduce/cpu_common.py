"""Shared helpers of the CPU reproduction scripts (analysis/reproduce/cpu_*.py).

Each script runs `mlsim run ... --db DB --quiet` on a device and a small user model it writes to a
temporary folder, reads the layer rows back from the SQLite results database, compares one figure with a
published measurement within a stated tolerance, prints one line, and exits 0 when the figure is within
it, 1 when it is not (a gap: the figure is still printed), 2 when mlsim is missing or a run fails.
Results are reported with common.report (a human line and a RESULT line for run_all.py).
"""
import argparse
import os
import sqlite3
import subprocess
import sys
import tempfile

import common
from common import mlsim_path

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def args(doc):
    """The script's arguments: the mlsim binary as `--mlsim PATH` or as the first argument (common.py)."""
    argv = sys.argv[1:]
    if "-h" in argv or "--help" in argv:
        print(doc)
        sys.exit(0)
    return argparse.Namespace(mlsim=mlsim_path(argv))


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


def report(name, ours, published, lo, hi, unit, source, note="", value=None):
    """PASS inside [lo, hi], else GAP (exit status 1). The error is mlsim / published - 1, as the table's
    header says, `value` being the published figure as a number (it was measured from the band's middle:
    93.3 % against a published 87.3 % read -0.4 %); without one, from the band's middle."""
    ref = value if value is not None else (lo + hi) / 2
    return common.report(name, source, f"{published} {unit}", f"{ours:.1f} {unit}",
                         "PASS" if lo <= ours <= hi else "GAP", f"{lo:.1f}-{hi:.1f} {unit}",
                         error=ours / ref - 1, note=note)
