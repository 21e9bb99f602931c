"""Trusting the judge and closing the loop, in a real browser (Chromium through Playwright,
the app served by uvicorn): a pairwise group's win rates and verdict, a deployment alias
promoted on that verdict, and a rubric's calibration against human labels. Any console error
fails the test; screenshots land in build/screenshots."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import expect

from assay.labels import import_labels
from assay.providers import add_model
from assay.rubrics import create_rubric
from assay.rubrics.calibrate import calibrate
from assay.store import Store
from support.browser import *  # noqa: F403
from support.browser import screenshot
from support.fixtures import *  # noqa: F403
from support.labeljudge import LabelJudge
from support.pairjudge import PairJudgeServer
from tests_helpers import add_dataset, write, write_rows


@pytest.fixture
def database_url(tmp_path: Path) -> str:
    """SQLite only: the pages' SQL is covered on both backends by their ASGI tests."""
    return f"sqlite:///{tmp_path / 'assay.db'}"


@pytest.fixture
def promoted(cli: Any, fake_llm: Any, tmp_path: Path) -> Iterator[None]:
    """A pairwise group whose judge prefers the candidate on all 6 rows, gated PASS, and the
    alias ``prod-chat`` promoted from ``base`` to ``cand`` on that verdict."""
    judge = PairJudgeServer()
    try:
        data = write_rows(tmp_path / "rows.jsonl", 8)
        policy = tmp_path / "policy.yaml"
        policy.write_text("default:\n  min_paired_rows: 5\n")
        steps = [
            ("dataset", "import", str(data), "--name", "mult"),
            ("rubric", "create", "pref", "--kind", "pairwise"),
            ("model", "add", "base", "--base-url", fake_llm.base_url, "--model-id", "base"),
            ("model", "add", "cand", "--base-url", fake_llm.base_url, "--model-id", "cand"),
            ("model", "add", "judge-cand", "--base-url", judge.base_url,
             "--model-id", "judge-cand"),
            ("eval", "create", "e1", "--dataset", "mult", "--rubric", "pref", "--judge",
             "judge-cand", "--baseline", "base", "--candidate", "cand", "--sample-size", "6"),
            ("run", "start", "e1"),
            ("gate", "1", "--policy", str(policy)),
            ("alias", "set", "prod-chat", "base", "--actor", "ana"),
            ("promote", "1", "--candidate", "cand", "--alias", "prod-chat", "--actor", "ana"),
        ]  # fmt: skip
        for step in steps:
            result = cli(*step)
            assert result.exit_code == 0, (step, result.stdout, result.stderr)
        yield
    finally:
        judge.close()


@pytest.fixture
def calibrated(store: Store, tmp_path: Path) -> Iterator[None]:
    """Rubric ``fit`` (1-3) calibrated by the ``oracle`` judge on 12 human scores."""
    judge = LabelJudge()
    try:
        add_dataset(store, "qa", [{"messages": [{"role": "user", "content": f"Q{i}?"}]}
                                  for i in range(12)])  # fmt: skip
        lines = []
        for i in range(12):
            text, score = f"Answer number {i}.", 1 + i % 3
            judge.scores[text] = score
            lines.append({"row": i, "score": score, "output": text})
        import_labels(store, write(tmp_path / "human.jsonl", lines), "qa")
        template = "Rate the answer.\n{{ conversation_context }}\n{{ eval_model_response }}\n"
        create_rubric(store, "fit", text=template, score_min=1, score_max=3)
        add_model(store, "oracle", base_url=judge.base_url, model_id="oracle")
        asyncio.run(calibrate(store, "fit", labels="human", judge="oracle", resamples=200))
        yield
    finally:
        judge.close()


def test_pairwise_group_then_the_promoted_alias(promoted: None, page: Any, live_app: Any) -> None:
    page.goto(f"{live_app.url}/groups/1")
    cards = page.locator("main")
    expect(cards).to_contain_text("win rate vs baseline")
    expect(cards).to_contain_text("6 / 0 / 0")
    expect(page.locator("canvas")).to_have_count(0)  # no score chart: there are no scores
    # The lazily loaded decision panel applies the default policy (30 paired rows): 6 rows
    # all won are not enough to decide, and it says how many would be.
    expect(page.locator("main")).to_contain_text("win rate 1.00")
    expect(page.locator("main")).to_contain_text("INCONCLUSIVE")
    screenshot(page, "pairwise-group")

    page.goto(f"{live_app.url}/models")
    aliases = page.locator("main")
    expect(aliases).to_contain_text("prod-chat")
    expect(aliases).to_contain_text("promote")
    expect(aliases).to_contain_text("ana")
    screenshot(page, "models-aliases")


def test_rubric_page_shows_its_calibration(calibrated: None, page: Any, live_app: Any) -> None:
    page.goto(f"{live_app.url}/rubrics/fit")
    section = page.locator("main")
    expect(section).to_contain_text("Calibration against human labels")
    expect(section).to_contain_text("oracle")
    expect(section).to_contain_text("human")
    expect(section).to_contain_text("1.000")  # the oracle agrees perfectly
    screenshot(page, "rubric-calibration")
