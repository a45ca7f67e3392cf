#!/usr/bin/env bash
# Instructions per request of a whole server, end to end: each mode's server
# (examples/compare.rs `--serve`) runs under valgrind (callgrind), logs in the way the
# comparison's load generator does (`compare --login`, which registers a DBSC key when the
# mode offers one), and curl sends it READS reads of /read on one keep-alive connection.
# The server's counters are zeroed after a warm-up and read after the reads, so the figure
# is what a read costs the server in user space: hyper's parsing of the request, the
# session's work, the handler and the answer (the kernel's TCP work is not counted). Unlike
# the comparison's CPU times it does not move with the machine's load, so two modes can be
# compared to a few instructions.
#
# Usage: bash benches/server_instructions.sh [MODE...]   (default: sealed sealed+dbsc)
# READS (default 2000) reads are counted per mode. Cookie modes that need no redis-server.
# Needs valgrind (callgrind_control) and curl.
set -euo pipefail
cd "$(dirname "$0")/.."
MODES=("$@")
[ ${#MODES[@]} -gt 0 ] || MODES=(sealed sealed+dbsc)
READS=${READS:-2000}
for tool in valgrind callgrind_control curl; do
  command -v "$tool" >/dev/null || { echo "$tool not found (apt-get install valgrind curl)"; exit 2; }
done
for mode in "${MODES[@]}"; do
  case "$mode" in
    none|none+cookie|sealed|sealed-nocache|signed|sealed+deny-memory|sealed+dbsc|store-memory|poem-cookie) ;;
    *) echo "a mode must be a cookie mode without Redis (sealed, sealed+dbsc, signed, ...), not $mode"; exit 2 ;;
  esac
done
cargo build --release --example compare --all-features -q
BIN=target/release/examples/compare
OUT=$(mktemp -d)
SRV=
trap '[ -n "$SRV" ] && kill "$SRV" 2>/dev/null; rm -rf "$OUT"' EXIT
export COMPARE_KEYS="k1:$(head -c32 /dev/urandom | base64 -w0)"
COMPARE_SECRET=$(head -c32 /dev/urandom | od -An -tx1 | tr -d ' \n')
export COMPARE_SECRET

# Instructions per read of one mode's server.
count() {
  local mode=$1 port header urls=()
  coproc SERVER { exec valgrind --tool=callgrind --callgrind-out-file="$OUT/cg.%p" \
    "$BIN" --serve "$mode" --server-threads 1 2>/dev/null; }
  SRV=$SERVER_PID
  read -r _ port <&"${SERVER[0]}"
  header=$("$BIN" --login "127.0.0.1:$port" "$mode" | tr -d '\r\n')
  local url="http://127.0.0.1:$port/read"
  for _ in $(seq 50); do urls+=("$url"); done
  curl -sf -H "$header" "${urls[@]}" >/dev/null
  callgrind_control -z "$SRV" >/dev/null 2>&1
  urls=()
  for _ in $(seq "$READS"); do urls+=("$url"); done
  curl -sf -H "$header" "${urls[@]}" >/dev/null
  rm -f "$OUT"/cg.*
  callgrind_control -d "$SRV" >/dev/null 2>&1
  # The dump of each thread, summed: all of the server's user-space work for the reads.
  local total
  total=$(cat "$OUT"/cg.* | sed -n 's/^summary: \([0-9]*\).*/\1/p' | awk '{s+=$1} END {print s}')
  # KEEP=DIR keeps the dump, for callgrind_annotate.
  [ -n "${KEEP:-}" ] && mkdir -p "$KEEP" && cat "$OUT"/cg.* > "$KEEP/$mode.callgrind"
  kill "$SRV" 2>/dev/null || true
  wait "$SRV" 2>/dev/null || true
  SRV=
  echo "$mode $(( total / READS )) $(( ${#header} ))"
}

declare -A per
for mode in "${MODES[@]}"; do
  read -r m n bytes < <(count "$mode")
  per[$m]=$n
  echo "$m: $n instructions per read (request's session header: $bytes bytes)"
done
first=${MODES[0]}
for mode in "${MODES[@]:1}"; do
  echo "$mode adds $(( per[$mode] - per[$first] )) instructions per read to $first"
done
