"""Deterministic checks in run groups, end to end: real HTTP to the fake LLM server, a real
store (SQLite and Postgres), the CLI runner. Check results are stored per row, the combine
mode decides the final score, gate and checks_only spare the judge, checks survive a failing
judge, and `run row`, `run show` and `rubric test` show them."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from assay.store import open_store
from assay.store.models import DatasetRow, Generation, Judgment, Run
from tests_helpers import write

# Captured outputs (the rows' references): two satisfy the schema, two do not.
REFERENCES = ['{"answer": 0}', '{"answer": 3}', "not json", '{"answer": "x"}']
SCHEMA_CHECKS = """\
checks:
  - type: json_schema
    schema:
      type: object
      required: [answer]
      properties: {answer: {type: integer}}
  - type: max_length
    max_chars: 1000
"""


def checks_file(tmp_path: Path, name: str, combine: str) -> str:
    path = tmp_path / name
    path.write_text(SCHEMA_CHECKS + f"combine: {combine}\n")
    return str(path)


@pytest.fixture
def setup(cli: Any, fake_llm: Any, tmp_path: Path) -> Any:
    """Rows whose captured outputs are JSON or not, a gate rubric, a candidate and a judge."""
    lines = [
        {
            "messages": [
                {"role": "user", "content": f"Answer {i} as JSON."},
                {"role": "assistant", "content": reference},
            ]
        }
        for i, reference in enumerate(REFERENCES)
    ]
    data = write(tmp_path / "rows.jsonl", lines)
    assert cli("dataset", "import", str(data), "--name", "answers").exit_code == 0
    gate = checks_file(tmp_path, "gate.yaml", "{mode: gate}")
    result = cli("rubric", "create", "r", "--template", "correctness", "--checks", gate)
    assert result.exit_code == 0, result.stderr
    for name in ("cand", "judge"):
        added = cli("model", "add", name, "--base-url", fake_llm.base_url, "--model-id", name)
        assert added.exit_code == 0, added.stderr
    result = cli(
        "eval", "create", "e", "--dataset", "answers", "--rubric", "r", "--judge", "judge",
        "--candidate", "cand", "--with-captured",
    )  # fmt: skip
    assert result.exit_code == 0, result.stderr
    return cli


def judgments(database_url: str, home: Path, group_id: int) -> dict[tuple[str, int], Judgment]:
    """The group's judgments by (arm label, row position); one judge sample each here."""
    with open_store(database_url, home=home) as store, store.session() as session:
        rows = session.execute(
            select(Run.label, DatasetRow.position, Judgment)
            .join(Generation, Generation.id == Judgment.generation_id)
            .join(Run, Run.id == Generation.run_id)
            .join(DatasetRow, DatasetRow.id == Generation.row_id)
            .where(Judgment.group_id == group_id)
        ).all()
        found = {}
        for label, position, judgment in rows:
            session.expunge(judgment)
            assert (label, position) not in found  # one judgment per (generation, sample)
            found[(label, position)] = judgment
        return found


def passed(judgment: Judgment) -> dict[str, bool]:
    assert judgment.checks is not None
    return {c["name"]: c["passed"] for c in judgment.checks}


