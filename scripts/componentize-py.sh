#!/usr/bin/env bash
# Runs componentize-py (pinned, from PyPI), installing it first into a
# virtual environment under target/ when it is not there yet. Arguments
# are componentize-py's, e.g. `-d wit -w pricing componentize app -o x.wasm`.
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
VERSION=0.25.1
VENV="$ROOT/target/componentize-py-$VERSION"
mkdir -p "$ROOT/target"
# One installer at a time (tests build components in parallel).
(
  flock 9
  if [ ! -x "$VENV/bin/componentize-py" ]; then
    rm -rf "$VENV"
    python3 -m venv "$VENV" >&2
    "$VENV/bin/pip" install --quiet --disable-pip-version-check "componentize-py==$VERSION" >&2
  fi
) 9>"$VENV.lock"
exec "$VENV/bin/componentize-py" "$@"
