#!/usr/bin/python3
"""Check that two mlsim binaries give the same systolic results, to the last bit.

    /usr/bin/python3 bench/check_systolic_identical.py REF NEW [--jobs 2] [--keep DIR]
    /usr/bin/python3 bench/check_systolic_identical.py --dump OUT.txt MLSIM

REF and NEW are each an mlsim binary or a dump file written earlier with --dump. A binary is run on
every zoo model (`mlsim list models`) on every systolic preset (tpu-v1, tpu-v4, scalesim-google,
scalesim-scale, scalesim-eyeriss, ethos-u55) with the preset's default data type; on the scalesim-*
presets again with --convention scalesim; in training mode on tpu-v4 and scalesim-google; and with
batch 8 (the batch split) and int8 on tpu-v4; and seven models on variants of the tpu-v4 preset (the
is and os dataflows, single-buffered buffers, small buffers, a 48x80 array x 3); and, for the detailed GPU model, which shares the engine and the results code,
resnet50 and gpt2-xl-decode on a100 and h100. Then sweeps (`mlsim sweep --jobs 1`, one thread, so that what
the systolic model keeps from one point for the next carries across points): each varies one field the
tile search reads beside the ifmap buffer's capacity, the field fastest, so that a kept plan or evaluation
that wrongly ignored the field would be taken at the next point. Each run goes into a fresh results database, and every
row of `runs` (less wall_s, created_utc, version and the layer-row range), `layers`, `layer_levels` and `layer_metrics` is
written out, floats by their shortest exact decimal (repr), so that two dumps are equal only if every
stored value is bit for bit the same. A run that fails is recorded as its exit status and message, so
errors must match as well.

Exit status: 0 identical, 1 different (a unified diff of the first differences is printed), 2 bad
usage. Used to prove that a speed-up of the systolic model (arch/systolic/tiling.cpp) changes no
result: build the binary before the change, keep it (or its dump), and compare after.
"""
import argparse
import concurrent.futures
import difflib
import os
import sqlite3
import subprocess
import sys
import tempfile

PRESETS = ["tpu-v1", "tpu-v4", "scalesim-google", "scalesim-scale", "scalesim-eyeriss", "ethos-u55"]
# Variants of configs/devices/tpu-v4.yaml (text substitutions) that reach the other dataflows, buffers that
# are not double-buffered, small buffers (many tiles, refetches, kept operands) and other array shapes.
VARIANTS = {
    "v4-is": [("dataflow: ws", "dataflow: is")],
    "v4-os": [("dataflow: ws", "dataflow: os")],
    "v4-single": [("double_buffered: true", "double_buffered: false")],
    "v4-small": [("capacity: 16MiB, bandwidth: 2.15", "capacity: 192KiB, bandwidth: 2.15"),
                 ("capacity: 8MiB, bandwidth: 2.15", "capacity: 96KiB, bandwidth: 2.15")],
    "v4-shape": [("rows: 128", "rows: 48"), ("cols: 128", "cols: 80"), ("arrays: 8", "arrays: 3"),
                 ("dataflow: ws", "dataflow: os")],
}
VARIANT_MODELS = ["lenet5", "resnet50", "mobilenetv2", "ds-cnn-kws", "bert-base", "gpt2-small-decode", "mlp3"]
GPU_PRESETS = ["a100", "h100"]
GPU_MODELS = ["resnet50", "gpt2-xl-decode"]
# first_layer_row, last_layer_row (schema 12): where the run's layer rows sit in the file, not a result.
SKIP_RUN_COLUMNS = {"run_id", "wall_s", "created_utc", "version", "first_layer_row", "last_layer_row"}
# Sweeps on the tpu-v4 preset: name -> (models, factors in order, slowest first). Every sweep varies the ifmap
# buffer's capacity (the window of plan_gemm's memo, tiling.h) and one other field, fastest.
CAPS = "[64KiB, 72KiB, 128KiB, 384KiB, 16MiB]"
SWEEPS = {
    "shape": (["resnet50"], ["device.systolic.dataflow: [ws, os, is]",
                             "device.systolic.buffers.ifmap.capacity: " + CAPS,
                             "device.systolic.rows: [128, 64]"]),
    "filter": (["resnet50", "bert-base"], ["device.systolic.buffers.ifmap.capacity: " + CAPS,
                                           "device.systolic.buffers.filter.capacity: [8MiB, 96KiB, 100KiB]"]),
    "ofmap": (["resnet50", "bert-base"], ["device.systolic.buffers.ifmap.capacity: " + CAPS,
                                          "device.systolic.buffers.ofmap.capacity: [8MiB, 96KiB, 100KiB]"]),
    "ports": (["resnet50"], ["device.systolic.buffers.ifmap.capacity: " + CAPS,
                             "device.systolic.buffers.ifmap.bandwidth: [2.15TB/s, 100GB/s]",
                             "device.systolic.buffers.filter.bandwidth: [2.15TB/s, 100GB/s]",
                             "device.systolic.buffers.ofmap.bandwidth: [2.15TB/s, 100GB/s]"]),
    "double": (["resnet50", "mobilenetv2"], ["device.systolic.buffers.ifmap.capacity: " + CAPS,
                                             "device.systolic.buffers.ifmap.double_buffered: [true, false]",
                                             "device.systolic.buffers.filter.double_buffered: [true, false]",
                                             "device.systolic.buffers.ofmap.double_buffered: [true, false]"]),
    "memory": (["resnet50", "gpt2-small-decode"], ["device.systolic.buffers.ifmap.capacity: " + CAPS,
                                                   "device.memory[1].bandwidth: [1200GB/s, 100GB/s]",
                                                   "device.memory[1].latency: [200ns, 2us]"]),
    "words": (["resnet50", "bert-base"], ["device.systolic.buffers.ifmap.capacity: " + CAPS,
                                          "dtype: [bf16, int8]", "batch: [1, 2]",
                                          "device.systolic.accumulator_bits: [32, 16]"]),
    "arrays": (["resnet50"], ["device.systolic.buffers.ifmap.capacity: " + CAPS,
                              "device.systolic.arrays: [8, 1, 3]", "device.systolic.cols: [128, 96]"]),
    "convention": (["resnet50"], ["device.systolic.buffers.ifmap.capacity: " + CAPS,
                                  "device.systolic.convention: [faithful, scalesim]"]),
    "tiling": (["resnet50"], ["device.systolic.buffers.ifmap.capacity: [16MiB, 1MiB, 384KiB]",
                              "device.systolic.tiling: [fixed]",
                              "device.systolic.tile: [{m: 128, n: 128, k: 128}, {m: 256, n: 128, k: 64}]"]),
}


