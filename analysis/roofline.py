#!/usr/bin/python3
"""Roofline plots from an mlsim results database.

Reads the `runs` and `layers` tables (read-only) and draws, for one run, attainable FLOP/s against
arithmetic intensity (FLOP per byte moved to and from main memory) on log-log axes: the roof
min(peak, AI x bandwidth) from the run's peak_flops_per_s and mem_bandwidth_Bps, the ridge point
where the two meet, and one point per layer at AI = flops / (bytes_read + bytes_written) and
achieved = flops / time_s, coloured by the layer's `bound`.

Usage:
    analysis/roofline.py DB --out DIR [--run RUN_ID | --all]

Without --run or --all the plotted run is the one that shows the most on a roofline (default_run):
an ok run with layers on both sides of the ridge (compute- and memory-bound), then the widest spread
of arithmetic intensity, then the most layers, then the latest. The axes carry SI prefixes
(GFLOP/s, TFLOP/s) and the roof's legend names the device. Exit status: 0 done, 2 bad input (missing
database, missing or failed run, not an mlsim database).
"""

import argparse
import math
import os
import pathlib
import sqlite3
import sys

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402  (the backend must be chosen first)
import pandas as pd  # noqa: E402

try:
    from pandas.errors import DatabaseError as PandasDatabaseError  # pandas >= 2
except ImportError:
    from pandas.io.sql import DatabaseError as PandasDatabaseError

# Fixed colours for the bounds mlsim writes, so plots of different runs are comparable.
BOUND_COLOURS = {
    "compute": "tab:blue",
    "memory": "tab:orange",
    "communication": "tab:green",
    "overhead": "tab:gray",
}
SPARE_COLOURS = ["tab:purple", "tab:brown", "tab:pink", "tab:olive", "tab:cyan", "tab:red"]

# Relative slack before a point counts as above the roof (rounding of times in seconds).
ROOF_TOLERANCE = 1e-6


class UserError(Exception):
    """Bad input; reported on stderr with exit status 2."""


def open_db(path):
    if not os.path.isfile(path):
        raise UserError("no such results database")
    try:
        # mode=ro: never create or modify the file, even if the path is wrong.
        conn = sqlite3.connect(pathlib.Path(path).absolute().as_uri() + "?mode=ro", uri=True)
        # `layers` is a view since schema 11 (a table before).
        tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type IN ('table', 'view')")}
    except sqlite3.DatabaseError as e:
        raise UserError(f"not an SQLite database ({e})") from e
    missing = {"runs", "layers"} - tables
    if missing:
        raise UserError(f"not an mlsim results database (no table or view {', '.join(sorted(missing))})")
    return conn


def load_runs(conn):
    runs = pd.read_sql_query(
        "SELECT r.run_id, r.status, r.error, r.system, r.device, r.model, r.mode, r.dtype, r.batch, "
        "r.peak_flops_per_s, r.mem_bandwidth_Bps, r.layer_count, "
        "(SELECT COUNT(*) FROM layers l WHERE l.run_id = r.run_id) AS n_layers, "
        "(SELECT COUNT(*) FROM layers l WHERE l.run_id = r.run_id AND l.bound = 'compute') AS n_compute, "
        "(SELECT COUNT(*) FROM layers l WHERE l.run_id = r.run_id AND l.bound = 'memory') AS n_memory, "
        "(SELECT MAX(l.flops / (l.bytes_read + l.bytes_written)) / MIN(l.flops / (l.bytes_read + l.bytes_written)) "
        " FROM layers l WHERE l.run_id = r.run_id AND l.flops > 0 AND l.bytes_read + l.bytes_written > 0) "
        "AS ai_ratio "
        "FROM runs r ORDER BY r.run_id",
        conn,
    )
    runs.index = runs["run_id"].to_numpy()
    return runs


