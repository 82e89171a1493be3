#!/usr/bin/env bash
# One entry point for a fresh Debian 12 machine: installs what is missing, builds, then runs a job.
#   scripts/setup.sh demo         build Release into build/ and run the main demo
#   scripts/setup.sh test         build Release into build/ and run the whole test suite (CTest)
#   scripts/setup.sh sanitize     build with ASan+UBSan into build-asan/ (clang, with the libFuzzer targets
#                                 too, so that CI's fuzz step needs no second build) and run the test suite
#   scripts/setup.sh fuzz [MODE]  build the libFuzzer targets with clang into build-fuzz/ (or the directory
#                                 named by MLSIM_FUZZ_BUILD, e.g. build-asan) and run them
#                                 (scripts/fuzz.sh MODE: short, the default, 4000 inputs each from seed 1; long, 10 min each)
#   scripts/setup.sh format       check that the C++ sources follow .clang-format (scripts/format.sh check)
# Idempotent: apt-get runs only when a package is missing; the build is incremental.
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$here"

pkgs=(build-essential cmake libboost-graph-dev libboost-program-options-dev libsqlite3-dev sqlite3
      catch2 libfmt-dev libyaml-cpp-dev python3 python3-pandas python3-matplotlib)
# clang with its libFuzzer runtime (libclang-rt-dev: libclang_rt.fuzzer) for the fuzz targets;
# clang-format for the formatting check.
case "${1:-demo}" in
  # Open MPI for mlsim-mpi (sweeps over MPI: mpirun -np N build/mlsim-mpi sweep FILE) and its test.
  test) pkgs+=(libopenmpi-dev openmpi-bin) ;;
  fuzz|sanitize) pkgs+=(clang libclang-rt-dev) ;;
  format) pkgs+=(clang-format git) ;;
esac
missing=()
for p in "${pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
  echo "setup: installing ${missing[*]}" >&2
  sudo_cmd=()
  [ "$(id -u)" -ne 0 ] && sudo_cmd=(sudo)
  "${sudo_cmd[@]}" apt-get update -qq
  DEBIAN_FRONTEND=noninteractive "${sudo_cmd[@]}" apt-get install -y -qq --no-install-recommends "${missing[@]}" >&2
fi

jobs=$(nproc 2>/dev/null || echo 2)
build() {  # build DIR [cmake args...]
  local dir=$1; shift
  cmake -S . -B "$dir" -DCMAKE_BUILD_TYPE=Release "$@" >/dev/null
  cmake --build "$dir" -j "$jobs"
}

case "${1:-demo}" in
  demo)
    build build >&2
    exec ./build/mlsim demo --db results/demo.db
    ;;
  test)
    build build
    ctest --test-dir build --output-on-failure -j "$jobs"
    ;;
  sanitize)
    # clang: one build serves the tests under ASan + UBSan and the fuzz targets (MLSIM_FUZZ adds
    # coverage instrumentation, which the tests do not notice).
    build build-asan -DCMAKE_CXX_COMPILER=clang++ -DMLSIM_SANITIZE=ON -DMLSIM_FUZZ=ON
    ASAN_OPTIONS=detect_leaks=1 UBSAN_OPTIONS=print_stacktrace=1 \
      ctest --test-dir build-asan --output-on-failure -j "$jobs"
    ;;
  fuzz)
    exec scripts/fuzz.sh "${2:-short}"
    ;;
  format)
    exec scripts/format.sh check
    ;;
  *) echo "usage: scripts/setup.sh demo|test|sanitize|fuzz [short|long]|format" >&2; exit 2 ;;
esac
