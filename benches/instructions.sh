#!/usr/bin/env bash
# Instructions per request for each middleware case, counted by valgrind (callgrind), and the
# ratios the middleware target names. Unlike wall-clock figures these do not move with the
# machine's load. Usage: bash benches/instructions.sh  (needs valgrind; builds the bench).
# `bash benches/instructions.sh store`: the store-backed mode over Redis against Poem's
# ServerSession + RedisStorage (needs redis-server too; it starts one on a free port).
# `bash benches/instructions.sh devices`: what "your devices" (a MemoryRegistry) adds to a
# read, a re-issue and a login. `bash benches/instructions.sh binding`: what a DBSC bound
# cookie adds to a sealed read, and a DPoP proof to a bearer read.
set -euo pipefail
cd "$(dirname "$0")/.."
# The bench executable as cargo reports it: right under any CARGO_TARGET_DIR, and never the
# newest binary of the same name built from another checkout sharing that directory.
bench_bin() { # $1 bench name, then any cargo flags (features)
  cargo bench --bench "$1" "${@:2}" --no-run --message-format=json 2>/dev/null | python3 -c '
import json, sys
for line in sys.stdin:
    m = json.loads(line)
    if m.get("reason") == "compiler-artifact" and m.get("executable") and m["target"]["name"] == sys.argv[1]:
        print(m["executable"])' "$1" | tail -1
}
command -v valgrind >/dev/null || { echo "valgrind not found (apt-get install valgrind)"; exit 2; }
if [ "${1:-}" = jwt ]; then
  # JWT through the middleware against raw jsonwebtoken decode + encode (target <= 1.3).
  bin=$(bench_bin jwt)
  jcount() { SS_COUNT="$1" SS_COUNT_ITERS="$2" valgrind --tool=callgrind --callgrind-out-file=/dev/null "$bin" --bench 2>&1 \
      | sed -n 's/.*Collected : \([0-9]*\).*/\1/p' | awk '{s+=$1} END {print s}'; }
  for alg in ${JWT_ALGS:-HS256 EdDSA ES256}; do
    declare -A j
    for case in middleware_request no_session_request raw_roundtrip; do
      small=$(jcount "$alg/$case" 20); large=$(jcount "$alg/$case" 120)
      j[$case]=$(( (large - small) / 100 ))
    done
    python3 -c "m,b,r=${j[middleware_request]},${j[no_session_request]},${j[raw_roundtrip]}; print(f'$alg: middleware adds {m-b} instructions, raw decode + encode {r}; ratio {(m-b)/r:.2f} (target <= 1.30)')"
    # A bearer read sending the same token again, with and without the open cache. Signing
    # with a random nonce (ECDSA) makes the start-up count vary, hence 1,000 requests.
    for case in middleware_read middleware_read_uncached no_session_read; do
      j[$case]=$(( ($(jcount "$alg/$case" 1020) - $(jcount "$alg/$case" 20)) / 1000 ))
    done
    echo "$alg: a bearer read (the same token again) adds $(( j[middleware_read] - j[no_session_read] )) instructions; with the open cache off $(( j[middleware_read_uncached] - j[no_session_read] ))"
  done
  exit 0
fi
if [ "${1:-}" = store ]; then
  # One read and one write through each peer, Redis on loopback. The bench needs `redis`.
  bin=$(bench_bin store --features redis)
  [ -x "$bin" ] || { echo "could not build the store bench"; exit 2; }
  command -v redis-server >/dev/null || { echo "redis-server not found"; exit 2; }
  port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
  redis-server --port "$port" --bind 127.0.0.1 --save '' --appendonly no >/dev/null &
  redis_pid=$!
  trap 'kill "$redis_pid" 2>/dev/null' EXIT
  for _ in $(seq 50); do redis-cli -p "$port" ping >/dev/null 2>&1 && break; sleep 0.1; done
  export SS_REDIS_URL="redis://127.0.0.1:$port/"
  scount() { SS_COUNT="$1" SS_COUNT_ITERS="$2" valgrind --tool=callgrind --callgrind-out-file=/dev/null "$bin" --bench 2>&1 \
      | sed -n 's/.*Collected : \([0-9]*\).*/\1/p' | awk '{s+=$1} END {print s}'; }
  declare -A s
  for case in sealed_session_store/read poem_server_session/read sealed_session_store/write poem_server_session/write; do
    small=$(scount "$case" "${SS_SMALL:-100}"); large=$(scount "$case" "${SS_LARGE:-600}")
    s[$case]=$(( (large - small) / (${SS_LARGE:-600} - ${SS_SMALL:-100}) ))
    printf '%-28s %8d instructions/request\n' "$case" "${s[$case]}"
  done
  for op in read write; do
    python3 -c "o,p=${s[sealed_session_store/$op]},${s[poem_server_session/$op]}; print(f'$op: store-backed sealed-session {o}, Poem ServerSession {p}; ratio {o/p:.3f} (target <= 1.000)')"
  done
  exit 0
