"""REST API, what a run group is built from: rubrics (templates, versions, render, quick
test), models (never an API key) and eval definitions. Both backends; real HTTP to the fake
LLM server for the quick test."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from assay.store import Store
from assay.web import create_app
from tests_helpers import rubric_counts, write_rows

API = "/api/v1"
KEY = "sk-proj-AbCdEf0123456789abcdef0123456789"


@pytest.fixture
def client(store: Store) -> Iterator[TestClient]:
    with TestClient(create_app(store)) as c:
        yield c


@pytest.fixture
def mult(client: TestClient, tmp_path: Path) -> TestClient:
    """A 6-row eval dataset named ``mult`` (row i asks for i times 3)."""
    body = write_rows(tmp_path / "rows.jsonl", 6).read_bytes()
    response = client.post(
        f"{API}/datasets/import",
        params={"name": "mult"},
        content=body,
        headers={"content-type": "application/x-ndjson"},
    )
    assert response.status_code == 201, response.text
    return client


def add_model(client: TestClient, name: str, base_url: str, /, **fields: Any) -> Any:
    body = {"name": name, "base_url": base_url, "model_id": name, **fields}
    return client.post(f"{API}/models", json=body)


def error(response: Any, status: int) -> str:
    """The error message, after checking the status and the JSON error shape."""
    assert response.status_code == status, response.text
    body = response.json()
    assert set(body) >= {"detail", "type"} and isinstance(body["detail"], str)
    return body["detail"]


# --- rubrics ---------------------------------------------------------------------------------


def test_templates(client: TestClient) -> None:
    listed = client.get(f"{API}/rubrics/templates").json()
    assert "correctness" in [t["name"] for t in listed]
    assert all(set(t) == {"name", "description"} for t in listed)
    one = client.get(f"{API}/rubrics/templates/correctness").json()
    assert "{{ eval_model_response }}" in one["text"]
    message = error(client.get(f"{API}/rubrics/templates/nope"), 404)
    assert "no built-in template named 'nope'; available: " in message


def test_rubric_create_show_versions_edit(client: TestClient, store: Store) -> None:
    created = client.post(f"{API}/rubrics", json={"name": "right", "template": "correctness"})
    assert created.status_code == 201, created.text
    assert created.json()["version"] == 1 and created.json()["origin"] == "template:correctness"

    text = "Judge {{ eval_model_response }} against {{ conversation_response }}."
    own = client.post(
        f"{API}/rubrics",
        json={"name": "own", "text": text, "score_min": 0, "score_max": 5, "description": "Mine"},
    )
    assert own.status_code == 201 and own.json()["score_max"] == 5
    assert own.json()["kind"] == "pointwise"
    pair_text = "Which is better? {{ response_a }} or {{ response_b }}"
    pair = client.post(
        f"{API}/rubrics", json={"name": "pair", "text": pair_text, "kind": "pairwise"}
    )
    assert pair.status_code == 201 and pair.json()["kind"] == "pairwise", pair.text

    assert "already exists" in error(
        client.post(f"{API}/rubrics", json={"name": "right", "template": "correctness"}), 409
    )
    before = rubric_counts(store)
    bad = [
        ({"name": "bad name!", "template": "correctness"}, "invalid rubric name"),
        ({"name": "both", "template": "correctness", "text": text}, "exactly one"),
        ({"name": "neither"}, "exactly one"),
        ({"name": "range", "text": text, "score_min": 5, "score_max": 5}, "must be lower"),
        ({"name": "t", "template": "nope"}, "no built-in template"),
        ({"name": "x", "template": "correctness", "colour": "red"}, "body.colour"),
        ({"name": "x", "text": "no response variable"}, "eval_model_response"),
        ({"name": "x", "text": pair_text}, "eval_model_response"),
        ({"name": "x", "text": text, "kind": "pairwise"}, "response_a"),
        ({"name": "x", "template": "correctness", "kind": "pairwise"}, "pointwise"),
        ({"name": "x", "text": text, "kind": "ranked"}, "body.kind"),
    ]
    for body, expected in bad:
        response = client.post(f"{API}/rubrics", json=body)
        assert response.status_code in (404, 422), body
        assert expected in response.json()["detail"], (body, response.json())
    assert rubric_counts(store) == before

    assert [r["name"] for r in client.get(f"{API}/rubrics").json()] == ["own", "pair", "right"]
    shown = client.get(f"{API}/rubrics/own").json()
    assert shown["description"] == "Mine" and shown["latest_version"] == 1
    assert "did you mean 'right'" in error(client.get(f"{API}/rubrics/rigt"), 404)

    edited = client.post(f"{API}/rubrics/own/versions", json={"score_max": 7})
    assert edited.status_code == 201 and edited.json()["version"] == 2
    assert edited.json()["note"] == "from v1: range 0-5 -> 0-7"
    new_text = client.post(f"{API}/rubrics/own/versions", json={"text": text + " Be strict."})
    assert new_text.json()["version"] == 3 and new_text.json()["template"].endswith("strict.")
    assert "nothing to change" in error(client.post(f"{API}/rubrics/own/versions", json={}), 422)
    assert "nothing changed" in error(
        client.post(f"{API}/rubrics/own/versions", json={"score_max": 7}), 422
    )
    assert error(client.post(f"{API}/rubrics/gone/versions", json={"score_max": 9}), 404)

    versions = client.get(f"{API}/rubrics/own/versions").json()
    assert [(v["version"], v["score_max"]) for v in versions] == [(1, 5), (2, 7), (3, 7)]
    assert client.get(f"{API}/rubrics/own/versions/1").json()["template"] == text
    assert "has no version 9 (latest is 3)" in error(
        client.get(f"{API}/rubrics/own/versions/9"), 404
    )
    assert error(client.get(f"{API}/rubrics/own/versions/latest"), 422).startswith("path.version")
    assert error(client.get(f"{API}/rubrics/nope/versions"), 404)


def test_render_for_a_row(mult: TestClient) -> None:
    client = mult
    client.post(f"{API}/rubrics", json={"name": "right", "template": "correctness"})
    rendered = client.post(f"{API}/rubrics/right/render", json={"dataset": "mult", "row": 4})
    assert rendered.status_code == 200, rendered.text
    prompt = rendered.json()
    assert prompt["version"] == 1 and prompt["response_source"] == "reference"
    assert "What is 4 times 3?" in prompt["user"] and "<<<RESPONSE_UNDER_TEST>>>" in prompt["user"]
    assert "impartial judge" in prompt["system"]

    given = client.post(
        f"{API}/rubrics/right/render",
        json={"dataset": "mult", "row": 1, "response": "It is 33.", "version": 1},
    ).json()
    assert given["response_source"] == "text" and "It is 33." in given["user"]

    assert "no row at position 9 (6 rows: positions 0-5)" in error(
        client.post(f"{API}/rubrics/right/render", json={"dataset": "mult", "row": 9}), 404
    )
    assert error(
        client.post(f"{API}/rubrics/right/render", json={"dataset": "mult", "row": -1}), 422
    ).startswith("body.row")
    assert "no dataset named 'nope'" in error(
        client.post(f"{API}/rubrics/right/render", json={"dataset": "nope"}), 404
    )
    assert error(client.post(f"{API}/rubrics/right/render", json={}), 422).startswith(
        "body.dataset"
    )


def test_quick_test_calls_model_and_judge(mult: TestClient, fake_llm: Any) -> None:
    client = mult
    client.post(f"{API}/rubrics", json={"name": "right", "template": "correctness"})
    for name in ("gen", "judge"):
        assert add_model(client, name, fake_llm.base_url).status_code == 201
    response = client.post(
        f"{API}/rubrics/right/test",
        json={"dataset": "mult", "judge": "judge", "model": "gen", "rows": [2, 0]},
    )
    assert response.status_code == 200, response.text
    report = response.json()
    assert report["rubric_version"] == 1 and report["judge"] == "judge"
    assert [r["row"] for r in report["rows"]] == [2, 0]
    for row in report["rows"]:
        assert row["status"] == "scored" and 1 <= row["score"] <= 10
        assert row["output_source"] == "gen" and row["reasoning"]
        assert "<<<RESPONSE_UNDER_TEST>>>" in row["prompt"]["user"]
    assert fake_llm.stats("gen")["ok"] == 2 and fake_llm.stats("judge")["ok"] == 2

    reference = client.post(
        f"{API}/rubrics/right/test",
        json={"dataset": "mult", "judge": "judge", "reference": True},
    ).json()
    assert reference["rows"][0]["output_source"] == "reference"
    assert reference["rows"][0]["output"]["content"] == "0"

    both = {"dataset": "mult", "judge": "judge", "model": "gen", "reference": True}
    neither = {"dataset": "mult", "judge": "judge"}
    for body in (both, neither):
        assert "give either model" in error(
            client.post(f"{API}/rubrics/right/test", json=body), 422
        )
    too_many = {**neither, "reference": True, "rows": list(range(21))}
    assert error(client.post(f"{API}/rubrics/right/test", json=too_many), 422).startswith(
        "body.rows"
    )
    missing_row = {**neither, "reference": True, "rows": [7]}
    assert "has no row 7" in error(client.post(f"{API}/rubrics/right/test", json=missing_row), 422)
    unknown_judge = {**neither, "judge": "nobody", "reference": True}
    assert "no model named 'nobody'" in error(
        client.post(f"{API}/rubrics/right/test", json=unknown_judge), 404
    )
    assert fake_llm.stats("judge")["ok"] == 3


# --- models ----------------------------------------------------------------------------------


def test_models_add_list_show_remove(client: TestClient, fake_llm: Any) -> None:
    created = add_model(
        client,
        "cand",
        fake_llm.base_url,
        api_key_env="ASSAY_TEST_KEY",
        params={"temperature": 0},
        max_concurrency=4,
        price_input_per_mtok=1.5,
    )
    assert created.status_code == 201, created.text
    model = created.json()
    assert model["api_key_env"] == "ASSAY_TEST_KEY" and model["params"] == {"temperature": 0}
    assert model["max_concurrency"] == 4 and model["price_input_per_mtok"] == 1.5
    assert not any("key" in field and field != "api_key_env" for field in model)

    assert "already exists" in error(add_model(client, "cand", fake_llm.base_url), 409)
    assert [m["name"] for m in client.get(f"{API}/models").json()] == ["cand"]
    assert client.get(f"{API}/models/cand").json()["model_id"] == "cand"
    assert "no model named 'cnd'; did you mean 'cand'?" in error(
        client.get(f"{API}/models/cnd"), 404
    )

    bad = [
        ({"base_url": "ftp://x"}, "invalid --base-url"),
        ({"provider": "acme"}, "unknown provider"),
        ({"max_concurrency": 0}, "--max-concurrency must be a positive integer"),
        ({"params": {"model": "x"}}, "Assay sets 'model' itself"),
        ({"rpm": "fast"}, "body.rpm"),
    ]
    for fields, expected in bad:
        message = error(add_model(client, "other", fake_llm.base_url, **fields), 422)
        assert expected in message, (fields, message)

    removed = client.delete(f"{API}/models/cand", headers={"content-type": "application/json"})
    assert removed.status_code == 204 and removed.content == b""
    assert error(client.get(f"{API}/models/cand"), 404)
    assert error(
        client.delete(f"{API}/models/cand", headers={"content-type": "application/json"}), 404
    )


def test_models_never_take_an_api_key(client: TestClient, fake_llm: Any) -> None:
    attempts = [
        {"api_key": KEY},
        {"api_key_env": KEY},
        {"params": {"api_key": KEY}},
        {"params": {"Authorization": f"Bearer {KEY}"}},
    ]
    for fields in attempts:
        response = add_model(client, "keyed", fake_llm.base_url, **fields)
        assert response.status_code == 422, fields
        assert KEY not in response.text  # the key is never echoed back
    assert client.get(f"{API}/models").json() == []
    listed = add_model(client, "plain", fake_llm.base_url).json()
    assert KEY not in str(listed)


# --- evals -----------------------------------------------------------------------------------


@pytest.fixture
def catalog(mult: TestClient, fake_llm: Any) -> TestClient:
    """mult + rubric ``right`` + models base, cand, judge on the fake server."""
    client = mult
    assert (
        client.post(f"{API}/rubrics", json={"name": "right", "template": "correctness"}).status_code
        == 201
    )
    for name in ("base", "cand", "judge"):
        assert add_model(client, name, fake_llm.base_url).status_code == 201
    return client


def test_evals_create_list_show(catalog: TestClient) -> None:
    client = catalog
    body = {
        "name": "e1", "dataset": "mult", "rubric": "right", "judge": "judge",
        "baseline": "base", "candidates": ["cand"], "sample_size": 4, "seed": 3,
    }  # fmt: skip
    created = client.post(f"{API}/evals", json=body)
    assert created.status_code == 201, created.text
    info = created.json()
    assert info["baseline"] == "base" and info["candidates"] == ["cand"]
    assert (info["sample_size"], info["seed"], info["rubric_version"]) == (4, 3, 1)

    captured = client.post(
        f"{API}/evals",
        json={**body, "name": "e2", "baseline": None, "with_captured": True, "sample_size": None},
    ).json()
    assert captured["baseline"] == "captured" and captured["sample_size"] == 6

    assert "already exists" in error(client.post(f"{API}/evals", json=body), 409)
    bad = [
        ({"dataset": "nope"}, 404, "no dataset named 'nope'"),
        ({"rubric_version": 5}, 404, "has no version 5"),
        ({"judge": "nobody"}, 404, "no model named 'nobody'"),
        ({"candidates": []}, 422, "at least one --candidate"),
        ({"candidates": ["base"]}, 422, "repeated: base"),
        ({"sample_size": 99}, 422, "larger than dataset 'mult' (6 rows)"),
        ({"judge_samples": 0}, 422, "between 1 and 20"),
        ({"baseline": None}, 422, "name a --baseline model"),
        ({"candidates": "cand"}, 422, "body.candidates"),
    ]
    for fields, status, expected in bad:
        message = error(client.post(f"{API}/evals", json={**body, "name": "bad", **fields}), status)
        assert expected in message, (fields, message)

    assert [e["name"] for e in client.get(f"{API}/evals").json()] == ["e1", "e2"]
    assert client.get(f"{API}/evals/e2").json()["with_captured"] is True
    assert "no eval named 'e3'" in error(client.get(f"{API}/evals/e3"), 404)

    in_use = client.delete(f"{API}/models/cand", headers={"content-type": "application/json"})
    assert "still used by eval definition(s) 'e1', 'e2'" in error(in_use, 422)
    assert client.get(f"{API}/models/cand").status_code == 200
