#!/usr/bin/env python3
"""STREAM-type bandwidth on the Xeon presets (xeon-8380, Ice Lake-SP; xeon-8480, Sapphire Rapids) against
two independent published measurements.

    /usr/bin/python3 analysis/reproduce/cpu_stream_xeon.py [--mlsim build/mlsim]

1. Dell Technologies InfoHub, "Memory Bandwidth for Next-Gen PowerEdge Servers Significantly Improved with
   Sapphire Rapids Architecture" (17 Apr 2023, https://infohub.delltechnologies.com/en-us/p/memory-
   bandwidth-for-next-gen-poweredge-servers-significantly-improved-with-sapphire-rapids-architecture/):
   STREAM Triad on a PowerEdge R760 (Sapphire Rapids, DDR5-4800) is 46 % faster than on a PowerEdge R750
   (Ice Lake-SP, DDR4-3200), both with 8 DIMMs per CPU (53 % with 6). Dell names no SKUs; every 8-channel
   SKU of a generation has the same DRAM. mlsim: STREAM Triad (2 reads : 1 write) on each preset, ratio.
   Tolerance 1.46 +- 4 % (40-52 % faster): a rounded percentage, unnamed SKUs, BIOS settings.
2. RRZE (Erlangen National HPC Center) likwid-bench measurements stored in kerncraft's machine files
   (github.com/RRZE-HPC/kerncraft, examples/machine-files/IcelakeSP_Platinum-8360Y.yml and
   SapphireRapids_Platinum-8470.yml, commit ff9b17c, Sep 2024): kernel `triad_avx512` (a = b + c * d:
   3 reads : 1 write), memory-sized arrays, one socket, all cores: Xeon Platinum 8360Y (Ice Lake-SP, 36
   cores) 169.54 GB/s; Xeon Platinum 8470 (Sapphire Rapids, 52 cores) 247.15 GB/s. mlsim: one `add` of
   three 2^27-element fp32 vectors (the same 3:1 mix) on xeon-8380 / xeon-8480. The SKUs differ from the
   presets' (36 vs 40 and 52 vs 56 cores, same dies and the same 8 DDR4-3200 / DDR5-4800 channels); both
   curves still rise by ~1-2 % per added core at the last point, so the presets' extra cores can add a
   few percent; the DIMM population is not stated. Tolerance +- 8 % on each absolute figure, +- 4 % on
   their ratio (1.458, the same as Dell's 1.46 from a different lab and kernel).

Known gap (printed as KNOWN GAP, not failing while inside its bound): mlsim's Ice Lake-SP socket streams at
91-92 % of its 204.8 GB/s pin rate, against 83 % measured by RRZE (3:1 kernel): 11 % fast. Its Sapphire
Rapids socket (84-86 % of 307.2) is 7 % above RRZE's 8470 figure, inside the tolerance (the 8470 curve is
still rising at 52 cores). So the Sapphire-Rapids-over-Ice-Lake ratio comes out ~4-5 % low (1.39-1.41
against 1.46 from both labs). Likely cause: the DDR4 DramParams of xeon-8380 charge only
refresh (tRFC1 350 ns / tREFI 7.8 us) and a 12 ns (est.) write-to-read turnaround; DDR4's bank-group and
page-miss costs under 40 interleaved streams, and any read-for-ownership of stored lines, are not
modelled. No constant is changed to close it: the preset's constants stay the JEDEC / estimated values
written beside them. The bound asserted keeps the gap from growing: Ice Lake absolute at most +15 %
above the measurement, ratios at least 1.33.
"""
import sys

import common
from cpu_common import Run, args

N = 134217728  # 2^27 fp32 elements = 512 MiB per array


def model(n_in):
    names = "bcd"[:n_in]
    lines = [f"name: stream-{n_in}to1", "inputs:"] + [f"  {x}: [{N}]" for x in names]
    lines += ["ops:", f"  - {{name: triad, kind: add, inputs: [{', '.join(names)}]}}"]
    return "\n".join(lines) + "\n"


def gbs(r, system, path):
    t = r.layers(system, path)[0]
    # DRAM bytes over the time less the op's fork/join overhead, which a benchmark's timed loop does not see.
    return (t["bytes_read"] + t["bytes_written"]) / (t["time_s"] - t["overhead_s"]) / 1e9


def check(name, ours, published, lo, hi, unit, source, gap=None):
    """PASS inside [lo, hi]; KNOWN GAP inside the gap's bound (gap = (lo, hi, cause)); else GAP (fails)."""
    if lo <= ours <= hi:
        tag, rc, note = "PASS", 0, ""
    elif gap and gap[0] <= ours <= gap[1]:
        tag, rc, note = "KNOWN GAP", 0, f"bound {gap[0]:.2f}-{gap[1]:.2f}: {gap[2]}"
    else:
        tag, rc, note = "GAP", 1, f"outside the known-gap bound {gap[0]:.2f}-{gap[1]:.2f}" if gap else ""
    common.report(name, source, f"{published} {unit}", f"{ours:.2f} {unit}", tag, f"{lo:.2f}-{hi:.2f} {unit}",
                  error=ours / ((lo + hi) / 2) - 1, note=note)
    return rc


def main():
    a = args(__doc__)
    r = Run(a.mlsim)
    m2, m3 = r.write("s2.yaml", model(2)), r.write("s3.yaml", model(3))
    icx2, spr2 = gbs(r, "xeon-8380", m2), gbs(r, "xeon-8480", m2)
    icx3, spr3 = gbs(r, "xeon-8380", m3), gbs(r, "xeon-8480", m3)
    print(f"     mlsim 2:1 triad: xeon-8380 {icx2:.1f} GB/s ({icx2 / 204.8:.1%} of 204.8), "
          f"xeon-8480 {spr2:.1f} GB/s ({spr2 / 307.2:.1%} of 307.2)")
    print(f"     mlsim 3:1 triad: xeon-8380 {icx3:.1f} GB/s ({icx3 / 204.8:.1%}), "
          f"xeon-8480 {spr3:.1f} GB/s ({spr3 / 307.2:.1%})")
    ddr4 = "Ice Lake DDR4 efficiency ~11 % optimistic (refresh + turnaround only; see the docstring)"
    rc = 0
    rc |= check("STREAM Triad ratio SPR/ICX (Dell)", spr2 / icx2, "1.46", 1.46 * 0.96, 1.46 * 1.04, "x",
                "Dell InfoHub, R760 vs R750, 8 DIMMs per CPU", gap=(1.33, 1.52, ddr4))
    rc |= check("likwid triad ratio 8470/8360Y (RRZE)", spr3 / icx3, "1.458", 1.458 * 0.96, 1.458 * 1.04,
                "x", "RRZE kerncraft machine files", gap=(1.33, 1.52, ddr4))
    rc |= check("likwid triad, Sapphire Rapids socket (RRZE 8470)", spr3, "247.15", 247.15 * 0.92,
                247.15 * 1.08, "GB/s", "RRZE kerncraft SapphireRapids_Platinum-8470.yml")
    rc |= check("likwid triad, Ice Lake-SP socket (RRZE 8360Y)", icx3, "169.54", 169.54 * 0.92,
                169.54 * 1.08, "GB/s", "RRZE kerncraft IcelakeSP_Platinum-8360Y.yml",
                gap=(169.54 * 0.92, 169.54 * 1.15, ddr4))
    return rc


if __name__ == "__main__":
    sys.exit(main())
