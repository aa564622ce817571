#!/usr/bin/env bash
# User-space instructions per received WebSocket frame, counted by callgrind, for the sio servers
# and socketioxide: a figure that does not move with the machine's noise, to read beside the
# CPU-time ratios of bench/run.sh. Each server runs under valgrind while the loader runs one quick
# scenario against it (echo unless told: bench/instructions.sh echo-ack). Frames are the calls of
# tungstenite's frame header parser, which every one of these servers reads its frames with.
# Node is left out: its JIT compiles under valgrind, so its count would not be its steady cost.
# Needs valgrind (Debian: valgrind). Writes a markdown table to stdout.
set -euo pipefail
cd "$(dirname "$0")/.."
scenario="${1:-echo}"
# The clients of the quick echo and echo-ack scenarios (bench/src/bin/sio-bench.rs).
clients=20
target="${CARGO_TARGET_DIR:-$PWD/target}"
command -v valgrind >/dev/null || { echo "valgrind is needed (apt-get install valgrind)" >&2; exit 1; }
echo "== build (release)" >&2
cargo build --release --locked -p sio-bench --bins >&2
CARGO_TARGET_DIR="$target" cargo build --release --locked \
  --manifest-path bench/socketioxide/Cargo.toml >&2
out="$(mktemp -d)"
trap 'rm -rf "$out"' EXIT

# Sums the calls made to functions whose name contains $2 in callgrind output $1.
calls_to() {
  awk -v want="$2" '
    # "fn=(id) name" or "cfn=(id) name" names a function the first time, "(id)" alone afterwards.
    /^c?fn=/ {
      id = $1; sub(/^c?fn=/, "", id); name = $0; sub(/^c?fn=\([0-9]+\) ?/, "", name)
      if (name != "") names[id] = name
      if ($0 ~ /^cfn=/) current = names[id]
      next
    }
    /^calls=/ { if (index(current, want)) { split($0, a, /[= ]/); sum += a[2] } }
    END { print sum + 0 }' "$1"
}

echo "| server | instructions | frames | instructions per frame | / socketioxide |"
echo "|---|---:|---:|---:|---:|"
declare -A per_frame
for server in socketioxide sio-tokio sio-smol sio-async-std; do
  case "$server" in
    socketioxide) cmd=("$target/release/socketioxide-bench-server") ;;
    *) cmd=("$target/release/sio-bench-server" "${server#sio-}") ;;
  esac
  rm -f "$out/log"
  PORT=0 taskset -c 0 valgrind --tool=callgrind --callgrind-out-file="$out/$server.cg" \
    "${cmd[@]}" >"$out/log" 2>"$out/err" &
  pid=$!
  for _ in $(seq 600); do grep -q "^listening on" "$out/log" 2>/dev/null && break; sleep 0.1; done
  addr="$(sed -n 's/^listening on //p' "$out/log" | head -1)"
  [ -n "$addr" ] || { echo "$server did not start under valgrind" >&2; cat "$out/err" >&2; exit 1; }
  fds="$(ls "/proc/$pid/fd" | wc -l)"
  taskset -c 1 "$target/release/sio-bench" --runs 1 --quick --attach "$addr,$pid" \
    --servers "$server" --scenarios "$scenario" --out "$out/report.md" >&2 &
  loader=$!
  # Once every client is connected (and a moment for their handshakes), callgrind writes what
  # it counted so far to $server.cg.1 and starts again from zero: the start of the server and
  # the handshakes stay out of the count, which then depends on the frames alone, not on how
  # many of them fit in the run.
  for _ in $(seq 600); do
    [ "$(ls "/proc/$pid/fd" | wc -l)" -ge $((fds + clients)) ] && break
    sleep 0.1
  done
  sleep 0.5
  callgrind_control --dump "$pid" >/dev/null
  wait "$loader"
  kill -TERM "$pid"
  wait "$pid" || true
  total="$(awk '/^(summary|totals):/ { print $2; exit }' "$out/$server.cg")"
  frames="$(calls_to "$out/$server.cg" "OpCode as core::convert::From<u8>>::from")"
  [ "$frames" -gt 0 ] || { echo "$server: no frame parsed" >&2; exit 1; }
  per_frame[$server]=$((total / frames))
  ratio="$(awk -v a="${per_frame[$server]}" -v b="${per_frame[socketioxide]}" 'BEGIN { printf "%.2f", a / b }')"
  echo "| $server | $total | $frames | ${per_frame[$server]} | $ratio |"
done
