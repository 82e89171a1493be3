#!/usr/bin/env python3
"""The hostile-input corpus: several hundred inputs a careless or malicious user could give mlsim, each
run with a time limit and a memory cap, each expected to end in a located user error (exit 2) or, where
the input is legal, in a documented success (exit 0). None may crash, hang, exhaust memory, report
undefined behaviour or an internal error.

usage: run_hostile.py MLSIM SOURCE_DIR [--sanitized] [--keep DIR] [--only SUBSTRING] [--list]

The cases are generated here (into a temporary folder, or DIR with --keep), grouped by the classes of
issue 8: unbounded input, arithmetic that overflows, unbounded work, inputs accepted that should not be,
damaged or foreign databases. Each case is a folder with its input files; mlsim runs inside it.

A case expects:
  rc   the exit status: 2 (user error) or 0 (legal input);
  at   for rc 2, a regular expression the first line of stderr must start with, before ": error: " --
       the location: "file.yaml:12:5", "file.cfg:4", "<command line>", or the file itself for an error
       about a whole file ("x.db", "/dev/zero");
  says an optional substring of stderr (what the message must name);
  same files that must be byte-identical afterwards (a refused database is left as it was).
Every case also fails on "internal error", on a sanitizer report, on a signal or any other status.

Limits per case: TIME_LIMIT seconds of CPU time (more under the sanitizers; RLIMIT_CPU, so a case is judged
by the work it does, not by how loaded the machine is), a wall-clock backstop WALL_FACTOR times longer for
a case that hangs without computing (blocked on a FIFO, say), and a 2 GiB address-space cap (under
AddressSanitizer, which reserves terabytes of address space, its hard_rss_limit_mb instead).
"""

import argparse
import concurrent.futures
import hashlib
import os
import re
import resource
import shutil
import signal
import sqlite3
import subprocess
import sys
import tempfile
import time

TIME_LIMIT = 10  # CPU seconds per case in a release build
SANITIZED_TIME_LIMIT = 60  # ASan + UBSan runs some 5-10x slower
WALL_FACTOR = 6  # wall-clock backstop: a case blocked without using CPU still ends
MEMORY_CAP = 2 << 30  # bytes of address space per case (release build)

# A small device at roofline level, valid as it is; cases change one line of it.
DEVICE = """\
device:
  name: t
  family: gpu
  clock: 1GHz
  peak: {fp32: 1TFLOP/s, int8: 2TOP/s}
  mac_energy: {fp32: 1pJ, int8: 0.2pJ}
  memory:
    - {name: sram, capacity: 1MiB, bandwidth: 1TB/s, read_energy: 1pJ/B}
    - {name: hbm, capacity: 1GiB, bandwidth: 100GB/s, latency: 100ns, read_energy: 10pJ/B}
  static_power: 1W
  tdp: 1000W
  op_overhead: 1us
"""

# A small systolic device; cases change one line of it.
SYSTOLIC = """\
device:
  name: s
  family: tpu
  clock: 1GHz
  mac_energy: {int8: 0.3pJ}
  memory:
    - {name: dram, capacity: 8GiB, bandwidth: 64GB/s, read_energy: 300pJ/B}
  static_power: 0W
  tdp: 100W
  systolic:
    rows: 16
    cols: 16
    arrays: 1
    dataflow: ws
    buffers:
      ifmap:  {capacity: 64KiB, bandwidth: 64GB/s, read_energy: 10pJ/B}
      filter: {capacity: 64KiB, bandwidth: 64GB/s, read_energy: 10pJ/B}
      ofmap:  {capacity: 64KiB, bandwidth: 64GB/s, read_energy: 10pJ/B}
"""

SCALESIM_CFG = """\
[general]
run_name = hostile

[architecture_presets]
ArrayHeight:    32
ArrayWidth:     32
IfmapSramSzkB:    64
FilterSramSzkB:   64
OfmapSramSzkB:    64
IfmapOffset:    0
FilterOffset:   10000000
OfmapOffset:    20000000
Dataflow : ws
Bandwidth : 10
MemoryBanks: 1

[run_presets]
InterfaceBandwidth: CALC
"""

CONV_CSV_HEADER = "Layer name, IFMAP Height, IFMAP Width, Filter Height, Filter Width, Channels, Num Filter, Strides,\n"
GEMM_CSV_HEADER = "Layer, M, N, K,\n"

SWEEP_BASE = "base: {system: tpu-v1, model: mlp3, dtype: int8}\n"

I63 = 2**63 - 1
BIG = [2**31, 2**32 + 1, 2**53 + 1, 2**62, I63]
HUGE = [2**53 + 1, 2**62, I63]  # any attribute this large makes a tensor or a count pass its limit


class Case:
    def __init__(self, cls, name, args, files=None, rc=2, at=None, says=None, same=(), fifo=(), setup=None):
        self.cls, self.name, self.args = cls, name, args
        self.files = files or {}
        self.rc, self.at, self.says, self.same = rc, at, says, tuple(same)
        self.fifo = tuple(fifo)
        self.setup = setup  # called with the case folder after the files are written


def replace_line(text, old, new):
    assert old in text, old
    return text.replace(old, new, 1)


def line_of(text, needle):
    """1-based line of the first line containing `needle` (for expected locations)."""
    for i, line in enumerate(text.splitlines(), 1):
        if needle in line:
            return i
    raise AssertionError(needle)


def sparse(folder, name, size):
    """A file of `size` bytes that takes no disk space and is never read (refused by its size)."""
    with open(os.path.join(folder, name), "wb") as f:
        f.truncate(size)


def model(ops, inputs="x: [N, 16]", extra=""):
    """A model file: `ops` is a list of flow maps, one line each: op i is on line 3 + i (plus `extra`'s lines)."""
    return "inputs: {" + inputs + "}\n" + extra + "ops:\n" + "".join(f"  - {o}\n" for o in ops)


# ---------------------------------------------------------------------------------------------------------
# Unbounded input
# ---------------------------------------------------------------------------------------------------------

