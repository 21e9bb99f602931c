"""REST API, run groups: started, followed, cancelled and resumed in a real background worker
process against the fake LLM server; summary, rows, row detail, distribution, comparison,
gate verdicts and the accepted baseline. Both backends."""

from __future__ import annotations

import contextlib
import os
import signal
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select

from assay.engine.background import live_worker
from assay.engine.groups import create_group
from assay.store import Store
from assay.store.models import Generation, Judgment, RunGroup
from assay.web import create_app
from tests_helpers import write_rows

API = "/api/v1"
JSON = {"content-type": "application/json"}  # what a script sends instead of the page's token


@pytest.fixture
def client(store: Store, fake_llm: Any, tmp_path: Path) -> Iterator[TestClient]:
    """Dataset ``mult`` (12 rows), rubric ``right``, models base/cand/judge on the fake server
    and eval ``e1`` (10 sampled rows), all created through the API."""
    with TestClient(create_app(store)) as c:
        body = write_rows(tmp_path / "rows.jsonl", 12).read_bytes()
        created = c.post(
            f"{API}/datasets/import",
            params={"name": "mult"},
            content=body,
            headers={"content-type": "application/x-ndjson"},
        )
        assert created.status_code == 201
        assert c.post(
            f"{API}/rubrics", json={"name": "right", "template": "correctness"}
        ).is_success
        for name in ("base", "cand", "judge"):
            model = {"name": name, "base_url": fake_llm.base_url, "model_id": name}
            assert c.post(f"{API}/models", json={**model, "price_input_per_mtok": 1}).is_success
        evaluation = {
            "name": "e1", "dataset": "mult", "rubric": "right", "judge": "judge",
            "baseline": "base", "candidates": ["cand"], "sample_size": 10, "seed": 7,
        }  # fmt: skip
        assert c.post(f"{API}/evals", json=evaluation).status_code == 201
        try:
            yield c
        finally:
            _stop_workers(store)


def _stop_workers(store: Store) -> None:
    """A failed test must not leave a worker running against a database about to be dropped."""
    with store.session() as session:
        workers = [live_worker(g) for g in session.scalars(select(RunGroup))]
    for worker in filter(None, workers):
        pid = int(worker.rpartition(":")[2])
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)


def wait_for(
    client: TestClient, group_id: int, done: Callable[[dict[str, Any]], bool], what: str
) -> dict[str, Any]:
    """Poll the status route until ``done`` holds (a deadline, not a timing assertion)."""
    deadline = time.monotonic() + 90
    while True:
        response = client.get(f"{API}/groups/{group_id}")
        assert response.status_code == 200, response.text
        status = response.json()
        if done(status):
            return status
        assert time.monotonic() < deadline, f"timed out waiting for {what}: {status}"
        time.sleep(0.1)


def counts_add_up(status: dict[str, Any]) -> None:
    for arm in status["progress"]:
        failed = arm["generation_failed"] + arm["judge_failed"] + arm["judge_unparseable"]
        assert arm["done"] == arm["scored"] + failed, arm
        assert arm["done"] + arm["pending"] == arm["total"] == status["sample_size"], arm


def stored(store: Store) -> dict[str, int]:
    """Generations and judgments stored, after checking none is duplicated."""
    with store.session() as s:
        dup_gens = s.execute(
            select(Generation.run_id, Generation.row_id)
            .group_by(Generation.run_id, Generation.row_id)
            .having(func.count() > 1)
        ).all()
        dup_judgments = s.execute(
            select(Judgment.generation_id, Judgment.sample_index)
            .group_by(Judgment.generation_id, Judgment.sample_index)
            .having(func.count() > 1)
        ).all()
        assert dup_gens == [] and dup_judgments == []
        return {
            "generations": s.scalar(select(func.count()).select_from(Generation)) or 0,
            "judgments": s.scalar(select(func.count()).select_from(Judgment)) or 0,
        }


def completed(status: dict[str, Any]) -> bool:
    return status["status"] == "completed"


