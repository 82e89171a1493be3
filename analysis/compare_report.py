#!/usr/bin/python3
"""Report of an `mlsim compare` study: report.md and four plots, from the results database only.

    /usr/bin/python3 analysis/compare_report.py results/compare.db [--compare-id N] --out results/compare

Reads the `comparisons` table (schema 7; one row per workload x system pair, see db/results_db.h) of one
study (default: the latest) and writes, into --out:
  latency_energy.png  latency vs energy per sample (log-log), one colour per workload, one marker per
                      system, each workload's Pareto front (no other system is both faster and cheaper
                      in energy) as a dashed step line
  perf_per_watt.png   samples per joule (= samples/s per watt) per pair, log axis
  roofline.png        each system's device roofline (peak for the run's data type, main-memory bandwidth)
                      with its ridge point, and the pairs at (FLOP per main-memory byte, achieved FLOP/s per
                      device)
  breakdown.png       each pair's time split: compute, memory, communication (exposed), overhead
  report.md           the table, the pairs that did not run and why, the plots and the rules
A large study stays drawable: the bar charts show at most MAX_BARS pairs (the highest samples/J, or the first
in table order) and say so in their titles, legends at most MAX_LEGEND entries, labels MAX_LABEL characters.
"""
import argparse
import math
import os
import sqlite3
import sys

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import pandas as pd  # noqa: E402
from matplotlib.ticker import FuncFormatter  # noqa: E402

# Bars drawn at most in the per-pair bar charts (a study of thousands of pairs would make an image taller than
# matplotlib draws, and unreadable long before): the chart names how many of the pairs it shows.
MAX_BARS = 60
# Characters of a workload or system name kept in the plots' labels and legends (report.md keeps them whole).
MAX_LABEL = 40
PREFIXES = [(1e15, "P"), (1e12, "T"), (1e9, "G"), (1e6, "M"), (1e3, "k"), (1, ""), (1e-3, "m"),
            (1e-6, "µ"), (1e-9, "n"), (1e-12, "p")]
MARKERS = ["o", "s", "^", "D", "v", "P", "X", "*", "<", ">", "h", "p"]


def human(value, unit="", small=True):
    """Fixed-point, three significant digits, decimal prefix: 12.3 ms, 4.85 mJ, 215 k."""
    if value is None or not math.isfinite(value):
        return "-"
    if value == 0:
        return f"0 {unit}".strip()
    a = abs(value)
    choices = PREFIXES if small else PREFIXES[:6]
    scale, prefix = choices[-1]
    for s, p in choices:
        if a >= s * 0.9995:
            scale, prefix = s, p
            break
    m = value / scale
    text = f"{m:.0f}" if abs(m) >= 99.95 else f"{m:.1f}" if abs(m) >= 9.995 else f"{m:.2f}"
    if abs(m) < 0.995:
        text = f"{m:.{min(12, 2 - math.floor(math.log10(abs(m))))}f}"
    return f"{text} {prefix}{unit}".strip()


def duration(s):
    if s is None or not math.isfinite(s):
        return "-"
    if s < 60:
        return human(s, "s")
    if s < 3600:
        return f"{s / 60:.3g} min"
    if s < 2 * 86400:
        return f"{s / 3600:.3g} h"
    return f"{s / 86400:.3g} d"


def tick(unit):
    """Tick labels with a decimal prefix and the unit ("100 ms"); a count without a unit takes no prefix below 1,
    which would read as one ("1.00 m" samples per joule looked like metres): 0.001, 0.01, 1, 1.00 k."""
    if unit:
        return FuncFormatter(lambda v, _pos: human(v, unit) if v > 0 else "")
    return FuncFormatter(lambda v, _pos: (f"{v:g}" if v < 1 else human(v, "", False)) if v > 0 else "")


# Legend entries drawn at most per legend; the rest are counted in one last entry.
MAX_LEGEND = 15


