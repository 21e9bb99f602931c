"""Every operation of the OpenAPI spec, fuzzed by schemathesis against the app in-process (ASGI),
signed in with an API token, over a store that has datasets, rubrics, models, an eval, a
finished run group and traffic: no input gets a server error (5xx). Both backends."""

from __future__ import annotations

import contextlib
import os
import signal
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import schemathesis
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis.checks import not_a_server_error
from schemathesis.generation import GenerationMode
from sqlalchemy import select

from assay.auth import create_token
from assay.engine.background import live_worker
from assay.store import Store
from assay.store.models import RunGroup
from assay.traffic import import_traffic
from assay.web import create_app
from support.groups import build_group
from tests_helpers import export_line, write

EXAMPLES = int(os.environ.get("ASSAY_FUZZ_EXAMPLES", "25"))
"""Per operation and generation mode: the 40 operations run in under a minute at 25. Set
ASSAY_FUZZ_EXAMPLES higher for a deeper search."""


@pytest.fixture
def seeded(cli: Any, fake_llm: Any, store: Store, tmp_path: Path) -> Iterator[str]:
    """The token to send. Dataset ``support``, rubric ``right``, models cand/evil/judge on the
    fake LLM server, eval ``support-eval`` and its finished group 1, 10 inferences."""
    build_group(cli, fake_llm, tmp_path, rows=6)
    import_traffic(store, write(tmp_path / "traffic.jsonl", [export_line(i) for i in range(10)]))
    token = create_token(store, "fuzz").token
    try:
        yield token
    finally:
        _stop_workers(store)


def _stop_workers(store: Store) -> None:
    """A group started by the fuzzing runs in a worker process: stop it before the database
    goes away."""
    with store.session() as session:
        workers = [live_worker(g) for g in session.scalars(select(RunGroup))]
    for worker in filter(None, workers):
        with contextlib.suppress(ProcessLookupError):
            os.kill(int(worker.rpartition(":")[2]), signal.SIGKILL)


@pytest.fixture
def api_schema(store: Store, seeded: str) -> Any:
    app = create_app(store)
    headers = {"Authorization": f"Bearer {seeded}"}
    return schemathesis.openapi.from_asgi("/api/v1/openapi.json", app, headers=headers)


KNOWN = {
    "/datasets/{name}": {"name": "support"},
    "/rubrics/templates/{name}": {"name": "correctness"},
    "/rubrics/{name}": {"name": "right"},
    "/models/{name}": {"name": "cand"},
    "/evals/{name}": {"name": "support-eval"},
    "/groups/{group_id}": {"group_id": 1},
    "/traffic/{inference_id}": {"inference_id": 1},
}
"""Path parameters naming what the store holds: without them nearly every generated name is
a 404, and the routes' bodies and queries would go untried on real data."""


def known_parameters(path: str) -> dict[str, Any]:
    found: dict[str, Any] = {}
    for prefix, values in KNOWN.items():
        if prefix in path:
            found |= values
    if "{version}" in path:
        found["version"] = 1
    if "{position}" in path:
        found["position"] = 0
    return found


@pytest.mark.slow
def test_no_operation_answers_with_a_server_error(
    api_schema: Any, seeded: str, fake_llm: Any
) -> None:
    # A Bearer token is proof enough against forgery: uploads and body-less DELETEs need no
    # CSRF pair (a page cannot attach the header cross-site).
    headers = {"Authorization": f"Bearer {seeded}"}
    operations = [result.ok() for result in api_schema.get_all_operations()]
    assert len(operations) > 30
    failures: list[str] = []
    statuses: dict[str, Counter[int]] = {}

    def call(operation: Any, case: Any) -> None:
        _keep_models_on_loopback(case, fake_llm.base_url)
        response = case.call_and_validate(headers=headers, checks=[not_a_server_error])
        statuses.setdefault(operation.label, Counter())[response.status_code] += 1

    for operation in operations:
        known = known_parameters(operation.path)
        runs = [
            (GenerationMode.POSITIVE, {}),
            (GenerationMode.NEGATIVE, {}),
            *([(GenerationMode.POSITIVE, {"path_parameters": known})] if known else []),
        ]
        for mode, kwargs in runs:
            strategy = operation.as_strategy(generation_mode=mode, **kwargs)
            try:
                _run(strategy, lambda case, op=operation: call(op, case))
            except Unsatisfiable:  # no invalid input exists (a free-form string path parameter)
                assert mode == GenerationMode.NEGATIVE, operation.label
            except Exception as exc:  # every operation runs; all failures are reported
                failures.append(f"{operation.label} ({mode}, {kwargs}): {exc}")
    assert not failures, "\n\n".join(failures)
    # The fuzzing reached the routes themselves: the token was taken every time, and most
    # operations answered some input with success.
    assert not [label for label, seen in statuses.items() if 401 in seen or 403 in seen], statuses
    succeeded = [label for label, seen in statuses.items() if any(s < 300 for s in seen)]
    assert len(succeeded) >= len(operations) // 2, statuses


def _run(strategy: Any, call: Any) -> None:
    @given(case=strategy)
    @SETTINGS
    def check(case: Any) -> None:
        call(case)

    check()


SETTINGS = settings(
    max_examples=EXAMPLES,
    deadline=None,
    derandomize=True,
    database=None,
    phases=[Phase.explicit, Phase.generate],  # no shrinking: the failing case is reported
    suppress_health_check=list(HealthCheck),
)


def _keep_models_on_loopback(case: Any, base_url: str) -> None:
    """A generated model endpoint is pointed at the fake LLM server: a later quick test or run
    group must never send a request to a made-up host."""
    is_model = case.method == "POST" and case.path.endswith("/models")
    if is_model and isinstance(case.body, dict) and isinstance(case.body.get("base_url"), str):
        case.body["base_url"] = base_url


def test_a_vast_margin_gets_a_verdict_not_a_server_error(store: Store, seeded: str) -> None:
    """Found by schemathesis: a margin near the float maximum overflowed the rows-to-settle
    estimate (a 500). The verdict is given; that estimate is left out where it overflows."""
    policy = {"default": {"margin": 1.7e308, "min_improvement": 1.1e308, "min_paired_rows": 77}}
    with TestClient(create_app(store)) as client:
        response = client.post(
            "/api/v1/groups/1/gate",
            json={"policy": policy, "resamples": 200},
            headers={"Authorization": f"Bearer {seeded}"},
        )
    assert response.status_code == 201, response.text
    decisions = {v["decision"] for v in response.json()["verdicts"]}
    assert decisions and decisions <= {"PASS", "FAIL", "INCONCLUSIVE"}
