#!/usr/bin/env bash
# Instructions per request of a whole server, end to end: each mode's server
# (examples/compare.rs `--serve`) runs under valgrind (callgrind), logs in the way the
# comparison's load generator does (`compare --login`, which registers a DBSC key when the
# mode offers one), and a client sends it REQUESTS requests of /read (or /write with
# ROUTE=write) on one keep-alive connection, taking the cookies each answer sets. The
# server's counters are zeroed after a warm-up and read after the requests, so the figure
# is what a request costs the server in user space: hyper's parsing of the request, the
# session's work, the handler and the answer (the kernel's TCP work is not counted). Unlike
# the comparison's CPU times it does not move with the machine's load, so two modes can be
# compared to a few instructions.
#
# Usage: bash benches/server_instructions.sh [MODE...]   (default: sealed sealed+dbsc)
# REQUESTS (default 2000) requests are counted per mode; KEEP=DIR keeps each dump for
# callgrind_annotate. Cookie modes that need no redis-server. Needs valgrind and python3.
set -euo pipefail
cd "$(dirname "$0")/.."
MODES=("$@")
[ ${#MODES[@]} -gt 0 ] || MODES=(sealed sealed+dbsc)
ROUTE=${ROUTE:-read}
REQUESTS=${REQUESTS:-2000}
case "$ROUTE" in read|write) ;; *) echo "ROUTE must be read or write"; exit 2 ;; esac
for tool in valgrind callgrind_control python3; do
  command -v "$tool" >/dev/null || { echo "$tool not found (apt-get install valgrind python3)"; exit 2; }
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

# The client: requests ROUTE on one keep-alive connection, carrying the session's cookies
# and taking the new ones each answer sets, as a browser does; the server's counters are
# zeroed after a warm-up and dumped after the counted requests.
DRIVER='
import http.client, subprocess, sys
port, pid, route, n, header = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4]), sys.argv[5]
cookies = dict(p.split("=", 1) for p in header.split(": ", 1)[1].split("; "))
conn = http.client.HTTPConnection("127.0.0.1", int(port))
method = "GET" if route == "read" else "POST"
def send(k):
    for _ in range(k):
        conn.request(method, "/" + route, headers={"Cookie": "; ".join(f"{a}={b}" for a, b in cookies.items())})
        r = conn.getresponse()
        r.read()
        if r.status != 200:
            sys.exit(f"/{route} answered {r.status}")
        for name, value in r.getheaders():
            if name.lower() == "set-cookie":
                a, b = value.split(";", 1)[0].split("=", 1)
                cookies[a.strip()] = b.strip()
send(50)
subprocess.run(["callgrind_control", "-z", pid], capture_output=True, check=True)
send(n)
'

# Instructions per request of one mode's server.
count() {
  local mode=$1 port header
  coproc SERVER { exec valgrind --tool=callgrind --callgrind-out-file="$OUT/cg.%p" \
    "$BIN" --serve "$mode" --server-threads 1 2>/dev/null; }
  SRV=$SERVER_PID
  read -r _ port <&"${SERVER[0]}"
  header=$("$BIN" --login "127.0.0.1:$port" "$mode" | tr -d '\r\n')
  python3 -c "$DRIVER" "$port" "$SRV" "$ROUTE" "$REQUESTS" "$header"
  rm -f "$OUT"/cg.*
  callgrind_control -d "$SRV" >/dev/null 2>&1
  # The dump of each thread, summed: all of the server's user-space work for the requests.
  local total
  total=$(cat "$OUT"/cg.* | sed -n 's/^summary: \([0-9]*\).*/\1/p' | awk '{s+=$1} END {print s}')
  # KEEP=DIR keeps the dump, for callgrind_annotate.
  [ -n "${KEEP:-}" ] && mkdir -p "$KEEP" && cat "$OUT"/cg.* > "$KEEP/$mode.$ROUTE.callgrind"
  kill "$SRV" 2>/dev/null || true
  wait "$SRV" 2>/dev/null || true
  SRV=
  echo "$mode $(( total / REQUESTS )) $(( ${#header} ))"
}

declare -A per
for mode in "${MODES[@]}"; do
  read -r m n bytes < <(count "$mode")
  per[$m]=$n
  echo "$m: $n instructions per $ROUTE (the login's session header: $bytes bytes)"
done
first=${MODES[0]}
for mode in "${MODES[@]:1}"; do
  echo "$mode adds $(( per[$mode] - per[$first] )) instructions per $ROUTE to $first"
done
