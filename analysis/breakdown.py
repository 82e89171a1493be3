#!/usr/bin/python3
"""Per-layer time and energy breakdown of one run of an mlsim results database.

Reads the `runs` and `layers` tables (read-only) and draws two figures:

- breakdown_time.png: time (or, with --cycles, device cycles) per layer in execution order, each bar
  coloured by the layer's `bound` (compute, memory, ...), with the share of the run's time per bound;
- breakdown_energy.png: energy per layer stacked by component (compute = MACs x MAC energy, memory =
  bytes x per-byte energy, static = static power x time), above the same split summed per op kind.

Usage:
    analysis/breakdown.py DB --out DIR [--run RUN_ID] [--cycles]

Without --run the run is chosen as roofline.py chooses it (default_run). Times and energies are drawn in
human-scale units (µs, ms, mJ); layer times on a log axis when they span more than two decades; layer
names on the x axis (every k-th beyond 60 layers, with the largest bars named above them).
Exit status: 0 done, 2 bad input (missing database, missing or failed run, not an mlsim database).
"""

import argparse
import math
import os
import sqlite3
import sys

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402  (the backend must be chosen first)
from matplotlib.ticker import FuncFormatter  # noqa: E402

from roofline import (  # noqa: E402  (same folder; shares the database checks and colours)
    BOUND_COLOURS,
    SPARE_COLOURS,
    PandasDatabaseError,
    UserError,
    check_run,
    colour_for,
    default_run,
    load_runs,
    open_db,
    scale_for,
    si,
    spans_decades,
)
import pandas as pd  # noqa: E402

# Energy components as stored in `layers`, with fixed colours so figures of different runs compare.
COMPONENTS = [
    ("energy_compute_j", "compute", "tab:blue"),
    ("energy_memory_j", "memory", "tab:orange"),
    ("energy_static_j", "static", "tab:gray"),
]

# At most this many layer names on the x axis: beyond it every k-th layer is named (and the largest
# bars are named above them).
MAX_LABELLED_LAYERS = 60
# The largest bars named above the bars when not every layer is named on the axis.
TOP_NAMED = 6


def load_layers(conn, run_id):
    return pd.read_sql_query(
        "SELECT idx, name, op, bound, time_s, cycles, energy_j, energy_compute_j, energy_memory_j, "
        "energy_static_j FROM layers WHERE run_id = ? ORDER BY idx",
        conn,
        params=(run_id,),
    )


def parallel_of(conn, run_id):
    """(ranks, whole step's energy in J) of a run with a parallel plan, else None: its layer rows are rank
    0's, the runs row's totals the whole step's (README "Parallel plans")."""
    has = conn.execute("SELECT 1 FROM sqlite_schema WHERE type = 'table' AND name = 'parallel_runs'").fetchone()
    if not has:
        return None
    row = conn.execute("SELECT p.ranks, r.total_energy_j FROM parallel_runs p JOIN runs r USING (run_id) "
                       "WHERE run_id = ?", (run_id,)).fetchone()
    return (int(row[0]), row[1]) if row else None


def title_of(run):
    detail = ", ".join(
        str(v) for v in (run["mode"], run["dtype"], f"batch {run['batch']}", f"run {run['run_id']}",
                         run.get("rank_note")) if v
    )
    return f"{run['device'] or '?'} / {run['model'] or '?'}\n{detail}"


def short(name, width=22):
    name = str(name)
    return name if len(name) <= width else name[: width - 1] + "…"


def label_layers(ax, layers, values=None):
    """Layer names on the x axis (every k-th when there are many), and, when not all are shown, the
    names of the largest `values` above their bars."""
    n = len(layers)
    step = max(1, math.ceil(n / MAX_LABELLED_LAYERS))
    ticks = list(range(0, n, step))
    ax.set_xticks(ticks)
    ax.set_xticklabels([short(layers["name"].iloc[i]) for i in ticks], rotation=90, fontsize=6)
    every = "" if step == 1 else f"; every {step}{'nd' if step == 2 else 'rd' if step == 3 else 'th'} named"
    ax.set_xlabel(f"layer (execution order, {n} layers{every})")
    if step > 1 and values is not None:
        for i in values.nlargest(TOP_NAMED).index:
            pos = layers.index.get_loc(i)
            ax.annotate(short(layers["name"].loc[i]), (pos, values.loc[i]), textcoords="offset points",
                        xytext=(0, 3), ha="center", va="bottom", fontsize=7, rotation=0, color="dimgray")


