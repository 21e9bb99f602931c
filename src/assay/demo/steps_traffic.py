"""The demo's first half: production traffic in, the local models, live capture, the dataset.

Each step does its work through the same services as the CLI, then reads what it reports back
from the store: a number printed is a number stored.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from assay.datasets import get_dataset
from assay.demo.live import LIVE_ENVIRONMENT, LiveCall, send_live
from assay.demo.narrate import Narrator, call_text
from assay.providers import add_model, get_model
from assay.providers.local_model import BASE_MODEL_NOTE, BUNDLED_LABEL, ensure_bundled_model
from assay.store import Store
from assay.traffic import (
    TrafficFilter,
    create_dataset_from_traffic,
    get_inference,
    import_traffic,
    list_inferences,
    traffic_stats,
)

SAMPLE = Path(__file__).parent / "data" / "bfcl_sample.jsonl"
PRODUCTION = TrafficFilter(environment="production", task="function-calling")
LIVE = TrafficFilter(environment=LIVE_ENVIRONMENT)
DATASET = "bfcl-eval"
CANDIDATE = "gemma-local"
JUDGE = "gemma-judge"
# Small answers keep the demo to minutes on two cores. "required" with the row's one tool makes
# llama.cpp constrain the answer to a call of that function (see local_client).
CANDIDATE_PARAMS: dict[str, Any] = {"max_tokens": 64, "temperature": 0, "tool_choice": "required"}
JUDGE_PARAMS: dict[str, Any] = {"max_tokens": 48}  # caps the reasoning at ~190 characters
# One thread: as fast as two on an idle 2-core machine, and several times faster on a busy one
# (llama.cpp's threads wait on each other when one is descheduled).
LOCAL_OPTIONS: dict[str, Any] = {"threads": 1}
SAMPLE_SEED = 0


def sample_lines(limit: int | None = None) -> list[dict[str, Any]]:
    """The shipped production sample (or its first ``limit`` lines), decoded."""
    lines = []
    with SAMPLE.open(encoding="utf-8") as handle:
        for raw in handle:
            if limit is not None and len(lines) >= limit:
                break
            lines.append(json.loads(raw))
    return lines


def import_production(store: Store, say: Narrator) -> int:
    """Import the sample as captured production inferences; the stored count."""
    say.step("Import production traffic")
    say.note(
        f"{SAMPLE.name}: function-calling questions from BFCL (Apache-2.0, see "
        "LICENSE-bfcl.txt), each with the call a strong production model makes"
    )
    report = import_traffic(store, SAMPLE)
    say.fact(f"read {report.lines_read} lines, skipped {report.lines_skipped}")
    per_model = traffic_stats(store, PRODUCTION)
    stored = sum(s.count for s in per_model)
    for stats in per_model:
        say.fact(
            f"stored {stats.count} inferences: environment production, task {stats.task}, "
            f"model {stats.model}, {stats.errors} errors"
        )
    say.fact(f"production inferences: {stored}")
    return stored


def add_local_models(store: Store, say: Narrator) -> None:
    """The bundled Gemma 3 270M twice: as the candidate, and as the judge."""
    say.step("Register the local model (llama.cpp, in-process)")
    add_model(store, CANDIDATE, provider="local", params=CANDIDATE_PARAMS, options=LOCAL_OPTIONS)
    add_model(store, JUDGE, provider="local", params=JUDGE_PARAMS, options=LOCAL_OPTIONS)
    path = ensure_bundled_model()
    for name in (CANDIDATE, JUDGE):
        model = get_model(store, name)
        params = ", ".join(f"{k}={v}" for k, v in model.params.items())
        say.fact(
            f"model {model.name}: {BUNDLED_LABEL}, {model.options['threads']} thread, "
            f"params {params}"
        )
    say.note(f"model file: {path}")
    say.warn(BASE_MODEL_NOTE)


def capture_live(store: Store, say: Narrator, count: int, database_url: str, home: Path) -> int:
    """Send the first ``count`` production requests through the proxy to the local model;
    the number of live inferences stored."""
    say.step("Capture live traffic through the proxy")
    model = get_model(store, CANDIDATE)
    requests = [(line["metadata"]["bfcl_id"], line["request"]) for line in sample_lines(count)]
    say.note(
        "the local model is served at an OpenAI-compatible URL; `assay proxy` forwards to it; "
        f"the openai SDK sends {count} production requests to the proxy, tagged "
        f"x-assay-environment: {LIVE_ENVIRONMENT}"
    )

    def on_call(index: int, call: LiveCall) -> None:
        what = call.error or call_text(call.answer)
        say.fact(f"request {index}/{count} ({call.bfcl_id}): {what} [{call.seconds:.1f} s]")

    proxy_url, _ = send_live(
        model, requests, database_url=database_url, home=str(home), on_call=on_call
    )
    say.note(f"the proxy listened at {proxy_url}/v1 (stopped now)")
    recorded = list_inferences(store, LIVE, limit=count)
    for summary in reversed(recorded):
        detail = get_inference(store, summary.id)
        say.fact(
            f"recorded inference {detail.id}: {detail.method} {detail.path} -> "
            f"{detail.status_code}, model {detail.model}, "
            f"{detail.input_tokens}+{detail.output_tokens} tokens, "
            f"{detail.duration_ms or 0:.0f} ms, bfcl_id {detail.metadata.get('bfcl_id')}"
        )
    live = sum(s.count for s in traffic_stats(store, LIVE))
    say.fact(f"live requests captured: {live}")
    return live


def build_dataset(store: Store, say: Narrator, rows: int) -> int:
    """An eval dataset sampled from the production traffic; its stored row count."""
    say.step("Build an eval dataset from the captured traffic")
    report = create_dataset_from_traffic(
        store, DATASET, "eval", PRODUCTION, sample=rows, seed=SAMPLE_SEED
    )
    info = get_dataset(store, DATASET)
    say.fact(
        f"filter environment=production task=function-calling, sample {rows} "
        f"(seed {SAMPLE_SEED}) of {report.matched} successful inferences"
    )
    say.fact(f"eval dataset {info.name}: {info.row_count} rows")
    say.note(
        "each row keeps the request (messages, tools), the production answer as its reference, "
        "and BFCL's accepted answers in its metadata (accepted_calls)"
    )
    return info.row_count