def default_run(runs):
    """The ok run that shows the most on a roofline: layers on both sides of the ridge (compute- and
    memory-bound) first, then the widest spread of arithmetic intensity (in decades, to 0.1), then the
    most layers, then the latest."""
    ok = runs[runs["status"] == "ok"]
    if ok.empty:
        raise UserError("the database holds no run with status 'ok'")
    ok = ok[~without_layer_rows(ok)]
    if ok.empty:
        raise UserError("every ok run was recorded without its layer rows (--layer-rows none): nothing to plot "
                        "per layer")
    both = (ok["n_compute"] > 0) & (ok["n_memory"] > 0)
    spread = ok["ai_ratio"].fillna(1).clip(lower=1).map(lambda r: round(math.log10(r), 1))
    key = pd.DataFrame({"both": both.astype(int), "spread": spread, "n": ok["n_layers"], "id": ok["run_id"]})
    return int(key.sort_values(["both", "spread", "n", "id"]).iloc[-1]["id"])


def without_layer_rows(runs):
    """Runs recorded without their layer rows (mlsim --layer-rows none): layers of the model, none in the file."""
    return (runs["n_layers"] == 0) & (runs["layer_count"].fillna(0) > 0)


def check_run(runs, run_id):
    if run_id not in runs.index:
        raise UserError(f"no run {run_id} in the database (runs: {describe_ids(runs.index)})")
    run = runs.loc[run_id]
    if run["status"] != "ok":
        raise UserError(f"run {run_id} has status '{run['status']}': {run['error']}")
    if without_layer_rows(runs.loc[[run_id]]).iloc[0]:
        raise UserError(f"run {run_id} was recorded without its layer rows (--layer-rows none): nothing to plot "
                        "per layer; its totals are in the table runs")
    return run


def describe_ids(ids):
    ids = sorted(int(i) for i in ids)
    if not ids:
        return "none"
    return f"{ids[0]}..{ids[-1]}" if len(ids) > 3 else ", ".join(map(str, ids))


def load_layers(conn, run_id):
    return pd.read_sql_query(
        "SELECT idx, name, op, bound, flops, bytes_read, bytes_written, time_s "
        "FROM layers WHERE run_id = ? ORDER BY idx",
        conn,
        params=(run_id,),
    )


def plottable(layers):
    """Splits layers into points and a count of skipped ones per reason."""
    bytes_moved = layers["bytes_read"].fillna(0) + layers["bytes_written"].fillna(0)
    flops = layers["flops"].fillna(0)
    time_s = layers["time_s"].fillna(0)
    reasons = {
        "zero flops": flops <= 0,
        "zero bytes": (flops > 0) & (bytes_moved <= 0),
        "zero time": (flops > 0) & (bytes_moved > 0) & (time_s <= 0),
    }
    keep = ~(reasons["zero flops"] | reasons["zero bytes"] | reasons["zero time"])
    points = layers[keep].copy()
    points["ai"] = flops[keep] / bytes_moved[keep]
    points["achieved"] = flops[keep] / time_s[keep]
    points["bound"] = points["bound"].fillna("unknown").replace("", "unknown")
    skipped = {reason: int(mask.sum()) for reason, mask in reasons.items() if mask.sum() > 0}
    return points, skipped


def colour_for(bound, spare):
    if bound not in BOUND_COLOURS:
        BOUND_COLOURS[bound] = spare[len(BOUND_COLOURS) % len(spare)]
    return BOUND_COLOURS[bound]


def positive(x):
    return x is not None and not (isinstance(x, float) and math.isnan(x)) and x > 0


SI_PREFIXES = ((1e18, "E"), (1e15, "P"), (1e12, "T"), (1e9, "G"), (1e6, "M"), (1e3, "k"), (1, ""),
               (1e-3, "m"), (1e-6, "µ"), (1e-9, "n"), (1e-12, "p"))


def prefix_for(value):
    """(factor, prefix) that puts |value| in [1, 1000): 7.1e-4 -> (1e-3, 'm')."""
    value = abs(value)
    if not value or not math.isfinite(value):
        return 1, ""
    for factor, prefix in SI_PREFIXES:
        if value >= factor * (1 - 1e-9):
            return factor, prefix
    return SI_PREFIXES[-1]


