"""Run group pages through the ASGI client: the summary, the rows table and its filters, the
decision, a row in detail, the judge prompt, and escaping of everything a model wrote."""

from __future__ import annotations

import html
import json
import re
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from assay.engine.results import group_summary, rows_page
from assay.store import Store
from assay.web import create_app
from support.groups import HOSTILE, build_group


@pytest.fixture
def client(cli: Any, fake_llm: Any, tmp_path: Path, store: Store) -> TestClient:
    build_group(cli, fake_llm, tmp_path)
    return TestClient(create_app(store))


def _text(html: str) -> str:
    return re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", html))


def test_group_page_shows_cards_chart_and_rows(client: TestClient, store: Store) -> None:
    page = client.get("/groups/1")
    assert page.status_code == 200
    summary = group_summary(store, 1)
    text = _text(page.text)
    for run in summary.runs:
        assert f"{run.scored:,} / {run.total:,}" in text
    chart = re.search(r"data-distribution='([^']*)'", page.text)
    assert chart is not None
    data = json.loads(html.unescape(chart.group(1)))
    assert [s["name"].split(" ")[0] for s in data["series"]] == [r.model for r in summary.runs]
    assert "Showing 1\u201336 of 36 lines" in text
    listing = client.get("/groups")
    assert listing.status_code == 200 and "/groups/1" in listing.text


def test_rows_filters_as_fragment_and_page(client: TestClient, store: Store) -> None:
    failed = rows_page(store, 1, status="failed", limit=500)
    assert failed.total, "the fixture should produce failures"
    fragment = client.get("/groups/1/rows?status=failed", headers={"HX-Request": "true"})
    assert fragment.status_code == 200
    assert "<html" not in fragment.text
    assert f"of {failed.total} lines" in _text(fragment.text)
    assert fragment.text.count('class="badge scored"') == 0
    # The pushed URL, opened directly, is the whole page with the same filter applied.
    full = client.get("/groups/1/rows?status=failed&model=cand")
    assert "<html" in full.text and "selected>cand" in full.text.replace('"cand" ', "")
    empty_fields = client.get("/groups/1?model=&status=&min_score=&max_score=&slice=&sort=row")
    assert empty_fields.status_code == 200
    bad = client.get("/groups/1?min_score=abc")
    assert bad.status_code == 422 and "min score must be a number" in bad.text
    unknown = client.get("/groups/1?status=bogus")
    assert unknown.status_code == 422 and "unknown status" in unknown.text
    paged = client.get("/groups/1/rows?sort=score&desc=1&offset=10", headers={"HX-Request": "1"})
    assert "Showing 11\u201336 of 36" in _text(paged.text)


def test_decision_fragment(client: TestClient) -> None:
    decision = client.get("/groups/1/decision")
    assert decision.status_code == 200
    assert re.search(r'id="overall-verdict">(PASS|FAIL|INCONCLUSIVE)<', decision.text)
    assert "assay gate 1" in decision.text


def test_row_page_and_judge_prompt(client: TestClient, store: Store) -> None:
    line = rows_page(store, 1, model="evil", status="scored").items[0]
    page = client.get(f"/groups/1/rows/{line.row}")
    assert page.status_code == 200
    for model in ("captured", "cand", "evil"):
        assert f'data-model="{model}"' in page.text
    prompt = client.get(f"/groups/1/rows/{line.row}/prompt", params={"model": "captured"})
    assert prompt.status_code == 200 and "Exact judge prompt" in prompt.text
    assert client.get("/groups/1/rows/999").status_code == 404
    missing = client.get(f"/groups/1/rows/{line.row}/prompt", params={"model": "nope"})
    assert missing.status_code == 404 and "no model" in missing.text
    assert client.get("/groups/42").status_code == 404


def test_model_text_is_escaped_everywhere(client: TestClient, store: Store) -> None:
    line = rows_page(store, 1, model="evil", status="scored").items[0]
    pages = [
        client.get("/groups/1").text,
        client.get(f"/groups/1/rows/{line.row}").text,
        client.get(f"/groups/1/rows/{line.row}/prompt", params={"model": "evil"}).text,
        client.get("/groups/1/rows?model=evil", headers={"HX-Request": "1"}).text,
    ]
    for body in pages:
        assert HOSTILE not in body
        assert "<script>window.__pwned" not in body
    assert "&lt;script&gt;window.__pwned=2&lt;/script&gt;" in pages[1]


def test_pages_send_security_headers(client: TestClient) -> None:
    response = client.get("/groups/1")
    csp = response.headers["content-security-policy"]
    assert "script-src 'self'" in csp and "unsafe-inline" not in csp
    assert response.headers["x-frame-options"] == "DENY"
    assert response.headers["x-content-type-options"] == "nosniff"
    assert "<script>" not in response.text.replace('<script type="application/json"', "")


def test_actions_need_csrf_and_explain_refusals(client: TestClient) -> None:
    assert client.post("/groups/1/cancel").status_code == 403  # no token: refused unread
    client.get("/groups")
    token = {"X-CSRF-Token": client.cookies["assay_csrf"]}
    refused = client.post("/groups/1/cancel", headers=token)
    assert refused.status_code == 422 and "Not cancelled" in refused.text
    as_htmx = client.post("/groups/1/resume", headers={**token, "HX-Request": "true"})
    assert as_htmx.status_code == 200 and as_htmx.headers["X-Assay-Form-Error"] == "1"
    assert "Not resumed" in as_htmx.text
    page = client.get("/groups/1")
    assert "/groups/1/cancel" not in page.text  # a finished group offers no cancel
