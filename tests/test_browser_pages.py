"""The evals, rubrics, datasets, traffic and models pages in a real browser (Chromium through
Playwright, the app served by uvicorn): htmx forms, the CSP (any console error fails the
test), and screenshots under build/screenshots to look at."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import expect

from assay.datasets import import_dataset
from assay.engine.definitions import create_eval
from assay.engine.groups import create_group
from assay.providers import add_model
from assay.rubrics import create_rubric, edit_rubric, list_versions
from assay.store import Store
from assay.store.models import Run, Verdict
from assay.traffic import import_traffic
from support.browser import *  # noqa: F403
from support.browser import screenshot
from support.fixtures import *  # noqa: F403
from tests_helpers import write

T0 = datetime(2026, 1, 1, tzinfo=UTC)


@pytest.fixture
def database_url(tmp_path: Path) -> str:
    """SQLite only: the pages' SQL is covered on both backends by test_web_pages.py."""
    return f"sqlite:///{tmp_path / 'assay.db'}"


def chat_rows(n: int) -> list[dict[str, Any]]:
    """Support conversations, some with a tool call, with metadata."""
    rows = []
    for i in range(n):
        messages: list[dict[str, Any]] = [
            {"role": "system", "content": "You are the support assistant of Acme. Be brief."},
            {"role": "user", "content": f"My order #{1000 + i} has not arrived. Where is it?"},
        ]
        if i % 3 == 0:
            messages += [
                {"role": "assistant", "content": None, "tool_calls": [{
                    "id": f"call_{i}", "type": "function",
                    "function": {"name": "track_order", "arguments": f'{{"order": {1000 + i}}}'},
                }]},
                {"role": "tool", "tool_call_id": f"call_{i}",
                 "content": '{"status": "in transit"}'},
            ]  # fmt: skip
        messages.append(
            {
                "role": "assistant",
                "content": f"Order #{1000 + i} is in transit; it arrives tomorrow.",
            }
        )
        rows.append(
            {"messages": messages, "metadata": {"tier": "gold" if i % 2 else "free", "lang": "en"}}
        )
    return rows


def traffic_lines(n: int) -> list[dict[str, Any]]:
    lines = []
    for i in range(n):
        ok = i % 9 != 4
        lines.append({
            "request": {"model": "gpt-a" if i % 4 else "gpt-b", "temperature": 0.2, "messages": [
                {"role": "system", "content": "Be brief."},
                {"role": "user", "content": f"How do I reset my password? (case {i})"},
            ]},
            "response": {"object": "chat.completion", "model": "gpt-a", "choices": [{"message": {
                "role": "assistant", "content": f"Open Settings → Security → Reset (case {i})."}}],
                "usage": {"prompt_tokens": 40 + i, "completion_tokens": 12}} if ok else None,
            "error": None if ok else "rate limited",
            "status_code": 200 if ok else 429,
            "started_at": (T0 + timedelta(minutes=7 * i)).isoformat(),
            "environment": "prod" if i % 3 else "staging",
            "task": "support" if i % 5 else "billing",
            "duration_ms": 300.0 + 37 * i,
            "cost_usd": 0.0004 * (i + 1),
            "metadata": {"customer": f"c{i % 4}", "app": "web"},
        })  # fmt: skip
    return lines


TEMPLATE_V2 = """You grade a customer-support answer for Acme.

Conversation:
{{ conversation_context }}

Reference answer (what the team sent):
{{ conversation_response }}

Customer tier: {{ metadata.tier }}

Answer to grade:
{{ eval_model_response }}

Score from {{ score_min }} (useless) to {{ score_max }} (perfect):
is it correct, complete and polite?"""


def seed(store: Store, tmp_path: Path, base_url: str) -> None:
    import_dataset(store, write(tmp_path / "support.jsonl", chat_rows(45)), "support-eval")
    create_rubric(store, "support-quality", template="correctness")
    edit_rubric(store, "support-quality", text=TEMPLATE_V2)
    for name in ("gpt-small", "gpt-new", "judge"):
        add_model(store, name, base_url=base_url, model_id=name, price_input_per_mtok=0.15,
                  price_output_per_mtok=0.6, api_key_env=None)  # fmt: skip
    import_traffic(store, write(tmp_path / "traffic.jsonl", traffic_lines(60)))


