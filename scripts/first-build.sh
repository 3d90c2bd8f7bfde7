#!/usr/bin/env bash
# Measures a newcomer's first build: from a fresh clone of REV (default
# HEAD) with an empty cargo registry (a new CARGO_HOME) and no target/,
# the time `cargo run -- serve --example-plugins` takes until the service
# answers /healthz. Prints wall-clock seconds and the CPU seconds the build
# used (user + sys of every process it ran), which depend much less on
# what else the machine is doing than the wall clock does.
#
#   scripts/first-build.sh [REV]
#   KEEP=DIR scripts/first-build.sh [REV]   # keep the clone, its target/
#                                           # and CARGO_HOME in DIR
#
# Cargo's timing report (which crate took how long) is written to
# target/cargo-timings/ of the clone: keep it with KEEP.
#
# Needs network access to crates.io (the registry is downloaded afresh)
# and the toolchain of rust-toolchain.toml (rustup keeps it outside
# CARGO_HOME). Leaves nothing behind but its temporary directory, which it
# removes.
set -euo pipefail
rev=${1:-HEAD}
repo=$(cd "$(dirname "$0")/.." && pwd)
work=$(mktemp -d /tmp/commerce-first-build.XXXXXX)
cleanup() {
  kill "${pid:-0}" 2>/dev/null || true
  if [ -n "${KEEP:-}" ]; then
    rm -rf "$KEEP" && mv "$work" "$KEEP"
  else
    rm -rf "$work"
  fi
}
trap cleanup EXIT

git clone -q "$repo" "$work/src"
git -C "$work/src" checkout -q "$rev"
mkdir -p "$work/cargo-home"
port=$((20000 + RANDOM % 20000))
cd "$work/src"

start=$(date +%s.%N)
CARGO_HOME="$work/cargo-home" PATH="$HOME/.cargo/bin:$PATH" \
  COMMERCE_LISTEN="127.0.0.1:$port" COMMERCE_DATA_DIR="$work/data" \
  bash -c 'exec cargo run -q --timings -- serve --example-plugins' >"$work/log" 2>&1 &
pid=$!
until curl -sf "http://127.0.0.1:$port/healthz" >/dev/null 2>&1; do
  if ! kill -0 "$pid" 2>/dev/null; then
    echo "the service exited before answering; its log:" >&2
    tail -40 "$work/log" >&2
    exit 1
  fi
  sleep 1
done
end=$(date +%s.%N)
# `cargo run` execs the service in its own process, which keeps the CPU
# time cargo and its waited-for children (every rustc, every build script)
# used: fields 14-17 of /proc/<pid>/stat, in clock ticks.
ticks=$(getconf CLK_TCK)
cpu=$(awk -v t="$ticks" '{printf "%.0f", ($14 + $15 + $16 + $17) / t}' "/proc/$pid/stat")
wall=$(awk -v a="$start" -v b="$end" 'BEGIN {printf "%.0f", b - a}')
printf 'rev %s: serving after %s s wall clock; the build used %s s of CPU\n' \
  "$(git rev-parse --short HEAD)" "$wall" "$cpu"