def draw_time(run, layers, use_cycles, out_path):
    raw = layers["cycles" if use_cycles else "time_s"].fillna(0).astype(float)
    # Seconds in a human-scale unit (µs, ms); cycles as counted.
    factor, unit = (1, "cycles") if use_cycles else scale_for(raw, "s")
    values = raw / factor
    bounds = layers["bound"].fillna("unknown").replace("", "unknown")
    colours = [colour_for(b, SPARE_COLOURS) for b in bounds]
    total = raw.sum()

    fig, ax = plt.subplots(figsize=(max(8, min(20, len(layers) * 0.12)), 5.5), dpi=120)
    ax.bar(range(len(layers)), values, color=colours, width=0.85)
    handles = []
    for bound in sorted(bounds.unique()):
        share = raw[bounds == bound].sum() / total if total > 0 else 0
        handles.append(plt.Rectangle((0, 0), 1, 1, color=BOUND_COLOURS[bound],
                                     label=f"{bound}-bound ({share:.0%} of the {'cycles' if use_cycles else 'time'})"))
    # Above the axes, right: the names over the tallest bars must not run under it.
    ax.legend(handles=handles, loc="lower right", bbox_to_anchor=(1, 1.0), ncol=len(handles), fontsize=8,
              frameon=False)
    # Layer times often span decades (a 1x1 add next to a big convolution): a log axis shows them all.
    log = spans_decades(values)
    if log:
        ax.set_yscale("log")
        ax.yaxis.set_major_formatter(FuncFormatter(lambda v, _p: f"{v:g}"))  # 0.01, not 10^-2
    ax.set_ylabel(f"{'cycles' if use_cycles else 'time'} per layer ({unit}{', log scale' if log else ''})")
    label_layers(ax, layers, values)
    bottom, top = ax.get_ylim()
    ax.set_ylim(bottom, top * (3 if log else 1.12))  # room for the names above the tallest bars
    ax.set_xlim(-0.6, len(layers) - 0.4)
    ax.grid(True, axis="y", linestyle=":", linewidth=0.6)
    total_text = f"{total:.4g} cycles" if use_cycles else si(total, "s")
    ax.set_title(f"{'Cycles' if use_cycles else 'Time'} per layer: {title_of(run)}; total {total_text}", fontsize=10,
                 loc="left")
    fig.tight_layout()
    fig.savefig(out_path)
    plt.close(fig)


