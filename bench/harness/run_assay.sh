#!/usr/bin/env bash
# The shared harness benchmark job on Assay, in the same shape as the peers' run_*.sh in
# ../../shared/bench (same mock, same dataset, same checks, same RESULT line):
#   N rows x {model-a (baseline), model-b (candidate)}, one judge call per output to
#   judge-model, at most C calls in flight in total, response cache off.
# Untimed setup: import the dataset, create the rubric, register the models, define the eval.
# Timed: `assay run start bench --max-concurrency C --no-cache`, the whole process.
# Knobs: those of shared lib.sh (N, C, LATENCY_MS, ERROR_RATE, SEED, WORK, RESULTS,
# KEEP_RUN_DIR), plus SHARED_BENCH (the shared bench folder) and ASSAY (the assay binary).
set -euo pipefail
BENCH=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
SHARED_BENCH=${SHARED_BENCH:-$(cd "$BENCH/../../../shared/bench" 2>/dev/null && pwd || true)}
[ -f "$SHARED_BENCH/lib.sh" ] || { echo "shared bench folder not found; set SHARED_BENCH" >&2; exit 2; }
ASSAY=${ASSAY:-$BENCH/../../.venv/bin/assay}
# The mock and the measuring script need uvicorn, orjson and psutil: Assay's venv has them.
export VENV=${VENV:-$(cd "$(dirname "$ASSAY")/.." && pwd)}
HERE=$SHARED_BENCH
# shellcheck source=/dev/null
. "$SHARED_BENCH/lib.sh"

new_run_dir assay
trap 'stop_mock' EXIT
"$PY" "$HERE/make_dataset.py" --n "$N" --out-dir "$RUN_DIR/data" --seed "$SEED" >/dev/null
start_mock

export ASSAY_HOME="$RUN_DIR/home" ASSAY_DATABASE_URL="sqlite:///$RUN_DIR/home/assay.db"
export BENCH_KEY=sk-mock
{
  "$ASSAY" dataset import "$RUN_DIR/data/messages.jsonl" --name bench
  "$ASSAY" rubric create bench --file "$BENCH/rubric.jinja" --score-min 1 --score-max 10
  for model in model-a model-b judge-model; do
    "$ASSAY" model add "$model" --base-url "$BASE_URL" --model-id "$model" --api-key-env BENCH_KEY
  done
  "$ASSAY" eval create bench --dataset bench --rubric bench --judge judge-model \
    --baseline model-a --candidate model-b
} >"$RUN_DIR/setup.log" 2>&1

set +e
"$PY" "$HERE/measure.py" --out "$RUN_DIR/measure.json" -- \
  "$ASSAY" run start bench --max-concurrency "$C" --no-cache >"$RUN_DIR/tool.log" 2>&1
TOOL_RC=$?
set -e
save_stats
stop_mock
"$PY" "$BENCH/report_assay.py" --tool assay --run-dir "$RUN_DIR" --n "$N" --c "$C" \
  --latency-ms "$LATENCY_MS" --error-rate "$ERROR_RATE" --results "$RESULTS" \
  --tool-rc "$TOOL_RC" --shared "$SHARED_BENCH" \
  --version "$("$ASSAY" --version 2>/dev/null || echo 0.1.0) python $("$PY" -c 'import platform; print(platform.python_version())')"
cleanup_run_dir