@pytest.mark.slow
def test_background_run_is_cancelled_then_resumed_to_completion(
    client: TestClient, fake_llm: Any, store: Store, assay_home: Path
) -> None:
    fake_llm.configure("*", latency_ms=400)
    started = client.post(f"{API}/groups", json={"eval": "e1", "max_concurrency": 2})
    assert started.status_code == 202, started.text
    group = started.json()
    assert group["id"] == 1 and [r["model"] for r in group["runs"]] == ["base", "cand"]
    assert group["worker"]["alive"] is True and group["worker"]["on_this_host"] is True

    running = wait_for(
        client,
        1,
        lambda s: s["status"] == "running" and sum(a["done"] for a in s["progress"]) >= 1,
        "the worker to finish a first row",
    )
    counts_add_up(running)
    assert running["worker"]["alive"] is True and running["worker"]["heartbeat_at"]
    again = client.post(f"{API}/groups/1/resume", json={})
    assert again.status_code == 422 and "already being executed by worker" in again.text

    cancelled = client.post(f"{API}/groups/1/cancel", headers=JSON)
    assert cancelled.status_code == 200, cancelled.text
    report = cancelled.json()
    assert report["stopped"] is True and report["worker"] == running["worker"]["worker"]
    assert report["group"]["status"] == "cancelled"
    assert {r["status"] for r in report["group"]["runs"]} == {"cancelled"}

    after = client.get(f"{API}/groups/1").json()
    counts_add_up(after)
    done = sum(a["done"] for a in after["progress"])
    assert 1 <= done < 20
    assert after["worker"]["alive"] is False and after["worker"]["heartbeat_at"] is None
    assert "assay run resume 1" in "\n".join(after["worker"]["log_tail"])
    partial = stored(store)
    assert 0 < partial["judgments"] < 20
    not_running = client.post(f"{API}/groups/1/cancel", headers=JSON)
    assert not_running.status_code == 422
    assert "is not running (status: cancelled); nothing to cancel" in not_running.json()["detail"]

    fake_llm.configure("*", latency_ms=0)
    resumed = client.post(f"{API}/groups/1/resume", json={"max_concurrency": 4})
    assert resumed.status_code == 202, resumed.text
    final = wait_for(client, 1, completed, "the resumed group to complete")
    counts_add_up(final)
    assert all(a["done"] == a["scored"] == 10 for a in final["progress"])
    assert {r["status"] for r in final["runs"]} == {"completed"}
    assert final["worker"]["log_tail"] == []
    assert stored(store) == {"generations": 20, "judgments": 20}
    log = Path(final["worker"]["log_file"])
    assert log == assay_home / "logs" / "group-1.log"
    starts = [line for line in log.read_text().splitlines() if line.startswith("--- ")]
    assert [s.split(": ", 1)[1] for s in starts] == [
        "assay run resume 1 --max-concurrency 2",
        "assay run resume 1 --max-concurrency 4",
    ]

    done_already = client.post(f"{API}/groups/1/resume", json={})
    assert done_already.status_code == 422
    assert "is completed: nothing to resume" in done_already.json()["detail"]


@pytest.fixture
def finished(client: TestClient) -> TestClient:
    """Group 1 of e1, run to completion by a background worker."""
    assert client.post(f"{API}/groups", json={"eval": "e1", "name": "first"}).status_code == 202
    wait_for(client, 1, completed, "group 1 to complete")
    return client