def cases(models):
    out = []
    for p in PRESETS:
        for m in models:
            out.append([p, m])
            if p.startswith("scalesim-"):
                out.append([p, m, "--convention", "scalesim"])
    for p in ["tpu-v4", "scalesim-google"]:
        for m in models:
            out.append([p, m, "--mode", "training"])
    for m in models:
        out.append(["tpu-v4", m, "--batch", "8"])
        out.append(["tpu-v4", m, "--dtype", "int8"])
    for v in VARIANTS:
        for m in VARIANT_MODELS:
            out.append([v, m])
    # The detailed GPU model shares the engine, the model zoo and the results code with the systolic one.
    for p in GPU_PRESETS:
        for m in GPU_MODELS:
            out.append([p, m])
    return out


def write_variants(tmp):
    base = open(os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "configs", "devices",
                             "tpu-v4.yaml")).read()
    paths = {}
    for name, subs in VARIANTS.items():
        text = base
        for old, new in subs:
            if old not in text:
                sys.exit(f"variant {name}: '{old}' not in tpu-v4.yaml")
            text = text.replace(old, new)
        text = text.replace("name: tpu-v4", f"name: {name}", 1)
        paths[name] = os.path.join(tmp, name + ".yaml")
        with open(paths[name], "w") as f:
            f.write(text)
    return paths


def fmt(v):
    # repr: floats by their shortest exact decimal, strings quoted with newlines escaped (one line a row).
    return repr(v) if isinstance(v, (float, str)) else str(v) if v is not None else "NULL"


def dump_db(path):
    con = sqlite3.connect(path)
    lines = []
    cols = [r[1] for r in con.execute("PRAGMA table_info(runs)") if r[1] not in SKIP_RUN_COLUMNS]
    for row in con.execute(f"SELECT {', '.join(cols)} FROM runs ORDER BY run_id"):
        lines.append("runs " + " | ".join(f"{c}={fmt(v)}" for c, v in zip(cols, row)))
    for table, key in [("layers", "idx"), ("layer_levels", "idx, level"), ("layer_metrics", "idx, name")]:
        tcols = [r[1] for r in con.execute(f"PRAGMA table_info({table})") if r[1] not in ("run_id", "levels", "metrics")]
        for row in con.execute(f"SELECT {', '.join(tcols)} FROM {table} ORDER BY {key}"):
            lines.append(f"{table} " + " | ".join(f"{c}={fmt(v)}" for c, v in zip(tcols, row)))
    con.close()
    return lines