fi
if [ "${1:-}" = binding ]; then
  # Theft resistance: a device-bound (DBSC) cookie read against a plain sealed one (target:
  # the bound cookie adds at most 0.5 us of server CPU), and a DPoP-bound bearer read
  # against a plain bearer one.
  bin=$(bench_bin binding)
  [ -x "$bin" ] || { echo "could not build the binding bench"; exit 2; }
  bcount() { SS_COUNT="$1" SS_COUNT_ITERS="$2" valgrind --tool=callgrind --callgrind-out-file=/dev/null "$bin" --bench 2>&1 \
      | sed -n 's/.*Collected : \([0-9]*\).*/\1/p' | awk '{s+=$1} END {printf "%.0f\n", s}'; }
  declare -A b
  for case in sealed/read sealed_dbsc/read jwt_bearer/read jwt_dpop/read; do
    small=$(bcount "$case" 200); large=$(bcount "$case" 1200)
    b[$case]=$(( (large - small) / 1000 ))
    printf '%-20s %8d instructions/request\n' "$case" "${b[$case]}"
  done
  echo "the bound cookie adds $(( b[sealed_dbsc/read] - b[sealed/read] )) instructions to a read; a DPoP proof adds $(( b[jwt_dpop/read] - b[jwt_bearer/read] ))"
  exit 0
fi
bin=$(bench_bin middleware)
[ -x "$bin" ] || { echo "could not build the middleware bench"; exit 2; }
if [ "${1:-}" = devices ]; then
  # "Your devices" (a MemoryRegistry) against the same middleware without it, both with a
  # MemoryDenylist and a signed-in user: a read, a chain of re-issues, and a login.
  dcount() { SS_COUNT="$1" SS_COUNT_ITERS="$2" valgrind --tool=callgrind --callgrind-out-file=/dev/null "$bin" --bench 2>&1 \
      | sed -n 's/.*Collected : \([0-9]*\).*/\1/p' | awk '{s+=$1} END {print s}'; }
  declare -A d
  for op in app_read write_chain login; do
    for v in sealed_session_deny sealed_session_devices; do
      small=$(dcount "$v/$op" 200); large=$(dcount "$v/$op" 1200)
      d[$v/$op]=$(( (large - small) / 1000 ))
    done
    printf '%-12s without %8d, with the registry %8d instructions/request (adds %d)\n' "$op" \
      "${d[sealed_session_deny/$op]}" "${d[sealed_session_devices/$op]}" \
      $(( d[sealed_session_devices/$op] - d[sealed_session_deny/$op] ))
  done
  exit 0
fi
count() { # $1 case, $2 iterations -> total instructions
  SS_COUNT="$1" SS_COUNT_ITERS="$2" valgrind --tool=callgrind --callgrind-out-file=/dev/null "$bin" --bench 2>&1 \
    | sed -n 's/.*Collected : \([0-9]*\).*/\1/p' | awk "{s+=\$1} END {print s}"
}
declare -A per
# write_chain: each write carries the cookie the previous one set, as a browser's would (with
# the open cache, the token that arrives is the one just sealed); write: the same old cookie
# every time (a replayed token; with the open cache it was replaced, so it is decoded again).
# _nocache: the open cache off.
# app_read: what applications read on most requests (a user object and a counter), beside
# read (one string).
for case in none/read none/app_read none/write sealed_session/read sealed_session/app_read \
    sealed_session/write sealed_session/write_chain \
    sealed_session_nocache/read sealed_session_nocache/write_chain \
    poem_cookie_session/read poem_cookie_session/app_read poem_cookie_session/write \
    poem_cookie_session/write_chain; do
  small=$(count "$case" 200); large=$(count "$case" 1200)
  per[$case]=$(( (large - small) / 1000 ))   # the difference cancels start-up cost
  base=none/${case#*/}; base=${base%_chain}
  printf '%-38s %8d instructions/request, adds %6d\n' "$case" "${per[$case]}" $(( per[$case] - per[$base] ))
done
for pair in read:read app_read:app_read write_chain:write write:write; do
  op=${pair%%:*}; base=none/${pair#*:}
  ours=$(( per[sealed_session/$op] - per[$base] )); theirs=$(( per[poem_cookie_session/$op] - per[$base] ))
  python3 -c "print(f'$op: sealed-session adds $ours, Poem CookieSession adds $theirs instructions; ratio {$ours/$theirs:.2f} (target <= 0.50)')"
done