def test_gate_stores_checks_per_row_and_skips_the_judge_on_failure(
    setup: Any, fake_llm: Any, database_url: str, assay_home: Path
) -> None:
    cli = setup
    result = cli("run", "start", "e")
    assert result.exit_code == 0, result.stderr
    assert "Warning" not in result.stderr  # these checks read no reference or metadata
    # Only the two captured outputs that pass every check reach the judge.
    assert fake_llm.stats("judge")["ok"] == 2
    found = judgments(database_url, assay_home, 1)
    assert len(found) == 8
    for position in (0, 1):
        j = found[("captured", position)]
        assert passed(j) == {"json_schema": True, "max_length": True}
        assert j.status == "scored" and j.raw_output is not None
        assert j.judge_score is not None and j.score == j.judge_score
    for key in [("captured", 2), ("captured", 3)] + [("cand", p) for p in range(4)]:
        j = found[key]
        assert passed(j) == {"json_schema": False, "max_length": True}, key
        assert (j.status, j.score, j.judge_score, j.raw_output) == ("scored", 1.0, None, None)
        assert j.reasoning == "1 of 2 checks passed; failed: json_schema; judge skipped (gate)"
    details = {c["name"]: c["detail"] for c in found[("captured", 3)].checks or []}
    assert details["json_schema"] == "schema violation at $.answer: 'x' is not of type 'integer'"

    shown = json.loads(cli("run", "show", "1", "--json").stdout)
    captured, cand = shown["runs"]
    assert captured["checks"] == [
        {"name": "json_schema", "type": "json_schema", "passed": 2, "total": 4},
        {"name": "max_length", "type": "max_length", "passed": 4, "total": 4},
    ]
    assert [(c["name"], c["passed"]) for c in cand["checks"]] == [
        ("json_schema", 0),
        ("max_length", 4),
    ]
    assert cand["scored"] == 4 and cand["mean_score"] == 1.0
    text = cli("run", "show", "1")
    assert text.exit_code == 0
    assert "Deterministic checks passed" in text.stdout
    assert "2/4 (50%)" in text.stdout and "0/4 (0%)" in text.stdout

    row = cli("run", "row", "1", "2")
    assert row.exit_code == 0
    assert "FAIL json_schema: not valid JSON: Expecting value at line 1 column 1" in row.stdout
    assert "PASS max_length" in row.stdout
    good = cli("run", "row", "1", "0")
    assert "PASS json_schema" in good.stdout and "(judge " in good.stdout
    detail = json.loads(cli("run", "row", "1", "0", "--json").stdout)
    arm = next(a for a in detail["arms"] if a["model"] == "captured")
    (judged,) = arm["judgments"]
    assert judged["judge_score"] == judged["score"]
    assert [c["passed"] for c in judged["checks"]] == [True, True]


def test_weighted_rejudge_combines_and_keeps_checks_when_the_judge_fails(
    setup: Any, fake_llm: Any, database_url: str, assay_home: Path, tmp_path: Path
) -> None:
    cli = setup
    assert cli("run", "start", "e").exit_code == 0
    weighted = checks_file(tmp_path, "weighted.yaml", "{mode: weighted, weight: 0.5}")
    assert cli("rubric", "edit", "r", "--checks", weighted).exit_code == 0
    result = cli("run", "rejudge", "1", "--rubric-version", "2")
    assert result.exit_code == 0, result.stderr
    # Weighted: the judge sees all 8 outputs (the 2 it judged under the gate come from the
    # response cache: same prompt, same judge).
    assert fake_llm.stats("judge")["ok"] == 2 + 6
    for key, j in judgments(database_url, assay_home, 2).items():
        fraction = sum(passed(j).values()) / 2
        assert j.status == "scored" and j.judge_score is not None, key
        expected = 0.5 * (1 + 9 * fraction) + 0.5 * j.judge_score
        assert j.score == pytest.approx(expected, abs=1e-4), key

    # A judge that answers garbage: no score, but the checks are still stored and counted.
    fake_llm.configure("judge", judge_mode="malformed")
    weighted_again = checks_file(tmp_path, "weighted2.yaml", "{mode: weighted, weight: 0.3}")
    assert cli("rubric", "edit", "r", "--checks", weighted_again).exit_code == 0
    # --no-cache: the prompts are those of version 2, whose good answers are cached.
    assert cli("run", "rejudge", "1", "--rubric-version", "3", "--no-cache").exit_code == 0
    for key, j in judgments(database_url, assay_home, 3).items():
        assert (j.status, j.score, j.judge_score) == ("judge_unparseable", None, None), key
        assert passed(j)["max_length"] is True
    shown = json.loads(cli("run", "show", "3", "--json").stdout)
    assert [r["judge_unparseable"] for r in shown["runs"]] == [4, 4]
    assert shown["runs"][0]["checks"][0] == {
        "name": "json_schema", "type": "json_schema", "passed": 2, "total": 4,
    }  # fmt: skip

    # Gate with the same broken judge: rows a check fails still score, without a judge call.
    calls_before = fake_llm.stats("judge")["attempts"]
    gate = checks_file(tmp_path, "gate2.yaml", "gate")
    assert cli("rubric", "edit", "r", "--checks", gate).exit_code == 0
    assert cli("run", "rejudge", "1", "--rubric-version", "4", "--no-cache").exit_code == 0
    found = judgments(database_url, assay_home, 4)
    statuses = {key: (j.status, j.score) for key, j in found.items()}
    assert statuses[("captured", 0)] == ("judge_unparseable", None)
    assert statuses[("captured", 2)] == ("scored", 1.0)
    assert all(statuses[("cand", p)] == ("scored", 1.0) for p in range(4))
    assert fake_llm.stats("judge")["attempts"] - calls_before == 2


