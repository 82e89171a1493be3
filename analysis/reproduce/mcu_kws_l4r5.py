#!/usr/bin/env python3
"""DS-CNN keyword spotting on NUCLEO-L4R5ZI (Cortex-M4 at 120 MHz), int8: the MLPerf Tiny v1.2 result
with ST's optimised runtime, as quoted in issue 11 (43.2 ms and 1,820 uJ per inference), against mlsim's
detailed MCU model on the stm32l4r5 preset.

The model is built from the core's documented instruction timings and the kernels' structure
(arch/mcu/mcu_model.cpp); no constant in it was fitted to this result. The issue's tolerance: latency
within +-25 %, energy within +-30 %. Prints both figures with their errors; exits 1 outside the tolerance,
2 when mlsim fails.

usage: mcu_kws_l4r5.py [[--mlsim] path/to/mlsim]
"""
import os
import re
import subprocess
import sys

import common

MEASURED_S = 43.2e-3
MEASURED_J = 1820e-6
TOL_TIME, TOL_ENERGY = 0.25, 0.30
UNITS = {"ps": 1e-12, "ns": 1e-9, "us": 1e-6, "ms": 1e-3, "s": 1.0}
EUNITS = {"pJ": 1e-12, "nJ": 1e-9, "uJ": 1e-6, "mJ": 1e-3, "J": 1.0}


def main():
    mlsim = common.mlsim_path(sys.argv[1:])
    cmd = [mlsim, "run", "--system", "stm32l4r5", "--model", "ds-cnn-kws", "--dtype", "int8"]
    out = subprocess.run(cmd, capture_output=True, text=True)
    if out.returncode != 0:
        print(out.stderr, file=sys.stderr)
        return 2
    t = re.search(r"^\s*time\s+([0-9.e+-]+)\s*(ps|ns|us|ms|s)\b", out.stdout, re.M)
    e = re.search(r"([0-9.e+-]+) (pJ|nJ|uJ|mJ|J) per inference", out.stdout)
    if not t or not e:
        print("could not read mlsim's time / energy:\n" + out.stdout, file=sys.stderr)
        return 2
    sim_s = float(t.group(1)) * UNITS[t.group(2)]
    sim_j = float(e.group(1)) * EUNITS[e.group(2)]
    et, ee = sim_s / MEASURED_S - 1, sim_j / MEASURED_J - 1
    print(f"DS-CNN KWS on NUCLEO-L4R5ZI, int8 (MLPerf Tiny v1.2, ST optimised runtime)")
    print(f"  latency  measured {MEASURED_S * 1e3:.1f} ms   mlsim {sim_s * 1e3:.2f} ms   error {et:+.1%} "
          f"(tolerance +-{TOL_TIME:.0%})")
    print(f"  energy   measured {MEASURED_J * 1e6:.0f} uJ   mlsim {sim_j * 1e6:.0f} uJ   error {ee:+.1%} "
          f"(tolerance +-{TOL_ENERGY:.0%})")
    source = "MLPerf Tiny v1.2, NUCLEO-L4R5ZI, ST optimised runtime (issue 11)"
    common.report("DS-CNN KWS latency, NUCLEO-L4R5ZI int8", source, f"{MEASURED_S * 1e3:.1f} ms",
                  f"{sim_s * 1e3:.2f} ms", "PASS" if abs(et) <= TOL_TIME else "GAP", f"+-{TOL_TIME:.0%}", error=et)
    common.report("DS-CNN KWS energy per inference, NUCLEO-L4R5ZI int8", source, f"{MEASURED_J * 1e6:.0f} uJ",
                  f"{sim_j * 1e6:.0f} uJ", "PASS" if abs(ee) <= TOL_ENERGY else "GAP", f"+-{TOL_ENERGY:.0%}",
                  error=ee)
    return 0 if abs(et) <= TOL_TIME and abs(ee) <= TOL_ENERGY else 1


if __name__ == "__main__":
    sys.exit(main())
