#!/usr/bin/env bash
# The side-by-side load benchmark, one command: builds the sio bench server and the loader, the
# socketioxide bench server (its own lockfile, outside the workspace) and installs the Node
# reference (bench/node/package-lock.json), then runs bench/src/bin/sio-bench.rs on core 1, which
# starts each server on core 0. Arguments go to sio-bench (--runs N, --quick, --servers a,b,
# --scenarios a,b, --out FILE). The report goes to bench/results.md and to stdout.
set -euo pipefail
cd "$(dirname "$0")/.."
target="${CARGO_TARGET_DIR:-$PWD/target}"
echo "== build (release)" >&2
cargo build --release --locked -p sio-bench --bins >&2
CARGO_TARGET_DIR="$target" cargo build --release --locked \
  --manifest-path bench/socketioxide/Cargo.toml >&2
echo "== npm ci (bench/node)" >&2
(cd bench/node && npm ci --no-audit --no-fund --loglevel=error >&2)
# The loader keeps 10,000 connections open, and so does each server.
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
if [ "$(ulimit -n)" != unlimited ] && [ "$(ulimit -n)" -lt 20480 ]; then
  echo "warning: open files limited to $(ulimit -n); the 10,000-connection scenarios need more" >&2
fi
exec taskset -c 1 "$target/release/sio-bench" "$@"
