"""REST API, captured traffic: the filtered, paginated list (the CLI's filters), one
inference, statistics, and datasets built from traffic. Both backends."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from assay.store import Store
from assay.traffic import import_traffic
from assay.web import create_app

API = "/api/v1"
T0 = datetime(2026, 1, 1, tzinfo=UTC)


def export_line(i: int) -> dict[str, Any]:
    """Inference i (started at minute i): prod/support, customer c0 or c1; every 5th failed."""
    failed = i % 5 == 4
    line: dict[str, Any] = {
        "request": {
            "model": "gpt-a",
            "messages": [{"role": "user", "content": f"Question {i}?"}],
        },
        "response": None
        if failed
        else {
            "object": "chat.completion",
            "model": "gpt-a",
            "choices": [{"message": {"role": "assistant", "content": f"Answer {i}."}}],
            "usage": {"prompt_tokens": 10, "completion_tokens": 3},
        },
        "started_at": (T0 + timedelta(minutes=i)).isoformat(),
        "environment": "prod" if i < 8 else "staging",
        "task": "support",
        "duration_ms": float(i + 1),
        "metadata": {"customer": f"c{i % 2}"},
    }
    if failed:
        line |= {"status_code": 429, "error": {"message": "rate limited"}}
    return line


@pytest.fixture
def client(store: Store, tmp_path: Path) -> Iterator[TestClient]:
    """Ten captured inferences (two of them errors) behind the app."""
    path = tmp_path / "traffic.jsonl"
    path.write_text("".join(json.dumps(export_line(i)) + "\n" for i in range(10)))
    assert import_traffic(store, path).inferences_imported == 10
    with TestClient(create_app(store)) as c:
        yield c


def listed(client: TestClient, **params: Any) -> dict[str, Any]:
    response = client.get(f"{API}/traffic", params=params)
    assert response.status_code == 200, response.text
    return response.json()


def test_list_newest_first_with_pages(client: TestClient) -> None:
    page = listed(client, limit=4)
    assert [r["started_at"][:16] for r in page["items"]] == [
        "2026-01-01T00:09", "2026-01-01T00:08", "2026-01-01T00:07", "2026-01-01T00:06",
    ]  # fmt: skip
    assert page["next_offset"] == 4
    ids = [r["id"] for r in page["items"]]
    rest = listed(client, limit=4, offset=4)["items"] + listed(client, limit=4, offset=8)["items"]
    assert len(rest) == 6 and not set(ids) & {r["id"] for r in rest}
    assert listed(client, limit=4, offset=8)["next_offset"] is None
    assert "request_body" not in page["items"][0]


@pytest.mark.parametrize(
    ("params", "count"),
    [
        ({"status": "error"}, 2),
        ({"status": "success"}, 8),
        ({"status": "429"}, 2),
        ({"environment": "staging"}, 2),
        ({"task": "support", "provider": "openai"}, 10),
        ({"model": "gpt-a"}, 10),
        ({"model": "gpt-b"}, 0),
        ({"metadata": ["customer=c1"]}, 5),
        ({"metadata": ["customer=c1"], "status": "error"}, 1),  # inference 9
        ({"since": "2026-01-01T00:05:00Z"}, 5),
        ({"until": "2026-01-01T00:03:00+00:00"}, 3),
        ({"since": "2026-01-02"}, 0),
    ],
)
def test_filters_mirror_the_cli(client: TestClient, params: dict[str, Any], count: int) -> None:
    assert len(listed(client, limit=500, **params)["items"]) == count


@pytest.mark.parametrize(
    ("params", "expected"),
    [
        ({"status": "maybe"}, "--status: expected success, error or an HTTP status code"),
        ({"metadata": ["customer"]}, "--metadata: expected key=value, got 'customer'"),
        ({"since": "yesterday"}, "--since: expected a date or time"),
        ({"since": "2026-02-01", "until": "2026-01-01"}, "is after --until"),
        ({"limit": 501}, "query.limit: Input should be less than or equal to 500"),
        ({"offset": -5}, "query.offset"),
    ],
)
def test_bad_filters_are_422(client: TestClient, params: dict[str, Any], expected: str) -> None:
    for path in ("/traffic", "/traffic/stats"):
        response = client.get(f"{API}{path}", params=params)
        if path.endswith("stats") and ("limit" in params or "offset" in params):
            continue  # stats is one row per task and model: not paginated
        assert response.status_code == 422, (path, response.text)
        assert expected in response.json()["detail"]


def test_show_and_stats(client: TestClient) -> None:
    newest = listed(client, limit=1)["items"][0]
    detail = client.get(f"{API}/traffic/{newest['id']}").json()
    assert detail["request_body"]["messages"][0]["content"] == "Question 9?"
    assert detail["response_body"] is None and detail["status_code"] == 429
    assert detail["metadata"] == {"customer": "c1"}
    missing = client.get(f"{API}/traffic/99999")
    assert missing.status_code == 404 and "no inference with id 99999" in missing.json()["detail"]
    assert client.get(f"{API}/traffic/abc").status_code == 422

    stats = client.get(f"{API}/traffic/stats").json()
    assert len(stats) == 1
    assert (stats[0]["task"], stats[0]["count"], stats[0]["errors"]) == ("support", 10, 2)
    assert stats[0]["error_rate"] == pytest.approx(0.2)
    prod = client.get(f"{API}/traffic/stats", params={"environment": "prod"}).json()
    assert prod[0]["count"] == 8


def test_dataset_from_traffic(client: TestClient) -> None:
    body = {"name": "from-prod", "type": "eval", "environment": "prod", "metadata": ["customer=c0"]}
    response = client.post(f"{API}/traffic/datasets", json=body)
    assert response.status_code == 201, response.text
    report = response.json()
    # prod is inferences 0-7; customer c0 the even ones; 4 failed and never enters.
    assert report["matched"] == 3 and report["rows"] == 3
    assert report["dataset"]["provenance"] == "traffic"
    assert report["dataset"]["filter"] == {"environment": "prod", "metadata": {"customer": "c0"}}
    rows = client.get(f"{API}/datasets/from-prod/rows").json()
    assert rows["total"] == 3

    training = client.post(
        f"{API}/traffic/datasets",
        json={"name": "train", "type": "training", "exclude": "from-prod"},
    ).json()
    assert training["rows"] == 5 and training["overlap_removed"] == 3

    refusals = [
        ({**body}, 409, "already exists"),
        ({**body, "name": "t2", "type": "training"}, 422, "must exclude an eval dataset"),
        ({**body, "name": "t3", "status": "error"}, 422, "only successful requests"),
        ({**body, "name": "t4", "sample": 2, "limit": 2}, 422, "not both"),
        ({**body, "name": "t5", "limit": 20_000}, 413, "above the maximum"),
        ({**body, "name": "t6", "since": "soon"}, 422, "--since"),
        ({**body, "name": "t7", "type": "test"}, 422, "body.type"),
        ({**body, "name": "t8", "environment": "nowhere"}, 422, "no successful inferences"),
        ({**body, "name": "t9", "colour": "red"}, 422, "body.colour"),
    ]
    for data, status, expected in refusals:
        response = client.post(f"{API}/traffic/datasets", json=data)
        assert response.status_code == status, (data, response.text)
        assert expected in response.json()["detail"], (data, response.json())
    names = [d["name"] for d in client.get(f"{API}/datasets").json()]
    assert names == ["from-prod", "train"]