def test_summary_rows_row_and_distribution(finished: TestClient) -> None:
    client = finished
    summary = client.get(f"{API}/groups/1/summary").json()
    assert summary["status"] == "completed" and summary["name"] == "first"
    assert [(r["model"], r["scored"], r["total"]) for r in summary["runs"]] == [
        ("base", 10, 10),
        ("cand", 10, 10),
    ]

    page = client.get(f"{API}/groups/1/rows", params={"limit": 7}).json()
    assert len(page["items"]) == 7 and page["next_offset"] == 7 and page["total"] is None
    last = client.get(f"{API}/groups/1/rows", params={"limit": 7, "offset": 14}).json()
    assert len(last["items"]) == 6 and last["next_offset"] is None
    every = client.get(f"{API}/groups/1/rows", params={"limit": 500}).json()["items"]
    assert len(every) == 20 and {r["model"] for r in every} == {"base", "cand"}

    cand = client.get(f"{API}/groups/1/rows", params={"model": "cand"}).json()["items"]
    assert len(cand) == 10 and all(r["baseline_score"] is not None for r in cand)
    by_score = client.get(
        f"{API}/groups/1/rows", params={"sort": "score", "descending": True, "limit": 500}
    ).json()["items"]
    scores = [r["score"] for r in by_score]
    assert scores == sorted(scores, reverse=True)
    middle = sorted(scores)[len(scores) // 2]
    banded = client.get(
        f"{API}/groups/1/rows", params={"min_score": middle, "max_score": middle, "limit": 500}
    ).json()["items"]
    assert banded and all(r["score"] == middle for r in banded)
    below = client.get(f"{API}/groups/1/rows", params={"below": middle}).json()["items"]
    assert all(r["score"] < middle for r in below)
    regressions = client.get(f"{API}/groups/1/rows", params={"regressions": True}).json()["items"]
    assert all(r["model"] == "cand" and r["diff"] < 0 for r in regressions)
    failed = client.get(f"{API}/groups/1/rows", params={"status": "failed"}).json()["items"]
    assert failed == []
    easy = client.get(f"{API}/groups/1/rows", params={"slice": "difficulty=easy"}).json()
    assert easy["items"] and all(r["row"] % 2 == 1 for r in easy["items"])

    for params, expected in [
        ({"status": "bogus"}, "unknown status 'bogus'"),
        ({"sort": "bogus"}, "query.sort"),
        ({"limit": 501}, "query.limit"),
        ({"min_score": "high"}, "query.min_score"),
        ({"model": "nobody"}, "no model 'nobody' in this group"),
    ]:
        response = client.get(f"{API}/groups/1/rows", params=params)
        assert response.status_code in (404, 422), params
        assert expected in response.json()["detail"], (params, response.json())

    position = every[0]["row"]
    detail = client.get(f"{API}/groups/1/rows/{position}").json()
    assert detail["messages"][1]["content"] == f"What is {position} times 3?"
    assert [a["model"] for a in detail["arms"]] == ["base", "cand"]
    assert all(a["judgments"][0]["reasoning"] for a in detail["arms"])
    sampled = {r["row"] for r in every}
    outside = next(p for p in range(12) if p not in sampled)
    missing = client.get(f"{API}/groups/1/rows/{outside}")
    assert missing.status_code == 404
    assert f"row {outside} is not in run group 1's sample" in missing.json()["detail"]

    histogram = client.get(f"{API}/groups/1/distribution").json()
    assert (histogram["score_min"], histogram["score_max"]) == (1, 10)
    for arm in histogram["models"]:
        assert sum(b["count"] for b in arm["buckets"]) == arm["scored"] == 10
        assert [b["bucket_min"] for b in arm["buckets"]] == list(range(1, 11))

    listed = client.get(f"{API}/groups").json()
    assert [g["id"] for g in listed["items"]] == [1] and listed["next_offset"] is None
    assert client.get(f"{API}/groups", params={"eval": "e1", "limit": 1}).json()["next_offset"] == 1
    assert client.get(f"{API}/groups", params={"eval": "e9"}).status_code == 404


def test_compare_gate_and_baseline(finished: TestClient, tmp_path: Path) -> None:
    client = finished
    comparison = client.get(f"{API}/groups/1/compare", params={"resamples": 1000}).json()
    assert comparison["baseline"]["model"] == "base" and comparison["compared_rows"] == 10
    (cand,) = comparison["candidates"]
    assert cand["arm"]["model"] == "cand" and cand["paired"]["n_pairs"] == 10
    assert cand["paired"]["ci_low"] <= cand["paired"]["mean_diff"] <= cand["paired"]["ci_high"]
    sliced = client.get(f"{API}/groups/1/compare", params={"slice_by": ["difficulty"]}).json()
    assert sliced["slice_keys"] == ["difficulty"]
    low = client.get(f"{API}/groups/1/compare", params={"resamples": 50})
    assert low.status_code == 422 and low.json()["detail"].startswith("query.resamples")

    assert client.get(f"{API}/groups/1/gate").json()["items"] == []
    default = client.post(f"{API}/groups/1/gate", json={})
    assert default.status_code == 201, default.text
    result = default.json()
    assert result["policy_source"] == "defaults"
    (verdict,) = result["verdicts"]
    assert verdict["model"] == "cand" and verdict["decision"] == "INCONCLUSIVE"
    assert any("at least 30" in reason for reason in verdict["reasons"])
    assert result["exit_code"] == 3

    lenient = {"default": {"min_paired_rows": 5, "margin": 100, "max_failure_rate": 0.5}}
    inline = client.post(f"{API}/groups/1/gate", json={"policy": lenient, "resamples": 1000})
    assert inline.status_code == 201, inline.text
    assert inline.json()["decision"] == "PASS" and inline.json()["exit_code"] == 0
    assert inline.json()["policy_source"] == "inline"

    # The API reads policy files only under ASSAY_HOME/policies (tests/test_web_auth.py).
    policy_file = client.app.state.store.settings.home.resolve() / "policies" / "gate.yaml"
    policy_file.parent.mkdir()
    policy_file.write_text("default:\n  min_paired_rows: 5\n  margin: 100\n")
    from_file = client.post(f"{API}/groups/1/gate", json={"policy_path": "gate.yaml"})
    assert from_file.status_code == 201 and from_file.json()["policy_source"] == str(policy_file)

    for body, status, expected in [
        ({"policy": {"default": {"margn": 1}}}, 422, "body.policy.default.margn"),
        ({"policy": lenient, "policy_path": "gate.yaml"}, 422, "not both"),
        ({"policy_path": "missing.yaml"}, 422, "does not exist"),
        ({"resamples": 10}, 422, "body.resamples"),
        ({"against_baseline": True}, 404, "has no accepted baseline group"),
    ]:
        response = client.post(f"{API}/groups/1/gate", json=body)
        assert response.status_code == status, (body, response.text)
        assert expected in response.json()["detail"], (body, response.json())

    stored_verdicts = client.get(f"{API}/groups/1/gate").json()
    assert [v["decision"] for v in stored_verdicts["items"]] == ["PASS", "PASS", "INCONCLUSIVE"]
    newest = stored_verdicts["items"][0]
    assert newest["model"] == "cand" and newest["evidence"]["comparison"]["paired"]["n_pairs"] == 10
    assert newest["id"] == from_file.json()["verdicts"][0]["verdict_id"]
    paged = client.get(f"{API}/groups/1/gate", params={"limit": 2, "offset": 2}).json()
    assert len(paged["items"]) == 1 and paged["next_offset"] is None

    marked = client.post(f"{API}/groups/1/baseline", headers=JSON)
    assert marked.json() == {"group_id": 1, "eval": "e1", "previous_group_id": None}
    against = client.post(f"{API}/groups/1/gate", json={"against_baseline": True})
    assert against.status_code == 422 and "is itself the accepted baseline" in against.text


def test_group_errors(client: TestClient, store: Store, fake_llm: Any) -> None:
    for body, status, expected in [
        ({"eval": "nope"}, 404, "no eval named 'nope'"),
        ({"eval": "e1", "sample_size": 99}, 422, "larger than dataset 'mult'"),
        ({"eval": "e1", "max_concurrency": 0}, 422, "body.max_concurrency"),
        ({"eval": "e1", "judge_samples": 50}, 422, "between 1 and 20"),
        ({}, 422, "body.eval"),
    ]:
        response = client.post(f"{API}/groups", json=body)
        assert response.status_code == status, (body, response.text)
        assert expected in response.json()["detail"]
    assert client.get(f"{API}/groups").json()["items"] == []
    form = client.post(f"{API}/groups", data={"eval": "e1"})
    assert form.status_code == 403 and form.json()["type"] == "csrf"

    pending = create_group(store, "e1")  # created, never started
    status = client.get(f"{API}/groups/{pending.id}").json()
    assert status["status"] == "pending" and status["worker"]["worker"] is None
    counts_add_up(status)
    assert all(a["pending"] == 10 for a in status["progress"])
    rows = client.get(f"{API}/groups/{pending.id}/rows").json()["items"]
    assert rows and {r["status"] for r in rows} == {"pending"}
    for method, path, expected in [
        ("post", "cancel", "is not running (status: pending)"),
        ("get", "compare", "not finished"),
        ("post", "gate", "not finished"),
        ("post", "baseline", "not finished"),
    ]:
        response = getattr(client, method)(f"{API}/groups/{pending.id}/{path}", headers=JSON)
        assert response.status_code == 422, (path, response.text)
        assert expected in response.json()["detail"], (path, response.json())

    for path in ("", "/summary", "/rows", "/rows/0", "/distribution", "/compare", "/gate"):
        response = client.get(f"{API}/groups/999{path}")
        assert response.status_code == 404, path
        assert response.json() == {
            "detail": "no run group 999 (see `assay run list`)",
            "type": "not_found",
        }
    for path in ("resume", "cancel", "gate", "baseline"):
        assert client.post(f"{API}/groups/999/{path}", headers=JSON).status_code == 404
    assert client.get(f"{API}/groups/one").status_code == 422
    assert fake_llm.stats()["models"] == {}  # nothing above called a model


def test_missing_api_key_refuses_to_start(
    client: TestClient, fake_llm: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("ASSAY_TEST_WEB_KEY", raising=False)
    model = {"name": "keyed", "base_url": fake_llm.base_url, "model_id": "keyed"}
    assert client.post(f"{API}/models", json={**model, "api_key_env": "ASSAY_TEST_WEB_KEY"})
    evaluation = {"name": "e2", "dataset": "mult", "rubric": "right", "judge": "keyed",
                  "baseline": "base", "candidates": ["cand"]}  # fmt: skip
    assert client.post(f"{API}/evals", json=evaluation).status_code == 201
    response = client.post(f"{API}/groups", json={"eval": "e2"})
    assert response.status_code == 422
    assert "ASSAY_TEST_WEB_KEY is not set" in response.json()["detail"]
    assert client.get(f"{API}/groups").json()["items"] == []
