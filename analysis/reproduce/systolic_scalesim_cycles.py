#!/usr/bin/env python3
"""SCALE-Sim v2's published cycle counts, reproduced by mlsim's systolic model with
`--convention scalesim` (SCALE-Sim's CALC-mode cycle count) through the command line, on SCALE-Sim's own
input formats (a .cfg and topology CSVs).

The figures are "Total Cycles" (less "Stall Cycles" where the run added bandwidth stalls, which CALC mode
does not) from COMPUTE_REPORT.csv files committed in SCALE-Sim v2's repository (scalesim-project/
scale-sim-v2), all on its 32x32 example configuration (configs/scale.cfg, the dataflow set per case):
  * test/general/golden_trace_user_{os,ws,is}/COMPUTE_REPORT.csv: GEMM M = 256, N = 128, K = 256
    (topologies/GEMM_mnk/test_mnk_input.csv) in USER-bandwidth mode: os 52447 - 42272, ws 52447 - 41248,
    is 19984 - 5777;
  * test/golden_trace/COMPUTE_REPORT.csv: ws, AlexNet Conv1 (topologies/conv_nets/alexnet.csv), CALC
    mode, 112283 cycles;
  * rundir-accelergy/output/scale_sim_output_scale_example_run_32x32_os/COMPUTE_REPORT.csv: os,
    Inc5b_3x3 of topologies/conv_nets/test.csv, 21479 cycles.
The same figures are asserted in tests/arch/test_systolic_scalesim.cpp against the model's functions;
this script checks them end to end (loader, CLI, model). Tolerance: exact (the convention is SCALE-Sim's
cycle count, not an estimate of hardware). Exits 0 when all match, 1 otherwise, 2 when mlsim fails.

usage: systolic_scalesim_cycles.py [[--mlsim] path/to/mlsim]
"""
import os
import re
import subprocess
import sys
import tempfile

import common

SOURCE = "SCALE-Sim v2 repository, COMPUTE_REPORT.csv ({}), 32x32 scale.cfg"
# (name, dataflow, topology CSV text, SCALE-Sim cycles, report file)
CASES = [
    ("GEMM 256x128x256", "os", "Layer, M, N, K,\nG, 256, 128, 256,\n", 52447 - 42272,
     "test/general/golden_trace_user_os"),
    ("GEMM 256x128x256", "ws", "Layer, M, N, K,\nG, 256, 128, 256,\n", 52447 - 41248,
     "test/general/golden_trace_user_ws"),
    ("GEMM 256x128x256", "is", "Layer, M, N, K,\nG, 256, 128, 256,\n", 19984 - 5777,
     "test/general/golden_trace_user_is"),
    ("AlexNet Conv1", "ws",
     "Layer name, IFMAP Height, IFMAP Width, Filter Height, Filter Width, Channels, Num Filter, Strides,\n"
     "Conv1, 224, 224, 11, 11, 3, 96, 4,\n", 112283, "test/golden_trace"),
    ("Inception 5b 3x3", "os",
     "Layer name, IFMAP Height, IFMAP Width, Filter Height, Filter Width, Channels, Num Filter, Strides,\n"
     "Inc5b_3x3, 7, 7, 3, 3, 192, 384, 1,\n", 21479, "rundir-accelergy 32x32_os"),
]
# SCALE-Sim's configs/scale.cfg (the 32x32 example), with the dataflow filled in per case.
CFG = """[general]
run_name = scale_example_run_32x32_{df}

[architecture_presets]
ArrayHeight:    32
ArrayWidth:     32
IfmapSramSzkB:    64
FilterSramSzkB:   64
OfmapSramSzkB:    64
IfmapOffset:    0
FilterOffset:   10000000
OfmapOffset:    20000000
Dataflow : {df}
Bandwidth : 10
MemoryBanks: 1

[run_presets]
InterfaceBandwidth: CALC
"""


def main():
    mlsim = common.mlsim_path(sys.argv[1:])
    rc = 0
    with tempfile.TemporaryDirectory() as tmp:
        for k, (name, df, topology, expected, report_file) in enumerate(CASES):
            cfg = os.path.join(tmp, f"scale_{df}.cfg")
            with open(cfg, "w") as f:
                f.write(CFG.format(df=df))
            topo = os.path.join(tmp, f"topology{k}.csv")
            with open(topo, "w") as f:
                f.write(topology)
            cmd = [mlsim, "run", "--system", cfg, "--model", topo, "--convention", "scalesim"]
            out = subprocess.run(cmd, capture_output=True, text=True)
            m = re.search(r"^\s*cycles\s+(\d+)", out.stdout, re.M)
            if out.returncode != 0 or not m:
                sys.stderr.write(f"{' '.join(cmd)} failed:\n{out.stdout}{out.stderr}")
                return 2
            cycles = int(m.group(1))
            rc |= common.report(f"SCALE-Sim cycles, {name}, {df}", SOURCE.format(report_file), f"{expected} cycles",
                                f"{cycles} cycles", "PASS" if cycles == expected else "GAP", "exact",
                                error=cycles / expected - 1)
    return rc


if __name__ == "__main__":
    sys.exit(main())
