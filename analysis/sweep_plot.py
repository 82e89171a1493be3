#!/usr/bin/python3
"""Plots of one design-space sweep (`mlsim sweep`) from an mlsim results database.

Reads `sweeps`, `sweep_factors`, `runs` and `layers` (read-only) and draws, against one factor of the
sweep, three panels: total time (or, with --cycles, total device cycles), total energy, and
utilization = total FLOPs / (total time x peak FLOP/s of the run's data type). With --lines, one line
per value of a second factor (e.g. one per dataflow).

Usage:
    analysis/sweep_plot.py DB --sweep NAME --x FACTOR [--lines FACTOR] [--where FACTOR=VALUE ...]
                           [--cycles] --out DIR

Factors are named as in the sweep file ("batch", "device.memory[0].capacity"). Any other factor that
varies is held at its first value in sweep order (--where picks another), except factors that move
with the x or lines factor (zipped with it), which follow it. A factor whose values are all numbers
or quantities ("8MiB", "2039GB/s") gets a numeric axis in SI units (log-scaled when its values span
more than a factor of 8); otherwise its values are spaced evenly in sweep order.

Time and energy are drawn in human-scale units (µs, ms, mJ), on a log axis when they span more than a
decade; the line legend names the lines' factor and values, the title the model and device.

Output: DIR/sweep_<NAME>.png, and DIR/sweep_<NAME>.csv with one row per point plotted.
Exit status: 0 done, 2 bad input (missing database or sweep, unknown factor, no ok points).
"""

import argparse
import os
import re
import sqlite3
import sys

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402  (the backend must be chosen first)
import matplotlib.ticker  # noqa: E402

from roofline import PandasDatabaseError, UserError, open_db, scale_for, si, spans_decades  # noqa: E402
import pandas as pd  # noqa: E402

METRICS_TIME = ("total_time_s", "total time")
METRICS_CYCLES = ("total_cycles", "total cycles")
# Up to this many distinct x values are labelled with their text from the sweep file.
MAX_TEXT_TICKS = 12


def load_points(conn, sweep):
    tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    if not {"sweeps", "sweep_factors"} <= tables:
        raise UserError("the database holds no sweeps (written by mlsim sweep)")
    names = [r[0] for r in conn.execute("SELECT DISTINCT sweep_name FROM sweeps ORDER BY sweep_name")]
    if sweep not in names:
        raise UserError(f"no sweep '{sweep}' in the database (sweeps: {', '.join(names) or 'none'})")
    points = pd.read_sql_query(
        "SELECT s.point, s.run_id, r.status, r.error, r.device, r.model, r.total_time_s, r.total_energy_j, "
        "r.total_flops, r.peak_flops_per_s, "
        # The run's own total where its layer rows were not recorded (--layer-rows none).
        "COALESCE((SELECT SUM(l.cycles) FROM layers l WHERE l.run_id = r.run_id), r.total_cycles) AS total_cycles "
        "FROM sweeps s JOIN runs r USING (run_id) WHERE s.sweep_name = ? ORDER BY s.point, s.run_id",
        conn,
        params=(sweep,),
    )
    factors = pd.read_sql_query(
        "SELECT run_id, factor, value, value_num FROM sweep_factors WHERE sweep_name = ? ORDER BY rowid", conn,
        params=(sweep,),
    )
    return points, factors


def pick_runs(points):
    """One run per point: its ok run (a failed attempt later retried successfully is dropped)."""
    failed = points[points["status"] != "ok"]
    ok = points[points["status"] == "ok"].drop_duplicates("point", keep="last")
    never_ok = failed[~failed["point"].isin(ok["point"])].drop_duplicates("point")
    return ok, never_ok


def factor_table(factors, run_ids):
    f = factors[factors["run_id"].isin(run_ids)]
    values = f.pivot(index="run_id", columns="factor", values="value")
    nums = f.pivot(index="run_id", columns="factor", values="value_num")
    return values, nums


def order_of(series, by_point):
    """The distinct values of a factor in the order the sweep first visits them."""
    seen = []
    for v in series.loc[by_point]:
        if v not in seen:
            seen.append(v)
    return seen