def unbounded_input():
    cls = "unbounded input"
    out = []
    specials = {"dev_zero": "/dev/zero", "dev_urandom": "/dev/urandom", "dev_null": "/dev/null",
                "fifo": "pipe", "directory": "adir"}
    uses = {
        "validate": lambda p: ["validate", p],
        "run_system": lambda p: ["run", "--system", p, "--model", "mlp3"],
        "run_model_yaml": lambda p: ["run", "--system", "dev.yaml", "--model", p],
        "sweep": lambda p: ["sweep", p, "--dry-run"],
    }
    for sname, path in specials.items():
        for uname, argf in uses.items():
            # A model is taken as a file when it looks like one: give the FIFO a .yaml name there.
            p = path
            if uname == "run_model_yaml" and path == "pipe":
                p = "pipe.yaml"
            if uname == "run_model_yaml" and path == "adir":
                p = "adir/"
            out.append(Case(cls, f"{sname}_{uname}", argf(p), files={"dev.yaml": DEVICE}, fifo=["pipe", "pipe.yaml"],
                            setup=lambda d: os.makedirs(os.path.join(d, "adir")), at=re.escape(p)))
    # Special files with the extensions of the other readers.
    for ext, argf in [(".cfg", lambda p: ["validate", p]), (".csv", lambda p: ["validate", p]),
                      (".cfg", lambda p: ["run", "--system", p, "--model", "mlp3"]),
                      (".csv", lambda p: ["run", "--system", "tpu-v1", "--dtype", "int8", "--model", p])]:
        out.append(Case(cls, f"fifo{ext}_{argf('x')[0]}", argf("pipe" + ext), fifo=["pipe" + ext],
                        at=re.escape("pipe" + ext), says="regular file"))
    # Files beyond the size limit (sparse: nothing is written, nothing is read).
    for name, ext, argf in [("config", ".yaml", lambda p: ["validate", p]),
                            ("model", ".yaml", lambda p: ["run", "--system", "tpu-v1", "--model", p]),
                            ("cfg", ".cfg", lambda p: ["validate", p]),
                            ("csv", ".csv", lambda p: ["validate", p]),
                            ("sweep", ".yaml", lambda p: ["sweep", p, "--dry-run"])]:
        fname = "huge" + ext
        out.append(Case(cls, f"over_16MiB_{name}", argf(fname), setup=lambda d, f=fname: sparse(d, f, 17 << 20),
                        at=re.escape(fname), says="16 MiB"))
    # extends: a special file, a chain past the limit, cycles.
    for sname, target in [("dev_zero", "/dev/zero"), ("fifo", "pipe.yaml"), ("directory", "adir")]:
        out.append(Case(cls, f"extends_{sname}", ["validate", "d.yaml"], files={"d.yaml": f"extends: {target}\n"},
                        fifo=["pipe.yaml"], setup=lambda d: os.makedirs(os.path.join(d, "adir"), exist_ok=True),
                        at=r"d\.yaml:1:10"))
    for n in (33, 100, 4500):
        files = {f"c{i}.yaml": f"extends: c{i + 1}.yaml\n" for i in range(n)}
        files[f"c{n}.yaml"] = DEVICE
        out.append(Case(cls, f"extends_chain_{n}", ["validate", "c0.yaml"], files=files,
                        at=r"c31\.yaml:1:10", says="the `extends:` chain is more than 32 files long"))
    out.append(Case(cls, "extends_chain_32_ok", ["validate", "c0.yaml"],
                    files={**{f"c{i}.yaml": f"extends: c{i + 1}.yaml\n" for i in range(31)}, "c31.yaml": DEVICE},
                    rc=0))
    out.append(Case(cls, "extends_self", ["validate", "a.yaml"], files={"a.yaml": "extends: a.yaml\n"},
                    at=r"a\.yaml:1:10", says="cycle"))
    out.append(Case(cls, "extends_list_cycle", ["validate", "a.yaml"],
                    files={"a.yaml": "extends: [b.yaml]\n", "b.yaml": "extends: [c.yaml, a.yaml]\n", "c.yaml": "{}\n"},
                    at=r"b\.yaml:1:\d+", says="cycle"))
    # Aliases that expand beyond the node limit ("billion laughs"), in every kind of input.
    def laughs(levels, width, key="a", prefix=""):
        lines = [f"{prefix}{key}0: &{key}0 [" + ",".join(["lol"] * width) + "]"]
        for i in range(1, levels):
            lines.append(f"{prefix}{key}{i}: &{key}{i} [" + ",".join([f"*{key}{i - 1}"] * width) + "]")
        return "\n".join(lines) + "\n"
    for levels, width in [(9, 10), (12, 10), (30, 2), (64, 2), (7, 100)]:
        out.append(Case(cls, f"laughs_{levels}x{width}_config", ["validate", "l.yaml"],
                        files={"l.yaml": laughs(levels, width)}, at=r"l\.yaml:\d+:\d+", says="1000000 nodes"))
    out.append(Case(cls, "laughs_model", ["run", "--system", "tpu-v1", "--model", "l.yaml"],
                    files={"l.yaml": laughs(9, 10) + "ops: *a8\n"}, at=r"l\.yaml:\d+:\d+", says="nodes"))
    out.append(Case(cls, "laughs_sweep", ["sweep", "l.yaml", "--dry-run"],
                    files={"l.yaml": SWEEP_BASE + "x:\n" + laughs(9, 10, prefix="  ")}, at=r"l\.yaml:\d+:\d+",
                    says="nodes"))
    out.append(Case(cls, "laughs_maps", ["validate", "l.yaml"],
                    files={"l.yaml": "a0: &a0 {a: 1, b: 2, c: 3, d: 4, e: 5, f: 6, g: 7, h: 8}\n" + "".join(
                        f"a{i}: &a{i} {{" + ", ".join(f"k{j}: *a{i - 1}" for j in range(8)) + "}\n"
                        for i in range(1, 10))}, at=r"l\.yaml:\d+:\d+", says="nodes"))
    # Few nodes, much text: an alias of a long string copies the string.
    long = "x" * (1 << 20)
    out.append(Case(cls, "laughs_long_string_values", ["validate", "l.yaml"],
                    files={"l.yaml": f"s: &s {long}\nl: [" + ", ".join(["*s"] * 100) + "]\n"},
                    at=r"l\.yaml:2:\d+", says="64 MiB of text"))
    out.append(Case(cls, "laughs_long_string_keys", ["validate", "l.yaml"],
                    files={"l.yaml": f"? &k {long}\n: 1\nl:\n" + "".join(f"  - {{*k : {i}}}\n" for i in range(100))},
                    at=r"l\.yaml:\d+:\d+", says="64 MiB of text"))
    out.append(Case(cls, "aliases_within_limit", ["validate", "l.yaml"],
                    files={"l.yaml": "anchors:\n" + laughs(4, 10, prefix="  ") + DEVICE}, at=r"l\.yaml:1:1",
                    says="unknown top-level key"))
    # Nesting.
    for depth in (65, 1000, 100000):
        out.append(Case(cls, f"nested_flow_lists_{depth}", ["validate", "n.yaml"],
                        files={"n.yaml": "a: " + "[" * depth + "]" * depth + "\n"}, at=r"n\.yaml:1:\d+",
                        says="nest more than 64"))
        out.append(Case(cls, f"nested_flow_maps_{depth}", ["validate", "n.yaml"],
                        files={"n.yaml": "a: " + "{a: " * depth + "1" + "}" * depth + "\n"}, at=r"n\.yaml:1:\d+",
                        says="nest more than 64"))
    out.append(Case(cls, "nested_block_maps_200", ["validate", "n.yaml"],
                    files={"n.yaml": "".join("  " * i + "a:\n" for i in range(200)) + "  " * 200 + "b: 1\n"},
                    at=r"n\.yaml:\d+:\d+", says="nest more than 64"))
    out.append(Case(cls, "nested_model_ops", ["validate", "m.yaml"],
                    files={"m.yaml": "ops:\n  - " + "[" * 100 + "]" * 100 + "\n"}, at=r"m\.yaml:2:\d+",
                    says="nest"))
    out.append(Case(cls, "nested_sweep_values", ["sweep", "s.yaml", "--dry-run"],
                    files={"s.yaml": SWEEP_BASE + "factors:\n  batch: " + "[" * 80 + "]" * 80 + "\n"},
                    at=r"s\.yaml:3:\d+", says="nest"))
    # Wide maps and lists: linear, so quick whatever their size.
    out.append(Case(cls, "device_100k_keys", ["validate", "w.yaml"],
                    files={"w.yaml": "device:\n" + "".join(f"  k{i}: 1\n" for i in range(100000))},
                    at=r"w\.yaml:2:3", says="unknown key 'k0'"))
    out.append(Case(cls, "device_100k_keys_duplicate_last", ["validate", "w.yaml"],
                    files={"w.yaml": "device:\n" + "".join(f"  k{i}: 1\n" for i in range(100000)) + "  k5: 2\n"},
                    at=r"w\.yaml:100002:3", says="duplicate key 'k5'"))
    out.append(Case(cls, "model_50k_inputs_legal", ["validate", "m.yaml"], rc=0,
                    files={"m.yaml": "inputs:\n" + "".join(f"  x{i}: [N, 4]\n" for i in range(50000)) +
                           "ops:\n  - {name: r, kind: relu, inputs: [x0]}\n"}))
    out.append(Case(cls, "sweep_100k_factor_keys", ["sweep", "s.yaml", "--dry-run"],
                    files={"s.yaml": SWEEP_BASE + "factors:\n" + "".join(f"  f{i}: [1]\n" for i in range(100000))},
                    at=r"s\.yaml:3:3", says="unknown factor 'f0'"))
    out.append(Case(cls, "peak_dict_100k_keys", ["validate", "p.yaml"],
                    files={"p.yaml": replace_line(DEVICE, "  peak: {fp32: 1TFLOP/s, int8: 2TOP/s}\n",
                                                  "  peak:\n" + "".join(f"    t{i}: 1TFLOP/s\n" for i in range(100000)))},
                    at=r"p\.yaml:6:5", says="unknown key 't0'"))
    # Models whose ops are listed in reverse order: linear (was quadratic), legal.
    for n in (5000, 20000):
        ops = [f"{{name: r{i}, kind: relu, inputs: [{'x' if i == 0 else f'r{i - 1}'}]}}" for i in range(n)]
        out.append(Case(cls, f"model_{n}_ops_reverse_legal", ["validate", "m.yaml"], rc=0,
                        files={"m.yaml": model(list(reversed(ops)), inputs="x: [N, 4]")}))
    ops = [f"{{name: r{i}, kind: relu, inputs: [r{(i + 1) % 20000}]}}" for i in range(20000)]
    out.append(Case(cls, "model_20000_ops_one_cycle", ["validate", "m.yaml"],
                    files={"m.yaml": model(ops, inputs="x: [N, 4]")}, at=r"m\.yaml:\d+:\d+", says="has a cycle"))
    # Zipped factors with many values: loading is linear (a repeat is found by hashing).
    values = ", ".join(str(i) for i in range(1, 50001))
    out.append(Case(cls, "zip_50000_values_max_points", ["sweep", "z.yaml", "--dry-run", "--max-points", "1000"],
                    files={"z.yaml": SWEEP_BASE + f"zip:\n  - batch: [{values}]\n"}, at=r"z\.yaml:3:5",
                    says="50000 points"))
    out.append(Case(cls, "zip_50000_values_dry_run_legal", ["sweep", "z.yaml", "--dry-run", "-q"],
                    files={"z.yaml": SWEEP_BASE + f"zip:\n  - batch: [{values}]\n"}, rc=0))
    out.append(Case(cls, "zip_50000_values_repeat_last", ["sweep", "z.yaml", "--dry-run"],
                    files={"z.yaml": SWEEP_BASE + f"zip:\n  - batch: [{values}, 7]\n"}, at=r"z\.yaml:3:\d+",
                    says="are the same combination"))
    out.append(Case(cls, "zip_50000_values_unequal_lengths", ["sweep", "z.yaml", "--dry-run"],
                    files={"z.yaml": SWEEP_BASE + "zip:\n  - batch: [" + values + "]\n    seq: [" +
                           ", ".join(str(i) for i in range(1, 50000)) + "]\n"},
                    at=r"z\.yaml:4:5", says="same number of values"))
    out.append(Case(cls, "factor_50000_values_repeat", ["sweep", "z.yaml", "--dry-run"],
                    files={"z.yaml": SWEEP_BASE + f"factors:\n  batch: [{values}, 49999]\n"},
                    at=r"z\.yaml:3:\d+", says="listed twice"))
    # Other unbounded shapes of text.
    out.append(Case(cls, "thousand_documents", ["validate", "d.yaml"], files={"d.yaml": "a: 1\n---\n" * 1000},
                    at=r"d\.yaml:2:1", says="single YAML document"))
    out.append(Case(cls, "megabyte_scalar_name", ["validate", "d.yaml"],
                    files={"d.yaml": replace_line(DEVICE, "name: t", "name: " + "x" * (1 << 20))}, rc=0))
    out.append(Case(cls, "megabyte_key", ["validate", "d.yaml"],
                    files={"d.yaml": replace_line(DEVICE, "  name: t\n", "  name: t\n  " + "k" * (1 << 20) + ": 1\n")},
                    at=r"d\.yaml:3:\d+"))
    out.append(Case(cls, "csv_megabyte_field", ["validate", "t.csv"],
                    files={"t.csv": GEMM_CSV_HEADER + "L1, " + "9" * (1 << 20) + ", 2, 2,\n"}, at=r"t\.csv:2:\d+",
                    says="positive integer"))
    out.append(Case(cls, "csv_100k_rows_legal", ["validate", "t.csv"], rc=0,
                    files={"t.csv": GEMM_CSV_HEADER + "".join(f"L{i}, 8, 8, 8,\n" for i in range(100000))}))
    out.append(Case(cls, "cfg_100k_comment_lines", ["validate", "c.cfg"],
                    files={"c.cfg": "# x\n" * 100000 + SCALESIM_CFG.replace("ArrayWidth:     32\n", "")},
                    at=r"c\.cfg:100004:1", says="missing required key 'ArrayWidth'"))
    out.append(Case(cls, "binary_garbage_yaml", ["validate", "g.yaml"],
                    files={"g.yaml": bytes(range(256)) * 64}, at=r"g\.yaml(:\d+:\d+)?"))
    out.append(Case(cls, "nul_bytes_yaml", ["validate", "g.yaml"], files={"g.yaml": b"device:\n  name: \x00\x00\n"},
                    at=r"g\.yaml(:\d+:\d+)?"))
    return out