def test_evals_and_models_pages(page: Any, live_app: Any, store: Store, tmp_path: Path,
                                fake_llm: Any) -> None:  # fmt: skip
    seed(store, tmp_path, fake_llm.base_url)
    common = {"dataset": "support-eval", "rubric": "support-quality", "judge": "judge"}
    create_eval(store, "support-nightly", **common, baseline="gpt-small", candidates=["gpt-new"],
                sample_size=40)  # fmt: skip
    create_eval(store, "support-weekly", **common, baseline="gpt-new", candidates=["gpt-small"])
    group = create_group(store, "support-nightly")
    with store.session() as session:
        run = session.query(Run).filter_by(group_id=group.id, role="candidate").one()
        session.add(Verdict(group_id=group.id, run_id=run.id, policy={}, decision="INCONCLUSIVE",
                            reasons=["rerun with 120 rows"], evidence={}))  # fmt: skip

    page.goto(f"{live_app.url}/evals")
    expect(page.locator("table.data")).to_contain_text("support-nightly")
    expect(page.locator("table.data")).to_contain_text("INCONCLUSIVE")
    expect(page.locator("table.data")).to_contain_text("never run")
    screenshot(page, "evals")
    page.click(f"text=#{group.id}")
    expect(page).to_have_url(f"{live_app.url}/groups/{group.id}")

    page.goto(f"{live_app.url}/models")
    expect(page.locator("table.data")).to_contain_text("gpt-small")
    screenshot(page, "models")


def test_empty_pages(page: Any, live_app: Any) -> None:
    for name in ("evals", "rubrics", "datasets", "traffic", "models"):
        page.goto(f"{live_app.url}/{name}")
        expect(page.locator("main")).to_contain_text("assay")
        screenshot(page, f"empty-{name}")


def test_datasets_rows_and_import(page: Any, live_app: Any, store: Store, tmp_path: Path) -> None:
    import_dataset(store, write(tmp_path / "support.jsonl", chat_rows(45)), "support-eval")
    page.goto(f"{live_app.url}/datasets")
    screenshot(page, "datasets")
    page.click("text=support-eval")
    expect(page.locator("h1")).to_contain_text("support-eval")
    expect(page.locator(".pager").first).to_contain_text("Rows 1\u201320 of 45")
    first = page.locator("details.row-card").first
    expect(first.locator(".msg.tool")).to_contain_text("in transit")
    expect(first.locator(".msg-call")).to_contain_text("track_order")
    page.locator("details.row-card summary").nth(1).click()  # open the second row
    expect(page.locator("details.row-card").nth(1).locator(".msg.user")).to_be_visible()
    screenshot(page, "dataset-rows")
    page.locator("a[rel=next]").first.click()
    expect(page.locator(".pager").first).to_contain_text("Rows 21\u201340 of 45")
    expect(page.locator("details.row-card").first).to_contain_text("#1020")

    page.goto(f"{live_app.url}/datasets")
    bad = write(tmp_path / "broken.jsonl", [chat_rows(1)[0], b"{oops", {"messages": []}])
    page.set_input_files("input[type=file]", str(bad))
    page.fill("input[name=name]", "imported")
    page.click("button:has-text('Import')")
    result = page.locator("#import-result")
    expect(result).to_contain_text("Imported 1 row into eval dataset")
    expect(result).to_contain_text("not valid JSON")
    expect(page.locator("#datasets-table")).to_contain_text("imported")
    screenshot(page, "dataset-import")

    allbad = write(tmp_path / "allbad.jsonl", [b"{oops", b"[1]"])
    page.set_input_files("input[type=file]", str(allbad))
    page.fill("input[name=name]", "never")
    page.click("button:has-text('Import')")
    expect(result).to_contain_text("no valid rows in allbad.jsonl")
    expect(result).to_contain_text("line 2:")
    screenshot(page, "dataset-import-refused")


