#!/usr/bin/env python3
"""STREAM Triad on one AMD EPYC 9654 socket: 378 GB/s measured of 460.8 GB/s peak (12 x DDR5-4800),
82 % (the figure issue 10 gives; the roofline gives 460.8, 18 % too fast).

    /usr/bin/python3 analysis/reproduce/cpu_stream_epyc.py [--mlsim build/mlsim]

Triad a = b + s.c moves two arrays in and one out; mlsim's `add` of two vectors moves exactly the same
bytes with the same 2:1 read/write mix (the scalar multiply costs no memory traffic), so the model is
one add of two 2^27-element fp32 vectors (512 MiB each, 4x the 384 MB of L3 as STREAM's rule asks).
The figure is bytes / (time - op_overhead). mlsim's DRAM model (arch/cpu/cpu_spec.h, DramParams):
JEDEC DDR5 refresh (tRFC1 295 ns / tREFI 3.9 us) and bus turnarounds per write burst (15 ns per 32
lines, est.). Tolerance: 378 +- 5 % (359-397): STREAM results on one platform spread by several percent
with BIOS settings (NPS mode, DIMM population) and compiler; mlsim models neither.
"""
import sys

from cpu_common import Run, args, report

MODEL = """name: stream-add
inputs:
  b: [134217728]
  c: [134217728]
ops:
  - {name: triad, kind: add, inputs: [b, c]}
"""


def main():
    a = args(__doc__)
    r = Run(a.mlsim)
    rows = r.layers("epyc-9654", r.write("stream.yaml", MODEL))
    t = rows[0]
    # DRAM bytes (2 x 512 MiB in, 512 MiB out) over the time less the op's fork/join overhead, which
    # STREAM's timed loop does not see.
    gbs = (t["bytes_read"] + t["bytes_written"]) / (t["time_s"] - t["overhead_s"]) / 1e9
    return report("STREAM Triad, EPYC 9654 socket", gbs, "378 of 460.8", 359.1, 396.9, "GB/s",
                  "issue 10 (one EPYC 9654 socket, 12 x DDR5-4800)", value=378)


if __name__ == "__main__":
    sys.exit(main())
