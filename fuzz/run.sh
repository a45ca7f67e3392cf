#!/usr/bin/env bash
# Builds every fuzz target (libFuzzer through the libfuzzer-sys crate, on stable Rust: no
# cargo-fuzz, no nightly) and runs each for SECONDS_PER_TARGET seconds (default 7, about a
# minute for all eight). Exits non-zero on the first crash, naming the crashing input.
#
#   bash fuzz/run.sh            # the short run of .ci/run
#   bash fuzz/run.sh 600        # ten minutes per target
#   bash fuzz/run.sh 60 cookie_header session_data    # some targets only
#
# Corpora grow in fuzz/corpus/<target>/ (kept between runs, not committed); the seed inputs
# are written to fuzz/seeds/<target>/ from the fixtures on every run; inputs that once
# crashed, in tests/fuzz-regressions/<target>/, are replayed at the start of every run.
# Crashing inputs land in fuzz/artifacts/<target>/. Extra libFuzzer flags can be passed in
# FUZZ_FLAGS (for example FUZZ_FLAGS="-fork=2" to use two cores).
set -euo pipefail
cd "$(dirname "$0")"
root=$(cd .. && pwd)

secs=${1:-7}
shift || true
all=(open_sealed open_signed open_store_id open_jwt_hmac open_jwt_asym cookie_header
  authorization_header session_data)
targets=("$@")
[ ${#targets[@]} -gt 0 ] || targets=("${all[@]}")

host=$(rustc -vV | sed -n 's/^host: //p')
# What cargo-fuzz passes, without its nightly-only -Z flags: SanitizerCoverage with 8-bit
# counters, a PC table and comparison tracing, which libFuzzer reads. No AddressSanitizer:
# the crate forbids unsafe code. --target keeps these flags off build scripts and proc macros.
export RUSTFLAGS="-Cpasses=sancov-module \
-Cllvm-args=-sanitizer-coverage-level=4 \
-Cllvm-args=-sanitizer-coverage-inline-8bit-counters \
-Cllvm-args=-sanitizer-coverage-pc-table \
-Cllvm-args=-sanitizer-coverage-trace-compares \
--cfg fuzzing -Cdebug-assertions -Coverflow-checks"
export CARGO_TARGET_DIR="$root/fuzz/target"
bins=()
for t in "${targets[@]}"; do bins+=(--bin "$t"); done
echo "== building ${#targets[@]} fuzz targets (release, debug assertions, overflow checks)"
cargo build --locked --release --target "$host" "${bins[@]}"

status=0
for t in "${targets[@]}"; do
  bin="$CARGO_TARGET_DIR/$host/release/$t"
  corpus="corpus/$t"
  seeds="seeds/$t"
  artifacts="$root/fuzz/artifacts/$t/"
  mkdir -p "$corpus" "$seeds" "$artifacts"
  # libFuzzer writes new inputs to the first directory only.
  dirs=("$corpus" "$seeds")
  regressions="$root/tests/fuzz-regressions/$t"
  [ -d "$regressions" ] && dirs+=("$regressions")
  echo "== $t: ${secs}s"
  log=$(mktemp)
  set +e
  SEALED_SESSION_FUZZ_SEEDS="$seeds" "$bin" "${dirs[@]}" \
    -max_total_time="$secs" -timeout=10 -rss_limit_mb=2048 -max_len=16384 \
    -print_final_stats=1 -artifact_prefix="$artifacts" ${FUZZ_FLAGS:-} >"$log" 2>&1
  rc=$?
  set -e
  grep -E 'wrote .* seeds|INITED|stat::number_of_executed_units|stat::peak_rss_mb|Done [0-9]+ runs' "$log" || true
  if [ $rc -ne 0 ]; then
    status=1
    tail -n 60 "$log"
    crash=$(sed -n 's/.*Test unit written to \(.*\)$/\1/p' "$log" | tail -n 1)
    echo "!! $t failed (exit $rc); crashing input: ${crash:-see the log above}"
    echo "!! replay it with: $bin ${crash:-<input>}"
  fi
  rm -f "$log"
done
exit $status
