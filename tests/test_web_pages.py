"""The evals, rubrics, datasets, traffic and models pages through the real app (TestClient), on
SQLite and Postgres: content, empty states, 404s, filters, pagination, uploads, the rubric
editor and diff, quick tests against the fake LLM server, datasets from traffic, CSRF."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from assay.datasets import get_dataset, import_dataset, list_datasets
from assay.engine.definitions import create_eval
from assay.engine.groups import create_group
from assay.gate.history import latest_verdicts
from assay.providers import add_model
from assay.rubrics import create_rubric, edit_rubric, list_versions
from assay.store import Store
from assay.store.models import RubricVersion, Run, Verdict
from assay.traffic import import_traffic
from assay.web import create_app
from assay.web.pages.render import templates
from assay.web.pages.rubrics import metadata_keys, template_diff
from support.fixtures import *  # noqa: F403
from tests_helpers import export_line, rubric_counts, write, write_rows

T0 = datetime(2026, 1, 1, tzinfo=UTC)
FORM_ERROR = "x-assay-form-error"


@pytest.fixture
def client(store: Store) -> Iterator[TestClient]:
    with TestClient(create_app(store)) as test_client:
        yield test_client


def csrf(client: TestClient) -> dict[str, str]:
    """The header htmx sends: the page's token, also set as a cookie by the first response."""
    client.get("/models")
    return {"X-CSRF-Token": client.cookies["assay_csrf"]}


def text_of(html: str) -> str:
    """The visible text, tags removed and whitespace collapsed, to assert on sentences."""
    text = re.sub(r"<[^>]+>", " ", html).replace("\u2013", "-")  # en dash of ranges
    return " ".join(text.split())


def traffic_line(i: int, **extra: Any) -> dict[str, Any]:
    return export_line(i, **{"environment": "prod" if i % 2 else "staging", **extra})


def seed_traffic(store: Store, tmp_path: Path, n: int = 20) -> None:
    """n successful inferences (odd ones prod, even ones staging) and one failed request."""
    lines = [traffic_line(i) for i in range(n)]
    lines.append(traffic_line(500, response=None, error="upstream boom", status_code=500))
    import_traffic(store, write(tmp_path / "traffic.jsonl", lines))


def seed_rubric(store: Store) -> None:
    create_rubric(store, "right", template="correctness")


def seed_models(store: Store, base_url: str) -> None:
    for name in ("gen", "judge"):
        add_model(store, name, base_url=base_url, model_id=name)


# --- every page, empty and unknown ----------------------------------------------------------


def test_empty_pages_explain_what_to_do(client: TestClient) -> None:
    expectations = {
        "/evals": "assay eval create",
        "/rubrics": "assay rubric create NAME --template correctness",
        "/datasets": "No datasets yet",
        "/traffic": "No traffic captured yet",
        "/models": "No models registered yet",
    }
    for url, expected in expectations.items():
        response = client.get(url)
        assert response.status_code == 200, url
        assert expected in text_of(response.text), url
        assert "content-security-policy" in response.headers
    assert client.get("/", follow_redirects=False).headers["location"] == "/evals"


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("/rubrics/nope", "no rubric named 'nope'"),
        ("/datasets/nope", "no dataset named 'nope'"),
        ("/traffic/999", "no inference with id 999"),
    ],
)
def test_unknown_names_are_a_404_page(client: TestClient, url: str, message: str) -> None:
    response = client.get(url)
    assert response.status_code == 404
    assert "Not found" in response.text and message in text_of(response.text.replace("&#39;", "'"))


def test_post_without_csrf_header_is_refused(client: TestClient, store: Store) -> None:
    seed_rubric(store)
    response = client.post("/rubrics/right/versions", data={"template": "x"})
    assert response.status_code == 403 and response.json()["type"] == "csrf"
    assert rubric_counts(store) == (1, 1)
    wrong = client.post(
        "/rubrics/right/versions", data={"template": "x"}, headers={"X-CSRF-Token": "forged" * 8}
    )
    assert wrong.status_code == 403


# --- evals and models -----------------------------------------------------------------------


