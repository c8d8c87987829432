#!/usr/bin/env bash
# Side-by-side: sendauth-siem vs syslog-ng (http() destination, reliable disk buffer), same
# input file, same counting receiver, same measurement, alternating runs in one session.
#
#   bench/compare-syslog-ng.sh                 # 1M events, 3 runs each
#   EVENTS=200000 RUNS=1 bench/compare-syslog-ng.sh
#   BASELINE_BIN=/tmp/old/sendauth-siem bench/compare-syslog-ng.sh   # also an older build
#   MODE=steady RATES=100,1000,10000 SECONDS_PER_RATE=10 bench/compare-syslog-ng.sh
#   RTT=50ms bench/compare-syslog-ng.sh        # the receiver answers 50 ms late (a distant SIEM)
#
# Throughput mode (default): `sendauth-siem-bench receiver` (crates/bench) listens on 127.0.0.1 (a free port,
# given to the agent as BENCH_PORT), starts the agent on a pre-written events file, and stops it
# when the last event has arrived. Throughput is events / (spawn -> last arrival); CPU
# (utime+stime) and peak RSS (VmHWM) are read from /proc/<pid> of the agent at that moment.
#
# Steady mode: the agent tails an empty file; the receiver appends 20 warm-up events, then
# each rate for SECONDS_PER_RATE seconds, and reports per rate the agent's CPU % of one core
# (utime+stime delta over the appending), wake-ups/s (context switches of all its threads),
# latency append -> receiver, requests per 1k events, and for sendauth-siem its queue's
# fdatasyncs/s (/metrics). The same code as `sendauth-siem-bench`'s latency phase.
#
# Without syslog-ng (and no way to install it) only the sendauth-siem runs are made, with a note.
# Re-runnable: every run uses fresh temp directories; results are appended as JSON lines to $OUT.
set -euo pipefail
cd "$(dirname "$0")/.."

MODE=${MODE:-throughput}
EVENTS=${EVENTS:-1000000}
RUNS=${RUNS:-3}
RATES=${RATES:-100,1000,10000}
SECONDS_PER_RATE=${SECONDS_PER_RATE:-10}
RTT=${RTT:-0ms}
OUT=${OUT:-bench/results/compare-syslog-ng-$MODE-$(date -u +%Y%m%dT%H%M%SZ).jsonl}
BIN=${SENDAUTH_SIEM:-target/release/sendauth-siem}
BENCH=${SENDAUTH_SIEM_BENCH:-target/release/sendauth-siem-bench}
SYSLOG_NG=${SYSLOG_NG:-/usr/sbin/syslog-ng}

if [[ ! -x $BIN || ! -x $BENCH || -n ${BUILD:-} ]]; then
  cargo build --release --bin sendauth-siem --bin sendauth-siem-bench
fi
case $MODE in throughput | steady) ;; *) echo "MODE must be throughput or steady, not $MODE" >&2; exit 2 ;; esac

