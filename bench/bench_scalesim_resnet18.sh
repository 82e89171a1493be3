#!/usr/bin/env bash
# ResNet-18 (SCALE-Sim's topology file) on SCALE-Sim's 256x256 google.cfg, --convention scalesim,
# once per dataflow (the .cfg with its Dataflow line set to os, ws, is): median wall time and peak
# RSS of 9 runs each. Issue 3 target: at most 65 ms and 100 MB per dataflow (SCALE-Sim v2 takes
# 65-79 s and 3.4-5.5 GB).
#   bench/bench_scalesim_resnet18.sh [build/mlsim] [path/to/scalesim/reference]
set -euo pipefail
mlsim=${1:-build/mlsim}
ref=${2:-../shared/reference/scalesim}
[ -f "$ref/google.cfg" ] || ref=tests/arch/data
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
for df in os ws is; do
  sed "s/^Dataflow *:.*/Dataflow : $df/" "$ref/google.cfg" > "$tmp/google_$df.cfg"
  echo "== dataflow $df: $("$mlsim" run --system "$tmp/google_$df.cfg" --model "$ref/Resnet18.csv" \
        --convention scalesim --quiet | grep cycles)"
  /usr/bin/python3 bench/bench_cli.py --mlsim "$mlsim" -n 9 -- run --system "$tmp/google_$df.cfg" \
    --model "$ref/Resnet18.csv" --convention scalesim --quiet | tail -n 1
done
