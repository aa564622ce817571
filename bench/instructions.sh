#!/usr/bin/env bash
# User-space instructions per unit of work, counted by callgrind, for the sio servers and
# socketioxide: a figure that does not move with the machine's noise, to read beside the CPU-time
# ratios of bench/run.sh. Each server runs under valgrind while the loader runs one quick scenario
# against it: echo unless told (bench/instructions.sh connect|echo|echo-ack|polling-echo|broadcast).
# The unit is a connection (connect), a round trip (the echoes) or a delivery (broadcast); the
# loader counts them, between two marks where it pauses while callgrind cuts its count (see
# `mark` in bench/src/load/mod.rs): the server's start, the clients' setup (connections, joins)
# and their closes stay out of the count.
# Node is left out: its JIT compiles under valgrind, so its count would not be its steady cost.
# Needs valgrind (Debian: valgrind). The cuts reach the server while it waits in epoll_wait, through
# vgdb's ptrace invoker: where ptrace is restricted (Yama's ptrace_scope above 0), run as root.
# Writes a markdown table to stdout.
set -euo pipefail
cd "$(dirname "$0")/.."
scenario="${1:-echo}"
case "$scenario" in
  connect) unit="connection" units_name="connections" ;;
  echo | echo-ack | polling-echo) unit="round trip" units_name="round trips" ;;
  broadcast | broadcast-10k) unit="delivery" units_name="deliveries" ;;
  *) echo "unknown scenario: $scenario" >&2; exit 2 ;;
esac
target="${CARGO_TARGET_DIR:-$PWD/target}"
command -v valgrind >/dev/null || { echo "valgrind is needed (apt-get install valgrind)" >&2; exit 1; }
echo "== build (release)" >&2
cargo build --release --locked -p sio-bench --bins >&2
CARGO_TARGET_DIR="$target" cargo build --release --locked \
  --manifest-path bench/socketioxide/Cargo.toml >&2
out="$(mktemp -d)"
trap 'kill "${pid:-}" "${loader:-}" 2>/dev/null || true; rm -rf "$out"' EXIT

# Waits until file $1 exists, as long as process $2 (the loader) runs.
await_mark() {
  while [ ! -e "$1" ]; do
    kill -0 "$2" 2>/dev/null || { echo "the loader stopped before $(basename "$1")" >&2; return 1; }
    sleep 0.05
  done
}

echo "| server | instructions | $units_name | instructions per $unit | / socketioxide |"
echo "|---|---:|---:|---:|---:|"
declare -A per_unit
for server in socketioxide sio-tokio sio-smol sio-async-std; do
  case "$server" in
    socketioxide) cmd=("$target/release/socketioxide-bench-server") ;;
    *) cmd=("$target/release/sio-bench-server" "${server#sio-}") ;;
  esac
  rm -f "$out/log"
  marks="$out/marks-$server"
  mkdir -p "$marks"
  PORT=0 taskset -c 0 valgrind --tool=callgrind --callgrind-out-file="$out/$server.cg" \
    "${cmd[@]}" >"$out/log" 2>"$out/err" &
  pid=$!
  for _ in $(seq 600); do grep -q "^listening on" "$out/log" 2>/dev/null && break; sleep 0.1; done
  addr="$(sed -n 's/^listening on //p' "$out/log" | head -1)"
  [ -n "$addr" ] || { echo "$server did not start under valgrind" >&2; cat "$out/err" >&2; exit 1; }
  SIO_BENCH_MARKS="$marks" taskset -c 1 "$target/release/sio-bench" --runs 1 --retries 0 --quick \
    --attach "$addr,$pid" --servers "$server" --scenarios "$scenario" --out "$out/report.md" >&2 &
  loader=$!
  # The first cut ends the count of the start (dump 1), the second the count of the load (dump 2).
  dump=0
  for name in start end; do
    await_mark "$marks/$name" "$loader"
    callgrind_control --dump "$pid" >/dev/null
    dump=$((dump + 1))
    # callgrind_control answers 0 even when the dump did not happen.
    [ -s "$out/$server.cg.$dump" ] || { echo "$server: callgrind did not dump at $name" >&2; exit 1; }
    touch "$marks/$name.go"
  done
  wait "$loader"
  unset loader
  kill -TERM "$pid"
  wait "$pid" || true
  unset pid
  # Deliveries the loader never received were counted by callgrind but not by the loader.
  lost="$(awk -F'|' '$2 ~ /messages lost/ { gsub(/ /, "", $3); print $3 }' "$out/report.md")"
  [ "${lost:-0}" = 0 ] || { echo "$server: $lost messages lost, the count would be wrong" >&2; exit 1; }
  total="$(awk '/^(summary|totals):/ { print $2; exit }' "$out/$server.cg.2")"
  units="$(cat "$marks/end")"
  [ "$units" -gt 0 ] || { echo "$server: no ${unit} counted" >&2; exit 1; }
  per_unit[$server]=$((total / units))
  ratio="$(awk -v a="${per_unit[$server]}" -v b="${per_unit[socketioxide]}" 'BEGIN { printf "%.2f", a / b }')"
  echo "| $server | $total | $units | ${per_unit[$server]} | $ratio |"
done