def si(value, unit):
    """3 significant digits with a human-scale prefix: si(7.13e-4, 's') == '713 µs'."""
    factor, prefix = prefix_for(value)
    if abs(float(f"{value / factor:.3g}")) >= 1000 and factor < SI_PREFIXES[0][0]:  # 999.9 -> 1 k
        factor, prefix = prefix_for(value * 1.001)
    return f"{value / factor:.3g} {prefix}{unit}"


def si_formatter(unit):
    """A tick formatter that writes each tick as si() does (log or linear axes)."""
    from matplotlib.ticker import FuncFormatter

    return FuncFormatter(lambda v, _pos: si(v, unit) if v else f"0 {unit}")


def scale_for(values, unit):
    """(factor, label unit) for plotting `values` in a human-scale unit: divide by factor, label e.g. 'µs'."""
    vals = [abs(v) for v in values if v and math.isfinite(v)]
    factor, prefix = prefix_for(max(vals)) if vals else (1, "")
    return factor, prefix + unit


def spans_decades(values, decades=2):
    """True when the positive values span more than `decades` powers of ten: a log axis reads better."""
    vals = [v for v in values if v > 0 and math.isfinite(v)]
    return len(vals) > 1 and max(vals) / min(vals) > 10 ** decades


def draw(run, points, skipped, out_path):
    peak = run["peak_flops_per_s"]
    bw = run["mem_bandwidth_Bps"]
    have_roof = positive(peak) and positive(bw)
    ridge = peak / bw if have_roof else None

    # Span the points and the ridge with a decade of margin either side.
    ais = list(points["ai"]) + ([ridge] if ridge else [])
    lo = 10 ** math.floor(math.log10(min(ais)) - 1) if ais else 1e-2
    hi = 10 ** math.ceil(math.log10(max(ais)) + 1) if ais else 1e4

    fig, ax = plt.subplots(figsize=(8, 5.5), dpi=120)
    above = 0
    if have_roof:
        xs = [lo, ridge, hi]
        ax.plot(xs, [min(peak, x * bw) for x in xs], color="black", linewidth=1.8,
                label=f"roof of {run['device'] or '?'} ({si(peak, 'FLOP/s')}, {si(bw, 'B/s')})", zorder=2)
        ax.plot([ridge], [peak], marker="D", color="black", markersize=7, zorder=4)
        ax.axvline(ridge, color="black", linestyle=":", linewidth=0.8, zorder=1)
        # In the upper-left corner, above the slope, where no layer can be (it would be above the roof).
        ax.text(0.02, 0.97, f"ridge {ridge:.3g} FLOP/B\npeak {si(peak, 'FLOP/s')}\nbandwidth {si(bw, 'B/s')}",
                transform=ax.transAxes, va="top", ha="left", fontsize=8,
                bbox={"boxstyle": "round,pad=0.3", "facecolor": "white", "edgecolor": "lightgray"})
        roof = points["ai"].clip(upper=ridge) * bw
        above = int((points["achieved"] > roof * (1 + ROOF_TOLERANCE)).sum())

    if not points.empty:
        # Marker area grows with the layer's share of the run's time: the layers that matter stand out.
        share = points["time_s"] / points["time_s"].sum()
        sizes = 12 + 300 * share.pow(0.5)
        for bound, group in points.groupby("bound", sort=True):
            ax.scatter(
                group["ai"],
                group["achieved"],
                s=sizes[group.index],
                color=colour_for(bound, SPARE_COLOURS),
                alpha=0.75,
                edgecolors="none",
                label=f"{bound}-bound ({len(group)})",
                zorder=3,
            )
    else:
        ax.text(0.5, 0.5, "no plottable layers", transform=ax.transAxes, ha="center", va="center")

    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlim(lo, hi)
    ax.set_xlabel("arithmetic intensity (FLOP / byte of main-memory traffic)")
    ax.set_ylabel("attainable performance")
    ax.yaxis.set_major_formatter(si_formatter("FLOP/s"))
    title = f"{run['device'] or '?'} / {run['model'] or '?'}"
    detail = ", ".join(
        str(v) for v in (run["mode"], run["dtype"], f"batch {run['batch']}", f"run {run['run_id']}") if v
    )
    ax.set_title(f"Roofline: {title}\n{detail}", fontsize=11)
    ax.grid(True, which="major", linestyle=":", linewidth=0.6)
    if ax.get_legend_handles_labels()[0]:
        legend = ax.legend(loc="lower right", fontsize=8)
        # Same-size legend markers, whatever the size of the first point drawn.
        handles = getattr(legend, "legend_handles", None) or getattr(legend, "legendHandles", [])
        for handle in handles:
            if hasattr(handle, "set_sizes"):
                handle.set_sizes([36])
    footnote = "marker area grows with the layer's share of run time"
    if skipped:
        footnote += f"; not drawn: {sum(skipped.values())} layers with zero flops, bytes or time"
    fig.text(0.01, 0.01, footnote, fontsize=7, color="dimgray")
    fig.tight_layout(rect=(0, 0.03, 1, 1))
    fig.savefig(out_path)
    plt.close(fig)
    return have_roof, above


