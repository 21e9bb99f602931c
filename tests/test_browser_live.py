"""A run group watched live in the browser: the page polls while a background worker runs it,
shows progress, and reloads once into the final state when the worker finishes."""

from __future__ import annotations

import contextlib
import os
import signal
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from assay.engine.background import live_worker, start_worker
from assay.engine.groups import create_group, get_group
from assay.store import Store
from assay.store.lookup import run_group_by_id
from support.browser import *  # noqa: F403
from support.browser import screenshot
from tests_helpers import write_rows

pytestmark = pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)


@pytest.fixture
def running(cli: Any, fake_llm: Any, tmp_path: Path, store: Store) -> Iterator[int]:
    """A 12-row group started in a background worker against a slow fake model."""
    data = write_rows(tmp_path / "rows.jsonl", 12)
    assert cli("dataset", "import", str(data), "--name", "mult").exit_code == 0
    assert cli("rubric", "create", "right", "--template", "correctness").exit_code == 0
    for name in ("base", "cand", "judge"):
        added = cli("model", "add", name, "--base-url", fake_llm.base_url, "--model-id", name)
        assert added.exit_code == 0, added.stderr
    created = cli(
        "eval", "create", "e1", "--dataset", "mult", "--rubric", "right", "--judge", "judge",
        "--baseline", "base", "--candidate", "cand",
    )  # fmt: skip
    assert created.exit_code == 0, created.stderr
    fake_llm.configure("*", latency_ms=300)
    group = create_group(store, "e1")
    start_worker(store, group.id, max_concurrency=2)
    try:
        yield group.id
    finally:
        with store.session() as session:
            worker = live_worker(run_group_by_id(session, group.id))
        if worker:
            with contextlib.suppress(ProcessLookupError):
                os.kill(int(worker.rpartition(":")[2]), signal.SIGKILL)


def test_live_progress_then_final_state(
    running: int, store: Store, live_app: Any, page: Any
) -> None:
    page.goto(f"{live_app.url}/groups/{running}")
    page.wait_for_selector("#live[hx-trigger]")  # polling while the worker runs
    assert "updating live" in page.locator(".progress-card").inner_text()
    first = page.locator("progress").get_attribute("value")
    page.wait_for_function(
        f"() => Number(document.querySelector('progress')?.value) > {first or 0}",
        timeout=60_000,
    )
    page.wait_for_function(  # the chart is drawn again in every refreshed fragment
        "() => Chart.getChart(document.getElementById('distribution-chart'))"
    )
    screenshot(page, "group-live")
    # When the worker is done the page reloads itself once: final status, no polling.
    page.wait_for_function(
        "() => document.querySelector('#group-status').innerText === 'completed'",
        timeout=90_000,
    )
    assert page.locator("#live[hx-trigger]").count() == 0
    page.wait_for_selector("#overall-verdict")
    assert get_group(store, running).status == "completed"