def dump_sweep_db(path):
    con = sqlite3.connect(path)
    lines = []
    cols = [r[1] for r in con.execute("PRAGMA table_info(runs)") if r[1] not in SKIP_RUN_COLUMNS]
    for row in con.execute(f"SELECT run_id, {', '.join(cols)} FROM runs ORDER BY run_id"):
        lines.append("runs " + " | ".join(f"{c}={fmt(v)}" for c, v in zip(["run_id"] + cols, row)))
    for table, key in [("layers", "run_id, idx"), ("layer_levels", "run_id, idx, level"),
                       ("layer_metrics", "run_id, idx, name")]:
        tcols = [r[1] for r in con.execute(f"PRAGMA table_info({table})") if r[1] not in ("levels", "metrics")]
        for row in con.execute(f"SELECT {', '.join(tcols)} FROM {table} ORDER BY {key}"):
            lines.append(f"{table} " + " | ".join(f"{c}={fmt(v)}" for c, v in zip(tcols, row)))
    con.close()
    return lines


def run_sweep(mlsim, name, model, tmp):
    factors = SWEEPS[name][1]
    path = os.path.join(tmp, f"sweep_{name}_{model}.yaml")
    with open(path, "w") as f:
        f.write(f"name: check-{name}\nbase:\n  system: tpu-v4\n  model: {model}\nfactors:\n")
        f.write("".join(f"  {x}\n" for x in factors))
    db = path[:-5] + ".db"
    p = subprocess.run([mlsim, "sweep", path, "--db", db, "--jobs", "1", "-q"], stdout=subprocess.DEVNULL,
                       stderr=subprocess.PIPE, text=True)
    lines = [f"== sweep {name} {model}: exit {p.returncode}"]
    if p.returncode not in (0, 1):
        lines.append("stderr " + repr(p.stderr.strip().replace(tmp, "TMP")))
    if os.path.exists(db):
        lines += dump_sweep_db(db)
        os.unlink(db)
    return lines


def run_case(mlsim, case, tmp, variants):
    preset, model, *extra = case
    db = os.path.join(tmp, "_".join(a.strip("-") for a in case) + ".db")
    cmd = [mlsim, "run", "--system", variants.get(preset, preset), "--model", model, "-q", "--db", db] + extra
    p = subprocess.run(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    head = f"== {' '.join(case)}: exit {p.returncode}"
    lines = [head]
    if p.returncode != 0:
        lines.append("stderr " + repr(p.stderr.strip().replace(tmp, "TMP")))
    if os.path.exists(db):
        lines += dump_db(db)
        os.unlink(db)
    return lines


def dump(mlsim, jobs):
    models = [l.split()[0] for l in subprocess.check_output([mlsim, "list", "models"], text=True).splitlines()
              if l.strip()]
    all_cases = cases(models)
    with tempfile.TemporaryDirectory(prefix="mlsim-identical-") as tmp:
        variants = write_variants(tmp)
        sweeps = [(name, m) for name, (models, _) in SWEEPS.items() for m in models]
        with concurrent.futures.ThreadPoolExecutor(max_workers=jobs) as ex:
            parts = list(ex.map(lambda c: run_case(mlsim, c, tmp, variants), all_cases))
            parts += list(ex.map(lambda s: run_sweep(mlsim, s[0], s[1], tmp), sweeps))
    lines = [l for part in parts for l in part]
    print(f"{mlsim}: {len(all_cases)} runs and {len(sweeps)} sweeps, {len(lines)} lines", file=sys.stderr)
    return lines


def load(arg, jobs):
    if os.path.isfile(arg) and os.access(arg, os.X_OK):
        return dump(arg, jobs)
    with open(arg) as f:
        return f.read().splitlines()


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--dump", metavar="OUT", help="write the dump of one binary to OUT and stop")
    ap.add_argument("--jobs", type=int, default=2)
    ap.add_argument("inputs", nargs="+", help="REF NEW (binaries or dumps), or MLSIM with --dump")
    a = ap.parse_args()
    if a.dump:
        if len(a.inputs) != 1:
            ap.error("--dump takes one binary")
        with open(a.dump, "w") as f:
            f.write("\n".join(dump(a.inputs[0], a.jobs)) + "\n")
        return 0
    if len(a.inputs) != 2:
        ap.error("give REF and NEW")
    ref, new = (load(x, a.jobs) for x in a.inputs)
    if ref == new:
        print(f"identical: {len(ref)} lines")
        return 0
    diff = list(difflib.unified_diff(ref, new, a.inputs[0], a.inputs[1], lineterm="", n=1))
    print("\n".join(diff[:200]))
    print(f"DIFFERENT: {sum(1 for l in diff if l.startswith(('+', '-')))} changed lines")
    return 1


if __name__ == "__main__":
    sys.exit(main())
