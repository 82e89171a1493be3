#!/usr/bin/env bash
# clang-format over the tracked C++ sources (*.cpp, *.h), with the repository's .clang-format.
#   scripts/format.sh check   report every file that is not formatted; exit 1 if any (what CI runs)
#   scripts/format.sh fix     rewrite those files in place
# CLANG_FORMAT names the binary (default clang-format). Files are those git tracks, so build folders and
# untracked scratch files are never touched.
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$here"
clang_format=${CLANG_FORMAT:-clang-format}
command -v "$clang_format" >/dev/null ||
    { echo "scripts/format.sh: $clang_format not found (scripts/setup.sh format installs it)" >&2; exit 2; }

mapfile -t files < <(git ls-files -- '*.cpp' '*.h')
((${#files[@]})) || { echo "scripts/format.sh: no tracked C++ files" >&2; exit 2; }

case "${1:-check}" in
    check)
        bad=()
        for f in "${files[@]}"; do
            "$clang_format" --style=file --dry-run --Werror "$f" >/dev/null 2>&1 || bad+=("$f")
        done
        if ((${#bad[@]})); then
            printf '%s\n' "${bad[@]}" | sed 's/^/not formatted: /' >&2
            echo "format: ${#bad[@]} of ${#files[@]} files differ from .clang-format; run scripts/format.sh fix" >&2
            exit 1
        fi
        echo "format: ${#files[@]} files follow .clang-format"
        ;;
    fix)
        "$clang_format" --style=file -i "${files[@]}"
        echo "format: ${#files[@]} files formatted"
        ;;
    *) echo "usage: scripts/format.sh check|fix" >&2; exit 2 ;;
esac
