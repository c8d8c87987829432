#!/usr/bin/env bash
# Runs the reliability campaigns and fuzz targets (docs/RELIABILITY.md) and prints their figures.
#   scripts/campaigns.sh [short|long] [name...]
# Names are test targets (campaign_crash, fuzz_parsers, ...); default: every tests/campaign_*.rs
# and tests/fuzz_*.rs. short (default) is what CI runs; long is the on-demand run
# (FUZZ_CASES=200000 unless set). CAMPAIGN_SEED and CAMPAIGN_<KNOB> are passed through.
set -euo pipefail
cd "$(dirname "$0")/.."
mode=${1:-short}
case "$mode" in short | long) shift || true ;; *) mode=short ;; esac
if [ $# -eq 0 ]; then
  set -- $(ls tests/campaign_*.rs tests/fuzz_*.rs 2>/dev/null | xargs -n1 basename | sed 's/\.rs$//')
fi
if [ "$mode" = long ]; then fuzz_default=200000; else fuzz_default=2000; fi
export CAMPAIGN=$mode
export FUZZ_CASES=${FUZZ_CASES:-$fuzz_default}
export CAMPAIGN_FIGURES=${CAMPAIGN_FIGURES:-$(mktemp -t campaign-figures.XXXXXX)}
status=0
for name in "$@"; do
  echo "=== $name ($mode)" >&2
  start=$(date +%s)
  if ! cargo test --release --test "$name" -- --nocapture; then
    echo "=== $name FAILED" >&2
    status=1
  fi
  echo "=== $name took $(($(date +%s) - start)) s" >&2
done
echo "=== figures ($CAMPAIGN_FIGURES)"
cat "$CAMPAIGN_FIGURES"
exit $status
