#!/usr/bin/env bash
# The libFuzzer targets in fuzz/ (see fuzz/README.md): builds them with clang into build-fuzz/ and runs them.
#   scripts/fuzz.sh build                 configure and build build-fuzz/ (clang, ASan + UBSan, libFuzzer)
#   scripts/fuzz.sh short [TARGET...]     build, then each target for 25 s (CI; FUZZ_SECONDS overrides)
#   scripts/fuzz.sh long  [TARGET...]     build, then each target for 600 s (FUZZ_SECONDS overrides)
# TARGET is config, model, scalesim_csv, scalesim_cfg or sweep; default: all five, one after another.
# Each target starts from its seed inputs (configs/ and tests/ files of its kind, and the saved findings in
# tests/fuzz/TARGET/) plus the corpus it grew on earlier runs (build-fuzz/corpus/TARGET/). A finding (crash,
# uncaught exception other than a user error, sanitizer report, input slower than 10 s, more than 2 GB) is
# saved under build-fuzz/findings/TARGET/ and the script exits 1 after the remaining targets ran. Copy a
# finding to tests/fuzz/TARGET/ once fixed: ctest replays that folder in every build.
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$here"

all_targets=(config model scalesim_csv scalesim_cfg sweep)
# MLSIM_FUZZ_BUILD names another build directory that already has the targets (CI: build-asan, a clang
# ASan + UBSan build configured with MLSIM_FUZZ=ON by scripts/setup.sh sanitize); it is built, not
# reconfigured.
build_dir=${MLSIM_FUZZ_BUILD:-build-fuzz}

# The inputs each target starts from, as globs relative to the repository root.
seeds_of() {
    case "$1" in
        config) echo "configs/devices/*.yaml tests/config/data/*.yaml tests/config/data/chain/*.yaml
                      tests/golden/cases/*/*.yaml" ;;
        model) echo "configs/models/*.yaml tests/workloads/data/*.yaml tests/golden/cases/model_*/*.yaml" ;;
        scalesim_csv) echo "tests/workloads/data/*.csv tests/arch/data/*.csv tests/golden/cases/*/*.csv" ;;
        scalesim_cfg) echo "tests/arch/data/*.cfg" ;;
        sweep) echo "configs/sweeps/*.yaml tests/experiment/data/sweep_*.yaml tests/cli/data/sweep_*.yaml" ;;
        *) echo "scripts/fuzz.sh: unknown target '$1' (one of: ${all_targets[*]})" >&2; exit 2 ;;
    esac
}

build() {
    command -v clang++ >/dev/null || { echo "scripts/fuzz.sh: clang++ not found (scripts/setup.sh fuzz installs it)" >&2; exit 2; }
    if [ "$build_dir" != build-fuzz ]; then
        grep -q '^MLSIM_FUZZ:BOOL=ON' "$build_dir/CMakeCache.txt" 2>/dev/null ||
            { echo "scripts/fuzz.sh: $build_dir is not a build configured with MLSIM_FUZZ=ON" >&2; exit 2; }
        cmake --build "$build_dir" --target fuzz -j "$(nproc 2>/dev/null || echo 2)"
        return
    fi
    local launcher=()
    command -v ccache >/dev/null && launcher=(-DCMAKE_CXX_COMPILER_LAUNCHER=ccache)
    cmake -S . -B "$build_dir" -DCMAKE_CXX_COMPILER=clang++ -DCMAKE_BUILD_TYPE=RelWithDebInfo \
        -DMLSIM_FUZZ=ON -DMLSIM_TESTS=OFF "${launcher[@]}" >/dev/null
    cmake --build "$build_dir" --target fuzz -j "$(nproc 2>/dev/null || echo 2)"
}

# run TARGET SECONDS: one libFuzzer session; returns its exit status.
run_target() {
    local t=$1 secs=$2
    local seeds="$build_dir/seeds/$t" corpus="$build_dir/corpus/$t" findings="$build_dir/findings/$t"
    rm -rf "$seeds"
    mkdir -p "$seeds" "$corpus" "$findings"
    local f n=0
    # shellcheck disable=SC2046  # the globs are meant to expand
    for f in $(seeds_of "$t") tests/fuzz/"$t"/*; do
        [ -f "$f" ] || continue
        cp "$f" "$seeds/$n-$(basename "$f")"
        n=$((n + 1))
    done
    # A dictionary helps the mutator build valid documents with hostile values: the keys the seeds use
    # ("name:"), then numbers at the edges of 32- and 64-bit ranges and of doubles, and YAML's anchors,
    # aliases and merge keys.
    {
        grep -ohE '^[ -]*[A-Za-z_][A-Za-z0-9_.]*\s*[:=]' "$seeds"/* 2>/dev/null |
            sed -E 's/^[ -]*//; s/\s*([:=])$/\1/; s/"/\\"/g; s/.*/"&"/' || true
        printf '"%s"\n' 0 -1 2147483647 2147483648 4294967296 9223372036854775807 9223372036854775808 \
            -9223372036854775808 18446744073709551616 1e30 1e-30 1e308 inf nan 0.0 -0 \
            '&a ' '*a' '<<: ' '[' '{' '- ' 'GHz' 'TB/s' 'GiB' 'pJ' 'W'
    } | sort -u > "$build_dir/$t.dict"
    local dict=()
    [ -s "$build_dir/$t.dict" ] && dict=(-dict="$build_dir/$t.dict")
    echo "== fuzz $t: ${secs} s from $n seed files and $(find "$corpus" -type f | wc -l) corpus inputs"
    local rc=0
    "$build_dir/${t}_fuzz" "$corpus" "$seeds" "${repeatable[@]}" -max_total_time="$secs" -timeout=10 -rss_limit_mb=2048 \
        -max_len=65536 -print_final_stats=1 "${dict[@]}" -artifact_prefix="$findings/" \
        > "$build_dir/$t.log" 2>&1 || rc=$?
    grep -E '^(stat::|Done|#[0-9]+\s+DONE)' "$build_dir/$t.log" || true
    if [ "$rc" -ne 0 ]; then
        echo "!! fuzz $t: finding (exit $rc); log $build_dir/$t.log, input in $findings/" >&2
        grep -m1 -A12 -E 'ERROR|runtime error|terminate called|deadly signal|timeout' "$build_dir/$t.log" >&2 || true
    fi
    return "$rc"
}

mode=${1:-short}
[ $# -gt 0 ] && shift
targets=("$@")
[ ${#targets[@]} -eq 0 ] && targets=("${all_targets[@]}")
for t in "${targets[@]}"; do seeds_of "$t" >/dev/null; done

case "$mode" in
    build) build; exit 0 ;;
    # CI's run is repeatable: a fixed seed and a fixed number of inputs (the time is only a cap), so a
    # run that passed once passes again on the same tree; `long` explores freely.
    short) secs=${FUZZ_SECONDS:-60}; repeatable=(-seed=1 -runs="${FUZZ_RUNS:-4000}") ;;
    long) secs=${FUZZ_SECONDS:-600}; repeatable=() ;;
    *) echo "usage: scripts/fuzz.sh build|short|long [TARGET...]" >&2; exit 2 ;;
esac

build
failed=()
for t in "${targets[@]}"; do
    run_target "$t" "$secs" || failed+=("$t")
done
if ((${#failed[@]})); then
    echo "fuzz: findings in ${failed[*]}" >&2
    exit 1
fi
echo "fuzz: no findings (${#targets[@]} targets, $secs s each)"