def capped(handles, what):
    """At most MAX_LEGEND legend handles, the last saying how many more there are."""
    if len(handles) <= MAX_LEGEND:
        return handles
    more = plt.Line2D([], [], linestyle="", label=f"... and {len(handles) - MAX_LEGEND + 1} more {what}")
    return handles[:MAX_LEGEND - 1] + [more]


def human_log_axis(axis, unit):
    """Human-scale labels on a log axis: the decades, and when the axis spans less than about a decade (where
    matplotlib labels only its minor ticks, in scientific notation) the minor ticks at 2, 3 and 5 as well."""
    axis.set_major_formatter(tick(unit))

    def minor(v, _pos):
        lo, hi = sorted(axis.get_view_interval())
        if v <= 0 or lo <= 0 or hi / lo > 20:
            return ""
        mantissa = v / 10 ** math.floor(math.log10(v) + 1e-9)
        return tick(unit)(v, None) if any(abs(mantissa - m) < 1e-6 for m in (2, 3, 5)) else ""

    axis.set_minor_formatter(FuncFormatter(minor))


def load(db, compare_id):
    con = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    try:
        if compare_id is None:
            row = con.execute("SELECT MAX(compare_id) FROM comparisons").fetchone()
            if row is None or row[0] is None:
                sys.exit(f"{db}: no comparisons (run mlsim compare first)")
            compare_id = row[0]
        df = pd.read_sql_query(
            "SELECT c.*, r.device, r.dtype, r.model, r.mode FROM comparisons c JOIN runs r USING (run_id) "
            "WHERE compare_id = ? ORDER BY idx", con, params=(compare_id,))
    finally:
        con.close()
    if df.empty:
        sys.exit(f"{db}: no comparison with compare_id {compare_id}")
    return compare_id, df


def pareto(points):
    """Points (x, y) not dominated by another point with x and y both no larger, sorted by x."""
    front, best_y = [], math.inf
    for x, y in sorted(points):
        if y < best_y:
            front.append((x, y))
            best_y = y
    return front


def colours(names):
    cmap = plt.get_cmap("tab10")
    return {n: cmap(i % 10) for i, n in enumerate(names)}


def plot_latency_energy(ok, out):
    workloads = list(dict.fromkeys(ok.workload))
    systems = list(dict.fromkeys(ok.system))
    col, mark = colours(workloads), {s: MARKERS[i % len(MARKERS)] for i, s in enumerate(systems)}
    fig, ax = plt.subplots(figsize=(10, 6.5))
    for w in workloads:
        sub = ok[ok.workload == w]
        for _, r in sub.iterrows():
            ax.scatter(r.latency_s, r.energy_per_sample_j, color=col[w], marker=mark[r.system], s=70,
                       edgecolors="black", linewidths=0.5, zorder=3)
        front = pareto(list(zip(sub.latency_s, sub.energy_per_sample_j)))
        if len(front) > 1:
            xs, ys = zip(*front)
            ax.step(xs, ys, where="post", color=col[w], linestyle="--", linewidth=1.2, zorder=2)
    ax.set_xscale("log")
    ax.set_yscale("log")
    human_log_axis(ax.xaxis, "s")
    human_log_axis(ax.yaxis, "J")
    ax.set_xlabel("latency of one batch (training: one step)")
    ax.set_ylabel("energy per sample (whole system)")
    ax.set_title("Latency vs energy per sample; dashed: each workload's Pareto front")
    ax.grid(True, which="both", alpha=0.3)
    h_w = [plt.Line2D([], [], color=col[w], marker="o", linestyle="--", label=short(w)) for w in workloads]
    h_s = [plt.Line2D([], [], color="grey", marker=mark[s], linestyle="", label=f"{short(s)} ({short(d)})")
           for s, d in dict(zip(ok.system, ok.device_label)).items()]
    leg = ax.legend(handles=capped(h_w, "workloads"), title="workload", loc="upper left", fontsize=8,
                    title_fontsize=8)
    plain(leg.get_texts())
    ax.add_artist(leg)
    plain(ax.legend(handles=capped(h_s, "systems"), title="system (device)", loc="lower right", fontsize=8,
                    title_fontsize=8).get_texts())
    fig.tight_layout()
    fig.savefig(os.path.join(out, "latency_energy.png"), dpi=110)
    plt.close(fig)