have_syslog_ng() { [[ -x $SYSLOG_NG ]] && ls /usr/lib/syslog-ng/*/libhttp.so >/dev/null 2>&1; }
if ! have_syslog_ng && [[ $(id -u) == 0 ]] && command -v apt-get >/dev/null; then
  echo "== installing syslog-ng (Debian: syslog-ng-core, syslog-ng-mod-http)"
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq syslog-ng-core syslog-ng-mod-http >/dev/null 2>&1 ||
    { apt-get update -qq >/dev/null 2>&1 &&
      DEBIAN_FRONTEND=noninteractive apt-get install -y -qq syslog-ng-core syslog-ng-mod-http >/dev/null 2>&1; } || true
fi
SKIP_SYSLOG_NG=
if ! have_syslog_ng; then
  SKIP_SYSLOG_NG=1
  echo "== syslog-ng with the http() module is not installed (apt-get install syslog-ng-core syslog-ng-mod-http):"
  echo "   SKIPPING the syslog-ng runs; only sendauth-siem is measured"
fi

WORK=$(mktemp -d /tmp/compare-syslog-ng.XXXXXX)
trap 'rm -rf "$WORK"' EXIT
mkdir -p "$(dirname "$OUT")"
INPUT=$WORK/events.jsonl
if [[ $MODE == throughput ]]; then
  "$BENCH" gen --events "$EVENTS" --out "$INPUT"
  cat "$INPUT" >/dev/null # both agents read it from the page cache
fi

echo "== machine: $(nproc) CPUs, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs), $(uname -r), load average $(cut -d' ' -f1-3 /proc/loadavg)"
if [[ -n $SKIP_SYSLOG_NG ]]; then
  echo "== no syslog-ng; sendauth-siem $("$BIN" --version | awk '{print $2}')"
else
  echo "== $("$SYSLOG_NG" --version | head -1); sendauth-siem $("$BIN" --version | awk '{print $2}')"
fi
if [[ $MODE == throughput ]]; then
  echo "== throughput: $EVENTS events x $RUNS runs each, receiver RTT $RTT; results: $OUT"
else
  echo "== steady: $RATES events/s, $SECONDS_PER_RATE s each, x $RUNS runs, receiver RTT $RTT; results: $OUT"
fi

# The receiver's arguments for the mode; $1 is the run's directory (steady mode: the tailed file).
receiver_args() {
  if [[ $MODE == throughput ]]; then
    echo --expect "$EVENTS" --rtt "$RTT"
  else
    echo --steady-file "$1/events.jsonl" --rates "$RATES" --seconds "$SECONDS_PER_RATE" --rtt "$RTT"
  fi
}

run_sendauth() { # run-number [binary label]
  local bin=${2:-$BIN} label=${3:-sendauth-siem}
  local d=$WORK/$label-$1 input=$INPUT
  # The config in its own directory, as deployed (/etc vs /var/log): the agent watches its
  # config's directory, and would otherwise wake for every line appended beside it.
  mkdir -p "$d/etc"
  [[ $MODE == throughput ]] || input=$d/events.jsonl
  cat >"$d/etc/config.yaml" <<EOF
siem:
  url: http://127.0.0.1:\${BENCH_PORT}/ingest
  platform: generic
  generic:
    batch: ndjson
sources:
  file:
    path: $input
    start_at: beginning
queue:
  path: $d/queue
  max_bytes: 8GiB
status:
  listen: 127.0.0.1:\${BENCH_STATUS_PORT}
log:
  level: warn
EOF
  # shellcheck disable=SC2046 # receiver_args prints separate words on purpose
  "$BENCH" receiver $(receiver_args "$d") --metrics --label "$label" --json-out "$OUT" --log "$d/agent.log" \
    -- "$bin" run --config "$d/etc/config.yaml"
}

run_syslog_ng() {
  local d=$WORK/syslog-ng-$1 input=$INPUT
  mkdir -p "$d/buffer"
  [[ $MODE == throughput ]] || input=$d/events.jsonl
  # shellcheck disable=SC2046 # receiver_args prints separate words on purpose
  BENCH_INPUT=$input BENCH_DIR=$d/buffer \
    "$BENCH" receiver $(receiver_args "$d") --label syslog-ng --json-out "$OUT" --log "$d/syslog-ng.log" \
    -- "$SYSLOG_NG" -F --no-caps -f bench/syslog-ng.conf \
    --persist-file "$d/persist" --pidfile "$d/pid" --control "$d/ctl"
}

for i in $(seq 1 "$RUNS"); do
  run_sendauth "$i"
  if [[ -n ${BASELINE_BIN:-} ]]; then
    run_sendauth "$i" "$BASELINE_BIN" baseline
  fi
  [[ -n $SKIP_SYSLOG_NG ]] || run_syslog_ng "$i"
done

if command -v python3 >/dev/null; then
  python3 - "$OUT" <<'EOF'
import json, statistics, sys
rows = [json.loads(l) for l in open(sys.argv[1])]
steady = [r for r in rows if r.get("mode") == "steady"]
rows = [r for r in rows if r.get("mode") != "steady"]
med = statistics.median
if steady:
    print(f"\n{'agent':<14} {'rate/s':>7} {'runs':>4} {'CPU % (min-max)':>22} {'wakeups/s':>10} {'fdatasyncs/s':>13}"
          f" {'p50 ms':>8} {'p99 ms':>8} {'req/1k ev':>10}")
    for label in dict.fromkeys(r["label"] for r in steady):
        for rate in dict.fromkeys(r["rate"] for r in steady if r["label"] == label):
            rs = [r for r in steady if r["label"] == label and r["rate"] == rate]
            cpu = [r["cpu_percent"] for r in rs]
            fs = [r["fdatasyncs_per_s"] for r in rs if r.get("fdatasyncs_per_s") is not None]
            print(f"{label:<14} {rate:>7} {len(rs):>4} {med(cpu):>8.2f} ({min(cpu):>5.2f}-{max(cpu):<6.2f})"
                  f" {med(r['wakeups_per_s'] for r in rs):>10.0f} {(f'{med(fs):.1f}' if fs else 'n/a'):>13}"
                  f" {med(r['p50_ms'] for r in rs):>8.2f} {med(r['p99_ms'] for r in rs):>8.2f}"
                  f" {med(r['requests_per_1k_events'] for r in rs):>10.1f}")
if rows:
  print(f"\n{'agent':<14} {'runs':>4} {'events/s (min-max)':>26} {'CPU-s/M events':>15} {'peak RSS MiB':>13}")
for label in dict.fromkeys(r["label"] for r in rows):
    rs = [r for r in rows if r["label"] == label]
    eps = [r["events_per_s"] for r in rs]
    print(f"{label:<14} {len(rs):>4} {statistics.median(eps):>10.0f} ({min(eps):>6.0f}-{max(eps):<6.0f})"
          f" {statistics.median(r['cpu_s_per_million'] for r in rs):>15.2f}"
          f" {statistics.median(r['peak_rss_mib'] for r in rs):>13.1f}")
EOF
fi
