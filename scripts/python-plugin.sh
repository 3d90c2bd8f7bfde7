#!/usr/bin/env bash
# Builds the Python example plugin, plugins/python-loyalty, into
# target/python-plugins/python-loyalty.wasm with componentize-py
# (scripts/componentize-py.sh: pinned, from PyPI), after running the
# plugin's own tests. Prints the component's path. Does nothing but the
# tests when the component is newer than its sources and wit/.
set -euo pipefail
cd "$(dirname "$0")/.."

SRC=plugins/python-loyalty
OUT=target/python-plugins/python-loyalty.wasm

(cd "$SRC" && PYTHONDONTWRITEBYTECODE=1 python3 -m unittest --quiet 2>&1) >&2
if [ -f "$OUT" ] && [ -z "$(find "$SRC" wit -newer "$OUT" \( -name '*.py' -o -name '*.wit' \) -print -quit)" ]; then
  echo "$OUT"
  exit 0
fi
mkdir -p "$(dirname "$OUT")"
scripts/componentize-py.sh -d wit -w pricing componentize app -p "$SRC" -o "$OUT.tmp" >&2
mv "$OUT.tmp" "$OUT"
echo "$OUT"