# ---------------------------------------------------------------------------------------------------------
# Arithmetic that overflows
# ---------------------------------------------------------------------------------------------------------

def overflow():
    cls = "arithmetic that overflows"
    out = []

    def op_case(name, ops, inputs="x: [N, 16]", says=None, line=3, extra=""):
        text = model(ops, inputs=inputs, extra=extra)
        out.append(Case(cls, name, ["validate", "m.yaml"], files={"m.yaml": text},
                        at=rf"m\.yaml:{line + extra.count(chr(10))}:\d+", says=says))

    for v in BIG:
        op_case(f"input_dims_{v}x{v}_x4", ["{name: a, kind: relu, inputs: [x]}"], inputs=f"x: [{v}, {v}, 4]",
                says="2^53")
        op_case(f"reshape_{v}", [f"{{name: r, kind: reshape, inputs: [x], shape: [{v}, {v}, 4]}}"],
                says="cannot reshape")
    for v in HUGE:
        op_case(f"input_dims_{v}x{v}", ["{name: a, kind: relu, inputs: [x]}"], inputs=f"x: [{v}, {v}]",
                says="2^53")
        op_case(f"linear_out_{v}", [f"{{name: f, kind: linear, inputs: [x], out_features: {v}}}"],
                says="'f'")
        op_case(f"embedding_rows_{v}", [f"{{name: e, kind: embedding, inputs: [x], rows: {v}, dim: {v}}}"],
                says="'e'")
        op_case(f"embedding_bag_rows_{v}", [f"{{name: e, kind: embedding_bag, inputs: [x], rows: {v}, dim: 1024}}"],
                says="'e'")
        op_case(f"slice_start_{v}", [f"{{name: s, kind: slice, inputs: [x], start: {v}, length: 100}}"],
                says="outside axis")
        op_case(f"slice_length_{v}", [f"{{name: s, kind: slice, inputs: [x], start: 1, length: {v}}}"],
                says="outside axis")
        op_case(f"conv_padding_{v}",
                [f"{{name: c, kind: conv2d, inputs: [x], out_channels: 4, kernel: 3, padding: {v}}}"],
                inputs="x: [N, 3, 8, 8]", says="'c'")
        op_case(f"conv_pad_end_{v}",
                [f"{{name: c, kind: conv2d, inputs: [x], out_channels: 4, kernel: 3, pad_end: [{v}, 0]}}"],
                inputs="x: [N, 3, 8, 8]", says="'c'")
        op_case(f"conv_dilation_{v}",
                [f"{{name: c, kind: conv2d, inputs: [x], out_channels: 4, kernel: 3, dilation: {v}}}"],
                inputs="x: [N, 3, 8, 8]", says="'c'")
        op_case(f"conv_kernel_{v}",
                [f"{{name: c, kind: conv2d, inputs: [x], out_channels: 4, kernel: {v}, padding: {v // 2}}}"],
                inputs="x: [N, 3, 8, 8]", says="'c'")
        op_case(f"conv_out_channels_{v}",
                [f"{{name: c, kind: conv2d, inputs: [x], out_channels: {v}, kernel: 3}}"],
                inputs="x: [N, 3, 8, 8]", says="'c'")
        op_case(f"pool_padding_{v}", [f"{{name: p, kind: maxpool2d, inputs: [x], kernel: 3, padding: {v}}}"],
                inputs="x: [N, 3, 8, 8]", says="'p'")
        op_case(f"attention_cache_{v}",
                [f"{{name: a, kind: attention_decode, inputs: [x, x, x], heads: 1, cache_len: {v}}}"],
                inputs="x: [N, 1, 64]", says="'a'")
        op_case(f"lstm_hidden_{v}", [f"{{name: l, kind: lstm, inputs: [x], hidden_size: {v}}}"],
                inputs="x: [N, 4, 16]", says="'l'")
        op_case(f"batch_symbol_dims_{v}", ["{name: a, kind: relu, inputs: [x]}"], inputs=f"x: [N, S, {v}]",
                extra=f"seq: {v}\n", says="2^53")
    # Shapes whose counts, not tensors, pass the limit.
    op_case("linear_2e26_cubed_macs", ["{name: f, kind: linear, inputs: [x], out_features: 67108864}"],
            inputs="x: [67108864, 67108864]", says="exceeds 2^60")
    op_case("linear_2e32_by_2e32", ["{name: f, kind: linear, inputs: [x], out_features: 4294967296}"],
            inputs="x: [4294967296, 2]", says="2^53")
    op_case("matmul_huge_macs", ["{name: m, kind: matmul, inputs: [x, y]}"],
            inputs="x: [1073741824, 1073741824], y: [1073741824, 1073741824]", says="'m'")
    op_case("conv_huge_macs", ["{name: c, kind: conv2d, inputs: [x], out_channels: 2097152, kernel: 1}"],
            inputs="x: [1, 1048576, 1024, 1024]", says="exceeds 2^60")
    op_case("attention_prefill_huge", ["{name: a, kind: attention_prefill, inputs: [x, x, x], heads: 1}"],
            inputs="x: [1, 1073741824, 64]", says="exceeds 2^60")
    op_case("dot_interaction_huge_dim", ["{name: d, kind: dot_interaction, inputs: [x, x, x]}"],
            inputs="x: [1048576, 1099511627776]", says="'d'")
    op_case("concat_sum_overflows", ["{name: c, kind: concat, inputs: [x, x, x, x], axis: 1}"],
            inputs="x: [1, 4611686018427387904]", says="'c'")
    op_case("negative_dim_min", ["{name: a, kind: relu, inputs: [x]}"], inputs="x: [N, -9223372036854775808]",
            says="positive", line=1)
    op_case("dim_beyond_int64", ["{name: a, kind: relu, inputs: [x]}"], inputs="x: [N, 9223372036854775808]",
            says="out of range", line=1)
    op_case("dim_1e30", ["{name: a, kind: relu, inputs: [x]}"], inputs="x: [N, 1e30]", says="integer", line=1)
    # The zoo, through the command line.
    for model_name in ("resnet50", "mlp3", "bert-base", "dlrm-mlperf", "gpt2-small-prefill"):
        for batch in (2**40, I63):
            out.append(Case(cls, f"zoo_{model_name}_batch_{batch}",
                            ["run", "--system", "dev.yaml", "--model", model_name, "--batch", str(batch)],
                            files={"dev.yaml": DEVICE}, at=r"(<built-in>|<command line>)", says="'"))
    for flag, value in [("--batch", "9223372036854775808"), ("--batch", "-1"), ("--seq", "99999999999999999999"),
                        ("--image", "4294967296"), ("--batch", "1e30"), ("--seq", "-9223372036854775808")]:
        out.append(Case(cls, f"zoo_flag_{flag[2:]}_{value}", ["run", "--system", "dev.yaml", "--model", "resnet50",
                                                            flag, value],
                        files={"dev.yaml": DEVICE}, at=r"<command line>"))
    # Device values at the edge of range: one line of a valid device each.
    edits = [
        ("clock_1e30", "clock: 1GHz", "clock: 1e30Hz"),
        ("clock_1e-30", "clock: 1GHz", "clock: 1e-30Hz"),
        ("clock_1e300", "clock: 1GHz", "clock: 1e300Hz"),
        ("clock_1e400", "clock: 1GHz", "clock: 1e400Hz"),
        ("clock_0", "clock: 1GHz", "clock: 0Hz"),
        ("clock_200GHz", "clock: 1GHz", "clock: 200GHz"),
        ("peak_1e-30", "fp32: 1TFLOP/s,", "fp32: 1e-30FLOP/s,"),
        ("peak_1e30", "fp32: 1TFLOP/s,", "fp32: 1e30FLOP/s,"),
        ("peak_1e22", "fp32: 1TFLOP/s,", "fp32: 1e22FLOP/s,"),
        ("mac_energy_1e300", "fp32: 1pJ,", "fp32: 1e300J,"),
        ("mac_energy_1J", "fp32: 1pJ,", "fp32: 1J,"),
        ("bandwidth_1e-30", "bandwidth: 100GB/s", "bandwidth: 1e-30B/s"),
        ("bandwidth_1e30", "bandwidth: 100GB/s", "bandwidth: 1e30B/s"),
        ("bandwidth_1B", "bandwidth: 100GB/s", "bandwidth: 1B/s"),
        ("latency_1e21", "latency: 100ns", "latency: 1e21s"),
        ("latency_2s", "latency: 100ns", "latency: 2s"),
        ("latency_1e-300", "latency: 100ns", "latency: 1e-300s"),
        ("capacity_1e30", "capacity: 1GiB", "capacity: 1e30B"),
        ("capacity_2PiB", "capacity: 1GiB", "capacity: 2048TiB"),
        ("read_energy_1e10", "read_energy: 10pJ/B", "read_energy: 1e10J/B"),
        ("static_power_1e30", "static_power: 1W", "static_power: 1e30W"),
        ("tdp_1e30", "tdp: 1000W", "tdp: 1e30W"),
        ("tdp_1e-30", "tdp: 1000W", "tdp: 1e-30W"),
        ("op_overhead_1e21", "op_overhead: 1us", "op_overhead: 1e21s"),
        ("op_overhead_1e-30", "op_overhead: 1us", "op_overhead: 1e-30s"),
        ("instances_huge", "- {name: sram, capacity", "- {name: sram, instances: 9223372036854775807, capacity"),
    ]
    for name, old, new in edits:
        text = replace_line(DEVICE, old, new)
        legal = name in ("latency_1e-300", "op_overhead_1e-30")
        # A TDP below the static power is reported at the static power.
        where = "static_power" if name == "tdp_1e-30" else new
        out.append(Case(cls, f"device_{name}", ["run", "--system", "d.yaml", "--model", "mlp3", "-q"],
                        files={"d.yaml": text}, rc=0 if legal else 2,
                        at=None if legal else rf"d\.yaml:{line_of(text, where)}:\d+"))
    # Legal figures whose product passes what mlsim can simulate: refused at the layer that would cross it.
    slow = replace_line(replace_line(DEVICE, "fp32: 1TFLOP/s,", "fp32: 1kFLOP/s,"), "bandwidth: 100GB/s",
                        "bandwidth: 1KB/s")
    out.append(Case(cls, "slow_device_resnet50", ["run", "--system", "d.yaml", "--model", "resnet50", "--batch", "4",
                                                  "-q"],
                    files={"d.yaml": slow}, at=r"<built-in>", says="106 days"))
    big_linear = model(["{name: f, kind: linear, inputs: [x], out_features: 4096}"], inputs="x: [4096, 4096]")
    out.append(Case(cls, "slow_device_big_linear", ["run", "--system", "d.yaml", "--model", "m.yaml", "-q"],
                    files={"d.yaml": slow, "m.yaml": big_linear}, at=r"m\.yaml:3:\d+", says="106 days"))
    slow_sys = replace_line(replace_line(SYSTOLIC, "clock: 1GHz", "clock: 1kHz"), "bandwidth: 64GB/s, read_energy: 300",
                            "bandwidth: 1KB/s, read_energy: 300").replace("capacity: 64KiB", "capacity: 16MiB").replace(
                                "capacity: 8GiB", "capacity: 64GiB")
    huge_linear = model(["{name: f, kind: linear, inputs: [x], out_features: 16384}"], inputs="x: [16384, 16384]")
    out.append(Case(cls, "slow_systolic_big_linear", ["run", "--system", "s.yaml", "--model", "m.yaml", "--dtype",
                                                      "int8", "-q"],
                    files={"s.yaml": slow_sys, "m.yaml": huge_linear}, at=r"m\.yaml:3:\d+", says="106 days"))
    out.append(Case(cls, "slow_systolic_vector_op", ["run", "--system", "s.yaml", "--model", "m.yaml", "--dtype",
                                                     "int8", "-q"],
                    files={"s.yaml": slow_sys, "m.yaml": model(["{name: r, kind: relu, inputs: [x]}"],
                                                               inputs="x: [131072, 65536]")},
                    at=r"m\.yaml:3:\d+", says="106 days"))
    # The systolic section.
    sys_edits = [
        ("rows_cols_arrays_max", "    rows: 16\n    cols: 16\n    arrays: 1\n",
         "    rows: 65536\n    cols: 65536\n    arrays: 65536\n", "rows: 65536", "exceeds"),
        ("rows_huge", "rows: 16", "rows: 9223372036854775807", "rows:", "at most"),
        ("passes_huge", "    dataflow: ws\n", "    dataflow: ws\n    passes: {int8: 9223372036854775807}\n", "passes:",
         "at most"),
        ("tile_huge", "    dataflow: ws\n", "    dataflow: ws\n    tiling: fixed\n    tile: {m: 4611686018427387904}\n",
         "tile:", "at most"),
        ("buffer_capacity_1e30", "ifmap:  {capacity: 64KiB", "ifmap:  {capacity: 1e30B", "ifmap:", "at most"),
        ("buffer_bandwidth_1e-30", "filter: {capacity: 64KiB, bandwidth: 64GB/s",
         "filter: {capacity: 64KiB, bandwidth: 1e-30B/s", "filter:", "at least"),
        ("vector_throughput_1e30", "    dataflow: ws\n", "    dataflow: ws\n    vector_throughput: 1e30OP/s\n",
         "vector_throughput", "at most"),
        ("pe_hop_energy_1e30", "    dataflow: ws\n", "    dataflow: ws\n    pe_hop_energy: 1e30J\n", "pe_hop_energy",
         "at most"),
    ]
    for name, old, new, where, says in sys_edits:
        text = replace_line(SYSTOLIC, old, new)
        out.append(Case(cls, f"systolic_{name}", ["validate", "s.yaml"], files={"s.yaml": text},
                        at=rf"s\.yaml:{line_of(text, where)}:\d+", says=says))
    # SCALE-Sim .cfg values.
    for key, v in [("ArrayHeight", I63), ("ArrayWidth", 2**62), ("IfmapSramSzkB", I63), ("FilterSramSzkB", 2**60),
                   ("OfmapSramSzkB", 2**53), ("ArrayHeight", 65537), ("ArrayHeight", "99999999999999999999"),
                   ("ArrayWidth", -1), ("ArrayWidth", "1e9"), ("IfmapSramSzkB", 0)]:
        old = next(line for line in SCALESIM_CFG.splitlines() if line.startswith(key))
        text = replace_line(SCALESIM_CFG, old, f"{key}: {v}")
        out.append(Case(cls, f"cfg_{key}_{v}", ["validate", "c.cfg"], files={"c.cfg": text},
                        at=rf"c\.cfg:{line_of(text, key)}:\d+", says=key))
    text = replace_line(replace_line(SCALESIM_CFG, "Bandwidth : 10", f"Bandwidth : {I63}"), "CALC", "USER")
    out.append(Case(cls, "cfg_user_bandwidth_huge", ["validate", "c.cfg"], files={"c.cfg": text},
                    at=rf"c\.cfg:{line_of(text, 'Bandwidth :')}:\d+", says="at most"))
    # SCALE-Sim topology values.
    for m, n, k in [(I63, 2, 2), (2**32, 2**32, 2**32), (2**53 + 1, 1, 1), (2, I63, 2), (1, 1, 2**62),
                    ("9223372036854775808", 1, 1)]:
        out.append(Case(cls, f"csv_gemm_{m}_{n}_{k}", ["validate", "t.csv"],
                        files={"t.csv": GEMM_CSV_HEADER + f"L1, {m}, {n}, {k},\n"}, at=r"t\.csv:2:\d+"))
    for h, w, fh, fw, c, nf, s in [(2**32, 2**32, 3, 3, 2**32, 64, 1), (56, 56, 3, 3, I63, 64, 1),
                                   (56, 56, 3, 3, 64, I63, 1), (56, 56, 3, 3, 64, 64, I63),
                                   (I63, 56, 3, 3, 64, 64, 1), (2**31, 2**31, 1, 1, 2**20, 2**20, 1)]:
        legal = s == I63  # a stride beyond the input is legal: a 1x1 output
        out.append(Case(cls, f"csv_conv_{h}_{c}_{nf}_{s}", ["validate", "t.csv"],
                        files={"t.csv": CONV_CSV_HEADER + f"c1, {h}, {w}, {fh}, {fw}, {c}, {nf}, {s},\n"},
                        rc=0 if legal else 2, at=r"t\.csv:2:\d+"))
    # The batch multiplies a SCALE-Sim topology's shapes.
    out.append(Case(cls, "csv_batch_huge", ["run", "--system", "tpu-v1", "--dtype", "int8", "--model", "t.csv",
                                            "--batch", "4611686018427387904", "-q"],
                    files={"t.csv": GEMM_CSV_HEADER + "L1, 64, 64, 64,\n"}, at=r"t\.csv:2:\d+", says="2^53"))
    # Systems.
    for name, body, says in [
        ("count_huge", "system:\n  name: s\n  device: tpu-v1\n  count: 9223372036854775807\n", "count"),
        ("devices_huge", "system:\n  name: s\n  device: tpu-v1\n  nodes:\n    - {name: a, devices: 4294967296}\n",
         "devices"),
        ("link_count_huge", "system:\n  name: s\n  device: tpu-v1\n  nodes:\n    - {name: a, devices: 2}\n"
                            "  links:\n    - {from: a.0, to: a.1, bandwidth: 1GB/s, count: 4294967296}\n", "count"),
        ("link_bandwidth_1e30", "system:\n  name: s\n  device: tpu-v1\n  nodes:\n    - {name: a, devices: 2}\n"
                                "  links:\n    - {from: a.0, to: a.1, bandwidth: 1e30B/s}\n", "bandwidth"),
        ("link_latency_1e21", "system:\n  name: s\n  device: tpu-v1\n  nodes:\n    - {name: a, devices: 2}\n"
                              "  links:\n    - {from: a.0, to: a.1, bandwidth: 1GB/s, latency: 1e21s}\n", "latency"),
        # Shapes (issue 12) whose generated links or switches pass the limit, or whose sizes overflow.
        ("shape_fully_connected_huge", "system:\n  name: s\n  device: tpu-v1\n  count: 4096\n"
                                       "  topology: {shape: fully-connected, link: {bandwidth: 1GB/s}}\n", "links"),
        ("shape_torus_dims_huge", "system:\n  name: s\n  device: tpu-v1\n  count: 8\n"
                                  "  topology: {shape: torus, dims: 9999999x9999999x9999999, link: {bandwidth: 1GB/s}}\n",
         "chips"),
        ("shape_rails_huge", "system:\n  name: s\n  device: tpu-v1\n  nodes:\n    - {name: a, count: 64}\n"
                             "  fabric: {shape: rail-optimised, nodes_per_su: 1, nics_per_node: 65536, "
                             "nic: {bandwidth: 1GB/s}}\n", "links"),
    ]:
        out.append(Case(cls, f"system_{name}", ["validate", "sys.yaml"], files={"sys.yaml": body},
                        at=r"sys\.yaml:\d+:\d+", says=says))
    return out


