"""The run group workflow in a real browser (Debian's Chromium through Playwright): open a
group, see the chart and counts, filter to failures, open a row, compare outputs, read the
judge prompt; and prove a hostile model output is displayed, never executed.

Screenshots land in build/screenshots/ (``ASSAY_SCREENSHOTS``) for a person to look at.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from assay.engine.results import group_summary, rows_page
from assay.store import Store
from support.browser import *  # noqa: F403
from support.browser import screenshot
from support.groups import HOSTILE, build_group

pytestmark = pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)


@pytest.fixture
def group(cli: Any, fake_llm: Any, tmp_path: Path) -> None:
    build_group(cli, fake_llm, tmp_path)


@pytest.fixture
def small_group(cli: Any, fake_llm: Any, tmp_path: Path) -> None:
    build_group(cli, fake_llm, tmp_path, rows=4, failures=False)


def test_group_workflow(group: None, store: Store, live_app: Any, page: Any) -> None:
    summary = group_summary(store, 1)

    page.goto(f"{live_app.url}/groups/1")
    page.wait_for_function(
        "() => window.Chart && Chart.getChart(document.getElementById('distribution-chart'))"
    )
    drawn = page.evaluate(
        "() => Chart.getChart(document.getElementById('distribution-chart')).data.datasets"
        ".map(d => d.label)"
    )
    assert drawn == [f"{r.model} ({r.role})" for r in summary.runs]
    for run in summary.runs:
        card = page.locator(f'.model-card[data-model="{run.model}"]')
        assert card.locator(".scored-count").inner_text() == f"{run.scored:,} / {run.total:,}"
    page.wait_for_selector("#overall-verdict")
    screenshot(page, "group")

    # Filter to failures: the table updates in place and the URL follows.
    failed = rows_page(store, 1, status="failed", limit=500)
    page.select_option('select[name="status"]', "failed")
    page.wait_for_function(
        f"() => document.querySelector('#rows-count').innerText.includes('of {failed.total} ')"
    )
    assert "status=failed" in page.url
    badges = page.locator("#rows .rows-table tbody .badge").all_inner_texts()
    assert badges and not any(b == "scored" for b in badges)
    screenshot(page, "group-failures")

    # Open a row scored for every arm: outputs side by side, reasoning, the judge prompt.
    scored = rows_page(store, 1, model="cand", status="scored").items[0]
    page.goto(f"{live_app.url}/groups/1?model=cand&status=scored")
    page.locator(f'.rows-table a[href="/groups/1/rows/{scored.row}"]').first.click()
    page.wait_for_url(f"**/groups/1/rows/{scored.row}")
    cards = page.locator(".output-card")
    assert cards.count() == 3
    assert page.locator('.output-card[data-model="captured"] .badge.baseline').count() == 1
    assert page.locator(".reasoning").count() >= 1
    page.locator('.output-card[data-model="cand"] button', has_text="judge prompt").click()
    page.wait_for_selector('.output-card[data-model="cand"] .judge-prompt')
    prompt = page.locator('.output-card[data-model="cand"] .judge-prompt').inner_text()
    assert "RESPONSE_UNDER_TEST" in prompt
    screenshot(page, "row")


def test_hostile_output_is_shown_not_run(
    small_group: None, store: Store, live_app: Any, page: Any
) -> None:
    row = rows_page(store, 1, model="evil").items[0].row
    for path in ("/groups/1", f"/groups/1/rows/{row}", "/groups/1?model=evil"):
        page.goto(f"{live_app.url}{path}")
        page.wait_for_load_state("networkidle")
        assert page.evaluate("() => window.__pwned") is None
        assert page.locator("img[src='x']").count() == 0
    # The payload is on screen as text: in the request, the captured answer and evil's output.
    page.goto(f"{live_app.url}/groups/1/rows/{row}")
    page.locator('.output-card[data-model="evil"] button', has_text="judge prompt").click()
    page.wait_for_selector('.output-card[data-model="evil"] .judge-prompt')
    assert page.evaluate("() => window.__pwned") is None
    shown = page.locator("main").inner_text()
    assert shown.count(HOSTILE) >= 3
    screenshot(page, "row-hostile")
