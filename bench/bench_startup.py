#!/usr/bin/python3
"""CPU time (user + system) of short `mlsim` commands, median of N runs.

    /usr/bin/python3 bench/bench_startup.py [--mlsim build/mlsim] [--compare OTHER | --warm-start-ab]
                                            [-n 21] [--no-floor] [--counts] [-- mlsim arguments...]

Without arguments it measures two commands: `mlsim --version` (start-up alone: exec, page faults,
static initialisers, argument dispatch) and one ResNet-50 run on the TPU v4 preset (the systolic
model), bf16, totals only, no database. Issue 8 target: that run under 5 ms of CPU.

How it measures. Each child is started with os.posix_spawn (glibc spawns with vfork semantics: the
child shares this script's memory until it execs, so it copies no page tables) and reaped with
os.wait4, whose resource usage is the child's own user and system CPU time: the kernel's exec, every
page fault of loading and running the binary, and everything mlsim does, but nothing of this script.
(Started with subprocess.Popen, Python forks first, and the child may then be charged for copying and
tearing down a copy of the interpreter's page tables.) stdout goes to /dev/null and stderr to a file
that is shown if the command fails.

How to read the figures.
  * floor: a static C program that returns at once (built here with `cc -static`, if a compiler is
    found; --no-floor skips it). Any process costs this much, mostly the kernel's exec and page faults
    (about 1.8 ms on the project's 2-core VM). Nothing mlsim does can go below it.
  * `--version`: the floor plus mlsim's fixed start-up (mapping a larger static binary, its static
    initialisers); about 0.1 M instructions of its own.
  * the run: `--version` plus the work of the command (loading the preset, building the model,
    simulating, printing). Subtract `--version` to see the work alone.
  * median is the figure to quote; min shows what the machine gives when nothing else runs. CPU time
    is charged per process, so it stays meaningful when other jobs share the cores, but a loaded VM
    still inflates it (cache and TLB misses, steal time counted as system time): compare binaries
    with --compare, which runs them alternately so that both see the same load, and note the load
    average. `perf stat -r 20 -e task-clock build/mlsim run ...` gives a second opinion (same
    quantity, mean rather than median); instruction counts (valgrind --tool=callgrind) do not depend
    on the load at all.
  * how the binary file was written matters: the linker's small writes leave it in the page cache as
    4 KiB pages, a copy made with cp is cached in large folios and costs 1 to 3 ms less CPU per run
    (bench/README.md). CMakeLists.txt rewrites build/mlsim with cp after linking; when comparing with
    another binary, copy that one with cp too.
  * --counts adds, per command and binary, the two load-independent figures: instructions executed
    (valgrind --tool=callgrind, its "I refs" total) and page faults (perf stat -e page-faults, mean of
    10 runs), where those tools are installed.
  * --warm-start-ab runs the binary alternately as is and with MLSIM_NO_WARM_START=1, which turns off
    cli/warm_start.cpp (pre-faulting the binary's segments, transparent huge pages for the heap): what
    the page faults it saves were worth under the same load.
"""
import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile

DEFAULT_COMMANDS = [
    ["--version"],
    ["run", "--system", "tpu-v4", "--model", "resnet50", "--dtype", "bf16", "-q"],
]


def cpu_seconds(cmd, err_path, env=None):
    actions = [
        (os.POSIX_SPAWN_OPEN, 0, os.devnull, os.O_RDONLY, 0),
        (os.POSIX_SPAWN_OPEN, 1, os.devnull, os.O_WRONLY, 0),
        (os.POSIX_SPAWN_OPEN, 2, err_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600),
    ]
    pid = os.posix_spawn(cmd[0], cmd, env if env is not None else os.environ, file_actions=actions)
    _, status, usage = os.wait4(pid, 0)
    if os.waitstatus_to_exitcode(status) != 0:
        with open(err_path) as f:
            sys.exit(f"command failed ({status}): {' '.join(cmd)}\n{f.read()}")
    return usage.ru_utime + usage.ru_stime, usage.ru_utime, usage.ru_stime