# ---------------------------------------------------------------------------------------------------------
# Unbounded work
# ---------------------------------------------------------------------------------------------------------

def unbounded_work():
    cls = "unbounded work"
    out = []
    big = replace_line(SYSTOLIC, "    rows: 16\n    cols: 16\n", "    rows: 65536\n    cols: 65536\n")
    out.append(Case(cls, "cycle_fidelity_65536_array", ["run", "--system", "s.yaml", "--model", "mlp3", "--fidelity",
                                                        "cycle", "--dtype", "int8"],
                    files={"s.yaml": big}, at=r"s\.yaml:\d+:\d+", says="4 GiB"))
    # A 1x1 array: few PE-cycles a grid cycle, so a grid cycle's own cost decides (it took 109 s, estimated 27 s).
    tiny = replace_line(SYSTOLIC, "    rows: 16\n    cols: 16\n", "    rows: 1\n    cols: 1\n")
    out.append(Case(cls, "cycle_fidelity_1x1_array_resnet50", ["run", "--system", "s.yaml", "--model", "resnet50",
                                                               "--fidelity", "cycle", "--dtype", "int8"],
                    files={"s.yaml": tiny}, at=r"<command line>", says="--max-pe-cycles"))
    for model_name in ("resnet50", "bert-base", "gpt2-small-prefill", "mobilenetv2"):
        out.append(Case(cls, f"cycle_fidelity_{model_name}_tpu_v1",
                        ["run", "--system", "tpu-v1", "--model", model_name, "--dtype", "int8", "--fidelity", "cycle"],
                        at=r"<command line>", says="--max-pe-cycles"))
    out.append(Case(cls, "cycle_fidelity_sweep_base", ["sweep", "s.yaml", "--db", "r.db"],
                    files={"s.yaml": "base: {system: tpu-v1, model: resnet50, dtype: int8, fidelity: cycle}\n"},
                    rc=2, says="every point of the sweep failed"))
    out.append(Case(cls, "cycle_fidelity_large_gemm", ["run", "--system", "tpu-v1", "--model", "m.yaml", "--dtype",
                                                       "int8", "--fidelity", "cycle"],
                    files={"m.yaml": model(["{name: f, kind: linear, inputs: [x], out_features: 8192}"],
                                           inputs="x: [8192, 8192]")},
                    at=r"<command line>", says="cycle fidelity"))
    for value in ("0", "-5", "abc", "1e30", "", "99999999999999999999"):
        out.append(Case(cls, f"max_pe_cycles_{value or 'empty'}",
                        ["run", "--system", "tpu-v1", "--model", "mlp3", "--dtype", "int8", "--max-pe-cycles", value],
                        at=r"<command line>", says="--max-pe-cycles"))
    # Far more tile steps than fit in memory: a big GEMM on a small array with small buffers.
    tiny = replace_line(replace_line(replace_line(SYSTOLIC, "ifmap:  {capacity: 64KiB", "ifmap:  {capacity: 64B"),
                                     "filter: {capacity: 64KiB", "filter: {capacity: 64B"),
                        "ofmap:  {capacity: 64KiB", "ofmap:  {capacity: 64B")
    out.append(Case(cls, "tile_steps_beyond_limit", ["run", "--system", "s.yaml", "--model", "m.yaml", "--dtype",
                                                     "int8", "-q"],
                    files={"s.yaml": tiny, "m.yaml": model(["{name: f, kind: linear, inputs: [x], out_features: 8192}"],
                                                           inputs="x: [8192, 8192]")},
                    at=r"m\.yaml:3:\d+", says="tile steps"))
    # Sweeps of millions of points: refused before any point is resolved.
    ten = "[" + ", ".join(str(i) for i in range(1, 11)) + "]"
    for n in (6, 7, 8):
        axes = ["batch", "seq", "image", "device.op_overhead", "device.tdp", "device.clock", "device.static_power",
                "device.memory[0].bandwidth"][:n]
        vals = {"batch": ten, "seq": ten, "image": ten,
                "device.op_overhead": "[" + ", ".join(f"{i}us" for i in range(1, 11)) + "]",
                "device.tdp": "[" + ", ".join(f"{i}00W" for i in range(1, 11)) + "]",
                "device.clock": "[" + ", ".join(f"{i}00MHz" for i in range(1, 11)) + "]",
                "device.static_power": "[" + ", ".join(f"{i}W" for i in range(1, 11)) + "]",
                "device.memory[0].bandwidth": "[" + ", ".join(f"{i}GB/s" for i in range(1, 11)) + "]"}
        body = SWEEP_BASE + "factors:\n" + "".join(f"  {a}: {vals[a]}\n" for a in axes)
        # Up to the hard limit, refused at the first factor; past it, at the factor that passes it.
        at = r"s\.yaml:3:3" if n < 8 else r"s\.yaml:10:3"
        out.append(Case(cls, f"sweep_1e{n}_points_dry_run", ["sweep", "s.yaml", "--dry-run"], files={"s.yaml": body},
                        at=at, says=f"{10 ** n} points" if n < 8 else "more than 10000000"))
        out.append(Case(cls, f"sweep_1e{n}_points_validate", ["validate", "s.yaml"], files={"s.yaml": body}, at=at))
        out.append(Case(cls, f"sweep_1e{n}_points_run", ["sweep", "s.yaml", "--db", "r.db"], files={"s.yaml": body},
                        at=at))
    body = SWEEP_BASE + "factors:\n  batch: " + ten + "\n  seq: " + ten + "\n"
    out.append(Case(cls, "sweep_100_points_max_points_10", ["sweep", "s.yaml", "--dry-run", "--max-points", "10"],
                    files={"s.yaml": body}, at=r"s\.yaml:3:3", says="--max-points"))
    for value in ("0", "-1", "abc", "100000001", "18446744073709551616", ""):
        out.append(Case(cls, f"sweep_max_points_{value or 'empty'}", ["sweep", "s.yaml", "--dry-run", "--max-points",
                                                                     value],
                        files={"s.yaml": body}, at=r"(<command line>|mlsim sweep)", says="max-points"))
    # Legal sweeps check out (mlp3 takes an image size, not a sequence length: dry runs build each distinct
    # model once, and a seq factor would be refused as an error of the file).
    legal = SWEEP_BASE + "factors:\n  batch: " + ten + "\n  image: " + ten + "\n"
    out.append(Case(cls, "sweep_100_points_dry_run_legal", ["sweep", "s.yaml", "--dry-run"], files={"s.yaml": legal},
                    rc=0))
    watts = "[" + ", ".join(f"{i}W" for i in range(1, 11)) + "]"
    thousand = (SWEEP_BASE + "factors:\n  batch: " + ten + "\n  image: " + ten + "\n  device.static_power: " + watts
                + "\n")
    out.append(Case(cls, "sweep_1000_points_dry_run_legal", ["sweep", "s.yaml", "--dry-run", "-q"],
                    files={"s.yaml": thousand}, rc=0))
    return out