def plural(n, noun):
    return f"{n} {noun}" if n == 1 else f"{n} {noun}s"


def plot_run(conn, runs, run_id, out_path):
    run = check_run(runs, run_id)
    points, skipped = plottable(load_layers(conn, run_id))
    have_roof, above = draw(run, points, skipped, out_path)
    note = f"run {run_id}: {plural(len(points), 'layer')} plotted"
    if skipped:
        note += ", skipped " + ", ".join(f"{plural(n, 'layer')} with {why}" for why, n in skipped.items())
    print(f"{note} -> {out_path}")
    if not have_roof:
        print(f"warning: run {run_id} has no peak_flops_per_s / mem_bandwidth_Bps; drew no roof", file=sys.stderr)
    if above:
        print(f"warning: run {run_id}: {plural(above, 'layer')} above the roof (a model reports a time below "
              f"its roofline bound)", file=sys.stderr)


def main(argv=None):
    parser = argparse.ArgumentParser(description="Draw roofline plots from an mlsim results database.")
    parser.add_argument("db", help="results database (SQLite file written by mlsim)")
    parser.add_argument("--out", required=True, help="directory for the PNG files (created if missing)")
    which = parser.add_mutually_exclusive_group()
    which.add_argument("--run", type=int, help="run_id to plot (default: the ok run that shows the most: "
                                                "layers on both sides of the ridge, widest intensity spread)")
    which.add_argument("--all", action="store_true", help="one roofline_run<ID>.png per ok run")
    args = parser.parse_args(argv)

    try:
        conn = open_db(args.db)
        runs = load_runs(conn)
        os.makedirs(args.out, exist_ok=True)
        if args.all:
            ok = runs[runs["status"] == "ok"]
            if ok.empty:
                raise UserError("the database holds no run with status 'ok'")
            skipped = ok[without_layer_rows(ok)]
            if len(skipped):
                print(f"skipped {len(skipped)} run(s) recorded without their layer rows (--layer-rows none): "
                      f"{describe_ids(skipped['run_id'])}")
            for run_id in ok[~without_layer_rows(ok)]["run_id"]:
                plot_run(conn, runs, int(run_id), os.path.join(args.out, f"roofline_run{int(run_id)}.png"))
        else:
            run_id = args.run if args.run is not None else default_run(runs)
            plot_run(conn, runs, run_id, os.path.join(args.out, "roofline.png"))
    except UserError as e:
        print(f"roofline.py: error: {args.db}: {e}", file=sys.stderr)
        return 2
    except (sqlite3.DatabaseError, PandasDatabaseError) as e:
        print(f"roofline.py: error: {args.db}: cannot read the database: {e}", file=sys.stderr)
        return 2
    except OSError as e:
        print(f"roofline.py: error: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