def test_evals_show_latest_group_and_its_latest_verdict(
    client: TestClient, store: Store, tmp_path: Path, fake_llm: Any
) -> None:
    import_dataset(store, write_rows(tmp_path / "rows.jsonl", 6), "mult")
    seed_rubric(store)
    for name in ("base", "cand", "judge"):
        add_model(store, name, base_url=fake_llm.base_url, model_id=name)
    create_eval(store, "nightly", dataset="mult", rubric="right", judge="judge",
                baseline="base", candidates=["cand"])  # fmt: skip
    create_eval(store, "unrun", dataset="mult", rubric="right", judge="judge",
                baseline="cand", candidates=["base"])  # fmt: skip
    first = create_group(store, "nightly")
    second = create_group(store, "nightly")
    with store.session() as session:
        runs = {
            g: session.scalar(select(Run.id).where(Run.group_id == g, Run.role == "candidate"))
            for g in (first.id, second.id)
        }
        for group_id, decision in ((first.id, "PASS"), (second.id, "PASS"), (second.id, "FAIL")):
            session.add(
                Verdict(group_id=group_id, run_id=runs[group_id], policy={}, decision=decision,
                        reasons=["worse"] if decision == "FAIL" else [], evidence={})
            )  # fmt: skip

    page = text_of(client.get("/evals").text)
    assert "nightly" in page and "unrun" in page
    assert f"#{second.id}" in page and f"#{first.id} " not in page  # the latest group only
    assert "FAIL" in page and "PASS" not in page  # that group's latest verdict
    assert "never run" in page and "assay run start unrun" in page
    assert f'href="/groups/{second.id}"' in client.get("/evals").text

    verdicts = latest_verdicts(store, [first.id, second.id, 999])
    assert set(verdicts) == {first.id, second.id}
    assert verdicts[second.id].decision == "FAIL"
    assert [(a.model, a.reasons) for a in verdicts[second.id].arms] == [("cand", ["worse"])]
    assert latest_verdicts(store, []) == {}


