"""`assay rubric test`: one conversation through the model and the judge, with warnings."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from tests_helpers import write_rows


@pytest.fixture
def ready(cli: Any, fake_llm: Any, tmp_path: Path) -> Any:
    data = write_rows(tmp_path / "rows.jsonl", 6)
    assert cli("dataset", "import", str(data), "--name", "mult").exit_code == 0
    assert cli("rubric", "create", "right", "--template", "correctness").exit_code == 0
    for name in ("gen", "judge"):
        assert (
            cli("model", "add", name, "--base-url", fake_llm.base_url, "--model-id", name).exit_code
            == 0
        )
    return cli


def test_quick_test_prints_prompt_output_score_reasoning(ready: Any, fake_llm: Any) -> None:
    result = ready(
        "rubric",
        "test",
        "right",
        "--dataset",
        "mult",
        "--model",
        "gen",
        "--judge",
        "judge",
        "--row",
        "2",
    )
    assert result.exit_code == 0, result.stderr
    assert "===== row 2 (gen) =====" in result.stdout
    assert "<<<RESPONSE_UNDER_TEST>>>" in result.stdout
    assert "What is 2 times 3?" in result.stdout
    assert "--- score: " in result.stdout and "--- reasoning: " in result.stdout
    assert fake_llm.stats("gen")["ok"] == 1 and fake_llm.stats("judge")["ok"] == 1


def test_quick_test_reference_and_json(ready: Any, fake_llm: Any) -> None:
    result = ready(
        "rubric",
        "test",
        "right",
        "--dataset",
        "mult",
        "--reference",
        "--judge",
        "judge",
        "--rows",
        "3",
        "--json",
    )
    assert result.exit_code == 0, result.stderr
    report = json.loads(result.stdout)
    assert [r["row"] for r in report["rows"]] == [0, 1, 2]
    assert all(
        r["output_source"] == "reference" and r["status"] == "scored" for r in report["rows"]
    )
    assert fake_llm.stats("gen")["ok"] == 0


def test_quick_test_warns_on_unparseable_and_edge_scores(ready: Any, fake_llm: Any) -> None:
    fake_llm.configure("judge", judge_mode="unparseable")
    result = ready(
        "rubric", "test", "right", "--dataset", "mult", "--reference", "--judge", "judge"
    )
    assert result.exit_code == 0
    assert "could not be parsed" in result.stderr
    assert "judge_unparseable" in result.stdout


def test_quick_test_bad_input(ready: Any) -> None:
    neither = ready("rubric", "test", "right", "--dataset", "mult", "--judge", "judge")
    assert neither.exit_code == 1 and "--reference" in neither.stderr
    missing = ready(
        "rubric",
        "test",
        "right",
        "--dataset",
        "mult",
        "--judge",
        "judge",
        "--reference",
        "--row",
        "99",
    )
    assert missing.exit_code == 1 and "has no row 99" in missing.stderr
    too_many = ready(
        "rubric",
        "test",
        "right",
        "--dataset",
        "mult",
        "--judge",
        "judge",
        "--reference",
        "--rows",
        "21",
    )
    assert too_many.exit_code == 1 and "at most 20 rows" in too_many.stderr
