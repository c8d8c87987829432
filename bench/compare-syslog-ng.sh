#!/usr/bin/env bash
# Side-by-side: sendauth-siem vs syslog-ng (http() destination, reliable disk buffer), same
# input file, same counting receiver, same measurement, alternating runs in one session.
#
#   bench/compare-syslog-ng.sh                 # 1M events, 3 runs each
#   EVENTS=200000 RUNS=1 bench/compare-syslog-ng.sh
#   BASELINE_BIN=/tmp/old/sendauth-siem bench/compare-syslog-ng.sh   # also an older build
#
# Each run: `sendauth-siem bench-receiver` listens on 127.0.0.1 (a free port, given to the agent
# as BENCH_PORT), starts the agent on a pre-written events file, and stops it when the last event
# has arrived. Throughput is events / (spawn -> last arrival); CPU (utime+stime) and peak RSS
# (VmHWM) are read from /proc/<pid> of the agent at that moment. Re-runnable: every run uses
# fresh temp directories; results are appended as JSON lines to $OUT.
set -euo pipefail
cd "$(dirname "$0")/.."

EVENTS=${EVENTS:-1000000}
RUNS=${RUNS:-3}
OUT=${OUT:-bench/results/compare-syslog-ng-$(date -u +%Y%m%dT%H%M%SZ).jsonl}
BIN=${SENDAUTH_SIEM:-target/release/sendauth-siem}
SYSLOG_NG=${SYSLOG_NG:-/usr/sbin/syslog-ng}

if [[ ! -x $BIN || -n ${BUILD:-} ]]; then
  cargo build --release --bin sendauth-siem
fi
if [[ ! -x $SYSLOG_NG ]] || ! ls /usr/lib/syslog-ng/*/libhttp.so >/dev/null 2>&1; then
  if [[ $(id -u) == 0 ]]; then
    echo "== installing syslog-ng (Debian: syslog-ng-core, syslog-ng-mod-http)"
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq syslog-ng-core syslog-ng-mod-http >/dev/null
  else
    echo "syslog-ng with the http() module is needed: apt-get install syslog-ng-core syslog-ng-mod-http" >&2
    exit 1
  fi
fi

WORK=$(mktemp -d /tmp/compare-syslog-ng.XXXXXX)
trap 'rm -rf "$WORK"' EXIT
mkdir -p "$(dirname "$OUT")"
INPUT=$WORK/events.jsonl
"$BIN" bench-gen --events "$EVENTS" --out "$INPUT"
cat "$INPUT" >/dev/null # both agents read it from the page cache

echo "== machine: $(nproc) CPUs, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs), $(uname -r)"
echo "== $("$SYSLOG_NG" --version | head -1); sendauth-siem $("$BIN" --version | awk '{print $2}')"
echo "== $EVENTS events x $RUNS runs each; results: $OUT"

run_sendauth() { # run-number [binary label]
  local bin=${2:-$BIN} label=${3:-sendauth-siem}
  local d=$WORK/$label-$1
  mkdir -p "$d"
  cat >"$d/config.yaml" <<EOF
siem:
  url: http://127.0.0.1:\${BENCH_PORT}/ingest
  platform: generic
  generic:
    batch: ndjson
sources:
  file:
    path: $INPUT
    start_at: beginning
queue:
  path: $d/queue
  max_bytes: 8GiB
status:
  listen: 127.0.0.1:0
log:
  level: warn
EOF
  "$BIN" bench-receiver --expect "$EVENTS" --label "$label" --json-out "$OUT" --log "$d/agent.log" \
    -- "$bin" run --config "$d/config.yaml"
}

run_syslog_ng() {
  local d=$WORK/syslog-ng-$1
  mkdir -p "$d/buffer"
  BENCH_INPUT=$INPUT BENCH_DIR=$d/buffer \
    "$BIN" bench-receiver --expect "$EVENTS" --label syslog-ng --json-out "$OUT" --log "$d/syslog-ng.log" \
    -- "$SYSLOG_NG" -F --no-caps -f bench/syslog-ng.conf \
    --persist-file "$d/persist" --pidfile "$d/pid" --control "$d/ctl"
}

for i in $(seq 1 "$RUNS"); do
  run_sendauth "$i"
  if [[ -n ${BASELINE_BIN:-} ]]; then
    run_sendauth "$i" "$BASELINE_BIN" baseline
  fi
  run_syslog_ng "$i"
done

if command -v python3 >/dev/null; then
  python3 - "$OUT" <<'EOF'
import json, statistics, sys
rows = [json.loads(l) for l in open(sys.argv[1])]
print(f"\n{'agent':<14} {'runs':>4} {'events/s (min-max)':>26} {'CPU-s/M events':>15} {'peak RSS MiB':>13}")
for label in dict.fromkeys(r["label"] for r in rows):
    rs = [r for r in rows if r["label"] == label]
    eps = [r["events_per_s"] for r in rs]
    print(f"{label:<14} {len(rs):>4} {statistics.median(eps):>10.0f} ({min(eps):>6.0f}-{max(eps):<6.0f})"
          f" {statistics.median(r['cpu_s_per_million'] for r in rs):>15.2f}"
          f" {statistics.median(r['peak_rss_mib'] for r in rs):>13.1f}")
EOF
fi
