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

How mlsim runs each case: the zoo's dlrm-dle (dlrm-mlperf, 26 one-hot tables of dim 128 at the MLPerf
40 M-row cap: 24.0 B parameters, close to the "large" model's 22.8 B, with the interaction output padded
479 -> 480 as both examples pad it for the tensor cores: PyTorch dlrm/nn/interactions.py padding_size, TF2
nn/dense_model.py _compute_padding, which also pads the bottom MLP's 13 inputs to 16, not modelled; its
per-sample work does not depend on the row counts, since a one-hot bag reads one row whatever the table's
size, so the same model stands in for the "small" one on one GPU, its tables capped at 5 M rows to take the
small model's memory: SMALL_CAP), --mode training, --dtype fp16 with --embedding-dtype fp32 for mixed
precision (both examples keep FP32 tables and cast the lookups to FP16: PyTorch's parameters stay FP32 under
AMP and dlrm/nn/parts.py DlrmBottom casts the embedding outputs with .half() before they are concatenated
and sent; TF2's Keras mixed_float16 policy keeps variables in FP32), --optimizer sgd (both examples train
with plain SGD: PyTorch apex FusedSGD for the MLPs and torch.optim.SGD for the tables, dlrm/scripts/main.py;
TF2 --optimizer sgd by default, README "Parameters") with --sparse-optimizer unfused (the tables' SGD is its
own step after the backward wrote their sparse FP32 gradient: main.py weight_update, not FBGEMM's fused
kernel).
The global batch is the same 65,536 on 1 and 8 GPUs (both examples' default batch_size; "8k per GPU" is
64k / 8): the published 1 -> 8 figures are strong scaling, and so is every run here.
On 8 GPUs each example's own placement runs, written as a placement file from its published heuristic
(applied to the zoo's row counts, which decide the membership, not the per-GPU table counts):
- PyTorch (README "Embedding table placement and load balancing"; dlrm/utils/distributed.py
  get_device_mapping and distribute_to_buckets): the bottom MLP model-parallel on GPU 0 for all 64k samples
  with no table there (its output is one more vector of the all-to-all: dlrm/model/distributed.py
  BottomToTop), the tables sorted largest first into the 7 other GPUs, each to the one with the least
  memory so far, at most ceil(26 / 7) = 4 per GPU. mlsim: `dense_bottom: {rank: 0}` and one table-wise
  rank per table.
- TF2 (README "Hybrid-parallel training with Merlin Distributed Embeddings"; main.py defaults
  dist_strategy memory_balanced, column_slice_threshold 5e9 elements; NVIDIA-Merlin/distributed-embeddings
  dist_model_parallel.py: a table over the threshold is column-sliced into the smallest power of two of
  slices under it, the slices sorted by size are dealt to the 8 GPUs in a snake order, slices of one table
  on one GPU merge): the bottom MLP data-parallel. mlsim: table-wise or column-wise tables on those ranks.
On one GPU every table is table-wise on the one rank (the single-device step; fp16 tables fit 80 GB).
The TF32 rows are not run: mlsim's workload data types have no TF32 mode (--dtype fp32 on the a100 preset
runs on the CUDA cores at 19.5 TFLOP/s, where TF32 matmuls use the tensor cores). Nothing is fitted.

Tolerance: +-30 % (framework overheads, data loading and CUDA-graph launch savings are outside the model;
embedding gathers are random row reads whose efficiency the device model bounds by its memory system).
A case outside is GAP unless a KNOWN_GAPS entry explains it within KNOWN_GAP_LIMIT.