def draw_energy(run, layers, out_path):
    parts = layers[[c for c, _, _ in COMPONENTS]].fillna(0)
    by_op = layers.assign(**{c: parts[c] for c, _, _ in COMPONENTS}).groupby("op", sort=False)[
        [c for c, _, _ in COMPONENTS]].sum()
    by_op = by_op.loc[by_op.sum(axis=1).sort_values(ascending=False).index]
    # Joules in a human-scale unit for each panel (stacked bars: linear axes, so the parts add up).
    f_op, u_op = scale_for(by_op.sum(axis=1), "J")
    f_layer, u_layer = scale_for(parts.sum(axis=1), "J")

    fig, (ax_op, ax_layer) = plt.subplots(2, 1, figsize=(max(8, min(20, len(layers) * 0.12)), 8.5), dpi=120,
                                          gridspec_kw={"height_ratios": [1, 1.4]})
    bottom_op = pd.Series(0.0, index=by_op.index)
    bottom_layer = pd.Series(0.0, index=layers.index)
    totals = {}
    for column, label, colour in COMPONENTS:
        totals[label] = parts[column].sum()
        ax_op.bar(range(len(by_op)), by_op[column] / f_op, bottom=bottom_op, color=colour, width=0.7, label=label)
        bottom_op += by_op[column] / f_op
        ax_layer.bar(range(len(layers)), parts[column] / f_layer, bottom=bottom_layer, color=colour, width=0.85,
                     label=label)
        bottom_layer += parts[column] / f_layer
    grand = sum(totals.values())
    legend = [f"{label} {si(v, 'J')} ({v / grand:.0%})" if grand > 0 else label for label, v in totals.items()]
    ax_op.set_xticks(range(len(by_op)))
    ax_op.set_xticklabels(by_op.index, rotation=30, ha="right", fontsize=8)
    for i, total in enumerate(by_op.sum(axis=1)):  # each kind's total above its bar: small ones stay legible
        ax_op.annotate(si(total, "J"), (i, total / f_op), textcoords="offset points", xytext=(0, 2), ha="center",
                       va="bottom", fontsize=7, color="dimgray")
    ax_op.set_ylabel(f"energy per op kind ({u_op})")
    ax_op.legend(legend, loc="upper right", fontsize=8)
    ax_op.grid(True, axis="y", linestyle=":", linewidth=0.6)
    ax_op.set_title(f"Energy by component: {title_of(run)}; total {si(grand, 'J')}", fontsize=10)
    ax_layer.set_ylabel(f"energy per layer ({u_layer})")
    label_layers(ax_layer, layers, parts.sum(axis=1) / f_layer)
    ax_layer.set_xlim(-0.6, len(layers) - 0.4)
    ax_layer.grid(True, axis="y", linestyle=":", linewidth=0.6)
    fig.tight_layout()
    fig.savefig(out_path)
    plt.close(fig)
    return totals


def main(argv=None):
    parser = argparse.ArgumentParser(description="Per-layer time and energy breakdown of one mlsim run.")
    parser.add_argument("db", help="results database (SQLite file written by mlsim)")
    parser.add_argument("--out", required=True, help="directory for the PNG files (created if missing)")
    parser.add_argument("--run", type=int, help="run_id (default: the ok run with the most layers, latest on a tie)")
    parser.add_argument("--cycles", action="store_true", help="plot device cycles per layer instead of time")
    args = parser.parse_args(argv)

    try:
        conn = open_db(args.db)
        runs = load_runs(conn)
        run_id = args.run if args.run is not None else default_run(runs)
        run = check_run(runs, run_id)
        layers = load_layers(conn, run_id)
        if layers.empty:
            raise UserError(f"run {run_id} has no layers")
        par = parallel_of(conn, run_id)
        run = dict(run)
        run["rank_note"] = f"rank 0's layers of {par[0]} ranks" if par else ""
        use_cycles = args.cycles
        if use_cycles and not (layers["cycles"].fillna(0) > 0).any():
            print(f"warning: run {run_id} records no cycles; plotting time instead", file=sys.stderr)
            use_cycles = False
        os.makedirs(args.out, exist_ok=True)
        time_path = os.path.join(args.out, "breakdown_time.png")
        energy_path = os.path.join(args.out, "breakdown_energy.png")
        draw_time(run, layers, use_cycles, time_path)
        totals = draw_energy(run, layers, energy_path)
        grand = sum(totals.values())
        split = ", ".join(f"{k} {v / grand:.1%}" for k, v in totals.items()) if grand > 0 else "no energy"
        whose = ""
        if par:
            step = f"; the whole step's {si(par[1], 'J')} is in runs.total_energy_j" if par[1] is not None else ""
            whose = f" (rank 0 of {par[0]}{step})"
        print(f"run {run_id}: {len(layers)} layers; energy {si(grand, 'J')}{whose} ({split}) -> {time_path}, "
              f"{energy_path}")
    except UserError as e:
        print(f"breakdown.py: error: {args.db}: {e}", file=sys.stderr)
        return 2
    except (sqlite3.DatabaseError, PandasDatabaseError) as e:
        print(f"breakdown.py: error: {args.db}: cannot read the database: {e}", file=sys.stderr)
        return 2
    except OSError as e:
        print(f"breakdown.py: error: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