def test_rubric_editor_diff_and_quick_test(
    page: Any, live_app: Any, store: Store, tmp_path: Path, fake_llm: Any
) -> None:
    seed(store, tmp_path, fake_llm.base_url)
    page.goto(f"{live_app.url}/rubrics")
    screenshot(page, "rubrics")
    page.click("text=support-quality")
    expect(page.locator("h1")).to_contain_text("support-quality")
    expect(page.locator("#qt-prompt")).to_contain_text("My order #1000")  # rendered on load
    screenshot(page, "rubric")

    editor = page.locator("textarea[name=template]")
    editor.fill("Rate {{ eval_model_respons }}")
    page.click("button:has-text('Save as version 3')")
    expect(page.locator("#save-result")).to_contain_text("unknown template variable")
    assert len(list_versions(store, "support-quality")) == 2
    editor.fill(TEMPLATE_V2.replace("correct, complete and polite", "correct and complete"))
    page.click("button:has-text('Save as version 3')")
    expect(page.locator(".notice.good")).to_contain_text("Saved as version 3")

    page.select_option("#diff-a", "2")
    page.select_option("#diff-b", "3")
    page.click("button:has-text('Show diff')")
    expect(page.locator("#diff .diff-add")).to_contain_text("correct and complete")
    expect(page.locator("#diff .diff-del")).to_contain_text("correct, complete and polite")
    page.select_option("#diff-a", "1")
    page.click("button:has-text('Show diff')")
    expect(page.locator("#diff .diff-head")).to_contain_text("v1 → v3")
    page.locator("#diff").scroll_into_view_if_needed()
    screenshot(page, "rubric-diff")

    page.fill("#qt-row", "3")
    page.locator("#qt-row").dispatch_event("change")
    expect(page.locator("#qt-prompt")).to_contain_text("My order #1003")
    page.select_option("#qt-model", "gpt-new")
    page.select_option("#qt-judge", "judge")
    page.click("#qt-run")
    result = page.locator("#qt-result")
    expect(result.locator(".score-value")).to_be_visible()
    expect(result).to_contain_text("Judge reasoning")
    expect(result).to_contain_text("scored")
    expect(result.locator(".msg")).to_be_visible()  # the model's output
    result.locator("summary:has-text('Exact judge prompt')").click()
    expect(result).to_contain_text("Customer tier: gold")
    page.locator("#quick-test").scroll_into_view_if_needed()
    screenshot(page, "rubric-quicktest")
    assert fake_llm.stats("gpt-new")["ok"] == 1 and fake_llm.stats("judge")["ok"] == 1


def test_traffic_filter_detail_and_save_as_dataset(
    page: Any, live_app: Any, store: Store, tmp_path: Path
) -> None:
    import_traffic(store, write(tmp_path / "traffic.jsonl", traffic_lines(60)))
    page.goto(f"{live_app.url}/traffic")
    expect(page.locator(".stats-table")).to_contain_text("billing")
    screenshot(page, "traffic")

    page.fill("input[name=environment]", "prod")
    page.fill("input[name=task]", "support")
    page.click("button:has-text('Filter')")
    expect(page).to_have_url(f"{live_app.url}/traffic?environment=prod&task=support")
    expect(page.locator("h2").first).to_contain_text("matching the filter")
    screenshot(page, "traffic-filtered")

    page.locator("#inferences a").first.click()
    expect(page.locator("h1")).to_contain_text("Inference #")
    expect(page.locator(".msg.user")).to_contain_text("How do I reset my password?")
    expect(page.locator(".msg.assistant")).to_contain_text("Open Settings")
    screenshot(page, "inference")
    page.go_back()

    form = page.locator("#save-dataset form")
    form.locator("input[name=name]").fill("pw-eval")
    form.locator("select[name=take]").select_option("sample")
    form.locator("input[name=count]").fill("10")
    form.locator("button[type=submit]").click()
    expect(page.locator("#save-result")).to_contain_text(
        "Created eval dataset pw-eval with 10 rows"
    )

    page.reload()
    form.locator("input[name=name]").fill("pw-train")
    form.locator("select[name=type]").select_option("training")
    form.locator("select[name=exclude]").select_option("pw-eval")
    form.locator("button[type=submit]").click()
    expect(page.locator("#save-result")).to_contain_text("Created training dataset pw-train")
    expect(page.locator("#save-result")).to_contain_text("Removed: already in pw-eval")
    expect(page.locator("#save-result .notice.warn")).to_contain_text("too narrow")
    page.locator("#save-dataset").scroll_into_view_if_needed()
    screenshot(page, "traffic-save-dataset")

    form.locator("input[name=name]").fill("pw-train")
    form.locator("button[type=submit]").click()
    expect(page.locator("#save-result")).to_contain_text("already exists")

    page.goto(f"{live_app.url}/datasets/pw-train")
    expect(page.locator("main")).to_contain_text("Built from traffic")
    screenshot(page, "dataset-from-traffic")