def test_failed_generations_have_no_checks(
    setup: Any, fake_llm: Any, database_url: str, assay_home: Path
) -> None:
    cli = setup
    fake_llm.configure("cand", rate_500=1.0, retry_after="0")
    assert cli("run", "start", "e", "--max-attempts", "1").exit_code == 0
    found = judgments(database_url, assay_home, 1)
    assert {label for label, _ in found} == {"captured"}
    shown = json.loads(cli("run", "show", "1", "--json").stdout)
    cand = shown["runs"][1]
    assert cand["generation_failed"] == 4 and cand["checks"] == []


def test_quick_test_shows_checks_and_skips_the_judge_where_the_gate_fails(
    setup: Any, fake_llm: Any
) -> None:
    cli = setup
    result = cli(
        "rubric", "test", "r", "--dataset", "answers", "--reference", "--judge", "judge",
        "--rows", "4", "--json",
    )  # fmt: skip
    assert result.exit_code == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["combine"].startswith("gate:")
    by_row = {r["row"]: r for r in report["rows"]}
    for position in (0, 1):
        row = by_row[position]
        assert row["judge_called"] and row["prompt"] is not None
        assert row["score"] == row["judge_score"]
    for position in (2, 3):
        row = by_row[position]
        assert not row["judge_called"] and row["prompt"] is None
        assert (row["score"], row["judge_score"]) == (1.0, None)
        assert [c["passed"] for c in row["checks"]] == [False, True]
    assert fake_llm.stats("judge")["ok"] == 2

    text = cli(
        "rubric", "test", "r", "--dataset", "answers", "--reference", "--judge", "judge",
        "--row", "2",
    )  # fmt: skip
    assert text.exit_code == 0
    assert "# Checks: gate: any failed check gives the minimum score" in text.stdout
    assert "--- judge not called: the checks decided the score" in text.stdout
    assert "--- check FAIL json_schema: not valid JSON" in text.stdout
    assert "--- score: 1" in text.stdout


# --- tool calls against BFCL-style accepted values, checks only ------------------------------

TRIANGLE = {
    "type": "function",
    "function": {
        "name": "calculate_triangle_area",
        "parameters": {
            "type": "object",
            "properties": {
                "base": {"type": "integer"},
                "height": {"type": "integer"},
                "unit": {"type": "string"},
            },
            "required": ["base", "height"],
        },
    },
}
# The fake model calls the first tool with every required integer set to 1.
ACCEPTED = [
    [{"calculate_triangle_area": {"base": [1], "height": [1], "unit": ["units", ""]}}],
    [{"calculate_triangle_area": {"base": [10], "height": [5], "unit": ["units", ""]}}],
    None,  # no ground truth on this row
]


