#!/usr/bin/env bash
# Assay, promptfoo and Inspect AI on the same job, one after the other, then one table.
# Needs the peers installed by the shared setup (../../../shared/bench/setup.sh, ~2 min).
#   REPS=1  N=1000  C=32  LATENCY_MS=200 (also run once at LATENCY_MS=0 for CPU per call)
#   RESULTS=/tmp/bench-results/compare.jsonl
set -uo pipefail
BENCH=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
SHARED_BENCH=${SHARED_BENCH:-$(cd "$BENCH/../../../shared/bench" && pwd)}
export SHARED_BENCH
export RESULTS=${RESULTS:-/tmp/bench-results/compare-$(date +%Y%m%dT%H%M%S).jsonl}
REPS=${REPS:-1}
PEERS=${PEERS:-1}

one_round() {
  "$BENCH/run_assay.sh"
  if [ "$PEERS" = 1 ]; then
    "$SHARED_BENCH/run_promptfoo.sh"
    "$SHARED_BENCH/run_inspect.sh"
  fi
}

for rep in $(seq 1 "$REPS"); do
  echo "== rep $rep: N=${N:-1000} C=${C:-32} latency ${LATENCY_MS:-200} ms"
  N=${N:-1000} LATENCY_MS=${LATENCY_MS:-200} one_round
done
echo "== overhead: N=${N0:-500} latency 0 ms"
N=${N0:-500} LATENCY_MS=0 one_round
"${VENV:-/tmp/benchvenv}/bin/python" "$SHARED_BENCH/summarize.py" "$RESULTS"
