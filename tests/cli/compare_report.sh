#!/usr/bin/env bash
# ctest "cli: compare default report": `mlsim compare` with the built-in study writes its table, the
# comparisons rows and the report folder (report.md and the four plots, non-empty PNG files).
#   compare_report.sh MLSIM OUT_DIR
set -euo pipefail
mlsim=$1
out=$2
rm -rf "$out"
mkdir -p "$out"
"$mlsim" compare --db "$out/compare.db" --report "$out/report" -q > "$out/table.txt"
grep -q "kws *stm32f746" "$out/table.txt" || { echo "no kws row on the MCU"; cat "$out/table.txt"; exit 1; }
grep -q -- "-> .*does not fit on stm32f746" "$out/table.txt" || { echo "no reason line for a pair that does not fit"; exit 1; }
test -s "$out/report/report.md" || { echo "no report.md"; exit 1; }
for png in latency_energy perf_per_watt roofline breakdown; do
    f="$out/report/$png.png"
    test -s "$f" || { echo "no $f"; exit 1; }
    [ "$(head -c 8 "$f" | od -An -tx1 | tr -d ' \n')" = "89504e470d0a1a0a" ] || { echo "$f is not a PNG"; exit 1; }
    grep -q "($png.png)" "$out/report/report.md" || { echo "report.md does not show $png.png"; exit 1; }
done
grep -q "llama3-8b-train" "$out/report/report.md" || { echo "report.md lacks the training rows"; exit 1; }
echo "compare report ok: $(grep -c '^| ' "$out/report/report.md") table lines"
# A report folder that cannot be made (a file in its place) is refused before any pair runs: exit 2 and a
# message naming --report, with no study written to the database.
: > "$out/not_a_folder"
set +e
"$mlsim" compare --db "$out/refused.db" --report "$out/not_a_folder" -q > "$out/refused.txt" 2>&1
status=$?
set -e
[ "$status" -eq 2 ] || { echo "a file as --report: exit $status, expected 2"; cat "$out/refused.txt"; exit 1; }
grep -q -- "--report: cannot make the report folder" "$out/refused.txt" || { echo "no --report message"; cat "$out/refused.txt"; exit 1; }
grep -q "mlsim compare:" "$out/refused.txt" && { echo "the study ran before the --report check"; exit 1; }
echo "a file as --report: refused before the study"
# A name with Markdown's syntax in it ('|' would add a column) shows as written: escaped, 13 unescaped bars.
cat > "$out/names.yaml" <<'YAML'
systems: [a100]
workloads:
  - {name: "r|50*x_y", model: resnet50, batch: 8, dtype: fp16}
YAML
"$mlsim" compare "$out/names.yaml" --db "$out/names.db" --report "$out/names" -q > /dev/null
row=$(grep '^| r' "$out/names/report.md")
case "$row" in
    '| r\|50\*x\_y | a100 |'*) ;;
    *) echo "the name is not escaped in report.md: $row"; exit 1 ;;
esac
bars=$(printf '%s' "$row" | sed 's/\\|//g' | tr -cd '|' | wc -c)
[ "$bars" -eq 13 ] || { echo "report.md's row has $bars column bars, expected 13: $row"; exit 1; }
echo "a name with '|' keeps report.md's columns"
