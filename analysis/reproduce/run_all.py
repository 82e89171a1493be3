#!/usr/bin/env python3
"""Runs every reproduction script and writes one Markdown table of their results.

    /usr/bin/python3 analysis/reproduce/run_all.py [--mlsim build/mlsim] [--out FILE] [--only SUBSTRING]

The scripts: every analysis/reproduce/*.py except the shared modules (common.py, cpu_common.py, files
starting with `_`) and this runner, then analysis/seed_claims.py (the seed documents' claims). Each is run
as `python3 SCRIPT --mlsim PATH` (a script that only takes the binary as its first argument is retried
that way). From its output the runner collects the RESULT lines of analysis/reproduce/common.py, or, for a
script that prints none, its plain `PASS ...` / `KNOWN GAP ...` / `GAP ...` lines.

Output: the table (script, result, source, published figure, mlsim's figure, error, tolerance, status),
a per-script line (exit status, time, counts), and the totals, to stdout and to --out. GAPs are
findings, not failures: the exit status is 0 unless a script crashed (an exit status other than 0 or 1,
or no result at all), then 1.
"""
import argparse
import json
import os
import re
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
SHARED = {"common.py", "cpu_common.py", "run_all.py"}
PLAIN = re.compile(r"^(PASS|KNOWN GAP|GAP)\b\s*(.*)$")


def scripts():
    found = sorted(os.path.join(HERE, f) for f in os.listdir(HERE)
                   if f.endswith(".py") and f not in SHARED and not f.startswith("_"))
    return found + [os.path.join(ROOT, "analysis", "seed_claims.py")]


def run(script, mlsim, tmp_db):
    extra = ["--db", tmp_db] if script.endswith("seed_claims.py") else []
    t0 = time.perf_counter()
    p = subprocess.run([sys.executable, script, "--mlsim", mlsim, *extra], capture_output=True, text=True)
    if p.returncode == 2 and not parse(p.stdout):  # a script that takes the binary as its first argument
        p = subprocess.run([sys.executable, script, mlsim, *extra], capture_output=True, text=True)
    return p, time.perf_counter() - t0


def parse(stdout):
    results = []
    for line in stdout.splitlines():
        if line.startswith("RESULT "):
            try:
                r = json.loads(line[len("RESULT "):])
            except json.JSONDecodeError:
                continue
            if isinstance(r, dict) and r.get("status") in ("PASS", "KNOWN GAP", "GAP"):
                results.append(r)
    if results:
        return results
    for line in stdout.splitlines():  # the plain convention: the whole line is the result
        m = PLAIN.match(line.strip())
        if m:
            results.append({"name": m.group(2), "source": "", "published": "", "mlsim": "", "error": None,
                            "tolerance": "", "status": m.group(1), "note": ""})
    return results


def cell(x):
    return str(x if x is not None else "").replace("|", "\\|").replace("\n", " ")


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--mlsim", default=os.path.join(ROOT, "build", "mlsim"))
    ap.add_argument("--out", help="also write the Markdown report to this file")
    ap.add_argument("--only", help="run only the scripts whose file name contains this")
    a = ap.parse_args()
    mlsim = os.path.abspath(a.mlsim)
    if not (os.path.isfile(mlsim) and os.access(mlsim, os.X_OK)):
        print(f"run_all.py: no mlsim at {mlsim} (build it, or pass --mlsim)", file=sys.stderr)
        return 2
    rows, per_script, crashed = [], [], []
    tmp_db = os.path.join(os.environ.get("TMPDIR", "/tmp"), f"mlsim-reproduce-seed-{os.getpid()}.db")
    for script in scripts():
        name = os.path.relpath(script, ROOT)
        if a.only and a.only not in os.path.basename(script):
            continue
        p, secs = run(script, mlsim, tmp_db)
        results = parse(p.stdout)
        bad = p.returncode not in (0, 1) or not results
        if bad:
            crashed.append(name)
            tail = "\n".join((p.stdout + p.stderr).strip().splitlines()[-5:])
            print(f"run_all.py: {name} crashed (exit {p.returncode}, {len(results)} results):\n{tail}",
                  file=sys.stderr)
        counts = {s: sum(r["status"] == s for r in results) for s in ("PASS", "KNOWN GAP", "GAP")}
        per_script.append((name, p.returncode, secs, counts, bad))
        for r in results:
            rows.append((name, r))
    for f in (tmp_db, tmp_db + "-wal", tmp_db + "-shm"):
        if os.path.exists(f):
            os.remove(f)

    out = ["# Reproduction suite", "",
           f"mlsim: `{os.path.relpath(mlsim, ROOT) if mlsim.startswith(ROOT) else mlsim}`; "
           "error = mlsim / published - 1 where the published figure is one number.", "",
           "| script | result | source | published | mlsim | error | tolerance | status |",
           "|---|---|---|---:|---:|---:|---|---|"]
    for name, r in rows:
        err = "" if r.get("error") is None else f"{r['error'] * 100:+.1f} %"
        status = r["status"] + (f" ({r['note']})" if r.get("note") and r["status"] != "PASS" else "")
        out.append("| " + " | ".join(cell(x) for x in (
            os.path.basename(name), r.get("name"), r.get("source"), r.get("published"), r.get("mlsim"), err,
            r.get("tolerance"), status)) + " |")
    out += ["", "| script | exit | time | PASS | KNOWN GAP | GAP |", "|---|---:|---:|---:|---:|---:|"]
    for name, rc, secs, counts, bad in per_script:
        out.append(f"| {name}{' (crashed)' if bad else ''} | {rc} | {secs:.1f} s | {counts['PASS']} | "
                   f"{counts['KNOWN GAP']} | {counts['GAP']} |")
    total = {s: sum(c[s] for _, _, _, c, _ in per_script) for s in ("PASS", "KNOWN GAP", "GAP")}
    out += ["", f"{len(rows)} results from {len(per_script)} scripts: {total['PASS']} PASS, "
                f"{total['KNOWN GAP']} KNOWN GAP, {total['GAP']} GAP"
                + (f"; crashed: {', '.join(crashed)}" if crashed else "")
                + f"; {sum(s for _, _, s, _, _ in per_script):.1f} s in all."]
    text = "\n".join(out) + "\n"
    sys.stdout.write(text)
    if a.out:
        os.makedirs(os.path.dirname(os.path.abspath(a.out)), exist_ok=True)
        with open(a.out, "w") as f:
            f.write(text)
    return 1 if crashed else 0


if __name__ == "__main__":
    sys.exit(main())