# ---------------------------------------------------------------------------------------------------------
# Inputs accepted that should not be
# ---------------------------------------------------------------------------------------------------------

def accepted():
    cls = "inputs accepted that should not be"
    out = []
    dev = {"dev.yaml": DEVICE}
    for flag in ("--dtype", "--system", "--model", "--batch", "--seq", "--image", "--mode", "--optimizer",
                 "--db", "--device-model", "--fidelity", "--convention"):
        args = ["run", "--system", "dev.yaml", "--model", "mlp3"]
        if flag in ("--system", "--model"):
            args = [a for a in args]
            args[args.index(flag) + 1] = ""
        else:
            args += [flag, ""]
        out.append(Case(cls, f"empty_{flag[2:]}", args, files=dev, at=r"<command line>",
                        says=flag if flag not in ("--system", "--model") else None))
    out.append(Case(cls, "sweep_empty_db", ["sweep", "s.yaml", "--db", ""], files={"s.yaml": SWEEP_BASE},
                    at=r"<command line>", says="--db"))
    for name in ("dtype", "model", "system", "mode"):
        base = {"system": "tpu-v1", "model": "mlp3", "dtype": "int8", "mode": "inference"}
        base[name] = "''"
        text = "base: {" + ", ".join(f"{k}: {v}" for k, v in base.items()) + "}\n"
        out.append(Case(cls, f"sweep_base_empty_{name}", ["sweep", "s.yaml", "--dry-run"], files={"s.yaml": text},
                        at=r"s\.yaml:1:\d+"))
    # Aliases to unknown or unfinished anchors.
    for name, text in [("unknown_value", "device: *nope\n"), ("unknown_key", "*nope : 1\n"),
                       ("unknown_in_list", "a: [1, *nope]\n"), ("recursive_list", "a: &x [1, *x]\n"),
                       ("recursive_map", "a: &x {b: *x}\n"), ("recursive_deep", "a: &x {b: [{c: *x}]}\n"),
                       ("recursive_key", "a: &x {*x : 1}\n"), ("anchor_in_other_document", "a: &x 1\n---\nb: *x\n"),
                       ("alias_as_map_key_of_map", "a: &x {k: 1}\nb: {*x : 2}\n")]:
        out.append(Case(cls, f"alias_{name}", ["validate", "a.yaml"], files={"a.yaml": text}, at=r"a\.yaml:\d+:\d+"))
    out.append(Case(cls, "alias_recursive_model", ["validate", "m.yaml"],
                    files={"m.yaml": "ops: &o [{name: a, kind: relu, inputs: *o}]\n"}, at=r"m\.yaml:\d+:\d+"))
    out.append(Case(cls, "alias_recursive_sweep", ["sweep", "s.yaml", "--dry-run"],
                    files={"s.yaml": SWEEP_BASE + "factors: &f {batch: *f}\n"}, at=r"s\.yaml:\d+:\d+"))
    # Axes that do not fit an int, or are out of the input's rank.
    for kind, extra in [("concat", "inputs: [x, x]"), ("slice", "inputs: [x]")]:
        for axis in (2**32 + 1, -(2**32) + 1, 2**63 - 1, 5, -3):
            out.append(Case(cls, f"{kind}_axis_{axis}", ["validate", "m.yaml"],
                            files={"m.yaml": model([f"{{name: c, kind: {kind}, {extra}, axis: {axis}}}"])},
                            at=r"m\.yaml:3:\d+", says="axis"))
    out.append(Case(cls, "concat_mismatched_ranks", ["validate", "m.yaml"],
                    files={"m.yaml": model(["{name: c, kind: concat, inputs: [x, y], axis: 1}"],
                                           inputs="x: [N, 16], y: [N, 16, 2]")}, at=r"m\.yaml:3:\d+"))
    for slot in (2**32, -1, 2**63 - 1):
        for key in ("slot", "from_slot"):
            text = ("ops:\n  - {name: a, kind: relu, input_shape: [N, 4]}\n  - {name: b, kind: relu, input_shape: [N, 4]}\n"
                    f"edges:\n  - {{from: a, to: b, {key}: {slot}}}\n")
            out.append(Case(cls, f"edge_{key}_{slot}", ["validate", "m.yaml"], files={"m.yaml": text},
                            at=r"m\.yaml:5:\d+"))
    for ref in ("a:4294967296", "a:-1", "a:", "a:x", "a:99999999999999999999"):
        out.append(Case(cls, f"input_ref_{ref.replace(':', '_')}", ["validate", "m.yaml"],
                        files={"m.yaml": model(["{name: a, kind: relu, inputs: [x]}",
                                                f"{{name: b, kind: relu, inputs: ['{ref}']}}"])},
                        at=r"m\.yaml:4:\d+"))
    # An op with both sources and declared shapes.
    for name, op in [("same_shape", "{name: a, kind: relu, inputs: [x], input_shape: [N, 16]}"),
                     ("other_shape", "{name: a, kind: relu, inputs: [x], input_shape: [N, 99]}"),
                     ("shapes_list", "{name: a, kind: add, inputs: [x, x], input_shapes: [[N, 16], [N, 16]]}"),
                     ("shapes_count", "{name: a, kind: add, inputs: [x, x], input_shapes: [[N, 16]]}")]:
        out.append(Case(cls, f"op_inputs_and_{name}", ["validate", "m.yaml"], files={"m.yaml": model([op])},
                        at=r"m\.yaml:3:\d+", says="not both"))
    # .cfg files missing a key say where it belongs: the section's line.
    for key in ("ArrayHeight", "ArrayWidth", "IfmapSramSzkB", "FilterSramSzkB", "OfmapSramSzkB", "Dataflow"):
        text = "".join(line + "\n" for line in SCALESIM_CFG.splitlines() if not line.startswith(key))
        out.append(Case(cls, f"cfg_missing_{key}", ["validate", "c.cfg"], files={"c.cfg": text},
                        at=rf"c\.cfg:{line_of(text, '[architecture_presets]')}:1", says=key))
    text = SCALESIM_CFG.split("[architecture_presets]")[0]
    out.append(Case(cls, "cfg_missing_section", ["validate", "c.cfg"], files={"c.cfg": text}, at=r"c\.cfg:1:1",
                    says="[architecture_presets]"))
    out.append(Case(cls, "cfg_empty", ["validate", "c.cfg"], files={"c.cfg": ""}, at=r"c\.cfg:1:1"))
    text = replace_line(SCALESIM_CFG, "InterfaceBandwidth: CALC", "InterfaceBandwidth: USER")
    text = "".join(line + "\n" for line in text.splitlines() if not line.startswith("Bandwidth"))
    out.append(Case(cls, "cfg_user_without_bandwidth", ["validate", "c.cfg"], files={"c.cfg": text},
                    at=rf"c\.cfg:{line_of(text, 'InterfaceBandwidth')}:\d+", says="Bandwidth"))
    for name, old, new in [("duplicate_key", "ArrayWidth:     32\n", "ArrayWidth:     32\nArrayWidth: 16\n"),
                           ("unknown_key", "MemoryBanks: 1", "MemoryBank: 1"),
                           ("unknown_section", "[run_presets]", "[run_preset]"),
                           ("bad_header", "[run_presets]", "[run_presets"),
                           ("no_separator", "MemoryBanks: 1", "MemoryBanks 1"),
                           ("dataflow", "Dataflow : ws", "Dataflow : xs"),
                           ("interface", "InterfaceBandwidth: CALC", "InterfaceBandwidth: MAYBE")]:
        text = replace_line(SCALESIM_CFG, old, new)
        out.append(Case(cls, f"cfg_{name}", ["validate", "c.cfg"], files={"c.cfg": text}, at=r"c\.cfg:\d+:\d+"))
    out.append(Case(cls, "cfg_key_before_section", ["validate", "c.cfg"],
                    files={"c.cfg": "ArrayHeight: 8\n" + SCALESIM_CFG}, at=r"c\.cfg:1:1"))
    # Topology CSVs.
    for name, text in [("empty", ""), ("header_only", GEMM_CSV_HEADER), ("wrong_header", "a, b, c,\n1, 2, 3,\n"),
                       ("short_row", GEMM_CSV_HEADER + "L1, 2, 2,\n"), ("zero", GEMM_CSV_HEADER + "L1, 0, 2, 2,\n"),
                       ("negative", GEMM_CSV_HEADER + "L1, -2, 2, 2,\n"), ("no_name", GEMM_CSV_HEADER + ", 2, 2, 2,\n"),
                       ("duplicate_name", GEMM_CSV_HEADER + "L1, 2, 2, 2,\nL1, 2, 2, 2,\n"),
                       ("filter_larger", CONV_CSV_HEADER + "c, 4, 4, 5, 5, 3, 8, 1,\n")]:
        out.append(Case(cls, f"csv_{name}", ["validate", "t.csv"], files={"t.csv": text},
                        at=r"t\.csv(:\d+:\d+|:\d+)?"))
    # A depthwise row (name with "DP") whose filter count differs from its channels is legal: the count is
    # the channel multiplier (workloads/scalesim_csv.cpp), 4 channels x 6 = 24 outputs.
    out.append(Case(cls, "csv_depthwise_multiplier_legal", ["validate", "t.csv"], rc=0,
                    files={"t.csv": CONV_CSV_HEADER + "DPc, 8, 8, 3, 3, 4, 6, 1,\n"}))
    return out