def parse_where(items, factor_names):
    where = {}
    for item in items or []:
        if "=" not in item:
            raise UserError(f"--where expects FACTOR=VALUE, found '{item}'")
        k, v = item.split("=", 1)
        if k not in factor_names:
            raise UserError(f"--where: no factor '{k}' in the sweep (factors: {', '.join(factor_names)})")
        where[k] = v
    return where


def moves_with(data, factor, leaders):
    """True when `factor` takes one value for each combination of the leaders (a zipped partner)."""
    if not leaders:
        return False
    return bool((data.groupby(leaders, sort=False)[factor].nunique() <= 1).all())


def safe_name(text):
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", text)


def main(argv=None):
    parser = argparse.ArgumentParser(description="Plot one mlsim sweep against one of its factors.")
    parser.add_argument("db", help="results database (SQLite file written by mlsim)")
    parser.add_argument("--sweep", required=True, help="sweep name (sweeps.sweep_name)")
    parser.add_argument("--x", required=True, help="factor on the x axis")
    parser.add_argument("--lines", help="factor with one line per value")
    parser.add_argument("--where", action="append", metavar="FACTOR=VALUE",
                        help="hold another factor at this value (repeatable)")
    parser.add_argument("--cycles", action="store_true", help="plot total device cycles instead of total time")
    parser.add_argument("--out", required=True, help="directory for the PNG and CSV (created if missing)")
    args = parser.parse_args(argv)

    try:
        conn = open_db(args.db)
        points, factors = load_points(conn, args.sweep)
        ok, never_ok = pick_runs(points)
        if ok.empty:
            raise UserError(f"sweep '{args.sweep}' has no point with status 'ok' ({len(never_ok)} failed)")
        values, nums = factor_table(factors, ok["run_id"])
        # In the sweep file's order (the order the rows were written), not alphabetical.
        names = [f for f in factors["factor"].drop_duplicates() if f in values.columns]
        for which, f in (("--x", args.x), ("--lines", args.lines)):
            if f is not None and f not in names:
                raise UserError(f"{which}: no factor '{f}' in sweep '{args.sweep}' (factors: {', '.join(names)})")
        if args.lines == args.x:
            raise UserError("--lines must name another factor than --x")
        where = parse_where(args.where, names)

        data = ok.set_index("run_id").join(values)
        by_point = data.sort_values("point").index
        leaders = [args.x] + ([args.lines] if args.lines else [])
        held = {}
        for f in names:
            if f in leaders or data[f].nunique() <= 1 or moves_with(data, f, leaders):
                continue
            if f in where:
                held[f] = where[f]
            else:
                held[f] = order_of(data[f], by_point)[0]
        for f, v in where.items():
            held.setdefault(f, v)
        for f, v in held.items():
            if v not in set(data[f]):
                raise UserError(f"factor '{f}' has no ok point with value '{v}' (values: "
                                f"{', '.join(order_of(data[f], by_point))})")
            data = data[data[f] == v]

        time_col, time_label = METRICS_CYCLES if args.cycles else METRICS_TIME
        data = data.assign(utilization=data["total_flops"] / (data["total_time_s"] * data["peak_flops_per_s"]))

        x_numeric = nums[args.x].loc[data.index].notna().all()
        x_order = order_of(data[args.x], data.sort_values("point").index)
        if x_numeric:
            data = data.assign(_x=nums[args.x].loc[data.index].astype(float))
        else:
            data = data.assign(_x=data[args.x].map({v: i for i, v in enumerate(x_order)}))
        line_values = order_of(data[args.lines], data.sort_values("point").index) if args.lines else [None]

        # Time and energy in a human-scale unit (µs, ms, mJ), on a log axis when they span more than a decade.
        panels = [(time_col, time_label, None if args.cycles else "s"), ("total_energy_j", "total energy", "J"),
                  ("utilization", "utilization (FLOPs / (time x peak))", None)]
        fig, axes = plt.subplots(1, 3, figsize=(15, 4.6), dpi=120)
        for ax, (col, label, unit) in zip(axes, panels):
            factor, shown = scale_for(data[col], unit) if unit else (1, "")
            for k, lv in enumerate(line_values):
                sel = data if lv is None else data[data[args.lines] == lv]
                sel = sel.sort_values("_x")
                # Markers and dashes differ by line, so that lines lying on one another stay visible.
                ax.plot(sel["_x"], sel[col] / factor, marker="osD^v<>"[k % 7], markersize=5 if k else 6,
                        linewidth=1.4, linestyle=("-", "--", "-.", ":")[k % 4], fillstyle="full" if k else "none",
                        label=None if lv is None else f"{args.lines} = {lv}")
            log_y = col != "utilization" and spans_decades(data[col], 1)
            if log_y:
                ax.set_yscale("log")
                # 1-2-5 in each decade, so that an axis of one or two decades has labels beside "1".
                ax.yaxis.set_major_locator(matplotlib.ticker.LogLocator(base=10, subs=(1.0, 2.0, 5.0)))
                ax.yaxis.set_minor_locator(matplotlib.ticker.LogLocator(base=10, subs=(3.0, 4.0, 6.0, 7.0, 8.0, 9.0)))
                ax.yaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())
                ax.yaxis.set_major_formatter(matplotlib.ticker.FuncFormatter(lambda v, _p: f"{v:g}"))
            ax.set_ylabel(label + (f" ({shown}{', log scale' if log_y else ''})" if shown else
                                   " (log scale)" if log_y else ""))
            ax.set_xlabel(args.x)
            ax.grid(True, linestyle=":", linewidth=0.6)
            if x_numeric:
                xs = data["_x"]
                if xs.min() > 0 and xs.max() / xs.min() > 8:
                    ax.set_xscale("log", base=2 if all(float(v).is_integer() for v in xs) else 10)
                # Label the values as the sweep file wrote them ("4MiB", "2039GB/s") when they are few.
                ticks = data.drop_duplicates("_x").sort_values("_x")
                if len(ticks) <= MAX_TEXT_TICKS:
                    ax.set_xticks(list(ticks["_x"]))
                    ax.set_xticklabels(list(ticks[args.x]), rotation=30, ha="right", fontsize=8)
                    ax.xaxis.set_minor_locator(matplotlib.ticker.NullLocator())
                else:
                    ax.xaxis.set_major_formatter(matplotlib.ticker.EngFormatter())
            else:
                ax.set_xticks(range(len(x_order)))
                ax.set_xticklabels(x_order, rotation=30, ha="right", fontsize=8)
            if col == "utilization":
                ax.set_ylim(0, max(1e-9, float(data["utilization"].max())) * 1.1)
        if args.lines:
            axes[0].legend(fontsize=7)
        held_text = ", ".join(f"{k} = {v}" for k, v in held.items())

        def listed(column):
            """The plotted points' values of a column, in point order: all of them, or three and a count."""
            seen = order_of(data[column].astype(str), data.sort_values("point").index)
            return ", ".join(seen[:3]) + (f" and {len(seen) - 3} more" if len(seen) > 3 else "")
        fig.suptitle(f"sweep '{args.sweep}': {listed('model')} on {listed('device')}"
                     + (f"  (held: {held_text})" if held_text else ""), fontsize=10)
        fig.tight_layout()
        os.makedirs(args.out, exist_ok=True)
        png = os.path.join(args.out, f"sweep_{safe_name(args.sweep)}.png")
        csv = os.path.join(args.out, f"sweep_{safe_name(args.sweep)}.csv")
        fig.savefig(png)
        plt.close(fig)
        columns = ["point"] + names + [time_col, "total_energy_j", "utilization"]
        data.reset_index()[["run_id"] + columns].sort_values("point").to_csv(csv, index=False)

        note = f"sweep '{args.sweep}': {len(data)} of {len(ok)} ok points plotted"
        if held:
            note += f" (held: {held_text})"
        print(f"{note} -> {png}, {csv}")
        if not never_ok.empty:
            print(f"warning: {len(never_ok)} point(s) of the sweep failed and are not drawn, e.g. point "
                  f"{int(never_ok['point'].iloc[0])}: {never_ok['error'].iloc[0]}", file=sys.stderr)
    except UserError as e:
        print(f"sweep_plot.py: error: {args.db}: {e}", file=sys.stderr)
        return 2
    except (sqlite3.DatabaseError, PandasDatabaseError) as e:
        print(f"sweep_plot.py: error: {args.db}: cannot read the database: {e}", file=sys.stderr)
        return 2
    except OSError as e:
        print(f"sweep_plot.py: error: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
