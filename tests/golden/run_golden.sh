#!/usr/bin/env bash
# Golden tests for error output. Each folder in tests/golden/cases/ holds:
#   cmd       the mlsim arguments (one line, word-split by the shell), run inside the case folder
#   expected  the exact stderr mlsim must print
# Every case must exit with status 2 (user error), print exactly the expected message and nothing on a
# crash path (no signal, no status 1). UPDATE_GOLDEN=1 rewrites the expected files (review the diff!).
set -u
mlsim=$(realpath "$1")
src=$2
cases="$src/tests/golden/cases"
fail=0
n=0
for dir in "$cases"/*/; do
  name=$(basename "$dir")
  n=$((n + 1))
  args=$(cat "$dir/cmd")
  actual=$(cd "$dir" && MLSIM_CONFIGS="$src/configs" eval "\"$mlsim\" $args" 2>&1 >/dev/null)
  status=$?
  actual=${actual//"$src"/@SRC@}   # machine-independent paths
  if [ "${UPDATE_GOLDEN:-0}" = 1 ]; then
    printf '%s\n' "$actual" > "$dir/expected"
  fi
  if [ "$status" -ne 2 ]; then
    echo "FAIL $name: exit status $status, expected 2"; echo "$actual"; fail=$((fail + 1)); continue
  fi
  if ! diff -u "$dir/expected" <(printf '%s\n' "$actual") > /tmp/golden_diff.$$; then
    echo "FAIL $name: stderr differs from expected"; cat /tmp/golden_diff.$$; fail=$((fail + 1)); continue
  fi
  echo "ok   $name"
done
rm -f /tmp/golden_diff.$$
echo "$((n - fail))/$n golden error cases passed"
[ "$n" -ge 20 ] || { echo "FAIL: fewer than 20 golden cases"; exit 1; }
[ "$fail" -eq 0 ]
