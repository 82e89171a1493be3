#!/usr/bin/python3
"""Bus bandwidth against message size, one line per system, from the `collectives` table of an mlsim
results database (written by `mlsim collective --db FILE`).

busbw follows nccl-tests: algbw = bytes / time, busbw = algbw x 2(n-1)/n for all-reduce, (n-1)/n for
all-gather, reduce-scatter and all-to-all, 1 for broadcast and reduce; GB/s = 1e9 bytes per second.

Usage:
    analysis/collective_plot.py DB --out FILE.png [--kind all_reduce] [--algbw]

One line per (system, algorithm choice of the run) for the chosen kind (default: the first kind in the
file); the x axis is the message size in bytes (log 2), the y axis GB/s (log). Each run of the kind is one
line, labelled with its system and the algorithms it used. Exit status: 0 done, 2 bad input (missing
database, no collectives of that kind).
"""

import argparse
import os
import sqlite3
import sys

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402  (the backend must be chosen first)


def fail(message):
    print(f"collective_plot.py: error: {message}", file=sys.stderr)
    sys.exit(2)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("db")
    ap.add_argument("--out", required=True, help="PNG file to write")
    ap.add_argument("--kind", help="collective kind (all_reduce, all_gather, ...); default: the first in the file")
    ap.add_argument("--algbw", action="store_true", help="plot algbw instead of busbw")
    args = ap.parse_args()
    # Where the plot goes, checked before the database is read: a PNG file in a folder that exists.
    if not args.out.lower().endswith(".png"):
        fail(f"--out {args.out}: expected a .png file name")
    out_dir = os.path.dirname(os.path.abspath(args.out))
    if not os.path.isdir(out_dir):
        fail(f"--out {args.out}: no folder {out_dir}")
    if not os.path.exists(args.db):
        fail(f"{args.db}: no such file")
    con = sqlite3.connect(f"file:{args.db}?mode=ro", uri=True)
    try:
        has = con.execute("SELECT 1 FROM sqlite_schema WHERE type = 'table' AND name = 'collectives'").fetchone()
    except sqlite3.DatabaseError as e:
        fail(f"{args.db}: not an SQLite database ({e})")
    if not has:
        fail(f"{args.db}: no collectives table (written by `mlsim collective --db`)")
    kind = args.kind
    if kind is None:
        row = con.execute("SELECT kind FROM collectives ORDER BY run_id, idx LIMIT 1").fetchone()
        if row is None:
            fail(f"{args.db}: the collectives table is empty")
        kind = row[0]
    col = "algbw_GBps" if args.algbw else "busbw_GBps"
    rows = con.execute(
        f"SELECT c.run_id, r.system, c.ranks, c.algorithm, c.bytes, c.{col} FROM collectives c "
        "JOIN runs r ON r.run_id = c.run_id WHERE c.kind = ? AND c.time_s > 0 ORDER BY c.run_id, c.bytes",
        (kind,),
    ).fetchall()
    if not rows:
        fail(f"{args.db}: no {kind} collectives")
    runs = {}
    for run_id, system, ranks, algorithm, size, bw in rows:
        r = runs.setdefault(run_id, {"system": system, "ranks": ranks, "algs": [], "x": [], "y": []})
        if algorithm not in r["algs"]:
            r["algs"].append(algorithm)
        r["x"].append(size)
        r["y"].append(bw)
    fig, ax = plt.subplots(figsize=(8, 5))
    for run_id, r in runs.items():
        label = f"{r['system']} ({r['ranks']} ranks; {', '.join(r['algs'])})"
        ax.plot(r["x"], r["y"], marker="o", markersize=3, label=label)
    ax.set_xscale("log", base=2)
    ax.set_yscale("log")
    ax.set_xlabel("message size (bytes, nccl-tests' size)")
    ax.set_ylabel(("algbw" if args.algbw else "busbw") + " (GB/s, 1 GB = 1e9 B)")
    ax.set_title(f"{kind}: {'algorithm' if args.algbw else 'bus'} bandwidth by message size")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(args.out, dpi=120)
    print(f"wrote {args.out} ({len(runs)} runs, {len(rows)} points)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