def build_floor(tmp):
    cc = shutil.which("cc") or shutil.which("gcc") or shutil.which("clang")
    if not cc:
        return None
    src, exe = os.path.join(tmp, "floor.c"), os.path.join(tmp, "floor")
    with open(src, "w") as f:
        f.write("int main(void) { return 0; }\n")
    r = subprocess.run([cc, "-O2", "-static", "-o", exe, src], capture_output=True)
    return exe if r.returncode == 0 else None


def counts(cmd):
    """Instructions (callgrind) and page faults (perf stat, mean of 10) of one command, or None each."""
    instr = faults = None
    if shutil.which("valgrind"):
        r = subprocess.run(["valgrind", "--tool=callgrind", "--callgrind-out-file=/dev/null"] + cmd,
                           stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        for line in r.stderr.splitlines():
            if "I   refs:" in line or "I refs:" in line:
                instr = int(line.split(":")[-1].replace(",", "").strip())
    if shutil.which("perf"):
        r = subprocess.run(["perf", "stat", "-x", ",", "-r", "10", "-e", "page-faults"] + cmd,
                           stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        for line in r.stderr.splitlines():
            f = line.split(",")
            if len(f) > 2 and f[2].startswith("page-faults"):
                try:
                    faults = float(f[0])
                except ValueError:
                    pass
    return instr, faults


def report(label, runs):
    total = [t for t, _, _ in runs]
    print(f"  {label}: {len(runs)} runs, median CPU (user+sys) {statistics.median(total) * 1e3:.2f} ms  "
          f"(min {min(total) * 1e3:.2f}, max {max(total) * 1e3:.2f}; "
          f"median user {statistics.median(u for _, u, _ in runs) * 1e3:.2f}, "
          f"sys {statistics.median(s for _, _, s in runs) * 1e3:.2f})")


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--mlsim", default="build/mlsim")
    ap.add_argument("--compare", help="another mlsim binary, run alternately with --mlsim")
    ap.add_argument("--warm-start-ab", action="store_true",
                    help="the binary alternately as is and with MLSIM_NO_WARM_START=1")
    ap.add_argument("--counts", action="store_true",
                    help="also instructions (callgrind) and page faults (perf stat) of each command")
    ap.add_argument("-n", type=int, default=21, help="counted runs per command (after one warm-up)")
    ap.add_argument("--no-floor", action="store_true", help="do not build and measure the static floor")
    ap.add_argument("args", nargs="*", help="one mlsim command to measure instead of the default two")
    a = ap.parse_args()
    commands = [a.args] if a.args else DEFAULT_COMMANDS
    # Variants to run alternately: (label, binary, environment).
    env_off = dict(os.environ, MLSIM_NO_WARM_START="1")
    binaries = [(os.path.abspath(a.mlsim), os.path.abspath(a.mlsim), None)]
    if a.compare:
        binaries.append((os.path.abspath(a.compare), os.path.abspath(a.compare), None))
    elif a.warm_start_ab:
        binaries.append((os.path.abspath(a.mlsim) + " (MLSIM_NO_WARM_START=1)", os.path.abspath(a.mlsim), env_off))
    with tempfile.TemporaryDirectory(prefix="mlsim-startup-") as tmp:
        err = os.path.join(tmp, "stderr")
        floor = None if a.no_floor else build_floor(tmp)
        if floor:
            print("floor (static `int main() { return 0; }`)")
            cpu_seconds([floor], err)
            report(floor, [cpu_seconds([floor], err) for _ in range(a.n)])
        for args in commands:
            print(f"{' '.join(args)}")
            runs = {label: [] for label, _, _ in binaries}
            for _, b, env in binaries:
                cpu_seconds([b] + args, err, env)  # warm the page cache
            for _ in range(a.n):
                for label, b, env in binaries:
                    runs[label].append(cpu_seconds([b] + args, err, env))
            for label, _, _ in binaries:
                report(label, runs[label])
            if a.counts:
                for label, b, env in binaries:
                    if env is not None:
                        continue  # the environment switch changes faults, not what callgrind counts
                    instr, faults = counts([b] + args)
                    print(f"  {label}: instructions {'-' if instr is None else f'{instr / 1e6:.2f} M'}, "
                          f"page faults {'-' if faults is None else f'{faults:.0f}'}")


if __name__ == "__main__":
    main()
