#!/usr/bin/env bash
# Where a read's server CPU goes, end to end: each mode's server (examples/compare.rs
# `--serve`) runs alone on CPU 1, wrk loads its /read route from CPU 0, and `perf record`
# samples the server process. The modes alternate for ROUNDS rounds (default 3).
#
# The comparison is made within each profile, so that it does not move with the machine's
# load as throughput does: the kernel's share of a server's samples (its TCP work, about the
# same per request in every mode) scales each mode's samples to one no-session request.
# What is left is what a mode adds to a request, in all and per function, as a share of a
# no-session request. Its use is the breakdown per function; the total is an estimate that
# is good to about 3%: the kernel's work per request shifts with the load (batching), and
# `none` against itself (MODE none) has come out anywhere from 0.97x to 1.00x.
#
# Usage: bash benches/server_profile.sh [MODE] [ROUNDS] [SECS]   (MODE default sealed,
# compared with none; SECS per round, default 4). Needs wrk, perf (cpu-clock sampling;
# hardware counters are not needed), taskset and curl, and two CPUs.
set -euo pipefail
cd "$(dirname "$0")/.."
MODE=${1:-sealed}
ROUNDS=${2:-3}
SECS=${3:-4}
# wrk sends the cookie the login set: cookie modes that need no redis-server.
case "$MODE" in
  none|none+cookie|none+work|sealed|sealed-nocache|signed|sealed+deny-memory|store-memory|poem-cookie) ;;
  *) echo "MODE must be a cookie mode without Redis (none, sealed, signed, store-memory, poem-cookie, ...), not $MODE"; exit 2 ;;
esac
for tool in wrk perf taskset curl; do
  command -v "$tool" >/dev/null || { echo "$tool not found (apt-get install wrk linux-perf util-linux curl)"; exit 2; }
done
cargo build --release --example compare --all-features -q
BIN=target/release/examples/compare
OUT=$(mktemp -d)
trap 'rm -rf "$OUT"' EXIT
export COMPARE_KEYS="k1:$(head -c32 /dev/urandom | base64 -w0)"
export COMPARE_SECRET=$(head -c32 /dev/urandom | od -An -tx1 | tr -d ' \n')

# One round of one mode: throughput, and the server's samples by function in $OUT/$2.syms.
profile() {
  local mode=$1 name=$2 port pid cookie
  coproc SRV { exec taskset -c 1 "$BIN" --serve "$mode" --server-threads 1; }
  read -r _ port <&"${SRV[0]}"
  pid=$SRV_PID
  cookie=$(curl -s -i -X POST "http://127.0.0.1:$port/login" | tr -d '\r' \
    | sed -n 's/^[Ss]et-[Cc]ookie: \([^;]*\).*/\1/p' | head -1)
  local header=()
  [ -n "$cookie" ] && header=(-H "Cookie: $cookie")
  taskset -c 0 wrk -t1 -c32 -d1s "${header[@]}" "http://127.0.0.1:$port/read" >/dev/null
  perf record -q -e cpu-clock -F 10000 -p "$pid" -o "$OUT/$name.data" -- sleep "$SECS" 2>/dev/null &
  local rec=$!
  taskset -c 0 wrk -t1 -c32 -d"${SECS}s" "${header[@]}" "http://127.0.0.1:$port/read" \
    | awk -v m="$name" '/Requests\/sec/ {print m, $2, "req/s"}'
  wait "$rec"
  kill "$pid" 2>/dev/null || true
  wait "$pid" 2>/dev/null || true
  perf report -i "$OUT/$name.data" --no-children --sort sym -F sample,sym --stdio 2>/dev/null \
    | grep -v '^#' > "$OUT/$name.syms"
}

base=() ours=()
for r in $(seq "$ROUNDS"); do
  profile none "none.$r"; base+=("$OUT/none.$r.syms")
  profile "$MODE" "$MODE-$r"; ours+=("$OUT/$MODE-$r.syms")
done

python3 - "$MODE" "$(IFS=,; echo "${base[*]}")" "$(IFS=,; echo "${ours[*]}")" <<'EOF'
import re, sys
mode, base, ours = sys.argv[1], sys.argv[2].split(","), sys.argv[3].split(",")
def load(files):
    by_sym, kernel = {}, 0
    for f in files:
        for line in open(f):
            m = re.match(r"\s*(\d+)\s+\[(.)\]\s+(.*)", line)
            if m:
                n = int(m.group(1))
                by_sym[m.group(3).strip()] = by_sym.get(m.group(3).strip(), 0) + n
                kernel += n if m.group(2) == "k" else 0
    return by_sym, kernel
a, ka = load(base)
b, kb = load(ours)
ta = sum(a.values())
# Units: one no-session request's samples. The kernel's samples per request are taken as equal.
sa, sb = 1 / ta, (ka / ta) / kb
cost = sum(b.values()) * sb
print(f"kernel share of the server's samples: none {ka / ta:.1%}, {mode} {kb / sum(b.values()):.1%}")
print(f"{mode} read costs its server about {cost:.3f}x a no-session read (within about 0.03)")
delta = {k: b.get(k, 0) * sb - a.get(k, 0) * sa for k in set(a) | set(b)}
own = sum(v for k, v in delta.items() if k.startswith("sealed_session") or "constant_time_eq" in k)
print(f"of which in sealed_session's own functions: {own:+.1%}")
print("largest changes per function, as a share of a no-session request:")
for k in sorted(delta, key=lambda k: -abs(delta[k]))[:30]:
    print(f"  {delta[k]:+7.2%}  {k[:110]}")
EOF