# ---------------------------------------------------------------------------------------------------------
# Damaged or foreign databases
# ---------------------------------------------------------------------------------------------------------

def databases(mlsim, workdir):
    cls = "damaged or foreign databases"
    out = []
    good = os.path.join(workdir, "good.db")
    dev = os.path.join(workdir, "dev.yaml")
    with open(dev, "w") as f:
        f.write(DEVICE)
    subprocess.run([mlsim, "run", "--system", dev, "--model", "mlp3", "-q", "--db", good], check=True,
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=60)
    with sqlite3.connect(good) as c:
        c.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    app_id = 0x6D6C7369

    def damaged(sql, base=True):
        def make(folder):
            path = os.path.join(folder, "r.db")
            if base:
                shutil.copyfile(good, path)
            c = sqlite3.connect(path)
            c.executescript(sql)
            c.commit()
            # Self-contained, whatever mode it was in: nothing left in a -wal file.
            c.execute("PRAGMA journal_mode = DELETE")
            c.close()
            for suffix in ("-wal", "-shm"):
                if os.path.exists(path + suffix):
                    os.remove(path + suffix)
        return make

    run = ["run", "--system", "dev.yaml", "--model", "mlp3", "-q", "--db", "r.db"]
    sweep = ["sweep", "s.yaml", "--db", "r.db", "-q"]
    files = {"dev.yaml": DEVICE, "s.yaml": SWEEP_BASE}
    cases = [
        ("runs_view", "ALTER TABLE runs RENAME TO runs_t; CREATE VIEW runs AS SELECT * FROM runs_t;", "'runs' is a view"),
        ("layer_results_view", "ALTER TABLE layer_results RENAME TO r2; CREATE VIEW layer_results AS SELECT * FROM r2;",
         "'layer_results' is a view"),
        # Schema 11: `layers` is a view; a table under its name in a file of 11 or later is not mlsim's.
        ("layers_table", "DROP VIEW layers; CREATE TABLE layers (run_id INTEGER, idx INTEGER);",
         "'layers' is a table in a schema-"),
        ("meta_view", "ALTER TABLE meta RENAME TO m2; CREATE VIEW meta AS SELECT * FROM m2;", "'meta' is a view"),
        ("sweeps_view", "DROP TABLE sweeps; CREATE VIEW sweeps AS SELECT 1 AS x;", "'sweeps' is a view"),
        ("meta_wrong_shape", "DROP TABLE meta; CREATE TABLE meta (a, b, c);", "not (key, value)"),
        ("meta_one_column", "DROP TABLE meta; CREATE TABLE meta (key TEXT);", "not (key, value)"),
        ("version_prefix_3abc", "UPDATE meta SET value = '3abc' WHERE key = 'schema_version';", "'3abc'"),
        ("version_prefix_4abc", "UPDATE meta SET value = '4abc' WHERE key = 'schema_version';", "'4abc'"),
        ("version_empty", "UPDATE meta SET value = '' WHERE key = 'schema_version';", "schema_version"),
        ("version_space", "UPDATE meta SET value = ' 4' WHERE key = 'schema_version';", "schema_version"),
        ("version_real", "UPDATE meta SET value = '4.0' WHERE key = 'schema_version';", "'4.0'"),
        ("version_negative", "UPDATE meta SET value = '-1' WHERE key = 'schema_version';", "'-1'"),
        ("version_hex", "UPDATE meta SET value = '0x4' WHERE key = 'schema_version';", "'0x4'"),
        ("version_huge", "UPDATE meta SET value = '99999999999999999999' WHERE key = 'schema_version';",
         "schema_version"),
        ("version_newer", "UPDATE meta SET value = '999' WHERE key = 'schema_version';", "newer"),
        ("index_name_is_table", "DROP INDEX runs_by_config_hash; CREATE TABLE runs_by_config_hash (x);",
         "'runs_by_config_hash' is a table"),
        ("index_name_is_view", "DROP INDEX sweeps_by_run; CREATE VIEW sweeps_by_run AS SELECT 1;",
         "'sweeps_by_run' is a view"),
        ("runs_lacks_key", "ALTER TABLE runs RENAME TO old; CREATE TABLE runs (status TEXT);", "no column 'run_id'"),
        ("layer_results_lacks_idx", "DROP VIEW layers; DROP VIEW layer_levels; DROP VIEW layer_metrics; "
                                    "DROP TABLE layer_results; CREATE TABLE layer_results (run_id INTEGER);",
         "no column 'idx'"),
        ("sweep_factors_partial", "DROP TABLE sweep_factors; CREATE TABLE sweep_factors (x);", "no column"),
        ("metric_names_partial", "DROP VIEW layer_metrics; DROP TABLE metric_names; "
                                 "CREATE TABLE metric_names (name TEXT);", "no column 'metric_id'"),
        # Schema 9: layer_metrics is a view; a table, or another view, under its name is not mlsim's.
        ("layer_metrics_table", "DROP VIEW layer_metrics; CREATE TABLE layer_metrics (run_id INTEGER);",
         "'layer_metrics' is a table"),
        ("layer_metrics_other_view", "DROP VIEW layer_metrics; CREATE VIEW layer_metrics AS SELECT 1 AS run_id;",
         "not the one mlsim makes"),
    ]
    for name, sql, says in cases:
        for cmd_name, args in (("run", run), ("sweep", sweep)):
            out.append(Case(cls, f"db_{name}_{cmd_name}", args, files=files, setup=damaged(sql), at=r"r\.db",
                            says=says, same=["r.db"]))
    # Partial tables from another program in a file that carries mlsim's stamp, or none.
    for name, sql, says in [
        ("stamped_partial_runs", f"PRAGMA application_id = {app_id}; CREATE TABLE runs (x INTEGER);", "no column"),
        ("stamped_partial_layers", f"PRAGMA application_id = {app_id}; CREATE TABLE layers (run_id TEXT, foo BLOB);",
         "no column"),
        ("stamped_partial_sweeps", f"PRAGMA application_id = {app_id}; CREATE TABLE meta (key TEXT PRIMARY KEY, "
                                   "value TEXT NOT NULL); INSERT INTO meta VALUES ('schema_version', '4'); "
                                   "CREATE TABLE sweeps (a);", "no column"),
        ("stamped_meta_view", f"PRAGMA application_id = {app_id}; CREATE VIEW meta AS SELECT 1 AS key, 2 AS value;",
         "view"),
        ("foreign_unstamped", "CREATE TABLE runs (x INTEGER);", "not written by mlsim"),
        ("foreign_other_stamp", "PRAGMA application_id = 42; CREATE TABLE t (x);", "not written by mlsim"),
    ]:
        for cmd_name, args in (("run", run), ("sweep", sweep)):
            out.append(Case(cls, f"db_{name}_{cmd_name}", args, files=files, setup=damaged(sql, base=False),
                            at=r"r\.db", says=says, same=["r.db"]))

    def text_file(content):
        def make(folder):
            with open(os.path.join(folder, "r.db"), "wb") as f:
                f.write(content)
        return make

    def truncated(folder):
        shutil.copyfile(good, os.path.join(folder, "r.db"))
        os.truncate(os.path.join(folder, "r.db"), 3000)

    def corrupted_schema(folder):
        path = os.path.join(folder, "r.db")
        shutil.copyfile(good, path)
        with open(path, "r+b") as f:
            f.seek(100)
            f.write(b"\xff" * 2000)

    def corrupted_runs_root(folder):
        path = os.path.join(folder, "r.db")
        shutil.copyfile(good, path)
        with sqlite3.connect(path) as c:
            page_size = c.execute("PRAGMA page_size").fetchone()[0]
            root = c.execute("SELECT rootpage FROM sqlite_schema WHERE name = 'runs'").fetchone()[0]
        with open(path, "r+b") as f:
            f.seek((root - 1) * page_size)
            f.write(b"\xff" * 16)

    for name, setup, says in [("text_file", text_file(b"these are my notes, not a database\n" * 200), None),
                              ("empty_header", text_file(b"SQLite format 3\x00" + b"\x00" * 84), None),
                              ("truncated", truncated, None), ("corrupted_schema_page", corrupted_schema, None),
                              ("corrupted_runs_root_page", corrupted_runs_root, None)]:
        out.append(Case(cls, f"db_{name}", run, files=files, setup=setup, at=r"r\.db", says=says))
    out.append(Case(cls, "db_is_directory", run[:-1] + ["adir"], files=files,
                    setup=lambda d: os.makedirs(os.path.join(d, "adir")), at=r"adir"))
    out.append(Case(cls, "db_under_a_file", run[:-1] + ["dev.yaml/r.db"], files=files, at=r"dev\.yaml/r\.db"))
    out.append(Case(cls, "db_fifo", run, files=files, fifo=["r.db"], at=r"r\.db", says="regular file"))
    out.append(Case(cls, "db_dev_zero", run[:-1] + ["/dev/zero"], files=files, at=r"/dev/zero", says="regular file"))
    out.append(Case(cls, "db_sweep_fifo", sweep, files=files, fifo=["r.db"], at=r"r\.db", says="regular file"))
    # A file mlsim wrote, checkpointed: appending to it is legal.
    out.append(Case(cls, "db_good_appends", run, files=files, setup=damaged("SELECT 1;"), rc=0))
    return out