def short(name):
    """A name for a plot's label or legend, on one line, cut to MAX_LABEL characters (an ellipsis marks the
    cut)."""
    name = " ".join(str(name).splitlines())
    return name if len(name) <= MAX_LABEL else name[:MAX_LABEL - 1] + "…"


def plain(texts):
    """Texts that show names (legend entries, tick labels) as they are written: a '$' in a workload's name
    starts no mathematical text (two of them around something matplotlib cannot parse stopped the drawing).
    The axes' own tick labels keep theirs (10^2 on a log axis). Returns the texts."""
    for t in texts:
        t.set_parse_math(False)
    return texts


def at_most_bars(ok, title, by=None):
    """The rows a bar chart draws (all, or MAX_BARS of them: the first in table order, or the largest `by`),
    and its title saying so."""
    if len(ok) <= MAX_BARS:
        return ok, title
    rows = ok.nlargest(MAX_BARS, by) if by else ok.head(MAX_BARS)
    which = "highest" if by else "first"
    return rows.reset_index(drop=True), f"{title} (the {MAX_BARS} {which} of {len(ok)} pairs)"


def plot_perf_per_watt(ok, out):
    workloads = list(dict.fromkeys(ok.workload))
    col = colours(workloads)
    ok, title = at_most_bars(ok, "Throughput per watt", by="samples_per_s_per_w")
    labels = [f"{short(r.workload)} | {short(r.system)}" for r in ok.itertuples()]
    fig, ax = plt.subplots(figsize=(10, 0.32 * len(ok) + 1.5))
    y = range(len(ok))
    ax.barh(list(y), ok.samples_per_s_per_w, color=[col[w] for w in ok.workload], edgecolor="black",
            linewidth=0.4)
    vals = ok.samples_per_s_per_w
    hi = vals.max()
    lo = vals[vals > 0].min() if (vals > 0).any() else hi
    # A log axis where the bars span decades (an MCU beside a DGX), from the decade below the smallest so that
    # every bar shows; otherwise a linear one from 0, where the bars' lengths compare as their values do.
    log = hi > 0 and hi / lo > 20
    for i, v in zip(y, vals):
        ax.text(v * 1.05 if log else v + 0.01 * hi, i, human(v, "", small=False), va="center", fontsize=7)
    ax.set_yticks(list(y))
    plain(ax.set_yticklabels(labels, fontsize=8))
    ax.invert_yaxis()
    if log:
        ax.set_xscale("log")
        human_log_axis(ax.xaxis, "")
        ax.set_xlim(left=10 ** math.floor(math.log10(lo)), right=hi * 4)
    else:
        ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _: human(v, "", small=False)))
        ax.set_xlim(left=0, right=max(hi, 1e-300) * 1.15)
    ax.set_xlabel("samples per joule (= samples/s per watt of average power, whole system)")
    ax.set_title(title)
    ax.grid(True, axis="x", which="both", alpha=0.3)
    fig.tight_layout()
    fig.savefig(os.path.join(out, "perf_per_watt.png"), dpi=110)
    plt.close(fig)