def test_models_show_key_variable_name_never_a_key(
    client: TestClient, store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    add_model(store, "gpt", base_url="https://api.example.com/v1", model_id="gpt-x",
              api_key_env="PAGES_TEST_KEY", price_input_per_mtok=0.15,
              price_output_per_mtok=0.6, rpm=600, params={"temperature": 0})  # fmt: skip
    add_model(store, "other", base_url="https://api.example.com/v1", model_id="o-1",
              api_key_env="PAGES_TEST_MISSING")  # fmt: skip
    monkeypatch.setenv("PAGES_TEST_KEY", "secret-value-never-shown")
    monkeypatch.delenv("PAGES_TEST_MISSING", raising=False)
    response = client.get("/models")
    page = text_of(response.text)
    assert "secret-value-never-shown" not in response.text
    assert "PAGES_TEST_KEY set" in page and "PAGES_TEST_MISSING not set" in page
    assert "gpt-x" in page and "https://api.example.com/v1" in page
    assert "0.15" in page and "0.60" in page and "600 req/min" in page
    assert "temperature" in page


# --- datasets -------------------------------------------------------------------------------


def test_dataset_list_and_paginated_rows(client: TestClient, store: Store, tmp_path: Path) -> None:
    import_dataset(store, write_rows(tmp_path / "rows.jsonl", 45), "mult")
    listing = text_of(client.get("/datasets").text)
    assert "mult" in listing and "eval" in listing and "45" in listing and "rows.jsonl" in listing

    first = client.get("/datasets/mult")
    page = text_of(first.text)
    assert "Rows 1-20 of 45" in page
    assert "What is 0 times 3?" in page and "What is 19 times 3?" in page
    assert "What is 20 times 3?" not in page
    assert 'class="msg user"' in first.text and 'class="msg assistant"' in first.text
    assert "difficulty" in page and 'href="/api/v1/datasets/mult/export?format=chat"' in first.text
    assert 'href="/api/v1/datasets/mult/export?format=source"' in first.text
    exported = client.get("/api/v1/datasets/mult/export?format=chat")  # the link works
    assert exported.status_code == 200 and len(exported.text.splitlines()) == 45
    assert 'href="/datasets/mult?offset=20"' in first.text

    last = client.get("/datasets/mult", params={"offset": 40})
    page = text_of(last.text)
    assert "Rows 41-45 of 45" in page and "What is 44 times 3?" in page
    assert 'rel="next"' not in last.text and 'href="/datasets/mult?offset=20"' in last.text
    assert client.get("/datasets/mult", params={"offset": -1}).status_code == 422


def test_dataset_names_are_linked_safely(client: TestClient, store: Store, tmp_path: Path) -> None:
    name = "team/support eval #1?"
    import_dataset(store, write_rows(tmp_path / "rows.jsonl", 2), name)
    link = re.search(r'href="(/datasets/[^"]+)"', client.get("/datasets").text).group(1)
    assert link == "/datasets/team/support%20eval%20%231%3F"
    page = client.get(link, params={"limit": 1})
    assert page.status_code == 200 and "What is 0 times 3?" in page.text
    next_page = re.search(r'<a class="btn" href="([^"]+)" rel="next">', page.text).group(1)
    assert next_page == "/datasets/team/support%20eval%20%231%3F?limit=1&amp;offset=1"
    assert "What is 1 times 3?" in client.get(next_page.replace("&amp;", "&")).text


def test_dataset_from_traffic_shows_its_filter(
    client: TestClient, store: Store, tmp_path: Path
) -> None:
    seed_traffic(store, tmp_path)
    csrf_header = csrf(client)
    response = client.post(
        "/traffic/dataset",
        data={"name": "prod-eval", "type": "eval", "take": "sample", "count": "3", "seed": "7",
              "environment": "prod", "metadata": ["customer=c1"]},
        headers=csrf_header,
    )  # fmt: skip
    assert response.status_code == 200, response.text
    page = client.get("/datasets/prod-eval")
    text = text_of(page.text)
    assert "Built from traffic" in text and "environment prod" in text and "sample 3" in text
    assert "/traffic?environment=prod&amp;metadata=customer%3Dc1" in page.text
    assert text.count("tool result") == 0 and 'class="msg system"' in page.text


def test_import_upload_reports_rows_and_skipped_lines(
    client: TestClient, store: Store, tmp_path: Path
) -> None:
    good = {
        "messages": [{"role": "user", "content": "Hi?"}, {"role": "assistant", "content": "Hello."}]
    }
    path = write(tmp_path / "upload.jsonl", [good, good, b"{not json", {"messages": "nope"}])
    with path.open("rb") as f:
        response = client.post(
            "/datasets/import",
            files={"file": ("upload.jsonl", f, "application/x-ndjson")},
            data={"name": "", "type": "eval"},
            headers=csrf(client),
        )
    assert response.status_code == 200, response.text
    page = text_of(response.text)
    assert "Imported 2 rows" in page and 'href="/datasets/upload"' in response.text
    assert "Lines read 4 Rows stored 2 Lines skipped 2 Repeated conversations 1" in page
    assert "Line Reason 3 not valid JSON" in page
    assert "4 messages: expected a non-empty list of messages, got string" in page
    assert 'hx-swap-oob="true"' in response.text  # the list above refreshes
    assert get_dataset(store, "upload").row_count == 2


def test_import_refuses_bad_files_with_the_line_number(
    client: TestClient, store: Store, tmp_path: Path
) -> None:
    headers = csrf(client)
    bad = write(tmp_path / "bad.jsonl", [b'{"messages": [{"role": "user"}]}', b"[1, 2]"])
    with bad.open("rb") as f:
        response = client.post(
            "/datasets/import", files={"file": ("bad.jsonl", f)}, data={"name": "bad"},
            headers=headers,
        )  # fmt: skip
    assert response.status_code == 422 and response.headers[FORM_ERROR] == "1"
    page = text_of(response.text)
    assert "no valid rows in bad.jsonl" in page and "line 1:" in page and "line 2:" in page
    wrong_kind = client.post(
        "/datasets/import", files={"file": ("notes.txt", b"hello")}, headers=headers
    )
    assert wrong_kind.status_code == 422 and "expected a JSONL file" in wrong_kind.text
    assert list_datasets(store) == []


# --- traffic --------------------------------------------------------------------------------


def test_traffic_stats_filters_and_pagination(
    client: TestClient, store: Store, tmp_path: Path
) -> None:
    seed_traffic(store, tmp_path, n=60)
    response = client.get("/traffic")
    page = text_of(response.text)
    assert "Inferences 1-50" in page and response.text.count('href="/traffic/') == 50
    assert 'hx-get="/traffic/stats"' in response.text  # the statistics load after the list
    assert 'href="/traffic?offset=50"' in response.text
    stats = text_of(client.get("/traffic/stats").text)
    assert "61 inferences" in stats
    assert "support gpt-a 61 1 (1.6 %)" in stats  # per task/model: count, errors, rate
    second = client.get("/traffic", params={"offset": 50})
    assert "Inferences 51-61" in text_of(second.text)
    assert second.text.count('href="/traffic/') == 11 and 'rel="next"' not in second.text

    query = {"environment": "prod", "metadata": "customer=c1", "status": "success"}
    filtered = client.get("/traffic", params=query)
    assert filtered.text.count('href="/traffic/') == 30
    assert 'value="customer=c1"' in filtered.text  # the form shows the filter again
    assert (
        'hx-get="/traffic/stats?environment=prod&amp;status=success&amp;metadata=customer%3Dc1"'
        in filtered.text
    )
    assert "30 inferences matching the filter" in text_of(
        client.get("/traffic/stats", params=query).text
    )
    other = client.get("/traffic", params={"task": "other"})
    assert other.status_code == 200 and "No inferences match this filter" in text_of(other.text)
    since = client.get("/traffic/stats", params={"since": "2026-01-01T00:55:00Z"})
    assert "6 inferences matching" in text_of(since.text)  # minutes 55-59, and the failure

    bad = client.get("/traffic", params={"status": "sometimes", "until": "2026-01-02"})
    assert bad.status_code == 422
    assert "Invalid filter" in bad.text and "--status" in bad.text
    assert 'value="sometimes"' in bad.text
    assert client.get("/traffic/stats", params={"since": "soon"}).status_code == 422


def test_inference_detail(client: TestClient, store: Store, tmp_path: Path) -> None:
    seed_traffic(store, tmp_path, n=3)
    listing = client.get("/traffic", params={"status": "error"}).text
    failed_id = int(re.search(r'href="/traffic/(\d+)"', listing).group(1))
    ok_listing = client.get("/traffic", params={"until": "2026-01-01T00:01:00Z"}).text
    ok_id = int(re.search(r'href="/traffic/(\d+)"', ok_listing).group(1))

    page = client.get(f"/traffic/{ok_id}")
    text = text_of(page.text)
    assert page.status_code == 200
    assert "Question 0?" in text and "Answer 0." in text  # request and response
    assert 'class="msg system"' in page.text and 'class="msg assistant"' in page.text
    assert "1 ms" in text and "10" in text and "$0.0010" in text  # timing, tokens, cost
    assert "customer" in text and "c0" in text and "staging" in text
    assert "Raw request JSON" in text and "&#34;model&#34;: &#34;gpt-a&#34;" in page.text

    failed = text_of(client.get(f"/traffic/{failed_id}").text)
    assert "upstream boom" in failed and "500" in failed and "Question 500?" in failed


def test_anthropic_inference_reads_as_a_conversation(
    client: TestClient, store: Store, tmp_path: Path
) -> None:
    line = {
        "request": {"model": "claude-x", "system": "Be nice.", "max_tokens": 100, "messages": [
            {"role": "user", "content": [{"type": "text", "text": "Hi there"}]}]},
        "response": {"id": "msg_1", "type": "message", "role": "assistant", "model": "claude-x",
                     "content": [{"type": "text", "text": "Hello!"},
                                 {"type": "tool_use", "id": "tu_1", "name": "lookup",
                                  "input": {"q": "x"}}],
                     "stop_reason": "tool_use", "usage": {"input_tokens": 5, "output_tokens": 2}},
        "started_at": "2026-01-01T00:00:00Z", "provider": "anthropic", "task": "t",
    }  # fmt: skip
    import_traffic(store, write(tmp_path / "a.jsonl", [line]))
    inference_id = int(re.search(r'href="/traffic/(\d+)"', client.get("/traffic").text).group(1))
    page = client.get(f"/traffic/{inference_id}").text
    text = text_of(page)
    assert "Request system Be nice. user Hi there" in text
    assert "Response assistant Hello! tool call lookup tu_1" in text
    assert 'class="msg system"' in page and "anthropic" in text


def test_save_as_dataset_reports_overlap_warns_and_refuses(
    client: TestClient, store: Store, tmp_path: Path
) -> None:
    seed_traffic(store, tmp_path, n=8)
    headers = csrf(client)
    # An eval set holding the same conversations as 3 of the 4 prod inferences.
    rows = [
        {"messages": [{"role": "system", "content": "Be brief."},
                      {"role": "user", "content": f"Question {i}?"}]}
        for i in (1, 3, 5)
    ]  # fmt: skip
    import_dataset(store, write(tmp_path / "e.jsonl", rows), "up", "eval")
    assert '<option value="up">' in client.get("/traffic").text

    made = client.post(
        "/traffic/dataset",
        data={"name": "tr", "type": "training", "exclude": "up", "environment": "prod"},
        headers=headers,
    )
    assert made.status_code == 200, made.text
    page = text_of(made.text)
    assert "Created training dataset tr with 1 row." in page
    assert "Removed: already in up 3 (75.0 %)" in page
    assert "75% of the matching rows were already in eval dataset 'up'" in page.replace(
        "&#39;", "'"
    )
    assert get_dataset(store, "tr").filter == {"environment": "prod", "exclude": "up"}

    refused = client.post(
        "/traffic/dataset",
        data={"name": "none", "type": "training", "exclude": "up", "environment": "prod",
              "metadata": "customer=c1", "until": "2026-01-01T00:06:00Z"},
        headers=headers,
    )  # fmt: skip
    assert refused.status_code == 422 and refused.headers[FORM_ERROR] == "1"
    assert "100 % overlap" in refused.text
    no_exclude = client.post(
        "/traffic/dataset", data={"name": "t2", "type": "training"}, headers=headers
    )
    assert no_exclude.status_code == 422 and "must exclude an eval dataset" in no_exclude.text
    missing_n = client.post(
        "/traffic/dataset", data={"name": "t3", "take": "sample"}, headers=headers
    )
    assert missing_n.status_code == 422 and "number of rows" in missing_n.text
    assert sorted(d.name for d in list_datasets(store)) == ["tr", "up"]


# --- rubrics --------------------------------------------------------------------------------


TEMPLATE_V2 = """Judge the answer to this conversation.
{{ conversation_context }}
Expected: {{ conversation_response }}
Customer tier: {{ metadata.tier }} / {{ metadata["region"] }}
{{ eval_model_response }}
Score from {{ score_min }} to {{ score_max }}."""


def test_rubric_list_and_editor_page(client: TestClient, store: Store) -> None:
    seed_rubric(store)
    edit_rubric(store, "right", text=TEMPLATE_V2, score_min=0, score_max=5)
    listing = text_of(client.get("/rubrics").text)
    assert "right" in listing and "v2" in listing and "0-5" in listing
    assert "correctness" in listing  # the built-in templates

    response = client.get("/rubrics/right")
    page = text_of(response.text)
    assert response.status_code == 200
    assert "Customer tier: {{ metadata.tier }}" in page.replace("&#34;", '"')
    assert "metadata tier" in page and "metadata region" in page  # keys the template reads
    assert "Save as version 3" in page and "range 1-10 -&gt; 0-5" in response.text
    assert response.text.count('class="used"') == 6  # every variable is used by v2
    assert 'hx-post="/rubrics/right/versions"' in response.text
    assert "Quick test" in page and "import a dataset" in page  # nothing to test on yet


def test_rubric_diff_between_two_versions(client: TestClient, store: Store) -> None:
    seed_rubric(store)
    v1 = list_versions(store, "right")[0].template
    edit_rubric(store, "right", text=TEMPLATE_V2)
    edit_rubric(store, "right", score_max=7)
    fragment = client.get("/rubrics/right/diff", params={"a": 1, "b": 2})
    assert fragment.status_code == 200
    added = re.findall(r'<tr class="diff-add">.*?</tr>', fragment.text, re.S)
    removed = re.findall(r'<tr class="diff-del">.*?</tr>', fragment.text, re.S)
    assert any("Customer tier" in row for row in added)
    assert len(removed) == len(v1.splitlines()) - sum(
        line in TEMPLATE_V2.splitlines() for line in v1.splitlines()
    )
    assert 'class="data diff-table"' in fragment.text

    range_only = text_of(client.get("/rubrics/right/diff", params={"a": 2, "b": 3}).text)
    assert "identical" in range_only and "score range 1-10 → 1-7" in range_only
    full = client.get("/rubrics/right", params={"a": 1, "b": 3})
    assert "diff-add" in full.text  # the same diff on the page, without scripts
    missing = client.get("/rubrics/right/diff", params={"a": 1, "b": 9})
    assert missing.status_code == 422 and "has no version 9" in missing.text


def test_template_diff_and_metadata_keys() -> None:
    old = "\n".join(f"line {i}" for i in range(20))
    new = old.replace("line 10", "line ten")
    lines = template_diff(old, new, context=2)
    assert [(x.kind, x.old, x.new) for x in lines] == [
        ("gap", None, None), ("same", 9, 9), ("same", 10, 10), ("del", 11, None),
        ("add", None, 11), ("same", 12, 12), ("same", 13, 13), ("gap", None, None),
    ]  # fmt: skip
    assert template_diff(old, old) == []
    appended = template_diff(old, old + "\nline 20", context=1)
    assert [(x.kind, x.old, x.new) for x in appended] == [
        ("gap", None, None), ("same", 20, 20), ("add", None, 21),
    ]  # fmt: skip
    first = template_diff(old, "line zero\n" + old.split("\n", 1)[1], context=1)
    assert [x.kind for x in first] == ["del", "add", "same", "gap"]
    assert metadata_keys("{{ metadata.a }}{{ metadata['b c'] }}{{ other.x }}{% if") == []
    assert metadata_keys("{{ metadata.a }}{{ metadata['b c'] }}{{ other.x }}") == ["a", "b c"]


def test_save_as_new_version_and_refuse_a_bad_template(client: TestClient, store: Store) -> None:
    seed_rubric(store)
    headers = csrf(client)
    saved = client.post(
        "/rubrics/right/versions",
        data={"template": TEMPLATE_V2.replace("\n", "\r\n"), "score_min": "1", "score_max": "10"},
        headers=headers,
    )
    assert saved.status_code == 200 and saved.headers["hx-redirect"] == "/rubrics/right?saved=2"
    assert list_versions(store, "right")[-1].template == TEMPLATE_V2  # LF, as written
    assert "Saved as version 2" in text_of(client.get("/rubrics/right?saved=2").text)

    bad = client.post(
        "/rubrics/right/versions",
        data={"template": "Rate {{ eval_model_respons }}", "score_min": "1", "score_max": "10"},
        headers=headers,
    )
    assert bad.status_code == 422 and bad.headers[FORM_ERROR] == "1"
    assert "unknown template variable" in bad.text and "did you mean" in bad.text
    same = client.post(
        "/rubrics/right/versions",
        data={"template": TEMPLATE_V2, "score_min": "1", "score_max": "10"},
        headers=headers,
    )
    assert same.status_code == 422 and "nothing changed" in same.text
    # htmx swaps only 2xx answers: its requests get the same refusal with 200, marked.
    htmx = client.post(
        "/rubrics/right/versions",
        data={"template": TEMPLATE_V2, "score_min": "1", "score_max": "10"},
        headers={**headers, "HX-Request": "true"},
    )
    assert htmx.status_code == 200 and htmx.headers[FORM_ERROR] == "1"
    assert "nothing changed" in htmx.text and "hx-redirect" not in htmx.headers
    assert rubric_counts(store) == (1, 2)


def test_judge_prompt_for_a_row(client: TestClient, store: Store, tmp_path: Path) -> None:
    import_dataset(store, write_rows(tmp_path / "rows.jsonl", 4), "mult")
    seed_rubric(store)
    prompt = client.get("/rubrics/right/prompt", params={"dataset": "mult", "row": "2"})
    text = text_of(prompt.text)
    assert prompt.status_code == 200
    assert (
        "What is 2 times 3?" in text
        and "&lt;&lt;&lt;RESPONSE_UNDER_TEST&gt;&gt;&gt;" in prompt.text
    )
    assert "System message" in text
    missing = client.get("/rubrics/right/prompt", params={"dataset": "mult", "row": "9"})
    assert missing.status_code == 404 and "has no row at position 9" in missing.text


def test_quick_test_runs_model_and_judge(
    client: TestClient, store: Store, tmp_path: Path, fake_llm: Any
) -> None:
    import_dataset(store, write_rows(tmp_path / "rows.jsonl", 4), "mult")
    seed_rubric(store)
    seed_models(store, fake_llm.base_url)
    page = client.get("/rubrics/right").text
    assert 'id="quicktest-form"' in page and '<option value="gen">gen</option>' in page
    headers = csrf(client)

    response = client.post(
        "/rubrics/right/quicktest",
        data={"dataset": "mult", "row": "1", "version": "1", "model": "gen", "judge": "judge"},
        headers=headers,
    )
    assert response.status_code == 200, response.text
    text = text_of(response.text)
    assert re.search(r"\d+(\.\d)? / 10", text)  # the score in the rubric's range
    assert "scored" in text and "Judge reasoning" in text and "Model output" in text
    assert "Exact judge prompt" in text and "What is 1 times 3?" in text
    judged = fake_llm.requests("judge")[0]["body"]["messages"][-1]["content"]
    assert "What is 1 times 3?" in judged
    assert fake_llm.stats("gen")["ok"] == 1 and fake_llm.stats("judge")["ok"] == 1

    fake_llm.configure("judge", judge_mode="unparseable")
    reference = client.post(
        "/rubrics/right/quicktest",
        data={"dataset": "mult", "row": "0", "model": "@reference", "judge": "judge"},
        headers=headers,
    )
    text = text_of(reference.text)
    assert reference.status_code == 200
    assert "judge_unparseable" in text and "could not be parsed" in text and "no score" in text
    assert fake_llm.stats("gen")["ok"] == 1  # the reference needs no generation

    refused = client.post(
        "/rubrics/right/quicktest",
        data={"dataset": "mult", "row": "99", "model": "gen", "judge": "judge"},
        headers=headers,
    )
    assert refused.status_code == 422 and "has no row 99" in refused.text
    unknown = client.post(
        "/rubrics/right/quicktest",
        data={"dataset": "mult", "row": "0", "model": "gen", "judge": "nobody"},
        headers=headers,
    )
    assert unknown.status_code == 404 and "no model named 'nobody'" in unknown.text.replace(
        "&#39;", "'"
    )


def test_user_data_is_escaped(client: TestClient, store: Store, tmp_path: Path) -> None:
    evil = "<script>alert(1)</script>"
    messages = [{"role": "user", "content": evil}, {"role": "assistant", "content": evil}]
    rows = [{"messages": messages, "metadata": {"k": evil}}]
    import_dataset(store, write(tmp_path / "x.jsonl", rows), "evil")
    page = client.get("/datasets/evil").text
    assert evil not in page and "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    assert json.dumps(evil) not in page


def test_rubric_checks_are_shown_when_a_version_has_them(client: TestClient, store: Store) -> None:
    seed_rubric(store)
    assert "Deterministic checks" not in client.get("/rubrics/right").text
    with store.session() as session:
        version = session.scalar(select(RubricVersion))
        version.checks = [{"type": "regex", "name": "no-disclaimer", "must_not_match": "as an AI"}]
    text = text_of(client.get("/rubrics/right").text)
    assert "Deterministic checks no-disclaimer regex" in text and "must_not_match" in text


def test_quick_test_result_shows_check_results_when_rows_carry_them() -> None:
    """The result template reads check results generically (whatever type carries them)."""
    row = SimpleNamespace(
        row=0, prompt=None, output=None, output_source="gen", status="scored", score=4.0,
        judge_score=8.0, judge_called=True, reasoning="Fine.", raw_output=None, error=None,
        warnings=[], checks=[
            SimpleNamespace(name="json", type="json_valid", passed=True, detail=None),
            SimpleNamespace(name="short", type="max_length", passed=False, detail="812 > 500"),
        ],
    )  # fmt: skip
    report = SimpleNamespace(
        rubric="right", rubric_version=2, score_min=1, score_max=10, judge="judge",
        combine="weighted: checks 50 %", warnings=[],
    )  # fmt: skip
    html = templates.get_template("_rubric_quicktest.html").render(
        report=report, results=[{"row": row, "output": None, "percent": 33.3}]
    )
    text = text_of(html)
    assert "Deterministic checks 1 of 2 passed" in text
    assert "pass json json_valid" in text and "fail short max_length 812 &gt; 500" in text
    assert "The judge's own score was 8.0; the checks changed it (weighted: checks 50 %)" in text
