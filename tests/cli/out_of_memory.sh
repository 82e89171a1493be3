#!/bin/bash
# An allocation that fails (std::bad_alloc) ends the run with one located line and exit status 2, never
# "internal error". The run is capped at address-space limits from 8 MiB up: the smaller ones make its
# allocations fail, the larger ones let it finish (here: a model that does not fit, also exit 2). A cap
# under which the program cannot even start (the loader fails) gives no verdict. Not for sanitizer builds,
# which reserve terabytes of address space at start.
# usage: out_of_memory.sh MLSIM
set -u
mlsim=$1
dir=$(mktemp -d)
trap 'rm -rf "$dir"' EXIT
out_of_memory=0
for kib in 8192 12288 16384 20480 24576 32768 49152 65536; do
  (ulimit -v "$kib"; exec "$mlsim" run --system a100 --model gpt3-175b-prefill -q) > "$dir/out" 2> "$dir/err"
  rc=$?
  if grep -q -e "internal error" -e "bad_alloc" -e "terminate called" "$dir/err"; then
    echo "FAIL: cap $kib KiB: $(head -c 400 "$dir/err")"; exit 1
  fi
  if [ "$rc" -ge 128 ] || [ "$rc" -eq 127 ]; then continue; fi  # could not start: no verdict
  if [ "$rc" -ne 2 ]; then echo "FAIL: cap $kib KiB: exit status $rc, expected 2: $(head -c 400 "$dir/err")"; exit 1; fi
  if grep -q "^mlsim: error: out of memory: " "$dir/err"; then
    [ "$(wc -l < "$dir/err")" -eq 1 ] || { echo "FAIL: cap $kib KiB: more than one line: $(cat "$dir/err")"; exit 1; }
    out_of_memory=$((out_of_memory + 1))
  fi
done
if [ "$out_of_memory" -eq 0 ]; then echo "FAIL: no cap from 8 to 64 MiB ran out of memory"; exit 1; fi
echo "ok: $out_of_memory cap(s) ran out of memory, each one located line and exit status 2"