usage: dlrm_dgx_a100.py [--mlsim path/to/mlsim]
"""
import math
import os
import re
import subprocess
import sys
import tempfile

import common

PYT = "NVIDIA DeepLearningExamples PyTorch/Recommendation/DLRM/README.md, Training performance DGX A100 80GB"
TF2 = "NVIDIA DeepLearningExamples TensorFlow2/Recommendation/DLRM_and_DCNv2/doc/DLRM.md, Training performance DGX A100 80GB"
TOL = 0.30
KNOWN_GAP_LIMIT = 0.60
# Rows per table of the zoo's dlrm-mlperf and dlrm-dle (workloads/zoo/recsys.cpp, k_criteo_tb_rows), for the placements.
ROWS = [39884406, 39043, 17289, 7420, 20263, 3, 7120, 1543, 63, 38532951, 2953546, 403346, 10,
        2208, 11938, 155, 4, 976, 14, 39979771, 25641295, 39664984, 585935, 12972, 108, 36]
DIM = 128
# One GPU trains the "small" model (frequency threshold 15), whose FP32 tables take ~15 GB (README); its row
# counts are not published. A one-hot lookup's work does not depend on its table's rows, so the rows decide
# only the memory: dlrm-dle's tables capped at 5 M rows take 14.9 GB in FP32 and fit the 80 GB GPU as the
# small model does (uncapped, its 24 B FP32 parameters would not).
SMALL_CAP = 5_000_000


def pytorch_placement(gpus):
    """DeepLearningExamples PyTorch DLRM's get_device_mapping: {table: rank}, and the bottom MLP's rank."""
    if gpus == 1:
        return {t: 0 for t in range(len(ROWS))}, None
    n = gpus - 1 if gpus > 4 else gpus  # more than 4 GPUs: GPU 0 holds the bottom MLP only
    cap = math.ceil(len(ROWS) / n)
    order = sorted(range(len(ROWS)), key=lambda t: -ROWS[t])  # stable: ties keep model order
    open_buckets, full = [[] for _ in range(n)], []
    for t in order:
        open_buckets[0].append(t)
        if len(open_buckets[0]) == cap:
            full.append(open_buckets.pop(0))
        open_buckets.sort(key=lambda b: sum(ROWS[i] for i in b))
    buckets = full + open_buckets
    first = 1 if gpus > 4 else 0
    return {t: first + r for r, b in enumerate(buckets) for t in b}, 0


def tf2_placement(gpus, threshold=5e9):
    """Merlin distributed-embeddings, memory_balanced with column slicing: {table: [ranks]}."""
    slices = []
    for t, rows in enumerate(ROWS):
        size, k = rows * DIM, 1
        while size > threshold:
            k, size = k * 2, size / 2
        k = min(k, gpus, DIM)
        slices += [(rows * (DIM // k), t)] * k
    order = [t for _, t in sorted(slices, reverse=True)]
    ranks = {}
    for i in range(gpus):
        for t in order[i::2 * gpus] + order[2 * gpus - 1 - i::2 * gpus]:
            if i not in ranks.setdefault(t, []):
                ranks[t].append(i)
    return ranks


def placement_file(folder, name, tables, bottom):
    lines = ["embedding_sharding:"]
    if bottom is not None:
        lines.append(f"  dense_bottom: {{rank: {bottom}}}")
    lines.append("  tables:")
    for t in sorted(tables):
        r = tables[t]
        if isinstance(r, list) and len(r) > 1:
            lines.append(f"    emb.{t}: {{kind: column, ranks: [{', '.join(map(str, r))}]}}")
        else:
            lines.append(f"    emb.{t}: {{kind: table, rank: {r[0] if isinstance(r, list) else r}}}")
    path = os.path.join(folder, name)
    with open(path, "w") as f:
        f.write("\n".join(lines) + "\n")
    return path


# (label, system, gpus, per-GPU batch, dtype, framework, published samples/s, source)
CASES = [
    ("DLRM 8x A100 mixed precision 8k/GPU (PyTorch)", "dgx-a100-node", 8, 8192, "fp16", "pyt", 16.5e6, PYT),
    ("DLRM 1x A100 mixed precision 64k (PyTorch)", "a100", 1, 65536, "fp16", "pyt", 4.02e6, PYT),
    ("DLRM 8x A100 mixed precision 8k/GPU (TF2)", "dgx-a100-node", 8, 8192, "fp16", "tf2", 13.8e6, TF2),
    ("DLRM 1x A100 mixed precision 64k (TF2)", "a100", 1, 65536, "fp16", "tf2", 4.55e6, TF2),
]
KNOWN_GAPS = {}
# Findings (before -> after this configuration; see the issue 13 report). Run as dlrm-mlperf with mlsim's
# planner, a data-parallel bottom MLP and Adam, 1 GPU was -7 % / -18 % and 8 GPUs +41 % / +69 %: the 1 -> 8
# scaling 6.3x against the published 4.1x (PyTorch) and 3.0x (TF2).
# - Scaling (PyTorch): the example's placement explains it. Its bottom MLP runs for all 64k samples on
#   GPU 0 (8x the data-parallel share, fwd + bwd) and both all-to-alls wait for it, so GPU 0 is the critical
#   rank (dlrm-dle: 2.54 ms = compute 2.03 ms + the forward and backward all-to-alls 0.26 ms each, exposed).
#   mlsim's 1 -> 8 scaling is now 4.0x against the published 4.1x.
# - Level: with the examples' padded interaction the top MLP's first GEMM runs on the tensor cores (unpadded,
#   K = 479 misses their 8-element alignment and mlsim runs it on the CUDA cores: 8.4 of the 17.6 ms of the
#   unpadded 1-GPU step), and both 1 and 8 GPUs came out ~55-60 % above the published figures with FP16
#   tables and the fused row-wise update (1 GPU: 10.1 ms per 64k step, published 16.3 ms).
# - Embedding path (this stop): the examples' FP32 tables (--embedding-dtype fp32: the rows read, their
#   gradient written and the SGD update in FP32, the pooled vectors cast to FP16) and their unfused SGD
#   (--sparse-optimizer unfused: the gradient written out, then read by the update) take the 1-GPU step to
#   11.3 ms: PyTorch +61 -> +44 %, TF2 +42 -> +27 %. The 8-GPU PyTorch case is unchanged (+56 %): its
#   critical rank is GPU 0, which holds the bottom MLP and no table. Still not modelled: the AMP scaler's
#   unscale and inf check over the sparse gradient (scaler.unscale_(embedding_optimizer): one more read and
#   write of 26 x 64k x 128 x 4 B = 0.87 GB, ~0.9 ms at HBM rate, est.) and the sparse gradient's
#   coalescing (sort and merge of the ids) in torch's sparse add: reported as GAPs.
# - TF2 on 8 GPUs keeps the bottom MLP data-parallel (its memory-balanced placement holds 3-4 lookups per
#   GPU), and runs further above the published figure than its 1-GPU case: the likeliest cause, not
#   modelled, is that it issues its all-to-alls and all-reduce through Horovod, whose background thread
#   negotiates and launches collectives once per cycle (HOROVOD_CYCLE_TIME, default 1 ms since Horovod 0.21:
#   its changelog), so each of the step's 3 dependent collectives waits up to a cycle (est.), and it runs
#   without CUDA graphs where the PyTorch example captures its step in one (README, "--cuda_graphs").
# - The A100's CUDA cores at their documented FP16 rate (whitepaper Table 1: 78 TFLOP/s, 4x FP32; the model
#   had 2x for every GPU) took ~8 % off every step: PyTorch +44 -> +55 % (1 GPU), +56 -> +67 % (8), TF2
#   +27 -> +37 % (1; a GAP since), +131 -> +141 % (8). The gaps are what is not modelled (above), not a
#   constant to tune.


def run(mlsim, system, gpus, per_gpu, dtype, framework, folder):
    if gpus == 1:
        sharding = "table"
    elif framework == "pyt":
        tables, bottom = pytorch_placement(gpus)
        sharding = placement_file(folder, f"pyt{gpus}.yaml", tables, bottom)
    else:
        sharding = placement_file(folder, f"tf2_{gpus}.yaml", tf2_placement(gpus), None)
    cmd = [mlsim, "run", "--system", system, "--model", "dlrm-dle", "--mode", "training", "--dtype", dtype,
           "--optimizer", "sgd", "--batch", str(gpus * per_gpu), "--embedding-sharding", sharding,
           "--embedding-dtype", "fp32", "--sparse-optimizer", "unfused"]
    if gpus == 1:
        cmd += ["--max-table-rows", str(SMALL_CAP)]
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
    folder = tempfile.mkdtemp(prefix="mlsim_dlrm_")
    for label, system, gpus, per_gpu, dtype, framework, published, source in CASES:
        sim = run(mlsim, system, gpus, per_gpu, dtype, framework, folder)
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