def plot_roofline(ok, out):
    pts = ok[(ok.bytes_per_sample > 0) & (ok.flops_per_sample > 0)].copy()
    pts["intensity"] = pts.flops_per_sample / pts.bytes_per_sample
    pts["achieved"] = pts.flops_per_sample * pts.samples_per_s / pts.devices
    # One roofline per device and data type (systems of the same device share it).
    roofs = pts.drop_duplicates(["device", "dtype"])[["device", "dtype", "peak_flops_per_s", "mem_bandwidth_Bps"]]
    workloads = list(dict.fromkeys(pts.workload))
    col = colours(workloads)
    devs = list(dict.fromkeys(roofs.device + " " + roofs.dtype))
    mark = {d: MARKERS[i % len(MARKERS)] for i, d in enumerate(devs)}
    lo = min(pts.intensity.min(), (roofs.peak_flops_per_s / roofs.mem_bandwidth_Bps).min()) / 10
    hi = max(pts.intensity.max(), (roofs.peak_flops_per_s / roofs.mem_bandwidth_Bps).max()) * 10
    fig, ax = plt.subplots(figsize=(10, 6.5))
    line_colours = plt.get_cmap("Dark2")
    styles = ["-", "--", "-.", ":"]
    for i, r in enumerate(roofs.itertuples()):
        ridge = r.peak_flops_per_s / r.mem_bandwidth_Bps
        xs = [lo, ridge, hi]
        ys = [r.mem_bandwidth_Bps * lo, r.peak_flops_per_s, r.peak_flops_per_s]
        shade = line_colours(i % 8)
        name = f"{r.device} {r.dtype}"
        ax.plot(xs, ys, color=shade, linewidth=1.4, linestyle=styles[(i // 8) % 4])
        ax.plot([ridge], [r.peak_flops_per_s], marker=mark[name], color=shade, markersize=9,
                linestyle=styles[(i // 8) % 4],
                label=f"{short(name)}: ridge {ridge:.3g} FLOP/B, peak {human(r.peak_flops_per_s, 'FLOP/s')}")
    for r in pts.itertuples():
        ax.scatter(r.intensity, r.achieved, color=col[r.workload], marker=mark[f"{r.device} {r.dtype}"], s=60,
                   edgecolors="black", linewidths=0.5, zorder=3)
    ax.set_xscale("log")
    ax.set_yscale("log")
    human_log_axis(ax.yaxis, "FLOP/s")
    ax.set_xlabel("operational intensity (FLOP per main-memory byte, whole workload)")
    ax.set_ylabel("achieved FLOP/s per device")
    ax.set_title("Roofline per device (lines, ridge marked) and the workloads\n"
                 "(points: colour = workload, marker = device)")
    ax.grid(True, which="both", alpha=0.3)
    leg = ax.legend(handles=capped(ax.get_legend_handles_labels()[0], "devices"), loc="lower right", fontsize=7,
                    title="device and data type", title_fontsize=8)
    plain(leg.get_texts())
    ax.add_artist(leg)
    plain(ax.legend(handles=capped([plt.Line2D([], [], color=col[w], marker="o", linestyle="", label=short(w))
                                    for w in workloads], "workloads"),
                    loc="upper left", fontsize=8, title="workload", title_fontsize=8).get_texts())
    fig.tight_layout()
    fig.savefig(os.path.join(out, "roofline.png"), dpi=110)
    plt.close(fig)


def plot_breakdown(ok, out):
    parts = [("compute_s", "compute", "#4c72b0"), ("memory_s", "memory", "#dd8452"),
             ("communication_s", "communication (exposed)", "#c44e52"), ("overhead_s", "overhead", "#8c8c8c")]
    ok, title = at_most_bars(ok, "Where the time goes: compute / memory / communication / overhead")
    total = sum(ok[p] for p, _, _ in parts)
    labels = [f"{short(r.workload)} | {short(r.system)}" for r in ok.itertuples()]
    fig, ax = plt.subplots(figsize=(10, 0.32 * len(ok) + 1.5))
    left = [0.0] * len(ok)
    y = list(range(len(ok)))
    for p, name, colour in parts:
        share = (100 * ok[p] / total).fillna(0).tolist()
        ax.barh(y, share, left=left, color=colour, label=name, edgecolor="white", linewidth=0.4)
        left = [a + b for a, b in zip(left, share)]
    ax.set_yticks(y)
    plain(ax.set_yticklabels(labels, fontsize=8))
    ax.invert_yaxis()
    ax.set_xlim(0, 100)
    ax.set_xlabel("share of the time (%), summed over layers of one device (parallel runs: the critical rank)")
    ax.set_title(title)
    ax.legend(loc="lower center", bbox_to_anchor=(0.5, 1.06), ncol=4, fontsize=8)
    fig.tight_layout()
    fig.savefig(os.path.join(out, "breakdown.png"), dpi=110)
    plt.close(fig)


def md(text):
    """A name as Markdown text: its characters that Markdown reads as syntax (a table cell's |, emphasis, code,
    links, HTML) escaped, and a line break as a space, so that a name shows as written and keeps the table's
    columns."""
    text = " ".join(str(text).splitlines())
    return "".join("\\" + c if c in "\\|*_`[]<>#" else c for c in text)


def report(df, ok, compare_id, db, out):
    name = df.name.iloc[0]
    lines = [f"# mlsim compare: {md(name)}", "",
             f"compare_id {compare_id} in `{db}` ({len(df)} pairs, {len(ok)} ran). Figures are for the whole "
             "system: energy per sample x samples/s = average power; TDP = the summed TDP of the devices that run; "
             "samples/J = samples/s per watt; cost from the system file's `system.price` "
             "(rule in configs/README.md, \"A compare file\"). A system of N devices runs a workload without "
             "a parallel plan as N independent replicas (in a mixed system, N devices of its default type).", "",
             "| workload | system | devices | batch | latency | samples/s | energy/sample | power | of TDP | "
             "samples/J | $/M samples | time to train |",
             "|---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for r in df.itertuples():
        if r.status != "ok":
            lines.append(f"| {md(r.workload)} | {md(r.system)} | {md(r.device_label)} | {r.batch} | "
                         f"{'not modelled' if r.status == 'not_modelled' else 'does not run'} (below) "
                         "| | | | | | | |")
            continue
        tdp = f"{100 * r.average_power_w / r.system_tdp_w:.0f}%" if r.system_tdp_w and r.system_tdp_w > 0 else "-"
        cost = "-" if pd.isna(r.usd_per_million_samples) else f"${human(r.usd_per_million_samples, '', False)}"
        ttt = "-" if pd.isna(r.time_to_train_s) else duration(r.time_to_train_s)
        lines.append(f"| {md(r.workload)} | {md(r.system)} | {md(r.device_label)} | {r.batch} | "
                     f"{human(r.latency_s, 's')} | "
                     f"{human(r.samples_per_s, '', False)} | {human(r.energy_per_sample_j, 'J')} | "
                     f"{human(r.average_power_w, 'W')} | {tdp} | {human(r.samples_per_s_per_w, '', False)} | "
                     f"{cost} | {ttt} |")
    bad = df[df.status != "ok"]
    if not bad.empty:
        lines += ["", "## Pairs that did not run", ""]
        for r in bad.itertuples():
            lines.append(f"- **{md(r.workload)} on {md(r.system)}**: {' '.join(str(r.error).splitlines())}")
    lines += ["", "## Plots", "",
              "![latency vs energy per sample](latency_energy.png)", "",
              "![throughput per watt](perf_per_watt.png)", "",
              "![roofline](roofline.png)", "",
              "![time breakdown](breakdown.png)", ""]
    with open(os.path.join(out, "report.md"), "w", encoding="utf-8") as f:
        f.write("\n".join(lines))


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("db")
    ap.add_argument("--compare-id", type=int, help="the study (default: the latest in the file)")
    ap.add_argument("--out", default="results/compare", help="folder for report.md and the plots")
    args = ap.parse_args()
    compare_id, df = load(args.db, args.compare_id)
    df["device_label"] = [f"{d} x {dev}" if d > 1 else dev for d, dev in zip(df.devices, df.device)]
    os.makedirs(args.out, exist_ok=True)
    ok = df[df.status == "ok"].reset_index(drop=True)
    if not ok.empty:
        ok = ok.assign(workload=ok.workload.map(short), system=ok.system.map(short))
        plot_latency_energy(ok, args.out)
        plot_perf_per_watt(ok, args.out)
        plot_roofline(ok, args.out)
        plot_breakdown(ok, args.out)
    report(df, ok, compare_id, args.db, args.out)
    print(f"report: {os.path.join(args.out, 'report.md')} and {4 if not ok.empty else 0} plots")


if __name__ == "__main__":
    main()