# ---------------------------------------------------------------------------------------------------------

def all_cases(mlsim, workdir):
    cases = unbounded_input() + overflow() + unbounded_work() + accepted() + databases(mlsim, workdir)
    names = [c.name for c in cases]
    dupes = {n for n in names if names.count(n) > 1}
    assert not dupes, dupes
    return cases


def write_case(root, case):
    folder = os.path.join(root, case.name)
    os.makedirs(folder)
    for name, content in case.files.items():
        path = os.path.join(folder, name)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, "wb") as f:
            f.write(content if isinstance(content, bytes) else content.encode())
    for name in case.fifo:
        os.mkfifo(os.path.join(folder, name))
    if case.setup:
        case.setup(folder)
    return folder


def digest(path):
    with open(path, "rb") as f:
        return hashlib.sha256(f.read()).hexdigest()


LOCATION = re.compile(r"^(?P<loc>.*?): error: ")
BAD = ["internal error", "AddressSanitizer", "runtime error:", "LeakSanitizer", "Sanitizer", "Segmentation fault",
       "terminate called", "std::bad_alloc"]


def run_case(mlsim, src, folder, case, sanitized):
    limit = SANITIZED_TIME_LIMIT if sanitized else TIME_LIMIT
    env = dict(os.environ, MLSIM_CONFIGS=os.path.join(src, "configs"))
    if sanitized:
        env["ASAN_OPTIONS"] = "hard_rss_limit_mb=2048:detect_leaks=1:" + env.get("ASAN_OPTIONS", "")
        env["UBSAN_OPTIONS"] = "print_stacktrace=1:halt_on_error=1:" + env.get("UBSAN_OPTIONS", "")

    def cap():
        # SIGXCPU at `limit` CPU seconds (the hard limit a second later: SIGKILL).
        resource.setrlimit(resource.RLIMIT_CPU, (limit, limit + 1))
        if not sanitized:
            resource.setrlimit(resource.RLIMIT_AS, (MEMORY_CAP, MEMORY_CAP))

    before = {f: digest(os.path.join(folder, f)) for f in case.same}
    start = time.monotonic()
    try:
        p = subprocess.run([mlsim] + case.args, cwd=folder, env=env, stdin=subprocess.DEVNULL,
                           stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, timeout=limit * WALL_FACTOR,
                           preexec_fn=cap)
    except subprocess.TimeoutExpired:
        return f"ran past the {limit * WALL_FACTOR} s wall-clock backstop (a hang)", time.monotonic() - start
    elapsed = time.monotonic() - start
    if p.returncode in (-signal.SIGXCPU, -signal.SIGKILL):
        return f"used more than the {limit} s CPU limit (a hang)", elapsed
    err = p.stderr.decode(errors="replace")
    first = err.splitlines()[0] if err else ""
    problems = []
    if p.returncode != case.rc:
        problems.append(f"exit status {p.returncode}, expected {case.rc}")
    for bad in BAD:
        if bad in err:
            problems.append(f"stderr reports '{bad}'")
            break
    if case.rc == 2:
        m = LOCATION.match(first)
        if not m:
            problems.append("the first line of stderr is not '<location>: error: ...'")
        elif case.at and not re.fullmatch(case.at, m.group("loc")):
            problems.append(f"located at '{m.group('loc')}', expected /{case.at}/")
    if case.says and case.says not in err:
        problems.append(f"stderr does not say '{case.says}'")
    for f, d in before.items():
        if digest(os.path.join(folder, f)) != d:
            problems.append(f"{f} was changed")
    if problems:
        return "; ".join(problems) + "\n      stderr: " + err.strip()[:600].replace("\n", "\n              "), elapsed
    return None, elapsed


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("mlsim")
    ap.add_argument("src")
    ap.add_argument("--sanitized", action="store_true", help="an ASan/UBSan build: longer limits, no RLIMIT_AS")
    ap.add_argument("--keep", help="generate the cases into this folder and keep it")
    ap.add_argument("--only", help="run only the cases whose name contains this")
    ap.add_argument("--list", action="store_true", help="list the cases and exit")
    ap.add_argument("--jobs", type=int, default=os.cpu_count() or 2)
    a = ap.parse_args()
    mlsim = os.path.abspath(a.mlsim)
    src = os.path.abspath(a.src)
    root = a.keep or tempfile.mkdtemp(prefix="mlsim_hostile_")
    if a.keep:
        shutil.rmtree(root, ignore_errors=True)
        os.makedirs(root)
    t0 = time.monotonic()
    try:
        cases = all_cases(mlsim, root)
        if a.list:
            for c in cases:
                print(f"{c.cls:38} {c.name}")
            print(f"{len(cases)} cases")
            return 0
        if a.only:
            cases = [c for c in cases if a.only in c.name]
        folders = {c.name: write_case(os.path.join(root, "cases"), c) for c in cases}
        results = {}
        with concurrent.futures.ThreadPoolExecutor(max_workers=max(1, a.jobs)) as pool:
            futures = {pool.submit(run_case, mlsim, src, folders[c.name], c, a.sanitized): c for c in cases}
            for fut in concurrent.futures.as_completed(futures):
                results[futures[fut].name] = fut.result()
        failed = 0
        by_class = {}
        slowest = sorted(((r[1], n) for n, r in results.items()), reverse=True)[:3]
        for c in cases:
            problem, elapsed = results[c.name]
            ok, n = by_class.get(c.cls, (0, 0))
            by_class[c.cls] = (ok + (problem is None), n + 1)
            if problem:
                failed += 1
                print(f"FAIL {c.name} ({c.cls}, {elapsed:.2f} s): mlsim {' '.join(c.args)[:200]}\n      {problem}")
        for cls, (ok, n) in by_class.items():
            print(f"{ok:4}/{n:<4} {cls}")
        print(f"{len(cases) - failed}/{len(cases)} hostile inputs handled ({time.monotonic() - t0:.1f} s; slowest: "
              + ", ".join(f"{n} {t:.2f} s" for t, n in slowest) + ")")
        if not a.only and len(cases) < 300:
            print(f"FAIL: only {len(cases)} cases; the corpus must have at least 300")
            return 1
        return 1 if failed else 0
    finally:
        if not a.keep:
            shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
