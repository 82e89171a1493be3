#!/usr/bin/env python3
"""Single-thread AVX2 SGEMM: OpenBLAS reaches about 91-92 GFLOP/s on a 3.0 GHz core whose FMA peak is
96 GFLOP/s (2 FMA pipes x 8 FP32 lanes x 2 FLOP x 3.0 GHz), about 95 % (the figure issue 10 gives).

    /usr/bin/python3 analysis/reproduce/cpu_sgemm_avx2.py [--mlsim build/mlsim]

The device is a one-core Haswell-class part written here (Intel Optimization Reference Manual, Haswell:
32 KiB 8-way L1D with 2 x 32 B loads per cycle, 256 KiB 8-way L2 at 64 B per cycle, 16 ymm registers,
FMA latency 5; L3 and DRAM (est.) of a desktop part), held at 3.0 GHz. The model is one 4096 x 4096 x
4096 fp32 GEMM (a linear layer); the figure is FLOPs / (time - op_overhead), with op_overhead 0.
Tolerance: 91.5 +- 4 % (87.8-95.2): the published figure is a range read off a plot, and the kernel
call and C-update overhead in mlsim are estimates (kernel_call_cycles 20, est.).
"""
import sys

from cpu_common import Run, args, report

DEVICE = """device:
  name: avx2-core
  family: cpu
  description: one Haswell-class core at a fixed 3.0 GHz (AVX2, 2 FMA pipes)
  source: Intel 64 and IA-32 Architectures Optimization Reference Manual (Haswell)
  clock: 3.0GHz
  mac_energy: {fp32: 1.38pJ}
  memory:
    - {name: l1d, capacity: 32KiB, bandwidth: 192GB/s, read_energy: 0.75pJ/B}
    - {name: l2, capacity: 256KiB, bandwidth: 192GB/s, read_energy: 3.75pJ/B}
    - {name: l3, capacity: 8MiB, bandwidth: 96GB/s, read_energy: 3.75pJ/B}
    - {name: dram, capacity: 16GiB, bandwidth: 25.6GB/s, read_energy: 358pJ/B}
  static_power: 5W
  tdp: 84W
  op_overhead: 0s
  cpu:
    cores: 1
    simd_width: 256b
    fma_units_per_core: 2
    vector_registers: 16
    fma_latency: 5
    load_ports: 2
    units:
      fp32: {unit: avx2}
    caches:
      l1d: {associativity: 8, latency: 4, bytes_per_cycle: 64B}
      l2: {associativity: 8, latency: 12, bytes_per_cycle: 64B}
      l3: {associativity: 16, latency: 40, bytes_per_cycle: 32B}
    dram: {channels: 2, latency: 80ns, refresh_overhead: 0.045, turnaround: 12ns, miss_buffers: 10}
"""
MODEL = """name: sgemm-4096
inputs:
  x: [4096, 4096]
ops:
  - {name: gemm, kind: linear, inputs: [x], out_features: 4096, bias: false}
"""


def main():
    a = args(__doc__)
    r = Run(a.mlsim)
    rows = r.layers(r.write("avx2-core.yaml", DEVICE), r.write("sgemm.yaml", MODEL))
    gemm = rows[0]
    gflops = gemm["flops"] / (gemm["time_s"] - gemm["overhead_s"]) / 1e9
    return report("single-thread AVX2 SGEMM 4096^3", gflops, "91-92 of 96", 87.8, 95.2, "GFLOP/s",
                  "issue 10 (OpenBLAS, 3.0 GHz AVX2 core)", value=91.5)


if __name__ == "__main__":
    sys.exit(main())
