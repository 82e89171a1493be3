#!/usr/bin/env bash
# ctest "cli: analysis scripts' bad arguments": the plotting scripts refuse a bad --out, a missing binary or an
# unbalanced --extra with one line and exit status 2, never a Python traceback.
#   analysis_errors.sh SOURCE_DIR OUT_DIR
set -uo pipefail
src=$1
out=$2
rm -rf "$out"
mkdir -p "$out"
fails=0
expect() {  # expect "what it must say" command...
    local says=$1
    shift
    local text status
    text=$("$@" 2>&1)
    status=$?
    if [ "$status" -ne 2 ] || ! grep -q -- "$says" <<<"$text" || grep -q "Traceback" <<<"$text"; then
        echo "FAIL (exit $status): $*"
        echo "$text" | tail -5
        fails=$((fails + 1))
    fi
}
py=/usr/bin/python3
expect "expected a .png file name" $py "$src/analysis/collective_plot.py" "$out/none.db" --out "$out/x.foo"
expect "no folder" $py "$src/analysis/collective_plot.py" "$out/none.db" --out "$out/missing/x.png"
expect "no such file" $py "$src/analysis/collective_plot.py" "$out/none.db" --out "$out/x.png"
expect "cannot run" $py "$src/analysis/serving_plot.py" --mlsim "$out/no-such-mlsim" --no-plot --out "$out/s"
expect "No closing quotation" $py "$src/analysis/serving_plot.py" --extra '"x' --no-plot --out "$out/s"
[ "$fails" -eq 0 ] || exit 1
echo "analysis scripts: 5 bad arguments refused with exit 2"