def test_checks_only_tool_calls_need_no_judge(
    cli: Any, fake_llm: Any, database_url: str, assay_home: Path, tmp_path: Path
) -> None:
    lines = []
    for i, accepted in enumerate(ACCEPTED):
        line: dict[str, Any] = {
            "messages": [{"role": "user", "content": f"Area of triangle {i}?"}],
            "tools": [TRIANGLE],
        }
        if accepted is not None:
            line["metadata"] = {"accepted_calls": accepted}
        lines.append(line)
    data = write(tmp_path / "t.jsonl", lines)
    assert cli("dataset", "import", str(data), "--name", "tri").exit_code == 0
    checks = tmp_path / "calls.json"
    checks.write_text(json.dumps({
        "checks": [{"type": "tool_call_match", "expected": "metadata"}],
        "combine": {"mode": "checks_only"},
    }))  # fmt: skip
    created = cli("rubric", "create", "calls", "--template", "correctness", "--checks", str(checks))
    assert created.exit_code == 0, created.stderr
    for name in ("gen", "gen2", "judge"):
        cli("model", "add", name, "--base-url", fake_llm.base_url, "--model-id", name)
    cli("model", "add", "nokey", "--base-url", fake_llm.base_url, "--model-id", "nokey",
        "--api-key-env", "ASSAY_TEST_UNSET_JUDGE_KEY")  # fmt: skip
    result = cli(
        "eval", "create", "tools", "--dataset", "tri", "--rubric", "calls", "--judge", "judge",
        "--baseline", "gen", "--candidate", "gen2",
    )  # fmt: skip
    assert result.exit_code == 0, result.stderr
    started = cli("run", "start", "tools")
    assert started.exit_code == 0, started.stderr
    assert (
        "Warning: check 'tool_call_match' needs row metadata 'accepted_calls', which 1 of 3 "
        "sampled rows lack: it fails on them" in " ".join(started.stderr.split())
    )
    assert fake_llm.stats("judge")["attempts"] == 0
    found = judgments(database_url, assay_home, 1)
    for arm in ("gen", "gen2"):
        assert [found[(arm, p)].score for p in range(3)] == [10.0, 1.0, 1.0]
        assert found[(arm, 0)].reasoning == "1 of 1 checks passed; no judge (checks_only)"
        details = [found[(arm, p)].checks[0]["detail"] for p in range(3)]  # type: ignore[index]
        assert details == [
            None,
            "calculate_triangle_area: argument 'base' = 1 is not an accepted value "
            "(accepted: [10])",
            "row metadata has no 'accepted_calls'",
        ]

    # Rejudging with a judge whose key is not set works: it is never called.
    result = cli("run", "rejudge", "1", "--judge", "nokey")
    assert result.exit_code == 0, result.stderr
    rejudged = judgments(database_url, assay_home, 2)
    assert [rejudged[("gen2", p)].score for p in range(3)] == [10.0, 1.0, 1.0]
    assert json.loads(cli("run", "show", "2", "--json").stdout)["status"] == "completed"
    assert fake_llm.stats("nokey")["attempts"] == 0
    # ...and so does starting a group whose eval names that judge.
    result = cli(
        "eval", "create", "tools-nokey", "--dataset", "tri", "--rubric", "calls",
        "--judge", "nokey", "--baseline", "gen", "--candidate", "gen2",
    )  # fmt: skip
    assert result.exit_code == 0, result.stderr
    started = cli("run", "start", "tools-nokey")
    assert started.exit_code == 0, started.stderr
    assert fake_llm.stats("nokey")["attempts"] == 0

    quick = cli(
        "rubric", "test", "calls", "--dataset", "tri", "--model", "gen", "--judge", "nokey",
        "--rows", "3", "--json",
    )  # fmt: skip
    assert quick.exit_code == 0, quick.stderr
    report = json.loads(quick.stdout)
    assert [r["score"] for r in report["rows"]] == [10.0, 1.0, 1.0]
    assert not any(r["judge_called"] for r in report["rows"])
    assert report["rows"][2]["warnings"] == [
        "check 'tool_call_match' needs row metadata 'accepted_calls', which this row lacks: "
        "the check fails"
    ]
