#!/usr/bin/env python3
"""DLRM training throughput on 1 and 8 A100 80GB: NVIDIA's published DeepLearningExamples figures against
`mlsim run --embedding-sharding` on the a100 and dgx-a100-node presets (the parallel execution engine
times every rank's program on the detailed GPU model and every collective on the network model).

Sources (NVIDIA/DeepLearningExamples, release 24.03):
- PyTorch/Recommendation/DLRM/README.md, "Training performance: NVIDIA DGX A100 (8x A100 80GB)": 8 GPUs,
  "large" model (Criteo 1TB, frequency threshold 3, 82 GB), 8k samples per GPU: 11,400,000 samples/s TF32,
  16,500,000 mixed precision; 1 GPU, "small" model (threshold 15, 15 GB), 64k: 4,020,000 mixed precision.
- TensorFlow2/Recommendation/DLRM_and_DCNv2/doc/DLRM.md, same table: 8 GPUs large 8k: 10.9M TF32,
  13.8M mixed precision; 1 GPU small 64k: 4.55M mixed precision.
Both implement the MLPerf DLRM architecture (embedding dim 128, bottom 512-256-128, top 1024-1024-512-256-1,
dot interaction; hybrid parallel: tables model-parallel, MLPs data-parallel).

How mlsim runs each case: the zoo's dlrm-mlperf (26 one-hot tables of dim 128, the MLPerf 40 M-row cap:
24.0 B parameters, close to the "large" model's 22.8 B; its per-sample work does not depend on the row
counts, since a one-hot bag reads one row whatever the table's size, so the same model stands in for the
"small" one on one GPU), batch = samples per GPU x GPUs, --mode training, --dtype fp16 for mixed precision
(NVIDIA keeps FP32 tables: mlsim's fp16 tables read half the bytes per lookup, one stated difference),
--embedding-sharding auto (the planner of workloads/embedding_sharding.h) or table on one
GPU (one rank: the single-device step; fp16 tables with one FP32 row-wise Adagrad accumulator per row fit
80 GB). The TF32 rows are not run: mlsim's workload data types have no TF32 mode (--dtype fp32 on the
a100 preset runs on the CUDA cores at 19.5 TFLOP/s, where PyTorch's TF32 matmuls use the tensor cores).
Nothing is fitted.

Tolerance: +-30 % (framework overheads, data loading and CUDA-graph launch savings are outside the model;
embedding gathers are random row reads whose efficiency the device model bounds by its memory system).
A case outside is GAP unless a KNOWN_GAPS entry explains it within KNOWN_GAP_LIMIT.

usage: dlrm_dgx_a100.py [--mlsim path/to/mlsim]
"""
import re
import subprocess
import sys

import common

PYT = "NVIDIA DeepLearningExamples PyTorch/Recommendation/DLRM/README.md, Training performance DGX A100 80GB"
TF2 = "NVIDIA DeepLearningExamples TensorFlow2/Recommendation/DLRM_and_DCNv2/doc/DLRM.md, Training performance DGX A100 80GB"
TOL = 0.30
KNOWN_GAP_LIMIT = 0.60
# (label, system, gpus, per-GPU batch, dtype, sharding, published samples/s, source)
CASES = [
    ("DLRM 8x A100 mixed precision 8k/GPU (PyTorch)", "dgx-a100-node", 8, 8192, "fp16", "auto", 16.5e6, PYT),
    ("DLRM 1x A100 mixed precision 64k (PyTorch)", "a100", 1, 65536, "fp16", "table", 4.02e6, PYT),
    ("DLRM 8x A100 mixed precision 8k/GPU (TF2)", "dgx-a100-node", 8, 8192, "fp16", "auto", 13.8e6, TF2),
    ("DLRM 1x A100 mixed precision 64k (TF2)", "a100", 1, 65536, "fp16", "table", 4.55e6, TF2),
]
KNOWN_GAPS = {}
# Not known gaps, findings (reported as GAP): on 8 GPUs mlsim's step is 2.81 ms (critical rank: compute
# 2.61 ms, exposed pooled-embedding all-to-all 0.13 ms and DDP all-reduce 0.08 ms) where the published
# 16.5 M samples/s implies 3.97 ms (13.8 M: 4.75 ms). The published 1 -> 8 GPU scaling is 4.1x (PyTorch) and
# 3.0x (TF2); mlsim's is 6.3x. The 1-GPU case agrees (-8 %), so the missing time is in what 8 GPUs add:
# the all-to-alls' and NCCL kernels' contention with compute on the same SMs, per-step host work and
# synchronisation, neither of which the engine models (it overlaps communication with compute freely).


def run(mlsim, system, gpus, per_gpu, dtype, sharding):
    cmd = [mlsim, "run", "--system", system, "--model", "dlrm-mlperf", "--mode", "training", "--dtype", dtype,
           "--batch", str(gpus * per_gpu), "--embedding-sharding", sharding]
    p = subprocess.run(cmd, capture_output=True, text=True)
    if p.returncode != 0:
        sys.stderr.write(" ".join(cmd) + "\n" + p.stdout + p.stderr)
        sys.exit(2)
    m = re.search(r"([0-9.]+(?:e[+-]?[0-9]+)?) samples/s", p.stdout)
    if not m:
        sys.stderr.write(p.stdout)
        sys.exit(2)
    return float(m.group(1))


def main():
    argv = sys.argv[1:]
    mlsim = common.mlsim_path(argv)
    bad = 0
    for label, system, gpus, per_gpu, dtype, sharding, published, source in CASES:
        sim = run(mlsim, system, gpus, per_gpu, dtype, sharding)
        err = sim / published - 1
        if abs(err) <= TOL:
            status, note = "PASS", ""
        elif label in KNOWN_GAPS and abs(err) <= KNOWN_GAP_LIMIT:
            status, note = "KNOWN GAP", KNOWN_GAPS[label]
        else:
            status, note = "GAP", KNOWN_GAPS.get(label, "")
        bad |= common.report(label, source, f"{published / 1e6:.2f} M samples/s", f"{sim / 1e6:.2f} M samples/s",
                             status, f"+-{TOL * 100:.0f} %", error=err, note=note)
    return bad


if __name__ == "__main__":
    sys.exit(main())
